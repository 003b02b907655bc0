//! `KeyIndex`: the revisions of one key, in generations — etcd's `keyIndex`, rule for rule.
//!
//! A *generation* is one life of the key: from the put that created it to the tombstone that
//! deleted it. Its `revs` are the revisions of every change in that life (the tombstone's last),
//! `version` counts the puts of the whole life (it survives compaction), and `created` is the
//! main revision of the creating put. The last generation is the open one: empty when the key is
//! deleted, otherwise the key is live.
//!
//! Guarantees (each matches etcd's `key_index.go`):
//! - [`KeyIndex::get`] answers what a read at a revision sees: the change's revision, the
//!   creation revision and the version then; nothing when the key did not exist then.
//! - [`KeyIndex::compact`] at `at_rev` drops every generation whose tombstone is at or below
//!   `at_rev`, and inside the first remaining generation every revision below the latest one
//!   `<= at_rev`, which it adds to the keep set; a tombstone is never kept.
//! - [`KeyIndex::keep`] adds to the keep set exactly what `compact` would, without changing
//!   anything.
//!
//! etcd also keeps the sub part of a generation's creation revision; nothing observable reads it
//! (etcd itself sets it to 0 when it rebuilds the index from disk), so only `main` is kept here.

use std::collections::BTreeSet;

use super::revision::Revision;

/// The revisions a compaction keeps in the backend.
pub type KeepSet = BTreeSet<Revision>;

/// One life of a key, from its creating put to its tombstone (or the present).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Generation {
    /// Number of puts in this life, including ones compacted away.
    pub version: i64,
    /// Main revision of the put that created this life.
    pub created: i64,
    /// Revisions of the changes still indexed, ascending; the last is the tombstone in every
    /// generation but the open one.
    pub revs: Vec<Revision>,
}

impl Generation {
    pub fn is_empty(&self) -> bool {
        self.revs.is_empty()
    }

    /// Index of the latest revision with `main <= at_rev`.
    fn latest_at(&self, at_rev: i64) -> Option<usize> {
        self.revs
            .partition_point(|rev| rev.main <= at_rev)
            .checked_sub(1)
    }

    fn last_main(&self) -> Option<i64> {
        self.revs.last().map(|rev| rev.main)
    }
}

/// What a read at a revision sees of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRevision {
    /// Revision of the change the read sees (the row holding the value).
    pub modified: Revision,
    /// Main revision of the put that created the key's current life.
    pub created: i64,
    /// The key's version at that change.
    pub version: i64,
}

/// Why a change was refused by the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIndexError {
    #[error("revision {new} is not after the key's last change {last}")]
    NotAfterLastChange { last: Revision, new: Revision },
    #[error("the key is not live, so it cannot be deleted")]
    NotLive,
}

/// Every revision of one key, in generations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    modified: Revision,
    generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyIndex {
    /// An index with one empty (open) generation: no revision yet.
    pub fn new() -> Self {
        Self {
            modified: Revision::default(),
            generations: vec![Generation::default()],
        }
    }

    /// The index rebuilt from the first stored row of a key: a live generation created at
    /// `created`, holding `modified`, at `version`.
    pub fn restore(created: i64, modified: Revision, version: i64) -> Self {
        Self {
            modified,
            generations: vec![Generation {
                version,
                created,
                revs: vec![modified],
            }],
        }
    }

    /// The index of a key whose only row left is its tombstone at `tombstone` (the compaction
    /// at that revision kept it, etcd #18089): a deleted generation holding just it. Its
    /// creation revision is unknown (compacted away), as in etcd.
    pub fn restore_tombstone(tombstone: Revision) -> Self {
        let mut index = Self::restore(0, tombstone, 1);
        index.generations.push(Generation::default());
        index
    }

    /// Revision of the key's last change (0.0 when none).
    pub fn modified(&self) -> Revision {
        self.modified
    }

    pub fn generations(&self) -> &[Generation] {
        &self.generations
    }

    /// Whether nothing is indexed (compaction removed every generation, or no change yet).
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].is_empty()
    }

    /// Whether the key exists now (its open generation has a revision).
    pub fn is_live(&self) -> bool {
        self.generations
            .last()
            .is_some_and(|generation| !generation.is_empty())
    }

    /// Records a put at `rev`, which must be after every earlier change.
    pub fn put(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        if rev <= self.modified {
            return Err(KeyIndexError::NotAfterLastChange {
                last: self.modified,
                new: rev,
            });
        }
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let open = self
            .generations
            .last_mut()
            .expect("a generation was just ensured");
        if open.revs.is_empty() {
            open.created = rev.main;
        }
        open.revs.push(rev);
        open.version += 1;
        self.modified = rev;
        Ok(())
    }

    /// Records a deletion at `rev`: the tombstone ends the open generation and a new, empty one
    /// opens. Fails when the key is not live.
    pub fn tombstone(&mut self, rev: Revision) -> Result<(), KeyIndexError> {
        if !self.is_live() {
            return Err(KeyIndexError::NotLive);
        }
        self.put(rev)?;
        self.generations.push(Generation::default());
        Ok(())
    }

    /// What a read at `at_rev` sees, or `None` when the key did not exist then (or that part of
    /// its history was compacted away).
    pub fn get(&self, at_rev: i64) -> Option<KeyRevision> {
        let generation = self.find_generation(at_rev)?;
        let n = generation.latest_at(at_rev)?;
        let newer = (generation.revs.len() - n - 1) as i64;
        Some(KeyRevision {
            modified: generation.revs[n],
            created: generation.created,
            version: generation.version - newer,
        })
    }

    /// The generation holding the key's state at `rev`, if the key existed then.
    fn find_generation(&self, rev: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (position, generation) in self.generations.iter().enumerate().rev() {
            let (Some(first), Some(final_main)) = (generation.revs.first(), generation.last_main())
            else {
                continue;
            };
            if position != last && final_main <= rev {
                // Deleted at or before `rev` and not recreated by then.
                return None;
            }
            if first.main <= rev {
                return Some(generation);
            }
        }
        None
    }

    /// Revisions of the changes after main revision `rev` (from `rev` itself on), oldest first;
    /// of several changes in one main revision only the last is returned.
    pub fn since(&self, rev: i64) -> Vec<Revision> {
        let since = Revision::new(rev, 0);
        let mut start = self.generations.len().saturating_sub(1);
        while start > 0 {
            let generation = &self.generations[start];
            if !generation.is_empty() && since > Revision::new(generation.created, 0) {
                break;
            }
            start -= 1;
        }
        let mut revs: Vec<Revision> = Vec::new();
        for generation in &self.generations[start..] {
            for &r in &generation.revs {
                if since > r {
                    continue;
                }
                match revs.last_mut() {
                    Some(last) if last.main == r.main => *last = r,
                    _ => revs.push(r),
                }
            }
        }
        revs
    }

    /// Compacts away the history at or below `at_rev`, adding the revisions that must stay in
    /// the backend to `keep`. A tombstone exactly at `at_rev` stays (in the backend, and in the
    /// index unless the key was created again in the same revision) until the next
    /// compaction, so that a watch from the compact revision still gets that delete (etcd
    /// #18089); a key deleted before `at_rev` leaves the index empty. Does nothing to an
    /// empty index.
    pub fn compact(&mut self, at_rev: i64, keep: &mut KeepSet) {
        if self.is_empty() {
            return;
        }
        let point = self.compaction_point(at_rev);
        keep.extend(point.tombstones_at);
        let generation = &mut self.generations[point.gen_index];
        if let Some(rev_index) = point.rev_index {
            keep.insert(generation.revs[rev_index]);
            generation.revs.drain(..rev_index);
        }
        self.generations.drain(..point.gen_index);
    }

    /// Adds to `keep` the revisions [`compact`](Self::compact) at `at_rev` would keep, except
    /// tombstones at `at_rev`: the hash of the kept history (HashKV) stays what etcd computes.
    pub fn keep(&self, at_rev: i64, keep: &mut KeepSet) {
        if self.is_empty() {
            return;
        }
        let point = self.compaction_point(at_rev);
        let generation = &self.generations[point.gen_index];
        if let Some(rev_index) = point.rev_index {
            let deleted_generation = point.gen_index != self.generations.len() - 1;
            let is_tombstone = deleted_generation && rev_index + 1 == generation.revs.len();
            if !is_tombstone {
                keep.insert(generation.revs[rev_index]);
            }
        }
    }

    /// Where a compaction at `at_rev` cuts: the generation holding the key's state at
    /// `at_rev` (the one deleted exactly then, or the first not deleted by then), the latest
    /// revision `<= at_rev` in it, and the tombstones at `at_rev` of generations before it (the
    /// key deleted and created again in one revision), which a watch from `at_rev` needs.
    fn compaction_point(&self, at_rev: i64) -> CompactionPoint {
        let last = self.generations.len() - 1;
        let mut gen_index = 0;
        let mut tombstones_at = Vec::new();
        while gen_index < last {
            let Some(tombstone) = self.generations[gen_index].revs.last().copied() else {
                gen_index += 1;
                continue;
            };
            if tombstone.main > at_rev {
                break;
            }
            if tombstone.main == at_rev {
                let recreated_then = self.generations[gen_index + 1]
                    .revs
                    .first()
                    .is_some_and(|first| first.main <= at_rev);
                if !recreated_then {
                    break;
                }
                tombstones_at.push(tombstone);
            }
            gen_index += 1;
        }
        CompactionPoint {
            gen_index,
            rev_index: self.generations[gen_index].latest_at(at_rev),
            tombstones_at,
        }
    }
}

/// See [`KeyIndex::compaction_point`].
struct CompactionPoint {
    gen_index: usize,
    rev_index: Option<usize>,
    tombstones_at: Vec<Revision>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    fn generation(version: i64, created: i64, revs: &[Revision]) -> Generation {
        Generation {
            version,
            created,
            revs: revs.to_vec(),
        }
    }

    /// etcd's test key: put 2, put 4, tombstone 6, put 8, put 10, tombstone 12, put 14,
    /// put 14.1, tombstone 16.
    fn etcd_test_index() -> KeyIndex {
        let mut index = KeyIndex::new();
        index.put(rev(2)).expect("put 2");
        index.put(rev(4)).expect("put 4");
        index.tombstone(rev(6)).expect("tombstone 6");
        index.put(rev(8)).expect("put 8");
        index.put(rev(10)).expect("put 10");
        index.tombstone(rev(12)).expect("tombstone 12");
        index.put(rev(14)).expect("put 14");
        index.put(Revision::new(14, 1)).expect("put 14.1");
        index.tombstone(rev(16)).expect("tombstone 16");
        index
    }

    /// The generations and keep set etcd's `TestKeyIndexCompactAndKeep` expects after a
    /// compaction of [`etcd_test_index`] at `at_rev`.
    fn expected_after_compaction(at_rev: i64) -> (Vec<Generation>, Vec<Revision>) {
        let first = |revs: &[Revision]| generation(3, 2, revs);
        let second = |revs: &[Revision]| generation(3, 8, revs);
        let third = |revs: &[Revision]| generation(3, 14, revs);
        let all_second = [rev(8), rev(10), rev(12)];
        let all_third = [rev(14), Revision::new(14, 1), rev(16)];
        let open = Generation::default();
        match at_rev {
            1 => (
                vec![
                    first(&[rev(2), rev(4), rev(6)]),
                    second(&all_second),
                    third(&all_third),
                    open,
                ],
                vec![],
            ),
            2 | 3 => (
                vec![
                    first(&[rev(2), rev(4), rev(6)]),
                    second(&all_second),
                    third(&all_third),
                    open,
                ],
                vec![rev(2)],
            ),
            4 | 5 => (
                vec![
                    first(&[rev(4), rev(6)]),
                    second(&all_second),
                    third(&all_third),
                    open,
                ],
                vec![rev(4)],
            ),
            // A tombstone at the compaction point stays until the next compaction.
            6 => (
                vec![
                    first(&[rev(6)]),
                    second(&all_second),
                    third(&all_third),
                    open,
                ],
                vec![rev(6)],
            ),
            7 => (vec![second(&all_second), third(&all_third), open], vec![]),
            8 | 9 => (
                vec![second(&all_second), third(&all_third), open],
                vec![rev(8)],
            ),
            10 | 11 => (
                vec![second(&[rev(10), rev(12)]), third(&all_third), open],
                vec![rev(10)],
            ),
            12 => (
                vec![second(&[rev(12)]), third(&all_third), open],
                vec![rev(12)],
            ),
            13 => (vec![third(&all_third), open], vec![]),
            14 | 15 => (
                vec![third(&[Revision::new(14, 1), rev(16)]), open],
                vec![Revision::new(14, 1)],
            ),
            16 => (vec![third(&[rev(16)]), open], vec![rev(16)]),
            17 => (vec![open], vec![]),
            other => panic!("no expectation for compaction at {other}"),
        }
    }

    #[test]
    fn compaction_of_a_fresh_index_keeps_what_etcd_keeps() {
        for at_rev in 1..=17 {
            let mut index = etcd_test_index();
            let mut keep = KeepSet::new();
            index.compact(at_rev, &mut keep);
            let (generations, kept) = expected_after_compaction(at_rev);
            assert_eq!(
                index.generations(),
                generations.as_slice(),
                "compaction at {at_rev}"
            );
            assert_eq!(
                keep,
                kept.into_iter().collect::<KeepSet>(),
                "keep set at {at_rev}"
            );
            assert_eq!(
                index.modified(),
                rev(16),
                "modified survives compaction at {at_rev}"
            );
        }
    }

    #[test]
    fn a_key_deleted_and_created_again_in_the_compacted_revision_keeps_both_rows() {
        let fresh = || {
            let mut index = KeyIndex::new();
            index.put(rev(2)).expect("put 2");
            index.tombstone(rev(3)).expect("tombstone 3.0");
            index.put(Revision::new(3, 1)).expect("put 3.1");
            index
        };
        let mut index = fresh();
        let mut keep = KeepSet::new();
        index.compact(3, &mut keep);
        let both = [rev(3), Revision::new(3, 1)];
        assert_eq!(
            keep,
            both.into_iter().collect::<KeepSet>(),
            "a watch from 3 sees both"
        );
        assert_eq!(
            index.get(3).map(|found| found.modified),
            Some(Revision::new(3, 1))
        );
        let mut hashed = KeepSet::new();
        fresh().keep(3, &mut hashed);
        assert_eq!(
            hashed,
            [Revision::new(3, 1)].into_iter().collect::<KeepSet>()
        );
        let mut keep = KeepSet::new();
        index.compact(4, &mut keep);
        assert_eq!(keep, [Revision::new(3, 1)].into_iter().collect::<KeepSet>());
    }

    #[test]
    fn repeated_compaction_keeps_what_etcd_keeps() {
        let mut index = etcd_test_index();
        for at_rev in 1..=17 {
            let mut keep = KeepSet::new();
            index.compact(at_rev, &mut keep);
            let (generations, kept) = expected_after_compaction(at_rev);
            assert_eq!(
                index.generations(),
                generations.as_slice(),
                "compaction at {at_rev}"
            );
            assert_eq!(
                keep,
                kept.into_iter().collect::<KeepSet>(),
                "keep set at {at_rev}"
            );
        }
        assert!(index.is_empty());
    }

    #[test]
    fn keep_adds_what_compact_keeps_and_changes_nothing() {
        for at_rev in 1..=17 {
            let index = etcd_test_index();
            let mut kept_by_keep = KeepSet::new();
            index.keep(at_rev, &mut kept_by_keep);
            assert_eq!(
                index,
                etcd_test_index(),
                "keep at {at_rev} changed the index"
            );
            let mut compacted = etcd_test_index();
            let mut kept_by_compact = KeepSet::new();
            compacted.compact(at_rev, &mut kept_by_compact);
            // Only a tombstone at the compaction point (6, 12, 16) differs: compaction keeps
            // it for watchers, the hash leaves it out as etcd's does.
            if [6, 12, 16].contains(&at_rev) {
                assert!(
                    kept_by_compact.remove(&rev(at_rev)),
                    "tombstone kept at {at_rev}"
                );
            }
            assert_eq!(kept_by_keep, kept_by_compact, "keep set at {at_rev}");
        }
    }

    #[test]
    fn compaction_past_the_last_tombstone_empties_the_index() {
        let mut index = etcd_test_index();
        index.compact(16, &mut KeepSet::new());
        assert!(!index.is_empty(), "the tombstone at 16 stays for watchers");
        assert_eq!(index.get(16), None, "the key is deleted at 16");
        index.compact(17, &mut KeepSet::new());
        assert!(index.is_empty());
        assert!(!index.is_live());
    }

    #[test]
    fn get_sees_each_generation_as_etcd_does() {
        let mut index = etcd_test_index();
        index.compact(4, &mut KeepSet::new());
        let found = |modified: Revision, created: i64, version: i64| {
            Some(KeyRevision {
                modified,
                created,
                version,
            })
        };
        let cases = [
            (17, None),
            (16, None),
            (15, found(Revision::new(14, 1), 14, 2)),
            (14, found(Revision::new(14, 1), 14, 2)),
            (13, None),
            (12, None),
            (11, found(rev(10), 8, 2)),
            (10, found(rev(10), 8, 2)),
            (9, found(rev(8), 8, 1)),
            (8, found(rev(8), 8, 1)),
            (7, None),
            (6, None),
            (5, found(rev(4), 2, 2)),
            (4, found(rev(4), 2, 2)),
            (3, None),
            (2, None),
            (1, None),
            (0, None),
        ];
        for (at_rev, expected) in cases {
            assert_eq!(index.get(at_rev), expected, "get at {at_rev}");
        }
    }

    #[test]
    fn since_lists_later_changes_with_the_last_sub_of_each_main() {
        let mut index = etcd_test_index();
        index.compact(4, &mut KeepSet::new());
        let all = [
            rev(4),
            rev(6),
            rev(8),
            rev(10),
            rev(12),
            Revision::new(14, 1),
            rev(16),
        ];
        let cases: [(i64, &[Revision]); 18] = [
            (17, &[]),
            (16, &all[6..]),
            (15, &all[6..]),
            (14, &all[5..]),
            (13, &all[5..]),
            (12, &all[4..]),
            (11, &all[4..]),
            (10, &all[3..]),
            (9, &all[3..]),
            (8, &all[2..]),
            (7, &all[2..]),
            (6, &all[1..]),
            (5, &all[1..]),
            (4, &all),
            (3, &all),
            (2, &all),
            (1, &all),
            (0, &all),
        ];
        for (since, expected) in cases {
            assert_eq!(index.since(since), expected, "since {since}");
        }
    }

    #[test]
    fn put_counts_versions_per_generation() {
        let mut index = KeyIndex::new();
        index.put(rev(5)).expect("put");
        index.put(Revision::new(5, 1)).expect("put");
        index.put(rev(7)).expect("put");
        assert_eq!(
            index.get(7),
            Some(KeyRevision {
                modified: rev(7),
                created: 5,
                version: 3
            })
        );
        index.tombstone(rev(9)).expect("tombstone");
        index.put(rev(11)).expect("put");
        assert_eq!(
            index.get(11),
            Some(KeyRevision {
                modified: rev(11),
                created: 11,
                version: 1
            })
        );
    }

    #[test]
    fn put_rejects_a_revision_not_after_the_last_change() {
        let mut index = KeyIndex::new();
        index.put(rev(5)).expect("put");
        assert_eq!(
            index.put(rev(5)),
            Err(KeyIndexError::NotAfterLastChange {
                last: rev(5),
                new: rev(5)
            })
        );
        assert!(index.put(rev(4)).is_err());
    }

    #[test]
    fn tombstone_of_a_deleted_key_fails() {
        let mut index = KeyIndex::new();
        assert_eq!(index.tombstone(rev(2)), Err(KeyIndexError::NotLive));
        index.put(rev(3)).expect("put");
        index.tombstone(rev(4)).expect("tombstone");
        assert_eq!(index.tombstone(rev(5)), Err(KeyIndexError::NotLive));
    }

    #[test]
    fn restore_resumes_version_and_creation() {
        let mut index = KeyIndex::restore(3, rev(9), 4);
        assert_eq!(
            index.get(9),
            Some(KeyRevision {
                modified: rev(9),
                created: 3,
                version: 4
            })
        );
        index.put(rev(10)).expect("put");
        assert_eq!(
            index.get(10),
            Some(KeyRevision {
                modified: rev(10),
                created: 3,
                version: 5
            })
        );
    }
}
