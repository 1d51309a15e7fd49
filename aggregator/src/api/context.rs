//! Context for the responder, beside an alert: its activity from the source
//! (AN1547), the link to its credential's inventory, and the inventory
//! itself (`GET /api/v1/credentials/{credential_id}/inventory`). Contract:
//! docs/API.md, *Context for the responder*.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::ApiError;
use crate::alert::Alert;
use crate::state::AppState;
use crate::store::activity::{self, ActivityView};
use crate::store::inventory_ctx::{self, CredentialInventory};
use crate::store::query::{FilterError, QueryError};

/// Longest credential id accepted in the inventory path.
pub const MAX_CREDENTIAL_ID: usize = 512;

/// The routes, merged into the API router.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/api/v1/credentials/{credential_id}/inventory",
        get(inventory),
    )
}

/// Where an alert's credential inventory is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryLink {
    pub credential_id: String,
    pub path: String,
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The inventory key of an alert's credential: its credential id, else
/// `user:<username>` (as the inventory stores uses).
pub fn credential_key(a: &Alert) -> Option<String> {
    match &a.credential_id {
        Some(c) => Some(c.clone()),
        None if !a.identity.username.is_empty() => {
            let user = a
                .identity
                .impersonated_by
                .as_ref()
                .unwrap_or(&a.identity.username);
            Some(format!("user:{user}"))
        }
        None => None,
    }
}

pub fn link(a: &Alert) -> Option<InventoryLink> {
    credential_key(a).map(|k| InventoryLink {
        path: format!("/api/v1/credentials/{}/inventory", encode_segment(&k)),
        credential_id: k,
    })
}

/// What an alert's JSON gains (flattened into it).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AlertContext {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_inventory: Option<InventoryLink>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub activity: Option<ActivityView>,
}

impl AlertContext {
    pub fn of(a: &Alert, activity: Option<ActivityView>) -> Self {
        AlertContext {
            credential_inventory: link(a),
            activity,
        }
    }
}

async fn read<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, QueryError> + Send + 'static,
{
    Ok(state.store.read(move |c| Ok(f(c))).await??)
}

/// Activity summaries of a page of alerts.
pub async fn summaries(
    state: &AppState,
    ids: Vec<String>,
) -> Result<HashMap<String, ActivityView>, ApiError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    read(state, move |c| activity::summaries(c, &ids)).await
}

/// One alert's activity with its listed requests.
pub async fn detail(state: &AppState, id: String) -> Result<Option<ActivityView>, ApiError> {
    read(state, move |c| activity::detail(c, &id)).await
}

/// Checks an inventory key from the outside.
pub fn check_credential_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(FilterError::new("credential_id", "required").into());
    }
    if id.len() > MAX_CREDENTIAL_ID {
        return Err(FilterError::new(
            "credential_id",
            format!("longer than {MAX_CREDENTIAL_ID} bytes"),
        )
        .into());
    }
    Ok(())
}

/// The inventory of one credential, or NOT_FOUND.
pub async fn get_inventory(state: &AppState, id: String) -> Result<CredentialInventory, ApiError> {
    check_credential_id(&id)?;
    let key = id.clone();
    read(state, move |c| inventory_ctx::inventory(c, &key))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("nothing known about credential {id:?}")))
}

async fn inventory(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(get_inventory(&state, id).await?).into_response())
}

/// The activity fields of a gRPC alert.
pub fn to_pb(a: &mut credtrail_proto::pb::query::Alert, v: ActivityView) {
    use credtrail_proto::pb::query as pb;
    let ts = |t: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    };
    a.activity_summary = Some(v.activity_summary);
    a.activity_count = v.activity_count;
    a.occurrences = v.occurrences;
    a.activity_first = Some(ts(v.activity_first));
    a.activity_last = Some(ts(v.activity_last));
    a.activity_truncated = v.activity_truncated.unwrap_or(0);
    a.activity = v
        .activity
        .unwrap_or_default()
        .into_iter()
        .map(|e| pb::ActivityEntry {
            time: Some(ts(e.time)),
            phase: match e.phase {
                crate::detect::activity::Phase::Before => "before",
                crate::detect::activity::Phase::Alert => "alert",
                crate::detect::activity::Phase::After => "after",
            }
            .to_owned(),
            verb: e.verb,
            api_group: e.api_group,
            resource: e.resource,
            subresource: e.subresource,
            namespace: e.namespace,
            name: e.name,
            response_code: e.response_code,
            decision: e.decision,
            audit_id: e.audit_id,
        })
        .collect();
}
