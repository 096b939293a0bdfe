//! The only place for raw syscalls and FFI. Every `unsafe` block in kmemd lives in this folder,
//! with a `SAFETY:` comment saying why it is sound; the rest of the crate denies unsafe code.

pub mod clib;
pub mod os;
