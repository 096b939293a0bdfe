//! The running kernel's VMCOREINFO, read through its direct map.
//!
//! `/sys/kernel/vmcoreinfo` gives only the PHYSICAL address and size of the VMCOREINFO ELF note
//! (kernel/ksysfs.c: `paddr_vmcoreinfo_note()`, `VMCOREINFO_NOTE_SIZE`). A BPF reader reads
//! virtual addresses, so the direct map's base (x86_64 `page_offset_base`, which KASLR memory
//! randomization moves in 1 GiB steps, arch/x86/mm/kaslr.c) must be found first. kallsyms
//! often lacks `page_offset_base` (data symbols need CONFIG_KALLSYMS_ALL), so the base is
//! searched: a candidate is right when the note's header (`namesz` 11, type 0, name
//! `VMCOREINFO`) shows up at `base + note_phys`. The result is then confirmed with the kernel's
//! own text: the first bytes of `_text` read at its kernel address must equal those at
//! `base + phys(_text)`, where `phys(_text) = _text - __START_KERNEL_map + phys_base` (x86_64,
//! arch/x86/include/asm/page_64.h) and `phys_base` comes from the note just read
//! (`NUMBER(phys_base)`), or from `/proc/iomem`'s `Kernel code` line.

use super::{read_exact, KernelMem};
use crate::arch::Arch;
use crate::dump::vmcoreinfo::VmcoreInfo;

/// x86_64 `__START_KERNEL_map` (arch/x86/include/asm/page_64_types.h).
const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// x86_64 direct-map bases without memory randomization: 4-level `__PAGE_OFFSET_BASE_L4`,
/// 5-level `__PAGE_OFFSET_BASE_L5` (arch/x86/include/asm/page_64_types.h). Randomized bases are
/// these plus a multiple of 1 GiB (PUD_SIZE), below the vmalloc area.
const X86_BASE_L4: u64 = 0xffff_8880_0000_0000;
const X86_BASE_L5: u64 = 0xff11_0000_0000_0000;
const GIB: u64 = 1 << 30;
/// How many 1 GiB steps are tried: the randomized region spans at most 64 TiB on 4-level
/// paging (the direct map, vmalloc and vmemmap share ~120 TiB of entropy and the direct map
/// must stay below the vmalloc region).
const X86_STEPS_L4: u64 = 64 << 10;
/// arm64 linear map starts (`PAGE_OFFSET` = -(1 << VA_BITS), arch/arm64/include/asm/memory.h)
/// for VA_BITS 48, 52, 47, 42, 39; the linear address of `pa` is `pa - memstart_addr +
/// PAGE_OFFSET`, and `memstart_addr` is tried from /proc/iomem's first System RAM.
const ARM64_PAGE_OFFSETS: &[u64] = &[
    0xffff_0000_0000_0000,
    0xfff0_0000_0000_0000,
    0xffff_8000_0000_0000,
    0xffff_fc00_0000_0000,
    0xffff_ff80_0000_0000,
];

/// The VMCOREINFO note location from `/sys/kernel/vmcoreinfo` (`"%lx %x"`).
pub fn note_location() -> Result<(u64, u64), String> {
    const PATH: &str = "/sys/kernel/vmcoreinfo";
    let text = std::fs::read_to_string(PATH)
        .map_err(|e| format!("cannot read {PATH}: {e} (the kernel needs CONFIG_VMCORE_INFO/CRASH_CORE)"))?;
    parse_note_location(&text).ok_or_else(|| format!("{PATH} does not read `ADDRESS SIZE`: {text:?}"))
}

pub fn parse_note_location(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace();
    let addr = it.next()?;
    let size = it.next()?;
    let addr = u64::from_str_radix(addr.trim_start_matches("0x"), 16).ok()?;
    let size = u64::from_str_radix(size.trim_start_matches("0x"), 16).ok()?;
    (addr != 0 && size > 0 && size <= 1 << 20).then_some((addr, size))
}

/// Checks that `bytes` starts with the VMCOREINFO ELF note header and returns its text.
pub fn note_text(bytes: &[u8]) -> Option<String> {
    let w = |o: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(o..o + 4)?.try_into().ok()?)) };
    let (namesz, descsz, ntype) = (w(0)?, w(4)?, w(8)?);
    // Elf_Nhdr with name "VMCOREINFO\0" (kernel/crash_core.c, type 0).
    if namesz != 11 || ntype != 0 || bytes.get(12..23)? != b"VMCOREINFO\0" {
        return None;
    }
    let desc = bytes.get(24..)?; // name padded to 4 bytes: 12 + 12
    let desc = desc.get(..(descsz as usize).min(desc.len()))?;
    let end = desc.iter().position(|&c| c == 0).unwrap_or(desc.len());
    String::from_utf8(desc.get(..end)?.to_vec()).ok()
}

/// Physical ranges of `/proc/iomem` lines whose name is `name` (root sees real addresses).
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

/// The direct-map base and the live VMCOREINFO text, found as the module documentation says.
/// `text_addr` is the kernel's `_text` (kallsyms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveVmcoreinfo {
    pub direct_map_base: u64,
    pub text: String,
    /// How the base was confirmed, for logs.
    pub how: String,
}

/// Finds the direct map and reads the live VMCOREINFO through it.
pub fn read_live_vmcoreinfo(
    mem: &mut dyn KernelMem,
    arch: Arch,
    text_addr: u64,
) -> Result<LiveVmcoreinfo, String> {
    let (note_pa, note_size) = note_location()?;
    find_with_note(
        mem,
        arch,
        text_addr,
        note_pa,
        note_size,
        &iomem("Kernel code"),
        &iomem("System RAM"),
    )
}

/// The search itself, separated from /sys and /proc for tests.
pub fn find_with_note(
    mem: &mut dyn KernelMem,
    arch: Arch,
    text_addr: u64,
    note_pa: u64,
    note_size: u64,
    kernel_code: &[(u64, u64)],
    system_ram: &[(u64, u64)],
) -> Result<LiveVmcoreinfo, String> {
    let candidates: Vec<u64> = match arch {
        Arch::X86_64 => [X86_BASE_L4, X86_BASE_L5]
            .iter()
            .flat_map(|&b| (0..X86_STEPS_L4).filter_map(move |i| b.checked_add(i * GIB)))
            .collect(),
        Arch::Aarch64 => {
            let memstart: Vec<u64> = system_ram.first().map(|r| r.0).into_iter().chain([0]).collect();
            ARM64_PAGE_OFFSETS
                .iter()
                .flat_map(|&po| memstart.iter().map(move |&ms| po.wrapping_sub(ms)))
                .collect()
        }
    };
    let mut head = [0u8; 24];
    let mut contradicted = None;
    for base in candidates {
        let Some(va) = base.checked_add(note_pa) else {
            continue;
        };
        if read_exact(mem, va, &mut head).is_err() || note_text(&head).is_none() {
            continue;
        }
        let mut note = vec![0u8; note_size as usize];
        if read_exact(mem, va, &mut note).is_err() {
            continue;
        }
        let Some(text) = note_text(&note) else { continue };
        let info = VmcoreInfo::parse(text.as_bytes());
        let how = match confirm_with_text(mem, arch, base, text_addr, &info, kernel_code) {
            Ok(how) => how,
            Err(e) => {
                contradicted = Some(e);
                continue;
            }
        };
        return Ok(LiveVmcoreinfo {
            direct_map_base: base,
            text,
            how,
        });
    }
    Err(contradicted.unwrap_or_else(|| {
        format!(
            "the VMCOREINFO note (physical {note_pa:#x}) shows up at no candidate direct-map base; \
             live data symbols such as prb are unavailable (give -k the matching vmlinux)"
        )
    }))
}

/// Confirms a direct-map base with the kernel's own text. Fails only when the text is readable
/// at both places and differs (then the base is wrong); says so when it cannot check.
fn confirm_with_text(
    mem: &mut dyn KernelMem,
    arch: Arch,
    base: u64,
    text_addr: u64,
    info: &VmcoreInfo,
    kernel_code: &[(u64, u64)],
) -> Result<String, String> {
    let text_pa = match arch {
        Arch::X86_64 => info
            .number_u64("phys_base")
            .map(|pb| text_addr.wrapping_sub(START_KERNEL_MAP).wrapping_add(pb)),
        // arm64 kernel image: pa = va - kimage_voffset (arch/arm64/include/asm/memory.h).
        Arch::Aarch64 => info
            .number_u64("kimage_voffset")
            .map(|v| text_addr.wrapping_sub(v)),
    }
    .or_else(|| kernel_code.first().map(|r| r.0));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::MemError;

    /// Sparse kernel memory: a few mapped regions.
    struct Regions(Vec<(u64, Vec<u8>)>);

    impl KernelMem for Regions {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, MemError> {
            for (base, bytes) in &self.0 {
                if let Some(off) = addr.checked_sub(*base).filter(|&o| o < bytes.len() as u64) {
                    let src = &bytes[off as usize..];
                    let n = src.len().min(buf.len());
                    buf[..n].copy_from_slice(&src[..n]);
                    return Ok(n);
                }
            }
            Err(MemError::new(addr, "unmapped"))
        }
    }

    fn note(text: &str) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&11u32.to_le_bytes());
        n.extend_from_slice(&(text.len() as u32).to_le_bytes());
        n.extend_from_slice(&0u32.to_le_bytes());
        n.extend_from_slice(b"VMCOREINFO\0\0");
        n.extend_from_slice(text.as_bytes());
        n.resize(4096, 0);
        n
    }

    const TEXT: u64 = 0xffff_ffff_9f40_0000;
    const PHYS_BASE: u64 = 0x1_2000_0000;
    const NOTE_PA: u64 = 0x1_00c6_6000;

    fn machine(base: u64, text_at_base: &[u8], decoy: Option<u64>) -> Regions {
        let text: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        let text_pa = TEXT - START_KERNEL_MAP + PHYS_BASE;
        let info = format!("OSRELEASE=6.1.0\nNUMBER(phys_base)={PHYS_BASE}\n");
        let mut r = vec![
            (TEXT, text),
            (base + NOTE_PA, note(&info)),
            (base + text_pa, text_at_base.to_vec()),
        ];
        if let Some(d) = decoy {
            // A note at a wrong base, whose kernel text does not match.
            r.push((d + NOTE_PA, note(&info)));
            r.push((d + text_pa, vec![0u8; 4096]));
        }
        Regions(r)
    }

    #[test]
    fn finds_a_randomized_direct_map() {
        let text: Vec<u8> = (0..4096u32).map(|i| (i * 7 + 3) as u8).collect();
        let base = X86_BASE_L4 + 37 * GIB;
        let mut m = machine(base, &text, Some(X86_BASE_L4 + 5 * GIB));
        let v = find_with_note(&mut m, Arch::X86_64, TEXT, NOTE_PA, 4096, &[], &[]).unwrap();
        assert_eq!(v.direct_map_base, base);
        assert!(v.text.starts_with("OSRELEASE=6.1.0\n"), "{:?}", v.text);
        assert!(v.how.contains("_text"), "{}", v.how);
        // 5-level base.
        let base5 = X86_BASE_L5 + 3 * GIB;
        let mut m = machine(base5, &text, None);
        let v = find_with_note(&mut m, Arch::X86_64, TEXT, NOTE_PA, 4096, &[], &[]).unwrap();
        assert_eq!(v.direct_map_base, base5);
    }

    #[test]
    fn text_that_disagrees_is_refused() {
        let mut m = machine(X86_BASE_L4 + GIB, &[0xcc; 4096], None);
        let e = find_with_note(&mut m, Arch::X86_64, TEXT, NOTE_PA, 4096, &[], &[]).unwrap_err();
        assert!(e.contains("contradicts"), "{e}");
        let mut nothing = Regions(vec![]);
        assert!(find_with_note(&mut nothing, Arch::X86_64, TEXT, NOTE_PA, 4096, &[], &[]).is_err());
    }

    #[test]
    fn parses_the_sysfs_file_and_note_headers() {
        assert_eq!(
            parse_note_location("0x0000000100c66000 1024\n"),
            Some((0x1_00c6_6000, 0x1024))
        );
        assert_eq!(parse_note_location("garbage"), None);
        assert_eq!(note_text(&note("A=1\n")).as_deref(), Some("A=1\n"));
        let mut bad = note("A=1\n");
        bad[12] = b'X';
        assert_eq!(note_text(&bad), None);
        assert_eq!(note_text(&bad[..10]), None);
    }
}
