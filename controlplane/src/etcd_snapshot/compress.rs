//! Compressed snapshots, as k3s writes them with `--etcd-snapshot-compress`: a zip archive
//! (`<name>.zip`) holding one deflated entry named `<name>`, so `unzip` gives back the plain
//! snapshot.
//!
//! Guarantees: [`read_snapshot`] opens a plain or zipped snapshot alike (told apart by the zip
//! signature, not the file name), once, and hands its reader the snapshot bytes and their size; a zip that does not
//! hold exactly one entry is refused; the entry's CRC-32 is checked by the zip reader when it
//! reaches the end, on top of the snapshot's own frame checksums and digest.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use zip::write::SimpleFileOptions;

use super::names::ZIP_SUFFIX;

/// The first bytes of a zip file (a local file header).
const ZIP_SIGNATURE: [u8; 4] = *b"PK\x03\x04";
/// Buffer of the file under the zip reader.
const READ_BUFFER_BYTES: usize = 1 << 20;

/// Writes a zip with one deflated entry, named after `zip_name` without `.zip`, whose bytes
/// `write` produces; returns `out` once the archive is complete.
pub fn write_zipped<W, F>(out: W, zip_name: &str, write: F) -> Result<W>
where
    W: Write + Seek,
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let entry_name = zip_name.strip_suffix(ZIP_SUFFIX).unwrap_or(zip_name);
    let mut archive = zip::ZipWriter::new(out);
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true)
        .unix_permissions(0o600);
    archive
        .start_file(entry_name, options)
        .context("starting the zip entry")?;
    write(&mut archive)?;
    archive.finish().context("completing the zip archive")
}

/// Whether the next bytes of `input` are the zip signature (nothing is consumed).
fn starts_with_zip_signature(input: &mut impl BufRead) -> std::io::Result<bool> {
    Ok(input.fill_buf()?.starts_with(&ZIP_SIGNATURE))
}

/// Runs `read` over the snapshot bytes of the file at `path`, plain or zipped, opened once;
/// `read` is also given the size of the snapshot bytes (a zip's from its directory).
pub fn read_snapshot<T, F>(path: &Path, read: F) -> Result<T>
where
    F: FnOnce(&mut dyn Read, u64) -> Result<T>,
{
    let file = File::open(path).with_context(|| format!("opening snapshot {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("reading the size of {}", path.display()))?
        .len();
    let mut buffered = BufReader::with_capacity(READ_BUFFER_BYTES, file);
    let zipped = starts_with_zip_signature(&mut buffered)
        .with_context(|| format!("reading snapshot {}", path.display()))?;
    if !zipped {
        return read(&mut buffered, size);
    }
    let mut archive = zip::ZipArchive::new(buffered)
        .with_context(|| format!("{} is not a readable zip archive", path.display()))?;
    if archive.len() != 1 {
        bail!(
            "{} holds {} entries; a compressed snapshot holds exactly one",
            path.display(),
            archive.len()
        );
    }
    let mut entry = archive
        .by_index(0)
        .with_context(|| format!("opening the snapshot inside {}", path.display()))?;
    let size = entry.size();
    read(&mut entry, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn zipped(content: &[u8]) -> Vec<u8> {
        let out = write_zipped(Cursor::new(Vec::new()), "snap-n-1.zip", |writer| {
            writer.write_all(content)?;
            Ok(())
        })
        .expect("zipped");
        out.into_inner()
    }

    #[test]
    fn a_zipped_snapshot_reads_back_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content: Vec<u8> = (0..200_000u32)
            .flat_map(|n| (n % 97).to_le_bytes())
            .collect();
        let zip_path = dir.path().join("snap-n-1.zip");
        std::fs::write(&zip_path, zipped(&content)).expect("write");
        let signature = |path: &Path| {
            starts_with_zip_signature(&mut BufReader::new(File::open(path).expect("open")))
                .expect("reads")
        };
        assert!(signature(&zip_path));
        assert!(
            std::fs::metadata(&zip_path).expect("metadata").len() < content.len() as u64 / 4,
            "deflate shrinks a repetitive snapshot"
        );
        let (read, size) = read_snapshot(&zip_path, |reader, size| {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes)?;
            Ok((bytes, size))
        })
        .expect("read");
        assert_eq!(read, content);
        assert_eq!(
            size,
            content.len() as u64,
            "the inflated size, from the zip"
        );

        let mut archive =
            zip::ZipArchive::new(File::open(&zip_path).expect("open")).expect("a zip");
        assert_eq!(archive.len(), 1);
        assert_eq!(
            archive.by_index(0).expect("entry").name().expect("name"),
            "snap-n-1"
        );

        let plain = dir.path().join("snap-n-2");
        std::fs::write(&plain, b"plain bytes").expect("write");
        assert!(!signature(&plain));
        let (read, size) = read_snapshot(&plain, |reader, size| {
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes)?;
            Ok((bytes, size))
        })
        .expect("read");
        assert_eq!(read, b"plain bytes");
        assert_eq!(size, 11);
    }

    #[test]
    fn a_damaged_zip_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let content = vec![42u8; 100_000];
        let mut bytes = zipped(&content);
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        let path = dir.path().join("snap-n-3.zip");
        std::fs::write(&path, &bytes).expect("write");
        let result = read_snapshot(&path, |reader, _| {
            let mut sink = Vec::new();
            reader.read_to_end(&mut sink)?;
            Ok(sink)
        });
        assert!(result.is_err(), "damage must not pass unnoticed");
        let truncated = dir.path().join("snap-n-4.zip");
        std::fs::write(&truncated, &zipped(&content)[..40]).expect("write");
        assert!(read_snapshot(&truncated, |_, _| Ok(())).is_err());
    }
}
