//! The HTTP client the S3 SDK sends its requests through: hyper with rustls (ring), the TLS
//! stack of the rest of k3rs, so that a custom endpoint CA (`--etcd-s3-endpoint-ca`) and
//! `--etcd-s3-skip-ssl-verify` work as k3s users expect.
//!
//! Guarantees: HTTPS verifies the endpoint against the system's roots plus the given CA,
//! unless verification is explicitly skipped; plain HTTP only with `--etcd-s3-insecure`. The
//! SDK's connect and read timeouts are applied; failures to connect are reported as I/O
//! errors (which the SDK retries, a bounded number of times) and overruns as timeouts.

use std::time::Duration;

use anyhow::{Context, Result};
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_types::body::SdkBody;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;

use super::s3_config::S3Config;

/// Connect timeout when the SDK sets none.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

type HyperClient = Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>;

/// The client for `config`'s endpoint.
pub fn http_client(config: &S3Config) -> Result<SharedHttpClient> {
    let tls = tls_config(config)?;
    Ok(http_client_fn(move |settings, _components| {
        SharedHttpConnector::new(HyperConnector::new(tls.clone(), settings))
    }))
}

fn tls_config(config: &S3Config) -> Result<rustls::ClientConfig> {
    if config.skip_ssl_verify {
        return crate::join::insecure_client_config();
    }
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system certificate rustls cannot use is skipped, as curl and Go do.
        let _ = roots.add(cert);
    }
    if let Some(pem) = &config.endpoint_ca_pem {
        let custom = crate::server_tls::root_store_from_pem(pem.as_bytes())
            .context("reading the S3 endpoint CA")?;
        roots.extend(custom.roots);
    }
    Ok(
        rustls::ClientConfig::builder_with_provider(crate::server_tls::crypto_provider())
            .with_safe_default_protocol_versions()
            .context("choosing TLS versions")?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[derive(Clone)]
struct HyperConnector {
    client: HyperClient,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for HyperConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperConnector")
            .field("read_timeout", &self.read_timeout)
            .finish_non_exhaustive()
    }
}

impl HyperConnector {
    fn new(tls: rustls::ClientConfig, settings: &HttpConnectorSettings) -> Self {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(
            settings
                .connect_timeout()
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        ));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Self {
            client,
            read_timeout: settings.read_timeout(),
        }
    }
}

impl HttpConnector for HyperConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(error) => {
                return HttpConnectorFuture::ready(Err(ConnectorError::user(error.into())))
            }
        };
        let client = self.client.clone();
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let sent = client.request(request);
            let response = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent).await.map_err(|_| {
                    ConnectorError::timeout(
                        format!("no response from the S3 endpoint within {limit:?}").into(),
                    )
                })?,
                None => sent.await,
            }
            .map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|error| ConnectorError::other(error.into(), None))
        })
    }
}

/// Connection failures are I/O errors (retried); anything else is reported as it is.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    if error.is_connect() {
        ConnectorError::io(error.into())
    } else {
        ConnectorError::other(error.into(), None)
    }
}
