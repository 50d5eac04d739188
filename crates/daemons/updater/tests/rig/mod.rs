//! A box on this machine for the updater's tests, built from real peers: Debian's RAUC
//! (its D-Bus service on a private bus, in a private mount namespace whose /proc/cmdline
//! says which slot booted) with file-backed slots, the real `minebox-tryboot` backend on a
//! FAT autoboot image, real nginx serving the channel, and the real `minebox-updater`.
//!
//! Test doubles, named as such: `reboot-double` (records that a reboot was asked for; a
//! test then "reboots" by restarting RAUC and the updater with new boot facts), and the
//! health check's peers (a TCP listener on the stratum port, nginx serving the status
//! page's and the supervisor's health answers), since the real services need coins.

#![allow(dead_code)]

use minebox_minisign::SecretKey;
use minebox_test_support::free_port;
use serde_json::Value;
use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const COMPATIBLE: &str = "minebox-rpi5";
/// Only a guard against a hung test; no test relies on how fast anything is.
const HANG_GUARD: Duration = Duration::from_secs(180);

pub struct Rig {
    pub dir: tempfile::TempDir,
    pub nginx_port: u16,
    pub api_port: u16,
    pub stratum_port: u16,
    /// Verity bundles (the image's format) when this kernel has device-mapper; plain
    /// bundles otherwise (RAUC mounts those with a loop device only).
    pub verity: bool,
    pub key: SecretKey,
    bus: Child,
    rauc: Option<Child>,
    nginx: Child,
    daemon: Option<Child>,
    stratum: Option<TcpListener>,
    pub options: Options,
}

/// Settings a test varies.
#[derive(Clone)]
pub struct Options {
    pub window: String,
    pub health_timeout_secs: u64,
    pub auto_install: bool,
    pub max_bundle_mib: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options { window: "any".into(), health_timeout_secs: 60, auto_install: false, max_bundle_mib: 64 }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The workspace's own minebox-tryboot (scripts/test builds every binary first).
fn tryboot_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let debug = exe.parent().unwrap().parent().unwrap();
    let bin = debug.join("minebox-tryboot");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        run(Command::new(cargo).args(["build", "-q", "-p", "minebox-tryboot"]));
    }
    assert!(bin.exists(), "{} not built", bin.display());
    bin
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..")
}

fn signal(child: &Child, sig: &str) {
    let _ = Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status();
}

impl Rig {
    /// A fresh box booted normally from slot A running version 1.0, or `None` (with the
    /// reason printed) when RAUC or nginx are missing outside CI. In CI they must exist.
    pub fn new() -> Option<Rig> {
        let needed = ["rauc", "nginx", "dbus-daemon", "mksquashfs", "mkfs.vfat", "mtype", "openssl", "unshare"];
        let missing: Vec<_> = needed.iter().filter(|t| !have(t)).collect();
        if !missing.is_empty() {
            let msg = format!("missing {missing:?} (scripts/setup.d/35-updates.sh installs them)");
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path();
        let verity = Path::new("/dev/mapper/control").exists();
        if !verity {
            eprintln!("note: no device-mapper here; using plain RAUC bundles (verity needs dm-verity)");
        }
        for d in [
            "data",
            "mnt",
            "dt",
            "slots",
            "state",
            "keys",
            "usb",
            "www/v1/stable",
            "www/bundles",
            "www/slow",
            "www/status",
            "www/api/v1",
            "ngx",
        ] {
            std::fs::create_dir_all(w.join(d)).unwrap();
        }
        // The image's system.conf (as the shared post-build fills it in for the Pi) with
        // paths moved into the test directory.
        let conf = std::fs::read_to_string(repo().join("buildroot-external/board/common/rauc/system.conf")).unwrap();
        let mut conf = conf
            .replace("@BOARD_COMPATIBLE@", COMPATIBLE)
            .replace("/dev/disk/by-partuuid/", &format!("{}/slots/", w.display()))
            .replace("/data/rauc", &w.join("data").display().to_string())
            .replace("/etc/rauc/keyring.pem", &w.join("release.pem").display().to_string())
            .replace("/run/rauc", &w.join("mnt").display().to_string())
            .replace("/usr/bin/minebox-tryboot", &w.join("backend").display().to_string());
        conf = conf
            .lines()
            .map(|l| if l.starts_with("device=") { format!("{l}.img") } else { l.to_string() })
            .collect::<Vec<_>>()
            .join("\n");
        if !verity {
            conf = conf.replace("bundle-formats=-plain", "bundle-formats=plain");
        }
        std::fs::write(w.join("system.conf"), conf).unwrap();
        for n in 2..=5 {
            let f = std::fs::File::create(w.join(format!("slots/6d696e65-626f-7800-0000-00000000000{n}.img"))).unwrap();
            f.set_len(8 << 20).unwrap();
        }
        run(Command::new("mkfs.vfat").args(["-n", "AUTOBOOT", "-C"]).arg(w.join("autoboot.vfat")).arg("16384"));
        let tryboot = tryboot_bin();
        script(
            &w.join("backend"),
            &format!(
                "MINEBOX_AUTOBOOT_IMAGE={0}/autoboot.vfat MINEBOX_BOOTLOADER_DT={0}/dt exec {1} \"$@\"",
                w.display(),
                tryboot.display()
            ),
        );
        run(Command::new(w.join("backend")).arg("init"));
        script(&w.join("reboot-double"), &format!("echo \"$*\" >>{}/reboots.log", w.display()));
        for signer in ["release", "attacker"] {
            run(Command::new("openssl")
                .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30", "-keyout"])
                .arg(w.join(format!("{signer}.key")))
                .arg("-out")
                .arg(w.join(format!("{signer}.pem")))
                .args(["-subj", &format!("/O=MineBox/CN={signer}")]));
        }
        // The channel's signing key, pinned like the image pins it.
        let key = SecretKey::generate();
        std::fs::write(w.join("keys/update-release.pub"), key.public().to_file()).unwrap();
        std::fs::write(w.join("update.key"), key.to_file()).unwrap();
        std::fs::set_permissions(w.join("update.key"), std::fs::Permissions::from_mode(0o600)).unwrap();

        std::fs::write(
            w.join("bus.conf"),
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={}/bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>
<allow receive_sender="*"/></policy></busconfig>"#,
                w.display()
            ),
        )
        .unwrap();
        let bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}/bus.conf", w.display()))
            .arg("--nofork")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();

        // The health check's peers (see the module comment).
        std::fs::write(w.join("www/status/healthz"), "ok\n").unwrap();
        std::fs::write(w.join("www/api/v1/nodes"), "[]\n").unwrap();
        let nginx_port = free_port();
        std::fs::write(
            w.join("nginx.conf"),
            format!(
                r#"daemon off;
user root;
worker_processes 1;
pid {w}/nginx.pid;
error_log {w}/nginx-error.log;
events {{ worker_connections 64; }}
http {{
  log_format ranges '$request_uri $status range=$http_range sent=$body_bytes_sent';
  access_log {w}/access.log ranges;
  client_body_temp_path {w}/ngx/body;
  proxy_temp_path {w}/ngx/proxy;
  fastcgi_temp_path {w}/ngx/fastcgi;
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{nginx_port};
    root {w}/www;
    location /slow/ {{ limit_rate 256k; }}
  }}
}}
"#,
                w = w.display()
            ),
        )
        .unwrap();
        let nginx = Command::new("nginx")
            .arg("-p")
            .arg(w)
            .arg("-c")
            .arg(w.join("nginx.conf"))
            .arg("-e")
            .arg(w.join("nginx-error.log"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut rig = Rig {
            dir,
            nginx_port,
            api_port: free_port(),
            stratum_port: free_port(),
            verity,
            key,
            bus,
            rauc: None,
            nginx,
            daemon: None,
            stratum: None,
            options: Options::default(),
        };
        rig.wait_until("nginx answers", || std::net::TcpStream::connect(("127.0.0.1", nginx_port)).is_ok());
        rig.wait_until("the private bus is up", || rig.path("bus").exists());
        rig.boot('A', false, "1.0");
        Some(rig)
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn wait_until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let start = std::time::Instant::now();
        while !f() {
            assert!(start.elapsed() < HANG_GUARD, "waited too long for {what}; {}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn logs(&self) -> String {
        let read = |p: &str| std::fs::read_to_string(self.path(p)).unwrap_or_default();
        format!("\n--- updater log ---\n{}\n--- rauc log ---\n{}", read("daemon.log"), read("rauc.log"))
    }

    fn bus_env(&self) -> String {
        format!("unix:path={}", self.path("bus").display())
    }

    /// What the firmware and the kernel would tell this boot, and RAUC restarted to see it.
    pub fn boot(&mut self, slot: char, trial: bool, version: &str) {
        let part: u8 = if slot == 'A' { 2 } else { 3 };
        std::fs::write(self.path("dt/partition"), [0, 0, 0, part]).unwrap();
        std::fs::write(self.path("dt/tryboot"), [0, 0, 0, trial as u8]).unwrap();
        std::fs::write(self.path("cmdline"), format!("console=ttyAMA10 root=PARTUUID=x rauc.slot={slot}\n")).unwrap();
        std::fs::write(self.path("os-release"), format!("NAME=MineBox\nVERSION_ID={version}\n")).unwrap();
        if let Some(mut c) = self.rauc.take() {
            signal(&c, "TERM");
            let _ = c.wait();
        }
        let log = std::fs::File::create(self.path("rauc.log")).unwrap();
        let child = Command::new("unshare")
            .args(["-m", "sh", "-c"])
            .arg(format!(
                "mount --bind {w}/cmdline /proc/cmdline && exec rauc --conf={w}/system.conf service",
                w = self.dir.path().display()
            ))
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_env())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.rauc = Some(child);
        let bus = self.bus_env();
        self.wait_until("the RAUC service", || {
            Command::new("rauc")
                .arg("status")
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
    }

    /// Miners could connect (the stratum port listens), or not.
    pub fn stratum_up(&mut self, up: bool) {
        self.stratum = up.then(|| TcpListener::bind(("127.0.0.1", self.stratum_port)).unwrap());
    }

    fn write_settings(&self) {
        let o = &self.options;
        let w = self.dir.path().display();
        let text = format!(
            r#"[supervisor]
api = "127.0.0.1:{ng}"
[coins.btc]
enabled = true
network = "regtest"
payout_address = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080"
stratum_port = {stratum}
[updates]
manifest_url = "http://127.0.0.1:{ng}/v1/{{channel}}/{{compatible}}.json"
keys = "{w}/keys"
auto_install = {auto}
reboot_window = "{window}"
api = "127.0.0.1:{api}"
health_timeout_secs = {timeout}
health_units = []
max_bundle_mib = {max_mib}
status_url = "http://127.0.0.1:{ng}/status"
usb_dir = "{w}/usb"
state_dir = "{w}/state"
os_release = "{w}/os-release"
rauc = "rauc"
rauc_system_conf = "{w}/system.conf"
tryboot = "{w}/backend"
reboot_command = ["{w}/reboot-double", "0 tryboot"]
rollback_command = ["{w}/reboot-double", "normal"]
"#,
            ng = self.nginx_port,
            stratum = self.stratum_port,
            api = self.api_port,
            auto = o.auto_install,
            window = o.window,
            timeout = o.health_timeout_secs,
            max_mib = o.max_bundle_mib,
        );
        std::fs::write(self.path("minebox.toml"), text).unwrap();
    }

    /// Starts the updater (as systemd would) and waits for its API.
    pub fn start(&mut self) {
        assert!(self.daemon.is_none());
        self.write_settings();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.path("daemon.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_minebox-updater"))
            .arg("--config")
            .arg(self.path("minebox.toml"))
            .arg("--defaults")
            .arg(repo().join("buildroot-external/overlay/etc/minebox/defaults.toml"))
            .env("DBUS_SYSTEM_BUS_ADDRESS", self.bus_env())
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        let port = self.api_port;
        self.wait_until("the updater API", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    }

    /// Stops the updater: SIGTERM (clean) or SIGKILL (a crash or power cut).
    pub fn stop(&mut self, sig: &str) -> Option<std::process::ExitStatus> {
        let mut c = self.daemon.take()?;
        signal(&c, sig);
        c.wait().ok()
    }

    /// Simulates the reboot the double recorded: the updater and RAUC start again with
    /// the new boot facts.
    pub fn reboot_into(&mut self, slot: char, trial: bool, version: &str) {
        self.stop("TERM");
        self.boot(slot, trial, version);
        self.start();
    }

    /// A real RAUC bundle of `version` with a random 1 MiB root filesystem.
    pub fn bundle(&self, version: &str, signer: &str, payload_mib: usize) -> PathBuf {
        let src = self.path(&format!("bundle-{version}-{signer}"));
        std::fs::create_dir_all(&src).unwrap();
        let mut img = std::fs::File::create(src.join("rootfs.img")).unwrap();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15 ^ version.len() as u64;
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..payload_mib {
            for b in buf.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = seed as u8;
            }
            img.write_all(&buf).unwrap();
        }
        let format = if self.verity { "verity" } else { "plain" };
        std::fs::write(
            src.join("manifest.raucm"),
            format!("[update]\ncompatible={COMPATIBLE}\nversion={version}\n[bundle]\nformat={format}\n[image.rootfs]\nfilename=rootfs.img\n"),
        )
        .unwrap();
        let out = self.path(&format!("{version}-{signer}.raucb"));
        run(Command::new("rauc")
            .arg(format!("--cert={}", self.path(&format!("{signer}.pem")).display()))
            .arg(format!("--key={}", self.path(&format!("{signer}.key")).display()))
            .arg("bundle")
            .arg(&src)
            .arg(&out));
        out
    }

    /// Publishes `bundle` on the channel under `www/<dir>/`, with a manifest signed by the
    /// pinned key (through the signing command).
    pub fn publish(&self, bundle: &Path, version: &str, dir: &str) {
        let name = bundle.file_name().unwrap().to_str().unwrap();
        std::fs::copy(bundle, self.path(&format!("www/{dir}/{name}"))).unwrap();
        run(Command::new(env!("CARGO_BIN_EXE_minebox-update-manifest"))
            .arg("--bundle")
            .arg(bundle)
            .args(["--version", version, "--compatible", COMPATIBLE])
            .arg("--url")
            .arg(format!("http://127.0.0.1:{}/{dir}/{name}", self.nginx_port))
            .arg("--key")
            .arg(self.path("update.key"))
            .arg("--out")
            .arg(self.path("www/v1/stable")));
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.path(&format!("www/v1/stable/{COMPATIBLE}.json"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    pub async fn get(&self, path: &str) -> Value {
        reqwest::get(self.url(path)).await.unwrap().json().await.unwrap()
    }

    /// POST; the status code and the JSON answer.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let c = reqwest::Client::new();
        let mut req = c.post(self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(Value::Null))
    }

    /// Polls the status until `pred` holds.
    pub async fn wait_status(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = std::time::Instant::now();
        loop {
            if let Ok(r) = reqwest::get(self.url("/api/v1/update")).await {
                if let Ok(v) = r.json::<Value>().await {
                    if pred(&v) {
                        return v;
                    }
                    assert!(start.elapsed() < HANG_GUARD, "waited too long for {what}: {v:#}{}", self.logs());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `boot_partition` of an autoboot.txt section as the firmware reads it.
    pub fn firmware(&self, section: &str) -> u8 {
        let text = run(Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(self.path("autoboot.vfat"))
            .arg("::autoboot.txt"));
        let mut in_section = false;
        for l in text.lines() {
            if l.starts_with('[') {
                in_section = l == section;
            } else if in_section {
                if let Some(v) = l.strip_prefix("boot_partition=") {
                    return v.trim().parse().unwrap();
                }
            }
        }
        panic!("no boot_partition in {section}: {text}");
    }

    pub fn autoboot_text(&self) -> String {
        run(Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(self.path("autoboot.vfat"))
            .arg("::autoboot.txt"))
    }

    /// Every reboot the double was asked for.
    pub fn reboots(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("reboots.log")).unwrap_or_default().lines().map(String::from).collect()
    }

    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.path("access.log")).unwrap_or_default()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop("KILL");
        if let Some(mut c) = self.rauc.take() {
            signal(&c, "TERM");
            let _ = c.wait();
        }
        signal(&self.nginx, "TERM");
        let _ = self.nginx.wait();
        let _ = self.bus.kill();
        let _ = self.bus.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
    }
}

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
