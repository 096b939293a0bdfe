//! A least-recently-used cache of decompressed pages, bounded in bytes so memory use stays small
//! on boards however large the dump is.

use std::collections::{BTreeMap, HashMap};

/// Default bound: 1 MiB (256 pages of 4 KiB, or 16 of QEMU's 64 KiB aarch64 blocks).
pub const DEFAULT_CACHE_BYTES: usize = 1 << 20;

pub struct PageCache {
    limit: usize,
    used: usize,
    tick: u64,
    pages: HashMap<u64, (u64, Vec<u8>)>,
    /// Last-use tick → key, oldest first.
    order: BTreeMap<u64, u64>,
}

impl PageCache {
    pub fn new(limit_bytes: usize) -> PageCache {
        PageCache {
            limit: limit_bytes,
            used: 0,
            tick: 0,
            pages: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of page data held.
    pub fn used_bytes(&self) -> usize {
        self.used
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// The page stored under `key`, marking it most recently used.
    pub fn get(&mut self, key: u64) -> Option<&[u8]> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.pages.get_mut(&key)?;
        self.order.remove(&entry.0);
        entry.0 = tick;
        self.order.insert(tick, key);
        Some(&entry.1)
    }

    /// Stores a page, evicting the least recently used ones to stay within the limit. A page
    /// larger than the whole limit is not stored.
    pub fn insert(&mut self, key: u64, data: Vec<u8>) {
        if let Some((tick, old)) = self.pages.remove(&key) {
            self.order.remove(&tick);
            self.used -= old.len();
        }
        if data.len() > self.limit {
            return;
        }
        while self.used + data.len() > self.limit {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, old)) = self.pages.remove(&victim) {
                self.used -= old.len();
            }
        }
        self.tick += 1;
        self.used += data.len();
        self.order.insert(self.tick, key);
        self.pages.insert(key, (self.tick, data));
    }

    /// Changes the bound, evicting as needed.
    pub fn set_limit(&mut self, limit_bytes: usize) {
        self.limit = limit_bytes;
        while self.used > self.limit {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((_, old)) = self.pages.remove(&victim) {
                self.used -= old.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used_within_the_byte_bound() {
        let mut c = PageCache::new(3 * 4096);
        for k in 0..3 {
            c.insert(k, vec![k as u8; 4096]);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(
            c.get(0).map(|p| p.first().copied()),
            Some(Some(0)),
            "touch 0: 1 becomes oldest"
        );
        c.insert(3, vec![3; 4096]);
        assert!(c.get(1).is_none(), "1 was least recently used");
        assert!(c.get(0).is_some() && c.get(2).is_some() && c.get(3).is_some());
        assert_eq!(c.used_bytes(), 3 * 4096);
        // A bigger page evicts as many as needed.
        c.insert(9, vec![9; 8192]);
        assert!(c.used_bytes() <= c.limit());
        assert_eq!(c.get(9).map(<[u8]>::len), Some(8192));
        // Replacing a key does not double-count it; oversize pages are not kept.
        c.insert(9, vec![8; 8192]);
        assert!(c.used_bytes() <= c.limit());
        c.insert(10, vec![0; 5 * 4096]);
        assert!(c.get(10).is_none());
        c.set_limit(4096);
        assert!(c.used_bytes() <= 4096);
        let mut none = PageCache::new(0);
        none.insert(1, vec![1]);
        assert!(none.is_empty());
    }
}
