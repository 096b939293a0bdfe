//! kmemd's safety defaults, checked on the real thing: the UNIX socket is 0600, `-s :PORT`
//! listens on loopback only, write packets are refused and change nothing, and a read of N bytes
//! sends exactly N bytes and nothing else.

mod common;

use common::rsp::*;
use common::{free_port, random_bytes, require_root, scratch, Kmemd};
use kmemd::live::plant::Plant;
use kmemd::rsp::hex;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

fn planted(len: usize) -> (Plant, Vec<u8>) {
    let plant = Plant::new(len).expect("plant bytes in the kernel (root, CAP_BPF)");
    let data = random_bytes(len);
    plant.write(&data).expect("write the planted bytes");
    (plant, data)
}

#[test]
fn unix_socket_is_mode_0600() {
    if !require_root("unix_socket_is_mode_0600") {
        return;
    }
    let dir = scratch("mode");
    let sock = dir.join("gdb.sock");
    // Started with umask 000: a permissive umask must not loosen the socket's mode.
    let mut k = kmemd::sys::os::with_umask(0, || {
        Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"))
    });
    k.wait_unix(&sock);
    let meta = std::fs::symlink_metadata(&sock).expect("stat the socket");
    assert!(meta.file_type().is_socket(), "{} is not a socket", sock.display());
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "socket mode {:o}",
        meta.permissions().mode()
    );
}

/// (local address hex, port) of every TCP socket in LISTEN state, from a /proc/net/tcp{,6} table.
fn listeners(table: &str) -> Vec<(String, u16)> {
    std::fs::read_to_string(table)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.get(3) != Some(&"0A") {
                return None;
            }
            let (ip, port) = f.get(1)?.split_once(':')?;
            Some((ip.to_string(), u16::from_str_radix(port, 16).ok()?))
        })
        .collect()
}

#[test]
fn tcp_port_alone_listens_on_loopback_only() {
    if !require_root("tcp_port_alone_listens_on_loopback_only") {
        return;
    }
    let dir = scratch("tcp-loopback");
    let port = free_port();
    let mut k = Kmemd::spawn(&["-s", &format!(":{port}")], dir.join("kmemd.log"));
    k.wait_tcp(port);
    let v4: Vec<String> = listeners("/proc/net/tcp")
        .into_iter()
        .filter(|(_, p)| *p == port)
        .map(|(ip, _)| ip)
        .collect();
    let v6: Vec<String> = listeners("/proc/net/tcp6")
        .into_iter()
        .filter(|(_, p)| *p == port)
        .map(|(ip, _)| ip)
        .collect();
    // /proc/net/tcp prints the address as a native-endian u32: 127.0.0.1 is 0100007F.
    assert_eq!(v4, vec!["0100007F".to_string()], "IPv4 listeners on port {port}");
    assert!(
        v6.iter().all(|ip| ip == "00000000000000000000000001000000"),
        "IPv6 listeners on port {port} beyond ::1: {v6:?}"
    );
    drop(k);

    // An address given explicitly is used as given (here another loopback address).
    let port = free_port();
    let mut k = Kmemd::spawn(&["-s", &format!("127.0.0.2:{port}")], dir.join("kmemd2.log"));
    k.wait_for("listening on 127.0.0.2", || {
        std::net::TcpStream::connect(("127.0.0.2", port)).is_ok()
    });
    let v4: Vec<String> = listeners("/proc/net/tcp")
        .into_iter()
        .filter(|(_, p)| *p == port)
        .map(|(ip, _)| ip)
        .collect();
    assert_eq!(v4, vec!["0200007F".to_string()]);
}

#[test]
fn write_packets_are_refused_and_change_nothing() {
    if !require_root("write_packets_are_refused_and_change_nothing") {
        return;
    }
    let (plant, data) = planted(64);
    let addr = plant.kernel_addr();
    let dir = scratch("writes");
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);

    let other: Vec<u8> = data.iter().map(|b| !b).collect();
    let mut xbin = format!("X{addr:x},40:").into_bytes();
    hex::escape_binary_into(&other, &mut xbin);
    let nregs = kmemd::arch::Arch::host()
        .registers()
        .iter()
        .map(|r| r.bytes())
        .sum::<usize>();
    let writes: Vec<Vec<u8>> = vec![
        format!("M{addr:x},40:{}", hex::encode(&other)).into_bytes(),
        xbin,
        format!("M{addr:x},1:00").into_bytes(),
        format!("X{addr:x},0:").into_bytes(),
        format!("G{}", "11".repeat(nregs)).into_bytes(),
        format!("P0={}", "22".repeat(8)).into_bytes(),
        format!("P10={}", hex::encode(&addr.to_le_bytes())).into_bytes(),
    ];
    let mut c = Client::new(&sock);
    for w in &writes {
        let r = c.request(w);
        assert!(
            r.len() == 3 && r[0] == b'E',
            "write packet {} got {:?}, not an error",
            show(w),
            show(&r)
        );
    }
    // Software breakpoints would be memory writes too: not supported, so never OK.
    for z in [format!("Z0,{addr:x},1"), format!("Z1,{addr:x},1")] {
        let r = c.request(z.as_bytes());
        assert_ne!(r, b"OK", "{z} was accepted");
    }
    let r = c.request(format!("m{addr:x},40").as_bytes());
    assert_eq!(
        hex::decode(&r).as_deref(),
        Some(&data[..]),
        "read back through kmemd"
    );
    drop(c);
    assert_eq!(
        plant.read_back().expect("read the map value back"),
        data,
        "the planted bytes changed"
    );
    assert!(k.alive(), "kmemd died:\n{}", k.log_text());
}

#[test]
fn a_read_of_n_bytes_sends_exactly_n_bytes_and_nothing_else() {
    if !require_root("a_read_of_n_bytes_sends_exactly_n_bytes_and_nothing_else") {
        return;
    }
    let (plant, data) = planted(256);
    let addr = plant.kernel_addr();
    let dir = scratch("exact");
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);

    let mut s = connect(&sock);
    for n in [1usize, 2, 3, 7, 8, 9, 63, 64, 100, 255, 256] {
        for binary in [false, true] {
            let (req, reply) = if binary {
                let mut p = b"b".to_vec();
                hex::escape_binary_into(&data[..n], &mut p);
                (format!("x{addr:x},{n:x}"), p)
            } else {
                (format!("m{addr:x},{n:x}"), hex::encode(&data[..n]).into_bytes())
            };
            s.write_all(&packet(req.as_bytes())).unwrap();
            let mut want = b"+".to_vec();
            want.extend(packet(&reply));
            let mut got = vec![0u8; want.len()];
            s.read_exact(&mut got)
                .unwrap_or_else(|e| panic!("{req}: reply shorter than {} bytes: {e}", want.len()));
            assert_eq!(show(&got), show(&want), "{req}");
            assert_eq!(got, want, "{req}: reply bytes");
            s.write_all(b"+").unwrap();
            // Nothing follows the reply.
            s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut extra = [0u8; 64];
            match s.read(&mut extra) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Ok(m) => panic!("{req}: {m} more bytes after the reply: {}", show(&extra[..m])),
                Err(e) => panic!("{req}: {e}"),
            }
            s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        }
    }
    assert!(k.alive(), "kmemd died:\n{}", k.log_text());
}
