//! The admin and viewer passwords: argon2id hashes in one small file on /data.
//!
//! There is no default password anywhere: until the file holds an admin hash, the page
//! asks its first visitor to choose one. The recovery console deletes the file to reopen
//! that first-visit setup. The file is read on every login rather than cached, so a reset
//! from the console takes effect without a restart.

use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a signed-in user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including settings, node start/stop, snapshots and updates.
    Admin,
    /// Reads every page; changes nothing.
    Viewer,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("an admin password is already set; sign in, or reset it from the box's console")]
    AlreadySet,
    #[error("no admin password is set yet; open the status page to choose one")]
    NotSet,
    #[error("passwords need at least {MIN_LEN} characters")]
    TooShort,
    #[error("passwords may have at most {MAX_LEN} bytes")]
    TooLong,
    #[error("{path}: {message}; the recovery console's 'reset status page password' starts over")]
    File { path: String, message: String },
}

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    admin: Option<String>,
    viewer: Option<String>,
}

pub struct Accounts {
    path: PathBuf,
    params: Params,
    /// Passwords checked against a hash so far: what a login flood costs, for tests and logs.
    checked: AtomicU64,
}

impl Accounts {
    pub fn new(path: &Path) -> Accounts {
        Accounts { path: path.to_path_buf(), params: params(), checked: AtomicU64::new(0) }
    }

    /// True until the first visitor has chosen the admin password.
    pub fn setup_needed(&self) -> Result<bool, AccountsError> {
        Ok(self.read()?.admin.is_none())
    }

    pub fn viewer_enabled(&self) -> Result<bool, AccountsError> {
        Ok(self.read()?.viewer.is_some())
    }

    /// First-visit setup: sets the admin password only if none is set.
    pub fn set_first_admin(&self, password: &str) -> Result<(), AccountsError> {
        check(password)?;
        let mut file = self.read()?;
        if file.admin.is_some() {
            return Err(AccountsError::AlreadySet);
        }
        file.admin = Some(self.hash(password));
        self.write(&file)
    }

    /// How many passwords have been checked against a hash since start.
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// The role `password` signs in as, if any. Admin is tried first, so a viewer password
    /// equal to the admin's would grant admin: [`Accounts::set`] refuses that.
    pub fn verify(&self, password: &str) -> Result<Option<Role>, AccountsError> {
        if password.len() > MAX_LEN {
            return Ok(None);
        }
        let file = self.read()?;
        if file.admin.is_none() {
            return Err(AccountsError::NotSet);
        }
        self.checked.fetch_add(1, Ordering::Relaxed);
        for (role, hash) in [(Role::Admin, &file.admin), (Role::Viewer, &file.viewer)] {
            if let Some(hash) = hash {
                let parsed = PasswordHash::new(hash).map_err(|e| AccountsError::File {
                    path: self.path.display().to_string(),
                    message: e.to_string(),
                })?;
                if verify_in_place(password.as_bytes(), &parsed) {
                    return Ok(Some(role));
                }
            }
        }
        Ok(None)
    }

    /// Changes a role's password; `None` removes the viewer login.
    pub fn set(&self, role: Role, password: Option<&str>) -> Result<(), AccountsError> {
        let mut file = self.read()?;
        let hash = match password {
            Some(p) => {
                check(p)?;
                Some(self.hash(p))
            }
            None if role == Role::Admin => return Err(AccountsError::TooShort),
            None => None,
        };
        match role {
            Role::Admin => file.admin = hash,
            Role::Viewer => file.viewer = hash,
        }
        self.write(&file)
    }

    fn hash(&self, password: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).expect("a generated salt decodes");
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        hash_in_place(&self.params, password.as_bytes(), salt_bytes, &mut out).expect("argon2 with valid parameters");
        PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&self.params).expect("params render"),
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).expect("a 32-byte output")),
        }
        .to_string()
    }

    fn read(&self) -> Result<AccountsFile, AccountsError> {
        let err = |message: String| AccountsError::File { path: self.path.display().to_string(), message };
        match std::fs::read_to_string(&self.path) {
            Ok(text) => toml::from_str(&text).map_err(|e| err(e.message().to_string())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(AccountsFile::default()),
            Err(e) => Err(err(e.to_string())),
        }
    }

    fn write(&self, file: &AccountsFile) -> Result<(), AccountsError> {
        let text = toml::to_string(file).expect("accounts serialize");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).ok();
        }
        minebox_platform::fs::AtomicWrite::to(&self.path)
            .mode(0o600)
            .write(text.as_bytes())
            .map_err(|e| AccountsError::File { path: self.path.display().to_string(), message: e.to_string() })
    }
}

fn check(password: &str) -> Result<(), AccountsError> {
    if password.chars().count() < MIN_LEN {
        return Err(AccountsError::TooShort);
    }
    if password.len() > MAX_LEN {
        return Err(AccountsError::TooLong);
    }
    Ok(())
}

thread_local! {
    /// This thread's argon2 memory, allocated at its first hash and kept. Hashing runs on the
    /// page's two hashing threads (`hashing`), so the page holds two hashes' worth (38 MiB)
    /// for good instead of allocating 19 MiB per sign-in and leaving the freed blocks to the
    /// allocator, which kept them (docs/soak.md: ~400 MiB after a few dozen sign-ins).
    static MEMORY: std::cell::RefCell<Vec<Block>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// argon2id of `password` into `out`, in this thread's kept memory.
fn hash_in_place(params: &Params, password: &[u8], salt: &[u8], out: &mut [u8]) -> Result<(), argon2::Error> {
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        if memory.len() != params.block_count() {
            *memory = vec![Block::default(); params.block_count()];
        }
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone()).hash_password_into_with_memory(
            password,
            salt,
            out,
            &mut memory[..],
        )
    })
}

/// Whether `password` matches a stored argon2id hash (constant-time comparison of the outputs).
fn verify_in_place(password: &[u8], stored: &PasswordHash<'_>) -> bool {
    let (Some(salt), Some(expected)) = (stored.salt, stored.hash) else { return false };
    if stored.algorithm != Algorithm::Argon2id.ident() || stored.version.is_some_and(|v| v != u32::from(Version::V0x13))
    {
        return false;
    }
    let Ok(params) = Params::try_from(stored) else { return false };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    if hash_in_place(&params, password, salt, &mut out).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time: no timing hint of how much of a guess matched.
    Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// argon2id with OWASP's smallest recommended memory (19 MiB, 2 passes): about 60 ms on
/// a Pi 5; `session::LoginGate` runs at most two at once and one per client address, so a
/// flood cannot take more than two cores and 38 MiB, nor delay other addresses.
fn params() -> Params {
    Params::new(19 * 1024, 2, 1, None).expect("argon2 params")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_visit_sets_admin_once_then_roles_sign_in() {
        let dir = tempfile::tempdir().unwrap();
        let a = Accounts::new(&dir.path().join("status/accounts"));
        assert!(a.setup_needed().unwrap());
        assert!(matches!(a.verify("whatever1"), Err(AccountsError::NotSet)));
        assert!(matches!(a.set_first_admin("short"), Err(AccountsError::TooShort)));
        a.set_first_admin("correct horse").unwrap();
        assert!(!a.setup_needed().unwrap());
        assert!(matches!(a.set_first_admin("another one"), Err(AccountsError::AlreadySet)));
        assert_eq!(a.verify("correct horse").unwrap(), Some(Role::Admin));
        assert_eq!(a.verify("wrong horse").unwrap(), None);
        a.set(Role::Viewer, Some("just looking")).unwrap();
        assert_eq!(a.verify("just looking").unwrap(), Some(Role::Viewer));
        a.set(Role::Viewer, None).unwrap();
        assert_eq!(a.verify("just looking").unwrap(), None);
    }

    #[test]
    fn the_file_holds_hashes_not_passwords() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts");
        Accounts::new(&path).set_first_admin("correct horse").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("$argon2id$"), "{text}");
        assert!(!text.contains("correct horse"));
    }

    #[test]
    fn deleting_the_file_reopens_setup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts");
        let a = Accounts::new(&path);
        a.set_first_admin("correct horse").unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(a.setup_needed().unwrap());
    }

    #[test]
    fn a_damaged_file_is_an_error_that_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("accounts");
        std::fs::write(&path, "admin = [").unwrap();
        let e = Accounts::new(&path).verify("correct horse").unwrap_err().to_string();
        assert!(e.contains("reset status page password"), "{e}");
    }
}
