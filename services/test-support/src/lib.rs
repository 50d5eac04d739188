//! What the workspace's tests share (a dev-dependency only; nothing here ships).
//!
//! - [`free_port`]: a local TCP port nobody listens on, for a peer the test starts.
//! - [`noise`]: deterministic bytes that neither compress nor repeat, standing in for block
//!   files: real data sizes and real chunking without storing fixtures.

/// A TCP port on 127.0.0.1 free at the moment of asking (the OS's choice).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

/// `n` bytes of xorshift64 output from `seed`: the same for the same seed, different for
/// different seeds, incompressible (zstd cannot shrink it, content-defined chunking finds
/// boundaries as in real block files).
pub fn noise(n: usize, seed: u64) -> Vec<u8> {
    // xorshift's state must never be zero.
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_is_repeatable_per_seed_and_differs_between_seeds() {
        assert_eq!(noise(4096, 3), noise(4096, 3));
        assert_ne!(noise(4096, 3), noise(4096, 4));
        // Not a run of one byte value, as a zero state would give.
        let n = noise(4096, 0);
        assert!(n.iter().any(|&b| b != n[0]));
    }

    #[test]
    fn a_free_port_can_be_bound() {
        std::net::TcpListener::bind(("127.0.0.1", free_port())).unwrap();
    }
}
