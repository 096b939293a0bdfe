//! VMCOREINFO: the kernel's `KEY=VALUE` lines describing its own layout (formats from
//! `include/linux/vmcore_info.h`, Linux 6.x): `SYMBOL(x)=%lx` (hex, no 0x), `NUMBER(x)=%ld`
//! (signed decimal, though arm64 prints some with `0x`), `OFFSET(s.f)`/`SIZE(x)`/`LENGTH(x)`=%lu,
//! `KERNELOFFSET=%lx`, `PAGESIZE=%ld`, `OSRELEASE=%s`.

use super::bytes::FormatError;

/// Parsed VMCOREINFO. Keys keep their file order; the first occurrence of a key wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmcoreInfo {
    entries: Vec<(String, String)>,
    /// Lines that are not `KEY=VALUE` text, in note order (the first few; `damaged_lines`
    /// counts them all).
    damage: Vec<Damage>,
    damaged_lines: usize,
    /// The note ends inside a line: every line after it may be lost.
    truncated: bool,
}

/// How many damaged lines are kept to describe (a note of random bytes has hundreds).
const DAMAGE_KEPT: usize = 8;

/// One line of the note that is not `KEY=VALUE` text. The kernel writes every line with
/// `vmcoreinfo_append_str()` as printable `KEY=VALUE\n` (kernel/vmcore_info.c, Linux 6.x), so
/// any other line is damage in the file, never something a kernel wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset in the note text where the line stops being text (for a line cut short,
    /// where its newline should be).
    pub offset: usize,
    /// 1-based line number.
    pub line: usize,
    /// What was found there, e.g. "a NUL byte".
    pub found: String,
    /// The line as far as it was readable: the text before the damage.
    prefix: String,
    /// The whole line, escaped and shortened, to show.
    shown: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at offset {:#x} of the note (line {}: \"{}\")",
            self.found, self.offset, self.line, self.shown
        )
    }
}

/// A line's bytes, printable, with `\0` and `\xNN` for the rest, at most `MAX` characters.
fn escape_line(line: &[u8]) -> String {
    const MAX: usize = 80;
    let mut out = String::new();
    for chunk in line.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\0' => out.push_str("\\0"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if out.chars().count() > MAX {
        out = out.chars().take(MAX).collect();
        out.push_str("...");
    }
    out
}

/// Why `line` (no newline) is not text: the offset of the trouble in it, what was found, and
/// how much of the line is readable; None when it is text.
fn byte_damage(line: &[u8]) -> Option<(usize, String, usize)> {
    let valid = std::str::from_utf8(line).map_or_else(|e| e.valid_up_to(), |_| line.len());
    // A NUL or control byte before the first one that is not UTF-8 is the first trouble.
    if let Some(d) = control_damage(line.get(..valid).unwrap_or_default()) {
        return Some(d);
    }
    let b = *line.get(valid)?;
    Some((
        valid,
        format!("byte {b:#04x}, which is not text (not UTF-8)"),
        valid,
    ))
}

/// Why a line of text is not `KEY=VALUE`.
fn shape_damage(line: &[u8]) -> Option<(usize, String, usize)> {
    let key = |eq: usize| String::from_utf8_lossy(line.get(..eq).unwrap_or_default()).into_owned();
    match line.iter().position(|&b| b == b'=') {
        Some(eq) if !key(eq).trim().is_empty() => None,
        Some(_) => Some((0, "a line with no key before its '='".to_string(), 0)),
        // Most likely its '=' was hit: the key is still readable at its start.
        None => Some((0, "a line without '='".to_string(), line.len())),
    }
}

/// The first NUL or control byte in `line` (the kernel prints none, not even a tab).
fn control_damage(line: &[u8]) -> Option<(usize, String, usize)> {
    let at = line.iter().position(|&b| b < 0x20 || b == 0x7f)?;
    let b = line.get(at).copied().unwrap_or_default();
    Some((
        at,
        if b == 0 {
            "a NUL byte".to_string()
        } else {
            format!("control byte {b:#04x}")
        },
        at,
    ))
}

impl VmcoreInfo {
    /// Parses the note text. Trailing NULs are padding (notes are padded to 4 bytes). Every
    /// line that is not `KEY=VALUE` text (a NUL or control byte, bytes that are not UTF-8, no
    /// `=`, a last line without its newline) is damage: it is skipped, never half-read, and
    /// recorded so that a key missing because of it is blamed on the file, not on the kernel
    /// (see [`VmcoreInfo::damage`], [`VmcoreInfo::lacks`]). The text is untrusted: any bytes
    /// parse.
    pub fn parse(raw: &[u8]) -> VmcoreInfo {
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        let text = raw.get(..end).unwrap_or_default();
        let mut v = VmcoreInfo::default();
        let mut start = 0usize;
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line_start = start;
            start = start.saturating_add(line.len()).saturating_add(1);
            // The piece after the last newline: empty when the text ends with one (as the
            // kernel writes it); otherwise the note ends inside a line, whose value may be cut.
            let cut = start > text.len();
            if line.is_empty() {
                // Harmless; the kernel writes none, and a lost line is caught by its neighbours.
                continue;
            }
            // In line order: bad bytes, then the cut (which explains a missing '=' too).
            let trouble = byte_damage(line)
                .or_else(|| {
                    cut.then(|| {
                        (
                            line.len(),
                            "a line cut short (the note ends with no newline)".to_string(),
                            line.len(),
                        )
                    })
                })
                .or_else(|| shape_damage(line));
            match trouble {
                None => {
                    let text = String::from_utf8_lossy(line);
                    if let Some((k, val)) = text.split_once('=') {
                        let (k, val) = (k.trim(), val.trim());
                        if !v.entries.iter().any(|(old, _)| old == k) {
                            v.entries.push((k.to_string(), val.to_string()));
                        }
                    }
                }
                Some((at, found, readable)) => {
                    v.truncated |= cut;
                    v.damaged_lines += 1;
                    if v.damage.len() < DAMAGE_KEPT {
                        v.damage.push(Damage {
                            offset: line_start.saturating_add(at),
                            line: i + 1,
                            found,
                            prefix: String::from_utf8_lossy(line.get(..readable).unwrap_or_default())
                                .into_owned(),
                            shown: escape_line(line),
                        });
                    }
                }
            }
        }
        v
    }

    /// What is wrong with the note, when something is: the first damaged line (where it
    /// stops being text and what was found there) and how many more there are.
    pub fn damage(&self) -> Option<String> {
        let first = self.damage.first()?;
        let more = self.damaged_lines.saturating_sub(1);
        Some(match more {
            0 => format!("{first}"),
            1 => format!("{first}, and 1 more damaged line"),
            n => format!("{first}, and {n} more damaged lines"),
        })
    }

    /// The damaged lines kept (the first few) for callers that show them one by one.
    pub fn damaged(&self) -> &[Damage] {
        &self.damage
    }

    /// Whether `key` may have been on a damaged line: the note was cut short (every line
    /// after the cut is lost), or a damaged line's readable start could begin `key` or begins
    /// with it (damage in the value, or a lost `=`).
    pub fn may_have_lost(&self, key: &str) -> bool {
        self.truncated
            || self.damaged_lines > self.damage.len()
            || self.damage.iter().any(|d| {
                let p = d.prefix.trim_start();
                key.starts_with(p) || p.starts_with(key)
            })
    }

    /// The error for a key this VMCOREINFO lacks, which makes `consequence` (e.g. "the kernel
    /// page tables cannot be located"). A damaged note that may have held the key is blamed,
    /// with where and what; otherwise `usually` says which kernels lack it. `key` may name
    /// alternatives: `"SYMBOL(a) or SYMBOL(b)"`.
    ///
    /// The kind is Corrupt when the damage is blamed, Unsupported when the kernel did not say.
    pub fn lacks(&self, key: &str, usually: Option<&str>, consequence: &str) -> FormatError {
        match self.damage() {
            Some(d) if key.split(" or ").any(|k| self.may_have_lost(k)) => FormatError::corrupt(format!(
                "the dump's VMCOREINFO note is corrupt: {d}. kmemd skips what is not text, so it \
                 lacks {key} and {consequence}. The dump file is damaged: copy it again from \
                 where the crash kernel saved it"
            )),
            damage => {
                let usually = usually.map(|u| format!(" ({u})")).unwrap_or_default();
                let also = damage
                    .map(|d| format!("; its VMCOREINFO note is also damaged elsewhere: {d}"))
                    .unwrap_or_default();
                FormatError::unsupported(format!(
                    "the dump's VMCOREINFO has no {key}{usually}, so {consequence}{also}"
                ))
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in file order.
    pub fn entries(&self) -> &[(String, String)] {
        &self.entries
    }

    /// The raw value of `key` (e.g. `"SYMBOL(swapper_pg_dir)"`).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `SYMBOL(name)`: a (KASLR-relocated) kernel virtual address, printed in hex.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        parse_hex(self.get(&format!("SYMBOL({name})"))?)
    }

    /// `NUMBER(name)`: signed decimal, or hex with `0x` (arm64 prints addresses that way).
    /// Hex values above `i64::MAX` come back as their two's-complement `i64`; use
    /// [`VmcoreInfo::number_u64`] for addresses.
    pub fn number(&self, name: &str) -> Option<i64> {
        parse_number(self.get(&format!("NUMBER({name})"))?)
    }

    /// `NUMBER(name)` as a 64-bit pattern (e.g. `kimage_voffset`, or a negative `phys_base`).
    pub fn number_u64(&self, name: &str) -> Option<u64> {
        self.number(name).map(|v| v as u64)
    }

    /// `OFFSET(struct.field)`.
    pub fn offset(&self, struct_field: &str) -> Option<u64> {
        parse_unsigned(self.get(&format!("OFFSET({struct_field})"))?)
    }

    /// `SIZE(type)`.
    pub fn size(&self, name: &str) -> Option<u64> {
        parse_unsigned(self.get(&format!("SIZE({name})"))?)
    }

    /// `LENGTH(array)`.
    pub fn length(&self, name: &str) -> Option<u64> {
        parse_unsigned(self.get(&format!("LENGTH({name})"))?)
    }

    /// `PAGESIZE`, when it is a power of two.
    pub fn page_size(&self) -> Option<u64> {
        parse_unsigned(self.get("PAGESIZE")?).filter(|p| p.is_power_of_two())
    }

    /// `KERNELOFFSET`: the KASLR slide of the kernel image, printed in hex.
    pub fn kerneloffset(&self) -> Option<u64> {
        parse_hex(self.get("KERNELOFFSET")?)
    }

    /// `OSRELEASE`, e.g. `6.1.0-28-amd64`.
    pub fn osrelease(&self) -> Option<&str> {
        self.get("OSRELEASE").filter(|s| !s.is_empty())
    }
}

/// A `SYMBOL()` or `KERNELOFFSET` value: hex, printed without `0x` (`%lx`); `0x` is accepted.
pub fn parse_hex(v: &str) -> Option<u64> {
    let v = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")).unwrap_or(v);
    u64::from_str_radix(v, 16).ok()
}

fn parse_unsigned(v: &str) -> Option<u64> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// A `NUMBER()` value: signed decimal (`%ld`), or hex with `0x` as arm64 prints addresses (a
/// leading `-` applies to either). Values above `i64::MAX` come back as their two's complement.
pub fn parse_number(v: &str) -> Option<i64> {
    let (neg, body) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let magnitude: u64 = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => {
            if neg {
                // i64::MIN's magnitude does not fit in i64 but does in u64.
                body.parse().ok()?
            } else {
                return body
                    .parse::<i64>()
                    .ok()
                    .or_else(|| body.parse::<u64>().ok().map(|u| u as i64));
            }
        }
    };
    Some(if neg {
        (magnitude as i64).wrapping_neg()
    } else {
        magnitude as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::bytes::FormatErrorKind;

    const SAMPLE: &[u8] = b"OSRELEASE=6.1.0-28-amd64\nBUILD-ID=abc\nPAGESIZE=4096\n\
SYMBOL(init_top_pgt)=ffffffff9d20a000\nSYMBOL(swapper_pg_dir)=ffffffff9d20a000\n\
OFFSET(page.flags)=0\nOFFSET(list_head.next)=8\nSIZE(page)=64\nLENGTH(mem_section)=2048\n\
NUMBER(phys_base)=-598736896\nNUMBER(pgtable_l5_enabled)=0\nNUMBER(kimage_voffset)=0xffff7fffc7e00000\n\
NUMBER(TCR_EL1_T1SZ)=0x10\nKERNELOFFSET=1c000000\nCRASHTIME=1700000000\nbroken line\nPAGESIZE=8192\n\0\0\0";

    #[test]
    fn typed_accessors_decode_each_key_format() {
        let v = VmcoreInfo::parse(SAMPLE);
        assert_eq!(v.osrelease(), Some("6.1.0-28-amd64"));
        assert_eq!(v.page_size(), Some(4096), "the first PAGESIZE wins");
        assert_eq!(v.symbol("init_top_pgt"), Some(0xffff_ffff_9d20_a000));
        assert_eq!(v.symbol("nonexistent"), None);
        assert_eq!(v.offset("list_head.next"), Some(8));
        assert_eq!(v.size("page"), Some(64));
        assert_eq!(v.length("mem_section"), Some(2048));
        assert_eq!(v.number("phys_base"), Some(-598_736_896));
        assert_eq!(v.number_u64("phys_base"), Some(0xffff_ffff_dc50_0000));
        assert_eq!(v.number("pgtable_l5_enabled"), Some(0));
        assert_eq!(v.number_u64("kimage_voffset"), Some(0xffff_7fff_c7e0_0000));
        assert_eq!(v.number("TCR_EL1_T1SZ"), Some(16));
        assert_eq!(v.kerneloffset(), Some(0x1c00_0000));
        assert_eq!(v.get("CRASHTIME"), Some("1700000000"));
        assert_eq!(v.get("broken line"), None);
    }

    #[test]
    fn malformed_values_are_absent_not_wrong() {
        let v = VmcoreInfo::parse(b"SYMBOL(x)=zzz\nNUMBER(y)=12abc\nPAGESIZE=3000\nKERNELOFFSET=\n");
        assert_eq!(v.symbol("x"), None);
        assert_eq!(v.number("y"), None);
        assert_eq!(v.page_size(), None);
        assert_eq!(v.kerneloffset(), None);
        assert!(VmcoreInfo::parse(b"").is_empty());
        assert!(VmcoreInfo::parse(&[0xff, 0xfe, b'=', 0x80]).osrelease().is_none());
    }

    #[test]
    fn raw_values_parse() {
        let v = VmcoreInfo::parse(
            b"OSRELEASE=6.1.0\nSYMBOL(init_top_pgt)=ffffffff9a40a000\nNUMBER(phys_base)=-2147483648\nNUMBER(kimage_voffset)=0xffff7fffc0000000\nNUMBER(VA_BITS)=48\n",
        );
        assert_eq!(v.get("SYMBOL(init_top_pgt)"), Some("ffffffff9a40a000"));
        assert_eq!(v.get("SYMBOL(init_top)"), None);
        assert_eq!(parse_hex("ffffffff9a40a000"), Some(0xffff_ffff_9a40_a000));
        let pb = parse_number(v.get("NUMBER(phys_base)").unwrap()).unwrap();
        assert_eq!(pb, -0x8000_0000);
        assert_eq!(
            parse_number("0xffff7fffc0000000").map(|n| n as u64),
            Some(0xffff_7fff_c000_0000)
        );
        assert_eq!(parse_number("48"), Some(48));
        assert_eq!(parse_number("4x"), None);
    }

    /// A note as the kernel writes it: every line `KEY=VALUE\n`, then NUL padding.
    const GOOD: &[u8] = b"OSRELEASE=6.1.0-57-amd64\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffffb5210000\n\
NUMBER(phys_base)=-773849088\nNUMBER(pgtable_l5_enabled)=0\nKERNELOFFSET=32800000\n\0\0\0";

    /// GOOD with `bytes` written at the offset of `at`'s first byte plus `skip`.
    fn damaged(at: &str, skip: usize, bytes: &[u8]) -> Vec<u8> {
        let mut v = GOOD.to_vec();
        let i = GOOD.windows(at.len()).position(|w| w == at.as_bytes()).unwrap() + skip;
        v[i..i + bytes.len()].copy_from_slice(bytes);
        v
    }

    #[test]
    fn a_sound_note_has_no_damage() {
        let v = VmcoreInfo::parse(GOOD);
        assert_eq!(v.damage(), None);
        assert_eq!(v.entries().len(), 6);
        assert!(!v.may_have_lost("NUMBER(phys_base)"));
        assert!(!v.may_have_lost("NUMBER(VA_BITS)"));
        // Missing keys are the kernel's doing then.
        assert_eq!(
            v.lacks("NUMBER(VA_BITS)", Some("kernels before 4.12"), "no geometry"),
            FormatError::unsupported(
                "the dump's VMCOREINFO has no NUMBER(VA_BITS) (kernels before 4.12), so no geometry"
            )
        );
    }

    #[test]
    fn a_nul_inside_the_text_is_damage_where_it_is() {
        // "NUMBER(phys_base)" starts at byte 77 of GOOD (line 4); the NUL hits its 's'.
        let raw = damaged("NUMBER(phys_base)", 10, b"\0");
        let v = VmcoreInfo::parse(&raw);
        let d = &v.damaged()[0];
        assert_eq!((d.offset, d.line, d.found.as_str()), (87, 4, "a NUL byte"));
        assert_eq!(
            v.damage().unwrap(),
            "a NUL byte at offset 0x57 of the note (line 4: \"NUMBER(phy\\0_base)=-773849088\")"
        );
        // The damaged line is skipped, never half-read; the lines after it still count.
        assert_eq!(v.number("phys_base"), None);
        assert_eq!(v.number("pgtable_l5_enabled"), Some(0));
        assert_eq!(v.kerneloffset(), Some(0x3280_0000));
        // The missing key is blamed on the damage, with where and what, not on old kernels.
        assert!(v.may_have_lost("NUMBER(phys_base)"));
        assert!(!v.may_have_lost("NUMBER(VA_BITS)"));
        let e = v.lacks("NUMBER(phys_base)", Some("kernels before 4.10"), "no page tables");
        assert_eq!(e.kind, FormatErrorKind::Corrupt);
        let e = e.detail;
        assert!(
            e.starts_with("the dump's VMCOREINFO note is corrupt: a NUL byte at offset 0x57"),
            "{e}"
        );
        assert!(e.contains("lacks NUMBER(phys_base) and no page tables"), "{e}");
        assert!(!e.contains("4.10"), "{e}");
        // A key the damaged line cannot have held is the kernel's doing, and the damage is
        // still mentioned.
        let e = v.lacks("NUMBER(VA_BITS)", Some("kernels before 4.12"), "no geometry");
        assert_eq!(e.kind, FormatErrorKind::Unsupported);
        let e = e.detail;
        assert!(
            e.starts_with("the dump's VMCOREINFO has no NUMBER(VA_BITS) (kernels before 4.12)"),
            "{e}"
        );
        assert!(
            e.contains("also damaged elsewhere: a NUL byte at offset 0x57"),
            "{e}"
        );
    }

    #[test]
    fn bytes_that_are_not_text_are_damage() {
        // A stray byte that is not UTF-8, in a value.
        let v = VmcoreInfo::parse(&damaged("NUMBER(phys_base)=", 19, b"\xff"));
        let d = &v.damaged()[0];
        assert_eq!((d.offset, d.line), (96, 4));
        assert_eq!(d.found, "byte 0xff, which is not text (not UTF-8)");
        assert!(v
            .damage()
            .unwrap()
            .contains("\"NUMBER(phys_base)=-\\xff73849088\""));
        assert_eq!(v.number("phys_base"), None, "a damaged value is never used");
        assert!(v.may_have_lost("NUMBER(phys_base)"));
        // A control byte (a bit flip away from a digit).
        let v = VmcoreInfo::parse(&damaged("PAGESIZE=4096", 10, b"\x10"));
        assert_eq!(v.damaged()[0].found, "control byte 0x10");
        assert_eq!(v.page_size(), None);
        // A line whose '=' was hit: its key is still known.
        let v = VmcoreInfo::parse(&damaged("NUMBER(phys_base)=", 17, b"-"));
        assert_eq!(v.damaged()[0].found, "a line without '='");
        assert_eq!(v.damaged()[0].offset, 77, "the line's start");
        assert!(v.may_have_lost("NUMBER(phys_base)"));
        assert!(!v.may_have_lost("NUMBER(pgtable_l5_enabled)"));
    }

    #[test]
    fn a_note_cut_inside_a_line_loses_that_line_and_everything_after() {
        // Cut in the middle of the phys_base value: "NUMBER(phys_base)=-7738" must not be
        // read as -7738.
        let i = GOOD.windows(4).position(|w| w == b"-773").unwrap() + 5;
        let mut raw = GOOD[..i].to_vec();
        raw.extend_from_slice(&[0; 8]);
        let v = VmcoreInfo::parse(&raw);
        assert_eq!(v.number("phys_base"), None);
        let d = &v.damaged()[0];
        assert_eq!((d.offset, d.line), (i, 4));
        assert_eq!(d.found, "a line cut short (the note ends with no newline)");
        // Whatever the lost tail held may be missing.
        assert!(v.may_have_lost("NUMBER(pgtable_l5_enabled)"));
        assert!(v.may_have_lost("NUMBER(VA_BITS)"));
        let e = v.lacks("KERNELOFFSET", None, "x");
        assert_eq!(e.kind, FormatErrorKind::Corrupt);
        assert!(e.detail.starts_with("the dump's VMCOREINFO note is corrupt"));
        // Without padding too.
        let v = VmcoreInfo::parse(&GOOD[..i]);
        assert_eq!(v.damaged()[0].offset, i);
    }

    #[test]
    fn many_damaged_lines_are_counted_and_a_few_kept() {
        let mut raw = Vec::new();
        for i in 0..20 {
            raw.extend_from_slice(format!("SYMBOL(s{i})=ff\x01\n").as_bytes());
        }
        let v = VmcoreInfo::parse(&raw);
        assert!(v.is_empty());
        assert_eq!(v.damaged().len(), DAMAGE_KEPT);
        assert!(v.damage().unwrap().ends_with(", and 19 more damaged lines"));
        // Lines not kept could have held anything.
        assert!(v.may_have_lost("NUMBER(phys_base)"));
    }

    #[test]
    fn numbers_cover_the_signed_range() {
        assert_eq!(parse_number("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_number("18446744073709551615"), Some(-1));
        assert_eq!(parse_number("-0x10"), Some(-16));
        assert_eq!(parse_number("-"), None);
    }
}
