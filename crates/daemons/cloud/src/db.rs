//! PostgreSQL: connection pools, the migrations, the coin catalogue and the monthly partitions.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use sha2::{Digest, Sha256};
use tokio_postgres::NoTls;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database URL is not valid ({0}): give a libpq key=value string or a postgresql:// URL")]
    Url(tokio_postgres::Error),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(String),
    #[error("PostgreSQL: {}", sql_message(.0))]
    Sql(#[from] tokio_postgres::Error),
    #[error(
        "migration {name} was changed after it was applied (recorded sha256 {recorded}, now {now}): \
         migrations are append-only; put the change in a new file"
    )]
    MigrationChanged { name: String, recorded: String, now: String },
    #[error(
        "the database has migration {0}, which this minebox-cloud does not know: run the newer \
         minebox-cloud, or restore the database this one migrated"
    )]
    UnknownMigration(String),
    #[error(
        "the API's database role `{0}` bypasses row-level security (superuser, BYPASSRLS, or owner \
         of the tables): connect the API with a role that is only a member of minebox_api (docs/cloud.md)"
    )]
    ApiRoleBypassesRls(String),
    #[error("the API's database role `{0}` is not a member of minebox_api: GRANT minebox_api TO {0} (docs/cloud.md)")]
    ApiRoleNotMember(String),
}

/// The server's own words for a refused statement (tokio-postgres's Display says "db error").
fn sql_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}

/// A pool of up to `size` connections to `url`.
pub fn pool(url: &str, size: usize) -> Result<Pool, DbError> {
    let config: tokio_postgres::Config = url.parse().map_err(DbError::Url)?;
    // Plain TCP: the database is on the same host or a private network (docs/cloud.md).
    let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager).max_size(size).build().map_err(|e| DbError::Connect(e.to_string()))
}

pub async fn client(pool: &Pool) -> Result<deadpool_postgres::Object, DbError> {
    pool.get().await.map_err(|e| DbError::Connect(e.to_string()))
}

/// Signs the user context row-level security reads (`minebox_user()` in 0001_schema.sql):
/// `<uuid>:<hex HMAC-SHA256(key, uuid)>`. The key is read once at start over the owner's
/// connection; the API's role cannot read it, so SQL run as that role cannot act for a user
/// the service did not sign for.
#[derive(Clone)]
pub struct UserContext {
    key: Vec<u8>,
}

impl UserContext {
    pub async fn load(owner: &deadpool_postgres::Object) -> Result<UserContext, DbError> {
        let key: Vec<u8> = owner.query_one("SELECT key FROM minebox_context_key", &[]).await?.get(0);
        Ok(UserContext { key })
    }

    pub fn sign(&self, user: Uuid) -> String {
        use hmac::Mac;
        let id = user.to_string();
        let mut mac = hmac::Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        format!("{id}:{}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Makes the rest of `tx` act for `user`.
    pub async fn set(&self, tx: &Transaction<'_>, user: Uuid) -> Result<(), DbError> {
        tx.query_one("SELECT set_config('minebox.user_id', $1, true)", &[&self.sign(user)]).await?;
        Ok(())
    }
}

/// Starts a transaction acting for `user`: row-level security shows and lets it change only
/// that user's rows. The setting is local to the transaction (SET LOCAL), so a pooled
/// connection (or PgBouncer in transaction mode) never carries it into another request.
pub async fn begin_as<'a>(
    client: &'a mut deadpool_postgres::Object,
    context: &UserContext,
    user: Uuid,
) -> Result<Transaction<'a>, DbError> {
    let tx = client.transaction().await?;
    context.set(&tx, user).await?;
    Ok(tx)
}

pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:expr, $name:literal) => {
        Migration { version: $version, name: $name, sql: include_str!(concat!("../migrations/", $name, ".sql")) }
    };
}

/// Every migration, in order (a test checks this list against the migrations/ folder).
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_schema"),
    migration!(2, "0002_accounts"),
    migration!(3, "0003_plans"),
    migration!(4, "0004_devices"),
    migration!(5, "0005_telemetry"),
    migration!(6, "0006_snapshots"),
];

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The advisory lock migrating is done under.
const MIGRATIONS_LOCK: i64 = 7161732512;

/// Applies the migrations the database lacks, in order, in one transaction, recording each in
/// `schema_migrations`; returns the names it applied (none when up to date). Run as the
/// database's owner. Concurrent runs (two replicas starting) wait for each other.
pub async fn migrate(client: &mut deadpool_postgres::Object) -> Result<Vec<&'static str>, DbError> {
    let tx = client.transaction().await?;
    // One lock for "migrating MineBox Cloud", held to the end of the transaction.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATIONS_LOCK]).await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             sha256 CHAR(64) NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .await?;
    let applied: Vec<(i32, String, String)> = tx
        .query("SELECT version, name, sha256 FROM schema_migrations ORDER BY version", &[])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (version, name, _) in &applied {
        if !MIGRATIONS.iter().any(|m| m.version == *version) {
            return Err(DbError::UnknownMigration(format!("{version} ({name})")));
        }
    }
    let mut done = Vec::new();
    for m in MIGRATIONS {
        let now = sha256_hex(m.sql);
        if let Some((_, _, recorded)) = applied.iter().find(|(v, _, _)| *v == m.version) {
            if *recorded != now {
                return Err(DbError::MigrationChanged { name: m.name.into(), recorded: recorded.clone(), now });
            }
            continue;
        }
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, sha256) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &now],
        )
        .await?;
        done.push(m.name);
    }
    tx.commit().await?;
    Ok(done)
}

/// How many months past the current one have their partitions made ahead.
pub const MONTHS_AHEAD: i32 = 3;

/// The advisory lock making partitions is done under (`migrate` uses another).
const PARTITIONS_LOCK: i64 = 7161732513;

/// Creates the monthly partitions for this month and [`MONTHS_AHEAD`] after it (the service
/// calls it at start and daily); returns the names of those it created.
///
/// Every replica runs this, maybe at the same moment. `minebox_create_partitions` looks before
/// it creates, so two at once could both try the same `CREATE TABLE` and one fail; under one
/// advisory lock they take turns, and the second finds the partitions made.
pub async fn create_partitions(client: &mut deadpool_postgres::Object) -> Result<Vec<String>, DbError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITIONS_LOCK]).await?;
    let rows = tx.query("SELECT minebox_create_partitions(current_date, $1)", &[&MONTHS_AHEAD]).await?;
    tx.commit().await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Upserts the coin descriptors embedded in the binary (coins/*.toml) into `coins`; a coin
/// no longer described is marked inactive (rows referencing it stay). Returns how many.
pub async fn upsert_coins(client: &mut deadpool_postgres::Object) -> Result<usize, DbError> {
    let registry = minebox_coin::Registry::embedded();
    let tx = client.transaction().await?;
    let mut keys = Vec::new();
    for coin in registry.coins() {
        let main = coin.networks.get("main").map(|n| &n.ports);
        let port = |f: fn(&minebox_coin::Ports) -> u16| main.map(|p| i32::from(f(p)));
        tx.execute(
            "INSERT INTO coins (coin_key, symbol, name, block_time_seconds, default_rpc_port, default_p2p_port,
                                default_stratum_port, is_active)
             VALUES ($1, $2, $3, $4, $5, $6, $7, TRUE)
             ON CONFLICT (coin_key) DO UPDATE SET
                 symbol = EXCLUDED.symbol, name = EXCLUDED.name,
                 block_time_seconds = EXCLUDED.block_time_seconds,
                 default_rpc_port = EXCLUDED.default_rpc_port, default_p2p_port = EXCLUDED.default_p2p_port,
                 default_stratum_port = EXCLUDED.default_stratum_port, is_active = TRUE, updated_at = now()",
            &[
                &coin.id,
                &coin.symbol,
                &coin.name,
                &i32::try_from(coin.block_time_secs).unwrap_or(i32::MAX),
                &port(|p| p.rpc_port),
                &port(|p| p.p2p_port),
                &port(|p| p.stratum_port),
            ],
        )
        .await?;
        keys.push(coin.id.clone());
    }
    tx.execute(
        "UPDATE coins SET is_active = FALSE, updated_at = now() WHERE is_active AND NOT coin_key = ANY($1)",
        &[&keys],
    )
    .await?;
    tx.commit().await?;
    Ok(keys.len())
}

/// Refuses an API role that row-level security would not apply to.
pub async fn check_api_role(client: &deadpool_postgres::Object) -> Result<(), DbError> {
    let row = client
        .query_one(
            "SELECT current_user::text,
                    r.rolsuper OR r.rolbypassrls
                      OR EXISTS (SELECT 1 FROM pg_class c WHERE c.relowner = r.oid AND c.relname = 'users'),
                    pg_has_role(current_user, 'minebox_api', 'USAGE')
               FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await?;
    let (name, bypasses, member): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    if bypasses {
        return Err(DbError::ApiRoleBypassesRls(name));
    }
    if !member {
        return Err(DbError::ApiRoleNotMember(name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_once_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|f| f.strip_suffix(".sql").map(str::to_string))
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|m| m.name.to_string()).collect();
        assert_eq!(files, listed, "migrations/ and MIGRATIONS differ");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1);
            assert!(m.name.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
