//! Issue 17 point 2, two-factor sign-in, over real HTTP against the real service and its
//! users database: enrolment, the sign-in's second step, codes good once, recovery codes, the
//! code throttle, the requirement for every admin, and the recovery console's reset.
//!
//! The test plays the authenticator app with its own RFC 6238 (HMAC-SHA-1 from RustCrypto,
//! checked against the RFC's vectors), not with the crate the box uses.

use hmac::{Hmac, KeyInit, Mac};
mod common;

use common::{error, json_of, start, Page};
use reqwest::StatusCode;
use serde_json::{json, Value};

// ---- the authenticator app ----------------------------------------------------------------------

fn base32(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut out, mut acc, mut bits) = (Vec::new(), 0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        acc = (acc << 5) | A.iter().position(|&a| a == c).expect("base32") as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// RFC 6238's TOTP of one 30 s step, 6 digits (RFC 4226's dynamic truncation).
fn code(secret: &[u8], step: u64) -> String {
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let o = (h[19] & 0xf) as usize;
    let v = u32::from_be_bytes([h[o] & 0x7f, h[o + 1], h[o + 2], h[o + 3]]) % 1_000_000;
    format!("{v:06}")
}

fn step_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 30
}

/// A phone with an authenticator app: each code it gives is for a step not used yet (the
/// current one, or the next, which the box accepts as clock skew), so the test never waits.
struct Phone {
    secret: Vec<u8>,
    last: Option<u64>,
}

impl Phone {
    fn new(base32_secret: &str) -> Phone {
        Phone { secret: base32(base32_secret), last: None }
    }

    fn next(&mut self) -> String {
        let now = step_now();
        let step = match self.last {
            Some(l) if l >= now => l + 1,
            _ => now,
        };
        assert!(step <= now + 1, "the test asked for more codes than the clock gives");
        self.last = Some(step);
        code(&self.secret, step)
    }

    fn used(&self) -> String {
        code(&self.secret, self.last.unwrap())
    }
}

#[test]
fn the_test_app_meets_the_rfc_6238_sha1_vectors() {
    // RFC 6238 appendix B (8 digits there; 6 are its last six).
    for (time, want) in [(59, "287082"), (1111111109, "081804"), (1234567890, "005924"), (2000000000, "279037")] {
        assert_eq!(code(b"12345678901234567890", time / 30), want);
    }
    assert_eq!(base32("GEZDGNBVGY3TQOJQ"), b"1234567890");
}

// ---- a browser ------------------------------------------------------------------------------------

struct Browser {
    c: reqwest::Client,
    csrf: String,
    base: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).build().unwrap()
}

/// The password step: a signed-in browser, or the ticket for the code step.
enum Step {
    In(Browser),
    Code { c: reqwest::Client, ticket: String },
}

impl Browser {
    async fn setup(p: &Page, user: &str, password: &str) -> Browser {
        let c = client();
        let (s, v) =
            json_of(c.post(format!("{}/api/v1/auth/setup", p.base)).json(&json!({"user": user, "password": password})))
                .await;
        assert_eq!(s, 201, "{v}");
        Browser { c, csrf: v["csrf_token"].as_str().unwrap().into(), base: p.base.clone() }
    }

    async fn password(p: &Page, user: &str, password: &str) -> Step {
        let c = client();
        let (s, v) =
            json_of(c.post(format!("{}/api/v1/auth/login", p.base)).json(&json!({"user": user, "password": password})))
                .await;
        assert_eq!(s, 200, "{v}");
        if v["mfa_required"] == true {
            assert!(v["csrf_token"].is_null(), "no session before the code: {v}");
            return Step::Code { c, ticket: v["mfa_ticket"].as_str().unwrap().into() };
        }
        Step::In(Browser { c, csrf: v["csrf_token"].as_str().unwrap().into(), base: p.base.clone() })
    }

    async fn login(p: &Page, user: &str, password: &str) -> Browser {
        match Browser::password(p, user, password).await {
            Step::In(b) => b,
            Step::Code { .. } => panic!("{user} was asked for a code"),
        }
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.c.get(format!("{}{path}", self.base))).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (StatusCode, Value) {
        json_of(self.c.request(method, format!("{}{path}", self.base)).header("X-CSRF-Token", &self.csrf).json(&body))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// Enrols and confirms with the phone's first code: the phone and the recovery codes.
    async fn enrol(&self) -> (Phone, Vec<String>) {
        let (s, e) = self.post("/api/v1/auth/mfa/enrol", json!({})).await;
        assert_eq!(s, 200, "{e}");
        let mut phone = Phone::new(e["secret"].as_str().unwrap());
        let (s, v) = self.post("/api/v1/auth/mfa/confirm", json!({"code": phone.next()})).await;
        assert_eq!(s, 200, "{v}");
        let codes = v["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
        (phone, codes)
    }

    async fn audit(&self) -> Vec<String> {
        let (_, log) = self.get("/api/v1/audit").await;
        log.as_array().unwrap().iter().map(|e| format!("{}: {}: {}", e["who"], e["action"], e["detail"])).collect()
    }
}

async fn second_step(p: &Page, c: &reqwest::Client, ticket: &str, code: &str) -> (StatusCode, Value) {
    json_of(c.post(format!("{}/api/v1/auth/login/mfa", p.base)).json(&json!({"mfa_ticket": ticket, "code": code})))
        .await
}

async fn signed_in_as(p: &Page, c: &reqwest::Client) -> Option<String> {
    let (_, v) = json_of(c.get(format!("{}/api/v1/auth/session", p.base))).await;
    v["user"].as_str().map(str::to_string)
}

#[tokio::test]
async fn enrol_then_sign_in_with_a_code_each_code_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let alice = Browser::setup(&p, "alice", "correct horse").await;
    let (_, st) = alice.get("/api/v1/auth/mfa").await;
    assert_eq!((st["active"].as_bool(), st["enrolling"].as_bool()), (Some(false), Some(false)), "{st}");

    // Enrolment: a secret, its otpauth URI and a QR code from the box; not on until confirmed.
    let (s, e) = alice.post("/api/v1/auth/mfa/enrol", json!({})).await;
    assert_eq!(s, 200, "{e}");
    let secret = e["secret"].as_str().unwrap();
    let uri = e["uri"].as_str().unwrap();
    assert!(uri.starts_with("otpauth://totp/MineBox:alice") && uri.contains(&format!("secret={secret}")), "{uri}");
    let qr = alice.c.get(format!("{}/api/v1/auth/mfa/qr", p.base)).send().await.unwrap();
    assert_eq!(qr.headers()["content-type"], "image/svg+xml");
    assert!(qr.text().await.unwrap().contains("<svg"));
    let mut phone = Phone::new(secret);
    assert!(matches!(Browser::password(&p, "alice", "correct horse").await, Step::In(_)), "not on yet");
    let (s, v) = alice.post("/api/v1/auth/mfa/confirm", json!({"code": "000000"})).await;
    assert!(s == 403 && error(&v).contains("wrong code"), "{s} {v}");
    let (s, v) = alice.post("/api/v1/auth/mfa/confirm", json!({"code": phone.next()})).await;
    assert_eq!(s, 200, "{v}");
    let codes: Vec<String> =
        v["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().into()).collect();
    assert_eq!(codes.len(), 10);
    assert_eq!(codes.iter().collect::<std::collections::HashSet<_>>().len(), 10);
    let (s, v) = alice.post("/api/v1/auth/mfa/enrol", json!({})).await;
    assert!(s == 409 && error(&v).contains("turn it off first"), "{s} {v}");

    // The password alone is no session now.
    let Step::Code { c, ticket } = Browser::password(&p, "alice", "correct horse").await else {
        panic!("no code asked")
    };
    assert_eq!(signed_in_as(&p, &c).await, None, "a ticket is not a session");
    let (s, v) = second_step(&p, &c, &ticket, &phone.used()).await;
    assert!(s == 401 && error(&v).contains("used already"), "the confirming code again: {s} {v}");
    let (s, v) = second_step(&p, &c, &ticket, "123456").await;
    assert!(s == 401 && error(&v).contains("wrong code"), "{s} {v}");
    let (s, v) = second_step(&p, &c, "not-a-ticket", "123456").await;
    assert!(s == 401 && error(&v).contains("sign in again"), "{s} {v}");
    let fresh = phone.next();
    let (s, v) = second_step(&p, &c, &ticket, &fresh).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(signed_in_as(&p, &c).await.as_deref(), Some("alice"));
    let (s, _) = second_step(&p, &c, &ticket, &fresh).await;
    assert_eq!(s, 401, "the ticket is spent");

    // A recovery code signs in once (typed in capitals, without dashes).
    let Step::Code { c, ticket } = Browser::password(&p, "alice", "correct horse").await else { panic!() };
    let typed = codes[0].replace('-', "").to_uppercase();
    assert_eq!(second_step(&p, &c, &ticket, &typed).await.0, 200);
    let Step::Code { c, ticket } = Browser::password(&p, "alice", "correct horse").await else { panic!() };
    assert_eq!(second_step(&p, &c, &ticket, &codes[0]).await.0, 401, "a recovery code is good once");
    let (_, st) = alice.get("/api/v1/auth/mfa").await;
    assert_eq!(st["recovery_codes_left"], 9);

    // Turning it off takes the password and a code.
    let off = |password: &str, code: &str| json!({"password": password, "code": code});
    let (s, v) = alice.post("/api/v1/auth/mfa/disable", off("wrong horse", &codes[1])).await;
    assert!(s == 403 && error(&v).contains("password is wrong"), "{s} {v}");
    let (s, v) = alice.post("/api/v1/auth/mfa/disable", off("correct horse", &codes[1])).await;
    assert_eq!(s, 200, "{v}");
    let alice = Browser::login(&p, "alice", "correct horse").await;
    let log = alice.audit().await.join("\n");
    for want in [
        "\"alice\": \"two-factor enrolled\"",
        "\"alice\": \"recovery code used\": \"signed in with a recovery code; 9 left\"",
        "\"alice\": \"two-factor disabled\"",
    ] {
        assert!(log.contains(want), "{want} missing from\n{log}");
    }
}

#[tokio::test]
async fn guessing_codes_is_throttled_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let alice = Browser::setup(&p, "alice", "correct horse").await;
    let (mut phone, _) = alice.enrol().await;
    let Step::Code { c, ticket } = Browser::password(&p, "alice", "correct horse").await else { panic!() };
    for guess in ["000000", "111111", "222222", "333333", "444444"] {
        assert_eq!(second_step(&p, &c, &ticket, guess).await.0, 401);
    }
    // The sixth try waits, even with the right code, and a new ticket does not help.
    let (s, v) = second_step(&p, &c, &ticket, &phone.next()).await;
    assert!(s == 429 && error(&v).contains("too many wrong codes") && error(&v).contains(" s"), "{s} {v}");
    let Step::Code { c, ticket } = Browser::password(&p, "alice", "correct horse").await else { panic!() };
    let (s, _) = second_step(&p, &c, &ticket, &phone.used()).await;
    assert_eq!(s, 429);
    // Signed-in code checks (confirming, turning off, new recovery codes) count as well.
    let (s, _) = alice.post("/api/v1/auth/mfa/recovery-codes", json!({"code": phone.used()})).await;
    assert_eq!(s, 429);
}

#[tokio::test]
async fn admins_can_be_required_to_enrol_and_the_console_resets_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let alice = Browser::setup(&p, "alice", "correct horse").await;
    for (name, role) in [("carol", "admin"), ("olga", "operator"), ("vic", "viewer")] {
        let (s, v) = alice.post("/api/v1/users", json!({"name": name, "role": role, "password": "long enough"})).await;
        assert_eq!(s, 201, "{v}");
    }
    let on = json!({"require_for_admins": true});
    for name in ["olga", "vic"] {
        let b = Browser::login(&p, name, "long enough").await;
        let (s, v) = b.send(reqwest::Method::PUT, "/api/v1/mfa/policy", on.clone()).await;
        assert!(s == 403 && error(&v).contains("needs admin"), "{name}: {s} {v}");
    }
    let (s, v) = alice.send(reqwest::Method::PUT, "/api/v1/mfa/policy", on.clone()).await;
    assert!(s == 409 && error(&v).contains("for yourself first"), "{s} {v}");
    let (mut phone, _) = alice.enrol().await;
    let (s, v) = alice.send(reqwest::Method::PUT, "/api/v1/mfa/policy", on.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = alice.post("/api/v1/auth/mfa/disable", json!({"password": "correct horse", "code": "000000"})).await;
    assert!(s == 409 && error(&v).contains("requires two-factor"), "{s} {v}");

    // Carol, an admin without it, gets nothing but its set-up; the operator is not asked.
    let carol = Browser::login(&p, "carol", "long enough").await;
    let (_, st) = carol.get("/api/v1/auth/session").await;
    assert_eq!(st["mfa_must_enrol"], true);
    for path in ["/api/v1/users", "/api/v1/overview"] {
        let (s, v) = carol.get(path).await;
        assert!(s == 403 && error(&v).contains("set yours up first"), "{path}: {s} {v}");
    }
    let (s, _) = carol.post("/api/v1/users", json!({"name": "eve", "role": "admin", "password": "long enough"})).await;
    assert_eq!(s, 403);
    assert_eq!(Browser::login(&p, "olga", "long enough").await.get("/api/v1/overview").await.0, 200);
    carol.enrol().await;
    assert_eq!(carol.get("/api/v1/users").await.0, 200);

    // An admin removes another user's second factor; the users list shows whose is on.
    let two_factor = |users: Value| -> Vec<(String, bool)> {
        users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| (u["name"].as_str().unwrap().into(), u["two_factor"] == true))
            .collect()
    };
    let olga = Browser::login(&p, "olga", "long enough").await;
    let (s, v) = olga.post("/api/v1/auth/mfa/enrol", json!({})).await;
    assert_eq!(s, 200, "{v}");
    let olga_of = |list: &[(String, bool)]| list.iter().find(|(n, _)| n == "olga").unwrap().1;
    assert!(!olga_of(&two_factor(alice.get("/api/v1/users").await.1)), "waiting for its first code is not on");
    olga.enrol().await;
    let listed = two_factor(alice.get("/api/v1/users").await.1);
    let on = |l: &[(String, bool)]| l.iter().filter(|(_, on)| *on).map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(on(&listed), ["alice", "carol", "olga"], "{listed:?}");
    assert_eq!(olga.send(reqwest::Method::DELETE, "/api/v1/users/olga/mfa", json!({})).await.0, 403);
    assert_eq!(alice.send(reqwest::Method::DELETE, "/api/v1/users/olga/mfa", json!({})).await.0, 200);
    assert_eq!(on(&two_factor(alice.get("/api/v1/users").await.1)), ["alice", "carol"]);
    let (s, v) = alice.send(reqwest::Method::DELETE, "/api/v1/users/olga/mfa", json!({})).await;
    assert!(s == 409 && error(&v).contains("olga"), "removing it twice: {s} {v}");
    assert!(matches!(Browser::password(&p, "olga", "long enough").await, Step::In(_)));

    // Carol lost her phone: the recovery console's reset, then the service's restart.
    drop(p);
    let marker = dir.path().join("secrets").join(minebox_status::user_db::RESET_MFA_MARKER);
    std::fs::write(&marker, "carol\nnobody\n").unwrap();
    let p = start(dir.path(), None).await;
    assert!(!marker.exists(), "the reset runs once");
    let carol = Browser::login(&p, "carol", "long enough").await;
    let (_, st) = carol.get("/api/v1/auth/session").await;
    assert_eq!(st["mfa_must_enrol"], true, "still required of her: she enrols again");
    let Step::Code { c, ticket } = Browser::password(&p, "alice", "correct horse").await else { panic!() };
    assert_eq!(second_step(&p, &c, &ticket, &phone.next()).await.0, 200, "alice's is untouched");
    let alice = Browser { c, csrf: String::new(), base: p.base.clone() };
    let log = alice.audit().await.join("\n");
    for want in [
        "\"recovery console\": \"two-factor reset\": \"carol: two-factor sign-in and recovery codes removed",
        "\"recovery console\": \"two-factor reset\": \"\\\"nobody\\\": there is no such user",
        "\"alice\": \"two-factor removed\": \"olga's, by an admin\"",
        "\"alice\": \"two-factor requirement switched\": \"on:",
        "\"carol\": \"two-factor enrolled\"",
    ] {
        assert!(log.contains(want), "{want} missing from\n{log}");
    }
}
