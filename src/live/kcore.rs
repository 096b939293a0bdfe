//! Kernel memory through `/proc/kcore` (the kernel's memory as an ELF core file): the fallback
//! reader where BPF cannot be loaded (watch mode reads its watched words through it then).

use crate::mem::bytes::{read_vec, Endian, FileSource, ReadAt};
use crate::mem::elf::{self, EHDR_SIZE, PT_LOAD};
use crate::mem::{MemError, MemErrorKind, VirtAddr, VirtRead};
use std::fs::File;
use std::os::unix::fs::FileExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    vaddr: u64,
    memsz: u64,
    offset: u64,
}

pub struct Kcore {
    src: FileSource,
    loads: Vec<Load>,
}

/// The PT_LOAD segments of an ELF64 little-endian core (both kmemd arches are LE), through the
/// one ELF reader; `None` when the file is not such a core.
fn parse_loads(src: &dyn ReadAt) -> Option<Vec<Load>> {
    let ehdr = read_vec(src, 0, EHDR_SIZE as u64, "ELF header").ok()?;
    if !elf::is_elf(&ehdr) || !elf::is_64bit(&ehdr) || elf::byte_order(&ehdr) != Some(Endian::Little) {
        return None;
    }
    let h = elf::Header::parse(&ehdr, Endian::Little).ok()?;
    let phs = h.program_headers(src, h.phnum(src).ok()?).ok()?;
    Some(
        phs.into_iter()
            .filter(|p| p.p_type == PT_LOAD)
            .map(|p| Load {
                offset: p.offset,
                vaddr: p.vaddr,
                memsz: p.memsz,
            })
            .collect(),
    )
}

impl Kcore {
    pub const PATH: &'static str = "/proc/kcore";

    pub fn open() -> Result<Kcore, String> {
        let file = File::open(Self::PATH).map_err(|e| {
            format!(
                "cannot open {}: {e} (needs root and CONFIG_PROC_KCORE)",
                Self::PATH
            )
        })?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", Self::PATH))?
            .len();
        let src = FileSource::new(file, len);
        let mut ehdr = [0u8; 64];
        src.read_exact_at(0, &mut ehdr)
            .map_err(|e| format!("cannot read {}: {e}", Self::PATH))?;
        let loads = parse_loads(&src)
            .ok_or_else(|| format!("{} is not an ELF64 core kmemd understands", Self::PATH))?;
        Ok(Kcore { src, loads })
    }
}

/// Kernel memory through /proc/kcore, with the [`VirtRead`] contract: a read stops at the end of
/// the segment holding `addr`.
impl VirtRead for Kcore {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let addr = addr.0;
        let fault = |detail: String| MemError::new(addr, MemErrorKind::Fault, detail);
        let seg = self
            .loads
            .iter()
            .find(|l| addr >= l.vaddr && l.vaddr.checked_add(l.memsz).is_some_and(|e| addr < e))
            .ok_or_else(|| fault(format!("{addr:#x} is not in any memory range of {}", Self::PATH)))?;
        let within = addr - seg.vaddr;
        let n = usize::try_from(seg.memsz - within)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let off = seg
            .offset
            .checked_add(within)
            .ok_or_else(|| fault(format!("{addr:#x} is past the end of {}", Self::PATH)))?;
        let dst = buf.get_mut(..n).unwrap_or_default();
        self.src
            .file()
            .read_exact_at(dst, off)
            .map_err(|e| fault(format!("{addr:#x} is not readable through {}: {e}", Self::PATH)))?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_load_segments_in_a_synthetic_core() {
        let mut img = vec![0u8; 64 + 2 * 56];
        img[0..4].copy_from_slice(b"\x7fELF");
        img[4] = 2;
        img[5] = 1;
        img[32..40].copy_from_slice(&64u64.to_le_bytes());
        img[54..56].copy_from_slice(&56u16.to_le_bytes());
        img[56..58].copy_from_slice(&2u16.to_le_bytes());
        // phdr 0: PT_NOTE, phdr 1: PT_LOAD
        img[64..68].copy_from_slice(&4u32.to_le_bytes());
        let p = 64 + 56;
        img[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        img[p + 8..p + 16].copy_from_slice(&0x1000u64.to_le_bytes());
        img[p + 16..p + 24].copy_from_slice(&0xffff_8880_0000_0000u64.to_le_bytes());
        img[p + 40..p + 48].copy_from_slice(&0x2000u64.to_le_bytes());
        let loads = parse_loads(&img).unwrap();
        assert_eq!(
            loads,
            vec![Load {
                vaddr: 0xffff_8880_0000_0000,
                memsz: 0x2000,
                offset: 0x1000
            }]
        );
        assert!(parse_loads(&vec![0u8; 64]).is_none());
        // A table past the end of the image is refused, not indexed.
        let mut bad = img.clone();
        bad[56..58].copy_from_slice(&200u16.to_le_bytes());
        assert!(parse_loads(&bad).is_none());
    }
}
