//! The PPLNS window: the last N units of work, and how much of it each user did.
//!
//! Shares are appended as they are accepted; the oldest work leaves as new work comes in, so
//! the window always holds at most N. A split reads the per-user sums, kept current on every
//! append, so it costs O(users) whatever the number of shares.
//!
//! Work is counted exactly, in integers: a share of difficulty `d` is `d × 2^64` [`Work`]
//! units (difficulty 1 is 2^32 hashes, so a unit is 2^-32 hashes). Regtest shares of
//! difficulty 1e-10 are still ~1.8e9 units, and a mainnet window of 2 × 1.5e14 difficulty is
//! ~5.5e33, far inside `u128` (3.4e38): running sums never drift as floats would.
//!
//! Memory: one entry per run of consecutive shares of one user (a lone miner's whole window
//! is one entry), and at most `max_entries` of them. A home pool's window holds many more
//! shares than that (2 × mainnet difficulty / a Bitaxe's share difficulty of ~1000 is
//! ~3e11 shares), so past the bound the oldest half of the entries is folded into one
//! per-user summary at the front: work leaving the window from the summary leaves each of
//! its users in proportion to their work in it (exact in total, first-in-first-out only
//! between the summary and the newer entries). The bound is then `max_entries` runs plus
//! one summary entry per user.

use std::collections::{HashMap, VecDeque};

/// Work in units of 2^-64 difficulty (2^-32 hashes); see the module documentation.
pub type Work = u128;

/// A registered user of the box's pool port, as the caller numbers them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub u32);

/// The PPLNS convention: the window is the last 2 × network difficulty of work (on average
/// two blocks' worth), long enough that luck within one block decides little.
pub const DEFAULT_WINDOW_FACTOR: f64 = 2.0;

/// Runs kept before the oldest half is folded into a summary: 65,536 entries of 32 bytes
/// (2 MiB) on the box.
pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

/// The largest difficulty [`work_of`] converts: 2^128 units / 2^64 per difficulty, with a
/// margin of 2^8 so that sums of many such shares still fit.
const MAX_DIFFICULTY: f64 = 7.2e16;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "share difficulty {0} is not a positive finite number below 7.2e16; the share checker's \
         assigned difficulty is what a share counts for"
    )]
    Difficulty(f64),
    #[error("window factor {0} must be positive and finite (2 is the PPLNS convention)")]
    Factor(f64),
}

/// A difficulty as work units, checked once here and trusted after.
pub fn work_of(difficulty: f64) -> Result<Work, WindowError> {
    if !(difficulty.is_finite() && difficulty > 0.0 && difficulty < MAX_DIFFICULTY) {
        return Err(WindowError::Difficulty(difficulty));
    }
    // 2^64 is a power of two: the product is exact in the float's mantissa.
    let w = (difficulty * 18_446_744_073_709_551_616.0) as Work;
    Ok(w.max(1))
}

/// The window's size for a network difficulty: `factor × difficulty` of work.
pub fn window_size(network_difficulty: f64, factor: f64) -> Result<Work, WindowError> {
    if !(factor.is_finite() && factor > 0.0) {
        return Err(WindowError::Factor(factor));
    }
    work_of(network_difficulty * factor)
}

#[derive(Debug, Clone, Copy)]
struct Run {
    user: UserId,
    work: Work,
    /// Shares in the run: a share straddling the window's edge still counts as one.
    shares: u64,
}

/// The per-user work of the oldest part of the window, folded when entries ran over the bound.
#[derive(Debug, Default)]
struct Summary {
    /// Sorted by user: deterministic proration.
    users: Vec<(UserId, Work)>,
    /// Shares per user, in the same order; they leave with the user's work, in proportion.
    shares: Vec<u64>,
    total: Work,
}

#[derive(Debug)]
pub struct ShareWindow {
    size: Work,
    max_entries: usize,
    summary: Summary,
    runs: VecDeque<Run>,
    total: Work,
    per_user: HashMap<UserId, Work>,
    per_user_shares: HashMap<UserId, u64>,
}

/// A window as saved to disk and read back after a restart (see `crate::pplns::desk`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSnapshot {
    pub size: Work,
    /// (user, work, shares): the folded summary, then the runs oldest first.
    pub summary: Vec<(UserId, Work, u64)>,
    pub runs: Vec<(UserId, Work, u64)>,
}

impl ShareWindow {
    /// A window of `size` work units (see [`window_size`]) holding at most `max_entries` runs
    /// before folding the oldest (at least 2).
    pub fn new(size: Work, max_entries: usize) -> ShareWindow {
        ShareWindow {
            size: size.max(1),
            max_entries: max_entries.max(2),
            summary: Summary::default(),
            runs: VecDeque::new(),
            total: 0,
            per_user: HashMap::new(),
            per_user_shares: HashMap::new(),
        }
    }

    /// What [`ShareWindow::restore`] needs to rebuild this window.
    pub fn snapshot(&self) -> WindowSnapshot {
        WindowSnapshot {
            size: self.size,
            summary: self.summary.users.iter().zip(&self.summary.shares).map(|((u, w), s)| (*u, *w, *s)).collect(),
            runs: self.runs.iter().map(|r| (r.user, r.work, r.shares)).collect(),
        }
    }

    /// The window a snapshot was taken of (its size then: the caller resizes it to the
    /// network difficulty of its next template).
    pub fn restore(snapshot: &WindowSnapshot, max_entries: usize) -> ShareWindow {
        let mut w = ShareWindow::new(snapshot.size, max_entries);
        let mut summary: Vec<(UserId, Work, u64)> = snapshot.summary.iter().filter(|e| e.1 > 0).copied().collect();
        summary.sort_unstable_by_key(|e| e.0);
        summary.dedup_by_key(|e| e.0);
        for (u, work, shares) in summary {
            w.summary.users.push((u, work));
            w.summary.shares.push(shares);
            w.summary.total += work;
            w.total += work;
            *w.per_user.entry(u).or_insert(0) += work;
            *w.per_user_shares.entry(u).or_insert(0) += shares;
        }
        for (u, work, shares) in snapshot.runs.iter().filter(|e| e.1 > 0) {
            w.runs.push_back(Run { user: *u, work: *work, shares: *shares });
            w.total += work;
            *w.per_user.entry(*u).or_insert(0) += work;
            *w.per_user_shares.entry(*u).or_insert(0) += shares;
        }
        w.trim();
        while w.runs.len() > w.max_entries {
            w.fold_oldest_half();
        }
        w
    }

    /// Appends an accepted share. Amortised O(1); O(users) when the work leaving the window
    /// comes out of the summary.
    pub fn append(&mut self, user: UserId, work: Work) {
        match self.runs.back_mut() {
            Some(last) if last.user == user => {
                last.work += work;
                last.shares += 1;
            }
            _ => self.runs.push_back(Run { user, work, shares: 1 }),
        }
        self.total += work;
        *self.per_user.entry(user).or_insert(0) += work;
        *self.per_user_shares.entry(user).or_insert(0) += 1;
        self.trim();
        if self.runs.len() > self.max_entries {
            self.fold_oldest_half();
        }
    }

    /// A new network difficulty (a retarget): the window follows it, dropping the oldest work
    /// at once if it shrank.
    pub fn resize(&mut self, size: Work) {
        self.size = size.max(1);
        self.trim();
    }

    pub fn size(&self) -> Work {
        self.size
    }

    /// Work in the window: at most [`ShareWindow::size`].
    pub fn total(&self) -> Work {
        self.total
    }

    /// Runs plus summary entries: what the memory bound counts.
    pub fn entries(&self) -> usize {
        self.runs.len() + self.summary.users.len()
    }

    /// Shares in the window (the one straddling its edge included).
    pub fn shares(&self) -> u64 {
        self.per_user_shares.values().sum()
    }

    /// Each user's shares in the window, sorted by user (what a payout record counts).
    pub fn shares_by_user(&self) -> Vec<(UserId, u64)> {
        let mut v: Vec<(UserId, u64)> = self.per_user_shares.iter().map(|(u, n)| (*u, *n)).collect();
        v.sort_unstable_by_key(|(u, _)| *u);
        v
    }

    /// Each user's work in the window, sorted by user: the split's input.
    pub fn weights(&self) -> Vec<(UserId, Work)> {
        let mut v: Vec<(UserId, Work)> = self.per_user.iter().map(|(u, w)| (*u, *w)).collect();
        v.sort_unstable_by_key(|(u, _)| *u);
        v
    }

    fn take_from_user(&mut self, user: UserId, work: Work, shares: u64) {
        let w = self.per_user.get_mut(&user).expect("every run and summary user has a per-user sum");
        *w -= work;
        let gone = *w == 0;
        if gone {
            self.per_user.remove(&user);
            self.per_user_shares.remove(&user);
        } else if let Some(n) = self.per_user_shares.get_mut(&user) {
            *n = n.saturating_sub(shares);
        }
        self.total -= work;
    }

    /// Drops the oldest work until the window holds at most its size. The share straddling
    /// the edge stays with only the part of its work inside the window.
    fn trim(&mut self) {
        while self.total > self.size {
            let excess = self.total - self.size;
            if self.summary.total > 0 {
                self.trim_summary(excess);
                continue;
            }
            let front = self.runs.front_mut().expect("work in the window is in a run or the summary");
            if front.work <= excess {
                let run = self.runs.pop_front().expect("front exists");
                self.take_from_user(run.user, run.work, run.shares);
            } else {
                front.work -= excess;
                let user = front.user;
                self.take_from_user(user, excess, 0);
            }
        }
    }

    /// Takes `excess` (or the whole summary) out of the summary, from each user in proportion
    /// to their work in it; the rounding left over comes from the largest, then the next.
    fn trim_summary(&mut self, excess: Work) {
        let summary = std::mem::take(&mut self.summary);
        if excess >= summary.total {
            for ((user, work), shares) in summary.users.into_iter().zip(summary.shares) {
                self.take_from_user(user, work, shares);
            }
            return;
        }
        let fraction = excess as f64 / summary.total as f64;
        let mut taken: Vec<Work> =
            summary.users.iter().map(|(_, w)| ((*w as f64 * fraction) as Work).min(*w)).collect();
        let mut short = excess.saturating_sub(taken.iter().sum());
        let mut order: Vec<usize> = (0..summary.users.len()).collect();
        order.sort_by(|a, b| summary.users[*b].1.cmp(&summary.users[*a].1).then(a.cmp(b)));
        for i in order {
            if short == 0 {
                break;
            }
            let more = short.min(summary.users[i].1 - taken[i]);
            taken[i] += more;
            short -= more;
        }
        let mut kept = Summary::default();
        for (((user, work), shares), t) in summary.users.into_iter().zip(summary.shares).zip(taken) {
            // Shares leave with their work, in proportion (rounded down: a share partly in
            // the window still counts).
            let gone = (shares as f64 * (t as f64 / work as f64)) as u64;
            if t > 0 {
                self.take_from_user(user, t, gone);
            }
            if work > t {
                kept.users.push((user, work - t));
                kept.shares.push(shares - gone.min(shares));
                kept.total += work - t;
            }
        }
        self.summary = kept;
    }

    fn fold_oldest_half(&mut self) {
        let mut merged: HashMap<UserId, (Work, u64)> =
            self.summary.users.drain(..).zip(self.summary.shares.drain(..)).map(|((u, w), s)| (u, (w, s))).collect();
        for run in self.runs.drain(..self.max_entries / 2) {
            let e = merged.entry(run.user).or_insert((0, 0));
            e.0 += run.work;
            e.1 += run.shares;
            self.summary.total += run.work;
        }
        let mut users: Vec<(UserId, (Work, u64))> = merged.into_iter().collect();
        users.sort_unstable_by_key(|(u, _)| *u);
        self.summary.users = users.iter().map(|(u, (w, _))| (*u, *w)).collect();
        self.summary.shares = users.iter().map(|(_, (_, s))| *s).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sum_of(weights: &[(UserId, Work)]) -> Work {
        weights.iter().map(|(_, w)| w).sum()
    }

    #[test]
    fn pplns_window_keeps_the_last_n_units_and_counts_the_edge_share_partially() {
        let mut w = ShareWindow::new(10, DEFAULT_MAX_ENTRIES);
        w.append(UserId(1), 4);
        w.append(UserId(2), 4);
        assert_eq!(w.weights(), vec![(UserId(1), 4), (UserId(2), 4)]);
        // 4 more: user 1's share now straddles the edge, 2 of its 4 units still inside.
        w.append(UserId(3), 4);
        assert_eq!(w.weights(), vec![(UserId(1), 2), (UserId(2), 4), (UserId(3), 4)]);
        assert_eq!(w.total(), 10);
        // A share bigger than the window leaves only itself, cut to the window's size.
        w.append(UserId(4), 25);
        assert_eq!(w.weights(), vec![(UserId(4), 10)]);
        assert_eq!(w.entries(), 1);
    }

    #[test]
    fn pplns_window_counts_shares_and_survives_a_snapshot() {
        let mut w = ShareWindow::new(10, 4);
        w.append(UserId(1), 4);
        w.append(UserId(2), 3);
        w.append(UserId(2), 3);
        // User 1's share straddles the edge (work 2 of 4 inside): it still counts as a share.
        w.append(UserId(3), 2);
        assert_eq!(w.shares_by_user(), vec![(UserId(1), 1), (UserId(2), 2), (UserId(3), 1)]);
        w.append(UserId(3), 4);
        assert_eq!(w.shares_by_user(), vec![(UserId(2), 2), (UserId(3), 2)]);
        for u in [4, 5, 6, 7, 8] {
            w.append(UserId(u), 1);
        }
        let back = ShareWindow::restore(&w.snapshot(), 4);
        assert_eq!(back.weights(), w.weights());
        assert_eq!(back.shares_by_user(), w.shares_by_user());
        assert_eq!(back.snapshot(), w.snapshot());
    }

    #[test]
    fn pplns_window_merges_consecutive_shares_of_one_user() {
        let mut w = ShareWindow::new(1 << 40, DEFAULT_MAX_ENTRIES);
        for _ in 0..10_000 {
            w.append(UserId(7), 3);
        }
        assert_eq!(w.entries(), 1);
        assert_eq!(w.weights(), vec![(UserId(7), 30_000)]);
    }

    #[test]
    fn pplns_window_shrinks_at_once_when_the_network_difficulty_falls() {
        let mut w = ShareWindow::new(100, DEFAULT_MAX_ENTRIES);
        for u in 0..10 {
            w.append(UserId(u), 10);
        }
        w.resize(25);
        assert_eq!(w.weights(), vec![(UserId(7), 5), (UserId(8), 10), (UserId(9), 10)]);
    }

    #[test]
    fn pplns_difficulties_are_checked_at_the_edge() {
        assert_eq!(work_of(1.0).unwrap(), 1 << 64);
        assert_eq!(work_of(1.0 / 1024.0).unwrap(), 1 << 54);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e17] {
            let e = work_of(bad).unwrap_err();
            assert!(e.to_string().contains("assigned difficulty"), "{e}");
        }
        assert!(window_size(1e14, 0.0).is_err());
        assert_eq!(window_size(1.0, DEFAULT_WINDOW_FACTOR).unwrap(), 2 << 64);
    }

    /// The window against a plain list of every share (the definition of PPLNS): same
    /// per-user work while no summary exists, same totals and bounded entries once it does.
    #[test]
    fn pplns_window_matches_a_naive_share_list_and_stays_bounded() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for case in 0..40 {
            let size: Work = rng.gen_range(1..5_000);
            let max_entries = if case % 2 == 0 { DEFAULT_MAX_ENTRIES } else { rng.gen_range(2..20) };
            let users = rng.gen_range(1..8);
            let mut w = ShareWindow::new(size, max_entries);
            let mut naive: Vec<(UserId, Work)> = Vec::new();
            for _ in 0..rng.gen_range(1..600) {
                let (u, work) = (UserId(rng.gen_range(0..users)), rng.gen_range(1..200));
                w.append(u, work);
                naive.push((u, work));
                assert!(w.total() <= size);
                assert_eq!(sum_of(&w.weights()), w.total());
                assert!(w.entries() <= max_entries + users as usize + 1, "entries {}", w.entries());
            }
            // The naive window: walk back from the newest share until `size` is reached.
            let mut left = size;
            let mut expected: HashMap<UserId, Work> = HashMap::new();
            for (u, work) in naive.iter().rev() {
                let take = (*work).min(left);
                if take > 0 {
                    *expected.entry(*u).or_insert(0) += take;
                }
                left -= take;
            }
            let expected_total: Work = expected.values().sum();
            assert_eq!(w.total(), expected_total);
            if max_entries == DEFAULT_MAX_ENTRIES {
                let mut e: Vec<(UserId, Work)> = expected.into_iter().collect();
                e.sort();
                assert_eq!(w.weights(), e, "case {case}");
            }
        }
    }
}
