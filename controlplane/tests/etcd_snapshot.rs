//! `k3rs etcd-snapshot save|ls|delete|prune` against running `k3rs server`s, as k3s users run
//! it, and the scheduled snapshots of `k3rs server`. Every process is a real `k3rs`; every
//! wait is bounded.

mod common;

use std::path::Path;
use std::time::Duration;

use common::k3rs_server::{K3rsServer, Ports};
use common::snapshot_cli::{
    first_server, list_json, names_in, save, snapshot_cli, snapshot_dir, snapshot_ok, READY,
    RESET_TIMEOUT,
};
use tokio::time::{sleep, Instant};

#[tokio::test]
async fn saved_snapshots_are_listed_deleted_and_pruned_on_the_server() {
    let server = first_server("node-1", &[]).await;
    server.etcdctl_ok(&["put", "/registry/one", "1"]);
    let first = save(&server, &[]);
    assert!(first.starts_with("on-demand-node-1-"), "{first}");
    let second = save(&server, &[]);
    assert_ne!(first, second, "two saves in one second get two names");

    // ls lists both, with the size of their files, as a table and as JSON.
    let dir = snapshot_dir(&server);
    let table = snapshot_ok(&server, &["ls"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["Name", "Location", "Size", "Created"],
        "{table}"
    );
    for name in [&first, &second] {
        let size = std::fs::metadata(dir.join(name)).expect("file").len();
        assert!(size > 0);
        let row = lines
            .iter()
            .find(|line| line.starts_with(name.as_str()))
            .unwrap_or_else(|| panic!("{name} not in\n{table}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cells[1],
            format!("file://{}", dir.join(name).display()),
            "{row}"
        );
        assert_eq!(cells[2], size.to_string(), "{row}");
    }
    let listed = list_json(&server);
    assert_eq!(names_in(&listed), [first.clone(), second.clone()]);
    for entry in &listed {
        let name = entry["name"].as_str().expect("name");
        let size = std::fs::metadata(dir.join(name)).expect("file").len();
        assert_eq!(entry["size"].as_u64(), Some(size), "{entry}");
        assert_eq!(entry["node"], "node-1", "{entry}");
        assert_eq!(entry["status"], "successful", "{entry}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = |path: &Path| std::fs::metadata(path).expect("mode").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(&first)), 0o600);

    // delete: the file and the listing go; an unknown name is named, the others still go.
    let third = save(&server, &[]);
    let output = snapshot_cli(&server, &["delete", &first, "no-such-snapshot"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a missing name fails the command");
    assert!(
        stdout.contains(&format!("Snapshot {first} deleted.")),
        "{stdout}"
    );
    assert!(stderr.contains("no-such-snapshot"), "{stderr}");
    assert!(!dir.join(&first).exists());
    assert_eq!(
        names_in(&list_json(&server)),
        [second.clone(), third.clone()]
    );

    // prune with retention 1 keeps only the newest of this name.
    let other_name = save(&server, &["--name", "keep-me"]);
    let pruned = snapshot_ok(&server, &["prune", "--snapshot-retention", "1"]);
    assert!(
        pruned.contains(&format!("Snapshot {second} pruned.")),
        "{pruned}"
    );
    assert_eq!(
        names_in(&list_json(&server)),
        [other_name.clone(), third.clone()]
    );
    assert_eq!(common::sorted_entries(&dir), [other_name, third]);
}

#[tokio::test]
async fn a_saved_snapshot_restores_the_keys_written_before_it() {
    let mut source = first_server("node-1", &[]).await;
    source.etcdctl_ok(&["put", "/registry/before", "saved"]);
    let name = save(&source, &[]);
    source.etcdctl_ok(&["put", "/registry/after", "not-saved"]);
    let file = snapshot_dir(&source).join(&name);
    let file_arg = file.to_str().expect("utf-8 path").to_string();
    let token = std::fs::read_to_string(source.token_file()).expect("token file");
    source.kill9();

    let mut restored = K3rsServer::new("127.0.0.1", "restored", Ports::pick());
    restored.start(&[
        "--cluster-reset",
        "--cluster-reset-restore-path",
        &file_arg,
        "--token",
        token.trim(),
    ]);
    let status = restored.wait_exit(RESET_TIMEOUT).await;
    assert!(status.success(), "restore failed: {}", restored.logs());
    restored.start(&[]);
    restored.wait_healthy(READY).await;
    let before = restored.etcdctl_ok(&["get", "/registry/before", "--print-value-only"]);
    assert_eq!(before.trim(), "saved");
    let after = restored.etcdctl_ok(&["get", "/registry/after", "--print-value-only"]);
    assert_eq!(after.trim(), "", "a write after the save is not in it");
}

#[tokio::test]
async fn a_failed_save_is_recorded_and_a_vanished_file_is_no_longer_listed() {
    let server = first_server("node-1", &[]).await;
    let scratch = tempfile::tempdir().expect("tempdir");
    let not_a_dir = scratch.path().join("file");
    std::fs::write(&not_a_dir, b"x").expect("write");
    let bad_dir = not_a_dir.join("snapshots");
    let output = snapshot_cli(
        &server,
        &["save", "--dir", bad_dir.to_str().expect("utf-8")],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the save must fail");
    assert!(
        stderr.contains("creating the snapshot directory") && stderr.contains("Not a directory"),
        "{stderr}"
    );
    let listed = list_json(&server);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["status"], "failed", "{listed:?}");
    assert!(
        listed[0]["message"]
            .as_str()
            .is_some_and(|message| message.contains("Not a directory")),
        "{listed:?}"
    );
    let table = snapshot_ok(&server, &["ls"]);
    assert!(table.contains("failed"), "{table}");

    // A snapshot whose file was removed by hand drops out of ls (its record is removed).
    let name = save(&server, &[]);
    std::fs::remove_file(snapshot_dir(&server).join(&name)).expect("remove");
    let listed = list_json(&server);
    assert!(!names_in(&listed).contains(&name), "{listed:?}");
    let keys = server.etcdctl_ok(&["get", "/k3rs/etcd-snapshots/", "--prefix", "--keys-only"]);
    assert!(!keys.contains(&name), "{keys}");
}

#[tokio::test]
async fn a_wrong_token_or_no_server_is_refused_and_nothing_changes() {
    let mut server = first_server("node-1", &[]).await;
    let kept = save(&server, &[]);
    let dir = snapshot_dir(&server);
    let files = common::sorted_entries(&dir);
    for args in [
        vec!["save", "--etcd-token", "wrong-secret"],
        vec!["delete", kept.as_str(), "--etcd-token", "wrong-secret"],
        vec![
            "prune",
            "--snapshot-retention",
            "1",
            "--etcd-token",
            "wrong-secret",
        ],
        vec!["ls", "--etcd-token", "wrong-secret"],
    ] {
        let output = snapshot_cli(&server, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} must be refused");
        assert!(
            stderr.contains("the token was refused"),
            "{args:?}: {stderr}"
        );
    }
    assert_eq!(
        common::sorted_entries(&dir),
        files,
        "nothing written or removed"
    );
    assert_eq!(names_in(&list_json(&server)), [kept]);

    // Another node name than the server's: refused, naming both.
    let output = snapshot_cli(&server, &["save", "--node-name", "node-9"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("node-9") && stderr.contains("node-1"),
        "{stderr}"
    );
    assert_eq!(common::sorted_entries(&dir), files);

    server.kill9();
    let output = snapshot_cli(&server, &["ls"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "is k3rs server running on {}",
            server.supervisor_url()
        )),
        "{stderr}"
    );
}

#[tokio::test]
async fn scheduled_snapshots_fire_on_the_cron_and_keep_the_retention() {
    let server = first_server(
        "node-1",
        &[
            "--etcd-snapshot-schedule-cron",
            "* * * * *",
            "--etcd-snapshot-retention",
            "2",
            "--etcd-snapshot-name",
            "sched",
        ],
    )
    .await;
    let dir = snapshot_dir(&server);
    // Three saves need up to three minutes; each is followed by a prune to two.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let logs = server.logs();
        let saved = logs.matches("scheduled snapshot saved").count();
        let pruned = logs.matches("pruned by retention").count();
        if saved >= 3 && pruned >= saved - 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not three scheduled snapshots and their prunes in time:\n{logs}"
        );
        sleep(Duration::from_secs(1)).await;
    }
    let files = common::sorted_entries(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        assert!(file.starts_with("sched-node-1-"), "{files:?}");
    }
    let mut listed = names_in(&list_json(&server));
    listed.sort();
    assert_eq!(listed, files, "ls lists exactly the files kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_on_another_server_lists_the_snapshots_of_the_cluster() {
    let ports = Ports::pick();
    let mut first = K3rsServer::new("127.0.0.1", "node-1", ports);
    first.start(&["--cluster-init", "--etcd-disable-snapshots"]);
    first.wait_healthy(READY).await;
    let token_file = first.token_file().display().to_string();
    let url = first.supervisor_url();
    let mut second = K3rsServer::new("127.0.0.2", "node-2", ports);
    second.start(&[
        "--server",
        &url,
        "--token-file",
        &token_file,
        "--etcd-disable-snapshots",
    ]);
    second.wait_healthy(READY).await;

    let name = save(&first, &[]);
    let deadline = Instant::now() + READY;
    let entry = loop {
        let listed = list_json(&second);
        if let Some(entry) = listed
            .into_iter()
            .find(|entry| entry["name"] == name.as_str())
        {
            break entry;
        }
        assert!(Instant::now() < deadline, "{name} never listed on node-2");
        sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(entry["node"], "node-1", "{entry}");
    let size = std::fs::metadata(snapshot_dir(&first).join(&name))
        .expect("file")
        .len();
    assert_eq!(entry["size"].as_u64(), Some(size), "{entry}");

    // node-2 cannot delete node-1's file; it says whose it is and nothing changes.
    let output = snapshot_cli(&second, &["delete", &name]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("node-1"), "{stderr}");
    assert!(snapshot_dir(&first).join(&name).exists());
    assert_eq!(names_in(&list_json(&first)), [name]);
}
