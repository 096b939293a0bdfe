//! The ceiling for benchmarks: kmemd's own RSP server over a target that does no work (reads are
//! a copy from a precomputed buffer). `make bench` runs GDB against this and against kmemd in the
//! same run, so the ratio shows what kmemd's BPF reads cost beside GDB's own limits.
//!
//! Usage: null_stub SPEC   (SPEC as kmemd's -s: a socket path, :PORT or -)

use kmemd::arch::{Arch, Registers};
use kmemd::mem::{MemError, ReadError, VirtAddr, VirtRead};
use kmemd::server::sessions;
use kmemd::sys::os;
use kmemd::target::{Target, ThreadInfo, Tid};
use kmemd::transport::{ListenSpec, Listener};
use std::os::fd::AsRawFd;

struct NullTarget {
    pattern: Vec<u8>,
}

impl VirtRead for NullTarget {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let addr = addr.0;
        let n = buf.len().min(self.pattern.len());
        let off = (addr % 4096) as usize;
        buf[..n].copy_from_slice(&self.pattern[off..off + n]);
        Ok(n)
    }
}

impl Target for NullTarget {
    fn arch(&self) -> Arch {
        Arch::host()
    }
    fn threads(&mut self) -> Vec<ThreadInfo> {
        vec![ThreadInfo {
            tid: 1,
            name: "null".into(),
            extra: "null".into(),
            core: None,
        }]
    }
    fn registers(&mut self, _tid: Tid) -> Result<Registers, ReadError> {
        // As kmemd's live target: PC 0, the rest unavailable (GDB reads no memory without a PC).
        let mut r = vec![None; Arch::host().registers().len()];
        r[Arch::host().pc_index()] = Some(0);
        Ok(Registers(r))
    }
    fn kaslr_offset(&self) -> Option<u64> {
        Some(0)
    }
    fn describe(&self) -> String {
        "null stub".into()
    }
}

fn main() {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "-".into());
    let spec = ListenSpec::parse(&spec).unwrap_or_else(|e| panic!("{e}"));
    let mut listener = Listener::bind(&spec, None).unwrap_or_else(|e| panic!("{e}"));
    let mut target = NullTarget {
        pattern: (0..(2 << 20) + 4096).map(|i| (i * 13) as u8).collect(),
    };
    // The same session loop as kmemd's, so the benchmark measures what kmemd does.
    let stop = os::install_shutdown_signals().unwrap_or_else(|e| panic!("{e}"));
    let no_points = || Err("the null stub has no breakpoints".to_string());
    if let Err(e) = sessions::run(&mut target, &mut listener, stop.as_raw_fd(), &no_points) {
        panic!("{e}");
    }
}
