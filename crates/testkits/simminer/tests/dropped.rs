//! A test that fails while a simulated Bitaxe mines must fail, not hang: dropping the runtime
//! (as a panicking `#[tokio::test]` does) waits for the miner's hashing thread.

use minebox_simminer::{MinerConfig, Report};
use std::io::{BufRead, BufReader};
use std::sync::atomic::AtomicBool;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

#[test]
fn a_miner_dropped_with_its_runtime_stops_hashing() {
    // A server that takes the connection and never answers: the miner waits for work with
    // its hashing thread started, as a Bitaxe on a box whose node is not ready.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("stratum+tcp://{}", server.local_addr().unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let report = Arc::new(Mutex::new(Report::default()));
    // Never set: the test "failed" before it could say stop.
    let stop = Arc::new(AtomicBool::new(false));
    let _miner = rt.spawn(minebox_simminer::run(MinerConfig::bitaxe(&url, "rig1"), report, stop));
    let (tx, rx) = mpsc::channel();
    let runtime = std::thread::spawn(move || {
        // The miner's task runs on this thread; it has started hashing once its three opening
        // requests (written in the same poll, before the thread starts) have arrived.
        let _connection = rt.block_on(async {
            let (conn, _) = tokio::task::spawn_blocking(move || server.accept().unwrap()).await.unwrap();
            let mut lines = BufReader::new(conn).lines();
            for _ in 0..3 {
                lines.next().unwrap().unwrap();
            }
            // Let the miner's task run past its opening write (it spawns the hashing thread).
            tokio::task::yield_now().await;
            lines
        });
        drop(rt);
        tx.send(()).unwrap();
    });
    // A bound only so that a regression fails with this message instead of hanging.
    rx.recv_timeout(Duration::from_secs(60))
        .expect("dropping the runtime waited for the miner's hashing thread: a failing test would hang");
    runtime.join().unwrap();
}
