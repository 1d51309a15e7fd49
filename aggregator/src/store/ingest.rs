//! Writes of the ingest pipeline; each runs inside the batch's transaction.

use chrono::{DateTime, Utc};
use credtrail_proto::model::{Observation, ObservationEvent};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{StoreError, ms, rfc3339};
use crate::alert::Alert;
use crate::audit::AuditEvent;
use crate::detect::{alert_node, suppressed_by};
use crate::pipeline::LogOffset;
use crate::policy::Policy;

/// Inserts a batch row and its events; returns the batch id and, per event,
/// whether it is new (not a duplicate auditID + stage).
pub fn insert_audit_events(
    tx: &Transaction<'_>,
    source: &str,
    now: DateTime<Utc>,
    events: &[AuditEvent],
) -> Result<(i64, Vec<bool>), StoreError> {
    tx.prepare_cached(
        "INSERT INTO audit_batches(source, received_ms, events, accepted, duplicates) VALUES (?1, ?2, ?3, 0, 0)",
    )?
    .execute(params![source, ms(now), events.len() as i64])?;
    let batch = tx.last_insert_rowid();
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO audit_events(audit_id, stage, batch_id, time_ms) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let legacy_before = legacy_keys_before(tx, now)?;
    let mut legacy = tx.prepare_cached(
        "SELECT count(*) FROM audit_events WHERE time_ms = ?1 AND audit_id = ?2 AND stage = ?3",
    )?;
    let mut fresh = Vec::with_capacity(events.len());
    for e in events {
        let t = ms(e.time());
        // Stored before the compact keys: the same event resent across the
        // upgrade is still a duplicate.
        if t < legacy_before
            && legacy.query_row(params![t, e.audit_id, e.stage.as_str()], |r| {
                r.get::<_, i64>(0)
            })? > 0
        {
            fresh.push(false);
            continue;
        }
        let n = st.execute(params![
            audit_id_key(&e.audit_id),
            stage_key(e.stage),
            batch,
            t
        ])?;
        fresh.push(n == 1);
    }
    Ok((batch, fresh))
}

/// Events older than this may have been stored with the text keys of
/// earlier versions (`meta.audit_keys_compact_since`, set at the first batch
/// written with compact keys; `i64::MIN` when the table was empty then).
fn legacy_keys_before(tx: &Transaction<'_>, now: DateTime<Utc>) -> Result<i64, StoreError> {
    let since: Option<String> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'audit_keys_compact_since'")?
        .query_row([], |r| r.get(0))
        .optional()?;
    if let Some(v) = since {
        return Ok(v.parse().unwrap_or(i64::MAX));
    }
    let empty: bool = tx.query_row("SELECT NOT EXISTS (SELECT 1 FROM audit_events)", [], |r| {
        r.get(0)
    })?;
    let v = if empty { i64::MIN } else { ms(now) };
    tx.execute(
        "INSERT INTO meta(key, value) VALUES ('audit_keys_compact_since', ?1)",
        [v.to_string()],
    )?;
    Ok(v)
}

/// The dedupe record's audit ID: a canonical (lower-case, hyphenated) UUID,
/// which is what API servers write, as its 16 bytes (a BLOB, 20 bytes fewer
/// per event than its text); anything else as the text it is. Both are
/// lossless, and a BLOB never equals a TEXT, so no two IDs collide.
pub(crate) fn audit_id_key(id: &str) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match uuid::Uuid::try_parse(id) {
        Ok(u)
            if u.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                == id =>
        {
            Value::Blob(u.as_bytes().to_vec())
        }
        _ => Value::Text(id.to_owned()),
    }
}

/// The dedupe record's stage: one letter per stage (`R`equestReceived,
/// response `S`tarted, response `C`omplete, `P`anic, `O`ther), 15 bytes fewer
/// than the name per event.
pub(crate) fn stage_key(s: crate::audit::Stage) -> &'static str {
    use crate::audit::Stage;
    match s {
        Stage::RequestReceived => "R",
        Stage::ResponseStarted => "S",
        Stage::ResponseComplete => "C",
        Stage::Panic => "P",
        Stage::Other => "O",
    }
}

/// Completes the batch row and the audit-source coverage row.
pub fn finish_audit_batch(
    tx: &Transaction<'_>,
    batch: i64,
    source: &str,
    now: DateTime<Utc>,
    events: &[AuditEvent],
    fresh: &[bool],
) -> Result<(), StoreError> {
    let accepted = fresh.iter().filter(|f| **f).count() as i64;
    tx.prepare_cached("UPDATE audit_batches SET accepted = ?2, duplicates = ?3 WHERE id = ?1")?
        .execute(params![batch, accepted, events.len() as i64 - accepted])?;
    let newest = events.iter().map(|e| ms(e.time())).max().unwrap_or(0);
    tx.prepare_cached(
        "INSERT INTO coverage_audit_sources(source, last_event_ms, last_recv_ms, events)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(source) DO UPDATE SET last_event_ms = max(last_event_ms, excluded.last_event_ms),
            last_recv_ms = excluded.last_recv_ms, events = events + excluded.events",
    )?
    .execute(params![source, newest, ms(now), accepted])?;
    Ok(())
}

/// Counts rejected input against a source's coverage row.
pub fn count_rejected(
    tx: &Transaction<'_>,
    source: &str,
    n: u64,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO coverage_audit_sources(source, last_event_ms, last_recv_ms, events, rejected)
         VALUES (?1, 0, ?2, 0, ?3)
         ON CONFLICT(source) DO UPDATE SET rejected = rejected + excluded.rejected, last_recv_ms = excluded.last_recv_ms",
        params![source, ms(now), n as i64],
    )?;
    Ok(())
}

/// Stores alerts (idempotent: the id is deterministic).
pub fn insert_alerts(
    tx: &Transaction<'_>,
    alerts: &[Alert],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO alerts(id, time, time_ms, rule, analytic, severity, severity_rank, username,
            credential_id, source_ip, source_class, node, namespace, suppressed_by, created_ms, json)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?;
    let mut nodes =
        tx.prepare_cached("INSERT OR IGNORE INTO alert_nodes(node, seq) VALUES (?1, ?2)")?;
    for a in alerts {
        let class = serde_json::to_value(a.source_class)?;
        let inserted = st.execute(params![
            a.id,
            rfc3339(a.time),
            ms(a.time),
            a.rule,
            a.analytic,
            a.severity.as_str(),
            a.severity as i64,
            a.identity.username,
            a.credential_id,
            a.source_ip.map(|i| i.to_string()),
            class.as_str().unwrap_or("unknown"),
            alert_node(a),
            a.request.namespace,
            suppressed_by(a),
            ms(now),
            serde_json::to_string(a)?,
        ])?;
        if inserted == 1 {
            // Every node the alert names, for the indexed `?node=` filter.
            let seq = tx.last_insert_rowid();
            for n in alert_node(a)
                .iter()
                .map(String::as_str)
                .chain(crate::store::query::filter::alert_nodes(a))
            {
                nodes.execute(params![n, seq])?;
            }
        }
    }
    Ok(())
}

/// Stores observations; per observation, whether it is new (by node and id).
pub fn insert_observations(
    tx: &Transaction<'_>,
    batch: &[Observation],
) -> Result<Vec<bool>, StoreError> {
    let mut st = tx.prepare_cached(
        "INSERT OR IGNORE INTO observations(id, node, time_ms, type, json) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut out = Vec::with_capacity(batch.len());
    for o in batch {
        let ty = match &o.event {
            ObservationEvent::NodeInfo(_) => "node_info",
            ObservationEvent::CredentialRead(_) => "credential_read",
            ObservationEvent::ApiConnect(_) => "api_connect",
            ObservationEvent::Loss(_) => "loss",
        };
        let n = st.execute(params![
            o.id,
            o.node,
            ms(o.time),
            ty,
            serde_json::to_string(o)?
        ])?;
        out.push(n == 1);
    }
    Ok(out)
}

/// Records how far a tailed log was read.
pub fn save_log_offset(
    tx: &Transaction<'_>,
    o: &LogOffset,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO log_offsets(path, dev, inode, offset, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(path) DO UPDATE SET dev = excluded.dev, inode = excluded.inode,
            offset = excluded.offset, updated_ms = excluded.updated_ms",
        params![
            o.path,
            o.dev as i64,
            o.inode as i64,
            o.offset as i64,
            ms(now)
        ],
    )?;
    Ok(())
}

/// The saved offset of a tailed log.
pub fn load_log_offset(
    conn: &rusqlite::Connection,
    path: &str,
) -> Result<Option<LogOffset>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT dev, inode, offset FROM log_offsets WHERE path = ?1",
            [path],
            |r| {
                Ok(LogOffset {
                    path: path.to_owned(),
                    dev: r.get::<_, i64>(0)? as u64,
                    inode: r.get::<_, i64>(1)? as u64,
                    offset: r.get::<_, i64>(2)? as u64,
                })
            },
        )
        .optional()?)
}

/// Writes the policy's configured roles and suppressions (origin `policy`);
/// suppressions removed from the policy file are removed here too.
pub fn apply_policy(
    tx: &Transaction<'_>,
    p: &Policy,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for r in &p.roles {
        let reasons = crate::detect::rbac::high_privilege_reasons(&r.rules);
        tx.execute(
            "INSERT INTO roles(kind, namespace, name, rules, high_privilege, reasons, origin, audit_id, updated_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'policy', NULL, ?7)
             ON CONFLICT(kind, namespace, name) DO UPDATE SET rules = excluded.rules,
                high_privilege = excluded.high_privilege, reasons = excluded.reasons,
                origin = 'policy', updated_ms = excluded.updated_ms, deleted = 0
             WHERE roles.origin = 'policy'",
            params![
                r.kind,
                r.namespace,
                r.name,
                serde_json::to_string(&r.rules)?,
                !reasons.is_empty(),
                serde_json::to_string(&reasons)?,
                ms(now)
            ],
        )?;
    }
    tx.execute("DELETE FROM suppressions WHERE origin = 'policy'", [])?;
    for s in &p.suppressions {
        tx.execute(
            "INSERT INTO suppressions(id, owner, reason, created, expires, expires_ms, matcher, origin)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'policy')
             ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, reason = excluded.reason,
                created = excluded.created, expires = excluded.expires, expires_ms = excluded.expires_ms,
                matcher = excluded.matcher, origin = 'policy'",
            params![
                s.id,
                s.owner,
                s.reason,
                rfc3339(s.created),
                rfc3339(s.expires),
                ms(s.expires),
                serde_json::to_string(&s.matcher)?
            ],
        )?;
    }
    Ok(())
}
