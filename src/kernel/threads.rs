//! GDB threads as the kernel knows them: a CPU, or a task. Kernel awareness (src/kernel/tasks/)
//! lists tasks; this file gives them thread ids and turns them into threads, and the `Target`
//! trait (src/target/mod.rs) speaks them to the server.

use super::tasks::Task;
use std::fmt::Write as _;

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

/// GDB thread ids of tasks: `TASK_TID_BASE + pid`. CPU threads are 1..=NR_CPUS (at most 8192,
/// include/linux/threads.h), so the two never collide; pids are below PID_MAX_LIMIT (2^22).
pub const TASK_TID_BASE: u64 = 0x1_0000;

pub fn task_tid(pid: i32) -> Tid {
    TASK_TID_BASE + u64::from(pid.max(0) as u32)
}

/// The pid a task thread id stands for.
pub fn tid_pid(tid: Tid) -> Option<i32> {
    tid.checked_sub(TASK_TID_BASE).and_then(|p| i32::try_from(p).ok())
}

/// One GDB thread per task: name = comm, extra = pid, state and CPU.
pub fn task_threads(tasks: &[Task]) -> Vec<ThreadInfo> {
    tasks
        .iter()
        .map(|t| {
            let mut extra = format!("pid {} {} ({}", t.pid, t.comm, t.state);
            if let Some(c) = t.cpu {
                let _ = write!(extra, ", {} CPU {c}", if t.on_cpu { "on" } else { "last on" });
            }
            extra.push(')');
            ThreadInfo {
                tid: task_tid(t.pid),
                name: t.comm.clone(),
                extra,
                core: t.cpu,
            }
        })
        .collect()
}
