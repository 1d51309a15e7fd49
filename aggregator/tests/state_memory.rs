//! Heap cost per entry of every detection map, measured: each scenario feeds
//! a fresh [`Detector`] (default policy, default caps) with traffic that
//! grows one family of maps, counts the live heap bytes this thread holds
//! before and after (a counting global allocator; the detector is
//! synchronous), and divides by the entries its `/metrics` gauges report.
//! It prints a table (`cargo test -p credtrail-aggregator --test
//! state_memory -- --nocapture`) with the bytes at each map's default cap,
//! and fails when an entry costs more than its budget (the budgets keep the
//! default caps' total within docs/PERFORMANCE.md's memory figure).
//!
//! "heap" is what the program asked for; "malloc" adds glibc's per-chunk
//! overhead (8 bytes, rounded up to 16, at least 32), what RSS pays.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use credtrail_aggregator::audit::{AuditEvent, parse_webhook_body};
use credtrail_aggregator::detect::{Changes, Detector};
use credtrail_aggregator::policy::Policy;
use credtrail_proto::model::{
    ApiConnect, CaptureSource, CredentialIdentity, CredentialKind, CredentialRead, JwtClaims,
    NodeInfo, Observation, ObservationEvent, Process, TokenIdentity, Workload,
};

struct Counting;

thread_local! {
    static HEAP: Cell<i64> = const { Cell::new(0) };
    static MALLOC: Cell<i64> = const { Cell::new(0) };
}

fn chunk(size: usize) -> i64 {
    (((size + 8 + 15) & !15).max(32)) as i64
}

fn count(size: usize, sign: i64) {
    let _ = HEAP.try_with(|c| c.set(c.get() + sign * size as i64));
    let _ = MALLOC.try_with(|c| c.set(c.get() + sign * chunk(size)));
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counters are const-initialised thread-locals (no allocation, no drop).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, forwarded.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            count(l.size(), 1);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: as above.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            count(l.size(), 1);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        count(l.size(), -1);
        // SAFETY: `p` came from `alloc` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: as above.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            count(l.size(), -1);
            count(new, 1);
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> (i64, i64) {
    (HEAP.with(Cell::get), MALLOC.with(Cell::get))
}

fn entries(d: &mut Detector, maps: &[&str]) -> usize {
    d.state_stats()
        .iter()
        .filter(|s| maps.contains(&s.map))
        .map(|s| s.entries)
        .sum()
}

const N: usize = 20_000;

fn start_ms() -> i64 {
    Utc::now().timestamp_millis() - 600_000
}

fn ts(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Soak-shaped requests: `user(i)`, credential-id `cred(i)`, from `ip(i)`.
fn requests(
    n: usize,
    t0: i64,
    user: impl Fn(usize) -> String,
    cred: impl Fn(usize) -> Option<String>,
    ip: impl Fn(usize) -> String,
) -> Vec<AuditEvent> {
    let mut out = Vec::with_capacity(n);
    for lo in (0..n).step_by(2000) {
        let items: Vec<String> = (lo..(lo + 2000).min(n))
            .map(|i| {
                let extra = cred(i).map_or_else(String::new, |c| {
                    format!(
                        r#","extra":{{"authentication.kubernetes.io/credential-id":["{c}"],"authentication.kubernetes.io/node-name":["node-{n:04}"],"authentication.kubernetes.io/pod-name":["app-{i}"],"authentication.kubernetes.io/pod-uid":["{u}"]}}"#,
                        n = i % 50,
                        u = uuid::Uuid::new_v4()
                    )
                });
                format!(
                    r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"{a}","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/team/configmaps","verb":"list","user":{{"username":"{u}"{extra}}},"sourceIPs":["{ip}"],"objectRef":{{"resource":"configmaps","namespace":"team","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":200}},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}"}}"#,
                    a = uuid::Uuid::new_v4(),
                    u = user(i),
                    ip = ip(i),
                    t = ts(t0 + i as i64),
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

fn judge_all(d: &mut Detector, evs: &[AuditEvent]) {
    for ev in evs {
        let mut ch = Changes::default();
        drop(d.judge(ev, &mut ch));
    }
}

fn observe_all(d: &mut Detector, obs: &[Observation]) {
    for o in obs {
        let mut ch = Changes::default();
        d.observe(o, &mut ch);
    }
}

fn workload(i: usize) -> Workload {
    Workload {
        cgroup_id: i as u64,
        cgroup_path: None,
        container_id: Some(format!("{:064x}", i + 1)),
        container_runtime: Some("containerd".into()),
        pod_uid: Some(uuid::Uuid::new_v4().to_string()),
        pod_namespace: Some(format!("team-{:03}", i % 40)),
        pod_name: Some(format!("app-{:04}-{}", i / 5, i % 5)),
        qos_class: None,
    }
}

fn process(i: usize) -> Process {
    Process {
        pid: 1000 + i as u32,
        tgid: 1000 + i as u32,
        ppid: 1,
        uid: 1000,
        comm: "app".into(),
        exe: Some("/usr/local/bin/app".into()),
        cmdline: Vec::new(),
        parent_comm: None,
        mnt_ns: 0,
    }
}

fn obs(i: usize, node: &str, t_ms: i64, event: ObservationEvent) -> Observation {
    Observation {
        id: format!("{node}/{}/{i}", uuid::Uuid::new_v4()),
        time: DateTime::from_timestamp_millis(t_ms).unwrap(),
        node: node.to_owned(),
        event,
    }
}

fn token_read(i: usize, t_ms: i64) -> Observation {
    let node = format!("node-{:04}", i % 50);
    let ns = format!("team-{:03}", i % 40);
    let claims = JwtClaims {
        iss: Some("https://kubernetes.default.svc.cluster.local".into()),
        sub: Some(format!("system:serviceaccount:{ns}:app-{i}")),
        aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
        jti: Some(uuid::Uuid::new_v4().to_string()),
        namespace: Some(ns),
        service_account_name: Some(format!("app-{i}")),
        ..Default::default()
    };
    let read = CredentialRead {
        source: CaptureSource::Lsm,
        process: Some(process(i)),
        workload: Some(workload(i)),
        path: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
        flags: 0,
        inode: i as u64,
        reads: 1,
        credential: CredentialIdentity {
            kind: CredentialKind::ServiceAccountToken,
            token: Some(TokenIdentity {
                sha256: format!("{:064x}", i + 7),
                claims: Some(claims),
            }),
            ..Default::default()
        },
    };
    obs(i, &node, t_ms, ObservationEvent::CredentialRead(read))
}

fn connect(i: usize, t_ms: i64) -> Observation {
    let n = i % 50;
    let c = ApiConnect {
        source: CaptureSource::SockState,
        process: Some(process(i)),
        workload: Some(workload(i)),
        local: Some(SocketAddr::new(
            IpAddr::from([
                10,
                64 + (i / 60_000) as u8,
                (i / 250 % 240) as u8,
                (i % 250 + 2) as u8,
            ]),
            40_000,
        )),
        translated: None,
        remote: "10.96.0.1:443".parse().unwrap(),
    };
    obs(
        i,
        &format!("node-{n:04}"),
        t_ms,
        ObservationEvent::ApiConnect(c),
    )
}

fn node_info(i: usize, t_ms: i64) -> Observation {
    let name = format!("node-{i:05}");
    let n = NodeInfo {
        name: name.clone(),
        addresses: vec![
            IpAddr::from([10, 0, (i / 250) as u8, (i % 250 + 2) as u8]),
            IpAddr::from([172, 16, (i / 250) as u8, (i % 250 + 2) as u8]),
        ],
        pod_cidrs: vec![format!("10.{}.{}.0/24", 64 + i / 256, i % 256)],
        agent_version: "0.1.0".into(),
        kernel_release: "6.1.0".into(),
        hooks: vec!["lsm".into()],
        blind_spots: Vec::new(),
    };
    obs(i, &name, t_ms, ObservationEvent::NodeInfo(n))
}

struct Row {
    what: &'static str,
    maps: &'static [&'static str],
    heap: f64,
    malloc: f64,
    cap: usize,
    budget: f64,
}

/// Grows `maps` with `feed` and measures bytes per new entry.
fn measure(
    what: &'static str,
    maps: &'static [&'static str],
    cap: usize,
    budget: f64,
    feed: impl FnOnce(&mut Detector),
) -> Row {
    let mut d = Detector::new(Arc::new(Policy::default()));
    let before_n = entries(&mut d, maps);
    let (h0, m0) = live();
    feed(&mut d);
    let (h1, m1) = live();
    let n = (entries(&mut d, maps) - before_n).max(1) as f64;
    drop(d);
    Row {
        what,
        maps,
        heap: (h1 - h0) as f64 / n,
        malloc: (m1 - m0) as f64 / n,
        cap,
        budget,
    }
}

#[test]
fn every_map_costs_within_its_budget_per_entry() {
    let lim = credtrail_aggregator::detect::limits::MapLimits::default();
    let t0 = start_ms();
    let mut rows = Vec::new();

    // One pod's requests, a new bound token each (tokens rotating).
    let evs = requests(
        N,
        t0,
        |_| "system:serviceaccount:team-001:app-0001".into(),
        |_| Some(format!("JTI={}", uuid::Uuid::new_v4())),
        |_| "10.64.1.7".into(),
    );
    rows.push(measure(
        "tracked JTI (one place)",
        &["jti_places"],
        lim.jti_places.max_entries,
        350.0,
        |d| judge_all(d, &evs),
    ));
    drop(evs);

    // A new identity per request (CI jobs), no credential-id: its first
    // sighting and a baseline of one source.
    let evs = requests(
        N,
        t0,
        |i| format!("system:serviceaccount:ci-{:05}:job-{i}", i % 10_000),
        |_| None,
        |i| format!("10.64.{}.{}", i % 50, i % 250 + 2),
    );
    rows.push(measure(
        "identity + baseline (one source)",
        &["identities"],
        lim.identities.max_entries,
        700.0,
        |d| judge_all(d, &evs),
    ));
    drop(evs);

    // A new pod reads its token on one of 50 nodes.
    let o: Vec<Observation> = (0..N).map(|i| token_read(i, t0 + i as i64)).collect();
    rows.push(measure(
        "credential read (by key, by user, process, container)",
        &["reads_by_key"],
        lim.reads_by_key.max_entries,
        1500.0,
        |d| observe_all(d, &o),
    ));
    drop(o);

    // A new pod connects to the API server (pod address + connect sighting).
    let o: Vec<Observation> = (0..N).map(|i| connect(i, t0 + i as i64)).collect();
    rows.push(measure(
        "API connect (pod address + sighting)",
        &["pod_ips"],
        lim.pod_ips.max_entries,
        1000.0,
        |d| observe_all(d, &o),
    ));
    drop(o);

    // Nodes reporting in (2 addresses, 1 pod range each).
    let o: Vec<Observation> = (0..5000).map(|i| node_info(i, t0 + i as i64)).collect();
    rows.push(measure(
        "node (2 addresses, 1 pod range)",
        &["nodes"],
        lim.nodes.max_entries,
        1000.0,
        |d| observe_all(d, &o),
    ));
    drop(o);

    println!(
        "{:<55} {:>10} {:>12} {:>10} {:>14}",
        "entry", "heap B", "malloc B", "cap", "MiB at cap"
    );
    let mut total = 0.0;
    let mut over = Vec::new();
    for r in &rows {
        let at_cap = r.malloc * r.cap as f64 / 1048576.0;
        total += at_cap;
        println!(
            "{:<55} {:>10.0} {:>12.0} {:>10} {:>14.1}   ({})",
            r.what,
            r.heap,
            r.malloc,
            r.cap,
            at_cap,
            r.maps.join(", ")
        );
        if r.malloc > r.budget {
            over.push(format!("{}: {:.0} B > {:.0} B", r.what, r.malloc, r.budget));
        }
    }
    println!("{:<55} {:>48.1}", "all of the above at their caps", total);
    assert!(over.is_empty(), "over budget: {over:?}");
}

/// Connection sightings are bounded across all nodes (`max_pods`), not only
/// per node: 10 nodes x 50 connections into a cap of 100.
#[test]
fn connect_sightings_stay_within_their_total_cap() {
    let mut p = Policy::default();
    p.state.max_pods = 100;
    let mut d = Detector::new(Arc::new(p));
    let t0 = start_ms();
    let o: Vec<Observation> = (0..500).map(|i| connect(i, t0 + i as i64)).collect();
    observe_all(&mut d, &o);
    let stats = d.state_stats();
    let get = |m: &str| stats.iter().find(|s| s.map == m).unwrap();
    assert_eq!(get("connect_sightings").entries, 100);
    assert_eq!(
        get("connects").dropped.cap,
        400,
        "each dropped sighting counted"
    );
    assert!(get("pod_ips").entries <= 100);
}
