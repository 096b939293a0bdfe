//! Kernel knowledge without a vmlinux (issue 9): symbols and struct layouts, taken from what the
//! kernel itself carries. Sources, by precedence:
//! - `-k vmlinux`: its ELF `.symtab` and `.BTF` section;
//! - kallsyms: `/proc/kallsyms` live; on a dump, the compressed tables decoded from kernel memory
//!   (VMCOREINFO names them since Linux 6.0);
//! - BTF: `/sys/kernel/btf/vmlinux` live; on a dump, kernel memory between `__start_BTF` and
//!   `__stop_BTF`;
//! - VMCOREINFO `SYMBOL()`, `OFFSET()` and `SIZE()` lines, last.
//!
//! Layouts are never hard-coded per kernel version: what no source gives is listed by
//! [`KernelInfo::missing`] and callers keep working without it.
//!
//! kernel/ reads what it is handed: memory (`mem::VirtRead`), kallsyms text, VMCOREINFO, BTF
//! bytes, a vmlinux path, a /sys/module-shaped directory. Where those come from (/proc, /sys, a dump's notes) is live/'s and
//! dump/'s business; target/ joins the two.

pub mod btf;
pub mod btf_extract;
pub mod dmesg;
pub mod kallsyms;
pub mod kaslr;
pub mod layout;
pub mod modules;
pub mod monitor;
pub mod panic;
pub mod proc_kallsyms;
pub mod scan;
pub mod symbols;
pub mod symtab;
pub mod tasks;
pub mod threads;
pub mod vma;
pub mod vmlinux;

use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{read_exact, VirtRead};
use btf::Btf;
use proc_kallsyms::Kallsyms;
use std::path::Path;
use std::sync::Arc;
use symbols::{Symbols, TableLoader};
pub use symtab::{Sym, SymRef, SymbolBuilder, SymbolTable};
use vmlinux::Vmlinux;

/// Where a struct member is. `offset_bits` is from the start of the outermost struct asked for
/// (anonymous members and dotted paths are added up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub offset_bits: u64,
    /// Size in bytes of the member's type; 0 when unknown (VMCOREINFO `OFFSET()` gives no size).
    pub size: u64,
    /// Width of a bitfield in bits; 0 when the member is not a bitfield.
    pub bitfield_bits: u32,
    /// BTF type id of the member (0 when the layout came from VMCOREINFO).
    pub type_id: u32,
}

impl Member {
    /// Byte offset (bitfields: the byte holding their first bit).
    pub fn offset(&self) -> u64 {
        self.offset_bits / 8
    }
}

/// Where the running kernel's own BTF comes from, as a source hands it over: its name for
/// messages, and how to read it (only when no vmlinux gives BTF).
pub struct BtfSource<'a> {
    pub name: &'a str,
    pub read: &'a dyn Fn() -> Result<Vec<u8>, String>,
}

/// Symbols and layouts of one kernel, built once per target.
#[derive(Debug, Default)]
pub struct KernelInfo {
    /// Every symbol source, in the resolver's order (vmlinux, kallsyms, VMCOREINFO, image
    /// search). Live, its kallsyms is the table [`Kallsyms`] holds (shared, not copied).
    syms: Symbols,
    btf: Option<Btf>,
    /// The kernel has no loadable modules (live: no /proc/modules), so `modules` is not wanted.
    no_modules: bool,
    /// Where each source came from (for `monitor` and logs), e.g. `BTF: /sys/kernel/btf/vmlinux`.
    sources: Vec<String>,
    /// Problems met while building (sources that failed), one line each.
    problems: Vec<String>,
}

/// What the task/dmesg/module code needs, checked by [`KernelInfo::missing`].
const WANTED_SYMBOLS: &[&str] = &["init_task", "prb", "modules"];
const WANTED_MEMBERS: &[(&str, &str)] = &[
    ("task_struct", "comm"),
    ("task_struct", "pid"),
    ("task_struct", "tgid"),
    ("task_struct", "tasks"),
    ("task_struct", "thread_node"),
    ("task_struct", "real_parent"),
    ("module", "list"),
    ("module", "name"),
];

impl KernelInfo {
    /// The running kernel: `kallsyms` (from `/proc/kallsyms`), the live VMCOREINFO text when the
    /// caller could read it (live/vmcoreinfo.rs), BTF from `-k vmlinux` or else the kernel's own
    /// (`system_btf`, read only then).
    /// With `whole`, `kallsyms` holds only the [`symbols::KNOWN`] names and `whole` reads the
    /// rest when first needed ([`Symbols::with_lazy_kallsyms`]).
    pub fn live(
        kallsyms: &Kallsyms,
        whole: Option<TableLoader>,
        vmcoreinfo_text: Option<&str>,
        vmlinux: Option<&Path>,
        system_btf: &BtfSource<'_>,
    ) -> KernelInfo {
        let vmcoreinfo = vmcoreinfo_text
            .map(|t| VmcoreInfo::parse(t.as_bytes()))
            .unwrap_or_default();
        let known = Arc::clone(kallsyms.table());
        let (syms, source) = match whole {
            Some(load) => (
                Symbols::with_lazy_kallsyms(known, load, vmcoreinfo),
                format!(
                    "symbols: /proc/kallsyms ({} of kmemd's names kept; the whole file is read \
                     when an address or another name is asked)",
                    kallsyms.table().len()
                ),
            ),
            None => (
                Symbols::new(known, vmcoreinfo),
                format!("symbols: /proc/kallsyms ({} symbols)", kallsyms.table().len()),
            ),
        };
        let mut k = KernelInfo {
            syms,
            ..KernelInfo::default()
        };
        k.sources.push(source);
        if vmcoreinfo_text.is_some() {
            k.sources
                .push("VMCOREINFO: /sys/kernel/vmcoreinfo (read through the direct map)".into());
        }
        if let Some(path) = vmlinux {
            k.add_vmlinux(path);
        }
        if k.btf.is_none() {
            let name = system_btf.name;
            match (system_btf.read)().and_then(Btf::parse) {
                Ok(b) => {
                    k.sources.push(format!("BTF: {name} ({} types)", b.type_count()));
                    k.btf = Some(b);
                }
                Err(e) => k.problems.push(format!(
                    "no BTF from {name}: {e} (a kernel built with CONFIG_DEBUG_INFO_BTF=y has it; \
                     or give -k the matching vmlinux)"
                )),
            }
        }
        k
    }

    /// A crash dump: kallsyms decoded from its memory through VMCOREINFO, BTF from `-k vmlinux`
    /// or else from memory between `__start_BTF` and `__stop_BTF`.
    /// With `whole`, only the [`symbols::KNOWN`] names of kallsyms are kept and `whole` decodes
    /// the rest when first needed, as a live session does with /proc/kallsyms.
    pub fn from_dump(
        mem: &mut dyn VirtRead,
        vmcoreinfo: &VmcoreInfo,
        vmlinux: Option<&Path>,
        whole: Option<TableLoader>,
    ) -> KernelInfo {
        let mut k = KernelInfo::default();
        let decoded = match &whole {
            Some(_) => kallsyms::decode_table_keeping(mem, vmcoreinfo, &symbols::is_known),
            None => kallsyms::decode_table(mem, vmcoreinfo),
        };
        let decoded_ok = decoded.is_ok();
        let table = match decoded {
            Ok(table) => {
                k.sources.push(match &whole {
                    Some(_) => format!(
                        "symbols: kallsyms decoded from kernel memory ({} of kmemd's names kept; \
                         the whole table is decoded when an address or another name is asked)",
                        table.len()
                    ),
                    None => format!(
                        "symbols: kallsyms decoded from kernel memory ({} symbols)",
                        table.len()
                    ),
                });
                table
            }
            Err(e) => {
                k.problems
                    .push(format!("no kallsyms from the dump's memory: {e}"));
                SymbolTable::default()
            }
        };
        k.syms = match whole {
            // A dump whose kallsyms cannot be decoded has nothing more to decode later.
            Some(load) if decoded_ok => {
                Symbols::with_lazy_kallsyms(Arc::new(table), load, vmcoreinfo.clone())
            }
            _ => Symbols::new(Arc::new(table), vmcoreinfo.clone()),
        };
        if let Some(path) = vmlinux {
            k.add_vmlinux(path);
        }
        if k.btf.is_none() {
            match btf_from_memory(mem, &k) {
                Ok((b, how)) => {
                    k.sources.push(format!("BTF: {how} ({} types)", b.type_count()));
                    k.btf = Some(b);
                }
                Err(e) => k.problems.push(format!("no BTF in the dump's memory: {e}")),
            }
        }
        k.find_image_symbols(mem);
        k
    }

    /// Records a problem the caller met while gathering this kernel's sources, for
    /// [`KernelInfo::missing`].
    pub fn note_problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// The kernel has no loadable modules, so `modules` is not wanted; `why` is listed with the
    /// sources.
    pub fn without_modules(&mut self, why: &str) {
        self.no_modules = true;
        self.sources.push(format!("modules: none ({why})"));
    }

    /// Finds `init_task` and `modules` in the kernel image's data when no symbol source names
    /// them (kallsyms without CONFIG_KALLSYMS_ALL), with the checks [`scan`] describes.
    /// Needs BTF; does nothing when both are known.
    pub fn find_image_symbols(&mut self, mem: &mut dyn VirtRead) {
        let want_init = self.symbol("init_task").is_none();
        let want_modules = !self.no_modules && self.symbol("modules").is_none();
        if !want_init && !want_modules {
            return;
        }
        let Some(btf) = self.btf.as_ref() else { return };
        let (Some(text), Some(from)) = (
            self.symbol("_stext").or_else(|| self.symbol("_text")),
            self.symbol("_etext"),
        ) else {
            self.problems
                .push("cannot search the kernel image for init_task/modules: no _stext/_etext".into());
            return;
        };
        let to = self.symbol("_end").unwrap_or(from.saturating_add(scan::MAX_SPAN));
        match scan::scan_image(mem, btf, text, from, to, want_init, want_modules) {
            Ok(found) => {
                for (name, v) in [("init_task", found.init_task), ("modules", found.modules)] {
                    if let Some(addr) = v {
                        self.sources.push(format!(
                            "{name}: {addr:#x}, found by searching the kernel image's data"
                        ));
                        self.syms.add_found(name, addr);
                    }
                }
            }
            Err(e) => self.problems.push(format!(
                "cannot search the kernel image for init_task/modules: {e}"
            )),
        }
    }

    /// Symbols and BTF from an ELF vmlinux; its symbols move by the KASLR slide the other
    /// sources give ([`Symbols::add_vmlinux`]).
    fn add_vmlinux(&mut self, path: &Path) {
        let v = match Vmlinux::load(path) {
            Ok(v) => v,
            Err(e) => {
                self.problems.push(e);
                return;
            }
        };
        let slide = self.syms.add_vmlinux(&v, &|_, _| true).unwrap_or(0);
        let kept = self.syms.vmlinux().0.len();
        if kept == 0 {
            self.problems
                .push(format!("{} has no symbol table", path.display()));
        } else {
            self.sources.push(format!(
                "symbols: {} ({kept} symbols, slide {slide:#x})",
                path.display(),
            ));
        }
        match v.section_bytes(path, ".BTF").and_then(Btf::parse) {
            Ok(b) => {
                self.sources.push(format!(
                    "BTF: {} .BTF section ({} types)",
                    path.display(),
                    b.type_count()
                ));
                self.btf = Some(b);
            }
            Err(e) => self.problems.push(format!("no BTF from {}: {e}", path.display())),
        }
    }

    /// Runtime address of a symbol, from the one resolver ([`Symbols`]).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.syms.symbol(name)
    }

    /// The symbol at or below `addr` and the offset into it.
    pub fn symbolize(&self, addr: u64) -> Option<(String, u64)> {
        self.syms.symbolize(addr)
    }

    /// The names of the symbols at or below each of `addrs` (as [`KernelInfo::symbolize`]).
    /// When that would load a dump's whole kallsyms table, the few names are decoded from
    /// `mem` instead ([`kallsyms::names_at`]); an address whose name cannot be found is None.
    pub fn names_at(&self, mem: &mut dyn VirtRead, addrs: &[u64]) -> Vec<Option<String>> {
        if self.syms.table_at_hand() {
            return addrs
                .iter()
                .map(|&a| self.symbolize(a).map(|(name, _)| name))
                .collect();
        }
        kallsyms::names_at(mem, self.syms.vmcoreinfo(), addrs).unwrap_or_else(|e| {
            log::debug!("kallsyms: cannot name {} addresses: {e}", addrs.len());
            vec![None; addrs.len()]
        })
    }

    /// The resolver: every symbol source in its order, and where an answer came from.
    pub fn resolver(&self) -> &Symbols {
        &self.syms
    }

    /// The symbol table used for lookups by address (vmlinux when given, else kallsyms).
    pub fn symbols(&self) -> &SymbolTable {
        self.syms.table()
    }

    /// A member of a struct or union: BTF first (nested anonymous members, dotted paths such as
    /// `thread.sp`), then VMCOREINFO `OFFSET(strukt.member)`.
    pub fn member(&self, strukt: &str, member: &str) -> Option<Member> {
        if let Some(m) = self.btf.as_ref().and_then(|b| b.member_by_name(strukt, member)) {
            return Some(m);
        }
        self.vmcoreinfo()
            .offset(&format!("{strukt}.{member}"))
            .map(|off| Member {
                offset_bits: off.saturating_mul(8),
                size: 0,
                bitfield_bits: 0,
                type_id: 0,
            })
    }

    /// Size in bytes of a named type (struct, union, typedef, int, enum): BTF, then `SIZE()`.
    pub fn size_of(&self, ty: &str) -> Option<u64> {
        self.btf
            .as_ref()
            .and_then(|b| b.size_of_name(ty))
            .or_else(|| self.vmcoreinfo().size(ty))
    }

    pub fn btf(&self) -> Option<&Btf> {
        self.btf.as_ref()
    }

    pub fn vmcoreinfo(&self) -> &VmcoreInfo {
        self.syms.vmcoreinfo()
    }

    /// Where symbols, BTF and VMCOREINFO came from, one line each.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// What could not be found, one clear line each: failed sources, then the symbols and
    /// members kernel awareness needs that no source gives.
    pub fn missing(&self) -> Vec<String> {
        let mut out = self.problems.clone();
        for s in WANTED_SYMBOLS {
            if self.symbol(s).is_none() && !(self.no_modules && *s == "modules") {
                out.push(format!(
                    "symbol {s} not found (not in kallsyms, which may lack data symbols without \
                     CONFIG_KALLSYMS_ALL, nor in VMCOREINFO): give -k the matching vmlinux"
                ));
            }
        }
        for (s, m) in WANTED_MEMBERS {
            if self.member(s, m).is_none() && !(self.no_modules && *s == "module") {
                out.push(format!(
                    "layout of {s}.{m} not found (no BTF, no VMCOREINFO OFFSET): give -k the matching \
                     vmlinux built with BTF"
                ));
            }
        }
        out
    }
}

/// The types kmemd asks about from the BTF blob of `len` bytes at `start` in kernel memory, read
/// in chunks rather than whole (kernel/btf_extract.rs).
fn wanted_btf_in_memory(mem: &mut dyn VirtRead, start: u64, len: u64) -> Result<Btf, String> {
    let blob = btf_extract::extract(&mut |at, buf| {
        let n = usize::try_from(len.saturating_sub(at)).map_or(buf.len(), |left| left.min(buf.len()));
        let Some(part) = buf.get_mut(..n) else {
            return Ok(0);
        };
        if part.is_empty() {
            return Ok(0);
        }
        let addr = start.checked_add(at).ok_or("BTF address overflows")?;
        read_exact(mem, addr, part).map_err(|e| format!("reading BTF: {e}"))?;
        Ok(n)
    })?;
    Btf::parse(blob)
}

/// Largest BTF blob read from kernel memory (vmlinux BTF of a distribution kernel is ~6 MiB).
const MAX_BTF_IN_MEMORY: u64 = 64 << 20;

/// The kernel's own BTF from memory: `__start_BTF`..`__stop_BTF` when kallsyms has them, else a
/// search of the kernel image's read-only data (after `_etext`) for the BTF header, because
/// kallsyms without CONFIG_KALLSYMS_ALL (Debian arm64) holds only text symbols.
fn btf_from_memory(mem: &mut dyn VirtRead, k: &KernelInfo) -> Result<(Btf, String), String> {
    if let (Some(start), Some(stop)) = (k.symbol("__start_BTF"), k.symbol("__stop_BTF")) {
        let len = stop
            .checked_sub(start)
            .filter(|&l| l > 0 && l <= MAX_BTF_IN_MEMORY)
            .ok_or_else(|| format!("__start_BTF {start:#x} and __stop_BTF {stop:#x} make no sane range"))?;
        let b = wanted_btf_in_memory(mem, start, len)?;
        return Ok((b, format!("kernel memory __start_BTF..__stop_BTF at {start:#x}")));
    }
    let from = k
        .symbol("_etext")
        .ok_or("kallsyms has neither __start_BTF nor _etext, so there is nowhere to look for BTF")?;
    let to = k
        .symbol("_end")
        .unwrap_or(from.saturating_add(MAX_BTF_IN_MEMORY * 2));
    let start = btf::find_header(mem, from, to)
        .ok_or_else(|| format!("no BTF header between _etext {from:#x} and {to:#x}"))?;
    let len = btf::blob_len(mem, start)?;
    if len > MAX_BTF_IN_MEMORY {
        return Err(format!("BTF at {start:#x} claims {len} bytes"));
    }
    let b = wanted_btf_in_memory(mem, start, len)?;
    Ok((
        b,
        format!("kernel memory at {start:#x} (BTF header found after _etext)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufferMem;

    /// A minimal ELF64 LE x86_64 file: sections (name, type, addr, bytes) after a null one, a
    /// symbol table of (name, value, st_info), and the two string tables.
    fn elf(sections: &[(&str, u32, u64, Vec<u8>)], syms: &[(&str, u64, u8)]) -> Vec<u8> {
        let mut strtab = vec![0u8];
        let mut symtab = vec![0u8; 24];
        for (name, value, info) in syms {
            let mut s = [0u8; 24];
            s[..4].copy_from_slice(&(strtab.len() as u32).to_le_bytes());
            s[4] = *info;
            s[6..8].copy_from_slice(&1u16.to_le_bytes());
            s[8..16].copy_from_slice(&value.to_le_bytes());
            symtab.extend_from_slice(&s);
            strtab.extend_from_slice(name.as_bytes());
            strtab.push(0);
        }
        let n = sections.len() as u32;
        let mut all: Vec<(&str, u32, u64, Vec<u8>, u32)> = sections
            .iter()
            .map(|(a, b, c, d)| (*a, *b, *c, d.clone(), 0))
            .collect();
        all.push((".symtab", 2, 0, symtab, n + 2));
        all.push((".strtab", 3, 0, strtab, 0));
        let mut shstr = vec![0u8];
        let mut name_offs = Vec::new();
        for s in all.iter().map(|s| s.0).chain([".shstrtab"]) {
            name_offs.push(shstr.len() as u32);
            shstr.extend_from_slice(s.as_bytes());
            shstr.push(0);
        }
        all.push((".shstrtab", 3, 0, shstr, 0));
        let mut out = vec![0u8; 64];
        let mut headers = vec![0u8; 64];
        for (i, (_, kind, addr, bytes, link)) in all.iter().enumerate() {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name_offs[i].to_le_bytes());
            h[4..8].copy_from_slice(&kind.to_le_bytes());
            h[16..24].copy_from_slice(&addr.to_le_bytes());
            h[24..32].copy_from_slice(&(out.len() as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            h[40..44].copy_from_slice(&link.to_le_bytes());
            headers.extend_from_slice(&h);
            out.extend_from_slice(bytes);
        }
        let shoff = out.len() as u64;
        out.extend_from_slice(&headers);
        out[..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[16..18].copy_from_slice(&2u16.to_le_bytes());
        out[18..20].copy_from_slice(&62u16.to_le_bytes());
        out[40..48].copy_from_slice(&shoff.to_le_bytes());
        out[58..60].copy_from_slice(&64u16.to_le_bytes());
        out[60..62].copy_from_slice(&(all.len() as u16 + 1).to_le_bytes());
        out[62..64].copy_from_slice(&(all.len() as u16).to_le_bytes());
        out
    }

    const SLIDE: u64 = 0x1e40_0000;

    #[test]
    fn sources_take_precedence_in_order() {
        let vmlinux = elf(
            &[
                (".text", 1, 0xffff_ffff_8100_0000, vec![0x90; 16]),
                (".BTF", 1, 0, btf::tests::sample()),
            ],
            &[
                ("_text", 0xffff_ffff_8100_0000, 0x10),
                ("init_task", 0xffff_ffff_8200_0000, 0x11), // STB_GLOBAL, STT_OBJECT
                ("helper", 0xffff_ffff_8100_0100, 0x02),    // STB_LOCAL, STT_FUNC
            ],
        );
        let path = std::env::temp_dir().join(format!("kmemd-kernelinfo-{}", std::process::id()));
        std::fs::write(&path, vmlinux).unwrap();
        let kallsyms = Kallsyms::parse(&format!(
            "{:x} T _text\n{:x} T only_in_kallsyms\n{:x} D init_task\n",
            0xffff_ffff_8100_0000u64 + SLIDE,
            0xffff_ffff_8100_0200u64 + SLIDE,
            0xffff_ffff_8300_0000u64, // a stale value the vmlinux overrides
        ));
        let vmci = "SYMBOL(prb)=ffffffffa0e643e0\nOFFSET(printk_ringbuffer.fail)=80\nSIZE(prb_desc)=24\n\
                    OFFSET(task_struct.comm)=1\n";
        let unread = BtfSource {
            name: "(not read: the vmlinux has BTF)",
            read: &|| Err("not read".into()),
        };
        let k = KernelInfo::live(&kallsyms, None, Some(vmci), Some(&path), &unread);
        std::fs::remove_file(&path).unwrap();

        assert_eq!(
            k.symbol("init_task"),
            Some(0xffff_ffff_8200_0000 + SLIDE),
            "vmlinux, slid"
        );
        assert_eq!(k.symbol("only_in_kallsyms"), Some(0xffff_ffff_8100_0200 + SLIDE));
        assert_eq!(k.symbol("prb"), Some(0xffff_ffff_a0e6_43e0), "VMCOREINFO last");
        assert_eq!(k.symbol("nothing"), None);
        assert_eq!(
            k.symbolize(0xffff_ffff_8100_0104 + SLIDE),
            Some(("helper".to_string(), 4))
        );
        let kinds: Vec<char> = k.symbols().symbols().map(|s| s.kind).collect();
        assert_eq!(
            kinds,
            vec!['?', 't', 'D'],
            "_text (NOTYPE), helper (local func), init_task"
        );
        // BTF from the vmlinux's .BTF beats VMCOREINFO's OFFSET (which says 1 here).
        let comm = k.member("task_struct", "comm").unwrap();
        assert_eq!((comm.offset(), comm.size), (32, 16));
        assert_eq!(k.member("task_struct", "thread.sp").map(|m| m.offset()), Some(56));
        let fail = k.member("printk_ringbuffer", "fail").unwrap();
        assert_eq!((fail.offset_bits, fail.size, fail.type_id), (640, 0, 0));
        assert_eq!(k.size_of("task_struct"), Some(96));
        assert_eq!(k.size_of("prb_desc"), Some(24));
        assert_eq!(k.size_of("no_such_type"), None);
        assert!(
            k.sources().iter().any(|s| s.contains(".BTF section")),
            "{:?}",
            k.sources()
        );
        let missing = k.missing();
        assert!(
            missing.iter().any(|l| l.starts_with("symbol modules not found")),
            "{missing:?}"
        );
        assert!(
            missing.iter().any(|l| l.starts_with("layout of module.list")),
            "{missing:?}"
        );
        assert!(!missing.iter().any(|l| l.contains("init_task")), "{missing:?}");
    }

    #[test]
    fn a_dump_without_tables_says_what_is_missing() {
        let mut mem = BufferMem {
            base: 0xffff_ffff_8100_0000,
            bytes: vec![0u8; 4096],
        };
        let vmci = VmcoreInfo::parse(b"SYMBOL(prb)=ffffffff81000010\nOFFSET(task_struct.comm)=3000\n");
        let k = KernelInfo::from_dump(&mut mem, &vmci, None, None);
        assert_eq!(k.symbol("prb"), Some(0xffff_ffff_8100_0010));
        assert_eq!(k.member("task_struct", "comm").map(|m| m.offset()), Some(3000));
        let missing = k.missing();
        assert!(
            missing.iter().any(|l| l.contains("SYMBOL(kallsyms_names)")),
            "{missing:?}"
        );
        assert!(
            missing
                .iter()
                .any(|l| l.starts_with("no BTF in the dump's memory")),
            "{missing:?}"
        );
        assert!(
            missing
                .iter()
                .any(|l| l.starts_with("symbol init_task not found")),
            "{missing:?}"
        );
        assert!(
            !missing.iter().any(|l| l.contains("task_struct.comm")),
            "{missing:?}"
        );
    }

    #[test]
    fn symbolize_stays_inside_the_table() {
        let t = SymbolTable::new(vec![
            Sym {
                addr: 0x1000,
                name: "a".into(),
                kind: 'T',
            },
            Sym {
                addr: 0x9000,
                name: "last".into(),
                kind: 't',
            },
            Sym {
                addr: 0,
                name: "hidden".into(),
                kind: 'T',
            },
        ]);
        assert_eq!(t.len(), 2, "zero addresses are dropped");
        assert_eq!(t.symbolize(0x8fff).map(|(s, o)| (s.name, o)), Some(("a", 0x7fff)));
        assert_eq!(
            t.symbolize(0x9010).map(|(s, o)| (s.name, o)),
            Some(("last", 0x10))
        );
        assert_eq!(t.symbolize(0x20000), None, "far past the last symbol");
        assert_eq!(t.symbolize(0xfff), None);
        assert_eq!(t.lookup("last"), Some(0x9000));
        let with_end = SymbolTable::new(vec![Sym {
            addr: 0x5000,
            name: "_end".into(),
            kind: 'B',
        }]);
        assert_eq!(with_end.symbolize(0x5001), None);
    }
}
