//! The signed manifest: small, and everything else is checked against it.

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version of this document.
    pub format: u32,
    pub coin: String,
    pub network: String,
    pub kind: Kind,
    pub height: u64,
    pub block_hash: String,
    /// Only ever increases; a device refuses a version lower than the one it installed.
    pub version: u64,
    /// Unix seconds.
    pub created: i64,
    pub expires: i64,
    /// minisign key id (16 hex digits) of the signing key.
    pub key_id: String,
    /// SHA-256 of `index.json` exactly as published.
    pub index_sha256: String,
    pub index_size: u64,
    /// Merkle root over the index's chunk list.
    pub merkle_root: String,
    pub chunk_count: u64,
    /// Bytes of all files once installed.
    pub total_bytes: u64,
}

impl Manifest {
    /// The bytes that are published and signed.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("manifest serializes");
        v.push(b'\n');
        v
    }
}
