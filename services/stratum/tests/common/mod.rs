//! Shared set-up for the stratum integration tests: a real Bitcoin Core regtest node (the
//! program the box runs; bcoin where a test wants a second implementation), the server
//! started in-process against it, and a raw line client for the hostile tests.
#![allow(dead_code)]

pub mod process;

use minebox_node_rpc::NodeClient;
use minebox_regtest::{Bcoin, Core};
use minebox_stratum::connection::Limits;
use minebox_stratum::payout::CoinPayouts;
use minebox_stratum::service::{self, CoinConfig, Running, ServiceConfig};
use minebox_stratum::vardiff::VardiffConfig;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// A regtest node the server can mine on: Bitcoin Core by default, bcoin as the second
/// implementation.
pub trait TestNode {
    fn client(&self) -> NodeClient;
}

impl TestNode for Core {
    fn client(&self) -> NodeClient {
        Core::client(self)
    }
}

impl TestNode for Bcoin {
    fn client(&self) -> NodeClient {
        Bcoin::client(self)
    }
}

/// Starts Bitcoin Core regtest, or says how to get it.
pub async fn core() -> Core {
    Core::start().await.expect("Bitcoin Core starts (../shared/peers/bin/bitcoind; scripts/setup installs libzmq5)")
}

pub struct Stack {
    pub node: Core,
    pub server: Running,
    pub dir: tempfile::TempDir,
}

pub fn regtest_network() -> minebox_coin::Network {
    minebox_coin::Registry::embedded().get("btc").unwrap().network("regtest").unwrap().clone()
}

pub fn coin_config(node: &impl TestNode) -> CoinConfig {
    CoinConfig {
        coin: "btc".into(),
        network: "regtest".into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        node: node.client(),
        zmq_hashblock: None,
        segwit: true,
        min_tx_size: 0,
        payouts: Box::new(CoinPayouts(regtest_network())),
        vardiff: VardiffConfig {
            start: 0.0001,
            min: 0.00001,
            max: 1e12,
            shares_per_minute: 600.0,
            ..Default::default()
        },
        coinbase_tag: "/MineBox-test/".into(),
        extranonce2_len: 8,
        version_mask: 0x1fff_e000,
        template_refresh: Duration::from_secs(30),
        block_poll: Duration::from_millis(200),
    }
}

pub async fn start_server(node: &impl TestNode, dir: &std::path::Path, limits: Limits) -> Running {
    service::start(ServiceConfig {
        coins: vec![coin_config(node)],
        database: dir.join("state.db"),
        api_listen: "127.0.0.1:0".parse().unwrap(),
        stats_flush: Duration::from_secs(1),
        limits,
        supervisor_events: None,
    })
    .await
    .expect("server starts")
}

pub async fn stack(limits: Limits) -> Stack {
    let node = core().await;
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(&node, dir.path(), limits).await;
    Stack { node, server, dir }
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

/// A line-level client that says exactly what a test wants, hostile or not.
pub struct Raw {
    pub reader: BufReader<OwnedReadHalf>,
    pub writer: OwnedWriteHalf,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let s = TcpStream::connect(addr).await.unwrap();
        let (r, w) = s.into_split();
        Raw { reader: BufReader::new(r), writer: w }
    }

    pub async fn send(&mut self, line: &str) {
        self.writer.write_all(line.as_bytes()).await.unwrap();
        self.writer.write_all(b"\n").await.unwrap();
    }

    /// The next line as JSON, or None when the server closed the connection.
    pub async fn recv(&mut self) -> Option<Value> {
        let mut line = String::new();
        match tokio::time::timeout(Duration::from_secs(20), self.reader.read_line(&mut line)).await {
            Ok(Ok(0)) | Ok(Err(_)) => None,
            Ok(Ok(_)) => {
                Some(serde_json::from_str(&line).unwrap_or_else(|e| panic!("server sent non-JSON {line:?}: {e}")))
            }
            Err(_) => panic!("server said nothing for 20 s"),
        }
    }

    /// Reads until a reply with this id (skipping notifications).
    pub async fn reply(&mut self, id: u64) -> Value {
        loop {
            let v = self.recv().await.expect("connection closed before the reply");
            if v["id"] == id {
                return v;
            }
        }
    }

    /// Reads until the server closes the connection; returns what it said on the way.
    pub async fn until_closed(&mut self) -> Vec<Value> {
        let mut said = Vec::new();
        while let Some(v) = self.recv().await {
            said.push(v);
        }
        said
    }

    /// Subscribes and authorizes; returns the first mining.notify.
    pub async fn handshake(&mut self, user: &str) -> Value {
        self.send(r#"{"id":1,"method":"mining.subscribe","params":["test/1.0"]}"#).await;
        assert!(self.reply(1).await["error"].is_null());
        self.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{user}","x"]}}"#)).await;
        let auth = self.reply(2).await;
        assert_eq!(auth["result"], true, "{auth}");
        self.notify().await
    }

    pub async fn notify(&mut self) -> Value {
        loop {
            let v = self.recv().await.expect("closed while waiting for a job");
            if v["method"] == "mining.notify" {
                return v;
            }
        }
    }
}
