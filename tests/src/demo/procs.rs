//! The demo's processes: the aggregator and the agent as their own
//! binaries, with logs in the work folder; stopped with SIGTERM on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::env::DemoEnv;

/// A child process stopped (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    pub name: &'static str,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn spawn(name: &'static str, mut cmd: Command, log: PathBuf) -> anyhow::Result<Self> {
        let f =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let f2 = f.try_clone().context("log file")?;
        cmd.stdin(Stdio::null()).stdout(f).stderr(f2);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name} ({cmd:?})"))?;
        Ok(Self {
            name,
            log,
            child: Some(child),
        })
    }

    /// Whether it is still running; an error with its log tail if not.
    pub fn check(&mut self) -> anyhow::Result<()> {
        if let Some(c) = &mut self.child
            && let Some(status) = c.try_wait().context("polling a child")?
        {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            anyhow::bail!(
                "{} exited ({status}); last log lines:\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    /// SIGTERM, wait up to 10 s, then SIGKILL.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(c.id()) {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        for _ in 0..100 {
            if matches!(c.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `credtrail-aggregator serve` on the embedded store with the story's policy.
pub fn aggregator(bin_dir: &Path, env: &DemoEnv) -> anyhow::Result<Proc> {
    let a = &env.addrs;
    let mut cmd = Command::new(bin_dir.join("credtrail-aggregator"));
    cmd.arg("serve")
        .arg("--db")
        .arg(env.dir.join("credtrail.db"))
        .arg("--policy")
        .arg(&env.policy)
        .arg("--webhook-listen")
        .arg(a.webhook.to_string())
        .arg("--webhook-client-ca")
        .arg(&env.pki.cluster_ca)
        .arg("--tls-cert")
        .arg(&env.pki.server_cert)
        .arg("--tls-key")
        .arg(&env.pki.server_key)
        .arg("--agent-listen")
        .arg(a.agent_listen.to_string())
        .arg("--agent-client-ca")
        .arg(&env.pki.agents_ca)
        .arg("--api-listen")
        .arg(a.api_listen.to_string())
        .arg("--grpc-listen")
        .arg(a.grpc_listen.to_string())
        .arg("--api-token-file")
        .arg(&env.api_token_file)
        .env("RUST_LOG", "info");
    Proc::spawn("credtrail-aggregator", cmd, env.dir.join("aggregator.log"))
}

/// `credtrail-agent` on this node, streaming to the aggregator.
pub fn agent(bin_dir: &Path, env: &DemoEnv) -> anyhow::Result<Proc> {
    let a = &env.addrs;
    let mut cmd = Command::new(bin_dir.join("credtrail-agent"));
    cmd.arg("--node-name")
        .arg(&env.node)
        .arg("--aggregator")
        .arg(format!("https://{}", a.agent_listen))
        .arg("--tls-ca")
        .arg(&env.pki.server_ca)
        .arg("--tls-cert")
        .arg(&env.agent.cert)
        .arg("--tls-key")
        .arg(&env.agent.key)
        .arg("--api-endpoint")
        .arg(a.apiserver.to_string())
        .arg("--kubelet-pods-dir")
        .arg(&env.pod.pods_dir)
        .arg("--cgroup-root")
        .arg(env.cgroup.root())
        .arg("--node-address")
        .arg(a.node_ip.to_string())
        .arg("--pod-cidr")
        .arg("127.10.1.0/24")
        .arg("--spool-dir")
        .arg(env.dir.join("spool"))
        .env("RUST_LOG", "info");
    for p in env.watch_patterns() {
        cmd.arg("--watch").arg(p);
    }
    Proc::spawn("credtrail-agent", cmd, env.dir.join("agent.log"))
}
