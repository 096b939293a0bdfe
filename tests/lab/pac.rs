//! arm64 pointer authentication (issue 20 item 7): Debian's arm64 kernel signs every return
//! address it saves on the stack when the CPU has PAC. GDB strips them only if the target gives it
//! the aarch64 pauth feature and the kernel's mask; without that, `bt` stops at the first signed
//! address ("previous frame identical" or garbage frames). Tested live and on a dump of a guest
//! whose CPU has PAC, with GDB 18.
//!
//! gdb-multiarch (Debian's GDB 13.1) is not tested here: it strips a PAC by clearing the mask's
//! bits (`addr & ~cmask`), which turns a kernel address into a user one; newer GDBs sign-extend
//! from bit 55. The README says so.

use crate::common::{gdb_batch_command, gdbs, scratch, serve_dump};
use crate::guest::{pac_guest, Guest};
use crate::live::{Seen, Served};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Runs inside GDB: the backtrace of the task with pid %(pid)s, the mask GDB got, and the raw
/// return address in the first frame record next to the address GDB unwound to.
const SCRIPT: &str = r#"
import gdb, re
def kv(k, v):
    print("KV %s %s" % (k, v))
gdb.execute("set remotetimeout 120")
gdb.execute("target remote %(target)s")
threads = gdb.execute("info threads", to_string=True)
m = re.search(r"^\*?\s*(\d+)\s+.*pid %(pid)s ", threads, re.M)
if not m:
    kv("error", "no thread for pid %(pid)s: " + threads.replace("\n", " | "))
else:
    gdb.execute("thread " + m.group(1))
    for l in gdb.execute("bt 40", to_string=True).splitlines():
        kv("bt", l)
    kv("cmask", "0x%x" % (int(gdb.parse_and_eval("$pauth_cmask")) & (2**64 - 1)))
    # Frame 0 is where the task's saved context resumes (__switch_to); x29 points at its frame
    # record: [x29] the caller's x29, [x29 + 8] the return address its prologue signed (paciasp).
    gdb.execute("frame 0")
    fp = int(gdb.parse_and_eval("$x29")) & (2**64 - 1)
    raw = int.from_bytes(gdb.selected_inferior().read_memory(fp + 8, 8).tobytes(), "little")
    kv("raw_lr", "0x%x" % raw)
    gdb.execute("frame 1")
    kv("pc1", "0x%x" % (int(gdb.parse_and_eval("$pc")) & (2**64 - 1)))
gdb.execute("detach")
kv("done", "yes")
"#;

/// A hex value the script printed.
fn hex(seen: &Seen, k: &str) -> u64 {
    u64::from_str_radix(seen.get(k).trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("{k} is not hex:\n{}", seen.text))
}

fn run_gdb(gdb: &Path, vmlinux: &Path, target: &Path, pid: u32, dir: &Path, name: &str) -> Seen {
    let script = dir.join(format!("pac-{name}.py"));
    let body = SCRIPT
        .replace("%(target)s", &target.display().to_string())
        .replace("%(pid)s", &pid.to_string());
    std::fs::write(&script, body).unwrap();
    let out = gdb_batch_command(gdb, 900)
        .arg(vmlinux)
        .arg("-x")
        .arg(&script)
        .output()
        .expect("run gdb");
    Seen::from_output(&out)
}

/// What a right backtrace of the sleeping task through signed return addresses looks like.
fn check(what: &str, seen: &Seen, log: &str) {
    assert_eq!(
        seen.get("done"),
        "yes",
        "{what}: GDB did not finish:\n{}\nkmemd:\n{log}",
        seen.text
    );
    assert!(
        seen.all("error").is_empty(),
        "{what}: {:?}\nkmemd:\n{log}",
        seen.all("error")
    );
    let cmask = hex(seen, "cmask");
    let raw = hex(seen, "raw_lr");
    let pc1 = hex(seen, "pc1");
    // The premise: the kernel really signed the saved return address (else this test proves
    // nothing), and GDB's mask is exactly what strips it back to the address it unwound to.
    assert_ne!(
        raw, pc1,
        "{what}: the saved return address {raw:#x} is not signed: is PAC on?"
    );
    assert!(
        cmask != 0 && raw | cmask == pc1,
        "{what}: the signed return address {raw:#x} with the mask {cmask:#x} set is not frame 1's pc {pc1:#x}"
    );
    let bt = seen.all("bt");
    let frames: Vec<&str> = bt.iter().copied().filter(|l| l.starts_with('#')).collect();
    let all = bt.join("\n");
    // GDB ends past the EL0 entry frame, where a read beyond the stack's top fails ("Backtrace
    // stopped: Cannot access memory"); a PAC it could not strip ends it at the first signed frame.
    assert!(
        !all.contains("previous frame identical"),
        "{what}: the backtrace stopped at a signed return address:\n{all}"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.contains("__schedule") && f.contains("kernel/sched/core.c:")),
        "{what}: the sleep task's stack has __schedule with its source line:\n{all}"
    );
    assert!(
        frames.iter().any(|f| f.contains("nanosleep")),
        "{what}: the sleep task's stack reaches the nanosleep call:\n{all}"
    );
    assert!(
        frames.iter().any(|f| f.contains(" el0t_64_sync ")),
        "{what}: the sleep task's stack reaches the EL0 entry:\n{all}"
    );
    // Every frame that prints an address prints a kernel one, not a signed or user-looking one.
    for f in &frames {
        if let Some(a) = f.split_whitespace().nth(1).filter(|a| a.starts_with("0x")) {
            assert!(
                a.starts_with("0xffff"),
                "{what}: frame address {a} is not a kernel address:\n{all}"
            );
        }
    }
}

/// The debug vmlinux of the PAC guest, after checking that its CPU has pointer authentication.
fn pac_vmlinux(g: &Guest) -> PathBuf {
    let cpuinfo = g.sh("cat /proc/cpuinfo");
    assert!(
        cpuinfo.contains(" paca") && cpuinfo.contains(" pacg"),
        "the PAC guest's CPU has no pointer authentication:\n{cpuinfo}"
    );
    g.vmlinux()
}

/// `bt` of a sleeping task on a PAC kernel, live through kmemd on a serial line and on a QEMU ELF
/// dump of the same guest served by kmemd -c on the host: GDB 18 unwinds through the signed
/// return addresses to the EL0 entry, with kernel addresses and source lines.
#[test]
fn gdb_unwinds_pac_signed_stacks_live_and_on_a_dump() {
    let g = pac_guest();
    let vmlinux = pac_vmlinux(g);
    let gdb18: Vec<(String, PathBuf)> = gdbs().into_iter().filter(|(n, _)| n == "gdb18").collect();
    assert!(
        !gdb18.is_empty(),
        "GDB 18 is needed: Debian's gdb-multiarch 13.1 cannot strip kernel PACs (see the README)"
    );
    let dir = scratch("lab-pac");
    let sleeper = g.spawn("exec sleep 1000");
    for (name, gdb) in &gdb18 {
        let served = Served::start(g, "");
        let seen = run_gdb(
            gdb,
            &vmlinux,
            &served.port.host,
            sleeper.pid,
            &dir,
            &format!("live-{name}"),
        );
        let log = served.stop(g);
        check(&format!("live {name}"), &seen, &log);
    }
    let elf = dir.join("pac.elf");
    g.dump_elf(&elf);
    let (k, sock) = serve_dump(&elf, &[], "lab-pac-dump");
    for (name, gdb) in &gdb18 {
        let seen = run_gdb(gdb, &vmlinux, &sock, sleeper.pid, &dir, &format!("dump-{name}"));
        check(&format!("dump {name}"), &seen, &k.log_text());
    }
    drop(k);
    let _ = std::fs::remove_file(&elf);
    sleeper.signal(9);
    let _ = sleeper.wait(Duration::from_secs(30));
}
