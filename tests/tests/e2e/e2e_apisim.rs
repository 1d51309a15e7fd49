//! The API-server simulator over real HTTPS, delivering to the aggregator's
//! real audit webhook: authentication by client certificate and by issued
//! bearer token (with the `user.extra` a 1.30+ API server writes), 401 for a
//! forged token, 403 from the RBAC table, `sourceIPs` with the real peer
//! last, and `EventList` batches no larger than the configured batch size.
//! No privileges needed.

use std::time::Duration;

use credtrail_aggregator::ingest::tls::TlsPaths;
use credtrail_aggregator::server::{ServeConfig, serve};
use credtrail_aggregator::store::Synchronous;
use credtrail_tests::apisim::{self, audit, https, rbac::Rbac, token};
use credtrail_tests::certs::Pki;
use credtrail_tests::demo::report;
use credtrail_tests::harness::free_port;
use sha2::Digest as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_become_audit_events_batched_to_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(&["127.0.0.1", "127.10.0.2"]).unwrap();
    let paths = pki.write(dir.path()).unwrap();
    let hook_client = pki.cluster_ca.client("kube-apiserver", &[]).unwrap();
    let alice = pki.cluster_ca.client("alice", &["sre"]).unwrap();

    // The aggregator: webhook and HTTP API only.
    let webhook = free_port([127, 0, 0, 1]);
    let api = free_port([127, 0, 0, 1]);
    let cfg = ServeConfig {
        db: dir.path().join("db"),
        db_synchronous: Synchronous::Normal,
        policy: None,
        retention: None,
        webhook_listen: Some(webhook),
        webhook_tls: Some(TlsPaths {
            cert: paths.server_cert.clone(),
            key: paths.server_key.clone(),
            client_ca: Some(paths.cluster_ca.clone()),
        }),
        webhook_token_file: None,
        webhook_body_limit: 32 << 20,
        webhook_client_subjects: Vec::new(),
        audit_log_paths: vec![],
        cloud: Default::default(),
        agent_listen: None,
        agent_tls: None,
        api_listen: Some(api),
        agent_identity: Default::default(),
        grpc_listen: None,
        // Only /healthz and /metrics are read here (open); loopback only.
        api_auth: credtrail_aggregator::auth::config::ApiAuthConfig {
            insecure_no_auth: true,
            ..Default::default()
        },
        limits: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agg = tokio::spawn(serve(cfg, async move {
        let _ = stopped.await;
    }));
    for _ in 0..100 {
        if let Ok((200, _)) = report::http_get(api, "/healthz").await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let issuer = token::Issuer::new();
    let server_ca = pki.server_ca.cert_pem();
    let sim = apisim::start(apisim::ApiSimConfig {
        listen: free_port([127, 10, 0, 2]),
        public_listen: None,
        cert_pem: pki.server.cert_pem.clone(),
        key_pem: pki.server.key_pem.clone(),
        client_ca_pem: pki.cluster_ca.cert_pem(),
        issuer: issuer.clone(),
        rbac: Rbac::default(),
        webhook: Some(audit::WebhookConfig {
            path: "/audit".into(),
            target: https::Target {
                addr: webhook,
                server_name: "127.0.0.1".into(),
                tls: https::client_config(
                    &server_ca,
                    Some((&hook_client.cert_pem, &hook_client.key_pem)),
                )
                .unwrap(),
                bind: None,
            },
            batch_max: 2,
            batch_wait: Duration::from_millis(300),
        }),
        audit_log: None,
    })
    .await
    .unwrap();
    sim.objects
        .add_pod("shop", "web-1", "pod-uid-1", "node-a", "127.10.1.5");

    let target = |bind: [u8; 4], client: Option<(&str, &str)>| https::Target {
        addr: sim.addr,
        server_name: "127.10.0.2".into(),
        tls: https::client_config(&server_ca, client).unwrap(),
        bind: Some(std::net::IpAddr::from(bind)),
    };
    let (tok, claims) = issuer.mint(&token::TokenSpec {
        namespace: "shop".into(),
        service_account: "web".into(),
        pod: Some(token::Ref {
            name: "web-1".into(),
            uid: "pod-uid-1".into(),
        }),
        node: Some(token::Ref {
            name: "node-a".into(),
            uid: "node-uid-a".into(),
        }),
        lifetime_secs: 600,
    });
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];

    // 1. A pod's bound token, from the pod IP, with a client-set X-Forwarded-For.
    let mut h = bearer(&tok);
    h.push(("x-forwarded-for", "10.1.2.3".into()));
    let r = https::request(
        &target([127, 10, 1, 5], None),
        "GET",
        "/api/v1/namespaces/shop/pods",
        &h,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("pod-uid-1"));
    // 2. alice's client certificate: she may create bindings.
    let crb = br#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding","metadata":{"name":"b1"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"edit"},"subjects":[{"kind":"Group","name":"devs","apiGroup":"rbac.authorization.k8s.io"}]}"#;
    let path = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings";
    let alice_t = target([127, 66, 0, 9], Some((&alice.cert_pem, &alice.key_pem)));
    let r = https::request(&alice_t, "POST", path, &[], Some(crb.to_vec()))
        .await
        .unwrap();
    assert_eq!(r.status, 201);
    // 3. The service account may not write bindings: 403.
    let r = https::request(
        &target([127, 10, 1, 5], None),
        "POST",
        path,
        &bearer(&tok),
        Some(crb.to_vec()),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 403);
    // 4. A token from another issuer: 401.
    let (forged, _) = token::Issuer::new().mint(&token::TokenSpec {
        namespace: "shop".into(),
        service_account: "web".into(),
        pod: None,
        node: None,
        lifetime_secs: 600,
    });
    let r = https::request(
        &target([127, 99, 0, 7], None),
        "GET",
        "/api",
        &bearer(&forged),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 401);
    // 5. Anonymous: /version is public, discovery is not.
    let anon = target([127, 99, 0, 7], None);
    let r = https::request(&anon, "GET", "/version", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r = https::request(&anon, "GET", "/apis", &[], None)
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // Every request was audited and delivered, in batches of at most 2.
    let mut delivered = false;
    for _ in 0..100 {
        if sim.audit.stats().events_sent == 6 {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = sim.audit.stats();
    assert!(delivered, "{stats:?}");
    assert!(stats.batches_sent >= 3, "{stats:?}");
    let ev = sim.events();
    assert_eq!(ev.len(), 6);
    for e in &ev {
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["stage"], "ResponseComplete");
        assert!(e["auditID"].as_str().unwrap().len() == 36);
    }
    let extra = &ev[0]["user"]["extra"];
    assert_eq!(ev[0]["user"]["username"], "system:serviceaccount:shop:web");
    assert_eq!(
        extra["authentication.kubernetes.io/credential-id"][0],
        format!("JTI={}", claims.jti)
    );
    assert_eq!(
        extra["authentication.kubernetes.io/pod-uid"][0],
        "pod-uid-1"
    );
    assert_eq!(extra["authentication.kubernetes.io/node-name"][0], "node-a");
    assert_eq!(
        ev[0]["sourceIPs"],
        serde_json::json!(["10.1.2.3", "127.10.1.5"])
    );
    assert_eq!(ev[0]["level"], "Metadata");
    let fp = hex::encode(sha2::Sha256::digest(&alice.der));
    assert_eq!(ev[1]["user"]["username"], "alice");
    assert_eq!(
        ev[1]["user"]["groups"],
        serde_json::json!(["sre", "system:authenticated"])
    );
    assert_eq!(
        ev[1]["user"]["extra"]["authentication.kubernetes.io/credential-id"][0],
        format!("X509SHA256={fp}")
    );
    assert_eq!(ev[1]["level"], "RequestResponse");
    assert_eq!(ev[1]["requestObject"]["roleRef"]["name"], "edit");
    assert_eq!(ev[1]["responseObject"]["metadata"]["name"], "b1");
    assert_eq!(
        ev[2]["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(ev[2]["responseStatus"]["code"], 403);
    assert_eq!(ev[3]["responseStatus"]["code"], 401);
    assert_eq!(ev[3]["user"], serde_json::json!({}));
    assert_eq!(ev[4]["sourceIPs"], serde_json::json!(["127.99.0.7"]));
    assert_eq!(ev[4]["user"]["username"], "system:anonymous");
    assert_eq!(ev[5]["responseStatus"]["code"], 403);

    // The aggregator stored them: its webhook accepted every batch.
    let (code, metrics) = report::http_get(api, "/metrics").await.unwrap();
    assert_eq!(code, 200);
    let accepted = metrics
        .lines()
        .find(|l| l.starts_with("credtrail_audit_events_total{") && l.contains("webhook"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(accepted, Some(6.0), "{metrics}");

    sim.shutdown().await;
    let _ = stop.send(());
    agg.await.unwrap().unwrap();
}
