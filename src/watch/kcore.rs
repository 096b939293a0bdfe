//! Reading the watched word through `/proc/kcore` (the kernel's memory as an ELF core file):
//! the fallback value reader while the live BPF reader is not wired into watch mode.

use crate::mem::{MemError, MemErrorKind, VirtAddr, VirtRead};
use std::fs::File;
use std::os::unix::fs::FileExt;

const PT_LOAD: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    vaddr: u64,
    memsz: u64,
    offset: u64,
}

pub struct Kcore {
    file: File,
    loads: Vec<Load>,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(off..off.checked_add(2)?)?.try_into().ok()?,
    ))
}
fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        b.get(off..off.checked_add(8)?)?.try_into().ok()?,
    ))
}

/// Parses the program headers of an ELF64 little-endian core (both kmemd arches are LE).
fn parse_loads(ehdr: &[u8], read_at: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Option<Vec<Load>> {
    if ehdr.get(0..4)? != b"\x7fELF" || *ehdr.get(4)? != 2 || *ehdr.get(5)? != 1 {
        return None;
    }
    let phoff = u64_at(ehdr, 32)?;
    let phentsize = u16_at(ehdr, 54)? as usize;
    let phnum = u16_at(ehdr, 56)? as usize;
    if phentsize < 56 {
        return None;
    }
    let table = read_at(phoff, phentsize.checked_mul(phnum)?)?;
    let mut loads = Vec::new();
    for i in 0..phnum {
        let p = table.get(i * phentsize..(i + 1) * phentsize)?;
        if u32_at(p, 0)? == PT_LOAD {
            loads.push(Load {
                offset: u64_at(p, 8)?,
                vaddr: u64_at(p, 16)?,
                memsz: u64_at(p, 40)?,
            });
        }
    }
    Some(loads)
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
        let mut ehdr = [0u8; 64];
        file.read_exact_at(&mut ehdr, 0)
            .map_err(|e| format!("cannot read {}: {e}", Self::PATH))?;
        let read_at = |off: u64, len: usize| {
            let mut v = vec![0u8; len.min(1 << 20)];
            file.read_exact_at(&mut v, off).ok().map(|_| v)
        };
        let loads = parse_loads(&ehdr, &read_at)
            .ok_or_else(|| format!("{} is not an ELF64 core kmemd understands", Self::PATH))?;
        Ok(Kcore { file, loads })
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
        self.file
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
        let read_at = |off: u64, len: usize| img.get(off as usize..off as usize + len).map(|s| s.to_vec());
        let loads = parse_loads(&img[..64], &read_at).unwrap();
        assert_eq!(
            loads,
            vec![Load {
                vaddr: 0xffff_8880_0000_0000,
                memsz: 0x2000,
                offset: 0x1000
            }]
        );
        assert!(parse_loads(&[0u8; 64], &read_at).is_none());
        // A table past the end of the image is refused, not indexed.
        let mut bad = img.clone();
        bad[56..58].copy_from_slice(&200u16.to_le_bytes());
        let read_bad = |off: u64, len: usize| bad.get(off as usize..off as usize + len).map(|s| s.to_vec());
        assert!(parse_loads(&bad[..64], &read_bad).is_none());
    }
}
