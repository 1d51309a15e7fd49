//! What `Detector::judge` adds to the alerts the rules raise: AN1547 alerts
//! are joined into incidents (`details.incident`), AN1579 alerts about a
//! binding carry the permissions it grants (`details.effective_permissions`),
//! each only on its own analytic's alerts.

use serde_json::json;

use crate::alert::Alert;
use crate::audit::{AuditEvent, parse_event};
use crate::detect::testkit::*;
use crate::detect::{Changes, Detector};

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const SA: &str = "system:serviceaccount:shop:web";
const NODE_B: &str = "127.0.1.2";
const FAR: &str = "127.200.0.4";

fn cluster() -> Detector {
    let mut d = detector(POLICY);
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
                Some(("shop", "web-1", "pod-uid-web", "ctr-web")),
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

/// `user` creates ClusterRoleBinding `name` granting ClusterRole `role` to user mallory.
fn grant(id: &str, user: &str, name: &str, role: &str) -> AuditEvent {
    let g = "rbac.authorization.k8s.io";
    let body = json!({
        "kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": g, "kind": "ClusterRole", "name": role},
        "subjects": [{"apiGroup": g, "kind": "User", "name": "mallory"}],
    });
    let v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": format!("/apis/{g}/v1/clusterrolebindings"), "verb": "create",
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": ["127.0.1.5"], "userAgent": "kubectl/v1.32.0",
        "objectRef": {"resource": "clusterrolebindings", "name": name, "apiGroup": g, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": body, "responseObject": body,
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.100000Z",
    });
    parse_event(v.to_string().as_bytes()).unwrap()
}

fn incident(a: &Alert) -> (&str, Vec<&str>) {
    let i = &a.details["incident"];
    let alerts = i["alerts"]
        .as_array()
        .unwrap_or_else(|| panic!("no incident in {}", a.details))
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    (i["id"].as_str().unwrap(), alerts)
}

#[test]
fn alerts_about_one_credential_share_its_incident() {
    let mut d = cluster();
    let (first, _) = judge(&mut d, &web("w1", 0, NODE_B));
    assert_eq!(rules(&first), ["CT1547-001"]);
    let (id, alerts) = incident(&first[0]);
    assert_eq!(id, first[0].id, "the first alert opens it");
    assert_eq!(alerts, [first[0].id.as_str()]);
    assert_eq!(
        first[0].details["incident"]["credentials"],
        json!(["JTI=jti-web"])
    );
    // The same token from outside: another alert, the same incident.
    let (second, _) = judge(&mut d, &web("w2", 10, FAR));
    let a = second.iter().find(|a| a.rule == "CT1547-002").unwrap();
    let (id2, alerts) = incident(a);
    assert_eq!(id2, first[0].id);
    assert_eq!(alerts.first(), Some(&first[0].id.as_str()));
    assert_eq!(alerts.last(), Some(&a.id.as_str()));
}

#[test]
fn a_grant_alert_shows_the_permissions_granted_and_joins_no_incident() {
    let mut d = cluster();
    let mut ch = Changes::default();
    let alerts = d.judge(&grant("g1", "bob", "pwn", "cluster-admin"), &mut ch);
    let a = alerts
        .iter()
        .find(|a| a.analytic == "AN1579")
        .unwrap_or_else(|| panic!("{:?}", rules(&alerts)));
    let p = &a.details["effective_permissions"];
    assert_eq!(
        p["role"],
        json!({"kind": "ClusterRole", "namespace": "", "name": "cluster-admin", "known_from": "bootstrap"})
    );
    assert!(
        !p["high_privilege_rules"].as_array().unwrap().is_empty(),
        "{p}"
    );
    assert!(a.details.get("incident").is_none(), "{}", a.details);
}
