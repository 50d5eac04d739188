//! Mining through an upstream solo pool while the coin's node cannot give work.
//!
//! A node that is starting, syncing, installing a snapshot or down leaves miners idle. When
//! the settings name an upstream (`coins.<id>.upstream = "stratum+tcp://host:port"`), the
//! server keeps its own port and proxies: one Stratum V1 connection to the pool per payout
//! address, authorized as that address (worker `minebox`), so a block found through it pays
//! that address from the pool's coinbase: the owner's, always open, and one per miner
//! mining to its own address while it has miners ([`Upstreams`]). Miners never reconnect; [`choose_source`] hands them the
//! pool's jobs while the node is not ready and the node's own templates (with clean_jobs)
//! as soon as it is.
//!
//! # Splitting the pool's extranonce2
//!
//! A miner's extranonce1 (4 bytes, unique on this box) and extranonce2 length (the
//! server's `extranonce2_len`) are fixed at its subscribe and never change, so a miner
//! needs no `mining.set_extranonce` support. The pool's extranonce2 is filled as
//! `zero padding || miner's extranonce1 || miner's extranonce2`: the pool's extranonce1 and
//! the padding are appended to the pool's coinb1 before it goes to the miner. The pool must
//! therefore give at least `4 + extranonce2_len` bytes of extranonce2 (8 with the box set
//! to 4; 12 with the default 8). A pool giving less but at least 4 ([`MinerExtranonce`]) gets
//! only the miners that sent `mining.extranonce.subscribe`: they are told the last bytes of
//! their extranonce1 and a shorter extranonce2 (`mining.set_extranonce`), the others wait for
//! the node; a pool giving fewer than 4 is refused with the sizes.
//!
//! # Version rolling
//!
//! Miners negotiated their mask with the box; the pool's `mining.configure` answer narrows
//! what they may roll on its jobs ([`UpstreamWork::version_mask`]). The session tells them
//! (`mining.set_version_mask`) and never forwards a share rolling other bits.
//!
//! # What an upstream may not do
//!
//! Lines longer than [`MAX_UPSTREAM_LINE_BYTES`], lines that are not JSON-RPC, difficulties
//! outside the settings' range, a job whose target is easier than the network allows (work
//! for another chain), a job building on a block the coin's node does not know although its
//! headers are past that height (another chain with the same limits: [`another_chain`]),
//! malformed job fields, an extranonce2 the box cannot split, refusing
//! the owner's address, and silence longer than the idle timeout: each is logged with what
//! it was, shown in the API's upstream state, and the connection is dropped and retried
//! with backoff. Miners keep their connections throughout.

use crate::job::Template;
use crate::protocol::Submit;
use bitcoin::hashes::Hash;
use bitcoin::{Amount, BlockHash, CompactTarget, ScriptBuf, Target};
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

/// Longest line accepted from the pool. A mining.notify carries two coinbase halves and a
/// merkle branch of at most a dozen hashes: a few KiB. Anything near this is broken.
pub const MAX_UPSTREAM_LINE_BYTES: usize = 64 * 1024;

/// The miner's own extranonce1, which fills part of the pool's extranonce2.
const MINER_EXTRANONCE1_BYTES: usize = 4;

/// Largest extranonce2 a pool may give (ckpool gives 8; anything above 32 is not a pool).
const MAX_UPSTREAM_EXTRANONCE2: usize = 32;

/// Difficulties a pool may set: from the settings' lowest share difficulty (a regtest pool
/// sets difficulties below regtest's network difficulty, 4.66e-10) to far above mainnet's.
const DIFFICULTY_RANGE: std::ops::RangeInclusive<f64> = 1e-12..=1e18;

/// Upstream jobs get template ids from their own range, so the job book never mistakes
/// one for a node template.
const UPSTREAM_TEMPLATE_IDS: u64 = 1 << 63;

/// One coin's upstream as the service runs it.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub coin: String,
    /// As the user wrote it, for logs and the API.
    pub url: String,
    /// `host:port` to connect to.
    pub authority: String,
    /// What the box authorizes as: the owner's address and worker `minebox`.
    pub user: String,
    /// What the owner's address pays: only miners mining to it get upstream work.
    pub owner: ScriptBuf,
    /// The box's extranonce2 length for miners.
    pub miner_extranonce2_len: usize,
    /// The easiest target the coin's network allows: an easier job is for another chain.
    pub pow_limit: Target,
    /// Silence from the pool longer than this drops the connection.
    pub idle_timeout: Duration,
    /// The version bits the box lets miners roll.
    pub version_mask: u32,
    /// The coin's node, to tell a pool of another chain by its jobs' previous block
    /// ([`another_chain`]); the check is skipped while the node does not answer.
    pub node: Option<minebox_node_rpc::NodeClient>,
}

/// How long the chain check waits for the node before the job goes out unchecked.
pub const CHAIN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a pool's job is for another chain, when the coin's node can tell: the block the job
/// builds on is not among the node's headers although the node's headers reach past its
/// height (a Bitcoin Cash pool behind a Bitcoin box, which the target check cannot tell
/// apart). A node that does not answer, is behind the pool, or a coinbase without a
/// readable height (BIP34) skips the check.
pub async fn another_chain(node: &minebox_node_rpc::NodeClient, t: &Template) -> Option<String> {
    let prev_height = t.height.checked_sub(1)?;
    let info = node.get_blockchain_info().await.ok()?;
    if info.headers < t.height {
        return None;
    }
    match node.call::<Value>("getblockheader", json!([t.prev_hash.to_string()])).await {
        // -5: "Block not found".
        Err(minebox_node_rpc::RpcError::Node { code: -5, .. }) => Some(format!(
            "its job builds on block {} at height {prev_height}, which the box's node (headers up to {}) does \
             not have; check that the pool mines this coin and network",
            t.prev_hash, info.headers
        )),
        _ => None,
    }
}

/// The easiest target of a network by its name in the coin descriptors (every coin
/// MineBox mines shares Bitcoin's limits per network kind).
pub fn pow_limit(network: &str) -> Target {
    match network {
        "main" => Target::MAX_ATTAINABLE_MAINNET,
        "regtest" => Target::MAX_ATTAINABLE_REGTEST,
        "signet" => Target::MAX_ATTAINABLE_SIGNET,
        _ => Target::MAX_ATTAINABLE_TESTNET,
    }
}

/// A pool's job as the box hands it on: what [`crate::job::Job::new`] needs to cut the
/// miner's coinbase, and what a share must meet to be worth sending.
#[derive(Debug)]
pub struct UpstreamWork {
    /// Which connection to the pool the job came from; shares of an older one are dropped.
    pub connection: u64,
    pub job_id: String,
    /// The pool's coinb1, its extranonce1 and the zero padding.
    pub coinb1: Vec<u8>,
    pub coinb2: Vec<u8>,
    pub padding: usize,
    /// The pool's difficulty when the job arrived.
    pub difficulty: f64,
    pub owner: ScriptBuf,
    /// The version bits miners may roll on this job: the box's mask and the pool's (0 when
    /// the pool refused version rolling). Miners negotiated with the box, so a miner whose
    /// mask is wider is told this one (`mining.set_version_mask`), and a share rolling bits
    /// outside it is not sent: the pool would reject it.
    pub version_mask: u32,
    /// Set when the pool's extranonce2 is too small for the miners' own extranonce1 and
    /// extranonce2 size: only miners that sent `mining.extranonce.subscribe` mine on it,
    /// told a shorter extranonce1 and extranonce2 (`mining.set_extranonce`).
    pub miner_extranonce: Option<MinerExtranonce>,
}

/// The extranonce a miner is told for a pool with a small extranonce2: the last
/// `extranonce1_len` bytes of its own extranonce1 (unique among the box's connections that
/// are open at once, as long as fewer than 2^(8 × len) connections separate two of them) and
/// `extranonce2_len` bytes to roll, together exactly the pool's extranonce2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinerExtranonce {
    pub extranonce1_len: usize,
    pub extranonce2_len: usize,
}

/// Bytes of extranonce2 a miner must roll at least (cgminer-based firmware refuses fewer
/// than 2) and may roll at most (8, what every firmware handles).
const MINER_EXTRANONCE2_RANGE: std::ops::RangeInclusive<usize> = 2..=8;

/// Bytes of its extranonce1 a miner keeps under a small pool extranonce2: 2 tell 65536
/// connections apart.
const NARROW_EXTRANONCE1_BYTES: usize = 2;

impl MinerExtranonce {
    /// How miners that accept `mining.set_extranonce` share a pool extranonce2 of `size`
    /// bytes, if they can.
    fn for_pool(size: usize) -> Option<MinerExtranonce> {
        let extranonce2_len = size.checked_sub(NARROW_EXTRANONCE1_BYTES)?.min(*MINER_EXTRANONCE2_RANGE.end());
        MINER_EXTRANONCE2_RANGE
            .contains(&extranonce2_len)
            .then_some(MinerExtranonce { extranonce1_len: size - extranonce2_len, extranonce2_len })
    }
}

/// A share for the pool: a miner's submission rewritten into the pool's extranonce2.
#[derive(Debug, Clone)]
pub struct Forward {
    pub connection: u64,
    pub job_id: String,
    pub extranonce2: Vec<u8>,
    pub ntime: u32,
    pub nonce: u32,
    pub version_bits: Option<u32>,
    pub is_block: bool,
}

impl Forward {
    /// `extranonce1` is what the miner was told for this job: its own 4 bytes, or their last
    /// bytes under [`UpstreamWork::miner_extranonce`].
    pub fn new(work: &UpstreamWork, extranonce1: &[u8], s: &Submit, is_block: bool) -> Forward {
        let mut extranonce2 = vec![0u8; work.padding];
        extranonce2.extend_from_slice(extranonce1);
        extranonce2.extend_from_slice(&s.extranonce2);
        Forward {
            connection: work.connection,
            job_id: work.job_id.clone(),
            extranonce2,
            ntime: s.ntime,
            nonce: s.nonce,
            version_bits: s.version_bits,
            is_block,
        }
    }
}

/// Where miners of a coin get work now, and the upstream's state for the API and the status
/// page: the contract's types (minebox-api), which the API serializes as they are.
pub use minebox_api::stratum::{MiningFrom as Source, PoolLink as UpstreamStatus};

pub type SharedUpstream = Arc<Mutex<UpstreamStatus>>;

/// What a connection needs to hand shares to one upstream connection.
pub struct Link {
    pub submit: mpsc::Sender<Forward>,
    pub status: SharedUpstream,
}

impl Link {
    /// Queues a share for the pool; never waits (the miner's reply does not depend on it).
    pub fn forward(&self, f: Forward) {
        if self.submit.try_send(f).is_err() {
            self.status.lock().expect("upstream lock").dropped += 1;
        }
    }

    /// A share the box did not send because the pool would reject it (version bits outside
    /// the pool's mask): counted with the dropped ones.
    pub fn not_sent(&self) {
        self.status.lock().expect("upstream lock").dropped += 1;
    }
}

/// Why a connection to the pool ended. The text is what the user reads in the API.
#[derive(Debug, thiserror::Error)]
pub enum Dropped {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("the pool closed the connection")]
    Closed,
    #[error("connection error: {0}")]
    Io(String),
    #[error("the pool sent a line longer than {MAX_UPSTREAM_LINE_BYTES} bytes")]
    LineTooLong,
    #[error("the pool sent a malformed line ({0}): {1}")]
    Malformed(String, String),
    #[error("the pool sent an unusable value: {0}")]
    Absurd(String),
    #[error(
        "the pool gives {got} bytes of extranonce2; the box needs at least {need} (4 per miner + its \
         extranonce2 size), or 4 for miners that accept mining.set_extranonce: choose another pool"
    )]
    ExtranonceTooSmall { got: usize, need: usize },
    #[error("the pool refused {0}: {1}; check the payout address and the pool's coin and network")]
    Refused(String, String),
    #[error("the pool sent nothing for {0:?}")]
    Stalled(Duration),
    #[error("the pool asked the box to reconnect")]
    Reconnect,
    #[error("the pool at {0} sends work for another chain: {1}")]
    OtherChain(String, String),
    #[error("stopping")]
    Shutdown,
}

/// Runs the upstream client until `shutdown`: connects, relays jobs to `publish`, sends
/// shares from `submits`, and reconnects with backoff whatever the pool does.
pub async fn run(
    config: UpstreamConfig,
    publish: watch::Sender<Option<Arc<Template>>>,
    mut submits: mpsc::Receiver<Forward>,
    status: SharedUpstream,
    ids: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut backoff = Duration::from_secs(1);
    let mut connection = 0u64;
    loop {
        connection += 1;
        status.lock().expect("upstream lock").connections = connection;
        let mut got_work = false;
        let why =
            connect_and_mine(&config, connection, &publish, &mut submits, &status, &ids, &mut got_work, &shutdown)
                .await;
        // The pool's jobs are worthless without the connection that gave them.
        publish.send_replace(None);
        {
            let mut s = status.lock().expect("upstream lock");
            s.connected = false;
            s.authorized = false;
            if !matches!(why, Dropped::Shutdown) {
                s.last_error = Some(why.to_string());
            }
        }
        if matches!(why, Dropped::Shutdown) {
            return;
        }
        if got_work {
            backoff = Duration::from_secs(1);
        }
        tracing::warn!(coin = %config.coin, upstream = %config.url, error = %why, retry_in = ?backoff, "upstream pool connection ended");
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// Template ids for upstream jobs, one counter per coin: the job book caches cut jobs by
/// template id, so two pool connections of a coin must never reuse one.
pub fn template_ids() -> Arc<AtomicU64> {
    Arc::new(AtomicU64::new(UPSTREAM_TEMPLATE_IDS))
}

/// Subscription facts from the pool's answers.
#[derive(Default)]
struct Subscription {
    extranonce1: Option<Vec<u8>>,
    padding: usize,
    authorized: bool,
    difficulty: Option<f64>,
    /// A job that came before the authorize answer (ckpool sends its first one right
    /// after the subscription): used as soon as the pool says yes.
    early_job: Option<Value>,
    /// The version bits the pool lets the box roll (its mining.configure answer, within the
    /// box's mask); `None` until it answers, and 0 if it refuses or never answers.
    pool_mask: Option<u32>,
    /// Set when the pool's extranonce2 fits only miners that accept `mining.set_extranonce`.
    miner_extranonce: Option<MinerExtranonce>,
}

/// What the API says while a pool's extranonce2 fits only miners that accept
/// `mining.set_extranonce`: the others wait for the node.
fn narrow_note(got: usize, need: usize, n: MinerExtranonce) -> String {
    format!(
        "the pool gives {got} bytes of extranonce2; miners that sent mining.extranonce.subscribe mine with \
         {} bytes of extranonce2, the others need {need} (4 per miner + the box's extranonce2 size) and wait \
         for the node",
        n.extranonce2_len
    )
}

const ID_CONFIGURE: u64 = 1;
const ID_SUBSCRIBE: u64 = 2;
const ID_AUTHORIZE: u64 = 3;

#[allow(clippy::too_many_arguments)]
async fn connect_and_mine(
    config: &UpstreamConfig,
    connection: u64,
    publish: &watch::Sender<Option<Arc<Template>>>,
    submits: &mut mpsc::Receiver<Forward>,
    status: &SharedUpstream,
    ids: &AtomicU64,
    got_work: &mut bool,
    shutdown: &CancellationToken,
) -> Dropped {
    let stream = tokio::select! {
        _ = shutdown.cancelled() => return Dropped::Shutdown,
        c = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&config.authority)) => match c {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Dropped::Connect(config.authority.clone(), e.to_string()),
            Err(_) => return Dropped::Connect(config.authority.clone(), "timed out".into()),
        },
    };
    let _ = stream.set_nodelay(true);
    status.lock().expect("upstream lock").connected = true;
    let (rd, mut wr) = stream.into_split();
    let mut lines = FramedRead::new(rd, LinesCodec::new_with_max_length(MAX_UPSTREAM_LINE_BYTES));
    let hello = [
        json!({"id": ID_CONFIGURE, "method": "mining.configure",
               "params": [["version-rolling"], {"version-rolling.mask": format!("{:08x}", config.version_mask), "version-rolling.min-bit-count": 2}]}),
        json!({"id": ID_SUBSCRIBE, "method": "mining.subscribe", "params": [concat!("MineBox/", env!("CARGO_PKG_VERSION"))]}),
        json!({"id": ID_AUTHORIZE, "method": "mining.authorize", "params": [config.user, "x"]}),
    ];
    let mut out = String::new();
    for h in &hello {
        out.push_str(&h.to_string());
        out.push('\n');
    }
    if let Err(e) = wr.write_all(out.as_bytes()).await {
        return Dropped::Io(e.to_string());
    }
    // Shares of an earlier connection name jobs this one never had.
    while submits.try_recv().is_ok() {}
    let mut sub = Subscription::default();
    let mut next_id = 100u64;
    // The last previous block the node vouched for (or could not judge): checked once each.
    let mut chain_checked: Option<BlockHash> = None;
    let mut last_line = Instant::now();
    loop {
        let reply = tokio::select! {
            _ = shutdown.cancelled() => return Dropped::Shutdown,
            _ = tokio::time::sleep_until((last_line + config.idle_timeout).into()) => return Dropped::Stalled(config.idle_timeout),
            Some(f) = submits.recv() => {
                if f.connection != connection {
                    status.lock().expect("upstream lock").dropped += 1;
                    continue;
                }
                let mut params = vec![
                    json!(config.user),
                    json!(f.job_id),
                    json!(hex::encode(&f.extranonce2)),
                    json!(format!("{:08x}", f.ntime)),
                    json!(format!("{:08x}", f.nonce)),
                ];
                if let Some(v) = f.version_bits {
                    params.push(json!(format!("{v:08x}")));
                }
                next_id += 1;
                {
                    let mut s = status.lock().expect("upstream lock");
                    s.forwarded += 1;
                    if f.is_block {
                        s.blocks += 1;
                        tracing::info!(coin = %config.coin, upstream = %config.url, "a block found on upstream work: sent to the pool");
                    }
                }
                Some(json!({"id": next_id, "method": "mining.submit", "params": params}).to_string())
            }
            line = lines.next() => {
                let line = match line {
                    None => return Dropped::Closed,
                    Some(Err(LinesCodecError::MaxLineLengthExceeded)) => return Dropped::LineTooLong,
                    Some(Err(LinesCodecError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Dropped::Malformed("not UTF-8".into(), String::new())
                    }
                    Some(Err(LinesCodecError::Io(e))) => return Dropped::Io(e.to_string()),
                    Some(Ok(l)) => l,
                };
                last_line = Instant::now();
                if line.trim().is_empty() {
                    continue;
                }
                match on_line(config, connection, &line, &mut sub, status, ids) {
                    Ok(Step::Nothing) => None,
                    Ok(Step::Reply(r)) => Some(r),
                    Ok(Step::Job(t)) => {
                        if let Some(node) = config.node.as_ref().filter(|_| chain_checked != Some(t.prev_hash)) {
                            let checked = tokio::select! {
                                _ = shutdown.cancelled() => return Dropped::Shutdown,
                                c = tokio::time::timeout(CHAIN_CHECK_TIMEOUT, another_chain(node, &t)) => c,
                            };
                            if let Ok(Some(why)) = checked {
                                return Dropped::OtherChain(config.url.clone(), why);
                            }
                            chain_checked = Some(t.prev_hash);
                        }
                        *got_work = true;
                        let note = t.upstream.as_ref().and_then(|u| u.miner_extranonce).map(|n| {
                            narrow_note(sub_size(&t), MINER_EXTRANONCE1_BYTES + config.miner_extranonce2_len, n)
                        });
                        status.lock().expect("upstream lock").last_error = note;
                        publish.send_replace(Some(t));
                        None
                    }
                    Err(d) => return d,
                }
            }
        };
        if let Some(r) = reply {
            let write = async {
                wr.write_all(r.as_bytes()).await?;
                wr.write_all(b"\n").await
            };
            match tokio::time::timeout(Duration::from_secs(10), write).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Dropped::Io(e.to_string()),
                Err(_) => return Dropped::Stalled(Duration::from_secs(10)),
            }
        }
    }
}

/// The pool's extranonce2 size a job was cut for (its parts the box and the miner fill).
fn sub_size(t: &Template) -> usize {
    t.upstream.as_ref().map_or(0, |u| match u.miner_extranonce {
        Some(n) => n.extranonce1_len + n.extranonce2_len,
        None => u.padding + MINER_EXTRANONCE1_BYTES,
    })
}

enum Step {
    Nothing,
    Reply(String),
    Job(Arc<Template>),
}

/// A short, printable excerpt of a bad line for the log and the API.
fn excerpt(line: &str) -> String {
    line.chars().take(80).map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn on_line(
    config: &UpstreamConfig,
    connection: u64,
    line: &str,
    sub: &mut Subscription,
    status: &SharedUpstream,
    ids: &AtomicU64,
) -> Result<Step, Dropped> {
    let malformed = |what: &str| Dropped::Malformed(what.to_string(), excerpt(line));
    let v: Value = serde_json::from_str(line).map_err(|_| malformed("not JSON"))?;
    let Some(obj) = v.as_object() else { return Err(malformed("not a JSON object")) };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    match obj.get("method").and_then(Value::as_str) {
        Some("mining.set_difficulty") => {
            let d =
                params.get(0).and_then(Value::as_f64).ok_or_else(|| malformed("set_difficulty without a number"))?;
            if !DIFFICULTY_RANGE.contains(&d) {
                return Err(Dropped::Absurd(format!("difficulty {d:e}")));
            }
            sub.difficulty = Some(d);
            status.lock().expect("upstream lock").difficulty = Some(d);
            Ok(Step::Nothing)
        }
        Some("mining.notify") => {
            if sub.extranonce1.is_none() {
                return Err(malformed("a job before the subscription answer"));
            }
            if !sub.authorized {
                sub.early_job = Some(params);
                return Ok(Step::Nothing);
            }
            job(config, connection, &params, sub, status, ids, &malformed)
        }
        // The box's miners cannot follow a new extranonce1 without reconnecting; a fresh
        // subscription gives the box one it can split again.
        Some("mining.set_extranonce") | Some("client.reconnect") => Err(Dropped::Reconnect),
        Some("mining.ping") => {
            Ok(Step::Reply(json!({"id": obj.get("id"), "result": "pong", "error": null}).to_string()))
        }
        Some(other) => {
            tracing::debug!(coin = %config.coin, method = other, "upstream message ignored");
            Ok(Step::Nothing)
        }
        None => on_answer(config, connection, obj, sub, status, ids, &malformed),
    }
}

/// A pool's job, checked, as work for the miners.
fn job(
    config: &UpstreamConfig,
    connection: u64,
    params: &Value,
    sub: &Subscription,
    status: &SharedUpstream,
    ids: &AtomicU64,
    malformed: &dyn Fn(&str) -> Dropped,
) -> Result<Step, Dropped> {
    let Some(difficulty) = sub.difficulty else {
        return Err(malformed("a job before any mining.set_difficulty"));
    };
    let en1 = sub.extranonce1.as_deref().unwrap_or_default();
    let split =
        Split { padding: sub.padding, pool_mask: sub.pool_mask.unwrap_or(0), miner_extranonce: sub.miner_extranonce };
    let t = notify_template(config, connection, params, en1, &split, difficulty, ids).map_err(|what| match what {
        NotifyError::Malformed(w) => malformed(w),
        NotifyError::OtherChain(t) => Dropped::Absurd(format!(
            "a job with target {t:x} is easier than {} allows: work for another chain",
            config.coin
        )),
    })?;
    status.lock().expect("upstream lock").jobs += 1;
    Ok(Step::Job(Arc::new(t)))
}

#[allow(clippy::too_many_arguments)]
fn on_answer(
    config: &UpstreamConfig,
    connection: u64,
    obj: &serde_json::Map<String, Value>,
    sub: &mut Subscription,
    status: &SharedUpstream,
    ids: &AtomicU64,
    malformed: &dyn Fn(&str) -> Dropped,
) -> Result<Step, Dropped> {
    let id = obj.get("id").and_then(Value::as_u64).ok_or_else(|| malformed("an answer without a numeric id"))?;
    let result = obj.get("result").unwrap_or(&Value::Null);
    let error = obj.get("error").filter(|e| !e.is_null());
    let error_text = || error.map(|e| e.to_string()).unwrap_or_else(|| "no reason given".into());
    match id {
        // Version rolling is optional: a pool without it answers with an error or `false`,
        // and miners are then told to roll nothing on its jobs.
        ID_CONFIGURE => {
            let granted = match result.get("version-rolling").and_then(Value::as_bool) {
                Some(true) => result
                    .get("version-rolling.mask")
                    .and_then(Value::as_str)
                    .and_then(|m| u32::from_str_radix(m, 16).ok())
                    .unwrap_or(0),
                _ => 0,
            };
            let mask = granted & config.version_mask;
            sub.pool_mask = Some(mask);
            tracing::info!(coin = %config.coin, upstream = %config.url, mask = format!("{mask:08x}"), "version bits the pool lets miners roll");
            Ok(Step::Nothing)
        }
        ID_SUBSCRIBE => {
            let (Some(en1), Some(size)) =
                (result.get(1).and_then(Value::as_str), result.get(2).and_then(Value::as_u64))
            else {
                return Err(Dropped::Refused("the subscription".into(), error_text()));
            };
            let en1 = hex::decode(en1).map_err(|_| malformed("extranonce1 is not hex"))?;
            if en1.len() > 32 {
                return Err(Dropped::Absurd(format!("a {}-byte extranonce1", en1.len())));
            }
            let size = size as usize;
            let need = MINER_EXTRANONCE1_BYTES + config.miner_extranonce2_len;
            if size > MAX_UPSTREAM_EXTRANONCE2 {
                return Err(Dropped::Absurd(format!("a {size}-byte extranonce2")));
            }
            if size < need {
                // Miners that accept mining.set_extranonce can share a smaller one.
                let Some(n) = MinerExtranonce::for_pool(size) else {
                    return Err(Dropped::ExtranonceTooSmall { got: size, need });
                };
                sub.miner_extranonce = Some(n);
                sub.padding = 0;
            } else {
                sub.miner_extranonce = None;
                sub.padding = size - need;
            }
            sub.extranonce1 = Some(en1);
            status.lock().expect("upstream lock").extranonce2_size = Some(size);
            Ok(Step::Nothing)
        }
        ID_AUTHORIZE => {
            if result.as_bool() == Some(true) && error.is_none() {
                sub.authorized = true;
                status.lock().expect("upstream lock").authorized = true;
                tracing::info!(coin = %config.coin, upstream = %config.url, user = %config.user, "authorized at the upstream pool");
                match sub.early_job.take() {
                    Some(params) => job(config, connection, &params, sub, status, ids, malformed),
                    None => Ok(Step::Nothing),
                }
            } else {
                Err(Dropped::Refused(config.user.clone(), error_text()))
            }
        }
        _ => {
            let mut s = status.lock().expect("upstream lock");
            if result.as_bool() == Some(true) {
                s.accepted += 1;
            } else {
                s.rejected += 1;
                tracing::info!(coin = %config.coin, upstream = %config.url, reason = %error_text(), "the pool rejected a share");
            }
            Ok(Step::Nothing)
        }
    }
}

enum NotifyError {
    Malformed(&'static str),
    OtherChain(Target),
}

fn hex_field(v: &Value, what: &'static str) -> Result<Vec<u8>, NotifyError> {
    v.as_str().and_then(|s| hex::decode(s).ok()).ok_or(NotifyError::Malformed(what))
}

fn hex_u32(v: &Value, what: &'static str) -> Result<u32, NotifyError> {
    let b = hex_field(v, what)?;
    let b: [u8; 4] = b.try_into().map_err(|_| NotifyError::Malformed(what))?;
    Ok(u32::from_be_bytes(b))
}

/// The block height a coinbase's first input commits to (BIP34), when it can be read.
fn bip34_height(coinb1: &[u8]) -> u64 {
    // version (4), input count (1), previous output (36), script length (1), push opcode.
    let Some(&push) = coinb1.get(42) else { return 0 };
    // Heights 1 to 16 are a small-integer opcode (OP_1..OP_16), as Bitcoin Core writes them.
    if (0x51..=0x60).contains(&push) {
        return u64::from(push - 0x50);
    }
    let n = push as usize;
    if !(1..=8).contains(&n) || coinb1.len() < 43 + n {
        return 0;
    }
    coinb1[43..43 + n].iter().rev().fold(0u64, |acc, b| (acc << 8) | *b as u64)
}

/// How a connection's jobs are cut: from its subscription and configure answers.
struct Split {
    padding: usize,
    pool_mask: u32,
    miner_extranonce: Option<MinerExtranonce>,
}

/// A mining.notify turned into work the box can hand its miners.
fn notify_template(
    config: &UpstreamConfig,
    connection: u64,
    params: &Value,
    extranonce1: &[u8],
    split: &Split,
    difficulty: f64,
    ids: &AtomicU64,
) -> Result<Template, NotifyError> {
    let padding = split.padding;
    // The bits miners may roll on the pool's work: the pool rebuilds the version from its
    // own mask, so rolling any other bit makes a share it rejects.
    let version_mask = config.version_mask & split.pool_mask;
    let p = params.as_array().filter(|p| p.len() >= 9).ok_or(NotifyError::Malformed("notify needs 9 parameters"))?;
    let job_id = p[0]
        .as_str()
        .filter(|s| !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_graphic()))
        .ok_or(NotifyError::Malformed("job id"))?
        .to_string();
    let prev: [u8; 32] = hex_field(&p[1], "previous block hash")?
        .try_into()
        .map_err(|_| NotifyError::Malformed("previous block hash"))?;
    let mut prev = prev;
    for word in prev.chunks_mut(4) {
        word.reverse();
    }
    let coinb1 = hex_field(&p[2], "coinb1")?;
    let coinb2 = hex_field(&p[3], "coinb2")?;
    let branch = p[4].as_array().filter(|b| b.len() <= 32).ok_or(NotifyError::Malformed("merkle branch"))?;
    let branch = branch
        .iter()
        .map(|h| hex_field(h, "merkle branch")?.try_into().map_err(|_| NotifyError::Malformed("merkle branch")))
        .collect::<Result<Vec<[u8; 32]>, _>>()?;
    // The bits miners roll are cleared, as for the node's templates (crate::work::job_version):
    // ESP-Miner and BIP310 rebuild the same header only then, and the pool, which rebuilds
    // `(version & !mask) | bits`, sees the same version either way.
    let version = crate::work::job_version(hex_u32(&p[5], "version")?, version_mask);
    let bits = CompactTarget::from_consensus(hex_u32(&p[6], "nbits")?);
    let ntime = hex_u32(&p[7], "ntime")?;
    let clean = p[8].as_bool().ok_or(NotifyError::Malformed("clean_jobs"))?;
    let target = Target::from_compact(bits);
    if target > config.pow_limit {
        return Err(NotifyError::OtherChain(target));
    }
    let height = bip34_height(&coinb1);
    let mut miner_coinb1 = coinb1;
    miner_coinb1.extend_from_slice(extranonce1);
    miner_coinb1.resize(miner_coinb1.len() + padding, 0);
    let work = UpstreamWork {
        connection,
        job_id,
        coinb1: miner_coinb1,
        coinb2,
        padding,
        difficulty,
        owner: config.owner.clone(),
        version_mask,
        miner_extranonce: split.miner_extranonce,
    };
    Ok(Template {
        id: ids.fetch_add(1, Ordering::Relaxed),
        height,
        prev_hash: BlockHash::from_byte_array(prev),
        version,
        bits,
        target,
        min_time: ntime,
        cur_time: ntime,
        coinbase_value: Amount::ZERO,
        witness_commitment: None,
        transactions: Vec::new(),
        branch,
        clean,
        received: Instant::now(),
        upstream: Some(Arc::new(work)),
    })
}

/// Picks where miners get work: the node's templates while it answers (`ready`), else
/// the pool's jobs when there are any, else the last work stays. Every change of source
/// is sent with clean_jobs, so miners drop the other source's work at once without
/// reconnecting.
pub async fn choose_source(
    mut own: watch::Receiver<Option<Arc<Template>>>,
    mut ready: watch::Receiver<bool>,
    mut upstream: watch::Receiver<Option<Arc<Template>>>,
    publish: watch::Sender<Option<Arc<Template>>>,
    status: SharedUpstream,
    coin: String,
    shutdown: CancellationToken,
) {
    // What miners were last sent; `Source::None` once neither source has work, so the
    // next work of either is a fresh start.
    let mut last = (Source::None, u64::MAX);
    loop {
        let node_ready = *ready.borrow_and_update();
        let own_t = own.borrow_and_update().clone();
        let up_t = upstream.borrow_and_update().clone();
        let chosen = match (node_ready, own_t, up_t) {
            (true, Some(t), _) => Some((Source::Own, t)),
            (_, _, Some(t)) => Some((Source::Upstream, t)),
            _ => None,
        };
        match chosen {
            Some((source, t)) if last != (source, t.id) => {
                let switched = last.0 != source;
                if switched {
                    tracing::info!(%coin, from = ?source, "miners now get work from a new source (clean job)");
                }
                let id = t.id;
                let t = if switched && !t.clean { Arc::new(t.restarted()) } else { t };
                status.lock().expect("upstream lock").mining_from = source;
                publish.send_replace(Some(t));
                last = (source, id);
            }
            Some(_) => {}
            // Miners keep their last job (their shares of it go nowhere) until work comes.
            None => {
                last.0 = Source::None;
                status.lock().expect("upstream lock").mining_from = Source::None;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            r = own.changed() => if r.is_err() { return },
            r = ready.changed() => if r.is_err() { return },
            r = upstream.changed() => if r.is_err() { return },
        }
    }
}

/// Upstream connections a coin opens at most by default (`coins.<id>.upstream_max_connections`,
/// checked by minebox-settings): the owner's and 7 miners' own.
pub const DEFAULT_MAX_CONNECTIONS: usize = minebox_settings::coins::DEFAULT_UPSTREAM_MAX_CONNECTIONS;

/// How long a miner's own pool connection stays open after its last miner leaves by default
/// (`coins.<id>.upstream_grace_secs`): a miner reconnecting, or restarting, finds it still there.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(minebox_settings::coins::DEFAULT_UPSTREAM_GRACE_SECS);

/// A coin's pool connections: the owner's, always open, and one per miner address (a miner
/// authorized with its own address, as `payout_policy = "miner"` allows), opened when its
/// first miner authorizes and closed [`Upstreams::grace`] after its last one leaves. Each
/// is authorized as its address, so a block found through it pays that address from the
/// pool's coinbase; the box never moves a miner's reward to the owner, nor the reverse.
pub struct Upstreams {
    /// The owner's connection; its chooser publishes to [`crate::pool::Pool::work`].
    pub owner: Link,
    /// The owner's connection settings, the model for the others.
    config: UpstreamConfig,
    /// The node's templates and readiness, which every address's chooser follows too.
    own: watch::Receiver<Option<Arc<Template>>>,
    ready: watch::Receiver<bool>,
    ids: Arc<AtomicU64>,
    /// Upstream connections of the coin at most, the owner's included.
    pub max_connections: usize,
    pub grace: Duration,
    by_address: Mutex<AddressBook>,
    shutdown: CancellationToken,
}

#[derive(Default)]
struct AddressBook {
    entries: std::collections::HashMap<ScriptBuf, AddressEntry>,
    /// Connections of the box's miners that wait for the node because the limit is reached.
    waiting: usize,
    generation: u64,
}

struct AddressEntry {
    address: String,
    miners: usize,
    generation: u64,
    link: Arc<Link>,
    work: watch::Receiver<Option<Arc<Template>>>,
    stop: CancellationToken,
}

/// A miner connection's use of its address's pool connection; the last one dropped starts
/// the grace period.
pub struct Lease {
    upstreams: Arc<Upstreams>,
    script: ScriptBuf,
    pub link: Arc<Link>,
    /// The address's work: the node's templates when ready, else its pool's jobs.
    pub work: watch::Receiver<Option<Arc<Template>>>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.upstreams.release(&self.script);
    }
}

/// A miner connection waiting for the node because the coin's pool connections are all
/// taken; counted in the API while it lives.
pub struct Waiting {
    upstreams: Arc<Upstreams>,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.upstreams.by_address.lock().expect("upstream lock").waiting -= 1;
    }
}

/// A miner's own pool connection as the API shows it.
pub use minebox_api::stratum::AddressPoolLink as AddressStatus;

impl Upstreams {
    /// Starts the owner's connection and its chooser, which publishes to `publish`.
    pub fn start(
        config: UpstreamConfig,
        own: watch::Receiver<Option<Arc<Template>>>,
        ready: watch::Receiver<bool>,
        publish: watch::Sender<Option<Arc<Template>>>,
        max_connections: usize,
        grace: Duration,
        shutdown: CancellationToken,
    ) -> Arc<Upstreams> {
        let ids = template_ids();
        let (owner, _) = spawn_connection(&config, &own, &ready, Some(publish), &ids, &shutdown);
        Arc::new(Upstreams {
            owner,
            config,
            own,
            ready,
            ids,
            max_connections: max_connections.max(1),
            grace,
            by_address: Mutex::default(),
            shutdown,
        })
    }

    /// The script the owner's connection pays: miners paying it use [`Upstreams::owner`].
    pub fn owner_script(&self) -> &ScriptBuf {
        &self.config.owner
    }

    /// A miner mining to `address` (paying `script`, not the owner's) joins its address's
    /// pool connection, opened now if it is the first; or, with every connection of the
    /// coin taken, waits for the node ([`Waiting`], shown in the API).
    pub fn join(self: &Arc<Self>, address: &str, script: &ScriptBuf) -> Result<Lease, Waiting> {
        let mut book = self.by_address.lock().expect("upstream lock");
        if let Some(e) = book.entries.get_mut(script) {
            e.miners += 1;
            return Ok(Lease {
                upstreams: self.clone(),
                script: script.clone(),
                link: e.link.clone(),
                work: e.work.clone(),
            });
        }
        // The owner's connection is one of them.
        if book.entries.len() + 1 >= self.max_connections {
            book.waiting += 1;
            return Err(Waiting { upstreams: self.clone() });
        }
        let config =
            UpstreamConfig { user: format!("{address}.minebox"), owner: script.clone(), ..self.config.clone() };
        let stop = self.shutdown.child_token();
        let (link, work) = spawn_connection(&config, &self.own, &self.ready, None, &self.ids, &stop);
        tracing::info!(coin = %self.config.coin, %address, upstream = %self.config.url, "a pool connection for a miner's own address");
        book.generation += 1;
        let link = Arc::new(link);
        let generation = book.generation;
        book.entries.insert(
            script.clone(),
            AddressEntry {
                address: address.to_string(),
                miners: 1,
                generation,
                link: link.clone(),
                work: work.clone(),
                stop,
            },
        );
        Ok(Lease { upstreams: self.clone(), script: script.clone(), link, work })
    }

    fn release(self: &Arc<Self>, script: &ScriptBuf) {
        let mut book = self.by_address.lock().expect("upstream lock");
        let Some(e) = book.entries.get_mut(script) else { return };
        e.miners -= 1;
        if e.miners > 0 {
            return;
        }
        let generation = e.generation;
        let (me, script, grace) = (self.clone(), script.clone(), self.grace);
        tokio::spawn(async move {
            tokio::select! {
                _ = me.shutdown.cancelled() => return,
                _ = tokio::time::sleep(grace) => {}
            }
            let mut book = me.by_address.lock().expect("upstream lock");
            // A miner that came back meanwhile keeps it; a newer connection is not this one's.
            if book.entries.get(&script).is_some_and(|e| e.miners == 0 && e.generation == generation) {
                let e = book.entries.remove(&script).expect("just seen");
                e.stop.cancel();
                tracing::info!(coin = %me.config.coin, address = %e.address, "the last miner of an address left: its pool connection closed");
            }
        });
    }

    /// The miners' own connections, for the API.
    pub fn addresses(&self) -> Vec<AddressStatus> {
        let book = self.by_address.lock().expect("upstream lock");
        let mut list: Vec<AddressStatus> = book
            .entries
            .values()
            .map(|e| AddressStatus {
                address: e.address.clone(),
                miners: e.miners,
                link: e.link.status.lock().expect("upstream lock").clone(),
            })
            .collect();
        list.sort_by(|a, b| a.address.cmp(&b.address));
        list
    }

    /// Miner connections waiting for the node because every pool connection is taken.
    pub fn waiting(&self) -> usize {
        self.by_address.lock().expect("upstream lock").waiting
    }
}

/// Starts one pool connection and the chooser between its jobs and the node's templates;
/// the chooser publishes to `publish`, or to a new channel whose receiver is returned.
fn spawn_connection(
    config: &UpstreamConfig,
    own: &watch::Receiver<Option<Arc<Template>>>,
    ready: &watch::Receiver<bool>,
    publish: Option<watch::Sender<Option<Arc<Template>>>>,
    ids: &Arc<AtomicU64>,
    stop: &CancellationToken,
) -> (Link, watch::Receiver<Option<Arc<Template>>>) {
    let status = Arc::new(Mutex::new(UpstreamStatus { url: config.url.clone(), ..Default::default() }));
    let (up_tx, up_rx) = watch::channel(None);
    let (submit_tx, submit_rx) = mpsc::channel(256);
    let publish = publish.unwrap_or_else(|| watch::channel(None).0);
    let work = publish.subscribe();
    tokio::spawn(run(config.clone(), up_tx, submit_rx, status.clone(), ids.clone(), stop.clone()));
    tokio::spawn(choose_source(
        own.clone(),
        ready.clone(),
        up_rx,
        publish,
        status.clone(),
        config.coin.clone(),
        stop.clone(),
    ));
    (Link { submit: submit_tx, status }, work)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> UpstreamConfig {
        UpstreamConfig {
            coin: "btc".into(),
            url: "stratum+tcp://pool:3333".into(),
            authority: "pool:3333".into(),
            user: "owner.minebox".into(),
            owner: ScriptBuf::new_op_return([1u8; 4]),
            miner_extranonce2_len: 4,
            pow_limit: Target::MAX_ATTAINABLE_MAINNET,
            idle_timeout: Duration::from_secs(60),
            version_mask: 0x1fff_e000,
            node: None,
        }
    }

    fn split(padding: usize, pool_mask: u32) -> Split {
        Split { padding, pool_mask, miner_extranonce: None }
    }

    fn notify(nbits: &str) -> Value {
        json!(["j1", "00".repeat(32), "01000000", "ffffffff", [], "20000000", nbits, "65000000", true])
    }

    #[test]
    fn a_job_for_an_easier_chain_is_refused_and_a_mainnet_one_taken() {
        let ids = AtomicU64::new(UPSTREAM_TEMPLATE_IDS);
        let regtest = notify("207fffff");
        assert!(matches!(
            notify_template(&config(), 1, &regtest, &[9; 4], &split(0, 0x1fffe000), 1.0, &ids),
            Err(NotifyError::OtherChain(_))
        ));
        let t =
            notify_template(&config(), 1, &notify("17034219"), &[9; 4], &split(2, 0x1fffe000), 1.0, &ids).ok().unwrap();
        let up = t.upstream.unwrap();
        assert_eq!(up.coinb1, [1, 0, 0, 0, 9, 9, 9, 9, 0, 0], "pool's coinb1, its extranonce1, padding");
    }

    #[test]
    fn the_height_is_read_from_the_coinbase_as_core_writes_it() {
        let coinbase = |script: &[u8]| [&[1u8, 0, 0, 0, 1][..], &[0u8; 36], &[script.len() as u8], script].concat();
        assert_eq!(bip34_height(&coinbase(&[0x53, 0x00])), 3, "heights 1-16 are OP_1..OP_16");
        assert_eq!(bip34_height(&coinbase(&[0x01, 0x11, 0x00])), 17);
        assert_eq!(bip34_height(&coinbase(&[0x03, 0x40, 0x0d, 0x03])), 200_000);
        assert_eq!(bip34_height(&coinbase(&[0x00])), 0, "unreadable: the chain check is skipped");
    }

    #[test]
    fn a_pool_extranonce2_too_small_to_split_is_refused_with_the_sizes() {
        let status = SharedUpstream::default();
        let mut sub = Subscription::default();
        let line = r#"{"id":2,"result":[[],"aabbccdd",3],"error":null}"#;
        let e = on_line(&config(), 1, line, &mut sub, &status, &AtomicU64::new(0)).err().unwrap();
        assert!(matches!(e, Dropped::ExtranonceTooSmall { got: 3, need: 8 }), "{e}");
        assert!(e.to_string().contains("or 4 for miners that accept mining.set_extranonce"), "{e}");
        // 4 bytes (many pools): miners that accept mining.set_extranonce get 2 + 2.
        let line = r#"{"id":2,"result":[[],"aabbccdd",4],"error":null}"#;
        assert!(on_line(&config(), 1, line, &mut sub, &status, &AtomicU64::new(0)).is_ok());
        let narrow = MinerExtranonce { extranonce1_len: 2, extranonce2_len: 2 };
        assert_eq!((sub.miner_extranonce, sub.padding), (Some(narrow), 0));
        // Never more than 8 bytes for a miner to roll.
        let eleven = MinerExtranonce::for_pool(11).unwrap();
        assert_eq!((eleven.extranonce1_len, eleven.extranonce2_len), (3, 8));
        let line = r#"{"id":2,"result":[[],"aabbccdd",12],"error":null}"#;
        assert!(on_line(&config(), 1, line, &mut sub, &status, &AtomicU64::new(0)).is_ok());
        assert_eq!((sub.padding, sub.miner_extranonce), (4, None));
    }

    #[test]
    fn the_pools_version_rolling_answer_sets_the_bits_miners_may_roll_on_its_jobs() {
        let ids = AtomicU64::new(UPSTREAM_TEMPLATE_IDS);
        for (answer, mask) in [
            (
                r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"1e000000"},"error":null}"#,
                0x1e00_0000,
            ),
            (r#"{"id":1,"result":{"version-rolling":false},"error":null}"#, 0),
            (r#"{"id":1,"result":null,"error":[20,"unknown method",null]}"#, 0),
            // A pool granting bits the box never asked for: only the box's count.
            (
                r#"{"id":1,"result":{"version-rolling":true,"version-rolling.mask":"ffffffff"},"error":null}"#,
                0x1fff_e000,
            ),
        ] {
            let (status, mut sub) = (SharedUpstream::default(), Subscription::default());
            on_line(&config(), 1, answer, &mut sub, &status, &ids).ok().unwrap();
            assert_eq!(sub.pool_mask, Some(mask), "{answer}");
            // The pool's version keeps every bit miners may not roll.
            let t =
                notify_template(&config(), 1, &notify("17034219"), &[9; 4], &split(0, mask), 1.0, &ids).ok().unwrap();
            assert_eq!(t.upstream.unwrap().version_mask, mask);
        }
        let mut pool_version = notify("17034219");
        pool_version[5] = json!("20002000");
        let t = notify_template(&config(), 1, &pool_version, &[9; 4], &split(0, 0), 1.0, &ids).ok().unwrap();
        assert_eq!(t.version, 0x2000_2000, "a pool without version rolling: its version as it is");
    }

    #[test]
    fn a_job_sent_before_the_authorize_answer_is_used_once_authorized() {
        let status = SharedUpstream::default();
        let mut sub = Subscription::default();
        let ids = AtomicU64::new(UPSTREAM_TEMPLATE_IDS);
        let c = config();
        let mut feed = |line: &str| on_line(&c, 1, line, &mut sub, &status, &ids).ok().unwrap();
        feed(r#"{"id":2,"result":[[],"aabbccdd",8],"error":null}"#);
        feed(r#"{"id":null,"method":"mining.set_difficulty","params":[10000]}"#);
        let early = json!({"id": null, "method": "mining.notify", "params": notify("17034219")}).to_string();
        assert!(matches!(feed(&early), Step::Nothing));
        let Step::Job(t) = feed(r#"{"id":3,"result":true,"error":null}"#) else { panic!("no job after authorize") };
        assert_eq!(t.upstream.as_ref().unwrap().difficulty, 10000.0);
    }

    #[test]
    fn absurd_difficulties_and_garbage_drop_the_connection() {
        let status = SharedUpstream::default();
        let mut sub = Subscription::default();
        for line in [
            r#"{"id":null,"method":"mining.set_difficulty","params":[-1]}"#,
            r#"{"id":null,"method":"mining.set_difficulty","params":[1e300]}"#,
            r#"{"id":null,"method":"mining.set_difficulty","params":["x"]}"#,
            "HTTP/1.1 400 Bad Request",
        ] {
            assert!(on_line(&config(), 1, line, &mut sub, &status, &AtomicU64::new(0)).is_err(), "{line}");
        }
    }
}
