//! Which CPU panicked, found from the CPUs' call chains when the kernel's own `panic_cpu` cannot
//! be read: kallsyms without data symbols (Debian's arm64 kernels are built without
//! CONFIG_KALLSYMS_ALL) and no `-k vmlinux`.
//!
//! Where the architecture keeps frame records (arm64: `Arch::call_chain`, src/arch/aarch64.rs),
//! a CPU's call chain comes from its saved registers with nothing but text symbols, which every
//! kallsyms has. The CPU that won `panic_cpu` is the one whose chain runs through `panic()` (or
//! `crash_kexec()`), without first passing through one of the functions that park the other
//! CPUs (`panic_smp_self_stop()`, `local_cpu_stop()`, ...): those run on CPUs that called panic
//! second, or that the panicking CPU stopped.
//!
//! x86_64 kernels are built with the ORC unwinder and no frame pointers, so there is no chain to
//! follow from the registers alone; there kmemd needs `panic_cpu` (Debian's amd64 kallsyms has
//! it).

/// Functions whose presence in a chain means this CPU is the one panicking (kernel/panic.c
/// `panic` and, from Linux 6.14, `vpanic`; `nmi_panic`; kernel/kexec_core.c `crash_kexec` and
/// `__crash_kexec`, which take `panic_cpu` too).
const PANICKING: &[&str] = &["panic", "vpanic", "nmi_panic", "crash_kexec", "__crash_kexec"];

/// Functions that park a CPU during someone else's panic (kernel/panic.c
/// `panic_smp_self_stop`/`nmi_panic_self_stop`; arch/arm64/kernel/smp.c `local_cpu_stop`, the
/// IPI_CPU_STOP handler, and `ipi_cpu_crash_stop`, the IPI_CPU_CRASH_STOP handler).
const STOPPED: &[&str] = &[
    "panic_smp_self_stop",
    "nmi_panic_self_stop",
    "local_cpu_stop",
    "ipi_cpu_crash_stop",
];

/// What a CPU was doing, from its call chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuRole {
    /// In panic (or crash_kexec): named by the function found.
    Panicking(String),
    /// Parked by someone else's panic.
    Stopped(String),
    /// Neither: no panic is going on here (or the chain could not be followed).
    Other,
}

/// The role of one CPU: the innermost frame that is one of the known functions decides.
pub fn classify(chain: &[u64], symbolize: &dyn Fn(u64) -> Option<String>) -> CpuRole {
    for &addr in chain {
        let Some(name) = symbolize(addr) else { continue };
        if STOPPED.contains(&name.as_str()) {
            return CpuRole::Stopped(name);
        }
        if PANICKING.contains(&name.as_str()) {
            return CpuRole::Panicking(name);
        }
    }
    CpuRole::Other
}

/// The panicking CPU: the only one whose role is [`CpuRole::Panicking`]. None when no CPU is, or
/// when several are (then the chains cannot tell which one won `panic_cpu`).
pub fn panicking_cpu(roles: &[CpuRole]) -> Option<usize> {
    let mut found = roles
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r, CpuRole::Panicking(_)));
    let first = found.next()?.0;
    found.next().is_none().then_some(first)
}

/// What the kernel said when it died, from its log: the `Kernel panic - not syncing: ...` line
/// panic() prints (kernel/panic.c, every 2.6+ kernel), else the first oops header (`Oops:`,
/// `BUG:`, arm64's `Internal error:`, `Unable to handle kernel ...`) for a dump taken by kdump
/// before panic() ran; crash's PANIC line is the same text. The line's `[ time]` prefix is left
/// out. None when the log says neither (a dump of a running kernel).
pub fn panic_message(log: &str) -> Option<String> {
    const PANIC: &str = "Kernel panic - not syncing: ";
    const OOPS: &[&str] = &["Oops:", "BUG: ", "Internal error: ", "Unable to handle kernel "];
    let bodies = || {
        log.lines()
            .map(|l| match l.strip_prefix('[').and_then(|r| r.split_once("] ")) {
                Some((_, body)) => body.trim_end(),
                None => l.trim_end(),
            })
    };
    bodies()
        .find(|b| b.starts_with(PANIC))
        .or_else(|| bodies().find(|b| OOPS.iter().any(|o| b.starts_with(o))))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::aarch64::{call_chain as aarch64_call_chain, FrameRegs, MAX_FRAMES};
    use crate::mem::BufferMem;

    const TEXT: u64 = 0xffff_8000_0800_0000;
    const STACK: u64 = 0xffff_8000_0a00_0000;

    /// Functions laid out at TEXT + 0x100 * i.
    const FUNCS: &[&str] = &[
        "__delay",
        "panic",
        "sysrq_handle_crash",
        "local_cpu_stop",
        "do_handle_IPI",
        "cpu_startup_entry",
        "panic_smp_self_stop",
    ];

    fn func(name: &str) -> u64 {
        let i = FUNCS.iter().position(|f| *f == name).expect("known function");
        TEXT + 0x100 * i as u64
    }

    fn symbolize(addr: u64) -> Option<String> {
        let i = addr.checked_sub(TEXT)? / 0x100;
        FUNCS.get(usize::try_from(i).ok()?).map(|s| s.to_string())
    }

    /// A stack of frame records: record k at STACK + 0x40 * k, its return address into `rets[k]`
    /// (+0x10 into the function), chained upwards, the last one zeroed as the kernel ends a task's
    /// chain.
    fn stack(rets: &[&str]) -> (BufferMem, u64) {
        let mut bytes = vec![0u8; 0x40 * (rets.len() + 1)];
        for (k, f) in rets.iter().enumerate() {
            let at = 0x40 * k;
            let next = STACK + 0x40 * (k as u64 + 1);
            bytes[at..at + 8].copy_from_slice(&next.to_le_bytes());
            bytes[at + 8..at + 16].copy_from_slice(&(func(f) + 0x10).to_le_bytes());
        }
        (BufferMem { base: STACK, bytes }, STACK)
    }

    fn role(pc_in: &str, rets: &[&str]) -> CpuRole {
        let (mut mem, fp) = stack(rets);
        let regs = FrameRegs {
            pc: func(pc_in) + 8,
            lr: func(pc_in) + 4,
            fp,
        };
        classify(&aarch64_call_chain(&mut mem, regs, 48), &symbolize)
    }

    #[test]
    fn the_chain_follows_frame_records_to_the_zeroed_one() {
        let (mut mem, fp) = stack(&["panic", "sysrq_handle_crash"]);
        let regs = FrameRegs {
            pc: func("__delay") + 8,
            lr: func("__delay") + 4,
            fp,
        };
        let chain = aarch64_call_chain(&mut mem, regs, 48);
        let names: Vec<_> = chain.iter().map(|&a| symbolize(a).unwrap()).collect();
        assert_eq!(names, ["__delay", "__delay", "panic", "sysrq_handle_crash"]);
    }

    #[test]
    fn a_return_address_names_the_call_before_it() {
        // A noreturn call as the last instruction of panic: the return address is the first
        // instruction of the next function, but the call is in panic.
        let (mut mem, fp) = stack(&[]);
        let regs = FrameRegs {
            pc: func("__delay"),
            lr: func("sysrq_handle_crash"),
            fp,
        };
        let chain = aarch64_call_chain(&mut mem, regs, 48);
        assert_eq!(symbolize(chain[1]).as_deref(), Some("panic"));
    }

    #[test]
    fn roles_follow_the_innermost_known_function() {
        assert_eq!(
            role("__delay", &["panic", "sysrq_handle_crash"]),
            CpuRole::Panicking("panic".into())
        );
        assert_eq!(
            role("local_cpu_stop", &["do_handle_IPI", "cpu_startup_entry"]),
            CpuRole::Stopped("local_cpu_stop".into())
        );
        // A CPU that called panic second parks itself from inside panic.
        assert_eq!(
            role("local_cpu_stop", &["panic_smp_self_stop", "panic"]),
            CpuRole::Stopped("local_cpu_stop".into())
        );
        assert_eq!(role("__delay", &["cpu_startup_entry"]), CpuRole::Other);
    }

    #[test]
    fn pointer_authentication_codes_are_stripped() {
        let (mut mem, fp) = stack(&[]);
        let signed = (func("panic") + 0x10) & !(0x7fu64 << 48) | (0x2au64 << 48);
        let regs = FrameRegs {
            pc: func("__delay"),
            lr: signed,
            fp,
        };
        let chain = aarch64_call_chain(&mut mem, regs, 48);
        assert_eq!(symbolize(chain[1]).as_deref(), Some("panic"));
    }

    #[test]
    fn loops_bad_pointers_and_unreadable_records_end_the_walk() {
        // A record that points at itself.
        let mut bytes = vec![0u8; 16];
        bytes[..8].copy_from_slice(&STACK.to_le_bytes());
        bytes[8..].copy_from_slice(&(func("panic") + 4).to_le_bytes());
        let mut mem = BufferMem { base: STACK, bytes };
        let regs = FrameRegs {
            pc: func("__delay"),
            lr: func("__delay"),
            fp: STACK,
        };
        assert_eq!(aarch64_call_chain(&mut mem, regs, 48).len(), 3);
        // Misaligned, unreadable and null frame pointers: only pc and lr.
        for fp in [STACK + 3, 0x1000, 0] {
            let regs = FrameRegs { fp, ..regs };
            assert_eq!(aarch64_call_chain(&mut mem, regs, 48).len(), 2, "fp {fp:#x}");
        }
    }

    #[test]
    fn a_long_chain_is_cut() {
        let rets = vec!["cpu_startup_entry"; MAX_FRAMES * 2];
        let (mut mem, fp) = stack(&rets);
        let regs = FrameRegs {
            pc: func("__delay"),
            lr: func("__delay"),
            fp,
        };
        assert_eq!(aarch64_call_chain(&mut mem, regs, 48).len(), MAX_FRAMES);
    }

    #[test]
    fn the_panic_message_is_the_panic_line_else_the_oops() {
        let log = "[    0.000000] Linux version 6.1.0\n\
                   [   13.982090] sysrq: Trigger a crash\n\
                   [   13.982657] Kernel panic - not syncing: sysrq triggered crash\n\
                   [   13.985126] ---[ end Kernel panic - not syncing: sysrq triggered crash ]---\n";
        assert_eq!(
            panic_message(log).as_deref(),
            Some("Kernel panic - not syncing: sysrq triggered crash")
        );
        let oops = "[    1.0] BUG: kernel NULL pointer dereference, address: 0000000000000000\n\
                    [    1.1] Oops: 0002 [#1] PREEMPT SMP NOPTI\n";
        assert_eq!(
            panic_message(oops).as_deref(),
            Some("BUG: kernel NULL pointer dereference, address: 0000000000000000")
        );
        assert_eq!(
            panic_message("[    0.0] Linux version 6.1.0\n[ 1.0] all fine\n"),
            None
        );
        assert_eq!(panic_message(""), None);
        assert_eq!(panic_message("[unterminated"), None);
    }

    #[test]
    fn exactly_one_panicking_cpu_is_named() {
        let p = || CpuRole::Panicking("panic".into());
        let s = || CpuRole::Stopped("local_cpu_stop".into());
        assert_eq!(panicking_cpu(&[s(), p()]), Some(1));
        assert_eq!(panicking_cpu(&[p(), CpuRole::Other, s()]), Some(0));
        assert_eq!(panicking_cpu(&[CpuRole::Other, s()]), None);
        assert_eq!(panicking_cpu(&[p(), p()]), None);
        assert_eq!(panicking_cpu(&[]), None);
    }
}
