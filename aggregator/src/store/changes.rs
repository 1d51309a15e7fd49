//! Writes a batch's inventory and state changes ([`Changes`]) in its
//! transaction.
//!
//! Detection records one change per event (a credential used, a binding
//! changed, an RBAC audit level seen, ...). Many events of a batch touch the
//! same row, so the changes are first folded in memory, per distinct key,
//! into exactly what the row-by-row upserts would have left behind; then each
//! distinct key costs one upsert through a cached statement.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::Hash;

use chrono::{DateTime, Utc};
use rusqlite::{Transaction, params};

use super::StoreError;
use crate::detect::Changes;
use crate::detect::changes::{
    BaselineRow, BindingRow, CredentialReadRow, CredentialUse, NodeNetRow, RbacLevelRow, RoleRow,
};

/// Folds `items` into one accumulator per distinct key, in the order the keys
/// first appear.
fn fold_by_key<'a, T, K, A>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
    first: impl Fn(&'a T) -> A,
    merge: impl Fn(&mut A, &'a T),
) -> Vec<A>
where
    K: Hash + Eq,
{
    let mut at: HashMap<K, usize> = HashMap::with_capacity(items.len().min(1024));
    let mut out: Vec<A> = Vec::new();
    for it in items {
        match at.entry(key(it)) {
            Entry::Occupied(e) => merge(&mut out[*e.get()], it),
            Entry::Vacant(e) => {
                e.insert(out.len());
                out.push(first(it));
            }
        }
    }
    out
}

/// The last item per key (rows whose upsert overwrites every column).
fn last_by_key<'a, T, K: Hash + Eq>(items: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    fold_by_key(items, key, |t| t, |acc, t| *acc = t)
}

/// Several uses of one credential from one source IP.
struct UseAgg<'a> {
    /// The latest use (by time; the later one on a tie).
    latest: &'a CredentialUse,
    first_ms: i64,
    count: i64,
}

/// Several reads of one credential by one process of one node, one path.
struct ReadAgg<'a> {
    /// The first read: its columns are the ones an insert keeps.
    first: &'a CredentialReadRow,
    /// The last read: observation id, comm and exe are overwritten by it.
    last: &'a CredentialReadRow,
    last_ms: i64,
    reads: i64,
}

/// Sightings of one source IP for one identity.
struct BaselineAgg<'a> {
    first: &'a BaselineRow,
    last_ms: i64,
    count: i64,
    learned: bool,
}

/// Sightings of one audit level for one RBAC resource.
struct LevelAgg<'a> {
    last: &'a RbacLevelRow,
    last_ms: i64,
    count: i64,
}

/// Writes the inventory and state changes of a batch.
pub fn write_changes(
    tx: &Transaction<'_>,
    c: &Changes,
    _now: DateTime<Utc>,
) -> Result<(), StoreError> {
    write_uses(tx, &c.credential_uses)?;
    write_reads(tx, &c.credential_reads)?;
    write_bindings(tx, &c.bindings)?;
    write_roles(tx, &c.roles)?;
    write_baselines(tx, &c.baselines)?;
    write_identities(tx, &c.identities)?;
    write_rbac_levels(tx, &c.rbac_levels)?;
    write_node_network(tx, &c.node_network)?;
    super::learned::write_learned(tx, c)?;
    super::activity::write_activity(tx, &c.activity)?;
    super::inventory_ctx::write_use_context(tx, &c.use_context)?;
    write_suppression_hits(tx, &c.suppression_hits)?;
    write_automation_blind(tx, &c.automation_blind)
}

fn write_automation_blind(
    tx: &Transaction<'_>,
    rows: &[crate::detect::changes::AutomationBlindRow],
) -> Result<(), StoreError> {
    let mut st = tx.prepare_cached(
        "INSERT INTO coverage_automation_blind(automation, resource, count, last_seen_ms, example)
         VALUES (?1, ?2, 1, ?3, ?4)
         ON CONFLICT(automation, resource) DO UPDATE SET count = count + 1,
            last_seen_ms = max(last_seen_ms, excluded.last_seen_ms), example = excluded.example",
    )?;
    for r in rows {
        st.execute(params![
            r.automation,
            r.resource,
            r.time_ms,
            serde_json::to_string(&r.example)?
        ])?;
    }
    Ok(())
}

fn write_uses(tx: &Transaction<'_>, uses: &[CredentialUse]) -> Result<(), StoreError> {
    if uses.is_empty() {
        return Ok(());
    }
    let agg = fold_by_key(
        uses,
        |u| (u.key.as_str(), u.source_ip.as_str()),
        |u| UseAgg {
            latest: u,
            first_ms: u.time_ms,
            count: 1,
        },
        |a, u| {
            a.count += 1;
            a.first_ms = a.first_ms.min(u.time_ms);
            if u.time_ms >= a.latest.time_ms {
                a.latest = u;
            }
        },
    );
    let mut st = tx.prepare_cached(
        "INSERT INTO credential_uses(credential_key, username, source_ip, source_class, node,
            first_seen_ms, last_seen_ms, count, last_audit_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT(credential_key, source_ip) DO UPDATE SET count = count + excluded.count,
            source_class = excluded.source_class, node = coalesce(excluded.node, node),
            first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
            last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),
            last_audit_id = CASE WHEN excluded.last_seen_ms >= last_seen_ms THEN excluded.last_audit_id ELSE last_audit_id END",
    )?;
    for a in agg {
        let u = a.latest;
        let class = serde_json::to_value(u.class)?;
        st.execute(params![
            u.key,
            u.username,
            u.source_ip,
            class.as_str().unwrap_or("unknown"),
            u.node,
            a.first_ms,
            u.time_ms,
            a.count,
            u.audit_id
        ])?;
    }
    Ok(())
}

fn write_reads(tx: &Transaction<'_>, reads: &[CredentialReadRow]) -> Result<(), StoreError> {
    if reads.is_empty() {
        return Ok(());
    }
    let agg = fold_by_key(
        reads,
        |r| (r.key.as_str(), r.node.as_str(), r.tgid, r.path.as_str()),
        |r| ReadAgg {
            first: r,
            last: r,
            last_ms: r.time_ms,
            reads: i64::from(r.reads),
        },
        |a, r| {
            a.last = r;
            a.last_ms = a.last_ms.max(r.time_ms);
            a.reads += i64::from(r.reads);
        },
    );
    let mut st = tx.prepare_cached(
        "INSERT INTO credential_reads(credential_key, kind, username, fingerprint, node, pod_namespace, pod_name,
            pod_uid, container_id, tgid, comm, exe, path, first_seen_ms, last_seen_ms, reads, observation_id,
            expires_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)
         ON CONFLICT(credential_key, node, tgid, path) DO UPDATE SET reads = reads + excluded.reads,
            last_seen_ms = max(last_seen_ms, excluded.last_seen_ms), observation_id = excluded.observation_id,
            comm = excluded.comm, exe = excluded.exe, expires_ms = excluded.expires_ms",
    )?;
    for a in agg {
        let (f, l) = (a.first, a.last);
        st.execute(params![
            f.key,
            f.kind,
            f.username,
            f.fingerprint,
            f.node,
            f.pod_namespace,
            f.pod_name,
            f.pod_uid,
            f.container_id,
            f.tgid,
            l.comm,
            l.exe,
            f.path,
            f.time_ms,
            a.last_ms,
            a.reads,
            l.observation_id,
            l.expires_ms
        ])?;
    }
    Ok(())
}

fn write_bindings(tx: &Transaction<'_>, bindings: &[BindingRow]) -> Result<(), StoreError> {
    if bindings.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO bindings(kind, namespace, name, role_kind, role_name, subjects, high_privilege, last_verb,
            last_actor, last_source_ip, last_audit_id, last_change_ms, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(kind, namespace, name) DO UPDATE SET role_kind = excluded.role_kind,
            role_name = excluded.role_name, subjects = excluded.subjects,
            high_privilege = excluded.high_privilege, last_verb = excluded.last_verb,
            last_actor = excluded.last_actor, last_source_ip = excluded.last_source_ip,
            last_audit_id = excluded.last_audit_id, last_change_ms = excluded.last_change_ms,
            deleted = excluded.deleted",
    )?;
    for b in last_by_key(bindings, |b| {
        (b.kind.as_str(), b.namespace.as_str(), b.name.as_str())
    }) {
        st.execute(params![
            b.kind,
            b.namespace,
            b.name,
            b.role_kind,
            b.role_name,
            serde_json::to_string(&b.subjects)?,
            b.high_privilege,
            b.verb,
            b.actor,
            b.source_ip,
            b.audit_id,
            b.time_ms,
            b.deleted
        ])?;
    }
    Ok(())
}

fn write_roles(tx: &Transaction<'_>, roles: &[RoleRow]) -> Result<(), StoreError> {
    if roles.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO roles(kind, namespace, name, rules, high_privilege, reasons, origin, audit_id, updated_ms, deleted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT(kind, namespace, name) DO UPDATE SET rules = excluded.rules,
            high_privilege = excluded.high_privilege, reasons = excluded.reasons, origin = excluded.origin,
            audit_id = excluded.audit_id, updated_ms = excluded.updated_ms, deleted = excluded.deleted",
    )?;
    for r in last_by_key(roles, |r| {
        (r.kind.as_str(), r.namespace.as_str(), r.name.as_str())
    }) {
        st.execute(params![
            r.kind,
            r.namespace,
            r.name,
            serde_json::to_string(&r.rules)?,
            !r.reasons.is_empty(),
            serde_json::to_string(&r.reasons)?,
            r.origin,
            r.audit_id,
            r.time_ms,
            r.deleted
        ])?;
    }
    Ok(())
}

fn write_baselines(tx: &Transaction<'_>, rows: &[BaselineRow]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let agg = fold_by_key(
        rows,
        |b| (b.username.as_str(), b.source_ip.as_str()),
        |b| BaselineAgg {
            first: b,
            last_ms: b.time_ms,
            count: 1,
            learned: b.learned,
        },
        |a, b| {
            a.last_ms = a.last_ms.max(b.time_ms);
            a.count += 1;
            a.learned |= b.learned;
        },
    );
    let mut st = tx.prepare_cached(
        "INSERT INTO baselines(username, source_ip, first_seen_ms, last_seen_ms, count, learned)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(username, source_ip) DO UPDATE SET last_seen_ms = max(last_seen_ms, excluded.last_seen_ms),
            count = count + excluded.count, learned = max(learned, excluded.learned)",
    )?;
    for a in agg {
        st.execute(params![
            a.first.username,
            a.first.source_ip,
            a.first.time_ms,
            a.last_ms,
            a.count,
            a.learned
        ])?;
    }
    Ok(())
}

fn write_identities(tx: &Transaction<'_>, ids: &[(String, i64)]) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let agg = fold_by_key(
        ids,
        |(u, _)| u.as_str(),
        |(u, t)| (u, *t, *t),
        |a, (_, t)| {
            a.1 = a.1.min(*t);
            a.2 = a.2.max(*t);
        },
    );
    let mut st = tx.prepare_cached(
        "INSERT INTO identities(username, first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT(username) DO UPDATE SET first_seen_ms = min(first_seen_ms, excluded.first_seen_ms),
            last_seen_ms = max(last_seen_ms, excluded.last_seen_ms)",
    )?;
    for (u, first, last) in agg {
        st.execute(params![u, first, last])?;
    }
    Ok(())
}

fn write_rbac_levels(tx: &Transaction<'_>, levels: &[RbacLevelRow]) -> Result<(), StoreError> {
    if levels.is_empty() {
        return Ok(());
    }
    let agg = fold_by_key(
        levels,
        |l| (l.resource.as_str(), l.level.as_str()),
        |l| LevelAgg {
            last: l,
            last_ms: l.time_ms,
            count: 1,
        },
        |a, l| {
            a.last = l;
            a.last_ms = a.last_ms.max(l.time_ms);
            a.count += 1;
        },
    );
    let mut st = tx.prepare_cached(
        "INSERT INTO coverage_rbac_levels(resource, level, count, last_seen_ms, last_audit_id)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(resource, level) DO UPDATE SET count = count + excluded.count,
            last_seen_ms = max(last_seen_ms, excluded.last_seen_ms), last_audit_id = excluded.last_audit_id",
    )?;
    for a in agg {
        st.execute(params![
            a.last.resource,
            a.last.level,
            a.count,
            a.last_ms,
            a.last.audit_id
        ])?;
    }
    Ok(())
}

fn write_node_network(tx: &Transaction<'_>, nodes: &[NodeNetRow]) -> Result<(), StoreError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let mut st = tx.prepare_cached(
        "INSERT INTO node_network(node, addresses, pod_cidrs, updated_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(node) DO UPDATE SET addresses = excluded.addresses, pod_cidrs = excluded.pod_cidrs,
            updated_ms = excluded.updated_ms",
    )?;
    for n in last_by_key(nodes, |n| n.node.as_str()) {
        st.execute(params![
            n.node,
            serde_json::to_string(&n.addresses)?,
            serde_json::to_string(&n.pod_cidrs)?,
            n.time_ms
        ])?;
    }
    Ok(())
}

fn write_suppression_hits(tx: &Transaction<'_>, hits: &[(String, i64)]) -> Result<(), StoreError> {
    if hits.is_empty() {
        return Ok(());
    }
    let agg = fold_by_key(
        hits,
        |(id, _)| id.as_str(),
        |(id, t)| (id, *t, 1i64),
        |a, (_, t)| {
            a.1 = a.1.max(*t);
            a.2 += 1;
        },
    );
    let mut st = tx.prepare_cached(
        "UPDATE suppressions SET hits = hits + ?3, last_hit_ms = max(coalesce(last_hit_ms, 0), ?2) WHERE id = ?1",
    )?;
    for (id, last, n) in agg {
        st.execute(params![id, last, n])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
