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
pub mod validate;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use credtrail_proto::pb::agent::agent_service_server::AgentServiceServer;

pub use service::{AgentStreamService, MAX_BATCH};
pub use sink::ObservationSink;

use crate::listen::{Acceptor, Limits};
use crate::metrics::Metrics;
use crate::policy::{LivePolicy, Policy};
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
    /// CA that signs agents' client certificates (the kubelet-certificate
    /// identity; not needed with tokens only).
    pub client_ca: Option<PathBuf>,
    /// How agents prove their node (certificate, token, either).
    pub identity: identity::AgentAuth,
}

impl TlsFiles {
    /// The rustls configuration: a client certificate chaining to the
    /// agents' CA is required; HTTP/2 only.
    pub fn load(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        use crate::ingest::tls_watch::{ClientAuth, TlsWatch, WatchedFiles};
        let mode = match (&self.identity, &self.client_ca) {
            (identity::AgentAuth::Certificate, Some(_)) => ClientAuth::Required,
            (identity::AgentAuth::Certificate, None) => anyhow::bail!(
                "the agent listener needs --agent-client-ca (kubelet-certificate identity) or --agent-auth token"
            ),
            (identity::AgentAuth::CertificateOrToken(_), Some(_)) => ClientAuth::Optional,
            (identity::AgentAuth::CertificateOrToken(_), None) => {
                anyhow::bail!("--agent-auth either needs --agent-client-ca")
            }
            (identity::AgentAuth::Token(_), _) => ClientAuth::None,
        };
        let ca = if mode == ClientAuth::None {
            None
        } else {
            self.client_ca.clone()
        };
        TlsWatch::new(
            "agent",
            WatchedFiles {
                cert: self.cert.clone(),
                key: self.key.clone(),
                client_ca: ca,
            },
            mode,
        )
        .and_then(|w| w.server_config(&[b"h2"]))
        .context("agent listener TLS configuration")
    }
}

/// Serves the agent stream on `listener` until `shutdown` resolves (default
/// policy and limits; tests and benchmarks).
pub async fn serve_with<S: ObservationSink>(
    listener: tokio::net::TcpListener,
    tls: &TlsFiles,
    sink: S,
    store: Store,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let policy = LivePolicy::fixed(Policy::default());
    serve_limited(
        listener,
        tls,
        sink,
        store,
        metrics,
        policy,
        Limits::default(),
        shutdown,
    )
    .await
}

/// Serves the agent stream through the shared accept loop
/// ([`crate::listen`]): connection cap, TLS handshake and preface timeouts,
/// HTTP/2 limits; claims checked against `policy` ([`validate`]).
#[expect(
    clippy::too_many_arguments,
    reason = "the listener's parts, each distinct"
)]
pub async fn serve_limited<S: ObservationSink>(
    listener: tokio::net::TcpListener,
    tls: &TlsFiles,
    sink: S,
    store: Store,
    metrics: Arc<Metrics>,
    policy: Arc<LivePolicy>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = listener.local_addr().context("agent listener address")?;
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let svc = AgentStreamService::new(sink, store, metrics.clone(), policy, stopping.clone())
        .with_identity(tls.identity.clone());
    let shutdown = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    let server = AgentServiceServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let tls = tokio_rustls::TlsAcceptor::from(tls.load()?);
    let acceptor = Acceptor::new(listener, "agent", &limits, metrics.clone());
    tracing::info!(%addr, "agent stream listening (gRPC, mTLS)");
    // Batches are large: without big windows, HTTP/2 flow control (64 KiB
    // by default) would pace the stream by round trips.
    crate::listen::grpc::serve(
        acceptor,
        move |tcp, peer| {
            let (tls, metrics) = (tls.clone(), metrics.clone());
            Box::pin(async move {
                crate::listen::handshake(
                    &tls,
                    tcp,
                    peer,
                    limits.handshake_timeout,
                    "agent",
                    &metrics,
                )
                .await
            })
        },
        tonic::service::Routes::new(server),
        limits,
        Some(WINDOW_BYTES),
        shutdown,
    )
    .await;
    Ok(())
}

/// Serves the agent stream into the aggregator's pipeline (what `server.rs` runs).
pub async fn serve(
    listener: tokio::net::TcpListener,
    tls: &TlsFiles,
    limits: Limits,
    state: crate::state::AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_limited(
        listener,
        tls,
        state.pipeline.clone(),
        state.store.clone(),
        state.metrics.clone(),
        state.policy.clone(),
        limits,
        shutdown,
    )
    .await
}
