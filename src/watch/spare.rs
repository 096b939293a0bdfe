//! Buffers of hits already shown, handed back for the next ones.
//!
//! Each hit owns a few small heap buffers (perf's stack and registers, a snapshot's registers,
//! code words and task name). Allocated and freed a pass at a time, they made musl's allocator
//! map and unmap whole groups of slots: ~15,000 mmap/munmap pairs per 100,000 hits on this host
//! (examples/watch_hit_cost under strace), which in the lab's TCG guest was most of kmemd's
//! system time under a burst. Kept here, they are reused instead.

/// Spare buffers, at most [`Spare::MAX`] of each kind.
#[derive(Debug, Default)]
pub struct Spare {
    words: Vec<Vec<u64>>,
    names: Vec<String>,
}

impl Spare {
    /// Buffers kept of each kind: a few passes' worth; more are freed.
    pub const MAX: usize = 2048;

    /// An empty buffer of words, reused when one is kept.
    pub fn words(&mut self) -> Vec<u64> {
        self.words.pop().unwrap_or_default()
    }

    /// An empty string, reused when one is kept.
    pub fn name(&mut self) -> String {
        self.names.pop().unwrap_or_default()
    }

    pub fn keep_words(&mut self, mut v: Vec<u64>) {
        if self.words.len() < Self::MAX && v.capacity() > 0 {
            v.clear();
            self.words.push(v);
        }
    }

    pub fn keep_name(&mut self, mut s: String) {
        if self.names.len() < Self::MAX && s.capacity() > 0 {
            s.clear();
            self.names.push(s);
        }
    }

    /// How many buffers are kept (words, names).
    pub fn kept(&self) -> (usize, usize) {
        (self.words.len(), self.names.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_empty_and_the_pool_is_bounded() {
        let mut s = Spare::default();
        assert!(s.words().is_empty() && s.name().is_empty());
        let mut v = Vec::with_capacity(16);
        v.extend([1u64, 2, 3]);
        let ptr = v.as_ptr();
        s.keep_words(v);
        s.keep_name("swapper/0".to_string());
        s.keep_words(Vec::new()); // nothing to reuse in it: not kept
        assert_eq!(s.kept(), (1, 1));
        let w = s.words();
        assert!(w.is_empty() && w.capacity() >= 16 && w.as_ptr() == ptr);
        assert!(s.name().is_empty());
        for _ in 0..Spare::MAX + 10 {
            s.keep_words(Vec::with_capacity(1));
        }
        assert_eq!(s.kept().0, Spare::MAX);
    }
}
