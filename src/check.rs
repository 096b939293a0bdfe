//! `kmemd --check`: what this machine allows, one line per item with the fix when something is
//! missing. Meant for a new board: copy kmemd over, run `kmemd --check`, read the lines.
//!
//! Every item is proven, not guessed from config files: reads compare bytes kmemd planted itself
//! (a BPF map value at a kernel address a BPF program reports), watchpoints must trap the
//! kernel's own writes to that value, and the live VMCOREINFO must name the running release.
//! The exit status is 0 only when kernel reads work (BPF loads and the planted bytes read back).

use crate::arch::Arch;
use crate::cli::Config;
use crate::kernel::proc_kallsyms::Kallsyms;
use crate::kernel::symbols::Symbols;
use crate::live::bpf::KernelReader;
use crate::live::plant::Plant;
use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{VirtAddr, VirtRead};
use crate::sys::os;
use crate::target::live::{self as live_target, LiveTarget};
use crate::target::Target;
use crate::watch::perf::{self, Armed, PerfSys, Record, SysPerf};
use crate::watch::spec::{self, Access, Spec};
use std::io::{Read, Write};
use std::sync::Arc;

/// How an item came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works, proven.
    Ok,
    /// This machine does not offer it; kmemd works without it (the line says what is lost).
    Missing,
    /// Should work here but did not.
    Fail,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Missing => "MISSING",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub status: Status,
    /// Short, stable name (tests and scripts grep for it).
    pub name: &'static str,
    pub detail: String,
    /// What to do, when not OK.
    pub fix: Option<String>,
}

impl Item {
    fn ok(name: &'static str, detail: impl Into<String>) -> Item {
        Item {
            status: Status::Ok,
            name,
            detail: detail.into(),
            fix: None,
        }
    }

    fn not(status: Status, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Item {
        Item {
            status,
            name,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `OK      bpf          detail` or `MISSING kcore        detail -- fix: ...`.
    pub fn line(&self) -> String {
        let mut s = format!("{:<7} {:<12} {}", self.status.word(), self.name, self.detail);
        if let Some(f) = &self.fix {
            s.push_str(" -- fix: ");
            s.push_str(f);
        }
        s
    }
}

/// The whole report.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub items: Vec<Item>,
}

impl Report {
    /// True when kernel reads work: BPF loads and the planted bytes read back.
    pub fn reads_work(&self) -> bool {
        ["bpf", "read"]
            .iter()
            .all(|n| self.items.iter().any(|i| i.name == *n && i.status == Status::Ok))
    }

    pub fn summary(&self) -> String {
        let n = |s: Status| self.items.iter().filter(|i| i.status == s).count();
        format!(
            "kmemd --check: {} ok, {} missing, {} failed: {}",
            n(Status::Ok),
            n(Status::Missing),
            n(Status::Fail),
            if self.reads_work() {
                "kernel reads work"
            } else {
                "kernel reads do NOT work"
            }
        )
    }
}

/// Runs the check, printing each line as it is known (a hang shows where). Exit code 0 only
/// when reads work.
pub fn run(config: &Config) -> Result<i32, String> {
    let mut out = std::io::stdout().lock();
    let report = collect(config, &mut |item: &Item| {
        let _ = writeln!(out, "{}", item.line()).and_then(|_| out.flush());
    });
    let _ = writeln!(out, "{}", report.summary());
    Ok(if report.reads_work() { 0 } else { 1 })
}

/// Runs every item; `emit` sees each one when it is done.
pub fn collect(config: &Config, emit: &mut dyn FnMut(&Item)) -> Report {
    let mut report = Report::default();
    let mut push = |item: Item, report: &mut Report| {
        emit(&item);
        report.items.push(item);
    };
    let arch = Arch::host();

    let reader = check_bpf();
    let bpf_ok = reader.is_ok();
    push(
        match &reader {
            Ok(_) => Item::ok("bpf", "BPF program load and BPF_PROG_TEST_RUN allowed"),
            Err(e) => Item::not(Status::Fail, "bpf", "cannot load kmemd's BPF reader", e.clone()),
        },
        &mut report,
    );

    let plant = if bpf_ok {
        Plant::new(PLANT_WORDS * 8).map_err(|e| format!("cannot plant bytes to read back: {e}"))
    } else {
        Err("skipped: BPF does not load".into())
    };
    push(
        match (reader, &plant) {
            (Ok(mut r), Ok(p)) => check_read(&mut r, p),
            (_, Err(e)) => Item::not(
                Status::Fail,
                "read",
                e.clone(),
                "make the `bpf` line OK first (root, or CAP_BPF with CAP_PERFMON)",
            ),
            (Err(_), _) => Item::not(Status::Fail, "read", "skipped", "make the `bpf` line OK first"),
        },
        &mut report,
    );

    let kallsyms = live_target::load_kallsyms();
    push(check_kallsyms(&kallsyms), &mut report);

    // LiveTarget: the KASLR offset and the live VMCOREINFO, as `kmemd -s` will see them.
    let mut live = if bpf_ok && kallsyms.is_ok() {
        LiveTarget::open_with(config.vmlinux.as_deref(), config.force_vmlinux)
    } else {
        Err("needs the `bpf` and `kallsyms` lines OK".into())
    };
    push(
        match &live {
            Ok(t) => {
                let off = t.kaslr_offset().unwrap_or(0);
                let how = match t.link_source() {
                    live_target::LinkText::Default => "against the architecture's default link address",
                    live_target::LinkText::Vmlinux { .. } => "against the vmlinux given with -k",
                };
                if off == 0 {
                    Item::ok(
                        "kaslr",
                        format!("offset 0 ({how}): KASLR is off or nokaslr was given"),
                    )
                } else {
                    Item::ok(
                        "kaslr",
                        format!("offset {off:#x} ({how}); `monitor kaslr` in GDB prints the commands"),
                    )
                }
            }
            Err(e) => Item::not(
                Status::Fail,
                "kaslr",
                format!("unknown: {e}"),
                "make the `bpf` and `kallsyms` lines OK",
            ),
        },
        &mut report,
    );
    push(check_vmcoreinfo(live.as_mut().ok()), &mut report);

    let (slots, perf_err) = match &plant {
        Ok(p) => check_slots(p, arch),
        Err(_) => (
            Item::not(
                Status::Fail,
                "watch-slots",
                "not probed (no planted value)",
                "make the `read` line OK",
            ),
            true,
        ),
    };
    push(slots, &mut report);
    push(
        match (&plant, perf_err) {
            (Ok(p), false) => check_watch_hit(p, arch, kallsyms.as_ref().ok()),
            _ => Item::not(
                Status::Fail,
                "watch-hit",
                "not tried",
                "make the `watch-slots` line OK",
            ),
        },
        &mut report,
    );
    // Names resolve as `kmemd -s` and `-w` resolve them: the live target's resolver, or kallsyms
    // alone when the live target could not be opened.
    let mut symbol = |name: &str| match live.as_mut() {
        Ok(t) => t.lookup_symbol(name).map(|(a, _)| a),
        Err(_) => kallsyms
            .as_ref()
            .ok()
            .and_then(|k| Symbols::new(Arc::clone(k.table()), VmcoreInfo::default()).symbol(name)),
    };
    push(check_exec(arch, &mut symbol, perf_err), &mut report);
    push(check_kcore(), &mut report);
    report
}

/// 8-byte words of the plant: one per slot probed, more than any CPU has (arm64: at most 16).
const PLANT_WORDS: usize = 32;

fn check_bpf() -> Result<KernelReader, String> {
    if os::bpf_syscall_missing() {
        return Err(
            "bpf(2) does not exist here (ENOSYS): the kernel lacks CONFIG_BPF_SYSCALL, or this is \
             qemu-user, which cannot run it; run kmemd on the real kernel"
                .into(),
        );
    }
    KernelReader::open()
}

/// Random bytes: the kernel's, else something that changes per run.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    let got = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut v));
    if got.is_err() {
        let (mono, real) = os::clocks_ns();
        let mut x = mono ^ real.rotate_left(17) ^ u64::from(std::process::id()) | 1;
        for b in v.iter_mut() {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
    }
    v
}

fn check_read(reader: &mut KernelReader, plant: &Plant) -> Item {
    let want = random_bytes(plant.len());
    if let Err(e) = plant.write(&want) {
        return Item::not(
            Status::Fail,
            "read",
            e,
            "report this: the kernel refused a map update",
        );
    }
    let addr = plant.kernel_addr();
    let mut got = vec![0u8; want.len()];
    match reader.read_virt(VirtAddr(addr), &mut got) {
        Ok(n) if n == got.len() && got == want => Item::ok(
            "read",
            format!(
                "{} random bytes planted at {addr:#x} read back identical",
                want.len()
            ),
        ),
        Ok(n) if n < got.len() => Item::not(
            Status::Fail,
            "read",
            format!(
                "only {n} of {} planted bytes at {addr:#x} were readable",
                want.len()
            ),
            "report this with `kmemd -vv --check` output",
        ),
        Ok(_) => {
            let first = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            Item::not(
                Status::Fail,
                "read",
                format!("the bytes read at {addr:#x} differ from the planted ones (first at +{first})"),
                "report this with `kmemd -vv --check` output: the BPF reader returns wrong bytes",
            )
        }
        Err(e) => Item::not(
            Status::Fail,
            "read",
            format!("reading the planted bytes at {addr:#x} failed: {e}"),
            "the kernel refuses bpf_probe_read_kernel: check lockdown (cat /sys/kernel/security/lockdown; \
             `integrity` or `confidentiality` forbid it) and run as root",
        ),
    }
}

/// Variables that every kernel has; kallsyms lists them only with CONFIG_KALLSYMS_ALL.
const DATA_PROBES: &[&str] = &["init_uts_ns", "init_task", "jiffies_64"];

fn check_kallsyms(k: &Result<Kallsyms, String>) -> Item {
    match k {
        Ok(k) => match DATA_PROBES.iter().find_map(|n| k.lookup(n).map(|a| (n, a))) {
            Some((n, a)) => Item::ok(
                "kallsyms",
                format!("{} symbols, with data symbols ({n} at {a:#x})", k.len()),
            ),
            None => Item::ok(
                "kallsyms",
                format!(
                    "{} symbols, text only: no variables such as init_uts_ns (CONFIG_KALLSYMS_ALL \
                     is off); kmemd takes data symbols from the live VMCOREINFO, or give -k vmlinux",
                    k.len()
                ),
            ),
        },
        Err(e) => Item::not(Status::Missing, "kallsyms", "no kernel symbols", e.clone()),
    }
}

fn check_vmcoreinfo(live: Option<&mut LiveTarget>) -> Item {
    let not = |status, detail: String, fix: &str| Item::not(status, "vmcoreinfo", detail, fix);
    let Some(live) = live else {
        return not(
            Status::Fail,
            "not tried".into(),
            "make the `bpf` and `kallsyms` lines OK",
        );
    };
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let stext = live.kallsyms().lookup("_stext");
    let v = match live.live_vmcoreinfo() {
        Ok(v) => v,
        Err(e) => {
            let fix = "without it, data symbols missing from kallsyms need -k vmlinux";
            return not(Status::Missing, e, fix);
        }
    };
    let (syms, nums) = v.symbol_number_counts();
    let osrel = v.info.osrelease().unwrap_or("");
    let report = "report this with `kmemd -vv --check` output";
    if osrel != release {
        let detail = format!("the note read says OSRELEASE={osrel:?}, but this kernel is {release:?}");
        return not(
            Status::Fail,
            detail,
            &format!("{report}: the direct map was found wrong"),
        );
    }
    if let (Some(a), Some(b)) = (stext, v.info.symbol("_stext")) {
        if a != b {
            let detail = format!("its SYMBOL(_stext)={b:#x} disagrees with kallsyms ({a:#x})");
            return not(Status::Fail, detail, report);
        }
    }
    if syms == 0 || nums == 0 {
        let detail = format!(
            "found at physical {:#x} but with {syms} SYMBOL and {nums} NUMBER lines",
            v.phys
        );
        return not(
            Status::Missing,
            detail,
            "data symbols need -k vmlinux on this kernel",
        );
    }
    let uts = v
        .info
        .symbol("init_uts_ns")
        .map(|a| format!(", init_uts_ns at {a:#x}"))
        .unwrap_or_default();
    Item::ok(
        "vmcoreinfo",
        format!(
            "physical {:#x} read through the direct map at {:#x}: {} lines, {syms} SYMBOL and \
             {nums} NUMBER{uts}; `monitor vmcoreinfo` prints it",
            v.phys,
            v.direct_map,
            v.info.entries().len()
        ),
    )
}

fn word_spec(base: u64, i: usize, access: Access) -> Spec {
    Spec {
        access,
        len: 8,
        addr: base + 8 * i as u64,
        target: format!("planted word {i}"),
    }
}

/// Counts free watchpoint slots on one CPU by opening write watchpoints on distinct planted
/// words until the kernel says ENOSPC. Returns the item and whether perf watchpoints failed.
fn check_slots(plant: &Plant, arch: Arch) -> (Item, bool) {
    if os::perf_event_open_missing() {
        return (
            Item::not(
                Status::Missing,
                "watch-slots",
                "perf_event_open(2) does not exist here (ENOSYS)",
                "kmemd -w needs a kernel with CONFIG_PERF_EVENTS and CONFIG_HAVE_HW_BREAKPOINT",
            ),
            true,
        );
    }
    let cpu = crate::live::online_cpus()
        .ok()
        .and_then(|c| c.first().copied())
        .unwrap_or(0);
    probe_slots(&mut SysPerf, plant.kernel_addr(), arch, cpu)
}

/// The slot count itself, through the perf seam: write watchpoints on the words from `base` on
/// `cpu`, held until the kernel says ENOSPC, then all released.
fn probe_slots<S: PerfSys>(sys: &mut S, base: u64, arch: Arch, cpu: u32) -> (Item, bool) {
    let mut held: Vec<S::Event> = Vec::new();
    for i in 0..PLANT_WORDS {
        let spec = word_spec(base, i, Access::W);
        // Kernels before 6.0 reject PERF_FORMAT_LOST: open_event retries without it.
        match perf::open_event(sys, &perf::attr_for(&spec, arch), cpu) {
            Ok(fd) => held.push(fd),
            Err(libc::ENOSPC) => break,
            Err(e) if held.is_empty() => return (slot_error(e, &spec, arch, cpu, sys), true),
            Err(e) => {
                log::debug!("slot probe stopped at {i}: errno {e}");
                break;
            }
        }
    }
    let n = held.len();
    drop(held);
    let cpu_has = match spec::max_slots(arch) {
        Some(m) => format!(" (the CPU has {m} debug registers)"),
        None => String::new(),
    };
    if n == 0 {
        return (
            Item::not(
                Status::Fail,
                "watch-slots",
                format!("hardware watchpoints exist but CPU {cpu} has no free slot{cpu_has}"),
                "another debugger, perf or kmemd -w holds them all: stop it",
            ),
            true,
        );
    }
    (
        Item::ok(
            "watch-slots",
            format!("perf hardware watchpoints available: {n} free slots on CPU {cpu}{cpu_has}"),
        ),
        false,
    )
}

fn slot_error<S: PerfSys>(errno: i32, spec: &Spec, arch: Arch, cpu: u32, sys: &S) -> Item {
    let why = perf::open_error(errno, spec, arch, cpu, &|| sys.perm_facts());
    let status = match errno {
        libc::ENODEV | libc::ENOENT | libc::EOPNOTSUPP => Status::Missing,
        _ => Status::Fail,
    };
    Item::not(
        status,
        "watch-slots",
        "perf hardware watchpoints unavailable",
        why,
    )
}

/// Small rings: a handful of samples is all a check produces (a power of two of pages).
const CHECK_RING_PAGES: usize = 4;

/// Traps the kernel counted on `armed`, from the counters or else from the samples queued.
fn traps<S: PerfSys>(armed: &mut Armed<S>, ids_addr: Option<u64>) -> (u64, Vec<perf::Sample>) {
    let mut buf = Vec::new();
    for r in &mut armed.rings {
        perf::Ring::take(&mut r.ring, &mut buf);
    }
    let mut samples = Vec::new();
    perf::parse_records(&buf, |r| {
        if let Record::Sample(s) = r {
            if ids_addr.is_none_or(|a| s.addr == a) {
                samples.push(s);
            }
        }
    });
    let n = armed
        .kernel_counts()
        .map(|(t, _)| t)
        .unwrap_or(samples.len() as u64);
    (n, samples)
}

/// Why [`trapped`] has no count.
enum Trap {
    /// The watchpoint could not be armed on every CPU.
    Arm(String),
    /// The access that should trap could not be made.
    Trigger(String),
}

/// Arms `spec` on every online CPU, makes the access that should trap (`trigger`), and returns
/// the traps counted (the samples at `only_addr`, or all), releasing the watchpoint after.
fn trapped(
    spec: &Spec,
    arch: Arch,
    trigger: impl FnOnce() -> Result<(), String>,
    only_addr: Option<u64>,
) -> Result<(u64, Vec<perf::Sample>), Trap> {
    let cpus = crate::live::online_cpus().unwrap_or_else(|_| vec![0]);
    let mut armed =
        Armed::arm(std::slice::from_ref(spec), &cpus, CHECK_RING_PAGES, arch).map_err(Trap::Arm)?;
    trigger().map_err(Trap::Trigger)?;
    Ok(traps(&mut armed, only_addr))
}

fn check_watch_hit(plant: &Plant, arch: Arch, kallsyms: Option<&Kallsyms>) -> Item {
    const BUMPS: u32 = 3;
    let spec = word_spec(plant.kernel_addr(), 0, Access::W);
    let (n, samples) = match trapped(&spec, arch, || plant.bump(BUMPS), Some(spec.addr)) {
        Ok(t) => t,
        Err(Trap::Arm(e)) => {
            return Item::not(
                Status::Fail,
                "watch-hit",
                "cannot arm a watchpoint on every CPU",
                e,
            )
        }
        Err(Trap::Trigger(e)) => {
            return Item::not(
                Status::Fail,
                "watch-hit",
                e,
                "report this: the planted value cannot be bumped",
            )
        }
    };
    let at = samples
        .first()
        .map(|s| match kallsyms {
            Some(k) => format!(" at {}", k.format_addr(s.ip)),
            None => format!(" at {:#x}", s.ip),
        })
        .unwrap_or_default();
    let ips: std::collections::BTreeSet<u64> = samples.iter().map(|s| s.ip).collect();
    if n == u64::from(BUMPS) {
        Item::ok(
            "watch-hit",
            format!("a w8 watchpoint on the planted value trapped all {BUMPS} kernel writes{at}"),
        )
    } else if n > u64::from(BUMPS) {
        // Seen on arm64 under QEMU TCG: the step over the trapping store re-traps, so one write
        // is counted several times. Hits are still caught; counts are inflated.
        Item::ok(
            "watch-hit",
            format!(
                "a w8 watchpoint on the planted value trapped the {BUMPS} kernel writes{at}, but the \
                 kernel counted {n} traps at {} instruction(s): each write trapped more than once \
                 on this CPU, so hit counts here are inflated",
                ips.len()
            ),
        )
    } else {
        Item::not(
            Status::Fail,
            "watch-hit",
            format!("{BUMPS} kernel writes to the planted value, {n} traps counted"),
            "the CPU or hypervisor does not deliver data breakpoints (some VMs drop them): watch on \
             real hardware",
        )
    }
}

/// An execute breakpoint on the getpid syscall's kernel function, then one getpid.
fn check_exec(arch: Arch, symbol: &mut dyn FnMut(&str) -> Option<u64>, perf_err: bool) -> Item {
    let name = arch.syscall_symbol("getpid");
    let len = arch.debug_regs().exec_len;
    if perf_err {
        return Item::not(
            Status::Fail,
            "watch-exec",
            "not tried",
            "make the `watch-slots` line OK",
        );
    }
    let Some(addr) = symbol(&name) else {
        return Item::not(
            Status::Missing,
            "watch-exec",
            format!("no {name} in kallsyms to try an execute breakpoint on"),
            "make the `kallsyms` line OK",
        );
    };
    let spec = Spec {
        access: Access::X,
        len,
        addr,
        target: name.to_string(),
    };
    // std::process::id() is a real getpid(2) each time (glibc >= 2.25 and musl do not cache it).
    let getpid = || {
        let _ = std::process::id();
        Ok(())
    };
    let n = match trapped(&spec, arch, getpid, None) {
        Ok((n, _)) => n,
        Err(Trap::Arm(e) | Trap::Trigger(e)) => {
            return Item::not(
                Status::Missing,
                "watch-exec",
                format!("the kernel refuses execute breakpoints on its text ({name})"),
                format!("{e}; data watchpoints (w, rw) still work"),
            )
        }
    };
    if n >= 1 {
        Item::ok(
            "watch-exec",
            format!("an x{len} breakpoint on {name} trapped a getpid() ({n} traps)"),
        )
    } else {
        Item::not(
            Status::Fail,
            "watch-exec",
            format!("an x{len} breakpoint on {name} armed but did not trap getpid()"),
            "the CPU or hypervisor does not deliver instruction breakpoints",
        )
    }
}

fn check_kcore() -> Item {
    match crate::live::kcore::Kcore::open() {
        Ok(_) => Item::ok("kcore", "/proc/kcore present and readable"),
        Err(e) => Item::not(
            Status::Missing,
            "kcore",
            e,
            "only kmemd -w falls back to /proc/kcore when BPF is refused; enable CONFIG_PROC_KCORE \
             if you need that",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_summary() {
        let ok = Item::ok("bpf", "fine");
        assert_eq!(ok.line(), "OK      bpf          fine");
        let m = Item::not(Status::Missing, "kcore", "absent", "enable it");
        assert_eq!(m.line(), "MISSING kcore        absent -- fix: enable it");
        let mut r = Report {
            items: vec![ok.clone(), m],
        };
        assert!(!r.reads_work(), "no read line yet");
        r.items.push(Item::ok("read", "same"));
        assert!(r.reads_work());
        assert_eq!(
            r.summary(),
            "kmemd --check: 2 ok, 1 missing, 0 failed: kernel reads work"
        );
        r.items[2].status = Status::Fail;
        assert!(!r.reads_work());
    }

    use crate::watch::perf::fake::Fake;
    use crate::watch::perf::PermFacts;

    const BASE: u64 = 0xffff_8880_0100_0000;

    fn probe(f: &Fake, arch: Arch) -> (Item, bool) {
        let mut sys = f.clone();
        let r = probe_slots(&mut sys, BASE, arch, 2);
        assert_eq!(f.state().open_now, 0, "the probe releases every slot it took");
        r
    }

    #[test]
    fn the_slot_probe_counts_until_enospc() {
        let f = Fake::default();
        f.state().slots = Some(4);
        let (item, perf_err) = probe(&f, Arch::X86_64);
        assert!(!perf_err);
        assert_eq!(
            item.line(),
            "OK      watch-slots  perf hardware watchpoints available: 4 free slots on CPU 2 (the CPU \
             has 4 debug registers)"
        );
        let st = f.state();
        assert_eq!(st.opened.len(), 4);
        assert!(st.opened.iter().all(|(a, cpu)| *cpu == 2 && a.bp_len == 8));
        let addrs: Vec<u64> = st.opened.iter().map(|(a, _)| a.bp_addr).collect();
        assert_eq!(addrs, [BASE, BASE + 8, BASE + 16, BASE + 24], "one word each");
    }

    #[test]
    fn the_slot_probe_on_a_kernel_without_format_lost_counts_every_slot() {
        let f = Fake::default();
        f.state().slots = Some(6);
        f.state().no_format_lost = true;
        let (item, perf_err) = probe(&f, Arch::Aarch64);
        assert!(!perf_err);
        assert!(item.detail.contains(": 6 free slots on CPU 2"), "{}", item.line());
    }

    #[test]
    fn the_slot_probe_stops_at_a_later_refusal() {
        let f = Fake::default();
        f.state().refuse_at = vec![(2, libc::EBUSY)];
        let (item, perf_err) = probe(&f, Arch::X86_64);
        assert!(!perf_err);
        assert!(item.detail.contains(": 2 free slots"), "{}", item.line());
    }

    #[test]
    fn the_slot_probe_explains_a_first_refusal() {
        let cases: &[(i32, Status, &str)] = &[
            (libc::EPERM, Status::Fail, "lacks CAP_PERFMON"),
            (libc::EACCES, Status::Fail, "lacks CAP_PERFMON"),
            (libc::ENOENT, Status::Missing, "no hardware breakpoint support"),
            (libc::ENODEV, Status::Missing, "no hardware breakpoint support"),
            (
                libc::EOPNOTSUPP,
                Status::Missing,
                "no hardware breakpoint support",
            ),
            (libc::EINVAL, Status::Fail, "must be aligned"),
        ];
        for &(errno, status, want) in cases {
            let f = Fake::default();
            // EINVAL is refused twice: with PERF_FORMAT_LOST and without.
            f.state().refuse_at = vec![(0, errno), (1, errno)];
            let (item, perf_err) = probe(&f, Arch::X86_64);
            assert!(perf_err, "errno {errno}");
            assert_eq!(item.status, status, "errno {errno}: {}", item.line());
            assert_eq!(item.detail, "perf hardware watchpoints unavailable");
            let fix = item.fix.unwrap_or_default();
            assert!(fix.contains(want), "errno {errno}: {fix}");
            assert!(fix.contains("(planted word 0)"), "{fix}");
        }
        let f = Fake::default();
        f.state().refuse_at = vec![(0, libc::EPERM)];
        f.state().facts = PermFacts {
            privileged: true,
            user_breakpoint_ok: Some(true),
            ..PermFacts::default()
        };
        let (item, _) = probe(&f, Arch::X86_64);
        assert!(
            item.fix
                .unwrap_or_default()
                .contains("forbids hardware breakpoints on kernel addresses"),
            "with the capability, the kernel is blamed"
        );
        assert_eq!(f.state().facts_asked, 1);
    }

    #[test]
    fn the_slot_probe_says_when_no_slot_is_free() {
        let f = Fake::default();
        f.state().slots = Some(0);
        let (item, perf_err) = probe(&f, Arch::X86_64);
        assert!(perf_err);
        assert_eq!(item.status, Status::Fail);
        assert!(
            item.detail.contains("CPU 2 has no free slot (the CPU has 4"),
            "{}",
            item.line()
        );
    }

    /// A PERF_RECORD_SAMPLE as SAMPLE_TYPE lays it out, without a stack.
    fn sample(ip: u64, addr: u64) -> Vec<u8> {
        let words = [101, ip, 0x2a_0000_002a, 1, addr, 0, 0];
        let mut v = Vec::new();
        v.extend_from_slice(&9u32.to_ne_bytes());
        v.extend_from_slice(&0u16.to_ne_bytes());
        v.extend_from_slice(&(8 + 8 * words.len() as u16).to_ne_bytes());
        for w in words {
            v.extend_from_slice(&w.to_ne_bytes());
        }
        v
    }

    #[test]
    fn traps_come_from_the_counters_else_from_the_samples() {
        let spec = word_spec(BASE, 0, Access::W);
        let f = Fake::default();
        let mut ring = sample(0xffff_ffff_8100_0010, BASE);
        ring.extend(sample(0xffff_ffff_8100_0020, BASE + 8));
        ring.extend(sample(0xffff_ffff_8100_0030, BASE));
        f.state().ring_bytes = ring;
        let arm = || {
            Armed::arm_with(
                f.clone(),
                std::slice::from_ref(&spec),
                &[0],
                CHECK_RING_PAGES,
                Arch::X86_64,
            )
            .unwrap()
        };
        let (n, samples) = traps(&mut arm(), Some(BASE));
        assert_eq!(n, 2, "no counters: the samples at the address");
        let ips: Vec<u64> = samples.iter().map(|s| s.ip).collect();
        assert_eq!(ips, [0xffff_ffff_8100_0010, 0xffff_ffff_8100_0030]);
        let (n, samples) = traps(&mut arm(), None);
        assert_eq!((n, samples.len()), (3, 3));
        f.state().counts = Some((7, 0));
        let (n, _) = traps(&mut arm(), Some(BASE));
        assert_eq!(n, 7, "the kernel's count wins");
    }

    #[test]
    fn random_bytes_differ_between_calls() {
        assert_ne!(random_bytes(32), random_bytes(32));
    }
}
