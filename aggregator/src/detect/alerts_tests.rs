//! What every alert carries (`alerts.rs`): the severity a sensitive request
//! earns, the identity (effective or authenticated), the request, the
//! evidence and the ATT&CK techniques, read from the alerts the detector
//! raises on real-format audit events.

use serde_json::json;

use crate::alert::{Alert, Severity};
use crate::audit::parse_event;
use crate::detect::Detector;
use crate::detect::testkit::*;

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
const SA: &str = "system:serviceaccount:shop:web";
const WEB: PodRef<'static> = Some(("shop", "web-1", "pod-uid-web", "ctr-web"));
const NODE_B: &str = "127.0.1.2";
const FAR: &str = "127.200.0.4";

/// node-a and node-b; web-1's token read on node-a by pid 100 and by the
/// agent's start-up scan (no process).
fn cluster() -> Detector {
    let mut d = detector(POLICY);
    observe(
        &mut d,
        &[
            node_info("node-a", -600, &["127.0.1.1"], &["127.1.1.0/24"]),
            node_info("node-b", -600, &[NODE_B], &["127.1.2.0/24"]),
            token_read(
                "node-a",
                "node-a/scan",
                -90,
                0,
                "",
                WEB,
                "jti-web",
                ("shop", "web"),
            ),
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

/// web-1's token used from node-b: `verb` on `resource[/sub]` in `ns`.
fn off_node(verb: &str, resource: &str, sub: Option<&str>, ns: Option<&str>) -> Alert {
    let mut d = cluster();
    let path = match ns {
        Some(ns) => format!("/api/v1/namespaces/{ns}/{resource}/x"),
        None => format!("/api/v1/{resource}/x"),
    };
    let v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": "e1", "stage": "ResponseComplete", "requestURI": path, "verb": verb,
        "user": {"username": SA, "groups": ["system:authenticated"], "extra": {
            "authentication.kubernetes.io/credential-id": ["JTI=jti-web"],
            "authentication.kubernetes.io/node-name": ["node-a"],
            "authentication.kubernetes.io/pod-name": ["web-1"],
            "authentication.kubernetes.io/pod-uid": ["pod-uid-web"]}},
        "sourceIPs": ["198.51.100.7", NODE_B], "userAgent": "curl/8.5.0",
        "objectRef": {"resource": resource, "subresource": sub, "namespace": ns, "name": "x",
            "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.000000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    });
    let ev = parse_event(v.to_string().as_bytes()).unwrap();
    let mut ch = crate::detect::Changes::default();
    let mut alerts = d.judge(&ev, &mut ch);
    assert_eq!(rules(&alerts), ["CT1547-001"], "{verb} {resource}");
    alerts.remove(0)
}

#[test]
fn an_off_node_use_is_high_when_it_writes_touches_secrets_rbac_kube_system_or_a_shell() {
    let cases = [
        ("get", "pods", None, Some("shop"), Severity::Medium),
        ("get", "pods", Some("log"), Some("shop"), Severity::Medium),
        ("get", "pods", None, Some("kube-public"), Severity::Medium),
        ("list", "nodes", None, None, Severity::Medium),
        ("patch", "pods", None, Some("shop"), Severity::High),
        ("get", "pods", None, Some("kube-system"), Severity::High),
        ("get", "secrets", None, Some("shop"), Severity::High),
        ("create", "pods", Some("exec"), Some("shop"), Severity::High),
        ("get", "roles", None, Some("shop"), Severity::High),
        ("list", "clusterrolebindings", None, None, Severity::High),
    ];
    for (verb, resource, sub, ns, severity) in cases {
        let a = off_node(verb, resource, sub, ns);
        assert_eq!(a.severity, severity, "{verb} {resource} {sub:?} {ns:?}");
    }
    // A read-only shell into a pod is still a shell.
    let a = off_node("get", "pods", Some("portforward"), Some("shop"));
    assert_eq!(a.severity, Severity::High);
}

#[test]
fn an_alert_names_the_service_account_the_request_and_the_readers() {
    let a = off_node("get", "secrets", None, Some("shop"));
    assert_eq!(a.identity.username, SA);
    assert_eq!(
        a.identity.service_account,
        Some(("shop".to_owned(), "web".to_owned()))
    );
    assert_eq!(a.identity.impersonated_by, None);
    let r = &a.request;
    assert_eq!(
        (
            r.verb.as_str(),
            r.resource.as_deref(),
            r.namespace.as_deref(),
            r.name.as_deref(),
            r.decision.as_str(),
            r.response_code,
        ),
        (
            "get",
            Some("secrets"),
            Some("shop"),
            Some("x"),
            "allow",
            Some(200)
        )
    );
    assert_eq!(r.user_agent.as_deref(), Some("curl/8.5.0"));
    assert_eq!(a.claimed_source_ips, ["198.51.100.7"]);
    assert_eq!(a.techniques, ["T1550.001", "T1528"]);
    assert_eq!(a.id.len(), 32, "16 bytes of SHA-256 in hex");
    assert!(a.id.bytes().all(|b| b.is_ascii_hexdigit()), "{}", a.id);
    // Each read is evidence: the start-up scan has no process id.
    let pids: Vec<Option<u32>> = a.evidence.iter().map(|e| e.pid).collect();
    assert_eq!(pids, [None, Some(100)], "{:?}", a.evidence);
    assert!(
        a.evidence
            .iter()
            .all(|e| e.kind == "credential_read" && e.path.is_some())
    );
    let mut obs = a.observation_ids.clone();
    obs.sort();
    assert_eq!(obs, ["node-a/r/1", "node-a/scan"]);
}

#[test]
fn alert_ids_differ_by_request_and_name_nothing_else() {
    let a = off_node("get", "secrets", None, Some("shop"));
    let b = off_node("get", "pods", None, Some("shop"));
    assert_eq!(a.id, b.id, "same rule, same audit ID: the same alert");
    let mut d = cluster();
    let (x, _) = judge(
        &mut d,
        &Req::new("other", 0, SA, NODE_B).bound("jti-web", "node-a", "web-1", "pod-uid-web"),
    );
    assert_ne!(x[0].id, a.id);
    assert_eq!(x[0].id.len(), 32);
}

#[test]
fn a_client_certificate_is_t1552_004_and_a_person_is_not_a_service_account() {
    let mut d = detector(POLICY);
    let req = Req::new("c1", 0, "system:serviceaccount:ci:runner", FAR).cred("X509SHA256=ab12");
    let (alerts, _) = judge(&mut d, &req);
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    assert_eq!(alerts[0].techniques, ["T1552.004", "T1078"]);
    assert_eq!(
        alerts[0].identity.service_account,
        Some(("ci".to_owned(), "runner".to_owned()))
    );
    // A node's certificate: no service account.
    let req = Req::new("c2", 0, "system:node:node-x", FAR).cred("X509SHA256=cd34");
    let (alerts, _) = judge(&mut d, &req);
    assert_eq!(rules(&alerts), ["CT1547-002"]);
    assert_eq!(alerts[0].identity.service_account, None);
}

#[test]
fn a_grant_made_by_impersonation_names_the_impersonated_user_and_the_impersonator() {
    let mut d = detector(POLICY);
    let body = json!({"kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": "backdoor"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "mallory"}]});
    let v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": "g1", "stage": "ResponseComplete",
        "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "verb": "create",
        "user": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "impersonatedUser": {"username": "system:serviceaccount:ops:admin",
            "groups": ["system:serviceaccounts"]},
        "sourceIPs": [FAR], "userAgent": "kubectl/v1.32.0",
        "objectRef": {"resource": "clusterrolebindings", "name": "backdoor",
            "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": body, "responseObject": body,
        "requestReceivedTimestamp": "2026-03-01T10:00:00.000000Z",
        "stageTimestamp": "2026-03-01T10:00:00.000000Z",
        "annotations": {"authorization.k8s.io/decision": "allow"},
    });
    let ev = parse_event(v.to_string().as_bytes()).unwrap();
    let mut ch = crate::detect::Changes::default();
    let alerts = d.judge(&ev, &mut ch);
    let grant: Vec<&Alert> = alerts.iter().filter(|a| a.rule == "CT1579-001").collect();
    assert_eq!(grant.len(), 1, "{:?}", rules(&alerts));
    let id = &grant[0].identity;
    assert_eq!(id.username, "system:serviceaccount:ops:admin");
    assert_eq!(id.groups, ["system:serviceaccounts"]);
    assert_eq!(id.impersonated_by.as_deref(), Some("alice@example.com"));
    assert_eq!(
        id.service_account,
        Some(("ops".to_owned(), "admin".to_owned()))
    );
}

#[test]
fn the_processes_that_connected_from_the_source_are_evidence_with_their_pid() {
    let mut d = cluster();
    observe(
        &mut d,
        &[connect(
            "node-b",
            "node-b/c/1",
            -5,
            300,
            "curl",
            NODE_B,
            None,
        )],
    );
    let (alerts, _) = judge(
        &mut d,
        &Req::new("c", 0, SA, NODE_B).bound("jti-web", "node-a", "web-1", "pod-uid-web"),
    );
    assert_eq!(rules(&alerts), ["CT1547-001"]);
    let c: Vec<_> = alerts[0]
        .evidence
        .iter()
        .filter(|e| e.kind == "api_connect")
        .collect();
    assert_eq!(c.len(), 1, "{:?}", alerts[0].evidence);
    assert_eq!(
        (
            c[0].node.as_str(),
            c[0].pid,
            c[0].comm.as_deref(),
            c[0].path.as_deref()
        ),
        ("node-b", Some(300), Some("curl"), None)
    );
    assert_eq!(c[0].observation_id, "node-b/c/1");
    assert!(alerts[0].observation_ids.contains(&"node-b/c/1".to_owned()));
}
