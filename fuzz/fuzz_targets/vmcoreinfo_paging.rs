//! VMCOREINFO text as the dump reader parses it and as the page walkers read it (one parser) (kernel
//! page-table root and geometry for both architectures), and NT_PRSTATUS notes as register sets.
#![no_main]

use kmemd::arch::prstatus;
use kmemd::arch::Arch;
use kmemd::mem::vmcoreinfo::{parse_hex, parse_number, VmcoreInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let info = VmcoreInfo::parse(data);
    for (key, value) in info.entries().iter().take(32) {
        assert_eq!(
            info.get(key),
            Some(value.as_str()),
            "the first value of a key wins"
        );
        if let Some(name) = key.strip_prefix("SYMBOL(").and_then(|k| k.strip_suffix(')')) {
            let _ = info.symbol(name);
        }
        if let Some(name) = key.strip_prefix("NUMBER(").and_then(|k| k.strip_suffix(')')) {
            let _ = (info.number(name), info.number_u64(name));
        }
        let _ = (parse_number(value), parse_hex(value));
    }
    let _ = (info.page_size(), info.kerneloffset(), info.osrelease());
    // Damage is described (with escapes, shortened), whatever the bytes.
    let _ = (info.damage(), info.lacks("NUMBER(phys_base)", None, "no tables"));

    for arch in [Arch::X86_64, Arch::Aarch64] {
        // The way the dump target builds its page tables.
        if let Ok(p) = arch.paging(&info) {
            assert!((1..=5).contains(&p.form.levels));
        }
        if let Ok(regs) = arch.registers_from_prstatus(data) {
            assert_eq!(
                regs.0.len(),
                arch.registers().len(),
                "one value per described register"
            );
        }
        let _ = prstatus::pr_reg_len(arch);
    }
    let _ = prstatus::prstatus_pid(data);
});
