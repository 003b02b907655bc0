//! A fast, deterministic hasher for the hub's own maps (watcher ids, stream ids, watched keys).
//!
//! The hub looks a watcher up several times per delivered event, so std's SipHash showed in the
//! profile. These keys come from the member itself or are only used to group watchers, so
//! flooding resistance is not needed; the same keys always hash alike, which also keeps every
//! traversal independent of a random seed (the simulation replays runs from a seed).

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Multiply-rotate hashing in the style of rustc's `FxHasher`.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut word = [0u8; 8];
            word[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 56));
        }
    }

    #[inline]
    fn write_u8(&mut self, value: u8) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u32(&mut self, value: u32) {
        self.add(u64::from(value));
    }

    #[inline]
    fn write_u64(&mut self, value: u64) {
        self.add(value);
    }

    #[inline]
    fn write_i64(&mut self, value: i64) {
        self.add(value as u64);
    }

    #[inline]
    fn write_usize(&mut self, value: usize) {
        self.add(value as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;
pub type FastSet<K> = HashSet<K, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, BuildHasherDefault};

    use super::*;

    #[test]
    fn equal_keys_hash_alike_and_lengths_are_told_apart() {
        let build = BuildHasherDefault::<FastHasher>::default();
        assert_eq!(build.hash_one((3u64, 9i64)), build.hash_one((3u64, 9i64)));
        assert_ne!(build.hash_one((3u64, 9i64)), build.hash_one((9u64, 3i64)));
        assert_ne!(
            build.hash_one(b"a".to_vec()),
            build.hash_one(b"a\0".to_vec())
        );
        let mut map: FastMap<Vec<u8>, u32> = FastMap::default();
        map.insert(b"/registry/pods/a".to_vec(), 1);
        assert_eq!(map.get(b"/registry/pods/a".as_slice()), Some(&1));
    }
}
