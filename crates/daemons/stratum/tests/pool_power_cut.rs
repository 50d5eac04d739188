//! Pool mode (PPLNS) across a power cut: the real `minebox-stratum` binary in settings mode
//! (`[coins.btc.pool]`, a `pool-payees.toml` of two users) on a real Bitcoin Core regtest
//! node, SIGKILLed (nothing after its last commit survives) and started again on the same
//! database. docs/stratum.md ("Pool mode", persistence) promises: a power cut loses at most
//! the window's shares since its last save, never a recorded block, its payout rows or the
//! carry committed with it. Checked here:
//!
//! - after each kill the SQLite file passes `PRAGMA integrity_check`;
//! - every block and payout row recorded before the kill is there, unchanged, after the
//!   restart; the carry is what the last pool block committed; the restored window is the
//!   last saved snapshot (the test prints the shares lost, those accepted after it);
//! - the next pool block's coinbase pays the split this test computes by itself (integer
//!   arithmetic from the shares it had accepted and the carry, as tests/pool_mode.rs does),
//!   and Core accepts it;
//! - a damaged window snapshot (a truncated blob; a value that is not a blob at all) is
//!   refused with a log line, and the server starts with an empty window and the carry kept:
//!   a miner's job then pays its own user, never a split read from garbage.
//!
//! The settings' lowest share difficulty (1e-9) is above regtest's network difficulty
//! (4.7e-10): every accepted pool share is a block (as in tests/e2e/tests/status_pool.rs).
//! So the moment tested first is the one right after a pool block, whose transaction saves
//! the window (no wait for the 60 s periodic save), and a share is lost only when its block
//! was not a pool block: the first share on an empty window, whose job pays the finder's own
//! user (a solo block: recorded, but no pool transaction saves the window with it). That
//! share is also the one the periodic save alone writes, which the second test checks with
//! `--pplns-save-secs=1`.

mod common;

use bitcoin::hashes::Hash;
use common::{regtest_addresses, Raw};
use minebox_api::stratum::{PoolPayout, PoolStatus};
use minebox_regtest::Core;
use minebox_simminer::work::{difficulty_target, hash_header, meets, Job};
use minebox_stratum::pplns::desk::codec;
use minebox_test_support::free_port;
use rusqlite::OptionalExtension;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Every pool share is asked for this (min = start = max): the settings' lowest.
const SHARE_DIFFICULTY: f64 = 1e-9;
/// `--pplns-save-secs` as on the box: a window reaches the disk with a pool block's
/// transaction long before the periodic save.
const BOX_SAVE_SECS: u64 = 60;
/// One output: the user owed less is carried, so a carry exists to lose or keep.
const MAX_OUTPUTS: usize = 1;
const ALICE: u32 = 1;
const BOB: u32 = 2;

/// (payee id, user, address, script hex) of the two registered users.
fn users() -> Vec<(u32, &'static str, String, String)> {
    let a = regtest_addresses();
    vec![(ALICE, "alice", a[2].0.clone(), a[2].1.to_hex_string()), (BOB, "bob", a[4].0.clone(), a[4].1.to_hex_string())]
}

fn user(id: u32) -> (u32, &'static str, String, String) {
    users().into_iter().find(|u| u.0 == id).unwrap()
}

fn write_payees(dir: &Path) {
    let mut text = String::new();
    for (id, name, address, _) in users() {
        text += &format!("[[coins.btc]]\nid = {id}\nuser = \"{name}\"\naddress = \"{address}\"\n");
    }
    std::fs::write(dir.join(minebox_settings::payees::FILE_NAME), text).unwrap();
}

/// The binary as the box runs it, killed when dropped.
struct Server {
    child: tokio::process::Child,
    pool: SocketAddr,
    api: SocketAddr,
}

/// Writes the settings file (new ports each time) and starts the binary on `dir`'s database,
/// saving a changed PPLNS window every `save_secs`;
/// returns once its pool port and API answer. The log is appended to `stratum.log`.
async fn start(core: &Core, dir: &Path, save_secs: u64) -> Server {
    let (stratum_port, pool_port, api_port) = (free_port(), free_port(), free_port());
    let cookie = dir.join("btc.cookie");
    std::fs::write(&cookie, format!("{}:{}", core.rpc_user(), core.rpc_password())).unwrap();
    let zmq_port: u16 = core.zmq_endpoint().rsplit(':').next().unwrap().parse().unwrap();
    let settings = format!(
        r#"
[paths]
state = "{d}/state.db"
[stratum]
api = "127.0.0.1:{api_port}"
[supervisor]
api = "127.0.0.1:{sup}"
[coins.btc]
enabled = true
network = "regtest"
payout_address = "{owner}"
stratum_port = {stratum_port}
node = "external"
rpc_host = "127.0.0.1"
rpc_port = {rpc}
rpc_cookie = "{cookie}"
zmq_port = {zmq_port}
[coins.btc.pool]
port = {pool_port}
window_factor = 100.0
max_outputs = {MAX_OUTPUTS}
start_difficulty = {SHARE_DIFFICULTY:e}
min_difficulty = {SHARE_DIFFICULTY:e}
max_difficulty = {SHARE_DIFFICULTY:e}
"#,
        d = dir.display(),
        sup = free_port(),
        owner = user(ALICE).2,
        rpc = core.rpc_port(),
        cookie = cookie.display(),
    );
    let path = dir.join("minebox.toml");
    std::fs::write(&path, settings).unwrap();
    let log_path = dir.join("stratum.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minebox-stratum"))
        .arg("--config")
        .arg(&path)
        .args(["--bind", "127.0.0.1", "--block-poll-ms", "200"])
        .arg(format!("--pplns-save-secs={save_secs}"))
        .env("RUST_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("the stratum binary starts");
    let (pool, api): (SocketAddr, SocketAddr) =
        (format!("127.0.0.1:{pool_port}").parse().unwrap(), format!("127.0.0.1:{api_port}").parse().unwrap());
    let started = Instant::now();
    for addr in [pool, api] {
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("stratum exited with {status}: {}", std::fs::read_to_string(&log_path).unwrap());
            }
            assert!(started.elapsed() < Duration::from_secs(60), "stratum did not listen on {addr}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Server { child, pool, api }
}

impl Server {
    /// SIGKILL: as a power cut ends it, with no shutdown save.
    async fn kill9(mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    async fn status(&self) -> PoolStatus {
        let all: Vec<PoolStatus> = reqwest::get(format!("http://{}{}", self.api, minebox_api::stratum::POOL))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        all.into_iter().find(|p| p.coin == "btc").expect("btc's pool")
    }

    async fn payouts(&self) -> Vec<PoolPayout> {
        let url = format!("http://{}{}?coin=btc&limit=1000", self.api, minebox_api::stratum::POOL_PAYOUTS);
        reqwest::get(url).await.unwrap().json().await.unwrap()
    }
}

/// One miner on the pool port, submitting one share (a block) at a time.
struct Miner {
    id: u32,
    login: String,
    c: Raw,
    en1: Vec<u8>,
    job: Job,
    next_id: u64,
}

impl Miner {
    async fn connect(addr: SocketAddr, id: u32) -> Miner {
        let login = format!("{}.rig", user(id).1);
        let mut c = Raw::connect(addr).await;
        c.send(r#"{"id":1,"method":"mining.subscribe","params":["power-cut-test"]}"#).await;
        let en1 = hex::decode(c.reply(1).await["result"][1].as_str().unwrap()).unwrap();
        c.send(&format!(r#"{{"id":2,"method":"mining.authorize","params":["{login}","x"]}}"#)).await;
        let auth = c.reply(2).await;
        assert_eq!(auth["result"], true, "{login}: {auth}");
        let job = Job::from_notify(&c.notify().await["params"]).unwrap();
        Miner { id, login, c, en1, job, next_id: 10 }
    }

    /// The next line; a job notification replaces the current job.
    async fn next(&mut self) -> Value {
        let v = self.c.recv().await.expect("the server closed the connection");
        if v["method"] == "mining.notify" {
            self.job = Job::from_notify(&v["params"]).unwrap();
        }
        v
    }

    async fn job_on(&mut self, tip: bitcoin::BlockHash) {
        while self.job.prev_hash != tip.to_byte_array() {
            self.next().await;
        }
    }

    /// Submits one share of the current job (a regtest block, see the module's note) and
    /// returns its hash once the server said `true`: by then the block is recorded (and,
    /// on a pool job, its payout rows, carry and window with it).
    async fn block(&mut self) -> bitcoin::BlockHash {
        let en2 = self.next_id.to_be_bytes();
        let root = self.job.merkle_root(&self.en1, &en2);
        let target = difficulty_target(SHARE_DIFFICULTY);
        let (nonce, hash) = (0u32..)
            .map(|n| (n, hash_header(&self.job.header(&root, self.job.version, self.job.ntime, n))))
            .find(|(_, h)| meets(h, &target))
            .unwrap();
        let id = self.next_id;
        self.next_id += 1;
        self.c
            .send(&format!(
                r#"{{"id":{id},"method":"mining.submit","params":["{}","{}","{}","{:08x}","{nonce:08x}"]}}"#,
                self.login,
                self.job.id,
                hex::encode(en2),
                self.job.ntime
            ))
            .await;
        let reply = loop {
            let v = self.next().await;
            if v["id"] == id {
                break v;
            }
        };
        assert_eq!(reply["result"], true, "{}'s share refused: {reply}", self.login);
        bitcoin::BlockHash::from_byte_array(hash)
    }
}

/// The split, computed here from the definition (docs/stratum.md "Pool mode"; the same
/// arithmetic as tests/pool_mode.rs): each user's part of the reward in proportion to their
/// shares (rounded down, the remainder to the most shares), plus what they were owed; the
/// `MAX_OUTPUTS` largest paid the whole reward in proportion to what they were entitled to;
/// what each is owed after is entitled minus paid.
fn expected_split(
    reward: u64,
    shares: &BTreeMap<u32, u64>,
    owed: &BTreeMap<u32, i64>,
) -> (Vec<(u32, u64)>, BTreeMap<u32, i64>) {
    fn proportional(total: u64, weights: &[(u32, u128)]) -> Vec<u64> {
        let sum: u128 = weights.iter().map(|w| w.1).sum();
        let mut parts: Vec<u64> = weights.iter().map(|w| (total as u128 * w.1 / sum) as u64).collect();
        let largest = (0..weights.len()).fold(0, |best, i| if weights[i].1 > weights[best].1 { i } else { best });
        parts[largest] += total - parts.iter().sum::<u64>();
        parts
    }
    let by_user: Vec<(u32, u128)> = shares.iter().map(|(u, n)| (*u, *n as u128)).collect();
    let parts = proportional(reward, &by_user);
    let mut entitled: BTreeMap<u32, i64> = owed.clone();
    for ((u, _), p) in by_user.iter().zip(&parts) {
        *entitled.entry(*u).or_insert(0) += *p as i64;
    }
    let mut order: Vec<(u32, i64)> = entitled.iter().map(|(u, e)| (*u, *e)).filter(|(_, e)| *e > 0).collect();
    order.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    if order.len() > MAX_OUTPUTS {
        assert_ne!(order[MAX_OUTPUTS - 1].1, order[MAX_OUTPUTS].1, "a tie: this test's share order must avoid one");
    }
    order.truncate(MAX_OUTPUTS);
    let basis: Vec<(u32, u128)> = order.iter().map(|(u, e)| (*u, *e as u128)).collect();
    let paid: Vec<(u32, u64)> = order.iter().map(|(u, _)| *u).zip(proportional(reward, &basis)).collect();
    let mut after = BTreeMap::new();
    for (u, e) in entitled {
        let p = paid.iter().find(|(pu, _)| *pu == u).map_or(0, |(_, a)| *a as i64);
        if e - p != 0 {
            after.insert(u, e - p);
        }
    }
    (paid, after)
}

/// The coinbase's value outputs as (script hex, sats), read from Core.
async fn coinbase_outputs(core: &Core, hash: &bitcoin::BlockHash) -> Vec<(String, u64)> {
    let block = core.client().get_block_verbose(hash, 2).await.unwrap();
    block["tx"][0]["vout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                (o["scriptPubKey"]["hex"].as_str().unwrap().to_string()),
                (o["value"].as_f64().unwrap() * 1e8).round() as u64,
            )
        })
        .filter(|(_, sats)| *sats > 0)
        .collect()
}

/// Waits until Core's best block is `hash`: Core accepted it.
async fn core_takes(core: &Core, hash: bitcoin::BlockHash) {
    let started = Instant::now();
    while core.client().get_best_block_hash().await.ok() != Some(hash) {
        assert!(started.elapsed() < Duration::from_secs(60), "Core never took block {hash}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What this test knows the server's pool state is: the window's shares per payee id (all of
/// difficulty `SHARE_DIFFICULTY`, so they weigh alike) and the carry.
#[derive(Debug, Clone, Default, PartialEq)]
struct Ledger {
    window: BTreeMap<u32, u64>,
    owed: BTreeMap<u32, i64>,
}

/// A block the test mined, and what its coinbase had to pay.
#[derive(Debug)]
struct Mined {
    hash: bitcoin::BlockHash,
    /// The pool job's split (None: a job paying the finder's own user, the window empty).
    pool: Option<PoolSplit>,
}

/// A pool block's split as this test computed it.
#[derive(Debug)]
struct PoolSplit {
    /// Shares per payee id in the window the job was built on.
    window: BTreeMap<u32, u64>,
    /// (payee id, sats) paid in the coinbase.
    paid: Vec<(u32, u64)>,
    /// The carry it leaves.
    after: BTreeMap<u32, i64>,
}

/// `finder` mines one block; its coinbase must pay what `ledger` says, and the ledger then
/// counts the block's share (it counts for the next block).
async fn mine(core: &Core, miners: &mut [Miner], finder: u32, ledger: &mut Ledger) -> Mined {
    let m = miners.iter_mut().find(|m| m.id == finder).unwrap();
    let hash = m.block().await;
    core_takes(core, hash).await;
    let outputs = coinbase_outputs(core, &hash).await;
    let reward: u64 = outputs.iter().map(|o| o.1).sum();
    let pool = if ledger.window.is_empty() {
        assert_eq!(outputs, vec![(user(finder).3, reward)], "an empty window: the job pays its finder's own user");
        None
    } else {
        let (paid, after) = expected_split(reward, &ledger.window, &ledger.owed);
        let expected: Vec<(String, u64)> = paid.iter().map(|(u, sats)| (user(*u).3, *sats)).collect();
        assert_eq!(outputs, expected, "block {hash} pays the split of {ledger:?}");
        let pool = PoolSplit { window: ledger.window.clone(), paid, after: after.clone() };
        ledger.owed = after;
        Some(pool)
    };
    *ledger.window.entry(finder).or_insert(0) += 1;
    for m in miners.iter_mut() {
        m.job_on(hash).await;
    }
    Mined { hash, pool }
}

fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("state.db")).unwrap()
}

fn integrity_ok(dir: &Path) {
    let check: String = db(dir).query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "the database after a SIGKILL");
}

/// Everything recorded about blocks that no later event may change: every column of the
/// block rows but their state (status, detail and confirmations follow the chain), and the
/// payout rows whole. Rows as (column, value) text, the block's hash first.
fn recorded(dir: &Path) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    fn rows(conn: &rusqlite::Connection, sql: &str, skip: &[&str]) -> Vec<Vec<String>> {
        let mut stmt = conn.prepare(sql).unwrap();
        let names: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
        stmt.query_map([], |r| {
            let mut row = Vec::new();
            for (i, name) in names.iter().enumerate().filter(|(_, n)| !skip.contains(&n.as_str())) {
                row.push(format!("{name}={:?}", r.get::<_, rusqlite::types::Value>(i)?));
            }
            Ok(row)
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }
    let conn = db(dir);
    (
        rows(&conn, "SELECT * FROM stratum_blocks ORDER BY height, hash", &["status", "detail", "confirmations"]),
        rows(&conn, "SELECT * FROM pplns_payouts ORDER BY height, block_hash, payee_id", &[]),
    )
}

/// The carry as saved (non-zero balances).
fn saved_carry(dir: &Path) -> BTreeMap<u32, i64> {
    let conn = db(dir);
    let mut stmt = conn.prepare("SELECT payee_id, sats FROM pplns_carry WHERE coin = 'btc'").unwrap();
    let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?))).unwrap();
    rows.map(Result::unwrap).filter(|(_, s)| *s != 0).collect()
}

/// The saved window snapshot as (shares, work units) per payee id; None when none was saved.
fn saved_window(dir: &Path) -> Option<BTreeMap<u32, (u64, u128)>> {
    let blob: Vec<u8> = db(dir)
        .query_row("SELECT snapshot FROM pplns_window WHERE coin = 'btc'", [], |r| r.get(0))
        .optional()
        .unwrap()?;
    let snapshot = codec::decode(&blob).expect("the saved snapshot reads back");
    let mut by_user = BTreeMap::new();
    for (u, work, n) in snapshot.summary.iter().chain(&snapshot.runs) {
        let e: &mut (u64, u128) = by_user.entry(u.0).or_insert((0, 0));
        e.0 += n;
        e.1 += work;
    }
    Some(by_user)
}

fn counts(saved: &Option<BTreeMap<u32, (u64, u128)>>) -> BTreeMap<u32, u64> {
    saved.iter().flatten().map(|(u, (n, _))| (*u, *n)).collect()
}

/// The restored window and carry, as the API shows them: (user, work, carry) per payee.
fn pool_view(s: &PoolStatus) -> Vec<(String, f64, i64)> {
    s.payees.iter().map(|p| (p.user.clone(), p.work, p.carry_sats)).collect()
}

/// The same view computed from what was saved (work in difficulty-1 units, as the API counts).
fn saved_view(saved: &Option<BTreeMap<u32, (u64, u128)>>, carry: &BTreeMap<u32, i64>) -> Vec<(String, f64, i64)> {
    users()
        .iter()
        .map(|(id, name, _, _)| {
            let work = saved.as_ref().and_then(|s| s.get(id)).map_or(0, |(_, w)| *w);
            (name.to_string(), work as f64 / 18_446_744_073_709_551_616.0, carry.get(id).copied().unwrap_or(0))
        })
        .collect()
}

fn log_since(dir: &Path, from: usize) -> String {
    let log = std::fs::read_to_string(dir.join("stratum.log")).unwrap();
    log[from..].to_string()
}

fn log_len(dir: &Path) -> usize {
    std::fs::metadata(dir.join("stratum.log")).map_or(0, |m| m.len() as usize)
}

/// Sums shares lost: accepted by the server (`ledger`) but not in the saved snapshot.
fn lost(ledger: &Ledger, saved: &BTreeMap<u32, u64>) -> u64 {
    ledger.window.iter().map(|(u, n)| n - saved.get(u).copied().unwrap_or(0)).sum()
}

#[tokio::test]
async fn a_sigkill_keeps_every_pool_block_its_payouts_and_carry_and_the_window_as_last_saved() {
    let core = common::core().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_payees(dir);

    // 1. A new pool: alice's first share finds a block on an empty window, so its job pays
    // alice (no pool block, no pool transaction). Killed right after: her share is in the
    // window in memory only (unless the 60 s save came first): the documented loss.
    let server = start(&core, dir, BOX_SAVE_SECS).await;
    let mut ledger = Ledger::default();
    let mut miners = vec![Miner::connect(server.pool, ALICE).await];
    let first = mine(&core, &mut miners, ALICE, &mut ledger).await;
    assert!(first.pool.is_none());
    drop(miners);
    server.kill9().await;
    integrity_ok(dir);
    let (blocks, _) = recorded(dir);
    assert!(
        blocks.iter().any(|b| b[0] == format!("hash={:?}", rusqlite::types::Value::Text(first.hash.to_string()))),
        "the first block is recorded: {blocks:?}"
    );
    let saved = counts(&saved_window(dir));
    println!("power cut 1 (no pool block yet): {} window share(s) lost of {:?}", lost(&ledger, &saved), ledger.window);
    assert!(saved.iter().all(|(u, n)| ledger.window.get(u) >= Some(n)), "saved {saved:?} of {ledger:?}");

    // 2. Restarted: the window is what was saved. Pool blocks follow; the last is killed
    // right after its `true` (its transaction saved the window, the payouts and the carry).
    let server = start(&core, dir, BOX_SAVE_SECS).await;
    let carry = saved_carry(dir);
    assert_eq!(pool_view(&server.status().await), saved_view(&saved_window(dir), &carry), "restored as saved");
    let mut ledger = Ledger { window: saved, owed: carry };
    let mut miners = vec![Miner::connect(server.pool, ALICE).await, Miner::connect(server.pool, BOB).await];
    let mut mined = Vec::new();
    // alice's shares first, then bob's: he ends below her in the window and is carried.
    for finder in [ALICE, ALICE, BOB, BOB] {
        mined.push(mine(&core, &mut miners, finder, &mut ledger).await);
    }
    let pool_blocks: Vec<&Mined> = mined.iter().filter(|m| m.pool.is_some()).collect();
    assert!(pool_blocks.len() >= 3, "{mined:?}");
    assert!(!ledger.owed.is_empty(), "the last pool block left a carry: {ledger:?}");
    // The payout rows as the server recorded them: one per user of each pool block's split.
    let rows = server.payouts().await;
    for m in &pool_blocks {
        let PoolSplit { window, paid, after } = m.pool.as_ref().unwrap();
        let mut mine: Vec<(String, u64, i64, u64)> = rows
            .iter()
            .filter(|r| r.block_hash == m.hash.to_string())
            .map(|r| (r.user.clone(), r.amount_sats, r.carry_sats, r.shares))
            .collect();
        mine.sort();
        let expected: Vec<(String, u64, i64, u64)> = users()
            .iter()
            .filter(|(id, ..)| window.contains_key(id) || after.contains_key(id))
            .map(|(id, name, ..)| {
                let amount = paid.iter().find(|(u, _)| u == id).map_or(0, |p| p.1);
                (name.to_string(), amount, after.get(id).copied().unwrap_or(0), window.get(id).copied().unwrap_or(0))
            })
            .collect();
        assert_eq!(mine, expected, "payout rows of {}", m.hash);
    }
    drop(miners);
    server.kill9().await;
    integrity_ok(dir);
    let before = recorded(dir);
    assert_eq!(before.0.len(), 1 + mined.len(), "every block the server said `true` for is on disk");
    assert_eq!(before.1.len(), rows.len(), "every payout row the API showed is on disk");
    assert_eq!(saved_carry(dir), ledger.owed, "the carry committed with the last pool block");
    let saved = saved_window(dir);
    assert_eq!(counts(&saved), ledger.window, "the last pool block's transaction saved the window");
    println!("power cut 2 (right after a pool block): {} window share(s) lost", lost(&ledger, &counts(&saved)));

    // 3. Restarted: nothing recorded changed, the window and carry are as saved, and the
    // next pool block pays the split of exactly those (mine() checks it), which Core takes.
    let server = start(&core, dir, BOX_SAVE_SECS).await;
    assert_eq!(recorded(dir), before, "blocks and payout rows after the restart");
    assert_eq!(pool_view(&server.status().await), saved_view(&saved, &ledger.owed), "restored as saved");
    let mut miners = vec![Miner::connect(server.pool, ALICE).await, Miner::connect(server.pool, BOB).await];
    let window_then = ledger.window.clone();
    let next = mine(&core, &mut miners, ALICE, &mut ledger).await;
    let PoolSplit { paid, .. } = next.pool.as_ref().expect("the restored window makes a pool job");
    assert_eq!(paid.iter().map(|p| p.0).collect::<Vec<_>>(), vec![BOB], "bob's carry pays him this block");
    let rows = server.payouts().await;
    let of_next: Vec<&PoolPayout> = rows.iter().filter(|r| r.block_hash == next.hash.to_string()).collect();
    for r in &of_next {
        let id = users().iter().find(|u| u.1 == r.user).unwrap().0;
        assert_eq!(r.shares, window_then[&id], "{r:?}: the restored window's shares");
        assert_eq!(r.window_shares, window_then.values().sum::<u64>(), "{r:?}");
    }
    drop(miners);
    server.kill9().await;
    integrity_ok(dir);
    let committed = ledger.owed.clone();
    assert_eq!(saved_carry(dir), committed);

    // 4. A damaged snapshot, written while the server is stopped: a truncated blob, then a
    // value that is not a blob at all. Each time the server says so and starts with an empty
    // window, the carry kept; a job then pays its miner's own user, not a split of garbage.
    let blob: Vec<u8> = db(dir).query_row("SELECT snapshot FROM pplns_window", [], |r| r.get(0)).unwrap();
    // (damage, the value written, what the log line says it found)
    let damages: [(&str, rusqlite::types::Value, &str); 2] = [
        ("truncated", rusqlite::types::Value::Blob(blob[..blob.len() - 1].to_vec()), "cut short or damaged"),
        ("text", rusqlite::types::Value::Text("garbage".into()), "a Text value, not a snapshot"),
    ];
    for (what, value, found) in damages {
        db(dir).execute("UPDATE pplns_window SET snapshot = ?1 WHERE coin = 'btc'", [value]).unwrap();
        let from = log_len(dir);
        let server = start(&core, dir, BOX_SAVE_SECS).await;
        let log = log_since(dir, from);
        let line = log.lines().find(|l| l.contains("saved PPLNS window unreadable"));
        assert!(line.is_some_and(|l| l.contains(found)), "{what}: the log says so, and what it found:\n{log}");
        println!("damaged snapshot ({what}): {}", line.unwrap_or_default());
        let status = server.status().await;
        assert_eq!(status.window_work, 0.0, "{what}: the window starts empty");
        assert_eq!(pool_view(&status), saved_view(&None, &committed), "{what}: the carry is kept");
        let mut miners = vec![Miner::connect(server.pool, BOB).await];
        let mut empty = Ledger { window: BTreeMap::new(), owed: committed.clone() };
        let solo = mine(&core, &mut miners, BOB, &mut empty).await;
        assert!(solo.pool.is_none(), "{what}: no pool job from a damaged window");
        drop(miners);
        server.kill9().await;
        integrity_ok(dir);
        assert_eq!(saved_carry(dir), committed, "{what}: the carry still as committed");
    }
}

/// The periodic save (`--pplns-save-secs`, 1 s here), which the test above never waits for.
/// The first share on an empty window finds a block whose job pays its finder alone: no pool
/// transaction saves the window with it, so only the periodic save can put that share on
/// disk. Once it has, a SIGKILL loses nothing, and the next block pays the restored window.
#[tokio::test]
async fn a_sigkill_after_a_periodic_save_keeps_the_share_no_pool_block_saved() {
    let core = common::core().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_payees(dir);

    let server = start(&core, dir, 1).await;
    let mut ledger = Ledger::default();
    let mut miners = vec![Miner::connect(server.pool, ALICE).await];
    let first = mine(&core, &mut miners, ALICE, &mut ledger).await;
    assert!(first.pool.is_none(), "an empty window: the job paid alice alone");
    let started = Instant::now();
    while counts(&saved_window(dir)) != ledger.window {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not saved in 30 s at one save a second: saved {:?}, accepted {:?}",
            counts(&saved_window(dir)),
            ledger.window
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(miners);
    server.kill9().await;
    integrity_ok(dir);
    let saved = saved_window(dir);
    println!(
        "power cut after a periodic save: {} window share(s) lost of {:?}",
        lost(&ledger, &counts(&saved)),
        ledger.window
    );
    assert_eq!(counts(&saved), BTreeMap::from([(ALICE, 1)]), "the periodic save wrote alice's share");
    assert!(saved_carry(dir).is_empty(), "no pool block yet, so no carry");

    // Restarted: the window is as saved, and bob's block is a pool job paying that window:
    // alice's one share, the whole reward (mine() checks the coinbase against the split).
    let server = start(&core, dir, 1).await;
    assert_eq!(pool_view(&server.status().await), saved_view(&saved, &BTreeMap::new()), "restored as saved");
    let mut miners = vec![Miner::connect(server.pool, ALICE).await, Miner::connect(server.pool, BOB).await];
    let next = mine(&core, &mut miners, BOB, &mut ledger).await;
    let PoolSplit { window, paid, .. } = next.pool.as_ref().expect("the restored window makes a pool job");
    assert_eq!(window, &BTreeMap::from([(ALICE, 1)]), "the split counts the restored share");
    assert_eq!(paid.iter().map(|p| p.0).collect::<Vec<_>>(), vec![ALICE], "{paid:?}");
    let rows = server.payouts().await;
    let row = rows.iter().find(|r| r.block_hash == next.hash.to_string()).expect("the pool block's payout row");
    assert_eq!((row.user.as_str(), row.shares, row.window_shares), ("alice", 1, 1), "{rows:?}");
    drop(miners);
    server.kill9().await;
    integrity_ok(dir);
}
