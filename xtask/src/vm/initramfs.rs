//! The initramfs: busybox, the test binaries with the shared libraries they load, and an
//! `/init` that mounts what the agent needs, runs every test binary and powers off.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::cpio::CpioWriter;

/// Marker that starts every line `/init` prints for the xtask to read.
pub const MARK: &str = "credtrail-vm:";

const BUSYBOX: &str = "/bin/busybox";

/// The `/init` script. Kernel command-line words of the form `NAME=value` (no dot in NAME)
/// reach init as environment variables; that is how each boot passes
/// `CREDTRAIL_EXPECT_HOOK` and `CREDTRAIL_HOOK_MODE`.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t securityfs securityfs /sys/kernel/security
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpffs /sys/fs/bpf
# The unified layout of current nodes (the build host is hybrid, /sys/fs/cgroup/unified):
# tests find the cgroup2 mount in /proc/mounts either way.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up
hostname credtrail-vm
export CREDTRAIL_IN_VM=1 HOME=/root RUST_BACKTRACE=1 RUST_LOG=${RUST_LOG:-info}
echo "credtrail-vm: kernel $(uname -r)"
echo "credtrail-vm: lsm $(cat /sys/kernel/security/lsm 2>/dev/null)"
echo "credtrail-vm: expect-hook ${CREDTRAIL_EXPECT_HOOK:-none} hook-mode ${CREDTRAIL_HOOK_MODE:-auto} connect-hook ${CREDTRAIL_CONNECT_HOOK:-auto}"
cd /tmp
# The shipping binary first: start it as a DaemonSet would (its own hook choice), read a
# watched file, and show what it reported.
if [ -x /bin/credtrail-agent ]; then
  credtrail-agent --node-name credtrail-vm --no-scan --output jsonl /tmp/agent.jsonl 2>/tmp/agent.log &
  apid=$!
  i=0
  while [ $i -lt 240 ] && ! grep -q node_info /tmp/agent.jsonl 2>/dev/null; do
    sleep 0.5; i=$((i+1))
  done
  mkdir -p /root/.kube
  printf 'apiVersion: v1\nkind: Config\n' > /root/.kube/config
  cat /root/.kube/config > /dev/null
  i=0
  while [ $i -lt 60 ] && ! grep -q '"/root/.kube/config"' /tmp/agent.jsonl 2>/dev/null; do
    sleep 0.5; i=$((i+1))
  done
  kill $apid 2>/dev/null; wait $apid
  echo "credtrail-vm: agent-node-info $(grep -m1 node_info /tmp/agent.jsonl)"
  echo "credtrail-vm: agent-reads $(grep -c '"/root/.kube/config"' /tmp/agent.jsonl)"
  # Its warnings say why a hook was refused (the verifier's last words included).
  tr -d '\033' < /tmp/agent.log | sed 's/\[[0-9;]*m//g' | grep -E 'WARN|ERROR|hooks=|refused|verif|error' \
    | cut -c1-400 | tail -n 12 | sed 's/^/credtrail-vm: agent-log /'
  rm -rf /root/.kube
fi
# `cargo xtask vm-test --bench`: the open-loop bench (xtask/src/vm/bench.rs).
if [ -n "$CREDTRAIL_BENCH" ] && [ -x /bench.sh ]; then
  /bench.sh
fi
passed=0
failed=0
# Under TCG emulation a child test process needs far longer than the host's
# 20 s default to start and answer (tests/src/fixtures/child.rs).
export CREDTRAIL_CHILD_TIMEOUT_SECS=180
for t in /tests/*; do
  [ -e "$t" ] || continue
  name=${t##*/}
  echo "credtrail-vm: START $name"
  # --nocapture: passing tests' output (their credtrail-hook line) must reach the console too.
  "$t" --test-threads=1 --nocapture > /tmp/test.out 2>&1
  rc=$?
  # A serial console is slow and a verifier log can run to megabytes: cap what is shown,
  # keeping every hook and skip line.
  size=$(wc -c < /tmp/test.out)
  if [ "$size" -gt 131072 ]; then
    grep -a -E 'credtrail-hook:|SKIP ' /tmp/test.out | head -n 50
    head -c 65536 /tmp/test.out
    echo; echo "credtrail-vm: ($size bytes of output, middle cut)"
    tail -c 65536 /tmp/test.out; echo
  else
    cat /tmp/test.out
  fi
  if [ $rc -eq 0 ]; then
    passed=$((passed+1)); echo "credtrail-vm: RESULT $name PASS"
  else
    failed=$((failed+1)); echo "credtrail-vm: RESULT $name FAIL exit=$rc"
  fi
done
echo "credtrail-vm: SUMMARY passed=$passed failed=$failed"
sync
poweroff -f
"#;

/// A program to put in `/tests`: a name and the host file.
pub struct TestBinary {
    pub name: String,
    pub path: PathBuf,
}

/// Builds `out` (an uncompressed newc cpio). `stage` is scratch space for stripped copies.
/// `agent` is the `credtrail-agent` binary, installed as `/bin/credtrail-agent`; `bench`
/// the open-loop program of `vm-test --bench` (installed with `/bench.sh`).
pub fn build(
    out: &Path,
    stage: &Path,
    tests: &[TestBinary],
    agent: Option<&Path>,
    bench: Option<&Path>,
) -> anyhow::Result<()> {
    if !Path::new(BUSYBOX).exists() {
        bail!("{BUSYBOX} is missing: apt-get install busybox-static");
    }
    std::fs::create_dir_all(stage)?;
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = CpioWriter::new(BufWriter::new(file));
    for dir in [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/root",
        "/etc",
        "/tests",
    ] {
        w.dir(dir)?;
    }
    w.char_device("/dev/console", 5, 1)?;
    w.char_device("/dev/null", 1, 3)?;
    w.file(BUSYBOX, 0o755, &read(Path::new(BUSYBOX))?)?;
    w.file("/init", 0o755, INIT.as_bytes())?;
    w.file("/etc/passwd", 0o644, b"root:x:0:0:root:/root:/bin/sh\n")?;
    w.file("/etc/group", 0o644, b"root:x:0:\n")?;
    w.file("/etc/hosts", 0o644, b"127.0.0.1 localhost credtrail-vm\n")?;

    let mut dirs_done: BTreeSet<String> = [
        "/bin",
        "/sbin",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/dev",
        "/proc",
        "/sys",
        "/tmp",
        "/run",
        "/root",
        "/etc",
        "/tests",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    let mut libs: BTreeSet<PathBuf> = BTreeSet::new();
    let mut programs: Vec<(String, &Path)> = tests
        .iter()
        .map(|t| (format!("/tests/{}", t.name), t.path.as_path()))
        .collect();
    if let Some(agent) = agent {
        programs.push(("/bin/credtrail-agent".to_owned(), agent));
    }
    if let Some(bench) = bench {
        programs.push((super::bench::GUEST_LOOP.to_owned(), bench));
        w.file("/bench.sh", 0o755, super::bench::SCRIPT.as_bytes())?;
    }
    for (guest, host) in programs {
        let stripped = stage.join(guest.trim_start_matches('/').replace('/', "_"));
        let status = Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(&stripped)
            .arg(host)
            .status()
            .context("running strip (binutils)")?;
        if !status.success() {
            bail!("strip {} failed ({status})", host.display());
        }
        w.file(&guest, 0o755, &read(&stripped)?)?;
        libs.extend(shared_libraries(host)?);
    }
    for lib in &libs {
        let guest = lib.to_str().context("library path is not UTF-8")?;
        for parent in parents(guest) {
            if dirs_done.insert(parent.clone()) {
                w.dir(&parent)?;
            }
        }
        // Store the resolved file under the name the loader asks for.
        w.file(guest, 0o755, &read(lib)?)?;
    }
    w.finish()?;
    Ok(())
}

/// The shared libraries (and the ELF interpreter) `ldd` reports for `binary`.
fn shared_libraries(binary: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let out = Command::new("ldd")
        .arg(binary)
        .output()
        .context("running ldd")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // Static binaries make ldd exit non-zero with "not a dynamic executable".
        if text.contains("not a dynamic executable")
            || String::from_utf8_lossy(&out.stderr).contains("not a dynamic executable")
        {
            return Ok(Vec::new());
        }
        bail!("ldd {} failed: {}", binary.display(), text.trim());
    }
    let mut libs = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("not found") {
            bail!("{}: {line}", binary.display());
        }
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x...)"; "linux-vdso.so.1 (0x...)" has no file.
        let path = match line.split_once("=>") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

fn parents(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut acc = String::new();
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        acc.push('/');
        acc.push_str(part);
        out.push(acc.clone());
    }
    out
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::parents;

    #[test]
    fn parents_lists_every_ancestor_directory() {
        assert_eq!(
            parents("/lib/x86_64-linux-gnu/libc.so.6"),
            vec!["/lib".to_owned(), "/lib/x86_64-linux-gnu".to_owned()]
        );
        assert!(parents("/init").is_empty());
    }
}
