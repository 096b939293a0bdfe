//! Just enough of an ELF64 vmlinux for KASLR: its architecture, its section headers and symbol
//! lookups by name (`_text`). Every offset and length from the file is checked; a damaged file
//! gives `Err`, never a panic, and allocations are capped by the file's size.

use crate::arch::Arch;
use crate::mem::bytes::{read_vec, Bytes, Endian, FileSource, ReadAt};
use crate::mem::elf::{self, gnu_build_id, EHDR_SIZE, PT_LOAD, SHT_SYMTAB};
use std::path::Path;

const SYM_SIZE: usize = 24;

/// One section header, with its name resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    pub kind: u32,
    pub addr: u64,
    pub offset: u64,
    pub size: u64,
    pub link: u32,
}

/// A parsed vmlinux: sections and the raw symbol table, searched on demand.
#[derive(Debug, Clone)]
pub struct Vmlinux {
    pub arch: Arch,
    pub sections: Vec<Section>,
    /// How many PT_LOAD segments the file has. GDB moves every section by qOffsets' `Text=`
    /// only when there are one or two (gdb/remote.c get_offsets, via symfile_map_offsets_to_segments);
    /// with more it moves just .text, .data and .bss (Debian's x86_64 vmlinux has four, arm64's one).
    pub load_segments: usize,
    symtab: Vec<u8>,
    strtab: Vec<u8>,
    /// The GNU build ID of its note sections, as lowercase hex (the form VMCOREINFO's
    /// `BUILD-ID=` line and /sys/kernel/notes give).
    pub build_id: Option<String>,
    /// The release `linux_banner` names ("Linux version RELEASE (...").
    pub release: Option<String>,
}

/// `sh_type` of a note section, `sh_type` of a section without file bytes (ELF gABI).
const SHT_NOTE: u32 = 7;
const SHT_NOBITS: u32 = 8;

/// The release in a `linux_banner` ("Linux version 6.1.0-57-amd64 (debian-kernel@...) ...",
/// init/version.c since Linux 2.6).
pub fn banner_release(banner: &[u8]) -> Option<String> {
    let text = banner.split(|&c| c == 0).next()?;
    let rest = text.strip_prefix(b"Linux version ")?;
    let word: Vec<u8> = rest
        .iter()
        .copied()
        .take_while(|c| c.is_ascii_graphic())
        .collect();
    (!word.is_empty()).then(|| String::from_utf8_lossy(&word).into_owned())
}

/// Who a kernel is, as far as its vmlinux can be matched: its build ID and release, each when
/// known, and what to call it in a sentence ("the dump", "the running kernel").
#[derive(Debug, Clone, Copy)]
pub struct KernelIdentity<'a> {
    pub what: &'a str,
    pub arch: Arch,
    pub build_id: Option<&'a str>,
    pub release: Option<&'a str>,
}

/// Checks that `v` (read from `path`) is the vmlinux of `kernel`: the architecture, then the
/// build ID when both sides have one (VMCOREINFO carries it from Linux 5.13 on), else the
/// release string. A wrong vmlinux gives wrong symbols, layouts and KASLR offsets, all
/// silently, so a mismatch is an error naming both sides; `force` turns it into a warning
/// (the architecture is never forced: nothing of another architecture's vmlinux applies).
/// When neither side can be compared, a warning says so and the vmlinux is taken.
pub fn check_identity(v: &Vmlinux, path: &Path, kernel: &KernelIdentity, force: bool) -> Result<(), String> {
    let what = kernel.what;
    if v.arch != kernel.arch {
        return Err(format!(
            "{} is an {} vmlinux, but {what} is an {} kernel: give -k the vmlinux of {what}",
            path.display(),
            v.arch,
            kernel.arch
        ));
    }
    let describe = |release: Option<&str>, id: Option<&str>| {
        format!(
            "Linux {} with build ID {}",
            release.unwrap_or("(release unknown)"),
            id.unwrap_or("(none)")
        )
    };
    let mismatch = match (
        (v.build_id.as_deref(), kernel.build_id),
        (v.release.as_deref(), kernel.release),
    ) {
        ((Some(a), Some(b)), _) => !a.eq_ignore_ascii_case(b),
        (_, (Some(a), Some(b))) => a != b,
        _ => {
            log::warn!(
                "cannot check that {} is the vmlinux of {what}: no build ID or release to compare                  on one side ({} vs {})",
                path.display(),
                describe(v.release.as_deref(), v.build_id.as_deref()),
                describe(kernel.release, kernel.build_id)
            );
            false
        }
    };
    if !mismatch {
        return Ok(());
    }
    let sentence = format!(
        "{} does not match {what}: the vmlinux is {}, {what} is {}",
        path.display(),
        describe(v.release.as_deref(), v.build_id.as_deref()),
        describe(kernel.release, kernel.build_id)
    );
    if force {
        log::warn!("{sentence}; using it anyway (--force-vmlinux): symbols and layouts may be wrong");
        return Ok(());
    }
    Err(format!(
        "{sentence}. Give -k the vmlinux of that kernel (Debian: linux-image-{}-dbg), or add \
         --force-vmlinux to use this one anyway",
        kernel.release.unwrap_or("RELEASE")
    ))
}

/// Little-endian fields of the ELF header, a section header or a symbol (both kernel
/// architectures kmemd serves are little-endian; big-endian files are refused up front).
fn le<'a>(b: &'a [u8], what: &'a str) -> Bytes<'a> {
    Bytes::new(b, Endian::Little, what)
}

/// The file at `path` for positioned reads (a FIFO or device given as -k is refused by its
/// type, never waited on: see `FileSource::open`).
fn open(path: &Path) -> Result<FileSource, String> {
    Ok(FileSource::open(path)?)
}

/// NUL-terminated string at `off` in a string table.
fn str_at(table: &[u8], off: u32) -> Result<&str, String> {
    let rest = table
        .get(off as usize..)
        .ok_or_else(|| format!("string offset {off} is past the string table"))?;
    let len = rest
        .iter()
        .position(|&c| c == 0)
        .ok_or_else(|| format!("string at {off} is not terminated"))?;
    std::str::from_utf8(rest.get(..len).unwrap_or_default())
        .map_err(|_| format!("string at {off} is not UTF-8"))
}

impl Vmlinux {
    /// Reads the headers and symbol table of a vmlinux file.
    pub fn load(path: &Path) -> Result<Vmlinux, String> {
        Self::from_source(&open(path)?).map_err(|e| {
            format!(
                "{} is not a usable vmlinux: {e}. Give -k the uncompressed ELF vmlinux with symbols \
                 (not a bzImage/Image), e.g. /usr/lib/debug/boot/vmlinux-$(uname -r)",
                path.display()
            )
        })
    }

    /// Parses a vmlinux held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Vmlinux, String> {
        Self::from_source(&bytes)
    }

    fn from_source(src: &dyn ReadAt) -> Result<Vmlinux, String> {
        let eh = read_vec(src, 0, EHDR_SIZE as u64, "ELF header")?;
        if !elf::is_elf(&eh) {
            return Err("no ELF magic".into());
        }
        if !elf::is_64bit(&eh) {
            return Err("not a 64-bit ELF file".into());
        }
        if elf::byte_order(&eh) != Some(Endian::Little) {
            return Err("not a little-endian ELF file (kmemd serves x86_64 and aarch64)".into());
        }
        let h = elf::Header::parse(&eh, Endian::Little)?;
        let machine = h.e_machine;
        let arch = Arch::from_elf_machine(machine)
            .ok_or_else(|| format!("ELF machine {machine} is neither x86_64 nor aarch64"))?;
        // A vmlinux without program headers (or with a damaged table) still has its sections.
        let load_segments = h
            .phnum(src)
            .and_then(|n| h.program_headers(src, n))
            .map_or(0, |phs| phs.iter().filter(|p| p.p_type == PT_LOAD).count());
        let (raw, shstrndx) = h.section_headers(src)?;
        let shstr = raw
            .get(shstrndx as usize)
            .ok_or_else(|| format!("section name table index {shstrndx} does not exist"))?;
        let names = read_vec(src, shstr.offset, shstr.size, "section name table")?;
        let sections = raw
            .into_iter()
            .map(|h| {
                Ok(Section {
                    name: str_at(&names, h.name)?.to_string(),
                    kind: h.kind,
                    addr: h.addr,
                    offset: h.offset,
                    size: h.size,
                    link: h.link,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;

        let (symtab, strtab) = match sections.iter().find(|s| s.kind == SHT_SYMTAB) {
            Some(st) => {
                let strs = sections
                    .get(st.link as usize)
                    .ok_or("the symbol table links to a missing string table")?;
                (
                    read_vec(src, st.offset, st.size, "symbol table")?,
                    read_vec(src, strs.offset, strs.size, "symbol string table")?,
                )
            }
            None => (Vec::new(), Vec::new()),
        };
        // Note sections are a few hundred bytes; a damaged one only loses the build ID.
        let build_id = sections
            .iter()
            .filter(|s| s.kind == SHT_NOTE && s.size <= 1 << 20)
            .filter_map(|s| read_vec(src, s.offset, s.size, "note section").ok())
            .find_map(|n| gnu_build_id(&n));
        let mut v = Vmlinux {
            arch,
            sections,
            load_segments,
            symtab,
            strtab,
            build_id,
            release: None,
        };
        v.release = v
            .symbol_bytes(src, "linux_banner", 256)
            .and_then(|b| banner_release(&b));
        Ok(v)
    }

    /// Up to `len` file bytes at a symbol's link-time address, from the section that holds it.
    fn symbol_bytes(&self, src: &dyn ReadAt, name: &str, len: u64) -> Option<Vec<u8>> {
        let addr = self.symbol(name)?;
        let s = self
            .sections
            .iter()
            .find(|s| s.kind != SHT_NOBITS && s.addr != 0 && addr >= s.addr && addr - s.addr < s.size)?;
        let within = addr - s.addr;
        let off = s.offset.checked_add(within)?;
        read_vec(src, off, len.min(s.size - within), name).ok()
    }

    /// A vmlinux of these sections and no symbols, for tests of what is built on its layout.
    #[cfg(test)]
    pub(crate) fn from_sections(arch: Arch, sections: Vec<Section>, load_segments: usize) -> Vmlinux {
        Vmlinux {
            arch,
            sections,
            load_segments,
            symtab: Vec::new(),
            strtab: Vec::new(),
            build_id: None,
            release: None,
        }
    }

    pub fn has_symbols(&self) -> bool {
        self.symtab.len() >= 2 * SYM_SIZE
    }

    /// Value of the first symbol with this name. Symbols with broken names are skipped.
    pub fn symbol(&self, name: &str) -> Option<u64> {
        self.symtab.chunks_exact(SYM_SIZE).skip(1).find_map(|sym| {
            let sym = le(sym, "symbol");
            (str_at(&self.strtab, sym.u32(0, "st_name").ok()?).ok()? == name)
                .then(|| sym.u64(8, "st_value").ok())
                .flatten()
        })
    }

    /// Every named symbol with its value and an nm-like type letter (functions `T`/`t`, objects
    /// `D`/`d`, others `?`); section and file symbols are left out. Names are borrowed from the
    /// file's string table, so a caller keeps only what it wants.
    pub fn symbols(&self) -> impl Iterator<Item = (&str, u64, char)> + '_ {
        self.symtab.chunks_exact(SYM_SIZE).skip(1).filter_map(|sym| {
            let sym = le(sym, "symbol");
            let name = str_at(&self.strtab, sym.u32(0, "st_name").ok()?).ok()?;
            let info = sym.u8(4, "st_info").ok()?;
            let value = sym.u64(8, "st_value").ok()?;
            let global = info >> 4 != 0; // STB_LOCAL is 0
            let kind = match info & 0xf {
                2 => 'T',             // STT_FUNC
                1 => 'D',             // STT_OBJECT
                3 | 4 => return None, // STT_SECTION, STT_FILE
                _ => '?',
            };
            let kind = if global || kind == '?' {
                kind
            } else {
                kind.to_ascii_lowercase()
            };
            (!name.is_empty() && value != 0).then_some((name, value, kind))
        })
    }

    /// The bytes of a section, read again from the file this was loaded from.
    pub fn section_bytes(&self, path: &Path, name: &str) -> Result<Vec<u8>, String> {
        let s = self
            .section(name)
            .ok_or_else(|| format!("{} has no {name} section", path.display()))?;
        Ok(read_vec(&open(path)?, s.offset, s.size, name)?)
    }

    /// The end of a per-CPU section linked at address 0 (x86_64 SMP: `.data..percpu`, whose
    /// symbols are offsets into each CPU's copy, not addresses; arm64 links it at its place in
    /// the image). KASLR moves none of those symbols.
    pub fn zero_based_percpu_end(&self) -> Option<u64> {
        self.section(".data..percpu")
            .filter(|s| s.addr == 0 && s.size != 0)
            .map(|s| s.size)
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mem::elf::SHDR_SIZE;
    use byteorder::{ByteOrder, LittleEndian};
    /// ELF e_machine values (include/uapi/linux/elf-em.h).
    const EM_X86_64: u16 = 62;
    const EM_AARCH64: u16 = 183;

    /// A minimal ELF64 LE: null, .text, .data..percpu (addr 0), .symtab, .strtab, .shstrtab.
    pub(crate) fn synthetic_vmlinux(machine: u16, text: u64) -> Vec<u8> {
        let shstr = b"\0.text\0.data..percpu\0.symtab\0.strtab\0.shstrtab\0".to_vec();
        let name = |n: &str| {
            let needle = format!("{n}\0");
            shstr
                .windows(needle.len())
                .position(|w| w == needle.as_bytes())
                .unwrap() as u32
        };
        let strtab = b"\0_stext\0_text\0".to_vec();
        let mut symtab = vec![0u8; SYM_SIZE]; // null symbol
        for (off, val) in [(1u32, text), (8u32, text)] {
            let mut s = [0u8; SYM_SIZE];
            LittleEndian::write_u32(&mut s[0..], off);
            s[4] = 0x10; // STB_GLOBAL, STT_NOTYPE
            LittleEndian::write_u16(&mut s[6..], 1);
            LittleEndian::write_u64(&mut s[8..], val);
            symtab.extend_from_slice(&s);
        }
        let mut body = Vec::new();
        let symtab_off = EHDR_SIZE as u64;
        body.extend_from_slice(&symtab);
        let strtab_off = symtab_off + symtab.len() as u64;
        body.extend_from_slice(&strtab);
        let shstr_off = strtab_off + strtab.len() as u64;
        body.extend_from_slice(&shstr);
        let shoff = EHDR_SIZE as u64 + body.len() as u64;

        let mut eh = vec![0u8; EHDR_SIZE];
        eh[..4].copy_from_slice(b"\x7fELF");
        eh[4] = 2;
        eh[5] = 1;
        eh[6] = 1;
        LittleEndian::write_u16(&mut eh[16..], 2); // ET_EXEC
        LittleEndian::write_u16(&mut eh[18..], machine);
        LittleEndian::write_u64(&mut eh[40..], shoff);
        LittleEndian::write_u16(&mut eh[52..], EHDR_SIZE as u16);
        LittleEndian::write_u16(&mut eh[58..], SHDR_SIZE as u16);
        LittleEndian::write_u16(&mut eh[60..], 6);
        LittleEndian::write_u16(&mut eh[62..], 5);

        let sh = |name: u32, kind: u32, addr: u64, off: u64, size: u64, link: u32| {
            let mut s = [0u8; SHDR_SIZE];
            LittleEndian::write_u32(&mut s[0..], name);
            LittleEndian::write_u32(&mut s[4..], kind);
            LittleEndian::write_u64(&mut s[16..], addr);
            LittleEndian::write_u64(&mut s[24..], off);
            LittleEndian::write_u64(&mut s[32..], size);
            LittleEndian::write_u32(&mut s[40..], link);
            s
        };
        let mut out = eh;
        out.extend_from_slice(&body);
        out.extend_from_slice(&[0u8; SHDR_SIZE]);
        out.extend_from_slice(&sh(name(".text"), 1, text, 0, 0x1000, 0));
        out.extend_from_slice(&sh(name(".data..percpu"), 1, 0, 0, 0x2000, 0));
        out.extend_from_slice(&sh(
            name(".symtab"),
            SHT_SYMTAB,
            0,
            symtab_off,
            symtab.len() as u64,
            4,
        ));
        out.extend_from_slice(&sh(name(".strtab"), 3, 0, strtab_off, strtab.len() as u64, 0));
        out.extend_from_slice(&sh(name(".shstrtab"), 3, 0, shstr_off, shstr.len() as u64, 0));
        out
    }

    #[test]
    fn reads_sections_and_symbols() {
        let elf = synthetic_vmlinux(EM_X86_64, 0xffff_ffff_8100_0000);
        let v = Vmlinux::parse(&elf).unwrap();
        assert_eq!(v.arch, Arch::X86_64);
        assert_eq!(v.sections.len(), 6);
        assert_eq!(v.symbol("_text"), Some(0xffff_ffff_8100_0000));
        assert_eq!(v.symbol("_stext"), Some(0xffff_ffff_8100_0000));
        assert_eq!(v.symbol("_tex"), None);
        assert_eq!(v.section(".data..percpu").map(|s| s.addr), Some(0));
        assert_eq!(v.section(".text").map(|s| s.size), Some(0x1000));
        assert_eq!(v.load_segments, 0, "no program headers");
        let arm = Vmlinux::parse(&synthetic_vmlinux(EM_AARCH64, 0xffff_8000_8000_0000)).unwrap();
        assert_eq!(arm.arch, Arch::Aarch64);
        assert_eq!(arm.symbol("_text"), Some(0xffff_8000_8000_0000));
    }

    #[test]
    fn loads_from_a_file() {
        let path = std::env::temp_dir().join(format!("kmemd-vmlinux-{}", std::process::id()));
        std::fs::write(&path, synthetic_vmlinux(EM_X86_64, 0xffff_ffff_8100_0000)).unwrap();
        let v = Vmlinux::load(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!(v.unwrap().symbol("_text"), Some(0xffff_ffff_8100_0000));
        assert!(Vmlinux::load(Path::new("/nonexistent/vmlinux")).is_err());
    }

    #[test]
    fn the_release_comes_from_the_banner() {
        let b = b"Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP\n\0xx";
        assert_eq!(banner_release(b).as_deref(), Some("6.1.0-57-amd64"));
        assert_eq!(banner_release(b"Linux version \0"), None);
        assert_eq!(banner_release(b"Linux versio"), None);
        assert_eq!(banner_release(b""), None);
    }

    fn identity(build_id: Option<&'static str>, release: Option<&'static str>) -> KernelIdentity<'static> {
        KernelIdentity {
            what: "the dump",
            arch: Arch::X86_64,
            build_id,
            release,
        }
    }

    #[test]
    fn a_vmlinux_of_another_kernel_is_refused_naming_both() {
        let path = Path::new("/tmp/vmlinux-x");
        let mut v = Vmlinux::parse(&synthetic_vmlinux(EM_X86_64, 0xffff_ffff_8100_0000)).unwrap();
        v.build_id = Some("6a2b4ac7".into());
        v.release = Some("6.1.0-57-amd64".into());
        // Same build ID (any case): taken, whatever the releases say.
        assert!(check_identity(
            &v,
            path,
            &identity(Some("6A2B4AC7"), Some("6.1.0-57-amd64")),
            false
        )
        .is_ok());
        // Another build ID: refused, both sides named, the override named.
        let e =
            check_identity(&v, path, &identity(Some("d34ebfe0"), Some("6.12.9-amd64")), false).unwrap_err();
        for want in [
            "/tmp/vmlinux-x does not match the dump",
            "Linux 6.1.0-57-amd64 with build ID 6a2b4ac7",
            "Linux 6.12.9-amd64 with build ID d34ebfe0",
            "--force-vmlinux",
        ] {
            assert!(e.contains(want), "{want:?} not in {e}");
        }
        // The build ID decides even when the releases agree (a rebuilt kernel).
        assert!(check_identity(
            &v,
            path,
            &identity(Some("d34ebfe0"), Some("6.1.0-57-amd64")),
            false
        )
        .is_err());
        // Forced: taken.
        assert!(check_identity(&v, path, &identity(Some("d34ebfe0"), None), true).is_ok());
        // No build ID on one side: the releases decide.
        assert!(check_identity(&v, path, &identity(None, Some("6.1.0-57-amd64")), false).is_ok());
        let e = check_identity(&v, path, &identity(None, Some("6.12.9-amd64")), false).unwrap_err();
        assert!(e.contains("Linux 6.12.9-amd64 with build ID (none)"), "{e}");
        v.build_id = None;
        assert!(check_identity(&v, path, &identity(Some("d34ebfe0"), Some("6.12.9-amd64")), false).is_err());
        // Nothing to compare: taken (with a warning).
        v.release = None;
        assert!(check_identity(&v, path, &identity(Some("d34ebfe0"), Some("6.12.9-amd64")), false).is_ok());
        // Another architecture: refused even when forced.
        let arm = identity(None, None);
        let arm = KernelIdentity {
            arch: Arch::Aarch64,
            ..arm
        };
        let e = check_identity(&v, path, &arm, true).unwrap_err();
        assert!(
            e.contains("is an x86_64 vmlinux, but the dump is an aarch64 kernel"),
            "{e}"
        );
    }

    #[test]
    fn malformed_files_are_errors_not_panics() {
        let good = synthetic_vmlinux(EM_X86_64, 0xffff_ffff_8100_0000);
        // Every truncation.
        for len in 0..good.len() {
            let _ = Vmlinux::parse(&good[..len]);
        }
        assert!(Vmlinux::parse(&good[..good.len() - 1]).is_err());
        assert!(Vmlinux::parse(&good[..63]).is_err());
        // Every single-byte corruption of the headers and tables, with a few nasty values.
        for at in 0..good.len() {
            for v in [0x00u8, 0xff, 0x7f, 0x80] {
                let mut bad = good.clone();
                bad[at] = v;
                if let Ok(p) = Vmlinux::parse(&bad) {
                    let _ = p.symbol("_text");
                }
            }
        }
        let mut wrong_machine = good.clone();
        wrong_machine[18] = 3; // EM_386
        assert!(Vmlinux::parse(&wrong_machine).is_err());
        let mut big_endian = good.clone();
        big_endian[5] = 2;
        assert!(Vmlinux::parse(&big_endian).is_err());
        let mut huge_count = good.clone();
        LittleEndian::write_u16(&mut huge_count[60..], 0xfff0);
        assert!(Vmlinux::parse(&huge_count).is_err());
        let mut huge_shoff = good;
        LittleEndian::write_u64(&mut huge_shoff[40..], u64::MAX - 8);
        assert!(Vmlinux::parse(&huge_shoff).is_err());
    }
}
