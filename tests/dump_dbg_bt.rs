//! Backtraces of sleeping tasks in a real dump, through real GDB, with Debian's matching debug
//! vmlinux (`linux-image-<release>-dbg`, fetched once into a cache outside the repository by
//! tests/fixtures/dbg-vmlinux.sh / `make dbg-vmlinux`). The fixture guest's two `sleep 1000`
//! processes are in `clock_nanosleep`, so each one's kernel stack runs through `schedule`.
//! Skipped outside CI when the fixtures or the vmlinux are missing; fails in CI.

mod common;

use common::*;
use kmemd::dump::target::DumpTarget;
use kmemd::target::Target;
use std::path::{Path, PathBuf};

struct Fx {
    dump: PathBuf,
    release: String,
    kaslr: u64,
    sleep_pids: Vec<i32>,
}

/// The x86_64 4-level fixture and its debug vmlinux, or None (skip) outside CI.
fn setup() -> Option<(Fx, PathBuf)> {
    let dir = fixtures_root().join("current").join("x86_64-4l");
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
        dump: dir.join("vmcore.elf"),
        release: String::new(),
        kaslr: 0,
        sleep_pids: vec![],
    };
    for line in text.lines() {
        match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["release", r] => f.release = r.to_string(),
            ["kaslr_offset", k] => f.kaslr = hex(k),
            ["sleep_pid", p] => f.sleep_pids.push(p.parse().expect("pid")),
            _ => {}
        }
    }
    assert!(
        !f.release.is_empty() && f.sleep_pids.len() == 2,
        "manifest.txt: {text}"
    );
    // The guest kernel was booted with KASLR on (make-fixtures.sh reboots until it is non-zero),
    // so a backtrace that resolves proves the offset was applied.
    assert_ne!(f.kaslr, 0, "the fixture has no KASLR slide");
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
            "SKIP: no debug vmlinux at {} (run `make dbg-vmlinux`)",
            vmlinux.display()
        );
        return None;
    }
    Some((f, vmlinux))
}

fn serve(f: &Fx, extra: &[&str], name: &str) -> (Kmemd, PathBuf) {
    let dir = scratch(name);
    let sock = dir.join("gdb.sock");
    let mut args = vec!["-c", f.dump.to_str().unwrap(), "-s", sock.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut k = Kmemd::spawn(&args, dir.join("kmemd.log"));
    k.wait_unix(&sock);
    (k, sock)
}

/// Runs GDB: `cmds_before` (e.g. `file VMLINUX`) before `target remote`, then `cmds`.
fn gdb_with(gdb: &Path, before: &[String], sock: &Path, cmds: &[String]) -> String {
    let mut c = std::process::Command::new("timeout");
    c.arg("300").arg(gdb).args([
        "-nx",
        "-batch",
        "-ex",
        "set pagination off",
        "-ex",
        "set confirm off",
    ]);
    for b in before {
        c.args(["-ex", b]);
    }
    c.args(["-ex", &format!("target remote {}", sock.display())]);
    for cmd in cmds {
        c.args(["-ex", cmd]);
    }
    c.stdin(std::process::Stdio::null());
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
/// both sleep tasks' stacks go through schedule.
#[test]
fn thread_apply_all_bt_shows_sleep_in_schedule() {
    let Some((f, vmlinux)) = setup() else { return };
    let (mut k, sock) = serve(&f, &[], "dbgbt-all");
    for (name, gdb) in gdbs() {
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

/// The full-correctness way `monitor kaslr` prints (no `file`; `add-symbol-file -o OFF` with
/// per-CPU symbols kept zero-based), selecting the task by `thread find`.
#[test]
fn add_symbol_file_with_kaslr_offset_then_bt_of_one_task() {
    let Some((f, vmlinux)) = setup() else { return };
    let (mut k, sock) = serve(&f, &[], "dbgbt-one");
    let p = f.sleep_pids[0];
    let load = format!(
        "add-symbol-file {} -o {:#x} -s .data..percpu 0",
        vmlinux.display(),
        f.kaslr
    );
    for (name, gdb) in gdbs() {
        let t = gdb_with(
            &gdb,
            &[],
            &sock,
            &["monitor kaslr".to_string(), format!("thread find pid {p} ")],
        );
        // The line kmemd tells the user to type is the one this test uses.
        assert!(
            t.contains(&format!(
                "add-symbol-file VMLINUX -o {:#x} -s .data..percpu 0",
                f.kaslr
            )),
            "{name}: monitor kaslr: {t}"
        );
        let n = t
            .lines()
            .find(|l| l.starts_with("Thread ") && l.contains(&format!("pid {p} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{name}: thread find: {t}"))
            .to_string();
        let t = gdb_with(
            &gdb,
            &[],
            &sock,
            &[load.clone(), format!("thread {n}"), "bt".to_string()],
        );
        assert_sleeping_in_schedule(&format!("{name} pid {p}"), &t);
        assert!(k.alive(), "{name}: server died: {}", k.log_text());
    }
}

/// The address `nm` gives a symbol in the vmlinux (its link-time address).
fn nm_address(vmlinux: &Path, sym: &str) -> u64 {
    let o = std::process::Command::new("nm")
        .arg(vmlinux)
        .output()
        .expect("nm (binutils)");
    assert!(o.status.success(), "nm {}: {}", vmlinux.display(), text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3 && w[2] == sym).then(|| hex(w[0]))
        })
        .unwrap_or_else(|| panic!("{sym} not in {}", vmlinux.display()))
}

/// `-k VMLINUX` with the dump: symbols come from the vmlinux first. `__kstrtab__printk` is in the
/// vmlinux's symbol table but never in kallsyms (scripts/kallsyms.c drops `__kstrtab_`), so only
/// `-k` finds it, at its link address plus the dump's KASLR offset; backtraces still work.
#[test]
fn vmlinux_option_takes_precedence_for_symbols_and_bt_works() {
    let Some((f, vmlinux)) = setup() else { return };
    let sym = "__kstrtab__printk";
    let want = nm_address(&vmlinux, sym) + f.kaslr;

    let mut plain = DumpTarget::open(&f.dump).expect("open dump");
    let without = plain
        .monitor(&format!("sym {sym}"))
        .expect("sym is a monitor command");
    let without = format!("{without:?}");
    assert!(
        !without.contains(&format!("{want:#x}")),
        "kallsyms alone should not know {sym}: {without}"
    );

    let (mut k, sock) = serve(&f, &["-k", vmlinux.to_str().unwrap()], "dbgbt-k");
    let p = f.sleep_pids[1];
    for (name, gdb) in gdbs() {
        let t = gdb_with(
            &gdb,
            &[format!("file {}", vmlinux.display())],
            &sock,
            &[format!("monitor sym {sym}"), format!("thread find pid {p} ")],
        );
        assert!(
            t.contains(&format!("{want:#x}")),
            "{name}: -k: monitor sym {sym}: {t}"
        );
        let n = t
            .lines()
            .find(|l| l.starts_with("Thread ") && l.contains(&format!("pid {p} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or_else(|| panic!("{name}: thread find: {t}"))
            .to_string();
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
