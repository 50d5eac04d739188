//! The cloud target: copy a published tree to an S3-compatible bucket, chunks the bucket
//! lacks first and the manifest last, so readers of the bucket never see a manifest whose
//! parts are missing. The local tree stays the publisher's working copy.

use anyhow::{bail, Context};
use futures::TryStreamExt;
use minebox_snapshot::layout;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload};
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UploadReport {
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub already_there: usize,
}

/// `s3://bucket/prefix` → (bucket, prefix).
pub fn parse_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("s3://").context("the target must look like s3://bucket/prefix")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("{url}: no bucket name");
    }
    Ok((bucket.to_string(), prefix.trim_matches('/').to_string()))
}

/// Credentials, region and endpoint come from the usual AWS_* environment variables
/// (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT for non-AWS stores);
/// they never appear in arguments or output.
pub async fn upload(dir: &Path, url: &str) -> anyhow::Result<UploadReport> {
    let (bucket, prefix) = parse_url(url)?;
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(&bucket)
        .with_allow_http(true)
        .build()
        .context("object store settings")?;
    let key =
        |rel: &str| if prefix.is_empty() { ObjectPath::from(rel) } else { ObjectPath::from(format!("{prefix}/{rel}")) };
    let chunk_prefix = key("chunks");
    let existing: HashSet<String> = store
        .list(Some(&chunk_prefix))
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .context("listing the bucket")?;
    let mut report = UploadReport::default();
    let mut chunks = Vec::new();
    let mut stack = vec![dir.join("chunks")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).with_context(|| format!("{}", d.display()))? {
            let e = e?;
            if e.file_type()?.is_dir() {
                stack.push(e.path());
            } else if e.path().extension().and_then(|x| x.to_str()) == Some("zst") {
                chunks.push(e.path());
            }
        }
    }
    for path in chunks {
        let rel = path.strip_prefix(dir)?.to_string_lossy().replace('\\', "/");
        let k = key(&rel);
        if existing.contains(&k.to_string()) {
            report.already_there += 1;
            continue;
        }
        let bytes = std::fs::read(&path)?;
        report.uploaded_bytes += bytes.len() as u64;
        store.put(&k, PutPayload::from(bytes)).await.with_context(|| format!("uploading {rel}"))?;
        report.uploaded += 1;
    }
    for doc in [layout::INDEX, layout::SIGNATURE, layout::MANIFEST] {
        let bytes = std::fs::read(dir.join(doc)).with_context(|| format!("{doc}: publish first"))?;
        report.uploaded_bytes += bytes.len() as u64;
        store.put(&key(doc), PutPayload::from(bytes)).await.with_context(|| format!("uploading {doc}"))?;
        report.uploaded += 1;
    }
    Ok(report)
}
