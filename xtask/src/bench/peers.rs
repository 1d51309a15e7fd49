//! `cargo xtask bench --peers`: what credtrail's node agent costs next to the
//! tools a platform team would otherwise run for the same watch, measured in
//! one run, interleaved: no tracing, the credtrail agent, bpftrace, auditd.
//!
//! Every tool watches the same thing:
//! - opens: the agent's default watched paths. bpftrace compares each
//!   `openat` path with their literal prefixes ([`WATCHED_PREFIXES`]) in its
//!   filter; auditd gets a read watch (`-w … -p r`) on each of their
//!   directories that exists on this host.
//! - connects: the API-server endpoint (a loopback port nobody connects to
//!   here). bpftrace compares the destination of each `connect`; auditd has
//!   no filter on a destination address, so it records `connect` with an
//!   IPv4 address length (`-S connect -F a2=16`), which is what an auditd
//!   user must do for this question.
//!
//! The workload is the agent-overhead one: `openat`+`close` of an unwatched
//! file and loopback connects to an unwatched port, in batches. Each round
//! measures every condition (the order rotates between rounds); the figure per
//! tool is the median over rounds of (its median batch / the round's median
//! batch without tracing). Printed last, exactly:
//! `openat ratio credtrail=… bpftrace=… auditd=…` and
//! `connect ratio credtrail=… bpftrace=… auditd=…`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::{Agent, CONNECT_BATCH, OPEN_BATCH, Options, Workload, batches, median};

/// The literal starts of the agent's default watch patterns
/// (`agent/src/patterns.rs` `DEFAULT_PATTERNS`, cut at the first glob).
pub const WATCHED_PREFIXES: &[&str] = &[
    "/var/run/secrets/kubernetes.io/serviceaccount/",
    "/run/secrets/kubernetes.io/serviceaccount/",
    "/var/lib/kubelet/pods/",
    "/etc/kubernetes/",
    "/root/.kube/config",
    "/home/",
    "/var/lib/kubelet/kubeconfig",
    "/etc/rancher/k3s/k3s.yaml",
    "/var/lib/kubelet/pki/",
];

/// The directories auditd watches for the same paths.
const WATCHED_DIRS: &[&str] = &[
    "/var/run/secrets/kubernetes.io/serviceaccount",
    "/run/secrets/kubernetes.io/serviceaccount",
    "/var/lib/kubelet/pods",
    "/etc/kubernetes",
    "/root/.kube",
    "/home",
    "/var/lib/kubelet",
    "/etc/rancher/k3s",
];

/// The audit rules' key (removed with `auditctl -D -k` at the end).
const AUDIT_KEY: &str = "credtrail-bench";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tool {
    None,
    Credtrail,
    Bpftrace,
    Auditd,
}

impl Tool {
    const ALL: [Tool; 4] = [Tool::None, Tool::Credtrail, Tool::Bpftrace, Tool::Auditd];
    fn name(self) -> &'static str {
        match self {
            Tool::None => "none",
            Tool::Credtrail => "credtrail",
            Tool::Bpftrace => "bpftrace",
            Tool::Auditd => "auditd",
        }
    }
}

/// Installs bpftrace and auditd with apt when they are missing.
fn ensure_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = [("bpftrace", "bpftrace"), ("auditctl", "auditd")]
        .into_iter()
        .filter(|(bin, _)| !crate::setup::on_path(bin))
        .map(|(_, pkg)| pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    println!("bench --peers: installing {}", missing.join(" "));
    crate::setup::status(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
    .context("apt-get install bpftrace auditd")
}

/// The bpftrace program: the same prefix and endpoint tests as the agent.
fn bpftrace_program(watched: SocketAddr) -> anyhow::Result<String> {
    let SocketAddr::V4(v4) = watched else {
        bail!("the watched endpoint must be IPv4");
    };
    let opens = WATCHED_PREFIXES
        .iter()
        .map(|p| format!("strncmp(str(args->filename), \"{p}\", {}) == 0", p.len()))
        .collect::<Vec<_>>()
        .join(" || ");
    // sin_port and sin_addr as the kernel stores them (network order), read
    // as little-endian integers.
    let port = v4.port().swap_bytes();
    let addr = u32::from_le_bytes(v4.ip().octets());
    Ok(format!(
        "tracepoint:syscalls:sys_enter_openat /{opens}/ {{ printf(\"open %d %s\\n\", pid, str(args->filename)); }}\n\
         tracepoint:syscalls:sys_enter_connect /args->addrlen == 16/ {{\n\
           $sa = (struct sockaddr_in *)args->uservaddr;\n\
           if ($sa->sin_family == 2 && $sa->sin_port == {port} && $sa->sin_addr.s_addr == {addr}) {{ printf(\"connect %d\\n\", pid); }}\n\
         }}\n\
         BEGIN {{ printf(\"bpftrace attached\\n\"); }}\n"
    ))
}

/// A running tracer, stopped on drop.
enum Running {
    None,
    /// Stopped by its own `Drop`.
    Agent {
        _agent: Agent,
    },
    Bpftrace(Child),
    /// Audit rules loaded and auditing enabled; `enabled` is the state to restore.
    Auditd {
        enabled: String,
    },
}

impl Drop for Running {
    fn drop(&mut self) {
        match self {
            Running::Bpftrace(c) => {
                // SAFETY: signalling our own child by pid.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
                let _ = c.wait();
            }
            Running::Auditd { enabled } => {
                let _ = Command::new("auditctl")
                    .args(["-D", "-k", AUDIT_KEY])
                    .stdout(Stdio::null())
                    .status();
                let _ = Command::new("auditctl")
                    .args(["-e", enabled])
                    .stdout(Stdio::null())
                    .status();
            }
            Running::None | Running::Agent { .. } => {}
        }
    }
}

fn start_bpftrace(program: &str, log: &Path) -> anyhow::Result<Running> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    // stderr to a file too: an unread pipe would block bpftrace once full.
    let err_path = log.with_extension("err");
    let err = std::fs::File::create(&err_path)
        .with_context(|| format!("creating {}", err_path.display()))?;
    let mut child = Command::new("bpftrace")
        .args(["-e", program])
        .stdout(out)
        .stderr(err)
        .spawn()
        .context("starting bpftrace")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("bpftrace attached") {
            return Ok(Running::Bpftrace(child));
        }
        if let Some(st) = child.try_wait()? {
            let err = std::fs::read_to_string(&err_path).unwrap_or_default();
            let tail: Vec<&str> = err.lines().take(20).collect();
            bail!(
                "bpftrace exited ({st}) before attaching:\n{}",
                tail.join("\n")
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("bpftrace did not attach within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A line of `auditctl -s` (`enabled`, `pid`, ...).
fn audit_status(field: &str) -> anyhow::Result<String> {
    let out = Command::new("auditctl").arg("-s").output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(' ').map(str::to_owned))
        .unwrap_or_default())
}

/// Loads the rules and enables auditing (auditing stays off for the other
/// tools: an enabled audit subsystem costs every system call).
fn start_auditd(dirs: &[&str]) -> anyhow::Result<Running> {
    let running = Running::Auditd {
        enabled: audit_status("enabled")?,
    };
    let add = |args: &[&str]| -> anyhow::Result<()> {
        let out = Command::new("auditctl").args(args).output()?;
        if !out.status.success() {
            bail!(
                "auditctl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    for d in dirs {
        add(&["-w", d, "-p", "r", "-k", AUDIT_KEY])?;
    }
    add(&[
        "-a",
        "always,exit",
        "-F",
        "arch=b64",
        "-S",
        "connect",
        "-F",
        "a2=16",
        "-k",
        AUDIT_KEY,
    ])?;
    Ok(running)
}

/// The audit daemon this bench started (stopped at the end).
struct Daemon(Option<u32>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: signalling the daemon this bench started.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
    }
}

/// The pid of a running `auditd`, if any.
fn auditd_pid() -> Option<u32> {
    let out = Command::new("pgrep").args(["-x", "auditd"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Makes sure the audit daemon takes the records (else the kernel logs them);
/// starts it (leaving auditing as it was) when none runs.
fn ensure_auditd_running() -> anyhow::Result<Daemon> {
    if auditd_pid().is_some() {
        return Ok(Daemon(None));
    }
    crate::setup::status(Command::new("auditd").args(["-s", "nochange"]))
        .context("starting auditd")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = auditd_pid() {
            return Ok(Daemon(Some(pid)));
        }
        if Instant::now() > deadline {
            bail!("auditd did not start within 10 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        bail!("bench --peers loads eBPF programs and audit rules: run it as root");
    }
    ensure_tools()?;
    let _daemon = ensure_auditd_running()?;
    let w = Workload::prepare(opts)?;
    let program = bpftrace_program(w.watched)?;
    let bpftrace_log = w.dir.join("bpftrace.out");
    let dirs: Vec<&str> = WATCHED_DIRS
        .iter()
        .copied()
        .filter(|d| Path::new(d).is_dir())
        .collect();
    let rounds = opts.rounds.max(1);
    let (opens, connects) = (opts.opens / rounds, opts.connects / rounds);
    println!(
        "bench --peers: {rounds} rounds x ({opens} openat+close, {connects} connects) per tool; \
         auditd watches {} of {} directories (the others do not exist here)",
        dirs.len(),
        WATCHED_DIRS.len()
    );
    w.warm_up(opens / 10 + 1, connects / 10 + 1)?;
    // Per tool, per round: median batch (ns).
    let mut open_med: Vec<Vec<f64>> = vec![Vec::new(); Tool::ALL.len()];
    let mut connect_med: Vec<Vec<f64>> = vec![Vec::new(); Tool::ALL.len()];
    for r in 0..rounds as usize {
        for k in 0..Tool::ALL.len() {
            let i = (r + k) % Tool::ALL.len();
            let tool = Tool::ALL[i];
            let _running = match tool {
                Tool::None => Running::None,
                Tool::Credtrail => Running::Agent {
                    _agent: Agent::start(&w.agent, opts, w.watched)?,
                },
                Tool::Bpftrace => start_bpftrace(&program, &bpftrace_log)?,
                Tool::Auditd => start_auditd(&dirs)?,
            };
            let o = batches(opens, OPEN_BATCH, |n| w.opens(n))?;
            let c = batches(connects, CONNECT_BATCH, |n| w.connects(n))?;
            println!(
                "  round {} {:<10} openat median {:>6.0} ns, connect median {:>7.1} us",
                r + 1,
                tool.name(),
                median(&o),
                median(&c) / 1000.0
            );
            open_med[i].push(median(&o));
            connect_med[i].push(median(&c));
        }
    }
    let ratio = |m: &[Vec<f64>], i: usize| -> f64 {
        let per_round: Vec<f64> = m[i].iter().zip(&m[0]).map(|(t, b)| t / b).collect();
        median(&per_round)
    };
    println!(
        "without tracing: openat {:.0} ns, connect {:.1} us (medians)",
        median(&open_med[0]),
        median(&connect_med[0]) / 1000.0
    );
    let line = |what: &str, m: &[Vec<f64>]| {
        format!(
            "{what} ratio credtrail={:.2} bpftrace={:.2} auditd={:.2}",
            ratio(m, 1),
            ratio(m, 2),
            ratio(m, 3)
        )
    };
    println!("{}", line("openat", &open_med));
    println!("{}", line("connect", &connect_med));
    Ok(())
}
