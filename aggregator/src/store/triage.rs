//! Alert triage in the store (schema version 4): the current state lives in
//! the alert's row (`alerts.triage_status`, `assignee`, `triage_updated_ms`,
//! `triage_updated_by`, `triage_history_dropped`; indexed for the `status`
//! and `assignee` filters), every change in `alert_triage_history` (bounded
//! per alert, deleted with its alert). Notes are stored as given (validated
//! and bounded by [`crate::triage::TriageUpdate::validate`]), never
//! interpreted.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};

use super::StoreError;
use super::query::{QueryError, ms_to_time};
use crate::triage::{MAX_HISTORY, Triage, TriageChange, TriageStatus, TriageUpdate};

/// Indexes, the history table and its follow-the-alert trigger (applied
/// after [`migrate`] has added the columns).
const TRIAGE_SCHEMA: &str = "
CREATE INDEX IF NOT EXISTS alerts_triage_status ON alerts(triage_status, time_ms);
CREATE INDEX IF NOT EXISTS alerts_assignee ON alerts(assignee, time_ms);
-- One row per triage change, attributed to the authenticated principal.
CREATE TABLE IF NOT EXISTS alert_triage_history (
    seq          INTEGER NOT NULL,           -- alerts.seq
    n            INTEGER NOT NULL,           -- 1, 2, ... per alert
    at_ms        INTEGER NOT NULL,
    by_principal TEXT NOT NULL,
    status       TEXT,                       -- set when the change set one
    assignee_set INTEGER NOT NULL,           -- 1: the change set or cleared the assignee
    assignee     TEXT,
    note         TEXT,                       -- free text, bounded, never interpreted
    PRIMARY KEY (seq, n)
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS alert_triage_history_follow AFTER DELETE ON alerts BEGIN
    DELETE FROM alert_triage_history WHERE seq = old.seq;
END;
";

/// Adds the triage columns to `alerts` when missing (new databases and
/// version-3 ones alike; existing alerts become `open`), then the indexes
/// and the history table.
pub(super) fn migrate(tx: &Transaction<'_>) -> Result<(), StoreError> {
    for (col, decl) in [
        ("triage_status", "TEXT NOT NULL DEFAULT 'open'"),
        ("assignee", "TEXT"),
        ("triage_updated_ms", "INTEGER"),
        ("triage_updated_by", "TEXT"),
        ("triage_history_dropped", "INTEGER NOT NULL DEFAULT 0"),
        ("triage_last_note", "TEXT"),
    ] {
        let has: bool = tx.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info('alerts') WHERE name = ?1",
            [col],
            |r| r.get(0),
        )?;
        if !has {
            tx.execute_batch(&format!("ALTER TABLE alerts ADD COLUMN {col} {decl}"))?;
        }
    }
    tx.execute_batch(TRIAGE_SCHEMA)?;
    Ok(())
}

/// The columns [`from_columns`] reads, in order, for a `SELECT` on `alerts`.
pub const COLUMNS: &str = "triage_status, assignee, triage_updated_ms, triage_updated_by, triage_history_dropped, triage_last_note";

/// The triage state from [`COLUMNS`] starting at column `at` (no history).
pub fn from_columns(id: &str, row: &rusqlite::Row<'_>, at: usize) -> Result<Triage, QueryError> {
    let status: String = row.get(at)?;
    Ok(Triage {
        status: TriageStatus::parse(&status).ok_or_else(|| QueryError::Corrupt {
            what: "alert triage status",
            key: id.to_owned(),
            message: format!("{status:?} is not a status"),
        })?,
        assignee: row.get(at + 1)?,
        updated_at: row.get::<_, Option<i64>>(at + 2)?.map(ms_to_time),
        updated_by: row.get(at + 3)?,
        history: None,
        history_dropped: u64::try_from(row.get::<_, i64>(at + 4)?).unwrap_or(0),
        last_note: row.get(at + 5)?,
    })
}

/// The history of alert `id`, oldest first (empty for an unknown id).
pub fn history(conn: &Connection, id: &str) -> Result<Vec<TriageChange>, QueryError> {
    let mut st = conn.prepare_cached(
        "SELECT h.at_ms, h.by_principal, h.status, h.assignee_set, h.assignee, h.note
         FROM alert_triage_history h JOIN alerts a ON a.seq = h.seq
         WHERE a.id = ?1 ORDER BY h.n",
    )?;
    let mut rows = st.query([id])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let status: Option<String> = r.get(2)?;
        let status = status
            .map(|s| {
                TriageStatus::parse(&s).ok_or_else(|| QueryError::Corrupt {
                    what: "alert triage history",
                    key: id.to_owned(),
                    message: format!("{s:?} is not a status"),
                })
            })
            .transpose()?;
        let assignee_set: bool = r.get(3)?;
        let assignee: Option<String> = r.get(4)?;
        out.push(TriageChange {
            at: ms_to_time(r.get(0)?),
            by: r.get(1)?,
            status,
            assignee: assignee_set.then_some(assignee),
            note: r.get(5)?,
        });
    }
    Ok(out)
}

/// What a stored change left: the state before and after (after with its
/// history) and the change itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub before: Triage,
    pub after: Triage,
    pub change: TriageChange,
}

/// Applies `update` (validated by the caller) to alert `id` on behalf of
/// principal `by`; `None` when no alert has that id. Keeps at most
/// [`MAX_HISTORY`] history entries, counting the dropped ones.
pub fn apply(
    tx: &Transaction<'_>,
    id: &str,
    update: &TriageUpdate,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<Applied>, QueryError> {
    let row = tx
        .prepare_cached(&format!("SELECT seq, {COLUMNS} FROM alerts WHERE id = ?1"))?
        .query_row([id], |r| {
            let seq: i64 = r.get(0)?;
            Ok((seq, from_columns(id, r, 1)))
        })
        .optional()?;
    let Some((seq, before)) = row else {
        return Ok(None);
    };
    let before = before?;
    let now_ms = now.timestamp_millis();
    let status = update.status.unwrap_or(before.status);
    let assignee = match &update.assignee {
        Some(a) => a.clone(),
        None => before.assignee.clone(),
    };
    tx.execute(
        "UPDATE alerts SET triage_status = ?2, assignee = ?3, triage_updated_ms = ?4, triage_updated_by = ?5,
             triage_last_note = coalesce(?6, triage_last_note)
         WHERE seq = ?1",
        params![seq, status.as_str(), assignee, now_ms, by, update.note],
    )?;
    let n: i64 = tx.query_row(
        "SELECT coalesce(max(n), 0) + 1 FROM alert_triage_history WHERE seq = ?1",
        [seq],
        |r| r.get(0),
    )?;
    tx.execute(
        "INSERT INTO alert_triage_history(seq, n, at_ms, by_principal, status, assignee_set, assignee, note)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            seq,
            n,
            now_ms,
            by,
            update.status.map(TriageStatus::as_str),
            update.assignee.is_some(),
            update.assignee.clone().flatten(),
            update.note,
        ],
    )?;
    let keep_from = n - i64::try_from(MAX_HISTORY).unwrap_or(i64::MAX);
    let dropped = tx.execute(
        "DELETE FROM alert_triage_history WHERE seq = ?1 AND n <= ?2",
        params![seq, keep_from],
    )?;
    if dropped > 0 {
        tx.execute(
            "UPDATE alerts SET triage_history_dropped = triage_history_dropped + ?2 WHERE seq = ?1",
            params![seq, i64::try_from(dropped).unwrap_or(i64::MAX)],
        )?;
    }
    let change = TriageChange {
        at: ms_to_time(now_ms),
        by: by.to_owned(),
        status: update.status,
        assignee: update.assignee.clone(),
        note: update.note.clone(),
    };
    let after = Triage {
        status,
        assignee,
        updated_at: Some(change.at),
        updated_by: Some(by.to_owned()),
        history: Some(history(tx, id)?),
        history_dropped: before.history_dropped + dropped as u64,
        last_note: update.note.clone().or_else(|| before.last_note.clone()),
    };
    Ok(Some(Applied {
        before,
        after,
        change,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{SCHEMA_VERSION, Store, Synchronous};

    fn insert_alert(c: &Connection, id: &str) {
        c.execute(
            "INSERT INTO alerts(id, time, time_ms, rule, analytic, severity, severity_rank, username,
                source_class, created_ms, json)
             VALUES (?1, '2026-01-01T00:00:00Z', 1, 'CT1547-002', 'AN1547', 'high', 3, 'u', 'outside', 1, '{}')",
            [id],
        )
        .unwrap();
    }

    #[test]
    fn changes_are_attributed_kept_in_order_and_bounded() {
        let store = Store::open_in_memory().unwrap();
        store
            .write_blocking(|tx| {
                insert_alert(tx, "a1");
                let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
                let none = apply(tx, "nope", &TriageUpdate::default(), "token:x", now).unwrap();
                assert!(none.is_none());
                let ack = TriageUpdate {
                    status: Some(TriageStatus::Acknowledged),
                    assignee: Some(Some("alice".into())),
                    note: Some("looking".into()),
                };
                let a = apply(tx, "a1", &ack, "token:alice", now).unwrap().unwrap();
                assert_eq!(a.before, Triage::default());
                assert_eq!(a.after.status, TriageStatus::Acknowledged);
                assert_eq!(a.after.assignee.as_deref(), Some("alice"));
                assert_eq!(a.after.updated_by.as_deref(), Some("token:alice"));
                let unassign = TriageUpdate {
                    assignee: Some(None),
                    ..Default::default()
                };
                let b = apply(tx, "a1", &unassign, "token:bob", now)
                    .unwrap()
                    .unwrap();
                assert_eq!(b.after.status, TriageStatus::Acknowledged);
                assert_eq!(b.after.assignee, None);
                let h = b.after.history.unwrap();
                assert_eq!(h.len(), 2);
                assert_eq!(h[0].by, "token:alice");
                assert_eq!(h[0].note.as_deref(), Some("looking"));
                assert_eq!(h[1].assignee, Some(None));
                assert_eq!(h[1].status, None);
                let note = TriageUpdate {
                    note: Some("n".into()),
                    ..Default::default()
                };
                let mut last = None;
                for _ in 0..MAX_HISTORY + 5 {
                    last = apply(tx, "a1", &note, "token:bob", now).unwrap();
                }
                let last = last.unwrap().after;
                assert_eq!(last.history.unwrap().len(), MAX_HISTORY);
                assert_eq!(last.history_dropped, 7);
                // Deleting the alert (retention) takes its history along.
                tx.execute("DELETE FROM alerts WHERE id = 'a1'", [])
                    .unwrap();
                let left: i64 = tx
                    .query_row("SELECT count(*) FROM alert_triage_history", [], |r| {
                        r.get(0)
                    })
                    .unwrap();
                assert_eq!(left, 0);
                Ok(())
            })
            .unwrap();
    }

    #[test]
    fn a_version_3_database_is_migrated_with_its_alerts_open() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("v3.db");
        drop(Store::open(&db, Synchronous::Full).unwrap());
        {
            // Make it look like version 3: no triage columns, table or indexes.
            let c = Connection::open(&db).unwrap();
            c.execute_batch(
                "DROP INDEX alerts_triage_status; DROP INDEX alerts_assignee;
                 DROP TRIGGER alert_triage_history_follow; DROP TABLE alert_triage_history;
                 ALTER TABLE alerts DROP COLUMN triage_status; ALTER TABLE alerts DROP COLUMN assignee;
                 ALTER TABLE alerts DROP COLUMN triage_updated_ms; ALTER TABLE alerts DROP COLUMN triage_updated_by;
                 ALTER TABLE alerts DROP COLUMN triage_history_dropped;
                 ALTER TABLE alerts DROP COLUMN triage_last_note;
                 UPDATE meta SET value = '3' WHERE key = 'schema_version';",
            )
            .unwrap();
            insert_alert(&c, "old");
        }
        let store = Store::open(&db, Synchronous::Full).unwrap();
        let (status, version): (String, String) = store
            .read_blocking(|c| {
                Ok((
                    c.query_row(
                        "SELECT triage_status FROM alerts WHERE id = 'old'",
                        [],
                        |r| r.get(0),
                    )?,
                    c.query_row(
                        "SELECT value FROM meta WHERE key = 'schema_version'",
                        [],
                        |r| r.get(0),
                    )?,
                ))
            })
            .unwrap();
        assert_eq!(status, "open");
        assert_eq!(version, SCHEMA_VERSION);
    }
}
