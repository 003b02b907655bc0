//! Certificate authorities and the leaf certificates they sign, as PEM files on disk.
//!
//! Guarantees: a CA is generated once (valid [`CA_VALIDITY`]) and then only loaded; a leaf
//! certificate is (re)issued at start when it is missing, expires within [`RENEW_BEFORE`], was
//! signed by another CA, or lacks a wanted subject alternative name — otherwise it is left
//! alone, so restarts do not churn certificates. Private keys are written with mode 0600 and
//! every file is written to a temporary name and renamed, so a crash never leaves half a key.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// How long a generated CA is valid (k3s: 10 years).
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long an issued leaf certificate is valid (k3s: one year).
pub const LEAF_VALIDITY: Duration = Duration::days(365);
/// A leaf certificate expiring sooner than this is renewed at start.
pub const RENEW_BEFORE: Duration = Duration::days(90);
/// Certificates start being valid this long before they are issued, for clocks a little behind.
const BACKDATE: Duration = Duration::hours(1);

/// A certificate and its private key, as PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    /// The subject's organization (Kubernetes reads it as the user's group), if any.
    pub organization: Option<String>,
    /// Host names and IP addresses the certificate is valid for (server certificates).
    pub subject_alt_names: Vec<String>,
    pub server_auth: bool,
    pub client_auth: bool,
}

/// A certificate authority able to sign leaf certificates.
pub struct CertAuthority {
    pub files: CertAndKey,
    issuer: Issuer<'static, KeyPair>,
}

impl CertAuthority {
    /// A new self-signed CA named `<name>@<unix time>`, as k3s names its CAs.
    pub fn generate(name: &str, now: OffsetDateTime) -> Result<Self> {
        let key = KeyPair::generate().context("generating a CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(
            DnType::CommonName,
            format!("{name}@{}", now.unix_timestamp()),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - BACKDATE;
        params.not_after = now + CA_VALIDITY;
        let cert = params
            .self_signed(&key)
            .context("signing the CA certificate")?;
        let files = CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(Self {
            files,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA held in `files`.
    pub fn from_pem(files: CertAndKey) -> Result<Self> {
        let key = KeyPair::from_pem(&files.key_pem).context("reading the CA key")?;
        let issuer =
            Issuer::from_ca_cert_pem(&files.cert_pem, key).context("reading the CA certificate")?;
        Ok(Self { files, issuer })
    }

    /// The CA stored at `<stem>.crt` / `<stem>.key`, generated (and written) if absent.
    pub fn load_or_generate(stem: &Path, name: &str, now: OffsetDateTime) -> Result<Self> {
        let (cert_path, key_path) = pair_paths(stem);
        if cert_path.exists() || key_path.exists() {
            let files = read_pair(stem)?;
            return Self::from_pem(files)
                .with_context(|| format!("loading the CA in {}", cert_path.display()));
        }
        let ca = Self::generate(name, now)?;
        write_pair(stem, &ca.files)?;
        tracing::info!(ca = %cert_path.display(), "generated a certificate authority");
        Ok(ca)
    }

    /// Signs a new leaf certificate for `spec`, valid [`LEAF_VALIDITY`] from `now`.
    pub fn issue(&self, spec: &LeafSpec, now: OffsetDateTime) -> Result<CertAndKey> {
        let key = KeyPair::generate().context("generating a key")?;
        let mut params = CertificateParams::new(spec.subject_alt_names.clone())
            .with_context(|| format!("subject alternative names {:?}", spec.subject_alt_names))?;
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.clone());
        if let Some(organization) = &spec.organization {
            params
                .distinguished_name
                .push(DnType::OrganizationName, organization.clone());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.server_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client_auth {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - BACKDATE;
        params.not_after = now + LEAF_VALIDITY;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("signing the certificate for {}", spec.common_name))?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Makes sure `<stem>.crt` / `<stem>.key` hold a leaf for `spec` signed by this CA that
    /// does not expire within [`RENEW_BEFORE`]; issues a new one otherwise. Returns whether
    /// it issued one.
    pub fn ensure_leaf(&self, stem: &Path, spec: &LeafSpec, now: OffsetDateTime) -> Result<bool> {
        let (cert_path, key_path) = pair_paths(stem);
        if cert_path.exists() && key_path.exists() {
            let current = std::fs::read_to_string(&cert_path)
                .with_context(|| format!("reading {}", cert_path.display()))?;
            match self.needs_renewal(&current, spec, now) {
                Ok(None) => return Ok(false),
                Ok(Some(reason)) => {
                    tracing::info!(cert = %cert_path.display(), reason, "renewing certificate")
                }
                Err(error) => {
                    tracing::warn!(cert = %cert_path.display(), %error, "replacing unreadable certificate")
                }
            }
        }
        let leaf = self.issue(spec, now)?;
        write_pair(stem, &leaf)?;
        Ok(true)
    }

    /// Why the leaf `cert_pem` must be reissued, if it must.
    fn needs_renewal(
        &self,
        cert_pem: &str,
        spec: &LeafSpec,
        now: OffsetDateTime,
    ) -> Result<Option<&'static str>> {
        let leaf = parse_pem_cert(cert_pem)?;
        let ca = parse_pem_cert(&self.files.cert_pem)?;
        let (_, leaf) = x509_parser::parse_x509_certificate(&leaf)
            .map_err(|error| anyhow!("parsing the certificate: {error}"))?;
        let (_, ca) = x509_parser::parse_x509_certificate(&ca)
            .map_err(|error| anyhow!("parsing the CA certificate: {error}"))?;
        if leaf.issuer().as_raw() != ca.subject().as_raw() {
            return Ok(Some("signed by another CA"));
        }
        let expires = leaf.validity().not_after.timestamp();
        if expires - now.unix_timestamp() < RENEW_BEFORE.whole_seconds() {
            return Ok(Some("expires soon"));
        }
        let present = subject_alt_names(&leaf);
        if spec
            .subject_alt_names
            .iter()
            .any(|wanted| !present.iter().any(|have| have.eq_ignore_ascii_case(wanted)))
        {
            return Ok(Some("addresses changed"));
        }
        Ok(None)
    }
}

/// The DER of the first certificate in `pem`.
fn parse_pem_cert(pem: &str) -> Result<Vec<u8>> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|error| anyhow!("reading PEM: {error}"))?;
    if block.label != "CERTIFICATE" {
        bail!("expected a CERTIFICATE, found {}", block.label);
    }
    Ok(block.contents)
}

/// The DNS names and IP addresses a certificate names, as text.
fn subject_alt_names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(extension)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_string()),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes)
                    .ok()
                    .map(|octets| std::net::IpAddr::from(octets).to_string()),
                16 => <[u8; 16]>::try_from(*bytes)
                    .ok()
                    .map(|octets| std::net::IpAddr::from(octets).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `<stem>.crt` and `<stem>.key`.
pub fn pair_paths(stem: &Path) -> (PathBuf, PathBuf) {
    (stem.with_extension("crt"), stem.with_extension("key"))
}

/// Reads `<stem>.crt` and `<stem>.key`.
pub fn read_pair(stem: &Path) -> Result<CertAndKey> {
    let (cert_path, key_path) = pair_paths(stem);
    Ok(CertAndKey {
        cert_pem: std::fs::read_to_string(&cert_path)
            .with_context(|| format!("reading {}", cert_path.display()))?,
        key_pem: std::fs::read_to_string(&key_path)
            .with_context(|| format!("reading {}", key_path.display()))?,
    })
}

/// Writes `<stem>.crt` (0644) and `<stem>.key` (0600).
pub fn write_pair(stem: &Path, pair: &CertAndKey) -> Result<()> {
    let (cert_path, key_path) = pair_paths(stem);
    write_file(&key_path, pair.key_pem.as_bytes(), 0o600)?;
    write_file(&cert_path, pair.cert_pem.as_bytes(), 0o644)
}

/// Writes `contents` to `path` with `mode` through a temporary file and a rename.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let temporary = path.with_extension("tmp");
    // A stale temporary file would keep its old mode.
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .with_context(|| format!("creating {}", temporary.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", temporary.display()))?;
    std::fs::rename(&temporary, path)
        .with_context(|| format!("renaming {} to {}", temporary.display(), path.display()))
}

#[cfg(test)]
mod tests;
