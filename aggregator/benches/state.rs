//! Detection cost per event against how much state is tracked: the same
//! stream of requests (a fresh bound token and identity each) judged after
//! 1,000 and after 400,000 JTIs and identities are tracked, in one run; the
//! ratio of the two per-event costs should stay near 1 (every map is
//! bounded and expires from its front: `detect/bounded.rs`). Before the
//! bounded maps, the JTI map was scanned on every JTI event above 100,000.
//!
//! Run: `cargo bench -p credtrail-aggregator --bench state`
//! (`CREDTRAIL_BENCH_TRACKED=400000`, `CREDTRAIL_BENCH_EVENTS=50000`).

use std::sync::Arc;
use std::time::Instant;

use credtrail_aggregator::audit::{AuditEvent, parse_webhook_body};
use credtrail_aggregator::detect::{Changes, Detector};
use credtrail_aggregator::policy::Policy;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` requests from `prefix`-numbered pods, each with its own JTI and identity,
/// one millisecond apart from `start_ms` (all inside one reuse window).
fn events(prefix: &str, n: usize, start_ms: i64) -> Vec<AuditEvent> {
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let items: Vec<String> = chunk
            .iter()
            .map(|i| {
                let t = chrono::DateTime::from_timestamp_millis(start_ms + *i as i64)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
                format!(
                    r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{prefix}-{i}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ci/pods","verb":"list","user":{{"username":"system:serviceaccount:ci:{prefix}-{i}","extra":{{"authentication.kubernetes.io/credential-id":["JTI={prefix}-{i}"],"authentication.kubernetes.io/node-name":["node-{n}"],"authentication.kubernetes.io/pod-name":["p-{i}"],"authentication.kubernetes.io/pod-uid":["u-{i}"]}}}},"sourceIPs":["10.64.{n}.{h}"],"objectRef":{{"resource":"pods","namespace":"ci","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}"}}"#,
                    n = i % 200,
                    h = i % 250 + 2,
                )
            })
            .collect();
        let body = format!(
            r#"{{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{{}},"items":[{}]}}"#,
            items.join(",")
        );
        out.extend(parse_webhook_body(body.as_bytes()).expect("valid events"));
    }
    out
}

/// Nanoseconds per judged event of `probe` after `tracked` fill events.
fn cost(tracked: usize, probe: &[AuditEvent], start_ms: i64) -> f64 {
    let mut det = Detector::new(Arc::new(Policy::default()));
    for ev in events("fill", tracked, start_ms) {
        det.judge(&ev, &mut Changes::default());
    }
    let t = Instant::now();
    let mut ch = Changes::default();
    for ev in probe {
        std::hint::black_box(det.judge(ev, &mut ch));
    }
    t.elapsed().as_nanos() as f64 / probe.len() as f64
}

fn main() {
    let tracked = env("CREDTRAIL_BENCH_TRACKED", 400_000);
    let n = env("CREDTRAIL_BENCH_EVENTS", 50_000);
    let start_ms = chrono::Utc::now().timestamp_millis() - 300_000;
    // Probe events come after the fill, still within the 10-minute window.
    let probe = events("probe", n, start_ms + tracked as i64);
    let small = cost(1000, &probe, start_ms + tracked as i64 - 1000);
    let large = cost(tracked, &probe, start_ms);
    println!(
        "state: {small:.0} ns/event with 1000 tracked, {large:.0} ns/event with {tracked} tracked"
    );
    println!(
        "state cost ratio tracked={tracked}/1000 {:.2}",
        large / small
    );
}
