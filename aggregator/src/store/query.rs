//! Read queries for the query API, against the store's schema (`schema.sql`).
//!
//! Plain functions over a `rusqlite::Connection`: the API layer runs them on a
//! blocking thread with a connection from the store. Nothing here writes,
//! except the suppression calls in [`suppressions`], which go through the
//! same table the detection reads.

pub mod alerts;
pub mod coverage;
pub mod filter;
pub mod inventory;
pub mod suppressions;

pub use alerts::{AlertPage, StoredAlert, get_alert, list_alerts};
pub use filter::{AlertFilter, FilterError, PageToken};

/// A read query failed.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The request itself is wrong (bad filter, bad token): the caller's fault.
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The database failed.
    #[error("store query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    /// A stored row does not decode (e.g. an alert's JSON).
    #[error("stored {what} {key:?} does not decode: {message}")]
    Corrupt {
        what: &'static str,
        key: String,
        message: String,
    },
}

/// Milliseconds to time, clamping values chrono cannot represent.
pub(crate) fn ms_to_time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// Parses a JSON text column, naming the row on failure.
pub(crate) fn json_column<T: serde::de::DeserializeOwned>(
    what: &'static str,
    key: &str,
    text: Option<&str>,
) -> Result<Option<T>, QueryError> {
    match text {
        None | Some("") => Ok(None),
        Some(t) => serde_json::from_str(t)
            .map(Some)
            .map_err(|e| QueryError::Corrupt {
                what,
                key: key.to_owned(),
                message: e.to_string(),
            }),
    }
}
