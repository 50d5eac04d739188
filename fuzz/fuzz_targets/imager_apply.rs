//! Raspberry Pi Imager's customisation parser: the shipped POSIX shell script
//! buildroot-external/overlay/usr/libexec/minebox/imager-apply (sed/awk reading Imager's cloud-init YAML),
//! run for real on the fuzzed user-data and network-config with a scratch DATA_DIR.
//!
//! Input: the first byte chooses the shell (bit 0: bash in POSIX mode, /bin/sh on the Pi;
//! else dash, /bin/sh on the twin), the locale (bit 1: C.UTF-8, else C, systemd's default)
//! and whether network-config exists (bit 2); the rest is user-data, then a NUL, then
//! network-config.
//!
//! Contract (what the script's header promises): it exits 0, or 1 after saying it refuses
//! the user; it writes only the files it is for, inside DATA_DIR; and every value it writes
//! is one the script's own rules accept and the consumer reads as one value: a valid host
//! name, a keymap name, a user name that is not root with a crypt hash (no JSON or line
//! injection into the user record), SSH keys of the allowed types, a Wi-Fi network with a
//! hex SSID, a country code, and a passphrase wpa_supplicant accepts.
//!
//! One process tree per input: expect tens of executions per second.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../buildroot-external/overlay/usr/libexec/minebox/imager-apply")
}

fn is_hostname(s: &[u8]) -> bool {
    let ok = |b: &u8| b.is_ascii_alphanumeric();
    (1..=63).contains(&s.len())
        && ok(&s[0])
        && ok(&s[s.len() - 1])
        && s.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

fn is_user(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=31).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
        && s != "root"
}

/// A key line: an allowed type, base64, then any comment (sshd does not read it).
fn is_ssh_key(line: &[u8]) -> bool {
    let mut parts = line.splitn(3, |&b| b == b' ');
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else { return false };
    let kinds: [&[u8]; 7] = [
        b"ssh-ed25519",
        b"ssh-rsa",
        b"ecdsa-sha2-nistp256",
        b"ecdsa-sha2-nistp384",
        b"ecdsa-sha2-nistp521",
        b"sk-ssh-ed25519@openssh.com",
        b"sk-ecdsa-sha2-nistp256@openssh.com",
    ];
    kinds.contains(&kind) && !blob.is_empty() && blob.iter().all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b))
}

/// Reads a file the script wrote; panics with its name if it is not there.
fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn text(p: &Path) -> String {
    String::from_utf8(read(p)).unwrap_or_else(|_| panic!("{} is not UTF-8", p.display()))
}

/// Every path under `dir`, relative, directories included.
fn walk(dir: &Path, rel: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let r = rel.join(e.file_name());
        let ft = e.file_type().expect("file type");
        out.push(r.clone());
        if ft.is_dir() {
            walk(&e.path(), &r, out);
        }
    }
}

/// The Wi-Fi file, as bytes: a passphrase may be any bytes wpa_supplicant accepts.
fn check_wpa(conf: &[u8]) {
    let shown = String::from_utf8_lossy(conf);
    assert!(conf.ends_with(b"\n"), "wpa_supplicant.conf: {shown:?}");
    let lines: Vec<&[u8]> = conf[..conf.len() - 1].split(|&b| b == b'\n').collect();
    let mut i = 0;
    assert_eq!(lines[i], b"ctrl_interface=/run/wpa_supplicant", "{shown:?}");
    i += 1;
    if let Some(c) = lines[i].strip_prefix(b"country=") {
        assert!(c.len() == 2 && c.iter().all(|b| b.is_ascii_uppercase()), "country in {shown:?}");
        i += 1;
    }
    assert!(lines.len() == i + 4, "wpa_supplicant.conf has other lines: {shown:?}");
    assert_eq!(lines[i], b"network={", "{shown:?}");
    let ssid = lines[i + 1].strip_prefix(b"\tssid=").unwrap_or_else(|| panic!("ssid line in {shown:?}"));
    assert!(!ssid.is_empty() && ssid.len() % 2 == 0 && ssid.iter().all(|b| b.is_ascii_hexdigit()), "ssid in {shown:?}");
    let psk = lines[i + 2].strip_prefix(b"\tpsk=").unwrap_or_else(|| panic!("psk line in {shown:?}"));
    if let Some(q) = psk.strip_prefix(b"\"") {
        let pass = q.strip_suffix(b"\"").unwrap_or_else(|| panic!("psk in {shown:?}"));
        // wpa_supplicant's own rule for a passphrase: 8..63 bytes, no control characters.
        assert!((8..=63).contains(&pass.len()), "passphrase of {} bytes written: {shown:?}", pass.len());
        assert!(!pass.contains(&b'"'), "passphrase with a quote: {shown:?}");
        assert!(!pass.iter().any(|&b| b < 0x20 || b == 0x7f), "passphrase with a control character: {shown:?}");
    } else {
        assert!(psk.len() == 64 && psk.iter().all(|b| b.is_ascii_hexdigit()), "psk in {shown:?}");
    }
    assert_eq!(lines[i + 3], b"}", "{shown:?}");
}

fn check_output(data: &Path) {
    let mut paths = Vec::new();
    walk(data, Path::new(""), &mut paths);
    let user = paths
        .iter()
        .filter_map(|p| p.strip_prefix("etc/userdb").ok()?.to_str()?.strip_suffix(".user").map(str::to_string))
        .find(|n| n != "1000");
    let mut allowed: Vec<String> = [
        "etc",
        "minebox",
        "etc/hostname",
        "etc/localtime",
        "etc/vconsole.conf",
        "minebox/ssh-enabled",
        "etc/wpa_supplicant",
        "etc/wpa_supplicant/wpa_supplicant-wlan0.conf",
    ]
    .map(String::from)
    .to_vec();
    if let Some(name) = &user {
        assert!(is_user(name), "user record for a refused name {name:?}");
        for p in [
            "etc/userdb",
            "etc/ssh",
            "etc/ssh/authorized_keys",
            "home",
            "etc/userdb/1000.user",
            "etc/userdb/1000.group",
        ] {
            allowed.push(p.into());
        }
        for p in ["etc/userdb/{}.user", "etc/userdb/{}.group", "etc/ssh/authorized_keys/{}", "home/{}"] {
            allowed.push(p.replace("{}", name));
        }
    }
    for p in &paths {
        let s = p.to_str().unwrap_or_else(|| panic!("a non-UTF-8 path {p:?} written"));
        assert!(allowed.iter().any(|a| a == s), "wrote {s:?}, which the script is not for");
    }
    let f = data.join("etc/hostname");
    if f.exists() {
        let h = read(&f);
        assert!(
            h.ends_with(b"\n") && is_hostname(&h[..h.len() - 1]),
            "hostname written: {:?}",
            String::from_utf8_lossy(&h)
        );
    }
    let f = data.join("etc/vconsole.conf");
    if f.exists() {
        let v = text(&f);
        let km = v
            .strip_prefix("KEYMAP=")
            .and_then(|k| k.strip_suffix('\n'))
            .unwrap_or_else(|| panic!("vconsole.conf {v:?}"));
        assert!((2..=8).contains(&km.len()) && km.bytes().all(|b| b.is_ascii_lowercase()), "keymap {km:?}");
    }
    let f = data.join("etc/localtime");
    if let Ok(target) = std::fs::read_link(&f) {
        let t = target.to_str().expect("UTF-8 link");
        let zone = t.strip_prefix("/usr/share/zoneinfo/").unwrap_or_else(|| panic!("localtime -> {t:?}"));
        assert!(
            zone.split('/')
                .all(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+-".contains(&b))),
            "time zone {zone:?}"
        );
    }
    let f = data.join("minebox/ssh-enabled");
    if f.exists() {
        assert!(read(&f).is_empty());
    }
    if let Some(name) = &user {
        let rec_path = data.join(format!("etc/userdb/{name}.user"));
        let rec = text(&rec_path);
        assert_eq!(std::fs::metadata(&rec_path).expect("user record").permissions().mode() & 0o777, 0o600);
        assert!(rec.ends_with('\n') && rec.matches('\n').count() == 1, "user record spans lines: {rec:?}");
        let v: serde_json::Value =
            serde_json::from_str(&rec).unwrap_or_else(|e| panic!("user record is not JSON ({e}): {rec}"));
        let o = v.as_object().expect("user record is an object");
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort();
        let mut expected = vec!["disposition", "gid", "homeDirectory", "realName", "shell", "uid", "userName"];
        if o.contains_key("privileged") {
            expected.push("privileged");
            expected.sort();
            let hashes = v["privileged"]["hashedPassword"].as_array().expect("hashedPassword");
            assert_eq!(hashes.len(), 1);
            let h = hashes[0].as_str().expect("hash");
            assert!(
                h.starts_with('$') && h.bytes().all(|b| b.is_ascii_alphanumeric() || b"$./".contains(&b)),
                "hash {h:?}"
            );
            assert_eq!(v["privileged"].as_object().map(|p| p.len()), Some(1));
        }
        assert_eq!(keys, expected, "user record fields: {rec}");
        assert_eq!(v["userName"], name.as_str());
        assert_eq!(v["uid"], 1000);
        assert_eq!(v["gid"], 1000);
        assert_eq!(v["homeDirectory"], format!("/data/home/{name}"));
        let group = text(&data.join(format!("etc/userdb/{name}.group")));
        assert_eq!(group, format!("{{\"groupName\":\"{name}\",\"gid\":1000}}\n"));
        let keys_path = data.join(format!("etc/ssh/authorized_keys/{name}"));
        if keys_path.exists() {
            let k = read(&keys_path);
            assert!(!k.is_empty() && k.ends_with(b"\n"));
            for line in k[..k.len() - 1].split(|&b| b == b'\n') {
                assert!(is_ssh_key(line), "authorized_keys line {:?}", String::from_utf8_lossy(line));
            }
        }
        assert_eq!(
            std::fs::read_link(data.join("etc/userdb/1000.user")).expect("alias"),
            Path::new(&format!("{name}.user"))
        );
    }
    let f = data.join("etc/wpa_supplicant/wpa_supplicant-wlan0.conf");
    if f.exists() {
        check_wpa(&read(&f));
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&flags, rest)) = input.split_first() else { return };
    // Imager's files are a few KiB.
    if rest.len() > 16 * 1024 {
        return;
    }
    let (ud, nc) = match rest.iter().position(|&b| b == 0) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let work = tempfile::tempdir().expect("scratch directory");
    let (ud_path, nc_path, data) =
        (work.path().join("user-data"), work.path().join("network-config"), work.path().join("data"));
    std::fs::write(&ud_path, ud).expect("user-data");
    if flags & 4 == 0 {
        std::fs::write(&nc_path, nc).expect("network-config");
    }
    let mut cmd = if flags & 1 == 1 {
        let mut c = Command::new("bash");
        c.arg("--posix");
        c
    } else {
        Command::new("dash")
    };
    let mut child = cmd
        .arg(script())
        .args([&ud_path, &nc_path, &data])
        .current_dir(work.path())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", if flags & 2 == 2 { "C.UTF-8" } else { "C" })
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imager-apply");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("imager-apply still running after 20 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    // The script echoes refused values into its log: any bytes.
    let mut log = Vec::new();
    child.stderr.take().expect("stderr").read_to_end(&mut log).expect("read the log");
    let log = String::from_utf8_lossy(&log);
    match status.code() {
        Some(0) => {}
        Some(1) => assert!(log.contains("refusing"), "exit 1 without a refusal: {log}"),
        other => panic!("imager-apply exited with {other:?}: {log}"),
    }
    // Nothing beside the three paths it was given.
    let mut top: Vec<String> = std::fs::read_dir(work.path())
        .expect("scratch")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    top.retain(|n| !["data", "network-config", "user-data"].contains(&n.as_str()));
    assert!(top.is_empty(), "wrote {top:?} outside DATA_DIR");
    check_output(&data);
});
