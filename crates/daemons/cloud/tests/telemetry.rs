//! Telemetry on a real PostgreSQL and the real service, with the box played by
//! `minebox-cloud-link` (its real key and client): heartbeats reach the owner's device list per
//! coin; daily stats and blocks are idempotent; blocks reach the public leaderboard without
//! emails; a user's downloads this month are counted against their plan; unknown, pending and
//! unlinked boxes are refused and nothing is written; one user never sees another's data; absurd,
//! SQL-shaped and oversized reports are refused with what is wrong.

mod support;

use minebox_cloud_link::telemetry::{BlockFound, CoinReport, DailyStats, Heartbeat, SyncState};
use minebox_cloud_link::{BoxInfo, LinkError};
use reqwest::Method;
use serde_json::{json, Value};
use support::{Auth, Box_, Rig, DB};

impl Rig {
    /// A box linked to `auth`'s account through the real pairing.
    async fn linked_box(&self, auth: &Auth, name: &str) -> Box_ {
        let device = self.device();
        let info = BoxInfo { name: Some(name.into()), model: None, version: Some("0.1.0".into()) };
        let code = device.link.start_pairing(&info).await.unwrap().code;
        let (status, body) = self.call(Method::POST, "/api/v1/devices/pair", auth, Some(json!({"code": code}))).await;
        assert_eq!(status, 200, "{body}");
        device
    }

    /// A body signed by `device`'s key, sent as is (to send what the typed client cannot).
    async fn signed(&self, device: &Box_, path: &str, body: Vec<u8>) -> (u16, Value) {
        let headers = device.link.key().sign("POST", path, &body);
        let mut req = self.http.post(format!("{}{path}", self.base)).header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        match req.body(body).send().await {
            Ok(r) => support::answer(r).await,
            // The service may close the connection on an oversized body before it is all sent.
            Err(e) => (0, Value::String(e.to_string())),
        }
    }

    /// Every row telemetry writes, as text: what a refused report must leave unchanged.
    fn telemetry_state(&self) -> String {
        self.pg.psql(
            DB,
            "SELECT (SELECT count(*) FROM device_coins) || ' ' || (SELECT count(*) FROM device_metrics) || ' '
                    || (SELECT count(*) FROM mining_stats_daily) || ' ' || (SELECT count(*) FROM blocks) || ' '
                    || coalesce((SELECT string_agg(coalesce(version, '-'), ',' ORDER BY id) FROM devices), '')",
        )
    }
}

fn refused(result: Result<impl std::fmt::Debug, LinkError>) -> (u16, String) {
    match result {
        Err(LinkError::Refused { status, message }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn coin(coin: &str, height: u64, state: SyncState) -> CoinReport {
    CoinReport { coin: coin.into(), height, headers: height + 10, sync_progress: 0.5, state, hashrate_hs: Some(1.2e12) }
}

fn beat(coins: Vec<CoinReport>) -> Heartbeat {
    Heartbeat { version: "0.2.0".into(), uptime_secs: 3600, coins }
}

/// The UTC day, as the service's database has it.
fn today(rig: &Rig) -> String {
    rig.pg.psql(DB, "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD')")
}

fn stats(day: &str, shares: u64) -> DailyStats {
    DailyStats {
        day: day.into(),
        coin: "btc".into(),
        shares_submitted: shares,
        shares_valid: shares - 1,
        shares_invalid: 1,
        blocks_found: 1,
        best_difficulty: 123_456.5,
        hashrate_avg_hs: 1.5e12,
        uptime_percent: 99.5,
    }
}

fn block(hash: &str) -> BlockFound {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    BlockFound { coin: "btc".into(), height: 870_000, hash: hash.into(), reward_sats: 312_500_000, found_at: now - 60 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_show_each_coins_sync_state_to_the_owner_only() {
    let rig = Rig::start().await;
    let ann = rig.session_user("ann@example.org").await;
    let bob = rig.session_user("bob@example.org").await;
    let device = rig.linked_box(&ann, "ann's box").await;
    let bobs = rig.linked_box(&bob, "bob's box").await;

    let sent = beat(vec![coin("btc", 870_000, SyncState::Ready), coin("bch", 400_000, SyncState::InstallingSnapshot)]);
    let answer = device.link.heartbeat(&sent).await.unwrap();
    assert!(answer.recorded, "{answer:?}");
    let listed = rig.devices(&ann).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["version"], "0.2.0", "the heartbeat's version replaces the pairing's");
    assert!(listed[0]["last_seen_at"].is_string());
    let coins = listed[0]["coins"].as_array().unwrap();
    assert_eq!(coins.len(), 2, "{coins:?}");
    assert_eq!(coins[0]["coin"], "bch");
    assert_eq!(coins[0]["state"], "installing_snapshot");
    assert_eq!(coins[0]["height"], 400_000);
    assert_eq!(coins[0]["headers"], 400_010);
    assert_eq!(coins[0]["sync_progress"], 0.5);
    assert_eq!(coins[1]["coin"], "btc");
    assert_eq!(coins[1]["state"], "ready");
    assert_eq!(coins[1]["hashrate_hs"], 1.2e12);
    assert_eq!(
        rig.pg.psql(DB, "SELECT string_agg(sync_status, ',' ORDER BY sync_status) FROM device_coins"),
        "synced,syncing",
        "the seed's status follows the state"
    );

    // The next heartbeat replaces the state; a coin no longer reported is dropped.
    device.link.heartbeat(&beat(vec![coin("btc", 870_001, SyncState::Down)])).await.unwrap();
    let coins = rig.devices(&ann).await[0]["coins"].as_array().unwrap().clone();
    assert_eq!(coins.len(), 1, "{coins:?}");
    assert_eq!((coins[0]["state"].as_str(), coins[0]["height"].as_i64()), (Some("down"), Some(870_001)));
    assert_eq!(
        rig.pg.psql(
            DB,
            "SELECT count(*) || ' ' || max(uptime_seconds) || ' ' || bool_and(daemon_status ? 'btc')
                           FROM device_metrics"
        ),
        "2 3600 true",
        "one metrics row per heartbeat"
    );

    // Bob's box reports too; neither sees the other's.
    bobs.link.heartbeat(&beat(vec![coin("xec", 1, SyncState::Starting)])).await.unwrap();
    let bob_listed = rig.devices(&bob).await;
    assert_eq!(bob_listed.len(), 1);
    assert_eq!(bob_listed[0]["coins"].as_array().unwrap().len(), 1);
    assert_eq!(bob_listed[0]["coins"][0]["coin"], "xec");
    assert_eq!(rig.devices(&ann).await[0]["coins"][0]["coin"], "btc");
    // And under the API's role with Bob's context, Ann's rows are not there at all.
    let bob_id = rig.pg.psql(DB, "SELECT id FROM users WHERE email = 'bob@example.org'");
    let owner = support::owner_pool(&rig.pg);
    let context =
        minebox_cloud::db::UserContext::load(&minebox_cloud::db::client(&owner).await.unwrap()).await.unwrap();
    let api = minebox_cloud::db::pool(&rig.pg.url(support::API, DB), 1).unwrap();
    let mut client = minebox_cloud::db::client(&api).await.unwrap();
    let tx = minebox_cloud::db::begin_as(&mut client, &context, bob_id.parse().unwrap()).await.unwrap();
    for table in ["device_coins", "device_metrics"] {
        let n: i64 = tx.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 1, "{table}: Bob sees his own row only");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_stats_and_blocks_are_idempotent_and_blocks_reach_the_leaderboard_without_emails() {
    let rig = Rig::start().await;
    let ann = rig.session_user("ann@example.org").await;
    let bob = rig.session_user("bob@example.org").await;
    let device = rig.linked_box(&ann, "ann's box").await;
    let bobs = rig.linked_box(&bob, "bob's box").await;

    let day = today(&rig);
    assert!(device.link.daily_stats(&stats(&day, 100)).await.unwrap().recorded);
    assert!(device.link.daily_stats(&stats(&day, 100)).await.unwrap().recorded);
    let row = "SELECT count(*) || ' ' || max(shares_submitted) || ' ' || max(avg_hashrate_ths) || ' '
                      || max(uptime_percent) || ' ' || max(best_difficulty) FROM mining_stats_daily";
    assert_eq!(rig.pg.psql(DB, row), "1 100 1.5000 99.50 123456.5", "sent twice, kept once");
    // The box re-sends the day with later totals: they replace the earlier ones.
    device.link.daily_stats(&stats(&day, 250)).await.unwrap();
    assert_eq!(rig.pg.psql(DB, row), "1 250 1.5000 99.50 123456.5");

    let hash = "00000000000000000001a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7";
    let first = device.link.block_found(&block(hash)).await.unwrap();
    assert!(first.recorded, "{first:?}");
    let again = device.link.block_found(&block(&hash.to_uppercase())).await.unwrap();
    assert!(!again.recorded, "the same block (in any case) is kept once: {again:?}");
    assert!(again.message.contains("recorded already"), "{again:?}");
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) || ' ' || max(block_reward) FROM blocks"), "1 3.12500000");
    // Bob's box reports two blocks of its own.
    for h in ["11", "22"] {
        bobs.link.block_found(&block(&h.repeat(32))).await.unwrap();
    }

    // The public leaderboard: no login needed, most blocks first, pseudonyms by default.
    let r = rig.http.get(format!("{}/api/v1/leaderboard/blocks", rig.base)).send().await.unwrap();
    let (status, board) = support::answer(r).await;
    assert_eq!(status, 200, "{board}");
    let entries = board["leaderboard"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{board}");
    assert_eq!((entries[0]["rank"].as_i64(), entries[0]["blocks_found"].as_i64()), (Some(1), Some(2)));
    assert_eq!((entries[1]["blocks_found"].as_i64(), entries[1]["coin"].as_str()), (Some(1), Some("BTC")));
    assert_eq!(entries[1]["total_rewards"], "3.12500000");
    assert!(entries[0]["miner"].as_str().unwrap().starts_with("miner-"), "{board}");
    let text = board.to_string();
    assert!(!text.contains("example.org") && !text.contains("ann") && !text.contains("bob"), "{text}");

    // Ann chooses to be shown by her display name; Bob stays a pseudonym.
    rig.pg.psql(DB, "UPDATE users SET display_name = 'Ann the Miner' WHERE email = 'ann@example.org'");
    let (status, body) =
        rig.call(Method::PUT, "/api/v1/leaderboard/visibility", &ann, Some(json!({"public": true}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, board) =
        support::answer(rig.http.get(format!("{}/api/v1/leaderboard/blocks?limit=1", rig.base)).send().await.unwrap())
            .await;
    assert_eq!(board["leaderboard"].as_array().unwrap().len(), 1, "the limit is kept");
    let (_, board) =
        support::answer(rig.http.get(format!("{}/api/v1/leaderboard/blocks", rig.base)).send().await.unwrap()).await;
    assert_eq!(board["leaderboard"][1]["miner"], "Ann the Miner", "{board}");
    assert!(board["leaderboard"][0]["miner"].as_str().unwrap().starts_with("miner-"));
    // An orphaned block no longer counts.
    rig.pg.psql(DB, &format!("UPDATE blocks SET is_orphaned = TRUE WHERE block_hash = '{hash}'"));
    let (_, board) =
        support::answer(rig.http.get(format!("{}/api/v1/leaderboard/blocks", rig.base)).send().await.unwrap()).await;
    assert_eq!(board["leaderboard"].as_array().unwrap().len(), 1, "{board}");
    let r = rig.http.get(format!("{}/api/v1/leaderboard/blocks?limit=100000", rig.base)).send().await.unwrap();
    assert_eq!(support::answer(r).await.0, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_this_months_downloads_against_the_plan() {
    let rig = Rig::start().await;
    let ann = rig.session_user("ann@example.org").await;
    let bob = rig.session_user("bob@example.org").await;
    let (status, usage) = rig.call(Method::GET, "/api/v1/usage", &ann, None).await;
    assert_eq!(status, 200, "{usage}");
    assert_eq!(usage["plan"], "free");
    assert_eq!(usage["downloads"], json!({"used": 0, "limit": 1, "remaining": 1}));
    assert_eq!(usage["bytes"]["limit"], 50u64 * 1024 * 1024 * 1024);

    // Nothing writes downloads yet (point 5): the owner records one for Ann, and two for Bob.
    rig.pg.psql(
        DB,
        "INSERT INTO snapshots (id, coin_id, kind, version, block_height, block_hash, size_bytes, compressed_size_bytes,
                                chunk_count, merkle_root, manifest_sha256, index_sha256, key_id, expires_at)
         SELECT '00000000-0000-0000-0000-000000000001', id, 'utxo', 1, 1, repeat('a', 64), 1, 1, 1, repeat('b', 64),
                repeat('c', 64), repeat('d', 64), 'k', now() + interval '1 year' FROM coins WHERE coin_key = 'btc';
         INSERT INTO snapshot_downloads (snapshot_id, user_id, bytes_downloaded)
         SELECT '00000000-0000-0000-0000-000000000001', id, 10 * 1024::bigint * 1024 * 1024 FROM users
          WHERE email = 'ann@example.org';
         INSERT INTO snapshot_downloads (snapshot_id, user_id, bytes_downloaded)
         SELECT '00000000-0000-0000-0000-000000000001', id, 7 FROM users, generate_series(1, 2)
          WHERE email = 'bob@example.org';",
    );
    let (_, usage) = rig.call(Method::GET, "/api/v1/usage", &ann, None).await;
    assert_eq!(usage["downloads"], json!({"used": 1, "limit": 1, "remaining": 0}), "{usage}");
    assert_eq!(usage["bytes"]["used"], 10u64 * 1024 * 1024 * 1024);
    assert_eq!(usage["bytes"]["remaining"], 40u64 * 1024 * 1024 * 1024);
    assert!(usage["message"].as_str().unwrap().contains("reached"), "{usage}");
    let (_, usage) = rig.call(Method::GET, "/api/v1/usage", &bob, None).await;
    assert_eq!(usage["downloads"]["used"], 2, "Bob's own, never Ann's: {usage}");
    assert_eq!(usage["bytes"]["used"], 14);

    // A paid plan's limits apply while it is in effect.
    rig.pg.psql(
        DB,
        "INSERT INTO subscription_plans (name, monthly_price_cents, snapshot_downloads_per_month,
                                         snapshot_bytes_per_month, max_devices, coins_supported)
         VALUES ('hobbyist-test', 500, 5, NULL, 3, 4);
         INSERT INTO subscriptions (user_id, plan_id)
         SELECT u.id, p.id FROM users u, subscription_plans p
          WHERE u.email = 'ann@example.org' AND p.name = 'hobbyist-test';",
    );
    let (_, usage) = rig.call(Method::GET, "/api/v1/usage", &ann, None).await;
    assert_eq!(usage["plan"], "hobbyist-test", "{usage}");
    assert_eq!(usage["downloads"], json!({"used": 1, "limit": 5, "remaining": 4}));
    assert_eq!(usage["bytes"]["limit"], Value::Null, "unlimited");

    let r = rig.http.get(format!("{}/api/v1/usage", rig.base)).send().await.unwrap();
    assert_eq!(support::answer(r).await.0, 401, "usage is the logged-in user's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_pending_and_unlinked_boxes_are_refused_and_nothing_is_written() {
    let rig = Rig::start().await;
    let ann = rig.session_user("ann@example.org").await;
    let before = rig.telemetry_state();
    let report = beat(vec![coin("btc", 1, SyncState::Syncing)]);

    let stranger = rig.device();
    let (status, message) = refused(stranger.link.heartbeat(&report).await);
    assert_eq!(status, 401, "{message}");
    assert!(message.contains("does not know this device key"), "{message}");

    let pending = rig.device();
    pending.link.start_pairing(&BoxInfo::default()).await.unwrap();
    let (status, message) = refused(pending.link.heartbeat(&report).await);
    assert_eq!(status, 403, "{message}");
    assert!(message.contains("not linked"), "{message}");
    let (status, _) = refused(pending.link.block_found(&block(&"ab".repeat(32))).await);
    assert_eq!(status, 403);
    let (status, _) = refused(pending.link.daily_stats(&stats(&today(&rig), 10)).await);
    assert_eq!(status, 403);
    let before_pending = rig.telemetry_state();
    assert_eq!(before.split(' ').take(4).collect::<Vec<_>>(), before_pending.split(' ').take(4).collect::<Vec<_>>());

    // Linked, it reports; unlinked by its owner, what it sent is gone and it is refused again.
    let device = rig.linked_box(&ann, "ann's box").await;
    device.link.heartbeat(&report).await.unwrap();
    device.link.block_found(&block(&"cd".repeat(32))).await.unwrap();
    let id = rig.devices(&ann).await[0]["id"].as_str().unwrap().to_string();
    let (status, body) = rig.call(Method::DELETE, &format!("/api/v1/devices/{id}"), &ann, None).await;
    assert_eq!(status, 200, "{body}");
    let after_unlink = rig.telemetry_state();
    assert!(after_unlink.starts_with("0 0 0 0 "), "unlinking forgets the reports: {after_unlink}");
    let (status, _) = refused(device.link.heartbeat(&report).await);
    assert_eq!(status, 403);
    assert_eq!(rig.telemetry_state(), after_unlink, "nothing written");

    // Unsigned: 401.
    let r = rig
        .http
        .post(format!("{}/api/v1/device/heartbeat", rig.base))
        .json(&serde_json::to_value(&report).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(support::answer(r).await.0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absurd_sql_shaped_and_oversized_reports_are_refused_with_what_is_wrong() {
    let rig = Rig::start().await;
    let ann = rig.session_user("ann@example.org").await;
    let device = rig.linked_box(&ann, "ann's box").await;
    device.link.heartbeat(&beat(vec![coin("btc", 1, SyncState::Syncing)])).await.unwrap();
    let before = rig.telemetry_state();
    let hb = "/api/v1/device/heartbeat";
    let daily = "/api/v1/device/stats/daily";
    let blocks = "/api/v1/device/blocks";
    let ok_coin = json!({"coin": "btc", "height": 1, "headers": 1, "sync_progress": 0.5, "state": "syncing"});
    let with = |base: &Value, key: &str, value: Value| {
        let mut v = base.clone();
        v[key] = value;
        v
    };
    let heartbeat = |coin: Value| json!({"version": "0.2.0", "uptime_secs": 1, "coins": [coin]});
    let day = serde_json::to_value(stats(&today(&rig), 10)).unwrap();
    let blk = serde_json::to_value(block(&"ef".repeat(32))).unwrap();
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (hb, json!({"version": "0.2.0", "uptime_secs": -1, "coins": []}), 422, "uptime_secs"),
        (hb, heartbeat(with(&ok_coin, "coin", json!("doge"))), 422, "not one MineBox Cloud knows"),
        (hb, heartbeat(with(&ok_coin, "coin", json!("btc'; DROP TABLE devices; --"))), 422, "not a coin id"),
        (hb, heartbeat(with(&ok_coin, "height", json!(-5))), 422, "height"),
        (hb, heartbeat(with(&ok_coin, "height", json!(4_000_000_000u64))), 422, "is above"),
        (hb, heartbeat(with(&ok_coin, "sync_progress", json!(1.5))), 422, "sync progress"),
        (hb, heartbeat(with(&ok_coin, "state", json!("mining"))), 422, "state"),
        (hb, heartbeat(with(&ok_coin, "hashrate_hs", json!(-1.0))), 422, "hashrate"),
        (hb, json!({"version": "x".repeat(41), "uptime_secs": 1, "coins": []}), 422, "longer than 40"),
        (hb, json!({"version": "0.2.0", "uptime_secs": 1, "coins": [ok_coin, ok_coin]}), 422, "reported twice"),
        (hb, json!({"version": "0.2.0", "uptime_secs": 1, "coins": [], "wallet": "x"}), 422, "unknown field"),
        (daily, with(&day, "day", json!("2999-01-01")), 422, "in the future"),
        (daily, with(&day, "day", json!("2026-02-30")), 422, "is not a day"),
        (daily, with(&day, "day", json!("2026-01-01'; --")), 422, "is not a day"),
        (daily, with(&day, "shares_valid", json!(-3)), 422, "shares_valid"),
        (daily, with(&day, "uptime_percent", json!(150.0)), 422, "uptime percent"),
        (daily, with(&day, "coin", json!("eth")), 422, "not one MineBox Cloud knows"),
        (blocks, with(&blk, "hash", json!("zz".repeat(32))), 422, "not a block hash"),
        (blocks, with(&blk, "hash", json!("' OR 1=1 --")), 422, "not a block hash"),
        (blocks, with(&blk, "reward_sats", json!(-1)), 422, "reward_sats"),
        (blocks, with(&blk, "reward_sats", json!(u64::MAX)), 422, "more than all the coins"),
        (blocks, with(&blk, "found_at", json!(4_102_444_800i64)), 422, "not a time a block was found"),
    ];
    for (path, body, want, says) in cases {
        let (status, answer) = rig.signed(&device, path, serde_json::to_vec(&body).unwrap()).await;
        assert_eq!(status, want, "{path} {body}: {answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{path} {body}: {error:?} should say {says:?}");
    }
    // Ten megabytes: refused before it is read (413), or the connection is closed on it.
    let huge =
        serde_json::to_vec(&json!({"version": "x".repeat(10 * 1024 * 1024), "uptime_secs": 1, "coins": []})).unwrap();
    let (status, answer) = rig.signed(&device, hb, huge).await;
    assert!(status == 413 || status == 0, "{status} {answer}");
    // A SQL-shaped version is only ever a bound parameter: stored as given.
    let sqlish = Heartbeat { version: "1' OR '1'='1".into(), uptime_secs: 1, coins: vec![] };
    assert_eq!(rig.telemetry_state(), before, "nothing refused was written");
    device.link.heartbeat(&sqlish).await.unwrap();
    assert_eq!(rig.devices(&ann).await[0]["version"], "1' OR '1'='1");
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM users"), "1");
}
