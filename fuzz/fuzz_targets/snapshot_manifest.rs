//! The snapshot manifest and its minisign signature (crates/libs/snapshot/src/manifest.rs,
//! crates/libs/minisign), in the order the agent reads them (crates/libs/snapshot/src/verify.rs,
//! `verify_manifest`): the signature file is parsed and checked against the pinned keys,
//! then the manifest is parsed.
//!
//! An input without a NUL is a manifest, signed here with the pinned key (so the fuzzer gets
//! past the signature into the manifest parser); an input with one is manifest bytes, a
//! NUL, and the signature file's text as fetched.
//!
//! Contract: never panics; a signature that verifies was made by a pinned key over exactly
//! these bytes; an accepted manifest serializes and parses back to itself, and its
//! signed form (to_bytes, what the publisher signs) verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minebox_snapshot::minisign::{SecretKey, SignatureFile};
use minebox_snapshot::Manifest;
use std::sync::OnceLock;

fn key() -> &'static SecretKey {
    static K: OnceLock<SecretKey> = OnceLock::new();
    K.get_or_init(|| {
        SecretKey::from_file(&format!("minebox-snapshot-key {} {}", "0102030405060708", "11".repeat(32)))
            .expect("fixed fuzzing key")
    })
}

fuzz_target!(|data: &[u8]| {
    let pinned = [key().public()];
    let (manifest, sig_text, signed_here) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], String::from_utf8_lossy(&data[i + 1..]).into_owned(), false),
        None => (data, key().sign(data, "minebox btc main height 1 version 1"), true),
    };
    let verified = match SignatureFile::parse(&sig_text) {
        Ok(sig) => sig.verify(manifest, &pinned).is_ok(),
        Err(_) => false,
    };
    assert!(verified || !signed_here, "a signature made by the pinned key does not verify");
    let Ok(m) = serde_json::from_slice::<Manifest>(manifest) else { return };
    let _ = m.kind().trust();
    let bytes = m.to_bytes();
    let back: Manifest = serde_json::from_slice(&bytes).expect("a manifest's own bytes parse");
    assert_eq!(back, m);
    // The publisher's trusted comment (crates/tools/publisher/src/publish.rs).
    let comment =
        format!("minebox {} {} {:?} height {} version {}", m.coin(), m.network(), m.kind(), m.height(), m.version())
            .to_lowercase();
    let sig = key().sign(&bytes, &comment);
    SignatureFile::parse(&sig)
        .and_then(|s| s.verify(&bytes, &pinned).map(|_| ()))
        .unwrap_or_else(|e| panic!("the publisher's signature of this manifest does not verify: {e}"));
});
