//! Streams observations to the aggregator (`credtrail.agent.v1.AgentService`).
//!
//! One bidirectional gRPC stream over mTLS (tonic on rustls). Every
//! observation enters a bounded [`spool::Spool`] with a sequence number and
//! stays there until the aggregator acknowledges it; after any disconnect the
//! client reconnects with exponential backoff and jitter, says Hello, and
//! resends from the aggregator's resume point. When the spool bound is hit the
//! oldest observations are dropped, counted, and reported as a `Loss`
//! observation (stage `spool`) and in every heartbeat. Heartbeats also carry
//! the drop totals of every other stage, taken from the `Loss` observations
//! the agent emits (kernel ring buffer, channel, ...).

mod backoff;
mod client;
pub mod disk;
pub mod spool;
mod tls;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use credtrail_proto::model::{NodeInfo, Observation};
use tokio::sync::{mpsc, watch};

pub use backoff::Backoff;

/// Where and how to stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `https://host:port` of the aggregator's agent listener.
    pub aggregator: String,
    /// Name the aggregator's certificate must carry; default: the URL's host.
    pub server_name: Option<String>,
    /// CA that signed the aggregator's serving certificate (PEM file).
    pub ca: PathBuf,
    /// This agent's client certificate (CN `system:node:<node>`) and key;
    /// empty paths: no client certificate (identity by [`Self::token_file`]).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A projected ServiceAccount token (audience `credtrail`), re-read for
    /// every connection (the kubelet rotates it) and sent as
    /// `authorization: Bearer` on the stream over server-authenticated TLS.
    pub token_file: Option<PathBuf>,
    /// Spool bound, in observations.
    pub spool_capacity: usize,
    /// Spool bound in bytes, in memory and on disk ([`DEFAULT_SPOOL_MAX_BYTES`]).
    pub spool_max_bytes: u64,
    /// Mirror the spool to this directory (survives agent restarts).
    pub spool_dir: Option<PathBuf>,
    /// Largest batch sent (the aggregator may ask for less).
    pub max_batch: usize,
    /// Largest batch in encoded bytes, well under the aggregator's request
    /// limit (32 MiB): [`MAX_BATCH_BYTES`].
    pub max_batch_bytes: usize,
    /// Observations sent and unacknowledged before the client waits.
    pub max_in_flight: u64,
    pub heartbeat_interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
}

impl StreamConfig {
    /// Defaults for everything but the endpoint and the TLS files.
    pub fn new(aggregator: impl Into<String>, ca: PathBuf, cert: PathBuf, key: PathBuf) -> Self {
        Self {
            aggregator: aggregator.into(),
            server_name: None,
            ca,
            cert,
            key,
            token_file: None,
            spool_capacity: 100_000,
            spool_max_bytes: DEFAULT_SPOOL_MAX_BYTES,
            spool_dir: None,
            max_batch: 1024,
            max_batch_bytes: MAX_BATCH_BYTES,
            max_in_flight: 16 * 1024,
            heartbeat_interval: Duration::from_secs(10),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Default spool bound in bytes: 192 MiB, three quarters of the chart's
/// 256 MiB spool volume, so the disk spool never reaches the volume's size
/// limit (where the kubelet would evict the pod, and the spool with it).
pub const DEFAULT_SPOOL_MAX_BYTES: u64 = 192 << 20;

/// Default bound of one batch's encoded observations: an eighth of the
/// aggregator's 32 MiB request limit, leaving room for framing and for a
/// server configured lower.
pub const MAX_BATCH_BYTES: usize = 4 << 20;

/// Largest encoded observation the stream sends; a larger one (which the
/// agent's own bounds should make impossible) is replaced by a `Loss` with
/// stage [`STAGE_OVERSIZE`], never retried.
pub const MAX_OBSERVATION_BYTES: usize = 256 << 10;

/// `Loss` stage of observations too large to send.
pub const STAGE_OVERSIZE: &str = "oversize_observation";

/// What the Hello says about the node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HelloInfo {
    pub node_name: String,
    pub agent_version: String,
    pub kernel_release: String,
    pub hooks: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub pod_cidrs: Vec<String>,
}

impl From<&NodeInfo> for HelloInfo {
    fn from(n: &NodeInfo) -> Self {
        Self {
            node_name: n.name.clone(),
            agent_version: n.agent_version.clone(),
            kernel_release: n.kernel_release.clone(),
            hooks: n.hooks.clone(),
            addresses: n.addresses.clone(),
            pod_cidrs: n.pod_cidrs.clone(),
        }
    }
}

/// Why the stream could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("reading {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("aggregator URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("{what} {path}: {why}")]
    Tls {
        what: &'static str,
        path: PathBuf,
        why: String,
    },
    #[error(transparent)]
    Disk(#[from] disk::DiskError),
}

/// The stream's state, as the client last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamStatus {
    pub epoch: u64,
    /// Connected and welcomed.
    pub connected: bool,
    /// Successful connections so far.
    pub connects: u64,
    /// Highest sequence number acknowledged.
    pub acked_seq: u64,
    /// Highest sequence number assigned.
    pub last_seq: u64,
    pub spool_len: usize,
    /// Observations dropped because the spool was full.
    pub spool_dropped: u64,
    /// Observations the aggregator refused as malformed.
    pub rejected: u64,
    /// The last connection error, if any.
    pub last_error: Option<String>,
    /// The input ended and everything was acknowledged (or the flush timed out).
    pub finished: bool,
    /// Seconds until the client certificate in use expires (at the last look).
    pub cert_expiry_seconds: i64,
    /// Changed TLS files loaded without a restart.
    pub tls_reloads: u64,
    /// Changed TLS files refused (the previous ones stayed).
    pub tls_reload_failures: u64,
}

/// A running stream client.
pub struct StreamHandle {
    status: watch::Receiver<StreamStatus>,
    task: tokio::task::JoinHandle<()>,
    stop: Arc<tokio::sync::Notify>,
}

impl StreamHandle {
    /// The current status.
    pub fn status(&self) -> StreamStatus {
        self.status.borrow().clone()
    }

    /// Waits until `pred` holds for the status, or `timeout` passes;
    /// returns the last status seen and whether `pred` held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&StreamStatus) -> bool,
    ) -> (StreamStatus, bool) {
        let mut rx = self.status.clone();
        let ok = tokio::time::timeout(timeout, rx.wait_for(|s| pred(s)))
            .await
            .is_ok();
        let st = rx.borrow().clone();
        (st, ok)
    }

    /// Waits for the client to finish: it finishes once its input channel is
    /// closed and everything is acknowledged, or `flush_timeout` after the
    /// input closed.
    pub async fn join(self) {
        let _ = self.task.await;
    }

    /// Stops at once, without flushing (what is unacknowledged stays in the
    /// disk spool, if any).
    pub async fn abort(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

/// Starts streaming what arrives on `input`.
pub fn spawn(
    cfg: StreamConfig,
    hello: HelloInfo,
    input: mpsc::Receiver<Observation>,
    flush_timeout: Duration,
) -> Result<StreamHandle, StreamError> {
    let client = client::Client::new(cfg, hello)?;
    let (status_tx, status) = watch::channel(client.status());
    let stop = Arc::new(tokio::sync::Notify::new());
    let task = tokio::spawn(client.run(input, status_tx, stop.clone(), flush_timeout));
    Ok(StreamHandle { status, task, stop })
}

/// 64 random bits from the kernel (`getrandom(2)`); falls back to the clock.
pub(crate) fn random_u64() -> u64 {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of its length.
    let n = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n == 8 {
        u64::from_ne_bytes(buf)
    } else {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        (t.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
    }
}

/// A new stream epoch: random, never 0.
pub(crate) fn random_epoch() -> u64 {
    random_u64().max(1)
}
