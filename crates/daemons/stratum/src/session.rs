//! One miner's session: the protocol state machine, free of sockets and clocks.
//!
//! A connection feeds it requests and new templates; it answers with the lines to send
//! and, rarely, a found block. Keeping it pure makes every protocol rule testable without
//! a network, and keeps the connection task a thin loop.

use crate::job::{Job, JobBook, Template};
use crate::protocol::{self, Configure, ErrorCode, Rejection, Request, Submit};
use crate::share::{self, Hashed};
use crate::share_log::{Outcome, Port};
use crate::stats::{Registry, SharedWorker};
use crate::vardiff::{Vardiff, VardiffConfig};
use bitcoin::hashes::Hash;
use bitcoin::ScriptBuf;
use serde_json::{json, Map, Value};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Decides whether a mining.authorize user names a payout address of this coin and network.
pub trait PayoutPolicy: Send + Sync {
    /// The output script paying `address`, or a message telling the user what is wrong.
    fn payout_script(&self, address: &str) -> Result<ScriptBuf, String>;
    /// The owner's address (`coins.<id>.payout_address`) and payout policy; none in flags
    /// mode without `--payout-address`, where every miner must send its own address.
    fn owner(&self) -> Option<&crate::payout::Owner> {
        None
    }
}

/// What every session of one coin's server shares.
pub struct PoolContext {
    pub coin: String,
    pub payouts: Box<dyn PayoutPolicy>,
    pub jobs: JobBook,
    pub stats: Arc<Registry>,
    pub vardiff: VardiffConfig,
    /// Version bits miners may roll (BIP320's 0x1fffe000 by default).
    pub version_mask: u32,
    /// Set on a coin's pool port (PPLNS): miners authorize as `user.worker` of the box's
    /// registered users, and jobs pay the split (crate::pplns::desk).
    pub pplns: Option<Arc<crate::pplns::desk::PplnsDesk>>,
    /// Where every judged share is recorded (the share history).
    pub shares: Arc<crate::share_log::ShareLog>,
}

impl PoolContext {
    /// Adds a judged share to the share history (a buffer in memory; never waits).
    fn log_share(&self, worker: &str, outcome: Outcome, difficulty: f64, share_difficulty: f64, unix_now: f64) {
        self.shares.record(crate::share_log::Share {
            at: unix_now.max(0.0) as i64,
            coin: self.coin.clone(),
            worker: worker.to_string(),
            port: if self.pplns.is_some() { Port::Pool } else { Port::Solo },
            outcome,
            difficulty,
            share_difficulty,
        });
    }
}

/// Jobs a session remembers: enough for a miner finishing work on the last few jobs
/// (template refreshes every 30 s), small enough to bound memory per miner.
const JOBS_REMEMBERED: usize = 8;
/// Share fingerprints remembered for duplicate detection per session.
const SHARES_REMEMBERED: usize = 4096;
/// Worker names one connection may authorize (a proxy may carry a few).
const WORKERS_PER_CONNECTION: usize = 16;

struct SentJob {
    wire_id: String,
    job: Arc<Job>,
    /// The difficulty in force when the job was sent: its shares are judged by it.
    difficulty: f64,
}

/// A share that met the network target: everything needed to build and submit the block.
#[derive(Debug, Clone)]
pub struct FoundBlock {
    pub job: Arc<Job>,
    pub extranonce1: [u8; 4],
    pub extranonce2: Vec<u8>,
    pub hashed: Hashed,
    pub worker: String,
}

/// What handling one input produced.
#[derive(Debug, Default)]
pub struct Output {
    pub lines: Vec<String>,
    pub found: Option<FoundBlock>,
    /// The session cannot continue (e.g. too many workers); close after sending `lines`.
    pub close: bool,
    /// A share of upstream work that meets the pool's difficulty: to be sent to the pool.
    pub forward: Option<crate::upstream::Forward>,
    /// A share was accepted on the node's own work (counted per coin for the status page,
    /// apart from shares on the pool's work).
    pub own_node_share: bool,
    /// A share of upstream work rolling version bits the pool does not allow: refused, not
    /// sent (the pool would reject it), counted with the pool connection's dropped shares.
    pub not_sent_to_pool: bool,
}

impl Output {
    fn line(mut self, l: String) -> Self {
        self.lines.push(l);
        self
    }
}

pub struct Session {
    pub extranonce1: [u8; 4],
    /// The miner's IP address, for the per-address rate of new worker names.
    peer: Option<std::net::IpAddr>,
    subscribed: bool,
    user_agent: String,
    /// Negotiated version-rolling mask; 0 when the miner does not roll.
    version_mask: u32,
    /// The mask the miner was last told: the negotiated one, or narrower on a pool's work.
    told_mask: u32,
    /// The miner accepts `mining.set_extranonce` (it sent `mining.extranonce.subscribe`).
    extranonce_subscribed: bool,
    /// The extranonce1 length the miner was last told by `mining.set_extranonce`; `None`
    /// while it mines with the one it subscribed with.
    told_extranonce1_len: Option<usize>,
    payout: Option<(String, ScriptBuf)>,
    /// On a pool port: the registered user this connection mines for.
    pool_user: Option<crate::pplns::UserId>,
    workers: Vec<(String, SharedWorker)>,
    vardiff: Vardiff,
    /// The last difficulty told to the miner, if any.
    announced: Option<f64>,
    jobs: VecDeque<SentJob>,
    next_job: u32,
    seen: HashSet<u64>,
    seen_order: VecDeque<u64>,
    pub best_share: f64,
    pub accepted: u64,
    pub rejected: u64,
}

impl Session {
    pub fn new(extranonce1: [u8; 4], ctx: &PoolContext, now: Instant) -> Session {
        Session {
            extranonce1,
            peer: None,
            subscribed: false,
            user_agent: String::new(),
            version_mask: 0,
            told_mask: 0,
            extranonce_subscribed: false,
            told_extranonce1_len: None,
            payout: None,
            pool_user: None,
            workers: Vec::new(),
            vardiff: Vardiff::new(ctx.vardiff.clone(), now),
            announced: None,
            jobs: VecDeque::new(),
            next_job: 0,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            best_share: 0.0,
            accepted: 0,
            rejected: 0,
        }
    }

    /// The address the miner connects from (new worker names are rate limited per address).
    pub fn set_peer(&mut self, ip: std::net::IpAddr) {
        self.peer = Some(ip);
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscribed
    }

    pub fn is_authorized(&self) -> bool {
        !self.workers.is_empty()
    }

    pub fn difficulty(&self) -> f64 {
        self.vardiff.difficulty()
    }

    pub fn user_agent(&self) -> &str {
        &self.user_agent
    }

    pub fn worker_names(&self) -> impl Iterator<Item = &str> {
        self.workers.iter().map(|(n, _)| n.as_str())
    }

    /// The address this connection's blocks pay and its script, once authorized.
    pub fn payout(&self) -> Option<(&str, &ScriptBuf)> {
        self.payout.as_ref().map(|(a, s)| (a.as_str(), s))
    }

    fn ready(&self) -> bool {
        self.subscribed && self.payout.is_some()
    }

    /// Handles one request. `template` is the current work, if the node has given any.
    pub fn handle(
        &mut self,
        ctx: &PoolContext,
        id: &Value,
        request: Request,
        template: Option<&Arc<Template>>,
        now: Instant,
        unix_now: f64,
    ) -> Output {
        match request {
            Request::Configure(c) => Output::default().line(protocol::reply(id, self.configure(&c, ctx, now))),
            Request::Subscribe { user_agent, .. } => {
                self.subscribed = true;
                if let Some(ua) = user_agent {
                    self.user_agent = ua;
                }
                let en1 = hex::encode(self.extranonce1);
                let result = json!([
                    [["mining.set_difficulty", en1], ["mining.notify", en1]],
                    en1,
                    ctx.jobs.rules().extranonce2_len
                ]);
                let out = Output::default().line(protocol::reply(id, result));
                self.start_work(ctx, out, template, false)
            }
            Request::Authorize { user } => self.authorize(ctx, id, &user, template, unix_now),
            Request::SuggestDifficulty(d) => {
                self.vardiff.suggest(d, now);
                let out = Output::default().line(protocol::reply(id, Value::Bool(true)));
                // Already mining: the new difficulty applies from a fresh copy of the job.
                self.start_work(ctx, out, template, false)
            }
            Request::ExtranonceSubscribe => {
                // On the node's work extranonce1 never changes; on a pool's with a small
                // extranonce2 the miner is told a shorter one (crate::upstream).
                self.extranonce_subscribed = true;
                let out = Output::default().line(protocol::reply(id, Value::Bool(true)));
                // ESP-Miner subscribes after its authorize: pool work it could not take
                // then goes out now rather than with the pool's next job.
                match template {
                    Some(t) if t.upstream.as_ref().is_some_and(|u| u.miner_extranonce.is_some()) => {
                        self.start_work(ctx, out, template, true)
                    }
                    _ => out,
                }
            }
            Request::Submit(s) => self.submit(ctx, id, s, template, now, unix_now),
            Request::Ping => Output::default().line(protocol::reply(id, Value::String("pong".into()))),
            // The miner answering the server's keepalive ping: nothing to say back.
            Request::Answer => Output::default(),
            Request::Unknown(method) => Output::default()
                .line(protocol::reply_error(id, &Rejection::new(ErrorCode::Other, format!("unknown method {method}")))),
        }
    }

    fn configure(&mut self, c: &Configure, ctx: &PoolContext, now: Instant) -> Value {
        let mut result = Map::new();
        for ext in &c.extensions {
            match ext.as_str() {
                "version-rolling" => {
                    let miner_mask = c.version_rolling_mask.unwrap_or(u32::MAX);
                    let mask = ctx.version_mask & miner_mask;
                    if mask == 0 {
                        result.insert(ext.clone(), Value::Bool(false));
                        continue;
                    }
                    if let Some(min) = c.version_rolling_min_bits {
                        if mask.count_ones() < min {
                            // BIP310: the miner can still work in a degraded mode; the
                            // server must not drop it, only say so.
                            tracing::warn!(
                                mask = format!("{mask:08x}"),
                                min,
                                "miner wants more version bits than the server allows"
                            );
                        }
                    }
                    self.version_mask = mask;
                    self.told_mask = mask;
                    result.insert(ext.clone(), Value::Bool(true));
                    result.insert("version-rolling.mask".into(), Value::String(format!("{mask:08x}")));
                }
                "minimum-difficulty" => match c.minimum_difficulty {
                    Some(d) => {
                        self.vardiff.suggest(d, now);
                        result.insert(ext.clone(), Value::Bool(true));
                    }
                    None => {
                        result.insert(ext.clone(), Value::Bool(false));
                    }
                },
                "subscribe-extranonce" => {
                    self.extranonce_subscribed = true;
                    result.insert(ext.clone(), Value::Bool(true));
                }
                "info" => {
                    result.insert(ext.clone(), Value::Bool(true));
                }
                _ => {
                    result.insert(ext.clone(), Value::Bool(false));
                }
            }
        }
        Value::Object(result)
    }

    fn authorize(
        &mut self,
        ctx: &PoolContext,
        id: &Value,
        user: &str,
        template: Option<&Arc<Template>>,
        unix_now: f64,
    ) -> Output {
        let refuse = |message: String| {
            Output::default().line(protocol::reply_false(id, &Rejection::new(ErrorCode::Unauthorized, message)))
        };
        let mut pool_user = None;
        let resolved = match &ctx.pplns {
            // A pool port pays registered users only: the login names one, never an address.
            Some(desk) => match desk.login(user) {
                Ok(l) => {
                    pool_user = Some(l.user);
                    crate::payout::Resolved {
                        worker: user.chars().take(64).collect(),
                        address: l.address,
                        script: l.script,
                        paid_to: minebox_api::stratum::PaidTo::Miner,
                    }
                }
                Err(why) => return refuse(why),
            },
            None => match crate::payout::resolve(ctx.payouts.as_ref(), ctx.payouts.owner(), user) {
                Ok(r) => r,
                Err(why) => return refuse(why),
            },
        };
        let address = resolved.address.as_str();
        if let Some((existing, _)) = &self.payout {
            if existing != address {
                return refuse(format!(
                    "this connection already mines for {existing}; open another connection for {address}"
                ));
            }
        }
        let name = resolved.worker.clone();
        if !self.workers.iter().any(|(n, _)| *n == name) {
            if self.workers.len() >= WORKERS_PER_CONNECTION {
                return refuse(format!("at most {WORKERS_PER_CONNECTION} workers per connection"));
            }
            // A full registry forgets its least recently seen idle worker; only a burst
            // of new names from one address is refused.
            let worker = match ctx.stats.admit(&ctx.coin, &name, self.peer, unix_now) {
                Ok(w) => w,
                Err(why) => return refuse(why.to_string()),
            };
            {
                let mut w = worker.lock().expect("worker lock");
                w.connections += 1;
                w.user_agent = self.user_agent.clone();
                w.payout_address = address.to_string();
                w.paid_to = Some(resolved.paid_to);
            }
            self.workers.push((name, worker));
        }
        let first = self.payout.is_none();
        self.payout = Some((address.to_string(), resolved.script));
        if pool_user.is_some() {
            self.pool_user = pool_user;
        }
        let out = Output::default().line(protocol::reply(id, Value::Bool(true)));
        if first {
            self.start_work(ctx, out, template, true)
        } else {
            out
        }
    }

    /// Sends the difficulty and the current job once the session is subscribed and
    /// authorized (in whichever order those came).
    fn start_work(&mut self, ctx: &PoolContext, out: Output, template: Option<&Arc<Template>>, clean: bool) -> Output {
        if !self.ready() {
            return out;
        }
        match template {
            Some(t) => {
                let clean = clean || self.jobs.is_empty();
                self.send_job(ctx, out, t, clean)
            }
            None => out,
        }
    }

    /// New work from the node: a new block (clean) or a refresh of the same one.
    pub fn on_template(&mut self, ctx: &PoolContext, template: &Arc<Template>, now: Instant) -> Output {
        if !self.ready() {
            return Output::default();
        }
        self.vardiff.on_tick(now);
        if template.clean {
            self.jobs.clear();
            self.seen.clear();
            self.seen_order.clear();
        }
        let clean = template.clean || self.jobs.is_empty();
        self.send_job(ctx, Output::default(), template, clean)
    }

    /// The extranonce1 the miner uses on a job: its own, or its last bytes on a pool's work
    /// with a small extranonce2.
    fn extranonce1_for(&self, template: &Template) -> &[u8] {
        match template.upstream.as_ref().and_then(|u| u.miner_extranonce) {
            Some(n) => &self.extranonce1[self.extranonce1.len() - n.extranonce1_len..],
            None => &self.extranonce1,
        }
    }

    /// The version bits the miner may roll on a job: the negotiated ones, within the pool's
    /// on its work.
    fn mask_for(&self, template: &Template) -> u32 {
        template.upstream.as_ref().map_or(self.version_mask, |u| self.version_mask & u.version_mask)
    }

    fn send_job(&mut self, ctx: &PoolContext, mut out: Output, template: &Arc<Template>, clean: bool) -> Output {
        let mut clean = clean;
        let narrow = template.upstream.as_ref().and_then(|u| u.miner_extranonce);
        // A pool's work with a small extranonce2 fits only miners that take a new one; the
        // others keep their last job until the node's work comes (the API says why).
        if narrow.is_some() && !self.extranonce_subscribed {
            return out;
        }
        let Some((_, script)) = &self.payout else { return out };
        let job = match &ctx.pplns {
            Some(desk) => desk.job_for(template, script, &ctx.jobs),
            None => ctx.jobs.job_for(template, script),
        };
        let job = match job {
            Ok(j) => j,
            // Another address's pool work (the owner's, before this miner joined its own
            // address's connection, or with the connection limit reached): this miner keeps
            // its last job until work paying its address comes.
            Err(crate::job::JobError::OtherAddress) => return out,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a coinbase; check the coinbase tag and extranonce settings");
                return out;
            }
        };
        let extranonce1_len = narrow.map(|n| n.extranonce1_len);
        if extranonce1_len != self.told_extranonce1_len {
            let en2 = narrow.map_or(ctx.jobs.rules().extranonce2_len, |n| n.extranonce2_len);
            out.lines.push(protocol::set_extranonce(self.extranonce1_for(template), en2));
            self.told_extranonce1_len = extranonce1_len;
            // Earlier jobs were cut for the other extranonce: their shares no longer fit.
            self.jobs.clear();
            self.seen.clear();
            self.seen_order.clear();
            clean = true;
        }
        // Miners negotiated version rolling with the box, not the pool: on a pool that
        // allows fewer bits they are told its mask, and the box's again on the node's work.
        let mask = self.mask_for(template);
        if self.version_mask != 0 && mask != self.told_mask {
            out.lines.push(protocol::set_version_mask(mask));
            self.told_mask = mask;
        }
        let difficulty = self.vardiff.difficulty();
        if self.announced != Some(difficulty) {
            out.lines.push(protocol::set_difficulty(difficulty));
            self.announced = Some(difficulty);
            for (_, w) in &self.workers {
                w.lock().expect("worker lock").difficulty = difficulty;
            }
        }
        self.next_job = self.next_job.wrapping_add(1);
        let wire_id = format!("{:x}", self.next_job);
        out.lines.push(job.notify_line(&wire_id, clean));
        if self.jobs.len() == JOBS_REMEMBERED {
            self.jobs.pop_front();
        }
        self.jobs.push_back(SentJob { wire_id, job, difficulty });
        out
    }

    fn reject(
        &mut self,
        ctx: &PoolContext,
        id: &Value,
        worker: Option<&SharedWorker>,
        r: Rejection,
        unix_now: f64,
    ) -> Output {
        self.rejected += 1;
        let name = match worker {
            Some(w) => {
                let mut w = w.lock().expect("worker lock");
                w.record_rejected(r.code, unix_now);
                w.worker.clone()
            }
            None => {
                ctx.stats.reject_anonymous(&ctx.coin, r.code);
                String::new()
            }
        };
        // Judged by the difficulty in force (a refused share's job may be unknown).
        ctx.log_share(&name, Outcome::Rejected(r.code), self.vardiff.difficulty(), 0.0, unix_now);
        Output::default().line(protocol::reply_error(id, &r))
    }

    fn submit(
        &mut self,
        ctx: &PoolContext,
        id: &Value,
        s: Submit,
        template: Option<&Arc<Template>>,
        now: Instant,
        unix_now: f64,
    ) -> Output {
        if !self.subscribed {
            return self.reject(
                ctx,
                id,
                None,
                Rejection::new(ErrorCode::NotSubscribed, "not subscribed: send mining.subscribe first"),
                unix_now,
            );
        }
        let Some(worker) = self.workers.iter().find(|(n, _)| *n == s.worker).map(|(_, w)| w.clone()) else {
            return self.reject(
                ctx,
                id,
                None,
                Rejection::new(
                    ErrorCode::Unauthorized,
                    format!("worker {} is not authorized on this connection", s.worker),
                ),
                unix_now,
            );
        };
        let Some(sent) = self.jobs.iter().find(|j| j.wire_id == s.job_id) else {
            return self.reject(
                ctx,
                id,
                Some(&worker),
                Rejection::new(ErrorCode::Stale, "job not found (stale)"),
                unix_now,
            );
        };
        // A job from before the current block is stale even if still remembered.
        if let Some(t) = template {
            if sent.job.template.prev_hash != t.prev_hash {
                return self.reject(
                    ctx,
                    id,
                    Some(&worker),
                    Rejection::new(ErrorCode::Stale, "stale: a new block arrived"),
                    unix_now,
                );
            }
        }
        let job = sent.job.clone();
        let assigned = sent.difficulty;
        let mask = self.mask_for(&job.template);
        if let (Some(up), Some(bits)) = (&job.template.upstream, s.version_bits) {
            if bits & self.version_mask & !up.version_mask != 0 {
                let mut out = self.reject(
                    ctx,
                    id,
                    Some(&worker),
                    Rejection::new(
                        ErrorCode::Other,
                        format!(
                            "version bits {bits:08x} outside the pool's mask {:08x}: not sent to the pool",
                            up.version_mask
                        ),
                    ),
                    unix_now,
                );
                out.not_sent_to_pool = true;
                return out;
            }
        }
        let extranonce1 = self.extranonce1_for(&job.template).to_vec();
        let hashed = match share::hash_submission(&job, &extranonce1, &s, mask, unix_now as u32) {
            Ok(h) => h,
            Err(r) => return self.reject(ctx, id, Some(&worker), r, unix_now),
        };
        let fingerprint = u64::from_le_bytes(hashed.hash.to_byte_array()[..8].try_into().expect("8 bytes"));
        if self.seen.contains(&fingerprint) {
            return self.reject(
                ctx,
                id,
                Some(&worker),
                Rejection::new(ErrorCode::Duplicate, "duplicate share"),
                unix_now,
            );
        }
        // A block is worth submitting even if, by chance, it is below the share target
        // (it cannot be: the network target is always harder, but never lose a block to a
        // configuration mistake).
        if !hashed.is_block && !share::meets(hashed.difficulty, assigned) {
            return self.reject(
                ctx,
                id,
                Some(&worker),
                Rejection::new(
                    ErrorCode::LowDifficulty,
                    format!("low difficulty share ({:.6} < {assigned})", hashed.difficulty),
                ),
                unix_now,
            );
        }
        if self.seen_order.len() == SHARES_REMEMBERED {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(fingerprint);
        self.seen_order.push_back(fingerprint);
        self.accepted += 1;
        self.best_share = self.best_share.max(hashed.difficulty);
        {
            let mut w = worker.lock().expect("worker lock");
            w.record_accepted(hashed.difficulty, assigned, unix_now);
            ctx.log_share(&w.worker, Outcome::Accepted, assigned, hashed.difficulty, unix_now);
            // A block of upstream work is the pool's to submit; it is counted there.
            if hashed.is_block && job.template.upstream.is_none() {
                w.blocks += 1;
            }
        }
        if let (Some(desk), Some(user), None) = (&ctx.pplns, self.pool_user, &job.template.upstream) {
            // Counted at the difficulty it was asked for (its expected work), as PPLNS does.
            desk.record_share(user, assigned);
        }
        let mut out = Output::default().line(protocol::reply(id, Value::Bool(true)));
        out.own_node_share = job.template.upstream.is_none();
        if let Some(up) = &job.template.upstream {
            // Judged here against the miner's own difficulty (vardiff as always); only what
            // meets the pool's goes to the pool, which answers the box, not the miner.
            if hashed.is_block || share::meets(hashed.difficulty, up.difficulty) {
                out.forward = Some(crate::upstream::Forward::new(up, &extranonce1, &s, hashed.is_block));
            }
        } else if hashed.is_block {
            out.found = Some(FoundBlock {
                job: job.clone(),
                extranonce1: self.extranonce1,
                extranonce2: s.extranonce2.clone(),
                hashed,
                worker: s.worker.clone(),
            });
        }
        if self.vardiff.on_share(now).is_some() {
            if let Some(t) = template {
                let next = self.send_job(ctx, Output::default(), t, false);
                out.lines.extend(next.lines);
            }
        }
        out
    }

    /// Called when the connection closes: the workers' connection counts go down.
    pub fn close(&mut self) {
        for (_, w) in self.workers.drain(..) {
            let mut w = w.lock().expect("worker lock");
            w.connections = w.connections.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::tests::regtest_parts;
    use crate::job::CoinbaseRules;
    use crate::protocol::parse_line;

    struct AnyP2wpkh;
    impl PayoutPolicy for AnyP2wpkh {
        fn payout_script(&self, address: &str) -> Result<ScriptBuf, String> {
            if address.starts_with("good") {
                Ok(ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([address.len() as u8; 20])))
            } else {
                Err("not a regtest address".into())
            }
        }
    }

    fn ctx() -> PoolContext {
        PoolContext {
            coin: "btc".into(),
            payouts: Box::new(AnyP2wpkh),
            jobs: JobBook::new(CoinbaseRules {
                tag: b"/t/".to_vec(),
                extranonce2_len: 8,
                min_tx_size: 0,
                segwit: true,
            }),
            stats: Arc::new(Registry::new()),
            vardiff: VardiffConfig { start: 0.001, min: 0.0001, ..Default::default() },
            version_mask: 0x1fffe000,
            pplns: None,
            shares: Default::default(),
        }
    }

    fn send(s: &mut Session, c: &PoolContext, t: Option<&Arc<Template>>, line: &str) -> Output {
        let (id, req) = parse_line(line).unwrap();
        s.handle(c, &id, req, t, Instant::now(), 1_700_000_000.0)
    }

    fn value(line: &str) -> Value {
        serde_json::from_str(line).unwrap()
    }

    fn template() -> Arc<Template> {
        Arc::new(Template::new(1, regtest_parts(101), true))
    }

    #[test]
    fn bitaxe_sequence_ends_with_difficulty_then_job() {
        let c = ctx();
        let t = template();
        let mut s = Session::new([0, 0, 0, 1], &c, Instant::now());
        let out = send(
            &mut s,
            &c,
            Some(&t),
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff","version-rolling.min-bit-count":16}]}"#,
        );
        assert_eq!(
            value(&out.lines[0])["result"],
            json!({"version-rolling": true, "version-rolling.mask": "1fffe000"})
        );
        let out =
            send(&mut s, &c, Some(&t), r#"{"id":2,"method":"mining.subscribe","params":["bitaxe/BM1366/v2.4.0"]}"#);
        let v = value(&out.lines[0]);
        assert_eq!(v["result"][1], "00000001");
        assert_eq!(v["result"][2], 8);
        assert_eq!(out.lines.len(), 1, "no job before authorize");
        let out = send(&mut s, &c, Some(&t), r#"{"id":3,"method":"mining.authorize","params":["good.bitaxe","x"]}"#);
        assert_eq!(value(&out.lines[0])["result"], true);
        assert_eq!(value(&out.lines[1])["method"], "mining.set_difficulty");
        assert_eq!(value(&out.lines[2])["method"], "mining.notify");
        assert_eq!(value(&out.lines[2])["params"][8], true);
    }

    #[test]
    fn bad_address_gets_a_clear_refusal() {
        let c = ctx();
        let mut s = Session::new([0; 4], &c, Instant::now());
        send(&mut s, &c, None, r#"{"id":2,"method":"mining.subscribe","params":[]}"#);
        let out =
            send(&mut s, &c, None, r#"{"id":3,"method":"mining.authorize","params":["bc1qwrongnetwork.rig","x"]}"#);
        let v = value(&out.lines[0]);
        assert_eq!(v["result"], false);
        assert_eq!(v["error"][0], 24);
        assert!(v["error"][1].as_str().unwrap().contains("not a regtest address"));
        assert!(!s.is_authorized());
    }

    #[test]
    fn submit_before_subscribe_or_authorize_is_refused_with_the_right_code() {
        let c = ctx();
        let mut s = Session::new([0; 4], &c, Instant::now());
        let submit =
            r#"{"id":4,"method":"mining.submit","params":["good.w","1","0000000000000000","6553f100","00000000"]}"#;
        assert_eq!(value(&send(&mut s, &c, None, submit).lines[0])["error"][0], 25);
        send(&mut s, &c, None, r#"{"id":2,"method":"mining.subscribe","params":[]}"#);
        assert_eq!(value(&send(&mut s, &c, None, submit).lines[0])["error"][0], 24);
    }

    fn mined_session() -> (PoolContext, Arc<Template>, Session, String) {
        let c = ctx();
        let t = template();
        let mut s = Session::new([0, 0, 0, 9], &c, Instant::now());
        send(&mut s, &c, Some(&t), r#"{"id":2,"method":"mining.subscribe","params":[]}"#);
        let out = send(&mut s, &c, Some(&t), r#"{"id":3,"method":"mining.authorize","params":["good.w","x"]}"#);
        let job_id = value(&out.lines[2])["params"][0].as_str().unwrap().to_string();
        (c, t, s, job_id)
    }

    #[test]
    fn shares_are_accepted_duplicates_and_stale_jobs_refused() {
        let (c, t, mut s, job) = mined_session();
        let submit = format!(
            r#"{{"id":4,"method":"mining.submit","params":["good.w","{job}","0000000000000000","6553f100","00000001"]}}"#
        );
        let first = send(&mut s, &c, Some(&t), &submit);
        assert_eq!(value(&first.lines[0])["result"], true, "{:?}", first.lines);
        let again = send(&mut s, &c, Some(&t), &submit);
        assert_eq!(value(&again.lines[0])["error"][0], 22);
        let unknown =
            r#"{"id":5,"method":"mining.submit","params":["good.w","ffff","0000000000000000","6553f100","00000001"]}"#;
        assert_eq!(value(&send(&mut s, &c, Some(&t), unknown).lines[0])["error"][0], 21);
        // A new block: the old job's shares are stale.
        let mut parts = regtest_parts(102);
        parts.prev_hash = bitcoin::BlockHash::from_byte_array([3; 32]);
        let t2 = Arc::new(Template::new(2, parts, true));
        let out = s.on_template(&c, &t2, Instant::now());
        assert_eq!(value(out.lines.last().unwrap())["params"][8], true);
        let submit2 = submit.replace("00000001\"]", "00000002\"]");
        assert_eq!(value(&send(&mut s, &c, Some(&t2), &submit2).lines[0])["error"][0], 21);
        let w = c.stats.worker("btc", "good.w").unwrap();
        let w = w.lock().unwrap();
        assert_eq!(w.accepted, 1);
        assert_eq!(w.rejected["duplicate"], 1);
        assert_eq!(w.rejected["stale"], 2);
    }

    #[test]
    fn low_difficulty_shares_are_refused_with_23() {
        let mut c = ctx();
        c.vardiff.start = 1e12; // unreachable on regtest by chance
        c.vardiff.max = 1e13;
        let t = template();
        let mut s = Session::new([0; 4], &c, Instant::now());
        send(&mut s, &c, Some(&t), r#"{"id":2,"method":"mining.subscribe","params":[]}"#);
        let out = send(&mut s, &c, Some(&t), r#"{"id":3,"method":"mining.authorize","params":["good.w","x"]}"#);
        let job = value(&out.lines[2])["params"][0].as_str().unwrap().to_string();
        // Find a nonce that is not a regtest block (about half are).
        for nonce in 0..64u32 {
            let line = format!(
                r#"{{"id":4,"method":"mining.submit","params":["good.w","{job}","0000000000000000","6553f100","{nonce:08x}"]}}"#
            );
            let out = send(&mut s, &c, Some(&t), &line);
            let v = value(&out.lines[0]);
            if out.found.is_none() {
                assert_eq!(v["error"][0], 23, "{v}");
                return;
            }
        }
        panic!("no non-block nonce found");
    }

    #[test]
    fn a_block_is_reported_with_everything_to_submit_it() {
        let (c, t, mut s, job) = mined_session();
        let found = (0..64u32).find_map(|nonce| {
            let line = format!(r#"{{"id":4,"method":"mining.submit","params":["good.w","{job}","0000000000000000","6553f100","{nonce:08x}"]}}"#);
            send(&mut s, &c, Some(&t), &line).found
        });
        let f = found.expect("regtest blocks are easy");
        assert!(f.hashed.is_block);
        assert_eq!(f.extranonce1, [0, 0, 0, 9]);
        assert_eq!(f.worker, "good.w");
    }

    #[test]
    fn suggest_difficulty_after_authorize_sends_difficulty_before_a_fresh_job() {
        let (c, t, mut s, _) = mined_session();
        let out = send(&mut s, &c, Some(&t), r#"{"id":9,"method":"mining.suggest_difficulty","params":[0.5]}"#);
        assert_eq!(value(&out.lines[0])["result"], true);
        assert_eq!(value(&out.lines[1])["params"][0], 0.5);
        assert_eq!(value(&out.lines[2])["method"], "mining.notify");
        assert_eq!(value(&out.lines[2])["params"][8], false);
    }

    #[test]
    fn one_payout_address_per_connection() {
        let (c, t, mut s, _) = mined_session();
        let out = send(&mut s, &c, Some(&t), r#"{"id":3,"method":"mining.authorize","params":["goodother.w2","x"]}"#);
        assert_eq!(value(&out.lines[0])["result"], false);
        // Another worker name for the same address is fine.
        let out = send(&mut s, &c, Some(&t), r#"{"id":3,"method":"mining.authorize","params":["good.w2","x"]}"#);
        assert_eq!(value(&out.lines[0])["result"], true);
    }

    #[test]
    fn a_miners_ping_gets_pong_and_its_pong_gets_nothing() {
        let c = ctx();
        let mut s = Session::new([0; 4], &c, Instant::now());
        let out = send(&mut s, &c, None, r#"{"id":5,"method":"mining.ping","params":[]}"#);
        assert_eq!(value(&out.lines[0]), json!({"id": 5, "result": "pong", "error": null}));
        assert!(send(&mut s, &c, None, r#"{"id":1,"method":"pong","params":[]}"#).lines.is_empty());
        assert!(send(&mut s, &c, None, r#"{"id":1,"result":"pong","error":null}"#).lines.is_empty());
    }

    /// A pool's job (crate::upstream) for the owner of "good" addresses, as a chooser hands it.
    fn pool_template(id: u64, version_mask: u32, narrow: Option<crate::upstream::MinerExtranonce>) -> Arc<Template> {
        let mut t = Template::new(id, regtest_parts(101), true);
        t.upstream = Some(Arc::new(crate::upstream::UpstreamWork {
            connection: 1,
            job_id: "p1".into(),
            coinb1: vec![1, 0, 0, 0, 1],
            coinb2: vec![0xff; 8],
            padding: 0,
            difficulty: 1e-12,
            owner: AnyP2wpkh.payout_script("good").unwrap(),
            version_mask,
            miner_extranonce: narrow,
        }));
        Arc::new(t)
    }

    fn methods(out: &Output) -> Vec<String> {
        out.lines.iter().map(|l| value(l)["method"].as_str().unwrap_or("reply").to_string()).collect()
    }

    /// Submits `bits` with nonces until one is a (regtest-easy) block: forwarded to the pool.
    fn forwarded(s: &mut Session, c: &PoolContext, t: &Arc<Template>, job: &str, en2: &str, bits: &str) -> Output {
        (0..64u32)
            .map(|nonce| {
                let line = format!(
                    r#"{{"id":4,"method":"mining.submit","params":["good.w","{job}","{en2}","6553f100","{nonce:08x}","{bits}"]}}"#
                );
                send(s, c, Some(t), &line)
            })
            .find(|o| o.forward.is_some())
            .expect("regtest blocks are easy")
    }

    #[test]
    fn on_a_pool_with_fewer_version_bits_the_miner_is_told_its_mask_and_shares_outside_it_are_not_sent() {
        let c = ctx();
        let t = template();
        let mut s = Session::new([0, 0, 0, 9], &c, Instant::now());
        let configure = r#"{"id":1,"method":"mining.configure","params":[["version-rolling"],{"version-rolling.mask":"ffffffff"}]}"#;
        send(&mut s, &c, Some(&t), configure);
        send(&mut s, &c, Some(&t), r#"{"id":2,"method":"mining.subscribe","params":[]}"#);
        send(&mut s, &c, Some(&t), r#"{"id":3,"method":"mining.authorize","params":["good.w","x"]}"#);
        let pool = pool_template(2, 0x1e00_0000, None);
        let out = s.on_template(&c, &pool, Instant::now());
        assert_eq!(methods(&out), ["mining.set_version_mask", "mining.notify"]);
        assert_eq!(value(&out.lines[0])["params"][0], "1e000000");
        let job = value(&out.lines[1])["params"][0].as_str().unwrap().to_string();
        let outside = format!(
            r#"{{"id":4,"method":"mining.submit","params":["good.w","{job}","0000000000000000","6553f100","00000000","00002000"]}}"#
        );
        let out = send(&mut s, &c, Some(&pool), &outside);
        assert!(out.not_sent_to_pool && out.forward.is_none());
        assert!(value(&out.lines[0])["error"][1].as_str().unwrap().contains("outside the pool's mask 1e000000"));
        let inside = forwarded(&mut s, &c, &pool, &job, "0000000000000000", "02000000");
        assert_eq!(inside.forward.unwrap().version_bits, Some(0x0200_0000));
        // Back on the node's work: the box's own mask again.
        let out = s.on_template(&c, &template(), Instant::now());
        assert_eq!(methods(&out), ["mining.set_version_mask", "mining.notify"]);
        assert_eq!(value(&out.lines[0])["params"][0], "1fffe000");
        // A pool refusing version rolling: the miner rolls nothing on its work.
        let out = s.on_template(&c, &pool_template(3, 0, None), Instant::now());
        assert_eq!(value(&out.lines[0])["params"][0], "00000000");
    }

    #[test]
    fn a_pool_with_a_small_extranonce2_gets_miners_that_subscribed_to_extranonce_changes_only() {
        let c = ctx();
        let t = template();
        let narrow = crate::upstream::MinerExtranonce { extranonce1_len: 2, extranonce2_len: 2 };
        let pool = pool_template(2, 0, Some(narrow));
        let mut s = Session::new([0, 0, 0, 9], &c, Instant::now());
        send(&mut s, &c, Some(&t), r#"{"id":2,"method":"mining.subscribe","params":[]}"#);
        send(&mut s, &c, Some(&t), r#"{"id":3,"method":"mining.authorize","params":["good.w","x"]}"#);
        // Without mining.extranonce.subscribe: no pool work (it keeps its last job).
        assert!(s.on_template(&c, &pool, Instant::now()).lines.is_empty());
        // Subscribing (after authorize, as ESP-Miner does) brings the pool's work at once.
        let out = send(&mut s, &c, Some(&pool), r#"{"id":5,"method":"mining.extranonce.subscribe","params":[]}"#);
        assert_eq!(methods(&out), ["reply", "mining.set_extranonce", "mining.notify"]);
        let out = Output { lines: out.lines[1..].to_vec(), ..Output::default() };
        assert_eq!(value(&out.lines[0])["params"], json!(["0009", 2]));
        assert_eq!(value(&out.lines[1])["params"][8], true, "a clean job after a new extranonce");
        let job = value(&out.lines[1])["params"][0].as_str().unwrap().to_string();
        let f = forwarded(&mut s, &c, &pool, &job, "abcd", "00000000").forward.unwrap();
        assert_eq!(f.extranonce2, [0x00, 0x09, 0xab, 0xcd], "the pool's 4 bytes: the miner's last 2 and its 2");
        // The node's work: the miner's own extranonce1 and the box's size again.
        let out = s.on_template(&c, &template(), Instant::now());
        assert_eq!(value(&out.lines[0])["params"], json!(["00000009", 8]));
    }

    #[test]
    fn configure_answers_every_extension_asked() {
        let c = ctx();
        let mut s = Session::new([0; 4], &c, Instant::now());
        let out = send(
            &mut s,
            &c,
            None,
            r#"{"id":1,"method":"mining.configure","params":[["version-rolling","minimum-difficulty","subscribe-extranonce","x-unknown"],{"version-rolling.mask":"00000001","minimum-difficulty.value":0.01}]}"#,
        );
        let r = &value(&out.lines[0])["result"];
        assert_eq!(r["version-rolling"], false, "no common bits");
        assert_eq!(r["minimum-difficulty"], true);
        assert_eq!(r["subscribe-extranonce"], true);
        assert_eq!(r["x-unknown"], false);
        assert_eq!(s.difficulty(), 0.01);
    }
}
