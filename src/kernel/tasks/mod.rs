//! Tasks: the kernel's process list walked through `task_struct` offsets from BTF, each task's
//! registers saved at its last context switch, and the user registers at the top of its kernel
//! stack. Layout facts name the kernel source they come from; offsets are never hard-coded per
//! kernel version. One job per file:
//! - layout.rs: where things are in a task_struct on this kernel;
//! - walk.rs: reading tasks and walking the task list;
//! - saved_regs.rs: a switched-out task's registers;
//! - user_regs.rs: a user task's registers (pt_regs at the top of its stack);
//! - find.rs: a task to start from when no symbol names one;
//! - idle.rs: the idle tasks of CPUs 1..N, which are on no list.
//!
//! Thread ids for tasks are kernel/threads.rs's; `monitor ps` text is kernel/monitor.rs's.

mod find;
mod idle;
mod layout;
mod saved_regs;
mod user_regs;
mod walk;

#[cfg(test)]
pub(crate) mod testutil;

pub use find::{current_on_cpu, find_task_from_cpu, Want};
pub use idle::{idle_tasks, insert_idle};
pub use layout::{SavedLayout, TaskLayout};
pub use saved_regs::saved_registers;
pub use user_regs::{user_registers, UserRegsLayout};
pub use walk::{read_task, state_letter, walk, Task};
