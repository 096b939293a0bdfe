//! The generic page-table walker. One driver splits a virtual address into per-level indexes from a
//! `PagingForm` (libkdumpfile's "paging form": page shift, index bits per level, level count) and
//! asks a tiny per-architecture decoder what each entry is. Architectures contribute data and one
//! entry decoder each (`x86_64::decode_entry`, `aarch64::decode_entry`), never a walker of their own.
//!
//! Tables are read by *physical* address through `PhysRead`, so translation never recurses into
//! itself. The depth is bounded by the form, so a corrupt table cannot make a walk loop.

use crate::arch::{aarch64, x86_64};
use crate::mem::bytes::FormatError;
use crate::mem::{MemError, MemErrorKind, PhysAddr, PhysRead, VirtAddr};
use std::fmt;

/// How entries of one paging form are decoded (libaddrxlat's `pte_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PteFormat {
    /// x86_64 4- or 5-level paging.
    X86_64,
    /// aarch64 with 4K or 16K granule and 48-bit output addresses (TCR_EL1.DS = 0).
    Aarch64,
    /// aarch64 64K granule: output address bits `[47:16]` plus bits `[15:12]` -> `PA[51:48]` (FEAT_LPA).
    /// Those bits are RES0 without 52-bit PAs, so decoding them is right for every 64K kernel.
    Aarch64Lpa,
    /// aarch64 4K/16K granule with FEAT_LPA2 (TCR_EL1.DS = 1): output address bits `[49:page_shift]`
    /// plus bits `[9:8]` -> `PA[51:50]`. Only when DS = 1: otherwise bits `[9:8]` are shareability.
    Aarch64Lpa2,
}

/// How a virtual address splits into table indexes. Levels are numbered from the bottom: level 0
/// is the last (PTE) level, level `levels - 1` the top (PGD), which may have fewer index bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PagingForm {
    pub pte: PteFormat,
    /// log2 of the base page size (12, 14 or 16).
    pub page_shift: u8,
    /// Index bits of every level but the top one (page_shift - 3: tables are one page of u64s).
    pub bits_per_level: u8,
    /// Number of table levels (2 to 5).
    pub levels: u8,
    /// Index bits of the top level (1 to bits_per_level).
    pub top_bits: u8,
    /// Virtual address bits translated by the tables.
    pub va_bits: u8,
}

/// What one page-table entry says, as decoded by an architecture's step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Points to the next level's table.
    Table(PhysAddr),
    /// Maps a page (level 0) or a huge page/block (higher levels). The address is the base of
    /// the page or block; the walker adds the offset of the virtual address inside it.
    Leaf(PhysAddr),
    /// Not present (not valid): the address is not mapped. The text says which bit.
    Invalid(String),
    /// An entry no kernel writes (a reserved bit or descriptor type at this level): the table is
    /// damaged. The text says what is wrong.
    Reserved(String),
}

impl PagingForm {
    /// A form for `va_bits` of address with `page_shift`-sized pages and page-sized tables of
    /// 8-byte entries. Errors when the geometry is not one the walker can handle.
    pub fn new(pte: PteFormat, page_shift: u8, va_bits: u8) -> Result<PagingForm, FormatError> {
        if !matches!(page_shift, 12 | 14 | 16) {
            return Err(FormatError::unsupported(format!(
                "page size 2^{page_shift} is not supported (4K, 16K or 64K pages only)"
            )));
        }
        if va_bits > 57 || va_bits <= page_shift {
            return Err(FormatError::unsupported(format!(
                "{va_bits}-bit virtual addresses are not supported (at most 57 bits)"
            )));
        }
        let bits_per_level = page_shift - 3;
        let index_bits = va_bits - page_shift;
        let levels = index_bits.div_ceil(bits_per_level);
        if !(1..=5).contains(&levels) {
            return Err(FormatError::unsupported(format!(
                "{va_bits}-bit addresses with 2^{page_shift}-byte pages need {levels} table levels; at most 5 are supported"
            )));
        }
        let top_bits = index_bits - (levels - 1) * bits_per_level;
        Ok(PagingForm {
            pte,
            page_shift,
            bits_per_level,
            levels,
            top_bits,
            va_bits,
        })
    }

    /// Lowest virtual address bit indexed at `level`.
    pub fn shift(&self, level: u8) -> u32 {
        u32::from(self.page_shift) + u32::from(level) * u32::from(self.bits_per_level)
    }

    /// Index bits at `level`.
    pub fn index_bits(&self, level: u8) -> u32 {
        if level + 1 == self.levels {
            u32::from(self.top_bits)
        } else {
            u32::from(self.bits_per_level)
        }
    }

    /// Size in bytes of what one entry at `level` maps (a page at level 0, a block above).
    pub fn entry_span(&self, level: u8) -> u64 {
        1u64 << self.shift(level)
    }

    /// Linux's name for a level: PGD at the top, then P4D, PUD, PMD, PTE (folded levels omitted).
    pub fn level_name(&self, level: u8) -> &'static str {
        if level + 1 == self.levels {
            return "PGD";
        }
        match level {
            0 => "PTE",
            1 => "PMD",
            2 => "PUD",
            _ => "P4D",
        }
    }

    /// Index into the table of `level` for an address.
    fn index(&self, va: u64, level: u8) -> u64 {
        (va >> self.shift(level)) & ((1u64 << self.index_bits(level)) - 1)
    }

    /// Checks that `va` is translated by these tables and returns the address to walk (aarch64
    /// drops pointer tags first).
    fn check_va(&self, va: VirtAddr) -> Result<u64, MemError> {
        match self.pte {
            PteFormat::X86_64 => x86_64::check_canonical(va.0, self.va_bits).map(|()| va.0),
            PteFormat::Aarch64 | PteFormat::Aarch64Lpa | PteFormat::Aarch64Lpa2 => {
                aarch64::check_kernel_va(va.0, self.va_bits)
            }
        }
    }

    fn decode(&self, entry: u64, level: u8) -> Step {
        match self.pte {
            PteFormat::X86_64 => x86_64::decode_entry(self, entry, level),
            PteFormat::Aarch64 | PteFormat::Aarch64Lpa | PteFormat::Aarch64Lpa2 => {
                aarch64::decode_entry(self, entry, level)
            }
        }
    }
}

/// Where a virtual address lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Translation {
    /// Physical address of the byte at the virtual address.
    pub pa: PhysAddr,
    /// Bytes from the virtual address to the end of its page or block: a reader may read this
    /// many bytes at `pa` before it needs to translate again.
    pub page_size: u64,
}

/// One level of a walk, for `monitor vtop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalkStep {
    /// Level number (0 = last level).
    pub level: u8,
    /// Linux name of the level (PGD, P4D, PUD, PMD, PTE).
    pub name: &'static str,
    /// Index into this level's table.
    pub index: u64,
    /// Physical address of the entry.
    pub entry_addr: PhysAddr,
    /// The entry, or `None` when it could not be read from the dump.
    pub entry: Option<u64>,
}

/// A whole walk: the levels visited and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Walk {
    pub va: VirtAddr,
    pub steps: Vec<WalkStep>,
    pub result: Result<Translation, MemError>,
    /// Size of the page or block that maps `va`, when the walk succeeded.
    pub leaf_size: Option<u64>,
}

impl fmt::Display for Walk {
    /// One line per level, then the result: what `monitor vtop` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "virtual {:#018x}", self.va.0)?;
        for s in &self.steps {
            match s.entry {
                Some(e) => writeln!(
                    f,
                    "  {}[{:#x}] at physical {:#x} = {:#018x}",
                    s.name, s.index, s.entry_addr.0, e
                )?,
                None => writeln!(
                    f,
                    "  {}[{:#x}] at physical {:#x} = (not in the dump)",
                    s.name, s.index, s.entry_addr.0
                )?,
            }
        }
        match &self.result {
            Ok(t) => write!(
                f,
                "physical {:#x} ({} mapped by {}, {:#x} bytes to its end)",
                t.pa.0,
                size_name(self.leaf_size.unwrap_or(0)),
                self.steps.last().map(|s| s.name).unwrap_or("?"),
                t.page_size
            ),
            Err(e) => write!(f, "no translation: {}", e.detail),
        }
    }
}

/// The kernel's page tables: a form and the physical address of the top table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub form: PagingForm,
    pub root: PhysAddr,
}

impl Paging {
    pub fn translate(&self, mem: &dyn PhysRead, va: VirtAddr) -> Result<Translation, MemError> {
        translate(mem, &self.form, self.root, va)
    }

    pub fn walk(&self, mem: &dyn PhysRead, va: VirtAddr) -> Walk {
        walk_steps(mem, &self.form, self.root, va)
    }

    /// A translator for one request over a range (see [`RangeWalk`]).
    pub fn range_walk(&self) -> RangeWalk<'_> {
        RangeWalk {
            form: &self.form,
            root: self.root,
            leaf: None,
        }
    }
}

/// Translates the pages of one request in order, walking the tables once per leaf table rather
/// than once per page: the first page under a leaf table costs a whole walk, and the entries
/// after it that the request needs come in the same read of that table. Consecutive leaves that
/// map consecutive physical memory are joined into one run, so a reader can fetch the run with
/// one read. It lives for one request only (callers make one per read), so it never serves an
/// entry from an earlier request.
pub struct RangeWalk<'a> {
    form: &'a PagingForm,
    root: PhysAddr,
    leaf: Option<LeafEntries>,
}

/// Entries read from one leaf table: `entries[0]` maps the `span`-aligned walked address
/// `first`, the next one the span after it, and so on.
struct LeafEntries {
    level: u8,
    first: u64,
    entries: Vec<u64>,
}

impl RangeWalk<'_> {
    /// Where `va` lives and how many bytes from it are physically contiguous, looking at no
    /// more entries than `want` bytes need: `page_size` is at least the rest of `va`'s page and
    /// may exceed `want` by less than one page. `Err` is what a single translation says.
    pub fn next(&mut self, mem: &dyn PhysRead, va: VirtAddr, want: u64) -> Result<Translation, MemError> {
        let addr = self.form.check_va(va)?;
        if let Some(t) = self.leaf.as_ref().and_then(|l| l.run(self.form, addr, want)) {
            return Ok(t);
        }
        // A whole walk, noting the last step: the leaf's table, level and index.
        let mut last = None;
        let t = walk_inner(mem, self.form, self.root, va, &mut |s| last = Some(s))?;
        let Some(WalkStep {
            level,
            index,
            entry_addr,
            entry: Some(entry),
            ..
        }) = last
        else {
            return Ok(t);
        };
        let span = self.form.entry_span(level);
        let offset = addr & (span - 1);
        let per_table = 1u64 << self.form.index_bits(level);
        let more = want
            .saturating_sub(span - offset)
            .div_ceil(span)
            .min(per_table.saturating_sub(index + 1));
        let mut entries = vec![entry];
        if more > 0 {
            if let Some(next) = entry_addr.checked_add(8) {
                read_entries(mem, next, more, &mut entries);
            }
        }
        let leaf = LeafEntries {
            level,
            first: addr - offset,
            entries,
        };
        let run = leaf.run(self.form, addr, want).unwrap_or(t);
        self.leaf = Some(leaf);
        Ok(run)
    }
}

impl LeafEntries {
    /// The run at `addr` from the entries held, or None when they do not cover `addr` or its
    /// entry is not a leaf (a whole walk then says why, or goes to the deeper table).
    fn run(&self, form: &PagingForm, addr: u64, want: u64) -> Option<Translation> {
        let span = form.entry_span(self.level);
        let i = usize::try_from(addr.checked_sub(self.first)? / span).ok()?;
        let Step::Leaf(base) = form.decode(*self.entries.get(i)?, self.level) else {
            return None;
        };
        let offset = addr & (span - 1);
        let base = base.0 & !(span - 1);
        let pa = base.checked_add(offset)?;
        let mut len = span - offset;
        let mut expect = base.checked_add(span);
        for &e in self.entries.get(i + 1..).unwrap_or_default() {
            if len >= want {
                break;
            }
            match (form.decode(e, self.level), expect) {
                (Step::Leaf(b), Some(x)) if b.0 & !(span - 1) == x => {
                    len += span;
                    expect = x.checked_add(span);
                }
                _ => break,
            }
        }
        Some(Translation {
            pa: PhysAddr(pa),
            page_size: len,
        })
    }
}

/// Appends up to `count` little-endian entries read from `at` on to `out`: as many whole ones as
/// the dump holds there (a short read just means fewer entries held).
fn read_entries(mem: &dyn PhysRead, at: PhysAddr, count: u64, out: &mut Vec<u64>) {
    let Ok(len) = usize::try_from(count.saturating_mul(8)) else {
        return;
    };
    let mut raw = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let Some(pos) = at.checked_add(done as u64) else {
            break;
        };
        match mem.read_phys(pos, raw.get_mut(done..).unwrap_or_default()) {
            Ok(n) if n > 0 => done += n,
            _ => break,
        }
    }
    out.extend(
        raw.get(..done - done % 8)
            .unwrap_or_default()
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())),
    );
}

/// Translates `va` through the tables rooted at `root`. `Err` names the level that stopped the
/// walk (not present, invalid, or a table not in the dump).
pub fn translate(
    mem: &dyn PhysRead,
    form: &PagingForm,
    root: PhysAddr,
    va: VirtAddr,
) -> Result<Translation, MemError> {
    walk_inner(mem, form, root, va, &mut |_| {})
}

/// Like `translate`, also recording each level's index, entry address and entry.
pub fn walk_steps(mem: &dyn PhysRead, form: &PagingForm, root: PhysAddr, va: VirtAddr) -> Walk {
    let mut steps = Vec::with_capacity(usize::from(form.levels));
    let result = walk_inner(mem, form, root, va, &mut |s| steps.push(s));
    let leaf_size = match (&result, steps.last()) {
        (Ok(_), Some(last)) => Some(form.entry_span(last.level)),
        _ => None,
    };
    Walk {
        va,
        steps,
        result,
        leaf_size,
    }
}

/// "4 KiB page", "2 MiB block" style size for humans.
fn size_name(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v >= 1024 && v % 1024 == 0 && unit + 1 < UNITS.len() {
        v /= 1024;
        unit += 1;
    }
    format!("{v} {} page", UNITS[unit])
}

fn walk_inner(
    mem: &dyn PhysRead,
    form: &PagingForm,
    root: PhysAddr,
    va: VirtAddr,
    record: &mut dyn FnMut(WalkStep),
) -> Result<Translation, MemError> {
    let addr = form.check_va(va)?;
    let mut table = root;
    for level in (0..form.levels).rev() {
        let name = form.level_name(level);
        let index = form.index(addr, level);
        let entry_addr = table.checked_add(index * 8).ok_or_else(|| {
            MemError::new(
                va.0,
                MemErrorKind::Corrupt,
                format!("the {name} table address {table} is past the end of memory"),
            )
        })?;
        let entry = read_entry(mem, entry_addr);
        record(WalkStep {
            level,
            name,
            index,
            entry_addr,
            entry: entry.as_ref().ok().copied(),
        });
        // The kind stays the one of the physical read (a table page excluded or not in the dump).
        let entry = entry.map_err(|e| {
            MemError::new(
                va.0,
                e.kind,
                format!(
                    "the {name} entry at physical {entry_addr} is not in the dump ({})",
                    e.detail
                ),
            )
        })?;
        match form.decode(entry, level) {
            Step::Table(next) if level > 0 => table = next,
            Step::Table(_) => {
                return Err(MemError::new(
                    va.0,
                    MemErrorKind::Corrupt,
                    format!("{name} entry {entry:#x} points to a further table"),
                ));
            }
            Step::Leaf(base) => {
                let span = form.entry_span(level);
                let offset = addr & (span - 1);
                let pa = PhysAddr(base.0 & !(span - 1))
                    .checked_add(offset)
                    .ok_or_else(|| {
                        MemError::new(
                            va.0,
                            MemErrorKind::Corrupt,
                            format!("{name} entry {entry:#x} maps past the end of memory"),
                        )
                    })?;
                return Ok(Translation {
                    pa,
                    page_size: span - offset,
                });
            }
            Step::Invalid(why) => {
                return Err(MemError::new(
                    va.0,
                    MemErrorKind::NotPresent { level },
                    format!("{name} entry {entry:#x} at physical {entry_addr}: {why}"),
                ));
            }
            Step::Reserved(why) => {
                return Err(MemError::new(
                    va.0,
                    MemErrorKind::Corrupt,
                    format!("{name} entry {entry:#x} at physical {entry_addr}: {why}"),
                ));
            }
        }
    }
    // Unreachable in practice: level 0 always ends the loop with a leaf or an error.
    Err(MemError::new(
        va.0,
        MemErrorKind::Corrupt,
        "the page-table walk did not reach a page",
    ))
}

/// Reads one little-endian 8-byte entry (both supported arches are little-endian).
fn read_entry(mem: &dyn PhysRead, at: PhysAddr) -> Result<u64, MemError> {
    let mut buf = [0u8; 8];
    let mut done = 0;
    while done < buf.len() {
        let pos = at.0.checked_add(done as u64).ok_or_else(|| {
            MemError::new(
                at.0,
                MemErrorKind::Corrupt,
                "entry address past the end of memory",
            )
        })?;
        let rest = buf.get_mut(done..).unwrap_or_default();
        let n = mem.read_phys(PhysAddr(pos), rest)?;
        if n == 0 {
            return Err(MemError::new(
                pos,
                MemErrorKind::NotInDump,
                "the dump returned no bytes",
            ));
        }
        done += n.min(rest.len());
    }
    Ok(u64::from_le_bytes(buf))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::HashMap;

    const CHUNK: u64 = 4096;

    /// Physical memory made of 4 KiB chunks; reads stop at the first missing chunk, like a dump
    /// with holes.
    #[derive(Default)]
    pub(crate) struct FakeMem {
        chunks: HashMap<u64, Vec<u8>>,
    }

    impl FakeMem {
        pub(crate) fn zero(&mut self, pa: u64, len: u64) {
            let mut c = pa / CHUNK;
            while c * CHUNK < pa + len {
                self.chunks.entry(c).or_insert_with(|| vec![0; CHUNK as usize]);
                c += 1;
            }
        }
        pub(crate) fn write(&mut self, pa: u64, bytes: &[u8]) {
            for (i, b) in bytes.iter().enumerate() {
                let a = pa + i as u64;
                let chunk = self
                    .chunks
                    .entry(a / CHUNK)
                    .or_insert_with(|| vec![0; CHUNK as usize]);
                chunk[(a % CHUNK) as usize] = *b;
            }
        }
        pub(crate) fn set(&mut self, pa: u64, entry: u64) {
            self.write(pa, &entry.to_le_bytes());
        }
        /// The 4 KiB chunks held, by physical address (to lay them out as a dump file).
        pub(crate) fn chunks(&self) -> Vec<(u64, &[u8])> {
            let mut v: Vec<(u64, &[u8])> = self
                .chunks
                .iter()
                .map(|(c, d)| (c * CHUNK, d.as_slice()))
                .collect();
            v.sort_by_key(|&(pa, _)| pa);
            v
        }
    }

    impl PhysRead for FakeMem {
        fn read_phys(&self, paddr: PhysAddr, buf: &mut [u8]) -> Result<usize, MemError> {
            let paddr = paddr.0;
            let mut n = 0;
            while n < buf.len() {
                let a = paddr + n as u64;
                let Some(chunk) = self.chunks.get(&(a / CHUNK)) else {
                    break;
                };
                buf[n] = chunk[(a % CHUNK) as usize];
                n += 1;
            }
            if n == 0 {
                Err(MemError::new(
                    paddr,
                    MemErrorKind::NotInDump,
                    "not in the fake dump",
                ))
            } else {
                Ok(n)
            }
        }
    }

    /// Builds page tables with its own index arithmetic (not the walker's): tables are one page of
    /// 8-byte entries; the top one has `va_bits - page_shift - (levels-1)*(page_shift-3)` bits.
    pub(crate) struct Builder {
        pub mem: FakeMem,
        pub page_shift: u32,
        pub va_bits: u32,
        pub levels: u32,
        pub root: u64,
        next_table: u64,
        tables: HashMap<u64, u64>,
        /// Entry for a table at physical address `pa`.
        pub table_entry: fn(u64) -> u64,
        /// Entry for a leaf (page at level 0, block/huge page above) at `pa`.
        pub leaf_entry: fn(u64, u32) -> u64,
    }

    impl Builder {
        pub(crate) fn new(
            page_shift: u32,
            va_bits: u32,
            table_entry: fn(u64) -> u64,
            leaf_entry: fn(u64, u32) -> u64,
        ) -> Builder {
            let per = page_shift - 3;
            // The kernel's ARM64_HW_PGTABLE_LEVELS(), not the walker's ceiling division.
            let levels = (va_bits - 4) / per;
            let mut b = Builder {
                mem: FakeMem::default(),
                page_shift,
                va_bits,
                levels,
                root: 0,
                next_table: 0x10_0000,
                tables: HashMap::new(),
                table_entry,
                leaf_entry,
            };
            b.root = b.alloc();
            b
        }

        fn alloc(&mut self) -> u64 {
            let size = 1u64 << self.page_shift;
            let pa = self.next_table;
            self.next_table += size;
            self.mem.zero(pa, size);
            pa
        }

        /// Index at `level` (0 = last level).
        pub(crate) fn index(&self, va: u64, level: u32) -> u64 {
            let per = self.page_shift - 3;
            let bits = if level == self.levels - 1 {
                self.va_bits - self.page_shift - (self.levels - 1) * per
            } else {
                per
            };
            (va >> (self.page_shift + level * per)) % (1u64 << bits)
        }

        /// Address of the entry for `va` at `level`, creating tables above it as needed.
        pub(crate) fn entry_addr(&mut self, va: u64, level: u32) -> u64 {
            let mut table = self.root;
            let mut l = self.levels - 1;
            loop {
                let at = table + 8 * self.index(va, l);
                if l == level {
                    return at;
                }
                table = match self.tables.get(&at) {
                    Some(t) => *t,
                    None => {
                        let t = self.alloc();
                        self.tables.insert(at, t);
                        let e = (self.table_entry)(t);
                        self.mem.set(at, e);
                        t
                    }
                };
                l -= 1;
            }
        }

        /// Maps `va` to `pa` with a leaf at `level`.
        pub(crate) fn map(&mut self, va: u64, pa: u64, level: u32) {
            let at = self.entry_addr(va, level);
            let e = (self.leaf_entry)(pa, level);
            self.mem.set(at, e);
        }
    }

    /// Reads `len` bytes at `va` the way a dump target does: translate, read to the page end.
    pub(crate) fn read_virt(
        mem: &FakeMem,
        form: &PagingForm,
        root: PhysAddr,
        va: u64,
        len: usize,
    ) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let t = translate(mem, form, root, VirtAddr(va + done as u64)).expect("translate");
            let n = (len - done).min(t.page_size as usize);
            let got = mem.read_phys(t.pa, &mut out[done..done + n]).expect("read");
            assert_eq!(got, n, "the physical page must hold page_size bytes");
            done += n;
        }
        out
    }

    #[test]
    fn forms_split_addresses_like_the_kernel() {
        // (pte, page_shift, va_bits) -> (levels, top_bits), from the kernel's pgtable-hwdef.h
        // geometry: ARM64_HW_PGTABLE_LEVELS(va) = (va - 4) / (page_shift - 3).
        let cases = [
            (PteFormat::X86_64, 12, 48, 4, 9),
            (PteFormat::X86_64, 12, 57, 5, 9),
            (PteFormat::Aarch64, 12, 39, 3, 9),
            (PteFormat::Aarch64, 12, 48, 4, 9),
            (PteFormat::Aarch64Lpa2, 12, 52, 5, 4),
            (PteFormat::Aarch64, 14, 36, 2, 11),
            (PteFormat::Aarch64, 14, 47, 3, 11),
            (PteFormat::Aarch64, 14, 48, 4, 1),
            (PteFormat::Aarch64Lpa2, 14, 52, 4, 5),
            (PteFormat::Aarch64Lpa, 16, 42, 2, 13),
            (PteFormat::Aarch64Lpa, 16, 48, 3, 6),
            (PteFormat::Aarch64Lpa, 16, 52, 3, 10),
        ];
        for (pte, ps, va, levels, top) in cases {
            let f = PagingForm::new(pte, ps, va).unwrap();
            assert_eq!((f.levels, f.top_bits), (levels, top), "{ps} {va}");
            assert_eq!(
                f.levels as u32,
                (va as u32 - 4) / (ps as u32 - 3),
                "kernel formula for {ps}/{va}"
            );
        }
        assert!(PagingForm::new(PteFormat::X86_64, 13, 48).is_err());
        assert!(PagingForm::new(PteFormat::X86_64, 12, 64).is_err());
        assert!(PagingForm::new(PteFormat::X86_64, 12, 12).is_err());
    }

    #[test]
    fn reads_of_missing_tables_are_errors_naming_the_level() {
        let mem = FakeMem::default();
        let form = PagingForm::new(PteFormat::X86_64, 12, 48).unwrap();
        let w = walk_steps(&mem, &form, PhysAddr(0x1000), VirtAddr(0xffff_ffff_8100_0000));
        let e = w.result.unwrap_err();
        assert_eq!(e.kind, MemErrorKind::NotInDump, "{e}");
        assert!(e.detail.contains("PGD"), "{}", e.detail);
        assert_eq!(e.addr, 0xffff_ffff_8100_0000);
        assert_eq!(w.steps.len(), 1);
        assert_eq!(w.steps[0].entry, None);
        // A root at the very top of the address space must not overflow.
        let r = translate(
            &mem,
            &form,
            PhysAddr(u64::MAX - 7),
            VirtAddr(0xffff_ffff_ffff_f000),
        );
        assert!(r.is_err());
    }

    /// Counts physical reads, to check that a range walk reads each leaf table once.
    struct Counting<'a>(&'a FakeMem, std::cell::Cell<usize>);

    impl PhysRead for Counting<'_> {
        fn read_phys(&self, paddr: PhysAddr, buf: &mut [u8]) -> Result<usize, MemError> {
            self.1.set(self.1.get() + 1);
            self.0.read_phys(paddr, buf)
        }
    }

    fn x86_table(pa: u64) -> u64 {
        pa | 0x63
    }

    fn x86_leaf(pa: u64, level: u32) -> u64 {
        if level == 0 {
            pa | 0x63
        } else {
            pa | 0x63 | 0x80
        }
    }

    /// A range walk must say, for every address, what a whole walk says: the same physical
    /// address, a run that only joins pages that really are contiguous, and the same error
    /// where the tables stop. And it must read each leaf table once, not walk every page.
    #[test]
    fn range_walks_agree_with_whole_walks_and_read_each_leaf_table_once() {
        let mut b = Builder::new(12, 48, x86_table, x86_leaf);
        let base = 0xffff_ffff_8100_0000u64;
        let page = 0x1000u64;
        // Pages 0..6 contiguous, 6 elsewhere, 7 and 8 contiguous again, 9 unmapped, 10 mapped;
        // pages 508..516 cross into the next PTE table; then a 2 MiB page and a 4K page after it.
        for i in 0..6 {
            b.map(base + i * page, 0x40_0000 + i * page, 0);
        }
        b.map(base + 6 * page, 0x90_0000, 0);
        b.map(base + 7 * page, 0x40_7000, 0);
        b.map(base + 8 * page, 0x40_8000, 0);
        b.map(base + 10 * page, 0x41_0000, 0);
        for i in 508..516 {
            b.map(base + i * page, 0x100_0000 + i * page, 0);
        }
        b.map(base + 0x40_0000, 0x200_0000, 1);
        b.map(base + 0x60_0000, 0x220_0000, 0);
        let form = PagingForm::new(PteFormat::X86_64, 12, 48).unwrap();
        let root = PhysAddr(b.root);
        let paging = Paging { form, root };
        let starts = [
            0,
            0x10,
            5 * page + 8,
            7 * page,
            9 * page,
            507 * page + 3,
            0x3f_f000,
            0x40_0000,
            0x5f_f000,
        ];
        for &start in &starts {
            for len in [1u64, 8, page, 3 * page, 20 * page, 1 << 22] {
                let mut walk = paging.range_walk();
                let mut at = base + start;
                let end = at + len;
                while at < end {
                    let whole = translate(&b.mem, &form, root, VirtAddr(at));
                    let ranged = walk.next(&b.mem, VirtAddr(at), end - at);
                    match (whole, ranged) {
                        (Ok(w), Ok(r)) => {
                            assert_eq!(r.pa, w.pa, "{at:#x}+{len:#x}");
                            assert!(r.page_size >= w.page_size.min(end - at), "{at:#x}");
                            assert!(r.page_size < (end - at) + w.page_size.max(page), "{at:#x}");
                            // Every page of the run maps where the run says.
                            let mut off = 0;
                            while off < r.page_size.min(end - at) {
                                let t = translate(&b.mem, &form, root, VirtAddr(at + off));
                                assert_eq!(t.map(|t| t.pa.0), Ok(r.pa.0 + off), "{:#x}", at + off);
                                off += page - ((at + off) & (page - 1));
                            }
                            at += r.page_size;
                        }
                        (Err(w), Err(r)) => {
                            assert_eq!(r, w, "{at:#x}");
                            // A real reader stops here; go on to check the rest too.
                            at = (at | (page - 1)) + 1;
                        }
                        (w, r) => panic!("{at:#x}: whole walk {w:?}, range walk {r:?}"),
                    }
                }
            }
        }
        // Nine pages asked for: one whole walk (4 entry reads) plus one read of the 8 PTEs after
        // the first, instead of 4 reads a page. The first run ends where contiguity does.
        let counting = Counting(&b.mem, std::cell::Cell::new(0));
        let mut walk = paging.range_walk();
        let r = walk.next(&counting, VirtAddr(base), 9 * page).unwrap();
        assert_eq!((r.pa, r.page_size), (PhysAddr(0x40_0000), 6 * page));
        assert_eq!(counting.1.get(), 5);
        // The page after the run and the two after it come from the entries already read.
        let r = walk.next(&counting, VirtAddr(base + 6 * page), 3 * page).unwrap();
        assert_eq!((r.pa, r.page_size), (PhysAddr(0x90_0000), page));
        let r = walk.next(&counting, VirtAddr(base + 7 * page), 2 * page).unwrap();
        assert_eq!((r.pa, r.page_size), (PhysAddr(0x40_7000), 2 * page));
        assert_eq!(counting.1.get(), 5, "no more reads within the table read");
    }
}
