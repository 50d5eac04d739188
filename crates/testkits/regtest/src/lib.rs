//! Real regtest nodes, started on free local ports for a test, a benchmark or the local
//! demo, and killed when dropped.
//!
//! - [`Core`]: Bitcoin Core (`../shared/peers/bin/bitcoind`, see that folder's README), the
//!   node the box runs: getblocktemplate with segwit rules, submitblock, ZMQ hashblock.
//! - [`Bcoin`]: bcoin 1.0.2 from the npm registry (`scripts/setup` installs it into the
//!   repository's `node_modules`). Its JSON-RPC speaks the bitcoind dialect MineBox uses:
//!   getblocktemplate, submitblock, getblockchaininfo, generatetoaddress, stop.

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
    #[error(
        "Bitcoin Core is not at {0} (set MINEBOX_BITCOIND to bitcoind, or put ../shared/peers beside the repository)"
    )]
    CoreNotInstalled(PathBuf),
    #[error("could not start Bitcoin Core: {0}")]
    CoreSpawn(std::io::Error),
    #[error("Bitcoin Core did not answer RPC within {0:?} (if it exited at once, install libzmq5: scripts/setup); its output and debug.log end: {1}")]
    CoreNotReady(Duration, String),
}

/// Where bcoin's `bin/node` is: `$MINEBOX_BCOIN`, else `node_modules` at the workspace root.
pub fn bcoin_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MINEBOX_BCOIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    root.join("node_modules/bcoin/bin/node")
}

/// Where Bitcoin Core's `bitcoind` is: `$MINEBOX_BITCOIND`, else `shared/peers/bin` beside
/// the repository's folder (CI clones the repository elsewhere with `shared/` next to it).
pub fn bitcoind_path() -> PathBuf {
    if let Some(p) = std::env::var_os("MINEBOX_BITCOIND") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../../shared/peers/bin/bitcoind")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free local port")
}

/// Two different free ports (RPC and ZMQ): both held while picked. Two [`free_port`] calls
/// in a row can return the same port under load, and bitcoind then answers RPC without its
/// ZMQ (seen in stratum's tests/pool_power_cut.rs, whose settings refuse the clash).
fn two_free_ports() -> (u16, u16) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("a free local port");
    let (a, b) = (bind(), bind());
    let port = |l: &TcpListener| l.local_addr().expect("a bound port").port();
    (port(&a), port(&b))
}

/// A real Bitcoin Core regtest node: its own temporary datadir, RPC on a free local port
/// with `rpcauth` credentials, ZMQ `hashblock` on another, no P2P (an island). The datadir
/// outlives [`Core::stop`], [`Core::kill`] and [`Core::restart`], so the chain survives them;
/// it is removed, and the node killed, when the value is dropped.
pub struct Core {
    child: Option<Child>,
    datadir: tempfile::TempDir,
    rpc_port: u16,
    zmq_port: u16,
    password: String,
}

/// The RPC user of every [`Core`] node.
pub const CORE_RPC_USER: &str = "minebox";

impl Core {
    /// Starts a fresh regtest chain (at genesis).
    pub async fn start() -> Result<Core, RegtestError> {
        let bin = bitcoind_path();
        if !bin.exists() {
            return Err(RegtestError::CoreNotInstalled(bin));
        }
        let (rpc_port, zmq_port) = two_free_ports();
        let mut node = Core {
            child: None,
            datadir: tempfile::Builder::new().prefix("minebox-core-").tempdir().map_err(RegtestError::CoreSpawn)?,
            rpc_port,
            zmq_port,
            password: format!("{:032x}", rand::random::<u128>()),
        };
        node.spawn().await?;
        Ok(node)
    }

    /// `rpcauth=user:salt$hmac`: the password itself never appears on bitcoind's command line.
    fn rpcauth(&self) -> String {
        use bitcoin::hashes::{hmac, sha256, Hash, HashEngine};
        let salt = format!("{:032x}", rand::random::<u128>());
        let mut engine = hmac::HmacEngine::<sha256::Hash>::new(salt.as_bytes());
        engine.input(self.password.as_bytes());
        let mac = hmac::Hmac::<sha256::Hash>::from_engine(engine);
        format!("{CORE_RPC_USER}:{salt}${}", hex_lower(mac.as_byte_array()))
    }

    async fn spawn(&mut self) -> Result<(), RegtestError> {
        let out = std::fs::File::create(self.datadir.path().join("stdout.log")).map_err(RegtestError::CoreSpawn)?;
        let mut cmd = Command::new(bitcoind_path());
        cmd.arg("-regtest")
            .arg(format!("-datadir={}", self.datadir.path().display()))
            .arg("-server=1")
            .arg(format!("-rpcauth={}", self.rpcauth()))
            .arg("-rpcbind=127.0.0.1")
            .arg("-rpcallowip=127.0.0.1")
            .arg(format!("-rpcport={}", self.rpc_port))
            .arg(format!("-zmqpubhashblock={}", self.zmq_endpoint()))
            // An island: no listening, no peers found or dialed.
            .arg("-listen=0")
            .arg("-dnsseed=0")
            .arg("-fixedseeds=0")
            .arg("-discover=0")
            .arg("-printtoconsole=0")
            .stdin(Stdio::null())
            .stdout(out.try_clone().map_err(RegtestError::CoreSpawn)?)
            .stderr(out)
            .kill_on_drop(true);
        self.child = Some(cmd.spawn().map_err(RegtestError::CoreSpawn)?);
        // Core answers -28 ("Loading block index…") until it is ready.
        wait_until_answering(&self.client(), &mut self.child).await.map_err(|limit| {
            let mut log = std::fs::read_to_string(self.datadir.path().join("stdout.log")).unwrap_or_default();
            log += &std::fs::read_to_string(self.debug_log()).unwrap_or_default();
            RegtestError::CoreNotReady(limit, tail(&log, 2000))
        })
    }

    pub fn rpc_url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.rpc_port)
    }

    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    pub fn rpc_user(&self) -> &str {
        CORE_RPC_USER
    }

    pub fn rpc_password(&self) -> &str {
        &self.password
    }

    /// Bitcoin Core's cookie file (rewritten at every start), for tests of cookie auth.
    pub fn cookie_path(&self) -> PathBuf {
        self.datadir.path().join("regtest/.cookie")
    }

    /// Where bitcoind publishes `hashblock`, e.g. `tcp://127.0.0.1:40123`.
    pub fn zmq_endpoint(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.zmq_port)
    }

    pub fn datadir(&self) -> &Path {
        self.datadir.path()
    }

    pub fn debug_log(&self) -> PathBuf {
        self.datadir.path().join("regtest/debug.log")
    }

    pub fn client(&self) -> NodeClient {
        NodeClient::new(&self.rpc_url(), Auth::UserPass { user: CORE_RPC_USER.into(), pass: self.password.clone() })
            .expect("valid local URL")
    }

    pub async fn generate_to_address(
        &self,
        n: u32,
        address: &str,
    ) -> Result<Vec<bitcoin_hash::BlockHash>, RegtestError> {
        Ok(self.client().generate_to_address(n, address).await?)
    }

    /// Stops the node cleanly (RPC `stop`, then waits for the process to exit; killed after
    /// 60 s). The chain stays in the datadir.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let _ = self.client().with_timeout(Duration::from_secs(10)).stop().await;
        if tokio::time::timeout(Duration::from_secs(60), child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    /// Kills the node with SIGKILL (a power cut for the node); the datadir stays.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Stops the node cleanly, then starts it again on the same datadir, ports and password.
    pub async fn restart(&mut self) -> Result<(), RegtestError> {
        self.stop().await;
        self.spawn().await
    }

    /// Starts the node again after [`Core::stop`] or [`Core::kill`].
    pub async fn start_again(&mut self) -> Result<(), RegtestError> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn().await
    }

    /// The node process id, e.g. to signal it from a test.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }
}

/// A P2PKH address in Bitcoin Core's regtest form (base58 version 0x6f, as testnet), for
/// `generatetoaddress` on [`Core`].
pub fn core_p2pkh_address(pubkey_hash: [u8; 20]) -> String {
    use bitcoin::hashes::Hash;
    let hash = bitcoin::PubkeyHash::from_byte_array(pubkey_hash);
    bitcoin::Address::p2pkh(hash, bitcoin::NetworkKind::Test).to_string()
}

/// A P2WPKH address in Bitcoin Core's regtest form (`bcrt1q…`).
pub fn core_p2wpkh_address(pubkey_hash: [u8; 20]) -> String {
    let program =
        bitcoin::WitnessProgram::new(bitcoin::WitnessVersion::V0, &pubkey_hash).expect("20 bytes is a v0 program");
    bitcoin::Address::from_witness_program(program, bitcoin::KnownHrp::Regtest).to_string()
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits until a node just spawned answers RPC: `Err(limit)` when it exits first or takes
/// longer than a minute, so the caller can attach the node's own log.
async fn wait_until_answering(client: &NodeClient, child: &mut Option<Child>) -> Result<(), Duration> {
    let limit = Duration::from_secs(60);
    let started = Instant::now();
    loop {
        if client.get_best_block_hash().await.is_ok() {
            return Ok(());
        }
        let exited = child.as_mut().and_then(|c| c.try_wait().ok().flatten()).is_some();
        if exited || started.elapsed() > limit {
            return Err(limit);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
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
        wait_until_answering(&self.client(), &mut self.child).await.map_err(|limit| {
            let log = std::fs::read_to_string(self.prefix.path().join("stdout.log")).unwrap_or_default();
            RegtestError::NotReady(limit, tail(&log, 2000))
        })
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

/// Bitcoin Core's deterministic regtest chain (the one its `CreateBlockChain` test helper
/// builds, and whose height-110/200/299 UTXO sets regtest's chainparams list as assumeutxo
/// snapshots): `n` blocks after the regtest genesis. Block `h` has version 4, time =
/// genesis time + h, the genesis bits, the lowest nonce from 0 up that meets the target, and
/// one coinbase: lock time h - 1, sequence 0xfffffffe, script sig `<h> OP_0` (the height as
/// a script number, OP_1..OP_16 for 1 to 16), transaction version 2, one output paying the subsidy to
/// P2WSH(OP_TRUE). Built here with rust-bitcoin so a test can hand Core a chain whose
/// assumeutxo hash Core knows.
pub fn core_deterministic_chain(n: u32) -> Vec<bitcoin::Block> {
    use bitcoin::blockdata::{opcodes, script};
    use bitcoin::hashes::Hash;
    let genesis = bitcoin::blockdata::constants::genesis_block(bitcoin::Network::Regtest);
    let op_true = script::Builder::new().push_opcode(opcodes::OP_TRUE).into_script();
    let pays_to = bitcoin::ScriptBuf::new_p2wsh(&op_true.wscript_hash());
    let target = genesis.header.target();
    let mut prev = genesis.block_hash();
    let mut out = Vec::with_capacity(n as usize);
    for height in 1..=n {
        // Regtest halves every 150 blocks.
        let subsidy = bitcoin::Amount::from_sat((50 * 100_000_000u64) >> (height / 150));
        let coinbase = bitcoin::Transaction {
            // Core's CMutableTransaction starts at its current version, 2.
            version: bitcoin::transaction::Version::TWO,
            lock_time: bitcoin::absolute::LockTime::from_consensus(height - 1),
            input: vec![bitcoin::TxIn {
                previous_output: bitcoin::OutPoint::null(),
                // `push_int` writes OP_1..OP_16 for 1 to 16 and minimal pushes above, as
                // Core's `CScript() << height` does.
                script_sig: script::Builder::new().push_int(height as i64).push_opcode(opcodes::OP_0).into_script(),
                sequence: bitcoin::Sequence(0xffff_fffe),
                witness: bitcoin::Witness::new(),
            }],
            output: vec![bitcoin::TxOut { value: subsidy, script_pubkey: pays_to.clone() }],
        };
        let mut block = bitcoin::Block {
            header: bitcoin::block::Header {
                version: bitcoin::block::Version::from_consensus(4),
                prev_blockhash: prev,
                merkle_root: bitcoin::TxMerkleNode::from_byte_array(coinbase.compute_txid().to_byte_array()),
                time: genesis.header.time + height,
                bits: genesis.header.bits,
                nonce: 0,
            },
            txdata: vec![coinbase],
        };
        while !target.is_met_by(block.block_hash()) {
            block.header.nonce += 1;
        }
        prev = block.block_hash();
        out.push(block);
    }
    out
}

/// The hash of block 200 of [`core_deterministic_chain`], as Bitcoin Core's regtest
/// chainparams name it for its height-200 assumeutxo snapshot.
pub const CORE_ASSUMEUTXO_200: &str = "385901ccbd69dff6bbd00065d01fb8a9e464dede7cfe0372443884f9b1dcf6b9";

impl Core {
    /// Hands the node `blocks` with `submitblock`, in order; returns the first refusal.
    pub async fn submit_blocks(&self, blocks: &[bitcoin::Block]) -> Result<(), String> {
        let client = self.client();
        for b in blocks {
            let hex = bitcoin::consensus::encode::serialize_hex(b);
            let r: serde_json::Value =
                client.call("submitblock", serde_json::json!([hex])).await.map_err(|e| e.to_string())?;
            // null: accepted; "duplicate": already had it (e.g. from a peer).
            if !(r.is_null() || r == "duplicate") {
                return Err(format!("block {} refused: {r}", b.block_hash()));
            }
        }
        Ok(())
    }

    /// Hands the node the headers of `blocks` with `submitheader`, in order (headers-first,
    /// as a node learns them from peers before the blocks).
    pub async fn submit_headers(&self, blocks: &[bitcoin::Block]) -> Result<(), String> {
        let client = self.client();
        for b in blocks {
            let hex = bitcoin::consensus::encode::serialize_hex(&b.header);
            client
                .call::<serde_json::Value>("submitheader", serde_json::json!([hex]))
                .await
                .map_err(|e| format!("header {} refused: {e}", b.block_hash()))?;
        }
        Ok(())
    }

    /// `dumptxoutset PATH latest`: the UTXO set at the tip, written by the node.
    pub async fn dump_txoutset(&self, path: &Path) -> Result<serde_json::Value, minebox_node_rpc::RpcError> {
        self.client()
            .with_timeout(Duration::from_secs(600))
            .call("dumptxoutset", serde_json::json!([path, "latest"]))
            .await
    }

    /// A node made but not started: its empty datadir can be filled (e.g. by a snapshot
    /// install) before [`Core::start_again`] starts it on it.
    pub fn unstarted() -> Result<Core, RegtestError> {
        let bin = bitcoind_path();
        if !bin.exists() {
            return Err(RegtestError::CoreNotInstalled(bin));
        }
        let (rpc_port, zmq_port) = two_free_ports();
        Ok(Core {
            child: None,
            datadir: tempfile::Builder::new().prefix("minebox-core-").tempdir().map_err(RegtestError::CoreSpawn)?,
            rpc_port,
            zmq_port,
            password: format!("{:032x}", rand::random::<u128>()),
        })
    }

    /// Lets the node make outbound P2P connections to `peer` (e.g. another [`Core`] on
    /// 127.0.0.1 started with [`Core::p2p_port`] listening). Islands by default.
    pub async fn add_node(&self, peer: &str) -> Result<(), minebox_node_rpc::RpcError> {
        self.client().call::<serde_json::Value>("addnode", serde_json::json!([peer, "onetry"])).await.map(|_| ())
    }
}
/// A regtest address of each kind, with the script it must be paid to.
pub fn regtest_addresses() -> Vec<(String, bitcoin::ScriptBuf)> {
    use bitcoin::key::{Secp256k1, UntweakedPublicKey};
    use bitcoin::{Address, CompressedPublicKey, Network, PrivateKey, ScriptBuf};
    let secp = Secp256k1::new();
    let key = PrivateKey::from_slice(&[0x42; 32], Network::Regtest).unwrap();
    let pk = CompressedPublicKey::from_private_key(&secp, &key).unwrap();
    let xonly: UntweakedPublicKey = pk.0.x_only_public_key().0;
    let redeem = ScriptBuf::new_p2pk(&bitcoin::PublicKey::from(pk));
    let addrs = vec![
        Address::p2pkh(pk, Network::Regtest),
        Address::p2sh(&redeem, Network::Regtest).unwrap(),
        Address::p2wpkh(&pk, Network::Regtest),
        Address::p2wsh(&redeem, Network::Regtest),
        Address::p2tr(&secp, xonly, None, Network::Regtest),
    ];
    addrs.into_iter().map(|a| (a.to_string(), a.script_pubkey())).collect()
}
