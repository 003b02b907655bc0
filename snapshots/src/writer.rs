//! `SnapshotWriter`: writes the format of [`crate::format`] to any `Write`, row by row.
//!
//! Guarantees: memory holds at most one DATA frame (about
//! [`DATA_FRAME_TARGET_BYTES`](crate::format::DATA_FRAME_TARGET_BYTES), or one row if larger);
//! the output is complete and readable only once [`SnapshotWriter::finish`] returned — a
//! writer dropped before leaves a file without END frame or digest, which every reader refuses
//! as truncated; a frame a reader would refuse as too large is an error here instead.

use std::io::Write;

use prost::Message as _;
use raftstore::engine::Table;
use raftstore::pb::k3rspb::StateImage;
use sha2::{Digest as _, Sha256};

use crate::error::SnapshotError;
use crate::format::{
    frame_crc, FrameKind, SnapshotEnd, SnapshotHeader, DATA_FRAME_TARGET_BYTES, FORMAT_VERSION,
    FRAME_PAYLOAD_MAX_BYTES, MAGIC,
};

/// An upper bound of what one row's protobuf framing adds to its key and value.
const ROW_FRAMING_BYTES: usize = 24;

/// What a finished snapshot holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Every byte, digest included.
    pub bytes: u64,
    pub digest: [u8; 32],
    pub end: SnapshotEnd,
}

/// A snapshot being written.
pub struct SnapshotWriter<W: Write> {
    out: W,
    hasher: Sha256,
    bytes: u64,
    pending: StateImage,
    pending_bytes: usize,
    end: SnapshotEnd,
}

impl<W: Write> SnapshotWriter<W> {
    /// Writes the preamble and `header` to `out`.
    pub fn new(out: W, header: &SnapshotHeader) -> Result<Self, SnapshotError> {
        let mut writer = Self {
            out,
            hasher: Sha256::new(),
            bytes: 0,
            pending: StateImage::default(),
            pending_bytes: 0,
            end: SnapshotEnd::default(),
        };
        writer.put(MAGIC)?;
        writer.put(&FORMAT_VERSION.to_be_bytes())?;
        writer.frame(FrameKind::Header, &header.encode_to_vec())?;
        Ok(writer)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        self.out
            .write_all(bytes)
            .map_err(|err| SnapshotError::io("writing the snapshot", err))?;
        self.hasher.update(bytes);
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    fn frame(&mut self, kind: FrameKind, payload: &[u8]) -> Result<(), SnapshotError> {
        let length = u32::try_from(payload.len())
            .ok()
            .filter(|length| *length <= FRAME_PAYLOAD_MAX_BYTES)
            .ok_or_else(|| {
                SnapshotError::damaged(
                    self.bytes,
                    format!(
                        "a frame of {} bytes is above the format's limit of \
                         {FRAME_PAYLOAD_MAX_BYTES} (a single row that large cannot be saved)",
                        payload.len()
                    ),
                )
            })?;
        self.put(&[kind.byte()])?;
        self.put(&length.to_be_bytes())?;
        self.put(payload)?;
        self.put(&frame_crc(kind, payload).to_be_bytes())
    }

    /// Adds one row of the state machine (kv rows first, then lease, then meta records).
    pub fn row(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), SnapshotError> {
        raftstore::state_image::push_row(&mut self.pending, table, key, value);
        match table {
            Table::Kv => self.end.kv_rows += 1,
            Table::Lease => self.end.lease_rows += 1,
            Table::Meta | Table::RaftLog => self.end.meta_rows += 1,
        }
        // Key and value plus the row's protobuf framing (tags, lengths, table), over-estimated.
        self.pending_bytes += key.len() + value.len() + ROW_FRAMING_BYTES;
        if self.pending_bytes >= DATA_FRAME_TARGET_BYTES {
            self.flush_data()?;
        }
        Ok(())
    }

    fn flush_data(&mut self) -> Result<(), SnapshotError> {
        let image = &self.pending;
        if image.kv.is_empty() && image.lease.is_empty() && image.meta.is_empty() {
            return Ok(());
        }
        let image = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.frame(FrameKind::Data, &image.encode_to_vec())?;
        self.end.data_frames += 1;
        Ok(())
    }

    /// Writes the last rows, the END frame and the digest; flushes and returns the output.
    pub fn finish(mut self) -> Result<(W, Written), SnapshotError> {
        self.flush_data()?;
        let end = self.end.padded(self.bytes);
        self.frame(FrameKind::End, &end.encode_to_vec())?;
        let digest: [u8; 32] = self.hasher.clone().finalize().into();
        self.out
            .write_all(&digest)
            .and_then(|()| self.out.flush())
            .map_err(|err| SnapshotError::io("writing the snapshot's digest", err))?;
        let written = Written {
            bytes: self.bytes + digest.len() as u64,
            digest,
            end,
        };
        Ok((self.out, written))
    }
}
