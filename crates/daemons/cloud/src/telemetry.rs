//! Telemetry the owner opts into (issue 16, point 6; docs/cloud.md, "Telemetry"): a linked box's
//! heartbeats, daily mining stats and blocks found, signed with its device key; and the seed's
//! two revenue queries: a user's downloads this month against their plan's limits, and the
//! block leaderboard.
//!
//! The payloads are `minebox_cloud_link::telemetry`'s types, the box's own, read with unknown
//! fields refused. Every value is checked here before the database sees it; the writes run in a
//! transaction acting for the box's user, so row-level security checks each row is theirs.

use crate::db::{self, begin_as};
use crate::devices::{check_short, unix_now, Signed};
use crate::error::ApiError;
use crate::http::Authed;
use crate::App;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use minebox_cloud_link::telemetry::{BlockFound, CoinReport, DailyStats, Heartbeat};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use uuid::Uuid;

/// Heights above this are refused: every chain MineBox mines is under a million blocks, and
/// the columns are 32-bit.
pub const MAX_HEIGHT: u64 = 10_000_000;
/// More coins than any box runs.
pub const MAX_COINS: usize = 16;
const MAX_VERSION: usize = 40;
/// An uptime over ten years is not a real box's.
const MAX_UPTIME_SECS: u64 = 10 * 365 * 24 * 3600;
/// 100 PH/s: far above any box, and under what `avg_hashrate_ths` (NUMERIC(10,4), TH/s) holds.
const MAX_HASHRATE_HS: f64 = 1e17;
const MAX_SHARES: u64 = 1_000_000_000_000;
const MAX_BLOCKS_PER_DAY: u32 = 1_000;
const MAX_DIFFICULTY: f64 = 1e20;
/// 21 million coins of 10^8 units: no block reward is larger.
const MAX_REWARD_SATS: u64 = 21_000_000 * 100_000_000;
/// Bitcoin's genesis block: no block was found before it.
const GENESIS_TIME: i64 = 1_231_006_505;
/// Daily stats older than this are refused (the box sends yesterday's; this allows catching up).
const MAX_DAYS_BACK: i64 = 400;

/// A report read as its payload type, or a 422 naming the field that is wrong
/// (`coins[0].height: invalid value: integer `-5`, expected u64`).
fn payload<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let refuse = |message: String| ApiError::Body {
        status: axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        message: format!("the report is not what this endpoint takes: {message}"),
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let value =
        serde_path_to_error::deserialize(&mut de).map_err(|e| refuse(format!("{}: {}", e.path(), e.inner())))?;
    de.end().map_err(|e| refuse(e.to_string()))?;
    Ok(value)
}

fn bad(message: String) -> ApiError {
    ApiError::Unprocessable(message)
}

/// The linked device behind a verified key, and its user. An unknown key is 401, a box not
/// linked to an account 403: telemetry is taken from linked boxes only.
async fn linked(app: &App, key: &str) -> Result<(Uuid, Uuid), ApiError> {
    let client = db::client(&app.api).await?;
    let row = client.query_opt("SELECT device_id, user_id FROM minebox_device_owner($1)", &[&key]).await?;
    match row.map(|r| (r.get::<_, Uuid>(0), r.get::<_, Option<Uuid>>(1))) {
        None => Err(ApiError::Unauthorized(
            "the cloud does not know this device key: pair the box with an account first \
             (POST /api/v1/devices/pair/start)"
                .into(),
        )),
        Some((_, None)) => Err(ApiError::Forbidden(
            "this box is not linked to an account: telemetry is taken only from a linked box; pair it again \
             (or turn telemetry off on the box)"
                .into(),
        )),
        Some((device, Some(user))) => Ok((device, user)),
    }
}

/// A coin id as the box names it (`btc`): checked for shape here, looked up in `coins` later.
fn check_coin(coin: &str) -> Result<(), ApiError> {
    if coin.is_empty() || coin.len() > 20 || !coin.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(bad(format!(
            "{:?} is not a coin id: coins are named by their descriptor id, like btc, bch, bsv or xec",
            coin.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

fn check_height(what: &str, height: u64) -> Result<i32, ApiError> {
    if height > MAX_HEIGHT {
        return Err(bad(format!("the {what} {height} is above {MAX_HEIGHT}: no chain MineBox mines is that long")));
    }
    Ok(height as i32)
}

fn check_number(what: &str, value: f64, max: f64) -> Result<f64, ApiError> {
    if !value.is_finite() || value < 0.0 || value > max {
        return Err(bad(format!("the {what} {value} is not between 0 and {max}")));
    }
    Ok(value)
}

/// The `coins` ids of these coin keys; an unknown or retired one is refused, naming the known.
async fn coin_ids(client: &impl deadpool_postgres::GenericClient, keys: &[&str]) -> Result<Vec<i32>, ApiError> {
    let rows = client.query("SELECT coin_key, id FROM coins WHERE is_active ORDER BY coin_key", &[]).await?;
    let known: BTreeMap<String, i32> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    keys.iter()
        .map(|k| {
            known.get(*k).copied().ok_or_else(|| {
                bad(format!(
                    "the coin {k:?} is not one MineBox Cloud knows (known: {})",
                    known.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            })
        })
        .collect()
}

/// The heartbeat, checked: the version, the uptime, each coin once.
fn check_heartbeat(beat: &Heartbeat) -> Result<(), ApiError> {
    if beat.version.trim().is_empty() {
        return Err(bad("the version is empty".into()));
    }
    check_short("version", &beat.version, MAX_VERSION).map_err(|e| bad(e.to_string()))?;
    if beat.uptime_secs > MAX_UPTIME_SECS {
        return Err(bad(format!("the uptime {} s is over ten years", beat.uptime_secs)));
    }
    if beat.coins.len() > MAX_COINS {
        return Err(bad(format!("a heartbeat reports at most {MAX_COINS} coins, not {}", beat.coins.len())));
    }
    for (i, c) in beat.coins.iter().enumerate() {
        check_coin(&c.coin)?;
        if beat.coins[..i].iter().any(|o| o.coin == c.coin) {
            return Err(bad(format!("the coin {} is reported twice", c.coin)));
        }
        check_height("height", c.height)?;
        check_height("header height", c.headers)?;
        check_number("sync progress", c.sync_progress, 1.0)?;
        if let Some(h) = c.hashrate_hs {
            check_number("hashrate (H/s)", h, MAX_HASHRATE_HS)?;
        }
    }
    Ok(())
}

/// What `device_metrics.daemon_status` keeps of a heartbeat: per coin, its state and heights.
fn daemon_status(coins: &[CoinReport]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = coins
        .iter()
        .map(|c| {
            (
                c.coin.clone(),
                serde_json::json!({"state": c.state, "height": c.height, "headers": c.headers,
                                   "sync_progress": c.sync_progress, "hashrate_hs": c.hashrate_hs}),
            )
        })
        .collect();
    serde_json::Value::Object(map).to_string()
}

/// The answer to a telemetry report.
fn accepted(recorded: bool, message: String) -> Response {
    Json(serde_json::json!({"recorded": recorded, "message": message})).into_response()
}

/// POST /api/v1/device/heartbeat (signed, linked boxes only): marks the box seen with its
/// version, replaces its per-coin sync state (coins it no longer reports are dropped) and keeps
/// one `device_metrics` row.
pub async fn heartbeat(State(app): State<Arc<App>>, Signed { key, body }: Signed) -> Result<Response, ApiError> {
    let (device, user) = linked(&app, &key).await?;
    let beat: Heartbeat = payload(&body)?;
    check_heartbeat(&beat)?;
    let mut client = db::client(&app.api).await?;
    let keys: Vec<&str> = beat.coins.iter().map(|c| c.coin.as_str()).collect();
    let ids = coin_ids(&client, &keys).await?;
    let states: Vec<&str> = beat.coins.iter().map(|c| c.state.as_str()).collect();
    let heights: Vec<i32> = beat.coins.iter().map(|c| c.height as i32).collect();
    let headers_: Vec<i32> = beat.coins.iter().map(|c| c.headers as i32).collect();
    let progress: Vec<f64> = beat.coins.iter().map(|c| c.sync_progress).collect();
    let hashrates: Vec<Option<f64>> = beat.coins.iter().map(|c| c.hashrate_hs).collect();
    let uptime = beat.uptime_secs as i64;
    let tx = begin_as(&mut client, &app.context, user).await?;
    tx.execute(
        "UPDATE devices SET last_seen_at = now(), version = $2, updated_at = now() WHERE id = $1",
        &[&device, &beat.version],
    )
    .await?;
    tx.execute("DELETE FROM device_coins WHERE device_id = $1 AND NOT coin_id = ANY($2)", &[&device, &ids]).await?;
    tx.execute(
        "INSERT INTO device_coins (device_id, coin_id, sync_status, sync_state, sync_progress_percent, block_height,
                                   header_height, hashrate_hs, reported_at, updated_at)
         SELECT $1, r.coin, CASE r.state WHEN 'ready' THEN 'synced' WHEN 'down' THEN 'error'
                                         WHEN 'starting' THEN 'pending' ELSE 'syncing' END,
                r.state, round((r.progress * 100)::numeric, 2), r.height, r.headers, r.hashrate, now(), now()
           FROM unnest($2::int[], $3::text[], $4::int[], $5::int[], $6::float8[], $7::float8[])
                AS r (coin, state, height, headers, progress, hashrate)
         ON CONFLICT (device_id, coin_id) DO UPDATE SET
                sync_status = EXCLUDED.sync_status, sync_state = EXCLUDED.sync_state,
                sync_progress_percent = EXCLUDED.sync_progress_percent, block_height = EXCLUDED.block_height,
                header_height = EXCLUDED.header_height, hashrate_hs = EXCLUDED.hashrate_hs,
                reported_at = EXCLUDED.reported_at, updated_at = EXCLUDED.updated_at",
        &[&device, &ids, &states, &heights, &headers_, &progress, &hashrates],
    )
    .await?;
    tx.execute(
        "INSERT INTO device_metrics (device_id, recorded_at, uptime_seconds, daemon_status)
         VALUES ($1, now(), $2, $3::text::jsonb) ON CONFLICT DO NOTHING",
        &[&device, &uptime, &daemon_status(&beat.coins)],
    )
    .await?;
    tx.commit().await?;
    Ok(accepted(true, format!("heartbeat recorded ({} coins)", beat.coins.len())))
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` day, if it is one (the civil-calendar count).
fn day_number(day: &str) -> Option<i64> {
    let b = day.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        day.get(r).filter(|s| s.bytes().all(|c| c.is_ascii_digit()))?.parse().ok()
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&m) || d < 1 || d > days_in[(m - 1) as usize] {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

fn check_daily(stats: &DailyStats) -> Result<(), ApiError> {
    let day = day_number(&stats.day).ok_or_else(|| {
        bad(format!(
            "{:?} is not a day: send the UTC day as YYYY-MM-DD",
            stats.day.chars().take(40).collect::<String>()
        ))
    })?;
    let today = unix_now().div_euclid(86_400);
    if day > today {
        return Err(bad(format!("the day {} is in the future (UTC): send a day's totals once it is over", stats.day)));
    }
    if day < today - MAX_DAYS_BACK {
        return Err(bad(format!("the day {} is more than {MAX_DAYS_BACK} days ago", stats.day)));
    }
    check_coin(&stats.coin)?;
    for (what, n) in [
        ("shares submitted", stats.shares_submitted),
        ("valid shares", stats.shares_valid),
        ("invalid shares", stats.shares_invalid),
    ] {
        if n > MAX_SHARES {
            return Err(bad(format!("{n} {what} in a day is more than {MAX_SHARES}")));
        }
    }
    if stats.blocks_found > MAX_BLOCKS_PER_DAY {
        return Err(bad(format!("{} blocks in a day is more than {MAX_BLOCKS_PER_DAY}", stats.blocks_found)));
    }
    check_number("best difficulty", stats.best_difficulty, MAX_DIFFICULTY)?;
    check_number("average hashrate (H/s)", stats.hashrate_avg_hs, MAX_HASHRATE_HS)?;
    check_number("uptime percent", stats.uptime_percent, 100.0)?;
    Ok(())
}

/// POST /api/v1/device/stats/daily (signed, linked boxes only): one coin's totals for one UTC
/// day; the same day and coin again replaces them (the box re-sends until it is answered).
pub async fn daily(State(app): State<Arc<App>>, Signed { key, body }: Signed) -> Result<Response, ApiError> {
    let (device, user) = linked(&app, &key).await?;
    let s: DailyStats = payload(&body)?;
    check_daily(&s)?;
    let mut client = db::client(&app.api).await?;
    let coin = coin_ids(&client, &[s.coin.as_str()]).await?[0];
    let (submitted, valid, invalid) = (s.shares_submitted as i64, s.shares_valid as i64, s.shares_invalid as i64);
    let blocks = s.blocks_found as i32;
    let tx = begin_as(&mut client, &app.context, user).await?;
    tx.execute(
        "INSERT INTO mining_stats_daily (device_id, coin_id, stat_date, shares_submitted, shares_valid, shares_invalid,
                                         blocks_found, avg_hashrate_ths, uptime_percent, best_difficulty)
         VALUES ($1, $2, $3::text::date, $4, $5, $6, $7, round(($8::float8 / 1e12)::numeric, 4),
                 round($9::float8::numeric, 2), $10)
         ON CONFLICT (device_id, coin_id, stat_date) DO UPDATE SET
                shares_submitted = EXCLUDED.shares_submitted, shares_valid = EXCLUDED.shares_valid,
                shares_invalid = EXCLUDED.shares_invalid, blocks_found = EXCLUDED.blocks_found,
                avg_hashrate_ths = EXCLUDED.avg_hashrate_ths, uptime_percent = EXCLUDED.uptime_percent,
                best_difficulty = EXCLUDED.best_difficulty",
        &[
            &device,
            &coin,
            &s.day,
            &submitted,
            &valid,
            &invalid,
            &blocks,
            &s.hashrate_avg_hs,
            &s.uptime_percent,
            &s.best_difficulty,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(accepted(true, format!("the {} stats of {} are recorded", s.coin, s.day)))
}

fn check_block(b: &BlockFound) -> Result<String, ApiError> {
    check_coin(&b.coin)?;
    check_height("height", b.height)?;
    if b.hash.len() != 64 || !b.hash.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(format!(
            "{:?} is not a block hash: 64 hex digits",
            b.hash.chars().take(80).collect::<String>()
        )));
    }
    if b.reward_sats > MAX_REWARD_SATS {
        return Err(bad(format!("the reward {} sats is more than all the coins there are", b.reward_sats)));
    }
    let now = unix_now();
    if b.found_at < GENESIS_TIME || b.found_at > now + crate::devices::CLOCK_SKEW_SECS {
        return Err(bad(format!(
            "found_at {} is not a time a block was found (seconds since 1970, between the first block and now)",
            b.found_at
        )));
    }
    Ok(b.hash.to_ascii_lowercase())
}

/// POST /api/v1/device/blocks (signed, linked boxes only): a block a miner on the box found.
/// Reporting a block (coin and hash) the cloud has already changes nothing.
pub async fn block(State(app): State<Arc<App>>, Signed { key, body }: Signed) -> Result<Response, ApiError> {
    let (device, user) = linked(&app, &key).await?;
    let b: BlockFound = payload(&body)?;
    let hash = check_block(&b)?;
    let mut client = db::client(&app.api).await?;
    let coin = coin_ids(&client, &[b.coin.as_str()]).await?[0];
    let (height, reward, found_at) = (b.height as i32, b.reward_sats as i64, b.found_at as f64);
    let tx = begin_as(&mut client, &app.context, user).await?;
    let n = tx
        .execute(
            "INSERT INTO blocks (coin_id, device_id, block_hash, block_height, block_reward, discovered_at)
             VALUES ($1, $2, $3, $4, $5::int8::numeric / 100000000, to_timestamp($6::float8))
             ON CONFLICT (coin_id, block_hash) DO NOTHING",
            &[&coin, &device, &hash, &height, &reward, &found_at],
        )
        .await?;
    tx.commit().await?;
    Ok(if n == 1 {
        accepted(true, format!("block {} of {} at height {} recorded", hash, b.coin, b.height))
    } else {
        accepted(false, "this block was recorded already".into())
    })
}

/// GET /api/v1/usage: the seed's billing query for the asking user: snapshot downloads and
/// bytes this calendar month (UTC) against the limits of the plan in effect.
pub async fn usage(State(app): State<Arc<App>>, auth: Authed) -> Result<Response, ApiError> {
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let row = tx
        .query_one(
            "WITH month AS (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS start)
             SELECT e.plan, e.snapshot_downloads_per_month, e.snapshot_bytes_per_month,
                    count(sd.id), coalesce(sum(sd.bytes_downloaded), 0)::int8,
                    to_char(m.start, 'YYYY-MM-DD'), to_char(m.start + interval '1 month', 'YYYY-MM-DD')
               FROM minebox_effective_plan($1) e
               CROSS JOIN month m
               LEFT JOIN snapshot_downloads sd
                      ON sd.user_id = $1 AND sd.started_at >= (m.start AT TIME ZONE 'UTC')
              GROUP BY e.plan, e.snapshot_downloads_per_month, e.snapshot_bytes_per_month, m.start",
            &[&auth.user],
        )
        .await?;
    tx.commit().await?;
    let (plan, max_downloads, max_bytes): (String, Option<i32>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    let (downloads, bytes, from, until): (i64, i64, String, String) = (row.get(3), row.get(4), row.get(5), row.get(6));
    let remaining = |used: i64, limit: Option<i64>| limit.map(|l| (l - used).max(0));
    let over = max_downloads.is_some_and(|l| downloads >= i64::from(l)) || max_bytes.is_some_and(|l| bytes >= l);
    Ok(Json(serde_json::json!({
        "plan": plan,
        "month": {"from": from, "until": until},
        "downloads": {"used": downloads, "limit": max_downloads,
                      "remaining": remaining(downloads, max_downloads.map(i64::from))},
        "bytes": {"used": bytes, "limit": max_bytes, "remaining": remaining(bytes, max_bytes)},
        "message": if over {
            format!("you have reached your {plan} plan's snapshot downloads for this month: it renews on {until}, \
                     or move to a plan with more")
        } else {
            format!("snapshot downloads this month on your {plan} plan (renews on {until})")
        },
    }))
    .into_response())
}

/// GET /api/v1/downloads: the asking user's snapshot downloads this calendar month (UTC), newest
/// first, with the snapshot each was of (coin, network, kind, height) and the box that fetched
/// it (its name while it is still linked to the account; row-level security hides it after).
pub async fn downloads(State(app): State<Arc<App>>, auth: Authed) -> Result<Response, ApiError> {
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let month = tx
        .query_one(
            "SELECT to_char(date_trunc('month', now() AT TIME ZONE 'UTC'), 'YYYY-MM-DD'),
                    to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month', 'YYYY-MM-DD')",
            &[],
        )
        .await?;
    let rows = tx
        .query(
            "SELECT sd.id, c.coin_key, s.network, s.kind, s.block_height,
                    to_char(sd.started_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    to_char(sd.completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                    sd.bytes_downloaded, sd.chunks_downloaded, sd.resumed_count, sd.verification_passed,
                    d.id, d.name
               FROM snapshot_downloads sd
               JOIN snapshots s ON s.id = sd.snapshot_id
               JOIN coins c ON c.id = s.coin_id
               LEFT JOIN devices d ON d.id = sd.device_id
              WHERE sd.user_id = $1
                AND sd.started_at >= (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
              ORDER BY sd.started_at DESC, sd.id",
            &[&auth.user],
        )
        .await?;
    tx.commit().await?;
    let (from, until): (String, String) = (month.get(0), month.get(1));
    let list: Vec<_> = rows
        .iter()
        .map(|r| {
            let (id, coin, network, kind, height): (Uuid, String, String, String, i32) =
                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
            let (started, completed): (String, Option<String>) = (r.get(5), r.get(6));
            let (bytes, chunks, resumed, verified): (i64, i32, i32, Option<bool>) =
                (r.get(7), r.get(8), r.get(9), r.get(10));
            let (device_id, device_name): (Option<Uuid>, Option<String>) = (r.get(11), r.get(12));
            serde_json::json!({
                "id": id, "coin": coin, "network": network, "kind": kind, "height": height,
                "started_at": started, "completed_at": completed, "bytes": bytes, "chunks": chunks,
                "resumed": resumed, "verified": verified,
                "device": device_id.map(|id| serde_json::json!({"id": id, "name": device_name})),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({"month": {"from": from, "until": until}, "downloads": list})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderboardQuery {
    #[serde(default)]
    limit: Option<i32>,
}

/// GET /api/v1/leaderboard/blocks[?limit=N]: the seed's block leaderboard, public. Users are
/// shown by display name only if they chose to be (`PUT /api/v1/leaderboard/visibility`),
/// otherwise by a pseudonym; never by email.
pub async fn leaderboard(
    State(app): State<Arc<App>>,
    query: Result<Query<LeaderboardQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::BadRequest(format!("{}: use ?limit=N (1 to 100)", e.body_text())))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest(format!("limit {limit} is not between 1 and 100")));
    }
    let client = db::client(&app.api).await?;
    let rows = client
        .query(
            "SELECT miner, symbol, blocks_found, total_rewards::text,
                    to_char(last_found_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
               FROM minebox_block_leaderboard($1)",
            &[&limit],
        )
        .await?;
    let entries: Vec<_> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (miner, coin, blocks): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            let (rewards, last): (Option<String>, Option<String>) = (r.get(3), r.get(4));
            serde_json::json!({"rank": i + 1, "miner": miner, "coin": coin, "blocks_found": blocks,
                               "total_rewards": rewards, "last_found_at": last})
        })
        .collect();
    Ok(Json(serde_json::json!({"leaderboard": entries})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Visibility {
    public: bool,
}

/// PUT /api/v1/leaderboard/visibility {"public"}: whether the leaderboard shows the user's
/// display name (true) or a pseudonym (false, the default).
pub async fn visibility(
    State(app): State<Arc<App>>,
    auth: Authed,
    crate::error::Body(req): crate::error::Body<Visibility>,
) -> Result<Response, ApiError> {
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, auth.user).await?;
    let name: Option<String> = tx
        .query_one(
            "UPDATE users SET leaderboard_public = $2, updated_at = now() WHERE id = $1 RETURNING display_name",
            &[&auth.user, &req.public],
        )
        .await?
        .get(0);
    tx.commit().await?;
    let message = match (req.public, name) {
        (true, Some(name)) => format!("the block leaderboard shows you as {name}"),
        (true, None) => {
            "you have no display name: the block leaderboard shows you by a pseudonym until you set one".into()
        }
        (false, _) => "the block leaderboard shows you by a pseudonym".into(),
    };
    Ok(Json(serde_json::json!({"public": req.public, "message": message})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_counted_from_1970_and_impossible_ones_refused() {
        assert_eq!(day_number("1970-01-01"), Some(0));
        assert_eq!(day_number("2000-03-01"), Some(11_017));
        assert_eq!(day_number("2024-02-29"), Some(19_782));
        for bad in ["2023-02-29", "2026-13-01", "2026-00-10", "2026-1-01", "26-01-01x", "2026-01-32", "'; DROP--"] {
            assert_eq!(day_number(bad), None, "{bad}");
        }
    }
}
