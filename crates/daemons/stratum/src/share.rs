//! Checking a share: rebuild the header the miner hashed, hash it, and measure it.
//!
//! Everything here is pure and allocation-light: it runs for every share of every miner,
//! and its speed is what the shares-per-second benchmark measures.

use crate::job::Job;
use crate::merkle;
use crate::protocol::{ErrorCode, Rejection, Submit};
use bitcoin::block::Header;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{BlockHash, Target};

/// How far ahead of the server's clock a miner may roll ntime. Nodes accept two hours;
/// staying well inside that keeps a found block from being refused for its timestamp.
pub const MAX_NTIME_AHEAD_SECS: u32 = 600;

/// A submission that hashed to a real header.
#[derive(Debug, Clone)]
pub struct Hashed {
    pub header: Header,
    pub hash: BlockHash,
    /// The share's own difficulty: how much work the hash shows.
    pub difficulty: f64,
    /// Whether the hash also meets the network target: a block.
    pub is_block: bool,
}

/// Difficulty of a hash in pool units (difficulty 1 = 2^32 expected hashes).
pub fn hash_difficulty(hash: &BlockHash) -> f64 {
    Target::from_le_bytes(hash.to_byte_array()).difficulty_float()
}

/// Rebuilds and hashes the header of a submission against the job it names.
///
/// `version_mask` is what mining.configure negotiated (0 when the miner does not roll),
/// `now` the server's clock in unix seconds.
pub fn hash_submission(
    job: &Job,
    extranonce1: &[u8],
    submit: &Submit,
    version_mask: u32,
    now: u32,
) -> Result<Hashed, Rejection> {
    if submit.extranonce2.len() != job.coinbase.extranonce2_len {
        return Err(Rejection::new(
            ErrorCode::Other,
            format!("extranonce2 must be {} bytes, got {}", job.coinbase.extranonce2_len, submit.extranonce2.len()),
        ));
    }
    let template = &job.template;
    if submit.ntime < template.min_time || submit.ntime > now.max(template.cur_time) + MAX_NTIME_AHEAD_SECS {
        return Err(Rejection::new(ErrorCode::Other, "ntime out of range"));
    }
    let version = match submit.version_bits {
        None => template.version,
        Some(bits) => {
            if bits & !version_mask != 0 {
                return Err(Rejection::new(
                    ErrorCode::Other,
                    format!("version bits {bits:08x} outside the negotiated mask {version_mask:08x}"),
                ));
            }
            (template.version & !version_mask) | bits
        }
    };
    let coinbase = job.coinbase.assemble(extranonce1, &submit.extranonce2);
    let coinbase_txid = sha256d::Hash::hash(&coinbase).to_byte_array();
    let root = merkle::root(coinbase_txid, &template.branch);
    let header = job.header(root, version, submit.ntime, submit.nonce);
    let hash = header.block_hash();
    Ok(Hashed { header, hash, difficulty: hash_difficulty(&hash), is_block: template.target.is_met_by(hash) })
}

/// Tolerance for comparing a share's difficulty with the assigned one: difficulties are
/// floats, and a share exactly at the target must not be lost to rounding.
pub fn meets(share_difficulty: f64, assigned: f64) -> bool {
    share_difficulty >= assigned * (1.0 - 1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::tests::regtest_parts;
    use crate::job::{CoinbaseRules, Template};
    use bitcoin::ScriptBuf;
    use std::sync::Arc;

    fn job() -> Job {
        let t = Arc::new(Template::new(7, regtest_parts(500), true));
        let rules = CoinbaseRules { tag: b"/t/".to_vec(), extranonce2_len: 8, min_tx_size: 0, segwit: true };
        Job::new(t, ScriptBuf::new_op_return([1u8; 4]), &rules).unwrap()
    }

    fn submit(nonce: u32) -> Submit {
        Submit {
            worker: "w".into(),
            job_id: "1".into(),
            extranonce2: vec![0; 8],
            ntime: 1_700_000_000,
            nonce,
            version_bits: None,
        }
    }

    #[test]
    fn difficulty_one_is_the_classic_target() {
        let diff1: BlockHash = "00000000ffff0000000000000000000000000000000000000000000000000000".parse().unwrap();
        assert!((hash_difficulty(&diff1) - 1.0).abs() < 1e-12);
        let harder: BlockHash = "000000000000ffff000000000000000000000000000000000000000000000000".parse().unwrap();
        assert!((hash_difficulty(&harder) - 65536.0).abs() < 1e-6);
    }

    #[test]
    fn a_real_mainnet_header_meets_its_own_target() {
        let hex = include_str!("../tests/data/block-2tx.hex").trim();
        let block: bitcoin::Block = bitcoin::consensus::deserialize(&hex::decode(hex).unwrap()).unwrap();
        let hash = block.header.block_hash();
        assert!(block.header.target().is_met_by(hash));
        assert!(hash_difficulty(&hash) >= block.header.difficulty_float());
    }

    #[test]
    fn same_submission_same_hash_and_any_change_moves_it() {
        let j = job();
        let a = hash_submission(&j, &[1, 2, 3, 4], &submit(1), 0, 1_700_000_000).unwrap();
        let b = hash_submission(&j, &[1, 2, 3, 4], &submit(1), 0, 1_700_000_000).unwrap();
        assert_eq!(a.hash, b.hash);
        let c = hash_submission(&j, &[1, 2, 3, 5], &submit(1), 0, 1_700_000_000).unwrap();
        assert_ne!(a.hash, c.hash, "extranonce1 must be part of the coinbase");
        let d = hash_submission(&j, &[1, 2, 3, 4], &submit(2), 0, 1_700_000_000).unwrap();
        assert_ne!(a.hash, d.hash);
    }

    #[test]
    fn regtest_target_is_met_by_about_half_of_all_nonces() {
        let j = job();
        let blocks = (0..64u32)
            .filter(|n| hash_submission(&j, &[0; 4], &submit(*n), 0, 1_700_000_000).unwrap().is_block)
            .count();
        assert!((10..=54).contains(&blocks), "{blocks} of 64");
    }

    #[test]
    fn version_rolling_stays_inside_the_mask() {
        let j = job();
        let mut s = submit(1);
        s.version_bits = Some(0x0000_2000);
        let h = hash_submission(&j, &[0; 4], &s, 0x1fffe000, 1_700_000_000).unwrap();
        assert_eq!(h.header.version.to_consensus() as u32, 0x2000_2000);
        s.version_bits = Some(0x4000_0000);
        let e = hash_submission(&j, &[0; 4], &s, 0x1fffe000, 1_700_000_000).unwrap_err();
        assert!(e.message.contains("outside the negotiated mask"));
        // A miner that never negotiated rolling may not roll.
        s.version_bits = Some(0x0000_2000);
        assert!(hash_submission(&j, &[0; 4], &s, 0, 1_700_000_000).is_err());
    }

    #[test]
    fn wrong_extranonce2_length_and_bad_ntime_are_refused() {
        let j = job();
        let mut s = submit(1);
        s.extranonce2 = vec![0; 4];
        assert!(hash_submission(&j, &[0; 4], &s, 0, 1_700_000_000).unwrap_err().message.contains("must be 8 bytes"));
        let mut s = submit(1);
        s.ntime = 1_000_000_000;
        assert_eq!(hash_submission(&j, &[0; 4], &s, 0, 1_700_000_000).unwrap_err().message, "ntime out of range");
        s.ntime = 1_700_000_000 + MAX_NTIME_AHEAD_SECS + 1;
        assert!(hash_submission(&j, &[0; 4], &s, 0, 1_700_000_000).is_err());
    }
}
