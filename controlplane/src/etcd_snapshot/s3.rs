//! Snapshots in an S3 bucket (aws-sdk-s3): upload, download, list, delete and retention, as
//! k3s keeps them: object `<folder>/<snapshot name>`, the local copy kept.
//!
//! Guarantees:
//! - every operation first checks that the bucket exists and the credentials are accepted,
//!   and fails with a message naming the flag to fix (endpoint unreachable, bucket missing,
//!   key refused, request timed out after `--etcd-s3-timeout`); requests are retried a bounded
//!   number of times ([`MAX_ATTEMPTS`]);
//! - an upload larger than one part goes up in parts of [`PART_BYTES`] (memory bounded by one
//!   part); a failed multipart upload is aborted, so no partial object appears;
//! - a download goes to `.<name>.partial` beside its final name, fsynced, then renamed, so a
//!   failed download leaves no file that looks like a snapshot;
//! - retention removes only objects named `<base>-...-<unix time>[.zip]` under the folder,
//!   oldest first, across all nodes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::names;
use super::s3_config::{S3Config, DEFAULT_ENDPOINT};
use crate::progress::Progress;

/// Size of each part of a multipart upload (and the largest single-request upload).
pub const PART_BYTES: usize = 16 << 20;
/// Attempts per request, the first included.
pub const MAX_ATTEMPTS: u32 = 3;
/// What [`S3Store::check_bucket`] is doing, as errors say it.
const CHECKING_BUCKET: &str = "checking the bucket";
/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// An object of the snapshot folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Snapshot {
    /// The object name under the folder.
    pub name: String,
    pub size: u64,
    /// Last modified, seconds since the epoch.
    pub modified_unix: i64,
}

/// One bucket and folder, reachable with the given credentials.
pub struct S3Store {
    client: aws_sdk_s3::Client,
    config: S3Config,
    part_bytes: usize,
}

impl S3Store {
    /// A client for `config`, once the bucket answers.
    pub async fn connect(config: S3Config) -> Result<Self> {
        Self::connect_with_part_size(config, PART_BYTES).await
    }

    /// [`Self::connect`] with another part size (tests use small ones; S3 needs ≥ 5 MiB for
    /// every part but the last).
    pub async fn connect_with_part_size(config: S3Config, part_bytes: usize) -> Result<Self> {
        let credentials = Credentials::new(
            config.access_key.clone(),
            config.secret_key.clone(),
            Some(config.session_token.clone()).filter(|token| !token.is_empty()),
            None,
            "k3rs-flags",
        );
        let mut builder = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials)
            .http_client(super::s3_http::http_client(&config)?)
            .force_path_style(config.path_style())
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(config.timeout())
                    .build(),
            )
            // S3-compatible servers differ in the checksums they know; send them only where
            // S3 requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if config.endpoint != DEFAULT_ENDPOINT || config.insecure {
            builder = builder.endpoint_url(config.endpoint_url());
        }
        let store = Self {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            config,
            part_bytes: part_bytes.max(1),
        };
        store.check_bucket().await?;
        Ok(store)
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    async fn check_bucket(&self) -> Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.config.bucket)
            .send()
            .await
            .map_err(|error| self.explain(error, CHECKING_BUCKET))?;
        Ok(())
    }

    /// Uploads the local file `path` as snapshot `name`; returns its size.
    pub async fn upload(&self, path: &Path, name: &str) -> Result<u64> {
        let size = tokio::fs::metadata(path)
            .await
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        let key = self.config.key_of(name);
        if size <= self.part_bytes as u64 {
            let body = tokio::fs::read(path)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            self.client
                .put_object()
                .bucket(&self.config.bucket)
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|error| self.explain(error, &format!("uploading {key}")))?;
        } else {
            self.upload_in_parts(path, &key, size).await?;
        }
        tracing::info!(snapshot = %name, location = %self.config.location_of(name), bytes = size, "snapshot uploaded to S3");
        Ok(size)
    }

    async fn upload_in_parts(&self, path: &Path, key: &str, size: u64) -> Result<()> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.explain(error, &format!("starting the upload of {key}")))?;
        let upload_id = created
            .upload_id()
            .context("S3 started a multipart upload without an upload id")?
            .to_string();
        let uploaded = self.send_parts(path, key, &upload_id, size).await;
        let parts = match uploaded {
            Ok(parts) => parts,
            Err(error) => {
                self.abort_upload(key, &upload_id).await;
                return Err(error);
            }
        };
        let completed = self
            .client
            .complete_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .upload_id(&upload_id)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await;
        if let Err(error) = completed {
            self.abort_upload(key, &upload_id).await;
            return Err(self.explain(error, &format!("completing the upload of {key}")));
        }
        Ok(())
    }

    async fn send_parts(
        &self,
        path: &Path,
        key: &str,
        upload_id: &str,
        size: u64,
    ) -> Result<Vec<CompletedPart>> {
        let mut file = tokio::fs::File::open(path)
            .await
            .with_context(|| format!("opening {}", path.display()))?;
        let mut progress = Progress::log_only(format!("uploading {key}"), Some(size));
        let mut parts = Vec::new();
        let mut sent = 0u64;
        let mut number = 1i32;
        while sent < size {
            let length = (size - sent).min(self.part_bytes as u64) as usize;
            let mut chunk = vec![0u8; length];
            file.read_exact(&mut chunk)
                .await
                .with_context(|| format!("reading {}", path.display()))?;
            let answer = self
                .client
                .upload_part()
                .bucket(&self.config.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk))
                .send()
                .await
                .map_err(|error| {
                    self.explain(error, &format!("uploading part {number} of {key}"))
                })?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(answer.e_tag().map(str::to_string))
                    .build(),
            );
            sent += length as u64;
            progress.advance(length as u64);
            number += 1;
        }
        progress.finish();
        Ok(parts)
    }

    async fn abort_upload(&self, key: &str, upload_id: &str) {
        let aborted = self
            .client
            .abort_multipart_upload()
            .bucket(&self.config.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await;
        if let Err(error) = aborted {
            tracing::warn!(%key, "aborting a failed multipart upload: {}", DisplayErrorContext(&error));
        }
    }

    /// Downloads snapshot `name` into `dir` (created 0700 when missing); returns its path.
    pub async fn download(&self, name: &str, dir: &Path) -> Result<PathBuf> {
        names::check_name(name, "snapshot name").map_err(|message| anyhow!(message))?;
        let key = self.config.key_of(name);
        let output = self
            .client
            .get_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|error| self.explain(error, &format!("downloading {key}")))?;
        let total = output
            .content_length()
            .and_then(|length| u64::try_from(length).ok());
        crate::member::create_private_dir(dir)?;
        let final_path = dir.join(name);
        let partial = dir.join(names::partial_name(name));
        let written = self
            .write_download(output.body, &partial, &key, total)
            .await;
        if let Err(error) = written {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(error);
        }
        tokio::fs::rename(&partial, &final_path)
            .await
            .with_context(|| {
                format!("renaming {} to {}", partial.display(), final_path.display())
            })?;
        super::local::sync_dir(dir)?;
        Ok(final_path)
    }

    async fn write_download(
        &self,
        mut body: ByteStream,
        partial: &Path,
        key: &str,
        total: Option<u64>,
    ) -> Result<()> {
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(partial)
            .await
            .with_context(|| format!("creating {}", partial.display()))?;
        let mut progress = Progress::terminal_or_log(format!("downloading {key}"), total);
        while let Some(chunk) = body
            .try_next()
            .await
            .with_context(|| format!("downloading {key}"))?
        {
            file.write_all(&chunk)
                .await
                .with_context(|| format!("writing {}", partial.display()))?;
            progress.advance(chunk.len() as u64);
        }
        progress.finish();
        if let Some(total) = total {
            if progress.done() != total {
                bail!(
                    "downloading {key}: got {} of {total} bytes",
                    progress.done()
                );
            }
        }
        file.sync_all()
            .await
            .with_context(|| format!("syncing {}", partial.display()))?;
        Ok(())
    }

    /// The snapshots in the folder (not in its subfolders), by name.
    pub async fn list(&self) -> Result<Vec<S3Snapshot>> {
        let prefix = self.config.key_of("");
        let mut snapshots = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.config.bucket)
            .prefix(&prefix)
            .delimiter("/")
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|error| self.explain(error, "listing the snapshots"))?;
            for object in page.contents() {
                let Some(name) = object.key().and_then(|key| key.strip_prefix(&prefix)) else {
                    continue;
                };
                if name.is_empty() || !names::is_listable(name) {
                    continue;
                }
                snapshots.push(S3Snapshot {
                    name: name.to_string(),
                    size: object
                        .size()
                        .and_then(|size| u64::try_from(size).ok())
                        .unwrap_or(0),
                    modified_unix: object.last_modified().map_or(0, |time| time.secs()),
                });
            }
        }
        snapshots.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(snapshots)
    }

    /// Removes snapshot `name`; true when it existed.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let key = self.config.key_of(name);
        let head = self
            .client
            .head_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .send()
            .await;
        match head {
            Ok(_) => {}
            Err(error) if status_of(&error) == Some(404) => return Ok(false),
            Err(error) => return Err(self.explain(error, &format!("looking up {key}"))),
        }
        self.client
            .delete_object()
            .bucket(&self.config.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|error| self.explain(error, &format!("deleting {key}")))?;
        tracing::info!(snapshot = %name, location = %self.config.location_of(name), "snapshot deleted from S3");
        Ok(true)
    }

    /// Keeps the newest `retention` snapshots named `base` (any node) and deletes the others;
    /// returns those deleted.
    pub async fn prune(&self, base: &str, retention: usize) -> Result<Vec<S3Snapshot>> {
        let mut named: Vec<(i64, S3Snapshot)> = self
            .list()
            .await?
            .into_iter()
            .filter(|snapshot| snapshot.name.starts_with(&format!("{base}-")))
            .filter_map(|snapshot| {
                names::trailing_unix_time(&snapshot.name).map(|time| (time, snapshot))
            })
            .collect();
        named.sort_by(|(a_time, a), (b_time, b)| (b_time, &b.name).cmp(&(a_time, &a.name)));
        let mut pruned = Vec::new();
        for (_, snapshot) in named.into_iter().skip(retention) {
            if self.delete(&snapshot.name).await? {
                pruned.push(snapshot);
            }
        }
        Ok(pruned)
    }

    /// A message saying what to fix.
    fn explain<E, R>(&self, error: SdkError<E, R>, doing: &str) -> anyhow::Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + HasStatus,
    {
        let config = &self.config;
        let endpoint = config.endpoint_url();
        let detail = DisplayErrorContext(&error).to_string();
        let status = status_of(&error);
        let code = error.code().map(str::to_string);
        let not_found = matches!(
            code.as_deref(),
            Some("NoSuchBucket" | "NoSuchKey" | "NotFound")
        ) || (code.is_none() && status == Some(404));
        let refused = matches!(
            code.as_deref(),
            Some(
                "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "AccessDenied"
                    | "Forbidden"
                    | "InvalidToken"
                    | "ExpiredToken"
            )
        ) || status == Some(403);
        let redirected =
            matches!(code.as_deref(), Some("PermanentRedirect")) || status == Some(301);
        let bucket_missing =
            code.as_deref() == Some("NoSuchBucket") || (not_found && doing == CHECKING_BUCKET);
        let message = match &error {
            SdkError::TimeoutError(_) => format!(
                "S3 at {endpoint} did not answer within {:?} (--etcd-s3-timeout)",
                config.timeout()
            ),
            SdkError::DispatchFailure(failure) if failure.is_timeout() => format!(
                "S3 at {endpoint} did not answer in time (--etcd-s3-timeout {:?})",
                config.timeout()
            ),
            SdkError::DispatchFailure(_) => format!(
                "cannot reach S3 at {endpoint}: check --etcd-s3-endpoint, --etcd-s3-insecure, \
                 --etcd-s3-endpoint-ca and the network"
            ),
            _ if bucket_missing => format!(
                "the S3 bucket {:?} does not exist at {endpoint} (k3rs does not create buckets; \
                 check --etcd-s3-bucket)",
                config.bucket
            ),
            _ if refused => format!(
                "S3 at {endpoint} refused the credentials{}: check --etcd-s3-access-key, \
                 --etcd-s3-secret-key and --etcd-s3-session-token",
                code.as_deref()
                    .map(|code| format!(" ({code})"))
                    .unwrap_or_default()
            ),
            _ if not_found => format!(
                "no such snapshot in S3: bucket {:?} has no object at this key (see `k3rs \
                 etcd-snapshot ls --s3 ...`)",
                config.bucket
            ),
            _ if redirected => format!(
                "S3 at {endpoint} redirects: the bucket is in another region than \
                 --etcd-s3-region {:?}, or needs another --etcd-s3-bucket-lookup-type",
                config.region
            ),
            _ => "S3 refused the request".to_string(),
        };
        anyhow!("{doing} (bucket {:?}): {message}: {detail}", config.bucket)
    }
}

/// Responses that carry an HTTP status.
pub trait HasStatus {
    fn status_code(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::client::orchestrator::HttpResponse {
    fn status_code(&self) -> u16 {
        self.status().as_u16()
    }
}

fn status_of<E, R: HasStatus>(error: &SdkError<E, R>) -> Option<u16> {
    error.raw_response().map(HasStatus::status_code)
}
