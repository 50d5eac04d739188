//! Snapshots through the cloud (issue 16, point 5; docs/cloud.md, "Snapshots through the
//! cloud"): the publisher registers a tree it uploaded, a linked box asks for the current
//! snapshot of its coin and gets short-lived URLs the object store presigned, and every download
//! is metered against the plan of the box's user. The messages are `minebox_cloud_link::snapshots`.
//!
//! The cloud takes no number on the publisher's word: it reads the signed manifest and the
//! index from the bucket, verifies them against the publisher keys it was started with
//! (`--snapshot-key`), and lists the chunks to learn their sizes as served. Presigning is the
//! store's own (S3 signature v4 in the query, computed here without a request to the store).

use crate::accounts::token_hash;
use crate::db::{self, begin_as};
use crate::devices::{json_of, Signed};
use crate::error::{ApiError, Body};
use crate::App;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::TryStreamExt;
use minebox_cloud_link::snapshots::{
    CatalogueEntry, ChunkRequest, ChunkUrl, ChunkUrls, Completion, Grant, GrantRequest, OfferRequest, Offered,
    Registered, Registration, Usage, MAX_CHUNKS_PER_REQUEST,
};
use minebox_snapshot::layout;
use minebox_snapshot::minisign::PublicKey;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer;
use object_store::ObjectStore;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// How long the presigned URLs stay valid: long enough for a batch of chunks on a slow line,
/// short enough that a leaked URL is soon worthless. The box asks again after it.
pub const URL_TTL: Duration = Duration::from_secs(15 * 60);
/// The largest manifest.json and signature file read from a bucket (real ones are ~1 KiB).
const MAX_MANIFEST_BYTES: usize = 64 * 1024;
const MAX_SIGNATURE_BYTES: usize = 4 * 1024;
/// The largest index.json read (the manifest says its exact size; this bounds what it may say).
const MAX_INDEX_BYTES: u64 = 256 * 1024 * 1024;
/// The largest chunk request read: MAX_CHUNKS_PER_REQUEST names of 64 hex digits, quoted and
/// separated, with room to spare (the other endpoints' 16 KiB holds only ~240 names).
pub const CHUNKS_BODY_LIMIT: usize = 64 * 1024;
/// The advisory locks registrations take, one per coin (this plus the coin's id).
const REGISTER_LOCK: i64 = 7_161_733_000;

/// An S3-compatible bucket the cloud reads trees from and presigns URLs for.
#[derive(Clone)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    /// None: AWS itself; else the store's URL (`http://127.0.0.1:9000`, path-style requests).
    pub endpoint: Option<String>,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bucket({}, {}, {:?}, <credentials>)", self.name, self.region, self.endpoint)
    }
}

impl Bucket {
    /// The bucket with the credentials, region and endpoint of the usual AWS_* environment
    /// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT), as the
    /// publisher's upload reads them.
    pub fn from_env(name: &str) -> anyhow::Result<Bucket> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let need = |k: &str| {
            var(k).ok_or_else(|| anyhow::anyhow!("--snapshot-bucket {name}: set {k} (the bucket's credentials)"))
        };
        Ok(Bucket {
            name: name.to_string(),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into()),
            endpoint: var("AWS_ENDPOINT"),
            access_key_id: need("AWS_ACCESS_KEY_ID")?,
            secret_access_key: need("AWS_SECRET_ACCESS_KEY")?,
        })
    }

    fn store(&self) -> anyhow::Result<AmazonS3> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&self.name)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(&self.secret_access_key);
        if let Some(endpoint) = &self.endpoint {
            b = b.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(b.build()?)
    }
}

/// What `serve` is given for snapshots: the publishers' public keys (minisign) and the buckets.
#[derive(Clone, Default)]
pub struct SnapshotConfig {
    pub keys: Vec<PublicKey>,
    pub buckets: Vec<Bucket>,
}

impl fmt::Debug for SnapshotConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|k| k.id.to_string()).collect();
        f.debug_struct("SnapshotConfig").field("keys", &keys).field("buckets", &self.buckets).finish()
    }
}

/// The buckets as object stores, by name.
pub struct Stores(BTreeMap<String, Arc<AmazonS3>>);

impl Stores {
    pub fn new(config: &SnapshotConfig) -> anyhow::Result<Stores> {
        let mut map = BTreeMap::new();
        for b in &config.buckets {
            let store = b.store().map_err(|e| anyhow::anyhow!("snapshot bucket {}: {e}", b.name))?;
            map.insert(b.name.clone(), Arc::new(store));
        }
        Ok(Stores(map))
    }

    fn get(&self, bucket: &str) -> Result<&Arc<AmazonS3>, ApiError> {
        self.0.get(bucket).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "the cloud does not serve snapshots from a bucket named {:?} (it has: {}): register a tree in one \
                 of those, or start the cloud with --snapshot-bucket for it",
                bucket.chars().take(80).collect::<String>(),
                if self.0.is_empty() { "none".into() } else { self.0.keys().cloned().collect::<Vec<_>>().join(", ") }
            ))
        })
    }
}

fn object(prefix: &str, rel: &str) -> ObjectPath {
    if prefix.is_empty() {
        ObjectPath::from(rel)
    } else {
        ObjectPath::from(format!("{prefix}/{rel}"))
    }
}

async fn presign(store: &AmazonS3, path: &ObjectPath) -> Result<String, ApiError> {
    store
        .signed_url(axum::http::Method::GET, path, URL_TTL)
        .await
        .map(|u| u.to_string())
        .map_err(|e| ApiError::Internal(format!("presigning {path}: {e}")))
}

// The publisher's side -------------------------------------------------------------------------

/// The publisher a bearer token belongs to (a token `admin publisher-token` made, not revoked).
async fn publisher(app: &App, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "registering a snapshot takes a publisher's token (Authorization: Bearer ...): an operator makes \
                 one with `minebox-cloud admin publisher-token --name NAME`"
                    .into(),
            )
        })?;
    let client = db::client(&app.owner).await?;
    let row = client
        .query_opt(
            "SELECT name FROM publisher_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            &[&token_hash(token)],
        )
        .await?;
    row.map(|r| r.get(0)).ok_or_else(|| {
        ApiError::Unauthorized("this publisher token is not known or was revoked: ask the operator for one".into())
    })
}

/// A bucket prefix as registered: `/`-separated names of letters, digits, `.`, `_`, `-`.
fn check_prefix(prefix: &str) -> Result<String, ApiError> {
    let p = prefix.trim_matches('/');
    let ok = p.len() <= 200
        && p.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !ok || p.is_empty() {
        return Err(ApiError::Unprocessable(format!(
            "{:?} is not a tree's prefix in the bucket: give the path you uploaded to, like btc/main \
             (letters, digits, '.', '_', '-' between slashes)",
            prefix.chars().take(80).collect::<String>()
        )));
    }
    Ok(p.to_string())
}

async fn read_object(store: &AmazonS3, bucket: &str, path: &ObjectPath, max: u64) -> Result<Vec<u8>, ApiError> {
    let got = store.get(path).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => ApiError::Unprocessable(format!(
            "s3://{bucket}/{path} is not in the bucket: upload the published tree first (minebox-publisher upload)"
        )),
        other => ApiError::Unavailable(format!("reading s3://{bucket}/{path}: {other}; try again")),
    })?;
    if got.meta.size as u64 > max {
        return Err(ApiError::Unprocessable(format!(
            "s3://{bucket}/{path} is {} bytes, more than {max}: it is not a snapshot document",
            got.meta.size
        )));
    }
    let bytes = got.bytes().await.map_err(|e| ApiError::Unavailable(format!("reading s3://{bucket}/{path}: {e}")))?;
    Ok(bytes.to_vec())
}

const ENTRY_COLUMNS: &str = "c.coin_key::text, s.network::text, s.kind::text, s.version, s.block_height, \
     s.block_hash::text, s.size_bytes, s.compressed_size_bytes, s.chunk_count, s.manifest_sha256::text, \
     CASE WHEN s.is_current THEN 'current' ELSE s.status::text END";

fn entry(r: &tokio_postgres::Row) -> CatalogueEntry {
    CatalogueEntry {
        coin: r.get(0),
        network: r.get(1),
        kind: r.get(2),
        version: r.get::<_, i32>(3) as u64,
        height: r.get::<_, i32>(4) as u64,
        block_hash: r.get(5),
        total_bytes: r.get::<_, i64>(6) as u64,
        download_bytes: r.get::<_, i64>(7) as u64,
        chunk_count: r.get::<_, i32>(8) as u64,
        manifest_sha256: r.get(9),
        status: r.get(10),
    }
}

/// POST /api/v1/publisher/snapshots (a publisher's bearer token): catalogues the tree at
/// `<bucket>/<prefix>` after verifying it; with `make_current` it becomes its coin's current
/// snapshot of that network and kind, and the one before is deprecated.
pub async fn register(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Body(req): Body<Registration>,
) -> Result<Response, ApiError> {
    let who = publisher(&app, &headers).await?;
    let store = app.stores.get(&req.bucket)?.clone();
    let prefix = check_prefix(&req.prefix)?;
    let bucket = req.bucket.as_str();
    let manifest_bytes =
        read_object(&store, bucket, &object(&prefix, layout::MANIFEST), MAX_MANIFEST_BYTES as u64).await?;
    let signature =
        read_object(&store, bucket, &object(&prefix, layout::SIGNATURE), MAX_SIGNATURE_BYTES as u64).await?;
    let signature = String::from_utf8(signature).map_err(|_| {
        ApiError::Unprocessable(format!("{prefix}/{} is not a minisign signature file", layout::SIGNATURE))
    })?;
    let signed = minebox_snapshot::verify::verify_manifest(&manifest_bytes, &signature, &app.config.snapshots.keys)
        .map_err(|e| {
            ApiError::Unprocessable(format!(
                "the manifest at s3://{bucket}/{prefix} does not verify with the publisher keys the cloud trusts \
                 (--snapshot-key): {e}"
            ))
        })?;
    let index_size = signed.manifest().index_size();
    if index_size > MAX_INDEX_BYTES {
        return Err(ApiError::Unprocessable(format!("the manifest says its index is {index_size} bytes: too large")));
    }
    let index_bytes = read_object(&store, bucket, &object(&prefix, layout::INDEX), index_size).await?;
    let verified = signed.verify_index(&index_bytes).map_err(|e| {
        ApiError::Unprocessable(format!("the index at s3://{bucket}/{prefix} does not match its signed manifest: {e}"))
    })?;
    let (m, index) = verified.into_parts();
    // The chunks as served, with their sizes: every one the index names must be there.
    let listed: HashMap<String, u64> = store
        .list(Some(&object(&prefix, "chunks")))
        .map_ok(|o| (o.location.filename().unwrap_or("").trim_end_matches(".zst").to_string(), o.size as u64))
        .try_collect()
        .await
        .map_err(|e| ApiError::Unavailable(format!("listing s3://{bucket}/{prefix}/chunks: {e}; try again")))?;
    let refs: Vec<_> = index.chunks().collect();
    let missing: Vec<String> =
        refs.iter().map(|c| c.hash.to_hex()).filter(|h| !listed.contains_key(h)).collect::<Vec<_>>();
    if let Some(first) = missing.first() {
        return Err(ApiError::Unprocessable(format!(
            "{} chunks the index names are not in s3://{bucket}/{prefix}/chunks (first: {first}): upload the whole \
             tree, then register",
            missing.len()
        )));
    }
    let too_big = |what: &str, n: u64| {
        ApiError::Unprocessable(format!("the manifest's {what} {n} is larger than the catalogue holds"))
    };
    let version = i32::try_from(m.version()).map_err(|_| too_big("version", m.version()))?;
    let height = i32::try_from(m.height()).map_err(|_| too_big("height", m.height()))?;
    let chunk_count = i32::try_from(refs.len()).map_err(|_| too_big("chunk count", refs.len() as u64))?;
    let mut seen = HashSet::new();
    let download_bytes: u64 = refs.iter().filter(|c| seen.insert(c.hash)).map(|c| listed[&c.hash.to_hex()]).sum();
    let manifest_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&manifest_bytes));
    let kind = match m.kind() {
        minebox_snapshot::manifest::Kind::Datadir => "datadir",
        minebox_snapshot::manifest::Kind::Utxo => "utxo",
    };

    let mut client = db::client(&app.owner).await?;
    let tx = client.transaction().await?;
    let coin: Option<i32> =
        tx.query_opt("SELECT id FROM coins WHERE coin_key = $1", &[&m.coin()]).await?.map(|r| r.get(0));
    let Some(coin) = coin else {
        return Err(ApiError::Unprocessable(format!(
            "the manifest's coin {:?} is not one MineBox Cloud knows",
            m.coin()
        )));
    };
    // One registration of a coin's network and kind at a time (the current flag moves).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&(REGISTER_LOCK + i64::from(coin))]).await?;
    let existing = tx
        .query_opt(
            "SELECT id, manifest_sha256::text FROM snapshots
              WHERE coin_id = $1 AND network = $2 AND kind = $3 AND (version = $4 OR block_height = $5)",
            &[&coin, &m.network(), &kind, &version, &height],
        )
        .await?;
    let (id, already) = match existing {
        Some(r) if r.get::<_, String>(1) == manifest_sha => (r.get::<_, Uuid>(0), true),
        Some(_) => {
            return Err(ApiError::Conflict(format!(
                "{} {} {kind} version {} or height {} is catalogued already with another manifest: publish a higher \
                 version",
                m.coin(),
                m.network(),
                m.version(),
                m.height()
            )))
        }
        None => {
            let id: Uuid = tx
                .query_one(
                    "INSERT INTO snapshots (coin_id, network, kind, version, block_height, block_hash, size_bytes,
                                            compressed_size_bytes, chunk_count, merkle_root, manifest_sha256,
                                            index_sha256, key_id, expires_at, storage_bucket, storage_prefix,
                                            registered_by)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, to_timestamp($14::int8::float8),
                             $15, $16, $17)
                     RETURNING id",
                    &[
                        &coin,
                        &m.network(),
                        &kind,
                        &version,
                        &height,
                        &m.block_hash(),
                        &(m.total_bytes() as i64),
                        &(download_bytes as i64),
                        &chunk_count,
                        &m.merkle_root(),
                        &manifest_sha,
                        &m.index_sha256(),
                        &m.key_id(),
                        &m.expires(),
                        &bucket,
                        &prefix,
                        &who,
                    ],
                )
                .await?
                .get(0);
            let hashes: Vec<String> = refs.iter().map(|c| c.hash.to_hex()).collect();
            let sizes: Vec<i32> = refs.iter().map(|c| c.size as i32).collect();
            let served: Vec<i32> = hashes.iter().map(|h| listed[h] as i32).collect();
            tx.execute(
                "INSERT INTO snapshot_chunks (snapshot_id, chunk_index, size_bytes, compressed_size_bytes, checksum_sha256)
                 SELECT $1, (r.n - 1)::int, r.size, r.served, r.hash
                   FROM unnest($2::text[], $3::int[], $4::int[]) WITH ORDINALITY AS r (hash, size, served, n)",
                &[&id, &hashes, &sizes, &served],
            )
            .await?;
            (id, false)
        }
    };
    if req.make_current {
        tx.execute(
            "UPDATE snapshots SET is_current = FALSE, status = 'deprecated', deprecated_at = now()
              WHERE coin_id = $1 AND network = $2 AND kind = $3 AND is_current AND id <> $4",
            &[&coin, &m.network(), &kind, &id],
        )
        .await?;
        tx.execute(
            "UPDATE snapshots SET is_current = TRUE, status = 'available', deprecated_at = NULL WHERE id = $1",
            &[&id],
        )
        .await?;
    }
    let row = tx
        .query_one(
            &format!("SELECT {ENTRY_COLUMNS} FROM snapshots s JOIN coins c ON c.id = s.coin_id WHERE s.id = $1"),
            &[&id],
        )
        .await?;
    tx.commit().await?;
    let entry = entry(&row);
    let message = format!(
        "{} {} {} version {} (height {}, {} chunks, {} bytes to download) {}{}",
        entry.coin,
        entry.network,
        entry.kind,
        entry.version,
        entry.height,
        entry.chunk_count,
        entry.download_bytes,
        if already { "was catalogued already" } else { "is catalogued" },
        if entry.status == "current" { "; it is the current one boxes get" } else { "; not offered to boxes yet" },
    );
    tracing::info!("publisher {who}: {message}");
    let status = if already { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(Registered { entry, already, message })).into_response())
}

// The box's side -------------------------------------------------------------------------------

/// The linked device behind a verified key, and its user.
async fn linked(app: &App, key: &str) -> Result<(Uuid, Uuid), ApiError> {
    let client = db::client(&app.api).await?;
    let row = client.query_opt("SELECT device_id, user_id FROM minebox_device_owner($1)", &[&key]).await?;
    match row.map(|r| (r.get::<_, Uuid>(0), r.get::<_, Option<Uuid>>(1))) {
        None => Err(ApiError::Unauthorized(
            "the cloud does not know this device key: pair the box with an account first".into(),
        )),
        Some((_, None)) => Err(ApiError::Forbidden(
            "this box is not linked to an account: snapshots through the cloud need a linked box (pair it; \
             without the cloud the box syncs from its peers)"
                .into(),
        )),
        Some((device, Some(user))) => Ok((device, user)),
    }
}

fn check_word(what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.is_empty() || value.len() > max || !value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()) {
        return Err(ApiError::Unprocessable(format!(
            "{:?} is not a {what} (lower-case letters and digits, like btc or main)",
            value.chars().take(40).collect::<String>()
        )));
    }
    Ok(())
}

/// This month's use and limits, and the day the month ends (`YYYY-MM-DD`, UTC).
struct Month {
    usage: Usage,
    resets: String,
}

async fn month(tx: &deadpool_postgres::Transaction<'_>, user: Uuid) -> Result<Month, ApiError> {
    let row = tx
        .query_one(
            "WITH m AS (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AS start)
             SELECT e.plan, e.snapshot_downloads_per_month, e.snapshot_bytes_per_month,
                    (SELECT count(*) FROM snapshot_downloads sd
                      WHERE sd.user_id = $1 AND sd.started_at >= (m.start AT TIME ZONE 'UTC')),
                    (SELECT coalesce(sum(sd.bytes_downloaded), 0)::int8 FROM snapshot_downloads sd
                      WHERE sd.user_id = $1 AND sd.started_at >= (m.start AT TIME ZONE 'UTC')),
                    to_char(m.start + interval '1 month', 'YYYY-MM-DD')
               FROM minebox_effective_plan($1) e CROSS JOIN m",
            &[&user],
        )
        .await?;
    let (plan, downloads_limit, bytes_limit): (String, Option<i32>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    let (downloads, bytes, resets): (i64, i64, String) = (row.get(3), row.get(4), row.get(5));
    Ok(Month {
        usage: Usage {
            plan,
            downloads: downloads as u64,
            downloads_limit: downloads_limit.map(|l| l.max(0) as u64),
            bytes: bytes as u64,
            bytes_limit: bytes_limit.map(|l| l.max(0) as u64),
        },
        resets,
    })
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The refusal when a new download would pass the plan's downloads a month.
fn over_downloads(m: &Month, limit: u64) -> ApiError {
    ApiError::OverQuota(format!(
        "snapshot download limit reached: your {} plan allows {limit} snapshot download{} a month and {} {} used \
         this month; it resets on {} (UTC). A bigger plan lifts the limit; until then the box syncs from its peers.",
        m.usage.plan,
        if limit == 1 { "" } else { "s" },
        m.usage.downloads,
        if m.usage.downloads == 1 { "was" } else { "were" },
        m.resets
    ))
}

/// The refusal when chunks would pass the plan's bytes a month.
fn over_bytes(m: &Month, limit: u64, more: u64) -> ApiError {
    ApiError::OverQuota(format!(
        "snapshot data limit reached: your {} plan allows {} of snapshot downloads a month, {} are used this month \
         and these chunks need {} more; it resets on {} (UTC). A bigger plan lifts the limit; until then the box \
         syncs from its peers.",
        m.usage.plan,
        gib(limit),
        gib(m.usage.bytes),
        gib(more),
        m.resets
    ))
}

/// POST /api/v1/device/snapshots/offer (signed, linked): the coin's current snapshots and this
/// month's use. Not metered.
pub async fn offer(State(app): State<Arc<App>>, Signed { key, body }: Signed) -> Result<Response, ApiError> {
    let (_, user) = linked(&app, &key).await?;
    let req: OfferRequest = json_of(&body)?;
    check_word("coin id", &req.coin, 20)?;
    check_word("network", &req.network, 10)?;
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, user).await?;
    let rows = tx
        .query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM snapshots s JOIN coins c ON c.id = s.coin_id
                  WHERE c.coin_key = $1 AND s.network = $2 AND s.is_current ORDER BY s.kind"
            ),
            &[&req.coin, &req.network],
        )
        .await?;
    let m = month(&tx, user).await?;
    tx.commit().await?;
    Ok(Json(Offered { entries: rows.iter().map(entry).collect(), usage: m.usage }).into_response())
}

/// POST /api/v1/device/snapshots/grant (signed, linked): a download of the coin's current
/// snapshot (an unfinished one of this box is resumed), and URLs for its documents.
pub async fn grant(State(app): State<Arc<App>>, Signed { key, body }: Signed) -> Result<Response, ApiError> {
    let (device, user) = linked(&app, &key).await?;
    let req: GrantRequest = json_of(&body)?;
    check_word("coin id", &req.coin, 20)?;
    check_word("network", &req.network, 10)?;
    if let Some(kind) = &req.kind {
        if kind != "datadir" && kind != "utxo" {
            return Err(ApiError::Unprocessable(format!(
                "{:?} is not a snapshot kind: datadir or utxo",
                kind.chars().take(40).collect::<String>()
            )));
        }
    }
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, user).await?;
    let row = tx
        .query_opt(
            &format!(
                "SELECT {ENTRY_COLUMNS}, s.id, s.storage_bucket::text, s.storage_prefix::text
                   FROM snapshots s JOIN coins c ON c.id = s.coin_id
                  WHERE c.coin_key = $1 AND s.network = $2 AND s.is_current AND ($3::text IS NULL OR s.kind = $3)
                  ORDER BY s.kind = 'datadir' DESC LIMIT 1"
            ),
            &[&req.coin, &req.network, &req.kind],
        )
        .await?;
    let Some(row) = row else {
        return Err(ApiError::NotFound(format!(
            "the catalogue has no current {}snapshot of {} {}: the box syncs from its peers",
            req.kind.as_deref().map(|k| format!("{k} ")).unwrap_or_default(),
            req.coin,
            req.network
        )));
    };
    let snapshot = entry(&row);
    let (snapshot_id, bucket, prefix): (Uuid, Option<String>, Option<String>) = (row.get(11), row.get(12), row.get(13));
    let store = app.stores.get(bucket.as_deref().unwrap_or_default()).map_err(|_| {
        ApiError::Unavailable(format!(
            "the snapshot's bucket {bucket:?} is not configured on this cloud any more; try again later"
        ))
    })?;
    let prefix = prefix.unwrap_or_default();
    // One grant per user at a time, so two boxes cannot both pass the last download left.
    tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user]).await?;
    let unfinished = tx
        .query_opt(
            "SELECT id, started_at FROM snapshot_downloads
              WHERE user_id = $1 AND device_id = $2 AND snapshot_id = $3 AND completed_at IS NULL
                AND started_at >= (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')
              ORDER BY started_at DESC LIMIT 1",
            &[&user, &device, &snapshot_id],
        )
        .await?;
    let (download, resumed) = match unfinished {
        Some(r) => {
            let (id, started): (Uuid, std::time::SystemTime) = (r.get(0), r.get(1));
            tx.execute(
                "UPDATE snapshot_downloads SET resumed_count = resumed_count + 1 WHERE id = $1 AND started_at = $2",
                &[&id, &started],
            )
            .await?;
            (id, true)
        }
        None => {
            let m = month(&tx, user).await?;
            if let Some(limit) = m.usage.downloads_limit.filter(|l| m.usage.downloads >= *l) {
                return Err(over_downloads(&m, limit));
            }
            if let Some(limit) = m.usage.bytes_limit.filter(|l| m.usage.bytes >= *l) {
                return Err(over_bytes(&m, limit, 0));
            }
            let id: Uuid = tx
                .query_one(
                    "INSERT INTO snapshot_downloads (snapshot_id, user_id, device_id) VALUES ($1, $2, $3) RETURNING id",
                    &[&snapshot_id, &user, &device],
                )
                .await?
                .get(0);
            (id, false)
        }
    };
    let m = month(&tx, user).await?;
    tx.commit().await?;
    let manifest_url = presign(store, &object(&prefix, layout::MANIFEST)).await?;
    let signature_url = presign(store, &object(&prefix, layout::SIGNATURE)).await?;
    let index_url = presign(store, &object(&prefix, layout::INDEX)).await?;
    Ok(Json(Grant {
        download: download.to_string(),
        resumed,
        snapshot,
        manifest_url,
        signature_url,
        index_url,
        expires_in: URL_TTL.as_secs(),
        usage: m.usage,
    })
    .into_response())
}

/// The download `id` names, if it is this box's: (its start, its snapshot's id, bucket and
/// prefix, whether it is complete). Another user's download is invisible (row-level security);
/// another box's of the same user is refused the same way.
async fn this_boxs_download(
    tx: &deadpool_postgres::Transaction<'_>,
    id: &str,
    device: Uuid,
) -> Result<(Uuid, std::time::SystemTime, Uuid, String, String, bool), ApiError> {
    let not_found = || {
        ApiError::NotFound(format!(
            "this box has no snapshot download {:?}: ask for a grant (POST /api/v1/device/snapshots/grant)",
            id.chars().take(40).collect::<String>()
        ))
    };
    let uuid: Uuid = id.parse().map_err(|_| not_found())?;
    let row = tx
        .query_opt(
            "SELECT sd.started_at, sd.snapshot_id, s.storage_bucket::text, s.storage_prefix::text,
                    sd.completed_at IS NOT NULL, sd.device_id
               FROM snapshot_downloads sd JOIN snapshots s ON s.id = sd.snapshot_id
              WHERE sd.id = $1",
            &[&uuid],
        )
        .await?
        .ok_or_else(not_found)?;
    if row.get::<_, Option<Uuid>>(5) != Some(device) {
        return Err(not_found());
    }
    let (bucket, prefix): (Option<String>, Option<String>) = (row.get(2), row.get(3));
    Ok((uuid, row.get(0), row.get(1), bucket.unwrap_or_default(), prefix.unwrap_or_default(), row.get(4)))
}

/// POST /api/v1/device/snapshots/downloads/{download}/chunks (signed, linked): URLs for chunks
/// of the download's snapshot, each metered once per download, within the plan's bytes.
pub async fn chunks(
    State(app): State<Arc<App>>,
    Path(download): Path<String>,
    Signed { key, body }: Signed,
) -> Result<Response, ApiError> {
    let (device, user) = linked(&app, &key).await?;
    let req: ChunkRequest = json_of(&body)?;
    if req.chunks.len() > MAX_CHUNKS_PER_REQUEST {
        return Err(ApiError::Unprocessable(format!(
            "{} chunks asked for at once: at most {MAX_CHUNKS_PER_REQUEST} per request",
            req.chunks.len()
        )));
    }
    for c in &req.chunks {
        if c.len() != 64 || !c.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(ApiError::Unprocessable(format!(
                "{:?} is not a chunk name: 64 lower-case hex digits, as the index names it",
                c.chars().take(80).collect::<String>()
            )));
        }
    }
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, user).await?;
    tx.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", &[&user]).await?;
    let (id, started, snapshot_id, bucket, prefix, complete) = this_boxs_download(&tx, &download, device).await?;
    if complete {
        return Err(ApiError::Conflict(
            "this download is complete: ask for a new grant to download the snapshot again".into(),
        ));
    }
    let store = app.stores.get(&bucket).map_err(|_| {
        ApiError::Unavailable(format!("the snapshot's bucket {bucket:?} is not configured on this cloud any more"))
    })?;
    let sizes: HashMap<String, i32> = tx
        .query(
            "SELECT checksum_sha256::text, max(compressed_size_bytes) FROM snapshot_chunks
              WHERE snapshot_id = $1 AND checksum_sha256 = ANY($2) GROUP BY 1",
            &[&snapshot_id, &req.chunks],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    if let Some(stranger) = req.chunks.iter().find(|c| !sizes.contains_key(*c)) {
        return Err(ApiError::Unprocessable(format!(
            "the chunk {stranger} is not in this download's snapshot: ask only for chunks its index names"
        )));
    }
    let had: HashSet<String> = tx
        .query(
            "SELECT chunk::text FROM snapshot_download_chunks WHERE download_id = $1 AND chunk = ANY($2)",
            &[&id, &req.chunks],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut new: Vec<&String> = req.chunks.iter().filter(|c| !had.contains(*c)).collect();
    new.sort();
    new.dedup();
    let more: u64 = new.iter().map(|c| sizes[*c] as u64).sum();
    if !new.is_empty() {
        let m = month(&tx, user).await?;
        if let Some(limit) = m.usage.bytes_limit.filter(|l| m.usage.bytes + more > *l) {
            return Err(over_bytes(&m, limit, more));
        }
        let names: Vec<&str> = new.iter().map(|c| c.as_str()).collect();
        let bytes: Vec<i32> = new.iter().map(|c| sizes[*c]).collect();
        tx.execute(
            "INSERT INTO snapshot_download_chunks (download_id, chunk, user_id, compressed_size_bytes)
             SELECT $1, r.chunk, $2, r.bytes FROM unnest($3::text[], $4::int[]) AS r (chunk, bytes)
             ON CONFLICT DO NOTHING",
            &[&id, &user, &names, &bytes],
        )
        .await?;
        tx.execute(
            "UPDATE snapshot_downloads SET chunks_downloaded = chunks_downloaded + $3,
                    bytes_downloaded = bytes_downloaded + $4
              WHERE id = $1 AND started_at = $2",
            &[&id, &started, &(new.len() as i32), &(more as i64)],
        )
        .await?;
    }
    let m = month(&tx, user).await?;
    tx.commit().await?;
    let mut urls = Vec::with_capacity(req.chunks.len());
    for c in &req.chunks {
        let hash: minebox_snapshot::ChunkHash = c.parse().map_err(|_| ApiError::Internal(format!("chunk {c}")))?;
        let url = presign(store, &object(&prefix, &layout::chunk_path(&hash))).await?;
        urls.push(ChunkUrl { chunk: c.clone(), url });
    }
    Ok(Json(ChunkUrls { urls, expires_in: URL_TTL.as_secs(), usage: m.usage }).into_response())
}

/// POST /api/v1/device/snapshots/downloads/{download}/complete (signed, linked): the box is
/// done; what it says it fetched is kept beside what was metered.
pub async fn complete(
    State(app): State<Arc<App>>,
    Path(download): Path<String>,
    Signed { key, body }: Signed,
) -> Result<Response, ApiError> {
    let (device, user) = linked(&app, &key).await?;
    let done: Completion = json_of(&body)?;
    let chunks = i32::try_from(done.chunks_fetched).map_err(|_| {
        ApiError::Unprocessable(format!("{} chunks is more than any snapshot has", done.chunks_fetched))
    })?;
    let bytes = i64::try_from(done.bytes_fetched)
        .map_err(|_| ApiError::Unprocessable(format!("{} bytes is more than any snapshot has", done.bytes_fetched)))?;
    let mut client = db::client(&app.api).await?;
    let tx = begin_as(&mut client, &app.context, user).await?;
    let (id, started, _, _, _, complete) = this_boxs_download(&tx, &download, device).await?;
    if !complete {
        tx.execute(
            "UPDATE snapshot_downloads SET completed_at = now(), reported_chunks = $3, reported_bytes = $4
              WHERE id = $1 AND started_at = $2",
            &[&id, &started, &chunks, &bytes],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Json(serde_json::json!({
        "recorded": !complete,
        "message": if complete { "this download was marked complete already" } else { "download complete" },
    }))
    .into_response())
}

/// `minebox-cloud admin publisher-token --name NAME`: a new token for a publisher (replacing
/// the one it had), printed once; only its SHA-256 is stored.
pub async fn publisher_token(client: &mut deadpool_postgres::Object, name: &str) -> anyhow::Result<String> {
    let name = name.trim();
    anyhow::ensure!(
        !name.is_empty() && name.len() <= 100 && !name.chars().any(char::is_control),
        "give the publisher a name (1 to 100 characters)"
    );
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    let token = format!("mbp_{}", hex::encode(bytes));
    client
        .execute(
            "INSERT INTO publisher_tokens (name, token_hash) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET token_hash = EXCLUDED.token_hash, created_at = now(), revoked_at = NULL",
            &[&name, &token_hash(&token)],
        )
        .await?;
    Ok(format!(
        "{token}\n# the token of publisher {name:?} (shown once; an earlier one of that name no longer works): \
         minebox-publisher register --token-file FILE"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_paths_of_plain_names() {
        assert_eq!(check_prefix("/btc/main/").unwrap(), "btc/main");
        for bad in ["", "/", "btc/../etc", "btc//main", "btc/main'; DROP TABLE snapshots;--", "a b", "./x"] {
            assert!(check_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quota_refusals_say_which_limit_what_is_used_and_when_it_resets() {
        let m = Month {
            usage: Usage {
                plan: "free".into(),
                downloads: 1,
                downloads_limit: Some(1),
                bytes: 3 << 30,
                bytes_limit: Some(50 << 30),
            },
            resets: "2027-01-01".into(),
        };
        let words = over_downloads(&m, 1).to_string();
        for part in
            ["free plan allows 1 snapshot download a month", "1 was used", "resets on 2027-01-01", "bigger plan"]
        {
            assert!(words.contains(part), "{words}");
        }
        let words = over_bytes(&m, 50 << 30, 48 << 30).to_string();
        for part in ["50.0 GiB", "3.0 GiB are used", "48.0 GiB more", "2027-01-01", "bigger plan"] {
            assert!(words.contains(part), "{words}");
        }
    }
}
