//! Backtraces of sleeping tasks in a real dump, through real GDB, with Debian's matching debug
//! vmlinux (`linux-image-<release>-dbg`, fetched once into a cache outside the repository by
//! tests/fixtures/dbg-vmlinux.sh / `make dbg-vmlinux`), for each architecture's fixture: x86_64
//! (4-level) read by gdb 13 and GDB 18, aarch64 read by gdb-multiarch and GDB 18. The fixture
//! guest's two `sleep 1000` processes are in `clock_nanosleep`, so each one's kernel stack runs
//! through `schedule`. With `-k VMLINUX`, the panicked dump's crashing CPU comes from the
//! vmlinux's `panic_cpu` symbol. Skipped outside CI when the fixtures or a vmlinux are missing;
//! fails in CI.

mod common;

use common::*;
use kmemd::target::dump::DumpTarget;
use kmemd::target::Target;
use std::path::{Path, PathBuf};

struct Fx {
    variant: &'static str,
    arch: String,
    dump: PathBuf,
    panic_dump: PathBuf,
    panic_cpu: u32,
    release: String,
    kaslr: u64,
    sleep_pids: Vec<i32>,
}

/// One fixture per architecture (their debug vmlinux packages differ: linux-image-*-amd64-dbg,
/// linux-image-*-arm64-dbg).
const VARIANTS: [&str; 2] = ["x86_64-4l", "aarch64"];

/// Each architecture's fixture and its debug vmlinux. Outside CI a missing fixture or vmlinux
/// skips that architecture; in CI it fails.
fn setups() -> Vec<(Fx, PathBuf)> {
    VARIANTS.iter().filter_map(|v| setup(v)).collect()
}

fn setup(variant: &'static str) -> Option<(Fx, PathBuf)> {
    let dir = fixtures_root().join("current").join(variant);
    let Ok(text) = std::fs::read_to_string(dir.join("manifest.txt")) else {
        assert!(
            !in_ci(),
            "no dump fixtures in {}: `make fixtures` makes them",
            dir.display()
        );
        eprintln!(
            "SKIP: no dump fixtures in {} (run `make fixtures`)",
            dir.display()
        );
        return None;
    };
    let mut f = Fx {
        variant,
        arch: String::new(),
        dump: dir.join("vmcore.elf"),
        panic_dump: PathBuf::new(),
        panic_cpu: u32::MAX,
        release: String::new(),
        kaslr: 0,
        sleep_pids: vec![],
    };
    for line in text.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["arch", a] => f.arch = a.to_string(),
            ["release", r] => f.release = r.to_string(),
            ["kaslr_offset", k] => f.kaslr = hex(k),
            ["sleep_pid", p] => f.sleep_pids.push(p.parse().expect("pid")),
            ["panic_dump", _format, p] => f.panic_dump = dir.join(p),
            ["panic_cpu", c] => f.panic_cpu = c.parse().expect("panic_cpu"),
            _ => {}
        }
    }
    assert!(
        !f.arch.is_empty() && !f.release.is_empty() && f.sleep_pids.len() == 2,
        "{variant}/manifest.txt: {text}"
    );
    assert!(
        f.panic_cpu != u32::MAX && f.panic_dump.exists(),
        "{variant}/manifest.txt has no panic_dump/panic_cpu (or the dump is gone): regenerate the fixtures"
    );
    // The guest kernel was booted with KASLR on (make-fixtures.sh reboots until it is non-zero),
    // so a backtrace that resolves proves the offset was applied.
    assert_ne!(f.kaslr, 0, "{variant}: the fixture has no KASLR slide");
    let cache = std::env::var("KMEMD_DBG_CACHE").unwrap_or_else(|_| "/var/cache/kmemd-dbg".into());
    let vmlinux = Path::new(&cache)
        .join(&f.release)
        .join(format!("vmlinux-{}", f.release));
    if !vmlinux.exists() {
        assert!(
            !in_ci(),
            "no debug vmlinux at {}: `make dbg-vmlinux` downloads it",
            vmlinux.display()
        );
        eprintln!(
            "SKIP {variant}: no debug vmlinux at {} (run `make dbg-vmlinux`)",
            vmlinux.display()
        );
        return None;
    }
    Some((f, vmlinux))
}

/// Runs GDB: `cmds_before` (e.g. `file VMLINUX`) before `target remote`, then `cmds`.
fn gdb_with(gdb: &Path, before: &[String], sock: &Path, cmds: &[String]) -> String {
    let mut c = gdb_batch_command(gdb, 300);
    for b in before {
        c.args(["-ex", b]);
    }
    c.args(["-ex", &format!("target remote {}", sock.display())]);
    for cmd in cmds {
        c.args(["-ex", cmd]);
    }
    text(&c.output().expect("run gdb"))
}

/// The function names in a backtrace's frames (`#N  0x... in NAME (` or `#N  NAME (`).
fn frames(bt: &str) -> Vec<String> {
    bt.lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.split_once(' ')?.1.trim_start();
            let rest = match rest.split_once(" in ") {
                Some((addr, r)) if addr.starts_with("0x") => r,
                _ => rest,
            };
            Some(rest.split([' ', '(']).next()?.to_string())
        })
        .collect()
}

/// A sleeping `sleep`'s stack: it blocked in clock_nanosleep → hrtimer_nanosleep → do_nanosleep
/// → schedule → __schedule (Linux 6.1 kernel/time/hrtimer.c, kernel/sched/core.c).
fn assert_sleeping_in_schedule(ctx: &str, bt: &str) {
    let f = frames(bt);
    for want in ["__schedule", "schedule", "do_nanosleep", "hrtimer_nanosleep"] {
        assert!(
            f.iter().any(|n| n == want),
            "{ctx}: no {want} frame in {f:?}:\n{bt}"
        );
    }
}

/// `thread apply all bt` with `gdb VMLINUX` (GDB relocates .text/.data/.bss through qOffsets):
/// both sleep tasks' stacks go through schedule. `file` also sets GDB's architecture (aarch64 for
/// gdb-multiarch) from the vmlinux.
#[test]
fn thread_apply_all_bt_shows_sleep_in_schedule() {
    for (f, vmlinux) in setups() {
        let (mut k, sock) = serve_dump(&f.dump, &[], &format!("dbgbt-all-{}", f.variant));
        for (name, gdb) in gdbs_for(&f.arch) {
            let name = format!("{} {name}", f.variant);
            let t = gdb_with(
                &gdb,
                &[format!("file {}", vmlinux.display())],
                &sock,
                &["thread apply all bt".to_string()],
            );
            for &p in &f.sleep_pids {
                // Each thread's block starts "Thread N (Thread X "sleep" (pid P sleep (S, ...))):".
                let head = format!("(pid {p} sleep ");
                let start = t
                    .find(&format!("\"sleep\" {head}"))
                    .unwrap_or_else(|| panic!("{name}: no thread for sleep pid {p}:\n{t}"));
                let block = &t[start..];
                let end = block.find("\nThread ").unwrap_or(block.len());
                assert_sleeping_in_schedule(&format!("{name} pid {p}"), &block[..end]);
            }
            assert!(k.alive(), "{name}: server died: {}", k.log_text());
        }
    }
}

/// GDB's number for the thread of `pid` and the CPU it last ran on, from `thread find pid P `
/// ("Thread 52 has extra info 'pid 90 sleep (S, last on CPU 0)'").
fn find_thread(ctx: &str, t: &str, pid: i32) -> (String, u32) {
    let line = t
        .lines()
        .find(|l| l.starts_with("Thread ") && l.contains(&format!("pid {pid} ")))
        .unwrap_or_else(|| panic!("{ctx}: thread find: {t}"));
    let n = line.split_whitespace().nth(1).expect("thread number").to_string();
    let cpu = line
        .split_once("last on CPU ")
        .and_then(|(_, r)| r.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .unwrap_or_else(|| panic!("{ctx}: no last CPU in {line}"));
    (n, cpu)
}

/// The full-correctness way `monitor kaslr` prints (no `file`; `add-symbol-file -o OFF`, plus the
/// per-CPU section's address where the architecture needs it), selecting the task by
/// `thread find`: the task's backtrace goes through schedule, and a per-CPU variable read through
/// those symbols is right (`runqueues` of the CPU the task last ran on says it is that CPU's).
#[test]
fn add_symbol_file_with_kaslr_offset_then_bt_of_one_task() {
    for (f, vmlinux) in setups() {
        let (mut k, sock) = serve_dump(&f.dump, &[], &format!("dbgbt-one-{}", f.variant));
        let p = f.sleep_pids[0];
        for (name, gdb) in gdbs_for(&f.arch) {
            let name = format!("{} {name}", f.variant);
            let t = gdb_with(
                &gdb,
                &[],
                &sock,
                &["monitor kaslr".to_string(), format!("thread find pid {p} ")],
            );
            // The line kmemd tells the user to type is the one this test uses.
            let advice = format!("add-symbol-file VMLINUX -o {:#x}", f.kaslr);
            let line = t
                .lines()
                .map(str::trim)
                .find(|l| l.starts_with(&advice))
                .unwrap_or_else(|| panic!("{name}: monitor kaslr has no `{advice}...`: {t}"));
            if f.arch == "x86_64" {
                // x86_64 links per-CPU variables at offsets from 0 (the .data..percpu section's
                // address is 0 in vmlinux, arch/x86/kernel/vmlinux.lds.S), and KASLR must not
                // move them.
                assert_eq!(line, format!("{advice} -s .data..percpu 0"), "{name}: {t}");
            }
            let load = line.replace("VMLINUX", &vmlinux.display().to_string());
            let (n, cpu) = find_thread(&name, &t, p);
            // A per-CPU variable's address on CPU c is &var + __per_cpu_offset[c] on both
            // architectures (include/asm-generic/percpu.h); rq->cpu is the rq's CPU
            // (kernel/sched/sched.h, Linux 6.1).
            let rq = format!("p ((struct rq *)((unsigned long)&runqueues + __per_cpu_offset[{cpu}]))->cpu");
            let t = gdb_with(
                &gdb,
                &[],
                &sock,
                &[load, format!("thread {n}"), "bt".to_string(), rq.clone()],
            );
            assert_sleeping_in_schedule(&format!("{name} pid {p}"), &t);
            // Only `print` writes a `$N = ` line; when it cannot read, GDB says why instead.
            let got = t.lines().find(|l| l.starts_with('$'));
            assert!(
                got.is_some_and(|l| l.ends_with(&format!(" = {cpu}"))),
                "{name}: with `{line}`, `{rq}` gives {got:?} (not {cpu}): per-CPU symbols are misplaced:\n{t}"
            );
            assert!(k.alive(), "{name}: server died: {}", k.log_text());
        }
    }
}

/// `-k VMLINUX` with the dump: symbols come from the vmlinux first. `__kstrtab__printk` is in the
/// vmlinux's symbol table (nm: `r`, on amd64 and arm64) but never in kallsyms (scripts/kallsyms.c
/// drops `__kstrtab_`), so only `-k` finds it, at its link address plus the dump's KASLR offset;
/// backtraces still work.
#[test]
fn vmlinux_option_takes_precedence_for_symbols_and_bt_works() {
    for (f, vmlinux) in setups() {
        let sym = "__kstrtab__printk";
        let want = nm_address(&vmlinux, sym) + f.kaslr;

        let mut plain = DumpTarget::open(&f.dump).expect("open dump");
        let without = plain
            .monitor(&format!("sym {sym}"))
            .expect("sym is a monitor command");
        let without = format!("{without:?}");
        assert!(
            !without.contains(&format!("{want:#x}")),
            "{}: kallsyms alone should not know {sym}: {without}",
            f.variant
        );

        let (mut k, sock) = serve_dump(
            &f.dump,
            &["-k", vmlinux.to_str().unwrap()],
            &format!("dbgbt-k-{}", f.variant),
        );
        let p = f.sleep_pids[1];
        for (name, gdb) in gdbs_for(&f.arch) {
            let name = format!("{} {name}", f.variant);
            let t = gdb_with(
                &gdb,
                &[format!("file {}", vmlinux.display())],
                &sock,
                &[format!("monitor sym {sym}"), format!("thread find pid {p} ")],
            );
            assert!(
                t.contains(&format!("{want:#x}")),
                "{name}: -k: monitor sym {sym} should be {want:#x}: {t}"
            );
            let (n, _) = find_thread(&name, &t, p);
            let t = gdb_with(
                &gdb,
                &[format!("file {}", vmlinux.display())],
                &sock,
                &[format!("thread {n}"), "bt".to_string()],
            );
            assert_sleeping_in_schedule(&format!("{name} -k pid {p}"), &t);
            assert!(k.alive(), "{name}: server died: {}", k.log_text());
        }
    }
}

/// The extra info of an `info threads` row: the parenthesised text after the thread's name
/// (`* 2    Thread 2 "CPU 1" (CPU 1 pid 2 (panic))   frame...` gives `CPU 1 pid 2 (panic)`),
/// so a function name in the frame column is not mistaken for it.
fn extra_info(row: &str) -> Option<&str> {
    let after_name = row.split('"').nth(2)?;
    let open = after_name.find('(')?;
    let mut depth = 0;
    for (i, c) in after_name[open..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&after_name[open + 1..open + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// With `-k VMLINUX` on a guest that really panicked (sysrq 'c' on CPU 1), kmemd reads the
/// kernel's `panic_cpu` (kernel/panic.c) at the vmlinux symbol's address: GDB's current thread at
/// connect is that CPU, its extra info says panic, and no other thread's does. The oracle is the
/// console's oops line (`panic_cpu` in manifest.txt). Debian arm64's kallsyms has no data
/// symbols, so there only `-k` can find `panic_cpu`.
///
/// The panicking thread's stack leads to `panic`. On x86_64 GDB's `bt` shows it. On aarch64 the
/// saved pc is the EL1 IRQ entry (`vectors+0x280`: the CPU took an interrupt in panic()'s mdelay
/// loop), and GDB 13 and 18 both unwind it wrongly: vectors has no CFI, and GDB's prologue
/// analysis counts kernel_ventry's `sub sp, sp, #PT_REGS_SIZE` as already done, so the caller's
/// sp is 0x150 too high and the backtrace ends in garbage after `__delay_cycles` (vectors,
/// __arch_counter_get_cntvct_stable, __delay_cycles, 0xfffffffffffffffb). There the test walks
/// the AAPCS64 frame records from x29 instead (the chain arm64's own unwinder,
/// arch/arm64/kernel/stacktrace.c, follows for the oops' call trace), which checks what kmemd
/// provides: the panicking CPU's registers and its stack's memory.
#[test]
fn vmlinux_gives_panic_cpu_and_the_panicking_stack() {
    for (f, vmlinux) in setups() {
        let (mut k, sock) = serve_dump(
            &f.panic_dump,
            &["-k", vmlinux.to_str().unwrap()],
            &format!("dbgbt-panic-{}", f.variant),
        );
        let cpu = f.panic_cpu;
        for (name, gdb) in gdbs_for(&f.arch) {
            let name = format!("{} {name}", f.variant);
            let mut cmds = vec!["info threads".to_string(), "echo BT-START\\n".into(), "bt".into()];
            if f.arch == "aarch64" {
                cmds.push("echo FP-START\\n".into());
                cmds.push("set $fp_walk = $x29".into());
                for _ in 0..16 {
                    cmds.push("x/2a $fp_walk".into());
                    cmds.push("set $fp_walk = *(unsigned long *)$fp_walk".into());
                }
            }
            let t = gdb_with(&gdb, &[format!("file {}", vmlinux.display())], &sock, &cmds);
            let rows: Vec<&str> = t
                .lines()
                .filter(|l| l.contains("Thread ") && l.contains(" \"CPU "))
                .collect();
            let star = rows
                .iter()
                .find(|l| l.trim_start().starts_with('*'))
                .unwrap_or_else(|| panic!("{name}: no current thread in: {t}"));
            let info = extra_info(star).unwrap_or_else(|| panic!("{name}: no extra info in {star}"));
            assert!(
                info.starts_with(&format!("CPU {cpu} ")) && info.contains("panic"),
                "{name}: GDB's current thread at connect should be CPU {cpu} with panic: {t}"
            );
            let panics = rows
                .iter()
                .filter(|r| extra_info(r).is_some_and(|i| i.contains("panic")))
                .count();
            assert_eq!(panics, 1, "{name}: exactly one thread says panic: {t}");

            let (_, after) = t.split_once("BT-START").expect("bt ran");
            let (bt, fp) = after.split_once("FP-START").unwrap_or((after, ""));
            if f.arch == "aarch64" {
                // Each record is [previous x29, return address]; `x/2a` names the return address
                // `<panic+OFF>` when it is in panic().
                assert!(
                    fp.contains("<panic+"),
                    "{name}: the frame records from CPU {cpu}'s x29 do not reach panic():\n{fp}\n(bt:\n{bt})"
                );
            } else {
                let fr = frames(bt);
                assert!(
                    fr.iter().any(|n| n == "panic"),
                    "{name}: no panic frame in {fr:?}:\n{bt}"
                );
            }
            assert!(k.alive(), "{name}: server died: {}", k.log_text());
        }
        // The answer came from the kernel's panic_cpu, found through the vmlinux's symbols (on
        // arm64, whose kallsyms has no data symbols, only -k can give it).
        let o = std::process::Command::new(KMEMD)
            .args([
                "-q",
                "-k",
                vmlinux.to_str().unwrap(),
                "-c",
                f.panic_dump.to_str().unwrap(),
                "--info",
            ])
            .output()
            .expect("run kmemd --info");
        let info = text(&o);
        assert!(
            info.contains(&format!("crashing CPU:  CPU {cpu} (the kernel's panic_cpu)")),
            "{}: -k --info: {info}",
            f.variant
        );
    }
}
