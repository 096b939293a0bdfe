//! The one symbol resolver: a name's runtime address and an address's symbol, from every source
//! of a kernel's symbols, in one order. The server's kernel knowledge ([`super::KernelInfo`]),
//! `-w` and `--check` all look names up here.
//!
//! Order, first answer wins:
//! 1. `-k vmlinux`: its ELF `.symtab`, moved by the KASLR slide (the running kernel's `_text`,
//!    else `_stext`, as the other sources give it, minus the file's);
//! 2. kallsyms (`/proc/kallsyms` live, decoded from memory in a dump): core kernel symbols, then
//!    those of loadable modules;
//! 3. VMCOREINFO `SYMBOL()` lines: data symbols (init_uts_ns, prb, ...) that kallsyms lacks
//!    without CONFIG_KALLSYMS_ALL;
//! 4. what a search of the kernel image found (`init_task`, `modules`: kernel/scan.rs).

use super::symtab::{SymbolBuilder, SymbolTable};
use super::vmlinux::Vmlinux;
use crate::mem::vmcoreinfo::VmcoreInfo;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// Every kernel symbol kmemd's own code looks up by name, sorted (a test checks). A live
/// session keeps only these from /proc/kallsyms ([`Symbols::with_lazy_kallsyms`]): the whole
/// table, 121k symbols and ~5 MiB on Debian's 6.18, was half of a session's peak RSS (issue 16),
/// and a session needs a dozen names and no address lookups. A name missing here still
/// resolves, by reading the whole table then.
pub const KNOWN: &[&str] = &[
    "__arm64_sys_getpid",
    "__module_get",
    "__per_cpu_end",
    "__per_cpu_offset",
    "__start_BTF",
    "__stop_BTF",
    "__x64_sys_getpid",
    "_end",
    "_etext",
    "_stext",
    "_text",
    "current_task",
    "find_module_all",
    "idle_threads",
    "init_task",
    "init_top_pgt",
    "init_uts_ns",
    "jiffies_64",
    "kimage_voffset",
    "linux_banner",
    "memstart_addr",
    "module_kallsyms_on_each_symbol",
    "modules",
    "page_offset_base",
    "panic_cpu",
    "phys_base",
    "prb",
    "print_modules",
    "runqueues",
    "swapper_pg_dir",
    "vmalloc_base",
    "vmemmap_base",
];

/// Whether kmemd's own code looks `name` up ([`KNOWN`]).
pub fn is_known(name: &str) -> bool {
    KNOWN.binary_search(&name).is_ok()
}

/// The whole kallsyms table, loaded on first need by a closure (live: /proc/kallsyms read again).
/// Gives a kernel's whole kallsyms table, when a session that kept only the [`KNOWN`] names first
/// needs the rest.
pub type TableLoader = Box<dyn Fn() -> Arc<SymbolTable> + Send + Sync>;

struct LazyTable {
    load: TableLoader,
    table: OnceLock<Arc<SymbolTable>>,
}

impl LazyTable {
    fn get(&self) -> &Arc<SymbolTable> {
        self.table.get_or_init(|| {
            log::debug!("kallsyms: loading the whole table (an address, or a name kmemd does not know)");
            (self.load)()
        })
    }
}

impl std::fmt::Debug for LazyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyTable")
            .field("loaded", &self.table.get().map(|t| t.len_all()))
            .finish()
    }
}

/// Where an address came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Vmlinux,
    Kallsyms,
    Vmcoreinfo,
    ImageScan,
}

impl Source {
    /// The name logs and `--check` use.
    pub fn name(self) -> &'static str {
        match self {
            Source::Vmlinux => "vmlinux",
            Source::Kallsyms => "kallsyms",
            Source::Vmcoreinfo => "VMCOREINFO",
            Source::ImageScan => "image scan",
        }
    }
}

/// A kernel's symbols from all its sources.
#[derive(Debug, Default)]
pub struct Symbols {
    /// From `-k vmlinux`, already moved by `vmlinux_slide`.
    vmlinux: SymbolTable,
    vmlinux_slide: Option<u64>,
    /// kallsyms, shared (not copied) with whoever loaded it: /proc/kallsyms is the largest thing
    /// the live server keeps. With `full` set, only the [`KNOWN`] names.
    kallsyms: Arc<SymbolTable>,
    /// The whole kallsyms table when `kallsyms` holds only the [`KNOWN`] names: read when an
    /// address or another name is asked (`monitor sym`), then kept.
    full: Option<LazyTable>,
    vmcoreinfo: VmcoreInfo,
    /// Found by searching the kernel image when no table names them.
    found: HashMap<String, u64>,
}

impl Symbols {
    /// kallsyms (core and module symbols) and VMCOREINFO's `SYMBOL()` lines.
    pub fn new(kallsyms: Arc<SymbolTable>, vmcoreinfo: VmcoreInfo) -> Symbols {
        Symbols {
            kallsyms,
            vmcoreinfo,
            ..Symbols::default()
        }
    }

    /// Like [`Symbols::new`] with `known` holding only kallsyms' [`KNOWN`] names; `load` gives the
    /// whole table the first time anything else is asked.
    pub fn with_lazy_kallsyms(known: Arc<SymbolTable>, load: TableLoader, vmcoreinfo: VmcoreInfo) -> Symbols {
        Symbols {
            full: Some(LazyTable {
                load,
                table: OnceLock::new(),
            }),
            ..Symbols::new(known, vmcoreinfo)
        }
    }

    /// A name's address in kallsyms: a [`KNOWN`] one from the table kept, another from the
    /// whole table.
    fn kallsyms_lookup(&self, name: &str) -> Option<u64> {
        match &self.full {
            Some(full) if !is_known(name) => full.get().lookup_any(name),
            _ => self.kallsyms.lookup_any(name),
        }
    }

    /// The running kernel's `_text` (else `_stext`) and its name, from kallsyms or VMCOREINFO.
    /// arm64's kallsyms may lack _text (Debian 6.1 arm64 lists _stext only).
    fn runtime_text(&self) -> Option<(&'static str, u64)> {
        ["_text", "_stext"].into_iter().find_map(|n| {
            self.kallsyms_lookup(n)
                .or_else(|| self.vmcoreinfo.symbol(n))
                .map(|a| (n, a))
        })
    }

    /// Adds the symbols of a vmlinux that `keep(kind, name)` accepts, moved by the KASLR slide:
    /// the same symbol on both sides (arm64's _stext is _text + 0x10000, .head.text comes first,
    /// arch/arm64/kernel/vmlinux.lds.S; Debian 6.1.0-56-arm64; its kallsyms has only _stext).
    /// Returns the slide, or `None` when neither `_text` nor `_stext` is known on both sides
    /// (the file's addresses are then taken as they are). Replaces an earlier vmlinux.
    pub fn add_vmlinux(&mut self, v: &Vmlinux, keep: &dyn Fn(char, &str) -> bool) -> Option<u64> {
        let slide = self
            .runtime_text()
            .and_then(|(n, runtime)| Some(runtime.wrapping_sub(v.symbol(n)?)));
        let by = slide.unwrap_or(0);
        // x86_64's per-CPU symbols are offsets from each CPU's __per_cpu_offset; they stay put,
        // as kallsyms shows them (`current_task` is 0x1fb80 with or without KASLR).
        let percpu_end = v.zero_based_percpu_end().unwrap_or(0);
        let mut b = SymbolBuilder::new();
        for (name, addr, kind) in v.symbols().filter(|&(name, _, kind)| keep(kind, name)) {
            let moved = if addr < percpu_end {
                addr
            } else {
                addr.wrapping_add(by)
            };
            b.push(moved, name, kind, None);
        }
        self.vmlinux = b.finish();
        self.vmlinux_slide = slide;
        slide
    }

    /// Takes VMCOREINFO's `SYMBOL()` lines (read later than the rest, or only when needed).
    pub fn set_vmcoreinfo(&mut self, vmcoreinfo: VmcoreInfo) {
        self.vmcoreinfo = vmcoreinfo;
    }

    /// Records a symbol found by searching the kernel image.
    pub fn add_found(&mut self, name: &str, addr: u64) {
        self.found.insert(name.to_string(), addr);
    }

    /// Runtime address of a symbol and the source that gave it (see the module's order).
    pub fn lookup(&self, name: &str) -> Option<(u64, Source)> {
        if let Some(a) = self.vmlinux.lookup(name) {
            return Some((a, Source::Vmlinux));
        }
        if let Some(a) = self.kallsyms_lookup(name) {
            return Some((a, Source::Kallsyms));
        }
        if let Some(a) = self.vmcoreinfo.symbol(name) {
            return Some((a, Source::Vmcoreinfo));
        }
        self.found.get(name).map(|&a| (a, Source::ImageScan))
    }

    /// Runtime address of a symbol.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.lookup(name).map(|(a, _)| a)
    }

    /// The table used for lookups by address: the vmlinux's when one was given, else
    /// kallsyms' core symbols (all of them: loaded now when only the [`KNOWN`] ones were kept).
    pub fn table(&self) -> &SymbolTable {
        if self.vmlinux.is_empty() {
            self.kallsyms()
        } else {
            &self.vmlinux
        }
    }

    /// Whether [`Symbols::table`] answers without loading anything: a vmlinux was given, or the
    /// whole kallsyms table is kept or already loaded.
    pub fn table_at_hand(&self) -> bool {
        !self.vmlinux.is_empty() || self.full.as_ref().is_none_or(|f| f.table.get().is_some())
    }

    /// The symbol at or below `addr` and the offset into it (see [`Symbols::table`] and
    /// [`SymbolTable::symbolize`]).
    pub fn symbolize(&self, addr: u64) -> Option<(String, u64)> {
        self.table()
            .symbolize(addr)
            .map(|(s, off)| (s.name.to_string(), off))
    }

    /// kallsyms: the table handed over, or the whole one when that held only the [`KNOWN`]
    /// names (loaded now).
    pub fn kallsyms(&self) -> &Arc<SymbolTable> {
        match &self.full {
            Some(full) => full.get(),
            None => &self.kallsyms,
        }
    }

    /// The vmlinux's symbols kept, and the slide applied to them.
    pub fn vmlinux(&self) -> (&SymbolTable, Option<u64>) {
        (&self.vmlinux, self.vmlinux_slide)
    }

    pub fn vmcoreinfo(&self) -> &VmcoreInfo {
        &self.vmcoreinfo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::proc_kallsyms::Kallsyms;

    const SLIDE: u64 = 0x1e40_0000;

    fn kallsyms() -> Arc<SymbolTable> {
        Arc::clone(
            Kallsyms::parse(&format!(
                "{:x} T _text\n{:x} t helper\n{:x} D in_both\n{:x} t mod_fn\t[m]\n",
                0xffff_ffff_8100_0000u64 + SLIDE,
                0xffff_ffff_8100_0100u64 + SLIDE,
                0xffff_ffff_8300_0000u64,
                0xffff_ffff_c000_0000u64,
            ))
            .table(),
        )
    }

    fn vmlinux() -> Vmlinux {
        Vmlinux::parse(&crate::kernel::vmlinux::tests::synthetic_vmlinux(
            62,
            0xffff_ffff_8100_0000,
        ))
        .unwrap()
    }

    #[test]
    fn sources_answer_in_order_and_say_which() {
        let vmci = VmcoreInfo::parse(b"SYMBOL(prb)=ffffffffa0e643e0\nSYMBOL(helper)=1\n");
        let mut s = Symbols::new(kallsyms(), vmci);
        assert_eq!(
            s.lookup("helper"),
            Some((0xffff_ffff_8100_0100 + SLIDE, Source::Kallsyms)),
            "kallsyms before VMCOREINFO"
        );
        assert_eq!(
            s.lookup("mod_fn"),
            Some((0xffff_ffff_c000_0000, Source::Kallsyms)),
            "module symbols too"
        );
        assert_eq!(s.lookup("prb"), Some((0xffff_ffff_a0e6_43e0, Source::Vmcoreinfo)));
        assert_eq!(s.lookup("init_task"), None);
        s.add_found("init_task", 0xffff_ffff_8200_0000);
        assert_eq!(
            s.lookup("init_task"),
            Some((0xffff_ffff_8200_0000, Source::ImageScan))
        );
        assert_eq!(
            s.symbolize(0xffff_ffff_8100_0104 + SLIDE),
            Some(("helper".into(), 4))
        );
        assert_eq!(Source::Vmcoreinfo.name(), "VMCOREINFO");
    }

    #[test]
    fn known_names_are_sorted_for_binary_search() {
        assert!(
            KNOWN.windows(2).all(|w| w[0] < w[1]),
            "KNOWN must be sorted and unique"
        );
        assert!(is_known("init_task") && is_known("_text") && !is_known("helper"));
    }

    /// A live session keeps only the KNOWN names: the whole table is loaded once, for an address
    /// or another name, and not for a known name (found or not).
    #[test]
    fn the_whole_kallsyms_is_loaded_only_when_needed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let loads = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&loads);
        let whole = kallsyms();
        let known = Kallsyms::parse(&format!("{:x} T _text\n", 0xffff_ffff_8100_0000u64 + SLIDE));
        let s = Symbols::with_lazy_kallsyms(
            Arc::clone(known.table()),
            Box::new(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Arc::clone(&whole)
            }),
            VmcoreInfo::default(),
        );
        assert_eq!(
            s.lookup("_text"),
            Some((0xffff_ffff_8100_0000 + SLIDE, Source::Kallsyms))
        );
        assert_eq!(s.lookup("init_task"), None, "known, and not in the file");
        assert_eq!(loads.load(Ordering::SeqCst), 0, "known names need no whole table");
        assert_eq!(
            s.lookup("helper"),
            Some((0xffff_ffff_8100_0100 + SLIDE, Source::Kallsyms))
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(
            s.symbolize(0xffff_ffff_8100_0104 + SLIDE),
            Some(("helper".into(), 4))
        );
        assert_eq!(
            s.lookup("mod_fn"),
            Some((0xffff_ffff_c000_0000, Source::Kallsyms))
        );
        assert_eq!(s.kallsyms().len_all(), 4, "the whole table");
        assert_eq!(loads.load(Ordering::SeqCst), 1, "loaded once, then kept");
    }

    #[test]
    fn a_vmlinux_comes_first_moved_by_the_slide() {
        let mut s = Symbols::new(kallsyms(), VmcoreInfo::default());
        let v = vmlinux();
        assert_eq!(s.add_vmlinux(&v, &|_, _| true), Some(SLIDE));
        assert_eq!(
            s.lookup("_text"),
            Some((0xffff_ffff_8100_0000 + SLIDE, Source::Vmlinux))
        );
        assert_eq!(s.vmlinux().1, Some(SLIDE));
        // A filter keeps only what it accepts; the rest comes from kallsyms.
        let mut s = Symbols::new(kallsyms(), VmcoreInfo::default());
        assert_eq!(s.add_vmlinux(&v, &|_, n| n == "nothing"), Some(SLIDE));
        assert!(s.vmlinux().0.is_empty());
        assert_eq!(s.lookup("_text").map(|(_, src)| src), Some(Source::Kallsyms));
        // No _text or _stext on the running side: no slide.
        let mut s = Symbols::new(Arc::default(), VmcoreInfo::default());
        assert_eq!(s.add_vmlinux(&v, &|_, _| true), None);
        assert_eq!(
            s.lookup("_text"),
            Some((0xffff_ffff_8100_0000, Source::Vmlinux)),
            "unmoved"
        );
        // _stext from VMCOREINFO is enough.
        let vmci =
            VmcoreInfo::parse(format!("SYMBOL(_stext)={:x}\n", 0xffff_ffff_8100_0000u64 + SLIDE).as_bytes());
        let mut s = Symbols::new(Arc::default(), vmci);
        assert_eq!(s.add_vmlinux(&v, &|_, _| true), Some(SLIDE));
    }
}
