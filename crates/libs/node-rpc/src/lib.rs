//! Talking to a coin node: Bitcoin Core, Bitcoin Cash Node, Bitcoin ABC, bcoin.
//!
//! - [`NodeClient`]: JSON-RPC over HTTP with basic auth or the node's cookie file.
//! - [`template`]: the typed `getblocktemplate` answer.
//! - [`hashblock`]: the node's ZMQ new-block notifications.
//!
//! Errors say whether trying again can help ([`RpcError::is_transient`]): a node that is
//! restarting or still warming up is not the same as wrong credentials.

pub mod hashblock;
pub mod template;
mod zmtp;

pub use bitcoin::BlockHash;
pub use template::{BlockTemplate, TemplateTransaction};

use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the node wants to be authenticated.
#[derive(Clone)]
pub enum Auth {
    UserPass {
        user: String,
        pass: String,
    },
    /// Bitcoin Core's `.cookie` (`__cookie__:random`), rewritten at every node start, so it
    /// is read again whenever the node says 401.
    CookieFile(PathBuf),
}

impl std::fmt::Debug for Auth {
    // Credentials never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::UserPass { user, .. } => write!(f, "UserPass({user}, <secret>)"),
            Auth::CookieFile(p) => write!(f, "CookieFile({})", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    #[error("node at {url} is not reachable: {message} (is it running?)")]
    Transport { url: String, message: String },
    #[error("node at {url} refused the RPC credentials (check the node's rpcauth/cookie and MineBox's secret file)")]
    Unauthorized { url: String },
    #[error("node answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("node error {code}: {message}")]
    Node { code: i64, message: String },
    #[error("unexpected answer to {method}: {message}")]
    Decode { method: String, message: String },
    #[error("cannot read the node's cookie file {path}: {message}")]
    Cookie { path: String, message: String },
    #[error("answer to {method} is larger than {limit} bytes")]
    TooLarge { method: String, limit: usize },
}

/// Bitcoin Core's codes for "not ready yet": warming up (-28), in initial download (-10),
/// not connected (-9).
const NODE_NOT_READY: [i64; 3] = [-28, -10, -9];

impl RpcError {
    /// Whether the same call may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            RpcError::Transport { .. } => true,
            RpcError::Http { status, .. } => *status >= 500 && *status != 501,
            RpcError::Node { code, .. } => NODE_NOT_READY.contains(code),
            _ => false,
        }
    }
}

/// What `submitblock` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubmitResult {
    Accepted,
    /// The node's reason, e.g. `duplicate`, `high-hash`, `bad-cb-height`.
    Rejected(String),
}

/// `getblockchaininfo`, the fields MineBox reads.
#[derive(Debug, Clone, Deserialize)]
pub struct ChainInfo {
    pub chain: String,
    pub blocks: u64,
    #[serde(default)]
    pub headers: u64,
    #[serde(rename = "bestblockhash")]
    pub best_block_hash: BlockHash,
    #[serde(rename = "verificationprogress", default)]
    pub verification_progress: f64,
    #[serde(rename = "initialblockdownload", default)]
    pub initial_block_download: bool,
    #[serde(default)]
    pub pruned: bool,
    #[serde(default)]
    pub size_on_disk: u64,
    #[serde(default)]
    pub difficulty: f64,
}

/// Largest answer read from a node: a full template on mainnet is ~2-4 MB of hex.
const MAX_RESPONSE: usize = 32 << 20;

#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    url: String,
    auth: Auth,
    /// The cookie's `user:pass`, cached until the node rejects it.
    cookie: Arc<Mutex<Option<String>>>,
    ids: Arc<AtomicU64>,
    timeout: Duration,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeClient").field("url", &self.url).field("auth", &self.auth).finish()
    }
}

impl NodeClient {
    pub fn new(url: &str, auth: Auth) -> Result<NodeClient, RpcError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            // Keep one warm connection: template refreshes and share-time calls reuse it.
            .pool_max_idle_per_host(2)
            .build()
            .map_err(|e| RpcError::Transport { url: url.to_string(), message: e.to_string() })?;
        Ok(NodeClient {
            http,
            url: url.to_string(),
            auth,
            cookie: Arc::new(Mutex::new(None)),
            ids: Arc::new(AtomicU64::new(1)),
            timeout: Duration::from_secs(30),
        })
    }

    /// The same client with another per-call timeout (e.g. hours for `loadtxoutset`).
    pub fn with_timeout(&self, timeout: Duration) -> NodeClient {
        NodeClient { timeout, ..self.clone() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn credentials(&self, reload: bool) -> Result<String, RpcError> {
        match &self.auth {
            Auth::UserPass { user, pass } => Ok(format!("{user}:{pass}")),
            Auth::CookieFile(path) => {
                let mut cached = self.cookie.lock().expect("cookie lock");
                if reload || cached.is_none() {
                    let text = std::fs::read_to_string(path)
                        .map_err(|e| RpcError::Cookie { path: path.display().to_string(), message: e.to_string() })?;
                    *cached = Some(text.trim().to_string());
                }
                Ok(cached.clone().expect("cookie loaded"))
            }
        }
    }

    /// Calls `method` and decodes its result.
    pub async fn call<T: DeserializeOwned>(&self, method: &str, params: Value) -> Result<T, RpcError> {
        let value = match self.call_once(method, &params, false).await {
            Err(RpcError::Unauthorized { .. }) if matches!(self.auth, Auth::CookieFile(_)) => {
                self.call_once(method, &params, true).await?
            }
            other => other?,
        };
        serde_json::from_value(value)
            .map_err(|e| RpcError::Decode { method: method.to_string(), message: e.to_string() })
    }

    async fn call_once(&self, method: &str, params: &Value, reload_cookie: bool) -> Result<Value, RpcError> {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "1.0", "id": id, "method": method, "params": params });
        let auth = base64::engine::general_purpose::STANDARD.encode(self.credentials(reload_cookie)?);
        let transport = |e: reqwest::Error| RpcError::Transport { url: self.url.clone(), message: e.to_string() };
        let mut response = self
            .http
            .post(&self.url)
            .timeout(self.timeout)
            .header("Authorization", format!("Basic {auth}"))
            .json(&body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(RpcError::Unauthorized { url: self.url.clone() });
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if bytes.len() + chunk.len() > MAX_RESPONSE {
                return Err(RpcError::TooLarge { method: method.to_string(), limit: MAX_RESPONSE });
            }
            bytes.extend_from_slice(&chunk);
        }
        // Bitcoin Core answers RPC errors with HTTP 500 and a JSON body: read it first.
        let parsed: Result<Value, _> = serde_json::from_slice(&bytes);
        match parsed {
            Ok(v) if v.get("error").is_some_and(|e| !e.is_null()) => {
                let e = &v["error"];
                Err(RpcError::Node {
                    code: e["code"].as_i64().unwrap_or(0),
                    message: e["message"].as_str().unwrap_or("").to_string(),
                })
            }
            Ok(mut v) if status.is_success() => Ok(v.get_mut("result").map(Value::take).unwrap_or(Value::Null)),
            _ => Err(RpcError::Http {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            }),
        }
    }

    /// A block template; `rules` must include `segwit` for segwit coins.
    pub async fn get_block_template(&self, rules: &[&str]) -> Result<BlockTemplate, RpcError> {
        let request = if rules.is_empty() { json!([{}]) } else { json!([{ "rules": rules }]) };
        self.call("getblocktemplate", request).await
    }

    pub async fn submit_block(&self, block_hex: &str) -> Result<SubmitResult, RpcError> {
        let v: Value = self.call("submitblock", json!([block_hex])).await?;
        Ok(match v {
            Value::Null => SubmitResult::Accepted,
            Value::String(s) if s.is_empty() => SubmitResult::Accepted,
            Value::String(s) => SubmitResult::Rejected(s),
            // bcoin has answered booleans and objects in some versions; anything else is a reason.
            Value::Bool(true) => SubmitResult::Accepted,
            other => SubmitResult::Rejected(other.to_string()),
        })
    }

    pub async fn get_best_block_hash(&self) -> Result<BlockHash, RpcError> {
        self.call("getbestblockhash", json!([])).await
    }

    pub async fn get_blockchain_info(&self) -> Result<ChainInfo, RpcError> {
        self.call("getblockchaininfo", json!([])).await
    }

    pub async fn get_block_hash(&self, height: u64) -> Result<BlockHash, RpcError> {
        self.call("getblockhash", json!([height])).await
    }

    /// A block as JSON (verbosity 1: txids; 2: full transactions).
    pub async fn get_block_verbose(&self, hash: &BlockHash, verbosity: u8) -> Result<Value, RpcError> {
        // bcoin takes (hash, verbose, details) booleans; Core takes (hash, verbosity). Both
        // accept the boolean form for 1; 2 is asked for as details=true on bcoin.
        match self.call("getblock", json!([hash, verbosity])).await {
            Err(RpcError::Node { .. }) | Err(RpcError::Decode { .. }) if verbosity == 2 => {
                self.call("getblock", json!([hash, true, true])).await
            }
            other => other,
        }
    }

    /// Confirmations of a block: -1 when it is not in the best chain (orphaned).
    pub async fn get_block_confirmations(&self, hash: &BlockHash) -> Result<i64, RpcError> {
        let v: Value = self.call("getblockheader", json!([hash, true])).await?;
        v["confirmations"].as_i64().ok_or_else(|| RpcError::Decode {
            method: "getblockheader".into(),
            message: "no confirmations field".into(),
        })
    }

    pub async fn get_connection_count(&self) -> Result<u64, RpcError> {
        self.call("getconnectioncount", json!([])).await
    }

    /// Mines blocks to an address (regtest only; used by tests and the demo).
    pub async fn generate_to_address(&self, n: u32, address: &str) -> Result<Vec<BlockHash>, RpcError> {
        self.call("generatetoaddress", json!([n, address])).await
    }

    /// Asks the node to shut down cleanly.
    pub async fn stop(&self) -> Result<(), RpcError> {
        let _: Value = self.call("stop", json!([])).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let a = Auth::UserPass { user: "minebox".into(), pass: "hunter2".into() };
        let c = NodeClient::new("http://127.0.0.1:1", a).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn transient_errors_are_told_apart() {
        assert!(RpcError::Transport { url: "u".into(), message: "refused".into() }.is_transient());
        assert!(RpcError::Node { code: -28, message: "Loading block index".into() }.is_transient());
        assert!(!RpcError::Node { code: -25, message: "bad".into() }.is_transient());
        assert!(!RpcError::Unauthorized { url: "u".into() }.is_transient());
    }
}
