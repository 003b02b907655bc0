//! A real S3-compatible server for the snapshot tests: `s3s-fs` (installed by `.ci/run` with
//! `cargo install s3s-fs@0.14.1 --locked --features binary`), on 127.0.0.1 and a free port,
//! storing each bucket as a directory of a temporary root, with one access key.
//!
//! Guarantees: the server answers before [`S3Server::start`] returns (bounded wait); dropping
//! it kills the process. A missing `s3s-fs` fails the test with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};

pub const ACCESS_KEY: &str = "k3rs-test-access";
pub const SECRET_KEY: &str = "k3rs-test-secret-key";
/// How long s3s-fs may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

pub struct S3Server {
    pub port: u16,
    root: tempfile::TempDir,
    child: Child,
}

/// The s3s-fs binary: `K3RS_S3S_FS`, else `s3s-fs` on the PATH, else cargo's bin directory.
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("K3RS_S3S_FS") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("s3s-fs"))
        .find(|path| path.is_file());
    if let Some(path) = on_path {
        return path;
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .expect("HOME or CARGO_HOME");
    let path = home.join("bin").join("s3s-fs");
    assert!(
        path.is_file(),
        "s3s-fs not found (PATH, {}): install it with `cargo install s3s-fs@0.14.1 --locked \
         --features binary` (.ci/run does)",
        path.display()
    );
    path
}

impl S3Server {
    /// Starts s3s-fs with the buckets named (each an empty directory).
    pub async fn start(buckets: &[&str]) -> Self {
        let root = tempfile::Builder::new()
            .prefix("k3rs-s3-")
            .tempdir()
            .expect("tempdir");
        for bucket in buckets {
            std::fs::create_dir(root.path().join(bucket)).expect("bucket directory");
        }
        let port = super::free_port();
        let log = std::fs::File::create(root.path().join("s3s-fs.log")).expect("log file");
        let child = Command::new(binary())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting s3s-fs");
        let server = Self { port, root, child };
        let deadline = Instant::now() + START_TIMEOUT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s3s-fs did not listen on {port}");
            sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// `host:port` for `--s3-endpoint`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `k3rs etcd-snapshot` / `k3rs server` flags that point at `bucket` in `folder`.
    pub fn flags(&self, bucket: &str, folder: &str) -> Vec<String> {
        [
            "--etcd-s3",
            "--etcd-s3-endpoint",
            &self.endpoint(),
            "--etcd-s3-insecure",
            "--etcd-s3-bucket",
            bucket,
            "--etcd-s3-folder",
            folder,
            "--etcd-s3-access-key",
            ACCESS_KEY,
            "--etcd-s3-secret-key",
            SECRET_KEY,
        ]
        .iter()
        .map(|flag| flag.to_string())
        .collect()
    }

    /// Where s3s-fs keeps `key` of `bucket`.
    pub fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.root.path().join(bucket).join(key)
    }

    /// The object names directly under `folder` of `bucket`, sorted.
    pub fn objects(&self, bucket: &str, folder: &str) -> Vec<String> {
        super::sorted_entries(&self.root.path().join(bucket).join(folder))
            .into_iter()
            .filter(|name| !name.starts_with('.'))
            .collect()
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HTTPS in front of an [`S3Server`]: TLS on its own 127.0.0.1 port with a certificate for
/// 127.0.0.1 signed by a CA of its own (written to `ca_file`), each connection piped to the
/// plain-HTTP server. Dropping it stops accepting.
pub struct TlsFront {
    pub port: u16,
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
    accept: tokio::task::JoinHandle<()>,
}

impl TlsFront {
    pub async fn start(backend: &S3Server) -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().expect("leaf key");
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("leaf params")
            .signed_by(&leaf_key, &issuer)
            .expect("leaf certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = dir.path().join("s3-ca.pem");
        std::fs::write(&ca_file, ca_cert.pem()).expect("CA file");

        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der())
                .expect("leaf key DER"),
        )
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("TLS port");
        let port = listener.local_addr().expect("address").port();
        let backend_port = backend.port;
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return; // a client that refused our certificate
                    };
                    let Ok(mut plain) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend_port)).await
                    else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        Self {
            port,
            ca_file,
            _dir: dir,
            accept,
        }
    }

    /// `host:port` for `--s3-endpoint` (HTTPS).
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
