//! ELF notes of a vmcore (PT_NOTE segments, or the kdump header's `offset_note` blob): one
//! `CORE`/NT_PRSTATUS per CPU, the `VMCOREINFO` text, and QEMU's per-CPU `QEMU` state on x86.

use crate::arch::prstatus::{PR_PID_OFFSET, PR_REG_OFFSET};
use crate::arch::Arch;
use crate::mem::bytes::{Bytes, Endian, FormatError};

/// `n_type` of `struct elf_prstatus` notes (`include/uapi/linux/elf.h`).
pub const NT_PRSTATUS: u32 = 1;

/// Notes are an ELF format; the walk lives in mem/elf.rs so live/ and kernel/ share it.
pub use crate::mem::elf::{parse_notes, Note};

/// Registers saved for one CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuState {
    /// `pr_pid`: the task running on the CPU (0 = idle).
    pub pid: i32,
    /// `pr_reg` in NT_PRSTATUS order: x86_64 27 values (r15, r14, … gs), aarch64 34 (x0–x30, sp,
    /// pc, pstate).
    pub regs: Vec<u64>,
    /// From QEMU's x86 CPU state note, when present.
    pub cr3: Option<u64>,
    pub cr4: Option<u64>,
}

impl CpuState {
    /// The saved registers in the order of `arch`'s GDB target description; registers a dump
    /// does not save (FPU, vector) are `None`.
    pub fn gdb_registers(&self, arch: Arch) -> Result<crate::arch::Registers, FormatError> {
        crate::arch::prstatus::registers_from_pr_reg(arch, &self.regs)
    }
}

/// What the notes say, interpreted.
#[derive(Debug, Clone, Default)]
pub struct NoteInfo {
    pub cpus: Vec<CpuState>,
    pub vmcoreinfo: Option<Vec<u8>>,
    /// Arch guessed from the NT_PRSTATUS size, for formats without e_machine.
    pub prstatus_arch: Option<Arch>,
}

/// Number of `pr_reg` values in a 64-bit `elf_prstatus` of `arch`.
pub fn prstatus_reg_count(arch: Arch) -> usize {
    crate::arch::prstatus::pr_reg_len(arch)
}

/// Interprets notes. `arch` is the dump's architecture when the container says it (ELF
/// e_machine); otherwise it is guessed from the first NT_PRSTATUS size.
pub fn interpret(notes: &[Note<'_>], endian: Endian, arch: Option<Arch>) -> NoteInfo {
    let mut info = NoteInfo::default();
    let prstatus = |n: &Note<'_>| n.name == b"CORE" && n.n_type == NT_PRSTATUS;
    info.prstatus_arch = notes
        .iter()
        .find(|n| prstatus(n))
        .and_then(|n| Arch::from_prstatus_size(n.desc.len()));
    let arch = arch.or(info.prstatus_arch);
    let mut qemu_states = Vec::new();
    for n in notes {
        if prstatus(n) {
            let Some(arch) = arch else {
                log::warn!(
                    "cannot tell the architecture of a {}-byte NT_PRSTATUS note; registers unavailable",
                    n.desc.len()
                );
                continue;
            };
            let b = Bytes::new(n.desc, endian, "NT_PRSTATUS note");
            let pid = b.i32(PR_PID_OFFSET, "pr_pid");
            let regs: Result<Vec<u64>, _> = (0..prstatus_reg_count(arch))
                .map(|i| b.u64(PR_REG_OFFSET + 8 * i, "pr_reg"))
                .collect();
            match (pid, regs) {
                (Ok(pid), Ok(regs)) => info.cpus.push(CpuState {
                    pid,
                    regs,
                    cr3: None,
                    cr4: None,
                }),
                (Err(e), _) | (_, Err(e)) => log::warn!("skipping CPU {}: {e}", info.cpus.len()),
            }
        } else if n.name == b"VMCOREINFO" {
            if info.vmcoreinfo.is_none() {
                info.vmcoreinfo = Some(n.desc.to_vec());
            }
        } else if let (b"QEMU", Some((cr3, cr4))) = (n.name, arch.and_then(Arch::qemu_cpu_state_cr3_cr4)) {
            // The i-th QEMU note belongs to the i-th CPU: QEMU (10.0 `dump/dump.c`
            // `write_elf64_notes`) writes every CPU's NT_PRSTATUS first, then every CPU's
            // QEMUCPUState; counting also works if a writer interleaves them.
            let b = Bytes::new(n.desc, endian, "QEMU CPU state note");
            qemu_states.push((b.u64(cr3, "cr3").ok(), b.u64(cr4, "cr4").ok()));
        }
        // NT_PRFPREG and anything else: not needed for a read-only GDB view.
    }
    for (cpu, (cr3, cr4)) in info.cpus.iter_mut().zip(qemu_states) {
        cpu.cr3 = cr3;
        cpu.cr4 = cr4;
    }
    info
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dump::testutil::*;

    /// Builds one note the way the kernel does (little-endian).
    pub(crate) fn note(name: &str, n_type: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        let name_bytes: Vec<u8> = name.bytes().chain([0]).collect();
        v.extend_from_slice(&(name_bytes.len() as u32).to_le_bytes());
        v.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        v.extend_from_slice(&n_type.to_le_bytes());
        v.extend_from_slice(&name_bytes);
        v.resize(v.len().next_multiple_of(4), 0);
        v.extend_from_slice(desc);
        v.resize(v.len().next_multiple_of(4), 0);
        v
    }

    /// An `elf_prstatus` of `arch` with `pid` and registers base, base+1, ...
    pub(crate) fn prstatus(arch: Arch, pid: i32, base: u64) -> Vec<u8> {
        let len = match arch {
            Arch::X86_64 => 336,
            Arch::Aarch64 => 392,
        };
        let mut d = vec![0u8; len];
        put(&mut d, PR_PID_OFFSET, &pid.to_le_bytes());
        for i in 0..prstatus_reg_count(arch) {
            put_u64(&mut d, PR_REG_OFFSET + 8 * i, base + i as u64);
        }
        d
    }

    pub(crate) fn qemu_cpu_state(cr3: u64, cr4: u64) -> Vec<u8> {
        let mut d = vec![0u8; 440];
        put_u32(&mut d, 0, 1);
        put_u32(&mut d, 4, 440);
        put_u64(&mut d, crate::arch::x86_64::QEMU_CPU_STATE_CR3, cr3);
        put_u64(&mut d, crate::arch::x86_64::QEMU_CPU_STATE_CR4, cr4);
        d
    }

    #[test]
    fn x86_notes_give_cpus_registers_control_registers_and_vmcoreinfo() {
        let mut blob = note("CORE", 1, &prstatus(Arch::X86_64, 0, 100));
        blob.extend(note("QEMU", 0, &qemu_cpu_state(0x1234_5000, 0x3506f0)));
        blob.extend(note("CORE", 1, &prstatus(Arch::X86_64, 42, 200)));
        blob.extend(note("CORE", 2, &[0u8; 512])); // NT_PRFPREG: ignored
        blob.extend(note("VMCOREINFO", 0, b"OSRELEASE=6.1.0\n"));
        blob.extend([0u8; 12]); // the kernel's final empty note
        let notes = parse_notes(&blob, Endian::Little);
        assert_eq!(notes.len(), 5);
        let info = interpret(&notes, Endian::Little, None);
        assert_eq!(info.prstatus_arch, Some(Arch::X86_64));
        assert_eq!(info.cpus.len(), 2);
        let (c0, c1) = (&info.cpus.first(), &info.cpus.get(1));
        assert_eq!(c0.map(|c| c.pid), Some(0));
        assert_eq!(c0.map(|c| c.regs.len()), Some(27));
        assert_eq!(
            c0.and_then(|c| c.regs.get(16).copied()),
            Some(116),
            "rip is pr_reg[16]"
        );
        assert_eq!(c0.and_then(|c| c.cr3), Some(0x1234_5000));
        assert_eq!(c0.and_then(|c| c.cr4), Some(0x3506f0));
        assert_eq!(c1.map(|c| c.pid), Some(42));
        assert_eq!(c1.and_then(|c| c.regs.get(26).copied()), Some(226));
        assert_eq!(c1.and_then(|c| c.cr3), None);
        assert_eq!(info.vmcoreinfo.as_deref(), Some(&b"OSRELEASE=6.1.0\n"[..]));
    }

    #[test]
    fn gdb_register_order_maps_every_saved_register_by_name() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let blob = note("CORE", 1, &prstatus(arch, 1, 0x1000));
            let info = interpret(&parse_notes(&blob, Endian::Little), Endian::Little, Some(arch));
            let Some(cpu) = info.cpus.first() else {
                panic!("no CPU")
            };
            let regs = cpu.gdb_registers(arch).expect("full note").0;
            assert_eq!(regs.len(), arch.registers().len());
            let names = crate::arch::prstatus::pr_reg_names(arch);
            assert_eq!(names.len(), prstatus_reg_count(arch));
            for (slot, name) in names.iter().enumerate() {
                let idx = arch.reg_index(name);
                assert!(idx.is_some(), "{name} is not in the {arch} target description");
                let bits = idx.and_then(|i| arch.registers().get(i)).map_or(64, |d| d.bits);
                let want = (0x1000 + slot as u64) & if bits < 64 { (1u64 << bits) - 1 } else { u64::MAX };
                assert_eq!(
                    idx.and_then(|i| regs.get(i).copied().flatten()),
                    Some(want),
                    "{arch} {name}"
                );
            }
            assert_eq!(
                regs.iter().filter(|r| r.is_some()).count(),
                names.len(),
                "{arch}: the rest unavailable"
            );
        }
        let x86 = Arch::X86_64;
        let blob = note("CORE", 1, &prstatus(x86, 1, 0));
        let info = interpret(&parse_notes(&blob, Endian::Little), Endian::Little, Some(x86));
        let regs = info
            .cpus
            .first()
            .and_then(|c| c.gdb_registers(x86).ok())
            .map(|r| r.0)
            .unwrap_or_default();
        assert_eq!(
            x86.reg_index("rip").and_then(|i| regs.get(i).copied().flatten()),
            Some(16)
        );
        assert_eq!(
            x86.reg_index("rax").and_then(|i| regs.get(i).copied().flatten()),
            Some(10)
        );
    }

    #[test]
    fn qemu_notes_after_all_prstatus_notes_go_to_cpus_in_order() {
        // QEMU's real layout: CORE, CORE, QEMU, QEMU (then VMCOREINFO).
        let mut blob = note("CORE", 1, &prstatus(Arch::X86_64, 1, 0));
        blob.extend(note("CORE", 1, &prstatus(Arch::X86_64, 2, 0)));
        blob.extend(note("QEMU", 0, &qemu_cpu_state(0xa000, 0x20)));
        blob.extend(note("QEMU", 0, &qemu_cpu_state(0xb000, 0x1020)));
        let info = interpret(&parse_notes(&blob, Endian::Little), Endian::Little, None);
        let got: Vec<(Option<u64>, Option<u64>)> = info.cpus.iter().map(|c| (c.cr3, c.cr4)).collect();
        assert_eq!(
            got,
            vec![(Some(0xa000), Some(0x20)), (Some(0xb000), Some(0x1020))]
        );
    }

    #[test]
    fn aarch64_prstatus_has_34_registers() {
        let blob = note("CORE", 1, &prstatus(Arch::Aarch64, 7, 0));
        let info = interpret(&parse_notes(&blob, Endian::Little), Endian::Little, None);
        assert_eq!(info.prstatus_arch, Some(Arch::Aarch64));
        assert_eq!(info.cpus.len(), 1);
        let c0 = info.cpus.first();
        assert_eq!(c0.map(|c| c.regs.len()), Some(34));
        assert_eq!(
            c0.and_then(|c| c.regs.get(32).copied()),
            Some(32),
            "pc is pr_reg[32]"
        );
        // The container's arch wins over the size guess; a too-short note is skipped.
        let info = interpret(
            &parse_notes(&blob, Endian::Little),
            Endian::Little,
            Some(Arch::X86_64),
        );
        assert_eq!(info.cpus.first().map(|c| c.regs.len()), Some(27));
        let short = note("CORE", 1, &[0u8; 200]);
        let info = interpret(
            &parse_notes(&short, Endian::Little),
            Endian::Little,
            Some(Arch::Aarch64),
        );
        assert!(info.cpus.is_empty());
    }

    #[test]
    fn truncated_and_corrupt_notes_keep_the_good_prefix() {
        let mut blob = note("CORE", 1, &prstatus(Arch::X86_64, 1, 0));
        let good = blob.len();
        blob.extend(note("VMCOREINFO", 0, b"PAGESIZE=4096\n"));
        for cut in 0..blob.len() {
            let notes = parse_notes(blob.get(..cut).unwrap_or_default(), Endian::Little);
            // The second note is whole once its unpadded desc is: 12-byte header, 12-byte
            // padded name, 14 bytes of text.
            let second_end = good + 12 + 12 + 14;
            assert_eq!(
                notes.len(),
                usize::from(cut >= good) + usize::from(cut >= second_end),
                "cut {cut}"
            );
        }
        let mut huge = blob.clone();
        put_u32(&mut huge, good + 4, u32::MAX);
        assert_eq!(parse_notes(&huge, Endian::Little).len(), 1);
    }
}
