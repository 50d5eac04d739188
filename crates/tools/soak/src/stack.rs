//! The box on this machine: the release binaries of the supervisor (running Bitcoin Core
//! regtest as a managed node, ZMQ and all), the stratum server, the snapshot agent, the
//! updater and the status page, all reading one settings file, as on the Pi. Everything
//! listens on 127.0.0.1, on ports chosen free at start.

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// BIP173's regtest example address: the payout address of the soak box.
pub const PAYOUT: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";
/// Where blocks made outside the stratum server (generatetoaddress) pay: another script, so
/// the page's block list tells them apart.
pub const OTHER: &str = "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn";
pub const ADMIN_PASSWORD: &str = "soak-admin-password-1";

pub struct Ports {
    pub stratum: u16,
    pub stratum_api: u16,
    pub supervisor_api: u16,
    pub snapshots_api: u16,
    pub updates_api: u16,
    pub web: u16,
    pub rpc: u16,
    pub p2p: u16,
    pub zmq: u16,
}

impl Ports {
    fn pick() -> anyhow::Result<Ports> {
        // Held together so no two are the same.
        let held: Vec<TcpListener> =
            (0..9).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>().context("free ports")?;
        let p: Vec<u16> = held.iter().map(|l| l.local_addr().map(|a| a.port())).collect::<Result<_, _>>()?;
        drop(held);
        Ok(Ports {
            stratum: p[0],
            stratum_api: p[1],
            supervisor_api: p[2],
            snapshots_api: p[3],
            updates_api: p[4],
            web: p[5],
            rpc: p[6],
            p2p: p[7],
            zmq: p[8],
        })
    }
}

pub struct Service {
    pub name: &'static str,
    pub child: Child,
}

pub struct Stack {
    pub ports: Ports,
    pub state: PathBuf,
    pub services: std::sync::Mutex<Vec<Service>>,
    pub http: reqwest::Client,
}

pub struct Binaries {
    pub dir: PathBuf,
    pub bitcoind: PathBuf,
}

impl Binaries {
    fn path(&self, name: &str) -> anyhow::Result<PathBuf> {
        let p = self.dir.join(name);
        if !p.exists() {
            bail!("{} is missing: build the release binaries first (scripts/soak does)", p.display());
        }
        Ok(p)
    }
}

fn settings(state: &Path, ports: &Ports, bitcoind: &Path) -> String {
    let s = state.display();
    format!(
        r#"# Written by minebox-soak: a box on this machine, everything on 127.0.0.1.
[paths]
nodes = "{s}/nodes"
secrets = "{s}/secrets"
state = "{s}/state.db"
[stratum]
api = "127.0.0.1:{stratum_api}"
[supervisor]
api = "127.0.0.1:{supervisor_api}"
backend = "process"
[snapshots]
# Nothing leaves this machine.
enabled = false
url = "http://127.0.0.1:9/v1"
api = "127.0.0.1:{snapshots_api}"
[updates]
auto_install = false
api = "127.0.0.1:{updates_api}"
state_dir = "{s}/updater"
os_release = "{s}/os-release"
rauc_system_conf = "{s}/rauc-system.conf"
keys = "{s}/keys"
usb_dir = "{s}/usb"
manifest_url = "http://127.0.0.1:9/{{channel}}/{{compatible}}.json"
status_url = "http://127.0.0.1:{web}"
[status]
listen = "127.0.0.1:{web}"
accounts = "{s}/secrets/status-accounts"
apply = []
[coins.btc]
enabled = true
network = "regtest"
payout_address = "{PAYOUT}"
stratum_port = {stratum}
# The stratum server runs with 1e-10 from its flags (see stack.rs); these are for the page.
start_difficulty = 1e-9
min_difficulty = 1e-9
max_difficulty = 1e-9
shares_per_minute = 6
prune_mib = 0
node_flavour = "bitcoin-core"
node_command = ["{bitcoind}"]
rpc_port = {rpc}
p2p_port = {p2p}
zmq_port = {zmq}
"#,
        stratum_api = ports.stratum_api,
        supervisor_api = ports.supervisor_api,
        snapshots_api = ports.snapshots_api,
        updates_api = ports.updates_api,
        web = ports.web,
        stratum = ports.stratum,
        bitcoind = bitcoind.display(),
        rpc = ports.rpc,
        p2p = ports.p2p,
        zmq = ports.zmq,
    )
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !f().await {
        if started.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

impl Stack {
    pub async fn start(bins: &Binaries, state: &Path, logs: &Path) -> anyhow::Result<Stack> {
        let ports = Ports::pick()?;
        for d in ["keys", "usb", "updater", "nodes", "secrets"] {
            std::fs::create_dir_all(state.join(d))?;
        }
        std::fs::write(state.join("os-release"), "IMAGE_VERSION=dev\nVERSION_ID=dev\n")?;
        std::fs::write(state.join("rauc-system.conf"), "[system]\ncompatible=minebox-dev\n")?;
        let config = state.join("minebox.toml");
        std::fs::write(&config, settings(state, &ports, &bins.bitcoind))?;
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build()?;
        let mut stack = Stack { ports, state: state.to_path_buf(), services: Default::default(), http };
        let cfg = config.display().to_string();

        stack.spawn(bins, logs, "minebox-supervisor", &["--config", &cfg])?;
        // The supervisor writes the RPC cookie and starts bitcoind.
        let cookie = stack.cookie_path();
        wait_for("bitcoind's RPC (started by the supervisor)", Duration::from_secs(120), || async {
            cookie.exists() && stack.rpc("getblockcount", json!([])).await.is_ok()
        })
        .await?;
        // A fresh regtest chain is in initial download (its tip is the 2011 genesis), and Core
        // gives no block template then: one block ends it.
        stack.rpc("generatetoaddress", json!([1, OTHER])).await.context("first regtest block")?;
        let sup = format!("http://127.0.0.1:{}/api/v1/nodes/btc", stack.ports.supervisor_api);
        wait_for("the supervisor to report the node synced", Duration::from_secs(120), || async {
            stack.get_json(&sup).await.map(|v| v["state"] == "synced").unwrap_or(false)
        })
        .await?;

        // The stratum server gets the settings file's values as flags, for one reason: the
        // settings check refuses share difficulties below 1e-9 (sane for real miners), and
        // regtest's network difficulty is 4.7e-10, so at 1e-9 every share would be a block.
        // Flags mode takes 1e-10; node, cookie, ZMQ endpoint, supervisor events, database,
        // API and limits are what settings mode would use.
        let listen = format!("127.0.0.1:{}", stack.ports.stratum);
        let api = format!("127.0.0.1:{}", stack.ports.stratum_api);
        let node = format!("http://127.0.0.1:{}/", stack.ports.rpc);
        let cookie = stack.cookie_path().display().to_string();
        let zmq = format!("tcp://127.0.0.1:{}", stack.ports.zmq);
        let events = format!("{}/api/v1/events", stack.supervisor_api());
        let db = state.join("state.db").display().to_string();
        #[rustfmt::skip]
        let flags = [
            "--coin", "btc", "--network", "regtest", "--listen", &listen, "--api", &api,
            "--node-url", &node, "--node-cookie", &cookie, "--zmq-hashblock", &zmq,
            "--supervisor-events", &events, "--database", &db,
            "--start-difficulty", "1e-10", "--min-difficulty", "1e-10", "--max-difficulty", "1e-10",
            "--shares-per-minute", "6",
        ];
        stack.spawn(bins, logs, "minebox-stratum", &flags)?;
        let port = stack.ports.stratum;
        wait_for("the stratum server to listen", Duration::from_secs(60), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await?;
        let keys = state.join("keys").display().to_string();
        stack.spawn(bins, logs, "minebox-snapshot-agent", &["--config", &cfg, "--keys", &keys])?;
        stack.spawn(bins, logs, "minebox-updater", &["--config", &cfg])?;
        let data = state.display().to_string();
        stack.spawn(bins, logs, "minebox-status", &["--config", &cfg, "--data-dir", &data])?;
        let health = format!("{}/api/v1/health", stack.web());
        wait_for("the status page", Duration::from_secs(60), || async { stack.get_json(&health).await.is_ok() })
            .await?;
        // The first visit chooses the admin password.
        let r = stack
            .http
            .post(format!("{}/api/v1/auth/setup", stack.web()))
            .json(&json!({ "password": ADMIN_PASSWORD }))
            .send()
            .await?;
        if !r.status().is_success() {
            bail!(
                "setting the admin password on the status page: {} {}",
                r.status(),
                r.text().await.unwrap_or_default()
            );
        }
        Ok(stack)
    }

    fn spawn(&mut self, bins: &Binaries, logs: &Path, name: &'static str, args: &[&str]) -> anyhow::Result<()> {
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = Command::new(bins.path(name)?)
            .args(args)
            .env("RUST_LOG", std::env::var("MINEBOX_SOAK_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.services.get_mut().expect("services").push(Service { name, child });
        Ok(())
    }

    pub fn web(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.web)
    }

    pub fn stratum_addr(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.stratum))
    }

    pub fn supervisor_api(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.supervisor_api)
    }

    fn cookie_path(&self) -> PathBuf {
        self.state.join("secrets/btc-rpc.cookie")
    }

    async fn get_json(&self, url: &str) -> anyhow::Result<Value> {
        let r = self.http.get(url).send().await?.error_for_status()?;
        Ok(r.json().await?)
    }

    /// One JSON-RPC call to the node with the credentials the supervisor wrote.
    pub async fn rpc(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let cookie = std::fs::read_to_string(self.cookie_path())?;
        let (user, pass) = cookie.trim().split_once(':').context("cookie file is user:password")?;
        let r = self
            .http
            .post(format!("http://127.0.0.1:{}/", self.ports.rpc))
            .basic_auth(user, Some(pass))
            .json(&json!({"jsonrpc": "1.0", "id": 1, "method": method, "params": params}))
            .send()
            .await?;
        let v: Value = r.json().await?;
        if !v["error"].is_null() {
            bail!("{method}: {}", v["error"]);
        }
        Ok(v["result"].clone())
    }

    /// The node's process id, as the supervisor reports it.
    pub async fn node_pid(&self) -> Option<u32> {
        let v = self.get_json(&format!("{}/api/v1/nodes/btc", self.supervisor_api())).await.ok()?;
        v["pid"].as_u64().map(|p| p as u32)
    }

    pub async fn node_state(&self) -> String {
        match self.get_json(&format!("{}/api/v1/nodes/btc", self.supervisor_api())).await {
            Ok(v) => v["state"].as_str().unwrap_or("?").to_string(),
            Err(e) => format!("supervisor API: {e}"),
        }
    }

    /// Stops the node through the supervisor (it uses the node's stop RPC) and starts it.
    pub async fn restart_node(&self) -> anyhow::Result<()> {
        let base = format!("{}/api/v1/nodes/btc", self.supervisor_api());
        self.http.post(format!("{base}/stop")).send().await?.error_for_status()?;
        wait_for("the node to stop", Duration::from_secs(90), || async { self.node_state().await == "stopped" })
            .await?;
        self.http.post(format!("{base}/start")).send().await?.error_for_status()?;
        self.wait_synced().await
    }

    /// Kills the node (a crash); the supervisor starts it again.
    pub async fn crash_node(&self) -> anyhow::Result<()> {
        let pid = self.node_pid().await.context("no node pid from the supervisor")?;
        let _ = minebox_platform::process::send(pid, minebox_platform::process::Signal::SIGKILL);
        wait_for("the supervisor to notice the crash", Duration::from_secs(30), || async {
            self.node_pid().await != Some(pid)
        })
        .await?;
        self.wait_synced().await
    }

    pub async fn wait_synced(&self) -> anyhow::Result<()> {
        wait_for("the node to be synced again", Duration::from_secs(180), || async {
            self.node_state().await == "synced"
        })
        .await
    }

    /// Name and pid of every service started.
    pub fn pids(&self) -> Vec<(String, u32)> {
        self.services
            .lock()
            .expect("services")
            .iter()
            .filter_map(|s| Some((s.name.to_string(), s.child.id()?)))
            .collect()
    }

    /// The first service that has exited, if any.
    pub fn exited(&self) -> Option<String> {
        for s in self.services.lock().expect("services").iter_mut() {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Some(format!("{} exited: {status}", s.name));
            }
        }
        None
    }

    /// SIGTERM in reverse start order, as systemd stops the box; SIGKILL after 20 s.
    pub async fn stop(&self) {
        loop {
            let Some(mut s) = self.services.lock().expect("services").pop() else { break };
            let stopped = minebox_platform::process::terminate(&mut s.child, Duration::from_secs(20)).await;
            if stopped.is_ok_and(|s| s.killed) {
                eprintln!("soak: {} did not stop within 20 s of SIGTERM; killed it", s.name);
            }
        }
    }
}
