//! The status API over real HTTP, without the other services running: sign-in, roles,
//! CSRF, settings edits, and clear answers when a service is down. (The page against the
//! whole running stack is tests/web/status.mjs, run by tests/checks.d/status-web.sh.)

use minebox_status::app::{App, Options};
use minebox_test_support::free_port;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;

const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

struct Box {
    base: String,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Box {
    let dir = tempfile::tempdir().unwrap();
    // Every service the page reads points at a port where nothing listens.
    let dead = |p: u16| format!("127.0.0.1:{p}");
    let config = dir.path().join("minebox.toml");
    std::fs::write(
        &config,
        format!(
            "# the owner's comment\n[stratum]\napi = \"{}\"\n[supervisor]\napi = \"{}\"\nbackend = \"process\"\n\
             [snapshots]\napi = \"{}\"\n[updates]\napi = \"{}\"\n[status]\napply = []\n\
             [coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{ADDR}\"\n",
            dead(free_port()),
            dead(free_port()),
            dead(free_port()),
            dead(free_port())
        ),
    )
    .unwrap();
    let app = App::new(Options {
        config,
        defaults: None,
        registry: minebox_coin::Registry::embedded(),
        accounts: Some(dir.path().join("secrets/accounts")),
        data_dir: Some(dir.path().to_path_buf()),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(minebox_status::serve(Arc::new(app), listener, async move {
        let _ = rx.await;
    }));
    Box { base, dir, _stop: tx }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn first_visit_setup_then_roles_and_csrf() {
    let b = start().await;
    let c = client();
    let (s, v) = json_of(c.get(format!("{}/api/v1/auth/session", b.base)).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["setup_required"], true);
    assert_eq!(c.get(format!("{}/api/v1/config", b.base)).send().await.unwrap().status(), 401);

    let (s, v) = json_of(
        c.post(format!("{}/api/v1/auth/setup", b.base))
            .json(&json!({"password": "correct horse"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let csrf = v["csrf_token"].as_str().unwrap().to_string();
    // A second setup, from anyone, is refused.
    let other = client();
    let (s, _) = json_of(
        other
            .post(format!("{}/api/v1/auth/setup", b.base))
            .json(&json!({"password": "attacker wins"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 409);

    // Reading works; a change needs the CSRF token.
    assert_eq!(c.get(format!("{}/api/v1/config", b.base)).send().await.unwrap().status(), 200);
    let edit = json!({"notify": {"ntfy": "https://ntfy.sh/my-box"}});
    assert_eq!(c.put(format!("{}/api/v1/config", b.base)).json(&edit).send().await.unwrap().status(), 403);
    let (s, v) = json_of(
        c.put(format!("{}/api/v1/config", b.base)).header("X-CSRF-Token", &csrf).json(&edit).send().await.unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["notify"]["ntfy"], "https://ntfy.sh/my-box");
    assert_eq!(v["restart_required"], true, "no apply command in this test: the page says to restart");
    let text = std::fs::read_to_string(b.dir.path().join("minebox.toml")).unwrap();
    assert!(text.contains("# the owner's comment") && text.contains("ntfy = \"https://ntfy.sh/my-box\""), "{text}");

    // A viewer reads but cannot change, even with its own CSRF token.
    let (s, _) = json_of(
        c.post(format!("{}/api/v1/users", b.base))
            .header("X-CSRF-Token", &csrf)
            .json(&json!({"name": "viewer", "role": "viewer", "password": "just looking"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 201);
    let v_client = client();
    let (s, v) = json_of(
        v_client
            .post(format!("{}/api/v1/auth/login", b.base))
            .json(&json!({"user": "viewer", "password": "just looking"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["role"].as_str()), (StatusCode::OK, Some("viewer")));
    let vcsrf = v["csrf_token"].as_str().unwrap();
    assert_eq!(v_client.get(format!("{}/api/v1/config", b.base)).send().await.unwrap().status(), 200);
    let r = v_client
        .put(format!("{}/api/v1/config", b.base))
        .header("X-CSRF-Token", vcsrf)
        .json(&edit)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // Another site's page cannot sign in on the owner's behalf.
    let r = client()
        .post(format!("{}/api/v1/auth/login", b.base))
        .header("Origin", "http://evil.example")
        .json(&json!({"password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The users database holds hashes only, and no response carries them.
    let db = [
        std::fs::read(b.dir.path().join("secrets/users.db")).unwrap(),
        std::fs::read(b.dir.path().join("secrets/users.db-wal")).unwrap_or_default(),
    ]
    .concat();
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("$argon2id$") && !db.contains("correct horse"));
    for path in ["/api/v1/config", "/api/v1/auth/session", "/api/v1/overview"] {
        let body = c.get(format!("{}{path}", b.base)).send().await.unwrap().text().await.unwrap();
        assert!(!body.contains("argon2"), "{path}: {body}");
    }
}

#[tokio::test]
async fn a_service_that_is_down_is_named_not_a_crash() {
    let b = start().await;
    let c = client();
    c.post(format!("{}/api/v1/auth/setup", b.base)).json(&json!({"password": "correct horse"})).send().await.unwrap();
    let (s, v) = json_of(c.get(format!("{}/api/v1/workers", b.base)).send().await.unwrap()).await;
    assert_eq!(s, 502);
    let msg = v["error"].as_str().unwrap();
    assert!(msg.contains("stratum server is not answering") && msg.contains("minebox-stratum"), "{msg}");
    // The overview still answers, with the problem listed and the coin shown.
    let (s, v) = json_of(c.get(format!("{}/api/v1/overview", b.base)).send().await.unwrap()).await;
    assert_eq!(s, 200);
    assert_eq!(v["coins"][0]["coin"], "btc");
    assert_eq!(v["coins"][0]["node"]["state"], "unknown");
    assert!(v["problems"].as_array().unwrap().len() >= 2, "{v}");
    // The health check and metrics do not need a sign-in.
    assert_eq!(client().get(format!("{}/api/v1/health", b.base)).send().await.unwrap().status(), 200);
    let m = client().get(format!("{}/metrics", b.base)).send().await.unwrap().text().await.unwrap();
    assert!(m.contains("minebox_service_up{service=\"stratum\"} 0"), "{m}");
}

#[tokio::test]
async fn the_login_throttle_answers_429_with_retry_after() {
    let b = start().await;
    client()
        .post(format!("{}/api/v1/auth/setup", b.base))
        .json(&json!({"password": "correct horse"}))
        .send()
        .await
        .unwrap();
    let c = client();
    for _ in 0..5 {
        let r = c
            .post(format!("{}/api/v1/auth/login", b.base))
            .json(&json!({"password": "wrong horse"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = c
        .post(format!("{}/api/v1/auth/login", b.base))
        .json(&json!({"password": "correct horse"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429, "even the right password waits out the lockout");
    assert!(r.headers().get("retry-after").is_some());
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let b = start().await;
    let v: Value = client().get(format!("{}/api/v1/openapi.json", b.base)).send().await.unwrap().json().await.unwrap();
    let paths = v["paths"].as_object().unwrap();
    for p in [
        "/api/v1/overview",
        "/api/v1/workers",
        "/api/v1/blocks",
        "/api/v1/hashrate",
        "/api/v1/nodes/{coin}/{action}",
        "/api/v1/snapshots",
        "/api/v1/updates",
        "/api/v1/config",
        "/api/v1/system",
        "/api/v1/pool",
        "/api/v1/pool/addresses/{coin}",
        "/api/v1/pool/config/{coin}",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from the OpenAPI document");
    }
}
