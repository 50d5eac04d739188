//! Event streams between MineBox services.
//!
//! Each service keeps its events in a bounded broadcast channel; [`sse`] serves it as
//! server-sent events (one JSON object per `data:` line). A reader too slow to keep up
//! skips events rather than making the service hold them.

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use std::convert::Infallible;
use tokio::sync::broadcast;

/// The events of `tx` from now on, as a server-sent-events response.
pub fn sse<T: Serialize + Clone + Send + 'static>(
    tx: &broadcast::Sender<T>,
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
    Sse::new(stream).keep_alive(KeepAlive::default())
}
