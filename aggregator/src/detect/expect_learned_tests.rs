//! Facts learned from the audit stream (here the API server's own address,
//! from the `kubernetes` Endpoints) classify a request as of the request's
//! time: once older than `detection.learned_ttl` they no longer vouch for it.

use serde_json::json;

use crate::audit::{AuditEvent, parse_event};
use crate::detect::testkit::*;
use crate::detect::{Changes, Detector};

const POLICY: &str = r#"
cluster:
  node_cidrs: [127.0.1.0/24]
  pod_cidrs: [127.1.0.0/16]
"#;
/// The API server's address, in the node range, no agent's.
const API: &str = "127.0.1.250";

/// The API server writes the `kubernetes` Endpoints naming `ip`, at `at`.
fn endpoints_write(at: i64, ip: &str) -> AuditEvent {
    let body = json!({
        "kind": "Endpoints", "apiVersion": "v1",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "https", "port": 6443}]}],
    });
    let v = json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "RequestResponse",
        "auditID": format!("ep{at}"), "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/default/endpoints/kubernetes", "verb": "update",
        "user": {"username": "system:apiserver", "groups": ["system:masters"]},
        "sourceIPs": ["::1"],
        "objectRef": {"resource": "endpoints", "namespace": "default", "name": "kubernetes", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestObject": body, "responseObject": body,
        "requestReceivedTimestamp": t(at).to_rfc3339(), "stageTimestamp": t(at).to_rfc3339(),
    });
    parse_event(v.to_string().as_bytes()).unwrap()
}

fn web_read(d: &mut Detector) {
    observe(
        d,
        &[
            node_info("node-a", -600, &["127.0.1.1"], &["127.1.1.0/24"]),
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
}

fn web(id: &str, at: i64) -> Req {
    Req::new(id, at, "system:serviceaccount:shop:web", API).bound(
        "jti-web",
        "node-a",
        "web-1",
        "pod-uid-web",
    )
}

#[test]
fn the_api_servers_learned_address_vouches_for_a_request_only_while_fresh() {
    let mut d = detector(POLICY);
    web_read(&mut d);
    let alerts = d.judge(&endpoints_write(0, API), &mut Changes::default());
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
    // Proxied by the API server an hour later: its address is trusted.
    let (alerts, _) = judge(&mut d, &web("w1", 3600));
    assert!(alerts.is_empty(), "{:?}", rules(&alerts));
    // A day and an hour after it was last confirmed: no longer.
    let (alerts, _) = judge(&mut d, &web("w2", 90_000));
    assert_eq!(rules(&alerts), ["CT1547-001"]);
}
