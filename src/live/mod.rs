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

/// The online CPUs (/sys/devices/system/cpu/online), ascending; `None` when unreadable or empty.
pub fn online_cpus() -> Option<Vec<u32>> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
        .filter(|c| !c.is_empty())
}

/// The running kernel's release (/proc/sys/kernel/osrelease).
pub fn osrelease() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string())
}

/// Parses a sysfs CPU list such as `0-3,5,7-8`. `None` when malformed or absurdly large.
pub fn parse_cpu_list(text: &str) -> Option<Vec<u32>> {
    const MAX_CPUS: u32 = 1 << 16;
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?),
            None => {
                let c = part.trim().parse::<u32>().ok()?;
                (c, c)
            }
        };
        if lo > hi || hi >= MAX_CPUS {
            return None;
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-1\n"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("0,2-4,7"), Some(vec![0, 2, 3, 4, 7]));
        assert_eq!(parse_cpu_list("3"), Some(vec![3]));
        assert_eq!(parse_cpu_list("4-2"), None);
        assert_eq!(parse_cpu_list("x"), None);
        assert_eq!(parse_cpu_list("0-4294967295"), None);
    }
}
