//! `cargo xtask build`: set-up, then the agent (whose build script builds
//! the eBPF object with nightly and embeds it) and the other binaries.

use std::process::Command;

use anyhow::{Context as _, bail};

#[derive(clap::Args)]
pub struct Options {
    /// Build with the release profile.
    #[arg(long)]
    pub release: bool,
    /// Skip `cargo xtask setup`.
    #[arg(long)]
    pub no_setup: bool,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let bin_dir = build_bins(
        &["credtrail-agent", "credtrail-aggregator"],
        opts.release,
        opts.no_setup,
    )?;
    let agent = bin_dir.join("credtrail-agent");
    let size = std::fs::metadata(&agent)
        .with_context(|| format!("{} was not built", agent.display()))?
        .len();
    println!(
        "build: {} ({} KiB, eBPF object embedded)",
        agent.display(),
        size / 1024
    );
    Ok(())
}

/// Set-up (unless `no_setup`), then `cargo build --bins` of `packages`, the
/// agent's build script building and embedding the eBPF object. Returns the
/// folder holding the binaries.
pub fn build_bins(
    packages: &[&str],
    release: bool,
    no_setup: bool,
) -> anyhow::Result<std::path::PathBuf> {
    if !no_setup {
        crate::setup::run(crate::setup::Options { force: false })?;
    }
    if std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v == "true") {
        bail!("AYA_BUILD_SKIP is set: the agent would have no eBPF object; unset it");
    }
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root()).args(["build", "--bins"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if release {
        cmd.arg("--release");
    }
    crate::setup::status(&mut cmd).with_context(|| format!("building {}", packages.join(", ")))?;
    let profile = if release { "release" } else { "debug" };
    Ok(workspace_root().join("target").join(profile))
}

/// The agent binary of a profile, in the workspace target dir.
pub fn agent_binary(profile: &str) -> std::path::PathBuf {
    workspace_root()
        .join("target")
        .join(profile)
        .join("credtrail-agent")
}

/// The workspace root (xtask's parent folder).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
}
