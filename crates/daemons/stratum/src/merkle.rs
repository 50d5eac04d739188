//! The merkle branch from the coinbase to the root.
//!
//! The coinbase is always leaf 0, so the miner needs only the sibling hash at each level
//! to fold its own coinbase hash up to the root: log2(n) hashes instead of n txids.

use bitcoin::hashes::{sha256d, Hash, HashEngine};

fn combine(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut engine = sha256d::Hash::engine();
    engine.input(left);
    engine.input(right);
    sha256d::Hash::from_engine(engine).to_byte_array()
}

/// The branch for leaf 0 given the txids (internal byte order) of every other transaction
/// in block order.
pub fn branch(txids: &[[u8; 32]]) -> Vec<[u8; 32]> {
    let mut out = Vec::new();
    // Level holds every node of the current level except the leftmost (the coinbase path).
    let mut level: Vec<[u8; 32]> = txids.to_vec();
    while !level.is_empty() {
        out.push(level[0]);
        let rest = &level[1..];
        let mut next = Vec::with_capacity(rest.len().div_ceil(2));
        for pair in rest.chunks(2) {
            // An odd node is paired with itself, as Bitcoin's merkle tree does.
            let right = pair.get(1).unwrap_or(&pair[0]);
            next.push(combine(&pair[0], right));
        }
        level = next;
    }
    out
}

/// Folds a coinbase txid up the branch to the merkle root.
pub fn root(coinbase_txid: [u8; 32], branch: &[[u8; 32]]) -> [u8; 32] {
    branch.iter().fold(coinbase_txid, |acc, sibling| combine(&acc, sibling))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Block;

    #[test]
    fn matches_rust_bitcoin_on_every_tree_shape() {
        for n in 1..=17usize {
            let leaves: Vec<[u8; 32]> = (0..n).map(|i| sha256d::Hash::hash(&[i as u8]).to_byte_array()).collect();
            let expected =
                bitcoin::merkle_tree::calculate_root(leaves.iter().map(|l| bitcoin::Txid::from_byte_array(*l)))
                    .unwrap()
                    .to_byte_array();
            let b = branch(&leaves[1..]);
            assert_eq!(root(leaves[0], &b), expected, "{n} transactions");
        }
    }

    #[test]
    fn reproduces_a_real_mainnet_block() {
        // A real 2011 mainnet block with two transactions (public chain data).
        let hex = include_str!("../tests/data/block-2tx.hex").trim();
        let block: Block = bitcoin::consensus::deserialize(&hex::decode(hex).unwrap()).unwrap();
        let txids: Vec<[u8; 32]> = block.txdata.iter().map(|t| t.compute_txid().to_byte_array()).collect();
        let b = branch(&txids[1..]);
        assert_eq!(b.len(), 1);
        assert_eq!(root(txids[0], &b), block.header.merkle_root.to_byte_array());
    }
}
