//! The status page's own database: users, their sessions and the audit log, in one small
//! SQLite file beside the old password file (`/data/secrets/status/users.db`).
//!
//! Why SQLite and not more TOML files: sessions must survive a restart, and a session's
//! "last seen" and the audit log are written as the page is used; one file with
//! transactions keeps those writes small and atomic (WAL, `synchronous=NORMAL`: one fsync
//! per checkpoint rather than per change, which is what the SD card notices).
//!
//! The schema has a version (`PRAGMA user_version`). Version 1 is made on first start, and
//! in the same transaction today's password file (`admin` and `viewer` argon2id hashes)
//! becomes users `admin` (role admin) and `viewer` (role viewer): a box keeps its
//! passwords across the update. The old file is left as it was, so an older image booted
//! from the other slot still signs in; this one never reads it again.
//!
//! The recovery console cannot run SQL; it leaves [`RESET_MARKER`] beside the database and
//! restarts the service, which then removes every user (their sessions go with them),
//! notes it in the audit log, and the page asks its next visitor for a first admin again.

use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The database's file name, in the directory of the old password file.
pub const FILE: &str = "users.db";
/// Left by the recovery console's "reset status page password": remove every user at start.
pub const RESET_MARKER: &str = "reset-users";
/// Left by the recovery console's "reset a user's two-factor sign-in": the file holds the user
/// names, one a line, whose second factor (secret and recovery codes) goes at start.
pub const RESET_MFA_MARKER: &str = "reset-mfa";
/// The schema this build writes; a newer one is refused rather than guessed at.
pub const SCHEMA: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{path}: {message}; the recovery console's 'reset status page password' starts over")]
    Damaged { path: String, message: String },
    #[error(
        "{path} was written by a newer MineBox (schema {found}, this one knows {SCHEMA}); boot the newer \
         system slot again, or move the file aside to start over"
    )]
    Newer { path: String, found: i64 },
}

pub struct UserDb {
    conn: Mutex<Connection>,
    path: PathBuf,
}

const CREATE: &str = "
CREATE TABLE users (
    name     TEXT PRIMARY KEY,
    role     TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
    hash     TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created  INTEGER NOT NULL
);
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    user       TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created    INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    address    TEXT NOT NULL,
    user_agent TEXT NOT NULL
);
CREATE INDEX sessions_user ON sessions(user);
CREATE TABLE mfa (
    user      TEXT PRIMARY KEY REFERENCES users(name) ON DELETE CASCADE,
    secret    TEXT NOT NULL,
    active    INTEGER NOT NULL DEFAULT 0,
    last_step INTEGER NOT NULL DEFAULT -1,
    created   INTEGER NOT NULL
);
CREATE TABLE recovery_codes (
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    PRIMARY KEY (user, hash)
);
CREATE TABLE mfa_policy (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    require_admins INTEGER NOT NULL DEFAULT 0
);
INSERT INTO mfa_policy (id, require_admins) VALUES (1, 0);
CREATE TABLE audit (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    who    TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit(at);
CREATE TABLE payees (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user    TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    coin    TEXT NOT NULL,
    address TEXT NOT NULL,
    updated INTEGER NOT NULL,
    UNIQUE (user, coin)
);
CREATE TABLE pool_config (
    coin    TEXT NOT NULL,
    version INTEGER NOT NULL,
    at      INTEGER NOT NULL,
    who     TEXT NOT NULL,
    config  TEXT NOT NULL,
    PRIMARY KEY (coin, version)
);
";

/// Today's password file, read once for the migration.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct OldPasswords {
    admin: Option<String>,
    viewer: Option<String>,
}

impl UserDb {
    /// Opens (or makes, migrating `old_passwords`) the database at `path`, and carries out a
    /// reset the recovery console asked for.
    pub fn open(path: &Path, old_passwords: &Path, now: i64) -> Result<UserDb, DbError> {
        let damaged =
            |e: &dyn std::fmt::Display| DbError::Damaged { path: path.display().to_string(), message: e.to_string() };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| damaged(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| damaged(&e))?;
        // Only the status service may read the hashes and session tokens.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|e| damaged(&e))?;
        }
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
            .map_err(|e| damaged(&e))?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(|e| damaged(&e))?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| damaged(&e))?;
        if version > SCHEMA {
            return Err(DbError::Newer { path: path.display().to_string(), found: version });
        }
        let db = UserDb { conn: Mutex::new(conn), path: path.to_path_buf() };
        if version == 0 {
            db.create(old_passwords, now)?;
        }
        let marker = path.with_file_name(RESET_MARKER);
        if marker.exists() {
            db.reset(now)?;
            std::fs::remove_file(&marker).map_err(|e| damaged(&e))?;
        }
        let mfa_marker = path.with_file_name(RESET_MFA_MARKER);
        match std::fs::read_to_string(&mfa_marker) {
            Ok(names) => {
                db.reset_mfa(&names, now)?;
                std::fs::remove_file(&mfa_marker).map_err(|e| damaged(&e))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(damaged(&e)),
        }
        Ok(db)
    }

    fn create(&self, old_passwords: &Path, now: i64) -> Result<(), DbError> {
        let old = match std::fs::read_to_string(old_passwords) {
            Ok(text) => toml::from_str::<OldPasswords>(&text).map_err(|e| DbError::Damaged {
                path: old_passwords.display().to_string(),
                message: e.message().to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OldPasswords::default(),
            Err(e) => {
                return Err(DbError::Damaged { path: old_passwords.display().to_string(), message: e.to_string() })
            }
        };
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.damaged(e))?;
        tx.execute_batch(CREATE).map_err(|e| self.damaged(e))?;
        for (name, role, hash) in [("admin", "admin", &old.admin), ("viewer", "viewer", &old.viewer)] {
            if let Some(hash) = hash {
                tx.execute(
                    "INSERT INTO users (name, role, hash, disabled, created) VALUES (?1, ?2, ?3, 0, ?4)",
                    (name, role, hash, now),
                )
                .map_err(|e| self.damaged(e))?;
                tx.execute(
                    "INSERT INTO audit (at, who, action, detail) VALUES (?1, 'migration', 'user created', ?2)",
                    (now, format!("{name} ({role}) from the old {role} password")),
                )
                .map_err(|e| self.damaged(e))?;
            }
        }
        tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA}")).map_err(|e| self.damaged(e))?;
        tx.commit().map_err(|e| self.damaged(e))?;
        if old.admin.is_some() {
            tracing::info!("status page: the admin and viewer passwords are now users 'admin' and 'viewer'");
        }
        Ok(())
    }

    fn reset(&self, now: i64) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.damaged(e))?;
        let removed = tx.execute("DELETE FROM users", []).map_err(|e| self.damaged(e))?;
        tx.execute(
            "INSERT INTO audit (at, who, action, detail) VALUES (?1, 'recovery console', 'users reset', ?2)",
            (now, format!("{removed} users removed; the next visitor chooses the first admin")),
        )
        .map_err(|e| self.damaged(e))?;
        tx.commit().map_err(|e| self.damaged(e))?;
        tracing::warn!(removed, "status page users reset from the recovery console: first-visit setup is open");
        Ok(())
    }

    /// The recovery console's two-factor reset: physical access to the box is the last factor.
    /// Each named user signs in with their password alone until they enrol again; a name that
    /// is no user is noted, not an error (the console cannot check names).
    fn reset_mfa(&self, names: &str, now: i64) -> Result<(), DbError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.damaged(e))?;
        for name in names.lines().map(str::trim).filter(|n| !n.is_empty()) {
            let known: i64 = tx
                .query_row("SELECT count(*) FROM users WHERE name = ?1", [name], |r| r.get(0))
                .map_err(|e| self.damaged(e))?;
            let had = tx.execute("DELETE FROM mfa WHERE user = ?1", [name]).map_err(|e| self.damaged(e))?;
            tx.execute("DELETE FROM recovery_codes WHERE user = ?1", [name]).map_err(|e| self.damaged(e))?;
            let detail = match (known, had) {
                (0, _) => format!("{name:?}: there is no such user; nothing changed"),
                (_, 0) => format!("{name}: had no two-factor sign-in; nothing changed"),
                _ => format!(
                    "{name}: two-factor sign-in and recovery codes removed; password alone until they enrol again"
                ),
            };
            tx.execute(
                "INSERT INTO audit (at, who, action, detail) VALUES (?1, 'recovery console', 'two-factor reset', ?2)",
                (now, &detail),
            )
            .map_err(|e| self.damaged(e))?;
            tracing::warn!(user = name, "status page: two-factor sign-in reset from the recovery console");
        }
        tx.commit().map_err(|e| self.damaged(e))?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for one short statement or transaction at a time.
    pub fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn damaged(&self, e: rusqlite::Error) -> DbError {
        DbError::Damaged { path: self.path.display().to_string(), message: e.to_string() }
    }

    /// The schema version of the file (for tests and the migration's checks).
    pub fn schema(&self) -> Result<i64, DbError> {
        self.lock().query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| self.damaged(e))
    }

    /// A single value, or none.
    pub fn optional<T: rusqlite::types::FromSql>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<T>, DbError> {
        self.lock().query_row(sql, params, |r| r.get(0)).optional().map_err(|e| self.damaged(e))
    }
}

/// Seconds since the Unix epoch, as every table keeps time.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_passwords_become_users_admin_and_viewer_once() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("accounts");
        std::fs::write(&old, "admin = \"$argon2id$admin-hash\"\nviewer = \"$argon2id$viewer-hash\"\n").unwrap();
        let db = UserDb::open(&dir.path().join(FILE), &old, 1000).unwrap();
        assert_eq!(db.schema().unwrap(), SCHEMA);
        let role = |name: &str| db.optional::<String>("SELECT role || ' ' || hash FROM users WHERE name = ?1", [name]);
        assert_eq!(role("admin").unwrap().as_deref(), Some("admin $argon2id$admin-hash"));
        assert_eq!(role("viewer").unwrap().as_deref(), Some("viewer $argon2id$viewer-hash"));
        drop(db);
        // The old file is never read again: a second start keeps what the database says.
        std::fs::write(&old, "admin = \"$argon2id$changed\"\n").unwrap();
        let db = UserDb::open(&dir.path().join(FILE), &old, 2000).unwrap();
        assert_eq!(role_of(&db, "admin"), "admin $argon2id$admin-hash");
    }

    fn role_of(db: &UserDb, name: &str) -> String {
        db.optional::<String>("SELECT role || ' ' || hash FROM users WHERE name = ?1", [name]).unwrap().unwrap()
    }

    #[test]
    fn a_box_without_passwords_starts_with_no_users() {
        let dir = tempfile::tempdir().unwrap();
        let db = UserDb::open(&dir.path().join(FILE), &dir.path().join("accounts"), 1000).unwrap();
        assert_eq!(db.optional::<i64>("SELECT count(*) FROM users", []).unwrap(), Some(0));
    }

    #[test]
    fn a_damaged_old_file_is_an_error_that_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("accounts");
        std::fs::write(&old, "admin = [").unwrap();
        let e = UserDb::open(&dir.path().join(FILE), &old, 1000).err().unwrap().to_string();
        assert!(e.contains("reset status page password"), "{e}");
    }

    #[test]
    fn a_newer_schema_is_refused_not_guessed_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 7").unwrap();
        let e = UserDb::open(&path, &dir.path().join("accounts"), 1000).err().unwrap().to_string();
        assert!(e.contains("newer MineBox") && e.contains("schema 7"), "{e}");
    }

    #[test]
    fn the_recovery_marker_removes_every_user_and_is_noted() {
        let dir = tempfile::tempdir().unwrap();
        let old = dir.path().join("accounts");
        std::fs::write(&old, "admin = \"$argon2id$admin-hash\"\n").unwrap();
        drop(UserDb::open(&dir.path().join(FILE), &old, 1000).unwrap());
        std::fs::write(dir.path().join(RESET_MARKER), "").unwrap();
        let db = UserDb::open(&dir.path().join(FILE), &old, 2000).unwrap();
        assert_eq!(db.optional::<i64>("SELECT count(*) FROM users", []).unwrap(), Some(0));
        assert!(!dir.path().join(RESET_MARKER).exists(), "the reset runs once");
        let noted = db.optional::<String>("SELECT who || ': ' || action FROM audit ORDER BY id DESC LIMIT 1", []);
        assert_eq!(noted.unwrap().as_deref(), Some("recovery console: users reset"));
    }
}
