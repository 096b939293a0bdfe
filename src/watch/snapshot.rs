//! The instant of a hit, as bpf/watch.bpf.c records it: the registers at the trap, the watched
//! bytes, the task, and the kernel stack from the trapped sp. Parsed from the BPF ring buffer and
//! paired with perf's own sample of the same trap (perf's ring stays the record of every hit:
//! traps inside BPF programs, and snapshots the ring buffer had no room for, have none).
//!
//! The API for users of hits (watch mode, the GDB stub's watchpoints):
//! - [`Snapshots::open`] loads the program for the host arch and maps its ring buffer;
//!   [`Snapshots::prog`] is what [`super::perf::Armed::attach_bpf`] attaches to every event.
//! - Each drain pass: take the perf records first, then [`Snapshots::take`] into a [`Pairer`],
//!   then [`Pairer::take`] per perf sample (a snapshot is in the ring buffer before its sample is
//!   in the perf ring, so every sample taken has its snapshot drained by then).
//! - [`values`] gives a hit's (before, after) bytes from its snapshot; [`code_words_into`] the stack's
//!   words that point into kernel text.

use super::spare::Spare;
use crate::arch::a64store;
use crate::arch::Arch;
use crate::sys::clib::{BpfObject, BpfProg, RingBufView};
use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};

// The program for the arch kmemd runs on (its context, pt_regs, differs per arch).
#[cfg(target_arch = "x86_64")]
static WATCH_OBJ: &[u8] = include_bytes!("../../bpf/watch-x86_64.bpf.o");
#[cfg(target_arch = "aarch64")]
static WATCH_OBJ: &[u8] = include_bytes!("../../bpf/watch-aarch64.bpf.o");
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
static WATCH_OBJ: &[u8] = &[];

/// One snapshot (see `struct snap` in bpf/watch.bpf.c; offsets below follow it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// CLOCK_MONOTONIC, like the perf samples' time.
    pub time_ns: u64,
    pub addr: u64,
    /// The 8 bytes at `addr` at the trap (native order), when they could be read.
    pub value: Option<[u8; 8]>,
    pub task: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    /// The registers of the trap in the arch's bpf_user_pt_regs_t order (x86_64 struct pt_regs,
    /// arm64 struct user_pt_regs).
    pub regs: Vec<u64>,
    /// The kernel stack from `sp` upwards; empty when the reader scanned it at drain time
    /// ([`Snapshot::parse_scanning`]) instead of keeping it.
    pub stack: Vec<u8>,
    /// Bytes of stack the program copied.
    pub stack_bytes: usize,
    /// The stack's words that point into kernel text, innermost first, when it was scanned at
    /// drain time.
    pub code: Vec<u64>,
    /// The stack reached the end of its THREAD_SIZE block (else it stopped at an unreadable page).
    pub stack_whole: bool,
    /// Where `task_stack` was: the whole stack of the task the trap interrupted, copied when the
    /// trap ran on another stack (an interrupt's) and kmemd gave the program task_struct's
    /// `stack` offset ([`Snapshots::open`]); 0 and empty otherwise.
    pub task_stack_start: u64,
    pub task_stack: Vec<u8>,
}

const HDR: usize = 88;

/// Register words in the snapshot of each arch (struct pt_regs / struct user_pt_regs).
pub fn nregs(arch: Arch) -> usize {
    match arch {
        Arch::X86_64 => 21,
        Arch::Aarch64 => 34,
    }
}

/// Index of sp and of pc among the snapshot's registers.
pub fn sp_pc(arch: Arch) -> (usize, usize) {
    match arch {
        Arch::X86_64 => (19, 16),
        Arch::Aarch64 => (31, 32),
    }
}

impl Snapshot {
    /// Parses one ring buffer record (native byte order: the kernel wrote it). None when the
    /// record is shorter than what it says it holds, or its register count is not the arch's.
    pub fn parse(rec: &[u8], arch: Arch) -> Option<Snapshot> {
        Snapshot::parse_with(rec, arch, Vec::new(), String::new(), true, |stack| {
            (stack.to_vec(), Vec::new())
        })
    }

    /// [`Snapshot::parse`], keeping of the stack only what `scan` finds in it (watch mode's code
    /// words, written into the empty buffer it is given): a snapshot waiting for its sample then
    /// holds a few hundred bytes, not the stack. Its buffers come from `spare`.
    pub fn parse_scanning(
        rec: &[u8],
        arch: Arch,
        spare: &mut Spare,
        scan: impl FnOnce(&[u8], Vec<u64>) -> Vec<u64>,
    ) -> Option<Snapshot> {
        let code = spare.words();
        Snapshot::parse_with(rec, arch, spare.words(), spare.name(), false, |stack| {
            (Vec::new(), scan(stack, code))
        })
    }

    fn parse_with(
        rec: &[u8],
        arch: Arch,
        mut regs: Vec<u64>,
        mut comm_buf: String,
        keep_task_stack: bool,
        keep: impl FnOnce(&[u8]) -> (Vec<u8>, Vec<u64>),
    ) -> Option<Snapshot> {
        let u64_at =
            |o: usize| -> Option<u64> { Some(u64::from_ne_bytes(rec.get(o..o + 8)?.try_into().ok()?)) };
        let u32_at =
            |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(rec.get(o..o + 4)?.try_into().ok()?)) };
        let n = u32_at(48)? as usize;
        if n != nregs(arch) {
            return None;
        }
        let flags = u32_at(44)?;
        let stack_len = u32_at(52)? as usize;
        let regs_end = HDR.checked_add(n * 8)?;
        regs.clear();
        regs.reserve_exact(n);
        for i in 0..n {
            regs.push(u64_at(HDR + 8 * i)?);
        }
        let stack_end = regs_end.checked_add(stack_len)?;
        let stack = rec.get(regs_end..stack_end)?;
        let task_stack_len = u32_at(80)? as usize;
        let task_stack = rec.get(stack_end..stack_end.checked_add(task_stack_len)?)?;
        let comm = rec.get(56..72)?;
        let comm = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(comm.len())];
        let stack_bytes = stack.len();
        let (stack, code) = keep(stack);
        // Kept only where the whole stack is (GDB's stop); watch mode scans the trapped one.
        let task_stack = if keep_task_stack {
            task_stack.to_vec()
        } else {
            Vec::new()
        };
        Some(Snapshot {
            time_ns: u64_at(0)?,
            addr: u64_at(8)?,
            value: (flags & 1 != 0)
                .then(|| rec.get(16..24).and_then(|v| v.try_into().ok()))
                .flatten(),
            task: u64_at(24)?,
            cpu: u32_at(32)?,
            pid: u32_at(36)?,
            tid: u32_at(40)?,
            comm: {
                comm_buf.clear();
                comm_buf.push_str(&String::from_utf8_lossy(comm));
                comm_buf
            },
            regs,
            stack,
            stack_bytes,
            stack_whole: flags & 2 != 0,
            code,
            task_stack_start: if task_stack.is_empty() { 0 } else { u64_at(72)? },
            task_stack,
        })
    }

    /// Bytes this snapshot costs while it waits in the pairer (what the pairer bounds): itself
    /// and what it holds on the heap.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Snapshot>()
            + self.stack.len()
            + self.task_stack.len()
            + 8 * (self.code.len() + self.regs.len())
            + self.comm.len()
    }

    pub fn sp(&self, arch: Arch) -> u64 {
        self.regs.get(sp_pc(arch).0).copied().unwrap_or(0)
    }

    pub fn pc(&self, arch: Arch) -> u64 {
        self.regs.get(sp_pc(arch).1).copied().unwrap_or(0)
    }
}

/// Default size of the snapshot ring buffer: ~1,000 snapshots of a 4 KiB stack, ~10 ms of the
/// fastest trap rate measured, ~2,600 of the lab's sysctl writes (~1.6 KiB). A full ring drops
/// snapshots, never hits. It is kernel memory; kmemd maps 64 KiB of it at a time (RingBufView).
pub const RING_BYTES: u32 = 4 << 20;

/// The loaded snapshot program and its ring buffer. Dropping it unloads the program once no
/// event holds it any more (closing the events detaches it).
pub struct Snapshots {
    prog: BpfProg,
    ring: RingBufView,
    arch: Arch,
    /// Records that did not parse (a kmemd/BPF object mismatch: never expected).
    pub bad: u64,
    /// A window of the ring could not be mapped (logged once).
    map_failed: bool,
}

impl Snapshots {
    /// Loads watch.bpf.c's program with a ring buffer of `ring_bytes` (a power of two of pages).
    /// With `task_stack_offset` (task_struct's `stack` member), a trap on an interrupt's stack
    /// also copies the interrupted task's whole stack. An error is a sentence saying why
    /// snapshots are not available; watching still works.
    pub fn open(ring_bytes: u32, task_stack_offset: Option<u64>) -> Result<Snapshots, String> {
        if WATCH_OBJ.is_empty() {
            return Err("kmemd has no snapshot program for this CPU architecture".into());
        }
        let mut obj = BpfObject::open_mem("watch", WATCH_OBJ)?;
        obj.set_max_entries("snaps", ring_bytes)?;
        // task_stack_off, the only .rodata variable (set_initial_value checks the size).
        obj.set_initial_value(".rodata", &task_stack_offset.unwrap_or(0).to_ne_bytes())?;
        obj.load()
            .map_err(|e| format!("{e} (the snapshot program needs Linux 5.8 or later: BPF ring buffers)"))?;
        let prog = obj.program("watch_hit")?;
        let ring = obj
            .map_handle("snaps")?
            .ring_buffer()
            .map_err(|e| format!("cannot map the snapshot ring buffer: {e}"))?;
        Ok(Snapshots {
            prog,
            ring,
            arch: Arch::host(),
            bad: 0,
            map_failed: false,
        })
    }

    /// The program to attach to the breakpoint events.
    pub fn prog(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// Hands up to `max` waiting snapshots, oldest first, to `f`; returns how many.
    pub fn take(&mut self, max: usize, mut f: impl FnMut(Snapshot)) -> usize {
        let arch = self.arch;
        self.take_records(max, |rec| Snapshot::parse(rec, arch).map(&mut f).is_some())
    }

    /// Whether the ring buffer is more than `num/den` full: records taken then make room for
    /// the program's next ones (a full ring drops snapshots).
    pub fn filled_over(&self, num: usize, den: usize) -> bool {
        let (used, size) = self.ring.fill();
        used.saturating_mul(den) > size.saturating_mul(num)
    }

    /// Hands records, oldest first and a few at a time, to `push` (which parses one and gives
    /// it to `pairer`) until `pairer` holds one later than `time` or the ring is empty. Every
    /// snapshot up to `time` then waits in the pairer, and most later ones still in the ring,
    /// which costs kmemd no memory (the pairer's heap does).
    pub fn take_until(
        &mut self,
        time: u64,
        pairer: &mut Pairer,
        mut push: impl FnMut(&mut Pairer, &[u8]) -> bool,
    ) {
        while pairer.newest <= time && self.take_records(8, |rec| push(pairer, rec)) > 0 {}
    }

    /// Hands up to `max` waiting records, oldest first, to `parse`, which says whether the
    /// record parsed (those that do not are counted in `bad`); returns how many were handed over.
    pub fn take_records(&mut self, max: usize, mut parse: impl FnMut(&[u8]) -> bool) -> usize {
        let bad = &mut self.bad;
        let taken = self.ring.consume(max, |rec| {
            if !parse(rec) {
                *bad += 1;
            }
        });
        match taken {
            Ok(n) => n,
            Err(e) => {
                // The records stay in the ring; hits keep coming from perf's ring, and those
                // whose snapshot is not taken say they have none.
                if !self.map_failed {
                    log::warn!("cannot map the snapshot ring's records: {e}");
                    self.map_failed = true;
                }
                0
            }
        }
    }
}

/// The watched bytes (`len` of them at `at`) before and after the access a snapshot caught,
/// each None when unknown. x86 traps after the access: the snapshot holds the new bytes, the old
/// ones are the previous hit's (`prev`, given by the caller). arm64 traps before it: the snapshot
/// holds the old bytes, and the new ones are what the store at pc (`insn`, when the caller could
/// read it) writes with the trap's registers.
pub fn values(
    arch: Arch,
    snap: &Snapshot,
    at: u64,
    len: usize,
    prev: Option<u64>,
    insn: Option<u32>,
) -> (Option<u64>, Option<u64>) {
    let seen = snap.value.and_then(|v| v.get(..len).map(le_u64));
    match arch {
        Arch::X86_64 => (prev, seen),
        Arch::Aarch64 => {
            let after = (|| {
                let old = snap.value?;
                let store = a64store::decode(insn?, &snap.regs)?;
                let new = a64store::apply(&store, at, old.get(..len)?);
                Some(le_u64(&new))
            })();
            (seen, after)
        }
    }
}

fn le_u64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    for (d, s) in w.iter_mut().zip(b) {
        *d = *s;
    }
    u64::from_le_bytes(w)
}

/// The 8-byte words of a stack copy that `is_code` accepts (return addresses, and stale ones:
/// the copy is scanned, not unwound), innermost first, at most `max`.
/// The words are written into `code`, emptied first (a buffer for reuse).
pub fn code_words_into(
    stack: &[u8],
    mut is_code: impl FnMut(u64) -> bool,
    max: usize,
    mut code: Vec<u64>,
) -> Vec<u64> {
    code.clear();
    code.reserve_exact(max.min(stack.len() / 8));
    for word in stack.chunks_exact(8) {
        if code.len() == max {
            break;
        }
        let w = u64::from_ne_bytes([
            word[0], word[1], word[2], word[3], word[4], word[5], word[6], word[7],
        ]);
        if is_code(w) {
            code.push(w);
        }
    }
    code
}

/// Pairs snapshots with perf samples. On one CPU the program runs, then perf writes its sample
/// (both clocks are ktime_get_mono_fast_ns), so a sample's snapshot is the latest one of its CPU
/// no later than the sample, by the same thread. Feed every snapshot waiting before the samples
/// that follow them: a snapshot is in the ring buffer before its sample is in the perf ring.
#[derive(Debug, Default)]
pub struct Pairer {
    per_cpu: Vec<VecDeque<Snapshot>>,
    /// Snapshots that matched no sample (a sample the perf ring lost): dropped.
    pub unmatched: u64,
    /// Heap bytes of the snapshots waiting ([`Snapshot::heap_bytes`]).
    pub bytes: usize,
    /// The latest time of any snapshot pushed: the ring buffer holds the later ones.
    pub newest: u64,
}

/// At most this many snapshots wait per CPU; beyond it the oldest are dropped. A safety net only:
/// the caller's byte bound (watch mode's PAIR_BYTES) stops draining long before, leaving
/// the rest in the ring buffer, because snapshots wait here only for samples still in the perf
/// ring (up to ~12,000 per CPU), and dropping the oldest drops exactly those that are needed
/// next. Orphans (their samples were lost) are popped by the next sample of their CPU.
const MAX_WAITING: usize = 1 << 16;

impl Pairer {
    pub fn push(&mut self, s: Snapshot) {
        let c = s.cpu as usize;
        if c >= 1 << 16 {
            self.unmatched += 1;
            return;
        }
        if self.per_cpu.len() <= c {
            self.per_cpu.resize_with(c + 1, VecDeque::new);
        }
        let q = &mut self.per_cpu[c];
        if q.len() >= MAX_WAITING {
            if let Some(old) = q.pop_front() {
                self.bytes -= old.heap_bytes();
            }
            self.unmatched += 1;
        }
        self.bytes += s.heap_bytes();
        self.newest = self.newest.max(s.time_ns);
        q.push_back(s);
    }

    /// The snapshot of the sample taken at `time` on `cpu` by `tid`, if it has one: the latest
    /// snapshot of that CPU no later than the sample. Earlier ones belong to samples the perf ring
    /// lost, and are dropped.
    pub fn take(&mut self, cpu: u32, tid: u32, time: u64) -> Option<Snapshot> {
        let q = self.per_cpu.get_mut(cpu as usize)?;
        let mut latest = None;
        while q.front().is_some_and(|s| s.time_ns <= time) {
            if latest.is_some() {
                self.unmatched += 1;
            }
            latest = q.pop_front();
            if let Some(s) = &latest {
                self.bytes -= s.heap_bytes();
            }
        }
        match latest {
            Some(s) if s.tid == tid => Some(s),
            Some(_) => {
                self.unmatched += 1;
                None
            }
            None => None,
        }
    }

    /// How many snapshots wait for their samples.
    pub fn waiting(&self) -> usize {
        self.per_cpu.iter().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(arch: Arch, time: u64, cpu: u32, tid: u32, stack: &[u8]) -> Vec<u8> {
        record2(arch, time, cpu, tid, stack, 0, &[])
    }

    /// A record with the interrupted task's stack (`task_stack`, copied from `task_at`) too.
    fn record2(
        arch: Arch,
        time: u64,
        cpu: u32,
        tid: u32,
        stack: &[u8],
        task_at: u64,
        task_stack: &[u8],
    ) -> Vec<u8> {
        let mut r = Vec::new();
        for v in [
            time,
            0xffff_8880_0000_1000,
            0x1122_3344_5566_7788,
            0xffff_8880_dead_0000,
        ] {
            r.extend_from_slice(&v.to_ne_bytes());
        }
        for v in [cpu, 7, tid, 3, nregs(arch) as u32, stack.len() as u32] {
            r.extend_from_slice(&v.to_ne_bytes());
        }
        let mut comm = [0u8; 16];
        comm[..5].copy_from_slice(b"agent");
        r.extend_from_slice(&comm);
        r.extend_from_slice(&task_at.to_ne_bytes());
        r.extend_from_slice(&(task_stack.len() as u32).to_ne_bytes());
        r.extend_from_slice(&0u32.to_ne_bytes());
        for i in 0..nregs(arch) as u64 {
            r.extend_from_slice(&(0x100 + i).to_ne_bytes());
        }
        r.extend_from_slice(stack);
        r.extend_from_slice(task_stack);
        r
    }

    #[test]
    fn parses_what_the_bpf_program_writes() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let r = record(arch, 99, 1, 8, &[1, 2, 3]);
            let s = Snapshot::parse(&r, arch).unwrap();
            assert_eq!((s.time_ns, s.cpu, s.pid, s.tid), (99, 1, 7, 8));
            assert_eq!(s.value, Some(0x1122_3344_5566_7788u64.to_ne_bytes()));
            assert!(s.stack_whole);
            assert_eq!(s.comm, "agent");
            assert_eq!(s.stack, vec![1, 2, 3]);
            assert_eq!((s.task_stack_start, s.task_stack.len()), (0, 0));
            let (sp, pc) = sp_pc(arch);
            assert_eq!((s.sp(arch), s.pc(arch)), (0x100 + sp as u64, 0x100 + pc as u64));
            // Every truncation is refused, never read past.
            for n in 0..r.len() {
                assert_eq!(Snapshot::parse(&r[..n], arch), None, "{arch:?} cut at {n}");
            }
        }
        // Scanned at drain time: the code words are kept, the stack is not.
        let mut st = Vec::new();
        for w in [5u64, 0xffff_ffff_8100_0010, 6] {
            st.extend_from_slice(&w.to_ne_bytes());
        }
        let r = record(Arch::X86_64, 9, 0, 1, &st);
        let s = Snapshot::parse_scanning(&r, Arch::X86_64, &mut Spare::default(), |stack, code| {
            code_words_into(stack, |w| w > 0xffff_ffff_0000_0000, 8, code)
        })
        .unwrap();
        assert_eq!(
            (s.stack.len(), s.stack_bytes, s.code.as_slice()),
            (0, 24, &[0xffff_ffff_8100_0010][..])
        );
        assert_eq!(Snapshot::parse(&r, Arch::X86_64).unwrap().stack_bytes, 24);
        // A trap on an interrupt's stack: the interrupted task's stack follows the trapped one.
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let r = record2(arch, 5, 0, 0, &[1, 2], 0xffff_c900_0001_0000, &[9; 40]);
            let s = Snapshot::parse(&r, arch).unwrap();
            assert_eq!(s.stack, vec![1, 2]);
            assert_eq!(
                (s.task_stack_start, s.task_stack),
                (0xffff_c900_0001_0000, vec![9; 40])
            );
            for n in 0..r.len() {
                assert_eq!(Snapshot::parse(&r[..n], arch), None, "{arch:?} cut at {n}");
            }
        }
        // The other arch's register count is refused.
        let r = record(Arch::X86_64, 1, 0, 1, &[]);
        assert_eq!(Snapshot::parse(&r, Arch::Aarch64), None);
    }

    #[test]
    fn pairs_each_sample_with_its_cpus_snapshot() {
        let arch = Arch::X86_64;
        let snap = |t, cpu, tid| Snapshot::parse(&record(arch, t, cpu, tid, &[]), arch).unwrap();
        let mut p = Pairer::default();
        p.push(snap(10, 0, 5));
        p.push(snap(11, 1, 6));
        p.push(snap(20, 0, 5));
        assert_eq!(p.take(0, 5, 12).map(|s| s.time_ns), Some(10));
        assert_eq!(p.take(1, 6, 13).map(|s| s.time_ns), Some(11));
        // A sample made inside a BPF program has no snapshot: the next snapshot is later.
        assert_eq!(p.take(0, 9, 15), None);
        assert_eq!(p.take(0, 5, 21).map(|s| s.time_ns), Some(20));
        // A lost sample's snapshot is dropped when the next sample comes.
        p.push(snap(30, 1, 6));
        p.push(snap(40, 1, 6));
        assert_eq!(p.take(1, 6, 41).map(|s| s.time_ns), Some(40));
        assert_eq!(p.unmatched, 1);
        // Another thread's snapshot is not this sample's.
        p.push(snap(50, 0, 7));
        assert_eq!(p.take(0, 5, 51), None);
        assert_eq!((p.unmatched, p.waiting(), p.bytes), (2, 0, 0));
        p.push(Snapshot::parse(&record(arch, 60, 0, 7, &[0; 24]), arch).unwrap());
        assert_eq!(
            p.bytes,
            std::mem::size_of::<Snapshot>() + 24 + 8 * nregs(arch) + "agent".len()
        );
    }

    #[test]
    fn before_and_after_from_each_arch_trap() {
        // x86 traps after the store: the snapshot holds the new value, the old is the last seen.
        let x86 = Arch::X86_64;
        let s = Snapshot::parse(&record(x86, 1, 0, 1, &[]), x86).unwrap();
        assert_eq!(values(x86, &s, 0, 4, Some(7), None), (Some(7), Some(0x5566_7788)));
        // arm64 traps before: the snapshot holds the old value; `str w1, [x0]` (0xb9000001)
        // with x1 = 0x101 (record() sets x_i = 0x100 + i) and x0 = the watched address.
        let a64 = Arch::Aarch64;
        let mut s = Snapshot::parse(&record(a64, 1, 0, 1, &[]), a64).unwrap();
        s.regs[0] = s.addr;
        assert_eq!(
            values(a64, &s, s.addr, 4, None, Some(0xb900_0001)),
            (Some(0x5566_7788), Some(0x101))
        );
        // An 8-byte watch over a 4-byte store: the upper half keeps the old bytes.
        assert_eq!(
            values(a64, &s, s.addr, 8, None, Some(0xb900_0001)).1,
            Some(0x1122_3344_0000_0101)
        );
        // Not a store it knows (a NOP), or no instruction: the new value is unknown.
        assert_eq!(values(a64, &s, s.addr, 4, None, Some(0xd503_201f)).1, None);
        assert_eq!(values(a64, &s, s.addr, 4, None, None).1, None);
    }

    #[test]
    fn code_words_scan_the_stack_copy() {
        let mut st = Vec::new();
        for w in [
            1u64,
            0xffff_ffff_8100_0010,
            2,
            0xffff_ffff_8100_0020,
            0xffff_ffff_8100_0030,
        ] {
            st.extend_from_slice(&w.to_ne_bytes());
        }
        st.push(0xff); // a torn last word is not read
        let code = |w: u64| w >= 0xffff_ffff_8100_0000;
        assert_eq!(
            code_words_into(&st, code, 8, Vec::new()),
            [
                0xffff_ffff_8100_0010,
                0xffff_ffff_8100_0020,
                0xffff_ffff_8100_0030
            ]
        );
        assert_eq!(code_words_into(&st, code, 1, Vec::new()), [0xffff_ffff_8100_0010]);
    }
}
