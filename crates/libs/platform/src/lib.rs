//! What every MineBox daemon does on its Linux host, written once.
//!
//! - [`lifecycle`] logs to journald or stderr, says `READY=1`, feeds the watchdog and says
//!   `STOPPING=1` on SIGTERM.
//! - [`fs`] has [`fs::atomic_write`] (a power cut leaves the old file or the new one, never
//!   half) and [`fs::free_space`].
//! - [`process`] sends signals, and stops a child as systemd stops a unit (SIGTERM, then
//!   SIGKILL after a grace time).
//! - [`clock`] reads the wall clock as unix time.
//!
//! System calls go through `nix` (safe bindings): no `unsafe` and no raw `libc` in the services.

pub mod clock;
pub mod fs;
pub mod lifecycle;
pub mod process;
