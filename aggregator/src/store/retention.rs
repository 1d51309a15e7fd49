//! Retention: deletes what is older than the configured age.

use chrono::{DateTime, Duration, Utc};
use rusqlite::{Transaction, params};

use super::{StoreError, ms};

/// How many rows a prune removed, by table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub alerts: usize,
    pub audit_events: usize,
    pub audit_batches: usize,
    pub observations: usize,
    pub credential_uses: usize,
    pub credential_reads: usize,
    pub suppressions: usize,
    pub identities: usize,
    pub baselines: usize,
    pub node_network: usize,
    pub deleted_rbac: usize,
}

/// Deletes alerts, audit events/batches, observations and inventory rows
/// older than `retention` before `now`, and API suppressions expired before
/// that cut-off. Detection state unused for that long goes too: identities
/// (whose last sighting is refreshed every 10 minutes of use) and their baselines, node networks, and deleted roles and bindings. Live
/// roles and bindings (the cluster's current RBAC objects) and offsets are
/// kept.
pub fn prune(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<Pruned, StoreError> {
    let cut = ms(now
        .checked_sub_signed(retention)
        .unwrap_or(DateTime::<Utc>::MIN_UTC));
    super::activity::prune(tx, cut)?;
    Ok(Pruned {
        alerts: tx.execute("DELETE FROM alerts WHERE time_ms < ?1", params![cut])?,
        audit_events: tx.execute("DELETE FROM audit_events WHERE time_ms < ?1", params![cut])?,
        audit_batches: tx.execute(
            "DELETE FROM audit_batches WHERE received_ms < ?1",
            params![cut],
        )?,
        observations: tx.execute("DELETE FROM observations WHERE time_ms < ?1", params![cut])?,
        credential_uses: tx.execute(
            "DELETE FROM credential_uses WHERE last_seen_ms < ?1",
            params![cut],
        )?,
        credential_reads: tx.execute(
            "DELETE FROM credential_reads WHERE last_seen_ms < ?1",
            params![cut],
        )?,
        suppressions: tx.execute(
            "DELETE FROM suppressions WHERE origin = 'api' AND expires_ms < ?1",
            params![cut],
        )?,
        identities: tx.execute(
            "DELETE FROM identities WHERE last_seen_ms < ?1",
            params![cut],
        )?,
        // An identity's baseline goes with it (a baseline row's own
        // last_seen is not refreshed while the identity stays in use).
        baselines: tx.execute(
            "DELETE FROM baselines WHERE last_seen_ms < ?1
                AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.username = baselines.username)",
            params![cut],
        )?,
        node_network: tx.execute(
            "DELETE FROM node_network WHERE updated_ms < ?1",
            params![cut],
        )?,
        deleted_rbac: tx.execute(
            "DELETE FROM roles WHERE deleted = 1 AND updated_ms < ?1",
            params![cut],
        )? + tx.execute(
            "DELETE FROM bindings WHERE deleted = 1 AND last_change_ms < ?1",
            params![cut],
        )?,
    })
}
