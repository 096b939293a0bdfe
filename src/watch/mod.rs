//! Hardware watchpoints on kernel addresses through perf_event_open, every hit reported.
//!
//! Flow: specs are parsed and checked (spec.rs), the watched words are read once to prove they
//! are readable, one breakpoint event per (watchpoint, CPU) is armed with one mmap ring per CPU
//! (perf.rs), with bpf/watch.bpf.c attached to every event (snapshot.rs: the value, registers and
//! stack at the instant of each trap), then a poll loop drains the rings, pairs each perf sample
//! with its snapshot, and prints each hit symbolized from a kallsyms table loaded once
//! (report.rs). The perf ring stays the record of every hit: a hit without a snapshot (a write
//! made inside a BPF program, which the kernel runs no program for; a full snapshot ring) is
//! printed with the value read when it was drained, and says it has no snapshot.

pub mod gdb;
pub mod intmap;
pub mod perf;
pub mod report;
pub mod snapshot;
pub mod spare;
pub mod spec;
pub mod syms;

use crate::arch::Arch;
use crate::kernel::symbols::{Source, Symbols};
use crate::kernel::vmlinux::Vmlinux;
use crate::live::bpf::KernelReader;
use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{read_exact, VirtRead};
use crate::sys::os;
use intmap::IntMap;
use perf::{Armed, Record, Sample};
use report::{Hit, Snap, StopReason, Summary, Text};
use snapshot::{Pairer, Snapshot, Snapshots};
use spare::Spare;
use spec::Spec;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use syms::Syms;

/// Data pages per CPU ring: 4 MiB. A record is ~340 bytes on x86_64 (~450 on arm64) since every
/// sample carries the registers (PERF_SAMPLE_REGS_INTR), so the ring holds ~12,000 hits, ~120 ms
/// of the fastest trap rate measured here (~100k hits/s): room for kmemd being descheduled on a
/// busy machine, and for a reader that pairs and formats snapshots more slowly than a burst
/// traps (the lab measured ~1,300 hits/s shown against ~7,400 writes/s under TCG). The ring
/// costs no RSS on 6.18 (perf rings are PFN mappings, measured: Rss 0 kB); older kernels fault
/// its pages in and count them as they fill.
pub const RING_PAGES: usize = 1024;
/// Most bytes of records taken from one ring per pass (~480 hits with a short stack). What a
/// pass takes is copied, parsed and formatted (a JSON hit is ~4x its record) on the heap, so
/// this bounds the heap, while unread hits wait in the ring (see RING_PAGES: no RSS there).
const PASS_BYTES: usize = 64 << 10;
/// Formatted output is written whenever it reaches this size, so a large pass never holds all
/// its text at once.
const OUT_FLUSH: usize = 64 << 10;
/// Longest sleep in poll: bounds the delay of a lone hit and of a time limit.
const POLL_MS: i32 = 20;
/// Pause after a pass that took fewer than BATCH_SMALL bytes of records (~24 hits), so that a
/// burst's hits are taken a batch per pass (the lab's x86_64 guest, 100k writes: kmemd's CPU
/// went from 7.6 s, 4.6 s of it system, to 4.1 s, 2.1 s system).
const BATCH_PAUSE: Duration = Duration::from_millis(1);
const BATCH_SMALL: usize = 8 << 10;
/// Most bytes of snapshots held waiting for their perf samples (Snapshot::heap_bytes: ~500 a
/// snapshot as watch mode keeps it, code words instead of the stack, so ~16,000 of them); the
/// rest wait in the BPF ring buffer. Under a burst the reader lags the writer by up to the perf
/// ring's ~12,000 hits, and every one of those needs its snapshot here or in the ring: with 4 MiB
/// here (~8,000) and the ring's ~2,600, a clean-clone CI run on a loaded host lost 1,131
/// snapshots of the arm64 guest's 101,037 hits while its perf ring lost none. Heap is used only
/// while the reader lags by more than RING_SPILL of the ring; otherwise it holds the few
/// snapshots each hit takes up to its time (the lab's burst: ~20).
const PAIR_BYTES: usize = 8 << 20;
/// How full the snapshot ring buffer may get before its records move to the heap (see
/// PAIR_BYTES) rather than wait there for their samples: 3/4 leaves 1 MiB of the default 4 MiB,
/// ~600 records, ~6 ms of the fastest trap rate, for the program while a pass runs.
const RING_SPILL: (usize, usize) = (3, 4);
/// Records reach the ring buffer in the order the program reserved them, across CPUs, and a
/// snapshot's time is taken just before: two CPUs' records may be out of time order by that
/// much. A hit takes the snapshots up to its time plus this, so that its own is among them.
const RING_ORDER_SLACK_NS: u64 = 1_000_000;
/// Code addresses shown per snapshot stack.
const SNAP_CODE_MAX: usize = 32;

/// The live reader's chunk in watch mode: it reads one watched word (at most 8 bytes) per hit,
/// and the whole result buffer stays resident while mapped (the 4 MiB default would be half the
/// RSS budget of watch mode). One page is the smallest mapping anyway.
const VALUE_CHUNK: usize = 4096;

/// The live BPF reader, or /proc/kcore where BPF cannot be loaded.
fn open_reader() -> Result<Box<dyn VirtRead>, String> {
    match KernelReader::open_with_chunk(VALUE_CHUNK) {
        Ok(r) => Ok(Box::new(r)),
        Err(bpf) => match crate::live::kcore::Kcore::open() {
            Ok(k) => {
                log::warn!("BPF reader unavailable ({bpf}); reading watched values through /proc/kcore");
                Ok(Box::new(k))
            }
            Err(kc) => Err(format!(
                "cannot read kernel memory to show watched values: {bpf}; and {kc}"
            )),
        },
    }
}

fn read_value(reader: &mut dyn VirtRead, spec: &Spec) -> Result<u64, String> {
    let mut b = [0u8; 8];
    let n = spec.len as usize;
    let buf = b.get_mut(..n).ok_or("internal: watch length above 8")?;
    read_exact(reader, spec.addr, buf).map_err(|e| e.to_string())?;
    Ok(u64::from_le_bytes(b))
}

/// Task names by thread id, read from /proc once per thread.
struct Comms {
    cache: intmap::IntMap<u32, String>,
}

impl Comms {
    fn get(&mut self, pid: u32, tid: u32) -> String {
        if tid == 0 {
            return "swapper".into();
        }
        if self.cache.len() > 4096 {
            self.cache.clear();
        }
        self.cache
            .entry(tid)
            .or_insert_with(|| {
                std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_else(|_| "?".into())
            })
            .clone()
    }
}

/// What watch mode is asked to do (from the command line: `-w`, `-k`, `-n`, `-t`, `--json`).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-w TYPE TARGET` pairs, as typed.
    pub pairs: Vec<(String, String)>,
    /// `-k`: a vmlinux for symbols kallsyms lacks.
    pub vmlinux: Option<PathBuf>,
    /// `--force-vmlinux`: take a vmlinux that is not the running kernel's.
    pub force_vmlinux: bool,
    /// Stop after this many hits (`-n`) / this long (`-t`).
    pub count: Option<u64>,
    pub seconds: Option<Duration>,
    /// One JSON object per hit.
    pub json: bool,
    /// `--snapshots`: bpf/watch.bpf.c at every trap. Off by default: with a BPF program attached,
    /// Linux 6.1's bpf_overflow_handler drops the whole perf sample of a trap taken while
    /// bpf_prog_active is held (a bpf_map_update_elem from user space, tracing programs): the lab
    /// measured 10 traps counted, 0 samples. Without it each hit shows the value read when it was
    /// drained, and the registers perf records.
    pub snapshots: bool,
}

/// `kmemd -w TYPE TARGET ...`: arms the watchpoints and prints hits until `-n`, `-t`, SIGINT or
/// SIGTERM. Returns the process exit code.
pub fn run(config: &Options) -> Result<i32, String> {
    // Before anything is armed: a -t the clock cannot count is an error, not a panic later.
    if let Some(t) = config.seconds {
        deadline_after(Instant::now(), t)?;
    }
    let pairs = &config.pairs;
    let arch = Arch::host();
    // Names the targets use, kept beside the text symbols (and page_offset_base, which finds
    // the live VMCOREINFO on x86_64 when kallsyms lists it).
    let names: Vec<String> = pairs
        .iter()
        .filter_map(|(_, t)| match spec::parse_target(t) {
            Ok(spec::Target::Symbol { name, .. }) => Some(name),
            _ => None,
        })
        .collect();
    let mut wanted = vec!["_text", "page_offset_base"];
    wanted.extend(names.iter().map(String::as_str));
    let mut syms = Syms::load(&wanted)?;
    // Names resolve through the one resolver (kernel/symbols.rs): -k vmlinux moved by the KASLR
    // slide, kallsyms, then the live VMCOREINFO. Of the vmlinux only the targets' names are kept.
    let mut resolver = Symbols::new(Arc::clone(syms.kallsyms().table()), VmcoreInfo::default());
    if let Some(path) = &config.vmlinux {
        let vm = Vmlinux::load(path)?;
        crate::target::live::check_running_vmlinux(&vm, path, config.force_vmlinux)?;
        let slide = resolver
            .add_vmlinux(&vm, &|_, n| names.iter().any(|w| w == n))
            .ok_or_else(|| {
                format!(
                    "{}: cannot compute the KASLR slide (no _text in it or in {})",
                    path.display(),
                    crate::live::kallsyms::PATH
                )
            })?;
        log::info!("KASLR slide {slide:#x} from {}", path.display());
    }
    // Last: the live VMCOREINFO's SYMBOL() lines (data symbols such as init_uts_ns that
    // kallsyms lacks without CONFIG_KALLSYMS_ALL), read only when a name is found nowhere else.
    if names.iter().any(|n| resolver.symbol(n).is_none()) {
        let table = syms.kallsyms();
        let live = KernelReader::open()
            .and_then(|mut reader| crate::live::vmcoreinfo::load(&mut reader, arch, &|n| table.lookup(n)));
        match live {
            Ok(v) => resolver.set_vmcoreinfo(v.info),
            Err(e) => log::info!("no live VMCOREINFO for symbol lookup: {e}"),
        }
    }
    let lookup = |name: &str| {
        let (a, from) = resolver.lookup(name)?;
        if from == Source::Vmcoreinfo {
            log::info!("{name} = {a:#x} from the live VMCOREINFO");
        }
        Some(a)
    };
    let hint = if config.vmlinux.is_some() {
        format!(
            " in {} nor in the vmlinux given with -k",
            crate::live::kallsyms::PATH
        )
    } else {
        format!(
            " in {} nor in the live VMCOREINFO (kernels without CONFIG_KALLSYMS_ALL list no \
             variables there: add -k vmlinux, or give the address in hex)",
            crate::live::kallsyms::PATH
        )
    };
    let specs = pairs
        .iter()
        .map(|(t, target)| spec::resolve(t, target, arch, &lookup, &hint))
        .collect::<Result<Vec<Spec>, String>>()?;
    if let Some(slots) = spec::max_slots(arch) {
        if specs.len() > slots {
            return Err(format!(
                "{} watchpoints asked, but this CPU has {slots} debug registers: give at most {slots} -w",
                specs.len()
            ));
        }
    }
    let mut reader = open_reader()?;
    let mut prev: Vec<Option<u64>> = Vec::with_capacity(specs.len());
    for s in &specs {
        let v = read_value(reader.as_mut(), s).map_err(|e| {
            format!(
                "-w {} {}: the watched address cannot be read ({e}); there is nothing there to watch",
                s.type_name(),
                s.target
            )
        })?;
        prev.push(Some(v));
    }
    let cpus = crate::live::online_cpus()?;
    let stop_fd = os::install_stop_signals()?;
    let mut armed = Armed::arm(&specs, &cpus, RING_PAGES, arch)?;
    let (snaps, snapshots_off) = if !config.snapshots {
        (None, Some("off (--snapshots turns them on)".to_string()))
    } else {
        match Snapshots::open(snapshot::RING_BYTES, None).and_then(|s| armed.attach_bpf(s.prog()).map(|_| s))
        {
            Ok(s) => (Some(s), None),
            Err(e) => {
                log::warn!(
                    "no snapshots: {e}. Watching goes on; each hit shows the value read when it \
                     is drained, and perf's registers and stack"
                );
                (None, Some(e))
            }
        }
    };
    for s in &specs {
        log::info!(
            "watching {} {:#x} ({}) on {} CPUs: {} events, {} KiB ring per CPU; Ctrl-C stops",
            s.type_name(),
            s.addr,
            s.target,
            cpus.len(),
            armed.event_count(),
            RING_PAGES * os::page_size() / 1024
        );
    }
    let mut w = Watcher::new(
        config,
        &specs,
        &mut syms,
        reader.as_mut(),
        prev,
        snaps,
        snapshots_off,
        arch,
    );
    let started = Instant::now();
    let (reason, armed) = w.watch(armed, stop_fd.as_raw_fd(), started);
    let elapsed = started.elapsed().as_secs_f64();
    // Release the debug registers before printing; what is still queued is counted, not shown.
    // Disabled first, so the kernel's counts and what the rings hold describe the same traps;
    // the queued records are counted a pass at a time, so a full ring never becomes one copy.
    let mut armed = armed;
    armed.disable();
    let counted = armed.kernel_counts();
    let mut rest = Vec::with_capacity(PASS_BYTES);
    for r in &mut armed.rings {
        loop {
            rest.clear();
            let (_, more) = r.ring.take_max(&mut rest, PASS_BYTES);
            perf::parse_records(&rest, |r| match r {
                Record::Sample(s) if s.pid != w.own_pid => w.unshown += 1,
                Record::Lost { lost, .. } => w.summary.lost += lost,
                Record::Throttle => w.summary.throttled += 1,
                _ => {}
            });
            if !more {
                break;
            }
        }
    }
    drop(armed);
    if let Some((_, lost)) = counted {
        // The kernel's own count is exact even when its last PERF_RECORD_LOST never made it
        // into a full ring.
        w.summary.lost = w.summary.lost.max(lost);
    }
    let mut text = w.summary.format(w.syms, reason, elapsed);
    if let Some((traps, lost)) = counted {
        text.push_str(&format!(
            "  kernel counted {traps} traps: {} shown, {} lost (ring full), {} queued at stop, {} from kmemd's own reads\n",
            w.summary.hits, lost, w.unshown, w.summary.own
        ));
    }
    if w.unshown > 0 {
        text.push_str(&format!(
            "  {} more hits were queued when watching stopped and are not shown\n",
            w.unshown
        ));
    }
    if config.json || reason == StopReason::OutputClosed {
        eprint!("{text}");
    } else {
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(text.as_bytes()).and_then(|_| so.flush());
    }
    Ok(0)
}

/// The moment `limit` after `start`. `Instant + Duration` panics past the clock's range (i64
/// seconds on Linux); -t is capped far below it (cli::MAX_WATCH_SECONDS), but the library takes
/// any `Duration`.
pub fn deadline_after(start: Instant, limit: Duration) -> Result<Instant, String> {
    start.checked_add(limit).ok_or_else(|| {
        format!(
            "-t {} seconds is beyond what this system's clock counts; give a shorter -t, or none \
             (Ctrl-C stops the watch)",
            limit.as_secs()
        )
    })
}

/// How long one poll may wait: POLL_MS, less when the deadline is nearer; None once it has
/// passed. The milliseconds left are bounded before they become an i32: a -t over 24.8 days
/// (2^31 ms) would otherwise wrap, and a negative wait clamped to 1 ms spins the CPU.
fn poll_timeout(deadline: Option<Instant>, now: Instant) -> Option<i32> {
    match deadline {
        Some(d) if now >= d => None,
        Some(d) => Some((d - now).as_millis().clamp(1, POLL_MS as u128) as i32),
        None => Some(POLL_MS),
    }
}

/// Parses one snapshot record as watch mode keeps it (of its stack, only the words that point
/// into kernel text, in buffers from `spare`) and hands it to the pairer; false when it does not
/// parse.
fn pair_record(pairer: &mut Pairer, spare: &mut Spare, syms: &mut Syms, arch: Arch, rec: &[u8]) -> bool {
    let scan =
        |stack: &[u8], code| snapshot::code_words_into(stack, |a| syms.is_code(a), SNAP_CODE_MAX, code);
    Snapshot::parse_scanning(rec, arch, spare, scan)
        .map(|s| pairer.push(s))
        .is_some()
}

/// Watch mode's reader of hits: pairs each perf sample with its snapshot, formats it and writes
/// it to stdout, and counts what the summary reports.
pub struct Watcher<'a> {
    config: &'a Options,
    specs: &'a [Spec],
    syms: &'a mut Syms,
    reader: &'a mut dyn VirtRead,
    prev: Vec<Option<u64>>,
    comms: Comms,
    summary: Summary,
    snaps: Option<Snapshots>,
    pairer: Pairer,
    /// Buffers of hits already shown, for the next ones.
    spare: Spare,
    /// arm64: the instruction word at each trapping pc (the store that makes the new value).
    insns: intmap::IntMap<u64, Option<u32>>,
    arch: Arch,
    unshown: u64,
    own_pid: u32,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC, to date the samples.
    clock_off: u64,
    out: Text,
}

impl<'a> Watcher<'a> {
    /// A reader of hits for `specs` (whose values before arming are `prev`). `snaps` is the
    /// loaded snapshot program, drained at each pass; with none, snapshots are taken from what
    /// was pushed into its pairer, unless `snapshots_off` says why there are none.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &'a Options,
        specs: &'a [Spec],
        syms: &'a mut Syms,
        reader: &'a mut dyn VirtRead,
        prev: Vec<Option<u64>>,
        snaps: Option<Snapshots>,
        snapshots_off: Option<String>,
        arch: Arch,
    ) -> Watcher<'a> {
        Watcher {
            config,
            specs,
            syms,
            reader,
            prev,
            comms: Comms {
                cache: intmap::IntMap::default(),
            },
            summary: Summary {
                snapshots_off,
                ..Summary::default()
            },
            snaps,
            pairer: Pairer::default(),
            spare: Spare::default(),
            insns: intmap::IntMap::default(),
            arch,
            unshown: 0,
            own_pid: std::process::id(),
            clock_off: {
                let (mono, real) = os::clocks_ns();
                real.wrapping_sub(mono)
            },
            out: Text::with_capacity(OUT_FLUSH + 4096),
        }
    }

    /// Hands one record of the snapshot ring buffer to the pairer, as a pass's drain does;
    /// false when it does not parse.
    pub fn push_snapshot_record(&mut self, rec: &[u8]) -> bool {
        pair_record(&mut self.pairer, &mut self.spare, self.syms, self.arch, rec)
    }

    /// Moves snapshots from the ring buffer to the pairer up to `time` ([`Snapshots::take_until`]).
    fn take_snapshots_until(&mut self, time: u64) {
        let Some(snaps) = &mut self.snaps else { return };
        let (spare, syms, arch) = (&mut self.spare, &mut *self.syms, self.arch);
        snaps.take_until(time, &mut self.pairer, |p, rec| {
            pair_record(p, spare, syms, arch, rec)
        });
        self.note_waiting();
    }

    /// Keeps the summary's peak of snapshots waiting in the heap.
    fn note_waiting(&mut self) {
        let peak = &mut self.summary.waiting_peak;
        if self.pairer.bytes > peak.1 {
            *peak = (self.pairer.waiting(), self.pairer.bytes);
        }
    }

    /// What has been counted so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// The poll loop. Returns why it stopped, and the events (still armed) for the caller to
    /// release after counting what is queued.
    fn watch(&mut self, mut armed: Armed, stop_fd: i32, started: Instant) -> (StopReason, Armed) {
        // run() checked the deadline against the clock before arming; None here would need a
        // clock that ran out of range since, and means no deadline.
        let deadline = self.config.seconds.and_then(|t| deadline_after(started, t).ok());
        let mut fds: Vec<i32> = armed.rings.iter().map(|r| r.fd).collect();
        fds.push(stop_fd);
        let mut buf = Vec::with_capacity(PASS_BYTES * armed.rings.len());
        let mut batch: Vec<(usize, Sample)> = Vec::new();
        // Set when a pass left records in a ring: poll then only looks for a stop, without
        // waiting (perf's poll reports a ring readable once per wake-up, not while it holds data).
        let mut more = false;
        loop {
            if os::stop_requested() {
                return (StopReason::Signal, armed);
            }
            let Some(timeout) = poll_timeout(deadline, Instant::now()) else {
                return (StopReason::Time, armed);
            };
            let timeout = if more { 0 } else { timeout };
            if let Err(e) = os::poll_readable(&fds, timeout) {
                log::error!("{e}");
                return (StopReason::Signal, armed);
            }
            os::drain_fd(stop_fd);
            if os::stop_requested() {
                return (StopReason::Signal, armed);
            }
            buf.clear();
            more = false;
            for r in &mut armed.rings {
                more |= r.ring.take_max(&mut buf, PASS_BYTES).1;
            }
            if let Some(r) = self.show_pass(&buf, &armed.ids, &mut batch) {
                return (r, armed);
            }
            if !more && !buf.is_empty() && buf.len() < BATCH_SMALL {
                // A few hits came and the reader is ahead: more are likely (a burst). x86 wakes
                // the reader at every sample, so without this pause each pass would take one hit
                // and pay a poll, a wake-up and a write of its own; a lone hit is still shown at
                // once, before the pause. A reader that is behind (larger passes) never pauses.
                std::thread::sleep(BATCH_PAUSE);
            }
        }
    }

    /// Shows the hits of one pass: `buf` holds the perf records taken from every ring, `ids`
    /// maps event ids to watchpoints. Snapshots are drained from the ring buffer into the pairer
    /// first (when the program is loaded). Returns why watching must stop, if it must.
    pub fn show_pass(
        &mut self,
        buf: &[u8],
        ids: &IntMap<u64, usize>,
        batch: &mut Vec<(usize, Sample)>,
    ) -> Option<StopReason> {
        batch.clear();
        let (own_pid, summary) = (self.own_pid, &mut self.summary);
        perf::parse_records_reusing(buf, &mut self.spare, |r| match r {
            Record::Sample(s) => {
                if s.pid == own_pid {
                    // Our own read of the value tripping an rw watchpoint.
                    summary.own += 1;
                } else if let Some(&i) = ids.get(&s.id) {
                    batch.push((i, s));
                }
            }
            Record::Lost { lost, .. } => summary.lost += lost,
            Record::Throttle => summary.throttled += 1,
            Record::Other(_) => {}
        });
        if batch.is_empty() {
            return None;
        }
        // Rings are per CPU: order the pass by time so output reads in sequence.
        batch.sort_by_key(|(_, s)| s.time);
        // The snapshots of every sample taken are in the ring buffer by now (the program
        // runs before perf writes its sample), and they wait there, which costs kmemd no heap:
        // each hit below takes those up to its own time. Only a ring buffer filling up (a reader
        // behind a burst) moves them to the pairer's heap early, up to PAIR_BYTES, to make room.
        if let Some(snaps) = &mut self.snaps {
            let (pairer, spare, syms, arch) = (&mut self.pairer, &mut self.spare, &mut *self.syms, self.arch);
            while snaps.filled_over(RING_SPILL.0, RING_SPILL.1)
                && pairer.bytes < PAIR_BYTES
                && snaps.take_records(64, |rec| pair_record(pairer, spare, syms, arch, rec)) > 0
            {}
            self.note_waiting();
        }
        // Hits without a snapshot show the value as of the drain: read once per pass, when
        // the first such hit of a watchpoint comes.
        let mut now_val: Vec<Option<Option<u64>>> = vec![None; self.specs.len()];
        let mut stop = None;
        self.out.clear();
        let total = batch.len();
        for (n, (i, s)) in batch.drain(..).enumerate() {
            let mut snap = if self.summary.snapshots_off.is_none() {
                self.take_snapshots_until(s.time.saturating_add(RING_ORDER_SLACK_NS));
                self.pairer.take(s.cpu, s.tid, s.time)
            } else {
                None
            };
            if self.config.count.is_some_and(|c| self.summary.hits >= c) {
                self.unshown += (total - n) as u64;
                stop = Some(StopReason::Count);
                break;
            }
            if n % 64 == 63 && os::stop_requested() {
                self.unshown += (total - n) as u64;
                stop = Some(StopReason::Signal);
                break;
            }
            let (Some(spec), Some(prev)) = (self.specs.get(i), self.prev.get_mut(i)) else {
                continue;
            };
            self.summary.add(s.cpu, s.ip);
            let (value, before, snapshot) = match &mut snap {
                Some(sn) => {
                    self.summary.snapshots += 1;
                    let insn = match self.arch {
                        Arch::Aarch64 => {
                            let pc = sn.pc(self.arch);
                            let reader = &mut *self.reader;
                            *self.insns.entry(pc).or_insert_with(|| {
                                let mut b = [0u8; 4];
                                read_exact(reader, pc, &mut b).ok().map(|_| u32::from_le_bytes(b))
                            })
                        }
                        Arch::X86_64 => None,
                    };
                    let (before, after) =
                        snapshot::values(self.arch, &*sn, spec.addr, spec.len as usize, *prev, insn);
                    let taken = Snap::Taken {
                        sp: sn.sp(self.arch),
                        bytes: sn.stack_bytes,
                        whole: sn.stack_whole,
                        code: std::mem::take(&mut sn.code),
                    };
                    (after, before, taken)
                }
                None => {
                    let v = match now_val.get_mut(i) {
                        Some(slot) => *slot.get_or_insert_with(|| read_value(&mut *self.reader, spec).ok()),
                        None => None,
                    };
                    let why = match &self.summary.snapshots_off {
                        Some(_) => {
                            "no snapshot (snapshots are off; the value was read when the hit was drained)"
                        }
                        None => report::NO_SNAPSHOT,
                    };
                    (v, None, Snap::Missing(why))
                }
            };
            let hit = Hit {
                seq: self.summary.hits,
                wall_ns: s.time.wrapping_add(self.clock_off),
                cpu: s.cpu,
                pid: s.pid,
                tid: s.tid,
                comm: match &mut snap {
                    Some(sn) if !sn.comm.is_empty() => std::mem::take(&mut sn.comm),
                    _ => self.comms.get(s.pid, s.tid),
                },
                ip: s.ip,
                addr: s.addr,
                value,
                before,
                prev: *prev,
                stack: s.stack,
                regs: s.regs,
                reg_names: self.arch.perf_regs(),
                snapshot,
            };
            if value.is_some() {
                *prev = value;
            }
            if self.config.json {
                report::format_json(&hit, spec, self.syms, &mut self.out);
            } else {
                report::format_text(&hit, spec, self.syms, &mut self.out);
            }
            // The hit's buffers go back for the next hits.
            self.spare.keep_words(hit.stack);
            self.spare.keep_words(hit.regs);
            self.spare.keep_name(hit.comm);
            if let Snap::Taken { code, .. } = hit.snapshot {
                self.spare.keep_words(code);
            }
            if let Some(sn) = snap {
                self.spare.keep_words(sn.regs);
            }
            if self.out.len() >= OUT_FLUSH && !self.flush() {
                return Some(StopReason::OutputClosed);
            }
        }
        batch.clear();
        if !self.flush() {
            return Some(StopReason::OutputClosed);
        }
        if self.config.count.is_some_and(|c| self.summary.hits >= c) {
            stop = stop.or(Some(StopReason::Count));
        }
        stop
    }

    /// Writes out what the pass formatted so far; false when stdout is closed.
    fn flush(&mut self) -> bool {
        let mut so = std::io::stdout().lock();
        let ok = so.write_all(self.out.as_bytes()).and_then(|_| so.flush()).is_ok();
        self.out.clear();
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_the_clock_cannot_count_is_an_error() {
        let now = Instant::now();
        let e = deadline_after(now, Duration::MAX).unwrap_err();
        assert!(e.starts_with("-t 18446744073709551615 seconds is beyond"), "{e}");
        let year = Duration::from_secs(365 * 24 * 3600); // cli::MAX_WATCH_SECONDS, the longest -t
        assert_eq!(deadline_after(now, year), Ok(now + year));
    }

    #[test]
    fn an_overlong_time_limit_is_refused_before_anything_is_armed() {
        // Neither root nor a kernel that allows breakpoints is needed: the check comes first.
        let e = run(&Options {
            pairs: vec![("w8".into(), "0xffffffff81000000".into())],
            seconds: Some(Duration::MAX),
            ..Options::default()
        })
        .unwrap_err();
        assert!(e.contains("beyond what this system's clock counts"), "{e}");
    }

    #[test]
    fn poll_waits_are_bounded_for_far_deadlines() {
        let now = Instant::now();
        assert_eq!(poll_timeout(None, now), Some(POLL_MS));
        assert_eq!(poll_timeout(Some(now), now), None);
        assert_eq!(poll_timeout(Some(now + Duration::from_micros(300)), now), Some(1));
        assert_eq!(poll_timeout(Some(now + Duration::from_millis(7)), now), Some(7));
        // 2^31 ms and more (24.8 days): the wait must stay POLL_MS, not wrap to a negative
        // number that becomes a 1 ms busy loop.
        for ms in [
            1u64 << 31,
            (1 << 31) + 1000,
            (1 << 32) - 5,
            365 * 24 * 3600 * 1000,
        ] {
            assert_eq!(
                poll_timeout(Some(now + Duration::from_millis(ms)), now),
                Some(POLL_MS),
                "{ms} ms ahead"
            );
        }
    }
}
