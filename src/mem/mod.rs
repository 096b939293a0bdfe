//! The memory floor: what every memory source and every reader of memory shares, and nothing
//! else. Typed addresses, the one error type of a read, the read traits and their contract, and
//! beside them the bounds-checked byte readers (`bytes`, `elf`) and the VMCOREINFO parser
//! (`vmcoreinfo`) that dump files, vmlinux files and the live kernel all need.
//!
//! This module uses nothing else of the crate: every other module but `sys` sits above it.

pub mod bytes;
pub mod elf;
pub mod json;
pub mod text;
pub mod vmcoreinfo;

use std::fmt;

/// A kernel virtual address. A different type from `PhysAddr` so the two cannot be mixed up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VirtAddr(pub u64);

/// A physical address, as page-table entries and dump files store them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysAddr(pub u64);

impl VirtAddr {
    pub fn value(self) -> u64 {
        self.0
    }
    pub fn checked_add(self, n: u64) -> Option<VirtAddr> {
        self.0.checked_add(n).map(VirtAddr)
    }
}

impl PhysAddr {
    pub fn value(self) -> u64 {
        self.0
    }
    pub fn checked_add(self, n: u64) -> Option<PhysAddr> {
        self.0.checked_add(n).map(PhysAddr)
    }
}

impl fmt::Display for VirtAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::Display for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// Parses an address as people type it (`--read`, `monitor vtop`, `monitor sym`) and as sysfs
/// prints it: hex with or without `0x` (kernel addresses are always given in hex); decimal is not
/// accepted on purpose.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let hex = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u64::from_str_radix(hex, 16).map_err(|_| format!("'{s}' is not a hex address (e.g. 0xffffffff81000000)"))
}

/// What kind of failure stopped a read. Callers that only report it print the [`MemError`];
/// callers that act on it (the server's errno, tests, a reader that falls back) match this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemErrorKind {
    /// The page tables do not map the address: the entry at `level` is not present (not valid).
    /// Levels count from the bottom as the walker numbers them: 0 is the last level (PTE).
    NotPresent { level: u8 },
    /// The page exists but was left out when the dump was made (makedumpfile `-d`, an ELF
    /// segment whose `p_filesz` is below its `p_memsz`).
    Excluded,
    /// The source does not hold the address at all: no segment or bitmap covers it, a hole in
    /// physical memory, a page past the end of a truncated or incomplete file.
    NotInDump,
    /// The source holds the bytes, or the tables leading to them, but they are damaged: a page
    /// that does not decompress, a corrupt descriptor or page-table entry, a list that loops.
    Corrupt,
    /// The bytes are there but kmemd cannot decode them (e.g. a compression it has no decoder
    /// for).
    Unsupported,
    /// The access itself failed: the running kernel faulted (BPF EFAULT/ERANGE), the address
    /// cannot exist (non-canonical, outside the kernel half, wrapping past the top), or the file
    /// holding it could not be read.
    Fault,
}

impl MemErrorKind {
    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            MemErrorKind::NotPresent { .. } => "not present",
            MemErrorKind::Excluded => "excluded",
            MemErrorKind::NotInDump => "not in the dump",
            MemErrorKind::Corrupt => "corrupt",
            MemErrorKind::Unsupported => "unsupported",
            MemErrorKind::Fault => "fault",
        }
    }
}

/// Why memory could not be read: where, what kind of failure, and a sentence for people (the
/// detail names the level, pfn, segment or errno). The server turns every one of these into an
/// `Exx` reply (see `rsp::reply::mem_error`), so GDB says "Cannot access memory"; the text goes to
/// the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemError {
    pub addr: u64,
    pub kind: MemErrorKind,
    pub detail: String,
}

impl MemError {
    pub fn new(addr: u64, kind: MemErrorKind, detail: impl Into<String>) -> Self {
        MemError {
            addr,
            kind,
            detail: detail.into(),
        }
    }

    /// A failed read of the file that holds `addr` (a [`bytes::ReadAt`] error): the file ending
    /// before the bytes its headers promise is a page not in the dump (a truncated file); any
    /// other failure is the access itself failing. The detail is the read's own sentence.
    pub fn from_io(addr: u64, e: &std::io::Error) -> MemError {
        let kind = match e.kind() {
            std::io::ErrorKind::UnexpectedEof => MemErrorKind::NotInDump,
            _ => MemErrorKind::Fault,
        };
        MemError::new(addr, kind, e.to_string())
    }

    /// The same failure seen at another address (a virtual address whose physical page failed).
    pub fn at(self, addr: u64) -> MemError {
        MemError { addr, ..self }
    }
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot read {:#x}: {}", self.addr, self.detail)
    }
}

impl std::error::Error for MemError {}

/// Why something that learns a fact by reading memory (a task list, the kernel log, kallsyms,
/// a page table's root) could not: the memory error that stopped it, kept with its kind and
/// said with what was being read, or why what was read (or what is known about how to read it)
/// gives no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    /// Memory that had to be read could not be. `context` says what it was (may be empty).
    Mem { context: String, err: MemError },
    /// The bytes were read but make no sense (a list that loops, a count out of range), or a
    /// symbol or layout the read needs is not known.
    Invalid(String),
}

impl ReadError {
    /// A memory error met while reading `context` (e.g. "cannot read the first task at 0x..").
    pub fn mem(context: impl Into<String>, err: MemError) -> ReadError {
        ReadError::Mem {
            context: context.into(),
            err,
        }
    }

    /// The kind of the memory failure, when a memory read is what failed.
    pub fn kind(&self) -> Option<MemErrorKind> {
        match self {
            ReadError::Mem { err, .. } => Some(err.kind),
            ReadError::Invalid(_) => None,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Mem { context, err } if context.is_empty() => write!(f, "{err}"),
            ReadError::Mem { context, err } => write!(f, "{context}: {err}"),
            ReadError::Invalid(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ReadError {}

impl From<MemError> for ReadError {
    fn from(err: MemError) -> ReadError {
        ReadError::mem("", err)
    }
}

/// A dump's saved state that does not parse (a short NT_PRSTATUS note) is known to be wrong,
/// like bytes read that make no sense.
impl From<bytes::FormatError> for ReadError {
    fn from(e: bytes::FormatError) -> ReadError {
        ReadError::Invalid(e.detail)
    }
}

impl From<String> for ReadError {
    fn from(why: String) -> ReadError {
        ReadError::Invalid(why)
    }
}

impl From<&str> for ReadError {
    fn from(why: &str) -> ReadError {
        ReadError::Invalid(why.to_string())
    }
}

/// For the layers that report in text (monitor replies, `--info`, logs).
impl From<ReadError> for String {
    fn from(e: ReadError) -> String {
        e.to_string()
    }
}

/// Physical memory (a dump's). The contract, the same for both read traits:
/// - a read fills a prefix of `buf` with real bytes read at `paddr` and returns its length, at
///   least 1 when it returns `Ok` (0 only for an empty `buf`). It may stop early anywhere (the
///   end of a page, a segment or a file); the caller asks again for the rest.
/// - It fails only when the first byte cannot be read, and the error says why ([`MemError`]).
/// - It never returns bytes it did not read: no zero-fill for holes.
pub trait PhysRead {
    fn read_phys(&self, paddr: PhysAddr, buf: &mut [u8]) -> Result<usize, MemError>;
}

/// Virtual memory: the kernel's (live, or a dump's through its page tables) or one process's.
/// Same contract as [`PhysRead`]. `&mut self`: a live reader runs a BPF program per read.
/// Nothing that implements it writes to the kernel.
pub trait VirtRead {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError>;
}

impl<T: VirtRead + ?Sized> VirtRead for &mut T {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        (**self).read_virt(addr, buf)
    }
}

/// Reads exactly `buf.len()` bytes at `addr`, or fails at the first unreadable byte (the error
/// is the reader's, at that byte). Kernel data holds addresses as plain `u64`s, so the helpers
/// take those.
pub fn read_exact(mem: &mut dyn VirtRead, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
    let mut done = 0usize;
    while done < buf.len() {
        let at = addr
            .checked_add(done as u64)
            .ok_or_else(|| MemError::new(addr, MemErrorKind::Fault, "address overflows"))?;
        let rest = buf.get_mut(done..).unwrap_or_default();
        let n = mem.read_virt(VirtAddr(at), rest)?;
        if n == 0 || n > rest.len() {
            return Err(MemError::new(
                at,
                MemErrorKind::Fault,
                "the reader returned no bytes",
            ));
        }
        done += n;
    }
    Ok(())
}

/// Reads as much of `buf` as is readable from `addr` and returns the length read (0 when the
/// first byte is not): for scans that take what there is and skip the rest.
pub fn read_available(mem: &mut dyn VirtRead, addr: u64, buf: &mut [u8]) -> usize {
    let mut got = 0;
    while got < buf.len() {
        let Some(at) = addr.checked_add(got as u64) else {
            break;
        };
        let Some(rest) = buf.get_mut(got..) else { break };
        match mem.read_virt(VirtAddr(at), rest) {
            Ok(n) if n > 0 && n <= rest.len() => got += n,
            _ => break,
        }
    }
    got
}

/// Reads a little-endian u64 (both architectures kmemd serves are little-endian).
pub fn read_u64(mem: &mut dyn VirtRead, addr: u64) -> Result<u64, MemError> {
    let mut b = [0u8; 8];
    read_exact(mem, addr, &mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Largest span [`read_u64s`] reads at once; a wider one is read word by word.
const SPAN_READ_MAX: u64 = 4096;

/// The little-endian u64s at `base + off` for each of `offs`, in their order, from one read of
/// the span they cover when it is at most 4 KiB: on a live kernel one BPF call instead of one
/// per word (a task's saved registers are 7 to 13 words of one frame).
pub fn read_u64s(mem: &mut dyn VirtRead, base: u64, offs: &[u64]) -> Result<Vec<u64>, MemError> {
    let lo = offs.iter().copied().min().unwrap_or(0);
    let hi = offs.iter().map(|o| o.saturating_add(8)).max().unwrap_or(0);
    let span = hi.saturating_sub(lo);
    if span > SPAN_READ_MAX || offs.is_empty() {
        return offs
            .iter()
            .map(|o| read_u64(mem, base.wrapping_add(*o)))
            .collect();
    }
    let mut buf = vec![0u8; span as usize];
    read_exact(mem, base.wrapping_add(lo), &mut buf)?;
    Ok(offs
        .iter()
        .map(|o| {
            let i = (o - lo) as usize;
            buf.get(i..i + 8)
                .and_then(|w| w.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        })
        .collect())
}

/// Reads a little-endian u32.
pub fn read_u32(mem: &mut dyn VirtRead, addr: u64) -> Result<u32, MemError> {
    let mut b = [0u8; 4];
    read_exact(mem, addr, &mut b)?;
    Ok(u32::from_le_bytes(b))
}

/// Little-endian unsigned value of `size` (1 to 8) bytes at `addr`.
pub fn read_uint(mem: &mut dyn VirtRead, addr: u64, size: u64) -> Result<u64, MemError> {
    let n = usize::try_from(size.clamp(1, 8)).unwrap_or(8);
    let mut b = [0u8; 8];
    read_exact(mem, addr, &mut b[..n])?;
    Ok(u64::from_le_bytes(b))
}

/// Memory held in a buffer at a base address (tests, or bytes read earlier).
#[derive(Debug, Clone, Default)]
pub struct BufferMem {
    pub base: u64,
    pub bytes: Vec<u8>,
}

impl VirtRead for BufferMem {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let addr = addr.0;
        let start = addr
            .checked_sub(self.base)
            .and_then(|o| usize::try_from(o).ok())
            .filter(|&o| o < self.bytes.len())
            .ok_or_else(|| MemError::new(addr, MemErrorKind::NotInDump, "outside the buffer"))?;
        let src = self.bytes.get(start..).unwrap_or_default();
        let n = src.len().min(buf.len());
        buf.get_mut(..n)
            .ok_or_else(|| MemError::new(addr, MemErrorKind::NotInDump, "empty read"))?
            .copy_from_slice(src.get(..n).unwrap_or_default());
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the reads it serves from a buffer.
    struct Counted(BufferMem, usize);
    impl VirtRead for Counted {
        fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
            self.1 += 1;
            self.0.read_virt(addr, buf)
        }
    }

    #[test]
    fn words_of_a_small_span_come_from_one_read() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(0x3000).collect();
        let mut m = Counted(BufferMem { base: 0x1000, bytes }, 0);
        let offs = [0x28, 0x0, 0x10];
        let want: Vec<u64> = offs
            .iter()
            .map(|o| read_u64(&mut m, 0x1000 + o).unwrap())
            .collect();
        m.1 = 0;
        assert_eq!(read_u64s(&mut m, 0x1000, &offs).unwrap(), want);
        assert_eq!(m.1, 1, "one read for the span");
        // Past SPAN_READ_MAX: word by word, each where it is.
        let wide = [0x0, 0x2000];
        let got = read_u64s(&mut m, 0x1000, &wide).unwrap();
        assert_eq!(got[1], read_u64(&mut m, 0x3000).unwrap());
        // An unreadable word fails the whole read, as it would alone.
        assert!(read_u64s(&mut m, 0x1000, &[0x0, 0x2ffc]).is_err());
    }

    #[test]
    fn reads_cross_chunk_boundaries() {
        struct Pages(BufferMem);
        impl VirtRead for Pages {
            fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
                // One byte at a time, like a reader that stops at every boundary.
                let n = buf.len().min(1);
                self.0.read_virt(addr, &mut buf[..n])
            }
        }
        let mut m = Pages(BufferMem {
            base: 0x1000,
            bytes: (0..64u8).collect(),
        });
        assert_eq!(
            read_u64(&mut m, 0x1008).unwrap(),
            u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15])
        );
        assert_eq!(
            read_u32(&mut m, 0x103c).unwrap(),
            u32::from_le_bytes([60, 61, 62, 63])
        );
        assert!(read_u64(&mut m, 0x103c).is_err(), "runs past the end");
        assert!(read_u64(&mut m, 0xfff).is_err());
        assert!(read_exact(&mut m, u64::MAX - 2, &mut [0u8; 8]).is_err());
    }
}
