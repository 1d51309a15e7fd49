//! The credential inventory one click away from an alert
//! (`GET /api/v1/credentials/{credential_id}/inventory`): where the
//! credential was read (agents), where it was used (source, node and pod it
//! resolved to, user agents), who minted it, and its alerts. Never secret
//! material: only the credential id. Table `credential_use_agents` in
//! `activity.sql`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Transaction, params};
use serde::Serialize;

use super::StoreError;
use super::query::inventory::{self, CredentialQuery, ReadSite, UseSite};
use super::query::{QueryError, ms_to_time};
use crate::detect::changes::UseContext;

/// User agents kept per credential and source.
pub const MAX_AGENTS: i64 = 10;
/// Rows per part of an inventory answer.
pub const MAX_READS: usize = 200;
pub const MAX_USES: usize = 200;
pub const MAX_ALERTS: i64 = 50;
/// Longest user agent stored (it comes from the client).
const MAX_UA: usize = 512;

fn cap(s: &str, n: usize) -> &str {
    let mut end = s.len().min(n);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Writes a batch's use contexts, folded per (credential, source, agent).
pub fn write_use_context(tx: &Transaction<'_>, rows: &[UseContext]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    struct Agg<'a> {
        pod: Option<&'a str>,
        first: i64,
        last: i64,
        count: i64,
    }
    let mut agg: HashMap<(&str, &str, &str), Agg<'_>> = HashMap::new();
    for r in rows {
        let ua = cap(r.user_agent.as_deref().unwrap_or(""), MAX_UA);
        let a = agg
            .entry((r.key.as_str(), r.source_ip.as_str(), ua))
            .or_insert(Agg {
                pod: None,
                first: r.time_ms,
                last: r.time_ms,
                count: 0,
            });
        a.count += 1;
        a.first = a.first.min(r.time_ms);
        if r.time_ms >= a.last {
            a.last = r.time_ms;
            a.pod = r.pod.as_deref().or(a.pod);
        }
    }
    let mut up = tx.prepare_cached(
        "UPDATE credential_use_agents SET pod = coalesce(?4, pod), count = count + ?5,
            first_seen_ms = min(first_seen_ms, ?6), last_seen_ms = max(last_seen_ms, ?7)
         WHERE credential_key = ?1 AND source_ip = ?2 AND user_agent = ?3",
    )?;
    let mut ins = tx.prepare_cached(
        "INSERT INTO credential_use_agents(credential_key, source_ip, user_agent, pod,
            first_seen_ms, last_seen_ms, count)
         SELECT ?1, ?2, ?3, ?4, ?6, ?7, ?5
         WHERE (SELECT count(*) FROM credential_use_agents
                WHERE credential_key = ?1 AND source_ip = ?2) < ?8",
    )?;
    for ((key, ip, ua), a) in agg {
        let p = params![key, ip, ua, a.pod, a.count, a.first, a.last];
        if up.execute(p)? == 0 {
            ins.execute(params![
                key, ip, ua, a.pod, a.count, a.first, a.last, MAX_AGENTS
            ])?;
        }
    }
    Ok(())
}

/// Deletes rows unused since before `cut_ms` (retention).
pub fn prune(tx: &Transaction<'_>, cut_ms: i64) -> Result<usize, StoreError> {
    Ok(tx.execute(
        "DELETE FROM credential_use_agents WHERE last_seen_ms < ?1",
        params![cut_ms],
    )?)
}

/// A user agent seen from a source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentSeen {
    pub user_agent: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: u64,
}

/// Where a credential was used from, with the pod and user agents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UseSiteCtx {
    #[serde(flatten)]
    pub site: UseSite,
    pub pod: Option<String>,
    pub user_agents: Vec<AgentSeen>,
}

/// One of the credential's alerts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRef {
    pub id: String,
    pub rule: String,
    pub severity: String,
    pub time: DateTime<Utc>,
    pub source_ip: Option<String>,
}

/// Rows left out of an answer by its bounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Truncated {
    pub reads: u64,
    pub uses: u64,
    pub alerts: u64,
}

/// The inventory of one credential.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CredentialInventory {
    pub credential_id: String,
    pub kind: String,
    pub identities: Vec<String>,
    pub reads: Vec<ReadSite>,
    pub uses: Vec<UseSiteCtx>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minted_by: Option<serde_json::Value>,
    pub alerts: Vec<AlertRef>,
    pub truncated: Truncated,
}

/// The inventory of `key`, or `None` when nothing is known about it.
pub fn inventory(c: &Connection, key: &str) -> Result<Option<CredentialInventory>, QueryError> {
    let q = CredentialQuery {
        credential_id: Some(key.to_owned()),
        limit: 1,
        ..Default::default()
    };
    let entry = inventory::list_credentials(c, &q)?.into_iter().next();
    let alerts = alerts_of(c, key)?;
    let Some(e) = entry else {
        if alerts.is_empty() {
            return Ok(None);
        }
        return Ok(Some(CredentialInventory {
            credential_id: key.to_owned(),
            kind: String::new(),
            identities: Vec::new(),
            reads: Vec::new(),
            uses: Vec::new(),
            minted_by: None,
            truncated: Truncated {
                alerts: alert_count(c, key)?.saturating_sub(alerts.len() as u64),
                ..Default::default()
            },
            alerts,
        }));
    };
    let truncated = Truncated {
        reads: e.reads.len().saturating_sub(MAX_READS) as u64,
        uses: e.uses.len().saturating_sub(MAX_USES) as u64,
        alerts: alert_count(c, key)?.saturating_sub(alerts.len() as u64),
    };
    let mut st = c.prepare_cached(
        "SELECT user_agent, pod, first_seen_ms, last_seen_ms, count FROM credential_use_agents
         WHERE credential_key = ?1 AND source_ip = ?2 ORDER BY last_seen_ms DESC LIMIT ?3",
    )?;
    let mut uses = Vec::new();
    for site in e.uses.into_iter().take(MAX_USES) {
        let mut pod = None;
        let mut agents = Vec::new();
        let mut rows = st.query(params![key, site.source_ip, MAX_AGENTS])?;
        while let Some(r) = rows.next()? {
            if pod.is_none() {
                pod = r.get::<_, Option<String>>(1)?;
            }
            agents.push(AgentSeen {
                user_agent: r.get(0)?,
                first_seen: ms_to_time(r.get(2)?),
                last_seen: ms_to_time(r.get(3)?),
                count: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            });
        }
        uses.push(UseSiteCtx {
            site,
            pod,
            user_agents: agents,
        });
    }
    let mut reads = e.reads;
    reads.truncate(MAX_READS);
    Ok(Some(CredentialInventory {
        credential_id: e.credential_id,
        kind: e.kind,
        identities: e.identities,
        reads,
        uses,
        minted_by: e.minted_by,
        alerts,
        truncated,
    }))
}

/// `(sql condition, parameter)` selecting the alerts of `key`.
fn alert_match(key: &str) -> (&'static str, &str) {
    match key.strip_prefix("user:") {
        Some(user) => ("username = ?1 AND credential_id IS NULL", user),
        None => ("credential_id = ?1", key),
    }
}

fn alert_count(c: &Connection, key: &str) -> Result<u64, QueryError> {
    let (cond, p) = alert_match(key);
    let n: i64 = c.query_row(
        &format!("SELECT count(*) FROM alerts WHERE {cond}"),
        [p],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn alerts_of(c: &Connection, key: &str) -> Result<Vec<AlertRef>, QueryError> {
    let (cond, p) = alert_match(key);
    let mut st = c.prepare_cached(&format!(
        "SELECT id, rule, severity, time_ms, source_ip FROM alerts WHERE {cond}
         ORDER BY time_ms DESC, id DESC LIMIT ?2"
    ))?;
    let rows = st.query_map(params![p, MAX_ALERTS], |r| {
        Ok(AlertRef {
            id: r.get(0)?,
            rule: r.get(1)?,
            severity: r.get(2)?,
            time: ms_to_time(r.get(3)?),
            source_ip: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
