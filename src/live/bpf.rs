//! Kernel memory through BPF: bpf/kmem.bpf.c's `kmem_read` runs with BPF_PROG_TEST_RUN once per
//! chunk and leaves the bytes in a `BPF_F_MMAPABLE` array value we have mmap'ed, so a chunk costs
//! one syscall and one copy.
//!
//! `bpf_probe_read_kernel` is all-or-nothing: a read that crosses from a mapped page into an
//! unmapped one fails with -EFAULT and zero-fills the whole destination (measured on 6.18, see
//! reference/live-reads.md). `read_prefix` therefore bisects a failed chunk on page boundaries to
//! find the readable prefix and returns only that, never the zeros.

use crate::mem::{MemError, MemErrorKind, VirtAddr, VirtRead};
use crate::sys::clib::{BpfObject, BpfProg, MapView};

static KMEM_OBJ: &[u8] = include_bytes!("../../bpf/kmem.bpf.o");

/// Granularity of the fault search. Kernel mappings are at least 4 KiB pages on every
/// architecture kmemd serves; with 16/64 KiB pages every real boundary is also a 4 KiB one.
pub const FAULT_GRANULE: u64 = 4096;

/// One all-or-nothing read: `Ok` means every byte of `buf` was read at `addr`; `Err(errno)` means
/// none can be trusted (the source may have zero-filled or scribbled over `buf`).
pub trait ChunkRead {
    /// Largest `buf` a single call accepts.
    fn max_chunk(&self) -> usize;
    fn read_chunk(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ChunkError>;
}

/// Why a chunk failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    /// The helper's errno (positive): EFAULT unmapped, ERANGE not a kernel address.
    Fault(i32),
    /// The read could not be attempted at all (e.g. the syscall failed): no bisection helps.
    Broken(String),
}

fn fault_reason(errno: i32) -> String {
    match errno {
        libc::EFAULT => "kernel address not mapped (EFAULT)".to_string(),
        libc::ERANGE => "not a kernel address (ERANGE: user half or non-canonical)".to_string(),
        e => format!("BPF read failed: {}", std::io::Error::from_raw_os_error(e)),
    }
}

/// Reads the longest readable prefix of `[addr, addr + buf.len())` into `buf` (the `Target`
/// contract): `Ok(n)` with `n >= 1` real bytes (0 only for an empty `buf`), `Err` when the first
/// byte cannot be read. Bytes after `n` in `buf` are unspecified.
pub fn read_prefix<R: ChunkRead>(src: &mut R, addr: u64, buf: &mut [u8]) -> Result<usize, MemError> {
    let chunk = src.max_chunk().max(1);
    let mut pos = 0usize;
    while pos < buf.len() {
        let Some(at) = addr.checked_add(pos as u64) else {
            break; // wrapped past the top of the address space
        };
        let n = chunk.min(buf.len() - pos);
        let n = usize::try_from(u64::MAX - at).map_or(n, |room| n.min(room.saturating_add(1)));
        let Some(dst) = buf.get_mut(pos..pos + n) else {
            break;
        };
        match src.read_chunk(at, dst) {
            Ok(()) => pos += n,
            Err(ChunkError::Broken(why)) => return finish(pos, addr, why),
            Err(ChunkError::Fault(errno)) => {
                let good = bisect_readable(src, at, dst);
                pos += good;
                if good < n {
                    return finish(pos, addr, fault_reason(errno));
                }
            }
        }
    }
    if pos == 0 && !buf.is_empty() {
        return Err(MemError::new(
            addr,
            MemErrorKind::Fault,
            "address wraps past the end of the address space",
        ));
    }
    Ok(pos)
}

fn finish(pos: usize, addr: u64, why: String) -> Result<usize, MemError> {
    if pos == 0 {
        Err(MemError::new(addr, MemErrorKind::Fault, why))
    } else {
        Ok(pos)
    }
}

/// `dst` (read at `at`) failed as a whole. Finds the largest page-boundary prefix that reads,
/// leaves its bytes in `dst`, and returns its length (0 when the first page already faults).
fn bisect_readable<R: ChunkRead>(src: &mut R, at: u64, dst: &mut [u8]) -> usize {
    // Candidate prefix ends: each granule boundary after `at` inside `dst`, then `dst.len()`
    // (known to fail). Prefix k ends at `boundary(k)`; boundary(0) = 0 (empty, trivially readable).
    let first = (FAULT_GRANULE - at % FAULT_GRANULE) as usize; // length up to the next boundary
    let len = dst.len();
    let boundaries = if first >= len {
        1
    } else {
        1 + (len - first).div_ceil(FAULT_GRANULE as usize)
    };
    let boundary = |k: usize| -> usize {
        if k == 0 {
            0
        } else {
            first
                .saturating_add((k - 1).saturating_mul(FAULT_GRANULE as usize))
                .min(len)
        }
    };
    // Invariant: prefix `lo` reads, prefix `hi` does not.
    let (mut lo, mut hi) = (0usize, boundaries);
    let mut last_ok = true; // whether dst[..boundary(lo)] holds what the last successful read left
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let end = boundary(mid);
        match src.read_chunk(at, &mut dst[..end]) {
            Ok(()) => {
                lo = mid;
                last_ok = true;
            }
            Err(ChunkError::Fault(_)) => {
                hi = mid;
                last_ok = false; // the failed read may have zeroed dst[..boundary(lo)]
            }
            Err(ChunkError::Broken(_)) => return 0,
        }
    }
    let good = boundary(lo);
    if good > 0 && !last_ok {
        // Read the prefix again; if it has meanwhile become unmapped, report nothing rather
        // than stale zeros.
        if src.read_chunk(at, &mut dst[..good]).is_err() {
            return 0;
        }
    }
    good
}

/// The live kernel reader: the loaded `kmem_read` program and the mmap'ed result buffer.
#[derive(Debug)]
pub struct KernelReader {
    prog: BpfProg,
    view: MapView,
}

/// Largest chunk: an array map value may not exceed KMALLOC_MAX_SIZE (kernel/bpf/arraymap.c
/// array_map_alloc_check), 4 MiB with 4 KiB pages, and reads past ~1 MiB gain little speed.
pub const MAX_CHUNK: usize = 4 << 20;

/// The chunk of the live target (`kmemd -s`, `--read`; issue 16). The result map stays resident
/// while mapped, so its size is memory the whole session holds: 4 MiB was a fifth of a session's
/// RSS. GDB asks for at most half the 1 MiB packet per request and `--read` copies 256 KiB at a
/// time, and `make bench` measured test-run + copy at 256 KiB at ~8 GB/s on this host (2026-12-04),
/// the same as `--read`'s loop over the 4 MiB map: larger chunks bought nothing.
pub const SESSION_CHUNK: usize = 256 << 10;

impl KernelReader {
    /// Loads bpf/kmem.bpf.o (embedded) with the default 4 MiB chunk (the fastest bulk reads) and
    /// maps its result buffer. Needs root or CAP_BPF and CAP_PERFMON; errors say what to do.
    pub fn open() -> Result<KernelReader, String> {
        Self::open_with_chunk(MAX_CHUNK)
    }

    /// Like `open`, with `bytes` (1 to `MAX_CHUNK`) as the largest read one BPF run does. The
    /// result buffer is that big and all of it stays resident while mapped, so a caller that
    /// reads a few words (watch mode) asks for one page rather than 4 MiB.
    pub fn open_with_chunk(bytes: usize) -> Result<KernelReader, String> {
        let size = u32::try_from(bytes)
            .ok()
            .filter(|&b| b >= 1 && b as usize <= MAX_CHUNK)
            .ok_or_else(|| {
                format!("internal: BPF read chunk of {bytes} bytes; it must be 1 to {MAX_CHUNK}")
            })?;
        let mut obj = BpfObject::open_mem("kmem", KMEM_OBJ)?;
        // The map's value size and the program's bound on len must agree: kmem_chunk is the
        // only variable in .rodata (set_initial_value fails unless the sizes match exactly).
        obj.set_value_size("kmem_buf", size)?;
        obj.set_initial_value(".rodata", &size.to_ne_bytes())?;
        obj.load()?;
        let prog = obj.program("kmem_read")?;
        let map = obj.map_handle("kmem_buf")?;
        drop(obj);
        if map.value_size() != bytes {
            return Err(format!(
                "internal: the BPF result buffer is {} bytes, {bytes} were asked",
                map.value_size()
            ));
        }
        let view = map.mmap_readonly().map_err(|e| {
            format!(
                "cannot mmap the BPF result buffer ({e}): kmemd needs Linux 5.5 or later (BPF_F_MMAPABLE)"
            )
        })?;
        // The mapping keeps the map alive; the map fd is no longer needed.
        drop(map);
        log::debug!("BPF kernel reader ready, {} bytes per chunk", view.len());
        Ok(KernelReader { prog, view })
    }

    /// Largest read one BPF run does.
    pub fn chunk_size(&self) -> usize {
        self.view.len()
    }
}

/// Kernel memory with the [`VirtRead`] contract, through `read_prefix`.
impl VirtRead for KernelReader {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        read_prefix(self, addr.0, buf)
    }
}

impl ChunkRead for KernelReader {
    fn max_chunk(&self) -> usize {
        self.view.len()
    }

    fn read_chunk(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ChunkError> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut ctx = [0u8; 16];
        // raw_tp context: u64 arguments in the host's byte order.
        ctx[..8].copy_from_slice(&addr.to_ne_bytes());
        ctx[8..].copy_from_slice(&(buf.len() as u64).to_ne_bytes());
        let run = self
            .prog
            .test_run(&ctx, &[], 0)
            .map_err(|e| ChunkError::Broken(format!("BPF_PROG_TEST_RUN failed: {e}")))?;
        let ret = run.retval as i32;
        if ret != 0 {
            return Err(if ret < 0 {
                ChunkError::Fault(-ret)
            } else {
                ChunkError::Broken(format!("kmem_read returned {ret}"))
            });
        }
        self.view.copy_out(0, buf).map_err(ChunkError::Broken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory made of 4 KiB pages, some unmapped; faults zero-fill like the kernel helper, and
    /// the page pattern is never zero so stray zeros show.
    struct Fake {
        base: u64,
        mapped: Vec<bool>,
        chunk: usize,
        calls: usize,
    }

    fn byte_at(a: u64) -> u8 {
        (a.wrapping_mul(31) % 251) as u8 + 1
    }

    impl ChunkRead for Fake {
        fn max_chunk(&self) -> usize {
            self.chunk
        }
        fn read_chunk(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), ChunkError> {
            self.calls += 1;
            let ok = (0..buf.len() as u64).all(|i| {
                let a = addr + i;
                a >= self.base
                    && *self
                        .mapped
                        .get(((a - self.base) / 4096) as usize)
                        .unwrap_or(&false)
            });
            if !ok {
                buf.fill(0);
                return Err(ChunkError::Fault(libc::EFAULT));
            }
            for (i, b) in buf.iter_mut().enumerate() {
                *b = byte_at(addr + i as u64);
            }
            Ok(())
        }
    }

    fn fake(pages: &[bool], chunk: usize) -> Fake {
        Fake {
            base: 0x10_0000,
            mapped: pages.to_vec(),
            chunk,
            calls: 0,
        }
    }

    fn check(f: &mut Fake, addr: u64, len: usize, want: Option<usize>) {
        let mut buf = vec![0xeeu8; len];
        match (read_prefix(f, addr, &mut buf), want) {
            (Ok(n), Some(w)) => {
                assert_eq!(n, w, "prefix length at {addr:#x}+{len}");
                for (i, b) in buf[..n].iter().enumerate() {
                    assert_eq!(*b, byte_at(addr + i as u64), "byte {i}");
                }
            }
            (Err(e), None) => assert_eq!(e.addr, addr),
            (got, w) => panic!("read {addr:#x}+{len}: got {got:?}, want {w:?}"),
        }
    }

    #[test]
    fn whole_reads_across_chunks() {
        let mut f = fake(&[true; 8], 3 * 4096 + 5);
        check(&mut f, 0x10_0000 + 7, 8 * 4096 - 7, Some(8 * 4096 - 7));
        check(&mut f, 0x10_0000, 1, Some(1));
        let mut empty = [];
        assert_eq!(read_prefix(&mut f, 0x10_0000, &mut empty), Ok(0));
    }

    #[test]
    fn stops_exactly_at_the_first_hole() {
        let pages = [true, true, true, false, true, true];
        for chunk in [4096, 5000, 3 * 4096, 1 << 20] {
            let mut f = fake(&pages, chunk);
            // starts mid-page, crosses into page 3 (unmapped): prefix ends at its start
            check(&mut f, 0x10_0000 + 100, 5 * 4096, Some(3 * 4096 - 100));
            // ends exactly at the hole: everything
            check(&mut f, 0x10_0000 + 100, 3 * 4096 - 100, Some(3 * 4096 - 100));
            // one byte into the hole
            check(&mut f, 0x10_0000 + 4096 * 3 - 1, 2, Some(1));
            // starts in the hole
            check(&mut f, 0x10_0000 + 4096 * 3 + 8, 16, None);
            // starts before any mapping
            check(&mut f, 0x1000, 16, None);
        }
    }

    #[test]
    fn bisection_is_logarithmic() {
        let mut pages = vec![true; 1000];
        pages.push(false);
        let mut f = fake(&pages, 1 << 23);
        check(&mut f, 0x10_0000, 1001 * 4096, Some(1000 * 4096));
        assert!(f.calls <= 14, "{} calls", f.calls);
    }

    #[test]
    fn never_wraps_the_address_space() {
        let mut f = fake(&[true], 4096);
        let mut buf = [0u8; 8];
        assert!(read_prefix(&mut f, u64::MAX - 3, &mut buf).is_err());
    }
}
