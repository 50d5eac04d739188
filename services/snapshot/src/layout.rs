//! Where each part of a snapshot lives, relative to the tree's root (a directory, a web
//! server path, an object-store prefix).

pub const MANIFEST: &str = "manifest.json";
pub const SIGNATURE: &str = "manifest.json.minisig";
pub const INDEX: &str = "index.json";

/// `chunks/ab/abcdef...zst` for a chunk's hex hash (two-level fan-out keeps directories small).
pub fn chunk_path(hash_hex: &str) -> String {
    format!("chunks/{}/{hash_hex}.zst", &hash_hex[..2])
}
