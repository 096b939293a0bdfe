//! Raw (unframed) Snappy block decompression, bounds-checked: what makedumpfile -p writes with
//! `snappy_compress` and crash reads with `snappy_uncompress`. Format from Snappy's
//! `format_description.txt`: a varint uncompressed length, then literal and copy elements.

const CORRUPT: &str = "corrupt snappy data";

/// Decompresses `input` into `out`, returning the number of bytes produced. Fails unless the
/// stream is well-formed and its declared length fits `out`.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, String> {
    let mut ip = 0usize;
    let byte = |ip: &mut usize| -> Result<usize, String> { next_byte(input, ip) };
    // Preamble: little-endian base-128 varint, at most 32 bits (5 bytes).
    let mut want = 0u64;
    for shift in (0..35).step_by(7) {
        let b = byte(&mut ip)?;
        want |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            break;
        }
        if shift == 28 {
            return Err(format!("{CORRUPT}: bad length preamble"));
        }
    }
    let want = usize::try_from(want).map_err(|_| format!("{CORRUPT}: bad length preamble"))?;
    if want > out.len() {
        return Err(format!(
            "{CORRUPT}: {want} bytes do not fit the {}-byte page",
            out.len()
        ));
    }
    let mut op = 0usize;
    while ip < input.len() {
        let tag = byte(&mut ip)?;
        let (len, dist) = match tag & 3 {
            0 => {
                let mut len = tag >> 2;
                if len >= 60 {
                    let extra = len - 59;
                    len = 0;
                    for i in 0..extra {
                        len |= byte(&mut ip)? << (8 * i);
                    }
                }
                let len = len + 1;
                let fits = ip.checked_add(len).is_some_and(|e| e <= input.len())
                    && op.checked_add(len).is_some_and(|e| e <= want);
                if !fits || !super::copy_literals(input, ip, out, op, len) {
                    return Err(format!("{CORRUPT}: literal runs past the input or the page"));
                }
                ip += len;
                op += len;
                continue;
            }
            1 => (4 + ((tag >> 2) & 7), ((tag >> 5) << 8) | byte(&mut ip)?),
            2 => (1 + (tag >> 2), byte(&mut ip)? | (byte(&mut ip)? << 8)),
            _ => {
                let mut d = 0usize;
                for i in 0..4 {
                    d |= byte(&mut ip)? << (8 * i);
                }
                (1 + (tag >> 2), d)
            }
        };
        if dist == 0 || dist > op {
            return Err(format!("{CORRUPT}: copy refers outside the page"));
        }
        let end = op.checked_add(len).filter(|&e| e <= want);
        let Some(end) = end else {
            return Err(format!("{CORRUPT}: output larger than declared"));
        };
        super::copy_match(out, op, dist, len);
        op = end;
    }
    if op != want {
        return Err(format!("{CORRUPT}: {op} bytes produced, {want} declared"));
    }
    Ok(op)
}

#[inline(always)]
fn next_byte(input: &[u8], ip: &mut usize) -> Result<usize, String> {
    match input.get(*ip) {
        Some(&b) => {
            *ip += 1;
            Ok(usize::from(b))
        }
        None => Err(ends_early()),
    }
}

#[cold]
fn ends_early() -> String {
    format!("{CORRUPT}: input ends early")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::clib::zlib_uncompress;

    macro_rules! vector {
        ($name:literal, $ext:literal) => {
            include_bytes!(concat!("../../../tests/data/codec/", $name, ".", $ext))
        };
    }

    /// Vectors made by libsnappy (tests/data/codec/make_vectors.py), checked against zlib copies.
    #[test]
    fn decodes_libsnappy_output_exactly() {
        let cases: [(&[u8], &[u8], usize); 4] = [
            (vector!("text4k", "zlib"), vector!("text4k", "snappy"), 4096),
            (vector!("mixed4k", "zlib"), vector!("mixed4k", "snappy"), 4096),
            (vector!("zero4k", "zlib"), vector!("zero4k", "snappy"), 4096),
            (vector!("far64k", "zlib"), vector!("far64k", "snappy"), 65536),
        ];
        for (zlib, stream, len) in cases {
            let mut want = vec![0u8; len];
            assert_eq!(zlib_uncompress(zlib, &mut want), Ok(len));
            let mut out = vec![0u8; len];
            assert_eq!(decompress(stream, &mut out), Ok(len));
            assert!(out == want, "decoded bytes differ from the original");
            let mut small = vec![0u8; len - 1];
            assert!(decompress(stream, &mut small).is_err());
        }
    }

    #[test]
    fn every_truncation_and_corruption_fails_without_panicking() {
        let stream: &[u8] = vector!("mixed4k", "snappy");
        let mut out = vec![0u8; 4096];
        for cut in 0..stream.len() {
            assert!(
                decompress(stream.get(..cut).unwrap_or_default(), &mut out).is_err(),
                "cut {cut}"
            );
        }
        for i in 0..stream.len() {
            let mut bad = stream.to_vec();
            if let Some(b) = bad.get_mut(i) {
                *b ^= 0xa5;
            }
            let _ = decompress(&bad, &mut out);
        }
        // Copy with offset 0, and a huge declared length.
        assert!(decompress(&[4, 0x00, b'a', 0x01, 0x00], &mut out).is_err());
        assert!(decompress(&[0xff, 0xff, 0xff, 0xff, 0x7f], &mut out).is_err());
    }
}
