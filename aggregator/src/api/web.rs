//! A small web page for people: alerts table with filters (triage status and
//! assignee too), live updates from the SSE stream, the detail drawer (facts,
//! activity from the source, effective permissions, credential inventory,
//! triage with history, "suppress alerts like this"), coverage panel, export
//! links. Plain HTML + JS + CSS, embedded in the binary (no build step); it
//! only calls the public `/api/v1/` endpoints. The script is one file for
//! the browser (`/app.js`) made of small source files, concatenated here in
//! dependency order (classic script, one scope). Tested in Chromium by
//! `aggregator/tests/it/web_browser.rs`.

use axum::http::header;
use axum::response::IntoResponse;

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = concat!(
    include_str!("web/core.js"),
    include_str!("web/alerts.js"),
    include_str!("web/triage.js"),
    include_str!("web/detail.js"),
    include_str!("web/panels.js"),
    include_str!("web/main.js"),
);
const STYLE: &str = include_str!("web/style.css");

/// Security headers for the page: no inline script, same-origin only.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; \
                   object-src 'none'";

pub async fn index() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        INDEX,
    )
}

pub async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        SCRIPT,
    )
}

pub async fn style() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        STYLE,
    )
}
