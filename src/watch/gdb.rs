//! GDB's own `break`, `hbreak`, `watch`, `rwatch` and `awatch` on the running kernel: each point
//! GDB inserts is armed with perf breakpoint events on every online CPU (the same arming as
//! `kmemd -w`, perf.rs), paused until GDB continues; the first trap becomes GDB's stop, with the
//! registers and the stack at the trap: bpf/watch.bpf.c's snapshot (snapshot.rs), attached to
//! every event, or where BPF cannot be loaded, perf's own registers (PERF_SAMPLE_REGS_INTR) and
//! no stack copy.
//!
//! The kernel never stops: by the time GDB reads anything the trapped task has moved on, so only
//! what the hit carries (registers, the stack copy) shows the instant of the access.

use super::perf::{self, Armed, PerfSys, Ring, SysPerf};
use super::snapshot::{Pairer, Snapshots};
use super::spec::{self, Access, Spec};
use crate::arch::{Arch, Registers};
use crate::target::{Point, PointHit, PointKind, Points, StackCopy};
use std::os::fd::RawFd;

/// Bytes of the snapshot ring buffer: a snapshot is at most ~16.6 KiB (~33 KiB with an
/// interrupted task's stack), and GDB stops at the first hit, so this holds the snapshots of a
/// burst while the first is picked.
const SNAP_RING: u32 = 1 << 20;

/// Data pages per CPU ring of one point: GDB stops at the first hit, so the ring only has to
/// hold the traps of one poll interval; 64 KiB is ~300 samples with registers.
const RING_PAGES: usize = 16;

/// Most bytes taken from a ring per look.
const PASS_BYTES: usize = 64 << 10;

/// The points of one GDB session on the live kernel.
pub struct LivePoints<S: PerfSys + Clone = SysPerf> {
    arch: Arch,
    cpus: Vec<u32>,
    /// Each armed point with its events (one per CPU), in GDB's insertion order.
    armed: Vec<(Point, Armed<S>)>,
    sys: S,
    /// The snapshot ring buffer and what it held ahead of the samples.
    snaps: Option<(Snapshots, Pairer)>,
    /// The snapshot program is still to be loaded (before the first point is armed).
    load_snapper: bool,
    /// task_struct's `stack` offset, for the snapshot program (see [`Snapshots::open`]).
    task_stack_offset: Option<u64>,
    /// kmemd's own reads of a watched address (GDB printing it) trap too; never a stop.
    own_pid: u32,
    buf: Vec<u8>,
}

impl LivePoints {
    /// Points armed on `cpus` (every online CPU) through the kernel's perf, each hit with its
    /// snapshot where the snapshot program loads (at the first point: a session that never
    /// watches never pays for verifying it).
    pub fn new(arch: Arch, cpus: Vec<u32>) -> LivePoints {
        let mut p = LivePoints::with_sys(arch, cpus, SysPerf);
        p.load_snapper = true;
        p
    }
}

impl<S: PerfSys + Clone> LivePoints<S> {
    pub fn with_sys(arch: Arch, cpus: Vec<u32>, sys: S) -> LivePoints<S> {
        LivePoints {
            arch,
            cpus,
            armed: Vec::new(),
            sys,
            snaps: None,
            load_snapper: false,
            task_stack_offset: None,
            own_pid: std::process::id(),
            buf: Vec::new(),
        }
    }
}

/// What `-w` would watch for GDB's point, checked as `-w` checks it, or why it cannot be.
pub fn spec_for(p: Point, arch: Arch) -> Result<Spec, String> {
    let what = format!("{} *{:#x}", p.kind.gdb_command(), p.addr);
    let regs = arch.debug_regs();
    let (access, len) = match p.kind {
        PointKind::Software | PointKind::Hardware => (Access::X, regs.exec_len),
        PointKind::Write | PointKind::Read | PointKind::Access => {
            let len = match p.len {
                1 | 2 | 4 | 8 => p.len as u8,
                n => {
                    return Err(format!(
                        "{what}: {n} bytes cannot be watched by one debug register (1, 2, 4 or 8 \
                         aligned bytes can): watch a field or a part of it"
                    ))
                }
            };
            let access = match p.kind {
                PointKind::Write => Access::W,
                PointKind::Read => Access::R,
                _ => Access::Rw,
            };
            (access, len)
        }
    };
    if let (Access::R, Some(why)) = (access, regs.no_read_only) {
        return Err(format!("{what}: {why}; use awatch (reads and writes) instead"));
    }
    let spec = Spec {
        access,
        len,
        addr: p.addr,
        target: what,
    };
    spec::check(&spec, arch)?;
    Ok(spec)
}

/// Registers in target-description order from a snapshot's, which are `struct pt_regs` (x86_64)
/// or `struct user_pt_regs` (arm64) in order: the arch's [`crate::arch::PtRegs`] names them.
fn snapshot_registers(arch: Arch, words: &[u64]) -> Registers {
    let layout = arch.pt_regs();
    let array = layout.array.map_or(&[][..], |(_, names)| names);
    let names = array
        .iter()
        .copied()
        .chain(layout.members.iter().map(|(_, gdb)| *gdb));
    let mut regs = vec![None; arch.registers().len()];
    for (name, &v) in names.zip(words) {
        if let Some(slot) = arch.reg_index(name).and_then(|i| regs.get_mut(i)) {
            *slot = Some(v);
        }
    }
    Registers(regs)
}

/// Registers in target-description order from perf's, which come in mask bit order.
fn registers(arch: Arch, perf_regs: &[u64]) -> Registers {
    let mut regs = vec![None; arch.registers().len()];
    let names = arch.perf_regs().iter().filter(|n| !n.is_empty());
    for (name, &v) in names.zip(perf_regs) {
        if let Some(slot) = arch.reg_index(name).and_then(|i| regs.get_mut(i)) {
            *slot = Some(v);
        }
    }
    Registers(regs)
}

impl<S: PerfSys + Clone> LivePoints<S> {
    fn load_snapshots(&mut self) {
        match Snapshots::open(SNAP_RING, self.task_stack_offset) {
            Ok(s) => self.snaps = Some((s, Pairer::default())),
            Err(e) => log::warn!(
                "no stack snapshots at hits ({e}): GDB gets perf's registers, and the stack reads live"
            ),
        }
    }
}

impl<S: PerfSys + Clone> Points for LivePoints<S> {
    fn set_task_stack_offset(&mut self, offset: u64) {
        self.task_stack_offset = Some(offset);
    }

    fn insert(&mut self, p: Point) -> Result<(), String> {
        if self.armed.iter().any(|(q, _)| *q == p) {
            return Ok(());
        }
        let spec = spec_for(p, self.arch)?;
        let exec_note = if p.kind == PointKind::Software {
            " kmemd never writes kernel text, so it cannot plant a software breakpoint: `break` \
             takes a debug register like `hbreak`, and none is left."
        } else {
            ""
        };
        if let Some(slots) = spec::max_slots(self.arch) {
            if self.armed.len() >= slots {
                return Err(format!(
                    "{}: all {slots} debug registers of this CPU are in use by this session's \
                     breakpoints and watchpoints.{exec_note} Delete one first",
                    spec.target
                ));
            }
        }
        if std::mem::take(&mut self.load_snapper) {
            self.load_snapshots();
        }
        let attrs = [perf::attr_for(&spec, self.arch)];
        let mut armed = Armed::arm_attrs_with(
            self.sys.clone(),
            std::slice::from_ref(&spec),
            &attrs,
            &self.cpus,
            RING_PAGES,
            self.arch,
        )
        .map_err(|e| {
            if e.contains("ENOSPC") {
                format!("{e}.{exec_note}")
            } else {
                e
            }
        })?;
        if let Some((snaps, _)) = &self.snaps {
            if let Err(e) = armed.attach_bpf(snaps.prog()) {
                // The hit still stops GDB, with perf's registers and a live stack.
                log::warn!("{e}");
            }
        }
        // Armed until GDB continues.
        armed.disable();
        self.armed.push((p, armed));
        Ok(())
    }

    fn remove(&mut self, p: Point) -> bool {
        let before = self.armed.len();
        self.armed.retain(|(q, _)| *q != p);
        self.armed.len() != before
    }

    fn is_empty(&self) -> bool {
        self.armed.is_empty()
    }

    fn slots(&self) -> Option<usize> {
        spec::max_slots(self.arch)
    }

    fn resume(&mut self) -> Result<(), String> {
        // Old snapshots go before any event is enabled: a trap right after enabling puts its
        // snapshot in the ring before its sample, and dropping it then left that hit without one.
        if let Some((snaps, pairer)) = &mut self.snaps {
            snaps.take(usize::MAX, drop);
            *pairer = Pairer::default();
        }
        for (_, a) in &mut self.armed {
            // Whatever trapped before GDB continued (while the events were being armed) is old.
            for r in &mut a.rings {
                loop {
                    self.buf.clear();
                    if !r.ring.take_max(&mut self.buf, PASS_BYTES).1 {
                        break;
                    }
                }
            }
            a.enable()?;
        }
        self.buf.clear();
        Ok(())
    }

    fn pause(&mut self) {
        for (_, a) in &mut self.armed {
            a.disable();
        }
    }

    fn poll_fds(&self) -> Vec<RawFd> {
        self.armed
            .iter()
            .flat_map(|(_, a)| a.rings.iter().map(|r| r.fd))
            .collect()
    }

    fn take_hit(&mut self) -> Option<PointHit> {
        // Snapshots first: each is in its ring buffer before its sample is in the perf ring.
        let mut consumed = 0usize;
        if let Some((snaps, pairer)) = &mut self.snaps {
            consumed = snaps.take(usize::MAX, |s| pairer.push(s));
        }
        let mut first_time = None;
        // The earliest trap of every ring: rings are per CPU and per point.
        let mut first: Option<(u64, PointHit)> = None;
        for (p, a) in &mut self.armed {
            for r in &mut a.rings {
                self.buf.clear();
                r.ring.take_max(&mut self.buf, PASS_BYTES);
                perf::parse_records(&self.buf, |rec| {
                    let perf::Record::Sample(s) = rec else {
                        return;
                    };
                    if s.pid == self.own_pid || first.as_ref().is_some_and(|(t, _)| *t <= s.time) {
                        return;
                    }
                    let regs = if !s.regs.is_empty() {
                        registers(self.arch, &s.regs)
                    } else {
                        // Without perf's registers the pc is still the sample's.
                        let mut r = vec![None; self.arch.registers().len()];
                        r[self.arch.pc_index()] = Some(s.ip);
                        Registers(r)
                    };
                    first_time = Some((s.time, s.cpu, s.tid));
                    first = Some((
                        s.time,
                        PointHit {
                            point: *p,
                            cpu: s.cpu,
                            pid: s.tid,
                            regs,
                            stacks: Vec::new(),
                        },
                    ));
                });
            }
        }
        self.buf.clear();
        let (_, mut hit) = first?;
        let snap = match (&mut self.snaps, first_time) {
            (Some((_, pairer)), Some((time, cpu, tid))) => {
                let snap = pairer.take(cpu, tid, time);
                if snap.is_none() {
                    log::debug!(
                        "trap at {time} on CPU {cpu} by {tid} has no snapshot ({consumed} read \
                         this pass, {} waiting, {} unmatched)",
                        pairer.waiting(),
                        pairer.unmatched
                    );
                }
                snap
            }
            _ => None,
        };
        if let Some(s) = snap {
            hit.regs = snapshot_registers(self.arch, &s.regs);
            hit.stacks.push(StackCopy {
                start: s.sp(self.arch),
                bytes: s.stack,
            });
            if !s.task_stack.is_empty() {
                hit.stacks.push(StackCopy {
                    start: s.task_stack_start,
                    bytes: s.task_stack,
                });
            }
        }
        Some(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::perf::fake::{Fake, State};
    use std::cell::RefCell;
    use std::rc::Rc;

    fn pt(kind: PointKind, addr: u64, len: u64) -> Point {
        Point { kind, addr, len }
    }

    #[test]
    fn gdb_points_become_the_specs_of_w() {
        let x = Arch::X86_64;
        let a = 0xffff_ffff_82a0_c0c0;
        let s = spec_for(pt(PointKind::Write, a, 4), x).unwrap();
        assert_eq!((s.access, s.len, s.addr), (Access::W, 4, a));
        let s = spec_for(pt(PointKind::Access, a, 8), x).unwrap();
        assert_eq!((s.access, s.len), (Access::Rw, 8));
        // GDB's breakpoint "kind" is the instruction length (1 on x86): the exec length is perf's.
        let s = spec_for(pt(PointKind::Hardware, 0xffff_ffff_8100_0010, 1), x).unwrap();
        assert_eq!((s.access, s.len), (Access::X, 8));
        let s = spec_for(pt(PointKind::Software, 0xffff_ffff_8100_0010, 1), x).unwrap();
        assert_eq!(s.access, Access::X);
        let s = spec_for(pt(PointKind::Read, 0xffff_0000_1234_5678, 8), Arch::Aarch64).unwrap();
        assert_eq!(s.access, Access::R);
    }

    #[test]
    fn what_a_debug_register_cannot_do_is_refused_with_the_reason() {
        let x = Arch::X86_64;
        let e = spec_for(pt(PointKind::Read, 0xffff_ffff_82a0_c0c0, 4), x).unwrap_err();
        assert!(
            e.contains("cannot trap reads alone") && e.contains("awatch"),
            "{e}"
        );
        let e = spec_for(pt(PointKind::Write, 0xffff_ffff_82a0_c0c0, 16), x).unwrap_err();
        assert!(e.starts_with("watch *0xffffffff82a0c0c0: 16 bytes"), "{e}");
        let e = spec_for(pt(PointKind::Write, 0xffff_ffff_82a0_c0c2, 4), x).unwrap_err();
        assert!(e.contains("misaligned"), "{e}");
        let e = spec_for(pt(PointKind::Access, 0x1000, 4), x).unwrap_err();
        assert!(e.contains("not a kernel address"), "{e}");
    }

    #[test]
    fn perf_registers_land_in_the_target_description() {
        let x = Arch::X86_64;
        let vals: Vec<u64> = (0..20).map(|i| 0x100 + i).collect();
        let r = registers(x, &vals);
        let get = |n: &str| r.0[x.reg_index(n).unwrap()];
        assert_eq!(get("rax"), Some(0x100));
        assert_eq!(get("rsp"), Some(0x107));
        assert_eq!(get("rip"), Some(0x108));
        assert_eq!(get("ss"), Some(0x10b));
        assert_eq!(
            get("r8"),
            Some(0x10c),
            "r8 follows ss: bits 12-15 are not asked for"
        );
        assert_eq!(get("r15"), Some(0x113));
        assert_eq!(get("ds"), None);
        assert_eq!(x.perf_regs_mask(), 0x00ff_0fff);
        let a = Arch::Aarch64;
        assert_eq!(a.perf_regs_mask(), (1 << 33) - 1);
        let vals: Vec<u64> = (0..33).collect();
        let r = registers(a, &vals);
        assert_eq!(r.0[a.reg_index("x29").unwrap()], Some(29));
        assert_eq!(r.0[a.reg_index("sp").unwrap()], Some(31));
        assert_eq!(r.0[a.pc_index()], Some(32));
        assert_eq!(r.0[a.reg_index("cpsr").unwrap()], None);
    }

    #[test]
    fn snapshot_registers_follow_pt_regs() {
        let x = Arch::X86_64;
        // struct pt_regs: r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp ss
        let words: Vec<u64> = (0..21).map(|i| 0x1000 + i).collect();
        let r = snapshot_registers(x, &words);
        let get = |n: &str| r.0[x.reg_index(n).unwrap()];
        assert_eq!(get("r15"), Some(0x1000));
        assert_eq!(get("rbp"), Some(0x1004));
        assert_eq!(get("rax"), Some(0x100a));
        assert_eq!(get("rdi"), Some(0x100e));
        assert_eq!(get("rip"), Some(0x1010));
        assert_eq!(get("eflags"), Some(0x1012));
        assert_eq!(get("rsp"), Some(0x1013));
        assert_eq!(get("ss"), Some(0x1014));
        let a = Arch::Aarch64;
        let words: Vec<u64> = (0..34).collect();
        let r = snapshot_registers(a, &words);
        assert_eq!(r.0[a.reg_index("x30").unwrap()], Some(30));
        assert_eq!(r.0[a.reg_index("sp").unwrap()], Some(31));
        assert_eq!(r.0[a.pc_index()], Some(32));
        assert_eq!(r.0[a.reg_index("cpsr").unwrap()], Some(33));
    }

    thread_local! {
        static STATE: Rc<RefCell<State>> = Rc::new(RefCell::new(State::default()));
    }

    fn fake() -> Fake {
        Fake(STATE.with(Rc::clone))
    }

    fn reset() {
        STATE.with(|s| *s.borrow_mut() = State::default());
    }

    #[test]
    fn points_are_armed_paused_released_on_removal_and_bounded_by_the_slots() {
        reset();
        let mut p = LivePoints::with_sys(Arch::X86_64, vec![0, 1], fake());
        let a = 0xffff_ffff_82a0_c0c0;
        p.insert(pt(PointKind::Write, a, 4)).unwrap();
        p.insert(pt(PointKind::Write, a, 4)).unwrap();
        {
            let st = fake().0;
            let st = st.borrow();
            assert_eq!(
                st.opened.len(),
                2,
                "one event per CPU, a repeated Z arms nothing more"
            );
            assert!(st
                .opened
                .iter()
                .all(|(attr, _)| attr.sample_type & perf::SAMPLE_REGS_INTR != 0
                    && attr.sample_regs_intr == Arch::X86_64.perf_regs_mask()));
        }
        assert!(!p.is_empty());
        assert_eq!(p.poll_fds().len(), 2);
        for i in 1..4 {
            p.insert(pt(PointKind::Hardware, 0xffff_ffff_8100_0000 + 16 * i, 1))
                .unwrap();
        }
        let e = p
            .insert(pt(PointKind::Software, 0xffff_ffff_8100_1000, 1))
            .unwrap_err();
        assert!(
            e.contains("all 4 debug registers") && e.contains("never writes kernel text"),
            "{e}"
        );
        assert!(p.remove(pt(PointKind::Write, a, 4)));
        assert!(!p.remove(pt(PointKind::Write, a, 4)));
        p.insert(pt(PointKind::Software, 0xffff_ffff_8100_1000, 1))
            .unwrap();
        assert_eq!(p.slots(), Some(4));
    }

    /// A PERF_RECORD_SAMPLE laid out as `attr` asks: SAMPLE_TYPE, then the registers.
    fn sample(time: u64, pid: u32, cpu: u32, chain: &[u64], regs: &[u64]) -> Vec<u8> {
        let two = |lo: u32, hi: u32| u64::from(lo) | u64::from(hi) << 32;
        let mut body = vec![
            101,
            0xffff_ffff_8111_2222,
            two(pid, pid),
            time,
            0xffff_ffff_82a0_c0c0,
        ];
        body.push(two(cpu, 0));
        body.push(chain.len() as u64);
        body.extend_from_slice(chain);
        body.push(if regs.is_empty() { 0 } else { 2 });
        body.extend_from_slice(regs);
        let size = 8 + 8 * body.len();
        let mut rec = perf::RECORD_SAMPLE.to_ne_bytes().to_vec();
        rec.extend_from_slice(&0u16.to_ne_bytes());
        rec.extend_from_slice(&(size as u16).to_ne_bytes());
        for w in body {
            rec.extend_from_slice(&w.to_ne_bytes());
        }
        rec
    }

    #[test]
    fn the_earliest_trap_not_made_by_kmemd_becomes_the_hit() {
        reset();
        let x = Arch::X86_64;
        let regs: Vec<u64> = (0..20).map(|i| 0xffff_c900_0000_0000 + i).collect();
        let own = std::process::id();
        let mut bytes = sample(50, 4242, 1, &[0xffff_ffff_8100_0001], &regs);
        bytes.extend(sample(10, own, 0, &[], &regs));
        bytes.extend(sample(20, 0, 1, &[1, 2, 3], &regs));
        bytes.extend(sample(30, 77, 0, &[], &[]));
        fake().state().ring_bytes = bytes;
        let mut p = LivePoints::with_sys(x, vec![0], fake());
        let w = pt(PointKind::Write, 0xffff_ffff_82a0_c0c0, 4);
        p.insert(w).unwrap();
        let hit = p.take_hit().expect("a hit");
        assert_eq!(
            (hit.point, hit.cpu, hit.pid),
            (w, 1, 0),
            "time 20: kmemd's own at 10 skipped"
        );
        assert_eq!(
            hit.regs.0[x.reg_index("rsp").unwrap()],
            Some(0xffff_c900_0000_0007)
        );
        assert_eq!(hit.regs.0[x.pc_index()], Some(0xffff_c900_0000_0008));
        assert!(hit.stacks.is_empty());
        assert!(p.take_hit().is_none(), "one stop per pass: the rest are dropped");
        drop(p);

        reset();
        fake().state().ring_bytes = sample(30, 77, 0, &[], &[]);
        let mut p = LivePoints::with_sys(x, vec![0], fake());
        p.insert(w).unwrap();
        let hit = p.take_hit().expect("a hit");
        assert_eq!(
            hit.regs.0[x.pc_index()],
            Some(0xffff_ffff_8111_2222),
            "no registers: the sample's ip"
        );
        assert_eq!(hit.regs.0[x.reg_index("rsp").unwrap()], None);
        drop(p);

        reset();
        fake().state().ring_bytes = sample(30, 77, 0, &[], &regs);
        let mut p = LivePoints::with_sys(x, vec![0], fake());
        p.insert(w).unwrap();
        p.resume().unwrap();
        assert!(p.take_hit().is_none(), "what trapped before continue is dropped");
    }
}
