//! The task list: thread-group leaders on the circular `tasks` list, each followed by its
//! threads, every task read through [`TaskLayout`].

use super::layout::{TaskLayout, Threads};
use crate::kernel::layout::Field;
use crate::mem::{read_exact, read_u64, read_uint, BufferMem, MemError, MemErrorKind, ReadError, VirtRead};
use std::collections::HashSet;

/// One task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub addr: u64,
    pub pid: i32,
    pub tgid: i32,
    pub ppid: i32,
    /// ps-style state letter (R S D T t X Z P I).
    pub state: char,
    pub cpu: Option<u32>,
    pub on_cpu: bool,
    pub comm: String,
}

fn read_field(mem: &mut dyn VirtRead, base: u64, f: Field) -> Result<u64, MemError> {
    read_uint(mem, base.wrapping_add(f.offset), f.size)
}

/// ps's letter for a task (fs/proc/array.c `task_state_array`, include/linux/sched.h
/// `__task_state_index`, Linux 4.14+): TASK_REPORT bits of state | exit_state, and TASK_IDLE
/// (TASK_UNINTERRUPTIBLE | TASK_NOLOAD) as `I`.
pub fn state_letter(state: u64, exit_state: u64) -> char {
    const TASK_IDLE: u64 = 0x0402;
    const TASK_REPORT: u64 = 0x7f;
    if state == TASK_IDLE {
        return 'I';
    }
    let bits = (state | exit_state) & TASK_REPORT;
    let index = 64 - bits.leading_zeros();
    ['R', 'S', 'D', 'T', 't', 'X', 'Z', 'P']
        .get(index as usize)
        .copied()
        .unwrap_or('?')
}

/// Upper bound on tasks walked: a damaged list must not run forever.
const MAX_TASKS: usize = 1 << 20;

/// Largest span of task_struct [`read_task`] reads at once (its fields lie within a few KiB).
const TASK_SPAN_MAX: u64 = 8192;

/// The fields of task_struct [`read_task`] reads (comm up to 64 bytes), those the layout has.
fn task_fields_read(l: &TaskLayout) -> impl Iterator<Item = Field> + Clone {
    let comm = Field {
        offset: l.comm.offset,
        size: l.comm.size.min(64),
    };
    let parent = Field {
        offset: l.real_parent,
        size: 8,
    };
    [
        Some(l.pid),
        Some(l.tgid),
        Some(comm),
        Some(l.state),
        l.exit_state,
        Some(parent),
        l.cpu,
        l.on_cpu,
    ]
    .into_iter()
    .flatten()
}

/// The offsets [start, end) in task_struct that cover every field [`read_task`] reads there.
fn task_span(l: &TaskLayout) -> Option<(u64, u64)> {
    let fields = task_fields_read(l);
    let start = fields.clone().map(|f| f.offset).min()?;
    let end = fields
        .map(|f| f.offset.saturating_add(f.size.clamp(1, 64)))
        .max()?;
    (end - start <= TASK_SPAN_MAX).then_some((start, end))
}

/// Reads one task: its own fields from one read of the span they cover (on a live kernel one
/// BPF call instead of eight; the thread list and `T`/`g` read every task), then its parent's
/// pid. A span that cannot be read is read field by field.
pub fn read_task(mem: &mut dyn VirtRead, l: &TaskLayout, addr: u64) -> Result<Task, MemError> {
    let own = match task_span(l) {
        Some((start, end)) => {
            let mut span = BufferMem {
                base: addr.wrapping_add(start),
                bytes: vec![0; (end - start) as usize],
            };
            match read_exact(mem, span.base, &mut span.bytes) {
                Ok(()) => task_fields(&mut span, l, addr),
                Err(_) => task_fields(mem, l, addr),
            }
        }
        None => task_fields(mem, l, addr),
    };
    let (mut task, parent) = own?;
    task.ppid = if parent == addr || parent == 0 {
        0
    } else {
        read_field(mem, parent, l.pid)? as u32 as i32
    };
    Ok(task)
}

/// The task at `addr` as its own fields tell it (ppid 0), and its `real_parent`.
fn task_fields(mem: &mut dyn VirtRead, l: &TaskLayout, addr: u64) -> Result<(Task, u64), MemError> {
    let pid = read_field(mem, addr, l.pid)? as u32 as i32;
    let tgid = read_field(mem, addr, l.tgid)? as u32 as i32;
    let mut comm = vec![0u8; usize::try_from(l.comm.size.min(64)).unwrap_or(16)];
    read_exact(mem, addr.wrapping_add(l.comm.offset), &mut comm)?;
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    let comm = String::from_utf8_lossy(comm.get(..end).unwrap_or_default()).into_owned();
    let state = read_field(mem, addr, l.state)?;
    let exit_state = match l.exit_state {
        Some(f) => read_field(mem, addr, f)?,
        None => 0,
    };
    let parent = read_u64(mem, addr.wrapping_add(l.real_parent))?;
    let cpu = match l.cpu {
        Some(f) => Some(read_field(mem, addr, f)? as u32),
        None => None,
    };
    let on_cpu = match l.on_cpu {
        Some(f) => read_field(mem, addr, f)? != 0,
        None => false,
    };
    let task = Task {
        addr,
        pid,
        tgid,
        ppid: 0,
        state: state_letter(state, exit_state),
        cpu,
        on_cpu,
        comm,
    };
    Ok((task, parent))
}

/// Follows a circular `list_head` from `head` (whose `next` is at `head`): the addresses of the
/// entries' `list_head`s, `head` excluded.
fn list_entries(mem: &mut dyn VirtRead, head: u64, limit: usize) -> Result<Vec<u64>, MemError> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut cur = read_u64(mem, head)?;
    while cur != head {
        if !seen.insert(cur) || out.len() >= limit {
            return Err(MemError::new(
                cur,
                MemErrorKind::Corrupt,
                "the list loops without returning to its head",
            ));
        }
        out.push(cur);
        cur = read_u64(mem, cur)?;
    }
    Ok(out)
}

/// Every task: the thread-group leaders on the circular `tasks` list through `start` (any task:
/// its group leader is used, as only leaders are on that list), each followed by its other
/// threads. `init_task` (pid 0) comes first when it is on the list.
pub fn walk(mem: &mut dyn VirtRead, l: &TaskLayout, start: u64) -> Result<Vec<Task>, ReadError> {
    let leader = read_u64(mem, start.wrapping_add(l.group_leader))
        .map_err(|e| ReadError::mem(format!("cannot read the first task at {start:#x}"), e))?;
    let leader = if leader == 0 { start } else { leader };
    let head = leader.wrapping_add(l.tasks);
    let mut leaders = vec![leader];
    leaders.extend(
        list_entries(mem, head, MAX_TASKS)
            .map_err(|e| ReadError::mem("the task list is damaged", e))?
            .into_iter()
            .map(|node| node.wrapping_sub(l.tasks)),
    );
    // Start at pid 0 (init_task) so the order is the kernel's, wherever the walk began.
    let mut tasks = Vec::with_capacity(leaders.len());
    for &t in &leaders {
        match read_task(mem, l, t) {
            Ok(task) => tasks.push(task),
            Err(e) => log::warn!("skipping the task at {t:#x}: {e}"),
        }
    }
    if let Some(i) = tasks.iter().position(|t| t.pid == 0) {
        tasks.rotate_left(i);
    }
    let mut all = Vec::with_capacity(tasks.len());
    let mut seen: HashSet<u64> = HashSet::new();
    for t in tasks {
        let threads = thread_addrs(mem, l, t.addr).unwrap_or_else(|e| {
            log::warn!("cannot list the threads of pid {} ({}): {e}", t.pid, t.comm);
            Vec::new()
        });
        seen.insert(t.addr);
        all.push(t);
        for th in threads {
            if !seen.insert(th) || all.len() >= MAX_TASKS {
                continue;
            }
            match read_task(mem, l, th) {
                Ok(task) => all.push(task),
                Err(e) => log::warn!("skipping the thread at {th:#x}: {e}"),
            }
        }
    }
    Ok(all)
}

/// Addresses of the other threads of the group `leader` leads.
fn thread_addrs(mem: &mut dyn VirtRead, l: &TaskLayout, leader: u64) -> Result<Vec<u64>, MemError> {
    match l.threads {
        Threads::SignalList { signal, head, node } => {
            let sig = read_u64(mem, leader.wrapping_add(signal))?;
            if sig == 0 {
                return Ok(Vec::new());
            }
            Ok(list_entries(mem, sig.wrapping_add(head), MAX_TASKS)?
                .into_iter()
                .map(|n| n.wrapping_sub(node))
                .filter(|&t| t != leader)
                .collect())
        }
        // thread_group links the threads in a circle without a separate head.
        Threads::GroupList { node } => Ok(list_entries(mem, leader.wrapping_add(node), MAX_TASKS)?
            .into_iter()
            .map(|n| n.wrapping_sub(node))
            .collect()),
        Threads::None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::kernel::tasks::testutil::{world, x86_layout, FakeLayout, FakeMem, K};

    #[test]
    fn walks_processes_and_threads_from_any_task() {
        let l = TaskLayout::new(&x86_layout(), Arch::X86_64).unwrap();
        let mut m = world();
        for start in [K, K + 0x3000, K + 0x1000] {
            let tasks = walk(&mut m, &l, start).unwrap();
            let got: Vec<(i32, i32, i32, char, &str)> = tasks
                .iter()
                .map(|t| (t.pid, t.tgid, t.ppid, t.state, t.comm.as_str()))
                .collect();
            assert_eq!(
                got,
                vec![
                    (0, 0, 0, 'R', "swapper/0"),
                    (1, 1, 0, 'S', "init"),
                    (7, 7, 1, 'I', "worker"),
                    (8, 7, 1, 'D', "worker-2"),
                ],
                "start {start:#x}"
            );
            assert_eq!(tasks[3].addr, K + 0x3000);
            assert_eq!(tasks[0].cpu, Some(1));
        }
        let ps = crate::kernel::monitor::ps_text(&walk(&mut m, &l, K).unwrap());
        assert!(ps.lines().nth(2).unwrap().contains("      1       0  S"), "{ps}");
    }

    /// Counts the reads it passes to a FakeMem.
    struct Counted(FakeMem, usize);
    impl VirtRead for Counted {
        fn read_virt(&mut self, addr: crate::mem::VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
            self.1 += 1;
            self.0.read_virt(addr, buf)
        }
    }

    #[test]
    fn a_task_is_read_in_one_span_and_its_parents_pid() {
        let l = TaskLayout::new(&x86_layout(), Arch::X86_64).unwrap();
        let want = walk(&mut world(), &l, K).unwrap();
        let mut m = Counted(world(), 0);
        assert_eq!(walk(&mut m, &l, K).unwrap(), want);
        let init = want.iter().find(|t| t.pid == 1).unwrap();
        m.1 = 0;
        assert_eq!(&read_task(&mut m, &l, init.addr).unwrap(), init);
        assert_eq!(m.1, 2, "the task's span, then its parent's pid");
        // A hole in the span between the fields: read field by field, the same task.
        let (start, end) = task_span(&l).unwrap();
        let fields: Vec<Field> = task_fields_read(&l).collect();
        let gap = (start..end)
            .find(|o| !fields.iter().any(|f| (f.offset..f.offset + f.size).contains(o)))
            .expect("a byte of the span in no field");
        m.0.bytes.remove(&(init.addr + gap));
        m.1 = 0;
        assert_eq!(&read_task(&mut m, &l, init.addr).unwrap(), init);
        assert!(m.1 > 2, "field by field: {}", m.1);
    }

    #[test]
    fn damaged_lists_are_errors_not_hangs() {
        let l = TaskLayout::new(&x86_layout(), Arch::X86_64).unwrap();
        let mut m = world();
        // init's `next` points back at itself: the circle never returns to init_task.
        m.put_u64(K + 0x1000 + 32, K + 0x1000 + 32);
        let e = walk(&mut m, &l, K).unwrap_err();
        assert_eq!(e.kind(), Some(MemErrorKind::Corrupt), "{e}");
        assert!(e.to_string().contains("damaged"), "{e}");
        let mut empty = FakeMem::default();
        assert!(walk(&mut empty, &l, K).is_err());
        let e = TaskLayout::new(&FakeLayout::default(), Arch::X86_64).unwrap_err();
        assert!(e.contains("task_struct.tasks"), "{e}");
    }

    #[test]
    fn states_match_ps() {
        assert_eq!(state_letter(0, 0), 'R');
        assert_eq!(state_letter(1, 0), 'S');
        assert_eq!(state_letter(2, 0), 'D');
        assert_eq!(state_letter(0x402, 0), 'I');
        assert_eq!(state_letter(0x80, 0x20), 'Z');
        assert_eq!(state_letter(0x80, 0x10), 'X');
        assert_eq!(state_letter(8, 0), 't');
    }
}
