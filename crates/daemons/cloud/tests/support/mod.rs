//! A real PostgreSQL cluster with the roles a deployment makes, a real SMTP sink, and the
//! service serving on a free port.
#![allow(dead_code)]

use minebox_cloud::accounts::Throttle;
use minebox_cloud::http::CSRF_HEADER;
use minebox_cloud::{Config, Running};
use minebox_mailsink::MailSink;
use minebox_pg::Postgres;

pub const DB: &str = "cloud";
/// The database's owner: migrates, as a deployment's admin connection would.
pub const OWNER: &str = "cloud_owner";
/// The API's login role: a member of minebox_api, owner of nothing.
pub const API: &str = "cloud_api";
/// The billing webhook's signing secret the rig's service is started with.
pub const WEBHOOK_SECRET: &str = "whsec_minebox_test_secret";

/// A fresh cluster with the database and the two roles docs/cloud.md tells a deployment to make.
pub fn cluster() -> Postgres {
    let pg = Postgres::start();
    pg.create_database(DB);
    pg.psql(
        "postgres",
        &format!(
            "CREATE ROLE {OWNER} LOGIN CREATEROLE; ALTER DATABASE {DB} OWNER TO {OWNER};
             CREATE ROLE minebox_api NOLOGIN; CREATE ROLE {API} LOGIN IN ROLE minebox_api;"
        ),
    );
    pg
}

/// A plain connection as `user` (the test's own, outside the service).
pub async fn connect(pg: &Postgres, user: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(&pg.url(user, DB), tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// The owner's pool, as the service makes it.
pub fn owner_pool(pg: &Postgres) -> deadpool_postgres::Pool {
    minebox_cloud::db::pool(&pg.url(OWNER, DB), 2).unwrap()
}

pub struct Rig {
    pub pg: Postgres,
    pub mail: MailSink,
    pub running: Running,
    pub base: String,
    pub http: reqwest::Client,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::start_with(Throttle::default()).await
    }

    pub async fn start_with(throttle: Throttle) -> Rig {
        Rig::start_config(|c| c.throttle = throttle).await
    }

    /// The service with the test's configuration changed by `change` before it starts.
    pub async fn start_config(change: impl FnOnce(&mut Config)) -> Rig {
        Rig::start_on(cluster(), change).await
    }

    /// The service on a cluster the test made (with [`cluster`]'s database and roles), e.g.
    /// one a backup was restored into.
    pub async fn start_on(pg: Postgres, change: impl FnOnce(&mut Config)) -> Rig {
        let mail = MailSink::start();
        let port = minebox_pg::free_port();
        let mut config = Config {
            owner_url: pg.url(OWNER, DB),
            api_url: pg.url(API, DB),
            listen: ([127, 0, 0, 1], port).into(),
            public_url: format!("http://127.0.0.1:{port}"),
            smtp_url: format!("smtp://127.0.0.1:{}", mail.port),
            mail_from: "MineBox Cloud <cloud@example.org>".into(),
            cookie_secure: true,
            behind_proxy: false,
            throttle: Throttle::default(),
            api_pool_size: 4,
            billing_webhook_secret: Some(WEBHOOK_SECRET.into()),
            metrics_listen: None,
            snapshots: Default::default(),
        };
        change(&mut config);
        let running = minebox_cloud::start(config).await.expect("the service starts");
        let base = format!("http://{}", running.addr);
        let http = reqwest::Client::builder().timeout(std::time::Duration::from_secs(60)).build().unwrap();
        Rig { pg, mail, running, base, http }
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let r = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        answer(r).await
    }

    /// GET/POST/DELETE with an `Authorization: Bearer` token or a session cookie.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &Auth,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        req = match auth {
            Auth::Bearer(t) => req.bearer_auth(t),
            // As the account page sends them: the cookie, and the header that shows the request
            // came from the page itself (CSRF).
            Auth::Cookie(c) => req.header("cookie", format!("minebox_session={c}")).header(CSRF_HEADER, "1"),
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        answer(req.send().await.unwrap()).await
    }

    /// Signs up, follows the mailed link; returns the user id.
    pub async fn verified_user(&self, email: &str, password: &str) -> String {
        let before = self.mail.messages().len();
        let (status, body) =
            self.post("/api/v1/signup", serde_json::json!({"email": email, "password": password})).await;
        assert_eq!(status, 201, "{body}");
        let mails = self.mail.wait_for(before + 1);
        let token = link_token(&mails[before], "/verify?token=");
        let r = self.http.get(format!("{}/verify?token={token}", self.base)).send().await.unwrap();
        assert_eq!(r.status(), 200);
        body["user_id"].as_str().unwrap().to_string()
    }

    /// Logs in; returns the session cookie's value and the whole Set-Cookie header.
    pub async fn login(&self, email: &str, password: &str) -> (String, String) {
        let r = self
            .http
            .post(format!("{}/api/v1/login", self.base))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .unwrap();
        let set_cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
        let (status, body) = answer(r).await;
        assert_eq!(status, 200, "{body}");
        let set_cookie = set_cookie.expect("a Set-Cookie header");
        let value = set_cookie.split(';').next().unwrap().strip_prefix("minebox_session=").unwrap().to_string();
        (value, set_cookie)
    }
}

pub enum Auth {
    Bearer(String),
    Cookie(String),
}

pub async fn answer(r: reqwest::Response) -> (u16, serde_json::Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, body)
}

/// The token in the mailed link that starts with `marker`, undoing quoted-printable soft breaks.
pub fn link_token(mail: &str, marker: &str) -> String {
    let unfolded = mail.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=");
    let at = unfolded.find(marker).unwrap_or_else(|| panic!("no {marker} link in the mail:\n{mail}")) + marker.len();
    unfolded[at..].chars().take_while(char::is_ascii_hexdigit).collect()
}

/// The password of the users `Rig::user` signs up.
pub const PASSWORD: &str = "correct horse battery";

/// A box with its key in a fresh file, talking to the rig's service through the box's own
/// client (`minebox-cloud-link`).
pub struct Box_ {
    pub link: minebox_cloud_link::CloudLink,
    _dir: tempfile::TempDir,
}

impl Rig {
    pub fn device(&self) -> Box_ {
        let dir = tempfile::tempdir().unwrap();
        let key = minebox_cloud_link::DeviceKey::load_or_create(&dir.path().join("data/cloud/device.key")).unwrap();
        Box_ { link: minebox_cloud_link::CloudLink::new(&self.base, key), _dir: dir }
    }

    /// A verified user with a session.
    pub async fn session_user(&self, email: &str) -> Auth {
        self.verified_user(email, PASSWORD).await;
        let (session, _) = self.login(email, PASSWORD).await;
        Auth::Cookie(session)
    }

    /// The user's devices, as GET /api/v1/devices lists them.
    pub async fn devices(&self, auth: &Auth) -> Vec<serde_json::Value> {
        let (status, body) = self.call(reqwest::Method::GET, "/api/v1/devices", auth, None).await;
        assert_eq!(status, 200, "{body}");
        body["devices"].as_array().unwrap().clone()
    }
}
