//! LLDB as a second client on a live kernel (issue 20 item 8): Debian's `lldb` (14), connected by
//! `process connect --plugin gdb-remote unix-connect://` to kmemd serving a serial line of each
//! lab guest, with no symbol file (LLDB 14 hangs unwinding Debian's debug vmlinux, see README).
//! Oracles are the guest's own: its pids and comms, /proc/version, /proc/kallsyms, and Debian's
//! debug vmlinux for the link-time address of linux_banner.

use crate::common::{have_lldb, lldb_at, nm_address};
use crate::guest::{guest, Guest, ARCHES};
use crate::live::Served;
use std::time::Duration;

/// `lldb -b` with `cmds` against a fresh kmemd session on a serial line of `g`.
fn session(g: &Guest, cmds: &[String]) -> (String, String) {
    let served = Served::start(g, "");
    let url = format!("unix-connect://{}", served.port.host.display());
    let out = lldb_at(&url, cmds);
    let log = served.stop(g);
    (out, log)
}

/// The kallsyms names of the function that contains `addr`: those of the highest address at or
/// below it (several, where a section marker shares a function's address: arm64's
/// __sched_text_start is __switch_to).
fn functions_at(g: &Guest, addr: u64) -> Vec<String> {
    let syms = g.kallsyms();
    let start = syms.values().copied().filter(|&a| a <= addr).max();
    let mut names: Vec<String> = syms
        .iter()
        .filter(|(_, &a)| Some(a) == start)
        .map(|(n, _)| n.clone())
        .collect();
    names.sort();
    names
}

/// The bytes of LLDB's `memory read` rows (`0xADDR: xx xx ...  text`), in order.
fn memory_bytes(out: &str) -> Vec<u8> {
    out.lines()
        .filter(|l| l.starts_with("0x") && l.contains(": "))
        .flat_map(|l| {
            l.split_once(": ")
                .map(|(_, rest)| rest)
                .unwrap_or("")
                .split_whitespace()
                .take(16)
                .map_while(|w| u8::from_str_radix(w, 16).ok().filter(|_| w.len() == 2))
                .collect::<Vec<u8>>()
        })
        .collect()
}

/// Threads with names (a `sleep` the guest started, by its pid-based thread id), its registers
/// where the scheduler saved them, `memory read` of linux_banner equal to /proc/version, and
/// `monitor ps` as text, live on both guests.
#[test]
fn lldb_reads_the_running_kernel() {
    if !have_lldb() {
        return;
    }
    for arch in ARCHES {
        let g = guest(arch);
        let what = format!("{} lldb", arch.name());
        let sleeper = g.spawn("exec sleep 1000");
        let banner = g.sh("cat /proc/version");
        // linux_banner's run-time address: the debug vmlinux's, slid by KASLR as the guest's own
        // kallsyms shows __schedule (arm64's kallsyms has no data symbols to ask directly).
        let vmlinux = g.vmlinux();
        let slide = g
            .ksym("__schedule")
            .wrapping_sub(nm_address(&vmlinux, "__schedule"));
        let banner_at = nm_address(&vmlinux, "linux_banner").wrapping_add(slide);
        let tid = 0x1_0000 + u64::from(sleeper.pid);
        let (pc, sp) = if arch == crate::guest::Arch::X86_64 {
            ("rip", "rsp")
        } else {
            ("pc", "sp")
        };
        // One session: thread indexes shift as tasks come and go, so the sleeper's thread is
        // selected by its id through LLDB's Python API (Debian's lldb has it with PYTHONPATH).
        let (t, log) = session(
            g,
            &[
                "thread list".into(),
                format!("memory read {banner_at:#x} -c 64"),
                "process plugin packet monitor ps".into(),
                format!("script lldb.process.SetSelectedThreadByID({tid:#x})"),
                format!("register read {pc} {sp}"),
            ],
        );
        let row = t
            .lines()
            .find(|l| l.contains(&format!("tid = {tid:#x},")))
            .unwrap_or_else(|| panic!("{what}: no thread for pid {}:\n{t}\nkmemd:\n{log}", sleeper.pid));
        assert!(row.contains("name = 'sleep'"), "{what}: {row}");
        let mem = memory_bytes(&t);
        assert_eq!(
            mem,
            banner.as_bytes()[..64],
            "{what}: memory read of linux_banner at {banner_at:#x}:\n{t}"
        );
        // monitor output decoded as text: the sleeper's row names it.
        assert!(
            t.lines().any(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                w.contains(&sleeper.pid.to_string().as_str()) && w.contains(&"sleep")
            }),
            "{what}: monitor ps has no row for the sleep pid {}:\n{t}",
            sleeper.pid
        );
        let reg = |name: &str| -> u64 {
            t.lines()
                .find_map(|l| l.trim_start().strip_prefix(&format!("{name} = ")))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
                .unwrap_or_else(|| panic!("{what}: no {name}:\n{t}\nkmemd:\n{log}"))
        };
        // The registers read are the selected sleeper's: its pc is the one its thread list row
        // shows (`tid = T, PC, name = ...`).
        let row_pc = row
            .split(", ")
            .nth(1)
            .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .unwrap_or_else(|| panic!("{what}: no pc in {row}"));
        assert_eq!(reg(pc), row_pc, "{what}: {row}\n{t}");
        // A sleeping task resumes where the scheduler switched away from it.
        let at = functions_at(g, reg(pc));
        assert!(
            at.iter()
                .any(|f| ["__schedule", "__switch_to", "__switch_to_asm"].contains(&f.as_str())),
            "{what}: the sleep task's {pc} {:#x} is in {at:?}, not in the scheduler:\n{t}",
            reg(pc)
        );
        assert!(
            reg(sp) >> 48 == 0xffff,
            "{what}: the sleep task's {sp} {:#x} is no kernel address:\n{t}",
            reg(sp)
        );
        sleeper.signal(9);
        let _ = sleeper.wait(Duration::from_secs(30));
    }
}
