//! Builds the eBPF object (`agent-ebpf`, binary `credtrail`) with nightly for
//! `bpfel-unknown-none` through aya-build, into `OUT_DIR/credtrail`; the
//! loader embeds it with `include_bytes_aligned!`.
//!
//! `AYA_BUILD_SKIP=1` skips it (for `cargo check`/clippy without nightly);
//! the agent then embeds an empty object and `start()` reports that clearly.
//!
//! `CREDTRAIL_EBPF_CLEAN=1` (set by `.ci/run`) deletes the eBPF build's own
//! target folder (~280 MB: `core` built for BPF, with debug info) once the
//! object is copied out: CI builds it once per profile and needs the disk.

use anyhow::{Context as _, anyhow};
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let out_dir = std::env::var_os("OUT_DIR").context("OUT_DIR not set")?;
    let object = std::path::Path::new(&out_dir).join("credtrail");
    let skip =
        std::env::var("AYA_BUILD_SKIP").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    if skip {
        // aya-build skips too; leave an empty object so include_bytes finds a file.
        if !object.exists() {
            std::fs::write(&object, b"")
                .with_context(|| format!("writing {}", object.display()))?;
        }
    }
    let meta = cargo_metadata_package_dir()?;
    aya_build::build_ebpf(
        [Package {
            name: "credtrail-ebpf",
            root_dir: &meta,
            ..Default::default()
        }],
        Toolchain::default(),
    )
    .context(
        "building the eBPF object (run `cargo xtask setup` if bpf-linker or rust-src is missing)",
    )?;
    if !skip && std::fs::metadata(&object).map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(anyhow!(
            "aya-build produced no object at {}",
            object.display()
        ));
    }
    if std::env::var("CREDTRAIL_EBPF_CLEAN").is_ok_and(|v| v == "1") {
        let build_dir = std::path::Path::new(&out_dir).join("aya-build");
        if let Err(e) = std::fs::remove_dir_all(&build_dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            println!("cargo:warning=removing {}: {e}", build_dir.display());
        }
    }
    Ok(())
}

/// `agent-ebpf`, next to this crate.
fn cargo_metadata_package_dir() -> anyhow::Result<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR not set")?;
    let p = std::path::Path::new(&dir).join("../agent-ebpf");
    let p = p
        .canonicalize()
        .with_context(|| format!("finding {}", p.display()))?;
    p.to_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", p.display()))
}
