//! x86_64 paging: the entry decoder for the generic walker and the kernel's tables from VMCOREINFO.
//! 4-level paging (48-bit addresses) or 5-level (57-bit, LA57), 9 index bits per level, 4 KiB
//! pages, 2 MiB pages at the PMD and 1 GiB pages at the PUD (PS bit).

use crate::arch::walk::{
    parse_vmcoreinfo_number, parse_vmcoreinfo_symbol, Paging, PagingForm, PhysAddr, PteFormat, Step,
};

/// Entry is present (`_PAGE_BIT_PRESENT`, arch/x86/include/asm/pgtable_types.h).
pub const _PAGE_PRESENT: u64 = 1 << 0;
/// Entry maps a huge page, at PMD and PUD level (`_PAGE_BIT_PSE`).
pub const _PAGE_PSE: u64 = 1 << 7;
/// Physical address bits of an entry: 51..12. Bit 63 is NX, bits 62..52 are software/protection
/// key bits (`PTE_PFN_MASK` with `__PHYSICAL_MASK_SHIFT` 52).
pub const PTE_PFN_MASK: u64 = 0x000f_ffff_ffff_f000;
/// `__START_KERNEL_map`: the kernel image is mapped here, at physical `phys_base`.
pub const __START_KERNEL_map: u64 = 0xffff_ffff_8000_0000;

/// The x86_64 paging forms and the kernel page tables of a dump.
pub struct PagingX86_64;

impl PagingX86_64 {
    /// The form for 4- or 5-level paging.
    pub fn form(levels: u8) -> Result<PagingForm, String> {
        match levels {
            4 => PagingForm::new(PteFormat::X86_64, 12, 48),
            5 => PagingForm::new(PteFormat::X86_64, 12, 57),
            _ => Err(format!("x86_64 has 4- or 5-level paging, not {levels} levels")),
        }
    }

    /// The kernel's tables described by raw VMCOREINFO text.
    pub fn from_vmcoreinfo(text: &str) -> Result<Paging, String> {
        Self::from_lookup(|key| crate::arch::walk::vmcoreinfo_value(text, key))
    }

    /// The kernel's tables from a VMCOREINFO lookup (`"NUMBER(phys_base)"` -> `"0"`).
    ///
    /// Root = `SYMBOL(init_top_pgt)` - `__START_KERNEL_map` + `NUMBER(phys_base)` (drgn
    /// `arch_x86_64.c`, libaddrxlat `x86_64.c`). SYMBOL values are already KASLR-relocated.
    pub fn from_lookup<'a>(lookup: impl Fn(&str) -> Option<&'a str>) -> Result<Paging, String> {
        // init_top_pgt since Linux 4.13 (renamed from init_level4_pgt); the generic
        // SYMBOL(swapper_pg_dir) carries the same address (`#define swapper_pg_dir init_top_pgt`).
        let pgd = ["SYMBOL(init_top_pgt)", "SYMBOL(swapper_pg_dir)", "SYMBOL(init_level4_pgt)"]
            .iter()
            .find_map(|k| lookup(k))
            .ok_or("the dump's VMCOREINFO has no SYMBOL(init_top_pgt) or SYMBOL(swapper_pg_dir), so the kernel page tables cannot be found; is this an x86_64 kernel dump?")?;
        let pgd = parse_vmcoreinfo_symbol(pgd)
            .ok_or_else(|| format!("VMCOREINFO's page-table symbol value {pgd:?} is not a hex address"))?;
        if pgd < __START_KERNEL_map {
            return Err(format!(
                "VMCOREINFO's init_top_pgt {pgd:#x} is outside the kernel image mapping; the dump's VMCOREINFO is corrupt"
            ));
        }
        // NUMBER(phys_base) is printed with %ld (signed: a kernel loaded below its link address
        // has a negative phys_base); Linux 4.10 replaced SYMBOL(phys_base) by it.
        let phys_base = lookup("NUMBER(phys_base)").ok_or(
            "the dump's VMCOREINFO has no NUMBER(phys_base) (kernels before 4.10), so the kernel page tables cannot be located",
        )?;
        let phys_base = parse_vmcoreinfo_number(phys_base)
            .ok_or_else(|| format!("VMCOREINFO's NUMBER(phys_base) {phys_base:?} is not a number"))?;
        // NUMBER(pgtable_l5_enabled): Linux 4.17+, when 5-level paging became a boot-time choice;
        // absent means 4 levels.
        let levels = match lookup("NUMBER(pgtable_l5_enabled)").map(parse_vmcoreinfo_number) {
            Some(Some(0)) | None => 4,
            Some(Some(_)) => 5,
            Some(None) => return Err("VMCOREINFO's NUMBER(pgtable_l5_enabled) is not a number".to_string()),
        };
        Ok(Paging {
            form: Self::form(levels)?,
            root: PhysAddr((pgd - __START_KERNEL_map).wrapping_add(phys_base)),
        })
    }
}

/// Non-canonical addresses (bits above `va_bits - 1` not all equal to it) fault on x86_64.
pub fn check_canonical(va: u64, va_bits: u8) -> Result<(), String> {
    let high = va >> (va_bits - 1);
    if high == 0 || high == (u64::MAX >> (va_bits - 1)) {
        Ok(())
    } else {
        Err(format!(
            "{va:#x} is not a canonical address for {}-level paging (bits 63..{} must all equal bit {})",
            if va_bits > 48 { 5 } else { 4 },
            va_bits - 1,
            va_bits - 1
        ))
    }
}

/// Decodes one x86_64 entry at `level` (0 = PTE).
pub fn decode_entry(form: &PagingForm, entry: u64, level: u8) -> Step {
    if entry & _PAGE_PRESENT == 0 {
        return Step::Invalid("not present".to_string());
    }
    let addr = entry & PTE_PFN_MASK;
    if level == 0 {
        // Bit 7 of a PTE is PAT, not PSE.
        return Step::Leaf(PhysAddr(addr));
    }
    if entry & _PAGE_PSE == 0 {
        return Step::Table(PhysAddr(addr));
    }
    if level <= 2 {
        // Huge page: bit 12 is PAT, so the base is the address masked to the page size.
        Step::Leaf(PhysAddr(addr & !(form.entry_span(level) - 1)))
    } else {
        Step::Invalid(
            "has the huge-page bit set, which is reserved at this level: the page table is corrupt"
                .to_string(),
        )
    }
}
