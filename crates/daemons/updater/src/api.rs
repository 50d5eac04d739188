//! The local HTTP API (127.0.0.1 only) for the status page and the CLI.
//!
//! `GET /api/v1/update`, `GET /api/v1/update/history`, `POST /api/v1/update/check`,
//! `POST /api/v1/update/install` (the available update, or `{"url": ...}`; reboots now
//! unless `{"reboot": "window"}`), `POST /api/v1/update/upload?reboot=now|window` (the
//! bundle as `application/octet-stream`), `POST /api/v1/update/usb?reboot=now|window`,
//! `GET /healthz`. Installs answer 202 with the status as soon as they are queued (follow
//! them with `GET /api/v1/update`); with `?wait=true` they answer when done: 200 with the
//! status, or 422 with the error.

use crate::updater::{Command, Handle, Reboot, Source};
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use minebox_api::updater as routes;
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

pub fn router(handle: Handle) -> Router {
    Router::new()
        .route(minebox_api::HEALTHZ, get(|| async { "ok" }))
        .route(routes::STATUS, get(status))
        .route(routes::HISTORY, get(history))
        .route(routes::CHECK, post(check))
        .route(routes::INSTALL, post(install))
        .route(routes::UPLOAD, post(upload).layer(DefaultBodyLimit::disable()))
        .route(routes::USB, post(usb))
        .with_state(handle)
}

fn error(code: StatusCode, message: impl ToString) -> Response {
    (code, Json(json!({ "error": message.to_string() }))).into_response()
}

fn answer(r: Result<crate::Status, String>) -> Response {
    match r {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, e),
    }
}

async fn status(State(h): State<Handle>) -> Response {
    Json(h.status.borrow().clone()).into_response()
}

async fn history(State(h): State<Handle>) -> Response {
    Json(h.records.history()).into_response()
}

async fn check(State(h): State<Handle>) -> Response {
    answer(h.ask(|reply| Command::Check { reply }).await)
}

#[derive(Deserialize, Default)]
struct InstallRequest {
    url: Option<String>,
    reboot: Option<String>,
}

fn reboot_of(s: Option<&str>, default: Reboot) -> Result<Reboot, Box<Response>> {
    match s {
        None => Ok(default),
        Some("now") => Ok(Reboot::Now),
        Some("window") => Ok(Reboot::Window),
        Some(o) => Err(Box::new(error(StatusCode::BAD_REQUEST, format!("reboot={o:?}: use now or window")))),
    }
}

#[derive(Deserialize)]
struct WaitQuery {
    #[serde(default)]
    wait: bool,
}

/// Runs an install: waits for its outcome, or queues it and answers 202 at once (the status
/// page's requests are short; the install goes on in the worker either way).
async fn dispatch(h: &Handle, wait: bool, source: Source, reboot: Reboot) -> Response {
    if wait {
        return answer(h.ask(|reply| Command::Install { source, reboot, reply }).await);
    }
    let (reply, _outcome) = tokio::sync::oneshot::channel();
    match h.commands.try_send(Command::Install { source, reboot, reply }) {
        Ok(()) => (StatusCode::ACCEPTED, Json(h.status.borrow().clone())).into_response(),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "the updater is busy with other requests; try again"),
    }
}

async fn install(State(h): State<Handle>, Query(w): Query<WaitQuery>, body: axum::body::Bytes) -> Response {
    let req: InstallRequest = if body.is_empty() {
        InstallRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return error(StatusCode::BAD_REQUEST, e),
        }
    };
    let reboot = match reboot_of(req.reboot.as_deref(), Reboot::Now) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let source = match req.url {
        Some(u) => Source::Url(u),
        None => Source::Available,
    };
    dispatch(&h, w.wait, source, reboot).await
}

#[derive(Deserialize)]
struct RebootQuery {
    reboot: Option<String>,
    #[serde(default)]
    wait: bool,
}

async fn usb(State(h): State<Handle>, Query(q): Query<RebootQuery>) -> Response {
    let reboot = match reboot_of(q.reboot.as_deref(), Reboot::Window) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    dispatch(&h, q.wait, Source::Usb, reboot).await
}

/// Streams the body to the state directory (never more than `max_bundle_mib`), then
/// installs it like any other bundle.
async fn upload(State(h): State<Handle>, Query(q): Query<RebootQuery>, body: Body) -> Response {
    let reboot = match reboot_of(q.reboot.as_deref(), Reboot::Window) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let dir = h.config.state_dir.join("uploads");
    if let Err(e) = tokio::fs::create_dir_all(&dir).await {
        return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{}: {e}", dir.display()));
    }
    let path = dir.join("upload.raucb");
    let limit = h.config.max_bundle_bytes;
    let written = async {
        let mut f =
            tokio::fs::File::create(&path).await.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let mut stream = body.into_data_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| (StatusCode::BAD_REQUEST, format!("upload interrupted: {e}")))?;
            total += chunk.len() as u64;
            if total > limit {
                return Err((StatusCode::PAYLOAD_TOO_LARGE, format!("bundle larger than {limit} bytes: refused")));
            }
            f.write_all(&chunk).await.map_err(|e| (StatusCode::INSUFFICIENT_STORAGE, e.to_string()))?;
        }
        if total == 0 {
            return Err((StatusCode::BAD_REQUEST, "empty upload".to_string()));
        }
        f.sync_all().await.map_err(|e| (StatusCode::INSUFFICIENT_STORAGE, e.to_string()))?;
        Ok(())
    }
    .await;
    if let Err((code, message)) = written {
        let _ = tokio::fs::remove_file(&path).await;
        return error(code, message);
    }
    dispatch(&h, q.wait, Source::Upload(path), reboot).await
}
