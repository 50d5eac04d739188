//! The updater's channel manifest (crates/daemons/updater/src/manifest.rs): `manifest::verify`
//! on the bytes and detached signature fetched from the update channel, then `applies`.
//!
//! An input without a NUL is a manifest, signed here with the pinned key (the fuzzer then
//! explores the manifest checks behind the signature); an input with one is manifest
//! bytes, a NUL, and the detached signature's text as fetched.
//!
//! Contract: never panics; what verifies was signed by a pinned key over exactly these
//! bytes and has a 64-hex-digit SHA-256, a version and a bundle URL; `applies` never
//! says yes to another board, a bundle over the limit, or the running version; and a
//! manifest the signing command writes (`manifest::sign`) verifies on the device.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minebox_snapshot::minisign::SecretKey;
use minebox_updater::manifest::{self, sign, ManifestError};
use std::sync::OnceLock;

fn key() -> &'static SecretKey {
    static K: OnceLock<SecretKey> = OnceLock::new();
    K.get_or_init(|| {
        SecretKey::from_file(&format!("minebox-snapshot-key {} {}", "a1a2a3a4a5a6a7a8", "42".repeat(32)))
            .expect("fixed fuzzing key")
    })
}

const BOARD: &str = "minebox-rpi5";
const LIMIT: u64 = 1024 << 20;

fuzz_target!(|data: &[u8]| {
    let (bytes, signature) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], String::from_utf8_lossy(&data[i + 1..]).into_owned()),
        None => (data, key().sign(data, "minebox update minebox-rpi5 1.0.0")),
    };
    let pinned = [key().public()];
    let m = match manifest::verify(bytes, &signature, &pinned) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    assert_eq!(m.sha256.len(), 64);
    assert!(m.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
    assert!(!m.version.trim().is_empty() && !m.bundle_url.trim().is_empty());
    for running in ["1.0.0", m.version.as_str()] {
        match manifest::applies(&m, BOARD, running, LIMIT) {
            Ok(yes) => {
                assert_eq!(m.compatible, BOARD);
                assert!(m.size <= LIMIT);
                assert_eq!(yes, m.version != running);
            }
            Err(ManifestError::WrongBoard { .. }) => assert_ne!(m.compatible, BOARD),
            Err(ManifestError::TooLarge { .. }) => assert!(m.size > LIMIT),
            Err(e) => panic!("applies: {e}"),
        }
    }
    // What the signing command (minebox-update-manifest) publishes for this manifest must
    // verify on the device and mean the same.
    let (text, sig) = sign(&m, key());
    let back = manifest::verify(text.as_bytes(), &sig, &pinned)
        .unwrap_or_else(|e| panic!("the signing command's own output is refused: {e}"));
    assert_eq!(back, m);
});
