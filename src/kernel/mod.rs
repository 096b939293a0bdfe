//! Kernel awareness without a vmlinux (issue 9). TEMPORARY module file on branch `tasks`: the
//! `btf` branch owns this file; on merge keep theirs and add the three `pub mod` lines below.

pub mod dmesg;
pub mod modules;
pub mod tasks;
