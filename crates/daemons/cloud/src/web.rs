//! The account page (issue 16, point 7): one HTML file, one script, one stylesheet and an
//! icon, compiled into the binary: nothing is fetched from elsewhere, there is no build step.
//! The page speaks the JSON API like any client (docs/cloud.md, "The account page").
//!
//! Every answer here carries a strict Content-Security-Policy: scripts and styles only from
//! this origin (no inline script, no `eval`), requests only to this origin, no framing, forms
//! post nowhere. What users typed (device names) goes into the page as text, never as HTML.

use crate::error::ApiError;
use axum::extract::Path;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");
const ICON: &str = include_str!("web/icon.svg");

/// The page's policy: its own script, style and icon, its own API, nothing else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The headers of everything this module serves. `no-referrer`: the reset link's token is in
/// the address and must not travel in a `Referer`. `no-cache`: a new binary brings new assets.
fn headers(kind: &'static str) -> [(HeaderName, HeaderValue); 6] {
    [
        (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
        (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    ]
}

/// GET /, /reset (the mailed reset link) and, for browsers, /verify: the page. It reads the
/// path and the token from its address itself.
pub async fn page() -> Response {
    (headers("text/html; charset=utf-8"), INDEX).into_response()
}

/// GET /static/{asset}
pub async fn asset(Path(name): Path<String>) -> Response {
    let (body, kind) = match name.as_str() {
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "style.css" => (STYLE, "text/css; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => {
            return ApiError::NotFound("no such file: the page's files are app.js, style.css and icon.svg".into())
                .into_response()
        }
    };
    (headers(kind), body).into_response()
}
