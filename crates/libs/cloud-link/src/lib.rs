//! The box's side of linking it to MineBox Cloud (issue 16, point 4; docs/cloud.md, "Devices
//! and pairing").
//!
//! - [`DeviceKey`]: the box's Ed25519 key, made on first use and kept in a 32-byte seed file on
//!   /data (mode 0640, group `minebox-cloud`: the status page and the snapshot agent). It never leaves the box: the cloud knows the box by its public key.
//! - [`note_linked`], [`noted_linked`]: the box's note that it is linked, which tells the
//!   snapshot agent whether to ask the cloud at all.
//! - [`DeviceKey::sign`]: the headers of a signed request (key, timestamp, fresh nonce,
//!   signature over [`canonical`]), which the cloud checks and refuses to see twice.
//! - [`CloudLink`]: the three calls the box makes: [`CloudLink::start_pairing`] (a short code
//!   for its owner to enter in their account), [`CloudLink::status`] (linked, pending or
//!   unlinked) and [`CloudLink::unlink`].
//!
//! - [`telemetry`]: the payloads of the telemetry the owner opts into (heartbeat, daily stats,
//!   blocks found), shared with the cloud, and [`telemetry::WHAT_IS_SENT`], the same in words;
//!   sent by [`CloudLink::heartbeat`], [`CloudLink::daily_stats`] and [`CloudLink::block_found`].
//!
//! - [`snapshots`]: snapshots through the cloud: the publisher's registration and the box's
//!   offers, grants, chunk URLs and completion, sent by [`CloudLink::snapshot_offer`],
//!   [`CloudLink::snapshot_grant`],
//!   [`CloudLink::chunk_urls`] and [`CloudLink::download_complete`].

pub mod snapshots;
pub mod telemetry;

use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub const HEADER_DEVICE: &str = "MineBox-Device";
pub const HEADER_TIMESTAMP: &str = "MineBox-Timestamp";
pub const HEADER_NONCE: &str = "MineBox-Nonce";
pub const HEADER_SIGNATURE: &str = "MineBox-Signature";
/// The first line of every signed string.
pub const SCHEME: &str = "minebox-device-v1";
const SEED_LEN: u64 = 32;

/// The string the box signs: the scheme, the method, the path (no query), the timestamp
/// (seconds since 1970), the nonce (hex) and the hex SHA-256 of the body, one per line, no
/// newline at the end.
pub fn canonical(method: &str, path: &str, timestamp: i64, nonce: &str, body: &[u8]) -> String {
    format!("{SCHEME}\n{method}\n{path}\n{timestamp}\n{nonce}\n{}", hex::encode(Sha256::digest(body)))
}

/// Why the device key could not be loaded or made, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot {action} the device key {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the device key {path} is {size} bytes, not {SEED_LEN}: it is damaged; move it away and the box makes a \
         new key (then link the box to your account again)"
    )]
    WrongSize { path: PathBuf, size: u64 },
    #[error(
        "the device key {path} has mode {mode:04o}: others could read or change it; `chmod 640 {path}` (and \
         check who else had access), or move it away to make a new key"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("the device key {path} is not a regular file: move it away")]
    NotAFile { path: PathBuf },
}

/// The box's Ed25519 key.
pub struct DeviceKey {
    key: SigningKey,
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        f.debug_struct("DeviceKey").field("public", &self.public_hex()).finish()
    }
}

/// The headers of one signed request, as (name, value).
pub type SignedHeaders = Vec<(&'static str, String)>;

impl DeviceKey {
    /// Loads the key from its seed file at `path`, or makes one there if there is none.
    ///
    /// A new seed is written to a temporary file (mode 0640) in the same folder, synced, and
    /// hard-linked to `path`, which fails if `path` appeared meanwhile (then that key is
    /// loaded): a crash leaves either no key or a whole one, and two starts at once agree on
    /// one key. An existing file must be a regular file of 32 bytes that only its owner can
    /// write and nobody but its owner and group can read (on the box the group is
    /// `minebox-cloud`, set by the folder: the status page makes the key, the snapshot agent
    /// signs its snapshot requests with it); anything else is refused, not replaced
    /// (replacing a key unlinks the box).
    pub fn load_or_create(path: &Path) -> Result<DeviceKey, KeyError> {
        match fs::symlink_metadata(path) {
            Ok(_) => DeviceKey::load(path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => DeviceKey::create(path),
            Err(source) => Err(KeyError::Io { action: "read", path: path.into(), source }),
        }
    }

    /// Loads an existing key; `Ok(None)` if there is none (the box was never linked).
    pub fn load_existing(path: &Path) -> Result<Option<DeviceKey>, KeyError> {
        match fs::symlink_metadata(path) {
            Ok(_) => DeviceKey::load(path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(KeyError::Io { action: "read", path: path.into(), source }),
        }
    }

    fn load(path: &Path) -> Result<DeviceKey, KeyError> {
        let io = |action, source| KeyError::Io { action, path: path.into(), source };
        let meta = fs::symlink_metadata(path).map_err(|e| io("read", e))?;
        if !meta.file_type().is_file() {
            return Err(KeyError::NotAFile { path: path.into() });
        }
        let mode = meta.mode() & 0o7777;
        // Group read is how the agent shares the key; group write or anything for others is not.
        if mode & 0o037 != 0 {
            return Err(KeyError::TooOpen { path: path.into(), mode });
        }
        if meta.len() != SEED_LEN {
            return Err(KeyError::WrongSize { path: path.into(), size: meta.len() });
        }
        let bytes = fs::read(path).map_err(|e| io("read", e))?;
        let seed: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::WrongSize { path: path.into(), size: bytes.len() as u64 })?;
        Ok(DeviceKey { key: SigningKey::from_bytes(&seed) })
    }

    fn create(path: &Path) -> Result<DeviceKey, KeyError> {
        let io = |action, source| KeyError::Io { action, path: path.into(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| io("make the folder of", e))?;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let mut suffix = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut suffix);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "device-key".into());
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
        let written = (|| {
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(&tmp)?;
            // The umask may narrow 0640 and a filesystem may widen it: say exactly what is meant.
            f.set_permissions(fs::Permissions::from_mode(0o640))?;
            f.write_all(&seed)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(io("write", e));
        }
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                // The new name is durable once the folder is synced.
                if let Ok(d) = fs::File::open(dir) {
                    let _ = d.sync_all();
                }
                Ok(DeviceKey { key: SigningKey::from_bytes(&seed) })
            }
            // Another start made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => DeviceKey::load(path),
            Err(e) => Err(io("write", e)),
        }
    }

    /// A key from a seed (tests, and tools that keep the seed elsewhere).
    pub fn from_seed(seed: [u8; 32]) -> DeviceKey {
        DeviceKey { key: SigningKey::from_bytes(&seed) }
    }

    /// The public key as 64 lower-case hex digits: what the cloud knows the box by.
    pub fn public_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// The headers for a request `method path` with `body`, signed now with a fresh nonce.
    pub fn sign(&self, method: &str, path: &str, body: &[u8]) -> SignedHeaders {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        self.sign_at(method, path, body, now, &hex::encode(nonce))
    }

    /// The headers signed with a given timestamp and nonce (tests of the cloud's refusals).
    pub fn sign_at(&self, method: &str, path: &str, body: &[u8], timestamp: i64, nonce: &str) -> SignedHeaders {
        let signature = self.key.sign(canonical(method, path, timestamp, nonce, body).as_bytes());
        vec![
            (HEADER_DEVICE, self.public_hex()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (HEADER_NONCE, nonce.to_string()),
            (HEADER_SIGNATURE, hex::encode(signature.to_bytes())),
        ]
    }
}

/// The box's own note that it is linked: an empty file beside the key (`device.key.linked`),
/// written by the status page when the cloud says "linked" and removed when it says otherwise.
/// The key exists from first boot, so it cannot say whether the box was ever linked; this note
/// lets the snapshot agent ask the cloud only when it has reason to, so a box its owner never
/// linked never talks to the cloud. The cloud stays the authority: a stale note costs one
/// refused request, after which the agent uses the URL.
pub fn linked_note(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push(".linked");
    PathBuf::from(name)
}

/// Whether the note says the box is linked.
pub fn noted_linked(key: &Path) -> bool {
    linked_note(key).is_file()
}

/// Writes or removes the note; does nothing (no write) when it already says so.
pub fn note_linked(key: &Path, linked: bool) -> std::io::Result<()> {
    let note = linked_note(key);
    match (linked, note.is_file()) {
        (true, false) => {
            fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o640).open(&note).map(|_| ())
        }
        (false, true) => match fs::remove_file(&note) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Why a call to the cloud failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach MineBox Cloud at {url}: {source}; check the box's network")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The cloud's refusal, in its own words (it says what to do).
    #[error("MineBox Cloud refused ({status}): {message}")]
    Refused { status: u16, message: String },
    /// The plan's limit is reached (HTTP 402): the cloud's words say which, and what lifts it.
    #[error("{message}")]
    OverQuota { message: String },
    #[error("MineBox Cloud answered something this box does not understand ({status}): {detail}")]
    Unexpected { status: u16, detail: String },
}

/// What the box tells the cloud about itself when it starts pairing.
#[derive(Clone, Debug, Default, Serialize)]
pub struct BoxInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A pairing code to show the owner.
#[derive(Clone, Debug, Deserialize)]
pub struct Pairing {
    pub device_id: String,
    /// `XXXX-XXXX`.
    pub code: String,
    /// Seconds the code can be entered for.
    pub expires_in: i64,
    pub message: String,
}

/// Where the box stands with the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Linked,
    Pending,
    Unlinked,
}

#[derive(Clone, Debug, Deserialize)]
pub struct LinkStatus {
    pub device_id: String,
    pub state: State,
    /// The account's email, masked (`a***@example.org`), when linked.
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Seconds left on the pending code.
    #[serde(default)]
    pub expires_in: Option<i64>,
    pub message: String,
}

/// The cloud's answer to a telemetry report.
#[derive(Clone, Debug, Deserialize)]
pub struct Accepted {
    /// False when the report changed nothing (a block reported before).
    pub recorded: bool,
    pub message: String,
}

/// The box's client for MineBox Cloud's device endpoints.
pub struct CloudLink {
    base: String,
    key: DeviceKey,
    http: reqwest::Client,
}

impl CloudLink {
    /// `base` is the cloud's URL, e.g. `https://cloud.minebox.example` (no trailing slash needed).
    pub fn new(base: &str, key: DeviceKey) -> CloudLink {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        CloudLink { base: base.trim_end_matches('/').to_string(), key, http }
    }

    /// Another box's link to the same cloud over this one's HTTP client (its connections are
    /// shared): for a tool that plays many boxes, like `minebox-cloud-load`.
    pub fn sharing(&self, key: DeviceKey) -> CloudLink {
        CloudLink { base: self.base.clone(), key, http: self.http.clone() }
    }

    pub fn key(&self) -> &DeviceKey {
        &self.key
    }

    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
    ) -> Result<T, LinkError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url);
        for (name, value) in self.key.sign(method.as_str(), path, &body) {
            req = req.header(name, value);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        let response = req.send().await.map_err(|source| LinkError::Unreachable { url: url.clone(), source })?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|source| LinkError::Unreachable { url, source })?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.chars().take(300).collect());
            if status == 402 {
                return Err(LinkError::OverQuota { message });
            }
            return Err(LinkError::Refused { status, message });
        }
        serde_json::from_str(&text).map_err(|e| LinkError::Unexpected { status, detail: e.to_string() })
    }

    /// Asks for a pairing code (a new one each time; the previous one stops working).
    pub async fn start_pairing(&self, info: &BoxInfo) -> Result<Pairing, LinkError> {
        let body = serde_json::to_vec(info).expect("BoxInfo serializes");
        self.send(reqwest::Method::POST, "/api/v1/devices/pair/start", body).await
    }

    /// Whether the box is linked (and to which account), waiting for its code, or unlinked.
    pub async fn status(&self) -> Result<LinkStatus, LinkError> {
        self.send(reqwest::Method::GET, "/api/v1/device/me", Vec::new()).await
    }

    /// Leaves the account (and cancels a pending code).
    pub async fn unlink(&self) -> Result<LinkStatus, LinkError> {
        self.send(reqwest::Method::POST, "/api/v1/device/unlink", Vec::new()).await
    }

    /// Sends a heartbeat (telemetry, only if the owner turned it on). Refused with 403 while
    /// the box is not linked.
    pub async fn heartbeat(&self, beat: &telemetry::Heartbeat) -> Result<Accepted, LinkError> {
        let body = serde_json::to_vec(beat).expect("Heartbeat serializes");
        self.send(reqwest::Method::POST, "/api/v1/device/heartbeat", body).await
    }

    /// Sends one coin's totals for one day; sending the same day and coin again replaces them.
    pub async fn daily_stats(&self, stats: &telemetry::DailyStats) -> Result<Accepted, LinkError> {
        let body = serde_json::to_vec(stats).expect("DailyStats serializes");
        self.send(reqwest::Method::POST, "/api/v1/device/stats/daily", body).await
    }

    /// Reports a block found; reporting it again changes nothing (`recorded` is false then).
    pub async fn block_found(&self, block: &telemetry::BlockFound) -> Result<Accepted, LinkError> {
        let body = serde_json::to_vec(block).expect("BlockFound serializes");
        self.send(reqwest::Method::POST, "/api/v1/device/blocks", body).await
    }

    /// What the catalogue offers for a coin, and this month's use of the plan (not metered).
    pub async fn snapshot_offer(&self, request: &snapshots::OfferRequest) -> Result<snapshots::Offered, LinkError> {
        let body = serde_json::to_vec(request).expect("OfferRequest serializes");
        self.send(reqwest::Method::POST, "/api/v1/device/snapshots/offer", body).await
    }

    /// Asks for the current snapshot of a coin: URLs for its documents and a download id, or
    /// [`LinkError::OverQuota`].
    pub async fn snapshot_grant(&self, request: &snapshots::GrantRequest) -> Result<snapshots::Grant, LinkError> {
        let body = serde_json::to_vec(request).expect("GrantRequest serializes");
        self.send(reqwest::Method::POST, "/api/v1/device/snapshots/grant", body).await
    }

    /// URLs for chunks the box lacks (at most [`snapshots::MAX_CHUNKS_PER_REQUEST`] at a time).
    pub async fn chunk_urls(
        &self,
        download: &str,
        request: &snapshots::ChunkRequest,
    ) -> Result<snapshots::ChunkUrls, LinkError> {
        let body = serde_json::to_vec(request).expect("ChunkRequest serializes");
        self.send(reqwest::Method::POST, &format!("/api/v1/device/snapshots/downloads/{download}/chunks"), body).await
    }

    /// Tells the cloud the download is finished.
    pub async fn download_complete(&self, download: &str, done: &snapshots::Completion) -> Result<Accepted, LinkError> {
        let body = serde_json::to_vec(done).expect("Completion serializes");
        self.send(reqwest::Method::POST, &format!("/api/v1/device/snapshots/downloads/{download}/complete"), body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signature, Verifier};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_new_key_is_a_0640_seed_file_and_loads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/cloud/device.key");
        let made = DeviceKey::load_or_create(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), 32);
        assert_eq!(mode(&path), 0o640);
        assert!(DeviceKey::load_existing(&dir.path().join("none")).unwrap().is_none());
        assert_eq!(DeviceKey::load_existing(&path).unwrap().unwrap().public_hex(), made.public_hex());
        let again = DeviceKey::load_or_create(&path).unwrap();
        assert_eq!(made.public_hex(), again.public_hex());
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("device.key")], "no temporary file is left");
        assert!(!format!("{made:?}").contains(&hex::encode(fs::read(&path).unwrap())), "Debug never shows the seed");
    }

    #[test]
    fn a_readable_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        DeviceKey::load_or_create(&path).unwrap();
        let seed = fs::read(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = DeviceKey::load_or_create(&path).unwrap_err();
        assert!(matches!(err, KeyError::TooOpen { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 640"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o660)).unwrap();
        assert!(matches!(DeviceKey::load_or_create(&path).unwrap_err(), KeyError::TooOpen { mode: 0o660, .. }));
        assert_eq!(fs::read(&path).unwrap(), seed);
    }

    #[test]
    fn a_damaged_key_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.key");
        for bad in [&b""[..], &[7u8; 31][..], &[7u8; 33][..], b"0123456789abcdef0123456789abcdef\n"] {
            fs::write(&path, bad).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = DeviceKey::load_or_create(&path).unwrap_err();
            assert!(matches!(err, KeyError::WrongSize { size, .. } if size == bad.len() as u64), "{err}");
            assert_eq!(fs::read(&path).unwrap(), bad);
        }
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        assert!(matches!(DeviceKey::load_or_create(&path).unwrap_err(), KeyError::NotAFile { .. }));
    }

    #[test]
    fn the_linked_note_is_written_and_removed_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("device.key");
        assert_eq!(linked_note(&key), dir.path().join("device.key.linked"));
        assert!(!noted_linked(&key));
        note_linked(&key, false).unwrap();
        assert!(!linked_note(&key).exists(), "saying unlinked twice writes nothing");
        note_linked(&key, true).unwrap();
        assert!(noted_linked(&key));
        assert_eq!(mode(&linked_note(&key)) & 0o027, 0, "no group write, nothing for others");
        note_linked(&key, true).unwrap();
        note_linked(&key, false).unwrap();
        assert!(!noted_linked(&key));
    }

    #[test]
    fn the_canonical_string_is_the_documented_one() {
        // docs/cloud.md shows this string; the cloud builds the same one on its side.
        assert_eq!(
            canonical("POST", "/api/v1/device/unlink", 1_764_570_000, "00112233445566778899aabbccddeeff", b""),
            "minebox-device-v1\nPOST\n/api/v1/device/unlink\n1764570000\n00112233445566778899aabbccddeeff\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn headers_carry_a_signature_over_the_canonical_string() {
        let key = DeviceKey::from_seed([9; 32]);
        let headers = key.sign_at("GET", "/api/v1/device/me", b"{}", 1_764_570_000, "ab".repeat(16).as_str());
        let get = |n: &str| headers.iter().find(|(k, _)| *k == n).unwrap().1.clone();
        assert_eq!(get(HEADER_DEVICE), key.public_hex());
        let sig = Signature::from_slice(&hex::decode(get(HEADER_SIGNATURE)).unwrap()).unwrap();
        let signed = canonical("GET", "/api/v1/device/me", 1_764_570_000, &"ab".repeat(16), b"{}");
        key.key.verifying_key().verify(signed.as_bytes(), &sig).unwrap();
        let other = canonical("GET", "/api/v1/device/me", 1_764_570_000, &"ab".repeat(16), b"{ }");
        assert!(key.key.verifying_key().verify(other.as_bytes(), &sig).is_err(), "the body is covered");
        let fresh = key.sign("GET", "/api/v1/device/me", b"");
        let fresh_nonce = &fresh.iter().find(|(k, _)| *k == HEADER_NONCE).unwrap().1;
        assert_eq!(fresh_nonce.len(), 32);
        assert_ne!(*fresh_nonce, "ab".repeat(16));
    }
}
