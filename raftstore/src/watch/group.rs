//! `WatcherGroup`: a set of watchers, looked up by the events of a batch they concern.
//!
//! Single-key watchers are found by hashing an event's key; range watchers are kept per
//! distinct range, so a range shared by many watchers (kube-apiserver watches one prefix per
//! resource type, and many clients watch the same prefixes) is checked once per event, not once
//! per watcher, and the watchers of that range share one list of selected events. Every
//! traversal is deterministic: watchers of a key or range come in (stream, watch id) order.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::fast_hash::{FastMap, FastSet};
use super::key_range::KeyRange;
use crate::pb::mvccpb::Event;

/// A watcher's identity in the hub: its stream and its watch id on that stream.
pub type WatcherKey = (u64, i64);

#[derive(Debug, Default)]
pub struct WatcherGroup {
    by_key: FastMap<Vec<u8>, BTreeSet<WatcherKey>>,
    by_range: FastMap<KeyRange, BTreeSet<WatcherKey>>,
    members: FastSet<WatcherKey>,
}

impl WatcherGroup {
    pub fn insert(&mut self, watcher: WatcherKey, range: &KeyRange) {
        if !self.members.insert(watcher) {
            return;
        }
        match range.single_key() {
            Some(key) => {
                self.by_key.entry(key.to_vec()).or_default().insert(watcher);
            }
            None => {
                self.by_range
                    .entry(range.clone())
                    .or_default()
                    .insert(watcher);
            }
        }
    }

    pub fn remove(&mut self, watcher: WatcherKey, range: &KeyRange) -> bool {
        if !self.members.remove(&watcher) {
            return false;
        }
        match range.single_key() {
            Some(key) => {
                if let Some(set) = self.by_key.get_mut(key) {
                    set.remove(&watcher);
                    if set.is_empty() {
                        self.by_key.remove(key);
                    }
                }
            }
            None => {
                if let Some(set) = self.by_range.get_mut(range) {
                    set.remove(&watcher);
                    if set.is_empty() {
                        self.by_range.remove(range);
                    }
                }
            }
        }
        true
    }

    pub fn contains(&self, watcher: &WatcherKey) -> bool {
        self.members.contains(watcher)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn members(&self) -> impl Iterator<Item = WatcherKey> + '_ {
        self.members.iter().copied()
    }

    /// Calls `found` for every set of watchers concerned by some of `events`, with the indices
    /// (ascending) of those events. Each watcher is in at most one set, so it is found at most
    /// once.
    pub fn for_each_selection(
        &self,
        events: &[Event],
        mut found: impl FnMut(&Arc<[u32]>, &BTreeSet<WatcherKey>),
    ) {
        if !self.by_key.is_empty() {
            // Events of one key, in order of the key's first event.
            let mut hits: Vec<(&BTreeSet<WatcherKey>, Vec<u32>)> = Vec::new();
            let mut slot_of: FastMap<&[u8], usize> = FastMap::default();
            for (index, event) in events.iter().enumerate() {
                let Some(kv) = &event.kv else { continue };
                let Some(watchers) = self.by_key.get(&kv.key) else {
                    continue;
                };
                let slot = *slot_of.entry(kv.key.as_slice()).or_insert_with(|| {
                    hits.push((watchers, Vec::new()));
                    hits.len() - 1
                });
                hits[slot].1.push(index as u32);
            }
            for (watchers, selected) in hits {
                found(&Arc::from(selected), watchers);
            }
        }
        for (range, watchers) in &self.by_range {
            let selected: Vec<u32> = events
                .iter()
                .enumerate()
                .filter(|(_, event)| event.kv.as_ref().is_some_and(|kv| range.contains(&kv.key)))
                .map(|(index, _)| index as u32)
                .collect();
            if !selected.is_empty() {
                found(&Arc::from(selected), watchers);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pb::mvccpb::KeyValue;

    fn put(key: &[u8]) -> Event {
        Event {
            r#type: 0,
            kv: Some(KeyValue {
                key: key.to_vec(),
                ..Default::default()
            }),
            prev_kv: None,
        }
    }

    fn watching(group: &WatcherGroup, key: &[u8]) -> Vec<WatcherKey> {
        let mut found = Vec::new();
        group.for_each_selection(&[put(key)], |selected, watchers| {
            assert_eq!(&selected[..], &[0]);
            found.extend(watchers.iter().copied());
        });
        found.sort();
        found
    }

    #[test]
    fn finds_single_key_and_range_watchers_once_each() {
        let mut group = WatcherGroup::default();
        let single = KeyRange::new(b"a/1", b"").expect("range");
        let prefix = KeyRange::new(b"a/", b"a0").expect("range");
        group.insert((1, 0), &single);
        group.insert((1, 1), &prefix);
        group.insert((2, 0), &prefix);
        group.insert((2, 0), &prefix);
        assert_eq!(group.len(), 3);
        assert_eq!(watching(&group, b"a/1"), vec![(1, 0), (1, 1), (2, 0)]);
        assert_eq!(watching(&group, b"a/2"), vec![(1, 1), (2, 0)]);
        assert!(watching(&group, b"b").is_empty());
    }

    #[test]
    fn removed_watchers_are_no_longer_found() {
        let mut group = WatcherGroup::default();
        let single = KeyRange::new(b"k", b"").expect("range");
        let from = KeyRange::new(b"k", &[0]).expect("range");
        group.insert((1, 0), &single);
        group.insert((1, 1), &from);
        assert!(group.remove((1, 0), &single));
        assert!(!group.remove((1, 0), &single));
        assert_eq!(watching(&group, b"k"), vec![(1, 1)]);
        assert!(group.remove((1, 1), &from));
        assert!(group.is_empty());
    }

    #[test]
    fn a_batch_selects_each_watchers_events_in_order_once() {
        let mut group = WatcherGroup::default();
        let single = KeyRange::new(b"a/1", b"").expect("range");
        let prefix = KeyRange::new(b"a/", b"a0").expect("range");
        group.insert((1, 0), &single);
        group.insert((1, 1), &prefix);
        group.insert((2, 0), &prefix);
        let batch = [put(b"a/1"), put(b"b"), put(b"a/2"), put(b"a/1")];
        let mut found = Vec::new();
        group.for_each_selection(&batch, |selected, watchers| {
            for watcher in watchers {
                found.push((*watcher, selected.to_vec()));
            }
        });
        found.sort();
        assert_eq!(
            found,
            vec![
                ((1, 0), vec![0, 3]),
                ((1, 1), vec![0, 2, 3]),
                ((2, 0), vec![0, 2, 3]),
            ]
        );
    }
}
