//! `cargo xtask mutants`: mutation testing (cargo-mutants) of the code that
//! decides verdicts and parses outside input: `aggregator/src/{detect,audit,
//! policy}/` and `agent/src/{identity,attribution}/`.
//!
//! Installs cargo-mutants itself (`cargo install --locked cargo-mutants`).
//! Runs it once per package concerned, with that package's fast test command
//! (its unit tests, `--lib`: the integration suites rebuild the binary and
//! the whole `it` crate for each mutant, several times slower), a per-mutant
//! test timeout (`--timeout`, floored by `minimum_test_timeout` in
//! `.cargo/mutants.toml`), and prints
//! `mutants caught=… missed=… timeout=… unviable=…` then every missed or
//! timed-out mutant. Fails when any missed or timed-out mutant remains:
//! equivalent mutants are excluded in `.cargo/mutants.toml`, each with the
//! reason.
//!
//! `--in-diff REF` mutates only the lines `git diff REF` changed (CI: the
//! previous commit); `--max-mutants` caps a large diff by running one shard
//! of it, and says so.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, bail};

use crate::setup::status;

/// The folders whose mutants are measured, and the package each is in.
pub const COVERED: &[(&str, &str)] = &[
    ("aggregator/src/detect", "credtrail-aggregator"),
    ("aggregator/src/audit", "credtrail-aggregator"),
    ("aggregator/src/policy", "credtrail-aggregator"),
    ("agent/src/identity", "credtrail-agent"),
    ("agent/src/attribution", "credtrail-agent"),
];

#[derive(clap::Args)]
pub struct Options {
    /// Mutate only what `git diff REF` changed (e.g. HEAD~1).
    #[arg(long, value_name = "REF")]
    pub in_diff: Option<String>,
    /// Mutate only these files or globs (repeatable); default: the covered folders.
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<String>,
    /// Seconds a mutant's tests may run before it counts as a timeout (default: the
    /// baseline's time × `timeout_multiplier`, at least `minimum_test_timeout`, from
    /// .cargo/mutants.toml; 60 with --no-baseline).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Run one shard of the mutants (`K/N`, K from 0).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Mutants built and tested at once (each in its own copy of the tree).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Mutate the tree in place instead of a copy (CI's fresh clone: reuses its build).
    #[arg(long)]
    pub in_place: bool,
    /// Skip the unmutated baseline run (only when the tests are known to pass).
    #[arg(long)]
    pub no_baseline: bool,
    /// At most this many mutants: a larger set runs one shard of it and says so (0 = no cap).
    #[arg(long, default_value_t = 0)]
    pub max_mutants: usize,
    /// Stop after this many seconds in all (the run is interrupted, its tree restored, and the
    /// mutants tested so far are reported as an incomplete run, which does not fail).
    #[arg(long)]
    pub budget_secs: Option<u64>,
    /// List the mutants only.
    #[arg(long)]
    pub list: bool,
}

/// Outcome counts of one or more runs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub caught: Vec<String>,
    pub missed: Vec<String>,
    pub timeout: Vec<String>,
    pub unviable: Vec<String>,
}

impl Tally {
    fn extend(&mut self, o: Tally) {
        self.caught.extend(o.caught);
        self.missed.extend(o.missed);
        self.timeout.extend(o.timeout);
        self.unviable.extend(o.unviable);
    }

    /// Caught / (caught + missed + timeout), in percent.
    pub fn score(&self) -> Option<f64> {
        let viable = self.caught.len() + self.missed.len() + self.timeout.len();
        (viable > 0).then(|| 100.0 * self.caught.len() as f64 / viable as f64)
    }

    pub fn line(&self) -> String {
        format!(
            "mutants caught={} missed={} timeout={} unviable={}{}",
            self.caught.len(),
            self.missed.len(),
            self.timeout.len(),
            self.unviable.len(),
            self.score()
                .map_or(String::new(), |s| format!(" score={s:.1}%"))
        )
    }
}

/// The package a workspace-relative path belongs to, if it is covered.
pub fn package_of(path: &str) -> Option<&'static str> {
    let p = path.trim_start_matches("./");
    COVERED
        .iter()
        .find(|(dir, _)| p.starts_with(dir))
        .map(|(_, pkg)| *pkg)
        .or_else(|| {
            if p.starts_with("aggregator/") {
                Some("credtrail-aggregator")
            } else if p.starts_with("agent/") {
                Some("credtrail-agent")
            } else {
                None
            }
        })
}

/// The test command each package's mutants run: `cargo test -p PKG <cargo
/// args> -- <harness args>`.
fn test_args(pkg: &str) -> (&'static [&'static str], &'static [&'static str]) {
    match pkg {
        // The agent's tests run one at a time, as in `xtask test`.
        "credtrail-agent" => (&["--lib"], &["--test-threads=1"]),
        _ => (&["--lib"], &[]),
    }
}

/// What follows cargo-mutants' options for the test binary's arguments:
/// cargo-mutants hands everything after its `--` to `cargo test`, so the
/// test binary's arguments need a second `--` (one `--` made `cargo test`
/// refuse `--test-threads=1`, and every agent mutant counted as caught).
fn harness_command_tail(harness_args: &[&str]) -> Vec<String> {
    if harness_args.is_empty() {
        return Vec::new();
    }
    ["--", "--"]
        .iter()
        .chain(harness_args)
        .map(|a| (*a).to_owned())
        .collect()
}

/// `(package, file globs)` to run: the given files, else the covered folders.
fn plan(files: &[String]) -> anyhow::Result<Vec<(&'static str, Vec<String>)>> {
    let mut out: Vec<(&'static str, Vec<String>)> = Vec::new();
    let mut add = |pkg: &'static str, glob: String| match out.iter_mut().find(|(p, _)| *p == pkg) {
        Some((_, g)) => g.push(glob),
        None => out.push((pkg, vec![glob])),
    };
    if files.is_empty() {
        for (dir, pkg) in COVERED {
            add(pkg, format!("{dir}/**/*.rs"));
        }
    } else {
        for f in files {
            let Some(pkg) = package_of(f) else {
                bail!("{f}: not in the aggregator or the agent (the packages mutants runs on)");
            };
            add(pkg, f.trim_start_matches("./").to_owned());
        }
    }
    Ok(out)
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let root = crate::build::workspace_root();
    if let Some(r) = &opts.in_diff
        && commit_exists(&root, r)
    {
        let changed = changed_files(&root, r)?;
        let scope: Vec<&str> = if opts.files.is_empty() {
            COVERED.iter().map(|(d, _)| *d).collect()
        } else {
            Vec::new()
        };
        let relevant = changed.iter().any(|f| {
            f.ends_with(".rs")
                && if scope.is_empty() {
                    package_of(f).is_some()
                } else {
                    scope.iter().any(|d| f.starts_with(d))
                }
        });
        if !relevant {
            println!(
                "mutants: skipped: the change since {r} touches no Rust file in {}",
                scope.join(", ")
            );
            return Ok(());
        }
    }
    ensure_cargo_mutants()?;
    let out_root = root.join("target/mutants");
    std::fs::create_dir_all(&out_root)
        .with_context(|| format!("creating {}", out_root.display()))?;
    let diff = match &opts.in_diff {
        Some(r) if !commit_exists(&root, r) => {
            println!(
                "mutants: skipped: {r} is not a commit here (a first commit or a shallow clone)"
            );
            return Ok(());
        }
        Some(r) => Some(write_diff(&root, r, &out_root)?),
        None => None,
    };
    let t0 = Instant::now();
    let deadline = opts
        .budget_secs
        .map(|s| t0 + std::time::Duration::from_secs(s));
    let mut total = Tally::default();
    let mut tested_any = false;
    let mut cut_short = false;
    for (pkg, globs) in plan(&opts.files)? {
        let out_dir = out_root.join(pkg);
        let mut shard = opts.shard.clone();
        if opts.max_mutants > 0 || opts.list || diff.is_some() {
            let n = count(&root, pkg, &globs, diff.as_deref())?;
            if n == 0 {
                println!("mutants: {pkg}: no mutants in {}", globs.join(" "));
                continue;
            }
            if opts.max_mutants > 0 && n > opts.max_mutants && shard.is_none() {
                let parts = n.div_ceil(opts.max_mutants);
                println!(
                    "mutants: {pkg}: {n} mutants, over the cap of {}: CAPPED, running shard 0/{parts} (about {} of them)",
                    opts.max_mutants,
                    n / parts
                );
                shard = Some(format!("0/{parts}"));
            } else {
                println!("mutants: {pkg}: {n} mutants");
            }
        }
        if opts.list {
            let mut cmd = mutants_cmd(&root, pkg, &globs, diff.as_deref());
            cmd.arg("--list");
            status(&mut cmd)?;
            continue;
        }
        let mut cmd = mutants_cmd(&root, pkg, &globs, diff.as_deref());
        let timeout = opts.timeout.or(opts.no_baseline.then_some(60));
        if let Some(t) = timeout {
            cmd.arg("--timeout").arg(t.to_string());
        }
        cmd.arg("--output").arg(&out_dir);
        if let Some(s) = &shard {
            cmd.arg("--shard").arg(s);
        }
        if opts.in_place {
            cmd.arg("--in-place");
        } else {
            cmd.arg("--jobs").arg(opts.jobs.max(1).to_string());
            // The copy builds into this tree's target dir: the dependencies are
            // reused, only the workspace's own crates build once more.
            cmd.env("CARGO_TARGET_DIR", root.join("target"));
        }
        if opts.no_baseline {
            cmd.args(["--baseline", "skip"]);
        }
        let (cargo_args, harness_args) = test_args(pkg);
        for a in cargo_args {
            // Every phase (the build too, else it builds the `it` suite and the binary).
            cmd.arg(format!("--cargo-arg={a}"));
        }
        cmd.args(harness_command_tail(harness_args));
        println!("mutants: {pkg}: running {cmd:?}");
        // cargo-mutants moves an earlier run's mutants.out aside (to
        // mutants.out.old) and locks the new one: a second run on the same
        // output refuses to start instead of mixing outcomes.
        if deadline.is_some_and(|d| Instant::now() >= d) {
            println!("mutants: {pkg}: TIME CAP reached before it started: not tested");
            cut_short = true;
            continue;
        }
        if output_locked(&out_dir.join("mutants.out/lock.json")) {
            bail!(
                "another cargo mutants run is writing {}: wait for it (two runs would mix their outcomes, and two in-place runs each other's mutations)",
                out_dir.display()
            );
        }
        tested_any = true;
        let (st, interrupted) = run_until(&mut cmd, deadline)?;
        if interrupted {
            cut_short = true;
            let t = read_outcomes(&out_dir.join("mutants.out"))?;
            println!(
                "mutants: {pkg}: TIME CAP of {}s reached: incomplete, {}",
                opts.budget_secs.unwrap_or_default(),
                t.line()
            );
            total.extend(t);
            continue;
        }
        // 0 = all caught, 2 = missed, 3 = timeout: the outcome files say which.
        // 1 = bad arguments, 4 = the unmutated tree fails its tests.
        match st.code() {
            Some(0 | 2 | 3) => {}
            Some(4) => bail!(
                "{pkg}: the tests fail without any mutation (see {}/mutants.out/log)",
                out_dir.display()
            ),
            _ => bail!("{pkg}: cargo mutants failed ({st})"),
        }
        let t = read_outcomes(&out_dir.join("mutants.out"))?;
        println!("mutants: {pkg}: {}", t.line());
        total.extend(t);
    }
    if opts.list {
        return Ok(());
    }
    if !tested_any && !cut_short {
        println!("mutants: skipped: no mutants in the covered folders for this change");
        return Ok(());
    }
    if cut_short {
        println!(
            "mutants: INCOMPLETE: the time cap cut the run short (the counts below are what was tested)"
        );
    }
    println!("\n{} ({:.0}s)", total.line(), t0.elapsed().as_secs_f64());
    for m in &total.missed {
        println!("MISSED  {m}");
    }
    for m in &total.timeout {
        println!("TIMEOUT {m}");
    }
    if !total.missed.is_empty() || !total.timeout.is_empty() {
        bail!(
            "{} missed and {} timed-out mutants: add tests that catch them, or exclude an equivalent mutant in .cargo/mutants.toml with the reason",
            total.missed.len(),
            total.timeout.len()
        );
    }
    Ok(())
}

/// Runs `cmd` until it ends or `deadline` passes; then interrupts it (SIGINT:
/// cargo-mutants restores the tree and stops) and, if it does not stop within
/// 30 s, kills it. Returns its status and whether it was interrupted.
fn run_until(
    cmd: &mut Command,
    deadline: Option<Instant>,
) -> anyhow::Result<(std::process::ExitStatus, bool)> {
    let mut child = cmd.spawn().with_context(|| format!("running {cmd:?}"))?;
    let Some(deadline) = deadline else {
        return Ok((child.wait().context("waiting for cargo mutants")?, false));
    };
    loop {
        if let Some(st) = child.try_wait().context("waiting for cargo mutants")? {
            return Ok((st, false));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let pid = libc::pid_t::try_from(child.id()).context("child pid")?;
    // SAFETY: kill has no memory preconditions; pid is our own child, not yet reaped.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let stop_by = Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().context("waiting for cargo mutants")? {
            return Ok((st, true));
        }
        if Instant::now() >= stop_by {
            let _ = child.kill();
            return Ok((child.wait().context("waiting for cargo mutants")?, true));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Whether a running cargo-mutants holds the lock of this output directory.
fn output_locked(lock: &Path) -> bool {
    use std::os::fd::AsRawFd as _;
    let Ok(f) = std::fs::File::open(lock) else {
        return false;
    };
    // SAFETY: flock on a file descriptor we own; released when `f` closes.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    r != 0
}

/// Paths `git diff REF HEAD` changes.
fn changed_files(root: &Path, reference: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("git")
        .current_dir(root)
        .args(["diff", "--name-only", reference, "HEAD", "--"])
        .output()
        .context("running git diff --name-only")?;
    if !out.status.success() {
        bail!("git diff --name-only {reference} failed");
    }
    Ok(parse_list(&String::from_utf8_lossy(&out.stdout)))
}

fn commit_exists(root: &Path, reference: &str) -> bool {
    Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--verify", "--quiet"])
        .arg(format!("{reference}^{{commit}}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `cargo mutants -p PKG --file … [--in-diff FILE]` run from the workspace root.
fn mutants_cmd(root: &Path, pkg: &str, globs: &[String], diff: Option<&Path>) -> Command {
    let mut cmd = Command::new("cargo");
    // No jobserver: its MAKEFLAGS in the builds' environment would make
    // build scripts that watch it (cc) rerun, and rebuild the dependencies
    // that a plain `cargo test` built.
    cmd.current_dir(root).args([
        "mutants",
        "--no-shuffle",
        "--jobserver",
        "false",
        "--package",
        pkg,
    ]);
    for g in globs {
        cmd.arg("--file").arg(g);
    }
    if let Some(d) = diff {
        cmd.arg("--in-diff").arg(d);
    }
    cmd
}

/// How many mutants `cargo mutants --list` finds.
fn count(root: &Path, pkg: &str, globs: &[String], diff: Option<&Path>) -> anyhow::Result<usize> {
    let mut cmd = mutants_cmd(root, pkg, globs, diff);
    cmd.arg("--list").stderr(Stdio::inherit());
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count())
}

/// `git diff REF HEAD` into a file for `--in-diff`: the committed change only
/// (never the working tree, which an in-place run may be mutating).
fn write_diff(root: &Path, reference: &str, out_root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new("git")
        .current_dir(root)
        .args([
            "diff",
            "--no-color",
            "--no-ext-diff",
            reference,
            "HEAD",
            "--",
        ])
        .output()
        .context("running git diff")?;
    if !out.status.success() {
        bail!(
            "git diff {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let path = out_root.join("in-diff.patch");
    std::fs::write(&path, &out.stdout).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Reads `caught.txt`, `missed.txt`, `timeout.txt`, `unviable.txt`.
fn read_outcomes(dir: &Path) -> anyhow::Result<Tally> {
    let read = |name: &str| -> anyhow::Result<Vec<String>> {
        let p = dir.join(name);
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(parse_list(&s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
        }
    };
    Ok(Tally {
        caught: read("caught.txt")?,
        missed: read("missed.txt")?,
        timeout: read("timeout.txt")?,
        unviable: read("unviable.txt")?,
    })
}

fn parse_list(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn ensure_cargo_mutants() -> anyhow::Result<()> {
    crate::setup::ensure_cargo_tool("mutants", "mutants", "cargo-mutants")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_map_to_their_package_and_others_are_refused() {
        assert_eq!(
            package_of("aggregator/src/detect/an1579.rs"),
            Some("credtrail-aggregator")
        );
        assert_eq!(
            package_of("./agent/src/identity/jwt.rs"),
            Some("credtrail-agent")
        );
        assert_eq!(package_of("proto/src/model.rs"), None);
        let p = plan(&[
            "aggregator/src/detect/rbac.rs".into(),
            "agent/src/identity/jwt.rs".into(),
            "aggregator/src/detect/an1579.rs".into(),
        ])
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].0, "credtrail-aggregator");
        assert_eq!(p[0].1.len(), 2);
        assert!(plan(&["xtask/src/main.rs".into()]).is_err());
        let all = plan(&[]).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].1.len() + all[1].1.len(), COVERED.len());
    }

    /// The agent's `--test-threads=1` reaches the test binary (after
    /// `cargo test --`), never `cargo test` itself.
    #[test]
    fn harness_arguments_go_after_a_second_separator() {
        let (cargo, harness) = test_args("credtrail-agent");
        assert_eq!(cargo, ["--lib"]);
        assert_eq!(
            harness_command_tail(harness),
            ["--", "--", "--test-threads=1"]
        );
        let (_, harness) = test_args("credtrail-aggregator");
        assert!(harness_command_tail(harness).is_empty());
    }

    #[test]
    fn the_score_counts_timeouts_as_not_caught_and_ignores_unviable() {
        let t = Tally {
            caught: vec!["a".into(); 9],
            missed: vec!["b".into()],
            timeout: vec!["c".into()],
            unviable: vec!["d".into(); 5],
        };
        assert_eq!(
            t.line(),
            "mutants caught=9 missed=1 timeout=1 unviable=5 score=81.8%"
        );
        assert_eq!(Tally::default().score(), None);
        assert_eq!(parse_list("x\n\n  y  \n"), ["x", "y"]);
    }
}
