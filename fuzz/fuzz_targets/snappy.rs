//! Snappy (raw block) decompression of arbitrary streams into pages of arbitrary size. The result must not
//! depend on how much room the output has, once the data fits.
#![no_main]

use kmemd::dump::codec::snappy::decompress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, input)) = data.split_first_chunk::<2>() else {
        return;
    };
    let room = 1 + usize::from(u16::from_le_bytes(*size));
    let mut out = vec![0u8; room];
    if let Ok(n) = decompress(input, &mut out) {
        assert!(n <= room);
        let mut exact = vec![0u8; n];
        assert_eq!(
            decompress(input, &mut exact),
            Ok(n),
            "exact-size output disagrees"
        );
        assert_eq!(exact, out[..n], "exact-size output differs");
    }
});
