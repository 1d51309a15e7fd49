//! What the detector forgets as its clock moves (`Detector::advance`): the
//! places a bound token was used from go with the token (its `exp` plus the
//! grace), but only when no place was used after that, so a planted file
//! naming a victim's JTI with an `exp` long past cannot wipe the real
//! token's places (CT1547-003).

use serde_json::json;

use crate::detect::Detector;
use crate::detect::testkit::*;
use credtrail_proto::model::Observation;

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const SA: &str = "system:serviceaccount:shop:web";
const NODE_A: &str = "127.0.1.1";
const NODE_B: &str = "127.0.1.2";

/// A bound token of shop/web with JTI `jti` and `exp` (seconds after T0)
/// read on `node` at `at` by the agent's start-up scan.
fn token_file(node: &str, id: &str, at: i64, jti: &str, exp: i64) -> Observation {
    let time = t(at).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    serde_json::from_value(json!({
        "id": id, "time": time, "node": node, "type": "credential_read",
        "source": "tracepoint", "process": null, "workload": null,
        "path": "/var/run/secrets/kubernetes.io/serviceaccount/token", "flags": 0, "inode": 77,
        "reads": 1,
        "credential": {"kind": "service_account_token", "sha256": "ef".repeat(32),
            "token": {"sha256": "ab".repeat(32), "claims": {
                "iss": "https://kubernetes.default.svc", "sub": format!("system:serviceaccount:shop:web"),
                "aud": ["https://kubernetes.default.svc"], "jti": jti, "namespace": "shop",
                "service_account_name": "web", "exp": t(exp).timestamp(),
            }}},
    }))
    .unwrap()
}

fn nodes() -> Detector {
    let mut d = detector(POLICY);
    observe(
        &mut d,
        &[
            node_info("node-a", -600, &[NODE_A], &["127.1.1.0/24"]),
            node_info("node-b", -600, &[NODE_B], &["127.1.2.0/24"]),
        ],
    );
    d
}

fn token(jti: &str, id: &str, at: i64, ip: &str) -> Req {
    Req::new(id, at, SA, ip).bound(jti, "node-a", "web-1", "pod-uid-web")
}

/// 15 minutes: `limits::READ_EXPIRY_GRACE`.
const GRACE: i64 = 900;

#[test]
fn a_tokens_places_are_forgotten_once_it_has_expired() {
    let mut d = nodes();
    // Its `exp` plus the grace falls 100 s after T0.
    observe(
        &mut d,
        &[token_file(
            "node-a",
            "node-a/r/1",
            -60,
            "jti-old",
            100 - GRACE,
        )],
    );
    let (alerts, _) = judge(&mut d, &token("jti-old", "a", 0, NODE_A));
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
    // Within the reuse window of that use, but after the token's end: its
    // places went with it, so no second place is alerted.
    let (alerts, _) = judge(&mut d, &token("jti-old", "b", 200, NODE_B));
    assert_eq!(rules(&alerts), ["CT1547-001"]);
    // A token still valid keeps its places over the same span.
    let mut d = nodes();
    observe(
        &mut d,
        &[token_file("node-a", "node-a/r/2", -60, "jti-new", 3600)],
    );
    judge(&mut d, &token("jti-new", "c", 0, NODE_A));
    let (alerts, _) = judge(&mut d, &token("jti-new", "d", 200, NODE_B));
    assert_eq!(rules(&alerts), ["CT1547-003", "CT1547-001"]);
}

#[test]
fn a_planted_expired_copy_of_a_jti_does_not_wipe_the_real_tokens_places() {
    let mut d = nodes();
    let (alerts, _) = judge(&mut d, &token("jti-victim", "a", 0, NODE_A));
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
    // A file on node-b names the victim's JTI with an `exp` an hour past.
    observe(
        &mut d,
        &[token_file("node-b", "node-b/r/9", 10, "jti-victim", -3600)],
    );
    // The stolen token used from node-b: still the token's second place.
    let (alerts, _) = judge(&mut d, &token("jti-victim", "b", 20, NODE_B));
    assert_eq!(rules(&alerts), ["CT1547-003", "CT1547-001"]);
}

#[test]
fn state_stats_report_each_maps_entries_and_what_expiry_removed() {
    let mut d = nodes();
    observe(
        &mut d,
        &[token_file(
            "node-a",
            "node-a/r/1",
            -60,
            "jti-old",
            100 - GRACE,
        )],
    );
    judge(&mut d, &token("jti-old", "a", 0, NODE_A));
    // One report: each call reports what was removed since the last.
    let report = |d: &mut Detector| {
        let s = d.state_stats();
        move |map: &str| {
            let m = s
                .iter()
                .find(|s| s.map == map)
                .unwrap_or_else(|| panic!("{map} in {s:?}"));
            (m.entries, m.dropped.expired)
        }
    };
    let r = report(&mut d);
    assert_eq!(r("jti_places"), (1, 0));
    assert_eq!(r("identities"), (1, 0));
    assert_eq!(r("nodes"), (2, 0));
    assert_eq!(r("reads_by_key"), (1, 0));
    // Past the token's end: its reads and places expired, counted.
    judge(&mut d, &Req::new("b", 200, "alice", NODE_B));
    let r = report(&mut d);
    assert_eq!(r("jti_places"), (0, 1));
    assert_eq!(r("reads_by_key"), (0, 1));
    assert_eq!(r("identities"), (2, 0));
    assert_eq!(report(&mut d)("jti_places"), (0, 0), "reported once");
}
