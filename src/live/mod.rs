//! The running kernel as a target: memory through BPF, symbols from kallsyms, KASLR from both.

pub mod kallsyms;
pub mod plant;
