//! Builders for the detector's unit tests: audit events in the real
//! `audit.k8s.io/v1` format (parsed by the production parser) and agent
//! observations in the documented JSON format (deserialized as the stream
//! does), fed to a [`Detector`] under a YAML policy. The `it` suite has the
//! same builders for the whole pipeline; these stay in the library so that
//! `cargo xtask mutants` (library tests only) runs them for every mutant.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use credtrail_proto::model::Observation;
use serde_json::{Value, json};

use crate::alert::Alert;
use crate::audit::{AuditEvent, parse_event};
use crate::detect::{Changes, Detector};
use crate::policy::Policy;

pub const T0: &str = "2026-03-01T10:00:00Z";

/// `T0 + offset_s`.
pub fn t(offset_s: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(T0)
        .unwrap()
        .with_timezone(&Utc)
        + Duration::seconds(offset_s)
}

fn ts(offset_s: i64) -> String {
    t(offset_s).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A detector under this policy (YAML).
pub fn detector(policy: &str) -> Detector {
    Detector::new(Arc::new(Policy::from_yaml("test", policy).unwrap()))
}

/// One request, described by the fields the tests vary.
#[derive(Clone)]
pub struct Req {
    pub id: String,
    pub at: i64,
    pub user: String,
    pub extra: Value,
    pub ips: Vec<String>,
    pub verb: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub code: i32,
}

impl Req {
    /// `get pods` in `default`, allowed (200), at `T0 + at` seconds.
    pub fn new(id: &str, at: i64, user: &str, ip: &str) -> Self {
        Self {
            id: id.into(),
            at,
            user: user.into(),
            extra: json!({}),
            ips: vec![ip.into()],
            verb: "get".into(),
            resource: "pods".into(),
            namespace: Some("default".into()),
            code: 200,
        }
    }

    /// Bound service-account token claims in `user.extra`.
    pub fn bound(mut self, jti: &str, node: &str, pod: &str, pod_uid: &str) -> Self {
        self.extra = json!({
            "authentication.kubernetes.io/credential-id": [format!("JTI={jti}")],
            "authentication.kubernetes.io/node-name": [node],
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        });
        self
    }

    /// Only a credential-id in `user.extra` (no node or pod claims).
    pub fn cred(mut self, credential_id: &str) -> Self {
        self.extra = json!({"authentication.kubernetes.io/credential-id": [credential_id]});
        self
    }

    pub fn verb(mut self, verb: &str, resource: &str) -> Self {
        self.verb = verb.into();
        self.resource = resource.into();
        self
    }

    /// Answered 403 and forbidden by the authorizer.
    pub fn denied(mut self) -> Self {
        self.code = 403;
        self
    }

    pub fn event(&self) -> AuditEvent {
        let path = match &self.namespace {
            Some(ns) => format!("/api/v1/namespaces/{ns}/{}", self.resource),
            None => format!("/api/v1/{}", self.resource),
        };
        let v = json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": self.id, "stage": "ResponseComplete", "requestURI": path,
            "verb": self.verb,
            "user": {"username": self.user, "groups": ["system:authenticated"], "extra": self.extra},
            "sourceIPs": self.ips,
            "userAgent": "kubectl/v1.32.0",
            "objectRef": {"resource": self.resource, "namespace": self.namespace, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": self.code},
            "requestReceivedTimestamp": ts(self.at), "stageTimestamp": ts(self.at),
            "annotations": {
                "authorization.k8s.io/decision": if self.code == 403 { "forbid" } else { "allow" },
            },
        });
        parse_event(v.to_string().as_bytes()).unwrap()
    }
}

/// Judges one request; returns every alert it raised and its changes.
pub fn judge(d: &mut Detector, r: &Req) -> (Vec<Alert>, Changes) {
    let mut ch = Changes::default();
    let alerts = d.judge(&r.event(), &mut ch);
    (alerts, ch)
}

/// Feeds observations to the detector.
pub fn observe(d: &mut Detector, obs: &[Observation]) {
    let mut ch = Changes::default();
    for o in obs {
        d.observe(o, &mut ch);
    }
}

pub fn rules(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.rule.as_str()).collect()
}

fn obs(v: Value) -> Observation {
    serde_json::from_value(v).unwrap()
}

/// `node`'s agent reports its addresses and pod ranges.
pub fn node_info(node: &str, at: i64, addrs: &[&str], pod_cidrs: &[&str]) -> Observation {
    obs(json!({
        "id": format!("{node}/boot/ni{at}"), "time": ts(at), "node": node, "type": "node_info",
        "name": node, "addresses": addrs, "pod_cidrs": pod_cidrs,
        "agent_version": "0.1.0", "kernel_release": "6.18.0", "hooks": ["tracepoint_openat"],
    }))
}

/// Where a process runs: `(namespace, pod, pod uid, container id)`.
pub type PodRef<'a> = Option<(&'a str, &'a str, &'a str, &'a str)>;

fn workload(pod: PodRef<'_>) -> Value {
    match pod {
        Some((ns, name, uid, cid)) => json!({
            "cgroup_id": 4242, "container_id": cid, "container_runtime": "containerd",
            "pod_uid": uid, "pod_namespace": ns, "pod_name": name,
        }),
        None => Value::Null,
    }
}

fn process(tgid: u32, comm: &str) -> Value {
    json!({"pid": tgid, "tgid": tgid, "ppid": 1, "uid": 0, "comm": comm,
           "exe": format!("/usr/bin/{comm}"), "cmdline": [comm], "mnt_ns": 4026531840u64})
}

/// A bound service-account token (JTI `jti`, of `ns`/`sa`) read by `tgid`
/// (0: the agent's start-up scan, no process).
#[allow(
    clippy::too_many_arguments,
    reason = "one observation, every field a test varies"
)]
pub fn token_read(
    node: &str,
    id: &str,
    at: i64,
    tgid: u32,
    comm: &str,
    pod: PodRef<'_>,
    jti: &str,
    (ns, sa): (&str, &str),
) -> Observation {
    let claims = json!({
        "iss": "https://kubernetes.default.svc", "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "aud": ["https://kubernetes.default.svc"], "jti": jti, "namespace": ns,
        "service_account_name": sa,
    });
    let process = if tgid == 0 {
        Value::Null
    } else {
        process(tgid, comm)
    };
    obs(json!({
        "id": id, "time": ts(at), "node": node, "type": "credential_read",
        "source": "tracepoint", "process": process,
        "workload": workload(pod),
        "path": "/var/run/secrets/kubernetes.io/serviceaccount/token", "flags": 0, "inode": 77, "reads": 1,
        "credential": {"kind": "service_account_token", "sha256": "ef".repeat(32),
            "token": {"sha256": "ab".repeat(32), "claims": claims}},
    }))
}

/// `tgid` on `node` connected to the API server from `local`.
pub fn connect(
    node: &str,
    id: &str,
    at: i64,
    tgid: u32,
    comm: &str,
    local: &str,
    pod: PodRef<'_>,
) -> Observation {
    obs(json!({
        "id": id, "time": ts(at), "node": node, "type": "api_connect",
        "source": "cgroup_connect", "process": process(tgid, comm), "workload": workload(pod),
        "local": format!("{local}:40000"), "remote": "127.0.0.1:6443",
    }))
}
