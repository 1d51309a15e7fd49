//! `CT1547-006` as the detector judges it (`Detector::judge_node_write`): a
//! Node status write by an identity that is neither that node nor a
//! Kubernetes component is alerted when it carries an address not already
//! the node's (a launder attempt), and not when it repeats what agents or
//! the node itself reported.

use serde_json::{Value, json};

use crate::alert::{Alert, Severity};
use crate::audit::{AuditEvent, parse_event};
use crate::detect::Detector;
use crate::detect::testkit::*;

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;

/// node-a (127.0.1.1) and node-b (127.0.1.2) reported by their agents.
fn nodes() -> Detector {
    let mut d = detector(POLICY);
    observe(
        &mut d,
        &[
            node_info("node-a", -600, &["127.0.1.1"], &["127.1.1.0/24"]),
            node_info("node-b", -600, &["127.0.1.2"], &["127.1.2.0/24"]),
        ],
    );
    d
}

/// `user` (in `groups`) patches `nodes/<node>/status` setting `addrs` as InternalIPs, from `src`.
fn status_patch(
    id: &str,
    at: i64,
    (user, groups): (&str, &[&str]),
    node: &str,
    addrs: &[&str],
    src: &str,
) -> AuditEvent {
    let addresses: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"type": "InternalIP", "address": a}))
        .collect();
    let ts = t(at).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/nodes/{node}/status"), "verb": "patch",
        "user": {"username": user, "groups": groups},
        "sourceIPs": [src], "userAgent": "kubectl/v1.32.0",
        "objectRef": {"resource": "nodes", "name": node, "subresource": "status", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": {"status": {"addresses": addresses}},
        "requestReceivedTimestamp": ts, "stageTimestamp": ts,
        "annotations": {"authorization.k8s.io/decision": "allow"},
    });
    parse_event(v.to_string().as_bytes()).unwrap()
}

const ALICE: (&str, &[&str]) = ("alice", &["system:authenticated"]);

fn write(d: &mut Detector, ev: &AuditEvent) -> Vec<Alert> {
    let mut ch = crate::detect::Changes::default();
    d.judge(ev, &mut ch)
}

#[test]
fn a_new_address_written_into_a_nodes_status_by_a_person_is_alerted() {
    let mut d = nodes();
    let ev = status_patch("w", 0, ALICE, "node-a", &["127.0.1.77"], "127.0.1.9");
    let mut ch = crate::detect::Changes::default();
    let alerts = d.judge(&ev, &mut ch);
    assert_eq!(ch.node_writes_refused, 1, "the address is not learned");
    assert_eq!(rules(&alerts), ["CT1547-006"]);
    let a = &alerts[0];
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.details["node"], "node-a");
    assert!(
        a.reason
            .starts_with("alice wrote the status of node node-a from 127.0.1.9"),
        "{}",
        a.reason
    );
}

#[test]
fn an_address_of_another_node_is_alerted_the_nodes_own_is_not() {
    let mut d = nodes();
    // node-b's address as node-a's: uses from node-b would look like node-a's.
    let ev = status_patch("b", 0, ALICE, "node-a", &["127.0.1.2"], "127.0.1.9");
    assert_eq!(rules(&write(&mut d, &ev)), ["CT1547-006"]);
    // node-a's own address (its agent reported it): a status repeated.
    let ev = status_patch("a", 1, ALICE, "node-a", &["127.0.1.1"], "127.0.1.9");
    assert!(write(&mut d, &ev).is_empty());
}

#[test]
fn an_address_the_node_itself_reported_is_not_alerted_when_repeated() {
    let mut d = nodes();
    let kubelet = ("system:node:node-a", &["system:nodes"][..]);
    // The kubelet sets its own status (taught, never alerted).
    let ev = status_patch("k", 0, kubelet, "node-a", &["127.0.1.50"], "127.0.1.1");
    assert!(write(&mut d, &ev).is_empty());
    // Someone else writing back the same address adds nothing.
    let ev = status_patch("r", 10, ALICE, "node-a", &["127.0.1.50"], "127.0.1.9");
    assert!(write(&mut d, &ev).is_empty());
    // A new one in the same write is still alerted.
    let ev = status_patch(
        "n",
        20,
        ALICE,
        "node-a",
        &["127.0.1.50", "127.0.1.51"],
        "127.0.1.9",
    );
    assert_eq!(rules(&write(&mut d, &ev)), ["CT1547-006"]);
}

#[test]
fn the_node_itself_and_components_writing_new_addresses_raise_nothing() {
    let mut d = nodes();
    for (id, who, addr) in [
        (
            "k",
            ("system:node:node-a", &["system:nodes"][..]),
            "127.0.1.88",
        ),
        (
            "c",
            ("system:cloud-controller-manager", &[][..]),
            "127.0.1.89",
        ),
        (
            "m",
            ("system:kube-controller-manager", &[][..]),
            "127.0.1.90",
        ),
    ] {
        let ev = status_patch(id, 0, who, "node-a", &[addr], "127.0.1.1");
        assert!(write(&mut d, &ev).is_empty(), "{}", who.0);
    }
}
