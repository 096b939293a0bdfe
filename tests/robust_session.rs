//! kmemd serving the live kernel on a UNIX socket, fed junk over raw sockets: wrong checksums,
//! huge lengths, 1 MiB packets, binary noise, interrupts anywhere, half packets then EOF,
//! disconnects with a reply in flight, many connections at once. After each, a fresh
//! connection's read of bytes planted in the kernel must come back exactly, and kmemd's memory
//! must stay bounded. Then 1000 connect/read/disconnect cycles must leave no fd or memory behind.

mod common;

use common::rsp::*;
use common::{random_bytes, require_root, scratch, Kmemd};
use kmemd::live::plant::Plant;
use kmemd::rsp::hex;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bytes planted in a BPF map value: an address only the kernel knows, contents only we know.
struct Planted {
    plant: Plant,
    data: Vec<u8>,
}

impl Planted {
    fn new(len: usize) -> Planted {
        let plant = Plant::new(len).expect("plant bytes in the kernel (root, CAP_BPF)");
        let data = random_bytes(len);
        plant.write(&data).expect("write the planted bytes");
        Planted { plant, data }
    }
    fn addr(&self) -> u64 {
        self.plant.kernel_addr()
    }
    fn read_packet(&self) -> Vec<u8> {
        format!("m{:x},{:x}", self.addr(), self.data.len()).into_bytes()
    }
}

fn start(name: &str) -> (Kmemd, PathBuf) {
    let dir = scratch(name);
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(&["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    (k, sock)
}

/// A fresh connection's good packet is answered with exactly the planted bytes.
fn assert_good_read(k: &mut Kmemd, sock: &Path, p: &Planted, after: &str) {
    assert!(k.alive(), "kmemd died after {after}:\n{}", k.log_text());
    let mut c = Client::new(sock);
    let r = c.request(&p.read_packet());
    assert_eq!(
        hex::decode(&r).as_deref(),
        Some(&p.data[..]),
        "wrong answer to a good read after {after}: {}",
        show(&r)
    );
}

fn with_bad_checksum(payload: &[u8]) -> Vec<u8> {
    let mut v = packet(payload);
    let n = v.len();
    // Flip the last checksum digit to another hex digit.
    v[n - 1] = if v[n - 1] == b'0' { b'1' } else { b'0' };
    v
}

/// Checks kmemd's acks/nacks and reply payloads for one kind of junk.
type Check = Box<dyn Fn(&str, &[Vec<u8>])>;

/// One kind of junk: bytes to send, and what must come back for them.
struct Junk {
    name: &'static str,
    bytes: Vec<u8>,
    check: Check,
}

fn junk_kinds(p: &Planted, rng: &mut Rng) -> Vec<Junk> {
    let addr = p.addr();
    let data = p.data.clone();
    let mut v = Vec::new();

    let bad: Vec<Vec<u8>> = vec![
        with_bad_checksum(&p.read_packet()),
        with_bad_checksum(b"?"),
        b"$g#zz".to_vec(),
        b"$qC#6x".to_vec(), // a checksum digit, then a byte that is not one
        with_bad_checksum(b"D"),
    ];
    let nbad = bad.len();
    v.push(Junk {
        name: "wrong checksums",
        bytes: bad.concat(),
        check: Box::new(move |acks, replies| {
            assert_eq!(acks, "-".repeat(nbad), "one '-' per bad packet");
            assert!(replies.is_empty(), "a packet with a bad checksum was answered");
        }),
    });

    let huge = [
        "m0,ffffffffffffffff".to_string(),
        "x0,ffffffffffffffff".to_string(),
        "mffffffffffffffff,ffffffffffffffff".to_string(),
        format!("m{addr:x},ffffffffffffffff"),
        format!("x{addr:x},ffffffffffffffff"),
        format!("m{addr:x},10000000000000000"),
    ];
    let want = data.clone();
    v.push(Junk {
        name: "huge lengths",
        bytes: huge.iter().flat_map(|s| packet(s.as_bytes())).collect(),
        check: Box::new(move |acks, r| {
            assert_eq!(acks, "++++++");
            assert_eq!(r.len(), 6);
            for (i, reply) in r.iter().enumerate().take(3) {
                assert!(
                    reply.starts_with(b"E"),
                    "read {i} at 0 or the top is an error: {}",
                    show(reply)
                );
            }
            // From the plant on, as much as is readable, capped by the packet size.
            let m = hex::decode(&r[3]).expect("hex reply");
            assert!(
                m.starts_with(&want),
                "huge m read does not start with the planted bytes"
            );
            assert!(m.len() * 2 <= kmemd::rsp::PACKET_SIZE);
            assert_eq!(r[4].first(), Some(&b'b'));
            assert!(
                r[4][1..].starts_with(&want),
                "huge x read does not start with the planted bytes"
            );
            assert!(
                r[5].starts_with(b"E"),
                "a length over 64 bits is malformed: {}",
                show(&r[5])
            );
        }),
    });

    let mut big = b"q".to_vec();
    big.resize(1 << 20, b'a');
    let mut bigger = b"q".to_vec();
    bigger.resize(2 << 20, b'b');
    let mut bytes = packet(&big);
    bytes.extend(packet(&bigger));
    bytes.extend(packet(b"?"));
    v.push(Junk {
        name: "1 MiB and 2 MiB packets",
        bytes,
        check: Box::new(|acks, r| {
            assert_eq!(acks, "+++");
            assert_eq!(r.len(), 3);
            assert_eq!(r[0], b"", "an unknown 1 MiB packet gets the empty reply");
            assert!(
                r[1].starts_with(b"E"),
                "an over-long packet is refused: {}",
                show(&r[1])
            );
            assert!(r[2].starts_with(b"T"), "the session goes on: {}", show(&r[2]));
        }),
    });

    v.push(Junk {
        name: "binary noise",
        bytes: random_bytes(256 << 10),
        check: Box::new(|_, _| {}),
    });

    // Interrupts (0x03) at random points: inside a packet they corrupt it (a '-'), between
    // packets they are ignored unless GDB had continued (then one stop reply).
    let good = p.read_packet();
    let mut bytes = Vec::new();
    let mut intact = 0;
    let mut broken = 0;
    for _ in 0..40 {
        let mut pk = packet(&good);
        let at = rng.below(pk.len() + 1);
        pk.insert(at, 0x03);
        if at == 0 || at == pk.len() - 1 {
            intact += 1;
        } else {
            broken += 1;
        }
        bytes.extend(pk);
    }
    bytes.extend(packet(b"c"));
    bytes.push(0x03);
    let want = data.clone();
    v.push(Junk {
        name: "interrupts at random points",
        bytes,
        check: Box::new(move |acks, r| {
            assert_eq!(
                acks.matches('-').count(),
                broken,
                "a '-' for each packet with a 0x03 inside"
            );
            assert_eq!(
                acks.matches('+').count(),
                intact + 1,
                "a '+' for each intact packet and c"
            );
            assert_eq!(r.len(), intact + 1);
            for reply in &r[..intact] {
                assert_eq!(hex::decode(reply).as_deref(), Some(&want[..]));
            }
            assert!(
                r[intact].starts_with(b"T02"),
                "^C after c stops: {}",
                show(&r[intact])
            );
        }),
    });
    v
}

#[test]
fn junk_never_disturbs_the_next_session_and_memory_stays_bounded() {
    if !require_root("junk_never_disturbs_the_next_session_and_memory_stays_bounded") {
        return;
    }
    let p = Planted::new(256);
    let (mut k, sock) = start("junk");
    let pid = k.child.id();
    let mut rng = Rng::from_urandom();
    eprintln!("rng seed {:#x}", rng.0);
    const ROUNDS: usize = 4;
    let mut rss = Vec::new();
    for round in 0..ROUNDS {
        for junk in junk_kinds(&p, &mut rng) {
            let what = format!("{} (round {round})", junk.name);
            let out = exchange(&sock, junk.bytes);
            let (acks, replies) = parse_stream(&out);
            (junk.check)(&acks, &replies);
            assert_good_read(&mut k, &sock, &p, &what);
        }

        // Half packets, then EOF: every prefix of a good packet, one connection each.
        let full = packet(&p.read_packet());
        for cut in 1..full.len() {
            let out = exchange(&sock, full[..cut].to_vec());
            assert!(
                out.is_empty(),
                "reply to half a packet ({cut} bytes): {}",
                show(&out)
            );
        }
        assert_good_read(&mut k, &sock, &p, "half packets then EOF");

        // Disconnect with a large reply in flight (kmemd's write fails with EPIPE).
        for _ in 0..5 {
            let mut c = Client::new(&sock);
            c.send(format!("m{:x},80000", p.addr()).as_bytes());
            drop(c);
        }
        assert_good_read(&mut k, &sock, &p, "disconnects with a reply in flight");

        // Many connections at once, each doing a kind of junk; kmemd serves them in turn.
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let sock = sock.clone();
                let bytes = if i % 2 == 0 {
                    random_bytes(32 << 10)
                } else {
                    let mut b = packet(b"m0,ffffffffffffffff");
                    b.extend(with_bad_checksum(b"g"));
                    b.extend_from_slice(b"$m0,");
                    b
                };
                std::thread::spawn(move || parse_stream(&exchange(&sock, bytes)))
            })
            .collect();
        for t in threads {
            t.join().expect("a concurrent junk connection failed");
        }
        assert_good_read(&mut k, &sock, &p, "concurrent junk connections");

        rss.push(rss_kib(pid));
    }
    eprintln!("kmemd VmRSS per round (KiB): {rss:?}");
    let max = *rss.iter().max().unwrap();
    assert!(max < 64 * 1024, "kmemd's RSS reached {max} KiB (bound 64 MiB)");
    // Round 0 warms up the buffers (a 1 MiB packet, a 512 KiB read); later rounds must not grow.
    let growth = rss[ROUNDS - 1].saturating_sub(rss[1]);
    assert!(
        growth < 4 * 1024,
        "kmemd's RSS grew by {growth} KiB over rounds 1..{ROUNDS}: {rss:?}"
    );
}

#[test]
fn a_thousand_sessions_leave_no_fds_or_memory_behind() {
    if !require_root("a_thousand_sessions_leave_no_fds_or_memory_behind") {
        return;
    }
    let p = Planted::new(64);
    let (mut k, sock) = start("cycles");
    let pid = k.child.id();
    let cycle = |i: usize| {
        let mut c = Client::new(&sock);
        let r = c.request(&p.read_packet());
        assert_eq!(
            hex::decode(&r).as_deref(),
            Some(&p.data[..]),
            "cycle {i}: {}",
            show(&r)
        );
        if i % 2 == 0 {
            // Half end with a detach, half just hang up.
            assert_eq!(c.request(b"D"), b"OK");
        }
    };
    // Settled: kmemd has closed the last connection and waits in accept.
    let settled_fds = |want: Option<usize>| -> usize {
        let mut n = fd_count(pid);
        for _ in 0..100 {
            if want.is_none_or(|w| n == w) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
            n = fd_count(pid);
        }
        n
    };
    for i in 0..50 {
        cycle(i);
    }
    std::thread::sleep(Duration::from_millis(200));
    let fds_before = settled_fds(None);
    let rss_before = rss_kib(pid);
    let start = std::time::Instant::now();
    for i in 0..1000 {
        cycle(i);
    }
    let took = start.elapsed();
    let fds_after = settled_fds(Some(fds_before));
    let rss_after = rss_kib(pid);
    eprintln!(
        "1000 cycles in {took:?}; fds {fds_before} -> {fds_after}; VmRSS {rss_before} -> {rss_after} KiB"
    );
    assert!(k.alive(), "kmemd died:\n{}", k.log_text());
    assert_eq!(fds_after, fds_before, "kmemd leaked file descriptors");
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 1024,
        "kmemd's RSS grew by {growth} KiB over 1000 sessions"
    );
}
