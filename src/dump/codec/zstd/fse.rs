//! FSE (tANS) decoding tables: read from a table description or built from a fixed distribution
//! (RFC 8878 section 4.1).

use super::bits::Forward;
use super::corrupt;

/// Largest accuracy log any zstd table uses (literals and match lengths; RFC 8878 3.1.1.3.2.2).
pub const MAX_LOG: u8 = 9;

/// One decoding state: the symbol it emits and how to reach the next state (`baseline` plus
/// `nb_bits` bits read from the stream).
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct Cell {
    pub symbol: u8,
    pub nb_bits: u8,
    pub baseline: u16,
}

/// A decoding table of `1 << log` cells. Its storage is reused from table to table.
pub struct Table {
    pub log: u8,
    cells: Vec<Cell>,
}

impl Table {
    pub fn new() -> Table {
        Table {
            log: 0,
            cells: Vec::with_capacity(1 << MAX_LOG),
        }
    }

    /// The cell of `state`. States come from the table itself (baseline + bits < table size), so
    /// a miss means a bug; it is reported as corruption rather than a panic.
    #[inline(always)]
    pub fn cell(&self, state: usize) -> Result<Cell, String> {
        self.cells
            .get(state)
            .copied()
            .ok_or_else(|| corrupt("an FSE state is outside its table"))
    }

    /// A one-symbol table (RLE_Mode): every state emits `symbol` and reads no bits.
    pub fn set_rle(&mut self, symbol: u8) {
        self.log = 0;
        self.cells.clear();
        self.cells.push(Cell {
            symbol,
            nb_bits: 0,
            baseline: 0,
        });
    }

    /// Reads a table description (RFC 8878 4.1.1) from the start of `input`, with at most
    /// `max_log` accuracy and symbols up to `max_symbol`; builds the table and returns the bytes
    /// the description used.
    pub fn read_description(
        &mut self,
        input: &[u8],
        max_log: u8,
        max_symbol: usize,
    ) -> Result<usize, String> {
        let mut bits = Forward::new(input);
        let log = bits.read(4) as u8 + 5;
        if log > max_log {
            return Err(corrupt(&format!(
                "an FSE table has accuracy log {log}, more than the {max_log} allowed"
            )));
        }
        let mut counts = [0i16; 256];
        let mut symbols = 0usize;
        let size = 1i32 << log;
        // Probability points still to hand out, plus one (the format's convention).
        let mut remaining = size + 1;
        let mut threshold = size;
        let mut nb_bits = u32::from(log) + 1;
        while remaining > 1 {
            // Values below `max` need one bit less: the top of the range is what can be coded.
            let max = 2 * threshold - 1 - remaining;
            let low = bits.peek(nb_bits - 1) as i32;
            let value = if low < max {
                bits.consume(nb_bits - 1);
                low
            } else {
                let v = bits.read(nb_bits) as i32;
                if v >= threshold {
                    v - max
                } else {
                    v
                }
            };
            // value 0 is probability -1, "less than one": it still takes one cell.
            let proba = value - 1;
            push_count(&mut counts, &mut symbols, max_symbol, proba as i16)?;
            remaining -= proba.abs();
            if proba == 0 {
                // Zero probabilities are followed by 2-bit repeat counts of more zeros.
                loop {
                    let repeat = bits.read(2);
                    for _ in 0..repeat {
                        push_count(&mut counts, &mut symbols, max_symbol, 0)?;
                    }
                    if repeat != 3 {
                        break;
                    }
                }
            }
            if remaining < 1 {
                return Err(corrupt(
                    "an FSE table's probabilities add up to more than its size",
                ));
            }
            while remaining < threshold {
                nb_bits -= 1;
                threshold >>= 1;
            }
        }
        let used = bits.bytes_used();
        if used > input.len() {
            return Err(corrupt("an FSE table description runs past its section"));
        }
        self.build(counts.get(..symbols).unwrap_or_default(), log)?;
        Ok(used)
    }

    /// Builds the table from normalized counts summing to `1 << log` (RFC 8878 4.1.1, "From
    /// normalized distribution to decoding tables").
    pub fn build(&mut self, counts: &[i16], log: u8) -> Result<(), String> {
        // Below log 5 (which no zstd table uses) the spreading step could be even and cycle.
        if !(5..=MAX_LOG).contains(&log) {
            return Err(corrupt("an FSE table's accuracy log is out of range"));
        }
        let size = 1usize << log;
        let total: usize = counts.iter().map(|&c| c.unsigned_abs() as usize).sum();
        if total != size || counts.iter().any(|&c| c < -1) || counts.len() > 256 {
            return Err(corrupt("an FSE distribution does not fill its table"));
        }
        self.log = log;
        self.cells.clear();
        self.cells.resize(size, Cell::default());
        // "Less than one" symbols take the last cells, one each, and restart with a full read.
        let mut next = [0u16; 256];
        let mut high = size;
        for ((symbol, &count), next) in counts.iter().enumerate().zip(next.iter_mut()) {
            if count == -1 {
                high -= 1;
                if let Some(cell) = self.cells.get_mut(high) {
                    cell.symbol = symbol as u8;
                }
                *next = 1;
            } else {
                *next = count as u16;
            }
        }
        // The others are spread with a fixed odd step, skipping those last cells.
        let step = (size >> 1) + (size >> 3) + 3;
        let mask = size - 1;
        let mut pos = 0usize;
        for (symbol, &count) in counts.iter().enumerate() {
            for _ in 0..count.max(0) {
                if let Some(cell) = self.cells.get_mut(pos) {
                    cell.symbol = symbol as u8;
                }
                // `high` > 0 here: a positive count leaves at least one cell to the spread.
                pos = (pos + step) & mask;
                while pos >= high {
                    pos = (pos + step) & mask;
                }
            }
        }
        if pos != 0 {
            return Err(corrupt("an FSE distribution does not spread over its table"));
        }
        // Each symbol's cells, in state order, get consecutive sub-ranges of the state space;
        // the lower states need one more bit.
        for cell in self.cells.iter_mut() {
            let slot = next
                .get_mut(usize::from(cell.symbol))
                .ok_or_else(|| corrupt("bad FSE symbol"))?;
            let state = u32::from(*slot);
            *slot += 1;
            let nb_bits = u32::from(log) - (31 - state.leading_zeros());
            cell.nb_bits = nb_bits as u8;
            cell.baseline = ((state << nb_bits) - size as u32) as u16;
        }
        Ok(())
    }
}

fn push_count(
    counts: &mut [i16; 256],
    symbols: &mut usize,
    max_symbol: usize,
    count: i16,
) -> Result<(), String> {
    if *symbols > max_symbol {
        return Err(corrupt(
            "an FSE table describes more symbols than its alphabet has",
        ));
    }
    if let Some(slot) = counts.get_mut(*symbols) {
        *slot = count;
    }
    *symbols += 1;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A distribution, its accuracy log, and the symbol, Number_of_Bits and Baseline columns.
    type Expected = (&'static [i16], u8, [&'static [u16]; 3]);

    /// RFC 8878 Appendix A: the predefined tables, state by state (symbol, Number_of_Bits and
    /// Baseline columns).
    #[test]
    fn predefined_tables_match_the_rfc_appendix() {
        #[rustfmt::skip]
        let tables: [Expected; 3] = [
            (&super::super::LL_DEFAULT, 6, [
                &[0,0,1,3,4,6,7,9,10,12,14,16,18,19,21,22,24,25,26,27,29,31,0,1,2,4,5,7,8,10,11,13,
                  16,17,19,20,22,23,25,25,26,28,30,0,1,2,3,5,6,8,9,11,12,15,17,18,20,21,23,24,35,34,33,32],
                &[4,4,5,5,5,5,5,5,5,5,6,5,5,5,5,5,5,5,5,6,6,6,4,4,5,5,5,5,5,5,5,6,
                  5,5,5,5,5,5,4,4,5,6,6,4,4,5,5,5,5,5,5,5,5,6,5,5,5,5,5,5,6,6,6,6],
                &[0,16,32,0,0,0,0,0,0,0,0,0,0,0,0,0,0,32,0,0,0,0,32,0,0,32,0,32,0,32,0,0,
                  32,0,32,0,32,0,0,16,32,0,0,48,16,32,32,32,32,32,32,32,32,0,32,32,32,32,32,32,0,0,0,0],
            ]),
            (&super::super::ML_DEFAULT, 6, [
                &[0,1,2,3,5,6,8,10,13,16,19,22,25,28,31,33,35,37,39,41,43,45,1,2,3,4,6,7,9,12,15,18,
                  21,24,27,30,32,34,36,38,40,42,44,1,1,2,4,5,7,8,11,14,17,20,23,26,29,52,51,50,49,48,47,46],
                &[6,4,5,5,5,5,5,6,6,6,6,6,6,6,6,6,6,6,6,6,6,6,4,4,5,5,5,5,6,6,6,6,
                  6,6,6,6,6,6,6,6,6,6,6,4,4,4,5,5,5,5,6,6,6,6,6,6,6,6,6,6,6,6,6,6],
                &[0,0,32,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,16,0,32,0,32,0,0,0,0,0,
                  0,0,0,0,0,0,0,0,0,0,0,32,48,16,32,32,32,32,0,0,0,0,0,0,0,0,0,0,0,0,0,0],
            ]),
            (&super::super::OF_DEFAULT, 5, [
                &[0,6,9,15,21,3,7,12,18,23,5,8,14,20,2,7,11,17,22,4,8,13,19,1,6,10,16,28,27,26,25,24],
                &[5,4,5,5,5,5,4,5,5,5,5,4,5,5,5,4,5,5,5,5,4,5,5,5,4,5,5,5,5,5,5,5],
                &[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,16,0,0,0,0,16,0,0,0,16,0,0,0,0,0,0,0],
            ]),
        ];
        let mut t = Table::new();
        for (counts, log, [symbols, bits, bases]) in tables {
            t.build(counts, log).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(symbols.len(), 1 << log);
            for (state, ((&symbol, &nb_bits), &baseline)) in symbols.iter().zip(bits).zip(bases).enumerate() {
                let want = Cell {
                    symbol: symbol as u8,
                    nb_bits: nb_bits as u8,
                    baseline,
                };
                assert_eq!(t.cell(state), Ok(want), "log {log} state {state}");
            }
            assert!(t.cell(1 << log).is_err());
        }
    }

    #[test]
    fn descriptions_that_overfill_or_underfill_are_errors() {
        let mut t = Table::new();
        // Accuracy log 5 + 15 = 20 > 9.
        assert!(t.read_description(&[0x0f, 0xff], 9, 35).is_err());
        // An empty description reads zeros: probability -1 forever, more symbols than allowed.
        assert!(t.read_description(&[], 9, 35).is_err());
        assert!(t.build(&[16, 15], 5).is_err());
        assert!(t.build(&[34, -2], 5).is_err());
        assert!(t.build(&[8, 8], 4).is_err());
        assert!(t.build(&[16, 16], 5).is_ok());
        assert!(t.build(&[-1; 32], 5).is_ok());
    }
}
