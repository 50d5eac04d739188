//! `getblocktemplate` (BIP22/23, with BIP141's segwit fields), typed.
//!
//! Nodes differ: Bitcoin Cash Node sends no `weight` or witness `hash`; bcoin sends a
//! `default_witness_commitment` even while its `rules` list is empty. The types keep what
//! was sent and let the caller decide, rather than guessing here.

use bitcoin::{BlockHash, CompactTarget, ScriptBuf, Txid};
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, Deserialize)]
pub struct BlockTemplate {
    pub version: i32,
    #[serde(rename = "previousblockhash")]
    pub previous_block_hash: BlockHash,
    pub transactions: Vec<TemplateTransaction>,
    #[serde(rename = "coinbasevalue")]
    pub coinbase_value: u64,
    #[serde(deserialize_with = "compact_target")]
    pub bits: CompactTarget,
    #[serde(default)]
    pub target: String,
    pub height: u64,
    #[serde(rename = "curtime")]
    pub cur_time: u64,
    #[serde(rename = "mintime", default)]
    pub min_time: u64,
    #[serde(default, deserialize_with = "opt_script")]
    pub default_witness_commitment: Option<ScriptBuf>,
    #[serde(default)]
    pub rules: Vec<String>,
    #[serde(default)]
    pub longpollid: Option<String>,
}

impl BlockTemplate {
    /// Whether segwit is active for this block (BIP9 `rules` lists `segwit` or `!segwit`).
    /// bcoin offers a witness commitment even before activation; a block that uses it then
    /// is refused as `unexpected-witness`.
    pub fn segwit_active(&self) -> bool {
        self.rules.iter().any(|r| r == "segwit" || r == "!segwit")
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct TemplateTransaction {
    /// The raw transaction, with witness data when it has any.
    #[serde(deserialize_with = "hex_bytes")]
    pub data: Vec<u8>,
    pub txid: Txid,
    /// The wtxid (segwit nodes only).
    #[serde(default)]
    pub hash: Option<String>,
    #[serde(default)]
    pub fee: Option<u64>,
    #[serde(default)]
    pub sigops: Option<u64>,
    #[serde(default)]
    pub weight: Option<u64>,
}

fn hex_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    hex::decode(s).map_err(serde::de::Error::custom)
}

fn compact_target<'de, D: Deserializer<'de>>(d: D) -> Result<CompactTarget, D::Error> {
    let s = String::deserialize(d)?;
    u32::from_str_radix(&s, 16).map(CompactTarget::from_consensus).map_err(serde::de::Error::custom)
}

fn opt_script<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ScriptBuf>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    s.map(|s| hex::decode(s).map(ScriptBuf::from_bytes).map_err(serde::de::Error::custom)).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_bcoin_sends() {
        let v = r#"{"capabilities":["proposal"],"mutable":["time","transactions","prevblock"],"version":536870912,"rules":[],"vbavailable":{},"vbrequired":0,"height":1,"previousblockhash":"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206","target":"7fffff0000000000000000000000000000000000000000000000000000000000","bits":"207fffff","noncerange":"00000000ffffffff","curtime":1795411334,"mintime":1296688603,"maxtime":1795418534,"expires":1795418534,"sigoplimit":20000,"sizelimit":1000000,"longpollid":"0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e220600000000","submitold":false,"coinbaseaux":{"flags":"6d696e65642062792062636f696e"},"coinbasevalue":5000000000,"default_witness_commitment":"6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9","transactions":[]}"#;
        let t: BlockTemplate = serde_json::from_str(v).unwrap();
        assert_eq!(t.height, 1);
        assert_eq!(t.bits.to_consensus(), 0x207fffff);
        assert_eq!(t.coinbase_value, 5_000_000_000);
        assert!(!t.segwit_active(), "bcoin lists no rules before segwit activates");
        assert_eq!(t.default_witness_commitment.unwrap().len(), 38);
    }

    #[test]
    fn reads_a_non_segwit_template_with_transactions() {
        let v = r#"{"version":536870912,"previousblockhash":"000000000000000000a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f607","transactions":[{"data":"0100000001","txid":"a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90","fee":226,"sigops":1}],"coinbasevalue":625022600,"bits":"18034379","height":900000,"curtime":1700000000,"mintime":1699990000}"#;
        let t: BlockTemplate = serde_json::from_str(v).unwrap();
        assert!(t.default_witness_commitment.is_none());
        assert_eq!(t.transactions[0].fee, Some(226));
        assert!(t.transactions[0].weight.is_none());
    }
}
