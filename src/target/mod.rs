//! What the GDB server needs from whatever it serves: a live kernel, a crash dump, or one process
//! of a dump. The server knows RSP; a `Target` knows memory, threads and registers, never packets.

pub mod dump;
pub mod live;
pub mod process;

use crate::arch::{Arch, Registers};
use crate::kernel::monitor::KernelView;
/// The thread vocabulary of the trait, from kernel/ where tasks become threads.
pub use crate::kernel::threads::{ThreadInfo, Tid};
use crate::mem::{ReadError, VirtRead};

/// What a target offers GDB beyond memory and registers, said once: the server's `qSupported`
/// and its answers to the packets behind each feature follow from it (a target that lacks a
/// feature is never asked for it, and the packet gets the "not supported" reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Serves a GDB target description of its architecture (`qXfer:features:read`).
    pub target_description: bool,
    /// Lists its threads as one document (`qXfer:threads:read`), with names and cores.
    pub thread_list: bool,
}

impl Capabilities {
    /// Everything kmemd's targets offer today.
    pub const ALL: Capabilities = Capabilities {
        target_description: true,
        thread_list: true,
    };
}

/// A target's memory is its [`VirtRead`], with that trait's contract: a prefix of real bytes,
/// an error only when the first byte cannot be read, never zero-fill; the server asks again for
/// the rest. Nothing in a `Target` writes to the kernel.
pub trait Target: VirtRead {
    /// The architecture of the kernel served (a dump's, not the host's).
    fn arch(&self) -> Arch;

    /// What this target offers (see [`Capabilities`]).
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    /// The threads GDB sees, in a stable order. Never empty.
    fn threads(&mut self) -> Vec<ThreadInfo>;

    /// The thread `?` reports as stopped (a dump's crashing CPU).
    fn stop_thread(&mut self) -> Tid {
        self.threads().first().map(|t| t.tid).unwrap_or(1)
    }

    /// The thread `info threads` shows for the task `pid` trapped on `cpu` (pid 0: the CPU's
    /// idle task, shown as the CPU's thread).
    fn hit_thread(&mut self, cpu: u32, pid: u32) -> Tid {
        let _ = pid;
        Tid::from(cpu) + 1
    }

    /// Fills in what a hit's registers cannot carry but the target knows: on arm64 the pointer
    /// authentication masks, without which GDB cannot strip the PAC from a saved return address
    /// and stops the backtrace at frame 0 ("frame did not save the PC").
    fn complete_hit_registers(&mut self, regs: &mut Registers) {
        let _ = regs;
    }

    /// task_struct's `stack` member offset, when the target knows its kernel's layout (what the
    /// breakpoints need to copy an interrupted task's stack at a hit).
    fn task_stack_offset(&mut self) -> Option<u64> {
        None
    }

    /// Registers of one thread. `Err` when the thread does not exist (any more), or when the
    /// memory that holds them cannot be read (the error keeps the memory failure's kind).
    fn registers(&mut self, tid: Tid) -> Result<Registers, ReadError>;

    /// Whether a thread listed earlier still exists (GDB's `T` packet). Targets whose threads
    /// never change (CPUs, a dump's tasks) keep the default.
    fn thread_alive(&mut self, tid: Tid) -> bool {
        let _ = tid;
        true
    }

    /// The thread GDB's next memory reads are for (its general thread, `Hg`): x86_64's
    /// zero-based per-CPU addresses read the copy of that thread's CPU
    /// ([`crate::kernel::kaslr::LinkAlias`]). Targets without per-CPU reads keep the default.
    fn focus(&mut self, tid: Tid) {
        let _ = tid;
    }

    /// KASLR slide (runtime minus link-time kernel address), used for `qOffsets`.
    fn kaslr_offset(&self) -> Option<u64>;

    /// The file GDB should load symbols from (`qXfer:exec-file`): the vmlinux given with `-k`.
    /// `None`: GDB is not offered one (it then warns that no executable was specified).
    fn exec_file(&self) -> Option<&std::path::Path> {
        None
    }

    /// A process's auxiliary vector (`qXfer:auxv:read`, what `/proc/PID/auxv` gives), when this
    /// target serves one user process. `None` (the default): not offered in `qSupported`.
    fn auxv(&self) -> Option<&[u8]> {
        None
    }

    /// The Linux pid of the process this target serves (`--pid`): GDB then learns it through
    /// the multiprocess thread ids (`pPID.TID`) and reads that process's `/proc` files.
    /// `None` (the default): kernel targets, whose threads are CPUs and tasks, not a process.
    fn process_id(&self) -> Option<u32> {
        None
    }

    /// A file GDB may read through host I/O (`vFile:open`), by path, e.g. `/proc/PID/maps`.
    /// `Err(errno)` for one this target does not serve (2: ENOENT). Only asked when
    /// [`Target::process_id`] is `Some`; other targets offer no host I/O.
    fn host_file(&mut self, path: &[u8]) -> Result<Vec<u8>, u32> {
        let _ = path;
        Err(2)
    }

    /// Called when a GDB session ends, e.g. to log once what its reads could not serve.
    fn session_ended(&mut self) {}

    /// Target-specific `monitor` commands: `Some(Ok(text))` when `cmd` is one of them.
    /// `None` means "not mine"; the server then tries its own commands.
    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        let _ = cmd;
        None
    }

    /// One line per target-specific monitor command, for `monitor help`.
    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// Does the slow, one-time work GDB's first replies need (kernel knowledge: BTF, the task
    /// list; a dump's kallsyms decoding) before GDB connects: GDB gives each reply two seconds
    /// by default, and a first `qXfer:threads` that builds it all could take longer on a small
    /// board. A live kernel starts reading /proc/kallsyms meanwhile, on a thread of its own.
    fn prepare(&mut self) {}

    /// The kernel behind this target, for the kernel queries outside GDB (`--ps`, `--dmesg`,
    /// `--lsmod`, `--sym`: the monitor commands' own code, kernel/monitor.rs). None for a
    /// target that serves no kernel (one process of a dump).
    fn kernel_view(&mut self) -> Option<&mut dyn KernelView> {
        None
    }

    /// A short description for logs and `monitor version`, e.g. `live kernel 6.18.4`.
    fn describe(&self) -> String;
}

/// GDB's breakpoint and watchpoint kinds: the digit of its `Z`/`z` packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PointKind {
    /// `Z0` (`break`): kmemd never writes kernel text, so it is served by a debug register too.
    Software,
    /// `Z1` (`hbreak`).
    Hardware,
    /// `Z2` (`watch`).
    Write,
    /// `Z3` (`rwatch`).
    Read,
    /// `Z4` (`awatch`).
    Access,
}

impl PointKind {
    pub fn from_digit(d: u8) -> Option<PointKind> {
        Some(match d {
            b'0' => PointKind::Software,
            b'1' => PointKind::Hardware,
            b'2' => PointKind::Write,
            b'3' => PointKind::Read,
            b'4' => PointKind::Access,
            _ => return None,
        })
    }

    /// Whether it traps data accesses (a watchpoint) rather than execution (a breakpoint).
    pub fn is_watch(self) -> bool {
        matches!(self, PointKind::Write | PointKind::Read | PointKind::Access)
    }

    /// GDB's command for it, for messages.
    pub fn gdb_command(self) -> &'static str {
        match self {
            PointKind::Software => "break",
            PointKind::Hardware => "hbreak",
            PointKind::Write => "watch",
            PointKind::Read => "rwatch",
            PointKind::Access => "awatch",
        }
    }
}

/// One breakpoint or watchpoint as GDB asked for it (`Z<kind>,<addr>,<len>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Point {
    pub kind: PointKind,
    pub addr: u64,
    /// Bytes watched; for breakpoints GDB's "kind" (instruction length), not used.
    pub len: u64,
}

/// Bytes of a kernel stack copied at the instant of a hit: `bytes` were at `start..`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackCopy {
    pub start: u64,
    pub bytes: Vec<u8>,
}

impl StackCopy {
    /// The copied bytes from `addr` on (at most `len`), when `addr` lies in the copy.
    pub fn at(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(addr.checked_sub(self.start)?).ok()?;
        let rest = self.bytes.get(off..)?;
        (!rest.is_empty()).then(|| &rest[..rest.len().min(len)])
    }
}

/// One trap of an armed point, as it was at that instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointHit {
    pub point: Point,
    pub cpu: u32,
    /// The trapped task's pid as the kernel numbers threads (task->pid); 0 for a CPU's idle task.
    pub pid: u32,
    /// Registers at the trap, in the target description's order.
    pub regs: Registers,
    /// Kernel stacks as they were at the trap, when the source could copy them: the stack the
    /// trap ran on and, when that was an interrupt's, the interrupted task's.
    pub stacks: Vec<StackCopy>,
}

/// The breakpoints and watchpoints of one GDB session on a running kernel. Inserting arms the
/// point (or says why it cannot be); it traps only between [`Points::resume`] and
/// [`Points::pause`]. Dropping it releases everything.
pub trait Points {
    /// Arms `p`, paused, or returns the sentence that says why not.
    fn insert(&mut self, p: Point) -> Result<(), String>;
    /// Disarms `p`; false when it was not armed.
    fn remove(&mut self, p: Point) -> bool;
    fn is_empty(&self) -> bool;
    /// How many points one CPU holds at once, when known (`qWatchpointSupportInfo`).
    fn slots(&self) -> Option<usize>;
    /// Lets every point trap, after dropping what trapped while paused.
    fn resume(&mut self) -> Result<(), String>;
    fn pause(&mut self);
    /// task_struct's `stack` member offset, before the first insert: with it a hit on an
    /// interrupt's stack also copies the interrupted task's stack.
    fn set_task_stack_offset(&mut self, offset: u64) {
        let _ = offset;
    }
    /// Descriptors that become readable when a hit may be waiting.
    fn poll_fds(&self) -> Vec<std::os::fd::RawFd>;
    /// The first hit waiting, if any (the others of the same pass are dropped: GDB stops once).
    fn take_hit(&mut self) -> Option<PointHit>;
}

/// Makes each GDB session's [`Points`], or says why this target has none.
pub type PointsFactory = dyn Fn() -> Result<Box<dyn Points>, String>;

/// Why a crash dump answers no `Z` packet.
pub const NO_POINTS_IN_DUMP: &str = "a crash dump is one instant of a kernel that no longer runs: \
     nothing can reach a breakpoint or watchpoint in it (kmemd serves break, hbreak, watch, \
     rwatch and awatch on a live kernel only)";
