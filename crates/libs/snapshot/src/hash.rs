//! A chunk's name: the SHA-256 of its plain bytes. Bytes inside the program; 64 lower-case
//! hex digits only at the edges (index.json, chunk paths, logs), so two hashes are compared
//! as bytes and a malformed one is refused where it is read, never deep in an install.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkHash([u8; 32]);

/// Refused text for a chunk hash: anything but exactly 64 lower-case hex digits. Upper case
/// is refused too: the hex text is what the Merkle leaves and chunk paths are made of, so
/// two spellings of one hash would give two roots and two files.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chunk hash {0:?} is not 64 lower-case hex digits")]
pub struct BadChunkHash(pub String);

impl ChunkHash {
    /// The hash of a chunk's plain bytes.
    pub fn of(plain: &[u8]) -> ChunkHash {
        ChunkHash(Sha256::digest(plain).into())
    }

    pub const fn from_bytes(bytes: [u8; 32]) -> ChunkHash {
        ChunkHash(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lower-case hex digits written in index.json.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for ChunkHash {
    type Err = BadChunkHash;

    fn from_str(s: &str) -> Result<ChunkHash, BadChunkHash> {
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(BadChunkHash(s.to_string()));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadChunkHash(s.to_string()))?;
        Ok(ChunkHash(out))
    }
}

impl fmt::Display for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkHash({self})")
    }
}

impl Serialize for ChunkHash {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChunkHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ChunkHash, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_at_the_edges_bytes_inside() {
        let h = ChunkHash::of(b"chunk");
        let text = h.to_hex();
        assert_eq!(text, hex::encode(Sha256::digest(b"chunk")));
        assert_eq!(text.parse::<ChunkHash>().unwrap(), h);
        assert_eq!(serde_json::to_string(&h).unwrap(), format!("\"{text}\""));
        assert_eq!(serde_json::from_str::<ChunkHash>(&format!("\"{text}\"")).unwrap(), h);
        for bad in [text.to_uppercase(), text[1..].to_string(), format!("{text}0"), "g".repeat(64), String::new()] {
            assert!(bad.parse::<ChunkHash>().is_err(), "{bad}");
            assert!(serde_json::from_str::<ChunkHash>(&format!("\"{bad}\"")).is_err(), "{bad}");
        }
    }
}
