//! Unit tests of `activity.rs`: folding, phases, bounds, hostile sizes.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

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

/// A request of any shape: `objectRef` and `responseStatus` as given (JSON),
/// absent when null.
fn raw(
    id: &str,
    at: i64,
    verb: &str,
    object_ref: serde_json::Value,
    code: Option<i32>,
) -> AuditEvent {
    let t = t0() + Duration::seconds(at);
    let status = code.map(|c| json!({"code": c}));
    serde_json::from_value(json!({
        "level": "Metadata", "auditID": id, "stage": "ResponseComplete", "verb": verb,
        "user": {"username": "system:serviceaccount:a:b"}, "sourceIPs": ["203.0.113.5"],
        "objectRef": object_ref, "responseStatus": status,
        "requestReceivedTimestamp": t.to_rfc3339(),
    }))
    .unwrap()
}

#[test]
fn summary_names_subresources_cluster_scope_unknown_codes_and_denials() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    let logs = raw(
        "a",
        0,
        "get",
        json!({"resource": "pods", "subresource": "log", "namespace": "shop", "apiGroup": "g"}),
        None,
    );
    feed(
        &mut a,
        &logs,
        Some(alert("X", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    feed(
        &mut a,
        &raw("b", 1, "list", json!({"resource": "nodes"}), Some(200)),
        None,
        &mut ch,
    );
    feed(
        &mut a,
        &raw("c", 2, "get", Value::Null, Some(403)),
        None,
        &mut ch,
    );
    feed(
        &mut a,
        &raw("d", 3, "get", Value::Null, Some(403)),
        None,
        &mut ch,
    );
    let st = &ch.last().unwrap().state;
    assert_eq!(
        st.summary(),
        "then: get pods/log in shop ?, list nodes 200, get 403 ×2"
    );
    let first = &ch[0].entries[0];
    assert_eq!(
        (
            first.api_group.as_deref(),
            first.subresource.as_deref(),
            first.response_code
        ),
        (Some("g"), Some("log"), None)
    );
    assert_eq!(first.decision, "allow");
    let denied = &ch.last().unwrap().entries[0];
    assert_eq!(
        (denied.decision.as_str(), denied.response_code),
        ("deny", Some(403))
    );
}

#[test]
fn requests_listed_per_alert_are_capped_the_rest_counted() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("a", 0, "get", "secrets", "x", 200),
        Some(alert("X", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    let n = MAX_LISTED as i64 + 4;
    for i in 1..=n {
        ch.clear();
        feed(
            &mut a,
            &ev(&format!("r{i}"), i, "get", "pods", "x", 200),
            None,
            &mut ch,
        );
        let c = &ch[0];
        // The alert's own request was the first listed.
        let listed = i < MAX_LISTED as i64;
        assert_eq!(c.entries.len(), usize::from(listed), "request {i}");
    }
    let st = &ch[0].state;
    assert_eq!((st.count, st.listed), (n as u64 + 1, MAX_LISTED));
    assert_eq!(st.first, t0());
    assert_eq!(st.last, t0() + Duration::seconds(n));
}

#[test]
fn long_fields_are_cut_on_a_character_boundary() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    // One ASCII byte then two-byte characters: 256 and 64 fall inside one.
    let odd = format!("a{}", "é".repeat(300));
    let e = ev("h", 0, &odd, "secrets", &odd, 200);
    feed(
        &mut a,
        &e,
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    let entry = &ch[0].entries[0];
    assert_eq!(entry.verb.len(), 255);
    assert_eq!(entry.namespace.as_deref().map(str::len), Some(255));
    assert!(odd.starts_with(&entry.verb));
    let g = &ch[0].state.groups[0];
    assert_eq!(
        (g.verb.len(), g.namespace.as_deref().map(str::len)),
        (63, Some(63))
    );
}

#[test]
fn other_groups_follow_the_listed_ones_after_a_comma() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("a", 0, "get", "secrets", "ns0", 200),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    for i in 1..=(MAX_GROUPS as i64 + 1) {
        feed(
            &mut a,
            &ev(
                &format!("g{i}"),
                i,
                "get",
                "secrets",
                &format!("ns{i}"),
                200,
            ),
            None,
            &mut ch,
        );
    }
    let s = ch.last().unwrap().state.summary();
    assert!(
        s.ends_with(&format!(
            "get secrets in ns{} 200, +2 other",
            MAX_GROUPS - 1
        )),
        "{s}"
    );
}

#[test]
fn an_alert_open_a_day_closes_however_busy_its_source() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    let r = feed(
        &mut a,
        &ev("a", 0, "get", "x", "n", 200),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    assert_eq!(r.len(), 1);
    // A request every 30 minutes keeps it open, repeats folded…
    let step = 1800;
    let day = MAX_SPAN.num_seconds();
    let mut at = step;
    while at <= day {
        let r = feed(
            &mut a,
            &ev(&format!("r{at}"), at, "get", "x", "n", 200),
            Some(alert(&format!("R{at}"), "CT1547-002", Severity::High, at)),
            &mut ch,
        );
        assert!(r.is_empty(), "folded at {at}");
        at += step;
    }
    // …until a day after it was raised.
    let r = feed(
        &mut a,
        &ev("late", day + 1, "get", "x", "n", 200),
        Some(alert("L", "CT1547-002", Severity::High, day + 1)),
        &mut ch,
    );
    assert_eq!(r.len(), 1, "a new alert after a day");
}

#[test]
fn requests_from_an_expected_place_are_not_remembered_before_an_alert() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    let e = ev("quiet", 0, "list", "pods", "x", 200);
    a.advance(e.time());
    a.on_request(&e, "K", ip(), false, &mut Vec::new(), &mut ch);
    let raised = feed(
        &mut a,
        &ev("a", 5, "get", "secrets", "x", 200),
        Some(alert("X", "CT1547-002", Severity::High, 5)),
        &mut ch,
    );
    assert_eq!(raised.len(), 1);
    let entries: Vec<&str> = ch[0].entries.iter().map(|e| e.audit_id.as_str()).collect();
    assert_eq!(entries, ["a"]);
}

#[test]
fn an_alert_from_another_address_neither_folds_nor_is_followed_here() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("a", 0, "get", "x", "n", 200),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    ch.clear();
    let mut elsewhere = alert("B", "CT1547-002", Severity::High, 1);
    elsewhere.source_ip = Some("203.0.113.99".parse().unwrap());
    let r = feed(
        &mut a,
        &ev("b", 1, "get", "x", "n", 200),
        Some(elsewhere),
        &mut ch,
    );
    assert_eq!(rules_of(&r), ["CT1547-002"], "not a repeat of A");
    // The request still extends A; B opens nothing under this address.
    assert_eq!(ch.len(), 1);
    assert_eq!(ch[0].state.alert_id, "A");
}

#[test]
fn restored_alerts_are_bounded_per_source_and_fold_repeats() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("a", 0, "get", "x", "n", 200),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    let st = ch[0].state.clone();
    let rows: Vec<AlertActivity> = (0..12)
        .map(|i| AlertActivity {
            alert_id: format!("S{i}"),
            rule: format!("R{i}"),
            ..st.clone()
        })
        .collect();
    let mut b = Activity::default();
    b.restore(rows);
    assert_eq!(b.open.len(), 1);
    let key = ("K".to_owned(), ip());
    assert_eq!(b.open.get(&key).map(Vec::len), Some(MAX_OPEN_PER_SOURCE));
    // The first restored of a rule folds its repeat.
    let r = feed(
        &mut b,
        &ev("b", 60, "get", "x", "n", 200),
        Some(alert("B", "R0", Severity::High, 60)),
        &mut Vec::new(),
    );
    assert!(r.is_empty());
}

fn rules_of(alerts: &[Alert]) -> Vec<&str> {
    alerts.iter().map(|a| a.rule.as_str()).collect()
}

#[test]
fn requests_differing_in_any_field_are_separate_groups() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    let g = |id: &str, at: i64, verb: &str, res: &str, sub: Option<&str>, ns: &str, code: i32| {
        raw(
            id,
            at,
            verb,
            json!({"resource": res, "subresource": sub, "namespace": ns}),
            Some(code),
        )
    };
    feed(
        &mut a,
        &g("b", 0, "get", "pods", None, "a", 200),
        None,
        &mut ch,
    );
    feed(
        &mut a,
        &g("x", 1, "get", "pods", None, "a", 200),
        Some(alert("X", "CT1547-002", Severity::High, 1)),
        &mut ch,
    );
    for (i, (verb, res, sub, ns, code)) in [
        ("get", "pods", None, "a", 200),
        ("get", "pods", Some("log"), "a", 200),
        ("get", "pods", None, "b", 200),
        ("get", "pods", None, "a", 403),
        ("list", "pods", None, "a", 200),
        ("get", "secrets", None, "a", 200),
    ]
    .into_iter()
    .enumerate()
    {
        feed(
            &mut a,
            &g(&format!("r{i}"), 2 + i as i64, verb, res, sub, ns, code),
            None,
            &mut ch,
        );
    }
    assert_eq!(
        ch.last().unwrap().state.summary(),
        "before: get pods in a 200; then: get pods in a 200 ×2, get pods/log in a 200, \
         get pods in b 200, get pods in a 403, list pods in a 200, get secrets in a 200"
    );
}

#[test]
fn an_alert_stays_open_through_an_hour_of_silence_to_the_second() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("1", 0, "get", "x", "n", 200),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    let edge = IDLE_CLOSE.num_seconds();
    let r = feed(
        &mut a,
        &ev("2", edge, "get", "x", "n", 200),
        Some(alert("B", "CT1547-002", Severity::High, edge)),
        &mut ch,
    );
    assert!(r.is_empty(), "still open after exactly an hour");
}

#[test]
fn another_pod_behind_the_same_address_is_a_new_alert() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    let on = |id: &str, at: i64, pod: &str| {
        let mut x = alert(id, "CT1547-001", Severity::Medium, at);
        x.details = json!({"source_node": "node-b", "source_pod": pod});
        x
    };
    let r = feed(
        &mut a,
        &ev("1", 0, "get", "x", "n", 200),
        Some(on("A", 0, "shop/a")),
        &mut ch,
    );
    assert_eq!(r.len(), 1);
    let r = feed(
        &mut a,
        &ev("2", 1, "get", "x", "n", 200),
        Some(on("B", 1, "shop/a")),
        &mut ch,
    );
    assert!(r.is_empty(), "same pod: a repeat");
    let r = feed(
        &mut a,
        &ev("3", 2, "get", "x", "n", 200),
        Some(on("C", 2, "shop/b")),
        &mut ch,
    );
    assert_eq!(r.len(), 1, "another pod");
}

#[test]
fn a_grant_alert_is_neither_folded_nor_followed() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("1", 0, "get", "x", "n", 200),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    ch.clear();
    let mut grant = alert("G", "CT1547-002", Severity::High, 1);
    grant.analytic = "AN1579".into();
    let r = feed(
        &mut a,
        &ev("2", 1, "create", "rolebindings", "n", 201),
        Some(grant),
        &mut ch,
    );
    assert_eq!(r.iter().map(|x| x.id.as_str()).collect::<Vec<_>>(), ["G"]);
    let ids: Vec<&str> = ch.iter().map(|c| c.state.alert_id.as_str()).collect();
    assert_eq!(ids, ["A"], "the request extends A only");
}

#[test]
fn a_new_alert_of_a_rule_replaces_its_older_one_for_that_source() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("1", 0, "get", "x", "n", 403),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    feed(
        &mut a,
        &ev("2", 1, "get", "x", "n", 200),
        Some(alert("B", "CT1547-002", Severity::Critical, 1)),
        &mut ch,
    );
    ch.clear();
    feed(&mut a, &ev("3", 2, "get", "y", "n", 200), None, &mut ch);
    let ids: Vec<&str> = ch.iter().map(|c| c.state.alert_id.as_str()).collect();
    assert_eq!(ids, ["B"]);
}

#[test]
fn requests_while_an_alert_is_open_are_its_own_not_a_later_alerts_before() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(
        &mut a,
        &ev("1", 0, "get", "x", "n", 200),
        Some(alert("A", "CT1547-002", Severity::High, 0)),
        &mut ch,
    );
    feed(
        &mut a,
        &ev("2", 10, "list", "pods", "n", 200),
        None,
        &mut ch,
    );
    ch.clear();
    feed(
        &mut a,
        &ev("3", 20, "get", "z", "n", 200),
        Some(alert("C", "CT1547-003", Severity::High, 20)),
        &mut ch,
    );
    let c = ch.iter().find(|c| c.state.alert_id == "C").unwrap();
    let listed: Vec<&str> = c.entries.iter().map(|e| e.audit_id.as_str()).collect();
    assert_eq!(listed, ["3"]);
}

#[test]
fn a_request_stamped_after_the_alert_is_not_listed_before_it() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    // Arrives first, but its time is later than the alert's (a lagging source).
    feed(
        &mut a,
        &ev("late", 50, "list", "pods", "n", 200),
        None,
        &mut ch,
    );
    feed(
        &mut a,
        &ev("early", 30, "list", "nodes", "", 200),
        None,
        &mut ch,
    );
    let e = ev("x", 40, "get", "secrets", "n", 200);
    let mut out = vec![alert("X", "CT1547-002", Severity::High, 40)];
    a.on_request(&e, "K", ip(), true, &mut out, &mut ch);
    let listed: Vec<&str> = ch
        .last()
        .unwrap()
        .entries
        .iter()
        .map(|e| e.audit_id.as_str())
        .collect();
    assert_eq!(listed, ["early", "x"]);
}

#[test]
fn at_most_eight_alerts_are_open_per_source_the_oldest_closed_first() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    for i in 0..=MAX_OPEN_PER_SOURCE as i64 {
        feed(
            &mut a,
            &ev(&format!("{i}"), i, "get", "x", "n", 200),
            Some(alert(&format!("A{i}"), &format!("R{i}"), Severity::High, i)),
            &mut ch,
        );
    }
    let open = a.open.get(&("K".to_owned(), ip())).unwrap();
    assert_eq!(open.len(), MAX_OPEN_PER_SOURCE);
    assert_eq!(open[0].alert_id, "A1");
    // The first rule's repeat is a new alert again; the second's folds.
    let r = feed(
        &mut a,
        &ev("r0", 20, "get", "x", "n", 200),
        Some(alert("N0", "R0", Severity::High, 20)),
        &mut ch,
    );
    assert_eq!(r.len(), 1);
    let r = feed(
        &mut a,
        &ev("r2", 21, "get", "x", "n", 200),
        Some(alert("N2", "R2", Severity::High, 21)),
        &mut ch,
    );
    assert!(r.is_empty());
}

#[test]
fn followed_sources_and_open_alerts_are_let_go_with_time_and_reported() {
    let mut a = Activity::default();
    let mut ch = Vec::new();
    feed(&mut a, &ev("b", 0, "get", "x", "n", 200), None, &mut ch);
    let e = ev("x", 0, "get", "x", "n", 200);
    let mut out = vec![alert("X", "CT1547-002", Severity::High, 0)];
    a.on_request(&e, "K2", ip(), true, &mut out, &mut ch);
    let sizes = |a: &mut Activity| {
        let mut s = Vec::new();
        a.stats(&mut s);
        s.iter().map(|m| (m.map, m.entries)).collect::<Vec<_>>()
    };
    assert_eq!(
        sizes(&mut a),
        [("activity_before", 1), ("activity_open", 1)]
    );
    a.advance(t0() + IDLE_CLOSE + Duration::seconds(1));
    assert_eq!(
        sizes(&mut a),
        [("activity_before", 0), ("activity_open", 0)]
    );
}
