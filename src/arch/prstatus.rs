//! NT_PRSTATUS register sets -> GDB registers in the order of the target description
//! (`Arch::registers()`). The note layouts are the kernel's `struct elf_prstatus` with `pr_reg`
//! at offset 112 on both arches (drgn `pr_reg_offset`; libkdumpfile `elf_prstatus`).

use crate::arch::Arch;
use crate::target::Registers;

/// Offset of `pr_reg` in a 64-bit `struct elf_prstatus` (both x86_64 and aarch64).
pub const PR_REG_OFFSET: usize = 112;

/// x86_64 `pr_reg` is `struct user_regs_struct` (arch/x86/include/asm/user_64.h): 27 u64s in
/// this order, mapped to the GDB register names of x86_64.xml.
const X86_64_PR_REG: [&str; 27] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
    "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
];

/// aarch64 `pr_reg` is `struct user_pt_regs` (arch/arm64/include/uapi/asm/ptrace.h): x0..x30,
/// sp, pc, pstate; GDB calls pstate `cpsr` (32 bits).
const AARCH64_PR_REG: [&str; 34] = [
    "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14", "x15",
    "x16", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30",
    "sp", "pc", "cpsr",
];

/// Number of u64s in `pr_reg` for an arch.
pub fn pr_reg_len(arch: Arch) -> usize {
    match arch {
        Arch::X86_64 => X86_64_PR_REG.len(),
        Arch::Aarch64 => AARCH64_PR_REG.len(),
    }
}

/// Maps a `pr_reg` array (already decoded to u64s) to GDB registers. Registers the note does not
/// carry (x87/SSE, aarch64 FP/SIMD) are `None`; values of registers narrower than 64 bits in the
/// target description (eflags, segment selectors, cpsr) keep their low bits only.
pub fn registers_from_pr_reg(arch: Arch, pr_reg: &[u64]) -> Result<Registers, String> {
    let names: &[&str] = match arch {
        Arch::X86_64 => &X86_64_PR_REG,
        Arch::Aarch64 => &AARCH64_PR_REG,
    };
    if pr_reg.len() < names.len() {
        return Err(format!(
            "the {arch} NT_PRSTATUS note holds {} registers where {} are expected; the dump is corrupt",
            pr_reg.len(),
            names.len()
        ));
    }
    let descs = arch.registers();
    let mut regs = vec![None; descs.len()];
    for (name, value) in names.iter().zip(pr_reg) {
        let Some(i) = arch.reg_index(name) else { continue };
        let bits = descs.get(i).map(|d| d.bits).unwrap_or(64);
        let value = if bits < 64 {
            value & ((1u64 << bits) - 1)
        } else {
            *value
        };
        if let Some(slot) = regs.get_mut(i) {
            *slot = Some(value);
        }
    }
    Ok(Registers(regs))
}

/// Maps the descriptor of an NT_PRSTATUS note (little-endian, as both arches are) to GDB
/// registers. Bounds-checked: a short note is an error, never a panic.
pub fn registers_from_prstatus(arch: Arch, desc: &[u8]) -> Result<Registers, String> {
    let n = pr_reg_len(arch);
    let bytes = PR_REG_OFFSET
        .checked_add(n * 8)
        .and_then(|end| desc.get(PR_REG_OFFSET..end))
        .ok_or_else(|| {
            format!(
                "an {arch} NT_PRSTATUS note is {} bytes, too short for its {n} registers; the dump is corrupt",
                desc.len()
            )
        })?;
    let pr_reg: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect();
    registers_from_pr_reg(arch, &pr_reg)
}

/// `pr_pid` (the task on that CPU; 0 = idle) at offset 32 of the note descriptor.
pub fn prstatus_pid(desc: &[u8]) -> Option<i32> {
    let b: [u8; 4] = desc.get(32..36)?.try_into().ok()?;
    Some(i32::from_le_bytes(b))
}
