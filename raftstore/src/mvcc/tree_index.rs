//! `TreeIndex`: every key's [`KeyIndex`], ordered by key — etcd's `treeIndex`.
//!
//! Key ranges follow etcd's conventions at this level: `end = None` is the single key `key`,
//! `end = Some(b"")` is every key `>= key`, and `Some(end)` is `[key, end)` — empty (never an
//! error) when `end <= key`. A range reads only the part of the map it covers.
//!
//! Compaction drops every key whose index becomes empty, so the map holds only keys with history
//! still readable.

use std::collections::btree_map;
use std::collections::BTreeMap;
use std::ops::Bound;

use super::key_index::{KeepSet, KeyIndex, KeyIndexError, KeyRevision};
use super::revision::Revision;

/// The in-memory index of every key's revisions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeIndex {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

/// Converts a request's `range_end` to this module's `end`: empty (absent) = the single key,
/// `"\0"` = unbounded (etcd's `mkGteRange`), anything else = exclusive end.
pub fn range_end_of(range_end: &[u8]) -> Option<&[u8]> {
    match range_end {
        [] => None,
        [0] => Some(&[]),
        end => Some(end),
    }
}

/// The `range_end` that selects every key starting with `prefix` (etcd's `--prefix`): the
/// prefix with its last byte below 0xff incremented; `"\0"` (every key from `prefix` on) when
/// there is none.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

impl TreeIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of keys with indexed history.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The index of `key`, if it has history.
    pub fn key_index(&self, key: &[u8]) -> Option<&KeyIndex> {
        self.keys.get(key)
    }

    /// What a read of `key` at `at_rev` sees.
    pub fn get(&self, key: &[u8], at_rev: i64) -> Option<KeyRevision> {
        self.keys.get(key)?.get(at_rev)
    }

    /// Records a put of `key` at `rev`.
    pub fn put(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(index) => index.put(rev),
            None => {
                let mut index = KeyIndex::new();
                index.put(rev)?;
                self.keys.insert(key.to_vec(), index);
                Ok(())
            }
        }
    }

    /// Records a deletion of `key` at `rev`; fails when the key is not live.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> Result<(), KeyIndexError> {
        match self.keys.get_mut(key) {
            Some(index) => index.tombstone(rev),
            None => Err(KeyIndexError::NotLive),
        }
    }

    /// Inserts the index rebuilt from a key's first stored row; replaces nothing.
    pub(crate) fn insert_restored(&mut self, key: Vec<u8>, index: KeyIndex) {
        self.keys.entry(key).or_insert(index);
    }

    pub(crate) fn key_index_mut(&mut self, key: &[u8]) -> Option<&mut KeyIndex> {
        self.keys.get_mut(key)
    }

    /// The indexed keys in `[key, end)` (see the module doc for `end`), in key order.
    pub fn range<'a>(
        &'a self,
        key: &'a [u8],
        end: Option<&'a [u8]>,
    ) -> btree_map::Range<'a, Vec<u8>, KeyIndex> {
        let bounds: (Bound<&[u8]>, Bound<&[u8]>) = match end {
            None => (Bound::Included(key), Bound::Included(key)),
            Some([]) => (Bound::Included(key), Bound::Unbounded),
            Some(end) if end <= key => (Bound::Included(key), Bound::Excluded(key)),
            Some(end) => (Bound::Included(key), Bound::Excluded(end)),
        };
        self.keys.range::<[u8], _>(bounds)
    }

    /// The keys in the range that exist at `at_rev`, with what a read then sees, in key order.
    pub fn range_at<'a>(
        &'a self,
        key: &'a [u8],
        end: Option<&'a [u8]>,
        at_rev: i64,
    ) -> impl Iterator<Item = (&'a [u8], KeyRevision)> + 'a {
        self.range(key, end)
            .filter_map(move |(key, index)| index.get(at_rev).map(|seen| (key.as_slice(), seen)))
    }

    /// The revisions a read of the range at `at_rev` returns — at most `limit` of them when
    /// `limit > 0` — and how many keys exist in the range then, ignoring the limit.
    pub fn revisions(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        at_rev: i64,
        limit: usize,
    ) -> (Vec<Revision>, usize) {
        let mut revisions = Vec::new();
        let mut total = 0;
        for (_, seen) in self.range_at(key, end, at_rev) {
            if limit == 0 || revisions.len() < limit {
                revisions.push(seen.modified);
            }
            total += 1;
        }
        (revisions, total)
    }

    /// How many keys of the range exist at `at_rev`.
    pub fn count(&self, key: &[u8], end: Option<&[u8]>, at_rev: i64) -> usize {
        self.range_at(key, end, at_rev).count()
    }

    /// Compacts every key at `at_rev` and drops keys left empty; returns the revisions whose
    /// rows must stay in the backend.
    pub fn compact(&mut self, at_rev: i64) -> KeepSet {
        let mut keep = KeepSet::new();
        self.keys.retain(|_, index| {
            index.compact(at_rev, &mut keep);
            !index.is_empty()
        });
        keep
    }

    /// The revisions [`compact`](Self::compact) at `at_rev` would keep, changing nothing.
    pub fn keep(&self, at_rev: i64) -> KeepSet {
        let mut keep = KeepSet::new();
        for index in self.keys.values() {
            index.keep(at_rev, &mut keep);
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    fn index_of(keys: &[(&str, i64)]) -> TreeIndex {
        let mut index = TreeIndex::new();
        for (key, main) in keys {
            index
                .put(key.as_bytes(), rev(*main))
                .expect("increasing revisions");
        }
        index
    }

    fn keys_in(index: &TreeIndex, key: &str, end: Option<&[u8]>) -> Vec<String> {
        index
            .range(key.as_bytes(), end)
            .map(|(key, _)| String::from_utf8(key.clone()).expect("utf8 test keys"))
            .collect()
    }

    #[test]
    fn range_end_of_maps_etcd_conventions() {
        assert_eq!(range_end_of(b""), None);
        assert_eq!(range_end_of(b"\0"), Some(&b""[..]));
        assert_eq!(range_end_of(b"z"), Some(&b"z"[..]));
        assert_eq!(range_end_of(b"\0\0"), Some(&b"\0\0"[..]));
    }

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        assert_eq!(prefix_end(b"/k3rs/"), b"/k3rs0");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"\0");
        assert_eq!(prefix_end(b""), b"\0");
    }

    #[test]
    fn range_without_end_is_the_single_key() {
        let index = index_of(&[("a", 2), ("ab", 3), ("b", 4)]);
        assert_eq!(keys_in(&index, "a", None), ["a"]);
        assert!(keys_in(&index, "aa", None).is_empty());
    }

    #[test]
    fn range_with_empty_end_is_unbounded() {
        let index = index_of(&[("a", 2), ("ab", 3), ("b", 4)]);
        assert_eq!(keys_in(&index, "ab", Some(b"")), ["ab", "b"]);
        assert_eq!(keys_in(&index, "\0", Some(b"")), ["a", "ab", "b"]);
    }

    #[test]
    fn range_with_end_is_half_open() {
        let index = index_of(&[("a", 2), ("ab", 3), ("b", 4)]);
        assert_eq!(keys_in(&index, "a", Some(b"b")), ["a", "ab"]);
        assert_eq!(keys_in(&index, "a", Some(b"ab")), ["a"]);
    }

    #[test]
    fn range_with_end_not_after_key_is_empty() {
        let index = index_of(&[("a", 2), ("ab", 3), ("b", 4)]);
        assert!(keys_in(&index, "b", Some(b"a")).is_empty());
        assert!(keys_in(&index, "b", Some(b"b")).is_empty());
    }

    #[test]
    fn revisions_respect_limit_but_total_counts_all() {
        let index = index_of(&[("a", 2), ("b", 3), ("c", 4)]);
        let (revisions, total) = index.revisions(b"a", Some(b""), 4, 2);
        assert_eq!(revisions, [rev(2), rev(3)]);
        assert_eq!(total, 3);
        let (revisions, total) = index.revisions(b"a", Some(b""), 3, 0);
        assert_eq!(revisions, [rev(2), rev(3)]);
        assert_eq!(total, 2);
    }

    #[test]
    fn deleted_keys_are_not_counted_after_their_tombstone() {
        let mut index = index_of(&[("a", 2), ("b", 3)]);
        index.tombstone(b"a", rev(4)).expect("a is live");
        assert_eq!(index.count(b"a", Some(b""), 3), 2);
        assert_eq!(index.count(b"a", Some(b""), 4), 1);
    }

    #[test]
    fn tombstone_of_unknown_key_fails() {
        let mut index = TreeIndex::new();
        assert_eq!(index.tombstone(b"x", rev(2)), Err(KeyIndexError::NotLive));
    }

    #[test]
    fn compaction_keeps_a_tombstone_at_it_and_drops_keys_deleted_before_it() {
        let mut index = index_of(&[("a", 2), ("b", 3)]);
        index.tombstone(b"a", rev(4)).expect("a is live");
        let keep = index.compact(4);
        assert_eq!(keep, [rev(3), rev(4)].into_iter().collect::<KeepSet>());
        assert!(index.key_index(b"a").is_some(), "a's tombstone at 4 stays");
        let keep = index.compact(5);
        assert_eq!(keep, [rev(3)].into_iter().collect::<KeepSet>());
        assert!(index.key_index(b"a").is_none());
        assert!(index.key_index(b"b").is_some());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn keep_matches_compact_without_changing_the_index() {
        let mut index = index_of(&[("a", 2), ("b", 3), ("a", 5)]);
        index.tombstone(b"b", rev(6)).expect("b is live");
        let before = index.clone();
        let kept = index.keep(5);
        assert_eq!(index, before);
        assert_eq!(kept, index.compact(5));
    }
}
