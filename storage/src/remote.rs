//! S3-compatible object storage for closed hours. Objects keep the local layout: the key of a
//! file is `<prefix>/<catalog path>` (`dt=YYYY-MM-DD/hh=HH/<file>.parquet`), so DuckDB, Spark
//! and DataFusion read the bucket exactly as they read `<data>/entries/`.
//!
//! This module only moves bytes; which hours move and what the catalog records is the caller's.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use url::Url;

use crate::error::{IoContext, StorageError};

/// Files above this size go up as a multipart upload: one PUT of a large file is slow to retry
/// and S3 caps a single PUT at 5 GiB.
pub const MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Part size of multipart uploads (S3 wants ≥ 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight per upload; bounds memory to about `PART_SIZE * (UPLOAD_CONCURRENCY + 1)`.
const UPLOAD_CONCURRENCY: usize = 4;
/// Local read size while feeding an upload.
const READ_CHUNK: usize = 1024 * 1024;

/// Where closed hours go. Deserialisable from the config file; [`S3Config::from_url`] serves
/// the CLI. Unset credentials and region fall back to what `AmazonS3Builder::from_env` finds
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_REGION`, web
/// identity, ECS or EC2 instance credentials).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix under which the `dt=…/hh=…` tree lives; empty for the bucket root.
    #[serde(default)]
    pub prefix: String,
    #[serde(default)]
    pub region: Option<String>,
    /// Custom endpoint (MinIO, moto, Ceph…), e.g. `http://127.0.0.1:9000`; path-style requests.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    #[serde(default)]
    pub session_token: Option<String>,
    /// Needed for an `http://` endpoint; off by default so credentials never go in clear text
    /// by accident.
    #[serde(default)]
    pub allow_http: bool,
}

/// Secrets stay out of logs.
impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &hidden(&self.secret_access_key))
            .field("session_token", &hidden(&self.session_token))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl S3Config {
    /// `s3://bucket[/prefix][?endpoint=URL&region=R&allow_http=true]`. Credentials are not
    /// accepted in the URL (it ends up in shell history and `ps`); they come from the
    /// environment or the config file.
    pub fn from_url(s: &str) -> Result<Self, StorageError> {
        let bad = |why: String| StorageError::RemoteConfig(format!("{s}: {why}"));
        let url = Url::parse(s).map_err(|e| bad(e.to_string()))?;
        if url.scheme() != "s3" {
            return Err(bad("expected an s3:// URL".into()));
        }
        let bucket = url
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| bad("no bucket name".into()))?
            .to_string();
        let mut config = S3Config {
            bucket,
            prefix: url.path().trim_matches('/').to_string(),
            ..Default::default()
        };
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "endpoint" => config.endpoint = Some(v.into_owned()),
                "region" => config.region = Some(v.into_owned()),
                "allow_http" => {
                    config.allow_http = v
                        .parse()
                        .map_err(|_| bad(format!("allow_http={v}: expected true or false")))?
                }
                other => {
                    return Err(bad(format!(
                        "unknown parameter {other:?} (known: endpoint, region, allow_http)"
                    )))
                }
            }
        }
        Ok(config)
    }
}

/// What `head` and `list` report about one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteObject {
    /// Catalog path (relative to the store's prefix).
    pub rel: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
    /// For S3, a multipart upload's ETag ends in `-<parts>`.
    pub e_tag: Option<String>,
}

/// One bucket (and prefix) of S3-compatible storage holding the `entries/` tree.
#[derive(Clone, Debug)]
pub struct RemoteStore {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// Normalised: no leading or trailing `/`.
    prefix: ObjectPath,
    url: Url,
}

impl RemoteStore {
    /// Builds the client; no request is made (see [`RemoteStore::check`]).
    pub fn new(config: &S3Config) -> Result<Self, StorageError> {
        let bad =
            |why: String| StorageError::RemoteConfig(format!("bucket {}: {why}", config.bucket));
        if config.bucket.is_empty() {
            return Err(StorageError::RemoteConfig("empty bucket name".into()));
        }
        let url = Url::parse(&format!("s3://{}", config.bucket))
            .map_err(|e| bad(format!("not usable as a URL host: {e}")))?;
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_allow_http(config.allow_http);
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let Some(endpoint) = &config.endpoint {
            // Path-style: MinIO and moto do not resolve `<bucket>.<host>`.
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        match (&config.access_key_id, &config.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
                if let Some(token) = &config.session_token {
                    builder = builder.with_token(token);
                }
            }
            (None, None) => {}
            _ => {
                return Err(bad(
                    "access_key_id and secret_access_key must be given together".into(),
                ))
            }
        }
        let store = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(RemoteStore {
            store: Arc::new(store),
            bucket: config.bucket.clone(),
            prefix: ObjectPath::from(config.prefix.as_str()),
            url,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The store to register with DataFusion under [`RemoteStore::url`].
    pub fn object_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.store)
    }

    /// `s3://<bucket>`: the URL DataFusion's `register_object_store` expects.
    pub fn url(&self) -> Url {
        self.url.clone()
    }

    /// Key of a catalog path: `<prefix>/<rel>`.
    pub fn object_path(&self, rel: &str) -> ObjectPath {
        ObjectPath::from_iter(self.prefix.parts().chain(ObjectPath::from(rel).parts()))
    }

    /// Full `s3://bucket/<prefix>/<rel>` URL of a catalog path (or of a partition folder), for
    /// listing tables and for messages.
    pub fn file_url(&self, rel: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.object_path(rel))
    }

    /// One cheap request that fails clearly when the bucket is missing or credentials are wrong;
    /// for startup, so a misconfiguration does not surface hours later at the first upload.
    pub async fn check(&self) -> Result<(), StorageError> {
        self.store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map(|_| ())
            .map_err(|e| self.err("list", self.prefix.as_ref(), e))
    }

    /// Uploads a local file as `rel`, multipart above [`MULTIPART_THRESHOLD`], then checks with
    /// a HEAD that the object has the file's size. A failed multipart upload is aborted so no
    /// parts are left behind (they are billed).
    pub async fn upload(&self, local: &Path, rel: &str) -> Result<RemoteObject, StorageError> {
        let key = self.object_path(rel);
        let len = tokio::fs::metadata(local).await.at(local)?.len();
        let sent = if len <= MULTIPART_THRESHOLD {
            let data = tokio::fs::read(local).await.at(local)?;
            let sent = data.len() as u64;
            self.store
                .put(&key, PutPayload::from(data))
                .await
                .map_err(|e| self.err("put", key.as_ref(), e))?;
            sent
        } else {
            self.upload_multipart(local, &key).await?
        };
        if sent != len {
            return Err(self.size_err("upload (file changed while read)", &key, len, sent));
        }
        let meta = self.head(rel).await?;
        if meta.size != sent {
            return Err(self.size_err("upload", &key, sent, meta.size));
        }
        Ok(meta)
    }

    async fn upload_multipart(&self, local: &Path, key: &ObjectPath) -> Result<u64, StorageError> {
        let mut file = tokio::fs::File::open(local).await.at(local)?;
        let upload = self
            .store
            .put_multipart(key)
            .await
            .map_err(|e| self.err("multipart start", key.as_ref(), e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut buf = vec![0u8; READ_CHUNK];
        let mut sent = 0u64;
        let result: Result<(), StorageError> = async {
            loop {
                let n = file.read(&mut buf).await.at(local)?;
                if n == 0 {
                    return Ok(());
                }
                writer
                    .wait_for_capacity(UPLOAD_CONCURRENCY)
                    .await
                    .map_err(|e| self.err("multipart part", key.as_ref(), e))?;
                writer.write(&buf[..n]);
                sent += n as u64;
            }
        }
        .await;
        match result {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|e| self.err("multipart complete", key.as_ref(), e))?;
                Ok(sent)
            }
            Err(e) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = %key, error = %abort, "aborting multipart upload failed");
                }
                Err(e)
            }
        }
    }

    /// Size, ETag and modification time of `rel`; [`StorageError::RemoteNotFound`] if absent
    /// (also when the bucket is missing: a HEAD response has no body to tell them apart, which
    /// is what [`RemoteStore::check`] is for).
    pub async fn head(&self, rel: &str) -> Result<RemoteObject, StorageError> {
        let key = self.object_path(rel);
        let meta = self
            .store
            .head(&key)
            .await
            .map_err(|e| self.err("head", key.as_ref(), e))?;
        Ok(self.object(meta))
    }

    /// Bytes `range` of `rel` (for footers and page reads without a download).
    pub async fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let key = self.object_path(rel);
        let bytes = self
            .store
            .get_range(&key, range.clone())
            .await
            .map_err(|e| self.err("get range", key.as_ref(), e))?;
        let expected = range.end.saturating_sub(range.start);
        if bytes.len() as u64 != expected {
            return Err(self.size_err("get range", &key, expected, bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// Downloads `rel` to `local` through `<local>.part` and a rename, so a reader never sees a
    /// half-written Parquet file; returns the size.
    pub async fn download(&self, rel: &str, local: &Path) -> Result<u64, StorageError> {
        let key = self.object_path(rel);
        if let Some(dir) = local.parent() {
            tokio::fs::create_dir_all(dir).await.at(dir)?;
        }
        let mut part = local.as_os_str().to_owned();
        part.push(".part");
        let part = PathBuf::from(part);
        let result = self.download_to(&key, &part).await;
        match result {
            Ok(n) => {
                tokio::fs::rename(&part, local).await.at(local)?;
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    async fn download_to(&self, key: &ObjectPath, part: &Path) -> Result<u64, StorageError> {
        let get = self
            .store
            .get(key)
            .await
            .map_err(|e| self.err("get", key.as_ref(), e))?;
        let expected = get.meta.size;
        let mut stream = get.into_stream();
        let mut file = tokio::fs::File::create(part).await.at(part)?;
        let mut written = 0u64;
        while let Some(chunk) = stream
            .try_next()
            .await
            .map_err(|e| self.err("get", key.as_ref(), e))?
        {
            file.write_all(&chunk).await.at(part)?;
            written += chunk.len() as u64;
        }
        file.sync_all().await.at(part)?;
        if written != expected {
            return Err(self.size_err("download", key, expected, written));
        }
        Ok(written)
    }

    /// Deletes `rel`. Deleting a missing object succeeds (S3 semantics), so retries are safe.
    pub async fn delete(&self, rel: &str) -> Result<(), StorageError> {
        let key = self.object_path(rel);
        self.store
            .delete(&key)
            .await
            .map_err(|e| self.err("delete", key.as_ref(), e))
    }

    /// Every object under `rel_prefix` (whole path segments, e.g. `dt=2026-11-25` or
    /// `dt=2026-11-25/hh=03`; empty for all), sorted by catalog path.
    pub async fn list(&self, rel_prefix: &str) -> Result<Vec<RemoteObject>, StorageError> {
        let prefix = self.object_path(rel_prefix);
        let mut out: Vec<RemoteObject> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| self.object(meta))
            .try_collect()
            .await
            .map_err(|e| self.err("list", prefix.as_ref(), e))?;
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    fn object(&self, meta: object_store::ObjectMeta) -> RemoteObject {
        let rel = match meta.location.prefix_match(&self.prefix) {
            Some(parts) => parts
                .map(|p| p.as_ref().to_string())
                .collect::<Vec<_>>()
                .join("/"),
            None => meta.location.to_string(),
        };
        RemoteObject {
            rel,
            size: meta.size,
            last_modified: meta.last_modified,
            e_tag: meta.e_tag,
        }
    }

    /// A 404 becomes [`StorageError::RemoteNotFound`] only for reads: on a PUT or a LIST it
    /// means the bucket is missing (the message carries S3's `NoSuchBucket`), which must not
    /// look like "object already gone" to the caller.
    fn err(&self, op: &'static str, key: &str, source: object_store::Error) -> StorageError {
        let (bucket, key) = (self.bucket.clone(), key.to_string());
        let read = matches!(op, "head" | "get" | "get range");
        match source {
            object_store::Error::NotFound { .. } if read => StorageError::RemoteNotFound {
                bucket,
                key,
                source: Box::new(source),
            },
            _ => StorageError::Remote {
                op,
                bucket,
                key,
                source: Box::new(source),
            },
        }
    }

    fn size_err(
        &self,
        op: &'static str,
        key: &ObjectPath,
        expected: u64,
        actual: u64,
    ) -> StorageError {
        StorageError::RemoteSize {
            op,
            bucket: self.bucket.clone(),
            key: key.to_string(),
            expected,
            actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cli_urls() {
        let c = S3Config::from_url(
            "s3://traffic/wt/prod/?endpoint=http://127.0.0.1:5000&region=eu-west-1&allow_http=true",
        )
        .expect("valid url");
        assert_eq!(c.bucket, "traffic");
        assert_eq!(c.prefix, "wt/prod");
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:5000"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert!(c.allow_http);
        let bare = S3Config::from_url("s3://traffic").expect("valid url");
        assert_eq!((bare.prefix.as_str(), bare.allow_http), ("", false));
        for bad in [
            "http://traffic/x",
            "s3:///x",
            "s3://b?secret_access_key=x",
            "s3://b?allow_http=yes",
        ] {
            let e = S3Config::from_url(bad).expect_err(bad).to_string();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn keys_keep_the_local_layout() {
        let rel = "dt=2026-11-25/hh=03/0-1795576364269324-0000000000000007.parquet";
        for (prefix, key) in [
            ("", rel.to_string()),
            ("/wt/prod/", format!("wt/prod/{rel}")),
        ] {
            let store = RemoteStore::new(&S3Config {
                bucket: "traffic".into(),
                prefix: prefix.into(),
                region: Some("us-east-1".into()),
                access_key_id: Some("k".into()),
                secret_access_key: Some("s".into()),
                ..Default::default()
            })
            .expect("store");
            assert_eq!(store.object_path(rel).as_ref(), key);
            assert_eq!(store.url().as_str(), "s3://traffic");
            assert_eq!(store.file_url(rel), format!("s3://traffic/{key}"));
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let c = S3Config {
            bucket: "b".into(),
            secret_access_key: Some("hunter2".into()),
            ..Default::default()
        };
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
