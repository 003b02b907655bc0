//! The keys one watcher watches, as etcd reads a `WatchCreateRequest`'s `key` and `range_end`.

/// A watched key range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRange {
    start: Vec<u8>,
    end: RangeEnd,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RangeEnd {
    /// Exactly `start`.
    Single,
    /// `[start, end)`.
    Until(Vec<u8>),
    /// Every key from `start` on (`range_end` = `"\0"`).
    Unbounded,
}

/// etcd's `mvcc: watcher range is empty`, for a `range_end` that is not after `key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("mvcc: watcher range is empty")]
pub struct EmptyRange;

impl KeyRange {
    /// As etcd: an empty key means `"\0"` (the smallest key); an empty `range_end` watches one
    /// key; `"\0"` watches every key from `key` on; otherwise `[key, range_end)`, which must not
    /// be empty.
    pub fn new(key: &[u8], range_end: &[u8]) -> Result<Self, EmptyRange> {
        let start = if key.is_empty() {
            vec![0]
        } else {
            key.to_vec()
        };
        let end = match range_end {
            [] => RangeEnd::Single,
            [0] => RangeEnd::Unbounded,
            end if start.as_slice() >= end => return Err(EmptyRange),
            end => RangeEnd::Until(end.to_vec()),
        };
        Ok(Self { start, end })
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            RangeEnd::Single => key == self.start.as_slice(),
            RangeEnd::Until(end) => self.start.as_slice() <= key && key < end.as_slice(),
            RangeEnd::Unbounded => self.start.as_slice() <= key,
        }
    }

    /// The key, when the range is a single key.
    pub fn single_key(&self) -> Option<&[u8]> {
        match self.end {
            RangeEnd::Single => Some(&self.start),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_key_range_contains_only_that_key() {
        let range = KeyRange::new(b"foo", b"").expect("valid");
        assert!(range.contains(b"foo"));
        assert!(!range.contains(b"foo0"));
        assert!(!range.contains(b"fo"));
        assert_eq!(range.single_key(), Some(&b"foo"[..]));
    }

    #[test]
    fn a_prefix_range_is_half_open() {
        let range = KeyRange::new(b"a/", b"a0").expect("valid");
        assert!(range.contains(b"a/"));
        assert!(range.contains(b"a/x"));
        assert!(!range.contains(b"a0"));
        assert!(!range.contains(b"a"));
    }

    #[test]
    fn zero_range_end_means_every_key_from_key_on() {
        let range = KeyRange::new(b"m", &[0]).expect("valid");
        assert!(range.contains(b"m"));
        assert!(range.contains(b"zzz"));
        assert!(!range.contains(b"l"));
        let everything = KeyRange::new(b"", &[0]).expect("valid");
        assert!(everything.contains(b"\x00"));
        assert!(everything.contains(b"anything"));
    }

    #[test]
    fn an_empty_range_is_refused_with_etcds_text() {
        let err = KeyRange::new(b"b", b"a").expect_err("end before key");
        assert_eq!(err.to_string(), "mvcc: watcher range is empty");
        assert_eq!(KeyRange::new(b"b", b"b"), Err(EmptyRange));
    }
}
