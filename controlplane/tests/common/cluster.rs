//! A cluster of real `k3rs etcd` processes on 127.0.0.1, started with etcd's cluster flags
//! (`--initial-cluster`, `--listen-peer-urls`, ...), each in its own temporary directory.
//!
//! Every wait is bounded; dropping the cluster kills every member. With
//! `K3RS_TEST_REFERENCE_ETCD=/usr/bin/etcd` the members are that etcd instead (same flags), to
//! confirm an expectation is what an etcd cluster does.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::time::{sleep, timeout, Instant};

use super::free_port;

/// How long a member may take to serve after it starts.
pub const MEMBER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One member of a [`TestCluster`].
pub struct ClusterMember {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    data_dir: PathBuf,
    log_dir: PathBuf,
    child: Option<Child>,
    starts: u32,
    extra_args: Vec<String>,
}

impl ClusterMember {
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The member's `--data-dir`.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.log_dir.join(format!("{}-{start}.log", self.name))
    }

    /// Every log of this member, oldest start first.
    pub fn logs(&self) -> String {
        (0..self.starts)
            .map(|start| {
                let text = std::fs::read_to_string(self.log_path(start)).unwrap_or_default();
                format!("--- {} start {start} ---\n{text}", self.name)
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn spawn(&mut self, initial_cluster: &str) {
        self.spawn_in_state(initial_cluster, "new");
    }

    fn spawn_in_state(&mut self, initial_cluster: &str, state: &str) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = File::create(self.log_path(self.starts)).expect("creating a member log");
        let client_url = format!("http://{}", self.endpoint());
        let peer_url = self.peer_url();
        let mut command = match std::env::var_os("K3RS_TEST_REFERENCE_ETCD") {
            Some(etcd) => Command::new(etcd),
            None => {
                let mut command = Command::new(env!("CARGO_BIN_EXE_k3rs"));
                command.arg("etcd");
                command
            }
        };
        let child = command
            .args(["--name", &self.name])
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(&self.extra_args)
            .env_remove("ETCD_NAME")
            .env_remove("ETCD_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .expect("spawning k3rs");
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Members started together as one new cluster.
pub struct TestCluster {
    dir: tempfile::TempDir,
    pub members: Vec<ClusterMember>,
    initial_cluster: String,
}

impl TestCluster {
    /// Starts `size` members and waits until every one serves `Status` and sees a leader.
    pub async fn start(size: usize) -> Self {
        Self::start_with_args(size, &[]).await
    }

    /// As [`TestCluster::start`], every member (and every restart) also given `extra_args`.
    pub async fn start_with_args(size: usize, extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("k3rs-cluster-")
            .tempdir()
            .expect("creating tempdir");
        let members: Vec<ClusterMember> = (1..=size)
            .map(|n| ClusterMember {
                name: format!("m{n}"),
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("m{n}")),
                log_dir: dir.path().to_path_buf(),
                child: None,
                starts: 0,
                extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Self {
            dir,
            members,
            initial_cluster,
        };
        for index in 0..size {
            let initial = cluster.initial_cluster.clone();
            cluster.members[index].spawn(&initial);
        }
        for index in 0..size {
            cluster.wait_serving(index).await;
        }
        cluster
    }

    /// A new member's place (name, ports, data dir), not started: add it with MemberAdd, then
    /// [`TestCluster::start_joining`]. Returns its index.
    pub fn prepare_member(&mut self) -> usize {
        let n = self.members.len() + 1;
        let extra_args = self.members[0].extra_args.clone();
        self.members.push(ClusterMember {
            name: format!("m{n}"),
            client_port: free_port(),
            peer_port: free_port(),
            data_dir: self.dir.path().join(format!("m{n}")),
            log_dir: self.dir.path().to_path_buf(),
            child: None,
            starts: 0,
            extra_args,
        });
        self.members.len() - 1
    }

    /// Starts a prepared member with `--initial-cluster-state existing` and waits until it
    /// serves with a leader.
    pub async fn start_joining(&mut self, index: usize) {
        let joined = format!(
            "{},{}={}",
            self.initial_cluster,
            self.members[index].name,
            self.members[index].peer_url()
        );
        self.initial_cluster = joined.clone();
        self.members[index].spawn_in_state(&joined, "existing");
        self.wait_serving(index).await;
    }

    /// Restarts a stopped member on its data dir and waits until it serves with a leader.
    pub async fn restart(&mut self, index: usize) {
        let initial = self.initial_cluster.clone();
        self.members[index].spawn(&initial);
        self.wait_serving(index).await;
    }

    /// Every member's client endpoint.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(ClusterMember::endpoint).collect()
    }

    /// Every log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(ClusterMember::logs)
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The member id of running member `index`, as its Status reports it.
    pub async fn member_id(&self, index: usize) -> u64 {
        status_of(&self.members[index].endpoint())
            .await
            .map(|(_, member)| member)
            .expect("the member answers Status")
    }

    /// A client of member `index` alone.
    pub async fn client(&self, index: usize) -> Client {
        super::connect(&self.members[index].endpoint()).await
    }

    /// The index of the member that leads, as the running members report it; waits at most
    /// `bound` for them to agree on one.
    pub async fn leader(&self, bound: Duration) -> usize {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(leader) = self.agreed_leader().await {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {bound:?}; logs:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }

    async fn agreed_leader(&self) -> Option<usize> {
        let mut seen = None;
        for member in self.members.iter().filter(|m| m.is_running()) {
            let leader_id = status_of(&member.endpoint()).await?.0;
            if leader_id == 0 || seen.is_some_and(|id| id != leader_id) {
                return None;
            }
            seen = Some(leader_id);
        }
        let leader_id = seen?;
        for (index, member) in self.members.iter().enumerate() {
            if member.is_running() && status_of(&member.endpoint()).await?.1 == leader_id {
                return Some(index);
            }
        }
        None
    }

    async fn wait_serving(&mut self, index: usize) {
        let deadline = Instant::now() + MEMBER_READY_TIMEOUT;
        loop {
            let exited = {
                let member = &mut self.members[index];
                let status = member
                    .child
                    .as_mut()
                    .expect("spawned")
                    .try_wait()
                    .expect("try_wait");
                if status.is_some() {
                    member.child = None;
                }
                status
            };
            let name = self.members[index].name.clone();
            if let Some(status) = exited {
                panic!(
                    "{name} exited with {status} before serving; logs:\n{}",
                    self.logs()
                );
            }
            let endpoint = self.members[index].endpoint();
            if matches!(status_of(&endpoint).await, Some((leader, _)) if leader != 0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name} did not serve within {MEMBER_READY_TIMEOUT:?}; logs:\n{}",
                self.logs()
            );
            sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            member.kill9();
        }
    }
}

/// (leader id, member id) as `endpoint`'s Status reports them; `None` if it does not answer.
async fn status_of(endpoint: &str) -> Option<(u64, u64)> {
    let probe = timeout(Duration::from_secs(3), async {
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(1))
            .with_timeout(Duration::from_secs(2));
        let mut client = Client::connect([endpoint], Some(options)).await?;
        client.status().await
    })
    .await;
    match probe {
        Ok(Ok(status)) => {
            let member = status.header().map_or(0, |h| h.member_id());
            Some((status.leader(), member))
        }
        _ => None,
    }
}
