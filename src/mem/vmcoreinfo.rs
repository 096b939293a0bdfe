//! VMCOREINFO: the kernel's `KEY=VALUE` lines describing its own layout (formats from
//! `include/linux/vmcore_info.h`, Linux 6.x): `SYMBOL(x)=%lx` (hex, no 0x), `NUMBER(x)=%ld`
//! (signed decimal, though arm64 prints some with `0x`), `OFFSET(s.f)`/`SIZE(x)`/`LENGTH(x)`=%lu,
//! `KERNELOFFSET=%lx`, `PAGESIZE=%ld`, `OSRELEASE=%s`.

/// Parsed VMCOREINFO. Keys keep their file order; the first occurrence of a key wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmcoreInfo {
    entries: Vec<(String, String)>,
}

impl VmcoreInfo {
    /// Parses the note text. Lines without `=` and non-UTF-8 bytes are tolerated (the text is
    /// untrusted); trailing NULs (notes are padded) end the text.
    pub fn parse(raw: &[u8]) -> VmcoreInfo {
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        let text = String::from_utf8_lossy(raw.get(..end).unwrap_or_default());
        let mut entries: Vec<(String, String)> = Vec::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            if !k.is_empty() && !entries.iter().any(|(old, _)| old == k) {
                entries.push((k.to_string(), v.to_string()));
            }
        }
        VmcoreInfo { entries }
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

    #[test]
    fn numbers_cover_the_signed_range() {
        assert_eq!(parse_number("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_number("18446744073709551615"), Some(-1));
        assert_eq!(parse_number("-0x10"), Some(-16));
        assert_eq!(parse_number("-"), None);
    }
}
