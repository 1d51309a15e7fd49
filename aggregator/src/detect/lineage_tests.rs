//! Lineage's bounds (`lineage.rs`): minted records kept while their token
//! can still be used, incident keys kept for a week under their cap, and
//! the incident's lists capped, each judged by what an incident or a
//! token's record says afterwards.

use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

use super::*;
use crate::detect::testkit::{Req, detector, judge, t};

/// An alert about a credential used from outside, at `T0 + at`.
fn alert(id: &str, at: i64, ip: &str) -> Alert {
    static BASE: std::sync::OnceLock<Alert> = std::sync::OnceLock::new();
    let mut a = BASE
        .get_or_init(|| {
            let mut d = detector("cluster:\n  node_cidrs: [127.0.1.0/24]\n");
            let req =
                Req::new("a", 0, "system:serviceaccount:shop:web", "127.200.0.4").cred("JTI=x");
            let (mut alerts, _) = judge(&mut d, &req);
            alerts.pop().expect("an outside use alerts")
        })
        .clone();
    a.id = id.to_owned();
    a.time = t(at);
    a.source_ip = Some(ip.parse::<IpAddr>().unwrap());
    a.evidence.clear();
    a
}

/// The caps of the tests' lineages (the real ones hold 100,000 and 50,000).
const CAP: usize = 64;

fn minted(jti: &str, at: DateTime<Utc>, life_s: Option<i64>) -> Minted {
    Minted {
        jti: jti.to_owned(),
        service_account: "system:serviceaccount:ci:deployer".to_owned(),
        minter: "alice".to_owned(),
        minter_credential: None,
        source_ip: None,
        bound_to: None,
        expiration_seconds: life_s,
        user_agent: None,
        time: at,
        audit_id: jti.to_owned(),
        incident: None,
        minter_nodes: Vec::new(),
        minter_pod_uids: Vec::new(),
        minter_cidrs: Vec::new(),
    }
}

fn incident_of(l: &mut Lineage, key: &str, a: &mut Alert) -> String {
    l.join(key, a);
    a.details["incident"]["id"].as_str().unwrap().to_owned()
}

#[test]
fn an_incident_lists_each_thing_once_and_at_most_sixteen() {
    let mut l = Lineage::default();
    for i in 0..20 {
        let mut a = alert(&format!("a{i}"), i, &format!("127.200.1.{i}"));
        l.join("JTI=x", &mut a);
    }
    let mut a = alert("a19", 30, "127.200.1.19");
    l.join("JTI=x", &mut a);
    let inc = &a.details["incident"];
    assert_eq!(inc["id"], "a0", "every alert joined the first's incident");
    assert_eq!(inc["credentials"], serde_json::json!(["JTI=x"]));
    let alerts = inc["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), MAX_LIST, "{inc}");
    assert_eq!(alerts[15], "a15");
    assert_eq!(inc["sources"].as_array().unwrap().len(), MAX_LIST);
    assert_eq!(inc["sources"][0], "127.200.1.0");
}

#[test]
fn a_minted_record_stays_while_its_token_can_be_used_whatever_the_count_below_the_cap() {
    let mut l = Lineage::default();
    l.record(minted("JTI=old", t(0), Some(3_600)));
    l.record(minted("JTI=new", t(400 * 86_400), Some(3_600)));
    assert!(l.minted("JTI=old").is_some(), "below the cap nothing goes");
    assert_eq!(l.minted("JTI=new").unwrap().audit_id, "JTI=new");
}

#[test]
fn at_the_cap_only_records_past_their_expiry_and_a_day_go_and_a_full_map_takes_no_more() {
    let now = t(0) + Duration::days(4 * 365);
    let mut l = Lineage::with_caps(CAP, CAP);
    let keep = [
        // Minted 4 years ago for 5 years.
        ("JTI=five-years", t(0), Some(5 * 365 * 86_400)),
        // Expired an hour ago: kept a day past its expiry.
        ("JTI=grace", now - Duration::hours(2), Some(3_600)),
    ];
    let gone = [
        // Expired 25 hours ago.
        ("JTI=expired", now - Duration::hours(26), Some(3_600)),
        // No lifetime: kept a day past its minting.
        ("JTI=no-life", now - Duration::hours(25), None),
        // Minted for a thousand years: counts as ten.
        (
            "JTI=forever",
            now - Duration::days(11 * 365),
            Some(1_000 * 365 * 86_400),
        ),
    ];
    for (j, at, life) in keep.iter().chain(&gone) {
        l.record(minted(j, *at, *life));
    }
    let filler = minted("", now, Some(3_600));
    for i in l.minted.len()..CAP {
        let mut m = filler.clone();
        m.jti = i.to_string();
        l.minted.insert(m.jti.clone(), m);
    }
    l.record(minted("JTI=next", now, Some(3_600)));
    for (j, _, _) in &keep {
        assert!(l.minted(j).is_some(), "{j} is kept");
    }
    for (j, _, _) in &gone {
        assert!(l.minted(j).is_none(), "{j} is gone");
    }
    assert!(l.minted("JTI=next").is_some());
    assert_eq!(l.minted.len(), CAP - gone.len() + 1);
    // Full of live records: the newest is not recorded (nor the map grown).
    for i in l.minted.len()..CAP {
        l.minted.insert(format!("more-{i}"), filler.clone());
    }
    l.record(minted("JTI=refused", now, Some(3_600)));
    assert!(l.minted("JTI=refused").is_none());
    assert_eq!(l.minted.len(), CAP);
}

/// A lineage whose incident keys are at the cap: `k<i>` noted `age` ago
/// (even i) or a day ago (odd i), each in incident `inc-<i>`.
fn full(now: i64, old_age: Duration) -> Lineage {
    let mut l = Lineage::with_caps(CAP, CAP);
    for i in 0..CAP {
        let at = if i % 2 == 0 {
            t(now) - old_age
        } else {
            t(now) - Duration::days(1)
        };
        l.incident_of
            .insert(format!("k{i}"), (format!("inc-{i}"), at));
    }
    l
}

#[test]
fn at_the_incident_cap_keys_older_than_a_week_make_room_and_recent_ones_stay() {
    let now = 30 * 86_400;
    let mut l = full(now, Duration::days(8));
    let mut a = alert("new-1", now, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "new", &mut a), "new-1");
    // The new key was noted: its next alert joins its incident.
    let mut b = alert("new-2", now + 1, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "new", &mut b), "new-1");
    // A key noted a day ago kept its incident; one of 8 days ago did not.
    let mut c = alert("c", now + 2, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "k1", &mut c), "inc-1");
    let mut e = alert("e", now + 3, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "k0", &mut e), "e");
    assert!(l.incident_of.len() <= CAP / 2 + 3);
}

#[test]
fn below_the_incident_cap_a_key_keeps_its_incident_past_a_week() {
    let mut l = Lineage::default();
    let mut a = alert("first", 0, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "JTI=x", &mut a), "first");
    let mut b = alert("other", 30 * 86_400, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "JTI=y", &mut b), "other");
    let mut c = alert("later", 30 * 86_400 + 1, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "JTI=x", &mut c), "first");
}

#[test]
fn a_full_map_of_recent_incident_keys_notes_no_new_key() {
    let now = 30 * 86_400;
    let mut l = full(now, Duration::days(2));
    let mut a = alert("x-1", now, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "x", &mut a), "x-1");
    let mut b = alert("x-2", now + 1, "127.200.0.9");
    assert_eq!(
        incident_of(&mut l, "x", &mut b),
        "x-2",
        "not noted: a new incident"
    );
    assert_eq!(l.incident_of.len(), CAP);
    // A key already held still moves on.
    let mut c = alert("c", now + 2, "127.200.0.9");
    assert_eq!(incident_of(&mut l, "k1", &mut c), "inc-1");
}

/// A TokenRequest (`create serviceaccounts/token`, succeeded, the issued
/// credential id annotated) is recorded with who minted it and for what;
/// a service account's own creation, a failed request or another
/// subresource is no TokenRequest.
#[test]
fn a_token_request_is_recognised_by_its_subresource_and_success() {
    let ev = |sub: Option<&str>, code: i32| {
        let mut r = serde_json::json!({
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request",
            "auditID": "tr1", "stage": "ResponseComplete",
            "requestURI": "/api/v1/namespaces/ci/serviceaccounts/deployer/token", "verb": "create",
            "user": {"username": "alice", "groups": ["system:authenticated"]},
            "sourceIPs": ["127.0.9.9"], "userAgent": "kubectl/v1.32.0",
            "objectRef": {"resource": "serviceaccounts", "namespace": "ci", "name": "deployer", "apiVersion": "v1"},
            "responseStatus": {"metadata": {}, "code": code},
            "requestObject": {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                "spec": {"expirationSeconds": 3600, "boundObjectRef": {"kind": "Pod", "name": "web-1"}}},
            "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
            "stageTimestamp": "2026-03-01T10:00:00.100000Z",
            "annotations": {"authentication.kubernetes.io/issued-credential-id": "JTI=abc"},
        });
        if let Some(s) = sub {
            r["objectRef"]["subresource"] = s.into();
        }
        crate::audit::parse_event(r.to_string().as_bytes()).unwrap()
    };
    let m = token_request(&ev(Some("token"), 201)).expect("a TokenRequest");
    assert_eq!(m.jti, "JTI=abc");
    assert_eq!(m.service_account, "system:serviceaccount:ci:deployer");
    assert_eq!(m.minter, "alice");
    assert_eq!(m.expiration_seconds, Some(3600));
    assert_eq!(m.bound_to.as_deref(), Some("Pod/web-1"));
    assert!(
        token_request(&ev(None, 201)).is_none(),
        "creating the account"
    );
    assert!(token_request(&ev(Some("status"), 201)).is_none());
    assert!(token_request(&ev(Some("token"), 403)).is_none(), "refused");
}

/// The minted map's size is reported with the incident maps'.
#[test]
fn the_lineage_maps_are_reported_with_their_sizes() {
    let mut l = Lineage::default();
    l.record(minted("JTI=a", t(0), Some(3600)));
    l.record(minted("JTI=b", t(0), Some(3600)));
    let mut out = Vec::new();
    l.stats(&mut out);
    let size = |m: &str| out.iter().find(|s| s.map == m).map(|s| s.entries);
    assert_eq!(size("minted"), Some(2));
    assert_eq!(size("incident_keys"), Some(0));
    assert_eq!(size("incidents"), Some(0));
}
