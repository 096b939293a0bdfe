//! A whole GDB session over an in-memory connection with a fake target: arbitrary input bytes
//! (split into reads of arbitrary sizes) never panic the server, and everything it sends is a
//! well-formed stream of acks and checksummed packets no larger than the advertised size.
#![no_main]

use kmemd::arch::{Arch, Registers};
use kmemd::mem::{MemError, MemErrorKind, ReadError, VirtAddr, VirtRead};
use kmemd::rsp::framing::decode_payload;
use kmemd::rsp::{hex, PACKET_SIZE};
use kmemd::server::serve;
use kmemd::target::{Target, ThreadInfo, Tid};
use libfuzzer_sys::fuzz_target;
use std::io::{self, Read, Write};

/// One readable window of memory; everything else faults. Reads stop after `chunk` bytes to
/// exercise the server's partial-read loop.
struct Fake {
    arch: Arch,
    base: u64,
    mem: Vec<u8>,
    chunk: usize,
    threads: u64,
}

impl VirtRead for Fake {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let addr = addr.0;
        let off = addr
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < self.mem.len())
            .ok_or_else(|| MemError::new(addr, MemErrorKind::Fault, "outside the fake window"))?;
        let n = buf.len().min(self.mem.len() - off).min(self.chunk);
        buf[..n].copy_from_slice(&self.mem[off..off + n]);
        Ok(n)
    }
}

impl Target for Fake {
    fn arch(&self) -> Arch {
        self.arch
    }
    fn threads(&mut self) -> Vec<ThreadInfo> {
        (1..=self.threads)
            .map(|t| ThreadInfo {
                tid: t,
                name: format!("CPU {}", t - 1),
                extra: format!("CPU {} <\"&'>", t - 1),
                core: u32::try_from(t - 1).ok(),
            })
            .collect()
    }
    fn registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        if tid == 0 || tid > self.threads {
            return Err(format!("no thread {tid}").into());
        }
        let n = self.arch.registers().len();
        Ok(Registers(
            (0..n)
                .map(|i| (i % 3 != 0).then_some(tid << 32 | i as u64))
                .collect(),
        ))
    }
    fn kaslr_offset(&self) -> Option<u64> {
        Some(self.base & 0x3fff_f000)
    }
    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        match cmd {
            "ok" => Some(Ok("fine\n".into())),
            "err" => Some(Err("broken".into())),
            _ => None,
        }
    }
    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        vec![("ok", "says fine"), ("err", "fails")]
    }
    fn describe(&self) -> String {
        "fuzz target".into()
    }
}

/// GDB's side: input handed out in reads of `step` bytes, output collected.
struct Conn<'a> {
    input: &'a [u8],
    step: usize,
    output: Vec<u8>,
}

impl Read for Conn<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        let n = b.len().min(self.step).min(self.input.len());
        b[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Conn<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks the server's output: only `+`, `-` and `$payload#xx` with the right checksum, the
/// payload's escapes valid and its size within the advertised packet size.
fn check_stream(out: &[u8]) {
    let mut i = 0;
    while i < out.len() {
        match out[i] {
            b'+' | b'-' => i += 1,
            b'$' => {
                let body = &out[i + 1..];
                let end = body
                    .iter()
                    .position(|&c| c == b'#')
                    .expect("a packet without '#'");
                let payload = &body[..end];
                assert!(!payload.contains(&b'$'), "a '$' inside a reply");
                let cs = body.get(end + 1..end + 3).expect("a packet cut short");
                let sum = payload.iter().fold(0u8, |a, &c| a.wrapping_add(c));
                assert_eq!(hex::decode(cs), Some(vec![sum]), "bad checksum on a reply");
                assert!(payload.len() <= PACKET_SIZE, "reply of {} bytes", payload.len());
                assert!(
                    decode_payload(payload, PACKET_SIZE).is_some(),
                    "malformed escapes"
                );
                i += 1 + end + 3;
            }
            c => panic!("byte {c:#04x} outside a packet at {i}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Header: arch, read step, read chunk, thread count, window base (8), window length.
    if data.len() < 13 {
        return;
    }
    let (head, rest) = data.split_at(13);
    let arch = if head[0] & 1 == 0 {
        Arch::X86_64
    } else {
        Arch::Aarch64
    };
    let step = 1 + usize::from(head[1]);
    let chunk = 1 + usize::from(head[2]) * 16;
    let threads = 1 + u64::from(head[3] % 8);
    let base = u64::from_le_bytes(head[4..12].try_into().unwrap_or_default());
    let win = usize::from(head[12]).min(rest.len());
    let (mem, input) = rest.split_at(win);
    let mut target = Fake {
        arch,
        base,
        mem: mem.to_vec(),
        chunk,
        threads,
    };
    let mut conn = Conn {
        input,
        step,
        output: Vec::new(),
    };
    let _ = serve(&mut target, &mut conn);
    check_stream(&conn.output);
});
