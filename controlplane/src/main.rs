//! `k3rs`: a lightweight Kubernetes datastore and cluster manager with an embedded,
//! etcd-compatible store.
//!
//! Subcommands: `server` (k3s-style server with the embedded store) and `etcd` (a standalone,
//! drop-in etcd taking etcd's own flags).

mod cli;
mod cluster_reset;
mod etcd_flags;
mod go_duration;
mod join;
mod member;
mod pki;
mod server;
mod server_tls;
mod supervisor;
mod token;
mod urls;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,raft_rs=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Server(args) if args.reset.requested() => {
            cluster_reset::run_server(args).await
        }
        cli::Command::Server(args) => server::run(args).await,
        cli::Command::Etcd(args) => match args.into_member_settings() {
            Ok(settings) => member::run(settings, None).await,
            Err(err) => Err(err),
        },
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("k3rs: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
