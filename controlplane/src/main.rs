//! `k3rs`: a lightweight Kubernetes datastore and cluster manager with an embedded,
//! etcd-compatible store.
//!
//! Subcommands: `server` (k3s-style server with the embedded store, or an external etcd with
//! `--datastore-endpoint`), `etcd-snapshot` (save, list, delete and prune snapshots through a
//! running server), `etcd` (a standalone, drop-in etcd taking etcd's own flags) and `kubectl`
//! (the machine's kubectl with this cluster's admin kubeconfig).

mod bootstrap_seal;
mod bootstrap_store;
mod cli;
mod cluster_reset;
mod config_file;
mod datastore;
mod etcd_arg;
mod etcd_flags;
mod etcd_snapshot;
mod exposition;
mod external_server;
mod go_duration;
mod http_response;
mod join;
mod kube;
mod kubectl;
mod member;
mod member_metrics;
mod metrics_server;
mod pki;
mod progress;
mod remote_etcd;
mod server;
mod server_tls;
mod supervisor;
mod token;
mod urls;

use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,raft_rs=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = match parse_command_line() {
        Ok(cli) => cli,
        Err(err) => {
            eprintln!("k3rs: {err:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        cli::Command::Server(args) if args.datastore.is_external() => {
            external_server::run(*args).await
        }
        cli::Command::Server(args) if args.reset.requested() => {
            cluster_reset::run_server(*args).await
        }
        cli::Command::Server(args) => server::run(*args).await,
        cli::Command::EtcdSnapshot(args) => etcd_snapshot::cli::run(args).await,
        cli::Command::Etcd(args) => match args.into_member_settings() {
            Ok(settings) => member::run(settings, None).await,
            Err(err) => Err(err),
        },
        cli::Command::Kubectl(args) => kubectl::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("k3rs: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The command line with the configuration files and `--etcd-arg`s expanded; clap's own
/// errors (and `--help`) exit here as they would with `Cli::parse`.
fn parse_command_line() -> anyhow::Result<cli::Cli> {
    let command = cli::Cli::command();
    let expanded = config_file::expand(std::env::args_os().collect(), &command)?;
    let mut warnings = expanded.warnings;
    let args = etcd_arg::expand(expanded.args, &mut warnings)?;
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let matches = command
        .try_get_matches_from(args)
        .unwrap_or_else(|err| err.exit());
    Ok(cli::Cli::from_arg_matches(&matches).unwrap_or_else(|err| err.exit()))
}
