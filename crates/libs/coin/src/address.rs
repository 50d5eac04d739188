//! Payout addresses: what a miner types as its stratum user, turned into the output script
//! the coinbase pays. A wrong address must fail loudly here, before any hashing is done
//! for it: a block paying an address the owner cannot spend is lost for good.

use crate::cashaddr::{self, CashAddrType};
use crate::Network;
use bitcoin::address::{Address, AddressType, NetworkUnchecked};
use bitcoin::base58;
use bitcoin::hashes::Hash;
use bitcoin::{PubkeyHash, ScriptBuf, ScriptHash};
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// How a network writes its addresses (from the coin descriptor).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "format", rename_all = "lowercase")]
pub enum AddressFormat {
    /// Bitcoin's formats (base58 and bech32/bech32m), all five kinds, via rust-bitcoin.
    Bitcoin { network: BitcoinNetwork },
    /// CashAddr, plus legacy base58 with these version bytes.
    Cashaddr { prefix: String, p2pkh: u8, p2sh: u8 },
    /// Legacy base58 only.
    Legacy { p2pkh: u8, p2sh: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BitcoinNetwork {
    Bitcoin,
    Testnet,
    Testnet4,
    Signet,
    Regtest,
}

impl BitcoinNetwork {
    fn to_rust_bitcoin(self) -> bitcoin::Network {
        match self {
            BitcoinNetwork::Bitcoin => bitcoin::Network::Bitcoin,
            BitcoinNetwork::Testnet => bitcoin::Network::Testnet,
            BitcoinNetwork::Testnet4 => bitcoin::Network::Testnet4,
            BitcoinNetwork::Signet => bitcoin::Network::Signet,
            BitcoinNetwork::Regtest => bitcoin::Network::Regtest,
        }
    }

    /// What addresses of this network start with, for error messages.
    fn starts(self) -> &'static str {
        match self {
            BitcoinNetwork::Bitcoin => "bc1, 1 or 3",
            BitcoinNetwork::Regtest => "bcrt1, m, n or 2",
            _ => "tb1, m, n or 2",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PayoutKind {
    P2pkh,
    P2sh,
    P2wpkh,
    P2wsh,
    P2tr,
}

/// A checked payout address and the script that pays it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    address: String,
    kind: PayoutKind,
    script: ScriptBuf,
}

impl Payout {
    pub fn script_pubkey(&self) -> &ScriptBuf {
        &self.script
    }
    pub fn kind(&self) -> PayoutKind {
        self.kind
    }
}

impl fmt::Display for Payout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "{address} is a {found} address but this box mines {coin} {network}; use an address starting with {expected}"
    )]
    WrongNetwork { address: String, found: String, coin: String, network: String, expected: String },
    #[error("{address} is not a {coin} address ({why})")]
    Invalid { address: String, coin: String, why: String },
    #[error("{address} is a segwit address, but {coin} has no segwit: use a {format} address")]
    SegwitOnNonSegwitCoin { address: String, coin: String, format: String },
    #[error("{address} uses a segwit version this server does not pay to; use a bc1q or bc1p address")]
    UnsupportedWitnessVersion { address: String },
}

fn which_bitcoin_network(a: &Address<NetworkUnchecked>) -> &'static str {
    use bitcoin::Network::*;
    if a.is_valid_for_network(Bitcoin) {
        "Bitcoin mainnet"
    } else if a.is_valid_for_network(Regtest) && !a.is_valid_for_network(Testnet) {
        "Bitcoin regtest"
    } else {
        "Bitcoin testnet/signet"
    }
}

pub(crate) fn parse(net: &Network, address: &str) -> Result<Payout, AddressError> {
    let address = address.trim();
    let invalid = |why: &str| AddressError::Invalid {
        address: address.to_string(),
        coin: net.coin_name.clone(),
        why: why.to_string(),
    };
    match &net.address {
        AddressFormat::Bitcoin { network } => {
            let unchecked = Address::<NetworkUnchecked>::from_str(address).map_err(|e| invalid(&e.to_string()))?;
            let found = which_bitcoin_network(&unchecked);
            let checked =
                unchecked.require_network(network.to_rust_bitcoin()).map_err(|_| AddressError::WrongNetwork {
                    address: address.to_string(),
                    found: found.to_string(),
                    coin: net.coin_name.clone(),
                    network: net.name.clone(),
                    expected: network.starts().to_string(),
                })?;
            let kind = match checked.address_type() {
                Some(AddressType::P2pkh) => PayoutKind::P2pkh,
                Some(AddressType::P2sh) => PayoutKind::P2sh,
                Some(AddressType::P2wpkh) => PayoutKind::P2wpkh,
                Some(AddressType::P2wsh) => PayoutKind::P2wsh,
                Some(AddressType::P2tr) => PayoutKind::P2tr,
                _ => return Err(AddressError::UnsupportedWitnessVersion { address: address.to_string() }),
            };
            Ok(Payout { address: checked.to_string(), kind, script: checked.script_pubkey() })
        }
        AddressFormat::Cashaddr { prefix, p2pkh, p2sh } => {
            reject_segwit(net, address, "CashAddr")?;
            if address.contains(':') || address.len() >= 40 {
                let (kind, hash) = cashaddr::decode(address, prefix).map_err(|e| invalid(&format!("it {e}")))?;
                let (payout_kind, script) = match kind {
                    CashAddrType::P2pkh => {
                        (PayoutKind::P2pkh, ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(hash)))
                    }
                    CashAddrType::P2sh => (PayoutKind::P2sh, ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(hash))),
                };
                return Ok(Payout { address: cashaddr::encode(prefix, kind, &hash), kind: payout_kind, script });
            }
            // Legacy base58 is still valid on Bitcoin Cash and eCash; wallets may show it.
            legacy(net, address, *p2pkh, *p2sh)
        }
        AddressFormat::Legacy { p2pkh, p2sh } => {
            reject_segwit(net, address, "legacy (1... or 3...)")?;
            legacy(net, address, *p2pkh, *p2sh)
        }
    }
}

fn reject_segwit(net: &Network, address: &str, format: &str) -> Result<(), AddressError> {
    let lower = address.to_ascii_lowercase();
    if ["bc1", "tb1", "bcrt1"].iter().any(|p| lower.starts_with(p)) {
        return Err(AddressError::SegwitOnNonSegwitCoin {
            address: address.to_string(),
            coin: net.coin_name.clone(),
            format: format.to_string(),
        });
    }
    Ok(())
}

fn legacy(net: &Network, address: &str, p2pkh: u8, p2sh: u8) -> Result<Payout, AddressError> {
    let invalid =
        |why: String| AddressError::Invalid { address: address.to_string(), coin: net.coin_name.clone(), why };
    let data = base58::decode_check(address).map_err(|e| invalid(e.to_string()))?;
    if data.len() != 21 {
        return Err(invalid(format!("{} bytes instead of 21", data.len())));
    }
    let hash: [u8; 20] = data[1..].try_into().expect("21 bytes checked");
    let (kind, script) = if data[0] == p2pkh {
        (PayoutKind::P2pkh, ScriptBuf::new_p2pkh(&PubkeyHash::from_byte_array(hash)))
    } else if data[0] == p2sh {
        (PayoutKind::P2sh, ScriptBuf::new_p2sh(&ScriptHash::from_byte_array(hash)))
    } else {
        return Err(AddressError::WrongNetwork {
            address: address.to_string(),
            found: format!("version {:#04x}", data[0]),
            coin: net.coin_name.clone(),
            network: net.name.clone(),
            expected: if p2pkh == 0 { "1 or 3".into() } else { "m, n or 2".into() },
        });
    };
    Ok(Payout { address: address.to_string(), kind, script })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Registry;

    fn net(coin: &str, network: &str) -> Network {
        Registry::embedded().get(coin).unwrap().network(network).unwrap().clone()
    }

    #[test]
    fn bitcoin_pays_all_five_kinds() {
        let main = net("btc", "main");
        // BIP173/BIP350 and classic vectors.
        let cases = [
            ("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2", PayoutKind::P2pkh, "76a914"),
            ("3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy", PayoutKind::P2sh, "a914"),
            (
                "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",
                PayoutKind::P2wpkh,
                "0014751e76e8199196d454941c45d1b3a323f1433bd6",
            ),
            (
                "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3",
                PayoutKind::P2wsh,
                "00201863143c14c5166804bd19203356da136c985678cd4d27a1b8c6329604903262",
            ),
            (
                "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0",
                PayoutKind::P2tr,
                "512079be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
            ),
        ];
        for (a, kind, script_prefix) in cases {
            let p = main.parse_address(a).unwrap();
            assert_eq!(p.kind(), kind, "{a}");
            assert!(p.script_pubkey().to_hex_string().starts_with(script_prefix), "{a}: {}", p.script_pubkey());
        }
    }

    #[test]
    fn a_mainnet_address_on_regtest_says_what_to_use_instead() {
        let e = net("btc", "regtest").parse_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4 is a Bitcoin mainnet address but this box mines Bitcoin regtest; use an address starting with bcrt1, m, n or 2"
        );
        // testnet bech32 (tb1) is not regtest (bcrt1), but base58 test addresses are shared.
        assert!(net("btc", "regtest").parse_address("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx").is_err());
        assert!(net("btc", "regtest").parse_address("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn").is_ok());
        assert!(net("btc", "signet").parse_address("tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx").is_ok());
    }

    #[test]
    fn typos_and_garbage_are_invalid_not_accepted() {
        let main = net("btc", "main");
        for bad in ["", "hello", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"] {
            assert!(matches!(main.parse_address(bad), Err(AddressError::Invalid { .. })), "{bad:?}");
        }
    }

    #[test]
    fn bitcoin_cash_takes_cashaddr_and_legacy_but_not_segwit() {
        let bch = net("bch", "main");
        let p = bch.parse_address("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a").unwrap();
        assert_eq!(p.kind(), PayoutKind::P2pkh);
        assert_eq!(p.script_pubkey().to_hex_string(), "76a91476a04053bda0a88bda5177b86a15c3b29f55987388ac");
        // The same key hash as a legacy address pays the same script.
        let legacy = bch.parse_address("1BpEi6DfDAUFd7GtittLSdBeYJvcoaVggu").unwrap();
        assert_eq!(legacy.script_pubkey(), p.script_pubkey());
        let p2sh = bch.parse_address("ppm2qsznhks23z7629mms6s4cwef74vcwvn0h829pq").unwrap();
        assert_eq!(p2sh.kind(), PayoutKind::P2sh);
        assert_eq!(p2sh.to_string(), "bitcoincash:ppm2qsznhks23z7629mms6s4cwef74vcwvn0h829pq");
        let e = bch.parse_address("bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4").unwrap_err();
        assert!(matches!(e, AddressError::SegwitOnNonSegwitCoin { .. }));
        assert!(e.to_string().contains("Bitcoin Cash has no segwit"));
        // A testnet CashAddr on mainnet is refused by its prefix.
        let t = crate::cashaddr::encode("bchtest", CashAddrType::P2pkh, &[1; 20]);
        assert!(bch.parse_address(&t).unwrap_err().to_string().contains("bchtest"));
        assert!(net("bch", "test").parse_address(&t).is_ok());
    }

    #[test]
    fn ecash_and_bsv_formats() {
        let a = crate::cashaddr::encode("ecregtest", CashAddrType::P2pkh, &[7; 20]);
        assert_eq!(net("xec", "regtest").parse_address(&a).unwrap().kind(), PayoutKind::P2pkh);
        assert!(net("xec", "main").parse_address(&a).is_err());
        let bsv = net("bsv", "main");
        assert!(bsv.parse_address("1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2").is_ok());
        assert!(bsv.parse_address("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a").is_err());
        let e = bsv.parse_address("mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn").unwrap_err();
        assert!(e.to_string().contains("use an address starting with 1 or 3"), "{e}");
    }
}
