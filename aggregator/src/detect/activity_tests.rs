//! Unit tests of `activity.rs`: folding, phases, bounds, hostile sizes.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::*;
use crate::alert::{Alert, Identity, RequestInfo, Severity, SourceClass};
use crate::audit::AuditEvent;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

fn ev(id: &str, at: i64, verb: &str, res: &str, ns: &str, code: i32) -> AuditEvent {
    let t = t0() + Duration::seconds(at);
    serde_json::from_value(json!({
        "level": "Metadata", "auditID": id, "stage": "ResponseComplete", "verb": verb,
        "user": {"username": "system:serviceaccount:a:b"}, "sourceIPs": ["203.0.113.5"],
        "objectRef": {"resource": res, "namespace": ns}, "responseStatus": {"code": code},
        "requestReceivedTimestamp": t.to_rfc3339(),
    }))
    .unwrap()
}

fn alert(id: &str, rule: &str, sev: Severity, at: i64) -> Alert {
    Alert {
        id: id.into(),
        rule: rule.into(),
        analytic: "AN1547".into(),
        techniques: vec![],
        severity: sev,
        time: t0() + Duration::seconds(at),
        identity: Identity::default(),
        credential_id: None,
        source_ip: Some(ip()),
        source_class: SourceClass::Outside,
        claimed_source_ips: vec![],
        expected: vec![],
        request: RequestInfo::default(),
        evidence: vec![],
        audit_ids: vec![],
        observation_ids: vec![],
        reason: String::new(),
        details: json!({"source_node": null, "source_pod": null}),
    }
}

fn ip() -> IpAddr {
    "203.0.113.5".parse().unwrap()
}

/// Feeds one request; `alert` is the rule's candidate (if any); returns what was raised.
fn feed(
    a: &mut Activity,
    e: &AuditEvent,
    cand: Option<Alert>,
    ch: &mut Vec<ActivityChange>,
) -> Vec<Alert> {
    a.advance(e.time());
    let mut out: Vec<Alert> = cand.into_iter().collect();
    a.on_request(e, "K", ip(), true, &mut out, ch);
    out
}

#[test]
fn summary_groups_in_order_with_before_and_other() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("b1", 0, "list", "pods", "shop", 200),
        None,
        &mut ch,
    );
    let raised = feed(
        &mut a,
        &ev("a1", 5, "get", "secrets", "kube-system", 200),
        Some(alert("X", "CT1547-002", Severity::Critical, 5)),
        &mut ch,
    );
    assert_eq!(raised.len(), 1);
    for i in 0..3 {
        let r = feed(
            &mut a,
            &ev(
                &format!("r{i}"),
                6 + i,
                "get",
                "secrets",
                "kube-system",
                200,
            ),
            Some(alert(
                &format!("Y{i}"),
                "CT1547-002",
                Severity::Critical,
                6 + i,
            )),
            &mut ch,
        );
        assert!(r.is_empty(), "folded");
    }
    feed(
        &mut a,
        &ev("c1", 20, "create", "pods", "shop", 403),
        None,
        &mut ch,
    );
    let st = &ch.last().unwrap().state;
    assert_eq!(
        st.summary(),
        "before: list pods in shop 200; then: get secrets in kube-system 200 ×4, create pods in shop 403"
    );
    assert_eq!((st.count, st.occurrences, st.listed), (6, 4, 6));
    // Phases of the listed entries, in the order written.
    let phases: Vec<Phase> = ch
        .iter()
        .flat_map(|c| c.entries.iter().map(|e| e.phase))
        .collect();
    assert_eq!(phases[..2], [Phase::Before, Phase::Alert]);
    assert!(phases[2..].iter().all(|p| *p == Phase::After));
}

#[test]
fn before_is_bounded_in_count_and_window() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    // 20 requests, the first 12 older than the window when the alert comes.
    for i in 0..20 {
        let at = if i < 12 { i } else { 1000 + i };
        feed(
            &mut a,
            &ev(&format!("p{i}"), at, "get", "pods", "x", 200),
            None,
            &mut ch,
        );
    }
    feed(
        &mut a,
        &ev("a", 1000 + 60, "get", "secrets", "x", 200),
        Some(alert("X", "CT1547-002", Severity::High, 1060)),
        &mut ch,
    );
    let c = ch.last().unwrap();
    let before = c
        .entries
        .iter()
        .filter(|e| e.phase == Phase::Before)
        .count();
    assert_eq!(
        before, BEFORE_PER_SOURCE,
        "only the last 8 within 15 minutes"
    );
    assert!(c.entries.iter().all(|e| e.audit_id != "p0"));
}

#[test]
fn higher_severity_other_rule_and_idle_close_raise_anew() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    let r = feed(
        &mut a,
        &ev("1", 0, "get", "x", "n", 403),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    assert_eq!(r.len(), 1);
    let r = feed(
        &mut a,
        &ev("2", 1, "get", "x", "n", 200),
        Some(alert("B", "CT1547-002", Severity::Critical, 1)),
        &mut ch,
    );
    assert_eq!(r.len(), 1, "escalation");
    let r = feed(
        &mut a,
        &ev("3", 2, "get", "x", "n", 200),
        Some(alert("C", "CT1547-003", Severity::High, 2)),
        &mut ch,
    );
    assert_eq!(r.len(), 1, "another rule");
    let r = feed(
        &mut a,
        &ev("4", 3, "get", "x", "n", 200),
        Some(alert("D", "CT1547-002", Severity::Critical, 3)),
        &mut ch,
    );
    assert!(r.is_empty());
    let idle = 3 + IDLE_CLOSE.num_seconds() + 1;
    let r = feed(
        &mut a,
        &ev("5", idle, "get", "x", "n", 200),
        Some(alert("E", "CT1547-002", Severity::Critical, idle)),
        &mut ch,
    );
    assert_eq!(r.len(), 1, "closed after an hour of silence");
    // A different resolved node is a new place.
    let mut other = alert("F", "CT1547-002", Severity::Critical, idle + 1);
    other.details = json!({"source_node": "node-z", "source_pod": null});
    let r = feed(
        &mut a,
        &ev("6", idle + 1, "get", "x", "n", 200),
        Some(other),
        &mut ch,
    );
    assert_eq!(r.len(), 1, "new node");
    // A suppressed alert does not swallow an unsuppressed repeat.
    let mut s = alert("G", "CT1547-001", Severity::Low, idle + 2);
    s.details = json!({"source_node": null, "source_pod": null, "suppressed_by": "maintenance:w"});
    assert_eq!(
        feed(
            &mut a,
            &ev("7", idle + 2, "get", "x", "n", 200),
            Some(s),
            &mut ch
        )
        .len(),
        1
    );
    let r = feed(
        &mut a,
        &ev("8", idle + 3, "get", "x", "n", 200),
        Some(alert("H", "CT1547-001", Severity::Low, idle + 3)),
        &mut ch,
    );
    assert_eq!(r.len(), 1, "the window's end raises anew");
}

#[test]
fn hostile_field_sizes_and_many_alerts_stay_bounded() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    let mut e = ev(
        "h",
        0,
        &"v".repeat(10_000),
        "secrets",
        &"é".repeat(5_000),
        200,
    );
    e.audit_id = "x".repeat(10_000);
    feed(
        &mut a,
        &e,
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    let entry = &ch[0].entries[0];
    assert!(entry.verb.len() <= 256 && entry.audit_id.len() <= 256);
    assert!(entry.namespace.as_ref().unwrap().len() <= 256);
    let g = &ch[0].state.groups[0];
    assert!(g.verb.len() <= 64 && g.namespace.as_ref().unwrap().len() <= 64);
    // Summary groups are capped; the rest are counted.
    for i in 0..40 {
        feed(
            &mut a,
            &ev(
                &format!("g{i}"),
                1 + i,
                "get",
                "secrets",
                &format!("ns{i}"),
                200,
            ),
            None,
            &mut ch,
        );
    }
    let st = &ch.last().unwrap().state;
    assert_eq!(st.groups.len(), MAX_GROUPS);
    assert_eq!(st.other, 41 - MAX_GROUPS as u64);
    assert!(
        st.summary()
            .ends_with(&format!("+{} other", 41 - MAX_GROUPS))
    );
    // Open alerts are capped.
    let mut a = Activity::default();
    for i in 0..(MAX_OPEN + 10) {
        let e = ev(&format!("o{i}"), 0, "get", "x", "n", 200);
        let mut out = vec![alert(&format!("O{i}"), "CT1547-002", Severity::High, 0)];
        a.on_request(&e, &format!("K{i}"), ip(), true, &mut out, &mut Vec::new());
    }
    assert_eq!(a.open.len(), MAX_OPEN);
}
