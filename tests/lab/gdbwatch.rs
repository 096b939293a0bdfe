//! GDB's own `watch`, `awatch`, `rwatch` and `hbreak` on the lab's running kernels (issue 15
//! section 2), through kmemd on a serial line of the guest and Debian's debug vmlinux: GDB stops at
//! the kernel's write with the writer's registers and stack, while the guest keeps running.
//!
//! The writer is a shell loop in the guest writing /proc/sys/kernel/pid_max, which the kernel
//! stores in `int pid_max` (kernel/pid.c) from the sysctl handler proc_dointvec_minmax
//! (kernel/sysctl.c, Linux 6.1); its forks read pid_max in alloc_pid.

use crate::guest::{guest, Arch, Guest, ARCHES};
use crate::live::{lab_gdbs, Seen, Served};
use std::path::Path;

/// Runs inside GDB; prints `KV key value` lines (newlines as `\n`) for the test.
const SCRIPT: &str = r#"
import gdb, time
def kv(k, v):
    print("KV %s %s" % (k, str(v).replace("\n", "\\n")))
def run(k, cmd):
    # GDB prints a stop (the watchpoint, old and new value, the frame) itself, not into the
    # string execute returns: the test takes what comes between these two lines.
    print("KV begin %s" % k)
    try:
        kv(k, gdb.execute(cmd, to_string=True))
    except gdb.error as e:
        kv(k, "ERROR " + str(e))
gdb.execute("set remotetimeout 120")
gdb.execute("target remote %(sock)s")
run("watch", "watch pid_max")
run("cont1", "continue")
run("bt1", "bt")
run("pc1", "p $pc")
run("thread1", "info threads")
# The guest runs on while GDB sits here: the writer's value and jiffies move on.
run("live_a", "p pid_max")
run("jiffies_a", "p jiffies")
time.sleep(1.5)
run("live_b", "p pid_max")
run("jiffies_b", "p jiffies")
run("cont2", "continue")
run("bt2", "bt")
run("delete1", "delete")
run("awatch", "awatch pid_max")
run("cont3", "continue")
run("delete2", "delete")
run("rwatch", "rwatch pid_max")
run("cont4", "continue")
run("delete3", "delete")
run("hbreak", "hbreak %(hbreak)s")
run("cont5", "continue")
run("procname", "p table->procname")
run("write", "p write")
run("bt5", "bt")
run("step", "stepi")
run("delete4", "delete")
gdb.execute("detach")
kv("done", "yes")
"#;

/// Runs the GDB script `template` (SCRIPT or SCRIPT_IRQ, named `name` for its file) against
/// `sock` with the guest's vmlinux; returns what it printed.
fn run_gdb(g: &Guest, gdb: &Path, sock: &Path, template: &str, name: &str) -> Seen {
    let dir = std::env::temp_dir().join(format!("kmemd-lab-gdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join(format!("{name}-{}.py", g.arch.name()));
    // arm64: Debian's kernel is built with patchable function entries, so the ELF symbol
    // proc_dointvec_minmax is two NOPs before the function DWARF describes, and `hbreak NAME`
    // gets a location at each; the NOPs run first, in no function GDB knows, so it would stop
    // there without arguments (as it would with kgdb). `*NAME` is the DWARF function's entry.
    let hbreak = match g.arch {
        Arch::X86_64 => "proc_dointvec_minmax",
        Arch::Aarch64 => "*proc_dointvec_minmax",
    };
    let body = template
        .replace("%(sock)s", &sock.display().to_string())
        .replace("%(hbreak)s", hbreak)
        .replace("%(stub)s", interrupt_entry_stub(g.arch));
    std::fs::write(&script, body).unwrap();
    let out = crate::common::gdb_batch_command(gdb, 300)
        .arg(g.vmlinux())
        .arg("-x")
        .arg(&script)
        .output()
        .expect("run gdb");
    Seen::from_output(&out)
}

/// The frame of the assembly stub where an interrupt from kernel mode entered: past it, `bt`
/// is in the interrupted task's frames.
fn interrupt_entry_stub(arch: Arch) -> &'static str {
    match arch {
        Arch::X86_64 => "asm_",
        Arch::Aarch64 => "el1h_64_irq",
    }
}

/// How many times a backtrace's frames (`name@sp ...`, newest first, as the IRQ script's
/// `frames()` prints them) move from one stack to another: within one stack each older frame's sp
/// is at or above the newer one's and less than a stack's size (16 KiB on both arches) above it.
fn stack_switches(frames: &str) -> usize {
    let sps: Vec<u64> = frames
        .split_whitespace()
        .filter_map(|f| f.rsplit_once('@'))
        .filter_map(|(_, sp)| u64::from_str_radix(sp, 16).ok())
        .filter(|&sp| sp != 0)
        .collect();
    sps.windows(2)
        .filter(|w| w[1] < w[0] || w[1] - w[0] >= 16 << 10)
        .count()
}

/// The helper above on frames the lab printed: an arm64 tick (IRQ stack, then the idle task's
/// stack), a write on the task's stack alone, and a frame whose sp GDB could not read.
#[test]
fn stack_switches_counts_moves_between_stacks() {
    let irq = "tick_do_update_jiffies64@ffff80000800bdf0 gic_handle_irq@ffff80000800bfd0 \
               call_on_irq_stack@ffff80000800c000 do_interrupt_handler@ffff8000080c3c40 \
               el1h_64_irq@ffff8000080c3c90 do_idle@ffff8000080c3e10";
    assert_eq!(stack_switches(irq), 1);
    let task = "tick_do_update_jiffies64@ffff8000080c3b00 irq_enter_rcu@ffff8000080c3c40 \
                el1h_64_irq@ffff8000080c3c90 do_idle@ffff8000080c3e10 None@0";
    assert_eq!(stack_switches(task), 0);
    // x86_64: up from the IRQ stack's top to a task stack 16 KiB or more above it.
    assert_eq!(stack_switches("a@ffffd2b340090ff8 b@ffffd2b3400d0e28"), 1);
}

/// A shell loop in the guest writing distinct increasing values (`base` + 1, + 2, ...) to
/// pid_max every 0.2 s (its forks of `sleep` read pid_max). Scoped: killed and pid_max restored
/// before the caller's slots lock is released, even when an assertion fails, so the snapshot
/// tests that count pid_max writes under the same lock never see this writer's stores.
fn pid_max_writer(g: &Guest, base: u32) -> crate::guest::Scoped<'_> {
    let saved = g.sh("cat /proc/sys/kernel/pid_max");
    g.spawn(&format!(
        "i=0; while :; do i=$((i + 1)); echo $(({base} + i)) > /proc/sys/kernel/pid_max; \
         sleep 0.2; done"
    ))
    .scoped(&format!("echo {} > /proc/sys/kernel/pid_max", saved.trim()))
}

/// In each guest, with the pid_max writer (from `base`) running and the debug registers held:
/// one kmemd session per GDB running the script `template`; `check` gets the arch, a label, what
/// GDB printed (it must have finished) and kmemd's log.
fn each_gdb_session(template: &str, name: &str, base: u32, check: impl Fn(Arch, &str, &Seen, &str)) {
    for arch in ARCHES {
        let g = guest(arch);
        let _slots = g.slots();
        let _writer = pid_max_writer(g, base);
        for (gname, gdb) in lab_gdbs(arch) {
            let what = format!("{} {gname}", arch.name());
            let served = Served::start(g, "-v");
            let seen = run_gdb(g, &gdb, &served.port.host, template, name);
            let log = served.stop(g);
            assert!(
                seen.all("done").contains(&"yes"),
                "{what}: GDB did not finish:\n{}\nkmemd:\n{log}",
                seen.text
            );
            check(arch, &what, &seen, &log);
        }
    }
}

/// Whether a breakpoint stop GDB printed is in the sysctl handler with its arguments and
/// source line.
fn stops_in_the_sysctl_handler(stop: &str) -> bool {
    stop.contains("proc_dointvec_minmax (") && stop.contains("kernel/sysctl.c:")
}

/// The number after ` = ` in GDB's `$N = V`.
fn value(s: &str) -> i64 {
    s.rsplit(" = ")
        .next()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no value in {s:?}"))
}

/// `Old value = A` and `New value = B` of a watchpoint stop.
fn old_new(stop: &str) -> (i64, i64) {
    let get = |k: &str| {
        stop.lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no '{k}' in:\n{stop}"))
    };
    (get("Old value = "), get("New value = "))
}

/// `watch pid_max`, `continue`: GDB prints the hardware watchpoint with the old and new values
/// the guest's writer stored, `bt` names the sysctl writer with source lines, the guest keeps
/// running while GDB is stopped, `continue` catches the next write; `awatch` (both arches) and
/// `rwatch` (arm64; x86 refuses it) stop too; `hbreak proc_dointvec_minmax` (arm64:
/// `*proc_dointvec_minmax`, see run_gdb) stops at the handler,
/// whose arguments GDB prints; `stepi` is refused with kmemd's sentence. Each GDB, both arches.
#[test]
fn gdb_watch_and_hbreak_stop_at_the_running_kernels_accesses() {
    each_gdb_session(SCRIPT, "gdbwatch", 50000, |arch, what, seen, log| {
        let ctx = || format!("{what}:\n{}\nkmemd:\n{log}", seen.text);

        assert!(
            seen.unescaped("watch").contains("Hardware watchpoint 1: pid_max"),
            "{}",
            ctx()
        );
        let c1 = seen.out("cont1");
        assert!(c1.contains("Hardware watchpoint 1: pid_max"), "{}", ctx());
        let (old1, new1) = old_new(&c1);
        // GDB reads the new value when it asks, after the kernel moved on: a later write.
        assert!(
            new1 > 50000 && new1 > old1,
            "{what}: the writer stores increasing values: {old1} -> {new1}\n{}",
            ctx()
        );
        let bt1 = seen.unescaped("bt1");
        assert!(
            bt1.contains("kernel/sysctl.c:") && bt1.contains("proc_sys_call_handler"),
            "{what}: bt names the sysctl writer with source lines:\n{bt1}\n{}",
            ctx()
        );
        assert!(bt1.contains("vfs_write"), "{what}: bt reaches vfs_write:\n{bt1}");
        let threads = seen.unescaped("thread1");
        let current = threads.lines().find(|l| l.starts_with('*')).unwrap_or_default();
        assert!(
            current.contains(" sh ") || current.contains("\"sh\""),
            "{what}: the stop's thread is the writing shell, as info threads lists it:\n{threads}"
        );
        let (a, b) = (value(&seen.unescaped("live_a")), value(&seen.unescaped("live_b")));
        assert!(
            b > a,
            "{what}: the guest's writer went on while GDB was stopped: {a} then {b}"
        );
        let (ja, jb) = (
            value(&seen.unescaped("jiffies_a")),
            value(&seen.unescaped("jiffies_b")),
        );
        assert!(jb > ja, "{what}: jiffies {ja} then {jb}");

        let c2 = seen.out("cont2");
        let (old2, new2) = old_new(&c2);
        assert!(
            new2 > new1 && new2 > old2 && old2 == new1,
            "{what}: continue catches a later write: {old2} -> {new2} after {new1}\n{}",
            ctx()
        );
        assert!(seen.unescaped("bt2").contains("kernel/sysctl.c:"), "{}", ctx());

        assert!(
            seen.out("cont3")
                .contains("Hardware access (read/write) watchpoint 2: pid_max"),
            "{}",
            ctx()
        );
        if arch == Arch::Aarch64 {
            assert!(
                seen.out("cont4").contains("Hardware read watchpoint 3: pid_max"),
                "{}",
                ctx()
            );
        } else {
            assert!(
                log.contains("cannot trap reads alone; use awatch") && seen.out("cont4").contains("ERROR"),
                "{what}: x86 refuses rwatch with the reason\n{}",
                ctx()
            );
        }

        let c5 = seen.out("cont5");
        assert!(
            c5.contains("Breakpoint") && stops_in_the_sysctl_handler(&c5),
            "{what}: hbreak stops at the handler with its source line:\n{c5}\n{}",
            ctx()
        );
        assert!(
            seen.unescaped("procname").contains("\"pid_max\""),
            "{what}: p table->procname: {}\n{}",
            seen.unescaped("procname"),
            ctx()
        );
        assert_eq!(value(&seen.unescaped("write")), 1, "{what}: a write");
        let bt5 = seen.unescaped("bt5");
        assert!(
            bt5.contains("proc_sys_call_handler") && bt5.contains("vfs_write"),
            "{what}: bt at the breakpoint:\n{bt5}"
        );
        assert!(
            seen.text.contains("kmemd cannot step a running kernel"),
            "{what}: stepi is refused with the sentence\n{}",
            ctx()
        );
    });
}

/// The second script: a watchpoint hit in interrupt context, `break` (Z0, served by a debug
/// register), and Ctrl-C ending a wait that no access ends.
const SCRIPT_IRQ: &str = r#"
import gdb, os, signal, threading
def kv(k, v):
    print("KV %s %s" % (k, str(v).replace("\n", "\\n")))
def run(k, cmd):
    print("KV begin %s" % k)
    try:
        kv(k, gdb.execute(cmd, to_string=True))
    except gdb.error as e:
        kv(k, "ERROR " + str(e))
gdb.execute("set remotetimeout 120")
gdb.execute("target remote %(sock)s")
# jiffies_64 is written by the timer interrupt (tick_do_update_jiffies64), on the CPU's IRQ
# stack, usually while an idle task is interrupted.
run("watch", "watch jiffies_64")
run("cont1", "continue")
run("threads", "info threads")
run("bt1", "bt")
# kmemd's unwinder for interrupt entries: bt goes on into the interrupted task.
run("unwinder", 'python exec(gdb.execute("monitor gdb-unwinder", to_string=True))')
bt = gdb.execute("bt", to_string=True)
# A tick that interrupted user space has no interrupted kernel frames to walk into (arm64 enters
# through el0t_64_irq; x86_64 runs the handler on the task's stack): catch the next tick, up to
# 10 in all, until one interrupted the kernel.
def crosses(bt):
    lines = [l for l in bt.splitlines() if l.startswith('#')]
    at = [n for n, l in enumerate(lines) if "%(stub)s" in l]
    return bool(at) and any(" at " in l and ".c:" in l for l in lines[at[0] + 1:])
ticks = 1
while ticks < 10 and not crosses(bt):
    run("cont1r", "continue")
    bt = gdb.execute("bt", to_string=True)
    ticks += 1
kv("ticks", ticks)
kv("bt1u", bt)
def frames():
    out, f = [], gdb.newest_frame()
    while f is not None:
        try:
            sp = int(f.read_register("sp")) & ((1 << 64) - 1)
        except gdb.error:
            sp = 0
        out.append("%s@%x" % (f.name(), sp))
        f = f.older()
    return " ".join(out)
try:
    kv("frames1u", frames())
except gdb.error as e:
    kv("frames1u", "ERROR " + str(e))
run("delete1", "delete")
run("break", "break %(hbreak)s")
run("cont2", "continue")
run("bt2", "bt")
run("delete2", "delete")
# Nothing writes panic_timeout: only Ctrl-C (SIGINT to GDB, which sends 0x03) ends this wait.
run("watch3", "watch panic_timeout")
threading.Timer(3.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
run("cont3", "continue")
run("threads3", "info threads")
run("delete3", "delete")
gdb.execute("detach")
kv("done", "yes")
"#;

/// Issue 15 section 2, the rest of it on the running kernels:
/// - `watch jiffies_64`: the write happens in the timer interrupt, so the snapshot is of the
///   CPU's IRQ stack; GDB stops in the timer code with source lines, and the stop's thread is one
///   that `info threads` lists (often an idle task, swapper/N, whose thread is its CPU's). GDB's
///   own `bt` walks the IRQ stack up to the interrupt's entry (x86_64 sysvec_apic_timer_interrupt,
///   arm64 call_on_irq_stack) and stops there: the switch from the task's stack is assembly
///   without unwind information. With kmemd's unwinder loaded (`monitor gdb-unwinder`), `bt`
///   goes on through the entry stub into the interrupted task's frames, with source lines, read
///   from the task's stack as the hit copied it (at the first of up to 10 ticks that interrupted
///   the kernel: one that interrupted user space has no such frames);
/// - `break FUNC` (Z0): kmemd serves it with a debug register, and GDB stops at the function;
/// - Ctrl-C during a `continue` that no access ends gives GDB a stop, and the session goes on.
#[test]
fn gdb_watch_in_interrupt_context_break_and_ctrl_c() {
    each_gdb_session(SCRIPT_IRQ, "gdbwatch-irq", 60000, |arch, what, seen, log| {
        let ctx = || format!("{what}:\n{}\nkmemd:\n{log}", seen.text);

        let c1 = seen.out("cont1");
        assert!(c1.contains("Hardware watchpoint 1: jiffies_64"), "{}", ctx());
        let bt1 = seen.unescaped("bt1");
        assert!(
            bt1.contains("tick_do_update_jiffies64") && bt1.contains("kernel/time/"),
            "{what}: bt names the timer code that writes jiffies_64, with source lines:\n{bt1}\n{}",
            ctx()
        );
        assert!(
            seen.unescaped("unwinder")
                .contains("interrupt entry unwinder loaded"),
            "{what}: monitor gdb-unwinder loads\n{}",
            ctx()
        );
        // The hit bt1u is of: the last watch hit before the break. Its frames are read from the
        // hit's copies, so it copied every stack they are on: a tick's handler runs on the IRQ
        // stack (two stacks), but jiffies_64 is also written by irq_enter on the interrupted
        // task's own stack (NOHZ idle exit; one stack).
        let hit = log
            .lines()
            .rfind(|l| l.contains(": watch 0x") && l.contains(" hit on CPU "))
            .unwrap_or("");
        let frames = seen.unescaped("frames1u");
        let copies_needed = 1 + stack_switches(&frames);
        let copied = if hit.ends_with(", stack copied") {
            1
        } else if hit.ends_with(", stack and interrupted task's stack copied") {
            2
        } else {
            0
        };
        assert!(
            copied >= copies_needed,
            "{what}: the hit copied the {copies_needed} stack(s) its frames are on, but the log \
             says {hit:?}\nframes: {frames}\n{}",
            ctx()
        );
        let bt = seen.unescaped("bt1u");
        let stub = interrupt_entry_stub(arch);
        let after_stub: Vec<&str> = bt
            .lines()
            .filter(|l| l.starts_with('#'))
            .skip_while(|l| !l.contains(stub))
            .skip(1)
            .collect();
        assert!(
            bt.contains("tick_do_update_jiffies64")
                && after_stub.iter().any(|l| l.contains(" at ") && l.contains(".c:")),
            "{what}: with the unwinder, bt goes from the timer code through the entry stub \
             ({stub}...) into the interrupted task's frames, with source lines (ticks caught: \
             {}):\n{bt}\nframes: {}\n{}",
            seen.get("ticks"),
            seen.unescaped("frames1u"),
            ctx()
        );
        let threads = seen.unescaped("threads");
        let current = threads.lines().find(|l| l.starts_with('*'));
        assert!(
            current.is_some(),
            "{what}: the stop's thread is one info threads lists:\n{threads}\n{}",
            ctx()
        );

        let c2 = seen.out("cont2");
        assert!(
            c2.contains("Breakpoint 2") && stops_in_the_sysctl_handler(&c2),
            "{what}: break (Z0) stops at the handler with its source line:\n{c2}\n{}",
            ctx()
        );
        assert!(
            seen.unescaped("bt2").contains("proc_sys_call_handler"),
            "{what}: bt at the break:\n{}",
            seen.unescaped("bt2")
        );

        let c3 = seen.out("cont3");
        assert!(
            c3.contains("SIGINT") && !c3.contains("ERROR"),
            "{what}: Ctrl-C ends the wait with a stop:\n{c3}\n{}",
            ctx()
        );
        assert!(
            seen.unescaped("threads3").lines().any(|l| l.starts_with('*')),
            "{what}: the session goes on after Ctrl-C\n{}",
            ctx()
        );
    });
}
