//! Crash dumps: ELF vmcores and makedumpfile's kdump formats, read through a page-table walker.
