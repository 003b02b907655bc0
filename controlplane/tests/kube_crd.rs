//! CustomResourceDefinitions, custom resources, ETCDSnapshotFiles and `kubectl explain`,
//! driven by the machine's `kubectl` (a fresh home and discovery cache per cluster) against
//! real `k3rs server` processes: what a user of k3s does with a CRD works the same way, on
//! every server of the cluster. Every wait is bounded.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::k3rs_server::{K3rsServer, Ports};
use common::kubectl::Kubectl;
use common::output_watch::OutputWatch;
use common::s3_server::S3Server;
use common::snapshot_cli::{save, snapshot_ok};
use tokio::time::{sleep, Instant};

const READY: Duration = Duration::from_secs(60);
const EVENT_WAIT: Duration = Duration::from_secs(20);

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
    additionalPrinterColumns:
    - name: Spec
      type: string
      jsonPath: .spec.cronSpec
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    schema:
      openAPIV3Schema:
        type: object
        description: A CronTab runs an image on a schedule.
        properties:
          spec:
            type: object
            description: What to run and when.
            properties:
              cronSpec:
                type: string
                description: The schedule, in cron format.
              image:
                type: string
              replicas:
                type: integer
          status:
            type: object
            properties:
              phase:
                type: string
"#;

fn crontab(name: &str, image: &str, replicas: u32) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  labels:\n    app: cron\nspec:\n  cronSpec: \"*/5 * * * *\"\n  image: {image}\n  replicas: {replicas}\n"
    )
}

async fn start_server(node_name: &str) -> K3rsServer {
    let mut server = K3rsServer::new("127.0.0.1", node_name, Ports::pick());
    server.start(&["--cluster-init", "--etcd-disable-snapshots"]);
    server.wait_healthy(READY).await;
    server
}

/// Applies the CronTab CRD and waits until kubectl sees it established.
async fn apply_crd(kubectl: &Kubectl) {
    // The default namespace (and the API) exists once the member serves.
    kubectl
        .until(&["get", "namespace", "default"], READY, |_| true)
        .await;
    let out = kubectl.apply(CRD);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/crontabs.stable.example.com created"
        ),
        "{out}"
    );
    kubectl.ok(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=20s",
        "crd/crontabs.stable.example.com",
    ]);
}

#[tokio::test]
async fn kubectl_uses_a_crd_s_resources_like_built_in_ones() {
    let server = start_server("crd-1").await;
    let kubectl = Kubectl::for_server(&server);
    apply_crd(&kubectl).await;
    let crds = kubectl.ok(&["get", "crds"]);
    let header: Vec<&str> = crds
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CREATED", "AT"], "{crds}");
    let crd = kubectl.ok(&[
        "get",
        "crd",
        "crontabs.stable.example.com",
        "-o",
        "jsonpath={.status.acceptedNames.kind} {.status.storedVersions}",
    ]);
    assert_eq!(crd, "CronTab [\"v1\"]");

    // Right after the CRD: create, get with the printer columns, list by label.
    let out = kubectl.apply(&crontab("my-cron", "image-a", 2));
    assert!(
        out.contains("crontab.stable.example.com/my-cron created"),
        "{out}"
    );
    let table = kubectl.ok(&["get", "crontabs"]);
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["NAME", "SPEC", "REPLICAS"], "{table}");
    assert_eq!(
        lines[1],
        ["my-cron", "*/5", "*", "*", "*", "*", "2"],
        "{table}"
    );
    let stored = server.etcdctl_ok(&[
        "get",
        "--keys-only",
        "--prefix",
        "/registry/stable.example.com/",
    ]);
    assert!(
        stored.contains("/registry/stable.example.com/crontabs/default/my-cron"),
        "{stored}"
    );
    kubectl.apply(&crontab("other", "image-b", 1).replace("app: cron", "app: other"));
    let names = kubectl.ok(&["get", "ct", "-l", "app=cron", "-o", "name"]);
    assert_eq!(names, "crontab.stable.example.com/my-cron\n");

    // Patch, apply a change, replace: each lands, generation follows the spec.
    kubectl.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"replicas":3}}"#,
    ]);
    let out = kubectl.apply(&crontab("my-cron", "image-c", 3));
    assert!(
        out.contains("crontab.stable.example.com/my-cron configured"),
        "{out}"
    );
    let fields = "jsonpath={.spec.image} {.spec.replicas} {.metadata.generation}";
    assert_eq!(
        kubectl.ok(&["get", "ct", "my-cron", "-o", fields]),
        "image-c 3 3"
    );
    let current = kubectl.ok(&["get", "ct", "my-cron", "-o", "yaml"]);
    let replaced = current.replace("replicas: 3", "replicas: 4");
    kubectl.ok_input(&["replace", "-f", "-"], Some(&replaced));
    assert_eq!(
        kubectl.ok(&["get", "ct", "my-cron", "-o", fields]),
        "image-c 4 4"
    );

    // The status subresource: written only through /status.
    kubectl.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--subresource",
        "status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Running"}}"#,
    ]);
    kubectl.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Ignored"}}"#,
    ]);
    assert_eq!(
        kubectl.ok(&["get", "ct", "my-cron", "-o", "jsonpath={.status.phase}"]),
        "Running"
    );

    // kubectl get -w sees a change.
    let watch = OutputWatch::spawn(kubectl.command(&[
        "get",
        "crontabs",
        "--watch",
        "-o",
        "jsonpath={.metadata.name}={.spec.image}{\"\\n\"}",
    ]));
    watch.wait_for("my-cron=image-c\n", EVENT_WAIT).await;
    kubectl.ok(&[
        "patch",
        "ct",
        "my-cron",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"image":"image-d"}}"#,
    ]);
    watch.wait_for("my-cron=image-d\n", EVENT_WAIT).await;
    drop(watch);

    // kubectl explain: a built-in kind, one of its fields, the CRD's kind and a field of it.
    let explained = kubectl.ok(&["explain", "configmap"]);
    assert!(
        explained.contains("KIND:       ConfigMap")
            && explained.contains("data\t<map[string]string>"),
        "{explained}"
    );
    let explained = kubectl.ok(&["explain", "configmap.data"]);
    assert!(
        explained.contains("FIELD: data <map[string]string>"),
        "{explained}"
    );
    let explained = kubectl.ok(&["explain", "crontab"]);
    assert!(
        explained.contains("KIND:       CronTab")
            && explained.contains("A CronTab runs an image on a schedule.")
            && explained.contains("spec\t<Object>"),
        "{explained}"
    );
    let explained = kubectl.ok(&["explain", "crontab.spec.cronSpec"]);
    assert!(
        explained.contains("The schedule, in cron format."),
        "{explained}"
    );

    // Refusals with kube-apiserver's status.
    let bad_crd = CRD
        .replace(
            "name: crontabs.stable.example.com",
            "name: wrong.stable.example.com",
        )
        .replace("scope: Namespaced", "scope: Galactic");
    let error = kubectl.err_input(&["apply", "-f", "-"], Some(&bad_crd));
    assert!(
        error.contains("The CustomResourceDefinition \"wrong.stable.example.com\" is invalid")
            && error.contains("metadata.name: Invalid value: \"wrong.stable.example.com\": must be spec.names.plural+\".\"+spec.group")
            && error.contains("spec.scope: Unsupported value: \"Galactic\": supported values: \"Cluster\", \"Namespaced\""),
        "{error}"
    );
    let error = kubectl.err_input(
        &["apply", "-f", "-"],
        Some(&crontab("Bad_Name", "image-a", 1)),
    );
    assert!(
        error.contains("The CronTab \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{error}"
    );
    // The schema: unknown fields refused under kubectl's strict validation, pruned without
    // it; a value of the wrong type refused.
    let unknown =
        crontab("pruned", "image-a", 1).replace("  replicas: 1\n", "  replicas: 1\n  unknown: 1\n");
    let error = kubectl.err_input(&["apply", "-f", "-"], Some(&unknown));
    assert!(
        error.contains("strict decoding error: unknown field \"spec.unknown\""),
        "{error}"
    );
    kubectl.ok_input(&["apply", "--validate=false", "-f", "-"], Some(&unknown));
    let spec = kubectl.ok(&["get", "ct", "pruned", "-o", "jsonpath={.spec}"]);
    assert!(
        !spec.contains("unknown") && spec.contains("image-a"),
        "{spec}"
    );
    let wrong = crontab("wrong", "image-a", 1).replace("replicas: 1", "replicas: three");
    let error = kubectl.err_input(&["apply", "-f", "-"], Some(&wrong));
    assert!(
        error.contains("spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\""),
        "{error}"
    );
    let error = kubectl.err_input(&["get", "ct", "nothing"], None);
    assert!(
        error.contains("crontabs.stable.example.com \"nothing\" not found"),
        "{error}"
    );

    // Deleting a custom resource, then the CRD: its objects go, its paths answer 404.
    let out = kubectl.ok(&["delete", "ct", "other"]);
    assert!(
        out.contains("crontab.stable.example.com \"other\" deleted"),
        "{out}"
    );
    // A watch of the custom resources ends when their CRD is deleted.
    let mut watch = kubectl
        .command(&[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs?watch=true",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl get --raw ?watch");
    sleep(Duration::from_millis(500)).await;
    assert!(
        watch.try_wait().expect("the watch's status").is_none(),
        "the watch ended before the CRD was deleted"
    );
    kubectl.ok(&["delete", "crd", "crontabs.stable.example.com"]);
    let deadline = Instant::now() + EVENT_WAIT;
    while watch.try_wait().expect("the watch's status").is_none() {
        assert!(Instant::now() < deadline, "the watch outlived its CRD");
        sleep(Duration::from_millis(100)).await;
    }
    let stored = server.etcdctl_ok(&[
        "get",
        "--keys-only",
        "--prefix",
        "/registry/stable.example.com/",
    ]);
    assert!(stored.trim().is_empty(), "{stored}");
    let error = kubectl.err_input(
        &[
            "get",
            "--raw",
            "/apis/stable.example.com/v1/namespaces/default/crontabs",
        ],
        None,
    );
    assert!(error.contains("NotFound"), "{error}");
    let groups = kubectl.ok(&["get", "--raw", "/apis"]);
    assert!(!groups.contains("stable.example.com"), "{groups}");
}

/// A Service with two ports, for applying twice.
const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
  - name: https
    port: 443
"#;

#[tokio::test]
async fn kubectl_explains_every_served_built_in_kind() {
    let server = start_server("explain-1").await;
    let kubectl = Kubectl::for_server(&server);
    kubectl
        .until(&["get", "namespace", "default"], READY, |_| true)
        .await;
    // Each built-in kind, then a nested field of it with its type.
    let kinds = [
        (
            "namespace",
            "Namespace",
            "namespace.status.phase",
            "phase\t<string>",
        ),
        (
            "configmap",
            "ConfigMap",
            "configmap.binaryData",
            "binaryData\t<map[string]string>",
        ),
        ("secret", "Secret", "secret.type", "type\t<string>"),
        (
            "node",
            "Node",
            "node.status.addresses",
            "addresses\t<[]Object>",
        ),
        (
            "node",
            "Node",
            "node.spec.taints.effect",
            "effect\t<string>",
        ),
        (
            "node",
            "Node",
            "node.status.nodeInfo.kubeletVersion",
            "kubeletVersion\t<string>",
        ),
        (
            "service",
            "Service",
            "service.spec.ports",
            "ports\t<[]Object>",
        ),
        (
            "service",
            "Service",
            "service.spec.ports.targetPort",
            "targetPort\t<IntOrString>",
        ),
        (
            "endpoints",
            "Endpoints",
            "endpoints.subsets.addresses.ip",
            "ip\t<string>",
        ),
        (
            "event",
            "Event",
            "event.involvedObject",
            "involvedObject\t<Object>",
        ),
        ("event", "Event", "event.count", "count\t<integer>"),
        (
            "serviceaccount",
            "ServiceAccount",
            "serviceaccount.secrets",
            "secrets\t<[]Object>",
        ),
        (
            "lease",
            "Lease",
            "lease.spec.holderIdentity",
            "holderIdentity\t<string>",
        ),
        (
            "lease",
            "Lease",
            "lease.spec.renewTime",
            "renewTime\t<string>",
        ),
        (
            "crd",
            "CustomResourceDefinition",
            "crd.spec.names.kind",
            "kind\t<string>",
        ),
        (
            "crd",
            "CustomResourceDefinition",
            "crd.spec.versions",
            "versions\t<[]Object>",
        ),
    ];
    for (resource, kind, field, typed) in kinds {
        let explained = kubectl.ok(&["explain", resource]);
        assert!(
            explained.contains(&format!("KIND:       {kind}")) && explained.contains("FIELDS:"),
            "{explained}"
        );
        let explained = kubectl.ok(&["explain", field]);
        let name = field.rsplit('.').next().unwrap_or(field);
        assert!(
            explained.contains(&format!("FIELD: {}", typed.replace('\t', " ")))
                && explained.contains("DESCRIPTION:")
                && name == typed.split('\t').next().unwrap_or(""),
            "{explained}"
        );
    }
    let recursive = kubectl.ok(&["explain", "nodes", "--recursive"]);
    assert!(
        recursive.contains("podCIDR\t<string>")
            && recursive.contains("addresses\t<[]Object>")
            && recursive.contains("lastHeartbeatTime\t<string>"),
        "{recursive}"
    );

    // The schemas leave apply as it was (kubectl builds its patch from its own types, as no
    // PATCH declares a body): created, then configured.
    let out = kubectl.apply(SERVICE);
    assert!(out.contains("service/web created"), "{out}");
    let out = kubectl.apply(&SERVICE.replace("app: web", "app: web-2"));
    assert!(out.contains("service/web configured"), "{out}");
    let path = "jsonpath={.spec.selector.app} {.spec.ports[*].port}";
    let spec = kubectl.ok(&["get", "service", "web", "-o", path]);
    assert_eq!(spec, "web-2 80 443");
}

#[tokio::test]
async fn every_server_of_a_cluster_serves_the_same_custom_resources() {
    let first = start_server("crd-2").await;
    let kubectl = Kubectl::for_server(&first);
    apply_crd(&kubectl).await;
    kubectl.apply(&crontab("shared", "image-a", 1));

    let mut second = K3rsServer::new("127.0.0.2", "crd-3", Ports::pick());
    let token_file = first.token_file().display().to_string();
    second.start(&[
        "--server",
        &first.supervisor_url(),
        "--token-file",
        &token_file,
    ]);
    second.wait_healthy(READY).await;
    let mut on_second = Kubectl::for_server(&first);
    on_second.server_url = Some(second.supervisor_url());
    let image = on_second
        .until(
            &["get", "ct", "shared", "-o", "jsonpath={.spec.image}"],
            READY,
            |out| !out.is_empty(),
        )
        .await;
    assert_eq!(image, "image-a");

    // A CRD created through the second server is served by the first at once.
    let widgets = CRD
        .replace("crontabs", "widgets")
        .replace("crontab", "widget")
        .replace("CronTab", "Widget")
        .replace("[ct]", "[wd]")
        .replace("scope: Namespaced", "scope: Cluster");
    // Two versions: v1 stored and preferred, v1beta1 served too.
    let version = &widgets[widgets.find("  - name: v1").expect("a version")..];
    let beta = version
        .replace("name: v1", "name: v1beta1")
        .replace("storage: true", "storage: false");
    on_second.apply(&format!("{widgets}{beta}"));
    let widget = "apiVersion: stable.example.com/v1beta1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  replicas: 7\n";
    let out = kubectl.apply(widget);
    assert!(
        out.contains("widget.stable.example.com/w1 created"),
        "{out}"
    );
    let table = on_second.ok(&["get", "widgets", "--no-headers"]);
    assert!(table.starts_with("w1 "), "{table}");
    let version = on_second.ok(&[
        "get",
        "widgets.v1.stable.example.com",
        "w1",
        "-o",
        "jsonpath={.apiVersion}",
    ]);
    assert_eq!(version, "stable.example.com/v1");
    let group = on_second.ok(&["get", "--raw", "/apis/stable.example.com"]);
    let group: serde_json::Value = serde_json::from_str(&group).expect("an APIGroup");
    assert_eq!(group["preferredVersion"]["version"], "v1", "{group}");
    assert_eq!(group["versions"][1]["version"], "v1beta1", "{group}");

    // Deleting the CRD on the first stops the second serving it.
    kubectl.ok(&["delete", "crd", "widgets.stable.example.com"]);
    let error = on_second.err_input(
        &["get", "--raw", "/apis/stable.example.com/v1/widgets"],
        None,
    );
    assert!(error.contains("NotFound"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_snapshot_files_follow_saves_and_deletes() {
    let s3 = S3Server::start(&["k3rs-backups"]).await;
    let server = start_server("crd-4").await;
    let kubectl = Kubectl::for_server(&server);
    kubectl
        .until(
            &["get", "crd", "etcdsnapshotfiles.k3s.cattle.io"],
            READY,
            |_| true,
        )
        .await;
    let name = save(&server, &[]);
    let table = kubectl
        .until(&["get", "etcdsnapshotfiles"], EVENT_WAIT, |out| {
            out.contains(&name)
        })
        .await;
    let lines: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "NAME",
            "SNAPSHOTNAME",
            "NODE",
            "LOCATION",
            "SIZE",
            "CREATIONTIME"
        ],
        "{table}"
    );
    let row = &lines[1];
    assert!(row[0].starts_with(&format!("local-{name}-")), "{table}");
    assert_eq!(&row[1..3], [name.as_str(), "crd-4"], "{table}");
    assert!(
        row[3].starts_with("file:///") && row[3].ends_with(&name),
        "{table}"
    );
    let size: u64 = row[4].parse().expect("a size");
    assert!(size > 0, "{table}");
    let ready = kubectl.ok(&[
        "get",
        "etcdsnapshotfiles",
        row[0],
        "-o",
        "jsonpath={.status.readyToUse} {.spec.nodeName}",
    ]);
    assert_eq!(ready, "true crd-4");

    snapshot_ok(&server, &["delete", &name]);
    kubectl
        .until(
            &["get", "etcdsnapshotfiles", "-o", "name"],
            EVENT_WAIT,
            |out| !out.contains(&name.to_lowercase()),
        )
        .await;

    // A save to S3 too: one object for the file, one for the S3 copy (node "s3").
    let flags = s3.flags("k3rs-backups", "cluster-a");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let name = save(&server, &flags);
    let listed = kubectl
        .until(
            &[
                "get",
                "etcdsnapshotfiles",
                "-o",
                "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.spec.location} {.spec.s3.bucket}{\"\\n\"}{end}",
            ],
            EVENT_WAIT,
            |out| out.lines().filter(|line| line.contains(&name)).count() == 2,
        )
        .await;
    let s3_line = listed
        .lines()
        .find(|line| line.starts_with("s3-"))
        .unwrap_or_else(|| panic!("no S3 object: {listed}"));
    let cells: Vec<&str> = s3_line.split(' ').collect();
    assert_eq!(
        &cells[1..],
        [
            "s3",
            &format!("s3://k3rs-backups/cluster-a/{name}"),
            "k3rs-backups"
        ],
        "{listed}"
    );
    let mut delete = vec!["delete", name.as_str()];
    delete.extend_from_slice(&flags);
    snapshot_ok(&server, &delete);
    kubectl
        .until(
            &["get", "etcdsnapshotfiles", "-o", "name"],
            EVENT_WAIT,
            |out| out.trim().is_empty(),
        )
        .await;
}
