//! Named users and their roles (issue 17): argon2id password hashes in the status page's
//! database ([`crate::user_db`]).
//!
//! There is no default password anywhere: until an admin user exists, the page asks its
//! first visitor to choose one. The recovery console's "reset status page password"
//! removes every user, which reopens that first-visit setup.

use crate::user_db::{DbError, UserDb};
use argon2::password_hash::{rand_core::OsRng, Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rusqlite::OptionalExtension;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What a signed-in user may do; each role may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page but the users and the audit log; changes only their own password
    /// and sessions.
    Viewer,
    /// Runs the box: miners, nodes, snapshots, updates, the settings that do not decide
    /// who is paid. No user management, no coin settings, no MineBox Cloud link.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error("an admin already exists; sign in, or reset the status page password from the box's console")]
    AlreadySet,
    #[error("no admin exists yet; open the status page to choose the first admin's password")]
    NotSet,
    #[error("passwords need at least {MIN_LEN} characters")]
    TooShort,
    #[error("passwords may have at most {MAX_LEN} bytes")]
    TooLong,
    #[error(
        "{0:?} is not a user name: use 1 to 32 lowercase letters, digits, '.', '_' or '-', starting with a letter \
         or digit"
    )]
    BadName(String),
    #[error("there is no user {0:?}")]
    NoSuchUser(String),
    #[error("a user {0:?} exists already; choose another name")]
    Exists(String),
    #[error("{0:?} is the last admin who can sign in; make another user admin first")]
    LastAdmin(String),
    #[error("the current password is wrong")]
    WrongCurrent,
    #[error(transparent)]
    Db(#[from] DbError),
}

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 256;

/// A user as the page lists them (never the hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub disabled: bool,
    /// Unix seconds.
    pub created: i64,
    /// Whether they sign in with a second factor (an authenticator app confirmed; one still
    /// waiting for its first code is not on): what an admin checks before removing it.
    pub two_factor: bool,
}

/// What an admin changes about a user; fields left out stay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEdit {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
    pub password: Option<String>,
}

pub struct Accounts {
    db: Arc<UserDb>,
    params: Params,
    /// Passwords checked against a hash so far: what a login flood costs, for tests and logs.
    checked: AtomicU64,
}

/// Checked for a name that does not exist, so that a wrong name costs as long as a wrong
/// password and does not tell a guesser which names exist (the same parameters as
/// [`params`]; its output matches no password anyone can find).
const DECOY: &str = "$argon2id$v=19$m=19456,t=2,p=1$bm90IGEgdXNlciBzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// The columns [`row_user`] reads, in its order.
const USER_COLUMNS: &str =
    "name, role, disabled, created, EXISTS (SELECT 1 FROM mfa WHERE mfa.user = users.name AND mfa.active = 1)";

fn row_user(r: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    let role: String = r.get(1)?;
    Ok(User {
        name: r.get(0)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        disabled: r.get::<_, i64>(2)? != 0,
        created: r.get(3)?,
        two_factor: r.get::<_, i64>(4)? != 0,
    })
}

impl Accounts {
    pub fn new(db: Arc<UserDb>) -> Accounts {
        Accounts { db, params: params(), checked: AtomicU64::new(0) }
    }

    /// True until the first visitor has chosen the first admin's password.
    pub fn setup_needed(&self) -> Result<bool, AccountsError> {
        Ok(self.db.optional::<i64>("SELECT count(*) FROM users WHERE role = 'admin'", [])?.unwrap_or(0) == 0)
    }

    /// First-visit setup: makes `name` an admin only if there is no admin yet.
    pub fn set_first_admin(&self, name: &str, password: &str, now: i64) -> Result<(), AccountsError> {
        check_name(name)?;
        check(password)?;
        let hash = self.hash(password);
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(|e| self.db.damaged(e))?;
        let admins: i64 = tx
            .query_row("SELECT count(*) FROM users WHERE role = 'admin'", [], |r| r.get(0))
            .map_err(|e| self.db.damaged(e))?;
        if admins > 0 {
            return Err(AccountsError::AlreadySet);
        }
        // A viewer or operator of that name left from before a reset gives way to the admin.
        tx.execute("DELETE FROM users WHERE name = ?1", [name]).map_err(|e| self.db.damaged(e))?;
        tx.execute(
            "INSERT INTO users (name, role, hash, disabled, created) VALUES (?1, 'admin', ?2, 0, ?3)",
            (name, &hash, now),
        )
        .map_err(|e| self.db.damaged(e))?;
        tx.commit().map_err(|e| self.db.damaged(e))?;
        Ok(())
    }

    /// How many passwords have been checked against a hash since start.
    pub fn checked(&self) -> u64 {
        self.checked.load(Ordering::Relaxed)
    }

    /// The user `name` signs in as with `password`, if any: `None` for a wrong password,
    /// a name that does not exist and a disabled user alike (all cost one hash).
    pub fn verify(&self, name: &str, password: &str) -> Result<Option<User>, AccountsError> {
        if password.len() > MAX_LEN {
            return Ok(None);
        }
        if self.setup_needed()? {
            return Err(AccountsError::NotSet);
        }
        let found = self
            .db
            .lock()
            .query_row(&format!("SELECT {USER_COLUMNS}, hash FROM users WHERE name = ?1"), [name], |r| {
                Ok((row_user(r)?, r.get::<_, String>(5)?))
            })
            .optional()
            .map_err(|e| self.db.damaged(e))?;
        self.checked.fetch_add(1, Ordering::Relaxed);
        let hash = found.as_ref().map_or(DECOY, |(_, h)| h.as_str());
        let parsed = PasswordHash::new(hash).map_err(|e| DbError::Damaged {
            path: self.db.path().display().to_string(),
            message: format!("the password hash of {name:?}: {e}"),
        })?;
        let right = verify_in_place(password.as_bytes(), &parsed);
        Ok(found.filter(|(u, _)| right && !u.disabled).map(|(u, _)| u))
    }

    /// The user, as it is now (a role change or a disable applies at the next request).
    pub fn get(&self, name: &str) -> Result<Option<User>, AccountsError> {
        self.db
            .lock()
            .query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"), [name], row_user)
            .optional()
            .map_err(|e| AccountsError::Db(self.db.damaged(e)))
    }

    pub fn list(&self) -> Result<Vec<User>, AccountsError> {
        let conn = self.db.lock();
        let mut st =
            conn.prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name")).map_err(|e| self.db.damaged(e))?;
        let users = st.query_map([], row_user).map_err(|e| self.db.damaged(e))?;
        users.collect::<Result<Vec<_>, _>>().map_err(|e| AccountsError::Db(self.db.damaged(e)))
    }

    /// A new user (an admin adds them).
    pub fn create(&self, name: &str, role: Role, password: &str, now: i64) -> Result<User, AccountsError> {
        check_name(name)?;
        check(password)?;
        let hash = self.hash(password);
        let conn = self.db.lock();
        let inserted = conn.execute(
            "INSERT INTO users (name, role, hash, disabled, created) VALUES (?1, ?2, ?3, 0, ?4) \
             ON CONFLICT (name) DO NOTHING",
            (name, role.as_str(), &hash, now),
        );
        match inserted.map_err(|e| self.db.damaged(e))? {
            0 => Err(AccountsError::Exists(name.to_string())),
            _ => Ok(User { name: name.to_string(), role, disabled: false, created: now, two_factor: false }),
        }
    }

    /// An admin's change to a user. Refuses to leave the box without an admin who can sign
    /// in: the last enabled admin can be neither demoted nor disabled.
    pub fn edit(&self, name: &str, edit: &UserEdit) -> Result<User, AccountsError> {
        if let Some(p) = &edit.password {
            check(p)?;
        }
        let hash = edit.password.as_deref().map(|p| self.hash(p));
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(|e| self.db.damaged(e))?;
        let user = tx
            .query_row(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"), [name], row_user)
            .optional()
            .map_err(|e| self.db.damaged(e))?
            .ok_or_else(|| AccountsError::NoSuchUser(name.to_string()))?;
        let role = edit.role.unwrap_or(user.role);
        let disabled = edit.disabled.unwrap_or(user.disabled);
        if user.role == Role::Admin && !user.disabled && (role != Role::Admin || disabled) {
            let others: i64 = tx
                .query_row(
                    "SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0 AND name != ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_err(|e| self.db.damaged(e))?;
            if others == 0 {
                return Err(AccountsError::LastAdmin(name.to_string()));
            }
        }
        tx.execute("UPDATE users SET role = ?2, disabled = ?3 WHERE name = ?1", (name, role.as_str(), disabled))
            .map_err(|e| self.db.damaged(e))?;
        if let Some(hash) = hash {
            tx.execute("UPDATE users SET hash = ?2 WHERE name = ?1", (name, hash)).map_err(|e| self.db.damaged(e))?;
        }
        tx.commit().map_err(|e| self.db.damaged(e))?;
        Ok(User { role, disabled, ..user })
    }

    /// Removes a user and, with them, their sessions (the audit log keeps their name).
    pub fn remove(&self, name: &str) -> Result<(), AccountsError> {
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(|e| self.db.damaged(e))?;
        let role: Option<String> = tx
            .query_row("SELECT role FROM users WHERE name = ?1 AND disabled = 0", [name], |r| r.get(0))
            .optional()
            .map_err(|e| self.db.damaged(e))?;
        if role.as_deref() == Some("admin") {
            let others: i64 = tx
                .query_row(
                    "SELECT count(*) FROM users WHERE role = 'admin' AND disabled = 0 AND name != ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_err(|e| self.db.damaged(e))?;
            if others == 0 {
                return Err(AccountsError::LastAdmin(name.to_string()));
            }
        }
        let removed = tx.execute("DELETE FROM users WHERE name = ?1", [name]).map_err(|e| self.db.damaged(e))?;
        tx.commit().map_err(|e| self.db.damaged(e))?;
        if removed == 0 {
            return Err(AccountsError::NoSuchUser(name.to_string()));
        }
        Ok(())
    }

    /// A user's change of their own password: the current one must be right.
    pub fn change_own(&self, name: &str, current: &str, new: &str) -> Result<(), AccountsError> {
        check(new)?;
        if self.verify(name, current)?.is_none() {
            return Err(AccountsError::WrongCurrent);
        }
        self.edit(name, &UserEdit { password: Some(new.to_string()), ..UserEdit::default() })?;
        Ok(())
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

/// User names appear in the audit log and the page: plain, short, unambiguous.
fn check_name(name: &str) -> Result<(), AccountsError> {
    let ok = (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(AccountsError::BadName(name.to_string()))
    }
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
    use crate::user_db::UserDb;

    fn accounts(dir: &std::path::Path) -> Accounts {
        Accounts::new(Arc::new(UserDb::open(&dir.join("users.db"), &dir.join("accounts"), 1000).unwrap()))
    }

    #[test]
    fn first_visit_makes_one_admin_then_users_sign_in_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let a = accounts(dir.path());
        assert!(a.setup_needed().unwrap());
        assert!(matches!(a.verify("admin", "whatever1"), Err(AccountsError::NotSet)));
        assert!(matches!(a.set_first_admin("admin", "short", 1), Err(AccountsError::TooShort)));
        assert!(matches!(a.set_first_admin("Robert'); DROP", "correct horse", 1), Err(AccountsError::BadName(_))));
        a.set_first_admin("alice", "correct horse", 1).unwrap();
        assert!(!a.setup_needed().unwrap());
        assert!(matches!(a.set_first_admin("mallory", "another one", 1), Err(AccountsError::AlreadySet)));
        assert_eq!(a.verify("alice", "correct horse").unwrap().unwrap().role, Role::Admin);
        assert_eq!(a.verify("alice", "wrong horse").unwrap(), None);
        assert_eq!(a.verify("nobody", "correct horse").unwrap(), None, "an unknown name is just a miss");
        a.create("bob", Role::Operator, "runs the box", 2).unwrap();
        assert!(matches!(a.create("bob", Role::Viewer, "second bob", 2), Err(AccountsError::Exists(_))));
        assert_eq!(a.verify("bob", "runs the box").unwrap().unwrap().role, Role::Operator);
        a.edit("bob", &UserEdit { disabled: Some(true), ..UserEdit::default() }).unwrap();
        assert_eq!(a.verify("bob", "runs the box").unwrap(), None, "a disabled user cannot sign in");
        a.remove("bob").unwrap();
        assert!(matches!(a.remove("bob"), Err(AccountsError::NoSuchUser(_))));
    }

    #[test]
    fn the_last_admin_stays() {
        let dir = tempfile::tempdir().unwrap();
        let a = accounts(dir.path());
        a.set_first_admin("alice", "correct horse", 1).unwrap();
        let demote = UserEdit { role: Some(Role::Viewer), ..UserEdit::default() };
        assert!(matches!(a.edit("alice", &demote), Err(AccountsError::LastAdmin(_))));
        let disable = UserEdit { disabled: Some(true), ..UserEdit::default() };
        assert!(matches!(a.edit("alice", &disable), Err(AccountsError::LastAdmin(_))));
        assert!(matches!(a.remove("alice"), Err(AccountsError::LastAdmin(_))));
        a.create("carol", Role::Admin, "second admin", 2).unwrap();
        a.edit("alice", &demote).unwrap();
        assert_eq!(a.get("alice").unwrap().unwrap().role, Role::Viewer);
    }

    #[test]
    fn own_password_change_needs_the_current_one() {
        let dir = tempfile::tempdir().unwrap();
        let a = accounts(dir.path());
        a.set_first_admin("alice", "correct horse", 1).unwrap();
        assert!(matches!(a.change_own("alice", "wrong horse", "new battery"), Err(AccountsError::WrongCurrent)));
        a.change_own("alice", "correct horse", "new battery").unwrap();
        assert!(a.verify("alice", "correct horse").unwrap().is_none());
        assert!(a.verify("alice", "new battery").unwrap().is_some());
    }

    #[test]
    fn the_database_holds_hashes_not_passwords() {
        let dir = tempfile::tempdir().unwrap();
        accounts(dir.path()).set_first_admin("alice", "correct horse", 1).unwrap();
        let bytes = std::fs::read(dir.path().join("users.db")).unwrap();
        let wal = std::fs::read(dir.path().join("users.db-wal")).unwrap_or_default();
        let all = [bytes, wal].concat();
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains("$argon2id$"));
        assert!(!text.contains("correct horse"));
    }
}
