//! The writer and the reader of an event stream agree: what a service broadcasts through
//! `minebox-events` arrives at the typed client as the same value, across a restart of
//! the service.

use minebox_api::sse::{follow, Backoff};
use minebox_api::supervisor::{self, Event};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

async fn serve(
    listener: tokio::net::TcpListener,
    tx: broadcast::Sender<Event>,
    stop: tokio_util::sync::CancellationToken,
) {
    let until = stop.clone();
    let app = axum::Router::new().route(
        supervisor::EVENTS,
        axum::routing::get(move || {
            let (tx, stop) = (tx.clone(), stop.clone());
            async move { minebox_events::sse(&tx, stop.cancelled_owned()) }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(until.cancelled_owned()).await.unwrap();
}

#[tokio::test]
async fn events_arrive_typed_and_after_the_service_restarts() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel(16);
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(serve(listener, tx.clone(), stop.clone()));
    let (got_tx, mut got) = mpsc::channel(16);
    let url = format!("http://{addr}{}", supervisor::EVENTS);
    let backoff = Backoff { first: Duration::from_millis(50), max: Duration::from_millis(200) };
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        follow(&http, &url, backoff, |ev: Event| {
            let _ = got_tx.try_send(ev);
        })
        .await
    });
    let send_until_received = |tx: broadcast::Sender<Event>, ev: Event| async move {
        // The client may not have subscribed yet: send again until it has it.
        loop {
            let _ = tx.send(ev.clone());
            tokio::time::sleep(Duration::from_millis(20)).await;
            if tx.receiver_count() > 0 {
                let _ = tx.send(ev.clone());
                break;
            }
        }
    };
    let synced = Event::NodeSynced { coin: "btc".into(), height: 7 };
    tokio::time::timeout(Duration::from_secs(10), send_until_received(tx.clone(), synced.clone())).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), got.recv()).await.unwrap().unwrap(), synced);

    // The service stops and comes back on the same port.
    stop.cancel();
    server.await.unwrap();
    while got.try_recv().is_ok() {}
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (tx, _) = broadcast::channel(16);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve(listener, tx.clone(), stop.clone()));
    let started = Event::NodeStarted { coin: "btc".into(), pid: Some(42) };
    tokio::time::timeout(Duration::from_secs(10), send_until_received(tx.clone(), started.clone())).await.unwrap();
    assert_eq!(tokio::time::timeout(Duration::from_secs(10), got.recv()).await.unwrap().unwrap(), started);
    stop.cancel();
}
