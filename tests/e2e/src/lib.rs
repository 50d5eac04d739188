//! MineBox's end-to-end tests: the ones that need more than one of the workspace's crates
//! (a snapshot made by the publisher and installed by the agent; the node RPC client on real
//! Bitcoin Core and bcoin nodes, which the regtest kit starts with that same client; the stratum
//! server fed by the supervisor's node). Kept here so no crate needs another as a
//! dev-dependency that in turn depends on it. The tests are in `tests/`; run them with
//! `cargo nextest run -p minebox-e2e` after `cargo build --workspace` (they start the daemons'
//! binaries).
