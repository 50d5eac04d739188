//! The agent against real nginx, through a fault-injecting proxy.

mod support;

use minebox_snapshot::minisign::SecretKey;
use minebox_snapshot_agent::install::{self, Options};
use minebox_snapshot_agent::progress::{Phase, SharedProgress};
use minebox_snapshot_agent::AgentError;
use std::time::Duration;
use support::*;

struct World {
    dir: tempfile::TempDir,
    key: SecretKey,
    _nginx: Nginx,
    url: String,
    proxy: std::sync::Arc<ProxyState>,
}

impl World {
    async fn new(mib: usize) -> World {
        let dir = tempfile::tempdir().unwrap();
        make_datadir(&dir.path().join("source"), mib, 1);
        let key = SecretKey::generate();
        publish_tree(&dir.path().join("source"), &dir.path().join("tree"), &key, 1, 86_400);
        let nginx = Nginx::serve(&dir.path().join("tree"), None);
        let (url, proxy) = proxy(format!("http://127.0.0.1:{}", nginx.port)).await;
        World { dir, key, _nginx: nginx, url, proxy }
    }

    fn dest(&self) -> std::path::PathBuf {
        self.dir.path().join("node")
    }

    fn options(&self) -> Options {
        let mut o = Options::new(&self.url, vec![self.key.public()], &self.dest());
        o.request_timeout = Duration::from_secs(2);
        o.retries = 4;
        o
    }

    fn fault(&self, path_contains: &str, kind: FaultKind, times: u32) {
        self.proxy.faults.lock().unwrap().push(Fault { path_contains: path_contains.into(), kind, times });
    }

    async fn install(&self) -> Result<install::Report, AgentError> {
        install::install(self.options(), SharedProgress::default()).await
    }
}

fn first_chunk(tree: &std::path::Path) -> minebox_snapshot::ChunkHash {
    let index: minebox_snapshot::Index =
        serde_json::from_slice(&std::fs::read(tree.join("index.json")).unwrap()).unwrap();
    index.files()[0].chunks[0].hash
}

#[tokio::test]
async fn installs_a_snapshot_byte_for_byte() {
    let w = World::new(8).await;
    let progress = SharedProgress::default();
    let report = install::install(w.options(), progress.clone()).await.unwrap();
    same_tree(&w.dir.path().join("source"), &w.dest());
    assert_eq!(report.version, 1);
    assert_eq!(progress.get().phase, Phase::Done);
    assert_eq!(progress.get().bytes_done, report.bytes_total);
    assert_eq!(install::installed(&w.dest()).unwrap().version, 1);
    // The same version again: nothing to do.
    assert!(w.install().await.unwrap().already_installed);
}

#[tokio::test]
async fn every_transport_fault_is_detected_and_recovered() {
    for (name, kind) in [
        ("corrupt byte", FaultKind::Corrupt),
        ("truncated body", FaultKind::Truncate),
        ("HTTP 500", FaultKind::ServerError),
        ("stall", FaultKind::Stall),
    ] {
        let w = World::new(6).await;
        let chunk = first_chunk(&w.dir.path().join("tree"));
        w.fault(&format!("{chunk}.zst"), kind, 1);
        w.install().await.unwrap_or_else(|e| panic!("{name}: {e}"));
        same_tree(&w.dir.path().join("source"), &w.dest());
        let asked = w.proxy.requests.lock().unwrap().iter().filter(|p| p.contains(&chunk.to_hex())).count();
        assert!(asked >= 2, "{name}: the chunk was fetched again ({asked} requests)");
    }
}

#[tokio::test]
async fn a_file_changed_mid_resume_is_refused_and_the_old_data_kept() {
    let w = World::new(6).await;
    // A first install, so there is old data to keep.
    w.install().await.unwrap();
    make_datadir(&w.dir.path().join("source"), 6, 2);
    publish_tree(&w.dir.path().join("source"), &w.dir.path().join("tree"), &w.key, 2, 86_400);
    let chunk = first_chunk(&w.dir.path().join("tree"));
    let file = w.dir.path().join("tree").join(minebox_snapshot::layout::chunk_path(&chunk));
    let original = std::fs::read(&file).unwrap();
    w.fault(
        &format!("{chunk}.zst"),
        FaultKind::ChangeMidResume { file: file.clone(), replacement: noise(original.len(), 99) },
        1,
    );
    let before = std::fs::read(w.dest().join("blocks/blk00000.dat")).unwrap();
    let e = w.install().await.unwrap_err();
    assert!(matches!(e, AgentError::Tampered { .. }), "{e}");
    assert_eq!(std::fs::read(w.dest().join("blocks/blk00000.dat")).unwrap(), before, "old data untouched");
    assert_eq!(install::installed(&w.dest()).unwrap().version, 1);
    // The publisher repairs the file: the next run resumes and finishes.
    std::fs::write(&file, original).unwrap();
    w.install().await.unwrap();
    same_tree(&w.dir.path().join("source"), &w.dest());
}

#[tokio::test]
async fn a_missing_chunk_is_a_clear_404_and_nothing_is_half_installed() {
    let w = World::new(4).await;
    let chunk = first_chunk(&w.dir.path().join("tree"));
    std::fs::remove_file(w.dir.path().join("tree").join(minebox_snapshot::layout::chunk_path(&chunk))).unwrap();
    let e = w.install().await.unwrap_err();
    assert!(matches!(e, AgentError::NotFound { .. }), "{e}");
    assert!(!w.dest().exists(), "no half-installed data directory");
}

#[tokio::test]
async fn every_signed_field_is_protected() {
    let w = World::new(2).await;
    let manifest = std::fs::read_to_string(w.dir.path().join("tree/manifest.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    for (field, value) in v.as_object().unwrap() {
        let mut t = v.clone();
        t[field] = match value {
            serde_json::Value::Number(n) => serde_json::json!(n.as_u64().unwrap_or(0) + 1),
            serde_json::Value::String(s) if field == "kind" => {
                serde_json::json!(if s == "datadir" { "utxo" } else { "datadir" })
            }
            serde_json::Value::String(s) => serde_json::json!(format!("{}0", &s[..s.len() - 1])),
            other => other.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&t).unwrap();
        bytes.push(b'\n');
        w.fault("manifest.json", FaultKind::Replace(bytes), 2);
        let e = w.install().await.unwrap_err();
        assert!(e.to_string().contains("bad signature"), "tampered {field}: {e}");
        w.proxy.faults.lock().unwrap().clear();
    }
    // The index and the signature are checked too.
    w.fault("index.json", FaultKind::Replace(b"{\"files\":[]}".to_vec()), 1);
    assert!(matches!(w.install().await.unwrap_err(), AgentError::Tampered { .. }));
    // A key that is not pinned.
    let mut o = w.options();
    o.keys = vec![SecretKey::generate().public()];
    let e = install::install(o, SharedProgress::default()).await.unwrap_err();
    assert!(e.to_string().contains("not one of the pinned keys"), "{e}");
    assert!(!w.dest().exists());
}

#[tokio::test]
async fn expired_and_rolled_back_snapshots_are_refused() {
    let w = World::new(2).await;
    publish_tree(&w.dir.path().join("source"), &w.dir.path().join("tree"), &w.key, 1, -60);
    let e = w.install().await.unwrap_err();
    assert!(matches!(e, AgentError::Expired { .. }), "{e}");
    // Before the clock is trusted (no RTC, no NTP yet), expiry cannot be judged.
    let mut o = w.options();
    o.clock_trusted = false;
    install::install(o, SharedProgress::default()).await.unwrap();
    // Version 3 installed, then the server offers 2: refused.
    publish_tree(&w.dir.path().join("source"), &w.dir.path().join("tree"), &w.key, 3, 86_400);
    w.install().await.unwrap();
    publish_tree(&w.dir.path().join("source"), &w.dir.path().join("tree"), &w.key, 2, 86_400);
    let e = w.install().await.unwrap_err();
    assert!(matches!(e, AgentError::Rollback { offered: 2, installed: 3 }), "{e}");
}

#[tokio::test]
async fn an_update_downloads_only_the_difference() {
    let w = World::new(32).await;
    let first = w.install().await.unwrap();
    let tree = w.dir.path().join("tree");
    let chunks_of = |tree: &std::path::Path| -> std::collections::HashSet<minebox_snapshot::ChunkHash> {
        let index: minebox_snapshot::Index =
            serde_json::from_slice(&std::fs::read(tree.join("index.json")).unwrap()).unwrap();
        index.chunks().map(|c| c.hash).collect()
    };
    let before = chunks_of(&tree);
    // Change 64 KiB in the middle of the block file and publish again.
    let blk = w.dir.path().join("source/blocks/blk00000.dat");
    let mut bytes = std::fs::read(&blk).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid..mid + (64 << 10)].copy_from_slice(&noise(64 << 10, 42));
    std::fs::write(&blk, bytes).unwrap();
    publish_tree(&w.dir.path().join("source"), &tree, &w.key, 2, 86_400);
    let new: Vec<minebox_snapshot::ChunkHash> = chunks_of(&tree).difference(&before).cloned().collect();
    let new_bytes: u64 =
        new.iter().map(|h| std::fs::metadata(tree.join(minebox_snapshot::layout::chunk_path(h))).unwrap().len()).sum();
    let second = w.install().await.unwrap();
    same_tree(&w.dir.path().join("source"), &w.dest());
    println!(
        "differential: first install downloaded {} bytes for {} bytes of data; after changing 64 KiB, {} new chunk(s) of {} compressed bytes, and the update downloaded {} bytes (reused {} bytes from disk)",
        first.bytes_downloaded, first.bytes_total, new.len(), new_bytes, second.bytes_downloaded, second.bytes_reused
    );
    assert!(new.len() <= 2, "a small change touches one or two chunks: {}", new.len());
    // The new chunks plus the manifest, signature and index, nothing more.
    let docs: u64 = ["manifest.json", "manifest.json.minisig", "index.json"]
        .iter()
        .map(|f| std::fs::metadata(tree.join(f)).unwrap().len())
        .sum();
    assert!(second.bytes_downloaded <= new_bytes + docs, "{} > {} + {}", second.bytes_downloaded, new_bytes, docs);
    // Every other byte came from the files already on disk.
    let index: minebox_snapshot::Index =
        serde_json::from_slice(&std::fs::read(tree.join("index.json")).unwrap()).unwrap();
    let new_plain: u64 = index.chunks().filter(|c| new.contains(&c.hash)).map(|c| c.size as u64).sum();
    assert_eq!(second.bytes_reused + new_plain, second.bytes_total);
}

#[tokio::test]
async fn an_interrupted_install_resumes_and_the_old_data_stays_until_the_swap() {
    let w = World::new(12).await;
    // Every chunk but the first arrives; the first stalls and the install is cut off, as
    // a power cut would.
    let chunk = first_chunk(&w.dir.path().join("tree"));
    w.fault(&format!("{chunk}.zst"), FaultKind::Stall, 100);
    let mut o = w.options();
    o.request_timeout = Duration::from_secs(30);
    let cut = tokio::time::timeout(Duration::from_secs(3), install::install(o, SharedProgress::default())).await;
    assert!(cut.is_err(), "install should still be running when cut off");
    assert!(!w.dest().exists(), "nothing installed yet");
    w.proxy.faults.lock().unwrap().clear();
    let before = *w.proxy.bytes_sent.lock().unwrap();
    let report = w.install().await.unwrap();
    same_tree(&w.dir.path().join("source"), &w.dest());
    let resumed = *w.proxy.bytes_sent.lock().unwrap() - before;
    assert!(resumed < report.bytes_total / 2, "resumed run fetched {resumed} of {} bytes", report.bytes_total);
}

#[tokio::test]
async fn over_https_with_a_pinned_certificate() {
    let dir = tempfile::tempdir().unwrap();
    // A test CA and a server certificate it signed (rustls, rightly, refuses a
    // self-signed CA certificate used directly as the server's).
    let p = |f: &str| dir.path().join(f).display().to_string();
    std::fs::write(p("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n").unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    for args in [
        [
            &["req", "-x509"][..],
            &ec[..],
            &["-keyout", &p("ca.key"), "-out", &p("ca.pem"), "-subj", "/CN=minebox-test-ca", "-days", "1"][..],
        ]
        .concat(),
        [&["req"][..], &ec[..], &["-keyout", &p("key.pem"), "-out", &p("leaf.csr"), "-subj", "/CN=localhost"][..]]
            .concat(),
        vec![
            "x509",
            "-req",
            "-in",
            &p("leaf.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-CAcreateserial",
            "-out",
            &p("cert.pem"),
            "-days",
            "1",
            "-extfile",
            &p("ext.cnf"),
        ],
    ] {
        let ok = std::process::Command::new("openssl")
            .args(&args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    }
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    make_datadir(&dir.path().join("source"), 2, 5);
    let sk = SecretKey::generate();
    publish_tree(&dir.path().join("source"), &dir.path().join("tree"), &sk, 1, 86_400);
    let nginx = Nginx::serve(&dir.path().join("tree"), Some((&cert, &key)));
    let url = format!("https://localhost:{}", nginx.port);
    let mut o = Options::new(&url, vec![sk.public()], &dir.path().join("node"));
    // Without the certificate pinned, TLS refuses the server.
    assert!(install::install(o.clone(), SharedProgress::default()).await.is_err());
    o.ca_cert = Some(dir.path().join("ca.pem"));
    install::install(o, SharedProgress::default()).await.unwrap();
    same_tree(&dir.path().join("source"), &dir.path().join("node"));
}

#[tokio::test]
async fn a_disk_too_small_is_refused_before_anything_is_written() {
    let w = World::new(24).await;
    // The node's disk: a real 16 MiB filesystem (needs root, as CI has).
    let disk = w.dir.path().join("disk");
    std::fs::create_dir_all(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=16m", "tmpfs"])
        .arg(&disk)
        .status()
        .unwrap()
        .success();
    assert!(mounted, "this test mounts a small tmpfs; it needs root");
    let mut o = w.options();
    o.dest = disk.join("node");
    let e = install::install(o, SharedProgress::default()).await.unwrap_err();
    let listing: Vec<_> = std::fs::read_dir(&disk).unwrap().flatten().map(|e| e.file_name()).collect();
    let _ = std::process::Command::new("umount").arg("-l").arg(&disk).status();
    assert!(matches!(e, AgentError::DiskFull { .. }), "{e}");
    assert!(e.to_string().contains("not enough disk space"));
    assert!(listing.iter().all(|n| n.to_string_lossy().starts_with(".node.snapshot")), "{listing:?}");
}

#[tokio::test]
async fn the_cli_reports_progress_on_its_api_and_keeps_to_the_bandwidth_limit() {
    let w = World::new(4).await;
    std::fs::write(w.dir.path().join("key.pub"), w.key.public().to_file()).unwrap();
    let api = format!("127.0.0.1:{}", free_port());
    let started = std::time::Instant::now();
    let mut child = tokio::process::Command::new(minebox_test_support::workspace_bin("minebox-snapshot-agent"))
        .args(["install", "--url", &w.url, "--dest"])
        .arg(w.dest())
        .arg("--pubkey")
        .arg(w.dir.path().join("key.pub"))
        .args(["--limit-bytes-per-sec", "1500000", "--api", &api])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = Vec::new();
    while child.try_wait().unwrap().is_none() {
        if let Ok(r) = reqwest::get(format!("http://{api}/api/v1/snapshot/progress")).await {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                seen.push(v);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let elapsed = started.elapsed();
    assert!(child.wait().await.unwrap().success());
    same_tree(&w.dir.path().join("source"), &w.dest());
    let downloading: Vec<_> = seen.iter().filter(|v| v["phase"] == "downloading").collect();
    assert!(downloading.len() >= 2, "progress seen while downloading: {seen:?}");
    let first = downloading.first().unwrap()["bytes_received"].as_u64().unwrap();
    let last = downloading.last().unwrap()["bytes_received"].as_u64().unwrap();
    assert!(last > first, "bytes received grow while downloading: {first} -> {last}");
    assert!(downloading.iter().any(|v| v["eta_secs"].is_number()), "an ETA is given");
    // 4 MiB at 1.5 MB/s cannot take less than about two seconds.
    assert!(elapsed >= Duration::from_secs(2), "the limit was not applied: {elapsed:?}");
}

/// The installed directory is the node's: the node runs as minebox-node, the agent as
/// minebox-snapshot (group minebox-node), both with UMask=0077. Every directory must be
/// usable by the group and every file readable and writable by it; nothing by others.
#[tokio::test]
async fn the_installed_tree_is_usable_by_the_nodes_group_and_closed_to_others() {
    use std::os::unix::fs::PermissionsExt;
    let w = World::new(4).await;
    let old_umask = minebox_platform::process::set_umask(0o077);
    let installed = w.install().await;
    minebox_platform::process::set_umask(old_umask);
    installed.unwrap();
    let mut stack = vec![w.dest()];
    let mut files = 0;
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o770, "{}: the node (group) must enter and write it", dir.display());
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files += 1;
                let mode = e.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode & 0o060, 0o060, "{}: mode {mode:o}, the node cannot use it", e.path().display());
                assert_eq!(mode & 0o007, 0, "{}: mode {mode:o}, readable by others", e.path().display());
            }
        }
    }
    assert!(files > 0);
}
