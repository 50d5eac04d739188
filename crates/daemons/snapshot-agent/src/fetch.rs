//! Getting bytes from the snapshot server: whole small documents, and chunks resumed with
//! HTTP Range (If-Range guards against a file that changed between two attempts), retried
//! with backoff on server errors and timeouts, under an optional bandwidth limit; and the
//! snapshot's documents fetched and checked by the format's one `verify`. Where each object is
//! comes from the [`Source`]: the published tree's URL, or MineBox Cloud's presigned URLs
//! (asked for again when the store says they expired).

use crate::source::{Doc, Located, Object, Source};
use crate::AgentError;
use futures::StreamExt;
use minebox_snapshot::minisign::{PublicKey, SignError};
use minebox_snapshot::{ChunkHash, Verified, VerifyError};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// A shared byte budget per second (a token bucket over every download at once).
pub struct Bandwidth {
    per_sec: u64,
    state: Mutex<(f64, Instant)>,
}

impl Bandwidth {
    pub fn new(per_sec: u64) -> Bandwidth {
        Bandwidth { per_sec, state: Mutex::new((per_sec as f64, Instant::now())) }
    }

    async fn take(&self, n: usize) {
        let mut s = self.state.lock().await;
        let now = Instant::now();
        s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.per_sec as f64).min(self.per_sec as f64);
        s.1 = now;
        s.0 -= n as f64;
        if s.0 < 0.0 {
            let wait = Duration::from_secs_f64(-s.0 / self.per_sec as f64);
            tokio::time::sleep(wait).await;
        }
    }
}

pub struct Fetcher {
    pub http: reqwest::Client,
    pub source: Source,
    pub retries: u32,
    pub bandwidth: Option<Arc<Bandwidth>>,
    /// Bytes received from the network (for progress and the differential test).
    pub received: Arc<std::sync::atomic::AtomicU64>,
}

fn transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
}

/// How often one fetch asks for fresh presigned URLs after the store refused them: a store
/// that refuses fresh ones too is refusing for another reason (its answer is then the error).
const RENEWALS: u32 = 2;

impl Fetcher {
    /// A fetcher for `source` with no bandwidth limit (documents, the service's checks).
    pub fn new(http: reqwest::Client, source: Source, retries: u32) -> Fetcher {
        Fetcher { http, source, retries, bandwidth: None, received: Default::default() }
    }

    /// `Ok(true)`: the store refused an expired presigned URL and fresh ones were asked for;
    /// try again without counting it as a failed attempt.
    async fn renewed(
        &self,
        err: &AgentError,
        what: Object,
        at: &Located,
        renewals: &mut u32,
    ) -> Result<bool, AgentError> {
        if !matches!(err, AgentError::Http { status: 403, .. }) || *renewals >= RENEWALS {
            return Ok(false);
        }
        *renewals += 1;
        self.source.refresh(what, at).await
    }

    async fn backoff(attempt: u32) {
        tokio::time::sleep(Duration::from_millis(200u64 << attempt.min(6))).await;
    }

    /// Sends one request. `Ok(None)`: worth another try (why is left in `last`); a missing
    /// file or a refusal is final. A 416 is passed through for the resuming caller.
    async fn attempt(
        &self,
        req: reqwest::RequestBuilder,
        url: &str,
        last: &mut String,
    ) -> Result<Option<reqwest::Response>, AgentError> {
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                *last = e.to_string();
                return Ok(None);
            }
        };
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(AgentError::NotFound { url: url.to_string() });
        }
        if transient(status) {
            *last = format!("HTTP {status}");
            return Ok(None);
        }
        if !status.is_success() && status != reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            return Err(AgentError::Http { url: url.to_string(), status: status.as_u16() });
        }
        Ok(Some(resp))
    }

    /// A whole small document (manifest, signature, index), at most `limit` bytes.
    pub async fn document(&self, doc: Doc, limit: u64) -> Result<Vec<u8>, AgentError> {
        let what = Object::Doc(doc);
        let mut at = self.source.locate(what).await?;
        let mut url = at.url.clone();
        let mut last = String::new();
        let mut renewals = 0;
        let mut attempt = 0;
        while attempt <= self.retries {
            if attempt > 0 {
                Self::backoff(attempt).await;
            }
            attempt += 1;
            let resp = match self.attempt(self.http.get(&url), &url, &mut last).await {
                Ok(Some(resp)) => resp,
                Ok(None) => continue,
                Err(e) => {
                    if !self.renewed(&e, what, &at, &mut renewals).await? {
                        return Err(e);
                    }
                    at = self.source.locate(what).await?;
                    url = at.url.clone();
                    attempt -= 1;
                    continue;
                }
            };
            if !resp.status().is_success() {
                return Err(AgentError::Http { url, status: resp.status().as_u16() });
            }
            let mut body = Vec::new();
            let mut stream = resp.bytes_stream();
            let mut failed = None;
            while let Some(b) = stream.next().await {
                match b {
                    Ok(b) => {
                        self.received.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        body.extend_from_slice(&b);
                        if body.len() as u64 > limit {
                            return Err(AgentError::TooLarge { url, limit });
                        }
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            match failed {
                Some(e) => last = format!("body cut short: {e}"),
                None => return Ok(body),
            }
        }
        Err(AgentError::Unreachable { url, tries: self.retries + 1, last })
    }

    /// Downloads a compressed chunk into `part`, resuming what is there; returns when the
    /// server says the body is complete. The caller verifies the content.
    pub async fn chunk_to_file(&self, hash: ChunkHash, part: &Path) -> Result<(), AgentError> {
        let what = Object::Chunk(hash);
        let etag_path = part.with_extension("etag");
        let mut last = String::new();
        let mut renewals = 0;
        let mut attempt = 0;
        let mut url = String::new();
        while attempt <= self.retries {
            if attempt > 0 {
                Self::backoff(attempt).await;
            }
            attempt += 1;
            // Asked each time: a presigned URL may have expired since the last attempt.
            let at = self.source.locate(what).await?;
            url = at.url.clone();
            let have = tokio::fs::metadata(part).await.map(|m| m.len()).unwrap_or(0);
            let etag = tokio::fs::read_to_string(&etag_path).await.ok();
            let mut req = self.http.get(&url);
            if have > 0 {
                req = req.header("Range", format!("bytes={have}-"));
                if let Some(e) = &etag {
                    // If the file changed since the first part, send it whole instead.
                    req = req.header("If-Range", e.trim());
                }
            }
            let resp = match self.attempt(req, &url, &mut last).await {
                Ok(Some(resp)) => resp,
                Ok(None) => continue,
                Err(e) => {
                    if !self.renewed(&e, what, &at, &mut renewals).await? {
                        return Err(e);
                    }
                    attempt -= 1;
                    continue;
                }
            };
            let status = resp.status();
            if status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
                // What we have is already complete (or garbage): let the caller verify it.
                return Ok(());
            }
            let append = status == reqwest::StatusCode::PARTIAL_CONTENT;
            if let Some(e) = resp.headers().get("etag").and_then(|v| v.to_str().ok()) {
                let _ = tokio::fs::write(&etag_path, e).await;
            }
            let expected = resp.content_length();
            let mut file = if append {
                tokio::fs::OpenOptions::new().append(true).open(part).await
            } else {
                tokio::fs::File::create(part).await
            }
            .map_err(|e| AgentError::Io { path: part.display().to_string(), message: e.to_string() })?;
            let mut got = 0u64;
            let mut stream = resp.bytes_stream();
            let mut failed = None;
            while let Some(b) = stream.next().await {
                match b {
                    Ok(b) => {
                        if let Some(bw) = &self.bandwidth {
                            bw.take(b.len()).await;
                        }
                        self.received.fetch_add(b.len() as u64, std::sync::atomic::Ordering::Relaxed);
                        got += b.len() as u64;
                        file.write_all(&b)
                            .await
                            .map_err(|e| AgentError::Io { path: part.display().to_string(), message: e.to_string() })?;
                    }
                    Err(e) => {
                        failed = Some(e.to_string());
                        break;
                    }
                }
            }
            file.flush()
                .await
                .map_err(|e| AgentError::Io { path: part.display().to_string(), message: e.to_string() })?;
            match (failed, expected) {
                (Some(e), _) => last = format!("body cut short after {got} bytes: {e}"),
                (None, Some(n)) if n != got => last = format!("body cut short: {got} of {n} bytes"),
                _ => return Ok(()),
            }
        }
        Err(AgentError::Unreachable { url, tries: self.retries + 1, last })
    }
}

impl From<VerifyError> for AgentError {
    fn from(e: VerifyError) -> AgentError {
        match e {
            VerifyError::Signature(e) => AgentError::Signature(e),
            VerifyError::Malformed { what, why } => AgentError::Malformed { what, why },
            VerifyError::Tampered { what } => AgentError::Tampered { what },
        }
    }
}

/// Fetches the manifest, its signature and the index, and checks them
/// (`minebox_snapshot::verify_manifest`, then `verify_index`).
pub async fn fetch_verified(f: &Fetcher, keys: &[PublicKey], clock_trusted: bool) -> Result<Verified, AgentError> {
    // The publisher replaces the signature and the manifest one after the other; a reader
    // caught between the two sees a mismatch, so a bad signature is fetched once more.
    let mut tries = 0;
    let signed = loop {
        let manifest_bytes = f.document(Doc::Manifest, 64 * 1024).await?;
        let sig_text = f.document(Doc::Signature, 4096).await?;
        match minebox_snapshot::verify_manifest(&manifest_bytes, &String::from_utf8_lossy(&sig_text), keys) {
            Ok(signed) => break signed,
            Err(VerifyError::Signature(SignError::BadSignature)) if tries == 0 => {
                tries += 1;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    let manifest = signed.manifest();
    if clock_trusted && minebox_platform::clock::unix_secs() > manifest.expires() {
        return Err(AgentError::Expired { expires: manifest.expires() });
    }
    let index_bytes = f.document(Doc::Index, manifest.index_size().max(1) + 1).await?;
    Ok(signed.verify_index(&index_bytes)?)
}
