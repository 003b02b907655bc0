//! The certificates of a k3rs server, in k3s's layout under `<data-dir>/server/tls/`, and the
//! rustls configurations made from them.
//!
//! Files: `server-ca.{crt,key}` (the cluster CA the join token pins, served at `/cacerts`),
//! `serving-kube-apiserver.{crt,key}` (the supervisor and Kubernetes API port's certificate),
//! `client-ca.{crt,key}` (signs the Kubernetes API's client certificates) with
//! `client-admin.{crt,key}` (CN `system:admin`, O `system:masters`) and, under `etcd/`,
//! `server-ca`, `server-client` (CN `etcd-server`), `client` (CN `etcd-client`), `peer-ca`
//! and `peer-server-client` (CN `etcd-peer`). CAs are made on first start (or come from the
//! cluster when joining); leaf certificates are renewed at start as [`crate::pki`] says.
//!
//! Guarantees: both etcd ports require a client certificate signed by their CA (mTLS); the
//! HTTPS port (6443) requests a client certificate but does not require one (the supervisor's
//! clients use basic auth), leaving the check against the client CA to the Kubernetes API; every
//! configuration names its crypto provider explicitly, so no other crate's choice can change it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use time::OffsetDateTime;

use crate::member::create_private_dir;
use crate::pki::{self, CertAuthority, LeafSpec};

/// The certificate authorities a cluster shares; a joining server receives them.
pub const CLUSTER_CAS: [(&str, &str); 4] = [
    ("server-ca", "k3rs-server-ca"),
    ("client-ca", "k3rs-client-ca"),
    ("etcd/server-ca", "etcd-server-ca"),
    ("etcd/peer-ca", "etcd-peer-ca"),
];

/// Cluster CAs that bootstrap data of earlier k3rs versions lacks: a joiner or a restore
/// without one generates it instead of failing.
pub const OPTIONAL_CLUSTER_CAS: [&str; 1] = ["client-ca"];

/// Where a server's certificates live.
#[derive(Debug, Clone)]
pub struct TlsDir {
    pub root: PathBuf,
}

/// The names and addresses this server's certificates must be valid for.
#[derive(Debug, Clone)]
pub struct ServerNames {
    pub node_name: String,
    /// Node IP, advertise address, bind address, `--tls-san` entries...
    pub extra: Vec<String>,
}

impl ServerNames {
    /// localhost, 127.0.0.1, ::1, the node name and every extra name, without duplicates.
    pub fn subject_alt_names(&self) -> Vec<String> {
        let mut names: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|name| name.to_string())
            .collect();
        for name in std::iter::once(&self.node_name).chain(&self.extra) {
            if !name.is_empty() && !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

/// The rustls configurations of a running server.
pub struct ServerTls {
    /// The etcd client port (2379): clients must present a certificate of the etcd server CA.
    pub etcd_client_port: Arc<rustls::ServerConfig>,
    /// The etcd peer port (2380): peers must present a certificate of the peer CA.
    pub etcd_peer_port: Arc<rustls::ServerConfig>,
    /// Dialling other members' peer ports.
    pub etcd_peer_client: Arc<rustls::ClientConfig>,
    /// Dialling members' client ports as `etcd-client` (membership changes while joining).
    pub etcd_client: Arc<rustls::ClientConfig>,
    /// The supervisor and Kubernetes API port (6443): asks for (but does not require) a client
    /// certificate.
    pub supervisor: Arc<rustls::ServerConfig>,
    /// Checks a client certificate against the client CA (`client-ca.crt`).
    pub client_verifier: Arc<dyn ClientCertVerifier>,
}

impl TlsDir {
    /// `<data-dir>/server/tls`.
    pub fn under(server_dir: &Path) -> Self {
        Self {
            root: server_dir.join("tls"),
        }
    }

    pub fn stem(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The cluster CA bundle (what `/cacerts` serves and the token hashes).
    pub fn cluster_ca_pem(&self) -> Result<Vec<u8>> {
        let path = self.stem("server-ca").with_extension("crt");
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }

    /// Whether every cluster CA exists already (this server made or received them).
    pub fn has_cluster_cas(&self) -> bool {
        CLUSTER_CAS
            .iter()
            .filter(|(stem, _)| !OPTIONAL_CLUSTER_CAS.contains(stem))
            .all(|(stem, _)| self.stem(stem).with_extension("key").exists())
    }

    /// Makes the CAs that are missing and (re)issues the leaf certificates that need it, then
    /// builds the rustls configurations.
    pub fn prepare(&self, names: &ServerNames, now: OffsetDateTime) -> Result<ServerTls> {
        create_private_dir(&self.root.join("etcd"))?;
        let load = |index: usize| {
            let (stem, name) = CLUSTER_CAS[index];
            CertAuthority::load_or_generate(&self.stem(stem), name, now)
        };
        let (cluster_ca, client_ca, etcd_ca, peer_ca) = (load(0)?, load(1)?, load(2)?, load(3)?);
        let sans = names.subject_alt_names();
        let server_leaf = |common_name: &str| LeafSpec {
            common_name: common_name.to_string(),
            organization: None,
            subject_alt_names: sans.clone(),
            server_auth: true,
            client_auth: true,
        };
        let client_leaf = LeafSpec {
            common_name: "etcd-client".to_string(),
            organization: None,
            subject_alt_names: Vec::new(),
            server_auth: false,
            client_auth: true,
        };
        cluster_ca.ensure_leaf(
            &self.stem("serving-kube-apiserver"),
            &server_leaf("kube-apiserver"),
            now,
        )?;
        client_ca.ensure_leaf(
            &self.stem("client-admin"),
            &LeafSpec {
                common_name: "system:admin".to_string(),
                organization: Some("system:masters".to_string()),
                subject_alt_names: Vec::new(),
                server_auth: false,
                client_auth: true,
            },
            now,
        )?;
        etcd_ca.ensure_leaf(
            &self.stem("etcd/server-client"),
            &server_leaf("etcd-server"),
            now,
        )?;
        etcd_ca.ensure_leaf(&self.stem("etcd/client"), &client_leaf, now)?;
        peer_ca.ensure_leaf(
            &self.stem("etcd/peer-server-client"),
            &server_leaf("etcd-peer"),
            now,
        )?;
        self.configs()
    }

    /// The rustls configurations of the files as they are.
    pub fn configs(&self) -> Result<ServerTls> {
        let etcd_ca = self.stem("etcd/server-ca");
        let peer_ca = self.stem("etcd/peer-ca");
        let client_verifier = WebPkiClientVerifier::builder_with_provider(
            Arc::new(root_store(&self.stem("client-ca"))?),
            crypto_provider(),
        )
        .build()
        .context("building the Kubernetes API client certificate verifier")?;
        Ok(ServerTls {
            etcd_client_port: etcd_api::tls::server_config_for_grpc(mutual_server_config(
                &etcd_ca,
                &self.stem("etcd/server-client"),
            )?),
            etcd_peer_port: etcd_api::tls::server_config_for_grpc(mutual_server_config(
                &peer_ca,
                &self.stem("etcd/peer-server-client"),
            )?),
            etcd_peer_client: etcd_api::tls::client_config_for_grpc(client_config(
                &peer_ca,
                &self.stem("etcd/peer-server-client"),
            )?),
            etcd_client: etcd_api::tls::client_config_for_grpc(client_config(
                &etcd_ca,
                &self.stem("etcd/client"),
            )?),
            supervisor: Arc::new(requesting_server_config(
                &self.stem("serving-kube-apiserver"),
                client_verifier.clone(),
            )?),
            client_verifier,
        })
    }
}

/// The process's TLS implementation, named explicitly.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The roots in the CA file `<stem>.crt`.
pub fn root_store(ca_stem: &Path) -> Result<RootCertStore> {
    let path = ca_stem.with_extension("crt");
    let pem = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    root_store_from_pem(&pem).with_context(|| format!("reading the CA in {}", path.display()))
}

/// The roots in a PEM bundle.
pub fn root_store_from_pem(pem: &[u8]) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem) {
        roots
            .add(cert.context("reading a PEM certificate")?)
            .context("adding a CA certificate")?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in the CA bundle");
    Ok(roots)
}

/// The certificate chain and key of `<stem>.crt` / `<stem>.key`.
fn chain_and_key(stem: &Path) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let (cert_path, key_path) = pki::pair_paths(stem);
    let certs = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    Ok((certs, key))
}

/// A server config presenting `<leaf>` that requires clients to present a certificate of
/// the CA `<ca>`.
fn mutual_server_config(ca: &Path, leaf: &Path) -> Result<rustls::ServerConfig> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(root_store(ca)?), crypto_provider())
            .build()
            .context("building the client certificate verifier")?;
    let (certs, key) = chain_and_key(leaf)?;
    rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .with_context(|| format!("using the certificate {}", leaf.display()))
}

/// A server config presenting `<leaf>` that asks clients for a certificate (naming the CAs
/// of `verifier`) without requiring one, and accepts any certificate whose key the client
/// proves it holds: whether it is trusted is decided per request, as kube-apiserver does
/// (`tls.RequestClientCert`), so a foreign certificate gets `401` rather than a failed
/// handshake.
fn requesting_server_config(
    leaf: &Path,
    verifier: Arc<dyn ClientCertVerifier>,
) -> Result<rustls::ServerConfig> {
    let (certs, key) = chain_and_key(leaf)?;
    rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_client_cert_verifier(Arc::new(RequestClientCert { inner: verifier }))
        .with_single_cert(certs, key)
        .with_context(|| format!("using the certificate {}", leaf.display()))
}

/// Go's `tls.RequestClientCert`: asks for a certificate, checks only the handshake signature.
#[derive(Debug)]
struct RequestClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client config trusting the CA `<ca>` and presenting `<leaf>`.
fn client_config(ca: &Path, leaf: &Path) -> Result<rustls::ClientConfig> {
    let (certs, key) = chain_and_key(leaf)?;
    rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?
        .with_root_certificates(root_store(ca)?)
        .with_client_auth_cert(certs, key)
        .with_context(|| format!("using the client certificate {}", leaf.display()))
}
