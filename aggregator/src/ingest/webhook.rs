//! The audit webhook backend: HTTPS POSTs of `EventList`s from the API
//! server (`--audit-webhook-config-file`).
//!
//! - authenticated by a bearer token (constant-time compare; the `Bearer`
//!   scheme in any case, RFC 7235) and/or a client certificate verified
//!   against the configured CA whose subject CN is on the allowlist
//!   ([`DEFAULT_CLIENT_SUBJECTS`] unless configured); a certificate from that CA
//!   with any other subject (e.g. a node's) gets 403 unless the request also
//!   carries a valid bearer token; no credential gets 401;
//! - implausible event times (see [`crate::plausible`]) get 400 and are
//!   counted under `implausible_time`: a retry could never succeed;
//! - 5xx bodies are generic; the detail goes to the log only;
//! - bodies above the limit get 413; a malformed body gets 400 with the
//!   reason and stores nothing (the whole body is parsed before storing);
//! - 200 only after the batch's transaction has committed; a store failure
//!   gets 503 so the API server retries.
//!
//! The same listener serves the managed control planes' deliveries
//! (`ingest/cloud.rs`: `/v1/audit/{gke,eks,aks}` with this authentication;
//! `ingest/firehose.rs`: `/v1/firehose/eks` with the Firehose access key;
//! `ingest/pubsub.rs`: `/v1/pubsub/gke` with the push's OIDC token), under
//! the same body limit, timeouts and connection caps.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::audit::parse_webhook_body;
use crate::listen::{self, Acceptor, Limits};
use crate::plausible;
use crate::state::AppState;

/// Default body limit: 32 MiB (400 large events fit easily).
pub const DEFAULT_BODY_LIMIT: usize = 32 << 20;
/// The `source` the webhook's batches are stored under.
pub const SOURCE: &str = "webhook";

/// Subject common names a kube-apiserver's audit-webhook client certificate
/// usually has. The API server presents whatever the webhook kubeconfig's
/// `users[].user.client-certificate` names; operators commonly reuse or
/// mirror one of the API server's own certificates:
/// - kubeadm, documented in "PKI certificates and requirements"
///   (kubernetes.io/docs/setup/best-practices/certificates/): the serving
///   certificate apiserver.crt has CN `kube-apiserver`, the API server's
///   client certificate towards kubelets apiserver-kubelet-client.crt has CN
///   `kube-apiserver-kubelet-client`; credtrail's demo PKI issues the
///   webhook client certificate as `kube-apiserver` too;
/// - `system:kube-apiserver` and `apiserver`: names hand-built PKIs use for
///   the same component (the `system:` prefix follows Kubernetes' naming of
///   control-plane identities); not taken from a documented distribution.
///
/// EKS, GKE and AKS do not let users configure an audit webhook backend (the
/// control plane's audit goes to CloudWatch Logs, Cloud Audit Logs and Azure
/// Monitor diagnostic settings respectively, which credtrail reads as files
/// or through the cloud delivery paths on this listener), so there the
/// certificate is whatever the operator issues: set `--webhook-client-subject`.
pub const DEFAULT_CLIENT_SUBJECTS: &[&str] = &[
    // What credtrail's own deploy issues (deploy/tls/make-certs.sh, the
    // chart's tls-cert-manager.yaml).
    "kube-apiserver-audit",
    "kube-apiserver",
    "kube-apiserver-kubelet-client",
    "system:kube-apiserver",
    "apiserver",
];

/// How the webhook authenticates the API server.
#[derive(Clone)]
pub struct WebhookAuth {
    /// SHA-256 of each accepted bearer token (the tokens themselves are not kept).
    token_hashes: Vec<[u8; 32]>,
    /// Whether a verified client certificate is enough.
    pub client_cert: bool,
    /// Subject CNs a client certificate may have.
    client_subjects: Vec<String>,
    /// SHA-256 of each accepted Firehose access key (`/v1/firehose/eks`).
    firehose_key_hashes: Vec<[u8; 32]>,
    /// Verifier of Pub/Sub push tokens (`/v1/pubsub/gke`).
    pubsub: Option<Arc<crate::ingest::oidc::OidcVerifier>>,
}

impl Default for WebhookAuth {
    fn default() -> Self {
        Self {
            token_hashes: Vec::new(),
            client_cert: false,
            client_subjects: DEFAULT_CLIENT_SUBJECTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            firehose_key_hashes: Vec::new(),
            pubsub: None,
        }
    }
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAuth")
            .field("tokens", &self.token_hashes.len())
            .field("client_cert", &self.client_cert)
            .field("client_subjects", &self.client_subjects)
            .field("firehose_keys", &self.firehose_key_hashes.len())
            .field("pubsub", &self.pubsub)
            .finish()
    }
}

impl WebhookAuth {
    /// Accepts these bearer tokens (one per non-empty line of a token file).
    pub fn with_tokens<'a>(mut self, tokens: impl IntoIterator<Item = &'a str>) -> Self {
        self.token_hashes.extend(
            tokens
                .into_iter()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() }),
        );
        self
    }

    /// Accepts these Firehose access keys (one per non-empty line of the key file).
    pub fn with_firehose_keys<'a>(mut self, keys: impl IntoIterator<Item = &'a str>) -> Self {
        self.firehose_key_hashes.extend(
            keys.into_iter()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() }),
        );
        self
    }

    /// Accepts Pub/Sub pushes whose OIDC token this verifier accepts.
    pub fn with_pubsub(mut self, v: crate::ingest::oidc::OidcVerifier) -> Self {
        self.pubsub = Some(Arc::new(v));
        self
    }

    /// Whether a Firehose access key is configured.
    pub(crate) fn firehose_configured(&self) -> bool {
        !self.firehose_key_hashes.is_empty()
    }

    /// Constant-time check of a presented Firehose access key.
    pub(crate) fn firehose_key_ok(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.firehose_key_hashes
            .iter()
            .fold(false, |ok, want| ok | ct_eq(want, &h))
    }

    pub(crate) fn pubsub(&self) -> Option<&crate::ingest::oidc::OidcVerifier> {
        self.pubsub.as_deref()
    }

    pub fn with_client_cert(mut self, on: bool) -> Self {
        self.client_cert = on;
        self
    }

    /// Replaces the client-certificate subject allowlist (an empty list keeps the default).
    pub fn with_client_subjects(mut self, subjects: &[String]) -> Self {
        if !subjects.is_empty() {
            self.client_subjects = subjects.to_vec();
        }
        self
    }

    /// Whether a verified client certificate with subject CN `cn` is allowed.
    fn subject_ok(&self, cn: &str) -> bool {
        self.client_subjects.iter().any(|s| s == cn)
    }

    /// Whether any way to authenticate is configured.
    pub fn is_configured(&self) -> bool {
        !self.token_hashes.is_empty() || self.client_cert
    }

    fn token_ok(&self, presented: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare every configured hash in full: no early exit on a match.
        self.token_hashes
            .iter()
            .fold(false, |ok, want| ok | ct_eq(want, &h))
    }
}

/// Constant-time equality of two 32-byte values.
fn ct_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer <token>` header; the scheme is
/// matched case-insensitively (RFC 7235 section 2.1).
fn bearer_token(v: &str) -> Option<&str> {
    let (scheme, token) = v.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Per-connection fact: the subject CN of the client certificate the CA
/// verified (`Some("")` if it has none), or `None` without a certificate.
#[derive(Clone, Debug)]
pub(crate) struct ClientCertVerified(pub(crate) Option<Arc<str>>);

/// The subject CN of a verified peer certificate.
fn client_subject(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, c)| {
            c.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

#[derive(Clone)]
pub(crate) struct WebhookState {
    pub(crate) app: AppState,
    pub(crate) auth: Arc<WebhookAuth>,
    pub(crate) limit: usize,
}

/// The webhook's router: the cloud paths, and any other path for native
/// `EventList`s (POST).
fn router(app: AppState, auth: Arc<WebhookAuth>, limit: usize) -> Router {
    use crate::ingest::{cloud, firehose, pubsub};
    use axum::routing::any;
    Router::new()
        .route(cloud::GKE_PATH, any(cloud::handle_gke))
        .route(cloud::EKS_PATH, any(cloud::handle_eks))
        .route(cloud::AKS_PATH, any(cloud::handle_aks))
        .route(firehose::PATH, any(firehose::handle))
        .route(pubsub::PATH, any(pubsub::handle))
        .fallback(handle)
        .with_state(WebhookState { app, auth, limit })
}

/// The webhook's authentication (bearer token or allowed client
/// certificate); `Err` is the answer to send.
pub(crate) fn authenticate(
    st: &WebhookState,
    cert_cn: Option<Arc<str>>,
    headers: &HeaderMap,
    source: &str,
) -> Result<(), Box<Response>> {
    let m = &st.app.metrics;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let cert_cn = cert_cn.filter(|_| st.auth.client_cert);
    let cert_ok = cert_cn.as_deref().is_some_and(|cn| st.auth.subject_ok(cn));
    let authed = cert_ok || bearer.is_some_and(|t| st.auth.token_ok(t));
    if !authed && let Some(cn) = cert_cn {
        m.reject(source, "forbidden_subject");
        tracing::warn!(subject = %cn, "webhook client certificate subject not on the allowlist");
        return Err(Box::new((
            StatusCode::FORBIDDEN,
            "forbidden: this client certificate's subject may not send audit events (see --webhook-client-subject)\n",
        )
            .into_response()));
    }
    if !authed {
        m.reject(source, "unauthenticated");
        return Err(Box::new(
            (
                StatusCode::UNAUTHORIZED,
                "unauthenticated: present the configured bearer token or a client certificate\n",
            )
                .into_response(),
        ));
    }
    Ok(())
}

/// Why a body could not be read.
pub(crate) enum BodyError {
    Timeout,
    TooLarge(String),
}

impl BodyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            BodyError::Timeout => StatusCode::REQUEST_TIMEOUT,
            BodyError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    pub(crate) fn message(&self, limit: usize) -> String {
        match self {
            BodyError::Timeout => "the request body did not arrive in time".to_owned(),
            BodyError::TooLarge(e) => format!("body rejected (limit {limit} bytes): {e}"),
        }
    }
}

/// Reads the body up to the listener's limit (counted on failure).
pub(crate) async fn read_body(
    st: &WebhookState,
    body: Body,
    source: &str,
) -> Result<axum::body::Bytes, BodyError> {
    let m = &st.app.metrics;
    match axum::body::to_bytes(body, st.limit).await {
        Ok(b) => Ok(b),
        Err(e) if listen::is_body_timeout(&e) => {
            m.reject(source, "body_timeout");
            Err(BodyError::Timeout)
        }
        Err(e) => {
            m.reject(source, "too_large");
            Err(BodyError::TooLarge(e.to_string()))
        }
    }
}

async fn handle(
    State(st): State<WebhookState>,
    Extension(ClientCertVerified(cert_cn)): Extension<ClientCertVerified>,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let m = &st.app.metrics;
    if method != axum::http::Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an audit.k8s.io EventList\n",
        )
            .into_response();
    }
    if let Err(r) = authenticate(&st, cert_cn, &headers, SOURCE) {
        return *r;
    }
    let bytes = match read_body(&st, body, SOURCE).await {
        Ok(b) => b,
        Err(e) => {
            let mut r = (e.status(), format!("{}\n", e.message(st.limit))).into_response();
            if matches!(e, BodyError::Timeout) {
                r.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            return r;
        }
    };
    // A batch of up to 400 events is milliseconds of CPU: parse it on the
    // blocking pool so the query API's tasks never queue behind it.
    let parsed = tokio::task::spawn_blocking(move || parse_webhook_body(&bytes)).await;
    let Ok(parsed) = parsed else {
        m.reject(SOURCE, "parser_failed");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the audit parser failed on this batch; nothing was stored\n",
        )
            .into_response();
    };
    let events = match parsed {
        Ok(ev) => ev,
        Err(e) => {
            let _ = st.app.pipeline.record_rejected(SOURCE, e.label(), 1).await;
            return (StatusCode::BAD_REQUEST, format!("bad audit batch: {e}\n")).into_response();
        }
    };
    let now = chrono::Utc::now();
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find_map(|(i, ev)| plausible::check_audit_event(ev, now).err().map(|e| (i, e)))
    {
        let _ = st
            .app
            .pipeline
            .record_rejected(SOURCE, plausible::REASON, 1)
            .await;
        return (
            StatusCode::BAD_REQUEST,
            format!("bad audit batch: items[{i}]: {e}; nothing was stored\n"),
        )
            .into_response();
    }
    match st.app.pipeline.ingest_audit_batch(SOURCE, events).await {
        Ok(r) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "received": r.received,
                "accepted": r.accepted,
                "duplicates": r.duplicates,
                "alerts": r.alerts.len(),
            })
            .to_string(),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "storing audit batch failed");
            m.reject(SOURCE, "store_unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "batch not stored, retry later\n",
            )
                .into_response()
        }
    }
}

/// Serves the webhook on `listener` (HTTPS with `tls`) until `shutdown`,
/// with the default [`Limits`] (body timeout proportionate to `limit`).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    auth: WebhookAuth,
    limit: usize,
    app: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = Limits {
        body_timeout: listen::body_timeout_for(limit, listen::DEFAULT_HEADER_TIMEOUT),
        ..Limits::default()
    };
    serve_limited(listener, tls, auth, limit, limits, app, shutdown).await
}

/// [`serve`] with explicit listener limits (`crate::listen`).
pub async fn serve_limited(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    auth: WebhookAuth,
    limit: usize,
    limits: Limits,
    app: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let metrics = app.metrics.clone();
    let acceptor = Acceptor::new(listener, "webhook", &limits, metrics.clone());
    let app_router = router(app, Arc::new(auth), limit);
    listen::serve_http(
        acceptor,
        Some(TlsAcceptor::from(tls)),
        limits,
        metrics,
        move |conn| {
            app_router
                .clone()
                .layer(axum::Extension(ClientCertVerified(
                    conn.peer_certs
                        .first()
                        .map(|der| Arc::<str>::from(client_subject(der))),
                )))
                .layer(axum::Extension(conn))
        },
        shutdown,
    )
    .await;
    Ok(())
}
