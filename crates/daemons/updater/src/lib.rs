//! The MineBox updater: moves the box to a new image version, and back if it fails.
//!
//! A signed channel manifest names the newest bundle; the bundle is downloaded resumably,
//! checked against the manifest, and installed into the other slot by RAUC (which checks
//! the bundle's own signature). In the reboot window the box boots the new slot once, on
//! trial (the Pi 5 firmware's tryboot); after that boot the health check decides: the slot
//! is committed, or marked bad and the box reboots into the old one. Bundles can also come
//! from a USB stick or an upload through the status page.
//!
//! The `[updates]` settings come typed and checked from `minebox_settings::UpdateSettings`.
//!
//! - [`window`]: the local-time reboot window.
//! - [`manifest`]: the channel manifest, its signature and whether it applies to this box.
//! - [`download`]: resumable, size- and hash-checked downloads into the state directory.
//! - [`rauc`]: installing and marking slots through RAUC's command line.
//! - [`boot`]: what is running: version, slot, trial or normal boot.
//! - [`health`]: the post-boot health check.
//! - [`record`]: the attempt in progress and the history, kept across reboots.
//! - [`status`]: what the local API reports.
//! - [`updater`]: the one worker that runs checks, installs, trials and rollbacks.
//! - [`api`]: the local HTTP API for the status page and the CLI.

pub mod api;
pub mod boot;
pub mod download;
pub mod health;
pub mod manifest;
pub mod rauc;
pub mod record;
pub mod status;
pub mod updater;
pub mod window;

pub use manifest::Manifest;
pub use status::{State, Status};
