//! What real GDBs do with kmemd's KASLR slide, on a vmlinux-shaped ELF built at test time from
//! tests/data/kaslr/ (sections .text, .rodata, .data, .data..percpu at 0, .init.text, .bss in four
//! PT_LOADs, as arch/x86/kernel/vmlinux.lds.S lays out Linux 6.1). Its `_text` is linked 16 MiB
//! below where this host's kernel runs, so kmemd sees a nonzero slide without KASLR.
//!
//! Asserted per GDB (Debian's gdb 13 and GDB 18):
//! - `gdb vmlinux` + `target remote` (kmemd's qOffsets) relocates .text, .data and .bss, and leaves
//!   .rodata, .init.text and the zero-based .data..percpu at their link-time addresses;
//! - the commands that `monitor kaslr` prints relocate every section but .data..percpu, after
//!   `gdb vmlinux` or after GDB loaded the vmlinux kmemd names (qXfer:exec-file);
//! - the two shortcuts that look right are not: `add-symbol-file` without dropping the main symbol
//!   file first, and `file vmlinux -o S` (moves per-CPU symbols).
//!
//! Needs root (kmemd reads /proc/kallsyms and loads BPF) and binutils (`as`, `ld`, `nm`).

#![cfg(target_arch = "x86_64")]

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Symbols of the synthetic vmlinux, one per section kind.
const TEXT: &str = "start_kernel";
const RODATA: &str = "linux_banner";
const DATA: &str = "jiffies";
const PERCPU: &str = "current_task";
const INIT: &str = "x86_64_start_kernel";
const BSS: &str = "init_stack_end";
const SYMS: [&str; 6] = [TEXT, RODATA, DATA, PERCPU, INIT, BSS];

fn run(cmd: &mut Command, what: &str) {
    let o = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (apt-get install binutils)"));
    assert!(o.status.success(), "{what} failed:\n{}", text(&o));
}

/// Assembles and links the synthetic vmlinux into `dir`.
fn build_vmlinux(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kaslr");
    let obj = dir.join("vmlinux.o");
    let out = dir.join("vmlinux");
    run(
        Command::new("as")
            .arg("--64")
            .arg("-o")
            .arg(&obj)
            .arg(src.join("vmlinux.S")),
        "as",
    );
    run(
        Command::new("ld")
            .args([
                "-m",
                "elf_x86_64",
                "-z",
                "max-page-size=0x1000",
                "--no-warn-rwx-segments",
                "-T",
            ])
            .arg(src.join("vmlinux.lds"))
            .arg("-o")
            .arg(&out)
            .arg(&obj),
        "ld",
    );
    out
}

/// Link-time symbol addresses as binutils' `nm` reads them (independent of kmemd and GDB).
fn nm(vmlinux: &Path) -> BTreeMap<String, u64> {
    let o = Command::new("nm").arg(vmlinux).output().expect("nm (binutils)");
    assert!(o.status.success(), "nm: {}", text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let addr = u64::from_str_radix(f.next()?, 16).ok()?;
            let _kind = f.next()?;
            Some((f.next()?.to_string(), addr))
        })
        .collect()
}

fn runtime_text() -> u64 {
    let k = std::fs::read_to_string("/proc/kallsyms").expect("read /proc/kallsyms");
    k.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[2] == "_text").then(|| u64::from_str_radix(f[0], 16).ok())?
        })
        .filter(|&a| a != 0)
        .expect("/proc/kallsyms shows _text with its address (root, kptr_restrict < 2)")
}

/// Runs GDB in batch mode with `args` (files and -ex commands), then prints each symbol's
/// address; returns what GDB said and the addresses it printed.
fn gdb_addrs(gdb: &Path, args: &[String]) -> (String, BTreeMap<String, u64>) {
    let mut c = gdb_batch_command(gdb, 120);
    c.args(args);
    for s in SYMS {
        // `(long)&sym` works on ELF symbols without debug info in gdb 13 and 18.
        c.args(["-ex", &format!("printf \"@@{s}=%#lx\\n\", (long)&{s}")]);
    }
    let o = c.output().expect("run gdb");
    let t = text(&o);
    let addrs = t
        .lines()
        .filter_map(|l| {
            let (name, v) = l.strip_prefix("@@")?.split_once('=')?;
            Some((
                name.to_string(),
                u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()?,
            ))
        })
        .collect();
    (t, addrs)
}

fn ex(cmds: &[&str]) -> Vec<String> {
    cmds.iter()
        .flat_map(|c| ["-ex".to_string(), c.to_string()])
        .collect()
}

/// Synthetic vmlinux, kmemd serving it with `-k`, the link-time symbols and the slide.
struct Setup {
    _dir: PathBuf,
    vmlinux: PathBuf,
    sock: String,
    link: BTreeMap<String, u64>,
    slide: u64,
    _kmemd: Kmemd,
}

fn setup(name: &str) -> Setup {
    let dir = scratch(name);
    let vmlinux = build_vmlinux(&dir);
    let link = nm(&vmlinux);
    for s in SYMS.iter().chain(&["_text"]) {
        assert!(link.contains_key(*s), "synthetic vmlinux lacks {s}: {link:?}");
    }
    assert_eq!(link[PERCPU] >> 32, 0, "per-CPU symbols are linked zero-based");
    let slide = runtime_text().wrapping_sub(link["_text"]);
    assert_ne!(
        slide, 0,
        "the synthetic _text must differ from the running kernel's"
    );
    let sock = dir.join("gdb.sock");
    // The synthetic vmlinux is not the running kernel's (its banner says 0.0.0-kmemd-synthetic):
    // kmemd refuses it unless told to take it anyway.
    let mut kmemd = Kmemd::spawn(
        &[
            "-k",
            vmlinux.to_str().unwrap(),
            "--force-vmlinux",
            "-s",
            sock.to_str().unwrap(),
        ],
        dir.join("kmemd.log"),
    );
    kmemd.wait_unix(&sock);
    Setup {
        sock: sock.to_str().unwrap().to_string(),
        _dir: dir,
        vmlinux,
        link,
        slide,
        _kmemd: kmemd,
    }
}

impl Setup {
    /// Asserts each symbol's address: link-time plus the slide for those in `moved`, link-time
    /// for the others.
    fn check(&self, what: &str, out: &str, got: &BTreeMap<String, u64>, moved: &[&str]) {
        for s in SYMS {
            let want = if moved.contains(&s) {
                self.link[s].wrapping_add(self.slide)
            } else {
                self.link[s]
            };
            let shift = if moved.contains(&s) {
                "relocated"
            } else {
                "at its link-time address"
            };
            assert_eq!(
                got.get(s).copied(),
                Some(want),
                "{what}: {s} should be {shift} ({want:#x}), slide {:#x}; GDB said:\n{out}",
                self.slide
            );
        }
    }

    fn gdb_vmlinux(&self) -> String {
        self.vmlinux.to_str().unwrap().to_string()
    }
}

#[test]
fn qoffsets_relocate_text_data_bss_but_not_rodata_init_or_percpu() {
    if !require_root("qoffsets_relocate_text_data_bss_but_not_rodata_init_or_percpu") {
        return;
    }
    let s = setup("qoffsets");
    for (name, gdb) in gdbs() {
        let mut args = vec![s.gdb_vmlinux()];
        args.extend(ex(&[&format!("target remote {}", s.sock)]));
        let (out, got) = gdb_addrs(&gdb, &args);
        s.check(
            &format!("{name}: gdb vmlinux + target remote"),
            &out,
            &got,
            &[TEXT, DATA, BSS],
        );
    }
}

/// The indented command lines that follow `run in GDB:` in `monitor kaslr` output.
fn printed_commands(kaslr: &str) -> Vec<String> {
    let mut lines = kaslr
        .lines()
        .skip_while(|l| !l.trim_end().ends_with("run in GDB:"));
    assert!(
        lines.next().is_some(),
        "monitor kaslr names no commands:\n{kaslr}"
    );
    lines
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_string())
        .collect()
}

#[test]
fn monitor_kaslr_commands_relocate_every_section_but_percpu() {
    if !require_root("monitor_kaslr_commands_relocate_every_section_but_percpu") {
        return;
    }
    let s = setup("monitor-kaslr");
    let everything_but_percpu = [TEXT, RODATA, DATA, INIT, BSS];
    for (name, gdb) in gdbs() {
        let o = gdb_batch(&gdb, &s.sock, &["monitor kaslr".into()]);
        let kaslr = text(&o);
        assert!(
            kaslr.contains(&format!("KASLR offset: {:#x} ", s.slide)),
            "{name}: monitor kaslr shows the slide {:#x}:\n{kaslr}",
            s.slide
        );
        let cmds = printed_commands(&kaslr);
        let add = cmds
            .iter()
            .find(|c| c.starts_with("add-symbol-file "))
            .unwrap_or_else(|| panic!("{name}: no add-symbol-file line in:\n{kaslr}"));

        // As a user does it: `gdb vmlinux`, `target remote`, then the printed commands.
        let mut args = vec![s.gdb_vmlinux()];
        args.extend(ex(&[&format!("target remote {}", s.sock)]));
        args.extend(ex(&cmds.iter().map(String::as_str).collect::<Vec<_>>()));
        let (out, got) = gdb_addrs(&gdb, &args);
        s.check(
            &format!("{name}: gdb vmlinux + target remote + {cmds:?}"),
            &out,
            &got,
            &everything_but_percpu,
        );

        // GDB given no file: kmemd -k names the vmlinux (qXfer:exec-file), GDB loads it as
        // `gdb vmlinux` would (relocating .text/.data/.bss), and the printed commands work the
        // same. (Symbols added before connecting do not survive that: GDB replaces them with the
        // exec file's, and gdb 13 may hit an internal error; README says to type the lines after
        // connecting.)
        let mut args = ex(&[&format!("target remote {}", s.sock)]);
        let (out, got) = gdb_addrs(&gdb, &args);
        s.check(
            &format!("{name}: no file + target remote (exec-file from kmemd)"),
            &out,
            &got,
            &[TEXT, DATA, BSS],
        );
        args.extend(ex(&cmds.iter().map(String::as_str).collect::<Vec<_>>()));
        let (out, got) = gdb_addrs(&gdb, &args);
        s.check(
            &format!("{name}: no file + target remote + {cmds:?}"),
            &out,
            &got,
            &everything_but_percpu,
        );

        // Why `symbol-file` comes first: without it the symbols of `gdb vmlinux` (relocated by
        // qOffsets only) win every lookup over the add-symbol-file copy.
        let mut args = vec![s.gdb_vmlinux()];
        args.extend(ex(&[&format!("target remote {}", s.sock), add.as_str()]));
        let (out, got) = gdb_addrs(&gdb, &args);
        s.check(
            &format!("{name}: gdb vmlinux + target remote + {add:?} alone"),
            &out,
            &got,
            &[TEXT, DATA, BSS],
        );

        // Why not `file vmlinux -o S`: it moves the zero-based per-CPU symbols too.
        let mut args = vec![s.gdb_vmlinux()];
        args.extend(ex(&[
            &format!("target remote {}", s.sock),
            &format!("file {} -o {:#x}", s.gdb_vmlinux(), s.slide),
        ]));
        let (out, got) = gdb_addrs(&gdb, &args);
        s.check(
            &format!("{name}: file vmlinux -o slide"),
            &out,
            &got,
            &[TEXT, RODATA, DATA, PERCPU, INIT, BSS],
        );
    }
}
