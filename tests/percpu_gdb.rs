//! x86_64's per-CPU variables through real GDBs on the real panic dump, with Debian's debug
//! vmlinux loaded in GDB, kmemd given `-k` or not. x86_64 links `.data..percpu` at 0, so GDB
//! takes `current_task`'s value (an offset, 0x1fb80 in 6.1) as its address; kmemd serves those
//! low addresses from the per-CPU copy of the selected thread's CPU. Asserted per GDB (gdb 13 with
//! and without `-k`, GDB 18 with it):
//! - `p current_task->pid` and `p (*(struct task_struct **)&current_task)->pid` on each CPU thread
//!   name the task that CPU's runqueue says it ran (the thread's label, from `rq->curr`: another
//!   variable than `current_task`), and on a task thread the task its CPU ran;
//! - `-k` keeps per-CPU symbols unmoved by the KASLR slide (kallsyms' own values), so `--sym
//!   current_task` is the vmlinux's `nm` value and `--ps` lists every CPU's idle task either way.
//!
//! Skipped outside CI when the fixtures or the debug vmlinux are missing; fails in CI.

mod common;

use common::*;

fn kmemd() -> &'static str {
    env!("CARGO_BIN_EXE_kmemd")
}

fn stdout_of(args: &[&str]) -> String {
    let o = std::process::Command::new(kmemd())
        .args(args)
        .output()
        .expect("run kmemd");
    assert!(o.status.success(), "kmemd {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The value GDB printed for `$N = VALUE` after `marker`.
fn printed_after<'a>(out: &'a str, marker: &str) -> &'a str {
    let rest = out
        .split(marker)
        .nth(1)
        .unwrap_or_else(|| panic!("no {marker} in:\n{out}"));
    let line = rest
        .lines()
        .find(|l| l.starts_with('$'))
        .unwrap_or_else(|| panic!("no value after {marker} in:\n{out}"));
    line.split_once(" = ").map_or(line, |(_, v)| v).trim()
}

#[test]
fn per_cpu_variables_read_the_selected_threads_cpu() {
    let dir = fixtures_root().join("current").join("x86_64-4l");
    let Ok(_) = std::fs::metadata(dir.join("manifest.txt")) else {
        assert!(!in_ci(), "no dump fixtures in {}: `make fixtures`", dir.display());
        eprintln!("SKIP: no dump fixtures in {}", dir.display());
        return;
    };
    let m = manifest(&dir);
    let get = |k: &str| {
        m.iter()
            .find(|l| l.first().map(String::as_str) == Some(k))
            .and_then(|l| l.get(1).cloned())
            .unwrap_or_else(|| panic!("manifest has no {k}"))
    };
    let release = get("release");
    let Some(vmlinux) = dbg_vmlinux(&release) else {
        return;
    };
    let panic_dump = m
        .iter()
        .find(|l| l.first().map(String::as_str) == Some("panic_dump"))
        .and_then(|l| l.get(2))
        .map(|p| dir.join(p))
        .expect("panic_dump in the manifest");
    let dump = panic_dump.to_str().unwrap();
    let vm = vmlinux.to_str().unwrap();
    let link = nm_address(&vmlinux, "current_task");
    assert!(
        link < 0x10_0000,
        "current_task is linked at {link:#x}: not zero-based per-CPU?"
    );

    // Symbols: per-CPU ones keep their value under -k; every CPU's idle task is found either way.
    let plain_ps = stdout_of(&["-q", "-c", dump, "--ps"]);
    for k in [vec![], vec!["-k", vm]] {
        let mut args = vec!["-q", "-c", dump];
        args.extend(&k);
        let sym = stdout_of(&[args.as_slice(), &["--sym", "current_task"]].concat());
        assert_eq!(sym, format!("current_task = {link:#x}\n"), "{k:?}");
        let ps = stdout_of(&[args.as_slice(), &["--ps"]].concat());
        let idle = |t: &str| t.lines().filter(|l| l.contains(" swapper/")).count();
        assert_eq!(idle(&ps), 2, "{k:?}: two CPUs, two idle tasks:\n{ps}");
        assert_eq!(ps, plain_ps, "{k:?}: the same task list as without -k");
    }

    // A sleeping task last on each CPU, from kmemd's task list (PID PPID ST CPU COMM TASK).
    let sleeper = |cpu: u32| {
        plain_ps
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.len() >= 5 && w[2] == "S" && w[3].trim_end_matches('>') == cpu.to_string())
            .map(|w| w[0].parse::<u64>().expect("pid"))
            .unwrap_or_else(|| panic!("no sleeping task last on CPU {cpu}:\n{plain_ps}"))
    };
    let sleepers = [sleeper(0), sleeper(1)];

    // GDB 18 takes a minute to load this vmlinux's DWARF, so it runs once (with -k), gdb 13 both
    // ways; `-k` changes kmemd's symbols, not what GDB loads.
    for (i, (name, gdb)) in gdbs().into_iter().enumerate() {
        let ks: &[bool] = if i == 0 { &[false, true] } else { &[true] };
        for &with_k in ks {
            let k = if with_k {
                format!("-k {vm} ")
            } else {
                String::new()
            };
            let what = format!("{name} {k}");
            let mut c = gdb_batch_command(&gdb, 900);
            c.arg(&vmlinux).args([
                "-ex",
                &format!("target remote | {} -q -c {dump} {k}-s -", kmemd()),
                "-ex",
                "info threads",
            ]);
            let mut check = |select: String, tag: String| {
                c.args([
                    "-ex".into(),
                    select,
                    "-ex".into(),
                    format!("echo MARK-cur{tag}\\n"),
                    "-ex".into(),
                    "p current_task->pid".into(),
                    "-ex".into(),
                    format!("echo MARK-deref{tag}\\n"),
                    "-ex".into(),
                    "p (*(struct task_struct **)&current_task)->pid".to_string(),
                ]);
            };
            // CPU threads are GDB's 1 and 2; a task's thread is kmemd's thread id 0x10000 + pid
            // (GDB's ptid lwp), selected from Python.
            check("thread 1".into(), "c0".into());
            check("thread 2".into(), "c1".into());
            for (cpu, pid) in sleepers.iter().enumerate() {
                check(
                    format!(
                        "python [t.switch() for t in gdb.selected_inferior().threads() if t.ptid[1] == {}]",
                        0x1_0000 + pid
                    ),
                    format!("t{cpu}"),
                );
            }
            let out = text(&c.output().expect("run gdb"));
            // `info threads`: "Thread 2 \"CPU 1\" (CPU 1 pid 107 sh ...)" or "(CPU 0 idle)".
            for cpu in 0..2u32 {
                let label = out
                    .lines()
                    .find(|l| l.contains(&format!("\"CPU {cpu}\" (CPU {cpu} ")))
                    .unwrap_or_else(|| panic!("{what}: no thread for CPU {cpu}:\n{out}"));
                let want = match label.split(&format!("(CPU {cpu} pid ")).nth(1) {
                    Some(rest) => rest.split_whitespace().next().unwrap().to_string(),
                    None => {
                        assert!(label.contains(&format!("(CPU {cpu} idle")), "{what}: {label}");
                        "0".into()
                    }
                };
                // The CPU's thread, and a task that last ran there, read that CPU's copy.
                for tag in ["cur", "deref"] {
                    for who in [format!("c{cpu}"), format!("t{cpu}")] {
                        assert_eq!(
                            printed_after(&out, &format!("MARK-{tag}{who}")),
                            want,
                            "{what}: {tag}{who}, CPU {cpu} (sleeper pid {}):\n{out}",
                            sleepers[cpu as usize]
                        );
                    }
                }
            }
        }
    }
}
