//! Work as a miner sees it: a mining.notify job turned into headers to hash.

use bitcoin::hashes::{sha256d, Hash, HashEngine};
use serde_json::Value;

/// One mining.notify, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    /// Previous block hash in header byte order.
    pub prev_hash: [u8; 32],
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub branch: Vec<[u8; 32]>,
    pub version: u32,
    pub bits: u32,
    pub ntime: u32,
    pub clean: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed mining.notify: {0}")]
pub struct NotifyError(String);

fn hex32(v: &Value) -> Result<[u8; 32], NotifyError> {
    let s = v.as_str().ok_or_else(|| NotifyError("expected a hex string".into()))?;
    let b = hex::decode(s).map_err(|e| NotifyError(e.to_string()))?;
    b.try_into().map_err(|_| NotifyError("expected 32 bytes".into()))
}

fn hexu32(v: &Value) -> Result<u32, NotifyError> {
    let s = v.as_str().ok_or_else(|| NotifyError("expected a hex string".into()))?;
    u32::from_str_radix(s, 16).map_err(|e| NotifyError(e.to_string()))
}

impl Job {
    pub fn from_notify(params: &Value) -> Result<Job, NotifyError> {
        let p =
            params.as_array().filter(|p| p.len() >= 9).ok_or_else(|| NotifyError("expected 9 parameters".into()))?;
        let mut prev_hash = hex32(&p[1])?;
        // SV1 sends each 32-bit word byte-swapped; undo it to get header order.
        for w in prev_hash.chunks_mut(4) {
            w.reverse();
        }
        let bytes = |v: &Value| {
            v.as_str()
                .ok_or_else(|| NotifyError("expected hex".into()))
                .and_then(|s| hex::decode(s).map_err(|e| NotifyError(e.to_string())))
        };
        Ok(Job {
            id: p[0].as_str().ok_or_else(|| NotifyError("job id".into()))?.to_string(),
            prev_hash,
            coinb1: bytes(&p[2])?,
            coinb2: bytes(&p[3])?,
            branch: p[4]
                .as_array()
                .ok_or_else(|| NotifyError("branch".into()))?
                .iter()
                .map(hex32)
                .collect::<Result<_, _>>()?,
            version: hexu32(&p[5])?,
            bits: hexu32(&p[6])?,
            ntime: hexu32(&p[7])?,
            clean: p[8].as_bool().unwrap_or(false),
        })
    }

    /// The merkle root for one extranonce: coinbase hash folded up the branch.
    pub fn merkle_root(&self, extranonce1: &[u8], extranonce2: &[u8]) -> [u8; 32] {
        let mut cb = sha256d::Hash::engine();
        cb.input(&self.coinb1);
        cb.input(extranonce1);
        cb.input(extranonce2);
        cb.input(&self.coinb2);
        let mut root = sha256d::Hash::from_engine(cb).to_byte_array();
        for sibling in &self.branch {
            let mut e = sha256d::Hash::engine();
            e.input(&root);
            e.input(sibling);
            root = sha256d::Hash::from_engine(e).to_byte_array();
        }
        root
    }

    /// The 80-byte header, nonce last so a grinding loop rewrites only 4 bytes.
    pub fn header(&self, merkle_root: &[u8; 32], version: u32, ntime: u32, nonce: u32) -> [u8; 80] {
        let mut h = [0u8; 80];
        h[0..4].copy_from_slice(&version.to_le_bytes());
        h[4..36].copy_from_slice(&self.prev_hash);
        h[36..68].copy_from_slice(merkle_root);
        h[68..72].copy_from_slice(&ntime.to_le_bytes());
        h[72..76].copy_from_slice(&self.bits.to_le_bytes());
        h[76..80].copy_from_slice(&nonce.to_le_bytes());
        h
    }
}

/// sha256d of a header, as a little-endian 256-bit number's bytes.
pub fn hash_header(header: &[u8; 80]) -> [u8; 32] {
    sha256d::Hash::hash(header).to_byte_array()
}

/// The target for a pool difficulty (difficulty 1 = 0x00000000ffff0000...), little-endian.
pub fn difficulty_target(difficulty: f64) -> [u8; 32] {
    // diff1 = 0xffff * 2^208. Work with the top 64 bits in floating point, which is far
    // more precision than share targets need.
    let mut out = [0u8; 32];
    if difficulty <= 0.0 {
        return [0xff; 32];
    }
    let t = 65535.0 * 2f64.powi(208) / difficulty;
    if t >= 2f64.powi(256) {
        return [0xff; 32];
    }
    let exp = t.log2().floor() as i32;
    let shift = (exp - 63).max(0);
    let mantissa = (t / 2f64.powi(shift)) as u64;
    // Place the 64-bit mantissa at bit `shift`.
    for i in 0..64 {
        if mantissa >> i & 1 == 1 {
            let bit = shift as usize + i;
            if bit < 256 {
                out[bit / 8] |= 1 << (bit % 8);
            }
        }
    }
    out
}

/// Whether a little-endian hash is at or below a little-endian target.
pub fn meets(hash: &[u8; 32], target: &[u8; 32]) -> bool {
    for i in (0..32).rev() {
        if hash[i] != target[i] {
            return hash[i] < target[i];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebuilds_a_real_mainnet_header() {
        // Block 125552's header fields (the classic SV1 worked example).
        let mut job = Job {
            id: "x".into(),
            prev_hash: [0; 32],
            coinb1: vec![],
            coinb2: vec![],
            branch: vec![],
            version: 1,
            bits: 0x1a44b9f2,
            ntime: 0x4dd7f5c7,
            clean: true,
        };
        let mut prev = hex::decode("00000000000008a3a41b85b8b29ad444def299fee21793cd8b9e567eab02cd81").unwrap();
        prev.reverse();
        job.prev_hash.copy_from_slice(&prev);
        let mut root = hex::decode("2b12fcf1b09288fcaff797d71e950e71ae42b91e8bdb2304758dfcffc2b620e3").unwrap();
        root.reverse();
        let h = job.header(&root.try_into().unwrap(), 1, 0x4dd7f5c7, 0x9546a142);
        let mut hash = hash_header(&h);
        hash.reverse();
        assert_eq!(hex::encode(hash), "00000000000000001e8d6829a8a21adc5d38d0a473b144b6765798e61f98bd1d");
    }

    #[test]
    fn targets_for_difficulties() {
        let t1 = difficulty_target(1.0);
        assert_eq!(&t1[26..32], &[0xff, 0xff, 0, 0, 0, 0]);
        let t = difficulty_target(2.0);
        assert_eq!(&t[26..30], &[0xff, 0x7f, 0, 0]);
        assert!(meets(&[0; 32], &t1));
        assert!(!meets(&[0xff; 32], &t1));
        assert_eq!(difficulty_target(1e-12), [0xff; 32]);
    }

    #[test]
    fn decodes_a_notify_and_undoes_the_word_swap() {
        let p = serde_json::json!([
            "1f",
            "3f40e1a70000000000000000000000000000000000000000000000000000000000",
            "01",
            "02",
            [],
            "20000000",
            "207fffff",
            "6553f100",
            true
        ]);
        assert!(Job::from_notify(&p).is_err(), "prev hash of 33 bytes");
        let p = serde_json::json!([
            "1f",
            "3f40e1a7000000000000000000000000000000000000000000000000000000ff",
            "01",
            "02",
            [],
            "20000000",
            "207fffff",
            "6553f100",
            true
        ]);
        let j = Job::from_notify(&p).unwrap();
        assert_eq!(&j.prev_hash[..4], &[0xa7, 0xe1, 0x40, 0x3f]);
        assert_eq!(j.bits, 0x207fffff);
        assert!(j.clean);
    }
}
