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
use std::sync::Mutex;
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
}

/// Login attempts per client address: five wrong passwords, then a lockout that doubles
/// with each further miss (30 s up to 15 min). A right password clears the record.
pub struct LoginGate {
    clients: Mutex<HashMap<IpAddr, Attempts>>,
    /// One password hash at a time: argon2 is deliberately expensive.
    pub hashing: tokio::sync::Semaphore,
}

#[derive(Debug, Clone, Copy)]
struct Attempts {
    failures: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

const FREE_ATTEMPTS: u32 = 5;
const MAX_CLIENTS: usize = 1024;

impl Default for LoginGate {
    fn default() -> LoginGate {
        LoginGate::new()
    }
}

impl LoginGate {
    pub fn new() -> LoginGate {
        LoginGate { clients: Mutex::default(), hashing: tokio::sync::Semaphore::new(1) }
    }

    /// `Err(wait)` while the client is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let map = self.clients.lock().expect("login gate");
        match map.get(&ip).and_then(|a| a.locked_until) {
            Some(until) if until > Instant::now() => Err(until - Instant::now()),
            _ => Ok(()),
        }
    }

    pub fn failed(&self, ip: IpAddr) {
        let mut map = self.clients.lock().expect("login gate");
        let now = Instant::now();
        if map.len() >= MAX_CLIENTS && !map.contains_key(&ip) {
            map.retain(|_, a| now.duration_since(a.last) < Duration::from_secs(3600));
            if map.len() >= MAX_CLIENTS {
                if let Some(oldest) = map.iter().min_by_key(|(_, a)| a.last).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        let a = map.entry(ip).or_insert(Attempts { failures: 0, locked_until: None, last: now });
        a.failures += 1;
        a.last = now;
        if a.failures >= FREE_ATTEMPTS {
            let doublings = (a.failures - FREE_ATTEMPTS).min(5);
            let wait = Duration::from_secs(30 << doublings).min(Duration::from_secs(900));
            a.locked_until = Some(now + wait);
        }
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.clients.lock().expect("login gate").remove(&ip);
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
            g.failed(ip);
            assert!(g.check(ip).is_ok());
        }
        g.failed(ip);
        let wait = g.check(ip).unwrap_err();
        assert!(wait > Duration::from_secs(20) && wait <= Duration::from_secs(30));
        assert!(g.check(other).is_ok(), "one client's misses do not lock out another");
        g.failed(ip);
        assert!(g.check(ip).unwrap_err() > Duration::from_secs(30), "lockout grows");
        g.succeeded(ip);
        assert!(g.check(ip).is_ok());
    }
}
