//! Issue 14 follow-up: only a node itself (or the cloud node controller) may
//! teach the aggregator a node's addresses. An attacker who can write
//! `nodes/status` must not be able to register an outside address as a
//! node's and so launder every later use from it. Real audit-format events
//! through the real pipeline and HTTP listener.

use crate::api_support;

use api_support::{Api, base_time};
use chrono::{DateTime, Duration, Utc};
use credtrail_aggregator::policy::Policy;
use hyper::StatusCode;
use serde_json::{Value, json};

const KUBELET_A: &str =
    "X509SHA256=66570ff05a2074043084d4aca94293ef067530dde94ff4e92b8d8459253eb779";
const KUBELET_B: &str =
    "X509SHA256=93ef37c6157138222b21a42be52183d08d75cd4fed49c1cbba571b06a69e39a4";

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn node_obj(name: &str, addrs: &[(&str, &str)]) -> Value {
    let a: Vec<Value> = addrs
        .iter()
        .map(|(t, ip)| json!({"type": t, "address": ip}))
        .collect();
    json!({"kind": "Node", "apiVersion": "v1",
           "metadata": {"name": name, "uid": format!("uid-{name}")},
           "status": {"addresses": a,
                      "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}})
}

/// `PATCH /api/v1/nodes/<node>/status` by `user` (groups, credential) from `ip`.
#[allow(
    clippy::too_many_arguments,
    reason = "one audit event's fields, named at each call"
)]
fn status_patch(
    id: &str,
    t: DateTime<Utc>,
    user: &str,
    groups: &[&str],
    cred: &str,
    ip: &str,
    node: &str,
    addrs: &[(&str, &str)],
    ua: &str,
) -> Value {
    let obj = node_obj(node, addrs);
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/nodes/{node}/status?fieldManager=kubectl-patch"),
        "verb": "patch",
        "user": {"username": user, "groups": groups,
                 "extra": {"authentication.kubernetes.io/credential-id": [cred]}},
        "sourceIPs": [ip], "userAgent": ua,
        "objectRef": {"resource": "nodes", "name": node, "apiVersion": "v1", "subresource": "status"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": {"status": obj["status"].clone()},
        "responseObject": obj,
        "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t + Duration::milliseconds(4)),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}

/// A kubelet's ordinary request (`get nodes/<node>`) with its client certificate.
fn kubelet_get(id: &str, t: DateTime<Utc>, node: &str, cred: &str, ip: &str) -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/nodes/{node}?resourceVersion=0&timeout=10s"),
        "verb": "get",
        "user": {"username": format!("system:node:{node}"),
                 "groups": ["system:nodes", "system:authenticated"],
                 "extra": {"authentication.kubernetes.io/credential-id": [cred]}},
        "sourceIPs": [ip], "userAgent": "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350",
        "objectRef": {"resource": "nodes", "name": node, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t + Duration::milliseconds(2)),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}

const NODES: &[&str] = &["system:nodes", "system:authenticated"];
const KUBELET_UA: &str = "kubelet/v1.30.2 (linux/amd64) kubernetes/3968350";

async fn alerts(api: &Api) -> Vec<Value> {
    api.get_json("/api/v1/alerts", StatusCode::OK).await["alerts"]
        .as_array()
        .unwrap()
        .clone()
}

async fn learned_addresses(api: &Api, node: &str) -> Vec<String> {
    let v = api.get_json("/api/v1/learned/nodes", StatusCode::OK).await;
    v["learned_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["node"] == node)
        .flat_map(|n| {
            n["facts"]["addresses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|a| a[0].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_workload_registering_a_public_address_for_a_node_is_ignored_and_alerted() {
    let api = Api::start_with(Policy::default()).await;
    let t0 = base_time();
    // node-a's kubelet reports its own status (learned).
    api.ingest(vec![
        status_patch(
            "k1",
            t0,
            "system:node:node-a",
            NODES,
            KUBELET_A,
            "10.0.1.11",
            "node-a",
            &[("InternalIP", "10.0.1.11"), ("Hostname", "node-a")],
            KUBELET_UA,
        ),
        kubelet_get(
            "k2",
            t0 + Duration::seconds(1),
            "node-a",
            KUBELET_A,
            "10.0.1.11",
        ),
    ])
    .await;
    assert_eq!(learned_addresses(&api, "node-a").await, ["10.0.1.11"]);

    // A stolen CI service account adds an Internet address to node-a's status.
    let raised = api
        .ingest(vec![status_patch(
            "x1",
            t0 + Duration::minutes(1),
            "system:serviceaccount:dev:deployer",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:dev",
                "system:authenticated",
            ],
            "JTI=0f6b7a52-9d2c-4c1e-8e7a-3b1f0c9d2e11",
            "10.244.3.9",
            "node-a",
            &[("InternalIP", "10.0.1.11"), ("ExternalIP", "198.51.100.23")],
            "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
        )])
        .await;
    assert_eq!(raised, 1, "the write itself alerts");
    let list = alerts(&api).await;
    let w = list
        .iter()
        .find(|a| a["rule"] == "CT1547-006")
        .expect("CT1547-006");
    assert_eq!(w["severity"], "high");
    assert_eq!(w["details"]["node"], "node-a");
    assert_eq!(
        w["identity"]["username"],
        "system:serviceaccount:dev:deployer"
    );
    assert_eq!(
        learned_addresses(&api, "node-a").await,
        ["10.0.1.11"],
        "the address was not learned"
    );

    // Node-a's credential, used from that address, is still outside.
    let raised = api
        .ingest(vec![kubelet_get(
            "x2",
            t0 + Duration::minutes(2),
            "node-a",
            KUBELET_A,
            "198.51.100.23",
        )])
        .await;
    assert_eq!(raised, 1);
    let list = alerts(&api).await;
    assert!(
        list.iter()
            .any(|a| a["rule"] == "CT1547-002" && a["source_ip"] == "198.51.100.23"),
        "{list:?}"
    );

    // Another node's credential writing node-a's addresses: ignored, counted,
    // not alerted (NodeRestriction refuses it; a node is a system identity).
    let raised = api
        .ingest(vec![status_patch(
            "x3",
            t0 + Duration::minutes(3),
            "system:node:node-b",
            NODES,
            KUBELET_B,
            "10.0.1.12",
            "node-a",
            &[("InternalIP", "10.0.1.11"), ("ExternalIP", "198.51.100.24")],
            KUBELET_UA,
        )])
        .await;
    assert_eq!(raised, 0);
    assert_eq!(learned_addresses(&api, "node-a").await, ["10.0.1.11"]);
    // A username that claims to be the node without the node group teaches nothing.
    api.ingest(vec![status_patch(
        "x4",
        t0 + Duration::minutes(4),
        "system:node:node-a",
        &["system:authenticated"],
        "X509SHA256=00aa",
        "198.51.100.25",
        "node-a",
        &[("InternalIP", "10.0.1.11"), ("ExternalIP", "198.51.100.25")],
        KUBELET_UA,
    )])
    .await;
    assert_eq!(learned_addresses(&api, "node-a").await, ["10.0.1.11"]);

    let (s, m) = api.get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    let line = m
        .lines()
        .find(|l| l.starts_with("credtrail_node_writes_refused_total"))
        .expect("counter exported");
    assert_eq!(line, "credtrail_node_writes_refused_total 3", "{line}");
}

#[tokio::test]
async fn the_cloud_node_controller_and_status_writers_repeating_addresses_raise_nothing() {
    let api = Api::start_with(Policy::default()).await;
    let t0 = base_time();
    let raised = api
        .ingest(vec![
            status_patch("c1", t0, "system:node:node-b", NODES, KUBELET_B, "10.0.1.12", "node-b",
                &[("InternalIP", "10.0.1.12")], KUBELET_UA),
            // The cloud node controller sets node-b's public address.
            status_patch("c2", t0 + Duration::seconds(5), "system:cloud-controller-manager",
                &["system:authenticated"], "X509SHA256=11bb", "10.0.0.2", "node-b",
                &[("InternalIP", "10.0.1.12"), ("ExternalIP", "198.51.100.40")],
                "cloud-controller-manager/v1.30.2 (linux/amd64) kubernetes/3968350/cloud-node-controller"),
            // node-problem-detector updates conditions; the response echoes the addresses.
            status_patch("c3", t0 + Duration::seconds(9), "system:serviceaccount:kube-system:node-problem-detector",
                &["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
                "JTI=6a1d2c3b-0000-4000-8000-00000000npd0", "10.244.1.7", "node-b",
                &[("InternalIP", "10.0.1.12"), ("ExternalIP", "198.51.100.40")],
                "node-problem-detector/v0.8.19 (linux/amd64)"),
            // node-b's kubelet egressing through its public address.
            kubelet_get("c4", t0 + Duration::seconds(12), "node-b", KUBELET_B, "198.51.100.40"),
        ])
        .await;
    assert_eq!(raised, 0, "{:?}", alerts(&api).await);
    let mut got = learned_addresses(&api, "node-b").await;
    got.sort();
    assert_eq!(got, ["10.0.1.12", "198.51.100.40"]);
}
