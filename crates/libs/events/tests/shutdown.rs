//! A service with a reader on its event stream still stops when asked: the stream ends and
//! the HTTP server's graceful shutdown completes (before, it waited for the reader forever
//! and systemd had to kill the service).

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn a_followed_event_stream_ends_when_the_service_stops() {
    let (tx, _) = broadcast::channel::<serde_json::Value>(16);
    let stop = CancellationToken::new();
    let (tx2, stop2) = (tx.clone(), stop.clone());
    let app = axum::Router::new().route(
        "/events",
        axum::routing::get(move || {
            let (tx, stop) = (tx2.clone(), stop2.clone());
            async move { minebox_events::sse(&tx, stop.cancelled_owned()) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop3 = stop.clone();
    let server =
        tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop3.cancelled_owned()).await });

    // A reader, as the status page follows the stratum server: it reads one event, then waits.
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    reader.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("\"height\":1") {
        tx.send(serde_json::json!({"height": 1})).ok();
        let n = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut buf)).await.unwrap().unwrap();
        seen.extend_from_slice(&buf[..n]);
    }

    stop.cancel();
    // A bound against a hang (the bug), not a timing assertion.
    let done = tokio::time::timeout(Duration::from_secs(60), server).await;
    assert!(done.is_ok(), "the server waited for its event-stream reader instead of stopping");
    // The reader sees its stream end (the chunked body's last chunk, then the close).
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), reader.read_to_end(&mut rest)).await;
    assert!(
        String::from_utf8_lossy(&rest).contains("0\r\n\r\n"),
        "no end of stream: {:?}",
        String::from_utf8_lossy(&rest)
    );
}
