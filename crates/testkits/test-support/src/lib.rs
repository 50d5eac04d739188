//! What the workspace's tests share (a dev-dependency only; nothing here ships).
//!
//! - [`free_port`]: a local TCP port nobody listens on, for a peer the test starts, outside the
//!   range the kernel gives outgoing connections.
//! - [`noise`]: deterministic bytes that neither compress nor repeat, standing in for block
//!   files: real data sizes and real chunking without storing fixtures.
//! - [`workspace_bin`]: a daemon's binary from the same build, for tests outside its crate.

/// A TCP port on 127.0.0.1 free at the moment of asking, below the kernel's ephemeral range.
///
/// Why not the OS's choice (`bind(0)`): that port comes from the ephemeral range, which every
/// outgoing connection on the machine draws its local port from too. A test that picks a port
/// now and listens on it later (a miner's port going up during an update's trial boot) could find
/// it taken by some other test's HTTP client in between, and fail with "address in use" for no
/// fault of the code under test. Ports 20000..32768 are never handed out that way.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 32_768 - FIRST;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Each test runs in its own process under nextest: start each process at a different place.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let start = std::process::id().wrapping_mul(2_654_435_761).wrapping_add(nanos);
    for _ in 0..SPAN {
        let port = (FIRST + (start.wrapping_add(NEXT.fetch_add(7, Ordering::Relaxed)) % SPAN)) as u16;
        let free = |ip: &str| std::net::TcpListener::bind((ip, port)).is_ok();
        if free("127.0.0.1") && free("0.0.0.0") {
            return port;
        }
    }
    panic!("no free local port in {FIRST}..32768");
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

/// The path of a workspace binary (`minebox-stratum`, ...) built beside the running test.
///
/// Cargo tells a crate's own tests where its binaries are (`CARGO_BIN_EXE_<name>`), but not
/// tests in another crate (tests/e2e). The test binary runs from `target/<profile>/deps/`; the
/// workspace's binaries are in `target/<profile>/`, built by the same `cargo build --workspace` or
/// `cargo nextest run --workspace`.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("the test binary is in target/<profile>/deps");
    let bin = profile_dir.join(name);
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --workspace` (or the tests with --workspace) first",
        bin.display()
    );
    bin
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
