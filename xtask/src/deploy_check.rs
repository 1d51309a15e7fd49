//! Validates `deploy/`: every plain manifest and the Helm chart rendered with each values file
//! under `deploy/check/values/`, against the Kubernetes schemas (kubernetes-validate, offline,
//! strict) and, for cert-manager objects, the audit Policy and the webhook kubeconfig, against
//! schemas written from their upstream types. The chart is rendered and linted by Helm's own Go
//! engine (helm-python-sdk). See `deploy/check/validate.py`.
//!
//! The Python tools live in a venv under `~/.cache/credtrail/` (so fresh clones reuse it),
//! installed once from PyPI with pinned versions; after that everything runs offline.
//!
//! Called by `cargo xtask test`; the `e2e` test binary (`tests/tests/e2e/main.rs`) includes this file too.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Pinned tool versions: the venv is rebuilt when this changes.
pub const REQUIREMENTS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "helm-python-sdk==0.2.2",
    "dockerfile==3.4.0",
];

/// Kubernetes versions the manifests must be valid for: the oldest the chart supports
/// (`kubeVersion` in Chart.yaml) and the newest the validator ships.
pub const KUBERNETES_VERSIONS: &str = "1.30.0,1.37.0";

/// Runs the full check and fails listing every failed check.
#[allow(
    dead_code,
    reason = "called by `cargo xtask test`; the test file that includes this module does not"
)]
pub fn run() -> anyhow::Result<()> {
    let deploy = deploy_dir();
    let bless = std::env::var_os("CREDTRAIL_BLESS").is_some();
    let results = validate_all(&deploy, bless)?;
    let failed: Vec<&serde_json::Value> = results.iter().filter(|r| r["ok"] != true).collect();
    eprintln!(
        "deploy check: {} checks, {} failed",
        results.len(),
        failed.len()
    );
    if !failed.is_empty() {
        for f in &failed {
            eprintln!(
                "  {} {} {} [{}]: {}",
                f["source"].as_str().unwrap_or(""),
                f["kind"].as_str().unwrap_or(""),
                f["name"].as_str().unwrap_or(""),
                f["validator"].as_str().unwrap_or(""),
                f["errors"]
            );
        }
        bail!("{} deployment checks failed", failed.len());
    }
    Ok(())
}

/// `deploy/` of this workspace.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("deploy"))
        .unwrap_or_else(|| PathBuf::from("deploy"))
}

/// Validates the plain manifests and the chart with every values file; returns one JSON
/// object per check (`source`, `kind`, `name`, `validator`, `ok`, `errors`).
pub fn validate_all(deploy: &Path, write_plain: bool) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut args = vec!["--deploy".to_owned(), path_str(deploy)?];
    let values_dir = deploy.join("check/values");
    let mut values: Vec<PathBuf> = std::fs::read_dir(&values_dir)
        .with_context(|| format!("reading {}", values_dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    values.sort();
    for v in values {
        args.push("--values".into());
        args.push(path_str(&v)?);
    }
    if write_plain {
        args.push("--write-plain".into());
    }
    validator(deploy, &args)
}

/// Validates just these files (no chart, no drift check).
#[allow(dead_code, reason = "used by the deploy tests, not by cargo xtask")]
pub fn validate_files(deploy: &Path, files: &[PathBuf]) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut args = vec!["--deploy".to_owned(), path_str(deploy)?];
    for f in files {
        args.push("--file".into());
        args.push(path_str(f)?);
    }
    validator(deploy, &args)
}

/// The chart rendered with the values file `values` (release and namespace `credtrail`):
/// template path -> rendered text.
#[allow(dead_code, reason = "used by the deploy tests, not by cargo xtask")]
pub fn render(
    deploy: &Path,
    values: &Path,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let python = venv_python()?;
    let out = Command::new(&python)
        .arg(deploy.join("check/validate.py"))
        .args([
            "--deploy",
            &path_str(deploy)?,
            "--render",
            &path_str(values)?,
        ])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "rendering with {} failed: {}",
            values.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("render output")?;
    serde_json::from_value(v["rendered"].clone()).context("render output")
}

fn validator(deploy: &Path, args: &[String]) -> anyhow::Result<Vec<serde_json::Value>> {
    let python = venv_python()?;
    let out = Command::new(&python)
        .arg(deploy.join("check/validate.py"))
        .args(args)
        .args(["--k8s", KUBERNETES_VERSIONS])
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut results = Vec::new();
    let mut summary = None;
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("validator printed a line that is not JSON: {line}"))?;
        if v.get("summary").is_some() {
            summary = Some(v);
        } else {
            results.push(v);
        }
    }
    if summary.is_none() {
        bail!(
            "the validator stopped without a summary ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(results)
}

/// The venv's python, creating the venv and installing [`REQUIREMENTS`] if needed.
pub fn venv_python() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(home).join(".cache"));
    let venv = cache.join("credtrail/deploy-venv");
    let python = venv.join("bin/python");
    let stamp = venv.join("credtrail-requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && python.exists() {
        return Ok(python);
    }
    eprintln!(
        "deploy check: installing {} into {}",
        REQUIREMENTS.join(" "),
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv")?;
    if !status.success() {
        bail!("python3 -m venv {} failed ({status})", venv.display());
    }
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(REQUIREMENTS)
        .status()
        .context("running pip install")?;
    if !status.success() {
        bail!("pip install {} failed ({status})", REQUIREMENTS.join(" "));
    }
    std::fs::write(&stamp, wanted)?;
    Ok(python)
}

fn path_str(p: &Path) -> anyhow::Result<String> {
    p.to_str()
        .map(str::to_owned)
        .with_context(|| format!("{} is not UTF-8", p.display()))
}
