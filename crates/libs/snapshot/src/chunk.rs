//! Content-defined chunking: chunk boundaries follow the data, not fixed offsets, so
//! inserting or changing bytes in a file only changes the chunks around the change, and a
//! device holding the previous snapshot downloads only the difference.

use crate::hash::ChunkHash;
use std::io::Read;

/// FastCDC 2020 sizes: 2 MiB average (the 1-4 MiB range), 512 KiB to 8 MiB.
pub const MIN_SIZE: u32 = 512 * 1024;
pub const AVG_SIZE: u32 = 2 * 1024 * 1024;
pub const MAX_SIZE: u32 = 8 * 1024 * 1024;

/// One chunk of a file: where it is, how long, and the SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub offset: u64,
    pub size: u32,
    pub hash: ChunkHash,
}

/// Cuts a stream into chunks, handing each one's bytes to `each` (to compress or compare)
/// while reading with bounded memory (at most one maximum-size chunk in flight).
pub fn chunk<R: Read>(
    reader: R,
    mut each: impl FnMut(&Piece, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<Vec<Piece>> {
    let mut out = Vec::new();
    for c in fastcdc::v2020::StreamCDC::new(reader, MIN_SIZE, AVG_SIZE, MAX_SIZE) {
        let c = c.map_err(|e| match e {
            fastcdc::v2020::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        let hash = ChunkHash::of(&c.data);
        let piece = Piece { offset: c.offset, size: c.length as u32, hash };
        each(&piece, &c.data)?;
        out.push(piece);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minebox_test_support::noise;

    #[test]
    fn an_insertion_changes_only_nearby_chunks() {
        let a = noise(24 << 20, 7);
        let mut b = a.clone();
        b.splice(5_000_000..5_000_000, b"inserted bytes".iter().copied());
        let ca = chunk(&a[..], |_, _| Ok(())).unwrap();
        let cb = chunk(&b[..], |_, _| Ok(())).unwrap();
        let hashes_a: std::collections::HashSet<_> = ca.iter().map(|p| p.hash).collect();
        let shared = cb.iter().filter(|p| hashes_a.contains(&p.hash)).count();
        assert!(ca.len() >= 6, "{} chunks", ca.len());
        assert!(shared + 2 >= cb.len(), "only the chunks around the insertion differ: {shared} of {}", cb.len());
        assert_eq!(ca.iter().map(|p| p.size as u64).sum::<u64>(), a.len() as u64);
    }
}
