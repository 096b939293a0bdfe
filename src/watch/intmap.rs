//! A HashMap for the integer keys watch mode consults on every hit (addresses, event ids,
//! thread ids).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A hasher for integer keys: SipHash's resistance to chosen keys buys nothing for keys the
/// kernel hands us, and it cost ~6 % of watch mode's CPU under a hit storm. Multiplicative
/// (FxHash's constant), so the high bits hashbrown uses for its control bytes depend on every
/// input bit.
#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A HashMap keyed by integers, hashed with `IntHasher`.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;
