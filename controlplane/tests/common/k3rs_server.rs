//! `k3rs server` processes for the HA tests: each on its own loopback address (127.0.0.N) with
//! its own data dir, driven with etcdctl using the client certificates the server generated.
//!
//! Every wait is bounded; dropping a [`K3rsServer`] kills its process.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};

use super::free_port;

/// The ports every server of a test uses, each on its own address.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub https: u16,
    pub client: u16,
    pub peer: u16,
    /// The plain-HTTP metrics port; [`DEFAULT_METRICS_PORT`] leaves k3rs's default in place.
    pub metrics: u16,
}

/// k3s's etcd metrics port, k3rs's default.
pub const DEFAULT_METRICS_PORT: u16 = 2381;

impl Ports {
    /// Free ports for everything, metrics included, so that tests running in parallel on the
    /// same address never collide.
    pub fn pick() -> Self {
        Self {
            https: free_port(),
            client: free_port(),
            peer: free_port(),
            metrics: free_port(),
        }
    }
}

/// One `k3rs server` on 127.0.0.N.
pub struct K3rsServer {
    pub ip: String,
    pub node_name: String,
    pub ports: Ports,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    args: Vec<String>,
}

impl K3rsServer {
    /// A server named `node_name` on `ip` (not started).
    pub fn new(ip: &str, node_name: &str, ports: Ports) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("k3rs-ha-")
            .tempdir()
            .expect("creating tempdir");
        Self {
            ip: ip.to_string(),
            node_name: node_name.to_string(),
            ports,
            dir,
            child: None,
            starts: 0,
            args: Vec::new(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn tls_file(&self, name: &str) -> PathBuf {
        self.data_dir().join("server").join("tls").join(name)
    }

    /// `https://IP:PORT` of the supervisor, for `--server`.
    pub fn supervisor_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.ports.https)
    }

    /// `https://IP:PORT` of the etcd client port.
    pub fn client_url(&self) -> String {
        format!("https://{}:{}", self.ip, self.ports.client)
    }

    /// `IP:PORT` of the plain-HTTP metrics and health listener.
    pub fn metrics_addr(&self) -> String {
        format!("{}:{}", self.ip, self.ports.metrics)
    }

    /// The path of the cluster token this server wrote.
    pub fn token_file(&self) -> PathBuf {
        self.data_dir().join("server").join("token")
    }

    /// Starts the server with `args` after the harness's flags; later restarts reuse them.
    pub fn start(&mut self, args: &[&str]) {
        self.args = args.iter().map(|arg| arg.to_string()).collect();
        self.spawn();
    }

    /// Starts it again with the same command line.
    pub fn restart(&mut self) {
        self.spawn();
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("k3rs-{start}.log"))
    }

    /// stderr of every start, oldest first.
    pub fn logs(&self) -> String {
        (0..self.starts)
            .map(|start| {
                let text = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
                format!("--- {} start {start} ---\n{text}", self.node_name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = File::create(self.log_path(self.starts)).expect("creating the log");
        let data_dir = self.data_dir();
        let mut command = Command::new(env!("CARGO_BIN_EXE_k3rs"));
        command
            .arg("server")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--node-name", &self.node_name])
            .args(["--node-ip", &self.ip, "--bind-address", &self.ip])
            .args(["--https-listen-port", &self.ports.https.to_string()])
            .args(["--etcd-client-port", &self.ports.client.to_string()])
            .args(["--etcd-peer-port", &self.ports.peer.to_string()]);
        if self.ports.metrics != DEFAULT_METRICS_PORT {
            command.args(["--etcd-metrics-port", &self.ports.metrics.to_string()]);
        }
        command
            .args(&self.args)
            .env_remove("K3S_TOKEN")
            .env_remove("K3RS_TOKEN")
            .env_remove("K3RS_CONFIG_FILE")
            // Never the machine's /etc/rancher/k3rs/k3rs.yaml.
            .env("K3RS_KUBECONFIG_OUTPUT", self.dir.path().join("k3rs.yaml"))
            .env("RUST_LOG", "info,raft_rs=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log);
        self.child = Some(command.spawn().expect("spawning k3rs"));
        self.starts += 1;
    }

    /// Runs etcdctl 3.4 against this server with its generated client certificate.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        etcdctl_with(&self.client_url(), Some(self), args)
    }

    /// `etcdctl put KEY` with the value read from the file at `value` (values beyond the
    /// 128 KiB limit of one command-line argument).
    pub fn etcdctl_put_file(&self, key: &str, value: &std::path::Path) -> Output {
        etcdctl_command(&self.client_url(), Some(self), Some(self), &["put", key])
            .stdin(std::fs::File::open(value).expect("value file"))
            .output()
            .expect("running etcdctl")
    }

    /// Like [`Self::etcdctl`], panicking with the output unless it succeeds.
    pub fn etcdctl_ok(&self, args: &[&str]) -> String {
        let output = self.etcdctl(args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "etcdctl {args:?} on {} failed: {stdout}{}\n{}",
            self.node_name,
            String::from_utf8_lossy(&output.stderr),
            self.logs()
        );
        stdout
    }

    /// Waits until etcdctl with certificates gets `endpoint health` (bounded by `bound`).
    pub async fn wait_healthy(&mut self, bound: Duration) {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.try_exit() {
                panic!(
                    "{} exited with {status}; log:\n{}",
                    self.node_name,
                    self.logs()
                );
            }
            if self.etcdctl(&["endpoint", "health"]).status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} not healthy within {bound:?}; log:\n{}",
                self.node_name,
                self.logs()
            );
            sleep(Duration::from_millis(250)).await;
        }
    }

    /// The exit status, if the process has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.try_wait().expect("try_wait")?;
        self.child = None;
        Some(status)
    }

    /// Waits (bounded) for the process to exit by itself.
    pub async fn wait_exit(&mut self, bound: Duration) -> ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {bound:?}; log:\n{}",
                self.node_name,
                self.logs()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Removes the data dir (the server must be stopped).
    pub fn wipe(&mut self) {
        assert!(self.child.is_none(), "wipe while running");
        std::fs::remove_dir_all(self.data_dir()).expect("removing the data dir");
    }
}

impl Drop for K3rsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// etcdctl 3.4 against `endpoint`, with `certs_of`'s client certificate when given.
pub fn etcdctl_with(endpoint: &str, certs_of: Option<&K3rsServer>, args: &[&str]) -> Output {
    etcdctl_tls(endpoint, certs_of, certs_of, args)
}

/// etcdctl 3.4 against `endpoint`, trusting `ca_of`'s etcd server CA and presenting
/// `client_of`'s client certificate, each when given.
pub fn etcdctl_tls(
    endpoint: &str,
    ca_of: Option<&K3rsServer>,
    client_of: Option<&K3rsServer>,
    args: &[&str],
) -> Output {
    etcdctl_command(endpoint, ca_of, client_of, args)
        .output()
        .expect("running etcdctl")
}

/// The etcdctl command of [`etcdctl_tls`], to run with other stdio.
pub fn etcdctl_command(
    endpoint: &str,
    ca_of: Option<&K3rsServer>,
    client_of: Option<&K3rsServer>,
    args: &[&str],
) -> Command {
    let mut command = Command::new("etcdctl");
    command.env("ETCDCTL_API", "3").args([
        "--endpoints",
        endpoint,
        "--command-timeout=10s",
        "--dial-timeout=3s",
    ]);
    if let Some(server) = ca_of {
        command.arg(format!(
            "--cacert={}",
            server.tls_file("etcd/server-ca.crt").display()
        ));
    }
    if let Some(server) = client_of {
        command
            .arg(format!(
                "--cert={}",
                server.tls_file("etcd/client.crt").display()
            ))
            .arg(format!(
                "--key={}",
                server.tls_file("etcd/client.key").display()
            ));
    }
    command.args(args);
    command
}
