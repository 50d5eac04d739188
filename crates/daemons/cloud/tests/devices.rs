//! Device pairing on a real PostgreSQL and the real service, with the box played by
//! `minebox-cloud-link` (its key in a real 0600 file): a box gets a code, its owner enters it,
//! the box learns it is linked; listing, renaming, unlinking from either side; the free plan's
//! device limit; unsigned, forged, stale, replayed and foreign-key requests, another user's
//! device ids, SQL-shaped names, oversized bodies, wrong, expired and reused codes, and guessing
//! codes by brute force are refused and change nothing.

mod support;

use minebox_cloud::accounts::Throttle;
use minebox_cloud_link::{BoxInfo, LinkError, State};
use reqwest::Method;
use serde_json::{json, Value};
use support::{Auth, Rig, API, DB};

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

impl Rig {
    /// Sends `body` to `path` with exactly these headers (a device's, signed or not).
    async fn raw(&self, method: Method, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        support::answer(req.send().await.unwrap()).await
    }

    /// What pairing keeps: every device (owner, name) and every pairing code's state.
    fn pairing_state(&self) -> String {
        self.pg.psql(
            DB,
            "SELECT coalesce(string_agg(d.id || ' ' || coalesce(d.user_id::text, '-') || ' ' || coalesce(d.name, '-'), ';'
                                        ORDER BY d.id), '') || ' | ' ||
                    coalesce((SELECT string_agg(p.code_hash || ' ' || coalesce(p.used_at::text, '-') || ' '
                                                || p.expires_at::text, ';' ORDER BY p.code_hash) FROM device_pairings p), '')
               FROM devices d",
        )
    }

    async fn pair(&self, auth: &Auth, code: &str) -> (u16, Value) {
        self.call(Method::POST, "/api/v1/devices/pair", auth, Some(json!({"code": code}))).await
    }
}

fn refused(result: Result<impl std::fmt::Debug, LinkError>) -> (u16, String) {
    match result {
        Err(LinkError::Refused { status, message }) => (status, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn info(name: &str) -> BoxInfo {
    BoxInfo { name: Some(name.into()), model: Some("raspberry_pi_5".into()), version: Some("0.1.0".into()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_pairs_with_its_code_is_listed_renamed_and_unlinked_from_either_side() {
    let rig = Rig::start().await;
    let ann = rig.session_user("ann@example.org").await;
    let bob = rig.session_user("bob@example.org").await;
    let device = rig.device();

    // Before pairing the cloud does not know the key.
    let (status, message) = refused(device.link.status().await);
    assert_eq!(status, 401);
    assert!(message.contains("does not know this device key"), "{message}");

    let pairing = device.link.start_pairing(&info("garage box")).await.unwrap();
    assert_eq!(pairing.code.len(), 9, "{pairing:?}");
    assert_eq!(&pairing.code[4..5], "-");
    assert_eq!(pairing.expires_in, 600);
    assert_eq!(
        rig.pg
            .psql(DB, &format!("SELECT count(*) FROM device_pairings WHERE code_hash LIKE '%{}%'", &pairing.code[..4])),
        "0",
        "the code is stored hashed"
    );
    let pending = device.link.status().await.unwrap();
    assert_eq!(pending.state, State::Pending, "{pending:?}");
    assert!(pending.expires_in.unwrap() > 0 && pending.expires_in.unwrap() <= 600);
    assert!(rig.devices(&ann).await.is_empty(), "nobody's box yet");
    // The API's role reaches codes and nonces only through the pairing functions.
    for table in ["device_pairings", "device_nonces"] {
        let e = rig.pg.psql_as(API, DB, &format!("SELECT count(*) FROM {table}")).unwrap_err();
        assert!(e.contains("permission denied"), "{table}: {e}");
    }

    // Not logged in: refused, the box still waits.
    let (status, body) = rig.post("/api/v1/devices/pair", json!({"code": pairing.code})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(device.link.status().await.unwrap().state, State::Pending);

    // Typed in lower case without the dash: the same code.
    let typed = pairing.code.replace('-', "").to_lowercase();
    let (status, body) = rig.pair(&ann, &typed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_id"], pairing.device_id.as_str());
    assert_eq!(body["name"], "garage box");

    let linked = device.link.status().await.unwrap();
    assert_eq!(linked.state, State::Linked, "{linked:?}");
    assert_eq!(linked.account.as_deref(), Some("a***@example.org"));

    let listed = rig.devices(&ann).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["id"], pairing.device_id.as_str());
    assert_eq!(listed[0]["public_key"], device.link.key().public_hex().as_str());
    assert_eq!(listed[0]["model"], "raspberry_pi_5");
    assert_eq!(listed[0]["version"], "0.1.0");
    assert!(listed[0]["linked_at"].is_string());
    assert!(rig.devices(&bob).await.is_empty(), "not bob's");

    // The code worked once.
    let (status, body) = rig.pair(&bob, &pairing.code).await;
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("used already"), "{body}");

    // A linked box cannot start pairing again until unlinked.
    let (status, message) = refused(device.link.start_pairing(&info("again")).await);
    assert_eq!(status, 409, "{message}");

    // Renaming: an SQL-shaped name is stored as typed and harms nothing.
    let id = pairing.device_id.clone();
    let sqlish = "x'); DROP TABLE devices; --";
    let (status, body) =
        rig.call(Method::PATCH, &format!("/api/v1/devices/{id}"), &ann, Some(json!({"name": sqlish}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rig.devices(&ann).await[0]["name"], sqlish);
    for bad in ["", "   ", "line\nbreak", &"n".repeat(101)] {
        let (status, body) =
            rig.call(Method::PATCH, &format!("/api/v1/devices/{id}"), &ann, Some(json!({"name": bad}))).await;
        assert_eq!(status, 400, "{bad:?}: {body}");
    }
    assert_eq!(rig.devices(&ann).await[0]["name"], sqlish);

    // Another user's device id: 404, as if it did not exist, and nothing changes.
    let before = rig.pairing_state();
    let (status, body) =
        rig.call(Method::PATCH, &format!("/api/v1/devices/{id}"), &bob, Some(json!({"name": "mine now"}))).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = rig.call(Method::DELETE, &format!("/api/v1/devices/{id}"), &bob, None).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = rig.call(Method::DELETE, "/api/v1/devices/' OR 1=1 --", &bob, None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(rig.pairing_state(), before);
    assert_eq!(device.link.status().await.unwrap().state, State::Linked);

    // Unlinked from the box's side: gone from the account, the box sees it.
    let unlinked = device.link.unlink().await.unwrap();
    assert_eq!(unlinked.state, State::Unlinked, "{unlinked:?}");
    assert!(rig.devices(&ann).await.is_empty());
    assert_eq!(device.link.status().await.unwrap().state, State::Unlinked);

    // Paired again (to bob this time), then unlinked from the account's side.
    let pairing = device.link.start_pairing(&BoxInfo::default()).await.unwrap();
    assert_eq!(pairing.device_id, id, "the same box, known by its key");
    let (status, body) = rig.pair(&bob, &pairing.code).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(device.link.status().await.unwrap().account.as_deref(), Some("b***@example.org"));
    let (status, body) = rig.call(Method::DELETE, &format!("/api/v1/devices/{id}"), &bob, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(rig.devices(&bob).await.is_empty());
    let status = device.link.status().await.unwrap();
    assert_eq!(status.state, State::Unlinked, "{status:?}");
    assert_eq!(status.account, None);
    let (code, body) = rig.call(Method::DELETE, &format!("/api/v1/devices/{id}"), &bob, None).await;
    assert_eq!(code, 404, "unlinked already: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_free_plan_links_one_box() {
    let rig = Rig::start().await;
    let cal = rig.session_user("cal@example.org").await;
    let (first, second) = (rig.device(), rig.device());
    let code = first.link.start_pairing(&info("one")).await.unwrap().code;
    assert_eq!(rig.pair(&cal, &code).await.0, 200);

    let code = second.link.start_pairing(&info("two")).await.unwrap().code;
    let before = rig.pairing_state();
    let (status, body) = rig.pair(&cal, &code).await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("free plan allows 1 linked box"), "{message}");
    assert_eq!(rig.pairing_state(), before, "nothing changed");
    assert_eq!(second.link.status().await.unwrap().state, State::Pending);

    // With the first box unlinked, the same code links the second.
    let first_id = rig.devices(&cal).await[0]["id"].as_str().unwrap().to_string();
    assert_eq!(rig.call(Method::DELETE, &format!("/api/v1/devices/{first_id}"), &cal, None).await.0, 200);
    let (status, body) = rig.pair(&cal, &code).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<Value> = rig.devices(&cal).await.iter().map(|d| d["name"].clone()).collect();
    assert_eq!(names, vec![json!("two")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_forged_stale_replayed_and_foreign_requests_are_refused_and_change_nothing() {
    let rig = Rig::start().await;
    let dee = rig.session_user("dee@example.org").await;
    let (a, b) = (rig.device(), rig.device());
    let code = b.link.start_pairing(&info("b's box")).await.unwrap().code;
    assert_eq!(rig.pair(&dee, &code).await.0, 200);
    let start = "/api/v1/devices/pair/start";
    let body = br#"{"name":"sneaky"}"#.to_vec();
    let before = rig.pairing_state();

    // Unsigned.
    let (status, answer) = rig.raw(Method::POST, start, &[], body.clone()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("MineBox-Device header is missing"), "{answer}");

    // Signed, but the body was changed after.
    let headers = a.link.key().sign("POST", start, &body);
    let (status, answer) = rig.raw(Method::POST, start, &headers, br#"{"name":"other"}"#.to_vec()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("does not verify"), "{answer}");

    // Signed for another path.
    let headers = a.link.key().sign("POST", "/api/v1/device/unlink", &body);
    assert_eq!(rig.raw(Method::POST, start, &headers, body.clone()).await.0, 401);

    // Ten minutes old, and ten minutes ahead.
    for skew in [-600, 600] {
        let headers = a.link.key().sign_at("POST", start, &body, now() + skew, &"5a".repeat(16));
        let (status, answer) = rig.raw(Method::POST, start, &headers, body.clone()).await;
        assert_eq!(status, 401, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains("set the box's clock"), "{answer}");
    }

    // Box A signing as box B (B's key in the header, A's signature): refused; B stays linked.
    let unlink = "/api/v1/device/unlink";
    let mut foreign = a.link.key().sign("POST", unlink, b"");
    foreign[0].1 = b.link.key().public_hex();
    let (status, answer) = rig.raw(Method::POST, unlink, &foreign, Vec::new()).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(b.link.status().await.unwrap().state, State::Linked);

    // Malformed headers.
    let mut bad = a.link.key().sign("POST", start, &body);
    bad[0].1 = "' OR 1=1 --".into();
    assert_eq!(rig.raw(Method::POST, start, &bad, body.clone()).await.0, 401);
    let mut bad = a.link.key().sign("POST", start, &body);
    bad[2].1 = "not-a-nonce".into();
    assert_eq!(rig.raw(Method::POST, start, &bad, body.clone()).await.0, 401);
    assert_eq!(rig.pairing_state(), before, "nothing changed");

    // A request sent twice: the first works, the replay is refused.
    let headers = b.link.key().sign("POST", unlink, b"");
    let (status, answer) = rig.raw(Method::POST, unlink, &headers, Vec::new()).await;
    assert_eq!(status, 200, "{answer}");
    let code = b.link.start_pairing(&info("b's box")).await.unwrap().code;
    assert_eq!(rig.pair(&dee, &code).await.0, 200, "linked again");
    let before = rig.pairing_state();
    let (status, answer) = rig.raw(Method::POST, unlink, &headers, Vec::new()).await;
    assert_eq!(status, 401, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("replay"), "{answer}");
    assert_eq!(rig.pairing_state(), before, "the replay unlinked nothing");
    assert_eq!(b.link.status().await.unwrap().state, State::Linked);

    // An oversized body: 413 before anything is read.
    let huge = serde_json::to_vec(&json!({"name": "x".repeat(20_000)})).unwrap();
    let headers = a.link.key().sign("POST", start, &huge);
    let (status, answer) = rig.raw(Method::POST, start, &headers, huge).await;
    assert_eq!(status, 413, "{answer}");

    // SQL-shaped and over-long fields from a box: stored as given, or refused.
    let sqlish = BoxInfo {
        name: Some("box'; DELETE FROM users; --".into()),
        model: Some("pi\"); DROP TABLE devices; --".into()),
        version: Some("1' OR '1'='1".into()),
    };
    let code = a.link.start_pairing(&sqlish).await.unwrap().code;
    assert_eq!(rig.pair(&rig.session_user("eve@example.org").await, &code).await.0, 200);
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM users"), "2", "no user deleted");
    let row = rig.pg.psql(
        DB,
        &format!(
            "SELECT name || '|' || hardware_type || '|' || version FROM devices WHERE device_fingerprint = '{}'",
            a.link.key().public_hex()
        ),
    );
    assert_eq!(row, "box'; DELETE FROM users; --|pi\"); DROP TABLE devices; --|1' OR '1'='1");
    a.link.unlink().await.unwrap();
    let long_model = BoxInfo { model: Some("m".repeat(51)), ..BoxInfo::default() };
    let (status, message) = refused(a.link.start_pairing(&long_model).await);
    assert_eq!(status, 400, "{message}");
    let (status, message) =
        refused(a.link.start_pairing(&BoxInfo { name: Some("a\u{7}b".into()), ..BoxInfo::default() }).await);
    assert_eq!(status, 400, "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_expired_and_guessed_codes_are_refused_and_guessing_is_throttled() {
    let rig = Rig::start_with(Throttle { window_secs: 900, per_account: 4, per_ip: 100 }).await;
    let fay = rig.session_user("fay@example.org").await;
    let device = rig.device();
    let code = device.link.start_pairing(&info("fay's")).await.unwrap().code;

    // Not shaped like a code: refused without a lookup (and not counted).
    for typed in ["", "K7QM-4XPO", "' OR 1=1 --", &"A".repeat(5000)] {
        let (status, body) = rig.pair(&fay, typed).await;
        assert_eq!(status, 400, "{typed:?}: {body}");
    }

    // Expired: refused, and the box is not linked.
    rig.pg.psql(DB, "UPDATE device_pairings SET expires_at = now() - interval '1 second'");
    let (status, body) = rig.pair(&fay, &code).await;
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("expired"), "{body}");
    let status_now = device.link.status().await.unwrap();
    assert_eq!(status_now.state, State::Unlinked, "{status_now:?}");

    // A new code; three wrong guesses (with the expired one, four failures): throttled.
    let code = device.link.start_pairing(&info("fay's")).await.unwrap().code;
    let wrong = if code.starts_with("2222") { "3333-3333" } else { "2222-2222" };
    for _ in 0..3 {
        let (status, body) = rig.pair(&fay, wrong).await;
        assert_eq!(status, 404, "{body}");
        assert!(body["error"].as_str().unwrap().contains("no box is waiting"), "{body}");
    }
    let before = rig.pairing_state();
    let r = rig
        .http
        .post(format!("{}/api/v1/devices/pair", rig.base))
        .header(
            "cookie",
            match &fay {
                Auth::Cookie(c) => format!("minebox_session={c}"),
                Auth::Bearer(_) => unreachable!(),
            },
        )
        .header(minebox_cloud::http::CSRF_HEADER, "1")
        .json(&json!({"code": code}))
        .send()
        .await
        .unwrap();
    let retry_after: i64 = r.headers().get("retry-after").expect("Retry-After").to_str().unwrap().parse().unwrap();
    let (status, body) = support::answer(r).await;
    assert_eq!(status, 429, "even the right code, while throttled: {body}");
    assert!(retry_after > 0 && retry_after <= 900, "{retry_after}");
    assert!(body["error"].as_str().unwrap().contains("too many wrong pairing codes"), "{body}");
    assert_eq!(rig.pairing_state(), before, "nothing changed");
    assert_eq!(device.link.status().await.unwrap().state, State::Pending);

    // Another account (another person at the same address, under its limit) is not held up.
    let gil = rig.session_user("gil@example.org").await;
    let (status, body) = rig.pair(&gil, &code).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_upkeep_forgets_nonces_past_the_replay_window_and_old_codes() {
    let rig = Rig::start().await;
    let device = rig.device();
    device.link.start_pairing(&info("old")).await.unwrap();
    let recent = rig.pg.psql(DB, "SELECT count(*) FROM device_nonces");
    assert_eq!(recent, "1");
    rig.pg.psql(
        DB,
        &format!(
            "INSERT INTO device_nonces (device_key, nonce, seen_at) VALUES (repeat('a', 64), repeat('b', 32), now() - interval '{} seconds');
             UPDATE device_pairings SET expires_at = now() - interval '2 days'",
            minebox_cloud::devices::NONCE_KEEP_SECS + 1
        ),
    );
    minebox_cloud::upkeep(&support::owner_pool(&rig.pg), &Throttle::default()).await.unwrap();
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM device_nonces"), "1", "the recent nonce stays");
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM device_nonces WHERE device_key = repeat('a', 64)"), "0");
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM device_pairings"), "0");
    assert_eq!(device.link.status().await.unwrap().state, State::Unlinked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_starts_from_one_address_are_throttled() {
    let rig = Rig::start_with(Throttle { window_secs: 900, per_account: 5, per_ip: 3 }).await;
    for _ in 0..3 {
        rig.device().link.start_pairing(&BoxInfo::default()).await.unwrap();
    }
    let before = rig.pairing_state();
    let (status, message) = refused(rig.device().link.start_pairing(&BoxInfo::default()).await);
    assert_eq!(status, 429, "{message}");
    assert!(message.contains("too many pairing starts from your address"), "{message}");
    assert_eq!(rig.pairing_state(), before, "no row made");
}
