//! The reference for `make bench` (issue 16): a GDB stub that answers everything from tables and
//! shares no code with kmemd's server, so the bench's ratios show the cost of kmemd's protocol
//! path too, not only of its reads. Memory reads copy from a 4 KiB pattern (a 64 KiB "stack"
//! window reads as zeros, so backtraces end). `--replay FILE` answers instead from a table of
//! replies that a server gave (tests/bench/footprint.py records kmemd's through a proxy): the
//! same thread list, registers and stack words, so GDB does the same work against both. Plain
//! std, one client at a time, no logging but one line per replayed session.
//!
//! Usage: table_stub SOCKET|- [--replay FILE]   (x86_64 register layout, as kmemd's target XML)
//!
//! FILE: one request a line, `THREAD REQUEST REPLY`, each the hex of its bytes (THREAD: the
//! argument of the last `Hg` before it, `-` before any), packets without `$`, `#` or checksum.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixListener;

/// Advertised like kmemd's (src/rsp/mod.rs PACKET_SIZE), so GDB asks for the same read sizes.
const PACKET_SIZE: usize = 0x10_0000;
const STACK: u64 = 0xffff_c900_0000_0000;
const STACK_LEN: u64 = 0x1_0000;
const XML: &str = include_str!("../src/arch/x86_64.xml");
/// The one thread this stub serves (the replay serves whatever thread list it recorded).
const THREADS_XML: &str =
    "<?xml version=\"1.0\"?>\n<threads>\n<thread id=\"1\" name=\"t1\">task 1</thread>\n</threads>\n";

/// What a stub answers with; false ends the session after the reply.
trait Answer {
    fn answer(&mut self, p: &[u8], out: &mut Vec<u8>) -> bool;
    fn session_ended(&mut self) {}
}

struct Table {
    pattern: Vec<u8>,
    regs_hex: Vec<u8>,
}

/// Replies recorded from a server, by the thread `Hg` selected and the request.
struct Replay {
    by_thread: HashMap<Vec<u8>, HashMap<Vec<u8>, Vec<u8>>>,
    thread: Vec<u8>,
    asked: u64,
    missed: u64,
    first_missed: Option<Vec<u8>>,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s == "-" {
        return Some(Vec::new());
    }
    let b = s.as_bytes();
    if b.len() % 2 != 0 {
        return None;
    }
    b.chunks(2)
        .map(|p| Some(hexval(p[0])? << 4 | hexval(p[1])?))
        .collect()
}

impl Replay {
    fn load(path: &str) -> Result<Replay, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut by_thread: HashMap<Vec<u8>, HashMap<Vec<u8>, Vec<u8>>> = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split(' ').collect();
            let parsed = match f.as_slice() {
                [t, q, r] => unhex(t).zip(unhex(q)).zip(unhex(r)),
                _ => None,
            };
            let ((t, q), r) = parsed.ok_or(format!("{path}:{}: not THREAD REQUEST REPLY in hex", n + 1))?;
            by_thread.entry(t).or_default().insert(q, r);
        }
        Ok(Replay {
            by_thread,
            thread: Vec::new(),
            asked: 0,
            missed: 0,
            first_missed: None,
        })
    }
}

impl Answer for Replay {
    fn answer(&mut self, p: &[u8], out: &mut Vec<u8>) -> bool {
        if let Some(t) = p.strip_prefix(b"Hg") {
            self.thread = t.to_vec();
        }
        self.asked += 1;
        match self.by_thread.get(&self.thread).and_then(|m| m.get(p)) {
            Some(r) => out.extend_from_slice(r),
            None => {
                self.missed += 1;
                if self.first_missed.is_none() {
                    let mut k = self.thread.clone();
                    k.push(b' ');
                    k.extend_from_slice(p);
                    self.first_missed = Some(k);
                }
                if matches!(p.first(), Some(b'm') | Some(b'x') | Some(b'g') | Some(b'p')) {
                    out.extend_from_slice(b"E01");
                }
            }
        }
        !(p == b"k" || p.first() == Some(&b'D'))
    }

    fn session_ended(&mut self) {
        let first = match self.first_missed.take() {
            Some(k) => format!(" (the first: thread {})", String::from_utf8_lossy(&k)),
            None => String::new(),
        };
        // A connection without a packet is a caller's probe that the socket is up.
        if self.asked > 0 {
            eprintln!(
                "table_stub: replayed {} requests, {} not in the table{first}",
                self.asked, self.missed
            );
        }
        self.thread.clear();
        (self.asked, self.missed) = (0, 0);
    }
}

fn hexval(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn num(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter()
        .try_fold(0u64, |a, &b| Some(a.checked_mul(16)? | u64::from(hexval(b)?)))
}

fn addr_len(s: &[u8]) -> Option<(u64, usize)> {
    let comma = s.iter().position(|&b| b == b',')?;
    let len = usize::try_from(num(&s[comma + 1..])?).ok()?;
    Some((num(&s[..comma])?, len))
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl Table {
    fn new() -> Table {
        let pattern: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        // g: every register of the XML, in its order; rip, rsp known, the rest zero.
        let mut regs_hex = Vec::new();
        for (i, part) in XML.split("bitsize=\"").skip(1).enumerate() {
            let bits: usize = part.split('"').next().and_then(|b| b.parse().ok()).unwrap_or(64);
            let mut v = vec![0u8; bits / 8];
            let val = match i {
                7 => STACK + 0x100,          // rsp
                16 => 0xffff_ffff_8100_0000, // rip
                _ => 0,
            };
            for (k, b) in v.iter_mut().take(8).enumerate() {
                *b = (val >> (8 * k)) as u8;
            }
            for b in v {
                regs_hex.push(HEX[usize::from(b >> 4)]);
                regs_hex.push(HEX[usize::from(b & 15)]);
            }
        }
        Table { pattern, regs_hex }
    }

    fn mem(&self, addr: u64, out: &mut Vec<u8>, len: usize) {
        for i in 0..len as u64 {
            let a = addr.wrapping_add(i);
            let b = if a.wrapping_sub(STACK) < STACK_LEN {
                0
            } else {
                self.pattern[(a % 4096) as usize]
            };
            out.push(b);
        }
    }

    fn xfer(data: &[u8], rest: &[u8], out: &mut Vec<u8>) {
        let Some((off, len)) = addr_len(rest) else {
            out.extend_from_slice(b"E00");
            return;
        };
        let off = (off as usize).min(data.len());
        let end = off.saturating_add(len).min(data.len());
        out.push(if end == data.len() { b'l' } else { b'm' });
        escape(&data[off..end], out);
    }
}

impl Answer for Table {
    fn answer(&mut self, p: &[u8], out: &mut Vec<u8>) -> bool {
        let max = (PACKET_SIZE - 16) / 2;
        match p.first() {
            Some(b'm') => {
                if let Some((a, len)) = addr_len(&p[1..]) {
                    let mut raw = Vec::new();
                    self.mem(a, &mut raw, len.min(max));
                    for b in raw {
                        out.push(HEX[usize::from(b >> 4)]);
                        out.push(HEX[usize::from(b & 15)]);
                    }
                }
            }
            Some(b'x') => {
                if let Some((a, len)) = addr_len(&p[1..]) {
                    let mut raw = Vec::new();
                    self.mem(a, &mut raw, len.min(max));
                    out.push(b'b');
                    escape(&raw, out);
                }
            }
            Some(b'g') => out.extend_from_slice(&self.regs_hex),
            Some(b'H') | Some(b'T') => out.extend_from_slice(b"OK"),
            Some(b'?') => out.extend_from_slice(b"T05thread:1;"),
            Some(b'D') => {
                out.extend_from_slice(b"OK");
                return false;
            }
            Some(b'k') => return false,
            _ if p.starts_with(b"qSupported") => out.extend_from_slice(
                format!(
                    "PacketSize={PACKET_SIZE:x};QStartNoAckMode+;qXfer:features:read+;qXfer:threads:read+;\
                     binary-upload+;vContSupported+"
                )
                .as_bytes(),
            ),
            _ if p == b"QStartNoAckMode" => out.extend_from_slice(b"OK"),
            _ if p.starts_with(b"qXfer:features:read:target.xml:") => Table::xfer(
                XML.as_bytes(),
                &p[b"qXfer:features:read:target.xml:".len()..],
                out,
            ),
            _ if p.starts_with(b"qXfer:threads:read::") => {
                Table::xfer(THREADS_XML.as_bytes(), &p[b"qXfer:threads:read::".len()..], out)
            }
            _ if p == b"qC" => out.extend_from_slice(b"QC1"),
            _ if p.starts_with(b"qAttached") => out.push(b'1'),
            _ if p == b"qOffsets" => out.extend_from_slice(b"Text=0;Data=0;Bss=0"),
            _ if p == b"qfThreadInfo" => out.extend_from_slice(b"m1"),
            _ if p == b"qsThreadInfo" => out.push(b'l'),
            _ if p.starts_with(b"qThreadExtraInfo,") => {
                for b in b"task" {
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 15)]);
                }
            }
            _ if p == b"vCont?" => out.extend_from_slice(b"vCont;c;C"),
            _ if p.starts_with(b"qSymbol") => out.extend_from_slice(b"OK"),
            _ => {}
        }
        true
    }
}

fn escape(raw: &[u8], out: &mut Vec<u8>) {
    for &b in raw {
        if matches!(b, b'#' | b'$' | b'}' | b'*') {
            out.push(b'}');
            out.push(b ^ 0x20);
        } else {
            out.push(b);
        }
    }
}

fn serve(t: &mut dyn Answer, rd: &mut dyn Read, wr: &mut dyn Write) -> std::io::Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    let (mut have, mut ack) = (Vec::new(), true);
    let mut out = Vec::with_capacity(PACKET_SIZE + 8);
    loop {
        // One whole packet `$...#xx` from the front of `have`.
        while let Some(start) = have.iter().position(|&b| b == b'$' || b == 3) {
            if have[start] == 3 {
                have.drain(..=start);
                wr.write_all(b"$T02thread:1;#ad")?;
                continue;
            }
            let Some(hash) = have[start..].iter().position(|&b| b == b'#').map(|h| h + start) else {
                break;
            };
            if have.len() < hash + 3 {
                break;
            }
            let pkt = have[start + 1..hash].to_vec();
            have.drain(..hash + 3);
            out.clear();
            if ack {
                out.push(b'+');
            }
            out.push(b'$');
            let keep = t.answer(&pkt, &mut out);
            let body = if ack { 2 } else { 1 };
            let sum = out[body..].iter().fold(0u8, |s, &b| s.wrapping_add(b));
            out.push(b'#');
            out.push(HEX[usize::from(sum >> 4)]);
            out.push(HEX[usize::from(sum & 15)]);
            wr.write_all(&out)?;
            wr.flush()?;
            if pkt == b"QStartNoAckMode" {
                ack = false;
            }
            if !keep {
                return Ok(());
            }
        }
        let n = rd.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        // Acks ('+'/'-') between packets are skipped by the search for '$'.
        if !have.contains(&b'$') {
            have.clear();
        }
        have.extend_from_slice(&buf[..n]);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(spec) = args.get(1) else {
        eprintln!("usage: table_stub SOCKET|- [--replay FILE]");
        std::process::exit(2);
    };
    let mut stub: Box<dyn Answer> = match (args.get(2).map(String::as_str), args.get(3)) {
        (Some("--replay"), Some(path)) => match Replay::load(path) {
            Ok(r) => Box::new(r),
            Err(e) => {
                eprintln!("table_stub: {e}");
                std::process::exit(2);
            }
        },
        (None, _) => Box::new(Table::new()),
        _ => {
            eprintln!("usage: table_stub SOCKET|- [--replay FILE]");
            std::process::exit(2);
        }
    };
    if spec == "-" {
        let _ = serve(
            stub.as_mut(),
            &mut std::io::stdin().lock(),
            &mut std::io::stdout().lock(),
        );
        stub.session_ended();
        return;
    }
    let _ = std::fs::remove_file(spec);
    let l = UnixListener::bind(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    for c in l.incoming().flatten() {
        let mut r = &c;
        let mut w = &c;
        let _ = serve(stub.as_mut(), &mut r, &mut w);
        stub.session_ended();
    }
}
