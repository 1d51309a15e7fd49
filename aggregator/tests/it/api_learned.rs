//! What detection learned, over HTTP: learned nodes, baselines (with the
//! event that taught each, and dropping one, which detection then forgets),
//! token lineage.

use crate::api_support;

use api_support::{Api, base_time};
use chrono::{DateTime, Duration, Utc};
use credtrail_aggregator::policy::Policy;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

fn ev(id: &str, t: DateTime<Utc>, user: &str, ip: &str, verb: &str, res: &str) -> Value {
    json!({
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
        "auditID": id, "stage": "ResponseComplete",
        "requestURI": format!("/api/v1/{res}"), "verb": verb,
        "user": {"username": user, "groups": ["system:authenticated"]},
        "sourceIPs": [ip], "userAgent": "kubectl/v1.30.2 (linux/amd64) kubernetes/3968350",
        "objectRef": {"resource": res, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": t.to_rfc3339(), "stageTimestamp": t.to_rfc3339(),
        "annotations": {"authorization.k8s.io/decision": "allow"}
    })
}

const SA: &str = "system:serviceaccount:ops:backup";

#[tokio::test]
async fn baselines_are_listed_with_their_event_and_a_dropped_one_is_judged_again() {
    let policy = Policy::from_yaml(
        "t",
        "cluster:\n  node_cidrs: [10.0.1.0/24]\ndetection:\n  learning_window: 24h\n",
    )
    .unwrap();
    let api = Api::start_with(policy).await;
    let t0 = base_time();
    let learned = api
        .ingest(vec![
            ev("b1", t0, SA, "10.0.1.77", "list", "secrets"),
            ev(
                "b2",
                t0 + Duration::minutes(5),
                SA,
                "10.0.1.78",
                "list",
                "secrets",
            ),
            // From outside during learning: judged, never learned.
            ev(
                "b3",
                t0 + Duration::minutes(6),
                SA,
                "203.0.113.9",
                "list",
                "secrets",
            ),
        ])
        .await;
    assert_eq!(
        learned, 1,
        "the outside use alerts inside the learning window"
    );
    let v = api
        .get_json(&format!("/api/v1/baselines?username={SA}"), StatusCode::OK)
        .await;
    let rows = v["baselines"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{v}");
    let by_ip = |ip: &str| rows.iter().find(|r| r["source_ip"] == ip).unwrap().clone();
    assert_eq!(by_ip("10.0.1.77")["learned"], true);
    assert_eq!(by_ip("10.0.1.77")["taught_by_audit_id"], "b1");
    assert_eq!(
        by_ip("203.0.113.9")["learned"],
        false,
        "outside is never learned"
    );

    // Drop 10.0.1.78 after review: a later use from there is judged again.
    let q = format!("/api/v1/baselines?username={SA}&source_ip=10.0.1.78");
    let (s, _, _) = api.request(Method::DELETE, &q, None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = api.request(Method::DELETE, &q, None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _, body) = api
        .request(
            Method::DELETE,
            "/api/v1/baselines?username=x&source_ip=nope",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, _, _) = api
        .request(Method::DELETE, "/api/v1/baselines?username=x", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let later = t0 + Duration::hours(25);
    let kept = api
        .ingest(vec![ev("b4", later, SA, "10.0.1.77", "list", "secrets")])
        .await;
    assert_eq!(kept, 0, "the kept baseline still holds");
    let dropped = api
        .ingest(vec![ev("b5", later, SA, "10.0.1.78", "list", "secrets")])
        .await;
    assert_eq!(dropped, 1, "the dropped source is judged again");
}

#[tokio::test]
async fn learned_nodes_and_token_lineage_are_listed() {
    let api = Api::start_with(Policy::default()).await; // zero-config

    let t0 = base_time();
    let mut mint = ev(
        "m1",
        t0 + Duration::minutes(1),
        "alice@example.com",
        "198.51.100.10",
        "create",
        "serviceaccounts",
    );
    mint["objectRef"] = json!({"resource": "serviceaccounts", "namespace": "ci", "name": "deployer",
        "subresource": "token", "apiVersion": "v1"});
    mint["level"] = json!("Request");
    mint["requestObject"] = json!({"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
        "spec": {"expirationSeconds": 31536000}});
    mint["annotations"]["authentication.kubernetes.io/issued-credential-id"] =
        json!("JTI=0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f");
    let mut lease = ev(
        "n1",
        t0,
        "system:node:node-q",
        "10.0.1.90",
        "update",
        "leases",
    );
    // A kubelet's credential is a node's only in group system:nodes.
    lease["user"]["groups"] = json!(["system:nodes", "system:authenticated"]);
    let alerts = api.ingest(vec![lease, mint]).await;
    assert_eq!(
        alerts, 1,
        "a year-long token minted by a person: CT1547-005"
    );
    let v = api.get_json("/api/v1/learned/nodes", StatusCode::OK).await;
    let n = &v["learned_nodes"][0];
    assert_eq!(n["node"], "node-q", "{v}");
    assert_eq!(n["facts"]["addresses"][0][0], "10.0.1.90");
    assert_eq!(n["facts"]["addresses"][0][1]["source"], "kubelet request");
    assert_eq!(n["facts"]["addresses"][0][1]["audit_id"], "n1");
    let v = api
        .get_json(
            "/api/v1/tokens/lineage?jti=JTI=0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f",
            StatusCode::OK,
        )
        .await;
    let l = &v["lineage"][0];
    assert_eq!(l["minter"], "alice@example.com", "{v}");
    assert_eq!(l["service_account"], "system:serviceaccount:ci:deployer");
    assert_eq!(l["expiration_seconds"], 31536000);
    assert_eq!(l["source_ip"], "198.51.100.10");
    // The nodes inventory shows what was learned; the credential inventory who minted.
    let v = api.get_json("/api/v1/nodes", StatusCode::OK).await;
    assert_eq!(v["learned"][0]["node"], "node-q", "{v}");
    let mut used = ev(
        "u1",
        t0 + Duration::minutes(2),
        "system:serviceaccount:ci:deployer",
        "198.51.100.10",
        "list",
        "pods",
    );
    used["user"]["extra"] = json!({"authentication.kubernetes.io/credential-id":
        ["JTI=0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f"]});
    assert_eq!(api.ingest(vec![used]).await, 0, "used where it was minted");
    let v = api
        .get_json(
            "/api/v1/credentials?credential_id=JTI=0f9e8d7c-6b5a-4c3d-9e2f-1a0b9c8d7e6f",
            StatusCode::OK,
        )
        .await;
    assert_eq!(
        v["credentials"][0]["minted_by"]["minter"], "alice@example.com",
        "{v}"
    );
    let (s, _, _) = api
        .request(Method::GET, "/api/v1/tokens/lineage?bogus=1", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "unknown parameters are refused");
}

/// Lineage (with the minter's expectations) survives a restart (learned nodes are
/// restored with it; their use is covered by the unit tests).
#[tokio::test]
async fn lineage_and_learned_nodes_survive_a_restart() {
    use credtrail_aggregator::audit::AuditEvent;
    use credtrail_aggregator::metrics::Metrics;
    use credtrail_aggregator::state::AppState;
    use credtrail_aggregator::store::{Store, Synchronous};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("agg.db");
    let open = || {
        AppState::new(
            Store::open(&db, Synchronous::Full).unwrap(),
            Policy::default(),
            std::sync::Arc::new(Metrics::new()),
        )
        .unwrap()
    };
    let parse = |v: Vec<Value>| -> Vec<AuditEvent> {
        v.into_iter()
            .map(|e| serde_json::from_value(e).unwrap())
            .collect()
    };
    let t0 = base_time();
    let jti = "JTI=3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d";
    {
        let app = open();
        let mut mint = ev(
            "m1",
            t0,
            "alice@example.com",
            "198.51.100.10",
            "create",
            "serviceaccounts",
        );
        mint["objectRef"] = json!({"resource": "serviceaccounts", "namespace": "ci",
            "name": "deployer", "subresource": "token", "apiVersion": "v1"});
        mint["annotations"]["authentication.kubernetes.io/issued-credential-id"] = json!(jti);
        let r = app
            .pipeline
            .ingest_audit_batch(
                "webhook",
                parse(vec![
                    ev(
                        "n1",
                        t0,
                        "system:node:node-q",
                        "10.0.1.90",
                        "update",
                        "leases",
                    ),
                    mint,
                ]),
            )
            .await
            .unwrap();
        assert!(r.alerts.is_empty(), "{:?}", r.alerts);
    }
    let app = open();
    let use_from = |id: &str, ip: &str| {
        let mut e = ev(
            id,
            t0 + Duration::minutes(30),
            "system:serviceaccount:ci:deployer",
            ip,
            "list",
            "pods",
        );
        e["user"]["extra"] = json!({"authentication.kubernetes.io/credential-id": [jti]});
        e
    };
    let r = app
        .pipeline
        .ingest_audit_batch(
            "webhook",
            parse(vec![
                use_from("u1", "198.51.100.10"),
                ev(
                    "n2",
                    t0 + Duration::minutes(31),
                    "system:node:node-q",
                    "10.0.1.90",
                    "get",
                    "secrets",
                ),
            ]),
        )
        .await
        .unwrap();
    assert!(
        r.alerts.is_empty(),
        "the minter's place holds after the restart: {:?}",
        r.alerts
    );
    let r = app
        .pipeline
        .ingest_audit_batch("webhook", parse(vec![use_from("u2", "203.0.113.200")]))
        .await
        .unwrap();
    let rules: Vec<&str> = r.alerts.iter().map(|a| a.rule.as_str()).collect();
    assert!(rules.contains(&"CT1547-002"), "{rules:?}");
    let a = r.alerts.iter().find(|a| a.rule == "CT1547-002").unwrap();
    assert_eq!(a.details["minted_by"]["minter"], "alice@example.com");
}
