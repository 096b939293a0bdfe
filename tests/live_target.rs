//! LiveTarget on the running kernel (root with CAP_BPF/CAP_PERFMON).

mod common;

use kmemd::arch::Arch;
use kmemd::live::plant::Plant;
use kmemd::mem::{VirtAddr, VirtRead};
use kmemd::target::live::{load_kallsyms, LiveTarget};
use kmemd::target::Target;

#[test]
fn live_target_serves_the_running_kernel() {
    if !common::require_root("live_target_serves_the_running_kernel") {
        return;
    }
    let mut t = LiveTarget::open(None).expect("open the live target");
    assert_eq!(t.arch(), Arch::host());

    // Threads: one per online CPU, numbered from 1, all without registers (then the tasks,
    // from TASK_TID_BASE up: tests/kernel_tasks_live.rs).
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let cpus = kmemd::live::parse_cpu_list(&online).unwrap();
    let threads: Vec<_> = t
        .threads()
        .into_iter()
        .filter(|t| t.tid < kmemd::kernel::threads::TASK_TID_BASE)
        .collect();
    assert_eq!(threads.len(), cpus.len());
    for (th, cpu) in threads.iter().zip(&cpus) {
        assert_eq!(th.tid, *cpu as u64 + 1);
        assert_eq!(th.name, format!("CPU {cpu}"));
        let regs = t.registers(th.tid).unwrap();
        assert_eq!(regs.0.len(), Arch::host().registers().len());
        // A running CPU has no registers to show; only the PC reads as 0, because GDB reads
        // no memory at all while the PC is unavailable.
        let pc = Arch::host().pc_index();
        assert_eq!(regs.0[pc], Some(0));
        assert!(regs.0.iter().enumerate().all(|(i, r)| i == pc || r.is_none()));
    }
    assert!(t.registers(0).is_err());
    assert!(t.registers(cpus.len() as u64 + 100).is_err());

    // KASLR without a vmlinux: runtime _text minus the architecture default.
    let text = load_kallsyms().unwrap().lookup("_text").unwrap();
    let slide = text.wrapping_sub(Arch::host().default_text_link_addr());
    assert_eq!(t.kaslr_offset(), Some(slide));
    let out = t
        .monitor("kaslr")
        .expect("kaslr is a live monitor command")
        .unwrap();
    assert!(out.starts_with(&format!("KASLR offset: {slide:#x} ")), "{out}");
    assert!(t.monitor("no-such-command").is_none());
    assert!(t.monitor_help().iter().any(|(c, _)| *c == "kaslr"));
    assert!(t.describe().contains(
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap()
            .trim()
    ));

    // Memory: planted bytes through the Target interface; the user half fails.
    let plant = Plant::new(256).unwrap();
    let data: Vec<u8> = (0..=255u8).rev().collect();
    plant.write(&data).unwrap();
    let mut buf = [0u8; 256];
    assert_eq!(t.read_virt(VirtAddr(plant.kernel_addr()), &mut buf), Ok(256));
    assert_eq!(buf[..], data[..]);
    assert!(t.read_virt(VirtAddr(0x1000), &mut buf).is_err());
    // Kernel text at _text reads too (the first thing gdb asks for).
    assert_eq!(t.read_virt(VirtAddr(text), &mut buf[..16]), Ok(16));
}

/// `monitor info` live says what a dump's `--info` says of its kernel: release, build ID (that of
/// /sys/kernel/notes), online CPUs.
#[test]
fn live_monitor_info_describes_the_kernel() {
    if !common::require_root("live_monitor_info_describes_the_kernel") {
        return;
    }
    let mut t = LiveTarget::open(None).expect("open the live target");
    let info = t
        .monitor("info")
        .expect("info is a live command")
        .expect("info text");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        info.contains(&format!("kernel:        {}\n", release.trim())),
        "{info}"
    );
    // The note as the kernel's linker script emits it: namesz 4, descsz 20, NT_GNU_BUILD_ID 3,
    // "GNU\0", then the 20-byte SHA-1 build ID.
    let raw = std::fs::read("/sys/kernel/notes").unwrap();
    let head: &[u8] = &[4, 0, 0, 0, 20, 0, 0, 0, 3, 0, 0, 0, b'G', b'N', b'U', 0];
    let at = raw
        .windows(head.len())
        .position(|w| w == head)
        .expect("a GNU build ID note")
        + head.len();
    let id: String = raw[at..at + 20].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(id.len(), 40, "{id}");
    assert!(info.contains(&format!("build ID:      {id}\n")), "{info}");
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap();
    let n = kmemd::live::parse_cpu_list(&online).unwrap().len();
    assert!(info.contains(&format!("CPUs:          {n} online")), "{info}");
    assert!(t.monitor_help().iter().any(|(c, _)| *c == "info"));
}
