//! The running kernel's own VMCOREINFO, read through its direct (linear) map.
//!
//! `/sys/kernel/vmcoreinfo` prints only the PHYSICAL address and size of the VMCOREINFO ELF note
//! (`"%lx %x\n"`, kernel/ksysfs.c vmcoreinfo_show(), Linux 6.x). The BPF reader reads virtual
//! addresses, so the direct map's base has to be found: it is right when the note's header
//! (`namesz` 11, type 0, name `VMCOREINFO`, kernel/vmcore_info.c) shows up at `base + phys`.
//!
//! Candidates, most likely first:
//! - below a known direct-map address: a small BPF array map's value is kmalloc'ed
//!   (kernel/bpf/syscall.c __bpf_map_area_alloc), so kmemd plants one and learns its address;
//!   the base is that address rounded down to 1 GiB minus at most the top of RAM (/proc/iomem);
//! - x86_64: `page_offset_base` read from memory when kallsyms lists it (CONFIG_KALLSYMS_ALL);
//!   otherwise `__PAGE_OFFSET_BASE_L4` 0xffff888000000000 (or `_L5` 0xff11000000000000) plus a
//!   whole number of GiB: KASLR memory randomization aligns the direct map to PUD_SIZE
//!   (arch/x86/mm/kaslr.c kernel_randomize_memory()).
//! - arm64: `PAGE_OFFSET` = -(1 << VA_BITS) (arch/arm64/include/asm/memory.h) for VA_BITS
//!   48, 52, 47, 42, 39, 36, and the linear address of `pa` is `PAGE_OFFSET + pa - memstart_addr`
//!   (`__phys_to_virt`). `memstart_addr` is the first RAM rounded down to ARM64_MEMSTART_ALIGN
//!   (1 GiB with 4 KiB pages), lowered by whole steps when the linear region is randomized
//!   (arch/arm64/mm/init.c arm64_memblock_init()), so again: a base plus a whole number of GiB.

use crate::arch::Arch;
use crate::dump::vmcoreinfo::VmcoreInfo;

pub const SYSFS_PATH: &str = "/sys/kernel/vmcoreinfo";
const GIB: u64 = 1 << 30;
/// x86_64 direct-map bases without randomization (arch/x86/include/asm/page_64_types.h).
const X86_BASE_L4: u64 = 0xffff_8880_0000_0000;
const X86_BASE_L5: u64 = 0xff11_0000_0000_0000;
/// GiB steps tried above an unrandomized base: the 4-level randomization region is 64 TiB
/// (arch/x86/mm/kaslr.c: the direct map, vmalloc and vmemmap share it).
const X86_STEPS: u64 = 64 << 10;
/// GiB steps tried above an arm64 base: a randomized linear region moves within
/// (1 << (VA_BITS - 1)) - (1 << PARange) bytes (arch/arm64/mm/init.c), 128 Ki GiB at VA_BITS 48.
const ARM64_STEPS: u64 = 128 << 10;
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

/// Hints for the base search, taken from the running system.
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
}

impl Hints {
    pub fn from_system(kallsyms: &super::kallsyms::Kallsyms) -> Hints {
        // Without CAP_SYS_ADMIN /proc/iomem shows zeros: then there is nothing to learn.
        let ram: Vec<(u64, u64)> = std::fs::read_to_string("/proc/iomem")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (range, what) = l.trim().split_once(" : ")?;
                (what.trim() == "System RAM").then_some(())?;
                let (a, b) = range.split_once('-')?;
                Some((u64::from_str_radix(a, 16).ok()?, u64::from_str_radix(b, 16).ok()?))
            })
            .filter(|&(_, b)| b != 0)
            .collect();
        // Dropped at the end of this function: only its address is kept.
        let plant = super::plant::Plant::new(64).ok();
        Hints {
            page_offset_base_sym: kallsyms.lookup("page_offset_base"),
            ram_start: ram.first().map(|r| r.0),
            ram_end: ram.iter().map(|r| r.1).max(),
            linear_addr: plant.map(|p| p.kernel_addr()),
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
    let ram_start = hints.ram_start;
    match arch {
        Arch::X86_64 => {
            out.push((X86_BASE_L4, X86_STEPS));
            out.push((X86_BASE_L5, X86_STEPS));
        }
        Arch::Aarch64 => {
            let starts: Vec<u64> = match ram_start {
                Some(s) => vec![s & !(GIB - 1), s],
                None => vec![0x4000_0000, 0, 0x8000_0000],
            };
            for va_bits in [48u32, 52, 47, 42, 39, 36] {
                let page_offset = 0u64.wrapping_sub(1u64 << va_bits);
                for &s in &starts {
                    out.push((page_offset.wrapping_sub(s), ARM64_STEPS));
                }
            }
        }
    }
    out
}

/// Finds the note at `base + phys` for some candidate base. `read` fills all of `buf` from a
/// kernel virtual address or returns false.
pub fn find(
    read: &mut dyn FnMut(u64, &mut [u8]) -> bool,
    arch: Arch,
    phys: u64,
    size: u64,
    hints: &Hints,
) -> Result<LiveVmcoreinfo, String> {
    let exact = hints.page_offset_base_sym.and_then(|sym| {
        let mut b = [0u8; 8];
        read(sym, &mut b).then(|| u64::from_le_bytes(b))
    });
    let mut head = [0u8; 24];
    let mut tried = 0u64;
    for (base, steps) in candidates(arch, exact, hints) {
        for i in 0..steps {
            let Some(b) = base.checked_add(i * GIB) else { break };
            let Some(va) = b.checked_add(phys) else { break };
            tried += 1;
            if !read(va, &mut head) || note_header(&head).is_none() {
                continue;
            }
            let mut note = vec![0u8; size.min(MAX_NOTE) as usize];
            if !read(va, &mut note) {
                continue;
            }
            let Some(text) = note_text(&note) else { continue };
            log::debug!("live VMCOREINFO at physical {phys:#x}, direct map {b:#x} ({tried} bases tried)");
            return Ok(LiveVmcoreinfo {
                phys,
                direct_map: b,
                info: VmcoreInfo::parse(text.as_bytes()),
                text,
            });
        }
    }
    Err(format!(
        "the VMCOREINFO note (physical {phys:#x}) is at none of the {tried} direct-map bases tried; \
         give -k the matching vmlinux for data symbols"
    ))
}

/// Reads the live VMCOREINFO with the BPF reader.
pub fn load(
    reader: &mut super::bpf::KernelReader,
    kallsyms: &super::kallsyms::Kallsyms,
) -> Result<LiveVmcoreinfo, String> {
    let (phys, size) = location()?;
    let hints = Hints::from_system(kallsyms);
    let mut read = |addr: u64, buf: &mut [u8]| matches!(reader.read(addr, buf), Ok(n) if n == buf.len());
    find(&mut read, Arch::host(), phys, size, &hints)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Memory holding only the note at `at`.
    fn mem(at: u64, bytes: Vec<u8>) -> impl FnMut(u64, &mut [u8]) -> bool {
        move |addr, buf| {
            let Some(off) = addr.checked_sub(at) else {
                return false;
            };
            let Some(src) = usize::try_from(off)
                .ok()
                .and_then(|o| bytes.get(o..o.checked_add(buf.len())?))
            else {
                return false;
            };
            buf.copy_from_slice(src);
            true
        }
    }

    #[test]
    fn location_parses_sysfs_text() {
        assert_eq!(
            parse_location("0000000100c66000 1024\n"),
            Some((0x1_00c6_6000, 0x1024))
        );
        assert_eq!(parse_location("0 1024"), None);
        assert_eq!(parse_location("zz 10"), None);
        assert_eq!(parse_location("1000 ffffffff"), None);
    }

    #[test]
    fn finds_a_randomized_x86_base_by_search() {
        let base = X86_BASE_L4 + 37 * GIB;
        let phys = 0x1_00c6_6000;
        let mut read = mem(
            base + phys,
            note("OSRELEASE=6.1.0\nSYMBOL(init_uts_ns)=ffffffff82a12345\n"),
        );
        let v = find(&mut read, Arch::X86_64, phys, 0x1000, &Hints::default()).unwrap();
        assert_eq!(v.direct_map, base);
        assert_eq!(v.info.symbol("init_uts_ns"), Some(0xffff_ffff_82a1_2345));
        assert_eq!(v.symbol_number_counts(), (1, 0));
    }

    #[test]
    fn finds_the_arm64_linear_map_from_ram_start() {
        let phys = 0x7fd1_0000;
        let ram = 0x4000_0000;
        let base = 0xffff_0000_0000_0000u64.wrapping_sub(ram);
        let mut read = mem(base.wrapping_add(phys), note("NUMBER(VA_BITS)=48\n"));
        let hints = Hints {
            ram_start: Some(ram),
            ..Hints::default()
        };
        let v = find(&mut read, Arch::Aarch64, phys, 0x1000, &hints).unwrap();
        assert_eq!(v.direct_map, base);
        assert_eq!(v.info.number("VA_BITS"), Some(48));
    }

    #[test]
    fn a_linear_address_narrows_the_arm64_search() {
        // A randomized linear map 0x1234 GiB above the unrandomized one.
        let base = 0xffff_0000_0000_0000u64 - 0x4000_0000 + 0x1234 * GIB;
        let phys = 0x4fd1_0000;
        let mut tried = 0;
        let mut inner = mem(base + phys, note("NUMBER(VA_BITS)=48\n"));
        let mut read = |a: u64, b: &mut [u8]| {
            tried += 1;
            inner(a, b)
        };
        let hints = Hints {
            ram_start: Some(0x4000_0000),
            ram_end: Some(0x4fff_ffff),
            linear_addr: Some(base + 0x4123_4560),
            ..Hints::default()
        };
        let v = find(&mut read, Arch::Aarch64, phys, 0x1000, &hints).unwrap();
        assert_eq!(v.direct_map, base);
        assert!(tried < 8, "{tried} reads");
    }

    #[test]
    fn a_wrong_header_is_not_accepted() {
        let mut bad = note("X=1\n");
        bad[12] = b'W';
        let mut read = mem(X86_BASE_L4 + 0x1000, bad);
        let e = find(&mut read, Arch::X86_64, 0x1000, 0x1000, &Hints::default()).unwrap_err();
        assert!(e.contains("none of the"), "{e}");
        assert_eq!(note_text(&[0u8; 10]), None);
    }
}
