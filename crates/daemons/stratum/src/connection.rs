//! One miner's TCP connection: read lines, feed the session, write what it answers.
//!
//! Everything a hostile or broken client can do is bounded here: line length, message
//! rate, malformed messages, time to authorize, and time the server waits for it to read
//! (a client that never reads is dropped instead of stalling the job broadcast). One bad
//! client costs at most its own socket buffers and one small task.

use crate::pool::{LiveMiner, Pool};
use crate::protocol::{self, ErrorCode, Rejection, MAX_LINE_BYTES};
use crate::session::Session;
use crate::stats::unix_now;
use futures::StreamExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

/// Per-connection limits. The defaults suit a home network; tests tighten them.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Sustained messages per second a miner may send (a Bitaxe sends a few).
    pub messages_per_sec: f64,
    /// Messages a miner may send in a burst before the rate applies.
    pub message_burst: f64,
    /// Malformed lines tolerated before the connection is closed.
    pub max_malformed: u32,
    /// Time from connect to authorize.
    pub handshake_timeout: Duration,
    /// Time without any message from an authorized miner before it is dropped.
    pub idle_timeout: Duration,
    /// Time the server waits for a miner to take what it is sent.
    pub write_timeout: Duration,
    /// Longest a subscribed miner goes without hearing from the server before it is sent a
    /// `mining.ping`. ESP-Miner drops a pool after 180 s without a line (its receive
    /// timeout), and new work comes only with a block or a fee refresh: a node that is
    /// down, or a refresh interval set long, would otherwise leave miners in silence.
    #[serde(default = "default_keepalive")]
    pub keepalive: Duration,
    /// Kernel send buffer per connection: bounds the memory a non-reading client holds.
    pub send_buffer_bytes: u32,
    /// Connections from one IP address.
    pub connections_per_ip: usize,
    /// Connections in all, per coin.
    pub max_connections: usize,
    /// New connections per second one IP address may open (sustained).
    pub new_connections_per_sec: f64,
    /// New connections one IP address may open in a burst (every miner behind it
    /// reconnecting after a restart) before the rate applies.
    pub new_connection_burst: f64,
    /// Worker names remembered in all (statistics kept, persisted). Past it, the least
    /// recently seen worker that is not connected is forgotten; a new one is never refused.
    pub max_workers: usize,
    /// Worker names remembered per payout address: one client inventing names churns its
    /// own address's oldest names, not everyone's.
    pub workers_per_address: usize,
    /// New worker names one IP address may introduce per minute (sustained)...
    pub new_workers_per_min: f64,
    /// ...and at once (a farm's first start behind one address).
    pub new_worker_burst: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            messages_per_sec: 20.0,
            message_burst: 100.0,
            max_malformed: 10,
            handshake_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30 * 60),
            write_timeout: Duration::from_secs(10),
            keepalive: default_keepalive(),
            send_buffer_bytes: 64 * 1024,
            connections_per_ip: 256,
            max_connections: 10_000,
            new_connections_per_sec: 10.0,
            new_connection_burst: 50.0,
            max_workers: 20_000,
            workers_per_address: 256,
            new_workers_per_min: 60.0,
            new_worker_burst: 64.0,
        }
    }
}

fn default_keepalive() -> Duration {
    Duration::from_secs(60)
}

/// How long a stopping server gives each miner to take its `client.reconnect`.
const RECONNECT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// `rate` events per second, up to `burst` at once.
#[derive(Debug, Clone)]
pub(crate) struct TokenBucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    at: Instant,
}

impl TokenBucket {
    pub(crate) fn new(rate: f64, burst: f64) -> Self {
        TokenBucket { tokens: burst, rate, burst, at: Instant::now() }
    }
    /// Whether the bucket would be full at `now` (its owner has been quiet long enough).
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate >= self.burst
    }
    pub(crate) fn take(&mut self, now: Instant) -> bool {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Why a connection ended, for the log line.
#[derive(Debug)]
enum Close {
    Eof,
    Shutdown,
    Io(std::io::Error),
    Garbage,
    LineTooLong,
    Flood,
    Malformed,
    HandshakeTimeout,
    Idle,
    SlowReader,
    Session,
}

impl Close {
    fn kind(&self) -> &'static str {
        match self {
            Close::Eof | Close::Shutdown => "closed",
            Close::Io(_) => "dropped: connection error",
            Close::Garbage => "dropped: not UTF-8",
            Close::LineTooLong => "dropped: line too long",
            Close::Flood => "dropped: message flood",
            Close::Malformed => "dropped: malformed messages",
            Close::HandshakeTimeout => "dropped: no authorize in time",
            Close::Idle => "dropped: idle",
            Close::SlowReader => "dropped: not reading",
            Close::Session => "dropped: session refused",
        }
    }
}

pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    pool: Arc<Pool>,
    extranonce1: [u8; 4],
    shutdown: CancellationToken,
) {
    let conn_id = u32::from_be_bytes(extranonce1);
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(&stream);
    let _ = sock.set_send_buffer_size(pool.limits.send_buffer_bytes as usize);
    let (rd, wr) = stream.into_split();
    let mut lines = FramedRead::with_capacity(rd, LinesCodec::new_with_max_length(MAX_LINE_BYTES), 1024);
    let mut wr = BufWriter::with_capacity(4096, wr);
    let mut work = pool.work.clone();
    work.borrow_and_update();
    // A miner mining to its own address gets pool work from a pool connection authorized
    // as that address (crate::upstream::Upstreams), or waits for the node past the limit.
    let mut lease: Option<crate::upstream::Lease> = None;
    let mut waiting: Option<crate::upstream::Waiting> = None;
    let mut session = Session::new(extranonce1, &pool.ctx, Instant::now());
    session.set_peer(peer.ip());
    let mut bucket = TokenBucket::new(pool.limits.messages_per_sec, pool.limits.message_burst);
    let mut malformed = 0u32;
    let connected = Instant::now();
    let mut last_message = Instant::now();
    // When the server last wrote to this miner, for the keepalive.
    let mut last_sent = Instant::now();
    let mut pings = 0u64;
    pool.live
        .insert(conn_id, LiveMiner { peer: peer.to_string(), connected_at: unix_now() as i64, ..LiveMiner::default() });

    let reason = loop {
        let deadline = if session.is_authorized() {
            last_message + pool.limits.idle_timeout
        } else {
            connected + pool.limits.handshake_timeout
        };
        let mut out = Vec::new();
        let mut end = None;
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break Close::Shutdown,
            changed = work.changed() => {
                if changed.is_err() {
                    break Close::Shutdown;
                }
                let template = work.borrow_and_update().clone();
                if let Some(t) = template {
                    out = session.on_template(&pool.ctx, &t, Instant::now()).lines;
                }
                // A miner waiting for a free pool connection tries again with each new work.
                if waiting.is_some() {
                    waiting = None;
                    join_address_upstream(&pool, &mut session, &mut work, &mut lease, &mut waiting, &mut out);
                }
            }
            line = lines.next() => match line {
                None => break Close::Eof,
                Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                    out.push(protocol::reply_error(&Value::Null, &Rejection::new(ErrorCode::Other, format!("line longer than {MAX_LINE_BYTES} bytes"))));
                    end = Some(Close::LineTooLong);
                }
                Some(Err(LinesCodecError::Io(e))) if e.kind() == std::io::ErrorKind::InvalidData => {
                    out.push(protocol::reply_error(&Value::Null, &Rejection::new(ErrorCode::Other, "not UTF-8 text")));
                    end = Some(Close::Garbage);
                }
                Some(Err(LinesCodecError::Io(e))) => break Close::Io(e),
                Some(Ok(line)) => {
                    let now = Instant::now();
                    last_message = now;
                    if !bucket.take(now) {
                        out.push(protocol::reply_error(&Value::Null, &Rejection::new(ErrorCode::Other, "too many messages; slow down")));
                        end = Some(Close::Flood);
                    } else if !line.trim().is_empty() {
                        match protocol::parse_line(line.trim()) {
                            Ok((id, request)) => {
                                let template = work.borrow().clone();
                                let output = session.handle(&pool.ctx, &id, request, template.as_ref(), now, unix_now());
                                out = output.lines;
                                if output.own_node_share {
                                    pool.own_node_shares.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                                match (output.forward, &lease, &pool.upstream) {
                                    (Some(f), Some(lease), _) => lease.link.forward(f),
                                    (Some(f), None, Some(up)) => up.owner.forward(f),
                                    _ => {}
                                }
                                if output.not_sent_to_pool {
                                    match (&lease, &pool.upstream) {
                                        (Some(lease), _) => lease.link.not_sent(),
                                        (None, Some(up)) => up.owner.not_sent(),
                                        _ => {}
                                    }
                                }
                                if lease.is_none() && waiting.is_none() {
                                    join_address_upstream(&pool, &mut session, &mut work, &mut lease, &mut waiting, &mut out);
                                }
                                if let Some(found) = output.found {
                                    // The reply (`true`) is written only once the block is on
                                    // disk: a crash after the miner heard it must not lose it.
                                    if let Err(why) = record_found(&pool, found).await {
                                        tracing::error!(%peer, why, "a found block could not be handed to the recorder");
                                        if let Some(first) = out.first_mut() {
                                            *first = protocol::reply_error(&id, &Rejection::new(ErrorCode::Other, format!("block found but not recorded: {why}; it was not submitted")));
                                        }
                                    }
                                }
                                if output.close {
                                    end = Some(Close::Session);
                                }
                            }
                            Err((id, e)) => {
                                malformed += 1;
                                out.push(protocol::reply_error(&id, &Rejection::new(ErrorCode::Other, e.to_string())));
                                if malformed > pool.limits.max_malformed {
                                    end = Some(Close::Malformed);
                                }
                            }
                        }
                    }
                    pool.live.update(conn_id, &session);
                }
            },
            _ = tokio::time::sleep_until(deadline.into()) => {
                break if session.is_authorized() { Close::Idle } else { Close::HandshakeTimeout };
            }
            _ = tokio::time::sleep_until((last_sent + pool.limits.keepalive).into()), if session.is_subscribed() => {
                pings += 1;
                out.push(protocol::ping(pings));
            }
        }
        if !out.is_empty() {
            let write = async {
                for l in &out {
                    wr.write_all(l.as_bytes()).await?;
                    wr.write_all(b"\n").await?;
                }
                wr.flush().await
            };
            match tokio::time::timeout(pool.limits.write_timeout, write).await {
                Ok(Ok(())) => last_sent = Instant::now(),
                Ok(Err(e)) => break Close::Io(e),
                Err(_) => break Close::SlowReader,
            }
        }
        if let Some(reason) = end {
            break reason;
        }
    };
    session.close();
    pool.live.remove(conn_id);
    if matches!(reason, Close::Shutdown) {
        // A planned stop (update, settings change, restart): tell the miner to come back
        // at once rather than after its own timeout, or failing over to its backup pool.
        // Then close politely: closing with its input unread would make the kernel send a
        // reset, which can discard the reconnect still queued for sending.
        let line = format!("{}\n", protocol::client_reconnect());
        let sent = tokio::time::timeout(RECONNECT_WRITE_TIMEOUT, async {
            wr.write_all(line.as_bytes()).await?;
            wr.flush().await
        })
        .await;
        if matches!(sent, Ok(Ok(()))) {
            linger(wr, lines.into_inner()).await;
        }
    } else if matches!(reason, Close::Garbage | Close::LineTooLong | Close::Flood | Close::Malformed | Close::Session) {
        linger(wr, lines.into_inner()).await;
    }
    match reason {
        Close::Eof | Close::Shutdown => tracing::debug!(%peer, "miner disconnected"),
        // Client-caused: a reconnecting client must not write a line per attempt.
        Close::Io(e) => {
            if pool.quiet_log.allow("dropped: connection error") {
                tracing::info!(%peer, error = %e, accepted = session.accepted, "miner connection failed");
            }
        }
        _ => {
            if pool.quiet_log.allow(reason.kind()) {
                tracing::info!(%peer, ?reason, accepted = session.accepted, "miner disconnected");
            }
        }
    }
}

/// Once authorized with an address that is not the owner's, joins that address's pool
/// connection: from then on the connection follows the address's work (the node's
/// templates when ready, else the pool's jobs), and its current work goes out at once.
fn join_address_upstream(
    pool: &Pool,
    session: &mut Session,
    work: &mut tokio::sync::watch::Receiver<Option<Arc<crate::job::Template>>>,
    lease: &mut Option<crate::upstream::Lease>,
    waiting: &mut Option<crate::upstream::Waiting>,
    out: &mut Vec<String>,
) {
    let (Some(up), Some((address, script))) = (&pool.upstream, session.payout()) else { return };
    if script == up.owner_script() {
        return;
    }
    match up.join(address, &script.clone()) {
        Ok(l) => {
            *work = l.work.clone();
            if let Some(t) = work.borrow_and_update().clone() {
                out.extend(session.on_template(&pool.ctx, &t, Instant::now()).lines);
            }
            *lease = Some(l);
        }
        Err(w) => *waiting = Some(w),
    }
}

/// Hands a found block to the recorder and waits until it is durable. Blocks are rare and
/// precious: wait for room in the (bounded) queue rather than drop one. The recorder only
/// writes to SQLite, never talks to the node, so this wait is one fsync.
async fn record_found(pool: &Pool, block: crate::session::FoundBlock) -> Result<(), &'static str> {
    let (recorded, ack) = tokio::sync::oneshot::channel();
    if pool.found.send(crate::block::FoundShare { block, recorded }).await.is_err() {
        return Err("the server is shutting down");
    }
    match ack.await {
        Ok(crate::block::Recorded::Durable) => Ok(()),
        // Submitted anyway; the share is valid, the miner may hear `true`.
        Ok(crate::block::Recorded::NotSaved(_)) => Ok(()),
        Err(_) => Err("the server is shutting down"),
    }
}

/// Closes politely after a refusal: send FIN, then read and drop what the client is still
/// sending for a moment. Closing with unread input would make the kernel send a reset,
/// and the client would never read the error that explains why it was dropped.
async fn linger(mut wr: BufWriter<tokio::net::tcp::OwnedWriteHalf>, mut rd: tokio::net::tcp::OwnedReadHalf) {
    use tokio::io::AsyncReadExt;
    let _ = wr.shutdown().await;
    let mut buf = [0u8; 4096];
    let mut budget = 256 * 1024;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while budget > 0 {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => budget -= n.min(budget),
            _ => break,
        }
    }
}
