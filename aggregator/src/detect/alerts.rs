//! Building an [`Alert`] from an audit event.

use sha2::{Digest, Sha256};

use crate::alert::{
    Alert, Evidence, ExpectedLocation, Identity, RequestInfo, Severity, SourceClass,
};
use crate::audit::AuditEvent;

use super::rules::RuleDef;
use super::sightings::{ConnectSighting, ReadSighting};

/// Deterministic alert id: SHA-256 of the rule id and the audit IDs.
pub fn alert_id(rule: &str, audit_ids: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(rule.as_bytes());
    for a in audit_ids {
        h.update([0]);
        h.update(a.as_bytes());
    }
    hex::encode(&h.finalize()[..16])
}

/// The identity of a request; `effective` reports the impersonated user (with
/// the impersonator) instead of the authenticated one.
pub fn identity(ev: &AuditEvent, effective: bool) -> Identity {
    let (u, by) = match (&ev.impersonated_user, effective) {
        (Some(imp), true) => (imp, Some(ev.user.username.clone())),
        _ => (&ev.user, None),
    };
    Identity {
        username: u.username.clone(),
        uid: u.uid.clone(),
        groups: u.groups.clone(),
        service_account: service_account(&u.username),
        impersonated_by: by,
    }
}

/// `(namespace, name)` of `system:serviceaccount:<ns>:<name>`.
pub fn service_account(username: &str) -> Option<(String, String)> {
    let rest = username.strip_prefix("system:serviceaccount:")?;
    let (ns, name) = rest.split_once(':')?;
    Some((ns.to_owned(), name.to_owned()))
}

pub fn request(ev: &AuditEvent) -> RequestInfo {
    RequestInfo {
        verb: ev.verb.clone(),
        api_group: ev.api_group().map(str::to_owned),
        resource: ev.resource().map(str::to_owned),
        subresource: ev.subresource().map(str::to_owned),
        namespace: ev.namespace().map(str::to_owned),
        name: ev.name().map(str::to_owned),
        request_uri: ev.request_uri.clone(),
        user_agent: ev.user_agent.clone(),
        decision: if ev.allowed() { "allow" } else { "deny" }.to_owned(),
        response_code: ev.code(),
    }
}

/// Whether the request does something sensitive (writes, secrets, exec, tokens,
/// RBAC, anything in `kube-system`).
pub fn sensitive(ev: &AuditEvent) -> bool {
    let verb_write = matches!(
        ev.verb.as_str(),
        "create"
            | "update"
            | "patch"
            | "delete"
            | "deletecollection"
            | "escalate"
            | "bind"
            | "impersonate"
    );
    let res = ev.resource().unwrap_or("");
    let sub = ev.subresource().unwrap_or("");
    verb_write
        || ev.namespace() == Some("kube-system")
        || res == "secrets"
        || matches!(sub, "exec" | "attach" | "portforward" | "proxy" | "token")
        || matches!(
            res,
            "roles" | "rolebindings" | "clusterroles" | "clusterrolebindings"
        )
}

/// Everything an alert needs besides the rule-specific parts.
pub struct AlertParts {
    pub severity: Severity,
    pub class: SourceClass,
    pub expected: Vec<ExpectedLocation>,
    pub evidence: Vec<Evidence>,
    pub reason: String,
    pub details: serde_json::Value,
    /// Extra audit IDs (beyond the event's), e.g. the first use of a JTI.
    pub more_audit_ids: Vec<String>,
    pub effective_identity: bool,
}

impl AlertParts {
    /// The parts of an alert about who made an RBAC write (AN1579): judged
    /// on the effective identity, with no agent evidence and no audit IDs
    /// beyond the event's.
    pub fn actor(
        severity: Severity,
        class: SourceClass,
        expected: Vec<ExpectedLocation>,
        reason: String,
        details: serde_json::Value,
    ) -> Self {
        Self {
            severity,
            class,
            expected,
            evidence: Vec::new(),
            reason,
            details,
            more_audit_ids: Vec::new(),
            effective_identity: true,
        }
    }
}

pub fn build(rule: &RuleDef, ev: &AuditEvent, p: AlertParts) -> Alert {
    let mut audit_ids = p.more_audit_ids;
    audit_ids.push(ev.audit_id.clone());
    let mut observation_ids: Vec<String> = p
        .evidence
        .iter()
        .map(|e| e.observation_id.clone())
        .collect();
    observation_ids.sort();
    observation_ids.dedup();
    let credential_id = ev.credential_id().map(str::to_owned);
    Alert {
        id: alert_id(rule.id, &audit_ids),
        rule: rule.id.to_owned(),
        analytic: rule.analytic.to_owned(),
        techniques: super::rules::credential_techniques(rule, credential_id.as_deref()),
        severity: p.severity,
        time: ev.time(),
        identity: identity(ev, p.effective_identity),
        credential_id,
        source_ip: ev.source_ip(),
        source_class: p.class,
        claimed_source_ips: ev.claimed_source_ips().to_vec(),
        expected: p.expected,
        request: request(ev),
        evidence: p.evidence,
        audit_ids,
        observation_ids,
        reason: p.reason,
        details: p.details,
    }
}

pub fn read_evidence(r: &std::sync::Arc<ReadSighting>) -> Evidence {
    Evidence {
        kind: "credential_read".to_owned(),
        observation_id: r.observation_id.clone(),
        node: r.node.clone(),
        pod: r.pod.clone(),
        container_id: r.container_id.clone(),
        pid: (r.tgid != 0).then_some(r.tgid),
        comm: r.comm.clone(),
        exe: r.exe.clone(),
        path: Some(r.path.clone()),
        time: r.time,
    }
}

pub fn connect_evidence(c: &ConnectSighting) -> Evidence {
    Evidence {
        kind: "api_connect".to_owned(),
        observation_id: c.observation_id.clone(),
        node: c.node.clone(),
        pod: c.pod.clone(),
        container_id: c.container_id.clone(),
        pid: (c.tgid != 0).then_some(c.tgid),
        comm: c.comm.clone(),
        exe: c.exe.clone(),
        path: None,
        time: c.time,
    }
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
