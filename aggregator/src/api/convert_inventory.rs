//! Conversions for inventories, coverage and suppressions (domain to proto,
//! and the create request from proto).

use credtrail_proto::pb::query as pb;

use super::convert::{ConvertError, non_empty, time_from, timestamp};
use crate::policy::SuppressionMatch;
use crate::store::query::coverage::{
    AuditSourceCoverage, BindingAuditCoverage, CoverageReport, LevelStatus, NodeCoverage, RbacLevel,
};
use crate::store::query::inventory::{
    BindingEntry, CredentialEntry, NodeEntry, ReadSite, Subject, UseSite,
};
use crate::store::query::suppressions::{NewSuppression, SuppressionEntry};

impl From<&ReadSite> for pb::CredentialReadSite {
    fn from(r: &ReadSite) -> Self {
        pb::CredentialReadSite {
            node: r.node.clone(),
            pod: r.pod.clone(),
            container_id: r.container_id.clone(),
            tgid: r.tgid,
            comm: r.comm.clone(),
            exe: r.exe.clone(),
            path: r.path.clone(),
            first_seen: Some(timestamp(r.first_seen)),
            last_seen: Some(timestamp(r.last_seen)),
            reads: r.reads,
        }
    }
}

impl From<&UseSite> for pb::CredentialUseSite {
    fn from(u: &UseSite) -> Self {
        pb::CredentialUseSite {
            username: u.username.clone(),
            source_ip: u.source_ip.clone(),
            source_class: u.source_class.clone(),
            node: u.node.clone(),
            first_seen: Some(timestamp(u.first_seen)),
            last_seen: Some(timestamp(u.last_seen)),
            count: u.count,
            last_audit_id: u.last_audit_id.clone(),
        }
    }
}

impl From<&CredentialEntry> for pb::Credential {
    fn from(c: &CredentialEntry) -> Self {
        pb::Credential {
            credential_id: c.credential_id.clone(),
            kind: c.kind.clone(),
            identities: c.identities.clone(),
            reads: c.reads.iter().map(Into::into).collect(),
            uses: c.uses.iter().map(Into::into).collect(),
        }
    }
}

impl From<&NodeEntry> for pb::Node {
    fn from(n: &NodeEntry) -> Self {
        pb::Node {
            name: n.name.clone(),
            agent_version: n.agent_version.clone(),
            kernel: n.kernel.clone(),
            hooks: n.hooks.clone(),
            addresses: n.addresses.clone(),
            first_seen: n.first_seen.map(timestamp),
            last_contact: n.last_contact.map(timestamp),
            last_contact_age_seconds: n.last_contact_age_seconds,
            connected: n.connected,
            last_seq: n.last_seq,
            drops_json: if n.drops.is_null() {
                String::new()
            } else {
                n.drops.to_string()
            },
        }
    }
}

impl From<&Subject> for pb::Subject {
    fn from(s: &Subject) -> Self {
        pb::Subject {
            kind: s.kind.clone(),
            name: s.name.clone(),
            namespace: s.namespace.clone(),
        }
    }
}

impl From<&BindingEntry> for pb::Binding {
    fn from(b: &BindingEntry) -> Self {
        pb::Binding {
            kind: b.kind.clone(),
            namespace: b.namespace.clone(),
            name: b.name.clone(),
            role_kind: b.role_kind.clone(),
            role_name: b.role_name.clone(),
            subjects: b.subjects.iter().map(Into::into).collect(),
            high_privilege: b.high_privilege,
            last_verb: b.last_verb.clone(),
            last_actor: b.last_actor.clone(),
            last_source_ip: b.last_source_ip.clone(),
            last_audit_id: b.last_audit_id.clone(),
            last_change: Some(timestamp(b.last_change)),
            deleted: b.deleted,
        }
    }
}

impl From<LevelStatus> for pb::LevelStatus {
    fn from(s: LevelStatus) -> Self {
        match s {
            LevelStatus::Sufficient => pb::LevelStatus::Sufficient,
            LevelStatus::Partial => pb::LevelStatus::Partial,
            LevelStatus::Insufficient => pb::LevelStatus::Insufficient,
            LevelStatus::Unknown => pb::LevelStatus::Unknown,
        }
    }
}

impl From<&NodeCoverage> for pb::NodeCoverage {
    fn from(n: &NodeCoverage) -> Self {
        pb::NodeCoverage {
            node: n.node.clone(),
            alive: n.alive,
            connected: n.connected,
            last_contact_age_seconds: n.last_contact_age_seconds,
            hooks: n.hooks.clone(),
            blind_spots: n.blind_spots.clone(),
        }
    }
}

impl From<&AuditSourceCoverage> for pb::AuditSourceCoverage {
    fn from(a: &AuditSourceCoverage) -> Self {
        pb::AuditSourceCoverage {
            source: a.source.clone(),
            last_event: Some(timestamp(a.last_event)),
            last_received: Some(timestamp(a.last_received)),
            last_received_age_seconds: a.last_received_age_seconds,
            alive: a.alive,
            events: a.events,
            rejected: a.rejected,
        }
    }
}

impl From<&RbacLevel> for pb::RbacLevel {
    fn from(l: &RbacLevel) -> Self {
        pb::RbacLevel {
            resource: l.resource.clone(),
            level: l.level.clone(),
            count: l.count,
            last_seen: Some(timestamp(l.last_seen)),
            last_audit_id: l.last_audit_id.clone(),
        }
    }
}

impl From<&BindingAuditCoverage> for pb::BindingAuditCoverage {
    fn from(b: &BindingAuditCoverage) -> Self {
        pb::BindingAuditCoverage {
            with_body: b.with_body,
            metadata_only: b.metadata_only,
            status: pb::LevelStatus::from(b.status).into(),
            explanation: b.explanation.clone(),
            levels: b.levels.iter().map(Into::into).collect(),
            approved_automation_metadata_only: b
                .approved_automation_metadata_only
                .iter()
                .map(|a| pb::AutomationBlind {
                    automation: a.automation.clone(),
                    resource: a.resource.clone(),
                    count: a.count,
                    last_seen: Some(timestamp(a.last_seen)),
                    example_json: a.example.to_string(),
                })
                .collect(),
        }
    }
}

impl From<&CoverageReport> for pb::Coverage {
    fn from(c: &CoverageReport) -> Self {
        pb::Coverage {
            generated_at: Some(timestamp(c.generated_at)),
            freshness_seconds: c.freshness_seconds,
            nodes: c.nodes.iter().map(Into::into).collect(),
            audit_sources: c.audit_sources.iter().map(Into::into).collect(),
            bindings: Some((&c.bindings).into()),
            agent_refusals: c
                .agent_refusals
                .iter()
                .map(|r| pb::AgentRefusal {
                    node: r.node.clone(),
                    reason: r.reason.clone(),
                    count: r.count,
                    last: Some(timestamp(r.last)),
                    last_message: r.last_message.clone(),
                })
                .collect(),
        }
    }
}

impl From<&SuppressionMatch> for pb::SuppressionMatch {
    fn from(m: &SuppressionMatch) -> Self {
        pb::SuppressionMatch {
            rule: m.rule.clone(),
            analytic: m.analytic.clone(),
            username: m.username.clone(),
            credential_id: m.credential_id.clone(),
            source_cidr: m.source_cidr.clone(),
            namespace: m.namespace.clone(),
            node: m.node.clone(),
        }
    }
}

impl From<pb::SuppressionMatch> for SuppressionMatch {
    fn from(m: pb::SuppressionMatch) -> Self {
        SuppressionMatch {
            rule: non_empty(m.rule),
            analytic: non_empty(m.analytic),
            username: non_empty(m.username),
            credential_id: non_empty(m.credential_id),
            source_cidr: non_empty(m.source_cidr),
            namespace: non_empty(m.namespace),
            node: non_empty(m.node),
        }
    }
}

impl From<&SuppressionEntry> for pb::Suppression {
    fn from(s: &SuppressionEntry) -> Self {
        pb::Suppression {
            id: s.id.clone(),
            owner: s.owner.clone(),
            reason: s.reason.clone(),
            created: s.created.clone(),
            expires: s.expires.clone(),
            r#match: Some((&s.matcher).into()),
            origin: s.origin.clone(),
            hits: s.hits,
            last_hit: s.last_hit.map(timestamp),
            active: s.active,
            created_by: s.created_by.clone().unwrap_or_default(),
            deleted_by: s.deleted_by.clone().unwrap_or_default(),
        }
    }
}

impl NewSuppression {
    /// The request, made on behalf of principal `created_by`.
    pub fn from_pb(
        r: pb::CreateSuppressionRequest,
        created_by: String,
    ) -> Result<Self, ConvertError> {
        let expires = r.expires.ok_or(ConvertError::Missing("expires"))?;
        Ok(NewSuppression {
            owner: r.owner,
            reason: r.reason,
            expires: time_from("expires", &expires)?,
            matcher: r.r#match.ok_or(ConvertError::Missing("match"))?.into(),
            created_by,
        })
    }
}
