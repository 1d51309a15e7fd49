//! The HTTP front of the query API, as one axum middleware ([`guard`]):
//!
//! 1. `/healthz` and `/readyz` are open (probes); `/metrics` too unless
//!    [`super::HttpPolicy::metrics_require_auth`];
//! 2. the `Host` header must name one of the allowed hosts, else 421 — a
//!    page on another site that rebinds its DNS name to our address still
//!    sends its own name;
//! 3. the web page and its script/style load without a token (they hold no
//!    data; the page asks for one);
//! 4. everything else needs a principal: 401 without one; `GET`/`HEAD` need
//!    [`Access::Read`], any other method [`Access::Write`] (403 otherwise);
//! 5. a write with a body must be `Content-Type: application/json` (else
//!    415): a cross-site form or `text/plain` fetch cannot send that without
//!    a CORS preflight, and no CORS header is ever sent.
//!
//! The principal is put in the request's extensions for the handlers.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{Access, AuthError};
use crate::state::AppState;

/// Paths open to anyone (health probes).
const OPEN: &[&str] = &["/healthz", "/readyz"];
/// The page and its assets: no data, no token needed.
const PAGE: &[&str] = &["/", "/app.js", "/style.css"];

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    let mut r = (
        status,
        Json(serde_json::json!({ "error": message, "code": code })),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"credtrail\""),
        );
    }
    r
}

/// The host name in a `Host` header or URI authority, without the port,
/// lower-cased; IPv6 literals without brackets.
pub fn host_name(authority: &str) -> Option<String> {
    let a = authority.trim();
    if a.is_empty() || a.contains(['/', '@', ' ']) {
        return None;
    }
    let host = if let Some(rest) = a.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        h
    } else {
        match a.split_once(':') {
            Some((h, p)) if is_port(p) => h,
            Some(_) => return None,
            None => a,
        }
    };
    (!host.is_empty()).then(|| host.trim_end_matches('.').to_ascii_lowercase())
}

fn is_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

/// Whether the request names an allowed host.
pub fn host_allowed(allowed: &[String], req: &Request) -> bool {
    if allowed.iter().any(|h| h == "*") {
        return true;
    }
    let authority = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    authority
        .as_deref()
        .and_then(host_name)
        .is_some_and(|h| allowed.iter().any(|a| a.eq_ignore_ascii_case(&h)))
}

/// Whether the request's media type is `application/json`.
fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The middleware; see the module documentation.
pub async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = state.auth.clone();
    let path = req.uri().path().to_owned();
    if OPEN.contains(&path.as_str()) || (path == "/metrics" && !auth.http.metrics_require_auth) {
        return next.run(req).await;
    }
    if !host_allowed(&auth.http.allowed_hosts, &req) {
        state.metrics.api_auth_refused("http", "host");
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected",
            "the Host header does not name this server; see --api-allowed-host".into(),
        );
    }
    if PAGE.contains(&path.as_str()) && req.method() == Method::GET {
        return next.run(req).await;
    }
    let (access, what) = if matches!(*req.method(), Method::GET | Method::HEAD) {
        (Access::Read, "read")
    } else {
        (Access::Write, "write")
    };
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let cert = req
        .extensions()
        .get::<super::PeerCert>()
        .map(|c| c.0.clone());
    let principal = match auth
        .check_with(
            authorization.as_deref(),
            cert.as_deref().map(Vec::as_slice),
            access,
            what,
        )
        .await
    {
        Ok(p) => p,
        Err(e) => {
            state.metrics.api_auth_refused("http", e.reason());
            tracing::debug!(path, reason = e.reason(), "query API request refused");
            let status = match e {
                AuthError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
                AuthError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            };
            return refuse(status, e.reason(), e.to_string());
        }
    };
    if matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH) && !is_json(&req) {
        state.metrics.api_auth_refused("http", "content_type");
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "writes must be sent as Content-Type: application/json".into(),
        );
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_parsed_strictly() {
        assert_eq!(host_name("localhost:8080").as_deref(), Some("localhost"));
        assert_eq!(host_name("LocalHost").as_deref(), Some("localhost"));
        assert_eq!(host_name("127.0.0.1:80").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name("[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(host_name("[::1]").as_deref(), Some("::1"));
        assert_eq!(host_name("evil.example.").as_deref(), Some("evil.example"));
        assert_eq!(host_name("a:b"), None);
        assert_eq!(host_name("[::1]x"), None);
        assert_eq!(host_name("user@localhost"), None);
        assert_eq!(host_name(""), None);
        assert_eq!(host_name(":80"), None);
    }
}
