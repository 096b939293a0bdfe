//! The running kernel as a memory source: its memory through BPF (bpf.rs, or /proc/kcore:
//! kcore.rs), its CPUs, and where its knowledge of itself comes from (/proc/kallsyms,
//! /sys/kernel/btf/vmlinux, VMCOREINFO through the direct map, /proc/modules, /sys/module).
//! kernel/ makes sense of what these give; target/live.rs puts the two together.

pub mod bpf;
pub mod kallsyms;
pub mod kcore;
pub mod plant;
pub mod task;
pub mod vmcoreinfo;

/// The running kernel's own BTF (CONFIG_DEBUG_INFO_BTF).
pub const SYS_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Loaded modules, one directory each (with `sections/` for those not built in).
pub const SYS_MODULE: &str = "/sys/module";

/// The bytes of [`SYS_BTF`].
pub fn read_sys_btf() -> Result<Vec<u8>, String> {
    std::fs::read(SYS_BTF).map_err(|e| e.to_string())
}

/// Whether the kernel has loadable modules: procfs shows /proc/modules exactly when it has
/// CONFIG_MODULES (kernel/module/procfs.c).
pub fn has_modules() -> bool {
    std::path::Path::new("/proc/modules").exists()
}

/// Where the kernel lists its online CPUs.
pub const CPU_ONLINE: &str = "/sys/devices/system/cpu/online";

/// The online CPUs ([`CPU_ONLINE`]), ascending.
pub fn online_cpus() -> Result<Vec<u32>, String> {
    let s = std::fs::read_to_string(CPU_ONLINE)
        .map_err(|e| format!("cannot read {CPU_ONLINE}: {e} (is sysfs mounted?)"))?;
    parse_cpu_list(&s)
}

/// The running kernel's release (/proc/sys/kernel/osrelease).
pub fn osrelease() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

/// The running kernel's ELF notes (its vmlinux's `.notes`, exported by kernel/ksysfs.c since
/// Linux 2.6.23).
pub const SYS_NOTES: &str = "/sys/kernel/notes";

/// The running kernel's GNU build ID as lowercase hex, from [`SYS_NOTES`]; None when it cannot
/// be read or carries none.
pub fn kernel_build_id() -> Option<String> {
    let notes = std::fs::read(SYS_NOTES).ok()?;
    crate::mem::elf::gnu_build_id(&notes)
}

/// Parses a sysfs CPU list such as `0-3,5,7-8` (ascending, without repeats). Fails when it is
/// malformed, empty, or names a CPU past 65535.
pub fn parse_cpu_list(text: &str) -> Result<Vec<u32>, String> {
    const MAX_CPUS: u32 = 1 << 16;
    let bad = || format!("cannot parse CPU list '{}'", text.trim());
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let num = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => {
                let c = num(part)?;
                (c, c)
            }
        };
        if lo > hi || hi >= MAX_CPUS {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    if cpus.is_empty() {
        return Err(format!("CPU list '{}' is empty", text.trim()));
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Ok(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Ok(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("3"), Ok(vec![3]));
        assert_eq!(parse_cpu_list("2,0-2"), Ok(vec![0, 1, 2]));
        assert_eq!(parse_cpu_list("4-2"), Err("cannot parse CPU list '4-2'".into()));
        assert_eq!(parse_cpu_list("3-1").ok(), None);
        assert_eq!(parse_cpu_list("x"), Err("cannot parse CPU list 'x'".into()));
        assert_eq!(parse_cpu_list("0-4294967295").ok(), None);
        assert_eq!(parse_cpu_list(""), Err("CPU list '' is empty".into()));
    }
}
