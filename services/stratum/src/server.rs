//! The listener: accepts miners, enforces per-address and total connection limits, and
//! hands each connection a unique extranonce1.

use crate::connection;
use crate::pool::Pool;
use crate::protocol::{self, ErrorCode, Rejection};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Counts connections per IP; a slot is given back when its guard drops.
#[derive(Default)]
struct Admission {
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

struct Slot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.admission.per_ip.lock().expect("admission lock");
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Admission {
    fn admit(self: &Arc<Self>, ip: IpAddr, per_ip: usize, total: usize) -> Result<Slot, &'static str> {
        let mut map = self.per_ip.lock().expect("admission lock");
        let all: usize = map.values().sum();
        if all >= total {
            return Err("server full");
        }
        let n = map.entry(ip).or_insert(0);
        if *n >= per_ip {
            return Err("too many connections from your address");
        }
        *n += 1;
        Ok(Slot { admission: self.clone(), ip })
    }
}

/// Accepts miners until `shutdown` fires.
pub async fn run(listener: TcpListener, pool: Arc<Pool>, shutdown: CancellationToken) {
    let admission = Arc::new(Admission::default());
    // Extranonce1 values start at a random point so two servers (or a restart) hand out
    // different ones; they only need to be unique among live connections.
    let next = AtomicU32::new(rand::random());
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            a = listener.accept() => a,
            // Reap finished connection tasks so the set stays small.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (mut stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning on accept.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match admission.admit(peer.ip(), pool.limits.connections_per_ip, pool.limits.max_connections) {
            Ok(s) => s,
            Err(why) => {
                tracing::warn!(%peer, why, "connection refused");
                let line = protocol::reply_error(&serde_json::Value::Null, &Rejection::new(ErrorCode::Other, why));
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
                        let _ = stream.write_all(format!("{line}\n").as_bytes()).await;
                        let _ = stream.shutdown().await;
                    })
                    .await;
                });
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
    // Let connections see the cancellation and close their sockets.
    while tasks.join_next().await.is_some() {}
}
