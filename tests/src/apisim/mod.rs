//! A faithful stand-in for the kube-apiserver, for the demo and the tests.
//!
//! - HTTPS on a 127.x address (agents have it in their API-endpoint map);
//! - authenticates client certificates (CN = user, O = groups; chain checked
//!   against the cluster CA) and bearer tokens it issued itself
//!   ([`token::Issuer`] mints projected-token-shaped JWTs);
//! - serves a believable subset of the API ([`api`]) with a tiny RBAC table
//!   ([`rbac`]);
//! - writes one `audit.k8s.io/v1` event per request (stage
//!   `ResponseComplete`; `RequestResponse` for RBAC resources, `Metadata`
//!   otherwise; `sourceIPs` = X-Forwarded-For entries, X-Real-Ip, then the
//!   connection's real peer address last) and delivers them to the
//!   aggregator's webhook in `EventList` batches ([`audit`]);
//! - answers `TokenReview` and `SubjectAccessReview` ([`review`]) from the
//!   same issuer and RBAC table.

pub mod api;
pub mod audit;
pub mod authn;
pub mod https;
pub mod rbac;
pub mod review;
mod server;
pub mod token;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

pub use server::{ApiSimError, RunningApiSim};

/// What to start.
pub struct ApiSimConfig {
    /// The in-cluster endpoint (what pods and nodes connect to; node agents
    /// have it in their API-endpoint map).
    pub listen: SocketAddr,
    /// A second, public endpoint (an external load balancer's address):
    /// what clients outside the cluster connect to. Node agents do not watch
    /// it, as they would not see an outside client at all.
    pub public_listen: Option<SocketAddr>,
    /// Serving certificate and key (PEM text).
    pub cert_pem: String,
    pub key_pem: String,
    /// CA of users' client certificates (PEM text).
    pub client_ca_pem: String,
    pub issuer: token::Issuer,
    pub rbac: rbac::Rbac,
    pub webhook: Option<audit::WebhookConfig>,
    /// Also append every event to this file (JSON lines, like `--audit-log-path`).
    pub audit_log: Option<PathBuf>,
}

/// Starts the simulator; it runs until [`RunningApiSim::shutdown`].
pub async fn start(cfg: ApiSimConfig) -> Result<RunningApiSim, ApiSimError> {
    server::start(cfg).await
}

/// Shared state of a running simulator.
pub(crate) struct State {
    pub issuer: token::Issuer,
    pub rbac: rbac::Rbac,
    pub objects: Arc<api::Objects>,
    pub audit: audit::AuditSink,
}
