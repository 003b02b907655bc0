//! Test harness shared by the integration tests: runs the real `k3rs` binary as a child process
//! and talks to it with real clients.
//!
//! Guarantees:
//! - every server runs on 127.0.0.1 with ports picked by binding port 0, in its own temporary
//!   directory (data dir `<tmp>/data`, one stderr log per start `<tmp>/k3rs-<n>.log`);
//! - every wait is bounded: start-up waits at most [`READY_TIMEOUT`] for a client to connect and
//!   `Status` to answer, then panics with the server's log; stopping waits at most the bound given;
//! - dropping a [`TestServer`] kills its child, so no test leaves a process behind.
//!
//! Differential runs: with `K3RS_TEST_REFERENCE_ETCD=/usr/bin/etcd` in the environment the same
//! tests run against that etcd binary instead (same flags, plus `--initial-cluster`, which etcd
//! needs and k3rs derives), to confirm that an expectation is what etcd actually does.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::{sleep, timeout, Instant};

/// How long a start may take before the test gives up on the server.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Bound on any single client request made by the tests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause between two readiness probes or exit polls.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The etcd binary to run instead of k3rs, when a differential run asks for it.
fn reference_etcd() -> Option<PathBuf> {
    std::env::var_os("K3RS_TEST_REFERENCE_ETCD").map(PathBuf::from)
}

/// True when the tests run against a reference etcd rather than k3rs.
pub fn is_reference_run() -> bool {
    reference_etcd().is_some()
}

/// Ports the tests listen on are picked below the kernel's ephemeral range (32768–60999 on
/// Linux), so an outgoing connection can never take the port of a member that was killed and
/// is about to restart on it.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port on 127.0.0.1 that was free a moment ago, outside the ephemeral range, and never handed
/// out before by this process (a port picked for a member that has not bound it yet is free
/// too, and must not go to a second member).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static PICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let span = u64::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..1_000 {
        // A random start per process and pick, so parallel tests rarely try the same port.
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(PICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        hasher.write_u32(std::process::id());
        let port = TEST_PORTS.start + (hasher.finish() % span) as u16;
        let mut handed_out = HANDED_OUT
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
    panic!("no free port in {TEST_PORTS:?} after 1,000 tries");
}

/// One `k3rs etcd` member in its own temporary directory.
pub struct TestServer {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    starts: u32,
    /// Flags appended to every start (see [`TestServer::start_with_args`]).
    extra_args: Vec<String>,
}

impl TestServer {
    /// Starts a fresh member and waits until it serves clients.
    pub async fn start() -> Self {
        Self::start_with_args(&[]).await
    }

    /// Starts a fresh member with `extra_args` appended to the harness's flags (on this and
    /// every later start of it), and waits until it serves clients.
    pub async fn start_with_args(extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("k3rs-it-")
            .tempdir()
            .expect("creating tempdir");
        let data_dir = dir.path().join("data");
        let mut server = TestServer {
            dir,
            data_dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            starts: 0,
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        };
        server.spawn();
        server.wait_ready().await;
        server
    }

    /// `127.0.0.1:PORT`, as etcdctl's `--endpoints` takes it.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// `http://127.0.0.1:PORT`: the client URL.
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the default (RocksDB) engine keeps its files: `<data dir>/member/rocksdb`.
    pub fn engine_dir(&self) -> PathBuf {
        self.data_dir.join("member").join("rocksdb")
    }

    /// The process id of the running child.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server is running").id()
    }

    /// A client of this member, with bounded connect and request times.
    pub async fn client(&self) -> Client {
        connect(&self.endpoint()).await
    }

    /// A raw gRPC channel to this member (connect bounded by [`REQUEST_TIMEOUT`]), for the
    /// generated `etcd_api` clients: they show response fields the `etcd-client` crate hides or
    /// turns into errors (a watch response's `fragment`, a keep-alive's TTL 0).
    pub async fn raw_channel(&self) -> tonic::transport::Channel {
        let endpoint = tonic::transport::Endpoint::from_shared(self.client_url())
            .expect("a valid client URL")
            .connect_timeout(Duration::from_secs(5));
        timeout(REQUEST_TIMEOUT, endpoint.connect())
            .await
            .expect("raw channel connects within the bound")
            .expect("connecting a raw channel")
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("k3rs-{start}.log"))
    }

    /// The stderr of the latest start.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path(self.starts.saturating_sub(1))).unwrap_or_default()
    }

    /// The stderr of every start, oldest first.
    pub fn all_logs(&self) -> String {
        (0..self.starts)
            .map(|start| {
                let text = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
                format!("--- start {start} ---\n{text}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "spawn while a server is still running"
        );
        let log = File::create(self.log_path(self.starts)).expect("creating the server log");
        let client_url = self.client_url();
        let peer_url = self.peer_url();
        let data_dir = self
            .data_dir
            .to_str()
            .expect("tempdir path is UTF-8")
            .to_string();
        let mut flags: Vec<String> = vec![
            "--name".into(),
            "test".into(),
            "--data-dir".into(),
            data_dir,
            "--listen-client-urls".into(),
            client_url.clone(),
            "--advertise-client-urls".into(),
            client_url,
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
        ];
        let mut command = match reference_etcd() {
            Some(etcd) => {
                flags.push("--initial-cluster".into());
                flags.push(format!("test={peer_url}"));
                Command::new(etcd)
            }
            None => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_k3rs"));
                command.arg("etcd");
                command
            }
        };
        command
            .args(&flags)
            .args(&self.extra_args)
            .env_remove("ETCD_NAME")
            .env_remove("ETCD_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        self.child = Some(command.spawn().expect("spawning the server binary"));
        self.starts += 1;
    }

    /// Polls until a client connects and `Status` answers; panics with the log if the child
    /// exits or [`READY_TIMEOUT`] passes.
    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let endpoint = self.endpoint();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .expect("spawned")
                .try_wait()
                .expect("try_wait")
            {
                self.child = None;
                panic!(
                    "server exited with {status} before serving clients; log:\n{}",
                    self.log()
                );
            }
            let probe = timeout(Duration::from_secs(3), async {
                let options = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(1))
                    .with_timeout(Duration::from_secs(2));
                let mut client = Client::connect([endpoint.as_str()], Some(options)).await?;
                client.status().await
            })
            .await;
            if matches!(probe, Ok(Ok(_))) {
                return;
            }
            if Instant::now() >= deadline {
                self.kill9();
                panic!(
                    "server did not serve Status within {READY_TIMEOUT:?} (last probe: {probe:?}); log:\n{}",
                    self.log()
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits at most `bound` for the exit; returns the exit status, or panics
    /// (after SIGKILL) if the server did not exit in time.
    pub async fn terminate(&mut self, bound: Duration) -> ExitStatus {
        let pid = self.pid();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("running kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        match self.wait_exit(bound).await {
            Some(status) => status,
            None => {
                self.kill9();
                panic!(
                    "server did not exit within {bound:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Polls the child for at most `bound`; `None` if it is still running (it is left running).
    async fn wait_exit(&mut self, bound: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            let child = self.child.as_mut().expect("server is running");
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Starts the server again on the same data dir and ports, and waits until it serves.
    pub async fn restart(&mut self) {
        self.spawn();
        self.wait_ready().await;
    }

    /// Starts the server on the same data dir expecting start-up to fail: returns the exit
    /// status and the log of this start. Panics (after SIGKILL) if it is still running after
    /// `bound`.
    pub async fn start_expecting_exit(&mut self, bound: Duration) -> (ExitStatus, String) {
        self.spawn();
        match self.wait_exit(bound).await {
            Some(status) => (status, self.log()),
            None => {
                self.kill9();
                panic!(
                    "server was expected to refuse to start but still runs after {bound:?}; log:\n{}",
                    self.log()
                );
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A client of `endpoint` (`127.0.0.1:PORT`) with bounded connect and request times.
/// Every entry of `dir` (hidden ones too), sorted; none when it cannot be read.
pub fn sorted_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub async fn connect(endpoint: &str) -> Client {
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(REQUEST_TIMEOUT);
    Client::connect([endpoint], Some(options))
        .await
        .expect("creating an etcd client")
}

/// The gRPC status of a failed request; panics if the request did not fail with one.
pub fn grpc_status<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>) -> tonic::Status {
    match result {
        Err(etcd_client::Error::GRpcStatus(status)) => status,
        Err(other) => panic!("expected a gRPC status error, got {other:?}"),
        Ok(value) => panic!("expected a gRPC status error, got success: {value:?}"),
    }
}

/// A child process killed and reaped when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Asserts that `result` failed with exactly `code` and `message` (etcd's wording).
pub fn assert_grpc_error<T: std::fmt::Debug>(
    result: Result<T, etcd_client::Error>,
    code: tonic::Code,
    message: &str,
) {
    let status = grpc_status(result);
    assert_eq!(
        (status.code(), status.message()),
        (code, message),
        "unexpected error status: {status:?}"
    );
}
pub mod cluster;
pub mod k3rs_server;
pub mod kubectl;
pub mod output_watch;
pub mod s3_server;
pub mod snapshot_cli;
