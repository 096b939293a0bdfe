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

/// GDB thread ids of the idle tasks of CPUs 1..N (all pid 0, like init_task, which keeps
/// `task_tid(0)`): `IDLE_TID_BASE + cpu`, past every pid's task id.
pub const IDLE_TID_BASE: u64 = TASK_TID_BASE + (1 << 22);

/// A task's thread id: by pid, or by CPU for the idle tasks of CPUs other than 0.
pub fn thread_tid(t: &Task) -> Tid {
    match (t.pid, t.cpu) {
        (0, Some(c)) if c > 0 => IDLE_TID_BASE + u64::from(c),
        _ => task_tid(t.pid),
    }
}

/// Whether a thread id is a task's (not a CPU's).
pub fn is_task_tid(tid: Tid) -> bool {
    tid >= TASK_TID_BASE
}

/// The task a thread id stands for, in `tasks`.
pub fn find_task(tasks: &[Task], tid: Tid) -> Option<&Task> {
    tasks.iter().find(|t| thread_tid(t) == tid)
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
                tid: thread_tid(t),
                name: t.comm.clone(),
                extra,
                core: t.cpu,
            }
        })
        .collect()
}
