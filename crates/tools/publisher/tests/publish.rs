//! The publisher CLI on a node-like data directory: publish, verify, republish with reuse,
//! and refusals (key permissions, version going back, tampering).

use minebox_test_support::noise;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_minebox-publisher")).args(args).output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn datadir(root: &Path) {
    std::fs::create_dir_all(root.join("blocks/index")).unwrap();
    std::fs::create_dir_all(root.join("chainstate")).unwrap();
    std::fs::write(root.join("blocks/blk00000.dat"), noise(12 << 20, 1)).unwrap();
    std::fs::write(root.join("blocks/xor.dat"), [7u8; 8]).unwrap();
    std::fs::write(root.join("blocks/index/000001.ldb"), noise(300_000, 2)).unwrap();
    std::fs::write(root.join("chainstate/000002.ldb"), noise(3 << 20, 3)).unwrap();
    // Things that must not travel.
    std::fs::write(root.join(".cookie"), "__cookie__:secret").unwrap();
    std::fs::write(root.join("debug.log"), "log").unwrap();
    std::fs::write(root.join("peers.dat"), "peers").unwrap();
}

#[test]
fn publish_verify_republish_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let (ok, out) = run(&["keygen", "--secret", &d("key.sec"), "--public", &d("key.pub")]);
    assert!(ok, "{out}");
    assert_eq!(std::fs::metadata(d("key.sec")).unwrap().permissions().mode() & 0o777, 0o600);
    let secret = std::fs::read_to_string(d("key.sec")).unwrap();
    assert!(!out.contains(secret.split_whitespace().last().unwrap()), "secret printed");
    assert!(
        !run(&["keygen", "--secret", &d("key.sec"), "--public", &d("key2.pub")]).0,
        "an existing key is never overwritten"
    );

    datadir(&dir.path().join("node"));
    let publish = |version: &str| {
        run(&[
            "publish",
            "--source",
            &d("node"),
            "--kind",
            "datadir",
            "--coin",
            "bch",
            "--network",
            "main",
            "--height",
            "880000",
            "--block-hash",
            "000000000000000001f0a1",
            "--version",
            version,
            "--key",
            &d("key.sec"),
            "--out",
            &d("tree"),
        ])
    };
    let (ok, out) = publish("1");
    assert!(ok, "{out}");
    assert!(out.contains("4 files"), "{out}");
    assert!(out.contains("reused, 0 bytes") || out.contains("0 reused"), "{out}");
    let index = std::fs::read_to_string(d("tree/index.json")).unwrap();
    assert!(index.contains("blocks/xor.dat"), "the block obfuscation key travels with the blocks");
    for excluded in [".cookie", "debug.log", "peers.dat"] {
        assert!(!index.contains(excluded), "{excluded} must not be published");
    }
    let (ok, out) = run(&["verify", "--dir", &d("tree"), "--pubkey", &d("key.pub")]);
    assert!(ok, "{out}");

    // The same version again is refused; a new one reuses almost everything.
    assert!(!publish("1").0);
    let mut blk = std::fs::read(d("node/blocks/blk00000.dat")).unwrap();
    blk.extend_from_slice(&noise(1 << 20, 9));
    std::fs::write(d("node/blocks/blk00000.dat"), blk).unwrap();
    let (ok, out) = publish("2");
    assert!(ok, "{out}");
    let reused: usize = out.split(" reused").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(reused >= 4, "most chunks reused: {out}");

    // Tampering is caught.
    let chunk = std::fs::read_dir(d("tree/chunks")).unwrap().next().unwrap().unwrap().path();
    let file = std::fs::read_dir(&chunk).unwrap().next().unwrap().unwrap().path();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&file, bytes).unwrap();
    let (ok, out) = run(&["verify", "--dir", &d("tree"), "--pubkey", &d("key.pub")]);
    assert!(!ok && (out.contains("corrupt") || out.contains("decompress")), "{out}");

    // A world-readable key is refused.
    std::fs::set_permissions(d("key.sec"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = publish("3");
    assert!(!ok && out.contains("chmod 600"), "{out}");
}

/// A dumptxoutset file is published only under the block and chain it was dumped at.
#[test]
fn a_utxo_file_is_published_only_for_the_block_and_chain_it_was_dumped_at() {
    use minebox_publisher::publish::{publish, Request};
    use minebox_snapshot::manifest::Kind;
    let dir = tempfile::tempdir().unwrap();
    let base = "385901ccbd69dff6bbd00065d01fb8a9e464dede7cfe0372443884f9b1dcf6b9";
    // The metadata Bitcoin Core 28+ writes: magic, version 2, regtest's network magic, base block.
    let mut file = b"utxo\xff\x02\x00".to_vec();
    file.extend([0xfa, 0xbf, 0xb5, 0xda]);
    let mut hash = hex::decode(base).unwrap();
    hash.reverse();
    file.extend(hash);
    file.extend(0u64.to_le_bytes());
    std::fs::write(dir.path().join("utxo.dat"), &file).unwrap();
    let key = minebox_snapshot::minisign::SecretKey::generate();
    let req = |network: &str, block: &str| Request {
        source: dir.path().join("utxo.dat"),
        kind: Kind::Utxo,
        coin: "btc".into(),
        network: network.into(),
        height: 200,
        block_hash: block.into(),
        version: 1,
        expires_in_secs: 3600,
        out: dir.path().join("tree"),
        level: 3,
    };
    let e = publish(&req("regtest", &format!("{:064x}", 1)), &key).unwrap_err().to_string();
    assert!(e.contains("dumped at block 385901cc"), "{e}");
    let e = publish(&req("main", base), &key).unwrap_err().to_string();
    assert!(e.contains("another chain than main"), "{e}");
    let (m, _) = publish(&req("regtest", base), &key).unwrap();
    assert_eq!(m.block_hash(), base);
}

/// `verify` checks a tree as a device does (the same `minebox_snapshot::verify`): a manifest
/// signed by the right key but whose total the index does not add up to, or that names
/// another key than the one that signed it, is refused, not reported "ok".
#[test]
fn verify_refuses_what_a_device_refuses() {
    use minebox_publisher::publish::{publish, Request};
    use minebox_publisher::verify::verify;
    use minebox_snapshot::manifest::{Kind, Manifest};
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("node/blocks")).unwrap();
    std::fs::write(dir.path().join("node/blocks/blk00000.dat"), noise(1 << 20, 9)).unwrap();
    let key = minebox_minisign::SecretKey::generate();
    let tree = dir.path().join("tree");
    let req = Request {
        source: dir.path().join("node"),
        kind: Kind::Datadir,
        coin: "btc".into(),
        network: "regtest".into(),
        height: 1,
        block_hash: "11".repeat(32),
        version: 1,
        expires_in_secs: 3600,
        out: tree.clone(),
        level: 3,
    };
    let (m, _) = publish(&req, &key).unwrap();
    verify(&tree, &[key.public()]).unwrap();
    // A manifest is never altered field by field: these are edited as the JSON an attacker
    // would publish.
    let altered = |field: &str, value: serde_json::Value| -> Manifest {
        let mut v = serde_json::to_value(&m).unwrap();
        v[field] = value;
        serde_json::from_value(v).unwrap()
    };
    let wrong_total = altered("total_bytes", (m.total_bytes() + 1).into());
    let wrong_key = altered("key_id", "0000000000000000".into());
    for (what, manifest, says) in [
        ("total", wrong_total, "index.json (Merkle root) does not match"),
        ("key", wrong_key, "names key 0000000000000000"),
    ] {
        let bytes = manifest.to_bytes();
        std::fs::write(tree.join("manifest.json.minisig"), key.sign(&bytes, "minebox btc regtest")).unwrap();
        std::fs::write(tree.join("manifest.json"), bytes).unwrap();
        let e = verify(&tree, &[key.public()]).expect_err(what).to_string();
        assert!(e.contains(says), "{what}: {e}");
    }
}
