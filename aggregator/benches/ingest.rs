//! Audit ingestion on one core, in events per second, against a bare
//! `serde_json::Value` parse of the same bytes in the same run:
//! - parse (typed, `EventList`) + detection, in memory;
//! - the **durable path** users get: `Pipeline::ingest_audit_batch` on a file
//!   database with `synchronous=FULL` (parse, dedupe, detection, inventories,
//!   alerts, one transaction committed and synced before it returns), which
//!   is what the webhook waits for before its 2xx;
//! - the same with `synchronous=NORMAL`, and with the timestamps not advanced
//!   (see `durable_rate`), for reference.
//!
//! Each line gives wall-clock events/s and events per CPU-second of the
//! process (`getrusage`): on a shared machine the wall clock also counts the
//! time other processes held the core. The ratios use the wall clock of the
//! same run.
//!
//! Run: `cargo bench -p credtrail-aggregator --bench ingest`
//! (`CREDTRAIL_BENCH_SECONDS=3` per measurement; `CREDTRAIL_BENCH_SKIP_STORE=1`
//! skips the durable lines).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credtrail_aggregator::audit::{AuditEvent, parse_webhook_body};
use credtrail_aggregator::detect::{Changes, Detector};
use credtrail_aggregator::metrics::Metrics;
use credtrail_aggregator::policy::Policy;
use credtrail_aggregator::state::AppState;
use credtrail_aggregator::store::{Store, Synchronous};
use credtrail_proto::model::Observation;
use criterion::{Criterion, Throughput, criterion_group};

/// Real events (audit2rbac's 757-event capture) plus bound-token requests from
/// pods the agents know (the common case in a modern cluster): one EventList.
fn body() -> (Vec<u8>, usize) {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/k8s-audit/liggitt__audit2rbac/testdata__demo.log@501d132a");
    let text = std::fs::read_to_string(demo).expect("testdata present");
    let mut items: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    for i in 0..743 {
        let pod = i % 50;
        items.push(format!(
            r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"bench-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/shop/configmaps/cfg-{pod}","verb":"get","user":{{"username":"system:serviceaccount:shop:sa-{pod}","uid":"u-{pod}","groups":["system:serviceaccounts","system:serviceaccounts:shop","system:authenticated"],"extra":{{"authentication.kubernetes.io/credential-id":["JTI=jti-{pod}"],"authentication.kubernetes.io/node-name":["node-{n}"],"authentication.kubernetes.io/node-uid":["nu-{n}"],"authentication.kubernetes.io/pod-name":["pod-{pod}"],"authentication.kubernetes.io/pod-uid":["pu-{pod}"]}}}},"sourceIPs":["127.1.{n}.{pod}"],"userAgent":"app/v1.0 (linux/amd64) kubernetes/abcdef","objectRef":{{"resource":"configmaps","namespace":"shop","name":"cfg-{pod}","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"2026-03-01T10:00:{s:02}.123456Z","stageTimestamp":"2026-03-01T10:00:{s:02}.125000Z","annotations":{{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"cfg-reader/shop\""}}}}"#,
            n = pod % 5,
            s = i % 60,
        ));
    }
    let n = items.len();
    let body = format!(
        r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
        items.join(",")
    );
    (body.into_bytes(), n)
}

/// Agents' view: five nodes, their pods' token reads and connections.
fn observations() -> Vec<Observation> {
    let mut out = Vec::new();
    for n in 0..5 {
        out.push(serde_json::from_value(serde_json::json!({
            "id": format!("node-{n}/ni"), "time": "2026-03-01T09:00:00Z", "node": format!("node-{n}"), "type": "node_info",
            "name": format!("node-{n}"), "addresses": [format!("127.0.0.{}", n + 10)], "pod_cidrs": [format!("127.1.{n}.0/24")],
            "agent_version": "0.1.0", "kernel_release": "6.18", "hooks": [],
        })).unwrap());
    }
    for pod in 0..50 {
        let node = format!("node-{}", pod % 5);
        out.push(serde_json::from_value(serde_json::json!({
            "id": format!("{node}/r{pod}"), "time": "2026-03-01T09:30:00Z", "node": node, "type": "credential_read",
            "source": "tracepoint", "process": {"pid": 100 + pod, "tgid": 100 + pod, "ppid": 1, "uid": 0, "comm": "app", "mnt_ns": 1},
            "workload": {"cgroup_id": 1, "container_id": format!("c{pod}"), "pod_uid": format!("pu-{pod}"), "pod_namespace": "shop", "pod_name": format!("pod-{pod}")},
            "path": "/var/run/secrets/kubernetes.io/serviceaccount/token", "flags": 0, "inode": 1, "reads": 1,
            "credential": {"kind": "service_account_token", "token": {"sha256": "00", "claims": {"jti": format!("jti-{pod}"), "sub": format!("system:serviceaccount:shop:sa-{pod}")}}},
        })).unwrap());
    }
    out
}

fn detector() -> Detector {
    let mut d = Detector::new(Arc::new(Policy::default()));
    let mut ch = Changes::default();
    for o in observations() {
        d.observe(&o, &mut ch);
    }
    d
}

fn parse_and_detect(body: &[u8], det: &mut Detector) -> usize {
    let events = parse_webhook_body(body).unwrap();
    let mut ch = Changes::default();
    let mut alerts = 0;
    for ev in &events {
        alerts += det.judge(ev, &mut ch).len();
    }
    black_box(&ch);
    alerts + events.len()
}

/// CPU time (user + system) of the whole process so far.
fn process_cpu() -> Duration {
    // SAFETY: `getrusage` only writes the struct we pass; zeroed is a valid `rusage`.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut ru), 0);
        ru
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Events per second of wall clock, and per CPU-second of the process.
#[derive(Clone, Copy)]
struct Rate {
    wall: f64,
    cpu: f64,
}

/// Runs `f` (one batch of `n` events) repeatedly for `secs` seconds.
fn rate(n: usize, secs: f64, mut f: impl FnMut()) -> Rate {
    f();
    let (start, cpu0) = (Instant::now(), process_cpu());
    let mut iters = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        f();
        iters += 1;
    }
    let events = iters as f64 * n as f64;
    Rate {
        wall: events / start.elapsed().as_secs_f64(),
        cpu: events / (process_cpu() - cpu0).as_secs_f64(),
    }
}

/// Makes round `round`'s copy of the batch new: fresh audit IDs (so nothing
/// is a duplicate) and, if `advance`, every timestamp moved `round` hours on.
/// A real stream's times move forward; replaying the same times with new IDs
/// would insert every batch into the middle of the time indexes (audit
/// events and alerts), a pattern no API server produces; it is measured too.
fn make_fresh(events: &mut [AuditEvent], round: u32, advance: bool) {
    let shift = chrono::Duration::hours(i64::from(round));
    let suffix = format!("-{round}");
    for e in events {
        e.audit_id.push_str(&suffix);
        if advance {
            for t in [
                &mut e.request_received_timestamp,
                &mut e.stage_timestamp,
                &mut e.timestamp,
            ] {
                *t = t.map(|t| t + shift);
            }
        }
    }
}

/// The durable path: parse + `Pipeline::ingest_audit_batch` (dedupe,
/// detection, inventories, alerts, one committed transaction) on a file
/// database, as the webhook runs it before answering.
fn durable_rate(sync: Synchronous, body: &[u8], n: usize, secs: f64, advance: bool) -> Rate {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let app = AppState::new(
        Store::open(&dir.path().join("b.db"), sync).unwrap(),
        Policy::default(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    rt.block_on(app.pipeline.ingest_observations("node-0", observations()))
        .unwrap();
    let mut round = 0u32;
    rate(n, secs, || {
        round += 1;
        let mut events = parse_webhook_body(body).unwrap();
        make_fresh(&mut events, round, advance);
        let report = rt
            .block_on(app.pipeline.ingest_audit_batch("bench", events))
            .unwrap();
        assert_eq!(report.accepted, n, "every event is new");
    })
}

fn line(what: &str, r: Rate) {
    println!(
        "  {what:<44}: {:>9.0} events/s  ({:>9.0} per CPU-second)",
        r.wall, r.cpu
    );
}

fn ratio_report() {
    let secs = std::env::var("CREDTRAIL_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let (body, n) = body();
    let mut det = detector();
    let bare = rate(n, secs, || {
        black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap());
    });
    let ours = rate(n, secs, || {
        black_box(parse_and_detect(black_box(&body), &mut det));
    });
    println!(
        "aggregator ingest: {n} events/batch ({} bytes), one core",
        body.len()
    );
    line("bare serde_json::Value parse (baseline)", bare);
    line("parse + detect, in memory", ours);
    if std::env::var_os("CREDTRAIL_BENCH_SKIP_STORE").is_none() {
        let full = durable_rate(Synchronous::Full, &body, n, secs, true);
        line("durable ingest, commit synchronous=FULL", full);
        let normal = durable_rate(Synchronous::Normal, &body, n, secs, true);
        line("durable ingest, commit synchronous=NORMAL", normal);
        let same_times = durable_rate(Synchronous::Full, &body, n, secs, false);
        line("durable FULL, timestamps not advanced", same_times);
        println!(
            "  ratio parse + detect / bare                 : {:>9.2}",
            ours.wall / bare.wall
        );
        println!(
            "  ratio durable FULL / bare                   : {:>9.2}",
            full.wall / bare.wall
        );
    } else {
        println!(
            "  ratio parse + detect / bare                 : {:>9.2}",
            ours.wall / bare.wall
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "  load average (1 5 15 min)                   : {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
}

fn benches(c: &mut Criterion) {
    let (body, n) = body();
    let mut g = c.benchmark_group("audit_ingest");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("bare_serde_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&body)).unwrap())
    });
    let mut det = detector();
    g.bench_function("parse_and_detect", |b| {
        b.iter(|| parse_and_detect(black_box(&body), &mut det))
    });
    g.finish();
}

criterion_group!(group, benches);

fn main() {
    ratio_report();
    group();
    Criterion::default().configure_from_args().final_summary();
}
