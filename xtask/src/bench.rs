//! `cargo xtask bench`: benchmarks that print ratios against a baseline
//! measured in the same run.
//!
//! Agent overhead (kernel side): `--opens` `openat`+`close` of an existing
//! file whose path is not watched, and `--connects` loopback TCP connects to
//! a port that is not watched, timed without the agent and with it attached
//! (the real `credtrail-agent` binary, `--hook auto`). The work is split into
//! `--rounds` rounds; each round measures both conditions, alternating which
//! goes first, so drift and other load on the machine hit both alike. It
//! prints the ratio of total time with the agent to total time without, for
//! each workload (target: at most 1.03).
//!
//! A third condition separates what the fallback hooks cost from what the
//! kernel charges for having any syscall tracepoint enabled: the "floor"
//! enables, through tracefs and without any BPF, the `sys_enter_mq_open`
//! event (a system call the benchmark never makes). Enabling any syscall
//! tracepoint sends every system call of every task through the kernel's
//! slow syscall-entry path, which the agent's system-call fallback hooks
//! also triggers; LSM/fentry do not. The ratio with the agent over the floor
//! is then what credtrail's programs themselves cost.
//!
//! Other benchmarks are added as further steps in [`steps`]; `--scale` runs
//! the scale bench alone (`scale.rs`).

use std::io::{BufRead as _, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

mod peers;

#[derive(clap::Args, Clone)]
pub struct Options {
    /// `openat` calls per condition (with and without the agent).
    #[arg(long, default_value_t = 1_000_000)]
    pub opens: u64,
    /// Loopback connects per condition.
    #[arg(long, default_value_t = 100_000)]
    pub connects: u64,
    /// Rounds the work is split into (conditions alternate within each).
    #[arg(long, default_value_t = 10)]
    pub rounds: u64,
    /// Use the release build of the agent (default: debug; the kernel
    /// programs are always built optimised).
    #[arg(long)]
    pub release: bool,
    /// Open hook the agent uses (`auto` picks what the kernel allows).
    #[arg(long, default_value = "auto")]
    pub hook: String,
    /// Connect hook the agent uses (`auto`: tp-btf, else the classic tracepoint).
    #[arg(long, default_value = "auto")]
    pub connect_hook: String,
    /// Run only the agent overhead benchmark.
    #[arg(long)]
    pub agent_only: bool,
    /// Run only the peer comparison (credtrail, bpftrace, auditd; `bench/peers.rs`).
    #[arg(long)]
    pub peers: bool,
    /// Time each batch by the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`:
    /// user + system time, the kernel programs included) instead of the wall
    /// clock: on a shared machine, time the thread waited for a core is not counted.
    #[arg(long)]
    pub cpu_time: bool,
    #[command(flatten)]
    pub scale: crate::scale::ScaleOptions,
}

/// One benchmark step.
pub struct Step {
    pub name: &'static str,
    pub run: fn(&Options) -> anyhow::Result<()>,
}

/// The benchmarks, in order. Add yours here.
pub fn steps() -> Vec<Step> {
    vec![
        Step {
            name: "agent-overhead",
            run: agent_overhead,
        },
        Step {
            name: "aggregator-ingest",
            run: |_| cargo_bench("credtrail-aggregator", "ingest"),
        },
        Step {
            name: "aggregator-latency",
            run: |_| cargo_bench("credtrail-aggregator", "latency"),
        },
        Step {
            name: "agent-stream",
            run: |_| cargo_bench("credtrail-tests", "stream"),
        },
    ]
}

/// `cargo bench -p <package> --bench <bench>` (the bench prints its own ratios).
fn cargo_bench(package: &str, bench: &str) -> anyhow::Result<()> {
    crate::setup::status(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["bench", "-p", package, "--bench", bench]),
    )
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    if opts.cpu_time {
        use_cpu_clock();
        println!("bench: batches timed by the thread's CPU time (--cpu-time)");
    }
    if opts.peers {
        println!("==> bench: peers");
        return peers::run(&opts).context("bench peers");
    }
    if opts.scale.scale {
        return crate::scale::run(&opts.scale);
    }
    for step in steps() {
        if opts.agent_only && step.name != "agent-overhead" {
            continue;
        }
        println!("==> bench: {}", step.name);
        (step.run)(&opts).with_context(|| format!("bench {}", step.name))?;
    }
    Ok(())
}

/// A running agent, stopped with SIGTERM on drop.
pub(crate) struct Agent {
    child: Child,
}

impl Agent {
    pub fn start(bin: &Path, opts: &Options, watched: SocketAddr) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args([
                "--output",
                "jsonl",
                "/dev/null",
                "--no-scan",
                "--node-name",
                "bench",
            ])
            .args(["--hook", &opts.hook, "--connect-hook", &opts.connect_hook])
            .args(["--api-endpoint", &watched.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("agent stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("agent running")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(Ok(line));
                } else if line.contains("Error")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(Err(line));
                }
            }
        });
        let mut agent = Self { child };
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(line)) => {
                if let Some(h) = line.find("hooks") {
                    let hooks = &line[h..];
                    static ONCE: std::sync::Once = std::sync::Once::new();
                    ONCE.call_once(|| println!("agent attached: {hooks}"));
                }
                Ok(agent)
            }
            Ok(Err(line)) => bail!("the agent failed to start: {line}"),
            Err(_) => {
                let _ = agent.child.kill();
                bail!("the agent did not report `agent running` within 60s")
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

pub(crate) fn time_opens(path: &std::ffi::CStr, n: u64) -> anyhow::Result<Duration> {
    time_opens_at(libc::AT_FDCWD, path, n)
}

/// Whether batches are timed by thread CPU time (`--cpu-time`).
static CPU_CLOCK: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Times batches by the calling thread's CPU time from now on.
pub(crate) fn use_cpu_clock() {
    CPU_CLOCK.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// A start point on the bench's clock: the wall clock, or with `--cpu-time`
/// the calling thread's CPU time.
#[derive(Clone, Copy)]
enum Stamp {
    Wall(Instant),
    Cpu(Duration),
}

impl Stamp {
    fn now() -> Self {
        if CPU_CLOCK.load(std::sync::atomic::Ordering::Relaxed) {
            Self::Cpu(thread_cpu_time())
        } else {
            Self::Wall(Instant::now())
        }
    }

    fn elapsed(self) -> Duration {
        match self {
            Self::Wall(t) => t.elapsed(),
            Self::Cpu(t) => thread_cpu_time().saturating_sub(t),
        }
    }
}

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `openat(dirfd, path)`+`close`, `n` times.
fn time_opens_at(dirfd: i32, path: &std::ffi::CStr, n: u64) -> anyhow::Result<Duration> {
    let t = Stamp::now();
    for _ in 0..n {
        // SAFETY: valid NUL-terminated path; the fd is closed at once.
        let fd = unsafe { libc::openat(dirfd, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            bail!("openat failed: {}", std::io::Error::last_os_error());
        }
        // SAFETY: fd was just opened by us.
        unsafe { libc::close(fd) };
    }
    Ok(t.elapsed())
}

fn time_connects(to: SocketAddr, n: u64) -> anyhow::Result<Duration> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    let t = Stamp::now();
    for _ in 0..n {
        let s = TcpStream::connect(to).with_context(|| format!("connecting to {to}"))?;
        // Close with RST: no TIME_WAIT, so ephemeral ports never run out.
        // SAFETY: valid socket and option struct of the right size.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&raw const linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        drop(s);
    }
    Ok(t.elapsed())
}

/// Per-operation times (ns) of each batch, per workload, for one condition.
#[derive(Default)]
struct Samples {
    opens: Vec<f64>,
    /// Opens of the path that shares a head with a watched prefix.
    opens_near: Vec<f64>,
    /// Relative opens (`openat(dirfd, "notes.txt")`).
    opens_rel: Vec<f64>,
    connects: Vec<f64>,
}

/// Operations per timed batch: small enough that a burst of other load on
/// the machine spoils few batches, large enough to time precisely.
pub(crate) const OPEN_BATCH: u64 = 10_000;
pub(crate) const CONNECT_BATCH: u64 = 500;

pub(crate) fn batches(
    total: u64,
    batch: u64,
    mut f: impl FnMut(u64) -> anyhow::Result<Duration>,
) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(batch);
        out.push(per_op_ns(f(n)?, n));
        left -= n;
    }
    Ok(out)
}

pub(crate) fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { 0.0 } else { v[v.len() / 2] }
}

fn minimum(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

/// What the agent benchmarks share: a private copy of the agent binary, an
/// unwatched file to open, a loopback listener to connect to, and a watched
/// endpoint (another port nobody connects to).
pub(crate) struct Workload {
    pub dir: PathBuf,
    pub agent: PathBuf,
    file: PathBuf,
    cpath: std::ffi::CString,
    pub target: SocketAddr,
    pub watched: SocketAddr,
    _unused: TcpListener,
}

impl Workload {
    pub fn prepare(opts: &Options) -> anyhow::Result<Self> {
        let profile = if opts.release { "release" } else { "debug" };
        // `CREDTRAIL_BENCH_AGENT=/path/to/credtrail-agent` measures that binary
        // (e.g. a build of an older commit, for a before/after comparison).
        let given = std::env::var_os("CREDTRAIL_BENCH_AGENT").map(PathBuf::from);
        if given.is_none() {
            let mut build = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
            build.args(["build", "--bin", "credtrail-agent", "-p", "credtrail-agent"]);
            if opts.release {
                build.arg("--release");
            }
            crate::setup::status(&mut build)?;
        }
        let dir = std::env::temp_dir().join(format!("credtrail-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        // A private copy: rebuilding the workspace during the run cannot swap it.
        let agent = dir.join("credtrail-agent");
        let source = given.unwrap_or_else(|| crate::build::agent_binary(profile));
        std::fs::copy(&source, &agent).with_context(|| {
            format!(
                "copying the agent {} to {}",
                source.display(),
                agent.display()
            )
        })?;
        let file: PathBuf = dir.join("not-a-credential.txt");
        std::fs::write(&file, b"x").with_context(|| format!("writing {}", file.display()))?;
        let cpath = std::ffi::CString::new(file.as_os_str().as_encoded_bytes())?;
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the loopback listener")?;
        let target = listener.local_addr()?;
        // A deep accept queue: when the accepting thread is not scheduled for a
        // while (2 shared cores), a full queue drops SYNs and the client waits a
        // whole second to retransmit, which swamps what is measured.
        // SAFETY: listen(2) on our own bound socket.
        if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
            bail!("listen: {}", std::io::Error::last_os_error());
        }
        std::thread::spawn(move || {
            for s in listener.incoming() {
                drop(s);
            }
        });
        // The tools watch another port on the same address: the connects are
        // looked up and not matched, the case the benchmark measures.
        let unused = TcpListener::bind("127.0.0.1:0")?;
        let watched = unused.local_addr()?;
        Ok(Self {
            dir,
            agent,
            file,
            cpath,
            target,
            watched,
            _unused: unused,
        })
    }

    pub fn opens(&self, n: u64) -> anyhow::Result<Duration> {
        time_opens(&self.cpath, n)
    }

    pub fn connects(&self, n: u64) -> anyhow::Result<Duration> {
        time_connects(self.target, n)
    }

    /// Page cache, dentry cache, listener thread.
    pub fn warm_up(&self, opens: u64, connects: u64) -> anyhow::Result<()> {
        self.opens(opens)?;
        self.connects(connects)?;
        Ok(())
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn agent_overhead(opts: &Options) -> anyhow::Result<()> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        bail!("the agent overhead benchmark loads eBPF programs: run it as root");
    }
    let w = Workload::prepare(opts)?;
    let (bin, file, cpath, target, watched) = (&w.agent, &w.file, &w.cpath, w.target, w.watched);
    // A second unwatched path that shares its first 8 bytes with a watched
    // prefix (`/var/lib/kubelet/...`): it passes the head test and costs a
    // prefix-trie lookup. Timed besides the main figure, not in it.
    let near_dir = PathBuf::from(format!("/var/lib/credtrail-bench-{}", std::process::id()));
    std::fs::create_dir_all(&near_dir)
        .with_context(|| format!("creating {}", near_dir.display()))?;
    let near = near_dir.join("not-a-credential.txt");
    std::fs::write(&near, b"x").with_context(|| format!("writing {}", near.display()))?;
    let cnear = std::ffi::CString::new(near.as_os_str().as_encoded_bytes())?;
    // A relative open by directory descriptor (what `find`, `rm -r`, `git`
    // do): its prefix cannot be judged, so the name test decides.
    std::fs::write(w.dir.join("notes.txt"), b"x")?;
    let dir_fd =
        std::fs::File::open(&w.dir).with_context(|| format!("opening {}", w.dir.display()))?;
    let rel = c"notes.txt";

    let rounds = opts.rounds.max(1);
    let (opens, connects) = (opts.opens / rounds, opts.connects / rounds);
    println!(
        "agent overhead: {rounds} rounds x ({opens} openat+close of {}, {connects} connects to {target}), \
         batches of {OPEN_BATCH} / {CONNECT_BATCH}; agent {}",
        file.display(),
        bin.display()
    );
    // Warm-up (page cache, dentry cache, listener thread).
    time_opens(cpath, opens / 10 + 1)?;
    time_connects(target, connects / 10 + 1)?;

    let (mut off, mut on, mut floor) = (Samples::default(), Samples::default(), Samples::default());
    let (mut open_ratios, mut connect_ratios) = (Vec::new(), Vec::new());
    let (mut open_floor, mut connect_floor) = (Vec::new(), Vec::new());
    let tracefs = crate::setup::tracefs_dir()?;
    for r in 0..rounds {
        let (n_off, n_on, n_fl) = (off.opens.len(), on.opens.len(), floor.opens.len());
        let (c_off, c_on, c_fl) = (off.connects.len(), on.connects.len(), floor.connects.len());
        let measure = |cond: Condition, into: &mut Samples| -> anyhow::Result<()> {
            let _agent = match cond {
                Condition::Agent => Some(Agent::start(bin, opts, watched)?),
                _ => None,
            };
            let _floor = match cond {
                Condition::Floor => Some(TracefsEvent::enable(
                    &tracefs,
                    "syscalls/sys_enter_mq_open",
                )?),
                _ => None,
            };
            let o = batches(opens, OPEN_BATCH, |n| time_opens(cpath, n))?;
            let c = batches(connects, CONNECT_BATCH, |n| time_connects(target, n))?;
            let o_near = batches(opens / 4, OPEN_BATCH, |n| time_opens(&cnear, n))?;
            let o_rel = batches(opens / 4, OPEN_BATCH, |n| {
                time_opens_at(dir_fd.as_raw_fd(), rel, n)
            })?;
            println!(
                "  round {} {:<13} openat median {:>6.0} ns, connect median {:>7.1} us",
                r + 1,
                cond.label(),
                median(&o),
                median(&c) / 1000.0
            );
            into.opens.extend(o);
            into.connects.extend(c);
            into.opens_near.extend(o_near);
            into.opens_rel.extend(o_rel);
            Ok(())
        };
        // Rotate the order so that drift hits every condition alike.
        for k in 0..3 {
            match (r + k) % 3 {
                0 => measure(Condition::Without, &mut off)?,
                1 => measure(Condition::Agent, &mut on)?,
                _ => measure(Condition::Floor, &mut floor)?,
            }
        }
        // This round's pairs: median batch with the agent / without, and
        // with the agent / the syscall-tracepoint floor.
        open_ratios.push(median(&on.opens[n_on..]) / median(&off.opens[n_off..]));
        connect_ratios.push(median(&on.connects[c_on..]) / median(&off.connects[c_off..]));
        open_floor.push(median(&on.opens[n_on..]) / median(&floor.opens[n_fl..]));
        connect_floor.push(median(&on.connects[c_on..]) / median(&floor.connects[c_fl..]));
    }
    // Headline: the median over rounds of each round's paired ratio (robust
    // to rounds where the whole machine was busier); the pooled fastest
    // batches are printed too (the least disturbed measure of kernel cost).
    let ro = median(&open_ratios);
    let rc = median(&connect_ratios);
    println!(
        "openat:  {} calls each; per call median {:.0} ns without the agent, {:.0} ns with it (fastest batch {:.0} / {:.0} ns, ratio {:.3})",
        opens * rounds,
        median(&off.opens),
        median(&on.opens),
        minimum(&off.opens),
        minimum(&on.opens),
        minimum(&on.opens) / minimum(&off.opens)
    );
    println!(
        "connect: {} connects each; per connect median {:.1} us without the agent, {:.1} us with it (fastest batch {:.1} / {:.1} us, ratio {:.3})",
        connects * rounds,
        median(&off.connects) / 1000.0,
        median(&on.connects) / 1000.0,
        minimum(&off.connects) / 1000.0,
        minimum(&on.connects) / 1000.0,
        minimum(&on.connects) / minimum(&off.connects)
    );
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.3}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!(
        "per-round ratios: openat [{}], connect [{}]",
        fmt(&open_ratios),
        fmt(&connect_ratios)
    );
    println!(
        "RATIO openat  (with/without agent, median of paired rounds): {ro:.3}  (target <= 1.03)"
    );
    println!(
        "RATIO connect (with/without agent, median of paired rounds): {rc:.3}  (target <= 1.03)"
    );
    println!(
        "floor (any syscall tracepoint enabled, no BPF) / without: openat {:.3}, connect {:.3}",
        median(&floor.opens) / median(&off.opens),
        median(&floor.connects) / median(&off.connects)
    );
    println!(
        "RATIO openat  above the syscall-tracepoint floor (with agent / floor): {:.3}",
        median(&open_floor)
    );
    println!(
        "RATIO connect above the syscall-tracepoint floor (with agent / floor): {:.3}",
        median(&connect_floor)
    );
    println!(
        "openat of {} (passes the head test, misses the prefix trie; {} calls each): \
         with/without {:.3}, with/floor {:.3}",
        near.display(),
        opens / 4 * rounds,
        median(&on.opens_near) / median(&off.opens_near),
        median(&on.opens_near) / median(&floor.opens_near)
    );
    println!(
        "openat(dirfd, \"{}\") (relative: the name test decides; {} calls each): \
         with/without {:.3}, with/floor {:.3}",
        rel.to_string_lossy(),
        opens / 4 * rounds,
        median(&on.opens_rel) / median(&off.opens_rel),
        median(&on.opens_rel) / median(&floor.opens_rel)
    );
    let _ = std::fs::remove_dir_all(&near_dir);
    Ok(())
}

/// What a round measures under.
#[derive(Clone, Copy)]
enum Condition {
    Without,
    Agent,
    Floor,
}

impl Condition {
    fn label(self) -> &'static str {
        match self {
            Self::Without => "without:",
            Self::Agent => "with agent:",
            Self::Floor => "floor:",
        }
    }
}

/// A tracefs event enabled (plain ftrace, no BPF) until dropped.
struct TracefsEvent {
    enable: PathBuf,
}

impl TracefsEvent {
    fn enable(tracefs: &Path, event: &str) -> anyhow::Result<Self> {
        let enable = tracefs.join("events").join(event).join("enable");
        std::fs::write(&enable, "1")
            .with_context(|| format!("writing 1 to {}", enable.display()))?;
        Ok(Self { enable })
    }
}

impl Drop for TracefsEvent {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.enable, "0");
    }
}

fn per_op_ns(d: Duration, n: u64) -> f64 {
    d.as_nanos() as f64 / n.max(1) as f64
}
