//! Signing keys on the publisher's disk.

use anyhow::{bail, Context};
use minebox_minisign::SecretKey;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes a new key pair: the secret file (0600, refused if it exists) and the minisign
/// public key that devices pin.
pub fn generate(secret: &Path, public: &Path) -> anyhow::Result<SecretKey> {
    let key = SecretKey::generate();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(secret)
        .with_context(|| format!("{}: cannot create (an existing key is never overwritten)", secret.display()))?;
    f.write_all(key.to_file().as_bytes())?;
    f.sync_all()?;
    std::fs::write(public, key.public().to_file()).with_context(|| format!("{}", public.display()))?;
    Ok(key)
}

/// Loads the secret key, refusing one that others can read.
pub fn load(secret: &Path) -> anyhow::Result<SecretKey> {
    let meta =
        std::fs::metadata(secret).with_context(|| format!("{}: cannot read the signing key", secret.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!("{}: the signing key is readable by others (mode {mode:o}); chmod 600 it", secret.display());
    }
    let text = std::fs::read_to_string(secret)?;
    SecretKey::from_file(&text).with_context(|| format!("{}", secret.display()))
}
