//! The page's front door against a hostile LAN: how many connections, how long a request
//! head may take, how large a body, how many live event streams. Opening a socket needs no
//! login, so none of these may depend on one.
//!
//! Connections: at most `max_connections` in all and `max_connections_per_ip` per client
//! address. A new connection over either cap takes the place of the longest-idle connection
//! (of that address, or of anyone for the total cap), so idle sockets cannot lock a fresh
//! visitor out; only when every connection is busy is the new one refused, with a 503.
//! A request head must arrive within `header_read_timeout`, which in hyper also closes a
//! keep-alive connection idle that long between requests.

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tower_service::Service;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Open connections in all. A Pi 5 holds far more; the bound is what one page's
    /// visitors need (a browser opens about six) times a household, with room to spare.
    pub max_connections: usize,
    /// Open connections from one address.
    pub max_connections_per_ip: usize,
    /// Longest wait for a complete request head, and for the next request on a kept-alive
    /// connection.
    pub header_read_timeout: Duration,
    /// Largest request body for the JSON endpoints (the bundle upload has its own bound).
    pub max_body: usize,
    /// Live event streams (open pages) in all, and from one address.
    pub max_streams: usize,
    pub max_streams_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_connections_per_ip: 32,
            header_read_timeout: Duration::from_secs(10),
            max_body: 64 << 10,
            max_streams: 32,
            max_streams_per_ip: 4,
        }
    }
}

/// The address a client connected to: one of the box's own addresses, at request time.
#[derive(Debug, Clone, Copy)]
pub struct LocalAddr(pub SocketAddr);

/// One open connection as the admission sees it.
pub struct Conn {
    id: u64,
    ip: IpAddr,
    /// Requests in flight plus open event streams: a busy connection is never evicted.
    busy: AtomicUsize,
    idle_since: Mutex<Instant>,
    close: CancellationToken,
}

/// Holds a connection busy until dropped.
pub struct Busy(Arc<Conn>);

impl Conn {
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.idle_since.lock().expect("conn") = Instant::now();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct Table {
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next: AtomicU64,
}

impl Table {
    /// Admits a connection from `ip`, closing the longest-idle one to make room if needed.
    fn admit(&self, ip: IpAddr, limits: &Limits) -> Option<Arc<Conn>> {
        let mut conns = self.conns.lock().expect("connections");
        let per_ip = conns.values().filter(|c| c.ip == ip).count();
        if per_ip >= limits.max_connections_per_ip && !evict_idlest(&mut conns, |c| c.ip == ip) {
            return None;
        }
        if conns.len() >= limits.max_connections && !evict_idlest(&mut conns, |_| true) {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            ip,
            busy: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
            close: CancellationToken::new(),
        });
        conns.insert(id, conn.clone());
        Some(conn)
    }

    fn remove(&self, conn: &Conn) {
        self.conns.lock().expect("connections").remove(&conn.id);
    }
}

fn evict_idlest(conns: &mut HashMap<u64, Arc<Conn>>, which: impl Fn(&Conn) -> bool) -> bool {
    let idlest = conns
        .values()
        .filter(|c| which(c) && c.busy.load(Ordering::SeqCst) == 0)
        .min_by_key(|c| *c.idle_since.lock().expect("conn"))
        .map(|c| c.id);
    match idlest.and_then(|id| conns.remove(&id)) {
        Some(c) => {
            c.close.cancel();
            true
        }
        None => false,
    }
}

/// IPv4 clients on a dual-stack socket arrive as ::ffff:a.b.c.d; one address is one client.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown`, then lets the requests
/// in flight finish (event streams end through the app's own closing token).
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let table = Arc::new(Table::default());
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or memory: wait for connections to close rather than spin.
                    tracing::warn!(error = %e, "status page: cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let ip = canonical(peer.ip());
        let Some(conn) = table.admit(ip, &limits) else {
            refuse(stream);
            continue;
        };
        let local = stream.local_addr().ok().map(LocalAddr);
        let (router, table, stop, header_timeout) =
            (router.clone(), table.clone(), stop.clone(), limits.header_read_timeout);
        tasks.spawn(async move {
            let _ = stream.set_nodelay(true);
            let c2 = conn.clone();
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(c2.clone());
                if let Some(l) = local {
                    req.extensions_mut().insert(l);
                }
                let mut router = router.clone();
                async move { router.call(req.map(Body::new)).await }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true)
                // Bounds a request head (hyper's default is ~400 KiB).
                .max_buf_size(64 << 10);
            let http = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(http);
            tokio::select! {
                _ = http.as_mut() => {}
                // Evicted to make room: dropping the connection closes the socket.
                _ = conn.close.cancelled() => {}
                _ = stop.cancelled() => {
                    http.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), http.as_mut()).await;
                }
            }
            table.remove(&conn);
        });
    }
    // No new connections while the open ones finish.
    drop(listener);
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(())
}

/// Every connection is busy: say so in HTTP (best effort, never waiting) and close.
fn refuse(stream: TcpStream) {
    const BODY: &str = "{\"error\":\"the status page has too many open connections; try again in a few seconds\"}";
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 5\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = stream.try_write(answer.as_bytes());
}

/// Live event streams per client address and in all.
#[derive(Default)]
pub struct Streams {
    open: Mutex<HashMap<IpAddr, usize>>,
}

pub enum StreamRefusal {
    /// This address has its share open.
    PerAddress(usize),
    /// The box has its share open.
    Total(usize),
}

/// An open event stream's place; dropping it frees the place.
pub struct StreamSlot {
    streams: Arc<Streams>,
    ip: IpAddr,
}

impl Streams {
    pub fn open(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<StreamSlot, StreamRefusal> {
        let mut open = self.open.lock().expect("streams");
        let total: usize = open.values().sum();
        let mine = open.get(&ip).copied().unwrap_or(0);
        if mine >= limits.max_streams_per_ip {
            return Err(StreamRefusal::PerAddress(limits.max_streams_per_ip));
        }
        if total >= limits.max_streams {
            return Err(StreamRefusal::Total(limits.max_streams));
        }
        *open.entry(ip).or_insert(0) += 1;
        Ok(StreamSlot { streams: self.clone(), ip })
    }

    pub fn count(&self) -> usize {
        self.open.lock().expect("streams").values().sum()
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("streams");
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Limits {
        Limits { max_connections: 3, max_connections_per_ip: 2, ..Limits::default() }
    }

    #[test]
    fn idle_connections_make_room_and_busy_ones_do_not() {
        let t = Table::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = t.admit(a, &small()).unwrap();
        let _busy = first.busy();
        let second = t.admit(a, &small()).unwrap();
        // The address's cap: its idle connection goes, the busy one stays.
        let third = t.admit(a, &small()).unwrap();
        assert!(second.close.is_cancelled() && !first.close.is_cancelled());
        let _b3 = third.busy();
        // The total cap with every connection busy except b's own.
        let from_b = t.admit(b, &small()).unwrap();
        let _bb = from_b.busy();
        assert!(t.admit(b, &small()).is_none(), "every connection busy: refused");
    }

    #[test]
    fn streams_are_capped_per_address_and_in_all() {
        let s = Arc::new(Streams::default());
        let l = Limits { max_streams: 3, max_streams_per_ip: 2, ..Limits::default() };
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap());
        let a1 = s.open(a, &l).ok().unwrap();
        let _a2 = s.open(a, &l).ok().unwrap();
        assert!(matches!(s.open(a, &l), Err(StreamRefusal::PerAddress(2))));
        let _b1 = s.open(b, &l).ok().unwrap();
        assert!(matches!(s.open(c, &l), Err(StreamRefusal::Total(3))));
        drop(a1);
        assert!(s.open(c, &l).is_ok());
    }
}
