//! Where each coin mines now, in words, and its shares and blocks by source: the box's own
//! node, or the solo pool the settings name (`coins.<id>.upstream`) while the node is not
//! ready. Built from typed inputs (the settings, the stratum server's
//! [`stratum::CoinStatus`] and [`stratum::CoinPool`], the sync estimate) so the sentence is
//! tested without a page; also the well-known solo pools the settings page offers.

use minebox_api::stratum;
use minebox_settings::Upstream;
use serde::Serialize;

/// A well-known public solo pool the settings page offers, with what it charges and sees.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KnownPool {
    pub name: String,
    /// As the settings take it: `stratum+tcp://host:port`.
    pub url: String,
    /// The fee as the pool's own page states it, or "see the pool's page".
    pub fee: String,
    /// Who runs it.
    pub operator: String,
    /// What the pool learns from the box mining through it.
    pub sees: String,
    /// The pool's page, where the user checks the above.
    pub page: String,
}

/// Listed only where the stratum URL and the fee were read on the pool's own page; the
/// fee is the operator's word and may change, so the page links the pool's page beside
/// it. Kept here, not in the coin descriptors: it is advice the page shows (fees, who
/// runs what), which changes with the pools, not a property of the chain. A pool per coin
/// id and network: a mainnet pool is never offered for a test network (its blocks would
/// not be the coin the box mines); other coins and networks have none listed (the URL
/// field still takes any pool).
///
/// - Public Pool: its own home page (web.public-pool.io; the page's source is
///   https://github.com/benjamin-wilson/public-pool-ui/blob/master/src/app/components/splash/splash.component.html)
///   gives `stratum+tcp://public-pool.io:21496`, user `<your BTC address>.<worker name>`,
///   and "NO FEES".
///
/// solo.ckpool.org is not listed: a search of the stored public pages and docs (queries
/// "solo.ckpool.org fee", "solo.ckpool.org:3333 solo mining 2% fee", 2026-12-01) found
/// only ckpool's source, its PPLNS pool's payout page (1.5 % or tiered fees, another pool)
/// and the 2014 bitcointalk post for pool.ckpool.org (zero fee, SPLNS, also another pool):
/// nothing stating solo.ckpool.org's own URL and fee.
const KNOWN: &[(&str, &str, &str, &str, &str, &str, &str)] = &[(
    "btc",
    "main",
    "Public Pool",
    "stratum+tcp://public-pool.io:21496",
    "none (its page says \"NO FEES\")",
    "Benjamin Wilson (open source, github.com/benjamin-wilson/public-pool)",
    "https://web.public-pool.io",
)];

/// What any public pool sees of a box mining through it.
const SEES: &str = "your payout address (the box signs in with it), your IP address, and your hashrate and shares";

/// The well-known pools for coin `coin` on its network `network` (the descriptor's name:
/// "main", "test", "regtest", ...).
pub fn known_pools(coin: &str, network: &str) -> Vec<KnownPool> {
    KNOWN
        .iter()
        .filter(|k| k.0 == coin && k.1 == network)
        .map(|&(_, _, name, url, fee, operator, page)| KnownPool {
            name: name.into(),
            url: url.into(),
            fee: fee.into(),
            operator: operator.into(),
            sees: SEES.into(),
            page: page.into(),
        })
        .collect()
}

/// Which of the four states a coin is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The coin's own node gives the work.
    Own,
    /// The solo pool gives the work until the node is ready.
    Pool,
    /// No work: the node is not ready and no pool is set (or it has sent no work yet).
    Waiting,
    /// No work: the node is not ready and the pool cannot be reached or refused the box.
    PoolUnreachable,
}

/// Shares and blocks through the pool, all of the coin's pool connections together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PoolShares {
    /// Shares that met the pool's difficulty and were sent to it.
    pub forwarded: u64,
    pub accepted: u64,
    pub rejected: u64,
    /// Blocks found on the pool's work (the pool submits them).
    pub blocks: u64,
}

/// Where a coin mines now, for the page and the REST API.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MiningSource {
    pub source: Source,
    /// The sentence the page shows.
    pub words: String,
    /// The pool set for the coin, if any (`stratum+tcp://host:port`).
    pub pool: Option<String>,
    /// Blocks found on the node's own templates (the box's block table; a block on pool
    /// work is the pool's and counted under `through_pool`).
    pub own_node_blocks: u64,
    /// Shares accepted on the node's own templates since the stratum server started.
    pub own_node_shares: u64,
    /// What went through the pool; null when the stratum server runs no pool for the coin.
    pub through_pool: Option<PoolShares>,
}

/// What the words are made from, each as its service answered.
pub struct Inputs<'a> {
    /// `coins.<id>.upstream` in the settings.
    pub setting: Option<&'a Upstream>,
    /// The stratum server's coin, if it answered.
    pub stratum: Option<&'a stratum::CoinStatus>,
    /// The stratum server's pool state for the coin (present while it runs one).
    pub pool: Option<&'a stratum::CoinPool>,
    /// Seconds to the end of the node's sync, when the page has an estimate.
    pub sync_eta_secs: Option<f64>,
}

/// The host of a `stratum+tcp://host:port` URL, or the URL itself if it is not one.
fn host(url: &str) -> String {
    url.parse::<Upstream>().map(|u| u.host).unwrap_or_else(|_| url.to_string())
}

/// "about 5 hours", "about 40 minutes", "about 3 days".
pub fn about(secs: f64) -> String {
    let plural = |n: f64, unit: &str| format!("about {n} {unit}{}", if n == 1.0 { "" } else { "s" });
    if secs < 5400.0 {
        plural((secs / 60.0).round().max(1.0), "minute")
    } else if secs < 172_800.0 {
        plural((secs / 3600.0).round(), "hour")
    } else {
        plural((secs / 86_400.0).round(), "day")
    }
}

pub fn mining_source(i: &Inputs) -> MiningSource {
    let own_node_blocks = i.stratum.map_or(0, |s| s.blocks_found);
    let own_node_shares = i.stratum.map_or(0, |s| s.own_node_shares);
    let through_pool = i.pool.map(|p| {
        let links = std::iter::once(&p.owner).chain(p.addresses.iter().map(|a| &a.link));
        links.fold(PoolShares::default(), |t, l| PoolShares {
            forwarded: t.forwarded + l.forwarded,
            accepted: t.accepted + l.accepted,
            rejected: t.rejected + l.rejected,
            blocks: t.blocks + l.blocks,
        })
    });
    let pool_url = i.pool.map(|p| p.owner.url.clone()).or_else(|| i.setting.map(|u| u.to_string()));
    // Without a pool the stratum server's job is the node's own template.
    let node_gives_work = i.stratum.is_some_and(|s| s.node.reachable && s.job.is_some());
    let (source, words) = match (i.pool, &pool_url) {
        (Some(p), Some(url)) => match p.owner.mining_from {
            stratum::MiningFrom::Own => (Source::Own, "On your own node".to_string()),
            stratum::MiningFrom::Upstream => {
                let eta = i.sync_eta_secs.filter(|&s| s > 0.0 && s.is_finite());
                let until = match eta {
                    Some(s) => format!(" ({})", about(s)),
                    None => String::new(),
                };
                (Source::Pool, format!("Through {} until your node is synced{until}", host(url)))
            }
            stratum::MiningFrom::None => match (&p.owner.last_error, p.owner.connected) {
                (Some(reason), false) => {
                    (Source::PoolUnreachable, format!("Waiting: your node is not ready; pool unreachable: {reason}"))
                }
                _ => {
                    (Source::Waiting, format!("Waiting: your node is not ready and {} has sent no work yet", host(url)))
                }
            },
        },
        _ if node_gives_work => (Source::Own, "On your own node".to_string()),
        (None, Some(_)) => (
            Source::Waiting,
            "Waiting: your node is not ready; the pool is used once the stratum server restarts with the new setting"
                .to_string(),
        ),
        _ => (Source::Waiting, "Waiting: your node is not ready and no pool is set".to_string()),
    };
    MiningSource { source, words, pool: pool_url, own_node_blocks, own_node_shares, through_pool }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stratum::{AddressPoolLink, CoinPool, CoinStatus, Job, MiningFrom, NodeStatus, PoolLink};

    fn coin(ready: bool, blocks: u64) -> CoinStatus {
        CoinStatus {
            coin: "btc".into(),
            blocks_found: blocks,
            own_node_shares: 7 * blocks,
            node: NodeStatus { reachable: ready, ..Default::default() },
            job: ready.then(Job::default),
            ..Default::default()
        }
    }

    fn pool(from: MiningFrom, connected: bool, error: Option<&str>) -> CoinPool {
        let link = |url: &str, n: u64| PoolLink {
            url: url.into(),
            mining_from: from,
            connected,
            last_error: error.map(Into::into),
            forwarded: 10 * n,
            accepted: 9 * n,
            rejected: n,
            blocks: n,
            ..Default::default()
        };
        CoinPool {
            owner: link("stratum+tcp://public-pool.io:21496", 1),
            addresses: vec![AddressPoolLink {
                address: "bc1qminer".into(),
                miners: 1,
                link: link("stratum+tcp://public-pool.io:21496", 2),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_words_say_where_each_coin_mines() {
        let setting: Upstream = "stratum+tcp://public-pool.io:21496".parse().unwrap();
        let up = coin(false, 0);
        let ready = coin(true, 2);

        // No pool: the node's work, or waiting for it.
        let w = mining_source(&Inputs { setting: None, stratum: Some(&ready), pool: None, sync_eta_secs: None });
        assert_eq!((w.source, w.words.as_str()), (Source::Own, "On your own node"));
        assert_eq!((w.own_node_blocks, w.own_node_shares, w.through_pool, w.pool), (2, 14, None, None));
        let w = mining_source(&Inputs { setting: None, stratum: Some(&up), pool: None, sync_eta_secs: Some(3600.0) });
        assert_eq!(w.words, "Waiting: your node is not ready and no pool is set");
        let w = mining_source(&Inputs { setting: None, stratum: None, pool: None, sync_eta_secs: None });
        assert_eq!(w.source, Source::Waiting, "the stratum server not answering is no work");

        // Through the pool, with and without the sync estimate; counts of every connection.
        let p = pool(MiningFrom::Upstream, true, None);
        let through = |eta| {
            mining_source(&Inputs { setting: Some(&setting), stratum: Some(&up), pool: Some(&p), sync_eta_secs: eta })
        };
        let w = through(Some(5.2 * 3600.0));
        assert_eq!(
            (w.source, w.words.as_str()),
            (Source::Pool, "Through public-pool.io until your node is synced (about 5 hours)")
        );
        assert_eq!(w.pool.as_deref(), Some("stratum+tcp://public-pool.io:21496"));
        assert_eq!(w.through_pool, Some(PoolShares { forwarded: 30, accepted: 27, rejected: 3, blocks: 3 }));
        assert_eq!(through(None).words, "Through public-pool.io until your node is synced");
        assert_eq!(through(Some(0.0)).words, "Through public-pool.io until your node is synced");
        assert_eq!(through(Some(1800.0)).words, "Through public-pool.io until your node is synced (about 30 minutes)");

        // The node ready again: its own work, the pool's counts still shown.
        let p = pool(MiningFrom::Own, true, None);
        let w = mining_source(&Inputs {
            setting: Some(&setting),
            stratum: Some(&ready),
            pool: Some(&p),
            sync_eta_secs: None,
        });
        assert_eq!((w.source, w.words.as_str(), w.own_node_blocks), (Source::Own, "On your own node", 2));
        assert!(w.through_pool.is_some());

        // The pool down: the reason, as the stratum server words it.
        let p = pool(MiningFrom::None, false, Some("cannot connect to public-pool.io:21496: connection refused"));
        let w =
            mining_source(&Inputs { setting: Some(&setting), stratum: Some(&up), pool: Some(&p), sync_eta_secs: None });
        assert_eq!(w.source, Source::PoolUnreachable);
        assert_eq!(
            w.words,
            "Waiting: your node is not ready; pool unreachable: cannot connect to public-pool.io:21496: connection refused"
        );
        // Connected but no job yet.
        let p = pool(MiningFrom::None, true, None);
        let w =
            mining_source(&Inputs { setting: Some(&setting), stratum: Some(&up), pool: Some(&p), sync_eta_secs: None });
        assert_eq!(w.words, "Waiting: your node is not ready and public-pool.io has sent no work yet");

        // Set in the settings, but the stratum server has not restarted with it.
        let w = mining_source(&Inputs { setting: Some(&setting), stratum: Some(&up), pool: None, sync_eta_secs: None });
        assert_eq!(w.source, Source::Waiting);
        assert!(w.words.contains("once the stratum server restarts"), "{}", w.words);
        assert_eq!(w.pool.as_deref(), Some("stratum+tcp://public-pool.io:21496"));
    }

    #[test]
    fn estimates_read_as_people_say_them() {
        assert_eq!(about(59.0), "about 1 minute");
        assert_eq!(about(3600.0), "about 60 minutes");
        assert_eq!(about(3600.0 * 2.4), "about 2 hours");
        assert_eq!(about(86_400.0 * 3.0), "about 3 days");
    }

    #[test]
    fn the_known_pools_are_valid_settings_and_say_what_they_see() {
        let pools = known_pools("btc", "main");
        assert!(!pools.is_empty());
        for p in &pools {
            p.url.parse::<Upstream>().unwrap_or_else(|e| panic!("{}: {e}", p.name));
            assert!(p.sees.contains("payout address") && p.sees.contains("IP address"), "{p:?}");
            assert!(!p.fee.is_empty() && !p.operator.is_empty() && p.page.starts_with("https://"), "{p:?}");
        }
        assert!(known_pools("no-such-coin", "main").is_empty());
        // A mainnet pool would mine mainnet blocks: none is offered for a test network.
        for network in ["test", "signet", "regtest"] {
            assert!(known_pools("btc", network).is_empty(), "{network}");
        }
    }
}
