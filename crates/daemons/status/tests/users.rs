//! Issue 17, points 1 and 3, over real HTTP against the real users database (a SQLite file
//! in the test's directory): named users with admin, operator and viewer roles, sessions
//! that survive a restart of the page and can be revoked, the audit log, the migration
//! of today's two passwords, and the recovery console's reset.

mod common;

use common::{error, json_of, start, Page, ADDR};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A signed-in browser: its cookie jar and the session's CSRF token.
struct Browser {
    c: reqwest::Client,
    csrf: String,
    base: String,
}

fn client(agent: &str) -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).user_agent(agent).build().unwrap()
}

impl Browser {
    async fn setup(p: &Page, user: &str, password: &str) -> Browser {
        let c = client("Firefox on the owner's laptop");
        let (s, v) =
            json_of(c.post(format!("{}/api/v1/auth/setup", p.base)).json(&json!({"user": user, "password": password})))
                .await;
        assert_eq!(s, 201, "{v}");
        Browser { c, csrf: v["csrf_token"].as_str().unwrap().into(), base: p.base.clone() }
    }

    async fn login(p: &Page, user: &str, password: &str, agent: &str) -> Result<Browser, (StatusCode, Value)> {
        let c = client(agent);
        let (s, v) =
            json_of(c.post(format!("{}/api/v1/auth/login", p.base)).json(&json!({"user": user, "password": password})))
                .await;
        if s != 200 {
            return Err((s, v));
        }
        Ok(Browser { c, csrf: v["csrf_token"].as_str().unwrap().into(), base: p.base.clone() })
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        json_of(self.c.get(format!("{}{path}", self.base))).await
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut r = self.c.request(method, format!("{}{path}", self.base)).header("X-CSRF-Token", &self.csrf);
        if let Some(b) = body {
            r = r.json(&b);
        }
        json_of(r).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }
}

#[tokio::test]
async fn each_role_is_held_to_what_it_may_do() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let admin = Browser::setup(&p, "alice", "correct horse").await;
    let (s, v) = admin.get("/api/v1/auth/session").await;
    assert_eq!((s, v["user"].as_str(), v["role"].as_str()), (StatusCode::OK, Some("alice"), Some("admin")));
    for (name, role) in [("olga", "operator"), ("vic", "viewer")] {
        let (s, v) = admin.post("/api/v1/users", json!({"name": name, "role": role, "password": "long enough"})).await;
        assert_eq!(s, 201, "{v}");
    }
    // Bad input to the users API is refused with what to do.
    let (s, v) =
        admin.post("/api/v1/users", json!({"name": "Bob Smith", "role": "viewer", "password": "long enough"})).await;
    assert!(s == 422 && error(&v).contains("lowercase"), "{s} {v}");
    let (s, v) = admin.post("/api/v1/users", json!({"name": "vic", "role": "viewer", "password": "long enough"})).await;
    assert!(s == 409 && error(&v).contains("exists"), "{s} {v}");
    let (s, _) = admin.post("/api/v1/users", json!({"name": "bob", "role": "root", "password": "long enough"})).await;
    assert_eq!(s, 422, "no such role");

    let operator = Browser::login(&p, "olga", "long enough", "Chrome").await.unwrap();
    let viewer = Browser::login(&p, "vic", "long enough", "Phone").await.unwrap();

    // Admin endpoints: a viewer and an operator are refused, and told why.
    for b in [&operator, &viewer] {
        let (s, v) = b.get("/api/v1/users").await;
        assert!(s == 403 && error(&v).contains("needs admin"), "{s} {v}");
        let (s, _) = b.get("/api/v1/audit").await;
        assert_eq!(s, 403);
        let (s, _) = b.post("/api/v1/users", json!({"name": "eve", "role": "admin", "password": "long enough"})).await;
        assert_eq!(s, 403);
        let (s, _) = b.send(reqwest::Method::PATCH, "/api/v1/users/alice", Some(json!({"disabled": true}))).await;
        assert_eq!(s, 403);
        let (s, _) = b.send(reqwest::Method::DELETE, "/api/v1/users/alice", None).await;
        assert_eq!(s, 403);
        let (s, _) = b.post("/api/v1/cloud/link", json!({})).await;
        assert_eq!(s, 403);
    }
    // An operator runs the box: a node action reaches the supervisor (down in this test: 502,
    // not 403); the viewer is refused before that.
    let (s, v) = operator.post("/api/v1/nodes/btc/stop", json!({})).await;
    assert!(s == 502 && error(&v).contains("supervisor"), "{s} {v}");
    let (s, v) = viewer.post("/api/v1/nodes/btc/stop", json!({})).await;
    assert!(s == 403 && error(&v).contains("needs operator"), "{s} {v}");
    // Settings: notifications are the operator's, coin settings (who is paid) are not.
    let (s, v) = operator
        .send(reqwest::Method::PUT, "/api/v1/config", Some(json!({"notify": {"ntfy": "https://ntfy.sh/box"}})))
        .await;
    assert_eq!(s, 200, "{v}");
    let payout = json!({"coins": {"btc": {"payout_address": "bcrt1q6rhpng9evdsfnn833a4f4vej0asu6dk5srld6x"}}});
    let (s, v) = operator.send(reqwest::Method::PUT, "/api/v1/config", Some(payout.clone())).await;
    assert!(s == 403 && error(&v).contains("payout address"), "{s} {v}");
    let text = std::fs::read_to_string(dir.path().join("minebox.toml")).unwrap();
    assert!(text.contains(ADDR), "the payout address is untouched: {text}");
    let (s, v) = viewer.send(reqwest::Method::PUT, "/api/v1/config", Some(json!({"notify": {"ntfy": ""}}))).await;
    assert_eq!(s, 403, "{v}");

    // A role change applies at the next request, without signing in again.
    let (s, v) = admin.send(reqwest::Method::PATCH, "/api/v1/users/vic", Some(json!({"role": "operator"}))).await;
    assert_eq!((s, v["role"].as_str()), (StatusCode::OK, Some("operator")), "{v}");
    assert_eq!(viewer.get("/api/v1/overview").await.0, 401, "a changed role signs the user's sessions out");
    let vic = Browser::login(&p, "vic", "long enough", "Phone").await.unwrap();
    assert_eq!(vic.post("/api/v1/nodes/btc/stop", json!({})).await.0, 502);

    // The last admin can be neither demoted, disabled nor removed.
    let (s, v) = admin.send(reqwest::Method::PATCH, "/api/v1/users/alice", Some(json!({"role": "viewer"}))).await;
    assert!(s == 409 && error(&v).contains("last admin"), "{s} {v}");
    let (s, _) = admin.send(reqwest::Method::DELETE, "/api/v1/users/alice", None).await;
    assert_eq!(s, 409);

    // Disabled: the sessions stop at once and sign-in is refused; enabled again, it works.
    let (s, _) = admin.send(reqwest::Method::PATCH, "/api/v1/users/olga", Some(json!({"disabled": true}))).await;
    assert_eq!(s, 200);
    assert_eq!(operator.get("/api/v1/overview").await.0, 401);
    let (s, v) = Browser::login(&p, "olga", "long enough", "Chrome").await.err().unwrap();
    assert_eq!(s, 401, "{v}");
    admin.send(reqwest::Method::PATCH, "/api/v1/users/olga", Some(json!({"disabled": false}))).await;
    assert!(Browser::login(&p, "olga", "long enough", "Chrome").await.is_ok());
    // Removed: gone, and their name is free.
    let (s, _) = admin.send(reqwest::Method::DELETE, "/api/v1/users/olga", None).await;
    assert_eq!(s, 200);
    assert_eq!(Browser::login(&p, "olga", "long enough", "Chrome").await.err().unwrap().0, 401);
    let (s, v) = admin.send(reqwest::Method::DELETE, "/api/v1/users/olga", None).await;
    assert!(s == 404 && error(&v).contains("no user"), "{s} {v}");
    let (_, users) = admin.get("/api/v1/users").await;
    let names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alice", "vic"]);
    assert!(!users.to_string().contains("argon2"), "no hash in answers: {users}");
}

#[tokio::test]
async fn a_user_changes_their_own_password() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let admin = Browser::setup(&p, "alice", "correct horse").await;
    admin.post("/api/v1/users", json!({"name": "vic", "role": "viewer", "password": "just looking"})).await;
    let phone = Browser::login(&p, "vic", "just looking", "Phone").await.unwrap();
    let laptop = Browser::login(&p, "vic", "just looking", "Laptop").await.unwrap();
    let change = |current: &str, new: &str| json!({"current_password": current, "password": new});
    let (s, v) =
        phone.send(reqwest::Method::PUT, "/api/v1/auth/password", Some(change("wrong one!", "a new password"))).await;
    assert!(s == 403 && error(&v).contains("current password is wrong"), "{s} {v}");
    let (s, v) = phone.send(reqwest::Method::PUT, "/api/v1/auth/password", Some(change("just looking", "short"))).await;
    assert!(s == 422 && error(&v).contains("at least 8"), "{s} {v}");
    let (s, v) =
        phone.send(reqwest::Method::PUT, "/api/v1/auth/password", Some(change("just looking", "a new password"))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(phone.get("/api/v1/overview").await.0, 200, "who changed it stays signed in");
    assert_eq!(laptop.get("/api/v1/overview").await.0, 401, "their other sessions end");
    assert!(Browser::login(&p, "vic", "just looking", "x").await.is_err());
    assert!(Browser::login(&p, "vic", "a new password", "x").await.is_ok());
    // An admin sets a forgotten password; the user's sessions end.
    let (s, _) =
        admin.send(reqwest::Method::PATCH, "/api/v1/users/vic", Some(json!({"password": "set by alice"}))).await;
    assert_eq!(s, 200);
    assert_eq!(phone.get("/api/v1/overview").await.0, 401);
    assert!(Browser::login(&p, "vic", "set by alice", "x").await.is_ok());
}

#[tokio::test]
async fn sessions_survive_a_restart_and_a_revoked_one_is_dead() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let admin = Browser::setup(&p, "alice", "correct horse").await;
    admin.post("/api/v1/users", json!({"name": "vic", "role": "viewer", "password": "just looking"})).await;
    let phone = Browser::login(&p, "vic", "just looking", "Phone browser").await.unwrap();
    let laptop = Browser::login(&p, "vic", "just looking", "Laptop browser").await.unwrap();
    drop(p);

    // The page restarts on the same data: nobody has to sign in again.
    let p = start(dir.path(), None).await;
    let again = |b: &Browser| Browser { c: b.c.clone(), csrf: b.csrf.clone(), base: p.base.clone() };
    let (admin, phone, laptop) = (again(&admin), again(&phone), again(&laptop));
    for b in [&admin, &phone, &laptop] {
        assert_eq!(b.get("/api/v1/overview").await.0, 200);
    }
    // A viewer lists their own sessions, with device and address; the admin lists everyone's.
    let (s, mine) = phone.get("/api/v1/sessions").await;
    assert_eq!(s, 200);
    let mine = mine.as_array().unwrap().clone();
    assert_eq!(mine.len(), 2, "{mine:?}");
    assert!(mine.iter().all(|x| x["user"] == "vic" && x["address"] == "127.0.0.1"));
    let current = mine.iter().find(|x| x["current"] == true).unwrap();
    assert_eq!(current["user_agent"], "Phone browser");
    let laptop_id = mine.iter().find(|x| x["user_agent"] == "Laptop browser").unwrap()["id"].as_i64().unwrap();
    let (_, all) = admin.get("/api/v1/sessions").await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let alice_id = all.as_array().unwrap().iter().find(|x| x["user"] == "alice").unwrap()["id"].as_i64().unwrap();
    assert!(!all.to_string().contains(&laptop.csrf), "no CSRF token (or cookie) in the list");

    // Someone else's session is not the viewer's to revoke, nor to see.
    let (s, _) = phone.send(reqwest::Method::DELETE, &format!("/api/v1/sessions/{alice_id}"), None).await;
    assert_eq!(s, 404);
    assert_eq!(admin.get("/api/v1/overview").await.0, 200);
    let (s, _) = phone.send(reqwest::Method::DELETE, "/api/v1/sessions/not-a-number", None).await;
    assert_eq!(s, 404);
    // "I left it signed in on the laptop": revoked from the phone, the laptop's cookie is dead,
    // even copied elsewhere, and across another restart.
    let (s, v) = phone.send(reqwest::Method::DELETE, &format!("/api/v1/sessions/{laptop_id}"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(laptop.get("/api/v1/overview").await.0, 401);
    assert_eq!(laptop.post("/api/v1/auth/logout", json!({})).await.0, 401);
    drop(p);
    let p = start(dir.path(), None).await;
    let stolen = Browser { c: laptop.c.clone(), csrf: laptop.csrf.clone(), base: p.base.clone() };
    assert_eq!(stolen.get("/api/v1/overview").await.0, 401);
    // The admin revokes any session.
    let admin = Browser { c: admin.c.clone(), csrf: admin.csrf.clone(), base: p.base.clone() };
    let phone_id = current["id"].as_i64().unwrap();
    assert_eq!(admin.send(reqwest::Method::DELETE, &format!("/api/v1/sessions/{phone_id}"), None).await.0, 200);
    let phone = Browser { c: phone.c.clone(), csrf: phone.csrf.clone(), base: p.base.clone() };
    assert_eq!(phone.get("/api/v1/overview").await.0, 401);
}

#[tokio::test]
async fn the_audit_log_says_who_changed_what() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let admin = Browser::setup(&p, "alice", "correct horse").await;
    admin.post("/api/v1/users", json!({"name": "olga", "role": "operator", "password": "long enough"})).await;
    let operator = Browser::login(&p, "olga", "long enough", "Chrome").await.unwrap();
    let (s, _) = operator
        .send(reqwest::Method::PUT, "/api/v1/config", Some(json!({"notify": {"ntfy": "https://ntfy.sh/secret-topic"}})))
        .await;
    assert_eq!(s, 200);
    admin.send(reqwest::Method::PATCH, "/api/v1/users/olga", Some(json!({"disabled": true}))).await;
    let (s, log) = admin.get("/api/v1/audit").await;
    assert_eq!(s, 200);
    let lines: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}: {}: {}",
                e["who"].as_str().unwrap(),
                e["action"].as_str().unwrap(),
                e["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            "alice: user changed: olga: disabled",
            "olga: settings changed: notify",
            "alice: user created: olga (operator)",
            "alice: first admin set: first-visit setup from 127.0.0.1",
        ],
        "newest first"
    );
    assert!(log.as_array().unwrap().iter().all(|e| e["at"].as_i64().unwrap() > 1_700_000_000));
    assert!(!log.to_string().contains("secret-topic"), "the log names what changed, not the values");
    let (_, page) = admin.get(&format!("/api/v1/audit?limit=2&before={}", log[1]["id"])).await;
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["action"], "user created");
}

/// A hash as the page before issue 17 wrote it: argon2id, 19 MiB, 2 passes, PHC string.
fn old_hash(password: &str) -> String {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    let params = argon2::Params::new(19 * 1024, 2, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    a.hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng)).unwrap().to_string()
}

#[tokio::test]
async fn the_old_passwords_sign_in_as_users_admin_and_viewer() {
    let dir = tempfile::tempdir().unwrap();
    // A box from before issue 17: its password file, written by the old page.
    let old = format!("admin = \"{}\"\nviewer = \"{}\"\n", old_hash("old admin pw"), old_hash("old viewer pw"));
    std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/accounts"), old).unwrap();
    let p = start(dir.path(), None).await;
    let (_, v) = json_of(client("x").get(format!("{}/api/v1/auth/session", p.base))).await;
    assert_eq!(v["setup_required"], false, "no setup: the box has its admin");
    // Scripts that send only a password sign in as admin, as they did.
    let (s, v) =
        json_of(client("x").post(format!("{}/api/v1/auth/login", p.base)).json(&json!({"password": "old admin pw"})))
            .await;
    assert_eq!((s, v["user"].as_str(), v["role"].as_str()), (StatusCode::OK, Some("admin"), Some("admin")), "{v}");
    let viewer = Browser::login(&p, "viewer", "old viewer pw", "x").await.unwrap();
    assert_eq!(viewer.get("/api/v1/auth/session").await.1["role"], "viewer");
    assert_eq!(viewer.get("/api/v1/users").await.0, 403);
    let admin = Browser::login(&p, "admin", "old admin pw", "x").await.unwrap();
    let (_, log) = admin.get("/api/v1/audit").await;
    assert!(log.to_string().contains("from the old admin password"), "{log}");
}

#[tokio::test]
async fn the_recovery_reset_reopens_first_visit_setup() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    let admin = Browser::setup(&p, "alice", "correct horse").await;
    drop(p);
    // What the recovery console's "reset status page password" does, then its restart.
    std::fs::write(dir.path().join("secrets").join(minebox_status::user_db::RESET_MARKER), "").unwrap();
    let p = start(dir.path(), None).await;
    let (_, v) = json_of(client("x").get(format!("{}/api/v1/auth/session", p.base))).await;
    assert_eq!(v["setup_required"], true);
    let old = Browser { c: admin.c.clone(), csrf: admin.csrf.clone(), base: p.base.clone() };
    assert_eq!(old.get("/api/v1/overview").await.0, 401, "the old sessions went with the users");
    assert!(Browser::login(&p, "alice", "correct horse", "x").await.is_err());
    let owner = Browser::setup(&p, "admin", "a new start").await;
    let (_, log) = owner.get("/api/v1/audit").await;
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["first admin set", "users reset", "first admin set"], "the log survives the reset");
}

#[tokio::test]
async fn login_brute_force_is_still_throttled_whatever_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let p = start(dir.path(), None).await;
    Browser::setup(&p, "alice", "correct horse").await;
    // Wrong names and wrong passwords count alike: five misses lock the address out.
    for user in ["alice", "bob", "alice", "root", "admin"] {
        let (s, v) = Browser::login(&p, user, "wrong horse", "x").await.err().unwrap();
        assert!(s == 401 && error(&v).contains("wrong user name or password"), "{s} {v}");
    }
    let (s, v) = Browser::login(&p, "alice", "correct horse", "x").await.err().unwrap();
    assert!(s == 429 && error(&v).contains("too many wrong passwords"), "{s} {v}");
}
