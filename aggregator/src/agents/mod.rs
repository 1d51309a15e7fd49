//! The agent stream: node agents' observations over one bidirectional gRPC
//! stream each, mTLS (`credtrail.agent.v1.AgentService`).
//!
//! - Authentication: the TLS layer requires a client certificate chaining to
//!   the agents' CA; [`identity`] reads the node from its subject CN
//!   (`system:node:<name>`). A Hello for any other node is refused with
//!   `permission_denied`.
//! - Delivery: at least once from the agent, exactly once into the store:
//!   dedupe by (node, stream epoch, sequence number); acks only after
//!   [`sink::ObservationSink::ingest`] returned (the pipeline stored them).
//! - Coverage: each agent's version, kernel hooks, last contact, resume point
//!   and drop counters go to the `agents` table (`crate::store::agents`).

pub mod identity;
mod service;
pub mod sink;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use credtrail_proto::pb::agent::agent_service_server::AgentServiceServer;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

pub use service::{AgentStreamService, MAX_BATCH};
pub use sink::ObservationSink;

use crate::metrics::Metrics;
use crate::store::Store;

/// Largest encoded message accepted on the stream (a full batch fits easily).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// HTTP/2 stream and connection window of the agent stream.
pub const WINDOW_BYTES: u32 = 16 * 1024 * 1024;

/// PEM files of the agent listener.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// Serving certificate (chain) of the aggregator.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// CA that signs agents' client certificates.
    pub client_ca: PathBuf,
}

impl TlsFiles {
    /// Reads the files into tonic's TLS configuration (client certificates required).
    pub fn load(&self) -> anyhow::Result<ServerTlsConfig> {
        let read = |p: &PathBuf, what: &str| {
            std::fs::read(p)
                .with_context(|| format!("reading the agent listener's {what} {}", p.display()))
        };
        let identity =
            Identity::from_pem(read(&self.cert, "certificate")?, read(&self.key, "key")?);
        let ca = Certificate::from_pem(read(&self.client_ca, "client CA")?);
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(ca)
            .client_auth_optional(false))
    }
}

/// Serves the agent stream on `listener` until `shutdown` resolves.
pub async fn serve_with<S: ObservationSink>(
    listener: tokio::net::TcpListener,
    tls: &TlsFiles,
    sink: S,
    store: Store,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("agent listener address")?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let svc = AgentStreamService::new(sink, store, metrics, stopping);
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    let server = AgentServiceServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tracing::info!(%addr, "agent stream listening (gRPC, mTLS)");
    Server::builder()
        // Batches are large: without big windows, HTTP/2 flow control
        // (64 KiB by default) would pace the stream by round trips.
        .initial_stream_window_size(WINDOW_BYTES)
        .initial_connection_window_size(WINDOW_BYTES)
        .tls_config(tls.load()?)
        .context("agent listener TLS configuration")?
        .add_service(server)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .with_context(|| format!("serving the agent stream on {addr}"))
}

/// Serves the agent stream into the aggregator's pipeline (what `server.rs` runs).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: &TlsFiles,
    state: crate::state::AppState,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    serve_with(
        listener,
        tls,
        state.pipeline.clone(),
        state.store.clone(),
        state.metrics.clone(),
        shutdown,
    )
    .await
}
