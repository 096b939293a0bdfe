//! Tasks: the kernel's process list walked through `task_struct` offsets from BTF, each task's
//! registers saved at its last context switch, and the user registers at the top of its kernel
//! stack. Layout facts name the kernel source they come from; offsets are never hard-coded per
//! kernel version.

use crate::arch::{Arch, Registers, SwitchFrame};
use crate::mem::{MemError, MemErrorKind};
use std::collections::HashSet;

use crate::mem::{read_available, read_exact, read_u64, read_uint, ReadError, VirtRead};
use std::fmt::Write as _;

/// A struct member: byte offset and size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u64,
    pub size: u64,
}

/// What the kernel's layout knowledge (BTF, kallsyms, VMCOREINFO) answers. Implemented by
/// `KernelInfo`; tests implement it with a table.
pub trait Layout {
    /// A kernel symbol's runtime address.
    fn symbol(&self, name: &str) -> Option<u64>;
    /// `member(struct, member)`, looking through anonymous unions and structs.
    fn member(&self, st: &str, member: &str) -> Option<Field>;
    /// Size in bytes of a struct (or other named type).
    fn size_of(&self, ty: &str) -> Option<u64>;
}

impl Layout for super::KernelInfo {
    fn symbol(&self, name: &str) -> Option<u64> {
        super::KernelInfo::symbol(self, name)
    }
    fn member(&self, st: &str, member: &str) -> Option<Field> {
        let m = super::KernelInfo::member(self, st, member)?;
        Some(Field {
            offset: m.offset(),
            size: m.size,
        })
    }
    fn size_of(&self, ty: &str) -> Option<u64> {
        super::KernelInfo::size_of(self, ty)
    }
}

/// The task_struct (and friends) offsets the task walk needs.
#[derive(Debug, Clone)]
pub struct TaskLayout {
    tasks: u64,
    pid: Field,
    tgid: Field,
    comm: Field,
    state: Field,
    exit_state: Option<Field>,
    real_parent: u64,
    group_leader: u64,
    /// `thread_info.cpu` (Linux 5.16+ with THREAD_INFO_IN_TASK) or `task_struct.cpu` (5.3-5.15).
    cpu: Option<Field>,
    on_cpu: Option<Field>,
    /// signal->thread_head / task->thread_node (Linux 3.14+), else task->thread_group (< 6.7).
    threads: Threads,
    mm: Option<u64>,
    stack: Option<u64>,
    pub saved: SavedLayout,
}

#[derive(Debug, Clone)]
enum Threads {
    SignalList { signal: u64, head: u64, node: u64 },
    GroupList { node: u64 },
    None,
}

/// Where a switched-out task's registers are: the architecture's [`SwitchFrame`] with the
/// offsets BTF gives.
#[derive(Debug, Clone)]
pub enum SavedLayout {
    /// `thread.<sp_member>` (at `thread_sp` in the task) points at a frame of `frame_size` bytes
    /// holding `frame` (register, offset).
    OnStack {
        sp_member: &'static str,
        thread_sp: u64,
        frame: Vec<(&'static str, u64)>,
        frame_size: u64,
        /// The user fs base (register, offset in the task), where the architecture has one.
        fsbase: Option<(&'static str, u64)>,
    },
    /// `thread.<member>` (at `context` in the task) holds `regs` (register, offset into it).
    InThread {
        member: &'static str,
        context: u64,
        regs: Vec<(&'static str, u64)>,
        copies: &'static [(&'static str, &'static str)],
    },
    None(String),
}

fn need(l: &dyn Layout, st: &str, m: &str, missing: &mut Vec<String>) -> Field {
    l.member(st, m).unwrap_or_else(|| {
        missing.push(format!("{st}.{m}"));
        Field { offset: 0, size: 0 }
    })
}

impl TaskLayout {
    /// Offsets from `l`; `Err` names what is missing (the CPU-only view still works then).
    pub fn new(l: &dyn Layout, arch: Arch) -> Result<TaskLayout, String> {
        let mut missing = Vec::new();
        let ts = "task_struct";
        let tasks = need(l, ts, "tasks", &mut missing).offset;
        let pid = need(l, ts, "pid", &mut missing);
        let tgid = need(l, ts, "tgid", &mut missing);
        let comm = need(l, ts, "comm", &mut missing);
        // `__state` since Linux 5.14 (2f064a59a11f), `state` before.
        let state = l
            .member(ts, "__state")
            .or_else(|| l.member(ts, "state"))
            .unwrap_or_else(|| {
                missing.push("task_struct.__state".into());
                Field { offset: 0, size: 0 }
            });
        let real_parent = need(l, ts, "real_parent", &mut missing).offset;
        let group_leader = need(l, ts, "group_leader", &mut missing).offset;
        if !missing.is_empty() {
            return Err(format!(
                "the kernel's type information lacks {}: tasks cannot be listed",
                missing.join(", ")
            ));
        }
        let cpu = match (l.member(ts, "thread_info"), l.member("thread_info", "cpu")) {
            (Some(ti), Some(c)) => Some(Field {
                offset: ti.offset + c.offset,
                size: c.size,
            }),
            _ => l.member(ts, "cpu"),
        };
        let threads = match (
            l.member(ts, "signal"),
            l.member("signal_struct", "thread_head"),
            l.member(ts, "thread_node"),
        ) {
            (Some(s), Some(h), Some(n)) => Threads::SignalList {
                signal: s.offset,
                head: h.offset,
                node: n.offset,
            },
            _ => match l.member(ts, "thread_group") {
                Some(g) => Threads::GroupList { node: g.offset },
                None => Threads::None,
            },
        };
        let thread = l.member(ts, "thread").map(|f| f.offset);
        let fsbase = arch.thread_fsbase().and_then(|(m, reg)| {
            let th = thread?;
            Some((reg, th + l.member("thread_struct", m)?.offset))
        });
        let saved = match (arch.switch_frame(), thread) {
            (_, None) => SavedLayout::None("task_struct.thread".into()),
            (
                SwitchFrame::OnStack {
                    sp_member,
                    frame_struct,
                    members,
                },
                Some(th),
            ) => match (l.member("thread_struct", sp_member), l.size_of(frame_struct)) {
                (Some(sp), Some(size)) => SavedLayout::OnStack {
                    sp_member,
                    thread_sp: th + sp.offset,
                    frame: members
                        .iter()
                        .filter_map(|(m, reg)| Some((*reg, l.member(frame_struct, m)?.offset)))
                        .collect(),
                    frame_size: size,
                    fsbase,
                },
                _ => SavedLayout::None(format!("thread_struct.{sp_member} or struct {frame_struct}")),
            },
            (
                SwitchFrame::InThread {
                    member,
                    strukt,
                    members,
                    copies,
                },
                Some(th),
            ) => match l.member("thread_struct", member) {
                Some(cc) => SavedLayout::InThread {
                    member,
                    context: th + cc.offset,
                    regs: members
                        .iter()
                        .filter_map(|(m, reg)| Some((*reg, l.member(strukt, m)?.offset)))
                        .collect(),
                    copies,
                },
                None => SavedLayout::None(format!("thread_struct.{member}")),
            },
        };
        Ok(TaskLayout {
            tasks,
            pid,
            tgid,
            comm,
            state,
            exit_state: l.member(ts, "exit_state"),
            real_parent,
            group_leader,
            cpu,
            on_cpu: l.member(ts, "on_cpu"),
            threads,
            mm: l.member(ts, "mm").map(|f| f.offset),
            stack: l.member(ts, "stack").map(|f| f.offset),
            saved,
        })
    }

    pub fn mm_offset(&self) -> Option<u64> {
        self.mm
    }

    /// The mm_struct of a task (0 for kernel threads).
    pub fn mm_of(&self, mem: &mut dyn VirtRead, task: u64) -> Result<u64, ReadError> {
        let off = self.mm.ok_or("task_struct.mm is unknown")?;
        read_u64(mem, task.wrapping_add(off))
            .map_err(|e| ReadError::mem(format!("cannot read task {task:#x}'s mm"), e))
    }

    pub fn stack_offset(&self) -> Option<u64> {
        self.stack
    }
}

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

/// Reads one task.
pub fn read_task(mem: &mut dyn VirtRead, l: &TaskLayout, addr: u64) -> Result<Task, MemError> {
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
    let ppid = if parent == addr || parent == 0 {
        0
    } else {
        read_field(mem, parent, l.pid)? as u32 as i32
    };
    let cpu = match l.cpu {
        Some(f) => Some(read_field(mem, addr, f)? as u32),
        None => None,
    };
    let on_cpu = match l.on_cpu {
        Some(f) => read_field(mem, addr, f)? != 0,
        None => false,
    };
    Ok(Task {
        addr,
        pid,
        tgid,
        ppid,
        state: state_letter(state, exit_state),
        cpu,
        on_cpu,
        comm,
    })
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

/// Where a task's user registers are: `struct pt_regs` at the top of its kernel stack
/// (`task_pt_regs()`: x86_64 arch/x86/include/asm/processor.h, arm64 asm/processor.h), member
/// offsets from BTF by name, mapped to GDB register names.
#[derive(Debug, Clone)]
pub struct UserRegsLayout {
    pub size: u64,
    pub regs: Vec<(&'static str, u64)>,
    /// The user fs base (register, offset in the task), where the architecture has one.
    pub fsbase: Option<(&'static str, u64)>,
}

impl UserRegsLayout {
    pub fn new(l: &dyn Layout, arch: Arch) -> Result<UserRegsLayout, String> {
        let size = l
            .size_of("pt_regs")
            .ok_or("the kernel's type information has no struct pt_regs: user registers are unavailable")?;
        let mut regs = Vec::new();
        let pt = arch.pt_regs();
        if let Some((array, names)) = pt.array {
            if let Some(f) = l.member("pt_regs", array) {
                for (i, r) in names.iter().enumerate() {
                    regs.push((*r, f.offset + 8 * i as u64));
                }
            }
        }
        for (m, r) in pt.members {
            if let Some(f) = l.member("pt_regs", m) {
                regs.push((*r, f.offset));
            }
        }
        if regs.len() < 8 {
            return Err("the kernel's struct pt_regs has none of the expected members".into());
        }
        let fsbase = arch.thread_fsbase().and_then(|(m, reg)| {
            let t = l.member("task_struct", "thread")?;
            Some((reg, t.offset + l.member("thread_struct", m)?.offset))
        });
        Ok(UserRegsLayout { size, regs, fsbase })
    }
}

/// A user task's registers from the `pt_regs` at the top of its kernel stack. THREAD_SIZE is not
/// in BTF: 16 KiB (both arches without KASAN) is tried first, then 32 KiB, and the one whose
/// frame holds user-mode state wins (x86_64 `cs` = __USER_CS 0x33; arm64 PSTATE.M = EL0t).
pub fn user_registers(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    u: &UserRegsLayout,
    arch: Arch,
    task: u64,
) -> Result<Registers, ReadError> {
    let stack_off = l
        .stack
        .ok_or("task_struct.stack is unknown: user registers are unavailable")?;
    let stack = read_u64(mem, task.wrapping_add(stack_off))
        .map_err(|e| ReadError::mem(format!("cannot read task {task:#x}'s stack pointer"), e))?;
    let mut last = String::from("no stack");
    for thread_size in [16u64 << 10, 32 << 10] {
        let base = stack.wrapping_add(thread_size).wrapping_sub(u.size);
        let mut regs = vec![None; arch.registers().len()];
        let mut user_mode = false;
        let mut ok = true;
        for (name, off) in &u.regs {
            match read_u64(mem, base.wrapping_add(*off)) {
                Ok(v) => {
                    if let Some(user) = arch.is_user_mode(name, v) {
                        user_mode = user;
                    }
                    if let Some(slot) = arch.reg_index(name).and_then(|i| regs.get_mut(i)) {
                        *slot = Some(v);
                    }
                }
                Err(e) => {
                    last = format!("cannot read pt_regs at {base:#x}: {e}");
                    ok = false;
                    break;
                }
            }
        }
        if ok && user_mode {
            if let Some((reg, fs)) = u.fsbase {
                if let (Ok(v), Some(i)) = (read_u64(mem, task.wrapping_add(fs)), arch.reg_index(reg)) {
                    if let Some(slot) = regs.get_mut(i) {
                        *slot = Some(v);
                    }
                }
            }
            return Ok(Registers(regs));
        }
        if ok {
            last = format!(
                "no user-mode pt_regs at the top of the {}-KiB stack at {stack:#x}",
                thread_size >> 10
            );
        }
    }
    Err(format!("task {task:#x}: {last} (a kernel thread has no user registers)").into())
}

/// Largest THREAD_SIZE of the supported kernels (arm64 and x86_64 with KASAN: 32 KiB).
const MAX_THREAD_SIZE: u64 = 32 << 10;

/// Whether `cand` is a task_struct whose kernel stack holds `sp` and whose `tasks` list is
/// consistent (next->prev points back).
fn is_task_of_stack(mem: &mut dyn VirtRead, l: &TaskLayout, cand: u64, sp: u64) -> bool {
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
        let node = cand.wrapping_add(l.tasks);
        let next = read_u64(mem, node)?;
        Ok(read_u64(mem, next.wrapping_add(8))? == node)
    };
    ok().unwrap_or(false)
}

/// A task to start the walk from when no `init_task` symbol is known (kallsyms without
/// CONFIG_KALLSYMS_ALL, e.g. Debian arm64): the task that owns the kernel stack a CPU's saved
/// `sp` points into. Its address is among the CPU's registers or the words on that stack (every
/// kernel function that uses `current` more than once keeps it in a callee-saved register, which
/// deeper calls spill to the stack); a candidate counts only when its `stack` member covers `sp`
/// and its `tasks` list links back to it.
pub fn find_task_from_cpu(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    kernel_start: u64,
    sp: u64,
    regs: &[u64],
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
        .find(|&c| is_task_of_stack(mem, l, c, sp))
}

/// GDB thread ids of tasks: `TASK_TID_BASE + pid`. CPU threads are 1..=NR_CPUS (at most 8192,
/// include/linux/threads.h), so the two never collide; pids are below PID_MAX_LIMIT (2^22).
pub const TASK_TID_BASE: u64 = 0x1_0000;

pub fn task_tid(pid: i32) -> super::threads::Tid {
    TASK_TID_BASE + u64::from(pid.max(0) as u32)
}

/// The pid a task thread id stands for.
pub fn tid_pid(tid: super::threads::Tid) -> Option<i32> {
    tid.checked_sub(TASK_TID_BASE).and_then(|p| i32::try_from(p).ok())
}

/// One GDB thread per task: name = comm, extra = pid, state and CPU.
pub fn task_threads(tasks: &[Task]) -> Vec<super::threads::ThreadInfo> {
    tasks
        .iter()
        .map(|t| {
            let mut extra = format!("pid {} {} ({}", t.pid, t.comm, t.state);
            if let Some(c) = t.cpu {
                let _ = write!(extra, ", {} CPU {c}", if t.on_cpu { "on" } else { "last on" });
            }
            extra.push(')');
            super::threads::ThreadInfo {
                tid: task_tid(t.pid),
                name: t.comm.clone(),
                extra,
                core: t.cpu,
            }
        })
        .collect()
}

/// `monitor sym NAME|ADDR`: a name's address, or the symbol+offset at an address.
pub fn sym_text(l: &super::KernelInfo, arg: &str) -> Result<String, String> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err("usage: monitor sym NAME|ADDR".into());
    }
    if let Some(a) = l.symbol(arg) {
        return Ok(format!("{arg} = {a:#x}\n"));
    }
    match crate::mem::parse_addr(arg) {
        Ok(addr) => match l.symbolize(addr) {
            Some((name, 0)) => Ok(format!("{addr:#x} = {name}\n")),
            Some((name, off)) => Ok(format!("{addr:#x} = {name}+{off:#x}\n")),
            None => Err(format!("no symbol at or below {addr:#x}")),
        },
        Err(_) => Err(format!(
            "no symbol {arg} (kallsyms without CONFIG_KALLSYMS_ALL has no data symbols; -k vmlinux has all)"
        )),
    }
}

/// `monitor ps` text.
pub fn ps_text(tasks: &[Task]) -> String {
    let mut out = format!(
        "{:>7} {:>7} {:>2} {:>4} {:<16} {:>18}\n",
        "PID", "PPID", "ST", "CPU", "COMM", "TASK"
    );
    for t in tasks {
        let cpu = t.cpu.map_or("-".to_string(), |c| c.to_string());
        let run = if t.on_cpu { ">" } else { " " };
        let _ = writeln!(
            out,
            "{:>7} {:>7} {:>2} {:>3}{run} {:<16} {:#018x}",
            t.pid, t.ppid, t.state, cpu, t.comm, t.addr
        );
    }
    out
}

/// Registers a switched-out task saved at its last context switch, in `arch`'s GDB order.
pub fn saved_registers(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    arch: Arch,
    task: u64,
) -> Result<Registers, ReadError> {
    let mut regs = vec![None; arch.registers().len()];
    let mut set = |name: &str, v: u64| {
        if let Some(i) = arch.reg_index(name) {
            if let Some(slot) = regs.get_mut(i) {
                *slot = Some(v);
            }
        }
    };
    match &l.saved {
        SavedLayout::OnStack {
            sp_member,
            thread_sp,
            frame,
            frame_size,
            fsbase,
        } => {
            let sp = read_u64(mem, task.wrapping_add(*thread_sp)).map_err(|e| {
                ReadError::mem(format!("cannot read thread.{sp_member} of task {task:#x}"), e)
            })?;
            for (reg, off) in frame {
                let v = read_u64(mem, sp.wrapping_add(*off)).map_err(|e| {
                    ReadError::mem(format!("cannot read the switch frame of task {task:#x}"), e)
                })?;
                set(reg, v);
            }
            // The switch returns with the frame popped.
            if let Some(sp_reg) = arch.sp_index().and_then(|i| arch.registers().get(i)) {
                set(&sp_reg.name, sp.wrapping_add(*frame_size));
            }
            if let Some((reg, fs)) = fsbase {
                if let Ok(v) = read_u64(mem, task.wrapping_add(*fs)) {
                    set(reg, v);
                }
            }
        }
        SavedLayout::InThread {
            member,
            context,
            regs: list,
            copies,
        } => {
            let mut read = Vec::with_capacity(list.len());
            for (reg, off) in list {
                let v = read_u64(mem, task.wrapping_add(context + off)).map_err(|e| {
                    ReadError::mem(format!("cannot read thread.{member} of task {task:#x}"), e)
                })?;
                set(reg, v);
                read.push((*reg, v));
            }
            for (to, from) in copies.iter() {
                if let Some((_, v)) = read.iter().find(|(r, _)| r == from) {
                    set(to, *v);
                }
            }
        }
        SavedLayout::None(what) => {
            return Err(format!(
                "the kernel's type information lacks {what}: saved task registers are unavailable"
            )
            .into())
        }
    }
    Ok(Registers(regs))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mem::VirtAddr;
    use std::collections::HashMap;

    /// Sparse kernel memory for tests: bytes by address.
    #[derive(Default)]
    pub struct FakeMem {
        pub bytes: HashMap<u64, u8>,
    }

    impl FakeMem {
        pub fn put_bytes(&mut self, addr: u64, b: &[u8]) {
            for (i, &v) in b.iter().enumerate() {
                self.bytes.insert(addr + i as u64, v);
            }
        }
        pub fn put_u64(&mut self, addr: u64, v: u64) {
            self.put_bytes(addr, &v.to_le_bytes());
        }
        pub fn put_u32(&mut self, addr: u64, v: u32) {
            self.put_bytes(addr, &v.to_le_bytes());
        }
        pub fn put_u16(&mut self, addr: u64, v: u16) {
            self.put_bytes(addr, &v.to_le_bytes());
        }
    }

    impl VirtRead for FakeMem {
        fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
            let addr = addr.0;
            let mut n = 0;
            for (i, b) in buf.iter_mut().enumerate() {
                match self.bytes.get(&(addr + i as u64)) {
                    Some(v) => *b = *v,
                    None => break,
                }
                n += 1;
            }
            if n == 0 {
                Err(MemError::new(addr, MemErrorKind::NotInDump, "not in the fake"))
            } else {
                Ok(n)
            }
        }
    }

    /// A table layout.
    #[derive(Default)]
    pub struct FakeLayout {
        pub members: HashMap<(String, String), Field>,
        pub sizes: HashMap<String, u64>,
        pub symbols: HashMap<String, u64>,
    }

    impl FakeLayout {
        pub fn m(&mut self, st: &str, m: &str, offset: u64, size: u64) {
            self.members.insert((st.into(), m.into()), Field { offset, size });
        }
    }

    impl Layout for FakeLayout {
        fn symbol(&self, name: &str) -> Option<u64> {
            self.symbols.get(name).copied()
        }
        fn member(&self, st: &str, m: &str) -> Option<Field> {
            self.members.get(&(st.to_string(), m.to_string())).copied()
        }
        fn size_of(&self, ty: &str) -> Option<u64> {
            self.sizes.get(ty).copied()
        }
    }

    pub fn x86_layout() -> FakeLayout {
        let mut l = FakeLayout::default();
        let ts = "task_struct";
        l.m(ts, "thread_info", 0, 24);
        l.m("thread_info", "cpu", 20, 4);
        l.m(ts, "__state", 24, 4);
        l.m(ts, "on_cpu", 28, 4);
        l.m(ts, "tasks", 32, 16);
        l.m(ts, "exit_state", 48, 4);
        l.m(ts, "pid", 52, 4);
        l.m(ts, "tgid", 56, 4);
        l.m(ts, "real_parent", 64, 8);
        l.m(ts, "group_leader", 72, 8);
        l.m(ts, "thread_node", 80, 16);
        l.m(ts, "signal", 96, 8);
        l.m(ts, "comm", 104, 16);
        l.m(ts, "mm", 120, 8);
        l.m(ts, "stack", 128, 8);
        l.m(ts, "thread", 192, 64);
        l.m("thread_struct", "sp", 8, 8);
        l.m("signal_struct", "thread_head", 16, 16);
        for (i, n) in ["r15", "r14", "r13", "r12", "bx", "bp", "ret_addr"]
            .iter()
            .enumerate()
        {
            l.m("inactive_task_frame", n, i as u64 * 8, 8);
        }
        l.sizes.insert("inactive_task_frame".into(), 56);
        l
    }

    const K: u64 = 0xffff_8880_0000_0000;

    /// Writes a task at `addr`; links are set by the caller.
    #[allow(clippy::too_many_arguments)]
    fn task(
        m: &mut FakeMem,
        addr: u64,
        pid: u32,
        tgid: u32,
        parent: u64,
        leader: u64,
        comm: &str,
        state: u32,
    ) {
        m.put_bytes(addr, &[0u8; 256]);
        m.put_u32(addr + 20, 1);
        m.put_u32(addr + 24, state);
        m.put_u32(addr + 52, pid);
        m.put_u32(addr + 56, tgid);
        m.put_u64(addr + 64, parent);
        m.put_u64(addr + 72, leader);
        m.put_bytes(addr + 104, comm.as_bytes());
    }

    fn link(m: &mut FakeMem, nodes: &[u64]) {
        for (i, &n) in nodes.iter().enumerate() {
            m.put_u64(n, nodes[(i + 1) % nodes.len()]);
            m.put_u64(n + 8, nodes[(i + nodes.len() - 1) % nodes.len()]);
        }
    }

    /// init_task (0), init (1), a two-threaded process 7 (threads 7 and 8).
    pub fn world() -> FakeMem {
        let mut m = FakeMem::default();
        let (t0, t1, t7, t8) = (K, K + 0x1000, K + 0x2000, K + 0x3000);
        let (s0, s1, s7) = (K + 0x10000, K + 0x11000, K + 0x12000);
        task(&mut m, t0, 0, 0, t0, t0, "swapper/0", 0);
        task(&mut m, t1, 1, 1, t0, t1, "init", 1);
        task(&mut m, t7, 7, 7, t1, t7, "worker", 0x402);
        task(&mut m, t8, 8, 7, t1, t7, "worker-2", 2);
        link(&mut m, &[t0 + 32, t1 + 32, t7 + 32]);
        for (t, s) in [(t0, s0), (t1, s1), (t7, s7), (t8, s7)] {
            m.put_u64(t + 96, s);
        }
        link(&mut m, &[s0 + 16, t0 + 80]);
        link(&mut m, &[s1 + 16, t1 + 80]);
        link(&mut m, &[s7 + 16, t7 + 80, t8 + 80]);
        m
    }

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
        let ps = ps_text(&walk(&mut m, &l, K).unwrap());
        assert!(ps.lines().nth(2).unwrap().contains("      1       0  S"), "{ps}");
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

    #[test]
    fn user_registers_find_the_user_frame_at_the_top_of_the_stack() {
        let mut fl = x86_layout();
        for (i, n) in [
            "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
            "orig_ax", "ip", "cs", "flags", "sp", "ss",
        ]
        .iter()
        .enumerate()
        {
            fl.m("pt_regs", n, i as u64 * 8, 8);
        }
        fl.sizes.insert("pt_regs".into(), 168);
        let l = TaskLayout::new(&fl, Arch::X86_64).unwrap();
        let u = UserRegsLayout::new(&fl, Arch::X86_64).unwrap();
        let mut m = world();
        let t = K + 0x1000;
        let stack = K + 0x80000;
        m.put_u64(t + 128, stack);
        // A 32 KiB stack: the 16 KiB guess finds kernel data there (cs 0x10), not user state.
        m.put_bytes(stack, &[0u8; 32 << 10]);
        let top16 = stack + (16 << 10) - 168;
        m.put_u64(top16 + 17 * 8, 0x10);
        let top = stack + (32 << 10) - 168;
        m.put_u64(top + 16 * 8, 0x40_1234);
        m.put_u64(top + 17 * 8, 0x33);
        m.put_u64(top + 19 * 8, 0x7ffd_0000_1000);
        m.put_u64(top + 10 * 8, 0xfffffffffffffe00);
        let r = user_registers(&mut m, &l, &u, Arch::X86_64, t).unwrap();
        let get = |n: &str| r.0[Arch::X86_64.reg_index(n).unwrap()];
        assert_eq!(get("rip"), Some(0x40_1234));
        assert_eq!(get("rsp"), Some(0x7ffd_0000_1000));
        assert_eq!(get("rax"), Some(0xfffffffffffffe00));
        // Neither size holds a user frame: a kernel thread.
        m.put_u64(top + 17 * 8, 0x10);
        let e = user_registers(&mut m, &l, &u, Arch::X86_64, t).unwrap_err();
        assert_eq!(e.kind(), None, "the stack was read: {e}");
        assert!(e.to_string().contains("kernel thread"), "{e}");
    }

    #[test]
    fn x86_switch_frame_gives_rip_rsp_and_callee_saved() {
        let l = TaskLayout::new(&x86_layout(), Arch::X86_64).unwrap();
        let mut m = world();
        let t = K + 0x1000;
        let sp = K + 0x40000;
        m.put_u64(t + 192 + 8, sp);
        for i in 0..7u64 {
            m.put_u64(sp + i * 8, 0x1111 * (i + 1));
        }
        let r = saved_registers(&mut m, &l, Arch::X86_64, t).unwrap();
        let a = Arch::X86_64;
        let get = |n: &str| r.0[a.reg_index(n).unwrap()];
        assert_eq!(get("r15"), Some(0x1111));
        assert_eq!(get("rbx"), Some(0x1111 * 5));
        assert_eq!(get("rbp"), Some(0x1111 * 6));
        assert_eq!(get("rip"), Some(0x1111 * 7));
        assert_eq!(get("rsp"), Some(sp + 56));
        assert_eq!(get("rax"), None);
    }
}
