//! The page itself: one HTML file, one script, one stylesheet, compiled into the binary so
//! the box works with no internet and no files outside it.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("web/index.html");
const SCRIPT: &str = include_str!("web/app.js");
const STYLE: &str = include_str!("web/style.css");
const ICON: &str = include_str!("web/icon.svg");

pub async fn asset(uri: Uri) -> Response {
    let (body, kind) = match uri.path() {
        "/" | "/index.html" => (INDEX, "text/html; charset=utf-8"),
        "/app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "/style.css" => (STYLE, "text/css; charset=utf-8"),
        "/icon.svg" => (ICON, "image/svg+xml"),
        p if p.starts_with("/api/") => {
            return (
                StatusCode::NOT_FOUND,
                axum::Json(serde_json::json!({"error": "no such API endpoint; see /api/v1/openapi.json"})),
            )
                .into_response()
        }
        _ => return (StatusCode::NOT_FOUND, "not found").into_response(),
    };
    // A new binary brings new assets: revalidate every load (they are small and local).
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
