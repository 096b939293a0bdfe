//! What the GDB server needs from whatever it serves: a live kernel, a crash dump, or one process
//! of a dump. The server knows RSP; a `Target` knows memory, threads and registers, never packets.

pub mod dump;
pub mod live;
pub mod process;

use crate::arch::{Arch, Registers};
/// The thread vocabulary of the trait, from kernel/ where tasks become threads.
pub use crate::kernel::threads::{ThreadInfo, Tid};
use crate::mem::{ReadError, VirtRead};

/// What a target offers GDB beyond memory and registers, said once: the server's `qSupported`
/// and its answers to the packets behind each feature follow from it (a target that lacks a
/// feature is never asked for it, and the packet gets the "not supported" reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Serves a GDB target description of its architecture (`qXfer:features:read`).
    pub target_description: bool,
    /// Lists its threads as one document (`qXfer:threads:read`), with names and cores.
    pub thread_list: bool,
}

impl Capabilities {
    /// Everything kmemd's targets offer today.
    pub const ALL: Capabilities = Capabilities {
        target_description: true,
        thread_list: true,
    };
}

/// A target's memory is its [`VirtRead`], with that trait's contract: a prefix of real bytes,
/// an error only when the first byte cannot be read, never zero-fill; the server asks again for
/// the rest. Nothing in a `Target` writes to the kernel.
pub trait Target: VirtRead {
    /// The architecture of the kernel served (a dump's, not the host's).
    fn arch(&self) -> Arch;

    /// What this target offers (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    /// The threads GDB sees, in a stable order. Never empty.
    fn threads(&mut self) -> Vec<ThreadInfo>;

    /// The thread `?` reports as stopped (a dump's crashing CPU).
    fn stop_thread(&mut self) -> Tid {
        self.threads().first().map(|t| t.tid).unwrap_or(1)
    }

    /// Registers of one thread. `Err` when the thread does not exist (any more), or when the
    /// memory that holds them cannot be read (the error keeps the memory failure's kind).
    fn registers(&mut self, tid: Tid) -> Result<Registers, ReadError>;

    /// Whether a thread listed earlier still exists (GDB's `T` packet). Targets whose threads
    /// never change (CPUs, a dump's tasks) keep the default.
    fn thread_alive(&mut self, tid: Tid) -> bool {
        let _ = tid;
        true
    }

    /// KASLR slide (runtime minus link-time kernel address), used for `qOffsets`.
    fn kaslr_offset(&self) -> Option<u64>;

    /// Target-specific `monitor` commands: `Some(Ok(text))` when `cmd` is one of them.
    /// `None` means "not mine"; the server then tries its own commands.
    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        let _ = cmd;
        None
    }

    /// One line per target-specific monitor command, for `monitor help`.
    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// Does the slow, one-time work (kernel knowledge: kallsyms decoding, BTF, the task list)
    /// before GDB connects: GDB gives each reply two seconds by default, and a first
    /// `qXfer:threads` that builds it all could take longer on a small board.
    fn prepare(&mut self) {}

    /// A short description for logs and `monitor version`, e.g. `live kernel 6.18.4`.
    fn describe(&self) -> String;
}
