//! The channel manifest: which version is current for a board, where its bundle is, and
//! its size and SHA-256. It is signed (minisign format, detached `<url>.minisig`) by the
//! same key infrastructure as snapshots; the pinned keys are `update-*.pub` in the keys
//! directory. A manifest is acted on only if its signature verifies, it is for this
//! board, and it names another version than the one running.

use minebox_minisign::{PublicKey, SecretKey, SignError, SignatureFile};
use std::path::Path;

/// The largest manifest or signature read: they are a few hundred bytes.
const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// The manifest's fields (the API shows the verified one on offer).
pub use minebox_api::updater::Manifest;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("fetching {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("manifest signature refused: {0}")]
    Signature(#[from] SignError),
    #[error("pinned update keys: {0}")]
    Keys(String),
    #[error("malformed manifest: {0}")]
    Malformed(String),
    #[error("manifest is for {found:?}, this box is {expected:?}")]
    WrongBoard { found: String, expected: String },
    #[error("manifest bundle is {size} bytes, more than the {limit} allowed")]
    TooLarge { size: u64, limit: u64 },
}

/// Parses `bytes` after checking `signature` over exactly those bytes.
pub fn verify(bytes: &[u8], signature: &str, keys: &[PublicKey]) -> Result<Manifest, ManifestError> {
    let sig = SignatureFile::parse(signature)?;
    sig.verify(bytes, keys)?;
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    if m.sha256.len() != 64 || !m.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ManifestError::Malformed(format!("sha256 {:?} is not 64 hex digits", m.sha256)));
    }
    if m.version.trim().is_empty() || m.bundle_url.trim().is_empty() {
        return Err(ManifestError::Malformed("empty version or bundle_url".into()));
    }
    Ok(m)
}

/// Whether this box should install `m`: `Ok(false)` when it is the running version.
pub fn applies(m: &Manifest, compatible: &str, running: &str, limit: u64) -> Result<bool, ManifestError> {
    if m.compatible != compatible {
        return Err(ManifestError::WrongBoard { found: m.compatible.clone(), expected: compatible.into() });
    }
    if m.size > limit {
        return Err(ManifestError::TooLarge { size: m.size, limit });
    }
    Ok(m.version != running)
}

/// Downloads the manifest and its signature and verifies them.
pub async fn fetch(client: &reqwest::Client, url: &str, keys: &[PublicKey]) -> Result<Manifest, ManifestError> {
    let body = get_small(client, url).await?;
    let sig_url = format!("{url}.minisig");
    let sig = get_small(client, &sig_url).await?;
    let sig = String::from_utf8(sig)
        .map_err(|_| ManifestError::Fetch { url: sig_url, message: "signature is not text".into() })?;
    verify(&body, &sig, keys)
}

/// Reads the pinned update keys: every `update-*.pub` in `dir`.
pub fn pinned_keys(dir: &Path) -> Result<Vec<PublicKey>, ManifestError> {
    let keys = PublicKey::pinned(dir, "update").map_err(|e| ManifestError::Keys(e.to_string()))?;
    if keys.is_empty() {
        return Err(ManifestError::Keys(format!("no update-*.pub in {}", dir.display())));
    }
    Ok(keys)
}

/// The manifest file and its detached signature, as published (the signing command).
pub fn sign(manifest: &Manifest, key: &SecretKey) -> (String, String) {
    let text = serde_json::to_string_pretty(manifest).expect("manifest serializes") + "\n";
    let sig = key.sign(text.as_bytes(), &format!("minebox update {} {}", manifest.compatible, manifest.version));
    (text, sig)
}

async fn get_small(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, ManifestError> {
    let fail = |message: String| ManifestError::Fetch { url: url.to_string(), message };
    let mut resp = client.get(url).send().await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(fail(format!("larger than {MAX_MANIFEST_BYTES} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            version: "1.2.0".into(),
            compatible: "minebox-rpi5".into(),
            bundle_url: "https://u/b.raucb".into(),
            size: 10,
            sha256: "ab".repeat(32),
            notes: String::new(),
        }
    }

    #[test]
    fn signed_manifest_verifies_and_any_change_or_other_key_is_refused() {
        let k = SecretKey::generate();
        let (text, sig) = sign(&manifest(), &k);
        assert_eq!(verify(text.as_bytes(), &sig, &[k.public()]).unwrap(), manifest());
        let altered = text.replace("1.2.0", "1.2.1");
        assert!(matches!(
            verify(altered.as_bytes(), &sig, &[k.public()]),
            Err(ManifestError::Signature(SignError::BadSignature))
        ));
        let other = SecretKey::generate();
        assert!(matches!(
            verify(text.as_bytes(), &sig, &[other.public()]),
            Err(ManifestError::Signature(SignError::UnknownKey { .. }))
        ));
    }

    #[test]
    fn wrong_board_oversized_and_same_version() {
        let m = manifest();
        assert!(matches!(applies(&m, "minebox-x86", "1.0", 100), Err(ManifestError::WrongBoard { .. })));
        assert!(matches!(applies(&m, "minebox-rpi5", "1.0", 5), Err(ManifestError::TooLarge { .. })));
        assert!(!applies(&m, "minebox-rpi5", "1.2.0", 100).unwrap());
        assert!(applies(&m, "minebox-rpi5", "1.1.0", 100).unwrap());
    }
}
