-- Telemetry the owner opts into (issue 16, point 6): heartbeats, daily mining stats, blocks
-- found (docs/cloud.md, "Telemetry"). The box's reports are written in a transaction acting for
-- the box's user, so row-level security checks every row belongs to one of their devices.

-- A coin's node as the box reports it. `sync_status` (the seed's four values) stays, derived
-- from `sync_state`; these add what the box's status page shows.
ALTER TABLE device_coins
    ADD COLUMN sync_state VARCHAR(20)
        CHECK (sync_state IN ('starting', 'syncing', 'installing_snapshot', 'ready', 'down')),
    ADD COLUMN header_height INTEGER CHECK (header_height >= 0),
    ADD COLUMN hashrate_hs DOUBLE PRECISION CHECK (hashrate_hs >= 0),
    ADD COLUMN reported_at TIMESTAMPTZ;

-- The day's best share, which the seed's daily row lacks.
ALTER TABLE mining_stats_daily ADD COLUMN best_difficulty DOUBLE PRECISION CHECK (best_difficulty >= 0);

-- Whether the user's display name may appear on the public block leaderboard; otherwise they
-- are listed under a pseudonym. Off by default.
ALTER TABLE users ADD COLUMN leaderboard_public BOOLEAN NOT NULL DEFAULT FALSE;

-- The device a signed request's key belongs to, and its user (NULL while unlinked). No row: an
-- unknown key.
CREATE FUNCTION minebox_device_owner(p_key text)
    RETURNS TABLE (device_id uuid, user_id uuid)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    SELECT d.id, d.user_id FROM devices d WHERE d.device_fingerprint = p_key
$$;

-- The seed's block leaderboard, across users (hence past row-level security), never with an
-- email: a user is shown by their display name only if they chose to be, otherwise as
-- 'miner-' and six hex digits of a hash of their id (stable, not reversible to the account).
-- Orphaned blocks do not count.
CREATE FUNCTION minebox_block_leaderboard(p_limit integer)
    RETURNS TABLE (miner text, symbol text, blocks_found bigint, total_rewards numeric, last_found_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
    AS $$
    SELECT CASE WHEN u.leaderboard_public AND u.display_name IS NOT NULL THEN u.display_name::text
                ELSE 'miner-' || left(encode(sha256(convert_to(u.id::text, 'UTF8')), 'hex'), 6) END,
           c.symbol::text, count(b.id), sum(b.block_reward), max(b.discovered_at)
      FROM blocks b
      JOIN devices d ON d.id = b.device_id
      JOIN users u ON u.id = d.user_id
      JOIN coins c ON c.id = b.coin_id
     WHERE b.is_orphaned = FALSE
     GROUP BY u.id, u.leaderboard_public, u.display_name, c.symbol
     ORDER BY count(b.id) DESC, max(b.discovered_at) ASC
     LIMIT p_limit
$$;

REVOKE ALL ON FUNCTION minebox_device_owner(text), minebox_block_leaderboard(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION minebox_device_owner(text), minebox_block_leaderboard(integer) TO minebox_api;
