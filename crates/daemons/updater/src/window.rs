//! The reboot window: the local time of day in which the box may reboot into a new
//! version on its own. A settings type (`updates.reboot_window`), checked where the
//! settings are read.

pub use minebox_settings::updates::{RebootWindow, WindowError};
