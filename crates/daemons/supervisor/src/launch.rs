//! How a node is started: its command line and, for the Bitcoin Core family, the config
//! file the supervisor writes for it.
//!
//! Everything a node needs to serve MineBox safely is decided here: RPC on 127.0.0.1 only
//! with generated credentials, a ZMQ hashblock publisher for the stratum server, pruning
//! from the disk budget, dbcache from the memory budget (large while syncing, small after),
//! a modest peer count, no wallet.

use crate::credentials::{self, Credentials};
use minebox_coin::Configured;
use minebox_settings::CoinSettings;
use std::path::{Path, PathBuf};

/// Everything needed to start and talk to one node.
#[derive(Debug, Clone)]
pub struct Launch {
    pub coin: String,
    pub program: String,
    pub args: Vec<String>,
    /// A config file to write before starting (path, contents).
    pub config: Option<(PathBuf, String)>,
    pub data_dir: PathBuf,
    pub rpc_url: String,
    pub credentials: Credentials,
    pub zmq_hashblock: Option<String>,
    /// The dbcache this launch uses (MiB), when the node has one.
    pub dbcache_mib: Option<u64>,
}

/// Whether the node is (or may be) in initial download: the cache is sized for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    InitialSync,
    Synced,
}

/// dbcache for a memory budget: most of it while syncing (the UTXO cache is what makes
/// initial sync fast), a quarter once synced (the rest is the OS page cache and mempool).
pub fn dbcache_mib(memory_budget_mib: u64, phase: Phase) -> u64 {
    match phase {
        Phase::InitialSync => (memory_budget_mib * 3 / 4).max(300),
        Phase::Synced => (memory_budget_mib / 4).max(300),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("{0}")]
    Credentials(#[from] credentials::CredentialsError),
}

pub fn plan(coin: &CoinSettings, nodes_dir: &Path, secrets_dir: &Path, phase: Phase) -> Result<Launch, LaunchError> {
    let creds = credentials::load_or_create(secrets_dir, &coin.id)?;
    let data_dir = nodes_dir.join(&coin.id);
    let rpc_url = format!("http://127.0.0.1:{}/", coin.rpc_port);
    let zmq = format!("tcp://127.0.0.1:{}", coin.zmq_port);
    let program = coin.node_command[0].clone();
    let mut args: Vec<String> = coin.node_command[1..].to_vec();
    let chain = coin.node_flavour.chain(&coin.network.name);
    match coin.node_flavour.configured() {
        configured @ (Configured::FileWithNetworkSections | Configured::FileWithNetworkFlag) => {
            let dbcache = dbcache_mib(coin.memory_budget_mib, phase);
            let salt = hex::encode(rand::random::<[u8; 16]>());
            let mut options = vec![
                "# Written by minebox-supervisor from /data/minebox/minebox.toml; edits are overwritten.".to_string(),
                "server=1".into(),
                "rpcbind=127.0.0.1".into(),
                "rpcallowip=127.0.0.1".into(),
                format!("rpcport={}", coin.rpc_port),
                format!("rpcauth={}", credentials::rpcauth(&creds.user, &creds.password, &salt)),
                format!("port={}", coin.p2p_port),
                format!("zmqpubhashblock={zmq}"),
                format!("prune={}", coin.prune_mib),
                format!("dbcache={dbcache}"),
                format!("maxconnections={}", coin.max_connections),
                "maxmempool=300".into(),
                "disablewallet=1".into(),
                // The box runs no Tor: without this Core dials a Tor control port on
                // 127.0.0.1:9051 at every start and logs the failure as a warning.
                "listenonion=0".into(),
                // Logs go to journald through stdout; no debug.log filling the SSD.
                "printtoconsole=1".into(),
                "nodebuglogfile=1".into(),
            ];
            let config = if configured == Configured::FileWithNetworkSections {
                // Bitcoin Core reads network-specific options only from the network's section.
                options.insert(1, format!("chain={chain}"));
                let section = format!("[{chain}]");
                let (common, specific) = options.split_at(2);
                format!("{}\n{section}\n{}\n", common.join("\n"), specific.join("\n"))
            } else {
                // The Bitcoin Cash family and SV Node take the network on the command line
                // and options at the top level.
                match chain {
                    "main" => {}
                    "test" => args.push("-testnet".into()),
                    other => args.push(format!("-{other}")),
                }
                format!("{}\n", options.join("\n"))
            };
            let conf = data_dir.join("minebox-node.conf");
            args.push(format!("-datadir={}", data_dir.display()));
            args.push(format!("-conf={}", conf.display()));
            Ok(Launch {
                coin: coin.id.clone(),
                program,
                args,
                config: Some((conf, config)),
                data_dir,
                rpc_url,
                credentials: creds,
                zmq_hashblock: Some(zmq),
                dbcache_mib: Some(dbcache),
            })
        }
        Configured::CommandLine => {
            // Development and tests only: bcoin takes everything on the command line; its
            // API key is the RPC password (any user name is accepted).
            args.extend([
                format!("--network={chain}"),
                "--memory=false".into(),
                "--http-host=127.0.0.1".into(),
                format!("--http-port={}", coin.rpc_port),
                format!("--port={}", coin.p2p_port),
                format!("--api-key={}", creds.password),
                format!("--prefix={}", data_dir.display()),
                "--listen=false".into(),
                "--max-outbound=1".into(),
                format!("--only=127.0.0.1:{}", coin.p2p_port),
                "--no-wallet".into(),
                "--workers=false".into(),
                "--log-level=warning".into(),
            ]);
            Ok(Launch {
                coin: coin.id.clone(),
                program,
                args,
                config: None,
                data_dir,
                rpc_url,
                credentials: creds,
                zmq_hashblock: None,
                dbcache_mib: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minebox_coin::Registry;
    use minebox_settings::Settings;

    fn coin(toml: &str, id: &str) -> CoinSettings {
        let s =
            Settings::from_texts("u", toml, "d", minebox_settings::EMBEDDED_DEFAULTS, &Registry::embedded()).unwrap();
        s.coins[id].clone()
    }

    #[test]
    fn bitcoin_core_gets_a_private_pruned_node_with_zmq() {
        let dir = tempfile::tempdir().unwrap();
        let c = coin("[coins.btc]\nenabled = true\npayout_address = \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\"\nmemory_budget_mib = 4000\n", "btc");
        let l = plan(&c, &dir.path().join("nodes"), &dir.path().join("secrets"), Phase::InitialSync).unwrap();
        let (path, conf) = l.config.unwrap();
        assert_eq!(path, dir.path().join("nodes/btc/minebox-node.conf"));
        let lines: Vec<&str> = conf.lines().collect();
        assert!(lines.contains(&"chain=main"));
        assert!(lines.contains(&"[main]"));
        for want in [
            "rpcbind=127.0.0.1",
            "rpcallowip=127.0.0.1",
            "rpcport=8332",
            "zmqpubhashblock=tcp://127.0.0.1:28332",
            "prune=10240",
            "dbcache=3000",
            "disablewallet=1",
            "maxconnections=16",
        ] {
            assert!(lines.contains(&want), "missing {want} in\n{conf}");
        }
        let auth = lines.iter().find(|l| l.starts_with("rpcauth=minebox:")).expect("rpcauth line");
        assert!(!conf.contains(&l.credentials.password), "no password in the node's config");
        assert!(auth.contains('$'));
        assert!(l.args.contains(&format!("-conf={}", path.display())));
        // Once synced, the cache shrinks.
        assert_eq!(dbcache_mib(4000, Phase::Synced), 1000);
    }

    #[test]
    fn bitcoin_cash_node_on_testnet_takes_the_network_flag() {
        let dir = tempfile::tempdir().unwrap();
        let c = coin("[coins.bch]\nnetwork = \"test\"\n", "bch");
        let l = plan(&c, dir.path(), dir.path(), Phase::Synced).unwrap();
        assert!(l.args.contains(&"-testnet".to_string()));
        let conf = l.config.unwrap().1;
        assert!(!conf.contains("chain="), "BCHN has no chain= option");
        assert!(conf.contains("rpcport=18432"));
        assert!(conf.contains("dbcache=512"));
    }

    #[test]
    fn bitcoin_core_testnet_means_testnet4() {
        let dir = tempfile::tempdir().unwrap();
        let c = coin("[coins.btc]\nnetwork = \"test\"\n", "btc");
        let conf = plan(&c, dir.path(), dir.path(), Phase::Synced).unwrap().config.unwrap().1;
        assert!(conf.contains("chain=testnet4\n[testnet4]\n"), "{conf}");
    }

    #[test]
    fn bcoin_for_development_gets_flags_and_its_api_key() {
        let dir = tempfile::tempdir().unwrap();
        let c = coin("[coins.btc]\nnetwork = \"regtest\"\nnode_flavour = \"bcoin\"\nnode_command = [\"node\", \"bcoin/bin/node\"]\nrpc_port = 19001\n", "btc");
        let l = plan(&c, dir.path(), dir.path(), Phase::Synced).unwrap();
        assert_eq!(l.program, "node");
        assert_eq!(l.args[0], "bcoin/bin/node");
        assert!(l.args.contains(&"--network=regtest".to_string()));
        assert!(l.args.contains(&format!("--api-key={}", l.credentials.password)));
        assert_eq!(l.rpc_url, "http://127.0.0.1:19001/");
        assert!(l.config.is_none());
    }
}
