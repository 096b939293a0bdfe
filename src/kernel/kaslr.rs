//! The KASLR slide, and the lines that make GDB apply it: `monitor kaslr` for a running kernel
//! (its `_text` against a vmlinux's or the architecture's default link address) and for a dump
//! (VMCOREINFO `KERNELOFFSET`).

use super::proc_kallsyms::Kallsyms;
use crate::arch::Arch;
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
        } => format!(
            "KASLR offset {off:#x} (VMCOREINFO KERNELOFFSET)\n\
             GDB relocated .text, .data and .bss through qOffsets. For every section:\n  \
             symbol-file\n  add-symbol-file VMLINUX -o {off:#x}{}\n",
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

#[cfg(test)]
mod tests {
    use super::*;

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
        });
        assert!(arm.ends_with("add-symbol-file VMLINUX -o 0x1230000\n"), "{arm}");
        let none = text(&Kaslr::Dump {
            offset: None,
            percpu_at_zero: true,
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
}
