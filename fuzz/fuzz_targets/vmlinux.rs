//! The vmlinux ELF reader (used for the KASLR slide): arbitrary files never panic and never
//! allocate beyond what the file holds.
#![no_main]

use kmemd::kernel::vmlinux::Vmlinux;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = Vmlinux::parse(data) {
        let _ = v.has_symbols();
        for name in ["_stext", "_text", "linux_banner", ""] {
            let _ = v.symbol(name);
        }
        for name in [".text", ".data..percpu", ".symtab", ""] {
            if let Some(s) = v.section(name) {
                assert_eq!(s.name, name);
            }
        }
    }
});
