//! The Raspberry Pi 5 firmware's own A/B boot ("tryboot"), driven for RAUC.
//!
//! The firmware reads `autoboot.txt` from partition 1. With `tryboot_a_b=1`, its `[all]`
//! section names the boot partition of a normal boot and its `[tryboot]` section the one
//! booted once after `reboot '0 tryboot'`; the firmware clears the one-shot flag before the
//! kernel starts, so any failure of a trial falls back to the `[all]` slot by itself.
//!
//! - [`autoboot`]: the file's model, parsing and rendering (slots, their states, the trial).
//! - [`volume`]: where the file lives and how it is replaced atomically (mounted FAT, or a
//!   FAT image through mtools for tests and image builds).
//! - [`bootloader`]: what the firmware tells the kernel about this boot (device tree).
//! - [`backend`]: RAUC's custom-backend operations and the recovery console's switch.

pub mod autoboot;
pub mod backend;
pub mod bootloader;
pub mod volume;

pub use autoboot::{Autoboot, Slot, SlotState};
pub use backend::Backend;
pub use bootloader::BootInfo;
