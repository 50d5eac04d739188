//! Signed-in sessions, their CSRF tokens, and the login throttle.
//!
//! Sessions are kept in the status page's database ([`crate::user_db`]), so a restart of
//! the page signs nobody out, and each one can be listed (with the device's address and
//! browser) and revoked. The cookie's token is kept only as its SHA-256: someone who reads
//! the database cannot sign in with what they read. A session ends after 12 h without a
//! request or 7 days after sign-in, whichever comes first. "Last seen" is written at most
//! once a minute per session: a page open all day costs the SD card a small write a minute,
//! not one per request.
//!
//! The token travels in an HttpOnly, SameSite=Strict cookie; every state-changing request
//! must also carry the session's CSRF token in `X-CSRF-Token`, which a page from another
//! origin cannot read.

use crate::accounts::Role;
use crate::user_db::{DbError, UserDb};
use rand::RngCore;
use rusqlite::OptionalExtension;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const COOKIE: &str = "minebox_session";

/// Sessions end after this long without a request (seconds).
pub const IDLE: i64 = 12 * 3600;
/// And this long after sign-in, however busy (seconds); also the cookie's lifetime.
pub const ABSOLUTE: i64 = 7 * 24 * 3600;
/// "Last seen" is written when it is at least this old (seconds): SD wear.
pub const TOUCH_EVERY: i64 = 60;
/// A bound on the table: the longest-idle session goes when a new one would exceed it.
const MAX_SESSIONS: i64 = 256;
/// Browser names are kept to this many characters (they are shown, not parsed).
const MAX_AGENT: usize = 200;

/// A live session, as the guard hands it to the handlers.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: i64,
    pub user: String,
    pub role: Role,
    pub csrf: String,
}

/// A session as the page lists it (never its token).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    pub id: i64,
    pub user: String,
    /// Unix seconds.
    pub created: i64,
    pub last_seen: i64,
    /// The address it signed in from.
    pub address: String,
    pub user_agent: String,
    /// The session this request came with.
    pub current: bool,
}

pub struct Sessions {
    db: Arc<UserDb>,
}

fn token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

fn digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Sessions {
    pub fn new(db: Arc<UserDb>) -> Sessions {
        Sessions { db }
    }

    /// A new session for `user`: (cookie token, CSRF token).
    pub fn create(&self, user: &str, address: &str, user_agent: &str, now: i64) -> Result<(String, String), DbError> {
        let (t, csrf) = (token(), token());
        let agent: String = user_agent.chars().take(MAX_AGENT).collect();
        let mut conn = self.db.lock();
        let tx = conn.transaction().map_err(|e| self.db.damaged(e))?;
        tx.execute("DELETE FROM sessions WHERE last_seen <= ?1 OR created <= ?2", (now - IDLE, now - ABSOLUTE))
            .map_err(|e| self.db.damaged(e))?;
        tx.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ORDER BY last_seen DESC LIMIT -1 OFFSET ?1)",
            [MAX_SESSIONS - 1],
        )
        .map_err(|e| self.db.damaged(e))?;
        tx.execute(
            "INSERT INTO sessions (token_hash, user, csrf, created, last_seen, address, user_agent) \
             VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
            (digest(&t), user, &csrf, now, address, agent),
        )
        .map_err(|e| self.db.damaged(e))?;
        tx.commit().map_err(|e| self.db.damaged(e))?;
        Ok((t, csrf))
    }

    /// The live session for a cookie token, its user enabled; "last seen" refreshed when
    /// it is a minute old. An expired one is removed.
    pub fn get(&self, token: &str, now: i64) -> Result<Option<Session>, DbError> {
        let conn = self.db.lock();
        let found = conn
            .query_row(
                "SELECT s.id, s.user, u.role, s.csrf, s.created, s.last_seen FROM sessions s \
                 JOIN users u ON u.name = s.user WHERE s.token_hash = ?1 AND u.disabled = 0",
                [digest(token)],
                |r| {
                    let role: String = r.get(2)?;
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        role,
                        r.get(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.db.damaged(e))?;
        let Some((id, user, role, csrf, created, last_seen)) = found else { return Ok(None) };
        if now - last_seen >= IDLE || now - created >= ABSOLUTE {
            conn.execute("DELETE FROM sessions WHERE id = ?1", [id]).map_err(|e| self.db.damaged(e))?;
            return Ok(None);
        }
        if now - last_seen >= TOUCH_EVERY {
            conn.execute("UPDATE sessions SET last_seen = ?2 WHERE id = ?1", (id, now))
                .map_err(|e| self.db.damaged(e))?;
        }
        let role = match role.as_str() {
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            _ => Role::Viewer,
        };
        Ok(Some(Session { id, user, role, csrf }))
    }

    /// Signs a session out by its cookie token.
    pub fn remove(&self, token: &str) -> Result<(), DbError> {
        self.db
            .lock()
            .execute("DELETE FROM sessions WHERE token_hash = ?1", [digest(token)])
            .map_err(|e| self.db.damaged(e))?;
        Ok(())
    }

    /// Revokes session `id`; with `owner`, only if it is theirs. Whether one went.
    pub fn revoke(&self, id: i64, owner: Option<&str>) -> Result<bool, DbError> {
        let n = self
            .db
            .lock()
            .execute("DELETE FROM sessions WHERE id = ?1 AND (?2 IS NULL OR user = ?2)", (id, owner))
            .map_err(|e| self.db.damaged(e))?;
        Ok(n > 0)
    }

    /// Signs out every session of `user` but `keep` (the one that changed the password).
    pub fn remove_user_except(&self, user: &str, keep: Option<i64>) -> Result<usize, DbError> {
        self.db
            .lock()
            .execute("DELETE FROM sessions WHERE user = ?1 AND id IS NOT ?2", (user, keep))
            .map_err(|e| self.db.damaged(e))
    }

    /// The live sessions of `user` (every user's with `None`), most recently seen first.
    pub fn list(&self, user: Option<&str>, current: i64, now: i64) -> Result<Vec<SessionInfo>, DbError> {
        let conn = self.db.lock();
        let mut st = conn
            .prepare(
                "SELECT id, user, created, last_seen, address, user_agent FROM sessions \
                 WHERE (?1 IS NULL OR user = ?1) AND last_seen > ?2 AND created > ?3 ORDER BY last_seen DESC, id DESC",
            )
            .map_err(|e| self.db.damaged(e))?;
        let rows = st
            .query_map((user, now - IDLE, now - ABSOLUTE), |r| {
                Ok(SessionInfo {
                    id: r.get(0)?,
                    user: r.get(1)?,
                    created: r.get(2)?,
                    last_seen: r.get(3)?,
                    address: r.get(4)?,
                    user_agent: r.get(5)?,
                    current: r.get::<_, i64>(0)? == current,
                })
            })
            .map_err(|e| self.db.damaged(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.db.damaged(e))
    }

    /// Removes the sessions past either expiry (the retention task).
    pub fn purge(&self, now: i64) -> Result<usize, DbError> {
        self.db
            .lock()
            .execute("DELETE FROM sessions WHERE last_seen <= ?1 OR created <= ?2", (now - IDLE, now - ABSOLUTE))
            .map_err(|e| self.db.damaged(e))
    }
}

/// Login attempts per client address: five wrong passwords, then a lockout that doubles
/// with each further miss (30 s up to 15 min). A right password clears the record.
///
/// The lockout check and the attempt are one step ([`LoginGate::reserve`]): an address has
/// at most one password being checked at a time, so concurrent guesses cannot all slip in
/// before the first miss is counted. Hashing runs in a small pool shared by all addresses;
/// since each address holds at most one place in it (and the waiting line is first come,
/// first served), a flood from one address cannot delay anyone else's sign-in.
pub struct LoginGate {
    clients: Arc<Mutex<HashMap<IpAddr, Attempts>>>,
    /// Password hashes at a time: argon2 takes 19 MiB and a core for ~60 ms on a Pi 5.
    pool: Arc<tokio::sync::Semaphore>,
    /// Sign-ins waiting for a place in the pool (bounded: the rest are told to retry).
    waiting: AtomicUsize,
    /// The pool's threads, one per place.
    threads: crate::hashing::HashThreads,
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    locked_until: Option<Instant>,
    last: Instant,
    /// A password from this address is being checked.
    checking: bool,
}

/// Why a sign-in was not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many wrong passwords from this address: wait this long.
    Locked(Duration),
    /// A password from this address is being checked now.
    Busy,
    /// The box is checking as many passwords as it can; retry in a moment.
    Full,
}

impl Refusal {
    pub fn retry_after(self) -> u64 {
        match self {
            Refusal::Locked(wait) => wait.as_secs().max(1),
            Refusal::Busy => 1,
            Refusal::Full => 2,
        }
    }

    pub fn message(self) -> String {
        match self {
            Refusal::Locked(_) => format!("too many wrong passwords; try again in {} s", self.retry_after()),
            Refusal::Busy => "a password from your address is being checked; wait for its answer".into(),
            Refusal::Full => "the box is checking other sign-ins; try again in a few seconds".into(),
        }
    }
}

/// A reserved attempt: settle it with the outcome. Dropped unsettled (the client hung up,
/// the task failed) it counts as a wrong password, so hanging up cannot buy free guesses.
pub struct Attempt {
    clients: Arc<Mutex<HashMap<IpAddr, Attempts>>>,
    ip: IpAddr,
    settled: bool,
}

impl Attempt {
    pub fn succeeded(mut self) {
        self.settled = true;
        self.clients.lock().expect("login gate").remove(&self.ip);
    }

    pub fn failed(mut self) {
        self.settled = true;
        record_failure(&self.clients, self.ip);
    }

    /// Nothing was checked (the box could not): neither a miss nor a success.
    pub fn withdrawn(mut self) {
        self.settled = true;
        if let Some(a) = self.clients.lock().expect("login gate").get_mut(&self.ip) {
            a.checking = false;
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.settled {
            record_failure(&self.clients, self.ip);
        }
    }
}

fn record_failure(clients: &Mutex<HashMap<IpAddr, Attempts>>, ip: IpAddr) {
    let mut map = clients.lock().expect("login gate");
    let now = Instant::now();
    let a = map.entry(ip).or_insert(Attempts { failures: 0, locked_until: None, last: now, checking: false });
    a.checking = false;
    a.failures += 1;
    a.last = now;
    if a.failures >= FREE_ATTEMPTS {
        let doublings = (a.failures - FREE_ATTEMPTS).min(5);
        let wait = Duration::from_secs(30 << doublings).min(Duration::from_secs(900));
        a.locked_until = Some(now + wait);
    }
}

/// A place in the hashing pool.
pub type HashSlot = tokio::sync::OwnedSemaphorePermit;

pub const FREE_ATTEMPTS: u32 = 5;
const MAX_CLIENTS: usize = 1024;
/// Two hashes at once: 38 MiB and two of the Pi's four cores at most, the rest for mining.
const POOL: usize = 2;
const MAX_WAITING: usize = 64;

impl Default for LoginGate {
    fn default() -> LoginGate {
        LoginGate::new()
    }
}

impl LoginGate {
    pub fn new() -> LoginGate {
        LoginGate {
            clients: Arc::default(),
            pool: Arc::new(tokio::sync::Semaphore::new(POOL)),
            waiting: AtomicUsize::new(0),
            threads: crate::hashing::HashThreads::start(POOL),
        }
    }

    /// `Err(wait)` while the client is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let map = self.clients.lock().expect("login gate");
        match map.get(&ip).and_then(|a| a.locked_until) {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    /// Checks the lockout and reserves this address's one attempt, atomically.
    pub fn reserve(&self, ip: IpAddr) -> Result<Attempt, Refusal> {
        let mut map = self.clients.lock().expect("login gate");
        let now = Instant::now();
        if map.len() >= MAX_CLIENTS && !map.contains_key(&ip) {
            map.retain(|_, a| a.checking || now.duration_since(a.last) < Duration::from_secs(3600));
            if map.len() >= MAX_CLIENTS {
                // Never forget an address with a check under way: it could start a second one.
                let oldest = map.iter().filter(|(_, a)| !a.checking).min_by_key(|(_, a)| a.last).map(|(k, _)| *k);
                match oldest {
                    Some(k) => {
                        map.remove(&k);
                    }
                    None => return Err(Refusal::Full),
                }
            }
        }
        let a = map.entry(ip).or_insert(Attempts { failures: 0, locked_until: None, last: now, checking: false });
        if let Some(until) = a.locked_until.filter(|u| *u > now) {
            return Err(Refusal::Locked(until - now));
        }
        if a.checking {
            return Err(Refusal::Busy);
        }
        a.checking = true;
        a.last = now;
        Ok(Attempt { clients: self.clients.clone(), ip, settled: false })
    }

    /// A place in the hashing pool, first come first served; refused when the line is long.
    pub async fn slot(&self) -> Result<HashSlot, Refusal> {
        // Leaves the line however the wait ends, a client hanging up included.
        struct InLine<'a>(&'a AtomicUsize);
        impl Drop for InLine<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _in_line = InLine(&self.waiting);
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            return Err(Refusal::Full);
        }
        Ok(self.pool.clone().acquire_owned().await.expect("hash pool is never closed"))
    }

    /// Runs `f` (password hashing) on the pool's threads. The place goes with the job: a
    /// client hanging up mid-check does not free it before the hash is done.
    pub async fn hash<T: Send + 'static>(
        &self,
        slot: HashSlot,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, crate::hashing::Stopped> {
        self.threads
            .run(move || {
                let _slot = slot;
                f()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Accounts;

    fn sessions(dir: &std::path::Path) -> (Sessions, Arc<UserDb>) {
        let db = Arc::new(UserDb::open(&dir.join("users.db"), &dir.join("accounts"), 0).unwrap());
        let a = Accounts::new(db.clone());
        a.set_first_admin("alice", "correct horse", 0).unwrap();
        a.create("vic", Role::Viewer, "just looking", 0).unwrap();
        (Sessions::new(db.clone()), db)
    }

    #[test]
    fn sessions_outlive_the_process_and_are_revocable() {
        let dir = tempfile::tempdir().unwrap();
        let (s, db) = sessions(dir.path());
        let (a, csrf_a) = s.create("alice", "192.168.1.20", "Firefox", 100).unwrap();
        let (b, _) = s.create("vic", "192.168.1.21", "Phone", 100).unwrap();
        assert_ne!(a, b);
        drop((s, db));
        // A restart: a new connection to the same file knows both.
        let db = Arc::new(UserDb::open(&dir.path().join("users.db"), &dir.path().join("accounts"), 200).unwrap());
        let s = Sessions::new(db.clone());
        let alice = s.get(&a, 200).unwrap().unwrap();
        assert_eq!((alice.user.as_str(), alice.role, alice.csrf.as_str()), ("alice", Role::Admin, csrf_a.as_str()));
        let vic = s.get(&b, 200).unwrap().unwrap();
        let listed = s.list(None, alice.id, 200).unwrap();
        assert_eq!(listed.len(), 2);
        assert!(listed.iter().any(|l| l.user == "vic" && l.address == "192.168.1.21" && l.user_agent == "Phone"));
        assert!(listed.iter().any(|l| l.user == "alice" && l.current));
        assert!(!s.revoke(alice.id, Some("vic")).unwrap(), "a viewer cannot revoke someone else's");
        assert!(s.revoke(vic.id, Some("vic")).unwrap());
        assert!(s.get(&b, 201).unwrap().is_none(), "a revoked token is refused");
        assert!(s.get("not a token", 201).unwrap().is_none());
        // The database keeps the token's hash, not the token.
        let stored: Option<i64> = db.optional("SELECT count(*) FROM sessions WHERE token_hash = ?1", [&a]).unwrap();
        assert_eq!(stored, Some(0));
    }

    #[test]
    fn idle_and_absolute_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _db) = sessions(dir.path());
        let (t, _) = s.create("alice", "192.168.1.20", "", 0).unwrap();
        assert!(s.get(&t, IDLE - 1).unwrap().is_some());
        // Used every few hours it lives past the idle limit, but not past the absolute one.
        let mut now = IDLE - 1;
        while now + IDLE / 2 < ABSOLUTE {
            now += IDLE / 2;
            assert!(s.get(&t, now).unwrap().is_some(), "alive at {now}");
        }
        assert!(s.get(&t, ABSOLUTE).unwrap().is_none(), "a week after sign-in it ends");
        let (idle, _) = s.create("alice", "192.168.1.20", "", 0).unwrap();
        assert!(s.get(&idle, IDLE).unwrap().is_none(), "12 h untouched it ends");
    }

    /// The retention task removes sessions nobody presents again (closed browsers), past
    /// either expiry, and keeps the live ones.
    #[test]
    fn the_purge_removes_idle_and_too_old_sessions_nobody_uses_again() {
        let dir = tempfile::tempdir().unwrap();
        let (s, db) = sessions(dir.path());
        let now = ABSOLUTE + 10;
        let (old, _) = s.create("alice", "a", "", 0).unwrap();
        let mut at = 0;
        while at + IDLE / 2 < ABSOLUTE {
            at += IDLE / 2;
            assert!(s.get(&old, at).unwrap().is_some(), "used every 6 h, alive at {at}");
        }
        s.create("alice", "a", "", now - IDLE).unwrap();
        let (live, _) = s.create("vic", "b", "", now - 100).unwrap();
        let count = || db.optional::<i64>("SELECT count(*) FROM sessions", []).unwrap().unwrap();
        assert_eq!(count(), 3);
        assert_eq!(s.purge(now).unwrap(), 2, "the week-old one and the one idle for 12 h go");
        assert_eq!(count(), 1);
        assert!(s.get(&live, now).unwrap().is_some());
    }

    #[test]
    fn last_seen_is_written_at_most_once_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let (s, db) = sessions(dir.path());
        let (t, _) = s.create("alice", "192.168.1.20", "", 1000).unwrap();
        let changes = || db.optional::<i64>("SELECT total_changes()", []).unwrap().unwrap();
        let before = changes();
        for now in 1001..1000 + TOUCH_EVERY {
            s.get(&t, now).unwrap().unwrap();
        }
        assert_eq!(changes(), before, "no write within the minute");
        s.get(&t, 1000 + TOUCH_EVERY).unwrap().unwrap();
        assert_eq!(changes(), before + 1);
    }

    #[test]
    fn a_disabled_users_sessions_stop_and_the_table_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (s, db) = sessions(dir.path());
        let (t, _) = s.create("vic", "192.168.1.21", "", 0).unwrap();
        db.lock().execute("UPDATE users SET disabled = 1 WHERE name = 'vic'", []).unwrap();
        assert!(s.get(&t, 1).unwrap().is_none());
        let (first, _) = s.create("alice", "a", "", 1).unwrap();
        for i in 0..MAX_SESSIONS {
            s.create("alice", "a", "", 2 + i).unwrap();
        }
        assert!(s.get(&first, 1000).unwrap().is_none(), "the longest-idle session made room");
        assert_eq!(db.optional::<i64>("SELECT count(*) FROM sessions", []).unwrap(), Some(MAX_SESSIONS));
    }

    #[test]
    fn five_misses_lock_a_client_out_and_success_clears() {
        let g = LoginGate::new();
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        let other: IpAddr = "192.168.1.21".parse().unwrap();
        for _ in 0..FREE_ATTEMPTS - 1 {
            g.reserve(ip).unwrap().failed();
            assert!(g.check(ip).is_ok());
        }
        g.reserve(ip).unwrap().failed();
        let wait = g.check(ip).unwrap_err();
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30));
        assert!(matches!(g.reserve(ip), Err(Refusal::Locked(_))));
        assert!(g.check(other).is_ok(), "one client's misses do not lock out another");
        g.clients.lock().unwrap().get_mut(&ip).unwrap().locked_until = None;
        g.reserve(ip).unwrap().failed();
        assert!(g.check(ip).unwrap_err() > Duration::from_secs(30), "lockout grows");
        g.clients.lock().unwrap().get_mut(&ip).unwrap().locked_until = None;
        g.reserve(ip).unwrap().succeeded();
        assert!(g.check(ip).is_ok());
    }

    #[test]
    fn one_check_at_a_time_per_address_and_hanging_up_counts() {
        let g = LoginGate::new();
        let ip: IpAddr = "192.168.1.20".parse().unwrap();
        let first = g.reserve(ip).unwrap();
        assert_eq!(g.reserve(ip).err(), Some(Refusal::Busy));
        assert!(g.reserve("192.168.1.21".parse().unwrap()).is_ok(), "other addresses are not held up");
        drop(first);
        assert_eq!(g.clients.lock().unwrap()[&ip].failures, 1, "an attempt dropped unsettled is a miss");
        g.reserve(ip).unwrap().withdrawn();
        assert_eq!(g.clients.lock().unwrap()[&ip].failures, 1);
    }

    #[tokio::test]
    async fn the_waiting_line_is_bounded_and_hanging_up_leaves_it() {
        let g = LoginGate::new();
        let held: Vec<_> = futures::future::join_all((0..POOL).map(|_| g.slot())).await;
        // Waiters that give up (their clients hung up) must not keep their places.
        for _ in 0..MAX_WAITING * 2 {
            let wait = g.slot();
            assert!(tokio::time::timeout(std::time::Duration::from_millis(1), wait).await.is_err());
        }
        assert_eq!(g.waiting.load(Ordering::SeqCst), 0);
        drop(held);
        assert!(g.slot().await.is_ok());
    }
}
