//! The first hour of a kernel engineer (issue 20 items 2 and 3), on the real dump fixtures with
//! Debian's debug vmlinux and the kernel's own GDB scripts (scripts/gdb, built by `make
//! lx-scripts` for the fixtures' kernel):
//! - x86_64 with KASLR: `gdb -ex 'target remote ...'` with `kmemd -k VMLINUX` and no typed line
//!   loads the vmlinux (qXfer:exec-file) and reads `.rodata` symbols (`linux_banner`,
//!   `__per_cpu_offset`) right although GDB leaves them at their link-time addresses: kmemd
//!   serves those from their slid bytes;
//! - aarch64: plain `gdb-multiarch VMLINUX` is right without `-k` (one PT_LOAD: GDB moves every
//!   section itself), and kmemd leaves it that way;
//! - `lx-ps`, `lx-dmesg`, `lx-lsmod`, `lx-cmdline`, `lx-mounts`, `$lx_current()` and
//!   `$lx_per_cpu()` work, with gdb 13 / gdb-multiarch and GDB 18; `monitor info version`
//!   answers and an unknown monitor command raises a GDB error.
//!
//! Oracles: the fixture's manifest (runtime addresses from the guest's /proc/kallsyms, the
//! module list, QEMU's memsave of linux_banner), its console log (command line) and dmesg.txt;
//! for per-CPU data, the kernel's own numbering (`rq->cpu`, idle tasks named `swapper/N`).
//! Skipped outside CI when the fixtures, the debug vmlinux or the scripts are missing.

mod common;

use common::*;
use std::path::{Path, PathBuf};

struct Fx {
    dir: PathBuf,
    arch: String,
    release: String,
    kaslr: u64,
    ksyms: Vec<(String, u64)>,
    modules: Vec<String>,
    /// The start of QEMU's memsave of the banner: "Linux version RELEASE (builder) (compiler)".
    /// (On arm64 the memsave is of another copy of it, at another address.)
    banner: String,
}

impl Fx {
    /// A runtime address from the guest's /proc/kallsyms (x86_64 has data symbols there;
    /// Debian arm64's kallsyms does not).
    fn ksym(&self, name: &str) -> Option<u64> {
        self.ksyms.iter().find(|(n, _)| n == name).map(|s| s.1)
    }
}

/// A fixture with its debug vmlinux and the scripts' vmlinux-gdb.py, or None (skip) outside CI.
fn setup(variant: &str) -> Option<(Fx, PathBuf, PathBuf)> {
    let dir = fixtures_root().join("current").join(variant);
    if !dir.join("manifest.txt").exists() {
        assert!(!in_ci(), "no fixture {}: `make fixtures`", dir.display());
        eprintln!("SKIP: no fixture {} (make fixtures)", dir.display());
        return None;
    }
    let mut f = Fx {
        dir: dir.clone(),
        arch: String::new(),
        release: String::new(),
        kaslr: 0,
        ksyms: vec![],
        modules: vec![],
        banner: String::new(),
    };
    for w in manifest(&dir) {
        match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            ["arch", a] => f.arch = a.to_string(),
            ["release", r] => f.release = r.to_string(),
            ["kaslr_offset", k] => f.kaslr = hex(k),
            ["ksym", n, a] => f.ksyms.push((n.to_string(), hex(a))),
            ["module", n, ..] => f.modules.push(n.to_string()),
            ["oracle", _, _, _, p] if p.ends_with("linux_banner.bin") => {
                let b = std::fs::read(dir.join(p)).expect("banner oracle");
                let b = String::from_utf8_lossy(&b).into_owned();
                f.banner = b.split(" #").next().unwrap_or_default().to_string();
            }
            _ => {}
        }
    }
    assert_ne!(f.kaslr, 0, "{variant}: the fixture has no KASLR slide");
    assert!(
        f.banner.starts_with("Linux version ") && f.banner.contains(&f.release),
        "{variant}: no linux_banner oracle in the manifest: {:?}",
        f.banner
    );
    let dbg = std::env::var("KMEMD_DBG_CACHE").unwrap_or_else(|_| "/var/cache/kmemd-dbg".into());
    let vmlinux = Path::new(&dbg)
        .join(&f.release)
        .join(format!("vmlinux-{}", f.release));
    let lx = std::env::var("KMEMD_LX_CACHE").unwrap_or_else(|_| "/var/cache/kmemd-lx".into());
    let scripts = Path::new(&lx).join(&f.release).join("vmlinux-gdb.py");
    for (p, make) in [(&vmlinux, "make dbg-vmlinux"), (&scripts, "make lx-scripts")] {
        if !p.exists() {
            assert!(!in_ci(), "no {}: `{make}` makes it", p.display());
            eprintln!("SKIP {variant}: no {} ({make})", p.display());
            return None;
        }
    }
    Some((f, vmlinux, scripts))
}

/// Runs GDB on `sock` (`file` = the vmlinux given on its command line, if any): each command after
/// an `echo` of its key, so the output splits back into one answer per key. Also returns the
/// whole output.
fn run_gdb(
    gdb: &Path,
    file: Option<&Path>,
    sock: &Path,
    cmds: &[(&str, String)],
) -> (Vec<(String, String)>, String) {
    let mut c = gdb_batch_command(gdb, 900);
    if let Some(f) = file {
        c.arg(f);
    }
    c.args(["-ex", &format!("target remote {}", sock.display())]);
    for (key, cmd) in cmds {
        c.args(["-ex", &format!("echo \\n@@{key}@@\\n"), "-ex", cmd]);
    }
    let o = c.output().expect("run gdb");
    // The echoes go to stdout, GDB's errors to stderr: interleaving is lost, so a command whose
    // error matters is run through Python (see `raises`).
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let all = text(&o);
    let mut answers = Vec::new();
    let mut parts = out.split("\n@@").skip(1);
    for part in parts.by_ref() {
        if let Some((key, rest)) = part.split_once("@@\n") {
            let rest: Vec<&str> = rest.lines().filter(|l| !l.starts_with("[Inferior ")).collect();
            answers.push((key.to_string(), rest.join("\n").trim_end().to_string()));
        }
    }
    (answers, all)
}

fn answer<'a>(answers: &'a [(String, String)], key: &str, all: &str) -> &'a str {
    answers
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, a)| a.as_str())
        .unwrap_or_else(|| panic!("no answer for {key}:\n{all}"))
}

/// A GDB command run through Python, printing whether GDB raised an error for it.
fn raises(cmd: &str) -> String {
    format!(
        "python exec(\"try:\\n gdb.execute('{cmd}', to_string=True)\\n print('NO-ERROR')\\nexcept gdb.error:\\n print('RAISED')\")"
    )
}

/// `$N = VALUE`: the value.
fn value(a: &str) -> &str {
    a.lines()
        .find_map(|l| {
            l.strip_prefix('$')
                .and_then(|r| r.split_once(" = "))
                .map(|(_, v)| v)
        })
        .unwrap_or("")
}

/// The command line the guest booted with (its console log).
fn cmdline(f: &Fx) -> String {
    let log = std::fs::read_to_string(f.dir.join("console.log")).expect("console.log");
    log.lines()
        .find_map(|l| {
            l.split_once("Kernel command line: ")
                .map(|(_, c)| c.trim().to_string())
        })
        .expect("command line in console.log")
}

/// The last dmesg message (text after the timestamp) the fixture's dmesg.txt holds.
fn last_dmesg(f: &Fx) -> String {
    let d = std::fs::read_to_string(f.dir.join("dmesg.txt")).expect("dmesg.txt");
    let l = d
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .expect("dmesg line");
    l.split_once("] ").map_or(l, |(_, m)| m).to_string()
}

/// The kernel's own GDB scripts and the reads they rest on, through one GDB session per GDB:
/// - `x/s linux_banner` is QEMU's memsave of it; `p &linux_banner` (x86_64) is the link-time
///   address (documented: GDB's symbols for unrelocated sections keep it);
/// - `__per_cpu_offset[1]` and `jiffies` equal what `x/gx` reads at their runtime addresses;
/// - `$lx_per_cpu("runqueues", 1).cpu` is 1 (rq->cpu, kernel/sched/sched.h);
/// - `$lx_current()` on GDB threads 1 and 2 (CPUs 0 and 1), and `$lx_current(1)` on x86_64, are
///   the idle tasks `swapper/0`, `swapper/1` (the idle fixture runs no other task on a CPU);
/// - lx-cmdline, lx-lsmod, lx-mounts, lx-ps, lx-dmesg agree with the guest.
fn check_scripts(f: &Fx, vmlinux: &Path, scripts: &Path, kmemd_k: bool, name: &str) {
    let dump = f.dir.join("vmcore.elf");
    let vm = vmlinux.to_str().unwrap();
    let extra: Vec<&str> = if kmemd_k { vec!["-k", vm] } else { vec![] };
    let (mut k, sock) = serve_dump(&dump, &extra, name);
    let pco = k_sym(&sock, "__per_cpu_offset");
    // x86_64's kallsyms has jiffies; elsewhere kmemd's -k symbol (relocated) stands in.
    let jiffies = f.ksym("jiffies").unwrap_or_else(|| k_sym(&sock, "jiffies"));
    // A slide smaller than the image can put the link-time .rodata inside the slid image, where
    // kmemd must not rewrite addresses: then the user types the lines `monitor kaslr` gives, and
    // this test does too, after checking that kmemd says why.
    let typed = if f.arch == "x86_64" {
        kaslr_typed_line(vmlinux, f.kaslr)
    } else {
        None
    };
    let mut cmds: Vec<(&str, String)> = Vec::new();
    if let Some(line) = &typed {
        cmds.push(("kaslr", "monitor kaslr".into()));
        cmds.push(("symbol-file", "symbol-file".into()));
        cmds.push(("add-symbol-file", line.clone()));
    }
    for (gname, gdb) in gdbs_for(&f.arch) {
        let ctx = format!("{name} {gname}");
        let cmds: Vec<(&str, String)> = cmds
            .iter()
            .cloned()
            .chain([
                ("source", format!("source {}", scripts.display())),
                ("banner", "x/s linux_banner".into()),
                ("banner-at", "p/x (unsigned long)&linux_banner".into()),
                ("pco1", "p/x __per_cpu_offset[1]".into()),
                ("pco1-raw", format!("x/gx {:#x}", pco + 8)),
                ("jiffies", "p/x jiffies".into()),
                ("jiffies-raw", format!("x/gx {jiffies:#x}")),
                ("thread1", "thread 1".into()),
                ("current", "p $lx_current().comm".into()),
                ("current1", "p $lx_current(1).comm".into()),
                ("rq1", "p $lx_per_cpu(\"runqueues\", 1).cpu".into()),
                ("rq0", "p $lx_per_cpu(\"runqueues\").cpu".into()),
                ("thread2", "thread 2".into()),
                ("current-t2", "p $lx_current().comm".into()),
                ("cmdline", "lx-cmdline".into()),
                ("lsmod", "lx-lsmod".into()),
                ("mounts", "lx-mounts".into()),
                ("ps", "lx-ps".into()),
                ("dmesg", "lx-dmesg".into()),
                ("version", raises("monitor info version")),
                ("bogus", raises("monitor no-such-command")),
            ])
            .collect();
        let (a, all) = run_gdb(&gdb, (!kmemd_k).then_some(vmlinux), &sock, &cmds);
        let get = |key: &str| answer(&a, key, &all);
        assert!(!all.contains("No executable has been specified"), "{ctx}: {all}");
        assert!(!all.contains("Python Exception"), "{ctx}: {all}");

        assert!(
            get("banner").contains(&format!("<linux_banner>:\t\"{}", f.banner)),
            "{ctx}: x/s linux_banner: {}",
            get("banner")
        );
        let at = hex(value(get("banner-at")));
        if typed.is_some() {
            // Monitor output reaches GDB's stderr, so it is in `all`, not in the answer.
            assert!(
                all.contains(") covers it") && all.contains("add-symbol-file"),
                "{ctx}: monitor kaslr says neither what it leaves alone nor what to type: {all}"
            );
            let run = f.ksym("linux_banner").expect("x86_64 kallsyms has linux_banner");
            assert_eq!(at, run, "{ctx}: add-symbol-file -o moves &linux_banner");
        } else if let Some(run) = f.ksym("linux_banner") {
            // x86_64: GDB's symbol keeps the link-time address; the bytes are the slid ones.
            assert_eq!(at, run - f.kaslr, "{ctx}: &linux_banner is its link-time address");
        } else {
            // arm64: GDB relocates .rodata itself, so &linux_banner is where kmemd finds it.
            assert_eq!(at, k_sym(&sock, "linux_banner"), "{ctx}: arm64 relocates .rodata");
        }
        let raw_word = |key: &str| {
            let l = get(key);
            hex(l.rsplit(['\t', ' ']).next().unwrap_or_default())
        };
        let pco1 = hex(value(get("pco1")));
        assert_ne!(pco1, 0, "{ctx}: {}", get("pco1"));
        assert_eq!(pco1, raw_word("pco1-raw"), "{ctx}: __per_cpu_offset[1]");
        assert_eq!(
            hex(value(get("jiffies"))),
            raw_word("jiffies-raw"),
            "{ctx}: jiffies"
        );

        assert_eq!(
            value(get("current")),
            r#""swapper/0\000\000\000\000\000\000""#,
            "{ctx}: {all}"
        );
        // GDB thread 2 is CPU 1. On arm64 the scripts read the selected thread's SP_EL0 and
        // ignore a CPU argument (6.1 cpus.py get_current_task), so `$lx_current(1)` is x86's.
        assert_eq!(
            value(get("current-t2")),
            r#""swapper/1\000\000\000\000\000\000""#,
            "{ctx}"
        );
        if f.arch == "x86_64" {
            assert_eq!(
                value(get("current1")),
                r#""swapper/1\000\000\000\000\000\000""#,
                "{ctx}"
            );
        }
        assert_eq!(value(get("rq1")), "1", "{ctx}: {}", get("rq1"));
        assert_eq!(value(get("rq0")), "0", "{ctx}: {}", get("rq0"));

        assert_eq!(get("cmdline"), cmdline(f), "{ctx}");
        for m in &f.modules {
            assert!(
                get("lsmod").contains(&format!(" {m} ")),
                "{ctx}: lx-lsmod: {}",
                get("lsmod")
            );
        }
        assert!(get("mounts").contains(" /proc proc "), "{ctx}: {}", get("mounts"));
        let ps = get("ps");
        // Rows are `TASK PID COMM` (PID centred, so by words).
        for (pid, comm) in [("1", "init"), ("2", "kthreadd")] {
            let listed = ps.lines().any(|row| {
                let w: Vec<&str> = row.split_whitespace().collect();
                w.len() == 3 && w[1] == pid && w[2] == comm
            });
            assert!(listed, "{ctx}: lx-ps has no {pid} {comm}: {ps}");
        }
        assert!(
            get("dmesg").contains(&last_dmesg(f)),
            "{ctx}: lx-dmesg lacks {:?}",
            last_dmesg(f)
        );

        assert_eq!(get("version"), "NO-ERROR", "{ctx}: monitor info version");
        assert_eq!(get("bogus"), "RAISED", "{ctx}: an unknown monitor command");
        assert!(k.alive(), "{ctx}: server died: {}", k.log_text());
    }
}

/// `monitor sym NAME`'s address, asked over the socket with a plain RSP exchange.
fn k_sym(sock: &Path, name: &str) -> u64 {
    let mut c = common::rsp::Client::new(sock);
    let cmd: String = format!("sym {name}")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = c.request(format!("qRcmd,{cmd}").as_bytes());
    let t: Vec<u8> = (0..r.len() / 2)
        .filter_map(|i| u8::from_str_radix(std::str::from_utf8(&r[2 * i..2 * i + 2]).ok()?, 16).ok())
        .collect();
    let t = String::from_utf8_lossy(&t).into_owned();
    hex(t
        .trim()
        .rsplit(' ')
        .next()
        .unwrap_or_else(|| panic!("monitor sym {name}: {t}")))
}

/// x86_64: `kmemd -k VMLINUX` and a bare `gdb -ex 'target remote'`: GDB loads the vmlinux
/// kmemd names, and every read the scripts make is right with no `symbol-file`/`add-symbol-file`.
#[test]
fn x86_64_scripts_and_rodata_with_no_typed_lines() {
    let Some((f, vmlinux, scripts)) = setup("x86_64-4l") else {
        return;
    };
    check_scripts(&f, &vmlinux, &scripts, true, "lx-x86");
}

/// x86_64 without `-k`: plain `gdb VMLINUX`; kmemd takes the image bounds from kallsyms (`_text`,
/// `_end`), and the same reads are right.
#[test]
fn x86_64_scripts_with_plain_gdb_vmlinux_without_k() {
    let Some((f, vmlinux, scripts)) = setup("x86_64-4l") else {
        return;
    };
    check_scripts(&f, &vmlinux, &scripts, false, "lx-x86-plain");
}

/// aarch64 with `kmemd -k VMLINUX` and a bare GDB: `$lx_current()` comes from kmemd's SP_EL0;
/// CPU 1's idle task (not on the task list) is its runqueue's curr, which needs the runqueues
/// symbol that only the vmlinux gives on Debian arm64 (kallsyms without data symbols).
#[test]
fn aarch64_scripts_with_k() {
    let Some((f, vmlinux, scripts)) = setup("aarch64") else {
        return;
    };
    check_scripts(&f, &vmlinux, &scripts, true, "lx-arm64-k");
}

/// Without `-k`, arm64 needs no typed line: plain `gdb-multiarch VMLINUX` reads .rodata and
/// per-CPU data right (one PT_LOAD: GDB moves every section by qOffsets), and kmemd leaves that
/// alone. (x86_64 without -k still needs the lines `monitor kaslr` prints: kmemd does not know
/// its sections then.)
#[test]
fn aarch64_plain_vmlinux_reads_right_without_k() {
    let Some((f, vmlinux, _)) = setup("aarch64") else {
        return;
    };
    let (mut k, sock) = serve_dump(&f.dir.join("vmcore.elf"), &[], "lx-arm64-plain");
    for (gname, gdb) in gdbs_for(&f.arch) {
        let ctx = format!("arm64 plain {gname}");
        let cmds: Vec<(&str, String)> = vec![
            ("banner", "x/s linux_banner".into()),
            ("banner-at", "p/x (unsigned long)&linux_banner".into()),
            (
                "rq1",
                "p ((struct rq *)((unsigned long)&runqueues + __per_cpu_offset[1]))->cpu".into(),
            ),
            ("thread1", "thread 1".into()),
            ("sp_el0", "p/x $SP_EL0".into()),
            ("init_task", "p/x (unsigned long)&init_task".into()),
            ("kaslr", "monitor kaslr".into()),
        ];
        let (a, all) = run_gdb(&gdb, Some(&vmlinux), &sock, &cmds);
        let get = |key: &str| answer(&a, key, &all);
        assert!(
            get("banner").contains(&format!("<linux_banner>:\t\"{}", f.banner)),
            "{ctx}: x/s linux_banner: {all}"
        );
        // Where the dump really has it: the runtime _stext (manifest) plus linux_banner's
        // distance from _stext in the vmlinux.
        let at = hex(value(get("banner-at")));
        let stext = f.ksym("_stext").expect("_stext in the manifest");
        assert_eq!(
            at.wrapping_sub(stext),
            nm_address(&vmlinux, "linux_banner") - nm_address(&vmlinux, "_stext"),
            "{ctx}: &linux_banner"
        );
        assert_eq!(value(get("rq1")), "1", "{ctx}: {all}");
        // Thread 1 is CPU 0, idle: its task is init_task (swapper/0).
        let init = hex(value(get("init_task")));
        assert_ne!(init, 0, "{ctx}");
        assert_eq!(hex(value(get("sp_el0"))), init, "{ctx}: SP_EL0 of CPU 0: {all}");
        assert!(
            !all.contains("kmemd serves reads"),
            "{ctx}: no alias on arm64: {all}"
        );
        assert!(k.alive(), "{ctx}: server died: {}", k.log_text());
    }
}
