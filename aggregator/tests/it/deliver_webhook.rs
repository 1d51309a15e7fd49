//! Webhook delivery against a local HTTP receiver (axum on loopback): the
//! three body shapes, retries on 5xx, no retry on 4xx, a timeout on a
//! receiver that never answers, the token from a file sent and never shown
//! in /metrics, and a full queue dropping its oldest alerts, counted.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use credtrail_aggregator::alert::Alert;
use credtrail_aggregator::deliver::{Deliveries, config};
use credtrail_aggregator::metrics::Metrics;

/// One request taken: path, Authorization header, JSON body.
type Got = (String, Option<String>, serde_json::Value);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Status codes to answer, in order; then 200.
    script: Arc<Mutex<Vec<u16>>>,
    hits: Arc<AtomicUsize>,
    /// Never answer (timeout test).
    hang: bool,
}

async fn hook(
    State(r): State<Receiver>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    r.hits.fetch_add(1, Ordering::SeqCst);
    if r.hang {
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let code = {
        let mut s = r.script.lock().unwrap();
        if s.is_empty() { 200 } else { s.remove(0) }
    };
    if code == 200 {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        let v = serde_json::from_slice(&body).expect("the body is JSON");
        r.got.lock().unwrap().push((uri.path().to_owned(), auth, v));
    }
    StatusCode::from_u16(code).unwrap()
}

async fn receiver(r: Receiver) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route("/{*path}", post(hook))
        .with_state(r);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

fn alerts(n: usize) -> Vec<Alert> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../eval/scenarios/an1547-zero-config-forged-xff");
    let base = credtrail_aggregator::eval::run_scenario(&dir).alerts;
    assert!(!base.is_empty(), "the scenario raised no alert");
    (0..n)
        .map(|i| {
            let mut a = base[i % base.len()].clone();
            a.id = format!("alert-{i}");
            a
        })
        .collect()
}

fn metric(m: &Metrics, name: &str, sink: &str) -> u64 {
    let text = m.encode();
    let key = format!("{name}{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not in /metrics"))
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "waited 5 s for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A receiver that never answers, and its address.
async fn hanging_receiver() -> (Receiver, std::net::SocketAddr) {
    let r = Receiver {
        hang: true,
        ..Default::default()
    };
    let addr = receiver(r.clone()).await;
    (r, addr)
}

fn start(yaml: &str) -> (Arc<Metrics>, Deliveries, tokio::sync::watch::Sender<bool>) {
    let sinks = config::parse(Path::new("outputs.yaml"), yaml).unwrap();
    let m = Arc::new(Metrics::new());
    let (tx, rx) = tokio::sync::watch::channel(false);
    let d = Deliveries::start(sinks, m.clone(), rx).unwrap();
    (m, d, tx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_post_json_slack_and_alertmanager_bodies_with_the_token_from_a_file() {
    let r = Receiver::default();
    let addr = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("token");
    std::fs::write(&tok, "hook-s3cret\n").unwrap();
    let yaml = format!(
        "sinks:
- {{name: json, type: webhook, url: 'http://{addr}/json', token_file: '{0}'}}
- {{name: ocsf, type: webhook, url: 'http://{addr}/ocsf', format: ocsf}}
- {{name: slack, type: webhook, url: 'http://{addr}/slack', body: slack}}
- {{name: am, type: webhook, url: 'http://{addr}/api/v2/alerts', body: alertmanager, token_file: '{0}', auth_scheme: Splunk}}
",
        tok.display()
    );
    let (m, d, _stop) = start(&yaml);
    let a = alerts(1).remove(0);
    d.offer(a.clone());
    until("4 deliveries", || r.got.lock().unwrap().len() == 4).await;
    let got = r.got.lock().unwrap().clone();
    let by = |p: &str| got.iter().find(|g| g.0 == p).unwrap().clone();
    let (_, auth, v) = by("/json");
    assert_eq!(auth.as_deref(), Some("Bearer hook-s3cret"));
    assert_eq!(v["id"], a.id.as_str());
    assert_eq!(v["rule"], a.rule.as_str());
    let (_, auth, v) = by("/ocsf");
    assert_eq!(auth, None);
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["finding_info"]["uid"], a.id.as_str());
    let (_, _, v) = by("/slack");
    assert!(v["text"].as_str().unwrap().contains(&a.rule));
    assert!(v["blocks"].is_array());
    let (_, auth, v) = by("/api/v2/alerts");
    assert_eq!(auth.as_deref(), Some("Splunk hook-s3cret"));
    assert_eq!(v[0]["labels"]["alert_id"], a.id.as_str());
    assert!(v[0]["startsAt"].is_string() && v[0]["generatorURL"].is_string());
    for s in ["json", "ocsf", "slack", "am"] {
        assert_eq!(metric(&m, "credtrail_delivery_sent_total", s), 1, "{s}");
    }
    assert!(!m.encode().contains("s3cret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_retries_5xx_and_gives_up_on_4xx() {
    let r = Receiver::default();
    r.script.lock().unwrap().extend([503, 500, 200, 400]);
    let addr = receiver(r.clone()).await;
    let yaml = format!(
        "sinks:\n- {{name: h, type: webhook, url: 'http://{addr}/x', backoff_initial: 50ms, max_attempts: 5}}\n"
    );
    let (m, d, _stop) = start(&yaml);
    let two = alerts(2);
    // First alert: 503, 500, then 200 (two retries). Second: 400, refused at once.
    d.offer(two[0].clone());
    until("the first alert", || {
        metric(&m, "credtrail_delivery_sent_total", "h") == 1
    })
    .await;
    d.offer(two[1].clone());
    until("the refusal", || {
        metric(&m, "credtrail_delivery_failed_total", "h") == 1
    })
    .await;
    assert_eq!(metric(&m, "credtrail_delivery_retries_total", "h"), 2);
    assert_eq!(
        r.hits.load(Ordering::SeqCst),
        4,
        "a 4xx must not be retried"
    );
    let got = r.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].2["id"], "alert-0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_that_never_answers_times_out_and_attempts_are_bounded() {
    let (r, addr) = hanging_receiver().await;
    let yaml = format!(
        "sinks:\n- {{name: slow, type: webhook, url: 'http://{addr}/x', timeout: 200ms, backoff_initial: 50ms, max_attempts: 3}}\n"
    );
    let (m, d, _stop) = start(&yaml);
    d.offer(alerts(1).remove(0));
    until("the give-up", || {
        metric(&m, "credtrail_delivery_failed_total", "slow") == 1
    })
    .await;
    assert_eq!(r.hits.load(Ordering::SeqCst), 3);
    assert_eq!(metric(&m, "credtrail_delivery_retries_total", "slow"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_the_oldest_alerts_and_counts_them() {
    let (r, addr) = hanging_receiver().await;
    let yaml = format!(
        "sinks:\n- {{name: q, type: webhook, url: 'http://{addr}/x', queue: 3, timeout: 60s, max_attempts: 1}}\n"
    );
    let (m, d, _stop) = start(&yaml);
    let many = alerts(10);
    d.offer(many[0].clone());
    // The worker holds alert 0 (the receiver hangs); the queue takes 3 of the other 9.
    until("the first attempt", || r.hits.load(Ordering::SeqCst) == 1).await;
    for a in &many[1..] {
        d.offer(a.clone());
    }
    assert_eq!(metric(&m, "credtrail_delivery_dropped_total", "q"), 6);
    assert_eq!(metric(&m, "credtrail_delivery_queue_depth", "q"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_outputs_pushes_alerts_raised_from_the_audit_log() {
    use credtrail_aggregator::server::{ServeConfig, ServeExtras, serve_with};
    use credtrail_aggregator::store::Synchronous;
    let r = Receiver::default();
    let addr = receiver(r.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../eval/scenarios/an1579-create-crb-cluster-admin-from-outside");
    let log = dir.path().join("audit.log");
    std::fs::copy(scenario.join("audit.jsonl"), &log).unwrap();
    let outputs = config::parse(
        Path::new("outputs.yaml"),
        &format!("sinks:\n- {{name: am, type: webhook, body: alertmanager, url: 'http://{addr}/api/v2/alerts'}}\n"),
    )
    .unwrap();
    let cfg = ServeConfig {
        db: dir.path().join("agg.db"),
        db_synchronous: Synchronous::Normal,
        policy: Some(scenario.join("policy.yaml")),
        retention: None,
        webhook_listen: None,
        webhook_tls: None,
        webhook_token_file: None,
        webhook_body_limit: 1 << 20,
        webhook_client_subjects: Vec::new(),
        audit_log_paths: vec![log],
        cloud: Default::default(),
        agent_listen: None,
        agent_tls: None,
        api_listen: None,
        grpc_listen: None,
        api_auth: Default::default(),
        agent_identity: Default::default(),
        limits: Default::default(),
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(cfg, ServeExtras { outputs }, async {
        let _ = rx.await;
    }));
    until("the alert pushed to Alertmanager", || {
        !r.got.lock().unwrap().is_empty()
    })
    .await;
    let got = r.got.lock().unwrap().clone();
    assert_eq!(got[0].0, "/api/v2/alerts");
    assert_eq!(got[0].2[0]["labels"]["rule"], "CT1579-001");
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(15), server)
        .await
        .expect("serve stops")
        .unwrap()
        .unwrap();
}

/// The receiver over HTTPS with the test PKI's server certificate.
async fn tls_receiver(
    r: Receiver,
    paths: &credtrail_aggregator::ingest::tls::TlsPaths,
) -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let server = credtrail_aggregator::ingest::tls::TlsPaths {
        client_ca: None,
        ..paths.clone()
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(
        credtrail_aggregator::ingest::tls::server_config(&server).unwrap(),
    );
    let app = axum::Router::new()
        .route("/{*path}", post(hook))
        .with_state(r);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhook_verifies_the_receiver_against_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_pki, paths) = crate::common::tls::pki(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_p2, other_paths) = crate::common::tls::pki(other.path());
    let r = Receiver::default();
    let addr = tls_receiver(r.clone(), &paths).await;
    let yaml = format!(
        "sinks:
- {{name: good, type: webhook, url: 'https://{addr}/ok', ca_file: '{}'}}
- {{name: wrong-ca, type: webhook, url: 'https://{addr}/bad', ca_file: '{}', max_attempts: 2, backoff_initial: 50ms}}
",
        paths.client_ca.as_ref().unwrap().display(),
        other_paths.client_ca.as_ref().unwrap().display(),
    );
    let (m, d, _stop) = start(&yaml);
    d.offer(alerts(1).remove(0));
    until("delivery over TLS", || {
        metric(&m, "credtrail_delivery_sent_total", "good") == 1
    })
    .await;
    until("the refused CA", || {
        metric(&m, "credtrail_delivery_failed_total", "wrong-ca") == 1
    })
    .await;
    let got = r.got.lock().unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].0, "/ok",
        "nothing may reach a receiver the CA does not vouch for"
    );
}
