//! HTTP/JSON API under `/api/v1/`, the web page at `/`, `/metrics`,
//! `/healthz` and `/readyz`. Routes and formats: `docs/API.md`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, MatchedPath, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::export::Format;
use super::live::{self, LiveEvent};
use super::params::{self, ALERT_FILTER_KEYS};
use super::{ApiError, ops, web};
use crate::alert::Alert;
use crate::auth::{PeerCert, Principal};
use crate::listen::{Acceptor, Limits};
use crate::policy::SuppressionMatch;
use crate::state::AppState;
use crate::store::query::filter::parse_time;
use crate::store::query::suppressions::NewSuppression;
use crate::store::query::{FilterError, PageToken, StoredAlert};

/// Largest request body of the API (suppressions are small JSON objects).
pub const BODY_LIMIT: usize = 64 * 1024;

/// Serves the API on `listener` until `shutdown` resolves, with the default
/// [`Limits`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_limited(listener, Limits::default(), state, shutdown).await
}

/// Serves the API (HTTP/1.1) through the shared accept loop
/// ([`crate::listen`]): connection cap, header and body timeouts, graceful
/// shutdown with a deadline. `TCP_NODELAY` is set on every connection: the
/// live stream writes small events one at a time, and Nagle's algorithm would
/// hold each one back until the previous was acknowledged.
pub async fn serve_limited(
    listener: tokio::net::TcpListener,
    limits: Limits,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = state.metrics.clone();
    let acceptor = Acceptor::new(
        listener,
        "http_api",
        limits.max_connections,
        metrics.clone(),
    );
    // TLS (`--api-tls-cert`) is served by the same loop; a client
    // certificate it verified reaches the auth middleware as a [`PeerCert`].
    let tls = state
        .auth
        .tls
        .as_ref()
        .map(|t| tokio_rustls::TlsAcceptor::from(t.http.clone()));
    let app = router(state);
    crate::listen::serve_http(
        acceptor,
        tls,
        limits,
        metrics,
        move |conn| match conn.peer_certs.first() {
            Some(der) => app
                .clone()
                .layer(Extension(PeerCert(Arc::new(der.as_ref().to_vec())))),
            None => app.clone(),
        },
        shutdown,
    )
    .await;
    Ok(())
}

/// The API router (see [`serve`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(web::index))
        .route("/app.js", get(web::script))
        .route("/style.css", get(web::style))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alerts", get(list_alerts))
        .route("/api/v1/alerts/stream", get(stream_alerts))
        .route("/api/v1/alerts/{id}", get(get_alert))
        .route("/api/v1/credentials", get(list_credentials))
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/bindings", get(list_bindings))
        .route("/api/v1/coverage", get(coverage))
        .route(
            "/api/v1/suppressions",
            get(list_suppressions).post(create_suppression),
        )
        .route("/api/v1/suppressions/{id}", delete(delete_suppression))
        .route("/api/v1/export/alerts", get(export_alerts))
        .merge(super::learned::routes())
        .merge(super::triage::routes())
        .merge(super::context::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        // Authentication, roles, Host and Content-Type (auth/http.rs), inside
        // the request counter so refusals are counted too.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::http::guard,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::FailedPrecondition(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::DataLoss(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = ErrorBody {
            error: self.public_message(),
            code: self.code(),
        };
        (status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

async fn count_requests(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let resp = next.run(req).await;
    state
        .metrics
        .api_request("http", &endpoint, resp.status().as_str());
    resp
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see docs/API.md".into())
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> ApiResult<&'static str> {
    ops::ready(&state).await?;
    Ok("ready\n")
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Err(e) = ops::refresh_suppression_metrics(&state).await {
        tracing::warn!(error = %e, "suppression hits not refreshed for /metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// An alert as JSON: the domain alert plus `suppressed_by` when set, and
/// the rule's runbook (`detect::rules::runbook_url`).
#[derive(Serialize)]
struct AlertView<'a> {
    #[serde(flatten)]
    alert: &'a Alert,
    #[serde(skip_serializing_if = "Option::is_none")]
    suppressed_by: Option<&'a str>,
    runbook_url: String,
    /// Triage state (`crate::triage`); history in the detail only.
    triage: std::borrow::Cow<'a, crate::triage::Triage>,
    /// Activity and the credential inventory link (api/context.rs).
    #[serde(flatten)]
    context: super::context::AlertContext,
}

impl<'a> From<&'a StoredAlert> for AlertView<'a> {
    fn from(s: &'a StoredAlert) -> Self {
        AlertView {
            alert: &s.alert,
            suppressed_by: s.suppressed_by.as_deref(),
            runbook_url: crate::detect::rules::runbook_url(&s.alert.rule),
            triage: std::borrow::Cow::Borrowed(&s.triage),
            context: super::context::AlertContext::of(&s.alert, None),
        }
    }
}

#[derive(Serialize)]
struct AlertList<'a> {
    alerts: Vec<AlertView<'a>>,
    /// Pass as `page_token` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_page_token: Option<String>,
}

async fn list_alerts(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    params::check_known(&q, &[ALERT_FILTER_KEYS, &["page_size", "page_token"]])?;
    let filter = params::alert_filter(&q)?;
    let size = params::number(&q, "page_size")?.unwrap_or(0);
    let token = q.get("page_token").cloned().unwrap_or_default();
    let page = ops::list_alerts(&state, filter, size, &token).await?;
    let ids = page.alerts.iter().map(|a| a.alert.id.clone()).collect();
    let mut acts = super::context::summaries(&state, ids).await?;
    Ok(Json(AlertList {
        alerts: page
            .alerts
            .iter()
            .map(|a| {
                let mut v = AlertView::from(a);
                v.context.activity = acts.remove(&a.alert.id);
                v
            })
            .collect(),
        next_page_token: page.next.as_ref().map(PageToken::encode),
    })
    .into_response())
}

async fn get_alert(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let a = ops::get_alert(&state, id).await?;
    let activity = super::context::detail(&state, a.alert.id.clone()).await?;
    let mut v = AlertView::from(&a);
    v.context.activity = activity;
    Ok(Json(v).into_response())
}

/// Server-sent events: `event: alert` (data: the alert JSON) and
/// `event: skipped` (data: `{"count": N}`).
async fn stream_alerts(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    params::check_known(&q, &[ALERT_FILTER_KEYS])?;
    let filter = params::alert_filter(&q)?;
    let events = live::subscribe(&state, filter).map(|ev| {
        let event = match ev {
            LiveEvent::Alert(a) => Event::default().event("alert").id(a.id.clone()).data(
                serde_json::to_string(&AlertView {
                    alert: &a,
                    suppressed_by: None,
                    runbook_url: crate::detect::rules::runbook_url(&a.rule),
                    // A new alert is open and unassigned.
                    triage: std::borrow::Cow::Owned(crate::triage::Triage::default()),
                    context: super::context::AlertContext::of(&a, None),
                })
                .unwrap_or_default(),
            ),
            LiveEvent::Triage(t) => Event::default()
                .event("triage")
                .id(t.alert.id.clone())
                .data(super::triage::stream_data(&t)),
            LiveEvent::Skipped(n) => Event::default()
                .event("skipped")
                .data(serde_json::json!({ "count": n }).to_string()),
        };
        Ok::<_, Infallible>(event)
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn list_credentials(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    let query = params::credential_query(&q)?;
    let creds = ops::list_credentials(&state, query).await?;
    Ok(Json(serde_json::json!({ "credentials": creds })).into_response())
}

async fn list_nodes(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    params::check_known(&q, &[])?;
    let nodes = ops::list_nodes(&state).await?;
    // What the audit stream taught about nodes, with its provenance.
    let learned = state
        .store
        .read(crate::store::learned::list_learned_nodes)
        .await?;
    Ok(Json(serde_json::json!({ "nodes": nodes, "learned": learned })).into_response())
}

async fn list_bindings(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    let query = params::binding_query(&q)?;
    let b = ops::list_bindings(&state, query).await?;
    Ok(Json(serde_json::json!({ "bindings": b })).into_response())
}

async fn coverage(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    params::check_known(&q, &[&["freshness_seconds"]])?;
    let fresh = params::number(&q, "freshness_seconds")?.unwrap_or(0.0);
    Ok(Json(ops::coverage(&state, fresh).await?).into_response())
}

async fn list_suppressions(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    params::check_known(&q, &[&["include_expired"]])?;
    let s = ops::list_suppressions(&state, params::boolean(&q, "include_expired")?).await?;
    Ok(Json(serde_json::json!({ "suppressions": s })).into_response())
}

/// Body of `POST /api/v1/suppressions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSuppressionBody {
    owner: String,
    reason: String,
    /// RFC 3339.
    expires: String,
    #[serde(rename = "match")]
    matcher: SuppressionMatch,
}

/// Parses a `POST /api/v1/suppressions` body made on behalf of principal
/// `created_by` (pure: also the fuzz target's entry).
pub fn parse_suppression_body(
    body: &[u8],
    created_by: String,
) -> Result<NewSuppression, FilterError> {
    let b: CreateSuppressionBody = serde_json::from_slice(body)
        .map_err(|e| FilterError::new("body", format!("not a suppression: {e}")))?;
    Ok(NewSuppression {
        owner: b.owner,
        reason: b.reason,
        expires: parse_time("expires", &b.expires)?,
        matcher: b.matcher,
        created_by,
    })
}

async fn create_suppression(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    body: Bytes,
) -> ApiResult<Response> {
    let new = parse_suppression_body(&body, who.name)?;
    let entry = ops::create_suppression(&state, new).await?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

async fn delete_suppression(
    State(state): State<AppState>,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ops::delete_suppression(&state, id, who.name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Default and maximum number of alerts in one export.
const EXPORT_DEFAULT_LIMIT: u64 = 10_000;
const EXPORT_MAX_LIMIT: u64 = 1_000_000;
/// Alerts fetched per store read while exporting.
const EXPORT_CHUNK: u32 = 500;

/// `GET /api/v1/export/alerts?format=jsonl|cef&limit=N&<alert filters>`:
/// newest first, streamed page by page.
async fn export_alerts(
    State(state): State<AppState>,
    Query(q): Query<params::Query>,
) -> ApiResult<Response> {
    params::check_known(&q, &[ALERT_FILTER_KEYS, &["format", "limit"]])?;
    let format_name = q.get("format").map_or("jsonl", String::as_str);
    let format = Format::parse(format_name).ok_or_else(|| {
        FilterError::new(
            "format",
            format!("{format_name:?} is not one of jsonl, cef"),
        )
    })?;
    let limit: u64 = params::number(&q, "limit")?.unwrap_or(EXPORT_DEFAULT_LIMIT);
    if limit == 0 || limit > EXPORT_MAX_LIMIT {
        return Err(FilterError::new("limit", format!("must be 1..={EXPORT_MAX_LIMIT}")).into());
    }
    let filter = params::alert_filter(&q)?;
    // Check the filter against the store before committing to a 200.
    let first = ops::list_alerts(&state, filter.clone(), EXPORT_CHUNK, "").await?;
    struct Cursor {
        state: AppState,
        filter: crate::store::query::AlertFilter,
        page: Option<crate::store::query::AlertPage>,
        failed: Option<ApiError>,
        left: u64,
    }
    let start = Cursor {
        state,
        filter,
        page: Some(first),
        failed: None,
        left: limit,
    };
    let body = futures::stream::unfold(start, move |mut c| async move {
        if let Some(e) = c.failed.take() {
            // The status line is already sent: abort the body so the client
            // sees a broken transfer, never a silently short export.
            tracing::warn!(error = %e, "alert export aborted");
            return Some((Err(std::io::Error::other(e.to_string())), c));
        }
        let page = c.page.take()?;
        if c.left == 0 || page.alerts.is_empty() {
            return None;
        }
        let mut chunk = String::new();
        for a in page
            .alerts
            .iter()
            .take(usize::try_from(c.left).unwrap_or(usize::MAX))
        {
            chunk.push_str(&super::export_triage::line(format, a));
            c.left -= 1;
        }
        if c.left > 0
            && let Some(tok) = page.next
        {
            match ops::list_alerts(&c.state, c.filter.clone(), EXPORT_CHUNK, &tok.encode()).await {
                Ok(p) => c.page = Some(p),
                Err(e) => c.failed = Some(e),
            }
        }
        Some((Ok(Bytes::from(chunk)), c))
    });
    let ext = match format {
        Format::Jsonl => "jsonl",
        Format::Cef => "cef",
    };
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"credtrail-alerts.{ext}\""),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
