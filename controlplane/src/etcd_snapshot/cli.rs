//! `k3rs etcd-snapshot save|ls|delete|prune`: asks the running server, as `k3s etcd-snapshot`
//! does, over its supervisor port.
//!
//! Guarantees: the server is trusted only once its `/cacerts` matches the CA the token pins
//! (a bare secret pins nothing, and a warning says so), and the request carries the token's
//! secret; a server that is not running, a refused token, or names that do not exist each end
//! the command with a message saying what to do and a non-zero exit status. Results go to
//! stdout, problems to stderr.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Subcommand, ValueEnum};

use super::api::{SnapshotRequest, SnapshotResponse, SNAPSHOT_PATH};
use super::records::{SnapshotRecord, SnapshotStatus};
use super::s3_config::S3Args;
use crate::join::SupervisorClient;
use crate::token::{self, Token};

/// How long the server may take to answer (a save of a large store takes a while).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// `k3rs etcd-snapshot`.
#[derive(Debug, clap::Args)]
pub struct EtcdSnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot now, on the server.
    Save(SaveArgs),
    /// List the cluster's snapshots.
    #[command(visible_aliases = ["list", "l"])]
    Ls(ListArgs),
    /// Delete snapshots of the server (file and record).
    Delete(DeleteArgs),
    /// Remove the server's oldest snapshots of a name beyond the retention.
    Prune(PruneArgs),
}

/// The flags every subcommand takes.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// Load configuration from FILE, then FILE.d/*.yaml, as `k3rs server` does (keys of other
    /// commands are ignored) [default: /etc/rancher/k3rs/config.yaml].
    #[arg(long, short = 'c', env = "K3RS_CONFIG_FILE", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Folder holding the server's state (for its token) [default: /var/lib/rancher/k3rs as
    /// root, ~/.rancher/k3rs otherwise].
    #[arg(long, short = 'd', env = "K3RS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// The node name of the server; refused when the server at --etcd-server is another.
    #[arg(long, env = "K3RS_NODE_NAME")]
    pub node_name: Option<String>,

    /// The server's supervisor URL.
    #[arg(
        long,
        env = "K3RS_ETCD_SERVER",
        default_value = "https://127.0.0.1:6443"
    )]
    pub etcd_server: String,

    /// The cluster token [default: read from <data-dir>/server/token].
    #[arg(long, env = "K3RS_ETCD_TOKEN", hide_env_values = true)]
    pub etcd_token: Option<String>,

    /// S3 for this operation (the server's own --etcd-s3 setting is used when not given).
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, clap::Args)]
pub struct SaveArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Base name of the snapshot (the file is <name>-<node>-<unix time>).
    #[arg(long, default_value = "on-demand")]
    pub name: String,
    /// Directory on the server to save to [default: the server's snapshot directory].
    #[arg(long, alias = "etcd-snapshot-dir", env = "K3RS_ETCD_SNAPSHOT_DIR")]
    pub dir: Option<PathBuf>,
    /// Compress the snapshot (a zip with one entry, `.zip` suffix).
    #[arg(
        long,
        alias = "etcd-snapshot-compress",
        env = "K3RS_ETCD_SNAPSHOT_COMPRESS"
    )]
    pub snapshot_compress: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Names of the snapshots to delete (as `ls` shows them).
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Base name of the snapshots to prune.
    #[arg(long, default_value = "on-demand")]
    pub name: String,
    /// Number of snapshots of that name to keep.
    #[arg(long, alias = "etcd-snapshot-retention", env = "K3RS_ETCD_SNAPSHOT_RETENTION",
          default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub snapshot_retention: u32,
    /// Directory on the server holding the snapshots [default: the server's snapshot
    /// directory].
    #[arg(long, alias = "etcd-snapshot-dir", env = "K3RS_ETCD_SNAPSHOT_DIR")]
    pub dir: Option<PathBuf>,
}

/// Runs the subcommand and prints its outcome.
pub async fn run(args: EtcdSnapshotArgs) -> Result<()> {
    match args.command {
        SnapshotCommand::Save(args) => {
            let request = SnapshotRequest::Save {
                name: args.name,
                dir: args.dir.map(absolute).transpose()?,
                node_name: args.common.node_name.clone(),
                // Not given: the server's --etcd-snapshot-compress decides.
                compress: args.snapshot_compress.then_some(true),
                s3: args.common.s3.config()?,
            };
            let response = ask(&args.common, &request).await?;
            for record in &response.snapshots {
                if record.is_s3() {
                    println!("Snapshot {} uploaded to {}.", record.name, record.location);
                } else {
                    println!("Snapshot {} saved.", record.name);
                }
            }
            fail_on_errors(
                &response,
                "the snapshot was saved but not uploaded to S3".into(),
            )
        }
        SnapshotCommand::Ls(args) => {
            let request = SnapshotRequest::List {
                node_name: args.common.node_name.clone(),
                s3: args.common.s3.config()?,
            };
            let response = ask(&args.common, &request).await?;
            let text = render(&response.snapshots, args.output)?;
            std::io::stdout()
                .write_all(text.as_bytes())
                .context("writing the list")
        }
        SnapshotCommand::Delete(args) => {
            let request = SnapshotRequest::Delete {
                names: args.names,
                node_name: args.common.node_name.clone(),
                s3: args.common.s3.config()?,
            };
            let response = ask(&args.common, &request).await?;
            for record in &response.snapshots {
                if record.is_s3() {
                    println!("Snapshot {} deleted from {}.", record.name, record.location);
                } else {
                    println!("Snapshot {} deleted.", record.name);
                }
            }
            let failed = response.errors.len();
            fail_on_errors(
                &response,
                format!("{failed} of the snapshots named were not deleted"),
            )
        }
        SnapshotCommand::Prune(args) => {
            let request = SnapshotRequest::Prune {
                name: args.name,
                retention: args.snapshot_retention as usize,
                dir: args.dir.map(absolute).transpose()?,
                node_name: args.common.node_name.clone(),
                s3: args.common.s3.config()?,
            };
            let response = ask(&args.common, &request).await?;
            for record in &response.snapshots {
                if record.is_s3() {
                    println!("Snapshot {} pruned from {}.", record.name, record.location);
                } else {
                    println!("Snapshot {} pruned.", record.name);
                }
            }
            Ok(())
        }
    }
}

/// Prints the response's errors and fails when there are any.
fn fail_on_errors(response: &SnapshotResponse, failure: String) -> Result<()> {
    for error in &response.errors {
        eprintln!("k3rs: {error}");
    }
    if response.errors.is_empty() {
        Ok(())
    } else {
        bail!(failure)
    }
}

/// A directory given on this machine's command line, made absolute for the server.
fn absolute(dir: PathBuf) -> Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir);
    }
    let cwd = std::env::current_dir().context("reading the current directory for --dir")?;
    Ok(cwd.join(dir))
}

/// The token: `--etcd-token`, else the server's token file.
fn token_of(common: &CommonArgs) -> Result<Token> {
    if let Some(text) = common
        .etcd_token
        .as_deref()
        .filter(|t| !t.trim().is_empty())
    {
        return Token::parse(text).context("reading --etcd-token");
    }
    let data_dir = common
        .data_dir
        .clone()
        .unwrap_or_else(crate::cli::default_data_dir);
    let path = data_dir.join("server").join("token");
    token::read_token_file(&path).with_context(|| {
        format!(
            "no --etcd-token given and the server's token file {} cannot be read: give \
             --etcd-token (or K3RS_ETCD_TOKEN), or the server's --data-dir, or run as the \
             user running the server",
            path.display()
        )
    })
}

/// Sends `request` to the server of `common` and returns its answer, its warnings printed.
async fn ask(common: &CommonArgs, request: &SnapshotRequest) -> Result<SnapshotResponse> {
    let token = token_of(common)?;
    let url = common.etcd_server.trim_end_matches('/').to_string();
    let (client, _) = SupervisorClient::connect(&url, token)
        .await
        .map_err(|error| explain_unreachable(&url, error))?;
    let response: SnapshotResponse = client
        .post_json(SNAPSHOT_PATH, request, OPERATION_TIMEOUT)
        .await
        .map_err(|error| explain_unreachable(&url, error))?;
    for warning in &response.warnings {
        eprintln!("k3rs: warning: {warning}");
    }
    Ok(response)
}

/// Says "is the server running" when `error` is a failure to connect at all.
fn explain_unreachable(url: &str, error: anyhow::Error) -> anyhow::Error {
    use std::io::ErrorKind;
    let unreachable = error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::ConnectionReset
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::TimedOut
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            )
        })
    });
    if unreachable {
        anyhow!("cannot reach {url}: is k3rs server running on {url}? (set --etcd-server to its supervisor URL): {error:#}")
    } else {
        error
    }
}

/// The list as `-o` asks.
fn render(records: &[SnapshotRecord], format: OutputFormat) -> Result<String> {
    match format {
        OutputFormat::Json => {
            let mut text = serde_json::to_string_pretty(records).context("encoding JSON")?;
            text.push('\n');
            Ok(text)
        }
        OutputFormat::Yaml => serde_yaml::to_string(records).context("encoding YAML"),
        OutputFormat::Table => Ok(table(records)),
    }
}

/// `Name Location Size Created` in aligned columns, as k3s prints them; a failed snapshot
/// shows `failed` as its size and its reason on the next line.
fn table(records: &[SnapshotRecord]) -> String {
    let rows: Vec<[String; 4]> = std::iter::once([
        "Name".to_string(),
        "Location".to_string(),
        "Size".to_string(),
        "Created".to_string(),
    ])
    .chain(records.iter().map(|record| {
        let size = match record.status {
            SnapshotStatus::Successful => record.size.to_string(),
            SnapshotStatus::Failed => "failed".to_string(),
        };
        [
            record.name.clone(),
            record.location.clone(),
            size,
            record.created_at.clone(),
        ]
    }))
    .collect();
    let mut widths = [0usize; 4];
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let mut text = String::new();
    for row in &rows {
        let line = format!(
            "{:<w0$} {:<w1$} {:<w2$} {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, size: u64, status: SnapshotStatus) -> SnapshotRecord {
        SnapshotRecord {
            name: name.to_string(),
            node: "n".to_string(),
            location: format!("file:///s/{name}"),
            size,
            created_at: "2026-11-28T18:00:00Z".to_string(),
            compressed: false,
            status,
            message: String::new(),
        }
    }

    #[test]
    fn the_table_has_k3s_columns_aligned() {
        let text = table(&[
            record("on-demand-n-1", 12345, SnapshotStatus::Successful),
            record("etcd-snapshot-n-2", 7, SnapshotStatus::Failed),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(header, ["Name", "Location", "Size", "Created"]);
        let first: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            first,
            [
                "on-demand-n-1",
                "file:///s/on-demand-n-1",
                "12345",
                "2026-11-28T18:00:00Z"
            ]
        );
        assert!(lines[2].contains("failed"), "{text}");
        let column = lines[0].find("Location").expect("column");
        assert_eq!(lines[1].find("file://"), Some(column));
    }

    #[test]
    fn json_and_yaml_list_every_field() {
        let records = [record("on-demand-n-1", 10, SnapshotStatus::Successful)];
        let json: Vec<SnapshotRecord> =
            serde_json::from_str(&render(&records, OutputFormat::Json).expect("json"))
                .expect("parses");
        assert_eq!(json, records);
        let yaml = render(&records, OutputFormat::Yaml).expect("yaml");
        assert!(yaml.contains("name: on-demand-n-1"), "{yaml}");
        assert!(yaml.contains("status: successful"), "{yaml}");
    }
}
