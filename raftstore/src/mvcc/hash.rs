//! Hashes of the store's state, for comparing members (etcd's corruption check).
//!
//! Guarantees: [`MvccStore::hash_kv`] at a revision depends only on the rows a reader at or
//! after the compacted revision could see up to that revision — so members that applied the
//! same entries agree, whatever their engine or compaction timing — and follows etcd's recipe
//! (CRC-32C over the bucket name, then each row's key and value, skipping rows compaction made
//! unreachable). [`MvccStore::hash_all`] covers every kv and lease record.

use super::revision::{decode_row_key, Revision};
use super::store::MvccStore;
use crate::engine::Table;
use crate::error::{EtcdError, StorageError};

/// CRC-32C (Castagnoli), reflected, as Go's `crc32.MakeTable(crc32.Castagnoli)`.
#[derive(Debug, Clone, Copy)]
pub struct Crc32c {
    state: u32,
}

const CASTAGNOLI_REFLECTED: u32 = 0x82f6_3b78;

const fn crc32c_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = byte as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ CASTAGNOLI_REFLECTED
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
}

static TABLE: [u32; 256] = crc32c_table();

impl Default for Crc32c {
    fn default() -> Self {
        Self { state: !0 }
    }
}

impl Crc32c {
    pub fn update(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            let index = ((self.state ^ u32::from(byte)) & 0xff) as usize;
            self.state = TABLE[index] ^ (self.state >> 8);
        }
    }

    pub fn finish(&self) -> u32 {
        !self.state
    }
}

/// What HashKV answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvHash {
    pub hash: u32,
    /// The compacted revision (-1 when never compacted, as etcd reports it).
    pub compact_revision: i64,
    /// The revision hashed up to.
    pub hash_revision: i64,
}

impl MvccStore {
    /// etcd's HashKV at `revision` (0: current).
    pub fn hash_kv(&self, revision: i64) -> Result<KvHash, EtcdError> {
        let current = self.current_revision();
        let compacted = self.compacted_raw();
        let at = if revision <= 0 { current } else { revision };
        if at > current {
            return Err(EtcdError::FutureRevision);
        }
        if compacted > 0 && at < compacted {
            return Err(EtcdError::Compacted);
        }
        let keep = if compacted > 0 {
            self.tree_index().keep(compacted)
        } else {
            Default::default()
        };
        let mut crc = Crc32c::default();
        crc.update(b"key");
        let end = at.checked_add(1).map(Revision::main_prefix);
        self.engine().try_scan(
            Table::Kv,
            &[],
            end.as_ref().map(|end| end.as_slice()),
            &mut |key, value| {
                let row = decode_row_key(key)?;
                if row.revision.main > compacted || keep.contains(&row.revision) {
                    crc.update(key);
                    crc.update(value);
                }
                Ok(true)
            },
        )?;
        Ok(KvHash {
            hash: crc.finish(),
            compact_revision: compacted,
            hash_revision: at,
        })
    }

    /// A hash of every kv row and lease record (etcd's deprecated Hash of the whole backend).
    pub fn hash_all(&self) -> Result<u32, StorageError> {
        let mut crc = Crc32c::default();
        for (table, name) in [(Table::Kv, b"key".as_slice()), (Table::Lease, b"lease")] {
            crc.update(name);
            self.engine().scan(table, &[], None, &mut |key, value| {
                crc.update(key);
                crc.update(value);
                true
            })?;
        }
        Ok(crc.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        let mut crc = Crc32c::default();
        crc.update(b"123456789");
        assert_eq!(crc.finish(), 0xe306_9283);
    }
}
