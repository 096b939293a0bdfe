//! A real kmemd serving GDB (live kernel, root) is stopped with SIGTERM, SIGINT and SIGHUP: it
//! logs why, closes the session in progress with a log line, removes the socket file it created
//! (and only that one) and exits 0.

mod common;

use common::*;
use kmemd::rsp::framing::frame_into;
use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .args(["-s", sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -s {sig} {pid} failed");
}

fn wait_exit(child: &mut std::process::Child, log: &Path) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait for kmemd") {
            return st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "kmemd did not exit within 20 s of the signal:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A session in progress: connected, one packet answered, still open.
fn session(sock: &Path) -> UnixStream {
    let mut c = UnixStream::connect(sock).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut p = Vec::new();
    frame_into(b"?", &mut p);
    c.write_all(&p).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 256];
    while !got.contains(&b'#') {
        let n = c.read(&mut b).expect("a reply to '?'");
        assert!(n > 0, "kmemd closed the session");
        got.extend_from_slice(&b[..n]);
    }
    assert!(got.starts_with(b"+$T05"), "{}", String::from_utf8_lossy(&got));
    c
}

fn assert_closed(mut c: UnixStream) {
    let mut rest = Vec::new();
    match c.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!("the session was not closed: {e}"),
    }
}

#[test]
fn term_int_and_hup_end_serving_cleanly() {
    if !require_root("term_int_and_hup_end_serving_cleanly") {
        return;
    }
    for sig in ["TERM", "INT", "HUP"] {
        let dir = scratch(&format!("signal-{sig}"));
        let sock = dir.join("gdb.sock");
        // A stale socket at the path: kmemd replaces it, and the one it leaves is its own.
        drop(UnixListener::bind(&sock).unwrap());
        let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
        k.wait_unix(&sock);
        let c = session(&sock);
        signal(k.child.id(), sig);
        let st = wait_exit(&mut k.child, &k.log);
        let log = k.log_text();
        assert_eq!(st.code(), Some(0), "SIG{sig}: {st}\n{log}");
        assert!(
            log.contains(&format!("SIG{sig} received: stopping, closing")),
            "SIG{sig}: {log}"
        );
        assert!(
            log.contains(&format!(": closed: kmemd is stopping (SIG{sig})")),
            "SIG{sig}: the session's end is logged: {log}"
        );
        assert!(
            log.contains(&format!("removed socket file {}", sock.display())),
            "{log}"
        );
        assert!(
            std::fs::symlink_metadata(&sock).is_err(),
            "SIG{sig}: the socket file is still there"
        );
        assert_closed(c);
    }
}

#[test]
fn a_socket_file_kmemd_did_not_create_stays() {
    if !require_root("a_socket_file_kmemd_did_not_create_stays") {
        return;
    }
    let dir = scratch("signal-theirs");
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    // Someone removes kmemd's socket file and serves their own at the path.
    std::fs::remove_file(&sock).unwrap();
    let theirs = UnixListener::bind(&sock).unwrap();
    signal(k.child.id(), "TERM");
    let st = wait_exit(&mut k.child, &k.log);
    let log = k.log_text();
    assert_eq!(st.code(), Some(0), "{st}\n{log}");
    assert!(
        std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()),
        "their socket file was removed: {log}"
    );
    assert!(
        UnixStream::connect(&sock).is_ok(),
        "their socket no longer answers"
    );
    assert!(
        log.contains("is no longer the socket kmemd created: left in place"),
        "{log}"
    );
    drop(theirs);
}

#[test]
fn tcp_and_stdio_serving_end_cleanly_too() {
    if !require_root("tcp_and_stdio_serving_end_cleanly_too") {
        return;
    }
    let dir = scratch("signal-tcp");
    let port = free_port();
    let mut k = Kmemd::spawn(&["-s", &format!(":{port}")], dir.join("kmemd.log"));
    k.wait_tcp(port);
    signal(k.child.id(), "TERM");
    let st = wait_exit(&mut k.child, &k.log);
    assert_eq!(st.code(), Some(0), "TCP: {st}\n{}", k.log_text());
    assert!(k.log_text().contains("SIGTERM received"), "{}", k.log_text());

    // stdio: GDB's pipe held open, a session in progress (stdio logs go to --log).
    let log = dir.join("stdio.log");
    let mut child = Command::new(KMEMD)
        .args(["-s", "-", "--log", log.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kmemd -s -");
    let mut p = Vec::new();
    frame_into(b"?", &mut p);
    child.stdin.as_mut().unwrap().write_all(&p).unwrap();
    let mut b = [0u8; 5];
    child
        .stdout
        .as_mut()
        .unwrap()
        .read_exact(&mut b)
        .expect("a reply on stdout");
    assert_eq!(&b, b"+$T05");
    signal(child.id(), "TERM");
    let st = wait_exit(&mut child, &log);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(st.code(), Some(0), "stdio: {st}\n{text}");
    assert!(
        text.contains("SIGTERM received: stopping, closing 1 session(s)"),
        "{text}"
    );
    assert!(
        text.contains("session 1: closed: kmemd is stopping (SIGTERM)"),
        "{text}"
    );
}
