//! The updater's local API (127.0.0.1 only), for the status page and the CLI.

/// `GET`: the running version, what the updater is doing and the update on offer.
pub const STATUS: &str = "/api/v1/update";
/// `GET`: past installs and their results.
pub const HISTORY: &str = "/api/v1/update/history";
/// `POST`: look for an update now.
pub const CHECK: &str = "/api/v1/update/check";
/// `POST`: install the update on offer (or `{"url": ...}`).
pub const INSTALL: &str = "/api/v1/update/install";
/// `POST ?reboot=now|window`: install the bundle in the body.
pub const UPLOAD: &str = "/api/v1/update/upload";
/// `POST ?reboot=now|window`: install the bundle on a USB stick.
pub const USB: &str = "/api/v1/update/usb";

/// What the status page may ask of the updater by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Check,
    Install,
    Usb,
    Upload,
}

impl Action {
    /// `check`, `install`, `usb` or `upload`; anything else is none.
    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "check" => Some(Action::Check),
            "install" => Some(Action::Install),
            "usb" => Some(Action::Usb),
            "upload" => Some(Action::Upload),
            _ => None,
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Action::Check => CHECK,
            Action::Install => INSTALL,
            Action::Usb => USB,
            Action::Upload => UPLOAD,
        }
    }
}
