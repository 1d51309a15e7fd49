//! The detector's state taken back at start and after review (`mod.rs`):
//! what `restore`, `restore_learned`, `restore_activity`,
//! `restore_identities`, `drop_baseline`, `set_suppressions` and
//! `missing_identities` put in or take out, each shown by the verdict that
//! depends on it (an alert raised, folded, silenced or not raised).

use std::borrow::Cow;
use std::net::IpAddr;

use crate::alert::Alert;
use crate::audit::Stage;
use crate::detect::cluster::{LearnedNodeView, Provenance};
use crate::detect::testkit::*;
use crate::detect::{Changes, Detector, suppressed_by};
use crate::policy::{Policy, Suppression};
use crate::store::{LoadedState, StoredIdentity};

/// node-a 127.0.1.1 (pods 127.1.1.0/24), node-b 127.0.1.2; a one-hour learning window.
const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
detection:
  learning_window: 1h
"#;
const SA: &str = "system:serviceaccount:shop:web";
const WEB: PodRef<'static> = Some(("shop", "web-1", "pod-uid-web", "ctr-web"));
const NODE_B: &str = "127.0.1.2";
/// In no range of the policy.
const FAR: &str = "127.200.0.4";
const FAR2: &str = "127.200.0.5";
const FAR3: &str = "127.200.0.6";
/// After the learning window of an identity first seen at T0.
const AFTER: i64 = 7200;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Two nodes whose agents reported, and web-1's process that read its token.
fn cluster(policy: &str) -> Detector {
    let mut d = detector(policy);
    observe(
        &mut d,
        &[
            node_info("node-a", -600, &["127.0.1.1"], &["127.1.1.0/24"]),
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

fn web(id: &str, at: i64, ip: &str) -> Req {
    Req::new(id, at, SA, ip).bound("jti-web", "node-a", "web-1", "pod-uid-web")
}

/// Suppression `s1` (expiring long after the tests' events) matching `rule`.
fn suppression(rule: &str) -> Suppression {
    let yaml = format!(
        "suppressions:\n  - id: s1\n    owner: ops\n    reason: known\n    created: \"2026-02-01T00:00:00Z\"\n    expires: \"2026-04-01T00:00:00Z\"\n    match: {{rule: {rule}}}\n"
    );
    let mut p = Policy::from_yaml("test", &yaml).unwrap();
    p.suppressions.remove(0)
}

fn only<'a>(alerts: &'a [Alert], rule: &str) -> &'a Alert {
    let of: Vec<&Alert> = alerts.iter().filter(|a| a.rule == rule).collect();
    assert_eq!(of.len(), 1, "one {rule} in {:?}", rules(alerts));
    of[0]
}

/// Alice, first seen two hours before T0, learned from FAR in her window.
fn alice_state() -> LoadedState {
    LoadedState {
        identities: vec![("alice".into(), t(-7200), t(-7200))],
        baselines: vec![("alice".into(), ip(FAR), true, t(-7000))],
        ..LoadedState::default()
    }
}

#[test]
fn a_restored_identity_is_past_its_window_and_judged_by_its_restored_baseline() {
    let mut d = cluster(POLICY);
    d.restore(alice_state());
    // Her learned source is expected; a new one is judged at once (not
    // learned as a first sighting would be).
    let (alerts, ch) = judge(&mut d, &Req::new("a", 0, "alice", FAR));
    assert!(alerts.is_empty(), "{alerts:?}");
    assert!(ch.baselines.is_empty(), "already known: {:?}", ch.baselines);
    let (alerts, ch) = judge(&mut d, &Req::new("b", 10, "alice", FAR2));
    let a = only(&alerts, "CT1547-002");
    assert!(
        a.reason.contains(&format!("expected at baseline {FAR}")),
        "{}",
        a.reason
    );
    assert!(!ch.baselines[0].learned, "past the window: noted only");
}

#[test]
fn restored_suppressions_replace_the_policys_and_none_stored_keeps_them() {
    // Stored (API-created) suppressions silence what they match.
    let mut d = cluster(POLICY);
    d.restore(LoadedState {
        suppressions: vec![suppression("CT1547-001")],
        ..LoadedState::default()
    });
    let (alerts, _) = judge(&mut d, &web("w", 0, NODE_B));
    assert_eq!(suppressed_by(only(&alerts, "CT1547-001")), Some("s1"));
    // Nothing stored: the policy's own suppressions stay in force.
    let tail = "suppressions:\n  - id: p1\n    owner: ops\n    reason: known\n    created: \"2026-02-01T00:00:00Z\"\n    expires: \"2026-04-01T00:00:00Z\"\n    match: {rule: CT1547-001}\n";
    let mut d = cluster(&format!("{POLICY}{tail}"));
    d.restore(LoadedState::default());
    let (alerts, _) = judge(&mut d, &web("w", 0, NODE_B));
    assert_eq!(suppressed_by(only(&alerts, "CT1547-001")), Some("p1"));
}

#[test]
fn set_suppressions_silences_from_the_next_event_and_an_empty_set_lifts_them() {
    let mut d = cluster(POLICY);
    d.set_suppressions(vec![suppression("CT1547-001")]);
    let (alerts, _) = judge(&mut d, &web("w1", 0, NODE_B));
    assert_eq!(suppressed_by(only(&alerts, "CT1547-001")), Some("s1"));
    d.set_suppressions(Vec::new());
    // A new place of the token (node-b's pod range): raised, not silenced.
    let (alerts, _) = judge(&mut d, &web("w2", 5000, "127.1.2.9"));
    let a = only(&alerts, "CT1547-001");
    assert_eq!(suppressed_by(a), None, "{:?}", a.details);
}

#[test]
fn a_learned_node_taken_back_places_its_address() {
    let prov = Provenance {
        source: Cow::Borrowed("kubelet request"),
        audit_id: "k1".into(),
        first: t(-300),
        last: t(-60),
    };
    let mut d = cluster(POLICY);
    d.restore_learned(crate::store::learned::LoadedLearned {
        minted: Vec::new(),
        nodes: vec![LearnedNodeView {
            node: "node-c".into(),
            uid: None,
            addresses: vec![("127.0.1.3".into(), prov)],
            pod_cidrs: Vec::new(),
        }],
    });
    let (alerts, _) = judge(&mut d, &web("w", 0, "127.0.1.3"));
    let a = only(&alerts, "CT1547-001");
    assert_eq!(a.details["source_node"], "node-c", "{}", a.reason);
    assert!(a.reason.contains("(node node-c)"), "{}", a.reason);
}

#[test]
fn a_repeat_after_a_restart_folds_into_the_alert_still_open() {
    // The first run raises the alert and reports its activity.
    let mut first = cluster(POLICY);
    let (alerts, ch) = judge(&mut first, &web("w1", 0, NODE_B));
    assert_eq!(rules(&alerts), ["CT1547-001"]);
    let open: Vec<_> = ch.activity.into_iter().map(|c| c.state).collect();
    assert_eq!(open.len(), 1);
    // The next run takes it back: the same use a minute later is a repeat.
    let mut d = cluster(POLICY);
    d.restore_activity(open);
    let (alerts, ch) = judge(&mut d, &web("w2", 60, NODE_B));
    assert!(alerts.is_empty(), "folded: {:?}", rules(&alerts));
    let st = &ch.activity[0].state;
    assert_eq!((st.occurrences, st.count), (2, 2), "{st:?}");
}

/// Alice learned from FAR and FAR2 in her window (first seen at T0).
fn alice_learned() -> Detector {
    let mut d = cluster(POLICY);
    for (id, at, src) in [("l1", 0, FAR), ("l2", 60, FAR2)] {
        let (alerts, ch) = judge(&mut d, &Req::new(id, at, "alice", src));
        assert!(alerts.is_empty(), "{alerts:?}");
        assert!(ch.baselines[0].learned);
    }
    d
}

#[test]
fn a_dropped_baseline_source_is_judged_as_new_again() {
    let mut d = alice_learned();
    assert!(d.drop_baseline("alice", ip(FAR)), "she had it");
    assert!(!d.drop_baseline("alice", ip(FAR)), "already gone");
    assert!(!d.drop_baseline("alice", ip(FAR3)), "never hers");
    assert!(!d.drop_baseline("bob", ip(FAR)), "no such identity");
    let (alerts, _) = judge(&mut d, &Req::new("u", AFTER, "alice", FAR));
    let a = only(&alerts, "CT1547-002");
    assert!(
        a.reason.contains(&format!("expected at baseline {FAR2}")),
        "{}",
        a.reason
    );
    // The other source is still hers.
    let (alerts, _) = judge(&mut d, &Req::new("v", AFTER + 1, "alice", FAR2));
    assert!(alerts.is_empty(), "{alerts:?}");
}

#[test]
fn dropping_the_last_baseline_source_forgets_the_identitys_baseline() {
    let mut d = cluster(POLICY);
    judge(&mut d, &Req::new("l1", 0, "alice", FAR));
    let count = |d: &mut Detector| {
        d.state_stats()
            .iter()
            .find(|s| s.map == "baselines")
            .unwrap()
            .entries
    };
    assert_eq!(count(&mut d), 1);
    assert!(d.drop_baseline("alice", ip(FAR)));
    assert_eq!(count(&mut d), 0, "no empty baseline left behind");
}

#[test]
fn identities_taken_back_keep_what_was_learned_since() {
    let mut d = alice_learned();
    // The store's older copy says FAR was only noted, and adds FAR3 as
    // learned: what this run learned stays learned, the store adds its own.
    d.restore_identities(vec![StoredIdentity {
        username: "alice".into(),
        first: t(0),
        last: t(60),
        baselines: vec![(ip(FAR), false), (ip(FAR3), true)],
    }]);
    for (id, src) in [("a", FAR), ("b", FAR2), ("c", FAR3)] {
        let (alerts, _) = judge(&mut d, &Req::new(id, AFTER, "alice", src));
        assert!(alerts.is_empty(), "{src}: {:?}", rules(&alerts));
    }
    let (alerts, _) = judge(&mut d, &Req::new("d", AFTER, "alice", "127.200.0.7"));
    assert_eq!(rules(&alerts), ["CT1547-002"]);
}

#[test]
fn missing_identities_are_the_final_events_unknown_non_empty_users_once_each() {
    let mut d = cluster(POLICY);
    judge(&mut d, &Req::new("k", 0, "alice", FAR));
    let mut started = Req::new("s", 1, "carol", FAR).event();
    started.stage = Stage::RequestReceived;
    let events = [
        Req::new("1", 1, "bob", FAR).event(),
        Req::new("2", 1, "alice", FAR).event(),
        Req::new("3", 1, "", FAR).event(),
        started,
        Req::new("4", 1, "dave", FAR).event(),
        Req::new("5", 1, "bob", FAR2).event(),
    ];
    assert_eq!(d.missing_identities(events.iter()), ["bob", "dave"]);
    d.restore_identities(vec![StoredIdentity {
        username: "bob".into(),
        first: t(-100),
        last: t(-50),
        baselines: Vec::new(),
    }]);
    assert_eq!(d.missing_identities(events.iter()), ["dave"]);
    // Judging the events with the identities taken back changes nothing else.
    let mut ch = Changes::default();
    for e in &events {
        d.judge(e, &mut ch);
    }
    assert!(d.missing_identities(events.iter()).is_empty());
}
