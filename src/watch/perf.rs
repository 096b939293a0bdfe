//! Arming breakpoint events on every online CPU and parsing what their rings hold.
//!
//! One perf event per (watchpoint, CPU), `PERF_TYPE_BREAKPOINT`, sample_period 1 so every trap is
//! a sample. All events of a CPU write into one ring (PERF_EVENT_IOC_SET_OUTPUT) and samples
//! carry PERF_SAMPLE_IDENTIFIER so we know which watchpoint tripped.
//!
//! The perf calls go through [`PerfSys`], a seam like the BPF reader's `ChunkRead`: the kernel's
//! ([`SysPerf`], over sys::os) in production, a fake in tests, so the refusals perf can answer
//! with (EINVAL, EPERM, EACCES, ENOSPC, ENOENT, a ring that cannot be mapped) are tested without
//! root or debug registers.

use super::intmap::IntMap;
use super::spare::Spare;
use super::spec::{Access, Spec};
use crate::arch::Arch;
use crate::sys::os::{self, PerfEventAttr, PerfRing};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

/// The perf_event_open(2) calls and ioctls watch mode and --check make. Errors are raw errnos,
/// which [`open_error`] and the callers turn into sentences.
pub trait PerfSys {
    /// An open event; dropping it closes it (the debug register is freed).
    type Event;
    /// A mapped ring of one event.
    type Ring: Ring;
    /// Opens a breakpoint event counting every task on `cpu`.
    fn open(&mut self, attr: &PerfEventAttr, cpu: u32) -> Result<Self::Event, i32>;
    /// The event's id, as samples carry it (PERF_SAMPLE_IDENTIFIER).
    fn id(&mut self, ev: &Self::Event) -> Result<u64, i32>;
    /// Maps `data_pages` (a power of two) data pages of `ev`'s ring.
    fn map_ring(&mut self, ev: &Self::Event, data_pages: usize) -> Result<Self::Ring, i32>;
    /// Sends `ev`'s records into `target`'s ring (same CPU).
    fn set_output(&mut self, ev: &Self::Event, target: &Self::Event) -> Result<(), i32>;
    fn enable(&mut self, ev: &Self::Event) -> Result<(), i32>;
    fn disable(&mut self, ev: &Self::Event) -> Result<(), i32>;
    /// (traps counted, samples lost) of an event opened with PERF_FORMAT_LOST.
    fn read_count(&mut self, ev: &Self::Event) -> Result<(u64, u64), i32>;
    /// The descriptor poll(2) waits on for `ev`'s ring.
    fn poll_fd(ev: &Self::Event) -> i32;
    /// What decides an EPERM/EACCES (asked only then).
    fn perm_facts(&self) -> PermFacts;
    /// Runs the BPF program `prog` at each of `ev`'s traps (PERF_EVENT_IOC_SET_BPF).
    fn set_bpf(&mut self, ev: &Self::Event, prog: BorrowedFd<'_>) -> Result<(), i32>;
}

/// Records waiting in a ring, taken out whole.
pub trait Ring {
    /// Appends whole records, at most `max` bytes of them (at least one record), to `out`;
    /// returns the bytes taken and whether more are waiting.
    fn take_max(&mut self, out: &mut Vec<u8>, max: usize) -> (usize, bool);

    /// Appends every waiting record to `out`; returns the byte count.
    fn take(&mut self, out: &mut Vec<u8>) -> usize {
        self.take_max(out, usize::MAX).0
    }
}

impl Ring for PerfRing {
    fn take_max(&mut self, out: &mut Vec<u8>, max: usize) -> (usize, bool) {
        PerfRing::take_max(self, out, max)
    }
}

/// The kernel's perf: sys::os's syscalls, events on every task (pid -1) of one CPU.
#[derive(Debug, Default, Clone, Copy)]
pub struct SysPerf;

impl PerfSys for SysPerf {
    type Event = OwnedFd;
    type Ring = PerfRing;

    fn open(&mut self, attr: &PerfEventAttr, cpu: u32) -> Result<OwnedFd, i32> {
        os::perf_event_open(attr, -1, cpu as i32)
    }

    fn id(&mut self, ev: &OwnedFd) -> Result<u64, i32> {
        os::perf_event_id(ev)
    }

    fn map_ring(&mut self, ev: &OwnedFd, data_pages: usize) -> Result<PerfRing, i32> {
        PerfRing::map(ev, data_pages)
    }

    fn set_output(&mut self, ev: &OwnedFd, target: &OwnedFd) -> Result<(), i32> {
        os::perf_set_output(ev, target)
    }

    fn enable(&mut self, ev: &OwnedFd) -> Result<(), i32> {
        os::perf_enable(ev)
    }

    fn disable(&mut self, ev: &OwnedFd) -> Result<(), i32> {
        os::perf_disable(ev)
    }

    fn read_count(&mut self, ev: &OwnedFd) -> Result<(u64, u64), i32> {
        os::perf_read_count(ev)
    }

    fn poll_fd(ev: &OwnedFd) -> i32 {
        ev.as_raw_fd()
    }

    fn perm_facts(&self) -> PermFacts {
        PermFacts::gather()
    }

    fn set_bpf(&mut self, ev: &OwnedFd, prog: BorrowedFd<'_>) -> Result<(), i32> {
        os::perf_set_bpf(ev, prog)
    }
}

// PERF_SAMPLE_* bits (include/uapi/linux/perf_event.h).
pub const SAMPLE_IP: u64 = 1 << 0;
pub const SAMPLE_TID: u64 = 1 << 1;
pub const SAMPLE_TIME: u64 = 1 << 2;
pub const SAMPLE_ADDR: u64 = 1 << 3;
pub const SAMPLE_CALLCHAIN: u64 = 1 << 5;
pub const SAMPLE_CPU: u64 = 1 << 7;
pub const SAMPLE_IDENTIFIER: u64 = 1 << 16;
pub const SAMPLE_REGS_INTR: u64 = 1 << 18;
/// What every sample carries; `parse_sample` reads exactly this layout. REGS_INTR gives every
/// hit the registers at the trap, including the hits that get no BPF snapshot (writes made
/// inside BPF programs, a full snapshot ring).
pub const SAMPLE_TYPE: u64 = SAMPLE_IDENTIFIER
    | SAMPLE_IP
    | SAMPLE_TID
    | SAMPLE_TIME
    | SAMPLE_ADDR
    | SAMPLE_CPU
    | SAMPLE_CALLCHAIN
    | SAMPLE_REGS_INTR;

// PERF_RECORD_* types.
pub const RECORD_LOST: u32 = 2;
pub const RECORD_THROTTLE: u32 = 5;
pub const RECORD_UNTHROTTLE: u32 = 6;
pub const RECORD_SAMPLE: u32 = 9;

/// Callchain entries at or above this are context markers (PERF_CONTEXT_KERNEL = -128, ...),
/// not addresses.
pub const PERF_CONTEXT_MAX: u64 = 0xffff_ffff_ffff_f000;

/// Deepest kernel stack kept per hit: enough for syscall entry to the writer, small records.
pub const MAX_STACK: u16 = 48;

/// One trap as the kernel recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub id: u64,
    pub ip: u64,
    pub pid: u32,
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds (attr.use_clockid).
    pub time: u64,
    pub addr: u64,
    pub cpu: u32,
    /// Kernel return addresses, innermost first, context markers removed.
    pub stack: Vec<u64>,
    /// The registers at the trap in the order of [`Arch::perf_regs`]'s named entries; empty when
    /// the record has none.
    pub regs: Vec<u64>,
}

/// A record of a ring, as far as watch mode cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Sample(Sample),
    /// The kernel dropped `lost` records of event `id` because the ring was full.
    Lost {
        id: u64,
        lost: u64,
    },
    /// The kernel throttled the event (too many interrupts per tick): hits go uncounted.
    Throttle,
    Other(u32),
}

/// Bounds-checked little reader over ring bytes (native endianness: the kernel wrote them).
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u64(&mut self) -> Option<u64> {
        let end = self.pos.checked_add(8)?;
        let v = u64::from_ne_bytes(self.b.get(self.pos..end)?.try_into().ok()?);
        self.pos = end;
        Some(v)
    }

    fn u32x2(&mut self) -> Option<(u32, u32)> {
        let v = self.u64()?.to_ne_bytes();
        Some((
            u32::from_ne_bytes([v[0], v[1], v[2], v[3]]),
            u32::from_ne_bytes([v[4], v[5], v[6], v[7]]),
        ))
    }
}

/// Parses the body of a PERF_RECORD_SAMPLE laid out per `SAMPLE_TYPE`.
pub fn parse_sample(body: &[u8]) -> Option<Sample> {
    parse_sample_into(body, Vec::new(), Vec::new())
}

/// [`parse_sample`], filling the (emptied) buffers given for the stack and the registers.
pub fn parse_sample_into(body: &[u8], mut stack: Vec<u64>, mut regs: Vec<u64>) -> Option<Sample> {
    stack.clear();
    regs.clear();
    let mut c = Cursor { b: body, pos: 0 };
    let id = c.u64()?;
    let ip = c.u64()?;
    let (pid, tid) = c.u32x2()?;
    let time = c.u64()?;
    let addr = c.u64()?;
    let (cpu, _res) = c.u32x2()?;
    let nr = c.u64()?;
    // Never trust nr beyond what the record holds.
    let nr = (nr as usize).min(body.len() / 8);
    stack.reserve_exact(nr);
    for _ in 0..nr {
        let a = c.u64()?;
        if a < PERF_CONTEXT_MAX {
            stack.push(a);
        }
    }
    // REGS_INTR, last in SAMPLE_TYPE: an abi word (0: no registers), then one word per bit of
    // sample_regs_intr, up to the record's end.
    regs.reserve_exact(body.len().saturating_sub(c.pos) / 8);
    if c.u64().is_some_and(|abi| abi != 0) {
        while let Some(r) = c.u64() {
            regs.push(r);
        }
    }
    Some(Sample {
        id,
        ip,
        pid,
        tid,
        time,
        addr,
        cpu,
        stack,
        regs,
    })
}

/// Splits ring bytes into (record type, body) and hands each to `f`. Returns the bytes left over
/// that do not form a whole record (never expected: the kernel publishes whole records).
fn split_records(buf: &[u8], mut f: impl FnMut(u32, &[u8])) -> usize {
    let mut pos = 0usize;
    while let Some(hdr) = pos.checked_add(8).and_then(|e| buf.get(pos..e)) {
        let ty = u32::from_ne_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]);
        let size = u16::from_ne_bytes([hdr[6], hdr[7]]) as usize;
        if size < 8 {
            // A corrupt header: stop rather than loop forever.
            break;
        }
        let Some(body) = pos.checked_add(size).and_then(|e| buf.get(pos + 8..e)) else {
            break;
        };
        f(ty, body);
        pos += size;
    }
    buf.len() - pos
}

/// Splits ring bytes into records and hands each to `f`. Returns the bytes left over that do not
/// form a whole record (never expected: the kernel publishes whole records).
pub fn parse_records(buf: &[u8], f: impl FnMut(Record)) -> usize {
    parse_records_reusing(buf, &mut Spare::default(), f)
}

/// [`parse_records`], with the samples' buffers taken from `spare`.
pub fn parse_records_reusing(buf: &[u8], spare: &mut Spare, mut f: impl FnMut(Record)) -> usize {
    split_records(buf, |ty, body| {
        let rec = match ty {
            RECORD_SAMPLE => match parse_sample_into(body, spare.words(), spare.words()) {
                Some(s) => Record::Sample(s),
                None => Record::Other(ty),
            },
            RECORD_LOST => {
                let mut c = Cursor { b: body, pos: 0 };
                match (c.u64(), c.u64()) {
                    (Some(id), Some(lost)) => Record::Lost { id, lost },
                    _ => Record::Other(ty),
                }
            }
            RECORD_THROTTLE => Record::Throttle,
            other => Record::Other(other),
        };
        f(rec);
    })
}

/// The perf_event_attr of one watchpoint.
pub fn attr_for(spec: &Spec, arch: Arch) -> PerfEventAttr {
    PerfEventAttr {
        type_: os::PERF_TYPE_BREAKPOINT,
        sample_period: 1,
        sample_type: SAMPLE_TYPE,
        read_format: os::PERF_FORMAT_LOST,
        flags: os::ATTR_FLAG_DISABLED
            | os::ATTR_FLAG_SAMPLE_ID_ALL
            | os::ATTR_FLAG_EXCLUDE_CALLCHAIN_USER
            | os::ATTR_FLAG_USE_CLOCKID,
        // Wake the reader at every sample: a lone hit is printed (and its value read) at once;
        // under a storm the reader is busy draining, and wake-ups without a waiter cost little.
        // Where a wake-up makes the trapped instruction trap again (arm64), none: the kernel then
        // wakes at half a ring, and the reader's poll timeout (watch::POLL_MS) shows a lone hit.
        wakeup_events: u32::from(arch.wake_per_breakpoint_sample()),
        bp_type: spec.access.bp_type(),
        bp_addr: spec.addr,
        bp_len: spec.len as u64,
        clockid: libc::CLOCK_MONOTONIC,
        sample_max_stack: MAX_STACK,
        sample_regs_intr: arch.perf_regs_mask(),
        ..Default::default()
    }
}

/// What decides a refusal with EPERM/EACCES: whether kmemd lacked a privilege, or holds it and the
/// kernel forbids kernel breakpoints anyway (a hypervisor hiding the debug registers, lockdown, a
/// security module). Gathered only on that error path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermFacts {
    /// CAP_PERFMON or CAP_SYS_ADMIN in the effective set: what perf asks of kernel breakpoints.
    pub privileged: bool,
    /// kernel.perf_event_paranoid.
    pub paranoid: Option<i32>,
    /// The lockdown mode in force (`integrity`, `confidentiality`); None when none or unknown.
    pub lockdown: Option<String>,
    /// The security modules the kernel runs (/sys/kernel/security/lsm).
    pub lsms: Option<String>,
    /// Whether a breakpoint on kmemd's own user-space memory was accepted (None: not tried).
    pub user_breakpoint_ok: Option<bool>,
}

// include/uapi/linux/capability.h
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;

impl PermFacts {
    /// Reads the facts from /proc and /sys, and tries a write breakpoint on a variable of our own.
    pub fn gather() -> PermFacts {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let cap_eff = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
            .unwrap_or(0);
        let has = |cap: u32| cap_eff & (1 << cap) != 0;
        let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim().to_string());
        let lockdown = read("/sys/kernel/security/lockdown").and_then(|l| lockdown_mode(&l));
        PermFacts {
            privileged: has(CAP_PERFMON) || has(CAP_SYS_ADMIN),
            paranoid: read("/proc/sys/kernel/perf_event_paranoid").and_then(|p| p.parse().ok()),
            lockdown,
            lsms: read("/sys/kernel/security/lsm").filter(|l| !l.is_empty()),
            user_breakpoint_ok: Some(user_breakpoint_allowed()),
        }
    }
}

/// The lockdown mode in force from /sys/kernel/security/lockdown (`none [integrity]
/// confidentiality`: the bracketed word), None for `none`.
fn lockdown_mode(text: &str) -> Option<String> {
    let mode = text.split_once('[')?.1.split_once(']')?.0;
    (mode != "none").then(|| mode.to_string())
}

/// Whether perf accepts a write breakpoint on this process's own memory (this thread, any CPU):
/// the case this kernel may still allow when it refuses kernel addresses.
fn user_breakpoint_allowed() -> bool {
    static PROBE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attr = PerfEventAttr {
        type_: os::PERF_TYPE_BREAKPOINT,
        sample_period: 1,
        flags: os::ATTR_FLAG_DISABLED | os::ATTR_FLAG_EXCLUDE_KERNEL,
        bp_type: Access::W.bp_type(),
        bp_addr: PROBE.as_ptr() as u64,
        bp_len: 8,
        ..Default::default()
    };
    os::perf_event_open(&attr, 0, -1).is_ok()
}

/// Turns perf_event_open's errno into what the user should do. `facts` is consulted (and
/// gathered by the caller) only for EPERM/EACCES.
pub fn open_error(errno: i32, spec: &Spec, arch: Arch, cpu: u32, facts: &dyn Fn() -> PermFacts) -> String {
    let what = format!("-w {} {:#x} ({})", spec.type_name(), spec.addr, spec.target);
    let os_err = std::io::Error::from_raw_os_error(errno);
    match errno {
        libc::EINVAL if spec.access == Access::X => format!(
            "{what}: the kernel refused an execute breakpoint there (EINVAL): on x86 kernel text \
             can only be watched when the kernel has kprobes (CONFIG_KPROBES), which this one \
             lacks or refuses for this address. Use GDB breakpoints on a dump, or watch data"
        ),
        libc::EINVAL if spec.access == Access::R && arch.debug_regs().no_read_only.is_some() => {
            format!(
                "{what}: x86 cannot watch reads alone (EINVAL); use rw{}",
                spec.len
            )
        }
        libc::EINVAL => format!(
            "{what}: the kernel refused this watchpoint (EINVAL): the address must be aligned to \
             the length and the type/length supported by this CPU"
        ),
        libc::ENOSPC => {
            let slots = match super::spec::max_slots(arch) {
                Some(n) => format!("this CPU has {n}"),
                None => "the CPU's count is in ID_AA64DFR0_EL1.WRPs".to_string(),
            };
            format!(
                "{what}: no free debug register on CPU {cpu} (ENOSPC; {slots}, and GDB, perf or \
                 another kmemd may hold some): watch fewer addresses or stop the other user"
            )
        }
        libc::EACCES | libc::EPERM => permission_error(&what, &os_err, &facts()),
        libc::ENODEV | libc::ENOENT | libc::EOPNOTSUPP => format!(
            "{what}: this kernel or CPU has no hardware breakpoint support for perf \
             (CONFIG_HAVE_HW_BREAKPOINT) ({os_err})"
        ),
        libc::EMFILE => format!("{what}: too many open files; raise `ulimit -n`"),
        _ => format!("{what}: perf_event_open on CPU {cpu} failed: {os_err}"),
    }
}

/// EPERM/EACCES: a missing privilege, or a kernel that forbids kernel breakpoints to anyone.
fn permission_error(what: &str, os_err: &std::io::Error, f: &PermFacts) -> String {
    if !f.privileged {
        let paranoid = match f.paranoid {
            Some(p) => format!("it is {p} now"),
            None => "it cannot be read here".to_string(),
        };
        return format!(
            "{what}: not permitted ({os_err}): kmemd lacks CAP_PERFMON (and CAP_SYS_ADMIN), which \
             kernel watchpoints need. Run it as root, or grant it the capability \
             (`setcap cap_perfmon,cap_bpf+ep kmemd`), or lower kernel.perf_event_paranoid to 1 \
             ({paranoid}; `sysctl kernel.perf_event_paranoid=1`)"
        );
    }
    let lockdown = match &f.lockdown {
        Some(m) => format!("kernel lockdown (in force here: {m})"),
        None => "kernel lockdown (not in force here)".to_string(),
    };
    let lsm = match &f.lsms {
        Some(l) => format!("a security module (this kernel runs {l})"),
        None => "a security module".to_string(),
    };
    let user = match f.user_breakpoint_ok {
        Some(true) => {
            " Breakpoints on user-space memory still work here (kmemd checked): perf itself is \
             usable, only kernel addresses are refused."
        }
        Some(false) => " Breakpoints on user-space memory are refused too (kmemd checked).",
        None => "",
    };
    format!(
        "{what}: not permitted ({os_err}) although kmemd holds CAP_PERFMON/CAP_SYS_ADMIN: this \
         kernel forbids hardware breakpoints on kernel addresses. Likely causes: a hypervisor that \
         hides the debug registers from this guest, {lockdown}, or {lsm}.{user} Watch on a kernel \
         that allows it (bare metal, or a VM whose hypervisor passes debug registers through)"
    )
}

/// A CPU's ring with the fd that owns it.
pub struct CpuRing<R = PerfRing> {
    pub cpu: u32,
    pub fd: i32,
    pub ring: R,
}

/// Every armed event; dropping it disables and closes them all (watchpoints released).
pub struct Armed<S: PerfSys = SysPerf> {
    /// Declared before `events` so the rings are unmapped before their fds close.
    pub rings: Vec<CpuRing<S::Ring>>,
    events: Vec<S::Event>,
    /// Event id -> index of the watchpoint in the spec list.
    pub ids: IntMap<u64, usize>,
    sys: S,
}

impl Armed {
    /// [`Armed::arm_with`] the kernel's perf.
    pub fn arm(specs: &[Spec], cpus: &[u32], ring_pages: usize, arch: Arch) -> Result<Armed, String> {
        Armed::arm_with(SysPerf, specs, cpus, ring_pages, arch)
    }
}

/// Opens `attr` on `cpu`, again without PERF_FORMAT_LOST when the kernel does not know it
/// (before 6.0: EINVAL); then it counts without the lost samples.
pub fn open_event<S: PerfSys>(sys: &mut S, attr: &PerfEventAttr, cpu: u32) -> Result<S::Event, i32> {
    match sys.open(attr, cpu) {
        Err(libc::EINVAL) if attr.read_format != 0 => {
            let mut plain = *attr;
            plain.read_format = 0;
            sys.open(&plain, cpu)
        }
        r => r,
    }
}

impl<S: PerfSys> Armed<S> {
    /// Opens one event per (watchpoint, CPU), disabled, maps one ring per CPU of `ring_pages`
    /// data pages (a power of two), then enables them all. On an error every event opened so
    /// far is closed again.
    pub fn arm_with(
        sys: S,
        specs: &[Spec],
        cpus: &[u32],
        ring_pages: usize,
        arch: Arch,
    ) -> Result<Armed<S>, String> {
        let attrs: Vec<PerfEventAttr> = specs.iter().map(|s| attr_for(s, arch)).collect();
        Armed::arm_attrs_with(sys, specs, &attrs, cpus, ring_pages, arch)
    }

    /// [`Armed::arm_with`] with each spec's event attributes given (`attrs[i]` for `specs[i]`),
    /// for callers that ask perf for more per sample than [`attr_for`] does.
    pub fn arm_attrs_with(
        sys: S,
        specs: &[Spec],
        attrs: &[PerfEventAttr],
        cpus: &[u32],
        ring_pages: usize,
        arch: Arch,
    ) -> Result<Armed<S>, String> {
        let ring_bytes = ring_pages * os::page_size();
        let mut armed = Armed {
            rings: Vec::new(),
            events: Vec::new(),
            ids: IntMap::default(),
            sys,
        };
        for &cpu in cpus {
            let mut owner: Option<usize> = None;
            for (i, spec) in specs.iter().enumerate() {
                let attr = *attrs
                    .get(i)
                    .ok_or("internal: a watchpoint without its attributes")?;
                let sys = &mut armed.sys;
                let fd = open_event(sys, &attr, cpu)
                    .map_err(|e| open_error(e, spec, arch, cpu, &|| sys.perm_facts()))?;
                let id = armed.sys.id(&fd).map_err(|e| {
                    format!(
                        "cannot get the perf event id: {}",
                        std::io::Error::from_raw_os_error(e)
                    )
                })?;
                armed.ids.insert(id, i);
                match owner {
                    None => {
                        let ring = armed.sys.map_ring(&fd, ring_pages).map_err(|e| {
                            format!(
                                "cannot map a {} KiB perf ring for CPU {cpu}: {} (root may map \
                                 past kernel.perf_event_mlock_kb; otherwise raise it)",
                                ring_bytes / 1024,
                                std::io::Error::from_raw_os_error(e)
                            )
                        })?;
                        armed.rings.push(CpuRing {
                            cpu,
                            fd: S::poll_fd(&fd),
                            ring,
                        });
                        owner = Some(armed.events.len());
                    }
                    Some(o) => {
                        let target = armed.events.get(o).ok_or("internal: ring owner vanished")?;
                        armed.sys.set_output(&fd, target).map_err(|e| {
                            format!(
                                "cannot share CPU {cpu}'s perf ring between watchpoints: {}",
                                std::io::Error::from_raw_os_error(e)
                            )
                        })?;
                    }
                }
                armed.events.push(fd);
            }
        }
        for fd in &armed.events {
            armed.sys.enable(fd).map_err(|e| {
                format!(
                    "cannot enable a watchpoint: {}",
                    std::io::Error::from_raw_os_error(e)
                )
            })?;
        }
        Ok(armed)
    }

    /// Stops every event (the watchpoints stay allocated until drop): nothing more is counted
    /// or queued, so the counts and the rings can be read consistently.
    pub fn disable(&mut self) {
        for fd in &self.events {
            let _ = self.sys.disable(fd);
        }
    }

    /// Lets every event trap again after [`Armed::disable`].
    pub fn enable(&mut self) -> Result<(), String> {
        for fd in &self.events {
            self.sys.enable(fd).map_err(|e| {
                format!(
                    "cannot enable a watchpoint: {}",
                    std::io::Error::from_raw_os_error(e)
                )
            })?;
        }
        Ok(())
    }

    pub fn event_count(&self) -> usize {
        self.events.len()
    }

    /// Attaches the BPF program `prog` to every event (watch.bpf.c: a snapshot per trap). On
    /// the first refusal stops and says why, as a sentence; the events already attached keep
    /// the program (their hits get snapshots), and every event keeps counting and sampling.
    pub fn attach_bpf(&mut self, prog: BorrowedFd<'_>) -> Result<(), String> {
        for (n, fd) in self.events.iter().enumerate() {
            self.sys.set_bpf(fd, prog).map_err(|e| {
                format!(
                    "the kernel refused to run the snapshot program at the watchpoint's traps \
                     (PERF_EVENT_IOC_SET_BPF: {}; {n} of {} events have it){}",
                    std::io::Error::from_raw_os_error(e),
                    self.events.len(),
                    match e {
                        libc::EINVAL | libc::ENOTTY => {
                            ": this kernel cannot attach BPF programs to breakpoint events"
                        }
                        libc::EEXIST => ": another program is attached already",
                        _ => "",
                    }
                )
            })?;
        }
        Ok(())
    }

    /// What the kernel counted, summed over CPUs: (traps, samples lost), or None when this
    /// kernel cannot say (read_format without PERF_FORMAT_LOST).
    pub fn kernel_counts(&mut self) -> Option<(u64, u64)> {
        let mut total = (0u64, 0u64);
        for fd in &self.events {
            let (n, lost) = self.sys.read_count(fd).ok()?;
            total = (total.0 + n, total.1 + lost);
        }
        Some(total)
    }
}

impl<S: PerfSys> Drop for Armed<S> {
    fn drop(&mut self) {
        // Stop the traps first so no CPU keeps hitting while we tear down; closing the fds
        // (OwnedFd) then frees the debug registers.
        self.disable();
    }
}

/// A fake kernel perf for tests: events that count themselves open, scripted refusals, rings
/// of planted bytes.
#[cfg(test)]
pub(crate) mod fake {
    use super::{PerfSys, PermFacts, Ring};
    use crate::sys::os::PerfEventAttr;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// What the fake saw and what it answers.
    #[derive(Default)]
    pub struct State {
        /// Successful opens: (attr, cpu), in order.
        pub opened: Vec<(PerfEventAttr, u32)>,
        /// Events open right now (dropping one closes it).
        pub open_now: usize,
        /// Refusals: (opens attempted so far, errno): the open with that index fails, whatever
        /// its attr. Attempts count failed ones too.
        pub refuse_at: Vec<(usize, i32)>,
        /// Refuses every open whose read_format asks for PERF_FORMAT_LOST (a kernel before 6.0).
        pub no_format_lost: bool,
        /// Every open from this many events held at once fails with ENOSPC (the CPU's slots).
        pub slots: Option<usize>,
        pub attempts: usize,
        pub map_error: Option<i32>,
        pub output_error: Option<i32>,
        /// (event, ring owner) per PERF_EVENT_IOC_SET_OUTPUT.
        pub outputs: Vec<(u64, u64)>,
        pub enabled: Vec<u64>,
        pub disabled: Vec<u64>,
        /// Counts each event's read gives (traps, lost); None: the read fails.
        pub counts: Option<(u64, u64)>,
        /// Bytes the next mapped ring holds.
        pub ring_bytes: Vec<u8>,
        pub facts: PermFacts,
        pub facts_asked: usize,
        /// Events a BPF program was attached to, and the errno that refuses the attachment
        /// with this index.
        pub bpf_attached: Vec<u64>,
        pub bpf_refuse_at: Option<(usize, i32)>,
    }

    #[derive(Clone, Default)]
    pub struct Fake(pub Rc<RefCell<State>>);

    pub struct Event {
        pub id: u64,
        state: Rc<RefCell<State>>,
    }

    impl Drop for Event {
        fn drop(&mut self) {
            self.state.borrow_mut().open_now -= 1;
        }
    }

    pub struct FakeRing(pub Vec<u8>);

    impl Ring for FakeRing {
        fn take_max(&mut self, out: &mut Vec<u8>, max: usize) -> (usize, bool) {
            let n = self.0.len().min(max);
            out.extend(self.0.drain(..n));
            (n, !self.0.is_empty())
        }
    }

    impl Fake {
        pub fn state(&self) -> std::cell::RefMut<'_, State> {
            self.0.borrow_mut()
        }
    }

    impl PerfSys for Fake {
        type Event = Event;
        type Ring = FakeRing;

        fn open(&mut self, attr: &PerfEventAttr, cpu: u32) -> Result<Event, i32> {
            let mut st = self.0.borrow_mut();
            let n = st.attempts;
            st.attempts += 1;
            if let Some(&(_, e)) = st.refuse_at.iter().find(|(at, _)| *at == n) {
                return Err(e);
            }
            if st.no_format_lost && attr.read_format != 0 {
                return Err(libc::EINVAL);
            }
            if st.slots.is_some_and(|s| st.open_now >= s) {
                return Err(libc::ENOSPC);
            }
            st.opened.push((*attr, cpu));
            st.open_now += 1;
            Ok(Event {
                id: 100 + st.opened.len() as u64,
                state: Rc::clone(&self.0),
            })
        }

        fn id(&mut self, ev: &Event) -> Result<u64, i32> {
            Ok(ev.id)
        }

        fn map_ring(&mut self, _ev: &Event, _pages: usize) -> Result<FakeRing, i32> {
            let st = self.0.borrow();
            match st.map_error {
                Some(e) => Err(e),
                None => Ok(FakeRing(st.ring_bytes.clone())),
            }
        }

        fn set_output(&mut self, ev: &Event, target: &Event) -> Result<(), i32> {
            let mut st = self.0.borrow_mut();
            if let Some(e) = st.output_error {
                return Err(e);
            }
            st.outputs.push((ev.id, target.id));
            Ok(())
        }

        fn enable(&mut self, ev: &Event) -> Result<(), i32> {
            self.0.borrow_mut().enabled.push(ev.id);
            Ok(())
        }

        fn disable(&mut self, ev: &Event) -> Result<(), i32> {
            self.0.borrow_mut().disabled.push(ev.id);
            Ok(())
        }

        fn read_count(&mut self, _ev: &Event) -> Result<(u64, u64), i32> {
            self.0.borrow().counts.ok_or(libc::EINVAL)
        }

        fn poll_fd(ev: &Event) -> i32 {
            ev.id as i32
        }

        fn perm_facts(&self) -> PermFacts {
            let mut st = self.0.borrow_mut();
            st.facts_asked += 1;
            st.facts.clone()
        }

        fn set_bpf(&mut self, ev: &Event, _prog: std::os::fd::BorrowedFd<'_>) -> Result<(), i32> {
            let mut st = self.0.borrow_mut();
            if let Some((at, e)) = st.bpf_refuse_at {
                if at == st.bpf_attached.len() {
                    return Err(e);
                }
            }
            st.bpf_attached.push(ev.id);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(access: Access, len: u8) -> Spec {
        Spec {
            access,
            len,
            addr: 0xffff_8880_0000_1000,
            target: "t".into(),
        }
    }

    fn facts(privileged: bool, user_ok: Option<bool>) -> PermFacts {
        PermFacts {
            privileged,
            paranoid: Some(2),
            lockdown: None,
            lsms: Some("lockdown,capability,apparmor".into()),
            user_breakpoint_ok: user_ok,
        }
    }

    fn err(errno: i32, s: &Spec, arch: Arch, f: PermFacts) -> String {
        open_error(errno, s, arch, 1, &move || f.clone())
    }

    #[test]
    fn eperm_without_the_capability_says_how_to_get_it() {
        for errno in [libc::EPERM, libc::EACCES] {
            let e = err(errno, &spec(Access::W, 8), Arch::X86_64, facts(false, None));
            assert!(e.contains("lacks CAP_PERFMON"), "{e}");
            assert!(e.contains("setcap cap_perfmon"), "{e}");
            assert!(
                e.contains("perf_event_paranoid to 1") && e.contains("it is 2 now"),
                "{e}"
            );
            assert!(!e.contains("forbids"), "{e}");
        }
    }

    #[test]
    fn eperm_with_the_capability_blames_the_kernel_and_says_what_still_works() {
        let e = err(
            libc::EPERM,
            &spec(Access::W, 8),
            Arch::X86_64,
            facts(true, Some(true)),
        );
        assert!(e.contains("although kmemd holds CAP_PERFMON"), "{e}");
        assert!(
            e.contains("forbids hardware breakpoints on kernel addresses"),
            "{e}"
        );
        assert!(
            e.contains("hypervisor") && e.contains("lockdown (not in force here)"),
            "{e}"
        );
        assert!(e.contains("this kernel runs lockdown,capability,apparmor"), "{e}");
        assert!(e.contains("user-space memory still work"), "{e}");
        assert!(!e.contains("setcap") && !e.contains("need root"), "{e}");
        let mut f = facts(true, Some(false));
        f.lockdown = Some("confidentiality".into());
        let e = err(libc::EPERM, &spec(Access::W, 8), Arch::Aarch64, f);
        assert!(e.contains("in force here: confidentiality"), "{e}");
        assert!(e.contains("user-space memory are refused too"), "{e}");
    }

    #[test]
    fn other_errnos_keep_their_own_sentences_and_never_gather_facts() {
        let never = || -> PermFacts { panic!("facts are for EPERM/EACCES only") };
        let x = open_error(libc::EINVAL, &spec(Access::X, 8), Arch::X86_64, 0, &never);
        assert!(x.contains("kprobes"), "{x}");
        let r = open_error(libc::EINVAL, &spec(Access::R, 4), Arch::X86_64, 0, &never);
        assert!(r.contains("use rw4"), "{r}");
        let a = open_error(libc::EINVAL, &spec(Access::W, 8), Arch::Aarch64, 0, &never);
        assert!(a.contains("aligned"), "{a}");
        let n = open_error(libc::ENOSPC, &spec(Access::W, 8), Arch::X86_64, 3, &never);
        assert!(
            n.contains("no free debug register on CPU 3") && n.contains("has 4"),
            "{n}"
        );
        for errno in [libc::ENOENT, libc::ENODEV] {
            let d = open_error(errno, &spec(Access::W, 8), Arch::X86_64, 0, &never);
            assert!(d.contains("no hardware breakpoint support"), "{d}");
        }
    }

    #[test]
    fn lockdown_mode_is_the_bracketed_word() {
        assert_eq!(lockdown_mode("[none] integrity confidentiality"), None);
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality").as_deref(),
            Some("integrity")
        );
        assert_eq!(lockdown_mode("garbage"), None);
    }

    fn rec(ty: u32, body: &[u64]) -> Vec<u8> {
        let size = 8 + body.len() * 8;
        let mut v = Vec::new();
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&(size as u16).to_ne_bytes());
        for w in body {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        v
    }

    fn pair(lo: u32, hi: u32) -> u64 {
        u64::from_ne_bytes({
            let mut b = [0u8; 8];
            b[..4].copy_from_slice(&lo.to_ne_bytes());
            b[4..].copy_from_slice(&hi.to_ne_bytes());
            b
        })
    }

    #[test]
    fn parses_samples_lost_and_skips_markers() {
        let mut buf = rec(
            RECORD_SAMPLE,
            &[
                77,                    // identifier
                0xffff_ffff_8100_0010, // ip
                pair(42, 43),          // pid, tid
                1_000,                 // time
                0xffff_8880_0000_0008, // addr
                pair(1, 0),            // cpu, res
                3,                     // nr
                0xffff_ffff_ffff_ff80, // PERF_CONTEXT_KERNEL
                0xffff_ffff_8100_0010,
                0xffff_ffff_8100_2000,
            ],
        );
        buf.extend(rec(RECORD_LOST, &[77, 5, 0, 0]));
        buf.extend(rec(RECORD_THROTTLE, &[1, 2, 3]));
        buf.extend(rec(99, &[]));
        let mut got = Vec::new();
        let left = parse_records(&buf, |r| got.push(r));
        assert_eq!(left, 0);
        assert_eq!(got.len(), 4);
        match &got[0] {
            Record::Sample(s) => {
                assert_eq!((s.id, s.pid, s.tid, s.cpu, s.time), (77, 42, 43, 1, 1000));
                assert_eq!(s.addr, 0xffff_8880_0000_0008);
                assert_eq!(s.stack, vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_2000]);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[1], Record::Lost { id: 77, lost: 5 });
        assert_eq!(got[2], Record::Throttle);
        assert_eq!(got[3], Record::Other(99));
    }

    #[test]
    fn truncated_or_corrupt_records_do_not_panic() {
        // nr claims far more entries than the record holds.
        let buf = rec(RECORD_SAMPLE, &[1, 2, 3, 4, 5, 6, 1 << 40, 7]);
        let mut got = Vec::new();
        parse_records(&buf, |r| got.push(r));
        assert_eq!(got, vec![Record::Other(RECORD_SAMPLE)]);
        // Half a record is left over, a zero size stops parsing.
        let whole = rec(RECORD_LOST, &[1, 2]);
        assert_eq!(parse_records(&whole[..12], |_| panic!("no record expected")), 12);
        let mut zero = whole.clone();
        zero[6] = 0;
        zero[7] = 0;
        assert_eq!(parse_records(&zero, |_| panic!("no record expected")), zero.len());
    }

    fn two_words() -> Vec<Spec> {
        vec![spec(Access::W, 8), {
            let mut s = spec(Access::Rw, 4);
            s.addr += 8;
            s
        }]
    }

    #[test]
    fn arming_opens_one_event_per_watchpoint_and_cpu_and_one_ring_per_cpu() {
        let f = fake::Fake::default();
        f.state().counts = Some((3, 1));
        let mut armed = Armed::arm_with(f.clone(), &two_words(), &[0, 2], 4, Arch::X86_64).unwrap();
        {
            let st = f.state();
            let cpus: Vec<u32> = st.opened.iter().map(|(_, c)| *c).collect();
            assert_eq!(cpus, [0, 0, 2, 2]);
            assert!(st
                .opened
                .iter()
                .all(|(a, _)| a.read_format == os::PERF_FORMAT_LOST));
            assert_eq!(st.opened[1].0.bp_addr, two_words()[1].addr);
            assert_eq!(
                st.outputs,
                [(102, 101), (104, 103)],
                "second watchpoint into the CPU's ring"
            );
            assert_eq!(st.enabled, [101, 102, 103, 104]);
            assert_eq!(st.facts_asked, 0);
        }
        assert_eq!(armed.event_count(), 4);
        let rings: Vec<(u32, i32)> = armed.rings.iter().map(|r| (r.cpu, r.fd)).collect();
        assert_eq!(rings, [(0, 101), (2, 103)]);
        assert_eq!(armed.ids.get(&102), Some(&1));
        assert_eq!(armed.ids.get(&103), Some(&0));
        assert_eq!(armed.kernel_counts(), Some((12, 4)), "summed over events");
        f.state().counts = None;
        assert_eq!(armed.kernel_counts(), None, "a kernel without PERF_FORMAT_LOST");
        drop(armed);
        let st = f.state();
        assert_eq!(st.disabled, [101, 102, 103, 104], "disabled before closing");
        assert_eq!(st.open_now, 0, "every debug register released");
    }

    #[test]
    fn a_kernel_without_format_lost_gets_events_without_it() {
        let f = fake::Fake::default();
        f.state().no_format_lost = true;
        let armed = Armed::arm_with(f.clone(), &two_words(), &[0, 1], 4, Arch::X86_64).unwrap();
        assert_eq!(armed.event_count(), 4);
        let st = f.state();
        assert_eq!(st.opened.len(), 4);
        assert!(st.opened.iter().all(|(a, _)| a.read_format == 0));
    }

    #[test]
    fn a_refused_event_says_why_and_releases_the_others() {
        let x86 = Arch::X86_64;
        // (errno, which open fails, what the sentence must say, facts gathered)
        let cases: &[(i32, usize, &str, usize)] = &[
            (
                libc::ENOSPC,
                3,
                "no free debug register on CPU 1 (ENOSPC; this CPU has 4",
                0,
            ),
            (libc::EPERM, 0, "lacks CAP_PERFMON", 1),
            (libc::EACCES, 2, "lacks CAP_PERFMON", 1),
            (libc::ENOENT, 1, "no hardware breakpoint support for perf", 0),
            (libc::ENODEV, 0, "no hardware breakpoint support for perf", 0),
            (libc::EMFILE, 0, "raise `ulimit -n`", 0),
            (libc::EBUSY, 2, "perf_event_open on CPU 1 failed", 0),
        ];
        for &(errno, at, want, asked) in cases {
            let f = fake::Fake::default();
            f.state().refuse_at = vec![(at, errno)];
            let e = Armed::arm_with(f.clone(), &two_words(), &[0, 1], 4, x86)
                .err()
                .unwrap();
            assert!(e.contains(want), "errno {errno}: {e}");
            assert!(e.starts_with("-w "), "{e}");
            let st = f.state();
            assert_eq!(st.open_now, 0, "errno {errno}: events opened before are closed");
            assert_eq!(st.facts_asked, asked, "errno {errno}");
        }
        // EINVAL twice (also without PERF_FORMAT_LOST): the sentence for the spec's type.
        let f = fake::Fake::default();
        f.state().refuse_at = vec![(0, libc::EINVAL), (1, libc::EINVAL)];
        let x = vec![spec(Access::X, 8)];
        let e = Armed::arm_with(f.clone(), &x, &[0], 4, x86).err().unwrap();
        assert!(e.contains("kprobes"), "{e}");
        // With the capability, the kernel is blamed.
        let f = fake::Fake::default();
        f.state().refuse_at = vec![(0, libc::EPERM)];
        f.state().facts = facts(true, Some(true));
        let e = Armed::arm_with(f.clone(), &two_words(), &[0], 4, x86)
            .err()
            .unwrap();
        assert!(
            e.contains("forbids hardware breakpoints on kernel addresses"),
            "{e}"
        );
    }

    #[test]
    fn ring_and_output_failures_are_reported_and_release_everything() {
        let f = fake::Fake::default();
        f.state().map_error = Some(libc::EPERM);
        let e = Armed::arm_with(f.clone(), &two_words(), &[0], 4, Arch::X86_64)
            .err()
            .unwrap();
        assert!(
            e.starts_with("cannot map a ") && e.contains("perf ring for CPU 0"),
            "{e}"
        );
        assert_eq!(f.state().open_now, 0);
        let f = fake::Fake::default();
        f.state().output_error = Some(libc::EINVAL);
        let e = Armed::arm_with(f.clone(), &two_words(), &[3], 4, Arch::X86_64)
            .err()
            .unwrap();
        assert!(e.contains("cannot share CPU 3's perf ring"), "{e}");
        assert_eq!(f.state().open_now, 0);
    }

    #[test]
    fn rings_hand_out_whole_batches() {
        let f = fake::Fake::default();
        let mut bytes = rec(RECORD_LOST, &[101, 2]);
        bytes.extend(rec(RECORD_THROTTLE, &[0]));
        f.state().ring_bytes = bytes.clone();
        let mut armed = Armed::arm_with(f, &two_words()[..1], &[0], 4, Arch::X86_64).unwrap();
        let mut out = Vec::new();
        let r = &mut armed.rings[0].ring;
        assert_eq!(r.take_max(&mut out, 24), (24, true));
        assert_eq!(r.take(&mut out), 16);
        assert_eq!(out, bytes);
        let mut got = Vec::new();
        parse_records(&out, |r| got.push(r));
        assert_eq!(got, [Record::Lost { id: 101, lost: 2 }, Record::Throttle]);
    }

    #[test]
    fn the_snapshot_program_goes_on_every_event_or_its_refusal_is_a_sentence() {
        use std::os::fd::AsFd;
        let prog = std::fs::File::open("/dev/null").unwrap();
        let f = fake::Fake::default();
        let mut armed = Armed::arm_with(f.clone(), &two_words(), &[0, 1], 4, Arch::X86_64).unwrap();
        armed.attach_bpf(prog.as_fd()).unwrap();
        assert_eq!(f.state().bpf_attached, [101, 102, 103, 104]);
        let f = fake::Fake::default();
        f.state().bpf_refuse_at = Some((0, libc::EINVAL));
        let mut armed = Armed::arm_with(f.clone(), &two_words(), &[0, 1], 4, Arch::X86_64).unwrap();
        let e = armed.attach_bpf(prog.as_fd()).unwrap_err();
        assert!(
            e.contains("refused to run the snapshot program")
                && e.contains("0 of 4 events")
                && e.contains("cannot attach BPF programs to breakpoint events"),
            "{e}"
        );
        assert_eq!(armed.event_count(), 4, "the watch itself stays armed");
        assert_eq!(f.state().open_now, 4);
    }

    #[test]
    fn samples_carry_the_registers_at_the_trap() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let mask = arch.perf_regs_mask();
            assert_eq!(attr_for(&spec(Access::W, 8), arch).sample_regs_intr, mask);
            assert_ne!(
                attr_for(&spec(Access::W, 8), arch).sample_type & SAMPLE_REGS_INTR,
                0
            );
        }
        let mut body = vec![5u64, 0xffff_ffff_8100_0010, pair(1, 2), 9, 0x10, pair(0, 0), 1];
        body.push(0xffff_ffff_8100_0010);
        body.extend([2, 0xaa, 0xbb, 0xcc]); // abi PERF_SAMPLE_REGS_ABI_64, three registers
        let buf = rec(RECORD_SAMPLE, &body);
        let mut got = Vec::new();
        parse_records(&buf, |r| got.push(r));
        match &got[..] {
            [Record::Sample(s)] => assert_eq!(s.regs, [0xaa, 0xbb, 0xcc]),
            other => panic!("{other:?}"),
        }
        // abi 0 (the kernel had no registers): none, whatever follows.
        body.truncate(8);
        body.extend([0, 0xaa]);
        let mut got = Vec::new();
        parse_records(&rec(RECORD_SAMPLE, &body), |r| got.push(r));
        assert!(
            matches!(&got[..], [Record::Sample(s)] if s.regs.is_empty()),
            "{got:?}"
        );
    }

    #[test]
    fn attr_asks_for_every_trap_with_stack() {
        let spec = Spec {
            access: Access::W,
            len: 8,
            addr: 0xffff_8880_0000_0008,
            target: "x".into(),
        };
        let a = attr_for(&spec, Arch::X86_64);
        assert_eq!((a.type_, a.sample_period, a.bp_type, a.bp_len), (5, 1, 2, 8));
        assert_eq!(a.bp_addr, spec.addr);
        assert_ne!(a.sample_type & SAMPLE_CALLCHAIN, 0);
        assert_ne!(a.flags & os::ATTR_FLAG_DISABLED, 0);
        assert_eq!(a.wakeup_events, 1, "x86: the reader wakes at every hit");
        // arm64: a wake-up per sample re-traps the stepped instruction (Arch docs): none.
        let a = attr_for(&spec, Arch::Aarch64);
        assert_eq!(a.wakeup_events, 0);
        assert_eq!(
            a.flags & os::ATTR_FLAG_WATERMARK,
            0,
            "the kernel's default: half a ring"
        );
    }
}
