//! The instant of a hit, as bpf/watch.bpf.c records it: the registers at the trap, the watched
//! bytes, the task, and the kernel stack from the trapped sp. Parsed from the BPF ring buffer and
//! paired with perf's own sample of the same trap (perf's ring stays the record of every hit:
//! traps inside BPF programs, and snapshots the ring buffer had no room for, have none).

use crate::arch::Arch;
use std::collections::VecDeque;

/// One snapshot (see `struct snap` in bpf/watch.bpf.c; offsets below follow it).
#[derive(Debug, Clone, PartialEq, Eq)]
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
    /// The kernel stack from `sp` upwards.
    pub stack: Vec<u8>,
    /// The stack reached the end of its THREAD_SIZE block (else it stopped at an unreadable page).
    pub stack_whole: bool,
}

const HDR: usize = 72;

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
        let regs = (0..n)
            .map(|i| u64_at(HDR + 8 * i))
            .collect::<Option<Vec<u64>>>()?;
        let stack = rec.get(regs_end..regs_end.checked_add(stack_len)?)?.to_vec();
        let comm = rec.get(56..72)?;
        let comm = &comm[..comm.iter().position(|&c| c == 0).unwrap_or(comm.len())];
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
            comm: String::from_utf8_lossy(comm).into_owned(),
            regs,
            stack,
            stack_whole: flags & 2 != 0,
        })
    }

    pub fn sp(&self, arch: Arch) -> u64 {
        self.regs.get(sp_pc(arch).0).copied().unwrap_or(0)
    }

    pub fn pc(&self, arch: Arch) -> u64 {
        self.regs.get(sp_pc(arch).1).copied().unwrap_or(0)
    }
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
}

/// At most this many snapshots wait per CPU: more means their samples were lost.
const MAX_WAITING: usize = 64;

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
            q.pop_front();
            self.unmatched += 1;
        }
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
        for i in 0..nregs(arch) as u64 {
            r.extend_from_slice(&(0x100 + i).to_ne_bytes());
        }
        r.extend_from_slice(stack);
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
            let (sp, pc) = sp_pc(arch);
            assert_eq!((s.sp(arch), s.pc(arch)), (0x100 + sp as u64, 0x100 + pc as u64));
            // Every truncation is refused, never read past.
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
        assert_eq!((p.unmatched, p.waiting()), (2, 0));
    }
}
