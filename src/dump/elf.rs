//! ELF64 vmcores: the kernel's /proc/vmcore copy, QEMU `dump-guest-memory` ELF output and
//! `makedumpfile -E`. Physical memory comes from PT_LOAD segments (p_paddr → p_offset), notes from
//! PT_NOTE segments.

use crate::arch::Arch;
use crate::mem::bytes::{read_vec, Endian, FormatError, ReadAt};
use crate::mem::elf::{self, is_elf, EHDR_SIZE, ET_CORE, PT_LOAD, PT_NOTE};
use crate::mem::{MemError, MemErrorKind};

/// One PT_LOAD: physical memory `[paddr, paddr + memsz)`, of which the first `filesz` bytes are
/// in the file at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub vaddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
    /// Bytes of `filesz` actually present (less than `filesz` when the file is truncated).
    pub present: u64,
}

impl Segment {
    /// Length of physical memory the segment describes.
    pub fn span(&self) -> u64 {
        self.memsz.max(self.filesz)
    }

    fn contains(&self, paddr: u64) -> bool {
        paddr >= self.paddr && paddr - self.paddr < self.span()
    }
}

/// A parsed ELF64 core file.
#[derive(Debug, Clone)]
pub struct ElfCore {
    pub arch: Arch,
    pub endian: Endian,
    /// PT_LOADs sorted by physical address.
    pub segments: Vec<Segment>,
    /// Contents of each PT_NOTE segment.
    pub note_blobs: Vec<Vec<u8>>,
    /// True when some PT_LOAD data lies past the end of the file.
    pub truncated: bool,
}

impl ElfCore {
    pub fn parse(src: &dyn ReadAt) -> Result<ElfCore, FormatError> {
        let head = read_vec(src, 0, EHDR_SIZE as u64, "ELF header")?;
        if !is_elf(&head) {
            return Err(FormatError::unsupported("not an ELF file"));
        }
        let endian = elf::byte_order(&head).ok_or_else(|| {
            FormatError::corrupt("corrupt ELF header: unknown byte order (EI_DATA); is this a vmcore?")
        })?;
        if !elf::is_64bit(&head) {
            return Err(FormatError::unsupported(
                "this is a 32-bit ELF file; kmemd reads 64-bit (x86_64 and aarch64) vmcores only",
            ));
        }
        let h = elf::Header::parse(&head, endian)?;
        if h.e_type != ET_CORE {
            return Err(FormatError::unsupported(format!(
                "this ELF file is not a core dump (e_type {}); give kmemd -c the vmcore, and the \
                 vmlinux with -k",
                h.e_type
            )));
        }
        let arch = Arch::from_elf_machine(h.e_machine).ok_or_else(|| {
            FormatError::unsupported(format!(
                "this vmcore is for ELF machine {}; kmemd reads x86_64 and aarch64 dumps",
                h.e_machine
            ))
        })?;
        let phnum = h.phnum(src)?;
        h.check_phentsize()?;
        if phnum == 0 {
            return Err(FormatError::corrupt(
                "this ELF core has no program headers, so no memory: the vmcore is corrupt",
            ));
        }
        let mut segments = Vec::new();
        let mut note_blobs = Vec::new();
        let mut truncated = false;
        for (i, ph) in h.program_headers(src, phnum)?.into_iter().enumerate() {
            let (offset, filesz) = (ph.offset, ph.filesz);
            match ph.p_type {
                PT_LOAD => {
                    let (paddr, memsz) = (ph.paddr, ph.memsz);
                    let seg_end = offset.checked_add(filesz);
                    let addr_end = paddr.checked_add(memsz.max(filesz));
                    if seg_end.is_none() || addr_end.is_none() {
                        return Err(FormatError::corrupt(format!(
                            "corrupt ELF program header {i}: its range overflows 64 bits"
                        )));
                    }
                    let present = src.len().saturating_sub(offset).min(filesz);
                    if present < filesz {
                        truncated = true;
                    }
                    segments.push(Segment {
                        paddr,
                        vaddr: ph.vaddr,
                        offset,
                        filesz,
                        memsz,
                        present,
                    });
                }
                PT_NOTE => note_blobs.push(read_vec(src, offset, filesz, "PT_NOTE segment")?),
                _ => {}
            }
        }
        if segments.is_empty() {
            return Err(FormatError::corrupt(
                "this ELF core has no PT_LOAD segments, so no memory: the vmcore is corrupt",
            ));
        }
        if truncated {
            log::warn!("the vmcore is truncated: memory past the end of the file cannot be read");
        }
        segments.sort_by_key(|s| s.paddr);
        Ok(ElfCore {
            arch,
            endian,
            segments,
            note_blobs,
            truncated,
        })
    }

    fn find(&self, paddr: u64) -> Option<&Segment> {
        let idx = self.segments.partition_point(|s| s.paddr <= paddr);
        let candidate = idx.checked_sub(1).and_then(|i| self.segments.get(i));
        match candidate {
            Some(s) if s.contains(paddr) => Some(s),
            // Overlapping segments (unusual): fall back to a scan.
            _ => self.segments.iter().find(|s| s.contains(paddr)),
        }
    }

    /// Reads physical memory: a prefix of `buf` from the one segment holding `paddr`.
    pub fn read_phys(&self, src: &dyn ReadAt, paddr: u64, buf: &mut [u8]) -> Result<usize, MemError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let seg = self.find(paddr).ok_or_else(|| {
            MemError::new(
                paddr,
                MemErrorKind::NotInDump,
                "physical address is not in the dump (no PT_LOAD covers it)",
            )
        })?;
        let within = paddr - seg.paddr;
        if within >= seg.filesz {
            return Err(MemError::new(
                paddr,
                MemErrorKind::Excluded,
                "physical page is not in the dump file (excluded when the dump was made: p_filesz < p_memsz)",
            ));
        }
        if within >= seg.present {
            return Err(MemError::new(
                paddr,
                MemErrorKind::NotInDump,
                "physical address is past the end of the truncated vmcore file",
            ));
        }
        let n = usize::try_from(seg.present - within)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let dst = buf.get_mut(..n).unwrap_or_default();
        src.read_exact_at(seg.offset + within, dst)
            .map_err(|e| MemError::from_io(paddr, &e))?;
        Ok(n)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dump::notes::tests::{note, prstatus};
    use crate::mem::elf::PHDR_SIZE;
    /// ELF e_machine values (include/uapi/linux/elf-em.h).
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;
    use crate::dump::testutil::*;
    use crate::mem::bytes::FormatErrorKind;

    /// A PT_LOAD description for [`build`]: physical address, data bytes, extra memsz.
    pub(crate) struct Load {
        pub paddr: u64,
        pub data: Vec<u8>,
        pub tail: u64,
    }

    /// Builds an ELF64 core. `qemu_layout` puts two section headers at 64 and the program headers
    /// after them, with e_ehsize = 8, as QEMU ≥ 8 does.
    pub(crate) fn build(machine: u16, notes: &[u8], loads: &[Load], qemu_layout: bool) -> Vec<u8> {
        let mut v = Vec::new();
        put(&mut v, 0, b"\x7fELF\x02\x01\x01");
        put_u16(&mut v, 16, ET_CORE);
        put_u16(&mut v, 18, machine);
        put_u32(&mut v, 20, 1);
        let phnum = 1 + loads.len();
        let (phoff, shoff, ehsize) = if qemu_layout {
            (64 + 128, 64, 8)
        } else {
            (64, 0, 64)
        };
        put_u64(&mut v, 32, phoff as u64);
        put_u64(&mut v, 40, shoff);
        put_u16(&mut v, 52, ehsize);
        put_u16(&mut v, 54, PHDR_SIZE as u16);
        put_u16(&mut v, 56, phnum as u16);
        if qemu_layout {
            put_u16(&mut v, 58, 64);
            put_u16(&mut v, 60, 2);
            put(&mut v, 64, &[0u8; 128]);
        }
        let mut data_off = phoff + phnum * PHDR_SIZE;
        let note_off = data_off;
        data_off += notes.len();
        let mut ph = Vec::new();
        put_u32(&mut ph, 0, PT_NOTE);
        put_u64(&mut ph, 8, note_off as u64);
        put_u64(&mut ph, 32, notes.len() as u64);
        put_u64(&mut ph, 40, notes.len() as u64);
        let mut bodies = Vec::new();
        for (i, l) in loads.iter().enumerate() {
            let base = (i + 1) * PHDR_SIZE;
            put_u32(&mut ph, base, PT_LOAD);
            put_u64(&mut ph, base + 8, data_off as u64);
            put_u64(&mut ph, base + 16, l.paddr);
            put_u64(&mut ph, base + 24, l.paddr);
            put_u64(&mut ph, base + 32, l.data.len() as u64);
            put_u64(&mut ph, base + 40, l.data.len() as u64 + l.tail);
            bodies.push((data_off, &l.data));
            data_off += l.data.len();
        }
        put(&mut v, phoff, &ph);
        put(&mut v, note_off, notes);
        for (off, d) in bodies {
            put(&mut v, off, d);
        }
        v
    }

    pub(crate) fn pattern(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn sample(qemu: bool) -> Vec<u8> {
        let mut notes = note("CORE", 1, &prstatus(Arch::X86_64, 5, 0));
        notes.extend(note("VMCOREINFO", 0, b"PAGESIZE=4096\n"));
        let loads = [
            Load {
                paddr: 0x10_0000,
                data: pattern(1, 0x3000),
                tail: 0x1000,
            },
            Load {
                paddr: 0x1000,
                data: pattern(2, 0x2000),
                tail: 0,
            },
        ];
        build(EM_X86_64, &notes, &loads, qemu)
    }

    #[test]
    fn classic_and_qemu_layouts_parse_the_same() {
        for qemu in [false, true] {
            let file = sample(qemu);
            let core = ok(ElfCore::parse(&file));
            assert_eq!(core.arch, Arch::X86_64);
            assert_eq!(core.segments.len(), 2);
            assert_eq!(
                core.segments.first().map(|s| s.paddr),
                Some(0x1000),
                "sorted by paddr"
            );
            assert_eq!(core.note_blobs.len(), 1);
            assert!(!core.truncated);
        }
    }

    #[test]
    fn reads_return_file_bytes_and_stop_at_segment_ends() {
        let file = sample(true);
        let core = ok(ElfCore::parse(&file));
        let mut buf = [0u8; 0x100];
        assert_eq!(ok(core.read_phys(&file, 0x1010, &mut buf)), 0x100);
        assert_eq!(
            buf.to_vec(),
            pattern(2, 0x2000).get(0x10..0x110).unwrap_or_default()
        );
        // Near the end of the first segment only the rest of the segment comes back.
        assert_eq!(ok(core.read_phys(&file, 0x2f80, &mut buf)), 0x80);
        assert_eq!(buf.get(..0x80), pattern(2, 0x2000).get(0x1f80..));
        use crate::mem::MemErrorKind::{Excluded, NotInDump};
        assert_eq!(kind(core.read_phys(&file, 0x3000, &mut buf)), NotInDump);
        assert_eq!(kind(core.read_phys(&file, 0x10_3000, &mut buf)), Excluded);
        let hole = err(core.read_phys(&file, 0x3000, &mut buf));
        assert!(hole.contains("not in the dump"), "{hole}");
        let tail = err(core.read_phys(&file, 0x10_3000, &mut buf));
        assert!(tail.contains("p_filesz < p_memsz"), "{tail}");
        assert!(core.read_phys(&file, u64::MAX, &mut buf).is_err());
    }

    #[test]
    fn truncated_file_reads_the_present_part_only() {
        let mut file = sample(false);
        file.truncate(file.len() - 0x1800);
        let core = ok(ElfCore::parse(&file));
        assert!(core.truncated);
        let mut buf = [0u8; 0x1000];
        assert_eq!(ok(core.read_phys(&file, 0x1000, &mut buf)), 0x800);
        assert_eq!(
            kind(core.read_phys(&file, 0x1800, &mut buf)),
            crate::mem::MemErrorKind::NotInDump
        );
        let e = err(core.read_phys(&file, 0x1800, &mut buf));
        assert!(e.contains("truncated"), "{e}");
    }

    #[test]
    fn wrong_kinds_of_elf_are_rejected_with_a_reason() {
        let mut exec = sample(false);
        put_u16(&mut exec, 16, 2);
        assert!(err(ElfCore::parse(&exec)).contains("not a core dump"));
        assert_eq!(format_kind(ElfCore::parse(&exec)), FormatErrorKind::Unsupported);
        let mut arm = sample(false);
        put_u16(&mut arm, 18, EM_AARCH64);
        assert_eq!(ok(ElfCore::parse(&arm)).arch, Arch::Aarch64);
        put_u16(&mut arm, 18, 40);
        assert!(err(ElfCore::parse(&arm)).contains("machine 40"));
        assert_eq!(format_kind(ElfCore::parse(&arm)), FormatErrorKind::Unsupported);
        let mut elf32 = sample(false);
        put(&mut elf32, 4, &[1]);
        assert!(err(ElfCore::parse(&elf32)).contains("32-bit"));
        assert_eq!(format_kind(ElfCore::parse(&elf32)), FormatErrorKind::Unsupported);
        let mut huge = sample(false);
        put_u16(&mut huge, 56, 0xfffe);
        assert!(err(ElfCore::parse(&huge)).contains("truncated"));
        assert_eq!(format_kind(ElfCore::parse(&huge)), FormatErrorKind::Truncated);
        let mut order = sample(false);
        put(&mut order, 5, &[7]);
        assert_eq!(format_kind(ElfCore::parse(&order)), FormatErrorKind::Corrupt);
    }

    #[test]
    fn every_truncation_of_the_headers_fails_cleanly() {
        let file = sample(true);
        let first_data = 64 + 128 + 3 * PHDR_SIZE + 1000;
        for cut in 0..first_data.min(file.len()) {
            let part = file.get(..cut).unwrap_or_default().to_vec();
            // Either an error, or (once the headers and notes are whole) a usable truncated core.
            if let Ok(core) = ElfCore::parse(&part) {
                assert!(core.truncated);
            }
        }
    }
}
