//! Heap cost per entry of every detection map, measured: each scenario feeds
//! a fresh [`Detector`] (default policy, default caps) with traffic that
//! grows one family of maps, counts the live heap bytes this thread holds
//! before and after (a counting global allocator; the detector is
//! synchronous), and divides by the entries its `/metrics` gauges report.
//! It prints a table (`cargo test -p credtrail-aggregator --test
//! state_memory -- --nocapture`) with the bytes at each map's default cap,
//! and fails when an entry costs more than its figure in
//! `policy/budget.rs` (the figures the default caps derive from, so the
//! caps' total stays within `detection.state.memory_budget_mib`; the table
//! is in docs/SCALING.md).
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
use credtrail_aggregator::policy::{Policy, budget};
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

/// A bound token with `exp` 10 years ahead, read by pod `i`.
fn token_read(i: usize, t_ms: i64) -> Observation {
    token_read_exp(i, t_ms, t_ms / 1000 + 10 * 365 * 86_400)
}

/// Pod `i` reads its bound token, whose `exp` is `exp_s`.
fn token_read_exp(i: usize, t_ms: i64, exp_s: i64) -> Observation {
    let node = format!("node-{:04}", i % 50);
    let ns = format!("team-{:03}", i % 40);
    let claims = JwtClaims {
        iss: Some("https://kubernetes.default.svc.cluster.local".into()),
        sub: Some(format!("system:serviceaccount:{ns}:app-{i}")),
        aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
        jti: Some(uuid::Uuid::new_v4().to_string()),
        exp: Some(exp_s),
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
        // As many addresses as the address map holds room for per node.
        addresses: (0..8u8)
            .map(|a| IpAddr::from([10 + a, 0, (i / 250) as u8, (i % 250 + 2) as u8]))
            .collect(),
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
        budget::BYTES_JTI as f64,
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
        budget::BYTES_IDENTITY as f64,
        |d| judge_all(d, &evs),
    ));
    drop(evs);

    // A new pod reads its token on one of 50 nodes.
    let o: Vec<Observation> = (0..N).map(|i| token_read(i, t0 + i as i64)).collect();
    rows.push(measure(
        "credential read (by key, by user, process, container)",
        &["reads_by_key"],
        lim.reads_by_key.max_entries,
        budget::BYTES_READ as f64,
        |d| observe_all(d, &o),
    ));
    drop(o);

    // A new pod connects to the API server (pod address + connect sighting).
    let o: Vec<Observation> = (0..N).map(|i| connect(i, t0 + i as i64)).collect();
    rows.push(measure(
        "API connect (pod address + sighting)",
        &["pod_ips"],
        lim.pod_ips.max_entries,
        budget::BYTES_POD_ADDRESS as f64,
        |d| observe_all(d, &o),
    ));
    drop(o);

    // Nodes reporting in (8 addresses, 1 pod range each).
    let o: Vec<Observation> = (0..5000).map(|i| node_info(i, t0 + i as i64)).collect();
    rows.push(measure(
        "node (8 addresses, 1 pod range)",
        &["nodes"],
        lim.nodes.max_entries,
        budget::BYTES_NODE as f64,
        |d| observe_all(d, &o),
    ));
    drop(o);

    // RBAC objects as the API server reports them: roles with two rules,
    // bindings with two subjects.
    let evs = rbac_writes(4000, t0, "clusterroles");
    rows.push(measure(
        "role (two rules)",
        &["roles"],
        lim.roles.max_entries,
        budget::BYTES_ROLE as f64,
        |d| judge_all(d, &evs),
    ));
    drop(evs);
    let evs = rbac_writes(4000, t0, "clusterrolebindings");
    rows.push(measure(
        "binding (two subjects)",
        &["bindings"],
        lim.bindings.max_entries,
        budget::BYTES_BINDING as f64,
        |d| judge_all(d, &evs),
    ));
    drop(evs);

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
    // The default caps, at what their entries cost, fit in the default
    // budget (less the fixed-size maps).
    let room = (budget::DEFAULT_BUDGET_MIB - budget::FIXED_MIB) as f64;
    assert!(
        total <= room,
        "the default caps take {total:.1} MiB, more than the {room} MiB the budget leaves them"
    );
}

/// `n` creates of roles (`clusterroles`) or bindings (`clusterrolebindings`)
/// at the `RequestResponse` level, each with its object in the response.
fn rbac_writes(n: usize, t0: i64, resource: &str) -> Vec<AuditEvent> {
    let mut out = Vec::with_capacity(n);
    for lo in (0..n).step_by(2000) {
        let items: Vec<String> = (lo..(lo + 2000).min(n))
            .map(|i| {
                let (kind, body) = if resource == "clusterroles" {
                    (
                        "ClusterRole",
                        r#""rules":[{"apiGroups":[""],"resources":["pods","pods/log"],"verbs":["get","list","watch"]},{"apiGroups":["apps"],"resources":["deployments"],"verbs":["get","list"]}]"#.to_owned(),
                    )
                } else {
                    (
                        "ClusterRoleBinding",
                        format!(
                            r#""roleRef":{{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"role-{i}"}},"subjects":[{{"kind":"ServiceAccount","name":"app-{i}","namespace":"team-{n:03}"}},{{"kind":"Group","apiGroup":"rbac.authorization.k8s.io","name":"team-{n:03}-devs"}}]"#,
                            n = i % 40
                        ),
                    )
                };
                let name = format!("{}-{i:06}", kind.to_lowercase());
                format!(
                    r#"{{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"{a}","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/{resource}","verb":"create","user":{{"username":"system:serviceaccount:kube-system:operator"}},"sourceIPs":["10.64.0.9"],"objectRef":{{"resource":"{resource}","name":"{name}","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"}},"responseStatus":{{"metadata":{{}},"code":201}},"responseObject":{{"kind":"{kind}","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{{"name":"{name}","uid":"{u}"}},{body}}},"requestReceivedTimestamp":"{t}","stageTimestamp":"{t}"}}"#,
                    a = uuid::Uuid::new_v4(),
                    u = uuid::Uuid::new_v4(),
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

/// Reads of tokens past their `exp` (and the 15-minute grace) leave every
/// map holding them, and their memory is taken again by the next reads
/// rather than added to: a second generation of tokens costs next to
/// nothing more than the first.
#[test]
fn reads_leave_with_their_token_and_their_memory_is_reused() {
    let mut d = Detector::new(Arc::new(Policy::default()));
    let t0 = start_ms();
    // exp + grace falls a minute after the first generation's reads (all
    // in the past: the maps' clock never runs ahead of the wall clock).
    let exp_s = t0 / 1000 - 15 * 60 + 60;
    let after_exp = (exp_s + 15 * 60 + 1) * 1000;
    let maps = &["reads_by_key", "reads_by_user"];
    let first: Vec<Observation> = (0..N)
        .map(|i| token_read_exp(i, t0 + i as i64, exp_s))
        .collect();
    let second: Vec<Observation> = (0..N)
        .map(|i| token_read_exp(i, after_exp + i as i64, exp_s + 7200))
        .collect();
    let (h0, _) = live();
    observe_all(&mut d, &first);
    let (h1, _) = live();
    assert_eq!(entries(&mut d, &["reads_by_key"]), N);
    // One more read after exp + grace moves the clock: the first generation goes.
    observe_all(&mut d, &second[..1]);
    let stats = d.state_stats();
    let get = |m: &str| stats.iter().find(|s| s.map == m).unwrap();
    assert_eq!(get("reads_by_key").entries, 1, "only the new token's read");
    assert_eq!(get("reads_by_key").dropped.expired, N as u64);
    assert_eq!(get("reads_by_key").dropped.age, 0);
    assert_eq!(get("reads_by_user").dropped.expired, N as u64);
    let (h2, _) = live();
    observe_all(&mut d, &second[1..]);
    let (h3, _) = live();
    assert_eq!(entries(&mut d, maps), 2 * N);
    let first_gen = (h1 - h0) as f64;
    let second_gen = (h3 - h2) as f64;
    println!(
        "first generation {:.0} B/read, second (after expiry) {:.0} B/read",
        first_gen / N as f64,
        second_gen / N as f64
    );
    assert!(
        h2 - h0 < (h1 - h0) / 2,
        "expired reads still hold {} of {} bytes",
        h2 - h0,
        h1 - h0
    );
    assert!(
        second_gen <= first_gen * 1.1,
        "the second generation took {second_gen} bytes, the first {first_gen}"
    );
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

/// The maps with fixed caps (token lineage, nodes learned from the audit
/// stream) are driven past their caps: they stay at them, and what they
/// hold there fits in the budget's fixed share (`budget::FIXED_MIB`, with
/// alert activity's estimate).
#[test]
fn fixed_size_maps_stay_at_their_caps_within_the_fixed_share() {
    use credtrail_aggregator::detect::lineage::MAX_MINTED;
    const LEARNED_NODES: usize = 20_000;
    let mut rows = Vec::new();

    // Tokens minted through TokenRequest (as `detect/lineage.rs` records
    // them from the audit stream), past the cap.
    use credtrail_aggregator::detect::lineage::{Lineage, Minted};
    let now = Utc::now();
    let mint = |i: usize| Minted {
        jti: format!("JTI={}", uuid::Uuid::new_v4()),
        service_account: format!("system:serviceaccount:ci:deployer-{}", i % 100),
        minter: "system:serviceaccount:ci:pipeline".into(),
        minter_credential: Some(format!("JTI={}", uuid::Uuid::new_v4())),
        source_ip: Some(IpAddr::from([10, 64, 0, 9])),
        bound_to: Some(format!("Pod/job-{i}")),
        expiration_seconds: Some(3600),
        user_agent: Some("pipeline/1.0".into()),
        time: now,
        audit_id: uuid::Uuid::new_v4().to_string(),
        incident: None,
        minter_nodes: Vec::new(),
        minter_pod_uids: Vec::new(),
        minter_cidrs: Vec::new(),
    };
    let mut l = Lineage::default();
    let (h0, m0) = live();
    // Each record's strings are made here and moved into the map.
    for i in 0..MAX_MINTED + 100 {
        l.record(mint(i));
    }
    let (h1, m1) = live();
    let mut st = Vec::new();
    l.stats(&mut st);
    let got = st.iter().find(|s| s.map == "minted").unwrap().entries;
    assert_eq!(got, MAX_MINTED, "minted tokens held at the cap");
    rows.push((
        "minted token",
        (h1 - h0) as f64 / got as f64,
        (m1 - m0) as f64 / got as f64,
        MAX_MINTED,
    ));
    drop(l);

    // Nodes learned from the audit stream (an address from the kubelet's
    // requests, a pod range from its Node object), past the cap, as the
    // start-up load restores them (the learning path's cap is the same
    // check, `detect/cluster.rs`).
    use credtrail_aggregator::detect::cluster::{ClusterFacts, LearnedNodeView, Provenance};
    let prov = |source: &'static str| Provenance {
        source: source.into(),
        audit_id: uuid::Uuid::new_v4().to_string(),
        first: now,
        last: now,
    };
    let mut c = ClusterFacts::default();
    let (h0, m0) = live();
    for i in 0..LEARNED_NODES + 100 {
        c.restore(LearnedNodeView {
            node: format!("node-{i:05}"),
            uid: Some(uuid::Uuid::new_v4().to_string()),
            addresses: vec![(
                format!("10.{}.{}.{}", 1 + i / 62_500, i / 250 % 250, i % 250 + 2),
                prov("kubelet request"),
            )],
            pod_cidrs: vec![(
                format!("10.{}.{}.0/24", 64 + i / 256, i % 256),
                prov("Node spec.podCIDRs"),
            )],
        });
    }
    let (h1, m1) = live();
    let mut st = Vec::new();
    c.stats(&mut st);
    let got = st
        .iter()
        .find(|s| s.map == "learned_nodes")
        .unwrap()
        .entries;
    assert_eq!(got, LEARNED_NODES, "learned nodes held at the cap");
    rows.push((
        "learned node (an address, a pod range)",
        (h1 - h0) as f64 / got as f64,
        (m1 - m0) as f64 / got as f64,
        LEARNED_NODES,
    ));
    drop(c);

    // Alert activity, at its caps, estimated: 2,048 sources × 8 requests
    // (~600 B each) and 4,096 open alerts (~2 KiB each).
    let activity_mib = (2048.0 * 8.0 * 600.0 + 4096.0 * 2048.0) / 1048576.0;
    let mut total = activity_mib;
    for (what, heap, malloc, cap) in &rows {
        let at_cap = malloc * *cap as f64 / 1048576.0;
        total += at_cap;
        println!(
            "{what:<40} {heap:>8.0} heap B {malloc:>8.0} malloc B  cap {cap:>7}  {at_cap:>6.1} MiB"
        );
    }
    println!(
        "{:<40} {activity_mib:>52.1} MiB (estimated)",
        "alert activity"
    );
    println!(
        "{:<40} {total:>52.1} MiB of {} MiB",
        "fixed-size maps",
        budget::FIXED_MIB
    );
    assert!(
        total <= budget::FIXED_MIB as f64,
        "the fixed-size maps take {total:.1} MiB, more than budget::FIXED_MIB"
    );
}
