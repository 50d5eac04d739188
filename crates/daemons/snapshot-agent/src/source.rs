//! Where an install's bytes come from: the published tree at a URL (`[snapshots] url`), or
//! MineBox Cloud's grant (issue 16, point 5): short-lived URLs presigned by the object store for
//! the manifest, its signature and the index, and, asked in batches, for exactly the chunks the
//! box lacks. Either way the bytes are checked the same: the manifest's signature against the
//! pinned keys, every chunk's hash. The cloud only points at objects; a tampered one is refused.
//!
//! Presigned URLs expire ([`Grant::expires_in`]): one that has (by the clock, or because the
//! store answers 403) is asked for again: a new grant for the documents (the cloud resumes the
//! same download, it is not counted twice), new chunk URLs for the chunks still wanted.

use crate::AgentError;
use minebox_cloud_link::snapshots::{ChunkRequest, Completion, Grant, GrantRequest, MAX_CHUNKS_PER_REQUEST};
use minebox_cloud_link::{CloudLink, LinkError};
use minebox_snapshot::{layout, ChunkHash};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One of the three documents every snapshot has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doc {
    Manifest,
    Signature,
    Index,
}

impl Doc {
    /// Its path in a published tree.
    pub fn rel(self) -> &'static str {
        match self {
            Doc::Manifest => layout::MANIFEST,
            Doc::Signature => layout::SIGNATURE,
            Doc::Index => layout::INDEX,
        }
    }
}

/// What a fetch is after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Doc(Doc),
    Chunk(ChunkHash),
}

/// A URL to GET, and which set of presigned URLs it came from (to ask again only once when
/// several downloads find theirs expired at the same time).
#[derive(Debug, Clone)]
pub struct Located {
    pub url: String,
    pub generation: u64,
}

#[derive(Clone)]
pub enum Source {
    /// The published tree's root (`<snapshots.url>/<coin>/<network>`).
    Url(String),
    /// A download granted by MineBox Cloud.
    Cloud(Arc<CloudDownload>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url(base) => write!(f, "Url({base})"),
            Source::Cloud(d) => write!(f, "Cloud(download {})", d.download_id()),
        }
    }
}

impl Source {
    pub async fn locate(&self, what: Object) -> Result<Located, AgentError> {
        match self {
            Source::Url(base) => {
                let rel = match what {
                    Object::Doc(d) => d.rel().to_string(),
                    Object::Chunk(h) => layout::chunk_path(&h),
                };
                Ok(Located { url: format!("{}/{rel}", base.trim_end_matches('/')), generation: 0 })
            }
            Source::Cloud(d) => d.locate(what).await,
        }
    }

    /// The store refused `located` (403: its signature expired): ask the cloud for fresh URLs.
    /// False when there is nothing to ask (a plain URL: the refusal is final).
    pub async fn refresh(&self, what: Object, located: &Located) -> Result<bool, AgentError> {
        match self {
            Source::Url(_) => Ok(false),
            Source::Cloud(d) => d.refresh(what, located.generation).await.map(|()| true),
        }
    }

    /// The chunks the install still has to download (not reused from disk, not already
    /// staged), in the order it takes them (last first): a cloud source asks for their URLs as
    /// the install reaches them, in batches, and for no others.
    pub async fn want_chunks(&self, chunks: impl IntoIterator<Item = ChunkHash>) -> Result<(), AgentError> {
        match self {
            Source::Url(_) => Ok(()),
            Source::Cloud(d) => d.want(chunks).await,
        }
    }

    /// A chunk arrived and verified: not to be asked for again.
    pub async fn chunk_done(&self, hash: ChunkHash, compressed_bytes: u64) {
        if let Source::Cloud(d) = self {
            d.done(hash, compressed_bytes).await;
        }
    }
}

/// What an error from the cloud means for an install.
pub fn cloud_error(e: LinkError) -> AgentError {
    match e {
        LinkError::OverQuota { message } => AgentError::OverQuota { message },
        other => AgentError::Cloud { message: other.to_string() },
    }
}

/// Presigned URLs are used up to this share of their life, then asked for again (a download
/// that starts just before expiry would otherwise fail halfway).
fn usable_for(expires_in: u64) -> Duration {
    Duration::from_secs(expires_in).mul_f64(0.8)
}

struct Documents {
    grant: Grant,
    until: Instant,
    generation: u64,
}

#[derive(Default)]
struct ChunkBook {
    /// Chunk name → presigned URL, until when it may be used, and which request gave it.
    urls: HashMap<String, (String, Instant, u64)>,
    /// Chunks still to download, in the order the install takes them: URLs are asked for the
    /// next ones in that order, so they are fresh when used.
    upcoming: Vec<String>,
    /// Wanted and not yet arrived.
    wanted: BTreeSet<String>,
    requests: u64,
}

/// One download granted by the cloud: its grant (renewed when its URLs expire), the chunk URLs
/// asked for so far, and what has been fetched (reported when it completes).
pub struct CloudDownload {
    link: Arc<CloudLink>,
    request: GrantRequest,
    docs: Mutex<Documents>,
    chunks: Mutex<ChunkBook>,
    chunks_fetched: AtomicU64,
    bytes_fetched: AtomicU64,
}

impl CloudDownload {
    /// Asks the cloud for the current snapshot of `request.coin`; over quota is
    /// [`AgentError::OverQuota`] with the cloud's words.
    pub async fn grant(link: Arc<CloudLink>, request: GrantRequest) -> Result<CloudDownload, LinkError> {
        let grant = link.snapshot_grant(&request).await?;
        Ok(CloudDownload::from_grant(link, request, grant))
    }

    pub fn from_grant(link: Arc<CloudLink>, request: GrantRequest, grant: Grant) -> CloudDownload {
        let until = Instant::now() + usable_for(grant.expires_in);
        CloudDownload {
            link,
            request,
            docs: Mutex::new(Documents { grant, until, generation: 1 }),
            chunks: Mutex::default(),
            chunks_fetched: AtomicU64::new(0),
            bytes_fetched: AtomicU64::new(0),
        }
    }

    /// The cloud's id of this download.
    pub fn download_id(&self) -> String {
        self.docs.try_lock().map(|d| d.grant.download.clone()).unwrap_or_else(|_| "(renewing)".into())
    }

    /// The grant as it stands (the catalogue entry, the plan's use when last asked).
    pub async fn current(&self) -> Grant {
        self.docs.lock().await.grant.clone()
    }

    /// (chunks, compressed bytes) downloaded through this grant so far.
    pub fn fetched(&self) -> (u64, u64) {
        (self.chunks_fetched.load(Ordering::Relaxed), self.bytes_fetched.load(Ordering::Relaxed))
    }

    async fn locate(&self, what: Object) -> Result<Located, AgentError> {
        match what {
            Object::Doc(doc) => {
                let mut d = self.docs.lock().await;
                if Instant::now() >= d.until {
                    self.regrant(&mut d).await?;
                }
                let g = &d.grant;
                let url = match doc {
                    Doc::Manifest => &g.manifest_url,
                    Doc::Signature => &g.signature_url,
                    Doc::Index => &g.index_url,
                };
                Ok(Located { url: url.clone(), generation: d.generation })
            }
            Object::Chunk(hash) => {
                let name = hash.to_string();
                let mut book = self.chunks.lock().await;
                if let Some((url, until, generation)) = book.urls.get(&name) {
                    if Instant::now() < *until {
                        return Ok(Located { url: url.clone(), generation: *generation });
                    }
                }
                self.ask_chunks(&mut book, &name).await?;
                let (url, _, generation) = book.urls.get(&name).cloned().ok_or_else(|| AgentError::Cloud {
                    message: format!("MineBox Cloud gave no URL for chunk {name}; try the install again"),
                })?;
                Ok(Located { url, generation })
            }
        }
    }

    async fn refresh(&self, what: Object, generation: u64) -> Result<(), AgentError> {
        match what {
            Object::Doc(_) => {
                let mut d = self.docs.lock().await;
                // Another download renewed it meanwhile.
                if d.generation == generation {
                    self.regrant(&mut d).await?;
                }
            }
            Object::Chunk(hash) => {
                let name = hash.to_string();
                let mut book = self.chunks.lock().await;
                // Unless another download renewed it meanwhile.
                if book.urls.get(&name).is_none_or(|(_, _, g)| *g == generation) {
                    book.urls.remove(&name);
                    self.ask_chunks(&mut book, &name).await?;
                }
            }
        }
        Ok(())
    }

    /// Asks for the grant again: the cloud takes the unfinished download up again (same id,
    /// not counted against the plan twice). A different snapshot meanwhile (the publisher made
    /// a new one current) cannot finish this install: its chunks would not be the ones wanted.
    async fn regrant(&self, d: &mut Documents) -> Result<(), AgentError> {
        let grant = self.link.snapshot_grant(&self.request).await.map_err(cloud_error)?;
        if grant.snapshot.manifest_sha256 != d.grant.snapshot.manifest_sha256 {
            return Err(AgentError::Cloud {
                message: format!(
                    "MineBox Cloud now offers another {} snapshot (version {}, was {}); start the install again",
                    self.request.coin, grant.snapshot.version, d.grant.snapshot.version
                ),
            });
        }
        d.until = Instant::now() + usable_for(grant.expires_in);
        d.generation += 1;
        d.grant = grant;
        Ok(())
    }

    async fn want(&self, chunks: impl IntoIterator<Item = ChunkHash>) -> Result<(), AgentError> {
        let mut book = self.chunks.lock().await;
        book.upcoming = chunks.into_iter().map(|h| h.to_string()).collect();
        book.wanted = book.upcoming.iter().cloned().collect();
        book.urls.clear();
        Ok(())
    }

    /// URLs for `first` and the next chunks wanted that have no usable URL, one request of at
    /// most [`MAX_CHUNKS_PER_REQUEST`]: the cloud meters each chunk of a download once, however
    /// often its URL is asked for.
    async fn ask_chunks(&self, book: &mut ChunkBook, first: &str) -> Result<(), AgentError> {
        let download = self.docs.lock().await.grant.download.clone();
        let now = Instant::now();
        let batch = next_batch(first, &book.upcoming, |n| {
            book.wanted.contains(n) && book.urls.get(n).is_none_or(|(_, until, _)| now >= *until)
        });
        let got = self.link.chunk_urls(&download, &ChunkRequest { chunks: batch }).await.map_err(cloud_error)?;
        book.requests += 1;
        let until = now + usable_for(got.expires_in);
        for u in got.urls {
            book.urls.insert(u.chunk, (u.url, until, book.requests));
        }
        Ok(())
    }

    async fn done(&self, hash: ChunkHash, compressed_bytes: u64) {
        let mut book = self.chunks.lock().await;
        let name = hash.to_string();
        book.wanted.remove(&name);
        book.urls.remove(&name);
        self.chunks_fetched.fetch_add(1, Ordering::Relaxed);
        self.bytes_fetched.fetch_add(compressed_bytes, Ordering::Relaxed);
    }

    /// Tells the cloud the download is finished, with what it took.
    pub async fn complete(&self) -> Result<(), AgentError> {
        let download = self.docs.lock().await.grant.download.clone();
        let (chunks_fetched, bytes_fetched) = self.fetched();
        self.link
            .download_complete(&download, &Completion { chunks_fetched, bytes_fetched })
            .await
            .map_err(cloud_error)?;
        Ok(())
    }
}

/// `first`, then the next of `upcoming` (taken from its end) that `lacks_url`, up to
/// [`MAX_CHUNKS_PER_REQUEST`] names.
fn next_batch(first: &str, upcoming: &[String], lacks_url: impl Fn(&str) -> bool) -> Vec<String> {
    let mut batch = vec![first.to_string()];
    batch.extend(
        upcoming.iter().rev().filter(|n| *n != first && lacks_url(n)).take(MAX_CHUNKS_PER_REQUEST - 1).cloned(),
    );
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_urls_are_asked_for_the_next_chunks_without_one_in_batches_the_cloud_accepts() {
        let upcoming: Vec<String> = (0..600).map(|i| format!("{i:064x}")).collect();
        let first = upcoming[599].clone();
        let batch = next_batch(&first, &upcoming, |_| true);
        assert_eq!(batch.len(), MAX_CHUNKS_PER_REQUEST);
        assert_eq!(batch[0], first);
        assert_eq!(batch[1], upcoming[598], "the next ones the install takes");
        assert_eq!(batch.iter().collect::<BTreeSet<_>>().len(), batch.len(), "no name twice");
        // Chunks that already have a URL, or arrived, are not asked for.
        let odd = |n: &str| u64::from_str_radix(&n[48..], 16).unwrap() % 2 == 1;
        let batch = next_batch(&upcoming[10], &upcoming[..20], odd);
        assert_eq!(batch.len(), 1 + 10);
        assert!(batch[1..].iter().all(|n| odd(n)));
        assert_eq!(next_batch(&first, &[], |_| true), vec![first], "the one asked for always");
    }

    #[test]
    fn urls_are_renewed_before_they_expire() {
        assert!(usable_for(300) < Duration::from_secs(300));
        assert!(usable_for(300) >= Duration::from_secs(200));
        assert_eq!(usable_for(0), Duration::ZERO, "already expired: asked for again before use");
    }

    #[tokio::test]
    async fn a_plain_url_source_builds_the_published_paths_and_has_nothing_to_renew() {
        let s = Source::Url("https://snapshots.example/v1/btc/main/".into());
        let m = s.locate(Object::Doc(Doc::Manifest)).await.unwrap();
        assert_eq!(m.url, format!("https://snapshots.example/v1/btc/main/{}", layout::MANIFEST));
        let h = ChunkHash::of(b"chunk");
        let c = s.locate(Object::Chunk(h)).await.unwrap();
        assert_eq!(c.url, format!("https://snapshots.example/v1/btc/main/{}", layout::chunk_path(&h)));
        assert!(!s.refresh(Object::Chunk(h), &c).await.unwrap(), "a refusal from a plain URL is final");
    }

    #[test]
    fn over_quota_keeps_the_clouds_words_and_other_refusals_name_the_cloud() {
        let words = "This month's 3 snapshot downloads are used; the count resets on 1 January, or Plus lifts it.";
        let e = cloud_error(LinkError::OverQuota { message: words.into() });
        assert!(matches!(e, AgentError::OverQuota { .. }));
        assert_eq!(e.to_string(), words);
        let e = cloud_error(LinkError::Refused { status: 409, message: "no".into() });
        assert!(e.to_string().contains("MineBox Cloud"), "{e}");
    }
}
