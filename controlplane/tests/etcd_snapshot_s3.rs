//! Snapshots in S3 and compressed snapshots: `k3rs etcd-snapshot save|ls|delete|prune` with
//! the `--s3*` flags, `k3rs server --etcd-s3*`, and `--cluster-reset-restore-path NAME` from
//! S3, against a real S3-compatible server (s3s-fs) on 127.0.0.1. Every wait is bounded.

mod common;

use std::io::Read;
use std::time::Duration;

use common::k3rs_server::{K3rsServer, Ports};
use common::s3_server::S3Server;
use common::snapshot_cli::{
    first_server, list_json, save, snapshot_cli, snapshot_dir, snapshot_ok, READY, RESET_TIMEOUT,
};
use tokio::time::{sleep, Instant};

const BUCKET: &str = "k3rs-backups";

/// `args` followed by `flags`, as the `&str`s the helpers take.
fn with<'a>(args: &[&'a str], flags: &'a [String]) -> Vec<&'a str> {
    args.iter()
        .copied()
        .chain(flags.iter().map(String::as_str))
        .collect()
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_saved_to_s3_is_listed_on_every_server_and_restores_from_s3() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let flags = s3.flags(BUCKET, "cluster-a");
    let ports = Ports::pick();
    let mut first = K3rsServer::new("127.0.0.1", "node-1", ports);
    first.start(&["--cluster-init", "--etcd-disable-snapshots"]);
    first.wait_healthy(READY).await;
    let token_file = first.token_file().display().to_string();
    let mut second = K3rsServer::new("127.0.0.2", "node-2", ports);
    second.start(&[
        "--server",
        &first.supervisor_url(),
        "--token-file",
        &token_file,
        "--etcd-disable-snapshots",
    ]);
    second.wait_healthy(READY).await;
    for n in 0..200 {
        first.etcdctl_ok(&[
            "put",
            &format!("/registry/configmaps/default/cm-{n:03}"),
            &"v".repeat(n),
        ]);
    }
    let revision_line =
        first.etcdctl_ok(&["get", "/registry/configmaps/default/cm-199", "-w", "fields"]);

    // Saved compressed, locally and in S3, while a client keeps writing: the same bytes in
    // both places.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let endpoint = second.client_url();
        let certs = second.tls_file("etcd/client.crt");
        let key = second.tls_file("etcd/client.key");
        let ca = second.tls_file("etcd/server-ca.crt");
        std::thread::spawn(move || {
            let mut written = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && written < 500 {
                let status = std::process::Command::new("etcdctl")
                    .env("ETCDCTL_API", "3")
                    .args(["--endpoints", &endpoint, "--command-timeout=10s"])
                    .arg(format!("--cacert={}", ca.display()))
                    .arg(format!("--cert={}", certs.display()))
                    .arg(format!("--key={}", key.display()))
                    .args(["put", &format!("/load/{written:04}"), "x"])
                    .output()
                    .expect("etcdctl");
                assert!(status.status.success(), "{}", stderr_of(&status));
                written += 1;
            }
            written
        })
    };
    let output = snapshot_ok(&first, &with(&["save", "--snapshot-compress"], &flags));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let load_writes = writer.join().expect("the writer");
    assert!(load_writes > 0);
    let name = output
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("Snapshot "))
        .and_then(|rest| rest.strip_suffix(" saved."))
        .unwrap_or_else(|| panic!("{output}"))
        .to_string();
    assert!(
        name.starts_with("on-demand-node-1-") && name.ends_with(".zip"),
        "{name}"
    );
    assert!(
        output.contains(&format!(
            "Snapshot {name} uploaded to s3://{BUCKET}/cluster-a/{name}."
        )),
        "{output}"
    );
    let local = std::fs::read(snapshot_dir(&first).join(&name)).expect("local file");
    let remote =
        std::fs::read(s3.object_path(BUCKET, &format!("cluster-a/{name}"))).expect("object");
    assert_eq!(local, remote, "the object is the local file");
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&local)).expect("a zip file");
    assert_eq!(archive.len(), 1);
    let mut entry = archive.by_index(0).expect("one entry");
    assert_eq!(entry.name().expect("name"), name.trim_end_matches(".zip"));
    let mut inner = Vec::new();
    entry.read_to_end(&mut inner).expect("inflates");
    assert!(
        inner.len() > local.len(),
        "compressed: {} < {}",
        local.len(),
        inner.len()
    );

    // ls on the other server, without S3 flags, lists both copies from the records.
    let deadline = Instant::now() + READY;
    let locations = loop {
        let mut locations: Vec<String> = list_json(&second)
            .into_iter()
            .filter(|entry| entry["name"] == name.as_str())
            .map(|entry| {
                assert_eq!(entry["node"], "node-1", "{entry}");
                assert_eq!(entry["compressed"], true, "{entry}");
                assert_eq!(entry["size"].as_u64(), Some(local.len() as u64), "{entry}");
                entry["location"].as_str().expect("location").to_string()
            })
            .collect();
        locations.sort();
        if locations.len() == 2 {
            break locations;
        }
        assert!(
            Instant::now() < deadline,
            "{name} not listed twice on node-2: {locations:?}"
        );
        sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        locations,
        [
            format!("file://{}", snapshot_dir(&first).join(&name).display()),
            format!("s3://{BUCKET}/cluster-a/{name}")
        ]
    );

    // Restore from S3 by name onto a fresh data dir: every key at its revision.
    let token = std::fs::read_to_string(first.token_file()).expect("token");
    first.kill9();
    second.kill9();
    let mut restored = K3rsServer::new("127.0.0.1", "restored", Ports::pick());
    let reset_args = with(
        &[
            "--cluster-reset",
            "--cluster-reset-restore-path",
            &name,
            "--token",
            token.trim(),
        ],
        &flags,
    );
    restored.start(&reset_args);
    let status = restored.wait_exit(RESET_TIMEOUT).await;
    assert!(
        status.success(),
        "restore from S3 failed: {}",
        restored.logs()
    );
    assert!(
        snapshot_dir(&restored).join(&name).is_file(),
        "the download is kept in the snapshot directory"
    );
    restored.start(&[]);
    restored.wait_healthy(READY).await;
    let listed = restored.etcdctl_ok(&["get", "/registry/configmaps/", "--prefix", "--keys-only"]);
    assert_eq!(
        listed.lines().filter(|line| !line.is_empty()).count(),
        200,
        "{listed}"
    );
    let value = restored.etcdctl_ok(&[
        "get",
        "/registry/configmaps/default/cm-150",
        "--print-value-only",
    ]);
    assert_eq!(value.trim(), "v".repeat(150));
    let after =
        restored.etcdctl_ok(&["get", "/registry/configmaps/default/cm-199", "-w", "fields"]);
    let mod_revision = |fields: &str| {
        fields
            .lines()
            .find(|line| line.starts_with("\"ModRevision\""))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{fields}"))
    };
    assert_eq!(mod_revision(&after), mod_revision(&revision_line));
}

#[tokio::test]
async fn large_snapshots_go_up_in_parts_and_s3_retention_keeps_the_newest() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let flags = s3.flags(BUCKET, "");
    let server = first_server("node-1", &[]).await;
    // ~21 MiB of incompressible values: more than one 16 MiB part.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for n in 0..15 {
        let value: String = (0..1_400_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'!' + (seed % 90) as u8)
            })
            .collect();
        let file = tempfile::NamedTempFile::new().expect("value file");
        std::fs::write(file.path(), &value).expect("write");
        let output = server.etcdctl_put_file(&format!("/big/{n:02}"), file.path());
        assert!(output.status.success(), "{}", stderr_of(&output));
    }
    let first = save(&server, &with(&[], &flags));
    let local = std::fs::metadata(snapshot_dir(&server).join(&first))
        .expect("file")
        .len();
    assert!(local > 16 << 20, "the snapshot is {local} bytes");
    let object = s3.object_path(BUCKET, &first);
    assert_eq!(
        std::fs::read(&object).expect("object"),
        std::fs::read(snapshot_dir(&server).join(&first)).expect("file"),
        "the parts put together are the file"
    );
    let second = save(&server, &with(&[], &flags));
    let third = save(&server, &with(&[], &flags));
    assert_eq!(
        s3.objects(BUCKET, ""),
        [first.clone(), second.clone(), third.clone()]
    );

    let pruned = snapshot_ok(
        &server,
        &with(
            &["prune", "--snapshot-retention", "3", "--s3-retention", "1"],
            &flags,
        ),
    );
    assert!(
        pruned.contains(&format!("Snapshot {first} pruned from s3://")),
        "{pruned}"
    );
    assert!(
        pruned.contains(&format!("Snapshot {second} pruned from s3://")),
        "{pruned}"
    );
    assert_eq!(
        s3.objects(BUCKET, ""),
        std::slice::from_ref(&third),
        "S3 keeps the newest one"
    );
    assert_eq!(
        common::sorted_entries(&snapshot_dir(&server)),
        [first.clone(), second.clone(), third.clone()],
        "local retention 3 keeps all three files"
    );

    // delete with S3 flags removes both copies.
    let deleted = snapshot_ok(&server, &with(&["delete", &third], &flags));
    assert!(
        deleted.contains(&format!("Snapshot {third} deleted.")),
        "{deleted}"
    );
    assert!(
        deleted.contains(&format!("Snapshot {third} deleted from s3://")),
        "{deleted}"
    );
    assert!(s3.objects(BUCKET, "").is_empty());
    assert!(!snapshot_dir(&server).join(&third).exists());
}

#[tokio::test]
async fn s3_down_a_wrong_key_or_a_missing_bucket_is_refused_and_local_snapshots_stay() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let server = first_server("node-1", &[]).await;
    server.etcdctl_ok(&["put", "/registry/k", "v"]);

    // A wrong secret key: the snapshot is kept locally, the upload named as failed.
    let mut wrong_key = s3.flags(BUCKET, "");
    let secret = wrong_key
        .iter()
        .position(|flag| flag == "--etcd-s3-secret-key")
        .expect("flag");
    wrong_key[secret + 1] = "not-the-secret".to_string();
    let output = snapshot_cli(&server, &with(&["save"], &wrong_key));
    let stderr = stderr_of(&output);
    assert!(
        !output.status.success(),
        "a failed upload fails the command"
    );
    assert!(stderr.contains("refused the credentials"), "{stderr}");
    assert!(
        stderr.contains("saved locally but not uploaded"),
        "{stderr}"
    );
    assert_eq!(
        common::sorted_entries(&snapshot_dir(&server)).len(),
        1,
        "kept locally"
    );
    let failed: Vec<_> = list_json(&server)
        .into_iter()
        .filter(|entry| entry["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0]["location"]
        .as_str()
        .expect("location")
        .starts_with("s3://"));

    // A bucket that does not exist.
    let output = snapshot_cli(&server, &with(&["save"], &s3.flags("no-such-bucket", "")));
    let stderr = stderr_of(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("does not exist"), "{stderr}");

    // S3 not running at all.
    let mut down = s3.flags(BUCKET, "");
    let endpoint = down
        .iter()
        .position(|flag| flag == "--etcd-s3-endpoint")
        .expect("flag");
    down[endpoint + 1] = format!("127.0.0.1:{}", common::free_port());
    let output = snapshot_cli(&server, &with(&["save", "--s3-timeout", "20s"], &down));
    let stderr = stderr_of(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot reach S3"), "{stderr}");
    assert_eq!(
        common::sorted_entries(&snapshot_dir(&server)).len(),
        3,
        "each save kept locally"
    );
    assert!(s3.objects(BUCKET, "").is_empty(), "nothing was uploaded");

    // A name S3 does not have: the restore refuses and the old data stays.
    let token = std::fs::read_to_string(server.token_file()).expect("token");
    let flags = s3.flags(BUCKET, "");
    let mut other = K3rsServer::new("127.0.0.1", "other", Ports::pick());
    other.start(&with(
        &[
            "--cluster-reset",
            "--cluster-reset-restore-path",
            "on-demand-node-1-1",
            "--token",
            token.trim(),
        ],
        &flags,
    ));
    let status = other.wait_exit(RESET_TIMEOUT).await;
    assert!(!status.success());
    assert!(
        other.logs().contains("no such snapshot in S3"),
        "{}",
        other.logs()
    );
    assert!(
        !other
            .data_dir()
            .join("server")
            .join("db")
            .join("etcd")
            .exists(),
        "nothing restored"
    );
}

#[tokio::test]
async fn a_server_with_etcd_s3_uploads_every_snapshot_and_ls_follows_the_bucket() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let flags = s3.flags(BUCKET, "backups");
    let server = first_server(
        "node-1",
        &with(
            &["--etcd-disable-snapshots", "--etcd-snapshot-compress"],
            &flags,
        ),
    )
    .await;
    server.etcdctl_ok(&["put", "/registry/k", "v"]);

    // No S3 flags on the command line: the server's own setting applies.
    let name = save(&server, &[]);
    assert!(
        name.ends_with(".zip"),
        "{name}: --etcd-snapshot-compress is the server's default"
    );
    assert_eq!(s3.objects(BUCKET, "backups"), std::slice::from_ref(&name));

    // An object another cluster put there is listed; a deleted object drops out of ls.
    let foreign = "etcd-snapshot-elsewhere-1700000000";
    std::fs::write(s3.object_path(BUCKET, &format!("backups/{foreign}")), b"x").expect("object");
    let listed = list_json(&server);
    let location = |name: &str| format!("s3://{BUCKET}/backups/{name}");
    let locations: Vec<&str> = listed
        .iter()
        .map(|entry| entry["location"].as_str().expect("location"))
        .collect();
    assert!(
        locations.contains(&location(foreign).as_str()),
        "{listed:?}"
    );
    assert!(locations.contains(&location(&name).as_str()), "{listed:?}");
    std::fs::remove_file(s3.object_path(BUCKET, &format!("backups/{name}"))).expect("remove");
    let listed = list_json(&server);
    assert!(
        !listed
            .iter()
            .any(|entry| entry["location"] == location(&name).as_str()),
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|entry| entry["location"]
            .as_str()
            .is_some_and(|l| l.starts_with("file://"))),
        "the local copy stays listed: {listed:?}"
    );

    // delete of a name only in S3.
    let output = snapshot_ok(&server, &["delete", foreign]);
    assert!(
        output.contains(&format!("Snapshot {foreign} deleted from s3://")),
        "{output}"
    );
    assert!(s3.objects(BUCKET, "backups").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_trusted_through_its_ca_or_not_at_all() {
    let s3 = S3Server::start(&[BUCKET]).await;
    let https = common::s3_server::TlsFront::start(&s3).await;
    let server = first_server("node-1", &[]).await;
    server.etcdctl_ok(&["put", "/registry/k", "v"]);
    // The plain-HTTP flags pointed at the HTTPS front instead.
    let mut flags: Vec<String> = s3
        .flags(BUCKET, "")
        .into_iter()
        .filter(|flag| flag != "--etcd-s3-insecure")
        .collect();
    let endpoint = flags
        .iter()
        .position(|flag| flag == "--etcd-s3-endpoint")
        .expect("flag");
    flags[endpoint + 1] = https.endpoint();

    // Its CA is no public one: refused without --s3-endpoint-ca.
    let output = snapshot_cli(&server, &with(&["save"], &flags));
    let stderr = stderr_of(&output);
    assert!(!output.status.success());
    assert!(stderr.contains("cannot reach S3 at https://"), "{stderr}");
    assert!(s3.objects(BUCKET, "").is_empty());

    // With its CA, uploaded over HTTPS.
    let ca = https.ca_file.display().to_string();
    let name = save(&server, &with(&["--s3-endpoint-ca", &ca], &flags));
    assert_eq!(s3.objects(BUCKET, ""), std::slice::from_ref(&name));

    // --s3-skip-ssl-verify trusts any certificate.
    let second = save(&server, &with(&["--s3-skip-ssl-verify"], &flags));
    assert_eq!(s3.objects(BUCKET, ""), [name, second]);
}
