//! Revisions and their byte encoding as `Table::Kv` row keys.
//!
//! A [`Revision`] is etcd's `(main, sub)` pair: `main` counts applied writes that changed
//! something, `sub` numbers the changes inside one of them. Revisions order by `main`, then `sub`.
//!
//! Row key layout (etcd's): 8-byte big-endian `main`, `b'_'`, 8-byte big-endian `sub` — 17 bytes;
//! the row of a deletion (a *tombstone*) appends `b't'` — 18 bytes. For non-negative revisions the
//! byte order of encoded keys is the order of the revisions, so a scan of `Table::Kv` visits rows
//! in revision order. [`decode_row_key`] rejects any other length, separator or marker.

use std::fmt;

use crate::error::StorageError;

/// Length of a live row key.
pub const REVISION_KEY_LEN: usize = 17;
/// Length of a tombstone row key.
pub const TOMBSTONE_KEY_LEN: usize = 18;

const SEPARATOR: u8 = b'_';
const TOMBSTONE_MARK: u8 = b't';

/// etcd's revision: `main` for the applied write, `sub` for the change inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub const fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The 17-byte row key of a live row at this revision.
    pub fn to_key(self) -> [u8; REVISION_KEY_LEN] {
        let mut key = [0u8; REVISION_KEY_LEN];
        key[..8].copy_from_slice(&(self.main as u64).to_be_bytes());
        key[8] = SEPARATOR;
        key[9..17].copy_from_slice(&(self.sub as u64).to_be_bytes());
        key
    }

    /// The 18-byte row key of a tombstone at this revision.
    pub fn to_tombstone_key(self) -> [u8; TOMBSTONE_KEY_LEN] {
        let mut key = [0u8; TOMBSTONE_KEY_LEN];
        key[..REVISION_KEY_LEN].copy_from_slice(&self.to_key());
        key[REVISION_KEY_LEN] = TOMBSTONE_MARK;
        key
    }

    /// The first 8 bytes shared by every row key whose revision has this `main`: scanning from
    /// `main_prefix(m)` starts at the first row of main revision `m`.
    pub fn main_prefix(main: i64) -> [u8; 8] {
        (main as u64).to_be_bytes()
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.main, self.sub)
    }
}

/// A decoded `Table::Kv` row key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKey {
    pub revision: Revision,
    /// Whether the row records a deletion.
    pub tombstone: bool,
}

/// Decodes a `Table::Kv` row key, rejecting bad lengths, separators and markers.
pub fn decode_row_key(key: &[u8]) -> Result<RowKey, StorageError> {
    let tombstone = match key.len() {
        REVISION_KEY_LEN => false,
        TOMBSTONE_KEY_LEN => {
            if key[REVISION_KEY_LEN] != TOMBSTONE_MARK {
                return Err(StorageError::corrupt(format!(
                    "kv row key {} ends in {:#04x}, not the tombstone mark 't'",
                    hex(key),
                    key[REVISION_KEY_LEN]
                )));
            }
            true
        }
        other => {
            return Err(StorageError::corrupt(format!(
                "kv row key {} is {other} bytes long, not {REVISION_KEY_LEN} or {TOMBSTONE_KEY_LEN}",
                hex(key)
            )));
        }
    };
    if key[8] != SEPARATOR {
        return Err(StorageError::corrupt(format!(
            "kv row key {} has {:#04x} where the separator '_' belongs",
            hex(key),
            key[8]
        )));
    }
    let main = u64::from_be_bytes(key[..8].try_into().expect("slice of 8 bytes"));
    let sub = u64::from_be_bytes(key[9..17].try_into().expect("slice of 8 bytes"));
    Ok(RowKey {
        revision: Revision::new(main as i64, sub as i64),
        tombstone,
    })
}

/// Lower-case hex of `bytes`, for error messages that name a row.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_key_is_main_separator_sub_big_endian() {
        let key = Revision::new(0x0102, 3).to_key();
        assert_eq!(key, [0, 0, 0, 0, 0, 0, 1, 2, b'_', 0, 0, 0, 0, 0, 0, 0, 3]);
    }

    #[test]
    fn tombstone_key_appends_t() {
        let key = Revision::new(5, 1).to_tombstone_key();
        assert_eq!(&key[..17], &Revision::new(5, 1).to_key());
        assert_eq!(key[17], b't');
    }

    #[test]
    fn keys_decode_to_their_revision() {
        let revision = Revision::new(123_456_789, 42);
        let live = decode_row_key(&revision.to_key()).expect("valid key");
        assert_eq!(
            live,
            RowKey {
                revision,
                tombstone: false
            }
        );
        let tomb = decode_row_key(&revision.to_tombstone_key()).expect("valid key");
        assert_eq!(
            tomb,
            RowKey {
                revision,
                tombstone: true
            }
        );
    }

    #[test]
    fn key_byte_order_is_revision_order() {
        let revisions = [
            Revision::new(1, 0),
            Revision::new(1, 1),
            Revision::new(1, 256),
            Revision::new(2, 0),
            Revision::new(256, 0),
        ];
        for pair in revisions.windows(2) {
            assert!(pair[0] < pair[1]);
            assert!(pair[0].to_key() < pair[1].to_key());
        }
    }

    #[test]
    fn decode_rejects_bad_length() {
        let err = decode_row_key(&[0u8; 16]).expect_err("16 bytes is not a row key");
        assert!(err.to_string().contains("16 bytes long"), "{err}");
        assert!(decode_row_key(&[0u8; 19]).is_err());
        assert!(decode_row_key(&[]).is_err());
    }

    #[test]
    fn decode_rejects_bad_separator_and_marker() {
        let mut key = Revision::new(1, 0).to_key();
        key[8] = b'-';
        assert!(decode_row_key(&key).is_err());
        let mut tomb = Revision::new(1, 0).to_tombstone_key();
        tomb[17] = b'x';
        let err = decode_row_key(&tomb).expect_err("bad marker");
        assert!(err.to_string().contains("tombstone mark"), "{err}");
    }

    #[test]
    fn main_prefix_bounds_rows_of_a_main_revision() {
        let prefix = Revision::main_prefix(7);
        assert!(prefix.as_slice() <= Revision::new(7, 0).to_key().as_slice());
        assert!(Revision::new(6, u32::MAX as i64).to_key().as_slice() < prefix.as_slice());
        assert!(
            Revision::new(7, 9).to_tombstone_key().as_slice() < Revision::main_prefix(8).as_slice()
        );
    }
}
