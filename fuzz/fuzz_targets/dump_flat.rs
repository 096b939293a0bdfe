//! The flattened-format reassembler (makedumpfile -F): arbitrary record streams, then reads of
//! the reassembled file at arbitrary places.
#![no_main]

use kmemd::dump::flat::FlatSource;
use kmemd::mem::bytes::ReadAt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(flat) = FlatSource::new(Box::new(data)) else {
        return;
    };
    let len = flat.len();
    let _ = flat.pieces();
    let mut buf = [0u8; 512];
    for (i, off) in [
        0,
        1,
        len / 3,
        len / 2,
        len.saturating_sub(512),
        len.saturating_sub(1),
        len,
        u64::MAX - 8,
    ]
    .into_iter()
    .enumerate()
    {
        let n = (i * 97) % buf.len() + 1;
        let r = flat.read_exact_at(off, &mut buf[..n]);
        if r.is_ok() {
            assert!(
                off.checked_add(n as u64).is_some_and(|e| e <= len),
                "read past the end"
            );
        }
    }
});
