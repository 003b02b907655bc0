//! k3s's S3 flags (`--etcd-s3-*`, also spelled `--s3-*` as `k3s etcd-snapshot` takes them) and
//! the checked [`S3Config`] they make, which the CLI sends the server with its request.
//!
//! Guarantees: [`S3Args::config`] refuses an incomplete setting (no bucket, half a key pair,
//! an unreadable CA file, an endpoint with a path) with a message naming the flag, before any
//! request is made; the secret key and session token never appear in `Debug` output.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// AWS's endpoint, k3s's default.
pub const DEFAULT_ENDPOINT: &str = "s3.amazonaws.com";
/// k3s's default region.
pub const DEFAULT_REGION: &str = "us-east-1";

/// How the bucket is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum BucketLookup {
    /// Virtual-host style for AWS endpoints, path style for any other.
    #[default]
    Auto,
    /// Virtual-host style: `https://<bucket>.<endpoint>/<key>`.
    Dns,
    /// Path style: `https://<endpoint>/<bucket>/<key>`.
    Path,
}

/// The S3 flags, shared by `k3rs server` and `k3rs etcd-snapshot`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Args {
    /// Save snapshots to S3 as well.
    #[arg(long = "etcd-s3", visible_alias = "s3", env = "K3RS_ETCD_S3")]
    pub enabled: bool,

    /// S3 endpoint: host[:port] (a leading http:// or https:// is accepted).
    #[arg(long = "etcd-s3-endpoint", visible_alias = "s3-endpoint", env = "K3RS_ETCD_S3_ENDPOINT",
          default_value = DEFAULT_ENDPOINT, value_name = "HOST")]
    pub endpoint: String,

    /// PEM file of the CA that signed the S3 endpoint's certificate.
    #[arg(
        long = "etcd-s3-endpoint-ca",
        visible_alias = "s3-endpoint-ca",
        env = "K3RS_ETCD_S3_ENDPOINT_CA",
        value_name = "FILE"
    )]
    pub endpoint_ca: Option<PathBuf>,

    /// Do not verify the S3 endpoint's certificate.
    #[arg(
        long = "etcd-s3-skip-ssl-verify",
        visible_alias = "s3-skip-ssl-verify",
        env = "K3RS_ETCD_S3_SKIP_SSL_VERIFY"
    )]
    pub skip_ssl_verify: bool,

    /// S3 access key.
    #[arg(
        long = "etcd-s3-access-key",
        visible_alias = "s3-access-key",
        env = "AWS_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub access_key: Option<String>,

    /// S3 secret key.
    #[arg(
        long = "etcd-s3-secret-key",
        visible_alias = "s3-secret-key",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,

    /// S3 session token (temporary credentials).
    #[arg(
        long = "etcd-s3-session-token",
        visible_alias = "s3-session-token",
        env = "AWS_SESSION_TOKEN",
        hide_env_values = true
    )]
    pub session_token: Option<String>,

    /// S3 bucket (must exist).
    #[arg(
        long = "etcd-s3-bucket",
        visible_alias = "s3-bucket",
        env = "K3RS_ETCD_S3_BUCKET"
    )]
    pub bucket: Option<String>,

    /// S3 region.
    #[arg(long = "etcd-s3-region", visible_alias = "s3-region", env = "K3RS_ETCD_S3_REGION",
          default_value = DEFAULT_REGION)]
    pub region: String,

    /// Folder (key prefix) in the bucket.
    #[arg(
        long = "etcd-s3-folder",
        visible_alias = "s3-folder",
        env = "K3RS_ETCD_S3_FOLDER",
        default_value = ""
    )]
    pub folder: String,

    /// Talk to the endpoint over plain HTTP.
    #[arg(
        long = "etcd-s3-insecure",
        visible_alias = "s3-insecure",
        env = "K3RS_ETCD_S3_INSECURE"
    )]
    pub insecure: bool,

    /// Time allowed for each S3 request (Go duration).
    #[arg(long = "etcd-s3-timeout", visible_alias = "s3-timeout", env = "K3RS_ETCD_S3_TIMEOUT",
          default_value = "5m", value_parser = crate::go_duration::parse, value_name = "DURATION")]
    pub timeout: Duration,

    /// Bucket addressing: auto, dns (virtual host) or path.
    #[arg(long = "etcd-s3-bucket-lookup-type", visible_alias = "s3-bucket-lookup-type",
          env = "K3RS_ETCD_S3_BUCKET_LOOKUP_TYPE", value_enum, default_value_t = BucketLookup::Auto)]
    pub bucket_lookup_type: BucketLookup,

    /// Number of S3 snapshots of a name to keep (across all nodes).
    #[arg(long = "etcd-s3-retention", visible_alias = "s3-retention", env = "K3RS_ETCD_S3_RETENTION",
          default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub retention: u32,
}

/// A complete S3 setting.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct S3Config {
    /// `host[:port]`, no scheme.
    pub endpoint: String,
    /// PEM of the endpoint's CA, when not a public one.
    #[serde(default)]
    pub endpoint_ca_pem: Option<String>,
    #[serde(default)]
    pub skip_ssl_verify: bool,
    pub access_key: String,
    pub secret_key: String,
    #[serde(default)]
    pub session_token: String,
    pub bucket: String,
    pub region: String,
    /// Key prefix without leading or trailing `/` (empty: the bucket's root).
    #[serde(default)]
    pub folder: String,
    /// Plain HTTP.
    #[serde(default)]
    pub insecure: bool,
    pub timeout_secs: u64,
    #[serde(default)]
    pub bucket_lookup: BucketLookup,
    pub retention: u32,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint_url())
            .field("bucket", &self.bucket)
            .field("folder", &self.folder)
            .field("region", &self.region)
            .field("access_key", &self.access_key)
            .field("custom_ca", &self.endpoint_ca_pem.is_some())
            .field("skip_ssl_verify", &self.skip_ssl_verify)
            .field("bucket_lookup", &self.bucket_lookup)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// `http[s]://host[:port]`.
    pub fn endpoint_url(&self) -> String {
        let scheme = if self.insecure { "http" } else { "https" };
        format!("{scheme}://{}", self.endpoint)
    }

    /// Whether requests name the bucket in the path (rather than the host).
    pub fn path_style(&self) -> bool {
        match self.bucket_lookup {
            BucketLookup::Path => true,
            BucketLookup::Dns => false,
            BucketLookup::Auto => !is_aws_endpoint(&self.endpoint),
        }
    }

    /// The object key of snapshot `name`.
    pub fn key_of(&self, name: &str) -> String {
        if self.folder.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.folder)
        }
    }

    /// `s3://bucket/folder/name`, the location a record shows.
    pub fn location_of(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key_of(name))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs.max(1))
    }
}

fn is_aws_endpoint(endpoint: &str) -> bool {
    let host = endpoint.split(':').next().unwrap_or(endpoint);
    host == "amazonaws.com" || host.ends_with(".amazonaws.com")
}

impl S3Args {
    /// The S3 setting, or `None` without `--etcd-s3`.
    pub fn config(&self) -> Result<Option<S3Config>> {
        if !self.enabled {
            return Ok(None);
        }
        let bucket = self
            .bucket
            .clone()
            .filter(|bucket| !bucket.trim().is_empty())
            .context("--etcd-s3 needs --etcd-s3-bucket (the bucket must exist)")?;
        let (endpoint, insecure) = split_endpoint(&self.endpoint, self.insecure)?;
        let non_empty = |value: &Option<String>| value.clone().filter(|v| !v.is_empty());
        let (access_key, secret_key) =
            match (non_empty(&self.access_key), non_empty(&self.secret_key)) {
                (Some(access), Some(secret)) => (access, secret),
                (None, None) => bail!(
                    "--etcd-s3 needs credentials: --etcd-s3-access-key and --etcd-s3-secret-key \
                     (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
                ),
                (Some(_), None) => {
                    bail!("--etcd-s3-access-key is given but --etcd-s3-secret-key is not")
                }
                (None, Some(_)) => {
                    bail!("--etcd-s3-secret-key is given but --etcd-s3-access-key is not")
                }
            };
        let endpoint_ca_pem = match &self.endpoint_ca {
            None => None,
            Some(path) => {
                let pem = std::fs::read_to_string(path)
                    .with_context(|| format!("reading --etcd-s3-endpoint-ca {}", path.display()))?;
                crate::server_tls::root_store_from_pem(pem.as_bytes()).with_context(|| {
                    format!(
                        "--etcd-s3-endpoint-ca {} holds no usable CA",
                        path.display()
                    )
                })?;
                Some(pem)
            }
        };
        if self.timeout.is_zero() {
            bail!("--etcd-s3-timeout must be more than 0");
        }
        Ok(Some(S3Config {
            endpoint,
            endpoint_ca_pem,
            skip_ssl_verify: self.skip_ssl_verify,
            access_key,
            secret_key,
            session_token: self.session_token.clone().unwrap_or_default(),
            bucket,
            region: if self.region.is_empty() {
                DEFAULT_REGION.to_string()
            } else {
                self.region.clone()
            },
            folder: self.folder.trim_matches('/').to_string(),
            insecure,
            timeout_secs: self.timeout.as_secs().max(1),
            bucket_lookup: self.bucket_lookup_type,
            retention: self.retention,
        }))
    }
}

/// `host[:port]` and whether it is plain HTTP, from what the user gave.
fn split_endpoint(given: &str, insecure: bool) -> Result<(String, bool)> {
    let given = given.trim();
    let (rest, insecure) = if let Some(rest) = given.strip_prefix("http://") {
        (rest, true)
    } else if let Some(rest) = given.strip_prefix("https://") {
        if insecure {
            bail!(
                "--etcd-s3-endpoint {given} is https:// but --etcd-s3-insecure asks for plain HTTP"
            );
        }
        (rest, false)
    } else {
        (given, insecure)
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        bail!("--etcd-s3-endpoint {given:?} must be a host[:port] (no path)");
    }
    Ok((host.to_string(), insecure))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s3: S3Args,
    }

    fn parse(args: &[&str]) -> Result<Option<S3Config>> {
        let mut argv = vec!["k3rs"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("parses").s3.config()
    }

    #[test]
    fn k3s_spellings_make_one_config() {
        let config = parse(&[
            "--s3",
            "--s3-endpoint",
            "http://127.0.0.1:9000/",
            "--etcd-s3-bucket",
            "backups",
            "--s3-folder",
            "/cluster-a/",
            "--s3-access-key",
            "AK",
            "--etcd-s3-secret-key",
            "SK",
            "--s3-timeout",
            "30s",
        ])
        .expect("valid")
        .expect("enabled");
        assert_eq!(config.endpoint_url(), "http://127.0.0.1:9000");
        assert!(config.path_style(), "auto is path style off AWS");
        assert_eq!(config.key_of("snap-n-1"), "cluster-a/snap-n-1");
        assert_eq!(
            config.location_of("snap-n-1"),
            "s3://backups/cluster-a/snap-n-1"
        );
        assert_eq!(config.timeout(), Duration::from_secs(30));
        assert_eq!(config.region, DEFAULT_REGION);
        assert_eq!(config.retention, 5);
        let debug = format!("{config:?}");
        assert!(!debug.contains("SK"), "{debug}");
    }

    #[test]
    fn aws_endpoints_use_virtual_hosts_unless_told() {
        let mut config = parse(&[
            "--s3",
            "--s3-bucket",
            "b",
            "--s3-access-key",
            "a",
            "--s3-secret-key",
            "s",
        ])
        .expect("valid")
        .expect("enabled");
        assert_eq!(config.endpoint_url(), "https://s3.amazonaws.com");
        assert!(!config.path_style());
        config.bucket_lookup = BucketLookup::Path;
        assert!(config.path_style());
        config.endpoint = "minio.local:9000".into();
        config.bucket_lookup = BucketLookup::Dns;
        assert!(!config.path_style());
        assert_eq!(config.key_of("x"), "x", "no folder: the bucket's root");
    }

    #[test]
    fn incomplete_settings_name_the_flag() {
        assert!(parse(&[]).expect("valid").is_none(), "S3 is off by default");
        let error = |args: &[&str]| format!("{:#}", parse(args).expect_err("refused"));
        assert!(error(&["--s3"]).contains("--etcd-s3-bucket"));
        assert!(error(&["--s3", "--s3-bucket", "b", "--s3-access-key", "a"])
            .contains("--etcd-s3-secret-key"));
        assert!(error(&[
            "--s3",
            "--s3-bucket",
            "b",
            "--s3-access-key",
            "a",
            "--s3-secret-key",
            "s",
            "--s3-endpoint",
            "host/path"
        ])
        .contains("no path"));
        assert!(error(&[
            "--s3",
            "--s3-bucket",
            "b",
            "--s3-access-key",
            "a",
            "--s3-secret-key",
            "s",
            "--s3-endpoint-ca",
            "/nonexistent/ca.pem"
        ])
        .contains("--etcd-s3-endpoint-ca"));
    }
}
