//! The idle tasks of the CPUs other than 0. They are on no list: copy_process() links a task into
//! `init_task.tasks` only when it has a pid (kernel/fork.c, `if (likely(p->pid))`, Linux 2.6 to
//! 6.x), and fork_idle() gives the idle tasks pid 0. So the task walk from init_task (swapper/0)
//! never meets swapper/1..N; each is found through its CPU's per-CPU data instead:
//! `idle_threads` (kernel/smpboot.c, `DEFINE_PER_CPU(struct task_struct *, idle_threads)`, Linux
//! 3.10+), else `runqueues` and `struct rq`'s `idle` (kernel/sched/sched.h), each CPU's copy at
//! the symbol plus `__per_cpu_offset[cpu]` (x86_64 links per-CPU symbols at 0, arm64 at their
//! section; the sum is the address either way).

use super::layout::TaskLayout;
use super::walk::{read_task, Task};
use crate::kernel::layout::{per_cpu_offset, Layout};
use crate::mem::{read_u64, VirtRead};

/// The per-CPU pointer to CPU `cpu`'s idle task, from the kernel's own per-CPU data.
fn idle_pointer(mem: &mut dyn VirtRead, k: &dyn Layout, cpu: u32) -> Option<u64> {
    let off = per_cpu_offset(mem, k, cpu)?;
    let slot = match k.symbol("idle_threads") {
        Some(sym) => sym.wrapping_add(off),
        None => {
            let rq = k.symbol("runqueues")?.wrapping_add(off);
            rq.wrapping_add(k.member("rq", "idle")?.offset)
        }
    };
    read_u64(mem, slot).ok().filter(|&t| t != 0)
}

/// The idle tasks of `cpus` that `known` (the walked list) lacks: one per CPU whose per-CPU data
/// names a task with pid 0. A CPU whose data cannot be read (no symbols: kallsyms without data
/// symbols and no -k vmlinux) is left out, and so is a pointer that does not lead to an idle
/// task (damaged data).
pub fn idle_tasks(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    k: &dyn Layout,
    cpus: &[u32],
    known: &[Task],
) -> Vec<Task> {
    let mut out: Vec<Task> = Vec::new();
    for &cpu in cpus {
        let Some(addr) = idle_pointer(mem, k, cpu) else {
            continue;
        };
        if known.iter().chain(out.iter()).any(|t| t.addr == addr) {
            continue;
        }
        match read_task(mem, l, addr) {
            Ok(t) if t.pid == 0 => out.push(t),
            Ok(t) => log::debug!(
                "CPU {cpu}'s idle pointer {addr:#x} leads to pid {}, not an idle task",
                t.pid
            ),
            Err(e) => log::debug!("CPU {cpu}'s idle task at {addr:#x}: {e}"),
        }
    }
    out
}

/// Adds the idle tasks `idle` to the walked list `list`, after init_task (swapper/0), in CPU
/// order, as crash's `ps` shows them.
pub fn insert_idle(list: &mut Vec<Task>, mut idle: Vec<Task>) {
    idle.sort_by_key(|t| t.cpu);
    let at = list.iter().take_while(|t| t.pid == 0).count();
    for (i, t) in idle.into_iter().enumerate() {
        list.insert(at + i, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tasks::testutil::{world, x86_layout, K};

    #[test]
    fn idle_tasks_come_from_per_cpu_data() {
        let mut mem = world();
        let mut l = x86_layout();
        let layout = TaskLayout::new(&l, crate::arch::Arch::X86_64).unwrap();
        let tasks = crate::kernel::tasks::walk(&mut mem, &layout, K).unwrap();
        let init = tasks[0].clone();
        assert_eq!(init.pid, 0);
        // Without __per_cpu_offset nothing is found.
        assert!(idle_tasks(&mut mem, &layout, &l, &[0, 1], &tasks).is_empty());
        // An idle task for CPU 1: a copy of init_task's bytes elsewhere, comm swapper/1.
        let idle1 = 0xffff_8880_0777_0000u64;
        let bytes: Vec<u8> = (0..256).map(|i| mem.bytes[&(init.addr + i)]).collect();
        mem.put_bytes(idle1, &bytes);
        mem.put_bytes(idle1 + layout.comm.offset, b"swapper/1\0");
        let offsets = 0xffff_ffff_8300_0000u64;
        let idle_threads = 0x2_0178u64; // a zero-based per-CPU symbol, as on x86_64
        let cpu1 = 0xffff_8880_7f00_0000u64;
        mem.put_u64(offsets, 0xffff_8880_7e00_0000);
        mem.put_u64(offsets + 8, cpu1);
        mem.put_u64(0xffff_8880_7e00_0000 + idle_threads, init.addr);
        mem.put_u64(cpu1 + idle_threads, idle1);
        l.symbols.insert("__per_cpu_offset".into(), offsets);
        l.symbols.insert("idle_threads".into(), idle_threads);
        let found = idle_tasks(&mut mem, &layout, &l, &[0, 1], &tasks);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].addr, found[0].pid, found[0].comm.as_str()),
            (idle1, 0, "swapper/1")
        );
        // A pointer to a task with a pid is not an idle task.
        mem.put_u64(cpu1 + idle_threads, tasks[1].addr);
        assert!(idle_tasks(&mut mem, &layout, &l, &[0, 1], &tasks).is_empty());
        let mut list = tasks.clone();
        insert_idle(&mut list, found);
        assert_eq!(list[1].comm, "swapper/1");
        assert_eq!(list[2].pid, tasks[1].pid);
        // Through runqueues and rq.idle when idle_threads is not known.
        l.symbols.remove("idle_threads");
        mem.put_u64(cpu1 + 0x31c40 + 0x40, idle1);
        l.symbols.insert("runqueues".into(), 0x31c40);
        assert!(
            idle_tasks(&mut mem, &layout, &l, &[1], &tasks).is_empty(),
            "no rq.idle layout"
        );
        l.m("rq", "idle", 0x40, 8);
        let found = idle_tasks(&mut mem, &layout, &l, &[1], &tasks);
        assert_eq!(found.iter().map(|t| t.addr).collect::<Vec<_>>(), [idle1]);
        // Already known: not added twice.
        assert!(idle_tasks(&mut mem, &layout, &l, &[1], &list).is_empty());
    }
}
