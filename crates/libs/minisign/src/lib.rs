//! Ed25519 signatures in minisign's format, so anyone can check a manifest with the stock
//! tool: `minisign -Vm manifest.json -p minebox.pub`. Snapshots and updates both use it; keys
//! are pinned by role (`snapshot-*.pub`, `update-*.pub`), see [`PublicKey::pinned`].
//!
//! Public key file: an untrusted comment line, then base64 of `"Ed" || key_id (8 bytes) ||
//! public key (32)`. Signature file: untrusted comment, base64 of `"ED" || key_id ||
//! Ed25519(BLAKE2b-512(message))`, the trusted comment, and base64 of
//! Ed25519(signature || trusted comment). The secret key is kept in MineBox's own file (hex
//! seed and key id, mode 0600): the publisher runs unattended, so no passphrase.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("signed by key {found}, which is not one of the pinned keys ({pinned})")]
    UnknownKey { found: String, pinned: String },
    #[error("bad signature: the manifest or its signature was altered, or it was signed by another key")]
    BadSignature,
}

/// A key id as minisign prints it: 8 bytes, little-endian, as 16 upper-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

#[derive(Clone)]
pub struct SecretKey {
    pub id: KeyId,
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({}, <secret>)", self.id)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    key: VerifyingKey,
}

fn malformed(what: &'static str, why: impl fmt::Display) -> SignError {
    SignError::Malformed { what, why: why.to_string() }
}

impl SecretKey {
    pub fn generate() -> SecretKey {
        let seed: [u8; 32] = rand::random();
        SecretKey { id: KeyId(rand::random()), key: SigningKey::from_bytes(&seed) }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey { id: self.id, key: self.key.verifying_key() }
    }

    /// MineBox's secret key file: `minebox-snapshot-key <KEYID> <hex seed>`.
    pub fn to_file(&self) -> String {
        format!("minebox-snapshot-key {} {}\n", hex::encode(self.id.0), hex::encode(self.key.to_bytes()))
    }

    pub fn from_file(text: &str) -> Result<SecretKey, SignError> {
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 3 || parts[0] != "minebox-snapshot-key" {
            return Err(malformed("secret key file", "expected `minebox-snapshot-key <id> <seed>`"));
        }
        let id: [u8; 8] = hex::decode(parts[1])
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("secret key file", "bad key id"))?;
        let seed: [u8; 32] = hex::decode(parts[2])
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed("secret key file", "bad seed"))?;
        Ok(SecretKey { id: KeyId(id), key: SigningKey::from_bytes(&seed) })
    }

    /// A minisign signature file for `message`.
    ///
    /// The trusted comment is one line of the file: a line break in it (a coin name or an
    /// update's version with a newline) would split the file and no device could verify it,
    /// so line breaks are signed and written as spaces.
    pub fn sign(&self, message: &[u8], trusted_comment: &str) -> String {
        let trusted_comment = trusted_comment.replace(['\r', '\n'], " ");
        let prehash = Blake2b512::digest(message);
        let sig = self.key.sign(&prehash);
        let mut blob = Vec::with_capacity(74);
        blob.extend_from_slice(b"ED");
        blob.extend_from_slice(&self.id.0);
        blob.extend_from_slice(&sig.to_bytes());
        let mut global = sig.to_bytes().to_vec();
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_sig = self.key.sign(&global);
        format!(
            "untrusted comment: signature from minebox-publisher secret key {}\n{}\ntrusted comment: {trusted_comment}\n{}\n",
            self.id,
            B64.encode(blob),
            B64.encode(global_sig.to_bytes())
        )
    }
}

impl PublicKey {
    /// The minisign public key file.
    pub fn to_file(&self) -> String {
        let mut blob = b"Ed".to_vec();
        blob.extend_from_slice(&self.id.0);
        blob.extend_from_slice(self.key.as_bytes());
        format!("untrusted comment: minisign public key {}\n{}\n", self.id, B64.encode(blob))
    }

    /// The keys pinned for one role in a keys directory: every `<role>-*.pub` in `dir`
    /// (`/etc/minebox/keys` on the box), sorted by name. A key file carries its role in its
    /// name so that a key made for updates can never vouch for a snapshot, and the reverse.
    /// An empty or missing directory gives no keys (everything signed will be refused).
    pub fn pinned(dir: &std::path::Path, role: &str) -> Result<Vec<PublicKey>, SignError> {
        let prefix = format!("{role}-");
        let mut paths: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".pub"))
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(malformed("keys directory", format!("{}: {e}", dir.display()))),
        };
        paths.sort();
        PublicKey::read_all(&paths)
    }

    /// Reads pinned keys from their files.
    pub fn read_all(paths: &[std::path::PathBuf]) -> Result<Vec<PublicKey>, SignError> {
        paths
            .iter()
            .map(|p| {
                let text = std::fs::read_to_string(p).map_err(|e| SignError::Malformed {
                    what: "public key file",
                    why: format!("{}: {e}", p.display()),
                })?;
                PublicKey::from_file(&text)
                    .map_err(|e| SignError::Malformed { what: "public key file", why: format!("{}: {e}", p.display()) })
            })
            .collect()
    }

    pub fn from_file(text: &str) -> Result<PublicKey, SignError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| malformed("public key", "no key line"))?;
        let blob = B64.decode(line).map_err(|e| malformed("public key", e))?;
        if blob.len() != 42 || &blob[..2] != b"Ed" {
            return Err(malformed("public key", "not an Ed25519 minisign key"));
        }
        let id = KeyId(blob[2..10].try_into().expect("8 bytes"));
        let key = VerifyingKey::from_bytes(blob[10..42].try_into().expect("32 bytes"))
            .map_err(|e| malformed("public key", e))?;
        Ok(PublicKey { id, key })
    }
}

/// A parsed signature file.
#[derive(Debug, Clone)]
pub struct SignatureFile {
    pub key_id: KeyId,
    prehashed: bool,
    signature: Signature,
    pub trusted_comment: String,
    global: Signature,
}

impl SignatureFile {
    pub fn parse(text: &str) -> Result<SignatureFile, SignError> {
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() < 4 || !lines[0].starts_with("untrusted comment:") {
            return Err(malformed("signature", "expected four lines"));
        }
        let blob = B64.decode(lines[1].trim()).map_err(|e| malformed("signature", e))?;
        if blob.len() != 74 {
            return Err(malformed("signature", "wrong length"));
        }
        let prehashed = match &blob[..2] {
            b"ED" => true,
            b"Ed" => false,
            _ => return Err(malformed("signature", "not Ed25519")),
        };
        let trusted_comment = lines[2]
            .strip_prefix("trusted comment: ")
            .ok_or_else(|| malformed("signature", "no trusted comment"))?
            .to_string();
        let global = B64.decode(lines[3].trim()).map_err(|e| malformed("signature", e))?;
        Ok(SignatureFile {
            key_id: KeyId(blob[2..10].try_into().expect("8 bytes")),
            prehashed,
            signature: Signature::from_bytes(blob[10..74].try_into().expect("64 bytes")),
            trusted_comment,
            global: Signature::from_bytes(
                &global.try_into().map_err(|_| malformed("signature", "bad global signature"))?,
            ),
        })
    }

    /// Checks `message` against whichever pinned key signed it.
    pub fn verify<'k>(&self, message: &[u8], pinned: &'k [PublicKey]) -> Result<&'k PublicKey, SignError> {
        let key = pinned.iter().find(|k| k.id == self.key_id).ok_or_else(|| SignError::UnknownKey {
            found: self.key_id.to_string(),
            pinned: pinned.iter().map(|k| k.id.to_string()).collect::<Vec<_>>().join(", "),
        })?;
        let ok = if self.prehashed {
            key.key.verify(&Blake2b512::digest(message), &self.signature).is_ok()
        } else {
            key.key.verify(message, &self.signature).is_ok()
        };
        let mut global = self.signature.to_bytes().to_vec();
        global.extend_from_slice(self.trusted_comment.as_bytes());
        if !ok || key.key.verify(&global, &self.global).is_err() {
            return Err(SignError::BadSignature);
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_catches_every_change() {
        let k = SecretKey::generate();
        let other = SecretKey::generate();
        let sig = k.sign(b"manifest", "minebox btc main 850000");
        let parsed = SignatureFile::parse(&sig).unwrap();
        let pinned = [other.public(), k.public()];
        assert_eq!(parsed.verify(b"manifest", &pinned).unwrap().id, k.id);
        assert_eq!(parsed.verify(b"manifesT", &pinned), Err(SignError::BadSignature));
        assert!(matches!(parsed.verify(b"manifest", &[other.public()]), Err(SignError::UnknownKey { .. })));
        // The trusted comment is signed too.
        let forged = sig.replace("850000", "850001");
        assert_eq!(SignatureFile::parse(&forged).unwrap().verify(b"manifest", &pinned), Err(SignError::BadSignature));
    }

    #[test]
    fn a_trusted_comment_with_line_breaks_still_verifies() {
        // Found by fuzz/fuzz_targets/update_manifest.rs: a version "1.2.0\n" made the
        // signing command write a signature file that every device refused.
        let k = SecretKey::generate();
        let sig = k.sign(b"manifest", "minebox update minebox-rpi5 1.2.0\n\r\nnext");
        let parsed = SignatureFile::parse(&sig).unwrap();
        assert_eq!(parsed.verify(b"manifest", &[k.public()]).unwrap().id, k.id);
        assert_eq!(parsed.trusted_comment, "minebox update minebox-rpi5 1.2.0   next");
    }

    #[test]
    fn key_files_round_trip_and_never_show_the_secret() {
        let k = SecretKey::generate();
        let back = SecretKey::from_file(&k.to_file()).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(PublicKey::from_file(&k.public().to_file()).unwrap(), k.public());
        assert!(!format!("{k:?}").contains(&hex::encode(k.key.to_bytes())));
    }

    #[test]
    fn pinned_keys_are_chosen_by_role() {
        let dir = tempfile::tempdir().unwrap();
        let (update, snap_a, snap_b) = (SecretKey::generate(), SecretKey::generate(), SecretKey::generate());
        std::fs::write(dir.path().join("update-release.pub"), update.public().to_file()).unwrap();
        std::fs::write(dir.path().join("snapshot-2026.pub"), snap_a.public().to_file()).unwrap();
        std::fs::write(dir.path().join("snapshot-2027.pub"), snap_b.public().to_file()).unwrap();
        std::fs::write(dir.path().join("snapshot-notes.txt"), "not a key").unwrap();
        assert_eq!(PublicKey::pinned(dir.path(), "snapshot").unwrap(), vec![snap_a.public(), snap_b.public()]);
        assert_eq!(PublicKey::pinned(dir.path(), "update").unwrap(), vec![update.public()]);
        assert_eq!(PublicKey::pinned(&dir.path().join("absent"), "update").unwrap(), vec![]);
        std::fs::write(dir.path().join("update-broken.pub"), "untrusted comment: x\nnot base64!").unwrap();
        let e = PublicKey::pinned(dir.path(), "update").unwrap_err();
        assert!(e.to_string().contains("update-broken.pub"), "{e}");
    }
}
