//! The kdump-compressed reader alone (makedumpfile/QEMU `KDUMP   ` and old `DISKDUMP`): header,
//! sub-header, bitmaps, page descriptors and compressed pages, read through its page cache.
#![no_main]

use kmemd::dump::kdump::KdumpFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(k) = KdumpFile::parse(&data) else {
        return;
    };
    k.set_cache_limit(128 << 10);
    let _ = (k.header.compression(), k.header.incomplete(), k.dumpable_pages());
    let mut buf = vec![0u8; 3 * 4096];
    let ranges = k.dumpable_ranges();
    for &(start, end) in ranges.iter().take(16) {
        assert!(start < end, "empty or inverted range {start:#x}..{end:#x}");
        for at in [start, end - 1, end, start.wrapping_sub(1)] {
            if let Ok(n) = k.read_phys(&data, at, &mut buf) {
                assert!((1..=buf.len()).contains(&n), "read_phys returned {n}");
            }
        }
    }
    // Twice: the second read comes from the cache and must agree.
    if let Some(&(start, _)) = ranges.first() {
        let mut again = vec![0u8; buf.len()];
        let a = k.read_phys(&data, start, &mut buf);
        let b = k.read_phys(&data, start, &mut again);
        assert_eq!(a, b);
        if let Ok(n) = a {
            assert_eq!(buf[..n], again[..n], "cached page differs");
        }
    }
});
