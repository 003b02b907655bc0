//! An HTTPS/1.1 client of the Kubernetes API as an admin kubeconfig describes it: the server
//! URL, its CA, and the client certificate and key (all `*-data`, base64 PEM, as k3rs and k3s
//! write them). One [`Connection`] is one TCP+TLS connection carrying one request at a time.

use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// `host:port`.
    pub authority: String,
    pub host: String,
    pub tls: Arc<rustls::ClientConfig>,
}

fn field<'a>(document: &'a serde_yaml::Value, path: &[&str]) -> Option<&'a serde_yaml::Value> {
    path.iter()
        .try_fold(document, |value, name| value.get(*name))
}

fn data(document: &serde_yaml::Value, list: &str, name: &str) -> Result<Vec<u8>> {
    let first = field(document, &[list])
        .and_then(|items| items.get(0))
        .ok_or_else(|| anyhow!("the kubeconfig has no {list}"))?;
    let text = field(first, &[list.trim_end_matches('s'), name])
        .and_then(serde_yaml::Value::as_str)
        .ok_or_else(|| anyhow!("the kubeconfig's first {list} entry has no {name}"))?;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .with_context(|| format!("decoding {name}"))
}

impl Target {
    /// The first cluster and user of the kubeconfig at `path`.
    pub fn from_kubeconfig(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let document: serde_yaml::Value =
            serde_yaml::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
        let server = field(&document, &["clusters"])
            .and_then(|clusters| clusters.get(0))
            .and_then(|cluster| field(cluster, &["cluster", "server"]))
            .and_then(serde_yaml::Value::as_str)
            .ok_or_else(|| anyhow!("the kubeconfig names no server"))?;
        let authority = server
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("the server {server} is not https://"))?
            .trim_end_matches('/')
            .to_string();
        let host = match authority.rsplit_once(':') {
            Some((host, _)) => host.trim_matches(['[', ']']).to_string(),
            None => authority.clone(),
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&data(
            &document,
            "clusters",
            "certificate-authority-data",
        )?) {
            roots.add(cert.context("reading the CA")?)?;
        }
        let certs =
            CertificateDer::pem_slice_iter(&data(&document, "users", "client-certificate-data")?)
                .collect::<Result<Vec<_>, _>>()
                .context("reading the client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(&data(&document, "users", "client-key-data")?)
            .context("reading the client key")?;
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)?;
        Ok(Self {
            authority,
            host,
            tls: Arc::new(tls),
        })
    }
}

/// One connection to the API.
pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
    authority: String,
}

impl Connection {
    pub async fn open(target: &Target) -> Result<Self> {
        let tcp = tokio::net::TcpStream::connect(&target.authority)
            .await
            .with_context(|| format!("connecting to {}", target.authority))?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| anyhow!("{} is not a server name", target.host))?;
        let tls = tokio_rustls::TlsConnector::from(target.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        Ok(Self {
            sender,
            authority: target.authority.clone(),
        })
    }

    /// Sends a request and returns the response with its body unread.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Response<Incoming>> {
        self.sender.ready().await.context("the connection closed")?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))?;
        Ok(self.sender.send_request(request).await?)
    }

    /// Sends a request and reads the whole answer: the status code and the JSON body.
    pub async fn call(
        &mut self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Value)> {
        let response = self.send(method.clone(), path, content_type, body).await?;
        let code = response.status().as_u16();
        let bytes = response.into_body().collect().await?.to_bytes();
        let value = serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {path}: the answer ({code}) is not JSON"))?;
        Ok((code, value))
    }

    /// [`Self::call`], failing unless the code is one of `accepted`.
    pub async fn checked(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        accepted: &[u16],
    ) -> Result<Value> {
        let (content_type, bytes) = match body {
            Some(value) if method == Method::PATCH => {
                ("application/merge-patch+json", serde_json::to_vec(value)?)
            }
            Some(value) => ("application/json", serde_json::to_vec(value)?),
            None => ("application/json", Vec::new()),
        };
        let (code, value) = self.call(method.clone(), path, content_type, bytes).await?;
        if !accepted.contains(&code) {
            bail!("{method} {path}: {code} {value}");
        }
        Ok(value)
    }
}
