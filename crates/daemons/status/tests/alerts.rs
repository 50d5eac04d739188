//! Alerts against real receivers: an HTTP server that records what it is POSTed (standing in
//! for the owner's webhook and an ntfy server) and a real SMTP server (aiosmtpd, through
//! minebox-mailsink). The conditions come from the real state machine, driven with a plain
//! clock value; the sending is the status service's own.

use axum::extract::State;
use axum::http::HeaderMap;
use minebox_api::supervisor::NodeState;
use minebox_mailsink::MailSink;
use minebox_settings::notify::{Email, Smtp};
use minebox_status::alert::{Alerts, Observation, Thresholds};
use minebox_status::notify::{deliver, Targets};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// (path, Title header, body) of every POST received.
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

async fn recorder() -> (String, Seen) {
    let seen: Seen = Default::default();
    async fn record(State(seen): State<Seen>, uri: axum::http::Uri, headers: HeaderMap, body: String) {
        let title = headers.get("title").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        seen.lock().unwrap().push((uri.path().to_string(), title, body));
    }
    let app = axum::Router::new().fallback(axum::routing::post(record)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

/// A port nothing listens on (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn email_to(port: u16) -> Email {
    Email { to: "owner@example.org".into(), smtp: Smtp::parse(&format!("smtp://127.0.0.1:{port}")).unwrap() }
}

fn targets(base: &str, smtp_port: u16) -> Targets {
    Targets {
        webhook: Some(format!("{base}/hook").parse().unwrap()),
        ntfy: Some(format!("{base}/minebox-topic").parse().unwrap()),
        email: Some(email_to(smtp_port)),
        retry_after: Duration::from_millis(10),
    }
}

const TH: Thresholds = Thresholds {
    quiet_secs: 3600,
    miner_silent_secs: 600,
    hashrate_low_percent: 50.0,
    disk_low_bytes: 1 << 30,
    disk_low_percent: 5.0,
};

fn node(state: NodeState) -> Observation {
    Observation { nodes: Some(vec![("btc".into(), state, "exit status 1".into(), 840_000)]), ..Default::default() }
}

/// Observes, sends what the state machine says to send; returns how many alerts went.
async fn step(alerts: &mut Alerts, http: &reqwest::Client, t: &Targets, obs: Observation, now: i64) -> usize {
    let out = alerts.observe(&obs, now);
    for a in &out {
        let errors = deliver(http, t, a).await;
        assert!(errors.is_empty(), "{errors:?}");
    }
    out.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_down_reaches_webhook_ntfy_and_email_once_per_episode_with_a_quiet_period() {
    let (base, seen) = recorder().await;
    let sink = MailSink::start();
    let t = targets(&base, sink.port);
    let http = reqwest::Client::new();
    let mut alerts = Alerts::new(TH);

    assert_eq!(step(&mut alerts, &http, &t, node(NodeState::Synced), 0).await, 0, "synced at start is no news");
    assert_eq!(step(&mut alerts, &http, &t, node(NodeState::Crashed), 60).await, 1);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2, "{seen:?}");
        let hook = seen.iter().find(|s| s.0 == "/hook").expect("webhook POST");
        let json: serde_json::Value = serde_json::from_str(&hook.2).unwrap();
        assert_eq!((json["event"].as_str(), json["coin"].as_str()), (Some("node_down"), Some("btc")));
        assert!(json["message"].as_str().unwrap().contains("BTC node crashed"), "{json}");
        let ntfy = seen.iter().find(|s| s.0 == "/minebox-topic").expect("ntfy POST");
        assert_eq!(ntfy.1, "Node down");
        assert!(ntfy.2.contains("exit status 1"), "{}", ntfy.2);
    }
    let mail = sink.wait_for(1);
    assert!(mail[0].contains("Subject: MineBox: Node down"), "{}", mail[0]);
    assert!(mail[0].contains("To: owner@example.org"), "{}", mail[0]);
    assert!(mail[0].contains("BTC node crashed"), "{}", mail[0]);

    // Crash-looping, back, down again: all within the quiet hour, nothing more goes out.
    for (state, at) in [(NodeState::CrashLoop, 120), (NodeState::Syncing, 600), (NodeState::Crashed, 700)] {
        assert_eq!(step(&mut alerts, &http, &t, node(state), at).await, 0, "{state:?} at {at}");
    }
    // It syncs (news), then clears; after the quiet period a new crash goes out again.
    assert_eq!(step(&mut alerts, &http, &t, node(NodeState::Synced), 3000).await, 1);
    assert_eq!(step(&mut alerts, &http, &t, node(NodeState::Crashed), 3000 + 3600).await, 1);

    let seen = seen.lock().unwrap();
    let events: Vec<String> = seen
        .iter()
        .filter(|s| s.0 == "/hook")
        .map(|s| serde_json::from_str::<serde_json::Value>(&s.2).unwrap()["event"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events, ["node_down", "node_synced", "node_down"]);
    assert_eq!(seen.iter().filter(|s| s.0 == "/minebox-topic").count(), 3);
    let mail = sink.wait_for(3);
    assert_eq!(mail.len(), 3, "a message per alert, no more");
    assert!(mail.iter().any(|m| m.contains("Subject: MineBox: Node synced")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_does_not_stop_the_others() {
    let (base, seen) = recorder().await;
    let sink = MailSink::start();
    let http = reqwest::Client::new();
    let miner =
        minebox_status::alert::Alert::MinerSilent { coin: "btc".into(), worker: "bc1q.axe".into(), minutes: 12 };

    // The webhook's server is gone: ntfy and email still get the alert, and the error names it.
    let mut t = targets(&base, sink.port);
    t.webhook = Some(format!("http://127.0.0.1:{}/hook", dead_port()).parse().unwrap());
    let errors = deliver(&http, &t, &miner).await;
    assert_eq!(errors.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["webhook"], "{errors:?}");
    assert_eq!(seen.lock().unwrap().iter().filter(|s| s.0 == "/minebox-topic").count(), 1);
    assert!(sink.wait_for(1)[0].contains("Subject: MineBox: Miner silent"));

    // The mail server is down: the webhook and ntfy still get it.
    let t = targets(&base, dead_port());
    let errors = deliver(&http, &t, &miner).await;
    assert_eq!(errors.iter().map(|e| e.target.as_str()).collect::<Vec<_>>(), ["email to owner@example.org"]);
    assert!(errors[0].message.contains("did not answer"), "{}", errors[0]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.iter().filter(|s| s.0 == "/hook").count(), 1);
    assert_eq!(seen.iter().filter(|s| s.0 == "/minebox-topic").count(), 2);
}

/// The supervisor, stratum server and updater as one fake HTTP server answering with the
/// services' own types; the status service's look at the box turns them into alerts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_services_report_becomes_alerts() {
    use minebox_api::{stratum, supervisor, updater};
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let node = supervisor::Node {
        coin: "btc".into(),
        network: "regtest".into(),
        flavour: "core".into(),
        state: NodeState::CrashLoop,
        detail: "exited 3 times in 10 minutes".into(),
        health: None,
        pid: None,
        restarts: 3,
        rpc_url: String::new(),
        zmq_hashblock: None,
        credentials_file: "/nonexistent".into(),
        backend: "process".into(),
    };
    let silent = stratum::Worker {
        coin: "btc".into(),
        worker: "bc1q.axe".into(),
        last_share_at: now as i64 - 20 * 60,
        hashrate: stratum::Hashrates { m1: 0.0, h1: 5e11, d1: 1e12 },
        ..Default::default()
    };
    let status = updater::Status {
        last_result: Some(updater::HistoryEntry {
            at: now - 60,
            version: "1.2.0".into(),
            from_version: "1.1.0".into(),
            result: updater::Outcome::RolledBack,
            message: "stratum did not start".into(),
        }),
        ..Default::default()
    };
    let (n, w, s) = (
        serde_json::to_value(vec![node]).unwrap(),
        serde_json::to_value(vec![silent]).unwrap(),
        serde_json::to_value(status).unwrap(),
    );
    let services = axum::Router::new()
        .route(supervisor::NODES, axum::routing::get(move || async move { axum::Json(n) }))
        .route(stratum::WORKERS, axum::routing::get(move || async move { axum::Json(w) }))
        .route(updater::STATUS, axum::routing::get(move || async move { axum::Json(s) }));
    // Each service on its own port, as on the box (the settings refuse a shared one).
    let mut addrs = Vec::new();
    for _ in 0..4 {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        addrs.push(listener.local_addr().unwrap());
        let services = services.clone();
        tokio::spawn(async move { axum::serve(listener, services).await.unwrap() });
    }

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("minebox.toml");
    std::fs::write(
        &config,
        format!(
            "[stratum]\napi = \"{}\"\n[supervisor]\napi = \"{}\"\nbackend = \"process\"\n\
             [snapshots]\napi = \"{}\"\n[updates]\napi = \"{}\"\n[status]\napply = []\n",
            addrs[0], addrs[1], addrs[2], addrs[3]
        ),
    )
    .unwrap();
    let app = minebox_status::app::App::new(minebox_status::app::Options {
        config,
        defaults: None,
        registry: minebox_coin::Registry::embedded(),
        accounts: Some(dir.path().join("accounts")),
        data_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    let obs = minebox_status::feed::observe(&app).await;
    // This machine's own disk is not under test.
    let th =
        Thresholds { disk_low_bytes: 0, disk_low_percent: 0.0, ..Thresholds::from_settings(&app.settings().notify) };
    let mut alerts = Alerts::new(th);
    let got = alerts.observe(&obs, now as i64);
    let kinds: Vec<&str> = got.iter().map(|a| a.kind()).collect();
    assert_eq!(kinds, ["node_down", "miner_silent", "update_rolled_back"], "{got:?}");
    assert!(got[0].headline().contains("keeps crashing"), "{}", got[0].headline());
    // Looked at again a minute later: nothing new.
    let obs = minebox_status::feed::observe(&app).await;
    assert!(alerts.observe(&obs, now as i64 + 60).is_empty());

    let (base, seen) = recorder().await;
    let t = Targets { email: None, ..targets(&base, 0) };
    for a in &got {
        assert!(deliver(&reqwest::Client::new(), &t, a).await.is_empty());
    }
    assert_eq!(seen.lock().unwrap().len(), 6, "three alerts to webhook and ntfy");
}
