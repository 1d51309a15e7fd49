//! The real `credtrail-aggregator serve` process for client tests (the
//! browser test, the Python client test): the HTTPS audit webhook with a
//! bearer token, the HTTP and gRPC query listeners on free loopback ports
//! (optionally with TLS), a token made with `credtrail-aggregator api-token`
//! as an operator would, and the cluster policy of the API tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::tls::{Pki, client_config, pki, post};

pub const WEBHOOK_TOKEN: &str = "client-tests-webhook-token-7c1e4b";

/// Where tests keep tools they install (npm packages, a Python venv): under
/// the workspace's `target/`, so CI's fresh clone installs them once and a
/// developer's second run reuses them.
pub fn tools_dir(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let d = target.join(name);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// Runs `cmd` to completion; panics with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A running aggregator process (killed on drop).
pub struct LiveServer {
    pub dir: tempfile::TempDir,
    child: Child,
    pub api: SocketAddr,
    pub grpc: SocketAddr,
    pub webhook: SocketAddr,
    /// A `responder` token for `token:analyst`, made by `api-token`.
    pub token: String,
    /// The CA of the webhook's (and, with `tls`, the query listeners') certificate.
    pub ca: PathBuf,
    pub tls: bool,
    pki: Pki,
}

impl LiveServer {
    /// Starts `serve`; with `tls` the query listeners serve TLS too.
    pub fn start(tls: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (pki, paths) = pki(dir.path());
        let ca = paths.client_ca.clone().expect("test CA");
        let tokens = dir.path().join("api-tokens");
        let token = run(Command::new(env!("CARGO_BIN_EXE_credtrail-aggregator"))
            .args([
                "api-token",
                "--name",
                "analyst",
                "--role",
                "responder",
                "--append",
            ])
            .arg(&tokens))
        .trim()
        .to_owned();
        assert!(token.len() >= 32, "api-token printed {token:?}");
        let webhook_tokens = dir.path().join("webhook-tokens");
        std::fs::write(&webhook_tokens, format!("{WEBHOOK_TOKEN}\n")).unwrap();
        let policy = dir.path().join("policy.yaml");
        std::fs::write(
            &policy,
            "cluster:\n  node_cidrs: [\"127.0.10.0/24\"]\n  pod_cidrs: [\"127.0.20.0/24\"]\n",
        )
        .unwrap();
        let (api, grpc, webhook) = (free_port(), free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("stderr.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_credtrail-aggregator"));
        cmd.arg("serve")
            .args(["--agent-listen", "off"])
            .args(["--webhook-listen", &webhook.to_string()])
            .arg("--webhook-token-file")
            .arg(&webhook_tokens)
            .arg("--tls-cert")
            .arg(&paths.cert)
            .arg("--tls-key")
            .arg(&paths.key)
            .args(["--api-listen", &api.to_string()])
            .args(["--grpc-listen", &grpc.to_string()])
            .arg("--api-token-file")
            .arg(&tokens)
            .arg("--policy")
            .arg(&policy)
            .arg("--db")
            .arg(dir.path().join("agg.db"))
            .env("CREDTRAIL_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        if tls {
            cmd.arg("--api-tls-cert")
                .arg(&paths.cert)
                .arg("--api-tls-key")
                .arg(&paths.key);
        }
        let child = cmd.spawn().expect("spawning credtrail-aggregator serve");
        let mut s = Self {
            dir,
            child,
            api,
            grpc,
            webhook,
            token,
            ca,
            tls,
            pki,
        };
        s.wait_up();
        s
    }

    fn wait_up(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("serve exited early ({st}):\n{}", self.log());
            }
            let up = [self.api, self.grpc, self.webhook].iter().all(|a| {
                std::net::TcpStream::connect_timeout(a, Duration::from_millis(200)).is_ok()
            });
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not listen within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// `http://…` or `https://…` base of the HTTP query listener.
    pub fn api_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.api)
    }

    /// Posts audit events (JSON values) to the webhook as one `EventList`.
    pub async fn post_events(&self, events: &[serde_json::Value]) {
        let body = serde_json::json!({
            "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": events
        });
        let cfg: Arc<rustls::ClientConfig> = client_config(&self.pki, false);
        let (code, text) = post(
            self.webhook,
            cfg,
            Some(WEBHOOK_TOKEN),
            body.to_string().as_bytes(),
        )
        .await;
        assert_eq!(code, 200, "webhook answered {code}: {text}");
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
