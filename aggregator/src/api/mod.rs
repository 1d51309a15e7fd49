//! The query API: HTTP/JSON under `/api/v1/` (plus the web page, `/metrics`,
//! `/healthz`, `/readyz`) and the gRPC `QueryService`. Both call the same
//! operations in [`ops`], so they answer the same questions the same way.
//! Documented in `docs/API.md`.

pub mod context;
pub mod convert;
pub mod convert_inventory;
pub mod convert_triage;
pub mod export;
pub mod export_triage;
pub mod grpc;
pub mod http;
mod learned;
pub mod live;
pub mod ops;
pub mod params;
pub mod triage;
pub mod web;

use crate::pipeline::PipelineError;
use crate::store::StoreError;
use crate::store::query::{FilterError, QueryError};

/// Why an API call failed; each maps to one deliberate gRPC code and HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A bad filter, page token, parameter or body: the caller's fault.
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is well formed but the object's state forbids it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The store is busy or its task failed: retry later.
    #[error("{0}")]
    Unavailable(String),
    /// A stored row does not decode.
    #[error("{0}")]
    DataLoss(String),
}

impl ApiError {
    /// The message the caller sees. Server-side failures (unavailable, data
    /// loss) get a generic text: their detail (SQL, paths, internal errors) is
    /// logged here and never sent.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Unavailable(detail) => {
                tracing::error!(error = %detail, "API request failed: unavailable");
                "the store is unavailable; retry later".to_owned()
            }
            ApiError::DataLoss(detail) => {
                tracing::error!(error = %detail, "API request failed: stored data does not decode");
                "internal error: stored data could not be read (see the aggregator log)".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// Stable short name, used in JSON error bodies and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidArgument(_) => "invalid_argument",
            ApiError::NotFound(_) => "not_found",
            ApiError::FailedPrecondition(_) => "failed_precondition",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::DataLoss(_) => "data_loss",
        }
    }
}

impl From<FilterError> for ApiError {
    fn from(e: FilterError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

impl From<convert::ConvertError> for ApiError {
    fn from(e: convert::ConvertError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Filter(f) => f.into(),
            QueryError::Sql(_) => ApiError::Unavailable(e.to_string()),
            QueryError::Corrupt { .. } => ApiError::DataLoss(e.to_string()),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let msg = e.public_message();
        match e {
            ApiError::InvalidArgument(_) => tonic::Status::invalid_argument(msg),
            ApiError::NotFound(_) => tonic::Status::not_found(msg),
            ApiError::FailedPrecondition(_) => tonic::Status::failed_precondition(msg),
            ApiError::Unavailable(_) => tonic::Status::unavailable(msg),
            ApiError::DataLoss(_) => tonic::Status::data_loss(msg),
        }
    }
}

#[cfg(test)]
mod error_body_tests {
    use axum::response::IntoResponse as _;
    use http_body_util::BodyExt as _;

    use super::ApiError;

    const INTERNAL: &str = "no such table: alerts (/var/lib/credtrail/credtrail.db)";

    #[tokio::test]
    async fn server_side_errors_keep_their_detail_out_of_http_bodies() {
        for e in [
            ApiError::Unavailable(INTERNAL.into()),
            ApiError::DataLoss(INTERNAL.into()),
        ] {
            let code = e.code();
            let resp = e.into_response();
            assert!(resp.status().is_server_error());
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            let body = String::from_utf8_lossy(&body);
            assert!(
                !body.contains("no such table") && !body.contains("/var/lib"),
                "{body}"
            );
            assert!(body.contains(code), "{body}");
        }
        // The caller's own mistakes are still explained.
        let resp = ApiError::InvalidArgument("since: not a time".into()).into_response();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("since: not a time"));
    }

    #[test]
    fn server_side_errors_keep_their_detail_out_of_grpc_statuses() {
        for e in [
            ApiError::Unavailable(INTERNAL.into()),
            ApiError::DataLoss(INTERNAL.into()),
        ] {
            let s = tonic::Status::from(e);
            assert!(!s.message().contains("no such table"), "{}", s.message());
        }
    }
}
