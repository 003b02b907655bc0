//! `k3rs server --datastore-endpoint` against the machine's real etcd (3.4, with TLS
//! client-certificate auth from certificates made here with rcgen), driven by the real
//! `kubectl`, `k3rs kubectl` and `etcdctl`: the API keeps its objects in that etcd under
//! `/registry/...`, two servers on it share objects and register both nodes, a restart keeps
//! everything, and a datastore that cannot be used is reported clearly. Every wait is
//! bounded; etcd and k3rs processes are killed when their handles drop.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::free_port;
use common::k3rs_server::{K3rsServer, Ports};
use common::kubectl::{text, Kubectl};
use common::output_watch::OutputWatch;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tokio::time::{sleep, Instant};

const READY: Duration = Duration::from_secs(60);
const EXIT_WAIT: Duration = Duration::from_secs(40);
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// A CA made for the test, able to sign leaves.
struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("self-signing the CA");
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes `<dir>/<name>.crt` and `.key`, signed by this CA.
    fn leaf(&self, dir: &Path, name: &str, server: bool) {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.extended_key_usages = if server {
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ]
        } else {
            vec![ExtendedKeyUsagePurpose::ClientAuth]
        };
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("signing a leaf");
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("writing a cert");
        std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).expect("key");
    }
}

/// The machine's etcd with client-certificate auth, in a temporary directory.
struct ExternalEtcd {
    dir: tempfile::TempDir,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    starts: u32,
}

impl ExternalEtcd {
    async fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("k3rs-external-etcd-")
            .tempdir()
            .expect("etcd dir");
        let ca = TestCa::new("test-etcd-ca");
        std::fs::write(dir.path().join("ca.crt"), &ca.pem).expect("writing the CA");
        ca.leaf(dir.path(), "server", true);
        ca.leaf(dir.path(), "client", false);
        let foreign = TestCa::new("some-other-ca");
        std::fs::write(dir.path().join("foreign-ca.crt"), &foreign.pem).expect("foreign CA");
        foreign.leaf(dir.path(), "foreign-client", false);
        let mut etcd = Self {
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            child: None,
            starts: 0,
        };
        etcd.spawn();
        etcd.wait_healthy().await;
        etcd
    }

    fn file(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join(format!("etcd-{}.log", self.starts)))
            .expect("etcd log");
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let child = Command::new("etcd")
            .args(["--name", "external", "--data-dir", &self.file("data")])
            .args(["--listen-client-urls", &self.url()])
            .args(["--advertise-client-urls", &self.url()])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("external={peer}")])
            .args(["--cert-file", &self.file("server.crt")])
            .args(["--key-file", &self.file("server.key")])
            .args(["--trusted-ca-file", &self.file("ca.crt")])
            .arg("--client-cert-auth")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("running etcd");
        self.child = Some(child);
        self.starts += 1;
    }

    fn etcdctl(&self, args: &[&str]) -> Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args(["--endpoints", &self.url()])
            .args(["--command-timeout=10s", "--dial-timeout=3s"])
            .arg(format!("--cacert={}", self.file("ca.crt")))
            .arg(format!("--cert={}", self.file("client.crt")))
            .arg(format!("--key={}", self.file("client.key")))
            .args(args)
            .output()
            .expect("running etcdctl")
    }

    async fn wait_healthy(&self) {
        let deadline = Instant::now() + READY;
        while !self.etcdctl(&["endpoint", "health"]).status.success() {
            assert!(Instant::now() < deadline, "etcd did not become healthy");
            sleep(Duration::from_millis(200)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The flags that point k3rs at this etcd with the right certificates.
    fn flags(&self) -> Vec<String> {
        vec![
            "--datastore-endpoint".into(),
            self.url(),
            "--datastore-cafile".into(),
            self.file("ca.crt"),
            "--datastore-certfile".into(),
            self.file("client.crt"),
            "--datastore-keyfile".into(),
            self.file("client.key"),
        ]
    }
}

impl Drop for ExternalEtcd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The stdout of a kubectl run on `server` that must succeed; a failure shows its logs.
fn kubectl_ok(kubectl: &Kubectl, server: &K3rsServer, args: &[&str]) -> String {
    let output = kubectl.run(args, None);
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}{}\n{}",
        text(&output.stdout),
        text(&output.stderr),
        server.logs()
    );
    text(&output.stdout)
}

fn start_server(name: &str, flags: &[String]) -> K3rsServer {
    let mut server = K3rsServer::new("127.0.0.1", name, Ports::pick());
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    server.start(&flags);
    server
}

/// Waits until `server`'s API serves the default namespaces.
async fn wait_api(kubectl: &Kubectl, server: &mut K3rsServer) {
    let deadline = Instant::now() + READY;
    loop {
        if let Some(status) = server.try_exit() {
            panic!(
                "{} exited with {status}:\n{}",
                server.node_name,
                server.logs()
            );
        }
        let output = kubectl.run(&["get", "namespace", "kube-node-lease"], None);
        if output.status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the API of {} did not serve: {}\n{}",
            server.node_name,
            text(&output.stderr),
            server.logs()
        );
        sleep(Duration::from_millis(250)).await;
    }
}

/// `k3rs kubectl ARGS` with `env` set and KUBECONFIG unset unless given.
fn k3rs_kubectl(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_k3rs"));
    command
        .arg("kubectl")
        .args(args)
        .env("HOME", home)
        .env("KUBECACHEDIR", home.join("cache"))
        .env_remove("KUBECONFIG")
        .env_remove("K3RS_DATA_DIR");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("running k3rs kubectl")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_keeps_its_objects_in_an_external_etcd_shared_by_two_servers() {
    let mut etcd = ExternalEtcd::start().await;
    let home = tempfile::Builder::new()
        .prefix("k3rs-kubectl-")
        .tempdir()
        .expect("kubectl home");
    let written = home.path().join("out").join("k3rs.yaml");
    let mut flags = etcd.flags();
    flags.extend([
        "--write-kubeconfig".to_string(),
        written.display().to_string(),
        "--write-kubeconfig-mode".to_string(),
        "0640".to_string(),
    ]);
    let mut first = start_server("ext-1", &flags);
    let on_first = Kubectl::for_server(&first);
    wait_api(&on_first, &mut first).await;

    // The kubeconfig goes where --write-kubeconfig says, with its mode.
    let mode = std::fs::metadata(&written)
        .expect("the written kubeconfig")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
    assert!(std::fs::read_to_string(&written)
        .expect("kubeconfig")
        .contains(&format!("server: {}", first.supervisor_url())));

    // No embedded member: nothing listens on the etcd client port, no etcd data dir.
    assert!(std::net::TcpStream::connect(("127.0.0.1", first.ports.client)).is_err());
    assert!(!first.data_dir().join("server/db/etcd").exists());

    // create / get / list / delete, and the object is in etcd where kube-apiserver puts it.
    kubectl_ok(
        &on_first,
        &first,
        &["create", "configmap", "shared", "--from-literal=a=1"],
    );
    let got = kubectl_ok(
        &on_first,
        &first,
        &["get", "configmap", "shared", "-o", "jsonpath={.data.a}"],
    );
    assert_eq!(got, "1");
    let stored = etcd.etcdctl(&[
        "get",
        "/registry/configmaps/default/shared",
        "--print-value-only",
    ]);
    assert!(
        text(&stored.stdout).contains("\"shared\""),
        "{}",
        text(&stored.stderr)
    );
    kubectl_ok(
        &on_first,
        &first,
        &["create", "configmap", "gone", "--from-literal=b=2"],
    );
    kubectl_ok(&on_first, &first, &["delete", "configmap", "gone"]);
    let keys = etcd.etcdctl(&["get", "/registry/configmaps/", "--prefix", "--keys-only"]);
    assert_eq!(
        text(&keys.stdout).split_whitespace().collect::<Vec<_>>(),
        ["/registry/configmaps/default/shared"]
    );

    // History compacted in etcd: a watch from before it ends with kube's 410 Expired.
    let list = kubectl_ok(
        &on_first,
        &first,
        &["get", "--raw", "/api/v1/namespaces/default/configmaps"],
    );
    let list: serde_json::Value = serde_json::from_str(&list).expect("a list");
    let before = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a list revision")
        .to_string();
    kubectl_ok(
        &on_first,
        &first,
        &["label", "configmap", "shared", "compacted=yes"],
    );
    kubectl_ok(
        &on_first,
        &first,
        &[
            "label",
            "configmap",
            "shared",
            "compacted=twice",
            "--overwrite",
        ],
    );
    let status = etcd.etcdctl(&["endpoint", "status", "-w", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("status");
    let now = status[0]["Status"]["header"]["revision"]
        .as_i64()
        .expect("a revision");
    let compact = etcd.etcdctl(&["compact", &now.to_string()]);
    assert!(compact.status.success(), "{}", text(&compact.stderr));
    let events = kubectl_ok(&on_first, &first,
        &[
            "get",
            "--raw",
            &format!(
                "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={before}&timeoutSeconds=5"
            ),
        ],
    );
    let event: serde_json::Value =
        serde_json::from_str(events.lines().next().unwrap_or("")).expect("an event");
    assert_eq!(
        (event["type"].as_str(), event["object"]["code"].as_u64()),
        (Some("ERROR"), Some(410)),
        "{events}"
    );

    // A second server on the same etcd with the first's token: same CAs, same objects, both
    // nodes registered.
    let token = std::fs::read_to_string(first.token_file()).expect("token");
    let mut second_flags = etcd.flags();
    second_flags.extend(["--token".to_string(), token.trim().to_string()]);
    let mut second = start_server("ext-2", &second_flags);
    let on_second = Kubectl::for_server(&second);
    wait_api(&on_second, &mut second).await;
    assert_eq!(
        std::fs::read(first.tls_file("server-ca.crt")).expect("first CA"),
        std::fs::read(second.tls_file("server-ca.crt")).expect("second CA"),
        "the second server took the cluster's CAs from the datastore"
    );
    let through_second = kubectl_ok(
        &on_second,
        &second,
        &["get", "configmap", "shared", "-o", "jsonpath={.data.a}"],
    );
    assert_eq!(through_second, "1");
    let deadline = Instant::now() + READY;
    loop {
        let nodes = kubectl_ok(&on_first, &first, &["get", "nodes", "-o", "name"]);
        if nodes.contains("node/ext-1") && nodes.contains("node/ext-2") {
            break;
        }
        assert!(Instant::now() < deadline, "both nodes not listed: {nodes}");
        sleep(Duration::from_millis(500)).await;
    }

    // A watch through the first server sees a write made through the second.
    let watch = OutputWatch::spawn(on_first.command(&[
        "get",
        "configmaps",
        "--watch",
        "-o",
        "jsonpath={.metadata.name}={.data.a}{\"\\n\"}",
    ]));
    watch.wait_for("shared=1\n", EVENT_WAIT).await;
    kubectl_ok(
        &on_second,
        &second,
        &["create", "configmap", "later", "--from-literal=a=7"],
    );
    watch.wait_for("later=7\n", EVENT_WAIT).await;
    drop(watch);

    // k3rs kubectl: the data dir's admin kubeconfig, arguments and exit codes passed through.
    let data_dir = first.data_dir().display().to_string();
    let output = k3rs_kubectl(
        home.path(),
        &[
            "get",
            "--data-dir",
            &data_dir,
            "configmap",
            "later",
            "-o",
            "name",
        ],
        &[],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "configmap/later\n");
    let missing = k3rs_kubectl(
        home.path(),
        &["--data-dir", &data_dir, "get", "configmap", "nothing"],
        &[],
    );
    assert_eq!(missing.status.code(), Some(1), "kubectl's own exit code");
    assert!(text(&missing.stderr).contains("\"nothing\" not found"));
    // An explicit KUBECONFIG wins over the data dir.
    let kubeconfig = on_second.kubeconfig().display().to_string();
    let output = k3rs_kubectl(
        home.path(),
        &[
            "--data-dir=/nonexistent",
            "get",
            "configmap",
            "shared",
            "-o",
            "name",
        ],
        &[("KUBECONFIG", &kubeconfig)],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    // No kubectl on PATH: a message saying what to install.
    let output = k3rs_kubectl(home.path(), &["version"], &[("PATH", "/nonexistent")]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("install kubectl"),
        "{}",
        text(&output.stderr)
    );

    // Snapshots are the embedded etcd's: the CLI says so.
    let snapshot = Command::new(env!("CARGO_BIN_EXE_k3rs"))
        .args(["etcd-snapshot", "save", "--data-dir", &data_dir])
        .args(["--etcd-server", &first.supervisor_url()])
        .output()
        .expect("k3rs etcd-snapshot");
    assert!(!snapshot.status.success());
    assert!(
        text(&snapshot.stderr).contains("embedded etcd"),
        "{}",
        text(&snapshot.stderr)
    );

    // A restart keeps everything.
    first.kill9();
    first.restart();
    wait_api(&on_first, &mut first).await;
    let names = kubectl_ok(&on_first, &first, &["get", "configmaps", "-o", "name"]);
    assert_eq!(names, "configmap/later\nconfigmap/shared\n");

    // A list larger than gRPC's default 4 MiB message comes back whole.
    let big = home.path().join("big.txt");
    std::fs::write(&big, "a".repeat(900 * 1024)).expect("a big value");
    let from_file = format!("--from-file=v={}", big.display());
    for index in 0..6 {
        let name = format!("big-{index}");
        kubectl_ok(
            &on_first,
            &first,
            &["create", "configmap", &name, &from_file],
        );
    }
    let names = kubectl_ok(&on_first, &first, &["get", "configmaps", "-o", "name"]);
    assert_eq!(
        names
            .lines()
            .filter(|l| l.starts_with("configmap/big-"))
            .count(),
        6
    );

    // The datastore going away: the API answers 503 naming it, and serves again after.
    etcd.stop();
    let output = on_first.run(&["get", "configmap", "shared"], None);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("the datastore is unavailable"),
        "{}",
        text(&output.stderr)
    );
    etcd.spawn();
    etcd.wait_healthy().await;
    let deadline = Instant::now() + READY;
    loop {
        let output = on_first.run(&["get", "configmap", "shared", "-o", "name"], None);
        if output.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the API did not serve again: {}",
            text(&output.stderr)
        );
        sleep(Duration::from_millis(500)).await;
    }
}

/// Starts k3rs with `flags` and returns its log once it exited non-zero.
async fn refused(name: &str, flags: &[String]) -> String {
    let mut server = start_server(name, flags);
    let status = server.wait_exit(EXIT_WAIT).await;
    assert!(!status.success(), "{name} should have failed");
    server.logs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_datastore_that_cannot_be_used_stops_the_server_with_a_clear_error() {
    let etcd = ExternalEtcd::start().await;
    let with = |replace: &[(&str, String)], drop: &[&str]| -> Vec<String> {
        let mut flags = Vec::new();
        let base = etcd.flags();
        let mut pairs = base.chunks(2);
        for pair in pairs.by_ref() {
            if drop.contains(&pair[0].as_str()) {
                continue;
            }
            let value = replace
                .iter()
                .find(|(flag, _)| *flag == pair[0])
                .map_or_else(|| pair[1].clone(), |(_, value)| value.clone());
            flags.push(pair[0].clone());
            flags.push(value);
        }
        flags
    };

    let log = refused(
        "wrong-ca",
        &with(&[("--datastore-cafile", etcd.file("foreign-ca.crt"))], &[]),
    )
    .await;
    assert!(log.contains("--datastore-cafile"), "{log}");

    let log = refused(
        "no-client-cert",
        &with(&[], &["--datastore-certfile", "--datastore-keyfile"]),
    )
    .await;
    assert!(log.contains("--datastore-certfile"), "{log}");

    let log = refused(
        "foreign-client-cert",
        &with(
            &[
                ("--datastore-certfile", etcd.file("foreign-client.crt")),
                ("--datastore-keyfile", etcd.file("foreign-client.key")),
            ],
            &[],
        ),
    )
    .await;
    assert!(log.contains("--datastore-certfile"), "{log}");

    let unreachable = format!("https://127.0.0.1:{}", free_port());
    let log = refused(
        "unreachable",
        &with(&[("--datastore-endpoint", unreachable.clone())], &[]),
    )
    .await;
    assert!(
        log.contains("the datastore is unavailable") && log.contains(&unreachable),
        "{log}"
    );

    let log = refused(
        "mysql",
        &[
            "--datastore-endpoint".into(),
            "mysql://root@tcp(127.0.0.1:3306)/k3s".into(),
        ],
    )
    .await;
    assert!(log.contains("only etcd endpoints"), "{log}");

    let mut init = etcd.flags();
    init.push("--cluster-init".into());
    let log = refused("with-init", &init).await;
    assert!(
        log.contains("--cluster-init cannot be used with --datastore-endpoint"),
        "{log}"
    );

    // A dead endpoint first in the list: the next one serves.
    let mut failover = with(
        &[(
            "--datastore-endpoint",
            format!("{unreachable},{}", etcd.url()),
        )],
        &[],
    );
    failover.extend(["--disable-apiserver".to_string()]);
    let mut server = start_server("failover", &failover);
    let deadline = Instant::now() + READY;
    while !(server.logs().contains("using the external datastore")
        && server
            .logs()
            .contains("supervisor and Kubernetes API listening"))
    {
        if let Some(status) = server.try_exit() {
            panic!("exited with {status}: {}", server.logs());
        }
        assert!(Instant::now() < deadline, "{}", server.logs());
        sleep(Duration::from_millis(200)).await;
    }

    // An embedded server cannot join it: it has no etcd member to join.
    let token = std::fs::read_to_string(server.token_file()).expect("token");
    let joiner = [
        "--server".to_string(),
        server.supervisor_url(),
        "--token".to_string(),
        token.trim().to_string(),
    ];
    let log = refused("joiner", &joiner).await;
    assert!(log.contains("has no embedded etcd to join"), "{log}");
    let mut with_server = etcd.flags();
    with_server.extend(joiner);
    let log = refused("with-server", &with_server).await;
    assert!(
        log.contains("--server cannot be used with --datastore-endpoint"),
        "{log}"
    );
}
