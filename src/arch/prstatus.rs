//! NT_PRSTATUS register sets -> GDB registers in the order of the target description
//! (`Arch::registers()`). The note layouts are the kernel's `struct elf_prstatus` with `pr_reg`
//! at offset 112 on both arches (drgn `pr_reg_offset`; libkdumpfile `elf_prstatus`).

use crate::arch::{Arch, Registers};
use crate::mem::bytes::FormatError;

/// Offset of `pr_reg` in a 64-bit `struct elf_prstatus` (both x86_64 and aarch64).
pub const PR_REG_OFFSET: usize = 112;
/// Offset of `pr_pid` in a 64-bit `struct elf_prstatus`.
pub const PR_PID_OFFSET: usize = 32;

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

/// Names of the `pr_reg` slots in NT_PRSTATUS order, as GDB names the registers.
pub fn pr_reg_names(arch: Arch) -> &'static [&'static str] {
    match arch {
        Arch::X86_64 => &X86_64_PR_REG,
        Arch::Aarch64 => &AARCH64_PR_REG,
    }
}

/// Maps a `pr_reg` array (already decoded to u64s) to GDB registers. Registers the note does not
/// carry (x87/SSE, aarch64 FP/SIMD) are `None`; values of registers narrower than 64 bits in the
/// target description (eflags, segment selectors, cpsr) keep their low bits only.
pub fn registers_from_pr_reg(arch: Arch, pr_reg: &[u64]) -> Result<Registers, FormatError> {
    let names = pr_reg_names(arch);
    if pr_reg.len() < names.len() {
        return Err(FormatError::corrupt(format!(
            "the {arch} NT_PRSTATUS note holds {} registers where {} are expected; the dump is corrupt",
            pr_reg.len(),
            names.len()
        )));
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
pub fn registers_from_prstatus(arch: Arch, desc: &[u8]) -> Result<Registers, FormatError> {
    let n = pr_reg_len(arch);
    let bytes = PR_REG_OFFSET
        .checked_add(n * 8)
        .and_then(|end| desc.get(PR_REG_OFFSET..end))
        .ok_or_else(|| {
            FormatError::corrupt(format!(
                "an {arch} NT_PRSTATUS note is {} bytes, too short for its {n} registers; the dump is corrupt",
                desc.len()
            ))
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
    let b: [u8; 4] = desc.get(PR_PID_OFFSET..PR_PID_OFFSET + 4)?.try_into().ok()?;
    Some(i32::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An NT_PRSTATUS descriptor with `pr_pid` and pr_reg[i] = values[i].
    fn note(size: usize, pid: i32, values: &[u64]) -> Vec<u8> {
        let mut d = vec![0u8; size];
        d[32..36].copy_from_slice(&pid.to_le_bytes());
        for (i, v) in values.iter().enumerate() {
            d[112 + 8 * i..120 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
        d
    }

    #[test]
    fn x86_64_prstatus_maps_to_gdb_order() {
        let vals: Vec<u64> = (0..27u64)
            .map(|i| 0x1111_0000_0000_0000 | (i << 8) | 0xaa)
            .collect();
        // 336 bytes: the x86_64 elf_prstatus size.
        let d = note(336, 42, &vals);
        assert_eq!(prstatus_pid(&d), Some(42));
        let r = Arch::X86_64.registers_from_prstatus(&d).unwrap();
        assert_eq!(r.0.len(), Arch::X86_64.registers().len());
        let get = |name: &str| r.0[Arch::X86_64.reg_index(name).unwrap()];
        // user_regs_struct order: r15=0 .. rax=10, rcx=11, rdx=12, rsi=13, rdi=14, orig_rax=15,
        // rip=16, cs=17, eflags=18, rsp=19, ss=20, fs_base=21, gs_base=22, ds..gs=23..26.
        assert_eq!(get("rax"), Some(vals[10]));
        assert_eq!(get("rbx"), Some(vals[5]));
        assert_eq!(get("rsp"), Some(vals[19]));
        assert_eq!(get("r15"), Some(vals[0]));
        assert_eq!(get("rip"), Some(vals[16]));
        assert_eq!(r.0[16], Some(vals[16]), "rip is GDB register 16");
        assert_eq!(get("eflags"), Some(vals[18] & 0xffff_ffff));
        assert_eq!(get("cs"), Some(vals[17] & 0xffff_ffff));
        assert_eq!(get("gs"), Some(vals[26] & 0xffff_ffff));
        assert_eq!(get("orig_rax"), Some(vals[15]));
        assert_eq!(get("fs_base"), Some(vals[21]));
        assert_eq!(get("gs_base"), Some(vals[22]));
        assert_eq!(get("st0"), None);
        assert_eq!(get("xmm15"), None);
        assert_eq!(get("mxcsr"), None);
        assert_eq!(r.0.iter().filter(|v| v.is_some()).count(), 27);
    }

    #[test]
    fn aarch64_prstatus_maps_to_gdb_order() {
        let vals: Vec<u64> = (0..34u64).map(|i| 0xffff_8000_0000_0000 | (i << 4)).collect();
        // 392 bytes: QEMU's QEMU_BUILD_BUG_ON(sizeof(struct aarch64_elf_prstatus) != 392).
        let d = note(392, 0, &vals);
        let r = Arch::Aarch64.registers_from_prstatus(&d).unwrap();
        assert_eq!(r.0.len(), Arch::Aarch64.registers().len());
        let x: Vec<Option<u64>> = vals[..31].iter().copied().map(Some).collect();
        assert_eq!(r.0[..31], x[..], "x0..x30");
        assert_eq!(r.0[31], Some(vals[31]), "sp");
        assert_eq!(r.0[32], Some(vals[32]), "pc");
        assert_eq!(r.0[33], Some(vals[33] & 0xffff_ffff), "cpsr");
        assert!(r.0[34..].iter().all(Option::is_none), "no FP/SIMD in NT_PRSTATUS");
    }

    #[test]
    fn short_notes_are_errors() {
        let e = Arch::X86_64.registers_from_prstatus(&[0; 327]).unwrap_err();
        assert!(e.detail.contains("too short"), "{e}");
        assert_eq!(e.kind, crate::mem::bytes::FormatErrorKind::Corrupt);
        assert!(Arch::X86_64.registers_from_prstatus(&[0; 328]).is_ok());
        assert!(Arch::Aarch64.registers_from_prstatus(&[0; 383]).is_err());
        assert!(Arch::Aarch64.registers_from_prstatus(&[]).is_err());
        let e = registers_from_pr_reg(Arch::Aarch64, &[0; 33]).err();
        assert_eq!(
            e.map(|e| e.kind),
            Some(crate::mem::bytes::FormatErrorKind::Corrupt)
        );
        assert_eq!(prstatus_pid(&[0; 35]), None);
    }
}
