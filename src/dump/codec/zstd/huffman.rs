//! Huffman-coded literals (RFC 8878 section 4.2): the tree description (weights, direct or
//! FSE-compressed) and the table-driven decoding of one stream.

use super::bits::Backward;
use super::fse;
use super::{corrupt, Coverage};

/// Longest prefix code the format allows (RFC 8878 4.2.1).
pub const MAX_BITS: u32 = 11;
/// Accuracy log limit of the FSE table that compresses the weights.
const WEIGHTS_MAX_LOG: u8 = 6;

#[derive(Clone, Copy, Default)]
struct Entry {
    symbol: u8,
    nb_bits: u8,
}

/// A decoding table indexed by the next `max_bits` bits of the stream. Storage is reused.
pub struct Table {
    max_bits: u32,
    entries: Vec<Entry>,
}

impl Table {
    pub fn new() -> Table {
        Table {
            max_bits: 0,
            entries: Vec::with_capacity(1 << MAX_BITS),
        }
    }

    /// Reads a Huffman_Tree_Description from the start of `input` and builds the table; returns
    /// the bytes it used. `scratch` is the FSE table the compressed weights are decoded with.
    pub fn read_description(
        &mut self,
        input: &[u8],
        scratch: &mut fse::Table,
        cov: &mut Coverage,
    ) -> Result<usize, String> {
        let header = usize::from(*input.first().ok_or_else(|| corrupt("missing Huffman tree"))?);
        let mut weights = [0u8; 256];
        let (count, used) = if header < 128 {
            cov.fse_weights += 1;
            let body = input
                .get(1..1 + header)
                .ok_or_else(|| corrupt("the Huffman tree runs past the literals"))?;
            (fse_weights(body, scratch, &mut weights)?, 1 + header)
        } else {
            // Direct representation: 4 bits a weight, high nibble first.
            cov.direct_weights += 1;
            let count = header - 127;
            let body = input
                .get(1..1 + count.div_ceil(2))
                .ok_or_else(|| corrupt("the Huffman tree runs past the literals"))?;
            for (pair, byte) in weights.chunks_exact_mut(2).zip(body) {
                if let [hi, lo] = pair {
                    *hi = byte >> 4;
                    *lo = byte & 0xf;
                }
            }
            (count, 1 + count.div_ceil(2))
        };
        self.build(&mut weights, count)?;
        Ok(used)
    }

    /// Completes the weights with the implied last one and fills the table (RFC 8878 4.2.1.3:
    /// symbols sorted by weight, then by value, get consecutive codes from the lowest weight up).
    fn build(&mut self, weights: &mut [u8; 256], count: usize) -> Result<(), String> {
        let mut per_weight = [0u32; MAX_BITS as usize + 2];
        let mut total = 0u32;
        for &w in weights.iter().take(count) {
            let slot = per_weight
                .get_mut(usize::from(w))
                .filter(|_| u32::from(w) <= MAX_BITS)
                .ok_or_else(|| corrupt("a Huffman weight is above 11"))?;
            *slot += 1;
            if w > 0 {
                total += 1 << (w - 1);
            }
        }
        if total == 0 {
            return Err(corrupt("a Huffman tree has no symbol"));
        }
        // The last weight completes the total to the next power of two, which sets the depth.
        let max_bits = 32 - total.leading_zeros();
        if max_bits > MAX_BITS {
            return Err(corrupt("a Huffman tree is deeper than 11 bits"));
        }
        let left = (1u32 << max_bits) - total;
        if !left.is_power_of_two() {
            return Err(corrupt(
                "a Huffman tree's weights do not complete to a power of two",
            ));
        }
        let last = left.trailing_zeros() + 1;
        let slot = weights
            .get_mut(count)
            .ok_or_else(|| corrupt("a Huffman tree has more than 256 symbols"))?;
        *slot = last as u8;
        if let Some(n) = per_weight.get_mut(last as usize) {
            *n += 1;
        }
        // A complete prefix code has an even number (at least two) of longest codes.
        let ones = per_weight.get(1).copied().unwrap_or(0);
        if ones < 2 || ones % 2 != 0 {
            return Err(corrupt("a Huffman tree is not a complete prefix code"));
        }
        // Where each weight's run of table entries starts.
        let mut start = [0usize; MAX_BITS as usize + 2];
        let mut next = 0usize;
        for w in 1..=max_bits as usize {
            if let Some(s) = start.get_mut(w) {
                *s = next;
            }
            next += (per_weight.get(w).copied().unwrap_or(0) as usize) << (w - 1);
        }
        self.max_bits = max_bits;
        self.entries.clear();
        self.entries.resize(1 << max_bits, Entry::default());
        for (symbol, &w) in weights.iter().enumerate().take(count + 1) {
            if w == 0 {
                continue;
            }
            let nb_bits = (max_bits + 1 - u32::from(w)) as u8;
            let Some(at) = start.get_mut(usize::from(w)) else {
                continue;
            };
            let len = 1usize << (w - 1);
            let run = self
                .entries
                .get_mut(*at..*at + len)
                .ok_or_else(|| corrupt("a Huffman tree overfills its table"))?;
            run.fill(Entry {
                symbol: symbol as u8,
                nb_bits,
            });
            *at += len;
        }
        Ok(())
    }

    /// Decodes exactly `out.len()` symbols from one stream, which must end exactly there.
    pub fn decode_stream(&self, stream: &[u8], out: &mut [u8]) -> Result<(), String> {
        let mut bits = Backward::new(stream)?;
        self.decode_rest(&mut bits, out);
        exact_end(&bits)
    }

    /// Decodes four streams into their four outputs (RFC 8878 4.2.2: the first three the same
    /// length, the fourth at most that), each stream ending exactly with its output. The four
    /// are decoded a symbol from each in turn while all four have symbols left: their lookups
    /// do not wait on each other, so the CPU overlaps them (the first three streams' last
    /// symbols, past the fourth's end, are decoded after).
    pub fn decode_four(&self, streams: [&[u8]; 4], outs: [&mut [u8]; 4]) -> Result<(), String> {
        let [s0, s1, s2, s3] = streams;
        let mut bits = [
            Backward::new(s0)?,
            Backward::new(s1)?,
            Backward::new(s2)?,
            Backward::new(s3)?,
        ];
        let [o0, o1, o2, o3] = outs;
        let common = o0.len().min(o1.len()).min(o2.len()).min(o3.len());
        let (h0, t0) = o0.split_at_mut(common);
        let (h1, t1) = o1.split_at_mut(common);
        let (h2, t2) = o2.split_at_mut(common);
        let (h3, t3) = o3.split_at_mut(common);
        let mut done = 0;
        while done < common {
            let n = bits
                .iter_mut()
                .map(|b| b.reads_in_window(self.max_bits))
                .min()
                .unwrap_or(1)
                .clamp(1, common - done);
            for k in done..done + n {
                for (b, out) in bits.iter_mut().zip([&mut *h0, &mut *h1, &mut *h2, &mut *h3]) {
                    let entry = self
                        .entries
                        .get(b.peek_in_window(self.max_bits) as usize)
                        .copied()
                        .unwrap_or_default();
                    if let Some(byte) = out.get_mut(k) {
                        *byte = entry.symbol;
                    }
                    b.consume(u32::from(entry.nb_bits));
                }
            }
            done += n;
        }
        for (b, tail) in bits.iter_mut().zip([t0, t1, t2, t3]) {
            self.decode_rest(b, tail);
            exact_end(b)?;
        }
        Ok(())
    }

    /// Decodes `out.len()` symbols from `bits` (whatever the stream holds: the caller checks
    /// its end).
    fn decode_rest(&self, bits: &mut Backward, out: &mut [u8]) {
        let mut rest = out;
        while !rest.is_empty() {
            let n = bits.reads_in_window(self.max_bits).clamp(1, rest.len());
            let (now, later) = rest.split_at_mut(n);
            for byte in now {
                let entry = self
                    .entries
                    .get(bits.peek_in_window(self.max_bits) as usize)
                    .copied()
                    .unwrap_or_default();
                *byte = entry.symbol;
                bits.consume(u32::from(entry.nb_bits));
            }
            rest = later;
        }
    }
}

/// A Huffman stream must end exactly where its literals do.
fn exact_end(bits: &Backward) -> Result<(), String> {
    if !bits.is_exact_end() {
        return Err(corrupt("a Huffman stream does not end where its literals do"));
    }
    Ok(())
}

/// FSE-compressed weights (RFC 8878 4.2.1.2): two states share one table and take turns; the
/// stream ends when an update would read past its start, and then the other state gives the
/// last weight. Returns how many weights were decoded.
fn fse_weights(body: &[u8], table: &mut fse::Table, weights: &mut [u8; 256]) -> Result<usize, String> {
    let used = table.read_description(body, WEIGHTS_MAX_LOG, MAX_BITS as usize)?;
    let mut bits = Backward::new(body.get(used..).unwrap_or_default())?;
    let log = u32::from(table.log);
    let mut states = [bits.read(log) as usize, bits.read(log) as usize];
    let mut count = 0usize;
    // At most 255 weights are coded (the 256th is implied).
    for turn in 0..255 {
        let i = turn % 2;
        let cell = table.cell(states[i])?;
        if let Some(w) = weights.get_mut(count) {
            *w = cell.symbol;
        }
        count += 1;
        states[i] = usize::from(cell.baseline) + bits.read(u32::from(cell.nb_bits)) as usize;
        if bits.overflowed() {
            let other = table.cell(states[1 - i])?;
            let slot = weights
                .get_mut(count)
                .filter(|_| count < 255)
                .ok_or_else(|| corrupt("too many Huffman weights"))?;
            *slot = other.symbol;
            return Ok(count + 1);
        }
    }
    Err(corrupt("too many Huffman weights"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of RFC 8878 4.2.1's example tree: weights 4 3 2 0 1, the last implied.
    fn rfc_table() -> Table {
        let mut t = Table::new();
        let mut w = [0u8; 256];
        w[..5].copy_from_slice(&[4, 3, 2, 0, 1]);
        t.build(&mut w, 5).unwrap_or_else(|e| panic!("{e}"));
        t
    }

    /// RFC 8878 4.2.1's example: weights 4 3 2 0 1 (the last, 1, implied) give the codes
    /// 0:"1" 1:"01" 2:"001" 4:"0000" 5:"0001". Section 4.2.2's 2-byte stream holds, below its
    /// marker, 1 01 0001 0000, which those codes read as 0 1 5 4 (the RFC's stream table labels
    /// the last two codes the other way round; the code table is what libzstd's output follows,
    /// as the vectors in zstd/tests.rs confirm).
    #[test]
    fn decodes_the_rfc_example() {
        let t = rfc_table();
        assert_eq!(t.max_bits, 4);
        let mut out = [0u8; 4];
        t.decode_stream(&[0b0001_0000, 0b0000_1101], &mut out)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, [0, 1, 5, 4]);
        // One symbol fewer leaves bits unread: corrupt.
        assert!(t
            .decode_stream(&[0b0001_0000, 0b0000_1101], &mut [0u8; 3])
            .is_err());
    }

    /// Four streams decoded in turn give what each gives alone, and each must still end
    /// exactly where its own output does.
    #[test]
    fn four_streams_decode_as_each_alone() {
        let t = rfc_table();
        let s: &[u8] = &[0b0001_0000, 0b0000_1101];
        let mut out = [[0u8; 4]; 4];
        let [a, b, c, d] = &mut out;
        t.decode_four([s; 4], [a, b, c, d])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(out, [[0, 1, 5, 4]; 4]);
        // The fourth output one shorter: its stream has bits left over.
        let (mut a, mut b, mut c, mut d) = ([0u8; 4], [0u8; 4], [0u8; 4], [0u8; 3]);
        assert!(t.decode_four([s; 4], [&mut a, &mut b, &mut c, &mut d]).is_err());
        assert_eq!((a, b, c), ([0, 1, 5, 4], [0, 1, 5, 4], [0, 1, 5, 4]));
    }

    #[test]
    fn incomplete_or_too_deep_trees_are_errors() {
        let mut t = Table::new();
        let mut w = [0u8; 256];
        // 2^2 + 2^0 = 5: the remainder 3 is not a power of two.
        w[..2].copy_from_slice(&[3, 1]);
        assert!(t.build(&mut w, 2).is_err());
        let mut w = [0u8; 256];
        w[0] = 12;
        assert!(t.build(&mut w, 1).is_err());
        let mut w = [0u8; 256];
        assert!(t.build(&mut w, 3).is_err());
    }
}
