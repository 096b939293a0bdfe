//! makedumpfile's kdump-compressed format ("KDUMP   ", and the older "DISKDUMP"): header,
//! sub-header, one or two page bitmaps, one page descriptor per dumpable page, page data.
//! Layout and field offsets: makedumpfile `diskdump_mod.h`/`IMPLEMENTATION`, crash `diskdump.c`
//! (see the team reference, section 5.1). Both makedumpfile and QEMU (`kdump-raw-*`) write it.

use super::cache::{PageCache, DEFAULT_CACHE_BYTES};
use super::codec::{self, CodecError, Compression};
use crate::mem::bytes::{read_vec, Bytes, Endian, FormatError, ReadAt};
use crate::mem::{MemError, MemErrorKind};
use std::cell::RefCell;

/// Size of the fixed part of the 64-bit `disk_dump_header` (up to `tasks[]`).
const HEADER_SIZE: usize = 464;
/// Size of the 64-bit `kdump_sub_header` as of header_version 6.
const SUB_HEADER_SIZE: usize = 104;
/// Size of a `page_desc`.
const PAGE_DESC_SIZE: u64 = 24;
/// Pages per rank-table entry (crash's BITMAP_SECT_LEN): 512 bitmap bytes.
const SECTION_PFNS: u64 = 4096;
const SECTION_BYTES: usize = (SECTION_PFNS / 8) as usize;
/// Pages per sub-rank entry: 64 bitmap bytes, so a rank sums at most 8 words.
const BLOCK_PFNS: u64 = 512;
const BLOCK_BYTES: usize = (BLOCK_PFNS / 8) as usize;
/// Full pages decoded per batch of a multi-page read: their descriptors come in one read.
const BATCH_PAGES: usize = 64;
/// Stored data of pages that lie back to back in the file is read this much at a time.
const DATA_WINDOW: u64 = 64 << 10;
/// `status` bits (`diskdump_mod.h`).
const STATUS_INCOMPLETE: u32 = 0x8;
/// DUMP_DH_COMPRESSED_ZSTD (makedumpfile 1.7.0+).
const STATUS_ZSTD: u32 = 0x20;

pub fn is_kdump(head: &[u8]) -> bool {
    head.starts_with(b"KDUMP   ") || head.starts_with(b"DISKDUMP")
}

/// Parsed header fields, for `--info` and for the dump's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdumpHeader {
    pub signature: String,
    pub endian: Endian,
    pub header_version: i32,
    pub release: String,
    pub machine: String,
    pub status: u32,
    pub block_size: u64,
    pub sub_hdr_size: u64,
    pub bitmap_blocks: u64,
    pub max_mapnr: u64,
    pub current_cpu: u32,
    pub nr_cpus: u32,
    /// Sub-header fields, gated by header_version (None when absent).
    pub phys_base: Option<u64>,
    pub dump_level: Option<i32>,
    pub split: Option<i32>,
    pub offset_vmcoreinfo: Option<(u64, u64)>,
    pub offset_note: Option<(u64, u64)>,
}

impl KdumpHeader {
    /// Compression named by `status` (what makedumpfile/QEMU was asked for; pages that did not
    /// shrink are stored raw anyway).
    pub fn compression(&self) -> Compression {
        Compression::from_flags(self.status & (0x7 | STATUS_ZSTD))
    }

    pub fn incomplete(&self) -> bool {
        self.status & STATUS_INCOMPLETE != 0
    }
}

pub struct KdumpFile {
    pub header: KdumpHeader,
    block_shift: u32,
    two_bitmaps: bool,
    /// File offset of the first bitmap (memory holes), used only to explain errors.
    bitmap1_offset: u64,
    /// The dumpable-page bitmap, `ceil(max_mapnr / 8)` bytes.
    dumpable: Vec<u8>,
    /// `ranks[k]` = dumpable pages below pfn `k * SECTION_PFNS`.
    ranks: Vec<u64>,
    /// `sub_ranks[k]` = dumpable pages from the start of pfn `k * BLOCK_PFNS`'s section up to
    /// it (below 4096, so 16 bits): with `ranks`, a rank is two lookups and at most 8 popcounts.
    sub_ranks: Vec<u16>,
    data_offset: u64,
    pub vmcoreinfo: Option<Vec<u8>>,
    pub notes: Option<Vec<u8>>,
    cache: RefCell<PageCache>,
    /// Buffers reused by every read: page descriptors and stored page data.
    scratch: RefCell<Scratch>,
    /// Read through a flattened file's reassembled view: page offsets are not file offsets.
    flattened: bool,
}

/// Buffers kept between reads so a read allocates nothing: raw descriptors, their parsed form,
/// and stored (compressed) page data. Bounded by BATCH_PAGES and DATA_WINDOW (or one block).
#[derive(Default)]
struct Scratch {
    raw: Vec<u8>,
    descs: Vec<Desc>,
    data: Vec<u8>,
}

/// A page descriptor (`page_desc_t`) that passed its checks.
#[derive(Debug, Clone, Copy)]
struct Desc {
    offset: u64,
    size: u64,
    flags: u32,
}

fn header_endian(head: &[u8]) -> Option<Endian> {
    // The header is in the dumped machine's byte order: pick the one giving a sane block size.
    [Endian::Little, Endian::Big].into_iter().find(|&e| {
        let b = Bytes::new(head, e, "kdump header");
        let bs = b.u32(428, "block_size").unwrap_or(0);
        let ver = b.i32(8, "header_version").unwrap_or(-1);
        bs.is_power_of_two() && (512..=1 << 20).contains(&bs) && (0..=1000).contains(&ver)
    })
}

impl KdumpFile {
    pub fn parse(src: &dyn ReadAt) -> Result<KdumpFile, FormatError> {
        let head = read_vec(src, 0, HEADER_SIZE as u64, "kdump header")?;
        if !is_kdump(&head) {
            return Err(FormatError::unsupported("not a kdump-compressed file"));
        }
        let endian = header_endian(&head).ok_or_else(|| {
            FormatError::corrupt(
                "corrupt kdump header: the block size is not a page size; the file is damaged or \
                 not a makedumpfile dump",
            )
        })?;
        let h = Bytes::new(&head, endian, "kdump header");
        let header_version = h.i32(8, "header_version")?;
        let block_size = u64::from(h.u32(428, "block_size")?);
        let block_shift = block_size.trailing_zeros();
        let sub_hdr_size = u64::from(h.u32(432, "sub_hdr_size")?);
        let bitmap_blocks = u64::from(h.u32(436, "bitmap_blocks")?);
        let mut hdr = KdumpHeader {
            signature: h.cstr(0, 8, "signature")?.trim_end().to_string(),
            endian,
            header_version,
            release: h.cstr(12 + 2 * 65, 65, "utsname.release")?,
            machine: h.cstr(12 + 4 * 65, 65, "utsname.machine")?,
            status: h.u32(424, "status")?,
            block_size,
            sub_hdr_size,
            bitmap_blocks,
            max_mapnr: u64::from(h.u32(440, "max_mapnr")?),
            current_cpu: h.u32(456, "current_cpu")?,
            nr_cpus: h.u32(460, "nr_cpus")?,
            phys_base: None,
            dump_level: None,
            split: None,
            offset_vmcoreinfo: None,
            offset_note: None,
        };
        if sub_hdr_size > 0 {
            let len = (sub_hdr_size * block_size).min(SUB_HEADER_SIZE as u64);
            let sub = read_vec(src, block_size, len, "kdump sub-header")?;
            let s = Bytes::new(&sub, endian, "kdump sub-header");
            hdr.phys_base = Some(s.u64(0, "phys_base")?);
            if header_version >= 1 {
                hdr.dump_level = Some(s.i32(8, "dump_level")?);
            }
            if header_version >= 2 {
                hdr.split = Some(s.i32(12, "split")?);
            }
            if header_version >= 3 {
                hdr.offset_vmcoreinfo =
                    Some((s.u64(32, "offset_vmcoreinfo")?, s.u64(40, "size_vmcoreinfo")?));
            }
            if header_version >= 4 {
                hdr.offset_note = Some((s.u64(48, "offset_note")?, s.u64(56, "size_note")?));
            }
            if header_version >= 6 {
                let m64 = s.u64(96, "max_mapnr_64")?;
                if m64 != 0 {
                    hdr.max_mapnr = m64;
                }
            }
        }
        if hdr.split.is_some_and(|s| s != 0) {
            return Err(FormatError::unsupported(
                "this file is one part of a split dump (makedumpfile --split); join the parts with \
                 makedumpfile --reassemble and open the result",
            ));
        }
        let corrupt =
            |what: &str| FormatError::corrupt(format!("corrupt kdump header: {what}; the file is damaged"));
        let bitmap_offset = sub_hdr_size
            .checked_add(1)
            .and_then(|b| b.checked_mul(block_size))
            .ok_or_else(|| corrupt("sub_hdr_size is impossible"))?;
        let bitmap_len = bitmap_blocks
            .checked_mul(block_size)
            .ok_or_else(|| corrupt("bitmap_blocks is impossible"))?;
        let data_offset = bitmap_offset
            .checked_add(bitmap_len)
            .ok_or_else(|| corrupt("bitmap_blocks is impossible"))?;
        if data_offset > src.len() {
            return Err(FormatError::truncated(format!(
                "the kdump file is truncated: its bitmaps end at offset {data_offset:#x} but the file has {} \
                 bytes; copy the dump again",
                src.len()
            )));
        }
        let needed = hdr.max_mapnr.div_ceil(8);
        // Two bitmaps when there is room for two of max_mapnr bits each (crash `dump_is_partial`).
        let two_bitmaps = bitmap_blocks >= needed.div_ceil(block_size).saturating_mul(2);
        let (dumpable_offset, available) = if two_bitmaps {
            (bitmap_offset + bitmap_len / 2, bitmap_len / 2)
        } else {
            (bitmap_offset, bitmap_len)
        };
        if needed > available {
            return Err(corrupt(&format!(
                "max_mapnr {} needs {needed} bitmap bytes but the bitmap has {available}",
                hdr.max_mapnr
            )));
        }
        let dumpable = read_vec(src, dumpable_offset, needed, "page bitmap")?;
        let mut ranks = Vec::with_capacity(dumpable.len().div_ceil(SECTION_BYTES));
        let mut sub_ranks = Vec::with_capacity(dumpable.len().div_ceil(BLOCK_BYTES));
        let mut total = 0u64;
        for section in dumpable.chunks(SECTION_BYTES) {
            ranks.push(total);
            let mut within = 0u16;
            for block in section.chunks(BLOCK_BYTES) {
                sub_ranks.push(within);
                // At most 512 bits a block, 4096 a section: the sum stays below u16::MAX.
                within += block.iter().map(|b| b.count_ones() as u16).sum::<u16>();
            }
            total += u64::from(within);
        }
        let vmcoreinfo = match hdr.offset_vmcoreinfo {
            Some((off, size)) if off != 0 && size != 0 => Some(read_vec(src, off, size, "VMCOREINFO")?),
            _ => None,
        };
        let notes = match hdr.offset_note {
            Some((off, size)) if off != 0 && size != 0 => Some(read_vec(src, off, size, "ELF notes")?),
            _ => None,
        };
        if hdr.incomplete() {
            log::warn!("the dump is incomplete (makedumpfile ran out of space): some pages are missing");
        }
        Ok(KdumpFile {
            header: hdr,
            block_shift,
            two_bitmaps,
            bitmap1_offset: bitmap_offset,
            dumpable,
            ranks,
            sub_ranks,
            data_offset,
            vmcoreinfo,
            notes,
            cache: RefCell::new(PageCache::new(DEFAULT_CACHE_BYTES)),
            scratch: RefCell::new(Scratch::default()),
            flattened: false,
        })
    }

    /// Says the file is read through `flat::FlatSource`, so that errors give page offsets as
    /// offsets of the reassembled kdump file (what `makedumpfile -R` writes).
    pub fn mark_flattened(&mut self) {
        self.flattened = true;
    }

    pub fn set_cache_limit(&self, bytes: usize) {
        self.cache.borrow_mut().set_limit(bytes);
    }

    /// Number of dumpable pages.
    pub fn dumpable_pages(&self) -> u64 {
        self.dumpable.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    fn is_dumpable(&self, pfn: u64) -> bool {
        let byte = usize::try_from(pfn >> 3).ok().and_then(|i| self.dumpable.get(i));
        byte.is_some_and(|b| b & (1 << (pfn & 7)) != 0)
    }

    /// Physical ranges (start, end) whose pages are in the dump, merged.
    pub fn dumpable_ranges(&self) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (i, &b) in self.dumpable.iter().enumerate() {
            if b == 0 {
                continue;
            }
            for bit in 0..8u64 {
                if b & (1 << bit) == 0 {
                    continue;
                }
                let start = ((i as u64) * 8 + bit) << self.block_shift;
                let end = start + self.header.block_size;
                match ranges.last_mut() {
                    Some(last) if last.1 == start => last.1 = end,
                    _ => ranges.push((start, end)),
                }
            }
        }
        ranges
    }

    /// Index of pfn's descriptor: dumpable pages below it. Constant time: the section's and
    /// block's counts, then the popcount of at most 63 bitmap bytes.
    fn rank(&self, pfn: u64) -> u64 {
        let section = usize::try_from(pfn / SECTION_PFNS).unwrap_or(usize::MAX);
        let block = usize::try_from(pfn / BLOCK_PFNS).unwrap_or(usize::MAX);
        let base = self.ranks.get(section).copied().unwrap_or(0)
            + u64::from(self.sub_ranks.get(block).copied().unwrap_or(0));
        let first = block.saturating_mul(BLOCK_BYTES);
        let last = usize::try_from(pfn >> 3).unwrap_or(usize::MAX);
        let bytes = self.dumpable.get(first..last).unwrap_or_default();
        let words = bytes.chunks_exact(8);
        let tail: u64 = words.remainder().iter().map(|b| u64::from(b.count_ones())).sum();
        let whole: u64 = words
            .map(|w| u64::from(u64::from_le_bytes(w.try_into().unwrap_or_default()).count_ones()))
            .sum();
        let partial = self
            .dumpable
            .get(last)
            .map_or(0, |b| u64::from((b & ((1u8 << (pfn & 7)) - 1)).count_ones()));
        base + whole + tail + partial
    }

    /// Whether a pfn below max_mapnr is RAM (set in the 1st bitmap); None with one bitmap.
    fn in_ram(&self, src: &dyn ReadAt, pfn: u64) -> Option<bool> {
        if !self.two_bitmaps {
            return None;
        }
        let mut b = [0u8; 1];
        let off = self.bitmap1_offset.checked_add(pfn >> 3)?;
        src.read_exact_at(off, &mut b).ok()?;
        Some(b.first().is_some_and(|v| v & (1 << (pfn & 7)) != 0))
    }

    /// True when every excluded RAM page is known to be all zeros: the dump level excluded zero
    /// pages and nothing else (makedumpfile DL_EXCLUDE_ZERO = bit 0 of `dump_level`). Current
    /// makedumpfile (checked: 1.7.2) and QEMU keep zero pages in the bitmap with a shared zero
    /// descriptor, so this matters only for older writers that cleared their bitmap bits instead.
    fn excluded_pages_are_zero(&self) -> bool {
        self.header.dump_level == Some(1)
    }

    /// Why a pfn is not in the dump: a hole in physical memory, or a page makedumpfile excluded.
    fn missing(&self, src: &dyn ReadAt, paddr: u64, pfn: u64) -> MemError {
        if pfn >= self.header.max_mapnr {
            return MemError::new(
                paddr,
                MemErrorKind::NotInDump,
                format!("pfn {pfn:#x} is beyond the end of the dumped memory"),
            );
        }
        if self.in_ram(src, pfn) == Some(false) {
            return MemError::new(
                paddr,
                MemErrorKind::NotInDump,
                format!("pfn {pfn:#x} is not RAM in this dump (a hole in physical memory)"),
            );
        }
        let level = self
            .header
            .dump_level
            .map(|l| format!(" -d {l}"))
            .unwrap_or_default();
        MemError::new(
            paddr,
            MemErrorKind::Excluded,
            format!("pfn {pfn:#x} was excluded from the dump (makedumpfile{level}); make the dump with a lower -d to keep it"),
        )
    }

    /// Reads the descriptors of `count` pages from pfn's on (the pages must be consecutive
    /// dumpable pfns, whose descriptors are consecutive) into `raw`, and returns how many the
    /// file holds: fewer when it is truncated, an error when it holds not even pfn's.
    fn read_descs(
        &self,
        src: &dyn ReadAt,
        paddr: u64,
        pfn: u64,
        count: usize,
        raw: &mut Vec<u8>,
    ) -> Result<usize, MemError> {
        let desc_off = self
            .rank(pfn)
            .checked_mul(PAGE_DESC_SIZE)
            .and_then(|o| o.checked_add(self.data_offset))
            .ok_or_else(|| {
                MemError::new(
                    paddr,
                    MemErrorKind::Corrupt,
                    format!("page descriptor of pfn {pfn:#x} has an impossible offset"),
                )
            })?;
        let held = src.len().saturating_sub(desc_off) / PAGE_DESC_SIZE;
        let n = usize::try_from(held).unwrap_or(usize::MAX).min(count);
        if n == 0 {
            return Err(MemError::new(
                paddr,
                MemErrorKind::NotInDump,
                format!(
                    "page descriptor of pfn {pfn:#x} is past the end of the file (the dump is truncated)"
                ),
            ));
        }
        raw.resize(n * PAGE_DESC_SIZE as usize, 0);
        src.read_exact_at(desc_off, raw)
            .map_err(|e| MemError::from_io(paddr, &e))?;
        Ok(n)
    }

    /// Parses and checks one raw descriptor of pfn (whose data is wanted at `paddr`).
    fn parse_desc(&self, src: &dyn ReadAt, paddr: u64, pfn: u64, raw: &[u8]) -> Result<Desc, MemError> {
        let err = |kind, detail: String| MemError::new(paddr, kind, detail);
        let corrupt = |detail: String| err(MemErrorKind::Corrupt, detail);
        let d = Bytes::new(raw, self.header.endian, "page descriptor");
        let offset = d.u64(0, "offset").map_err(|e| corrupt(e.detail))?;
        let size = u64::from(d.u32(8, "size").map_err(|e| corrupt(e.detail))?);
        let flags = d.u32(12, "flags").map_err(|e| corrupt(e.detail))?;
        if offset == 0 {
            return Err(if self.header.incomplete() {
                err(
                    MemErrorKind::NotInDump,
                    format!("pfn {pfn:#x} was not written: the dump is incomplete (makedumpfile ran out of disk space)"),
                )
            } else {
                // The descriptor was never written: the page is not in the file.
                err(
                    MemErrorKind::NotInDump,
                    format!("pfn {pfn:#x} has an empty page descriptor: the dump is incomplete or corrupt"),
                )
            });
        }
        if size == 0 || size > self.header.block_size {
            return Err(corrupt(format!(
                "pfn {pfn:#x} has a corrupt page descriptor (size {size})"
            )));
        }
        if offset.checked_add(size).is_none_or(|end| end > src.len()) {
            return Err(err(
                MemErrorKind::NotInDump,
                format!("the data of pfn {pfn:#x} is past the end of the file (the dump is truncated)"),
            ));
        }
        Ok(Desc { offset, size, flags })
    }

    /// Decodes pfn's stored data into `out` (one block).
    fn decode_into(
        &self,
        paddr: u64,
        pfn: u64,
        d: &Desc,
        stored: &[u8],
        out: &mut [u8],
    ) -> Result<(), MemError> {
        let codec = Compression::from_flags(d.flags);
        codec::decode(codec, stored, out).map_err(|e| {
            let kind = match e {
                CodecError::Corrupt(_) => MemErrorKind::Corrupt,
                CodecError::Unsupported(_) => MemErrorKind::Unsupported,
            };
            let at = if self.flattened {
                format!("offset {:#x} of the reassembled kdump file", d.offset)
            } else {
                format!("file offset {:#x}", d.offset)
            };
            MemError::new(
                paddr,
                kind,
                format!(
                    "pfn {pfn:#x} cannot be decompressed ({} page data, {} bytes at {at}): {e}",
                    codec.name(),
                    d.size
                ),
            )
        })
    }

    /// Reads and decodes one page, for the cache. Errors are reported at `paddr`, the address
    /// asked for.
    fn load_page(&self, src: &dyn ReadAt, paddr: u64, pfn: u64) -> Result<Vec<u8>, MemError> {
        let mut scratch = self.scratch.borrow_mut();
        let Scratch { raw, data, .. } = &mut *scratch;
        self.read_descs(src, paddr, pfn, 1, raw)?;
        let d = self.parse_desc(src, paddr, pfn, raw)?;
        let stored = read_into(src, paddr, d.offset, d.size, data)?;
        let mut page = vec![0u8; self.header.block_size as usize];
        self.decode_into(paddr, pfn, &d, stored, &mut page)?;
        Ok(page)
    }

    /// Reads whole pages from the dumpable pfn at `paddr` (block-aligned) straight into `buf`
    /// (a multiple of the block size): up to BATCH_PAGES consecutive dumpable pages, their
    /// descriptors in one read and the data of pages stored back to back in reads of up to
    /// DATA_WINDOW. Returns the bytes of the pages read before the first that fails; that
    /// page's error only when it is the first.
    fn read_pages(&self, src: &dyn ReadAt, paddr: u64, pfn: u64, buf: &mut [u8]) -> Result<usize, MemError> {
        let bs = self.header.block_size as usize;
        let mut count = 1;
        while count < (buf.len() / bs).min(BATCH_PAGES)
            && pfn + (count as u64) < self.header.max_mapnr
            && self.is_dumpable(pfn + count as u64)
        {
            count += 1;
        }
        let mut scratch = self.scratch.borrow_mut();
        let Scratch { raw, descs, data } = &mut *scratch;
        let held = self.read_descs(src, paddr, pfn, count, raw)?;
        descs.clear();
        // A page whose descriptor fails ends the batch; its error is returned only when it is
        // the first page (otherwise the caller's next read meets it first).
        for (i, r) in raw.chunks_exact(PAGE_DESC_SIZE as usize).take(held).enumerate() {
            let at = paddr + (i * bs) as u64;
            match self.parse_desc(src, at, pfn + i as u64, r) {
                Ok(d) => descs.push(d),
                Err(e) if i == 0 => return Err(e),
                Err(_) => break,
            }
        }
        let window = DATA_WINDOW.max(self.header.block_size);
        let mut i = 0;
        while i < descs.len() {
            // Pages i..j lie back to back in the file: one read for all of them.
            let start = descs.get(i).map_or(0, |d| d.offset);
            let mut end = descs.get(i).map_or(0, |d| d.offset + d.size);
            let mut j = i + 1;
            while let Some(d) = descs.get(j) {
                if d.offset != end || d.offset + d.size - start > window {
                    break;
                }
                end += d.size;
                j += 1;
            }
            let stored = match read_into(src, paddr, start, end - start, data) {
                Ok(s) => s,
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(i * bs),
            };
            for (k, d) in descs.iter().enumerate().take(j).skip(i) {
                let from = (d.offset - start) as usize;
                let input = stored.get(from..from + d.size as usize).unwrap_or_default();
                let out = buf.get_mut(k * bs..(k + 1) * bs).unwrap_or_default();
                let at = paddr + (k * bs) as u64;
                match self.decode_into(at, pfn + k as u64, d, input, out) {
                    Ok(()) => {}
                    Err(e) if k == 0 => return Err(e),
                    Err(_) => return Ok(k * bs),
                }
            }
            i = j;
        }
        Ok(descs.len() * bs)
    }

    pub fn read_phys(&self, src: &dyn ReadAt, paddr: u64, buf: &mut [u8]) -> Result<usize, MemError> {
        if buf.is_empty() {
            return Ok(0);
        }
        let bs = self.header.block_size as usize;
        let pfn = paddr >> self.block_shift;
        let within = (paddr & (self.header.block_size - 1)) as usize;
        let n = buf.len().min(bs - within);
        if pfn >= self.header.max_mapnr || !self.is_dumpable(pfn) {
            if pfn < self.header.max_mapnr
                && self.excluded_pages_are_zero()
                && self.in_ram(src, pfn) == Some(true)
            {
                let dst = buf.get_mut(..n).unwrap_or_default();
                dst.fill(0);
                return Ok(dst.len());
            }
            return Err(self.missing(src, paddr, pfn));
        }
        if within == 0 && buf.len() >= bs {
            // Whole pages go straight into the caller's buffer, past the cache: a large read
            // would only evict what small reads (structures, stacks) keep coming back to.
            let whole = buf.len() / bs * bs;
            return self.read_pages(src, paddr, pfn, buf.get_mut(..whole).unwrap_or_default());
        }
        let mut cache = self.cache.borrow_mut();
        if cache.get(pfn).is_none() {
            let page = self.load_page(src, paddr, pfn)?;
            cache.insert(pfn, page);
        }
        let copied = match cache.get(pfn) {
            Some(page) => copy_prefix(page, within, buf, n),
            None => {
                // The cache holds nothing (limit 0 or below one page): decode again, uncached.
                drop(cache);
                let page = self.load_page(src, paddr, pfn)?;
                copy_prefix(&page, within, buf, n)
            }
        };
        if copied == 0 {
            return Err(MemError::new(
                paddr,
                MemErrorKind::Corrupt,
                "internal error: page shorter than the block size",
            ));
        }
        Ok(copied)
    }
}

/// Reads `len` bytes at `offset` into the reused buffer `data` and returns them; a failure is
/// reported at `paddr`, the address whose page data this is.
fn read_into<'a>(
    src: &dyn ReadAt,
    paddr: u64,
    offset: u64,
    len: u64,
    data: &'a mut Vec<u8>,
) -> Result<&'a [u8], MemError> {
    let len = usize::try_from(len)
        .map_err(|_| MemError::new(paddr, MemErrorKind::Corrupt, "page data too large"))?;
    if data.len() < len {
        data.resize(len, 0);
    }
    let dst = data.get_mut(..len).unwrap_or_default();
    src.read_exact_at(offset, dst)
        .map_err(|e| MemError::from_io(paddr, &e))?;
    Ok(dst)
}

fn copy_prefix(page: &[u8], from: usize, buf: &mut [u8], n: usize) -> usize {
    match (page.get(from..from + n), buf.get_mut(..n)) {
        (Some(s), Some(d)) => {
            d.copy_from_slice(s);
            n
        }
        _ => 0,
    }
}

#[cfg(test)]
pub(crate) mod tests;
