//! The schema on a real PostgreSQL: migrations, partitions made ahead, row-level security.

mod support;

use minebox_cloud::db::{self, UserContext};
use support::{cluster, connect, owner_pool, API, DB};
use uuid::Uuid;

const TABLES: &[&str] = &[
    "users",
    "subscription_plans",
    "subscriptions",
    "coins",
    "coin_profitability",
    "devices",
    "device_coins",
    "blocks",
    "snapshots",
    "snapshot_chunks",
    "snapshot_downloads",
    "device_metrics",
    "mining_stats_daily",
    "sessions",
    "api_tokens",
    "email_tokens",
    "login_failures",
    "billing_events",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_on_an_empty_database_and_a_rerun_changes_nothing() {
    let pg = cluster();
    let owner = owner_pool(&pg);
    minebox_cloud::prepare(&owner).await.unwrap();
    let tables = pg.psql(DB, "SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') AND relname NOT LIKE '%\\_y____m__'");
    for t in TABLES {
        assert!(tables.split(',').any(|x| x == *t), "table {t} missing: {tables}");
    }
    // The coins come from coins/*.toml.
    assert_eq!(
        pg.psql(DB, "SELECT string_agg(coin_key, ',' ORDER BY coin_key) FROM coins WHERE is_active"),
        "bch,bsv,btc,xec"
    );
    assert_eq!(
        pg.psql(DB, "SELECT symbol || ' ' || default_stratum_port FROM coins WHERE coin_key = 'bch'"),
        "BCH 3334"
    );
    let recorded = pg.psql(DB, "SELECT string_agg(name, ',' ORDER BY version) FROM schema_migrations");
    assert_eq!(recorded, "0001_schema,0002_accounts,0003_plans,0004_devices,0005_telemetry,0006_snapshots");

    // A second run (every start runs it) applies nothing and keeps the data.
    pg.psql(DB, "INSERT INTO users (email, password_hash) VALUES ('kept@example.org', 'x')");
    let mut client = db::client(&owner).await.unwrap();
    assert!(db::migrate(&mut client).await.unwrap().is_empty());
    minebox_cloud::prepare(&owner).await.unwrap();
    assert_eq!(pg.psql(DB, "SELECT count(*) FROM schema_migrations"), "6");
    assert_eq!(pg.psql(DB, "SELECT count(*) FROM users"), "1");
    assert_eq!(pg.psql(DB, "SELECT count(*) FROM coins"), "4", "coins upserted, not duplicated");

    // An applied migration edited afterwards is refused, naming it.
    pg.psql(DB, "UPDATE schema_migrations SET sha256 = repeat('0', 64) WHERE version = 2");
    let e = db::migrate(&mut client).await.unwrap_err().to_string();
    assert!(e.contains("0002_accounts") && e.contains("changed after it was applied"), "{e}");
}

/// Partition names for this month and the next `ahead`, as the service names them.
fn months_from_now(pg: &minebox_pg::Postgres, ahead: i32) -> Vec<String> {
    let out = pg.psql(
        DB,
        &format!("SELECT to_char(date_trunc('month', current_date) + make_interval(months => g), '\"y\"YYYY\"m\"MM') FROM generate_series(0, {ahead}) g"),
    );
    out.lines().map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_makes_this_and_the_coming_months_partitions() {
    let pg = cluster();
    let owner = owner_pool(&pg);
    minebox_cloud::prepare(&owner).await.unwrap();
    let parts =
        pg.psql(DB, "SELECT string_agg(c.relname, ',') FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid");
    for month in months_from_now(&pg, db::MONTHS_AHEAD) {
        for parent in ["snapshot_downloads", "device_metrics"] {
            let name = format!("{parent}_{month}");
            assert!(parts.split(',').any(|p| p == name), "{name} missing: {parts}");
        }
    }
    // A row for the last month made ahead goes in; the seed's indexes are on the partitions.
    let device = pg.psql(DB, "INSERT INTO devices (name) VALUES ('d') RETURNING id");
    pg.psql(
        DB,
        &format!(
            "INSERT INTO device_metrics (device_id, recorded_at) VALUES ('{device}', date_trunc('month', now()) + interval '{} months 1 day')",
            db::MONTHS_AHEAD
        ),
    );
    let idx = pg
        .psql(DB, "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'snapshot_downloads_y%user_id_started_at_idx'");
    assert_eq!(idx, (db::MONTHS_AHEAD + 1).to_string(), "idx_snapshot_downloads_month on every partition");

    // The function across a year's end, and again: nothing new.
    let made = pg.psql(DB, "SELECT string_agg(p, ',') FROM minebox_create_partitions('2030-11-15', 2) p");
    assert_eq!(
        made,
        "snapshot_downloads_y2030m11,snapshot_downloads_y2030m12,snapshot_downloads_y2031m01,\
         device_metrics_y2030m11,device_metrics_y2030m12,device_metrics_y2031m01"
    );
    assert_eq!(pg.psql(DB, "SELECT count(*) FROM minebox_create_partitions('2030-11-15', 2)"), "0");
    let bounds =
        pg.psql(DB, "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = 'device_metrics_y2030m12'");
    assert!(bounds.contains("2030-12-01") && bounds.contains("2031-01-01"), "{bounds}");
}

/// The daily upkeep remakes a missing coming month and forgets old login failures and
/// sessions, keeping the live ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_upkeep_makes_partitions_and_forgets_what_no_longer_counts() {
    let pg = cluster();
    let owner = owner_pool(&pg);
    minebox_cloud::prepare(&owner).await.unwrap();
    let last = months_from_now(&pg, db::MONTHS_AHEAD).pop().unwrap();
    pg.psql(DB, &format!("DROP TABLE device_metrics_{last}"));
    let user = pg.psql(DB, "INSERT INTO users (email, password_hash) VALUES ('u@example.org', 'x') RETURNING id");
    pg.psql(
        DB,
        &format!(
            "INSERT INTO login_failures (key_hash, failed_at) VALUES ('old', now() - interval '1 hour'), ('new', now());
             INSERT INTO sessions (user_id, token_hash, expires_at) VALUES
               ('{user}', repeat('a', 64), now() - interval '8 days'), ('{user}', repeat('b', 64), now() + interval '1 day');"
        ),
    );
    let made = minebox_cloud::upkeep(&owner, &minebox_cloud::accounts::Throttle::default()).await.unwrap();
    assert_eq!(made, vec![format!("device_metrics_{last}")]);
    assert_eq!(pg.psql(DB, "SELECT string_agg(key_hash, ',') FROM login_failures"), "new");
    assert_eq!(pg.psql(DB, "SELECT string_agg(left(token_hash, 1), ',') FROM sessions"), "b");
}

/// Two users, each with a device and a row in every per-user table, made by the owner.
fn two_users(pg: &minebox_pg::Postgres) -> [(Uuid, Uuid); 2] {
    let mut out = Vec::new();
    for who in ["a", "b"] {
        let user: Uuid = pg
            .psql(
                DB,
                &format!("INSERT INTO users (email, password_hash) VALUES ('{who}@example.org', 'x') RETURNING id"),
            )
            .parse()
            .unwrap();
        let device: Uuid = pg
            .psql(DB, &format!("INSERT INTO devices (user_id, name) VALUES ('{user}', 'box-{who}') RETURNING id"))
            .parse()
            .unwrap();
        let snap = pg.psql(
            DB,
            &format!(
                "INSERT INTO snapshots (coin_id, kind, version, block_height, block_hash, size_bytes, compressed_size_bytes,
                   chunk_count, merkle_root, manifest_sha256, index_sha256, key_id, expires_at)
                 SELECT id, 'datadir', {v}, {v}, 'h', 1, 1, 1, 'm', 'x', 'i', 'K', now() FROM coins WHERE coin_key = 'bch' RETURNING id",
                v = if who == "a" { 1 } else { 2 }
            ),
        );
        pg.psql(
            DB,
            &format!(
                "INSERT INTO subscriptions (user_id, plan_id) SELECT '{user}', id FROM subscription_plans WHERE name = 'free';
                 INSERT INTO device_coins (device_id, coin_id) SELECT '{device}', id FROM coins WHERE coin_key = 'bch';
                 INSERT INTO blocks (coin_id, device_id, block_hash, block_height) SELECT id, '{device}', '{who}', 1 FROM coins WHERE coin_key = 'bch';
                 INSERT INTO snapshot_downloads (snapshot_id, user_id, device_id) VALUES ('{snap}', '{user}', '{device}');
                 INSERT INTO device_metrics (device_id) VALUES ('{device}');
                 INSERT INTO mining_stats_daily (device_id, coin_id, stat_date) SELECT '{device}', id, current_date FROM coins WHERE coin_key = 'bch';
                 INSERT INTO sessions (user_id, token_hash, expires_at) VALUES ('{user}', repeat('{who}', 64), now() + interval '1 day');
                 INSERT INTO api_tokens (user_id, name, prefix, token_hash) VALUES ('{user}', 't', 'p', repeat('{who}', 64));
                 INSERT INTO email_tokens (user_id, purpose, token_hash, expires_at) VALUES ('{user}', 'verify', repeat('{who}', 64), now());"
            ),
        );
        out.push((user, device));
    }
    [out[0], out[1]]
}

const PER_USER: &[&str] = &[
    "users",
    "subscriptions",
    "devices",
    "device_coins",
    "blocks",
    "snapshot_downloads",
    "device_metrics",
    "mining_stats_daily",
    "sessions",
    "api_tokens",
    "email_tokens",
];

/// SQL run directly as the API's role (the service bypassed): with A's signed context it sees
/// and changes only A's rows, whatever it asks; with a context it forged, nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_keeps_each_user_to_their_rows_even_for_crafted_sql() {
    let pg = cluster();
    let owner = owner_pool(&pg);
    minebox_cloud::prepare(&owner).await.unwrap();
    let [(a, a_dev), (b, b_dev)] = two_users(&pg);
    let context = UserContext::load(&db::client(&owner).await.unwrap()).await.unwrap();
    let mut api = connect(&pg, API).await;

    // No user set: nothing in any per-user table.
    for t in PER_USER {
        let n: i64 = api.query_one(&format!("SELECT count(*) FROM {t}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "{t} shows rows with no user set");
    }

    let tx = api.transaction().await.unwrap();
    tx.query_one("SELECT set_config('minebox.user_id', $1, true)", &[&context.sign(a)]).await.unwrap();
    for t in PER_USER {
        let n: i64 = tx.query_one(&format!("SELECT count(*) FROM {t}"), &[]).await.unwrap().get(0);
        assert_eq!(n, 1, "{t}: A sees exactly A's row");
    }
    // Asking for B's rows by id, or for everything, still finds only A's.
    let n: i64 = tx
        .query_one("SELECT count(*) FROM devices WHERE user_id = $1 OR id = $2 OR TRUE", &[&b, &b_dev])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let seen: Vec<Uuid> = tx
        .query("SELECT user_id FROM subscriptions WHERE user_id IN ($1, $2)", &[&a, &b])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(seen, vec![a]);
    // Changing B's rows touches none.
    assert_eq!(tx.execute("UPDATE devices SET name = 'pwned' WHERE id = $1", &[&b_dev]).await.unwrap(), 0);
    assert_eq!(tx.execute("DELETE FROM devices WHERE user_id = $1", &[&b]).await.unwrap(), 0);
    assert_eq!(tx.execute("UPDATE devices SET name = name WHERE TRUE", &[]).await.unwrap(), 1);
    tx.commit().await.unwrap();

    // A user's plan is changed only by the billing webhook and the admin, as the owner: the API's
    // role cannot write subscriptions at all, not even its own user's.
    for sql in [
        "UPDATE subscriptions SET plan_id = (SELECT max(id) FROM subscription_plans) WHERE TRUE".to_string(),
        format!("DELETE FROM subscriptions WHERE user_id = '{a}'"),
        format!("INSERT INTO subscriptions (user_id, plan_id) SELECT '{a}', max(id) FROM subscription_plans"),
        "SELECT count(*) FROM billing_events".to_string(),
    ] {
        let tx = api.transaction().await.unwrap();
        tx.query_one("SELECT set_config('minebox.user_id', $1, true)", &[&context.sign(a)]).await.unwrap();
        let e = tx.batch_execute(&sql).await.unwrap_err();
        let e = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(e.contains("permission denied"), "{sql}: {e}");
    }

    // Writing rows that would belong to B is refused by the policy's check.
    for sql in [
        format!("INSERT INTO devices (user_id, name) VALUES ('{b}', 'x')"),
        format!("UPDATE devices SET user_id = '{b}' WHERE id = '{a_dev}'"),
    ] {
        let tx = api.transaction().await.unwrap();
        tx.query_one("SELECT set_config('minebox.user_id', $1, true)", &[&context.sign(a)]).await.unwrap();
        let e = tx.batch_execute(&sql).await.unwrap_err();
        let e = e.as_db_error().map(|d| d.message().to_string()).unwrap_or_default();
        assert!(e.contains("row-level security"), "{sql}: {e}");
    }

    // A context the SQL makes up itself (B's id unsigned, or with A's signature) is no one.
    for forged in [b.to_string(), format!("{b}:{}", context.sign(a).split(':').nth(1).unwrap())] {
        let tx = api.transaction().await.unwrap();
        tx.query_one("SELECT set_config('minebox.user_id', $1, true)", &[&forged]).await.unwrap();
        let n: i64 = tx.query_one("SELECT count(*) FROM devices", &[]).await.unwrap().get(0);
        assert_eq!(n, 0, "a forged context {forged} saw devices");
        tx.rollback().await.unwrap();
    }

    // Around the policies: the key, the partitions and the owner's role are all out of reach.
    for sql in [
        "SELECT key FROM minebox_context_key",
        "SELECT count(*) FROM device_metrics_y2030m01",
        "SET ROLE cloud_owner",
        "ALTER TABLE devices DISABLE ROW LEVEL SECURITY",
        "SELECT minebox_create_partitions(current_date, 1)",
    ] {
        pg.psql(DB, "SELECT minebox_create_partitions('2030-01-01', 0)");
        let e = api.batch_execute(sql).await;
        assert!(e.is_err(), "{sql} was allowed to the API's role");
    }

    // The owner still sees B's device unchanged.
    assert_eq!(pg.psql(DB, &format!("SELECT name FROM devices WHERE id = '{b_dev}'")), "box-b");
    assert_eq!(pg.psql(DB, "SELECT count(*) FROM subscriptions"), "2");
}

/// The service refuses to serve through a role row-level security would not apply to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_a_database_role_that_bypasses_row_level_security() {
    let pg = cluster();
    let owner = owner_pool(&pg);
    minebox_cloud::prepare(&owner).await.unwrap();
    for (role, want) in [(support::OWNER, "bypasses row-level security"), ("postgres", "bypasses row-level security")] {
        let client = db::client(&db::pool(&pg.url(role, DB), 1).unwrap()).await.unwrap();
        let e = db::check_api_role(&client).await.unwrap_err().to_string();
        assert!(e.contains(want), "{role}: {e}");
    }
    pg.psql("postgres", "CREATE ROLE stranger LOGIN");
    let client = db::client(&db::pool(&pg.url("stranger", DB), 1).unwrap()).await.unwrap();
    let e = db::check_api_role(&client).await.unwrap_err().to_string();
    assert!(e.contains("not a member of minebox_api"), "{e}");
    let client = db::client(&db::pool(&pg.url(API, DB), 1).unwrap()).await.unwrap();
    db::check_api_role(&client).await.unwrap();
}
