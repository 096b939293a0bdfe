//! GDB threads as the kernel knows them: a CPU, or a task. Kernel awareness (src/kernel/tasks.rs)
//! lists tasks as these; the `Target` trait (src/target/mod.rs) speaks them to the server.

/// A GDB thread id. GDB reserves 0 ("any") and -1 ("all"), so ids start at 1.
pub type Tid = u64;

/// One GDB thread: a CPU, or (with kernel awareness) a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    pub tid: Tid,
    /// Short name shown by `info threads` (`qXfer:threads:read` name attribute).
    pub name: String,
    /// Longer text for `qThreadExtraInfo`, e.g. `CPU 1 (panic)`.
    pub extra: String,
    /// CPU the thread is on, when known.
    pub core: Option<u32>,
}
