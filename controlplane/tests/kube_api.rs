//! The Kubernetes API of `k3rs server` on its HTTPS port, driven by the machine's `kubectl`
//! with the admin kubeconfig the server wrote, and by `curl` for the raw protocol: objects
//! land in the store where kube-apiserver puts them, errors read as kube-apiserver's, and the
//! supervisor endpoints on the same port keep working. Every wait is bounded.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use common::k3rs_server::{K3rsServer, Ports};
use common::kubectl::{text, Kubectl};
use common::output_watch::OutputWatch;
use serde_json::Value;
use tokio::time::{sleep, Instant};

const READY: Duration = Duration::from_secs(60);
const EVENT_WAIT: Duration = Duration::from_secs(20);

/// A single-server cluster and a kubectl of its own.
struct Cluster {
    server: K3rsServer,
    kubectl: Kubectl,
}

impl Cluster {
    async fn start(node_name: &str) -> Self {
        let mut server = K3rsServer::new("127.0.0.1", node_name, Ports::pick());
        server.start(&["--cluster-init", "--etcd-disable-snapshots"]);
        server.wait_healthy(READY).await;
        let kubectl = Kubectl::for_server(&server);
        let cluster = Self { server, kubectl };
        // The default namespaces are created once the member serves.
        let deadline = Instant::now() + READY;
        while !cluster
            .kubectl
            .run(&["get", "namespace", "kube-node-lease"], None)
            .status
            .success()
        {
            assert!(
                Instant::now() < deadline,
                "the API did not serve the default namespaces: {}",
                cluster.server.logs()
            );
            sleep(Duration::from_millis(250)).await;
        }
        cluster
    }

    fn tls(&self, name: &str) -> String {
        self.server.tls_file(name).display().to_string()
    }

    /// curl against the HTTPS port: `client` names the certificate stem under `server/tls`
    /// to present, if any. Returns the HTTP code and the body.
    fn curl(&self, client: Option<&str>, extra: &[&str], path: &str) -> (u16, String) {
        let mut command = Command::new("curl");
        command
            .args(["-s", "--max-time", "20", "-w", "\n%{http_code}"])
            .arg("--cacert")
            .arg(self.tls("server-ca.crt"));
        if let Some(stem) = client {
            command
                .arg("--cert")
                .arg(self.tls(&format!("{stem}.crt")))
                .arg("--key")
                .arg(self.tls(&format!("{stem}.key")));
        }
        let url = format!("{}{path}", self.server.supervisor_url());
        let output = command
            .args(extra)
            .arg(&url)
            .output()
            .expect("running curl");
        let out = text(&output.stdout);
        let (body, code) = out.rsplit_once('\n').expect("curl printed the code");
        (code.trim().parse().expect("an HTTP code"), body.to_string())
    }

    /// A JSON answer of the API as the admin.
    fn api(&self, extra: &[&str], path: &str) -> (u16, Value) {
        let (code, body) = self.curl(Some("client-admin"), extra, path);
        let value =
            serde_json::from_str(&body).unwrap_or_else(|error| panic!("{path}: {error}: {body}"));
        (code, value)
    }
}

#[tokio::test]
async fn kubectl_creates_labels_patches_applies_replaces_and_deletes() {
    let cluster = Cluster::start("kube-1").await;

    // Namespaces: the defaults, and one of ours.
    let namespaces = cluster.kubectl.ok(&["get", "namespaces"]);
    assert!(namespaces.starts_with("NAME"), "{namespaces}");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(namespaces.contains(name), "{namespaces}");
    }
    assert!(
        namespaces
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("Active")),
        "{namespaces}"
    );
    cluster.kubectl.ok(&["create", "namespace", "team-a"]);

    // ConfigMaps: create (protobuf from kubectl's typed client), get, list with columns.
    cluster.kubectl.ok(&[
        "create",
        "configmap",
        "app",
        "--from-literal=a=1",
        "--from-literal=b=2",
    ]);
    let listed = cluster.kubectl.ok(&["get", "configmaps"]);
    let header: Vec<&str> = listed
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "DATA", "AGE"], "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("app ") && l.contains(" 2 ")),
        "{listed}"
    );
    let object: Value =
        serde_json::from_str(&cluster.kubectl.ok(&["get", "cm", "app", "-o", "json"]))
            .expect("JSON");
    assert_eq!(object["data"]["b"], "2");
    let uid = object["metadata"]["uid"]
        .as_str()
        .expect("a uid")
        .to_string();
    assert!(object["metadata"]["creationTimestamp"].is_string());

    // It is where kube-apiserver keeps it, without its resourceVersion.
    let stored = cluster.server.etcdctl_ok(&[
        "get",
        "/registry/configmaps/default/app",
        "--print-value-only",
    ]);
    let stored: Value = serde_json::from_str(stored.trim()).expect("a JSON value in the store");
    assert_eq!(stored["metadata"]["uid"], uid.as_str());
    assert!(
        stored["metadata"].get("resourceVersion").is_none(),
        "{stored}"
    );
    let revision =
        cluster
            .server
            .etcdctl_ok(&["get", "/registry/configmaps/default/app", "-w", "json"]);
    let revision: Value = serde_json::from_str(&revision).expect("etcdctl JSON");
    assert_eq!(
        revision["kvs"][0]["mod_revision"].to_string(),
        object["metadata"]["resourceVersion"]
            .as_str()
            .expect("a resourceVersion")
    );

    // Label, then select by label.
    cluster
        .kubectl
        .ok(&["label", "configmap", "app", "tier=web"]);
    cluster
        .kubectl
        .ok(&["create", "configmap", "other", "--from-literal=x=1"]);
    let selected = cluster
        .kubectl
        .ok(&["get", "cm", "-l", "tier in (web,db)", "-o", "name"]);
    assert_eq!(selected.trim(), "configmap/app");
    let selected = cluster
        .kubectl
        .ok(&["get", "cm", "-l", "!tier", "-o", "name"]);
    assert!(
        selected.contains("configmap/other") && !selected.contains("configmap/app"),
        "{selected}"
    );
    let selected = cluster.kubectl.ok(&[
        "get",
        "cm",
        "--field-selector",
        "metadata.name=other",
        "-o",
        "name",
    ]);
    assert_eq!(selected.trim(), "configmap/other");

    // Patches: strategic (kubectl's default), merge and JSON patch.
    cluster
        .kubectl
        .ok(&["patch", "cm", "app", "-p", r#"{"data":{"c":"3"}}"#]);
    cluster.kubectl.ok(&[
        "patch",
        "cm",
        "app",
        "--type=merge",
        "-p",
        r#"{"data":{"a":null}}"#,
    ]);
    cluster.kubectl.ok(&[
        "patch",
        "cm",
        "app",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/data/b","value":"20"}]"#,
    ]);
    let data = cluster
        .kubectl
        .ok(&["get", "cm", "app", "-o", "jsonpath={.data}"]);
    let data: Value = serde_json::from_str(&data).expect("JSON data");
    assert_eq!(data, serde_json::json!({"b": "20", "c": "3"}));

    // Secrets: base64 data as given, stringData converted, TYPE and DATA columns.
    cluster.kubectl.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        "team-a",
        "--from-literal=password=hunter2",
    ]);
    let secret = cluster.kubectl.ok(&[
        "get",
        "secret",
        "db",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.data.password}",
    ]);
    assert_eq!(secret, "aHVudGVyMg==");
    let secrets = cluster.kubectl.ok(&["get", "secrets", "-n", "team-a"]);
    let header: Vec<&str> = secrets
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "TYPE", "DATA", "AGE"], "{secrets}");
    assert!(secrets.contains("Opaque"), "{secrets}");

    // apply (client-side: create, then a strategic merge patch with the last-applied
    // annotation), then server-side apply.
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: team-a\ndata:\n  key: one\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: applied\n  namespace: team-a\nstringData:\n  token: abc\n";
    let out = cluster
        .kubectl
        .ok_input(&["apply", "-f", "-"], Some(manifest));
    assert!(
        out.contains("configmap/applied created") && out.contains("secret/applied created"),
        "{out}"
    );
    let out = cluster.kubectl.ok_input(
        &["apply", "-f", "-"],
        Some(&manifest.replace("key: one", "key: two")),
    );
    assert!(out.contains("configmap/applied configured"), "{out}");
    let key = cluster.kubectl.ok(&[
        "get",
        "cm",
        "applied",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.data.key}",
    ]);
    assert_eq!(key, "two");
    let out = cluster.kubectl.ok_input(
        &["apply", "--server-side", "-f", "-"],
        Some(&manifest.replace("key: one", "key: three")),
    );
    assert!(
        out.contains("configmap/applied serverside-applied"),
        "{out}"
    );
    let token = cluster.kubectl.ok(&[
        "get",
        "secret",
        "applied",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.data.token}",
    ]);
    assert_eq!(token, "YWJj");

    // replace with what get returned, changed.
    let current = cluster
        .kubectl
        .ok(&["get", "cm", "applied", "-n", "team-a", "-o", "json"]);
    let replaced = current.replace("\"three\"", "\"four\"");
    cluster
        .kubectl
        .ok_input(&["replace", "-f", "-"], Some(&replaced));
    let key = cluster.kubectl.ok(&[
        "get",
        "cm",
        "applied",
        "-n",
        "team-a",
        "-o",
        "jsonpath={.data.key}",
    ]);
    assert_eq!(key, "four");

    // delete an object, then a namespace and what is in it.
    let out = cluster.kubectl.ok(&["delete", "configmap", "other"]);
    assert!(out.contains("configmap \"other\" deleted"), "{out}");
    cluster.kubectl.ok(&["delete", "namespace", "team-a"]);
    let left = cluster
        .server
        .etcdctl_ok(&["get", "/registry/", "--prefix", "--keys-only"]);
    assert!(!left.contains("team-a"), "{left}");
    assert!(left.contains("/registry/configmaps/default/app"), "{left}");
    let error = cluster.kubectl.err(&["delete", "namespace", "default"]);
    assert!(error.contains("Forbidden"), "{error}");
}

#[tokio::test]
async fn kubectl_gets_kube_apiserver_s_errors() {
    let cluster = Cluster::start("kube-2").await;
    cluster
        .kubectl
        .ok(&["create", "configmap", "taken", "--from-literal=a=1"]);

    let error = cluster
        .kubectl
        .err(&["create", "configmap", "taken", "--from-literal=a=2"]);
    assert!(
        error.contains("configmaps \"taken\" already exists"),
        "{error}"
    );
    let error = cluster.kubectl.err(&["get", "configmap", "missing"]);
    assert!(
        error.contains("Error from server (NotFound): configmaps \"missing\" not found"),
        "{error}"
    );
    let error = cluster.kubectl.err(&["create", "configmap", "Bad_Name"]);
    assert!(
        error.contains("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{error}"
    );
    let error = cluster.kubectl.err(&["create", "namespace", "a.b"]);
    assert!(error.contains("Namespace \"a.b\" is invalid"), "{error}");
    let output = cluster.kubectl.run(
        &["apply", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x\n"),
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).to_lowercase().contains("yaml"),
        "{}",
        text(&output.stderr)
    );

    // A replace from a stale read is a conflict.
    let stale = cluster.kubectl.ok(&["get", "cm", "taken", "-o", "json"]);
    cluster.kubectl.ok(&["label", "cm", "taken", "moved=on"]);
    let output = cluster.kubectl.run(
        &["replace", "-f", "-"],
        Some(&stale.replace("\"1\"", "\"9\"")),
    );
    let error = text(&output.stderr);
    assert!(
        error.contains("Error from server (Conflict)")
            && error.contains("the object has been modified"),
        "{error}"
    );

    // The raw protocol: Status objects with kube-apiserver's reasons and codes.
    let path = "/api/v1/namespaces/default/configmaps";
    let (code, status) = cluster.api(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{not json",
        ],
        path,
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (400, Some("BadRequest")),
        "{status}"
    );
    assert_eq!(status["kind"], "Status");
    let (code, status) = cluster.api(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/yaml",
            "-d",
            "metadata: {name: [x",
        ],
        path,
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (400, Some("BadRequest")),
        "{status}"
    );
    let (code, status) = cluster.api(
        &[
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/json",
            "-d",
            "{}",
        ],
        path,
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (405, Some("MethodNotAllowed")),
        "{status}"
    );
    let (code, status) = cluster.api(&[], "/api/v1/namespaces/default/configmaps/missing");
    assert_eq!(
        (code, status["reason"].as_str()),
        (404, Some("NotFound")),
        "{status}"
    );
    assert_eq!(status["details"]["name"], "missing");
    let (code, status) = cluster.api(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"metadata":{"name":"x"}}"#,
        ],
        "/api/v1/namespaces/nowhere/configmaps",
    );
    assert_eq!(
        (code, status["message"].as_str()),
        (404, Some("namespaces \"nowhere\" not found")),
        "{status}"
    );
    let big = format!(
        r#"{{"metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let big_file = cluster.kubectl.home().join("big.json");
    std::fs::write(&big_file, big).expect("writing the big object");
    let (code, status) = cluster.api(
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &format!("@{}", big_file.display()),
        ],
        path,
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (413, Some("RequestEntityTooLarge")),
        "{status}"
    );
    let listed =
        cluster
            .server
            .etcdctl_ok(&["get", "/registry/configmaps/", "--prefix", "--keys-only"]);
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        ["/registry/configmaps/default/taken"]
    );
}

#[tokio::test]
async fn kubectl_get_watch_sees_changes_as_they_happen() {
    let cluster = Cluster::start("kube-3").await;
    cluster
        .kubectl
        .ok(&["create", "configmap", "before", "--from-literal=a=0"]);
    let watch = OutputWatch::spawn(cluster.kubectl.command(&[
        "get",
        "configmaps",
        "--watch",
        "-o",
        "jsonpath={.metadata.name}={.data.a}{\"\\n\"}",
    ]));
    watch.wait_for("before=0\n", EVENT_WAIT).await;
    cluster
        .kubectl
        .ok(&["create", "configmap", "during", "--from-literal=a=1"]);
    watch.wait_for("during=1\n", EVENT_WAIT).await;
    cluster.kubectl.ok(&[
        "patch",
        "configmap",
        "during",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ]);
    watch.wait_for("during=2\n", EVENT_WAIT).await;
    drop(watch);

    // The raw stream: ADDED, MODIFIED, DELETED from a resourceVersion.
    let (_, list) = cluster.api(&[], "/api/v1/namespaces/default/configmaps");
    let from = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a list revision")
        .to_string();
    cluster.kubectl.ok(&["label", "configmap", "before", "x=y"]);
    cluster.kubectl.ok(&["delete", "configmap", "during"]);
    let (code, body) = cluster.curl(
        Some("client-admin"),
        &["--max-time", "3"],
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={from}"),
    );
    let _ = code;
    let events: Vec<Value> = body
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("a JSON event"))
        .collect();
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap_or(""),
                e["object"]["metadata"]["name"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [("MODIFIED", "before"), ("DELETED", "during")],
        "{body}"
    );

    // Once that history is compacted, the same watch ends with a 410 Expired ERROR event.
    cluster
        .kubectl
        .ok(&["create", "configmap", "after", "--from-literal=a=3"]);
    let (_, list) = cluster.api(&[], "/api/v1/namespaces/default/configmaps");
    let now = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a revision")
        .to_string();
    cluster.server.etcdctl_ok(&["compact", &now]);
    let (_, body) = cluster.curl(
        Some("client-admin"),
        &["--max-time", "3"],
        &format!("/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={from}"),
    );
    let event: Value = serde_json::from_str(body.lines().next().unwrap_or("")).expect("an event");
    assert_eq!(event["type"], "ERROR", "{body}");
    assert_eq!(
        (
            event["object"]["code"].as_u64(),
            event["object"]["reason"].as_str()
        ),
        (Some(410), Some("Expired")),
        "{body}"
    );
}

#[tokio::test]
async fn lists_page_at_one_revision_and_the_api_needs_a_client_certificate() {
    let cluster = Cluster::start("kube-4").await;
    for index in 0..5 {
        cluster.kubectl.ok(&[
            "create",
            "configmap",
            &format!("page-{index}"),
            "--from-literal=a=1",
        ]);
    }
    let names = cluster
        .kubectl
        .ok(&["get", "cm", "--chunk-size=2", "-o", "name"]);
    assert_eq!(
        names
            .lines()
            .filter(|l| l.starts_with("configmap/page-"))
            .count(),
        5,
        "{names}"
    );
    let (_, first) = cluster.api(&[], "/api/v1/namespaces/default/configmaps?limit=2");
    assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    cluster
        .kubectl
        .ok(&["create", "configmap", "page-9", "--from-literal=a=1"]);
    let mut seen = 2;
    let mut next = Some(token);
    while let Some(token) = next {
        let (code, page) = cluster.api(
            &[],
            &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}"),
        );
        assert_eq!(code, 200, "{page}");
        assert_eq!(
            page["metadata"]["resourceVersion"],
            first["metadata"]["resourceVersion"]
        );
        seen += page["items"].as_array().map_or(0, Vec::len);
        next = page["metadata"]["continue"].as_str().map(str::to_string);
    }
    assert_eq!(
        seen, 5,
        "pages read at the first page's revision do not see page-9"
    );

    // A continue token whose revision was compacted is 410 Expired.
    let (_, first) = cluster.api(&[], "/api/v1/namespaces/default/configmaps?limit=2");
    let token = first["metadata"]["continue"]
        .as_str()
        .expect("a continue token")
        .to_string();
    cluster
        .kubectl
        .ok(&["create", "configmap", "page-10", "--from-literal=a=1"]);
    let (_, list) = cluster.api(&[], "/api/v1/namespaces/default/configmaps");
    let now = list["metadata"]["resourceVersion"]
        .as_str()
        .expect("a revision")
        .to_string();
    cluster.server.etcdctl_ok(&["compact", &now]);
    let (code, status) = cluster.api(
        &[],
        &format!("/api/v1/namespaces/default/configmaps?limit=2&continue={token}"),
    );
    assert_eq!(
        (code, status["reason"].as_str()),
        (410, Some("Expired")),
        "{status}"
    );

    // deletecollection by label.
    cluster
        .kubectl
        .ok(&["label", "cm", "page-0", "page-1", "batch=old"]);
    let (code, deleted) = cluster.api(
        &["-X", "DELETE"],
        "/api/v1/namespaces/default/configmaps?labelSelector=batch%3Dold",
    );
    assert_eq!(code, 200);
    assert_eq!(
        deleted["items"].as_array().map(Vec::len),
        Some(2),
        "{deleted}"
    );

    // No certificate, or one of another CA (the etcd client's): 401 Status.
    let (code, body) = cluster.curl(None, &[], "/api/v1/namespaces");
    assert_eq!(code, 401, "{body}");
    let status: Value = serde_json::from_str(&body).expect("a Status");
    assert_eq!(
        (status["kind"].as_str(), status["reason"].as_str()),
        (Some("Status"), Some("Unauthorized"))
    );
    let (code, _) = cluster.curl(Some("etcd/client"), &[], "/api/v1/namespaces");
    assert_eq!(code, 401);

    // The supervisor on the same port: open /cacerts and /ping, basic auth for /db/info.
    let (code, ca) = cluster.curl(None, &[], "/cacerts");
    assert_eq!(code, 200);
    assert_eq!(
        ca.trim(),
        std::fs::read_to_string(cluster.tls("server-ca.crt"))
            .expect("the CA")
            .trim()
    );
    assert_eq!(cluster.curl(None, &[], "/ping"), (200, "pong".to_string()));
    let token = std::fs::read_to_string(cluster.server.token_file()).expect("token");
    let secret = token
        .trim()
        .rsplit_once(':')
        .expect("user:secret")
        .1
        .to_string();
    let (code, info) = cluster.curl(None, &["-u", &format!("server:{secret}")], "/db/info");
    assert_eq!(code, 200, "{info}");
    assert!(info.contains("\"members\""), "{info}");
    assert_eq!(cluster.curl(Some("client-admin"), &[], "/db/info").0, 401);

    // Discovery and version.
    let version = cluster.kubectl.ok(&["version", "-o", "json"]);
    let version: Value = serde_json::from_str(&version).expect("JSON");
    assert_eq!(version["serverVersion"]["major"], "1");
    let resources = cluster.kubectl.ok(&["api-resources", "--no-headers"]);
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("configmaps") && l.contains(" cm ")),
        "{resources}"
    );
    assert!(
        resources
            .lines()
            .any(|l| l.starts_with("leases") && l.contains("coordination.k8s.io/v1")),
        "{resources}"
    );

    // The kubeconfig written for --write-kubeconfig: mode 0600, the server's URL.
    let written = cluster
        .server
        .data_dir()
        .parent()
        .expect("test dir")
        .join("k3rs.yaml");
    let mode = std::fs::metadata(&written)
        .expect("the kubeconfig")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let kubeconfig = std::fs::read_to_string(&written).expect("the kubeconfig");
    assert!(
        kubeconfig.contains(&format!("server: {}", cluster.server.supervisor_url())),
        "{kubeconfig}"
    );
}

/// Joined servers share the client CA: the first server's admin kubeconfig works against
/// them, and they serve what was written through the first. Three servers are three Ready
/// control-plane/etcd nodes, a watch on one sees a write through another, and deleting a
/// node removes that server's etcd member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joined_server_serves_the_same_api_to_the_same_kubeconfig() {
    let cluster = Cluster::start("kube-6").await;
    cluster
        .kubectl
        .ok(&["create", "configmap", "shared", "--from-literal=a=1"]);
    let mut second = K3rsServer::new("127.0.0.2", "kube-7", Ports::pick());
    let token_file = cluster.server.token_file().display().to_string();
    second.start(&[
        "--server",
        &cluster.server.supervisor_url(),
        "--token-file",
        &token_file,
    ]);
    second.wait_healthy(READY).await;
    let on_second = ["--server", &second.supervisor_url()];
    let deadline = Instant::now() + READY;
    let data = loop {
        let output = cluster.kubectl.run(
            &[
                &on_second[..],
                &["get", "cm", "shared", "-o", "jsonpath={.data.a}"],
            ]
            .concat(),
            None,
        );
        if output.status.success() {
            break text(&output.stdout);
        }
        assert!(
            Instant::now() < deadline,
            "the second server did not serve: {}{}",
            text(&output.stderr),
            second.logs()
        );
        sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(data, "1");
    cluster
        .kubectl
        .ok(&[&on_second[..], &["create", "configmap", "from-second"]].concat());
    let names = cluster.kubectl.ok(&["get", "cm", "-o", "name"]);
    assert!(names.contains("configmap/from-second"), "{names}");
    assert_eq!(
        std::fs::read(cluster.server.tls_file("client-ca.crt")).expect("first client CA"),
        std::fs::read(second.tls_file("client-ca.crt")).expect("second client CA")
    );

    let mut third = K3rsServer::new("127.0.0.3", "kube-9", Ports::pick());
    third.start(&[
        "--server",
        &second.supervisor_url(),
        "--token-file",
        &token_file,
    ]);
    third.wait_healthy(READY).await;

    // All three are Ready control-plane/etcd nodes, each with a lease in kube-node-lease.
    let deadline = Instant::now() + READY;
    loop {
        let nodes = cluster.kubectl.ok(&["get", "nodes", "--no-headers"]);
        let ready = ["kube-6", "kube-7", "kube-9"].iter().all(|name| {
            nodes.lines().any(|line| {
                let cells: Vec<&str> = line.split_whitespace().collect();
                cells.first() == Some(name)
                    && cells.get(1) == Some(&"Ready")
                    && cells.get(2) == Some(&"control-plane,etcd,master")
            })
        });
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "nodes not Ready: {nodes}");
        sleep(Duration::from_millis(250)).await;
    }
    let leases = cluster
        .kubectl
        .ok(&["get", "leases", "-n", "kube-node-lease", "-o", "name"]);
    assert!(
        ["kube-6", "kube-7", "kube-9"]
            .iter()
            .all(|name| leases.contains(&format!("lease.coordination.k8s.io/{name}"))),
        "{leases}"
    );

    // `kubectl get -w` through the third server sees a write made through the second.
    let on_third = ["--server", &third.supervisor_url()];
    let watch = OutputWatch::spawn(
        cluster.kubectl.command(
            &[
                &on_third[..],
                &[
                    "get",
                    "configmaps",
                    "--watch",
                    "-o",
                    "jsonpath={.metadata.name}={.data.a}{\"\\n\"}",
                ],
            ]
            .concat(),
        ),
    );
    watch.wait_for("shared=1\n", EVENT_WAIT).await;
    cluster.kubectl.ok(&[
        &on_second[..],
        &["create", "configmap", "across", "--from-literal=a=7"],
    ]
    .concat());
    watch.wait_for("across=7\n", EVENT_WAIT).await;
    drop(watch);

    // Deleting the second server's node removes its etcd member, as k3s does.
    let members = cluster.server.etcdctl_ok(&["member", "list"]);
    assert_eq!(members.lines().count(), 3, "{members}");
    let out = cluster.kubectl.ok(&["delete", "node", "kube-7"]);
    assert!(out.contains("node \"kube-7\" deleted"), "{out}");
    // The first server may be a follower that applies the removal a moment later.
    let deadline = Instant::now() + EVENT_WAIT;
    let members = loop {
        let members = cluster.server.etcdctl_ok(&["member", "list"]);
        if members.lines().count() == 2 || Instant::now() >= deadline {
            break members;
        }
        sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(members.lines().count(), 2, "{members}");
    assert!(
        members.contains("kube-6-") && members.contains("kube-9-") && !members.contains("kube-7-"),
        "{members}"
    );
    let nodes = cluster.kubectl.ok(&["get", "nodes", "-o", "name"]);
    assert!(!nodes.contains("node/kube-7"), "{nodes}");

    // A node whose lease is not renewed is marked NotReady by the leader.
    let ghost = r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"ghost"},"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#;
    cluster
        .kubectl
        .ok_input(&["create", "-f", "-"], Some(ghost));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = cluster
            .kubectl
            .ok(&["get", "node", "ghost", "--no-headers"]);
        if line.split_whitespace().nth(1) == Some("NotReady") {
            break;
        }
        assert!(Instant::now() < deadline, "ghost still {line}");
        sleep(Duration::from_millis(500)).await;
    }
}

/// With `--disable-apiserver` the port is the supervisor's alone and the server writes nothing
/// of its own to the store.
#[tokio::test]
async fn disable_apiserver_leaves_the_supervisor_alone() {
    let mut server = K3rsServer::new("127.0.0.1", "kube-8", Ports::pick());
    server.start(&["--cluster-init", "--disable-apiserver"]);
    server.wait_healthy(READY).await;
    let curl = |path: &str| {
        let output = Command::new("curl")
            .args(["-s", "--max-time", "20", "-w", " %{http_code}", "--cacert"])
            .arg(server.tls_file("server-ca.crt"))
            .arg("--cert")
            .arg(server.tls_file("client-admin.crt"))
            .arg("--key")
            .arg(server.tls_file("client-admin.key"))
            .arg(format!("{}{path}", server.supervisor_url()))
            .output()
            .expect("running curl");
        text(&output.stdout)
    };
    assert!(curl("/api/v1/namespaces").ends_with(" 404"));
    assert_eq!(curl("/ping"), "pong 200");
    sleep(Duration::from_secs(1)).await;
    let keys = server.etcdctl_ok(&["get", "/registry/", "--prefix", "--keys-only"]);
    assert_eq!(keys.trim(), "", "{keys}");
}

/// The Python `kubernetes` client (from PyPI), as "a client library written by others": list,
/// watch, create, replace (a stale one refused), patch, delete. Runs with the Python named by
/// `K3RS_TEST_PYTHON` (default `python3`) and is skipped, saying so, when it lacks the
/// `kubernetes` package.
#[tokio::test]
async fn the_python_kubernetes_client_lists_watches_and_writes() {
    let python = std::env::var("K3RS_TEST_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let probe = Command::new(&python)
        .args(["-c", "import kubernetes"])
        .output();
    if !probe.is_ok_and(|output| output.status.success()) {
        eprintln!("skipped: {python} has no `kubernetes` package (pip install kubernetes; set K3RS_TEST_PYTHON)");
        return;
    }
    let cluster = Cluster::start("kube-5").await;
    let output = Command::new(&python)
        .args(["-c", PYTHON_CLIENT])
        .arg(cluster.kubectl.kubeconfig())
        .env("HOME", cluster.kubectl.home())
        .output()
        .expect("running python");
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "namespaces default,kube-node-lease,kube-public,kube-system",
            "stale 409",
            "exists 409",
            "listed 3",
            "gone 404",
            "secret Yg==",
            "events ADDED:1 MODIFIED:2 MODIFIED:3 DELETED:3",
        ],
        "{stdout}"
    );
}

const PYTHON_CLIENT: &str = r#"
import sys, threading, time
from kubernetes import client, config, watch
config.load_kube_config(config_file=sys.argv[1])
v1 = client.CoreV1Api()
print("namespaces " + ",".join(sorted(n.metadata.name for n in v1.list_namespace().items)))
events = []
def watcher():
    w = watch.Watch()
    for e in w.stream(v1.list_namespaced_config_map, "default", label_selector="py=yes", timeout_seconds=5):
        events.append("%s:%s" % (e["type"], (e["object"].data or {}).get("k")))
        if e["type"] == "DELETED":
            w.stop()
t = threading.Thread(target=watcher)
t.start()
time.sleep(1)
cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py1", labels={"py": "yes"}), data={"k": "1"})
created = v1.create_namespaced_config_map("default", cm)
created.data["k"] = "2"
v1.replace_namespaced_config_map("py1", "default", created)
try:
    v1.replace_namespaced_config_map("py1", "default", created)
except client.exceptions.ApiException as e:
    print("stale", e.status)
v1.patch_namespaced_config_map("py1", "default", {"data": {"k": "3"}})
try:
    v1.create_namespaced_config_map("default", cm)
except client.exceptions.ApiException as e:
    print("exists", e.status)
print("listed", v1.list_namespaced_config_map("default", label_selector="py=yes").items[0].data["k"])
v1.delete_namespaced_config_map("py1", "default")
try:
    v1.read_namespaced_config_map("py1", "default")
except client.exceptions.ApiException as e:
    print("gone", e.status)
s = v1.create_namespaced_secret("default", client.V1Secret(metadata=client.V1ObjectMeta(name="pys"), string_data={"a": "b"}))
print("secret", s.data["a"])
t.join()
print("events " + " ".join(events))
"#;
