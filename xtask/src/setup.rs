//! `cargo xtask setup`: everything the eBPF build needs on a fresh Debian
//! machine, idempotent and quick when already done.
//!
//! 1. the nightly toolchain with `rust-src` (`-Z build-std=core` for
//!    `bpfel-unknown-none`);
//! 2. `bpf-linker` from crates.io, linked against nightly's own libLLVM: a
//!    folder `~/.cache/credtrail/llvm/<soname-version>/lib` gets symlinks
//!    `libLLVM.so` and `libLLVM.so.<version>` to
//!    `$(rustc +nightly --print sysroot)/lib/libLLVM.so.<version>`, and
//!    `LLVM_PREFIX` points there (bpf-linker records it as its rpath). The
//!    `llvm-NN` feature comes from `rustc +nightly -vV`. Skipped when
//!    `bpf-linker --version` already runs;
//! 3. Debian packages the build and the tests need (a C toolchain for linking; rsyslog,
//!    promtool and python3-venv for the output tests), only when missing;
//! 4. tracefs mounted at `/sys/kernel/tracing` (root only).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// bpf-linker release known to work with the pinned aya (0.14 / aya-ebpf 0.2.1).
const BPF_LINKER_VERSION: &str = "0.13.0";
const NIGHTLY: &str = "nightly";
/// Debian packages: name -> why.
const DEB_PACKAGES: &[(&str, &str)] = &[
    ("gcc", "links bpf-linker and build scripts"),
    ("libc6-dev", "C library headers for linking"),
    ("iproute2", "network namespaces for the conntrack NAT test"),
    ("nftables", "the MASQUERADE rule of the conntrack NAT test"),
    (
        "python3-venv",
        "the OCSF schema validator's venv (aggregator test ocsf_schema)",
    ),
    ("rsyslog", "the real syslog receiver of the delivery tests"),
    (
        "rsyslog-gnutls",
        "rsyslog's TLS driver (gtls) for the syslog-over-TLS test",
    ),
    (
        "prometheus",
        "promtool: checks and unit-tests deploy/monitoring rules",
    ),
];

#[derive(clap::Args)]
pub struct Options {
    /// Rebuild bpf-linker even if one already runs.
    #[arg(long)]
    pub force: bool,
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let t0 = std::time::Instant::now();
    ensure_debian_packages()?;
    ensure_nightly_rust_src()?;
    ensure_bpf_linker(opts.force)?;
    ensure_tracefs();
    println!("setup: done in {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `cmd`, returning stdout; the error names the command.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `cmd` with inherited output; the error names the command.
/// Whether `tool` is a command on `PATH`.
pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the cargo subcommand `sub` (crate `krate`, `--locked`) unless
/// `cargo <sub> --version` already answers; `who` prefixes the message.
pub fn ensure_cargo_tool(who: &str, sub: &str, krate: &str) -> anyhow::Result<()> {
    let present = Command::new("cargo")
        .args([sub, "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    println!("{who}: installing {krate}");
    status(Command::new("cargo").args(["install", "--locked", krate]))
}

pub fn status(cmd: &mut Command) -> anyhow::Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !st.success() {
        bail!("{cmd:?} failed ({st})");
    }
    Ok(())
}

fn ensure_debian_packages() -> anyhow::Result<()> {
    if !Path::new("/usr/bin/dpkg-query").exists() {
        println!("setup: not a Debian system; skipping package check");
        return Ok(());
    }
    let missing: Vec<&str> = DEB_PACKAGES
        .iter()
        .filter(|(p, _)| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|(p, _)| *p)
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
        return Ok(());
    }
    println!("setup: installing Debian packages {missing:?}");
    status(Command::new("apt-get").arg("update"))?;
    status(
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn ensure_nightly_rust_src() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        println!("setup: installing the nightly toolchain");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if installed.lines().any(|l| l.starts_with("rust-src")) {
        println!("setup: nightly rust-src present");
        return Ok(());
    }
    println!("setup: adding rust-src to nightly");
    status(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))
}

fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
        .join("bin")
}

/// Nightly's LLVM: (major version, sysroot lib dir, libLLVM soname file name).
pub fn nightly_llvm() -> anyhow::Result<(u32, PathBuf, String)> {
    let vv = output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "-vV"]))?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .and_then(|m| m.trim().parse::<u32>().ok())
        .context("`rustc +nightly -vV` shows no LLVM version")?;
    let sysroot =
        output(Command::new("rustc").args([&format!("+{NIGHTLY}"), "--print", "sysroot"]))?;
    let lib = PathBuf::from(sysroot.trim()).join("lib");
    let soname = std::fs::read_dir(&lib)
        .with_context(|| format!("listing {}", lib.display()))?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with("libLLVM.so."))
        .with_context(|| format!("no libLLVM.so.* in {}", lib.display()))?;
    Ok((major, lib, soname))
}

fn bpf_linker_runs(bin: &Path) -> bool {
    Command::new(bin)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn ensure_bpf_linker(force: bool) -> anyhow::Result<()> {
    let bin = cargo_bin_dir().join("bpf-linker");
    if !force && bpf_linker_runs(&bin) {
        println!("setup: bpf-linker present ({})", bin.display());
        return Ok(());
    }
    let (major, sysroot_lib, soname) = nightly_llvm()?;
    let version = soname.trim_start_matches("libLLVM.so.");
    let home = std::env::var_os("HOME").context("HOME is not set")?;
    let prefix = PathBuf::from(home)
        .join(".cache/credtrail/llvm")
        .join(version);
    let lib = prefix.join("lib");
    std::fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let target = sysroot_lib.join(&soname);
    for name in ["libLLVM.so".to_owned(), soname.clone()] {
        let link = lib.join(&name);
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).with_context(|| format!("removing {}", link.display()))?;
        }
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("linking {} -> {}", link.display(), target.display()))?;
    }
    println!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} (feature llvm-{major}) against {} (a few minutes)",
        target.display()
    );
    status(
        Command::new("cargo")
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
                "--force",
                "--no-default-features",
                "--features",
                &format!("llvm-{major}"),
            ])
            .env("LLVM_PREFIX", &prefix)
            // Our workspace's target dir must not be used for this install.
            .env_remove("CARGO_TARGET_DIR"),
    )?;
    if !bpf_linker_runs(&bin) {
        bail!(
            "bpf-linker was installed at {} but does not run",
            bin.display()
        );
    }
    println!("setup: bpf-linker built");
    Ok(())
}

/// The mounted tracefs (mounting it if needed, as root).
pub fn tracefs_dir() -> anyhow::Result<PathBuf> {
    ensure_tracefs();
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(PathBuf::from(dir));
        }
    }
    anyhow::bail!("tracefs is not mounted at /sys/kernel/tracing and mounting it failed")
}

fn ensure_tracefs() {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return;
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        println!("setup: tracefs not mounted (run as root to mount it; the agent mounts it too)");
        return;
    }
    match Command::new("mount")
        .args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"])
        .status()
    {
        Ok(s) if s.success() => println!("setup: mounted tracefs at /sys/kernel/tracing"),
        other => println!("setup: could not mount tracefs ({other:?}); the agent retries"),
    }
}
