//! The soak test (`cargo xtask soak`): the real `credtrail-aggregator serve`
//! fed realistic audit traffic ([`traffic`]) through its real HTTPS webhook on
//! loopback, in `EventList` batches as the API server's batching webhook
//! backend sends them, for a fixed time and rate. It samples the
//! aggregator's RSS and every POST's latency and prints, every 30 s and
//! last, one line:
//!
//! `soak minutes=30 eps_target=3000 eps_achieved=2998 rss_start_mib=… rss_end_mib=… rss_slope_kib_per_min=… p99_ms=… errors=0`

pub mod bigdb;
pub mod report;
pub mod scale;
pub mod sender;
pub mod traffic;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::sync::mpsc;

use crate::certs::Pki;
use report::{Figures, Samples};
use sender::Sender;
use traffic::{Shape, Traffic};

/// What to run.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The aggregator binary (release build).
    #[arg(long)]
    pub aggregator: PathBuf,
    /// How long to drive traffic.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Audit events per second.
    #[arg(long, default_value_t = 3000)]
    pub eps: u64,
    /// Share of events from short-lived identities (CI jobs), in percent.
    #[arg(long, default_value_t = 10.0)]
    pub churn: f64,
    /// Seconds a workload's bound token is used before the pod gets a new one
    /// (an hour in a real cluster; shorter compresses time).
    #[arg(long, default_value_t = 600.0)]
    pub token_lifetime: f64,
    /// Policy file for the aggregator (e.g. smaller `detection.state` caps).
    #[arg(long)]
    pub policy: Option<PathBuf>,
    /// Most events per POST (the API server's --audit-webhook-batch-max-size).
    #[arg(long, default_value_t = 400)]
    pub batch_max: usize,
    /// Longest an event waits for its batch (--audit-webhook-batch-max-wait).
    #[arg(long, default_value_t = 100)]
    pub batch_wait_ms: u64,
    /// Regression guard: fail on any error or when the rate collapses below
    /// `--ci-min-rate` of the target (latency is not judged).
    #[arg(long)]
    pub ci: bool,
    /// Least share of the target rate `--ci` accepts.
    #[arg(long, default_value_t = 0.8)]
    pub ci_min_rate: f64,
    /// Keep the work folder (database, aggregator log) and print its path.
    #[arg(long)]
    pub keep: bool,
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

/// The running aggregator; killed when dropped.
struct Aggregator {
    child: Child,
    /// From spawn to the webhook's first answer.
    ready: Duration,
}

impl Drop for Aggregator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Aggregator {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the time it took to exit.
    fn stop(&mut self) -> anyhow::Result<Duration> {
        self.stop_within(Duration::from_secs(5))
    }

    /// SIGTERM, then waits up to `limit` for the exit.
    fn stop_within(&mut self, limit: Duration) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let pid = libc::pid_t::try_from(self.child.id()).context("pid")?;
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        while t.elapsed() < limit {
            if self.child.try_wait()?.is_some() {
                return Ok(t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        bail!(
            "the aggregator did not exit within {} s of SIGTERM",
            limit.as_secs()
        )
    }
}

/// RSS of a process, KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts `credtrail-aggregator serve` on `db` with the HTTPS webhook (a
/// bearer token, throw-away certificates in `dir`) and the HTTP API on free
/// loopback ports; returns once the webhook answers.
async fn start_aggregator(
    bin: &Path,
    db: &Path,
    dir: &Path,
    policy: Option<&Path>,
) -> anyhow::Result<(Aggregator, Sender, u16)> {
    let pki = Pki::generate(&["127.0.0.1"])?;
    let (agg, sender, api_port, _) =
        start_aggregator_with(bin, db, dir, policy, &pki, None).await?;
    Ok((agg, sender, api_port))
}

/// [`start_aggregator`] with a given PKI and, with `agents`, the agent
/// stream listener (mTLS, agents' CA of `pki`) on a free port, admitting
/// that many connections; returns that port too.
async fn start_aggregator_with(
    bin: &Path,
    db: &Path,
    dir: &Path,
    policy: Option<&Path>,
    pki: &Pki,
    agents: Option<usize>,
) -> anyhow::Result<(Aggregator, Sender, u16, u16)> {
    let paths = pki.write(&dir.join("pki"))?;
    let token = hex::encode(
        ring::rand::generate::<[u8; 32]>(&ring::rand::SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("random token"))?
            .expose(),
    );
    let token_file = dir.join("webhook-token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let webhook_port = free_port()?;
    let api_port = free_port()?;
    let log_path = dir.join("aggregator.log");
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(bin);
    cmd.arg("serve")
        .arg("--db")
        .arg(db)
        .args(["--webhook-listen", &format!("127.0.0.1:{webhook_port}")])
        .arg("--webhook-token-file")
        .arg(&token_file)
        .arg("--tls-cert")
        .arg(&paths.server_cert)
        .arg("--tls-key")
        .arg(&paths.server_key)
        .args(["--grpc-listen", "off"])
        .args(["--api-listen", &format!("127.0.0.1:{api_port}")])
        // The soak asks only /readyz and /metrics, on loopback.
        .arg("--api-insecure-no-auth")
        .env("CREDTRAIL_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let agent_port = match agents {
        Some(n) => {
            let port = free_port()?;
            cmd.args(["--agent-listen", &format!("127.0.0.1:{port}")])
                .arg("--agent-client-ca")
                .arg(&paths.agents_ca)
                .args(["--max-connections", &(n + 64).to_string()]);
            port
        }
        None => {
            cmd.args(["--agent-listen", "off"]);
            0
        }
    };
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    let t_start = Instant::now();
    let mut agg = Aggregator {
        child: cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?,
        ready: Duration::ZERO,
    };
    let tls = crate::apisim::https::client_config(&pki.server_ca.cert_pem(), None)?;
    let mut sender = Sender::new(
        format!("127.0.0.1:{webhook_port}").parse()?,
        "127.0.0.1".into(),
        tls,
        token,
    );
    sender
        .wait_ready(Duration::from_secs(120))
        .await
        .with_context(|| format!("the aggregator did not come up; see {}", log_path.display()))?;
    agg.ready = t_start.elapsed();
    Ok((agg, sender, api_port, agent_port))
}

/// Start-up on an existing database.
#[derive(Debug, Clone)]
pub struct Restart {
    pub db_mib: f64,
    pub events: u64,
    pub ready_s: f64,
    pub rss_mib: f64,
    pub stop_s: f64,
}

/// Starts the aggregator on `db`, measures the time until its webhook
/// answers and its RSS then, and stops it (SIGTERM).
pub async fn restart(bin: &Path, db: &Path) -> anyhow::Result<Restart> {
    let work = tempfile::Builder::new()
        .prefix("credtrail-restart-")
        .tempdir()
        .context("creating the work folder")?;
    let db_bytes: u64 = ["", "-wal"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum();
    let (mut agg, _sender, _) = start_aggregator(bin, db, work.path(), None).await?;
    let rss = rss_kib(agg.pid()).unwrap_or(0);
    let stop = agg.stop()?;
    let events = {
        let c = rusqlite::Connection::open(db)?;
        c.query_row("SELECT count(*) FROM audit_events", [], |r| {
            r.get::<_, i64>(0)
        })? as u64
    };
    Ok(Restart {
        db_mib: db_bytes as f64 / 1048576.0,
        events,
        ready_s: agg.ready.as_secs_f64(),
        rss_mib: rss as f64 / 1024.0,
        stop_s: stop.as_secs_f64(),
    })
}

/// Runs the soak; returns the final figures.
pub async fn run(o: Options) -> anyhow::Result<Figures> {
    anyhow::ensure!(
        o.minutes > 0.0 && o.eps > 0,
        "--minutes and --eps must be positive"
    );
    let work = tempfile::Builder::new()
        .prefix("credtrail-soak-")
        .tempdir()
        .context("creating the work folder")?;
    let dir = work.path().to_path_buf();
    let (mut agg, sender, api_port) = start_aggregator(
        &o.aggregator,
        &dir.join("soak.db"),
        &dir,
        o.policy.as_deref(),
    )
    .await?;
    eprintln!(
        "soak: aggregator pid {} up in {:.2}s; {} ev/s for {} min, churn {}%",
        agg.pid(),
        agg.ready.as_secs_f64(),
        o.eps,
        o.minutes,
        o.churn
    );

    let samples = Arc::new(Mutex::new(Samples::new(o.eps, o.minutes)));
    let (tx, rx) = mpsc::channel::<(Vec<u8>, u64)>(1);
    let sent = {
        let samples = samples.clone();
        tokio::spawn(async move { sender.drain(rx, &samples).await })
    };
    let shape = Shape {
        churn_percent: o.churn,
        token_lifetime: Duration::from_secs_f64(o.token_lifetime.max(0.0)),
        ..Shape::default()
    };
    let pid = agg.pid();
    let duration = Duration::from_secs_f64(o.minutes * 60.0);
    let generator = {
        let samples = samples.clone();
        let (batch_max, wait) = (o.batch_max.max(1), Duration::from_millis(o.batch_wait_ms));
        let eps = o.eps;
        tokio::spawn(async move {
            generate(shape, eps, duration, batch_max, wait, tx, pid, &samples).await
        })
    };
    let traffic = generator.await.context("generator task")??;
    sent.await.context("sender task")?;
    let mut fig = samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .figures(duration);
    println!("{}", fig.line(true));
    eprintln!("soak: p50_ms={:.1} events={}", fig.p50_ms, fig.events);
    eprintln!(
        "soak: {} short-lived identities, {} bound tokens issued",
        traffic.jobs_started, traffic.tokens_issued
    );
    if let Ok(m) = report::fetch_metrics(api_port).await {
        for l in m.lines().filter(|l| {
            l.starts_with("credtrail_detector_state")
                || l.starts_with("credtrail_audit_events_total")
        }) {
            eprintln!("soak: {l}");
        }
    }
    let db_bytes = ["soak.db", "soak.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum::<u64>();
    match agg.stop() {
        Ok(d) => eprintln!("soak: SIGTERM to exit {:.2}s", d.as_secs_f64()),
        Err(e) => {
            fig.errors += 1;
            eprintln!("soak: {e}");
        }
    }
    if fig.events > 0 {
        eprintln!(
            "soak: database {:.1} MiB, {:.1} bytes per accepted event",
            db_bytes as f64 / 1048576.0,
            db_bytes as f64 / fig.events as f64
        );
    }
    if o.keep {
        let kept = work.keep();
        eprintln!("soak: kept {}", kept.display());
    }
    if o.ci {
        let floor = o.ci_min_rate * o.eps as f64;
        if fig.errors > 0 {
            bail!("soak --ci: {} errors", fig.errors);
        }
        if fig.eps_achieved < floor {
            bail!(
                "soak --ci: the rate collapsed: {:.0} events/s achieved, below {floor:.0} ({}% of {})",
                fig.eps_achieved,
                o.ci_min_rate * 100.0,
                o.eps
            );
        }
    }
    Ok(fig)
}

/// Paces events at `eps`, cut into batches of at most `batch_max` or
/// whatever is due after `wait`; samples the aggregator's RSS every 5 s and
/// prints the line every 30 s.
#[allow(
    clippy::too_many_arguments,
    reason = "one call site, all plain settings"
)]
async fn generate(
    shape: Shape,
    eps: u64,
    duration: Duration,
    batch_max: usize,
    wait: Duration,
    tx: mpsc::Sender<(Vec<u8>, u64)>,
    pid: u32,
    samples: &Mutex<Samples>,
) -> anyhow::Result<Traffic> {
    let mut traffic = Traffic::new(shape);
    let start = Instant::now();
    let lock = || {
        samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    lock().start(rss_kib(pid).unwrap_or(0));
    let mut generated: u64 = 0;
    let mut last_send = start;
    let mut next_sample = Duration::from_secs(5);
    let mut next_print = Duration::from_secs(30);
    loop {
        let now = start.elapsed();
        if now >= next_sample {
            lock().rss(now, rss_kib(pid).unwrap_or(0));
            next_sample += Duration::from_secs(5);
        }
        if now >= next_print && now < duration {
            println!("{}", lock().figures(now).line(false));
            next_print += Duration::from_secs(30);
        }
        if now >= duration {
            break;
        }
        let due = ((now.as_secs_f64() * eps as f64) as u64).saturating_sub(generated);
        if due < batch_max as u64 && last_send.elapsed() < wait {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        if due == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        let n = due.min(batch_max as u64);
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
        if tx.send((body, n)).await.is_err() {
            bail!("the sender stopped");
        }
    }
    lock().rss(start.elapsed(), rss_kib(pid).unwrap_or(0));
    Ok(traffic)
}
