//! The assumeutxo handoff. Bitcoin Core cannot be installed here and bcoin has no
//! assumeutxo, so this uses a TEST DOUBLE of bitcoind's JSON-RPC (`loadtxoutset`,
//! `getchainstates`), answering as Bitcoin Core 28 documents; the real node is exercised on
//! the image. The file transfer itself is the real agent against real nginx (install.rs).

use axum::extract::State;
use axum::Json;
use minebox_node_rpc::{Auth, NodeClient};
use minebox_snapshot_agent::utxo::{self, UtxoError};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct FakeBitcoind {
    calls: Mutex<Vec<String>>,
    headers_synced: bool,
}

async fn rpc(State(s): State<Arc<FakeBitcoind>>, Json(req): Json<Value>) -> Json<Value> {
    let method = req["method"].as_str().unwrap_or("").to_string();
    let n = {
        let mut calls = s.calls.lock().unwrap();
        calls.push(method.clone());
        calls.iter().filter(|m| **m == "getchainstates").count()
    };
    let id = req["id"].clone();
    Json(match method.as_str() {
        "loadtxoutset" if !s.headers_synced => {
            json!({"id": id, "result": null, "error": {"code": -32603, "message": "Unable to load UTXO snapshot: The base block header (0000...) must appear in the headers chain. Make sure all headers are syncing, and call loadtxoutset again."}})
        }
        "loadtxoutset" => {
            let path = req["params"][0].as_str().unwrap();
            if std::fs::read(path).unwrap().starts_with(b"good") {
                json!({"id": id, "result": {"coins_loaded": 176948713, "tip_hash": "00000000000000000001d0c1", "base_height": 840000, "path": path}, "error": null})
            } else {
                json!({"id": id, "result": null, "error": {"code": -32603, "message": "Unable to load UTXO snapshot: assumeutxo block hash in snapshot metadata not recognized"}})
            }
        }
        "getchainstates" if n < 2 => json!({"id": id, "error": null, "result": {"headers": 870000, "chainstates": [
            {"blocks": 120000, "validated": false},
            {"blocks": 840100, "snapshot_blockhash": "00000000000000000001d0c1", "validated": false}]}}),
        "getchainstates" => json!({"id": id, "error": null, "result": {"headers": 870000, "chainstates": [
            {"blocks": 869990, "snapshot_blockhash": "00000000000000000001d0c1", "validated": true}]}}),
        _ => json!({"id": id, "result": null, "error": {"code": -32601, "message": "Method not found"}}),
    })
}

async fn fake(headers_synced: bool) -> (NodeClient, Arc<FakeBitcoind>) {
    let state = Arc::new(FakeBitcoind { headers_synced, ..Default::default() });
    let app = axum::Router::new().route("/", axum::routing::post(rpc)).with_state(state.clone());
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (NodeClient::new(&format!("http://{addr}/"), Auth::UserPass { user: "u".into(), pass: "p".into() }).unwrap(), state)
}

#[tokio::test]
async fn a_utxo_file_is_handed_over_and_background_validation_followed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("utxo.dat");
    std::fs::write(&file, b"good utxo set").unwrap();
    let (node, _) = fake(true).await;
    let r = utxo::load(&node, &file).await.unwrap();
    assert_eq!(r["base_height"], 840000);
    let v = utxo::validation(&node).await.unwrap();
    assert_eq!(v.snapshot_tip, Some(840100));
    assert_eq!(v.background_height, Some(120000));
    assert!(!v.fully_validated);
    let v = utxo::validation(&node).await.unwrap();
    assert!(v.fully_validated);
}

#[tokio::test]
async fn a_set_the_node_does_not_recognize_and_missing_headers_are_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("utxo.dat");
    std::fs::write(&file, b"forged utxo set").unwrap();
    let (node, _) = fake(true).await;
    let e = utxo::load(&node, &file).await.unwrap_err();
    assert!(matches!(e, UtxoError::Refused(_)), "{e}");
    assert!(e.to_string().contains("compiled into Bitcoin Core"));
    let (node, _) = fake(false).await;
    let e = utxo::load(&node, &file).await.unwrap_err();
    assert!(matches!(e, UtxoError::HeadersNotSynced(_)), "{e}");
}
