//! Page decompressors for kdump-compressed dumps. Each one must produce exactly one page
//! (`block_size` bytes); anything else is a corrupt page.

pub mod lzo;
pub mod snappy;
pub mod xxh64;
pub mod zstd;

use crate::sys::clib::zlib_uncompress;

/// How one page is stored (page_desc flags, `diskdump_mod.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Raw,
    Zlib,
    Lzo,
    Snappy,
    Zstd,
}

impl Compression {
    /// From page_desc `flags`: DUMP_DH_COMPRESSED_ZLIB 0x1, _LZO 0x2, _SNAPPY 0x4, _ZSTD 0x20.
    pub fn from_flags(flags: u32) -> Compression {
        if flags & 0x1 != 0 {
            Compression::Zlib
        } else if flags & 0x2 != 0 {
            Compression::Lzo
        } else if flags & 0x4 != 0 {
            Compression::Snappy
        } else if flags & 0x20 != 0 {
            Compression::Zstd
        } else {
            Compression::Raw
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Raw => "none",
            Compression::Zlib => "zlib",
            Compression::Lzo => "lzo",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
        }
    }
}

/// Copies `len` bytes from `dist` back in `out` to `op`, as LZ77 matches do: the regions may
/// overlap (a distance of 1 repeats one byte). The caller has checked `0 < dist <= op` and
/// `op + len <= out.len()`.
///
/// Matches are short and many (a 4 KiB page has hundreds), so the common case is done with
/// fixed 8-byte copies instead of a memmove call per match: when `dist >= 8` every 8-byte chunk
/// reads bytes already final, and when the output has 8 bytes of slack past the match the last
/// chunk may write up to 7 bytes beyond it, which later output overwrites (a page that ends
/// before them is an error anyway: every decoder must fill its page exactly). Otherwise the
/// match is copied in doubling non-overlapping pieces: `[from, at)` is periodic with period
/// `dist`, so copying its prefix to `at` extends it.
#[inline(always)]
pub(crate) fn copy_match(out: &mut [u8], op: usize, dist: usize, len: usize) {
    if dist == 0 || dist > op {
        return;
    }
    let from = op - dist;
    if dist >= 8 && op + len + 8 <= out.len() {
        let mut k = 0;
        while k < len {
            let chunk: [u8; 8] = match out.get(from + k..from + k + 8) {
                Some(c) => c.try_into().unwrap_or_default(),
                None => break,
            };
            if let Some(d) = out.get_mut(op + k..op + k + 8) {
                d.copy_from_slice(&chunk);
            }
            k += 8;
        }
        return;
    }
    let end = op + len;
    let mut at = op;
    while at < end {
        let n = (at - from).min(end - at);
        out.copy_within(from..from + n, at);
        at += n;
    }
}

/// Copies `n` literal bytes from `input[ip..]` to `out[op..]`, or returns false when either
/// side is too short. Literal runs are mostly short, so with 16 bytes of room on both sides a
/// fixed 16-byte copy replaces the memcpy call (bytes past `n` are overwritten by later
/// output, as in [`copy_match`]).
#[inline(always)]
pub(crate) fn copy_literals(input: &[u8], ip: usize, out: &mut [u8], op: usize, n: usize) -> bool {
    if n <= 16 && ip + 16 <= input.len() && op + 16 <= out.len() {
        let chunk: [u8; 16] = match input.get(ip..ip + 16) {
            Some(c) => c.try_into().unwrap_or_default(),
            None => return false,
        };
        if let Some(d) = out.get_mut(op..op + 16) {
            d.copy_from_slice(&chunk);
            return true;
        }
        return false;
    }
    let src = ip.checked_add(n).and_then(|e| input.get(ip..e));
    let dst = op.checked_add(n).and_then(|e| out.get_mut(op..e));
    match (src, dst) {
        (Some(s), Some(d)) => {
            d.copy_from_slice(s);
            true
        }
        _ => false,
    }
}

/// What zlib's `uncompress` return codes mean for a page (zlib.h).
fn zlib_error(rc: i32) -> String {
    let why = match rc {
        -3 => "bad data or a failed adler32 check (Z_DATA_ERROR)",
        -5 => "truncated data, or more than a page (Z_BUF_ERROR)",
        -4 => "out of memory (Z_MEM_ERROR)",
        _ => "unexpected error",
    };
    format!("corrupt zlib data: {why}, zlib error {rc}")
}

/// Why a stored page could not be decoded: damaged data, or a compression kmemd has no decoder
/// for. The page cache (kdump.rs) turns these into memory errors of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    Corrupt(String),
    Unsupported(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Corrupt(s) | CodecError::Unsupported(s) => f.write_str(s),
        }
    }
}

/// A decoder's own error text: the page's data is damaged.
impl From<String> for CodecError {
    fn from(s: String) -> CodecError {
        CodecError::Corrupt(s)
    }
}

/// Decodes one stored page into `out`, which must come out exactly full. zlib and zstd pages
/// carry checks (zlib's adler32 always, zstd's XXH64 when the frame has one), and a failed check
/// is an error; lzo, snappy and raw pages have none, so damage inside them can go unnoticed.
pub fn decode(kind: Compression, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let produced = match kind {
        Compression::Raw => {
            if input.len() != out.len() {
                return Err(format!(
                    "uncompressed page is {} bytes, expected {}",
                    input.len(),
                    out.len()
                )
                .into());
            }
            out.copy_from_slice(input);
            input.len()
        }
        Compression::Zlib => zlib_uncompress(input, out).map_err(zlib_error)?,
        Compression::Lzo => lzo::decompress(input, out)?,
        Compression::Snappy => snappy::decompress(input, out)?,
        Compression::Zstd => zstd::decompress(input, out)?,
    };
    if produced != out.len() {
        return Err(format!("page decompressed to {produced} bytes, expected {}", out.len()).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast match and literal copies give what a byte-at-a-time copy gives, for every
    /// short distance and length, at the start, middle and very end of the output (where there
    /// is no slack for the fixed-size copies).
    #[test]
    fn match_and_literal_copies_equal_byte_at_a_time_copies() {
        let size = 200;
        let seed: Vec<u8> = (0..size).map(|i| (i * 37 % 251) as u8).collect();
        for dist in 1..=40usize {
            for len in 1..=70usize {
                for op in [dist, dist + 3, 100, size - len - 8, size - len - 1, size - len] {
                    if op < dist || op + len > size {
                        continue;
                    }
                    let mut fast = seed.clone();
                    let mut slow = seed.clone();
                    copy_match(&mut fast, op, dist, len);
                    for i in op..op + len {
                        slow[i] = slow[i - dist];
                    }
                    assert!(
                        fast[..op + len] == slow[..op + len],
                        "dist {dist} len {len} op {op}"
                    );
                }
            }
        }
        let input: Vec<u8> = (0..64).map(|i| i as u8 ^ 0x5a).collect();
        for n in 0..=40usize {
            for (ip, op) in [(0, 0), (3, 7), (64 - n, 0), (0, size - n), (64 - n, size - n)] {
                let mut out = seed.clone();
                assert!(
                    copy_literals(&input, ip, &mut out, op, n),
                    "n {n} ip {ip} op {op}"
                );
                assert_eq!(out[op..op + n], input[ip..ip + n], "n {n} ip {ip} op {op}");
                assert_eq!(out[..op], seed[..op]);
            }
            let mut out = seed.clone();
            assert!(!copy_literals(&input, 64 - n + 1, &mut out, 0, n) || n == 0);
            assert!(!copy_literals(&input, 0, &mut out, size - n + 1, n) || n == 0);
        }
    }

    #[test]
    fn flags_pick_the_codec_and_short_pages_are_errors() {
        assert_eq!(Compression::from_flags(0), Compression::Raw);
        assert_eq!(Compression::from_flags(1), Compression::Zlib);
        assert_eq!(Compression::from_flags(2), Compression::Lzo);
        assert_eq!(Compression::from_flags(4), Compression::Snappy);
        assert_eq!(Compression::from_flags(0x20), Compression::Zstd);
        let mut out = [0u8; 8];
        assert!(decode(Compression::Raw, &[1; 8], &mut out).is_ok());
        assert_eq!(out, [1; 8]);
        assert!(decode(Compression::Raw, &[1; 7], &mut out).is_err());
        assert!(matches!(
            decode(Compression::Zstd, &[0; 8], &mut out),
            Err(CodecError::Corrupt(_))
        ));
        // zlib.compress(b"abc"): a valid stream, but 3 bytes are not a full page.
        let short = [0x78, 0x9c, 0x4b, 0x4c, 0x4a, 0x06, 0x00, 0x02, 0x4d, 0x01, 0x27];
        assert!(decode(Compression::Zlib, &short, &mut out).is_err());
        let mut three = [0u8; 3];
        assert!(decode(Compression::Zlib, &short, &mut three).is_ok());
        assert_eq!(&three, b"abc");
    }
}
