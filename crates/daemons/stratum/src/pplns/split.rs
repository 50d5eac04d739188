//! The split: who a PPLNS block pays, and how much, fixed when the job is built.
//!
//! Pure and deterministic: the same reward, weights, carry and rules give the same outputs,
//! to the satoshi, in the same order.
//!
//! 1. The pool fee, `fee_bps` of the reward rounded down, to the fee address (none by
//!    default; a fee under its script's dust limit is not paid and goes to the users).
//! 2. Each user's entitlement: their proportional part of the rest (by window work; integer
//!    sats, the rounding remainder to the largest weight, lowest user id on a tie) plus their
//!    carried balance from earlier splits.
//! 3. Outputs: users whose entitlement is at least the dust limit of their own script
//!    (rust-bitcoin's `minimal_non_dust`, Bitcoin Core's relay rule), the largest first, at
//!    most `max_outputs` in all (the fee output counts). The rest is not paid now.
//! 4. What those unpaid users were owed is paid now to the paid users, in proportion to their
//!    entitlements (their amounts scaled by one factor; any that fall under dust are dropped
//!    and the scale is done again); every paid amount is rounded down and the remainder goes
//!    to the largest output.
//! 5. The carry: for every user, entitlement minus paid. Positive for a user not paid (owed
//!    next time, added to their entitlement), negative for one paid more than their
//!    entitlement (taken back next time). Per user, paid + carry out = proportional part +
//!    carry in, exactly, so over any run of blocks each user's total paid plus their final
//!    balance equals their total proportional part; the balances always sum to zero.

use super::window::{UserId, Work};
use bitcoin::{Amount, ScriptBuf};
use std::collections::BTreeMap;

/// Basis points in one: a fee of 100 bps is 1 %.
pub const BPS: u64 = 10_000;

/// The largest fee accepted (10 %): more is surely a typo for a non-custodial home pool.
pub const MAX_FEE_BPS: u16 = 1_000;

/// Per-user balances carried between splits, in sats (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Carry(BTreeMap<UserId, i64>);

impl Carry {
    pub fn get(&self, user: UserId) -> i64 {
        self.0.get(&user).copied().unwrap_or(0)
    }

    pub fn iter(&self) -> impl Iterator<Item = (UserId, i64)> + '_ {
        self.0.iter().map(|(u, v)| (*u, *v))
    }

    /// Always zero for carries made by [`split`] from an empty carry.
    pub fn sum(&self) -> i64 {
        self.0.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Balances as saved (zeros dropped; a user appearing twice keeps the sum).
    pub fn from_balances(balances: impl IntoIterator<Item = (UserId, i64)>) -> Carry {
        let mut m = BTreeMap::new();
        for (u, v) in balances {
            *m.entry(u).or_insert(0) += v;
        }
        m.retain(|_, v| *v != 0);
        Carry(m)
    }
}

/// The pool's cut, when there is one.
#[derive(Debug, Clone)]
pub struct Fee {
    pub bps: u16,
    pub script: ScriptBuf,
}

#[derive(Debug, Clone)]
pub struct SplitRules {
    pub fee: Option<Fee>,
    /// Value outputs at most, the fee output included (see `super::coinbase::CoinbaseBudget`).
    pub max_outputs: usize,
}

/// One output of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payout {
    pub user: UserId,
    pub script: ScriptBuf,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The fee output, when the fee is on and above dust; it comes first in the coinbase.
    pub fee: Option<(ScriptBuf, Amount)>,
    /// Largest first, lowest user id on a tie.
    pub payouts: Vec<Payout>,
    /// The balances after this split, to pass to the next one once this block is found.
    pub carry: Carry,
}

impl Split {
    pub fn total(&self) -> Amount {
        self.fee.as_ref().map(|f| f.1).unwrap_or(Amount::ZERO) + self.payouts.iter().map(|p| p.amount).sum()
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SplitError {
    #[error("no shares in the PPLNS window and no balance owed: pay this block to the pool owner")]
    NoShares,
    #[error(
        "user {0:?} has work in the window but no registered payout address; register it before its miners can mine"
    )]
    UnknownUser(UserId),
    #[error("reward of {reward} cannot pay anyone: the largest entitlement is under its dust limit")]
    RewardBelowDust { reward: Amount },
    #[error("pool fee of {0} basis points is over the 1000 (10 %) accepted; the default is 0")]
    Fee(u16),
    #[error("at most {0} outputs leaves no room for a payout; a coinbase needs max_outputs of 2 or more with a fee, 1 without")]
    MaxOutputs(usize),
}

/// Divides `total` in proportion to `weights` (same order), in integers, exactly: each part
/// rounded down, the remainder to the largest weight (the first one on a tie).
fn proportional(total: u64, weights: &[Work]) -> Vec<u64> {
    let sum: Work = weights.iter().sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    // total < 2^51 (21e6 BTC), so weights shifted under 2^76 keep the product in a u128.
    let shift = (128 - sum.leading_zeros()).saturating_sub(76);
    let scaled: Vec<Work> = weights.iter().map(|w| w >> shift).collect();
    let scaled_sum: Work = scaled.iter().sum::<Work>().max(1);
    let mut parts: Vec<u64> = scaled.iter().map(|w| (total as Work * w / scaled_sum) as u64).collect();
    let remainder = total - parts.iter().sum::<u64>();
    let largest = largest_index(weights);
    parts[largest] += remainder;
    parts
}

fn largest_index<T: Ord + Copy>(values: &[T]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

/// The split of `reward` (the template's coinbase value: subsidy plus fees).
///
/// `weights` are the window's (sorted by user or not: the result does not depend on it);
/// `payees` every registered user's payout script, checked as an address of the coin when
/// the user registered.
pub fn split(
    reward: Amount,
    weights: &[(UserId, Work)],
    carry: &Carry,
    payees: &BTreeMap<UserId, ScriptBuf>,
    rules: &SplitRules,
) -> Result<Split, SplitError> {
    let fee_outputs = usize::from(rules.fee.is_some());
    if rules.max_outputs < fee_outputs + 1 {
        return Err(SplitError::MaxOutputs(rules.max_outputs));
    }
    let mut fee = None;
    let mut distributable = reward.to_sat();
    if let Some(f) = &rules.fee {
        if f.bps > MAX_FEE_BPS {
            return Err(SplitError::Fee(f.bps));
        }
        let cut = reward.to_sat() * u64::from(f.bps) / BPS;
        if cut > 0 && Amount::from_sat(cut) >= f.script.minimal_non_dust() {
            fee = Some((f.script.clone(), Amount::from_sat(cut)));
            distributable -= cut;
        }
    }

    // Every user with work or a balance, by id.
    let mut work: BTreeMap<UserId, Work> = BTreeMap::new();
    for (u, w) in weights {
        if *w > 0 {
            *work.entry(*u).or_insert(0) += *w;
        }
    }
    if work.is_empty() {
        // Balances alone have no proportional part to settle against; they wait for shares.
        return Err(SplitError::NoShares);
    }
    let mut users: Vec<UserId> = work.keys().copied().collect();
    users.extend(carry.iter().map(|(u, _)| u).filter(|u| !work.contains_key(u)));
    users.sort_unstable();
    let scripts: Vec<&ScriptBuf> =
        users.iter().map(|u| payees.get(u).ok_or(SplitError::UnknownUser(*u))).collect::<Result<_, _>>()?;

    // Entitlements. Balances sum to zero, so the entitlements sum to `distributable`.
    let user_work: Vec<Work> = users.iter().map(|u| work.get(u).copied().unwrap_or(0)).collect();
    let proportional_parts = proportional(distributable, &user_work);
    let entitled: Vec<i64> = users.iter().zip(&proportional_parts).map(|(u, p)| *p as i64 + carry.get(*u)).collect();
    let dust: Vec<i64> = scripts.iter().map(|s| s.minimal_non_dust().to_sat() as i64).collect();

    // Candidates by entitlement, largest first, then the ones that fit.
    let mut order: Vec<usize> = (0..users.len()).collect();
    order.sort_by(|a, b| entitled[*b].cmp(&entitled[*a]).then(users[*a].cmp(&users[*b])));
    let room = rules.max_outputs - fee.as_ref().map_or(0, |_| 1);
    let mut paid: Vec<usize> =
        order.iter().copied().filter(|i| entitled[*i] > 0 && entitled[*i] >= dust[*i]).take(room).collect();
    if paid.is_empty() {
        // Balances alone can leave everyone under dust; the largest entitlement takes it all.
        paid.push(order[0]);
    }

    // Scale the paid entitlements to sum to `distributable`; drop any under dust and again.
    let amounts = loop {
        let basis: Vec<Work> = paid.iter().map(|i| entitled[*i] as Work).collect();
        let amounts = proportional(distributable, &basis);
        let under: Vec<usize> = (0..paid.len()).filter(|k| (amounts[*k] as i64) < dust[paid[*k]]).collect();
        if under.is_empty() {
            break amounts;
        }
        if under.len() == paid.len() {
            return Err(SplitError::RewardBelowDust { reward });
        }
        let keep: Vec<usize> = (0..paid.len()).filter(|k| !under.contains(k)).map(|k| paid[k]).collect();
        paid = keep;
    };

    let mut paid_amount = vec![0i64; users.len()];
    let mut payouts = Vec::with_capacity(paid.len());
    for (i, a) in paid.iter().zip(&amounts) {
        paid_amount[*i] = *a as i64;
        payouts.push(Payout { user: users[*i], script: scripts[*i].clone(), amount: Amount::from_sat(*a) });
    }
    payouts.sort_by(|a, b| b.amount.cmp(&a.amount).then(a.user.cmp(&b.user)));
    let carry = Carry(
        users.iter().enumerate().map(|(i, u)| (*u, entitled[i] - paid_amount[i])).filter(|(_, v)| *v != 0).collect(),
    );
    Ok(Split { fee, payouts, carry })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use rand::{Rng, SeedableRng};

    fn p2wpkh(i: u32) -> ScriptBuf {
        let mut h = [0u8; 20];
        h[..4].copy_from_slice(&i.to_le_bytes());
        ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array(h))
    }

    fn p2pkh(i: u32) -> ScriptBuf {
        let mut h = [1u8; 20];
        h[..4].copy_from_slice(&i.to_le_bytes());
        ScriptBuf::new_p2pkh(&bitcoin::PubkeyHash::from_byte_array(h))
    }

    fn payees(n: u32) -> BTreeMap<UserId, ScriptBuf> {
        (0..n).map(|i| (UserId(i), if i % 3 == 2 { p2pkh(i) } else { p2wpkh(i) })).collect()
    }

    fn rules(max_outputs: usize) -> SplitRules {
        SplitRules { fee: None, max_outputs }
    }

    #[test]
    fn pplns_split_is_proportional_with_the_remainder_to_the_largest() {
        let w = vec![(UserId(0), 1), (UserId(1), 1), (UserId(2), 1)];
        let s = split(Amount::from_sat(1_000_000), &w, &Carry::default(), &payees(3), &rules(10)).unwrap();
        let amounts: Vec<(UserId, u64)> = s.payouts.iter().map(|p| (p.user, p.amount.to_sat())).collect();
        // A tie: the lowest user id is the largest and takes the odd sat.
        assert_eq!(amounts, vec![(UserId(0), 333_334), (UserId(1), 333_333), (UserId(2), 333_333)]);
        assert!(s.carry.is_empty());
        assert_eq!(s.total(), Amount::from_sat(1_000_000));
    }

    #[test]
    fn pplns_dust_is_carried_and_paid_once_it_adds_up() {
        // User 1 has a millionth of the work: 5 sats per block, under P2WPKH's 294.
        let w = vec![(UserId(0), 999_999), (UserId(1), 1)];
        let reward = Amount::from_sat(5_000_000);
        let mut carry = Carry::default();
        let mut paid_to_1 = 0;
        let mut blocks = 0;
        while paid_to_1 == 0 {
            let s = split(reward, &w, &carry, &payees(2), &rules(10)).unwrap();
            assert_eq!(s.total(), reward);
            paid_to_1 = s.payouts.iter().find(|p| p.user == UserId(1)).map_or(0, |p| p.amount.to_sat());
            carry = s.carry;
            blocks += 1;
            assert_eq!(carry.sum(), 0);
        }
        // 5 sats a block reach 294 on the 59th block, and then all of it is paid.
        assert_eq!(blocks, 59);
        assert_eq!(paid_to_1, 295);
        assert_eq!(carry.get(UserId(1)), 0);
    }

    #[test]
    fn pplns_users_beyond_max_outputs_are_the_smallest_and_carried() {
        let w: Vec<(UserId, Work)> = (0..5).map(|i| (UserId(i), 10 + i as Work)).collect();
        let s = split(Amount::from_sat(100_000_000), &w, &Carry::default(), &payees(5), &rules(3)).unwrap();
        let users: Vec<UserId> = s.payouts.iter().map(|p| p.user).collect();
        assert_eq!(users, vec![UserId(4), UserId(3), UserId(2)]);
        assert!(s.carry.get(UserId(0)) > 0 && s.carry.get(UserId(1)) > 0);
        assert_eq!(s.total(), Amount::from_sat(100_000_000));
    }

    #[test]
    fn pplns_fee_output_comes_off_the_top_and_counts_as_an_output() {
        let fee = Fee { bps: 150, script: p2wpkh(99) };
        let r = SplitRules { fee: Some(fee), max_outputs: 2 };
        let w = vec![(UserId(0), 3), (UserId(1), 1)];
        let s = split(Amount::from_sat(312_500_000), &w, &Carry::default(), &payees(2), &r).unwrap();
        assert_eq!(s.fee.as_ref().unwrap().1, Amount::from_sat(4_687_500));
        assert_eq!(s.payouts.len(), 1);
        assert_eq!(s.total(), Amount::from_sat(312_500_000));
        let e = split(Amount::ONE_BTC, &w, &Carry::default(), &payees(2), &SplitRules { max_outputs: 1, ..r.clone() })
            .unwrap_err();
        assert_eq!(e, SplitError::MaxOutputs(1));
        let mut big = r;
        big.fee.as_mut().unwrap().bps = 5_000;
        assert_eq!(
            split(Amount::ONE_BTC, &w, &Carry::default(), &payees(2), &big).unwrap_err(),
            SplitError::Fee(5_000)
        );
    }

    #[test]
    fn pplns_bad_inputs_are_refused_with_what_to_do() {
        let e = split(Amount::ONE_BTC, &[], &Carry::default(), &payees(1), &rules(5)).unwrap_err();
        assert!(e.to_string().contains("pay this block to the pool owner"));
        let e = split(Amount::ONE_BTC, &[(UserId(9), 1)], &Carry::default(), &payees(1), &rules(5)).unwrap_err();
        assert_eq!(e, SplitError::UnknownUser(UserId(9)));
        let e = split(Amount::from_sat(100), &[(UserId(0), 1)], &Carry::default(), &payees(1), &rules(5)).unwrap_err();
        assert!(matches!(e, SplitError::RewardBelowDust { .. }));
    }

    /// Random windows, rewards, fees and limits, over runs of blocks with the carry passed on.
    #[test]
    fn pplns_split_properties_hold_over_random_runs_of_blocks() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let (mut carried, mut capped) = (0, 0);
        for _ in 0..300 {
            let n = rng.gen_range(1..60u32);
            let payees = payees(n);
            let fee = rng.gen_bool(0.3).then(|| Fee { bps: rng.gen_range(0..=MAX_FEE_BPS), script: p2wpkh(1000) });
            let r = SplitRules { fee, max_outputs: rng.gen_range(2..40) };
            let mut carry = Carry::default();
            let mut proportional_total: BTreeMap<UserId, i64> = BTreeMap::new();
            let mut paid_total: BTreeMap<UserId, i64> = BTreeMap::new();
            for _ in 0..rng.gen_range(1..12) {
                let reward = Amount::from_sat(rng.gen_range(10_000..=5_000_000_000));
                let active = rng.gen_range(1..=n);
                let mut w: Vec<(UserId, Work)> = Vec::new();
                for _ in 0..active {
                    let bits = rng.gen_range(1..100);
                    w.push((UserId(rng.gen_range(0..n)), rng.gen_range(1..(1u128 << bits) + 1)));
                }
                let s = match split(reward, &w, &carry, &payees, &r) {
                    Ok(s) => s,
                    Err(SplitError::RewardBelowDust { .. }) => continue,
                    Err(e) => panic!("{e}"),
                };
                assert_eq!(s.total(), reward, "the coinbase pays exactly the reward");
                assert!(s.payouts.len() + usize::from(s.fee.is_some()) <= r.max_outputs);
                for p in &s.payouts {
                    assert!(p.amount >= p.script.minimal_non_dust(), "dust output {p:?}");
                    *paid_total.entry(p.user).or_insert(0) += p.amount.to_sat() as i64;
                }
                if let Some((script, amount)) = &s.fee {
                    assert!(*amount >= script.minimal_non_dust());
                }
                assert_eq!(s.carry.sum(), 0, "balances sum to zero");
                // The proportional parts, computed again from the same inputs.
                let fee_sats = s.fee.as_ref().map_or(0, |f| f.1.to_sat());
                let mut users: Vec<UserId> = w.iter().map(|(u, _)| *u).collect();
                users.sort();
                users.dedup();
                let uw: Vec<Work> =
                    users.iter().map(|u| w.iter().filter(|(x, _)| x == u).map(|(_, v)| v).sum()).collect();
                for (u, p) in users.iter().zip(proportional(reward.to_sat() - fee_sats, &uw)) {
                    *proportional_total.entry(*u).or_insert(0) += p as i64;
                }
                carried += usize::from(!s.carry.is_empty());
                capped += usize::from(s.payouts.len() + usize::from(s.fee.is_some()) == r.max_outputs);
                carry = s.carry;
                // Per user: everything paid plus the balance is everything earned.
                for u in payees.keys() {
                    let paid = paid_total.get(u).copied().unwrap_or(0);
                    let earned = proportional_total.get(u).copied().unwrap_or(0);
                    assert_eq!(paid + carry.get(*u), earned, "user {u:?}");
                }
            }
        }
        // The runs did exercise carries and the output limit.
        assert!(carried > 100 && capped > 100, "carried {carried}, capped {capped}");
    }

    #[test]
    fn pplns_same_inputs_same_split_whatever_the_weight_order() {
        let mut w: Vec<(UserId, Work)> = (0..20).map(|i| (UserId(i), 1000 + (i as Work * 7919) % 113)).collect();
        let a = split(Amount::from_sat(625_000_000), &w, &Carry::default(), &payees(20), &rules(8)).unwrap();
        w.reverse();
        let b = split(Amount::from_sat(625_000_000), &w, &Carry::default(), &payees(20), &rules(8)).unwrap();
        assert_eq!(a, b);
    }
}
