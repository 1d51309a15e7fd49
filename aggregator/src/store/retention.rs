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
}

/// Deletes alerts, audit events/batches, observations and inventory rows
/// older than `retention` before `now`, and API suppressions expired before
/// that cut-off. Bindings, roles, baselines and offsets are state, not history:
/// they are kept.
pub fn prune(
    tx: &Transaction<'_>,
    now: DateTime<Utc>,
    retention: Duration,
) -> Result<Pruned, StoreError> {
    let cut = ms(now
        .checked_sub_signed(retention)
        .unwrap_or(DateTime::<Utc>::MIN_UTC));
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
    })
}
