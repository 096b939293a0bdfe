//! A raw RSP client for the robustness tests: packets built and parsed with kmemd's own framing
//! codec, junk sent byte for byte, and the server's output checked to be nothing but acks and
//! well-formed packets. Also kmemd's resource use from /proc.

use kmemd::rsp::framing::{decode_payload, frame_into, Decoder, Event};
use kmemd::rsp::{hex, PACKET_SIZE};
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Long enough for a 1 MiB reply on a loaded 2-core machine; a hang fails instead of blocking.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

pub fn packet(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    frame_into(payload, &mut v);
    v
}

pub fn connect(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
    s
}

/// One GDB-like connection in ack mode.
pub struct Client {
    pub s: UnixStream,
    dec: Decoder,
}

impl Client {
    pub fn new(path: &Path) -> Client {
        Client {
            s: connect(path),
            dec: Decoder::new(2 * PACKET_SIZE),
        }
    }

    pub fn send(&mut self, payload: &[u8]) {
        self.s.write_all(&packet(payload)).expect("send packet");
    }

    /// The next event from kmemd.
    pub fn event(&mut self) -> Event {
        let mut b = [0u8; 1];
        loop {
            match self.s.read(&mut b) {
                Ok(0) => panic!("kmemd closed the connection while a reply was due"),
                Ok(_) => {}
                Err(e) => panic!("no reply from kmemd within {IO_TIMEOUT:?}: {e}"),
            }
            if let Some(ev) = self.dec.push(b[0]) {
                return ev;
            }
        }
    }

    /// Sends a packet; expects its `+` and then one reply packet, which it acks.
    pub fn request(&mut self, payload: &[u8]) -> Vec<u8> {
        self.send(payload);
        assert_eq!(self.event(), Event::Ack, "kmemd did not ack {:?}", show(payload));
        match self.event() {
            Event::Packet(p) => {
                // After `D` kmemd has already closed: the ack may meet a closed socket.
                let _ = self.s.write_all(b"+");
                p
            }
            ev => panic!("expected a reply to {:?}, got {ev:?}", show(payload)),
        }
    }
}

pub fn show(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
    if b.len() > 80 {
        format!("{s}... ({} bytes)", b.len())
    } else {
        s
    }
}

/// Sends `bytes` on a fresh connection, then closes the sending side and returns everything
/// kmemd sent until it closed. Writing runs in its own thread so a large reply cannot deadlock
/// the exchange; kmemd may end the session early (a random `D`), so write errors are ignored.
pub fn exchange(path: &Path, bytes: Vec<u8>) -> Vec<u8> {
    let mut s = connect(path);
    let mut w = s.try_clone().expect("clone socket");
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&bytes);
        let _ = w.shutdown(Shutdown::Write);
    });
    let mut out = Vec::new();
    if let Err(e) = s.read_to_end(&mut out) {
        panic!("kmemd did not end the session within {IO_TIMEOUT:?} after EOF: {e}");
    }
    writer.join().expect("writer thread");
    out
}

/// What kmemd sent, checked strictly: only `+`, `-` and `$payload#xx` packets with a right
/// checksum, valid escapes and at most the advertised packet size. Returns the acks/nacks as
/// text and the decoded reply payloads in order.
pub fn parse_stream(out: &[u8]) -> (String, Vec<Vec<u8>>) {
    let mut acks = String::new();
    let mut replies = Vec::new();
    let mut i = 0;
    while i < out.len() {
        match out[i] {
            c @ (b'+' | b'-') => {
                acks.push(c as char);
                i += 1;
            }
            b'$' => {
                let body = &out[i + 1..];
                let end = body
                    .iter()
                    .position(|&c| c == b'#')
                    .unwrap_or_else(|| panic!("reply without '#': {}", show(&out[i..])));
                let payload = &body[..end];
                assert!(
                    !payload.contains(&b'$'),
                    "a '$' inside a reply: {}",
                    show(payload)
                );
                let cs = body
                    .get(end + 1..end + 3)
                    .unwrap_or_else(|| panic!("reply cut short: {}", show(&out[i..])));
                let sum = payload.iter().fold(0u8, |a, &c| a.wrapping_add(c));
                assert_eq!(
                    hex::decode(cs),
                    Some(vec![sum]),
                    "bad checksum on {}",
                    show(payload)
                );
                assert!(payload.len() <= PACKET_SIZE, "reply of {} bytes", payload.len());
                let decoded = decode_payload(payload, PACKET_SIZE)
                    .unwrap_or_else(|| panic!("reply with broken escapes: {}", show(payload)));
                replies.push(decoded);
                i += 1 + end + 3;
            }
            c => panic!(
                "kmemd sent byte {c:#04x} outside a packet at offset {i}: {}",
                show(&out[i..])
            ),
        }
    }
    (acks, replies)
}

/// A small deterministic generator (xorshift64*); tests print the seed so a failure replays.
pub struct Rng(pub u64);

impl Rng {
    pub fn from_urandom() -> Rng {
        let mut b = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut b))
            .expect("urandom");
        Rng(u64::from_le_bytes(b) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Resident memory of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS")
}

/// Peak resident memory of a process in KiB (VmHWM).
pub fn vmhwm_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
}

/// Open file descriptors of a process.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read /proc/PID/fd")
        .count()
}
