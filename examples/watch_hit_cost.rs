//! `make bench` aid (issue 15): what watch mode's reader spends per hit, natively, without a
//! kernel that allows breakpoints. It runs watch mode's own pass (`Watcher::show_pass`: parse the
//! perf records, pair each with its snapshot, scan the snapshot's stack for code, format, write
//! to stdout) over synthetic records shaped like the lab's pid_max burst (x86_64 guest: an
//! 8-frame perf callchain, the registers perf samples, a snapshot of ~1 KiB of stack holding ~16
//! return addresses among data pointers). Symbols are the host's /proc/kallsyms.
//!
//! In the lab the same reader competes with a writer that traps every ~84 us of TCG time: the
//! reader keeps up only while its per-hit cost stays below that. This harness is where that cost
//! is profiled (`perf record` works on it; kernel breakpoints are not needed).
//!
//! Usage (root, stdout to /dev/null or a pipe): watch_hit_cost HITS [json|text] [snapshots|none]
//! Prints ns per hit on stderr.

use kmemd::arch::Arch;
use kmemd::mem::{MemError, VirtAddr, VirtRead};
use kmemd::watch::intmap::IntMap;
use kmemd::watch::perf::{self, Sample};
use kmemd::watch::snapshot;
use kmemd::watch::syms::Syms;
use kmemd::watch::{spec, Options, Watcher};
use std::time::Instant;

/// Answers every read with the same bytes: the value reads of hits without a snapshot.
struct Fixed;

impl VirtRead for Fixed {
    fn read_virt(&mut self, _addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        buf.fill(0x5a);
        Ok(buf.len())
    }
}

const WATCHED: u64 = 0xffff_ffff_8300_1000;
const ID: u64 = 77;
/// Hits per pass: what PASS_BYTES of perf records hold with this record size.
const PER_PASS: usize = 190;

fn push_u64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_ne_bytes());
}

fn push_u32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_ne_bytes());
}

/// One PERF_RECORD_SAMPLE laid out per perf::SAMPLE_TYPE.
fn perf_record(time: u64, cpu: u32, tid: u32, ip: u64, chain: &[u64], nregs: usize) -> Vec<u8> {
    let mut body = Vec::new();
    push_u64(&mut body, ID);
    push_u64(&mut body, ip);
    push_u32(&mut body, tid);
    push_u32(&mut body, tid);
    push_u64(&mut body, time);
    push_u64(&mut body, WATCHED);
    push_u32(&mut body, cpu);
    push_u32(&mut body, 0);
    push_u64(&mut body, chain.len() as u64 + 1);
    push_u64(&mut body, (-128i64) as u64); // PERF_CONTEXT_KERNEL
    for &a in chain {
        push_u64(&mut body, a);
    }
    push_u64(&mut body, 2); // PERF_SAMPLE_REGS_ABI_64
    for i in 0..nregs {
        push_u64(&mut body, 0xffff_c900_0001_3e00 + i as u64 * 8);
    }
    let mut r = Vec::with_capacity(8 + body.len());
    push_u32(&mut r, perf::RECORD_SAMPLE);
    r.extend_from_slice(&1u16.to_ne_bytes()); // PERF_RECORD_MISC_KERNEL
    r.extend_from_slice(&((8 + body.len()) as u16).to_ne_bytes());
    r.extend_from_slice(&body);
    r
}

/// One record of bpf/watch.bpf.c's ring buffer (see snapshot.rs).
fn snapshot_record(arch: Arch, time: u64, cpu: u32, tid: u32, value: u64, stack: &[u8]) -> Vec<u8> {
    let mut r = Vec::new();
    for v in [time, WATCHED, value, 0xffff_8880_0a1b_0000] {
        push_u64(&mut r, v);
    }
    for v in [cpu, tid, tid, 3, snapshot::nregs(arch) as u32, stack.len() as u32] {
        push_u32(&mut r, v);
    }
    let mut comm = [0u8; 16];
    comm[..7].copy_from_slice(b"writer\0");
    r.extend_from_slice(&comm);
    for i in 0..snapshot::nregs(arch) as u64 {
        push_u64(&mut r, 0xffff_c900_0001_3e00 + i * 8);
    }
    r.extend_from_slice(stack);
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let hits: usize = args.get(1).and_then(|v| v.parse().ok()).expect("HITS");
    let json = args.get(2).map(String::as_str) != Some("text");
    let with_snaps = args.get(3).map(String::as_str) != Some("none");
    let arch = Arch::host();
    let mut syms = Syms::load(&[]).unwrap_or_else(|e| panic!("{e}"));
    // Functions spread over the table, as a deep syscall's frames are.
    let funcs: Vec<u64> = {
        let all: Vec<u64> = syms
            .kallsyms()
            .symbols()
            .filter(|s| s.module.is_none() && matches!(s.kind, 't' | 'T'))
            .map(|s| s.addr)
            .collect();
        assert!(all.len() > 1000, "too few text symbols in /proc/kallsyms");
        (0..40).map(|i| all[(i * 7919 + 13) % all.len()] + 0x2c).collect()
    };
    let chain = &funcs[..8];
    let mut stack = Vec::new();
    for i in 0..128u64 {
        let w = match i % 8 {
            0 => funcs.get(8 + (i / 8) as usize).copied().unwrap_or(1), // return addresses
            1 | 5 | 6 => 0xffff_8880_0000_0000 + i * 0x1_2340,          // direct-map pointers
            2 => 0xffff_c900_0001_3e00 + i * 8,                         // frame pointers
            3 => 0xffff_ffff_8300_0000 + i * 0x40,                      // kernel data
            _ => i * 3,                                                 // small integers
        };
        push_u64(&mut stack, w);
    }
    let config = Options {
        json,
        snapshots: with_snaps,
        ..Options::default()
    };
    let target = format!("{WATCHED:#x}");
    let specs = vec![spec::resolve("w8", &target, arch, &|_| None, "").unwrap_or_else(|e| panic!("{e}"))];
    let nregs = arch.perf_regs().iter().filter(|n| !n.is_empty()).count();
    let mut ids = IntMap::default();
    ids.insert(ID, 0usize);
    let mut reader = Fixed;
    let off = (!with_snaps).then(|| "off".to_string());
    let mut w = Watcher::new(
        &config,
        &specs,
        &mut syms,
        &mut reader,
        vec![Some(0)],
        None,
        off,
        arch,
    );
    // One pass of records, built once; each pass moves its times on (the pairer wants them
    // rising) outside the clock, which measures only the reader.
    let mut perf_buf = Vec::new();
    let mut perf_times = Vec::new();
    let mut snaps = Vec::new();
    for k in 0..PER_PASS as u64 {
        let t = 1_000_000 + k * 84_000;
        let cpu = (k % 2) as u32;
        perf_times.push(perf_buf.len() + 32); // header, id, ip, pid/tid: then time
        perf_buf.extend(perf_record(t + 500, cpu, 300 + cpu, funcs[0], chain, nregs));
        if with_snaps {
            snaps.push(snapshot_record(arch, t, cpu, 300 + cpu, t, &stack));
        }
    }
    let step = PER_PASS as u64 * 84_000;
    let mut batch: Vec<(usize, Sample)> = Vec::new();
    let mut spent = std::time::Duration::ZERO;
    let mut left = hits;
    while left > 0 {
        let n = left.min(PER_PASS);
        let pass_perf = &perf_buf[..perf_times.get(n).map_or(perf_buf.len(), |&o| o - 32)];
        let start = Instant::now();
        for rec in &snaps[..n.min(snaps.len())] {
            assert!(
                w.push_snapshot_record(rec),
                "a snapshot record that does not parse"
            );
        }
        if let Some(r) = w.show_pass(pass_perf, &ids, &mut batch) {
            panic!("the pass stopped: {r:?}");
        }
        spent += start.elapsed();
        left -= n;
        for &o in &perf_times {
            let t = u64::from_ne_bytes(perf_buf[o..o + 8].try_into().unwrap()) + step;
            perf_buf[o..o + 8].copy_from_slice(&t.to_ne_bytes());
        }
        for r in &mut snaps {
            let t = u64::from_ne_bytes(r[..8].try_into().unwrap()) + step;
            r[..8].copy_from_slice(&t.to_ne_bytes());
        }
    }
    let ns = spent.as_nanos() as f64 / hits as f64;
    let s = w.summary();
    assert_eq!(s.hits, hits as u64, "every hit shown");
    if with_snaps {
        assert_eq!(s.snapshots, hits as u64, "every hit paired with its snapshot");
    }
    eprintln!(
        "{hits} hits, {}, snapshots {}: {ns:.0} ns per hit",
        if json { "json" } else { "text" },
        if with_snaps { "on" } else { "off" }
    );
}
