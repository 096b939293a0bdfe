//! x86_64: what kmemd knows of the architecture. Paging (the entry decoder for the generic walker
//! and the kernel's tables from VMCOREINFO: 4-level paging with 48-bit addresses or 5-level
//! with 57-bit (LA57), 9 index bits per level, 4 KiB pages, 2 MiB pages at the PMD and 1 GiB
//! pages at the PUD, PS bit); the kernel's layout around it (direct map, image, switch frame,
//! pt_regs); crash-dump notes; debug registers.

use crate::arch::walk::{Paging, PagingForm, PteFormat, Step};
use crate::arch::{DebugRegs, PtRegs, SwitchFrame};
use crate::mem::bytes::FormatError;
use crate::mem::vmcoreinfo::{parse_hex, parse_number, VmcoreInfo};
use crate::mem::{MemError, MemErrorKind, PhysAddr};

/// Entry is present (`_PAGE_BIT_PRESENT`, arch/x86/include/asm/pgtable_types.h).
pub const _PAGE_PRESENT: u64 = 1 << 0;
/// Entry maps a huge page, at PMD and PUD level (`_PAGE_BIT_PSE`).
pub const _PAGE_PSE: u64 = 1 << 7;
/// Physical address bits of an entry: 51..12. Bit 63 is NX, bits 62..52 are software/protection
/// key bits (`PTE_PFN_MASK` with `__PHYSICAL_MASK_SHIFT` 52).
pub const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
/// `__START_KERNEL_map`: the kernel image is mapped here, at physical `phys_base`.
pub const __START_KERNEL_map: u64 = 0xffff_ffff_8000_0000;

/// GDB's names for the program counter and the stack pointer (x86_64.xml).
pub const PC: &str = "rip";
pub const SP: &str = "rsp";

/// What a kdump header's `utsname.machine` says on x86_64.
pub const MACHINE_NAMES: &[&str] = &["x86_64"];

/// Whether VMCOREINFO has keys only x86_64 kernels write (arch/x86/kernel/machine_kexec_64.c,
/// Linux 6.x).
pub fn vmcoreinfo_is_ours(v: &VmcoreInfo) -> bool {
    v.symbol("init_top_pgt").is_some() || v.get("NUMBER(pgtable_l5_enabled)").is_some()
}

/// Size of a 64-bit x86_64 `struct elf_prstatus`.
pub const PRSTATUS_SIZE: usize = 336;

/// QEMUCPUState (QEMU `target/i386/arch_dump.c`): offsets of cr3 and cr4 in the `QEMU` note.
pub const QEMU_CPU_STATE_CR3: usize = 416;
pub const QEMU_CPU_STATE_CR4: usize = 424;

/// `_stext - _text`: x86_64 starts its text at `_text`.
pub const HEAD_SIZE: u64 = 0;

/// Per-CPU variables are linked from address 0 (arch/x86/kernel/vmlinux.lds.S, SMP kernels).
pub const PERCPU_AT_ZERO: bool = true;

/// Direct-map bases without KASLR memory randomization: `__PAGE_OFFSET_BASE_L4` and `_L5`
/// (arch/x86/include/asm/page_64_types.h).
pub const __PAGE_OFFSET_BASE_L4: u64 = 0xffff_8880_0000_0000;
pub const __PAGE_OFFSET_BASE_L5: u64 = 0xff11_0000_0000_0000;
/// GiB steps tried above an unrandomized base: KASLR memory randomization aligns the direct map
/// to PUD_SIZE within a 64 TiB region with 4 levels (arch/x86/mm/kaslr.c
/// kernel_randomize_memory(): the direct map, vmalloc and vmemmap share it).
const DIRECT_MAP_STEPS: u64 = 64 << 10;

/// Direct-map base candidates: the 4- and 5-level bases, each with its randomization steps.
pub fn direct_map_candidates() -> Vec<(u64, u64)> {
    vec![
        (__PAGE_OFFSET_BASE_L4, DIRECT_MAP_STEPS),
        (__PAGE_OFFSET_BASE_L5, DIRECT_MAP_STEPS),
    ]
}

/// Physical address of a kernel-image address: `va - __START_KERNEL_map + phys_base`
/// (arch/x86/include/asm/page_64.h), `NUMBER(phys_base)` from VMCOREINFO.
pub fn image_phys(va: u64, v: &VmcoreInfo) -> Option<u64> {
    v.number_u64("phys_base")
        .map(|pb| va.wrapping_sub(__START_KERNEL_map).wrapping_add(pb))
}

/// A switched-out task: `thread.sp` points at a `struct inactive_task_frame`
/// (arch/x86/include/asm/switch_to.h, Linux 4.9+): callee-saved registers and `ret_addr`;
/// `__switch_to_asm` returns (through `__switch_to`) to `ret_addr` with the frame popped.
pub const SWITCH_FRAME: SwitchFrame = SwitchFrame::OnStack {
    sp_member: "sp",
    frame_struct: "inactive_task_frame",
    members: &[
        ("r15", "r15"),
        ("r14", "r14"),
        ("r13", "r13"),
        ("r12", "r12"),
        ("bx", "rbx"),
        ("bp", "rbp"),
        ("ret_addr", "rip"),
    ],
};

/// The user fs base a task keeps in `thread_struct.fsbase` (arch/x86/include/asm/processor.h).
pub const THREAD_FSBASE: (&str, &str) = ("fsbase", "fs_base");

/// `struct pt_regs` (arch/x86/include/asm/ptrace.h) member names and GDB registers.
pub const PT_REGS: PtRegs = PtRegs {
    array: None,
    members: &[
        ("r15", "r15"),
        ("r14", "r14"),
        ("r13", "r13"),
        ("r12", "r12"),
        ("bp", "rbp"),
        ("bx", "rbx"),
        ("r11", "r11"),
        ("r10", "r10"),
        ("r9", "r9"),
        ("r8", "r8"),
        ("ax", "rax"),
        ("cx", "rcx"),
        ("dx", "rdx"),
        ("si", "rsi"),
        ("di", "rdi"),
        ("orig_ax", "orig_rax"),
        ("ip", "rip"),
        ("cs", "cs"),
        ("flags", "eflags"),
        ("sp", "rsp"),
        ("ss", "ss"),
    ],
};

/// User mode is `cs` = `__USER_CS` (0x33, arch/x86/include/asm/segment.h).
pub fn is_user_mode(reg: &str, value: u64) -> Option<bool> {
    (reg == "cs").then_some(value & 0xffff == 0x33)
}

/// perf's register numbers (arch/x86/include/uapi/asm/perf_regs.h, Linux 3.7+) as GDB names.
/// DS, ES, FS and GS (12-15) are left out: 64-bit kernels refuse them in a mask
/// (arch/x86/kernel/perf_regs.c, REG_NOSUPPORT).
pub const PERF_REGS: &[&str] = &[
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "eflags", "cs", "ss", "", "", "", "",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
];

/// Debug registers DR0-DR3 (DR7 sets type and length): no read-only type, and a length-aligned
/// address for data; perf takes execute breakpoints with length sizeof(long).
pub const DEBUG_REGS: DebugRegs = DebugRegs {
    slots: Some(4),
    no_read_only: Some("x86 debug registers cannot trap reads alone"),
    exec_len: 8,
    exec_len_why: "execute breakpoints on x86 take length 8 (sizeof(long))",
    // Instructions start at any byte; perf takes X breakpoints with no alignment check
    // (arch/x86/kernel/hw_breakpoint.c: X86_BREAKPOINT_LEN_X is X86_BREAKPOINT_LEN_1, align 0).
    exec_align: 1,
    data_aligned: |addr, len| len != 0 && addr % u64::from(len) == 0,
};

/// System call functions are `__x64_sys_NAME` (arch/x86/include/asm/syscall_wrapper.h,
/// Linux 4.17+).
pub const SYSCALL_PREFIX: &str = "__x64_sys_";

/// The x86_64 paging forms and the kernel page tables of a dump.
pub struct PagingX86_64;

impl PagingX86_64 {
    /// The form for 4- or 5-level paging.
    pub fn form(levels: u8) -> Result<PagingForm, FormatError> {
        match levels {
            4 => PagingForm::new(PteFormat::X86_64, 12, 48),
            5 => PagingForm::new(PteFormat::X86_64, 12, 57),
            _ => Err(FormatError::unsupported(format!(
                "x86_64 has 4- or 5-level paging, not {levels} levels"
            ))),
        }
    }

    /// The kernel's tables described by a dump's VMCOREINFO.
    ///
    /// Root = `SYMBOL(init_top_pgt)` - `__START_KERNEL_map` + `NUMBER(phys_base)` (drgn
    /// `arch_x86_64.c`, libaddrxlat `x86_64.c`). SYMBOL values are already KASLR-relocated.
    pub fn from_vmcoreinfo(v: &VmcoreInfo) -> Result<Paging, FormatError> {
        let lookup = |key: &str| v.get(key);
        let number = |s: &str| parse_number(s).map(|n| n as u64);
        // init_top_pgt since Linux 4.13 (renamed from init_level4_pgt); the generic
        // SYMBOL(swapper_pg_dir) carries the same address (`#define swapper_pg_dir init_top_pgt`).
        let pgd = [
            "SYMBOL(init_top_pgt)",
            "SYMBOL(swapper_pg_dir)",
            "SYMBOL(init_level4_pgt)",
        ]
        .iter()
        .find_map(|k| lookup(k))
        .ok_or_else(|| {
            v.lacks(
                "SYMBOL(init_top_pgt) or SYMBOL(swapper_pg_dir)",
                Some("is this an x86_64 kernel dump?"),
                "the kernel page tables cannot be found",
            )
        })?;
        let pgd = parse_hex(pgd).ok_or_else(|| {
            FormatError::corrupt(format!(
                "VMCOREINFO's page-table symbol value {pgd:?} is not a hex address"
            ))
        })?;
        if pgd < __START_KERNEL_map {
            return Err(FormatError::corrupt(format!(
                "VMCOREINFO's init_top_pgt {pgd:#x} is outside the kernel image mapping; the dump's VMCOREINFO is corrupt"
            )));
        }
        // NUMBER(phys_base) is printed with %ld (signed: a kernel loaded below its link address
        // has a negative phys_base); Linux 4.10 replaced SYMBOL(phys_base) by it.
        let phys_base = lookup("NUMBER(phys_base)").ok_or_else(|| {
            v.lacks(
                "NUMBER(phys_base)",
                Some("kernels before 4.10"),
                "the kernel page tables cannot be located",
            )
        })?;
        let phys_base = number(phys_base).ok_or_else(|| {
            FormatError::corrupt(format!(
                "VMCOREINFO's NUMBER(phys_base) {phys_base:?} is not a number; the dump is corrupt"
            ))
        })?;
        // NUMBER(pgtable_l5_enabled) is printed by kernels where 5-level paging is a boot-time
        // choice (CONFIG_X86_5LEVEL, Linux 4.17+); absent means 4 levels, unless the note is
        // damaged where it may have been: then 4 levels is a guess that could walk a 5-level
        // kernel's tables wrongly.
        const L5: &str = "NUMBER(pgtable_l5_enabled)";
        if lookup(L5).is_none() && v.may_have_lost(L5) {
            return Err(v.lacks(L5, None, "4-level and 5-level paging cannot be told apart"));
        }
        let levels = match lookup(L5).map(number) {
            Some(Some(0)) | None => 4,
            Some(Some(_)) => 5,
            Some(None) => {
                return Err(FormatError::corrupt(
                    "VMCOREINFO's NUMBER(pgtable_l5_enabled) is not a number",
                ))
            }
        };
        Ok(Paging {
            form: Self::form(levels)?,
            root: PhysAddr((pgd - __START_KERNEL_map).wrapping_add(phys_base)),
        })
    }
}

/// Non-canonical addresses (bits above `va_bits - 1` not all equal to it) fault on x86_64.
pub fn check_canonical(va: u64, va_bits: u8) -> Result<(), MemError> {
    let high = va >> (va_bits - 1);
    if high == 0 || high == (u64::MAX >> (va_bits - 1)) {
        Ok(())
    } else {
        Err(MemError::new(
            va,
            MemErrorKind::Fault,
            format!(
                "{va:#x} is not a canonical address for {}-level paging (bits 63..{} must all equal bit {})",
                if va_bits > 48 { 5 } else { 4 },
                va_bits - 1,
                va_bits - 1
            ),
        ))
    }
}

/// Decodes one x86_64 entry at `level` (0 = PTE).
pub fn decode_entry(form: &PagingForm, entry: u64, level: u8) -> Step {
    if entry & _PAGE_PRESENT == 0 {
        return Step::Invalid("not present".to_string());
    }
    let addr = entry & PTE_PFN_MASK;
    if level == 0 {
        // Bit 7 of a PTE is PAT, not PSE.
        return Step::Leaf(PhysAddr(addr));
    }
    if entry & _PAGE_PSE == 0 {
        return Step::Table(PhysAddr(addr));
    }
    if level <= 2 {
        // Huge page: bit 12 is PAT, so the base is the address masked to the page size.
        Step::Leaf(PhysAddr(addr & !(form.entry_span(level) - 1)))
    } else {
        Step::Reserved(
            "has the huge-page bit set, which is reserved at this level: the page table is corrupt"
                .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::walk::tests::{read_virt, Builder, FakeMem};
    use crate::arch::walk::{translate, walk_steps};
    use crate::mem::bytes::FormatErrorKind;
    use crate::mem::VirtAddr;

    const NX: u64 = 1 << 63;
    /// Present, writable, accessed, dirty.
    const FLAGS: u64 = 0x63;

    fn table(pa: u64) -> u64 {
        pa | FLAGS
    }
    /// Leaves carry NX, a protection key (bits 62..59) and for huge pages PSE plus PAT (bit 12),
    /// all of which must be masked off.
    fn leaf(pa: u64, level: u32) -> u64 {
        let pkey = 0x5 << 59;
        if level == 0 {
            pa | FLAGS | NX | pkey | 0x100
        } else {
            pa | FLAGS | NX | pkey | _PAGE_PSE | 0x1000
        }
    }

    fn builder(levels: u8) -> Builder {
        Builder::new(12, if levels == 5 { 57 } else { 48 }, table, leaf)
    }

    #[test]
    fn hand_built_4_level_walk() {
        // va 0xffffffff81234567: PGD index 511, PUD 510, PMD 9, PTE 0x34, offset 0x567.
        let mut mem = FakeMem::default();
        for t in [0x1000, 0x2000, 0x3000, 0x4000] {
            mem.zero(t, 0x1000);
        }
        mem.set(0x1000 + 511 * 8, 0x2000 | FLAGS);
        mem.set(0x2000 + 510 * 8, 0x3000 | FLAGS | NX);
        mem.set(0x3000 + 9 * 8, 0x4000 | FLAGS);
        mem.set(0x4000 + 0x34 * 8, 0x1_2345_6000 | FLAGS | NX | (0x7f << 52));
        let form = PagingX86_64::form(4).unwrap();
        let va = VirtAddr(0xffff_ffff_8123_4567);
        let t = translate(&mem, &form, PhysAddr(0x1000), va).unwrap();
        assert_eq!(t.pa, PhysAddr(0x1_2345_6567));
        assert_eq!(t.page_size, 0x1000 - 0x567);

        let w = walk_steps(&mem, &form, PhysAddr(0x1000), va);
        let got: Vec<_> = w
            .steps
            .iter()
            .map(|s| (s.name, s.index, s.entry_addr.0))
            .collect();
        assert_eq!(
            got,
            [
                ("PGD", 511, 0x1ff8),
                ("PUD", 510, 0x2ff0),
                ("PMD", 9, 0x3048),
                ("PTE", 0x34, 0x41a0)
            ]
        );
        assert_eq!(w.steps[3].entry, Some(0x1_2345_6000 | FLAGS | NX | (0x7f << 52)));
        assert_eq!(w.leaf_size, Some(4096));
        let text = w.to_string();
        assert!(
            text.contains("PMD[0x9] at physical 0x3048") && text.contains("physical 0x123456567"),
            "{text}"
        );

        // 2 MiB page at the PMD: PAT (bit 12) is not part of the address.
        mem.set(0x3000 + 9 * 8, 0x4000_0000 | FLAGS | _PAGE_PSE | 0x1000 | NX);
        let t = translate(&mem, &form, PhysAddr(0x1000), va).unwrap();
        assert_eq!(t.pa, PhysAddr(0x4000_0000 + 0x3_4567));
        assert_eq!(t.page_size, 0x20_0000 - 0x3_4567);

        // 1 GiB page at the PUD.
        mem.set(0x2000 + 510 * 8, 0x1_c000_0000 | FLAGS | _PAGE_PSE | 0x1000);
        let t = translate(&mem, &form, PhysAddr(0x1000), va).unwrap();
        assert_eq!(t.pa, PhysAddr(0x1_c000_0000 + 0x0123_4567));
        assert_eq!(t.page_size, 0x4000_0000 - 0x0123_4567);
    }

    #[test]
    fn pages_of_every_size_at_4_and_5_levels() {
        for levels in [4u8, 5] {
            let form = PagingX86_64::form(levels).unwrap();
            let mut b = builder(levels);
            // (va, pa base, leaf level, size)
            let base = if levels == 5 {
                0xff11_0000_0000_0000u64
            } else {
                0xffff_8880_0000_0000
            };
            let maps = [
                (base + 0x1234_5000, 0x7654_3000u64, 0u32, 0x1000u64),
                (base + 0x4060_0000, 0x2_0000_0000, 1, 0x20_0000),
                (base + 0x80_c000_0000, 0x3_c000_0000, 2, 0x4000_0000),
                (0xffff_ffff_8100_0000, 0x0100_0000, 1, 0x20_0000),
            ];
            for (va, pa, level, _) in maps {
                b.map(va, pa, level);
            }
            for (va, pa, _, size) in maps {
                for off in [0, 8, size / 2 + 3, size - 1] {
                    let t = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va + off)).unwrap();
                    assert_eq!(t.pa.0, pa + off, "{levels}-level va {:#x}", va + off);
                    assert_eq!(t.page_size, size - off);
                }
            }
            // Unmapped neighbours are errors, not zero.
            assert!(translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(base + 0x1234_6000)).is_err());
        }
    }

    #[test]
    fn not_present_at_every_level_names_the_level() {
        for levels in [4u8, 5] {
            let form = PagingX86_64::form(levels).unwrap();
            let names: &[&str] = if levels == 5 {
                &["PTE", "PMD", "PUD", "P4D", "PGD"]
            } else {
                &["PTE", "PMD", "PUD", "PGD"]
            };
            let va = 0xffff_ffff_c012_3456u64;
            for level in 0..u32::from(levels) {
                let mut b = builder(levels);
                b.map(va, 0x5000_0000, 0);
                let at = b.entry_addr(va, level);
                // Present bit clear, everything else kept: still not present.
                b.mem.set(at, 0x7000 | 0x62);
                let w = walk_steps(&b.mem, &form, PhysAddr(b.root), VirtAddr(va));
                let e = w.result.unwrap_err();
                let name = names[level as usize];
                assert_eq!(e.kind, MemErrorKind::NotPresent { level: level as u8 }, "{e}");
                assert!(e.detail.contains(name), "{}", e.detail);
                assert_eq!(w.steps.len(), usize::from(levels) - level as usize);
                assert_eq!(w.steps.last().unwrap().entry_addr.0, at);
            }
        }
    }

    #[test]
    fn non_canonical_addresses_are_rejected() {
        let mut b = builder(4);
        let f4 = PagingX86_64::form(4).unwrap();
        let f5 = PagingX86_64::form(5).unwrap();
        for va in [
            0x0000_8000_0000_0000u64,
            0xffff_7fff_ffff_ffff,
            0x00ff_8000_0000_0000,
            0x8000_0000_0000_0000,
        ] {
            let e = translate(&b.mem, &f4, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
            assert_eq!(e.kind, MemErrorKind::Fault, "{va:#x}: {e}");
            assert!(e.detail.contains("canonical"), "{va:#x}: {}", e.detail);
        }
        // 57-bit addresses sign-extend from bit 56.
        for va in [
            0x0100_0000_0000_0000u64,
            0xfe00_0000_0000_0000,
            0x8000_0000_0000_0000,
        ] {
            let e = translate(&b.mem, &f5, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
            assert_eq!(e.kind, MemErrorKind::Fault, "{va:#x}: {e}");
            assert!(e.detail.contains("canonical"), "{va:#x}: {}", e.detail);
        }
        // Canonical with 5 levels (walked, then not present), not with 4 (checked above).
        for va in [0x00ff_8000_0000_0000u64, 0xff80_0000_0000_0000] {
            let e = translate(&b.mem, &f5, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
            assert!(matches!(e.kind, MemErrorKind::NotPresent { .. }), "{e}");
        }
        // Lower-half canonical addresses are walked (and here not mapped).
        b.map(0x7fff_ffff_f000, 0x9000, 0);
        assert_eq!(
            translate(&b.mem, &f4, PhysAddr(b.root), VirtAddr(0x7fff_ffff_f010))
                .unwrap()
                .pa,
            PhysAddr(0x9010)
        );
    }

    #[test]
    fn reads_stop_at_page_ends() {
        let form = PagingX86_64::form(4).unwrap();
        let mut b = builder(4);
        let va = 0xffff_c900_0000_0000u64;
        // Two virtually adjacent pages in physically distant frames.
        b.map(va, 0x8_0000, 0);
        b.map(va + 0x1000, 0x3_0000, 0);
        b.mem.write(0x8_0ff0, &[0xaa; 16]);
        b.mem.write(0x3_0000, &[0xbb; 16]);
        let got = read_virt(&b.mem, &form, PhysAddr(b.root), va + 0xff8, 16);
        assert_eq!(got, [[0xaa; 8], [0xbb; 8]].concat());
    }

    #[test]
    fn corrupt_tables_give_errors_not_panics() {
        let form = PagingX86_64::form(5).unwrap();
        let mut b = builder(5);
        let va = 0xff11_0000_1234_5678u64;
        b.map(va, 0x1000, 0);
        // A PMD pointing far outside memory.
        let at = b.entry_addr(va, 1);
        b.mem.set(at, 0x000f_ffff_ffff_f000 | FLAGS);
        let e = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
        assert_eq!(e.kind, MemErrorKind::NotInDump, "{e}");
        assert!(e.detail.contains("PTE"), "{}", e.detail);
        // PSE at PGD level is reserved.
        let at = b.entry_addr(va, 4);
        b.mem.set(at, 0x20_0000 | FLAGS | _PAGE_PSE);
        let e = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
        assert_eq!(e.kind, MemErrorKind::Corrupt, "{e}");
        assert!(e.detail.contains("PGD"), "{}", e.detail);
        // Tables filled with pseudo-random entries, some pointing back at themselves.
        let mut mem = FakeMem::default();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..(8 * 512) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let e = if i % 3 == 0 { (x & 0x7000) | 1 } else { x };
            mem.set(i * 8, e);
        }
        for levels in [4u8, 5] {
            let form = PagingX86_64::form(levels).unwrap();
            for i in 0..2000u64 {
                let va = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let _ = translate(&mem, &form, PhysAddr(0x1000), VirtAddr(va));
                let _ = walk_steps(
                    &mem,
                    &form,
                    PhysAddr(0x3000),
                    VirtAddr(va | 0xff00_0000_0000_0000),
                )
                .to_string();
            }
        }
    }

    fn from_text(text: &str) -> Result<Paging, FormatError> {
        PagingX86_64::from_vmcoreinfo(&VmcoreInfo::parse(text.as_bytes()))
    }

    /// The kind and sentence of a VMCOREINFO that must not give paging.
    fn refused(text: &str) -> (FormatErrorKind, String) {
        match from_text(text) {
            Ok(p) => panic!("{text:?} gave {p:?}"),
            Err(e) => (e.kind, e.detail),
        }
    }

    #[test]
    fn from_vmcoreinfo_finds_the_root() {
        let text = "OSRELEASE=6.1.0-18-amd64\nSYMBOL(swapper_pg_dir)=ffffffff9a40a000\nSYMBOL(init_top_pgt)=ffffffff9a40a000\nNUMBER(pgtable_l5_enabled)=0\nNUMBER(phys_base)=434110464\nKERNELOFFSET=19000000\n";
        let p = from_text(text).unwrap();
        // 0x9a40a000 - 0x80000000 + 434110464 (0x19e00000)
        assert_eq!(p.root, PhysAddr(0x1a40_a000 + 0x19e0_0000));
        assert_eq!(p.form.levels, 4);

        // Negative phys_base (kernel loaded below its link address), 5-level paging.
        let text = "SYMBOL(init_top_pgt)=ffffffffc1a0a000\nNUMBER(pgtable_l5_enabled)=1\nNUMBER(phys_base)=-1073741824\n";
        let p = from_text(text).unwrap();
        assert_eq!(p.root, PhysAddr(0x01a0_a000));
        assert_eq!((p.form.levels, p.form.va_bits), (5, 57));

        // Lines as a KASLR'd cloud kernel prints them (phys_base well above 4 GiB).
        let text = "SYMBOL(init_top_pgt)=ffffffffb7010000\nNUMBER(pgtable_l5_enabled)=0\nNUMBER(phys_base)=31541166080\nKERNELOFFSET=34000000\n";
        let p = from_text(text).unwrap();
        assert_eq!(p.root, PhysAddr(0x3701_0000 + 0x7_5800_0000));

        // Only the generic key, no pgtable_l5_enabled: 4 levels.
        let p = from_text("SYMBOL(swapper_pg_dir)=ffffffff82000000\nNUMBER(phys_base)=0\n").unwrap();
        assert_eq!((p.root, p.form.levels), (PhysAddr(0x0200_0000), 4));

        let (kind, e) = refused("NUMBER(phys_base)=0\n");
        assert!(
            kind == FormatErrorKind::Unsupported && e.contains("init_top_pgt"),
            "{e}"
        );
        let (kind, e) = refused("SYMBOL(init_top_pgt)=ffffffff82000000\n");
        assert!(
            kind == FormatErrorKind::Unsupported && e.contains("phys_base"),
            "{e}"
        );
        let (kind, _) = refused("SYMBOL(init_top_pgt)=zz\nNUMBER(phys_base)=0\n");
        assert_eq!(kind, FormatErrorKind::Corrupt);

        // A damaged note is blamed for what it lacks, not the kernel's age.
        let (kind, e) = refused("SYMBOL(init_top_pgt)=ffffffff82000000\nNUMBER(phys_b\0se)=0\n");
        assert_eq!(kind, FormatErrorKind::Corrupt);
        assert!(
            e.starts_with("the dump's VMCOREINFO note is corrupt: a NUL byte at offset 0x33")
                && e.contains("lacks NUMBER(phys_base)")
                && !e.contains("4.10"),
            "{e}"
        );
        // A note cut before NUMBER(pgtable_l5_enabled) cannot say 4 levels by its silence.
        let (kind, e) = refused("SYMBOL(init_top_pgt)=ffffffff82000000\nNUMBER(phys_base)=0\nNUMBER(pgt");
        assert_eq!(kind, FormatErrorKind::Corrupt);
        assert!(
            e.contains("corrupt: a line cut short") && e.contains("lacks NUMBER(pgtable_l5_enabled)"),
            "{e}"
        );
        let (kind, _) = refused("SYMBOL(init_top_pgt)=1000\nNUMBER(phys_base)=0\n");
        assert_eq!(kind, FormatErrorKind::Corrupt);
    }

    #[test]
    fn entry_decoder_masks_high_bits() {
        let form = PagingX86_64::form(4).unwrap();
        assert_eq!(
            decode_entry(&form, 0xfff0_0000_0000_0fff | 0x000a_bcde_f012_3000, 0),
            Step::Leaf(PhysAddr(0x000a_bcde_f012_3000))
        );
        assert_eq!(
            decode_entry(&form, 0x8000_0001_2345_6063, 2),
            Step::Table(PhysAddr(0x1_2345_6000))
        );
        assert_eq!(
            decode_entry(&form, 0x8000_0001_4020_10e3, 2),
            Step::Leaf(PhysAddr(0x1_4000_0000))
        );
        assert_eq!(
            decode_entry(&form, 0x8000_0001_4020_10e3, 1),
            Step::Leaf(PhysAddr(0x1_4020_0000))
        );
        assert!(matches!(decode_entry(&form, 0x1_4020_10e2, 1), Step::Invalid(_)));
    }
}
