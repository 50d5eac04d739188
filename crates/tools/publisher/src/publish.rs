//! Publishing: chunk every file, store the chunks the tree lacks, write the index, then
//! the manifest and its signature last, so a reader never sees a manifest whose parts are
//! missing.

use anyhow::{bail, Context};
use minebox_minisign::SecretKey;
use minebox_snapshot::chunk;
use minebox_snapshot::index::{ChunkRef, FileEntry, Index};
use minebox_snapshot::layout;
use minebox_snapshot::manifest::{About, Kind, Manifest};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub struct Request {
    /// A node's data directory (kind datadir) or a `dumptxoutset` file (kind utxo).
    pub source: PathBuf,
    pub kind: Kind,
    pub coin: String,
    pub network: String,
    pub height: u64,
    pub block_hash: String,
    pub version: u64,
    pub expires_in_secs: i64,
    pub out: PathBuf,
    /// zstd level for new chunks.
    pub level: i32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub files: usize,
    pub chunks: usize,
    pub chunks_added: usize,
    pub chunks_reused: usize,
    pub bytes_added_compressed: u64,
    pub bytes_reused: u64,
    pub total_bytes: u64,
}

/// Files a running or stopped node keeps that must not travel: locks, credentials, logs,
/// peer lists and per-machine settings.
fn excluded(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    matches!(
        name,
        ".lock"
            | ".cookie"
            | "debug.log"
            | "peers.dat"
            | "anchors.dat"
            | "banlist.json"
            | "settings.json"
            | "bitcoind.pid"
            | "onion_v3_private_key"
    ) || name.ends_with(".pid")
        || rel.starts_with("wallets/")
}

fn walk(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).with_context(|| format!("{}", dir.display()))? {
            let e = e?;
            let ty = e.file_type()?;
            let path = e.path();
            let rel = path.strip_prefix(root)?.to_string_lossy().replace('\\', "/");
            if ty.is_symlink() {
                bail!("{}: symbolic links are not published; copy the target in instead", path.display());
            } else if ty.is_dir() {
                stack.push(path);
            } else if !excluded(&rel) {
                out.push((rel, path));
            }
        }
    }
    // A stable order: the same data gives the same index.
    out.sort();
    Ok(out)
}

use minebox_platform::clock::unix_secs as now;

/// Writes `bytes` to `path` so that readers (and a publisher killed half-way) never leave half.
fn write_whole(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    minebox_platform::fs::atomic_write(path, bytes).with_context(|| format!("{}", path.display()))
}

/// Network magic of Bitcoin Core's chains, as `dumptxoutset` writes it into the file.
fn network_magic(network: &str) -> Option<[u8; 4]> {
    match network {
        "main" | "mainnet" => Some([0xf9, 0xbe, 0xb4, 0xd9]),
        "testnet4" => Some([0x1c, 0x16, 0x3f, 0x28]),
        "signet" => Some([0x0a, 0x03, 0xcf, 0x40]),
        "regtest" => Some([0xfa, 0xbf, 0xb5, 0xda]),
        _ => None,
    }
}

/// A `dumptxoutset` file (Bitcoin Core 28+) starts with its metadata: magic `utxo\xff`, a
/// version (u16), the chain's network magic and the base block hash. Publishing a file
/// under another block or chain than it was dumped at would only be refused on every
/// device, so the publisher refuses it first.
fn check_utxo_metadata(path: &Path, network: &str, block_hash: &str) -> anyhow::Result<()> {
    use std::io::Read;
    let mut head = [0u8; 43];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .with_context(|| format!("{}: too short for a dumptxoutset file", path.display()))?;
    if &head[..5] != b"utxo\xff" {
        bail!("{}: not a dumptxoutset file of Bitcoin Core 28 or later (no utxo magic)", path.display());
    }
    if let Some(magic) = network_magic(network) {
        if head[7..11] != magic {
            bail!(
                "{}: dumped on another chain than {network} (network magic {})",
                path.display(),
                hex::encode(&head[7..11])
            );
        }
    }
    let mut base = head[11..43].to_vec();
    base.reverse();
    let base = hex::encode(base);
    if !base.eq_ignore_ascii_case(block_hash) {
        bail!("{}: dumped at block {base}, not at --block-hash {block_hash}", path.display());
    }
    Ok(())
}

pub fn publish(req: &Request, key: &SecretKey) -> anyhow::Result<(Manifest, Report)> {
    let sources: Vec<(String, PathBuf)> = match req.kind {
        Kind::Datadir => {
            if !req.source.is_dir() {
                bail!("{}: a datadir snapshot needs the node's data directory", req.source.display());
            }
            if req.source.join(".lock").exists() && req.source.join("bitcoind.pid").exists() {
                bail!("{}: the node looks like it is running (bitcoind.pid); stop it first", req.source.display());
            }
            let files = walk(&req.source)?;
            // Bitcoin Core 28+ obfuscates block files with blocks/xor.dat; block files
            // without their key would be unreadable on the device.
            let has_blocks = files.iter().any(|(r, _)| r.starts_with("blocks/blk"));
            let has_xor = files.iter().any(|(r, _)| r == "blocks/xor.dat");
            if has_blocks && !has_xor && req.coin == "btc" {
                eprintln!(
                    "note: no blocks/xor.dat: block files are stored plain (a node before 28.0, or -blocksxor=0)"
                );
            }
            files
        }
        Kind::Utxo => {
            if !req.source.is_file() {
                bail!("{}: a utxo snapshot needs the file written by dumptxoutset", req.source.display());
            }
            check_utxo_metadata(&req.source, &req.network, &req.block_hash)?;
            vec![("utxo.dat".to_string(), req.source.clone())]
        }
    };
    std::fs::create_dir_all(req.out.join("chunks"))?;
    let mut report = Report::default();
    let mut files = Vec::new();
    for (rel, path) in &sources {
        let meta = std::fs::metadata(path)?;
        let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
        let reader = std::io::BufReader::with_capacity(1 << 20, file);
        let mut refs = Vec::new();
        chunk::chunk(reader, |piece, data| {
            let dest = req.out.join(layout::chunk_path(&piece.hash));
            if dest.exists() {
                report.chunks_reused += 1;
                report.bytes_reused += piece.size as u64;
            } else {
                std::fs::create_dir_all(dest.parent().expect("chunk dir"))?;
                let compressed = zstd::bulk::compress(data, req.level)?;
                report.bytes_added_compressed += compressed.len() as u64;
                // Durable before it exists under its name: a chunk present is never written
                // again, so a torn one would stay torn for every device.
                minebox_platform::fs::atomic_write(&dest, &compressed)?;
                report.chunks_added += 1;
            }
            refs.push(ChunkRef { hash: piece.hash, size: piece.size });
            Ok(())
        })
        .with_context(|| format!("chunking {}", path.display()))?;
        report.chunks += refs.len();
        report.files += 1;
        report.total_bytes += meta.len();
        files.push(FileEntry {
            path: rel.clone(),
            size: meta.len(),
            mode: meta.permissions().mode() & 0o777,
            chunks: refs,
        });
    }
    let index = Index::new(files).context("the index built from the source is not valid")?;
    let index_bytes = index.to_bytes();
    let created = now();
    let about = About {
        coin: req.coin.clone(),
        network: req.network.clone(),
        kind: req.kind,
        height: req.height,
        block_hash: req.block_hash.clone(),
        version: req.version,
        created,
        expires: created + req.expires_in_secs,
    };
    let manifest = Manifest::new(about, key.id.to_string(), &index);
    let manifest_bytes = manifest.to_bytes();
    let comment = format!(
        "minebox {} {} {:?} height {} version {}",
        manifest.coin(),
        manifest.network(),
        manifest.kind(),
        manifest.height(),
        manifest.version()
    )
    .to_lowercase();
    // Index first, then signature, then the manifest: a reader that sees a new manifest
    // finds everything it points to already there.
    write_whole(&req.out.join(layout::INDEX), &index_bytes)?;
    write_whole(&req.out.join(layout::SIGNATURE), key.sign(&manifest_bytes, &comment).as_bytes())?;
    write_whole(&req.out.join(layout::MANIFEST), &manifest_bytes)?;
    Ok((manifest, report))
}
