//! The ELF vmcore reader alone: headers, PT_LOAD segments, notes, and physical reads anywhere.
#![no_main]

use kmemd::dump::elf::ElfCore;
use kmemd::dump::notes::{interpret, parse_notes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(core) = ElfCore::parse(&data) else {
        return;
    };
    assert!(
        core.segments.windows(2).all(|w| w[0].paddr <= w[1].paddr),
        "sorted by paddr"
    );
    for blob in &core.note_blobs {
        let notes = parse_notes(blob, core.endian);
        let info = interpret(&notes, core.endian, Some(core.arch));
        for cpu in &info.cpus {
            let _ = cpu.gdb_registers(core.arch);
        }
    }
    let mut buf = vec![0u8; 4096];
    for s in core.segments.iter().take(16) {
        assert!(s.present <= s.filesz);
        for at in [
            s.paddr,
            s.paddr.saturating_add(s.span() / 2),
            s.paddr.saturating_add(s.span()),
        ] {
            if let Ok(n) = core.read_phys(&data, at, &mut buf) {
                assert!((1..=buf.len()).contains(&n), "read_phys returned {n}");
            }
        }
    }
});
