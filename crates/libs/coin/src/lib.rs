//! The coins MineBox mines, as data.
//!
//! Each coin is one descriptor in `coins/*.toml` (compiled in, and loadable from a
//! directory on the image): its networks, ports, node, segwit or not, snapshot kind and
//! address format. Code asks the registry; a new SHA-256d coin is a new file, not a patch.
//!
//! - [`Registry`], [`Coin`], [`Network`]: the descriptors; [`Registry::image`] is how every
//!   service loads them (built in, plus the image's [`IMAGE_COINS_DIR`]).
//! - [`NodeFlavour`]: the node programs and how they differ.
//! - [`address`]: turning a payout address into the script a coinbase pays.
//! - [`cashaddr`]: the CashAddr format of Bitcoin Cash and eCash.

pub mod address;
pub mod cashaddr;
pub mod flavour;

pub use address::{AddressError, AddressFormat, Payout, PayoutKind};
pub use flavour::{Configured, NodeFlavour, UnknownFlavour};

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/embedded_coins.rs"));

/// Where an image puts coin descriptors beyond the built-in ones (buildroot-external/overlay/usr/share/minebox/coins);
/// a descriptor there with a built-in coin's id replaces it. Absent: the built-in set only.
pub const IMAGE_COINS_DIR: &str = "/usr/share/minebox/coins";

#[derive(Debug, thiserror::Error)]
pub enum CoinError {
    #[error("coin descriptor {file}: {message}")]
    Descriptor { file: String, message: String },
    #[error("cannot read coin descriptors in {dir}: {message}")]
    Io { dir: String, message: String },
    #[error("{coin} has no network {network:?}; it has {known}")]
    UnknownNetwork { coin: String, network: String, known: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SnapshotKind {
    /// Bitcoin Core's assumeutxo file, checked by the node itself.
    Utxo,
    /// A node's data directory, trusted through the publisher's signature.
    Datadir,
    None,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeSpec {
    /// Which node software: `bitcoin-core`, `bitcoin-cash-node`, `bitcoin-abc`, `sv-node`.
    pub flavour: NodeFlavour,
    pub binary: String,
    /// The smallest `-prune` value (MiB) the node accepts.
    pub min_prune_mib: u64,
    /// Whether the image ships this node program. A coin whose node is not in the image
    /// is mined through an external node only (`node = "external"` in the settings).
    #[serde(default = "in_image_by_default")]
    pub in_image: bool,
}

fn in_image_by_default() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Ports {
    pub p2p_port: u16,
    pub rpc_port: u16,
    pub zmq_port: u16,
    pub stratum_port: u16,
}

/// One network of a coin (main, test, signet, regtest).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Network {
    #[serde(skip)]
    pub coin: String,
    #[serde(skip)]
    pub coin_name: String,
    #[serde(skip)]
    pub name: String,
    #[serde(flatten)]
    pub ports: Ports,
    pub address: AddressFormat,
}

impl Network {
    /// The script a coinbase must pay for `address`, or why this network cannot pay it.
    pub fn parse_address(&self, address: &str) -> Result<Payout, AddressError> {
        address::parse(self, address)
    }

    pub fn is_test(&self) -> bool {
        self.name != "main"
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Coin {
    pub id: String,
    pub name: String,
    pub symbol: String,
    pub segwit: bool,
    pub block_time_secs: u64,
    #[serde(default)]
    min_tx_size: usize,
    pub snapshot: SnapshotKind,
    pub node: NodeSpec,
    pub networks: BTreeMap<String, Network>,
}

impl Coin {
    pub fn network(&self, name: &str) -> Result<&Network, CoinError> {
        self.networks.get(name).ok_or_else(|| CoinError::UnknownNetwork {
            coin: self.name.clone(),
            network: name.to_string(),
            known: self.networks.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Smallest transaction consensus allows (100 bytes on Bitcoin Cash and eCash).
    pub fn min_tx_size(&self) -> usize {
        self.min_tx_size
    }
}

#[derive(Debug, Clone)]
pub struct Registry {
    coins: BTreeMap<String, Coin>,
}

impl Registry {
    /// The descriptors compiled into this binary.
    pub fn embedded() -> Registry {
        let mut coins = BTreeMap::new();
        for (file, text) in EMBEDDED {
            let coin = parse(file, text).expect("embedded coin descriptors are tested");
            coins.insert(coin.id.clone(), coin);
        }
        Registry { coins }
    }

    /// The registry every service uses: the built-in descriptors, and those in `dir`
    /// ([`IMAGE_COINS_DIR`] on the box) over them, so a coin file added to an image is known
    /// to every service alike. A missing directory adds nothing; a broken file is an error.
    pub fn image(dir: &Path) -> Result<Registry, CoinError> {
        let mut registry = Registry::embedded();
        if dir.is_dir() {
            registry.coins.extend(Registry::load_dir(dir)?.coins);
        }
        Ok(registry)
    }

    /// The registry of this box: [`Registry::image`] of [`IMAGE_COINS_DIR`]. Every service
    /// loads it so, and so knows the same coins.
    pub fn installed() -> Result<Registry, CoinError> {
        Registry::image(Path::new(IMAGE_COINS_DIR))
    }

    /// Every `*.toml` descriptor in `dir`, and nothing else.
    pub fn load_dir(dir: &Path) -> Result<Registry, CoinError> {
        let io = |e: std::io::Error| CoinError::Io { dir: dir.display().to_string(), message: e.to_string() };
        let mut coins = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("toml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(io)?;
            let coin = parse(&path.display().to_string(), &text)?;
            coins.insert(coin.id.clone(), coin);
        }
        Ok(Registry { coins })
    }

    pub fn get(&self, id: &str) -> Option<&Coin> {
        self.coins.get(id)
    }

    pub fn ids(&self) -> Vec<String> {
        self.coins.keys().cloned().collect()
    }

    pub fn coins(&self) -> impl Iterator<Item = &Coin> {
        self.coins.values()
    }
}

fn parse(file: &str, text: &str) -> Result<Coin, CoinError> {
    let mut coin: Coin =
        toml::from_str(text).map_err(|e| CoinError::Descriptor { file: file.to_string(), message: e.to_string() })?;
    for (name, net) in coin.networks.iter_mut() {
        net.coin = coin.id.clone();
        net.coin_name = coin.name.clone();
        net.name = name.clone();
    }
    if coin.segwit && coin.networks.values().any(|n| !matches!(n.address, AddressFormat::Bitcoin { .. })) {
        return Err(CoinError::Descriptor {
            file: file.to_string(),
            message: "a segwit coin needs the bitcoin address format on every network".into(),
        });
    }
    Ok(coin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ships_the_four_coins_with_their_networks() {
        let r = Registry::embedded();
        assert_eq!(r.ids(), vec!["bch", "bsv", "btc", "xec"]);
        let btc = r.get("btc").unwrap();
        assert!(btc.segwit);
        assert_eq!(btc.snapshot, SnapshotKind::Utxo);
        assert_eq!(btc.networks.keys().collect::<Vec<_>>(), vec!["main", "regtest", "signet", "test"]);
        assert_eq!(btc.network("main").unwrap().ports.rpc_port, 8332);
        assert_eq!(btc.network("regtest").unwrap().ports.rpc_port, 18443);
        let bch = r.get("bch").unwrap();
        assert!(!bch.segwit);
        assert_eq!(bch.min_tx_size(), 100);
        assert_eq!(bch.snapshot, SnapshotKind::Datadir);
        assert_eq!(r.get("xec").unwrap().node.flavour, NodeFlavour::BitcoinAbc);
        assert_eq!(r.get("bsv").unwrap().node.flavour, NodeFlavour::SvNode);
    }

    #[test]
    fn stratum_ports_never_collide_between_coins() {
        let r = Registry::embedded();
        let mut seen = std::collections::HashMap::new();
        for c in r.coins() {
            for n in c.networks.values() {
                if let Some(other) = seen.insert(n.ports.stratum_port, format!("{} {}", c.id, n.name)) {
                    panic!("stratum port {} used by {other} and {} {}", n.ports.stratum_port, c.id, n.name);
                }
            }
        }
    }

    #[test]
    fn unknown_network_lists_the_known_ones() {
        let r = Registry::embedded();
        let e = r.get("bch").unwrap().network("signet").unwrap_err().to_string();
        assert_eq!(e, "Bitcoin Cash has no network \"signet\"; it has main, regtest, test");
    }

    #[test]
    fn a_broken_descriptor_names_its_file() {
        let e = parse("coins/bad.toml", "id = 1").unwrap_err().to_string();
        assert!(e.starts_with("coin descriptor coins/bad.toml:"), "{e}");
    }

    #[test]
    fn a_coin_file_in_the_image_directory_joins_the_built_in_coins() {
        let dir = tempfile::tempdir().unwrap();
        let btc = EMBEDDED.iter().find(|(file, _)| *file == "btc.toml").unwrap().1;
        std::fs::write(dir.path().join("tbtc.toml"), btc.replace("id = \"btc\"", "id = \"tbtc\"")).unwrap();
        let r = Registry::image(dir.path()).unwrap();
        assert_eq!(r.ids(), vec!["bch", "bsv", "btc", "tbtc", "xec"]);
        assert_eq!(Registry::image(&dir.path().join("absent")).unwrap().ids(), Registry::embedded().ids());
        std::fs::write(dir.path().join("bad.toml"), "id = 1").unwrap();
        let e = Registry::image(dir.path()).unwrap_err().to_string();
        assert!(e.contains("bad.toml"), "{e}");
    }

    #[test]
    fn the_repository_directory_loads_like_the_embedded_set() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../coins");
        let r = Registry::load_dir(&dir).unwrap();
        assert_eq!(r.ids(), Registry::embedded().ids());
    }
}
