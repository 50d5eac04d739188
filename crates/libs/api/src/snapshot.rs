//! The snapshot agent's local API (127.0.0.1 only), read by the status page.

/// `GET`: what is published per coin, how far it is trusted, and how an install is going.
pub const LIST: &str = "/api/v1/snapshots";
/// `POST`: install a coin's published snapshot (the route pattern; [`install`] fills it in).
pub const INSTALL: &str = "/api/v1/snapshots/{coin}/install";
/// `GET`: the one-shot agent's progress (`minebox-snapshot-agent install --api`).
pub const PROGRESS: &str = "/api/v1/snapshot/progress";

/// The path that installs `coin`'s snapshot.
pub fn install(coin: &str) -> String {
    format!("/api/v1/snapshots/{coin}/install")
}
