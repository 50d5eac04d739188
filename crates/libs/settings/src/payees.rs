//! The pool's payees: the box's users with a payout address per coin (issue 17 point 4).
//!
//! The status page writes the file (`pool-payees.toml`, beside the settings file, mode 0640)
//! when a user registers, changes or removes an address, or an admin disables or removes a
//! user; the stratum server reads it when a miner authorizes on a pool port and when it builds
//! a pool job, so a new address needs no restart. One definition for both ends:
//!
//! ```toml
//! [[coins.btc]]
//! id = 3              # the account's payee id: given once by the status page, never reused
//! user = "alice"      # the account name miners authorize with (`alice.rig1`)
//! address = "bc1q..."
//! ```
//!
//! Each address is checked for the coin's network here, once: a payee whose address no
//! longer fits (the owner moved the coin from testnet to main) is kept with the reason, so a
//! miner naming that user is refused with it, and the other users mine on.

use crate::Settings;
use minebox_coin::Payout;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file's name, in the settings file's folder.
pub const FILE_NAME: &str = "pool-payees.toml";
/// The file's mode: the stratum server reads it through the group, like the settings file.
pub const MODE: u32 = crate::SETTINGS_MODE;
/// Larger files are refused unread: a box's users are a club or a family, not a city.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// The file as written.
#[derive(Debug, Default, Deserialize, Serialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PayeesFile {
    #[serde(default)]
    pub coins: BTreeMap<String, Vec<PayeeEntry>>,
}

#[derive(Debug, Deserialize, Serialize, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PayeeEntry {
    pub id: u32,
    pub user: String,
    pub address: String,
}

/// A user a pool port may pay, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Payee {
    /// Stable across renames of nothing and removals: what the pool's window and carried
    /// balances are kept under.
    pub id: u32,
    pub user: String,
    pub payout: Payout,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayeesError {
    #[error("{file}: cannot read it: {message}")]
    Io { file: String, message: String },
    #[error("{file}: {message}; the status page rewrites it when a user saves their payout address")]
    Invalid { file: String, message: String },
}

/// Why a login on a pool port pays nobody; said to the miner at authorize.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("{login:?} names no user of this box with a {coin} payout address; authorize as <user>.<worker>, where <user> has registered a {coin} address on the box's page")]
    UnknownUser { login: String, coin: String },
    #[error(
        "{user}'s {coin} payout address cannot be paid: {reason}; {user} must register it again on the box's page"
    )]
    BadAddress { user: String, coin: String, reason: String },
}

/// Every coin's payees, checked against the settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payees {
    coins: BTreeMap<String, BTreeMap<String, Result<Payee, String>>>,
}

impl Payees {
    /// Where the file is: beside the user's settings file.
    pub fn path_beside(settings_file: &Path) -> PathBuf {
        settings_file.parent().unwrap_or(Path::new(".")).join(FILE_NAME)
    }

    /// Reads and checks the file; a missing file is no payees.
    pub fn load(path: &Path, settings: &Settings) -> Result<Payees, PayeesError> {
        let file = path.display().to_string();
        let io = |e: std::io::Error| PayeesError::Io { file: file.clone(), message: e.to_string() };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Payees::default()),
            Err(e) => return Err(io(e)),
        };
        if meta.len() > MAX_FILE_BYTES {
            return Err(PayeesError::Invalid {
                file,
                message: format!("{} bytes, more than the {MAX_FILE_BYTES} a payee list may be", meta.len()),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Payees::from_text(&file, &text, settings)
    }

    /// The same from the file's text.
    pub fn from_text(file: &str, text: &str, settings: &Settings) -> Result<Payees, PayeesError> {
        let parsed: PayeesFile =
            toml::from_str(text).map_err(|e| PayeesError::Invalid { file: file.into(), message: e.to_string() })?;
        Payees::check(file, parsed, settings)
    }

    fn check(file: &str, parsed: PayeesFile, settings: &Settings) -> Result<Payees, PayeesError> {
        let invalid = |message: String| PayeesError::Invalid { file: file.into(), message };
        let mut coins = BTreeMap::new();
        for (coin, entries) in parsed.coins {
            let network = settings.coins.get(&coin).map(|c| &c.network);
            let mut users = BTreeMap::new();
            let mut ids = std::collections::BTreeSet::new();
            for e in entries {
                if !ids.insert(e.id) {
                    return Err(invalid(format!("coins.{coin}: payee id {} appears twice", e.id)));
                }
                if !valid_user(&e.user) {
                    return Err(invalid(format!("coins.{coin}: {:?} is not a user name of the box", e.user)));
                }
                let payee = match network {
                    None => Err(format!("the box has no {coin} settings")),
                    Some(n) => n
                        .parse_address(&e.address)
                        .map(|payout| Payee { id: e.id, user: e.user.clone(), payout })
                        .map_err(|err| err.to_string()),
                };
                if users.insert(e.user.clone(), payee).is_some() {
                    return Err(invalid(format!("coins.{coin}: user {:?} appears twice", e.user)));
                }
            }
            coins.insert(coin, users);
        }
        Ok(Payees { coins })
    }

    /// The payee a login (`user.worker`, or just `user`) on `coin`'s pool port names, and the
    /// worker part (empty for a bare user). The longest registered user name that the login
    /// starts with (followed by `.` or nothing) wins, so names with dots stay unambiguous.
    pub fn login<'a>(&'a self, coin: &str, login: &'a str) -> Result<(&'a Payee, &'a str), LoginError> {
        let users = self.coins.get(coin);
        let found = users.into_iter().flat_map(|u| u.iter()).filter(|(name, _)| {
            login == name.as_str() || login.strip_prefix(name.as_str()).is_some_and(|rest| rest.starts_with('.'))
        });
        let Some((name, payee)) = found.max_by_key(|(name, _)| name.len()) else {
            return Err(LoginError::UnknownUser { login: login.into(), coin: coin.into() });
        };
        let worker = login[name.len()..].trim_start_matches('.');
        match payee {
            Ok(p) => Ok((p, worker)),
            Err(reason) => {
                Err(LoginError::BadAddress { user: name.clone(), coin: coin.into(), reason: reason.clone() })
            }
        }
    }

    /// The payable payees of `coin`, by id.
    pub fn of_coin(&self, coin: &str) -> impl Iterator<Item = &Payee> + '_ {
        self.coins.get(coin).into_iter().flat_map(|u| u.values()).filter_map(|p| p.as_ref().ok())
    }
}

impl PayeesFile {
    /// The file's text; the writer saves it with `minebox_platform::fs::AtomicWrite`, mode
    /// [`MODE`] (the one durable write every service uses).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a payee list is plain strings and numbers")
    }
}

/// The status page's user-name rule (1-32 of a-z, 0-9, `.`, `_`, `-`, starting with a letter
/// or digit), checked again here because the file is an edge.
fn valid_user(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;
    use minebox_coin::Registry;

    const A: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
    const MAIN: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

    fn settings() -> Settings {
        Settings::from_user_text(
            &format!("[coins.btc]\nenabled = true\nnetwork = \"regtest\"\npayout_address = \"{A}\"\n"),
            &Registry::embedded(),
        )
        .unwrap()
    }

    fn payees(text: &str) -> Result<Payees, PayeesError> {
        Payees::from_text("pool-payees.toml", text, &settings())
    }

    #[test]
    fn a_login_names_the_longest_matching_user_and_its_worker() {
        let p = payees(&format!(
            "[[coins.btc]]\nid = 1\nuser = \"al\"\naddress = \"{A}\"\n\
             [[coins.btc]]\nid = 2\nuser = \"al.ice\"\naddress = \"{A}\"\n"
        ))
        .unwrap();
        let (who, worker) = p.login("btc", "al.ice.rig1").unwrap();
        assert_eq!((who.id, worker), (2, "rig1"));
        let (who, worker) = p.login("btc", "al.rig").unwrap();
        assert_eq!((who.id, worker), (1, "rig"));
        let (who, worker) = p.login("btc", "al").unwrap();
        assert_eq!((who.id, worker), (1, ""));
        assert!(matches!(p.login("btc", "alice.rig"), Err(LoginError::UnknownUser { .. })));
        assert!(matches!(p.login("bch", "al.rig"), Err(LoginError::UnknownUser { .. })));
        assert_eq!(p.of_coin("btc").count(), 2);
    }

    #[test]
    fn an_address_for_another_network_refuses_that_user_only_with_the_reason() {
        let p = payees(&format!(
            "[[coins.btc]]\nid = 1\nuser = \"bob\"\naddress = \"{MAIN}\"\n\
             [[coins.btc]]\nid = 2\nuser = \"carol\"\naddress = \"{A}\"\n"
        ))
        .unwrap();
        let e = p.login("btc", "bob.rig").unwrap_err().to_string();
        assert!(e.contains("bob's btc payout address cannot be paid") && e.contains("regtest"), "{e}");
        assert_eq!(p.login("btc", "carol.rig").unwrap().0.id, 2);
        assert_eq!(p.of_coin("btc").map(|p| p.id).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn a_damaged_file_is_refused_with_what_rewrites_it() {
        for bad in [
            "[[coins.btc]]\nid = 1\nuser = \"Bob\"\naddress = \"x\"\n".to_string(),
            format!("[[coins.btc]]\nid = 1\nuser = \"a\"\naddress = \"{A}\"\n[[coins.btc]]\nid = 1\nuser = \"b\"\naddress = \"{A}\"\n"),
            "coins = 3".to_string(),
        ] {
            let e = payees(&bad).unwrap_err().to_string();
            assert!(e.starts_with("pool-payees.toml: ") && e.contains("status page rewrites it"), "{e}");
        }
    }

    #[test]
    fn the_file_round_trips_and_a_missing_one_is_no_payees() {
        let d = tempfile::tempdir().unwrap();
        let path = Payees::path_beside(&d.path().join("minebox.toml"));
        assert_eq!(Payees::load(&path, &settings()).unwrap(), Payees::default());
        let file = PayeesFile {
            coins: [("btc".to_string(), vec![PayeeEntry { id: 7, user: "dave".into(), address: A.into() }])].into(),
        };
        std::fs::write(&path, file.to_toml()).unwrap();
        let p = Payees::load(&path, &settings()).unwrap();
        assert_eq!(p.login("btc", "dave.x").unwrap().0.payout.to_string(), A);
    }
}
