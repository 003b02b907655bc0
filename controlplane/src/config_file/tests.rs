use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

use super::*;
use crate::cli::{Cli, Command as Subcommand, ServerArgs};

fn strings(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("has a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// Expands and parses a `k3rs server` command line as `main` does.
fn server_args(args: &[&str]) -> (ServerArgs, Vec<String>) {
    let expanded = expand(strings(args), &Cli::command()).expect("expands");
    let matches = Cli::command()
        .try_get_matches_from(expanded.args)
        .expect("parses");
    match Cli::from_arg_matches(&matches).expect("converts").command {
        Subcommand::Server(args) => (*args, expanded.warnings),
        other => panic!("not a server command: {other:?}"),
    }
}

#[test]
fn later_files_win_appends_extend_and_the_command_line_wins_over_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    write(
        &config,
        "cluster-init: true\nnode-name: from-file\ntls-san:\n  - a.example\n  - b.example\n\
         https-listen-port: 7443\nsome-agent-flag: x\n",
    );
    // Name order: 10 before 20; `.txt` is not read.
    write(
        &dir.path().join("config.yaml.d/20-last.yaml"),
        "node-name: from-drop-in\n",
    );
    write(
        &dir.path().join("config.yaml.d/10-first.yaml"),
        "node-name: overridden-by-20\ntls-san+: [c.example]\n",
    );
    write(
        &dir.path().join("config.yaml.d/30-ignored.txt"),
        "node-name: no\n",
    );
    let config = config.to_str().expect("utf-8");

    let (args, warnings) = server_args(&["k3rs", "server", "--config", config]);
    assert!(args.cluster_init);
    assert_eq!(args.node_name.as_deref(), Some("from-drop-in"));
    assert_eq!(args.tls_san, ["a.example", "b.example", "c.example"]);
    assert_eq!(args.https_listen_port, 7443);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("some-agent-flag"), "{warnings:?}");

    let (args, _) = server_args(&[
        "k3rs",
        "server",
        "-c",
        config,
        "--node-name=typed",
        "--tls-san",
        "typed.example",
        "--https-listen-port",
        "8443",
    ]);
    assert_eq!(args.node_name.as_deref(), Some("typed"));
    assert_eq!(args.tls_san, ["typed.example"]);
    assert_eq!(args.https_listen_port, 8443);
    assert!(
        args.cluster_init,
        "keys not typed still come from the files"
    );
}

#[test]
fn booleans_accept_false_and_refuse_other_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    write(&config, "cluster-init: false\n");
    let config_text = config.to_str().expect("utf-8");
    let (args, _) = server_args(&["k3rs", "server", "--config", config_text]);
    assert!(!args.cluster_init);

    write(&config, "cluster-init: maybe\n");
    let err = expand(
        strings(&["k3rs", "server", "--config", config_text]),
        &Cli::command(),
    )
    .expect_err("maybe is not a boolean");
    assert!(err.to_string().contains("expected true or false"), "{err}");
}

#[test]
fn a_named_file_must_exist_and_must_be_a_yaml_mapping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.yaml");
    let missing = missing.to_str().expect("utf-8");
    let err = expand(
        strings(&["k3rs", "server", &format!("--config={missing}")]),
        &Cli::command(),
    )
    .expect_err("a named file must exist");
    assert!(err.to_string().contains("does not exist"), "{err}");

    let config = dir.path().join("config.yaml");
    write(&config, "- just\n- a list\n");
    let err = expand(
        strings(&["k3rs", "server", "-c", config.to_str().expect("utf-8")]),
        &Cli::command(),
    )
    .expect_err("a list is not a configuration");
    let message = format!("{err:#}");
    assert!(message.contains("config.yaml"), "{message}");
    assert!(message.contains("expected a mapping"), "{message}");

    write(&config, "node-name: [unclosed\n");
    let err = expand(
        strings(&["k3rs", "server", "-c", config.to_str().expect("utf-8")]),
        &Cli::command(),
    )
    .expect_err("broken YAML");
    assert!(format!("{err:#}").contains("not valid YAML"), "{err:#}");
}

#[test]
fn commands_without_a_config_flag_are_left_alone() {
    let args = strings(&["k3rs", "etcd", "--name", "x"]);
    let expanded = expand(args.clone(), &Cli::command()).expect("expands");
    assert_eq!(expanded.args, args);
}

#[test]
fn etcd_snapshot_subcommands_read_the_shared_file() {
    use crate::etcd_snapshot::cli::SnapshotCommand;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    write(
        &config,
        "data-dir: /srv/k3rs\ncluster-init: true\netcd-snapshot-retention: 3\nno-such-flag: x\n",
    );
    let config = config.to_str().expect("utf-8");
    let args = strings(&["k3rs", "etcd-snapshot", "prune", "--config", config]);
    let expanded = expand(args, &Cli::command()).expect("expands");
    // `cluster-init` is a server flag: no warning; an unknown key is still reported.
    assert_eq!(expanded.warnings.len(), 1, "{:?}", expanded.warnings);
    assert!(expanded.warnings[0].contains("no-such-flag"));
    let matches = Cli::command()
        .try_get_matches_from(expanded.args)
        .expect("parses");
    let Subcommand::EtcdSnapshot(snapshot) =
        Cli::from_arg_matches(&matches).expect("converts").command
    else {
        panic!("not etcd-snapshot");
    };
    let SnapshotCommand::Prune(prune) = snapshot.command else {
        panic!("not prune");
    };
    assert_eq!(
        prune.common.data_dir.as_deref(),
        Some(Path::new("/srv/k3rs"))
    );
    assert_eq!(prune.snapshot_retention, 3, "matched by its alias");

    // A flag typed under its own name wins over the file's alias.
    let args = strings(&[
        "k3rs",
        "etcd-snapshot",
        "prune",
        "-c",
        config,
        "--snapshot-retention",
        "7",
    ]);
    let expanded = expand(args, &Cli::command()).expect("expands");
    let matches = Cli::command()
        .try_get_matches_from(expanded.args)
        .expect("parses");
    let Subcommand::EtcdSnapshot(snapshot) =
        Cli::from_arg_matches(&matches).expect("converts").command
    else {
        panic!("not etcd-snapshot");
    };
    let SnapshotCommand::Prune(prune) = snapshot.command else {
        panic!("not prune");
    };
    assert_eq!(prune.snapshot_retention, 7);
}

#[test]
fn the_datastore_flags_come_from_the_config_file_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("config.yaml");
    write(
        &config,
        "datastore-endpoint: https://10.0.0.1:2379,https://10.0.0.2:2379\n\
         datastore-cafile: /etc/etcd/ca.crt\ndatastore-certfile: /etc/etcd/client.crt\n\
         datastore-keyfile: /etc/etcd/client.key\n",
    );
    let config = config.to_str().expect("utf-8");
    let (args, warnings) = server_args(&["k3rs", "server", "--config", config]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(
        args.datastore.datastore_endpoint.as_deref(),
        Some("https://10.0.0.1:2379,https://10.0.0.2:2379")
    );
    assert_eq!(
        args.datastore.datastore_cafile.as_deref(),
        Some(Path::new("/etc/etcd/ca.crt"))
    );
    assert_eq!(
        args.datastore.datastore_keyfile.as_deref(),
        Some(Path::new("/etc/etcd/client.key"))
    );
}
