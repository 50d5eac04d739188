//! The MineBox snapshot format (specified in docs/snapshot-format.md), shared by the cloud
//! publisher and the on-device agent.
//!
//! A published tree is:
//!
//! ```text
//! manifest.json            signed; coin, height, version, expiry, index hash, Merkle root
//! manifest.json.minisig    minisign signature (check with the stock minisign tool)
//! index.json               every file as a list of chunks (SHA-256 of the plain bytes)
//! chunks/ab/abcd....zst    each chunk zstd-compressed, named by its plain SHA-256
//! ```
//!
//! - [`manifest`], [`index`]: the two documents; [`minisign`]: keys and signatures.
//! - [`chunk`]: content-defined chunking; [`layout`]: where things are in a tree.

pub mod chunk;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod minisign;

pub use index::{ChunkRef, FileEntry, Index};
pub use manifest::{Kind, Manifest};
