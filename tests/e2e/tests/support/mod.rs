//! Real nginx serving a published tree, and a fault-injecting HTTP proxy in front of it (or of
//! an object store).
#![allow(dead_code)]

use axum::body::Body;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, Response, StatusCode};
use minebox_publisher::publish::{publish, Request};
use minebox_snapshot::manifest::Kind;
use minebox_snapshot::minisign::{PublicKey, SecretKey};
pub use minebox_test_support::free_port;
pub use minebox_test_support::noise;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A node-like data directory of about `mib` MiB.
pub fn make_datadir(root: &Path, mib: usize, seed: u64) {
    std::fs::create_dir_all(root.join("blocks")).unwrap();
    std::fs::create_dir_all(root.join("chainstate")).unwrap();
    std::fs::write(root.join("blocks/blk00000.dat"), noise((mib * 3 / 4) << 20, seed)).unwrap();
    std::fs::write(root.join("blocks/xor.dat"), [seed as u8; 8]).unwrap();
    std::fs::write(root.join("chainstate/000001.ldb"), noise((mib / 4) << 20, seed + 1)).unwrap();
}

pub struct Published {
    pub key: SecretKey,
    pub tree: PathBuf,
}

impl Published {
    pub fn keys(&self) -> Vec<PublicKey> {
        vec![self.key.public()]
    }
}

pub fn publish_tree(source: &Path, tree: &Path, key: &SecretKey, version: u64, expires_in: i64) {
    let req = Request {
        source: source.to_path_buf(),
        kind: Kind::Datadir,
        coin: "bch".into(),
        network: "regtest".into(),
        height: 100 + version,
        block_hash: format!("{version:064x}"),
        version,
        expires_in_secs: expires_in,
        out: tree.to_path_buf(),
        level: 3,
    };
    publish(&req, key).unwrap();
}

/// nginx (Debian's) serving `root` on 127.0.0.1, plain or TLS, stopped on drop.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub fn serve(root: &Path, tls: Option<(&Path, &Path)>) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let listen = match tls {
            Some((cert, key)) => format!(
                "listen 127.0.0.1:{port} ssl;\n ssl_certificate {};\n ssl_certificate_key {};",
                cert.display(),
                key.display()
            ),
            None => format!("listen 127.0.0.1:{port};"),
        };
        let d = dir.path().display();
        let conf = format!(
            "daemon off; master_process off; pid {d}/nginx.pid; error_log {d}/error.log;\n\
             events {{}}\n\
             http {{ access_log off; default_type application/octet-stream;\n\
               client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n\
               server {{ {listen}\n root {}; }} }}\n",
            root.display()
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut child = Command::new("nginx")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .arg("-p")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx installed (scripts/setup)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Nginx { child, port, _dir: dir };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("nginx did not start: {}", std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default());
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// Flip one byte in the body.
    Corrupt,
    /// Send half the body, then drop the connection.
    Truncate,
    /// Answer 500.
    ServerError,
    /// Say nothing for a long time.
    Stall,
    /// Send half, drop the connection, and replace the file on the server with other bytes.
    ChangeMidResume { file: PathBuf, replacement: Vec<u8> },
    /// Replace the body entirely (for tampering with documents).
    Replace(Vec<u8>),
    /// Answer 403 as an object store does to a presigned URL whose signature expired.
    Expired,
}

#[derive(Clone, Debug)]
pub struct Fault {
    pub path_contains: String,
    pub kind: FaultKind,
    pub times: u32,
}

#[derive(Default)]
pub struct ProxyState {
    pub upstream: String,
    pub faults: Mutex<Vec<Fault>>,
    /// Requests seen, by path.
    pub requests: Mutex<Vec<String>>,
    pub bytes_sent: Mutex<u64>,
}

/// A fault-injecting reverse proxy in front of nginx: requests and Range headers pass
/// through; responses are altered as the test says.
pub async fn proxy(upstream: String) -> (String, Arc<ProxyState>) {
    let state = Arc::new(ProxyState { upstream, ..Default::default() });
    let app = axum::Router::new().route("/{*path}", axum::routing::get(forward)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), state)
}

async fn forward(
    State(s): State<Arc<ProxyState>>,
    UrlPath(path): UrlPath<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response<Body> {
    s.requests.lock().unwrap().push(path.clone());
    // The query and the x-amz-/authorization headers carry an object store's signatures
    // (presigned URLs, signed requests), which the store checks.
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let mut req = reqwest::Client::new().get(format!("{}/{path}{query}", s.upstream));
    for (h, v) in &headers {
        let name = h.as_str();
        if ["range", "if-range", "authorization"].contains(&name) || name.starts_with("x-amz-") {
            req = req.header(name, v.to_str().unwrap());
        }
    }
    let up = req.send().await.unwrap();
    let status = up.status();
    let mut out = Response::builder().status(status.as_u16());
    for h in ["content-type", "etag", "content-range", "last-modified", "accept-ranges"] {
        if let Some(v) = up.headers().get(h) {
            out = out.header(h, v.to_str().unwrap());
        }
    }
    let mut body = up.bytes().await.unwrap().to_vec();
    let fault = {
        let mut faults = s.faults.lock().unwrap();
        let pos = faults.iter().position(|f| f.times > 0 && path.ends_with(&f.path_contains));
        pos.map(|i| {
            faults[i].times -= 1;
            faults[i].kind.clone()
        })
    };
    let cut = |body: Vec<u8>, out: axum::http::response::Builder| {
        let half = body[..body.len() / 2].to_vec();
        let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(half), Err(std::io::Error::other("cut"))]);
        out.header("content-length", body.len()).body(Body::from_stream(stream)).unwrap()
    };
    match fault {
        Some(FaultKind::Corrupt) if !body.is_empty() => {
            let mid = body.len() / 2;
            body[mid] ^= 0x01;
        }
        Some(FaultKind::Truncate) => return cut(body, out),
        Some(FaultKind::ServerError) => {
            return Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body(Body::from("boom")).unwrap()
        }
        Some(FaultKind::Stall) => {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        Some(FaultKind::ChangeMidResume { file, replacement }) => {
            std::fs::write(file, replacement).unwrap();
            return cut(body, out);
        }
        Some(FaultKind::Replace(b)) => body = b,
        Some(FaultKind::Expired) => {
            let said = "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
            return Response::builder().status(StatusCode::FORBIDDEN).body(Body::from(said)).unwrap();
        }
        _ => {}
    }
    *s.bytes_sent.lock().unwrap() += body.len() as u64;
    out.header("content-length", body.len()).body(Body::from(body)).unwrap()
}

/// Every file under `a` equals the same file under `b`, and the same set of files.
pub fn same_tree(a: &Path, b: &Path) {
    let list = |root: &Path| {
        let mut v = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    v.push(e.path().strip_prefix(root).unwrap().to_path_buf());
                }
            }
        }
        v.sort();
        v
    };
    let (la, lb) = (list(a), list(b));
    assert_eq!(la, lb, "different files");
    for p in la {
        assert!(std::fs::read(a.join(&p)).unwrap() == std::fs::read(b.join(&p)).unwrap(), "{} differs", p.display());
    }
}

/// moto's S3 server (PyPI, installed by scripts/setup), killed when dropped.
pub struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts moto's S3 server on a free port and makes `bucket` in it; the server and its endpoint.
pub async fn moto(http: &reqwest::Client, bucket: &str) -> (Moto, String) {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with moto[server] (scripts/setup)");
    let moto = Moto(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        let made = http.put(format!("{endpoint}/{bucket}")).send().await;
        if made.map(|r| r.status().is_success()).unwrap_or(false) {
            return (moto, endpoint);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto S3 server did not start");
}
