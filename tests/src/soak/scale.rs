//! The scale bench (`cargo xtask bench --scale`): one real aggregator and a
//! simulated cluster of `--nodes` nodes and `--pods` pods on this machine.
//!
//! - every node runs the **real agent stream client** (`credtrail_agent::stream`,
//!   gRPC over mTLS with its own `system:node:<name>` certificate), all of
//!   them in this one process (RLIMIT_NOFILE raised in-process);
//! - every pod has a bound token; its node's agent reports it read when the
//!   run starts and each time the pod's token is rotated (an hour compressed
//!   into `--rotation-seconds`), as the agent's start-up scan and open hook do;
//! - the webhook gets `--eps` audit events per second in `EventList` batches
//!   from the soak's traffic ([`super::traffic`]): the pods' requests with
//!   their current tokens (credential-id, node and pod in `user.extra`, from
//!   the pod's address), kubelets, short-lived identities, RBAC writes; four
//!   connections, as the API server's batching backend sends batches
//!   concurrently.
//!
//! At the end every agent must have its observations acknowledged; then the
//! aggregator is stopped and "lost" is counted from its database: audit
//! events generated minus those stored, plus observations (node info, reads)
//! sent minus those stored.
//! It prints, last:
//!
//! `scale nodes=5000 pods=150000 audit_eps=5000 rss_mib=… cpu_cores=… p99_ms=… lost=0`

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::Utc;
use credtrail_agent::stream::{self, HelloInfo, StreamConfig, StreamHandle};
use credtrail_proto::model::{
    CaptureSource, CredentialIdentity, CredentialKind, CredentialRead, JwtClaims, NodeInfo,
    Observation, ObservationEvent, Process, TokenIdentity, Workload,
};
use tokio::sync::mpsc;

use super::report::Samples;
use super::traffic::{PodToken, Shape, Traffic};
use super::{rss_kib, start_aggregator_with};
use crate::certs::{Pki, write_cert_key};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct ScaleOptions {
    /// The aggregator binary (release build).
    #[arg(long)]
    pub aggregator: PathBuf,
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    #[arg(long, default_value_t = 150_000)]
    pub pods: usize,
    /// Audit events per second through the webhook.
    #[arg(long, default_value_t = 5000)]
    pub eps: u64,
    /// A token's hour, compressed: seconds between a pod's rotations
    /// (default: the whole run, so every token is rotated about once).
    #[arg(long)]
    pub rotation_seconds: Option<f64>,
    /// Share of audit events from short-lived identities, percent.
    #[arg(long, default_value_t = 10.0)]
    pub churn: f64,
    /// Webhook connections sending batches concurrently.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
}

/// Raises this process's open-file limit to its hard limit.
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    r.rlim_cur
}

/// Aggregator CPU seconds (user + system) from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = s.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    (ticks(11) + ticks(12)) / hz
}

/// The read an agent reports when `t`'s pod reads its token.
fn token_read(node: &str, seq: u64, t: &PodToken) -> Observation {
    let claims = JwtClaims {
        iss: Some("https://kubernetes.default.svc.cluster.local".into()),
        sub: Some(format!(
            "system:serviceaccount:{}:{}",
            t.namespace, t.account
        )),
        aud: vec!["https://kubernetes.default.svc.cluster.local".into()],
        jti: Some(t.jti.clone()),
        iat: Some(Utc::now().timestamp()),
        exp: Some(Utc::now().timestamp() + 3607),
        namespace: Some(t.namespace.clone()),
        service_account_name: Some(t.account.clone()),
        pod_name: Some(t.name.clone()),
        pod_uid: Some(t.uid.clone()),
        node_name: Some(node.to_owned()),
        ..Default::default()
    };
    Observation {
        id: format!("{node}/scale/{seq}"),
        time: Utc::now(),
        node: node.to_owned(),
        event: ObservationEvent::CredentialRead(CredentialRead {
            source: CaptureSource::Lsm,
            process: Some(Process {
                pid: 4000 + (seq % 30_000) as u32,
                tgid: 4000 + (seq % 30_000) as u32,
                ppid: 1,
                uid: 1000,
                comm: "app".into(),
                exe: Some("/app/server".into()),
                cmdline: vec!["/app/server".into()],
                parent_comm: Some("containerd-shim".into()),
                mnt_ns: 4026532000,
            }),
            workload: Some(Workload {
                cgroup_id: seq,
                cgroup_path: None,
                container_id: Some(format!("{:064x}", seq + 1)),
                container_runtime: Some("containerd".into()),
                pod_uid: Some(t.uid.clone()),
                pod_namespace: Some(t.namespace.clone()),
                pod_name: Some(t.name.clone()),
                qos_class: None,
            }),
            path: "/var/run/secrets/kubernetes.io/serviceaccount/token".into(),
            flags: 0,
            inode: seq,
            reads: 1,
            credential: CredentialIdentity {
                kind: CredentialKind::ServiceAccountToken,
                sha256: None,
                token: Some(TokenIdentity {
                    sha256: format!("{:064x}", seq.wrapping_mul(0x9E37_79B9) + 7),
                    claims: Some(claims),
                }),
                kubeconfig: None,
                certificate: None,
                error: None,
            },
        }),
    }
}

/// One simulated node: its agent's stream and what it was given to send.
struct Agent {
    name: String,
    input: mpsc::Sender<Observation>,
    handle: StreamHandle,
    sent: u64,
}

/// Hands `t`'s read to its node's agent (never blocks the generator: a full
/// input is an error, not a silent drop).
fn report(agents: &mut [Agent], seq: &mut u64, t: &PodToken) -> anyhow::Result<()> {
    *seq += 1;
    let a = &mut agents[t.node];
    let obs = token_read(&a.name, *seq, t);
    a.input
        .try_send(obs)
        .map_err(|e| anyhow::anyhow!("agent {} input: {e}", a.name))?;
    a.sent += 1;
    Ok(())
}

/// The figures of one run.
#[derive(Debug, Clone)]
pub struct ScaleFigures {
    pub rss_mib: f64,
    pub cpu_cores: f64,
    pub p99_ms: f64,
    pub lost: u64,
    pub eps_achieved: f64,
}

/// Runs the scale bench; prints its line last.
pub async fn run(o: ScaleOptions) -> anyhow::Result<ScaleFigures> {
    anyhow::ensure!(
        o.minutes > 0.0 && o.eps > 0 && o.nodes > 0 && o.pods >= o.nodes,
        "--minutes, --eps, --nodes must be positive and --pods at least --nodes"
    );
    let nofile = raise_nofile();
    anyhow::ensure!(
        nofile as usize > o.nodes + o.connections + 256,
        "RLIMIT_NOFILE is {nofile}: too low for {} agent connections",
        o.nodes
    );
    let work = tempfile::Builder::new()
        .prefix("credtrail-scale-")
        .tempdir()
        .context("creating the work folder")?;
    let dir = work.path().to_path_buf();
    let duration = Duration::from_secs_f64(o.minutes * 60.0);
    let rotation = Duration::from_secs_f64(o.rotation_seconds.unwrap_or(o.minutes * 60.0));
    let mut traffic = Traffic::new(Shape {
        nodes: o.nodes,
        service_accounts: o.pods.div_ceil(5),
        pods_per_account: 5,
        churn_percent: o.churn,
        token_lifetime: rotation,
        ..Shape::default()
    });
    traffic.track_rotations();

    let t_pki = Instant::now();
    let pki = Pki::generate(&["127.0.0.1"])?;
    let certs_dir = dir.join("agents");
    std::fs::create_dir_all(&certs_dir)?;
    let server_ca = pki.write(&dir.join("pki-agents"))?.server_ca;
    let db = dir.join("scale.db");
    let (mut agg, sender, api_port, agent_port) =
        start_aggregator_with(&o.aggregator, &db, &dir, None, &pki, Some(o.nodes)).await?;
    let pid = agg.pid();
    eprintln!(
        "scale: aggregator pid {pid} up; {} nodes, {} pods, {} audit ev/s for {} min; rotation every {:.0}s",
        o.nodes,
        o.pods,
        o.eps,
        o.minutes,
        rotation.as_secs_f64()
    );

    // The agents: one stream client per node, certificates of their own.
    let mut agents = Vec::with_capacity(o.nodes);
    for i in 0..traffic.node_count() {
        let (name, ip, cidr) = traffic.node(i);
        let name = name.to_owned();
        let ck = pki.agents_ca.agent(&name)?;
        let paths = write_cert_key(&certs_dir, &name, &ck)?;
        let mut cfg = StreamConfig::new(
            format!("https://127.0.0.1:{agent_port}"),
            server_ca.clone(),
            paths.cert,
            paths.key,
        );
        cfg.server_name = Some("127.0.0.1".into());
        cfg.spool_capacity = 10_000;
        cfg.backoff_min = Duration::from_millis(200);
        cfg.backoff_max = Duration::from_secs(5);
        cfg.heartbeat_interval = Duration::from_secs(30);
        let hello = HelloInfo {
            node_name: name.clone(),
            agent_version: env!("CARGO_PKG_VERSION").into(),
            kernel_release: "6.1.0-scale".into(),
            hooks: vec!["lsm_file_open".into()],
            addresses: vec![ip.parse()?],
            pod_cidrs: vec![cidr.clone()],
        };
        // What the agent reports first: its node's addresses and pod range.
        let node_info = Observation {
            id: format!("{name}/scale/node-info"),
            time: Utc::now(),
            node: name.clone(),
            event: ObservationEvent::NodeInfo(NodeInfo {
                name: name.clone(),
                addresses: vec![ip.parse()?],
                pod_cidrs: vec![cidr],
                agent_version: env!("CARGO_PKG_VERSION").into(),
                kernel_release: "6.1.0-scale".into(),
                hooks: vec!["lsm_file_open".into()],
                blind_spots: Vec::new(),
            }),
        };
        let (tx, rx) = mpsc::channel(4096);
        let handle = stream::spawn(cfg, hello, rx, Duration::from_secs(30))
            .with_context(|| format!("agent stream of {name}"))?;
        tx.try_send(node_info)
            .map_err(|e| anyhow::anyhow!("agent {name} input: {e}"))?;
        agents.push(Agent {
            name,
            input: tx,
            handle,
            sent: 1,
        });
    }
    let connected_by = Instant::now() + Duration::from_secs(180);
    for a in &agents {
        let left = connected_by.saturating_duration_since(Instant::now());
        let (st, ok) = a.handle.wait_for(left, |s| s.connected).await;
        anyhow::ensure!(ok, "agent {} did not connect: {st:?}", a.name);
    }
    eprintln!(
        "scale: {} agents connected over mTLS in {:.1}s",
        agents.len(),
        t_pki.elapsed().as_secs_f64()
    );

    // The start-up scan: every pod's current token read on its node.
    let mut seq: u64 = 0;
    for t in traffic.tokens() {
        report(&mut agents, &mut seq, &t)?;
    }

    // Audit traffic, as the soak sends it, on several connections.
    let samples = Arc::new(Mutex::new(Samples::new(o.eps, o.minutes)));
    let mut lanes = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..o.connections.max(1) {
        let (tx, rx) = mpsc::channel::<(Vec<u8>, u64)>(2);
        let s = sender.another();
        let samples = samples.clone();
        senders.push(tokio::spawn(async move { s.drain(rx, &samples).await }));
        lanes.push(tx);
    }
    drop(sender);
    let lock = || {
        samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let (batch_max, wait) = (400u64, Duration::from_millis(100));
    let start = Instant::now();
    let cpu0 = cpu_seconds(pid);
    lock().start(rss_kib(pid).unwrap_or(0));
    let mut rss_peak = 0u64;
    let mut generated: u64 = 0;
    let mut last_send = start;
    let mut lane = 0usize;
    let mut next_sample = Duration::from_secs(5);
    // p99 per 30 s window, and from the second minute on (after the
    // start-up scan of every pod's token).
    let mut window_mark = 0usize;
    let mut steady_mark: Option<usize> = None;
    loop {
        let now = start.elapsed();
        if now >= next_sample {
            let r = rss_kib(pid).unwrap_or(0);
            rss_peak = rss_peak.max(r);
            lock().rss(now, r);
            next_sample += Duration::from_secs(5);
            if now.as_secs().is_multiple_of(30) {
                let (f, window_p99, mark) = {
                    let l = lock();
                    (l.figures(now), l.p99_since(window_mark), l.batches())
                };
                window_mark = mark;
                if now >= Duration::from_secs(60) && steady_mark.is_none() {
                    steady_mark = Some(mark);
                }
                eprintln!(
                    "scale: {:.1} min eps={:.0} rss_mib={:.1} p99_ms={:.1} (last 30 s: {window_p99:.1}) errors={} reads_sent={seq}",
                    now.as_secs_f64() / 60.0,
                    f.eps_achieved,
                    r as f64 / 1024.0,
                    f.p99_ms,
                    f.errors
                );
            }
        }
        if now >= duration {
            break;
        }
        let due = ((now.as_secs_f64() * o.eps as f64) as u64).saturating_sub(generated);
        if due == 0 || (due < batch_max && last_send.elapsed() < wait) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let n = due.min(batch_max);
        let items: Vec<serde_json::Value> = (0..n).map(|_| traffic.next_event()).collect();
        let body = serde_json::json!({
            "kind": "EventList",
            "apiVersion": "audit.k8s.io/v1",
            "metadata": {},
            "items": items,
        })
        .to_string()
        .into_bytes();
        generated += n;
        last_send = Instant::now();
        lane = (lane + 1) % lanes.len();
        lanes[lane]
            .send((body, n))
            .await
            .map_err(|_| anyhow::anyhow!("a webhook sender stopped"))?;
        for t in traffic.take_rotated() {
            report(&mut agents, &mut seq, &t)?;
        }
    }
    drop(lanes);
    for s in senders {
        s.await.context("webhook sender")?;
    }
    let wall = start.elapsed();
    let cpu = cpu_seconds(pid) - cpu0;
    let r = rss_kib(pid).unwrap_or(0);
    rss_peak = rss_peak.max(r);
    lock().rss(wall, r);

    // Every agent's observations acknowledged (stored) before counting.
    let flushed_by = Instant::now() + Duration::from_secs(120);
    let mut acked = 0u64;
    for a in &agents {
        let want = a.sent;
        let left = flushed_by.saturating_duration_since(Instant::now());
        let (st, ok) = a.handle.wait_for(left, |s| s.acked_seq >= want).await;
        if !ok {
            eprintln!(
                "scale: agent {} acknowledged {} of {want}: {st:?}",
                a.name, st.acked_seq
            );
        }
        acked += st.acked_seq.min(want);
    }
    let reads_sent: u64 = agents.iter().map(|a| a.sent).sum();
    let fig = lock().figures(wall);
    let steady_p99 = steady_mark.map(|m| lock().p99_since(m));
    let lat_p50 = fig.p50_ms;
    if let Ok(m) = super::report::fetch_metrics(api_port).await {
        for l in m.lines().filter(|l| {
            l.starts_with("credtrail_detector_state_entries")
                || l.starts_with("credtrail_alerts_total")
                || l.starts_with("credtrail_agent")
        }) {
            eprintln!("scale: {l}");
        }
        // Where a POST's time goes on the aggregator: waiting for the
        // writer thread, then its group (every write in it, and the commit).
        for (name, unit) in [
            ("credtrail_store_write_wait_seconds", 1000.0),
            ("credtrail_store_write_group_seconds", 1000.0),
            ("credtrail_store_write_group_jobs", 1.0),
        ] {
            if let Some((q, mean)) = super::report::histogram_figures(&m, name, &[0.5, 0.9, 0.99]) {
                eprintln!(
                    "scale: {name} (×{unit}) p50<={} p90<={} p99<={} mean={:.2}",
                    q[0] * unit,
                    q[1] * unit,
                    q[2] * unit,
                    mean * unit
                );
            }
        }
    }
    for a in agents {
        drop(a.input);
        a.handle.abort().await;
    }
    // Kubernetes' default terminationGracePeriodSeconds.
    let stop = agg.stop_within(Duration::from_secs(30))?;
    let c = rusqlite::Connection::open(&db)?;
    let stored_events: i64 = c.query_row("SELECT count(*) FROM audit_events", [], |r| r.get(0))?;
    let stored_reads: i64 = c.query_row(
        "SELECT count(*) FROM observations WHERE type IN ('credential_read', 'node_info')",
        [],
        |r| r.get(0),
    )?;
    let alerts: i64 = c.query_row("SELECT count(*) FROM alerts", [], |r| r.get(0))?;
    let db_bytes: u64 = ["scale.db", "scale.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum();
    let lost_events = generated.saturating_sub(stored_events as u64);
    let lost_reads = reads_sent.saturating_sub(stored_reads as u64);
    eprintln!(
        "scale: audit events generated={generated} stored={stored_events} (achieved {:.0}/s); observations (node info + reads) sent={reads_sent} acked={acked} stored={stored_reads}; alerts={alerts}; POST p50_ms={lat_p50:.1}; db_mib={:.0}; SIGTERM {:.2}s; peak rss",
        fig.eps_achieved,
        db_bytes as f64 / 1048576.0,
        stop.as_secs_f64()
    );
    if let Some(p) = steady_p99 {
        eprintln!("scale: POST p99_ms after the first minute (start-up scan done) = {p:.1}");
    }
    let out = ScaleFigures {
        rss_mib: rss_peak as f64 / 1024.0,
        cpu_cores: cpu / wall.as_secs_f64().max(0.001),
        p99_ms: fig.p99_ms,
        lost: lost_events + lost_reads,
        eps_achieved: fig.eps_achieved,
    };
    println!(
        "scale nodes={} pods={} audit_eps={} rss_mib={:.0} cpu_cores={:.2} p99_ms={:.1} lost={}",
        o.nodes, o.pods, o.eps, out.rss_mib, out.cpu_cores, out.p99_ms, out.lost
    );
    Ok(out)
}
