//! `--datastore-endpoint` and its TLS flags, as k3s takes them: which external etcd a server
//! uses instead of the embedded member.
//!
//! Guarantees: only etcd endpoints are accepted — `https://HOST[:PORT]`, `http://HOST[:PORT]`
//! and `etcd://HOST[:PORT]` (TLS when a CA, certificate or key file is given, plaintext
//! otherwise), comma-separated, port 2379 when none is given; any other scheme (kine's
//! `mysql://`, `postgres://`, `sqlite://`, `nats://`...) is refused with a message saying
//! so. `https://` endpoints trust `--datastore-cafile` (the system roots without it) and
//! present `--datastore-certfile`/`--datastore-keyfile` (both or neither); every file is
//! read at start, so a missing or unreadable one stops the server before it serves.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::server_tls::{crypto_provider, root_store_from_pem};

/// The external datastore flags of `k3rs server`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DatastoreArgs {
    /// Use the external etcd at these endpoints instead of the embedded store
    /// (comma-separated https://, http:// or etcd:// URLs; also read from
    /// K3S_DATASTORE_ENDPOINT).
    #[arg(long, env = "K3RS_DATASTORE_ENDPOINT", value_name = "URLS")]
    pub datastore_endpoint: Option<String>,

    /// CA bundle that signs the datastore's serving certificate.
    #[arg(long, env = "K3RS_DATASTORE_CAFILE", value_name = "FILE")]
    pub datastore_cafile: Option<PathBuf>,

    /// Client certificate presented to the datastore.
    #[arg(long, env = "K3RS_DATASTORE_CERTFILE", value_name = "FILE")]
    pub datastore_certfile: Option<PathBuf>,

    /// Key of the client certificate presented to the datastore.
    #[arg(long, env = "K3RS_DATASTORE_KEYFILE", value_name = "FILE")]
    pub datastore_keyfile: Option<PathBuf>,
}

/// Where the external etcd is and how to talk to it.
pub struct Datastore {
    /// `http://` or `https://host:port` URLs, in the order given.
    pub urls: Vec<String>,
    /// The TLS client configuration for `https://` endpoints.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl DatastoreArgs {
    /// The endpoint flag, or `K3S_DATASTORE_ENDPOINT`; `None` for the embedded store.
    pub fn endpoint(&self) -> Option<String> {
        self.datastore_endpoint
            .clone()
            .or_else(|| std::env::var("K3S_DATASTORE_ENDPOINT").ok())
            .filter(|text| !text.trim().is_empty())
    }

    /// Whether the server uses an external datastore.
    pub fn is_external(&self) -> bool {
        self.endpoint().is_some()
    }

    fn has_tls_files(&self) -> bool {
        self.datastore_cafile.is_some()
            || self.datastore_certfile.is_some()
            || self.datastore_keyfile.is_some()
    }

    /// The endpoints and TLS settings, checked and read.
    pub fn resolve(&self) -> Result<Datastore> {
        let Some(text) = self.endpoint() else {
            bail!("no --datastore-endpoint given");
        };
        let urls = parse_endpoints(&text, self.has_tls_files())?;
        let tls = if urls.iter().any(|url| url.starts_with("https://")) {
            Some(self.client_config()?)
        } else {
            None
        };
        Ok(Datastore { urls, tls })
    }

    fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let roots = match &self.datastore_cafile {
            Some(path) => {
                let pem = std::fs::read(path)
                    .with_context(|| format!("reading --datastore-cafile {}", path.display()))?;
                root_store_from_pem(&pem)
                    .with_context(|| format!("reading --datastore-cafile {}", path.display()))?
            }
            None => system_roots()?,
        };
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_root_certificates(roots);
        let config = match (&self.datastore_certfile, &self.datastore_keyfile) {
            (Some(cert), Some(key)) => {
                let certs = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .with_context(|| format!("reading --datastore-certfile {}", cert.display()))?;
                anyhow::ensure!(
                    !certs.is_empty(),
                    "--datastore-certfile {} holds no certificate",
                    cert.display()
                );
                let key = PrivateKeyDer::from_pem_file(key)
                    .with_context(|| format!("reading --datastore-keyfile {}", key.display()))?;
                builder
                    .with_client_auth_cert(certs, key)
                    .context("using --datastore-certfile with --datastore-keyfile")?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => bail!("give both --datastore-certfile and --datastore-keyfile, or neither"),
        };
        Ok(etcd_api::tls::client_config_for_grpc(config))
    }
}

/// The system's trusted roots.
fn system_roots() -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    anyhow::ensure!(
        !roots.is_empty(),
        "no system CA certificates found to verify the datastore: give --datastore-cafile"
    );
    Ok(roots)
}

/// The etcd URLs of `--datastore-endpoint`.
pub fn parse_endpoints(text: &str, tls_files: bool) -> Result<Vec<String>> {
    let mut urls = Vec::new();
    for part in text
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
    {
        let Some((scheme, rest)) = part.split_once("://") else {
            bail!(
                "--datastore-endpoint {part:?} has no scheme: give https://HOST:PORT (or \
                 http:// or etcd://) of an etcd"
            );
        };
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "https" => "https",
            "http" => "http",
            "etcd" if tls_files => "https",
            "etcd" => "http",
            other => bail!(
                "--datastore-endpoint {part:?}: only etcd endpoints (https://, http:// or \
                 etcd://) are supported; k3rs cannot use a {other:?} datastore"
            ),
        };
        let authority = rest.trim_end_matches('/');
        anyhow::ensure!(
            !authority.is_empty() && !authority.contains('/') && !authority.contains('@'),
            "--datastore-endpoint {part:?} is not an etcd URL (scheme://HOST[:PORT])"
        );
        let has_port = match authority.rsplit_once(':') {
            Some((host, port)) => {
                // An IPv6 address without a port ends in `]`.
                if host.starts_with('[') && !host.ends_with(']') {
                    false
                } else {
                    port.parse::<u16>().with_context(|| {
                        format!("--datastore-endpoint {part:?}: {port:?} is not a port")
                    })?;
                    true
                }
            }
            None => false,
        };
        let url = if has_port {
            format!("{scheme}://{authority}")
        } else {
            format!("{scheme}://{authority}:2379")
        };
        urls.push(url);
    }
    anyhow::ensure!(!urls.is_empty(), "--datastore-endpoint names no endpoint");
    Ok(urls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_endpoints_are_accepted_in_order() {
        let urls = parse_endpoints("https://10.0.0.1:2379, https://10.0.0.2", false)
            .expect("two endpoints");
        assert_eq!(urls, ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]);
        assert_eq!(
            parse_endpoints("http://127.0.0.1:12379", false).expect("plain"),
            ["http://127.0.0.1:12379"]
        );
    }

    #[test]
    fn etcd_scheme_is_tls_when_tls_files_are_given() {
        assert_eq!(
            parse_endpoints("etcd://db:2379", true).expect("tls"),
            ["https://db:2379"]
        );
        assert_eq!(
            parse_endpoints("etcd://db:2379", false).expect("plain"),
            ["http://db:2379"]
        );
    }

    #[test]
    fn sql_and_other_datastores_are_refused() {
        for endpoint in [
            "mysql://user:pass@tcp(db:3306)/k3s",
            "postgres://db:5432/k3s",
            "sqlite:///var/lib/k3s.db",
            "nats://db:4222",
        ] {
            let error = parse_endpoints(endpoint, false).expect_err(endpoint);
            assert!(
                error.to_string().contains("only etcd endpoints"),
                "{endpoint}: {error}"
            );
        }
        assert!(parse_endpoints("127.0.0.1:2379", false).is_err());
        assert!(parse_endpoints("https://db:notaport", false).is_err());
    }
}
