//! The hashblock subscriber against a real libzmq publisher (pyzmq), framed like bitcoind.

use minebox_node_rpc::hashblock;
use minebox_regtest::ZmqPublisher as Publisher;
use minebox_test_support::free_port;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Publishes until the subscriber has seen `hash` (a PUB socket drops messages sent
/// before the subscription reaches it, as with bitcoind).
async fn deliver(p: &mut Publisher, rx: &mut mpsc::Receiver<bitcoin::BlockHash>, hash: &str) {
    for _ in 0..200 {
        p.publish(hash).await;
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            assert_eq!(got.to_string(), hash);
            return;
        }
    }
    panic!("hashblock {hash} never arrived");
}

#[tokio::test]
async fn receives_bitcoind_hashblock_messages_and_reconnects() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let mut publisher = Publisher::start_at(&endpoint).await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let sub = tokio::spawn({
        let endpoint = endpoint.clone();
        let stop = stop.clone();
        async move { hashblock::forward_with(&endpoint, tx, stop, Duration::from_secs(1)).await }
    });
    let a = "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5";
    deliver(&mut publisher, &mut rx, a).await;

    // The node restarts: the subscriber reconnects by itself.
    drop(publisher);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut publisher = Publisher::start_at(&endpoint).await;
    let b = "00000000000000000001b2a4ac8f6d8a1b0c8e5a42b39c1b6a2d7e8f90a1b2c3";
    deliver(&mut publisher, &mut rx, b).await;

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sub).await.expect("subscriber stops on shutdown").unwrap();
}
