//! Two-factor sign-in (issue 17 point 2): TOTP (RFC 6238: HMAC-SHA-1, 6 digits, 30 s steps,
//! one step of clock skew either way) from any authenticator app, and ten one-time recovery
//! codes for a lost phone.
//!
//! - Enrolment: [`Mfa::enrol`] keeps a new secret beside the user, not yet active; the page
//!   shows it as a QR code (the `otpauth://` URI) and as text. [`Mfa::confirm`] with a right
//!   code turns it on and gives the ten recovery codes, shown once.
//! - Each code is good once: the step a code belonged to is stored, and a code of that step or
//!   an earlier one is refused (RFC 6238 section 5.2), so a code seen over a shoulder or in a
//!   proxy's log cannot sign in again.
//! - Wrong codes are counted per user: [`MAX_MISSES`] in [`MISS_WINDOW`] seconds, then every
//!   code (right or wrong) is refused until the oldest miss is that old. A 6-digit code has a
//!   million values; five tries per five minutes makes guessing one a matter of years.
//! - Recovery codes are 16 characters from a 31-letter alphabet (79 bits), kept as SHA-256
//!   hashes. A fast hash is enough because they are random, not chosen by people: there is no
//!   dictionary to try, and 2^79 hashes is out of reach (argon2 is for passwords).
//! - Signing in is two steps: the right password gives a ticket ([`Mfa::begin`]), not a
//!   session; the ticket and a right code give the session. Tickets live in memory only, for
//!   [`TICKET_FOR`] seconds, for the address that got them.
//!
//! The secrets are in the users database (a 0600 file only the status service reads). The
//! recovery console can remove a user's second factor ([`crate::user_db::RESET_MFA_MARKER`]).

use crate::accounts::Role;
use crate::user_db::{DbError, UserDb};
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use totp_rs::{Algorithm, Builder, Secret, Totp};

pub const DIGITS: usize = 6;
pub const STEP: u64 = 30;
pub const RECOVERY_CODES: usize = 10;
/// Wrong codes a user may enter within [`MISS_WINDOW`] seconds.
pub const MAX_MISSES: usize = 5;
pub const MISS_WINDOW: i64 = 300;
/// How long a correct password waits for its code (seconds).
pub const TICKET_FOR: i64 = 300;
/// Sign-ins waiting for their code at once (each needed a right password).
const MAX_TICKETS: usize = 256;
/// The name authenticator apps list the account under.
const ISSUER: &str = "MineBox";
/// Recovery code letters: no 0/o, 1/l/i, which people misread when typing them from paper.
const ALPHABET: &[u8] = b"23456789abcdefghjkmnpqrstuvwxyz";
const RECOVERY_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("two-factor sign-in is on already; turn it off first to set up another authenticator")]
    AlreadyActive,
    #[error("no authenticator is waiting to be confirmed; start the set-up again")]
    NotEnrolling,
    #[error("two-factor sign-in is not on for {0}")]
    NotActive(String),
    #[error("wrong code: enter the 6-digit code your authenticator app shows now, or one of your recovery codes")]
    WrongCode,
    #[error("that code was used already; wait for the next one (a new code comes every 30 s)")]
    Reused,
    #[error("too many wrong codes for {user}; try again in {wait} s")]
    Throttled { user: String, wait: i64 },
    #[error(
        "this box requires two-factor sign-in for every admin; an admin switches the requirement off before an \
         admin can turn theirs off"
    )]
    RequiredForAdmins,
    #[error("set up two-factor sign-in for yourself first: the admin who requires it for every admin must have it")]
    RequirerWithout,
    #[error("the sign-in waited too long for its code (5 min) or was used already; sign in again with your password")]
    NoTicket,
    #[error("the password is wrong")]
    WrongPassword,
    #[error("there is no user {0:?}")]
    NoSuchUser(String),
    #[error("too many sign-ins are waiting for their codes; try again in a minute")]
    TooManyTickets,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What the page shows a user about their own second factor.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MfaStatus {
    pub active: bool,
    /// A secret waits for its first code.
    pub enrolling: bool,
    pub recovery_codes_left: i64,
    /// The box requires two-factor sign-in for every admin.
    pub required_for_admins: bool,
    /// This user is an admin without it while it is required: nothing else works until they enrol.
    pub must_enrol: bool,
}

/// A new secret waiting for its first code.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Enrolment {
    /// Base32, for typing into an app that cannot scan.
    pub secret: String,
    /// `otpauth://totp/...`, what the QR code holds.
    pub uri: String,
}

/// Which second factor a sign-in used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Used {
    Totp,
    /// A recovery code, now spent; how many are left.
    Recovery {
        left: i64,
    },
}

struct Ticket {
    user: String,
    address: String,
    expires: i64,
}

pub struct Mfa {
    db: Arc<UserDb>,
    /// Per user, the times of their recent wrong codes.
    misses: Mutex<HashMap<String, VecDeque<i64>>>,
    /// Half-signed-in: password right, code not yet given. Keyed by the ticket.
    tickets: Mutex<HashMap<String, Ticket>>,
}

fn totp(secret: &[u8]) -> Result<Totp, MfaError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS as u8)
        .with_skew(1)
        .with_step_duration(STEP)
        .with_secret(secret.to_vec())
        .build()
        .map_err(|_| MfaError::NotEnrolling)
}

/// Recovery codes as people type them: any case, with or without dashes and spaces.
fn normalise(code: &str) -> String {
    code.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_lowercase).collect()
}

fn recovery_hash(user: &str, code: &str) -> String {
    hex::encode(Sha256::digest(format!("{user}\n{}", normalise(code)).as_bytes()))
}

fn new_recovery_code() -> String {
    let mut rng = rand::rngs::OsRng;
    let raw: String = (0..RECOVERY_LEN).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect();
    raw.as_bytes().chunks(4).map(|c| std::str::from_utf8(c).expect("ascii")).collect::<Vec<_>>().join("-")
}

/// The QR code of an `otpauth://` URI, as an SVG document.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(220, 220)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build(),
    )
}

impl Mfa {
    pub fn new(db: Arc<UserDb>) -> Mfa {
        Mfa { db, misses: Mutex::default(), tickets: Mutex::default() }
    }

    fn damaged(&self, e: rusqlite::Error) -> MfaError {
        MfaError::Db(self.db.damaged(e))
    }

    pub fn required_for_admins(&self) -> Result<bool, MfaError> {
        Ok(self.db.optional::<i64>("SELECT require_admins FROM mfa_policy WHERE id = 1", [])?.unwrap_or(0) != 0)
    }

    pub fn is_active(&self, user: &str) -> Result<bool, MfaError> {
        Ok(self.db.optional::<i64>("SELECT active FROM mfa WHERE user = ?1", [user])?.unwrap_or(0) != 0)
    }

    /// An admin without two-factor sign-in while the box requires it for admins.
    pub fn must_enrol(&self, user: &str, role: Role) -> Result<bool, MfaError> {
        Ok(role == Role::Admin && self.required_for_admins()? && !self.is_active(user)?)
    }

    pub fn status(&self, user: &str, role: Role) -> Result<MfaStatus, MfaError> {
        let row: Option<i64> = self.db.optional("SELECT active FROM mfa WHERE user = ?1", [user])?;
        let left = self.db.optional::<i64>("SELECT count(*) FROM recovery_codes WHERE user = ?1", [user])?;
        let required = self.required_for_admins()?;
        let active = row == Some(1);
        Ok(MfaStatus {
            active,
            enrolling: row == Some(0),
            recovery_codes_left: left.unwrap_or(0),
            required_for_admins: required,
            must_enrol: role == Role::Admin && required && !active,
        })
    }

    /// Switches the requirement; only an admin with two-factor sign-in may switch it on.
    pub fn set_required_for_admins(&self, by: &str, on: bool) -> Result<(), MfaError> {
        if on && !self.is_active(by)? {
            return Err(MfaError::RequirerWithout);
        }
        self.db
            .lock()
            .execute("UPDATE mfa_policy SET require_admins = ?1 WHERE id = 1", [on as i64])
            .map_err(|e| self.damaged(e))?;
        Ok(())
    }

    /// A new secret for `user`, waiting for its first code (any earlier waiting one is replaced).
    pub fn enrol(&self, user: &str, box_name: &str, now: i64) -> Result<Enrolment, MfaError> {
        if self.is_active(user)? {
            return Err(MfaError::AlreadyActive);
        }
        // 160 bits, the length RFC 4226 recommends for HMAC-SHA-1.
        let mut secret = [0u8; 20];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let encoded = Secret::from(secret.to_vec()).to_base32();
        self.db
            .lock()
            .execute(
                "INSERT INTO mfa (user, secret, active, last_step, created) VALUES (?1, ?2, 0, -1, ?3) \
                 ON CONFLICT (user) DO UPDATE SET secret = ?2, active = 0, last_step = -1, created = ?3",
                (user, &encoded, now),
            )
            .map_err(|e| self.damaged(e))?;
        let uri = self.enrolment_uri(user, box_name)?.ok_or(MfaError::NotEnrolling)?;
        Ok(Enrolment { secret: encoded, uri })
    }

    /// The `otpauth://` URI of `user`'s secret waiting for confirmation, if any.
    pub fn enrolment_uri(&self, user: &str, box_name: &str) -> Result<Option<String>, MfaError> {
        let secret: Option<String> =
            self.db.optional("SELECT secret FROM mfa WHERE user = ?1 AND active = 0", [user])?;
        let Some(secret) = secret else { return Ok(None) };
        let bytes = Secret::try_from_base32(&secret).map_err(|_| MfaError::NotEnrolling)?;
        // Apps list "MineBox (user@box)": the user names and host names allow no ':'.
        let account = if box_name.is_empty() { user.to_string() } else { format!("{user}@{box_name}") };
        let t = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS as u8)
            .with_skew(1)
            .with_step_duration(STEP)
            .with_secret(bytes.as_ref().to_vec())
            .with_issuer(Some(ISSUER))
            .with_account_name(account.replace(':', "-"))
            .build()
            .map_err(|_| MfaError::NotEnrolling)?;
        Ok(t.to_url().ok())
    }

    /// The first right code turns the waiting secret on; the ten recovery codes come back,
    /// to be shown once.
    pub fn confirm(&self, user: &str, code: &str, now: i64) -> Result<Vec<String>, MfaError> {
        self.throttled(user, now, || {
            let secret: Option<String> =
                self.db.optional("SELECT secret FROM mfa WHERE user = ?1 AND active = 0", [user])?;
            let secret = secret.ok_or(MfaError::NotEnrolling)?;
            let bytes = Secret::try_from_base32(&secret).map_err(|_| MfaError::NotEnrolling)?;
            let step = totp(bytes.as_ref())?.check(&normalise(code), now.max(0) as u64).ok_or(MfaError::WrongCode)?;
            let mut conn = self.db.lock();
            let tx = conn.transaction().map_err(|e| self.damaged(e))?;
            let changed = tx
                .execute(
                    "UPDATE mfa SET active = 1, last_step = ?2 WHERE user = ?1 AND active = 0 AND secret = ?3",
                    (user, step as i64, &secret),
                )
                .map_err(|e| self.damaged(e))?;
            if changed == 0 {
                return Err(MfaError::NotEnrolling);
            }
            let codes = self.store_recovery_codes(&tx, user)?;
            tx.commit().map_err(|e| self.damaged(e))?;
            Ok(codes)
        })
    }

    fn store_recovery_codes(&self, tx: &rusqlite::Transaction<'_>, user: &str) -> Result<Vec<String>, MfaError> {
        tx.execute("DELETE FROM recovery_codes WHERE user = ?1", [user]).map_err(|e| self.damaged(e))?;
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        for c in &codes {
            tx.execute("INSERT INTO recovery_codes (user, hash) VALUES (?1, ?2)", (user, recovery_hash(user, c)))
                .map_err(|e| self.damaged(e))?;
        }
        Ok(codes)
    }

    /// Checks a second factor of `user`, who has one on: a 6-digit code from their app, each
    /// step's code good once, or a recovery code, which is spent.
    pub fn verify(&self, user: &str, code: &str, now: i64) -> Result<Used, MfaError> {
        self.throttled(user, now, || {
            let secret: Option<String> =
                self.db.optional("SELECT secret FROM mfa WHERE user = ?1 AND active = 1", [user])?;
            let secret = secret.ok_or_else(|| MfaError::NotActive(user.to_string()))?;
            let code = normalise(code);
            if code.len() == DIGITS && code.bytes().all(|b| b.is_ascii_digit()) {
                let bytes = Secret::try_from_base32(&secret).map_err(|_| MfaError::NotActive(user.to_string()))?;
                let step = totp(bytes.as_ref())?.check(&code, now.max(0) as u64).ok_or(MfaError::WrongCode)?;
                // Only a step later than the last one used moves it: a replay changes nothing.
                let changed = self
                    .db
                    .lock()
                    .execute(
                        "UPDATE mfa SET last_step = ?2 WHERE user = ?1 AND active = 1 AND last_step < ?2",
                        (user, step as i64),
                    )
                    .map_err(|e| self.damaged(e))?;
                return if changed == 1 { Ok(Used::Totp) } else { Err(MfaError::Reused) };
            }
            let spent = self
                .db
                .lock()
                .execute("DELETE FROM recovery_codes WHERE user = ?1 AND hash = ?2", (user, recovery_hash(user, &code)))
                .map_err(|e| self.damaged(e))?;
            if spent == 0 {
                return Err(MfaError::WrongCode);
            }
            let left = self.db.optional::<i64>("SELECT count(*) FROM recovery_codes WHERE user = ?1", [user])?;
            Ok(Used::Recovery { left: left.unwrap_or(0) })
        })
    }

    /// Ten new recovery codes; the old ones stop working.
    pub fn regenerate(&self, user: &str) -> Result<Vec<String>, MfaError> {
        if !self.is_active(user)? {
            return Err(MfaError::NotActive(user.to_string()));
        }
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(|e| self.damaged(e))?;
        let codes = self.store_recovery_codes(&tx, user)?;
        tx.commit().map_err(|e| self.damaged(e))?;
        Ok(codes)
    }

    /// Removes `user`'s second factor (their own choice, or an admin's); whether they had one.
    /// `own_role`: the user turning off their own, who may not while it is required of them.
    pub fn remove(&self, user: &str, own_role: Option<Role>) -> Result<bool, MfaError> {
        if own_role == Some(Role::Admin) && self.required_for_admins()? {
            return Err(MfaError::RequiredForAdmins);
        }
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(|e| self.damaged(e))?;
        let had = tx.execute("DELETE FROM mfa WHERE user = ?1", [user]).map_err(|e| self.damaged(e))?;
        tx.execute("DELETE FROM recovery_codes WHERE user = ?1", [user]).map_err(|e| self.damaged(e))?;
        tx.commit().map_err(|e| self.damaged(e))?;
        Ok(had > 0)
    }

    /// Runs one code check for `user` unless they are throttled; a wrong or reused code counts.
    fn throttled<T>(&self, user: &str, now: i64, check: impl FnOnce() -> Result<T, MfaError>) -> Result<T, MfaError> {
        // Held across the check: two requests at once cannot both slip under the limit.
        let mut misses = self.misses.lock().unwrap_or_else(|p| p.into_inner());
        if misses.len() > 4096 {
            misses.retain(|_, m| m.back().is_some_and(|t| now - t < MISS_WINDOW));
        }
        let recent = misses.entry(user.to_string()).or_default();
        while recent.front().is_some_and(|t| now - t >= MISS_WINDOW) {
            recent.pop_front();
        }
        if recent.len() >= MAX_MISSES {
            let wait = recent.front().map_or(MISS_WINDOW, |t| t + MISS_WINDOW - now).max(1);
            return Err(MfaError::Throttled { user: user.to_string(), wait });
        }
        let r = check();
        match &r {
            Err(MfaError::WrongCode | MfaError::Reused) => recent.push_back(now),
            Ok(_) => recent.clear(),
            Err(_) => {}
        }
        r
    }

    /// The right password of a user with two-factor sign-in: a ticket for the second step.
    pub fn begin(&self, user: &str, address: &str, now: i64) -> Result<String, MfaError> {
        let mut tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        tickets.retain(|_, t| t.expires > now);
        if tickets.len() >= MAX_TICKETS {
            return Err(MfaError::TooManyTickets);
        }
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        let ticket = hex::encode(b);
        tickets.insert(
            ticket.clone(),
            Ticket { user: user.to_string(), address: address.to_string(), expires: now + TICKET_FOR },
        );
        Ok(ticket)
    }

    /// The user a live ticket from `address` belongs to.
    pub fn ticket_user(&self, ticket: &str, address: &str, now: i64) -> Result<String, MfaError> {
        let tickets = self.tickets.lock().unwrap_or_else(|p| p.into_inner());
        match tickets.get(ticket) {
            Some(t) if t.expires > now && t.address == address => Ok(t.user.clone()),
            _ => Err(MfaError::NoTicket),
        }
    }

    /// The second step succeeded: the ticket is spent.
    pub fn end_ticket(&self, ticket: &str) {
        self.tickets.lock().unwrap_or_else(|p| p.into_inner()).remove(ticket);
    }

    /// The secret of `user`, for tests that play the authenticator app.
    #[doc(hidden)]
    pub fn secret_of(&self, user: &str) -> Result<Option<String>, MfaError> {
        Ok(self.db.optional("SELECT secret FROM mfa WHERE user = ?1", [user])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Accounts;

    fn mfa(dir: &std::path::Path) -> Mfa {
        let db = Arc::new(UserDb::open(&dir.join("users.db"), &dir.join("accounts"), 0).unwrap());
        let a = Accounts::new(db.clone());
        a.set_first_admin("alice", "correct horse", 0).unwrap();
        Mfa::new(db)
    }

    fn code_at(secret: &str, now: i64) -> String {
        totp(Secret::try_from_base32(secret).unwrap().as_ref()).unwrap().generate(now as u64).to_string()
    }

    #[test]
    fn the_crate_meets_the_rfc_6238_sha1_vectors() {
        // RFC 6238 appendix B, SHA-1, the 20-byte ASCII secret; its 8-digit codes end in these 6.
        let t = totp(b"12345678901234567890").unwrap();
        for (time, code) in [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")] {
            assert_eq!(t.generate(time).to_string(), code, "at {time}");
        }
    }

    #[test]
    fn codes_are_good_once_and_within_one_step() {
        let dir = tempfile::tempdir().unwrap();
        let m = mfa(dir.path());
        let e = m.enrol("alice", "minebox", 1000).unwrap();
        assert!(e.uri.starts_with("otpauth://totp/MineBox:alice%40minebox?"), "{}", e.uri);
        assert!(matches!(m.verify("alice", "123456", 1000), Err(MfaError::NotActive(_))), "not on before confirming");
        let codes = m.confirm("alice", &code_at(&e.secret, 1000), 1000).unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert!(matches!(m.verify("alice", &code_at(&e.secret, 1000), 1010), Err(MfaError::Reused)));
        assert_eq!(m.verify("alice", &code_at(&e.secret, 1030), 1040).unwrap(), Used::Totp);
        // The step before the last used one is refused although within the skew.
        assert!(matches!(m.verify("alice", &code_at(&e.secret, 1000), 1040), Err(MfaError::Reused)));
        assert!(matches!(m.verify("alice", &code_at(&e.secret, 1060), 1200), Err(MfaError::WrongCode)), "too old");
        assert_eq!(m.verify("alice", &code_at(&e.secret, 1230), 1200).unwrap(), Used::Totp, "a step ahead is fine");
        assert_eq!(m.verify("alice", &codes[3].to_uppercase(), 1300).unwrap(), Used::Recovery { left: 9 });
        assert!(matches!(m.verify("alice", &codes[3], 1301), Err(MfaError::WrongCode)), "spent");
    }

    #[test]
    fn five_wrong_codes_wait_out_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let m = mfa(dir.path());
        let e = m.enrol("alice", "", 1000).unwrap();
        m.confirm("alice", &code_at(&e.secret, 1000), 1000).unwrap();
        for i in 0..MAX_MISSES as i64 {
            assert!(matches!(m.verify("alice", "000000", 2000 + i), Err(MfaError::WrongCode)));
        }
        let right = code_at(&e.secret, 2100);
        match m.verify("alice", &right, 2100) {
            Err(MfaError::Throttled { wait, .. }) => assert_eq!(wait, 2000 + MISS_WINDOW - 2100),
            other => panic!("{other:?}"),
        }
        // The first miss leaves the window: one more try (and only one) until the next leaves.
        assert_eq!(m.verify("alice", &code_at(&e.secret, 2300), 2300).unwrap(), Used::Totp);
        assert!(matches!(m.verify("alice", "000000", 2301), Err(MfaError::WrongCode)), "success cleared the count");
    }

    #[test]
    fn the_requirement_needs_its_admin_to_have_it_and_keeps_theirs_on() {
        let dir = tempfile::tempdir().unwrap();
        let m = mfa(dir.path());
        assert!(matches!(m.set_required_for_admins("alice", true), Err(MfaError::RequirerWithout)));
        let e = m.enrol("alice", "", 1000).unwrap();
        m.confirm("alice", &code_at(&e.secret, 1000), 1000).unwrap();
        m.set_required_for_admins("alice", true).unwrap();
        assert!(!m.must_enrol("alice", Role::Admin).unwrap());
        assert!(m.must_enrol("carol", Role::Admin).unwrap());
        assert!(!m.must_enrol("vic", Role::Viewer).unwrap());
        assert!(matches!(m.remove("alice", Some(Role::Admin)), Err(MfaError::RequiredForAdmins)));
    }

    #[test]
    fn tickets_are_for_their_address_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let m = mfa(dir.path());
        let t = m.begin("alice", "192.168.1.20", 1000).unwrap();
        assert_eq!(m.ticket_user(&t, "192.168.1.20", 1000 + TICKET_FOR - 1).unwrap(), "alice");
        assert!(matches!(m.ticket_user(&t, "192.168.1.66", 1001), Err(MfaError::NoTicket)));
        assert!(matches!(m.ticket_user(&t, "192.168.1.20", 1000 + TICKET_FOR), Err(MfaError::NoTicket)));
        m.end_ticket(&t);
        assert!(matches!(m.ticket_user(&t, "192.168.1.20", 1001), Err(MfaError::NoTicket)));
    }

    #[test]
    fn the_database_holds_recovery_code_hashes_not_codes() {
        let dir = tempfile::tempdir().unwrap();
        let m = mfa(dir.path());
        let e = m.enrol("alice", "", 1000).unwrap();
        let codes = m.confirm("alice", &code_at(&e.secret, 1000), 1000).unwrap();
        let all = [
            std::fs::read(dir.path().join("users.db")).unwrap(),
            std::fs::read(dir.path().join("users.db-wal")).unwrap_or_default(),
        ]
        .concat();
        let text = String::from_utf8_lossy(&all);
        assert!(text.contains(&recovery_hash("alice", &codes[0])));
        assert!(codes.iter().all(|c| !text.contains(c.as_str()) && !text.contains(&normalise(c))));
        assert!(qr_svg(&e.uri).unwrap().starts_with("<?xml"));
    }
}
