//! The same tests, natively on this machine's kernel.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::initramfs::{self, MARK, TestBinary};
use super::judge::{judge, judge_agent};
use super::{HOST_EXPECT, Row, count, qemu};

/// Runs the test binaries on this machine's kernel.
pub fn run_host(tests: &[TestBinary], agent: &Path) -> anyhow::Result<Row> {
    let started = Instant::now();
    eprintln!("vm-test: host: running credtrail-agent");
    let mut console = agent_probe(agent)?;
    for t in tests {
        eprintln!("vm-test: host: running {}", t.name);
        let out = Command::new(&t.path)
            // --nocapture: passing tests print their credtrail-hook line too.
            .args(["--test-threads=1", "--nocapture"])
            .env("CREDTRAIL_EXPECT_HOOK", HOST_EXPECT)
            .env("CREDTRAIL_HOOK_MODE", "auto")
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", t.path.display()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            // The end says what failed; a verifier log before it can run to megabytes.
            let tail = text.len().saturating_sub(16 * 1024);
            let tail = (tail..text.len())
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(text.len());
            eprintln!("{}", &text[tail..]);
        }
        console.push_str(&text);
        console.push_str(&format!(
            "\n{} RESULT {} {}\n",
            initramfs::MARK,
            t.name,
            if out.status.success() { "PASS" } else { "FAIL" }
        ));
    }
    console.push_str(&format!("{} SUMMARY host\n", initramfs::MARK));
    let outcome = qemu::parse_console(&console);
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_owned();
    Ok(Row {
        kernel: format!("{release} (host)"),
        boot: "native".into(),
        lsm: std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default(),
        expect: HOST_EXPECT.into(),
        agent_hooks: outcome.agent_hooks.clone().unwrap_or_default(),
        hooks: outcome.hooks.clone(),
        tests: count(&outcome.results),
        seconds: started.elapsed().as_secs_f64(),
        verdict: judge_agent(&outcome, HOST_EXPECT)
            .and_then(|()| judge(&outcome, tests, HOST_EXPECT, None)),
    })
}

/// Runs the `credtrail-agent` binary natively as `/init` does in a guest, watching one file of
/// its own folder (the host's real credentials stay untouched), and returns the same
/// `credtrail-vm: agent-*` lines for [`qemu::parse_console`].
fn agent_probe(agent: &Path) -> anyhow::Result<String> {
    let dir = std::env::temp_dir().join(format!("credtrail-vm-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let watched = dir.join("probe.kubeconfig");
    std::fs::write(&watched, "apiVersion: v1\nkind: Config\n")?;
    let jsonl = dir.join("agent.jsonl");
    let log = dir.join("agent.log");
    let mut child = Command::new(agent)
        .args([
            "--node-name",
            "vm-test-host",
            "--no-scan",
            "--no-default-watch",
        ])
        .arg("--watch")
        .arg(&watched)
        .args(["--output", "jsonl"])
        .arg(&jsonl)
        .env("CREDTRAIL_HOOK_MODE", "auto")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let seen = |needle: &str| std::fs::read_to_string(&jsonl).is_ok_and(|t| t.contains(needle));
    let wait = |needle: &str, limit: Duration| {
        let until = Instant::now() + limit;
        while !seen(needle) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    wait("node_info", Duration::from_secs(60));
    let path = watched.display().to_string();
    std::fs::read(&watched)?;
    wait(&format!("\"{path}\""), Duration::from_secs(20));
    // Our own child, by its handle.
    let _ = child.kill();
    let _ = child.wait();
    let out = std::fs::read_to_string(&jsonl).unwrap_or_default();
    let node_info = out.lines().find(|l| l.contains("node_info")).unwrap_or("");
    let reads = out
        .lines()
        .filter(|l| l.contains(&format!("\"{path}\"")))
        .count();
    let mut text = format!("{MARK} agent-node-info {node_info}\n{MARK} agent-reads {reads}\n");
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        if ["WARN", "ERROR", "hooks="].iter().any(|k| line.contains(k)) {
            text.push_str(&format!("{MARK} agent-log {line}\n"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(text)
}
