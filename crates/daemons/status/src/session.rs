//! Signed-in sessions, their CSRF tokens, and the login throttle.
//!
//! Sessions live in memory only: a restart signs everyone out, which costs a login and
//! saves the SD card a write per visit. The session token travels in an HttpOnly,
//! SameSite=Strict cookie; every state-changing request must also carry the session's
//! CSRF token in `X-CSRF-Token`, which a page from another origin cannot read.

use crate::accounts::Role;
use rand::RngCore;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const COOKIE: &str = "minebox_session";

/// Sessions end after this long without a request.
const IDLE: Duration = Duration::from_secs(12 * 3600);
/// A bound on memory: the oldest session goes when a new one would exceed it.
const MAX_SESSIONS: usize = 256;

#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    pub csrf: String,
    last_seen: Instant,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

fn token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

impl Sessions {
    /// A new session: (cookie token, CSRF token).
    pub fn create(&self, role: Role) -> (String, String) {
        let mut map = self.map.lock().expect("sessions");
        let now = Instant::now();
        map.retain(|_, s| now.duration_since(s.last_seen) < IDLE);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        let (t, csrf) = (token(), token());
        map.insert(t.clone(), Session { role, csrf: csrf.clone(), last_seen: now });
        (t, csrf)
    }

    /// The live session for a cookie token, refreshed.
    pub fn get(&self, token: &str) -> Option<Session> {
        let mut map = self.map.lock().expect("sessions");
        let s = map.get_mut(token)?;
        let now = Instant::now();
        if now.duration_since(s.last_seen) >= IDLE {
            map.remove(token);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    pub fn remove(&self, token: &str) {
        self.map.lock().expect("sessions").remove(token);
    }

    /// Signs out every session of a role (its password changed or was removed).
    pub fn remove_role(&self, role: Role) {
        self.map.lock().expect("sessions").retain(|_, s| s.role != role);
    }

    /// Signs out every session of a role but `keep` (the one that changed the password).
    pub fn remove_role_except(&self, role: Role, keep: Option<&str>) {
        self.map.lock().expect("sessions").retain(|t, s| s.role != role || Some(t.as_str()) == keep);
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

    #[test]
    fn sessions_are_distinct_and_removable() {
        let s = Sessions::default();
        let (a, csrf_a) = s.create(Role::Admin);
        let (b, _) = s.create(Role::Viewer);
        assert_ne!(a, b);
        assert_eq!(s.get(&a).unwrap().csrf, csrf_a);
        assert_eq!(s.get(&b).unwrap().role, Role::Viewer);
        s.remove_role(Role::Viewer);
        assert!(s.get(&b).is_none());
        s.remove(&a);
        assert!(s.get(&a).is_none());
        assert!(s.get("not a token").is_none());
    }

    #[test]
    fn session_count_is_bounded() {
        let s = Sessions::default();
        let first = s.create(Role::Viewer).0;
        for _ in 0..MAX_SESSIONS {
            s.create(Role::Viewer);
        }
        assert!(s.get(&first).is_none(), "the oldest session made room");
        assert_eq!(s.map.lock().unwrap().len(), MAX_SESSIONS);
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
