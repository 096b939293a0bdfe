//! The running kernel as a target: memory through BPF, symbols from kallsyms, KASLR from both.

pub mod bpf;
pub mod kallsyms;
pub mod plant;
pub mod vmlinux;
