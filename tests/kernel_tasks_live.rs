//! Kernel awareness on the running kernel through real GDB: a process the test starts shows up
//! as a thread (pid and comm) with switch-frame registers, `monitor dmesg` holds a line the test
//! wrote to /dev/kmsg, `monitor lsmod` matches /sys/module. Needs root (BPF); in CI it must run.

mod common;

use common::*;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// A child running `sleep` under a name of our own (comm is the executable's file name).
struct Sleeper(std::process::Child);

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper(dir: &Path) -> Sleeper {
    let exe = dir.join("kmemd-sleeper");
    std::fs::copy("/bin/sleep", &exe).expect("copy /bin/sleep");
    let child = Command::new(&exe)
        .arg("300")
        .stdin(Stdio::null())
        .spawn()
        .expect("start the sleeper");
    // Let it reach its nanosleep (it then sleeps in S state inside __schedule).
    std::thread::sleep(std::time::Duration::from_millis(300));
    Sleeper(child)
}

fn sysfs_modules() -> Vec<(String, Vec<(String, u64)>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/module").expect("/sys/module").flatten() {
        let Ok(secs) = std::fs::read_dir(e.path().join("sections")) else {
            continue;
        };
        let s = secs
            .flatten()
            .filter_map(|s| {
                let a = std::fs::read_to_string(s.path()).ok()?;
                Some((
                    s.file_name().to_string_lossy().into_owned(),
                    u64::from_str_radix(a.trim().trim_start_matches("0x"), 16).ok()?,
                ))
            })
            .collect();
        out.push((e.file_name().to_string_lossy().into_owned(), s));
    }
    out
}

#[test]
fn live_threads_dmesg_lsmod_through_gdb() {
    if !require_root("live_threads_dmesg_lsmod_through_gdb") {
        return;
    }
    let dir = scratch("tasks-live");
    let s = sleeper(&dir);
    let pid = s.0.id();
    let marker = format!(
        "kmemd-tasks-live-marker {pid} {:x}",
        random_bytes(8).iter().fold(0u64, |a, &b| a << 8 | u64::from(b))
    );
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/kmsg")
        .and_then(|mut f| f.write_all(marker.as_bytes()))
        .expect("write to /dev/kmsg");

    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    for (name, gdb) in gdbs() {
        let cmds = vec![
            "info threads".to_string(),
            format!("thread find pid {pid} "),
            "monitor dmesg".to_string(),
            "monitor lsmod".to_string(),
        ];
        let o = gdb_batch(&gdb, sock.to_str().unwrap(), &cmds);
        let t = text(&o);
        assert!(
            t.contains("\"kmemd-sleeper\""),
            "{name}: info threads lacks the sleeper: {t}"
        );
        assert!(t.contains(&format!("pid {pid} kmemd-sleeper (S")), "{name}: {t}");
        assert!(t.contains(&marker), "{name}: monitor dmesg lacks '{marker}': {t}");
        let mods = sysfs_modules();
        if mods.is_empty() {
            assert!(t.contains("(no modules loaded)"), "{name}: {t}");
        }
        for (m, secs) in &mods {
            assert!(
                t.contains(&format!("add-symbol-file {m}.ko ")),
                "{name}: {m}: {t}"
            );
            for (sec, a) in secs {
                if sec == ".data" {
                    assert!(t.contains(&format!("-s .data {a:#x}")), "{name}: {m} .data: {t}");
                }
            }
        }
        // The sleeper's registers come from its switch frame: GDB's PC is in __schedule.
        // GDB numbers threads per session in the order it meets them, and tasks come and go
        // between sessions, so the sleeper is selected by its thread id (kmemd gives tasks
        // 0x10000 + pid), not by a number from the session above.
        let tid = 0x10000 + u64::from(pid);
        assert!(
            t.contains(&format!("Thread {tid} \"kmemd-sleeper\"")),
            "{name}: the sleeper's thread id: {t}"
        );
        let pc = if cfg!(target_arch = "aarch64") {
            "pc"
        } else {
            "rip"
        };
        let o = gdb_batch(
            &gdb,
            sock.to_str().unwrap(),
            &[
                format!(
                    "python [t.switch() for t in gdb.selected_inferior().threads() if t.ptid[1] == {tid}]"
                ),
                format!("eval \"monitor sym %#lx\", ${pc}"),
            ],
        );
        let t = text(&o);
        let want = if cfg!(target_arch = "aarch64") {
            "= __switch_to+"
        } else {
            "= __schedule+"
        };
        assert!(
            t.contains(want),
            "{name}: the sleeper's PC is not in the switch path: {t}"
        );
        assert!(k.alive(), "{name}: server died: {}", k.log_text());
    }
}
