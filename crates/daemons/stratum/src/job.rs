//! Work for miners: a block template from the node, and jobs cut from it per payout address.
//!
//! A [`Template`] is what the node offered (one per new block, plus periodic refreshes for
//! fees). A [`Job`] is that template with one particular coinbase, the one paying the
//! address its miner authorized with. Miners of the same address share a job; the server
//! builds each coinbase once per template, not once per miner.

use crate::coinbase::{Coinbase, CoinbaseError, CoinbaseSpec};
use crate::merkle;
use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, Target, TxMerkleNode};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A block template, made ready for mining: the node's, or an upstream pool's job
/// ([`Template::upstream`]).
#[derive(Debug, Clone)]
pub struct Template {
    /// Increases with every template this server makes; orders them in logs and the API.
    pub id: u64,
    pub height: u64,
    pub prev_hash: BlockHash,
    pub version: u32,
    pub bits: CompactTarget,
    /// The network target: a share at or below it is a block.
    pub target: Target,
    /// Median time past + 1: the earliest ntime the node accepts.
    pub min_time: u32,
    pub cur_time: u32,
    pub coinbase_value: Amount,
    pub witness_commitment: Option<ScriptBuf>,
    /// Raw transactions (with witnesses), in block order, without the coinbase.
    pub transactions: Vec<Vec<u8>>,
    pub branch: Vec<[u8; 32]>,
    /// True when this template builds on a different block than the one before it:
    /// miners must drop their old work (mining.notify clean_jobs).
    pub clean: bool,
    pub received: Instant,
    /// Set when this work is an upstream pool's job (the node not ready): its coinbase is
    /// the pool's, and shares go to the pool instead of the node.
    pub upstream: Option<Arc<crate::upstream::UpstreamWork>>,
}

/// The parts of a node's getblocktemplate answer the server uses.
#[derive(Debug, Clone)]
pub struct TemplateParts {
    pub height: u64,
    pub prev_hash: BlockHash,
    pub version: u32,
    pub bits: CompactTarget,
    pub min_time: u32,
    pub cur_time: u32,
    pub coinbase_value: Amount,
    pub witness_commitment: Option<ScriptBuf>,
    /// (txid in internal byte order, raw transaction) in block order.
    pub transactions: Vec<([u8; 32], Vec<u8>)>,
}

impl Template {
    pub fn new(id: u64, parts: TemplateParts, clean: bool) -> Template {
        let txids: Vec<[u8; 32]> = parts.transactions.iter().map(|(id, _)| *id).collect();
        Template {
            id,
            height: parts.height,
            prev_hash: parts.prev_hash,
            version: parts.version,
            bits: parts.bits,
            target: Target::from_compact(parts.bits),
            min_time: parts.min_time,
            cur_time: parts.cur_time,
            coinbase_value: parts.coinbase_value,
            witness_commitment: parts.witness_commitment,
            branch: merkle::branch(&txids),
            transactions: parts.transactions.into_iter().map(|(_, raw)| raw).collect(),
            clean,
            received: Instant::now(),
            upstream: None,
        }
    }

    /// The same work, told to miners as a fresh start (clean_jobs): when the server changes
    /// where work comes from, old jobs of the other source are worth nothing.
    pub fn restarted(&self) -> Template {
        Template { clean: true, ..self.clone() }
    }

    /// Network difficulty, in the units miners and explorers use.
    pub fn network_difficulty(&self) -> f64 {
        self.target.difficulty_float()
    }
}

/// How coinbases are cut for this server (from the coin and the settings).
#[derive(Debug, Clone)]
pub struct CoinbaseRules {
    pub tag: Vec<u8>,
    pub extranonce2_len: usize,
    pub min_tx_size: usize,
    /// Non-segwit coins never carry a witness commitment, whatever a node says.
    pub segwit: bool,
}

/// One template with the coinbase paying one address.
#[derive(Debug)]
pub struct Job {
    pub template: Arc<Template>,
    pub payout: ScriptBuf,
    pub coinbase: Coinbase,
    /// A pool-port job's split (crate::pplns::desk): what its block pays each user.
    pub pplns: Option<Arc<crate::pplns::desk::PplnsJob>>,
    /// `[coins.<id>.pool] config_version` of a pool-port job (split or bootstrap), fixed
    /// when the job is built: its block records this version, whatever the settings say
    /// when it is found. None on the solo port.
    pub pool_config_version: Option<u64>,
    /// mining.notify parameters after the job id and before clean_jobs, serialized once.
    notify_middle: String,
}

impl Job {
    pub fn new(template: Arc<Template>, payout: ScriptBuf, rules: &CoinbaseRules) -> Result<Job, JobError> {
        let coinbase = match &template.upstream {
            // The pool's coinbase: its coinb1 with its extranonce1 (and padding) appended,
            // so the miner's own extranonce1 and extranonce2 fill the rest of the pool's
            // extranonce2 (see crate::upstream).
            Some(up) => {
                if up.owner != payout {
                    return Err(JobError::OtherAddress);
                }
                Coinbase {
                    coinb1: up.coinb1.clone(),
                    coinb2: up.coinb2.clone(),
                    // A pool's small extranonce2: miners roll the size they were told.
                    extranonce2_len: up.miner_extranonce.map_or(rules.extranonce2_len, |n| n.extranonce2_len),
                    segwit: false,
                }
            }
            None => Self::own_coinbase(&template, &payout, rules)?,
        };
        Ok(Self::with_coinbase(template, payout, coinbase))
    }

    /// A pool-port job: the coinbase paying `split`'s outputs (crate::pplns::coinbase).
    pub fn pplns(template: Arc<Template>, coinbase: Coinbase, split: Arc<crate::pplns::desk::PplnsJob>) -> Job {
        let mut job = Self::with_coinbase(template, ScriptBuf::new(), coinbase);
        job.pool_config_version = Some(split.config_version);
        job.pplns = Some(split);
        job
    }

    fn own_coinbase(template: &Template, payout: &ScriptBuf, rules: &CoinbaseRules) -> Result<Coinbase, CoinbaseError> {
        Coinbase::build(&CoinbaseSpec {
            height: template.height,
            value: template.coinbase_value,
            payout,
            witness_commitment: if rules.segwit { template.witness_commitment.as_ref() } else { None },
            tag: &rules.tag,
            extranonce2_len: rules.extranonce2_len,
            min_tx_size: rules.min_tx_size,
        })
    }

    fn with_coinbase(template: Arc<Template>, payout: ScriptBuf, coinbase: Coinbase) -> Job {
        let branch: Vec<String> = template.branch.iter().map(hex::encode).collect();
        let notify_middle = format!(
            r#""{}","{}","{}",{},"{:08x}","{:08x}","{:08x}""#,
            stratum_prev_hash(&template.prev_hash),
            hex::encode(&coinbase.coinb1),
            hex::encode(&coinbase.coinb2),
            serde_json::to_string(&branch).expect("strings serialize"),
            template.version,
            template.bits.to_consensus(),
            template.cur_time,
        );
        Job { template, payout, coinbase, pplns: None, pool_config_version: None, notify_middle }
    }

    /// The mining.notify line for this job under a connection's own job id.
    pub fn notify_line(&self, wire_id: &str, clean: bool) -> String {
        format!(r#"{{"id":null,"method":"mining.notify","params":["{wire_id}",{},{clean}]}}"#, self.notify_middle)
    }

    /// The block header a miner's submission describes.
    pub fn header(&self, merkle_root: [u8; 32], version: u32, ntime: u32, nonce: u32) -> Header {
        Header {
            version: Version::from_consensus(version as i32),
            prev_blockhash: self.template.prev_hash,
            merkle_root: TxMerkleNode::from_byte_array(merkle_root),
            time: ntime,
            bits: self.template.bits,
            nonce,
        }
    }
}

/// Why no job could be cut for a miner.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Coinbase(#[from] CoinbaseError),
    /// Upstream work pays the address its pool connection is authorized as; a miner paying
    /// another address gets its work from that address's connection, or waits for the node.
    #[error("upstream work pays another address")]
    OtherAddress,
}

/// SV1 sends the previous block hash as eight 32-bit words, each byte-swapped relative to
/// the header's byte order (a historical accident every miner now expects).
pub fn stratum_prev_hash(hash: &BlockHash) -> String {
    let mut bytes = hash.to_byte_array();
    for word in bytes.chunks_mut(4) {
        word.reverse();
    }
    hex::encode(bytes)
}

/// The jobs of the current template, one per payout address, built on first use.
pub struct JobBook {
    rules: CoinbaseRules,
    /// A pool port's book: the pool configuration version its jobs are built under (the
    /// jobs paying a miner's own user while the PPLNS window is empty).
    pool_config_version: Option<u64>,
    current: Mutex<(u64, HashMap<ScriptBuf, Arc<Job>>)>,
}

/// Distinct payout addresses cached per template; beyond it, jobs are built uncached. A
/// home box has a handful of addresses; the cap only matters against a hostile crowd.
const MAX_CACHED_PAYOUTS: usize = 256;

impl JobBook {
    pub fn new(rules: CoinbaseRules) -> JobBook {
        JobBook { rules, pool_config_version: None, current: Mutex::new((u64::MAX, HashMap::new())) }
    }

    /// The book of a pool port running under `[coins.<id>.pool] config_version`.
    pub fn for_pool(rules: CoinbaseRules, config_version: u64) -> JobBook {
        JobBook { pool_config_version: Some(config_version), ..JobBook::new(rules) }
    }

    pub fn rules(&self) -> &CoinbaseRules {
        &self.rules
    }

    pub fn job_for(&self, template: &Arc<Template>, payout: &ScriptBuf) -> Result<Arc<Job>, JobError> {
        let mut current = self.current.lock().expect("job book lock");
        if current.0 != template.id {
            *current = (template.id, HashMap::new());
        }
        if let Some(job) = current.1.get(payout) {
            return Ok(job.clone());
        }
        let mut job = Job::new(template.clone(), payout.clone(), &self.rules)?;
        // Upstream work pays the solo pool's coinbase: no block of the box's pool.
        job.pool_config_version = self.pool_config_version.filter(|_| template.upstream.is_none());
        let job = Arc::new(job);
        if current.1.len() < MAX_CACHED_PAYOUTS {
            current.1.insert(payout.clone(), job.clone());
        }
        Ok(job)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn regtest_parts(height: u64) -> TemplateParts {
        TemplateParts {
            height,
            prev_hash: "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206".parse().unwrap(),
            version: 0x2000_0000,
            bits: CompactTarget::from_consensus(0x207fffff),
            min_time: 1_296_688_603,
            cur_time: 1_700_000_000,
            coinbase_value: Amount::from_sat(5_000_000_000),
            witness_commitment: None,
            transactions: vec![],
        }
    }

    #[test]
    fn prev_hash_is_word_swapped() {
        let h: BlockHash = "000000000000000000026f1e8c4f1a1e0e3cba0f3fa85ecb0bb9a2e13f40e1a7".parse().unwrap();
        // Header order is the reverse of display order; SV1 then swaps each 4-byte word.
        let s = stratum_prev_hash(&h);
        assert_eq!(s.len(), 64);
        assert_eq!(&s[..8], "3f40e1a7");
        assert_eq!(&s[56..], "00000000");
    }

    #[test]
    fn notify_line_is_what_miners_parse() {
        let t = Arc::new(Template::new(1, regtest_parts(101), true));
        let rules = CoinbaseRules { tag: b"/MineBox/".to_vec(), extranonce2_len: 8, min_tx_size: 0, segwit: true };
        let job = Job::new(t, ScriptBuf::new_op_return([1u8; 4]), &rules).unwrap();
        let v: serde_json::Value = serde_json::from_str(&job.notify_line("a1", true)).unwrap();
        let p = v["params"].as_array().unwrap();
        assert_eq!(v["method"], "mining.notify");
        assert_eq!(p.len(), 9);
        assert_eq!(p[0], "a1");
        assert_eq!(p[5], "20000000");
        assert_eq!(p[6], "207fffff");
        assert_eq!(p[8], true);
        assert!(p[4].as_array().unwrap().is_empty());
    }

    #[test]
    fn job_book_shares_jobs_per_address_and_forgets_old_templates() {
        let rules = CoinbaseRules { tag: vec![], extranonce2_len: 4, min_tx_size: 0, segwit: false };
        let book = JobBook::new(rules);
        let t1 = Arc::new(Template::new(1, regtest_parts(1), true));
        let a = ScriptBuf::new_op_return([1u8; 4]);
        let b = ScriptBuf::new_op_return([2u8; 4]);
        let j1 = book.job_for(&t1, &a).unwrap();
        assert!(Arc::ptr_eq(&j1, &book.job_for(&t1, &a).unwrap()));
        assert!(!Arc::ptr_eq(&j1, &book.job_for(&t1, &b).unwrap()));
        let t2 = Arc::new(Template::new(2, regtest_parts(2), true));
        let j2 = book.job_for(&t2, &a).unwrap();
        assert_eq!(j2.template.height, 2);
    }
}
