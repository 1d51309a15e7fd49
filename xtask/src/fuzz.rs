//! `cargo xtask fuzz`: runs the cargo-fuzz targets of `fuzz/` (every parser
//! of outside input: audit bodies in each format, the policy file, agent
//! batches and node infos, the query API's parameters and bodies), each for
//! `--seconds` or `--runs`, and fails on the first crash (the input is left
//! in `fuzz/artifacts/<target>/`).
//!
//! Installs what it needs: the nightly toolchain (libFuzzer's
//! instrumentation) and `cargo-fuzz` (`cargo install cargo-fuzz --locked`).
//! Seeds: the small checked-in `fuzz/seeds/<target>/`, plus, for the audit
//! target, every real capture under `../shared/testdata/k8s-audit/` in each
//! input format (written into the git-ignored `fuzz/corpus/` at run time).
//!
//! Sanitizer: `none` by default. The code under test is safe Rust (no
//! `unsafe` in the aggregator or proto crates), so AddressSanitizer would
//! find nothing the Rust checks miss, and it halves the executions per
//! second and lengthens the build on a 2-core machine; debug assertions and
//! overflow checks stay on (cargo-fuzz's default). `--sanitizer address`
//! restores it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::setup::{output, status};

/// Every target, in the order they run.
pub const TARGETS: &[&str] = &[
    "audit_document",
    "policy_file",
    "agent_batch",
    "agent_node_info",
    "api_params",
    "api_bodies",
];

const NIGHTLY: &str = "nightly";

#[derive(clap::Args)]
pub struct Options {
    /// Seconds per target (default 60 unless --runs is given).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// Executions per target (libFuzzer `-runs`); with --seconds, whichever comes first.
    #[arg(long)]
    pub runs: Option<u64>,
    /// Run only this target (repeatable).
    #[arg(long = "target", value_parser = clap::builder::PossibleValuesParser::new(TARGETS))]
    pub targets: Vec<String>,
    /// Sanitizer for the build (cargo fuzz `-s`): none, address, ...
    #[arg(long, default_value = "none")]
    pub sanitizer: String,
    /// Targets run at the same time (one core each).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
}

/// Result of one target's run.
struct Outcome {
    target: String,
    executions: Option<u64>,
    seconds: f64,
    ok: bool,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let root = crate::build::workspace_root();
    let fuzz_dir = root.join("fuzz");
    ensure_nightly()?;
    ensure_cargo_fuzz()?;
    let targets: Vec<String> = if opts.targets.is_empty() {
        TARGETS.iter().map(|t| (*t).to_owned()).collect()
    } else {
        opts.targets.clone()
    };
    let seconds = match (opts.seconds, opts.runs) {
        (Some(s), _) => Some(s),
        (None, None) => Some(60),
        (None, Some(_)) => None,
    };

    let t0 = Instant::now();
    println!("fuzz: building the targets (sanitizer {})", opts.sanitizer);
    // `cargo fuzz build` takes one target or none (= all).
    let mut build = cargo_fuzz(&fuzz_dir);
    build.args(["build", "-s", &opts.sanitizer]);
    if let [one] = targets.as_slice() {
        build.arg(one);
    }
    status(&mut build).context("building the fuzz targets")?;
    println!("fuzz: built in {:.0}s", t0.elapsed().as_secs_f64());

    let logs = fuzz_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut outcomes = Vec::new();
    for group in targets.chunks(opts.parallel.max(1)) {
        let mut running = Vec::new();
        for t in group {
            let corpus = fuzz_dir.join("corpus").join(t);
            std::fs::create_dir_all(&corpus)
                .with_context(|| format!("creating {}", corpus.display()))?;
            if t == "audit_document" {
                let n = seed_audit_captures(&root, &corpus)?;
                println!("fuzz: {t}: {n} seeds from ../shared/testdata/k8s-audit");
            }
            running.push(start_target(
                &fuzz_dir,
                t,
                &corpus,
                seconds,
                opts.runs,
                &opts.sanitizer,
            )?);
        }
        for r in running {
            outcomes.push(r.finish()?);
        }
        if outcomes.iter().any(|o| !o.ok) {
            break;
        }
    }

    println!("\nfuzz: target            executions   seconds  result");
    for o in &outcomes {
        println!(
            "fuzz: {:<17} {:>12} {:>9.0}  {}",
            o.target,
            o.executions.map_or("?".to_owned(), |n| n.to_string()),
            o.seconds,
            if o.ok { "0 crashes" } else { "CRASH" }
        );
    }
    if let Some(bad) = outcomes.iter().find(|o| !o.ok) {
        bail!(
            "fuzz target {} failed: the input is in {}, the log in {}",
            bad.target,
            fuzz_dir.join("artifacts").join(&bad.target).display(),
            logs.join(format!("{}.log", bad.target)).display()
        );
    }
    Ok(())
}

/// `cargo +nightly fuzz` in `fuzz/`, without the outer cargo's toolchain pins.
fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut c = Command::new("cargo");
    c.arg(format!("+{NIGHTLY}"))
        .arg("fuzz")
        .current_dir(fuzz_dir)
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .env_remove("CARGO_TARGET_DIR");
    c
}

/// A target's libFuzzer process, running.
struct Running {
    target: String,
    child: std::process::Child,
    log_path: PathBuf,
    started: Instant,
}

impl Running {
    /// Waits for the process; reads the executions from its final stats.
    fn finish(mut self) -> anyhow::Result<Outcome> {
        let st = self
            .child
            .wait()
            .with_context(|| format!("waiting for the {} fuzzer", self.target))?;
        let seconds = self.started.elapsed().as_secs_f64();
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let executions = text
            .lines()
            .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
            .and_then(|n| n.trim().parse().ok());
        if !st.success() {
            // Show the end of the log: the panic message and the reproducer.
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            for l in tail.into_iter().rev() {
                eprintln!("  {l}");
            }
        }
        Ok(Outcome {
            target: self.target,
            executions,
            seconds,
            ok: st.success(),
        })
    }
}

fn start_target(
    fuzz_dir: &Path,
    target: &str,
    corpus: &Path,
    seconds: Option<u64>,
    runs: Option<u64>,
    sanitizer: &str,
) -> anyhow::Result<Running> {
    let seeds = fuzz_dir.join("seeds").join(target);
    let log_path = fuzz_dir.join("logs").join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = cargo_fuzz(fuzz_dir);
    cmd.args(["run", "-s", sanitizer, target])
        .arg(corpus)
        .arg(&seeds)
        .arg("--")
        .arg("-max_len=65536")
        .arg("-timeout=10")
        .arg("-rss_limit_mb=2048")
        .arg("-print_final_stats=1");
    if let Some(s) = seconds {
        cmd.arg(format!("-max_total_time={s}"));
    }
    if let Some(r) = runs {
        cmd.arg(format!("-runs={r}"));
    }
    println!(
        "fuzz: {target}: {} (log: {})",
        match (seconds, runs) {
            (Some(s), Some(r)) => format!("{r} runs or {s} s"),
            (Some(s), None) => format!("{s} s"),
            (None, Some(r)) => format!("{r} runs"),
            (None, None) => "until stopped".to_owned(),
        },
        log_path.display()
    );
    let started = Instant::now();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("running {cmd:?}"))?;
    Ok(Running {
        target: target.to_owned(),
        child,
        log_path,
        started,
    })
}

/// Writes every real audit capture, once per reader (the target's first byte
/// picks it), into `corpus`. Returns how many seeds were written; 0 when the
/// captures are not there (the checked-in seeds still run).
fn seed_audit_captures(root: &Path, corpus: &Path) -> anyhow::Result<usize> {
    let dir = root.join("../shared/testdata/k8s-audit");
    let mut files = Vec::new();
    collect_files(&dir, &mut files);
    files.sort();
    let mut n = 0;
    for (i, f) in files.iter().enumerate() {
        if f.file_name().is_some_and(|n| n == "README.md") {
            continue;
        }
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        for sel in 0u8..4 {
            let mut seed = Vec::with_capacity(bytes.len() + 1);
            seed.push(sel);
            seed.extend_from_slice(&bytes);
            let p = corpus.join(format!("testdata-{i:03}-{sel}"));
            std::fs::write(&p, seed).with_context(|| format!("writing {}", p.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn ensure_nightly() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        return Ok(());
    }
    println!("fuzz: installing the nightly toolchain");
    status(Command::new("rustup").args(["toolchain", "install", NIGHTLY, "--profile", "minimal"]))
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    crate::setup::ensure_cargo_tool("fuzz", "fuzz", "cargo-fuzz")
}
