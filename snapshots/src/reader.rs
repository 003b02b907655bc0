//! `SnapshotReader`: reads and checks the format of [`crate::format`] from any `Read`.
//!
//! Guarantees:
//! - memory holds at most one frame, and a frame's announced length is checked against
//!   [`FRAME_PAYLOAD_MAX_BYTES`] before anything is read into it;
//! - every frame's CRC-32C is checked before its payload is decoded or handed out, and frames
//!   must come in order (one HEADER, DATA frames, one END whose counts match what was read);
//! - [`SnapshotReader::next_data`] returns `None` only after the END frame, the SHA-256 digest
//!   of the whole stream and the absence of trailing bytes were checked: a consumer that acts
//!   only after `None` acts only on a complete, unaltered snapshot;
//! - a file that is not a k3rs snapshot is named for what it looks like (an etcd bbolt
//!   database, a zip archive) when that is recognisable.

use std::io::Read;

use prost::Message as _;
use raftstore::pb::k3rspb::StateImage;
use sha2::{Digest as _, Sha256};

use crate::error::SnapshotError;
use crate::format::{
    frame_crc, FrameKind, SnapshotEnd, SnapshotHeader, DIGEST_BYTES, FORMAT_VERSION,
    FRAME_PAYLOAD_MAX_BYTES, MAGIC, PREAMBLE_BYTES,
};

/// What a fully checked snapshot holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub header: SnapshotHeader,
    pub end: SnapshotEnd,
    /// Every byte, digest included.
    pub bytes: u64,
}

/// A snapshot being read.
pub struct SnapshotReader<R: Read> {
    input: R,
    hasher: Sha256,
    offset: u64,
    header: SnapshotHeader,
    seen: SnapshotEnd,
    done: Option<SnapshotEnd>,
}

/// Reads until `buf` is full or the input ends; returns how many bytes were read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

/// What a file that does not start with the magic looks like.
fn describe_foreign(start: &[u8]) -> String {
    const BBOLT_MAGIC: [u8; 4] = 0xED0C_DAEDu32.to_le_bytes();
    if start.get(16..20) == Some(&BBOLT_MAGIC[..]) {
        "it is an etcd (bbolt) database snapshot; k3rs restores k3rs snapshots (taken from k3rs \
         by `etcdctl snapshot save` or by k3rs itself)"
            .to_string()
    } else if start.starts_with(b"PK\x03\x04") {
        "it is a zip archive (a compressed snapshot?): unzip it and restore the file inside"
            .to_string()
    } else if start.is_empty() {
        "the file is empty".to_string()
    } else {
        format!(
            "it starts with {:02x?} instead of {:?}",
            &start[..start.len().min(8)],
            String::from_utf8_lossy(MAGIC)
        )
    }
}

impl<R: Read> SnapshotReader<R> {
    /// Reads and checks the preamble and the header.
    pub fn open(mut input: R) -> Result<Self, SnapshotError> {
        let mut start = [0u8; 20];
        let got = read_up_to(&mut input, &mut start[..PREAMBLE_BYTES])
            .map_err(|err| SnapshotError::io("reading the snapshot", err))?;
        let magic_got = got.min(MAGIC.len());
        if start[..magic_got] != MAGIC[..magic_got] || got == 0 {
            let more = read_up_to(&mut input, &mut start[got..])
                .map_err(|err| SnapshotError::io("reading the snapshot", err))?;
            return Err(SnapshotError::Foreign(describe_foreign(
                &start[..got + more],
            )));
        }
        if got < PREAMBLE_BYTES {
            return Err(SnapshotError::Truncated {
                offset: got as u64,
                missing: "inside its preamble".to_string(),
            });
        }
        let mut version = [0u8; 4];
        version.copy_from_slice(&start[MAGIC.len()..PREAMBLE_BYTES]);
        let version = u32::from_be_bytes(version);
        if version > FORMAT_VERSION {
            return Err(SnapshotError::UnsupportedVersion { found: version });
        }
        if version == 0 {
            return Err(SnapshotError::damaged(8, "its format version is 0"));
        }
        let mut reader = Self {
            input,
            hasher: Sha256::new(),
            offset: PREAMBLE_BYTES as u64,
            header: SnapshotHeader::default(),
            seen: SnapshotEnd::default(),
            done: None,
        };
        reader.hasher.update(&start[..PREAMBLE_BYTES]);
        let at = reader.offset;
        let (kind, payload) = reader.frame()?;
        if kind != FrameKind::Header {
            return Err(SnapshotError::damaged(
                at,
                "the first frame is not the header",
            ));
        }
        reader.header = SnapshotHeader::decode(payload.as_slice()).map_err(|err| {
            SnapshotError::damaged(at, format!("the header does not decode: {err}"))
        })?;
        Ok(reader)
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// Bytes read so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads exactly `buf.len()` bytes, hashing them; a short read is a truncation of `what`.
    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<(), SnapshotError> {
        let got = read_up_to(&mut self.input, buf)
            .map_err(|err| SnapshotError::io("reading the snapshot", err))?;
        self.hasher.update(&buf[..got]);
        self.offset += got as u64;
        if got < buf.len() {
            return Err(SnapshotError::Truncated {
                offset: self.offset,
                missing: format!("inside {what}"),
            });
        }
        Ok(())
    }

    /// Reads one frame and checks its CRC-32C.
    fn frame(&mut self) -> Result<(FrameKind, Vec<u8>), SnapshotError> {
        let at = self.offset;
        let mut head = [0u8; 5];
        self.read_exact(
            &mut head,
            "a frame header (the END frame and digest are missing)",
        )?;
        let kind = FrameKind::from_byte(head[0]).ok_or_else(|| {
            SnapshotError::damaged(at, format!("unknown frame kind {:#04x}", head[0]))
        })?;
        let mut length = [0u8; 4];
        length.copy_from_slice(&head[1..]);
        let length = u32::from_be_bytes(length);
        if length > FRAME_PAYLOAD_MAX_BYTES {
            return Err(SnapshotError::damaged(
                at,
                format!(
                    "a frame announces {length} bytes, above the limit {FRAME_PAYLOAD_MAX_BYTES}"
                ),
            ));
        }
        let mut payload = Vec::new();
        let got = (&mut self.input)
            .take(u64::from(length))
            .read_to_end(&mut payload)
            .map_err(|err| SnapshotError::io("reading the snapshot", err))?;
        self.hasher.update(&payload);
        self.offset += got as u64;
        if got < length as usize {
            return Err(SnapshotError::Truncated {
                offset: self.offset,
                missing: format!("inside a frame of {length} bytes that starts at byte {at}"),
            });
        }
        let mut crc = [0u8; 4];
        self.read_exact(&mut crc, "a frame's checksum")?;
        if u32::from_be_bytes(crc) != frame_crc(kind, &payload) {
            return Err(SnapshotError::damaged(
                at,
                "the frame starting there fails its CRC-32C check",
            ));
        }
        Ok((kind, payload))
    }

    /// The next DATA frame's rows; `None` once the whole snapshot is read and checked (see the
    /// module doc).
    pub fn next_data(&mut self) -> Result<Option<StateImage>, SnapshotError> {
        if self.done.is_some() {
            return Ok(None);
        }
        let at = self.offset;
        let (kind, payload) = self.frame()?;
        match kind {
            FrameKind::Header => Err(SnapshotError::damaged(at, "a second header frame")),
            FrameKind::Data => {
                let image = StateImage::decode(payload.as_slice()).map_err(|err| {
                    SnapshotError::damaged(at, format!("a data frame does not decode: {err}"))
                })?;
                self.seen.data_frames += 1;
                self.seen.kv_rows += image.kv.len() as u64;
                self.seen.lease_rows += image.lease.len() as u64;
                self.seen.meta_rows += image.meta.len() as u64;
                Ok(Some(image))
            }
            FrameKind::End => {
                let end = SnapshotEnd::decode(payload.as_slice()).map_err(|err| {
                    SnapshotError::damaged(at, format!("the end frame does not decode: {err}"))
                })?;
                if end.counts() != self.seen {
                    return Err(SnapshotError::damaged(
                        at,
                        format!(
                            "the end frame counts {end:?} but the file holds {:?}",
                            self.seen
                        ),
                    ));
                }
                self.check_digest()?;
                self.done = Some(end);
                Ok(None)
            }
        }
    }

    fn check_digest(&mut self) -> Result<(), SnapshotError> {
        let expected: [u8; DIGEST_BYTES] = self.hasher.clone().finalize().into();
        let at = self.offset;
        let mut digest = [0u8; DIGEST_BYTES];
        self.read_exact(&mut digest, "the SHA-256 digest that ends it")?;
        if digest != expected {
            return Err(SnapshotError::damaged(
                at,
                "the SHA-256 digest at the end does not match the contents",
            ));
        }
        let mut extra = [0u8; 1];
        let trailing = read_up_to(&mut self.input, &mut extra)
            .map_err(|err| SnapshotError::io("reading the snapshot", err))?;
        if trailing > 0 {
            return Err(SnapshotError::damaged(
                self.offset,
                "bytes follow the digest that ends the snapshot",
            ));
        }
        Ok(())
    }

    /// Reads to the end, checking everything; the rows are dropped as they are read.
    pub fn verify_rest(mut self) -> Result<Verified, SnapshotError> {
        while self.next_data()?.is_some() {}
        Ok(Verified {
            end: self.done.unwrap_or_default(),
            header: self.header,
            bytes: self.offset,
        })
    }
}

/// Reads and checks a whole snapshot without keeping its rows.
pub fn verify(input: impl Read) -> Result<Verified, SnapshotError> {
    SnapshotReader::open(input)?.verify_rest()
}
