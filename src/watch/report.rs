//! What a hit looks like to the user (a text block, or one JSON object per line) and the summary
//! printed when watching stops.

use super::spec::Spec;
use super::syms::{List, Syms};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One hit, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// 1-based hit number across all watchpoints.
    pub seq: u64,
    /// Wall-clock time of the trap, nanoseconds since the epoch (UTC).
    pub wall_ns: u64,
    pub cpu: u32,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub ip: u64,
    /// The address the CPU reported (the watched one, or inside it).
    pub addr: u64,
    /// The watched value right after this access (from its snapshot), or, for a hit without
    /// one, as read when the hit was drained; None when unknown.
    pub value: Option<u64>,
    /// The value right before this access (from its snapshot); None when unknown.
    pub before: Option<u64>,
    /// The value shown for this watchpoint's previous hit (or read before arming).
    pub prev: Option<u64>,
    /// Kernel return addresses perf's unwinder found, innermost first.
    pub stack: Vec<u64>,
    /// The registers at the trap (perf's PERF_SAMPLE_REGS_INTR), named by `reg_names`.
    pub regs: Vec<u64>,
    /// The arch's perf register table ([`crate::arch::Arch::perf_regs`]): "" for bits not sampled.
    pub reg_names: &'static [&'static str],
    /// What the BPF program took at the instant of the trap.
    pub snapshot: Snap,
}

impl Hit {
    /// The names of `regs`, in order: the sampled entries of `reg_names`.
    fn reg_names(&self) -> impl Iterator<Item = &'static str> {
        self.reg_names.iter().copied().filter(|n| !n.is_empty())
    }
}

/// A hit's snapshot (see snapshot.rs), as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Snap {
    /// Taken: the trapped sp, the bytes of stack copied from it (`whole`: up to the end of its
    /// THREAD_SIZE block), and the words of that copy that point into kernel text.
    Taken {
        sp: u64,
        bytes: usize,
        whole: bool,
        code: Vec<u64>,
    },
    /// None for this hit, and why.
    Missing(&'static str),
}

/// Why a hit has no snapshot, when snapshots are on: the kernel runs no BPF program at a trap
/// inside a tracing BPF program (kprobe, tracepoint, perf event: bpf_prog_active), and a full
/// ring buffer drops the snapshot (never the hit).
pub const NO_SNAPSHOT: &str =
    "no snapshot for this hit (the access was made inside a tracing BPF program, or \
                               the snapshot ring buffer was full)";

/// Registers the text block shows: pc, sp and the argument registers (x86_64: rdi, rsi, rdx,
/// rcx, r8, r9; arm64: x0-x7), by their perf names.
const TEXT_REGS: &[&str] = &[
    "rip", "pc", "rsp", "sp", "rdi", "rsi", "rdx", "rcx", "r8", "r9", "x0", "x1", "x2", "x3", "x4", "x5",
    "x6", "x7",
];

/// `HH:MM:SS.nnnnnnnnn` UTC of a wall-clock nanosecond count.
pub fn clock_time(wall_ns: u64) -> String {
    let mut s = Text::with_capacity(18);
    write_clock_time(&mut s, wall_ns);
    s.as_str().to_owned()
}

/// [`clock_time`], appended to `out`.
pub fn write_clock_time(out: &mut Text, wall_ns: u64) {
    let secs = wall_ns / 1_000_000_000;
    let day = secs % 86_400;
    out.put_dec(day / 3600, 2);
    out.put_ascii(b':');
    out.put_dec(day / 60 % 60, 2);
    out.put_ascii(b':');
    out.put_dec(day % 60, 2);
    out.put_ascii(b'.');
    out.put_dec(wall_ns % 1_000_000_000, 9);
}

/// JSON string literals, shared with the kernel queries' `--json` (src/mem/json.rs).
pub use crate::mem::json::{json_str, push_json_str};
pub use crate::mem::text::Text;

/// The text block of one hit:
/// ```text
/// #3 12:00:01.000000123 cpu 1 pid 42/43 (bash) w8 0xffff888001234560 (jiffies_64)
///   ip    bpf_prog_3b185187f1855c4c+0x2c
///   value 0x0000000000000005  prev 0x0000000000000004
///   stack
///     bpf_prog_3b185187f1855c4c+0x2c
///     bpf_test_run+0x10d
/// ```
pub fn format_text(hit: &Hit, spec: &Spec, syms: &mut Syms, out: &mut Text) {
    out.put_ascii(b'#');
    out.put_dec(hit.seq, 1);
    out.put_ascii(b' ');
    write_clock_time(out, hit.wall_ns);
    out.put(" cpu ");
    out.put_dec(hit.cpu.into(), 1);
    out.put(" pid ");
    out.put_dec(hit.pid.into(), 1);
    out.put_ascii(b'/');
    out.put_dec(hit.tid.into(), 1);
    out.put(" (");
    out.put(&hit.comm);
    out.put(") ");
    spec.write_type(out);
    out.put_ascii(b' ');
    out.put_hex(spec.addr, 1);
    if !spec.target.starts_with("0x") {
        let _ = write!(out, " ({})", spec.target);
    }
    out.put("\n  ip    ");
    out.put(syms.format(hit.ip));
    out.put_ascii(b'\n');
    match hit.value {
        Some(v) => {
            out.put("  value ");
            spec.write_value(out, v);
        }
        None => out.put("  value unreadable"),
    }
    if let Some(b) = hit.before {
        out.put("  before ");
        spec.write_value(out, b);
    }
    if let Some(p) = hit.prev {
        out.put("  prev ");
        spec.write_value(out, p);
    }
    if !hit.regs.is_empty() {
        out.put("\n  regs ");
        for want in TEXT_REGS {
            if let Some(i) = hit.reg_names().position(|n| n == *want) {
                if let Some(&v) = hit.regs.get(i) {
                    out.put_ascii(b' ');
                    out.put(want);
                    out.put_ascii(b' ');
                    out.put_hex(v, 1);
                }
            }
        }
    }
    out.put("\n  stack\n");
    out.put(syms.list(List::Lines("    "), &hit.stack));
    match &hit.snapshot {
        Snap::Taken {
            sp,
            bytes,
            whole,
            code,
        } => {
            let _ = writeln!(
                out,
                "  snapshot {bytes} bytes of stack from sp {sp:#x}{}; code addresses in it:",
                if *whole {
                    ""
                } else {
                    " (cut at an unreadable page)"
                }
            );
            syms.put_list(List::Lines("    ? "), code, out);
        }
        Snap::Missing(why) => {
            let _ = writeln!(out, "  {why}");
        }
    }
}

/// One JSON object (one line) with the same fields as the text block.
pub fn format_json(hit: &Hit, spec: &Spec, syms: &mut Syms, out: &mut Text) {
    // Written straight into `out`, no string per field: under a burst the reader formats a hit
    // for every trap, and each allocation is a malloc and a free (musl's are slow).
    out.put("{\"seq\":");
    out.put_dec(hit.seq, 1);
    out.put(",\"time\":\"");
    write_clock_time(out, hit.wall_ns);
    out.put("\",\"time_ns\":");
    out.put_dec(hit.wall_ns, 1);
    out.put(",\"cpu\":");
    out.put_dec(hit.cpu.into(), 1);
    out.put(",\"pid\":");
    out.put_dec(hit.pid.into(), 1);
    out.put(",\"tid\":");
    out.put_dec(hit.tid.into(), 1);
    out.put(",\"comm\":");
    out.put_json_str(&hit.comm);
    out.put(",\"type\":\"");
    spec.write_type(out);
    out.put("\",\"target\":");
    out.put_json_str(&spec.target);
    out.put(",\"watch_addr\":\"");
    out.put_hex(spec.addr, 1);
    out.put("\",\"addr\":\"");
    out.put_hex(hit.addr, 1);
    out.put("\",\"ip\":\"");
    out.put_hex(hit.ip, 1);
    out.put_ascii(b'"');
    out.put(",\"ip_sym\":");
    out.put(syms.format_json(hit.ip));
    for (key, v) in [
        (",\"value\":", hit.value),
        (",\"prev\":", hit.prev),
        (",\"before\":", hit.before),
    ] {
        out.put(key);
        match v {
            Some(v) => {
                out.put_ascii(b'"');
                spec.write_value(out, v);
                out.put_ascii(b'"');
            }
            None => out.put("null"),
        }
    }
    out.put(",\"regs\":{");
    for (i, (name, &v)) in hit.reg_names().zip(&hit.regs).enumerate() {
        out.put(if i > 0 { ",\"" } else { "\"" });
        out.put(name);
        out.put("\":\"");
        out.put_hex(v, 1);
        out.put_ascii(b'"');
    }
    out.put("},\"stack\":[");
    out.put(syms.list(List::Json, &hit.stack));
    match &hit.snapshot {
        Snap::Taken {
            sp,
            bytes,
            whole,
            code,
        } => {
            out.put("],\"snapshot\":{\"sp\":\"");
            out.put_hex(*sp, 1);
            out.put("\",\"bytes\":");
            out.put_dec(*bytes as u64, 1);
            out.put(if *whole {
                ",\"whole\":true,\"code\":["
            } else {
                ",\"whole\":false,\"code\":["
            });
            syms.put_list(List::Json, code, out);
            out.put("]}}\n");
        }
        Snap::Missing(why) => {
            out.put("],\"snapshot\":null,\"no_snapshot\":");
            out.put_json_str(why);
            out.put("}\n");
        }
    }
}

/// Why watching stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    Count,
    Time,
    Signal,
    OutputClosed,
}

/// Counters for the closing summary.
#[derive(Debug, Default)]
pub struct Summary {
    pub hits: u64,
    pub per_cpu: BTreeMap<u32, u64>,
    /// Instruction address -> hits.
    pub per_ip: BTreeMap<u64, u64>,
    /// Records the kernel could not put in a full ring (PERF_RECORD_LOST).
    pub lost: u64,
    /// Times the kernel throttled an event (hits during throttling are not counted anywhere).
    pub throttled: u64,
    /// Hits caused by kmemd's own reads of the watched value (rw watchpoints), not reported.
    pub own: u64,
    /// Hits shown with a snapshot.
    pub snapshots: u64,
    /// Why no hit has a snapshot (snapshots off, or the kernel refused the program).
    pub snapshots_off: Option<String>,
    /// The most snapshots that waited in kmemd's heap for their hits at once, and their bytes
    /// then (the others wait in the kernel's ring buffer).
    pub waiting_peak: (usize, usize),
}

impl Summary {
    pub fn add(&mut self, cpu: u32, ip: u64) {
        self.hits += 1;
        *self.per_cpu.entry(cpu).or_default() += 1;
        *self.per_ip.entry(ip).or_default() += 1;
    }

    /// The summary as text lines.
    pub fn format(&self, syms: &mut Syms, reason: StopReason, seconds: f64) -> String {
        let why = match reason {
            StopReason::Count => "hit count reached",
            StopReason::Time => "time limit reached",
            StopReason::Signal => "interrupted",
            StopReason::OutputClosed => "output closed",
        };
        let mut o = format!(
            "summary: {} hits in {:.3} s ({why}), {} lost, {} throttled\n",
            self.hits, seconds, self.lost, self.throttled
        );
        match &self.snapshots_off {
            Some(why) => {
                let _ = writeln!(o, "  no snapshots: {why}");
            }
            None => {
                let _ = writeln!(
                    o,
                    "  {} hits with a snapshot, {} without (accesses inside tracing BPF programs, or a full snapshot ring buffer)",
                    self.snapshots,
                    self.hits - self.snapshots.min(self.hits)
                );
                let (n, bytes) = self.waiting_peak;
                let _ = writeln!(
                    o,
                    "  at most {n} snapshots ({} KiB) waited in kmemd's memory for their hits; the others in the kernel's ring buffer",
                    bytes.div_ceil(1024)
                );
            }
        }
        if self.own > 0 {
            let _ = writeln!(
                o,
                "  ({} hits from kmemd's own reads of the value not shown)",
                self.own
            );
        }
        o.push_str("  per cpu:");
        for (cpu, n) in &self.per_cpu {
            let _ = write!(o, " cpu{cpu}={n}");
        }
        o.push('\n');
        let mut sites: Vec<(&u64, &u64)> = self.per_ip.iter().collect();
        sites.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        o.push_str("  per call site:\n");
        for (ip, n) in sites.iter().take(20) {
            let _ = writeln!(o, "    {n:>10}  {}", syms.format(**ip));
        }
        if sites.len() > 20 {
            let _ = writeln!(o, "    ... {} more call sites", sites.len() - 20);
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watch::spec::Access;

    fn syms() -> Syms {
        Syms::new(crate::kernel::proc_kallsyms::Kallsyms::parse(
            "ffffffff81000000 T bpf_test_run\nffffffff81001000 T __sys_bpf\nffffffffc0000000 t bpf_prog_abc\t[bpf]\n",
        ))
    }

    fn spec() -> Spec {
        Spec {
            access: Access::W,
            len: 4,
            addr: 0xffff_8880_0000_0010,
            target: "0xffff888000000010".into(),
        }
    }

    fn hit() -> Hit {
        Hit {
            seq: 3,
            wall_ns: 86_400_000_000_000 + 3_723_000_000_005,
            cpu: 1,
            pid: 42,
            tid: 43,
            comm: "a\"b".into(),
            ip: 0xffff_ffff_c000_002c,
            addr: 0xffff_8880_0000_0010,
            value: Some(5),
            before: None,
            prev: Some(4),
            stack: vec![
                0xffff_ffff_c000_002c,
                0xffff_ffff_8100_0010,
                0xffff_ffff_8100_1008,
            ],
            regs: vec![],
            reg_names: &[],
            snapshot: Snap::Missing(NO_SNAPSHOT),
        }
    }

    /// A hit with registers and a snapshot, as the kernel's own writers give them.
    fn snap_hit() -> Hit {
        let mut h = hit();
        h.before = Some(4);
        h.regs = (0..20).map(|i| 0x100 + i).collect();
        h.reg_names = crate::arch::Arch::X86_64.perf_regs();
        h.snapshot = Snap::Taken {
            sp: 0xffff_c900_0000_3e00,
            bytes: 512,
            whole: true,
            code: vec![0xffff_ffff_8100_1008],
        };
        h
    }

    #[test]
    fn a_hit_shows_its_snapshot_or_says_it_has_none() {
        let mut o = Text::default();
        format_text(&hit(), &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        assert!(o.ends_with(&format!("  {NO_SNAPSHOT}\n")), "{o}");
        let mut o = Text::default();
        format_text(&snap_hit(), &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        assert!(
            o.contains("  value 0x00000005  before 0x00000004  prev 0x00000004\n"),
            "{o}"
        );
        // pc, sp and the argument registers under GDB's names, in perf's x86 numbering (ip 8,
        // sp 7, di 5, ...).
        assert!(
            o.contains(
                "\n  regs  rip 0x108 rsp 0x107 rdi 0x105 rsi 0x104 rdx 0x103 rcx 0x102 r8 0x10c r9 0x10d\n"
            ),
            "{o}"
        );
        assert!(
            o.contains("  snapshot 512 bytes of stack from sp 0xffffc90000003e00; code addresses in it:\n    ? __sys_bpf+0x8\n"),
            "{o}"
        );
        assert!(!o.contains("no snapshot"), "{o}");
        let mut o = Text::default();
        format_json(&snap_hit(), &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        assert_eq!(o.matches('\n').count(), 1);
        assert!(
            o.contains("\"value\":\"0x00000005\",\"prev\":\"0x00000004\",\"before\":\"0x00000004\""),
            "{o}"
        );
        assert!(o.contains("\"regs\":{\"rax\":\"0x100\",\"rbx\":\"0x101\""), "{o}");
        assert!(o.contains("\"r15\":\"0x113\"}"), "all registers: {o}");
        assert!(
            o.ends_with(
                "\"snapshot\":{\"sp\":\"0xffffc90000003e00\",\"bytes\":512,\"whole\":true,\"code\":[\"__sys_bpf+0x8\"]}}\n"
            ),
            "{o}"
        );
        let mut o = Text::default();
        format_json(&hit(), &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        assert!(
            o.ends_with(&format!(
                "\"snapshot\":null,\"no_snapshot\":{}}}\n",
                json_str(NO_SNAPSHOT)
            )),
            "{o}"
        );
    }

    /// The whole JSON line of a hit with a snapshot, as kmemd printed it before the fields were
    /// written straight into the output: scripts parse it, so not a byte may change.
    #[test]
    fn json_line_is_exactly_what_it_was() {
        let mut o = Text::default();
        format_json(&snap_hit(), &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        let want = concat!(
            r#"{"seq":3,"time":"01:02:03.000000005","time_ns":90123000000005,"cpu":1,"pid":42,"#,
            r#""tid":43,"comm":"a\"b","type":"w4","target":"0xffff888000000010","#,
            r#""watch_addr":"0xffff888000000010","addr":"0xffff888000000010","#,
            r#""ip":"0xffffffffc000002c","ip_sym":"bpf_prog_abc+0x2c [bpf]","value":"0x00000005","#,
            r#""prev":"0x00000004","before":"0x00000004","regs":{"rax":"0x100","rbx":"0x101","#,
            r#""rcx":"0x102","rdx":"0x103","rsi":"0x104","rdi":"0x105","rbp":"0x106","rsp":"0x107","#,
            r#""rip":"0x108","eflags":"0x109","cs":"0x10a","ss":"0x10b","r8":"0x10c","r9":"0x10d","#,
            r#""r10":"0x10e","r11":"0x10f","r12":"0x110","r13":"0x111","r14":"0x112","r15":"0x113"},"#,
            r#""stack":["bpf_prog_abc+0x2c [bpf]","bpf_test_run+0x10","__sys_bpf+0x8"],"#,
            r#""snapshot":{"sp":"0xffffc90000003e00","bytes":512,"whole":true,"code":["__sys_bpf+0x8"]}}"#,
            "\n"
        );
        assert_eq!(o, want);
    }

    #[test]
    fn time_of_day() {
        assert_eq!(
            clock_time(86_400_000_000_000 + 3_723_000_000_005),
            "01:02:03.000000005"
        );
    }

    #[test]
    fn text_block_has_every_field() {
        let mut o = Text::default();
        format_text(&hit(), &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        assert!(
            o.starts_with("#3 01:02:03.000000005 cpu 1 pid 42/43 (a\"b) w4 0xffff888000000010\n"),
            "{o}"
        );
        assert!(o.contains("  ip    bpf_prog_abc+0x2c [bpf]\n"), "{o}");
        assert!(o.contains("  value 0x00000005  prev 0x00000004\n"), "{o}");
        assert!(o.contains("    bpf_test_run+0x10\n    __sys_bpf+0x8\n"), "{o}");
        let mut h = hit();
        h.value = None;
        h.prev = None;
        let mut o = Text::default();
        format_text(&h, &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        assert!(o.contains("  value unreadable\n"), "{o}");
        assert!(!o.contains("prev"));
    }

    #[test]
    fn json_line_is_one_escaped_object() {
        let mut o = Text::default();
        format_json(&hit(), &spec(), &mut syms(), &mut o);
        let o = o.as_str().to_owned();
        assert_eq!(o.matches('\n').count(), 1);
        assert!(o.contains("\"comm\":\"a\\\"b\""), "{o}");
        assert!(
            o.contains("\"value\":\"0x00000005\",\"prev\":\"0x00000004\""),
            "{o}"
        );
        assert!(
            o.contains("\"stack\":[\"bpf_prog_abc+0x2c [bpf]\",\"bpf_test_run+0x10\",\"__sys_bpf+0x8\"]"),
            "{o}"
        );
        assert!(o.contains("\"cpu\":1,\"pid\":42,\"tid\":43"), "{o}");
        assert_eq!(json_str("a\u{1}\n"), "\"a\\u0001\\n\"");
        assert_eq!(json_str("é\"x\\ñ\t"), "\"é\\\"x\\\\ñ\\t\"");
        assert_eq!(json_str(""), "\"\"");
        assert_eq!(json_str("func+0x1a [bpf]"), "\"func+0x1a [bpf]\"");
    }

    #[test]
    fn summary_counts_cpus_sites_and_losses() {
        let mut s = Summary::default();
        s.add(0, 0xffff_ffff_8100_0010);
        s.add(1, 0xffff_ffff_8100_0010);
        s.add(1, 0xffff_ffff_8100_1000);
        s.lost = 7;
        let t = s.format(&mut syms(), StopReason::Signal, 1.5);
        assert!(
            t.starts_with("summary: 3 hits in 1.500 s (interrupted), 7 lost"),
            "{t}"
        );
        assert!(t.contains("cpu0=1 cpu1=2"), "{t}");
        let first = t.find("bpf_test_run+0x10").unwrap();
        let second = t.find("__sys_bpf+0x0").unwrap();
        assert!(first < second, "busiest call site first: {t}");
    }
}
