//! The snapshot index (crates/libs/snapshot/src/index.rs): index.json as the agent reads it
//! from the network (crates/libs/snapshot/src/verify.rs, `verify_index`). Parsing runs the
//! index's checks: there is no unchecked `Index`.
//!
//! Contract: parsing never panics; an index that parses is safe to install: every path
//! stays inside the install directory, no path twice, chunk hashes are 64 lower-case hex
//! digits (so their chunk paths can be formed), sizes add up; its Merkle root and total are
//! computed without overflow and survive a serialize/parse round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minebox_snapshot::{layout, Index};
use std::path::{Component, Path};

fuzz_target!(|data: &[u8]| {
    let Ok(index) = serde_json::from_slice::<Index>(data) else { return };
    let root = index.merkle_root();
    let install = Path::new("/data/nodes/btc");
    for f in index.files() {
        let p = install.join(&f.path);
        assert!(p.starts_with(install) && p != install, "{:?} escapes the install directory", f.path);
        assert!(Path::new(&f.path).components().all(|c| matches!(c, Component::Normal(_))), "{:?}", f.path);
        assert_eq!(f.chunks.iter().map(|c| c.size as u64).sum::<u64>(), f.size);
        for c in &f.chunks {
            let rel = layout::chunk_path(&c.hash);
            assert!(rel.starts_with("chunks/") && !rel.contains(".."), "{rel}");
        }
    }
    let _ =
        index.files().iter().try_fold(0u64, |t, f| t.checked_add(f.size)).map(|t| assert_eq!(t, index.total_bytes()));
    let again: Index = serde_json::from_slice(&serde_json::to_vec(&index).expect("serializes")).expect("parses back");
    assert_eq!(again, index);
    assert_eq!(again.merkle_root(), root);
});
