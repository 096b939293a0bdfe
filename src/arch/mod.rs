//! Architectures kmemd serves. The dump's architecture decides, not the host's, so one binary
//! serves x86_64 and aarch64 kernels alike: everything per-arch hangs off `Arch`.

pub mod a64store;
pub mod aarch64;
pub mod prstatus;
pub mod walk;
#[allow(non_upper_case_globals)]
pub mod x86_64;

use crate::mem::bytes::FormatError;
use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{MemError, VirtRead};
use std::fmt;
use std::sync::OnceLock;
use walk::Paging;

/// A kernel architecture kmemd understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// Register values in the order of the target description of an architecture
/// (`Arch::registers()`). `None` means unavailable and is sent to GDB as `xx` bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registers(pub Vec<Option<u64>>);

impl Registers {
    /// Sets register `i`, growing the list to it (a dump's notes give only the core registers).
    pub fn set(&mut self, i: usize, value: Option<u64>) {
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        if let Some(r) = self.0.get_mut(i) {
            *r = value;
        }
    }
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

/// Where the kernel saves a switched-out task's registers, as BTF member names mapped to GDB
/// register names. Each architecture's file names the kernel source of its layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchFrame {
    /// `thread.<sp_member>` points at a `struct <frame_struct>` on the task's stack holding
    /// `members`; once the switch pops it, the stack pointer is the frame's end.
    OnStack {
        sp_member: &'static str,
        frame_struct: &'static str,
        members: &'static [(&'static str, &'static str)],
    },
    /// `thread.<member>`, a `struct <strukt>`, holds `members`; `copies` are registers that hold
    /// the same value as another one when the task resumes (register, copied from).
    InThread {
        member: &'static str,
        strukt: &'static str,
        members: &'static [(&'static str, &'static str)],
        copies: &'static [(&'static str, &'static str)],
    },
}

/// Where `struct pt_regs` (the user registers at the top of a task's kernel stack) keeps each
/// GDB register: an array member of consecutive u64s, then single members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtRegs {
    pub array: Option<(&'static str, &'static [&'static str])>,
    pub members: &'static [(&'static str, &'static str)],
}

/// What a CPU's hardware watchpoints allow, checked before the kernel is asked.
#[derive(Debug, Clone, Copy)]
pub struct DebugRegs {
    /// Watchpoints one CPU holds at once, when user space can know it.
    pub slots: Option<usize>,
    /// Why a watchpoint cannot trap reads alone, on a CPU where it cannot.
    pub no_read_only: Option<&'static str>,
    /// The one length an execute breakpoint takes, and why.
    pub exec_len: u8,
    pub exec_len_why: &'static str,
    /// The alignment an execute breakpoint's address needs (the instruction alignment).
    pub exec_align: u64,
    /// Whether a data watchpoint of `len` bytes can sit at `addr`.
    pub data_aligned: fn(addr: u64, len: u8) -> bool,
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
            Arch::X86_64 => x86_64::PC,
            Arch::Aarch64 => aarch64::PC,
        };
        self.reg_index(name).unwrap_or(0)
    }

    /// Index of the register that holds the running task's address in kernel mode, where the
    /// architecture has one (arm64's SP_EL0; x86_64 keeps `current` in per-CPU memory).
    pub fn current_task_index(self) -> Option<usize> {
        match self {
            Arch::X86_64 => None,
            Arch::Aarch64 => self.reg_index(aarch64::CURRENT_TASK),
        }
    }

    /// Sets the pointer authentication mask registers, where the architecture has them, to
    /// `mask` (VMCOREINFO's KERNELPACMASK; 0 when the kernel does not record one).
    pub fn set_pac_mask(self, regs: &mut Registers, mask: u64) {
        if self == Arch::Aarch64 {
            for name in aarch64::PAUTH_MASKS {
                if let Some(i) = self.reg_index(name) {
                    regs.set(i, Some(mask));
                }
            }
        }
    }

    /// Index of the stack pointer register.
    pub fn sp_index(self) -> Option<usize> {
        self.reg_index(match self {
            Arch::X86_64 => x86_64::SP,
            Arch::Aarch64 => aarch64::SP,
        })
    }

    /// The architecture a kdump header's `utsname.machine` names.
    pub fn from_machine_name(name: &str) -> Option<Arch> {
        if x86_64::MACHINE_NAMES.contains(&name) {
            Some(Arch::X86_64)
        } else if aarch64::MACHINE_NAMES.contains(&name) {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The architecture from VMCOREINFO keys that only one architecture's kernels write.
    pub fn from_vmcoreinfo(v: &VmcoreInfo) -> Option<Arch> {
        if x86_64::vmcoreinfo_is_ours(v) {
            Some(Arch::X86_64)
        } else if aarch64::vmcoreinfo_is_ours(v) {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// The architecture whose whole `struct elf_prstatus` is `len` bytes (the two differ).
    pub fn from_prstatus_size(len: usize) -> Option<Arch> {
        [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .find(|a| a.prstatus_size() == len)
    }

    /// Size of a 64-bit `struct elf_prstatus`.
    pub fn prstatus_size(self) -> usize {
        match self {
            Arch::X86_64 => x86_64::PRSTATUS_SIZE,
            Arch::Aarch64 => aarch64::PRSTATUS_SIZE,
        }
    }

    /// Offsets of cr3 and cr4 in QEMU's per-CPU `QEMU` note, on the architecture that has one.
    pub fn qemu_cpu_state_cr3_cr4(self) -> Option<(usize, usize)> {
        match self {
            Arch::X86_64 => Some((x86_64::QEMU_CPU_STATE_CR3, x86_64::QEMU_CPU_STATE_CR4)),
            Arch::Aarch64 => None,
        }
    }

    /// `_stext - _text` in the architecture's default layout.
    pub fn head_size(self) -> u64 {
        match self {
            Arch::X86_64 => x86_64::HEAD_SIZE,
            Arch::Aarch64 => aarch64::HEAD_SIZE,
        }
    }

    /// Whether the kernel links per-CPU variables from address 0, so that KASLR does not move
    /// them (GDB must not relocate `.data..percpu`).
    pub fn percpu_at_zero(self) -> bool {
        match self {
            Arch::X86_64 => x86_64::PERCPU_AT_ZERO,
            Arch::Aarch64 => aarch64::PERCPU_AT_ZERO,
        }
    }

    /// Physical address of a kernel-image (not direct-map) virtual address, from VMCOREINFO.
    pub fn image_phys(self, va: u64, v: &VmcoreInfo) -> Option<u64> {
        match self {
            Arch::X86_64 => x86_64::image_phys(va, v),
            Arch::Aarch64 => aarch64::image_phys(va, v),
        }
    }

    /// Direct-map base candidates without a hint from memory, most likely first: (base,
    /// number of 1 GiB steps above it that randomization may have added). `ram_start` is the
    /// first RAM's physical address when known.
    pub fn direct_map_candidates(self, ram_start: Option<u64>) -> Vec<(u64, u64)> {
        match self {
            Arch::X86_64 => x86_64::direct_map_candidates(),
            Arch::Aarch64 => aarch64::direct_map_candidates(ram_start),
        }
    }

    /// Where a switched-out task's registers are saved.
    pub fn switch_frame(self) -> SwitchFrame {
        match self {
            Arch::X86_64 => x86_64::SWITCH_FRAME,
            Arch::Aarch64 => aarch64::SWITCH_FRAME,
        }
    }

    /// Where `struct pt_regs` keeps the user registers.
    pub fn pt_regs(self) -> PtRegs {
        match self {
            Arch::X86_64 => x86_64::PT_REGS,
            Arch::Aarch64 => aarch64::PT_REGS,
        }
    }

    /// `Some(user mode?)` when `reg` is the register that tells user from kernel mode.
    pub fn is_user_mode(self, reg: &str, value: u64) -> Option<bool> {
        match self {
            Arch::X86_64 => x86_64::is_user_mode(reg, value),
            Arch::Aarch64 => aarch64::is_user_mode(reg, value),
        }
    }

    /// The `thread_struct` member holding the user fs base and its GDB register, where there is
    /// one.
    pub fn thread_fsbase(self) -> Option<(&'static str, &'static str)> {
        match self {
            Arch::X86_64 => Some(x86_64::THREAD_FSBASE),
            Arch::Aarch64 => None,
        }
    }

    /// What the CPU's hardware watchpoints allow.
    /// GDB's names of the registers perf samples at a trap (PERF_SAMPLE_REGS_INTR), in the bit
    /// order of perf's register mask; "" for bits not asked for.
    pub fn perf_regs(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => x86_64::PERF_REGS,
            Arch::Aarch64 => aarch64::PERF_REGS,
        }
    }

    /// Where a data watchpoint traps before the access (the instruction has not run yet), the
    /// length of that instruction: GDB then steps over it before it compares values. arm64
    /// (ARM ARM D2.10: watchpoint exceptions are taken before the access; A64 instructions are
    /// 4 bytes). x86 traps after the access: None.
    pub fn watch_step_len(self) -> Option<u64> {
        match self {
            Arch::X86_64 => None,
            Arch::Aarch64 => Some(4),
        }
    }

    /// The `sample_regs_intr` mask of [`Arch::perf_regs`].
    pub fn perf_regs_mask(self) -> u64 {
        self.perf_regs()
            .iter()
            .enumerate()
            .filter(|(_, n)| !n.is_empty())
            .fold(0, |m, (i, _)| m | 1 << i)
    }

    pub fn debug_regs(self) -> DebugRegs {
        match self {
            Arch::X86_64 => x86_64::DEBUG_REGS,
            Arch::Aarch64 => aarch64::DEBUG_REGS,
        }
    }

    /// The kernel function of a system call (`getpid` -> `__x64_sys_getpid`).
    pub fn syscall_symbol(self, name: &str) -> String {
        let prefix = match self {
            Arch::X86_64 => x86_64::SYSCALL_PREFIX,
            Arch::Aarch64 => aarch64::SYSCALL_PREFIX,
        };
        format!("{prefix}{name}")
    }

    /// A CPU's call chain from its saved registers (`pr_reg`, NT_PRSTATUS order), innermost
    /// first, where the kernel keeps frame records to follow; `None` where it does not (x86_64
    /// kernels use ORC, without frame pointers).
    pub fn call_chain(self, mem: &mut dyn VirtRead, pr_reg: &[u64], v: &VmcoreInfo) -> Option<Vec<u64>> {
        match self {
            Arch::X86_64 => None,
            Arch::Aarch64 => Some(aarch64::call_chain_from_pr_reg(mem, pr_reg, v)),
        }
    }

    /// Whether kmemd decodes this architecture's instructions for the data addresses they form
    /// ([`Arch::code_data_refs`]).
    pub fn decodes_data_refs(self) -> bool {
        matches!(self, Arch::Aarch64)
    }

    /// Data addresses the instructions in `code` (starting at `pc`) form, where kmemd decodes
    /// them (arm64 ADRP pairs); empty elsewhere.
    pub fn code_data_refs(self, pc: u64, code: &[u8]) -> Vec<u64> {
        match self {
            Arch::X86_64 => Vec::new(),
            Arch::Aarch64 => aarch64::adrp_targets(pc, code),
        }
    }

    /// The address a process's page tables are walked with for user address `addr` (tables of
    /// `va_bits` bits), or why `addr` is no user address.
    pub fn user_walk_addr(self, addr: u64, va_bits: u8) -> Result<u64, MemError> {
        match self {
            Arch::X86_64 => Ok(addr),
            Arch::Aarch64 => aarch64::user_walk_addr(addr, va_bits),
        }
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

    /// The kernel page tables (form and top table) a dump's VMCOREINFO describes: the one way
    /// the dump target and the fuzzer both build them.
    pub fn paging(self, vmcoreinfo: &VmcoreInfo) -> Result<Paging, FormatError> {
        match self {
            Arch::X86_64 => x86_64::PagingX86_64::from_vmcoreinfo(vmcoreinfo),
            Arch::Aarch64 => aarch64::PagingAarch64::from_vmcoreinfo(vmcoreinfo),
        }
    }

    /// Registers of one CPU from the descriptor of its NT_PRSTATUS note.
    pub fn registers_from_prstatus(self, desc: &[u8]) -> Result<Registers, FormatError> {
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
        assert_eq!(regs.len(), 71);
        assert_eq!(regs[31].name, "sp");
        assert_eq!(regs[32].name, "pc");
        assert_eq!(regs[33].bits, 32);
        assert_eq!(regs[34].name, "v0");
        let total: usize = regs.iter().map(RegDesc::bytes).sum();
        assert_eq!(regs[68].name, "SP_EL0");
        assert_eq!(regs[68].bits, 64);
        assert_eq!(regs[69].name, "pauth_dmask");
        assert_eq!(regs[70].name, "pauth_cmask");
        assert_eq!(
            total, 812,
            "core+fpu is 788 bytes, SP_EL0 and the two PAC masks 24 more"
        );
        let mut r = Registers(vec![None; 33]);
        Arch::Aarch64.set_pac_mask(&mut r, 0xff7f_0000_0000_0000);
        assert_eq!(r.0.len(), 71);
        assert_eq!(r.0[69], Some(0xff7f_0000_0000_0000));
        assert_eq!(r.0[70], Some(0xff7f_0000_0000_0000));
        let mut x = Registers(vec![None; 3]);
        Arch::X86_64.set_pac_mask(&mut x, 1);
        assert_eq!(x.0, vec![None; 3]);
        assert_eq!(Arch::Aarch64.pc_index(), 32);
        assert_eq!(Arch::Aarch64.current_task_index(), Some(68));
        assert_eq!(Arch::X86_64.current_task_index(), None);
    }
}
