//! `cargo xtask eval`: builds the aggregator and replays the evaluation
//! corpus (`eval/scenarios/`) through its real detection path
//! (`credtrail-aggregator eval`), printing the confusion table per rule and
//! per analytic and every wrong scenario with its alerts. Fails on any wrong
//! scenario. Needs neither root nor the eBPF toolchain.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct Options {
    /// The folder of scenario folders.
    #[arg(long, default_value = "eval/scenarios")]
    pub dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let lines = run_lines(&opts)?;
    for l in &lines {
        println!("{l}");
    }
    Ok(())
}

/// Runs the evaluation; returns the lines of its report (for `xtask test`).
pub fn run_lines(opts: &Options) -> anyhow::Result<Vec<String>> {
    let root = crate::build::workspace_root();
    let dir = if opts.dir.is_absolute() {
        opts.dir.clone()
    } else {
        root.join(&opts.dir)
    };
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build.current_dir(&root).args([
        "build",
        "--quiet",
        "-p",
        "credtrail-aggregator",
        "--bin",
        "credtrail-aggregator",
    ]);
    crate::setup::status(&mut build).context("building credtrail-aggregator")?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(|| root.join("target"), |t| root.join(t));
    let bin = target.join("debug/credtrail-aggregator");
    let mut cmd = Command::new(&bin);
    cmd.arg("eval").arg(&dir);
    if opts.json {
        cmd.arg("--json");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    if !out.status.success() {
        bail!(
            "eval failed ({}):\n{text}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(lines)
}
