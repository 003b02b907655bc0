//! `WatcherGroup`: a set of watchers looked up by the key of an event.
//!
//! Single-key watchers are found by hashing the key; range watchers are checked one by one
//! (a few wide prefix watches is the common case: kube-apiserver watches one prefix per
//! resource type).

use std::collections::{HashMap, HashSet};

use super::key_range::KeyRange;

/// A watcher's identity in the hub: its stream and its watch id on that stream.
pub type WatcherKey = (u64, i64);

#[derive(Debug, Default)]
pub struct WatcherGroup {
    by_key: HashMap<Vec<u8>, HashSet<WatcherKey>>,
    ranged: HashMap<WatcherKey, KeyRange>,
    members: HashSet<WatcherKey>,
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
                self.ranged.insert(watcher, range.clone());
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
                self.ranged.remove(&watcher);
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

    /// Calls `found` once for every watcher whose range contains `key`.
    pub fn for_each_watching(&self, key: &[u8], mut found: impl FnMut(WatcherKey)) {
        if let Some(set) = self.by_key.get(key) {
            set.iter().copied().for_each(&mut found);
        }
        for (watcher, range) in &self.ranged {
            if range.contains(key) {
                found(*watcher);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watching(group: &WatcherGroup, key: &[u8]) -> Vec<WatcherKey> {
        let mut found = Vec::new();
        group.for_each_watching(key, |watcher| found.push(watcher));
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
}
