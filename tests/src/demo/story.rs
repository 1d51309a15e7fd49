//! The story, scene by scene. Each scene is a real process
//! (`credtrail-apisim call`) making a real HTTPS request to the API-server
//! simulator from a chosen source address, so the agent sees the real opens
//! and connects and the simulator writes the real audit events.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use serde_json::json;

use super::env::DemoEnv;

/// One scene: what happens, what the SOC should see.
#[derive(Debug, Clone)]
pub struct Scene {
    pub title: &'static str,
    /// Whether an alert is expected, and from which analytic.
    pub expect: Option<&'static str>,
    /// Audit events the scene produces.
    pub requests: usize,
}

/// The scenes in order.
pub const SCENES: [Scene; 4] = [
    Scene {
        title: "workload web-7d9f8b-x2v4q reads its bound token and lists pods from its pod IP 127.10.1.5",
        expect: None,
        requests: 1,
    },
    Scene {
        title: "the same token is used from 127.99.0.7, outside the cluster",
        expect: Some("AN1547"),
        requests: 1,
    },
    Scene {
        title: "human kubeconfig user alice grants cluster-admin (ClusterRoleBinding) from unknown 127.66.0.9",
        expect: Some("AN1579"),
        requests: 1,
    },
    Scene {
        title: "CI identity ci:deployer grants cluster-admin from its runner range 127.20.0.5",
        expect: None,
        requests: 1,
    },
];

/// Runs the scenes with `apisim_bin` (`credtrail-apisim`).
pub struct Story<'a> {
    pub env: &'a DemoEnv,
    pub apisim_bin: PathBuf,
}

/// The outcome of one `call`.
#[derive(Debug)]
pub struct CallResult {
    pub status: u16,
    pub body: String,
}

fn crb(name: &str, subject: serde_json::Value) -> String {
    json!({
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [subject],
    })
    .to_string()
}

impl Story<'_> {
    /// Runs one call; `cgroup` = inside the pod (in-cluster endpoint), else
    /// a client outside the cluster (the public endpoint, which no node
    /// agent watches).
    fn call(
        &self,
        args: &[String],
        stdin: Option<&str>,
        cgroup: Option<&Path>,
    ) -> anyhow::Result<CallResult> {
        let e = self.env;
        let server = if cgroup.is_some() {
            e.addrs.apiserver
        } else {
            e.addrs.apiserver_public
        };
        let mut cmd = Command::new(&self.apisim_bin);
        cmd.arg("call")
            .arg("--server")
            .arg(server.to_string())
            .arg("--ca")
            .arg(&e.pki.server_ca)
            .args(["--linger-ms", "1500"])
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(dir) = cgroup {
            let procs =
                std::ffi::CString::new(dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
                    .context("cgroup path")?;
            // SAFETY: between fork and exec only async-signal-safe calls
            // (open, write, close) on memory prepared before the fork.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY);
                    if fd < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                    libc::close(fd);
                    if n != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", self.apisim_bin.display()))?;
        if let Some(s) = stdin
            && let Some(mut w) = child.stdin.take()
        {
            w.write_all(s.as_bytes())
                .context("writing the token to the call")?;
        }
        let out = child.wait_with_output().context("waiting for the call")?;
        if !out.status.success() {
            bail!(
                "call {args:?} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (status, body) = text.split_once('\n').unwrap_or((&text, ""));
        Ok(CallResult {
            status: status
                .trim()
                .parse()
                .with_context(|| format!("call output {text:?}"))?,
            body: body.trim().to_string(),
        })
    }

    /// Scene 1: inside the pod (its cgroup and, like a container, its own
    /// mount namespace with the projected volume at the standard path), the
    /// workload reads its token and lists pods from the pod IP.
    pub fn workload_uses_own_token(&self) -> anyhow::Result<CallResult> {
        let e = self.env;
        let args = vec![
            "--comm".to_string(),
            "web".into(),
            "--sa-volume".into(),
            e.pod.volume_dir.display().to_string(),
            "--token-file".into(),
            "/run/secrets/kubernetes.io/serviceaccount/token".into(),
            "--bind".into(),
            e.addrs.pod_ip.to_string(),
            "--user-agent".into(),
            "web/1.4.2 (linux/amd64) client-go/v0.32.0".into(),
            "GET".into(),
            "/api/v1/namespaces/shop/pods".into(),
        ];
        self.call(&args, None, Some(&e.cgroup_dir()))
    }

    /// Scene 2: the stolen token (exfiltrated earlier) used from outside.
    pub fn stolen_token_from_outside(&self) -> anyhow::Result<CallResult> {
        let e = self.env;
        let args = vec![
            "--token-stdin".to_string(),
            "--bind".into(),
            e.addrs.outside_ip.to_string(),
            "--user-agent".into(),
            "curl/8.5.0".into(),
            "GET".into(),
            "/api/v1/namespaces/shop/pods".into(),
        ];
        self.call(&args, Some(&e.pod_token), None)
    }

    /// Scene 3: a human kubeconfig user grants cluster-admin from an unknown address.
    pub fn human_grants_cluster_admin(&self) -> anyhow::Result<CallResult> {
        let e = self.env;
        let body = crb(
            "contractor-breakglass",
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "contractor@example.com"}),
        );
        let args = vec![
            "--cert".to_string(),
            e.alice.cert.display().to_string(),
            "--key".into(),
            e.alice.key.display().to_string(),
            "--bind".into(),
            e.addrs.admin_ip.to_string(),
            "--data".into(),
            body,
            "POST".into(),
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
        ];
        self.call(&args, None, None)
    }

    /// Scene 4: the CI identity does the same from its runner range.
    pub fn ci_grants_cluster_admin(&self) -> anyhow::Result<CallResult> {
        let e = self.env;
        let body = crb(
            "release-2026-11-admin",
            json!({"kind": "ServiceAccount", "name": "release", "namespace": "ci"}),
        );
        let args = vec![
            "--token-stdin".to_string(),
            "--bind".into(),
            e.addrs.ci_ip.to_string(),
            "--user-agent".into(),
            "argocd-application-controller/v2.13.0".into(),
            "--data".into(),
            body,
            "POST".into(),
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings".into(),
        ];
        self.call(&args, Some(&e.ci_token), None)
    }
}
