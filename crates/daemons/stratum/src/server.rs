//! The listener: accepts miners, enforces per-address and total connection limits and a
//! per-address rate of new connections, and hands each connection a unique extranonce1.
//!
//! A refused client always gets the refusal line and a clean close (FIN, then its input
//! drained for a moment): closing with unread input (a miner that sent its subscribe right
//! after connecting) would make the kernel answer with a reset, and the miner would never
//! learn why. Refusals are logged through [`crate::quiet_log::QuietLog`], so a client reconnecting in a loop
//! costs a summary line per interval, not a line per attempt.

use crate::connection::{self, TokenBucket};
use crate::pool::Pool;
use crate::protocol::{self, ErrorCode, Rejection};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

/// Pending connections the kernel queues for the listener. A box restart (or a Wi-Fi
/// blip) makes every miner on the LAN reconnect within the same second; with the old
/// default of 128 the rest got their SYNs dropped and retried seconds later. The kernel
/// caps it at `net.core.somaxconn` (4096 on current Linux).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Addresses whose new-connection rate is tracked at most; past this, the ones that are
/// idle again (their bucket full) are forgotten first.
const MAX_TRACKED_ADDRESSES: usize = 4096;

/// Refused connections being closed politely at once; past this, a refusal is a bare close.
const MAX_LINGERING_REFUSALS: usize = 256;

/// Binds a stratum listener with [`LISTEN_BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    // A restarted server must not wait for the old one's TIME_WAIT sockets.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Counts connections per IP; a slot is given back when its guard drops.
#[derive(Default)]
struct Admission {
    state: Mutex<AdmissionState>,
}

#[derive(Default)]
struct AdmissionState {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
    /// New connections per address: a token bucket each, bounded in number.
    rates: HashMap<IpAddr, TokenBucket>,
}

struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut s = self.admission.state.lock().expect("admission lock");
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                s.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Why a connection was refused: the text the client reads, and the kind for the log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Refusal {
    Full,
    PerAddress,
    Rate,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Full => "server full",
            Refusal::PerAddress => "too many connections from your address",
            Refusal::Rate => "too many new connections from your address; wait a few seconds",
        }
    }
    fn kind(self) -> &'static str {
        match self {
            Refusal::Full => "refused: server full",
            Refusal::PerAddress => "refused: connections per address",
            Refusal::Rate => "refused: new connections per second per address",
        }
    }
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr, limits: &connection::Limits, now: Instant) -> Result<Slot, Refusal> {
        let mut s = self.state.lock().expect("admission lock");
        if !s.rates.contains_key(&ip) && s.rates.len() >= MAX_TRACKED_ADDRESSES {
            // Forget addresses that have been quiet long enough for a full bucket: they
            // would start with one anyway. If none is, forget one at random rather than
            // grow (a hostile address gains at most one fresh burst).
            s.rates.retain(|_, b| !b.is_full(now));
            if s.rates.len() >= MAX_TRACKED_ADDRESSES {
                if let Some(k) = s.rates.keys().next().copied() {
                    s.rates.remove(&k);
                }
            }
        }
        let bucket = s
            .rates
            .entry(ip)
            .or_insert_with(|| TokenBucket::new(limits.new_connections_per_sec, limits.new_connection_burst));
        if !bucket.take(now) {
            return Err(Refusal::Rate);
        }
        if s.total >= limits.max_connections {
            return Err(Refusal::Full);
        }
        let n = s.per_ip.entry(ip).or_insert(0);
        if *n >= limits.connections_per_ip {
            return Err(Refusal::PerAddress);
        }
        *n += 1;
        s.total += 1;
        Ok(Slot { admission: self.clone(), ip })
    }
}

/// Accepts miners until `shutdown` fires.
pub async fn run(listener: TcpListener, pool: Arc<Pool>, shutdown: CancellationToken) {
    let admission = Arc::new(Admission::default());
    let refusals = Arc::new(tokio::sync::Semaphore::new(MAX_LINGERING_REFUSALS));
    // Extranonce1 values start at a random point so two servers (or a restart) hand out
    // different ones; they only need to be unique among live connections.
    let next = AtomicU32::new(rand::random());
    let mut tasks = tokio::task::JoinSet::new();
    let mut summary = tokio::time::interval(pool.log_interval());
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
            // Reap finished connection tasks so the set stays small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            _ = summary.tick() => {
                pool.quiet_log.tick();
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match admission.admit(peer.ip(), &pool.limits, Instant::now()) {
            Ok(s) => s,
            Err(why) => {
                if pool.quiet_log.allow(why.kind()) {
                    tracing::warn!(%peer, why = why.message(), "connection refused");
                }
                refuse(stream, why, &refusals);
                continue;
            }
        };
        let extranonce1 = next.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let pool = pool.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            connection::serve(stream, peer, pool, extranonce1, shutdown).await;
            drop(slot);
        });
    }
    // Stop accepting now: a miner told to reconnect comes back at once, and must be refused
    // (and retry) rather than wait in the backlog of a listener that will never serve it.
    drop(listener);
    // Let connections see the cancellation, send their client.reconnect and close.
    while tasks.join_next().await.is_some() {}
}

/// Sends the refusal line and closes cleanly: FIN, then what the client still sends is
/// read and dropped for a moment, so the kernel has no unread input to answer with a reset.
fn refuse(mut stream: TcpStream, why: Refusal, lingering: &Arc<tokio::sync::Semaphore>) {
    let Ok(permit) = lingering.clone().try_acquire_owned() else {
        // Hundreds of refusals in flight: a bare close; memory and tasks stay bounded.
        return;
    };
    let line = protocol::reply_error(&serde_json::Value::Null, &Rejection::new(ErrorCode::Other, why.message()));
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            stream.write_all(format!("{line}\n").as_bytes()).await?;
            stream.shutdown().await
        })
        .await;
        let mut buf = [0u8; 2048];
        let mut budget = 64 * 1024usize;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while budget > 0 {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
                _ => break,
            }
        }
        drop(permit);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_connections_from_one_address_are_rate_limited_and_others_are_not() {
        let limits =
            connection::Limits { new_connections_per_sec: 1.0, new_connection_burst: 3.0, ..Default::default() };
        let a = Arc::new(Admission::default());
        let now = Instant::now();
        let bad: IpAddr = "192.168.1.66".parse().unwrap();
        let good: IpAddr = "192.168.1.10".parse().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(a.admit(bad, &limits, now).unwrap());
        }
        assert_eq!(a.admit(bad, &limits, now).err(), Some(Refusal::Rate));
        held.push(a.admit(good, &limits, now).unwrap());
        // A second later one more is allowed.
        held.push(a.admit(bad, &limits, now + Duration::from_secs(1)).unwrap());
    }

    #[test]
    fn the_rate_table_stays_bounded() {
        let limits = connection::Limits::default();
        let a = Arc::new(Admission::default());
        let now = Instant::now();
        for i in 0..(MAX_TRACKED_ADDRESSES as u32 + 500) {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            drop(a.admit(ip, &limits, now));
        }
        assert!(a.state.lock().unwrap().rates.len() <= MAX_TRACKED_ADDRESSES);
    }
}
