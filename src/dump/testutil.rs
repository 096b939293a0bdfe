//! Helpers for building synthetic dumps in unit tests, without panicking indexing.
#![allow(dead_code)] // Not every helper is used by every reader's tests.

/// Writes `bytes` at `off`, growing `v` with zeros as needed.
pub fn put(v: &mut Vec<u8>, off: usize, bytes: &[u8]) {
    if v.len() < off + bytes.len() {
        v.resize(off + bytes.len(), 0);
    }
    if let Some(dst) = v.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

pub fn put_u16(v: &mut Vec<u8>, off: usize, x: u16) {
    put(v, off, &x.to_le_bytes());
}

pub fn put_u32(v: &mut Vec<u8>, off: usize, x: u32) {
    put(v, off, &x.to_le_bytes());
}

pub fn put_u64(v: &mut Vec<u8>, off: usize, x: u64) {
    put(v, off, &x.to_le_bytes());
}

/// Unwraps a `Result` in a test, failing with its error text.
pub fn ok<T, E: std::fmt::Display>(r: Result<T, E>) -> T {
    match r {
        Ok(v) => v,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

/// The kind of a memory read that must have failed.
pub fn kind<T>(r: Result<T, crate::mem::MemError>) -> crate::mem::MemErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind,
    }
}

/// The kind of a file parse that must have failed.
pub fn format_kind<T>(r: Result<T, crate::mem::bytes::FormatError>) -> crate::mem::bytes::FormatErrorKind {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.kind,
    }
}

/// The error text of a `Result` that must have failed.
pub fn err<T, E: std::fmt::Display>(r: Result<T, E>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}
