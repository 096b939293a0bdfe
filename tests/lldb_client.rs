//! LLDB as a second client (issue 20 item 8): Debian's `lldb` (14) with `gdb-remote` on the
//! dump fixtures, without a symbol file (LLDB 14 hangs unwinding Debian's debug vmlinux, see
//! README). What it must show: threads with names, the registers the dump holds (those it does
//! not hold as unavailable, not as 0xcc bytes), memory, and readable `monitor` output.
//! Oracles: the fixture's manifest (QEMU's own registers of CPU 0, the linux_banner memsave's
//! address, the guest's task pids) and oracle/linux_banner.bin.
//! Skipped outside CI when the fixtures or lldb are missing.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// Runs `lldb -b` connected to `port`, then `cmds`; returns everything it printed.
fn lldb(port: u16, cmds: &[String]) -> String {
    let mut c = Command::new("timeout");
    c.args(["300", "lldb", "-b", "--no-lldbinit"]);
    c.args(["-o", &format!("gdb-remote 127.0.0.1:{port}")]);
    for cmd in cmds {
        c.args(["-o", cmd]);
    }
    // Debian 12's lldb lacks its Python helpers on the default path (README); gdb-remote works
    // either way, this only silences the import error.
    c.env("PYTHONPATH", "/usr/lib/llvm-14/lib/python3.11/dist-packages");
    c.stdin(std::process::Stdio::null());
    text(&c.output().expect("run lldb"))
}

fn have_lldb() -> bool {
    let ok = Command::new("lldb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "lldb is not installed: `make deps` installs it");
        eprintln!("SKIP: no lldb (make deps)");
    }
    ok
}

#[test]
fn lldb_reads_a_dump_with_thread_names_registers_memory_and_monitor() {
    let Some(dirs) = fixture_dirs() else { return };
    if !have_lldb() {
        return;
    }
    for dir in dirs.iter().filter(|d| !d.ends_with("x86_64-5l")) {
        let m = manifest(dir);
        let field = |k: &str| {
            m.iter()
                .find(|w| w.first().is_some_and(|f| f == k))
                .map(|w| w[1].clone())
        };
        let arch = field("arch").expect("arch");
        let (pc_name, sp_name, fp_unavailable) = if arch == "x86_64" {
            ("rip", "rsp", "xmm0")
        } else {
            ("pc", "sp", "v0")
        };
        let reg0 = |name: &str| {
            m.iter()
                .find(|w| w.len() == 4 && w[0] == "reg" && w[1] == "0" && w[2] == name)
                .map(|w| hex(&w[3]))
                .unwrap_or_else(|| panic!("{}: no reg 0 {name}", dir.display()))
        };
        let banner_at = m
            .iter()
            .find(|w| w.len() == 5 && w[0] == "oracle" && w[4].ends_with("linux_banner.bin"))
            .map(|w| hex(&w[2]))
            .expect("linux_banner oracle");
        let oracle = std::fs::read(dir.join("oracle/linux_banner.bin")).expect("oracle");
        let sleep: Vec<i32> = m
            .iter()
            .filter(|w| w.len() == 2 && w[0] == "sleep_pid")
            .map(|w| w[1].parse().expect("pid"))
            .collect();
        assert!(!sleep.is_empty(), "{}: no sleep_pid", dir.display());

        let port = free_port();
        let name = format!("lldb-{}", dir.file_name().unwrap().to_string_lossy());
        let sdir = scratch(&name);
        let addr = format!("127.0.0.1:{port}");
        let dump = dir.join("vmcore.elf");
        let mut k = Kmemd::spawn(
            &["-c", dump.to_str().unwrap(), "-s", &addr],
            sdir.join("kmemd.log"),
        );
        k.wait_tcp(port);
        let t = lldb(
            port,
            &[
                "thread list".into(),
                "thread select 1".into(),
                format!("register read {pc_name} {sp_name}"),
                format!("register read {fp_unavailable}"),
                format!("memory read {banner_at:#x} -c 16"),
                "process plugin packet monitor version".into(),
                "process plugin packet monitor no-such-command".into(),
            ],
        );
        let ctx = format!("{name}: {}", Path::new(&dump).display());
        // Names: CPU threads and tasks (a `sleep` of the fixture's, by its pid-based tid).
        assert!(
            t.contains("tid = 0x0001,") && t.contains("name = 'CPU 0'"),
            "{ctx}:\n{t}"
        );
        assert!(t.contains("name = 'CPU 1'"), "{ctx}:\n{t}");
        for p in &sleep {
            let row = t
                .lines()
                .find(|l| l.contains(&format!("tid = {:#x},", 0x10000 + p)))
                .unwrap_or_else(|| panic!("{ctx}: no thread for pid {p}:\n{t}"));
            assert!(row.contains("name = 'sleep'"), "{ctx}: {row}");
        }
        // CPU 0's registers are QEMU's (the manifest records them from its monitor).
        for (r, want) in [(pc_name, reg0(pc_name)), (sp_name, reg0(sp_name))] {
            let line = t
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{r} = ")))
                .unwrap_or_else(|| panic!("{ctx}: no {r} in:\n{t}"));
            assert!(
                line.contains(&format!("{want:#018x}")),
                "{ctx}: {line} (want {want:#x})"
            );
        }
        let fp = t
            .lines()
            .find(|l| l.trim_start().starts_with(fp_unavailable))
            .unwrap_or_else(|| panic!("{ctx}: no {fp_unavailable}:\n{t}"));
        assert!(fp.contains("unavailable") && !fp.contains("0xcc"), "{ctx}: {fp}");
        // Memory: the first 16 bytes of QEMU's memsave of linux_banner, as LLDB's hex dump.
        let bytes: Vec<String> = oracle[..16].iter().map(|b| format!("{b:02x}")).collect();
        assert!(
            t.contains(&format!("{banner_at:#x}: {}", bytes.join(" "))),
            "{ctx}: memory read:\n{t}"
        );
        // Monitor output decoded, not hex; an unknown command is an error.
        assert!(t.contains("kmemd ") && t.contains("serving: "), "{ctx}:\n{t}");
        assert!(
            t.contains("unknown monitor command 'no-such-command'"),
            "{ctx}:\n{t}"
        );
        assert!(t.contains("response: E01"), "{ctx}:\n{t}");
        assert!(k.alive(), "{ctx}: kmemd died: {}", k.log_text());
    }
}
