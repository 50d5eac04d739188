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
//! - [`manifest`], [`index`]: the two documents; [`hash`]: a chunk's name.
//! - [`verify()`]: the one check of a published tree's documents, for the publisher and the
//!   device alike; what passes is a [`Verified`] manifest and index.
//! - [`chunk`]: content-defined chunking; [`layout`]: where things are in a tree.
//! - [`minisign`]: keys and signatures (the minebox-minisign crate, which the updater
//!   shares; re-exported because [`verify()`] takes its keys).

pub mod chunk;
pub mod hash;
pub mod index;
pub mod layout;
pub mod manifest;
pub mod verify;

pub use hash::ChunkHash;
pub use index::{ChunkRef, FileEntry, Index};
pub use manifest::{Kind, Manifest};
pub use minebox_minisign as minisign;
pub use verify::{verify, verify_manifest, SignedManifest, Verified, VerifyError};
