//! The detection maps' bounds from the policy (`limits.rs`), judged by what
//! the detector still knows: what `detection.state.max_age` forgets, what a
//! learning window keeps, and how far a future timestamp moves the clocks.

use chrono::{Duration, Utc};

use super::limits::{MAX_CLOCK_SKEW, clock};
use super::testkit::*;

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const RUNNER: &str = "system:serviceaccount:ci:runner";

#[test]
fn an_agents_read_is_forgotten_after_the_policys_max_age() {
    for (max_age, forgotten) in [("1h", true), ("3h", false)] {
        let mut d = detector(&format!(
            "{POLICY}detection:\n  state:\n    max_age: {max_age}\n"
        ));
        observe(
            &mut d,
            &[
                node_info("node-1", 0, &["127.0.1.1"], &[]),
                node_info("node-2", 0, &["127.0.1.2"], &[]),
                token_read(
                    "node-1",
                    "r1",
                    0,
                    100,
                    "app",
                    None,
                    "jti-1",
                    ("ci", "runner"),
                ),
            ],
        );
        // Two hours later node-2 reports again (node-1's read untouched since).
        observe(&mut d, &[node_info("node-2", 7200, &["127.0.1.2"], &[])]);
        let (alerts, _) = judge(
            &mut d,
            &Req::new("a", 7201, RUNNER, "127.0.1.2").cred("JTI=jti-1"),
        );
        if forgotten {
            assert!(alerts.is_empty(), "{max_age}: {:?}", rules(&alerts));
        } else {
            assert_eq!(
                rules(&alerts),
                ["CT1547-001"],
                "{max_age}: still read on node-1"
            );
        }
    }
}

#[test]
fn an_identity_outlives_a_short_max_age_until_its_learning_window_is_over() {
    let mut d = detector(&format!(
        "{POLICY}detection:\n  learning_window: 2h\n  state:\n    max_age: 1h\n"
    ));
    let (_, ch) = judge(&mut d, &Req::new("a", 0, "alice", "127.200.0.4"));
    assert!(ch.baselines[0].learned);
    // Unseen for 2.5 hours (past max_age): still the same identity, its window over.
    let (alerts, ch) = judge(&mut d, &Req::new("b", 9000, "alice", "127.200.0.5"));
    assert!(!ch.baselines[0].learned, "not learning again");
    assert_eq!(rules(&alerts), ["CT1547-002"], "judged by its baseline");
}

#[test]
fn a_future_timestamp_moves_the_clocks_at_most_a_few_minutes_past_now() {
    let now = Utc::now();
    let c = clock(now + Duration::days(365));
    assert!(c > now && c <= Utc::now() + MAX_CLOCK_SKEW, "{c} vs {now}");
    let past = now - Duration::hours(3);
    assert_eq!(clock(past), past);
}
