use std::os::unix::fs::PermissionsExt;

use super::*;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time")
}

fn server_spec(sans: &[&str]) -> LeafSpec {
    LeafSpec {
        organization: None,
        common_name: "etcd-server".to_string(),
        subject_alt_names: sans.iter().map(|san| san.to_string()).collect(),
        server_auth: true,
        client_auth: true,
    }
}

fn parsed(pem: &str) -> Vec<u8> {
    parse_pem_cert(pem).expect("a PEM certificate")
}

#[test]
fn a_leaf_is_signed_by_its_ca_and_names_its_addresses() {
    let ca = CertAuthority::generate("etcd-server-ca", now()).expect("CA");
    let leaf = ca
        .issue(&server_spec(&["localhost", "127.0.0.1", "node-1"]), now())
        .expect("leaf");
    let ca_der = parsed(&ca.files.cert_pem);
    let leaf_der = parsed(&leaf.cert_pem);
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).expect("CA parses");
    let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf parses");
    leaf_cert
        .verify_signature(Some(ca_cert.public_key()))
        .expect("the CA's key signed the leaf");
    assert!(ca_cert.is_ca());
    assert!(!leaf_cert.is_ca());
    assert_eq!(
        subject_alt_names(&leaf_cert),
        ["localhost", "127.0.0.1", "node-1"]
    );
    let lifetime = leaf_cert.validity().not_after.timestamp() - now().unix_timestamp();
    assert_eq!(lifetime, LEAF_VALIDITY.whole_seconds());
    let ca_lifetime = ca_cert.validity().not_after.timestamp() - now().unix_timestamp();
    assert_eq!(ca_lifetime, CA_VALIDITY.whole_seconds());
    assert!(ca_cert
        .subject()
        .to_string()
        .contains(&format!("etcd-server-ca@{}", now().unix_timestamp())));
}

#[test]
fn a_ca_is_generated_once_and_reloaded_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stem = dir.path().join("server-ca");
    let first = CertAuthority::load_or_generate(&stem, "server-ca", now()).expect("generate");
    let again = CertAuthority::load_or_generate(&stem, "server-ca", now() + Duration::days(1))
        .expect("reload");
    assert_eq!(first.files, again.files);
    let key_mode = std::fs::metadata(stem.with_extension("key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600);
    // A leaf signed by the reloaded CA verifies against the original certificate.
    let leaf = again
        .issue(&server_spec(&["localhost"]), now())
        .expect("leaf");
    let ca_der = parsed(&first.files.cert_pem);
    let leaf_der = parsed(&leaf.cert_pem);
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).expect("CA parses");
    let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf_der).expect("leaf parses");
    leaf_cert
        .verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the same CA");
}

#[test]
fn a_fresh_leaf_is_kept_and_a_stale_or_foreign_one_renewed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = CertAuthority::generate("etcd-server-ca", now()).expect("CA");
    let stem = dir.path().join("server-client");
    let spec = server_spec(&["localhost", "127.0.0.1"]);
    assert!(ca.ensure_leaf(&stem, &spec, now()).expect("issue"));
    let issued = read_pair(&stem).expect("files");
    // Restart the next day: nothing changes.
    assert!(!ca
        .ensure_leaf(&stem, &spec, now() + Duration::days(1))
        .expect("keep"));
    assert_eq!(read_pair(&stem).expect("files"), issued);
    // 91 days before expiry: kept; 89 days before: renewed.
    let kept_until = now() + LEAF_VALIDITY - RENEW_BEFORE - Duration::days(1);
    assert!(!ca.ensure_leaf(&stem, &spec, kept_until).expect("keep"));
    let renew_at = now() + LEAF_VALIDITY - RENEW_BEFORE + Duration::days(1);
    assert!(ca.ensure_leaf(&stem, &spec, renew_at).expect("renew"));
    assert_ne!(read_pair(&stem).expect("files"), issued);
    // A new address (say, a --tls-san) renews it.
    let wider = server_spec(&["localhost", "127.0.0.1", "10.0.0.5"]);
    assert!(ca.ensure_leaf(&stem, &wider, renew_at).expect("renew"));
    assert!(!ca.ensure_leaf(&stem, &wider, renew_at).expect("keep"));
    // Another CA (the cluster's, after a join) renews it.
    let other =
        CertAuthority::generate("etcd-server-ca", now() + Duration::seconds(1)).expect("CA");
    assert!(other.ensure_leaf(&stem, &wider, renew_at).expect("renew"));
    let mode = std::fs::metadata(stem.with_extension("key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_garbled_ca_is_refused_with_its_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let stem = dir.path().join("peer-ca");
    std::fs::write(stem.with_extension("crt"), "not a certificate").expect("write");
    std::fs::write(stem.with_extension("key"), "not a key").expect("write");
    let error = CertAuthority::load_or_generate(&stem, "peer-ca", now())
        .err()
        .expect("refused");
    assert!(format!("{error:#}").contains("peer-ca.crt"), "{error:#}");
}
