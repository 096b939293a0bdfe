//! A compact symbol table: every name stored once in one string arena, 16 bytes of index per
//! symbol, and, once name lookups show they are many, a by-name index of `u32` positions sorted
//! by name (binary search, no second copy of the names). /proc/kallsyms has ~120k symbols; as
//! `Vec<String>` plus a `HashMap<String, usize>` that cost ~40 MB, held twice in the live server.
//!
//! Core kernel symbols and module symbols (kallsyms lines with `[module]`) are kept apart: the
//! core ones are what [`SymbolTable::lookup`]/[`SymbolTable::symbolize`] answer from (module
//! symbols move with each load), the `_any` methods also see the modules' (`/proc/kallsyms`
//! users: `kernel::proc_kallsyms::Kallsyms`).

/// One kernel symbol, owned (what the decoders produce).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sym {
    pub addr: u64,
    pub name: String,
    /// nm-style type letter (`T`, `t`, `D`, ...); `?` when the source has none.
    pub kind: char,
}

/// One symbol of a [`SymbolTable`], borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SymRef<'a> {
    pub addr: u64,
    pub name: &'a str,
    /// nm-style type letter (`T`, `t`, `D`, ...); `?` when the source has none.
    pub kind: char,
    /// Module name for symbols of loadable modules (`[ext4]` in kallsyms, without brackets).
    pub module: Option<&'a str>,
}

/// One symbol of a table: 16 bytes. Its name is `names[name..name + len]` (the arena holds the
/// names in the order they were added, so building the table never copies them), its module is
/// in `SymbolTable::module_of`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: u64,
    name: u32,
    /// KSYM_NAME_LEN is 512 (include/linux/kallsyms.h, 6.1+); longer ELF names are dropped.
    len: u16,
    /// nm-style type letter, ASCII (`?` stands for anything else).
    kind: u8,
}

/// Symbols by name and by address.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    /// Core symbols sorted by (address, name), then module symbols sorted by address (ties in
    /// the order they were added, as /proc/kallsyms lists them).
    entries: Vec<Entry>,
    /// `entries[..core]` are the core kernel's symbols.
    core: usize,
    /// Every name, in the order they were added.
    names: String,
    modules: Vec<String>,
    /// Index into `modules` of each module symbol, `entries[core + i]`.
    module_of: Vec<u32>,
    /// Positions in `entries` sorted by (name, position): for one name, core symbols come
    /// first, each group by ascending address. Built at the [`SCANS_BEFORE_INDEX`]th name
    /// lookup; the ones before scan `entries`.
    by_name: std::sync::OnceLock<Vec<u32>>,
    /// Name lookups answered by a scan so far.
    scans: ScanCount,
}

/// Name lookups a table answers by scanning its entries (~1 ms for /proc/kallsyms' 120k)
/// before it builds its by-name index: watch mode and `--read` look up a handful of names and
/// never pay the index (4 bytes a symbol, 200-500 KB for a whole kallsyms, and a sort that
/// needs 16 more bytes a symbol while it runs); a GDB session's symbol queries get it.
const SCANS_BEFORE_INDEX: u32 = 16;

/// A counter a shared table bumps through `&self`; cloned by value.
#[derive(Debug, Default)]
struct ScanCount(std::sync::atomic::AtomicU32);

impl Clone for ScanCount {
    fn clone(&self) -> ScanCount {
        use std::sync::atomic::{AtomicU32, Ordering};
        ScanCount(AtomicU32::new(self.0.load(Ordering::Relaxed)))
    }
}

/// Adds symbols one at a time, then sorts them once ([`SymbolBuilder::finish`]). Core symbols
/// are kept as table entries from the start and sorted in place: building the table from
/// /proc/kallsyms holds one copy of the names and of the entries (issue 16: the build's second
/// copies, ~8 MB for 121k symbols, were the live server's peak).
#[derive(Debug, Default)]
pub struct SymbolBuilder {
    core: Vec<Entry>,
    /// Module symbols and their index into `modules`.
    module_syms: Vec<(Entry, u32)>,
    names: String,
    modules: Vec<String>,
}

impl SymbolBuilder {
    pub fn new() -> SymbolBuilder {
        SymbolBuilder::default()
    }

    /// Room for `n` more symbols (when the count is known).
    pub fn reserve(&mut self, n: usize) {
        self.core.reserve_exact(n);
    }

    /// Adds a symbol; those with a zero address (hidden pointers) or an empty name are dropped,
    /// as are names longer than 64 KiB.
    pub fn push(&mut self, addr: u64, name: &str, kind: char, module: Option<&str>) {
        if addr == 0 || name.is_empty() {
            return;
        }
        let (Ok(off), Ok(len)) = (u32::try_from(self.names.len()), u16::try_from(name.len())) else {
            return;
        };
        let count = self.core.len() + self.module_syms.len();
        if off.checked_add(u32::from(len)).is_none() || count >= u32::MAX as usize {
            return;
        }
        let kind = if kind.is_ascii() { kind as u8 } else { b'?' };
        let entry = Entry {
            addr,
            name: off,
            len,
            kind,
        };
        match module {
            None => self.core.push(entry),
            Some(m) => {
                // kallsyms lists each module's symbols together: the last module is the likely one.
                let idx = match self.modules.iter().rposition(|k| k == m) {
                    Some(i) => i,
                    None => {
                        self.modules.push(m.to_string());
                        self.modules.len() - 1
                    }
                };
                let Ok(idx) = u32::try_from(idx) else { return };
                self.module_syms.push((entry, idx));
            }
        }
        self.names.push_str(name);
    }

    pub fn finish(self) -> SymbolTable {
        let SymbolBuilder {
            core: mut entries,
            mut module_syms,
            mut names,
            mut modules,
        } = self;
        names.shrink_to_fit();
        modules.shrink_to_fit();
        let bytes = names.as_bytes();
        let name_of = |e: &Entry| {
            let start = e.name as usize;
            bytes.get(start..start + usize::from(e.len)).unwrap_or_default()
        };
        // Stable, which finds /proc/kallsyms' long runs already in address order (an unstable
        // sort took ~20 ms more); its scratch buffer is no larger than the by-name keys below.
        entries.sort_by(|a, b| a.addr.cmp(&b.addr).then_with(|| name_of(a).cmp(name_of(b))));
        // Stable: module symbols at one address keep their listed order.
        module_syms.sort_by_key(|(e, _)| e.addr);
        let core = entries.len();
        entries.reserve_exact(module_syms.len());
        entries.extend(module_syms.iter().map(|&(e, _)| e));
        let module_of = module_syms.iter().map(|&(_, m)| m).collect();
        drop(module_syms);
        SymbolTable {
            entries,
            core,
            names,
            modules,
            module_of,
            by_name: std::sync::OnceLock::new(),
            scans: ScanCount::default(),
        }
    }
}

/// The first 8 bytes of a name as a big-endian integer, zero-padded: ordering these never
/// contradicts the names' byte order (equal keys need the names compared).
pub(crate) fn name_prefix(name: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    for (d, s) in b.iter_mut().zip(name) {
        *d = *s;
    }
    u64::from_be_bytes(b)
}

impl SymbolTable {
    /// A table of core kernel symbols; zero addresses and empty names are dropped.
    pub fn new(syms: Vec<Sym>) -> SymbolTable {
        let mut b = SymbolBuilder::new();
        b.reserve(syms.len());
        for s in &syms {
            b.push(s.addr, &s.name, s.kind, None);
        }
        drop(syms);
        b.finish()
    }

    /// Byte range in `names` of entry `i`'s name.
    fn name_range(&self, i: usize) -> std::ops::Range<usize> {
        self.entries
            .get(i)
            .map_or(0..0, |e| e.name as usize..e.name as usize + usize::from(e.len))
    }

    /// Entry `i`'s name as bytes: comparing these skips the char-boundary checks of `str`
    /// slicing, which were a tenth of the time to load /proc/kallsyms.
    fn name_bytes(&self, i: usize) -> &[u8] {
        self.names.as_bytes().get(self.name_range(i)).unwrap_or_default()
    }

    fn sym(&self, i: usize) -> Option<SymRef<'_>> {
        let e = self.entries.get(i)?;
        let module = match i.checked_sub(self.core) {
            Some(m) => {
                let idx = *self.module_of.get(m)?;
                Some(self.modules.get(idx as usize)?.as_str())
            }
            None => None,
        };
        Some(SymRef {
            addr: e.addr,
            name: self.names.get(self.name_range(i)).unwrap_or_default(),
            kind: char::from(e.kind),
            module,
        })
    }

    fn core_entries(&self) -> &[Entry] {
        self.entries.get(..self.core).unwrap_or_default()
    }

    fn module_entries(&self) -> &[Entry] {
        self.entries.get(self.core..).unwrap_or_default()
    }

    /// Number of core kernel symbols.
    pub fn len(&self) -> usize {
        self.core
    }

    /// Whether there are no core kernel symbols.
    pub fn is_empty(&self) -> bool {
        self.core == 0
    }

    /// Number of symbols, module symbols included.
    pub fn len_all(&self) -> usize {
        self.entries.len()
    }

    /// The core kernel symbols by address (ties by name).
    pub fn symbols(&self) -> impl Iterator<Item = SymRef<'_>> + '_ {
        (0..self.core).filter_map(|i| self.sym(i))
    }

    /// Every symbol: the core kernel's by address, then the modules' by address.
    pub fn all_symbols(&self) -> impl Iterator<Item = SymRef<'_>> + '_ {
        (0..self.entries.len()).filter_map(|i| self.sym(i))
    }

    /// Position of the first entry (core before module, then lowest address) with this name:
    /// by a scan for the first [`SCANS_BEFORE_INDEX`] lookups, then through the index.
    fn first_named(&self, name: &str) -> Option<usize> {
        use std::sync::atomic::Ordering;
        let by_name = match self.by_name.get() {
            Some(index) => index,
            None if self.scans.0.fetch_add(1, Ordering::Relaxed) < SCANS_BEFORE_INDEX => {
                return self.scan_named(name);
            }
            None => self.by_name.get_or_init(|| self.name_index()),
        };
        let name = name.as_bytes();
        let at = by_name.partition_point(|&i| self.name_bytes(i as usize) < name);
        let i = *by_name.get(at)? as usize;
        (self.name_bytes(i) == name).then_some(i)
    }

    /// [`Self::first_named`] without the index: the entries are in that order already.
    fn scan_named(&self, name: &str) -> Option<usize> {
        let name = name.as_bytes();
        (0..self.entries.len()).find(|&i| self.name_bytes(i) == name)
    }

    /// Positions sorted by (name, position). Sorted with each name's first bytes as an integer
    /// key, so most comparisons do not reach the names (computing the key per comparison made
    /// loading /proc/kallsyms ~50 ms slower). The keys are a transient 16 bytes a symbol.
    /// Positions fit in u32 (push() stops at u32::MAX symbols).
    fn name_index(&self) -> Vec<u32> {
        let name_at = |i: u32| self.name_bytes(i as usize);
        let mut keyed: Vec<(u64, u32)> = (0..self.entries.len())
            .zip(0u32..)
            .map(|(_, i)| (name_prefix(name_at(i)), i))
            .collect();
        keyed.sort_unstable_by(|&(ka, a), &(kb, b)| {
            ka.cmp(&kb)
                .then_with(|| name_at(a).cmp(name_at(b)))
                .then(a.cmp(&b))
        });
        keyed.iter().map(|&(_, i)| i).collect()
    }

    /// Address of the core kernel symbol with this name; the lowest address wins for duplicated
    /// local names.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        let i = self.first_named(name).filter(|&i| i < self.core)?;
        self.entries.get(i).map(|e| e.addr)
    }

    /// Like [`SymbolTable::lookup`], falling back to the lowest-addressed module symbol.
    pub fn lookup_any(&self, name: &str) -> Option<u64> {
        self.entries.get(self.first_named(name)?).map(|e| e.addr)
    }

    /// The core symbol at or below `addr`, and the offset into it. Past the last symbol (module
    /// memory, the heap) only its first page counts, so such addresses are not passed off as
    /// `_end+0x...`.
    pub fn symbolize(&self, addr: u64) -> Option<(SymRef<'_>, u64)> {
        let core = self.core_entries();
        let idx = core.partition_point(|e| e.addr <= addr);
        let sym = self.sym(idx.checked_sub(1)?)?;
        let off = addr - sym.addr;
        if idx == core.len() && (off >= 4096 || sym.name == "_end") {
            return None;
        }
        Some((sym, off))
    }

    /// The symbol (core or module) at or below `addr` and the offset into it, with no limit past
    /// the last one. At one address a module symbol wins over a core one, and the last listed
    /// module symbol over earlier ones.
    pub fn symbolize_any(&self, addr: u64) -> Option<(SymRef<'_>, u64)> {
        let below = |s: &[Entry]| s.partition_point(|e| e.addr <= addr).checked_sub(1);
        let core = below(self.core_entries());
        let module = below(self.module_entries()).map(|m| m + self.core);
        let addr_of = |i: usize| self.entries.get(i).map_or(0, |e| e.addr);
        let i = match (core, module) {
            (Some(c), Some(m)) => {
                if addr_of(m) >= addr_of(c) {
                    m
                } else {
                    c
                }
            }
            (c, m) => c.or(m)?,
        };
        let sym = self.sym(i)?;
        Some((sym, addr - sym.addr))
    }

    /// Whether core data symbols (`D`, `d`, `B`, `b`, `R`, `r`) are listed: without
    /// CONFIG_KALLSYMS_ALL only text symbols are.
    pub fn has_data_symbols(&self) -> bool {
        self.core_entries().iter().any(|e| is_data(char::from(e.kind)))
    }

    /// Like [`SymbolTable::has_data_symbols`], module symbols included.
    pub fn has_data_symbols_any(&self) -> bool {
        self.entries.iter().any(|e| is_data(char::from(e.kind)))
    }
}

fn is_data(kind: char) -> bool {
    matches!(kind, 'D' | 'd' | 'B' | 'b' | 'R' | 'r')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(addr: u64, name: &str, kind: char) -> Sym {
        Sym {
            addr,
            name: name.into(),
            kind,
        }
    }

    #[test]
    fn name_prefixes_keep_the_byte_order() {
        let names = [
            "",
            "a",
            "a\u{1}",
            "ab",
            "abcdefgh",
            "abcdefghi",
            "abcdefgi",
            "b",
            "\u{7f}",
            "é",
        ];
        for x in names {
            for y in names {
                let (px, py) = (name_prefix(x.as_bytes()), name_prefix(y.as_bytes()));
                if px != py {
                    assert_eq!(px.cmp(&py), x.cmp(y), "{x:?} {y:?}");
                }
            }
        }
        assert_eq!(name_prefix(b"abcdefgh"), name_prefix(b"abcdefghi"));
    }

    #[test]
    fn empty_table_answers_nothing() {
        for t in [SymbolTable::default(), SymbolTable::new(Vec::new())] {
            assert!(t.is_empty());
            assert_eq!((t.len(), t.len_all()), (0, 0));
            assert_eq!(t.lookup(""), None);
            assert_eq!(t.lookup("x"), None);
            assert_eq!(t.lookup_any("x"), None);
            assert_eq!(t.symbolize(0x1000), None);
            assert_eq!(t.symbolize_any(u64::MAX), None);
            assert_eq!(t.symbols().count(), 0);
            assert!(!t.has_data_symbols());
        }
    }

    #[test]
    fn duplicated_local_names_resolve_to_the_lowest_address() {
        // Unsorted input, three `helper`s: the lowest address wins whatever the input order.
        let t = SymbolTable::new(vec![
            sym(0x3000, "helper", 't'),
            sym(0x1000, "a", 'T'),
            sym(0x2000, "helper", 't'),
            sym(0x4000, "helper", 't'),
            sym(0x1800, "helpe", 't'),
            sym(0x1900, "helperx", 't'),
            sym(0, "hidden", 'T'),
            sym(0x5000, "", 'T'),
        ]);
        assert_eq!(t.len(), 6, "zero addresses and empty names are dropped");
        assert_eq!(t.lookup("helper"), Some(0x2000));
        assert_eq!(t.lookup("helpe"), Some(0x1800));
        assert_eq!(t.lookup("helperx"), Some(0x1900));
        assert_eq!(t.lookup("a"), Some(0x1000));
        assert_eq!(t.lookup("hidden"), None);
        assert_eq!(t.lookup("help"), None);
        assert_eq!(t.lookup("zzz"), None);
        assert_eq!(t.lookup(""), None);
        let addrs: Vec<u64> = t.symbols().map(|s| s.addr).collect();
        assert_eq!(addrs, vec![0x1000, 0x1800, 0x1900, 0x2000, 0x3000, 0x4000]);
    }

    #[test]
    fn lookups_match_a_naive_search() {
        // Names sharing long prefixes (the 8-byte sort key ties), duplicated at several
        // addresses, added in a scrambled order; and a module copy of some of them.
        let mut syms = Vec::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..3000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let name = format!("trace_event_raw_{}", x % 700);
            syms.push(sym(0xffff_ffff_8100_0000 + (x >> 40) * 16 + i, &name, 't'));
        }
        let mut b = SymbolBuilder::new();
        for s in &syms {
            b.push(s.addr, &s.name, s.kind, None);
        }
        for s in syms.iter().take(50) {
            b.push(s.addr | 0xffff_ffff_c000_0000, &s.name, s.kind, Some("m"));
            b.push(
                s.addr | 0xffff_ffff_c000_0000,
                &format!("{}_mod_only", s.name),
                'T',
                Some("m"),
            );
        }
        let t = b.finish();
        assert_eq!(
            std::mem::size_of::<Entry>(),
            16,
            "the per-symbol cost this table is for"
        );
        for k in 0..720 {
            let name = format!("trace_event_raw_{k}");
            let want = syms.iter().filter(|s| s.name == name).map(|s| s.addr).min();
            assert_eq!(t.lookup(&name), want, "{name}");
            assert_eq!(t.lookup_any(&name), want, "{name}");
        }
        for s in syms.iter().take(50) {
            let name = format!("{}_mod_only", s.name);
            let want = syms
                .iter()
                .take(50)
                .filter(|o| format!("{}_mod_only", o.name) == name)
                .map(|o| o.addr | 0xffff_ffff_c000_0000)
                .min();
            assert_eq!(t.lookup(&name), None);
            assert_eq!(t.lookup_any(&name), want, "{name}");
        }
        for s in syms.iter().step_by(97) {
            let (got, off) = t.symbolize(s.addr + 1).unwrap();
            let best = syms
                .iter()
                .filter(|o| o.addr <= s.addr + 1)
                .map(|o| o.addr)
                .max()
                .unwrap();
            assert_eq!(got.addr + off, s.addr + 1);
            assert_eq!(got.addr, best);
        }
        // Past SCANS_BEFORE_INDEX lookups the index answers, as the scans did before it.
        assert!(
            t.by_name.get().is_some(),
            "the index, after {} lookups",
            720 + 100
        );
        for s in &syms {
            for name in [s.name.clone(), format!("{}_mod_only", s.name)] {
                assert_eq!(t.first_named(&name), t.scan_named(&name), "{name}");
            }
        }
        let names: Vec<&str> = t.all_symbols().map(|s| s.name).collect();
        assert_eq!(names.len(), 3100);
        assert!(names.iter().all(|n| n.starts_with("trace_event_raw_")));
    }

    /// A few name lookups scan; the index is built only when lookups are many.
    #[test]
    fn the_name_index_waits_for_many_lookups() {
        let t = SymbolTable::new(
            (0..100u64)
                .map(|i| sym(0x1000 + 16 * i, &format!("f{}", 99 - i), 't'))
                .collect(),
        );
        for i in 0..SCANS_BEFORE_INDEX as u64 {
            assert_eq!(t.lookup(&format!("f{}", 99 - i)), Some(0x1000 + 16 * i));
        }
        assert!(t.by_name.get().is_none(), "no index after a few lookups");
        assert_eq!(t.lookup("f0"), Some(0x1000 + 16 * 99));
        assert!(t.by_name.get().is_some(), "the index, once lookups are many");
        assert_eq!(t.lookup("f99"), Some(0x1000));
        assert_eq!(t.lookup("f100"), None);
    }

    #[test]
    fn by_address_with_ties_by_name() {
        let t = SymbolTable::new(vec![
            sym(0x1000, "_text", 'T'),
            sym(0x1000, "_stext", 'T'),
            sym(0x1010, "f", 't'),
            sym(0x9000, "_end", 'B'),
        ]);
        // Ties sort by name: the last at 0x1000 is `_text`.
        let (s, off) = t.symbolize(0x1008).unwrap();
        assert_eq!((s.name, off, s.kind, s.module), ("_text", 8, 'T', None));
        assert_eq!(t.symbolize(0x1010).map(|(s, o)| (s.name, o)), Some(("f", 0)));
        assert_eq!(t.symbolize(0x8fff).map(|(s, o)| (s.name, o)), Some(("f", 0x7fef)));
        assert_eq!(t.symbolize(0x9000), None, "_end ends the table");
        assert_eq!(t.symbolize(0xfff), None);
        assert!(t.has_data_symbols());
        let names: Vec<&str> = t.symbols().map(|s| s.name).collect();
        assert_eq!(names, vec!["_stext", "_text", "f", "_end"]);
    }

    #[test]
    fn module_symbols_are_kept_apart() {
        let mut b = SymbolBuilder::new();
        b.push(0xffff_ffff_8100_0000, "_text", 'T', None);
        b.push(0xffff_ffff_8100_0100, "init_fn", 't', None);
        b.push(0xffff_ffff_c000_0000, "mod_init", 't', Some("mymod"));
        b.push(0xffff_ffff_c000_0100, "_text", 'T', Some("mymod"));
        b.push(0xffff_ffff_c001_0000, "only_mod", 'd', Some("other"));
        b.push(0xffff_ffff_c001_0000, "same_addr", 't', Some("other"));
        b.push(0xffff_ffff_c002_0000, "init_fn", 't', Some("mymod"));
        let t = b.finish();
        assert_eq!((t.len(), t.len_all()), (2, 7));
        assert_eq!(t.lookup("_text"), Some(0xffff_ffff_8100_0000), "core wins");
        assert_eq!(t.lookup_any("_text"), Some(0xffff_ffff_8100_0000), "core wins");
        assert_eq!(t.lookup("init_fn"), Some(0xffff_ffff_8100_0100));
        assert_eq!(t.lookup("mod_init"), None, "modules are not core symbols");
        assert_eq!(t.lookup_any("mod_init"), Some(0xffff_ffff_c000_0000));
        assert_eq!(t.symbolize(0xffff_ffff_c000_0004), None);
        let (s, off) = t.symbolize_any(0xffff_ffff_c000_0004).unwrap();
        assert_eq!((s.name, off, s.module), ("mod_init", 4, Some("mymod")));
        let (s, _) = t.symbolize_any(0xffff_ffff_c001_0008).unwrap();
        assert_eq!(
            (s.name, s.module),
            ("same_addr", Some("other")),
            "last listed wins"
        );
        assert_eq!(
            t.symbolize_any(0xffff_ffff_8100_0104)
                .map(|(s, o)| (s.name, o, s.module)),
            Some(("init_fn", 4, None))
        );
        assert!(!t.has_data_symbols());
        assert!(t.has_data_symbols_any());
        assert_eq!(t.symbols().count(), 2);
        let mods: Vec<Option<&str>> = t.all_symbols().map(|s| s.module).collect();
        assert_eq!(
            mods,
            vec![
                None,
                None,
                Some("mymod"),
                Some("mymod"),
                Some("other"),
                Some("other"),
                Some("mymod")
            ]
        );
    }
}
