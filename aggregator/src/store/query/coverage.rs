//! The coverage report: what the aggregator can and cannot see right now.
//!
//! - agents alive per node (age of the last contact, connected or not);
//! - audit streams alive (last event received per source);
//! - whether RBAC binding writes are audited at a level that shows `roleRef`
//!   and `subjects` (Request or RequestResponse), or at Metadata only.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};
use serde::Serialize;

use super::inventory::{age_seconds, list_nodes};
use super::{QueryError, ms_to_time};

/// Default freshness window for "alive".
pub const DEFAULT_FRESHNESS_SECONDS: f64 = 120.0;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeCoverage {
    pub node: String,
    /// Last contact within the freshness window.
    pub alive: bool,
    pub connected: bool,
    pub last_contact_age_seconds: Option<f64>,
    pub hooks: Vec<String>,
    /// What the node's hooks cannot see, as its agent said in its latest
    /// `node_info` (empty with LSM/fentry; docs/OBSERVATIONS.md).
    pub blind_spots: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditSourceCoverage {
    /// `webhook`, `log:<path>`, `replay`.
    pub source: String,
    /// Newest `requestReceivedTimestamp` from this source.
    pub last_event: DateTime<Utc>,
    /// Wall clock of the last accepted batch.
    pub last_received: DateTime<Utc>,
    pub last_received_age_seconds: f64,
    /// A batch arrived within the freshness window.
    pub alive: bool,
    pub events: u64,
    pub rejected: u64,
}

/// Audit level seen for one RBAC resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RbacLevel {
    pub resource: String,
    pub level: String,
    pub count: u64,
    pub last_seen: DateTime<Utc>,
    pub last_audit_id: String,
}

/// Verdict on the audit level of binding writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LevelStatus {
    /// Every binding write seen carried its body.
    Sufficient,
    /// Some binding writes were seen at Metadata only.
    Partial,
    /// Binding writes were seen at Metadata only.
    Insufficient,
    /// No binding write seen yet.
    Unknown,
}

/// Binding writes by approved automation at Metadata level: not alerted
/// (its routine syncs), counted here with the latest one as an example.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutomationBlind {
    pub automation: String,
    pub resource: String,
    pub count: u64,
    pub last_seen: DateTime<Utc>,
    pub example: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BindingAuditCoverage {
    /// Binding events at Request or RequestResponse.
    pub with_body: u64,
    /// Binding events at Metadata only.
    pub metadata_only: u64,
    pub status: LevelStatus,
    pub explanation: String,
    pub levels: Vec<RbacLevel>,
    /// Of `metadata_only`, writes by approved automation (not alerted).
    pub approved_automation_metadata_only: Vec<AutomationBlind>,
}

/// Claims the agent stream refused from one node's agent, by reason
/// (`agents/validate.rs`): another node's name, addresses or pod CIDRs
/// outside the policy's ranges. `node` is the client certificate's node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentRefusal {
    pub node: String,
    pub reason: String,
    pub count: u64,
    pub last: DateTime<Utc>,
    pub last_message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CoverageReport {
    pub generated_at: DateTime<Utc>,
    pub freshness_seconds: f64,
    pub nodes: Vec<NodeCoverage>,
    pub audit_sources: Vec<AuditSourceCoverage>,
    pub bindings: BindingAuditCoverage,
    /// What agents claimed and were refused, by node and reason.
    pub agent_refusals: Vec<AgentRefusal>,
}

/// Builds the report as of `now`.
pub fn coverage(
    conn: &Connection,
    now: DateTime<Utc>,
    freshness_seconds: f64,
) -> Result<CoverageReport, QueryError> {
    let mut blind = conn.prepare_cached(
        "SELECT json_extract(json, '$.blind_spots') FROM observations \
         WHERE node = ?1 AND type = 'node_info' ORDER BY time_ms DESC LIMIT 1",
    )?;
    let mut nodes = Vec::new();
    for n in list_nodes(conn, now)? {
        let spots: Option<String> = blind
            .query_row([&n.name], |r| r.get(0))
            .optional()?
            .flatten();
        nodes.push(NodeCoverage {
            alive: n
                .last_contact_age_seconds
                .is_some_and(|a| a <= freshness_seconds),
            connected: n.connected,
            last_contact_age_seconds: n.last_contact_age_seconds,
            hooks: n.hooks,
            blind_spots: spots
                .and_then(|j| serde_json::from_str(&j).ok())
                .unwrap_or_default(),
            node: n.name,
        });
    }

    let mut stmt = conn.prepare_cached(
        "SELECT source, last_event_ms, last_recv_ms, events, rejected \
         FROM coverage_audit_sources ORDER BY source",
    )?;
    let audit_sources = stmt
        .query_map([], |r| {
            let last_received = ms_to_time(r.get(2)?);
            let age = age_seconds(now, last_received);
            Ok(AuditSourceCoverage {
                source: r.get(0)?,
                last_event: ms_to_time(r.get(1)?),
                last_received,
                last_received_age_seconds: age,
                alive: age <= freshness_seconds,
                events: u64::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
                rejected: u64::try_from(r.get::<_, i64>(4)?).unwrap_or(0),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut stmt = conn.prepare_cached(
        "SELECT resource, level, count, last_seen_ms, last_audit_id FROM coverage_rbac_levels \
         ORDER BY resource, level",
    )?;
    let levels = stmt
        .query_map([], |r| {
            Ok(RbacLevel {
                resource: r.get(0)?,
                level: r.get(1)?,
                count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                last_seen: ms_to_time(r.get(3)?),
                last_audit_id: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut stmt = conn.prepare_cached(
        "SELECT automation, resource, count, last_seen_ms, example FROM coverage_automation_blind \
         ORDER BY automation, resource",
    )?;
    let automation = stmt
        .query_map([], |r| {
            Ok(AutomationBlind {
                automation: r.get(0)?,
                resource: r.get(1)?,
                count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                last_seen: ms_to_time(r.get(3)?),
                example: serde_json::from_str(&r.get::<_, String>(4)?)
                    .unwrap_or(serde_json::Value::Null),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut bindings = binding_verdict(levels);
    bindings.approved_automation_metadata_only = automation;
    let mut stmt = conn.prepare_cached(
        "SELECT node, reason, count, last_ms, last_message FROM agent_refusals \
         ORDER BY node, reason",
    )?;
    let agent_refusals = stmt
        .query_map([], |r| {
            Ok(AgentRefusal {
                node: r.get(0)?,
                reason: r.get(1)?,
                count: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                last: ms_to_time(r.get(3)?),
                last_message: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CoverageReport {
        agent_refusals,
        generated_at: now,
        freshness_seconds,
        nodes,
        audit_sources,
        bindings,
    })
}

fn binding_verdict(levels: Vec<RbacLevel>) -> BindingAuditCoverage {
    let is_binding = |l: &&RbacLevel| l.resource.ends_with("rolebindings");
    let metadata_only: u64 = levels
        .iter()
        .filter(is_binding)
        .filter(|l| l.level.eq_ignore_ascii_case("metadata"))
        .map(|l| l.count)
        .sum();
    let with_body: u64 = levels
        .iter()
        .filter(is_binding)
        .filter(|l| !l.level.eq_ignore_ascii_case("metadata"))
        .map(|l| l.count)
        .sum();
    let (status, explanation) = match (with_body, metadata_only) {
        (0, 0) => (
            LevelStatus::Unknown,
            "No RoleBinding or ClusterRoleBinding write has been audited yet.".to_owned(),
        ),
        (_, 0) => (
            LevelStatus::Sufficient,
            format!(
                "All {with_body} binding writes were audited at Request level or above: roleRef and subjects are visible."
            ),
        ),
        (0, m) => (
            LevelStatus::Insufficient,
            format!(
                "All {m} binding writes were audited at Metadata level only: roleRef and subjects are not visible. \
                 Log rolebindings and clusterrolebindings at Request or RequestResponse."
            ),
        ),
        (b, m) => (
            LevelStatus::Partial,
            format!(
                "{m} binding writes were audited at Metadata level only ({b} with their body): \
                 some roleRefs and subjects are not visible."
            ),
        ),
    };
    BindingAuditCoverage {
        with_body,
        metadata_only,
        status,
        explanation,
        levels,
        approved_automation_metadata_only: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(resource: &str, level: &str, count: u64) -> RbacLevel {
        RbacLevel {
            resource: resource.into(),
            level: level.into(),
            count,
            last_seen: DateTime::from_timestamp(0, 0).unwrap(),
            last_audit_id: "a".into(),
        }
    }

    #[test]
    fn binding_verdict_covers_every_mix() {
        assert_eq!(binding_verdict(vec![]).status, LevelStatus::Unknown);
        // Roles at Metadata level do not count against bindings.
        let v = binding_verdict(vec![
            level("rolebindings", "RequestResponse", 3),
            level("clusterroles", "Metadata", 9),
        ]);
        assert_eq!(
            (v.status, v.with_body, v.metadata_only),
            (LevelStatus::Sufficient, 3, 0)
        );
        let v = binding_verdict(vec![level("clusterrolebindings", "Metadata", 2)]);
        assert_eq!(v.status, LevelStatus::Insufficient);
        assert!(
            v.explanation.contains("Request or RequestResponse"),
            "{}",
            v.explanation
        );
        let v = binding_verdict(vec![
            level("clusterrolebindings", "Metadata", 2),
            level("rolebindings", "Request", 1),
        ]);
        assert_eq!(
            (v.status, v.with_body, v.metadata_only),
            (LevelStatus::Partial, 1, 2)
        );
    }
}
