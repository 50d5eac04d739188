//! The signed manifest: small, and everything else is checked against it.

use crate::index::Index;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a snapshot contains, and so how far it is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Bitcoin Core's assumeutxo file: the node itself checks it against the hash compiled
    /// into Bitcoin Core, so the publisher cannot feed it a false UTXO set.
    Utxo,
    /// A node's data directory: trusted only through the publisher's signature.
    Datadir,
}

impl Kind {
    /// What the status page tells the user.
    pub fn trust(self) -> &'static str {
        match self {
            Kind::Utxo => "verified by the node against the UTXO hash built into Bitcoin Core",
            Kind::Datadir => "trusted through the publisher's signature only",
        }
    }
}

pub const FORMAT: u32 = 1;

/// A manifest: what a snapshot is and the index it commits to. Its fields are read through
/// accessors and never set one by one outside this crate: the publisher makes one with [`Manifest::new`], which
/// takes the index's figures from the index itself, and a device gets one only from
/// [`crate::verify_manifest`] (a [`crate::SignedManifest`], then a [`crate::Verified`]), so a
/// manifest that was checked cannot be altered afterwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version of this document.
    pub(crate) format: u32,
    pub(crate) coin: String,
    pub(crate) network: String,
    pub(crate) kind: Kind,
    pub(crate) height: u64,
    pub(crate) block_hash: String,
    /// Only ever increases; a device refuses a version lower than the one it installed.
    pub(crate) version: u64,
    /// Unix seconds.
    pub(crate) created: i64,
    pub(crate) expires: i64,
    /// minisign key id (16 hex digits) of the signing key.
    pub(crate) key_id: String,
    /// SHA-256 of `index.json` exactly as published.
    pub(crate) index_sha256: String,
    pub(crate) index_size: u64,
    /// Merkle root over the index's chunk list.
    pub(crate) merkle_root: String,
    pub(crate) chunk_count: u64,
    /// Bytes of all files once installed.
    pub(crate) total_bytes: u64,
}

/// What the publisher says about a snapshot; [`Manifest::new`] adds the rest from the index.
#[derive(Debug, Clone)]
pub struct About {
    pub coin: String,
    pub network: String,
    pub kind: Kind,
    pub height: u64,
    pub block_hash: String,
    pub version: u64,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
}

impl Manifest {
    /// The manifest of `index` (published as [`Index::to_bytes`]), to be signed by `key_id`.
    pub fn new(about: About, key_id: String, index: &Index) -> Manifest {
        let index_bytes = index.to_bytes();
        let About { coin, network, kind, height, block_hash, version, created, expires } = about;
        Manifest {
            format: FORMAT,
            coin,
            network,
            kind,
            height,
            block_hash,
            version,
            created,
            expires,
            key_id,
            index_sha256: hex::encode(Sha256::digest(&index_bytes)),
            index_size: index_bytes.len() as u64,
            merkle_root: hex::encode(index.merkle_root()),
            chunk_count: index.chunks().count() as u64,
            total_bytes: index.total_bytes(),
        }
    }

    /// The bytes that are published and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }

    pub fn format(&self) -> u32 {
        self.format
    }
    pub fn coin(&self) -> &str {
        &self.coin
    }
    pub fn network(&self) -> &str {
        &self.network
    }
    pub fn kind(&self) -> Kind {
        self.kind
    }
    pub fn height(&self) -> u64 {
        self.height
    }
    /// The hash of the block the snapshot was taken at.
    pub fn block_hash(&self) -> &str {
        &self.block_hash
    }
    pub fn version(&self) -> u64 {
        self.version
    }
    pub fn created(&self) -> i64 {
        self.created
    }
    pub fn expires(&self) -> i64 {
        self.expires
    }
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
    pub fn index_sha256(&self) -> &str {
        &self.index_sha256
    }
    pub fn index_size(&self) -> u64 {
        self.index_size
    }
    pub fn merkle_root(&self) -> &str {
        &self.merkle_root
    }
    pub fn chunk_count(&self) -> u64 {
        self.chunk_count
    }
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }
}
