//! The two bit orders of zstd (RFC 8878 sections 4.1 and 4.2): FSE table descriptions are read
//! forward from bit 0 of the first byte; FSE and Huffman *streams* are read backward, starting
//! below the highest set bit of the last byte (the end marker) and going down to bit 0.
//!
//! Both readers return zeros for bits outside the slice instead of failing: the format itself
//! reads a few bits past the end in legal streams (the last FSE state update of the Huffman
//! weights, RFC 8878 section 4.2.1.2), and callers check afterwards where the reader stopped.

use super::corrupt;

/// Little-endian u64 of the 8 bytes at `at`; bytes past the end read as zeros.
#[inline(always)]
fn load_le(data: &[u8], at: usize) -> u64 {
    if let Some(chunk) = at.checked_add(8).and_then(|end| data.get(at..end)) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        return u64::from_le_bytes(w);
    }
    let mut w = [0u8; 8];
    let tail = data.get(at..).unwrap_or_default();
    w.iter_mut().zip(tail).for_each(|(d, s)| *d = *s);
    u64::from_le_bytes(w)
}

#[inline(always)]
fn mask(n: u32) -> u64 {
    (1u64 << n) - 1
}

/// Forward reader: bit `pos` is bit `pos % 8` of byte `pos / 8`.
pub struct Forward<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Forward<'a> {
    pub fn new(data: &'a [u8]) -> Forward<'a> {
        Forward { data, pos: 0 }
    }

    /// The next `n` (at most 32) bits, not consumed.
    #[inline(always)]
    pub fn peek(&self, n: u32) -> u32 {
        let word = load_le(self.data, self.pos / 8) >> (self.pos % 8);
        (word & mask(n)) as u32
    }

    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        self.pos += n as usize;
    }

    #[inline(always)]
    pub fn read(&mut self, n: u32) -> u32 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// Whole bytes touched so far (a table description ends on a byte boundary).
    pub fn bytes_used(&self) -> usize {
        self.pos.div_ceil(8)
    }
}

/// Backward reader over one stream. It keeps 8 bytes of the stream in a register, read from the
/// top down, and slides that window toward the start of the stream as bits are used, so a read
/// is a shift and a mask (Huffman literals take one read per byte of output).
pub struct Backward<'a> {
    data: &'a [u8],
    /// Where the 8-byte window starts (0 for streams shorter than 8 bytes, which sit in its low
    /// bytes with zeros above).
    start: usize,
    /// The window as a little-endian number: its top bit is the next bit of the stream.
    window: u64,
    /// Bits of the window already used, from the top. Above 64 once a reader went past the
    /// start of the stream (only possible with `start` 0); the missing bits read as zeros.
    used: u32,
}

impl<'a> Backward<'a> {
    /// Positions the reader just below the end marker; a last byte of 0 has none (corrupt).
    pub fn new(data: &'a [u8]) -> Result<Backward<'a>, String> {
        let last = data.last().copied().unwrap_or(0);
        if last == 0 {
            return Err(corrupt("a bitstream has no end marker"));
        }
        let start = data.len().saturating_sub(8);
        // Bytes above a short stream are zeros in the window: skip them, then the padding zeros
        // and the marker bit of the last byte.
        let padding = (8 - (data.len() - start)) as u32 * 8;
        Ok(Backward {
            data,
            start,
            window: load_le(data, start),
            used: padding + last.leading_zeros() + 1,
        })
    }

    /// Slides the window down once 32 of its bits are used, so that a read of up to 31 bits
    /// finds them in it (bits past the start of the stream shift in as zeros).
    #[inline(always)]
    fn refill(&mut self) {
        if self.used < 32 || self.start == 0 {
            return;
        }
        let step = ((self.used / 8) as usize).min(self.start);
        self.start -= step;
        self.used -= step as u32 * 8;
        self.window = load_le(self.data, self.start);
    }

    /// The next `n` (at most 31) bits as a number whose top bit is the first bit read.
    #[inline(always)]
    pub fn peek(&mut self, n: u32) -> u64 {
        self.refill();
        self.peek_in_window(n)
    }

    /// `peek` without sliding the window: right only within `reads_in_window`'s budget.
    #[inline(always)]
    pub fn peek_in_window(&self, n: u32) -> u64 {
        let top = self.window.checked_shl(self.used).unwrap_or(0);
        // Two shifts so that n = 0 gives 0 (a shift by 64 would not).
        (top >> 1) >> (63 - n)
    }

    /// Slides the window, then says how many reads of up to `n` bits `peek_in_window` can serve
    /// before the next slide: the hot loop of Huffman decoding checks once per few symbols.
    #[inline(always)]
    pub fn reads_in_window(&mut self, n: u32) -> usize {
        self.refill();
        if self.start == 0 {
            usize::MAX // nothing left to slide in; bits past the start read as zeros anyway
        } else {
            (64u32.saturating_sub(self.used) / n.max(1)) as usize
        }
    }

    #[inline(always)]
    pub fn consume(&mut self, n: u32) {
        self.used += n;
    }

    #[inline(always)]
    pub fn read(&mut self, n: u32) -> u64 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// Unread bits; negative once a reader went past the start of the stream.
    fn remaining(&self) -> i64 {
        self.start as i64 * 8 + 64 - i64::from(self.used)
    }

    /// True when every bit was consumed, no more and no fewer: how valid streams end.
    pub fn is_exact_end(&self) -> bool {
        self.remaining() == 0
    }

    /// True once a read went past the start of the stream.
    pub fn overflowed(&self) -> bool {
        self.remaining() < 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backward_reads_from_the_end_marker_down() {
        // RFC 8878 section 4.2.2's example ("0145" with codes 1, 01, 0001, 0000): the last byte
        // holds the marker and the first codes, read from the top down.
        let data = [0b0001_0000, 0b0000_1101];
        let mut b = Backward::new(&data).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.read(1), 1);
        assert_eq!(b.read(2), 0b01);
        assert_eq!(b.read(4), 0b0001);
        assert_eq!(b.peek(4), 0b0000);
        b.consume(4);
        assert!(b.is_exact_end());
        // Past the start: zeros, and the reader knows.
        assert_eq!(b.read(3), 0);
        assert!(b.overflowed());
        assert!(Backward::new(&[0x12, 0]).is_err());
        assert!(Backward::new(&[]).is_err());
    }

    #[test]
    fn backward_pads_a_field_that_straddles_the_start_with_zeros() {
        let data = [0b1000_0101]; // marker at bit 7, then 0000101
        let mut b = Backward::new(&data).unwrap_or_else(|e| panic!("{e}"));
        b.consume(4);
        // Three bits left (101); asking for 5 gives 101 followed by two zero bits.
        assert_eq!(b.read(5), 0b10100);
        assert!(b.overflowed());
    }

    /// A long stream read in uneven pieces gives the same bits as a bit-by-bit walk down from
    /// the marker: the sliding window never skips or repeats a bit.
    #[test]
    fn backward_window_slides_without_losing_bits() {
        let mut data: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        data.push(0x01); // marker at bit 0 of the last byte: nothing useful in it
        let bit = |i: usize| (data[i / 8] >> (i % 8)) & 1;
        let mut b = Backward::new(&data).unwrap_or_else(|e| panic!("{e}"));
        let mut pos = 200 * 8;
        for n in (0..).map(|i| [0u32, 1, 7, 31, 13, 8, 24, 3][i % 8]) {
            if pos < n as usize {
                break;
            }
            let want = (0..n as usize).fold(0u64, |v, k| (v << 1) | u64::from(bit(pos - 1 - k)));
            assert_eq!(b.read(n), want, "{n} bits at {pos}");
            pos -= n as usize;
        }
        b.consume(pos as u32);
        assert!(b.is_exact_end());
        assert_eq!(b.read(2), 0);
        assert!(b.overflowed());
    }

    #[test]
    fn forward_reads_little_endian_bits() {
        let data = [0b1010_0011, 0xff];
        let mut f = Forward::new(&data);
        assert_eq!(f.read(4), 0b0011);
        assert_eq!(f.read(6), 0b11_1010);
        assert_eq!(f.bytes_used(), 2);
        assert_eq!(f.read(12), 0x3f);
    }
}
