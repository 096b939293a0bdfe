//! `/proc/kallsyms`, the running kernel's symbol list: where it is, and what to do when it cannot
//! be read. Its text is parsed by kernel::proc_kallsyms.

use std::fs::File;
use std::io::{self, BufReader};

pub const PATH: &str = "/proc/kallsyms";

/// The file, buffered for reading line by line.
pub fn open() -> Result<BufReader<File>, String> {
    let file = File::open(PATH).map_err(|e| read_error(&e))?;
    Ok(BufReader::with_capacity(64 << 10, file))
}

/// What went wrong reading it, with what kmemd needs.
pub fn read_error(e: &io::Error) -> String {
    format!("cannot read {PATH}: {e} (kmemd needs procfs and root)")
}

/// What to do when every address reads as zero: the kernel hides them from processes without
/// CAP_SYSLOG or under `kernel.kptr_restrict=2`.
pub fn hidden() -> String {
    let kptr = std::fs::read_to_string("/proc/sys/kernel/kptr_restrict").unwrap_or_default();
    format!(
        "{PATH} shows no addresses (all zero; kernel.kptr_restrict={}): run kmemd as root, \
         and if it still hides them, `sysctl kernel.kptr_restrict=1`",
        kptr.trim()
    )
}
