//! The snapshot agent: brings a node to sync in hours by installing a signed,
//! chunk-verified snapshot into its data directory.
//!
//! - [`install`]: verify, stage (reusing local chunks, resuming downloads), swap atomically.
//! - [`fetch`]: HTTP(S) with Range resume, retries with backoff, bandwidth limit.
//! - [`source`]: where the bytes come from: the published tree's URL, or MineBox Cloud's
//!   presigned URLs (renewed when they expire).
//! - [`progress`]: what the status page shows while it runs.
//! - [`service`]: the box's service: install on request, between stopping and starting the node.
//! - [`retire`]: the data directory a snapshot replaced, deleted by the node's own user.
//! - [`utxo`]: handing an assumeutxo file to Bitcoin Core and following its validation.

pub mod fetch;
pub mod install;
pub mod progress;
pub mod retire;
pub mod service;
pub mod source;
pub mod utxo;

/// Every way an install can fail, each saying what to do.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Signature(#[from] minebox_snapshot::minisign::SignError),
    #[error("the snapshot expired at {expires} (unix time); the publisher must publish a fresh one")]
    Expired { expires: i64 },
    #[error("refusing version {offered}: version {installed} is installed and versions never go back")]
    Rollback { offered: u64, installed: u64 },
    #[error("{what} does not match what the signed manifest says: tampered or corrupted in transit")]
    Tampered { what: String },
    #[error("malformed {what}: {why}")]
    Malformed { what: &'static str, why: String },
    #[error("{url} does not exist on the snapshot server (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: HTTP {status}")]
    Http { url: String, status: u16 },
    #[error("{url}: gave up after {tries} tries ({last}); check the network and try again, the download resumes")]
    Unreachable { url: String, tries: u32, last: String },
    #[error("{url}: larger than {limit} bytes")]
    TooLarge { url: String, limit: u64 },
    #[error("not enough disk space: the snapshot needs {need} bytes, {free} are free")]
    DiskFull { need: u64, free: u64 },
    /// The plan's limit is reached: the cloud's words (which limit, when it resets, what lifts
    /// it), shown as they are. Never bypassed by taking the snapshot from elsewhere.
    #[error("{message}")]
    OverQuota { message: String },
    /// MineBox Cloud could not be asked or refused (its words, naming the cloud).
    #[error("{message}")]
    Cloud { message: String },
    #[error(
        "the box is not linked to MineBox Cloud and [snapshots] source = \"cloud\": link it on the status page, \
         or set source = \"auto\" to take snapshots from [snapshots] url meanwhile"
    )]
    NotLinked,
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}
