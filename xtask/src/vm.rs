//! `cargo xtask vm-test`: prove the agent on kernels other than the build machine's.
//!
//! Downloads Debian kernel packages (`apt-get download`), builds an initramfs holding the
//! agent's privileged test binaries (`tests/tests/agent_*.rs`), boots each kernel in qemu with
//! `-accel tcg` once per hook path (BPF LSM on, BPF LSM off, tracepoint forced), reads one
//! result line per test binary from the serial console, and also runs the same binaries on
//! the host kernel natively. Prints pass or fail and the hook path used, per kernel and boot.
//!
//! `--bench` instead measures what the open hooks cost in the guests (`vm/bench.rs`).

pub(crate) mod bench;
mod build;
mod cpio;
mod host;
mod initramfs;
mod judge;
mod kernels;
mod qemu;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use initramfs::TestBinary;

#[derive(clap::Args)]
pub struct Options {
    /// Kernels to boot as `[SUITE:]PACKAGE`, packages or metapackages (default: Debian 12's 6.1,
    /// bookworm's 6.12 and Debian 11's 5.10: `bullseye:linux-image-amd64`).
    #[arg(long = "kernel")]
    kernels: Vec<String>,
    /// Only these boots (bpf-lsm, no-bpf-lsm, raw-tracepoint, tracepoint); default all.
    #[arg(long = "boot")]
    boots: Vec<String>,
    /// Test binaries to run instead of building `tests/tests/agent_*.rs`.
    #[arg(long = "test-binary")]
    test_binaries: Vec<PathBuf>,
    /// Seconds one boot may take before it counts as failed.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 2048)]
    memory: u32,
    /// Extra kernel command-line words, e.g. `RUST_LOG=credtrail_agent=debug` (reaches the
    /// tests' environment).
    #[arg(long)]
    append: Vec<String>,
    /// Skip the native run on the host kernel.
    #[arg(long)]
    no_host: bool,
    /// Measure the open hooks' cost instead of running the tests: the same open loop
    /// without and with the agent on LSM and on fentry, in one boot (BPF LSM on) of each
    /// kernel, interleaved rounds; default kernels 6.1 and 6.12 (`--boot no-bpf-lsm` adds
    /// fentry and the raw tracepoint with BPF LSM off). Prints
    /// `vm <kernel> <hook> openat ratio=<r>x` (under TCG emulation with -icount).
    #[arg(long)]
    bench: bool,
    /// Rounds of the bench (each measures every condition once, the order rotated).
    #[arg(long, default_value_t = 3)]
    bench_rounds: u32,
    /// `openat`+`close` calls per path, condition and round of the bench (timed in
    /// batches of 1,000; -icount makes the timing deterministic, so few are needed).
    #[arg(long, default_value_t = 5_000)]
    bench_opens: u64,
}

/// One boot of the matrix: the LSM list on the command line, the hook modes the agent is
/// told to use, and the open-capture and connect hooks it must then report.
struct BootKind {
    name: &'static str,
    lsm: &'static str,
    hook_mode: &'static str,
    expect: &'static str,
    connect_hook: &'static str,
    expect_connect: &'static str,
    /// Hooks `--bench` measures in this boot (comma-separated agent `--hook` values; empty:
    /// the boot is not part of the bench).
    bench: &'static str,
}

const BOOTS: &[BootKind] = &[
    BootKind {
        name: "bpf-lsm",
        lsm: "lockdown,capability,landlock,yama,apparmor,bpf",
        hook_mode: "auto",
        expect: "lsm",
        connect_hook: "auto",
        expect_connect: "tp_btf_inet_sock_set_state",
        bench: "lsm,fentry",
    },
    BootKind {
        name: "no-bpf-lsm",
        lsm: "lockdown,capability,landlock,yama,apparmor",
        hook_mode: "auto",
        expect: "fentry",
        connect_hook: "auto",
        expect_connect: "tp_btf_inet_sock_set_state",
        bench: "fentry,raw-tracepoint",
    },
    BootKind {
        name: "raw-tracepoint",
        lsm: "lockdown,capability,landlock,yama,apparmor",
        hook_mode: "raw-tracepoint",
        expect: "raw_tracepoint",
        connect_hook: "auto",
        expect_connect: "tp_btf_inet_sock_set_state",
        bench: "",
    },
    BootKind {
        name: "tracepoint",
        lsm: "lockdown,capability,landlock,yama,apparmor",
        hook_mode: "tracepoint",
        expect: "tracepoint",
        connect_hook: "tracepoint",
        expect_connect: "tracepoint_inet_sock_set_state",
        bench: "",
    },
];

/// The hooks `--bench` measures in a boot on a kernel release: the LSM boot of a kernel
/// whose agent must fall back to fentry (before 5.11) measures fentry.
fn bench_hooks(kind: &BootKind, release: &str) -> Vec<&'static str> {
    let mut hooks: Vec<&'static str> = Vec::new();
    for h in kind.bench.split(',').filter(|h| !h.is_empty()) {
        let h = if h == "lsm" && expected_hook(kind, release) == "fentry" {
            "fentry"
        } else {
            h
        };
        if !hooks.contains(&h) {
            hooks.push(h);
        }
    }
    hooks
}

/// The open hook a boot must end up with on a given kernel release. Before 5.11,
/// `bpf_d_path` is not available to LSM programs (only to fentry on an allowlist that
/// includes `security_file_open`), so on those kernels the agent's LSM program is refused
/// and `auto` correctly falls back to fentry even with `bpf` in the LSM list.
fn expected_hook(kind: &BootKind, release: &str) -> &'static str {
    if kind.expect == "lsm" && kernel_before(release, (5, 11)) {
        "fentry"
    } else {
        kind.expect
    }
}

/// Whether a kernel release such as `5.10.0-46-amd64` is older than `major.minor`.
fn kernel_before(release: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let found_major = parts.next().and_then(|p| p.parse::<u32>().ok());
    let found_minor = parts.next().and_then(|p| p.parse::<u32>().ok());
    match (found_major, found_minor) {
        (Some(a), Some(b)) => (a, b) < (major, minor),
        _ => false,
    }
}

/// What the host kernel must pick natively: fentry and BPF LSM are refused there.
const HOST_EXPECT: &str = "raw_tracepoint";

struct Row {
    kernel: String,
    boot: String,
    lsm: String,
    expect: String,
    /// Hooks the `credtrail-agent` binary itself reported.
    agent_hooks: Vec<String>,
    /// Hooks the tests reported.
    hooks: Vec<String>,
    tests: String,
    seconds: f64,
    verdict: Result<(), String>,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    if let Some(b) = opts
        .boots
        .iter()
        .find(|b| !BOOTS.iter().any(|k| k.name == *b))
    {
        let known: Vec<&str> = BOOTS.iter().map(|k| k.name).collect();
        bail!("unknown boot {b:?} (known: {})", known.join(", "));
    }
    let root = workspace_root()?;
    let cache = root.join("target/vm");
    std::fs::create_dir_all(&cache)?;
    ensure_tools()?;

    let tests = if opts.bench {
        // The bench boots run no tests: only the agent binary's check and the bench.
        Vec::new()
    } else if opts.test_binaries.is_empty() {
        build::build_agent_tests(&root)?
    } else {
        opts.test_binaries
            .iter()
            .map(|p| TestBinary {
                name: p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("test")
                    .to_owned(),
                path: p.clone(),
            })
            .collect()
    };
    if tests.is_empty() && !opts.bench {
        bail!("no agent test binaries found (tests/tests/agent_*.rs)");
    }
    let names: Vec<&str> = tests.iter().map(|t| t.name.as_str()).collect();
    eprintln!("vm-test: test binaries: {}", names.join(", "));

    let agent = build::build_agent(&root)?;
    // Kernels and packages are shared; the initramfs and consoles are this run's own, so
    // runs of several people at once do not overwrite each other's.
    let work = cache.join(format!("run-{}", std::process::id()));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let initrd = work.join("initramfs.cpio");
    let open_loop = if opts.bench {
        Some(std::env::current_exe().context("locating the xtask binary (the open loop)")?)
    } else {
        None
    };
    initramfs::build(
        &initrd,
        &work.join("stage"),
        &tests,
        Some(&agent),
        open_loop.as_deref(),
    )?;
    eprintln!(
        "vm-test: initramfs {} ({} MiB)",
        initrd.display(),
        std::fs::metadata(&initrd)?.len() / (1 << 20)
    );

    let wanted: Vec<String> = if opts.kernels.is_empty() {
        // The bench: 6.1 and 6.12 (the first two).
        let n = if opts.bench { 2 } else { usize::MAX };
        kernels::DEFAULT_KERNELS
            .iter()
            .take(n)
            .map(|s| (*s).to_owned())
            .collect()
    } else {
        opts.kernels.clone()
    };
    let mut rows = Vec::new();
    let mut bench_results = Vec::new();
    if !opts.no_host && !opts.bench {
        rows.push(host::run_host(&tests, &agent)?);
    }
    for name in &wanted {
        let (suite, package) = match name.split_once(':') {
            Some((suite, package)) => (Some(suite), package),
            None => (None, name.as_str()),
        };
        let apt = kernels::Apt::new(&cache, suite)?;
        let resolved = match kernels::resolve(&apt, package)? {
            None if suite.is_none() => {
                // A fresh machine may not have fetched its package index yet.
                eprintln!("vm-test: {package} unknown to apt; running apt-get update");
                let status = Command::new("apt-get")
                    .args(["-q", "update"])
                    .status()
                    .context("running apt-get update")?;
                if !status.success() {
                    bail!("apt-get update failed ({status})");
                }
                kernels::resolve(&apt, package)?
            }
            found => found,
        };
        let Some(package) = resolved else {
            bail!("no Debian package {name} in the apt archive (apt-cache policy {package})");
        };
        let kernel = kernels::fetch(&apt, &cache, &package)?;
        for kind in BOOTS
            .iter()
            .filter(|k| opts.boots.is_empty() || opts.boots.iter().any(|b| b == k.name))
            // The bench boots once per kernel (BPF LSM on: LSM and fentry both load
            // there); the other bench boots only when named with --boot.
            .filter(|k| {
                !opts.bench
                    || (!k.bench.is_empty() && (!opts.boots.is_empty() || k.name == "bpf-lsm"))
            })
        {
            let log = work.join(format!("console-{}-{}.log", kernel.release, kind.name));
            let expect = expected_hook(kind, &kernel.release);
            let hooks = bench_hooks(kind, &kernel.release);
            let bench_words = if opts.bench {
                format!(
                    "CREDTRAIL_BENCH={} CREDTRAIL_BENCH_ROUNDS={} CREDTRAIL_BENCH_OPENS={}",
                    hooks.join(","),
                    opts.bench_rounds,
                    opts.bench_opens
                )
            } else {
                String::new()
            };
            eprintln!(
                "vm-test: booting {} from {} ({})",
                kernel.release, kernel.package, kind.name
            );
            let outcome = qemu::boot(&qemu::Boot {
                vmlinuz: &kernel.vmlinuz,
                initramfs: &initrd,
                cmdline: format!(
                    "console=ttyS0 panic=-1 loglevel=4 lsm={} \
                     CREDTRAIL_EXPECT_HOOK={} CREDTRAIL_HOOK_MODE={} CREDTRAIL_CONNECT_HOOK={} {} {}",
                    kind.lsm,
                    expect,
                    kind.hook_mode,
                    kind.connect_hook,
                    bench_words,
                    opts.append.join(" ")
                ),
                console_log: &log,
                memory_mib: opts.memory,
                timeout: Duration::from_secs(opts.timeout),
                icount: opts.bench,
            })?;
            let verdict = judge::judge_agent(&outcome, expect)
                .and_then(|()| judge::judge_connect_hook(&outcome, kind.expect_connect))
                .and_then(|()| {
                    if opts.bench {
                        let text = std::fs::read_to_string(&log).unwrap_or_default();
                        let ratios = bench::ratios(&bench::parse(&text), &hooks)?;
                        bench_results.push((kernel.release.clone(), ratios));
                        Ok(())
                    } else {
                        judge::judge(&outcome, &tests, expect, Some(kind.lsm))
                    }
                })
                .map_err(|e| format!("{e} (console: {})", log.display()));
            rows.push(Row {
                kernel: kernel.release.clone(),
                boot: kind.name.to_owned(),
                lsm: outcome.lsm.clone().unwrap_or_default(),
                expect: expect.to_owned(),
                agent_hooks: outcome.agent_hooks.clone().unwrap_or_default(),
                hooks: outcome.hooks.clone(),
                tests: count(&outcome.results),
                seconds: outcome.elapsed.as_secs_f64(),
                verdict,
            });
        }
    }
    // The consoles stay for reading; the large parts go.
    let _ = std::fs::remove_dir_all(work.join("stage"));
    let _ = std::fs::remove_file(&initrd);
    eprintln!("vm-test: consoles in {}", work.display());
    let verdict = report(&rows, started.elapsed());
    if opts.bench {
        bench::report(&bench_results)?;
    }
    verdict
}

fn count(results: &[(String, bool)]) -> String {
    let passed = results.iter().filter(|(_, ok)| *ok).count();
    format!("{passed}/{}", results.len())
}

fn report(rows: &[Row], total: Duration) -> anyhow::Result<()> {
    println!();
    println!(
        "{:<28} {:<11} {:<10} {:<7} {:>5} {:>7}  hooks (agent binary | tests)",
        "kernel", "boot", "expect", "result", "tests", "seconds"
    );
    for r in rows {
        println!(
            "{:<28} {:<11} {:<10} {:<7} {:>5} {:>7.1}  {} | {}",
            r.kernel,
            r.boot,
            r.expect,
            if r.verdict.is_ok() { "PASS" } else { "FAIL" },
            r.tests,
            r.seconds,
            if r.agent_hooks.is_empty() {
                "-".to_owned()
            } else {
                r.agent_hooks.join(",")
            },
            r.hooks.join(",")
        );
        if let Err(e) = &r.verdict {
            println!("    why: {e}; active LSMs: {}", r.lsm.trim());
        }
    }
    let failed = rows.iter().filter(|r| r.verdict.is_err()).count();
    println!("vm-test took {:.0} s", total.as_secs_f64());
    println!("vm-test: {} passed, {failed} failed", rows.len() - failed);
    if failed > 0 {
        bail!("{failed} kernel boot(s) failed");
    }
    Ok(())
}

/// qemu, busybox-static, strip and dpkg-deb: installed from Debian's packages if missing.
fn ensure_tools() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    if !Path::new("/usr/bin/qemu-system-x86_64").exists() {
        missing.push("qemu-system-x86");
    }
    if !Path::new("/bin/busybox").exists() {
        missing.push("busybox-static");
    }
    if !Path::new("/usr/bin/strip").exists() {
        missing.push("binutils");
    }
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("vm-test: apt-get install {}", missing.join(" "));
    let status = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get install")?;
    if !status.success() {
        bail!(
            "apt-get install {} failed ({status}); run apt-get update first",
            missing.join(" ")
        );
    }
    Ok(())
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsm_boots_expect_fentry_before_5_11_only() {
        let lsm = &BOOTS[0];
        assert_eq!(lsm.expect, "lsm");
        assert_eq!(expected_hook(lsm, "5.10.0-46-amd64"), "fentry");
        assert_eq!(expected_hook(lsm, "5.11.0-1-amd64"), "lsm");
        assert_eq!(expected_hook(lsm, "6.1.0-56-amd64"), "lsm");
        assert_eq!(
            expected_hook(&BOOTS[2], "5.10.0-46-amd64"),
            "raw_tracepoint"
        );
        assert_eq!(expected_hook(&BOOTS[3], "5.10.0-46-amd64"), "tracepoint");
        assert!(!kernel_before("garbage", (5, 11)));
    }

    #[test]
    fn the_bench_measures_lsm_and_fentry_and_fentry_where_lsm_cannot_load() {
        assert_eq!(
            bench_hooks(&BOOTS[0], "6.12.57+deb12-amd64"),
            vec!["lsm", "fentry"]
        );
        assert_eq!(bench_hooks(&BOOTS[0], "5.10.0-46-amd64"), vec!["fentry"]);
        assert_eq!(
            bench_hooks(&BOOTS[1], "6.1.0-41-amd64"),
            vec!["fentry", "raw-tracepoint"]
        );
        assert!(bench_hooks(&BOOTS[3], "6.1.0-41-amd64").is_empty());
    }
}
