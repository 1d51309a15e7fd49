//! Builders for scenario tests: audit events in the real `audit.k8s.io/v1`
//! format and agent observations in the documented JSON-lines format, both
//! parsed by the production parsers.

pub mod tls;
pub mod wait;

use chrono::{DateTime, Duration, Utc};
use credtrail_aggregator::alert::Alert;
use credtrail_aggregator::audit::{AuditEvent, parse_webhook_body};
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_proto::model::Observation;
use serde_json::{Value, json};

pub const T0: &str = "2026-03-01T10:00:00Z";

pub fn t(offset_s: i64) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(T0)
        .unwrap()
        .with_timezone(&Utc)
        + Duration::seconds(offset_s)
}

fn ts(offset_s: i64) -> String {
    t(offset_s).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A request, described by the fields scenarios vary.
#[derive(Clone)]
pub struct Req {
    pub id: String,
    pub at: i64,
    pub user: String,
    pub groups: Vec<String>,
    pub extra: Value,
    pub ips: Vec<String>,
    pub verb: String,
    pub resource: String,
    pub api_group: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: i32,
    pub level: String,
    pub request_object: Option<Value>,
    pub response_object: Option<Value>,
}

impl Req {
    pub fn new(id: &str, at: i64, user: &str, ip: &str) -> Self {
        Self {
            id: id.into(),
            at,
            user: user.into(),
            groups: vec!["system:authenticated".into()],
            extra: json!({}),
            ips: vec![ip.into()],
            verb: "get".into(),
            resource: "pods".into(),
            api_group: None,
            namespace: Some("default".into()),
            name: None,
            code: 200,
            level: "Metadata".into(),
            request_object: None,
            response_object: None,
        }
    }

    /// Bound service-account token claims in `user.extra`.
    pub fn bound(mut self, jti: &str, node: &str, pod: &str, pod_uid: &str) -> Self {
        self.extra = json!({
            "authentication.kubernetes.io/credential-id": [format!("JTI={jti}")],
            "authentication.kubernetes.io/node-name": [node],
            "authentication.kubernetes.io/node-uid": [format!("uid-{node}")],
            "authentication.kubernetes.io/pod-name": [pod],
            "authentication.kubernetes.io/pod-uid": [pod_uid],
        });
        self
    }

    pub fn cred(mut self, credential_id: &str) -> Self {
        self.extra = json!({"authentication.kubernetes.io/credential-id": [credential_id]});
        self
    }

    pub fn ips(mut self, ips: &[&str]) -> Self {
        self.ips = ips.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn verb(mut self, verb: &str, resource: &str) -> Self {
        self.verb = verb.into();
        self.resource = resource.into();
        self
    }

    pub fn code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }

    /// A (Cluster)RoleBinding write at RequestResponse level.
    pub fn binding(
        mut self,
        verb: &str,
        kind: &str,
        ns: Option<&str>,
        name: &str,
        role: (&str, &str),
        subjects: Value,
    ) -> Self {
        let body = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role.0, "name": role.1},
            "subjects": subjects,
        });
        self.verb = verb.into();
        self.resource = if kind == "ClusterRoleBinding" {
            "clusterrolebindings"
        } else {
            "rolebindings"
        }
        .into();
        self.api_group = Some("rbac.authorization.k8s.io".into());
        self.namespace = ns.map(str::to_owned);
        self.name = Some(name.into());
        self.level = "RequestResponse".into();
        self.code = if verb == "create" { 201 } else { 200 };
        self.response_object = Some(body.clone());
        self.request_object = Some(if verb == "patch" {
            json!({"subjects": subjects})
        } else {
            body
        });
        self
    }

    /// A (Cluster)Role write with rules.
    pub fn role(mut self, kind: &str, ns: Option<&str>, name: &str, rules: Value) -> Self {
        let body = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": ns}, "rules": rules,
        });
        self.verb = "create".into();
        self.resource = if kind == "ClusterRole" {
            "clusterroles"
        } else {
            "roles"
        }
        .into();
        self.api_group = Some("rbac.authorization.k8s.io".into());
        self.namespace = ns.map(str::to_owned);
        self.name = Some(name.into());
        self.level = "RequestResponse".into();
        self.code = 201;
        self.request_object = Some(body.clone());
        self.response_object = Some(body);
        self
    }

    pub fn metadata_only(mut self) -> Self {
        self.level = "Metadata".into();
        self.request_object = None;
        self.response_object = None;
        self
    }

    pub fn json(&self) -> Value {
        let path = match (&self.api_group, &self.namespace) {
            (Some(g), Some(ns)) => format!("/apis/{g}/v1/namespaces/{ns}/{}", self.resource),
            (Some(g), None) => format!("/apis/{g}/v1/{}", self.resource),
            (None, Some(ns)) => format!("/api/v1/namespaces/{ns}/{}", self.resource),
            (None, None) => format!("/api/v1/{}", self.resource),
        };
        let mut v = json!({
            "kind": "Event",
            "apiVersion": "audit.k8s.io/v1",
            "level": self.level,
            "auditID": self.id,
            "stage": "ResponseComplete",
            "requestURI": path,
            "verb": self.verb,
            "user": {"username": self.user, "uid": format!("uid-{}", self.user), "groups": self.groups, "extra": self.extra},
            "sourceIPs": self.ips,
            "userAgent": "kubectl/v1.32.0 (linux/amd64) kubernetes/abc",
            "objectRef": {"resource": self.resource, "namespace": self.namespace, "name": self.name,
                          "apiGroup": self.api_group, "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": self.code},
            "requestReceivedTimestamp": ts(self.at),
            "stageTimestamp": ts(self.at),
            "annotations": {
                "authorization.k8s.io/decision": if self.code == 403 { "forbid" } else { "allow" },
                "authorization.k8s.io/reason": ""
            },
        });
        if let Some(o) = &self.request_object {
            v["requestObject"] = o.clone();
        }
        if let Some(o) = &self.response_object {
            v["responseObject"] = o.clone();
        }
        v
    }
}

/// Parses requests through the webhook's `EventList` parser.
pub fn events(reqs: &[Req]) -> Vec<AuditEvent> {
    let list = json!({
        "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
        "items": reqs.iter().map(Req::json).collect::<Vec<_>>(),
    });
    parse_webhook_body(list.to_string().as_bytes()).unwrap()
}

pub fn obs(v: Value) -> Observation {
    serde_json::from_value(v).unwrap()
}

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
    json!({"pid": tgid, "tgid": tgid, "ppid": 1, "uid": 0, "comm": comm, "exe": format!("/usr/bin/{comm}"),
           "cmdline": [comm], "mnt_ns": 4026531840u64})
}

/// A projected token read by `tgid` (claims as the agent extracts them).
pub fn token_read(
    node: &str,
    id: &str,
    at: i64,
    tgid: u32,
    comm: &str,
    pod: PodRef<'_>,
    claims: Value,
) -> Observation {
    obs(json!({
        "id": id, "time": ts(at), "node": node, "type": "credential_read",
        "source": "tracepoint", "process": process(tgid, comm), "workload": workload(pod),
        "path": "/var/run/secrets/kubernetes.io/serviceaccount/token", "flags": 0, "inode": 77, "reads": 1,
        "credential": {"kind": "service_account_token", "sha256": format!("{:0>64}", id.len()),
            "token": {"sha256": "ab".repeat(32), "claims": claims}},
    }))
}

/// A kubeconfig read whose user has a client certificate.
pub fn kubeconfig_read(
    node: &str,
    id: &str,
    at: i64,
    tgid: u32,
    cert_sha: &str,
    cn: &str,
) -> Observation {
    obs(json!({
        "id": id, "time": ts(at), "node": node, "type": "credential_read",
        "source": "tracepoint", "process": process(tgid, "kubectl"), "workload": null,
        "path": "/root/.kube/config", "flags": 0, "inode": 78, "reads": 1,
        "credential": {"kind": "kubeconfig", "sha256": "cd".repeat(32),
            "kubeconfig": {"current_context": "admin", "servers": ["https://127.0.0.1:6443"],
                "users": [{"name": "admin", "client_certificate": {"sha256": cert_sha, "subject_cn": cn, "subject_o": ["ops"]}}]}},
    }))
}

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

pub fn claims(
    jti: Option<&str>,
    ns: &str,
    sa: &str,
    pod: Option<(&str, &str)>,
    node: Option<&str>,
) -> Value {
    json!({
        "iss": "https://kubernetes.default.svc", "sub": format!("system:serviceaccount:{ns}:{sa}"),
        "aud": ["https://kubernetes.default.svc"], "jti": jti, "namespace": ns,
        "service_account_name": sa, "pod_name": pod.map(|p| p.0), "pod_uid": pod.map(|p| p.1),
        "node_name": node,
    })
}

/// One input step of a scenario.
pub enum Step {
    Obs(&'static str, Vec<Observation>),
    Audit(Vec<Req>),
}

/// An in-memory aggregator with this policy (YAML).
pub fn app(policy_yaml: &str) -> AppState {
    let policy = Policy::from_yaml("test policy", policy_yaml).unwrap();
    AppState::in_memory(policy).unwrap()
}

/// Feeds the steps through the pipeline; returns the active alerts raised.
pub async fn run(app: &AppState, steps: Vec<Step>) -> Vec<Alert> {
    let mut alerts = Vec::new();
    for s in steps {
        match s {
            Step::Obs(node, o) => app.pipeline.ingest_observations(node, o).await.unwrap(),
            Step::Audit(reqs) => {
                let r = app
                    .pipeline
                    .ingest_audit_batch("webhook", events(&reqs))
                    .await
                    .unwrap();
                alerts.extend(r.alerts);
            }
        }
    }
    alerts
}

pub fn rules(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.rule.as_str()).collect()
}

/// The standard two-node cluster: node-a 127.0.1.1 (pods 127.1.1.0/24),
/// node-b 127.0.1.2 (pods 127.1.2.0/24).
pub fn cluster() -> Step {
    Step::Obs(
        "node-a",
        vec![
            node_info("node-a", -600, &["127.0.1.1"], &["127.1.1.0/24"]),
            node_info("node-b", -600, &["127.0.1.2"], &["127.1.2.0/24"]),
        ],
    )
}

pub const WEB_POD: (&str, &str, &str, &str) = ("shop", "web-1", "pod-uid-web", "ctr-web");

/// The claims of the `shop/web` pod's bound token (JTI `jti-web`, pod `web-1` on `node-a`).
pub fn web_claims() -> Value {
    claims(
        Some("jti-web"),
        "shop",
        "web",
        Some(("web-1", "pod-uid-web")),
        Some("node-a"),
    )
}

/// `node-a`'s agent saw the `web` process of pod `shop/web-1` read its bound token.
pub fn web_token_read() -> Observation {
    token_read(
        "node-a",
        "node-a/b/1",
        -60,
        100,
        "web",
        Some(WEB_POD),
        web_claims(),
    )
}
