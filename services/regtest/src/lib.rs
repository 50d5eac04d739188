//! A real bcoin regtest node, started on free local ports for a test, a benchmark or the
//! local demo, and killed when dropped.
//!
//! bcoin 1.0.2 comes from the npm registry (`scripts/setup` installs it into the
//! repository's `node_modules`). Its JSON-RPC speaks the bitcoind dialect MineBox uses:
//! getblocktemplate, submitblock, getblockchaininfo, generatetoaddress, stop.

use minebox_node_rpc::{Auth, NodeClient};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

#[derive(Debug, thiserror::Error)]
pub enum RegtestError {
    #[error("bcoin is not installed at {0} (run scripts/setup, or set MINEBOX_BCOIN to bcoin's bin/node)")]
    NotInstalled(PathBuf),
    #[error("could not start bcoin: {0}")]
    Spawn(std::io::Error),
    #[error("bcoin did not answer RPC within {0:?}; its log: {1}")]
    NotReady(Duration, String),
    #[error("bcoin RPC: {0}")]
    Rpc(#[from] minebox_node_rpc::RpcError),
}

/// Where bcoin's `bin/node` is: `$MINEBOX_BCOIN`, else `node_modules` at the workspace root.
pub fn bcoin_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MINEBOX_BCOIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("node_modules/bcoin/bin/node")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free local port")
}

pub struct Bcoin {
    child: Option<Child>,
    prefix: tempfile::TempDir,
    http_port: u16,
    p2p_port: u16,
    api_key: String,
    persistent: bool,
}

impl Bcoin {
    /// An in-memory regtest chain (starts at genesis every time).
    pub async fn start() -> Result<Bcoin, RegtestError> {
        Self::launch(false).await
    }

    /// A chain kept on disk in the node's prefix, so [`Bcoin::restart`] keeps the blocks.
    pub async fn start_persistent() -> Result<Bcoin, RegtestError> {
        Self::launch(true).await
    }

    async fn launch(persistent: bool) -> Result<Bcoin, RegtestError> {
        let bin = bcoin_path();
        if !bin.exists() {
            return Err(RegtestError::NotInstalled(bin));
        }
        let mut node = Bcoin {
            child: None,
            prefix: tempfile::Builder::new().prefix("minebox-bcoin-").tempdir().map_err(RegtestError::Spawn)?,
            http_port: free_port(),
            p2p_port: free_port(),
            api_key: format!("{:032x}", rand::random::<u128>()),
            persistent,
        };
        node.spawn().await?;
        Ok(node)
    }

    async fn spawn(&mut self) -> Result<(), RegtestError> {
        let log = std::fs::File::create(self.prefix.path().join("stdout.log")).map_err(RegtestError::Spawn)?;
        let mut cmd = Command::new("node");
        cmd.arg(bcoin_path())
            .arg("--network=regtest")
            .arg(format!("--memory={}", !self.persistent))
            .arg("--http-host=127.0.0.1")
            .arg(format!("--http-port={}", self.http_port))
            .arg(format!("--port={}", self.p2p_port))
            .arg(format!("--api-key={}", self.api_key))
            .arg(format!("--prefix={}", self.prefix.path().display()))
            // An island: no listening for or dialing of peers, no wallet to slow it down.
            .arg("--listen=false")
            .arg("--max-outbound=1")
            .arg(format!("--only=127.0.0.1:{}", self.p2p_port))
            .arg("--no-wallet")
            .arg("--workers=false")
            .arg("--log-level=warning")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(RegtestError::Spawn)?)
            .stderr(log)
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().map_err(RegtestError::Spawn)?);
        let client = self.client();
        let limit = Duration::from_secs(60);
        let started = Instant::now();
        loop {
            if client.get_best_block_hash().await.is_ok() {
                return Ok(());
            }
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()).is_some();
            if exited || started.elapsed() > limit {
                let log = std::fs::read_to_string(self.prefix.path().join("stdout.log")).unwrap_or_default();
                return Err(RegtestError::NotReady(
                    limit,
                    log.chars().rev().take(2000).collect::<String>().chars().rev().collect(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.http_port)
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    pub fn client(&self) -> NodeClient {
        NodeClient::new(&self.rpc_url(), Auth::UserPass { user: "minebox".into(), pass: self.api_key.clone() })
            .expect("valid local URL")
    }

    pub async fn generate_to_address(
        &self,
        n: u32,
        address: &str,
    ) -> Result<Vec<bitcoin_hash::BlockHash>, RegtestError> {
        Ok(self.client().generate_to_address(n, address).await?)
    }

    /// Stops the node (kills it; bcoin's memory chain has nothing to flush).
    pub async fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Starts it again on the same ports and key.
    pub async fn restart(&mut self) -> Result<(), RegtestError> {
        self.stop().await;
        self.spawn().await
    }

    /// The node process id, e.g. to kill it from a test.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}

/// Re-exported so users need not depend on rust-bitcoin only for the hash type.
pub mod bitcoin_hash {
    pub use minebox_node_rpc::BlockHash;
}

/// A P2PKH address as bcoin's regtest writes it: bcoin uses its own regtest prefixes
/// (base58 version 0x3c, bech32 `rb`), not Bitcoin Core's, so `generatetoaddress` needs
/// this form. Blocks mined through MineBox pay scripts, which both nodes agree on.
pub fn bcoin_p2pkh_address(pubkey_hash: [u8; 20]) -> String {
    let mut data = vec![0x3c];
    data.extend_from_slice(&pubkey_hash);
    bitcoin::base58::encode_check(&data)
}

/// A real libzmq PUB socket (pyzmq) publishing `hashblock` exactly as bitcoind frames it.
/// bcoin has no ZMQ; this stands in for the node's publisher so the subscriber is tested
/// against the same library bitcoind uses. Needs `python3` with pyzmq (scripts/setup).
pub struct ZmqPublisher {
    child: Child,
    pub endpoint: String,
}

impl ZmqPublisher {
    pub async fn start() -> ZmqPublisher {
        Self::start_at(&format!("tcp://127.0.0.1:{}", free_port())).await
    }

    pub async fn start_at(endpoint: &str) -> ZmqPublisher {
        use tokio::io::AsyncBufReadExt;
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/zmq_publisher.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(endpoint)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 with pyzmq (run scripts/setup)");
        let mut out = tokio::io::BufReader::new(child.stdout.take().expect("piped")).lines();
        assert_eq!(
            out.next_line().await.ok().flatten().as_deref(),
            Some("ready"),
            "pyzmq publisher did not start: run scripts/setup"
        );
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        ZmqPublisher { child, endpoint: endpoint.to_string() }
    }

    /// Publishes one block hash (display hex).
    pub async fn publish(&mut self, hash: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.child.stdin.as_mut().expect("piped");
        let _ = stdin.write_all(format!("{hash}\n").as_bytes()).await;
        let _ = stdin.flush().await;
    }
}
