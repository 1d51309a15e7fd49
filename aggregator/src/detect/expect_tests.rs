//! Where a credential is expected and how a source address is classed
//! (`expect.rs`), judged through the detector's verdicts: the alert (or its
//! absence), its source class and the "expected at" of its reason.

use crate::alert::SourceClass;
use crate::detect::Detector;
use crate::detect::testkit::*;
use crate::store::StoredIdentity;

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const SA: &str = "system:serviceaccount:shop:web";
/// A service account with no claims, reads or policy about it.
const RUNNER: &str = "system:serviceaccount:ci:runner";
const FAR: &str = "127.200.0.4";

/// Agents on `nodes` (node-N at 127.0.1.N, pods 127.1.N.0/24).
fn nodes(policy: &str, n: u8) -> Detector {
    let mut d = detector(policy);
    let obs: Vec<_> = (1..=n)
        .map(|i| {
            node_info(
                &format!("node-{i}"),
                -600,
                &[format!("127.0.1.{i}").as_str()],
                &[format!("127.1.{i}.0/24").as_str()],
            )
        })
        .collect();
    observe(&mut d, &obs);
    d
}

/// The shared token `jti-shared` of `ns`/`sa` read by pid 100+i on node-i.
fn read_on(d: &mut Detector, i: u8, jti: &str, (ns, sa): (&str, &str)) {
    observe(
        d,
        &[token_read(
            &format!("node-{i}"),
            &format!("node-{i}/r/{jti}"),
            -60,
            100 + u32::from(i),
            "app",
            None,
            jti,
            (ns, sa),
        )],
    );
}

/// The one alert of `req` (fails when none or more) and its class.
fn verdict(d: &mut Detector, req: &Req) -> (Option<String>, Option<SourceClass>, String) {
    let (alerts, _) = judge(d, req);
    assert!(alerts.len() <= 1, "{:?}", rules(&alerts));
    match alerts.first() {
        Some(a) => (Some(a.rule.clone()), Some(a.source_class), a.reason.clone()),
        None => (None, None, String::new()),
    }
}

#[test]
fn a_credential_read_on_several_nodes_is_expected_on_each_and_named_up_to_four() {
    let mut d = nodes(POLICY, 6);
    for i in [1, 2] {
        read_on(&mut d, i, "jti-shared", ("ci", "runner"));
    }
    // Each use past the JTI reuse window of the one before (one place each).
    let req = |id: &str, at: i64, ip: &str| Req::new(id, at, RUNNER, ip).cred("JTI=jti-shared");
    // From node-2: expected there (the second node is not dropped).
    assert_eq!(verdict(&mut d, &req("a", 0, "127.0.1.2")).0, None);
    let (rule, class, reason) = verdict(&mut d, &req("b", 700, "127.0.1.3"));
    assert_eq!(rule.as_deref(), Some("CT1547-001"));
    assert_eq!(class, Some(SourceClass::OtherNode));
    assert!(
        reason.ends_with("expected at node node-1, node node-2."),
        "{reason}"
    );
    // Read on five nodes: four named, the rest counted.
    for i in 3..=5 {
        read_on(&mut d, i, "jti-shared", ("ci", "runner"));
    }
    let (_, _, reason) = verdict(&mut d, &req("c", 1400, "127.0.1.6"));
    assert!(
        reason.ends_with(
            "expected at node node-1, node node-2, node node-3, node node-4 and 1 more."
        ),
        "{reason}"
    );
}

#[test]
fn the_credentials_own_reads_decide_and_the_identitys_only_without_them() {
    let mut d = nodes(POLICY, 3);
    // Two tokens of one service account: jti-1 read on node-1, jti-2 on node-2.
    read_on(&mut d, 1, "jti-1", ("ci", "runner"));
    read_on(&mut d, 2, "jti-2", ("ci", "runner"));
    let (rule, _, reason) = verdict(
        &mut d,
        &Req::new("a", 0, RUNNER, "127.0.1.2").cred("JTI=jti-1"),
    );
    assert_eq!(rule.as_deref(), Some("CT1547-001"), "jti-1 is not node-2's");
    assert!(reason.ends_with("expected at node node-1."), "{reason}");
    // A credential never seen read: where its identity's credentials were read.
    let (rule, _, reason) = verdict(
        &mut d,
        &Req::new("b", 0, RUNNER, "127.0.1.3").cred("JTI=jti-9"),
    );
    assert_eq!(rule.as_deref(), Some("CT1547-001"));
    assert!(
        reason.ends_with("expected at node node-1, node node-2."),
        "{reason}"
    );
    assert_eq!(
        verdict(
            &mut d,
            &Req::new("c", 700, RUNNER, "127.0.1.2").cred("JTI=jti-9")
        )
        .0,
        None
    );
}

#[test]
fn a_pod_bound_token_used_by_another_pod_on_its_own_node_is_another_pod() {
    let mut d = nodes(POLICY, 2);
    observe(
        &mut d,
        &[connect(
            "node-1",
            "node-1/c/7",
            -10,
            700,
            "sh",
            "127.1.1.7",
            Some(("shop", "other-1", "pod-uid-other", "ctr-other")),
        )],
    );
    let req = Req::new("p", 0, SA, "127.1.1.7").bound("jti-web", "node-1", "web-1", "pod-uid-web");
    let (rule, class, reason) = verdict(&mut d, &req);
    assert_eq!(rule.as_deref(), Some("CT1547-001"));
    assert_eq!(class, Some(SourceClass::OtherPod));
    assert!(
        reason.contains(
            "(pod shop/other-1 on node node-1), but it is expected at node node-1, pod shop/web-1."
        ),
        "{reason}"
    );
}

#[test]
fn the_policys_ranges_win_over_an_agents_claim() {
    for policy in [
        POLICY,
        "cluster:\n  node_cidrs: [127.0.1.0/24]\n",
        "cluster:\n  pod_cidrs: [127.1.0.0/16]\n",
    ] {
        let mut d = nodes(policy, 1);
        // An agent says an address outside every range of the policy is its node's.
        observe(&mut d, &[node_info("node-9", -60, &[FAR], &[])]);
        let (rule, class, _) = verdict(&mut d, &Req::new("o", 0, RUNNER, FAR));
        assert_eq!(rule.as_deref(), Some("CT1547-002"), "{policy}");
        assert_eq!(class, Some(SourceClass::Outside), "{policy}");
    }
}

#[test]
fn a_trusted_range_is_not_judged_and_makes_the_cluster_known() {
    let policy = "trusted_ranges:\n  - name: vpn\n    cidrs: [10.1.0.0/16]\n";
    let mut d = detector(policy);
    assert_eq!(
        verdict(&mut d, &Req::new("t", 0, RUNNER, "10.1.0.5")).0,
        None
    );
    let (rule, class, _) = verdict(&mut d, &Req::new("u", 0, RUNNER, "10.0.0.99"));
    assert_eq!(rule.as_deref(), Some("CT1547-002"));
    assert_eq!(class, Some(SourceClass::Outside));
}

#[test]
fn an_internal_address_is_outside_only_once_something_tells_the_cluster_apart() {
    // Nothing known: an internal address could be anything; a public one is outside.
    let mut d = detector("{}");
    assert_eq!(
        verdict(&mut d, &Req::new("i", 0, RUNNER, "10.0.0.99")).0,
        None
    );
    let (rule, class, _) = verdict(&mut d, &Req::new("p", 0, RUNNER, "203.0.113.9"));
    assert_eq!(rule.as_deref(), Some("CT1547-002"));
    assert_eq!(class, Some(SourceClass::Outside));
    // Any one of: an agent reported, node ranges, pod ranges.
    let mut by_agent = detector("{}");
    observe(
        &mut by_agent,
        &[node_info("node-1", -60, &["10.9.0.1"], &[])],
    );
    for (what, mut d) in [
        ("an agent", by_agent),
        (
            "node ranges",
            detector("cluster:\n  node_cidrs: [10.9.0.0/24]\n"),
        ),
        (
            "pod ranges",
            detector("cluster:\n  pod_cidrs: [10.8.0.0/16]\n"),
        ),
    ] {
        let (rule, class, _) = verdict(&mut d, &Req::new("k", 0, RUNNER, "10.0.0.99"));
        assert_eq!(rule.as_deref(), Some("CT1547-002"), "{what}");
        assert_eq!(class, Some(SourceClass::Outside), "{what}");
    }
}

const LEARN: &str = "detection:\n  learning_window: 1h\n";

#[test]
fn the_learning_window_ends_exactly_an_hour_after_the_first_sighting() {
    let mut d = detector(&format!("{POLICY}{LEARN}"));
    let (_, ch) = judge(&mut d, &Req::new("a", 0, "alice", FAR));
    assert!(ch.baselines[0].learned);
    let (_, ch) = judge(&mut d, &Req::new("b", 3599, "alice", "127.200.0.5"));
    assert!(ch.baselines[0].learned, "a second before the end");
    let (alerts, ch) = judge(&mut d, &Req::new("c", 3600, "alice", "127.200.0.6"));
    assert!(!ch.baselines[0].learned, "at the end");
    assert_eq!(rules(&alerts), ["CT1547-002"]);
}

#[test]
fn without_a_window_a_late_event_from_before_the_first_sighting_learns_nothing() {
    let mut d = detector(POLICY);
    judge(&mut d, &Req::new("a", 100, "alice", FAR));
    let (_, ch) = judge(&mut d, &Req::new("b", 50, "alice", "127.200.0.5"));
    assert!(!ch.baselines[0].learned);
}

#[test]
fn a_baseline_learned_before_learning_was_turned_off_no_longer_applies() {
    for (policy, applies) in [
        (format!("{POLICY}{LEARN}"), true),
        (POLICY.to_owned(), false),
    ] {
        let mut d = detector(&policy);
        // The maps' clocks at T0 first, as in the pipeline (a restored entry
        // is as old as the clock it was restored under).
        judge(&mut d, &Req::new("b", 0, "bob", FAR));
        d.restore_identities(vec![StoredIdentity {
            username: "alice".into(),
            first: t(-86_400),
            last: t(-3600),
            baselines: vec![(FAR.parse().unwrap(), true)],
        }]);
        let (alerts, _) = judge(&mut d, &Req::new("a", 1, "alice", "127.200.0.5"));
        let want: &[&str] = if applies { &["CT1547-002"] } else { &[] };
        assert_eq!(rules(&alerts), want, "learning on: {applies}");
    }
}

#[test]
fn an_identity_sighting_is_noted_first_and_then_every_ten_minutes() {
    let mut d = detector(POLICY);
    let noted = |d: &mut Detector, at: i64| {
        let (_, ch) = judge(d, &Req::new(&format!("n{at}"), at, "alice", FAR));
        ch.identities
    };
    assert_eq!(
        noted(&mut d, 0),
        [("alice".to_owned(), t(0).timestamp_millis())]
    );
    assert!(noted(&mut d, 60).is_empty());
    assert!(noted(&mut d, 599).is_empty());
    assert_eq!(noted(&mut d, 600).len(), 1);
    assert!(noted(&mut d, 660).is_empty());
}

#[test]
fn a_token_read_in_one_pod_is_another_pods_when_a_second_pod_of_that_node_uses_it() {
    let mut d = nodes(POLICY, 1);
    let web = Some(("shop", "web-1", "pod-uid-web", "ctr-web"));
    let other = Some(("shop", "other-1", "pod-uid-other", "ctr-other"));
    observe(
        &mut d,
        &[
            token_read(
                "node-1",
                "node-1/r/w",
                -60,
                100,
                "web",
                web,
                "jti-web",
                ("shop", "web"),
            ),
            connect("node-1", "node-1/c/w", -30, 100, "web", "127.1.1.5", web),
            connect("node-1", "node-1/c/o", -30, 300, "sh", "127.1.1.7", other),
        ],
    );
    // No pod claims in the requests: the read alone places the token in web-1.
    let req = |id: &str, at: i64, ip: &str| Req::new(id, at, SA, ip).cred("JTI=jti-web");
    let (alerts, ch) = judge(&mut d, &req("w", 0, "127.1.1.5"));
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
    assert_eq!(ch.credential_uses[0].class, SourceClass::ExpectedPod);
    // Past the JTI reuse window, from the other pod: not its own node's pod.
    let (rule, class, _) = verdict(&mut d, &req("o", 700, "127.1.1.7"));
    assert_eq!(rule.as_deref(), Some("CT1547-001"));
    assert_eq!(class, Some(SourceClass::OtherPod));
}
