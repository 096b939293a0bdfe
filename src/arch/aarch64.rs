//! aarch64 (VMSAv8-64 stage 1, TTBR1) paging: the descriptor decoder for the generic walker and
//! the kernel's tables from VMCOREINFO. 4K, 16K and 64K granules, 39 to 52 virtual address bits,
//! block descriptors, and 52-bit output addresses (64K FEAT_LPA, 4K/16K FEAT_LPA2).

use crate::arch::walk::{
    parse_vmcoreinfo_number, parse_vmcoreinfo_symbol, vmcoreinfo_value, Paging, PagingForm, PhysAddr,
    PteFormat, Step,
};

/// Descriptor type bits [1:0]: 0b11 is a table (or a page at the last level), 0b01 a block,
/// anything with bit 0 clear is invalid (Arm ARM D8.3).
const DESC_VALID: u64 = 1 << 0;
const DESC_TABLE_OR_PAGE: u64 = 1 << 1;

/// Output address bits [47:0] of a 48-bit descriptor; the walker keeps the part above the page
/// or block offset.
const OA_48: u64 = 0x0000_ffff_ffff_ffff;
/// LPA2 (TCR_EL1.DS = 1): output address bits [49:page_shift] are in place.
const OA_LPA2_LOW: u64 = 0x0003_ffff_ffff_ffff;

/// The aarch64 paging forms and the kernel page tables of a dump.
pub struct PagingAarch64;

impl PagingAarch64 {
    /// The form for a granule of `1 << page_shift` bytes and `va_bits` address bits. `pa52`
    /// selects the 52-bit descriptor layout for 4K/16K (LPA2); 64K always decodes LPA bits
    /// [15:12], which are RES0 when PAs are 48-bit.
    pub fn form(page_shift: u8, va_bits: u8, pa52: bool) -> Result<PagingForm, String> {
        let pte = match (page_shift, pa52) {
            (16, _) => PteFormat::Aarch64Lpa,
            (12 | 14, true) => PteFormat::Aarch64Lpa2,
            (12 | 14, false) => PteFormat::Aarch64,
            _ => {
                return Err(format!(
                    "aarch64 pages are 4K, 16K or 64K, not {} bytes",
                    1u64.checked_shl(page_shift.into()).unwrap_or(0)
                ))
            }
        };
        if !(36..=52).contains(&va_bits) {
            return Err(format!(
                "aarch64 kernels use 36 to 52 virtual address bits, not {va_bits}"
            ));
        }
        PagingForm::new(pte, page_shift, va_bits)
    }

    /// The kernel's tables described by raw VMCOREINFO text.
    pub fn from_vmcoreinfo(text: &str) -> Result<Paging, String> {
        Self::from_lookup(|key| vmcoreinfo_value(text, key))
    }

    /// The kernel's tables from a VMCOREINFO lookup (`"NUMBER(VA_BITS)"` -> `"48"`), following
    /// drgn `arch_aarch64.c` and libaddrxlat `aarch64.c`.
    pub fn from_lookup<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Result<Paging, String> {
        let number = |key: &str| -> Result<Option<u64>, String> {
            match lookup(key) {
                None => Ok(None),
                Some(v) => parse_vmcoreinfo_number(v).map(Some).ok_or_else(|| {
                    format!("VMCOREINFO's {key} value {v:?} is not a number; the dump is corrupt")
                }),
            }
        };
        let page_size = number("PAGESIZE")?
            .ok_or("the dump's VMCOREINFO has no PAGESIZE, so its page tables cannot be read")?;
        let page_shift = match page_size {
            4096 => 12,
            16384 => 14,
            65536 => 16,
            _ => {
                return Err(format!(
                    "VMCOREINFO's PAGESIZE {page_size} is not an aarch64 page size (4K, 16K, 64K)"
                ))
            }
        };
        // NUMBER(VA_BITS): Linux 4.12 ("arm64: kdump: add VMCOREINFO's for user-space tools").
        // Since 5.4 it is the configured maximum, which may exceed what the CPU runs with;
        // NUMBER(TCR_EL1_T1SZ) (Linux 5.9) gives the runtime size. With 64K pages the kernel keeps
        // the 52-bit table geometry even when it falls back to 48 bits (TTBR1 then points into
        // swapper_pg_dir), so VA_BITS is the right geometry there (drgn does the same).
        let config_va_bits = number("NUMBER(VA_BITS)")?;
        let t1sz = number("NUMBER(TCR_EL1_T1SZ)")?;
        let va_bits = match (t1sz, page_shift) {
            (Some(t1sz), 12 | 14) if (12..=28).contains(&t1sz) => 64 - t1sz,
            (Some(t1sz), 12 | 14) => {
                return Err(format!(
                    "VMCOREINFO's NUMBER(TCR_EL1_T1SZ) {t1sz} is out of range; the dump is corrupt"
                ))
            }
            _ => config_va_bits.ok_or(
                "the dump's VMCOREINFO has no NUMBER(VA_BITS) (kernels before 4.12 are not supported)",
            )?,
        };
        let va_bits =
            u8::try_from(va_bits).map_err(|_| format!("VMCOREINFO's VA_BITS {va_bits} is out of range"))?;
        // 52-bit VA with 4K/16K pages runs with TCR_EL1.DS = 1 and LPA2 descriptors (Linux 6.9);
        // without LPA2 hardware the kernel falls back to 48 bits and T1SZ says so.
        let form = Self::form(page_shift, va_bits, va_bits == 52)?;
        let pgd = lookup("SYMBOL(swapper_pg_dir)").ok_or(
            "the dump's VMCOREINFO has no SYMBOL(swapper_pg_dir), so the kernel page tables cannot be found",
        )?;
        let pgd = parse_vmcoreinfo_symbol(pgd)
            .ok_or_else(|| format!("VMCOREINFO's SYMBOL(swapper_pg_dir) {pgd:?} is not a hex address"))?;
        // Kernel image VA -> PA is va - kimage_voffset (arch/arm64/include/asm/memory.h).
        let voffset = number("NUMBER(kimage_voffset)")?.ok_or(
            "the dump's VMCOREINFO has no NUMBER(kimage_voffset), so the kernel page tables cannot be located",
        )?;
        Ok(Paging {
            form,
            root: PhysAddr(pgd.wrapping_sub(voffset)),
        })
    }
}

/// Strips a top-byte tag or pointer authentication code: TBI sign-extends bit 55 into bits
/// 63..56 (drgn `untagged_addr_aarch64`).
pub fn untag(va: u64) -> u64 {
    if va & (1 << 55) != 0 {
        va | 0xff00_0000_0000_0000
    } else {
        va & 0x00ff_ffff_ffff_ffff
    }
}

/// Untags `va` and checks it is in the TTBR1 (kernel) range the tables translate: bits
/// 63..va_bits all set. Returns the address to walk.
pub fn check_kernel_va(va: u64, va_bits: u8) -> Result<u64, String> {
    let addr = untag(va);
    let high = addr.checked_shr(va_bits.into()).unwrap_or(0);
    if high == u64::MAX.checked_shr(va_bits.into()).unwrap_or(0) {
        Ok(addr)
    } else {
        Err(format!(
            "{va:#x} is not a kernel address: the kernel tables (TTBR1) with {va_bits}-bit addresses translate only addresses with bits 63..{va_bits} set"
        ))
    }
}

/// Output address of a table, block or page descriptor, before masking to the block size.
fn output_address(form: &PagingForm, desc: u64) -> u64 {
    let page_mask = !((1u64 << form.page_shift) - 1);
    match form.pte {
        // 64K FEAT_LPA: descriptor bits [15:12] hold PA[51:48].
        PteFormat::Aarch64Lpa => (desc & OA_48 & page_mask) | (((desc >> 12) & 0xf) << 48),
        // FEAT_LPA2: bits [49:page_shift] in place, bits [9:8] hold PA[51:50].
        PteFormat::Aarch64Lpa2 => (desc & OA_LPA2_LOW & page_mask) | (((desc >> 8) & 0x3) << 50),
        _ => desc & OA_48 & page_mask,
    }
}

/// Whether a block descriptor is allowed at `level` (0 = last level) for this granule (Arm ARM
/// D8.2: 4K blocks at L1/L2 and L0 with LPA2; 16K at L2 and L1 with LPA2; 64K at L2 and L1 with
/// LPA). Levels here count up from the last one, which is Arm's level 3.
fn block_allowed(form: &PagingForm, level: u8) -> bool {
    let lpa2 = form.pte == PteFormat::Aarch64Lpa2;
    match form.page_shift {
        12 => level == 1 || level == 2 || (lpa2 && level == 3),
        14 => level == 1 || (lpa2 && level == 2),
        16 => level == 1 || level == 2,
        _ => false,
    }
}

/// Decodes one descriptor at `level` (0 = last level).
pub fn decode_entry(form: &PagingForm, desc: u64, level: u8) -> Step {
    if desc & DESC_VALID == 0 {
        return Step::Invalid("not valid".to_string());
    }
    let oa = PhysAddr(output_address(form, desc));
    match (desc & DESC_TABLE_OR_PAGE != 0, level) {
        (true, 0) => Step::Leaf(oa),
        (true, _) => Step::Table(oa),
        (false, 0) => Step::Invalid("is a reserved descriptor type at the last level".to_string()),
        (false, _) if block_allowed(form, level) => Step::Leaf(oa),
        (false, _) => Step::Invalid(format!(
            "is a block descriptor, which {}K pages do not allow at this level: the page table is corrupt",
            (1u64 << form.page_shift) / 1024
        )),
    }
}
