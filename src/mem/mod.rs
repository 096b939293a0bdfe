//! The memory floor: what every memory source and every reader of memory shares, and nothing
//! else. Typed addresses, the one error type of a read, the read traits and their contract, and
//! beside them the bounds-checked byte readers (`bytes`, `elf`) and the VMCOREINFO parser
//! (`vmcoreinfo`) that dump files, vmlinux files and the live kernel all need.
//!
//! This module uses nothing of the crate but `sys`: everything above it may use it.

pub mod bytes;
pub mod vmcoreinfo;

use std::fmt;

/// A kernel virtual address. A different type from `PhysAddr` so the two cannot be mixed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtAddr(pub u64);

/// A physical address, as page-table entries and dump files store them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

impl VirtAddr {
    pub fn value(self) -> u64 {
        self.0
    }
    pub fn checked_add(self, n: u64) -> Option<VirtAddr> {
        self.0.checked_add(n).map(VirtAddr)
    }
}

impl PhysAddr {
    pub fn value(self) -> u64 {
        self.0
    }
    pub fn checked_add(self, n: u64) -> Option<PhysAddr> {
        self.0.checked_add(n).map(PhysAddr)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Why memory could not be read. The server turns every one of these into an `Exx` reply, so GDB
/// says "Cannot access memory"; the text goes to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemError {
    pub addr: u64,
    pub reason: String,
}

impl MemError {
    pub fn new(addr: u64, reason: impl Into<String>) -> Self {
        MemError {
            addr,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {:#x}: {}", self.addr, self.reason)
    }
}

impl std::error::Error for MemError {}

/// Physical memory of a dump. Same contract as Target::read_memory: a prefix of real bytes, Err when the first byte is not in the dump.
pub trait PhysRead {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<usize, MemError>;
}
