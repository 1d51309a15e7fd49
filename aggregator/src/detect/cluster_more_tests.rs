//! More unit tests of `cluster.rs`: the bounds of what the audit stream
//! teaches (addresses and ranges per node, API endpoints, deleted nodes),
//! freshness, the once-a-minute silence check, the Endpoints and
//! EndpointSlice forms, and which Node writes teach what.

use chrono::Duration;
use serde_json::json;

use super::*;

fn time(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + at, 0).unwrap()
}

/// A final, successful event by `user` from `ip` with `rest` merged in.
fn ev(id: &str, at: i64, user: &str, ip: &str, verb: &str, rest: Value) -> AuditEvent {
    let groups = if user.starts_with("system:node:") {
        json!(["system:nodes", "system:authenticated"])
    } else {
        json!(["system:authenticated"])
    };
    let mut v = json!({
        "level": "RequestResponse", "auditID": id, "stage": "ResponseComplete",
        "verb": verb, "user": {"username": user, "groups": groups}, "sourceIPs": [ip],
        "responseStatus": {"code": 200}, "requestReceivedTimestamp": time(at).to_rfc3339(),
    });
    if let (Some(o), Some(x)) = (v.as_object_mut(), rest.as_object()) {
        for (k, val) in x {
            o.insert(k.clone(), val.clone());
        }
    }
    serde_json::from_value(v).unwrap()
}

/// kube-controller-manager patching Node `name` (uid `uid`) with these
/// addresses (type, address) and pod ranges.
fn node_write(
    id: &str,
    at: i64,
    name: &str,
    uid: &str,
    addrs: &[(&str, &str)],
    cidrs: &[&str],
) -> AuditEvent {
    let a: Vec<Value> = addrs
        .iter()
        .map(|(t, a)| json!({"type": t, "address": a}))
        .collect();
    ev(
        id,
        at,
        "system:cloud-controller-manager",
        "10.0.0.2",
        "patch",
        json!({"objectRef": {"resource": "nodes", "name": name},
               "responseObject": {"kind": "Node", "metadata": {"name": name, "uid": uid},
                  "spec": {"podCIDRs": cidrs}, "status": {"addresses": a}}}),
    )
}

const TTL: Duration = Duration::hours(24);

fn learn(f: &mut ClusterFacts, p: &Policy, e: &AuditEvent) -> Vec<ClusterChange> {
    let owners = |_: IpAddr, _: &str| Owners {
        agent: None,
        node_has_agent: false,
    };
    f.learn(e, TTL, p, &owners)
}

fn no_policy() -> Policy {
    Policy::from_yaml("t", "").unwrap()
}

fn at(f: &ClusterFacts, ip: &str, t: i64) -> Option<String> {
    f.resolve(ip.parse().unwrap(), time(t), TTL)
        .map(|l| format!("{} via {}", l.node, l.via))
}

fn ips(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{}", i + 1)).collect()
}

#[test]
fn a_node_keeps_its_newest_eight_addresses_and_four_ranges() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    let a = ips(10, "10.0.1.");
    let addrs: Vec<(&str, &str)> = a.iter().map(|x| ("InternalIP", x.as_str())).collect();
    let c: Vec<String> = (0..6).map(|i| format!("10.244.{i}.0/24")).collect();
    let cidrs: Vec<&str> = c.iter().map(String::as_str).collect();
    // One write names at most MAX_ADDRS / MAX_CIDRS of each.
    learn(&mut f, &p, &node_write("1", 0, "n1", "u1", &addrs, &cidrs));
    let v = f.view("n1").unwrap();
    assert_eq!(v.addresses.len(), MAX_ADDRS);
    assert_eq!(v.pod_cidrs.len(), MAX_CIDRS);
    assert_eq!(
        at(&f, "10.0.1.8", 1).as_deref(),
        Some("n1 via node address (learned)")
    );
    assert_eq!(at(&f, "10.0.1.9", 1), None);
    // Later writes add one at a time: the oldest goes first.
    for (i, x) in ["10.0.2.1", "10.0.2.2"].iter().enumerate() {
        let i = i as i64 + 1;
        learn(
            &mut f,
            &p,
            &node_write(
                &format!("a{i}"),
                i,
                "n1",
                "u1",
                &[("ExternalIP", x)],
                &["10.245.0.0/24"],
            ),
        );
    }
    assert_eq!(at(&f, "10.0.1.1", 5), None, "the oldest address went");
    assert_eq!(at(&f, "10.0.1.2", 5), None);
    assert!(at(&f, "10.0.1.3", 5).is_some());
    assert!(at(&f, "10.0.2.2", 5).is_some());
    let v = f.view("n1").unwrap();
    assert_eq!(v.addresses.len(), MAX_ADDRS);
    assert_eq!(v.pod_cidrs.len(), MAX_CIDRS);
    assert_eq!(at(&f, "10.244.0.5", 5), None, "the oldest range went");
    assert_eq!(
        at(&f, "10.245.0.5", 5).as_deref(),
        Some("n1 via node pod CIDR (learned)")
    );
}

#[test]
fn an_address_stays_with_the_node_that_claimed_it_first() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    learn(
        &mut f,
        &p,
        &node_write("1", 0, "n1", "u1", &[("InternalIP", "10.0.1.5")], &[]),
    );
    learn(
        &mut f,
        &p,
        &node_write(
            "2",
            1,
            "n2",
            "u2",
            &[("InternalIP", "10.0.1.5"), ("InternalIP", "10.0.1.6")],
            &[],
        ),
    );
    assert_eq!(
        at(&f, "10.0.1.5", 2).as_deref(),
        Some("n1 via node address (learned)")
    );
    assert_eq!(
        at(&f, "10.0.1.6", 2).as_deref(),
        Some("n2 via node address (learned)")
    );
    // Another node's new address takes nothing from n1.
    assert_eq!(f.view("n1").unwrap().addresses.len(), 1);
    // The same address again refreshes it, not a second copy.
    learn(
        &mut f,
        &p,
        &node_write("3", 2, "n1", "u1", &[("InternalIP", "10.0.1.5")], &[]),
    );
    let v = f.view("n1").unwrap();
    assert_eq!(v.addresses.len(), 1);
    assert_eq!(v.addresses[0].1.last, time(2));
    assert_eq!(v.addresses[0].1.first, time(0));
}

#[test]
fn a_node_address_wins_over_a_pod_range_and_the_smallest_name_a_tie() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    learn(
        &mut f,
        &p,
        &node_write("1", 0, "n-b", "u1", &[], &["10.244.0.0/16"]),
    );
    learn(
        &mut f,
        &p,
        &node_write("2", 0, "n-a", "u2", &[], &["10.244.1.0/24"]),
    );
    assert_eq!(
        at(&f, "10.244.1.5", 1).as_deref(),
        Some("n-a via node pod CIDR (learned)")
    );
    assert_eq!(
        at(&f, "10.244.2.5", 1).as_deref(),
        Some("n-b via node pod CIDR (learned)")
    );
    // Restored state may hold what learning would refuse: an address of
    // one node inside another's range. The address wins.
    let prov = Provenance {
        source: "kubelet request".into(),
        audit_id: "k".into(),
        first: time(0),
        last: time(0),
    };
    f.restore(LearnedNodeView {
        node: "n-c".into(),
        uid: None,
        addresses: vec![("10.244.3.3".into(), prov.clone()), ("bogus".into(), prov)],
        pod_cidrs: vec![(
            "nonsense".into(),
            Provenance {
                source: "x".into(),
                audit_id: String::new(),
                first: time(0),
                last: time(0),
            },
        )],
    });
    assert_eq!(
        at(&f, "10.244.3.3", 1).as_deref(),
        Some("n-c via node address (learned)")
    );
    let v = f.view("n-c").unwrap();
    assert_eq!(
        (v.addresses.len(), v.pod_cidrs.len()),
        (1, 0),
        "unparsable facts dropped"
    );
}

#[test]
fn facts_are_fresh_for_the_ttl_to_the_second_and_forever_with_no_ttl() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    learn(
        &mut f,
        &p,
        &node_write(
            "1",
            0,
            "n1",
            "u1",
            &[("InternalIP", "10.0.1.5")],
            &["10.244.0.0/24"],
        ),
    );
    let ttl = TTL.num_seconds();
    assert!(at(&f, "10.0.1.5", ttl).is_some(), "on the edge");
    assert!(at(&f, "10.0.1.5", ttl + 1).is_none());
    assert!(at(&f, "10.244.0.9", ttl).is_some());
    assert!(at(&f, "10.244.0.9", ttl + 1).is_none());
    assert_eq!(f.addresses("n1", time(ttl), TTL).len(), 1);
    assert!(f.addresses("n1", time(ttl + 1), TTL).is_empty());
    assert!(f.addresses("nobody", time(0), TTL).is_empty());
    // A ttl of zero (or less): learned facts never expire.
    for ttl in [Duration::zero(), Duration::seconds(-5)] {
        assert_eq!(f.addresses("n1", time(10 * 365 * 86_400), ttl).len(), 1);
        assert!(
            f.resolve("10.244.0.9".parse().unwrap(), time(10 * 365 * 86_400), ttl)
                .is_some()
        );
    }
}

fn slice(id: &str, at: i64, ns: &str, res: &str, name: &str, body: Value) -> AuditEvent {
    ev(
        id,
        at,
        "system:apiserver",
        "::1",
        "update",
        json!({"objectRef": {"resource": res, "namespace": ns, "name": name},
               "responseObject": body}),
    )
}

#[test]
fn api_endpoints_from_endpoints_and_every_kubernetes_slice_bounded_and_fresh() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    let is =
        |f: &ClusterFacts, ip: &str, t: i64| f.is_api_endpoint(ip.parse().unwrap(), time(t), TTL);
    // The Endpoints form (subsets[].addresses[].ip).
    learn(
        &mut f,
        &p,
        &slice(
            "1",
            0,
            "default",
            "endpoints",
            "kubernetes",
            json!({
        "kind": "Endpoints", "metadata": {"name": "kubernetes"},
        "subsets": [{"addresses": [{"ip": "10.0.0.2"}, {"ip": "bad"}, {"hostname": "x"}]}]}),
        ),
    );
    assert!(is(&f, "10.0.0.2", 1));
    // A dual-stack slice `kubernetes-<suffix>`.
    learn(
        &mut f,
        &p,
        &slice(
            "2",
            0,
            "default",
            "endpointslices",
            "kubernetes-ipv6",
            json!({
        "kind": "EndpointSlice", "metadata": {"name": "kubernetes-ipv6"},
        "endpoints": [{"addresses": ["fd00::2"]}]}),
        ),
    );
    assert!(is(&f, "fd00::2", 1));
    // Another namespace's `kubernetes`, or another name, teaches nothing.
    learn(
        &mut f,
        &p,
        &slice(
            "3",
            0,
            "evil",
            "endpoints",
            "kubernetes",
            json!({
        "kind": "Endpoints", "subsets": [{"addresses": [{"ip": "10.9.9.1"}]}]}),
        ),
    );
    learn(
        &mut f,
        &p,
        &slice(
            "4",
            0,
            "default",
            "endpoints",
            "kubernetes-x",
            json!({
        "kind": "Endpoints", "subsets": [{"addresses": [{"ip": "10.9.9.2"}]}]}),
        ),
    );
    assert!(!is(&f, "10.9.9.1", 1) && !is(&f, "10.9.9.2", 1));
    // Fresh for the ttl; refreshed when seen again.
    let ttl = TTL.num_seconds();
    assert!(is(&f, "10.0.0.2", ttl) && !is(&f, "10.0.0.2", ttl + 1));
    learn(
        &mut f,
        &p,
        &slice(
            "5",
            100,
            "default",
            "endpoints",
            "kubernetes",
            json!({
        "kind": "Endpoints", "subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}),
        ),
    );
    assert!(is(&f, "10.0.0.2", ttl + 100));
    assert_eq!(f.api_endpoints().len(), 2, "refreshed, not added twice");
    assert_eq!(f.api_endpoints()[0].0, "10.0.0.2");
    // At most MAX_ENDPOINTS, however many a slice names or how many slices.
    let many: Vec<String> = ips(40, "10.0.3.");
    learn(
        &mut f,
        &p,
        &slice(
            "6",
            0,
            "default",
            "endpointslices",
            "kubernetes",
            json!({
        "kind": "EndpointSlice", "endpoints": [{"addresses": many}]}),
        ),
    );
    assert_eq!(f.api_endpoints().len(), MAX_ENDPOINTS);
}

#[test]
fn deleted_nodes_are_remembered_up_to_the_bound_oldest_forgotten_first() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    for i in 0..MAX_NODES as i64 - 1 {
        f.deleted.insert(format!("n{i}"), time(10 + i));
    }
    let del = |name: &str, at: i64| {
        ev(
            name,
            at,
            "alice",
            "10.0.0.9",
            "delete",
            json!({"objectRef": {"resource": "nodes", "name": name}}),
        )
    };
    // Room for one more; then the oldest deletion is forgotten.
    learn(&mut f, &p, &del("old", 0));
    assert_eq!(f.deleted.len(), MAX_NODES);
    let ch = learn(&mut f, &p, &del("new", 100_000));
    assert!(matches!(&ch[..], [ClusterChange::Released { node, .. }] if node == "new"));
    assert_eq!(f.deleted.len(), MAX_NODES);
    assert!(!f.deleted.contains_key("old"), "the oldest went");
    assert!(f.deleted.contains_key("n0") && f.deleted.contains_key("new"));
    let mut out = Vec::new();
    f.stats(&mut out);
    let count = |m: &str| out.iter().find(|s| s.map == m).unwrap().entries;
    assert_eq!(count("deleted_nodes"), MAX_NODES);
    assert_eq!(count("learned_nodes"), 0);
    assert_eq!(count("api_endpoints"), 0);
}

#[test]
fn a_full_table_learns_no_new_node_but_keeps_its_own_up_to_date() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    for i in 0..MAX_NODES {
        f.nodes.insert(format!("x{i}"), LearnedNode::default());
    }
    learn(
        &mut f,
        &p,
        &node_write(
            "1",
            0,
            "n-new",
            "u",
            &[("InternalIP", "10.0.1.5")],
            &["10.244.0.0/24"],
        ),
    );
    assert!(f.view("n-new").is_none());
    assert_eq!(at(&f, "10.0.1.5", 1), None);
    let mut create = node_write("2", 0, "n-new2", "u", &[("InternalIP", "10.0.1.6")], &[]);
    create.verb = "create".into();
    learn(&mut f, &p, &create);
    assert!(f.view("n-new2").is_none(), "a registration neither");
    f.restore(LearnedNodeView {
        node: "n-new3".into(),
        uid: None,
        addresses: vec![],
        pod_cidrs: vec![],
    });
    assert!(f.view("n-new3").is_none(), "nor a restored one");
    learn(
        &mut f,
        &p,
        &node_write(
            "3",
            0,
            "x7",
            "u7",
            &[("InternalIP", "10.0.1.7")],
            &["10.244.1.0/24"],
        ),
    );
    assert_eq!(
        at(&f, "10.0.1.7", 1).as_deref(),
        Some("x7 via node address (learned)")
    );
    assert_eq!(
        at(&f, "10.244.1.1", 1).as_deref(),
        Some("x7 via node pod CIDR (learned)")
    );
    assert_eq!(f.nodes.len(), MAX_NODES);
}

#[test]
fn a_denied_or_failed_write_teaches_nothing_nor_does_a_non_node_object() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    let mut e = node_write("1", 0, "n1", "u1", &[("InternalIP", "10.0.1.5")], &[]);
    e.response_status.as_mut().unwrap().code = Some(403);
    assert!(learn(&mut f, &p, &e).is_empty());
    assert!(f.view("n1").is_none());
    let e = ev(
        "2",
        0,
        "system:cloud-controller-manager",
        "10.0.0.2",
        "patch",
        json!({"objectRef": {"resource": "nodes", "name": "n1"},
               "responseObject": {"kind": "Pod", "metadata": {"name": "n1"},
                   "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.5"}]}}}),
    );
    assert!(learn(&mut f, &p, &e).is_empty());
    assert!(f.view("n1").is_none());
    // Hostname entries are not addresses; a podCIDR (singular) is a range.
    let e = ev(
        "3",
        0,
        "system:cloud-controller-manager",
        "10.0.0.2",
        "patch",
        json!({"objectRef": {"resource": "nodes", "name": "n1"},
               "responseObject": {"kind": "Node", "metadata": {"name": "n1"},
                   "spec": {"podCIDR": "10.244.9.0/24"},
                   "status": {"addresses": [{"type": "Hostname", "address": "10.0.1.6"},
                                            {"type": "InternalIP", "address": "10.0.1.7"}]}}}),
    );
    let ch = learn(&mut f, &p, &e);
    assert!(matches!(&ch[..], [ClusterChange::Learned(v)] if v.node == "n1"));
    let v = f.view("n1").unwrap();
    assert_eq!(
        v.addresses
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>(),
        ["10.0.1.7"]
    );
    assert_eq!(v.pod_cidrs[0].0, "10.244.9.0/24");
}

#[test]
fn the_silence_check_runs_once_a_minute_of_event_time() {
    let mut f = ClusterFacts::default();
    assert!(f.silence_check_due(time(0)));
    assert!(!f.silence_check_due(time(0)));
    assert!(!f.silence_check_due(time(59)));
    assert!(f.silence_check_due(time(60)), "a minute later");
    assert!(!f.silence_check_due(time(61)));
    assert!(f.silence_check_due(time(200)));
}

#[test]
fn refused_writes_are_counted_once() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    let e = ev(
        "1",
        0,
        "alice",
        "10.0.0.9",
        "patch",
        json!({"objectRef": {"resource": "nodes", "name": "n1", "subresource": "status"},
               "responseObject": {"kind": "Node", "metadata": {"name": "n1"},
                   "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.5"}]}}}),
    );
    learn(&mut f, &p, &e);
    learn(&mut f, &p, &e);
    assert_eq!(f.take_refused(), 2);
    assert_eq!(f.take_refused(), 0);
    assert!(f.view("n1").is_none());
}

/// `user` in `groups` patches `nodes/n1/status` with `addrs` (InternalIP) and `cidrs`, from `ip`.
fn status_write(
    user: &str,
    groups: &[&str],
    ip: &str,
    addrs: &[&str],
    cidrs: &[&str],
) -> AuditEvent {
    let a: Vec<Value> = addrs
        .iter()
        .map(|a| json!({"type": "InternalIP", "address": a}))
        .collect();
    let mut e = ev(
        "w",
        0,
        user,
        ip,
        "patch",
        json!({"objectRef": {"resource": "nodes", "name": "n1", "subresource": "status"},
               "responseObject": {"kind": "Node", "metadata": {"name": "n1"},
                   "spec": {"podCIDRs": cidrs},
                   "status": {"addresses": a, "conditions": [{"type": "Ready"}]}}}),
    );
    e.user.groups = groups.iter().map(|g| (*g).to_owned()).collect();
    e
}

#[test]
fn only_writes_that_carry_facts_their_writer_may_not_set_are_counted() {
    let p = no_policy();
    let nodes = ["system:nodes"];
    for (who, groups, addrs, cidrs, refused) in [
        // A condition-only status patch (node-problem-detector) sets nothing.
        (
            "system:serviceaccount:kube-system:npd",
            &[][..],
            &[][..],
            &[][..],
            0,
        ),
        ("alice", &[], &["10.0.1.5"], &[], 1),
        ("alice", &[], &[], &["10.244.0.0/24"], 1),
        // The node itself, the cloud controller, kube-controller-manager
        // (whose pod-range writes echo the addresses): never counted.
        (
            "system:node:n1",
            &nodes[..],
            &["10.0.1.5"],
            &["10.244.0.0/24"],
            0,
        ),
        (
            "system:cloud-controller-manager",
            &[],
            &["10.0.1.5"],
            &[],
            0,
        ),
        (
            "system:kube-controller-manager",
            &[],
            &["10.0.1.5"],
            &["10.244.0.0/24"],
            0,
        ),
    ] {
        let mut f = ClusterFacts::default();
        learn(
            &mut f,
            &p,
            &status_write(who, groups, "10.0.1.5", addrs, cidrs),
        );
        assert_eq!(f.take_refused(), refused, "{who} {addrs:?} {cidrs:?}");
    }
}

#[test]
fn a_node_name_without_the_nodes_group_is_no_kubelet() {
    let p = no_policy();
    let mut f = ClusterFacts::default();
    let mut e = ev(
        "1",
        0,
        "system:node:n9",
        "10.0.1.90",
        "update",
        json!({"objectRef": {"resource": "leases"}}),
    );
    e.user.groups = vec!["system:authenticated".into()];
    learn(&mut f, &p, &e);
    assert_eq!(at(&f, "10.0.1.90", 1), None);
    e.user.groups.push("system:nodes".into());
    learn(&mut f, &p, &e);
    assert_eq!(
        at(&f, "10.0.1.90", 1).as_deref(),
        Some("n9 via node address (learned)")
    );
}

#[test]
fn a_node_whose_agent_reports_is_not_taught_by_its_kubelets_requests() {
    let p = no_policy();
    let mut f = ClusterFacts::default();
    let e = ev(
        "1",
        0,
        "system:node:n9",
        "10.0.1.90",
        "update",
        json!({"objectRef": {"resource": "leases"}}),
    );
    let with_agent = |_: IpAddr, _: &str| Owners {
        agent: None,
        node_has_agent: true,
    };
    f.learn(&e, TTL, &p, &with_agent);
    assert_eq!(
        at(&f, "10.0.1.90", 1),
        None,
        "the agent says where its node is"
    );
}

/// A kubelet teaches a new address only while its Node is being created: a
/// known node's kubelet creating an Event, or patching its Node, from another
/// internal address teaches nothing.
#[test]
fn a_known_nodes_other_requests_from_a_new_address_teach_nothing() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    learn(
        &mut f,
        &p,
        &node_write("n", 0, "node-1", "u1", &[("InternalIP", "10.0.1.11")], &[]),
    );
    assert_eq!(
        at(&f, "10.0.1.11", 1).as_deref(),
        Some("node-1 via node address (learned)")
    );
    let kubelet = |id: &str, verb: &str, resource: &str| {
        ev(
            id,
            2,
            "system:node:node-1",
            "10.0.1.99",
            verb,
            json!({"objectRef": {"resource": resource, "namespace": "default", "name": "x"}}),
        )
    };
    for e in [
        kubelet("e1", "create", "events"),
        kubelet("e2", "patch", "nodes"),
        kubelet("e3", "create", "pods"),
    ] {
        assert!(learn(&mut f, &p, &e).is_empty(), "{}", e.audit_id);
        assert_eq!(at(&f, "10.0.1.99", 3), None, "{}", e.audit_id);
    }
    // Registering its Node (create nodes) from there does.
    learn(&mut f, &p, &kubelet("e4", "create", "nodes"));
    assert_eq!(
        at(&f, "10.0.1.99", 3).as_deref(),
        Some("node-1 via node address (learned)")
    );
}

/// `release` forgets the node: its address and ranges place nothing after.
#[test]
fn a_released_node_places_nothing() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    learn(
        &mut f,
        &p,
        &node_write(
            "n",
            0,
            "node-1",
            "u1",
            &[("InternalIP", "10.0.1.11")],
            &["10.244.1.0/24"],
        ),
    );
    assert!(at(&f, "10.244.1.7", 1).is_some());
    f.release("node-1");
    assert_eq!(at(&f, "10.0.1.11", 1), None);
    assert_eq!(at(&f, "10.244.1.7", 1), None);
    assert!(f.view("node-1").is_none());
}

/// Facts taken back from an older store can put one address or range on
/// several nodes: the smallest node name wins, whatever the map's order.
#[test]
fn a_tie_goes_to_the_smallest_node_name() {
    let mut f = ClusterFacts::default();
    let p = Provenance {
        source: "kubelet request".into(),
        audit_id: "a".into(),
        first: time(0),
        last: time(0),
    };
    for i in (0..12).rev() {
        f.nodes.insert(
            format!("node-{i:02}"),
            LearnedNode {
                uid: None,
                addresses: vec![("10.0.1.11".parse().unwrap(), p.clone())],
                pod_cidrs: vec![("10.244.0.0/16".parse().unwrap(), p.clone())],
            },
        );
    }
    assert_eq!(
        at(&f, "10.0.1.11", 1).as_deref(),
        Some("node-00 via node address (learned)")
    );
    assert_eq!(
        at(&f, "10.244.3.3", 1).as_deref(),
        Some("node-00 via node pod CIDR (learned)")
    );
}

/// A node re-created (new uid) while the table is full is still reset: its
/// old addresses do not survive under the new object.
#[test]
fn a_node_recreated_while_the_table_is_full_forgets_its_old_addresses() {
    let (mut f, p) = (ClusterFacts::default(), no_policy());
    for i in 0..MAX_NODES - 1 {
        f.nodes.insert(format!("x{i}"), LearnedNode::default());
    }
    learn(
        &mut f,
        &p,
        &node_write("1", 0, "n1", "u1", &[("InternalIP", "10.0.1.5")], &[]),
    );
    assert_eq!(f.nodes.len(), MAX_NODES);
    assert_eq!(
        at(&f, "10.0.1.5", 1).as_deref(),
        Some("n1 via node address (learned)")
    );
    learn(
        &mut f,
        &p,
        &node_write("2", 10, "n1", "u2", &[("InternalIP", "10.0.1.6")], &[]),
    );
    assert_eq!(
        at(&f, "10.0.1.5", 11),
        None,
        "the old object's address went"
    );
    assert_eq!(
        at(&f, "10.0.1.6", 11).as_deref(),
        Some("n1 via node address (learned)")
    );
    assert_eq!(f.view("n1").unwrap().uid.as_deref(), Some("u2"));
}

/// Where an agent on this very node places the address decides: as the
/// node's own address it may be taught; inside the node's pod range (a pod's
/// address, pod unknown) or as a pod's it may not, nor anything another
/// node's agent places.
#[test]
fn an_agent_on_the_same_node_allows_its_node_address_only() {
    let p = no_policy();
    let placed = |node: &'static str, pod_uid: Option<&'static str>, via: &'static str| {
        move |_: IpAddr, _: &str| Owners {
            agent: Some(Location {
                node: node.into(),
                pod_uid: pod_uid.map(Into::into),
                pod: None,
                via,
            }),
            node_has_agent: true,
        }
    };
    let write = node_write("1", 0, "n1", "u1", &[("InternalIP", "10.0.1.5")], &[]);
    let cases: [(&str, Option<&str>, &str, bool); 4] = [
        ("n1", None, "node address", true),
        ("n1", None, "node pod CIDR", false),
        ("n1", Some("pod-uid"), "pod address", false),
        ("n2", None, "node address", false),
    ];
    for (node, pod_uid, via, taught) in cases {
        let mut f = ClusterFacts::default();
        f.learn(&write, TTL, &p, &placed(node, pod_uid, via));
        assert_eq!(
            at(&f, "10.0.1.5", 1).is_some(),
            taught,
            "agent on {node} placing it via {via} (pod {pod_uid:?})"
        );
    }
}
