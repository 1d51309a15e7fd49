//! Boots one kernel in qemu (TCG: KVM hangs on the build machines), captures the serial
//! console to a file, enforces a timeout and parses what `/init` printed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::initramfs::MARK;

/// What one boot printed, parsed.
#[derive(Debug, Default)]
pub struct BootOutcome {
    pub kernel_release: Option<String>,
    /// Active LSMs as `/sys/kernel/security/lsm` listed them.
    pub lsm: Option<String>,
    /// `(test binary, passed)` in the order they ran.
    pub results: Vec<(String, bool)>,
    /// Every hook name the tests reported with `credtrail-hook: a,b,c`.
    pub hooks: Vec<String>,
    /// Tests that skipped (`SKIP <test>: <reason>`): none may, where the features exist.
    pub skips: Vec<String>,
    /// Hooks the `credtrail-agent` binary reported in its node info (`None`: no node info).
    pub agent_hooks: Option<Vec<String>>,
    /// Observations of the agent binary for the probe read of `/root/.kube/config`.
    pub agent_reads: u32,
    /// The agent binary's last log lines.
    pub agent_log: Vec<String>,
    /// The `SUMMARY` line was seen: `/init` ran to the end.
    pub finished: bool,
    pub timed_out: bool,
    pub elapsed: Duration,
}

pub struct Boot<'a> {
    pub vmlinuz: &'a Path,
    pub initramfs: &'a Path,
    pub cmdline: String,
    pub console_log: &'a Path,
    pub memory_mib: u32,
    pub timeout: Duration,
    /// Deterministic timing for `--bench`: one vCPU, single-threaded TCG and
    /// `-icount` (the guest's clock advances by instructions executed, so the
    /// host's load does not reach the guest's timings).
    pub icount: bool,
}

pub fn boot(b: &Boot<'_>) -> anyhow::Result<BootOutcome> {
    let _ = std::fs::remove_file(b.console_log);
    let started = Instant::now();
    let cpu: &[&str] = if b.icount {
        &[
            "-accel",
            "tcg,thread=single",
            "-icount",
            "shift=3,sleep=off,align=off",
            "-smp",
            "1",
        ]
    } else {
        &["-accel", "tcg,thread=multi", "-smp", "2"]
    };
    let mut child = Command::new("qemu-system-x86_64")
        .args(cpu)
        .args(["-cpu", "max"])
        .args(["-m", &b.memory_mib.to_string()])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", b.console_log.display()))
        .arg("-kernel")
        .arg(b.vmlinuz)
        .arg("-initrd")
        .arg(b.initramfs)
        .arg("-append")
        .arg(&b.cmdline)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64 (apt-get install qemu-system-x86)")?;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > b.timeout {
            timed_out = true;
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    if let Some(status) = status
        && !status.success()
    {
        anyhow::bail!("qemu exited with {status}: {}", stderr.trim());
    }
    let console = std::fs::read(b.console_log)
        .with_context(|| format!("reading {}", b.console_log.display()))?;
    let mut outcome = parse_console(&String::from_utf8_lossy(&console));
    outcome.timed_out = timed_out;
    outcome.elapsed = elapsed;
    Ok(outcome)
}

/// Reads the lines `/init` and the tests print. Serial output may carry `\r`.
pub fn parse_console(text: &str) -> BootOutcome {
    let mut out = BootOutcome::default();
    for raw in text.lines() {
        let line = raw.trim_end_matches('\r');
        if let Some(rest) = line.find("credtrail-hook:").map(|i| &line[i + 15..]) {
            for hook in rest.split(',').map(str::trim).filter(|h| !h.is_empty()) {
                if !out.hooks.iter().any(|h| h == hook) {
                    out.hooks.push(hook.to_owned());
                }
            }
            continue;
        }
        if let Some(skip) = line.find("SKIP ").map(|i| &line[i + 5..]) {
            out.skips.push(skip.trim().to_owned());
            continue;
        }
        let Some(rest) = line.strip_prefix(MARK).map(str::trim) else {
            continue;
        };
        if let Some(v) = rest.strip_prefix("kernel ") {
            out.kernel_release = Some(v.trim().to_owned());
        } else if let Some(v) = rest.strip_prefix("agent-node-info ") {
            out.agent_hooks = serde_json::from_str::<serde_json::Value>(v.trim())
                .ok()
                .and_then(|o| {
                    // The event's fields sit in the observation itself or under `event`.
                    let hooks = o["hooks"]
                        .as_array()
                        .or_else(|| o["event"]["hooks"].as_array())?
                        .clone();
                    Some(
                        hooks
                            .iter()
                            .filter_map(|h| h.as_str().map(str::to_owned))
                            .collect(),
                    )
                });
        } else if let Some(v) = rest.strip_prefix("agent-reads ") {
            out.agent_reads = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = rest.strip_prefix("agent-log ") {
            out.agent_log.push(strip_ansi(v));
        } else if let Some(v) = rest.strip_prefix("lsm") {
            out.lsm = Some(v.trim().to_owned());
        } else if let Some(v) = rest.strip_prefix("RESULT ") {
            let mut words = v.split_whitespace();
            if let (Some(name), Some(verdict)) = (words.next(), words.next()) {
                out.results.push((name.to_owned(), verdict == "PASS"));
            }
        } else if rest.starts_with("SUMMARY ") {
            out.finished = true;
        }
    }
    out
}

/// Removes terminal colour sequences (`ESC [ ... m`) from a log line.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{parse_console, strip_ansi};

    #[test]
    fn colours_are_stripped_from_log_lines() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m lsm refused"),
            "2026  WARN lsm refused"
        );
    }

    #[test]
    fn parses_results_hooks_and_summary() {
        let text = "noise\r\ncredtrail-vm: kernel 6.1.0-56-amd64\r\n\
                    credtrail-vm: lsm lockdown,capability,bpf\r\n\
                    credtrail-vm: agent-node-info {\"id\":\"n/1\",\"event\":{\"type\":\"node_info\",\"hooks\":[\"lsm_file_open\"]}}\r\n\
                    credtrail-vm: agent-reads 1\r\n\
                    credtrail-vm: START agent_open\r\n\
                    credtrail-hook: lsm_file_open, cgroup_connect4\r\n\
                    test x ... ok\r\n\
                    credtrail-vm: RESULT agent_open PASS\r\n\
                    SKIP agent_other: not root\r\n\
                    credtrail-vm: RESULT agent_connect FAIL exit=101\r\n\
                    credtrail-vm: SUMMARY passed=1 failed=1\r\n";
        let o = parse_console(text);
        assert_eq!(o.kernel_release.as_deref(), Some("6.1.0-56-amd64"));
        assert_eq!(o.lsm.as_deref(), Some("lockdown,capability,bpf"));
        assert_eq!(o.hooks, vec!["lsm_file_open", "cgroup_connect4"]);
        assert_eq!(
            o.results,
            vec![
                ("agent_open".to_owned(), true),
                ("agent_connect".to_owned(), false)
            ]
        );
        assert_eq!(o.skips, vec!["agent_other: not root"]);
        assert_eq!(o.agent_hooks, Some(vec!["lsm_file_open".to_owned()]));
        assert_eq!(o.agent_reads, 1);
        assert!(o.finished);
    }

    #[test]
    fn a_cut_off_console_is_not_finished() {
        let o =
            parse_console("credtrail-vm: START agent_open\ncredtrail-vm: RESULT agent_open PASS\n");
        assert!(!o.finished);
        assert_eq!(o.results.len(), 1);
    }
}
