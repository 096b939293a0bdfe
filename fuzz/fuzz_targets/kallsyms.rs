//! kallsyms text: parsing never panics, and every parsed symbol looks up and symbolizes.
#![no_main]

use kmemd::kernel::proc_kallsyms::Kallsyms;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let k = Kallsyms::parse(&text);
    assert_eq!(k.is_empty(), k.len() == 0);
    let syms: Vec<_> = k.symbols().collect();
    assert_eq!(syms.len(), k.len());
    for module in [false, true] {
        let part: Vec<u64> = syms
            .iter()
            .filter(|s| s.module.is_some() == module)
            .map(|s| s.addr)
            .collect();
        assert!(
            part.windows(2).all(|w| w[0] <= w[1]),
            "core, then module symbols, each sorted by address"
        );
    }
    for s in syms.iter().take(64) {
        assert_ne!(s.addr, 0, "hidden (zero) addresses are dropped");
        assert!(k.lookup(s.name).is_some());
        let (hit, off) = k.symbolize(s.addr).expect("a symbol's own address symbolizes");
        assert_eq!(hit.addr + off, s.addr);
        let _ = k.format_addr(s.addr.wrapping_add(off));
        let _ = k.format_addr(s.addr.wrapping_sub(1));
    }
    let _ = k.has_data_symbols();
    let _ = k.lookup("init_task");
    let _ = k.format_addr(u64::MAX);
});
