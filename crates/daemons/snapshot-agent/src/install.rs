//! Installing a snapshot: verify the signed manifest, the index, then every chunk; build
//! the new data directory in a staging area next to the old one; swap it in atomically.
//!
//! Crash and power-cut behaviour: until the staging area is marked complete, the old data
//! directory is untouched and the next run resumes (chunks already staged are re-checked
//! by hash, partial downloads continue with HTTP Range). Once marked complete, the swap is
//! two renames on one filesystem; a run that finds a complete staging area finishes it.

use crate::fetch::{fetch_verified, Bandwidth, Fetcher};
use crate::progress::{Phase, SharedProgress};
use crate::source::Source;
use crate::AgentError;
use minebox_snapshot::chunk;
use minebox_snapshot::index::Index;
use minebox_snapshot::manifest::Manifest;
use minebox_snapshot::minisign::PublicKey;
use minebox_snapshot::ChunkHash;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Options {
    /// Where the snapshot comes from: the published tree's root URL, or a download granted by
    /// MineBox Cloud.
    pub source: Source,
    /// Pinned public keys (more than one while keys rotate).
    pub keys: Vec<PublicKey>,
    /// The directory to fill (a node's data directory).
    pub dest: PathBuf,
    pub parallel: usize,
    /// Bytes per second over all downloads.
    pub bandwidth: Option<u64>,
    /// Whether the clock can be believed (the Pi has no RTC battery: before NTP sync it
    /// may think it is 1970, and every manifest would look valid or expired by accident).
    pub clock_trusted: bool,
    pub retries: u32,
    pub request_timeout: Duration,
    /// An extra CA certificate (PEM) to trust, for a private mirror or the tests.
    pub ca_cert: Option<PathBuf>,
}

impl Options {
    /// From the published tree at `base_url`.
    pub fn new(base_url: &str, keys: Vec<PublicKey>, dest: &Path) -> Options {
        Options::from_source(Source::Url(base_url.to_string()), keys, dest)
    }

    pub fn from_source(source: Source, keys: Vec<PublicKey>, dest: &Path) -> Options {
        Options {
            source,
            keys,
            dest: dest.to_path_buf(),
            parallel: 4,
            bandwidth: None,
            clock_trusted: true,
            retries: 5,
            request_timeout: Duration::from_secs(30),
            ca_cert: None,
        }
    }
}

/// What is installed, kept beside the data directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Installed {
    pub coin: String,
    pub network: String,
    pub kind: minebox_snapshot::Kind,
    pub height: u64,
    pub version: u64,
    pub key_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub version: u64,
    pub bytes_total: u64,
    /// Bytes taken from files already on disk.
    pub bytes_reused: u64,
    /// Bytes received from the server (compressed chunks and documents).
    pub bytes_downloaded: u64,
    pub chunks_downloaded: u64,
    pub already_installed: bool,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// The directory beside `dest` where MineBox keeps snapshot state (same filesystem, so
/// the final swap is a rename).
pub fn state_dir(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "data".into());
    dest.with_file_name(format!(".{name}.snapshot"))
}

/// Where a `utxo` snapshot's file is installed for the node `dest`: beside the node's data
/// directory, never in place of it (the node keeps its datadir and loads the file by RPC).
pub fn utxo_dir(dest: &Path) -> PathBuf {
    state_dir(dest).join("utxo")
}

/// Records what is installed for `dest` (written whole, then renamed).
pub fn record(dest: &Path, what: &Installed) -> Result<(), AgentError> {
    let state = state_dir(dest);
    std::fs::create_dir_all(&state).map_err(io(&state))?;
    let path = state.join("installed.json");
    minebox_platform::fs::atomic_write(&path, serde_json::to_vec_pretty(what).expect("serializes")).map_err(io(&path))
}

pub fn installed(dest: &Path) -> Option<Installed> {
    std::fs::read(state_dir(dest).join("installed.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

fn free_bytes(path: &Path) -> Option<u64> {
    minebox_platform::fs::free_space(path).ok()
}

/// The staging area becomes the node's data directory, and the node runs as another user
/// (minebox-node) than the agent (minebox-snapshot): the agent's files must be usable
/// through the group they have (the agent's own, minebox-node), and by nobody else. The
/// service's UMask=0077 would leave them 0700/0600.
const NODE_DIR_MODE: u32 = 0o770;

/// A staged file's mode: the publisher's owner bits for owner and group (the node reads
/// and rewrites its databases), readable and writable at least, nothing for others.
fn node_file_mode(published: u32) -> u32 {
    let owner = (published & 0o700) | 0o600;
    owner | (owner >> 3)
}

/// Every directory of the staged tree, the tree itself included, to NODE_DIR_MODE.
fn open_to_node(staging: &Path) -> std::io::Result<()> {
    let mut stack = vec![staging.to_path_buf()];
    while let Some(dir) = stack.pop() {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(NODE_DIR_MODE))?;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

fn sync_dir(path: &Path) {
    if let Ok(d) = std::fs::File::open(path) {
        let _ = d.sync_all();
    }
}

/// Where a chunk's bytes go: every (staged file, offset) holding it.
type Targets = Vec<(Arc<std::fs::File>, u64)>;

/// Where a chunk's bytes can be found on disk already.
type LocalChunks = HashMap<ChunkHash, (PathBuf, u64, u32)>;

/// Chunks the files already in `dir` the same way the publisher did.
fn local_chunks(dir: &Path) -> LocalChunks {
    let mut out = HashMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => {
                    if let Ok(file) = std::fs::File::open(&p) {
                        let _ = chunk::chunk(std::io::BufReader::with_capacity(1 << 20, file), |piece, _| {
                            out.entry(piece.hash).or_insert((p.clone(), piece.offset, piece.size));
                            Ok(())
                        });
                    }
                }
                _ => {}
            }
        }
    }
    out
}

fn hash_region(file: &std::fs::File, offset: u64, size: u32) -> Option<ChunkHash> {
    let mut buf = vec![0u8; size as usize];
    file.read_exact_at(&mut buf, offset).ok()?;
    Some(ChunkHash::of(&buf))
}

pub async fn install(opts: Options, progress: SharedProgress) -> Result<Report, AgentError> {
    install_then(opts, progress, Phase::Done).await
}

/// [`install`], showing `then` once the files are in place: a `utxo` file is still to be
/// loaded by the node ([`Phase::Loading`]), and the page must not say `done` before it is.
pub async fn install_then(opts: Options, progress: SharedProgress, then: Phase) -> Result<Report, AgentError> {
    let mut http =
        reqwest::Client::builder().connect_timeout(Duration::from_secs(10)).read_timeout(opts.request_timeout);
    if let Some(ca) = &opts.ca_cert {
        let pem = std::fs::read(ca).map_err(io(ca))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| AgentError::Malformed { what: "CA certificate", why: e.to_string() })?;
        http = http.add_root_certificate(cert);
    }
    let received = progress.received();
    let fetcher = Arc::new(Fetcher {
        http: http.build().map_err(|e| AgentError::Malformed { what: "HTTP client", why: e.to_string() })?,
        source: opts.source.clone(),
        retries: opts.retries,
        bandwidth: opts.bandwidth.map(|b| Arc::new(Bandwidth::new(b))),
        received: received.clone(),
    });
    progress.set_phase(Phase::Verifying);
    let (manifest, index) = fetch_verified(&fetcher, &opts.keys, opts.clock_trusted).await?.into_parts();
    if let Some(have) = installed(&opts.dest) {
        if manifest.version() < have.version {
            return Err(AgentError::Rollback { offered: manifest.version(), installed: have.version });
        }
        if manifest.version() == have.version && opts.dest.exists() {
            completed(&opts.source).await;
            progress.set_phase(then);
            return Ok(Report { version: have.version, already_installed: true, ..Default::default() });
        }
    }
    let state = state_dir(&opts.dest);
    std::fs::create_dir_all(&state).map_err(io(&state))?;
    // A utxo file is staged under here and read by the node's own user (loadtxoutset).
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(NODE_DIR_MODE)).map_err(io(&state))?;
    let staging = state.join(format!("staging-v{}", manifest.version()));
    let complete = staging.join(".complete");
    if !complete.exists() {
        stage(&opts, &manifest, &index, &fetcher, &staging, &progress).await?;
    }
    progress.set_phase(Phase::Swapping);
    swap(&opts.dest, &state, &staging, &manifest)?;
    completed(&opts.source).await;
    progress.set_phase(then);
    Ok(Report {
        version: manifest.version(),
        bytes_total: manifest.total_bytes(),
        bytes_reused: progress.get().bytes_reused,
        bytes_downloaded: received.load(Ordering::Relaxed),
        chunks_downloaded: progress.get().chunks_downloaded,
        already_installed: false,
    })
}

/// Tells the cloud a granted download is finished (so it is not taken up again). The install
/// is done either way: a cloud that does not hear it only keeps the download open.
async fn completed(source: &Source) {
    if let Source::Cloud(d) = source {
        if let Err(e) = d.complete().await {
            tracing::warn!(error = %e, "MineBox Cloud was not told the download is complete");
        }
    }
}

async fn stage(
    opts: &Options,
    manifest: &Manifest,
    index: &Index,
    fetcher: &Arc<Fetcher>,
    staging: &Path,
    progress: &SharedProgress,
) -> Result<(), AgentError> {
    // Disk first: refuse before writing anything rather than fill the disk halfway.
    let resumed = staging.exists();
    let parent = staging.parent().expect("staging has a parent");
    if !resumed {
        if let Some(free) = free_bytes(parent) {
            let need = manifest.total_bytes() + 64 * 1024 * 1024;
            if free < need {
                return Err(AgentError::DiskFull { need, free });
            }
        }
    }
    let chunk_dir = staging.join(".chunks");
    std::fs::create_dir_all(&chunk_dir).map_err(io(&chunk_dir))?;
    progress.start(manifest.total_bytes(), manifest.chunk_count());

    // Open every staged file at its final size; note where each chunk goes.
    let mut wants: HashMap<ChunkHash, Targets> = HashMap::new();
    let mut sizes: HashMap<ChunkHash, u32> = HashMap::new();
    let mut files = Vec::new();
    progress.set_phase(Phase::Reusing);
    let local = if opts.dest.exists() { local_chunks(&opts.dest) } else { HashMap::new() };
    for entry in index.files() {
        let path = staging.join(&entry.path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        file.set_len(entry.size).map_err(io(&path))?;
        let file = Arc::new(file);
        let mut offset = 0u64;
        for c in &entry.chunks {
            // Resumed: a region already holding the right bytes is done.
            if resumed && hash_region(&file, offset, c.size) == Some(c.hash) {
                progress.add_done(c.size as u64, 0);
            } else if let Some((src, src_off, size)) = local.get(&c.hash) {
                let mut buf = vec![0u8; *size as usize];
                let src_file = std::fs::File::open(src).map_err(io(src))?;
                src_file.read_exact_at(&mut buf, *src_off).map_err(io(src))?;
                if ChunkHash::of(&buf) == c.hash {
                    file.write_all_at(&buf, offset).map_err(io(&path))?;
                    progress.add_done(c.size as u64, c.size as u64);
                } else {
                    wants.entry(c.hash).or_default().push((file.clone(), offset));
                }
            } else {
                wants.entry(c.hash).or_default().push((file.clone(), offset));
            }
            sizes.insert(c.hash, c.size);
            offset += c.size as u64;
        }
        files.push((path, entry.mode, file));
    }

    // Download what is missing, a few chunks at a time.
    progress.set_phase(Phase::Downloading);
    let queue: Vec<(ChunkHash, Targets)> = wants.into_iter().collect();
    // Exactly these, in the order the workers take them (from the end).
    fetcher.source.want_chunks(queue.iter().map(|(h, _)| *h)).await?;
    let queue = Arc::new(std::sync::Mutex::new(queue));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..opts.parallel.max(1) {
        let queue = queue.clone();
        let fetcher = fetcher.clone();
        let chunk_dir = chunk_dir.clone();
        let sizes = sizes.clone();
        let progress = progress.clone();
        let retries = opts.retries;
        workers.spawn(async move {
            loop {
                let Some((hash, targets)) = queue.lock().expect("queue").pop() else { return Ok::<(), AgentError>(()) };
                let size = sizes[&hash];
                let plain = download_verified(&fetcher, &chunk_dir, hash, size, retries).await?;
                for (file, offset) in &targets {
                    file.write_all_at(&plain, *offset)
                        .map_err(|e| AgentError::Io { path: hash.to_string(), message: e.to_string() })?;
                    progress.add_done(size as u64, 0);
                }
                progress.add_downloaded_chunk();
                let _ = std::fs::remove_file(chunk_dir.join(format!("{hash}.zst.part")));
                let _ = std::fs::remove_file(chunk_dir.join(format!("{hash}.zst.etag")));
            }
        });
    }
    let mut first_error = None;
    while let Some(r) = workers.join_next().await {
        if let Ok(Err(e)) = r {
            if first_error.is_none() {
                first_error = Some(e);
                workers.abort_all();
            }
        }
    }
    if let Some(e) = first_error {
        progress.fail(&e);
        return Err(e);
    }

    // Everything verified: make it durable, then mark the staging area complete.
    progress.set_phase(Phase::Syncing);
    for (path, mode, file) in &files {
        file.sync_all().map_err(io(path))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(node_file_mode(*mode))).map_err(io(path))?;
    }
    open_to_node(staging).map_err(io(staging))?;
    let _ = std::fs::remove_dir_all(&chunk_dir);
    std::fs::write(staging.join(".complete"), manifest.version().to_string()).map_err(io(staging))?;
    if let Ok(f) = std::fs::File::open(staging.join(".complete")) {
        let _ = f.sync_all();
    }
    sync_dir(staging);
    Ok(())
}

/// Downloads one chunk and returns its verified plain bytes, re-downloading from scratch
/// when what arrived does not hash right (a corrupt byte, or a file changed mid-resume).
async fn download_verified(
    f: &Fetcher,
    dir: &Path,
    hash: ChunkHash,
    size: u32,
    retries: u32,
) -> Result<Vec<u8>, AgentError> {
    let part = dir.join(format!("{hash}.zst.part"));
    for attempt in 0..=retries {
        f.chunk_to_file(hash, &part).await?;
        let compressed = std::fs::read(&part).map_err(io(&part))?;
        let ok = zstd::bulk::decompress(&compressed, size as usize)
            .ok()
            .filter(|plain| plain.len() == size as usize && ChunkHash::of(plain) == hash);
        match ok {
            Some(plain) => {
                f.source.chunk_done(hash, compressed.len() as u64).await;
                return Ok(plain);
            }
            None => {
                tracing::warn!(chunk = %hash, attempt, "chunk failed verification; downloading it again");
                let _ = std::fs::remove_file(&part);
                let _ = std::fs::remove_file(part.with_extension("etag"));
            }
        }
    }
    Err(AgentError::Tampered { what: format!("chunk {hash}") })
}

/// Puts the complete staging area in place of `dest`, keeping the old data until the new is
/// in. The old directory is retired ([`crate::retire`]): its chain files are the node's, which
/// the agent may not delete; the node's unit deletes them before the node's next start.
fn swap(dest: &Path, state: &Path, staging: &Path, manifest: &Manifest) -> Result<(), AgentError> {
    if std::fs::symlink_metadata(dest).is_ok() {
        crate::retire::retire(dest, dest, &format!("replaced-by-v{}", manifest.version())).map_err(io(dest))?;
    }
    std::fs::rename(staging, dest).map_err(io(staging))?;
    let _ = std::fs::remove_file(dest.join(".complete"));
    if let Some(p) = dest.parent() {
        sync_dir(p);
    }
    sync_dir(state);
    let record = Installed {
        coin: manifest.coin().to_string(),
        network: manifest.network().to_string(),
        kind: manifest.kind(),
        height: manifest.height(),
        version: manifest.version(),
        key_id: manifest.key_id().to_string(),
    };
    self::record(dest, &record)?;
    // Where an older agent set the replaced directory aside (and could not delete it).
    let legacy = state.join("previous");
    if legacy.exists() {
        let _ = crate::retire::retire(&legacy, dest, "previous");
    }
    // What the agent may delete itself goes now (all of it when it runs as the node's user
    // or as root); the rest at the node's next start.
    let left = crate::retire::remove_retired(dest);
    if left.left > 0 {
        tracing::info!(dir = %crate::retire::retired_dir(dest).display(), entries = left.left,
            "the replaced chain's files are the node's: its unit deletes them before it starts");
    }
    Ok(())
}
