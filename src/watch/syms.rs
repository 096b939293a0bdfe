//! A compact kallsyms table for watch mode, loaded once, plus a cache of formatted stack lines.
//!
//! /proc/kallsyms has ~120k lines here; `kernel::proc_kallsyms::Kallsyms` keeps every one of them (~6 MiB
//! with its by-name index). Watch mode must stay small while it runs (goal: RSS <= 8 MiB), so
//! this table streams the file and packs all names into one string with 16 bytes of index per
//! symbol (2.4 MiB for this kernel's 64k symbols). Stacks and instruction
//! addresses are always code, so only text symbols are kept, plus the few other names watch mode
//! asks for (its targets): a kernel with CONFIG_KALLSYMS_ALL lists about as many variables as
//! functions, which would otherwise double the table.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader, Read};

/// A hasher for integer keys (addresses, event ids, thread ids) of maps consulted for every hit:
/// SipHash's resistance to chosen keys buys nothing for keys the kernel hands us, and it cost
/// ~6 % of watch mode's CPU under a hit storm. Multiplicative (FxHash's constant), so the high
/// bits hashbrown uses for its control bytes depend on every input bit.
#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_u32(&mut self, v: u32) {
        self.write_u64(u64::from(v));
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }
}

/// A HashMap keyed by integers, hashed with `IntHasher`.
pub type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: u64,
    /// Offset of the name in `names`; the text there is `name` or `name [module]`.
    off: u32,
    name_len: u16,
    full_len: u16,
}

#[derive(Debug, Default)]
pub struct Syms {
    entries: Vec<Entry>,
    names: String,
    /// Formatted `func+0xoff` per address seen: stacks repeat the same few addresses.
    cache: IntMap<u64, String>,
}

impl Syms {
    pub const PATH: &'static str = "/proc/kallsyms";

    /// Streams /proc/kallsyms, keeping the text symbols and those named in `wanted`. Fails when
    /// it shows no addresses (kptr_restrict, not root).
    pub fn load(wanted: &[&str]) -> Result<Syms, String> {
        let f = std::fs::File::open(Self::PATH)
            .map_err(|e| format!("cannot read {}: {e} (kmemd needs procfs and root)", Self::PATH))?;
        let s = Syms::parse(f, wanted).map_err(|e| format!("cannot read {}: {e}", Self::PATH))?;
        if s.entries.is_empty() {
            return Err(format!(
                "{} shows no addresses (all zero): run kmemd as root, and if it still hides them, \
                 `sysctl kernel.kptr_restrict=1`",
                Self::PATH
            ));
        }
        Ok(s)
    }

    /// Parses kallsyms text (`addr type name [module]` lines), keeping text symbols (types t, T,
    /// w, W) and any symbol named in `wanted`, and dropping zero addresses and lines that do not
    /// parse.
    pub fn parse(r: impl Read, wanted: &[&str]) -> std::io::Result<Syms> {
        let mut s = Syms::default();
        let mut rd = BufReader::with_capacity(64 << 10, r);
        let mut line = String::new();
        loop {
            line.clear();
            if rd.read_line(&mut line)? == 0 {
                break;
            }
            let Some((addr, kind, name, module)) = crate::kernel::proc_kallsyms::split_line(&line) else {
                continue;
            };
            // `__pfx_*` label the padding before each function (CONFIG_FUNCTION_PADDING_CFI):
            // about half the table, never a call site or a variable.
            if addr == 0 || name.len() > 512 || name.starts_with("__pfx_") {
                continue;
            }
            if !matches!(kind, "t" | "T" | "w" | "W") && !wanted.contains(&name) {
                continue;
            }
            let Ok(off) = u32::try_from(s.names.len()) else {
                break;
            };
            s.names.push_str(name);
            if let Some(m) = module {
                s.names.push(' ');
                s.names.push_str(m);
            }
            let full_len = (s.names.len() - off as usize) as u16;
            s.entries.push(Entry {
                addr,
                off,
                name_len: name.len() as u16,
                full_len,
            });
        }
        s.entries.sort_by_key(|e| e.addr);
        s.entries.shrink_to_fit();
        s.names.shrink_to_fit();
        Ok(s)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn text(&self, e: &Entry, len: u16) -> &str {
        self.names
            .get(e.off as usize..e.off as usize + len as usize)
            .unwrap_or("?")
    }

    /// Address of a symbol by name, core kernel before modules.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.entries
            .iter()
            .filter(|e| self.text(e, e.name_len) == name)
            .min_by_key(|e| e.full_len != e.name_len)
            .map(|e| e.addr)
    }

    /// `func+0x1a` (`func+0x1a [module]`) or the bare hex address, cached.
    pub fn format(&mut self, addr: u64) -> &str {
        if self.cache.len() > 65_536 {
            self.cache.clear();
        }
        if !self.cache.contains_key(&addr) {
            let idx = self.entries.partition_point(|e| e.addr <= addr);
            let text = match idx.checked_sub(1).and_then(|i| self.entries.get(i)) {
                Some(e) => {
                    let name = self.text(e, e.name_len);
                    let module = self.text(e, e.full_len).get(e.name_len as usize..).unwrap_or("");
                    format!("{name}+{:#x}{module}", addr - e.addr)
                }
                None => format!("{addr:#x}"),
            };
            self.cache.insert(addr, text);
        }
        self.cache.get(&addr).map(String::as_str).unwrap_or("?")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
ffffffff81000000 T _text
ffffffff81000ff0 t __pfx_helper
ffffffff81001000 t helper
0000000000000000 T hidden
ffffffffc0000000 t mod_init\t[mymod]
ffffffffc0000100 T helper\t[mymod]
ffffffff82000000 D jiffies_64
ffffffff82000040 d some_static
ffffffff82000080 B bss_thing
ffffffff81002000 W weak_fn
garbage line
";

    #[test]
    fn parses_looks_up_and_formats() {
        let mut s = Syms::parse(SAMPLE.as_bytes(), &[]).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(s.lookup("hidden"), None);
        assert_eq!(s.lookup("__pfx_helper"), None, "padding labels are dropped");
        assert_eq!(s.format(0xffff_ffff_8100_0ff4), "_text+0xff4");
        assert_eq!(
            s.lookup("helper"),
            Some(0xffff_ffff_8100_1000),
            "core before module"
        );
        assert_eq!(s.lookup("mod_init"), Some(0xffff_ffff_c000_0000));
        assert_eq!(s.format(0xffff_ffff_8100_1010), "helper+0x10");
        assert_eq!(s.format(0xffff_ffff_c000_0004), "mod_init+0x4 [mymod]");
        assert_eq!(s.format(0xffff_ffff_c000_0104), "helper+0x4 [mymod]");
        assert_eq!(s.format(0x1000), "0x1000");
        assert!(Syms::parse("0000000000000000 T x\n".as_bytes(), &[])
            .unwrap()
            .is_empty());
    }

    #[test]
    fn keeps_only_code_and_the_variables_asked_for() {
        let s = Syms::parse(SAMPLE.as_bytes(), &["jiffies_64", "not_there"]).unwrap();
        assert_eq!(s.lookup("jiffies_64"), Some(0xffff_ffff_8200_0000));
        assert_eq!(s.lookup("some_static"), None);
        assert_eq!(s.lookup("bss_thing"), None);
        assert_eq!(s.lookup("weak_fn"), Some(0xffff_ffff_8100_2000));
        assert_eq!(s.len(), 6);
        // An address past the last function but inside the kept variable names it.
        let mut s = s;
        assert_eq!(s.format(0xffff_ffff_8200_0004), "jiffies_64+0x4");
    }
}
