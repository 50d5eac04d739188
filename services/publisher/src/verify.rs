//! Checks a published tree end to end, as a device would: signature against the given
//! keys, the index against the manifest, every chunk against its hash.

use anyhow::{bail, Context};
use minebox_snapshot::index::Index;
use minebox_snapshot::layout;
use minebox_snapshot::manifest::Manifest;
use minebox_snapshot::minisign::{PublicKey, SignatureFile};
use sha2::{Digest, Sha256};
use std::path::Path;

pub fn verify(dir: &Path, keys: &[PublicKey]) -> anyhow::Result<Manifest> {
    let manifest_bytes = std::fs::read(dir.join(layout::MANIFEST)).context("manifest.json")?;
    let sig = std::fs::read_to_string(dir.join(layout::SIGNATURE)).context("manifest.json.minisig")?;
    SignatureFile::parse(&sig)?.verify(&manifest_bytes, keys)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).context("manifest.json")?;
    let index_bytes = std::fs::read(dir.join(layout::INDEX)).context("index.json")?;
    if hex::encode(Sha256::digest(&index_bytes)) != manifest.index_sha256 {
        bail!("index.json does not match the manifest's index_sha256");
    }
    let index: Index = serde_json::from_slice(&index_bytes)?;
    index.check()?;
    if hex::encode(index.merkle_root()) != manifest.merkle_root {
        bail!("the index's Merkle root does not match the manifest");
    }
    let mut seen = std::collections::HashSet::new();
    for c in index.chunks() {
        if !seen.insert(&c.hash) {
            continue;
        }
        let path = dir.join(layout::chunk_path(&c.hash));
        let compressed = std::fs::read(&path).with_context(|| format!("missing chunk {}", path.display()))?;
        let plain = zstd::bulk::decompress(&compressed, c.size as usize)
            .with_context(|| format!("chunk {} does not decompress", c.hash))?;
        if plain.len() != c.size as usize || hex::encode(Sha256::digest(&plain)) != c.hash {
            bail!("chunk {} is corrupt", c.hash);
        }
    }
    Ok(manifest)
}
