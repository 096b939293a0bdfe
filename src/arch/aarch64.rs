//! aarch64 (VMSAv8-64 stage 1, TTBR1) paging: the descriptor decoder for the generic walker and
//! the kernel's tables from VMCOREINFO. 4K, 16K and 64K granules, 39 to 52 virtual address bits,
//! block descriptors, and 52-bit output addresses (64K FEAT_LPA, 4K/16K FEAT_LPA2).

use crate::arch::walk::{Paging, PagingForm, PteFormat, Step};
use crate::arch::{DebugRegs, PtRegs, SwitchFrame};
use crate::mem::bytes::FormatError;
use crate::mem::vmcoreinfo::{parse_hex, parse_number, VmcoreInfo};
use crate::mem::{read_u64, MemError, MemErrorKind, PhysAddr, VirtRead};

/// Descriptor type bits [1:0]: 0b11 is a table (or a page at the last level), 0b01 a block,
/// anything with bit 0 clear is invalid (Arm ARM D8.3).
const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;

/// Output address bits [47:0] of a 48-bit descriptor; the walker keeps the part above the page
/// or block offset.
const OA_48: u64 = 0x0000_ffff_ffff_ffff;
/// LPA2 (TCR_EL1.DS = 1): output address bits [49:page_shift] are in place.
const OA_LPA2_LOW: u64 = 0x0003_ffff_ffff_ffff;

/// GDB's names for the program counter and the stack pointer (aarch64.xml).
pub const PC: &str = "pc";
pub const SP: &str = "sp";
/// The register that holds `current` in kernel mode (see aarch64.xml).
pub const CURRENT_TASK: &str = "SP_EL0";
/// The pointer authentication masks (see aarch64.xml).
pub const PAUTH_MASKS: [&str; 2] = ["pauth_dmask", "pauth_cmask"];

/// What a kdump header's `utsname.machine` says on arm64.
pub const MACHINE_NAMES: &[&str] = &["aarch64", "arm64"];

/// Whether VMCOREINFO has keys only arm64 kernels write (arch/arm64/kernel/vmcore_info.c,
/// Linux 6.x).
pub fn vmcoreinfo_is_ours(v: &VmcoreInfo) -> bool {
    v.get("NUMBER(kimage_voffset)").is_some() || v.get("NUMBER(VA_BITS)").is_some()
}

/// Size of a 64-bit arm64 `struct elf_prstatus` (QEMU: `QEMU_BUILD_BUG_ON(sizeof(struct
/// aarch64_elf_prstatus) != 392)`).
pub const PRSTATUS_SIZE: usize = 392;

/// `_stext - _text`: the 64 KiB-aligned .head.text comes first (arch/arm64/kernel/vmlinux.lds.S,
/// SEGMENT_ALIGN 64 KiB, Linux 5.x-6.x).
pub const HEAD_SIZE: u64 = 0x1_0000;

/// arm64's `.data..percpu` is an ordinary section that KASLR moves.
pub const PERCPU_AT_ZERO: bool = false;

/// VA_BITS the linear map may be built for, most likely first.
const VA_BITS_TRIED: [u32; 6] = [48, 52, 47, 42, 39, 36];
/// Where RAM starts on the machines kmemd has met, when /proc/iomem does not say (QEMU virt
/// 0x4000_0000, others 0 or 2 GiB).
const RAM_STARTS: [u64; 3] = [0x4000_0000, 0, 0x8000_0000];
const GIB: u64 = 1 << 30;
/// GiB steps tried above a base: a randomized linear region moves within
/// (1 << (VA_BITS - 1)) - (1 << PARange) bytes (arch/arm64/mm/init.c), 128 Ki GiB at VA_BITS 48.
const DIRECT_MAP_STEPS: u64 = 128 << 10;

/// Linear-map base candidates. `PAGE_OFFSET` = -(1 << VA_BITS) (arch/arm64/include/asm/
/// memory.h) and the linear address of `pa` is `PAGE_OFFSET + pa - memstart_addr`
/// (`__phys_to_virt`), `memstart_addr` being the first RAM rounded down to ARM64_MEMSTART_ALIGN
/// (1 GiB with 4 KiB pages), lowered by whole steps when the linear region is randomized
/// (arch/arm64/mm/init.c arm64_memblock_init()): a base plus a whole number of GiB.
pub fn direct_map_candidates(ram_start: Option<u64>) -> Vec<(u64, u64)> {
    let starts: Vec<u64> = match ram_start {
        Some(s) => vec![s & !(GIB - 1), s],
        None => RAM_STARTS.to_vec(),
    };
    let mut out = Vec::new();
    for va_bits in VA_BITS_TRIED {
        let page_offset = 0u64.wrapping_sub(1u64 << va_bits);
        for &s in &starts {
            out.push((page_offset.wrapping_sub(s), DIRECT_MAP_STEPS));
        }
    }
    out
}

/// Physical address of a kernel-image address: `va - kimage_voffset`
/// (arch/arm64/include/asm/memory.h), `NUMBER(kimage_voffset)` from VMCOREINFO.
pub fn image_phys(va: u64, v: &VmcoreInfo) -> Option<u64> {
    v.number_u64("kimage_voffset").map(|off| va.wrapping_sub(off))
}

/// A switched-out task: `thread.cpu_context` (arch/arm64/include/asm/processor.h): x19-x28,
/// fp, sp, pc. `cpu_switch_to` returns with `ret` to the saved lr, which cpu_context keeps as
/// pc, so x30 holds it too.
pub const SWITCH_FRAME: SwitchFrame = SwitchFrame::InThread {
    member: "cpu_context",
    strukt: "cpu_context",
    members: &[
        ("x19", "x19"),
        ("x20", "x20"),
        ("x21", "x21"),
        ("x22", "x22"),
        ("x23", "x23"),
        ("x24", "x24"),
        ("x25", "x25"),
        ("x26", "x26"),
        ("x27", "x27"),
        ("x28", "x28"),
        ("fp", "x29"),
        ("sp", "sp"),
        ("pc", "pc"),
    ],
    copies: &[("x30", "pc")],
};

/// `struct pt_regs` (arch/arm64/include/asm/ptrace.h): `regs[31]`, `sp`, `pc`, `pstate` (inside
/// an anonymous union with user_pt_regs).
pub const PT_REGS: PtRegs = PtRegs {
    array: Some((
        "regs",
        &[
            "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
            "x15", "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28",
            "x29", "x30",
        ],
    )),
    members: &[("sp", "sp"), ("pc", "pc"), ("pstate", "cpsr")],
};

/// User mode is PSTATE.M = EL0t (0b0000).
pub fn is_user_mode(reg: &str, value: u64) -> Option<bool> {
    (reg == "cpsr").then_some(value & 0xf == 0)
}

/// perf's register numbers (arch/arm64/include/uapi/asm/perf_regs.h, Linux 3.18+): x0-x30,
/// sp, pc, as GDB names. pstate is not among them.
pub const PERF_REGS: &[&str] = &[
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15",
    "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30",
    "sp", "pc",
];

/// Watchpoints: 2 to 16 (ID_AA64DFR0_EL1.WRPs, which user space cannot read: the kernel
/// answers ENOSPC past it); byte-address-select within one aligned doubleword
/// (arch/arm64/kernel/hw_breakpoint.c); an execute breakpoint covers one instruction.
pub const DEBUG_REGS: DebugRegs = DebugRegs {
    slots: None,
    no_read_only: None,
    exec_len: 4,
    exec_len_why: "execute breakpoints on arm64 cover one instruction",
    // A64 instructions are 4-byte aligned.
    exec_align: 4,
    data_aligned: |addr, len| (addr & 7) + u64::from(len) <= 8,
};

/// System call functions are `__arm64_sys_NAME` (arch/arm64/include/asm/syscall_wrapper.h,
/// Linux 4.19+).
pub const SYSCALL_PREFIX: &str = "__arm64_sys_";

/// The address the walker takes for a user address: the walker checks for kernel (TTBR1)
/// addresses; TTBR0 tables of the same geometry index the same low bits, so user addresses get
/// the high bits set (a user VA space of `va_bits`, like the kernel's, as Linux configures it).
pub fn user_walk_addr(addr: u64, va_bits: u8) -> Result<u64, MemError> {
    let bits = va_bits;
    if addr >> bits != 0 {
        return Err(MemError::new(
            addr,
            MemErrorKind::Fault,
            format!("not a user address of this process ({bits}-bit user addresses)"),
        ));
    }
    Ok(addr | !((1u64 << bits) - 1))
}

/// On arm64 every kernel function that calls another keeps an AAPCS64 frame record: x29 points
/// at `{caller's x29, return address}` on the stack (arm64 selects FRAME_POINTER, and its own
/// unwinder, arch/arm64/kernel/stacktrace.c, relies on the records).
/// Longest chain followed: deeper kernel call chains do not reach panic anyway, and a damaged
/// stack must not make the walk long.
pub const MAX_FRAMES: usize = 64;

/// The registers a frame-record walk starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRegs {
    pub pc: u64,
    /// x30, the link register.
    pub lr: u64,
    /// x29, the frame pointer.
    pub fp: u64,
}

/// The code addresses of an aarch64 call chain, innermost first: the pc, then the instruction
/// before each return address (x30, then every frame record's), so that a call that ends a
/// function (a `noreturn` callee) is named after its caller, not after the function that follows.
///
/// `va_bits` (VMCOREINFO `NUMBER(VA_BITS)`) strips pointer-authentication codes from kernel
/// return addresses: with PAC the bits above VA_BITS of a signed kernel pointer hold the code,
/// and for a kernel (TTBR1, bit 55 set) address they are all ones once stripped.
pub fn call_chain(mem: &mut dyn VirtRead, regs: FrameRegs, va_bits: u32) -> Vec<u64> {
    let strip = |a: u64| strip_pac(a, va_bits);
    let call_site = |a: u64| strip(a).wrapping_sub(4);
    let mut chain = vec![regs.pc, call_site(regs.lr)];
    let mut fp = regs.fp;
    let mut seen = Vec::new();
    while chain.len() < MAX_FRAMES && fp != 0 && fp % 8 == 0 && !seen.contains(&fp) {
        seen.push(fp);
        let (Ok(next), Ok(ret)) = (read_u64(mem, fp), read_u64(mem, fp.wrapping_add(8))) else {
            break;
        };
        // The kernel ends every task's chain with a zeroed record (the `stackframe` of the
        // pt_regs at the top of the stack).
        if ret == 0 {
            break;
        }
        chain.push(call_site(ret));
        fp = next;
    }
    chain
}

/// A kernel address with a pointer-authentication code in its top bits, cleaned.
fn strip_pac(addr: u64, va_bits: u32) -> u64 {
    let va_bits = va_bits.clamp(36, 56);
    if addr & (1 << 55) != 0 {
        addr | !((1u64 << va_bits) - 1)
    } else {
        addr
    }
}

/// [`call_chain`] from a CPU's NT_PRSTATUS registers (pc, x30, x29), with VMCOREINFO's
/// `NUMBER(VA_BITS)` (48 when absent) for the PAC mask.
pub fn call_chain_from_pr_reg(mem: &mut dyn VirtRead, pr_reg: &[u64], v: &VmcoreInfo) -> Vec<u64> {
    let va_bits = v
        .number("VA_BITS")
        .and_then(|b| u32::try_from(b).ok())
        .unwrap_or(48);
    let reg = |name: &str| {
        let names = crate::arch::prstatus::pr_reg_names(crate::arch::Arch::Aarch64);
        let i = names.iter().position(|n| *n == name);
        i.and_then(|i| pr_reg.get(i)).copied().unwrap_or(0)
    };
    let regs = FrameRegs {
        pc: reg("pc"),
        lr: reg("x30"),
        fp: reg("x29"),
    };
    call_chain(mem, regs, va_bits)
}

/// Addresses formed by `ADRP Xd, page` followed (within 8 instructions) by `ADD Xd', Xd, #lo12` or
/// `LDR Xt, [Xd, #lo12]` (Arm ARM C6.2.11 ADRP, C6.2.4 ADD (immediate), C6.2.132 LDR (immediate,
/// unsigned offset)).
pub fn adrp_targets(pc0: u64, code: &[u8]) -> Vec<u64> {
    let insns: Vec<u32> = code
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let mut out = Vec::new();
    for (i, &insn) in insns.iter().enumerate() {
        if insn & 0x9f00_0000 != 0x9000_0000 {
            continue;
        }
        let rd = insn & 0x1f;
        let immlo = u64::from((insn >> 29) & 3);
        let immhi = u64::from((insn >> 5) & 0x7ffff);
        let imm = ((((immhi << 2) | immlo) << 43) as i64 >> 43) << 12;
        let pc = pc0.wrapping_add(4 * i as u64);
        let page = (pc & !0xfff).wrapping_add(imm as u64);
        for &next in insns.iter().skip(i + 1).take(8) {
            let rn = (next >> 5) & 0x1f;
            if rn != rd {
                continue;
            }
            if next & 0xffc0_0000 == 0x9100_0000 {
                out.push(page + u64::from((next >> 10) & 0xfff));
            } else if next & 0xffc0_0000 == 0xf940_0000 {
                out.push(page + 8 * u64::from((next >> 10) & 0xfff));
            }
        }
    }
    out
}

/// The aarch64 paging forms and the kernel page tables of a dump.
pub struct PagingAarch64;

impl PagingAarch64 {
    /// The form for a granule of `1 << page_shift` bytes and `va_bits` address bits. `pa52`
    /// selects the 52-bit descriptor layout for 4K/16K (LPA2); 64K always decodes LPA bits
    /// `[15:12]`, which are RES0 when PAs are 48-bit.
    pub fn form(page_shift: u8, va_bits: u8, pa52: bool) -> Result<PagingForm, FormatError> {
        let pte = match (page_shift, pa52) {
            (16, _) => PteFormat::Aarch64Lpa,
            (12 | 14, true) => PteFormat::Aarch64Lpa2,
            (12 | 14, false) => PteFormat::Aarch64,
            _ => {
                return Err(FormatError::unsupported(format!(
                    "aarch64 pages are 4K, 16K or 64K, not {} bytes",
                    1u64.checked_shl(page_shift.into()).unwrap_or(0)
                )))
            }
        };
        if !(36..=52).contains(&va_bits) {
            return Err(FormatError::corrupt(format!(
                "aarch64 kernels use 36 to 52 virtual address bits, not {va_bits}"
            )));
        }
        PagingForm::new(pte, page_shift, va_bits)
    }

    /// The kernel's tables described by a dump's VMCOREINFO, following drgn `arch_aarch64.c` and
    /// libaddrxlat `aarch64.c`.
    pub fn from_vmcoreinfo(v: &VmcoreInfo) -> Result<Paging, FormatError> {
        let lookup = |key: &str| v.get(key);
        let number = |key: &str| -> Result<Option<u64>, FormatError> {
            match lookup(key) {
                None => Ok(None),
                Some(v) => parse_number(v).map(|n| Some(n as u64)).ok_or_else(|| {
                    FormatError::corrupt(format!(
                        "VMCOREINFO's {key} value {v:?} is not a number; the dump is corrupt"
                    ))
                }),
            }
        };
        let page_size =
            number("PAGESIZE")?.ok_or_else(|| v.lacks("PAGESIZE", None, "its page tables cannot be read"))?;
        let page_shift = match page_size {
            4096 => 12,
            16384 => 14,
            65536 => 16,
            _ => {
                return Err(FormatError::corrupt(format!(
                    "VMCOREINFO's PAGESIZE {page_size} is not an aarch64 page size (4K, 16K, 64K)"
                )))
            }
        };
        // NUMBER(VA_BITS): Linux commit 20a166243328 ("arm64: kdump: add VMCOREINFO's for
        // user-space tools") (v4.12). Since b6d00d47e81a ("arm64: mm: Introduce 52-bit Kernel
        // VAs") (v5.4) it is the configured size, which may exceed what the CPU runs with;
        // NUMBER(TCR_EL1_T1SZ), bbdbc11804ff (v5.9), gives the runtime size. With 4K/16K pages a
        // 52-bit kernel without FEAT_LPA2 folds a level at runtime (0dd4f60a2c76, v6.9), so the
        // runtime size is the geometry. With 64K pages swapper_pg_dir keeps the 52-bit geometry
        // and TTBR1 points into it (c812026c54cf, v5.4), so VA_BITS is. drgn does the same.
        let config_va_bits = number("NUMBER(VA_BITS)")?;
        let t1sz = number("NUMBER(TCR_EL1_T1SZ)")?;
        // Absent T1SZ means VA_BITS is the geometry, unless the note is damaged where T1SZ may
        // have been: then VA_BITS could be the wrong size for a 52-bit kernel.
        if t1sz.is_none() && v.may_have_lost("NUMBER(TCR_EL1_T1SZ)") {
            return Err(v.lacks(
                "NUMBER(TCR_EL1_T1SZ)",
                None,
                "the number of virtual address bits the kernel ran with is unknown",
            ));
        }
        let va_bits = match (t1sz, page_shift) {
            (Some(t1sz), 12 | 14) if (12..=28).contains(&t1sz) => 64 - t1sz,
            (Some(t1sz), 12 | 14) => {
                return Err(FormatError::corrupt(format!(
                    "VMCOREINFO's NUMBER(TCR_EL1_T1SZ) {t1sz} is out of range; the dump is corrupt"
                )))
            }
            _ => config_va_bits.ok_or_else(|| {
                v.lacks(
                    "NUMBER(VA_BITS)",
                    Some("kernels before 4.12 are not supported"),
                    "its page tables cannot be read",
                )
            })?,
        };
        let va_bits = u8::try_from(va_bits)
            .map_err(|_| FormatError::corrupt(format!("VMCOREINFO's VA_BITS {va_bits} is out of range")))?;
        // With 4K/16K pages the kernel uses 52-bit PAs (LPA2 descriptors, TCR_EL1.DS = 1) exactly
        // when it runs with 52-bit VAs: 352b0395b505 ("arm64: Enable 52-bit virtual addressing
        // for 4k and 16k granule configs") (v6.9). PA size is not in VMCOREINFO.
        let form = Self::form(page_shift, va_bits, va_bits == 52)?;
        let pgd = lookup("SYMBOL(swapper_pg_dir)").ok_or_else(|| {
            v.lacks(
                "SYMBOL(swapper_pg_dir)",
                None,
                "the kernel page tables cannot be found",
            )
        })?;
        let pgd = parse_hex(pgd).ok_or_else(|| {
            FormatError::corrupt(format!(
                "VMCOREINFO's SYMBOL(swapper_pg_dir) {pgd:?} is not a hex address"
            ))
        })?;
        // Kernel image VA -> PA is va - kimage_voffset (arch/arm64/include/asm/memory.h).
        let voffset = number("NUMBER(kimage_voffset)")?.ok_or_else(|| {
            v.lacks(
                "NUMBER(kimage_voffset)",
                None,
                "the kernel page tables cannot be located",
            )
        })?;
        Ok(Paging {
            form,
            root: PhysAddr(pgd.wrapping_sub(voffset)),
        })
    }
}

/// Strips a top-byte tag or pointer authentication code: TBI sign-extends bit 55 into bits
/// 63..56 (drgn `untagged_addr_aarch64`).
pub fn untag(va: u64) -> u64 {
    if va & (1 << 55) != 0 {
        va | 0xff00_0000_0000_0000
    } else {
        va & 0x00ff_ffff_ffff_ffff
    }
}

/// Untags `va` and checks it is in the TTBR1 (kernel) range the tables translate: bits
/// 63..va_bits all set. Returns the address to walk.
pub fn check_kernel_va(va: u64, va_bits: u8) -> Result<u64, MemError> {
    let addr = untag(va);
    let high = addr.checked_shr(va_bits.into()).unwrap_or(0);
    if high == u64::MAX.checked_shr(va_bits.into()).unwrap_or(0) {
        Ok(addr)
    } else {
        Err(MemError::new(
            va,
            MemErrorKind::Fault,
            format!(
                "{va:#x} is not a kernel address: the kernel tables (TTBR1) with {va_bits}-bit addresses translate only addresses with bits 63..{va_bits} set"
            ),
        ))
    }
}

/// Output address of a table, block or page descriptor, before masking to the block size.
fn output_address(form: &PagingForm, desc: u64) -> u64 {
    let page_mask = !((1u64 << form.page_shift) - 1);
    match form.pte {
        // 64K FEAT_LPA: descriptor bits [15:12] hold PA[51:48].
        PteFormat::Aarch64Lpa => (desc & OA_48 & page_mask) | (((desc >> 12) & 0xf) << 48),
        // FEAT_LPA2: bits [49:page_shift] in place, bits [9:8] hold PA[51:50].
        PteFormat::Aarch64Lpa2 => (desc & OA_LPA2_LOW & page_mask) | (((desc >> 8) & 0x3) << 50),
        _ => desc & OA_48 & page_mask,
    }
}

/// Whether a block descriptor is allowed at `level` (0 = last level) for this granule (Arm ARM
/// D8.2: 4K blocks at L1/L2 and L0 with LPA2; 16K at L2 and L1 with LPA2; 64K at L2 and L1 with
/// LPA). Levels here count up from the last one, which is Arm's level 3.
fn block_allowed(form: &PagingForm, level: u8) -> bool {
    let lpa2 = form.pte == PteFormat::Aarch64Lpa2;
    match form.page_shift {
        12 => level == 1 || level == 2 || (lpa2 && level == 3),
        14 => level == 1 || (lpa2 && level == 2),
        16 => level == 1 || level == 2,
        _ => false,
    }
}

/// Decodes one descriptor at `level` (0 = last level).
pub fn decode_entry(form: &PagingForm, desc: u64, level: u8) -> Step {
    if desc & DESC_VALID == 0 {
        return Step::Invalid("not valid".to_string());
    }
    let oa = PhysAddr(output_address(form, desc));
    match (desc & DESC_TABLE_OR_PAGE != 0, level) {
        (true, 0) => Step::Leaf(oa),
        (true, _) => Step::Table(oa),
        (false, 0) => Step::Reserved("is a reserved descriptor type at the last level".to_string()),
        (false, _) if block_allowed(form, level) => Step::Leaf(oa),
        (false, _) => Step::Reserved(format!(
            "is a block descriptor, which {}K pages do not allow at this level: the page table is corrupt",
            (1u64 << form.page_shift) / 1024
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::walk::tests::{read_virt, Builder, FakeMem};
    use crate::arch::walk::{translate, walk_steps};
    use crate::mem::bytes::FormatErrorKind;
    use crate::mem::VirtAddr;

    #[test]
    fn adrp_add_and_adrp_ldr_pairs_decode() {
        // adrp x0, #+0x2000 pages from 0x...1000 ; add x0, x0, #0x123 ; adrp x1, #-1 page ;
        // ldr x2, [x1, #0x10]
        let pc = 0xffff_8000_0801_0ff8u64;
        let adrp = |rd: u32, pages: i64| {
            let imm = (pages as u64 & 0x1f_ffff) as u32;
            0x9000_0000 | ((imm & 3) << 29) | ((imm >> 2) << 5) | rd
        };
        let code: Vec<u8> = [
            adrp(0, 0x2000),
            0x9100_0000 | (0x123 << 10),
            adrp(1, -1),
            0xf940_0000 | (2 << 10) | (1 << 5) | 2,
        ]
        .iter()
        .flat_map(|i| i.to_le_bytes())
        .collect();
        let t = adrp_targets(pc, &code);
        assert_eq!(t, vec![0xffff_8000_0a01_0000 + 0x123, 0xffff_8000_0801_0000 + 16]);
    }

    /// Attribute bits a kernel leaf carries (AF, SH inner shareable, AP, AttrIndx, PXN/UXN and the
    /// software dirty bit 55) and a table's APTable/PXNTable bits: none may leak into addresses.
    const LEAF_ATTRS: u64 =
        (1 << 55) | (1 << 54) | (1 << 53) | (1 << 11) | (1 << 10) | (0b11 << 8) | (1 << 6) | (4 << 2);
    const LEAF_ATTRS_LPA2: u64 = LEAF_ATTRS & !(0b11 << 8);
    const TABLE_ATTRS: u64 = (1 << 63) | (1 << 59);

    fn kind(level: u32) -> u64 {
        if level == 0 {
            0b11
        } else {
            0b01
        }
    }
    fn t48(pa: u64) -> u64 {
        pa | TABLE_ATTRS | 0b11
    }
    fn l48(pa: u64, level: u32) -> u64 {
        pa | LEAF_ATTRS | kind(level)
    }
    /// FEAT_LPA2: PA[49:12] in place, PA[51:50] in bits [9:8].
    fn lpa2(pa: u64) -> u64 {
        (pa & 0x0003_ffff_ffff_f000) | (((pa >> 50) & 3) << 8)
    }
    fn t_lpa2(pa: u64) -> u64 {
        lpa2(pa) | TABLE_ATTRS | 0b11
    }
    fn l_lpa2(pa: u64, level: u32) -> u64 {
        lpa2(pa) | LEAF_ATTRS_LPA2 | kind(level)
    }
    /// 64K FEAT_LPA: PA[47:16] in place, PA[51:48] in bits [15:12].
    fn lpa(pa: u64) -> u64 {
        (pa & 0x0000_ffff_ffff_0000) | (((pa >> 48) & 0xf) << 12)
    }
    fn t_lpa(pa: u64) -> u64 {
        lpa(pa) | TABLE_ATTRS | 0b11
    }
    fn l_lpa(pa: u64, level: u32) -> u64 {
        lpa(pa) | LEAF_ATTRS | kind(level)
    }

    struct Case {
        page_shift: u8,
        va_bits: u8,
        pa52: bool,
        /// Levels (0 = last) where the Arm ARM allows blocks, written out by hand.
        blocks: &'static [u32],
    }

    const CASES: [Case; 10] = [
        Case {
            page_shift: 12,
            va_bits: 39,
            pa52: false,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 12,
            va_bits: 48,
            pa52: false,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 12,
            va_bits: 52,
            pa52: true,
            blocks: &[1, 2, 3],
        },
        Case {
            page_shift: 14,
            va_bits: 36,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 14,
            va_bits: 47,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 14,
            va_bits: 48,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 14,
            va_bits: 52,
            pa52: true,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 16,
            va_bits: 42,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 16,
            va_bits: 48,
            pa52: false,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 16,
            va_bits: 52,
            pa52: true,
            blocks: &[1, 2],
        },
    ];

    fn builder(c: &Case) -> Builder {
        let b = |t: fn(u64) -> u64, l: fn(u64, u32) -> u64| {
            Builder::new(c.page_shift.into(), c.va_bits.into(), t, l)
        };
        match (c.page_shift, c.pa52) {
            (16, _) => b(t_lpa, l_lpa),
            (_, true) => b(t_lpa2, l_lpa2),
            _ => b(t48, l48),
        }
    }

    #[test]
    fn pages_and_blocks_for_every_granule_and_va_size() {
        for c in &CASES {
            let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
            let name = format!("{}K/{}-bit", (1u64 << c.page_shift) / 1024, c.va_bits);
            // A kernel address with arbitrary bits below va_bits.
            let va = (u64::MAX << c.va_bits) | (0x5a5a_5a5a_5a5a_5a5a & ((1u64 << c.va_bits) - 1));
            // Physical bases aligned to every block size used (at most 4 TiB), above 48 bits
            // when the form has 52-bit output addresses.
            let pa_base = if c.pa52 {
                0x000d_5000_0000_0000u64
            } else {
                0x0000_a000_0000_0000
            };
            let per = u32::from(c.page_shift) - 3;
            for leaf in std::iter::once(0).chain(c.blocks.iter().copied()) {
                let mut b = builder(c);
                assert_eq!(b.levels, u32::from(form.levels), "{name}");
                let size = 1u64 << (u32::from(c.page_shift) + leaf * per);
                b.map(va, pa_base, leaf);
                let va_base = va & !(size - 1);
                for off in [0, 8, size / 2 + 3, size - 1] {
                    let t = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va_base + off))
                        .unwrap_or_else(|e| panic!("{name} level {leaf}: {e}"));
                    assert_eq!(t.pa.0, pa_base + off, "{name} level {leaf} offset {off:#x}");
                    assert_eq!(t.page_size, size - off, "{name} level {leaf}");
                }
                let w = walk_steps(&b.mem, &form, PhysAddr(b.root), VirtAddr(va));
                assert_eq!(w.steps.len() as u32, b.levels - leaf, "{name}");
                assert_eq!(w.leaf_size, Some(size));
                // The next page or block up is not mapped.
                if va_base.checked_add(size).is_some() {
                    assert!(translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va_base + size)).is_err());
                }
            }
            // Blocks where the architecture allows none are rejected.
            for level in 1..b_levels(c) {
                if c.blocks.contains(&level) {
                    continue;
                }
                let mut b = builder(c);
                b.map(va, pa_base, level);
                let e = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
                assert_eq!(e.kind, MemErrorKind::Corrupt, "{name} level {level}: {e}");
                assert!(e.detail.contains("block"), "{name} level {level}: {}", e.detail);
            }
        }
    }

    fn b_levels(c: &Case) -> u32 {
        (u32::from(c.va_bits) - 4) / (u32::from(c.page_shift) - 3)
    }

    #[test]
    fn invalid_descriptors_at_every_level_name_the_level() {
        for c in &CASES {
            let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
            let va = u64::MAX << c.va_bits | 0x1234_5678;
            for level in 0..b_levels(c) {
                for bad in [0u64, 0x4000_0000 | 0b10, 0xffff_ffff_ffff_fffe] {
                    let mut b = builder(c);
                    b.map(va, 0x8000_0000, 0);
                    let at = b.entry_addr(va, level);
                    b.mem.set(at, bad);
                    let w = walk_steps(&b.mem, &form, PhysAddr(b.root), VirtAddr(va));
                    let e = w.result.unwrap_err();
                    let name = w.steps.last().unwrap().name;
                    assert_eq!(e.kind, MemErrorKind::NotPresent { level: level as u8 }, "{e}");
                    assert!(e.detail.contains(name), "{}", e.detail);
                    assert_eq!(w.steps.len() as u32, b.levels - level);
                }
            }
            // Type 0b01 at the last level is reserved.
            let mut b = builder(c);
            b.map(va, 0x8000_0000, 0);
            let at = b.entry_addr(va, 0);
            b.mem.set(at, 0x8000_0000 | 0b01);
            let e = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
            assert_eq!(e.kind, MemErrorKind::Corrupt, "{e}");
            assert!(e.detail.contains("PTE"), "{}", e.detail);
        }
    }

    #[test]
    fn hand_built_4k_48_bit_walk() {
        // va 0xffff800012345678: L0 index 0x100, L1 0, L2 0x91, L3 0x145, offset 0x678.
        let mut mem = FakeMem::default();
        for t in [0x4000_0000, 0x4000_1000, 0x4000_2000, 0x4000_3000] {
            mem.zero(t, 0x1000);
        }
        mem.set(0x4000_0800, 0x4000_1003);
        mem.set(0x4000_1000, 0x4000_2003);
        mem.set(0x4000_2488, 0x4000_3003);
        mem.set(0x4000_3a28, 0x0060_0000_8765_4f43);
        let form = PagingAarch64::form(12, 48, false).unwrap();
        let t = translate(
            &mem,
            &form,
            PhysAddr(0x4000_0000),
            VirtAddr(0xffff_8000_1234_5678),
        )
        .unwrap();
        assert_eq!(t.pa, PhysAddr(0x8765_4678));
        assert_eq!(t.page_size, 0x988);
        // Tagged and top-byte-ignored forms of the same pointer translate alike.
        for tagged in [0xf2ff_8000_1234_5678u64, 0x80ff_8000_1234_5678] {
            let t = translate(&mem, &form, PhysAddr(0x4000_0000), VirtAddr(tagged)).unwrap();
            assert_eq!(t.pa, PhysAddr(0x8765_4678));
        }
        // User (TTBR0) and malformed addresses are not walked through the kernel tables.
        for va in [
            0x0000_ffff_1234_5678u64,
            0x0000_0000_0040_0000,
            0xfffe_8000_1234_5678,
            0xff7f_8000_0000_0000,
        ] {
            let e = translate(&mem, &form, PhysAddr(0x4000_0000), VirtAddr(va)).unwrap_err();
            assert_eq!(e.kind, MemErrorKind::Fault, "{va:#x}: {e}");
            assert!(e.detail.contains("not a kernel address"), "{va:#x}: {}", e.detail);
        }
        // A 1 GiB block at L1 (index 0).
        mem.set(0x4000_1000, 0x0000_0001_c000_0000 | 0x0040_0000_0000_0f41);
        let t = translate(
            &mem,
            &form,
            PhysAddr(0x4000_0000),
            VirtAddr(0xffff_8000_1234_5678),
        )
        .unwrap();
        assert_eq!(t.pa, PhysAddr(0x1_d234_5678));
        assert_eq!(t.page_size, 0x4000_0000 - 0x1234_5678);
    }

    #[test]
    fn hand_built_64k_52_bit_lpa_walk() {
        // va 0xfff0000012345678 with 64K pages, 52 bits: indexes 0, 0, 0x1234; offset 0x5678.
        let mut mem = FakeMem::default();
        for t in [0x10_0000, 0x20_0000, 0x30_0000] {
            mem.zero(t, 0x1_0000);
        }
        mem.set(0x10_0000, 0x20_0003);
        mem.set(0x20_0000, 0x30_0003);
        mem.set(
            0x30_0000 + 0x1234 * 8,
            0x0000_abcd_0001_0000 | (0xa << 12) | 0x743,
        );
        let form = PagingAarch64::form(16, 52, true).unwrap();
        let t = translate(&mem, &form, PhysAddr(0x10_0000), VirtAddr(0xfff0_0000_1234_5678)).unwrap();
        assert_eq!(t.pa, PhysAddr(0x000a_abcd_0001_5678));
        assert_eq!(t.page_size, 0x1_0000 - 0x5678);
    }

    #[test]
    fn lpa2_bits_decode_only_in_lpa2_form() {
        let desc = 0x0003_1234_5678_9000 | (0b10 << 8) | 0x403;
        let f52 = PagingAarch64::form(12, 52, true).unwrap();
        assert_eq!(
            decode_entry(&f52, desc, 0),
            Step::Leaf(PhysAddr(0x000b_1234_5678_9000))
        );
        // Without LPA2, bits [9:8] are shareability and bits [49:48] are not address bits.
        let f48 = PagingAarch64::form(12, 48, false).unwrap();
        assert_eq!(
            decode_entry(&f48, desc, 0),
            Step::Leaf(PhysAddr(0x0000_1234_5678_9000))
        );
        let f16 = PagingAarch64::form(14, 52, true).unwrap();
        assert_eq!(
            decode_entry(&f16, (desc & !3) | 0x301, 1),
            Step::Leaf(PhysAddr(0x000f_1234_5678_8000))
        );
    }

    #[test]
    fn reads_stop_at_page_ends() {
        let c = &CASES[5]; // 16K, 48-bit
        let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
        let mut b = builder(c);
        let va = 0xffff_0000_0800_0000u64;
        b.map(va, 0x4_0000, 0);
        b.map(va + 0x4000, 0xc_0000, 0);
        b.mem.write(0x4_3ffc, &[1, 2, 3, 4]);
        b.mem.write(0xc_0000, &[5, 6, 7, 8]);
        assert_eq!(
            read_virt(&b.mem, &form, PhysAddr(b.root), va + 0x3ffc, 8),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn corrupt_tables_give_errors_not_panics() {
        let mut mem = FakeMem::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..(0x2_0000 / 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let e = if i % 4 == 0 { (x & 0x1_f000) | 3 } else { x };
            mem.set(i * 8, e);
        }
        for c in &CASES {
            let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
            for i in 0..500u64 {
                let va = (u64::MAX << c.va_bits) | i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let _ = translate(&mem, &form, PhysAddr(0), VirtAddr(va));
                let _ = walk_steps(&mem, &form, PhysAddr(0x1_0000), VirtAddr(va)).to_string();
            }
        }
    }

    fn from_text(text: &str) -> Result<Paging, FormatError> {
        PagingAarch64::from_vmcoreinfo(&VmcoreInfo::parse(text.as_bytes()))
    }

    /// The kind and sentence of a VMCOREINFO that must not give paging.
    fn refused(text: &str) -> (FormatErrorKind, String) {
        match from_text(text) {
            Ok(p) => panic!("{text:?} gave {p:?}"),
            Err(e) => (e.kind, e.detail),
        }
    }

    #[test]
    fn from_vmcoreinfo_picks_geometry_and_root() {
        let base = "SYMBOL(swapper_pg_dir)=ffff800082d6c000\nNUMBER(kimage_voffset)=0xffff7fffc0000000\n";
        // 0xffff800082d6c000 - 0xffff7fffc0000000
        let root = PhysAddr(0xc2d6_c000);
        // (PAGESIZE, VA_BITS, TCR_EL1_T1SZ) -> (VA bits, levels, entry format).
        let cases = [
            // 4K, 48 bits.
            (4096, 48, "0x10", (48, 4, PteFormat::Aarch64)),
            // Configured 52 bits, running with 48 (no LPA2): T1SZ wins for 4K.
            (4096, 52, "16", (48, 4, PteFormat::Aarch64)),
            (16384, 52, "0xc", (52, 4, PteFormat::Aarch64Lpa2)),
            // 16K configured for 52 bits falls back to 47 without LPA2.
            (16384, 52, "0x11", (47, 3, PteFormat::Aarch64)),
            // 64K keeps VA_BITS geometry whatever T1SZ says.
            (65536, 52, "0x10", (52, 3, PteFormat::Aarch64Lpa)),
        ];
        for (page, va_bits, t1sz, want) in cases {
            let p = from_text(&format!(
                "{base}PAGESIZE={page}\nNUMBER(VA_BITS)={va_bits}\nNUMBER(TCR_EL1_T1SZ)={t1sz}\n"
            ))
            .unwrap();
            assert_eq!(p.root, root);
            assert_eq!(
                (p.form.va_bits, p.form.levels, p.form.pte),
                want,
                "{page} {va_bits} {t1sz}"
            );
        }
        // Old kernels without T1SZ.
        let p = from_text(&format!("{base}PAGESIZE=4096\nNUMBER(VA_BITS)=39\n")).unwrap();
        assert_eq!((p.form.va_bits, p.form.levels), (39, 3));
        // ... but not when the note is damaged where T1SZ may have been.
        let (kind, e) = refused(&format!(
            "{base}PAGESIZE=4096\nNUMBER(VA_BITS)=52\nNUMBER(TCR_EL1\x7f"
        ));
        assert_eq!(kind, FormatErrorKind::Corrupt);
        assert!(
            e.contains("corrupt: control byte 0x7f") && e.contains("lacks NUMBER(TCR_EL1_T1SZ)"),
            "{e}"
        );
        let e = PagingAarch64::from_vmcoreinfo(&VmcoreInfo::parse(
            b"PAGESIZE=4096\nNUMBER(VA_BITS)=48\nSYMBOL(swapper_pg_dir)=ffff8000\xff82d6c000\n",
        ))
        .unwrap_err();
        assert_eq!(e.kind, FormatErrorKind::Corrupt);
        let e = e.detail;
        assert!(
            e.contains("corrupt: byte 0xff") && e.contains("lacks SYMBOL(swapper_pg_dir)"),
            "{e}"
        );

        let (kind, e) = refused(&format!("{base}NUMBER(VA_BITS)=48\n"));
        assert!(
            kind == FormatErrorKind::Unsupported && e.contains("PAGESIZE"),
            "{e}"
        );
        let (kind, _) = refused(&format!("{base}PAGESIZE=8192\nNUMBER(VA_BITS)=48\n"));
        assert_eq!(kind, FormatErrorKind::Corrupt);
        let (kind, e) = refused(&format!("{base}PAGESIZE=4096\n"));
        assert!(
            kind == FormatErrorKind::Unsupported && e.contains("VA_BITS"),
            "{e}"
        );
        let (kind, _) = refused(&format!("{base}PAGESIZE=4096\nNUMBER(VA_BITS)=64\n"));
        assert_eq!(kind, FormatErrorKind::Corrupt);
        let (kind, _) = refused(&format!(
            "{base}PAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(TCR_EL1_T1SZ)=0x40\n"
        ));
        assert_eq!(kind, FormatErrorKind::Corrupt);
        let (kind, e) =
            refused("PAGESIZE=4096\nNUMBER(VA_BITS)=48\nSYMBOL(swapper_pg_dir)=ffff800082d6c000\n");
        assert!(
            kind == FormatErrorKind::Unsupported && e.contains("kimage_voffset"),
            "{e}"
        );
    }
}
