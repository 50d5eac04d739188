//! Bundle downloads into the state directory, resumable across restarts and reboots.
//!
//! The file grows as `<name>.partial`; a later attempt asks the server for the rest with an
//! HTTP Range request. Only a file of the expected size and SHA-256 becomes `<name>.raucb`;
//! anything longer than expected, or with the wrong hash, is deleted and refused. Memory
//! use is one network chunk and one 64 KiB hashing buffer, whatever the bundle's size.

use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the downloaded file must be.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Exact size, when a manifest says it.
    pub size: Option<u64>,
    /// Lower-case hex SHA-256, when a manifest says it.
    pub sha256: Option<String>,
    /// Never more than this many bytes.
    pub limit: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("downloading {url}: {message}")]
    Http { url: String, message: String },
    #[error("download is larger than {limit} bytes: refused and deleted")]
    TooLarge { limit: u64 },
    #[error("download has SHA-256 {found}, the manifest says {expected}: refused and deleted")]
    WrongHash { found: String, expected: String },
    #[error("download ended at {got} of {expected} bytes (kept; the next attempt resumes)")]
    Short { got: u64, expected: u64 },
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io { path: path.display().to_string(), source }
}

/// Downloads `url` into `dir` as `<name>.raucb` (resuming `<name>.partial`), calling
/// `progress(done, total)` as bytes arrive. Other leftover partial downloads are removed.
pub async fn fetch(
    client: &reqwest::Client,
    url: &str,
    dir: &Path,
    name: &str,
    want: &Expected,
    mut progress: impl FnMut(u64, u64),
) -> Result<PathBuf, DownloadError> {
    tokio::fs::create_dir_all(dir).await.map_err(io(dir))?;
    let done_path = dir.join(format!("{name}.raucb"));
    let part_path = dir.join(format!("{name}.partial"));
    remove_others(dir, name).await;
    if tokio::fs::metadata(&done_path).await.is_ok() {
        if let Ok(p) = finish(&done_path, &done_path, want).await {
            return Ok(p);
        }
    }
    let http = |message: String| DownloadError::Http { url: url.to_string(), message };
    let mut have = tokio::fs::metadata(&part_path).await.map(|m| m.len()).unwrap_or(0);
    if want.size.is_some_and(|s| have > s) || have > want.limit {
        let _ = tokio::fs::remove_file(&part_path).await;
        have = 0;
    }
    let total_hint = want.size.unwrap_or(0);
    if want.size.is_none_or(|s| have < s) {
        let mut req = client.get(url);
        if have > 0 {
            req = req.header(RANGE, format!("bytes={have}-"));
        }
        let mut resp = req.send().await.map_err(|e| http(e.to_string()))?;
        let status = resp.status();
        let append = match status {
            StatusCode::PARTIAL_CONTENT => {
                let start = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(have) {
                    return Err(http(format!("server resumed at {start:?}, not at byte {have}")));
                }
                true
            }
            // The server ignored the Range header: start again from the first byte.
            StatusCode::OK => false,
            StatusCode::RANGE_NOT_SATISFIABLE => {
                let _ = tokio::fs::remove_file(&part_path).await;
                return Err(http("the partial download is longer than the file; deleted it".into()));
            }
            s => return Err(http(format!("HTTP {s}"))),
        };
        if !append {
            have = 0;
        }
        let announced = resp.content_length().map(|l| l + have);
        if announced.is_some_and(|a| a > want.limit || want.size.is_some_and(|s| a > s)) {
            let _ = tokio::fs::remove_file(&part_path).await;
            return Err(DownloadError::TooLarge { limit: want.size.unwrap_or(want.limit).min(want.limit) });
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part_path)
            .await
            .map_err(io(&part_path))?;
        let total = want.size.or(announced).unwrap_or(total_hint);
        progress(have, total);
        loop {
            let chunk = match resp.chunk().await {
                Ok(Some(c)) => c,
                Ok(None) => break,
                Err(e) => {
                    // Keep what arrived: the next attempt continues from there.
                    file.sync_all().await.map_err(io(&part_path))?;
                    return Err(http(e.to_string()));
                }
            };
            have += chunk.len() as u64;
            if have > want.limit || want.size.is_some_and(|s| have > s) {
                drop(file);
                let _ = tokio::fs::remove_file(&part_path).await;
                return Err(DownloadError::TooLarge { limit: want.size.unwrap_or(want.limit).min(want.limit) });
            }
            file.write_all(&chunk).await.map_err(io(&part_path))?;
            progress(have, total);
        }
        file.sync_all().await.map_err(io(&part_path))?;
    }
    if let Some(s) = want.size {
        if have < s {
            return Err(DownloadError::Short { got: have, expected: s });
        }
    }
    finish(&part_path, &done_path, want).await
}

/// Checks the hash of a complete file and gives it its final name.
async fn finish(from: &Path, to: &Path, want: &Expected) -> Result<PathBuf, DownloadError> {
    let len = tokio::fs::metadata(from).await.map_err(io(from))?.len();
    if want.size.is_some_and(|s| s != len) || len > want.limit {
        let _ = tokio::fs::remove_file(from).await;
        return Err(DownloadError::TooLarge { limit: want.limit });
    }
    if let Some(expected) = &want.sha256 {
        let found = sha256_file(from).await.map_err(io(from))?;
        if !found.eq_ignore_ascii_case(expected) {
            let _ = tokio::fs::remove_file(from).await;
            return Err(DownloadError::WrongHash { found, expected: expected.clone() });
        }
    }
    if from != to {
        tokio::fs::rename(from, to).await.map_err(io(to))?;
    }
    Ok(to.to_path_buf())
}

/// SHA-256 of a file, read in 64 KiB pieces.
pub async fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = tokio::fs::File::open(path).await?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Only one download is kept: a newer version's replaces an older one's.
async fn remove_others(dir: &Path, keep: &str) {
    let Ok(mut rd) = tokio::fs::read_dir(dir).await else { return };
    while let Ok(Some(e)) = rd.next_entry().await {
        let n = e.file_name().to_string_lossy().into_owned();
        let stem = n.strip_suffix(".partial").or_else(|| n.strip_suffix(".raucb"));
        if stem.is_some_and(|s| s != keep) {
            let _ = tokio::fs::remove_file(e.path()).await;
        }
    }
}
