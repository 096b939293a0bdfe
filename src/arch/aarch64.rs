//! aarch64 (VMSAv8-64 stage 1, TTBR1) paging: the descriptor decoder for the generic walker and
//! the kernel's tables from VMCOREINFO. 4K, 16K and 64K granules, 39 to 52 virtual address bits,
//! block descriptors, and 52-bit output addresses (64K FEAT_LPA, 4K/16K FEAT_LPA2).

use crate::arch::walk::{Paging, PagingForm, PteFormat, Step};
use crate::mem::vmcoreinfo::{parse_hex, parse_number, VmcoreInfo};
use crate::mem::{MemError, MemErrorKind, PhysAddr};

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

    /// The kernel's tables described by a dump's VMCOREINFO, following drgn `arch_aarch64.c` and
    /// libaddrxlat `aarch64.c`.
    pub fn from_vmcoreinfo(v: &VmcoreInfo) -> Result<Paging, String> {
        let lookup = |key: &str| v.get(key);
        let number = |key: &str| -> Result<Option<u64>, String> {
            match lookup(key) {
                None => Ok(None),
                Some(v) => parse_number(v).map(|n| Some(n as u64)).ok_or_else(|| {
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
        // NUMBER(VA_BITS): Linux commit 20a166243328 ("arm64: kdump: add VMCOREINFO's for
        // user-space tools") (v4.12). Since b6d00d47e81a ("arm64: mm: Introduce 52-bit Kernel
        // VAs") (v5.4) it is the configured size, which may exceed what the CPU runs with;
        // NUMBER(TCR_EL1_T1SZ), bbdbc11804ff (v5.9), gives the runtime size. With 4K/16K pages a
        // 52-bit kernel without FEAT_LPA2 folds a level at runtime (0dd4f60a2c76, v6.9), so the
        // runtime size is the geometry. With 64K pages swapper_pg_dir keeps the 52-bit geometry
        // and TTBR1 points into it (c812026c54cf, v5.4), so VA_BITS is. drgn does the same.
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
        // With 4K/16K pages the kernel uses 52-bit PAs (LPA2 descriptors, TCR_EL1.DS = 1) exactly
        // when it runs with 52-bit VAs: 352b0395b505 ("arm64: Enable 52-bit virtual addressing
        // for 4k and 16k granule configs") (v6.9). PA size is not in VMCOREINFO.
        let form = Self::form(page_shift, va_bits, va_bits == 52)?;
        let pgd = lookup("SYMBOL(swapper_pg_dir)").ok_or(
            "the dump's VMCOREINFO has no SYMBOL(swapper_pg_dir), so the kernel page tables cannot be found",
        )?;
        let pgd = parse_hex(pgd)
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
pub fn check_kernel_va(va: u64, va_bits: u8) -> Result<u64, MemError> {
    let addr = untag(va);
    let high = addr.checked_shr(va_bits.into()).unwrap_or(0);
    if high == u64::MAX.checked_shr(va_bits.into()).unwrap_or(0) {
        Ok(addr)
    } else {
        Err(MemError::new(
            va,
            MemErrorKind::Fault,
            format!(
                "{va:#x} is not a kernel address: the kernel tables (TTBR1) with {va_bits}-bit addresses translate only addresses with bits 63..{va_bits} set"
            ),
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
        (false, 0) => Step::Reserved("is a reserved descriptor type at the last level".to_string()),
        (false, _) if block_allowed(form, level) => Step::Leaf(oa),
        (false, _) => Step::Reserved(format!(
            "is a block descriptor, which {}K pages do not allow at this level: the page table is corrupt",
            (1u64 << form.page_shift) / 1024
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::walk::tests::{read_virt, Builder, FakeMem};
    use crate::arch::walk::{translate, walk_steps};
    use crate::mem::VirtAddr;

    /// Attribute bits a kernel leaf carries (AF, SH inner shareable, AP, AttrIndx, PXN/UXN and the
    /// software dirty bit 55) and a table's APTable/PXNTable bits: none may leak into addresses.
    const LEAF_ATTRS: u64 =
        (1 << 55) | (1 << 54) | (1 << 53) | (1 << 11) | (1 << 10) | (0b11 << 8) | (1 << 6) | (4 << 2);
    const LEAF_ATTRS_LPA2: u64 = LEAF_ATTRS & !(0b11 << 8);
    const TABLE_ATTRS: u64 = (1 << 63) | (1 << 59);

    fn kind(level: u32) -> u64 {
        if level == 0 {
            0b11
        } else {
            0b01
        }
    }
    fn t48(pa: u64) -> u64 {
        pa | TABLE_ATTRS | 0b11
    }
    fn l48(pa: u64, level: u32) -> u64 {
        pa | LEAF_ATTRS | kind(level)
    }
    /// FEAT_LPA2: PA[49:12] in place, PA[51:50] in bits [9:8].
    fn lpa2(pa: u64) -> u64 {
        (pa & 0x0003_ffff_ffff_f000) | (((pa >> 50) & 3) << 8)
    }
    fn t_lpa2(pa: u64) -> u64 {
        lpa2(pa) | TABLE_ATTRS | 0b11
    }
    fn l_lpa2(pa: u64, level: u32) -> u64 {
        lpa2(pa) | LEAF_ATTRS_LPA2 | kind(level)
    }
    /// 64K FEAT_LPA: PA[47:16] in place, PA[51:48] in bits [15:12].
    fn lpa(pa: u64) -> u64 {
        (pa & 0x0000_ffff_ffff_0000) | (((pa >> 48) & 0xf) << 12)
    }
    fn t_lpa(pa: u64) -> u64 {
        lpa(pa) | TABLE_ATTRS | 0b11
    }
    fn l_lpa(pa: u64, level: u32) -> u64 {
        lpa(pa) | LEAF_ATTRS | kind(level)
    }

    struct Case {
        page_shift: u8,
        va_bits: u8,
        pa52: bool,
        /// Levels (0 = last) where the Arm ARM allows blocks, written out by hand.
        blocks: &'static [u32],
    }

    const CASES: [Case; 10] = [
        Case {
            page_shift: 12,
            va_bits: 39,
            pa52: false,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 12,
            va_bits: 48,
            pa52: false,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 12,
            va_bits: 52,
            pa52: true,
            blocks: &[1, 2, 3],
        },
        Case {
            page_shift: 14,
            va_bits: 36,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 14,
            va_bits: 47,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 14,
            va_bits: 48,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 14,
            va_bits: 52,
            pa52: true,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 16,
            va_bits: 42,
            pa52: false,
            blocks: &[1],
        },
        Case {
            page_shift: 16,
            va_bits: 48,
            pa52: false,
            blocks: &[1, 2],
        },
        Case {
            page_shift: 16,
            va_bits: 52,
            pa52: true,
            blocks: &[1, 2],
        },
    ];

    fn builder(c: &Case) -> Builder {
        let b = |t: fn(u64) -> u64, l: fn(u64, u32) -> u64| {
            Builder::new(c.page_shift.into(), c.va_bits.into(), t, l)
        };
        match (c.page_shift, c.pa52) {
            (16, _) => b(t_lpa, l_lpa),
            (_, true) => b(t_lpa2, l_lpa2),
            _ => b(t48, l48),
        }
    }

    #[test]
    fn pages_and_blocks_for_every_granule_and_va_size() {
        for c in &CASES {
            let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
            let name = format!("{}K/{}-bit", (1u64 << c.page_shift) / 1024, c.va_bits);
            // A kernel address with arbitrary bits below va_bits.
            let va = (u64::MAX << c.va_bits) | (0x5a5a_5a5a_5a5a_5a5a & ((1u64 << c.va_bits) - 1));
            // Physical bases aligned to every block size used (at most 4 TiB), above 48 bits
            // when the form has 52-bit output addresses.
            let pa_base = if c.pa52 {
                0x000d_5000_0000_0000u64
            } else {
                0x0000_a000_0000_0000
            };
            let per = u32::from(c.page_shift) - 3;
            for leaf in std::iter::once(0).chain(c.blocks.iter().copied()) {
                let mut b = builder(c);
                assert_eq!(b.levels, u32::from(form.levels), "{name}");
                let size = 1u64 << (u32::from(c.page_shift) + leaf * per);
                b.map(va, pa_base, leaf);
                let va_base = va & !(size - 1);
                for off in [0, 8, size / 2 + 3, size - 1] {
                    let t = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va_base + off))
                        .unwrap_or_else(|e| panic!("{name} level {leaf}: {e}"));
                    assert_eq!(t.pa.0, pa_base + off, "{name} level {leaf} offset {off:#x}");
                    assert_eq!(t.page_size, size - off, "{name} level {leaf}");
                }
                let w = walk_steps(&b.mem, &form, PhysAddr(b.root), VirtAddr(va));
                assert_eq!(w.steps.len() as u32, b.levels - leaf, "{name}");
                assert_eq!(w.leaf_size, Some(size));
                // The next page or block up is not mapped.
                if va_base.checked_add(size).is_some() {
                    assert!(translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va_base + size)).is_err());
                }
            }
            // Blocks where the architecture allows none are rejected.
            for level in 1..b_levels(c) {
                if c.blocks.contains(&level) {
                    continue;
                }
                let mut b = builder(c);
                b.map(va, pa_base, level);
                let e = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
                assert_eq!(e.kind, MemErrorKind::Corrupt, "{name} level {level}: {e}");
                assert!(e.detail.contains("block"), "{name} level {level}: {}", e.detail);
            }
        }
    }

    fn b_levels(c: &Case) -> u32 {
        (u32::from(c.va_bits) - 4) / (u32::from(c.page_shift) - 3)
    }

    #[test]
    fn invalid_descriptors_at_every_level_name_the_level() {
        for c in &CASES {
            let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
            let va = u64::MAX << c.va_bits | 0x1234_5678;
            for level in 0..b_levels(c) {
                for bad in [0u64, 0x4000_0000 | 0b10, 0xffff_ffff_ffff_fffe] {
                    let mut b = builder(c);
                    b.map(va, 0x8000_0000, 0);
                    let at = b.entry_addr(va, level);
                    b.mem.set(at, bad);
                    let w = walk_steps(&b.mem, &form, PhysAddr(b.root), VirtAddr(va));
                    let e = w.result.unwrap_err();
                    let name = w.steps.last().unwrap().name;
                    assert_eq!(e.kind, MemErrorKind::NotPresent { level: level as u8 }, "{e}");
                    assert!(e.detail.contains(name), "{}", e.detail);
                    assert_eq!(w.steps.len() as u32, b.levels - level);
                }
            }
            // Type 0b01 at the last level is reserved.
            let mut b = builder(c);
            b.map(va, 0x8000_0000, 0);
            let at = b.entry_addr(va, 0);
            b.mem.set(at, 0x8000_0000 | 0b01);
            let e = translate(&b.mem, &form, PhysAddr(b.root), VirtAddr(va)).unwrap_err();
            assert_eq!(e.kind, MemErrorKind::Corrupt, "{e}");
            assert!(e.detail.contains("PTE"), "{}", e.detail);
        }
    }

    #[test]
    fn hand_built_4k_48_bit_walk() {
        // va 0xffff800012345678: L0 index 0x100, L1 0, L2 0x91, L3 0x145, offset 0x678.
        let mut mem = FakeMem::default();
        for t in [0x4000_0000, 0x4000_1000, 0x4000_2000, 0x4000_3000] {
            mem.zero(t, 0x1000);
        }
        mem.set(0x4000_0800, 0x4000_1003);
        mem.set(0x4000_1000, 0x4000_2003);
        mem.set(0x4000_2488, 0x4000_3003);
        mem.set(0x4000_3a28, 0x0060_0000_8765_4f43);
        let form = PagingAarch64::form(12, 48, false).unwrap();
        let t = translate(
            &mem,
            &form,
            PhysAddr(0x4000_0000),
            VirtAddr(0xffff_8000_1234_5678),
        )
        .unwrap();
        assert_eq!(t.pa, PhysAddr(0x8765_4678));
        assert_eq!(t.page_size, 0x988);
        // Tagged and top-byte-ignored forms of the same pointer translate alike.
        for tagged in [0xf2ff_8000_1234_5678u64, 0x80ff_8000_1234_5678] {
            let t = translate(&mem, &form, PhysAddr(0x4000_0000), VirtAddr(tagged)).unwrap();
            assert_eq!(t.pa, PhysAddr(0x8765_4678));
        }
        // User (TTBR0) and malformed addresses are not walked through the kernel tables.
        for va in [
            0x0000_ffff_1234_5678u64,
            0x0000_0000_0040_0000,
            0xfffe_8000_1234_5678,
            0xff7f_8000_0000_0000,
        ] {
            let e = translate(&mem, &form, PhysAddr(0x4000_0000), VirtAddr(va)).unwrap_err();
            assert_eq!(e.kind, MemErrorKind::Fault, "{va:#x}: {e}");
            assert!(e.detail.contains("not a kernel address"), "{va:#x}: {}", e.detail);
        }
        // A 1 GiB block at L1 (index 0).
        mem.set(0x4000_1000, 0x0000_0001_c000_0000 | 0x0040_0000_0000_0f41);
        let t = translate(
            &mem,
            &form,
            PhysAddr(0x4000_0000),
            VirtAddr(0xffff_8000_1234_5678),
        )
        .unwrap();
        assert_eq!(t.pa, PhysAddr(0x1_d234_5678));
        assert_eq!(t.page_size, 0x4000_0000 - 0x1234_5678);
    }

    #[test]
    fn hand_built_64k_52_bit_lpa_walk() {
        // va 0xfff0000012345678 with 64K pages, 52 bits: indexes 0, 0, 0x1234; offset 0x5678.
        let mut mem = FakeMem::default();
        for t in [0x10_0000, 0x20_0000, 0x30_0000] {
            mem.zero(t, 0x1_0000);
        }
        mem.set(0x10_0000, 0x20_0003);
        mem.set(0x20_0000, 0x30_0003);
        mem.set(
            0x30_0000 + 0x1234 * 8,
            0x0000_abcd_0001_0000 | (0xa << 12) | 0x743,
        );
        let form = PagingAarch64::form(16, 52, true).unwrap();
        let t = translate(&mem, &form, PhysAddr(0x10_0000), VirtAddr(0xfff0_0000_1234_5678)).unwrap();
        assert_eq!(t.pa, PhysAddr(0x000a_abcd_0001_5678));
        assert_eq!(t.page_size, 0x1_0000 - 0x5678);
    }

    #[test]
    fn lpa2_bits_decode_only_in_lpa2_form() {
        let desc = 0x0003_1234_5678_9000 | (0b10 << 8) | 0x403;
        let f52 = PagingAarch64::form(12, 52, true).unwrap();
        assert_eq!(
            decode_entry(&f52, desc, 0),
            Step::Leaf(PhysAddr(0x000b_1234_5678_9000))
        );
        // Without LPA2, bits [9:8] are shareability and bits [49:48] are not address bits.
        let f48 = PagingAarch64::form(12, 48, false).unwrap();
        assert_eq!(
            decode_entry(&f48, desc, 0),
            Step::Leaf(PhysAddr(0x0000_1234_5678_9000))
        );
        let f16 = PagingAarch64::form(14, 52, true).unwrap();
        assert_eq!(
            decode_entry(&f16, (desc & !3) | 0x301, 1),
            Step::Leaf(PhysAddr(0x000f_1234_5678_8000))
        );
    }

    #[test]
    fn reads_stop_at_page_ends() {
        let c = &CASES[5]; // 16K, 48-bit
        let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
        let mut b = builder(c);
        let va = 0xffff_0000_0800_0000u64;
        b.map(va, 0x4_0000, 0);
        b.map(va + 0x4000, 0xc_0000, 0);
        b.mem.write(0x4_3ffc, &[1, 2, 3, 4]);
        b.mem.write(0xc_0000, &[5, 6, 7, 8]);
        assert_eq!(
            read_virt(&b.mem, &form, PhysAddr(b.root), va + 0x3ffc, 8),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
    }

    #[test]
    fn corrupt_tables_give_errors_not_panics() {
        let mut mem = FakeMem::default();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for i in 0..(0x2_0000 / 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let e = if i % 4 == 0 { (x & 0x1_f000) | 3 } else { x };
            mem.set(i * 8, e);
        }
        for c in &CASES {
            let form = PagingAarch64::form(c.page_shift, c.va_bits, c.pa52).unwrap();
            for i in 0..500u64 {
                let va = (u64::MAX << c.va_bits) | i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let _ = translate(&mem, &form, PhysAddr(0), VirtAddr(va));
                let _ = walk_steps(&mem, &form, PhysAddr(0x1_0000), VirtAddr(va)).to_string();
            }
        }
    }

    fn from_text(text: &str) -> Result<Paging, String> {
        PagingAarch64::from_vmcoreinfo(&VmcoreInfo::parse(text.as_bytes()))
    }

    #[test]
    fn from_vmcoreinfo_picks_geometry_and_root() {
        let base = "SYMBOL(swapper_pg_dir)=ffff800082d6c000\nNUMBER(kimage_voffset)=0xffff7fffc0000000\n";
        // 0xffff800082d6c000 - 0xffff7fffc0000000
        let root = PhysAddr(0xc2d6_c000);
        let p = from_text(&format!(
            "{base}PAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(TCR_EL1_T1SZ)=0x10\n"
        ))
        .unwrap();
        assert_eq!(
            (p.root, p.form.va_bits, p.form.levels, p.form.pte),
            (root, 48, 4, PteFormat::Aarch64)
        );
        // Configured 52 bits, running with 48 (no LPA2): T1SZ wins for 4K.
        let p = from_text(&format!(
            "{base}PAGESIZE=4096\nNUMBER(VA_BITS)=52\nNUMBER(TCR_EL1_T1SZ)=16\n"
        ))
        .unwrap();
        assert_eq!((p.form.va_bits, p.form.pte), (48, PteFormat::Aarch64));
        let p = from_text(&format!(
            "{base}PAGESIZE=16384\nNUMBER(VA_BITS)=52\nNUMBER(TCR_EL1_T1SZ)=0xc\n"
        ))
        .unwrap();
        assert_eq!(
            (p.form.va_bits, p.form.levels, p.form.pte),
            (52, 4, PteFormat::Aarch64Lpa2)
        );
        // 16K configured for 52 bits falls back to 47 without LPA2.
        let p = from_text(&format!(
            "{base}PAGESIZE=16384\nNUMBER(VA_BITS)=52\nNUMBER(TCR_EL1_T1SZ)=0x11\n"
        ))
        .unwrap();
        assert_eq!(
            (p.form.va_bits, p.form.levels, p.form.pte),
            (47, 3, PteFormat::Aarch64)
        );
        // 64K keeps VA_BITS geometry whatever T1SZ says.
        let p = from_text(&format!(
            "{base}PAGESIZE=65536\nNUMBER(VA_BITS)=52\nNUMBER(TCR_EL1_T1SZ)=0x10\n"
        ))
        .unwrap();
        assert_eq!(
            (p.form.va_bits, p.form.levels, p.form.pte),
            (52, 3, PteFormat::Aarch64Lpa)
        );
        // Old kernels without T1SZ.
        let p = from_text(&format!("{base}PAGESIZE=4096\nNUMBER(VA_BITS)=39\n")).unwrap();
        assert_eq!((p.form.va_bits, p.form.levels), (39, 3));

        assert!(from_text(&format!("{base}NUMBER(VA_BITS)=48\n"))
            .unwrap_err()
            .contains("PAGESIZE"));
        assert!(from_text(&format!("{base}PAGESIZE=8192\nNUMBER(VA_BITS)=48\n")).is_err());
        assert!(from_text(&format!("{base}PAGESIZE=4096\n"))
            .unwrap_err()
            .contains("VA_BITS"));
        assert!(from_text(&format!("{base}PAGESIZE=4096\nNUMBER(VA_BITS)=64\n")).is_err());
        assert!(from_text(&format!(
            "{base}PAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(TCR_EL1_T1SZ)=0x40\n"
        ))
        .is_err());
        assert!(
            from_text("PAGESIZE=4096\nNUMBER(VA_BITS)=48\nSYMBOL(swapper_pg_dir)=ffff800082d6c000\n")
                .unwrap_err()
                .contains("kimage_voffset")
        );
    }
}
