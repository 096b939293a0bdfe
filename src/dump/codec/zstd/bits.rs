//! The two bit orders of zstd (RFC 8878 sections 4.1 and 4.2): FSE table descriptions are read
//! forward from bit 0 of the first byte; FSE and Huffman *streams* are read backward, starting
//! below the highest set bit of the last byte (the end marker) and going down to bit 0.
//!
//! Both readers return zeros for bits outside the slice instead of failing: the format itself
//! reads a few bits past the end in legal streams (the last FSE state update of the Huffman
//! weights, RFC 8878 section 4.2.1.2), and callers check afterwards where the reader stopped.

use super::corrupt;

/// Little-endian u64 of the 8 bytes at `at`; bytes past the end read as zeros.
#[inline]
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

#[inline]
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
    #[inline]
    pub fn peek(&self, n: u32) -> u32 {
        let word = load_le(self.data, self.pos / 8) >> (self.pos % 8);
        (word & mask(n)) as u32
    }

    #[inline]
    pub fn consume(&mut self, n: u32) {
        self.pos += n as usize;
    }

    #[inline]
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

/// Backward reader over one stream.
pub struct Backward<'a> {
    data: &'a [u8],
    /// Bits 0..pos are still unread. Negative once a reader went past the start of the stream.
    pos: isize,
}

impl<'a> Backward<'a> {
    /// Positions the reader just below the end marker; a last byte of 0 has none (corrupt).
    pub fn new(data: &'a [u8]) -> Result<Backward<'a>, String> {
        let last = data.last().copied().unwrap_or(0);
        if last == 0 {
            return Err(corrupt("a bitstream has no end marker"));
        }
        let marker = (data.len() - 1) * 8 + (7 - last.leading_zeros() as usize);
        let pos = isize::try_from(marker).map_err(|_| corrupt("a bitstream is too long"))?;
        Ok(Backward { data, pos })
    }

    /// The next `n` (at most 56) bits as a number whose top bit is the first bit read.
    #[inline]
    pub fn peek(&self, n: u32) -> u64 {
        let low = self.pos - n as isize;
        if low >= 0 {
            let low = low as usize;
            (load_le(self.data, low / 8) >> (low % 8)) & mask(n)
        } else if self.pos > 0 {
            // Part of the field lies before the start of the stream: those bits read as zeros.
            (load_le(self.data, 0) & mask(self.pos as u32)) << low.unsigned_abs()
        } else {
            0
        }
    }

    #[inline]
    pub fn consume(&mut self, n: u32) {
        self.pos -= n as isize;
    }

    #[inline]
    pub fn read(&mut self, n: u32) -> u64 {
        let v = self.peek(n);
        self.consume(n);
        v
    }

    /// True when every bit was consumed, no more and no fewer: how valid streams end.
    pub fn is_exact_end(&self) -> bool {
        self.pos == 0
    }

    /// True once a read went past the start of the stream.
    pub fn overflowed(&self) -> bool {
        self.pos < 0
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
