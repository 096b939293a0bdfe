//! The live kernel served to real GDBs over every transport. Bytes are planted at a kernel
//! address the test learns itself (a BPF array map value), then read back through GDB and
//! compared byte for byte. Needs root (BPF); in CI it must run.

mod common;

use common::*;
use kmemd::live::plant::Plant;
use std::path::Path;

const LEN: usize = 16 * 1024;

fn planted() -> (Plant, Vec<u8>) {
    let plant = Plant::new(LEN).expect("create the BPF map to plant bytes in");
    let data = random_bytes(LEN);
    plant.write(&data).expect("plant bytes");
    (plant, data)
}

/// `dump binary memory` through GDB; panics with GDB's output when it fails.
fn dump_through_gdb(gdb: &Path, target: &str, addr: u64, len: usize, dir: &Path) -> Vec<u8> {
    let out = dir.join("dump.bin");
    let _ = std::fs::remove_file(&out);
    let o = gdb_batch(
        gdb,
        target,
        &[format!(
            "dump binary memory {} {addr:#x} {:#x}",
            out.display(),
            addr + len as u64
        )],
    );
    std::fs::read(&out).unwrap_or_else(|e| panic!("{}: no dump ({e}):\n{}", gdb.display(), text(&o)))
}

fn assert_reads(target: &str, dir: &Path, server: Option<&mut Kmemd>) {
    let (plant, data) = planted();
    let addr = plant.kernel_addr();
    for (name, gdb) in gdbs() {
        let got = dump_through_gdb(&gdb, target, addr, LEN, dir);
        assert!(
            got == data,
            "{name} over {target}: read bytes differ from the planted ones"
        );
        // A user-half address is never kernel memory: GDB must say so, not show zeros.
        let o = gdb_batch(
            &gdb,
            target,
            &["x/4xb 0x1000".into(), "x/4xb 0xdead000000000000".into()],
        );
        let t = text(&o);
        assert!(
            t.contains("Cannot access memory at address 0x1000"),
            "{name}: {t}"
        );
        assert!(
            t.contains("Cannot access memory at address 0xdead000000000000"),
            "{name}: {t}"
        );
    }
    if let Some(s) = server {
        assert!(s.alive(), "server died:\n{}", s.log_text());
    }
}

#[test]
fn unix_socket_serves_planted_bytes_to_both_gdbs() {
    if !require_root("unix_socket_serves_planted_bytes_to_both_gdbs") {
        return;
    }
    let dir = scratch("unix");
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    assert_reads(sock.to_str().unwrap(), &dir, Some(&mut k));
}

#[test]
fn tcp_serves_planted_bytes_to_both_gdbs() {
    if !require_root("tcp_serves_planted_bytes_to_both_gdbs") {
        return;
    }
    let dir = scratch("tcp");
    let port = free_port();
    let mut k = Kmemd::spawn(&["-s", &format!(":{port}")], dir.join("kmemd.log"));
    k.wait_tcp(port);
    assert_reads(&format!("127.0.0.1:{port}"), &dir, Some(&mut k));
}

#[test]
fn stdio_pipe_serves_planted_bytes_to_both_gdbs() {
    if !require_root("stdio_pipe_serves_planted_bytes_to_both_gdbs") {
        return;
    }
    let dir = scratch("stdio");
    assert_reads(&format!("| {KMEMD} -s -"), &dir, None);
}

#[test]
fn serial_line_serves_planted_bytes_to_both_gdbs() {
    if !require_root("serial_line_serves_planted_bytes_to_both_gdbs") {
        return;
    }
    let dir = scratch("serial");
    let pty = PtyPair::new(&dir);
    let mut k = Kmemd::spawn(
        &["-s", pty.a.to_str().unwrap(), "-b", "115200"],
        dir.join("kmemd.log"),
    );
    k.wait_for("opening the serial line", || {
        std::fs::read_to_string(dir.join("kmemd.log"))
            .unwrap_or_default()
            .contains("serial line")
    });
    assert_reads(pty.b.to_str().unwrap(), &dir, Some(&mut k));
}

#[test]
fn sessions_follow_each_other_and_kill_or_crash_never_ends_the_server() {
    if !require_root("sessions_follow_each_other_and_kill_or_crash_never_ends_the_server") {
        return;
    }
    let dir = scratch("sessions");
    let sock = dir.join("gdb.sock");
    let target = sock.to_str().unwrap().to_string();
    let mut k = Kmemd::spawn(&["-s", &target], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    let (plant, data) = planted();
    let addr = plant.kernel_addr();
    let gdb = Path::new("gdb");
    // 1: GDB ends with `kill`.
    let o = gdb_batch(gdb, &target, &[format!("x/1xb {addr:#x}"), "kill".into()]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(k.alive(), "kill ended the server:\n{}", k.log_text());
    // 2: GDB is killed mid-session (a crash): the connection just drops.
    let mut child = std::process::Command::new("gdb")
        .args(["-nx", "-q", "-ex", &format!("target remote {target}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(k.alive(), "a crashed GDB ended the server:\n{}", k.log_text());
    // 3 and 4: two more sessions in a row read the right bytes (batch mode detaches at exit).
    for _ in 0..2 {
        assert_eq!(dump_through_gdb(gdb, &target, addr, LEN, &dir), data);
    }
    assert!(k.alive(), "{}", k.log_text());
}

#[test]
fn monitor_commands_and_threads_through_gdb() {
    if !require_root("monitor_commands_and_threads_through_gdb") {
        return;
    }
    let dir = scratch("monitor");
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    let cpus = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap()
        .matches("processor\t:")
        .count();
    for (name, gdb) in gdbs() {
        let o = gdb_batch(
            &gdb,
            sock.to_str().unwrap(),
            &[
                "monitor help".into(),
                "monitor version".into(),
                "monitor kaslr".into(),
                "info threads".into(),
            ],
        );
        let t = text(&o);
        assert!(t.contains("monitor kaslr"), "{name}: help lists kaslr: {t}");
        assert!(
            t.contains(&format!("kmemd {}", env!("CARGO_PKG_VERSION"))),
            "{name}: {t}"
        );
        // The offset itself, against this kernel's own _text (KASLR off: 0); `monitor help`
        // mentions offsets too, so only the line `monitor kaslr` starts with counts.
        let runtime_text = std::fs::read_to_string("/proc/kallsyms")
            .unwrap()
            .lines()
            .find(|l| l.ends_with(" _text"))
            .and_then(|l| u64::from_str_radix(l.split_whitespace().next()?, 16).ok())
            .expect("_text in /proc/kallsyms");
        let want = runtime_text.wrapping_sub(kmemd::arch::Arch::host().default_text_link_addr());
        assert!(
            t.lines()
                .any(|l| l.starts_with(&format!("KASLR offset: {want:#x} "))),
            "{name}: kaslr prints the offset {want:#x}: {t}"
        );
        for cpu in 0..cpus {
            assert!(
                t.contains(&format!("CPU {cpu}")),
                "{name}: info threads lacks CPU {cpu}: {t}"
            );
        }
    }
}
