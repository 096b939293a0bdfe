//! VMCOREINFO text as the dump reader parses it and as the page walkers read it (kernel
//! page-table root and geometry for both architectures), and NT_PRSTATUS notes as register sets.
#![no_main]

use kmemd::arch::prstatus;
use kmemd::arch::walk::{parse_vmcoreinfo_number, parse_vmcoreinfo_symbol, vmcoreinfo_value};
use kmemd::arch::Arch;
use kmemd::mem::vmcoreinfo::VmcoreInfo;
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
    }
    let _ = (info.page_size(), info.kerneloffset(), info.osrelease());

    let text = String::from_utf8_lossy(data);
    for arch in [Arch::X86_64, Arch::Aarch64] {
        if let Ok(p) = arch.paging_from_vmcoreinfo(&text) {
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
    for line in text.lines().take(32) {
        if let Some((key, value)) = line.split_once('=') {
            assert!(vmcoreinfo_value(&text, key).is_some(), "a present key is found");
            let _ = parse_vmcoreinfo_number(value);
            let _ = parse_vmcoreinfo_symbol(value);
        }
    }
});
