//! Where things are in a `task_struct` (and the structs it points to) on this kernel: offsets
//! from BTF by name, never hard-coded per kernel version.

use crate::arch::{Arch, SwitchFrame};
use crate::kernel::layout::{Field, Layout};
use crate::mem::{read_u64, ReadError, VirtRead};

/// The task_struct (and friends) offsets the task walk needs.
#[derive(Debug, Clone)]
pub struct TaskLayout {
    pub(super) tasks: u64,
    pub(super) pid: Field,
    pub(super) tgid: Field,
    pub(super) comm: Field,
    pub(super) state: Field,
    pub(super) exit_state: Option<Field>,
    pub(super) real_parent: u64,
    pub(super) group_leader: u64,
    /// `thread_info.cpu` (Linux 5.16+ with THREAD_INFO_IN_TASK) or `task_struct.cpu` (5.3-5.15).
    pub(super) cpu: Option<Field>,
    pub(super) on_cpu: Option<Field>,
    /// signal->thread_head / task->thread_node (Linux 3.14+), else task->thread_group (< 6.7).
    pub(super) threads: Threads,
    pub(super) mm: Option<u64>,
    pub(super) stack: Option<u64>,
    pub saved: SavedLayout,
}

#[derive(Debug, Clone)]
pub(super) enum Threads {
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

/// Where the registers of a (member, register) list are in `strukt`; members this kernel's
/// struct lacks are left out.
fn register_offsets(
    l: &dyn Layout,
    strukt: &str,
    members: &[(&'static str, &'static str)],
) -> Vec<(&'static str, u64)> {
    members
        .iter()
        .filter_map(|(m, reg)| Some((*reg, l.member(strukt, m)?.offset)))
        .collect()
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
                    frame: register_offsets(l, frame_struct, members),
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
                    regs: register_offsets(l, strukt, members),
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
