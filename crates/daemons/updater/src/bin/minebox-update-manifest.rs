//! `minebox-update-manifest`: writes a channel manifest for a RAUC bundle and signs it
//! (minisign format, the same keys as `minebox-publisher keygen` makes):
//! `<out>/<compatible>.json` and `<out>/<compatible>.json.minisig`.

use anyhow::{bail, Context};
use clap::Parser;
use minebox_minisign::SecretKey;
use minebox_updater::Manifest;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "minebox-update-manifest", about = "Write and sign a MineBox update channel manifest")]
struct Cli {
    /// The .raucb bundle (its size and SHA-256 go into the manifest).
    #[arg(long)]
    bundle: PathBuf,
    /// The image version inside the bundle.
    #[arg(long)]
    version: String,
    /// The board, as in RAUC's system.conf (e.g. minebox-rpi5).
    #[arg(long)]
    compatible: String,
    /// Where devices download the bundle.
    #[arg(long)]
    url: String,
    /// The secret signing key file (0600).
    #[arg(long)]
    key: PathBuf,
    /// The channel directory served to devices.
    #[arg(long)]
    out: PathBuf,
    /// Release notes shown on the status page.
    #[arg(long, default_value = "")]
    notes: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let meta = std::fs::metadata(&cli.key).with_context(|| format!("{}: the signing key", cli.key.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!("{}: the signing key is readable by others; chmod 600 it", cli.key.display());
    }
    let key =
        SecretKey::from_file(&std::fs::read_to_string(&cli.key)?).with_context(|| cli.key.display().to_string())?;
    let size = std::fs::metadata(&cli.bundle).with_context(|| cli.bundle.display().to_string())?.len();
    let sha256 = minebox_updater::download::sha256_file(&cli.bundle).await?;
    let m = Manifest {
        version: cli.version,
        compatible: cli.compatible,
        bundle_url: cli.url,
        size,
        sha256,
        notes: cli.notes,
    };
    let (text, sig) = minebox_updater::manifest::sign(&m, &key);
    std::fs::create_dir_all(&cli.out)?;
    let path = cli.out.join(format!("{}.json", m.compatible));
    std::fs::write(&path, text)?;
    std::fs::write(cli.out.join(format!("{}.json.minisig", m.compatible)), sig)?;
    println!(
        "{}: version {} ({size} bytes, sha256 {}) signed by key {}",
        path.display(),
        m.version,
        m.sha256,
        key.public().id
    );
    Ok(())
}
