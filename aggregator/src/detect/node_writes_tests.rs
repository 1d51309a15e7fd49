//! `CT1547-006` through the detector: a Node's addresses written by someone
//! who is not that node, judged on real-format audit events parsed by the
//! production parser.

use serde_json::{Value, json};

use crate::alert::{Alert, Severity};
use crate::audit::parse_event;
use crate::detect::testkit::detector;
use crate::detect::{Changes, Detector};

const POLICY: &str = "cluster:\n  node_cidrs: [127.0.1.0/24]\n";

/// `user` (in `groups`) patches `nodes/node-a/status` from 127.0.1.9 with
/// these status addresses, answered `code`.
fn status_patch(
    d: &mut Detector,
    id: &str,
    user: &str,
    groups: &[&str],
    addrs: &[(&str, &str)],
    code: i32,
) -> (Vec<Alert>, Changes) {
    let addresses: Vec<Value> = addrs
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    let body = json!({"status": {"addresses": addresses}});
    let v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/nodes/node-a/status", "verb": "patch",
        "user": {"username": user, "groups": groups},
        "sourceIPs": ["127.0.1.9"], "userAgent": "kubectl/v1.32.0",
        "objectRef": {"resource": "nodes", "name": "node-a", "subresource": "status", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": code},
        "requestObject": body,
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.100000Z",
        "annotations": {"authorization.k8s.io/decision": if code == 403 { "forbid" } else { "allow" }},
    });
    let mut ch = Changes::default();
    let a = d.judge(&parse_event(v.to_string().as_bytes()).unwrap(), &mut ch);
    (a, ch)
}

fn node_write_alerts(a: &[Alert]) -> Vec<&Alert> {
    a.iter().filter(|a| a.rule == "CT1547-006").collect()
}

const PEOPLE: &[&str] = &["system:authenticated"];

#[test]
fn a_person_writing_a_node_address_is_alerted_high_and_a_refused_try_medium() {
    let mut d = detector(POLICY);
    let (a, ch) = status_patch(
        &mut d,
        "w1",
        "alice",
        PEOPLE,
        &[("ExternalIP", "198.51.100.7")],
        200,
    );
    let a = node_write_alerts(&a);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].severity, Severity::High);
    assert!(
        a[0].reason
            .starts_with("alice wrote the status of node node-a from 127.0.1.9"),
        "{}",
        a[0].reason
    );
    assert_eq!(a[0].details["node"], "node-a");
    assert_eq!(a[0].details["writer"], "alice");
    assert_eq!(a[0].details["subresource"], "status");
    assert_eq!(ch.node_writes_refused, 1, "the address is not learned");

    // Not learned: the same address written by someone else is alerted too
    // (alice's own repeats fold into her first alert).
    let (a, _) = status_patch(
        &mut d,
        "w2",
        "carol",
        PEOPLE,
        &[("ExternalIP", "198.51.100.7")],
        200,
    );
    assert_eq!(node_write_alerts(&a).len(), 1);

    let (a, _) = status_patch(
        &mut d,
        "w3",
        "mallory",
        PEOPLE,
        &[("InternalIP", "198.51.100.8")],
        403,
    );
    let a = node_write_alerts(&a);
    assert_eq!(a.len(), 1, "{a:#?}");
    assert_eq!(a[0].severity, Severity::Medium);
    assert!(
        a[0].reason.contains("mallory tried (denied) to write"),
        "{}",
        a[0].reason
    );
}

#[test]
fn the_node_itself_teaches_its_addresses_and_a_repeat_by_someone_else_is_no_news() {
    let mut d = detector(POLICY);
    let kubelet = (
        "system:node:node-a",
        &["system:nodes", "system:authenticated"][..],
    );
    let (a, ch) = status_patch(
        &mut d,
        "k1",
        kubelet.0,
        kubelet.1,
        &[("InternalIP", "127.0.1.20")],
        200,
    );
    assert!(node_write_alerts(&a).is_empty(), "{a:#?}");
    assert_eq!(ch.node_writes_refused, 0);
    assert!(!ch.cluster.is_empty(), "the node's own address is learned");
    // Someone else repeating what the node said teaches nothing new.
    let (a, _) = status_patch(
        &mut d,
        "w1",
        "alice",
        PEOPLE,
        &[("InternalIP", "127.0.1.20")],
        200,
    );
    assert!(node_write_alerts(&a).is_empty(), "{a:#?}");
    let (a, _) = status_patch(
        &mut d,
        "w2",
        "alice",
        PEOPLE,
        &[("InternalIP", "127.0.1.20"), ("InternalIP", "127.0.1.21")],
        200,
    );
    assert_eq!(node_write_alerts(&a).len(), 1, "{a:#?}");
    // Another node's credential is refused by NodeRestriction, not alerted
    // here; a Kubernetes component is not alerted either.
    for (i, (user, groups)) in [
        ("system:node:node-b", &["system:nodes"][..]),
        ("system:kube-controller-manager", &[][..]),
        ("system:serviceaccount:kube-system:node-controller", &[][..]),
    ]
    .into_iter()
    .enumerate()
    {
        let (a, _) = status_patch(
            &mut d,
            &format!("o{i}"),
            user,
            groups,
            &[("InternalIP", "127.0.1.30")],
            200,
        );
        assert!(node_write_alerts(&a).is_empty(), "{user}: {a:#?}");
    }
}

/// `judge` itself raises only for `Writer::Other`: the node, the cloud node
/// controller, another node and control-plane components are judged
/// elsewhere (NodeRestriction, the learning rules), whatever the caller.
#[test]
fn only_a_writer_of_no_standing_is_judged() {
    use crate::detect::node_writes::{Writer, judge};
    let v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
        "auditID": "w1", "stage": "ResponseComplete",
        "requestURI": "/api/v1/nodes/node-a/status", "verb": "patch",
        "user": {"username": "mallory", "groups": PEOPLE},
        "sourceIPs": ["127.0.1.9"],
        "objectRef": {"resource": "nodes", "name": "node-a", "subresource": "status", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": {"status": {"addresses": [{"type": "InternalIP", "address": "127.0.1.77"}]}},
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.100000Z",
    });
    let ev = parse_event(v.to_string().as_bytes()).unwrap();
    let a = judge(&ev, "node-a", Writer::Other).expect("someone else writing a node's addresses");
    assert_eq!(a.rule, "CT1547-006");
    for w in [
        Writer::SelfNode,
        Writer::CloudController,
        Writer::OtherNode,
        Writer::Component,
    ] {
        assert!(judge(&ev, "node-a", w).is_none(), "{w:?}");
    }
}
