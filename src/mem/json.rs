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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\nd\u{1}é"), "\"a\\\"b\\\\c\\nd\\u0001é\"");
        assert_eq!(json_str(""), "\"\"");
    }
}
