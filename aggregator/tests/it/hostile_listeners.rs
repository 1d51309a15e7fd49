//! Listeners that outlast hostile clients (issue 8, Deliver 4 and 5), attacked
//! for real on loopback through `server::serve`: silent TCP clients, partial
//! TLS handshakes, partial HTTP headers and HTTP/2 prefaces, slow bodies, a
//! full connection cap, and 30 concurrent `?node=` queries while `/readyz`
//! answers. The fd-exhaustion and SIGTERM cases run the real binary in a
//! child process (`hostile_process.rs`).

use crate::api_support::{BUILDER, VIEWER_TOKEN, base_time, token_file_text, token_used};
use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::tls::{Pki, client_config, pki};
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::server::{ServeConfig, ServeLimits, serve};
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

struct Running {
    webhook: SocketAddr,
    agent: SocketAddr,
    api: SocketAddr,
    grpc: SocketAddr,
    pki: Pki,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start(limits: ServeLimits) -> Self {
        Self::start_on(tempfile::tempdir().unwrap(), limits).await
    }

    async fn start_on(dir: tempfile::TempDir, limits: ServeLimits) -> Self {
        // The ports are picked free, then bound by `serve`: in between, a
        // client of another test running in parallel can take one as its
        // own local port. A `serve` that ended before its listeners came up
        // is retried on new ports; its error is shown if every try fails.
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start(&dir, limits).await {
                Ok(parts) => return parts.into_running(dir),
                Err(e) => last = e,
            }
        }
        panic!("serve did not come up in 5 tries: {last}");
    }

    async fn try_start(dir: &tempfile::TempDir, limits: ServeLimits) -> Result<Started, String> {
        let (pki, tls) = pki(dir.path());
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "tok-123\n").unwrap();
        let api_tokens = dir.path().join("api-tokens");
        std::fs::write(&api_tokens, token_file_text()).unwrap();
        let agent_tls = (
            tls.cert.clone(),
            tls.key.clone(),
            tls.client_ca.clone().unwrap(),
        );
        let (webhook, agent, api, grpc) = (free_port(), free_port(), free_port(), free_port());
        let cfg = ServeConfig {
            db: dir.path().join("agg.db"),
            db_synchronous: Synchronous::Normal,
            policy: None,
            retention: None,
            webhook_listen: Some(webhook),
            webhook_tls: Some(tls),
            webhook_token_file: Some(token_file),
            webhook_body_limit: 1 << 20,
            webhook_client_subjects: vec![],
            audit_log_paths: vec![],
            cloud: Default::default(),
            agent_listen: Some(agent),
            agent_tls: Some(agent_tls),
            api_listen: Some(api),
            agent_identity: Default::default(),
            grpc_listen: Some(grpc),
            api_auth: credtrail_aggregator::auth::config::ApiAuthConfig {
                token_file: Some(api_tokens),
                ..Default::default()
            },
            limits,
        };
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve(cfg, async {
            let _ = rx.await;
        }));
        let deadline = Instant::now() + Duration::from_secs(15);
        for a in [webhook, agent, api, grpc] {
            while TcpStream::connect(a).await.is_err() {
                if task.is_finished() {
                    let why = match task.await {
                        Ok(Err(e)) => format!("{e:#}"),
                        Ok(Ok(())) => "serve returned".to_owned(),
                        Err(e) => format!("serve panicked: {e}"),
                    };
                    return Err(why);
                }
                assert!(
                    Instant::now() < deadline,
                    "listener {a} did not come up within 15 s (serve still running)"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(Started {
            webhook,
            agent,
            api,
            grpc,
            pki,
            stop,
            task,
        })
    }
}

/// A `serve` whose four listeners answer (before it owns its directory).
struct Started {
    webhook: SocketAddr,
    agent: SocketAddr,
    api: SocketAddr,
    grpc: SocketAddr,
    pki: Pki,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Started {
    fn into_running(self, dir: tempfile::TempDir) -> Running {
        Running {
            webhook: self.webhook,
            agent: self.agent,
            api: self.api,
            grpc: self.grpc,
            pki: self.pki,
            stop: Some(self.stop),
            task: self.task,
            _dir: dir,
        }
    }
}

impl Running {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("serve stops within its shutdown grace")
            .unwrap()
            .unwrap();
    }
}

fn short() -> ServeLimits {
    ServeLimits {
        handshake_timeout: Duration::from_secs(1),
        header_timeout: Duration::from_secs(1),
        body_timeout: Some(Duration::from_secs(1)),
        shutdown_grace: Duration::from_secs(2),
        ..ServeLimits::default()
    }
}

/// Reads until the server closes the connection; panics if it is still open
/// after `within`. Returns what the server sent.
async fn closed_within<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    within: Duration,
    what: &str,
) -> Vec<u8> {
    let mut out = Vec::new();
    let r = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(r.is_ok(), "{what}: still connected after {within:?}");
    out
}

/// `GET path` over a fresh connection; (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    get_within(addr, path, Duration::from_secs(10)).await
}

async fn get_within(addr: SocketAddr, path: &str, within: Duration) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {VIEWER_TOKEN}\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(within, s.read_to_end(&mut out))
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no answer within {within:?}"))
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: not HTTP: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn metric(text: &str, name_and_labels: &str) -> u64 {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_partial_clients_are_disconnected_within_the_timeouts() {
    let r = Running::start(short()).await;
    let within = Duration::from_secs(5);
    let mut clients = Vec::new();
    // 1. Raw TCP clients that send nothing, on every listener.
    for (name, addr) in [
        ("webhook", r.webhook),
        ("agent", r.agent),
        ("http_api", r.api),
        ("grpc_api", r.grpc),
    ] {
        clients.push((
            format!("silent client on {name}"),
            TcpStream::connect(addr).await.unwrap(),
        ));
    }
    // 2. Partial TLS handshakes: a record header promising a ClientHello that never comes.
    for (name, addr) in [("webhook", r.webhook), ("agent", r.agent)] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        clients.push((format!("partial TLS handshake on {name}"), s));
    }
    // 3. Partial HTTP headers on the API; a partial HTTP/2 preface on gRPC.
    let mut s = TcpStream::connect(r.api).await.unwrap();
    s.write_all(b"GET /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    clients.push(("partial HTTP headers on the API".into(), s));
    let mut s = TcpStream::connect(r.grpc).await.unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    clients.push(("partial HTTP/2 preface on gRPC".into(), s));

    let started = Instant::now();
    let checks = clients.into_iter().map(|(what, mut s)| async move {
        closed_within(&mut s, within, &what).await;
    });
    futures::future::join_all(checks).await;
    assert!(started.elapsed() < within + Duration::from_secs(1));

    // 4. A slow body: authenticated, headers complete, then a trickle.
    let tcp = TcpStream::connect(r.webhook).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&r.pki, false))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        b"POST /audit HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok-123\r\n\
          Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"kind\":",
    )
    .await
    .unwrap();
    let trickle = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if tls.write_all(b" ").await.is_err() {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(2), trickle)
        .await
        .ok();
    let answer = closed_within(&mut tls, within, "slow body on the webhook").await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    // Every drop is counted per listener.
    let (status, m) = get(r.api, "/metrics").await;
    assert_eq!(status, 200);
    for (listener, reason) in [
        ("webhook", "handshake_timeout"),
        ("agent", "handshake_timeout"),
        ("http_api", "header_timeout"),
        ("grpc_api", "header_timeout"),
    ] {
        let line = format!(
            "credtrail_connections_dropped_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
        );
        assert!(metric(&m, &line) >= 1, "{line} not counted:\n{m}");
    }
    assert!(
        metric(
            &m,
            "credtrail_rejected_total{source=\"webhook\",reason=\"body_timeout\"}"
        ) >= 1,
        "{m}"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_connection_cap_queues_clients_while_healthz_answers() {
    let r = Running::start(ServeLimits {
        max_connections: 3,
        handshake_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(30),
        ..short()
    })
    .await;
    // Three idle clients take the webhook's three slots.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(TcpStream::connect(r.webhook).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fourth client connects (the kernel's backlog) but is not served.
    let cfg = client_config(&r.pki, false);
    let addr = r.webhook;
    let fourth = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        tokio_rustls::TlsConnector::from(cfg)
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .map(|_| ())
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!fourth.is_finished(), "a client beyond the cap was served");
    // The API listener has its own slots: health and metrics still answer.
    assert_eq!(get(r.api, "/healthz").await.0, 200);
    assert_eq!(get(r.api, "/readyz").await.0, 200);
    let m = get(r.api, "/metrics").await.1;
    assert_eq!(
        metric(&m, "credtrail_connections{listener=\"webhook\"}"),
        3,
        "{m}"
    );
    // One idle client leaves: the queued one is served.
    drop(idle.pop());
    tokio::time::timeout(Duration::from_secs(5), fourth)
        .await
        .expect("the queued client is served once a slot frees")
        .unwrap()
        .expect("TLS handshake");
    drop(idle);
    r.stop().await;
}

/// Fills a database with `n` copies of one real alert, each naming `node`.
async fn seed_alerts(db: &std::path::Path, node: &str, n: u32) {
    let store = Store::open(db, Synchronous::Normal).unwrap();
    let state = AppState::new(
        store.clone(),
        crate::api_support::cluster_policy(""),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let ev: credtrail_aggregator::audit::AuditEvent =
        serde_json::from_value(token_used("seed", &BUILDER, "127.0.99.1", base_time())).unwrap();
    let r = state
        .pipeline
        .ingest_audit_batch("webhook", vec![ev])
        .await
        .unwrap();
    assert_eq!(r.alerts.len(), 1, "the seed event alerts");
    let node = node.to_owned();
    store
        .write(move |tx| {
            tx.execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?1)
                 INSERT INTO alerts(id, time, time_ms, rule, analytic, severity, severity_rank,
                     username, credential_id, source_ip, source_class, node, namespace,
                     suppressed_by, created_ms, json)
                 SELECT a.id || '-' || c.x, a.time, a.time_ms - c.x, a.rule, a.analytic, a.severity,
                     a.severity_rank, a.username, a.credential_id, a.source_ip, a.source_class,
                     a.node, a.namespace, a.suppressed_by, a.created_ms, a.json
                 FROM alerts a, c",
                [n],
            )?;
            tx.execute(
                "INSERT OR IGNORE INTO alert_nodes(node, seq) SELECT ?1, seq FROM alerts",
                [&node],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    drop(state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_answers_while_thirty_node_queries_are_queued() {
    let dir = tempfile::tempdir().unwrap();
    seed_alerts(&dir.path().join("agg.db"), "node-x", 10_000).await;
    let r = Running::start_on(
        dir,
        ServeLimits {
            query_readers: 2,
            ..ServeLimits::default()
        },
    )
    .await;
    let done = Arc::new(AtomicUsize::new(0));
    let api = r.api;
    let queries: Vec<_> = (0..30)
        .map(|_| {
            let done = done.clone();
            tokio::spawn(async move {
                let (status, body) = get_within(
                    api,
                    "/api/v1/alerts?node=node-x&page_size=200&include_suppressed=true",
                    Duration::from_secs(120),
                )
                .await;
                assert_eq!(status, 200, "{body}");
                done.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = get(r.api, "/readyz").await;
    let finished = done.load(Ordering::SeqCst);
    assert_eq!(status, 200, "{body}");
    assert!(
        finished < 30,
        "/readyz answered only after all 30 queries: it waited behind them"
    );
    for q in queries {
        tokio::time::timeout(Duration::from_secs(120), q)
            .await
            .expect("queries finish")
            .unwrap();
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_outlive_the_header_timeout_and_end_at_shutdown() {
    let r = Running::start(short()).await;
    let mut live = TcpStream::connect(r.api).await.unwrap();
    live.write_all(
        format!(
            "GET /api/v1/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {VIEWER_TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut head = [0u8; 12];
    crate::common::wait::within(
        "the live stream's response head",
        crate::common::wait::SOON,
        live.read_exact(&mut head),
    )
    .await
    .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    // Three header timeouts later, the stream is still open: the timeout
    // covers waiting for a request, not a response being streamed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut buf = [0u8; 1024];
    let mut open = true;
    // Drain what was sent (keep-alives), for at most 2 s.
    let drain_until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < drain_until
        && let Ok(r) = tokio::time::timeout(Duration::from_millis(200), live.read(&mut buf)).await
    {
        if matches!(r, Ok(0) | Err(_)) {
            open = false;
            break;
        }
    }
    assert!(open, "the live stream was cut by the header timeout");
    // Shutdown ends it within the grace.
    let stop = tokio::spawn(r.stop());
    closed_within(&mut live, Duration::from_secs(5), "live stream at shutdown").await;
    stop.await.unwrap();
}

/// A TCP connection from the loopback address `src` (another "host").
async fn connect_from(src: &str, to: SocketAddr) -> TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.bind(format!("{src}:0").parse().unwrap()).unwrap();
    s.connect(to).await.unwrap()
}

/// Completes a TLS handshake with `to` within 5 s (the client was given a slot).
async fn handshake_within(pki: &Pki, src: &str, to: SocketAddr, what: &str) {
    let tcp = connect_from(src, to).await;
    let tls = tokio_rustls::TlsConnector::from(client_config(pki, true))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp);
    tokio::time::timeout(Duration::from_secs(5), tls)
        .await
        .unwrap_or_else(|_| panic!("{what}: no TLS handshake within 5 s (no slot)"))
        .unwrap_or_else(|e| panic!("{what}: TLS handshake failed: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_source_cannot_take_every_slot_and_agents_have_their_own_cap() {
    let r = Running::start(ServeLimits {
        max_connections: 4,
        agent_max_connections: 8,
        max_connections_per_ip: 2,
        handshake_timeout: Duration::from_secs(30),
        header_timeout: Duration::from_secs(30),
        ..short()
    })
    .await;
    // A hostile host opens idle connections to the webhook: it keeps two;
    // every further one is closed at once instead of queueing.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(connect_from("127.0.0.66", r.webhook).await);
    }
    for i in 0..5 {
        let mut extra = connect_from("127.0.0.66", r.webhook).await;
        closed_within(
            &mut extra,
            Duration::from_secs(3),
            &format!("connection {} from the capped source", i + 3),
        )
        .await;
    }
    // The API server (another source) still gets a slot at once.
    handshake_within(&r.pki, "127.0.0.1", r.webhook, "the API server").await;
    let m = get(r.api, "/metrics").await.1;
    assert!(
        metric(
            &m,
            "credtrail_connections_dropped_total{listener=\"webhook\",reason=\"per_ip_cap\"}"
        ) >= 5,
        "{m}"
    );
    // The agent listener has its own, larger cap and no per-source cap
    // (many nodes' pods may share one IPv6 /64): six idle agents from one
    // source do not stop a seventh from that source, although the other
    // listeners' cap is 4 and their per-source cap 2.
    let mut agents = Vec::new();
    for _ in 0..6 {
        agents.push(connect_from("127.0.1.1", r.agent).await);
    }
    handshake_within(&r.pki, "127.0.1.1", r.agent, "the seventh agent").await;
    drop((held, agents));
    r.stop().await;
}
