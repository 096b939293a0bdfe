//! `/proc/kallsyms`: name to address and address to `func+0xoff`, loaded once.

use std::io;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbol {
    pub addr: u64,
    pub name: String,
    /// nm-style type letter (`T`, `t`, `D`, ...).
    pub kind: char,
    /// Module name for symbols of loadable modules (`[ext4]` in kallsyms).
    pub module: Option<String>,
}

/// The fields of one kallsyms line `addr type name [module]`, as they stand in it (the module
/// with its brackets); `None` when the line has fewer fields or the address is not hex. Shared
/// with watch mode's compact table (watch::syms), which keeps only slices of these.
pub fn split_line(line: &str) -> Option<(u64, &str, &str, Option<&str>)> {
    let mut it = line.split_whitespace();
    let addr = u64::from_str_radix(it.next()?, 16).ok()?;
    let kind = it.next()?;
    let name = it.next()?;
    Some((addr, kind, name, it.next()))
}

/// A kallsyms table sorted by address.
#[derive(Debug, Clone, Default)]
pub struct Kallsyms {
    syms: Vec<Symbol>,
}

impl Kallsyms {
    pub const PATH: &'static str = "/proc/kallsyms";

    /// Reads `/proc/kallsyms`. Fails when every address reads as zero, which is how the kernel
    /// hides them from processes without CAP_SYSLOG or under `kernel.kptr_restrict=2`.
    pub fn load() -> Result<Kallsyms, String> {
        let text = std::fs::read_to_string(Self::PATH).map_err(|e: io::Error| {
            format!("cannot read {}: {e} (kmemd needs procfs and root)", Self::PATH)
        })?;
        let table = Kallsyms::parse(&text);
        if table.syms.is_empty() {
            let kptr = std::fs::read_to_string("/proc/sys/kernel/kptr_restrict").unwrap_or_default();
            return Err(format!(
                "{} shows no addresses (all zero; kernel.kptr_restrict={}): run kmemd as root, \
                 and if it still hides them, `sysctl kernel.kptr_restrict=1`",
                Self::PATH,
                kptr.trim()
            ));
        }
        Ok(table)
    }

    /// Parses kallsyms text, dropping lines with a zero address (hidden pointers) and lines that
    /// do not parse.
    pub fn parse(text: &str) -> Kallsyms {
        let mut syms: Vec<Symbol> = text
            .lines()
            .filter_map(|line| {
                let (addr, kind, name, module) = split_line(line)?;
                let kind = kind.chars().next()?;
                let name = name.to_string();
                let module = module.map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string());
                (addr != 0).then_some(Symbol {
                    addr,
                    name,
                    kind,
                    module,
                })
            })
            .collect();
        syms.sort_by_key(|s| s.addr);
        Kallsyms { syms }
    }

    pub fn is_empty(&self) -> bool {
        self.syms.is_empty()
    }

    pub fn len(&self) -> usize {
        self.syms.len()
    }

    pub fn symbols(&self) -> &[Symbol] {
        &self.syms
    }

    /// Address of the first symbol with this name (core kernel symbols come before modules').
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.syms
            .iter()
            .filter(|s| s.name == name)
            .min_by_key(|s| s.module.is_some())
            .map(|s| s.addr)
    }

    /// Whether data symbols (`D`, `d`, `B`, `b`, `R`, `r`) are listed: without
    /// CONFIG_KALLSYMS_ALL only text symbols are.
    pub fn has_data_symbols(&self) -> bool {
        self.syms
            .iter()
            .any(|s| matches!(s.kind, 'D' | 'd' | 'B' | 'b' | 'R' | 'r'))
    }

    /// The symbol at or below `addr`, with the offset into it.
    pub fn symbolize(&self, addr: u64) -> Option<(&Symbol, u64)> {
        let idx = self.syms.partition_point(|s| s.addr <= addr);
        let sym = self.syms.get(idx.checked_sub(1)?)?;
        Some((sym, addr - sym.addr))
    }

    /// `func+0x1a/[module]` text for a stack line, or the bare hex address.
    pub fn format_addr(&self, addr: u64) -> String {
        match self.symbolize(addr) {
            Some((s, off)) => match &s.module {
                Some(m) => format!("{}+{:#x} [{m}]", s.name, off),
                None => format!("{}+{:#x}", s.name, off),
            },
            None => format!("{addr:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _text
ffffffff81000000 T _stext
ffffffff81001000 t helper
ffffffff82000000 D jiffies
0000000000000000 T hidden
ffffffffc0000000 t mod_init\t[mymod]
ffffffffc0000100 T _text\t[mymod]
garbage line
";

    #[test]
    fn parses_sorts_and_drops_hidden() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.len(), 6);
        assert_eq!(k.lookup("hidden"), None);
        assert_eq!(
            k.lookup("_text"),
            Some(0xffff_ffff_8100_0000),
            "core symbol wins over module's"
        );
        assert!(k.has_data_symbols());
        assert_eq!(k.symbols()[4].module.as_deref(), Some("mymod"));
    }

    #[test]
    fn splits_lines_into_their_fields() {
        assert_eq!(
            split_line("ffffffffc0000000 t mod_init\t[mymod]\n"),
            Some((0xffff_ffff_c000_0000, "t", "mod_init", Some("[mymod]")))
        );
        assert_eq!(
            split_line("ffffffff81000000 T _text"),
            Some((0xffff_ffff_8100_0000, "T", "_text", None))
        );
        assert_eq!(split_line("ffffffff81000000 T"), None);
        assert_eq!(split_line("zz T name"), None);
        assert_eq!(split_line(""), None);
    }

    #[test]
    fn symbolizes_with_offsets() {
        let k = Kallsyms::parse(SAMPLE);
        assert_eq!(k.format_addr(0xffff_ffff_8100_1010), "helper+0x10");
        assert_eq!(k.format_addr(0xffff_ffff_c000_0004), "mod_init+0x4 [mymod]");
        assert_eq!(k.format_addr(0x1000), "0x1000");
        assert!(Kallsyms::parse("0000000000000000 T x\n").is_empty());
    }
}
