//! The chunk index: every file of the snapshot as a sequence of chunks, and the Merkle root
//! over the whole chunk list that the signed manifest commits to.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Component, Path};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// SHA-256 of the uncompressed chunk, hex.
    pub hash: String,
    pub size: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative, `/`-separated, no `..`.
    pub path: String,
    pub size: u64,
    /// Unix permission bits (e.g. 0o644).
    pub mode: u32,
    pub chunks: Vec<ChunkRef>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Index {
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index path {0:?} is not a safe relative path")]
    UnsafePath(String),
    #[error("index file {path}: chunk sizes add up to {sum}, the file says {size}")]
    SizeMismatch { path: String, sum: u64, size: u64 },
    #[error("index chunk hash {0:?} is not 64 hex digits")]
    BadHash(String),
    #[error("index lists {0} twice")]
    Duplicate(String),
}

/// A Merkle leaf commits to a chunk's hash and size.
fn leaf(c: &ChunkRef) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(c.hash.as_bytes());
    h.update(c.size.to_le_bytes());
    h.finalize().into()
}

impl Index {
    /// Every chunk reference in index order.
    pub fn chunks(&self) -> impl Iterator<Item = &ChunkRef> {
        self.files.iter().flat_map(|f| f.chunks.iter())
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Merkle root over the chunk list: leaves are `sha256(0 || hash || size)`, inner nodes
    /// `sha256(1 || left || right)`, an odd node is promoted unchanged (no duplication,
    /// so two different lists never share a root).
    pub fn merkle_root(&self) -> [u8; 32] {
        let mut level: Vec<[u8; 32]> = self.chunks().map(leaf).collect();
        if level.is_empty() {
            return Sha256::digest([2u8]).into();
        }
        while level.len() > 1 {
            level = level
                .chunks(2)
                .map(|p| match p {
                    [l, r] => {
                        let mut h = Sha256::new();
                        h.update([1u8]);
                        h.update(l);
                        h.update(r);
                        h.finalize().into()
                    }
                    [one] => *one,
                    _ => unreachable!(),
                })
                .collect();
        }
        level[0]
    }

    /// Refuses paths that could escape the install directory, sizes that do not add up,
    /// malformed hashes and duplicate files: an index is data from the network.
    pub fn check(&self) -> Result<(), IndexError> {
        let mut seen = std::collections::HashSet::new();
        for f in &self.files {
            let p = Path::new(&f.path);
            if f.path.is_empty() || f.path.contains('\\') || !p.components().all(|c| matches!(c, Component::Normal(_)))
            {
                return Err(IndexError::UnsafePath(f.path.clone()));
            }
            if !seen.insert(&f.path) {
                return Err(IndexError::Duplicate(f.path.clone()));
            }
            let sum: u64 = f.chunks.iter().map(|c| c.size as u64).sum();
            if sum != f.size {
                return Err(IndexError::SizeMismatch { path: f.path.clone(), sum, size: f.size });
            }
            for c in &f.chunks {
                if c.hash.len() != 64 || !c.hash.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(IndexError::BadHash(c.hash.clone()));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(h: u8, size: u32) -> ChunkRef {
        ChunkRef { hash: hex::encode([h; 32]), size }
    }

    #[test]
    fn the_root_changes_with_any_chunk_its_size_or_order() {
        let a = Index {
            files: vec![FileEntry { path: "x".into(), size: 30, mode: 0o644, chunks: vec![c(1, 10), c(2, 20)] }],
        };
        let mut b = a.clone();
        b.files[0].chunks.swap(0, 1);
        let mut d = a.clone();
        d.files[0].chunks[1].size = 21;
        assert_ne!(a.merkle_root(), b.merkle_root());
        assert_ne!(a.merkle_root(), d.merkle_root());
        assert_eq!(a.merkle_root(), a.clone().merkle_root());
    }

    #[test]
    fn hostile_paths_and_sizes_are_refused() {
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a\\b", "./a"] {
            let i = Index { files: vec![FileEntry { path: bad.into(), size: 0, mode: 0o644, chunks: vec![] }] };
            assert!(matches!(i.check(), Err(IndexError::UnsafePath(_))), "{bad}");
        }
        let i = Index { files: vec![FileEntry { path: "a".into(), size: 5, mode: 0o644, chunks: vec![c(1, 4)] }] };
        assert!(matches!(i.check(), Err(IndexError::SizeMismatch { .. })));
    }
}
