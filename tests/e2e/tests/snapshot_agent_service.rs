//! The agent's service mode (what its unit runs) over real HTTP, with a real nginx serving
//! a published tree. The supervisor it stops and starts nodes through is a stand-in (a test
//! double that records the requests): the real supervisor is the box's, and the system tests
//! (tests/system/run, test 8) run this service on the twin beside the real one.

mod support;

use axum::extract::{Path as UrlPath, State};
use minebox_snapshot::minisign::SecretKey;
use minebox_snapshot_agent::install;
use minebox_snapshot_agent::service::{router, Agent, CoinSource};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

type Seen = Arc<Mutex<Vec<String>>>;

/// The stand-in supervisor: answers every start/stop with 200 and remembers the order.
async fn stand_in_supervisor() -> (String, Seen) {
    async fn node_action(State(seen): State<Seen>, UrlPath((coin, action)): UrlPath<(String, String)>) -> &'static str {
        seen.lock().unwrap().push(format!("{action} {coin}"));
        "{}"
    }
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/api/v1/nodes/{coin}/{action}", axum::routing::post(node_action))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr.to_string(), seen)
}

struct World {
    dir: tempfile::TempDir,
    _nginx: Nginx,
    api: String,
    supervisor: Seen,
    http: reqwest::Client,
}

impl World {
    /// A `bch` snapshot published with `signer`; the agent pins `pinned`.
    async fn new(signer: &SecretKey, pinned: Vec<minebox_snapshot::minisign::PublicKey>, managed: bool) -> World {
        let dir = tempfile::tempdir().unwrap();
        make_datadir(&dir.path().join("source"), 2, 7);
        publish_tree(&dir.path().join("source"), &dir.path().join("tree"), signer, 1, 86_400);
        let nginx = Nginx::serve(&dir.path().join("tree"), None);
        let (supervisor_addr, supervisor) = stand_in_supervisor().await;
        let coins = vec![CoinSource {
            coin: "bch".into(),
            network: "regtest".into(),
            url: format!("http://127.0.0.1:{}", nginx.port),
            dest: dir.path().join("nodes/bch"),
            managed,
            node: None,
        }];
        let agent = Arc::new(Agent::new(coins, pinned, &supervisor_addr, true));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(agent)).await });
        World { dir, _nginx: nginx, api, supervisor, http: reqwest::Client::new() }
    }

    async fn list(&self) -> Value {
        let r = self.http.get(format!("{}/api/v1/snapshots", self.api)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["coins"][0].clone()
    }

    async fn install(&self, coin: &str) -> (u16, Value) {
        let r = self.http.post(format!("{}/api/v1/snapshots/{coin}/install", self.api)).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }
}

#[tokio::test]
async fn lists_installs_between_node_stop_and_start_and_refuses_a_second_install() {
    let key = SecretKey::generate();
    let w = World::new(&key, vec![key.public()], true).await;
    let listed = w.list().await;
    assert_eq!(listed["available"]["height"], 101, "{listed}");
    assert_eq!(listed["available"]["kind"], "datadir", "{listed}");
    assert!(listed["available"]["trust"].as_str().unwrap().contains("signature"), "{listed}");
    assert_eq!(listed["installable"], true);
    assert!(listed["installed"].is_null());

    let (code, body) = w.install("bch").await;
    assert_eq!(code, 202, "{body}");
    // One install at a time: the second request is refused while the first runs.
    let (code, body) = w.install("bch").await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("being installed"), "{body}");

    let mut listed = w.list().await;
    for _ in 0..600 {
        if !listed["installed"].is_null() && w.supervisor.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        listed = w.list().await;
    }
    assert_eq!(listed["installed"]["version"], 1, "{listed}");
    assert_eq!(*w.supervisor.lock().unwrap(), ["stop bch", "start bch"], "the node is stopped around the install");
    // Byte for byte what the publisher had.
    let dest = w.dir.path().join("nodes/bch");
    for f in ["blocks/blk00000.dat", "chainstate/000001.ldb"] {
        assert_eq!(std::fs::read(dest.join(f)).unwrap(), std::fs::read(w.dir.path().join("source").join(f)).unwrap());
    }
    assert!(install::installed(&dest).is_some());
    let (code, body) = w.install("doge").await;
    assert_eq!(code, 404, "{body}");
}

#[tokio::test]
async fn an_unknown_signer_is_listed_as_refused_and_an_external_node_is_never_touched() {
    let (publisher, pinned) = (SecretKey::generate(), SecretKey::generate());
    let w = World::new(&publisher, vec![pinned.public()], false).await;
    let listed = w.list().await;
    assert!(listed["available"].is_null(), "{listed}");
    assert!(listed["error"].as_str().unwrap().contains("not one of the pinned keys"), "{listed}");
    assert_eq!(listed["installable"], false);

    let (code, body) = w.install("bch").await;
    assert_eq!(code, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("external"), "{body}");
    assert!(w.supervisor.lock().unwrap().is_empty(), "an external node was stopped");
    assert!(!w.dir.path().join("nodes/bch").exists());
}
