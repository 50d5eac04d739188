//! The OpenAPI document the page serves is checked against the types that make the
//! answers: a sample of each type, serialized as the services serialize it, must match
//! its schema (types, required fields, null only where nullable), and every property the
//! schema documents must be a field of the type, every field of the type a documented
//! property. A field renamed or added in `minebox-api` (or the overview) without the
//! document fails here, not in a user's client. The check covers the subset of JSON
//! Schema the document uses ($ref, type, nullable, properties, required, items,
//! additionalProperties, minItems/maxItems, enum).

use minebox_api::{snapshot, stratum, supervisor};
use minebox_status::mining_source::{mining_source, Inputs};
use minebox_status::overview::{CoinOverview, NodeSummary, Overview, StratumSummary};
use serde_json::{json, Value};
use std::collections::HashMap;

fn document() -> Value {
    serde_json::from_str(minebox_status::api::OPENAPI).expect("the OpenAPI document is JSON")
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.strip_prefix("#/components/schemas/").expect("local schema refs");
            &doc["components"]["schemas"][name]
        }
        None => schema,
    }
}

/// Every way `value` departs from `schema`, as `path: problem`.
fn check(doc: &Value, schema: &Value, value: &Value, path: &str, allowed_extra: &[&str], out: &mut Vec<String>) {
    // A nullable reference: `allOf` with the one schema, and `nullable` beside it.
    if let Some([inner]) = schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        if value.is_null() {
            if !schema["nullable"].as_bool().unwrap_or(false) {
                out.push(format!("{path}: null, but the schema is not nullable"));
            }
            return;
        }
        return check(doc, inner, value, path, allowed_extra, out);
    }
    let schema = resolve(doc, schema);
    if value.is_null() {
        if !schema["nullable"].as_bool().unwrap_or(false) {
            out.push(format!("{path}: null, but the schema is not nullable"));
        }
        return;
    }
    let ty = schema["type"].as_str().unwrap_or("");
    let ok = match ty {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "" => true,
        other => panic!("{path}: schema type {other} not understood by this check"),
    };
    if !ok {
        out.push(format!("{path}: {value} is not of type {ty}"));
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(value) {
            out.push(format!("{path}: {value} is not one of {e:?}"));
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(min) = schema["minItems"].as_u64() {
            if (items.len() as u64) < min {
                out.push(format!("{path}: fewer than {min} items"));
            }
        }
        if let Some(max) = schema["maxItems"].as_u64() {
            if items.len() as u64 > max {
                out.push(format!("{path}: more than {max} items"));
            }
        }
        if let Some(item) = schema.get("items") {
            for (i, v) in items.iter().enumerate() {
                check(doc, item, v, &format!("{path}[{i}]"), &[], out);
            }
        }
    }
    let Some(obj) = value.as_object() else { return };
    let props = schema.get("properties").and_then(Value::as_object);
    for r in schema["required"].as_array().into_iter().flatten() {
        if !obj.contains_key(r.as_str().unwrap()) {
            out.push(format!("{path}: required property {r} missing"));
        }
    }
    if let Some(props) = props {
        for (k, s) in props {
            match obj.get(k) {
                Some(v) => check(doc, s, v, &format!("{path}.{k}"), &[], out),
                None => out.push(format!("{path}.{k}: documented, but the type has no such field")),
            }
        }
        for k in obj.keys() {
            if !props.contains_key(k) && !allowed_extra.contains(&k.as_str()) {
                out.push(format!("{path}.{k}: a field of the type the document does not describe"));
            }
        }
    } else if let Some(extra) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        for (k, v) in obj {
            check(doc, extra, v, &format!("{path}.{k}"), &[], out);
        }
    }
}

fn problems(schema: &str, value: impl serde::Serialize, allowed_extra: &[&str]) -> Vec<String> {
    let doc = document();
    let schema_ref = json!({ "$ref": format!("#/components/schemas/{schema}") });
    let mut out = Vec::new();
    check(&doc, &schema_ref, &serde_json::to_value(value).unwrap(), schema, allowed_extra, &mut out);
    out
}

fn coin_status(job: Option<stratum::Job>) -> stratum::CoinStatus {
    stratum::CoinStatus {
        coin: "btc".into(),
        network: "regtest".into(),
        listen: "0.0.0.0:3333".into(),
        payout_policy: Some("owner".into()),
        payout_address: Some("bcrt1qexample".into()),
        miners: 2,
        workers: 3,
        hashrate: stratum::Hashrates { m1: 1.5e12, h1: 1.0e12, d1: 9.0e11 },
        best_share: 12345.5,
        blocks_found: 1,
        own_node_shares: 40,
        node: stratum::NodeStatus { reachable: true, block_notify: "zmq".into(), ..Default::default() },
        job,
        rejected_before_authorize: HashMap::from([("unauthorized".to_string(), 4)]),
    }
}

fn node(health: Option<supervisor::Health>) -> supervisor::Node {
    supervisor::Node {
        coin: "btc".into(),
        network: "regtest".into(),
        flavour: "core".into(),
        state: supervisor::NodeState::CrashLoop,
        detail: "exited 3 times in 10 minutes".into(),
        health,
        pid: Some(42),
        restarts: 3,
        rpc_url: "http://127.0.0.1:18443".into(),
        zmq_hashblock: None,
        credentials_file: "/var/lib/minebox/secrets/btc.cookie".into(),
        backend: "systemd".into(),
    }
}

#[test]
fn the_stratum_answers_match_the_document() {
    let job = stratum::Job {
        height: 101,
        prev_hash: "00".repeat(32),
        transactions: 3,
        coinbase_value_sats: 5_000_000_000,
        network_difficulty: 4.6e-10,
        age_secs: 1.5,
    };
    for status in [coin_status(Some(job)), coin_status(None)] {
        assert_eq!(problems("StratumCoin", &status, &[]), Vec::<String>::new());
    }
    let miner = stratum::Miner {
        coin: "btc".into(),
        miner: stratum::LiveMiner {
            peer: "10.0.0.7:51234".into(),
            connected_at: 1_700_000_000,
            user_agent: "bitaxe/2.4".into(),
            workers: vec!["bcrt1qexample.w1".into()],
            difficulty: 512.0,
            accepted: 10,
            rejected: 1,
            best_share: 9000.0,
        },
    };
    assert_eq!(problems("Miner", &miner, &[]), Vec::<String>::new());
}

/// What the supervisor keeps for the services only (the page removes it before serving).
const NODE_PRIVATE: &[&str] = &["credentials_file", "rpc_url", "pid", "zmq_hashblock"];

#[test]
fn the_supervisor_answers_match_the_document() {
    let health = supervisor::Health { chain: "regtest".into(), blocks: 10, headers: 10, ..Default::default() };
    for n in [node(Some(health)), node(None)] {
        assert_eq!(problems("Node", &n, NODE_PRIVATE), Vec::<String>::new());
    }
}

#[test]
fn the_page_shows_nodes_without_what_only_the_services_need() {
    // The page's node is its own type: nothing private needs hiding, no field is left over.
    let health = supervisor::Health { chain: "regtest".into(), blocks: 10, headers: 10, ..Default::default() };
    for n in [node(Some(health)), node(None)] {
        let public = minebox_status::api::PublicNode::from(n);
        assert_eq!(problems("Node", &public, &[]), Vec::<String>::new());
        let v = serde_json::to_value(&public).unwrap();
        for private in NODE_PRIVATE {
            assert!(v.get(private).is_none(), "{private} reaches the page");
        }
    }
}

#[test]
fn the_worker_and_block_lists_match_the_document() {
    let worker = stratum::Worker {
        coin: "btc".into(),
        worker: "bcrt1qexample.w1".into(),
        accepted: 10,
        accepted_difficulty: 5120.0,
        rejected: HashMap::from([("stale".to_string(), 1)]),
        best_share: 9000.0,
        best_share_at: 1_700_000_000,
        last_share_at: 1_700_000_100,
        last_seen: 1_700_000_100,
        user_agent: "bitaxe/2.4".into(),
        difficulty: 512.0,
        connections: 1,
        blocks: 0,
        payout_address: "bcrt1qexample".into(),
        paid_to: Some(stratum::PaidTo::Miner),
        hashrate: stratum::Hashrates { m1: 1.0e12, h1: 1.0e12, d1: 1.0e12 },
    };
    assert_eq!(problems("Worker", &worker, &[]), Vec::<String>::new());
    assert_eq!(problems("Worker", stratum::Worker { paid_to: None, ..worker }, &[]), Vec::<String>::new());
    let block = stratum::Block {
        coin: "btc".into(),
        network: "regtest".into(),
        height: 101,
        hash: "00".repeat(32),
        worker: "bcrt1qexample.w1".into(),
        reward_sats: 5_000_000_000,
        share_difficulty: 1.0,
        network_difficulty: 4.6e-10,
        found_at: 1_700_000_000,
        status: stratum::BlockStatus::Accepted,
        detail: String::new(),
        confirmations: 3,
        pool_config_version: Some(7),
    };
    assert_eq!(problems("Block", &block, &[]), Vec::<String>::new());
    assert_eq!(problems("Block", stratum::Block { pool_config_version: None, ..block }, &[]), Vec::<String>::new());
}

#[test]
fn the_snapshot_agents_answers_match_the_document() {
    let validation = snapshot::Validation {
        headers: 300,
        snapshot_tip: Some(300),
        background_height: Some(20),
        snapshot_height: Some(200),
        fully_validated: false,
    };
    let coin = |available, installed, progress| snapshot::CoinSnapshots {
        coin: "btc".into(),
        network: "regtest".into(),
        available,
        error: None,
        installable: true,
        installed,
        progress,
    };
    let offer = snapshot::Offer {
        height: 200,
        bytes: 1 << 20,
        kind: snapshot::Kind::Utxo,
        trust: "verified by the node".into(),
        created: 1_700_000_000,
        version: 3,
    };
    let installed = snapshot::Installed {
        version: 3,
        height: 200,
        kind: snapshot::Kind::Utxo,
        trust: "verified by the node".into(),
    };
    let loading = snapshot::Progress {
        phase: snapshot::Phase::Done,
        bytes_total: 1 << 20,
        bytes_done: 1 << 20,
        eta_secs: Some(0.0),
        validation: Some(validation),
        load_secs: Some(1.5),
        ..Default::default()
    };
    let failed = snapshot::Progress {
        phase: snapshot::Phase::Failed,
        error: Some("the publisher did not answer".into()),
        ..Default::default()
    };
    let list = snapshot::List {
        coins: vec![
            coin(Some(offer), Some(installed), loading),
            snapshot::CoinSnapshots { error: Some("no snapshot is published".into()), ..coin(None, None, failed) },
        ],
        busy: Some("btc".into()),
    };
    assert_eq!(problems("Snapshots", &list, &[]), Vec::<String>::new());
    assert_eq!(problems("Snapshots", snapshot::List::default(), &[]), Vec::<String>::new());
}

#[test]
fn the_overview_matches_the_document() {
    let coin = CoinOverview {
        coin: "btc".into(),
        name: "Bitcoin".into(),
        network: "main".into(),
        node: NodeSummary { state: "synced".into(), blocks: Some(10), progress: Some(1.0), ..Default::default() },
        stratum: StratumSummary { port: 3333, user: "bc1qexample.bitaxe1".into(), listening: true },
        miners: 1,
        workers: 1,
        hashrate: stratum::Hashrates { m1: 1.0e12, h1: 1.0e12, d1: 1.0e12 },
        best_share_all_time: 1.0,
        best_share_session: 1.0,
        blocks_found: 0,
        odds: minebox_status::odds::odds(1.0e14, 1.0e12),
        mining: mining_source(&Inputs { setting: None, stratum: None, pool: None, sync_eta_secs: None }),
    };
    // Through a pool: the pool's counts are an object, not null.
    let pool = coin_pool();
    let through = CoinOverview {
        mining: mining_source(&Inputs { setting: None, stratum: None, pool: Some(&pool), sync_eta_secs: Some(7200.0) }),
        ..coin.clone()
    };
    assert!(through.mining.through_pool.is_some() && through.mining.pool.is_some());
    let o = Overview {
        at: 1.7e9,
        coins: vec![coin, through],
        system: minebox_status::system::System { load: [0.1, 0.2, 0.3], ..Default::default() },
        problems: vec!["the stratum server is not answering".into()],
    };
    // restart_required is added by the route, not a field of the overview.
    let mut v = serde_json::to_value(&o).unwrap();
    v["restart_required"] = json!(false);
    assert_eq!(problems("Overview", v, &[]), Vec::<String>::new());
}

fn coin_pool() -> stratum::CoinPool {
    let link = stratum::PoolLink {
        url: "stratum+tcp://public-pool.io:21496".into(),
        mining_from: stratum::MiningFrom::Upstream,
        connected: true,
        authorized: true,
        last_error: Some("the pool closed the connection".into()),
        difficulty: Some(1000.0),
        extranonce2_size: Some(8),
        connections: 2,
        jobs: 30,
        forwarded: 10,
        accepted: 9,
        rejected: 1,
        blocks: 0,
        dropped: 0,
    };
    stratum::CoinPool {
        owner: link.clone(),
        addresses: vec![stratum::AddressPoolLink { address: "bc1qminer".into(), miners: 1, link }],
        max_connections: 8,
        waiting_for_node: 1,
        waiting_reason: Some("1 miner connection(s) mining to their own address wait for the node".into()),
    }
}

#[test]
fn the_pools_answer_matches_the_document() {
    let doc = document();
    let schema = &doc["paths"]["/api/v1/pools"]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    let idle = stratum::CoinPool {
        owner: stratum::PoolLink { url: "stratum+tcp://10.0.0.2:3333".into(), ..Default::default() },
        ..Default::default()
    };
    let pools = stratum::Pools::from([("btc".to_string(), coin_pool()), ("bch".to_string(), idle)]);
    let mut out = Vec::new();
    check(&doc, schema, &serde_json::to_value(&pools).unwrap(), "pools", &[], &mut out);
    assert_eq!(out, Vec::<String>::new());
    // The contract reads back what the stratum server writes (flattened connection fields).
    let back: stratum::Pools = serde_json::from_value(serde_json::to_value(&pools).unwrap()).unwrap();
    assert_eq!(back, pools);
}

#[test]
fn the_settings_pool_picker_matches_the_document() {
    let registry = minebox_coin::Registry::embedded();
    let settings = minebox_settings::Settings::load(None, None, &registry).unwrap();
    let view = minebox_status::config::view(&settings, &registry);
    let mut btc = serde_json::to_value(&view.coins["btc"]).unwrap();
    assert!(!btc["known_pools"].as_array().unwrap().is_empty());
    assert_eq!(btc["upstream"], json!(""), "no pool by default");
    // Only coins the image has no node for carry a note.
    btc["node_note"] = json!("External node only");
    assert_eq!(problems("CoinConfig", btc, &[]), Vec::<String>::new());
}

#[test]
fn the_lan_miner_answers_match_the_document() {
    use minebox_status::axeos::{MinerInfo, Pointed, Pool};
    use minebox_status::discovery::{Found, Report};
    let ip = std::net::Ipv4Addr::new(192, 168, 1, 40);
    let via = std::net::Ipv4Addr::new(192, 168, 1, 2);
    let pool = Pool { url: "public-pool.io".into(), port: 21496, user: "bc1q.x".into() };
    let miner = |fallback: Option<Pool>, temperature_c| MinerInfo {
        ip,
        hostname: "bitaxe".into(),
        model: "601 (BM1370)".into(),
        hashrate_ghs: 1100.5,
        temperature_c,
        pool: pool.clone(),
        fallback,
        using_fallback: false,
        firmware: "v2.9.0".into(),
    };
    let report = Report {
        finished_at: 1_700_000_000,
        networks: vec!["192.168.1.0/24 on eth0".into()],
        addresses_asked: 253,
        found: vec![
            Found { ip, via, miner: Some(miner(Some(pool.clone()), Some(60.0))), error: None },
            Found { ip, via, miner: Some(miner(None, None)), error: None },
            Found { ip, via, miner: None, error: Some("answered too slowly".into()) },
        ],
        mdns_announced: vec![ip],
    };
    assert_eq!(problems("LanScan", &report, &[]), Vec::<String>::new());
    for fallback in [Some(pool.clone()), None] {
        let pointed = Pointed {
            ip,
            hostname: "bitaxe".into(),
            pool: Pool { url: via.to_string(), port: 3333, user: "bc1q.bitaxe".into() },
            fallback,
            previous_pool: pool.clone(),
            restarted: true,
        };
        assert_eq!(problems("LanPointed", &pointed, &[]), Vec::<String>::new());
    }
    // The check reaches into a nullable reference.
    let mut v = serde_json::to_value(&report).unwrap();
    v["found"][0]["miner"]["pool"]["port"] = json!("3333");
    assert_eq!(problems("LanScan", v, &[]).len(), 1);
}

#[test]
fn a_field_the_document_lacks_is_found() {
    // The check itself: a renamed field shows up both ways.
    let mut v = serde_json::to_value(coin_status(None)).unwrap();
    let best = v.as_object_mut().unwrap().remove("best_share").unwrap();
    v["best_share_ever"] = best;
    let p = problems("StratumCoin", v, &[]);
    assert!(p.iter().any(|p| p.contains("best_share: documented")), "{p:?}");
    assert!(p.iter().any(|p| p.contains("best_share_ever: a field")), "{p:?}");
}

#[test]
fn the_updaters_answers_match_the_document() {
    use minebox_api::updater;
    let entry = updater::HistoryEntry {
        at: 1_700_000_000,
        version: "1.2.0".into(),
        from_version: "1.1.0".into(),
        result: updater::Outcome::RolledBack,
        message: "minebox-stratum did not start".into(),
    };
    let busy = updater::Status {
        current: updater::Current { version: "1.1.0".into(), slot: "A".into(), trial: false },
        state: updater::State::WaitingForWindow,
        progress: Some(updater::Progress::new("download", 5, 10)),
        available: Some(updater::Manifest {
            version: "1.2.0".into(),
            compatible: "minebox-rpi5".into(),
            bundle_url: "https://updates.minebox.example/v1/stable/minebox-rpi5-1.2.0.raucb".into(),
            size: 10,
            sha256: "00".repeat(32),
            notes: "faster shares".into(),
        }),
        last_result: Some(entry.clone()),
        error: Some("the last check could not reach the channel".into()),
        pending: Some("1.2.0".into()),
        reboot_at: Some("03:00".into()),
    };
    assert_eq!(problems("Updates", &busy, &[]), Vec::<String>::new());
    assert_eq!(problems("Updates", updater::Status::default(), &[]), Vec::<String>::new());
    assert_eq!(problems("UpdateHistoryEntry", &entry, &[]), Vec::<String>::new());
}

#[test]
fn the_cloud_answers_and_the_settings_match_the_document() {
    use minebox_status::cloud::CloudView;
    let pending = CloudView {
        state: "pending",
        url: Some("https://cloud.example.org/".into()),
        code: Some("K7QM-4XPD".into()),
        expires_in: Some(600),
        account: None,
        message: "Enter the code".into(),
        telemetry: false,
        what_is_sent: minebox_cloud_link::telemetry::WHAT_IS_SENT,
        telemetry_problem: None,
    };
    assert_eq!(problems("Cloud", &pending, &[]), Vec::<String>::new());
    let linked = CloudView {
        state: "linked",
        code: None,
        expires_in: None,
        account: Some("o***@example.org".into()),
        telemetry_problem: Some("the box was unlinked".into()),
        ..pending
    };
    assert_eq!(problems("Cloud", &linked, &[]), Vec::<String>::new());
    let registry = minebox_coin::Registry::embedded();
    let settings = minebox_settings::Settings::load(None, None, &registry).unwrap();
    let mut v = serde_json::to_value(minebox_status::config::view(&settings, &registry)).unwrap();
    v["restart_required"] = json!(false);
    // The coins' own entries are another test's (a coin without a node note leaves it out).
    v["coins"] = json!({});
    assert_eq!(problems("Config", v, &[]), Vec::<String>::new());
}

#[test]
fn the_users_sessions_and_audit_answers_match_the_document() {
    use minebox_status::accounts::{Role, User};
    let user =
        User { name: "olga".into(), role: Role::Operator, disabled: false, created: 1_700_000_000, two_factor: true };
    assert_eq!(problems("User", &user, &[]), Vec::<String>::new());
    let session = minebox_status::session::SessionInfo {
        id: 3,
        user: "olga".into(),
        created: 1_700_000_000,
        last_seen: 1_700_000_060,
        address: "192.168.1.20".into(),
        user_agent: "Firefox".into(),
        current: true,
    };
    assert_eq!(problems("SessionInfo", &session, &[]), Vec::<String>::new());
    let entry = minebox_status::audit::Entry {
        id: 9,
        at: 1_700_000_000,
        who: "alice".into(),
        action: "node stop".into(),
        detail: "btc".into(),
    };
    assert_eq!(problems("AuditEntry", &entry, &[]), Vec::<String>::new());
}

#[test]
fn the_pool_panels_answer_matches_the_document() {
    use minebox_status::payees::PayoutAddress;
    use minebox_status::pool_config::{HistoryEntry, PoolValues};
    use minebox_status::pool_page::{PoolCoin, PoolView};
    let values = PoolValues {
        port: 3334,
        fee_bps: 100,
        fee_address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
        window_factor: 2.0,
        max_outputs: 39,
        start_difficulty: 1.0,
        min_difficulty: 0.001,
        max_difficulty: 1e12,
    };
    let history = |version, config: Option<PoolValues>| HistoryEntry {
        coin: "btc".into(),
        version,
        at: 1_700_000_000,
        who: "alice".into(),
        config,
        changes: vec!["fee_bps: 0 → 100".into()],
    };
    let payee = stratum::PoolPayee {
        user: "vic".into(),
        address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
        work: 10.0,
        fraction: 0.5,
        carry_sats: -3,
    };
    let window = stratum::PoolStatus { coin: "btc".into(), payees: vec![payee], ..Default::default() };
    let payout = stratum::PoolPayout { coin: "btc".into(), state: "pending".into(), ..Default::default() };
    let running = PoolCoin {
        id: "btc".into(),
        name: "Bitcoin".into(),
        network: "regtest".into(),
        config: Some(values.clone()),
        config_version: 2,
        history: vec![history(2, Some(values)), history(1, None)],
        running: true,
        note: None,
        window: Some(window),
        payouts: vec![payout],
    };
    let off = PoolCoin {
        config: None,
        window: None,
        note: Some("pool mode is off".into()),
        running: false,
        history: Vec::new(),
        payouts: Vec::new(),
        ..running.clone()
    };
    let address = PayoutAddress {
        id: 4,
        user: "vic".into(),
        coin: "btc".into(),
        address: "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".into(),
        updated: 1_700_000_000,
    };
    let view = PoolView { coins: vec![running, off], addresses: vec![address] };
    assert_eq!(problems("PoolView", &view, &[]), Vec::<String>::new());
}

#[test]
fn the_two_factor_status_matches_the_document() {
    let status = minebox_status::mfa::MfaStatus {
        active: true,
        enrolling: false,
        recovery_codes_left: 9,
        required_for_admins: false,
        must_enrol: false,
    };
    assert_eq!(problems("MfaStatus", &status, &[]), Vec::<String>::new());
}

#[test]
fn the_share_history_answer_matches_the_document() {
    use minebox_api::stratum::ShareBucket;
    let now = 1_796_159_850;
    let bucket = ShareBucket {
        start: now - now % 3600,
        span_secs: 3600,
        worker: "alice.rig1".into(),
        port: "pool".into(),
        accepted: 3,
        accepted_difficulty: 3e-9,
        rejected: [("stale".to_string(), 1)].into(),
    };
    let history = minebox_status::share_history::summarize("btc", &[bucket], now, true);
    assert_eq!(problems("ShareHistory", &history, &[]), Vec::<String>::new());
}
