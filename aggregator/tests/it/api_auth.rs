//! Attacks on the query API's authentication and write controls, on real
//! listeners on loopback (issue 8): every one of these succeeded before the
//! API was authenticated.

use crate::api_support;

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use api_support::{ADMIN_TOKEN, Api, RESPONDER_TOKEN, VIEWER_TOKEN, base_time, grant_to_anonymous};
use chrono::{Duration, Utc};
use credtrail_aggregator::server::{ServeConfig, serve};
use credtrail_aggregator::store::Synchronous;
use credtrail_proto::pb::query as pb;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tonic::Code;

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// A narrow, valid suppression body expiring in `days`.
fn suppression(days: i64) -> String {
    json!({
        "owner": "soc", "reason": "drill INC-7",
        "expires": (Utc::now() + Duration::days(days)).to_rfc3339(),
        "match": {"username": "eve", "rule": "CT1579-001"}
    })
    .to_string()
}

async fn suppression_count(api: &Api) -> usize {
    api.get_json("/api/v1/suppressions?include_expired=true", StatusCode::OK)
        .await["suppressions"]
        .as_array()
        .unwrap()
        .len()
}

#[tokio::test]
async fn unauthenticated_reads_and_writes_are_401() {
    let api = Api::start().await;
    for path in [
        "/api/v1/alerts",
        "/api/v1/alerts/stream",
        "/api/v1/alerts/x",
        "/api/v1/credentials",
        "/api/v1/nodes",
        "/api/v1/bindings",
        "/api/v1/coverage",
        "/api/v1/suppressions",
        "/api/v1/export/alerts",
        "/api/v1/no-such-route",
    ] {
        let (s, h, body) = api.request_with(Method::GET, path, None, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "GET {path}: {body}");
        assert!(
            h["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer"),
            "{path}"
        );
    }
    // The attack from the issue: a cross-site "simple" request.
    let (s, _, body) = api
        .request_with(
            Method::POST,
            "/api/v1/suppressions",
            Some(r#"{"owner":"x","reason":"x","expires":"9999-01-01T00:00:00Z","match":{"username":"*"}}"#.into()),
            &[
                ("content-type", "text/plain"),
                ("origin", "http://evil.example"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    for (m, path) in [
        (Method::DELETE, "/api/v1/suppressions/api-x"),
        (Method::PUT, "/api/v1/alerts"),
        (Method::PATCH, "/api/v1/suppressions/api-x"),
    ] {
        let (s, _, _) = api.request_with(m.clone(), path, None, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {path}");
    }
    // A wrong token, a wrong scheme, an empty one: 401, and the answer never
    // echoes what was sent.
    for h in [
        "Bearer not-a-real-token-0123456789",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer ",
        "Bearer test-admin-token-0123456789abcdef012345678", // one character short
    ] {
        let (s, _, body) = api
            .request_with(Method::GET, "/api/v1/alerts", None, &[("authorization", h)])
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{h}: {body}");
        let sent = h.split_once(' ').map_or(h, |(_, t)| t);
        assert!(sent.is_empty() || !body.contains(sent), "{body}");
    }
    assert_eq!(suppression_count(&api).await, 0, "nothing was created");
    // No CORS: nothing invites a browser to share the answer cross-origin.
    let (_, h, _) = api
        .request_with(
            Method::OPTIONS,
            "/api/v1/suppressions",
            None,
            &[
                ("origin", "http://evil.example"),
                ("access-control-request-method", "POST"),
            ],
        )
        .await;
    assert!(h.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn health_is_open_metrics_optionally_protected() {
    let api = Api::start().await;
    for path in ["/healthz", "/readyz", "/metrics", "/", "/app.js"] {
        let (s, _, body) = api.request_with(Method::GET, path, None, &[]).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
    }
    let mut auth = api_support::test_auth(api.http);
    auth.http.metrics_require_auth = true;
    let state = api.state.clone().with_auth(auth);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(credtrail_aggregator::api::http::serve(
        l,
        state,
        std::future::pending(),
    ));
    let protected = Api {
        state: api.state.clone(),
        http: addr,
        grpc: api.grpc,
    };
    let (s, _, _) = protected
        .request_with(Method::GET, "/metrics", None, &[])
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = protected
        .request_with(Method::GET, "/healthz", None, &[])
        .await;
    assert_eq!(s, StatusCode::OK);
    let v = bearer(VIEWER_TOKEN);
    let (s, _, text) = protected
        .request_with(Method::GET, "/metrics", None, &[("authorization", &v)])
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        text.contains("credtrail_api_auth_refused_total{api=\"http\",reason=\"unauthenticated\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn roles_decide_who_may_write_and_writes_are_attributed() {
    let api = Api::start().await;
    let (v, r, a) = (
        bearer(VIEWER_TOKEN),
        bearer(RESPONDER_TOKEN),
        bearer(ADMIN_TOKEN),
    );
    let json_ct = ("content-type", "application/json");
    // A viewer reads (lowercase scheme, RFC 7235) but may not write.
    let lower = format!("bearer {VIEWER_TOKEN}");
    let (s, _, _) = api
        .request_with(
            Method::GET,
            "/api/v1/alerts",
            None,
            &[("authorization", &lower)],
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = api
        .request_with(
            Method::POST,
            "/api/v1/suppressions",
            Some(suppression(1)),
            &[("authorization", &v), json_ct],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("token:viewer") && body.contains("viewer"),
        "{body}"
    );
    // A responder writes, as itself.
    let (s, _, body) = api
        .request_with(
            Method::POST,
            "/api/v1/suppressions",
            Some(suppression(1)),
            &[("authorization", &r), json_ct],
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["created_by"], "token:responder");
    let id = created["id"].as_str().unwrap().to_owned();
    // A viewer may not delete it; an admin may, and is recorded.
    let path = format!("/api/v1/suppressions/{id}");
    let (s, _, _) = api
        .request_with(Method::DELETE, &path, None, &[("authorization", &v)])
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _, _) = api
        .request_with(Method::DELETE, &path, None, &[("authorization", &a)])
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let all = api
        .get_json("/api/v1/suppressions?include_expired=true", StatusCode::OK)
        .await;
    let row = &all["suppressions"][0];
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["created_by"], "token:responder");
    assert_eq!(row["deleted_by"], "token:admin");
    assert_eq!(row["active"], false);
}

#[tokio::test]
async fn writes_must_be_json_and_name_this_host() {
    let api = Api::start().await;
    let r = bearer(RESPONDER_TOKEN);
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let (s, _, body) = api
            .request_with(
                Method::POST,
                "/api/v1/suppressions",
                Some(suppression(1)),
                &[("authorization", &r), ("content-type", ct)],
            )
            .await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}: {body}");
    }
    let (s, _, _) = api
        .request_with(
            Method::POST,
            "/api/v1/suppressions",
            Some(suppression(1)),
            &[("authorization", &r)],
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "no content type");
    assert_eq!(suppression_count(&api).await, 0);

    // DNS rebinding: the browser sends the attacker's name as Host, with
    // whatever it can attach; refused even with a valid token.
    let port = api.http.port();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".to_owned(),
        format!("127.0.0.1.nip.io:{port}"),
        "localhost:8080@evil".to_owned(),
    ] {
        let (s, _, body) = api
            .request_with(
                Method::GET,
                "/api/v1/alerts",
                None,
                &[("host", &host), ("authorization", &r)],
            )
            .await;
        assert_eq!(s, StatusCode::MISDIRECTED_REQUEST, "{host}: {body}");
        let (s, _, _) = api
            .request_with(Method::GET, "/", None, &[("host", &host)])
            .await;
        assert_eq!(s, StatusCode::MISDIRECTED_REQUEST, "page via {host}");
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let (s, _, _) = api
            .request_with(
                Method::GET,
                "/api/v1/alerts",
                None,
                &[("host", &host), ("authorization", &r)],
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{host}");
    }
    // Probes carry the pod IP as Host: health stays reachable.
    let (s, _, _) = api
        .request_with(Method::GET, "/readyz", None, &[("host", "10.1.2.3:8080")])
        .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn catch_all_and_unbounded_suppressions_are_refused() {
    let api = Api::start().await;
    let far = (Utc::now() + Duration::days(31)).to_rfc3339();
    let soon = (Utc::now() + Duration::days(1)).to_rfc3339();
    let cases = [
        // The issue's attack, now even with a responder token.
        (
            json!({"owner": "x", "reason": "x", "expires": "9999-01-01T00:00:00Z", "match": {"username": "*"}}),
            "catch-all",
        ),
        (
            json!({"owner": "x", "reason": "x", "expires": soon, "match": {"username": "*"}}),
            "catch-all",
        ),
        (
            json!({"owner": "x", "reason": "x", "expires": soon, "match": {"source_cidr": "0.0.0.0/0"}}),
            "catch-all",
        ),
        (
            json!({"owner": "x", "reason": "x", "expires": soon, "match": {"source_cidr": "::/0", "username": "**"}}),
            "catch-all",
        ),
        (
            json!({"owner": "x", "reason": "x", "expires": far, "match": {"username": "eve"}}),
            "max_suppression",
        ),
        (
            json!({"owner": "x", "reason": "x", "match": {"username": "eve"}}),
            "expires",
        ),
    ];
    let r = bearer(RESPONDER_TOKEN);
    for (body, needle) in cases {
        let (s, _, text) = api
            .request_with(
                Method::POST,
                "/api/v1/suppressions",
                Some(body.to_string()),
                &[("authorization", &r), ("content-type", "application/json")],
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(needle), "{body}: {text} should say {needle}");
    }
    assert_eq!(suppression_count(&api).await, 0);
    // And so the next critical grant is raised, not silenced.
    let raised = api
        .ingest(vec![grant_to_anonymous(
            "aud-crit",
            "crit-b",
            "mallory",
            "127.0.66.9",
            base_time(),
        )])
        .await;
    assert_eq!(raised, 1);
}

#[tokio::test]
async fn suppression_hits_are_in_the_api_and_metrics() {
    let api = Api::start().await;
    let body = json!({
        "owner": "soc", "reason": "drill INC-8",
        "expires": (Utc::now() + Duration::days(2)).to_rfc3339(),
        "match": {"username": "eve", "analytic": "AN1579"}
    });
    let (s, _, body) = api
        .request(Method::POST, "/api/v1/suppressions", Some(body.to_string()))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let raised = api
        .ingest(vec![
            grant_to_anonymous("h-1", "b-1", "eve", "127.0.66.1", base_time()),
            grant_to_anonymous(
                "h-2",
                "b-2",
                "eve",
                "127.0.66.1",
                base_time() + Duration::minutes(1),
            ),
        ])
        .await;
    assert_eq!(raised, 0, "both silenced");
    let list = api.get_json("/api/v1/suppressions", StatusCode::OK).await;
    assert_eq!(list["suppressions"][0]["hits"], 2);
    let (_, text) = api.get("/metrics").await;
    let want = format!("credtrail_suppression_hits{{id=\"{id}\",origin=\"api\"}} 2");
    assert!(text.contains(&want), "{want} missing:\n{text}");
}

#[tokio::test]
async fn grpc_needs_a_token_and_the_responder_role_to_write() {
    let api = Api::start().await;
    let mut anon = api.grpc_client_as(None).await;
    let e = anon
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let e = anon
        .stream_alerts(pb::StreamAlertsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let create = || pb::CreateSuppressionRequest {
        owner: "soc".into(),
        reason: "drill".into(),
        expires: Some(prost_types::Timestamp {
            seconds: (Utc::now() + Duration::days(1)).timestamp(),
            nanos: 0,
        }),
        r#match: Some(pb::SuppressionMatch {
            username: Some("eve".into()),
            ..Default::default()
        }),
    };
    let e = anon.create_suppression(create()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e}");
    let e = anon
        .delete_suppression(pb::DeleteSuppressionRequest { id: "api-x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut wrong = api.grpc_client_as(Some("not-a-token")).await;
    let e = wrong
        .list_nodes(pb::ListNodesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(!e.message().contains("not-a-token"));

    let mut viewer = api.grpc_client_as(Some(VIEWER_TOKEN)).await;
    viewer
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .expect("a viewer reads");
    let e = viewer.create_suppression(create()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let mut responder = api.grpc_client_as(Some(RESPONDER_TOKEN)).await;
    let s = responder
        .create_suppression(create())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.created_by, "token:responder");
    // The catch-all is refused over gRPC too.
    let mut all = create();
    all.r#match = Some(pb::SuppressionMatch {
        username: Some("*".into()),
        ..Default::default()
    });
    let e = responder.create_suppression(all).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("catch-all"), "{e}");
}

/// A `MakeWriter` that keeps everything logged.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_never_reach_logs_or_answers() {
    let log = Captured::default();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(log.clone())
        .finish();
    // Current-thread runtime: the server's tasks log on this thread.
    let _guard = tracing::subscriber::set_default(sub);
    let api = Api::start().await;
    let secret = "wrong-secret-4f1c9e7a2b";
    let mut answers = String::new();
    for (m, path, h) in [
        (Method::GET, "/api/v1/alerts", format!("Bearer {secret}")),
        (
            Method::GET,
            "/api/v1/alerts",
            format!("bearer {VIEWER_TOKEN}"),
        ),
        (
            Method::POST,
            "/api/v1/suppressions",
            format!("Bearer {VIEWER_TOKEN}"),
        ),
        (
            Method::POST,
            "/api/v1/suppressions",
            format!("Bearer {RESPONDER_TOKEN}"),
        ),
    ] {
        let (_, _, body) = api
            .request_with(m, path, Some("{}".into()), &[("authorization", &h)])
            .await;
        answers.push_str(&body);
    }
    let mut c = api.grpc_client_as(Some("wrong-grpc-secret-77aa")).await;
    let e = c
        .list_alerts(pb::ListAlertsRequest::default())
        .await
        .unwrap_err();
    answers.push_str(e.message());
    let (_, metrics) = api.get("/metrics").await;
    answers.push_str(&metrics);
    let logged = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    for t in [
        secret,
        VIEWER_TOKEN,
        RESPONDER_TOKEN,
        ADMIN_TOKEN,
        "wrong-grpc-secret-77aa",
    ] {
        assert!(!logged.contains(t), "a token was logged:\n{logged}");
        assert!(!answers.contains(t), "a token was answered:\n{answers}");
    }
    let _ = std::io::stderr().flush();
}

#[tokio::test]
async fn serve_refuses_a_query_listener_nobody_can_use() {
    let dir = tempfile::tempdir().unwrap();
    let base = |api: &str| ServeConfig {
        db: dir.path().join("agg.db"),
        db_synchronous: Synchronous::Normal,
        policy: None,
        retention: None,
        webhook_listen: None,
        webhook_tls: None,
        webhook_token_file: None,
        webhook_body_limit: 1 << 20,
        webhook_client_subjects: vec![],
        audit_log_paths: vec![],
        cloud: Default::default(),
        agent_listen: None,
        agent_tls: None,
        api_listen: Some(api.parse().unwrap()),
        agent_identity: Default::default(),
        grpc_listen: None,
        api_auth: Default::default(),
        limits: Default::default(),
    };
    let e = serve(base("127.0.0.1:0"), async {}).await.unwrap_err();
    assert!(e.to_string().contains("--api-token-file"), "{e:#}");
    let mut insecure = base("0.0.0.0:0");
    insecure.api_auth.insecure_no_auth = true;
    let e = serve(insecure, async {}).await.unwrap_err();
    assert!(e.to_string().contains("not a loopback"), "{e:#}");
}
