//! Hex and binary encodings used by RSP payloads.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Appends the lowercase hex form of `bytes` to `out`.
pub fn encode_into(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 15) as usize]);
    }
}

pub fn encode(bytes: &[u8]) -> String {
    let mut v = Vec::with_capacity(bytes.len() * 2);
    encode_into(bytes, &mut v);
    // Only ASCII hex digits were pushed.
    String::from_utf8(v).unwrap_or_default()
}

pub fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes an even-length hex string; `None` on odd length or a non-hex character.
pub fn decode(s: &[u8]) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    s.chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Parses a hex number (no prefix) that fits in a u64; `None` when empty, too long or not hex.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter()
        .try_fold(0u64, |acc, &c| Some(acc << 4 | u64::from(digit(c)?)))
}

/// Characters that must be escaped in binary data: `#`, `$`, `}` always, and `*` because GDB
/// would read it as run-length encoding.
pub fn needs_escape(b: u8) -> bool {
    matches!(b, b'#' | b'$' | b'}' | b'*')
}

/// Appends `data` with RSP binary escaping (`}` then byte ^ 0x20).
pub fn escape_binary_into(data: &[u8], out: &mut Vec<u8>) {
    out.reserve(data.len() + data.len() / 32);
    for &b in data {
        if needs_escape(b) {
            out.push(b'}');
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let data: Vec<u8> = (0..=255).collect();
        let h = encode(&data);
        assert_eq!(&h[..8], "00010203");
        assert_eq!(decode(h.as_bytes()).as_deref(), Some(&data[..]));
        assert_eq!(decode(b"ABcd"), Some(vec![0xab, 0xcd]));
        assert_eq!(decode(b"abc"), None);
        assert_eq!(decode(b"zz"), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"ffffffff81000000"), Some(0xffff_ffff_8100_0000));
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1ffffffffffffffff"), None, "17 digits overflow");
        assert_eq!(parse_u64(b"12g"), None);
    }

    #[test]
    fn binary_escaping() {
        let mut out = Vec::new();
        escape_binary_into(b"a#b$c}d*e", &mut out);
        assert_eq!(out, b"a}\x03b}\x04c}]d}\x0ae");
    }
}
