//! The API's operations, shared by HTTP and gRPC: each runs its read query on
//! the store's reader connection (blocking pool) and maps errors to
//! [`ApiError`].

use chrono::Utc;

use super::ApiError;
use crate::state::AppState;
use crate::store::query::coverage::{self, CoverageReport, DEFAULT_FRESHNESS_SECONDS};
use crate::store::query::filter::page_size;
use crate::store::query::inventory::{
    self, BindingEntry, BindingQuery, CredentialEntry, CredentialQuery, NodeEntry,
};
use crate::store::query::suppressions::{self, Deleted, NewSuppression, SuppressionEntry};
use crate::store::query::{
    self, AlertFilter, AlertPage, FilterError, PageToken, QueryError, StoredAlert,
};

/// Runs a read query on the store.
async fn read<T, F>(state: &AppState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&rusqlite::Connection) -> Result<T, QueryError> + Send + 'static,
{
    Ok(state.store.read(move |c| Ok(f(c))).await??)
}

/// One page of alerts. `page_size` 0 means the default.
pub async fn list_alerts(
    state: &AppState,
    filter: AlertFilter,
    size: u32,
    page_token: &str,
) -> Result<AlertPage, ApiError> {
    filter.validate()?;
    let size = page_size(size)?;
    let after = if page_token.is_empty() {
        None
    } else {
        Some(PageToken::decode(page_token)?)
    };
    read(state, move |c| {
        query::list_alerts(c, &filter, size, after.as_ref())
    })
    .await
}

pub async fn get_alert(state: &AppState, id: String) -> Result<StoredAlert, ApiError> {
    if id.is_empty() {
        return Err(FilterError::new("id", "required").into());
    }
    let key = id.clone();
    read(state, move |c| {
        // The detail carries the triage history (docs/API.md, *Triage*).
        let mut a = query::get_alert(c, &key)?;
        if let Some(a) = a.as_mut() {
            a.triage.history = Some(crate::store::triage::history(c, &key)?);
        }
        Ok(a)
    })
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("no alert with id {id:?}")))
}

pub async fn list_credentials(
    state: &AppState,
    mut q: CredentialQuery,
) -> Result<Vec<CredentialEntry>, ApiError> {
    q.limit = page_size(q.limit).map_err(|e| FilterError::new("limit", e.message))?;
    read(state, move |c| inventory::list_credentials(c, &q)).await
}

pub async fn list_nodes(state: &AppState) -> Result<Vec<NodeEntry>, ApiError> {
    let now = Utc::now();
    read(state, move |c| inventory::list_nodes(c, now)).await
}

pub async fn list_bindings(
    state: &AppState,
    q: BindingQuery,
) -> Result<Vec<BindingEntry>, ApiError> {
    read(state, move |c| inventory::list_bindings(c, &q)).await
}

/// `freshness_seconds` 0 means the default; negative or not finite is an error.
pub async fn coverage(
    state: &AppState,
    freshness_seconds: f64,
) -> Result<CoverageReport, ApiError> {
    let fresh = if freshness_seconds == 0.0 {
        DEFAULT_FRESHNESS_SECONDS
    } else if freshness_seconds.is_finite() && freshness_seconds > 0.0 {
        freshness_seconds
    } else {
        return Err(FilterError::new(
            "freshness_seconds",
            format!("{freshness_seconds} is not a positive number of seconds"),
        )
        .into());
    };
    let now = Utc::now();
    read(state, move |c| coverage::coverage(c, now, fresh)).await
}

pub async fn list_suppressions(
    state: &AppState,
    include_expired: bool,
) -> Result<Vec<SuppressionEntry>, ApiError> {
    let now = Utc::now();
    read(state, move |c| {
        suppressions::list_suppressions(c, now, include_expired)
    })
    .await
}

/// Validates, stores, then makes detection re-read the table.
pub async fn create_suppression(
    state: &AppState,
    new: NewSuppression,
) -> Result<SuppressionEntry, ApiError> {
    let now = Utc::now();
    new.validate(now, state.policy.current().max_suppression)?;
    let entry = state
        .store
        .write(move |tx| Ok(suppressions::create_suppression(tx, now, &new)))
        .await??;
    state.pipeline.reload_suppressions().await?;
    Ok(entry)
}

/// Deletes an API suppression on behalf of principal `by` (recorded).
pub async fn delete_suppression(state: &AppState, id: String, by: String) -> Result<(), ApiError> {
    let key = id.clone();
    let now = Utc::now();
    let outcome = state
        .store
        .write(move |tx| Ok(suppressions::delete_suppression(tx, now, &key, &by)))
        .await??;
    match outcome {
        Deleted::Yes => {
            state.pipeline.reload_suppressions().await?;
            Ok(())
        }
        Deleted::NotFound => Err(ApiError::NotFound(format!("no suppression with id {id:?}"))),
        Deleted::PolicyOwned => Err(ApiError::FailedPrecondition(format!(
            "suppression {id:?} comes from the policy file; change it there"
        ))),
    }
}

/// Refreshes the per-suppression hit gauges in `/metrics` from the store
/// (active suppressions only, so the label set stays bounded).
pub async fn refresh_suppression_metrics(state: &AppState) -> Result<(), ApiError> {
    let list = list_suppressions(state, false).await?;
    state.metrics.suppression_hits.clear();
    for s in list {
        state
            .metrics
            .suppression_hits
            .get_or_create(&crate::metrics::SuppressionLabel {
                id: s.id,
                origin: s.origin,
            })
            .set(i64::try_from(s.hits).unwrap_or(i64::MAX));
    }
    Ok(())
}

/// The store answers a trivial read.
pub async fn ready(state: &AppState) -> Result<(), ApiError> {
    // The health connection: never queued behind slow queries.
    Ok(state.store.health().await?)
}
