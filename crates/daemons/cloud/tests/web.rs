//! The account page (issue 16, point 7), on a real PostgreSQL, a real SMTP server and the real
//! service: the page is served with its security headers, cookie-authenticated writes without
//! the page's CSRF header are refused, the downloads list shows a user's own downloads only; then
//! the whole page in real headless Chromium (Debian's, driven by playwright-core:
//! tests/web/cloud.mjs): sign up, the mailed link, a wrong password, log in, pair a real box's
//! code, rename it to HTML (shown as text), unlink it, plan, usage, downloads, the leaderboard
//! switch, a cross-origin form's CSRF attempt, log out, and a password reset by mail.
//!
//! Chromium and node are installed by scripts/setup (50-browser.sh, 20-bcoin.sh's `npm ci`):
//! without them this test fails, it does not skip.

mod support;

use minebox_cloud::http::CSRF_HEADER;
use minebox_cloud_link::{BoxInfo, State};
use reqwest::Method;
use serde_json::json;
use std::path::{Path, PathBuf};
use support::{Auth, Rig, DB};

/// What the page's test renames the box to: it must show as these characters.
const HTML_NAME: &str = "<img src=x onerror=alert(1)>";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().expect("the repository")
}

/// Chromium, node and playwright-core, or a failure saying how to get them.
fn browser_tools(root: &Path) -> PathBuf {
    let chromium = std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| "/usr/bin/chromium".into());
    assert!(
        chromium.is_file(),
        "{} is missing: install Debian's chromium (scripts/setup, step 50-browser.sh) or point CHROMIUM at one",
        chromium.display()
    );
    let node = std::process::Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "node does not run ({node:?}): install it with scripts/setup (step 20-bcoin.sh)"
    );
    assert!(
        root.join("node_modules/playwright-core/package.json").is_file(),
        "playwright-core is not installed in {}: run scripts/setup (npm ci)",
        root.join("node_modules").display()
    );
    chromium
}

fn cookie(auth: &Auth) -> String {
    match auth {
        Auth::Cookie(c) => format!("minebox_session={c}"),
        Auth::Bearer(_) => unreachable!("a session user"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_page_works_in_chromium_and_refuses_cross_site_writes() {
    let root = repo_root();
    let chromium = browser_tools(&root);
    let rig = Rig::start().await;

    // The page and its files, each with the policy: own scripts and styles only, no framing.
    for (path, kind) in [
        ("/", "text/html"),
        ("/reset?token=00", "text/html"),
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
        ("/static/icon.svg", "image/svg+xml"),
    ] {
        let r = rig.http.get(format!("{}{path}", rig.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        assert!(header("content-type").starts_with(kind), "{path}: {}", header("content-type"));
        assert_eq!(header("content-security-policy"), minebox_cloud::web::CONTENT_SECURITY_POLICY, "{path}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
    let csp = minebox_cloud::web::CONTENT_SECURITY_POLICY;
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let html = rig.http.get(format!("{}/", rig.base)).send().await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"<script src="/static/app.js" defer></script>"#), "{html}");
    assert_eq!(html.matches("<script").count(), 1, "no inline script: {html}");
    let inline_handler = html.split(" on").skip(1).any(|rest| {
        let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
        !name.is_empty() && rest[name.len()..].starts_with('=')
    });
    assert!(!inline_handler, "no inline event handlers: {html}");
    let (status, body) = support::answer(rig.http.get(format!("{}/static/x.js", rig.base)).send().await.unwrap()).await;
    assert_eq!(status, 404, "{body}");

    // CSRF: a write with Bob's session cookie but without the page's header (what a form on
    // another site can make a browser send) is refused and does nothing.
    let bob = rig.session_user("bob@example.org").await;
    for (method, path, body) in [
        (Method::POST, "/api/v1/logout", None),
        (Method::PUT, "/api/v1/leaderboard/visibility", Some(json!({"public": true}))),
        (Method::POST, "/api/v1/tokens", Some(json!({"name": "csrf"}))),
    ] {
        let mut req = rig.http.request(method.clone(), format!("{}{path}", rig.base)).header("cookie", cookie(&bob));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let (status, body) = support::answer(req.send().await.unwrap()).await;
        assert_eq!(status, 403, "{method} {path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(&format!("`{CSRF_HEADER}: 1`")), "{body}");
    }
    let (status, me) = rig.call(Method::GET, "/api/v1/me", &bob, None).await;
    assert_eq!(status, 200, "the session was not ended: {me}");
    assert_eq!(me["leaderboard_public"], false, "{me}");
    let (_, tokens) = rig.call(Method::GET, "/api/v1/tokens", &bob, None).await;
    assert_eq!(tokens["tokens"], json!([]), "no token was made");
    // An API token needs no such header: a browser never attaches one by itself.
    let (status, made) = rig.call(Method::POST, "/api/v1/tokens", &bob, Some(json!({"name": "script"}))).await;
    assert_eq!(status, 201, "{made}");
    let script = Auth::Bearer(made["token"].as_str().unwrap().to_string());
    let r = rig
        .http
        .put(format!("{}/api/v1/leaderboard/visibility", rig.base))
        .bearer_auth(made["token"].as_str().unwrap())
        .json(&json!({"public": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, me) = rig.call(Method::GET, "/api/v1/me", &script, None).await;
    assert_eq!(me["leaderboard_public"], true, "{me}");

    // Downloads: two for Bob this month, recorded as the owner (as snapshot grants do).
    let (status, empty) = rig.call(Method::GET, "/api/v1/downloads", &bob, None).await;
    assert_eq!(status, 200, "{empty}");
    assert_eq!(empty["downloads"], json!([]), "{empty}");
    rig.pg.psql(
        DB,
        "INSERT INTO snapshots (id, coin_id, kind, version, block_height, block_hash, size_bytes, compressed_size_bytes,
                                chunk_count, merkle_root, manifest_sha256, index_sha256, key_id, expires_at)
         SELECT ('00000000-0000-0000-0000-00000000000' || v)::uuid, id, 'utxo', v, v * 100, repeat('a', 64), 1, 1, 1,
                repeat('b', 64), repeat('c', 64), repeat('d', 64), 'k', now() + interval '1 year'
           FROM coins, generate_series(1, 2) v WHERE coin_key = 'btc';
         INSERT INTO snapshot_downloads (snapshot_id, user_id, started_at, bytes_downloaded, chunks_downloaded)
         SELECT '00000000-0000-0000-0000-000000000001', id, date_trunc('month', now()), 1024, 3
           FROM users WHERE email = 'bob@example.org';
         INSERT INTO snapshot_downloads (snapshot_id, user_id, bytes_downloaded, chunks_downloaded, completed_at,
                                         verification_passed)
         SELECT '00000000-0000-0000-0000-000000000002', id, 4096, 9, now(), TRUE
           FROM users WHERE email = 'bob@example.org';",
    );
    let (status, list) = rig.call(Method::GET, "/api/v1/downloads", &bob, None).await;
    assert_eq!(status, 200, "{list}");
    let downloads = list["downloads"].as_array().unwrap();
    assert_eq!(downloads.len(), 2, "{list}");
    let newest = &downloads[0];
    assert_eq!(
        (&newest["coin"], &newest["kind"], &newest["network"], &newest["height"], &newest["bytes"], &newest["chunks"]),
        (&json!("btc"), &json!("utxo"), &json!("main"), &json!(200), &json!(4096), &json!(9)),
        "newest first: {list}"
    );
    assert_eq!(newest["verified"], true);
    assert!(newest["completed_at"].is_string() && downloads[1]["completed_at"].is_null(), "{list}");
    assert_eq!(downloads[1]["height"], 100);
    let (status, body) =
        support::answer(rig.http.get(format!("{}/api/v1/downloads", rig.base)).send().await.unwrap()).await;
    assert_eq!(status, 401, "{body}");

    // A real box (minebox-cloud-link, its key in a file) waits with a code for the page.
    let device = rig.device();
    let info = BoxInfo {
        name: Some("pi in the attic".into()),
        model: Some("raspberry_pi_5".into()),
        version: Some("0.1.0".into()),
    };
    let code = device.link.start_pairing(&info).await.unwrap().code;

    let shots = match std::env::var_os("MINEBOX_SCREENSHOTS") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
            .join("screenshots"),
    }
    .join("cloud");
    let out = tokio::process::Command::new("node")
        .arg(root.join("tests/web/cloud.mjs"))
        .arg(&rig.base)
        .arg(rig.mail.maildir())
        .arg(&code)
        .arg(&shots)
        .arg(HTML_NAME)
        .env("CHROMIUM", &chromium)
        .current_dir(root.join("tests/web"))
        .output()
        .await
        .expect("node runs");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    println!("{said}");
    assert!(out.status.success(), "the page's test in Chromium failed:\n{said}");

    // What the browser did reached the service and the box.
    assert_eq!(device.link.status().await.unwrap().state, State::Unlinked, "the box sees it was unlinked");
    assert_eq!(rig.pg.psql(DB, "SELECT name FROM devices"), HTML_NAME, "the name is stored as typed");
    assert_eq!(
        rig.pg.psql(DB, "SELECT leaderboard_public FROM users WHERE email = 'ann@example.org'"),
        "t",
        "the leaderboard switch"
    );
}
