//! A whole crash dump from arbitrary bytes, as `kmemd -c` opens it: format detection (ELF,
//! kdump-compressed, flattened), notes, VMCOREINFO, `--info` text, physical reads, then the dump
//! as a GDB target (page walks through the dump's own tables, registers).
#![no_main]

use kmemd::dump::Dump;
use kmemd::mem::{PhysAddr, PhysRead, VirtAddr, VirtRead};
use kmemd::target::dump::DumpTarget;
use kmemd::target::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dump) = Dump::from_source(Box::new(data.to_vec())) else {
        return;
    };
    dump.set_cache_limit(256 << 10);
    let _ = (
        dump.info_text(),
        dump.format_name(),
        dump.page_size(),
        dump.kaslr_offset(),
    );
    let mut buf = vec![0u8; 8192];
    for (start, end) in dump.phys_ranges().into_iter().take(16) {
        assert!(start < end, "empty or inverted range {start:#x}..{end:#x}");
        for at in [start, start + (end - start) / 2, end - 1] {
            if let Ok(n) = dump.read_phys(PhysAddr(at), &mut buf) {
                assert!((1..=buf.len()).contains(&n), "read_phys returned {n}");
            }
        }
    }
    let Ok(mut target) = DumpTarget::new(dump) else {
        return;
    };
    let threads = target.threads();
    assert!(!threads.is_empty());
    for t in threads.iter().take(8) {
        if let Ok(regs) = target.registers(t.tid) {
            assert_eq!(regs.0.len(), target.arch().registers().len());
        }
    }
    let _ = target.stop_thread();
    // Kernel addresses the dump itself names, and the start of kernel space.
    let mut vas: Vec<u64> = target
        .dump()
        .vmcoreinfo()
        .entries()
        .iter()
        .filter(|(k, _)| k.starts_with("SYMBOL("))
        .filter_map(|(k, _)| target.dump().vmcoreinfo().symbol(&k[7..k.len() - 1]))
        .take(8)
        .collect();
    vas.push(target.arch().kernel_space_start());
    for va in vas {
        if let Ok(n) = target.read_virt(VirtAddr(va), &mut buf) {
            assert!((1..=buf.len()).contains(&n), "read_virt returned {n}");
        }
    }
    for cmd in ["help", "vtop 0xffffffff81000000", "info", ""] {
        let _ = target.monitor(cmd);
    }
});
