//! LZO1X decompression with every read and write bounds-checked: the bitstream liblzo2's
//! `lzo1x_decompress_safe` accepts (what makedumpfile -l writes, via `lzo1x_1_compress`). The
//! instruction encoding follows the kernel's description in
//! `Documentation/staging/lzo.rst` (Linux 6.x); LZO-RLE (first byte 17) is not part of it.

/// Decompresses `input` into `out`, returning the number of bytes produced. Fails on any
/// malformed stream: reading past the input, writing past `out`, a match reaching before the
/// start of the output, a bad end marker or input left after it.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut d = Decoder {
        inp: input,
        ip: 0,
        out,
        op: 0,
    };
    d.run()
}

struct Decoder<'a> {
    inp: &'a [u8],
    ip: usize,
    out: &'a mut [u8],
    op: usize,
}

const CORRUPT: &str = "corrupt LZO data";

#[cold]
fn ends_early() -> String {
    format!("{CORRUPT}: input ends early")
}

impl Decoder<'_> {
    #[inline(always)]
    fn byte(&mut self) -> Result<usize, String> {
        match self.inp.get(self.ip) {
            Some(&b) => {
                self.ip += 1;
                Ok(usize::from(b))
            }
            None => Err(ends_early()),
        }
    }

    #[inline(always)]
    fn le16(&mut self) -> Result<usize, String> {
        let lo = self.byte()?;
        Ok(lo | (self.byte()? << 8))
    }

    /// A length whose instruction field was 0: each zero byte adds 255, the first non-zero byte
    /// ends the count and is added too.
    fn long_length(&mut self, base: usize) -> Result<usize, String> {
        let mut n = base;
        loop {
            match self.byte()? {
                0 => {
                    n = n
                        .checked_add(255)
                        .ok_or_else(|| format!("{CORRUPT}: length overflows"))?
                }
                b => {
                    return n
                        .checked_add(b)
                        .ok_or_else(|| format!("{CORRUPT}: length overflows"))
                }
            }
        }
    }

    #[inline(always)]
    fn literals(&mut self, n: usize) -> Result<(), String> {
        if n == 0 {
            return Ok(());
        }
        if self.ip.checked_add(n).is_none_or(|e| e > self.inp.len()) {
            return Err(format!("{CORRUPT}: literal run past the end of the input"));
        }
        if self.op.checked_add(n).is_none_or(|e| e > self.out.len())
            || !super::copy_literals(self.inp, self.ip, self.out, self.op, n)
        {
            return Err(format!(
                "{CORRUPT}: output larger than the {}-byte page",
                self.out.len()
            ));
        }
        self.ip += n;
        self.op += n;
        Ok(())
    }

    /// Copies `len` bytes from `dist` back in the output; the regions may overlap (byte order
    /// matters: a distance of 1 repeats one byte).
    #[inline(always)]
    fn copy_match(&mut self, dist: usize, len: usize) -> Result<(), String> {
        if dist > self.op {
            return Err(format!("{CORRUPT}: match refers before the start of the page"));
        }
        let end = self.op.checked_add(len).filter(|&e| e <= self.out.len());
        let Some(end) = end else {
            return Err(format!(
                "{CORRUPT}: output larger than the {}-byte page",
                self.out.len()
            ));
        };
        super::copy_match(self.out, self.op, dist, len);
        self.op = end;
        Ok(())
    }

    fn run(&mut self) -> Result<usize, String> {
        // `state`: how many literals the previous instruction copied (0..3), or 4 after a literal
        // run; it changes the meaning of instructions 0..15.
        let mut state = 0usize;
        if let Some(&first) = self.inp.first() {
            if first > 17 {
                self.ip = 1;
                let t = usize::from(first) - 17;
                self.literals(t)?;
                state = if t < 4 { t } else { 4 };
            }
        }
        loop {
            let t = self.byte()?;
            let (dist, len, next);
            if t < 16 {
                match state {
                    0 => {
                        let n = if t == 0 { self.long_length(15)? } else { t };
                        self.literals(n.saturating_add(3))?;
                        state = 4;
                        continue;
                    }
                    1..=3 => {
                        let h = self.byte()?;
                        (dist, len, next) = ((t >> 2) + (h << 2) + 1, 2, t & 3);
                    }
                    _ => {
                        let h = self.byte()?;
                        (dist, len, next) = ((t >> 2) + (h << 2) + 2049, 3, t & 3);
                    }
                }
            } else if t >= 64 {
                let h = self.byte()?;
                (dist, len, next) = (((t >> 2) & 7) + (h << 3) + 1, (t >> 5) + 1, t & 3);
            } else if t >= 32 {
                len = match t & 31 {
                    0 => self.long_length(31)?.saturating_add(2),
                    l => l + 2,
                };
                let d = self.le16()?;
                (dist, next) = ((d >> 2) + 1, d & 3);
            } else {
                len = match t & 7 {
                    0 => self.long_length(7)?.saturating_add(2),
                    l => l + 2,
                };
                let d = self.le16()?;
                let far = ((t & 8) << 11) + (d >> 2);
                if far == 0 {
                    // End marker: 0x11 0x00 0x00, and nothing may follow it.
                    if len != 3 {
                        return Err(format!("{CORRUPT}: bad end marker"));
                    }
                    if self.ip != self.inp.len() {
                        return Err(format!(
                            "{CORRUPT}: {} bytes after the end marker",
                            self.inp.len() - self.ip
                        ));
                    }
                    return Ok(self.op);
                }
                (dist, next) = (far + 0x4000, d & 3);
            }
            self.copy_match(dist, len)?;
            self.literals(next)?;
            state = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clib::zlib_uncompress;

    fn reference(zlib: &[u8], len: usize) -> Vec<u8> {
        let mut page = vec![0u8; len];
        assert_eq!(zlib_uncompress(zlib, &mut page), Ok(len));
        page
    }

    macro_rules! vector {
        ($name:literal, $ext:literal) => {
            include_bytes!(concat!("../../../tests/data/codec/", $name, ".", $ext))
        };
    }

    /// Vectors made by liblzo2 (tests/data/codec/make_vectors.py), checked against zlib copies.
    /// (zlib copy, LZO1X-1 stream, LZO1X-999 stream, page size)
    type Vector = (&'static [u8], &'static [u8], &'static [u8], usize);

    #[test]
    fn decodes_liblzo2_output_exactly() {
        let cases: [Vector; 4] = [
            (
                vector!("text4k", "zlib"),
                vector!("text4k", "lzo1"),
                vector!("text4k", "lzo999"),
                4096,
            ),
            (
                vector!("mixed4k", "zlib"),
                vector!("mixed4k", "lzo1"),
                vector!("mixed4k", "lzo999"),
                4096,
            ),
            (
                vector!("zero4k", "zlib"),
                vector!("zero4k", "lzo1"),
                vector!("zero4k", "lzo999"),
                4096,
            ),
            (
                vector!("far64k", "zlib"),
                vector!("far64k", "lzo1"),
                vector!("far64k", "lzo999"),
                65536,
            ),
        ];
        for (zlib, lzo1, lzo999, len) in cases {
            let want = reference(zlib, len);
            for stream in [lzo1, lzo999] {
                let mut out = vec![0u8; len];
                assert_eq!(decompress(stream, &mut out), Ok(len));
                assert!(out == want, "decoded bytes differ from the original");
                // A smaller page than the stream produces is an error, not a partial page.
                let mut small = vec![0u8; len - 1];
                assert!(decompress(stream, &mut small).is_err());
            }
        }
    }

    #[test]
    fn every_truncation_and_corruption_fails_without_panicking() {
        let stream: &[u8] = vector!("mixed4k", "lzo1");
        let mut out = vec![0u8; 4096];
        for cut in 0..stream.len() {
            assert!(
                decompress(stream.get(..cut).unwrap_or_default(), &mut out).is_err(),
                "cut {cut}"
            );
        }
        let mut trailing = stream.to_vec();
        trailing.push(0);
        assert!(decompress(&trailing, &mut out).is_err());
        // Flip bytes one at a time: any result is fine as long as nothing panics or overflows.
        let mut produced_ok = 0;
        for i in 0..stream.len() {
            let mut bad = stream.to_vec();
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0x5a;
            }
            if decompress(&bad, &mut out) == Ok(4096) {
                produced_ok += 1;
            }
        }
        assert!(
            produced_ok < stream.len(),
            "corruption must be noticed at least sometimes"
        );
    }

    #[test]
    fn matches_before_the_output_start_are_rejected() {
        // 0x40 | ...: a 3-byte match at distance 1 with nothing written yet.
        let mut out = [0u8; 16];
        assert!(decompress(&[0x40, 0x00, 0x11, 0x00, 0x00], &mut out).is_err());
        // Literal "abcd" (first byte 17 + 4) then the end marker.
        assert_eq!(
            decompress(&[21, b'a', b'b', b'c', b'd', 0x11, 0, 0], &mut out),
            Ok(4)
        );
        assert_eq!(out.get(..4), Some(&b"abcd"[..]));
    }
}
