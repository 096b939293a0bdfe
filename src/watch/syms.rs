//! Watch mode's symbols: the shared kallsyms table (kernel::proc_kallsyms over
//! kernel::symtab), filtered as it streams in, plus a cache of formatted stack lines.
//!
//! /proc/kallsyms has ~120k lines here. Watch mode must stay small while it runs (goal: RSS <=
//! 8 MiB), and stacks and instruction addresses are always code, so only text symbols are kept,
//! plus the few other names watch mode asks for (its targets): a kernel with
//! CONFIG_KALLSYMS_ALL lists about as many variables as functions, which would otherwise double
//! the table.

use super::intmap::IntMap;
use crate::kernel::proc_kallsyms::Kallsyms;
use crate::mem::text::Text;

/// What watch mode keeps of kallsyms: code (t, T, w, W) and the names in `wanted`. `__pfx_*`
/// label the padding before each function (CONFIG_FUNCTION_PADDING_CFI): about half the table,
/// never a call site or a variable.
pub fn keep<'a>(wanted: &'a [&'a str]) -> impl Fn(char, &str) -> bool + 'a {
    move |kind, name| {
        name.len() <= 512
            && !name.starts_with("__pfx_")
            && (matches!(kind, 't' | 'T' | 'w' | 'W') || wanted.contains(&name))
    }
}

/// How [`Syms::list`] writes a list of addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// JSON string literals, comma-separated (the inside of an array).
    Json,
    /// One line per address: the prefix, then the symbol.
    Lines(&'static str),
}

/// Lists [`Syms::list`] keeps: a burst has a few stacks, hits from everywhere many.
const LISTS_MAX: usize = 512;

/// Entries each cache holds before it starts again: bounds watch mode's heap under hits from
/// everywhere (~100 bytes an entry).
const CACHE_MAX: usize = 16_384;

#[derive(Debug, Default)]
pub struct Syms {
    table: Kallsyms,
    /// Formatted `func+0xoff` per address seen: stacks repeat the same few addresses.
    cache: IntMap<u64, String>,
    /// The same as JSON string literals, for `--json`.
    json_cache: IntMap<u64, String>,
    /// Whole symbolized lists (a stack's frames, a snapshot's code words) by their addresses:
    /// a burst's hits have the same few stacks, and one copy of the list's text costs less
    /// than a lookup and a copy per frame.
    lists: IntMap<u64, (List, Vec<u64>, String)>,
    /// [`Syms::is_code`] per stack word seen: a burst's stacks hold the same return addresses
    /// hit after hit, and the table search is most of a snapshot's cost.
    code_cache: IntMap<u64, bool>,
    /// Where text symbols are, core and modules: [lowest, highest + 64 KiB). Most words of a
    /// stack copy are data pointers outside both, rejected here without a table search (the
    /// search costs ~70 ns a word natively, ten times that in the lab's TCG guests).
    text_spans: [(u64, u64); 2],
}

impl Syms {
    /// Streams /proc/kallsyms, keeping what [`keep`] keeps. Fails when it shows no addresses
    /// (kptr_restrict, not root).
    pub fn load(wanted: &[&str]) -> Result<Syms, String> {
        crate::target::live::load_kallsyms_filtered(&keep(wanted)).map(Syms::new)
    }

    pub fn new(table: Kallsyms) -> Syms {
        let mut text_spans = [(u64::MAX, 0u64); 2];
        for s in table.symbols() {
            if matches!(s.kind, 't' | 'T' | 'w' | 'W') {
                let span = &mut text_spans[usize::from(s.module.is_some())];
                span.0 = span.0.min(s.addr);
                span.1 = span.1.max(s.addr.saturating_add(0x1_0000));
            }
        }
        Syms {
            table,
            cache: IntMap::default(),
            json_cache: IntMap::default(),
            lists: IntMap::default(),
            code_cache: IntMap::default(),
            text_spans,
        }
    }

    /// The table (core kernel symbols before modules' for lookups by name).
    pub fn kallsyms(&self) -> &Kallsyms {
        &self.table
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Address of a symbol by name, core kernel before modules.
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.table.lookup(name)
    }

    /// Whether `addr` lies in a function: a text symbol at most 64 KiB below it (kallsyms gives
    /// no sizes; few kernel functions are longer). Used to pick return addresses out of a stack
    /// copy.
    pub fn is_code(&mut self, addr: u64) -> bool {
        if !self.text_spans.iter().any(|&(lo, hi)| lo <= addr && addr < hi) {
            return false;
        }
        if self.code_cache.len() > CACHE_MAX {
            self.code_cache.clear();
        }
        let table = &self.table;
        *self.code_cache.entry(addr).or_insert_with(|| {
            table
                .symbolize(addr)
                .is_some_and(|(s, off)| matches!(s.kind, 't' | 'T' | 'w' | 'W') && off < 0x1_0000)
        })
    }

    /// `func+0x1a` (`func+0x1a [module]`) or the bare hex address, cached.
    pub fn format(&mut self, addr: u64) -> &str {
        if self.cache.len() > CACHE_MAX {
            self.cache.clear();
        }
        let table = &self.table;
        self.cache.entry(addr).or_insert_with(|| table.format_addr(addr))
    }

    /// Writes the symbols of `addrs` as `how` says into `out`, word by word from the
    /// per-address caches. For lists that seldom repeat: a snapshot's code words include stale
    /// return addresses left on the stack, so most hits of a burst have a list of their own
    /// (lab, x86_64, pid_max writes: 1,795 distinct lists in 3,001 hits). Cached whole, each
    /// would build a string, and clearing the full cache freed hundreds at once, which musl's
    /// allocator gave back to the kernel and the next pass faulted in again.
    pub fn put_list(&mut self, how: List, addrs: &[u64], out: &mut Text) {
        for (i, &a) in addrs.iter().enumerate() {
            match how {
                List::Json => {
                    if i > 0 {
                        out.put(",");
                    }
                    out.put(self.format_json(a));
                }
                List::Lines(prefix) => {
                    out.put(prefix);
                    out.put(self.format(a));
                    out.put("\n");
                }
            }
        }
    }

    /// The symbols of `addrs` written as `how` says, cached by the whole list: for lists that
    /// repeat, like perf's call chains of one watched access.
    pub fn list(&mut self, how: List, addrs: &[u64]) -> &str {
        let mut key = match how {
            List::Json => 1u64,
            List::Lines(prefix) => 2 ^ ((prefix.len() as u64) << 8),
        };
        for &a in addrs {
            key = (key.rotate_left(5) ^ a).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
        let hit = self
            .lists
            .get(&key)
            // Element by element: slice equality becomes a memcmp, which musl does a byte at a
            // time.
            .is_some_and(|(h, l, _)| {
                *h == how && l.len() == addrs.len() && l.iter().zip(addrs).all(|(a, b)| a == b)
            });
        if !hit {
            if self.lists.len() >= LISTS_MAX {
                self.lists.clear();
            }
            let mut text = Text::with_capacity(0);
            self.put_list(how, addrs, &mut text);
            let text = text.as_str().to_string();
            self.lists.insert(key, (how, addrs.to_vec(), text));
        }
        self.lists.get(&key).map_or("", |(_, _, t)| t.as_str())
    }

    /// [`Syms::format`] as a JSON string literal, cached: `--json` prints a hit's symbols
    /// without escaping them again.
    pub fn format_json(&mut self, addr: u64) -> &str {
        if self.json_cache.len() > CACHE_MAX {
            self.json_cache.clear();
        }
        if !self.json_cache.contains_key(&addr) {
            let lit = crate::mem::json::json_str(self.format(addr));
            self.json_cache.insert(addr, lit);
        }
        self.json_cache.get(&addr).map(String::as_str).unwrap_or("null")
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

    fn parse(wanted: &[&str]) -> Syms {
        Syms::new(Kallsyms::read_filtered(SAMPLE.as_bytes(), &keep(wanted)).unwrap())
    }

    #[test]
    fn parses_looks_up_and_formats() {
        let mut s = parse(&[]);
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
        assert_eq!(s.format_json(0xffff_ffff_c000_0004), "\"mod_init+0x4 [mymod]\"");
        assert_eq!(s.format_json(0x1000), "\"0x1000\"");
        let two = [0xffff_ffff_8100_1010, 0x1000];
        for _ in 0..2 {
            assert_eq!(s.list(List::Json, &two), "\"helper+0x10\",\"0x1000\"");
            assert_eq!(s.list(List::Lines("  > "), &two), "  > helper+0x10\n  > 0x1000\n");
            for how in [List::Json, List::Lines("  > ")] {
                let mut t = Text::with_capacity(0);
                s.put_list(how, &two, &mut t);
                assert_eq!(
                    t.as_bytes(),
                    s.list(how, &two).as_bytes(),
                    "put_list writes what list caches"
                );
            }
            assert_eq!(s.list(List::Lines("- "), &two[..1]), "- helper+0x10\n");
            assert_eq!(s.list(List::Json, &[]), "");
        }
        assert!(s.is_code(0xffff_ffff_8100_1010) && s.is_code(0xffff_ffff_c000_0104));
        assert!(!s.is_code(0x1000), "below every symbol");
        assert!(!s.is_code(0xffff_ffff_8102_2000), "64 KiB past weak_fn");
        assert!(
            Syms::new(Kallsyms::read_filtered("0000000000000000 T x\n".as_bytes(), &keep(&[])).unwrap())
                .is_empty()
        );
    }

    #[test]
    fn keeps_only_code_and_the_variables_asked_for() {
        let s = parse(&["jiffies_64", "not_there"]);
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
