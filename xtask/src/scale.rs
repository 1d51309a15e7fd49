//! `cargo xtask bench --scale`: a simulated cluster against one aggregator
//! (`credtrail-soak scale`, tests/src/soak/scale.rs): `--nodes` agents
//! streaming over mTLS with the real client code (all in one process),
//! `--pods` pods' bound tokens read and rotated, `--eps` audit events per
//! second through the webhook in `EventList` batches, for `--minutes`. It
//! prints, last:
//!
//! `scale nodes=5000 pods=150000 audit_eps=5000 rss_mib=… cpu_cores=… p99_ms=… lost=0`
//!
//! Too heavy for CI; `--minutes 1 --nodes 500 --pods 15000 --eps 1000` is a
//! quick check.

use std::process::Command;

use anyhow::Context as _;

use crate::build::workspace_root;

/// The scale bench's settings (part of `cargo xtask bench`'s options).
#[derive(clap::Args, Clone, Debug)]
pub struct ScaleOptions {
    /// Run the scale bench (only it).
    #[arg(long)]
    pub scale: bool,
    /// Minutes of traffic (scale bench).
    #[arg(long, default_value_t = 5.0)]
    pub minutes: f64,
    /// Simulated nodes, one agent stream each (scale bench).
    #[arg(long, default_value_t = 5000)]
    pub nodes: usize,
    /// Simulated pods with bound tokens (scale bench).
    #[arg(long, default_value_t = 150_000)]
    pub pods: usize,
    /// Audit events per second through the webhook (scale bench).
    #[arg(long, default_value_t = 5000)]
    pub eps: u64,
    /// Seconds between a pod's token rotations (an hour, compressed;
    /// default: the whole run).
    #[arg(long)]
    pub rotation_seconds: Option<f64>,
}

pub fn run(o: &ScaleOptions) -> anyhow::Result<()> {
    crate::setup::run(crate::setup::Options { force: false })?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = workspace_root();
    crate::soak::build_release_aggregator(&cargo, &root)?;
    // The driver runs thousands of agent clients and builds JSON at the
    // target rate: release, so it does not take the aggregator's CPU.
    crate::setup::status(Command::new(&cargo).current_dir(&root).args([
        "build",
        "--release",
        "-p",
        "credtrail-tests",
        "--bin",
        "credtrail-soak",
    ]))
    .context("building credtrail-soak")?;
    let mut cmd = Command::new(root.join("target/release/credtrail-soak"));
    cmd.arg("scale")
        .arg("--aggregator")
        .arg(root.join("target/release/credtrail-aggregator"))
        .args(["--minutes", &o.minutes.to_string()])
        .args(["--nodes", &o.nodes.to_string()])
        .args(["--pods", &o.pods.to_string()])
        .args(["--eps", &o.eps.to_string()]);
    if let Some(r) = o.rotation_seconds {
        cmd.args(["--rotation-seconds", &r.to_string()]);
    }
    crate::setup::status(&mut cmd).context("the scale bench failed")
}
