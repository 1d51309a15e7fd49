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
                bound_to, expiration_seconds, user_agent, incident, audit_id, time_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
            m.time.timestamp_millis()
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
