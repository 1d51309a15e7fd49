//! `cargo xtask soak`: builds the release aggregator and the soak driver,
//! then runs `credtrail-soak` (tests/src/soak/): the real aggregator's HTTPS
//! webhook fed realistic audit traffic for `--minutes` at `--eps`, with
//! `--churn` percent of events from short-lived identities. It prints every
//! 30 s, then last, one line:
//!
//! `soak minutes=30 eps_target=3000 eps_achieved=2998 rss_start_mib=… rss_end_mib=… rss_slope_kib_per_min=… p99_ms=… errors=0`
//!
//! `--ci` is the regression guard run by `.ci/run`: it fails on any error or
//! when the achieved rate collapses (not on latency).

use std::process::Command;

use anyhow::Context as _;

use crate::build::workspace_root;

#[derive(clap::Args)]
pub struct Options {
    /// Minutes of traffic.
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Audit events per second.
    #[arg(long, default_value_t = 3000)]
    pub eps: u64,
    /// Share of events from short-lived identities (CI jobs), percent.
    #[arg(long, default_value_t = 10.0)]
    pub churn: f64,
    /// Seconds a workload's bound token lives before rotation (compressed time).
    #[arg(long)]
    pub token_lifetime: Option<f64>,
    /// Policy file for the aggregator.
    #[arg(long)]
    pub policy: Option<std::path::PathBuf>,
    /// Regression guard: fail on errors or a collapsed rate.
    #[arg(long)]
    pub ci: bool,
    /// Keep the work folder (database, aggregator log).
    #[arg(long)]
    pub keep: bool,
    /// Instead of traffic: write a database of this many audit events
    /// (target/tmp/soak-restart.db) and measure the aggregator's start-up on it.
    #[arg(long)]
    pub restart_events: Option<u64>,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run(o: Options) -> anyhow::Result<()> {
    if !o.no_setup {
        crate::setup::run(crate::setup::Options { force: false })?;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace_root();
    build_release_aggregator(&cargo, &root)?;
    // The driver is light (it builds JSON and speaks TLS): the test profile,
    // already built by `cargo xtask test`, is enough.
    crate::setup::status(Command::new(&cargo).current_dir(&root).args([
        "build",
        "-p",
        "credtrail-tests",
        "--bin",
        "credtrail-soak",
    ]))
    .context("building credtrail-soak")?;
    let soak = root.join("target/debug/credtrail-soak");
    let aggregator = root.join("target/release/credtrail-aggregator");
    if let Some(n) = o.restart_events {
        let db = root.join("target/tmp/soak-restart.db");
        std::fs::create_dir_all(root.join("target/tmp"))?;
        crate::setup::status(
            Command::new(&soak)
                .args(["make-db", "--events", &n.to_string(), "--db"])
                .arg(&db),
        )?;
        return crate::setup::status(
            Command::new(&soak)
                .args(["restart", "--aggregator"])
                .arg(&aggregator)
                .arg("--db")
                .arg(&db),
        );
    }
    let mut cmd = Command::new(&soak);
    cmd.arg("traffic")
        .arg("--aggregator")
        .arg(&aggregator)
        .args(["--minutes", &o.minutes.to_string()])
        .args(["--eps", &o.eps.to_string()])
        .args(["--churn", &o.churn.to_string()]);
    // The CI guard compresses token lifetimes so that the run tracks more
    // JTIs than the old hot-path limit (100,000) within its three minutes.
    let lifetime = o.token_lifetime.or(o.ci.then_some(1.0));
    if let Some(l) = lifetime {
        cmd.args(["--token-lifetime", &l.to_string()]);
    }
    if let Some(p) = &o.policy {
        cmd.arg("--policy").arg(p);
    }
    if o.ci {
        cmd.arg("--ci");
    }
    if o.keep {
        cmd.arg("--keep");
    }
    crate::setup::status(&mut cmd).context("the soak failed")
}

/// `cargo build --release` of the aggregator binary (soak and scale benches).
pub fn build_release_aggregator(cargo: &str, root: &std::path::Path) -> anyhow::Result<()> {
    crate::setup::status(Command::new(cargo).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "credtrail-aggregator",
        "--bin",
        "credtrail-aggregator",
    ]))
    .context("building the release aggregator")
}
