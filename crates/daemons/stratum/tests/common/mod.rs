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
use std::time::Duration;

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
        upstream: None,
        upstream_idle: Duration::from_secs(300),
        upstream_max_connections: minebox_stratum::upstream::DEFAULT_MAX_CONNECTIONS,
        upstream_grace: minebox_stratum::upstream::DEFAULT_GRACE,
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

// Shared with the end-to-end tests (tests/e2e): the regtest addresses live in the regtest
// kit, the raw client in the simulated miner's.
#[allow(unused_imports)]
pub use minebox_regtest::regtest_addresses;
#[allow(unused_imports)]
pub use minebox_simminer::raw::Raw;
