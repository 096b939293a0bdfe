//! The KASLR slide, and the lines that make GDB apply it: `monitor kaslr` for a running kernel
//! (its `_text` against a vmlinux's or the architecture's default link address) and for a dump
//! (VMCOREINFO `KERNELOFFSET`).

use super::proc_kallsyms::Kallsyms;
use super::vmlinux::Vmlinux;
use crate::arch::Arch;
use crate::mem::{MemError, VirtAddr, VirtRead};
use std::path::PathBuf;

/// Where the link-time `_text` came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkText {
    /// `_text` from the symbol table of the vmlinux given with `-k`; `percpu_at_zero` says whether
    /// its `.data..percpu` section is linked at address 0 (x86_64 SMP kernels).
    Vmlinux { path: PathBuf, percpu_at_zero: bool },
    /// No vmlinux: the architecture's default link address.
    Default,
}

/// What is known of a kernel's slide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kaslr {
    /// The running kernel: `_text` where it runs and where it was linked.
    Live {
        runtime_text: u64,
        link_text: u64,
        link: LinkText,
    },
    /// A dump's VMCOREINFO `KERNELOFFSET` (None: not recorded). `percpu_at_zero`: the
    /// architecture links per-CPU variables from address 0 (x86_64), so GDB must leave
    /// `.data..percpu` alone.
    Dump {
        offset: Option<u64>,
        percpu_at_zero: bool,
        /// The vmlinux given with `-k`, named in the lines instead of a placeholder.
        vmlinux: Option<PathBuf>,
    },
}

/// `monitor kaslr` output.
pub fn text(k: &Kaslr) -> String {
    match k {
        Kaslr::Live {
            runtime_text,
            link_text,
            link,
        } => kaslr_text(*runtime_text, *link_text, link),
        Kaslr::Dump {
            offset: Some(off),
            percpu_at_zero,
            vmlinux,
        } => format!(
            "KASLR offset {off:#x} (VMCOREINFO KERNELOFFSET)\n\
             GDB relocated .text, .data and .bss through qOffsets. For every section:\n  \
             symbol-file\n  add-symbol-file {} -o {off:#x}{}\n",
            vmlinux
                .as_ref()
                .map_or("VMLINUX".to_string(), |p| p.display().to_string()),
            if *percpu_at_zero {
                " -s .data..percpu 0"
            } else {
                ""
            }
        ),
        Kaslr::Dump { offset: None, .. } => {
            "the dump's VMCOREINFO has no KERNELOFFSET: no KASLR offset known\n".into()
        }
    }
}

/// The running kernel's `_text`. Without CONFIG_KALLSYMS_ALL kallsyms keeps only symbols in
/// [_stext, _etext] and the init text (scripts/kallsyms.c text_ranges): arm64's _text sits
/// below _stext, before the head section, so only _stext is listed (Debian's arm64 6.1
/// kernels); then _text is _stext minus the head (`link_head` from a vmlinux, else the
/// architecture's default, `Arch::head_size`).
pub fn runtime_text(kallsyms: &Kallsyms, arch: Arch, link_head: Option<u64>) -> Option<u64> {
    kallsyms.lookup("_text").or_else(|| {
        kallsyms
            .lookup("_stext")
            .map(|st| st.wrapping_sub(link_head.unwrap_or_else(|| arch.head_size())))
    })
}

/// `monitor kaslr` output (pure, so it is tested without a kernel).
pub fn kaslr_text(runtime_text: u64, link_text: u64, source: &LinkText) -> String {
    let slide = runtime_text.wrapping_sub(link_text);
    let (file, from) = match source {
        LinkText::Vmlinux { path, .. } => (path.display().to_string(), format!("from {}", path.display())),
        LinkText::Default => (
            "VMLINUX".to_string(),
            "the architecture's default; give -k vmlinux".into(),
        ),
    };
    let mut out = format!(
        "KASLR offset: {slide:#x} (runtime _text {runtime_text:#x} - link-time _text {link_text:#x}, {from})\n"
    );
    if slide == 0 {
        out.push_str("The kernel runs at its link-time address: `file VMLINUX` needs no offset.\n");
        return out;
    }
    // Measured with gdb 13.1 and GDB 18.1 on a vmlinux-shaped ELF (tests/kaslr_gdb.rs): qOffsets
    // moves only .text/.data/.bss; `file -o` also moves the zero-based .data..percpu; and symbols
    // loaded by `add-symbol-file` lose every lookup to those of `gdb vmlinux`, so the half-relocated
    // main symbol file has to be dropped first (`symbol-file` with no argument).
    out.push_str(&format!(
        "kmemd answers qOffsets with Text=Data=Bss={slide:#x}. GDB applies that to .text, .data and .bss \
         only: symbols in other sections (.rodata such as linux_banner, .init.*) keep their link-time \
         addresses.\n"
    ));
    let percpu = match source {
        LinkText::Vmlinux { percpu_at_zero, .. } => *percpu_at_zero,
        LinkText::Default => false,
    };
    let percpu_lines = format!("  symbol-file\n  add-symbol-file {file} -o {slide:#x} -s .data..percpu 0\n");
    let why = "`symbol-file` with no argument drops the half-relocated symbols that `gdb vmlinux` loaded \
               (answer y): they would otherwise shadow the relocated ones.\n";
    if percpu {
        out.push_str(
            "To relocate every section but keep per-CPU symbols as zero-based offsets, run in GDB:\n",
        );
        out.push_str(&percpu_lines);
        out.push_str(why);
        out.push_str(&format!(
            "Not `file {file} -o {slide:#x}`: it also relocates .data..percpu, which makes per-CPU \
             addresses (e.g. &current_task) wrong.\n"
        ));
    } else if matches!(source, LinkText::Default) {
        out.push_str("If your vmlinux links .data..percpu at address 0 (x86_64 SMP kernels), run in GDB:\n");
        out.push_str(&percpu_lines);
        out.push_str(why);
        out.push_str(&format!("else run in GDB:\n  file {file} -o {slide:#x}\n"));
    } else {
        out.push_str(&format!(
            "To relocate every section, run in GDB:\n  file {file} -o {slide:#x}\n"
        ));
    }
    out
}

/// The sections GDB relocates itself by qOffsets' `Text=`/`Data=`/`Bss=` when it cannot move
/// whole segments (more than two PT_LOADs).
const GDB_RELOCATES: [&str; 3] = [".text", ".data", ".bss"];

/// The "harmless lie" that makes `gdb vmlinux` right on an x86_64 kernel with KASLR: GDB leaves
/// every section but .text/.data/.bss at its link-time address (Debian's x86_64 vmlinux has four
/// PT_LOADs; see [`Vmlinux::load_segments`]), so it reads `.rodata` (`linux_banner`,
/// `__per_cpu_offset`), `.init.*` and the rest there. kmemd serves those link-time ranges from
/// the bytes KASLR moved them to. Only where that is unambiguous: a range that is mapped at run
/// time, and the part of a range inside where the image runs (a slide smaller than the image),
/// are left alone, so a real runtime address is never rewritten. What GDB shows for `&sym` in those sections
/// stays the link-time address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkAlias {
    slide: u64,
    /// Link-time `[start, end)` ranges served from `start + slide`, sorted, not overlapping.
    ranges: Vec<(u64, u64)>,
    /// Sections left alone, each with why (for `monitor kaslr` and the log).
    skipped: Vec<String>,
    /// The end of x86_64's zero-based `.data..percpu` (0: not served). GDB takes a per-CPU
    /// symbol's value as its address (`current_task` at 0x1fb80), so `p current_task` or
    /// `p *(struct task_struct **)&current_task` read `[0, percpu_end)`: user space on x86_64,
    /// never a kernel address. kmemd serves those reads from the per-CPU copy of the CPU GDB's
    /// thread is on, as `$lx_per_cpu()` would compute it.
    percpu_end: u64,
}

/// No x86_64 kernel's per-CPU section comes near this (6.1's is 0x35000); a larger "end" means
/// the symbol is not the zero-based section's.
const PERCPU_MAX: u64 = 1 << 24;

/// x86_64's KERNEL_IMAGE_SIZE with KASLR (arch/x86/include/asm/page_64_types.h): the image
/// lies within this much of `__START_KERNEL_map`, so within it of the link-time `_text`.
const IMAGE_MAX: u64 = 1 << 30;

impl LinkAlias {
    /// Works out the ranges for `vmlinux` and `slide`, probing `mem` (the kernel's memory, read
    /// without the alias) for link-time addresses that are mapped at run time.
    pub fn plan(vmlinux: &Vmlinux, slide: u64, mem: &mut dyn VirtRead) -> LinkAlias {
        let mut a = LinkAlias {
            slide,
            ..LinkAlias::default()
        };
        if let Some(end) = vmlinux.zero_based_percpu_end() {
            a.serve_percpu(vmlinux.arch, end);
        }
        if slide == 0 || vmlinux.load_segments <= 2 {
            // No slide, or GDB moves every section with the segment (arm64's single PT_LOAD).
            return a;
        }
        // Sections with an address are the loaded ones; a zero-based .data..percpu (x86_64) has
        // address 0 and holds per-CPU offsets, not addresses: never aliased.
        let loaded: Vec<_> = vmlinux
            .sections
            .iter()
            .filter(|s| s.addr != 0 && s.size != 0)
            .collect();
        let lo = loaded.iter().map(|s| s.addr).min().unwrap_or(0);
        let hi = loaded
            .iter()
            .filter_map(|s| s.addr.checked_add(s.size))
            .max()
            .unwrap_or(0);
        let (Some(run_lo), Some(run_hi)) = (lo.checked_add(slide), hi.checked_add(slide)) else {
            return a;
        };
        for s in loaded {
            if GDB_RELOCATES.contains(&s.name.as_str()) {
                continue;
            }
            let Some(end) = s.addr.checked_add(s.size) else {
                continue;
            };
            a.serve_outside_image(&s.name, (s.addr, end), (run_lo, run_hi), mem);
        }
        a.ranges.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(a.ranges.len());
        for (s, e) in a.ranges.drain(..) {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        a.ranges = merged;
        a
    }

    /// Without a vmlinux (x86_64 only, whose vmlinux always has a zero-based per-CPU segment
    /// besides the image, so more than two PT_LOADs): the link-time image `[link_text,
    /// link_end)` from the kernel's `_text` and `_end` minus the slide. GDB reads .text/.data/.bss
    /// at run time, so serving their link-time ranges too changes nothing for it; the same
    /// conditions hold (unmapped at run time, outside the slid image).
    pub fn plan_image(
        arch: Arch,
        link_text: u64,
        link_end: u64,
        slide: u64,
        mem: &mut dyn VirtRead,
    ) -> LinkAlias {
        let mut a = LinkAlias {
            slide,
            ..LinkAlias::default()
        };
        if arch != Arch::X86_64 || slide == 0 || link_end <= link_text {
            return a;
        }
        let (Some(run_lo), Some(run_hi)) = (link_text.checked_add(slide), link_end.checked_add(slide)) else {
            return a;
        };
        a.serve_outside_image("the image", (link_text, link_end), (run_lo, run_hi), mem);
        a
    }

    /// Serves the parts of the link-time range `[start, end)` that lie outside the slid image
    /// `[run_lo, run_hi)` and are unmapped at run time. A slide smaller than the image makes the
    /// two overlap; only the overlap is a real runtime range, so only it is left alone (a CI
    /// guest drew a slide of 0x3400000 for a 0x3430000-byte image: refusing the whole image then
    /// lost .rodata).
    fn serve_outside_image(
        &mut self,
        what: &str,
        (start, end): (u64, u64),
        (run_lo, run_hi): (u64, u64),
        mem: &mut dyn VirtRead,
    ) {
        let (cover_lo, cover_hi) = (start.max(run_lo), end.min(run_hi));
        if cover_lo < cover_hi {
            self.skipped.push(format!(
                "{what} [{cover_lo:#x}, {cover_hi:#x}): the slid image [{run_lo:#x}, {run_hi:#x}) covers it"
            ));
        }
        let below = (start, end.min(run_lo));
        let above = (start.max(run_hi), end);
        for (s, e) in [below, above] {
            if s >= e {
                continue;
            }
            if mem.read_virt(VirtAddr(s), &mut [0u8; 1]).is_ok() {
                self.skipped.push(format!(
                    "{what} [{s:#x}, {e:#x}): its link-time address is mapped at run time"
                ));
                continue;
            }
            self.ranges.push((s, e));
        }
    }

    /// Whether a read of `addr` could fall in what [`Self::plan_image`] and
    /// [`Self::serve_percpu`] would serve for a kernel linked at `link_text` and moved by
    /// `slide`: the link-time image (at most `IMAGE_MAX`, 1 GiB, long) when the slide is not 0, or a
    /// zero-based per-CPU address. Before a plan exists, other reads need none.
    pub fn may_serve(arch: Arch, link_text: u64, slide: u64, addr: VirtAddr) -> bool {
        if arch != Arch::X86_64 {
            return false;
        }
        let in_image = slide != 0 && addr.0.wrapping_sub(link_text) < IMAGE_MAX;
        in_image || addr.0 < PERCPU_MAX
    }

    pub fn is_active(&self) -> bool {
        !self.ranges.is_empty()
    }

    /// Serves `[0, end)`, x86_64's zero-based per-CPU section (from the vmlinux's
    /// `.data..percpu` or kallsyms' `__per_cpu_end`), from the per-CPU copy of the CPU a read is
    /// for. Other architectures link per-CPU variables at kernel addresses: nothing to serve.
    pub fn serve_percpu(&mut self, arch: Arch, end: u64) {
        if arch == Arch::X86_64 && end <= PERCPU_MAX {
            self.percpu_end = end;
        }
    }

    /// Whether `addr` is a zero-based per-CPU address this alias serves: a read of it needs the
    /// CPU's `__per_cpu_offset` ([`Self::read`]'s `percpu_base`).
    pub fn is_percpu(&self, addr: VirtAddr) -> bool {
        addr.0 < self.percpu_end
    }

    /// Reads `addr` through the alias when it falls in a served range (`None`: it does not,
    /// read it as it is). A read stops at the range's end; the caller asks again for the rest.
    /// `percpu_base` is the `__per_cpu_offset` of the CPU the read is for (None: unknown, and a
    /// per-CPU address is then read as it is, which fails).
    pub fn read(
        &self,
        mem: &mut dyn VirtRead,
        addr: VirtAddr,
        buf: &mut [u8],
        percpu_base: Option<u64>,
    ) -> Option<Result<usize, MemError>> {
        let (end, to) = if self.is_percpu(addr) {
            (self.percpu_end, percpu_base?.wrapping_add(addr.0))
        } else {
            let &(_, end) = self.ranges.iter().find(|&&(s, e)| s <= addr.0 && addr.0 < e)?;
            (end, addr.0.wrapping_add(self.slide))
        };
        let room = usize::try_from(end - addr.0).unwrap_or(usize::MAX);
        let n = buf.len().min(room);
        let buf = buf.get_mut(..n)?;
        Some(mem.read_virt(VirtAddr(to), buf))
    }

    /// What `monitor kaslr` adds: which link-time ranges are served, and which sections not.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.is_active() {
            out.push_str(&format!(
                "kmemd serves reads of the sections GDB leaves at their link-time addresses (.rodata, \
                 .init.*, ...) from where KASLR moved them (+{:#x}), so `gdb VMLINUX` reads them right \
                 with no typed lines; `p &sym` shows the link-time address for symbols there:\n",
                self.slide
            ));
            for (s, e) in &self.ranges {
                out.push_str(&format!(
                    "  [{s:#x}, {e:#x}) -> [{:#x}, {:#x})\n",
                    s.wrapping_add(self.slide),
                    e.wrapping_add(self.slide)
                ));
            }
        }
        if self.percpu_end != 0 {
            out.push_str(&format!(
                "Per-CPU variables [0x0, {:#x}) (`p current_task`) read the copy of the selected \
                 thread's CPU.\n",
                self.percpu_end
            ));
        }
        if !self.skipped.is_empty() {
            out.push_str("Not served at their link-time addresses (use the lines above for them):\n");
            for s in &self.skipped {
                out.push_str(&format!("  {s}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before a plan, a read waits for one only where the plan could serve it.
    #[test]
    fn only_reads_an_alias_could_serve_wait_for_its_plan() {
        let link = 0xffff_ffff_8100_0000u64;
        let x86 = Arch::X86_64;
        let at = |a: u64| VirtAddr(a);
        // The link-time image window, with a slide only.
        assert!(LinkAlias::may_serve(x86, link, 0x3400_0000, at(link)));
        assert!(LinkAlias::may_serve(
            x86,
            link,
            0x3400_0000,
            at(link + IMAGE_MAX - 1)
        ));
        assert!(!LinkAlias::may_serve(
            x86,
            link,
            0x3400_0000,
            at(link + IMAGE_MAX)
        ));
        assert!(!LinkAlias::may_serve(x86, link, 0x3400_0000, at(link - 1)));
        assert!(!LinkAlias::may_serve(x86, link, 0, at(link)));
        // Zero-based per-CPU addresses, slide or not.
        assert!(LinkAlias::may_serve(x86, link, 0, at(0x1fb80)));
        assert!(!LinkAlias::may_serve(x86, link, 0, at(PERCPU_MAX)));
        // arm64 links per-CPU data at kernel addresses and moves whole segments: never.
        assert!(!LinkAlias::may_serve(Arch::Aarch64, link, 0x3400_0000, at(link)));
        assert!(!LinkAlias::may_serve(Arch::Aarch64, link, 0, at(0x1fb80)));
    }

    #[test]
    fn text_comes_from_stext_when_kallsyms_lacks_it() {
        let both = Kallsyms::parse("ffff800008000000 T _text\nffff800008010000 T _stext\n");
        assert_eq!(
            runtime_text(&both, Arch::Aarch64, None),
            Some(0xffff_8000_0800_0000)
        );
        let arm = Kallsyms::parse("ffffa0c1e1a10000 T _stext\nffffa0c1e1a10040 t gic_handle_irq\n");
        assert_eq!(
            runtime_text(&arm, Arch::Aarch64, None),
            Some(0xffff_a0c1_e1a0_0000)
        );
        assert_eq!(
            runtime_text(&arm, Arch::Aarch64, Some(0x2_0000)),
            Some(0xffff_a0c1_e19f_0000)
        );
        let x86 = Kallsyms::parse("ffffffff81000000 T _stext\n");
        assert_eq!(
            runtime_text(&x86, Arch::X86_64, None),
            Some(0xffff_ffff_8100_0000)
        );
        assert_eq!(
            runtime_text(&Kallsyms::parse("ffffffff81000100 T foo\n"), Arch::X86_64, None),
            None
        );
    }

    #[test]
    fn kaslr_text_names_the_right_commands() {
        let vm = LinkText::Vmlinux {
            path: PathBuf::from("/tmp/vmlinux"),
            percpu_at_zero: true,
        };
        let t = kaslr_text(0xffff_ffff_ad60_0000, 0xffff_ffff_8100_0000, &vm);
        assert!(t.starts_with("KASLR offset: 0x2c600000 "), "{t}");
        assert!(
            t.contains("  symbol-file\n  add-symbol-file /tmp/vmlinux -o 0x2c600000 -s .data..percpu 0\n"),
            "{t}"
        );
        assert!(t.contains("Not `file /tmp/vmlinux -o 0x2c600000`"), "{t}");
        assert!(t.contains("file /tmp/vmlinux -o 0x2c600000"), "{t}");
        assert!(t.contains(".rodata"), "{t}");

        let no_percpu = LinkText::Vmlinux {
            path: PathBuf::from("/v"),
            percpu_at_zero: false,
        };
        let t = kaslr_text(0xffff_8000_8123_0000, 0xffff_8000_8000_0000, &no_percpu);
        assert!(t.starts_with("KASLR offset: 0x1230000 "), "{t}");
        assert!(!t.contains("add-symbol-file"), "{t}");
        assert!(t.contains("  file /v -o 0x1230000\n"), "{t}");

        let t = kaslr_text(0xffff_ffff_ad60_0000, 0xffff_ffff_8100_0000, &LinkText::Default);
        assert!(
            t.contains("  symbol-file\n  add-symbol-file VMLINUX -o 0x2c600000 -s .data..percpu 0\n"),
            "{t}"
        );
        assert!(
            t.contains("else run in GDB:\n  file VMLINUX -o 0x2c600000\n"),
            "{t}"
        );

        let t = kaslr_text(0xffff_ffff_8100_0000, 0xffff_ffff_8100_0000, &LinkText::Default);
        assert!(t.starts_with("KASLR offset: 0x0 "), "{t}");
        assert!(!t.contains(" -o "), "{t}");
    }

    #[test]
    fn a_dump_gives_its_kerneloffset_and_the_add_symbol_file_line() {
        let x86 = text(&Kaslr::Dump {
            offset: Some(0x1900_0000),
            percpu_at_zero: true,
            vmlinux: None,
        });
        assert!(
            x86.starts_with("KASLR offset 0x19000000 (VMCOREINFO KERNELOFFSET)\n"),
            "{x86}"
        );
        assert!(
            x86.ends_with("  symbol-file\n  add-symbol-file VMLINUX -o 0x19000000 -s .data..percpu 0\n"),
            "{x86}"
        );
        let arm = text(&Kaslr::Dump {
            offset: Some(0x1230000),
            percpu_at_zero: false,
            vmlinux: None,
        });
        assert!(arm.ends_with("add-symbol-file VMLINUX -o 0x1230000\n"), "{arm}");
        let named = text(&Kaslr::Dump {
            offset: Some(0x1230000),
            percpu_at_zero: false,
            vmlinux: Some(PathBuf::from("/d/vmlinux-6.1")),
        });
        assert!(
            named.ends_with("add-symbol-file /d/vmlinux-6.1 -o 0x1230000\n"),
            "{named}"
        );
        let none = text(&Kaslr::Dump {
            offset: None,
            percpu_at_zero: true,
            vmlinux: None,
        });
        assert_eq!(
            none,
            "the dump's VMCOREINFO has no KERNELOFFSET: no KASLR offset known\n"
        );
        let live = Kaslr::Live {
            runtime_text: 0xffff_ffff_ad60_0000,
            link_text: 0xffff_ffff_8100_0000,
            link: LinkText::Default,
        };
        assert_eq!(
            text(&live),
            kaslr_text(0xffff_ffff_ad60_0000, 0xffff_ffff_8100_0000, &LinkText::Default)
        );
    }

    /// Debian 6.1.0-57-amd64's layout (readelf -SW), shortened: four PT_LOADs, zero-based percpu.
    fn x86_vmlinux() -> Vmlinux {
        use super::super::vmlinux::Section;
        let sec = |name: &str, addr: u64, size: u64| Section {
            name: name.into(),
            kind: 1,
            addr,
            offset: 0,
            size,
            link: 0,
        };
        Vmlinux::from_sections(
            Arch::X86_64,
            vec![
                sec("", 0, 0),
                sec(".text", 0xffff_ffff_8100_0000, 0xe0_1d32),
                sec(".rodata", 0xffff_ffff_8200_0000, 0x45_e616),
                sec(".data", 0xffff_ffff_82a0_0000, 0x40_0000),
                sec(".data..percpu", 0, 0x3_5000),
                sec(".init.text", 0xffff_ffff_8307_9000, 0x1000),
                sec(".init.data", 0xffff_ffff_8307_a000, 0x1000),
                sec(".bss", 0xffff_ffff_8331_0000, 0x10f_0000),
                sec(".init.scratch", 0xffff_ffff_8460_0000, 0x40_0000),
                sec(".comment", 0, 0x40),
            ],
            4,
        )
    }

    #[test]
    fn link_alias_serves_unrelocated_sections_from_their_slid_bytes() {
        use crate::kernel::tasks::testutil::FakeMem;
        let slide = 0x3280_0000;
        let v = x86_vmlinux();
        let mut mem = FakeMem::default();
        mem.put_bytes(0xffff_ffff_8200_0100 + slide, b"Linux version");
        let a = LinkAlias::plan(&v, slide, &mut mem);
        assert!(a.is_active());
        assert_eq!(
            a.ranges,
            vec![
                (0xffff_ffff_8200_0000, 0xffff_ffff_8245_e616),
                (0xffff_ffff_8307_9000, 0xffff_ffff_8307_b000),
                (0xffff_ffff_8460_0000, 0xffff_ffff_84a0_0000),
            ],
            "adjacent .init sections merge; .text/.data/.bss, percpu and .comment are left out"
        );
        let mut buf = [0u8; 13];
        let got = a.read(&mut mem, VirtAddr(0xffff_ffff_8200_0100), &mut buf, None);
        assert_eq!(got.map(|r| r.ok()), Some(Some(13)));
        assert_eq!(&buf, b"Linux version");
        // .data is GDB's to relocate: its link-time address is not rewritten.
        assert!(a
            .read(&mut mem, VirtAddr(0xffff_ffff_82a0_0000), &mut buf, None)
            .is_none());
        // A per-CPU address with no CPU to read it for is read as it is.
        assert!(a.read(&mut mem, VirtAddr(0x1000), &mut buf, None).is_none());
        // A read stops at the range's end.
        let mut big = [0u8; 64];
        let end = 0xffff_ffff_8245_e616u64;
        mem.put_bytes(end - 8 + slide, &[7; 64]);
        let got = a.read(&mut mem, VirtAddr(end - 8), &mut big, None);
        assert_eq!(got.map(|r| r.ok()), Some(Some(8)));
        let t = a.text();
        assert!(
            t.contains("[0xffffffff82000000, 0xffffffff8245e616) -> [0xffffffffb4800000, "),
            "{t}"
        );
    }

    #[test]
    fn percpu_addresses_read_the_copy_of_the_cpu_asked_for() {
        use crate::kernel::tasks::testutil::FakeMem;
        let v = x86_vmlinux();
        let mut mem = FakeMem::default();
        let (cpu0, cpu1) = (0xffff_8880_0740_0000u64, 0xffff_8880_0750_0000u64);
        mem.put_bytes(cpu0 + 0x1fb80, &0x1111u64.to_le_bytes());
        mem.put_bytes(cpu1 + 0x1fb80, &0x2222u64.to_le_bytes());
        mem.put_bytes(cpu1 + 0x3_4ff8, &[9; 16]);
        // Without KASLR too: GDB reads per-CPU symbols at their zero-based values either way.
        for slide in [0, 0x3280_0000] {
            let a = LinkAlias::plan(&v, slide, &mut mem);
            assert!(a.is_percpu(VirtAddr(0x1fb80)) && !a.is_percpu(VirtAddr(0x3_5000)));
            let mut word = [0u8; 8];
            let got = a.read(&mut mem, VirtAddr(0x1fb80), &mut word, Some(cpu1));
            assert_eq!(got.map(|r| r.ok()), Some(Some(8)));
            assert_eq!(u64::from_le_bytes(word), 0x2222);
            a.read(&mut mem, VirtAddr(0x1fb80), &mut word, Some(cpu0));
            assert_eq!(u64::from_le_bytes(word), 0x1111);
            // A read stops at the section's end.
            let mut big = [0u8; 16];
            let got = a.read(&mut mem, VirtAddr(0x3_4ff8), &mut big, Some(cpu1));
            assert_eq!(got.map(|r| r.ok()), Some(Some(8)));
            assert!(
                a.text().contains("Per-CPU variables [0x0, 0x35000)"),
                "{}",
                a.text()
            );
        }
        // arm64 links per-CPU variables at kernel addresses: nothing to serve.
        let mut a = LinkAlias::default();
        a.serve_percpu(Arch::Aarch64, 0x3_5000);
        assert!(!a.is_percpu(VirtAddr(0x1fb80)));
        // An "end" no per-CPU section has is not taken.
        a.serve_percpu(Arch::X86_64, 1 << 40);
        assert!(!a.is_percpu(VirtAddr(0x1fb80)));
    }

    #[test]
    fn link_alias_never_rewrites_a_runtime_address() {
        use crate::kernel::tasks::testutil::FakeMem;
        let v = x86_vmlinux();
        // A slide smaller than the image: the link-time .init.* and .init.scratch ranges are
        // inside the slid image, so they are real runtime addresses.
        let slide = 0x20_0000;
        let a = LinkAlias::plan(&v, slide, &mut FakeMem::default());
        assert!(a.ranges.is_empty(), "{:?}", a.ranges);
        assert!(
            a.text()
                .contains(".rodata [0xffffffff82000000, 0xffffffff8245e616): the slid image"),
            "{}",
            a.text()
        );
        // Mapped at run time: left alone.
        let mut mem = FakeMem::default();
        mem.put_bytes(0xffff_ffff_8200_0000, &[1]);
        let a = LinkAlias::plan(&v, 0x3280_0000, &mut mem);
        assert!(
            !a.ranges.iter().any(|r| r.0 == 0xffff_ffff_8200_0000),
            "{:?}",
            a.ranges
        );
        assert!(
            a.text().contains(
                ".rodata [0xffffffff82000000, 0xffffffff8245e616): its link-time address is mapped"
            ),
            "{}",
            a.text()
        );
        // Without a vmlinux: the whole image, under the same conditions, x86_64 only.
        let img = LinkAlias::plan_image(
            Arch::X86_64,
            0xffff_ffff_8100_0000,
            0xffff_ffff_84a0_0000,
            0x3280_0000,
            &mut FakeMem::default(),
        );
        assert_eq!(img.ranges, vec![(0xffff_ffff_8100_0000, 0xffff_ffff_84a0_0000)]);
        // A slide smaller than the image: only the part below the slid image is served. The
        // slide a CI guest drew, 0x3400000, with Debian 6.1.0-57-amd64's _end.
        let near = LinkAlias::plan_image(
            Arch::X86_64,
            0xffff_ffff_8100_0000,
            0xffff_ffff_8443_0000,
            0x340_0000,
            &mut FakeMem::default(),
        );
        assert_eq!(near.ranges, vec![(0xffff_ffff_8100_0000, 0xffff_ffff_8440_0000)]);
        assert!(
            near.text().contains(
                "the image [0xffffffff84400000, 0xffffffff84430000): the slid image [0xffffffff84400000, "
            ),
            "{}",
            near.text()
        );
        let mut mem = FakeMem::default();
        mem.put_bytes(0xffff_ffff_8216_1900 + 0x340_0000, b"Linux version");
        let mut buf = [0u8; 13];
        let got = near.read(&mut mem, VirtAddr(0xffff_ffff_8216_1900), &mut buf, None);
        assert_eq!(got.map(|r| r.ok()), Some(Some(13)));
        assert_eq!(&buf, b"Linux version");
        // A runtime address inside the slid image is never rewritten.
        assert!(near
            .read(&mut mem, VirtAddr(0xffff_ffff_8440_0000), &mut buf, None)
            .is_none());
        // The slide smaller than .rodata's distance from _text: nothing of it is served.
        let tiny = LinkAlias::plan_image(
            Arch::X86_64,
            0xffff_ffff_8100_0000,
            0xffff_ffff_84a0_0000,
            0x20_0000,
            &mut FakeMem::default(),
        );
        assert_eq!(tiny.ranges, vec![(0xffff_ffff_8100_0000, 0xffff_ffff_8120_0000)]);
        assert!(tiny
            .read(&mut mem, VirtAddr(0xffff_ffff_8216_1900), &mut buf, None)
            .is_none());
        let arm = LinkAlias::plan_image(
            Arch::Aarch64,
            0xffff_8000_0800_0000,
            0xffff_8000_0a00_0000,
            0x4e81_d3e0_0000,
            &mut FakeMem::default(),
        );
        assert!(!arm.is_active());
        // One or two PT_LOADs (arm64): GDB moves every section itself; no slide: nothing to do.
        let mut one = x86_vmlinux();
        one.load_segments = 1;
        assert!(!LinkAlias::plan(&one, 0x3280_0000, &mut FakeMem::default()).is_active());
        assert!(!LinkAlias::plan(&v, 0, &mut FakeMem::default()).is_active());
    }
}
