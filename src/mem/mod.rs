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

/// What kind of failure stopped a read. Callers that only report it print the [`MemError`];
/// callers that act on it (the server's errno, tests, a reader that falls back) match this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemErrorKind {
    /// The page tables do not map the address: the entry at `level` is not present (not valid).
    /// Levels count from the bottom as the walker numbers them: 0 is the last level (PTE).
    NotPresent { level: u8 },
    /// The page exists but was left out when the dump was made (makedumpfile `-d`, an ELF
    /// segment whose `p_filesz` is below its `p_memsz`).
    Excluded,
    /// The source does not hold the address at all: no segment or bitmap covers it, a hole in
    /// physical memory, a page past the end of a truncated or incomplete file.
    NotInDump,
    /// The source holds the bytes, or the tables leading to them, but they are damaged: a page
    /// that does not decompress, a corrupt descriptor or page-table entry, a list that loops.
    Corrupt,
    /// The bytes are there but kmemd cannot decode them (e.g. a compression it has no decoder
    /// for).
    Unsupported,
    /// The access itself failed: the running kernel faulted (BPF EFAULT/ERANGE), the address
    /// cannot exist (non-canonical, outside the kernel half, wrapping past the top), or the file
    /// holding it could not be read.
    Fault,
}

impl MemErrorKind {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            MemErrorKind::NotPresent { .. } => "not present",
            MemErrorKind::Excluded => "excluded",
            MemErrorKind::NotInDump => "not in the dump",
            MemErrorKind::Corrupt => "corrupt",
            MemErrorKind::Unsupported => "unsupported",
            MemErrorKind::Fault => "fault",
        }
    }
}

/// Why memory could not be read: where, what kind of failure, and a sentence for people (the
/// detail names the level, pfn, segment or errno). The server turns every one of these into an
/// `Exx` reply (see `server::mem_errno`), so GDB says "Cannot access memory"; the text goes to
/// the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemError {
    pub addr: u64,
    pub kind: MemErrorKind,
    pub detail: String,
}

impl MemError {
    pub fn new(addr: u64, kind: MemErrorKind, detail: impl Into<String>) -> Self {
        MemError {
            addr,
            kind,
            detail: detail.into(),
        }
    }

    /// The same failure seen at another address (a virtual address whose physical page failed).
    pub fn at(self, addr: u64) -> MemError {
        MemError { addr, ..self }
    }
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {:#x}: {}", self.addr, self.detail)
    }
}

impl std::error::Error for MemError {}

/// Physical memory of a dump. Same contract as Target::read_memory: a prefix of real bytes, Err when the first byte is not in the dump.
pub trait PhysRead {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<usize, MemError>;
}
