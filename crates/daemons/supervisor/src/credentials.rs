//! RPC credentials for each node: generated once, kept in the secrets directory (0640:
//! the supervisor writes them, the services of its group - the stratum server, the status
//! page - read them; nobody else), never logged. The node gets only an `rpcauth` line (salted HMAC), so its config file
//! holds no password; MineBox's services read the secret file.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const RPC_USER: &str = "minebox";

#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    /// The file holding `user:password`, which services read (as a cookie file).
    pub path: PathBuf,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <secret>, {})", self.user, self.path.display())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("secret file {path}: {source} (the secrets directory must be writable by the supervisor)")]
    Io { path: String, source: std::io::Error },
    #[error("secret file {path} is readable by others (mode {mode:o}); it must be 0640 — fix with chmod 640 or delete it to regenerate")]
    TooOpen { path: String, mode: u32 },
    #[error("secret file {path} is not user:password; delete it to regenerate")]
    Malformed { path: String },
}

/// Loads the coin's credentials, creating them (0640, in a 0750 directory unless it exists)
/// the first time.
pub fn load_or_create(secrets: &Path, coin: &str) -> Result<Credentials, CredentialsError> {
    let path = secrets.join(format!("{coin}-rpc.cookie"));
    let io = |source| CredentialsError::Io { path: path.display().to_string(), source };
    if !secrets.exists() {
        std::fs::create_dir_all(secrets).map_err(io)?;
        std::fs::set_permissions(secrets, std::fs::Permissions::from_mode(0o750)).map_err(io)?;
    }
    if path.exists() {
        let mode = std::fs::metadata(&path).map_err(io)?.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(CredentialsError::TooOpen { path: path.display().to_string(), mode });
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        let (user, password) =
            text.trim().split_once(':').ok_or(CredentialsError::Malformed { path: path.display().to_string() })?;
        return Ok(Credentials { user: user.to_string(), password: password.to_string(), path });
    }
    let password = hex::encode(rand::random::<[u8; 32]>());
    // The mode explicitly: the service's UMask=0077 would take the group's read bit away.
    minebox_platform::fs::AtomicWrite::to(&path)
        .mode(0o640)
        .write(format!("{RPC_USER}:{password}").as_bytes())
        .map_err(io)?;
    Ok(Credentials { user: RPC_USER.to_string(), password, path })
}

/// Bitcoin Core's `rpcauth=user:salt$hmac` (HMAC-SHA256 keyed by the salt, over the password).
pub fn rpcauth(user: &str, password: &str, salt: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(salt.as_bytes()).expect("HMAC takes any key length");
    mac.update(password.as_bytes());
    format!("{user}:{salt}${}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let secrets = dir.path().join("secrets");
        let a = load_or_create(&secrets, "btc").unwrap();
        let mode = std::fs::metadata(&a.path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "group-readable: the stratum server reads it");
        assert_eq!(std::fs::metadata(&secrets).unwrap().permissions().mode() & 0o777, 0o750);
        let b = load_or_create(&secrets, "btc").unwrap();
        assert_eq!(a.password, b.password, "the same password after a restart");
        assert!(!format!("{a:?}").contains(&a.password));
        std::fs::set_permissions(&a.path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&secrets, "btc").unwrap_err().to_string();
        assert!(e.contains("readable by others") && e.contains("chmod 640"), "{e}");
    }

    #[test]
    fn rpcauth_matches_bitcoin_cores_rpcauth_py() {
        // share/rpcauth/rpcauth.py: HMAC-SHA256(key=salt, msg=password), hex.
        let line = rpcauth("minebox", "secret", "0123456789abcdef");
        let (user, rest) = line.split_once(':').unwrap();
        let (salt, hash) = rest.split_once('$').unwrap();
        assert_eq!(user, "minebox");
        assert_eq!(salt, "0123456789abcdef");
        // Computed independently with Python's hmac module, as rpcauth.py does.
        assert_eq!(hash, "59fa6a4dccc441a2ceb3d563296276a0a2293d927d294d695cca0ca3c3556b35");
        assert_ne!(rpcauth("minebox", "other", salt), line);
    }
}
