//! The k3rs snapshot format, version 1. A snapshot file is byte for byte the stream etcd's
//! `Maintenance.Snapshot` sends, so `etcdctl snapshot save` against k3rs writes one:
//!
//! ```text
//! file     = preamble frame(HEADER) frame(DATA)* frame(END) digest
//! preamble = "K3RSSNAP" (8 bytes) | format version (u32, big-endian)
//! frame    = kind (1 byte) | payload length (u32, big-endian) | payload
//!            | CRC-32C of kind, length and payload (u32, big-endian)
//! digest   = SHA-256 of every byte before it (32 bytes): etcd's trailing hash
//! ```
//!
//! - HEADER's payload is a [`SnapshotHeader`];
//! - each DATA payload is a `k3rspb.StateImage` holding some rows (kv, lease or MVCC meta, in
//!   that order across the file), the rows a raft snapshot carries;
//! - END's payload is a [`SnapshotEnd`] counting the frames and rows before it.
//!
//! Every byte is covered twice (its frame's CRC-32C and the digest), so a changed byte is
//! found at its frame and a truncation at the missing END or digest. Field numbers of the
//! messages below are a stable format: add fields, never renumber.

use prost::Message as _;
use raftstore::pb::etcdserverpb::Member;

/// The file's first bytes.
pub const MAGIC: &[u8; 8] = b"K3RSSNAP";
/// The format this code writes, and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
/// Magic and format version.
pub const PREAMBLE_BYTES: usize = 12;
/// Kind, length, and CRC-32C around each frame's payload.
pub const FRAME_OVERHEAD_BYTES: usize = 9;
/// The trailing SHA-256.
pub const DIGEST_BYTES: usize = 32;
/// A DATA frame is closed once its rows reach this many bytes.
pub const DATA_FRAME_TARGET_BYTES: usize = 256 << 10;
/// No frame's payload may be larger: a length above it is damage, not data. Far above the
/// largest row etcd accepts (a request is at most a few MiB).
pub const FRAME_PAYLOAD_MAX_BYTES: u32 = 64 << 20;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Header,
    Data,
    End,
}

impl FrameKind {
    pub fn byte(self) -> u8 {
        match self {
            FrameKind::Header => b'H',
            FrameKind::Data => b'D',
            FrameKind::End => b'E',
        }
    }

    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'H' => Some(FrameKind::Header),
            b'D' => Some(FrameKind::Data),
            b'E' => Some(FrameKind::End),
            _ => None,
        }
    }
}

/// Where the snapshot was taken: the cluster and the point of its history the data is at.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SnapshotHeader {
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// The member whose store was read.
    #[prost(uint64, tag = "2")]
    pub member_id: u64,
    /// The store's current revision.
    #[prost(int64, tag = "3")]
    pub revision: i64,
    /// The revision of the last finished compaction (0: never compacted).
    #[prost(int64, tag = "4")]
    pub compact_revision: i64,
    /// The raft index the data is applied up to, and its term.
    #[prost(uint64, tag = "5")]
    pub raft_index: u64,
    #[prost(uint64, tag = "6")]
    pub raft_term: u64,
    /// The cluster's members when it was taken.
    #[prost(message, repeated, tag = "7")]
    pub members: Vec<Member>,
    /// The k3rs version that wrote it.
    #[prost(string, tag = "8")]
    pub writer_version: String,
}

/// The counts that close the data, checked by readers.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct SnapshotEnd {
    #[prost(uint64, tag = "1")]
    pub data_frames: u64,
    #[prost(uint64, tag = "2")]
    pub kv_rows: u64,
    #[prost(uint64, tag = "3")]
    pub lease_rows: u64,
    #[prost(uint64, tag = "4")]
    pub meta_rows: u64,
    /// Zeros that make the stream before the digest a multiple of [`PAD_TO_BYTES`], as
    /// `etcdctl snapshot save` requires of etcd's (bbolt-paged) snapshots.
    #[prost(bytes = "vec", tag = "5")]
    pub padding: Vec<u8>,
}

/// etcdctl accepts a snapshot only if its length minus the 32-byte digest is a multiple of 512.
pub const PAD_TO_BYTES: u64 = 512;

impl SnapshotEnd {
    /// These counts with the padding that ends the END frame, which starts after
    /// `bytes_before` bytes, on a multiple of [`PAD_TO_BYTES`].
    pub fn padded(&self, bytes_before: u64) -> SnapshotEnd {
        let counts = SnapshotEnd {
            padding: Vec::new(),
            ..self.clone()
        };
        let unpadded = bytes_before + FRAME_OVERHEAD_BYTES as u64 + counts.encoded_len() as u64;
        let mut need = (PAD_TO_BYTES - unpadded % PAD_TO_BYTES) % PAD_TO_BYTES;
        loop {
            // The padding field costs a tag byte, its length varint and the zeros.
            for zeros in 0..need {
                let length_bytes = prost::encoding::encoded_len_varint(zeros);
                if 1 + length_bytes as u64 + zeros == need {
                    return SnapshotEnd {
                        padding: vec![0; zeros as usize],
                        ..counts
                    };
                }
            }
            need += PAD_TO_BYTES;
        }
    }

    /// The counts alone, without padding.
    pub fn counts(&self) -> SnapshotEnd {
        SnapshotEnd {
            padding: Vec::new(),
            ..self.clone()
        }
    }
}

/// The CRC-32C a frame ends with.
pub fn frame_crc(kind: FrameKind, payload: &[u8]) -> u32 {
    let mut crc = raftstore::mvcc::Crc32c::default();
    crc.update(&[kind.byte()]);
    crc.update(&(payload.len() as u32).to_be_bytes());
    crc.update(payload);
    crc.finish()
}
