//! Event streams between MineBox services.
//!
//! Each service keeps its events in a bounded broadcast channel; [`sse`] serves it as
//! server-sent events (one JSON object per `data:` line). A reader too slow to keep up
//! skips events rather than making the service hold them. Every stream ends when its
//! service stops: an open event stream would otherwise hold the HTTP server's graceful
//! shutdown until systemd kills the service (found on the twin: a settings change restarts
//! the supervisor and the stratum server, whose event streams the status page follows).

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Serialize;
use std::convert::Infallible;
use std::future::Future;
use tokio::sync::broadcast;

/// The events of `tx` from now on, as a server-sent-events response that ends when `until`
/// completes (the service's shutdown signal).
pub fn sse<T: Serialize + Clone + Send + 'static>(
    tx: &broadcast::Sender<T>,
    until: impl Future<Output = ()> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = tx.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    let data = serde_json::to_string(&ev).expect("events serialize");
                    return Some((Ok(Event::default().data(data)), rx));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream.take_until(until)).keep_alive(KeepAlive::default())
}
