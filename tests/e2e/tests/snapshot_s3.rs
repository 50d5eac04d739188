//! The cloud target against a real S3-compatible server (moto's, from PyPI), and the
//! device installing straight from the bucket.

mod support;

use minebox_test_support::noise;
use std::process::Command;
use support::moto;

#[tokio::test]
async fn publish_upload_to_s3_and_install_from_the_bucket() {
    let http = reqwest::Client::new();
    let (_moto, endpoint) = moto(&http, "minebox-snapshots").await;

    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    std::fs::create_dir_all(d("node/blocks")).unwrap();
    std::fs::write(d("node/blocks/blk00000.dat"), noise(6 << 20, 1)).unwrap();
    std::fs::write(d("node/blocks/xor.dat"), [1u8; 8]).unwrap();
    let bin = minebox_test_support::workspace_bin("minebox-publisher");
    let run = |args: &[&str]| {
        let out = Command::new(&bin)
            .args(args)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT", &endpoint)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{args:?}: {text}");
        text
    };
    run(&["keygen", "--secret", &d("key.sec"), "--public", &d("key.pub")]);
    let publish = |v: &str| {
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
            "1",
            "--block-hash",
            "00",
            "--version",
            v,
            "--key",
            &d("key.sec"),
            "--out",
            &d("tree"),
        ])
    };
    publish("1");
    let first = run(&["upload", "--dir", &d("tree"), "--to", "s3://minebox-snapshots/bch/main"]);
    assert!(first.contains("0 chunks were already"), "{first}");
    assert!(!first.contains("test"), "no credentials in the output: {first}");

    // A second snapshot: only the new chunks go up.
    let mut blk = std::fs::read(d("node/blocks/blk00000.dat")).unwrap();
    blk.extend_from_slice(&noise(1 << 20, 2));
    std::fs::write(d("node/blocks/blk00000.dat"), blk).unwrap();
    publish("2");
    let second = run(&["upload", "--dir", &d("tree"), "--to", "s3://minebox-snapshots/bch/main"]);
    let already: usize =
        second.split(" chunks were already").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(already >= 1, "{second}");

    // The device installs from the bucket's HTTP endpoint like from any web server (the
    // bucket is public-read, as a CDN origin is).
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:GetObject","Resource":"arn:aws:s3:::minebox-snapshots/*"}]}"#;
    let r = http.put(format!("{endpoint}/minebox-snapshots?policy")).body(policy).send().await.unwrap();
    assert!(r.status().is_success(), "bucket policy: {}", r.status());
    let key =
        minebox_snapshot::minisign::PublicKey::from_file(&std::fs::read_to_string(d("key.pub")).unwrap()).unwrap();
    let opts = minebox_snapshot_agent::install::Options::new(
        &format!("{endpoint}/minebox-snapshots/bch/main"),
        vec![key],
        &dir.path().join("device"),
    );
    let report = minebox_snapshot_agent::install::install(opts, Default::default()).await.unwrap();
    assert_eq!(report.version, 2);
    assert_eq!(
        std::fs::read(d("device/blocks/blk00000.dat")).unwrap(),
        std::fs::read(d("node/blocks/blk00000.dat")).unwrap()
    );
}
