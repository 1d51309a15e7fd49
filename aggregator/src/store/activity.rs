//! Storing AN1547 alerts' activity (`detect/activity.rs`): one state row per
//! alert (counts and summary groups) and its listed requests. Tables in
//! `activity.sql`.

use std::collections::HashMap;

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde::Serialize;

use super::StoreError;
use super::query::QueryError;
use crate::detect::activity::{ActivityChange, ActivityEntry, AlertActivity, IDLE_CLOSE, MAX_OPEN};

/// The tables, applied with the main schema.
pub const ACTIVITY_SCHEMA: &str = include_str!("activity.sql");

/// Writes a batch's activity changes: the last state of each alert, and
/// every newly listed request.
pub fn write_activity(tx: &Transaction<'_>, changes: &[ActivityChange]) -> Result<(), StoreError> {
    if changes.is_empty() {
        return Ok(());
    }
    let mut last: HashMap<&str, &AlertActivity> = HashMap::new();
    let mut ins = tx.prepare_cached(
        "INSERT INTO alert_activity_entries(alert_id, time_ms, entry) VALUES (?1, ?2, ?3)",
    )?;
    for c in changes {
        last.insert(&c.state.alert_id, &c.state);
        for e in &c.entries {
            ins.execute(params![
                c.state.alert_id,
                e.time.timestamp_millis(),
                serde_json::to_string(e)?
            ])?;
        }
    }
    let mut up = tx.prepare_cached(
        "INSERT INTO alert_activity(alert_id, credential_key, source_ip, last_ms, state)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(alert_id) DO UPDATE SET last_ms = excluded.last_ms, state = excluded.state",
    )?;
    for s in last.values() {
        up.execute(params![
            s.alert_id,
            s.credential_key,
            s.source_ip.to_string(),
            s.last.timestamp_millis(),
            serde_json::to_string(s)?
        ])?;
    }
    Ok(())
}

/// Alerts still open at the newest recorded activity (at most
/// [`MAX_OPEN`], most recent), for the detector at start-up.
pub fn load_open(c: &Connection) -> Result<Vec<AlertActivity>, StoreError> {
    let newest: Option<i64> = c
        .query_row("SELECT max(last_ms) FROM alert_activity", [], |r| r.get(0))
        .optional()?
        .flatten();
    let Some(newest) = newest else {
        return Ok(Vec::new());
    };
    let mut st = c.prepare(
        "SELECT state FROM alert_activity WHERE last_ms >= ?1 ORDER BY last_ms DESC LIMIT ?2",
    )?;
    let rows = st.query_map(
        params![newest - IDLE_CLOSE.num_milliseconds(), MAX_OPEN as i64],
        |r| r.get::<_, String>(0),
    )?;
    let mut out = Vec::new();
    for r in rows {
        // A row that does not decode is skipped: its alert stays stored, it
        // is just no longer extended.
        if let Ok(a) = serde_json::from_str::<AlertActivity>(&r?) {
            out.push(a);
        }
    }
    out.reverse();
    Ok(out)
}

/// What the API shows of an alert's activity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityView {
    pub activity_summary: String,
    pub activity_count: u64,
    pub occurrences: u32,
    pub activity_first: chrono::DateTime<chrono::Utc>,
    pub activity_last: chrono::DateTime<chrono::Utc>,
    /// Detail only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Vec<ActivityEntry>>,
    /// Detail only: requests counted but not listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity_truncated: Option<u64>,
}

fn view(id: &str, state: &str) -> Result<ActivityView, QueryError> {
    let a: AlertActivity = serde_json::from_str(state).map_err(|e| QueryError::Corrupt {
        what: "alert activity",
        key: id.to_owned(),
        message: e.to_string(),
    })?;
    Ok(ActivityView {
        activity_summary: a.summary(),
        activity_count: a.count,
        occurrences: a.occurrences,
        activity_first: a.first,
        activity_last: a.last,
        activity: None,
        activity_truncated: None,
    })
}

/// Summaries of these alerts' activity (list view), by alert id.
pub fn summaries(
    c: &Connection,
    ids: &[String],
) -> Result<HashMap<String, ActivityView>, QueryError> {
    let mut st = c.prepare_cached("SELECT state FROM alert_activity WHERE alert_id = ?1")?;
    let mut out = HashMap::new();
    for id in ids {
        if let Some(s) = st.query_row([id], |r| r.get::<_, String>(0)).optional()? {
            out.insert(id.clone(), view(id, &s)?);
        }
    }
    Ok(out)
}

/// One alert's activity with its listed requests (detail view).
pub fn detail(c: &Connection, id: &str) -> Result<Option<ActivityView>, QueryError> {
    let Some(s) = c
        .prepare_cached("SELECT state FROM alert_activity WHERE alert_id = ?1")?
        .query_row([id], |r| r.get::<_, String>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let mut v = view(id, &s)?;
    let mut st = c.prepare_cached(
        "SELECT entry FROM alert_activity_entries WHERE alert_id = ?1
         ORDER BY time_ms, rowid LIMIT ?2",
    )?;
    let rows = st.query_map(
        params![id, i64::from(crate::detect::activity::MAX_LISTED)],
        |r| r.get::<_, String>(0),
    )?;
    let mut list = Vec::new();
    for r in rows {
        let text = r?;
        list.push(serde_json::from_str::<ActivityEntry>(&text).map_err(|e| {
            QueryError::Corrupt {
                what: "alert activity entry",
                key: id.to_owned(),
                message: e.to_string(),
            }
        })?);
    }
    v.activity_truncated = Some(v.activity_count.saturating_sub(list.len() as u64));
    v.activity = Some(list);
    Ok(Some(v))
}

/// Deletes activity of alerts idle since before `cut_ms` (retention).
pub fn prune(tx: &Transaction<'_>, cut_ms: i64) -> Result<usize, StoreError> {
    super::inventory_ctx::prune(tx, cut_ms)?;
    tx.execute(
        "DELETE FROM alert_activity_entries WHERE alert_id IN
            (SELECT alert_id FROM alert_activity WHERE last_ms < ?1)",
        params![cut_ms],
    )?;
    Ok(tx.execute(
        "DELETE FROM alert_activity WHERE last_ms < ?1",
        params![cut_ms],
    )?)
}
