//! What detection learned, for review: nodes learned from the audit stream,
//! baselines (identity → sources, learned when and from which event, with a
//! way to drop an entry), and token lineage (who minted which JTI).
//! Documented in docs/POLICY.md.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::ApiError;
use crate::state::AppState;
use crate::store::learned;

/// The routes, merged into the API router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/learned/nodes", get(learned_nodes))
        .route(
            "/api/v1/baselines",
            get(list_baselines).delete(drop_baseline),
        )
        .route("/api/v1/tokens/lineage", get(lineage))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineQuery {
    username: Option<String>,
    source_ip: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineageQuery {
    jti: Option<String>,
}

async fn learned_nodes(State(state): State<AppState>) -> Result<Response, ApiError> {
    let rows = state.store.read(learned::list_learned_nodes).await?;
    Ok(Json(serde_json::json!({ "learned_nodes": rows })).into_response())
}

async fn list_baselines(
    State(state): State<AppState>,
    Query(q): Query<BaselineQuery>,
) -> Result<Response, ApiError> {
    if q.source_ip.is_some() {
        return Err(ApiError::InvalidArgument(
            "source_ip filters only DELETE; list by username".into(),
        ));
    }
    let rows = state
        .store
        .read(move |c| learned::list_baselines(c, q.username.as_deref()))
        .await?;
    Ok(Json(serde_json::json!({ "baselines": rows })).into_response())
}

/// `DELETE /api/v1/baselines?username=U&source_ip=IP`: 204, or 404.
async fn drop_baseline(
    State(state): State<AppState>,
    Query(q): Query<BaselineQuery>,
) -> Result<StatusCode, ApiError> {
    let (Some(user), Some(ip)) = (q.username, q.source_ip) else {
        return Err(ApiError::InvalidArgument(
            "username and source_ip are both required".into(),
        ));
    };
    let ip = ip
        .parse()
        .map_err(|_| ApiError::InvalidArgument(format!("source_ip {ip:?} is not an IP address")))?;
    if state.pipeline.drop_baseline(user, ip).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such baseline entry".into()))
    }
}

async fn lineage(
    State(state): State<AppState>,
    Query(q): Query<LineageQuery>,
) -> Result<Response, ApiError> {
    let rows = state
        .store
        .read(move |c| learned::list_lineage(c, q.jti.as_deref()))
        .await?;
    Ok(Json(serde_json::json!({ "lineage": rows })).into_response())
}
