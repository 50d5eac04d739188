//! Backups (issue 16, point 8): the procedure docs/cloud.md gives, run for real. A database
//! with accounts, sessions, a token, a plan, devices and rows in the monthly partitions is dumped
//! with `pg_dump -Fc` as its owner, restored with `pg_restore` into a fresh cluster that has only
//! the roles made first, and then every table, partitions included, has the same rows, and the
//! service started on the restored copy lets the users in as before.

mod support;

use minebox_cloud::plans::{self, Until};
use minebox_pg::Postgres;
use reqwest::Method;
use serde_json::json;
use std::process::Command;
use support::*;

/// Every table's row count and a checksum of its rows, one `schema.table|count|md5` line per
/// table, partitions included (relkind 'r': a partitioned parent holds no rows itself). Read as
/// the superuser, whom row-level security does not filter.
fn every_row(pg: &Postgres) -> String {
    pg.psql(
        DB,
        "SELECT format('%s.%s|%s', n.nspname, c.relname,
                       (xpath('/row/c/text()', query_to_xml(format(
                           'SELECT count(*) || %L || md5(coalesce(string_agg(t::text, chr(10) ORDER BY t::text), %L)) AS c
                              FROM %I.%I t', '|', '', n.nspname, c.relname), false, true, '')))[1]::text)
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            AND n.nspname NOT LIKE 'pg_toast%'
          ORDER BY 1",
    )
}

fn count(rows: &str, table: &str) -> i64 {
    let line = rows
        .lines()
        .find(|l| l.starts_with(&format!("public.{table}|")))
        .unwrap_or_else(|| panic!("no table {table} in:\n{rows}"));
    line.split('|').nth(1).unwrap().parse().unwrap()
}

/// Runs one of PostgreSQL's client programs (pg_dump, pg_restore) from the testkit's directory.
fn client_program(program: &str, args: &[&str]) {
    let path = minebox_pg::bin_dir().join(program);
    let out = Command::new(&path).args(args).output().unwrap_or_else(|e| panic!("{} runs: {e}", path.display()));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_dump_restored_into_a_fresh_cluster_has_every_row_and_lets_the_users_in() {
    let rig = Rig::start().await;
    // Through the API: two verified accounts, a session, an API token, a failed login.
    rig.verified_user("ann@example.org", "ann's long password").await;
    let bob = rig.verified_user("bob@example.org", "bob's long password").await;
    let (session, _) = rig.login("ann@example.org", "ann's long password").await;
    let (status, token) =
        rig.call(Method::POST, "/api/v1/tokens", &Auth::Cookie(session.clone()), Some(json!({"name": "backup"}))).await;
    assert_eq!(status, 201, "{token}");
    let token = token["token"].as_str().unwrap().to_string();
    let (status, _) =
        rig.post("/api/v1/login", json!({"email": "bob@example.org", "password": "not bob's password"})).await;
    assert_eq!(status, 401);
    // As the admin would: Bob on pro.
    let mut owner = minebox_cloud::db::client(&owner_pool(&rig.pg)).await.unwrap();
    plans::grant(&mut owner, "bob@example.org", "pro", &Until::Days(30)).await.unwrap();
    // As the owner (device pairing and downloads are points 4 and 5): Bob's box, its heartbeats
    // this month and next (two partitions), a snapshot and Bob's download of it.
    owner
        .batch_execute(&format!(
            "INSERT INTO devices (id, user_id, name, device_fingerprint)
                 VALUES ('00000000-0000-4000-8000-00000000b0b0', '{bob}', 'garage', repeat('ab', 32));
             INSERT INTO device_metrics (device_id, recorded_at, cpu_usage_percent, daemon_status)
                 VALUES ('00000000-0000-4000-8000-00000000b0b0', now(), 12.5, '{{\"btc\": {{\"synced\": true}}}}'),
                        ('00000000-0000-4000-8000-00000000b0b0', date_trunc('month', now()) + interval '1 month 1 day', 40, NULL);
             INSERT INTO snapshots (id, coin_id, kind, version, block_height, block_hash, size_bytes,
                                    compressed_size_bytes, chunk_count, merkle_root, manifest_sha256,
                                    index_sha256, key_id, expires_at, is_current)
                 SELECT '00000000-0000-4000-8000-000000005a55', id, 'utxo', 1, 840000, repeat('0', 64), 1000, 800, 1,
                        repeat('1', 64), repeat('2', 64), repeat('3', 64), 'k1', now() + interval '30 days', TRUE
                   FROM coins WHERE coin_key = 'btc';
             INSERT INTO snapshot_downloads (snapshot_id, user_id, device_id, bytes_downloaded)
                 VALUES ('00000000-0000-4000-8000-000000005a55', '{bob}', '00000000-0000-4000-8000-00000000b0b0', 800);"
        ))
        .await
        .unwrap();
    drop(owner);

    let before = every_row(&rig.pg);
    for (table, n) in [
        ("users", 2),
        ("sessions", 1),
        ("api_tokens", 1),
        ("subscriptions", 1),
        ("login_failures", 2),
        ("devices", 1),
        ("minebox_context_key", 1),
        ("schema_migrations", minebox_cloud::db::MIGRATIONS.len() as i64),
    ] {
        assert_eq!(count(&before, table), n, "{table} before the dump:\n{before}");
    }
    let partition_rows = |rows: &str, parent: &str| -> i64 {
        rows.lines()
            .filter(|l| l.starts_with(&format!("public.{parent}_y")))
            .map(|l| l.split('|').nth(1).unwrap().parse::<i64>().unwrap())
            .sum()
    };
    assert_eq!(partition_rows(&before, "device_metrics"), 2, "{before}");
    assert_eq!(partition_rows(&before, "snapshot_downloads"), 1, "{before}");

    // The backup, as the database's owner (it owns every table, so nothing is filtered out).
    let dump = rig.pg.dir().join("cloud.dump");
    let port = rig.pg.port.to_string();
    client_program(
        "pg_dump",
        &["-Fc", "-h", "127.0.0.1", "-p", &port, "-U", OWNER, "-d", DB, "-f", dump.to_str().unwrap()],
    );

    // The restore: a fresh cluster with the database and the roles (owner, minebox_api, the
    // API's login role) made first, exactly as for a new deployment; then pg_restore as the owner.
    let restored = cluster();
    let port = restored.port.to_string();
    client_program(
        "pg_restore",
        &["--exit-on-error", "-h", "127.0.0.1", "-p", &port, "-U", OWNER, "-d", DB, dump.to_str().unwrap()],
    );
    let after = every_row(&restored);
    assert_eq!(after, before, "the restored database differs");

    // The service on the restored copy: the session and the token made before the dump still
    // work (their hashes and the user-context key came back), the passwords too, and the plan.
    let back = Rig::start_on(restored, |_| {}).await;
    let (status, me) = back.call(Method::GET, "/api/v1/me", &Auth::Cookie(session), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "ann@example.org", "{me}");
    let (status, me) = back.call(Method::GET, "/api/v1/me", &Auth::Bearer(token), None).await;
    assert_eq!((status, me["email"].as_str()), (200, Some("ann@example.org")), "{me}");
    let (bob_session, _) = back.login("bob@example.org", "bob's long password").await;
    let (status, sub) = back.call(Method::GET, "/api/v1/subscription", &Auth::Cookie(bob_session.clone()), None).await;
    assert_eq!((status, sub["plan"].as_str()), (200, Some("pro")), "{sub}");
    let (status, devices) = back.call(Method::GET, "/api/v1/devices", &Auth::Cookie(bob_session), None).await;
    assert_eq!(status, 200, "{devices}");
    assert!(devices.to_string().contains("garage"), "{devices}");

    // Roles are not in a database's dump: restoring without making minebox_api first stops at
    // the first grant, naming the role (docs/cloud.md says to make the roles first).
    let bare = Postgres::start();
    bare.create_database(DB);
    bare.psql("postgres", &format!("CREATE ROLE {OWNER} LOGIN; ALTER DATABASE {DB} OWNER TO {OWNER};"));
    let out = Command::new(minebox_pg::bin_dir().join("pg_restore"))
        .args(["--exit-on-error", "-h", "127.0.0.1", "-p", &bare.port.to_string(), "-U", OWNER, "-d", DB])
        .arg(&dump)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "restored without the API's role");
    assert!(said.contains(r#"role "minebox_api" does not exist"#), "{said}");
}
