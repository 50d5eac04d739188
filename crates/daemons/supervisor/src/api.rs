//! The supervisor's local API (127.0.0.1 only): nodes, start/stop, and an event stream the
//! stratum and status services follow.

use crate::event::Event;
use crate::keeper::{Command, NodeView, SharedView};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use minebox_api::supervisor as routes;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};

#[derive(Clone)]
pub struct ApiState {
    pub nodes: Arc<BTreeMap<String, (SharedView, mpsc::Sender<Command>)>>,
    pub events: broadcast::Sender<Event>,
    /// Cancelled when the service stops: ends the event streams it serves.
    pub shutdown: tokio_util::sync::CancellationToken,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(routes::NODES, get(list))
        .route(routes::NODE, get(one))
        .route(routes::NODE_START, post(start))
        .route(routes::NODE_STOP, post(stop))
        .route(routes::EVENTS, get(events))
        .route(minebox_api::HEALTHZ, get(|| async { "ok" }))
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
    queue(tx, Command::Start, &coin)
}

async fn stop(State(s): State<ApiState>, Path(coin): Path<String>) -> Result<StatusCode, (StatusCode, String)> {
    let (_, tx) = s.nodes.get(&coin).ok_or_else(|| unknown(&coin))?;
    queue(tx, Command::Stop, &coin)
}

async fn events(State(s): State<ApiState>) -> axum::response::Response {
    use axum::response::IntoResponse;
    minebox_events::sse(&s.events, s.shutdown.clone().cancelled_owned()).into_response()
}

/// Hands a command to the coin's keeper without waiting: while it is still carrying out
/// earlier ones (a node takes a while to stop), a full queue is a clear "busy", never a
/// request that hangs until the caller gives up.
fn queue(
    tx: &tokio::sync::mpsc::Sender<Command>,
    cmd: Command,
    coin: &str,
) -> Result<StatusCode, (StatusCode, String)> {
    use tokio::sync::mpsc::error::TrySendError;
    match tx.try_send(cmd) {
        Ok(()) => Ok(StatusCode::ACCEPTED),
        Err(TrySendError::Full(_)) => Err((
            StatusCode::CONFLICT,
            format!("the {coin} node is still carrying out earlier start/stop requests; try again in a moment"),
        )),
        Err(TrySendError::Closed(_)) => Err((StatusCode::SERVICE_UNAVAILABLE, "supervisor is stopping".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_keeper_answers_conflict_at_once() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        assert_eq!(queue(&tx, Command::Stop, "btc"), Ok(StatusCode::ACCEPTED));
        let (status, msg) = queue(&tx, Command::Start, "btc").unwrap_err();
        assert_eq!(status, StatusCode::CONFLICT);
        assert!(msg.contains("try again"), "{msg}");
        rx.close();
        while rx.try_recv().is_ok() {}
        assert_eq!(queue(&tx, Command::Start, "btc").unwrap_err().0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
