//! Node software as a type: every difference between the node programs MineBox runs is a
//! property here, so the supervisor, the stratum server and the status page ask the flavour
//! instead of comparing its name.

use serde::{Deserialize, Serialize};

/// Which node program serves a coin (`node.flavour` in a descriptor, `coins.<id>.node_flavour`
/// in the settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeFlavour {
    BitcoinCore,
    BitcoinCashNode,
    BitcoinAbc,
    SvNode,
    /// Development and tests only (scripts/run-local, crates/testkits/regtest): a node in Node.js.
    Bcoin,
}

/// How a node takes its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Configured {
    /// A config file the supervisor writes; options for the chosen network in that
    /// network's `[section]` (Bitcoin Core reads them only there).
    FileWithNetworkSections,
    /// A config file with every option at the top level and the network as a command-line
    /// flag (`-testnet`, `-regtest`): the Bitcoin Cash family and SV Node.
    FileWithNetworkFlag,
    /// Everything on the command line, no config file (bcoin).
    CommandLine,
}

/// What a name that is no flavour gets: the names that would be valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("node flavour {0:?} is unknown; use bitcoin-core, bitcoin-cash-node, bitcoin-abc, sv-node or bcoin")]
pub struct UnknownFlavour(pub String);

impl NodeFlavour {
    pub const ALL: [NodeFlavour; 5] = [
        NodeFlavour::BitcoinCore,
        NodeFlavour::BitcoinCashNode,
        NodeFlavour::BitcoinAbc,
        NodeFlavour::SvNode,
        NodeFlavour::Bcoin,
    ];

    /// The name in descriptors, settings and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeFlavour::BitcoinCore => "bitcoin-core",
            NodeFlavour::BitcoinCashNode => "bitcoin-cash-node",
            NodeFlavour::BitcoinAbc => "bitcoin-abc",
            NodeFlavour::SvNode => "sv-node",
            NodeFlavour::Bcoin => "bcoin",
        }
    }

    pub fn configured(self) -> Configured {
        match self {
            NodeFlavour::BitcoinCore => Configured::FileWithNetworkSections,
            NodeFlavour::BitcoinCashNode | NodeFlavour::BitcoinAbc | NodeFlavour::SvNode => {
                Configured::FileWithNetworkFlag
            }
            NodeFlavour::Bcoin => Configured::CommandLine,
        }
    }

    /// Whether the node publishes new blocks over ZMQ (`zmqpubhashblock`); without it the
    /// stratum server polls for new blocks.
    pub fn publishes_zmq(self) -> bool {
        self != NodeFlavour::Bcoin
    }

    /// Whether the node loads an assumeutxo snapshot (`loadtxoutset`) it checks itself.
    pub fn supports_assumeutxo(self) -> bool {
        self == NodeFlavour::BitcoinCore
    }

    /// The node's name for a MineBox network name (`main`, `test`, `signet`, `regtest`):
    /// Bitcoin Core's `-chain` (its testnet is testnet4), the Bitcoin Cash family's flag
    /// name, bcoin's `--network`.
    pub fn chain(self, network: &str) -> &'static str {
        match (self, network) {
            (_, "main") => "main",
            (NodeFlavour::BitcoinCore, "test") => "testnet4",
            (NodeFlavour::Bcoin, "test") => "testnet",
            (_, "test") => "test",
            (_, "signet") => "signet",
            _ => "regtest",
        }
    }
}

impl std::fmt::Display for NodeFlavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NodeFlavour {
    type Err = UnknownFlavour;
    fn from_str(s: &str) -> Result<Self, UnknownFlavour> {
        NodeFlavour::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| UnknownFlavour(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_an_unknown_name_lists_the_valid_ones() {
        for f in NodeFlavour::ALL {
            assert_eq!(f.as_str().parse::<NodeFlavour>(), Ok(f));
            assert_eq!(toml::Value::try_from(f).unwrap().as_str(), Some(f.as_str()));
        }
        let e = "btcd".parse::<NodeFlavour>().unwrap_err().to_string();
        assert_eq!(
            e,
            "node flavour \"btcd\" is unknown; use bitcoin-core, bitcoin-cash-node, bitcoin-abc, sv-node or bcoin"
        );
    }

    #[test]
    fn bitcoin_cores_testnet_is_testnet4_and_bcoin_publishes_no_zmq() {
        assert_eq!(NodeFlavour::BitcoinCore.chain("test"), "testnet4");
        assert_eq!(NodeFlavour::BitcoinCashNode.chain("test"), "test");
        assert_eq!(NodeFlavour::Bcoin.chain("test"), "testnet");
        assert!(!NodeFlavour::Bcoin.publishes_zmq() && NodeFlavour::SvNode.publishes_zmq());
        assert!(NodeFlavour::BitcoinCore.supports_assumeutxo() && !NodeFlavour::BitcoinAbc.supports_assumeutxo());
    }
}
