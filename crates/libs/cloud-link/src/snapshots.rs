//! Snapshots through MineBox Cloud (issue 16, point 5): the messages of the two sides that meet
//! at the snapshot catalogue, defined once and used by both ends.
//!
//! - The **publisher** uploads a published tree to the object store, then registers it
//!   ([`Registration`], `POST /api/v1/publisher/snapshots`, with the publisher's bearer token).
//!   The cloud reads the signed manifest and the index from the bucket itself, checks the
//!   signature against its publisher keys and catalogues what they say: it takes no number on
//!   the publisher's word ([`Registered`]).
//! - A linked **box** lists what the catalogue offers for a coin, with its plan's use this month
//!   ([`OfferRequest`] → [`Offered`], `POST /api/v1/device/snapshots/offer`; not metered: the
//!   status page shows it), and asks for the current snapshot of a coin ([`GrantRequest`], signed with its
//!   device key, `POST /api/v1/device/snapshots/grant`). Within its plan it gets a [`Grant`]: the
//!   catalogue entry, a download id, and short-lived URLs presigned by the object store for the
//!   manifest, its signature and the index. It verifies those as it does any snapshot, works out
//!   which chunks it lacks, and asks for their URLs in batches ([`ChunkRequest`] →
//!   [`ChunkUrls`], `POST /api/v1/device/snapshots/downloads/{download}/chunks`); the cloud meters
//!   each chunk once per download. When done it says so ([`Completion`],
//!   `POST /api/v1/device/snapshots/downloads/{download}/complete`).
//! - Asking again for the same snapshot while a download of it is unfinished **resumes** that
//!   download (same id, `resumed` counted, not a new download against the plan).
//! - Over the plan's limits the cloud answers **402** with the refusal in words (which limit,
//!   what is used, when it resets, what plan lifts it); the client turns that into
//!   [`crate::LinkError::OverQuota`], which the status page shows as it is.
//!
//! The URLs are the store's own presigned GETs (S3 signature v4 in the query): the box fetches
//! them as plain HTTPS, with Range resume; nothing of the box's key goes to the store.

use serde::{Deserialize, Serialize};

/// The most chunk URLs one [`ChunkRequest`] may ask for; more are refused with 422.
pub const MAX_CHUNKS_PER_REQUEST: usize = 256;

/// `POST /api/v1/publisher/snapshots`: a published tree is in the bucket; catalogue it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The bucket the tree was uploaded to (one the cloud is configured to presign for).
    pub bucket: String,
    /// The tree's prefix in the bucket (`btc/main`): `<prefix>/manifest.json` and so on.
    pub prefix: String,
    /// Make it the coin's current snapshot of its network and kind (the previous current one is
    /// marked deprecated). False registers it without offering it yet.
    #[serde(default = "yes")]
    pub make_current: bool,
}

fn yes() -> bool {
    true
}

/// The cloud's answer to a registration: what it read from the signed manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registered {
    pub entry: CatalogueEntry,
    /// True when this manifest was catalogued before (registering twice changes nothing).
    pub already: bool,
    pub message: String,
}

/// One snapshot in the catalogue, as a box or the publisher sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CatalogueEntry {
    /// The coin's descriptor id (`btc`), as the manifest names it.
    pub coin: String,
    pub network: String,
    /// `datadir` or `utxo`.
    pub kind: String,
    pub version: u64,
    pub height: u64,
    pub block_hash: String,
    /// Bytes once installed (the manifest's `total_bytes`).
    pub total_bytes: u64,
    /// Bytes to download if the box has none of the chunks.
    pub download_bytes: u64,
    pub chunk_count: u64,
    /// SHA-256 of the signed manifest as served, hex.
    pub manifest_sha256: String,
    /// `current` or `deprecated`.
    pub status: String,
}

/// `POST /api/v1/device/snapshots/offer`: what the catalogue has for a coin now.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferRequest {
    pub coin: String,
    pub network: String,
}

/// The current snapshots of the coin (one per kind), and this month's use of the plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Offered {
    pub entries: Vec<CatalogueEntry>,
    pub usage: Usage,
}

/// `POST /api/v1/device/snapshots/grant`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub coin: String,
    pub network: String,
    /// `datadir` or `utxo`; none: the kind the catalogue has (datadir first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// This month's use against the plan, as the cloud counts it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub plan: String,
    pub downloads: u64,
    /// None: no limit on this plan.
    pub downloads_limit: Option<u64>,
    pub bytes: u64,
    pub bytes_limit: Option<u64>,
}

/// The cloud's answer to a [`GrantRequest`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// Opaque: names this download in the chunk and completion calls.
    pub download: String,
    /// An unfinished download of the same snapshot taken up again.
    pub resumed: bool,
    pub snapshot: CatalogueEntry,
    pub manifest_url: String,
    pub signature_url: String,
    pub index_url: String,
    /// Seconds the URLs stay valid; ask again after that.
    pub expires_in: u64,
    pub usage: Usage,
}

/// Chunks the box lacks, by name (the chunk's SHA-256, hex, as the index names it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkRequest {
    pub chunks: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkUrl {
    pub chunk: String,
    pub url: String,
}

/// URLs for the chunks asked for, in the order asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkUrls {
    pub urls: Vec<ChunkUrl>,
    pub expires_in: u64,
    pub usage: Usage,
}

/// `POST …/downloads/{download}/complete`: what the box fetched in the end.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Completion {
    pub chunks_fetched: u64,
    pub bytes_fetched: u64,
}
