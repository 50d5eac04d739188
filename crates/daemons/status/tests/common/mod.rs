//! What the status page's HTTP tests share: the real service started on a test directory,
//! and reading its JSON answers. Each test file keeps its own `Browser` (they sign in
//! differently: first-visit setup, the two-factor step, a role's plain login).

use minebox_status::app::{App, Options};
use minebox_test_support::free_port;
use reqwest::StatusCode;
use serde_json::Value;
use std::path::Path;
use std::sync::Arc;

/// The owner's payout address in the settings every test starts with.
pub const ADDR: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

pub struct Page {
    pub base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The status page on `dir`, its settings written on the first start (with an owner's
/// comment, which an edit through the page must keep): btc regtest enabled, the stratum API
/// at `stratum` if given, every other service it reads where nothing listens.
pub async fn start(dir: &Path, stratum: Option<&str>) -> Page {
    let config = dir.join("minebox.toml");
    if !config.exists() {
        let dead = || format!("127.0.0.1:{}", free_port());
        let stratum = stratum.map_or_else(dead, str::to_string);
        std::fs::write(
            &config,
            format!(
                "# the owner's comment\n[stratum]\napi = \"{stratum}\"\n[supervisor]\napi = \"{}\"\nbackend = \"process\"\n\
                 [snapshots]\napi = \"{}\"\n[updates]\napi = \"{}\"\n[status]\napply = []\n\
                 [coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{ADDR}\"\n",
                dead(),
                dead(),
                dead()
            ),
        )
        .unwrap();
    }
    let app = App::new(Options {
        config,
        defaults: None,
        registry: minebox_coin::Registry::embedded(),
        accounts: Some(dir.join("secrets/accounts")),
        data_dir: Some(dir.to_path_buf()),
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(minebox_status::serve(Arc::new(app), listener, async move {
        let _ = rx.await;
    }));
    Page { base, _stop: tx }
}

/// The answer's status and JSON body (null when it has none).
pub async fn json_of(r: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = r.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// An error answer's sentence.
pub fn error(v: &Value) -> &str {
    v["error"].as_str().unwrap_or("")
}
