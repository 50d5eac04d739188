//! Issue 17 points 4 and 5, the status page's side, over real HTTP against the real service
//! and its users database: users' payout addresses written to the payees file the stratum
//! server reads (checked with the stratum server's own reader), the pool configuration an
//! admin versions with who and when, and the Pool panel's view of the stratum server.
//!
//! The panel's stratum side runs against `StratumDouble`, a test double of the stratum API
//! (written while the stratum server did not serve pool mode's routes yet): first as a server
//! without them answers (404, which the page must show as "pool mode not running"), then
//! serving the contract's types (`minebox_api::stratum::PoolStatus`, `PoolPayout`) to check
//! what each role is shown. The same view against the real stratum server, with blocks mined
//! on its pool port: tests/e2e/tests/status_pool.rs (a daemon never depends on another).

use minebox_api::stratum::{PoolPayee, PoolPayout, PoolStatus};
use minebox_settings::payees::{Payees, PayeesFile};
mod common;

use common::{error, json_of, start, Page, ADDR};
use minebox_test_support::free_port;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
const ADDR2: &str = "bcrt1q6rhpng9evdsfnn833a4f4vej0asu6dk5srld6x";
const MAINNET: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

struct Browser {
    c: reqwest::Client,
    csrf: String,
    base: String,
}

impl Browser {
    async fn sign_in(p: &Page, path: &str, user: &str) -> Browser {
        let c = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let (s, v) = json_of(
            c.post(format!("{}/api/v1/auth/{path}", p.base)).json(&json!({"user": user, "password": "long enough"})),
        )
        .await;
        assert!(s.is_success(), "{user}: {s} {v}");
        Browser { c, csrf: v["csrf_token"].as_str().unwrap().into(), base: p.base.clone() }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.c.get(format!("{}{path}", self.base))).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        json_of(self.c.request(method, format!("{}{path}", self.base)).header("X-CSRF-Token", &self.csrf).json(&body))
            .await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::PUT, path, body).await
    }
}

/// The payees file as the stratum server reads it, and as written.
fn payees(dir: &Path) -> (Payees, PayeesFile) {
    let settings =
        minebox_settings::Settings::load(Some(&dir.join("minebox.toml")), None, &minebox_coin::Registry::embedded())
            .unwrap();
    let path = Payees::path_beside(&dir.join("minebox.toml"));
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    (Payees::load(&path, &settings).unwrap(), toml::from_str(&text).unwrap())
}

fn users_in(file: &PayeesFile) -> Vec<(String, u32)> {
    file.coins.get("btc").map(|v| v.iter().map(|e| (e.user.clone(), e.id)).collect()).unwrap_or_default()
}

#[tokio::test]
async fn payout_addresses_reach_the_payees_file_with_ids_that_stay() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("127.0.0.1:{}", free_port());
    let p = start(dir.path(), Some(&dead)).await;
    let admin = Browser::sign_in(&p, "setup", "alice").await;
    for (name, role) in [("olga", "operator"), ("vic", "viewer")] {
        let (s, v) = admin
            .send(
                reqwest::Method::POST,
                "/api/v1/users",
                json!({"name": name, "role": role, "password": "long enough"}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
    }
    let olga = Browser::sign_in(&p, "login", "olga").await;
    let vic = Browser::sign_in(&p, "login", "vic").await;

    // A viewer is a member who mines: they register their own address.
    let (s, v) = vic.put("/api/v1/pool/addresses/btc", json!({"address": ADDR})).await;
    assert_eq!(s, 200, "{v}");
    let vic_id = v["id"].as_i64().unwrap();
    let (s, v) = olga.put("/api/v1/pool/addresses/btc", json!({"address": ADDR2})).await;
    assert_eq!(s, 200, "{v}");
    let olga_id = v["id"].as_i64().unwrap();
    let (read, file) = payees(dir.path());
    assert_eq!(users_in(&file), vec![("vic".to_string(), vic_id as u32), ("olga".to_string(), olga_id as u32)]);
    // The stratum server's own reader takes it: a miner authorizing as vic.rig1 pays vic.
    let (payee, worker) = read.login("btc", "vic.rig1").unwrap();
    assert_eq!((payee.id as i64, payee.payout.to_string().as_str(), worker), (vic_id, ADDR, "rig1"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(Payees::path_beside(&dir.path().join("minebox.toml"))).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, minebox_settings::payees::MODE, "the stratum server reads it through the group");

    // Bad input: an address of another network, a coin the box does not mine.
    let (s, v) = vic.put("/api/v1/pool/addresses/btc", json!({"address": MAINNET})).await;
    assert!(s == 422 && error(&v).contains("Bitcoin mainnet address") && error(&v).contains("bcrt1"), "{s} {v}");
    let (s, v) = vic.put("/api/v1/pool/addresses/bch", json!({"address": ADDR})).await;
    assert!(s == 422 && error(&v).contains("does not mine \"bch\""), "{s} {v}");
    let (s, v) = vic.put("/api/v1/pool/addresses/btc", json!({"address": "not an address"})).await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(payees(dir.path()).0.login("btc", "vic.x").unwrap().0.payout.to_string(), ADDR, "nothing changed");

    // A changed address keeps the id the pool keeps vic's window under.
    let (_, v) = vic.put("/api/v1/pool/addresses/btc", json!({"address": ADDR2})).await;
    assert_eq!(v["id"].as_i64(), Some(vic_id));

    // Each sees their own address; the admin sees everyone's.
    let (_, v) = vic.get("/api/v1/pool").await;
    let users: Vec<&str> = v["addresses"].as_array().unwrap().iter().map(|a| a["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["vic"]);
    assert_eq!(v["coins"][0]["note"].as_str(), Some("pool mode is off for this coin"));
    let (_, v) = admin.get("/api/v1/pool").await;
    assert_eq!(v["addresses"].as_array().unwrap().len(), 2, "{v}");

    // A disabled user is dropped from the file, and back with the same id when enabled.
    let (s, _) = admin.send(reqwest::Method::PATCH, "/api/v1/users/vic", json!({"disabled": true})).await;
    assert_eq!(s, 200);
    assert_eq!(users_in(&payees(dir.path()).1), vec![("olga".to_string(), olga_id as u32)]);
    assert!(payees(dir.path()).0.login("btc", "vic.rig1").is_err(), "a miner naming vic is refused");
    admin.send(reqwest::Method::PATCH, "/api/v1/users/vic", json!({"disabled": false})).await;
    let vic = Browser::sign_in(&p, "login", "vic").await; // disabling signed vic out
    assert!(users_in(&payees(dir.path()).1).contains(&("vic".to_string(), vic_id as u32)));

    // A removed user's id is never given again.
    let (s, _) = admin.send(reqwest::Method::DELETE, "/api/v1/users/olga", Value::Null).await;
    assert_eq!(s, 200);
    assert_eq!(users_in(&payees(dir.path()).1), vec![("vic".to_string(), vic_id as u32)]);
    let (s, v) = admin.put("/api/v1/pool/addresses/btc", json!({"address": ADDR})).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["id"].as_i64().unwrap() > olga_id, "{v}");

    // Removing one's address ends one's payouts; the audit log has each change with who.
    let (s, _) = vic.send(reqwest::Method::DELETE, "/api/v1/pool/addresses/btc", Value::Null).await;
    assert_eq!(s, 200);
    let (s, _) = vic.send(reqwest::Method::DELETE, "/api/v1/pool/addresses/btc", Value::Null).await;
    assert_eq!(s, 404, "nothing left to remove");
    assert_eq!(users_in(&payees(dir.path()).1), vec![("alice".to_string(), v["id"].as_i64().unwrap() as u32)]);
    let (_, log) = admin.get("/api/v1/audit").await;
    let noted = log.as_array().unwrap().iter().any(|e| e["who"] == "vic" && e["action"] == "payout address removed");
    assert!(noted, "{log}");

    // A lost file is written again from the table at the next start.
    drop(p);
    std::fs::remove_file(Payees::path_beside(&dir.path().join("minebox.toml"))).unwrap();
    let _p = start(dir.path(), Some(&dead)).await;
    assert_eq!(users_in(&payees(dir.path()).1).len(), 1);
}

/// A test double of the stratum server's API (the real one does not serve pool mode yet):
/// 404 for the pool routes, as today's server answers, until `serving`; then one coin's
/// window and payouts for two users, `user=` honoured as the contract says.
struct StratumDouble {
    addr: String,
    serving: Arc<AtomicBool>,
}

async fn stratum_double() -> StratumDouble {
    use axum::extract::{Query, State};
    use axum::response::IntoResponse;
    let serving = Arc::new(AtomicBool::new(false));
    async fn pool(State(on): State<Arc<AtomicBool>>) -> axum::response::Response {
        if !on.load(Ordering::Relaxed) {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such endpoint"}))).into_response();
        }
        let payee = |user: &str, fraction: f64| PoolPayee {
            user: user.into(),
            address: ADDR.into(),
            work: fraction * 1000.0,
            fraction,
            carry_sats: 0,
        };
        let status = PoolStatus {
            coin: "btc".into(),
            network: "regtest".into(),
            config_version: 1,
            payees: vec![payee("alice", 0.75), payee("vic", 0.25)],
            ..Default::default()
        };
        axum::Json(vec![status]).into_response()
    }
    async fn payouts(
        State(on): State<Arc<AtomicBool>>,
        Query(q): Query<std::collections::HashMap<String, String>>,
    ) -> axum::response::Response {
        if !on.load(Ordering::Relaxed) {
            return (StatusCode::NOT_FOUND, axum::Json(json!({"error": "no such endpoint"}))).into_response();
        }
        let rows: Vec<PoolPayout> = ["alice", "vic"]
            .into_iter()
            .filter(|u| q.get("user").is_none_or(|w| w == u))
            .map(|u| PoolPayout {
                coin: "btc".into(),
                height: 101,
                user: u.into(),
                amount_sats: 1_000,
                config_version: 1,
                state: "pending".into(),
                ..Default::default()
            })
            .collect();
        axum::Json(rows).into_response()
    }
    let router = axum::Router::new()
        .route(minebox_api::stratum::POOL, axum::routing::get(pool))
        .route(minebox_api::stratum::POOL_PAYOUTS, axum::routing::get(payouts))
        .with_state(serving.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, router).await });
    StratumDouble { addr, serving }
}

#[tokio::test]
async fn only_an_admin_changes_the_pool_configuration_and_each_change_is_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let stratum = stratum_double().await;
    let p = start(dir.path(), Some(&stratum.addr)).await;
    let admin = Browser::sign_in(&p, "setup", "alice").await;
    for (name, role) in [("olga", "operator"), ("vic", "viewer")] {
        admin
            .send(
                reqwest::Method::POST,
                "/api/v1/users",
                json!({"name": name, "role": role, "password": "long enough"}),
            )
            .await;
    }
    let olga = Browser::sign_in(&p, "login", "olga").await;
    let vic = Browser::sign_in(&p, "login", "vic").await;
    let port = free_port();
    let on = json!({"enabled": true, "port": port, "fee_bps": 100, "fee_address": ADDR});

    // Operators and viewers may not change what decides payouts.
    for b in [&olga, &vic] {
        let (s, v) = b.put("/api/v1/pool/config/btc", on.clone()).await;
        assert!(s == 403 && error(&v).contains("needs admin"), "{s} {v}");
    }
    let settings_file = dir.path().join("minebox.toml");
    assert!(!std::fs::read_to_string(&settings_file).unwrap().contains("pool"));

    let (s, v) = admin.put("/api/v1/pool/config/btc", on.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["config_version"], 1);
    let (s, v) = admin
        .put("/api/v1/pool/config/btc", json!({"enabled": true, "port": port, "fee_bps": 50, "fee_address": ADDR}))
        .await;
    assert_eq!((s, v["config_version"].as_u64()), (StatusCode::OK, Some(2)), "{v}");
    // The settings as every service reads them: pool mode on, version 2, the owner's comment kept.
    let text = std::fs::read_to_string(&settings_file).unwrap();
    assert!(text.contains("# the owner's comment"), "{text}");
    let settings =
        minebox_settings::Settings::load(Some(&settings_file), None, &minebox_coin::Registry::embedded()).unwrap();
    let pool = settings.coins["btc"].pool.clone().expect("pool mode on");
    assert_eq!((pool.port, pool.fee.map(|f| f.bps), pool.config_version), (port, Some(50), 2));

    // Bad values are refused in the settings' words, and nothing is written or recorded.
    for (bad, words) in [
        (json!({"enabled": true, "port": port, "fee_bps": 5000, "fee_address": ADDR}), "pool.fee_bps"),
        (json!({"enabled": true, "port": port, "fee_bps": 10, "fee_address": MAINNET}), "Bitcoin mainnet address"),
        (json!({"enabled": true}), "needs a port"),
        (json!({"enabled": true, "port": port, "window_factor": 0}), "pool.window_factor"),
    ] {
        let (s, v) = admin.put("/api/v1/pool/config/btc", bad).await;
        assert!(s == 422 && error(&v).contains(words), "{words}: {s} {v}");
    }
    assert_eq!(std::fs::read_to_string(&settings_file).unwrap(), text);

    // The history: newest first, who and when, what changed; every role reads it.
    let (_, v) = vic.get("/api/v1/pool").await;
    let btc = &v["coins"][0];
    let history = btc["history"].as_array().unwrap();
    assert_eq!(history.iter().map(|h| h["version"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 1]);
    assert!(history.iter().all(|h| h["who"] == "alice"), "{v}");
    assert_eq!(history[0]["changes"], json!(["fee_bps: 100 → 50"]));
    assert_eq!(btc["config_version"], 2);

    // The stratum server does not serve pool mode yet: the panel says so, not an error.
    assert_eq!(btc["running"], false);
    assert!(btc["note"].as_str().unwrap().starts_with("pool mode not running"), "{btc}");
    // Once it does, a member sees their own line and payouts; an admin everyone's.
    stratum.serving.store(true, Ordering::Relaxed);
    let (_, v) = vic.get("/api/v1/pool").await;
    let btc = &v["coins"][0];
    assert_eq!(btc["running"], true, "{btc}");
    assert_eq!(btc["window"]["payees"].as_array().unwrap().len(), 1, "{btc}");
    assert_eq!(btc["window"]["payees"][0]["user"], "vic");
    assert_eq!(
        btc["payouts"].as_array().unwrap().iter().map(|r| r["user"].clone()).collect::<Vec<_>>(),
        [json!("vic")]
    );
    let (_, v) = admin.get("/api/v1/pool").await;
    assert_eq!(v["coins"][0]["window"]["payees"].as_array().unwrap().len(), 2);
    assert_eq!(v["coins"][0]["payouts"].as_array().unwrap().len(), 2);

    // Off, then a hand edit of the file: recorded at the next start as the settings file's.
    let (s, v) = admin.put("/api/v1/pool/config/btc", json!({"enabled": false})).await;
    assert_eq!((s, v["config_version"].as_u64()), (StatusCode::OK, Some(3)), "{v}");
    assert!(!std::fs::read_to_string(&settings_file).unwrap().contains("[coins.btc.pool]"));
    drop(p);
    let mut text = std::fs::read_to_string(&settings_file).unwrap();
    text.push_str(&format!("\n[coins.btc.pool]\nport = {port}\nmax_outputs = 20\n"));
    std::fs::write(&settings_file, text).unwrap();
    let p = start(dir.path(), Some(&stratum.addr)).await;
    let admin = Browser::sign_in(&p, "login", "alice").await;
    let (_, v) = admin.get("/api/v1/pool").await;
    let newest = &v["coins"][0]["history"][0];
    assert_eq!((newest["version"].as_u64(), newest["who"].as_str()), (Some(4), Some("settings file")), "{v}");
    assert_eq!(newest["config"]["max_outputs"], 20);
    let settings =
        minebox_settings::Settings::load(Some(&settings_file), None, &minebox_coin::Registry::embedded()).unwrap();
    assert_eq!(settings.coins["btc"].pool.as_ref().map(|p| p.config_version), Some(4), "the file says its version");
    let (_, log) = admin.get("/api/v1/audit").await;
    assert!(log.as_array().unwrap().iter().any(|e| e["action"] == "pool configuration changed"), "{log}");
}
