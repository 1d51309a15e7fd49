//! Realistic audit traffic for the soak: what a busy cluster's API server
//! writes, built with the simulator's event builder ([`Record::to_event`]).
//!
//! - stable workloads: service accounts whose pods use bound tokens (the
//!   `user.extra` credential-id `JTI=<uuid>`, node and pod names and uids),
//!   each token replaced by a new one every `token_lifetime`;
//! - kubelets: `system:node:<name>` renewing their lease and patching their
//!   status, with their client certificate's `X509SHA256=` credential-id;
//! - short-lived identities (CI jobs) at the `churn` share of events: each a
//!   new service account in its own namespace, making a few dozen requests;
//! - an RBAC write (a RoleBinding created, at `RequestResponse`) about every
//!   2,000 events.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};

use crate::apisim::audit::{ObjectRef, Record};
use crate::apisim::authn::{
    EXTRA_CREDENTIAL_ID, EXTRA_NODE_NAME, EXTRA_NODE_UID, EXTRA_POD_NAME, EXTRA_POD_UID, UserInfo,
};

/// The shape of the simulated cluster.
#[derive(Debug, Clone)]
pub struct Shape {
    pub nodes: usize,
    pub service_accounts: usize,
    pub pods_per_account: usize,
    /// Share of events from short-lived identities, in percent.
    pub churn_percent: f64,
    /// Requests one short-lived identity makes before it goes away.
    pub requests_per_job: u32,
    /// How long a bound token is used before its pod gets a new one.
    pub token_lifetime: Duration,
    /// One RBAC write per this many events.
    pub rbac_every: u64,
}

impl Default for Shape {
    fn default() -> Self {
        Self {
            nodes: 50,
            service_accounts: 200,
            pods_per_account: 5,
            churn_percent: 10.0,
            requests_per_job: 30,
            token_lifetime: Duration::from_secs(600),
            rbac_every: 2000,
        }
    }
}

struct Pod {
    namespace: String,
    account: String,
    name: String,
    uid: String,
    node: usize,
    ip: String,
    jti: String,
    renew_at: Instant,
    /// Requests left (short-lived identities only).
    left: u32,
}

/// A pod's current bound token, as its node's agent would see it read
/// ([`Traffic::take_rotated`], [`Traffic::tokens`]).
#[derive(Debug, Clone)]
pub struct PodToken {
    /// Index of the node ([`Traffic::node`]).
    pub node: usize,
    pub namespace: String,
    pub account: String,
    pub name: String,
    pub uid: String,
    pub jti: String,
    pub ip: String,
}

impl PodToken {
    fn of(p: &Pod) -> Self {
        Self {
            node: p.node,
            namespace: p.namespace.clone(),
            account: p.account.clone(),
            name: p.name.clone(),
            uid: p.uid.clone(),
            jti: p.jti.clone(),
            ip: p.ip.clone(),
        }
    }
}

struct Node {
    name: String,
    uid: String,
    ip: String,
    cert_id: String,
}

/// The event source. Deterministic apart from uuids and clocks.
pub struct Traffic {
    shape: Shape,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    jobs: VecDeque<Pod>,
    seq: u64,
    next_job: u64,
    rng: u64,
    /// New JTIs handed out (token rotations and jobs).
    pub tokens_issued: u64,
    /// Short-lived identities created.
    pub jobs_started: u64,
    /// Tokens issued since the last [`Traffic::take_rotated`], when tracked.
    rotated: Option<Vec<PodToken>>,
}

fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Traffic {
    pub fn new(shape: Shape) -> Self {
        let start = Instant::now();
        let nodes: Vec<Node> = (0..shape.nodes)
            .map(|i| Node {
                name: format!("node-{i:04}"),
                uid: uuid(),
                ip: format!("10.0.{}.{}", i / 250, i % 250 + 2),
                cert_id: format!("X509SHA256={:064x}", i + 1),
            })
            .collect();
        let mut t = Self {
            shape: shape.clone(),
            nodes,
            pods: Vec::new(),
            jobs: VecDeque::new(),
            seq: 0,
            next_job: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            tokens_issued: 0,
            jobs_started: 0,
            rotated: None,
        };
        for a in 0..shape.service_accounts {
            for p in 0..shape.pods_per_account {
                let i = a * shape.pods_per_account + p;
                let node = i % shape.nodes.max(1);
                // Spread first renewals over one lifetime.
                let lifetime = shape.token_lifetime.as_secs_f64();
                let offset = lifetime
                    * (i as f64 / (shape.service_accounts * shape.pods_per_account) as f64);
                let pod = Pod {
                    namespace: format!("team-{:03}", a % 40),
                    account: format!("app-{a:04}"),
                    name: format!("app-{a:04}-{p}"),
                    uid: uuid(),
                    node,
                    ip: pod_ip(node, i / shape.nodes.max(1)),
                    jti: uuid(),
                    renew_at: start + Duration::from_secs_f64(offset.max(0.001)),
                    left: 0,
                };
                t.pods.push(pod);
            }
        }
        t
    }

    /// Keeps every token issued from now on for [`Traffic::take_rotated`]
    /// (the scale bench's agents report them read).
    pub fn track_rotations(&mut self) {
        self.rotated.get_or_insert_with(Vec::new);
    }

    /// Tokens issued (rotations, new short-lived pods) since the last call.
    pub fn take_rotated(&mut self) -> Vec<PodToken> {
        self.rotated
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Every stable pod's current token.
    pub fn tokens(&self) -> Vec<PodToken> {
        self.pods.iter().map(PodToken::of).collect()
    }

    /// Node `i`: name, address, pod range.
    pub fn node(&self, i: usize) -> (&str, &str, String) {
        let n = &self.nodes[i];
        (
            &n.name,
            &n.ip,
            format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
        )
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.rand() % n.max(1) as u64) as usize
    }

    /// The next event (`audit.k8s.io/v1` `Event`).
    pub fn next_event(&mut self) -> Value {
        self.seq += 1;
        if self.shape.rbac_every > 0 && self.seq.is_multiple_of(self.shape.rbac_every) {
            return self.rbac_write();
        }
        let r = (self.rand() % 10_000) as f64 / 100.0;
        if r < self.shape.churn_percent {
            return self.job_request();
        }
        // Of the stable traffic: one in five from kubelets.
        if self.rand().is_multiple_of(5) {
            self.kubelet_request()
        } else {
            self.workload_request()
        }
    }

    fn workload_request(&mut self) -> Value {
        let i = self.pick(self.pods.len());
        let now = Instant::now();
        if self.pods[i].renew_at <= now {
            self.pods[i].jti = uuid();
            self.pods[i].renew_at = now + self.shape.token_lifetime;
            self.tokens_issued += 1;
            if let Some(r) = &mut self.rotated {
                r.push(PodToken::of(&self.pods[i]));
            }
        }
        let verb = ["get", "list", "watch", "get"][self.pick(4)];
        let pod = &self.pods[i];
        let node = &self.nodes[pod.node];
        let rec = pod_record(pod, node, verb, "configmaps");
        rec.to_event()
    }

    fn job_request(&mut self) -> Value {
        if self.jobs.len() < 16 || (self.rand().is_multiple_of(4) && self.jobs.len() < 256) {
            self.start_job();
        }
        let i = self.pick(self.jobs.len());
        let job = &mut self.jobs[i];
        job.left = job.left.saturating_sub(1);
        let node = &self.nodes[job.node];
        let verb = ["get", "create", "list", "get"][(self.seq % 4) as usize];
        let ev = pod_record(job, node, verb, "pods").to_event();
        if job.left == 0 {
            self.jobs.remove(i);
        }
        ev
    }

    fn start_job(&mut self) {
        self.next_job += 1;
        self.jobs_started += 1;
        self.tokens_issued += 1;
        let n = self.next_job;
        let node = self.pick(self.nodes.len());
        self.jobs.push_back(Pod {
            namespace: format!("ci-{:05}", n % 10_000),
            account: format!("job-{n}"),
            name: format!("job-{n}-runner"),
            uid: uuid(),
            node,
            ip: pod_ip(node, 100_000 + n as usize),
            jti: uuid(),
            renew_at: Instant::now() + Duration::from_secs(86_400),
            left: self.shape.requests_per_job.max(1),
        });
        if let (Some(r), Some(p)) = (&mut self.rotated, self.jobs.back()) {
            r.push(PodToken::of(p));
        }
    }

    fn kubelet_request(&mut self) -> Value {
        let i = self.pick(self.nodes.len());
        let n = &self.nodes[i];
        let user = UserInfo {
            username: format!("system:node:{}", n.name),
            uid: None,
            groups: vec!["system:nodes".into(), "system:authenticated".into()],
            extra: BTreeMap::from([(EXTRA_CREDENTIAL_ID.into(), vec![n.cert_id.clone()])]),
        };
        let (verb, uri, object_ref) = if self.seq.is_multiple_of(3) {
            (
                "patch",
                format!("/api/v1/nodes/{}/status", n.name),
                ObjectRef {
                    resource: "nodes".into(),
                    name: Some(n.name.clone()),
                    api_version: "v1".into(),
                    ..Default::default()
                },
            )
        } else {
            (
                "update",
                format!(
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{}",
                    n.name
                ),
                ObjectRef {
                    resource: "leases".into(),
                    namespace: Some("kube-node-lease".into()),
                    name: Some(n.name.clone()),
                    api_group: Some("coordination.k8s.io".into()),
                    api_version: "v1".into(),
                },
            )
        };
        Record {
            level: "Metadata",
            verb: verb.into(),
            request_uri: uri,
            user,
            source_ips: vec![n.ip.clone()],
            user_agent: Some("kubelet/v1.31.2 (linux/amd64) kubernetes/5864a46".into()),
            object_ref: Some(object_ref),
            code: 200,
            request_object: None,
            response_object: None,
            received: Utc::now(),
            decision: "allow",
            reason: String::new(),
        }
        .to_event()
    }

    fn rbac_write(&mut self) -> Value {
        let ns = format!("team-{:03}", self.pick(40));
        let name = format!("soak-{}", self.seq);
        let body = json!({
            "kind": "RoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": format!("app-{:04}", self.pick(200)), "namespace": ns}],
        });
        Record {
            level: "RequestResponse",
            verb: "create".into(),
            request_uri: format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings"),
            user: UserInfo {
                username: "system:serviceaccount:argocd:argocd-application-controller".into(),
                uid: Some("5e1c0c3a-0d7e-4c55-a1ad-0d5f1e0b2f31".into()),
                groups: vec![
                    "system:serviceaccounts".into(),
                    "system:authenticated".into(),
                ],
                extra: BTreeMap::new(),
            },
            // The controller's pod, on the first node (inside its pod range).
            source_ips: vec![pod_ip(0, 249)],
            user_agent: Some("argocd-application-controller/v2.12".into()),
            object_ref: Some(ObjectRef {
                resource: "rolebindings".into(),
                namespace: Some(ns),
                name: Some(name),
                api_group: Some("rbac.authorization.k8s.io".into()),
                api_version: "v1".into(),
            }),
            code: 201,
            request_object: Some(body.clone()),
            response_object: Some(body),
            received: Utc::now(),
            decision: "allow",
            reason: "RBAC: allowed by ClusterRoleBinding \"argocd\"".into(),
        }
        .to_event()
    }
}

/// Address of pod number `k` on `node`, inside the node's pod range
/// ([`Traffic::node`]).
fn pod_ip(node: usize, k: usize) -> String {
    format!("10.{}.{}.{}", 64 + node / 256, node % 256, k % 250 + 2)
}

fn pod_record(pod: &Pod, node: &Node, verb: &str, resource: &str) -> Record {
    let user = UserInfo {
        username: format!("system:serviceaccount:{}:{}", pod.namespace, pod.account),
        uid: None,
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{}", pod.namespace),
            "system:authenticated".into(),
        ],
        extra: BTreeMap::from([
            (EXTRA_CREDENTIAL_ID.into(), vec![format!("JTI={}", pod.jti)]),
            (EXTRA_NODE_NAME.into(), vec![node.name.clone()]),
            (EXTRA_NODE_UID.into(), vec![node.uid.clone()]),
            (EXTRA_POD_NAME.into(), vec![pod.name.clone()]),
            (EXTRA_POD_UID.into(), vec![pod.uid.clone()]),
        ]),
    };
    let list = verb == "list" || verb == "watch";
    let uri = if list {
        format!("/api/v1/namespaces/{}/{resource}?limit=500", pod.namespace)
    } else {
        format!(
            "/api/v1/namespaces/{}/{resource}/{}",
            pod.namespace, pod.name
        )
    };
    Record {
        level: "Metadata",
        verb: verb.into(),
        request_uri: uri,
        user,
        source_ips: vec![pod.ip.clone()],
        user_agent: Some("app/v1.0 (linux/amd64) kubernetes/client-go".into()),
        object_ref: Some(ObjectRef {
            resource: resource.into(),
            namespace: Some(pod.namespace.clone()),
            name: (!list).then(|| pod.name.clone()),
            api_group: None,
            api_version: "v1".into(),
        }),
        code: 200,
        request_object: None,
        response_object: None,
        received: Utc::now(),
        decision: "allow",
        reason: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_has_every_kind_at_its_share() {
        let mut t = Traffic::new(Shape {
            token_lifetime: Duration::ZERO,
            ..Shape::default()
        });
        let evs: Vec<Value> = (0..10_000).map(|_| t.next_event()).collect();
        let user = |e: &Value| e["user"]["username"].as_str().unwrap_or("").to_owned();
        let jobs = evs.iter().filter(|e| user(e).contains(":ci-")).count();
        let kubelets = evs
            .iter()
            .filter(|e| user(e).starts_with("system:node:"))
            .count();
        let rbac = evs
            .iter()
            .filter(|e| e["objectRef"]["resource"] == "rolebindings")
            .count();
        assert!((800..1200).contains(&jobs), "churn share: {jobs}");
        assert!((1400..2200).contains(&kubelets), "kubelets: {kubelets}");
        assert_eq!(rbac, 5);
        assert!(t.jobs_started > 25, "short-lived identities come and go");
        // Zero lifetime: every workload request carries a fresh JTI.
        assert!(t.tokens_issued > 6000);
        let w = evs
            .iter()
            .find(|e| user(e).contains(":team-"))
            .expect("a workload event");
        let extra = &w["user"]["extra"];
        assert!(
            extra[EXTRA_CREDENTIAL_ID][0]
                .as_str()
                .unwrap()
                .starts_with("JTI=")
        );
        assert!(
            extra[EXTRA_NODE_NAME][0]
                .as_str()
                .unwrap()
                .starts_with("node-")
        );
        assert!(extra[EXTRA_POD_NAME][0].is_string());
    }
}
