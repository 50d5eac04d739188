//! The supervisor's local API (127.0.0.1 only): nodes, start/stop, and an event stream the
//! stratum and status services follow.

use crate::event::Event;
use crate::keeper::{Command, NodeView, SharedView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

#[derive(Clone)]
pub struct ApiState {
    pub nodes: Arc<BTreeMap<String, (SharedView, mpsc::Sender<Command>)>>,
    pub events: broadcast::Sender<Event>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/nodes", get(list))
        .route("/api/v1/nodes/{coin}", get(one))
        .route("/api/v1/nodes/{coin}/start", post(start))
        .route("/api/v1/nodes/{coin}/stop", post(stop))
        .route("/api/v1/events", get(events))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

async fn list(State(s): State<ApiState>) -> Json<Vec<NodeView>> {
    Json(s.nodes.values().map(|(v, _)| v.lock().expect("view").clone()).collect())
}

fn unknown(coin: &str) -> (StatusCode, String) {
    (StatusCode::NOT_FOUND, format!("no coin {coin:?} in the settings"))
}

async fn one(State(s): State<ApiState>, Path(coin): Path<String>) -> Result<Json<NodeView>, (StatusCode, String)> {
    let (v, _) = s.nodes.get(&coin).ok_or_else(|| unknown(&coin))?;
    Ok(Json(v.lock().expect("view").clone()))
}

async fn start(State(s): State<ApiState>, Path(coin): Path<String>) -> Result<StatusCode, (StatusCode, String)> {
    let (_, tx) = s.nodes.get(&coin).ok_or_else(|| unknown(&coin))?;
    tx.send(Command::Start)
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "supervisor is stopping".to_string()))?;
    Ok(StatusCode::ACCEPTED)
}

async fn stop(State(s): State<ApiState>, Path(coin): Path<String>) -> Result<StatusCode, (StatusCode, String)> {
    let (_, tx) = s.nodes.get(&coin).ok_or_else(|| unknown(&coin))?;
    tx.send(Command::Stop)
        .await
        .map_err(|_| (StatusCode::SERVICE_UNAVAILABLE, "supervisor is stopping".to_string()))?;
    Ok(StatusCode::ACCEPTED)
}

async fn events(State(s): State<ApiState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    minebox_events::sse(&s.events).into_response()
}
