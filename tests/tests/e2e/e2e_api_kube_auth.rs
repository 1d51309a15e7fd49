//! The query API in `--api-kube-auth` mode against the real API-server
//! simulator over HTTPS: bearer tokens are checked with `TokenReview`, each
//! access with `SubjectAccessReview` on `alerts.credtrail.io`, so the
//! simulator's RBAC table decides who reads and who triages. The
//! aggregator calls the simulator with its own ServiceAccount token and
//! needs `create` on both review resources. No privileges needed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use credtrail_aggregator::auth::config::ApiAuthConfig;
use credtrail_aggregator::auth::kube::KubeConfig;
use credtrail_aggregator::server::{ServeConfig, serve};
use credtrail_aggregator::store::Synchronous;
use credtrail_tests::apisim::{self, rbac::Rbac, rbac::Rule, token};
use credtrail_tests::certs::Pki;
use credtrail_tests::demo::report;
use credtrail_tests::harness::free_port;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

fn sa_token(issuer: &token::Issuer, ns: &str, sa: &str) -> String {
    issuer
        .mint(&token::TokenSpec {
            namespace: ns.into(),
            service_account: sa.into(),
            pod: None,
            node: None,
            lifetime_secs: 600,
        })
        .0
}

/// One HTTP request to the aggregator's API: status and body.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let resp = send
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

async fn start_aggregator(
    dir: &std::path::Path,
    kube: KubeConfig,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let api = free_port([127, 0, 0, 1]);
    let cfg = ServeConfig {
        db: dir.join("db"),
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
        api_listen: Some(api),
        agent_identity: Default::default(),
        grpc_listen: None,
        api_auth: ApiAuthConfig {
            kube: Some(kube),
            ..Default::default()
        },
        limits: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(cfg, async move {
        let _ = stopped.await;
    }));
    for _ in 0..100 {
        if let Ok((200, _)) = report::http_get(api, "/healthz").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (api, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_review_mode_lets_the_clusters_rbac_decide() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["127.0.0.1"]).unwrap();
    let paths = pki.write(dir.path()).unwrap();
    let issuer = token::Issuer::new();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let mut rbac = Rbac::default();
    rbac.rules.extend([
        // What the chart grants the aggregator (system:auth-delegator).
        Rule {
            binding: "credtrail-aggregator-auth-delegator",
            role: "system:auth-delegator",
            users: s(&["system:serviceaccount:credtrail:aggregator"]),
            groups: vec![],
            verbs: vec!["create"],
            resources: vec!["tokenreviews", "subjectaccessreviews"],
        },
        // The chart's credtrail-viewer / credtrail-responder ClusterRoles, bound.
        Rule {
            binding: "soc-viewers",
            role: "credtrail-viewer",
            users: s(&["system:serviceaccount:soc:viewer"]),
            groups: vec![],
            verbs: vec!["get"],
            resources: vec!["alerts.credtrail.io"],
        },
        Rule {
            binding: "soc-responders",
            role: "credtrail-responder",
            users: s(&["system:serviceaccount:soc:responder"]),
            groups: vec![],
            verbs: vec!["get", "update"],
            resources: vec!["alerts.credtrail.io"],
        },
    ]);
    let sim = apisim::start(apisim::ApiSimConfig {
        listen: free_port([127, 0, 0, 1]),
        public_listen: None,
        cert_pem: pki.server.cert_pem.clone(),
        key_pem: pki.server.key_pem.clone(),
        client_ca_pem: pki.cluster_ca.cert_pem(),
        issuer: issuer.clone(),
        rbac,
        webhook: None,
        audit_log: None,
    })
    .await
    .unwrap();
    let own = dir.path().join("aggregator-token");
    std::fs::write(&own, sa_token(&issuer, "credtrail", "aggregator")).unwrap();
    let kube = |token_file| KubeConfig {
        server: format!("https://{}", sim.addr),
        ca: paths.server_ca.clone(),
        token_file,
        namespace: Some("credtrail".into()),
    };
    let (api, stop) = start_aggregator(dir.path(), kube(own.clone())).await;

    let viewer = sa_token(&issuer, "soc", "viewer");
    let responder = sa_token(&issuer, "soc", "responder");
    let stranger = sa_token(&issuer, "shop", "web");
    let forged = format!("{viewer}x");
    let expires = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let sup = json!({"owner": "soc", "reason": "drill", "expires": expires,
                     "match": {"username": "eve", "analytic": "AN1579"}});

    assert_eq!(call(api, "GET", "/api/v1/alerts", None, None).await.0, 401);
    let (code, body) = call(api, "GET", "/api/v1/alerts", Some(&forged), None).await;
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains(&forged));
    let (code, body) = call(api, "GET", "/api/v1/alerts", Some(&viewer), None).await;
    assert_eq!(code, 200, "{body}");
    // Authenticated, but no binding on alerts.credtrail.io.
    let (code, body) = call(api, "GET", "/api/v1/alerts", Some(&stranger), None).await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = call(
        api,
        "POST",
        "/api/v1/suppressions",
        Some(&viewer),
        Some(sup.clone()),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let (code, body) = call(
        api,
        "POST",
        "/api/v1/suppressions",
        Some(&responder),
        Some(sup.clone()),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["created_by"], "kube:system:serviceaccount:soc:responder");

    // The simulator saw the aggregator's reviews, made with its own identity,
    // and its audit events hold no token.
    let events = sim.events();
    let reviews: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["objectRef"]["resource"] == "tokenreviews"
                || e["objectRef"]["resource"] == "subjectaccessreviews"
        })
        .collect();
    assert!(reviews.len() >= 4, "{reviews:?}");
    assert!(
        reviews
            .iter()
            .all(|e| e["user"]["username"] == "system:serviceaccount:credtrail:aggregator")
    );
    let all = serde_json::to_string(&events).unwrap();
    for t in [&viewer, &responder, &stranger] {
        assert!(!all.contains(t.as_str()), "a token reached the audit log");
    }
    let _ = stop.send(());

    // An aggregator whose ServiceAccount may not create TokenReviews lets
    // nobody in (503, never a fallback to "allowed").
    let dir2 = tempfile::tempdir().unwrap();
    let other = dir2.path().join("token");
    std::fs::write(&other, sa_token(&issuer, "credtrail", "not-bound")).unwrap();
    let (api2, stop2) = start_aggregator(dir2.path(), kube(other)).await;
    let (code, body) = call(api2, "GET", "/api/v1/alerts", Some(&viewer), None).await;
    assert_eq!(code, 503, "{body}");
    let _ = stop2.send(());
    sim.shutdown().await;
}
