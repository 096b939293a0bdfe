//! ELF64 headers, bounds-checked: the file header, the program header table (vmcores and
//! /proc/kcore) and the section header table (vmlinux). One reader for the three kinds of ELF
//! file kmemd opens; what each one requires of its file (ET_CORE, a symbol table, little
//! endian) and how it words a refusal stays with it.
//!
//! Field offsets are the ELF-64 gABI's (`Elf64_Ehdr`, `Elf64_Phdr`, `Elf64_Shdr`).

use super::bytes::{read_vec, Bytes, Endian, FormatError, ReadAt};

/// Size of `Elf64_Ehdr`.
pub const EHDR_SIZE: usize = 64;
/// Size of `Elf64_Phdr`.
pub const PHDR_SIZE: usize = 56;
/// Size of `Elf64_Shdr`.
pub const SHDR_SIZE: usize = 64;
/// `e_type` of a core file.
pub const ET_CORE: u16 = 4;
pub const PT_LOAD: u32 = 1;
pub const PT_NOTE: u32 = 4;
pub const SHT_SYMTAB: u32 = 2;
/// `e_phnum` value meaning "the real count is in section header 0's `sh_info`".
const PN_XNUM: u16 = 0xffff;
/// `e_shstrndx` value meaning "the real index is in section header 0's `sh_link`".
const SHN_XINDEX: u16 = 0xffff;

/// Whether `head` starts with the ELF magic.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF")
}

/// `EI_CLASS` is `ELFCLASS64`.
pub fn is_64bit(head: &[u8]) -> bool {
    head.get(4) == Some(&2)
}

/// The byte order `EI_DATA` names, or `None` when it names neither.
pub fn byte_order(head: &[u8]) -> Option<Endian> {
    match head.get(5) {
        Some(1) => Some(Endian::Little),
        Some(2) => Some(Endian::Big),
        _ => None,
    }
}

/// The fields of `Elf64_Ehdr` kmemd uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub endian: Endian,
    pub e_type: u16,
    pub e_machine: u16,
    pub e_phoff: u64,
    pub e_shoff: u64,
    pub e_phentsize: u16,
    pub e_phnum: u16,
    pub e_shentsize: u16,
    pub e_shnum: u16,
    pub e_shstrndx: u16,
}

/// One `Elf64_Phdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProgramHeader {
    pub p_type: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// One `Elf64_Shdr`, its name still an offset into the section name table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SectionHeader {
    pub name: u32,
    pub kind: u32,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
}

impl Header {
    /// The header fields of `head` (the file's first [`EHDR_SIZE`] bytes) in the byte order the
    /// caller took from `EI_DATA`. Errors name the field that does not fit.
    pub fn parse(head: &[u8], endian: Endian) -> Result<Header, FormatError> {
        let h = Bytes::new(head, endian, "ELF header");
        Ok(Header {
            endian,
            e_type: h.u16(16, "e_type")?,
            e_machine: h.u16(18, "e_machine")?,
            e_phoff: h.u64(32, "e_phoff")?,
            e_shoff: h.u64(40, "e_shoff")?,
            // e_ehsize (offset 52) is deliberately not read: QEMU ≥ 8 writes 8 there.
            e_phentsize: h.u16(54, "e_phentsize")?,
            e_phnum: h.u16(56, "e_phnum")?,
            e_shentsize: h.u16(58, "e_shentsize")?,
            e_shnum: h.u16(60, "e_shnum")?,
            e_shstrndx: h.u16(62, "e_shstrndx")?,
        })
    }

    /// The number of program headers: `e_phnum`, or section header 0's `sh_info` when a file
    /// has more than 65534 (PN_XNUM).
    pub fn phnum(&self, src: &dyn ReadAt) -> Result<u64, FormatError> {
        if self.e_phnum != PN_XNUM {
            return Ok(u64::from(self.e_phnum));
        }
        let sh0 = read_vec(src, self.e_shoff, 64, "section header 0 (holding e_phnum)")?;
        Ok(u64::from(
            Bytes::new(&sh0, self.endian, "section header 0").u32(44, "sh_info")?,
        ))
    }

    /// Checks that program header entries can hold an `Elf64_Phdr`.
    pub fn check_phentsize(&self) -> Result<(), FormatError> {
        if usize::from(self.e_phentsize) < PHDR_SIZE {
            return Err(FormatError::corrupt(format!(
                "corrupt ELF header: e_phentsize is {}, expected {PHDR_SIZE}",
                self.e_phentsize
            )));
        }
        Ok(())
    }

    /// The `phnum` program headers (see [`Header::phnum`]), read as one table whose size the
    /// file's length bounds.
    pub fn program_headers(&self, src: &dyn ReadAt, phnum: u64) -> Result<Vec<ProgramHeader>, FormatError> {
        self.check_phentsize()?;
        let entsize = u64::from(self.e_phentsize);
        self.entries(
            src,
            self.e_phoff,
            phnum,
            entsize,
            PHDR_SIZE,
            "ELF program header table",
            |ph| {
                // p_type, then p_offset, p_vaddr, p_paddr, p_filesz and p_memsz from offset 8.
                let [offset, vaddr, paddr, filesz, memsz] =
                    [8, 16, 24, 32, 40].map(|at| ph.u64(at, "program header"));
                Ok(ProgramHeader {
                    p_type: ph.u32(0, "p_type")?,
                    offset: offset?,
                    vaddr: vaddr?,
                    paddr: paddr?,
                    filesz: filesz?,
                    memsz: memsz?,
                })
            },
        )
    }

    /// The section headers and the index of the section name table, with the gABI's extended
    /// numbering (counts that do not fit in the header live in section header 0).
    pub fn section_headers(&self, src: &dyn ReadAt) -> Result<(Vec<SectionHeader>, u32), FormatError> {
        let shoff = self.e_shoff;
        let shentsize = u64::from(self.e_shentsize);
        let mut shnum = u64::from(self.e_shnum);
        let mut shstrndx = u32::from(self.e_shstrndx);
        if shoff == 0 {
            return Err(FormatError::unsupported("no section headers"));
        }
        if shentsize < SHDR_SIZE as u64 {
            return Err(FormatError::corrupt(format!(
                "section header size {shentsize} is below 64"
            )));
        }
        let sh0 = read_vec(src, shoff, SHDR_SIZE as u64, "section header 0")?;
        let sh0 = Bytes::new(&sh0, self.endian, "section header 0");
        if shnum == 0 {
            shnum = sh0.u64(32, "sh_size")?;
        }
        if shstrndx == u32::from(SHN_XINDEX) {
            shstrndx = sh0.u32(40, "sh_link")?;
        }
        let headers = self.entries(
            src,
            shoff,
            shnum,
            shentsize,
            SHDR_SIZE,
            "section header table",
            |h| {
                // sh_name, sh_type and sh_link are 32-bit, sh_addr, sh_offset and sh_size 64-bit.
                let [name, kind, link] = [0, 4, 40].map(|at| h.u32(at, "section header"));
                let [addr, offset, size] = [16, 24, 32].map(|at| h.u64(at, "section header"));
                Ok(SectionHeader {
                    name: name?,
                    kind: kind?,
                    addr: addr?,
                    offset: offset?,
                    size: size?,
                    link: link?,
                })
            },
        )?;
        Ok((headers, shstrndx))
    }

    /// A table of `count` entries `entsize` bytes apart from `off`, read at once (its size is
    /// bounded by the file's) and each entry's first `min` bytes parsed by `parse`.
    #[allow(clippy::too_many_arguments)]
    fn entries<T>(
        &self,
        src: &dyn ReadAt,
        off: u64,
        count: u64,
        entsize: u64,
        min: usize,
        what: &str,
        parse: impl Fn(&Bytes<'_>) -> Result<T, FormatError>,
    ) -> Result<Vec<T>, FormatError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let len = count
            .checked_mul(entsize)
            .ok_or_else(|| FormatError::corrupt(format!("corrupt ELF header: impossible {what} size")))?;
        let table = read_vec(src, off, len, what)?;
        let t = Bytes::new(&table, self.endian, what);
        (0..count)
            .map(|i| {
                let at = usize::try_from(i * entsize)
                    .map_err(|_| FormatError::corrupt(format!("{what}: entry offset too large")))?;
                parse(&t.sub(at, min, what)?)
            })
            .collect()
    }
}

/// One note, borrowed from its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Note<'a> {
    /// Name without its terminating NUL (e.g. `b"CORE"`).
    pub name: &'a [u8],
    pub n_type: u32,
    pub desc: &'a [u8],
}

/// Splits a note blob into notes (`Elf64_Nhdr` = 3 × u32, name and desc each padded to 4 bytes,
/// as the kernel's `append_elf_note` writes them). Stops at an all-zero header (the kernel's
/// final note) or at the end. A note that does not fit ends the walk with a warning: the notes
/// before it are still good.
pub fn parse_notes(data: &[u8], endian: Endian) -> Vec<Note<'_>> {
    let b = Bytes::new(data, endian, "note segment");
    let mut notes = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let header = (
            b.u32(off, "n_namesz"),
            b.u32(off + 4, "n_descsz"),
            b.u32(off + 8, "n_type"),
        );
        let (Ok(namesz), Ok(descsz), Ok(n_type)) = header else {
            if data.get(off..).is_some_and(|rest| rest.iter().any(|&c| c != 0)) {
                log::warn!(
                    "ignoring {} stray bytes at the end of the notes",
                    data.len() - off
                );
            }
            break;
        };
        if namesz == 0 && descsz == 0 && n_type == 0 {
            break;
        }
        let name_off = off + 12;
        let desc_off = name_off.checked_add(pad4(namesz as usize));
        let next = desc_off.and_then(|d| d.checked_add(pad4(descsz as usize)));
        let parts = desc_off.zip(next).and_then(|(desc_off, _)| {
            let name = b.slice(name_off, namesz as usize, "n_name").ok()?;
            let desc = b.slice(desc_off, descsz as usize, "n_desc").ok()?;
            Some((name, desc))
        });
        let (Some((name, desc)), Some(next)) = (parts, next) else {
            log::warn!("note at offset {off} (type {n_type}) does not fit in the note segment; ignoring it and the rest");
            break;
        };
        let name = match name.iter().position(|&c| c == 0) {
            Some(nul) => name.get(..nul).unwrap_or(name),
            None => name,
        };
        notes.push(Note { name, n_type, desc });
        off = next;
    }
    notes
}

fn pad4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

/// `NT_GNU_BUILD_ID` (glibc elf.h), in a note named "GNU".
pub const NT_GNU_BUILD_ID: u32 = 3;

/// The GNU build ID in a blob of ELF notes (a vmlinux's `.notes`, or /sys/kernel/notes, the
/// running kernel's copy of it), as lowercase hex: the form of VMCOREINFO's `BUILD-ID=` line.
pub fn gnu_build_id(notes: &[u8]) -> Option<String> {
    parse_notes(notes, Endian::Little)
        .into_iter()
        .find(|n| n.name == b"GNU" && n.n_type == NT_GNU_BUILD_ID && !n.desc.is_empty())
        .map(|n| n.desc.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF64 LE header with `phnum` program headers of `phentsize` at 64.
    fn header(phnum: u16, phentsize: u16) -> Vec<u8> {
        let mut v = vec![0u8; 64];
        v[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        v[16..18].copy_from_slice(&ET_CORE.to_le_bytes());
        v[18..20].copy_from_slice(&62u16.to_le_bytes());
        v[32..40].copy_from_slice(&64u64.to_le_bytes());
        v[54..56].copy_from_slice(&phentsize.to_le_bytes());
        v[56..58].copy_from_slice(&phnum.to_le_bytes());
        v
    }

    #[test]
    fn program_headers_are_read_and_bounded_by_the_file() {
        let mut img = header(2, 56);
        img.resize(64 + 2 * 56, 0);
        img[64..68].copy_from_slice(&PT_NOTE.to_le_bytes());
        let p = 64 + 56;
        img[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        img[p + 8..p + 16].copy_from_slice(&0x1000u64.to_le_bytes());
        img[p + 16..p + 24].copy_from_slice(&0xffff_8880_0000_0000u64.to_le_bytes());
        img[p + 24..p + 32].copy_from_slice(&0x2000u64.to_le_bytes());
        img[p + 40..p + 48].copy_from_slice(&0x3000u64.to_le_bytes());
        assert!(is_elf(&img) && is_64bit(&img));
        assert_eq!(byte_order(&img), Some(Endian::Little));
        let h = Header::parse(&img[..64], Endian::Little).unwrap();
        assert_eq!((h.e_type, h.e_machine), (ET_CORE, 62));
        let phs = h.program_headers(&img, h.phnum(&img).unwrap()).unwrap();
        assert_eq!(phs.len(), 2);
        assert_eq!(
            phs[1],
            ProgramHeader {
                p_type: PT_LOAD,
                offset: 0x1000,
                vaddr: 0xffff_8880_0000_0000,
                paddr: 0x2000,
                filesz: 0,
                memsz: 0x3000,
            }
        );
        // A table past the end of the file is refused, not indexed.
        let mut bad = img.clone();
        bad[56..58].copy_from_slice(&200u16.to_le_bytes());
        let h = Header::parse(&bad[..64], Endian::Little).unwrap();
        assert!(h.program_headers(&bad, 200).is_err());
        // Entries too small for an Elf64_Phdr.
        let h = Header::parse(&header(1, 32), Endian::Little).unwrap();
        let e = h.program_headers(&header(1, 32), 1).unwrap_err();
        assert_eq!(e.kind, crate::mem::bytes::FormatErrorKind::Corrupt);
        assert!(e.detail.contains("e_phentsize"), "{e}");
        assert!(h.program_headers(&header(0, 56), 0).is_err());
        let h = Header::parse(&header(0, 56), Endian::Little).unwrap();
        assert_eq!(h.program_headers(&header(0, 56), 0), Ok(Vec::new()));
        assert!(Header::parse(&img[..40], Endian::Little).is_err());
    }
}

#[cfg(test)]
mod note_tests {
    use super::*;

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(name);
        out.push(0);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out.extend_from_slice(desc);
        out.resize(out.len().div_ceil(4) * 4, 0);
        out
    }

    #[test]
    fn the_build_id_is_the_gnu_note_of_type_3() {
        let mut blob = note(b"Xen", 3, &[1, 2, 3, 4]);
        blob.extend(note(b"GNU", 1, &[9; 16]));
        blob.extend(note(b"GNU", NT_GNU_BUILD_ID, &[0x6a, 0x2b, 0x4a, 0xc7, 0x00]));
        assert_eq!(gnu_build_id(&blob).as_deref(), Some("6a2b4ac700"));
        assert_eq!(gnu_build_id(&blob[..blob.len() - 8]), None);
        assert_eq!(gnu_build_id(&[]), None);
        for len in 0..blob.len() {
            let _ = gnu_build_id(&blob[..len]);
        }
    }
}
