//! The idle tasks of the CPUs other than 0. They are on no list: copy_process() links a task into
//! `init_task.tasks` only when it has a pid (kernel/fork.c, `if (likely(p->pid))`, Linux 2.6 to
//! 6.x), and fork_idle() gives the idle tasks pid 0. So the task walk from init_task (swapper/0)
//! never meets swapper/1..N; each is found through its CPU's per-CPU data:
//! `idle_threads` (kernel/smpboot.c, `DEFINE_PER_CPU(struct task_struct *, idle_threads)`, Linux
//! 3.10+), else `runqueues` and `struct rq`'s `idle` (kernel/sched/sched.h), each CPU's copy at
//! the symbol plus `__per_cpu_offset[cpu]` (x86_64 links per-CPU symbols at 0, arm64 at their
//! section; the sum is the address either way). Without those symbols, through its CPU's run
//! queue, reached from a task on that CPU with types alone ([`from_run_queues`]).

use super::layout::TaskLayout;
use super::walk::{read_task, Task};
use crate::kernel::layout::{per_cpu_offset, Layout};
use crate::mem::{read_u64, read_uint, VirtRead};

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

/// The idle tasks of `cpus` that `known` (the walked list) lacks: through the per-CPU data where
/// `k` has its symbols, then through the run queues for the CPUs still without one. A CPU that
/// neither route reaches is left out, and so is a pointer that does not lead to an idle task
/// (damaged data).
pub fn idle_tasks(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    k: &dyn Layout,
    cpus: &[u32],
    known: &[Task],
) -> Vec<Task> {
    let mut out: Vec<Task> = Vec::new();
    from_per_cpu_data(mem, l, k, cpus, known, &mut out);
    from_run_queues(mem, l, k, cpus, known, &mut out);
    out
}

/// The task at `addr` when it is an idle task (pid 0) that neither `known` nor `out` lists; what
/// else it is goes to the debug log, `via` naming the pointer.
fn new_idle_task(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    (cpu, addr, via): (u32, u64, &str),
    known: &[Task],
    out: &[Task],
) -> Option<Task> {
    if known.iter().chain(out.iter()).any(|t| t.addr == addr) {
        return None;
    }
    match read_task(mem, l, addr) {
        Ok(t) if t.pid == 0 => Some(t),
        Ok(t) => {
            log::debug!(
                "CPU {cpu}'s {via} {addr:#x} leads to pid {}, not an idle task",
                t.pid
            );
            None
        }
        Err(e) => {
            log::debug!("CPU {cpu}'s idle task at {addr:#x}: {e}");
            None
        }
    }
}

/// Adds to `out` the idle task each CPU's per-CPU data names (needs the per-CPU symbols: kallsyms
/// with data symbols, or -k vmlinux).
fn from_per_cpu_data(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    k: &dyn Layout,
    cpus: &[u32],
    known: &[Task],
    out: &mut Vec<Task>,
) {
    for &cpu in cpus {
        let Some(addr) = idle_pointer(mem, k, cpu) else {
            continue;
        };
        if let Some(t) = new_idle_task(mem, l, (cpu, addr, "idle pointer"), known, out) {
            out.push(t);
        }
    }
}

/// Adds to `out` the idle tasks of the CPUs without one in `known` or `out`, found with types
/// alone: a task's `se.cfs_rq` is its group's CFS queue on its CPU, whose `rq` is that CPU's run
/// queue (CONFIG_FAIR_GROUP_SCHED, kernel/sched/sched.h), and the run queue's `idle` is the CPU's
/// idle task and its `cpu` which CPU that is. Every online CPU runs CFS kthreads bound to it
/// (ksoftirqd/N, kworker/N:M), so the walked list reaches every run queue. A live session's first
/// walk (before kallsyms is read), kernels whose kallsyms lacks data symbols and dumps without
/// -k have no per-CPU symbols. Adds nothing without those members.
fn from_run_queues(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    k: &dyn Layout,
    cpus: &[u32],
    known: &[Task],
    out: &mut Vec<Task>,
) {
    let has_idle = |cpu: u32| {
        known
            .iter()
            .chain(out.iter())
            .any(|t| t.pid == 0 && t.cpu == Some(cpu))
    };
    let mut wanted: Vec<u32> = cpus.iter().copied().filter(|&c| !has_idle(c)).collect();
    if wanted.is_empty() {
        return;
    }
    let (Some(se), Some(se_cfs_rq), Some(cfs_rq_rq), Some(rq_idle), Some(rq_cpu)) = (
        k.member("task_struct", "se"),
        k.member("sched_entity", "cfs_rq"),
        k.member("cfs_rq", "rq"),
        k.member("rq", "idle"),
        k.member("rq", "cpu"),
    ) else {
        return;
    };
    for t in known.iter().filter(|t| t.pid != 0) {
        if wanted.is_empty() {
            break;
        }
        if !t.cpu.is_some_and(|c| wanted.contains(&c)) {
            continue;
        }
        let rq = read_u64(mem, t.addr.wrapping_add(se.offset + se_cfs_rq.offset))
            .ok()
            .filter(|&q| q != 0)
            .and_then(|q| read_u64(mem, q.wrapping_add(cfs_rq_rq.offset)).ok())
            .filter(|&rq| rq != 0);
        let Some(rq) = rq else {
            continue;
        };
        // The task may have moved since its cpu was read: the run queue says which CPU it is.
        let Ok(cpu) = read_uint(mem, rq.wrapping_add(rq_cpu.offset), rq_cpu.size) else {
            continue;
        };
        let Some(cpu) = u32::try_from(cpu).ok().filter(|c| wanted.contains(c)) else {
            continue;
        };
        let Ok(addr) = read_u64(mem, rq.wrapping_add(rq_idle.offset)) else {
            continue;
        };
        let via = "run queue's idle pointer";
        if let Some(t) = new_idle_task(mem, l, (cpu, addr, via), known, out) {
            wanted.retain(|&c| c != cpu);
            out.push(t);
        }
    }
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
    use crate::kernel::tasks::testutil::{world, x86_layout, FakeLayout, FakeMem, K};

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

    /// The run-queue route alone, CPUs 0 and 1.
    fn run_queues(mem: &mut FakeMem, l: &TaskLayout, k: &FakeLayout, known: &[Task]) -> Vec<Task> {
        let mut out = Vec::new();
        from_run_queues(mem, l, k, &[0, 1], known, &mut out);
        out
    }

    #[test]
    fn idle_tasks_come_from_the_run_queue_of_a_task_on_their_cpu() {
        let mut mem = world();
        mem.put_u32(K + 20, 0); // swapper/0 on CPU 0; the world's other tasks are on CPU 1
        let mut l = x86_layout();
        let layout = TaskLayout::new(&l, crate::arch::Arch::X86_64).unwrap();
        let tasks = crate::kernel::tasks::walk(&mut mem, &layout, K).unwrap();
        let (init, worker) = (tasks[1].addr, tasks[2].addr);
        assert_eq!(tasks.iter().filter(|t| t.cpu == Some(1)).count(), tasks.len() - 1);
        let idle1 = 0xffff_8880_0777_0000u64;
        let bytes: Vec<u8> = (0..256).map(|i| mem.bytes[&(K + i)]).collect();
        mem.put_bytes(idle1, &bytes);
        mem.put_u32(idle1 + 20, 1);
        mem.put_bytes(idle1 + layout.comm.offset, b"swapper/1\0");
        // init's se.cfs_rq -> cfs_rq.rq -> rq: CPU 1's, whose idle is swapper/1.
        let (cfs1, rq1, rq0) = (
            0xffff_8880_7f01_0000u64,
            0xffff_8880_7f02_0000u64,
            0xffff_8880_7e02_0000u64,
        );
        mem.put_u64(init + 136 + 8, cfs1);
        mem.put_u64(cfs1 + 0x10, rq1);
        mem.put_u64(rq1 + 0x40, idle1);
        mem.put_u32(rq1 + 0x48, 1);
        mem.put_u64(rq0 + 0x40, K);
        mem.put_u32(rq0 + 0x48, 0);
        assert!(
            run_queues(&mut mem, &layout, &l, &tasks).is_empty(),
            "no sched_entity/cfs_rq/rq layout"
        );
        l.m("task_struct", "se", 136, 64);
        l.m("sched_entity", "cfs_rq", 8, 8);
        l.m("cfs_rq", "rq", 0x10, 8);
        l.m("rq", "idle", 0x40, 8);
        l.m("rq", "cpu", 0x48, 4);
        let found = run_queues(&mut mem, &layout, &l, &tasks);
        assert_eq!(
            found
                .iter()
                .map(|t| (t.addr, t.pid, t.cpu, t.comm.as_str()))
                .collect::<Vec<_>>(),
            [(idle1, 0, Some(1), "swapper/1")]
        );
        // init moved to CPU 0 after its cpu was read: its queue is CPU 0's, whose idle task is
        // known; the next task on CPU 1 leads to CPU 1's queue.
        mem.put_u64(cfs1 + 0x10, rq0);
        assert!(run_queues(&mut mem, &layout, &l, &tasks).is_empty());
        let cfs1b = cfs1 + 0x800;
        mem.put_u64(worker + 136 + 8, cfs1b);
        mem.put_u64(cfs1b + 0x10, rq1);
        let found = run_queues(&mut mem, &layout, &l, &tasks);
        assert_eq!(found.iter().map(|t| t.addr).collect::<Vec<_>>(), [idle1]);
        // A queue whose idle pointer leads to a task with a pid: nothing.
        mem.put_u64(rq1 + 0x40, init);
        assert!(run_queues(&mut mem, &layout, &l, &tasks).is_empty());
        // Already listed: not added twice.
        mem.put_u64(rq1 + 0x40, idle1);
        let mut list = tasks.clone();
        insert_idle(&mut list, found);
        assert!(run_queues(&mut mem, &layout, &l, &list).is_empty());
    }
}
