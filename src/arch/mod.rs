//! Architectures kmemd serves. The dump's architecture decides, not the host's, so one binary
//! serves x86_64 and aarch64 kernels alike: everything per-arch hangs off `Arch`.

pub mod aarch64;
pub mod prstatus;
pub mod walk;
#[allow(non_upper_case_globals)]
pub mod x86_64;

use crate::target::Registers;
use std::fmt;
use std::sync::OnceLock;
use walk::Paging;

/// A kernel architecture kmemd understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// One register of a target description, in `g` packet order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegDesc {
    pub name: String,
    pub bits: u32,
}

impl RegDesc {
    pub fn bytes(&self) -> usize {
        (self.bits as usize).div_ceil(8)
    }
}

const X86_64_XML: &str = include_str!("x86_64.xml");
const AARCH64_XML: &str = include_str!("aarch64.xml");

impl Arch {
    /// The architecture kmemd itself was built for (what a live kernel is).
    pub fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Aarch64
        } else {
            Arch::X86_64
        }
    }

    /// ELF `e_machine` of this architecture: EM_X86_64 62, EM_AARCH64 183 (include/uapi/linux/elf-em.h).
    pub fn elf_machine(self) -> u16 {
        match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        }
    }

    /// The architecture of an ELF file's `e_machine`, for vmcores and vmlinux alike; `None` for
    /// machines kmemd does not serve.
    pub fn from_elf_machine(machine: u16) -> Option<Arch> {
        [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .find(|a| a.elf_machine() == machine)
    }

    /// Name as used on the command line, in ELF e_machine terms and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// GDB target description (`qXfer:features:read:target.xml`).
    pub fn target_xml(self) -> &'static str {
        match self {
            Arch::X86_64 => X86_64_XML,
            Arch::Aarch64 => AARCH64_XML,
        }
    }

    /// Registers of the target description, in `g` packet order. Derived from the XML itself so
    /// the two can never disagree.
    pub fn registers(self) -> &'static [RegDesc] {
        static X86: OnceLock<Vec<RegDesc>> = OnceLock::new();
        static ARM: OnceLock<Vec<RegDesc>> = OnceLock::new();
        let cell = match self {
            Arch::X86_64 => &X86,
            Arch::Aarch64 => &ARM,
        };
        cell.get_or_init(|| parse_reg_descs(self.target_xml()))
    }

    /// Index of a register by name in `registers()`.
    pub fn reg_index(self, name: &str) -> Option<usize> {
        self.registers().iter().position(|r| r.name == name)
    }

    /// Index of the program counter register.
    pub fn pc_index(self) -> usize {
        let name = match self {
            Arch::X86_64 => "rip",
            Arch::Aarch64 => "pc",
        };
        self.reg_index(name).unwrap_or(0)
    }

    /// Start of the kernel half of the address space: addresses below it are never kernel ones.
    /// (x86_64: canonical upper half with 4- or 5-level paging; aarch64: TTBR1 range, which
    /// begins at or above this for every VA_BITS from 39 to 52.)
    pub fn kernel_space_start(self) -> u64 {
        match self {
            Arch::X86_64 => 0xff00_0000_0000_0000,
            Arch::Aarch64 => 0xfff0_0000_0000_0000,
        }
    }

    /// Whether a perf wake-up per hardware-breakpoint sample is safe. arm64 takes a watchpoint
    /// before the access; Linux then disables it and single-steps the instruction
    /// (arch/arm64/kernel/hw_breakpoint.c, watchpoint_handler -> kernel_enable_single_step). A
    /// per-sample wake-up queues irq_work, whose self-IPI is already pending at that return: the
    /// IRQ is taken first, its handler unmasks debug exceptions, the step exception fires there
    /// without having stepped, reinstall_suspended_bps re-arms the watchpoint, and the same
    /// instruction traps again until the ring is full (measured in the kernel lab on Debian's
    /// 6.1 arm64 kernel: one write, 2048 traps with a 16-page ring; exact without wake-ups). x86
    /// traps after the access and steps nothing.
    pub fn wake_per_breakpoint_sample(self) -> bool {
        match self {
            Arch::X86_64 => true,
            Arch::Aarch64 => false,
        }
    }

    /// Link-time address of `_text` in a default build, used for the KASLR slide when no vmlinux
    /// is given (x86_64: `__START_KERNEL` with the default CONFIG_PHYSICAL_START of 16 MiB;
    /// arm64: KIMAGE_VADDR since Linux 5.4 with 48-bit VA).
    pub fn default_text_link_addr(self) -> u64 {
        match self {
            Arch::X86_64 => 0xffff_ffff_8100_0000,
            Arch::Aarch64 => 0xffff_8000_0800_0000,
        }
    }

    /// The kernel page tables (form and top table) described by a dump's raw VMCOREINFO text.
    pub fn paging_from_vmcoreinfo(self, vmcoreinfo: &str) -> Result<Paging, String> {
        match self {
            Arch::X86_64 => x86_64::PagingX86_64::from_vmcoreinfo(vmcoreinfo),
            Arch::Aarch64 => aarch64::PagingAarch64::from_vmcoreinfo(vmcoreinfo),
        }
    }

    /// Registers of one CPU from the descriptor of its NT_PRSTATUS note.
    pub fn registers_from_prstatus(self, desc: &[u8]) -> Result<Registers, String> {
        prstatus::registers_from_prstatus(self, desc)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Extracts `<reg name=".." bitsize="..">` entries in document order.
fn parse_reg_descs(xml: &str) -> Vec<RegDesc> {
    let attr = |tag: &str, key: &str| -> Option<String> {
        let start = tag.find(&format!(" {key}=\""))? + key.len() + 3;
        let len = tag[start..].find('"')?;
        Some(tag[start..start + len].to_string())
    };
    xml.split("<reg ")
        .skip(1)
        .filter_map(|rest| {
            let tag = &rest[..rest.find('>')?];
            let tag = format!(" {tag}");
            Some(RegDesc {
                name: attr(&tag, "name")?,
                bits: attr(&tag, "bitsize")?.parse().ok()?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_machines_map_both_ways() {
        // include/uapi/linux/elf-em.h: EM_X86_64 62, EM_AARCH64 183; EM_386 3 is not served.
        assert_eq!(Arch::from_elf_machine(62), Some(Arch::X86_64));
        assert_eq!(Arch::from_elf_machine(183), Some(Arch::Aarch64));
        assert_eq!(Arch::from_elf_machine(3), None);
        for a in [Arch::X86_64, Arch::Aarch64] {
            assert_eq!(Arch::from_elf_machine(a.elf_machine()), Some(a));
        }
    }

    #[test]
    fn x86_64_register_table_matches_gdb_layout() {
        let regs = Arch::X86_64.registers();
        assert_eq!(regs.len(), 60);
        assert_eq!(regs[0].name, "rax");
        assert_eq!(regs[16].name, "rip");
        assert_eq!(regs[17].bits, 32);
        assert_eq!(regs[40].name, "xmm0");
        assert_eq!(regs[57].name, "orig_rax");
        assert_eq!(regs[59].name, "gs_base");
        let total: usize = regs.iter().map(RegDesc::bytes).sum();
        assert_eq!(total, 560, "core+sse+linux+segments is 560 bytes");
        assert_eq!(Arch::X86_64.pc_index(), 16);
    }

    #[test]
    fn aarch64_register_table_matches_gdb_layout() {
        let regs = Arch::Aarch64.registers();
        assert_eq!(regs.len(), 68);
        assert_eq!(regs[31].name, "sp");
        assert_eq!(regs[32].name, "pc");
        assert_eq!(regs[33].bits, 32);
        assert_eq!(regs[34].name, "v0");
        let total: usize = regs.iter().map(RegDesc::bytes).sum();
        assert_eq!(total, 788, "core+fpu is 788 bytes");
        assert_eq!(Arch::Aarch64.pc_index(), 32);
    }
}
