//! What every MineBox daemon does on its Linux host, written once.
//!
//! - [`lifecycle`]: logging to journald or stderr, `READY=1` and the watchdog, `STOPPING=1` on
//!   SIGTERM.
//! - [`fs`]: [`fs::atomic_write`] (a power cut leaves the old file or the new one, never half)
//!   and [`fs::free_space`].
//! - [`process`]: signals to other processes, and stopping a child as systemd stops a unit
//!   (SIGTERM, then SIGKILL after a grace time).
//! - [`clock`]: the wall clock as unix time.
//!
//! System calls go through `nix` (safe bindings): no `unsafe` and no raw `libc` in the services.

pub mod clock;
pub mod fs;
pub mod lifecycle;
pub mod process;
