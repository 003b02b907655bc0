//! k3s-style configuration files for `k3rs server`.
//!
//! The file named by `--config`/`-c` (or `K3RS_CONFIG_FILE`, default
//! `/etc/rancher/k3rs/config.yaml`) is read, then every `*.yaml`/`*.yml` file in
//! `<config>.d/` in name order. Each is a YAML mapping from flag names (without dashes) to a
//! value or a list of values. Rules, as k3s has them:
//! - a later file replaces an earlier file's value; `key+:` appends to it instead;
//! - a flag given on the command line wins over every file;
//! - files win over environment variables, which win over defaults.
//!
//! The files are turned into command-line arguments placed before the user's own, so clap
//! parses them with the same validation and error messages as typed flags. A missing default
//! file is not an error; a missing file named with `--config` is. A key matches a flag by its
//! long name or an alias. Keys that are flags of another command are skipped silently (k3s
//! shares one file between `server` and `etcd-snapshot`); other unknown keys are reported as
//! warnings and skipped.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{ArgAction, Command};

/// Where k3rs looks when neither `--config` nor `K3RS_CONFIG_FILE` names a file.
pub const DEFAULT_CONFIG_FILE: &str = "/etc/rancher/k3rs/config.yaml";
/// The environment variable naming the configuration file.
pub const CONFIG_FILE_ENV: &str = "K3RS_CONFIG_FILE";

/// The command line with the configuration files' flags inserted after the subcommand, and
/// the warnings met on the way (unknown keys), for the caller to log once logging is set up.
#[derive(Debug, Default, PartialEq)]
pub struct Expanded {
    pub args: Vec<OsString>,
    pub warnings: Vec<String>,
}

/// Expands `args` (program name first) for the subcommands of `root` (at any depth, as
/// `etcd-snapshot save`) that have a `config` argument; other command lines come back
/// unchanged.
pub fn expand(args: Vec<OsString>, root: &Command) -> Result<Expanded> {
    let Some((depth, subcommand)) = configurable_subcommand(&args, root) else {
        return Ok(Expanded {
            args,
            warnings: Vec::new(),
        });
    };
    let user_args = &args[depth + 1..];
    let (path, explicit) = match flag_value(user_args, subcommand, "config") {
        Some(path) => (PathBuf::from(path), true),
        None => match std::env::var_os(CONFIG_FILE_ENV) {
            Some(path) if !path.is_empty() => (PathBuf::from(path), true),
            _ => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
        },
    };
    let settings = read_settings(&path, explicit)?;
    let on_command_line = flags_on_command_line(user_args, subcommand);
    let mut expanded = Expanded::default();
    let mut inserted = Vec::new();
    for (key, values) in settings {
        let Some(arg) = subcommand
            .get_arguments()
            .find(|arg| names_of(arg).any(|name| name == key))
        else {
            // The file is shared between commands: another command's flag is not a mistake.
            if !is_flag_of_any(root, &key) {
                expanded.warnings.push(format!(
                    "configuration key {key:?} is not a flag of `{}`; ignored",
                    subcommand.get_name()
                ));
            }
            continue;
        };
        if on_command_line
            .iter()
            .any(|flag| names_of(arg).any(|name| name == flag))
        {
            continue;
        }
        if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
            let Some(last) = values.last() else { continue };
            match last.as_str() {
                "true" => inserted.push(OsString::from(format!("--{key}"))),
                "false" => {}
                other => bail!("configuration key {key:?}: expected true or false, not {other:?}"),
            }
            continue;
        }
        for value in values {
            inserted.push(OsString::from(format!("--{key}={value}")));
        }
    }
    expanded.args = args[..depth + 1].to_vec();
    expanded.args.extend(inserted);
    expanded.args.extend(user_args.iter().cloned());
    Ok(expanded)
}

/// The subcommand named by the words after the program name that has a `config` argument,
/// with the index of its name in `args`.
fn configurable_subcommand<'a>(
    args: &[OsString],
    root: &'a Command,
) -> Option<(usize, &'a Command)> {
    let mut command = root;
    let mut depth = 1;
    loop {
        let found = command.find_subcommand(args.get(depth)?.to_str()?)?;
        if found.get_arguments().any(|arg| arg.get_id() == "config") {
            return Some((depth, found));
        }
        command = found;
        depth += 1;
    }
}

/// The long name and aliases of `arg`.
fn names_of(arg: &clap::Arg) -> impl Iterator<Item = &str> {
    arg.get_long()
        .into_iter()
        .chain(arg.get_all_aliases().unwrap_or_default())
}

/// Whether `key` is a long flag (or alias) of `command` or of any of its subcommands.
fn is_flag_of_any(command: &Command, key: &str) -> bool {
    command
        .get_arguments()
        .any(|arg| names_of(arg).any(|name| name == key))
        || command
            .get_subcommands()
            .any(|subcommand| is_flag_of_any(subcommand, key))
}

/// The merged settings of the configuration file and its `.d` directory, in first-seen key
/// order. Values are the flag values as text.
fn read_settings(path: &Path, explicit: bool) -> Result<Vec<(String, Vec<String>)>> {
    let mut files = Vec::new();
    if path.exists() {
        files.push(path.to_path_buf());
    } else if explicit {
        bail!("configuration file {} does not exist", path.display());
    }
    let mut drop_in_dir = path.as_os_str().to_owned();
    drop_in_dir.push(".d");
    files.extend(drop_in_files(Path::new(&drop_in_dir))?);

    let mut settings: Vec<(String, Vec<String>)> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading configuration file {}", file.display()))?;
        let entries =
            parse_file(&text).with_context(|| format!("configuration file {}", file.display()))?;
        for (key, append, values) in entries {
            match settings.iter_mut().find(|(name, _)| *name == key) {
                Some((_, existing)) if append => existing.extend(values),
                Some((_, existing)) => *existing = values,
                None => settings.push((key, values)),
            }
        }
    }
    Ok(settings)
}

/// The `*.yaml` and `*.yml` files of `dir` in name order (none when it does not exist).
fn drop_in_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("reading {}", dir.display())),
    };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("reading {}", dir.display()))?
            .path();
        let is_yaml = path
            .extension()
            .is_some_and(|ext| ext == OsStr::new("yaml") || ext == OsStr::new("yml"));
        if is_yaml && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One file's entries: (flag name, whether the key ended in `+`, values).
fn parse_file(text: &str) -> Result<Vec<(String, bool, Vec<String>)>> {
    let document: serde_yaml::Value = serde_yaml::from_str(text).context("not valid YAML")?;
    let mapping = match document {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(mapping) => mapping,
        _ => bail!("expected a mapping of flag names to values"),
    };
    let mut entries = Vec::new();
    for (key, value) in mapping {
        let key = scalar_text(&key).context("a key is not a flag name")?;
        let key = key.trim_start_matches('-');
        let (name, append) = match key.strip_suffix('+') {
            Some(name) => (name.to_string(), true),
            None => (key.to_string(), false),
        };
        let values = match &value {
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .map(scalar_text)
                .collect::<Result<Vec<_>>>()
                .with_context(|| format!("key {name:?}"))?,
            scalar => vec![scalar_text(scalar).with_context(|| format!("key {name:?}"))?],
        };
        entries.push((name, append, values));
    }
    Ok(entries)
}

fn scalar_text(value: &serde_yaml::Value) -> Result<String> {
    match value {
        serde_yaml::Value::String(text) => Ok(text.clone()),
        serde_yaml::Value::Bool(flag) => Ok(flag.to_string()),
        serde_yaml::Value::Number(number) => Ok(number.to_string()),
        _ => bail!("expected a string, number or boolean, or a list of them"),
    }
}

/// The long names of the flags present in `args`, short flags translated.
fn flags_on_command_line(args: &[OsString], command: &Command) -> Vec<String> {
    let mut names = Vec::new();
    for arg in args {
        let Some(arg) = arg.to_str() else { continue };
        if arg == "--" {
            break;
        }
        if let Some(long) = arg.strip_prefix("--") {
            names.push(long.split('=').next().unwrap_or(long).to_string());
        } else if let Some(short) = arg.strip_prefix('-').and_then(|rest| rest.chars().next()) {
            let long = command
                .get_arguments()
                .find(|candidate| candidate.get_short() == Some(short))
                .and_then(|candidate| candidate.get_long());
            names.extend(long.map(str::to_string));
        }
    }
    names
}

/// The value given to flag `long` (or its short form) in `args`, if any.
fn flag_value(args: &[OsString], command: &Command, long: &str) -> Option<OsString> {
    let short = command
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long))
        .and_then(|arg| arg.get_short());
    let mut iter = args.iter();
    let mut found = None;
    while let Some(arg) = iter.next() {
        let Some(text) = arg.to_str() else { continue };
        if text == "--" {
            break;
        }
        if let Some(value) = text
            .strip_prefix("--")
            .and_then(|rest| rest.strip_prefix(long))
            .and_then(|rest| rest.strip_prefix('='))
        {
            found = Some(OsString::from(value));
        } else if text.strip_prefix("--") == Some(long)
            || short.is_some_and(|short| text == format!("-{short}"))
        {
            found = iter.next().cloned();
        }
    }
    found
}

#[cfg(test)]
mod tests;
