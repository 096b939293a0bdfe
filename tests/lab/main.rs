//! The kernel lab (issue 14): kmemd tested inside Debian's own amd64 and arm64 kernels under QEMU,
//! the kernels its users run, with what this CI host lacks: KASLR, a matching debug vmlinux,
//! data symbols in kallsyms (amd64), kprobes, /proc/kcore, and hardware breakpoints on kernel
//! addresses. Each guest boots once for the whole binary (guest.rs); the tests share it.
//!
//! Needs `make lab-bins` (the static kmemd and lab agent of both arches), `make fixtures` (the
//! kernels) and `make dbg-vmlinux`; `make test` runs all three first. Nothing here is skipped:
//! a guest that cannot boot fails every test that needs it, with the reason.

#[path = "../common/mod.rs"]
mod common;
mod guest;

mod check;
mod examples;
mod gdbwatch;
mod live;
mod lldb;
mod pac;
mod watch;
