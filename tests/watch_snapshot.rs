//! The snapshot program (bpf/watch.bpf.c) in this host's kernel. The host refuses breakpoints on
//! kernel addresses (the lab's guests test those), but allows them on this process's own memory:
//! the program is loaded, attached with PERF_EVENT_IOC_SET_BPF, runs at each trap and fills the
//! ring buffer that kmemd drains, as it does for kernel watchpoints.

mod common;

use kmemd::sys::os::{self, PerfEventAttr};
use kmemd::watch::snapshot::{self, Pairer, Snapshot, Snapshots};
use std::sync::atomic::{AtomicU64, Ordering};

// Words side by side, one watched per test (the tests may run at once).
#[repr(C)]
struct Words(AtomicU64, AtomicU64, AtomicU64, AtomicU64, AtomicU64);
static WORDS: Words = Words(
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
);
static WATCHED: &AtomicU64 = &WORDS.0;
static SECOND: &AtomicU64 = &WORDS.1;
static THIRD: &AtomicU64 = &WORDS.2;
static FOURTH: &AtomicU64 = &WORDS.3;
static FIFTH: &AtomicU64 = &WORDS.4;

#[test]
fn the_snapshot_program_runs_at_each_trap() {
    if !common::require_root("the_snapshot_program_runs_at_each_trap") {
        return;
    }
    let mut snaps = Snapshots::open(1 << 20, None).expect("the snapshot program loads");
    let addr = WATCHED.as_ptr() as u64;
    store_watched(&snaps, WATCHED, 0x1000, 5);
    let mut got = Vec::new();
    snaps.take(100, |s| got.push(s));
    assert_eq!(got.len(), 5, "one snapshot per write: {got:?}");
    let tid = own_tid();
    let arch = kmemd::arch::Arch::host();
    let mut last = 0;
    for s in &got {
        assert_eq!((s.pid, s.tid), (std::process::id(), tid), "{s:?}");
        assert_eq!(s.addr, addr, "{s:?}");
        assert_eq!(s.regs.len(), snapshot::nregs(arch));
        assert!(s.time_ns > last, "in order: {s:?}");
        last = s.time_ns;
        // A user-space trap: its pc and sp are this process's.
        assert!(s.pc(arch) < 0x8000_0000_0000 && s.pc(arch) != 0, "{s:?}");
        assert!(s.sp(arch) < 0x8000_0000_0000 && s.sp(arch) != 0, "{s:?}");
        // bpf_probe_read_kernel refuses user addresses: no value and no stack from a user trap.
        assert_eq!((s.value, s.stack.len()), (None, 0), "{s:?}");
    }
    let pcs: std::collections::BTreeSet<u64> = got.iter().map(|s| s.pc(arch)).collect();
    assert_eq!(pcs.len(), 1, "the same store each time: {pcs:?}");
    assert_eq!(snaps.bad, 0);
    // Without task_struct's stack offset, no second stack.
    assert!(got.iter().all(|s| s.task_stack.is_empty()), "{got:?}");
}

/// Given task_struct's `stack` offset (from this kernel's BTF), a trap whose sp is not on the
/// task's kernel stack (here a user-space one; in the lab, an interrupt's stack) also copies the
/// task's whole kernel stack, where the trapped context's pt_regs are: its pc is in the copy.
#[test]
fn a_trap_off_the_task_stack_copies_the_task_stack() {
    if !common::require_root("a_trap_off_the_task_stack_copies_the_task_stack") {
        return;
    }
    let mut live = kmemd::target::live::LiveTarget::open(None).expect("the live kernel");
    let offset = kmemd::target::Target::task_stack_offset(&mut live).expect("task_struct.stack from BTF");
    let mut snaps = Snapshots::open(1 << 20, Some(offset)).expect("the snapshot program loads");
    store_watched(&snaps, SECOND, 0, 3);
    let mut got = Vec::new();
    snaps.take(100, |s| got.push(s));
    assert_eq!(got.len(), 3, "one snapshot per write");
    let arch = kmemd::arch::Arch::host();
    for s in &got {
        assert_eq!(
            s.task_stack.len(),
            16384,
            "the whole stack: {:#x}",
            s.task_stack_start
        );
        assert!(
            s.task_stack_start >= 0xffff_0000_0000_0000,
            "a kernel address: {s:?}"
        );
        assert_eq!(s.task_stack_start % 4096, 0, "a stack's base");
        let pc = s.pc(arch).to_ne_bytes();
        assert!(
            s.task_stack.chunks_exact(8).any(|w| w == pc),
            "the trapped pc {:#x} is in the task stack's pt_regs",
            s.pc(arch)
        );
    }
    assert_eq!(snaps.bad, 0);
}

/// kmemd maps the ring's data a window at a time, and a record that runs past the data area's
/// end is read from the area's second copy. Through a ring of two pages, 100 rounds of 5 stores
/// wrap it about 20 times (records of ~300 bytes straddle its end): every snapshot arrives,
/// parses, in order, and is the store's.
#[test]
fn records_that_wrap_the_ring_arrive_whole() {
    if !common::require_root("records_that_wrap_the_ring_arrive_whole") {
        return;
    }
    let ring = 2 * os::page_size() as u32;
    let mut snaps = Snapshots::open(ring, None).expect("the snapshot program loads");
    let arch = kmemd::arch::Arch::host();
    let (tid, addr) = (own_tid(), THIRD.as_ptr() as u64);
    let (mut last, mut pcs, mut bytes) = (0, std::collections::BTreeSet::new(), 0usize);
    for round in 0..100 {
        store_watched(&snaps, THIRD, round * 10, 5);
        let mut got = Vec::new();
        snaps.take(100, |s| got.push(s));
        assert_eq!(got.len(), 5, "round {round}: one snapshot per write");
        for s in &got {
            assert_eq!((s.pid, s.tid, s.addr), (std::process::id(), tid, addr), "{s:?}");
            assert_eq!(s.regs.len(), snapshot::nregs(arch), "{s:?}");
            assert!(s.time_ns > last, "in order: {s:?}");
            last = s.time_ns;
            pcs.insert(s.pc(arch));
            bytes += 88 + 8 * s.regs.len();
        }
    }
    assert_eq!(snaps.bad, 0, "every record parsed");
    assert_eq!(pcs.len(), 1, "the same store each time: {pcs:?}");
    assert!(
        bytes > 10 * ring as usize,
        "the ring wrapped: {bytes} bytes through {ring}"
    );
}

/// The kernel maps every page of a ring buffer mapping at once, so a mapped ring is resident in
/// full: 4 MiB of watch mode's default snapshot ring would be most of issue 16's 4 MiB budget.
/// kmemd maps a 64 KiB window of it at a time. Opening the default ring and taking snapshots
/// through it adds well under 1 MiB to this process's RSS (the other tests here add less).
#[test]
fn the_default_snapshot_ring_is_not_resident_in_full() {
    if !common::require_root("the_default_snapshot_ring_is_not_resident_in_full") {
        return;
    }
    let before = common::rsp::rss_kib(std::process::id());
    let mut snaps = Snapshots::open(snapshot::RING_BYTES, None).expect("the snapshot program loads");
    store_watched(&snaps, FOURTH, 0, 50);
    let mut n = 0;
    snaps.take(100, |_| n += 1);
    assert_eq!(n, 50);
    let grew = common::rsp::rss_kib(std::process::id()).saturating_sub(before);
    assert!(
        grew < 1024,
        "RSS grew by {grew} KiB with a {} KiB ring open",
        snapshot::RING_BYTES / 1024
    );
}

/// Snapshots wait in the ring buffer, which costs kmemd no memory, until a hit needs them
/// (issue 16: a reader behind a burst moved them all to its heap at every pass). Three groups of
/// ten stores, 5 ms apart: taking the snapshots up to the end of a group takes all of its own and
/// at most one batch (8) past it, and leaves the rest in the ring.
#[test]
fn snapshots_wait_in_the_ring_until_a_hit_needs_them() {
    if !common::require_root("snapshots_wait_in_the_ring_until_a_hit_needs_them") {
        return;
    }
    let mut snaps = Snapshots::open(snapshot::RING_BYTES, None).expect("the snapshot program loads");
    let arch = kmemd::arch::Arch::host();
    let mut ends = Vec::new();
    for group in 0..3 {
        store_watched(&snaps, FIFTH, group * 100, 10);
        ends.push(os::clocks_ns().0);
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut pairer = Pairer::default();
    let push = |p: &mut Pairer, rec: &[u8]| Snapshot::parse(rec, arch).map(|s| p.push(s)).is_some();
    for (group, &end) in ends.iter().enumerate() {
        snaps.take_until(end, &mut pairer, push);
        let (want, waiting) = (10 * (group + 1), pairer.waiting());
        assert!(
            (want..=want + 8).contains(&waiting),
            "up to group {group}'s end: {waiting} snapshots taken, {want} wanted"
        );
        assert!(pairer.newest > end || waiting == 30, "{} <= {end}", pairer.newest);
    }
    snaps.take_until(u64::MAX, &mut pairer, push);
    assert_eq!(
        (pairer.waiting(), snaps.bad),
        (30, 0),
        "every store's snapshot, once"
    );
}

/// Stores `base + 1 ..= base + n` into `word` with a write breakpoint on it (this thread, any
/// CPU) that runs the snapshot program at each trap.
fn store_watched(snaps: &Snapshots, word: &AtomicU64, base: u64, n: u64) {
    let attr = PerfEventAttr {
        type_: os::PERF_TYPE_BREAKPOINT,
        sample_period: 1,
        flags: os::ATTR_FLAG_DISABLED | os::ATTR_FLAG_EXCLUDE_KERNEL,
        bp_type: 2, // HW_BREAKPOINT_W
        bp_addr: word.as_ptr() as u64,
        bp_len: 8,
        ..Default::default()
    };
    let ev = os::perf_event_open(&attr, 0, -1).expect("a breakpoint on our own memory");
    os::perf_set_bpf(&ev, snaps.prog()).expect("PERF_EVENT_IOC_SET_BPF");
    os::perf_enable(&ev).unwrap();
    for i in 1..=n {
        word.store(base + i, Ordering::SeqCst);
    }
    os::perf_disable(&ev).unwrap();
}

/// This thread's id, from /proc (no libc call needed in the test).
fn own_tid() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .expect("/proc/thread-self")
}
