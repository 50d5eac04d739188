//! The node's ZMQ `hashblock` publisher: the fastest way to hear of a new block.
//!
//! bitcoind (`-zmqpubhashblock=tcp://127.0.0.1:28332`) publishes a three-part message per
//! block: the topic `hashblock`, the 32-byte hash (display byte order), and a 4-byte
//! little-endian sequence number. A gap in the sequence means notifications were lost,
//! which only costs latency here: the work feed's poll catches up.

use bitcoin::BlockHash;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zeromq::{Socket, SocketRecv};

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

/// How long a subscription may stay silent before it is renewed. The ZMQ library does not
/// report a publisher that went away (a restarted node), so a quiet socket is reconnected
/// now and then; a localhost reconnect costs next to nothing, and the work feed's poll
/// covers the gap.
pub const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(30);

/// Subscribes to `endpoint` and forwards every new block hash until `shutdown`, reconnecting
/// with backoff when the node restarts.
pub async fn forward(endpoint: &str, out: mpsc::Sender<BlockHash>, shutdown: CancellationToken) {
    forward_with(endpoint, out, shutdown, RESUBSCRIBE_AFTER).await
}

/// [`forward`] with another silence limit (tests use a short one).
///
/// The subscription runs in a task of its own that is restarted if it panics: the `zeromq`
/// 0.4 SUB socket panics (`todo!`) on message kinds it does not implement, and a lost ZMQ
/// feed must cost only latency (the work feed still polls), never the feed itself.
pub async fn forward_with(
    endpoint: &str,
    out: mpsc::Sender<BlockHash>,
    shutdown: CancellationToken,
    resubscribe_after: Duration,
) {
    loop {
        let task = tokio::spawn(subscribe_loop(endpoint.to_string(), out.clone(), shutdown.clone(), resubscribe_after));
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
    resubscribe_after: Duration,
) {
    let endpoint = endpoint.as_str();
    let mut backoff = Duration::from_millis(500);
    loop {
        let mut socket = zeromq::SubSocket::new();
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = socket.connect(endpoint) => r,
        };
        if let Err(e) = connected {
            tracing::warn!(endpoint, error = %e, "ZMQ hashblock not reachable; retrying");
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(30));
            continue;
        }
        if let Err(e) = socket.subscribe("hashblock").await {
            tracing::warn!(endpoint, error = %e, "ZMQ subscribe failed; retrying");
            continue;
        }
        tracing::info!(endpoint, "listening for new blocks over ZMQ");
        backoff = Duration::from_millis(500);
        let mut last_seq: Option<u32> = None;
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(resubscribe_after) => {
                    tracing::debug!(endpoint, "ZMQ quiet for a while; renewing the subscription");
                    break;
                }
                m = socket.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(endpoint, error = %e, "ZMQ connection lost; reconnecting");
                    break;
                }
            };
            let frames: Vec<&[u8]> = msg.iter().map(|f| f.as_ref()).collect();
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
