//! Restoring detection state from the store at start.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use credtrail_proto::model::Observation;
use ipnet::IpNet;
use rusqlite::{Connection, params};

use super::StoreError;
use crate::detect::changes::{BindingRow, RoleRow};
use crate::detect::limits::READ_EXPIRY_GRACE;
use crate::detect::sightings::ReadSighting;
use crate::policy::{StateLimits, Suppression, SuppressionMatch};

/// API connections younger than this (relative to the newest) are replayed
/// into memory at start, for the join.
const RECENT_CONNECT_MS: i64 = 60 * 60 * 1000;

/// `(node, addresses, pod CIDRs, updated)`.
pub type StoredNode = (String, Vec<IpAddr>, Vec<IpNet>, DateTime<Utc>);

/// Everything the detector keeps in memory, as stored.
#[derive(Debug, Default)]
pub struct LoadedState {
    /// `(credential key, username, sighting)`.
    pub reads: Vec<(String, Option<String>, ReadSighting)>,
    pub nodes: Vec<StoredNode>,
    pub recent_connects: Vec<Observation>,
    pub roles: Vec<RoleRow>,
    pub bindings: Vec<BindingRow>,
    /// `(username, ip, learned, last seen)`, oldest first.
    pub baselines: Vec<(String, IpAddr, bool, DateTime<Utc>)>,
    /// `(username, first seen, last seen)`, oldest first.
    pub identities: Vec<(String, DateTime<Utc>, DateTime<Utc>)>,
    pub suppressions: Vec<Suppression>,
}

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

/// Reads the suppressions (policy and API ones).
pub fn load_suppressions(c: &Connection) -> Result<Vec<Suppression>, StoreError> {
    let mut st = c.prepare(
        "SELECT id, owner, reason, created, expires, matcher FROM suppressions \
         WHERE deleted IS NULL ORDER BY id",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, String>(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, owner, reason, created, expires, matcher) = row?;
        let parse = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .map(|t| t.with_timezone(&Utc))
                .ok()
        };
        let matcher: SuppressionMatch = serde_json::from_str(&matcher)?;
        let (Some(created), Some(expires)) = (parse(&created), parse(&expires)) else {
            continue;
        };
        let source_cidr = matcher
            .source_cidr
            .as_deref()
            .and_then(crate::policy::parse_cidr);
        out.push(Suppression {
            id,
            owner,
            reason,
            created,
            expires,
            matcher,
            source_cidr,
        });
    }
    Ok(out)
}

/// Reads the detector's state, with the default [`StateLimits`].
pub fn load_state(c: &Connection) -> Result<LoadedState, StoreError> {
    load_state_capped(c, &StateLimits::default())
}

/// Reads the detector's state: of each kind only the most recently seen rows
/// the detector's maps can hold (`lim`), so start-up time and memory stay
/// bounded however large the database is. Rows come oldest first, so the
/// detector's maps keep their least-recently-used order.
pub fn load_state_capped(c: &Connection, lim: &StateLimits) -> Result<LoadedState, StoreError> {
    let mut s = LoadedState::default();
    let cap = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    {
        let mut st = c.prepare(
            "SELECT * FROM (SELECT credential_key, username, node, tgid, comm, exe, container_id, pod_uid,
                pod_namespace, pod_name, path, last_seen_ms, observation_id, expires_ms FROM credential_reads
                WHERE expires_ms IS NULL
                    OR expires_ms + ?2 > (SELECT coalesce(max(last_seen_ms), 0) FROM credential_reads)
                ORDER BY last_seen_ms DESC LIMIT ?1) ORDER BY last_seen_ms",
        )?;
        // Reads of tokens expired (with the grace) by the newest read stored
        // stay in the inventory until retention, but are not detection state
        // any more. (The store's clock, not the wall clock: a log tail
        // catching up after a restart judges events older than now.)
        let grace = READ_EXPIRY_GRACE.num_milliseconds();
        let rows = st.query_map(params![cap(lim.max_credentials), grace], |r| {
            let ns: Option<String> = r.get(8)?;
            let name: Option<String> = r.get(9)?;
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                ReadSighting {
                    node: r.get(2)?,
                    tgid: r.get(3)?,
                    comm: r.get(4)?,
                    exe: r.get(5)?,
                    container_id: r.get(6)?,
                    pod_uid: r.get(7)?,
                    pod: ns.zip(name).map(|(ns, n)| format!("{ns}/{n}")),
                    path: r.get(10)?,
                    time: time(r.get(11)?),
                    observation_id: r.get(12)?,
                    expires: r
                        .get::<_, Option<i64>>(13)?
                        .and_then(DateTime::from_timestamp_millis),
                },
            ))
        })?;
        for row in rows {
            s.reads.push(row?);
        }
    }
    {
        let mut st = c.prepare(
            "SELECT * FROM (SELECT node, addresses, pod_cidrs, updated_ms FROM node_network
                ORDER BY updated_ms DESC LIMIT ?1) ORDER BY updated_ms, node",
        )?;
        let rows = st.query_map([cap(lim.max_nodes)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (node, a, p, at) = row?;
            let addrs: Vec<String> = json(&a);
            let cidrs: Vec<String> = json(&p);
            s.nodes.push((
                node,
                addrs.iter().filter_map(|x| x.parse().ok()).collect(),
                cidrs.iter().filter_map(|x| x.parse().ok()).collect(),
                time(at),
            ));
        }
    }
    {
        let newest: i64 = c.query_row(
            "SELECT coalesce(max(time_ms), 0) FROM observations WHERE type = 'api_connect'",
            [],
            |r| r.get(0),
        )?;
        let mut st = c.prepare(
            "SELECT json FROM observations WHERE type = 'api_connect' AND time_ms >= ?1 ORDER BY time_ms, id",
        )?;
        let rows = st.query_map([newest - RECENT_CONNECT_MS], |r| r.get::<_, String>(0))?;
        for row in rows {
            if let Ok(o) = serde_json::from_str(&row?) {
                s.recent_connects.push(o);
            }
        }
    }
    {
        let mut st = c.prepare(
            "SELECT * FROM (SELECT kind, namespace, name, rules, reasons, origin, audit_id, updated_ms FROM roles
                WHERE deleted = 0 ORDER BY updated_ms DESC LIMIT ?1) ORDER BY updated_ms",
        )?;
        let rows = st.query_map([cap(lim.max_rbac_objects)], |r| {
            Ok(RoleRow {
                kind: r.get(0)?,
                namespace: r.get(1)?,
                name: r.get(2)?,
                rules: json(&r.get::<_, String>(3)?),
                reasons: json(&r.get::<_, String>(4)?),
                origin: r.get(5)?,
                audit_id: r.get(6)?,
                time_ms: r.get(7)?,
                deleted: false,
            })
        })?;
        for row in rows {
            s.roles.push(row?);
        }
    }
    {
        let mut st = c.prepare(
            "SELECT kind, namespace, name, role_kind, role_name, subjects, high_privilege, last_verb, last_actor,
                last_source_ip, last_audit_id, last_change_ms FROM bindings WHERE deleted = 0
                ORDER BY last_change_ms DESC LIMIT ?1",
        )?;
        let rows = st.query_map([cap(lim.max_rbac_objects)], |r| {
            Ok(BindingRow {
                kind: r.get(0)?,
                namespace: r.get(1)?,
                name: r.get(2)?,
                role_kind: r.get(3)?,
                role_name: r.get(4)?,
                subjects: json(&r.get::<_, String>(5)?),
                high_privilege: r.get(6)?,
                verb: r.get(7)?,
                actor: r.get(8)?,
                source_ip: r.get(9)?,
                audit_id: r.get(10)?,
                time_ms: r.get(11)?,
                deleted: false,
            })
        })?;
        for row in rows {
            s.bindings.push(row?);
        }
        s.bindings.reverse();
    }
    {
        // The baselines of the identities loaded below.
        let mut st = c.prepare(
            "SELECT b.username, b.source_ip, b.learned, b.last_seen_ms FROM baselines b
                JOIN (SELECT username FROM identities ORDER BY last_seen_ms DESC LIMIT ?1) i
                ON i.username = b.username ORDER BY b.last_seen_ms",
        )?;
        let rows = st.query_map([cap(lim.max_identities)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, bool>(2)?,
                time(r.get(3)?),
            ))
        })?;
        for row in rows {
            let (u, ip, l, at) = row?;
            if let Ok(ip) = ip.parse() {
                s.baselines.push((u, ip, l, at));
            }
        }
    }
    {
        let mut st = c.prepare(
            "SELECT * FROM (SELECT username, first_seen_ms, last_seen_ms FROM identities
                ORDER BY last_seen_ms DESC LIMIT ?1) ORDER BY last_seen_ms",
        )?;
        let rows = st.query_map([cap(lim.max_identities)], |r| {
            Ok((r.get::<_, String>(0)?, time(r.get(1)?), time(r.get(2)?)))
        })?;
        for row in rows {
            s.identities.push(row?);
        }
    }
    s.suppressions = load_suppressions(c)?;
    Ok(s)
}

/// One identity's stored state: first and last sighting, baseline addresses.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredIdentity {
    pub username: String,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    /// `(source IP, learned)`, oldest first.
    pub baselines: Vec<(IpAddr, bool)>,
}

/// The stored state of these identities (those the store knows), for the
/// detector to take back what its bounded maps let go: one primary-key
/// lookup per identity.
pub fn load_identities(
    c: &Connection,
    users: &[String],
) -> Result<Vec<StoredIdentity>, StoreError> {
    let mut id =
        c.prepare_cached("SELECT first_seen_ms, last_seen_ms FROM identities WHERE username = ?1")?;
    let mut bl = c.prepare_cached(
        "SELECT source_ip, learned FROM baselines WHERE username = ?1 ORDER BY last_seen_ms",
    )?;
    let mut out = Vec::new();
    for u in users {
        let mut rows = id.query([u])?;
        let Some(r) = rows.next()? else { continue };
        let (first, last) = (time(r.get(0)?), time(r.get(1)?));
        let baselines = bl
            .query_map([u], |r| Ok((r.get::<_, String>(0)?, r.get::<_, bool>(1)?)))?
            .filter_map(|r| r.ok())
            .filter_map(|(ip, l)| ip.parse().ok().map(|ip| (ip, l)))
            .collect();
        out.push(StoredIdentity {
            username: u.clone(),
            first,
            last,
            baselines,
        });
    }
    Ok(out)
}
