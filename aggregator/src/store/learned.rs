//! Storing what detection learned: cluster facts (nodes inventory), token
//! lineage, and the event behind each baseline source. Tables in `learned.sql`.

use rusqlite::{Transaction, params};

use super::StoreError;
use crate::detect::Changes;
use crate::detect::cluster::ClusterChange;

/// The tables, applied with the main schema.
pub const LEARNED_SCHEMA: &str = include_str!("learned.sql");

/// Writes the learned parts of a batch's changes.
pub fn write_learned(tx: &Transaction<'_>, c: &Changes) -> Result<(), StoreError> {
    for ch in &c.cluster {
        match ch {
            ClusterChange::Learned(v) => {
                let facts = serde_json::json!({"addresses": v.addresses, "pod_cidrs": v.pod_cidrs});
                let t = v
                    .addresses
                    .iter()
                    .map(|(_, p)| p.last)
                    .chain(v.pod_cidrs.iter().map(|(_, p)| p.last))
                    .max()
                    .map_or(0, |t| t.timestamp_millis());
                tx.prepare_cached(
                    "INSERT INTO learned_nodes(node, uid, facts, released, release_audit_id, updated_ms)
                     VALUES (?1, ?2, ?3, 0, NULL, ?4)
                     ON CONFLICT(node) DO UPDATE SET uid = excluded.uid, facts = excluded.facts,
                        released = 0, release_audit_id = NULL, updated_ms = excluded.updated_ms",
                )?
                .execute(params![v.node, v.uid, facts.to_string(), t])?;
            }
            ClusterChange::Released {
                node,
                audit_id,
                time_ms,
            } => {
                tx.prepare_cached(
                    "INSERT INTO learned_nodes(node, uid, facts, released, release_audit_id, updated_ms)
                     VALUES (?1, NULL, '{}', 1, ?2, ?3)
                     ON CONFLICT(node) DO UPDATE SET facts = '{}', released = 1,
                        release_audit_id = excluded.release_audit_id, updated_ms = excluded.updated_ms",
                )?
                .execute(params![node, (!audit_id.is_empty()).then_some(audit_id), time_ms])?;
                tx.prepare_cached("DELETE FROM node_network WHERE node = ?1")?
                    .execute(params![node])?;
            }
        }
    }
    for m in &c.minted {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO token_lineage(jti, service_account, minter, minter_credential, source_ip,
                bound_to, expiration_seconds, user_agent, incident, audit_id, time_ms, minter_expected)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?
        .execute(params![
            m.jti,
            m.service_account,
            m.minter,
            m.minter_credential,
            m.source_ip.map(|i| i.to_string()),
            m.bound_to,
            m.expiration_seconds,
            m.user_agent,
            m.incident,
            m.audit_id,
            m.time.timestamp_millis(),
            serde_json::json!({
                "nodes": m.minter_nodes,
                "pod_uids": m.minter_pod_uids,
                "cidrs": m.minter_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            })
            .to_string()
        ])?;
    }
    for b in &c.baselines {
        tx.prepare_cached(
            "INSERT INTO baseline_sources(username, source_ip, learned, audit_id, time_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(username, source_ip) DO UPDATE SET learned = excluded.learned,
                audit_id = excluded.audit_id, time_ms = excluded.time_ms
             WHERE excluded.learned > learned",
        )?
        .execute(params![
            b.username,
            b.source_ip,
            b.learned,
            b.audit_id,
            b.time_ms
        ])?;
    }
    Ok(())
}

/// Most rows one inventory answer holds.
pub const MAX_ROWS: i64 = 5000;

/// Learned nodes (nodes inventory, `learned` section).
pub fn list_learned_nodes(c: &rusqlite::Connection) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut st = c.prepare(
        "SELECT node, uid, facts, released, release_audit_id, updated_ms FROM learned_nodes
         ORDER BY node LIMIT ?1",
    )?;
    let rows = st.query_map([MAX_ROWS], |r| {
        Ok(serde_json::json!({
            "node": r.get::<_, String>(0)?,
            "uid": r.get::<_, Option<String>>(1)?,
            "facts": serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(2)?).unwrap_or_default(),
            "released": r.get::<_, bool>(3)?,
            "release_audit_id": r.get::<_, Option<String>>(4)?,
            "updated_ms": r.get::<_, i64>(5)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Baselines: identity → sources seen, learned or not, and the event that taught each.
pub fn list_baselines(
    c: &rusqlite::Connection,
    username: Option<&str>,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut st = c.prepare(
        "SELECT b.username, b.source_ip, b.learned, b.first_seen_ms, b.last_seen_ms, b.count,
                s.audit_id, s.time_ms
         FROM baselines b LEFT JOIN baseline_sources s
           ON s.username = b.username AND s.source_ip = b.source_ip
         WHERE ?1 IS NULL OR b.username = ?1
         ORDER BY b.username, b.source_ip LIMIT ?2",
    )?;
    let rows = st.query_map(params![username, MAX_ROWS], |r| {
        Ok(serde_json::json!({
            "username": r.get::<_, String>(0)?,
            "source_ip": r.get::<_, String>(1)?,
            "learned": r.get::<_, bool>(2)?,
            "first_seen_ms": r.get::<_, i64>(3)?,
            "last_seen_ms": r.get::<_, i64>(4)?,
            "count": r.get::<_, i64>(5)?,
            "taught_by_audit_id": r.get::<_, Option<String>>(6)?,
            "taught_ms": r.get::<_, Option<i64>>(7)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Drops one baseline source; returns whether it existed.
pub fn drop_baseline(
    tx: &Transaction<'_>,
    username: &str,
    source_ip: &str,
) -> Result<bool, StoreError> {
    let n = tx.execute(
        "DELETE FROM baselines WHERE username = ?1 AND source_ip = ?2",
        params![username, source_ip],
    )?;
    tx.execute(
        "DELETE FROM baseline_sources WHERE username = ?1 AND source_ip = ?2",
        params![username, source_ip],
    )?;
    Ok(n > 0)
}

/// Token lineage rows (newest first), optionally for one JTI.
pub fn list_lineage(
    c: &rusqlite::Connection,
    jti: Option<&str>,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let mut st = c.prepare(
        "SELECT jti, service_account, minter, minter_credential, source_ip, bound_to,
                expiration_seconds, user_agent, incident, audit_id, time_ms
         FROM token_lineage WHERE ?1 IS NULL OR jti = ?1 ORDER BY time_ms DESC LIMIT ?2",
    )?;
    let rows = st.query_map(params![jti, MAX_ROWS], |r| {
        Ok(serde_json::json!({
            "jti": r.get::<_, String>(0)?,
            "service_account": r.get::<_, String>(1)?,
            "minter": r.get::<_, String>(2)?,
            "minter_credential": r.get::<_, Option<String>>(3)?,
            "source_ip": r.get::<_, Option<String>>(4)?,
            "bound_to": r.get::<_, Option<String>>(5)?,
            "expiration_seconds": r.get::<_, Option<i64>>(6)?,
            "user_agent": r.get::<_, Option<String>>(7)?,
            "incident": r.get::<_, Option<String>>(8)?,
            "audit_id": r.get::<_, String>(9)?,
            "time_ms": r.get::<_, i64>(10)?,
        }))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What detection learned, as stored, for restoring it at start.
#[derive(Debug, Default)]
pub struct LoadedLearned {
    pub minted: Vec<crate::detect::lineage::Minted>,
    /// `(node, uid, addresses, pod CIDRs)` with their provenance.
    pub nodes: Vec<crate::detect::cluster::LearnedNodeView>,
}

/// Reads the stored lineage (bounded: the newest rows) and learned nodes.
pub fn load_learned(
    c: &rusqlite::Connection,
    max_minted: i64,
) -> Result<LoadedLearned, StoreError> {
    use crate::detect::cluster::{LearnedNodeView, Provenance};
    let mut out = LoadedLearned::default();
    let mut st = c.prepare(
        "SELECT jti, service_account, minter, minter_credential, source_ip, bound_to,
                expiration_seconds, user_agent, incident, audit_id, time_ms, minter_expected
         FROM token_lineage
         WHERE time_ms + min(max(coalesce(expiration_seconds, 0), 0), ?2) * 1000 + ?3
             >= (SELECT coalesce(max(time_ms), 0) FROM token_lineage)
         ORDER BY time_ms DESC LIMIT ?1",
    )?;
    // Tokens past their expiry (and the day lineage keeps them after it,
    // `detect/lineage.rs`) by the newest minting stored are not loaded: no
    // request can use them any more. (The store's clock, not the wall
    // clock: a log tail catching up after a restart judges older events.)
    let rows = st.query_map(
        rusqlite::params![
            max_minted,
            crate::detect::lineage::MAX_LIFE_S,
            crate::detect::lineage::KEEP_AFTER_EXPIRY.num_milliseconds(),
        ],
        |r| {
            let exp: serde_json::Value =
                serde_json::from_str(&r.get::<_, String>(11)?).unwrap_or_default();
            let strs = |k: &str| -> Vec<String> {
                exp.get(k)
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            Ok(crate::detect::lineage::Minted {
                jti: r.get(0)?,
                service_account: r.get(1)?,
                minter: r.get(2)?,
                minter_credential: r.get(3)?,
                source_ip: r.get::<_, Option<String>>(4)?.and_then(|s| s.parse().ok()),
                bound_to: r.get(5)?,
                expiration_seconds: r.get(6)?,
                user_agent: r.get(7)?,
                incident: r.get(8)?,
                audit_id: r.get(9)?,
                time: chrono::DateTime::from_timestamp_millis(r.get(10)?).unwrap_or_default(),
                minter_nodes: strs("nodes"),
                minter_pod_uids: strs("pod_uids"),
                minter_cidrs: strs("cidrs")
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect(),
            })
        },
    )?;
    for m in rows {
        out.minted.push(m?);
    }
    out.minted.reverse();
    let mut st =
        c.prepare("SELECT node, uid, facts FROM learned_nodes WHERE released = 0 ORDER BY node")?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (node, uid, facts) = row?;
        #[derive(serde::Deserialize, Default)]
        struct Facts {
            #[serde(default)]
            addresses: Vec<(String, Provenance)>,
            #[serde(default)]
            pod_cidrs: Vec<(String, Provenance)>,
        }
        let f: Facts = serde_json::from_str(&facts).unwrap_or_default();
        out.nodes.push(LearnedNodeView {
            node,
            uid,
            addresses: f.addresses,
            pod_cidrs: f.pod_cidrs,
        });
    }
    Ok(out)
}
