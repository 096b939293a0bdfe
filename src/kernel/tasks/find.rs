//! A task to start the task walk from when no symbol names one: the owner of the kernel stack a
//! CPU's saved stack pointer points into.

use super::layout::TaskLayout;
use crate::mem::{read_available, read_u64, read_uint, MemError, VirtRead};
use std::collections::HashSet;

/// Largest THREAD_SIZE of the supported kernels (arm64 and x86_64 with KASAN: 32 KiB).
const MAX_THREAD_SIZE: u64 = 32 << 10;

/// What a candidate must be besides the owner of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// On the task list: its `tasks` list is consistent (next->prev points back).
    Listed,
    /// An idle task: pid 0. Idle tasks are on no list (fork_idle copies the `tasks` member of
    /// the task that forked them and never links it), so the list cannot vouch for them.
    Idle,
}

/// Whether `cand` is a task_struct whose kernel stack holds `sp` and that is what `want` asks.
fn is_task_of_stack(mem: &mut dyn VirtRead, l: &TaskLayout, cand: u64, sp: u64, want: Want) -> bool {
    let Some(stack_off) = l.stack else { return false };
    let mut ok = || -> Result<bool, MemError> {
        let stack = read_u64(mem, cand.wrapping_add(stack_off))?;
        if stack == 0 || sp < stack || sp - stack >= MAX_THREAD_SIZE {
            return Ok(false);
        }
        let pid = read_uint(mem, cand.wrapping_add(l.pid.offset), 4)?;
        if pid >= 1 << 22 {
            return Ok(false);
        }
        if want == Want::Idle {
            return Ok(pid == 0);
        }
        let node = cand.wrapping_add(l.tasks);
        let next = read_u64(mem, node)?;
        Ok(read_u64(mem, next.wrapping_add(8))? == node)
    };
    ok().unwrap_or(false)
}

/// A task that owns the kernel stack a CPU's saved `sp` points into: one on the task list
/// ([`Want::Listed`]: where the walk starts when no `init_task` symbol is known) or an idle task
/// ([`Want::Idle`]: an idle CPU's own, which no list holds).
///
/// A start task is needed with kallsyms without CONFIG_KALLSYMS_ALL (e.g. Debian arm64). The
/// owner's address is among the CPU's registers or the words on that stack (every
/// kernel function that uses `current` more than once keeps it in a callee-saved register, which
/// deeper calls spill to the stack); a candidate counts only when its `stack` member covers `sp`
/// and it is what `want` asks (its `tasks` list links back to it; or its pid is 0).
pub fn find_task_from_cpu(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    kernel_start: u64,
    sp: u64,
    regs: &[u64],
    want: Want,
) -> Option<u64> {
    if sp < kernel_start {
        return None;
    }
    let mut cands: Vec<u64> = regs.to_vec();
    let top = (sp | (MAX_THREAD_SIZE - 1)).wrapping_add(1);
    let mut buf = vec![0u8; usize::try_from(top.wrapping_sub(sp & !7).min(MAX_THREAD_SIZE)).unwrap_or(0)];
    let got = read_available(mem, sp & !7, &mut buf);
    cands.extend(
        buf.get(..got)
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))),
    );
    let mut seen = HashSet::new();
    cands
        .into_iter()
        .filter(|&c| c >= kernel_start && c % 8 == 0 && seen.insert(c))
        .find(|&c| is_task_of_stack(mem, l, c, sp, want))
}

/// The task a CPU runs (`cpu_rq(cpu)->curr`, idle tasks included): `runqueues` is a per-CPU
/// variable, so that CPU's copy is at `&runqueues + __per_cpu_offset[cpu]`
/// (include/asm-generic/percpu.h; kernel/sched/sched.h `struct rq`, Linux 6.1). `None` when the
/// symbols or `rq.curr` are unknown (kallsyms without data symbols and no -k vmlinux) or the
/// memory cannot be read.
pub fn current_on_cpu(mem: &mut dyn VirtRead, k: &crate::kernel::KernelInfo, cpu: u32) -> Option<u64> {
    let rq = k.symbol("runqueues")?;
    let curr = k.member("rq", "curr")?.offset();
    let off = crate::kernel::layout::per_cpu_offset(mem, k, cpu)?;
    let task = read_u64(mem, rq.wrapping_add(off).wrapping_add(curr)).ok()?;
    (task != 0).then_some(task)
}
