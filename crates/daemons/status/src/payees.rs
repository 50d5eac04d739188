//! Users' payout addresses for pool mode (issue 17 point 4): one address per user and coin,
//! kept in the users database and written out as the stratum server's payees file
//! (`pool-payees.toml` beside the settings file, [`minebox_settings::payees`]).
//!
//! The table is the truth and the file is derived from it: every change rewrites the whole
//! file (atomically), and so does every start of the service, which heals a file lost or
//! edited by hand. Disabled users are left out of the file (a miner naming one is refused at
//! authorize) but keep their row, so enabling them again restores their id.
//!
//! A payee's id is the row's id (`AUTOINCREMENT`: never given twice, even after a removal),
//! because the stratum server keeps a user's window work and carried balance under it. A
//! changed address keeps the id; a removed and re-registered one starts afresh.
//!
//! Every role may register its own address: a viewer of a club's box is a member who mines.
//! Registering your own address changes no setting of the box, only where your share goes.

use crate::user_db::{DbError, UserDb};
use minebox_settings::payees::{PayeeEntry, PayeesFile, MODE};
use minebox_settings::Settings;
use std::path::PathBuf;
use std::sync::Arc;

/// A registered address, as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PayoutAddress {
    /// The payee id the stratum server keeps the user's window under.
    pub id: i64,
    pub user: String,
    pub coin: String,
    pub address: String,
    /// Unix seconds of the last change.
    pub updated: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PayeeError {
    #[error("the box does not mine {0:?}; an admin enables the coin in Settings first")]
    CoinNotMined(String),
    /// The settings' own words for an address that does not fit the coin's network.
    #[error("coins.{coin}: {message}")]
    Address { coin: String, message: String },
    #[error("{user} has no {coin} payout address")]
    NoAddress { user: String, coin: String },
    #[error("there is no user {0:?}")]
    NoSuchUser(String),
    #[error("cannot write {path}: {message}; the address is saved and the file is written again at the next change or start")]
    Write { path: String, message: String },
    #[error(transparent)]
    Db(#[from] DbError),
}

impl PayeeError {
    pub fn status(&self) -> u16 {
        match self {
            PayeeError::CoinNotMined(_) | PayeeError::Address { .. } => 422,
            PayeeError::NoAddress { .. } | PayeeError::NoSuchUser(_) => 404,
            PayeeError::Write { .. } | PayeeError::Db(_) => 500,
        }
    }
}

pub struct PayeeBook {
    db: Arc<UserDb>,
    /// The payees file the stratum server reads.
    file: PathBuf,
}

/// Addresses are short; a longer value is not an address and is refused before parsing.
const MAX_ADDRESS: usize = 128;

impl PayeeBook {
    pub fn new(db: Arc<UserDb>, file: PathBuf) -> PayeeBook {
        PayeeBook { db, file }
    }

    pub fn file(&self) -> &std::path::Path {
        &self.file
    }

    /// Every registered address (`user` None) or one user's, by user then coin.
    pub fn list(&self, user: Option<&str>) -> Result<Vec<PayoutAddress>, DbError> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare(
                "SELECT id, user, coin, address, updated FROM payees WHERE (?1 IS NULL OR user = ?1) \
                 ORDER BY user, coin",
            )
            .map_err(|e| self.db.damaged(e))?;
        let rows = st
            .query_map([user], |r| {
                Ok(PayoutAddress {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    coin: r.get(2)?,
                    address: r.get(3)?,
                    updated: r.get(4)?,
                })
            })
            .map_err(|e| self.db.damaged(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.db.damaged(e))
    }

    /// Registers (or changes) `user`'s address for `coin`, checked exactly as the settings
    /// check a payout address: for the coin's network as the box's settings set it now.
    pub fn set(
        &self,
        settings: &Settings,
        user: &str,
        coin: &str,
        address: &str,
        now: i64,
    ) -> Result<PayoutAddress, PayeeError> {
        let address = address.trim();
        let network = settings
            .coins
            .get(coin)
            .filter(|c| c.enabled)
            .map(|c| &c.network)
            .ok_or_else(|| PayeeError::CoinNotMined(coin.to_string()))?;
        if address.is_empty() || address.len() > MAX_ADDRESS || address.chars().any(char::is_control) {
            return Err(PayeeError::Address { coin: coin.into(), message: "not an address".into() });
        }
        network
            .parse_address(address)
            .map_err(|e| PayeeError::Address { coin: coin.into(), message: e.to_string() })?;
        let row = {
            let conn = self.db.lock();
            let exists: Option<i64> = conn
                .query_row("SELECT 1 FROM users WHERE name = ?1", [user], |r| r.get(0))
                .map(Some)
                .or_else(|e| if e == rusqlite::Error::QueryReturnedNoRows { Ok(None) } else { Err(e) })
                .map_err(|e| self.db.damaged(e))?;
            if exists.is_none() {
                return Err(PayeeError::NoSuchUser(user.into()));
            }
            // An update keeps the row, so the id the pool keeps the user's window under stays.
            conn.query_row(
                "INSERT INTO payees (user, coin, address, updated) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (user, coin) DO UPDATE SET address = excluded.address, updated = excluded.updated \
                 RETURNING id",
                (user, coin, address, now),
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.db.damaged(e))?
        };
        self.write_file()?;
        Ok(PayoutAddress { id: row, user: user.into(), coin: coin.into(), address: address.into(), updated: now })
    }

    /// Removes `user`'s address for `coin`: the pool pays them no more on that coin.
    pub fn remove(&self, user: &str, coin: &str) -> Result<(), PayeeError> {
        let n = self
            .db
            .lock()
            .execute("DELETE FROM payees WHERE user = ?1 AND coin = ?2", (user, coin))
            .map_err(|e| self.db.damaged(e))?;
        if n == 0 {
            return Err(PayeeError::NoAddress { user: user.into(), coin: coin.into() });
        }
        self.write_file()
    }

    /// The payees file as the table says it should be: enabled users' addresses, by coin.
    pub fn file_contents(&self) -> Result<PayeesFile, DbError> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare(
                "SELECT p.id, p.user, p.coin, p.address FROM payees p JOIN users u ON u.name = p.user \
                 WHERE u.disabled = 0 ORDER BY p.coin, p.id",
            )
            .map_err(|e| self.db.damaged(e))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get(3)?)))
            .map_err(|e| self.db.damaged(e))?;
        let mut file = PayeesFile::default();
        for row in rows {
            let (id, user, coin, address) = row.map_err(|e| self.db.damaged(e))?;
            // Ids start at 1 and count up once per registration: a u32 outlasts any club.
            let id = u32::try_from(id).unwrap_or(u32::MAX);
            file.coins.entry(coin).or_default().push(PayeeEntry { id, user, address });
        }
        Ok(file)
    }

    /// Writes the payees file from the table (after every change, a user's disable or
    /// removal, and at start).
    pub fn write_file(&self) -> Result<(), PayeeError> {
        let text = self.file_contents()?.to_toml();
        // At start the file is usually right already: the SD card is spared the write.
        if std::fs::read_to_string(&self.file).is_ok_and(|t| t == text) {
            return Ok(());
        }
        let write_err =
            |e: std::io::Error| PayeeError::Write { path: self.file.display().to_string(), message: e.to_string() };
        if let Some(dir) = self.file.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        minebox_platform::fs::AtomicWrite::to(&self.file).mode(MODE).write(text.as_bytes()).map_err(write_err)
    }

    /// [`Self::write_file`] where a failure cannot be answered to anyone (a user's removal
    /// already done, the service's start): logged for the journal.
    pub fn write_file_or_log(&self) {
        if let Err(e) = self.write_file() {
            tracing::warn!(error = %e, "the pool payees file could not be written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

    #[test]
    fn ids_stay_with_an_address_change_and_are_never_given_twice() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(UserDb::open(&dir.path().join("users.db"), &dir.path().join("accounts"), 0).unwrap());
        for name in ["ann", "bob"] {
            db.lock()
                .execute("INSERT INTO users (name, role, hash, created) VALUES (?1, 'viewer', 'x', 0)", [name])
                .unwrap();
        }
        let settings = Settings::from_user_text(
            &format!("[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{A}\"\n"),
            &minebox_coin::Registry::embedded(),
        )
        .unwrap();
        let book = PayeeBook::new(db, dir.path().join("pool-payees.toml"));
        let ann = book.set(&settings, "ann", "btc", A, 1).unwrap();
        let again = book.set(&settings, "ann", "btc", &format!(" {A} "), 2).unwrap();
        assert_eq!(ann.id, again.id, "a changed address keeps the payee id");
        book.remove("ann", "btc").unwrap();
        let bob = book.set(&settings, "bob", "btc", A, 3).unwrap();
        assert!(bob.id > ann.id, "a removed payee's id is not given again");
        assert!(matches!(book.remove("ann", "btc"), Err(PayeeError::NoAddress { .. })));
        assert!(matches!(book.set(&settings, "ann", "bch", A, 4), Err(PayeeError::CoinNotMined(_))));
    }
}
