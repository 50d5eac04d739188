//! "Link to MineBox Cloud" and telemetry against the real MineBox Cloud service
//! (`minebox_cloud::start` on a real PostgreSQL, with a real SMTP sink for the cloud user's
//! sign-up mail), driven through the status service's own HTTP API as the page drives it.
//!
//! The stratum server's local API is played by a stand-in (a test double: the real one needs a
//! node and a miner that finds a block); it serves the blocks list the sender reads.

use minebox_cloud::accounts::Throttle;
use minebox_mailsink::MailSink;
use minebox_pg::Postgres;
use minebox_status::app::{App, Options};
use minebox_status::telemetry::{Sender, Sent};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};

const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
const DB: &str = "cloud";

/// A port nothing listens on (bound, then let go).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The real cloud: a cluster with the roles docs/cloud.md tells a deployment to make.
struct Cloud {
    pg: Postgres,
    mail: MailSink,
    _running: minebox_cloud::Running,
    base: String,
    http: reqwest::Client,
}

impl Cloud {
    async fn start() -> Cloud {
        let pg = Postgres::start();
        pg.create_database(DB);
        pg.psql(
            "postgres",
            "CREATE ROLE cloud_owner LOGIN CREATEROLE; ALTER DATABASE cloud OWNER TO cloud_owner;
             CREATE ROLE minebox_api NOLOGIN; CREATE ROLE cloud_api LOGIN IN ROLE minebox_api;",
        );
        let mail = MailSink::start();
        let port = minebox_pg::free_port();
        let running = minebox_cloud::start(minebox_cloud::Config {
            owner_url: pg.url("cloud_owner", DB),
            api_url: pg.url("cloud_api", DB),
            listen: ([127, 0, 0, 1], port).into(),
            public_url: format!("http://127.0.0.1:{port}"),
            smtp_url: format!("smtp://127.0.0.1:{}", mail.port),
            mail_from: "MineBox Cloud <cloud@example.org>".into(),
            cookie_secure: false,
            behind_proxy: false,
            throttle: Throttle::default(),
            api_pool_size: 4,
            billing_webhook_secret: None,
            metrics_listen: None,
            snapshots: Default::default(),
        })
        .await
        .expect("the cloud starts");
        let base = format!("http://{}", running.addr);
        Cloud { pg, mail, _running: running, base, http: reqwest::Client::new() }
    }

    /// Signs a user up, follows the mailed link, signs in: their session cookie.
    async fn user(&self, email: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/signup", self.base))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let mail = self.mail.wait_for(1).remove(0);
        let unfolded = mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
        let at = unfolded.find("/verify?token=").expect("a verification link") + "/verify?token=".len();
        let token: String = unfolded[at..].chars().take_while(char::is_ascii_hexdigit).collect();
        let r = self.http.get(format!("{}/verify?token={token}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r = self
            .http
            .post(format!("{}/api/v1/login", self.base))
            .json(&json!({"email": email, "password": "correct horse battery"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        cookie
    }

    async fn as_user(&self, method: reqwest::Method, path: &str, cookie: &str, body: Option<Value>) -> (u16, Value) {
        // The header the cloud's own page sends with its session cookie (its CSRF guard).
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("cookie", cookie)
            .header("MineBox-CSRF", "1");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    fn count(&self, table: &str) -> u64 {
        self.pg.psql(DB, &format!("SELECT count(*) FROM {table}")).parse().unwrap()
    }
}

type Blocks = Arc<Mutex<Vec<minebox_api::stratum::Block>>>;

/// Test double: the stratum server's local API with no miners and the given blocks found.
async fn stratum_stand_in() -> (String, Blocks) {
    use axum::routing::get;
    let blocks: Blocks = Default::default();
    let b = blocks.clone();
    let app = axum::Router::new()
        .route(minebox_api::stratum::BLOCKS, get(move || async move { axum::Json(b.lock().unwrap().clone()) }))
        .fallback(get(|| async { axum::Json(json!([])) }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, blocks)
}

/// The status service with `cloud` (a URL, or none) and its device key in the test's folder.
struct Page {
    base: String,
    app: Arc<App>,
    dir: tempfile::TempDir,
    http: reqwest::Client,
    csrf: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Page {
    async fn start(cloud: Option<&str>, stratum: &str) -> Page {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("minebox.toml");
        let key = dir.path().join("data/cloud/device.key");
        std::fs::write(
            &config,
            format!(
                "[stratum]\napi = \"{stratum}\"\n[supervisor]\napi = \"127.0.0.1:{}\"\nbackend = \"process\"\n\
                 [snapshots]\napi = \"127.0.0.1:{}\"\n[updates]\napi = \"127.0.0.1:{}\"\n[status]\napply = []\n\
                 [cloud]\nurl = \"{}\"\nkey = \"{}\"\n\
                 [coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{ADDR}\"\n",
                dead_port(),
                dead_port(),
                dead_port(),
                cloud.unwrap_or(""),
                key.display()
            ),
        )
        .unwrap();
        let mut app = App::new(Options {
            config,
            defaults: None,
            registry: minebox_coin::Registry::embedded(),
            accounts: Some(dir.path().join("secrets/accounts")),
            data_dir: Some(dir.path().to_path_buf()),
        })
        .unwrap();
        // The service's own sender waits; the test runs rounds itself, as a restart would.
        app.telemetry_every = std::time::Duration::from_secs(24 * 3600);
        let app = Arc::new(app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(minebox_status::serve(app.clone(), listener, async move {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder().cookie_store(true).build().unwrap();
        let r = http.post(format!("{base}/api/v1/auth/setup")).json(&json!({"password": "correct horse"})).send().await;
        let v: Value = r.unwrap().json().await.unwrap();
        let csrf = v["csrf_token"].as_str().unwrap().to_string();
        Page { base, app, dir, http, csrf, _stop: tx }
    }

    async fn get(&self, path: &str) -> Value {
        let r = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    }

    async fn post(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.post(format!("{}{path}", self.base)).header("X-CSRF-Token", &self.csrf).send().await.unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    fn key(&self) -> std::path::PathBuf {
        self.dir.path().join("data/cloud/device.key")
    }
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn block(height: u64, found_at: i64) -> minebox_api::stratum::Block {
    minebox_api::stratum::Block {
        coin: "btc".into(),
        network: "regtest".into(),
        height,
        hash: format!("{height:064x}"),
        worker: "bitaxe1".into(),
        reward_sats: 5_000_000_000,
        found_at,
        status: minebox_api::stratum::BlockStatus::Accepted,
        ..Default::default()
    }
}

#[tokio::test]
async fn link_pair_telemetry_and_unlink_with_the_real_cloud() {
    let cloud = Cloud::start().await;
    let (stratum, blocks) = stratum_stand_in().await;
    let page = Page::start(Some(&cloud.base), &stratum).await;

    // First boot: the key is made (0640) and nothing is asked of the cloud; the text of what
    // would be sent is there.
    let v = page.get("/api/v1/cloud").await;
    assert_eq!((v["state"].as_str(), v["telemetry"].as_bool()), (Some("unlinked"), Some(false)), "{v}");
    assert_eq!(v["what_is_sent"], minebox_cloud_link::telemetry::WHAT_IS_SENT);
    assert_eq!(mode(&page.key()), 0o640, "the key is made at first boot");
    let first_key = std::fs::read(page.key()).unwrap();
    assert_eq!(cloud.count("devices"), 0, "a box never linked never talked to the cloud");
    assert!(!minebox_cloud_link::noted_linked(&page.key()));

    // Link: a change, so the CSRF token is needed; then a code and the key (0640) on /data.
    let r = page.http.post(format!("{}/api/v1/cloud/link", page.base)).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let (s, v) = page.post("/api/v1/cloud/link").await;
    assert_eq!(s, 200, "{v}");
    let code = v["code"].as_str().unwrap().to_string();
    assert!(code.len() == 9 && code.as_bytes()[4] == b'-', "{code}");
    assert_eq!(std::fs::read(page.key()).unwrap(), first_key, "linking uses the first boot's key");
    let v = page.get("/api/v1/cloud").await;
    assert_eq!((v["state"].as_str(), v["code"].as_str()), (Some("pending"), Some(code.as_str())), "{v}");
    assert!(v["expires_in"].as_i64().unwrap() > 0, "{v}");

    // The owner enters the code in their cloud account: the page shows the account, masked.
    let owner = cloud.user("owner@example.org").await;
    let (s, b) =
        cloud.as_user(reqwest::Method::POST, "/api/v1/devices/pair", &owner, Some(json!({"code": code}))).await;
    assert!(s == 200 || s == 201, "{s} {b}");
    let v = page.get("/api/v1/cloud").await;
    assert_eq!(v["state"], "linked", "{v}");
    let account = v["account"].as_str().unwrap();
    assert!(account.ends_with("***@example.org") && !account.contains("owner"), "{account}");
    assert_eq!(v["code"], Value::Null);
    assert!(minebox_cloud_link::noted_linked(&page.key()), "the snapshot agent learns the box is linked");

    // Telemetry off (the default): a round sends nothing.
    let now = minebox_platform::clock::unix_secs();
    blocks.lock().unwrap().push(block(101, now));
    assert_eq!(Sender::new(page.app.clone()).round(now).await, Sent::default());
    assert_eq!((cloud.count("device_metrics"), cloud.count("blocks")), (0, 0));

    // On, saved in the settings file as the page saves settings: heartbeat and the block.
    let r = page
        .http
        .put(format!("{}/api/v1/config", page.base))
        .header("X-CSRF-Token", &page.csrf)
        .json(&json!({"cloud": {"telemetry": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["restart_required"], false, "the sender reads the switch as it goes: no restart: {v}");
    let file = std::fs::read_to_string(page.dir.path().join("minebox.toml")).unwrap();
    assert!(file.contains("telemetry = true"), "{file}");
    let mut sender = Sender::new(page.app.clone());
    assert_eq!(sender.round(now).await, Sent { heartbeat: true, blocks: 1, daily: 0 });
    let devices = cloud.as_user(reqwest::Method::GET, "/api/v1/devices", &owner, None).await.1;
    let device = &devices["devices"][0];
    assert_eq!(device["coins"][0]["coin"], "btc", "{devices}");
    assert_eq!(device["coins"][0]["state"], "down", "no supervisor answers in this test: {devices}");
    assert_eq!(device["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!((cloud.count("device_metrics"), cloud.count("blocks")), (1, 1));

    // A restart of the service: the block is not sent again, a second one is.
    drop(sender);
    let mut sender = Sender::new(page.app.clone());
    assert_eq!(sender.round(now).await, Sent { heartbeat: true, blocks: 0, daily: 0 });
    blocks.lock().unwrap().insert(0, block(102, now));
    assert_eq!(sender.round(now).await.blocks, 1);
    assert_eq!((cloud.count("device_metrics"), cloud.count("blocks")), (3, 2));

    // The next UTC day's first round sends the day just ended, once.
    assert_eq!(sender.round(now + 86_400).await.daily, 1);
    assert_eq!(sender.round(now + 86_400).await.daily, 0);
    let day = minebox_status::telemetry::utc_day(now);
    let row = cloud.pg.psql(DB, "SELECT stat_date, blocks_found FROM mining_stats_daily");
    assert_eq!(row, format!("{day}|2"));

    // Unlinked from the account: the page says so, and telemetry stops with a reason.
    let id = device["id"].as_str().unwrap();
    let (s, _) = cloud.as_user(reqwest::Method::DELETE, &format!("/api/v1/devices/{id}"), &owner, None).await;
    assert!(s == 200 || s == 204, "{s}");
    assert_eq!(page.get("/api/v1/cloud").await["state"], "unlinked");
    assert!(!minebox_cloud_link::noted_linked(&page.key()), "the agent stops asking the cloud");
    assert!(!sender.round(now + 86_400).await.heartbeat);
    let v = page.get("/api/v1/cloud").await;
    assert!(v["telemetry_problem"].as_str().unwrap_or("").contains("unlinked from MineBox Cloud"), "{v}");

    // Linked again with the same key, then unlinked from the box.
    let (_, v) = page.post("/api/v1/cloud/link").await;
    let code = v["code"].as_str().unwrap();
    let (s, _) =
        cloud.as_user(reqwest::Method::POST, "/api/v1/devices/pair", &owner, Some(json!({"code": code}))).await;
    assert!(s == 200 || s == 201);
    assert_eq!(page.get("/api/v1/cloud").await["state"], "linked");
    // The page forgets the code it showed (a restart) while the box is linked: Link says linked.
    let (s, v) = page.post("/api/v1/cloud/link").await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("linked")), "{v}");
    let (s, v) = page.post("/api/v1/cloud/unlink").await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("unlinked")), "{v}");
    assert!(!minebox_cloud_link::noted_linked(&page.key()));
    let devices = cloud.as_user(reqwest::Method::GET, "/api/v1/devices", &owner, None).await.1;
    assert_eq!(devices["devices"].as_array().map(Vec::len), Some(0), "{devices}");
}

#[tokio::test]
async fn no_cloud_or_an_unreachable_one_is_said_in_words() {
    let (stratum, _) = stratum_stand_in().await;
    let page = Page::start(None, &stratum).await;
    let v = page.get("/api/v1/cloud").await;
    assert_eq!(v["state"], "not_configured");
    assert!(v["message"].as_str().unwrap().contains("[cloud] url"), "{v}");
    let (s, v) = page.post("/api/v1/cloud/link").await;
    assert_eq!(s, 409);
    assert!(v["error"].as_str().unwrap().contains("no MineBox Cloud is set"), "{v}");
    assert!(!page.key().exists());

    let gone = format!("http://127.0.0.1:{}", dead_port());
    let page = Page::start(Some(&gone), &stratum).await;
    let (s, v) = page.post("/api/v1/cloud/link").await;
    assert_eq!(s, 502);
    assert!(v["error"].as_str().unwrap().contains("cannot reach MineBox Cloud"), "{v}");
    // No code was given, the box was never linked: the page does not keep asking.
    let v = page.get("/api/v1/cloud").await;
    assert_eq!(v["state"], "unlinked", "{v}");
    let (s, v) = page.post("/api/v1/cloud/unlink").await;
    assert_eq!(s, 502, "{v}");
}
