//! The running kernel's own VMCOREINFO, read through its direct (linear) map.
//!
//! `/sys/kernel/vmcoreinfo` prints only the PHYSICAL address and size of the VMCOREINFO ELF note
//! (`"%lx %x\n"`, kernel/ksysfs.c vmcoreinfo_show(), Linux 6.x). The BPF reader reads virtual
//! addresses, so the direct map's base has to be found: a candidate is right when the note's
//! header (`namesz` 11, type 0, name `VMCOREINFO`, kernel/vmcore_info.c) shows up at
//! `base + phys`, and the kernel's own text does not contradict it (see below).
//!
//! Candidates, most likely first:
//! - below a known direct-map address: a small BPF array map's value is kmalloc'ed
//!   (kernel/bpf/syscall.c __bpf_map_area_alloc), so kmemd plants one and learns its address;
//!   the base is that address rounded down to 1 GiB minus at most the top of RAM (/proc/iomem);
//! - x86_64: `page_offset_base` read from memory when kallsyms lists it (CONFIG_KALLSYMS_ALL);
//! - the architecture's unrandomized bases, each plus a whole number of GiB
//!   (`Arch::direct_map_candidates`: src/arch/x86_64.rs and src/arch/aarch64.rs say why).
//!   Debian's arm64 kernels under QEMU with a kaslr-seed land at e.g. 0xffff089300000000.
//!
//! A base whose note header matches is then confirmed with the kernel's own text: the first
//! bytes of `_text` read at its kernel address must equal those at `base + phys(_text)`, where
//! `phys(_text)` comes from the NUMBERs of the note just read (`Arch::image_phys`), or else
//! `/proc/iomem`'s `Kernel code` start. A base the text contradicts is skipped.

use crate::arch::Arch;
use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{read_exact, VirtRead};

pub const SYSFS_PATH: &str = "/sys/kernel/vmcoreinfo";
const GIB: u64 = 1 << 30;
/// The kernel reserves one page for the note (VMCOREINFO_NOTE_SIZE is about 4 KiB); anything
/// far larger in sysfs is not a note we should read.
const MAX_NOTE: u64 = 1 << 16;

/// The live VMCOREINFO and where it was found.
#[derive(Debug, Clone)]
pub struct LiveVmcoreinfo {
    /// Physical address of the ELF note (from sysfs).
    pub phys: u64,
    /// Direct-map base: the note was read at `direct_map + phys`.
    pub direct_map: u64,
    /// The note's text: `KEY=VALUE` lines.
    pub text: String,
    pub info: VmcoreInfo,
    /// How the base was confirmed (with `_text` or not), for logs.
    pub how: String,
}

impl LiveVmcoreinfo {
    /// Counts of `SYMBOL(...)` and `NUMBER(...)` lines.
    pub fn symbol_number_counts(&self) -> (usize, usize) {
        let e = self.info.entries();
        (
            e.iter().filter(|(k, _)| k.starts_with("SYMBOL(")).count(),
            e.iter().filter(|(k, _)| k.starts_with("NUMBER(")).count(),
        )
    }
}

/// Parses `/sys/kernel/vmcoreinfo` ("PHYSADDR SIZE", both hex without 0x).
pub fn parse_location(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace();
    let addr = u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok()?;
    let size = u64::from_str_radix(it.next()?.trim_start_matches("0x"), 16).ok()?;
    (addr != 0 && (24..=MAX_NOTE).contains(&size)).then_some((addr, size))
}

/// The note's location from sysfs, with the fix when it is missing.
pub fn location() -> Result<(u64, u64), String> {
    let text = std::fs::read_to_string(SYSFS_PATH).map_err(|e| {
        format!(
            "cannot read {SYSFS_PATH} ({e}): the kernel needs CONFIG_CRASH_CORE (CONFIG_VMCORE_INFO \
             since 6.9) and sysfs mounted (mount -t sysfs sysfs /sys)"
        )
    })?;
    parse_location(&text).ok_or_else(|| format!("{SYSFS_PATH} does not read `ADDRESS SIZE`: {text:?}"))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(off..off.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Whether `head` (at least 24 bytes) starts with the VMCOREINFO note header; returns descsz.
pub fn note_header(head: &[u8]) -> Option<u32> {
    // Elf64_Nhdr: namesz, descsz, type; the name padded to 4 bytes ("VMCOREINFO\0" -> 12).
    let (namesz, descsz, ntype) = (le32(head, 0)?, le32(head, 4)?, le32(head, 8)?);
    (namesz == 11 && ntype == 0 && head.get(12..23)? == b"VMCOREINFO\0").then_some(descsz)
}

/// The note's text (descriptor up to its first NUL), bounds-checked.
pub fn note_text(note: &[u8]) -> Option<String> {
    let descsz = note_header(note)? as usize;
    let desc = note.get(24..)?;
    let desc = desc.get(..descsz.min(desc.len()))?;
    let end = desc.iter().position(|&c| c == 0).unwrap_or(desc.len());
    Some(String::from_utf8_lossy(desc.get(..end)?).into_owned())
}

/// Physical ranges of `/proc/iomem` lines named `name`. Without CAP_SYS_ADMIN the file shows
/// zeros: those empty ranges are dropped, so there is nothing to learn then.
fn iomem(name: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string("/proc/iomem")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (range, what) = l.trim().split_once(" : ")?;
            (what.trim() == name).then_some(())?;
            let (a, b) = range.split_once('-')?;
            Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
        })
        .filter(|&(a, b)| b > a)
        .collect()
}

/// Hints for the base search and its confirmation, taken from the running system.
#[derive(Debug, Clone, Default)]
pub struct Hints {
    /// Address of `page_offset_base` (x86_64 kallsyms with data symbols).
    pub page_offset_base_sym: Option<u64>,
    /// First `System RAM` start in /proc/iomem (arm64 memstart).
    pub ram_start: Option<u64>,
    /// Last `System RAM` end in /proc/iomem.
    pub ram_end: Option<u64>,
    /// Some address known to be in the direct map (a kmalloc'ed BPF map value).
    pub linear_addr: Option<u64>,
    /// The kernel's `_text` (kallsyms), to confirm a base with.
    pub text_addr: Option<u64>,
    /// First `Kernel code` start in /proc/iomem: `_text`'s physical address when the note has
    /// no `phys_base`/`kimage_voffset`.
    pub kernel_code: Option<u64>,
}

impl Hints {
    /// `symbol` looks a name up in the running kernel's symbols (kallsyms).
    pub fn from_system(symbol: &dyn Fn(&str) -> Option<u64>) -> Hints {
        let ram = iomem("System RAM");
        // Dropped at the end of this function: only its address is kept.
        let plant = super::plant::Plant::new(64).ok();
        Hints {
            page_offset_base_sym: symbol("page_offset_base"),
            ram_start: ram.first().map(|r| r.0),
            ram_end: ram.iter().map(|r| r.1).max(),
            linear_addr: plant.map(|p| p.kernel_addr()),
            text_addr: symbol("_text"),
            kernel_code: iomem("Kernel code").first().map(|r| r.0),
        }
    }
}

/// Direct-map base candidates, most likely first: exact ones, then whole-GiB steps.
fn candidates(arch: Arch, exact: Option<u64>, hints: &Hints) -> Vec<(u64, u64)> {
    // (base, steps of 1 GiB above it to try)
    let mut out: Vec<(u64, u64)> = Vec::new();
    if let Some(b) = exact {
        out.push((b, 1));
    }
    if let Some(a) = hints.linear_addr {
        // base <= a and a - base <= top of RAM; bases are 1 GiB aligned.
        let span = hints.ram_end.unwrap_or(64 * GIB) / GIB + 1;
        let lowest = (a & !(GIB - 1)).saturating_sub(span * GIB);
        out.push((lowest, span + 1));
    }
    out.extend(arch.direct_map_candidates(hints.ram_start));
    out
}

/// Finds the note at `base + phys` for some candidate base that the kernel text does not
/// contradict (see the module documentation).
pub fn find(
    mem: &mut dyn VirtRead,
    arch: Arch,
    phys: u64,
    size: u64,
    hints: &Hints,
) -> Result<LiveVmcoreinfo, String> {
    let exact = hints.page_offset_base_sym.and_then(|sym| {
        let mut b = [0u8; 8];
        read_exact(mem, sym, &mut b).ok().map(|()| u64::from_le_bytes(b))
    });
    let mut head = [0u8; 24];
    let mut tried = 0u64;
    let mut contradicted = None;
    for (base, steps) in candidates(arch, exact, hints) {
        for i in 0..steps {
            let Some(b) = base.checked_add(i * GIB) else { break };
            let Some(va) = b.checked_add(phys) else { break };
            tried += 1;
            if read_exact(mem, va, &mut head).is_err() || note_header(&head).is_none() {
                continue;
            }
            let mut note = vec![0u8; size.min(MAX_NOTE) as usize];
            if read_exact(mem, va, &mut note).is_err() {
                continue;
            }
            let Some(text) = note_text(&note) else { continue };
            let info = VmcoreInfo::parse(text.as_bytes());
            let how = match confirm_with_text(mem, arch, b, &info, hints) {
                Ok(how) => how,
                Err(e) => {
                    contradicted = Some(e);
                    continue;
                }
            };
            log::debug!(
                "live VMCOREINFO at physical {phys:#x}, direct map {b:#x} ({tried} bases tried): {how}"
            );
            return Ok(LiveVmcoreinfo {
                phys,
                direct_map: b,
                text,
                info,
                how,
            });
        }
    }
    Err(contradicted.unwrap_or_else(|| {
        format!(
            "the VMCOREINFO note (physical {phys:#x}) is at none of the {tried} direct-map bases tried; \
             give -k the matching vmlinux for data symbols"
        )
    }))
}

/// Confirms a direct-map base with the kernel's own text. Fails only when the text is readable
/// at both places and differs (then the base is wrong); says so when it cannot check.
fn confirm_with_text(
    mem: &mut dyn VirtRead,
    arch: Arch,
    base: u64,
    info: &VmcoreInfo,
    hints: &Hints,
) -> Result<String, String> {
    let Some(text_addr) = hints.text_addr else {
        return Ok("note header found; _text not checked (not in kallsyms)".into());
    };
    let text_pa = arch.image_phys(text_addr, info).or(hints.kernel_code);
    let Some(text_pa) = text_pa else {
        return Ok("note header found; _text not checked (no phys_base, no /proc/iomem)".into());
    };
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    if read_exact(mem, text_addr, &mut a).is_err()
        || read_exact(mem, base.wrapping_add(text_pa), &mut b).is_err()
    {
        return Ok(format!(
            "note header found; _text (physical {text_pa:#x}) unreadable, not checked"
        ));
    }
    if a != b {
        return Err(format!(
            "the VMCOREINFO note shows up at direct-map base {base:#x}, but _text (physical {text_pa:#x}) \
             does not: refusing a base the kernel text contradicts"
        ));
    }
    Ok(format!(
        "note header and _text (physical {text_pa:#x}) both found at base {base:#x}"
    ))
}

/// Reads the live VMCOREINFO through `mem` (the live BPF reader), with hints from this system;
/// `symbol` looks names up in its kallsyms.
pub fn load(
    mem: &mut dyn VirtRead,
    arch: Arch,
    symbol: &dyn Fn(&str) -> Option<u64>,
) -> Result<LiveVmcoreinfo, String> {
    let (phys, size) = location()?;
    let hints = Hints::from_system(symbol);
    find(mem, arch, phys, size, &hints)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::x86_64::{
        __START_KERNEL_map as START_KERNEL_MAP, __PAGE_OFFSET_BASE_L4 as X86_BASE_L4,
        __PAGE_OFFSET_BASE_L5 as X86_BASE_L5,
    };
    use crate::mem::{MemError, MemErrorKind, VirtAddr};

    /// Sparse kernel memory: a few mapped regions; counts the reads made.
    struct Regions(Vec<(u64, Vec<u8>)>, usize);

    impl VirtRead for Regions {
        fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
            let addr = addr.0;
            self.1 += 1;
            for (base, bytes) in &self.0 {
                if let Some(off) = addr.checked_sub(*base).filter(|&o| o < bytes.len() as u64) {
                    let src = &bytes[off as usize..];
                    let n = src.len().min(buf.len());
                    buf[..n].copy_from_slice(&src[..n]);
                    return Ok(n);
                }
            }
            Err(MemError::new(addr, MemErrorKind::Fault, "unmapped"))
        }
    }

    /// Memory holding only the note at `at`.
    fn mem(at: u64, bytes: Vec<u8>) -> Regions {
        Regions(vec![(at, bytes)], 0)
    }

    /// A note whose descriptor is `text` and a NUL.
    fn note(text: &str) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&11u32.to_le_bytes());
        v.extend_from_slice(&(text.len() as u32 + 1).to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(b"VMCOREINFO\0\0");
        v.extend_from_slice(text.as_bytes());
        v.push(0);
        v.resize(4096, 0);
        v
    }

    /// A note whose descriptor is exactly `text`, without a NUL.
    fn note_unterminated(text: &str) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&11u32.to_le_bytes());
        n.extend_from_slice(&(text.len() as u32).to_le_bytes());
        n.extend_from_slice(&0u32.to_le_bytes());
        n.extend_from_slice(b"VMCOREINFO\0\0");
        n.extend_from_slice(text.as_bytes());
        n.resize(4096, 0);
        n
    }

    #[test]
    fn location_parses_sysfs_text() {
        assert_eq!(
            parse_location("0000000100c66000 1024\n"),
            Some((0x1_00c6_6000, 0x1024))
        );
        assert_eq!(
            parse_location("0x0000000100c66000 1024\n"),
            Some((0x1_00c6_6000, 0x1024))
        );
        assert_eq!(parse_location("garbage"), None);
        assert_eq!(parse_location("0 1024"), None);
        assert_eq!(parse_location("zz 10"), None);
        assert_eq!(parse_location("1000 ffffffff"), None);
    }

    #[test]
    fn parses_note_headers() {
        assert_eq!(note_text(&note_unterminated("A=1\n")).as_deref(), Some("A=1\n"));
        assert_eq!(note_text(&note("A=1\n")).as_deref(), Some("A=1\n"));
        let mut bad = note_unterminated("A=1\n");
        bad[12] = b'X';
        assert_eq!(note_text(&bad), None);
        assert_eq!(note_text(&bad[..10]), None);
    }

    #[test]
    fn finds_a_randomized_x86_base_by_search() {
        let base = X86_BASE_L4 + 37 * GIB;
        let phys = 0x1_00c6_6000;
        let mut m = mem(
            base + phys,
            note("OSRELEASE=6.1.0\nSYMBOL(init_uts_ns)=ffffffff82a12345\n"),
        );
        let v = find(&mut m, Arch::X86_64, phys, 0x1000, &Hints::default()).unwrap();
        assert_eq!(v.direct_map, base);
        assert_eq!(v.phys, phys);
        assert_eq!(v.info.symbol("init_uts_ns"), Some(0xffff_ffff_82a1_2345));
        assert_eq!(v.symbol_number_counts(), (1, 0));
    }

    #[test]
    fn finds_the_arm64_linear_map_from_ram_start() {
        let phys = 0x7fd1_0000;
        let ram = 0x4000_0000;
        let base = 0xffff_0000_0000_0000u64.wrapping_sub(ram);
        let mut m = mem(base.wrapping_add(phys), note("NUMBER(VA_BITS)=48\n"));
        let hints = Hints {
            ram_start: Some(ram),
            ..Hints::default()
        };
        let v = find(&mut m, Arch::Aarch64, phys, 0x1000, &hints).unwrap();
        assert_eq!(v.direct_map, base);
        assert_eq!(v.info.number("VA_BITS"), Some(48));
    }

    #[test]
    fn a_linear_address_narrows_the_arm64_search() {
        // A randomized linear map 0x1234 GiB above the unrandomized one.
        let base = 0xffff_0000_0000_0000u64 - 0x4000_0000 + 0x1234 * GIB;
        let phys = 0x4fd1_0000;
        let mut m = mem(base + phys, note("NUMBER(VA_BITS)=48\n"));
        let hints = Hints {
            ram_start: Some(0x4000_0000),
            ram_end: Some(0x4fff_ffff),
            linear_addr: Some(base + 0x4123_4560),
            ..Hints::default()
        };
        let v = find(&mut m, Arch::Aarch64, phys, 0x1000, &hints).unwrap();
        assert_eq!(v.direct_map, base);
        assert!(m.1 < 8, "{} reads", m.1);
    }

    #[test]
    fn a_wrong_header_is_not_accepted() {
        let mut bad = note("X=1\n");
        bad[12] = b'W';
        let mut m = mem(X86_BASE_L4 + 0x1000, bad);
        let e = find(&mut m, Arch::X86_64, 0x1000, 0x1000, &Hints::default()).unwrap_err();
        assert!(e.contains("none of the"), "{e}");
        assert_eq!(note_text(&[0u8; 10]), None);
    }

    const TEXT: u64 = 0xffff_ffff_9f40_0000;
    const PHYS_BASE: u64 = 0x1_2000_0000;
    const NOTE_PA: u64 = 0x1_00c6_6000;

    /// The note at `base`, the kernel text at `TEXT` and `text_at_base` where the direct map
    /// shows `_text`; `decoy` adds a note at a wrong base whose kernel text does not match.
    fn machine(base: u64, text_at_base: &[u8], decoy: Option<u64>) -> Regions {
        let text: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        let text_pa = TEXT - START_KERNEL_MAP + PHYS_BASE;
        let info = format!("OSRELEASE=6.1.0\nNUMBER(phys_base)={PHYS_BASE}\n");
        let mut r = vec![
            (TEXT, text),
            (base + NOTE_PA, note_unterminated(&info)),
            (base + text_pa, text_at_base.to_vec()),
        ];
        if let Some(d) = decoy {
            r.push((d + NOTE_PA, note_unterminated(&info)));
            r.push((d + text_pa, vec![0u8; 4096]));
        }
        Regions(r, 0)
    }

    fn with_text() -> Hints {
        Hints {
            text_addr: Some(TEXT),
            ..Hints::default()
        }
    }

    #[test]
    fn the_kernel_text_confirms_a_randomized_direct_map() {
        let text: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        let base = X86_BASE_L4 + 37 * GIB;
        let mut m = machine(base, &text, Some(X86_BASE_L4 + 5 * GIB));
        let v = find(&mut m, Arch::X86_64, NOTE_PA, 4096, &with_text()).unwrap();
        assert_eq!(v.direct_map, base);
        assert!(v.text.starts_with("OSRELEASE=6.1.0\n"), "{:?}", v.text);
        assert!(v.how.contains("_text"), "{}", v.how);
        // 5-level base.
        let base5 = X86_BASE_L5 + 3 * GIB;
        let mut m = machine(base5, &text, None);
        let v = find(&mut m, Arch::X86_64, NOTE_PA, 4096, &with_text()).unwrap();
        assert_eq!(v.direct_map, base5);
    }

    #[test]
    fn text_that_disagrees_is_refused() {
        let mut m = machine(X86_BASE_L4 + GIB, &[0xcc; 4096], None);
        let e = find(&mut m, Arch::X86_64, NOTE_PA, 4096, &with_text()).unwrap_err();
        assert!(e.contains("contradicts"), "{e}");
        let mut nothing = Regions(vec![], 0);
        assert!(find(&mut nothing, Arch::X86_64, NOTE_PA, 4096, &with_text()).is_err());
    }

    /// Debian arm64 under QEMU with a kaslr-seed: the linear map at 0xffff089300000000 (seen on
    /// a 6.1 guest), found by GiB steps and confirmed through `kimage_voffset`; a decoy note
    /// at a lower base whose `_text` differs is skipped.
    #[test]
    fn an_arm64_randomized_linear_map_is_confirmed_with_kimage_voffset() {
        let base = 0xffff_0893_0000_0000u64;
        let ram = 0x4000_0000u64;
        let phys = 0x7fd1_0000u64;
        let text_va = 0xffff_a0c1_c4a0_0000u64;
        let text_pa = 0x4020_0000u64;
        let voffset = text_va - text_pa;
        let info = format!("OSRELEASE=6.1.0-arm64\nNUMBER(kimage_voffset)={voffset:#x}\n");
        let text: Vec<u8> = (0..4096u32).map(|i| (i * 5 + 1) as u8).collect();
        let decoy = 0xffff_0000_0000_0000u64 - ram;
        let mut m = Regions(
            vec![
                (text_va, text.clone()),
                (base + phys, note(&info)),
                (base + text_pa, text),
                (decoy + phys, note(&info)),
                (decoy + text_pa, vec![0u8; 4096]),
            ],
            0,
        );
        let hints = Hints {
            ram_start: Some(ram),
            text_addr: Some(text_va),
            ..Hints::default()
        };
        let v = find(&mut m, Arch::Aarch64, phys, 0x1000, &hints).unwrap();
        assert_eq!(v.direct_map, base);
        assert!(v.how.contains("_text"), "{}", v.how);
        assert_eq!(v.info.osrelease(), Some("6.1.0-arm64"));
    }
}
