//! Plans and subscriptions on a real PostgreSQL: the payment provider's signed webhook (Stripe's
//! event shape and signature scheme) activates, renews and cancels; a lapsed subscription falls
//! back to free; forged, expired, replayed and malformed events change nothing; the admin
//! commands of the real binary grant and revoke.

mod support;

use minebox_cloud::billing::sign;
use reqwest::Method;
use serde_json::{json, Value};
use support::{Auth, Rig, DB, OWNER, WEBHOOK_SECRET};

const PASSWORD: &str = "correct horse battery";
const DAY: i64 = 86_400;
const GIB: i64 = 1024 * 1024 * 1024;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A `customer.subscription.*` event as Stripe sends it (the fields this service reads, and
/// some it does not).
fn subscription_event(event: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": event, "object": "event", "api_version": "2024-06-20", "type": kind, "created": created,
        "livemode": false, "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "data": {"object": object},
    })
}

fn subscription(id: &str, customer: &str, status: &str, start: i64, end: i64, lookup_key: &str) -> Value {
    json!({
        "id": id, "object": "subscription", "customer": customer, "status": status,
        "current_period_start": start, "current_period_end": end, "cancel_at_period_end": false,
        "items": {"object": "list", "data": [{"id": "si_1", "object": "subscription_item",
            "price": {"id": "price_1", "object": "price", "lookup_key": lookup_key, "unit_amount": 1500}}]},
        "metadata": {},
    })
}

fn invoice_event(event: &str, created: i64, sub: &str, customer: &str, end: i64) -> Value {
    json!({
        "id": event, "object": "event", "type": "invoice.paid", "created": created,
        "data": {"object": {
            "id": "in_1", "object": "invoice", "customer": customer, "subscription": sub, "status": "paid",
            "lines": {"object": "list", "data": [{"id": "il_1", "period": {"start": end - 30 * DAY, "end": end}}]},
        }},
    })
}

impl Rig {
    /// POSTs `body` to the webhook with the Stripe-Signature header `signature` (None: none).
    async fn deliver_raw(&self, body: Vec<u8>, signature: Option<String>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/api/v1/billing/webhook", self.base))
            .header("content-type", "application/json; charset=utf-8")
            .body(body);
        if let Some(s) = signature {
            req = req.header("Stripe-Signature", s);
        }
        support::answer(req.send().await.unwrap()).await
    }

    /// Delivers `event` signed with the service's secret, now, as the provider does.
    async fn deliver(&self, event: &Value) -> (u16, Value) {
        let body = serde_json::to_vec(event).unwrap();
        let signature = sign(WEBHOOK_SECRET.as_bytes(), now(), &body);
        self.deliver_raw(body, Some(signature)).await
    }

    /// A verified user with a session; returns their id and the session.
    async fn user(&self, email: &str) -> (String, Auth) {
        let id = self.verified_user(email, PASSWORD).await;
        let (session, _) = self.login(email, PASSWORD).await;
        (id, Auth::Cookie(session))
    }

    async fn plan_of(&self, auth: &Auth) -> Value {
        let (status, body) = self.call(Method::GET, "/api/v1/subscription", auth, None).await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Everything the webhook could change, as the owner sees it.
    fn billing_state(&self) -> String {
        let subs = self.pg.psql(
            DB,
            "SELECT coalesce(string_agg(row(s.user_id, p.name, s.status, s.expires_at, s.provider_subscription_id,
                    s.provider_customer_id, s.source, s.provider_event_at)::text, ';' ORDER BY s.user_id), 'none')
               FROM subscriptions s JOIN subscription_plans p ON p.id = s.plan_id",
        );
        let events = self
            .pg
            .psql(DB, "SELECT string_agg(event_id || ':' || outcome, ',' ORDER BY event_id) FROM billing_events");
        let plans = self.pg.psql(DB, "SELECT string_agg(name, ',' ORDER BY id) FROM subscription_plans");
        format!("{subs} | {events} | {plans} | users {}", self.pg.psql(DB, "SELECT count(*) FROM users"))
    }
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_else(|| panic!("no error in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_webhook_activates_renews_and_cancels_a_plan() {
    let rig = Rig::start().await;
    let (ann, auth) = rig.user("ann@example.org").await;
    let t = now();

    // No subscription: the free plan and its limits.
    let before = rig.plan_of(&auth).await;
    assert_eq!(before["plan"], "free", "{before}");
    assert_eq!(before["subscription"], Value::Null);
    assert_eq!(before["limits"]["snapshot_downloads_per_month"], 1);
    assert_eq!(before["limits"]["snapshot_bytes_per_month"], 50 * GIB);
    assert_eq!(before["limits"]["max_devices"], 1);

    // Checkout made a subscription for Ann: her id rides in the subscription's metadata.
    let mut sub = subscription("sub_ann1", "cus_ann", "active", t - 60, t + 30 * DAY, "pro");
    sub["metadata"] = json!({"user_id": ann});
    let (status, body) = rig.deliver(&subscription_event("evt_1", "customer.subscription.created", t, sub)).await;
    assert_eq!(status, 200, "{body}");
    let pro = rig.plan_of(&auth).await;
    assert_eq!(pro["plan"], "pro", "{pro}");
    assert_eq!(pro["limits"]["snapshot_downloads_per_month"], 30);
    assert_eq!(pro["limits"]["snapshot_bytes_per_month"], 4096 * GIB);
    assert_eq!(pro["limits"]["max_devices"], 5);
    assert_eq!(pro["subscription"]["status"], "active");
    assert_eq!(pro["subscription"]["source"], "provider");
    let first_end = pro["subscription"]["period_end"].as_str().unwrap().to_string();
    assert!(pro["message"].as_str().unwrap().contains(&format!("pro plan runs until {first_end}")), "{pro}");

    // The next month is paid: invoice.paid finds her by the subscription and extends the period.
    let (status, body) = rig.deliver(&invoice_event("evt_2", t + 1, "sub_ann1", "cus_ann", t + 60 * DAY)).await;
    assert_eq!(status, 200, "{body}");
    let renewed = rig.plan_of(&auth).await;
    let second_end = renewed["subscription"]["period_end"].as_str().unwrap().to_string();
    assert!(second_end > first_end, "{first_end} -> {second_end}");
    assert_eq!(renewed["plan"], "pro");

    // She moves to hobbyist (the plan named in metadata.plan, no lookup_key), a later period.
    let mut sub = subscription("sub_ann1", "cus_ann", "active", t + 60 * DAY, t + 90 * DAY, "");
    sub["items"]["data"][0]["price"]["lookup_key"] = Value::Null;
    sub["metadata"] = json!({"plan": "hobbyist"});
    let (status, body) = rig.deliver(&subscription_event("evt_3", "customer.subscription.updated", t + 2, sub)).await;
    assert_eq!(status, 200, "{body}");
    let hobby = rig.plan_of(&auth).await;
    assert_eq!(hobby["plan"], "hobbyist", "{hobby}");
    assert_eq!(hobby["limits"]["max_devices"], 2);
    assert!(hobby["subscription"]["period_end"].as_str().unwrap() > second_end.as_str());

    // News of a subscription that is not her current one (an old one's late update) changes nothing.
    let other = subscription("sub_ann0", "cus_ann", "active", t, t + 900 * DAY, "pro");
    let (status, body) =
        rig.deliver(&subscription_event("evt_3b", "customer.subscription.updated", t + 2, other)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["message"].as_str().unwrap().contains("not the customer's current one"), "{body}");
    assert_eq!(rig.plan_of(&auth).await["plan"], "hobbyist");

    // The same invoice event delivered again (providers retry) changes nothing.
    let state = rig.billing_state();
    let (status, body) = rig.deliver(&invoice_event("evt_2", t + 1, "sub_ann1", "cus_ann", t + 400 * DAY)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["message"].as_str().unwrap().contains("handled already"), "{body}");
    assert_eq!(rig.billing_state(), state);
    // An older event arriving late (providers do not promise order) changes nothing either.
    let old = subscription("sub_ann1", "cus_ann", "active", t - 60, t + 30 * DAY, "pro");
    let (status, body) = rig.deliver(&subscription_event("evt_0", "customer.subscription.updated", t - 5, old)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["message"].as_str().unwrap().contains("older than the last one applied"), "{body}");
    assert_eq!(
        rig.pg.psql(DB, "SELECT p.name FROM subscriptions s JOIN subscription_plans p ON p.id = s.plan_id"),
        "hobbyist"
    );

    // The subscription is cancelled: back to free, the subscription shown as cancelled.
    let ended = subscription("sub_ann1", "cus_ann", "canceled", t + 60 * DAY, t + 90 * DAY, "hobbyist");
    let (status, body) = rig.deliver(&subscription_event("evt_4", "customer.subscription.deleted", t + 3, ended)).await;
    assert_eq!(status, 200, "{body}");
    let free = rig.plan_of(&auth).await;
    assert_eq!(free["plan"], "free", "{free}");
    assert_eq!(free["limits"]["max_devices"], 1);
    assert_eq!(free["subscription"]["status"], "cancelled");
    assert_eq!(free["subscription"]["in_effect"], false);

    // An event type that is not about plans is answered (so the provider stops retrying) and ignored.
    let other =
        json!({"id": "evt_5", "type": "charge.succeeded", "created": t + 4, "data": {"object": {"id": "ch_1"}}});
    let (status, body) = rig.deliver(&other).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rig.pg.psql(DB, "SELECT string_agg(event_id || ':' || outcome, ',' ORDER BY event_id) FROM billing_events"),
        "evt_0:stale,evt_1:applied,evt_2:applied,evt_3:applied,evt_3b:ignored,evt_4:applied,evt_5:ignored"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_subscription_falls_back_to_free() {
    let rig = Rig::start().await;
    let (bo, bo_auth) = rig.user("bo@example.org").await;
    let (cy, cy_auth) = rig.user("cy@example.org").await;
    let t = now();

    // Bo's period ended a day ago and no renewal came: still "active" at the provider's last
    // word, but not in effect.
    let mut sub = subscription("sub_bo", "cus_bo", "active", t - 31 * DAY, t - DAY, "pro");
    sub["metadata"] = json!({"user_id": bo});
    let (status, body) = rig.deliver(&subscription_event("evt_bo", "customer.subscription.created", t, sub)).await;
    assert_eq!(status, 200, "{body}");
    let lapsed = rig.plan_of(&bo_auth).await;
    assert_eq!(lapsed["plan"], "free", "{lapsed}");
    assert_eq!(lapsed["limits"]["snapshot_downloads_per_month"], 1);
    assert_eq!(lapsed["subscription"]["plan"], "pro");
    assert_eq!(lapsed["subscription"]["in_effect"], false);
    assert!(lapsed["message"].as_str().unwrap().contains("lapsed"), "{lapsed}");

    // Cy's payment failed and the provider is retrying (past_due): the plan holds until the
    // period ends. Then unpaid (the retries gave up): free.
    let mut sub = subscription("sub_cy", "cus_cy", "past_due", t - DAY, t + 29 * DAY, "hobbyist");
    sub["metadata"] = json!({"user_id": cy});
    let (status, body) = rig.deliver(&subscription_event("evt_cy1", "customer.subscription.created", t, sub)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(rig.plan_of(&cy_auth).await["plan"], "hobbyist");
    let sub = subscription("sub_cy", "cus_cy", "unpaid", t - DAY, t + 29 * DAY, "hobbyist");
    let (status, body) = rig.deliver(&subscription_event("evt_cy2", "customer.subscription.updated", t + 1, sub)).await;
    assert_eq!(status, 200, "{body}");
    let unpaid = rig.plan_of(&cy_auth).await;
    assert_eq!(unpaid["plan"], "free", "{unpaid}");
    assert_eq!(unpaid["subscription"]["status"], "expired");
    // Each sees only their own subscription.
    assert_eq!(rig.plan_of(&bo_auth).await["subscription"]["plan"], "pro");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_replayed_and_malformed_events_are_refused_and_change_nothing() {
    let rig = Rig::start().await;
    let (dee, auth) = rig.user("dee@example.org").await;
    let t = now();
    let mut sub = subscription("sub_dee", "cus_dee", "active", t - 60, t + 30 * DAY, "hobbyist");
    sub["metadata"] = json!({"user_id": dee});
    let (status, body) = rig.deliver(&subscription_event("evt_ok", "customer.subscription.created", t, sub)).await;
    assert_eq!(status, 200, "{body}");
    let state = rig.billing_state();
    assert!(state.contains("hobbyist") && state.contains("evt_ok:applied"), "{state}");

    // What a forger would send: Dee on pro, another year.
    let upgrade = serde_json::to_vec(&subscription_event(
        "evt_forged",
        "customer.subscription.updated",
        t + 10,
        subscription("sub_dee", "cus_dee", "active", t, t + 365 * DAY, "pro"),
    ))
    .unwrap();
    let good = sign(WEBHOOK_SECRET.as_bytes(), now(), &upgrade);
    // (what, body, Stripe-Signature, status, words in the refusal)
    type Case = (&'static str, Vec<u8>, Option<String>, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("no header", upgrade.clone(), None, 400, "no Stripe-Signature header"),
        ("malformed header", upgrade.clone(), Some("sha256=abc".into()), 400, "is not `t=<unix time>,v1="),
        (
            "made-up signature",
            upgrade.clone(),
            Some(format!("t={},v1={}", now(), "ab".repeat(32))),
            401,
            "does not match",
        ),
        ("wrong secret", upgrade.clone(), Some(sign(b"whsec_someone_else", now(), &upgrade)), 401, "does not match"),
        (
            "body changed after signing",
            String::from_utf8(upgrade.clone()).unwrap().replace("evt_forged", "evt_forgee").into_bytes(),
            Some(good.clone()),
            401,
            "does not match",
        ),
        (
            "signed an hour ago",
            upgrade.clone(),
            Some(sign(WEBHOOK_SECRET.as_bytes(), now() - 3600, &upgrade)),
            401,
            "tolerance",
        ),
        (
            "signed an hour ahead",
            upgrade.clone(),
            Some(sign(WEBHOOK_SECRET.as_bytes(), now() + 3600, &upgrade)),
            401,
            "tolerance",
        ),
    ];
    for (what, body, signature, want, words) in cases {
        let (status, answer) = rig.deliver_raw(body, signature).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(error_of(&answer).contains(words), "{what}: {answer}");
        assert_eq!(rig.billing_state(), state, "{what} changed something");
    }

    // Larger than the limit, even correctly signed.
    let mut big = subscription_event("evt_big", "customer.subscription.updated", t + 10, json!({}));
    big["data"]["object"]["padding"] = "x".repeat(70 * 1024).into();
    let (status, answer) = rig.deliver(&big).await;
    assert_eq!(status, 413, "{answer}");
    assert!(error_of(&answer).contains("larger than 65536 bytes"), "{answer}");
    // Signed, but not an event.
    let not_json = b"{\"id\": ".to_vec();
    let (status, answer) =
        rig.deliver_raw(not_json.clone(), Some(sign(WEBHOOK_SECRET.as_bytes(), now(), &not_json))).await;
    assert_eq!(status, 400, "{answer}");
    assert!(error_of(&answer).contains("not a provider event"), "{answer}");

    // SQL-shaped strings in every field the service reads, each correctly signed.
    let sql = "x'; UPDATE subscriptions SET plan_id = 3; --";
    let base = || {
        let mut s = subscription("sub_dee", "cus_dee", "active", t, t + 365 * DAY, "pro");
        s["metadata"] = json!({"user_id": dee});
        subscription_event("evt_sql", "customer.subscription.updated", t + 10, s)
    };
    let mut events = Vec::new();
    for (pointer, words) in [
        ("/id", "event id"),
        ("/type", "event type"),
        ("/data/object/id", "subscription id"),
        ("/data/object/customer", "customer"),
        ("/data/object/status", "subscription status"),
        ("/data/object/items/data/0/price/lookup_key", "not a plan name"),
        ("/data/object/metadata/user_id", "not a MineBox user id"),
    ] {
        let mut e = base();
        *e.pointer_mut(pointer).unwrap() = sql.into();
        events.push((pointer.to_string(), e, 400, words));
    }
    let mut e = base();
    e["data"]["object"]["items"]["data"][0]["price"]["lookup_key"] = Value::Null;
    e["data"]["object"]["metadata"]["plan"] = sql.into();
    events.push(("metadata.plan".into(), e, 400, "not a plan name"));
    let mut e = invoice_event("evt_sql_inv", t + 10, "sub_dee", "cus_dee", t + 400 * DAY);
    e["data"]["object"]["subscription"] = sql.into();
    events.push(("invoice subscription".into(), e, 400, "subscription id"));
    let mut e = invoice_event("evt_sql_inv", t + 10, "sub_dee", "cus_dee", t + 400 * DAY);
    e["data"]["object"]["lines"]["data"][0]["period"]["end"] = sql.into();
    events.push(("invoice period end".into(), e, 400, "not a unix time"));

    // Well-formed, but about someone or something unknown.
    let stranger = |user: Option<&str>, plan: &str| {
        let mut s = subscription("sub_new", "cus_new", "active", t, t + 30 * DAY, plan);
        if let Some(u) = user {
            s["metadata"] = json!({"user_id": u});
        }
        subscription_event("evt_new", "customer.subscription.created", t + 10, s)
    };
    events.push(("unknown customer, no user".into(), stranger(None, "pro"), 422, "customer cus_new is unknown"));
    events.push((
        "no such user".into(),
        stranger(Some("00000000-0000-4000-8000-000000000000"), "pro"),
        422,
        "no MineBox user has the id",
    ));
    events.push(("no such plan".into(), stranger(Some(&dee), "platinum"), 422, "there is no plan \"platinum\""));
    events.push((
        "invoice for an unknown subscription".into(),
        invoice_event("evt_inv_unknown", t + 10, "sub_nope", "cus_nope", t + 400 * DAY),
        422,
        "unknown here",
    ));
    // Dee's customer claimed for another user.
    let mut e = base();
    e["data"]["object"]["metadata"]["user_id"] = "00000000-0000-4000-8000-000000000000".into();
    events.push(("customer claimed for another user".into(), e, 409, "belongs to another user"));
    // A replay of the applied event, re-signed now with a richer plan: handled already.
    let mut replay = base();
    replay["id"] = "evt_ok".into();
    events.push(("replayed event id".into(), replay, 200, ""));

    for (what, event, want, words) in events {
        let (status, answer) = rig.deliver(&event).await;
        assert_eq!(status, want, "{what}: {answer}");
        if want == 200 {
            assert!(answer["message"].as_str().unwrap().contains("handled already"), "{what}: {answer}");
        } else {
            assert!(error_of(&answer).contains(words), "{what}: {answer}");
        }
        assert_eq!(rig.billing_state(), state, "{what} changed something");
    }
    assert_eq!(rig.plan_of(&auth).await["plan"], "hobbyist");
}

/// Runs the real binary's `admin` command as the database's owner.
async fn admin(rig: &Rig, args: &[&str]) -> (bool, String) {
    let url = rig.pg.url(OWNER, DB);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_minebox-cloud"))
            .arg("admin")
            .args(&args)
            .env("MINEBOX_CLOUD_DATABASE_URL", url)
            .output()
            .expect("run minebox-cloud");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_grants_and_revokes_plans_with_the_real_binary() {
    let rig = Rig::start().await;
    let (_, auth) = rig.user("eve@example.org").await;

    let (ok, out) = admin(&rig, &["plans"]).await;
    assert!(ok, "{out}");
    for line in ["free", "hobbyist", "pro"] {
        assert!(out.lines().any(|l| l.starts_with(line)), "{line} missing:\n{out}");
    }
    assert!(out.lines().any(|l| l.starts_with("pro ") && l.contains("15.00") && l.contains("4096")), "{out}");

    let (ok, out) = admin(&rig, &["grant", "--email", "EVE@example.org", "--plan", "pro", "--days", "30"]).await;
    assert!(ok, "{out}");
    assert!(out.contains("is on the pro plan until"), "{out}");
    let granted = rig.plan_of(&auth).await;
    assert_eq!(granted["plan"], "pro", "{granted}");
    assert_eq!(granted["subscription"]["source"], "admin");
    assert!(granted["subscription"]["period_end"].is_string());

    let (ok, out) =
        admin(&rig, &["grant", "--email", "eve@example.org", "--plan", "hobbyist", "--until", "2099-12-31"]).await;
    assert!(ok, "{out}");
    let until = rig.plan_of(&auth).await;
    assert_eq!(until["plan"], "hobbyist");
    assert_eq!(until["subscription"]["period_end"], "2100-01-01T00:00:00Z", "through the last day, UTC");

    let (ok, out) = admin(&rig, &["grant", "--email", "eve@example.org", "--plan", "pro"]).await;
    assert!(ok && out.contains("no end date"), "{out}");
    assert_eq!(rig.plan_of(&auth).await["subscription"]["period_end"], Value::Null);

    let (ok, out) = admin(&rig, &["plans"]).await;
    assert!(ok && out.lines().any(|l| l.starts_with("pro ") && l.trim_end().ends_with(" 1")), "{out}");

    let (ok, out) = admin(&rig, &["revoke", "--email", "eve@example.org"]).await;
    assert!(ok && out.contains("free plan"), "{out}");
    let revoked = rig.plan_of(&auth).await;
    assert_eq!(revoked["plan"], "free", "{revoked}");
    assert_eq!(revoked["subscription"]["status"], "cancelled");

    // Refusals, each saying what to do, changing nothing.
    let state = rig.billing_state();
    let refused: &[(&[&str], &str)] = &[
        (&["revoke", "--email", "eve@example.org"], "no subscription in effect"),
        (&["grant", "--email", "nobody@example.org", "--plan", "pro"], "no account has the email address"),
        (&["grant", "--email", "x'; DELETE FROM users; --", "--plan", "pro"], "no account has the email address"),
        (&["grant", "--email", "eve@example.org", "--plan", "platinum"], "the plans are: free, hobbyist, pro"),
        (&["grant", "--email", "eve@example.org", "--plan", "pro", "--until", "31/12/2099"], "not a date"),
        (&["grant", "--email", "eve@example.org", "--plan", "pro", "--until", "2099-02-30"], "not a date"),
        (&["grant", "--email", "eve@example.org", "--plan", "pro", "--until", "2001-01-01"], "in the past"),
        (&["grant", "--email", "eve@example.org", "--plan", "pro", "--days", "0"], "give 1 to 36500 days"),
        (
            &["grant", "--email", "eve@example.org", "--plan", "pro", "--days", "3", "--until", "2099-01-01"],
            "cannot be used with",
        ),
    ];
    for (args, words) in refused {
        let (ok, out) = admin(&rig, args).await;
        assert!(!ok && out.contains(words), "{args:?}: {out}");
        assert_eq!(rig.billing_state(), state, "{args:?} changed something");
    }
    assert_eq!(rig.plan_of(&auth).await["plan"], "free");
}

/// Two deliveries of one event at once (a provider's retry racing the first): applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_delivered_twice_at_once_is_applied_once() {
    let rig = Rig::start().await;
    let (fay, auth) = rig.user("fay@example.org").await;
    let t = now();
    let mut sub = subscription("sub_fay", "cus_fay", "active", t - 60, t + 30 * DAY, "pro");
    sub["metadata"] = json!({"user_id": fay});
    let event = subscription_event("evt_twice", "customer.subscription.created", t, sub);
    let (a, b) = tokio::join!(rig.deliver(&event), rig.deliver(&event));
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let handled_already =
        [&a.1, &b.1].iter().filter(|v| v["message"].as_str().unwrap().contains("handled already")).count();
    assert_eq!(handled_already, 1, "{a:?} {b:?}");
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM billing_events"), "1");
    assert_eq!(rig.plan_of(&auth).await["plan"], "pro");
}

/// Without a signing secret the service takes no billing events at all, and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_webhook_secret_events_are_refused() {
    let rig = Rig::start_config(|c| c.billing_webhook_secret = None).await;
    let (gil, auth) = rig.user("gil@example.org").await;
    let t = now();
    let mut sub = subscription("sub_gil", "cus_gil", "active", t - 60, t + 30 * DAY, "pro");
    sub["metadata"] = json!({"user_id": gil});
    let (status, body) = rig.deliver(&subscription_event("evt_gil", "customer.subscription.created", t, sub)).await;
    assert_eq!(status, 503, "{body}");
    assert!(error_of(&body).contains("--billing-webhook-secret"), "{body}");
    assert_eq!(rig.plan_of(&auth).await["plan"], "free");
    assert_eq!(rig.pg.psql(DB, "SELECT count(*) FROM billing_events"), "0");
}
