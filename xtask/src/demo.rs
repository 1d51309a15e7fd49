//! `cargo xtask demo`: the README's main command. From a fresh clone: sets
//! up the toolchain pieces (`cargo xtask setup`, idempotent), builds the
//! agent (with its eBPF object), the aggregator and the demo tools, then runs
//! `credtrail-demo`, which generates throw-away certificates, starts the
//! aggregator on the embedded store and the real agent on this machine,
//! plays the story in pod-shaped cgroups, prints the alerts fetched through
//! the query API, and cleans up. Needs root (eBPF and cgroups).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct Options {
    /// Build and run with the release profile.
    #[arg(long)]
    pub release: bool,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
    /// Keep the work folder (certificates, logs, database, audit log).
    #[arg(long)]
    pub keep: bool,
    /// Leave the aggregator, agent and simulator running until Ctrl-C.
    #[arg(long)]
    pub keep_running: bool,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let bin_dir = crate::build::build_bins(
        &["credtrail-agent", "credtrail-aggregator", "credtrail-tests"],
        opts.release,
        opts.no_setup,
    )
    .context("building the demo")?;
    println!("demo: built in {:.1}s", t0.elapsed().as_secs_f64());

    let t1 = Instant::now();
    let mut demo = Command::new(bin_dir.join("credtrail-demo"));
    demo.arg("--bin-dir").arg(&bin_dir);
    if opts.keep {
        demo.arg("--keep");
    }
    if opts.keep_running {
        demo.arg("--keep-running");
    }
    let status = demo
        .status()
        .with_context(|| format!("running {}", bin_dir.join("credtrail-demo").display()))?;
    println!("demo: ran in {:.1}s", t1.elapsed().as_secs_f64());
    if !status.success() {
        bail!("credtrail-demo failed ({status})");
    }
    Ok(())
}
