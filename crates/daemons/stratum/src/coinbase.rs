//! The coinbase transaction: the one place where a solo miner's reward is decided.
//!
//! The server builds it once per (template, payout address) and hands the miner the bytes
//! before and after the extranonce space (`coinb1`, `coinb2`). Its input script carries the
//! BIP34 height first (consensus since block 227,931 on mainnet), then one push holding
//! extranonce1 + extranonce2, then the coinbase tag. Keeping every part a proper push keeps
//! the script parseable by explorers and by the node's own policy code.

use bitcoin::absolute::LockTime;
use bitcoin::blockdata::opcodes::all::OP_RETURN;
use bitcoin::consensus::encode::serialize;
use bitcoin::script::{Builder, PushBytesBuf};
use bitcoin::transaction::Version;
use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};

/// The miner's share of the extranonce space is 4 to 8 bytes (the bound, and what
/// every SV1 firmware handles); extranonce1 is always 4 bytes, unique per connection.
pub const EXTRANONCE1_BYTES: usize = 4;

/// Consensus allows 2..=100 bytes of coinbase input script.
const MAX_SCRIPT_SIG: usize = 100;

/// Everything that goes into one coinbase.
#[derive(Debug, Clone)]
pub struct CoinbaseSpec<'a> {
    pub height: u64,
    /// Subsidy plus fees, as the template's `coinbasevalue` says.
    pub value: Amount,
    pub payout: &'a ScriptBuf,
    /// The template's default witness commitment (segwit coins only).
    pub witness_commitment: Option<&'a ScriptBuf>,
    /// Shown in block explorers, e.g. `/MineBox/`.
    pub tag: &'a [u8],
    pub extranonce2_len: usize,
    /// Bitcoin Cash and its forks reject transactions under 100 bytes; padding goes into
    /// the input script, which is the only place that changes nothing else.
    pub min_tx_size: usize,
}

/// A coinbase split around its extranonce, as mining.notify sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coinbase {
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub extranonce2_len: usize,
    /// Whether the block must carry the 32-byte witness reserved value on the coinbase.
    pub segwit: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CoinbaseError {
    #[error(
        "extranonce2 size {0} is outside 4..=8 bytes: miners' firmware accepts at most 8 (WhatsMiner and \
         cgminer-based firmware fail above), and under 4 a fast miner runs out of work; use 8, the default"
    )]
    ExtranonceSize(usize),
    #[error("coinbase tag is {0} bytes; keep it under 40 so the input script stays within 100 bytes")]
    TagTooLong(usize),
}

impl Coinbase {
    /// Whether coinbases can be cut with these settings at all. Checked when the server
    /// starts: otherwise a bad size surfaces only as miners that never get a job.
    pub fn check(extranonce2_len: usize, tag: &[u8]) -> Result<(), CoinbaseError> {
        if !(4..=8).contains(&extranonce2_len) {
            return Err(CoinbaseError::ExtranonceSize(extranonce2_len));
        }
        if tag.len() > 40 {
            return Err(CoinbaseError::TagTooLong(tag.len()));
        }
        Ok(())
    }

    pub fn build(spec: &CoinbaseSpec<'_>) -> Result<Coinbase, CoinbaseError> {
        Coinbase::check(spec.extranonce2_len, spec.tag)?;
        let extranonce_len = EXTRANONCE1_BYTES + spec.extranonce2_len;
        let height = Builder::new().push_int(spec.height as i64).into_script();

        let mut outputs = vec![TxOut { value: spec.value, script_pubkey: spec.payout.clone() }];
        if let Some(commitment) = spec.witness_commitment {
            outputs.push(TxOut { value: Amount::ZERO, script_pubkey: commitment.clone() });
        }

        // First with no padding, then again with exactly what is missing.
        let mut padding = 0usize;
        loop {
            let script_sig = script_sig(&height, extranonce_len, spec.tag, padding);
            let tx = Transaction {
                version: Version::ONE,
                lock_time: LockTime::ZERO,
                input: vec![TxIn {
                    previous_output: OutPoint::null(),
                    script_sig,
                    sequence: Sequence::MAX,
                    witness: Witness::new(),
                }],
                output: outputs.clone(),
            };
            let bytes = serialize(&tx);
            if bytes.len() < spec.min_tx_size && padding == 0 {
                // One push opcode is added with the padding itself.
                padding = spec.min_tx_size - bytes.len();
                padding = padding.saturating_sub(1).max(1);
                continue;
            }
            debug_assert!(tx.input[0].script_sig.len() <= MAX_SCRIPT_SIG);
            // version(4) + input count(1) + outpoint(36) + script length (one byte: < 0xfd)
            let extranonce_at = 4 + 1 + 36 + 1 + height.len() + 1;
            let coinb1 = bytes[..extranonce_at].to_vec();
            let coinb2 = bytes[extranonce_at + extranonce_len..].to_vec();
            return Ok(Coinbase {
                coinb1,
                coinb2,
                extranonce2_len: spec.extranonce2_len,
                segwit: spec.witness_commitment.is_some(),
            });
        }
    }

    /// The coinbase as it is hashed into the merkle root (no witness).
    pub fn assemble(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.coinb1.len() + 12 + self.coinb2.len());
        out.extend_from_slice(&self.coinb1);
        out.extend_from_slice(extranonce1);
        out.extend_from_slice(extranonce2);
        out.extend_from_slice(&self.coinb2);
        out
    }

    /// The coinbase as it goes into a block: with the witness reserved value when the
    /// template committed to witnesses (BIP141 requires it on the coinbase input).
    pub fn transaction(&self, extranonce1: &[u8], extranonce2: &[u8]) -> Transaction {
        let bytes = self.assemble(extranonce1, extranonce2);
        let mut tx: Transaction =
            bitcoin::consensus::deserialize(&bytes).expect("coinbase built by Coinbase::build always parses");
        if self.segwit {
            tx.input[0].witness = Witness::from_slice(&[[0u8; 32]]);
        }
        tx
    }
}

fn script_sig(height: &ScriptBuf, extranonce_len: usize, tag: &[u8], padding: usize) -> ScriptBuf {
    let mut b = Builder::from(height.to_bytes())
        .push_slice(PushBytesBuf::try_from(vec![0u8; extranonce_len]).expect("extranonce is at most 12 bytes"));
    if !tag.is_empty() {
        b = b.push_slice(PushBytesBuf::try_from(tag.to_vec()).expect("tag checked to be at most 40 bytes"));
    }
    if padding > 0 {
        b = b.push_slice(PushBytesBuf::try_from(vec![0u8; padding.min(75)]).expect("padding at most 75 bytes"));
    }
    b.into_script()
}

/// Whether a script is a witness commitment output (BIP141: OP_RETURN, push 36, aa21a9ed).
pub fn is_witness_commitment(script: &ScriptBuf) -> bool {
    let b = script.as_bytes();
    b.len() >= 38 && b[0] == OP_RETURN.to_u8() && b[1] == 0x24 && b[2..6] == [0xaa, 0x21, 0xa9, 0xed]
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;

    fn payout() -> ScriptBuf {
        // P2WPKH to a fixed key hash.
        ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([7u8; 20]))
    }

    fn spec<'a>(payout: &'a ScriptBuf, commitment: Option<&'a ScriptBuf>, height: u64) -> CoinbaseSpec<'a> {
        CoinbaseSpec {
            height,
            value: Amount::from_sat(312_500_000),
            payout,
            witness_commitment: commitment,
            tag: b"/MineBox/",
            extranonce2_len: 8,
            min_tx_size: 0,
        }
    }

    #[test]
    fn extranonce_lands_exactly_between_coinb1_and_coinb2() {
        let p = payout();
        let cb = Coinbase::build(&spec(&p, None, 840_000)).unwrap();
        let tx = cb.transaction(&[1, 2, 3, 4], &[5, 6, 7, 8, 9, 10, 11, 12]);
        let script = tx.input[0].script_sig.as_bytes();
        // BIP34: 840000 = 0x0cd140 -> push of 3 bytes, little endian.
        assert_eq!(&script[..4], &[0x03, 0x40, 0xd1, 0x0c]);
        assert_eq!(&script[4..17], &[12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        assert!(script.windows(9).any(|w| w == b"/MineBox/"));
        assert!(tx.is_coinbase());
        assert_eq!(tx.output[0].script_pubkey, p);
        assert_eq!(tx.output[0].value, Amount::from_sat(312_500_000));
    }

    #[test]
    fn small_heights_use_op_n_like_bitcoin_core() {
        let p = payout();
        let cb = Coinbase::build(&spec(&p, None, 5)).unwrap();
        let tx = cb.transaction(&[0; 4], &[0; 8]);
        assert_eq!(tx.input[0].script_sig.as_bytes()[0], 0x55); // OP_5
    }

    #[test]
    fn witness_commitment_and_reserved_value_go_together() {
        let p = payout();
        let commitment =
            ScriptBuf::from_hex("6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9")
                .unwrap();
        assert!(is_witness_commitment(&commitment));
        let cb = Coinbase::build(&spec(&p, Some(&commitment), 200)).unwrap();
        let tx = cb.transaction(&[0; 4], &[0; 8]);
        assert_eq!(tx.output[1].script_pubkey, commitment);
        assert_eq!(tx.input[0].witness.len(), 1);
        // The txid (what the merkle root commits to) ignores the witness.
        let legacy = cb.assemble(&[0; 4], &[0; 8]);
        assert_eq!(tx.compute_txid().to_byte_array(), bitcoin::hashes::sha256d::Hash::hash(&legacy).to_byte_array());
    }

    #[test]
    fn bitcoin_cash_minimum_size_is_met_by_padding() {
        let p = ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array([9u8; 20]));
        let mut s = spec(&p, None, 1);
        s.tag = b"";
        s.min_tx_size = 100;
        let cb = Coinbase::build(&s).unwrap();
        let bytes = cb.assemble(&[0; 4], &[0; 8]);
        assert!(bytes.len() >= 100, "{} bytes", bytes.len());
        assert!(bytes.len() <= 102, "padding overshoots: {} bytes", bytes.len());
    }

    #[test]
    fn refuses_extranonce_sizes_miners_cannot_use() {
        let p = payout();
        let mut s = spec(&p, None, 1);
        s.extranonce2_len = 2;
        assert_eq!(Coinbase::build(&s), Err(CoinbaseError::ExtranonceSize(2)));
        s.extranonce2_len = 9;
        assert_eq!(Coinbase::build(&s), Err(CoinbaseError::ExtranonceSize(9)));
    }
}
