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
