//! A whole stratum `Session` (crates/daemons/stratum/src/session.rs) fed message sequences.
//!
//! Each input is a server configuration that the settings crate accepts (difficulty bounds,
//! share rate, payout policy; the owner's payout_address is a regtest address) and a sequence
//! of steps: miner messages built from structured parts
//! (subscribe, authorize, configure, submit for a job it was sent, suggest_difficulty, ...)
//! rendered to JSON lines and parsed as the connection does, raw garbage lines, new
//! templates from the node, and the clock moving on. The session is pure, so this is the
//! whole protocol state machine without sockets.
//!
//! Contract: never panics; every line it sends is one line of JSON, at most a few per
//! input; the difficulty (its own and every mining.set_difficulty) is always a finite
//! positive number within the configured bounds (up to vardiff's rounding); a submit is
//! answered exactly once and counted exactly once (accepted or rejected); a found block is
//! only reported with `true`; closing leaves no worker counted as connected.
#![no_main]

use arbitrary::Arbitrary;
use bitcoin::hashes::Hash;
use bitcoin::{Address, Amount, BlockHash, CompactTarget, Network, PubkeyHash, ScriptBuf, ScriptHash, WPubkeyHash};
use libfuzzer_sys::fuzz_target;
use minebox_coin::Registry as Coins;
use minebox_settings::{CoinSettings, Settings, EMBEDDED_DEFAULTS};
use minebox_stratum::job::{CoinbaseRules, JobBook, Template, TemplateParts};
use minebox_stratum::payout::WithOwner;
use minebox_stratum::protocol::parse_line;
use minebox_stratum::session::{PoolContext, Session};
use minebox_stratum::stats::Registry;
use minebox_stratum::vardiff::VardiffConfig;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Steps per input: enough for every state and a few retargets, small enough to stay fast.
const MAX_STEPS: usize = 64;
/// Lines one input may produce (a reply, a difficulty, a job).
const MAX_LINES_PER_STEP: usize = 4;
/// A mining.notify with a few transactions is well under this.
const MAX_LINE_LEN: usize = 8 * 1024;

#[derive(Arbitrary, Debug)]
struct Input {
    config: Config,
    extranonce1: [u8; 4],
    steps: Vec<Step>,
}

/// The coin's [coins.btc] values in the user's settings file.
#[derive(Arbitrary, Debug)]
struct Config {
    start: Option<f64>,
    min: Option<f64>,
    max: Option<f64>,
    shares_per_minute: Option<f64>,
    /// payout_policy = "owner" (else the default, "miner").
    owner_policy: bool,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Send(Msg),
    Garbage(String),
    Template { block: u8, bits: Bits, txs: u8, segwit_commitment: bool, value_sat: u32 },
    Wait { secs: u16 },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Bits {
    /// About half of all hashes are blocks.
    Regtest,
    /// No share is ever a block.
    Mainnet,
}

#[derive(Arbitrary, Debug)]
enum Msg {
    Subscribe {
        user_agent: Option<String>,
        session: Option<String>,
    },
    Authorize {
        address: Payee,
        rig: Rig,
    },
    Configure {
        extensions: Vec<Extension>,
        mask: Option<u32>,
        min_bits: Option<u8>,
        min_difficulty: Option<Number>,
    },
    SuggestDifficulty(Number),
    ExtranonceSubscribe,
    Submit {
        worker: WorkerPick,
        job: JobPick,
        extranonce2: Extranonce2,
        ntime_delta: i16,
        nonce: u32,
        version_bits: Option<u32>,
    },
    Other {
        method: String,
        params: Vec<String>,
    },
}

#[derive(Arbitrary, Debug)]
enum Payee {
    /// One of a few valid regtest addresses (every kind).
    Valid(u8),
    /// A mainnet address: the wrong network.
    Mainnet,
    /// A bare worker name (a Bitaxe set up without an address): mines to the owner.
    Bare(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Rig {
    None,
    Named(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Extension {
    VersionRolling,
    MinimumDifficulty,
    SubscribeExtranonce,
    Info,
    Any(String),
}

#[derive(Arbitrary, Debug, Clone)]
enum Number {
    Float(f64),
    Int(u64),
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum WorkerPick {
    /// The n-th authorized worker name.
    Authorized(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum JobPick {
    /// The n-th most recent job id sent.
    Recent(u8),
    Any(String),
}

#[derive(Arbitrary, Debug)]
enum Extranonce2 {
    /// The length the server asked for; the value from these bytes.
    Right(u64),
    Bytes(Vec<u8>),
    Text(String),
}

struct Fixture {
    coins: Coins,
    addresses: Vec<String>,
    mainnet: String,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let addresses = vec![
            Address::p2wpkh(&key(), Network::Regtest).to_string(),
            Address::p2pkh(PubkeyHash::from_byte_array([7; 20]), Network::Regtest).to_string(),
            Address::p2sh_from_hash(ScriptHash::from_byte_array([8; 20]), Network::Regtest).to_string(),
            Address::from_script(&ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([9; 20])), Network::Regtest)
                .expect("p2wpkh")
                .to_string(),
            "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080".to_string(),
        ];
        Fixture { coins: Coins::embedded(), addresses, mainnet: "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4".into() }
    })
}

fn key() -> bitcoin::CompressedPublicKey {
    // The generator point: a valid compressed key.
    let g = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    bitcoin::CompressedPublicKey::from_slice(&hex_bytes(g)).expect("generator point")
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

/// The coin's settings, if the settings crate accepts these values at all.
fn settings(c: &Config, payout: &str) -> Option<CoinSettings> {
    let mut user = format!("[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{payout}\"\n");
    if c.owner_policy {
        user.push_str("payout_policy = \"owner\"\n");
    }
    let toml_f64 = |f: f64| {
        if f.is_nan() {
            "nan".to_string()
        } else if f.is_infinite() {
            if f > 0.0 {
                "inf".into()
            } else {
                "-inf".into()
            }
        } else {
            format!("{f:e}")
        }
    };
    for (key, v) in [
        ("start_difficulty", c.start),
        ("min_difficulty", c.min),
        ("max_difficulty", c.max),
        ("shares_per_minute", c.shares_per_minute),
    ] {
        if let Some(v) = v {
            user.push_str(&format!("{key} = {}\n", toml_f64(v)));
        }
    }
    let settings =
        Settings::from_texts("minebox.toml", &user, "defaults.toml", EMBEDDED_DEFAULTS, &fixture().coins).ok()?;
    settings.coins.get("btc").cloned()
}

fn template(id: u64, block: u8, bits: Bits, txs: u8, commitment: bool, value_sat: u32, clean: bool) -> Arc<Template> {
    let transactions = (0..txs % 4).map(|i| ([i.wrapping_add(block); 32], vec![i; 60])).collect();
    let mut witness_commitment = None;
    if commitment {
        let mut script = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
        script.extend_from_slice(&[block; 32]);
        witness_commitment = Some(ScriptBuf::from_bytes(script));
    }
    let parts = TemplateParts {
        height: 100 + block as u64,
        prev_hash: BlockHash::from_byte_array([block; 32]),
        version: 0x2000_0000,
        bits: CompactTarget::from_consensus(match bits {
            Bits::Regtest => 0x207f_ffff,
            Bits::Mainnet => 0x1703_4219,
        }),
        min_time: 1_296_688_603,
        cur_time: 1_700_000_000,
        coinbase_value: Amount::from_sat(value_sat as u64 * 10),
        witness_commitment,
        transactions,
    };
    Arc::new(Template::new(id, parts, clean))
}

fn number(n: &Number) -> Value {
    match n {
        Number::Float(f) => serde_json::Number::from_f64(*f).map(Value::Number).unwrap_or(Value::Null),
        Number::Int(i) => json!(i),
        Number::Text(s) => json!(s),
    }
}

/// What the session was told and sent so far, as a miner would see it.
#[derive(Default)]
struct Miner {
    workers: Vec<String>,
    jobs: Vec<String>,
    extranonce2_len: usize,
}

fn check_lines(lines: &[String], min: f64, max: f64, miner: &mut Miner) {
    assert!(lines.len() <= MAX_LINES_PER_STEP, "{} lines for one input: {lines:?}", lines.len());
    for l in lines {
        assert!(l.len() <= MAX_LINE_LEN, "a {} byte line", l.len());
        assert!(!l.contains('\n'), "a line with a newline: {l:?}");
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        match v["method"].as_str() {
            Some("mining.set_difficulty") => {
                let d = v["params"][0].as_f64().unwrap_or_else(|| panic!("set_difficulty without a number: {l}"));
                check_difficulty(d, min, max);
            }
            Some("mining.notify") => {
                miner.jobs.push(v["params"][0].as_str().expect("job id").to_string());
                if miner.jobs.len() > 16 {
                    miner.jobs.remove(0);
                }
            }
            _ => {}
        }
    }
}

fn check_difficulty(d: f64, min: f64, max: f64) {
    assert!(d.is_finite() && d > 0.0, "difficulty {d} (configured {min}..{max})");
    // Vardiff rounds to whole numbers above 1 and three significant digits below.
    let slack = if d >= 1.0 { 0.5 } else { d * 0.006 };
    assert!(d >= min - slack && d <= max + slack, "difficulty {d} outside the configured {min}..{max}");
}

fuzz_target!(|input: Input| {
    let f = fixture();
    let Some(btc) = settings(&input.config, &f.addresses[0]) else { return };
    // As the stratum server builds them in settings mode (crates/daemons/stratum/src/main.rs).
    let vardiff = VardiffConfig {
        shares_per_minute: btc.shares_per_minute,
        min: btc.min_difficulty,
        max: btc.max_difficulty,
        start: btc.start_difficulty,
        ..VardiffConfig::default()
    };
    let network = f.coins.get("btc").expect("btc").network("regtest").expect("regtest").clone();
    let payouts =
        WithOwner::new(network, &btc.payout_address, btc.payout_policy).expect("the settings' payout address");
    let (min, max) = (vardiff.min, vardiff.max);
    let ctx = PoolContext {
        coin: "btc".into(),
        payouts: Box::new(payouts),
        jobs: JobBook::new(CoinbaseRules {
            tag: b"/MineBox/".to_vec(),
            extranonce2_len: 8,
            min_tx_size: 0,
            segwit: true,
        }),
        stats: Arc::new(Registry::new()),
        vardiff,
        version_mask: 0x1fff_e000,
        // The solo port: the pool port's logins need a payees file (tests/pool_mode.rs).
        pplns: None,
        // The share history's buffer: bounded, it counts what it drops once full.
        shares: Default::default(),
    };
    let start = Instant::now();
    let mut now = start;
    let unix = |now: Instant| 1_700_000_000.0 + now.duration_since(start).as_secs_f64();
    let mut session = Session::new(input.extranonce1, &ctx, now);
    check_difficulty(session.difficulty(), min, max);
    let mut template_id = 1;
    let mut current = Some(template(template_id, 0, Bits::Regtest, 0, true, 5_000_000, true));
    let mut miner = Miner { extranonce2_len: 8, ..Default::default() };
    for (n, step) in input.steps.into_iter().take(MAX_STEPS).enumerate() {
        let id = json!(n);
        let line = match step {
            Step::Wait { secs } => {
                now += Duration::from_secs(secs as u64);
                continue;
            }
            Step::Template { block, bits, txs, segwit_commitment, value_sat } => {
                template_id += 1;
                let clean = current.as_ref().is_none_or(|t| t.prev_hash != BlockHash::from_byte_array([block; 32]));
                let t = template(template_id, block, bits, txs, segwit_commitment, value_sat, clean);
                let out = session.on_template(&ctx, &t, now);
                check_lines(&out.lines, min, max, &mut miner);
                assert!(out.found.is_none());
                current = Some(t);
                check_difficulty(session.difficulty(), min, max);
                continue;
            }
            Step::Garbage(s) => s,
            Step::Send(msg) => {
                let (method, params) = match msg {
                    Msg::Subscribe { user_agent, session } => ("mining.subscribe".into(), json!([user_agent, session])),
                    Msg::Authorize { address, rig } => {
                        let address = match address {
                            Payee::Valid(i) => f.addresses[i as usize % f.addresses.len()].clone(),
                            Payee::Mainnet => f.mainnet.clone(),
                            Payee::Bare(i) => format!("bitaxe{}", i % 20),
                            Payee::Any(s) => s,
                        };
                        let user = match rig {
                            Rig::None => address,
                            Rig::Named(i) => format!("{address}.rig{}", i % 20),
                            Rig::Any(r) => format!("{address}.{r}"),
                        };
                        ("mining.authorize".to_string(), json!([user, "x"]))
                    }
                    Msg::Configure { extensions, mask, min_bits, min_difficulty } => {
                        let names: Vec<String> = extensions
                            .into_iter()
                            .map(|e| match e {
                                Extension::VersionRolling => "version-rolling".to_string(),
                                Extension::MinimumDifficulty => "minimum-difficulty".into(),
                                Extension::SubscribeExtranonce => "subscribe-extranonce".into(),
                                Extension::Info => "info".into(),
                                Extension::Any(s) => s,
                            })
                            .collect();
                        let mut p = serde_json::Map::new();
                        if let Some(m) = mask {
                            p.insert("version-rolling.mask".into(), json!(format!("{m:08x}")));
                        }
                        if let Some(b) = min_bits {
                            p.insert("version-rolling.min-bit-count".into(), json!(b));
                        }
                        if let Some(d) = &min_difficulty {
                            p.insert("minimum-difficulty.value".into(), number(d));
                        }
                        ("mining.configure".to_string(), json!([names, p]))
                    }
                    Msg::SuggestDifficulty(d) => ("mining.suggest_difficulty".to_string(), json!([number(&d)])),
                    Msg::ExtranonceSubscribe => ("mining.extranonce.subscribe".to_string(), json!([])),
                    Msg::Submit { worker, job, extranonce2, ntime_delta, nonce, version_bits } => {
                        let worker = match worker {
                            WorkerPick::Authorized(i) if !miner.workers.is_empty() => {
                                miner.workers[i as usize % miner.workers.len()].clone()
                            }
                            WorkerPick::Authorized(_) => "nobody".into(),
                            WorkerPick::Any(s) => s,
                        };
                        let job = match job {
                            JobPick::Recent(i) if !miner.jobs.is_empty() => {
                                miner.jobs[miner.jobs.len() - 1 - (i as usize % miner.jobs.len())].clone()
                            }
                            JobPick::Recent(_) => "1".into(),
                            JobPick::Any(s) => s,
                        };
                        let extranonce2 = match extranonce2 {
                            Extranonce2::Right(v) => {
                                let hex: String = v.to_be_bytes().iter().map(|b| format!("{b:02x}")).collect();
                                hex[16 - 2 * miner.extranonce2_len.min(8)..].to_string()
                            }
                            Extranonce2::Bytes(b) => b.iter().map(|b| format!("{b:02x}")).collect(),
                            Extranonce2::Text(s) => s,
                        };
                        let ntime = (1_700_000_000i64 + ntime_delta as i64) as u32;
                        let mut params = vec![
                            json!(worker),
                            json!(job),
                            json!(extranonce2),
                            json!(format!("{ntime:08x}")),
                            json!(format!("{nonce:08x}")),
                        ];
                        if let Some(v) = version_bits {
                            params.push(json!(format!("{v:08x}")));
                        }
                        ("mining.submit".to_string(), Value::Array(params))
                    }
                    Msg::Other { method, params } => (method, json!(params)),
                };
                json!({"id": id, "method": method, "params": params}).to_string()
            }
        };
        // As the connection does: trimmed UTF-8 lines; what does not parse is answered
        // without reaching the session.
        let Ok((req_id, request)) = parse_line(line.trim()) else { continue };
        let is_submit = matches!(request, minebox_stratum::protocol::Request::Submit(_));
        let authorizing = match &request {
            minebox_stratum::protocol::Request::Authorize { user } => Some(user.clone()),
            _ => None,
        };
        let counted = session.accepted + session.rejected;
        let accepted = session.accepted;
        let out = session.handle(&ctx, &req_id, request, current.as_ref(), now, unix(now));
        assert!(!out.lines.is_empty(), "no answer to a request");
        let reply: Value = serde_json::from_str(&out.lines[0]).expect("reply is JSON");
        // A float anywhere in the id may not round-trip bit for bit through serde_json.
        if !has_float(&req_id) {
            assert_eq!(reply["id"], req_id, "the first line is not the reply: {:?}", out.lines);
        }
        if is_submit {
            assert_eq!(session.accepted + session.rejected, counted + 1, "a submit not counted exactly once");
            let ok = reply["result"] == Value::Bool(true);
            assert_eq!(ok, session.accepted == accepted + 1, "reply {reply} vs the accepted count");
            assert!(out.found.is_none() || ok, "a block reported for a refused share");
        } else {
            assert!(out.found.is_none());
        }
        if let Some(user) = authorizing {
            if reply["result"] == Value::Bool(true) && !miner.workers.contains(&user) {
                miner.workers.push(user);
            }
        }
        check_lines(&out.lines[1..], min, max, &mut miner);
        check_difficulty(session.difficulty(), min, max);
        assert!(session.worker_names().count() <= 16);
        assert!(session.best_share.is_finite() || session.best_share == 0.0);
    }
    session.close();
    for w in ctx.stats.snapshot() {
        assert_eq!(w.connections, 0, "worker {} still counted as connected after close", w.worker);
    }
});

fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}
