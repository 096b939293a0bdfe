//! Crash dumps: ELF vmcores and makedumpfile's kdump formats, read through a page-table walker.

use crate::cli::Config;
use crate::target::Target;
use std::path::Path;

/// Opens a dump as a GDB target.
pub fn open_target(path: &Path, _config: &Config) -> Result<Box<dyn Target>, String> {
    Err(format!("{}: crash dumps are not supported yet", path.display()))
}

/// The `--info` description of a dump.
pub fn info_text(path: &Path) -> Result<String, String> {
    Err(format!("{}: crash dumps are not supported yet", path.display()))
}
