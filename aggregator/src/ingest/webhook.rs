//! The audit webhook backend: HTTPS POSTs of `EventList`s from the API
//! server (`--audit-webhook-config-file`).
//!
//! - authenticated by a bearer token (constant-time compare) and/or a client
//!   certificate verified against the configured CA; otherwise 401;
//! - bodies above the limit get 413; a malformed body gets 400 with the
//!   reason and stores nothing (the whole body is parsed before storing);
//! - 200 only after the batch's transaction has committed; a store failure
//!   gets 503 so the API server retries.

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
use crate::state::AppState;

/// Default body limit: 32 MiB (400 large events fit easily).
pub const DEFAULT_BODY_LIMIT: usize = 32 << 20;
/// The `source` the webhook's batches are stored under.
pub const SOURCE: &str = "webhook";

/// How the webhook authenticates the API server.
#[derive(Clone, Default)]
pub struct WebhookAuth {
    /// SHA-256 of each accepted bearer token (the tokens themselves are not kept).
    token_hashes: Vec<[u8; 32]>,
    /// Whether a verified client certificate is enough.
    pub client_cert: bool,
}

impl std::fmt::Debug for WebhookAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookAuth")
            .field("tokens", &self.token_hashes.len())
            .field("client_cert", &self.client_cert)
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

    pub fn with_client_cert(mut self, on: bool) -> Self {
        self.client_cert = on;
        self
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

/// Per-connection fact: the client presented a certificate the CA verified.
#[derive(Clone, Copy, Debug)]
struct ClientCertVerified(bool);

#[derive(Clone)]
struct WebhookState {
    app: AppState,
    auth: Arc<WebhookAuth>,
    limit: usize,
}

/// The webhook's router (any path, POST). Exposed for in-process tests.
fn router(app: AppState, auth: Arc<WebhookAuth>, limit: usize) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(WebhookState { app, auth, limit })
}

async fn handle(
    State(st): State<WebhookState>,
    Extension(ClientCertVerified(cert_ok)): Extension<ClientCertVerified>,
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
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authed =
        (st.auth.client_cert && cert_ok) || bearer.is_some_and(|t| st.auth.token_ok(t.trim()));
    if !authed {
        m.reject(SOURCE, "unauthenticated");
        return (
            StatusCode::UNAUTHORIZED,
            "unauthenticated: present the configured bearer token or a client certificate\n",
        )
            .into_response();
    }
    let bytes = match axum::body::to_bytes(body, st.limit).await {
        Ok(b) => b,
        Err(e) if listen::is_body_timeout(&e) => {
            m.reject(SOURCE, "body_timeout");
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                "the request body did not arrive in time\n",
            )
                .into_response();
        }
        Err(e) => {
            m.reject(SOURCE, "too_large");
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body rejected (limit {} bytes): {e}\n", st.limit),
            )
                .into_response();
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
                format!("batch not stored, retry: {e}\n"),
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
    let acceptor = Acceptor::new(listener, "webhook", limits.max_connections, metrics.clone());
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
                    !conn.peer_certs.is_empty(),
                )))
                .layer(axum::Extension(conn))
        },
        shutdown,
    )
    .await;
    Ok(())
}
