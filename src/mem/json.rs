//! JSON string literals for the one-object-per-line outputs (`-w --json`, `--ps --json`, ...).
//! Hand-written: the dependency set has no JSON crate, and kmemd only ever writes JSON.

use std::fmt::Write as _;

/// Escapes a string for a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    push_json_str(&mut o, s);
    o
}

/// Appends `s` as a JSON string literal. Symbol names and task names almost never need escaping,
/// so runs of plain bytes are copied whole (char-by-char pushing was a third of watch mode's CPU
/// time under a hit storm).
pub fn push_json_str(o: &mut String, s: &str) {
    o.push('"');
    let mut plain = 0; // start of the pending run of bytes that need no escape
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        // `i` is at an ASCII byte, so both slices end on char boundaries.
        o.push_str(s.get(plain..i).unwrap_or(""));
        if esc.is_empty() {
            let _ = write!(o, "\\u{:04x}", b);
        } else {
            o.push_str(esc);
        }
        plain = i + 1;
    }
    o.push_str(s.get(plain..).unwrap_or(""));
    o.push('"');
}

/// Appends `v` as `0x` and lowercase hex digits, at least `min_digits` of them (zero-padded):
/// `format!("{v:#0w$x}", w = 2 + min_digits)` without the formatting machinery, which was a
/// tenth of watch mode's CPU per hit (every hit prints ~25 such numbers).
pub fn push_hex(o: &mut String, v: u64, min_digits: usize) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [b'0'; 16];
    let mut n = 0;
    let mut x = v;
    while x != 0 {
        buf[15 - n] = DIGITS[(x & 0xf) as usize];
        x >>= 4;
        n += 1;
    }
    let n = n.clamp(min_digits.clamp(1, 16), 16);
    o.push_str("0x");
    // Only ASCII digits were written.
    o.push_str(std::str::from_utf8(&buf[16 - n..]).unwrap_or(""));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_what_format_writes() {
        for v in [
            0u64,
            1,
            0xf,
            0x10,
            0xdead_beef,
            u64::MAX,
            0xffff_8880_0000_0000,
            1 << 63,
        ] {
            for digits in [0usize, 1, 2, 4, 8, 16] {
                let mut s = String::new();
                push_hex(&mut s, v, digits);
                assert_eq!(s, format!("{v:#0w$x}", w = 2 + digits), "{v:#x} {digits}");
            }
        }
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        assert_eq!(json_str(""), "\"\"");
    }
}
