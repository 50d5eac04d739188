//! The node's ZMQ `hashblock` publisher: the fastest way to hear of a new block.
//!
//! bitcoind (`-zmqpubhashblock=tcp://127.0.0.1:28332`) publishes a three-part message per
//! block: the topic `hashblock`, the 32-byte hash (display byte order), and a 4-byte
//! little-endian sequence number. A gap in the sequence means notifications were lost,
//! which only costs latency here: the work feed's poll catches up.

use crate::zmtp::{Incoming, Subscriber};
use bitcoin::BlockHash;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Decodes one `hashblock` message into the block hash and its sequence number.
pub fn decode(frames: &[&[u8]]) -> Option<(BlockHash, u32)> {
    if frames.len() < 2 || frames[0] != b"hashblock" || frames[1].len() != 32 {
        return None;
    }
    let mut bytes: [u8; 32] = frames[1].try_into().ok()?;
    // Published in display order; BlockHash holds internal (reversed) order.
    bytes.reverse();
    let seq = frames.get(2).and_then(|s| <[u8; 4]>::try_from(*s).ok()).map(u32::from_le_bytes).unwrap_or(0);
    Some((bitcoin::hashes::Hash::from_byte_array(bytes), seq))
}

/// How long the subscription may stay silent before the publisher is asked whether it is
/// still there (a ZMTP PING; a publisher older than ZMTP 3.1 is reconnected instead). A node
/// that restarts closes the connection, which is noticed at once; the PING finds the rest:
/// a node host that vanished without closing (power cut, network), or a hung node. A
/// silent but healthy publisher keeps its one connection however long it stays silent.
pub const PROBE_AFTER: Duration = Duration::from_secs(30);

/// The former name of [`PROBE_AFTER`]: quiet subscriptions are no longer renewed.
#[deprecated(note = "use PROBE_AFTER: a quiet subscription is probed, not renewed")]
pub const RESUBSCRIBE_AFTER: Duration = PROBE_AFTER;

/// Subscribes to `endpoint` and forwards every new block hash until `shutdown`, reconnecting
/// with backoff when the node restarts.
pub async fn forward(endpoint: &str, out: mpsc::Sender<BlockHash>, shutdown: CancellationToken) {
    forward_with(endpoint, out, shutdown, PROBE_AFTER).await
}

/// [`forward`] with another silence limit, `probe_after` (tests use a short one). A
/// publisher that does not answer within `probe_after` of being probed, or does not finish
/// the handshake within it, is given up and connected to again: at most one connection is
/// open at any time, and it is closed before the next is made.
///
/// The subscription runs in a task of its own that is restarted if it panics: a lost ZMQ
/// feed must cost only latency (the work feed still polls), never the feed itself.
pub async fn forward_with(
    endpoint: &str,
    out: mpsc::Sender<BlockHash>,
    shutdown: CancellationToken,
    probe_after: Duration,
) {
    loop {
        let task = tokio::spawn(subscribe_loop(endpoint.to_string(), out.clone(), shutdown.clone(), probe_after));
        match task.await {
            Err(e) if e.is_panic() => {
                tracing::error!(endpoint, "ZMQ subscriber crashed; restarting it");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            _ => return,
        }
    }
}

async fn subscribe_loop(
    endpoint: String,
    out: mpsc::Sender<BlockHash>,
    shutdown: CancellationToken,
    probe_after: Duration,
) {
    let endpoint = endpoint.as_str();
    let mut backoff = Duration::from_millis(500);
    loop {
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = Subscriber::connect(endpoint, b"hashblock", probe_after.max(Duration::from_secs(1))) => r,
        };
        let mut sub = match connected {
            Ok(sub) => sub,
            Err(e) => {
                tracing::warn!(endpoint, error = %e, "ZMQ hashblock not reachable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        tracing::info!(endpoint, "listening for new blocks over ZMQ");
        backoff = Duration::from_millis(500);
        let mut last_seq: Option<u32> = None;
        let mut probed = false;
        // `sub` is dropped at the end of each pass, which closes its connection before the
        // next one is made.
        loop {
            let incoming = tokio::select! {
                _ = shutdown.cancelled() => return,
                i = sub.next(probe_after) => i,
            };
            let frames = match incoming {
                Ok(Incoming::Message(frames)) => frames,
                Ok(Incoming::Alive) => {
                    probed = false;
                    continue;
                }
                Ok(Incoming::Silent) if !probed && sub.can_ping() => {
                    tracing::debug!(endpoint, "ZMQ quiet for a while; asking the publisher whether it is there");
                    if let Err(e) = sub.ping().await {
                        tracing::warn!(endpoint, error = %e, "ZMQ connection lost; reconnecting");
                        break;
                    }
                    probed = true;
                    continue;
                }
                Ok(Incoming::Silent) => {
                    tracing::warn!(endpoint, "ZMQ publisher did not answer; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(endpoint, error = %e, "ZMQ connection lost; reconnecting");
                    break;
                }
            };
            probed = false;
            let frames: Vec<&[u8]> = frames.iter().map(|f| f.as_deref().unwrap_or_default()).collect();
            let Some((hash, seq)) = decode(&frames) else { continue };
            if let Some(prev) = last_seq {
                if seq != prev.wrapping_add(1) {
                    tracing::debug!(prev, seq, "ZMQ notifications were missed");
                }
            }
            last_seq = Some(seq);
            if out.send(hash).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_bitcoind_framing() {
        let display = "0000000000000000000320283a032748cef8227873ff4872689bf23f1cda83a5";
        let raw = hex::decode(display).unwrap();
        let (hash, seq) = decode(&[b"hashblock", &raw, &7u32.to_le_bytes()]).unwrap();
        assert_eq!(hash.to_string(), display);
        assert_eq!(seq, 7);
        assert!(decode(&[b"rawtx", &raw]).is_none());
        assert!(decode(&[b"hashblock", &raw[..31]]).is_none());
    }
}
