-- MineBox Cloud's schema, from the database seed (../shared/seeds/000_*.txt); docs/cloud.md says
-- what differs from the seed and why. Applied once, in a transaction, by `minebox-cloud migrate`
-- (or at `serve` start) as the database's owner.

-- The role the API works as. It owns nothing, so row-level security applies to it (owners
-- bypass RLS); the login role the API connects with is made a member of it at deployment.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'minebox_api') THEN
        CREATE ROLE minebox_api NOLOGIN;
    END IF;
END
$$;

-- HMAC for the signed user context below; a trusted extension (PostgreSQL 13+), so the
-- database's owner may create it.
CREATE EXTENSION IF NOT EXISTS pgcrypto;

-- The key the service signs the user context with. Only the owner reads it (the service reads
-- it once at start over the owner's connection); the API's role cannot, so SQL run as the API's
-- role (a bug, an injection) cannot sign a context for another user.
CREATE TABLE minebox_context_key (
    only_one BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_one),
    key BYTEA NOT NULL
);
INSERT INTO minebox_context_key (key) VALUES (gen_random_bytes(32));

-- The user the current transaction acts for. The API sets it in every transaction with
-- set_config('minebox.user_id', '<uuid>:<hex HMAC-SHA256(key, uuid)>', true) (SET LOCAL), so it
-- never leaks to the next transaction on a pooled connection (PgBouncer in transaction mode).
-- Unset, malformed or wrongly signed: NULL, which no row's user_id equals. Policies call it as
-- (SELECT minebox_user()) so it runs once per statement, not once per row.
CREATE FUNCTION minebox_user() RETURNS uuid
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
DECLARE
    context text := current_setting('minebox.user_id', true);
    claimed text;
BEGIN
    IF context IS NULL OR context !~ '^[0-9a-f-]{36}:[0-9a-f]{64}$' THEN
        RETURN NULL;
    END IF;
    claimed := split_part(context, ':', 1);
    IF encode(hmac(convert_to(claimed, 'UTF8'), (SELECT key FROM minebox_context_key), 'sha256'), 'hex') = split_part(context, ':', 2) THEN
        RETURN claimed::uuid;
    END IF;
    RETURN NULL;
END
$$;

-- Users & authentication -------------------------------------------------------------------

CREATE TABLE users (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- Stored as typed; unique ignoring case (idx_users_email below), as mail systems treat it.
    email VARCHAR(255) NOT NULL CHECK (length(email) BETWEEN 3 AND 255),
    -- A PHC string (argon2id), never the password.
    password_hash VARCHAR(255) NOT NULL,
    display_name VARCHAR(100),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    last_login_at TIMESTAMPTZ,
    preferences JSONB NOT NULL DEFAULT '{}'::jsonb
);
-- The seed's idx_users_email, made unique over lower(email): one account per mailbox.
CREATE UNIQUE INDEX idx_users_email ON users (lower(email));
CREATE INDEX idx_users_created_at ON users (created_at);

CREATE TABLE subscription_plans (
    id SERIAL PRIMARY KEY,
    name VARCHAR(50) NOT NULL UNIQUE,            -- 'free', 'hobbyist', 'enthusiast'
    monthly_price_cents INTEGER NOT NULL CHECK (monthly_price_cents >= 0),
    snapshot_downloads_per_month INTEGER,        -- NULL = unlimited
    snapshot_bytes_per_month BIGINT,             -- NULL = unlimited (issue 16, point 3)
    max_devices INTEGER,                         -- NULL = unlimited (issue 16, point 3)
    coins_supported INTEGER,                     -- max coins per device
    priority_support BOOLEAN NOT NULL DEFAULT FALSE,
    features JSONB NOT NULL DEFAULT '{}'::jsonb
);
-- Every account without a paid subscription is on this plan (a lapsed one falls back to it).
INSERT INTO subscription_plans (name, monthly_price_cents, snapshot_downloads_per_month,
                                snapshot_bytes_per_month, max_devices, coins_supported)
VALUES ('free', 0, 1, 50 * 1024::bigint * 1024 * 1024, 1, 1);

CREATE TABLE subscriptions (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL UNIQUE REFERENCES users (id) ON DELETE CASCADE,
    plan_id INTEGER NOT NULL REFERENCES subscription_plans (id),
    status VARCHAR(20) NOT NULL DEFAULT 'active'
        CHECK (status IN ('active', 'past_due', 'cancelled', 'expired')),
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    expires_at TIMESTAMPTZ,
    -- The seed's stripe_subscription_id, named for no one provider.
    provider_subscription_id VARCHAR(255) UNIQUE
);
-- The seed's idx_subscriptions_user is the UNIQUE(user_id) index itself.
CREATE INDEX idx_subscriptions_status ON subscriptions (status);
CREATE INDEX idx_subscriptions_active ON subscriptions (user_id) WHERE status = 'active';

-- Coins -------------------------------------------------------------------------------------

-- Upserted from the descriptors (coins/*.toml, embedded in the binary) at every start.
CREATE TABLE coins (
    id SERIAL PRIMARY KEY,
    -- The descriptor's id ('btc', 'bch', ...): what snapshots' manifests and the box name a coin by.
    coin_key VARCHAR(20) UNIQUE NOT NULL,
    symbol VARCHAR(10) UNIQUE NOT NULL,
    name VARCHAR(100) NOT NULL,
    algorithm VARCHAR(50) NOT NULL DEFAULT 'sha256d',
    is_active BOOLEAN NOT NULL DEFAULT TRUE,
    default_rpc_port INTEGER,
    default_p2p_port INTEGER,
    default_stratum_port INTEGER,
    current_difficulty NUMERIC(30, 8),
    network_hashrate NUMERIC(30, 0),
    block_reward NUMERIC(20, 8),
    block_time_seconds INTEGER,
    blockchain_size_gb NUMERIC(10, 2),
    growth_rate_gb_per_month NUMERIC(6, 2),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

CREATE TABLE coin_profitability (
    id SERIAL PRIMARY KEY,
    coin_id INTEGER NOT NULL REFERENCES coins (id),
    hashrate_ths NUMERIC(10, 4),
    expected_blocks_per_year NUMERIC(10, 4),
    expected_revenue_usd_per_year NUMERIC(12, 2),
    calculated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_coin_profitability_coin ON coin_profitability (coin_id);

-- Devices -----------------------------------------------------------------------------------

CREATE TABLE devices (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL until paired; unlinking sets it back to NULL.
    user_id UUID REFERENCES users (id) ON DELETE CASCADE,
    name VARCHAR(100),
    hardware_type VARCHAR(50) NOT NULL DEFAULT 'raspberry_pi_5',
    -- The box's Ed25519 public key, hex (issue 16, point 4): what identifies it.
    device_fingerprint VARCHAR(255) UNIQUE,
    last_seen_at TIMESTAMPTZ,
    ip_address INET,
    status VARCHAR(20) NOT NULL DEFAULT 'provisioning'
        CHECK (status IN ('provisioning', 'online', 'offline')),
    version VARCHAR(40),
    storage_total_gb INTEGER,
    storage_used_gb INTEGER,
    memory_total_mb INTEGER,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW()
);
CREATE INDEX idx_devices_user ON devices (user_id);
CREATE INDEX idx_devices_status ON devices (status);

-- Snapshots (the catalogue; docs/cloud.md maps it to docs/snapshot-format.md) ---------------

CREATE TABLE snapshots (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    coin_id INTEGER NOT NULL REFERENCES coins (id),
    network VARCHAR(10) NOT NULL DEFAULT 'main',           -- manifest.network
    kind VARCHAR(10) NOT NULL CHECK (kind IN ('utxo', 'datadir')), -- manifest.kind
    version INTEGER NOT NULL,                               -- manifest.version
    block_height INTEGER NOT NULL,                          -- manifest.height
    block_hash VARCHAR(64) NOT NULL,                        -- manifest.block_hash
    size_bytes BIGINT NOT NULL,                             -- manifest.total_bytes
    compressed_size_bytes BIGINT NOT NULL,                  -- sum of the chunks as served
    chunk_count INTEGER NOT NULL,                           -- manifest.chunk_count
    merkle_root VARCHAR(64) NOT NULL,                       -- manifest.merkle_root
    -- The seed's checksum_sha256: of manifest.json as served (the signed bytes).
    manifest_sha256 VARCHAR(64) NOT NULL,
    index_sha256 VARCHAR(64) NOT NULL,                      -- manifest.index_sha256
    key_id VARCHAR(16) NOT NULL,                            -- manifest.key_id
    expires_at TIMESTAMPTZ NOT NULL,                        -- manifest.expires
    status VARCHAR(20) NOT NULL DEFAULT 'available'
        CHECK (status IN ('generating', 'available', 'deprecated')),
    is_current BOOLEAN NOT NULL DEFAULT FALSE,
    storage_bucket VARCHAR(255),
    storage_prefix VARCHAR(255),
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    deprecated_at TIMESTAMPTZ,
    UNIQUE (coin_id, network, kind, block_height),
    UNIQUE (coin_id, network, kind, version)
);
CREATE INDEX idx_snapshots_coin ON snapshots (coin_id);
-- The seed's idx_snapshots_current, unique: one current snapshot per coin, network and kind.
CREATE UNIQUE INDEX idx_snapshots_current ON snapshots (coin_id, network, kind) WHERE is_current;

-- One row per chunk reference in index.json, in index order. The object's key is derived from
-- the hash (chunks/<h0h1>/<hash>.zst), so the seed's storage_key is not stored.
CREATE TABLE snapshot_chunks (
    snapshot_id UUID NOT NULL REFERENCES snapshots (id) ON DELETE CASCADE,
    chunk_index INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,                 -- uncompressed
    compressed_size_bytes INTEGER NOT NULL,      -- the .zst object
    checksum_sha256 VARCHAR(64) NOT NULL,        -- of the uncompressed bytes: the chunk's name
    PRIMARY KEY (snapshot_id, chunk_index)
);
-- The seed's idx_snapshot_chunks_snapshot is the primary key; chunks are shared between
-- snapshots, found by hash.
CREATE INDEX idx_snapshot_chunks_hash ON snapshot_chunks (checksum_sha256);

-- Per-device coins ---------------------------------------------------------------------------

CREATE TABLE device_coins (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    device_id UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    coin_id INTEGER NOT NULL REFERENCES coins (id),
    sync_status VARCHAR(20) NOT NULL DEFAULT 'pending'
        CHECK (sync_status IN ('pending', 'syncing', 'synced', 'error')),
    sync_progress_percent NUMERIC(5, 2),
    block_height INTEGER,
    stratum_enabled BOOLEAN NOT NULL DEFAULT TRUE,
    stratum_port INTEGER,
    rpc_port INTEGER,
    snapshot_id UUID REFERENCES snapshots (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    UNIQUE (device_id, coin_id)
);
-- The seed's idx_device_coins_device is the UNIQUE (device_id, coin_id) index's prefix.
CREATE INDEX idx_device_coins_coin ON device_coins (coin_id);
CREATE INDEX idx_device_coins_status ON device_coins (sync_status);
CREATE INDEX idx_device_coins_active ON device_coins (device_id, coin_id) WHERE sync_status = 'synced';

-- Blocks found (reported by the box; the share that found it stays on the box) --------------

CREATE TABLE blocks (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    coin_id INTEGER NOT NULL REFERENCES coins (id),
    device_id UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    -- The seed's miner_id: the worker name the miner authorized with on the box.
    worker_name VARCHAR(100),
    block_hash VARCHAR(64) NOT NULL,
    block_height INTEGER NOT NULL,
    block_reward NUMERIC(20, 8),
    block_reward_usd NUMERIC(12, 2),
    confirmations INTEGER NOT NULL DEFAULT 0,
    is_orphaned BOOLEAN NOT NULL DEFAULT FALSE,
    is_mature BOOLEAN NOT NULL DEFAULT FALSE,
    discovered_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    confirmed_at TIMESTAMPTZ,
    UNIQUE (coin_id, block_hash)
);
CREATE INDEX idx_blocks_coin ON blocks (coin_id);
CREATE INDEX idx_blocks_device ON blocks (device_id);
CREATE INDEX idx_blocks_discovered ON blocks (discovered_at);
CREATE INDEX idx_blocks_orphaned ON blocks (is_orphaned);
CREATE INDEX idx_blocks_user_recent ON blocks (device_id, discovered_at DESC);

-- Metered downloads: monthly partitions by started_at (the quota query reads one month) ----

CREATE TABLE snapshot_downloads (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    snapshot_id UUID NOT NULL REFERENCES snapshots (id),
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    device_id UUID REFERENCES devices (id) ON DELETE SET NULL,
    started_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    completed_at TIMESTAMPTZ,
    chunks_downloaded INTEGER NOT NULL DEFAULT 0,
    bytes_downloaded BIGINT NOT NULL DEFAULT 0,
    -- How many times the box came back for the rest (issue 16, point 5).
    resumed_count INTEGER NOT NULL DEFAULT 0,
    verification_passed BOOLEAN,
    verified_at TIMESTAMPTZ,
    PRIMARY KEY (id, started_at)
) PARTITION BY RANGE (started_at);
CREATE INDEX idx_snapshot_downloads_user ON snapshot_downloads (user_id);
CREATE INDEX idx_snapshot_downloads_snapshot ON snapshot_downloads (snapshot_id);
CREATE INDEX idx_snapshot_downloads_month ON snapshot_downloads (user_id, started_at);

-- Telemetry the owner opts into -------------------------------------------------------------

-- The seed's TimescaleDB hypertable, as plain monthly range partitions: no extension to
-- install, and retention drops a whole month's table.
CREATE TABLE device_metrics (
    device_id UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    cpu_usage_percent NUMERIC(5, 2),
    memory_usage_percent NUMERIC(5, 2),
    disk_usage_percent NUMERIC(5, 2),
    temperature_celsius NUMERIC(5, 2),
    network_in_bytes BIGINT,
    network_out_bytes BIGINT,
    uptime_seconds BIGINT,
    daemon_status JSONB,    -- {coin: {synced: true, height: 123456}}
    PRIMARY KEY (device_id, recorded_at)
) PARTITION BY RANGE (recorded_at);

CREATE TABLE mining_stats_daily (
    id SERIAL PRIMARY KEY,
    device_id UUID NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    coin_id INTEGER NOT NULL REFERENCES coins (id),
    stat_date DATE NOT NULL,
    shares_submitted BIGINT NOT NULL DEFAULT 0,
    shares_valid BIGINT NOT NULL DEFAULT 0,
    shares_invalid BIGINT NOT NULL DEFAULT 0,
    blocks_found INTEGER NOT NULL DEFAULT 0,
    avg_hashrate_ths NUMERIC(10, 4),
    uptime_percent NUMERIC(5, 2),
    UNIQUE (device_id, coin_id, stat_date)
);
CREATE INDEX idx_mining_stats_device ON mining_stats_daily (device_id, stat_date);

-- Monthly partitions, made ahead ------------------------------------------------------------

-- Creates the partitions of every monthly-partitioned table for the month of `from_day` and
-- the `months_ahead` months after it; existing ones are kept. The service calls it at start
-- and daily. Returns the names of the partitions it created.
CREATE FUNCTION minebox_create_partitions(from_day date, months_ahead integer)
    RETURNS SETOF text
    LANGUAGE plpgsql
    AS $$
DECLARE
    parent text;
    month_start date;
    part text;
BEGIN
    FOREACH parent IN ARRAY ARRAY['snapshot_downloads', 'device_metrics'] LOOP
        FOR i IN 0..months_ahead LOOP
            month_start := (date_trunc('month', from_day) + make_interval(months => i))::date;
            part := format('%s_y%sm%s', parent, to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
            IF to_regclass(part) IS NULL THEN
                EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%L) TO (%L)',
                               part, parent, month_start, (month_start + interval '1 month')::date);
                RETURN NEXT part;
            END IF;
        END LOOP;
    END LOOP;
END
$$;

-- Row-level security on every per-user table ------------------------------------------------
-- A table's rows belong to minebox_user(), directly (user_id) or through a device the user owns.

ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY users_own ON users USING (id = (SELECT minebox_user()));

ALTER TABLE subscriptions ENABLE ROW LEVEL SECURITY;
CREATE POLICY subscriptions_own ON subscriptions USING (user_id = (SELECT minebox_user()));

ALTER TABLE devices ENABLE ROW LEVEL SECURITY;
CREATE POLICY devices_user_isolation ON devices USING (user_id = (SELECT minebox_user()));

ALTER TABLE device_coins ENABLE ROW LEVEL SECURITY;
CREATE POLICY device_coins_own ON device_coins
    USING (EXISTS (SELECT 1 FROM devices d WHERE d.id = device_id AND d.user_id = (SELECT minebox_user())));

ALTER TABLE blocks ENABLE ROW LEVEL SECURITY;
CREATE POLICY blocks_own ON blocks
    USING (EXISTS (SELECT 1 FROM devices d WHERE d.id = device_id AND d.user_id = (SELECT minebox_user())));

ALTER TABLE snapshot_downloads ENABLE ROW LEVEL SECURITY;
CREATE POLICY snapshot_downloads_own ON snapshot_downloads USING (user_id = (SELECT minebox_user()));

ALTER TABLE device_metrics ENABLE ROW LEVEL SECURITY;
CREATE POLICY device_metrics_own ON device_metrics
    USING (EXISTS (SELECT 1 FROM devices d WHERE d.id = device_id AND d.user_id = (SELECT minebox_user())));

ALTER TABLE mining_stats_daily ENABLE ROW LEVEL SECURITY;
CREATE POLICY mining_stats_daily_own ON mining_stats_daily
    USING (EXISTS (SELECT 1 FROM devices d WHERE d.id = device_id AND d.user_id = (SELECT minebox_user())));

-- What the API may do. The catalogue tables are read-only to it; partitions are reached only
-- through their parents (no grant on a partition, so its missing policies never matter).
GRANT USAGE ON SCHEMA public TO minebox_api;
GRANT SELECT ON subscription_plans, coins, coin_profitability, snapshots, snapshot_chunks TO minebox_api;
GRANT SELECT, INSERT, UPDATE, DELETE
    ON users, subscriptions, devices, device_coins, blocks, snapshot_downloads, device_metrics,
       mining_stats_daily
    TO minebox_api;
GRANT USAGE ON SEQUENCE mining_stats_daily_id_seq TO minebox_api;
REVOKE ALL ON FUNCTION minebox_user() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION minebox_user() TO minebox_api;
REVOKE ALL ON FUNCTION minebox_create_partitions(date, integer) FROM PUBLIC;
