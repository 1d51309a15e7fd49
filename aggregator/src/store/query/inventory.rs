//! Inventories: credentials (where read, where used), nodes and their agents,
//! (Cluster)RoleBindings.

use chrono::{DateTime, Utc};
use rusqlite::Connection;
use rusqlite::types::Value;
use serde::Serialize;

use super::{QueryError, json_column, ms_to_time};

/// Where a credential was read (one row per node, process, path).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReadSite {
    pub node: String,
    /// Pod `ns/name`, when attributed.
    pub pod: Option<String>,
    pub container_id: Option<String>,
    /// 0 for the agent's start-up scan.
    pub tgid: u32,
    pub comm: Option<String>,
    pub exe: Option<String>,
    pub path: String,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub reads: u64,
}

/// Where a credential was used from (one row per source IP).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UseSite {
    pub username: String,
    pub source_ip: String,
    pub source_class: String,
    /// Node the source resolved to.
    pub node: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: u64,
    pub last_audit_id: String,
}

/// One credential, by id; never its secret.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CredentialEntry {
    /// `JTI=...`, `X509SHA256=...`, `sha256:<fingerprint>` or `user:<username>`.
    pub credential_id: String,
    /// From the agents' reads; empty when only seen in audit.
    pub kind: String,
    /// Usernames it carries or was used as.
    pub identities: Vec<String>,
    pub reads: Vec<ReadSite>,
    pub uses: Vec<UseSite>,
    /// Who minted this token (TokenRequest lineage), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minted_by: Option<serde_json::Value>,
}

/// Filters for the credential inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialQuery {
    pub credential_id: Option<String>,
    /// Read on this node or used from it.
    pub node: Option<String>,
    /// Carries or was used as this username.
    pub identity: Option<String>,
    pub limit: u32,
}

/// Credentials, most recently active first.
pub fn list_credentials(
    conn: &Connection,
    q: &CredentialQuery,
) -> Result<Vec<CredentialEntry>, QueryError> {
    let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::Text);
    let mut stmt = conn.prepare_cached(
        "SELECT credential_key, MAX(last) AS last FROM ( \
           SELECT credential_key, last_seen_ms AS last, node, username FROM credential_reads \
           UNION ALL \
           SELECT credential_key, last_seen_ms, node, username FROM credential_uses) \
         WHERE (?1 IS NULL OR credential_key = ?1) \
           AND (?2 IS NULL OR node = ?2) \
           AND (?3 IS NULL OR username = ?3) \
         GROUP BY credential_key ORDER BY last DESC, credential_key LIMIT ?4",
    )?;
    let keys: Vec<String> = stmt
        .query_map(
            rusqlite::params![
                opt(&q.credential_id),
                opt(&q.node),
                opt(&q.identity),
                i64::from(q.limit)
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    keys.into_iter().map(|k| credential(conn, k)).collect()
}

fn credential(conn: &Connection, key: String) -> Result<CredentialEntry, QueryError> {
    let mut kind = String::new();
    let mut identities: Vec<String> = Vec::new();
    let mut reads = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT kind, username, node, pod_namespace, pod_name, container_id, tgid, comm, exe, \
                path, first_seen_ms, last_seen_ms, reads \
         FROM credential_reads WHERE credential_key = ? ORDER BY last_seen_ms DESC",
    )?;
    let mut rows = stmt.query([&key])?;
    while let Some(r) = rows.next()? {
        let k: String = r.get(0)?;
        if kind.is_empty() {
            kind = k;
        }
        if let Some(u) = r.get::<_, Option<String>>(1)? {
            identities.push(u);
        }
        let (ns, name): (Option<String>, Option<String>) = (r.get(3)?, r.get(4)?);
        reads.push(ReadSite {
            node: r.get(2)?,
            pod: match (ns, name) {
                (Some(ns), Some(n)) => Some(format!("{ns}/{n}")),
                (None, Some(n)) => Some(n),
                _ => None,
            },
            container_id: r.get(5)?,
            tgid: u32::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            comm: r.get(7)?,
            exe: r.get(8)?,
            path: r.get(9)?,
            first_seen: ms_to_time(r.get(10)?),
            last_seen: ms_to_time(r.get(11)?),
            reads: u64::try_from(r.get::<_, i64>(12)?).unwrap_or(0),
        });
    }
    let mut uses = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT username, source_ip, source_class, node, first_seen_ms, last_seen_ms, count, \
                last_audit_id \
         FROM credential_uses WHERE credential_key = ? ORDER BY last_seen_ms DESC",
    )?;
    let mut rows = stmt.query([&key])?;
    while let Some(r) = rows.next()? {
        let username: String = r.get(0)?;
        identities.push(username.clone());
        uses.push(UseSite {
            username,
            source_ip: r.get(1)?,
            source_class: r.get(2)?,
            node: r.get(3)?,
            first_seen: ms_to_time(r.get(4)?),
            last_seen: ms_to_time(r.get(5)?),
            count: u64::try_from(r.get::<_, i64>(6)?).unwrap_or(0),
            last_audit_id: r.get(7)?,
        });
    }
    identities.sort();
    identities.dedup();
    let minted_by = crate::store::learned::list_lineage(conn, Some(&key))
        .ok()
        .and_then(|v| v.into_iter().next());
    Ok(CredentialEntry {
        credential_id: key,
        kind,
        identities,
        reads,
        uses,
        minted_by,
    })
}

/// A node and its agent, from the `agents` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeEntry {
    pub name: String,
    pub agent_version: Option<String>,
    pub kernel: Option<String>,
    pub hooks: Vec<String>,
    pub addresses: Vec<String>,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_contact: Option<DateTime<Utc>>,
    /// Seconds since last contact, at `now`.
    pub last_contact_age_seconds: Option<f64>,
    pub connected: bool,
    pub last_seq: Option<u64>,
    /// Losses the agent reported, by stage.
    pub drops: serde_json::Value,
}

fn parse_rfc3339(s: Option<String>) -> Option<DateTime<Utc>> {
    s.and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// Age in seconds of `t` at `now` (never negative).
pub fn age_seconds(now: DateTime<Utc>, t: DateTime<Utc>) -> f64 {
    ((now - t).num_milliseconds().max(0) as f64) / 1000.0
}

/// Every node with an agent, by name.
pub fn list_nodes(conn: &Connection, now: DateTime<Utc>) -> Result<Vec<NodeEntry>, QueryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT node, agent_version, kernel, hooks, addresses, first_seen, last_contact, \
                last_seq, drops, connected FROM agents ORDER BY node",
    )?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let name: String = r.get(0)?;
        let hooks: Option<String> = r.get(3)?;
        let addresses: Option<String> = r.get(4)?;
        let drops: Option<String> = r.get(8)?;
        let last_contact = parse_rfc3339(r.get(6)?);
        out.push(NodeEntry {
            agent_version: r.get(1)?,
            kernel: r.get(2)?,
            hooks: json_column("agent hooks", &name, hooks.as_deref())?.unwrap_or_default(),
            addresses: json_column("agent addresses", &name, addresses.as_deref())?
                .unwrap_or_default(),
            first_seen: parse_rfc3339(r.get(5)?),
            last_contact,
            last_contact_age_seconds: last_contact.map(|t| age_seconds(now, t)),
            connected: r.get::<_, Option<i64>>(9)?.unwrap_or(0) != 0,
            // Stored as the bits of a u64 (see store/agents.rs).
            last_seq: r
                .get::<_, Option<i64>>(7)?
                .map(|v| u64::from_ne_bytes(v.to_ne_bytes())),
            drops: json_column("agent drops", &name, drops.as_deref())?
                .unwrap_or(serde_json::Value::Null),
            name,
        });
    }
    Ok(out)
}

/// A binding subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Subject {
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl Subject {
    /// `Kind:namespace/name`, or `Kind:name` without a namespace.
    pub fn display(&self) -> String {
        match self.namespace.as_deref().filter(|n| !n.is_empty()) {
            Some(ns) => format!("{}:{ns}/{}", self.kind, self.name),
            None => format!("{}:{}", self.kind, self.name),
        }
    }
}

/// The latest known state of a (Cluster)RoleBinding.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BindingEntry {
    pub kind: String,
    /// Empty for a ClusterRoleBinding.
    pub namespace: String,
    pub name: String,
    /// `None` when only seen at Metadata level.
    pub role_kind: Option<String>,
    pub role_name: Option<String>,
    pub subjects: Vec<Subject>,
    pub high_privilege: bool,
    pub last_verb: String,
    pub last_actor: String,
    pub last_source_ip: Option<String>,
    pub last_audit_id: String,
    pub last_change: DateTime<Utc>,
    pub deleted: bool,
}

/// Filters for the bindings inventory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingQuery {
    /// Exact namespace; `Some("")` for cluster-scoped bindings only.
    pub namespace: Option<String>,
    pub high_privilege_only: bool,
    pub include_deleted: bool,
}

/// Bindings, most recently changed first.
pub fn list_bindings(conn: &Connection, q: &BindingQuery) -> Result<Vec<BindingEntry>, QueryError> {
    let mut stmt = conn.prepare_cached(
        "SELECT kind, namespace, name, role_kind, role_name, subjects, high_privilege, last_verb, \
                last_actor, last_source_ip, last_audit_id, last_change_ms, deleted \
         FROM bindings \
         WHERE (?1 IS NULL OR namespace = ?1) AND (?2 = 0 OR high_privilege != 0) \
           AND (?3 != 0 OR deleted = 0) \
         ORDER BY last_change_ms DESC, kind, namespace, name",
    )?;
    let mut rows = stmt.query(rusqlite::params![
        q.namespace,
        i64::from(q.high_privilege_only),
        i64::from(q.include_deleted)
    ])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let (kind, namespace, name): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let subjects: Option<String> = r.get(5)?;
        let key = format!("{kind} {namespace}/{name}");
        out.push(BindingEntry {
            role_kind: r.get(3)?,
            role_name: r.get(4)?,
            subjects: json_column("binding subjects", &key, subjects.as_deref())?
                .unwrap_or_default(),
            high_privilege: r.get::<_, i64>(6)? != 0,
            last_verb: r.get(7)?,
            last_actor: r.get(8)?,
            last_source_ip: r.get(9)?,
            last_audit_id: r.get(10)?,
            last_change: ms_to_time(r.get(11)?),
            deleted: r.get::<_, i64>(12)? != 0,
            kind,
            namespace,
            name,
        });
    }
    Ok(out)
}
