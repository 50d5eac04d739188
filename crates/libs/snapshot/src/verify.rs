//! The one check of a published tree's documents (docs/snapshot-format.md, "Installing"),
//! used by the device before it installs and by `minebox-publisher verify`: the signature
//! against the pinned keys, the key the manifest names, the index against the manifest's
//! size and SHA-256, the index's own checks, its Merkle root and total. What passes is a
//! [`Verified`]; nothing else hands out a manifest and index to install from.
//!
//! It is two steps because a device fetches the index only after the manifest says how
//! large it is (and, with a trusted clock, that it has not expired): [`verify_manifest`],
//! then [`SignedManifest::verify_index`]. [`verify`] does both on bytes already at hand.
//! Chunks are checked one by one as they are used, against their [`crate::ChunkHash`].

use crate::index::Index;
use crate::manifest::Manifest;
use minebox_minisign::{PublicKey, SignError, SignatureFile};
use sha2::{Digest, Sha256};

/// Why a tree's documents were refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Signature(#[from] SignError),
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("{what} does not match what the signed manifest says: tampered or corrupted in transit")]
    Tampered { what: String },
}

/// A manifest whose signature verified against one of the pinned keys, the key it names.
#[derive(Debug, Clone)]
pub struct SignedManifest {
    manifest: Manifest,
}

/// A signed manifest and the index it commits to, both checked.
#[derive(Debug, Clone)]
pub struct Verified {
    manifest: Manifest,
    index: Index,
}

/// Checks `manifest_bytes` against its minisign signature file and the pinned keys, then
/// parses it.
pub fn verify_manifest(
    manifest_bytes: &[u8],
    signature: &str,
    keys: &[PublicKey],
) -> Result<SignedManifest, VerifyError> {
    let signer = SignatureFile::parse(signature)?.verify(manifest_bytes, keys)?.id.to_string();
    let manifest: Manifest = serde_json::from_slice(manifest_bytes)
        .map_err(|e| VerifyError::Malformed { what: "manifest", why: e.to_string() })?;
    if manifest.key_id != signer {
        return Err(VerifyError::Malformed {
            what: "manifest",
            why: format!("names key {} but was signed by {signer}", manifest.key_id),
        });
    }
    Ok(SignedManifest { manifest })
}

/// Both steps on bytes already at hand (a tree on disk).
pub fn verify(
    manifest_bytes: &[u8],
    signature: &str,
    keys: &[PublicKey],
    index_bytes: &[u8],
) -> Result<Verified, VerifyError> {
    verify_manifest(manifest_bytes, signature, keys)?.verify_index(index_bytes)
}

impl SignedManifest {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks index.json exactly as fetched against the manifest, parses it (which runs the
    /// index's own checks) and checks its Merkle root and total size.
    pub fn verify_index(self, index_bytes: &[u8]) -> Result<Verified, VerifyError> {
        let m = &self.manifest;
        if index_bytes.len() as u64 != m.index_size || hex::encode(Sha256::digest(index_bytes)) != m.index_sha256 {
            return Err(VerifyError::Tampered { what: "index.json".into() });
        }
        let index: Index = serde_json::from_slice(index_bytes)
            .map_err(|e| VerifyError::Malformed { what: "index", why: e.to_string() })?;
        if hex::encode(index.merkle_root()) != m.merkle_root || index.total_bytes() != m.total_bytes {
            return Err(VerifyError::Tampered { what: "index.json (Merkle root)".into() });
        }
        Ok(Verified { manifest: self.manifest, index })
    }
}

impl Verified {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn index(&self) -> &Index {
        &self.index
    }

    pub fn into_parts(self) -> (Manifest, Index) {
        (self.manifest, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::{ChunkRef, FileEntry};
    use crate::manifest::{Kind, FORMAT};
    use crate::ChunkHash;
    use minebox_minisign::SecretKey;

    /// A signed manifest, its signature and index.json, as the publisher writes them.
    fn tree(key: &SecretKey) -> (Manifest, String, Vec<u8>) {
        let chunk = ChunkRef { hash: ChunkHash::of(b"chunk"), size: 5 };
        let index =
            Index::new(vec![FileEntry { path: "a".into(), size: 5, mode: 0o644, chunks: vec![chunk] }]).unwrap();
        let index_bytes = serde_json::to_vec(&index).unwrap();
        let manifest = Manifest {
            format: FORMAT,
            coin: "btc".into(),
            network: "regtest".into(),
            kind: Kind::Datadir,
            height: 1,
            block_hash: "11".repeat(32),
            version: 1,
            created: 0,
            expires: 1,
            key_id: key.id.to_string(),
            index_sha256: hex::encode(Sha256::digest(&index_bytes)),
            index_size: index_bytes.len() as u64,
            merkle_root: hex::encode(index.merkle_root()),
            chunk_count: 1,
            total_bytes: 5,
        };
        let sig = key.sign(&manifest.to_bytes(), "minebox btc regtest");
        (manifest, sig, index_bytes)
    }

    #[test]
    fn a_published_tree_verifies_and_every_change_is_refused() {
        let key = SecretKey::generate();
        let keys = [key.public()];
        let (m, sig, index) = tree(&key);
        let v = verify(&m.to_bytes(), &sig, &keys, &index).unwrap();
        assert_eq!((v.manifest(), v.index().files()[0].path.as_str()), (&m, "a"));

        let other = SecretKey::generate();
        let e = verify(&m.to_bytes(), &other.sign(&m.to_bytes(), "x"), &keys, &index).unwrap_err();
        assert!(matches!(e, VerifyError::Signature(SignError::UnknownKey { .. })), "{e}");
        let e = verify(&m.to_bytes(), &sig, &keys, &[&index[..], b" "].concat()).unwrap_err();
        assert!(matches!(e, VerifyError::Tampered { .. }), "{e}");
        let renamed = Manifest { key_id: other.id.to_string(), ..m.clone() };
        let e = verify(&renamed.to_bytes(), &key.sign(&renamed.to_bytes(), "x"), &keys, &index).unwrap_err();
        assert!(e.to_string().contains("names key"), "{e}");
        let bigger = Manifest { total_bytes: 6, ..m.clone() };
        let e = verify(&bigger.to_bytes(), &key.sign(&bigger.to_bytes(), "x"), &keys, &index).unwrap_err();
        assert!(matches!(e, VerifyError::Tampered { .. }), "{e}");
    }
}
