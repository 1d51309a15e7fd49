//! `cargo xtask image`: static (musl) release binaries in `FROM scratch`
//! images, built with buildah (vfs storage, no registry: nothing is pulled),
//! also written as OCI archives (`target/images/*.oci.tar`) and checked with
//! `skopeo inspect`. `--test` then runs them with podman and runc
//! ([`run`] in `image/run.rs`): the aggregator serves `/readyz`; the agent
//! runs as the DaemonSet runs it and reports a token read in another
//! container, under the shipped seccomp profile, and fails with a message
//! naming the fix under the runtime's default profile.
//!
//! The images' contents and configuration are `deploy/images.json`;
//! `tests/tests/e2e/deploy_agreement.rs` checks them against the manifests.

mod run;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

/// The target of the static binaries.
pub const MUSL: &str = "x86_64-unknown-linux-musl";

#[derive(clap::Args)]
pub struct Options {
    /// Then run the container tests (root; podman with runc).
    #[arg(long)]
    pub test: bool,
    /// Use the binaries and images already built (only with --test).
    #[arg(long)]
    pub no_build: bool,
}

/// One image: what goes in and how it runs (`deploy/images.json`: the agent
/// runs as root with the DaemonSet's capabilities and no writable path of
/// its own; the aggregator as uid 65532, its database in the volume, which
/// is also the working directory where the default `--db credtrail.db`
/// lands, and `/tmp` for SQLite's temporary files).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Repository, as the chart's `image.repository`.
    pub repository: String,
    /// The cargo package and binary, installed as `/usr/local/bin/<binary>`.
    pub binary: String,
    pub cmd: Vec<String>,
    pub user: String,
    pub ports: Vec<u16>,
    /// Directories created in the image.
    pub dirs: Vec<ImageDir>,
    pub volumes: Vec<String>,
    pub workdir: String,
}

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDir {
    pub path: String,
    /// `uid:gid`.
    pub owner: String,
    /// Octal, e.g. `"0700"`.
    pub mode: String,
}

/// `deploy/images.json`: the agent's and the aggregator's image.
pub fn specs() -> anyhow::Result<(ImageSpec, ImageSpec)> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Images {
        agent: ImageSpec,
        aggregator: ImageSpec,
    }
    let i: Images = serde_json::from_str(include_str!("../../deploy/images.json"))
        .context("deploy/images.json")?;
    Ok((i.agent, i.aggregator))
}

/// Container storage and tools' common flags: a vfs store of our own under
/// `target/containers` (no overlay needed, nothing shared with the host's).
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(workspace: &Path) -> Self {
        Self {
            root: workspace.join("target/containers"),
        }
    }

    /// `--storage-driver vfs --root .. --runroot ..`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--storage-driver".into(),
            "vfs".into(),
            "--root".into(),
            self.root.join("storage").display().to_string(),
            "--runroot".into(),
            self.root.join("run").display().to_string(),
        ]
    }

    pub fn buildah(&self) -> Command {
        let mut c = Command::new("buildah");
        c.args(self.flags());
        c
    }

    /// podman with runc (crun refuses hybrid cgroup hierarchies), cgroupfs
    /// (no systemd here) and file events.
    pub fn podman(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(self.flags()).args([
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ]);
        c
    }
}

pub fn run(opts: Options) -> anyhow::Result<()> {
    let ws = workspace()?;
    let store = Store::new(&ws);
    let out = ws.join("target/images");
    let version = env!("CARGO_PKG_VERSION");
    let (agent, aggregator) = specs()?;
    if !opts.no_build {
        setup()?;
        let started = Instant::now();
        let bins = build_static(&ws, &agent, &aggregator)?;
        let build_secs = started.elapsed().as_secs_f64();
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        for spec in [&agent, &aggregator] {
            let bin = stripped(&bins.join(&spec.binary), &out)?;
            let size = check_static(&bin)?;
            let archive = build_image(&store, spec, &bin, version, &out)?;
            let inspected = inspect(spec, &archive, version)?;
            println!(
                "image {}:{version}: binary {} KiB (static), OCI archive {} KiB ({}), {inspected}",
                spec.repository,
                size / 1024,
                std::fs::metadata(&archive)?.len() / 1024,
                archive.display()
            );
        }
        println!("image: musl release build of both binaries took {build_secs:.0} s");
    } else if !opts.test {
        bail!("--no-build only makes sense with --test");
    }
    if opts.test {
        run::test(&ws, &store, version, &agent, &aggregator)?;
    }
    Ok(())
}

fn workspace() -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(dir
        .parent()
        .context("xtask has no parent folder")?
        .to_path_buf())
}

/// The musl target and the Debian tools (buildah, podman, runc, skopeo,
/// musl-gcc for the C parts: SQLite, ring; busybox-static for the test's
/// reader container). Idempotent.
fn setup() -> anyhow::Result<()> {
    crate::setup::run(crate::setup::Options { force: false })?;
    let status = Command::new("rustup")
        .args(["target", "add", MUSL])
        .status()
        .context("running rustup")?;
    if !status.success() {
        bail!("rustup target add {MUSL} failed");
    }
    let missing: Vec<&str> = [
        ("buildah", "buildah"),
        ("podman", "podman"),
        ("runc", "runc"),
        ("skopeo", "skopeo"),
        ("musl-gcc", "musl-tools"),
        ("busybox", "busybox-static"),
    ]
    .into_iter()
    .filter(|(tool, _)| !crate::setup::on_path(tool))
    .map(|(_, pkg)| pkg)
    .collect();
    if !missing.is_empty() {
        println!("image: installing {}", missing.join(" "));
        let status = Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get install {} failed", missing.join(" "));
        }
    }
    Ok(())
}

/// `cargo build --release --target x86_64-unknown-linux-musl` of both
/// binaries (the agent's build script embeds the eBPF object as usual).
fn build_static(ws: &Path, agent: &ImageSpec, aggregator: &ImageSpec) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(ws)
        .args(["build", "--release", "--locked", "--target", MUSL])
        .args(["-p", &agent.binary, "-p", &aggregator.binary])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("the musl build failed");
    }
    Ok(ws.join("target").join(MUSL).join("release"))
}

/// A copy of `bin` under `out/bin` without debug information (the release
/// profile keeps line tables for backtraces: most of the binary's size).
/// The eBPF object is data in `.rodata` and stays whole.
fn stripped(bin: &Path, out: &Path) -> anyhow::Result<PathBuf> {
    let dir = out.join("bin");
    std::fs::create_dir_all(&dir)?;
    let dest = dir.join(bin.file_name().context("binary name")?);
    let _ = std::fs::remove_file(&dest);
    output(
        Command::new("objcopy")
            .arg("--strip-debug")
            .arg(bin)
            .arg(&dest),
    )?;
    Ok(dest)
}

/// Fails unless `bin` is a static ELF executable (no `PT_INTERP`: nothing
/// to load in a `FROM scratch` image). Returns its size.
pub fn check_static(bin: &Path) -> anyhow::Result<u64> {
    let data = std::fs::read(bin).with_context(|| format!("reading {}", bin.display()))?;
    let interp = elf_has_interp(&data).with_context(|| format!("{}", bin.display()))?;
    if interp {
        bail!(
            "{} is dynamically linked (has PT_INTERP); it cannot run FROM scratch",
            bin.display()
        );
    }
    Ok(data.len() as u64)
}

/// Whether a 64-bit little-endian ELF file has a `PT_INTERP` program header.
fn elf_has_interp(d: &[u8]) -> anyhow::Result<bool> {
    let u16_at = |o: usize| d.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        d.get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |o: usize| {
        d.get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if d.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        bail!("truncated ELF header");
    };
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff)? + i * usize::from(phentsize);
        match u32_at(at) {
            Some(3) => return Ok(true),
            Some(_) => {}
            None => bail!("truncated program headers"),
        }
    }
    Ok(false)
}

fn git_revision(ws: &Path) -> String {
    Command::new("git")
        .current_dir(ws)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Output of a command that must succeed.
pub fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Builds one image with buildah from scratch, tags it
/// `localhost/<repository>:<version>` and writes the OCI archive.
fn build_image(
    store: &Store,
    spec: &ImageSpec,
    bin: &Path,
    version: &str,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    let ws = workspace()?;
    let ctr = output(store.buildah().args(["from", "scratch"]))?;
    let result = (|| {
        let dest = format!("/usr/local/bin/{}", spec.binary);
        output(
            store
                .buildah()
                .arg("copy")
                .arg("--chmod")
                .arg("0755")
                .arg(&ctr)
                .arg(bin)
                .arg(&dest),
        )?;
        if !spec.dirs.is_empty() {
            let root = PathBuf::from(output(store.buildah().args(["mount", &ctr]))?);
            for d in &spec.dirs {
                let (path, owner) = (&d.path, &d.owner);
                let mode = u32::from_str_radix(&d.mode, 8)
                    .with_context(|| format!("mode {:?} of {path}", d.mode))?;
                let p = root.join(path.trim_start_matches('/'));
                std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
                let (uid, gid) = owner.split_once(':').context("owner uid:gid")?;
                std::os::unix::fs::chown(&p, Some(uid.parse()?), Some(gid.parse()?))
                    .with_context(|| format!("chown {}", p.display()))?;
                std::fs::set_permissions(
                    &p,
                    <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(mode),
                )?;
            }
            output(store.buildah().args(["umount", &ctr]))?;
        }
        let mut config = store.buildah();
        config
            .arg("config")
            .arg(format!("--entrypoint=[\"{dest}\"]"))
            .arg(format!("--user={}", spec.user))
            .arg(format!("--workingdir={}", spec.workdir))
            .arg(format!(
                "--label=org.opencontainers.image.title={}",
                spec.binary
            ))
            .arg(format!(
                "--label=org.opencontainers.image.version={version}"
            ))
            .arg(format!(
                "--label=org.opencontainers.image.revision={}",
                git_revision(&ws)
            ))
            .arg("--label=org.opencontainers.image.licenses=Apache-2.0")
            .arg("--os=linux")
            .arg("--arch=amd64");
        if spec.cmd.is_empty() {
            config.arg("--cmd=");
        } else {
            config.arg(format!("--cmd={}", serde_json::to_string(&spec.cmd)?));
        }
        for p in &spec.ports {
            config.arg(format!("--port={p}"));
        }
        for v in &spec.volumes {
            config.arg(format!("--volume={v}"));
        }
        output(config.arg(&ctr))?;
        let tag = format!("localhost/{}:{version}", spec.repository);
        output(
            store
                .buildah()
                .args(["commit", "--format", "oci", "--rm", &ctr, &tag]),
        )?;
        let name = spec.repository.replace('/', "-");
        let archive = out.join(format!("{name}-{version}.oci.tar"));
        let _ = std::fs::remove_file(&archive);
        output(store.buildah().args([
            "push",
            &tag,
            &format!(
                "oci-archive:{}:{}:{version}",
                archive.display(),
                spec.repository
            ),
        ]))?;
        Ok(archive)
    })();
    if result.is_err() {
        let _ = store.buildah().args(["rm", &ctr]).output();
    }
    result
}

/// `skopeo inspect` of the archive: checks the platform, the single layer,
/// the entrypoint, user, command and ports. Returns a short summary.
fn inspect(spec: &ImageSpec, archive: &Path, version: &str) -> anyhow::Result<String> {
    let reference = format!("oci-archive:{}", archive.display());
    let info: serde_json::Value = serde_json::from_str(&output(
        Command::new("skopeo").args(["inspect", &reference]),
    )?)?;
    let config: serde_json::Value = serde_json::from_str(&output(
        Command::new("skopeo").args(["inspect", "--config", &reference]),
    )?)?;
    let c = &config["config"];
    let mut problems = Vec::new();
    let mut expect = |what: &str, got: &serde_json::Value, want: serde_json::Value| {
        if *got != want {
            problems.push(format!("{what}: {got}, expected {want}"));
        }
    };
    expect("Architecture", &info["Architecture"], "amd64".into());
    expect("Os", &info["Os"], "linux".into());
    expect(
        "layers",
        &serde_json::json!(info["Layers"].as_array().map_or(0, Vec::len)),
        1.into(),
    );
    expect(
        "Entrypoint",
        &c["Entrypoint"],
        serde_json::json!([format!("/usr/local/bin/{}", spec.binary)]),
    );
    expect("User", &c["User"], spec.user.as_str().into());
    let cmd = if spec.cmd.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(spec.cmd)
    };
    expect("Cmd", &c["Cmd"], cmd);
    let mut ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .map(|m| {
            m.keys()
                .map(|k| k.trim_end_matches("/tcp").to_owned())
                .collect()
        })
        .unwrap_or_default();
    ports.sort();
    let mut want: Vec<String> = spec.ports.iter().map(u16::to_string).collect();
    want.sort();
    expect(
        "ExposedPorts",
        &serde_json::json!(ports),
        serde_json::json!(want),
    );
    expect(
        "version label",
        &info["Labels"]["org.opencontainers.image.version"],
        version.into(),
    );
    if !problems.is_empty() {
        bail!("{}: {}", archive.display(), problems.join("; "));
    }
    Ok(format!(
        "skopeo inspect: {}/{}, 1 layer, entrypoint {}",
        info["Os"].as_str().unwrap_or(""),
        info["Architecture"].as_str().unwrap_or(""),
        c["Entrypoint"]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_interp_detection() {
        let exe = std::env::current_exe().unwrap();
        // A cargo test binary for the gnu target is dynamically linked.
        if cfg!(target_env = "gnu") {
            assert!(check_static(&exe).is_err());
        }
        assert!(elf_has_interp(b"not an elf").is_err());
        let mut hdr = vec![0u8; 64];
        hdr[..6].copy_from_slice(b"\x7fELF\x02\x01");
        hdr[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        hdr[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        hdr[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        assert!(elf_has_interp(&hdr).is_err(), "truncated program headers");
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&1u32.to_le_bytes());
        let mut f = hdr.clone();
        f.extend_from_slice(&ph);
        assert!(!elf_has_interp(&f).unwrap());
        ph[..4].copy_from_slice(&3u32.to_le_bytes());
        let mut f = hdr;
        f.extend_from_slice(&ph);
        assert!(elf_has_interp(&f).unwrap());
    }
}
