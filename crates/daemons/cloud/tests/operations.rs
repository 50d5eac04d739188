//! Operations (issue 16, point 8): health answers, Prometheus metrics, the systemd unit, and
//! replicas making partitions together. A real PostgreSQL and the service serving.

mod support;

use minebox_pg::Postgres;
use support::*;

/// The service with `/metrics` on a second address; returns it with that address's base URL.
async fn rig_with_metrics() -> (Rig, String) {
    let rig = Rig::start_config(|c| c.metrics_listen = Some(([127, 0, 0, 1], 0).into())).await;
    let at = rig.running.metrics_addr.expect("a metrics address");
    (rig, format!("http://{at}"))
}

async fn get(rig: &Rig, url: &str) -> (u16, String) {
    let r = rig.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the sample named `name` whose labels include every one of `labels`
/// (`key="value"`), or `None` if there is no such sample.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        (metric == name && labels.iter().all(|want| rest.contains(want))).then(|| value.parse().unwrap())
    })
}

#[tokio::test]
async fn healthz_answers_and_readyz_says_when_the_database_is_gone() {
    let rig = Rig::start().await;
    assert_eq!(get(&rig, &format!("{}/healthz", rig.base)).await, (200, "ok\n".into()));
    assert_eq!(get(&rig, &format!("{}/readyz", rig.base)).await, (200, "ready\n".into()));

    // A database that stops answering (its sockets stay open): not ready, after the timeout.
    rig.pg.freeze();
    let (status, body) = get(&rig, &format!("{}/readyz", rig.base)).await;
    rig.pg.thaw();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body, "not ready: the database did not answer SELECT 1 within 2 s\n");
    assert_eq!(get(&rig, &format!("{}/readyz", rig.base)).await, (200, "ready\n".into()), "ready again");

    // A database that is gone.
    rig.pg.stop();
    let (status, body) = get(&rig, &format!("{}/readyz", rig.base)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.starts_with("not ready: the database"), "{body}");
    // Liveness asks nothing of the database: an outage must not get every replica restarted.
    assert_eq!(get(&rig, &format!("{}/healthz", rig.base)).await, (200, "ok\n".into()));
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_with_the_pools_and_refusals() {
    let (rig, metrics) = rig_with_metrics().await;
    // The public listener does not show them.
    let (status, _) = get(&rig, &format!("{}/metrics", rig.base)).await;
    assert_eq!(status, 404);

    rig.verified_user("ops@example.org", "correct horse battery").await;
    let (status, _) =
        rig.post("/api/v1/login", serde_json::json!({"email": "ops@example.org", "password": "wrong password!"})).await;
    assert_eq!(status, 401);
    rig.login("ops@example.org", "correct horse battery").await;
    // Two different ids, one route; and paths no route has.
    for id in ["0b6f8f8e-7f43-4f4e-9d55-2c1f7a0f0001", "0b6f8f8e-7f43-4f4e-9d55-2c1f7a0f0002"] {
        let r = rig.http.delete(format!("{}/api/v1/tokens/{id}", rig.base)).send().await.unwrap();
        assert_eq!(r.status(), 401);
    }
    for junk in ["/wp-login.php", "/api/v1/nothing/here"] {
        assert_eq!(get(&rig, &format!("{}{junk}", rig.base)).await.0, 404);
    }
    let r = rig.http.post(format!("{}/api/v1/billing/webhook", rig.base)).body("{}").send().await.unwrap();
    assert_eq!(r.status(), 400, "no signature header");

    let r = rig.http.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    let text = r.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");

    let requests = "minebox_cloud_http_requests_total";
    assert_eq!(
        sample(&text, requests, &[r#"route="/api/v1/tokens/{id}""#, r#"method="DELETE""#, r#"status="4xx""#]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, requests, &[r#"route="/api/v1/login""#, r#"status="2xx""#]), Some(1.0), "{text}");
    assert_eq!(sample(&text, requests, &[r#"route="/api/v1/login""#, r#"status="4xx""#]), Some(1.0), "{text}");
    // The two junk paths and the public listener's /metrics.
    assert_eq!(sample(&text, requests, &[r#"route="unmatched""#, r#"status="4xx""#]), Some(3.0), "{text}");
    assert!(!text.contains("0b6f8f8e") && !text.contains("wp-login"), "raw paths became labels:\n{text}");
    // The latency histogram: every login answered falls under the last bound.
    assert_eq!(
        sample(&text, "minebox_cloud_http_request_duration_seconds_count", &[r#"route="/api/v1/login""#]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "minebox_cloud_http_request_duration_seconds_bucket", &[r#"route="/api/v1/login""#, "+Inf"]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(sample(&text, "minebox_cloud_login_failures_total", &[r#"reason="wrong_password""#]), Some(1.0));
    assert_eq!(sample(&text, "minebox_cloud_billing_webhook_events_total", &[r#"outcome="refused""#]), Some(1.0));
    // The rig's API pool: 4 connections at most, some open, none waiting now.
    assert_eq!(sample(&text, "minebox_cloud_db_pool_max_connections", &[r#"pool="api""#]), Some(4.0), "{text}");
    assert!(sample(&text, "minebox_cloud_db_pool_connections", &[r#"pool="api""#]).unwrap() >= 1.0, "{text}");
    assert_eq!(sample(&text, "minebox_cloud_db_pool_waiting_requests", &[r#"pool="api""#]), Some(0.0), "{text}");
    assert!(sample(&text, "minebox_cloud_db_pool_available_connections", &[r#"pool="owner""#]).is_some());

    // The metrics address answers health too, and nothing else.
    assert_eq!(get(&rig, &format!("{metrics}/readyz")).await, (200, "ready\n".into()));
    assert_eq!(get(&rig, &format!("{metrics}/api/v1/me")).await.0, 404);
}

/// The months ahead of this one, as the partitions' names end (`_yYYYYmMM`).
fn months_ahead(pg: &Postgres) -> Vec<String> {
    let list = pg.psql(
        DB,
        "SELECT string_agg(to_char(date_trunc('month', current_date) + make_interval(months => i), '\"y\"YYYY\"m\"MM'), ',')
           FROM generate_series(1, 3) i",
    );
    list.split(',').map(str::to_string).collect()
}

#[tokio::test]
async fn replicas_making_partitions_at_once_all_succeed_and_make_each_once() {
    let pg = cluster();
    let owner = owner_pool(&pg);
    minebox_cloud::prepare(&owner).await.unwrap();
    // Forget the months ahead (empty), so that every replica's upkeep finds them missing.
    let months = months_ahead(&pg);
    for m in &months {
        pg.psql(DB, &format!("DROP TABLE snapshot_downloads_{m}; DROP TABLE device_metrics_{m};"));
    }
    let mut replicas = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let pool = owner_pool(&pg);
        replicas.spawn(async move { minebox_cloud::upkeep(&pool, &Default::default()).await });
    }
    let mut all: Vec<String> = Vec::new();
    while let Some(made) = replicas.join_next().await {
        all.extend(made.unwrap().expect("every replica's upkeep succeeds"));
    }
    all.sort();
    let mut expected: Vec<String> =
        months.iter().flat_map(|m| [format!("device_metrics_{m}"), format!("snapshot_downloads_{m}")]).collect();
    expected.sort();
    assert_eq!(all, expected, "each partition made once, by one replica");
}

#[tokio::test]
async fn upkeep_forgets_which_chunks_old_downloads_were_given_and_keeps_this_and_last_months() {
    let pg = cluster();
    let owner = owner_pool(&pg);
    minebox_cloud::prepare(&owner).await.unwrap();
    pg.psql(
        DB,
        "INSERT INTO users (email, password_hash) VALUES ('a@example.org', 'x');
         INSERT INTO snapshot_download_chunks (download_id, chunk, user_id, compressed_size_bytes, granted_at)
         SELECT gen_random_uuid(), repeat(m::text, 64), (SELECT id FROM users), 1,
                date_trunc('month', now()) - make_interval(months => m) + interval '1 hour'
           FROM generate_series(0, 3) AS m;",
    );
    minebox_cloud::upkeep(&owner, &Default::default()).await.unwrap();
    let left = pg.psql(DB, "SELECT string_agg(left(chunk, 1), ',' ORDER BY chunk) FROM snapshot_download_chunks");
    assert_eq!(left, "0,1", "this month's and last month's kept, older ones forgotten");
}

/// deploy/minebox-cloud.service, with ExecStart pointing at the binary just built, passes
/// `systemd-analyze verify` without a word, and its hardening rates "OK" (exposure at most 2.0
/// of 10) in `systemd-analyze security`.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/minebox-cloud.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/minebox-cloud serve\n"), "the unit's ExecStart moved");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("minebox-cloud.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/minebox-cloud", env!("CARGO_BIN_EXE_minebox-cloud"))).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new("systemd-analyze").args(args).arg(&path).output().unwrap_or_else(|e| {
            panic!("systemd-analyze could not run ({e}): install systemd (Debian's `systemd` package)")
        })
    };
    let verify = run(&["verify"]);
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    let security = run(&["security", "--offline=yes", "--threshold=20"]);
    assert!(
        security.status.success(),
        "exposure above 2.0:\n{}",
        String::from_utf8_lossy(&security.stdout).lines().last().unwrap_or_default()
    );
}

/// Kills the service the test started when the test ends, passing or not.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The real binary, configured only by the environment, as the systemd unit's EnvironmentFile
/// and the container's --env-file configure it (docs/cloud.md, "Deployment").
#[tokio::test]
async fn the_binary_serves_health_and_metrics_configured_by_environment_alone() {
    let pg = cluster();
    let mail = minebox_mailsink::MailSink::start();
    let (port, metrics_port) = (minebox_pg::free_port(), minebox_pg::free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_minebox-cloud"))
        .arg("serve")
        .env("MINEBOX_CLOUD_DATABASE_URL", pg.url(OWNER, DB))
        .env("MINEBOX_CLOUD_API_DATABASE_URL", pg.url(API, DB))
        .env("MINEBOX_CLOUD_LISTEN", format!("127.0.0.1:{port}"))
        .env("MINEBOX_CLOUD_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("MINEBOX_CLOUD_PUBLIC_URL", "https://cloud.example.org")
        .env("MINEBOX_CLOUD_SMTP_URL", format!("smtp://127.0.0.1:{}", mail.port))
        .env("MINEBOX_CLOUD_MAIL_FROM", "MineBox Cloud <cloud@example.org>")
        .env("MINEBOX_CLOUD_BILLING_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("MINEBOX_CLOUD_BEHIND_PROXY", "true")
        .env("MINEBOX_CLOUD_API_POOL_SIZE", "3")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("minebox-cloud starts");
    let mut service = Service(child);
    let http = reqwest::Client::new();
    // Started when /healthz answers (it migrates first); gone if it exits. A minute is far
    // more than a start takes: past it, something hangs.
    for attempt in 0.. {
        assert!(attempt < 600, "minebox-cloud serve did not answer /healthz within a minute");
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/healthz")).send().await {
            assert_eq!(r.status(), 200);
            break;
        }
        if let Some(status) = service.0.try_wait().unwrap() {
            panic!("minebox-cloud serve exited: {status}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ready = http.get(format!("http://127.0.0.1:{port}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let text = http.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&text, "minebox_cloud_db_pool_max_connections", &[r#"pool="api""#]), Some(3.0), "{text}");
    assert_eq!(
        sample(&text, "minebox_cloud_http_requests_total", &[r#"route="/readyz""#, r#"status="2xx""#]),
        Some(1.0),
        "{text}"
    );
    let public = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await.unwrap();
    assert_eq!(public.status(), 404);
}
