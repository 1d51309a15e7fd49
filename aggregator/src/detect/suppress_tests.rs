//! Suppressions and maintenance windows (`suppress.rs`): which alerts each
//! silences (kept, marked `suppressed_by`) and which it leaves raised,
//! field by field, judged on real alerts from the detector.

use crate::alert::Alert;
use crate::detect::testkit::*;
use crate::detect::{Changes, alert_node, suppressed_by};

const CLUSTER: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const SA: &str = "system:serviceaccount:shop:web";

/// web-1's bound token (pod on node-a, read there by pid 100) used from
/// `ip` at T0 under the cluster policy plus `tail`; its one AN1547 alert and
/// the changes.
fn alert(tail: &str, ip: &str) -> (Alert, Changes) {
    let mut d = detector(&format!("{CLUSTER}{tail}"));
    observe(
        &mut d,
        &[
            node_info("node-a", -600, &["127.0.1.1"], &["127.1.1.0/24"]),
            node_info("node-b", -600, &["127.0.1.2"], &["127.1.2.0/24"]),
            token_read(
                "node-a",
                "node-a/r/1",
                -60,
                100,
                "web",
                Some(("shop", "web-1", "pod-uid-web", "ctr-web")),
                "jti-web",
                ("shop", "web"),
            ),
        ],
    );
    let req = Req::new("a1", 0, SA, ip).bound("jti-web", "node-a", "web-1", "pod-uid-web");
    let (mut alerts, ch) = judge(&mut d, &req);
    assert_eq!(alerts.len(), 1, "{:?}", rules(&alerts));
    (alerts.remove(0), ch)
}

/// The off-node alert (CT1547-001, from node-b) under `tail`: who silenced it.
fn silenced(tail: &str) -> Option<String> {
    let (a, _) = alert(tail, "127.0.1.2");
    assert_eq!(a.rule, "CT1547-001");
    suppressed_by(&a).map(str::to_owned)
}

/// A suppression `s1` expiring at `expires` and matching `matcher` (YAML flow map).
fn suppression(expires: &str, matcher: &str) -> String {
    format!(
        "suppressions:\n  - id: s1\n    owner: ops\n    reason: known\n    created: \"2026-02-01T00:00:00Z\"\n    expires: \"{expires}\"\n    match: {matcher}\n"
    )
}

const LATER: &str = "2026-03-02T00:00:00Z";

#[test]
fn a_suppression_silences_what_every_given_field_matches() {
    let matching = [
        "{rule: CT1547-001}",
        "{analytic: AN1547}",
        "{username: \"system:serviceaccount:shop:*\"}",
        "{username: \"system:serviceaccount:shop:web\"}",
        "{credential_id: JTI=jti-web}",
        "{source_cidr: 127.0.1.0/24}",
        "{namespace: default}",
        "{node: node-b}",
        "{rule: CT1547-001, node: node-b, namespace: default}",
    ];
    for m in matching {
        assert_eq!(
            silenced(&suppression(LATER, m)).as_deref(),
            Some("s1"),
            "{m}"
        );
    }
    let not_matching = [
        "{rule: CT1547-002}",
        "{analytic: AN1579}",
        "{username: \"system:serviceaccount:ops:*\"}",
        "{credential_id: JTI=other}",
        "{source_cidr: 127.0.9.0/24}",
        "{namespace: kube-system}",
        "{node: node-a}",
        // Every field must match: one that does not is enough.
        "{rule: CT1547-001, node: node-c}",
        "{rule: CT1547-002, node: node-b}",
    ];
    for m in not_matching {
        assert_eq!(silenced(&suppression(LATER, m)), None, "{m}");
    }
}

#[test]
fn a_suppression_ends_at_its_expiry_and_its_hits_are_counted() {
    let m = "{rule: CT1547-001}";
    let (a, ch) = alert(&suppression(LATER, m), "127.0.1.2");
    assert_eq!(suppressed_by(&a), Some("s1"));
    assert_eq!(
        ch.suppression_hits,
        [("s1".to_owned(), t(0).timestamp_millis())]
    );
    // The alert keeps what it says about its source.
    assert_eq!(a.details["source_node"], "node-b");
    assert_eq!(alert_node(&a).as_deref(), Some("node-b"));
    // Expiring at the alert's time, or before: raised.
    let (a, ch) = alert(&suppression("2026-03-01T10:00:00Z", m), "127.0.1.2");
    assert_eq!(suppressed_by(&a), None);
    assert!(ch.suppression_hits.is_empty());
    assert_eq!(silenced(&suppression("2026-03-01T09:00:00Z", m)), None);
}

#[test]
fn an_alert_with_no_source_node_is_about_the_node_its_credential_was_read_on() {
    // From outside: no source node; the read on node-a is its first evidence.
    let (a, _) = alert("", "127.200.0.4");
    assert_eq!(a.rule, "CT1547-002");
    assert!(a.details["source_node"].is_null());
    assert_eq!(alert_node(&a).as_deref(), Some("node-a"));
    let (a, _) = alert(&suppression(LATER, "{node: node-a}"), "127.200.0.4");
    assert_eq!(suppressed_by(&a), Some("s1"));
}

/// A maintenance window `upgrade` over `[start, end)` with extra `scope` lines.
fn window(start: &str, end: &str, scope: &str) -> String {
    format!(
        "maintenance_windows:\n  - name: upgrade\n    start: \"{start}\"\n    end: \"{end}\"\n{scope}"
    )
}

const START: &str = "2026-03-01T10:00:00Z";
const END: &str = "2026-03-01T11:00:00Z";

#[test]
fn a_maintenance_window_silences_alerts_from_its_start_until_before_its_end() {
    let by = Some("maintenance:upgrade".to_owned());
    assert_eq!(silenced(&window(START, END, "")), by, "from its start");
    assert_eq!(silenced(&window("2026-03-01T10:00:01Z", END, "")), None);
    assert_eq!(
        silenced(&window("2026-03-01T09:00:00Z", START, "")),
        None,
        "ends at it"
    );
    // A window wins over a suppression, which then counts no hit.
    let both = format!(
        "{}{}",
        window(START, END, ""),
        suppression(LATER, "{rule: CT1547-001}")
    );
    let (a, ch) = alert(&both, "127.0.1.2");
    assert_eq!(suppressed_by(&a), Some("maintenance:upgrade"));
    assert!(ch.suppression_hits.is_empty());
}

#[test]
fn a_maintenance_window_is_scoped_by_node_identity_and_rule() {
    let by = Some("maintenance:upgrade".to_owned());
    let scoped = |scope: &str| silenced(&window(START, END, scope));
    // Nodes: where the source resolved, or where the credential is expected.
    assert_eq!(scoped("    nodes: [node-b]\n"), by, "source node");
    assert_eq!(scoped("    nodes: [node-a]\n"), by, "expected node");
    assert_eq!(scoped("    nodes: [node-z]\n"), None);
    assert_eq!(
        scoped("    nodes: [shop/web-1]\n"),
        None,
        "a pod is no node"
    );
    assert_eq!(
        scoped("    identities: [\"system:serviceaccount:shop:*\"]\n"),
        by
    );
    assert_eq!(scoped("    identities: [alice]\n"), None);
    assert_eq!(scoped("    rules: [CT1547-001]\n"), by);
    assert_eq!(scoped("    rules: [AN1547]\n"), by, "by analytic");
    assert_eq!(scoped("    rules: [AN1579, CT1547-002]\n"), None);
    assert_eq!(scoped("    nodes: [node-b]\n    rules: [AN1579]\n"), None);
}
