//! JSON string literals for the one-object-per-line outputs (`-w --json`, `--ps --json`, ...).
//! Hand-written: the dependency set has no JSON crate, and kmemd only ever writes JSON.

/// Escapes a string for a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    push_json_str(&mut o, s);
    o
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(o: &mut String, s: &str) {
    write_json_str(s, |piece| o.push_str(piece));
}

/// Hands `s` as a JSON string literal to `put`, piece by piece: the one escaper behind
/// [`push_json_str`] and [`super::text::Text::put_json_str`]. Symbol names and task names almost
/// never need escaping, so runs of plain bytes go out whole (char-by-char pushing was a third of
/// watch mode's CPU time under a hit storm).
pub fn write_json_str(s: &str, mut put: impl FnMut(&str)) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    put("\"");
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
        put(s.get(plain..i).unwrap_or(""));
        if esc.is_empty() {
            let u = [
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ];
            put(std::str::from_utf8(&u).unwrap_or(""));
        } else {
            put(esc);
        }
        plain = i + 1;
    }
    put(s.get(plain..).unwrap_or(""));
    put("\"");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        assert_eq!(json_str(""), "\"\"");
    }
}
