//! One typed client for the services' server-sent events (served by `minebox-events`: one
//! JSON object per `data:` line). The stratum server follows the supervisor's events, the
//! status page follows both services'; each reads them as the event type of the module
//! that defines the stream ([`crate::stratum::Event`], [`crate::supervisor::Event`]).

use serde::de::DeserializeOwned;
use std::time::Duration;

/// Longest line accepted from a service; a longer one means something is wrong, and the
/// connection is dropped and made again rather than held growing.
pub const MAX_LINE: usize = 64 << 10;

/// How long to wait before reconnecting: `first` after a stream that was open, doubling
/// while connecting fails, up to `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// Reads the event stream at `url` for as long as the returned future is polled (drop it
/// to stop), reconnecting when the service restarts, and hands each event that reads as
/// `T` to `on_event`. Lines that are not events of this type are skipped: keep-alives,
/// comments, kinds a newer service added.
pub async fn follow<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    backoff: Backoff,
    mut on_event: impl FnMut(T),
) {
    let mut wait = backoff.first;
    loop {
        // The client's own timeout is for short requests; a stream stays open for good.
        match http.get(url).timeout(Duration::from_secs(24 * 3600)).send().await {
            Ok(resp) if resp.status().is_success() => {
                wait = backoff.first;
                tracing::info!(url, "following events");
                if let Err(e) = read(resp, &mut on_event).await {
                    tracing::debug!(url, error = %e, "event stream ended");
                }
            }
            Ok(resp) => tracing::debug!(url, status = %resp.status(), "event stream refused; retrying"),
            Err(e) => tracing::debug!(url, error = %e, "event stream not reachable; retrying"),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(backoff.max);
    }
}

#[derive(Debug)]
enum ReadError {
    Http(reqwest::Error),
    TooLong,
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Http(e) => e.fmt(f),
            ReadError::TooLong => write!(f, "a line longer than {} KiB", MAX_LINE >> 10),
        }
    }
}

async fn read<T: DeserializeOwned>(mut resp: reqwest::Response, on_event: &mut impl FnMut(T)) -> Result<(), ReadError> {
    let mut lines = Lines::default();
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Http)? {
        lines.feed(&chunk, |data| {
            if let Ok(ev) = serde_json::from_slice::<T>(data) {
                on_event(ev);
            }
        })?;
    }
    Ok(())
}

/// Cuts a byte stream into lines and hands on the payload of each `data:` line.
#[derive(Default)]
struct Lines {
    line: Vec<u8>,
}

impl Lines {
    fn feed(&mut self, chunk: &[u8], mut data: impl FnMut(&[u8])) -> Result<(), ReadError> {
        for &b in chunk {
            if b == b'\n' {
                if let Some(d) = self.line.strip_prefix(b"data:") {
                    data(d);
                }
                self.line.clear();
            } else if self.line.len() < MAX_LINE {
                self.line.push(b);
            } else {
                return Err(ReadError::TooLong);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_lines_are_cut_across_chunks_and_others_skipped() {
        let text = b": keep-alive\ndata: {\"a\":1}\r\nevent: x\ndata:{\"a\":2}\n\ndata: {\"a\"";
        for cut in 0..text.len() {
            let mut got = Vec::new();
            let mut l = Lines::default();
            l.feed(&text[..cut], |d| got.push(serde_json::from_slice::<serde_json::Value>(d).unwrap())).unwrap();
            l.feed(&text[cut..], |d| got.push(serde_json::from_slice::<serde_json::Value>(d).unwrap())).unwrap();
            assert_eq!(got, [serde_json::json!({"a": 1}), serde_json::json!({"a": 2})], "cut at {cut}");
        }
    }

    #[test]
    fn a_runaway_line_ends_the_connection() {
        let mut l = Lines::default();
        assert!(matches!(l.feed(&vec![b'x'; MAX_LINE + 1], |_| {}), Err(ReadError::TooLong)));
    }
}
