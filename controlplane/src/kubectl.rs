//! `k3rs kubectl ARGS...`: the machine's `kubectl` pointed at this cluster, as `k3s kubectl`.
//!
//! Guarantees:
//! - Every argument reaches kubectl unchanged (except `--data-dir DIR`, which is k3rs's), and
//!   kubectl replaces this process (`exec`), so its output, exit code and signals are the
//!   user's as if it had been run directly.
//! - The kubeconfig: an explicit `--kubeconfig` argument or a non-empty `KUBECONFIG`
//!   variable wins and is left alone; else, with `--data-dir` (or `K3RS_DATA_DIR`),
//!   `<data-dir>/server/cred/admin.kubeconfig`; else `/etc/rancher/k3rs/k3rs.yaml` when it
//!   exists and is readable, then the default data dir's admin kubeconfig. A kubeconfig that
//!   none of these gives is reported with every path tried, and kubectl is not run.
//! - Without a `kubectl` on `PATH` the command fails with a message saying what to install.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Result};

/// Where k3s-style servers running as root write the admin kubeconfig.
pub const SYSTEM_KUBECONFIG: &str = "/etc/rancher/k3rs/k3rs.yaml";

/// `k3rs kubectl`: everything after it goes to kubectl.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub struct KubectlArgs {
    /// The arguments of kubectl (`--data-dir DIR` among them is k3rs's: the cluster whose
    /// admin kubeconfig to use).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..,
        value_name = "KUBECTL ARGS"
    )]
    pub args: Vec<OsString>,
}

/// Runs kubectl with `args`; returns only if it could not be started.
pub fn run(args: KubectlArgs) -> Result<()> {
    let (data_dir, args) = take_data_dir(args.args);
    let data_dir = data_dir.or_else(|| {
        std::env::var_os("K3RS_DATA_DIR")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
    });
    let Some(kubectl) = find_on_path("kubectl") else {
        bail!(
            "kubectl was not found on PATH: install kubectl (the Kubernetes command-line \
             tool, https://kubernetes.io/docs/tasks/tools/, or your distribution's kubectl \
             package), then run `k3rs kubectl` again"
        );
    };
    let mut command = std::process::Command::new(&kubectl);
    command.args(&args);
    if !names_kubeconfig(&args) && std::env::var_os("KUBECONFIG").is_none_or(|k| k.is_empty()) {
        command.env("KUBECONFIG", admin_kubeconfig(data_dir.as_deref())?);
    }
    let error = std::os::unix::process::CommandExt::exec(&mut command);
    bail!("running {}: {error}", kubectl.display())
}

/// The admin kubeconfig to use, as the module docs say.
fn admin_kubeconfig(data_dir: Option<&Path>) -> Result<PathBuf> {
    let in_data_dir = |dir: &Path| dir.join("server").join("cred").join("admin.kubeconfig");
    let candidates = match data_dir {
        Some(dir) => vec![in_data_dir(dir)],
        None => vec![
            PathBuf::from(SYSTEM_KUBECONFIG),
            in_data_dir(&crate::cli::default_data_dir()),
        ],
    };
    let mut tried = Vec::new();
    for path in &candidates {
        match std::fs::File::open(path) {
            Ok(_) => return Ok(path.clone()),
            Err(error) => tried.push(format!("{} ({error})", path.display())),
        }
    }
    bail!(
        "no readable admin kubeconfig: {}; start `k3rs server` first (as root it writes {}, \
         readable by others with --write-kubeconfig-mode 0644), give --data-dir of the \
         server, or set KUBECONFIG",
        tried.join(", "),
        SYSTEM_KUBECONFIG
    )
}

/// `--data-dir DIR` / `--data-dir=DIR` taken out of `args` (the last one wins).
fn take_data_dir(args: Vec<OsString>) -> (Option<PathBuf>, Vec<OsString>) {
    let mut data_dir = None;
    let mut rest = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            rest.push(arg);
            rest.extend(args.by_ref());
            break;
        }
        if arg == "--data-dir" {
            if let Some(dir) = args.next() {
                data_dir = Some(PathBuf::from(dir));
            }
            continue;
        }
        if let Some(dir) = arg.to_str().and_then(|a| a.strip_prefix("--data-dir=")) {
            data_dir = Some(PathBuf::from(dir));
            continue;
        }
        rest.push(arg);
    }
    (data_dir, rest)
}

/// Whether kubectl's own `--kubeconfig` flag is among `args`.
fn names_kubeconfig(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|arg| arg.as_os_str() != OsStr::new("--"))
        .filter_map(|arg| arg.to_str())
        .any(|arg| arg == "--kubeconfig" || arg.starts_with("--kubeconfig="))
}

/// The first executable `name` in a directory of `PATH`.
fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn data_dir_is_taken_out_and_the_rest_passed_through() {
        let (dir, rest) = take_data_dir(os(&["get", "--data-dir", "/d", "ns", "-o", "name"]));
        assert_eq!(dir, Some(PathBuf::from("/d")));
        assert_eq!(rest, os(&["get", "ns", "-o", "name"]));
        let (dir, rest) = take_data_dir(os(&["--data-dir=/e", "version"]));
        assert_eq!(dir, Some(PathBuf::from("/e")));
        assert_eq!(rest, os(&["version"]));
        let (dir, rest) = take_data_dir(os(&["exec", "x", "--", "--data-dir", "/f"]));
        assert_eq!(dir, None);
        assert_eq!(rest, os(&["exec", "x", "--", "--data-dir", "/f"]));
    }

    #[test]
    fn an_explicit_kubeconfig_flag_is_seen() {
        assert!(names_kubeconfig(&os(&["get", "--kubeconfig", "/k", "ns"])));
        assert!(names_kubeconfig(&os(&["--kubeconfig=/k", "get", "ns"])));
        assert!(!names_kubeconfig(&os(&["get", "ns"])));
    }
}
