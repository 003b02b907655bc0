//! The manifests directory as k3s reads it: which files count, each file's content hash, and
//! the objects a file holds.
//!
//! Guarantees: only regular files directly in the directory whose names end in `.yaml`,
//! `.yml` or `.json` count; hidden files (a leading `.`) never do, and a file `F` is disabled
//! (listed apart, neither applied nor removed) while `F.skip` exists; files come in name
//! order. A file parses into objects as a whole or not at all: a syntax error, a document
//! that is not an object with `apiVersion`, `kind` and `metadata.name` fails the file with
//! the 1-based line of the file where it is.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

/// One manifest file that counts.
pub struct ManifestFile {
    pub path: PathBuf,
    /// The file name (`foo.yaml`).
    pub name: String,
    pub content: Vec<u8>,
    /// Hex SHA-256 of the content.
    pub checksum: String,
}

impl ManifestFile {
    /// The name of the file's addon: the file name without its extension, as k3s names it.
    pub fn addon_name(&self) -> &str {
        self.name
            .rsplit_once('.')
            .map_or(self.name.as_str(), |(stem, _)| stem)
    }
}

/// What a directory holds.
#[derive(Default)]
pub struct Scan {
    pub files: Vec<ManifestFile>,
    /// Names of manifest files disabled by a `.skip` marker.
    pub skipped: BTreeSet<String>,
}

impl Scan {
    /// Whether a manifest file of this name is present (applied or skipped).
    pub fn has(&self, name: &str) -> bool {
        self.skipped.contains(name) || self.files.iter().any(|file| file.name == name)
    }
}

fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && [".yaml", ".yml", ".json"]
            .iter()
            .any(|extension| name.len() > extension.len() && name.ends_with(extension))
}

/// Reads the manifest files of `dir`.
pub fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            names.insert(name.to_string());
        }
    }
    let mut scan = Scan::default();
    for name in names.iter().filter(|name| is_manifest_name(name)) {
        let path = dir.join(name);
        // Symlinks count as what they point to.
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => {}
            _ => continue,
        }
        if names.contains(&format!("{name}.skip")) {
            scan.skipped.insert(name.clone());
            continue;
        }
        let content = match std::fs::read(&path) {
            Ok(content) => content,
            // Removed between listing and reading: gone.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error),
        };
        let checksum = Sha256::digest(&content)
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        scan.files.push(ManifestFile {
            path,
            name: name.clone(),
            content,
            checksum,
        });
    }
    Ok(scan)
}

/// One object of a file and the line its document starts at.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub line: usize,
    pub object: Value,
}

/// Why a file does not parse, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The objects of a file: one JSON document, or YAML documents separated by `---` lines.
/// Empty documents are skipped; a `List` stands for its items.
pub fn parse(name: &str, content: &[u8]) -> Result<Vec<Document>, ParseError> {
    let text = std::str::from_utf8(content).map_err(|error| ParseError {
        line: 1 + content[..error.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count(),
        message: "the file is not UTF-8".into(),
    })?;
    let mut documents = Vec::new();
    if name.ends_with(".json") {
        let value: Value = serde_json::from_str(text).map_err(|error| ParseError {
            line: error.line().max(1),
            message: format!("invalid JSON: {error}"),
        })?;
        expand(1, value, &mut documents)?;
        return Ok(documents);
    }
    for (line, document) in yaml_documents(text) {
        let value: serde_yaml::Value = serde_yaml::from_str(&document).map_err(|error| {
            let at = error.location().map_or(1, |location| location.line());
            ParseError {
                line: line + at - 1,
                message: format!("invalid YAML: {error}"),
            }
        })?;
        if value.is_null() {
            continue;
        }
        let value = serde_json::to_value(value).map_err(|error| ParseError {
            line,
            message: format!("the document is not JSON-compatible: {error}"),
        })?;
        expand(line, value, &mut documents)?;
    }
    Ok(documents)
}

/// The documents of a YAML stream, each with the line it starts on: the text between lines
/// that are `---` (trailing blanks ignored), as kubectl splits them.
fn yaml_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (index, line) in text.lines().enumerate() {
        if line.trim_end() == "---" {
            documents.push((start, std::mem::take(&mut current)));
            start = index + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    documents.push((start, current));
    documents
}

fn expand(line: usize, value: Value, documents: &mut Vec<Document>) -> Result<(), ParseError> {
    let problem = |message: String| ParseError { line, message };
    let Value::Object(map) = &value else {
        return Err(problem("the document is not an object".into()));
    };
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind == "List" || (kind.ends_with("List") && map.get("items").is_some()) {
        let items = map
            .get("items")
            .and_then(Value::as_array)
            .ok_or_else(|| problem(format!("a {kind} without items")))?;
        for item in items {
            expand(line, item.clone(), documents)?;
        }
        return Ok(());
    }
    for (field, present) in [
        ("apiVersion", map.get("apiVersion").and_then(Value::as_str)),
        ("kind", Some(kind).filter(|kind| !kind.is_empty())),
        (
            "metadata.name",
            value.pointer("/metadata/name").and_then(Value::as_str),
        ),
    ] {
        if present.is_none_or(str::is_empty) {
            return Err(problem(format!("the object has no {field}")));
        }
    }
    documents.push(Document {
        line,
        object: value,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_documents_keep_their_lines() {
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n# only a comment\n---  \napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: s}\n";
        let documents = parse("x.yaml", text.as_bytes()).expect("parses");
        let found: Vec<(usize, &str)> = documents
            .iter()
            .map(|d| (d.line, d.object["kind"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(found, [(2, "ConfigMap"), (9, "Secret")]);
    }

    #[test]
    fn errors_name_the_line_of_the_file() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nmetadata: name: b\n";
        let error = parse("x.yaml", text.as_bytes()).expect_err("malformed");
        assert_eq!(error.line, 6, "{error}");
        let error = parse("x.yaml", b"apiVersion: v1\nkind: ConfigMap\n").expect_err("no name");
        assert_eq!(
            error,
            ParseError {
                line: 1,
                message: "the object has no metadata.name".into()
            }
        );
        let error = parse("x.json", b"{\n\"apiVersion\": \"v1\",\n}").expect_err("bad JSON");
        assert_eq!(error.line, 3, "{error}");
    }

    #[test]
    fn only_visible_manifest_files_count_and_skip_markers_disable_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "a.yaml",
            "b.yml",
            "c.json",
            "d.txt",
            ".e.yaml",
            "f.yaml",
            "f.yaml.skip",
            ".yaml",
        ] {
            std::fs::write(dir.path().join(name), "{}").expect("write");
        }
        std::fs::create_dir(dir.path().join("g.yaml")).expect("mkdir");
        let scan = scan(dir.path()).expect("scan");
        let names: Vec<&str> = scan.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["a.yaml", "b.yml", "c.json"]);
        assert_eq!(scan.skipped.iter().collect::<Vec<_>>(), ["f.yaml"]);
        assert_eq!(scan.files[0].addon_name(), "a");
        assert!(scan.has("f.yaml") && !scan.has("d.txt"));
    }
}
