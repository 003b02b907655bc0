//! The admin kubeconfig, written as k3s writes `k3s.yaml`: the cluster's server CA, the server
//! URL (`https://127.0.0.1:6443`, or the bind address and `--https-listen-port`) and the
//! `system:admin` client certificate (group `system:masters`), all embedded.
//!
//! Guarantees: written at every start to `<data-dir>/server/cred/admin.kubeconfig` (0600) and
//! to `--write-kubeconfig` (default `/etc/rancher/k3rs/k3rs.yaml` as root,
//! `~/.kube/k3rs.yaml` otherwise) with `--write-kubeconfig-mode` (default 0600), each through
//! a temporary file and a rename, so a reader never sees half a file.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;

use crate::pki::{read_pair, write_file};
use crate::server_tls::TlsDir;

/// Where the admin kubeconfig goes when `--write-kubeconfig` is not given.
pub fn default_output() -> PathBuf {
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0);
    output_for(is_root, std::env::var_os("HOME"))
}

/// `/etc/rancher/k3rs/k3rs.yaml` for root (whatever `HOME` says), `~/.kube/k3rs.yaml` for
/// other users.
fn output_for(is_root: bool, home: Option<std::ffi::OsString>) -> PathBuf {
    match home {
        Some(home) if !is_root => PathBuf::from(home).join(".kube").join("k3rs.yaml"),
        _ => PathBuf::from("/etc/rancher/k3rs/k3rs.yaml"),
    }
}

/// `--write-kubeconfig-mode` (octal, as `chmod` takes it).
pub fn parse_mode(text: &str) -> Result<u32> {
    u32::from_str_radix(text.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o777)
        .with_context(|| format!("--write-kubeconfig-mode {text:?} is not an octal file mode"))
}

/// The API's URL for local clients.
pub fn server_url(bind: Option<IpAddr>, port: u16) -> String {
    let host = bind
        .filter(|ip| !ip.is_unspecified())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    format!("https://{}", SocketAddr::new(host, port))
}

/// The kubeconfig text for `server_url` with the admin credentials under `tls_dir`.
pub fn admin_kubeconfig(tls_dir: &TlsDir, server_url: &str) -> Result<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let ca = std::fs::read(tls_dir.stem("server-ca").with_extension("crt"))
        .context("reading the server CA")?;
    let admin = read_pair(&tls_dir.stem("client-admin"))?;
    Ok(format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server_url}\n  name: default\n\
         contexts:\n- context:\n    cluster: default\n    user: default\n  name: default\n\
         current-context: default\nkind: Config\npreferences: {{}}\nusers:\n- name: default\n  user:\n    \
         client-certificate-data: {}\n    client-key-data: {}\n",
        engine.encode(ca),
        engine.encode(admin.cert_pem),
        engine.encode(admin.key_pem),
    ))
}

/// Writes the admin kubeconfig to `<server_dir>/cred/admin.kubeconfig` and to `output`.
pub fn write(
    tls_dir: &TlsDir,
    server_dir: &Path,
    server_url: &str,
    output: &Path,
    mode: u32,
) -> Result<()> {
    let text = admin_kubeconfig(tls_dir, server_url)?;
    let cred = server_dir.join("cred");
    crate::member::create_private_dir(&cred)?;
    write_file(&cred.join("admin.kubeconfig"), text.as_bytes(), 0o600)?;
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_file(output, text.as_bytes(), mode)?;
    // A file that existed keeps its mode through the rename of a new one, but not its owner's
    // umask: set it explicitly.
    std::fs::set_permissions(output, std::os::unix::fs::PermissionsExt::from_mode(mode))
        .with_context(|| format!("setting the mode of {}", output.display()))?;
    tracing::info!(kubeconfig = %output.display(), "wrote the admin kubeconfig");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0644").expect("octal"), 0o644);
        assert_eq!(parse_mode("600").expect("octal"), 0o600);
        assert!(parse_mode("0999").is_err());
    }

    #[test]
    fn root_writes_etc_rancher_k3rs_and_others_their_home() {
        let root = output_for(true, Some("/root".into()));
        assert_eq!(root, PathBuf::from("/etc/rancher/k3rs/k3rs.yaml"));
        let user = output_for(false, Some("/home/ann".into()));
        assert_eq!(user, PathBuf::from("/home/ann/.kube/k3rs.yaml"));
    }

    #[test]
    fn the_url_follows_the_bind_address() {
        assert_eq!(server_url(None, 6443), "https://127.0.0.1:6443");
        assert_eq!(
            server_url(Some("127.0.0.2".parse().expect("ip")), 7443),
            "https://127.0.0.2:7443"
        );
    }
}
