//! An alert as an OCSF Detection Finding (class_uid 2004, category 2
//! "Findings", schema [`SCHEMA_VERSION`]).
//!
//! No maintained OCSF crate exists on crates.io (the two there are early
//! drafts), so these are serde structs for exactly the attributes we emit;
//! `tests/it/ocsf_schema.rs` validates every rule's sample alert against the
//! schema shipped by the PyPI package `pydantic-ocsf` (see
//! `aggregator/tests/ocsf/validate.py`). The mapping is documented in
//! docs/INTEGRATIONS.md.
//!
//! The credential appears only by its id (a hash or a certificate
//! fingerprint, never its bytes), like everywhere else.

use std::collections::BTreeSet;

use super::attack::{ATTACK_VERSION, technique};
use crate::alert::{Alert, Evidence, Severity};
use crate::detect::rules::{RULES, runbook_url};

/// The OCSF schema version the findings follow.
pub const SCHEMA_VERSION: &str = "1.7.0";
pub const CLASS_UID: u32 = 2004;
pub const CATEGORY_UID: u32 = 2;
/// Activity "Create": a new finding.
pub const ACTIVITY_CREATE: u32 = 1;
/// Agent evidences carried per finding (the alert keeps them all).
pub const MAX_AGENT_EVIDENCES: usize = 16;

pub use super::ocsf_types::*;

fn severity(s: Severity) -> (u32, &'static str) {
    match s {
        Severity::Info => (1, "Informational"),
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

/// What kind of credential an id names (`X509SHA256=` prefix: a client certificate).
fn credential_type(id: &str) -> &'static str {
    if id.starts_with("X509SHA256=") {
        "Kubernetes client certificate"
    } else {
        "Kubernetes bearer token"
    }
}

fn split_pod(pod: &str) -> (Option<String>, String) {
    match pod.split_once('/') {
        Some((ns, name)) => (Some(ns.to_owned()), name.to_owned()),
        None => (None, pod.to_owned()),
    }
}

fn attacks(techniques: &[String]) -> Vec<Attack> {
    let mut out = Vec::new();
    for id in techniques {
        let Some(t) = technique(id) else {
            // Unknown to this table: still name it, without a tactic name.
            continue;
        };
        let (tech, sub) = match t.parent {
            Some((pid, pname)) => (
                Named {
                    uid: pid.to_owned(),
                    name: pname.to_owned(),
                },
                Some(Named {
                    uid: t.id.to_owned(),
                    name: t.name.to_owned(),
                }),
            ),
            None => (
                Named {
                    uid: t.id.to_owned(),
                    name: t.name.to_owned(),
                },
                None,
            ),
        };
        for (tid, tname) in t.tactics {
            out.push(Attack {
                technique: tech.clone(),
                sub_technique: sub.clone(),
                tactic: Named {
                    uid: (*tid).to_owned(),
                    name: (*tname).to_owned(),
                },
                version: ATTACK_VERSION,
            });
        }
    }
    out
}

fn request_evidence(a: &Alert) -> EvidenceObj {
    let r = &a.request;
    let (path, query) = match r.request_uri.split_once('?') {
        Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
        None => (r.request_uri.clone(), None),
    };
    let id = &a.identity;
    let (type_id, type_) = if id.service_account.is_some() {
        (4, "Service")
    } else if id.username.starts_with("system:") {
        (3, "System")
    } else {
        (1, "User")
    };
    EvidenceObj {
        name: "api_request".into(),
        uid: a.audit_ids.first().cloned(),
        api: Some(Api {
            operation: r.verb.clone(),
            service: Service {
                name: "kube-apiserver",
            },
            request: ApiRequest {
                uid: a.audit_ids.first().cloned().unwrap_or_default(),
            },
            response: r.response_code.map(|code| ApiResponse { code }),
            group: r
                .api_group
                .as_ref()
                .filter(|g| !g.is_empty())
                .map(|g| Group { name: g.clone() }),
        }),
        actor: Some(Actor {
            user: User {
                name: id.username.clone(),
                uid: id.uid.clone(),
                type_id,
                type_,
                groups: id
                    .groups
                    .iter()
                    .map(|g| Group { name: g.clone() })
                    .collect(),
                programmatic_credentials: a
                    .credential_id
                    .iter()
                    .map(|c| Credential {
                        uid: c.clone(),
                        type_: credential_type(c),
                    })
                    .collect(),
            },
        }),
        src_endpoint: a.source_ip.map(|ip| Endpoint { ip: ip.to_string() }),
        http_request: Some(HttpRequest {
            url: Url {
                path,
                query_string: query,
            },
            user_agent: r.user_agent.clone(),
        }),
        data: Some(serde_json::json!({ "decision": r.decision })),
        ..Default::default()
    }
}

fn agent_evidence(e: &Evidence) -> EvidenceObj {
    EvidenceObj {
        name: e.kind.clone(),
        uid: Some(e.observation_id.clone()),
        process: (e.pid.is_some() || e.comm.is_some() || e.exe.is_some()).then(|| Process {
            pid: e.pid,
            name: e.comm.clone(),
            path: e.exe.clone(),
        }),
        container: e.container_id.clone().map(|uid| Container { uid }),
        device: Some(Device {
            name: e.node.clone(),
            hostname: e.node.clone(),
            type_id: 99,
            type_: "Kubernetes node",
        }),
        file: e.path.as_ref().map(|p| File {
            name: p.rsplit('/').next().unwrap_or(p).to_owned(),
            path: p.clone(),
            type_id: 1,
        }),
        data: Some(serde_json::json!({
            "time": e.time.timestamp_millis(),
            "pod": e.pod,
        })),
        ..Default::default()
    }
}

fn resources(a: &Alert) -> Vec<Resource> {
    let mut set = BTreeSet::new();
    let r = &a.request;
    if let Some(res) = r.resource.as_ref().filter(|s| !s.is_empty()) {
        let type_ = match (&r.api_group, &r.subresource) {
            (Some(g), Some(s)) if !g.is_empty() => format!("{g}/{res}/{s}"),
            (Some(g), None) if !g.is_empty() => format!("{g}/{res}"),
            (_, Some(s)) => format!("{res}/{s}"),
            _ => res.clone(),
        };
        set.insert(Resource {
            type_,
            uid: None,
            name: r.name.clone(),
            namespace: r.namespace.clone(),
        });
    }
    if let Some(c) = &a.credential_id {
        set.insert(Resource {
            type_: "credential".into(),
            uid: Some(c.clone()),
            name: None,
            namespace: None,
        });
    }
    for e in &a.evidence {
        set.insert(Resource {
            type_: "node".into(),
            uid: None,
            name: Some(e.node.clone()),
            namespace: None,
        });
        if let Some(p) = &e.pod {
            let (ns, name) = split_pod(p);
            set.insert(Resource {
                type_: "pod".into(),
                uid: None,
                name: Some(name),
                namespace: ns,
            });
        }
    }
    set.into_iter().collect()
}

fn observables(a: &Alert) -> Vec<Observable> {
    let mut set = BTreeSet::new();
    let mut add = |name: &str, type_id: u32, type_: &'static str, value: &str| {
        if !value.is_empty() {
            set.insert(Observable {
                name: name.to_owned(),
                type_id,
                type_,
                value: value.to_owned(),
            });
        }
    };
    add(
        "evidences.actor.user.name",
        4,
        "User Name",
        &a.identity.username,
    );
    if let Some(ip) = a.source_ip {
        add(
            "evidences.src_endpoint.ip",
            2,
            "IP Address",
            &ip.to_string(),
        );
    }
    if let Some(c) = &a.credential_id {
        add(
            "evidences.actor.user.programmatic_credentials.uid",
            19,
            "User Credential ID",
            c,
        );
    }
    if let Some(ua) = &a.request.user_agent {
        add(
            "evidences.http_request.user_agent",
            16,
            "HTTP User-Agent",
            ua,
        );
    }
    for e in a.evidence.iter().take(MAX_AGENT_EVIDENCES) {
        add("evidences.device.hostname", 1, "Hostname", &e.node);
        if let Some(c) = &e.comm {
            add("evidences.process.name", 9, "Process Name", c);
        }
        if let Some(p) = &e.path {
            add("evidences.file.path", 45, "File Path", p);
        }
    }
    set.into_iter().collect()
}

/// The Detection Finding of one alert.
pub fn finding(a: &Alert) -> DetectionFinding {
    let (severity_id, severity) = severity(a.severity);
    let suppressed = crate::detect::suppressed_by(a).is_some();
    let title = RULES
        .iter()
        .find(|r| r.id == a.rule)
        .map_or_else(|| a.rule.clone(), |r| r.title.to_owned());
    let ms = a.time.timestamp_millis();
    let mut evidences = vec![request_evidence(a)];
    evidences.extend(
        a.evidence
            .iter()
            .take(MAX_AGENT_EVIDENCES)
            .map(agent_evidence),
    );
    DetectionFinding {
        activity_id: ACTIVITY_CREATE,
        activity_name: "Create",
        category_uid: CATEGORY_UID,
        category_name: "Findings",
        class_uid: CLASS_UID,
        class_name: "Detection Finding",
        type_uid: CLASS_UID * 100 + ACTIVITY_CREATE,
        type_name: "Detection Finding: Create",
        severity_id,
        severity,
        status_id: if suppressed { 3 } else { 1 },
        status: if suppressed { "Suppressed" } else { "New" },
        time: ms,
        message: a.reason.clone(),
        is_alert: !suppressed,
        metadata: Metadata {
            version: SCHEMA_VERSION,
            product: Product {
                name: "credtrail",
                vendor_name: "credtrail",
                version: env!("CARGO_PKG_VERSION"),
                uid: "credtrail-aggregator",
            },
            uid: a.id.clone(),
            event_code: a.rule.clone(),
            log_name: "alerts",
        },
        finding_info: FindingInfo {
            uid: a.id.clone(),
            title: title.clone(),
            desc: a.reason.clone(),
            types: vec![a.analytic.clone(), a.rule.clone()],
            analytic: Analytic {
                uid: a.rule.clone(),
                name: title,
                category: a.analytic.clone(),
                type_id: 1,
                type_: "Rule",
            },
            attacks: attacks(&a.techniques),
            src_url: runbook_url(&a.rule),
            first_seen_time: ms,
            last_seen_time: ms,
            related_events: a
                .audit_ids
                .iter()
                .map(|u| RelatedEvent {
                    uid: u.clone(),
                    type_: "Kubernetes audit event",
                })
                .collect(),
        },
        evidences,
        resources: resources(a),
        observables: observables(a),
        unmapped: serde_json::json!({
            "source_class": a.source_class,
            "impersonated_by": a.identity.impersonated_by,
            "expected": a.expected,
            "claimed_source_ips": a.claimed_source_ips,
            "observation_ids": a.observation_ids,
            "techniques": a.techniques,
            "details": a.details,
        }),
    }
}

/// One alert as one OCSF JSON object (no newline).
pub fn record(a: &Alert) -> String {
    // Plain structs with string keys and integers always serialize.
    serde_json::to_string(&finding(a)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_carries_class_severity_attacks_and_ids() {
        let a = crate::encode::cef::tests::alert();
        let v: serde_json::Value = serde_json::from_str(&record(&a)).unwrap();
        assert_eq!(v["class_uid"], 2004);
        assert_eq!(v["category_uid"], 2);
        assert_eq!(v["type_uid"], 200_401);
        assert_eq!(v["severity_id"], 5);
        assert_eq!(v["time"], 1_700_000_000_000_i64);
        assert_eq!(v["metadata"]["version"], SCHEMA_VERSION);
        assert_eq!(v["metadata"]["uid"], "id-1");
        assert_eq!(v["finding_info"]["analytic"]["uid"], "CT1579-001");
        let attacks = v["finding_info"]["attacks"].as_array().unwrap();
        assert!(attacks.iter().any(|x| x["technique"]["uid"] == "T1098"
            && x["sub_technique"]["uid"] == "T1098.006"
            && x["tactic"]["uid"] == "TA0004"));
        assert_eq!(v["evidences"][0]["src_endpoint"]["ip"], "127.0.0.7");
        assert_eq!(
            v["evidences"][0]["http_request"]["url"]["query_string"],
            "x=1"
        );
        assert_eq!(v["status_id"], 1);
    }
}
