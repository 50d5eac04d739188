//! Telemetry the owner opts into (issue 16, point 6): the exact payloads a linked box sends to
//! MineBox Cloud. These structs are the one definition: the box serializes them and the cloud
//! deserializes the same types, refusing any field not named here (`deny_unknown_fields`), so
//! nothing is sent that [`WHAT_IS_SENT`] does not name. Off by default on the box.

use serde::{Deserialize, Serialize};

/// Where a coin's node is, as the box's status page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    Starting,
    Syncing,
    InstallingSnapshot,
    Ready,
    Down,
}

impl SyncState {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Starting => "starting",
            SyncState::Syncing => "syncing",
            SyncState::InstallingSnapshot => "installing_snapshot",
            SyncState::Ready => "ready",
            SyncState::Down => "down",
        }
    }
}

/// One coin's node in a heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoinReport {
    /// The coin's descriptor id (`btc`, `bch`, `bsv`, `xec`).
    pub coin: String,
    /// Blocks the node has validated.
    pub height: u64,
    /// Headers the node knows of.
    pub headers: u64,
    /// The node's own estimate, 0 to 1.
    pub sync_progress: f64,
    pub state: SyncState,
    /// The miners' hashrate on this coin (H/s), if the box mines it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hashrate_hs: Option<f64>,
}

/// `POST /api/v1/device/heartbeat`: sent about once a minute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// MineBox's version on the box.
    pub version: String,
    /// Seconds since the box started.
    pub uptime_secs: u64,
    pub coins: Vec<CoinReport>,
}

/// `POST /api/v1/device/stats/daily`: one coin's mining totals for one UTC day. Sending the
/// same day and coin again replaces the earlier totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DailyStats {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    pub coin: String,
    pub shares_submitted: u64,
    pub shares_valid: u64,
    pub shares_invalid: u64,
    pub blocks_found: u32,
    /// The best share's difficulty that day.
    pub best_difficulty: f64,
    /// The day's average hashrate (H/s).
    pub hashrate_avg_hs: f64,
    /// The share of the day the miners were connected, 0 to 100.
    pub uptime_percent: f64,
}

/// `POST /api/v1/device/blocks`: a block a miner on the box found. Sending it again changes
/// nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockFound {
    pub coin: String,
    pub height: u64,
    /// The block's hash, 64 hex digits.
    pub hash: String,
    /// The coinbase's reward, in satoshis.
    pub reward_sats: u64,
    /// When the box saw its block accepted, seconds since 1970 (UTC).
    pub found_at: i64,
}

/// In words, exactly what the box sends when its owner turns telemetry on: the text for the
/// opt-in on the status page. A test checks it names every field of every payload.
pub const WHAT_IS_SENT: &str = "\
When you turn on telemetry, this box sends MineBox Cloud, signed with its device key, only this:
- About once a minute (heartbeat): MineBox's `version`, the box's `uptime_secs`, and for each \
coin (`coins`): the `coin`, the node's block `height`, the `headers` it knows of, its \
`sync_progress` (0 to 1), its `state` (starting, syncing, installing_snapshot, ready or down) and \
the miners' hashrate on it (`hashrate_hs`).
- Once a day per coin (daily stats): the UTC `day`, the `coin`, the shares submitted, valid and \
invalid (`shares_submitted`, `shares_valid`, `shares_invalid`), the `blocks_found`, the \
`best_difficulty` of a share, the average hashrate (`hashrate_avg_hs`) and the share of the day \
the miners were connected (`uptime_percent`).
- When a miner on the box finds a block: the `coin`, its `height`, its `hash`, the reward in \
satoshis (`reward_sats`) and when it was found (`found_at`).
Nothing else: no addresses, wallet or payout details, worker names, passwords, IP addresses of \
your miners, or files. The cloud also records when it last heard from the box. Turning telemetry \
off stops the sending; unlinking the box deletes what it sent.";

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    out.push(k.clone());
                    keys(v, out);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }

    #[test]
    fn the_words_name_every_field_of_every_payload() {
        let heartbeat = Heartbeat {
            version: "0.1.0".into(),
            uptime_secs: 1,
            coins: vec![CoinReport {
                coin: "btc".into(),
                height: 1,
                headers: 1,
                sync_progress: 1.0,
                state: SyncState::Ready,
                hashrate_hs: Some(1.0),
            }],
        };
        let stats = DailyStats {
            day: "2026-12-01".into(),
            coin: "btc".into(),
            shares_submitted: 1,
            shares_valid: 1,
            shares_invalid: 0,
            blocks_found: 0,
            best_difficulty: 1.0,
            hashrate_avg_hs: 1.0,
            uptime_percent: 100.0,
        };
        let block = BlockFound { coin: "btc".into(), height: 1, hash: "00".repeat(32), reward_sats: 1, found_at: 1 };
        let mut fields = Vec::new();
        for payload in [
            serde_json::to_value(&heartbeat).unwrap(),
            serde_json::to_value(&stats).unwrap(),
            serde_json::to_value(&block).unwrap(),
        ] {
            keys(&payload, &mut fields);
        }
        assert!(fields.len() >= 20, "{fields:?}");
        for field in fields {
            assert!(WHAT_IS_SENT.contains(&format!("`{field}`")), "the opt-in text does not name `{field}`");
        }
        for state in
            [SyncState::Starting, SyncState::Syncing, SyncState::InstallingSnapshot, SyncState::Ready, SyncState::Down]
        {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert!(WHAT_IS_SENT.contains(state.as_str()), "{state:?}");
        }
    }

    #[test]
    fn a_field_the_words_do_not_name_is_refused_when_read() {
        let extra = r#"{"version":"0.1.0","uptime_secs":1,"coins":[],"wallet":"x"}"#;
        assert!(serde_json::from_str::<Heartbeat>(extra).is_err());
        let negative = r#"{"version":"0.1.0","uptime_secs":-1,"coins":[]}"#;
        assert!(serde_json::from_str::<Heartbeat>(negative).is_err());
    }
}
