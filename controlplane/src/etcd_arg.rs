//! `k3rs server --etcd-arg NAME=VALUE`: etcd flags passed through to the embedded store, as
//! k3s passes them to its embedded etcd.
//!
//! Each `--etcd-arg` becomes the matching etcd tuning flag of `k3rs server` (for instance
//! `--etcd-arg heartbeat-interval=500` becomes `--heartbeat-interval=500`), so it is
//! validated like any flag. etcd flags that configure things k3rs does differently (listen
//! URLs, logging, quotas it does not enforce) are accepted with a warning so existing k3s
//! configurations keep working; any other name is refused.

use std::ffi::OsString;

use anyhow::{bail, Result};
use clap::{Args, Command};

use crate::etcd_flags::EtcdTuning;

/// etcd flags that k3s users pass but that have no effect in k3rs.
const IGNORED_ETCD_FLAGS: &[&str] = &[
    "quota-backend-bytes",
    "auto-compaction-mode",
    "auto-compaction-retention",
    "log-level",
    "logger",
    "log-outputs",
    "enable-pprof",
    "metrics",
    "listen-metrics-urls",
    "experimental-initial-corrupt-check",
    "experimental-corrupt-check-time",
    "experimental-compact-hash-check-enabled",
    "backend-batch-interval",
    "backend-batch-limit",
    "unsafe-no-fsync",
];

/// Replaces every `--etcd-arg NAME=VALUE` (or `--etcd-arg=NAME=VALUE`) of a `server`
/// command line by `--NAME=VALUE`; warnings for ignored flags are appended to `warnings`.
pub fn expand(args: Vec<OsString>, warnings: &mut Vec<String>) -> Result<Vec<OsString>> {
    if args.get(1).and_then(|arg| arg.to_str()) != Some("server") {
        return Ok(args);
    }
    let tuning = EtcdTuning::augment_args(Command::new("etcd-arg"));
    let mut expanded = Vec::with_capacity(args.len());
    let mut iter = args.into_iter();
    while let Some(arg) = iter.next() {
        let given = match arg.to_str() {
            Some("--") => {
                expanded.push(arg);
                expanded.extend(iter.by_ref());
                break;
            }
            Some("--etcd-arg") => match iter.next() {
                Some(value) => value,
                None => bail!("--etcd-arg needs a value: --etcd-arg NAME=VALUE"),
            },
            Some(text) => match text.strip_prefix("--etcd-arg=") {
                Some(value) => OsString::from(value),
                None => {
                    expanded.push(arg);
                    continue;
                }
            },
            None => {
                expanded.push(arg);
                continue;
            }
        };
        let Some(given) = given.to_str() else {
            bail!("--etcd-arg {given:?} is not valid UTF-8");
        };
        let given = given.trim_start_matches('-');
        let name = given.split('=').next().unwrap_or(given);
        if tuning
            .get_arguments()
            .any(|arg| arg.get_long() == Some(name))
        {
            expanded.push(OsString::from(format!("--{given}")));
        } else if IGNORED_ETCD_FLAGS.contains(&name) {
            warnings.push(format!(
                "--etcd-arg {name}: this etcd flag has no effect in k3rs; ignored"
            ));
        } else {
            let supported: Vec<&str> = tuning
                .get_arguments()
                .filter_map(|arg| arg.get_long())
                .collect();
            bail!(
                "--etcd-arg {name}: not an etcd flag k3rs supports (supported: {})",
                supported.join(", ")
            );
        }
    }
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn etcd_args_become_the_tuning_flags_and_unknown_ones_are_refused() {
        let mut warnings = Vec::new();
        let expanded = expand(
            strings(&[
                "k3rs",
                "server",
                "--etcd-arg",
                "heartbeat-interval=500",
                "--etcd-arg=--election-timeout=5000",
                "--etcd-arg=quota-backend-bytes=8589934592",
                "--cluster-init",
            ]),
            &mut warnings,
        )
        .expect("expands");
        assert_eq!(
            expanded,
            strings(&[
                "k3rs",
                "server",
                "--heartbeat-interval=500",
                "--election-timeout=5000",
                "--cluster-init",
            ])
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("quota-backend-bytes"));

        let err = expand(
            strings(&["k3rs", "server", "--etcd-arg", "data-dir=/tmp/x"]),
            &mut warnings,
        )
        .expect_err("data-dir is not passed through");
        assert!(
            err.to_string()
                .contains("--etcd-arg data-dir: not an etcd flag k3rs supports"),
            "{err}"
        );
        let etcd = strings(&["k3rs", "etcd", "--etcd-arg", "x=1"]);
        assert_eq!(
            expand(etcd.clone(), &mut warnings).expect("untouched"),
            etcd
        );
    }
}
