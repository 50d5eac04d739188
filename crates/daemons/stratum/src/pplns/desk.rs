//! Pool mode, running: one coin's PPLNS port (issue 17 point 4; docs/stratum.md "Pool mode").
//!
//! The desk holds what every session of the pool port shares: the payees (the file the
//! status page writes, re-read when it changes), the [`ShareWindow`] accepted shares go into,
//! the [`Carry`] of the last block found, and the current pool job. A job is built once per
//! template (the node's new blocks and its fee refreshes, every 30 s by default), so its
//! cost is bounded whatever the share rate; its split is kept in the job, and a block found
//! on it records exactly that split ([`crate::block`]).
//!
//! While the window is empty (a new pool, or after a restart without a saved window), no
//! split exists: a miner's job then pays its own user's address, as the solo port would.

use super::split::{Fee, SplitError, SplitRules};
use super::window::{self, ShareWindow, UserId, Work, DEFAULT_MAX_ENTRIES};
use super::{Carry, CoinbaseBudget, Split};
use crate::job::{Job, JobBook, JobError, Template};
use bitcoin::{CompactTarget, ScriptBuf};
use minebox_settings::payees::Payees;
use minebox_settings::{PoolSettings, Settings};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// A coin's pool mode as the service starts it.
#[derive(Clone)]
pub struct PoolModeConfig {
    pub coin: String,
    pub network: String,
    pub listen: std::net::SocketAddr,
    pub settings: PoolSettings,
    /// `pool-payees.toml` (`Payees::path_beside` the settings file).
    pub payees_file: PathBuf,
    /// The box's settings: payee addresses are checked against the coin's network.
    pub box_settings: Arc<Settings>,
    /// How often a changed window is saved ([`crate::service::PPLNS_SNAPSHOT_EVERY`] on the
    /// box): a power cut loses at most this much of it, and each save is a write to the card.
    pub save_every: std::time::Duration,
}

/// Work units in one difficulty-1 share (see [`window`]): for the API's figures.
const UNITS_PER_DIFFICULTY: f64 = 18_446_744_073_709_551_616.0;

pub fn difficulty_of(work: Work) -> f64 {
    work as f64 / UNITS_PER_DIFFICULTY
}

/// A user's part of a pool job's window, kept with the job for the block's payout record.
#[derive(Debug, Clone, PartialEq)]
pub struct PayeePart {
    pub user: UserId,
    pub name: String,
    pub address: String,
    pub work: Work,
    pub shares: u64,
    /// Paid in the coinbase (0: carried).
    pub amount_sats: u64,
    /// The user's balance after this block (positive: owed).
    pub carry_sats: i64,
}

/// What a pool job's coinbase pays, and the window it was computed over.
#[derive(Debug, Clone)]
pub struct PplnsJob {
    pub split: Split,
    pub parts: Vec<PayeePart>,
    pub window_work: Work,
    pub window_shares: u64,
    pub config_version: u64,
    /// The carry once this job's block is found: the split's, plus the balances of users
    /// no longer registered (kept for them should they register again).
    pub carry_after: Carry,
}

/// A pool-port login, resolved.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: UserId,
    pub name: String,
    pub address: String,
    pub script: ScriptBuf,
}

struct PayeeFile {
    path: PathBuf,
    settings: Arc<Settings>,
    /// (mtime, size) of the file as last read, and what it held.
    stamp: Option<(Option<SystemTime>, u64)>,
    payees: Arc<Payees>,
}

impl PayeeFile {
    /// The payees, re-read when the file's mtime or size changed (one stat otherwise). A
    /// damaged file is logged once and the last good list kept.
    fn current(&mut self, coin: &str) -> Arc<Payees> {
        let stamp = match std::fs::metadata(&self.path) {
            Ok(m) => Some((m.modified().ok(), m.len())),
            Err(_) => None,
        };
        if stamp != self.stamp {
            self.stamp = stamp;
            match Payees::load(&self.path, &self.settings) {
                Ok(p) => {
                    tracing::info!(coin, payees = p.of_coin(coin).count(), file = %self.path.display(), "pool payees read");
                    self.payees = Arc::new(p);
                }
                Err(e) => tracing::error!(error = %e, "pool payees file unreadable; the last good list is kept"),
            }
        }
        self.payees.clone()
    }
}

struct State {
    window: ShareWindow,
    carry: Carry,
    /// The network difficulty the window was last sized for.
    sized_for: Option<CompactTarget>,
    /// The current template's pool job, if the window had work when it was built.
    job: Option<(u64, Arc<Job>)>,
    /// The window or the carry changed since the last snapshot.
    dirty: bool,
    payees: PayeeFile,
}

pub struct PplnsDesk {
    pub coin: String,
    pub network: String,
    pub listen: String,
    pub settings: PoolSettings,
    rules: SplitRules,
    state: Mutex<State>,
}

/// What a snapshot saves: the window and the carry.
pub struct Saved {
    pub window: window::WindowSnapshot,
    pub carry: Vec<(UserId, i64)>,
}

impl PplnsDesk {
    pub fn new(config: &PoolModeConfig, saved: Option<Saved>) -> PplnsDesk {
        let fee = config.settings.fee.as_ref().map(|f| Fee { bps: f.bps, script: f.payout.script_pubkey().clone() });
        // Settings count users' outputs; the split counts the fee's too.
        let max_outputs = config.settings.max_outputs as usize + usize::from(fee.is_some());
        let (window, carry) = match saved {
            Some(s) => (ShareWindow::restore(&s.window, DEFAULT_MAX_ENTRIES), Carry::from_balances(s.carry)),
            None => (ShareWindow::new(1, DEFAULT_MAX_ENTRIES), Carry::default()),
        };
        PplnsDesk {
            coin: config.coin.clone(),
            network: config.network.clone(),
            listen: config.listen.to_string(),
            settings: config.settings.clone(),
            rules: SplitRules { fee, max_outputs },
            state: Mutex::new(State {
                window,
                carry,
                sized_for: None,
                job: None,
                dirty: false,
                payees: PayeeFile {
                    path: config.payees_file.clone(),
                    settings: config.box_settings.clone(),
                    stamp: None,
                    payees: Arc::new(Payees::default()),
                },
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("pplns lock")
    }

    /// Resolves `user.worker`: only a registered user with a payable address of this coin
    /// may mine here; the error is what the miner is told.
    pub fn login(&self, login: &str) -> Result<Login, String> {
        let payees = self.state().payees.current(&self.coin);
        let (p, _) = payees.login(&self.coin, login).map_err(|e| e.to_string())?;
        Ok(Login {
            user: UserId(p.id),
            name: p.user.clone(),
            address: p.payout.to_string(),
            script: p.payout.script_pubkey().clone(),
        })
    }

    /// An accepted share of `user` at its assigned difficulty goes into the window.
    pub fn record_share(&self, user: UserId, difficulty: f64) {
        match window::work_of(difficulty) {
            Ok(w) => {
                let mut s = self.state();
                s.window.append(user, w);
                s.dirty = true;
            }
            Err(e) => tracing::error!(error = %e, "share not counted in the PPLNS window"),
        }
    }

    /// The job a pool-port miner of `own` (its user's script) mines on `template`: the
    /// template's pool job, or, while the window is empty or no split can be made, one paying
    /// its own user's address.
    pub fn job_for(&self, template: &Arc<Template>, own: &ScriptBuf, jobs: &JobBook) -> Result<Arc<Job>, JobError> {
        if template.upstream.is_some() {
            // A solo pool's work pays the pool's coinbase; no split can be fixed into it.
            return jobs.job_for(template, own);
        }
        let mut s = self.state();
        if let Some((id, job)) = &s.job {
            if *id == template.id {
                return Ok(job.clone());
            }
        }
        if s.sized_for != Some(template.bits) {
            match window::window_size(template.network_difficulty(), self.settings.window_factor) {
                Ok(size) => {
                    s.window.resize(size);
                    s.sized_for = Some(template.bits);
                }
                Err(e) => tracing::error!(error = %e, "PPLNS window not resized"),
            }
        }
        if s.window.total() == 0 {
            return jobs.job_for(template, own);
        }
        match self.build(&mut s, template, jobs) {
            Ok(job) => {
                s.job = Some((template.id, job.clone()));
                Ok(job)
            }
            Err(e) => {
                tracing::error!(coin = %self.coin, error = %e, "no PPLNS split for this template; miners' jobs pay their own user's address until one can be made");
                jobs.job_for(template, own)
            }
        }
    }

    fn build(&self, s: &mut State, template: &Arc<Template>, jobs: &JobBook) -> Result<Arc<Job>, super::PplnsError> {
        let payees = s.payees.current(&self.coin);
        let known: BTreeMap<UserId, &minebox_settings::payees::Payee> =
            payees.of_coin(&self.coin).map(|p| (UserId(p.id), p)).collect();
        let scripts: BTreeMap<UserId, ScriptBuf> =
            known.iter().map(|(u, p)| (*u, p.payout.script_pubkey().clone())).collect();
        // Only a registered user's own address is ever paid: work and balances of users
        // removed from the file (or whose address no longer fits the network) are left out.
        let weights: Vec<(UserId, Work)> =
            s.window.weights().into_iter().filter(|(u, _)| known.contains_key(u)).collect();
        if weights.is_empty() {
            return Err(SplitError::NoShares.into());
        }
        let carry_in = Carry::from_balances(s.carry.iter().filter(|(u, _)| known.contains_key(u)));
        // At most what the template leaves room for, whatever the settings say: a full
        // template with Core's defaults leaves 39 outputs (docs/stratum.md, "Pool mode").
        let budget = CoinbaseBudget::left_by(template);
        let rules = SplitRules {
            fee: self.rules.fee.clone(),
            max_outputs: self
                .rules
                .max_outputs
                .min(budget.max_outputs())
                .max(1 + usize::from(self.rules.fee.is_some())),
        };
        let split = super::split::split(template.coinbase_value, &weights, &carry_in, &scripts, &rules)?;
        let coinbase = super::coinbase::build(template, &split, jobs.rules(), budget)?;
        let shares: BTreeMap<UserId, u64> = s.window.shares_by_user().into_iter().collect();
        let work: BTreeMap<UserId, Work> = weights.iter().copied().collect();
        let mut users: Vec<UserId> = work.keys().copied().collect();
        users.extend(carry_in.iter().map(|(u, _)| u).filter(|u| !work.contains_key(u)));
        users.sort_unstable();
        let parts = users
            .iter()
            .map(|u| PayeePart {
                user: *u,
                name: known[u].user.clone(),
                address: known[u].payout.to_string(),
                work: work.get(u).copied().unwrap_or(0),
                shares: shares.get(u).copied().unwrap_or(0),
                amount_sats: split.payouts.iter().filter(|p| p.user == *u).map(|p| p.amount.to_sat()).sum(),
                carry_sats: split.carry.get(*u),
            })
            .collect();
        let carry_after =
            Carry::from_balances(split.carry.iter().chain(s.carry.iter().filter(|(u, _)| !known.contains_key(u))));
        let info = PplnsJob {
            split,
            parts,
            window_work: s.window.total(),
            window_shares: s.window.shares(),
            config_version: self.settings.config_version,
            carry_after,
        };
        Ok(Arc::new(Job::pplns(template.clone(), coinbase, Arc::new(info))))
    }

    /// A block of this job was found (and recorded): its carry is now the pool's.
    pub fn commit(&self, job: &PplnsJob) {
        let mut s = self.state();
        s.carry = job.carry_after.clone();
        s.dirty = true;
    }

    /// What to save, if anything changed since the last call (then marked saved).
    pub fn take_snapshot(&self) -> Option<Saved> {
        let mut s = self.state();
        if !s.dirty {
            return None;
        }
        s.dirty = false;
        Some(Saved { window: s.window.snapshot(), carry: s.carry.iter().collect() })
    }

    /// The snapshot could not be written: try again next time.
    pub fn mark_dirty(&self) {
        self.state().dirty = true;
    }

    /// The pool as the API shows it.
    pub fn status(&self, miners: u64) -> minebox_api::stratum::PoolStatus {
        let mut s = self.state();
        let payees = s.payees.current(&self.coin);
        let total = s.window.total();
        let work: BTreeMap<UserId, Work> = s.window.weights().into_iter().collect();
        let payees = payees
            .of_coin(&self.coin)
            .map(|p| {
                let w = work.get(&UserId(p.id)).copied().unwrap_or(0);
                minebox_api::stratum::PoolPayee {
                    user: p.user.clone(),
                    address: p.payout.to_string(),
                    work: difficulty_of(w),
                    fraction: if total == 0 { 0.0 } else { w as f64 / total as f64 },
                    carry_sats: s.carry.get(UserId(p.id)),
                }
            })
            .collect();
        minebox_api::stratum::PoolStatus {
            coin: self.coin.clone(),
            network: self.network.clone(),
            listen: self.listen.clone(),
            config_version: self.settings.config_version,
            fee_bps: self.settings.fee.as_ref().map_or(0, |f| f.bps),
            window_factor: self.settings.window_factor,
            max_outputs: self.settings.max_outputs,
            window_size: if s.sized_for.is_some() { difficulty_of(s.window.size()) } else { 0.0 },
            window_work: difficulty_of(total),
            miners,
            payees,
        }
    }
}

/// Window snapshots as stored: a compact binary form, 28 bytes per entry (a window is
/// at most 65,536 runs plus one summary entry per user: under 2 MB).
pub mod codec {
    use super::{UserId, Work};
    use crate::pplns::window::WindowSnapshot;

    const VERSION: u8 = 1;

    pub fn encode(s: &WindowSnapshot) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 16 + 8 + 28 * (s.summary.len() + s.runs.len()));
        out.push(VERSION);
        out.extend(s.size.to_le_bytes());
        out.extend((s.summary.len() as u32).to_le_bytes());
        out.extend((s.runs.len() as u32).to_le_bytes());
        for (u, w, n) in s.summary.iter().chain(&s.runs) {
            out.extend(u.0.to_le_bytes());
            out.extend(w.to_le_bytes());
            out.extend(n.to_le_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<WindowSnapshot> {
        let (&version, rest) = b.split_first()?;
        if version != VERSION || rest.len() < 24 {
            return None;
        }
        let size = Work::from_le_bytes(rest[..16].try_into().ok()?);
        let summary = u32::from_le_bytes(rest[16..20].try_into().ok()?) as usize;
        let runs = u32::from_le_bytes(rest[20..24].try_into().ok()?) as usize;
        let body = &rest[24..];
        if body.len() != 28 * (summary + runs) {
            return None;
        }
        let entries: Vec<(UserId, Work, u64)> = body
            .chunks_exact(28)
            .map(|c| {
                (
                    UserId(u32::from_le_bytes(c[..4].try_into().expect("4 bytes"))),
                    Work::from_le_bytes(c[4..20].try_into().expect("16 bytes")),
                    u64::from_le_bytes(c[20..].try_into().expect("8 bytes")),
                )
            })
            .collect();
        Some(WindowSnapshot { size, summary: entries[..summary].to_vec(), runs: entries[summary..].to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::tests::regtest_parts;
    use crate::job::CoinbaseRules;

    const ALICE: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    const BOB: &str = "bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf4jry";

    fn desk(dir: &std::path::Path) -> PplnsDesk {
        let registry = minebox_coin::Registry::embedded();
        let settings = Settings::from_user_text(
            &format!("[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{ALICE}\"\n[coins.btc.pool]\nport = 3334\n"),
            &registry,
        )
        .unwrap();
        let config = PoolModeConfig {
            coin: "btc".into(),
            network: "regtest".into(),
            listen: "127.0.0.1:3334".parse().unwrap(),
            settings: settings.coins["btc"].pool.clone().unwrap(),
            payees_file: dir.join("pool-payees.toml"),
            box_settings: Arc::new(settings),
            save_every: crate::service::PPLNS_SNAPSHOT_EVERY,
        };
        PplnsDesk::new(&config, None)
    }

    fn payees(dir: &std::path::Path, users: &[(u32, &str, &str)]) {
        let text: String = users
            .iter()
            .map(|(id, u, a)| format!("[[coins.btc]]\nid = {id}\nuser = \"{u}\"\naddress = \"{a}\"\n"))
            .collect();
        std::fs::write(dir.join("pool-payees.toml"), text).unwrap();
    }

    /// An empty window pays the miner's own user; a user removed from the payees file is
    /// never paid again, the registered users share the block.
    #[test]
    fn pplns_jobs_pay_only_registered_users_and_the_own_address_while_the_window_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        payees(dir.path(), &[(1, "alice", ALICE), (2, "bob", BOB)]);
        let desk = desk(dir.path());
        let jobs =
            JobBook::new(CoinbaseRules { tag: b"/t/".to_vec(), extranonce2_len: 8, min_tx_size: 0, segwit: true });
        let (alice, bob) = (desk.login("alice.rig").unwrap(), desk.login("bob").unwrap());
        let t1 = Arc::new(Template::new(1, regtest_parts(200), true));
        let solo = desk.job_for(&t1, &alice.script, &jobs).unwrap();
        assert!(solo.pplns.is_none() && solo.payout == alice.script, "an empty window: the miner's own address");
        desk.record_share(alice.user, 1e-10);
        desk.record_share(bob.user, 1e-10);
        let t2 = Arc::new(Template::new(2, regtest_parts(200), true));
        let pool = desk.job_for(&t2, &alice.script, &jobs).unwrap();
        let split = &pool.pplns.as_ref().unwrap().split;
        assert_eq!(split.payouts.len(), 2, "{split:?}");
        assert!(Arc::ptr_eq(&pool, &desk.job_for(&t2, &bob.script, &jobs).unwrap()), "one pool job per template");
        // bob is removed on the page: his work stays in the window but is paid to nobody.
        payees(dir.path(), &[(1, "alice", ALICE)]);
        assert!(desk.login("bob.rig").unwrap_err().contains("names no user"));
        let t3 = Arc::new(Template::new(3, regtest_parts(200), true));
        let pool = desk.job_for(&t3, &alice.script, &jobs).unwrap();
        let split = &pool.pplns.as_ref().unwrap().split;
        assert_eq!(split.payouts.len(), 1);
        assert_eq!(
            (split.payouts[0].script.clone(), split.payouts[0].amount),
            (alice.script.clone(), t3.coinbase_value)
        );
    }

    #[test]
    fn pplns_window_snapshot_codec_round_trips_and_refuses_damage() {
        let mut w = ShareWindow::new(1000, 4);
        for (u, work) in [(1, 10), (2, 20), (1, 5), (3, 7), (2, 1), (4, 9)] {
            w.append(UserId(u), work);
        }
        let bytes = codec::encode(&w.snapshot());
        assert_eq!(codec::decode(&bytes), Some(w.snapshot()));
        assert_eq!(codec::decode(&bytes[..bytes.len() - 1]), None);
        assert_eq!(codec::decode(&[]), None);
    }
}
