//! The text format of `/proc/kallsyms`: name to address and address to `func+0xoff`, parsed
//! once from text a source hands over (live/kallsyms.rs opens the file).
//!
//! The table is a [`SymbolTable`] (names in one arena, a sorted by-name index) shared through an
//! `Arc` with the live [`crate::kernel::KernelInfo`], so the live server holds kallsyms once.

use super::{SymRef, SymbolBuilder, SymbolTable};
use std::io::{self, BufRead};
use std::sync::Arc;

/// One kallsyms symbol (`module` is set for symbols of loadable modules).
pub type Symbol<'a> = SymRef<'a>;

/// The fields of one kallsyms line `addr type name [module]`, as they stand in it (the module
/// with its brackets); `None` when the line has fewer fields or the address is not hex.
/// The kernel separates them with a space or a tab (kernel/kallsyms.c s_show), so only ASCII
/// whitespace is looked for (Unicode-aware splitting was a fifth of the time to load the file).
pub fn split_line(line: &str) -> Option<(u64, &str, &str, Option<&str>)> {
    let mut it = line.split_ascii_whitespace();
    let addr = u64::from_str_radix(it.next()?, 16).ok()?;
    let kind = it.next()?;
    let name = it.next()?;
    Some((addr, kind, name, it.next()))
}

/// A kallsyms table: core kernel symbols, then module symbols, each sorted by address.
#[derive(Debug, Clone, Default)]
pub struct Kallsyms {
    table: Arc<SymbolTable>,
}

impl Kallsyms {
    /// Reads kallsyms text line by line (see [`Kallsyms::parse`]); fails on a read error or on
    /// text that is not UTF-8.
    pub fn read(r: impl BufRead) -> io::Result<Kallsyms> {
        Kallsyms::read_filtered(r, &|_, _| true)
    }

    /// Like [`Kallsyms::read`], keeping only the symbols `keep(kind, name)` accepts: a caller
    /// that needs few of them (watch mode: code, and the variables it watches) keeps the table
    /// small while it streams the file.
    pub fn read_filtered(r: impl BufRead, keep: &dyn Fn(char, &str) -> bool) -> io::Result<Kallsyms> {
        Kallsyms::read_lines(r, keep, false)
    }

    /// Like [`Kallsyms::read_filtered`] for core kernel symbols only: it stops at the first
    /// module's line. /proc/kallsyms lists the core kernel's symbols first, then each module's
    /// (kernel/kallsyms.c `update_iter`), and every line costs the kernel a formatted print:
    /// a session that needs only core names (kernel/symbols.rs `KNOWN`) does not wait for a
    /// distribution kernel's tens of thousands of module lines.
    pub fn read_core_filtered(r: impl BufRead, keep: &dyn Fn(char, &str) -> bool) -> io::Result<Kallsyms> {
        Kallsyms::read_lines(r, keep, true)
    }

    fn read_lines(
        mut r: impl BufRead,
        keep: &dyn Fn(char, &str) -> bool,
        core_only: bool,
    ) -> io::Result<Kallsyms> {
        let mut b = SymbolBuilder::new();
        let mut line = String::with_capacity(256);
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                break;
            }
            if core_only && line.trim_end().ends_with(']') && split_line(&line).is_some_and(|l| l.3.is_some())
            {
                break;
            }
            add_line(&mut b, &line, keep);
        }
        Ok(Kallsyms {
            table: Arc::new(b.finish()),
        })
    }

    /// Reads kallsyms text only until the core kernel's `names[0]` turns up, keeping just the core
    /// symbols named in `names`: a caller that needs `_text` (KASLR) reads the first lines of
    /// /proc/kallsyms, not 121k of them (issue 16: `kmemd --read` spent most of its time and
    /// memory there). The flag says whether any line had a non-zero address (kptr_restrict
    /// hides them all).
    pub fn read_head(mut r: impl BufRead, names: &[&str]) -> io::Result<(Kallsyms, bool)> {
        let mut b = SymbolBuilder::new();
        let mut line = String::with_capacity(256);
        let mut any_address = false;
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                break;
            }
            let Some((addr, kind, name, module)) = split_line(&line) else {
                continue;
            };
            any_address |= addr != 0;
            if addr == 0 || module.is_some() || !names.contains(&name) {
                continue;
            }
            b.push(addr, name, kind.chars().next().unwrap_or('?'), None);
            if names.first() == Some(&name) {
                break;
            }
        }
        Ok((
            Kallsyms {
                table: Arc::new(b.finish()),
            },
            any_address,
        ))
    }

    /// Parses kallsyms text, dropping lines with a zero address (hidden pointers) and lines that
    /// do not parse.
    pub fn parse(text: &str) -> Kallsyms {
        let mut b = SymbolBuilder::new();
        for line in text.lines() {
            add_line(&mut b, line, &|_, _| true);
        }
        Kallsyms {
            table: Arc::new(b.finish()),
        }
    }

    /// The table, to share (core symbols answer [`SymbolTable::lookup`]).
    pub fn table(&self) -> &Arc<SymbolTable> {
        &self.table
    }

    pub fn is_empty(&self) -> bool {
        self.table.len_all() == 0
    }

    /// Number of symbols, module symbols included.
    pub fn len(&self) -> usize {
        self.table.len_all()
    }

    /// Every symbol: the core kernel's by address, then the modules' by address.
    pub fn symbols(&self) -> impl Iterator<Item = Symbol<'_>> + '_ {
        self.table.all_symbols()
    }

    /// Address of the first symbol with this name (core kernel symbols come before modules';
    /// among duplicated local names, the lowest address).
    pub fn lookup(&self, name: &str) -> Option<u64> {
        self.table.lookup_any(name)
    }

    /// Whether data symbols (`D`, `d`, `B`, `b`, `R`, `r`) are listed: without
    /// CONFIG_KALLSYMS_ALL only text symbols are.
    pub fn has_data_symbols(&self) -> bool {
        self.table.has_data_symbols_any()
    }

    /// The symbol at or below `addr`, with the offset into it.
    pub fn symbolize(&self, addr: u64) -> Option<(Symbol<'_>, u64)> {
        self.table.symbolize_any(addr)
    }

    /// `func+0x1a/[module]` text for a stack line, or the bare hex address.
    pub fn format_addr(&self, addr: u64) -> String {
        match self.symbolize(addr) {
            Some((s, off)) => match s.module {
                Some(m) => format!("{}+{:#x} [{m}]", s.name, off),
                None => format!("{}+{:#x}", s.name, off),
            },
            None => format!("{addr:#x}"),
        }
    }
}

fn add_line(b: &mut SymbolBuilder, line: &str, keep: &dyn Fn(char, &str) -> bool) {
    let Some((addr, kind, name, module)) = split_line(line) else {
        return;
    };
    let Some(kind) = kind.chars().next() else { return };
    if !keep(kind, name) {
        return;
    }
    let module = module.map(|m| m.trim_matches(|c| c == '[' || c == ']'));
    b.push(addr, name, kind, module);
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
        assert_eq!(k.symbols().nth(4).and_then(|s| s.module), Some("mymod"));
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
    fn a_filter_keeps_only_what_it_accepts() {
        let code = Kallsyms::read_filtered(SAMPLE.as_bytes(), &|kind, name| {
            kind.eq_ignore_ascii_case(&'t') && name != "_stext"
        })
        .unwrap();
        let names: Vec<&str> = code.symbols().map(|s| s.name).collect();
        assert_eq!(names, ["_text", "helper", "mod_init", "_text"]);
        assert_eq!(code.lookup("jiffies"), None);
        assert_eq!(code.format_addr(0xffff_ffff_8200_0004), "helper+0xfff004");
    }

    #[test]
    fn core_names_stop_at_the_first_module_line() {
        // A reader that fails past the first module line proves nothing after it is read.
        struct Then<'a>(&'a [u8]);
        impl io::Read for Then<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    return Err(io::Error::other("read past the first module line"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let text = b"ffffffff81000000 T _text\nffffffff82000000 D init_task\n\
                     ffffffffc0000000 t mod_init\t[mymod]\n";
        let r = io::BufReader::with_capacity(16, Then(text));
        let k = Kallsyms::read_core_filtered(r, &|_, name| name != "_text").unwrap();
        assert_eq!(k.lookup("init_task"), Some(0xffff_ffff_8200_0000));
        assert_eq!(k.lookup("_text"), None);
        assert_eq!(k.symbols().count(), 1);
        // The sample's core lines, none of its modules'.
        let core = Kallsyms::read_core_filtered(SAMPLE.as_bytes(), &|_, _| true).unwrap();
        let names: Vec<&str> = core.symbols().map(|s| s.name).collect();
        assert_eq!(names, ["_stext", "_text", "helper", "jiffies"]);
        assert!(core.symbols().all(|s| s.module.is_none()));
    }

    #[test]
    fn the_head_stops_at_the_first_name() {
        // A reader that fails past the `_text` line proves nothing after it is read.
        struct Then<'a>(&'a [u8], bool);
        impl io::Read for Then<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.0.is_empty() {
                    self.1 = true;
                    return Err(io::Error::other("read past the head"));
                }
                let n = buf.len().min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let head = b"ffffffff81000100 T _stext\nffffffff81000000 T _text\n";
        let r = io::BufReader::with_capacity(16, Then(head, false));
        let (k, any) = Kallsyms::read_head(r, &["_text", "_stext"]).unwrap();
        assert!(any);
        assert_eq!(k.lookup("_text"), Some(0xffff_ffff_8100_0000));
        assert_eq!(k.lookup("_stext"), Some(0xffff_ffff_8100_0100));
        // Whole text: module symbols and unnamed ones are not kept, hidden addresses flagged.
        let (k, any) = Kallsyms::read_head(SAMPLE.as_bytes(), &["_text", "helper"]).unwrap();
        assert!(any);
        assert_eq!(k.len(), 1, "_text comes first and ends the read");
        let (k, any) = Kallsyms::read_head(&b"0000000000000000 T _text\n"[..], &["_text"]).unwrap();
        assert!(!any && k.is_empty());
        let (k, _) = Kallsyms::read_head(
            &b"ffffffff81000000 t x\nffffffffc0000100 T _text\t[m]\n"[..],
            &["_text"],
        )
        .unwrap();
        assert!(k.is_empty(), "a module's _text is not the kernel's");
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
