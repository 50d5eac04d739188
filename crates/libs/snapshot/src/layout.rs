//! Where each part of a snapshot lives, relative to the tree's root (a directory, a web
//! server path, an object-store prefix).

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.json.minisig";
pub const INDEX: &str = "index.json";

use crate::hash::ChunkHash;

/// `chunks/ab/abcdef...zst` for a chunk's hash (two-level fan-out keeps directories small).
pub fn chunk_path(hash: &ChunkHash) -> String {
    let hex = hash.to_hex();
    format!("chunks/{}/{hex}.zst", &hex[..2])
}
