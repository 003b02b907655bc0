//! Who is asking: the Kubernetes API authenticates clients by their TLS client certificate,
//! as kube-apiserver's x509 authenticator does — the chain must verify against the client CA
//! (`server/tls/client-ca.crt`), the user is the subject's CN and the groups its O entries.
//!
//! Guarantees: a connection without a certificate, or with one the client CA did not sign
//! (or expired), has no user, and every API request on it is answered `401 Unauthorized`;
//! the TLS handshake itself accepts any certificate whose key the client holds, so the
//! supervisor's basic-auth clients on the same port are unaffected. There is no
//! authorization yet: every authenticated user may do everything.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;

/// An authenticated user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// Checks client certificates against the client CA.
pub struct Authenticator {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl Authenticator {
    pub fn new(verifier: Arc<dyn ClientCertVerifier>) -> Self {
        Self { verifier }
    }

    /// The user of the chain a client presented (leaf first), if it verifies.
    pub fn authenticate(&self, chain: Option<&[CertificateDer<'static>]>) -> Option<User> {
        let (leaf, intermediates) = chain?.split_first()?;
        if let Err(error) = self
            .verifier
            .verify_client_cert(leaf, intermediates, UnixTime::now())
        {
            tracing::debug!(%error, "refusing a client certificate");
            return None;
        }
        let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
        let subject = cert.subject();
        let name = subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())?
            .to_string();
        let groups = subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(str::to_string))
            .collect();
        Some(User { name, groups })
    }
}
