//! The chunk index: every file of the snapshot as a sequence of chunks, and the Merkle root
//! over the whole chunk list that the signed manifest commits to.
//!
//! An [`Index`] exists only checked: parsing runs the checks (serde goes through
//! [`Index::new`]), and the publisher builds one with [`Index::new`] too, so code that holds
//! an `Index` never has to remember to check it.

use crate::hash::ChunkHash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Component, Path};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRef {
    /// SHA-256 of the uncompressed chunk (hex in index.json).
    pub hash: ChunkHash,
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
#[serde(try_from = "Unchecked")]
pub struct Index {
    files: Vec<FileEntry>,
}

/// index.json as parsed, before the checks; never leaves this module.
#[derive(Deserialize)]
struct Unchecked {
    files: Vec<FileEntry>,
}

impl TryFrom<Unchecked> for Index {
    type Error = IndexError;

    fn try_from(u: Unchecked) -> Result<Index, IndexError> {
        Index::new(u.files)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IndexError {
    #[error("index path {0:?} is not a safe relative path")]
    UnsafePath(String),
    #[error("index file {path}: chunk sizes add up to {sum}, the file says {size}")]
    SizeMismatch { path: String, sum: u64, size: u64 },
    #[error("index lists {0} twice")]
    Duplicate(String),
}

/// A Merkle leaf commits to a chunk's hash and size. The hash goes in as its 64 hex digits,
/// as the format has always had it (docs/snapshot-format.md): published roots stay valid.
fn leaf(c: &ChunkRef) -> [u8; 32] {
    let mut hex = [0u8; 64];
    hex::encode_to_slice(c.hash.as_bytes(), &mut hex).expect("64 hex digits for 32 bytes");
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(hex);
    h.update(c.size.to_le_bytes());
    h.finalize().into()
}

impl Index {
    /// A checked index: refuses paths that could escape the install directory, sizes that
    /// do not add up and duplicate files (an index is data from the network; chunk hashes
    /// were already checked when parsed into [`ChunkHash`]).
    pub fn new(files: Vec<FileEntry>) -> Result<Index, IndexError> {
        let index = Index { files };
        index.check()?;
        Ok(index)
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// `index.json` as published (the manifest's size and SHA-256 are of these bytes).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an index serializes")
    }

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

    fn check(&self) -> Result<(), IndexError> {
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
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(h: u8, size: u32) -> ChunkRef {
        ChunkRef { hash: ChunkHash::from_bytes([h; 32]), size }
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

    /// index.json and the Merkle root are byte for byte what docs/snapshot-format.md says
    /// (leaves over the hash's hex text), so trees published before `ChunkHash` still verify.
    #[test]
    fn index_json_and_its_root_are_as_the_format_says() {
        let (h1, h2) = ("01".repeat(32), "ab".repeat(32));
        let text = format!(
            r#"{{"files":[{{"path":"a","size":30,"mode":420,"chunks":[{{"hash":"{h1}","size":10}},{{"hash":"{h2}","size":20}}]}},{{"path":"b/c","size":5,"mode":384,"chunks":[{{"hash":"{h1}","size":5}}]}}]}}"#
        );
        let index: Index = serde_json::from_str(&text).unwrap();
        assert_eq!(serde_json::to_string(&index).unwrap(), text);
        // sha256(1 || sha256(1 || leaf(h1,10) || leaf(h2,20)) || leaf(h1,5)), computed apart.
        assert_eq!(
            hex::encode(index.merkle_root()),
            "af15a5aeb9c848e5137e403d8cdda11800bb663f83fda35b596dfe7b0d208daf"
        );
    }

    /// An index from the network cannot be had unchecked: parsing refuses what `check`
    /// refuses, and a hash that is not 64 lower-case hex digits.
    #[test]
    fn a_hostile_index_is_refused_as_it_is_parsed() {
        let h = "01".repeat(32);
        let file = |path: &str, size: u64, hash: &str| {
            format!(r#"{{"path":"{path}","size":{size},"mode":420,"chunks":[{{"hash":"{hash}","size":5}}]}}"#)
        };
        for (what, files) in [
            ("escaping path", file("../etc/passwd", 5, &h)),
            ("sizes", file("a", 6, &h)),
            ("twice", format!("{},{}", file("a", 5, &h), file("a", 5, &h))),
            ("upper-case hash", file("a", 5, &h.replace('a', "A").replace("01", "0A"))),
            ("short hash", file("a", 5, &h[2..])),
        ] {
            let text = format!(r#"{{"files":[{files}]}}"#);
            assert!(serde_json::from_str::<Index>(&text).is_err(), "{what}: {text}");
        }
    }
}
