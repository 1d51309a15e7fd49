//! Outside tools the output tests run for real, installed on demand and
//! idempotently: a Python venv under `target/` with the OCSF schema package
//! (`pip`), and Debian programs (`rsyslogd`, `promtool`) that `cargo xtask
//! setup` installs (a test installs them itself with apt-get when it runs as
//! root and they are missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The PyPI package (and version) whose shipped OCSF schema validates our findings.
pub const OCSF_PACKAGE: &str = "pydantic-ocsf==3.0.0";

static INSTALL: Mutex<()> = Mutex::new(());

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// The venv's python with [`OCSF_PACKAGE`] installed (created once; seconds when present).
pub fn ocsf_python() -> PathBuf {
    let _g = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = target_dir().join("ocsf-venv");
    let python = venv.join("bin/python");
    let marker = venv.join(format!(".installed-{OCSF_PACKAGE}"));
    if marker.exists() && python.exists() {
        return python;
    }
    run(Command::new("python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv))
    .unwrap_or_else(|e| {
        panic!("creating the OCSF venv (Debian: python3-venv; `cargo xtask setup`): {e}")
    });
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        OCSF_PACKAGE,
    ]))
    .unwrap_or_else(|e| panic!("installing {OCSF_PACKAGE} from PyPI: {e}"));
    std::fs::write(&marker, b"").unwrap();
    python
}

/// The path of a Debian program, installing its package with apt-get (as
/// root) when it is missing.
pub fn debian_program(program: &str, packages: &[&str]) -> PathBuf {
    let candidates: Vec<String> = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| format!("{d}/{program}"))
        .collect();
    let c: Vec<&str> = candidates.iter().map(String::as_str).collect();
    debian_file(&c, packages)
}

/// The first of `candidates` that exists, installing `packages` with apt-get
/// (as root) when none does.
pub fn debian_file(candidates: &[&str], packages: &[&str]) -> PathBuf {
    let _g = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let find = || {
        candidates
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .map(Path::to_path_buf)
    };
    if let Some(p) = find() {
        return p;
    }
    // SAFETY: getuid has no preconditions.
    assert!(
        unsafe { libc::getuid() } == 0,
        "{candidates:?} missing: run `cargo xtask setup` (installs {packages:?}) or apt-get install them"
    );
    let install = |update: bool| {
        if update {
            run(Command::new("apt-get")
                .arg("update")
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        }
        run(Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"))
    };
    if install(false).is_err() {
        install(true).unwrap_or_else(|e| panic!("installing {packages:?}: {e}"));
    }
    find().unwrap_or_else(|| panic!("{candidates:?} still missing after installing {packages:?}"))
}
