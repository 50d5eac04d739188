//! The PPLNS engine's figures (issue 17 point 4): the coinbase's size and weight with 1 to
//! 250 recipients against the room Bitcoin Core leaves it, the time to build a PPLNS job's
//! payout (split + coinbase) with 1, 10 and 100 recipients, and the window's bookkeeping cost
//! per share beside the share check it is added to.
//!
//! Everything runs on one thread, so shares/s are per core. No node is needed: the template
//! is a regtest-shaped one with a witness commitment (the coinbase's size does not depend on
//! the block's other transactions).
//!
//! `cargo bench -p minebox-stratum --bench pplns` (about 15 s; `-- --secs N` per timed phase)

use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, WitnessProgram, WitnessVersion};
use minebox_stratum::job::{CoinbaseRules, Job, Template, TemplateParts};
use minebox_stratum::pplns::{self, coinbase, window, Carry, CoinbaseBudget, ShareWindow, SplitRules, UserId};
use minebox_stratum::protocol::Submit;
use minebox_stratum::share;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn script(kind: &str, i: u32) -> ScriptBuf {
    let mut h = [0x33u8; 32];
    h[..4].copy_from_slice(&i.to_le_bytes());
    let kind = if kind == "mixed" { ["p2wpkh", "p2tr", "p2pkh"][i as usize % 3] } else { kind };
    match kind {
        "p2wpkh" => ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(h[..20].try_into().unwrap())),
        "p2tr" => ScriptBuf::new_witness_program(&WitnessProgram::new(WitnessVersion::V1, &h).unwrap()),
        _ => ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(h[..20].try_into().unwrap())),
    }
}

fn template() -> Arc<Template> {
    let parts = TemplateParts {
        height: 880_000,
        prev_hash: BlockHash::from_byte_array([7; 32]),
        version: 0x2000_0000,
        bits: CompactTarget::from_consensus(0x207fffff),
        min_time: 1_700_000_000,
        cur_time: 1_700_000_000,
        coinbase_value: Amount::from_sat(312_500_000 + 9_876_543),
        witness_commitment: Some(
            ScriptBuf::from_hex("6a24aa21a9ede2f61c3f71d1defd3fa999dfa36953755c690689799962b48bebd836974e8cf9")
                .unwrap(),
        ),
        transactions: vec![],
    };
    Arc::new(Template::new(1, parts, true))
}

fn rules() -> CoinbaseRules {
    CoinbaseRules { tag: b"/MineBox/".to_vec(), extranonce2_len: 8, min_tx_size: 0, segwit: true }
}

struct Pool {
    window: ShareWindow,
    payees: BTreeMap<UserId, ScriptBuf>,
}

fn pool(users: u32, kind: &str) -> Pool {
    let mut window = ShareWindow::new(u128::MAX / 4, window::DEFAULT_MAX_ENTRIES);
    for i in 0..users * 10 {
        window.append(UserId(i % users), window::work_of(1000.0 + i as f64).unwrap());
    }
    Pool { window, payees: (0..users).map(|i| (UserId(i), script(kind, i))).collect() }
}

/// Median and p99 of `f`'s duration over `runs`.
fn time(runs: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    let mut d: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    d.sort();
    (d[runs / 2], d[runs * 99 / 100])
}

/// Calls of `f` per second over `secs`.
fn rate(secs: f64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            f(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args
        .iter()
        .position(|a| a == "--secs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let t = template();
    let budget = CoinbaseBudget::core_default();
    let roomy = CoinbaseBudget::left_by(&t);

    println!("PPLNS coinbase size (segwit, tag /MineBox/, extranonce 4+8, witness commitment)");
    println!(
        "Core's default room for a coinbase in a full template: {} WU, {} sigop cost -> default max outputs {}",
        budget.weight,
        budget.sigops_cost,
        budget.max_outputs()
    );
    println!("| recipients | outputs | bytes | weight WU | vbytes | sigop cost | fits Core's default room |");
    println!("|---|---|---|---|---|---|---|");
    for kind in ["p2wpkh", "p2tr", "p2pkh", "mixed"] {
        for n in [1u32, 10, 39, 100, 250] {
            let p = pool(n, kind);
            let rules_n = SplitRules { fee: None, max_outputs: n as usize };
            let split =
                pplns::split::split(t.coinbase_value, &p.window.weights(), &Carry::default(), &p.payees, &rules_n)
                    .unwrap();
            let cb = match coinbase::build(&t, &split, &rules(), roomy) {
                Ok(cb) => cb,
                Err(e) => {
                    println!("| {n} {kind} | - | - | - | - | - | no: {e} |");
                    continue;
                }
            };
            let size = coinbase::measure(&cb);
            let fits = size.weight.to_wu() <= budget.weight && size.sigops_cost <= budget.sigops_cost;
            println!(
                "| {n} {kind} | {} | {} | {} | {} | {} | {} |",
                split.payouts.len() + 1,
                size.bytes,
                size.weight.to_wu(),
                size.weight.to_vbytes_ceil(),
                size.sigops_cost,
                if fits { "yes" } else { "no" }
            );
        }
    }

    println!();
    println!("Time to build a PPLNS job's payout (window weights -> split -> coinbase), mixed scripts");
    let solo = time(2000, || {
        black_box(Job::new(t.clone(), script("p2wpkh", 1), &rules()).unwrap());
    });
    println!("| recipients | median | p99 |");
    println!("|---|---|---|");
    println!("| solo job (Job::new, 1 output, for comparison) | {:?} | {:?} |", solo.0, solo.1);
    for n in [1u32, 10, 100] {
        let p = pool(n, "mixed");
        let split_rules = SplitRules { fee: None, max_outputs: roomy.max_outputs() };
        let (median, p99) = time(2000, || {
            black_box(pplns::work(&t, &p.window, &Carry::default(), &p.payees, &split_rules, &rules(), roomy).unwrap());
        });
        println!("| {n} | {median:?} | {p99:?} |");
    }

    println!();
    println!("Window bookkeeping, shares/s on one core ({secs} s each)");
    println!("| case | appends/s |");
    println!("|---|---|");
    for users in [1u32, 10, 100] {
        // Full window: every append also expires the oldest work.
        let mut w = ShareWindow::new(window::work_of(1e6).unwrap(), window::DEFAULT_MAX_ENTRIES);
        let work = window::work_of(1000.0).unwrap();
        let r = rate(secs, |n| w.append(UserId((n % users as u64) as u32), black_box(work)));
        println!("| {users} users round robin, window full (1000 shares), each append expires one | {r:.0} |");
    }
    for users in [10u32, 100] {
        // A window far larger than the entries bound: the oldest part is a per-user summary.
        let mut w = ShareWindow::new(window::work_of(1e9).unwrap(), 4096);
        let work = window::work_of(1000.0).unwrap();
        let r = rate(secs, |n| w.append(UserId((n % users as u64) as u32), black_box(work)));
        println!(
            "| {users} users, 1e6-share window folded into 4096 runs + summary (expiry pro rata) | {r:.0} (entries {}) |",
            w.entries()
        );
    }

    println!();
    println!("Share check (share::hash_submission) with and without a window append, one core");
    let job = Job::new(t.clone(), script("p2wpkh", 1), &rules()).unwrap();
    let mut submit = Submit {
        worker: "w".into(),
        job_id: "1".into(),
        extranonce2: vec![0; 8],
        ntime: 1_700_000_000,
        nonce: 0,
        version_bits: None,
    };
    let before = rate(secs, |n| {
        submit.nonce = n as u32;
        black_box(share::hash_submission(&job, &[1, 2, 3, 4], &submit, 0, 1_700_000_000).unwrap());
    });
    let mut w = ShareWindow::new(window::work_of(1e6).unwrap(), window::DEFAULT_MAX_ENTRIES);
    let work = window::work_of(1000.0).unwrap();
    let after = rate(secs, |n| {
        submit.nonce = n as u32;
        black_box(share::hash_submission(&job, &[1, 2, 3, 4], &submit, 0, 1_700_000_000).unwrap());
        w.append(UserId((n % 100) as u32), work);
    });
    // As the pool port runs it: the desk's record_share (difficulty checked, mutex, append).
    // A network difficulty of 2^19 (bits 0x1a1fffe0): with the default factor 2, a window of
    // ~1000 shares of difficulty 1000, full after the warm-up, as in the append case above.
    let desk = desk();
    let mut parts_desk = (*template()).clone();
    parts_desk.bits = CompactTarget::from_consensus(0x1a1f_ffe0);
    parts_desk.target = bitcoin::Target::from_compact(parts_desk.bits);
    let _ = desk.job_for(&Arc::new(parts_desk), &script("p2wpkh", 1), &minebox_stratum::job::JobBook::new(rules()));
    for n in 0..2000u32 {
        desk.record_share(UserId(n % 100), 1000.0);
    }
    let with_desk = rate(secs, |n| {
        submit.nonce = n as u32;
        black_box(share::hash_submission(&job, &[1, 2, 3, 4], &submit, 0, 1_700_000_000).unwrap());
        desk.record_share(UserId((n % 100) as u32), 1000.0);
    });
    println!("| path | shares/s |");
    println!("|---|---|");
    println!("| hash_submission | {before:.0} |");
    println!("| hash_submission + window append (100 users, full window) | {after:.0} |");
    println!(
        "| hash_submission + PplnsDesk::record_share (the pool port's path: check, lock, append) | {with_desk:.0} |"
    );
    println!("after/before: {:.3}; pool port/before: {:.3}", after / before, with_desk / before);
}

/// A pool desk as the service starts one (no payees file: shares are counted all the same).
fn desk() -> minebox_stratum::pplns::desk::PplnsDesk {
    let registry = minebox_coin::Registry::embedded();
    let settings = minebox_settings::Settings::from_user_text(
        "[coins.btc]\nenabled = true\nnetwork = \"regtest\"\n\
         payout_address = \"bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080\"\n[coins.btc.pool]\nport = 3334\n",
        &registry,
    )
    .unwrap();
    let pool = settings.coins["btc"].pool.clone().unwrap();
    let config = minebox_stratum::pplns::desk::PoolModeConfig {
        coin: "btc".into(),
        network: "regtest".into(),
        listen: "127.0.0.1:3334".parse().unwrap(),
        settings: pool,
        payees_file: std::env::temp_dir().join("minebox-bench-no-payees.toml"),
        box_settings: Arc::new(settings),
        save_every: minebox_stratum::service::PPLNS_SNAPSHOT_EVERY,
    };
    minebox_stratum::pplns::desk::PplnsDesk::new(&config, None)
}
