//! Snapshots through MineBox Cloud (issue 16, point 5), every part real: the publisher binary
//! publishes and uploads to moto's S3 server and registers the tree with a real minebox-cloud
//! (PostgreSQL from the pg testkit); linked boxes (the box's own client, `minebox-cloud-link`)
//! get grants and fetch the manifest and chunks through the presigned URLs with plain HTTP;
//! the metering rows, the plan's limits and the refusals are checked on the way.

#[path = "../../../crates/daemons/cloud/tests/support/mod.rs"]
mod cloud;
mod support;

use cloud::{Auth, Box_, Rig};
use minebox_cloud::snapshots::{Bucket, SnapshotConfig};
use minebox_cloud_link::snapshots::{ChunkRequest, Completion, GrantRequest, OfferRequest};
use minebox_cloud_link::{BoxInfo, LinkError};
use minebox_test_support::noise;
use std::process::Command;
use support::moto;

const BUCKET: &str = "minebox-snapshots";

/// Runs the publisher binary with the bucket's credentials; (success, its output).
fn publisher(endpoint: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(minebox_test_support::workspace_bin("minebox-publisher"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT", endpoint)
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A box paired to the account signed in with `session` (the cookie the account page uses).
async fn linked_box(rig: &Rig, session: &str) -> Box_ {
    let device = rig.device();
    let code = device.link.start_pairing(&BoxInfo::default()).await.unwrap().code;
    let r = rig
        .http
        .post(format!("{}/api/v1/devices/pair", rig.base))
        .header("cookie", format!("minebox_session={session}"))
        .header("MineBox-CSRF", "1")
        .json(&serde_json::json!({"code": code}))
        .send()
        .await
        .unwrap();
    let (status, body) = cloud::answer(r).await;
    assert_eq!(status, 200, "{body}");
    device
}

fn refused(e: LinkError) -> (u16, String) {
    match e {
        LinkError::Refused { status, message } => (status, message),
        LinkError::OverQuota { message } => (402, message),
        other => panic!("not a refusal: {other}"),
    }
}

// Multi-threaded: the publisher binary runs blocking while the service in this runtime answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_registers_and_a_linked_box_downloads_through_presigned_urls_metered() {
    let http = reqwest::Client::new();
    let (_moto, endpoint) = moto(&http, BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    std::fs::create_dir_all(d("node/blocks")).unwrap();
    std::fs::write(d("node/blocks/blk00000.dat"), noise(3 << 20, 7)).unwrap();
    let run = |args: &[&str]| {
        let (ok, text) = publisher(&endpoint, args);
        assert!(ok, "{args:?}: {text}");
        text
    };
    run(&["keygen", "--secret", &d("key.sec"), "--public", &d("key.pub")]);
    run(&["keygen", "--secret", &d("other.sec"), "--public", &d("other.pub")]);
    let publish = |version: &str, height: &str, key: &str, out: &str| {
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
            height,
            "--block-hash",
            "00",
            "--version",
            version,
            "--key",
            &d(key),
            "--out",
            &d(out),
        ])
    };
    publish("1", "100", "key.sec", "tree");
    run(&["upload", "--dir", &d("tree"), "--to", &format!("s3://{BUCKET}/bch/main")]);

    let key =
        minebox_snapshot::minisign::PublicKey::from_file(&std::fs::read_to_string(d("key.pub")).unwrap()).unwrap();
    let bucket = Bucket {
        name: BUCKET.into(),
        region: "us-east-1".into(),
        endpoint: Some(endpoint.clone()),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
    };
    let rig =
        Rig::start_on(cloud::cluster(), |c| c.snapshots = SnapshotConfig { keys: vec![key], buckets: vec![bucket] })
            .await;
    let mut owner = minebox_cloud::db::client(&cloud::owner_pool(&rig.pg)).await.unwrap();
    let said = minebox_cloud::snapshots::publisher_token(&mut owner, "ci").await.unwrap();
    let token_file = d("token");
    std::fs::write(&token_file, &said).unwrap();
    let register = |prefix: &str, extra: &[&str]| {
        let mut args = vec!["register", "--cloud", &rig.base, "--token-file", &token_file];
        args.extend_from_slice(&["--bucket", BUCKET, "--prefix", prefix]);
        args.extend_from_slice(extra);
        publisher(&endpoint, &args)
    };
    let (ok, text) = register("bch/main", &[]);
    assert!(ok && text.contains("version 1") && text.contains("is catalogued"), "{text}");
    let (ok, text) = register("bch/main", &[]);
    assert!(ok && text.contains("was catalogued already"), "registering twice changes nothing: {text}");

    // Registrations the cloud refuses.
    let manifest = std::fs::read(d("tree/manifest.json")).unwrap();
    let signature = std::fs::read_to_string(d("tree/manifest.json.minisig")).unwrap();
    let put = |path: String, body: Vec<u8>| {
        let http = http.clone();
        let url = format!("{endpoint}/{BUCKET}/{path}");
        async move { assert!(http.put(url).body(body).send().await.unwrap().status().is_success()) }
    };
    for doc in ["manifest.json", "index.json"] {
        put(format!("bch/tampered/{doc}"), std::fs::read(d(&format!("tree/{doc}"))).unwrap()).await;
    }
    let mut lines: Vec<String> = signature.lines().map(str::to_string).collect();
    let sig = &mut lines[1];
    let flipped = if &sig[20..21] == "A" { "B" } else { "A" };
    sig.replace_range(20..21, flipped);
    put("bch/tampered/manifest.json.minisig".into(), (lines.join("\n") + "\n").into_bytes()).await;
    let (ok, text) = register("bch/tampered", &[]);
    assert!(!ok && text.contains("422") && text.contains("does not verify"), "tampered signature: {text}");
    // Signed by a key the cloud was not given.
    publish("1", "100", "other.sec", "other");
    run(&["upload", "--dir", &d("other"), "--to", &format!("s3://{BUCKET}/bch/other")]);
    let (ok, text) = register("bch/other", &[]);
    assert!(!ok && text.contains("does not verify"), "foreign key: {text}");
    let (ok, text) = register("bch/main'; DROP TABLE snapshots; --", &[]);
    assert!(!ok && text.contains("is not a tree's prefix"), "{text}");
    let (ok, text) = register("bch/nothing-here", &[]);
    assert!(!ok && text.contains("upload the published tree first"), "{text}");
    let reg = |token: Option<&str>, body: serde_json::Value| {
        let mut req = http.post(format!("{}/api/v1/publisher/snapshots", rig.base)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { cloud::answer(req.send().await.unwrap()).await }
    };
    let token = said.lines().next().unwrap().to_string();
    let (status, body) = reg(None, serde_json::json!({"bucket": BUCKET, "prefix": "bch/main"})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = reg(Some("mbp_00"), serde_json::json!({"bucket": BUCKET, "prefix": "bch/main"})).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = reg(Some(&token), serde_json::json!({"bucket": "someone-elses", "prefix": "bch/main"})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("does not serve snapshots from a bucket"), "{body}");
    let big = "x".repeat(20_000);
    let (status, _) = reg(Some(&token), serde_json::json!({"bucket": BUCKET, "prefix": big})).await;
    assert_eq!(status, 413);
    assert_eq!(rig.pg.psql(cloud::DB, "SELECT count(*) FROM snapshots").trim(), "1");

    // A linked box gets the current snapshot and fetches through the presigned URLs.
    let auth_a = rig.session_user("a@example.org").await;
    let Auth::Cookie(session_a) = &auth_a else { unreachable!() };
    let box_a = linked_box(&rig, session_a).await;
    let bch = || OfferRequest { coin: "bch".into(), network: "main".into() };
    let offered = box_a.link.snapshot_offer(&bch()).await.unwrap();
    assert_eq!(offered.entries.len(), 1);
    assert_eq!((offered.entries[0].version, offered.entries[0].status.as_str()), (1, "current"));
    assert_eq!(
        (offered.usage.plan.as_str(), offered.usage.downloads, offered.usage.downloads_limit),
        ("free", 0, Some(1))
    );
    let ask = GrantRequest { coin: "bch".into(), network: "main".into(), kind: None };
    let grant = box_a.link.snapshot_grant(&ask).await.unwrap();
    assert!(!grant.resumed);
    assert_eq!(grant.expires_in, 900);
    assert!(grant.manifest_url.contains("X-Amz-Signature="), "{}", grant.manifest_url);
    let fetch = |url: String| {
        let http = http.clone();
        async move {
            let r = http.get(url).send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.bytes().await.unwrap().to_vec()
        }
    };
    assert_eq!(fetch(grant.manifest_url.clone()).await, manifest);
    assert_eq!(String::from_utf8(fetch(grant.signature_url.clone()).await).unwrap(), signature);
    let index: minebox_snapshot::Index = serde_json::from_slice(&fetch(grant.index_url.clone()).await).unwrap();
    let first = index.chunks().next().unwrap().hash;
    let chunk_file = d(&format!("tree/{}", minebox_snapshot::layout::chunk_path(&first)));
    let served = std::fs::read(&chunk_file).unwrap();
    let one = ChunkRequest { chunks: vec![first.to_hex()] };
    let urls = box_a.link.chunk_urls(&grant.download, &one).await.unwrap();
    assert_eq!(urls.urls.len(), 1);
    assert_eq!(fetch(urls.urls[0].url.clone()).await, served);
    assert_eq!(urls.usage.bytes, served.len() as u64);
    // Asked again (a retry, a resume): metered once.
    let again = box_a.link.chunk_urls(&grant.download, &one).await.unwrap();
    assert_eq!(again.usage.bytes, served.len() as u64);
    let metered = |id: &str| {
        rig.pg.psql(
            cloud::DB,
            &format!(
                "SELECT chunks_downloaded, bytes_downloaded, resumed_count, completed_at IS NOT NULL
                   FROM snapshot_downloads WHERE id = '{id}'"
            ),
        )
    };
    assert_eq!(metered(&grant.download).trim(), format!("1|{}|0|f", served.len()));
    // Asking again while unfinished resumes the same download.
    let resumed = box_a.link.snapshot_grant(&ask).await.unwrap();
    assert!(resumed.resumed);
    assert_eq!(resumed.download, grant.download);
    assert_eq!(resumed.usage.downloads, 1);
    assert_eq!(metered(&grant.download).trim(), format!("1|{}|1|f", served.len()));

    // What a box may not ask for.
    let (status, message) = refused(
        box_a.link.chunk_urls(&grant.download, &ChunkRequest { chunks: vec!["0".repeat(64)] }).await.unwrap_err(),
    );
    assert_eq!(status, 422);
    assert!(message.contains("is not in this download's snapshot"), "{message}");
    let sqlish = ChunkRequest { chunks: vec!["' OR 1=1; DROP TABLE snapshot_downloads; --".into()] };
    let (status, message) = refused(box_a.link.chunk_urls(&grant.download, &sqlish).await.unwrap_err());
    assert!(status == 422 && message.contains("is not a chunk name"), "{status} {message}");
    let many = ChunkRequest { chunks: vec![first.to_hex(); minebox_cloud_link::snapshots::MAX_CHUNKS_PER_REQUEST + 1] };
    assert_eq!(refused(box_a.link.chunk_urls(&grant.download, &many).await.unwrap_err()).0, 422);
    // Past this endpoint's own body limit: 413, naming that limit (not the other endpoints').
    let huge = ChunkRequest { chunks: vec!["a".repeat(64); 1100] };
    let (status, message) = refused(box_a.link.chunk_urls(&grant.download, &huge).await.unwrap_err());
    assert_eq!((status, message.contains("larger than 65536 bytes")), (413, true), "{message}");
    let (status, _) = refused(box_a.link.chunk_urls("not-a-download", &one).await.unwrap_err());
    assert_eq!(status, 404);
    let (status, _) = refused(
        box_a
            .link
            .snapshot_grant(&GrantRequest { coin: "btc'--".into(), network: "main".into(), kind: None })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    let (status, _) = refused(
        box_a
            .link
            .snapshot_grant(&GrantRequest { coin: "btc".into(), network: "main".into(), kind: None })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404, "no btc snapshot is catalogued");
    let path = "/api/v1/device/snapshots/grant";
    let grant_body = serde_json::to_vec(&ask).unwrap();
    let r = http.post(format!("{}{path}", rig.base)).body(grant_body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 401, "unsigned");
    let headers = box_a.link.key().sign("POST", path, &grant_body);
    let send_signed = |headers: &minebox_cloud_link::SignedHeaders, body: Vec<u8>| {
        let mut req = http.post(format!("{}{path}", rig.base)).header("content-type", "application/json");
        for (k, v) in headers.iter().cloned() {
            req = req.header(k, v);
        }
        async move { req.body(body).send().await.map(|r| r.status().as_u16()).unwrap_or(413) }
    };
    assert_eq!(send_signed(&headers, grant_body.clone()).await, 200);
    assert_eq!(send_signed(&headers, grant_body.clone()).await, 401, "a replay");
    let huge = vec![b' '; 20_000];
    assert_eq!(send_signed(&box_a.link.key().sign("POST", path, &huge), huge).await, 413);
    let stranger = rig.device();
    stranger.link.start_pairing(&BoxInfo::default()).await.unwrap();
    assert_eq!(refused(stranger.link.snapshot_grant(&ask).await.unwrap_err()).0, 403, "not linked");

    // Another user's box cannot use A's download, and row-level security hides it.
    let auth_b = rig.session_user("b@example.org").await;
    let Auth::Cookie(session_b) = &auth_b else { unreachable!() };
    let box_b = linked_box(&rig, session_b).await;
    let (status, message) = refused(box_b.link.chunk_urls(&grant.download, &one).await.unwrap_err());
    assert_eq!(status, 404, "{message}");
    assert!(
        refused(
            box_b
                .link
                .download_complete(&grant.download, &Completion { chunks_fetched: 1, bytes_fetched: 1 })
                .await
                .unwrap_err()
        )
        .0 == 404
    );
    let api = cloud::connect(&rig.pg, cloud::API).await;
    for table in ["snapshot_downloads", "snapshot_download_chunks"] {
        let n: i64 = api.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "the API's role without a user context sees no {table}");
    }
    assert!(
        api.execute(
            "INSERT INTO snapshots (coin_id, kind, version, block_height, block_hash, size_bytes,
                                   compressed_size_bytes, chunk_count, merkle_root, manifest_sha256, index_sha256,
                                   key_id, expires_at)
                         VALUES (1, 'utxo', 9, 9, '', 0, 0, 0, '', '', '', '', now())",
            &[]
        )
        .await
        .is_err(),
        "only the owner writes the catalogue"
    );

    // The plan's limits: the free plan's one download a month is used once A's completes.
    let done = box_a
        .link
        .download_complete(&grant.download, &Completion { chunks_fetched: 1, bytes_fetched: served.len() as u64 })
        .await
        .unwrap();
    assert!(done.recorded);
    // Resumed twice: the typed client's second grant and the raw signed one above.
    assert_eq!(metered(&grant.download).trim(), format!("1|{}|2|t", served.len()));
    let message = match box_a.link.snapshot_grant(&ask).await.unwrap_err() {
        LinkError::OverQuota { message } => message,
        other => panic!("not over quota: {other}"),
    };
    for words in [
        "download limit reached",
        "free plan allows 1 snapshot download a month",
        "1 was used",
        "resets on",
        "bigger plan",
    ] {
        assert!(message.contains(words), "{message}");
    }
    // Bytes: B's plan lets it start, but not fetch more than the month's bytes.
    rig.pg.psql(cloud::DB, "UPDATE subscription_plans SET snapshot_bytes_per_month = 10 WHERE name = 'free'");
    let grant_b = box_b.link.snapshot_grant(&ask).await.unwrap();
    let message = match box_b.link.chunk_urls(&grant_b.download, &one).await.unwrap_err() {
        LinkError::OverQuota { message } => message,
        other => panic!("not over quota: {other}"),
    };
    assert!(message.contains("data limit reached") && message.contains("bigger plan"), "{message}");
    assert_eq!(metered(&grant_b.download).trim(), "0|0|0|f", "a refused batch is not metered");

    // A second version, registered as current: the first is deprecated, boxes are offered v2.
    std::fs::write(d("node/blocks/blk00001.dat"), noise(1 << 20, 8)).unwrap();
    publish("2", "200", "key.sec", "tree");
    run(&["upload", "--dir", &d("tree"), "--to", &format!("s3://{BUCKET}/bch/main")]);
    let (ok, text) = register("bch/main", &[]);
    assert!(ok && text.contains("version 2") && text.contains("current"), "{text}");
    let offered = box_b.link.snapshot_offer(&bch()).await.unwrap();
    assert_eq!(offered.entries.iter().map(|e| e.version).collect::<Vec<_>>(), [2]);
    assert_eq!(
        rig.pg.psql(cloud::DB, "SELECT version, status, is_current FROM snapshots ORDER BY version").trim(),
        "1|deprecated|f\n2|available|t"
    );
}
