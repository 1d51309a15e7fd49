//! Debian kernel packages: resolve, download with `apt-get download`, unpack with `dpkg-deb`.
//! Only Debian's own package sources are used; everything is cached under `target/vm/`.
//!
//! Kernels of the machine's configured archive (Debian 12) come through the system's apt; an
//! older Debian release's kernel (Debian 11's 5.10) comes through apt too, with a private
//! sources list and state under `target/vm/apt-<suite>/`, leaving the system's apt untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Kernels to test, as `[SUITE:]PACKAGE`: a metapackage whose dependency names the image.
/// Debian 12's own 6.1 line, the newer 6.12 line bookworm carries, and Debian 11's 5.10.
pub const DEFAULT_KERNELS: &[&str] = &[
    "linux-image-amd64",
    "linux-image-6.12-amd64",
    "bullseye:linux-image-amd64",
];

/// Older Debian releases a kernel may come from (key ring shipped by debian-archive-keyring).
const SUITES: &[&str] = &["bullseye"];

/// apt with either the system's configuration or a private one for `suite`.
pub struct Apt {
    options: Vec<String>,
}

impl Apt {
    /// `None`: the system's configured archive.
    pub fn new(cache: &Path, suite: Option<&str>) -> anyhow::Result<Self> {
        let Some(suite) = suite else {
            return Ok(Self {
                options: Vec::new(),
            });
        };
        if !SUITES.contains(&suite) {
            bail!(
                "unknown Debian suite {suite:?} (known: {})",
                SUITES.join(", ")
            );
        }
        let root = cache.join(format!("apt-{suite}"));
        for dir in ["lists/partial", "cache/archives/partial"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        let list = root.join("sources.list");
        std::fs::write(
            &list,
            format!(
                "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian {suite} main\n\
                 deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] \
                 http://deb.debian.org/debian-security {suite}-security main\n"
            ),
        )?;
        let p = |p: &Path| p.display().to_string();
        let apt = Self {
            options: vec![
                format!("-oDir::Etc::SourceList={}", p(&list)),
                "-oDir::Etc::SourceParts=/nonexistent".into(),
                format!("-oDir::State::Lists={}", p(&root.join("lists"))),
                format!("-oDir::Cache={}", p(&root.join("cache"))),
                "-oDir::State::status=/dev/null".into(),
            ],
        };
        // Refresh the private index once a day.
        let stamp = root.join(".updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e.as_secs() < 86_400));
        if !fresh {
            eprintln!("vm-test: apt-get update ({suite}, private index)");
            let status = Command::new("apt-get")
                .args(&apt.options)
                .args(["-q", "update"])
                .status()
                .context("running apt-get update")?;
            if !status.success() {
                bail!("apt-get update for {suite} failed ({status})");
            }
            std::fs::write(&stamp, b"")?;
        }
        Ok(apt)
    }

    fn command(&self, tool: &str) -> Command {
        let mut c = Command::new(tool);
        c.args(&self.options);
        c
    }
}

/// A kernel unpacked from its package.
pub struct Kernel {
    /// The package, e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    /// The kernel release, e.g. `6.1.0-56-amd64`.
    pub release: String,
    pub vmlinuz: PathBuf,
}

/// Resolves a metapackage (or a concrete package name) to a concrete `linux-image-*` package.
pub fn resolve(apt: &Apt, name: &str) -> anyhow::Result<Option<String>> {
    let out = apt
        .command("apt-cache")
        .args(["depends", "--no-recommends", "--no-suggests", name])
        .output()
        .context("running apt-cache depends (is this Debian?)")?;
    if !out.status.success() {
        // apt-cache prints "No packages found" for unknown names.
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let concrete = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(str::trim)
        .find(|dep| dep.starts_with("linux-image-") && !dep.contains("-dbg"));
    Ok(match concrete {
        Some(dep) => Some(dep.to_owned()),
        // Not a metapackage: a concrete image package depends on no other image.
        None if text.lines().next().is_some_and(|l| l.trim() == name) => Some(name.to_owned()),
        None => None,
    })
}

/// Downloads (once) and unpacks (once) `package` under `cache`.
pub fn fetch(apt: &Apt, cache: &Path, package: &str) -> anyhow::Result<Kernel> {
    let debs = cache.join("debs");
    std::fs::create_dir_all(&debs).with_context(|| format!("creating {}", debs.display()))?;
    let deb = match find_deb(&debs, package)? {
        Some(deb) => deb,
        None => {
            eprintln!("vm-test: apt-get download {package}");
            let status = apt
                .command("apt-get")
                .args(["-q", "download", package])
                .current_dir(&debs)
                .status()
                .context("running apt-get download")?;
            if !status.success() {
                bail!(
                    "apt-get download {package} failed ({status}); run `apt-get update` first \
                     and check `apt-cache policy {package}`"
                );
            }
            find_deb(&debs, package)?
                .with_context(|| format!("apt-get download left no .deb for {package}"))?
        }
    };
    let root = cache.join("kernels").join(package);
    let done = root.join(".unpacked");
    if !done.exists() {
        if root.exists() {
            std::fs::remove_dir_all(&root)
                .with_context(|| format!("removing partial {}", root.display()))?;
        }
        std::fs::create_dir_all(&root)?;
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(&root)
            .status()
            .context("running dpkg-deb -x")?;
        if !status.success() {
            bail!("dpkg-deb -x {} failed ({status})", deb.display());
        }
        std::fs::write(&done, b"")?;
    }
    let boot = root.join("boot");
    let vmlinuz = std::fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .with_context(|| format!("{package}: no boot/vmlinuz-* in the package"))?;
    let release = vmlinuz
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("vmlinuz-"))
        .context("kernel file name")?
        .to_owned();
    Ok(Kernel {
        package: package.to_owned(),
        release,
        vmlinuz,
    })
}

fn find_deb(dir: &Path, package: &str) -> anyhow::Result<Option<PathBuf>> {
    // apt-get download names files `<package>_<version>_<arch>.deb`, with ':' escaped.
    let prefix = format!("{package}_");
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&prefix) && name.ends_with(".deb") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}
