//! Detection latency: from an audit batch being POSTed to the real HTTPS
//! webhook to its alert being seen on the query API's live stream
//! (`/api/v1/alerts/stream`, server-sent events), at a steady event rate.
//!
//! Everything is real and in-process on loopback: the webhook (TLS, bearer
//! token, `EventList` parsing), GC's pipeline (dedupe, detection, one SQLite
//! transaction per batch on a file database with `synchronous=FULL`), the
//! broadcast, and the HTTP API. Each batch carries one alerting event (a
//! ClusterRoleBinding granting `cluster-admin` to `system:anonymous`) among
//! benign ones (people reading pods, which never alert).
//!
//! Two phases in one run: a baseline at 1/10 of the rate, then the target
//! rate; it prints p50/p90/p99/max for both and their ratio.
//!
//! Run: `cargo bench -p credtrail-aggregator --bench latency`
//! Knobs (env): `CREDTRAIL_LATENCY_RATE` events/s (5000),
//! `CREDTRAIL_LATENCY_SECONDS` per phase (10), `CREDTRAIL_LATENCY_BATCH_MS`
//! batch interval (10), `CREDTRAIL_LATENCY_CONNECTIONS` webhook connections (4),
//! `CREDTRAIL_LATENCY_SYNC` `full` (default) or `normal` (SQLite synchronous).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use chrono::Utc;
use credtrail_aggregator::ingest::tls::{TlsPaths, server_config};
use credtrail_aggregator::ingest::webhook::{self, WebhookAuth};
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const TOKEN: &str = "latency-bench-token";

fn env_num(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

struct Servers {
    webhook: SocketAddr,
    api: SocketAddr,
    state: AppState,
    tls_client: Arc<rustls::ClientConfig>,
    _dir: tempfile::TempDir,
}

async fn start(sync: Synchronous) -> anyhow::Result<Servers> {
    let dir = tempfile::tempdir()?;
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()])?;
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.signing_key.serialize_pem())?;
    let tls = server_config(&TlsPaths {
        cert,
        key,
        client_ca: None,
    })?;

    let store = Store::open(&dir.path().join("credtrail.db"), sync)?;
    let state = AppState::new(store, Policy::default(), Arc::new(Metrics::new()))?;

    let wl = TcpListener::bind("127.0.0.1:0").await?;
    let webhook_addr = wl.local_addr()?;
    let auth = WebhookAuth::default().with_tokens([TOKEN]);
    let st = state.clone();
    tokio::spawn(async move {
        if let Err(e) = webhook::serve(
            wl,
            tls,
            auth,
            webhook::DEFAULT_BODY_LIMIT,
            st,
            std::future::pending(),
        )
        .await
        {
            eprintln!("webhook stopped: {e}");
        }
    });
    let al = TcpListener::bind("127.0.0.1:0").await?;
    let api_addr = al.local_addr()?;
    let st = state.clone();
    tokio::spawn(credtrail_aggregator::api::http::serve(
        al,
        st,
        std::future::pending(),
    ));

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone())?;
    let tls_client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Servers {
        webhook: webhook_addr,
        api: api_addr,
        state,
        tls_client: Arc::new(tls_client),
        _dir: dir,
    })
}

fn ts(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A person reading pods: never alerts (a human identity in its learning window).
fn benign(id: &str, k: u64) -> Value {
    let t = Utc::now();
    json!({
        "level": "Metadata", "auditID": id, "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/app/pods", "verb": "list",
        "user": {"username": format!("dev-{}", k % 20), "groups": ["developers", "system:authenticated"]},
        "sourceIPs": [format!("127.0.30.{}", 1 + k % 50)], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "pods", "namespace": "app", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}

/// `cluster-admin` granted to `system:anonymous`: a critical AN1579 alert.
fn alerting(id: &str) -> Value {
    let t = Utc::now();
    let b = json!({
        "kind": "ClusterRoleBinding", "apiVersion": "rbac.authorization.k8s.io/v1",
        "metadata": {"name": id},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:anonymous"}]
    });
    json!({
        "level": "RequestResponse", "auditID": id, "stage": "ResponseComplete",
        "requestURI": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "verb": "create",
        "user": {"username": "mallory", "groups": ["system:authenticated"]},
        "sourceIPs": ["127.0.66.6"], "userAgent": "kubectl/v1.31.0",
        "objectRef": {"resource": "clusterrolebindings", "name": id, "apiGroup": "rbac.authorization.k8s.io", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": b.clone(), "responseObject": b,
        "requestReceivedTimestamp": ts(t), "stageTimestamp": ts(t),
        "annotations": {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""}
    })
}

/// One batch: `n` events, the alerting one in the middle. Returns the body
/// and the alerting audit ID.
fn batch(phase: &str, seq: u64, n: u64) -> (Bytes, String) {
    let alert_id = format!("{phase}-alert-{seq}");
    let mut items = Vec::with_capacity(n as usize);
    for k in 0..n {
        if k == n / 2 {
            items.push(alerting(&alert_id));
        } else {
            items.push(benign(&format!("{phase}-{seq}-{k}"), seq * n + k));
        }
    }
    let body = json!({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": items});
    (Bytes::from(body.to_string()), alert_id)
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn webhook_connection(s: &Servers) -> anyhow::Result<Sender> {
    let tcp = TcpStream::connect(s.webhook).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
    let tls = tokio_rustls::TlsConnector::from(s.tls_client.clone())
        .connect(name, tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// POSTs one batch; returns once the webhook answered 200 (batch committed).
async fn post(sender: &mut Sender, body: Bytes) -> anyhow::Result<()> {
    sender.ready().await?;
    let req = hyper::Request::post("/audit")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Full::new(body))?;
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let text = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "webhook answered {status}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}

/// Reads the SSE stream; sends (audit ID, when seen) for every alert.
async fn observe(
    api: SocketAddr,
    seen: mpsc::UnboundedSender<(String, Instant)>,
) -> anyhow::Result<()> {
    let tcp = TcpStream::connect(api).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get("/api/v1/alerts/stream")
        .header("host", "bench")
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        bail!("stream answered {}", resp.status());
    }
    let mut body = resp.into_body();
    let mut buf = String::new();
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        let now = Instant::now();
        buf.push_str(std::str::from_utf8(&data)?);
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if block.contains("event: skipped") {
                bail!("the observer fell behind the live stream: {block}");
            }
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                let a: Value = serde_json::from_str(data)?;
                if let Some(id) = a["audit_ids"][0].as_str() {
                    let _ = seen.send((id.to_owned(), now));
                }
            }
        }
    }
    Ok(())
}

struct PhaseResult {
    latencies: Vec<Duration>,
    /// POST to the webhook's 200 (batch durably stored).
    acks: Vec<Duration>,
    events: u64,
    elapsed: Duration,
    missing: usize,
}

async fn phase(
    s: &Servers,
    name: &str,
    rate: u64,
    seconds: u64,
    batch_ms: u64,
    connections: usize,
) -> anyhow::Result<PhaseResult> {
    let per_batch = (rate * batch_ms / 1000).max(1);
    let batches = seconds * 1000 / batch_ms;
    let (seen_tx, mut seen_rx) = mpsc::unbounded_channel();
    let observer = tokio::spawn(observe(s.api, seen_tx));
    // Let the subscription settle before the first batch.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let (sent_tx, mut sent_rx) = mpsc::unbounded_channel::<(String, Instant, Duration)>();
    let start = Instant::now() + Duration::from_millis(50);
    let mut workers = Vec::new();
    for c in 0..connections {
        let mut sender = webhook_connection(s).await?;
        let sent = sent_tx.clone();
        let name = name.to_owned();
        workers.push(tokio::spawn(async move {
            let mut seq = c as u64;
            while seq < batches {
                let (body, alert_id) = batch(&name, seq, per_batch);
                tokio::time::sleep_until((start + Duration::from_millis(seq * batch_ms)).into())
                    .await;
                let t0 = Instant::now();
                post(&mut sender, body).await?;
                let _ = sent.send((alert_id, t0, t0.elapsed()));
                seq += connections as u64;
            }
            anyhow::Ok(())
        }));
    }
    drop(sent_tx);
    for w in workers {
        w.await??;
    }
    let elapsed = start.elapsed();
    let mut sent = HashMap::new();
    let mut acks = Vec::new();
    while let Some((id, t, ack)) = sent_rx.recv().await {
        sent.insert(id, t);
        acks.push(ack);
    }
    // Alerts are broadcast after the commit the webhook waited for; give the
    // stream a moment to deliver the last ones.
    let mut latencies = Vec::with_capacity(sent.len());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while latencies.len() < sent.len() {
        match tokio::time::timeout_at(deadline, seen_rx.recv()).await {
            Ok(Some((id, t))) => {
                if let Some(t0) = sent.get(&id) {
                    latencies.push(t.saturating_duration_since(*t0));
                }
            }
            Ok(None) => break,
            Err(_) => break,
        }
    }
    observer.abort();
    Ok(PhaseResult {
        acks,
        missing: sent.len() - latencies.len(),
        latencies,
        events: batches * per_batch,
        elapsed,
    })
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(name: &str, r: &mut PhaseResult) -> (Duration, Duration) {
    r.latencies.sort_unstable();
    let (p50, p90, p99) = (
        pct(&r.latencies, 50),
        pct(&r.latencies, 90),
        pct(&r.latencies, 99),
    );
    let max = r.latencies.last().copied().unwrap_or_default();
    r.acks.sort_unstable();
    println!(
        "{name:>9}: {:>6.0} events/s achieved, {} alerts timed, {} not seen | POST->alert on stream: p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms | POST->200: p50 {:>6.2} ms  p99 {:>7.2} ms",
        r.events as f64 / r.elapsed.as_secs_f64(),
        r.latencies.len(),
        r.missing,
        ms(p50),
        ms(p90),
        ms(p99),
        ms(max),
        ms(pct(&r.acks, 50)),
        ms(pct(&r.acks, 99)),
    );
    (p50, p99)
}

fn main() -> anyhow::Result<()> {
    let rate = env_num("CREDTRAIL_LATENCY_RATE", 5000)?;
    let seconds = env_num("CREDTRAIL_LATENCY_SECONDS", 10)?;
    let batch_ms = env_num("CREDTRAIL_LATENCY_BATCH_MS", 10)?.max(1);
    let connections = usize::try_from(env_num("CREDTRAIL_LATENCY_CONNECTIONS", 4)?)?.max(1);
    let sync = match std::env::var("CREDTRAIL_LATENCY_SYNC").as_deref() {
        Err(_) | Ok("full") => Synchronous::Full,
        Ok("normal") => Synchronous::Normal,
        Ok(other) => bail!("CREDTRAIL_LATENCY_SYNC={other:?}: expected full or normal"),
    };
    // The aggregator gets its own runtime (as its own process would); the load
    // generator and the stream reader run on another, so the client's work
    // does not queue in front of the server's tasks.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("aggregator")
        .build()?;
    let s = server_rt.block_on(start(sync))?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("client")
        .build()?;
    client_rt.block_on(async {
        // Benign events must not alert, or the figures would mean nothing.
        let (probe, _) = batch("probe", 0, 3);
        let probe_events = credtrail_aggregator::audit::parse_webhook_body(&probe)?;
        let benign_only: Vec<_> = probe_events.into_iter().filter(|e| !e.audit_id.contains("alert")).collect();
        let r = s.state.pipeline.ingest_audit_batch("probe", benign_only).await?;
        if !r.alerts.is_empty() {
            bail!("benign events raised {} alerts: {:?}", r.alerts.len(), r.alerts[0].reason);
        }
        let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
        println!(
            "detection latency, webhook POST -> alert on /api/v1/alerts/stream; {batch_ms}-ms batches, \
             {connections} connections, {seconds} s per phase, SQLite synchronous={sync:?}, {} CPUs, load {}",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        );
        let mut base = phase(&s, "baseline", (rate / 10).max(1), seconds, batch_ms, connections).await?;
        let (b50, b99) = report(&format!("{} ev/s", (rate / 10).max(1)), &mut base);
        let mut target = phase(&s, "target", rate, seconds, batch_ms, connections).await?;
        let (t50, t99) = report(&format!("{rate} ev/s"), &mut target);
        println!(
            "ratio target/baseline: p50 {:.2}x, p99 {:.2}x; target p99 < 20 ms: {}",
            ms(t50) / ms(b50).max(1e-9),
            ms(t99) / ms(b99).max(1e-9),
            if t99 < Duration::from_millis(20) { "met" } else { "NOT met" }
        );
        // Only the alerting events may have raised alerts.
        let stored: i64 = s
            .state
            .store
            .read(|c| Ok(c.query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))?))
            .await?;
        let sent = (base.latencies.len() + base.missing + target.latencies.len() + target.missing) as i64;
        println!("alerts stored: {stored} (alerting events sent: {sent})");
        if stored != sent {
            bail!("benign events raised {} alerts: the figures would mean nothing", stored - sent);
        }
        if target.missing > 0 || base.missing > 0 {
            bail!("{} alerts were never seen on the stream", target.missing + base.missing);
        }
        anyhow::Ok(())
    })
}
