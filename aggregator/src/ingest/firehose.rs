//! EKS live: Amazon Data Firehose HTTP endpoint delivery (`/v1/firehose/eks`).
//!
//! Request contract (AWS "HTTP endpoint delivery request and response
//! specifications", protocol version 1.0): `POST` with
//! `X-Amz-Firehose-Request-Id`, `X-Amz-Firehose-Access-Key` (the key
//! configured on the stream, compared here in constant time with the keys of
//! `--firehose-access-key-file`), optional `X-Amz-Firehose-Common-Attributes`,
//! `Content-Encoding: gzip` when the stream compresses requests, and the body
//! `{"requestId":…,"timestamp":<ms>,"records":[{"data":"<base64>"}]}`. Each
//! record is one CloudWatch Logs subscription payload (gzip) from the EKS log
//! group, read by [`crate::audit::eks`].
//!
//! Response contract: `Content-Type: application/json`, body
//! `{"requestId":…,"timestamp":<ms>}` with 200 once stored, and
//! `{"requestId":…,"timestamp":<ms>,"errorMessage":…}` otherwise. Firehose
//! retries every non-200 answer until the stream's retry duration ends, then
//! writes the batch to its S3 backup, so:
//! - 401 (no key) / 403 (wrong key), 413 (over the body limit), 400 (not a
//!   Firehose request: bad JSON, a record's base64, or nothing readable),
//!   503 (store unavailable) are retried, then end in the S3 backup where
//!   nothing is lost;
//! - records refused one by one (bad base64, gzip bomb, malformed audit
//!   event) while others in the request are good are counted and logged and
//!   the rest stored with 200: a retry could not make them readable.
//!
//! Decompression is bounded per request: the body and all of its records
//! together inflate to at most [`MAX_INFLATED_BYTES`].

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;

use crate::audit::inflate::{MAX_INFLATED_BYTES, gunzip, is_gzip};
use crate::audit::{ParseError, Parsed};

use super::cloud::{NotStored, ParseRefused, json_reply, parse_counted, store_parsed};
use super::webhook::{WebhookState, read_body};

pub const PATH: &str = "/v1/firehose/eks";
const SOURCE: &str = "firehose";
const REQUEST_ID: &str = "x-amz-firehose-request-id";
const ACCESS_KEY: &str = "x-amz-firehose-access-key";
/// Firehose sends at most 4096 bytes of key; longer is not Firehose.
const MAX_KEY_BYTES: usize = 4096;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    request_id: Option<String>,
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    data: String,
}

fn reply(request_id: &str, status: StatusCode, error: Option<String>) -> Response {
    let ts = chrono::Utc::now().timestamp_millis();
    let body = match error {
        None => serde_json::json!({"requestId": request_id, "timestamp": ts}),
        Some(e) => serde_json::json!({"requestId": request_id, "timestamp": ts, "errorMessage": e}),
    };
    json_reply(status, body.to_string())
}

/// The request id to echo: printable ASCII, at most 128 bytes.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|s| s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("")
        .to_owned()
}

/// Reads the records into events; `Err` when the request is not a Firehose
/// delivery at all.
fn parse_request(body: &[u8], gzipped: bool) -> Result<Parsed, String> {
    let mut budget = MAX_INFLATED_BYTES;
    let inflated;
    let body = if gzipped || is_gzip(body) {
        inflated = gunzip(body, budget).map_err(|e| format!("request body: {e}"))?;
        budget -= inflated.len();
        &inflated[..]
    } else {
        body
    };
    let env: Envelope = serde_json::from_slice(body)
        .map_err(|e| format!("not a Firehose HTTP endpoint request: {e}"))?;
    let _ = env.request_id;
    let mut out = Parsed::default();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (i, r) in env.records.iter().enumerate() {
        let loc = format!("records[{i}] ");
        let raw = match b64.decode(r.data.trim()) {
            Ok(b) => b,
            Err(e) => {
                out.errors.push(ParseError::new(
                    format!("records[{i}]"),
                    format!("data is not base64: {e}"),
                ));
                continue;
            }
        };
        let plain = if is_gzip(&raw) {
            match gunzip(&raw, budget) {
                Ok(p) => p,
                Err(e) => {
                    out.errors
                        .push(ParseError::new(format!("records[{i}]"), e.to_string()));
                    continue;
                }
            }
        } else {
            raw
        };
        budget = budget.saturating_sub(plain.len());
        crate::audit::eks::parse_into(&mut out, &plain, &loc);
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
    let rid = request_id(&headers);
    if method != Method::POST {
        return reply(
            &rid,
            StatusCode::METHOD_NOT_ALLOWED,
            Some("POST a Firehose HTTP endpoint delivery".to_owned()),
        );
    }
    if !st.auth.firehose_configured() {
        m.reject(SOURCE, "not_configured");
        return reply(
            &rid,
            StatusCode::NOT_FOUND,
            Some(
                "Firehose delivery is not enabled on this aggregator (--firehose-access-key-file)"
                    .to_owned(),
            ),
        );
    }
    let key = headers.get(ACCESS_KEY).map(|v| v.as_bytes());
    match key {
        None => {
            m.reject(SOURCE, "unauthenticated");
            return reply(
                &rid,
                StatusCode::UNAUTHORIZED,
                Some("no X-Amz-Firehose-Access-Key".to_owned()),
            );
        }
        Some(k) => {
            let ok = k.len() <= MAX_KEY_BYTES
                && std::str::from_utf8(k).is_ok_and(|k| st.auth.firehose_key_ok(k.trim()));
            if !ok {
                m.reject(SOURCE, "forbidden_key");
                return reply(
                    &rid,
                    StatusCode::FORBIDDEN,
                    Some("the access key is not accepted".to_owned()),
                );
            }
        }
    }
    let gzipped = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let bytes = match read_body(&st, body, SOURCE).await {
        Ok(b) => b,
        Err(e) => return reply(&rid, e.status(), Some(e.message(st.limit))),
    };
    let parsed = match parse_counted(&st.app, SOURCE, move || parse_request(&bytes, gzipped)).await
    {
        Ok(p) => p,
        Err(ParseRefused::Malformed(why)) => {
            return reply(&rid, StatusCode::BAD_REQUEST, Some(why));
        }
        Err(ParseRefused::ParserFailed) => {
            return reply(
                &rid,
                StatusCode::INTERNAL_SERVER_ERROR,
                Some("the parser failed on this request; nothing was stored".to_owned()),
            );
        }
    };
    match store_parsed(&st.app, SOURCE, parsed).await {
        Ok(s) => {
            if s.refused > 0 {
                tracing::warn!(request_id = %rid, refused = s.refused, "Firehose request stored with refused records");
            }
            reply(&rid, StatusCode::OK, None)
        }
        Err(NotStored::Unreadable(why)) => reply(
            &rid,
            StatusCode::BAD_REQUEST,
            Some(format!("nothing readable: {why}")),
        ),
        Err(NotStored::Store) => reply(
            &rid,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("not stored, retry later".to_owned()),
        ),
    }
}
