//! Accounts through the HTTP API, on a real PostgreSQL and a real SMTP server (aiosmtpd).

mod support;

use minebox_cloud::accounts::Throttle;
use reqwest::Method;
use serde_json::json;
use support::{link_token, Auth, Rig, DB};

const PASSWORD: &str = "correct horse battery";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_mails_a_link_that_verifies_the_address_once() {
    let rig = Rig::start().await;
    let (status, body) = rig.post("/api/v1/signup", json!({"email": "Ann@Example.org", "password": PASSWORD})).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["message"].as_str().unwrap().contains("open the link mailed to Ann@Example.org"), "{body}");

    // Not before the address is verified.
    let (status, body) = rig.post("/api/v1/login", json!({"email": "ann@example.org", "password": PASSWORD})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().unwrap().contains("verify your email address first"), "{body}");

    let mails = rig.mail.wait_for(1);
    assert!(mails[0].contains("To: Ann@Example.org"), "{}", mails[0]);
    let token = link_token(&mails[0], "/verify?token=");
    assert_eq!(token.len(), 64, "{}", mails[0]);
    // The link is one line as written, copyable from any mail reader.
    assert!(
        mails[0].contains("Content-Transfer-Encoding: 7bit") && mails[0].contains(&format!("/verify?token={token}\n")),
        "{}",
        mails[0]
    );
    // Only a hash of the token and of the password are stored.
    assert_eq!(rig.pg.psql(DB, &format!("SELECT count(*) FROM email_tokens WHERE token_hash = '{token}'")), "0");
    let hashed = format!(
        "SELECT count(*) FROM email_tokens WHERE token_hash = encode(sha256(convert_to('{token}', 'UTF8')), 'hex')"
    );
    assert_eq!(rig.pg.psql(DB, &hashed), "1");
    let stored = rig.pg.psql(DB, "SELECT password_hash FROM users");
    assert!(stored.starts_with("$argon2id$") && !stored.contains(PASSWORD), "{stored}");

    let link = format!("{}/verify?token={token}", rig.base);
    let first = rig.http.get(&link).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.text().await.unwrap().contains("verified"));
    let (status, body) = support::answer(rig.http.get(&link).send().await.unwrap()).await;
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("used already"), "{body}");

    // Logging in works now (email matched ignoring case), with a cookie scripts cannot read.
    let (session, set_cookie) = rig.login("ANN@example.org", PASSWORD).await;
    for attribute in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/"] {
        assert!(set_cookie.contains(attribute), "{attribute} missing: {set_cookie}");
    }
    let (status, me) = rig.call(Method::GET, "/api/v1/me", &Auth::Cookie(session.clone()), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email_verified"], true);
    assert_eq!(me["email"], "Ann@Example.org");

    // Logout ends the session.
    let (status, _) = rig.call(Method::POST, "/api/v1/logout", &Auth::Cookie(session.clone()), None).await;
    assert_eq!(status, 200);
    let (status, body) = rig.call(Method::GET, "/api/v1/me", &Auth::Cookie(session), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("log in again"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_or_unknown_link_is_refused_in_words() {
    let rig = Rig::start().await;
    let (status, _) = rig.post("/api/v1/signup", json!({"email": "bo@example.org", "password": PASSWORD})).await;
    assert_eq!(status, 201);
    let token = link_token(&rig.mail.wait_for(1)[0], "/verify?token=");
    rig.pg.psql(DB, "UPDATE email_tokens SET expires_at = now() - interval '1 second'");
    let (status, body) = rig.post("/api/v1/verify", json!({"token": token})).await;
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("expired"), "{body}");
    assert_eq!(rig.pg.psql(DB, "SELECT email_verified FROM users"), "f");

    for bad in ["0".repeat(64), "not-a-token".into(), "'; DROP TABLE users; --".into()] {
        let (status, body) = rig.post("/api/v1/verify", json!({"token": bad})).await;
        assert_eq!(status, 404, "{body}");
        assert!(body["error"].as_str().unwrap().contains("not valid"), "{body}");
    }
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM users"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_link_sets_a_new_password_once_and_ends_old_sessions() {
    let rig = Rig::start().await;
    rig.verified_user("cy@example.org", PASSWORD).await;
    let (old_session, _) = rig.login("cy@example.org", PASSWORD).await;

    // An unknown address gets the same answer and no mail.
    let (status, unknown) = rig.post("/api/v1/password-reset", json!({"email": "nobody@example.org"})).await;
    assert_eq!(status, 202, "{unknown}");
    let (status, body) = rig.post("/api/v1/password-reset", json!({"email": "cy@example.org"})).await;
    assert_eq!(status, 202, "{body}");
    let mails = rig.mail.wait_for(2);
    assert_eq!(mails.len(), 2, "one verification and one reset mail, none for the unknown address");
    assert!(mails[1].contains("To: cy@example.org"));
    let token = link_token(&mails[1], "/reset?token=");

    let new_password = "a brand new passphrase";
    let (status, body) =
        rig.post("/api/v1/password-reset/confirm", json!({"token": token, "password": new_password})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        rig.post("/api/v1/password-reset/confirm", json!({"token": token, "password": "yet another one!"})).await;
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("used already"), "{body}");

    let (status, _) = rig.post("/api/v1/login", json!({"email": "cy@example.org", "password": PASSWORD})).await;
    assert_eq!(status, 401, "the old password no longer works");
    rig.login("cy@example.org", new_password).await;
    let (status, _) = rig.call(Method::GET, "/api/v1/me", &Auth::Cookie(old_session), None).await;
    assert_eq!(status, 401, "the session made with the old password ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_throttled_per_account_and_per_address() {
    let rig = Rig::start_with(Throttle { window_secs: 900, per_account: 3, per_ip: 5 }).await;
    rig.verified_user("di@example.org", PASSWORD).await;
    rig.verified_user("ed@example.org", PASSWORD).await;
    for _ in 0..3 {
        let (status, body) =
            rig.post("/api/v1/login", json!({"email": "di@example.org", "password": "wrong password"})).await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "wrong email or password");
    }
    // Now even the right password is refused, with when to come back.
    let r = rig
        .http
        .post(format!("{}/api/v1/login", rig.base))
        .json(&json!({"email": "di@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let retry: i64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    let (status, body) = support::answer(r).await;
    assert_eq!(status, 429, "{body}");
    assert!((1..=900).contains(&retry), "{retry}");
    assert_eq!(body["retry_after"], retry);
    let words = body["error"].as_str().unwrap();
    assert!(
        words.contains("too many failed logins for this account")
            && words.contains(&format!("try again in {retry} seconds")),
        "{words}"
    );

    // The other account is not locked by this one's failures...
    rig.login("ed@example.org", PASSWORD).await;
    // ...until the address has failed too often (3 + 2 = 5), unknown accounts counting too.
    for email in ["ed@example.org", "ghost@example.org"] {
        let (status, _) = rig.post("/api/v1/login", json!({"email": email, "password": "wrong password"})).await;
        assert_eq!(status, 401);
    }
    let (status, body) = rig.post("/api/v1/login", json!({"email": "ed@example.org", "password": PASSWORD})).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"].as_str().unwrap().contains("from your address"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_token_works_until_it_is_revoked_and_only_for_its_owner() {
    let rig = Rig::start().await;
    let fay = rig.verified_user("fay@example.org", PASSWORD).await;
    let gus = rig.verified_user("gus@example.org", PASSWORD).await;
    let (fay_session, _) = rig.login("fay@example.org", PASSWORD).await;
    let (gus_session, _) = rig.login("gus@example.org", PASSWORD).await;
    // A device each, as pairing (point 4) will make them.
    rig.pg.psql(DB, &format!("INSERT INTO devices (user_id, name) VALUES ('{fay}', 'fay-box'), ('{gus}', 'gus-box')"));

    let (status, made) = rig
        .call(
            Method::POST,
            "/api/v1/tokens",
            &Auth::Cookie(fay_session.clone()),
            Some(json!({"name": "backup script"})),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let token = made["token"].as_str().unwrap().to_string();
    let id = made["id"].as_str().unwrap().to_string();
    assert!(token.starts_with("mbx_"));
    assert_eq!(
        rig.pg.psql(DB, &format!("SELECT count(*) FROM api_tokens WHERE token_hash = '{token}'")),
        "0",
        "stored hashed"
    );

    let (status, me) = rig.call(Method::GET, "/api/v1/me", &Auth::Bearer(token.clone()), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["email"], "fay@example.org");
    let (_, devices) = rig.call(Method::GET, "/api/v1/devices", &Auth::Bearer(token.clone()), None).await;
    let names: Vec<&str> = devices["devices"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["fay-box"], "only her own device");

    // Listed without the secret.
    let (_, list) = rig.call(Method::GET, "/api/v1/tokens", &Auth::Cookie(fay_session.clone()), None).await;
    assert!(!list.to_string().contains(&token[4..]), "{list}");
    assert_eq!(list["tokens"][0]["prefix"], &token[..12]);

    // Gus cannot revoke it: to him it does not exist.
    let (status, body) =
        rig.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), &Auth::Cookie(gus_session), None).await;
    assert_eq!(status, 404, "{body}");
    let (status, _) = rig.call(Method::GET, "/api/v1/me", &Auth::Bearer(token.clone()), None).await;
    assert_eq!(status, 200, "still works after another user's attempt");

    let (status, body) =
        rig.call(Method::DELETE, &format!("/api/v1/tokens/{id}"), &Auth::Cookie(fay_session), None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = rig.call(Method::GET, "/api/v1/me", &Auth::Bearer(token), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].as_str().unwrap().contains("revoked"), "{body}");
    let (status, body) = rig.call(Method::GET, "/api/v1/me", &Auth::Bearer("mbx_forged".into()), None).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_4xx() {
    let rig = Rig::start().await;
    let send_raw = |body: String, content_type: &'static str| {
        let req = rig.http.post(format!("{}/api/v1/signup", rig.base)).header("content-type", content_type).body(body);
        async move { support::answer(req.send().await.unwrap()).await }
    };
    let (status, body) = send_raw("{\"email\": ".into(), "application/json").await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("not what this endpoint takes"), "{body}");
    let (status, body) = send_raw("{}".into(), "text/plain").await;
    assert_eq!(status, 415, "{body}");
    let (status, body) = send_raw(format!("{{\"email\": \"{}\"}}", "a".repeat(20_000)), "application/json").await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("larger than"), "{body}");

    let cases = [
        (json!({"email": "x@example.org", "password": PASSWORD, "admin": true}), 422, "unknown field"),
        (json!({"email": format!("{}@example.org", "a".repeat(300)), "password": PASSWORD}), 400, "longer than 254"),
        (json!({"email": "no-at-sign", "password": PASSWORD}), 400, "not an email address"),
        (json!({"email": "x'; DROP TABLE users; --@example.org", "password": PASSWORD}), 400, "not an email address"),
        (json!({"email": "x@example.org", "password": "short"}), 400, "at least 10"),
        (json!({"email": "x@example.org", "password": "p".repeat(2000)}), 400, "longer than 1024"),
        (
            json!({"email": "x@example.org", "password": PASSWORD, "display_name": "n".repeat(101)}),
            400,
            "longer than 100",
        ),
    ];
    for (req, want_status, want_words) in cases {
        let (status, body) = rig.post("/api/v1/signup", req.clone()).await;
        assert_eq!(status, want_status, "{req}: {body}");
        assert!(body["error"].as_str().unwrap().contains(want_words), "{req}: {body}");
    }
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM users"), "0", "nothing was made");

    let (status, _) = rig.post("/api/v1/signup", json!({"email": "hal@example.org", "password": PASSWORD})).await;
    assert_eq!(status, 201);
    let (status, body) = rig.post("/api/v1/signup", json!({"email": "HAL@example.org", "password": PASSWORD})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("exists already"), "{body}");
    let (status, body) = rig.call(Method::GET, "/api/v1/me", &Auth::Bearer("".into()), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) =
        support::answer(rig.http.get(format!("{}/api/v1/nothing", rig.base)).send().await.unwrap()).await;
    assert_eq!(status, 404, "{body}");
}

/// With the mail server down, sign-up says so and makes no account the user could not verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_without_a_working_mail_server_makes_no_account() {
    let mut rig = Rig::start().await;
    rig.mail.stop();
    let (status, body) = rig.post("/api/v1/signup", json!({"email": "ivy@example.org", "password": PASSWORD})).await;
    assert_eq!(status, 503, "{body}");
    let words = body["error"].as_str().unwrap();
    assert!(words.contains("could not be sent") && words.contains("the account was not made"), "{words}");
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM users"), "0");
}
