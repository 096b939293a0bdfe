//! Kernel awareness on the real QEMU dump fixtures (tests/fixtures/README.md), with no vmlinux:
//! dmesg against makedumpfile's `--dump-dmesg` of the same dump, tasks and modules against what
//! the guest printed, `--pid` against the guest's busybox file, `info threads` through real GDB.

mod common;

use common::*;
use kmemd::target::dump::DumpTarget;
use kmemd::target::Target;
use std::path::{Path, PathBuf};

struct Fixture {
    variant: String,
    arch: String,
    dumps: Vec<PathBuf>,
    sleep_pids: Vec<i32>,
    /// (name, address, size) from the guest's /proc/modules.
    modules: Vec<(String, u64, u64)>,
    dmesg: Option<PathBuf>,
    busybox: PathBuf,
    /// The first sleep's /proc/PID/maps: (start, end, perms, path).
    maps: Vec<(u64, u64, String, String)>,
}

/// The fixtures, or None (skip) outside CI when they have not been generated.
fn fixtures() -> Option<Vec<Fixture>> {
    load_fixtures(load)
}

fn load(dir: &Path) -> Fixture {
    let mut f = Fixture {
        variant: String::new(),
        arch: String::new(),
        dumps: vec![],
        sleep_pids: vec![],
        modules: vec![],
        dmesg: None,
        busybox: dir.join("busybox"),
        maps: vec![],
    };
    for line in manifest(dir) {
        let w: Vec<&str> = line.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["variant", v] => f.variant = v.to_string(),
            ["arch", a] => f.arch = a.to_string(),
            ["dump", _, _, p] => f.dumps.push(dir.join(p)),
            ["sleep_pid", p] => f.sleep_pids.push(p.parse().expect("pid")),
            ["module", n, a, s] => f.modules.push((n.to_string(), hex(a), s.parse().expect("size"))),
            ["dmesg", p] => f.dmesg = Some(dir.join(p)),
            ["busybox", p] => f.busybox = dir.join(p),
            ["sleep_map", _, s, e, perms, _, rest @ ..] => {
                f.maps.push((hex(s), hex(e), perms.to_string(), rest.join(" ")))
            }
            _ => {}
        }
    }
    assert_eq!(f.sleep_pids.len(), 2, "{}: two sleep pids", dir.display());
    f
}

/// The dumps a test opens: every format (dmesg and tasks live in kernel data, which even -d 31
/// keeps).
fn open(p: &Path) -> DumpTarget {
    DumpTarget::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn dmesg_equals_makedumpfile_dump_dmesg() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let Some(want) = &f.dmesg else {
            // makedumpfile's --dump-dmesg is the oracle; under CI the fixtures must have it.
            assert!(
                !common::in_ci(),
                "{}: no dmesg.txt in the fixture (makedumpfile could not run)",
                f.variant
            );
            eprintln!("SKIP {}: no dmesg.txt (makedumpfile could not run)", f.variant);
            continue;
        };
        let want = std::fs::read_to_string(want).expect("dmesg.txt");
        assert!(
            want.lines().count() > 100,
            "{}: dmesg.txt is too short",
            f.variant
        );
        for d in &f.dumps {
            let got = open(d)
                .monitor("dmesg")
                .expect("dmesg is a monitor command")
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            if got != want {
                let first = got
                    .lines()
                    .zip(want.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.lines().count().min(want.lines().count()));
                panic!(
                    "{}: monitor dmesg differs from makedumpfile --dump-dmesg at line {}:\n got: {:?}\nwant: {:?}",
                    d.display(),
                    first + 1,
                    got.lines().nth(first),
                    want.lines().nth(first)
                );
            }
        }
    }
}

#[test]
fn ps_lists_init_and_both_sleeps() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let d = f.dumps.first().expect("a dump");
        let mut t = open(d);
        let ps = t
            .monitor("ps")
            .expect("ps is a monitor command")
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        eprintln!("{}:\n{ps}", f.variant);
        let rows: Vec<Vec<&str>> = ps
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        let find = |pid: i32| rows.iter().find(|r| r.first() == Some(&pid.to_string().as_str()));
        let init = find(1).unwrap_or_else(|| panic!("{}: no pid 1 in\n{ps}", f.variant));
        assert_eq!(init[1], "0", "{}: init's parent is pid 0", f.variant);
        for &p in &f.sleep_pids {
            let r = find(p).unwrap_or_else(|| panic!("{}: no sleep pid {p} in\n{ps}", f.variant));
            assert!(r.contains(&"sleep"), "{}: pid {p} is not sleep: {r:?}", f.variant);
            assert_eq!(r[2], "S", "{}: sleep {p} is sleeping: {r:?}", f.variant);
        }
    }
}

/// A sleeping task's registers come from its last context switch: the PC is where the switch
/// returns to, x86_64 `__schedule` (after `call __switch_to_asm`, context_switch is inlined),
/// arm64 `__switch_to` (the lr `cpu_switch_to` saved; arm64 calls it from __switch_to).
#[test]
fn sleeping_tasks_have_their_switch_registers() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let mut t = open(&f.dumps[0]);
        let pc = t.arch().pc_index();
        for &p in &f.sleep_pids {
            let r = t
                .registers(kmemd::kernel::threads::task_tid(p))
                .unwrap_or_else(|e| panic!("{}: pid {p}: {e}", f.variant));
            let pc = r.0[pc].unwrap_or_else(|| panic!("{}: pid {p} has no pc", f.variant));
            let sym = t.monitor(&format!("sym {pc:#x}")).unwrap().unwrap();
            let want = if f.arch == "aarch64" {
                "= __switch_to+"
            } else {
                "= __schedule+"
            };
            assert!(sym.contains(want), "{}: pid {p} pc {pc:#x}: {sym}", f.variant);
        }
    }
}

#[test]
fn gdb_info_threads_lists_the_tasks() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let dump = &f.dumps[0];
        let dir = scratch(&format!("tasksgdb-{}", f.variant));
        let sock = dir.join("gdb.sock");
        let mut k = Kmemd::spawn(
            &["-c", dump.to_str().unwrap(), "-s", sock.to_str().unwrap()],
            dir.join("kmemd.log"),
        );
        k.wait_unix(&sock);
        let pc = if f.arch == "aarch64" { "pc" } else { "rip" };
        // Direct access to a task's registers through GDB: its thread id is 0x10000 + pid.
        let p = f.sleep_pids[0];
        let mut lib = open(dump);
        let want_pc =
            lib.registers(kmemd::kernel::threads::task_tid(p)).unwrap().0[lib.arch().pc_index()].unwrap();
        for (name, gdb) in gdbs_for(&f.arch) {
            let cmds = vec![
                "info threads".to_string(),
                format!("thread find pid {p} "),
                "monitor ps".to_string(),
            ];
            let o = gdb_batch(&gdb, sock.to_str().unwrap(), &cmds);
            let t = text(&o);
            let ctx = format!("{name} {}", f.variant);
            assert!(
                t.contains("\"swapper/0\"") && t.contains("\"init\""),
                "{ctx}: {t}"
            );
            for &p in &f.sleep_pids {
                assert!(
                    t.contains(&format!("pid {p} sleep")),
                    "{ctx}: sleep {p} missing: {t}"
                );
            }
            // `thread find` prints "Thread N has target id ..." for the match; switch to it.
            let n: String = t
                .lines()
                .find(|l| l.starts_with("Thread ") && l.contains(&format!("pid {p} ")))
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or_else(|| panic!("{ctx}: thread find: {t}"))
                .to_string();
            let o = gdb_batch(
                &gdb,
                sock.to_str().unwrap(),
                &[format!("thread {n}"), format!("printf \"@@pc=%#lx\\n\", ${pc}")],
            );
            let t = text(&o);
            assert!(
                t.contains(&format!("@@pc={want_pc:#x}")),
                "{ctx}: thread {n}: {t}"
            );
            assert!(k.alive(), "{ctx}: server died: {}", k.log_text());
        }
    }
}

fn kmemd_read(args: &[&str]) -> std::process::Output {
    std::process::Command::new(KMEMD)
        .args(args)
        .output()
        .expect("run kmemd")
}

/// `--pid` serves the process through its own page tables: busybox (static, non-PIE) is mapped
/// at 0x400000, so the first bytes there are the file's ELF header.
#[test]
fn pid_reads_the_process_elf_header_through_its_page_tables() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let want = std::fs::read(&f.busybox).expect("busybox");
        assert_eq!(&want[..4], b"\x7fELF");
        for d in [&f.dumps[0], f.dumps.last().unwrap()] {
            for &p in &f.sleep_pids {
                let o = kmemd_read(&[
                    "-c",
                    d.to_str().unwrap(),
                    "--pid",
                    &p.to_string(),
                    "--read",
                    "0x400000",
                    "64",
                ]);
                assert!(o.status.success(), "{} pid {p}: {}", d.display(), text(&o));
                assert_eq!(o.stdout, want[..64], "{} pid {p}", d.display());
            }
        }
        // A kernel thread has no address space: one sentence, no panic.
        let o = kmemd_read(&[
            "-c",
            f.dumps[0].to_str().unwrap(),
            "--pid",
            "2",
            "--read",
            "0x400000",
            "8",
        ]);
        assert!(
            !o.status.success() && text(&o).contains("kernel thread"),
            "{}",
            text(&o)
        );
    }
}

/// The user registers in pt_regs: the PC is in busybox's code and the SP in the [stack] mapping
/// the guest's /proc/PID/maps printed.
#[test]
fn pid_threads_have_user_registers() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let p = f.sleep_pids[0];
        let t = DumpTarget::open(&f.dumps[0]).unwrap();
        let mut proc = kmemd::target::process::ProcessTarget::new(t, p as u32).unwrap();
        let threads = proc.threads();
        assert_eq!(threads.len(), 1, "{}: sleep is single-threaded", f.variant);
        assert_eq!(threads[0].name, "sleep");
        let r = proc.registers(threads[0].tid).unwrap();
        let (pc, sp) = if f.arch == "aarch64" {
            ("pc", "sp")
        } else {
            ("rip", "rsp")
        };
        let get = |n: &str| r.0[proc.arch().reg_index(n).unwrap()].unwrap();
        let inside = |v: u64, perm: &str, path: &str| {
            f.maps
                .iter()
                .any(|(s, e, pm, pa)| v >= *s && v < *e && pm.contains(perm) && pa.contains(path))
        };
        assert!(
            inside(get(pc), "x", "busybox"),
            "{}: pc {:#x} not in busybox text {:?}",
            f.variant,
            get(pc),
            f.maps
        );
        assert!(
            inside(get(sp), "rw", "[stack]"),
            "{}: sp {:#x} not in [stack] {:?}",
            f.variant,
            get(sp),
            f.maps
        );
    }
}

#[test]
fn lsmod_shows_the_guests_module_at_its_address() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        assert!(!f.modules.is_empty(), "{}: the guest loaded a module", f.variant);
        let mut t = open(&f.dumps[0]);
        let text = t
            .monitor("lsmod")
            .unwrap()
            .unwrap_or_else(|e| panic!("{}: {e}", f.variant));
        eprintln!("{}:\n{text}", f.variant);
        for (name, addr, size) in &f.modules {
            let row = format!("{name:<24} {addr:#018x} {size:>8}");
            assert!(text.contains(&row), "{}: wanted '{row}' in\n{text}", f.variant);
            let add = format!("  add-symbol-file {name}.ko {addr:#x}");
            assert!(
                text.contains(&add) && text.contains(" -s .data 0x"),
                "{}: {text}",
                f.variant
            );
        }
    }
}

/// `monitor sym` both ways, against the guest's own /proc/kallsyms lines in the manifest.
#[test]
fn sym_looks_up_names_and_addresses() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let text = std::fs::read_to_string(f.dumps[0].parent().unwrap().join("manifest.txt")).unwrap();
        let ksyms: Vec<(String, u64)> = text
            .lines()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                match w.as_slice() {
                    ["ksym", n, a] => Some((n.to_string(), hex(a))),
                    _ => None,
                }
            })
            .filter(|(n, _)| n.starts_with("_stext") || n == "jiffies_64" || n == "init_task" || n == "prb")
            .collect();
        assert!(!ksyms.is_empty(), "{}: manifest ksym lines", f.variant);
        let mut t = open(&f.dumps[0]);
        for (name, addr) in &ksyms {
            let by_name = t.monitor(&format!("sym {name}")).unwrap().unwrap();
            assert_eq!(by_name, format!("{name} = {addr:#x}\n"), "{}", f.variant);
            let by_addr = t.monitor(&format!("sym {:#x}", addr + 1)).unwrap().unwrap();
            assert!(
                by_addr.starts_with(&format!("{:#x} = ", addr + 1)) && by_addr.ends_with("+0x1\n"),
                "{}: {by_addr}",
                f.variant
            );
        }
        let e = t.monitor("sym no_such_symbol_at_all").unwrap().unwrap_err();
        assert!(e.contains("no symbol"), "{e}");
    }
}

/// `monitor help` on a dump names every command the dump answers, and each one it names is
/// answered (not refused as unknown).
#[test]
fn monitor_help_lists_exactly_the_commands_a_dump_answers() {
    let Some(fx) = fixtures() else { return };
    // Every kernel-awareness command kmemd has, live or dump.
    let known = [
        "vtop",
        "info",
        "ps",
        "lsmod",
        "sym",
        "dmesg",
        "kaslr",
        "vmcoreinfo",
    ];
    for f in &fx {
        let mut t = open(&f.dumps[0]);
        let listed: Vec<String> = t
            .monitor_help()
            .iter()
            .map(|(c, _)| c.split_whitespace().next().unwrap_or_default().to_string())
            .collect();
        for cmd in &listed {
            // vtop prints a walk for any address, mapped or not.
            let arg = match cmd.as_str() {
                "vtop" => " 0x1000",
                "sym" => " init_task",
                _ => "",
            };
            assert!(
                t.monitor(&format!("{cmd}{arg}")).is_some(),
                "{}: `monitor help` lists {cmd} but the dump does not answer it",
                f.variant
            );
        }
        for cmd in known {
            let answered = t.monitor(cmd).is_some();
            assert_eq!(
                answered,
                listed.iter().any(|l| l == cmd),
                "{}: `monitor {cmd}` is {} but `monitor help` {} it: {listed:?}",
                f.variant,
                if answered { "answered" } else { "unknown" },
                if answered { "omits" } else { "lists" },
            );
        }
    }
}

/// `--pid` serves `mm->saved_auxv` as `qXfer:auxv:read`: GDB's `info auxv` shows AT_ENTRY and
/// AT_PHDR equal to what the busybox file says (static, non-PIE, loaded at 0x400000: entry is
/// `e_entry`, the program headers are at 0x400000 + `e_phoff`).
#[test]
fn pid_gdb_info_auxv_matches_the_binary() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let elf = std::fs::read(&f.busybox).expect("busybox");
        let word = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap());
        let (entry, phdr) = (word(0x18), 0x400000 + word(0x20));
        let p = f.sleep_pids[0];
        let dir = scratch(&format!("pidauxv-{}", f.variant));
        let sock = dir.join("gdb.sock");
        let mut k = Kmemd::spawn(
            &[
                "-c",
                f.dumps[0].to_str().unwrap(),
                "--pid",
                &p.to_string(),
                "-s",
                sock.to_str().unwrap(),
            ],
            dir.join("kmemd.log"),
        );
        k.wait_unix(&sock);
        for (name, gdb) in gdbs_for(&f.arch) {
            let o = gdb_batch(&gdb, sock.to_str().unwrap(), &["info auxv".to_string()]);
            let t = text(&o);
            let ctx = format!("{name} {} pid {p}", f.variant);
            let value = |tag: &str| {
                t.lines()
                    .find(|l| l.split_whitespace().nth(1) == Some(tag))
                    .and_then(|l| l.split_whitespace().find(|w| w.starts_with("0x")))
                    .and_then(|w| u64::from_str_radix(&w[2..], 16).ok())
                    .unwrap_or_else(|| panic!("{ctx}: no {tag} in: {t}"))
            };
            assert_eq!(value("AT_ENTRY"), entry, "{ctx}: {t}");
            assert_eq!(value("AT_PHDR"), phdr, "{ctx}: {t}");
            assert!(k.alive(), "{ctx}: server died: {}", k.log_text());
        }
    }
}
