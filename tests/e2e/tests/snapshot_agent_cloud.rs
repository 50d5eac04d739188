//! The snapshot agent getting its snapshot through MineBox Cloud (issue 16, point 5): a tree
//! published and uploaded to moto's S3 server, registered with a real minebox-cloud (PostgreSQL
//! from the pg testkit), a box linked through the cloud's pairing flow, and the agent's own
//! choice of source, grant, chunk URLs and install. Between the box and the store sits the
//! fault-injecting proxy (support::proxy), the one test double here: it plays a store whose
//! presigned URL expired (403), a body cut short, and an object tampered with in the bucket.
//! The "manually given URL" is nginx serving the same tree.

mod support;

#[path = "../../../crates/daemons/cloud/tests/support/mod.rs"]
mod cloud;

use cloud::Rig;
use minebox_cloud::snapshots::{Bucket, SnapshotConfig};
use minebox_cloud_link::{BoxInfo, CloudLink, DeviceKey};
use minebox_publisher::publish::{publish, Request};
use minebox_snapshot::minisign::SecretKey;
use minebox_snapshot_agent::install::{self, Options};
use minebox_snapshot_agent::progress::{Phase, SharedProgress};
use minebox_snapshot_agent::service::{router, Agent, CloudAccess, CoinSource, SnapshotSource};
use minebox_snapshot_agent::source::Source;
use minebox_snapshot_agent::AgentError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const BUCKET: &str = "minebox-agent-snapshots";

/// Every file of the published `tree` into the bucket under `prefix` (moto takes plain PUTs).
async fn upload(http: &reqwest::Client, endpoint: &str, tree: &Path, prefix: &str) {
    let mut stack = vec![tree.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            let rel = e.path().strip_prefix(tree).unwrap().display().to_string();
            let r = http.put(format!("{endpoint}/{BUCKET}/{prefix}/{rel}")).body(std::fs::read(e.path()).unwrap());
            assert!(r.send().await.unwrap().status().is_success(), "{rel}");
        }
    }
}

#[tokio::test]
async fn the_agent_installs_through_the_cloud_resumes_refuses_tampering_and_shows_the_quota_in_words() {
    // The agent's and the cloud's logs, for a failure's story (--no-capture).
    minebox_platform::lifecycle::init_logging();
    let http = reqwest::Client::new();
    let (_moto, endpoint) = moto(&http, BUCKET).await;
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("source");
    make_datadir(&source, 6, 3);
    let key = SecretKey::generate();
    let tree = dir.path().join("tree");
    let published = Request {
        source: source.clone(),
        kind: minebox_snapshot::Kind::Datadir,
        coin: "bch".into(),
        network: "main".into(),
        height: 100,
        block_hash: "00".repeat(32),
        version: 1,
        expires_in_secs: 86_400,
        out: tree.clone(),
        level: 3,
    };
    publish(&published, &key).unwrap();
    upload(&http, &endpoint, &tree, "bch/main").await;
    let index: minebox_snapshot::Index =
        serde_json::from_slice(&std::fs::read(tree.join(minebox_snapshot::layout::INDEX)).unwrap()).unwrap();
    let chunks: Vec<String> = index.chunks().map(|c| minebox_snapshot::layout::chunk_path(&c.hash)).collect();
    assert!(chunks.len() >= 4, "enough chunks for the faults below: {}", chunks.len());

    // The cloud presigns URLs for the proxy's address: what the box fetches goes through it.
    let (store, proxy) = proxy(endpoint.clone()).await;
    let bucket = Bucket {
        name: BUCKET.into(),
        region: "us-east-1".into(),
        endpoint: Some(store),
        access_key_id: "test".into(),
        secret_access_key: "test".into(),
    };
    let rig = Rig::start_on(cloud::cluster(), |c| {
        c.snapshots = SnapshotConfig { keys: vec![key.public()], buckets: vec![bucket] }
    })
    .await;
    let mut owner = minebox_cloud::db::client(&cloud::owner_pool(&rig.pg)).await.unwrap();
    let said = minebox_cloud::snapshots::publisher_token(&mut owner, "ci").await.unwrap();
    let token = said.lines().next().unwrap().to_string();
    let r = http
        .post(format!("{}/api/v1/publisher/snapshots", rig.base))
        .bearer_auth(&token)
        .json(&serde_json::json!({"bucket": BUCKET, "prefix": "bch/main"}))
        .send()
        .await
        .unwrap();
    let (status, body) = cloud::answer(r).await;
    assert_eq!(status, 201, "{body}");
    // The cloud read the documents to catalogue them: from here on, what the box fetches.
    proxy.requests.lock().unwrap().clear();

    // A manually given snapshot URL: the same tree on a web server (the bucket is private).
    let nginx = Nginx::serve(&tree, None);
    let key_path = dir.path().join("cloud/device.key");
    let coin = CoinSource {
        coin: "bch".into(),
        network: "main".into(),
        url: format!("http://127.0.0.1:{}", nginx.port),
        dest: dir.path().join("nodes/bch"),
        managed: true,
        node: None,
    };
    // No supervisor: nothing here gets as far as stopping a node.
    let agent = |source: SnapshotSource| {
        Agent::new(vec![coin.clone()], vec![key.public()], "127.0.0.1:1", true)
            .with_cloud(source, Some(CloudAccess { url: rig.base.clone(), key: key_path.clone() }))
    };
    let is_url = |s: &Source| matches!(s, Source::Url(u) if *u == coin.url);

    // Never linked (no device key): the URL, as before the cloud; "cloud" forced says to link.
    assert!(is_url(&agent(SnapshotSource::Auto).source_for(&coin).await.unwrap()));
    let e = agent(SnapshotSource::Cloud).source_for(&coin).await.unwrap_err();
    assert!(matches!(e, AgentError::NotLinked) && e.to_string().contains("link it on the status page"), "{e}");
    // A key (made at first boot), pairing started but not finished: auto asks nothing of the
    // cloud and takes the URL; and if the link note is stale, the cloud says 403 and auto takes
    // the URL all the same.
    let link = CloudLink::new(&rig.base, DeviceKey::load_or_create(&key_path).unwrap());
    let code = link.start_pairing(&BoxInfo::default()).await.unwrap().code;
    assert!(is_url(&agent(SnapshotSource::Auto).source_for(&coin).await.unwrap()));
    minebox_cloud_link::note_linked(&key_path, true).unwrap();
    assert!(is_url(&agent(SnapshotSource::Auto).source_for(&coin).await.unwrap()));
    let e = agent(SnapshotSource::Cloud).source_for(&coin).await.unwrap_err();
    assert!(e.to_string().contains("MineBox Cloud refused (403)"), "{e}");
    // The URL source installs with no cloud involved.
    let by_url = dir.path().join("nodes/by-url");
    let s = agent(SnapshotSource::Auto).source_for(&coin).await.unwrap();
    install::install(Options::from_source(s, vec![key.public()], &by_url), SharedProgress::default()).await.unwrap();
    same_tree(&source, &by_url);
    assert!(proxy.requests.lock().unwrap().is_empty(), "nothing went through the cloud's URLs");

    // The owner enters the code in their account: the box is linked.
    let cloud::Auth::Cookie(session) = rig.session_user("owner@example.org").await else { unreachable!() };
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
    // The status page notes it when the cloud says "linked" (tests/e2e/tests/status_cloud.rs).
    assert!(minebox_cloud_link::noted_linked(&key_path));
    let options = |s: Source| {
        let mut o = Options::from_source(s, vec![key.public()], &coin.dest);
        o.retries = 1;
        o.request_timeout = Duration::from_secs(5);
        o
    };
    let granted = || async {
        match agent(SnapshotSource::Auto).source_for(&coin).await.unwrap() {
            Source::Cloud(d) => d,
            other => panic!("not through the cloud: {other:?}"),
        }
    };

    // The cloud only points at objects: a manifest or a chunk tampered in the store is refused.
    let first = granted().await;
    let grant = first.current().await;
    assert!(!grant.resumed);
    let mut forged = std::fs::read(tree.join(minebox_snapshot::layout::MANIFEST)).unwrap();
    let at = forged.len() / 2;
    forged[at] ^= 1;
    proxy.faults.lock().unwrap().push(Fault {
        path_contains: minebox_snapshot::layout::MANIFEST.into(),
        kind: FaultKind::Replace(forged),
        times: 2,
    });
    let e = install::install(options(Source::Cloud(first.clone())), SharedProgress::default()).await.unwrap_err();
    assert!(matches!(e, AgentError::Signature(_)), "{e}");
    let fault = |path: &str, kind: FaultKind, times: u32| {
        proxy.faults.lock().unwrap().push(Fault { path_contains: path.into(), kind, times })
    };
    fault(&chunks[0], FaultKind::Replace(b"not the chunk".to_vec()), 10);
    let e = install::install(options(Source::Cloud(first)), SharedProgress::default()).await.unwrap_err();
    assert!(matches!(e, AgentError::Tampered { .. }), "{e}");
    assert!(!coin.dest.exists(), "nothing tampered is installed");
    proxy.faults.lock().unwrap().clear();

    // Asked again while unfinished: the same download resumes, and what the first attempt
    // staged and verified is kept. On the way, the store refuses an expired URL for a
    // document and for the chunk still lacking (fresh ones are asked for), and that chunk's
    // body is cut short (Range resume).
    let metered = || {
        rig.pg.psql(
            cloud::DB,
            &format!(
                "SELECT chunks_downloaded, resumed_count, completed_at IS NOT NULL FROM snapshot_downloads \
                 WHERE id = '{}'",
                grant.download
            ),
        )
    };
    let second = granted().await;
    let again = second.current().await;
    assert!(again.resumed && again.download == grant.download, "{again:?}");
    fault(minebox_snapshot::layout::INDEX, FaultKind::Expired, 1);
    fault(&chunks[0], FaultKind::Expired, 1);
    fault(&chunks[0], FaultKind::Truncate, 1);
    let before = proxy.requests.lock().unwrap().len();
    let progress = SharedProgress::default();
    let report = install::install(options(Source::Cloud(second.clone())), progress.clone()).await.unwrap();
    same_tree(&source, &coin.dest);
    assert_eq!((report.version, progress.get().phase), (1, Phase::Done));
    let seen = proxy.requests.lock().unwrap()[before..].to_vec();
    let times = |what: &str| seen.iter().filter(|p| p.ends_with(what)).count();
    assert_eq!(times(&chunks[0]), 3, "refused as expired, cut short, resumed: {seen:?}");
    assert_eq!(times(minebox_snapshot::layout::INDEX), 2, "refused as expired, then fetched: {seen:?}");
    assert!(proxy.faults.lock().unwrap().iter().all(|f| f.times == 0), "every fault was met");
    assert_eq!(second.fetched().0, report.chunks_downloaded, "what the cloud is told was fetched");
    // Every chunk metered once over both attempts (its URL was asked for up to three times);
    // taken up again twice (the second grant, and the renewal of the expired documents' URLs);
    // complete.
    let total = index.chunks().map(|c| c.hash).collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(metered().trim(), format!("{total}|2|t"));

    // The free plan's one download a month is used: the next install is refused in the cloud's
    // words, shown by the agent's API as the install's error, and not taken from the URL instead.
    let e = agent(SnapshotSource::Auto).source_for(&coin).await.unwrap_err();
    let AgentError::OverQuota { message } = &e else { panic!("not over quota: {e}") };
    assert!(message.contains("download limit reached") && message.contains("bigger plan"), "{message}");
    assert_eq!(e.to_string(), *message);
    // The agent's API for this node, and for a fresh node of the same coin.
    let serve = |node: CoinSource| {
        let cloud = CloudAccess { url: rig.base.clone(), key: key_path.clone() };
        let service = Agent::new(vec![node], vec![key.public()], "127.0.0.1:1", true)
            .with_cloud(SnapshotSource::Auto, Some(cloud));
        async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let api = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, router(Arc::new(service))).await });
            api
        }
    };
    let list = |api: String| {
        let http = http.clone();
        async move {
            let r = http.get(format!("{api}/api/v1/snapshots")).send().await.unwrap();
            r.json::<serde_json::Value>().await.unwrap()["coins"][0].clone()
        }
    };
    let install_and_wait = |api: String| {
        let http = http.clone();
        async move {
            let r = http.post(format!("{api}/api/v1/snapshots/bch/install")).send().await.unwrap();
            assert_eq!(r.status(), 202);
            let mut progress = serde_json::Value::Null;
            for _ in 0..600 {
                progress = list(api.clone()).await["progress"].clone();
                if progress["phase"] == "failed" || progress["phase"] == "done" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            progress
        }
    };
    let installed = serve(coin.clone()).await;
    let listed = list(installed.clone()).await;
    assert_eq!(listed["available"]["version"], 1, "the catalogue's offer: {listed}");
    assert_eq!(listed["available"]["height"], 100, "{listed}");
    // The version the node has: done without a grant (a grant would be refused now).
    let done = install_and_wait(installed).await;
    assert_eq!(done["phase"], "done", "{done}");
    assert!(done["error"].is_null(), "{done}");
    let fresh = serve(CoinSource { dest: dir.path().join("nodes/fresh"), ..coin.clone() }).await;
    let refused = install_and_wait(fresh).await;
    assert_eq!(refused["phase"], "failed", "{refused}");
    assert_eq!(refused["error"], *message, "{refused}");
    assert!(!dir.path().join("nodes/fresh").exists());
}
