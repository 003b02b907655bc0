//! Manifests auto-deploy of `k3rs server`, seen through the machine's `kubectl`: the files of
//! `<data-dir>/server/manifests` present at start are applied, new files are applied, edits
//! are applied as `kubectl apply` would (a label added by a user survives), objects dropped
//! from a file and the objects of a removed file are deleted, and a malformed file or an
//! unserved kind blocks nothing else. Every wait is bounded.

mod common;

use std::time::Duration;

use common::k3rs_server::{K3rsServer, Ports};
use common::kubectl::{text, Kubectl};
use tokio::time::{sleep, Instant};

const READY: Duration = Duration::from_secs(60);
/// The directory is read every 5 s; an apply takes a few requests.
const DEPLOY_WAIT: Duration = Duration::from_secs(30);

/// Waits until `kubectl args` prints `wanted` (trimmed); `None`: until it fails with NotFound.
async fn wait_for(kubectl: &Kubectl, server: &K3rsServer, args: &[&str], wanted: Option<&str>) {
    let deadline = Instant::now() + DEPLOY_WAIT;
    loop {
        let output = kubectl.run(args, None);
        let now = match wanted {
            Some(wanted) => output.status.success() && text(&output.stdout).trim() == wanted,
            None => !output.status.success() && text(&output.stderr).contains("NotFound"),
        };
        if now {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl {args:?} never gave {wanted:?}: {}{}\n{}",
            text(&output.stdout),
            text(&output.stderr),
            server.logs()
        );
        sleep(Duration::from_millis(500)).await;
    }
}

const BASE: &str = r#"# a ConfigMap in a namespace the same file creates, after it
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  mode: "one"
  extra: "x"
---
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: plain
data:
  a: "1"
"#;

const BASE_EDITED: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
  labels:
    from: file
data:
  mode: "two"
"#;

const MALFORMED: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: name: broken\ndata: {}\n";

const MIXED: &str = r#"apiVersion: example.com/v1
kind: Widget
metadata:
  name: later
---
apiVersion: v1
kind: Secret
metadata:
  name: beside-widget
stringData:
  k: v
"#;

const JSON_FILE: &str = r#"{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "from-json", "namespace": "kube-system"}, "data": {"j": "son"}}"#;

#[tokio::test]
async fn manifests_are_applied_at_start_and_as_they_change() {
    let mut server = K3rsServer::new("127.0.0.1", "manifests-1", Ports::pick());
    let dir = server.data_dir().join("server").join("manifests");
    std::fs::create_dir_all(&dir).expect("creating the manifests dir");
    let write = |name: &str, content: &str| {
        std::fs::write(dir.join(name), content).expect("writing a manifest");
    };
    write("base.yaml", BASE);
    // Disabled, hidden and foreign files are never applied.
    let never = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: never\n";
    write("skipped.yaml", never);
    write("skipped.yaml.skip", "");
    write(".hidden.yaml", never);
    write("notes.txt", never);
    server.start(&["--cluster-init", "--etcd-disable-snapshots"]);
    server.wait_healthy(READY).await;
    let kubectl = Kubectl::for_server(&server);
    let settings = [
        "get",
        "configmap",
        "settings",
        "-n",
        "demo",
        "-o",
        "jsonpath={.data.mode}/{.data.extra}/{.metadata.labels}",
    ];

    // Present at start: applied, the Namespace first; no namespace means `default`.
    wait_for(&kubectl, &server, &settings, Some("one/x/")).await;
    wait_for(
        &kubectl,
        &server,
        &["get", "cm", "plain", "-o", "jsonpath={.data.a}"],
        Some("1"),
    )
    .await;
    let owner = kubectl.ok(&[
        "get",
        "cm",
        "plain",
        "-o",
        r"jsonpath={.metadata.annotations.objectset\.rio\.cattle\.io/owner-name}",
    ]);
    assert_eq!(owner, "base");
    let record = server.etcdctl_ok(&[
        "get",
        "/registry/k3s.cattle.io/addons/kube-system/base",
        "--print-value-only",
    ]);
    assert!(record.contains("\"kind\":\"Addon\""), "{record}");

    // A malformed file, a file with a kind not served, and a new JSON file: the JSON file and
    // the served object beside the unserved one are applied, the malformed one is reported.
    write("broken.yaml", MALFORMED);
    write("mixed.yaml", MIXED);
    write("extra.json", JSON_FILE);
    wait_for(
        &kubectl,
        &server,
        &[
            "get",
            "cm",
            "from-json",
            "-n",
            "kube-system",
            "-o",
            "jsonpath={.data.j}",
        ],
        Some("son"),
    )
    .await;
    wait_for(
        &kubectl,
        &server,
        &["get", "secret", "beside-widget", "-o", "jsonpath={.data.k}"],
        Some("dg=="),
    )
    .await;
    let logs = server.logs();
    assert!(
        logs.contains("broken.yaml: line 3"),
        "the malformed file's error names it and its line: {logs}"
    );
    assert!(logs.contains("Widget later"), "{logs}");

    // A user's label survives an edit of the file; what the file changes is changed, what it
    // drops is removed, and an object dropped from the file is deleted.
    kubectl.ok(&["label", "cm", "settings", "-n", "demo", "user=added"]);
    write("base.yaml", BASE_EDITED);
    wait_for(
        &kubectl,
        &server,
        &settings,
        Some(r#"two//{"from":"file","user":"added"}"#),
    )
    .await;
    wait_for(&kubectl, &server, &["get", "cm", "plain"], None).await;

    // A removed file's objects are deleted; a skipped or hidden one was never applied.
    std::fs::remove_file(dir.join("extra.json")).expect("removing a manifest");
    wait_for(
        &kubectl,
        &server,
        &["get", "cm", "from-json", "-n", "kube-system"],
        None,
    )
    .await;
    let names = kubectl.ok(&["get", "cm", "-A", "-o", "name"]);
    assert!(!names.contains("configmap/never"), "{names}");
    let records = server.etcdctl_ok(&[
        "get",
        "/registry/k3s.cattle.io/addons/",
        "--prefix",
        "--keys-only",
    ]);
    assert!(!records.contains("addons/kube-system/extra\n"), "{records}");

    // Files removed while the server is down are cleaned up at its next start.
    server.kill9();
    std::fs::remove_file(dir.join("base.yaml")).expect("removing a manifest");
    server.restart();
    server.wait_healthy(READY).await;
    wait_for(&kubectl, &server, &["get", "namespace", "demo"], None).await;
    wait_for(
        &kubectl,
        &server,
        &["get", "secret", "beside-widget", "-o", "jsonpath={.data.k}"],
        Some("dg=="),
    )
    .await;
}

/// Two servers holding the same file: when one removes its copy (deleting the objects and
/// the record), the other applies its copy again, so the objects exist while any server has
/// the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_on_two_servers_stays_while_either_has_it() {
    let shared =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared-cm\ndata:\n  a: \"1\"\n";
    let manifests = |server: &K3rsServer| server.data_dir().join("server").join("manifests");
    let mut first = K3rsServer::new("127.0.0.1", "manifests-2", Ports::pick());
    let mut second = K3rsServer::new("127.0.0.5", "manifests-3", Ports::pick());
    for server in [&first, &second] {
        std::fs::create_dir_all(manifests(server)).expect("creating the manifests dir");
        std::fs::write(manifests(server).join("shared.yaml"), shared).expect("writing");
    }
    first.start(&["--cluster-init", "--etcd-disable-snapshots"]);
    first.wait_healthy(READY).await;
    let kubectl = Kubectl::for_server(&first);
    let get = ["get", "cm", "shared-cm", "-o", "jsonpath={.data.a}"];
    wait_for(&kubectl, &first, &get, Some("1")).await;
    let token_file = first.token_file().display().to_string();
    second.start(&[
        "--server",
        &first.supervisor_url(),
        "--token-file",
        &token_file,
    ]);
    second.wait_healthy(READY).await;
    let record_names = |server: &K3rsServer, wanted: &K3rsServer| {
        let record = server.etcdctl(&[
            "get",
            "/registry/k3s.cattle.io/addons/kube-system/shared",
            "--print-value-only",
        ]);
        text(&record.stdout).contains(&manifests(wanted).display().to_string())
    };
    // The second server applied its copy (a no-op) and recorded it as its own.
    let deadline = Instant::now() + DEPLOY_WAIT;
    while !record_names(&first, &second) {
        assert!(
            Instant::now() < deadline,
            "the second server never recorded its copy: {}",
            second.logs()
        );
        sleep(Duration::from_millis(500)).await;
    }
    std::fs::remove_file(manifests(&second).join("shared.yaml")).expect("removing");
    let deadline = Instant::now() + DEPLOY_WAIT;
    while !(second.logs().contains("manifest object deleted")
        && first.logs().contains("applying it again")
        && record_names(&first, &first))
    {
        assert!(
            Instant::now() < deadline,
            "the first server did not apply its copy again:\n{}\n{}",
            first.logs(),
            second.logs()
        );
        sleep(Duration::from_millis(500)).await;
    }
    wait_for(&kubectl, &first, &get, Some("1")).await;
}
