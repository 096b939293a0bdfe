//! Crash dumps: ELF vmcores and makedumpfile's kdump formats, read through a page-table walker.

use crate::cli::Config;
use crate::target::Target;
use std::path::Path;

/// Physical memory of a dump. Same contract as Target::read_memory: a prefix of real bytes, Err when the first byte is not in the dump.
pub trait PhysRead {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<usize, crate::target::MemError>;
}

/// Opens a dump as a GDB target.
pub fn open_target(path: &Path, _config: &Config) -> Result<Box<dyn Target>, String> {
    Err(format!("{}: crash dumps are not supported yet", path.display()))
}

/// The `--info` description of a dump.
pub fn info_text(path: &Path) -> Result<String, String> {
    Err(format!("{}: crash dumps are not supported yet", path.display()))
}
