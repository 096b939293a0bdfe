//! Crash dumps: ELF vmcores and makedumpfile's kdump formats, read through a page-table walker.

pub mod bytes;
pub mod cache;
pub mod codec;
pub mod elf;
pub mod flat;
pub mod kdump;
pub mod notes;
#[cfg(test)]
pub(crate) mod testutil;
pub mod vmcoreinfo;

/// Physical memory of a dump. Same contract as Target::read_memory: a prefix of real bytes, Err when the first byte is not in the dump.
pub trait PhysRead {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<usize, crate::target::MemError>;
}
