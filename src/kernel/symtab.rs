//! A compact symbol table: every name stored once in one string arena, 24 bytes of index per
//! symbol, and a by-name index of `u32` positions sorted by name (binary search, no second copy
//! of the names). /proc/kallsyms has ~120k symbols; as `Vec<String>` plus a
//! `HashMap<String, usize>` that cost ~40 MB, held twice in the live server.
//!
//! Core kernel symbols and module symbols (kallsyms lines with `[module]`) are kept apart: the
//! core ones are what [`SymbolTable::lookup`]/[`SymbolTable::symbolize`] answer from (module
//! symbols move with each load), the `_any` methods also see the modules' (`/proc/kallsyms`
//! users: `live::kallsyms::Kallsyms`).

use std::cmp::Ordering;

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

#[derive(Debug, Clone, Copy)]
struct Entry {
    addr: u64,
    /// The name is `names[name..name + len]`.
    name: u32,
    len: u32,
    kind: char,
    /// 0 for core kernel symbols, else 1 + index into `modules`.
    module: u32,
}

/// Symbols by name and by address.
#[derive(Debug, Clone, Default)]
pub struct SymbolTable {
    /// Core symbols sorted by (address, name), then module symbols sorted by address (ties in
    /// the order they were added, as /proc/kallsyms lists them).
    entries: Vec<Entry>,
    /// `entries[..core]` are the core kernel's symbols.
    core: usize,
    names: String,
    modules: Vec<String>,
    /// Positions in `entries` sorted by (name, position): for one name, core symbols come
    /// first, each group by ascending address.
    by_name: Vec<u32>,
}

/// Adds symbols one at a time, then sorts them once ([`SymbolBuilder::finish`]).
#[derive(Debug, Default)]
pub struct SymbolBuilder {
    entries: Vec<Entry>,
    names: String,
    modules: Vec<String>,
}

impl SymbolBuilder {
    pub fn new() -> SymbolBuilder {
        SymbolBuilder::default()
    }

    /// Adds a symbol; those with a zero address (hidden pointers) or an empty name are dropped.
    pub fn push(&mut self, addr: u64, name: &str, kind: char, module: Option<&str>) {
        if addr == 0 || name.is_empty() {
            return;
        }
        let (Ok(off), Ok(len)) = (u32::try_from(self.names.len()), u32::try_from(name.len())) else {
            return;
        };
        if off.checked_add(len).is_none() {
            return;
        }
        let module = match module {
            None => 0,
            // kallsyms lists each module's symbols together: the last module is the likely one.
            Some(m) => match self.modules.iter().rposition(|k| k == m) {
                Some(i) => i + 1,
                None => {
                    self.modules.push(m.to_string());
                    self.modules.len()
                }
            },
        };
        let Ok(module) = u32::try_from(module) else { return };
        self.names.push_str(name);
        self.entries.push(Entry {
            addr,
            name: off,
            len,
            kind,
            module,
        });
    }

    pub fn finish(self) -> SymbolTable {
        let SymbolBuilder {
            mut entries,
            mut names,
            mut modules,
        } = self;
        names.shrink_to_fit();
        modules.shrink_to_fit();
        let name_of = |e: &Entry| entry_bytes(names.as_bytes(), e);
        // Stable: module symbols at one address keep their listed order.
        entries.sort_by(|a, b| {
            (a.module != 0)
                .cmp(&(b.module != 0))
                .then(a.addr.cmp(&b.addr))
                .then_with(|| {
                    if a.module == 0 && b.module == 0 {
                        name_of(a).cmp(name_of(b))
                    } else {
                        Ordering::Equal
                    }
                })
        });
        entries.shrink_to_fit();
        let core = entries.partition_point(|e| e.module == 0);
        // Sorted with each name's first bytes as an integer key, so most comparisons do not
        // reach the names (a third of the sorting time at opt-level z). Positions fit in u32:
        // names are at least one byte and their offsets are u32.
        let mut keyed: Vec<(u64, u32)> = entries
            .iter()
            .zip(0u32..)
            .map(|(e, i)| (name_prefix(name_of(e)), i))
            .collect();
        let name_at = |i: u32| entries.get(i as usize).map_or(&[][..], |e| name_of(e));
        keyed.sort_unstable_by(|&(ka, a), &(kb, b)| {
            ka.cmp(&kb)
                .then_with(|| name_at(a).cmp(name_at(b)))
                .then(a.cmp(&b))
        });
        let mut by_name = Vec::with_capacity(keyed.len());
        by_name.extend(keyed.iter().map(|&(_, i)| i));
        drop(keyed);
        SymbolTable {
            entries,
            core,
            names,
            modules,
            by_name,
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

fn entry_name<'a>(names: &'a str, e: &Entry) -> &'a str {
    let start = e.name as usize;
    names.get(start..start + e.len as usize).unwrap_or_default()
}

/// The name's bytes: comparing these skips the char-boundary checks of `str` slicing, which
/// were a tenth of the time to load /proc/kallsyms.
fn entry_bytes<'a>(names: &'a [u8], e: &Entry) -> &'a [u8] {
    let start = e.name as usize;
    names.get(start..start + e.len as usize).unwrap_or_default()
}

impl SymbolTable {
    /// A table of core kernel symbols; zero addresses and empty names are dropped.
    pub fn new(syms: Vec<Sym>) -> SymbolTable {
        let mut b = SymbolBuilder::new();
        b.entries.reserve_exact(syms.len());
        for s in &syms {
            b.push(s.addr, &s.name, s.kind, None);
        }
        drop(syms);
        b.finish()
    }

    fn sym(&self, e: &Entry) -> SymRef<'_> {
        SymRef {
            addr: e.addr,
            name: entry_name(&self.names, e),
            kind: e.kind,
            module: (e.module as usize)
                .checked_sub(1)
                .and_then(|i| self.modules.get(i))
                .map(String::as_str),
        }
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
        self.core_entries().iter().map(|e| self.sym(e))
    }

    /// Every symbol: the core kernel's by address, then the modules' by address.
    pub fn all_symbols(&self) -> impl Iterator<Item = SymRef<'_>> + '_ {
        self.entries.iter().map(|e| self.sym(e))
    }

    /// The first entry (core before module, then lowest address) with this name.
    fn first_named(&self, name: &str) -> Option<&Entry> {
        let (names, name) = (self.names.as_bytes(), name.as_bytes());
        let name_at = |i: u32| {
            self.entries
                .get(i as usize)
                .map_or(&[][..], |e| entry_bytes(names, e))
        };
        let at = self.by_name.partition_point(|&i| name_at(i) < name);
        let &i = self.by_name.get(at)?;
        self.entries
            .get(i as usize)
            .filter(|e| entry_bytes(names, e) == name)
    }

    /// Address of the core kernel symbol with this name; the lowest address wins for duplicated
    /// local names.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.first_named(name).filter(|e| e.module == 0).map(|e| e.addr)
    }

    /// Like [`SymbolTable::lookup`], falling back to the lowest-addressed module symbol.
    pub fn lookup_any(&self, name: &str) -> Option<u64> {
        self.first_named(name).map(|e| e.addr)
    }

    /// The core symbol at or below `addr`, and the offset into it. Past the last symbol (module
    /// memory, the heap) only its first page counts, so such addresses are not passed off as
    /// `_end+0x...`.
    pub fn symbolize(&self, addr: u64) -> Option<(SymRef<'_>, u64)> {
        let core = self.core_entries();
        let idx = core.partition_point(|e| e.addr <= addr);
        let e = core.get(idx.checked_sub(1)?)?;
        let sym = self.sym(e);
        let off = addr - e.addr;
        if idx == core.len() && (off >= 4096 || sym.name == "_end") {
            return None;
        }
        Some((sym, off))
    }

    /// The symbol (core or module) at or below `addr` and the offset into it, with no limit past
    /// the last one. At one address a module symbol wins over a core one, and the last listed
    /// module symbol over earlier ones.
    pub fn symbolize_any(&self, addr: u64) -> Option<(SymRef<'_>, u64)> {
        let below = |s: &[Entry]| {
            let idx = s.partition_point(|e| e.addr <= addr);
            idx.checked_sub(1).and_then(|i| s.get(i)).copied()
        };
        let e = match (below(self.core_entries()), below(self.module_entries())) {
            (Some(c), Some(m)) => {
                if m.addr >= c.addr {
                    m
                } else {
                    c
                }
            }
            (c, m) => c.or(m)?,
        };
        Some((self.sym(&e), addr - e.addr))
    }

    /// Whether core data symbols (`D`, `d`, `B`, `b`, `R`, `r`) are listed: without
    /// CONFIG_KALLSYMS_ALL only text symbols are.
    pub fn has_data_symbols(&self) -> bool {
        self.core_entries().iter().any(|e| is_data(e.kind))
    }

    /// Like [`SymbolTable::has_data_symbols`], module symbols included.
    pub fn has_data_symbols_any(&self) -> bool {
        self.entries.iter().any(|e| is_data(e.kind))
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
