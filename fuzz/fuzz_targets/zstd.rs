//! zstd frame decoding (RFC 8878) of arbitrary input into pages of arbitrary size. Beyond "no
//! panic, no hang, no big allocation": the result must not depend on how much room the output
//! has once the data fits, nor on what the per-thread decoder decoded before (its tables and
//! literal buffer are reused from call to call).
#![no_main]

use kmemd::dump::codec::zstd::{decompress, Decoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let room = 1 + usize::from(u16::from_le_bytes(*size));
    let mut out = vec![0u8; room];
    let reused = decompress(input, &mut out);
    let mut fresh_out = vec![0u8; room];
    let fresh = Decoder::new().decompress(input, &mut fresh_out);
    assert_eq!(reused, fresh, "a reused decoder disagrees with a fresh one");
    if let Ok(n) = reused {
        assert!(n <= room);
        assert_eq!(fresh_out, out, "a reused decoder decoded different bytes");
        let mut exact = vec![0u8; n];
        assert_eq!(decompress(input, &mut exact), Ok(n), "exact-size output disagrees");
        assert_eq!(exact, out[..n], "exact-size output differs");
    }
});
