//! `minebox-publisher`: make, sign and check MineBox snapshots.

use clap::{Parser, Subcommand};
use minebox_minisign::PublicKey;
use minebox_publisher::{keys, publish, verify};
use minebox_snapshot::manifest::Kind;
use std::path::PathBuf;

#[derive(Parser)]
#[command(version, about = "Make, sign and check MineBox snapshots")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a signing key pair (the secret file is 0600 and never overwritten).
    Keygen {
        #[arg(long)]
        secret: PathBuf,
        #[arg(long)]
        public: PathBuf,
    },
    /// Publish a stopped node's data directory (--kind datadir) or a dumptxoutset file (--kind utxo).
    Publish {
        #[arg(long)]
        source: PathBuf,
        #[arg(long, value_parser = ["datadir", "utxo"])]
        kind: String,
        #[arg(long)]
        coin: String,
        #[arg(long)]
        network: String,
        #[arg(long)]
        height: u64,
        #[arg(long)]
        block_hash: String,
        /// Must be higher than every version published before.
        #[arg(long)]
        version: u64,
        #[arg(long, default_value_t = 30)]
        expires_days: i64,
        #[arg(long)]
        key: PathBuf,
        /// The published tree (a directory a web server or CDN serves).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value_t = 9)]
        zstd_level: i32,
    },
    /// Copy a published tree to an S3-compatible bucket (credentials and endpoint from the
    /// AWS_* environment variables), uploading only the chunks the bucket lacks.
    Upload {
        #[arg(long)]
        dir: PathBuf,
        /// s3://bucket/prefix
        #[arg(long)]
        to: String,
    },
    /// Catalogue a tree uploaded to a bucket in MineBox Cloud: the cloud reads and verifies the
    /// manifest and index there itself; by default it becomes the coin's current snapshot.
    Register {
        /// MineBox Cloud's address, e.g. https://cloud.example.org
        #[arg(long)]
        cloud: String,
        /// A file holding the publisher token `minebox-cloud admin publisher-token` printed.
        #[arg(long)]
        token_file: PathBuf,
        #[arg(long)]
        bucket: String,
        /// The tree's prefix in the bucket (what followed the bucket in `upload --to`).
        #[arg(long)]
        prefix: String,
        /// Catalogue it without offering it to boxes yet (the current one stays current).
        #[arg(long)]
        no_current: bool,
    },
    /// Check a published tree end to end against public keys.
    Verify {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long = "pubkey", required = true)]
        pubkeys: Vec<PathBuf>,
    },
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Cmd::Keygen { secret, public } => {
            let k = keys::generate(&secret, &public)?;
            println!(
                "key {} written: secret {} (keep it offline), public {}",
                k.id,
                secret.display(),
                public.display()
            );
        }
        Cmd::Publish {
            source,
            kind,
            coin,
            network,
            height,
            block_hash,
            version,
            expires_days,
            key,
            out,
            zstd_level,
        } => {
            let key = keys::load(&key)?;
            let kind = if kind == "utxo" { Kind::Utxo } else { Kind::Datadir };
            if let Ok(bytes) = std::fs::read(out.join(minebox_snapshot::layout::MANIFEST)) {
                if let Ok(prev) = serde_json::from_slice::<minebox_snapshot::Manifest>(&bytes) {
                    anyhow::ensure!(
                        version > prev.version(),
                        "version {version} is not above the published {}; devices would refuse it",
                        prev.version()
                    );
                }
            }
            let req = publish::Request {
                source,
                kind,
                coin,
                network,
                height,
                block_hash,
                version,
                expires_in_secs: expires_days * 86_400,
                out,
                level: zstd_level,
            };
            let (m, r) = publish::publish(&req, &key)?;
            println!(
                "published {} {} height {} version {} signed by {}: {} files, {} bytes, {} chunks ({} added, {} compressed bytes; {} reused, {} bytes)",
                m.coin(), m.network(), m.height(), m.version(), m.key_id(), r.files, r.total_bytes, r.chunks, r.chunks_added, r.bytes_added_compressed, r.chunks_reused, r.bytes_reused
            );
        }
        Cmd::Upload { dir, to } => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let r = rt.block_on(minebox_publisher::upload::upload(&dir, &to))?;
            println!(
                "uploaded {} objects ({} bytes); {} chunks were already in {to}",
                r.uploaded, r.uploaded_bytes, r.already_there
            );
        }
        Cmd::Register { cloud, token_file, bucket, prefix, no_current } => {
            let token = minebox_publisher::register::read_token(&token_file)?;
            let registration =
                minebox_cloud_link::snapshots::Registration { bucket, prefix, make_current: !no_current };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let r = rt.block_on(minebox_publisher::register::register(&cloud, &token, &registration))?;
            println!("{}", r.message);
        }
        Cmd::Verify { dir, pubkeys } => {
            let keys = PublicKey::read_all(&pubkeys)?;
            let m = verify::verify(&dir, &keys)?;
            println!(
                "ok: {} {} height {} version {}, {} chunks verified",
                m.coin(),
                m.network(),
                m.height(),
                m.version(),
                m.chunk_count()
            );
        }
    }
    Ok(())
}
