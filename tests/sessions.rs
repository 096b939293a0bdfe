//! Several GDBs served at once by one kmemd (live kernel, root): real gdb 13 and GDB 18 sessions
//! side by side read bytes planted in the kernel; a slowloris client and one that never reads its
//! reply delay none of them and are cut off after `STALL_TIMEOUT`; a GDB idle at its prompt longer
//! than that is not; the GDB beyond `MAX_SESSIONS` is told why, in words GDB prints.

mod common;

use common::*;
use kmemd::live::plant::Plant;
use kmemd::rsp::framing::frame_into;
use kmemd::server::sessions::{MAX_SESSIONS, STALL_TIMEOUT, TOO_MANY_SESSIONS};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn planted(len: usize) -> (Plant, Vec<u8>) {
    let plant = Plant::new(len).expect("create the BPF map to plant bytes in");
    let data = random_bytes(len);
    plant.write(&data).expect("plant bytes");
    (plant, data)
}

fn packet(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame_into(payload, &mut v);
    v
}

/// A GDB driven through its stdin like a user at its prompt: it stays connected between
/// commands, for as long as the test likes.
struct Gdb {
    name: String,
    child: Child,
    stdin: ChildStdin,
    out: PathBuf,
    marks: usize,
}

impl Gdb {
    /// Starts `gdb` and connects it to `target`; panics with GDB's output if that fails.
    fn connect(name: &str, gdb: &Path, target: &str, dir: &Path) -> Gdb {
        let out = dir.join(format!("{name}-{}.out", std::process::id()));
        let out = unique(out);
        let f = File::create(&out).expect("gdb output file");
        let mut child = Command::new(gdb)
            .args(["-nx", "-q", "-ex", "set pagination off", "-ex", "set confirm off"])
            .stdin(Stdio::piped())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .expect("spawn gdb");
        let stdin = child.stdin.take().unwrap();
        let mut g = Gdb {
            name: name.to_string(),
            child,
            stdin,
            out,
            marks: 0,
        };
        let t = g.run(&format!("target remote {target}"), Duration::from_secs(60));
        assert!(
            t.contains("Remote debugging using") && !t.contains("Remote failure") && !t.contains("error"),
            "{name} did not connect to {target}: {t}"
        );
        g
    }

    /// Sends one command and waits until GDB has run it; returns what GDB printed for it.
    fn run(&mut self, cmd: &str, timeout: Duration) -> String {
        let from = self.output().len();
        let mark = self.send(cmd);
        self.wait(&mark, timeout)[from..].to_string()
    }

    /// Sends one command; returns the mark `wait` looks for.
    fn send(&mut self, cmd: &str) -> String {
        self.marks += 1;
        let mark = format!("@@mark-{}@@", self.marks);
        write!(self.stdin, "{cmd}\necho {mark}\\n\n").expect("write to gdb");
        self.stdin.flush().unwrap();
        mark
    }

    fn wait(&mut self, mark: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let t = self.output();
            if t.contains(mark) {
                return t;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("{} exited ({st}) before {mark}: {t}", self.name);
            }
            assert!(
                start.elapsed() < timeout,
                "{} did not get to {mark} in {timeout:?}: {t}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Gdb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path not used yet (several GDBs of one name in one test).
fn unique(p: PathBuf) -> PathBuf {
    let mut n = 0;
    loop {
        let c = p.with_extension(format!("{n}.out"));
        if !c.exists() {
            return c;
        }
        n += 1;
    }
}

/// The GDBs to run side by side: gdb 13 and GDB 18, or gdb 13 twice where GDB 18 is missing.
fn two_gdbs() -> [(String, PathBuf); 2] {
    let g = gdbs();
    let second = g
        .get(1)
        .cloned()
        .unwrap_or_else(|| ("gdb13-b".into(), g[0].1.clone()));
    [g[0].clone(), second]
}

fn dump_cmd(file: &Path, addr: u64, len: usize) -> String {
    format!(
        "dump binary memory {} {addr:#x} {:#x}",
        file.display(),
        addr + len as u64
    )
}

fn start_unix(dir: &Path) -> (Kmemd, String) {
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    (k, sock.to_str().unwrap().to_string())
}

#[test]
fn two_gdbs_at_once_both_read_the_planted_bytes() {
    if !require_root("two_gdbs_at_once_both_read_the_planted_bytes") {
        return;
    }
    const LEN: usize = 64 * 1024;
    let (plant, data) = planted(LEN);
    let addr = plant.kernel_addr();
    for transport in ["unix", "tcp"] {
        let dir = scratch(&format!("two-{transport}"));
        let (mut k, target) = if transport == "unix" {
            start_unix(&dir)
        } else {
            let port = free_port();
            let mut k = Kmemd::spawn(&["-s", &format!(":{port}")], dir.join("kmemd.log"));
            k.wait_tcp(port);
            (k, format!("127.0.0.1:{port}"))
        };
        let [(na, ga), (nb, gb)] = two_gdbs();
        // Both connected at once: with one session at a time the second never gets here.
        let mut a = Gdb::connect(&na, &ga, &target, &dir);
        let mut b = Gdb::connect(&nb, &gb, &target, &dir);
        for round in 0..4 {
            // Each GDB reads a different part, both in flight together.
            let (fa, fb) = (
                dir.join(format!("a{round}.bin")),
                dir.join(format!("b{round}.bin")),
            );
            let off = round * 4096;
            let ma = a.send(&dump_cmd(&fa, addr + off as u64, LEN - off));
            let mb = b.send(&dump_cmd(&fb, addr, LEN - off));
            a.wait(&ma, Duration::from_secs(60));
            b.wait(&mb, Duration::from_secs(60));
            let got_a = std::fs::read(&fa).unwrap_or_else(|e| panic!("{na}: no dump ({e}): {}", a.output()));
            let got_b = std::fs::read(&fb).unwrap_or_else(|e| panic!("{nb}: no dump ({e}): {}", b.output()));
            assert!(
                got_a == data[off..],
                "{na} over {transport}, round {round}: wrong bytes"
            );
            assert!(
                got_b == data[..LEN - off],
                "{nb} over {transport}, round {round}: wrong bytes"
            );
        }
        assert!(k.alive(), "{}", k.log_text());
        assert!(
            k.log_text().contains("(2 of at most 8 sessions)"),
            "{}",
            k.log_text()
        );
    }
}

#[test]
fn stalled_clients_never_delay_a_gdb_and_are_cut_off() {
    if !require_root("stalled_clients_never_delay_a_gdb_and_are_cut_off") {
        return;
    }
    let dir = scratch("stalled");
    let (small, small_data) = planted(16 * 1024);
    // 512 KiB: its `m` reply is 1 MiB of hex, far more than a socket buffers.
    let (big, _) = planted(512 * 1024);
    let (mut k, target) = start_unix(&dir);
    let sock = PathBuf::from(&target);
    let gdbs = gdbs();

    // A GDB that connects first and then sits at its prompt through everything below.
    let mut idle = Gdb::connect(&format!("{}-idle", gdbs[0].0), &gdbs[0].1, &target, &dir);

    // Never reads: asks for 1 MiB and leaves it there.
    let mut never = UnixStream::connect(&sock).unwrap();
    never
        .write_all(&packet(format!("m{:x},80000", big.kernel_addr()).as_bytes()))
        .unwrap();
    let never_asked = Instant::now();

    // Slowloris: one byte of a packet per second until the GDBs are done, then nothing more,
    // mid-packet.
    let slow = UnixStream::connect(&sock).unwrap();
    let gdbs_done = Arc::new(AtomicBool::new(false));
    let slowloris = {
        let mut s = slow.try_clone().unwrap();
        let done = gdbs_done.clone();
        std::thread::spawn(move || {
            // Long enough to outlast the GDBs' reads at one byte a second.
            let p = packet(format!("m{:0>64},10", 0).as_bytes());
            let mut sent = 0;
            // Until the GDBs are done, but at least 3 bytes and never the whole packet.
            let mut last = Instant::now();
            while sent < 3 || (!done.load(Ordering::SeqCst) && sent < p.len() - 1) {
                std::thread::sleep(Duration::from_secs(1));
                s.write_all(&p[sent..sent + 1]).expect("slowloris byte");
                last = Instant::now();
                sent += 1;
            }
            assert!(sent < p.len(), "the slowloris packet stays incomplete");
            last
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    for (name, gdb) in &gdbs {
        let out = dir.join(format!("{name}.bin"));
        let start = Instant::now();
        let o = gdb_batch(
            gdb,
            &target,
            &[dump_cmd(&out, small.kernel_addr(), small_data.len())],
        );
        let took = start.elapsed();
        let got = std::fs::read(&out).unwrap_or_else(|e| panic!("{name}: no dump ({e}): {}", text(&o)));
        assert!(got == small_data, "{name}: wrong bytes");
        // The causal fact: GDB was served while both bad clients still held their sessions.
        let log = k.log_text();
        assert!(
            !log.contains("cut off"),
            "{name} finished only after a cut-off:\n{log}"
        );
        assert!(
            !slowloris.is_finished(),
            "{name} finished only after the slowloris stopped"
        );
        eprintln!("{name}: read with both bad clients connected in {took:?}");
        assert!(
            took < Duration::from_secs(10),
            "{name} took {took:?} beside the bad clients"
        );
    }
    gdbs_done.store(true, Ordering::SeqCst);
    let last_slow_byte = slowloris.join().expect("slowloris thread");

    // Both are cut off after STALL_TIMEOUT: the slowloris counted from its last byte, the reader
    // from when its reply stopped moving (as soon as it was asked, since it never reads). The
    // log says when; reading the reader's socket now would move its reply and reset its clock.
    let limit = STALL_TIMEOUT + Duration::from_secs(15);
    let (mut slow_cut, mut never_cut) = (None, None);
    while (slow_cut.is_none() || never_cut.is_none()) && last_slow_byte.elapsed() < limit {
        let log = k.log_text();
        if slow_cut.is_none() && log.contains("cut off: half a packet saw no byte for 30 s") {
            slow_cut = Some(Instant::now());
        }
        if never_cut.is_none() && log.contains("cut off: GDB took no byte of a") {
            never_cut = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = k.log_text();
    let slow_after = slow_cut
        .unwrap_or_else(|| panic!("the slowloris was not cut off:\n{log}"))
        .duration_since(last_slow_byte);
    let never_after = never_cut
        .unwrap_or_else(|| panic!("the reader was not cut off:\n{log}"))
        .duration_since(never_asked);
    eprintln!("slowloris cut {slow_after:?} after its last byte, the reader {never_after:?} after asking");
    let early = STALL_TIMEOUT - Duration::from_secs(1);
    assert!(
        slow_after >= early && slow_after < limit,
        "slowloris cut after {slow_after:?}"
    );
    assert!(
        never_after >= early && never_after < limit,
        "reader cut after {never_after:?}"
    );
    // And their connections are closed: EOF after what was sent, the reply never complete.
    wait_eof(slow, Duration::from_secs(10));
    let mut got = Vec::new();
    never.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    never
        .read_to_end(&mut got)
        .expect("EOF on the reader's connection");
    assert!(
        got.len() < 2 * 512 * 1024,
        "the reader got its whole reply ({} bytes)",
        got.len()
    );

    // The GDB idle at its prompt all along (longer than STALL_TIMEOUT) still reads.
    let out = dir.join("idle.bin");
    let t = idle.run(
        &dump_cmd(&out, small.kernel_addr(), small_data.len()),
        Duration::from_secs(60),
    );
    let got = std::fs::read(&out).unwrap_or_else(|e| panic!("idle GDB: no dump ({e}): {t}"));
    assert!(got == small_data, "idle GDB: wrong bytes");
    assert!(k.alive(), "{}", k.log_text());
}

/// Waits for the peer to close `s`.
fn wait_eof(mut s: UnixStream, limit: Duration) {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return,
            Err(e) => panic!("kmemd did not close the stalled connection within {limit:?}: {e}"),
        }
    }
}

/// A memory figure of a process in KiB: "VmHWM" (peak resident) or "VmRSS".
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

#[test]
fn eight_idle_gdbs_cost_little_and_a_ninth_is_told_the_limit() {
    if !require_root("eight_idle_gdbs_cost_little_and_a_ninth_is_told_the_limit") {
        return;
    }
    let dir = scratch("ninth");
    let (plant, data) = planted(16 * 1024);
    let (mut k, target) = start_unix(&dir);
    let pid = k.child.id();
    let gdbs = gdbs();
    let mut held = Vec::new();
    let mut hwm = Vec::new();
    let mut rss_first = 0;
    for i in 0..MAX_SESSIONS {
        let (name, gdb) = &gdbs[i % gdbs.len()];
        held.push(Gdb::connect(&format!("{name}-{i}"), gdb, &target, &dir));
        hwm.push(status_kib(pid, "VmHWM"));
        if i == 0 {
            rss_first = status_kib(pid, "VmRSS");
        }
    }
    eprintln!(
        "kmemd VmHWM with 1..=8 idle GDB sessions (KiB): {hwm:?}; VmRSS: {rss_first} -> {} KiB",
        status_kib(pid, "VmRSS")
    );
    let per_session = (hwm[MAX_SESSIONS - 1] - hwm[0]) / (MAX_SESSIONS as u64 - 1);
    assert!(
        per_session < 1024,
        "each idle session costs {per_session} KiB of peak memory: {hwm:?}"
    );

    // The ninth is told, in words GDB prints, and kmemd logs it.
    for (name, gdb) in &gdbs {
        let o = gdb_batch(gdb, &target, &["x/1xb 0".into()]);
        let t = text(&o);
        assert!(
            t.contains("Remote failure reply") && t.contains(TOO_MANY_SESSIONS),
            "{name}: {t}"
        );
        assert!(t.contains("Remote connection closed"), "{name}: {t}");
    }
    let log = k.log_text();
    assert_eq!(
        log.matches("refused a GDB on the UNIX socket: already serving 8 sessions")
            .count(),
        gdbs.len(),
        "{log}"
    );
    // The eight were not disturbed, and once one leaves the next GDB is served.
    let out = dir.join("held.bin");
    held[3].run(
        &dump_cmd(&out, plant.kernel_addr(), data.len()),
        Duration::from_secs(60),
    );
    assert!(
        std::fs::read(&out).unwrap() == data,
        "a held GDB reads wrong bytes"
    );
    drop(held.pop());
    k.wait_for("a session to end", || {
        std::fs::read_to_string(dir.join("kmemd.log"))
            .unwrap_or_default()
            .contains("GDB went away")
    });
    let out = dir.join("next.bin");
    let o = gdb_batch(
        &gdbs[0].1,
        &target,
        &[dump_cmd(&out, plant.kernel_addr(), data.len())],
    );
    let got = std::fs::read(&out).unwrap_or_else(|e| panic!("no dump ({e}): {}", text(&o)));
    assert!(got == data, "the GDB after a slot freed reads wrong bytes");
}
