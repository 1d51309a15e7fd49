//! GKE live: Pub/Sub push (`/v1/pubsub/gke`).
//!
//! A Cloud Logging sink routes the cluster's `k8s.io` audit entries to a
//! Pub/Sub topic; a push subscription POSTs each message here as
//! `{"message":{"data":"<base64 LogEntry JSON>","attributes":{…},"messageId":…,"publishTime":…},"subscription":…}`
//! with `Authorization: Bearer <OIDC token>` signed by Google for the
//! subscription's service account (verified by [`super::oidc`]).
//!
//! Answers: 200 acknowledges (stored, or the entry is refused on its own:
//! counted, logged, a redelivery could not make it readable); 401 without a
//! token, 403 for a token that fails verification, 413 over the body limit,
//! 400 for a body that is not a push envelope, 503 when the store is
//! unavailable: Pub/Sub redelivers non-2xx messages with back-off (and moves
//! them to the dead-letter topic if one is configured).

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::Deserialize;

use crate::audit::{InputFormat, ParseError, Parsed, parse_document};

use super::cloud::{NotStored, ParseRefused, body_error, json_reply, parse_counted, store_parsed};
use super::oidc::OidcError;
use super::webhook::{WebhookState, read_body};

pub const PATH: &str = "/v1/pubsub/gke";
const SOURCE: &str = "pubsub";

#[derive(Deserialize)]
struct Push {
    message: Message,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response {
    (status, format!("{}\n", msg.into())).into_response()
}

fn parse_push(body: &[u8]) -> Result<Parsed, String> {
    let push: Push =
        serde_json::from_slice(body).map_err(|e| format!("not a Pub/Sub push request: {e}"))?;
    let id = push.message.message_id.unwrap_or_default();
    let data = push
        .message
        .data
        .ok_or_else(|| format!("message {id:?} has no data"))?;
    let mut out = Parsed::default();
    match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
        Ok(entry) => {
            let mut p = parse_document(&entry, InputFormat::GkeCloudLogging);
            for e in &mut p.errors {
                e.location = format!("message {id:?} {}", e.location);
            }
            out.extend(p);
        }
        Err(e) => out.errors.push(ParseError {
            location: format!("message {id:?}"),
            reason: format!("data is not base64: {e}"),
        }),
    }
    Ok(out)
}

pub(crate) async fn handle(
    State(st): State<WebhookState>,
    method: Method,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let m = &st.app.metrics;
    if method != Method::POST {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST a Pub/Sub push message",
        );
    }
    let Some(verifier) = st.auth.pubsub() else {
        m.reject(SOURCE, "not_configured");
        return text(
            StatusCode::NOT_FOUND,
            "Pub/Sub push is not enabled on this aggregator (--pubsub-jwks-file)",
        );
    };
    let authz = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Err(e) = verifier.verify_header(authz) {
        m.reject(SOURCE, e.label());
        tracing::warn!(error = %e, "Pub/Sub push refused");
        let status = match e {
            OidcError::Missing => StatusCode::UNAUTHORIZED,
            _ => StatusCode::FORBIDDEN,
        };
        return text(status, format!("push refused: {e}"));
    }
    let bytes = match read_body(&st, body, SOURCE).await {
        Ok(b) => b,
        Err(e) => return body_error(&e, st.limit),
    };
    let parsed = match parse_counted(&st.app, SOURCE, move || parse_push(&bytes)).await {
        Ok(p) => p,
        Err(ParseRefused::Malformed(why)) => return text(StatusCode::BAD_REQUEST, why),
        Err(ParseRefused::ParserFailed) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the parser failed on this message; nothing was stored",
            );
        }
    };
    match store_parsed(&st.app, SOURCE, parsed).await {
        Ok(s) => json_reply(StatusCode::OK, s.json().to_string()),
        // One entry per message: acknowledge a refused one (counted), a
        // redelivery would be refused the same way.
        Err(NotStored::Unreadable(why)) => json_reply(
            StatusCode::OK,
            serde_json::json!({"accepted": 0, "refused": 1, "first_refusal": why}).to_string(),
        ),
        Err(NotStored::Store) => text(StatusCode::SERVICE_UNAVAILABLE, "not stored, retry later"),
    }
}
