//! Checks a published tree end to end, as a device would: the documents through the same
//! `minebox_snapshot::verify` the device runs, then every chunk against its hash.

use anyhow::{bail, Context};
use minebox_minisign::PublicKey;
use minebox_snapshot::layout;
use minebox_snapshot::manifest::Manifest;
use minebox_snapshot::ChunkHash;
use std::path::Path;

pub fn verify(dir: &Path, keys: &[PublicKey]) -> anyhow::Result<Manifest> {
    let manifest_bytes = std::fs::read(dir.join(layout::MANIFEST)).context("manifest.json")?;
    let sig = std::fs::read_to_string(dir.join(layout::SIGNATURE)).context("manifest.json.minisig")?;
    let signed = minebox_snapshot::verify_manifest(&manifest_bytes, &sig, keys)?;
    let index_bytes = std::fs::read(dir.join(layout::INDEX)).context("index.json")?;
    let (manifest, index) = signed.verify_index(&index_bytes)?.into_parts();
    let mut seen = std::collections::HashSet::new();
    for c in index.chunks() {
        if !seen.insert(c.hash) {
            continue;
        }
        let path = dir.join(layout::chunk_path(&c.hash));
        let compressed = std::fs::read(&path).with_context(|| format!("missing chunk {}", path.display()))?;
        let plain = zstd::bulk::decompress(&compressed, c.size as usize)
            .with_context(|| format!("chunk {} does not decompress", c.hash))?;
        if plain.len() != c.size as usize || ChunkHash::of(&plain) != c.hash {
            bail!("chunk {} is corrupt", c.hash);
        }
    }
    Ok(manifest)
}
