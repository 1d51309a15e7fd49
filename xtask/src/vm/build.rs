//! Builds what goes into the guest: the agent binary and the agent's privileged tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

use super::initramfs::TestBinary;

/// Builds the `credtrail-agent` binary (with its embedded eBPF object) and returns its path.
pub fn build_agent(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "credtrail-agent",
            "--bin",
            "credtrail-agent",
            "--message-format=json",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build -p credtrail-agent")?;
    if !out.status.success() {
        bail!("building credtrail-agent failed ({})", out.status);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no credtrail-agent executable")
}

/// Builds the privileged agent tests and returns their executables.
pub fn build_agent_tests(root: &Path) -> anyhow::Result<Vec<TestBinary>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "test",
            "-p",
            "credtrail-tests",
            "--test",
            "agent_*",
            "--no-run",
            "--message-format=json",
        ])
        .current_dir(root)
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the agent tests failed ({})", out.status);
    }
    let mut tests = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let target = &msg["target"];
        let name = target["name"].as_str().unwrap_or("");
        let is_test = target["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "test"));
        if let (true, true, Some(exe)) = (
            is_test,
            name.starts_with("agent_"),
            msg["executable"].as_str(),
        ) {
            tests.push(TestBinary {
                name: name.to_owned(),
                path: PathBuf::from(exe),
            });
        }
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tests)
}
