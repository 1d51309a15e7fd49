//! Cloud wrapper formats on the webhook listener, one path each:
//! `/v1/audit/gke` (Cloud Logging entries), `/v1/audit/eks` (CloudWatch Logs
//! subscription payloads, gzip or not), `/v1/audit/aks` (Event Hubs record
//! batches, what an Event Hubs → HTTP relay forwards). Same authentication,
//! body limit and timeouts as the native webhook.
//!
//! Unlike a native `EventList` (all or nothing), a wrapper document is read
//! entry by entry: refused entries (odd methodName, malformed message,
//! implausible time) are counted and named in the answer, the others are
//! stored; a retry could never make a refused entry readable. A document
//! with nothing readable and something refused gets 400.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::audit::{InputFormat, Parsed, parse_document};
use crate::pipeline::IngestReport;
use crate::plausible;
use crate::state::AppState;

use super::webhook::{BodyError, ClientCertVerified, WebhookState, authenticate, read_body};

pub const GKE_PATH: &str = "/v1/audit/gke";
pub const EKS_PATH: &str = "/v1/audit/eks";
pub const AKS_PATH: &str = "/v1/audit/aks";

/// The `source` of each format's batches.
pub fn source_of(format: InputFormat) -> &'static str {
    match format {
        InputFormat::GkeCloudLogging => "gke",
        InputFormat::EksCloudwatch => "eks",
        InputFormat::AksEventHubs => "aks",
        InputFormat::AzureLogAnalytics => "azure-log-analytics",
        InputFormat::Native => super::webhook::SOURCE,
    }
}

/// What storing a wrapper document did.
#[derive(Debug)]
pub(crate) struct Stored {
    pub report: IngestReport,
    /// Entries refused (parse errors and implausible times).
    pub refused: usize,
    pub skipped: u64,
    /// The first refusal, for the answer.
    pub first_refusal: Option<String>,
}

/// Why nothing was stored.
#[derive(Debug)]
pub(crate) enum NotStored {
    /// Nothing readable; the first reason.
    Unreadable(String),
    /// The store failed: retry later.
    Store,
}

/// Counts refusals and skips, drops implausible events, stores the rest.
pub(crate) async fn store_parsed(
    app: &AppState,
    source: &str,
    parsed: Parsed,
) -> Result<Stored, NotStored> {
    let now = chrono::Utc::now();
    let mut first_refusal = parsed.errors.first().map(ToString::to_string);
    // One count per reason (one store write each), whatever the number of entries.
    let mut by_reason: std::collections::BTreeMap<&'static str, u64> = Default::default();
    for (i, e) in parsed.errors.iter().enumerate() {
        if i < 10 {
            tracing::warn!(%source, error = %e, "audit entry refused");
        }
        *by_reason.entry(e.label()).or_default() += 1;
    }
    if parsed.errors.len() > 10 {
        tracing::warn!(%source, more = parsed.errors.len() - 10, "more audit entries refused");
    }
    for (reason, n) in by_reason {
        let _ = app.pipeline.record_rejected(source, reason, n).await;
    }
    let mut refused = parsed.errors.len();
    let mut skipped = 0;
    for (reason, n) in &parsed.skipped {
        app.pipeline.record_skipped(source, reason, *n);
        skipped += n;
    }
    let mut events = Vec::with_capacity(parsed.events.len());
    let mut implausible = 0u64;
    for ev in parsed.events {
        match plausible::check_audit_event(&ev, now) {
            Ok(()) => events.push(ev),
            Err(e) => {
                implausible += 1;
                first_refusal.get_or_insert_with(|| format!("event {}: {e}", ev.audit_id));
            }
        }
    }
    if implausible > 0 {
        refused += implausible as usize;
        let _ = app
            .pipeline
            .record_rejected(source, plausible::REASON, implausible)
            .await;
    }
    if events.is_empty() && refused > 0 {
        return Err(NotStored::Unreadable(first_refusal.unwrap_or_default()));
    }
    match app.pipeline.ingest_audit_batch(source, events).await {
        Ok(report) => Ok(Stored {
            report,
            refused,
            skipped,
            first_refusal,
        }),
        Err(e) => {
            tracing::error!(error = %e, %source, "storing audit batch failed");
            app.metrics.reject(source, "store_unavailable");
            Err(NotStored::Store)
        }
    }
}

impl Stored {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "received": self.report.received,
            "accepted": self.report.accepted,
            "duplicates": self.report.duplicates,
            "alerts": self.report.alerts.len(),
            "refused": self.refused,
            "skipped": self.skipped,
            "first_refusal": self.first_refusal,
        })
    }
}

/// Parses on the blocking pool (a large document is CPU work).
/// Why [`parse_counted`] gave no document.
pub(crate) enum ParseRefused {
    /// The request itself is malformed (counted as `malformed_request`).
    Malformed(String),
    /// The parser failed (counted as `parser_failed`); nothing was stored.
    ParserFailed,
}

/// Runs `parse` off the async threads and counts a refused request under
/// `source`: a malformed one in the store, a failed parser in the metrics.
pub(crate) async fn parse_counted(
    app: &AppState,
    source: &'static str,
    parse: impl FnOnce() -> Result<Parsed, String> + Send + 'static,
) -> Result<Parsed, ParseRefused> {
    match tokio::task::spawn_blocking(parse).await {
        Ok(Ok(p)) => Ok(p),
        Ok(Err(why)) => {
            let _ = app
                .pipeline
                .record_rejected(source, "malformed_request", 1)
                .await;
            Err(ParseRefused::Malformed(why))
        }
        Err(_) => {
            app.metrics.reject(source, "parser_failed");
            Err(ParseRefused::ParserFailed)
        }
    }
}

pub(crate) async fn parse_blocking(
    bytes: axum::body::Bytes,
    format: InputFormat,
) -> Option<Parsed> {
    tokio::task::spawn_blocking(move || parse_document(&bytes, format))
        .await
        .ok()
}

async fn handle_format(
    st: WebhookState,
    cert_cn: Option<std::sync::Arc<str>>,
    method: Method,
    headers: HeaderMap,
    body: Body,
    format: InputFormat,
) -> Response {
    let source = source_of(format);
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("POST a {} document\n", format.option_name()),
        )
            .into_response();
    }
    if let Err(r) = authenticate(&st, cert_cn, &headers, source) {
        return *r;
    }
    let bytes = match read_body(&st, body, source).await {
        Ok(b) => b,
        Err(e) => return body_error(&e, st.limit),
    };
    let Some(parsed) = parse_blocking(bytes, format).await else {
        st.app.metrics.reject(source, "parser_failed");
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the audit parser failed on this document; nothing was stored\n",
        )
            .into_response();
    };
    match store_parsed(&st.app, source, parsed).await {
        Ok(s) => json_reply(StatusCode::OK, s.json().to_string()),
        Err(NotStored::Unreadable(why)) => (
            StatusCode::BAD_REQUEST,
            format!("nothing readable as {}: {why}\n", format.option_name()),
        )
            .into_response(),
        Err(NotStored::Store) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "batch not stored, retry later\n",
        )
            .into_response(),
    }
}

pub(crate) fn body_error(e: &BodyError, limit: usize) -> Response {
    let mut r = (e.status(), format!("{}\n", e.message(limit))).into_response();
    if matches!(e, BodyError::Timeout) {
        r.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    r
}

/// `body` (a JSON document) with `status`, typed as JSON.
pub(crate) fn json_reply(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// An axum handler taking one provider's document format.
macro_rules! format_handler {
    ($name:ident, $format:expr) => {
        pub(crate) async fn $name(
            State(st): State<WebhookState>,
            Extension(ClientCertVerified(cn)): Extension<ClientCertVerified>,
            method: Method,
            headers: HeaderMap,
            body: Body,
        ) -> Response {
            handle_format(st, cn, method, headers, body, $format).await
        }
    };
}

format_handler!(handle_gke, InputFormat::GkeCloudLogging);
format_handler!(handle_eks, InputFormat::EksCloudwatch);
format_handler!(handle_aks, InputFormat::AksEventHubs);
