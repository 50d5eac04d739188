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

/// Descriptors this test process holds open.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// ESTABLISHED TCP connections (any process on this machine) whose far end is `port` on
/// localhost: the subscriber's connections to the publisher.
fn established_to(port: u16) -> usize {
    connections_to(port).len()
}

/// The local ports of those connections (a renewed connection has a new one).
fn connections_to(port: u16) -> Vec<u16> {
    let mut found = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st …; addresses are HEXIP:HEXPORT, st 01 = ESTABLISHED.
            let Some(rem) = cols.get(2) else { continue };
            let rem_port = rem.rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok());
            if rem_port == Some(port) && cols.get(3) == Some(&"01") {
                found.extend(cols[1].rsplit(':').next().and_then(|p| u16::from_str_radix(p, 16).ok()));
            }
        }
    }
    found
}

fn port_of(endpoint: &str) -> u16 {
    endpoint.rsplit(':').next().unwrap().parse().unwrap()
}

/// A node with no new blocks for a long time (regtest, testnet, a node syncing) must not
/// cost the stratum server a descriptor per quiet period: one connection, however long the
/// quiet, and blocks still arrive after it and after the node restarts.
#[tokio::test]
async fn a_quiet_publisher_costs_one_connection_however_long_it_stays_quiet() {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let port = port_of(&endpoint);
    let mut publisher = Publisher::start_at(&endpoint).await;
    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let period = Duration::from_millis(500);
    let sub = tokio::spawn({
        let endpoint = endpoint.clone();
        let stop = stop.clone();
        async move { hashblock::forward_with(&endpoint, tx, stop, period).await }
    });
    let a = "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5";
    deliver(&mut publisher, &mut rx, a).await;
    let (fds_before, conns_before) = (open_descriptors(), established_to(port));
    eprintln!("after the first block: {fds_before} descriptors, {conns_before} connections to the publisher");
    assert_eq!(conns_before, 1, "one subscription, one connection");
    let connection = connections_to(port);

    // Quiet for ten periods: nothing published.
    let mut most = (fds_before, conns_before);
    for i in 1..=10 {
        tokio::time::sleep(period).await;
        let now = (open_descriptors(), established_to(port));
        eprintln!("quiet period {i}: {} descriptors, {} connections to the publisher", now.0, now.1);
        most = (most.0.max(now.0), most.1.max(now.1));
    }
    assert_eq!(most.1, 1, "connections to a quiet publisher grew from 1 to {}", most.1);
    assert!(most.0 <= fds_before, "descriptors grew from {fds_before} to {} while the publisher was quiet", most.0);
    assert_eq!(connections_to(port), connection, "the quiet subscription kept its connection (probed, not renewed)");

    // The quiet connection still carries the next block.
    let b = "00000000000000000001b2a4ac8f6d8a1b0c8e5a42b39c1b6a2d7e8f90a1b2c3";
    deliver(&mut publisher, &mut rx, b).await;

    // The node restarts after the quiet: the next block arrives, and the old connection is gone.
    drop(publisher);
    let mut publisher = Publisher::start_at(&endpoint).await;
    let c = "000000000000000000027a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f";
    deliver(&mut publisher, &mut rx, c).await;
    assert_eq!(established_to(port), 1, "after the restart: one connection to the new publisher");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sub).await.expect("subscriber stops on shutdown").unwrap();
    // Shutdown closes the subscription too.
    for _ in 0..100 {
        if established_to(port) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(established_to(port), 0, "the subscription's connection is closed at shutdown");
}

/// Mines a block on `core` until the subscriber reports one it mined (blocks announced
/// before the subscription reached bitcoind are not delivered, as on a real box).
async fn mine_until_heard(core: &minebox_regtest::Core, rx: &mut mpsc::Receiver<bitcoin::BlockHash>) {
    let to = minebox_regtest::core_p2wpkh_address([7; 20]);
    let mut mined = Vec::new();
    for _ in 0..100 {
        mined.extend(core.generate_to_address(1, &to).await.expect("generatetoaddress"));
        if let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            assert!(mined.contains(&got), "heard {got}, which this test did not mine");
            return;
        }
    }
    panic!("no hashblock from Bitcoin Core for 100 blocks");
}

/// The same against Bitcoin Core's own -zmqpubhashblock: a quiet spell of ten probe periods
/// keeps one connection and no new descriptors; after a kill -9 and a restart of the node the
/// next block is heard again over a fresh connection.
#[tokio::test]
async fn bitcoin_core_quiet_then_killed_and_restarted_keeps_one_connection() {
    let mut core = minebox_regtest::Core::start().await.expect("Bitcoin Core (scripts/setup)");
    let endpoint = core.zmq_endpoint();
    let port = port_of(&endpoint);
    let (tx, mut rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let period = Duration::from_millis(500);
    let sub = tokio::spawn({
        let endpoint = endpoint.clone();
        let stop = stop.clone();
        async move { hashblock::forward_with(&endpoint, tx, stop, period).await }
    });
    mine_until_heard(&core, &mut rx).await;
    let (fds_before, connection) = (open_descriptors(), connections_to(port));
    assert_eq!(connection.len(), 1, "one subscription, one connection");
    for i in 1..=10 {
        tokio::time::sleep(period).await;
        let (fds, conns) = (open_descriptors(), connections_to(port));
        eprintln!("quiet period {i}: {fds} descriptors, {} connections to bitcoind's ZMQ port", conns.len());
        assert!(fds <= fds_before, "descriptors grew from {fds_before} to {fds} while bitcoind was quiet");
        assert_eq!(conns, connection, "the quiet subscription kept its one connection");
    }
    mine_until_heard(&core, &mut rx).await;

    core.kill().await;
    core.start_again().await.expect("Bitcoin Core starts again");
    while rx.try_recv().is_ok() {}
    mine_until_heard(&core, &mut rx).await;
    assert_eq!(established_to(port), 1, "after the node's restart: one connection");

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), sub).await.expect("subscriber stops on shutdown").unwrap();
}
