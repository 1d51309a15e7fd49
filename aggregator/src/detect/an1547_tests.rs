//! AN1547 verdicts, rule by rule: the detector fed real-format audit events
//! and agent observations, judged by the alerts it raises (rule, class,
//! severity, reason) and the baseline rows it reports. Written so that
//! cargo-mutants' changes to `an1547.rs` change a verdict checked here
//! (`cargo xtask mutants --file aggregator/src/detect/an1547.rs`).

use crate::alert::{Alert, Severity, SourceClass};
use crate::detect::Detector;
use crate::detect::testkit::*;

/// node-a 127.0.1.1 (pods 127.1.1.0/24), node-b 127.0.1.2 (pods 127.1.2.0/24).
const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const SA: &str = "system:serviceaccount:shop:web";
const WEB: PodRef<'static> = Some(("shop", "web-1", "pod-uid-web", "ctr-web"));
const NODE_A: &str = "127.0.1.1";
const NODE_B: &str = "127.0.1.2";
/// In no range of the policy.
const FAR: &str = "127.200.0.4";

/// Two nodes whose agents reported, and web-1's process (pid 100) that read its token.
fn cluster(policy: &str) -> Detector {
    let mut d = detector(policy);
    observe(
        &mut d,
        &[
            node_info("node-a", -600, &[NODE_A], &["127.1.1.0/24"]),
            node_info("node-b", -600, &[NODE_B], &["127.1.2.0/24"]),
            token_read(
                "node-a",
                "node-a/r/1",
                -60,
                100,
                "web",
                WEB,
                "jti-web",
                ("shop", "web"),
            ),
        ],
    );
    d
}

/// A request with web-1's bound token (JTI `jti-web`, pod web-1 on node-a).
fn web(id: &str, at: i64, ip: &str) -> Req {
    Req::new(id, at, SA, ip).bound("jti-web", "node-a", "web-1", "pod-uid-web")
}

fn only<'a>(alerts: &'a [Alert], rule: &str) -> &'a Alert {
    let of: Vec<&Alert> = alerts.iter().filter(|a| a.rule == rule).collect();
    assert_eq!(of.len(), 1, "one {rule} in {:?}", rules(alerts));
    of[0]
}

#[test]
fn a_bound_token_from_another_node_is_off_node_graded_by_what_it_did() {
    let cases = [
        (web("s", 0, NODE_B).verb("list", "secrets"), Severity::High),
        (web("p", 0, NODE_B), Severity::Medium),
        (
            web("d", 0, NODE_B).verb("list", "secrets").denied(),
            Severity::Low,
        ),
    ];
    for (req, severity) in cases {
        let mut d = cluster(POLICY);
        let (alerts, ch) = judge(&mut d, &req);
        assert_eq!(rules(&alerts), ["CT1547-001"], "{}", req.id);
        let a = &alerts[0];
        assert_eq!(
            (a.source_class, a.severity),
            (SourceClass::OtherNode, severity)
        );
        let did = if req.code == 403 {
            "tried (denied)"
        } else {
            "used"
        };
        assert_eq!(
            a.reason,
            format!(
                "{SA} (JTI=jti-web) was {did} from {NODE_B} (node node-b), but it is expected at node node-a, pod shop/web-1."
            )
        );
        assert_eq!(a.details["source_node"], "node-b");
        // The use is in the inventory, classed and placed.
        let u = &ch.credential_uses[0];
        assert_eq!(
            (u.key.as_str(), u.class, u.node.as_deref()),
            ("JTI=jti-web", SourceClass::OtherNode, Some("node-b"))
        );
    }
}

#[test]
fn a_bound_token_from_outside_is_critical_when_allowed_high_when_denied() {
    for (req, severity) in [
        (web("o1", 0, FAR), Severity::Critical),
        (web("o2", 0, FAR).denied(), Severity::High),
    ] {
        let mut d = cluster(POLICY);
        let (alerts, _) = judge(&mut d, &req);
        assert_eq!(rules(&alerts), ["CT1547-002"], "{}", req.id);
        let a = &alerts[0];
        assert_eq!(
            (a.source_class, a.severity),
            (SourceClass::Outside, severity)
        );
        assert!(
            a.reason.contains(&format!(
                "from {FAR} (outside the cluster and every trusted range)"
            )),
            "{}",
            a.reason
        );
    }
}

#[test]
fn another_pod_is_named_by_what_the_agents_know_of_it() {
    let mut d = cluster(POLICY);
    // A pod of node-b the agent saw connect from its address.
    observe(
        &mut d,
        &[connect(
            "node-b",
            "node-b/c/1",
            -30,
            300,
            "sh",
            "127.1.2.7",
            Some(("shop", "other-1", "pod-uid-other", "ctr-other")),
        )],
    );
    let cases = [
        (
            "127.1.2.7",
            SourceClass::OtherPod,
            "pod shop/other-1 on node node-b",
        ),
        // In node-b's pod range, no pod known at that address.
        ("127.1.2.8", SourceClass::OtherPod, "a pod on node node-b"),
        // In the policy's pod range, in no node's.
        ("127.1.9.9", SourceClass::OtherPod, "a pod of the cluster"),
        // In the policy's node range, no agent's address.
        (
            "127.0.1.77",
            SourceClass::OtherNode,
            "another node of the cluster",
        ),
    ];
    for (n, (ip, class, text)) in cases.into_iter().enumerate() {
        let (alerts, _) = judge(&mut d, &web(&format!("x{n}"), n as i64, ip));
        let a = only(&alerts, "CT1547-001");
        assert_eq!(a.source_class, class, "{ip}");
        assert!(
            a.reason.contains(&format!("from {ip} ({text}), but")),
            "{}",
            a.reason
        );
    }
}

#[test]
fn anonymous_and_nameless_requests_are_not_credential_uses() {
    for user in ["system:anonymous", ""] {
        let mut d = cluster(POLICY);
        let (alerts, ch) = judge(&mut d, &Req::new("n", 0, user, FAR));
        assert!(alerts.is_empty(), "{user:?}: {alerts:?}");
        assert!(ch.credential_uses.is_empty(), "{user:?}");
        assert!(ch.baselines.is_empty(), "{user:?}");
    }
    // A person is a credential use, even with nothing to judge it by.
    let mut d = cluster(POLICY);
    let (alerts, ch) = judge(&mut d, &Req::new("n", 0, "alice", FAR));
    assert!(alerts.is_empty(), "{alerts:?}");
    assert_eq!(ch.credential_uses[0].key, "user:alice");
}

#[test]
fn service_and_node_identities_from_outside_alert_without_expectations_people_do_not() {
    for user in ["system:serviceaccount:ci:runner", "system:node:node-x"] {
        let mut d = cluster(POLICY);
        let (alerts, _) = judge(&mut d, &Req::new("o", 0, user, FAR));
        assert_eq!(rules(&alerts), ["CT1547-002"], "{user}");
        // From a node of the cluster, no expectation: nothing to judge by.
        if user.contains("serviceaccount") {
            let (alerts, _) = judge(&mut d, &Req::new("n", 1, user, NODE_B));
            assert!(alerts.is_empty(), "{user}: {alerts:?}");
        }
    }
    let mut d = cluster(POLICY);
    let (alerts, _) = judge(&mut d, &Req::new("o", 0, "alice", FAR));
    assert!(alerts.is_empty(), "{alerts:?}");
    // Turned off by the policy.
    let off = format!("{POLICY}detection:\n  alert_outside_without_expectation: false\n");
    let mut d = cluster(&off);
    let (alerts, _) = judge(
        &mut d,
        &Req::new("o", 0, "system:serviceaccount:ci:runner", FAR),
    );
    assert!(alerts.is_empty(), "{alerts:?}");
}

const LEARN: &str = "detection:\n  learning_window: 1h\n";

fn learning() -> Detector {
    cluster(&format!("{POLICY}{LEARN}"))
}

#[test]
fn people_are_learned_from_anywhere_in_their_window_and_judged_by_it_after() {
    let mut d = learning();
    let (alerts, ch) = judge(&mut d, &Req::new("l1", 0, "alice", FAR));
    assert!(alerts.is_empty(), "{alerts:?}");
    assert_eq!(ch.baselines.len(), 1);
    assert!(ch.baselines[0].learned, "learned in the window");
    assert_eq!(ch.baselines[0].source_ip, FAR);
    // The same source again in the window: nothing new to note.
    let (_, ch) = judge(&mut d, &Req::new("l2", 60, "alice", FAR));
    assert!(ch.baselines.is_empty(), "{:?}", ch.baselines);
    // After the window: the learned source is expected, a new one alerts.
    let (alerts, _) = judge(&mut d, &Req::new("l3", 7200, "alice", FAR));
    assert!(alerts.is_empty(), "{alerts:?}");
    let (alerts, ch) = judge(&mut d, &Req::new("l4", 7260, "alice", "127.200.0.5"));
    let a = only(&alerts, "CT1547-002");
    assert!(
        a.reason.contains("expected at baseline 127.200.0.4"),
        "{}",
        a.reason
    );
    assert!(
        !ch.baselines[0].learned,
        "after the window: noted, not learned"
    );
    let alice = d.baselines.get("alice").unwrap();
    assert_eq!(alice.get(&"127.200.0.5".parse().unwrap()), Some(&false));
}

#[test]
fn without_a_window_a_first_source_is_noted_once_and_never_learned() {
    let mut d = cluster(POLICY);
    let (_, ch) = judge(&mut d, &Req::new("a", 0, "alice", FAR));
    assert_eq!(ch.baselines.len(), 1);
    assert!(!ch.baselines[0].learned);
    let (_, ch) = judge(&mut d, &Req::new("b", 60, "alice", FAR));
    assert!(ch.baselines.is_empty(), "{:?}", ch.baselines);
}

#[test]
fn a_service_account_is_never_learned_from_outside_but_is_from_the_cluster() {
    let sa = "system:serviceaccount:ci:runner";
    let mut d = learning();
    // Outside, in its window: judged and alerted, not learned.
    let (alerts, ch) = judge(&mut d, &Req::new("o", 0, sa, FAR));
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    assert!(!ch.baselines[0].learned);
    // From a node, in its window: learned, quietly.
    let (alerts, ch) = judge(&mut d, &Req::new("n", 60, sa, NODE_B));
    assert!(alerts.is_empty(), "{alerts:?}");
    assert!(ch.baselines[0].learned);
    // After the window, the node is expected and outside is still not.
    let (alerts, _) = judge(&mut d, &Req::new("n2", 7200, sa, NODE_B));
    assert!(alerts.is_empty(), "{alerts:?}");
    let runner = d.baselines.get(sa).unwrap();
    assert_eq!(runner.get(&FAR.parse().unwrap()), Some(&false));
}

#[test]
fn a_source_first_seen_outside_is_learned_when_an_agent_places_it_in_the_window() {
    // Zero-config (no ranges): a public address is outside until an agent
    // reports it as its node's.
    let sa = "system:serviceaccount:ci:runner";
    let mut d = detector(LEARN);
    let ip = "203.0.113.7";
    let (alerts, ch) = judge(&mut d, &Req::new("o", 0, sa, ip));
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    assert!(!ch.baselines[0].learned);
    observe(&mut d, &[node_info("node-c", 30, &[ip], &[])]);
    let (alerts, ch) = judge(&mut d, &Req::new("n", 60, sa, ip));
    assert!(alerts.is_empty(), "{alerts:?}");
    assert_eq!(ch.baselines.len(), 1, "now learned");
    assert!(ch.baselines[0].learned);
    assert_eq!(
        d.baselines.get(sa).unwrap().get(&ip.parse().unwrap()),
        Some(&true)
    );
}

#[test]
fn learning_never_launders_a_bound_token_used_off_its_node() {
    let mut d = learning();
    let (alerts, ch) = judge(&mut d, &web("w", 0, NODE_B));
    assert_eq!(
        rules(&alerts),
        ["CT1547-001"],
        "hard expectations judge in the window"
    );
    assert!(ch.baselines[0].learned, "the node is learned all the same");
}

/// web-1's token used from node-a's own address after `curl` (pid 200, a host
/// process that read no credential) connected from there.
fn never_read_case(extra: &[credtrail_proto::model::Observation], req: Req) -> Vec<Alert> {
    let mut d = cluster(POLICY);
    let mut obs = vec![connect(
        "node-a",
        "node-a/c/1",
        -1,
        200,
        "curl",
        NODE_A,
        None,
    )];
    obs.extend_from_slice(extra);
    observe(&mut d, &obs);
    judge(&mut d, &req).0
}

#[test]
fn a_token_used_from_its_node_by_a_process_that_never_read_it_alerts() {
    let alerts = never_read_case(&[], web("r", 0, NODE_A));
    let a = only(&alerts, "CT1547-004");
    assert_eq!(a.source_class, SourceClass::ExpectedNode);
    assert_eq!(a.severity, Severity::Medium, "get pods");
    assert_eq!(
        a.reason,
        format!(
            "{SA} (JTI=jti-web) was used from its node node-a ({NODE_A}), but the connecting process curl (pid 200) never read it; only web (pid 100) did."
        )
    );
    let alerts = never_read_case(&[], web("s", 0, NODE_A).verb("list", "secrets"));
    assert_eq!(only(&alerts, "CT1547-004").severity, Severity::High);
    let alerts = never_read_case(&[], web("d", 0, NODE_A).verb("list", "secrets").denied());
    assert_eq!(only(&alerts, "CT1547-004").severity, Severity::Medium);
}

#[test]
fn a_connection_by_a_reader_or_its_container_clears_the_request() {
    // The reader itself connected too (from the host side, no container).
    let by_reader = connect("node-a", "node-a/c/2", -1, 100, "web", NODE_A, None);
    assert!(never_read_case(&[by_reader], web("r", 0, NODE_A)).is_empty());
    // Another process of the reader's container connected too.
    let by_container = connect("node-a", "node-a/c/3", -1, 101, "helper", NODE_A, WEB);
    assert!(never_read_case(&[by_container], web("c", 0, NODE_A)).is_empty());
    // curl read some other credential: it presumably used that one.
    let other_read = token_read(
        "node-a",
        "node-a/r/9",
        -5,
        200,
        "curl",
        None,
        "jti-other",
        ("ops", "tool"),
    );
    assert!(never_read_case(&[other_read], web("o", 0, NODE_A)).is_empty());
}

#[test]
fn only_reads_by_a_process_on_the_same_node_can_judge_who_connected() {
    // Only the start-up scan saw web-1's token on node-a: no reader to compare with.
    let sa = "system:serviceaccount:ops:tool";
    let scan = token_read(
        "node-a",
        "node-a/r/5",
        -60,
        0,
        "",
        None,
        "jti-tool",
        ("ops", "tool"),
    );
    let req = Req::new("t", 0, sa, NODE_A).bound("jti-tool", "node-a", "tool-1", "pod-uid-tool");
    assert!(never_read_case(&[scan], req).is_empty());
    // Read by a process on node-b only: nothing to compare on node-a.
    let elsewhere = token_read(
        "node-b",
        "node-b/r/5",
        -60,
        400,
        "tool",
        None,
        "jti-tool",
        ("ops", "tool"),
    );
    let req = Req::new("t", 0, sa, NODE_A).bound("jti-tool", "node-a", "tool-1", "pod-uid-tool");
    assert!(never_read_case(&[elsewhere], req).is_empty());
}

/// web-1's pod address, as node-a's agent saw web connect from it.
fn web_pod_address(d: &mut Detector) {
    observe(
        d,
        &[connect(
            "node-a",
            "node-a/c/9",
            -30,
            100,
            "web",
            "127.1.1.5",
            WEB,
        )],
    );
}

#[test]
fn one_token_from_two_places_within_the_window_alerts_once_per_new_place() {
    let mut d = cluster(POLICY);
    web_pod_address(&mut d);
    let (alerts, _) = judge(&mut d, &web("p1", 0, "127.1.1.5"));
    assert!(alerts.is_empty(), "its own pod: {alerts:?}");
    let (alerts, _) = judge(&mut d, &web("p2", 60, NODE_B));
    let a = only(&alerts, "CT1547-003");
    assert_eq!(a.severity, Severity::High);
    assert_eq!(
        a.reason,
        format!(
            "Bound token JTI=jti-web of {SA} was used from node node-b ({NODE_B}) and from node node-a (127.1.1.5) within 10 minutes; a token lives in one pod."
        )
    );
    assert_eq!(a.details["first_audit_id"], "p1");
    // node-b again, by another of its addresses (a pod of node-b): the same place.
    let (alerts, _) = judge(&mut d, &web("p3", 90, "127.1.2.8"));
    assert!(
        !rules(&alerts).contains(&"CT1547-003"),
        "{:?}",
        rules(&alerts)
    );
    // A bare address outside: named by its address only.
    let (alerts, _) = judge(&mut d, &web("p4", 120, FAR).denied());
    let a = only(&alerts, "CT1547-003");
    assert_eq!(a.severity, Severity::Medium, "denied");
    assert!(
        a.reason.contains(&format!(
            "used from address {FAR} and from node node-b ({NODE_B})"
        )),
        "{}",
        a.reason
    );
    // The same outside address again: no new place.
    let (alerts, _) = judge(&mut d, &web("p5", 150, FAR));
    assert!(
        !rules(&alerts).contains(&"CT1547-003"),
        "{:?}",
        rules(&alerts)
    );
}

#[test]
fn places_older_than_the_reuse_window_are_forgotten() {
    for (gap, alerts_again) in [(600, true), (601, false)] {
        let mut d = cluster(POLICY);
        web_pod_address(&mut d);
        judge(&mut d, &web("p1", 0, "127.1.1.5"));
        let (alerts, _) = judge(&mut d, &web("p2", gap, NODE_B));
        assert_eq!(
            rules(&alerts).contains(&"CT1547-003"),
            alerts_again,
            "{gap}s later: {:?}",
            rules(&alerts)
        );
    }
}
