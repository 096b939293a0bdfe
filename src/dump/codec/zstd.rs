//! Zstandard frame decoding (RFC 8878), for the pages of `makedumpfile -z` dumps: each page is
//! one frame made by `ZSTD_compressCCtx`. The whole format is decoded (raw, RLE and compressed
//! blocks; raw, RLE, Huffman and treeless literals with 1 or 4 streams; predefined, RLE,
//! FSE-compressed and repeated sequence tables; repeat offsets; skippable frames; the XXH64
//! content checksum), because nothing guarantees what another writer or zstd version emits.
//!
//! Output goes straight into the caller's page buffer: matches may only reach back into the
//! same frame's output (no dictionaries), so no window buffer is ever allocated, and every
//! length and offset read from the input is checked against that buffer. The only allocations
//! are the decoder's tables and literal buffer, kept and reused from page to page.

mod bits;
mod fse;
mod huffman;
#[cfg(test)]
mod tests;

use super::xxh64::xxh64;
use bits::Backward;
use std::cell::RefCell;

const FRAME_MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames use any of the 16 magics 0x184D2A50..=0x184D2A5F.
const SKIPPABLE_MAGIC: u32 = 0x184D_2A50;
/// Largest window accepted: RFC 8878 3.1.1.1.2 recommends decoders support 8 MiB. A page-sized
/// frame never needs more (libzstd shrinks the window to the source size it is given), and a
/// declared window is never allocated here anyway; a larger one is refused by name.
pub const MAX_WINDOW: u64 = 8 << 20;
/// Block_Maximum_Size's upper bound (RFC 8878 3.1.1.2.4).
const MAX_BLOCK: usize = 128 << 10;

/// Predefined distributions (RFC 8878 3.1.1.3.2.2).
#[rustfmt::skip]
const LL_DEFAULT: [i16; 36] = [
    4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1, 1, 1,
    -1, -1, -1, -1,
];
#[rustfmt::skip]
const ML_DEFAULT: [i16; 53] = [
    1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
];
#[rustfmt::skip]
const OF_DEFAULT: [i16; 29] = [
    1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
];

/// Literals-length codes 16..=35 and match-length codes 32..=52: (baseline, extra bits). Lower
/// codes stand for themselves (plus 3 for match lengths). RFC 8878 3.1.1.3.2.1.
#[rustfmt::skip]
const LL_CODES: [(u32, u8); 20] = [
    (16, 1), (18, 1), (20, 1), (22, 1), (24, 2), (28, 2), (32, 3), (40, 3), (48, 4), (64, 6),
    (128, 7), (256, 8), (512, 9), (1024, 10), (2048, 11), (4096, 12), (8192, 13), (16384, 14),
    (32768, 15), (65536, 16),
];
#[rustfmt::skip]
const ML_CODES: [(u32, u8); 21] = [
    (35, 1), (37, 1), (39, 1), (41, 1), (43, 2), (47, 2), (51, 3), (59, 3), (67, 4), (83, 4),
    (99, 5), (131, 7), (259, 8), (515, 9), (1027, 10), (2051, 11), (4099, 12), (8195, 13),
    (16387, 14), (32771, 15), (65539, 16),
];
/// Largest offset code: 31 extra bits (what the reference decoder supports; RFC 8878 3.1.1.3.2.1).
const MAX_OFFSET_CODE: u8 = 31;

/// What differs between the three sequence symbol types (RFC 8878 3.1.1.3.2).
struct Alphabet {
    /// Accuracy log limit of an FSE_Compressed_Mode table.
    max_log: u8,
    max_symbol: usize,
    default: &'static [i16],
    default_log: u8,
}

/// Literals lengths, offsets, match lengths: the order of their tables in the input.
const ALPHABETS: [Alphabet; 3] = [
    Alphabet {
        max_log: 9,
        max_symbol: 35,
        default: &LL_DEFAULT,
        default_log: 6,
    },
    Alphabet {
        max_log: 8,
        max_symbol: MAX_OFFSET_CODE as usize,
        default: &OF_DEFAULT,
        default_log: 5,
    },
    Alphabet {
        max_log: 9,
        max_symbol: 52,
        default: &ML_DEFAULT,
        default_log: 6,
    },
];

fn corrupt(what: &str) -> String {
    format!("corrupt zstd data: {what}")
}

/// What the decoder met, counted so tests can prove a corpus exercised every part of the format.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub frames: u64,
    pub skippable_frames: u64,
    pub single_segment: u64,
    pub windowed: u64,
    pub content_size: u64,
    pub checksums: u64,
    pub raw_blocks: u64,
    pub rle_blocks: u64,
    pub compressed_blocks: u64,
    pub raw_literals: u64,
    pub rle_literals: u64,
    pub huffman_literals: u64,
    pub treeless_literals: u64,
    pub one_stream: u64,
    pub four_streams: u64,
    pub direct_weights: u64,
    pub fse_weights: u64,
    /// Sequence tables by mode: predefined, RLE, FSE-compressed, repeat.
    pub table_modes: [u64; 4],
    pub no_sequences: u64,
    pub sequences: u64,
    /// Offsets taken from the repeat history (offset values 1..=3).
    pub repeat_offsets: u64,
}

/// A decoder whose tables and literal buffer are reused from call to call.
pub struct Decoder {
    literals: Vec<u8>,
    huffman: huffman::Table,
    ll: fse::Table,
    of: fse::Table,
    ml: fse::Table,
    /// Scratch table for Huffman weights, so a weights description never clobbers `of` etc.
    weights: fse::Table,
    /// Whether ll, of, ml hold their predefined table, which then needs no rebuilding.
    predefined: [bool; 3],
    pub coverage: Coverage,
}

/// State that lives for one frame: what Treeless and Repeat_Mode refer back to.
struct Frame {
    /// Where this frame's output starts in `out`: matches may not reach before it.
    start: usize,
    block_max: usize,
    rep: [usize; 3],
    have_huffman: bool,
    /// Whether ll, of, ml hold a table from this frame (Repeat_Mode needs one).
    have_tables: [bool; 3],
}

impl Default for Decoder {
    fn default() -> Decoder {
        Decoder::new()
    }
}

thread_local! {
    static DECODER: RefCell<Decoder> = RefCell::new(Decoder::new());
}

/// Decodes the frames in `input` into `out`, returning the bytes produced, with a decoder kept
/// per thread so pages reuse its buffers.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    DECODER.with(|d| match d.try_borrow_mut() {
        Ok(mut d) => d.decompress(input, out),
        Err(_) => Decoder::new().decompress(input, out),
    })
}

/// Little-endian integer of `n` (at most 8) bytes at `at`.
fn le(input: &[u8], at: usize, n: usize, what: &str) -> Result<u64, String> {
    let bytes = at
        .checked_add(n)
        .and_then(|end| input.get(at..end))
        .ok_or_else(|| corrupt(&format!("the input ends inside the {what}")))?;
    Ok(bytes.iter().rev().fold(0u64, |v, &b| (v << 8) | u64::from(b)))
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            literals: Vec::new(),
            huffman: huffman::Table::new(),
            ll: fse::Table::new(),
            of: fse::Table::new(),
            ml: fse::Table::new(),
            weights: fse::Table::new(),
            predefined: [false; 3],
            coverage: Coverage::default(),
        }
    }

    /// Decodes every frame of `input` into `out` (concatenated, skippable frames skipped) and
    /// returns the bytes produced. Fails on anything malformed, on output that would not fit
    /// `out`, on a failed content checksum and on bytes after the last frame.
    pub fn decompress(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, String> {
        if input.is_empty() {
            return Err(corrupt("the page data is empty"));
        }
        let mut ip = 0usize;
        let mut op = 0usize;
        while ip < input.len() {
            let magic = le(input, ip, 4, "frame magic")? as u32;
            ip += 4;
            if magic & 0xFFFF_FFF0 == SKIPPABLE_MAGIC {
                let size = le(input, ip, 4, "skippable frame size")? as usize;
                ip = ip
                    .checked_add(4)
                    .and_then(|p| p.checked_add(size))
                    .filter(|&end| end <= input.len())
                    .ok_or_else(|| corrupt("a skippable frame runs past the input"))?;
                self.coverage.skippable_frames += 1;
            } else if magic == FRAME_MAGIC {
                ip = self.frame(input, ip, out, &mut op)?;
            } else {
                return Err(corrupt(&format!("bad frame magic {magic:#010x}")));
            }
        }
        Ok(op)
    }

    /// One Zstandard frame whose header starts at `ip`; returns where the next frame starts.
    fn frame(
        &mut self,
        input: &[u8],
        mut ip: usize,
        out: &mut [u8],
        op: &mut usize,
    ) -> Result<usize, String> {
        self.coverage.frames += 1;
        let fhd = le(input, ip, 1, "frame header")? as u8;
        ip += 1;
        let single_segment = fhd & 0x20 != 0;
        let has_checksum = fhd & 0x04 != 0;
        if fhd & 0x08 != 0 {
            return Err(corrupt("the frame header's reserved bit is set"));
        }
        let mut window = 0u64;
        if !single_segment {
            let wd = le(input, ip, 1, "window descriptor")?;
            ip += 1;
            let base = 1u64 << (10 + (wd >> 3));
            window = base + (base / 8) * (wd & 7);
            self.coverage.windowed += 1;
        } else {
            self.coverage.single_segment += 1;
        }
        let did_size = [0, 1, 2, 4][usize::from(fhd & 3)];
        let dict = le(input, ip, did_size, "dictionary id")?;
        ip += did_size;
        if dict != 0 {
            return Err(format!(
                "zstd frame needs dictionary {dict}, which kdump pages never use (unsupported)"
            ));
        }
        let fcs_size = match fhd >> 6 {
            0 if single_segment => 1,
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let content_size = match fcs_size {
            0 => None,
            2 => Some(le(input, ip, 2, "content size")? + 256),
            n => Some(le(input, ip, n, "content size")?),
        };
        ip += fcs_size;
        let room = (out.len() - *op) as u64;
        if let Some(size) = content_size {
            self.coverage.content_size += 1;
            if size > room {
                return Err(format!(
                    "zstd frame holds {size} bytes, more than the {room} left in the {}-byte page",
                    out.len()
                ));
            }
            if single_segment {
                window = size;
            }
        }
        if window > MAX_WINDOW {
            return Err(format!(
                "zstd frame asks for a {window}-byte window, more than the {MAX_WINDOW} bytes kmemd \
                 accepts (a page never needs one that large)"
            ));
        }
        let mut frame = Frame {
            start: *op,
            block_max: (window as usize).min(MAX_BLOCK),
            rep: [1, 4, 8],
            have_huffman: false,
            have_tables: [false; 3],
        };
        loop {
            let header = le(input, ip, 3, "block header")? as u32;
            ip += 3;
            let last = header & 1 != 0;
            let size = (header >> 3) as usize;
            let content = input.get(ip..).unwrap_or_default();
            ip += self.block(header, size, content, out, op, &mut frame)?;
            if last {
                break;
            }
        }
        let produced = (*op - frame.start) as u64;
        if content_size.is_some_and(|want| want != produced) {
            return Err(corrupt(&format!(
                "the frame declares {} bytes but decodes to {produced}",
                content_size.unwrap_or_default()
            )));
        }
        if has_checksum {
            let stored = le(input, ip, 4, "content checksum")? as u32;
            ip += 4;
            let data = out.get(frame.start..*op).unwrap_or_default();
            let computed = xxh64(data, 0) as u32;
            if stored != computed {
                return Err(format!(
                    "zstd content checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                     the page data is corrupt"
                ));
            }
            self.coverage.checksums += 1;
        }
        Ok(ip)
    }

    /// One block of `size` (from its header) at the start of `content`; returns the input bytes
    /// it used.
    fn block(
        &mut self,
        header: u32,
        size: usize,
        content: &[u8],
        out: &mut [u8],
        op: &mut usize,
        frame: &mut Frame,
    ) -> Result<usize, String> {
        if size > frame.block_max {
            return Err(corrupt(&format!(
                "a block of {size} bytes exceeds the frame's {}-byte block limit",
                frame.block_max
            )));
        }
        let past = || corrupt("a block runs past the end of the page");
        match (header >> 1) & 3 {
            0 => {
                self.coverage.raw_blocks += 1;
                let src = content
                    .get(..size)
                    .ok_or_else(|| corrupt("a raw block runs past the input"))?;
                let dst = out.get_mut(*op..*op + size).ok_or_else(past)?;
                dst.copy_from_slice(src);
                *op += size;
                Ok(size)
            }
            1 => {
                self.coverage.rle_blocks += 1;
                let byte = *content
                    .first()
                    .ok_or_else(|| corrupt("an RLE block runs past the input"))?;
                out.get_mut(*op..*op + size).ok_or_else(past)?.fill(byte);
                *op += size;
                Ok(1)
            }
            2 => {
                self.coverage.compressed_blocks += 1;
                let body = content
                    .get(..size)
                    .ok_or_else(|| corrupt("a compressed block runs past the input"))?;
                // A block decodes to at most block_max bytes, and never past the page.
                let limit = out.len().min(*op + frame.block_max);
                let used = self.literals_section(body, limit - *op, frame)?;
                let sequences = body.get(used..).unwrap_or_default();
                self.sequences_section(sequences, out, op, limit, frame)?;
                Ok(size)
            }
            _ => Err(corrupt("reserved block type")),
        }
    }

    /// Decodes the literals section at the start of a compressed block into `self.literals`
    /// (at most `room` bytes: every literal ends up in the output). Returns its size.
    fn literals_section(&mut self, body: &[u8], room: usize, frame: &mut Frame) -> Result<usize, String> {
        let b0 = le(body, 0, 1, "literals header")?;
        let kind = b0 & 3;
        let size_format = (b0 >> 2) & 3;
        if kind < 2 {
            // Raw or RLE: a 5, 12 or 20-bit regenerated size, no compressed size.
            let (header_len, regen) = match size_format {
                0 | 2 => (1, b0 >> 3),
                1 => (2, le(body, 0, 2, "literals header")? >> 4),
                _ => (3, le(body, 0, 3, "literals header")? >> 4),
            };
            let regen = self.literal_room(regen, room)?;
            self.literals.clear();
            if kind == 0 {
                self.coverage.raw_literals += 1;
                let src = body
                    .get(header_len..header_len + regen)
                    .ok_or_else(|| corrupt("raw literals run past the block"))?;
                self.literals.extend_from_slice(src);
                return Ok(header_len + regen);
            }
            self.coverage.rle_literals += 1;
            let byte = *body
                .get(header_len)
                .ok_or_else(|| corrupt("RLE literals run past the block"))?;
            self.literals.resize(regen, byte);
            return Ok(header_len + 1);
        }
        // Huffman-coded: 1 stream with size format 0, else 4; both sizes 10, 14 or 18 bits.
        let (header_len, field) = match size_format {
            0 | 1 => (3, 10),
            2 => (4, 14),
            _ => (5, 18),
        };
        let h = le(body, 0, header_len, "literals header")?;
        let mask = (1u64 << field) - 1;
        let regen = self.literal_room((h >> 4) & mask, room)?;
        let compressed = ((h >> (4 + field)) & mask) as usize;
        let section = body
            .get(header_len..header_len + compressed)
            .ok_or_else(|| corrupt("compressed literals run past the block"))?;
        let mut streams = section;
        if kind == 2 {
            self.coverage.huffman_literals += 1;
            let used = self
                .huffman
                .read_description(section, &mut self.weights, &mut self.coverage)?;
            frame.have_huffman = true;
            streams = section.get(used..).unwrap_or_default();
        } else {
            self.coverage.treeless_literals += 1;
            if !frame.have_huffman {
                return Err(corrupt(
                    "treeless literals with no earlier Huffman table in the frame",
                ));
            }
        }
        // Every byte is decoded over, so only growth needs filling.
        if self.literals.len() < regen {
            self.literals.resize(regen, 0);
        }
        self.literals.truncate(regen);
        if size_format == 0 {
            self.coverage.one_stream += 1;
            self.huffman.decode_stream(streams, &mut self.literals)?;
        } else {
            self.coverage.four_streams += 1;
            self.four_streams(streams, regen)?;
        }
        Ok(header_len + compressed)
    }

    fn literal_room(&self, regen: u64, room: usize) -> Result<usize, String> {
        usize::try_from(regen).ok().filter(|&n| n <= room).ok_or_else(|| {
            corrupt(&format!(
                "{regen} literals do not fit the {room} bytes the block may produce"
            ))
        })
    }

    /// Four Huffman streams behind a jump table of three 2-byte stream sizes; each of the first
    /// three regenerates (regen + 3) / 4 literals and the fourth the rest.
    fn four_streams(&mut self, streams: &[u8], regen: usize) -> Result<(), String> {
        let jump = |i: usize| le(streams, 2 * i, 2, "jump table").map(|v| v as usize);
        let sizes = [jump(0)?, jump(1)?, jump(2)?];
        let segment = regen.div_ceil(4);
        if 3 * segment > regen {
            return Err(corrupt("too few literals for four streams"));
        }
        let mut at = 6usize;
        let mut parts: [&[u8]; 4] = [&[]; 4];
        for (i, part) in parts.iter_mut().enumerate() {
            let end = match sizes.get(i) {
                Some(&size) => at + size,
                None => streams.len(),
            };
            *part = streams
                .get(at..end)
                .ok_or_else(|| corrupt("a Huffman stream runs past the literals"))?;
            at = end;
        }
        // The fourth stream gets whatever the first three leave.
        let mut outs = self.literals.chunks_mut(segment.max(1));
        let mut next = || outs.next().unwrap_or_default();
        self.huffman.decode_four(parts, [next(), next(), next(), next()])
    }

    /// Decodes the sequences section and executes it, appending the block's output at `op`
    /// (never past `limit`).
    fn sequences_section(
        &mut self,
        body: &[u8],
        out: &mut [u8],
        op: &mut usize,
        limit: usize,
        frame: &mut Frame,
    ) -> Result<(), String> {
        let b0 = le(body, 0, 1, "sequences header")? as usize;
        let (count, mut ip) = match b0 {
            0..=127 => (b0, 1),
            128..=254 => (
                ((b0 - 128) << 8) + le(body, 1, 1, "sequences header")? as usize,
                2,
            ),
            _ => (le(body, 1, 2, "sequences header")? as usize + 0x7F00, 3),
        };
        if count == 0 {
            // The block is its literals alone; the tables stay as they were.
            self.coverage.no_sequences += 1;
            if ip != body.len() {
                return Err(corrupt("bytes follow a sequences section with no sequences"));
            }
            return self
                .copy_literals(0, self.literals.len(), out, op, limit)
                .map(|_| ());
        }
        let modes = le(body, ip, 1, "compression modes")? as u8;
        ip += 1;
        if modes & 3 != 0 {
            return Err(corrupt("the sequences' reserved mode bits are set"));
        }
        let rest = body.get(ip..).unwrap_or_default();
        let used = self.read_tables(modes, rest, frame)?;
        let stream = rest.get(used..).unwrap_or_default();
        self.execute(count, stream, out, op, limit, frame)
    }

    /// Sets up the literals-length, offset and match-length tables (in that order in the input)
    /// from their modes; returns the bytes their descriptions used.
    fn read_tables(&mut self, modes: u8, input: &[u8], frame: &mut Frame) -> Result<usize, String> {
        let mut used = 0usize;
        let modes = [modes >> 6, (modes >> 4) & 3, (modes >> 2) & 3];
        for (index, (mode, alphabet)) in modes.into_iter().zip(&ALPHABETS).enumerate() {
            let table = match index {
                0 => &mut self.ll,
                1 => &mut self.of,
                _ => &mut self.ml,
            };
            if let Some(n) = self.coverage.table_modes.get_mut(usize::from(mode)) {
                *n += 1;
            }
            let rest = input.get(used..).unwrap_or_default();
            // A table that already holds its predefined distribution (from an earlier block or
            // page) is reused; any other mode overwrites it, so it is marked before that starts.
            let slot = self
                .predefined
                .get_mut(index)
                .ok_or_else(|| corrupt("bad table index"))?;
            let was_predefined = *slot;
            if mode == 1 || mode == 2 {
                *slot = false;
            }
            match mode {
                0 => {
                    if !was_predefined {
                        table.build(alphabet.default, alphabet.default_log)?;
                        *slot = true;
                    }
                }
                1 => {
                    let symbol = *rest
                        .first()
                        .ok_or_else(|| corrupt("an RLE table runs past the block"))?;
                    if usize::from(symbol) > alphabet.max_symbol {
                        return Err(corrupt("an RLE table's symbol is out of range"));
                    }
                    table.set_rle(symbol);
                    used += 1;
                }
                2 => used += table.read_description(rest, alphabet.max_log, alphabet.max_symbol)?,
                _ => {
                    if !frame.have_tables.get(index).copied().unwrap_or(false) {
                        return Err(corrupt("a repeated table with no earlier table in the frame"));
                    }
                }
            }
            if let Some(have) = frame.have_tables.get_mut(index) {
                *have = true;
            }
        }
        Ok(used)
    }

    /// Decodes `count` sequences from the backward stream and executes each one as it comes:
    /// copy literals, then copy a match from earlier output.
    fn execute(
        &mut self,
        count: usize,
        stream: &[u8],
        out: &mut [u8],
        op: &mut usize,
        limit: usize,
        frame: &mut Frame,
    ) -> Result<(), String> {
        let mut bits = Backward::new(stream)?;
        let mut ll_state = bits.read(u32::from(self.ll.log)) as usize;
        let mut of_state = bits.read(u32::from(self.of.log)) as usize;
        let mut ml_state = bits.read(u32::from(self.ml.log)) as usize;
        let mut lit = 0usize;
        for i in 0..count {
            let ll_cell = self.ll.cell(ll_state)?;
            let of_cell = self.of.cell(of_state)?;
            let ml_cell = self.ml.cell(ml_state)?;
            // Extra bits come in the order offset, match length, literals length.
            let of_code = of_cell.symbol;
            if of_code > MAX_OFFSET_CODE {
                return Err(corrupt("an offset code is out of range"));
            }
            let offset_value = (1u64 << of_code) + bits.read(u32::from(of_code));
            let match_len = code_value(ml_cell.symbol, 32, 3, &ML_CODES, &mut bits)?;
            let lit_len = code_value(ll_cell.symbol, 16, 0, &LL_CODES, &mut bits)?;
            if i + 1 < count {
                // State updates come in the order literals length, match length, offset.
                ll_state = usize::from(ll_cell.baseline) + bits.read(u32::from(ll_cell.nb_bits)) as usize;
                ml_state = usize::from(ml_cell.baseline) + bits.read(u32::from(ml_cell.nb_bits)) as usize;
                of_state = usize::from(of_cell.baseline) + bits.read(u32::from(of_cell.nb_bits)) as usize;
            }
            if bits.overflowed() {
                return Err(corrupt("the sequences bitstream ends early"));
            }
            let offset = self.resolve_offset(offset_value, lit_len, &mut frame.rep)?;
            lit = self.copy_literals(lit, lit_len, out, op, limit)?;
            copy_match(out, op, offset, match_len, frame.start, limit)?;
        }
        self.coverage.sequences += count as u64;
        if !bits.is_exact_end() {
            return Err(corrupt("the sequences bitstream has bits left over"));
        }
        let left = self.literals.len() - lit;
        self.copy_literals(lit, left, out, op, limit).map(|_| ())
    }

    /// The match offset for an Offset_Value, updating the repeat history (RFC 8878 3.1.1.5).
    fn resolve_offset(&mut self, value: u64, lit_len: usize, rep: &mut [usize; 3]) -> Result<usize, String> {
        if value > 3 {
            let offset = usize::try_from(value - 3).map_err(|_| corrupt("an offset is too large"))?;
            *rep = [offset, rep[0], rep[1]];
            return Ok(offset);
        }
        self.coverage.repeat_offsets += 1;
        // With no literals before the match, the repeat codes shift by one (repeat 1 would just
        // continue the previous match), and the last one means "repeat 1 minus one".
        let index = value as usize - 1 + usize::from(lit_len == 0);
        let offset = match index {
            0 => return Ok(rep[0]),
            3 => rep[0].wrapping_sub(1),
            i => rep.get(i).copied().unwrap_or(0),
        };
        if offset == 0 {
            return Err(corrupt("a repeat offset is zero"));
        }
        if index == 1 {
            *rep = [offset, rep[0], rep[2]];
        } else {
            *rep = [offset, rep[0], rep[1]];
        }
        Ok(offset)
    }

    /// Copies `len` literals from position `from` of the literals to the output; returns the
    /// new literal position.
    #[inline(always)]
    fn copy_literals(
        &self,
        from: usize,
        len: usize,
        out: &mut [u8],
        op: &mut usize,
        limit: usize,
    ) -> Result<usize, String> {
        if from.checked_add(len).is_none_or(|e| e > self.literals.len()) {
            return Err(corrupt("a sequence uses more literals than the block has"));
        }
        if op.checked_add(len).is_none_or(|e| e > limit || e > out.len())
            || !super::copy_literals(&self.literals, from, out, *op, len)
        {
            return Err(corrupt("a block decodes past the end of the page"));
        }
        *op += len;
        Ok(from + len)
    }
}

/// A literals or match length from its code: codes below `direct` stand for code + `bias`;
/// higher ones index `table` for a baseline and a number of extra bits.
#[inline(always)]
fn code_value(
    code: u8,
    direct: u8,
    bias: u32,
    table: &[(u32, u8)],
    bits: &mut Backward,
) -> Result<usize, String> {
    if code < direct {
        return Ok((u32::from(code) + bias) as usize);
    }
    let &(base, extra) = table
        .get(usize::from(code - direct))
        .ok_or_else(|| corrupt("a length code is out of range"))?;
    Ok((base + bits.read(u32::from(extra)) as u32) as usize)
}

/// Copies `len` bytes from `offset` back, within the frame's own output. Overlapping copies
/// (offset < len) repeat the last `offset` bytes (see `codec::copy_match`).
#[inline(always)]
fn copy_match(
    out: &mut [u8],
    op: &mut usize,
    offset: usize,
    len: usize,
    start: usize,
    limit: usize,
) -> Result<(), String> {
    if offset == 0 || offset > *op - start {
        return Err(corrupt("a match refers before the start of the frame"));
    }
    let end = op
        .checked_add(len)
        .filter(|&e| e <= limit && e <= out.len())
        .ok_or_else(|| corrupt("a block decodes past the end of the page"))?;
    super::copy_match(out, *op, offset, len);
    *op = end;
    Ok(())
}
