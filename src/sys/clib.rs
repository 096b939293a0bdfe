//! FFI to the C libraries libbpf-sys links statically: libbpf itself and its zlib.
#![allow(unsafe_code)]

// Linking libbpf-sys brings in its static zlib, which `uncompress` below comes from.
use libbpf_sys as _;
use std::os::raw::{c_int, c_ulong};

extern "C" {
    // zlib, linked statically by libbpf-sys (features vendored + static).
    fn uncompress(dest: *mut u8, dest_len: *mut c_ulong, source: *const u8, source_len: c_ulong) -> c_int;
}

/// Inflates a zlib (RFC 1950) stream into `out`, returning how many bytes were written.
/// Errors carry zlib's status (-3 data error, -5 output buffer too small).
pub fn zlib_uncompress(input: &[u8], out: &mut [u8]) -> Result<usize, i32> {
    let mut out_len = out.len() as c_ulong;
    // SAFETY: both pointers come from live slices whose lengths are passed alongside; zlib writes
    // at most `out_len` bytes to `dest` and only reads `source_len` bytes from `source`.
    let rc = unsafe {
        uncompress(
            out.as_mut_ptr(),
            &mut out_len,
            input.as_ptr(),
            input.len() as c_ulong,
        )
    };
    if rc == 0 {
        Ok(out_len as usize)
    } else {
        Err(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zlib_inflates_a_known_stream() {
        // zlib.compress(b"kmemd kmemd kmemd\n") from Python's zlib
        let stream = [
            0x78, 0x9c, 0xcb, 0xce, 0x4d, 0xcd, 0x4d, 0x51, 0xc8, 0x46, 0x90, 0x5c, 0x00, 0x40, 0x6a, 0x06,
            0x75,
        ];
        let mut out = [0u8; 64];
        let n = zlib_uncompress(&stream, &mut out).expect("valid stream");
        assert_eq!(&out[..n], b"kmemd kmemd kmemd\n");
        assert!(zlib_uncompress(&stream[..5], &mut out).is_err());
        assert!(zlib_uncompress(&stream, &mut out[..4]).is_err());
    }
}
