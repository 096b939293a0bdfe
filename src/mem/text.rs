//! An output buffer for text built from many small pieces: watch mode's hits (one JSON object
//! or text block per trap, ~2 KiB each, ~100 pieces).
//!
//! Bytes, not a `String`: a piece that is known to be ASCII (digits, literals) goes in without
//! the UTF-8 check a `String` would need for bytes, and numbers are written without the
//! formatting machinery. Under a burst of traps in a TCG guest every instruction of the reader
//! counts against the writer's pace (examples/watch_hit_cost measures it). Only `&str` and
//! ASCII are ever put in, so the contents are always UTF-8.

use std::fmt;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text(Vec<u8>);

impl Text {
    pub fn with_capacity(n: usize) -> Text {
        Text(Vec::with_capacity(n))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text (always UTF-8: see the module comment).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }

    #[inline]
    pub fn put(&mut self, s: &str) {
        self.0.extend_from_slice(s.as_bytes());
    }

    #[inline]
    pub fn put_ascii(&mut self, c: u8) {
        debug_assert!(c.is_ascii());
        self.0.push(c & 0x7f);
    }

    /// `0x` and lowercase hex digits, at least `min_digits` of them (zero-padded): what
    /// `{v:#0w$x}` writes with `w = 2 + min_digits`.
    pub fn put_hex(&mut self, v: u64, min_digits: usize) {
        let needed = (64 - v.leading_zeros() as usize).div_ceil(4);
        let n = needed.max(min_digits).clamp(1, 16);
        // All 16 digits at once (most significant first), then "0x" over the two places before
        // the n kept: a few word operations instead of a loop per digit.
        let mut buf = [0u8; 18];
        buf[2..10].copy_from_slice(&hex_digits((v >> 32) as u32).to_be_bytes());
        buf[10..].copy_from_slice(&hex_digits(v as u32).to_be_bytes());
        buf[16 - n] = b'0';
        buf[17 - n] = b'x';
        self.0.extend_from_slice(&buf[16 - n..]);
    }

    /// Decimal, zero-padded to at least `min_digits` digits: what `{v:0w$}` writes.
    pub fn put_dec(&mut self, v: u64, min_digits: usize) {
        let mut buf = [b'0'; 20];
        let mut at = buf.len();
        let mut x = v;
        loop {
            at -= 1;
            buf[at] = b'0' + (x % 10) as u8;
            x /= 10;
            if x == 0 {
                break;
            }
        }
        let at = at.min(buf.len().saturating_sub(min_digits));
        self.0.extend_from_slice(&buf[at..]);
    }

    /// `s` as a JSON string literal ([`super::json::write_json_str`]).
    pub fn put_json_str(&mut self, s: &str) {
        super::json::write_json_str(s, |piece| self.put(piece));
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.put(s);
        Ok(())
    }
}

/// The 8 hex digits of `x` as ASCII, one per byte, the most significant in the top byte.
fn hex_digits(x: u32) -> u64 {
    // 0xabcdefgh -> 0x0000abcd0000efgh -> 0x00ab00cd00ef00gh -> 0x0a0b0c0d0e0f0g0h.
    let x = u64::from(x);
    let x = (x | x << 16) & 0x0000_ffff_0000_ffff;
    let x = (x | x << 8) & 0x00ff_00ff_00ff_00ff;
    let x = (x | x << 4) & 0x0f0f_0f0f_0f0f_0f0f;
    // Per byte n: '0' + n, plus 0x27 ('a' - '0' - 10) where n > 9 (n + 6 carries into bit 4;
    // no byte overflows, so no carry crosses bytes).
    let letters = ((x + 0x0606_0606_0606_0606) >> 4) & 0x0101_0101_0101_0101;
    x + 0x3030_3030_3030_3030 + letters * 0x27
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    #[test]
    fn hex_is_what_format_writes() {
        let mut values = vec![0u64, 1, 0xf, 0x10, 0xdead_beef, u64::MAX, 0xffff_8880_0000_0000];
        values.extend((0..64).map(|b| 1u64 << b));
        values.extend((0..64).map(|b| (1u64 << b) - 1));
        values.extend((0..16).map(|d| 0x0123_4567_89ab_cdefu64.rotate_left(4 * d)));
        for v in values {
            for digits in [0usize, 1, 2, 4, 8, 16] {
                let mut t = Text::default();
                t.put_hex(v, digits);
                assert_eq!(
                    t.as_str(),
                    format!("{v:#0w$x}", w = 2 + digits),
                    "{v:#x} {digits}"
                );
            }
        }
    }

    #[test]
    fn decimal_is_what_format_writes() {
        for v in [0u64, 1, 9, 10, 99, 100, 123_456_789, u64::MAX] {
            for digits in [0usize, 1, 2, 9, 20] {
                let mut t = Text::default();
                t.put_dec(v, digits);
                assert_eq!(t.as_str(), format!("{v:0digits$}"), "{v} {digits}");
            }
        }
    }

    #[test]
    fn json_strings_match_the_string_writer() {
        for s in [
            "",
            "plain",
            "a\"b\\c\nd\r\te",
            "\u{1}\u{1f}é ünï",
            "swapper/0",
            "\u{7f}",
        ] {
            let mut t = Text::default();
            t.put_json_str(s);
            assert_eq!(t.as_str(), super::super::json::json_str(s), "{s:?}");
        }
    }

    #[test]
    fn pieces_and_formatting_append() {
        let mut t = Text::with_capacity(8);
        t.put("ab");
        t.put_ascii(b'c');
        let _ = write!(t, "{}-{:x}", 5, 255);
        assert_eq!(t.as_str(), "abc5-ff");
        assert_eq!((t.len(), t.is_empty()), (7, false));
        t.clear();
        assert!(t.is_empty() && t.as_bytes().is_empty());
    }
}
