//! Unit tests over synthetic kdump-compressed files built in memory.

use super::*;
use crate::dump::testutil::*;
use crate::mem::bytes::FormatErrorKind;
use crate::sys::clib::zlib_uncompress;

/// How one pfn appears in a synthetic dump.
#[derive(Clone)]
pub(crate) enum Page {
    /// Stored with page_desc flags and these bytes.
    Stored(u32, Vec<u8>),
    /// RAM that makedumpfile excluded (1st bitmap set, 2nd clear).
    Excluded,
    /// Dumpable, but its descriptor is all zeros (an incomplete dump).
    Lost,
}

pub(crate) struct Spec {
    pub block_size: usize,
    pub max_mapnr: u64,
    pub header_version: i32,
    pub status: u32,
    pub dump_level: i32,
    pub pages: Vec<(u64, Page)>,
    pub vmcoreinfo: Vec<u8>,
    pub notes: Vec<u8>,
    pub machine: &'static str,
}

impl Default for Spec {
    fn default() -> Spec {
        Spec {
            block_size: 4096,
            max_mapnr: 0,
            header_version: 6,
            status: 1,
            dump_level: 31,
            pages: Vec::new(),
            vmcoreinfo: b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n".to_vec(),
            notes: Vec::new(),
            machine: "x86_64",
        }
    }
}

/// Lays the file out as makedumpfile does: header block, sub-header blocks (holding VMCOREINFO
/// and notes after the sub-header struct), two bitmaps, page descriptors, page data.
pub(crate) fn build(spec: &Spec) -> Vec<u8> {
    let bs = spec.block_size;
    let max_mapnr = spec
        .max_mapnr
        .max(spec.pages.iter().map(|(p, _)| p + 1).max().unwrap_or(1));
    let vmci_off = bs + SUB_HEADER_SIZE;
    let note_off = vmci_off + spec.vmcoreinfo.len();
    let sub_blocks = (SUB_HEADER_SIZE + spec.vmcoreinfo.len() + spec.notes.len()).div_ceil(bs);
    let bitmap_bytes = (max_mapnr as usize).div_ceil(8);
    let bitmap_blocks = bitmap_bytes.div_ceil(bs) * 2;
    let mut v = Vec::new();
    put(&mut v, 0, b"KDUMP   ");
    put_u32(&mut v, 8, spec.header_version as u32);
    put(&mut v, 12 + 2 * 65, b"6.1.0-test");
    put(&mut v, 12 + 4 * 65, spec.machine.as_bytes());
    put_u32(&mut v, 424, spec.status);
    put_u32(&mut v, 428, bs as u32);
    put_u32(&mut v, 432, sub_blocks as u32);
    put_u32(&mut v, 436, bitmap_blocks as u32);
    put_u32(&mut v, 440, max_mapnr.min(u64::from(u32::MAX)) as u32);
    put_u32(&mut v, 460, 1);
    // Sub-header.
    put_u64(&mut v, bs, 0x1234_0000);
    put_u32(&mut v, bs + 8, spec.dump_level as u32);
    put_u64(
        &mut v,
        bs + 32,
        if spec.vmcoreinfo.is_empty() {
            0
        } else {
            vmci_off as u64
        },
    );
    put_u64(&mut v, bs + 40, spec.vmcoreinfo.len() as u64);
    put_u64(
        &mut v,
        bs + 48,
        if spec.notes.is_empty() { 0 } else { note_off as u64 },
    );
    put_u64(&mut v, bs + 56, spec.notes.len() as u64);
    put_u64(&mut v, bs + 96, max_mapnr);
    put(&mut v, vmci_off, &spec.vmcoreinfo);
    put(&mut v, note_off, &spec.notes);
    // Bitmaps.
    let bm1 = bs * (1 + sub_blocks);
    let bm2 = bm1 + bitmap_blocks / 2 * bs;
    let mut pages: Vec<(u64, Page)> = spec.pages.clone();
    pages.sort_by_key(|(p, _)| *p);
    let set_bit = |v: &mut Vec<u8>, base: usize, pfn: u64| {
        let at = base + (pfn / 8) as usize;
        let old = v.get(at).copied().unwrap_or(0);
        put(v, at, &[old | (1 << (pfn % 8))]);
    };
    let desc_off = bs * (1 + sub_blocks + bitmap_blocks);
    put(&mut v, desc_off, &[]);
    let dumpable: Vec<&(u64, Page)> = pages
        .iter()
        .filter(|(_, p)| !matches!(p, Page::Excluded))
        .collect();
    let mut data_off = desc_off + dumpable.len() * PAGE_DESC_SIZE as usize;
    for (pfn, _) in &pages {
        set_bit(&mut v, bm1, *pfn);
    }
    for (i, (pfn, page)) in dumpable.iter().enumerate() {
        set_bit(&mut v, bm2, *pfn);
        let d = desc_off + i * PAGE_DESC_SIZE as usize;
        match page {
            Page::Stored(flags, bytes) => {
                put_u64(&mut v, d, data_off as u64);
                put_u32(&mut v, d + 8, bytes.len() as u32);
                put_u32(&mut v, d + 12, *flags);
                put(&mut v, data_off, bytes);
                data_off += bytes.len();
            }
            Page::Lost | Page::Excluded => put(&mut v, d + PAGE_DESC_SIZE as usize - 1, &[0]),
        }
    }
    v.resize(v.len().max(desc_off), 0);
    v
}

pub(crate) fn pattern(seed: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u64 * 7 + seed * 13) % 251) as u8)
        .collect()
}

macro_rules! vector {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/data/codec/", $name)).to_vec()
    };
}

fn text4k() -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    assert_eq!(zlib_uncompress(&vector!("text4k.zlib"), &mut page), Ok(4096));
    page
}

fn read_all(k: &KdumpFile, src: &dyn ReadAt, paddr: u64, len: usize) -> Result<Vec<u8>, MemError> {
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = k.read_phys(src, paddr + done as u64, out.get_mut(done..).unwrap_or_default())?;
        done += n;
    }
    Ok(out)
}

fn every_codec_spec() -> Spec {
    Spec {
        pages: vec![
            (0, Page::Stored(0, pattern(0, 4096))),
            (1, Page::Stored(1, vector!("text4k.zlib"))),
            (2, Page::Stored(2, vector!("text4k.lzo1"))),
            (3, Page::Stored(4, vector!("text4k.snappy"))),
            (4, Page::Excluded),
            (5, Page::Stored(0, vec![0u8; 4096])),
            (5000, Page::Stored(0, pattern(5000, 4096))),
            (5001, Page::Lost),
        ],
        max_mapnr: 6000,
        ..Spec::default()
    }
}

#[test]
fn pages_of_every_codec_read_back_exactly() {
    let file = build(&every_codec_spec());
    let k = ok(KdumpFile::parse(&file));
    assert_eq!(k.header.max_mapnr, 6000);
    assert_eq!(k.header.dump_level, Some(31));
    assert_eq!(k.dumpable_pages(), 7);
    assert_eq!(ok(read_all(&k, &file, 0, 4096)), pattern(0, 4096));
    for pfn in 1..=3 {
        assert!(ok(read_all(&k, &file, pfn * 4096, 4096)) == text4k(), "pfn {pfn}");
    }
    assert_eq!(ok(read_all(&k, &file, 5 * 4096, 4096)), vec![0u8; 4096]);
    // Rank across a 4096-pfn section boundary.
    assert_eq!(
        ok(read_all(&k, &file, 5000 * 4096 + 100, 50)),
        pattern(5000, 4096).get(100..150).unwrap_or_default()
    );
    // A read spanning two pages returns the first page's part only, then the rest on request.
    let mut buf = [0u8; 64];
    assert_eq!(ok(k.read_phys(&file, 4096 - 16, &mut buf)), 16);
    assert_eq!(
        ok(read_all(&k, &file, 4096 - 16, 64)).get(16..),
        text4k().get(..48)
    );
}

#[test]
fn missing_pages_are_errors_that_name_the_pfn() {
    let file = build(&every_codec_spec());
    let k = ok(KdumpFile::parse(&file));
    let mut buf = [0u8; 8];
    use crate::mem::MemErrorKind::{Excluded, NotInDump};
    assert_eq!(kind(k.read_phys(&file, 4 * 4096, &mut buf)), Excluded);
    assert_eq!(kind(k.read_phys(&file, 6 * 4096, &mut buf)), NotInDump);
    assert_eq!(kind(k.read_phys(&file, 6000 * 4096, &mut buf)), NotInDump);
    assert_eq!(kind(k.read_phys(&file, 5001 * 4096, &mut buf)), NotInDump);
    let excluded = err(k.read_phys(&file, 4 * 4096, &mut buf));
    assert!(
        excluded.contains("pfn 0x4") && excluded.contains("excluded") && excluded.contains("-d 31"),
        "{excluded}"
    );
    let hole = err(k.read_phys(&file, 6 * 4096, &mut buf));
    assert!(hole.contains("pfn 0x6") && hole.contains("not RAM"), "{hole}");
    let beyond = err(k.read_phys(&file, 6000 * 4096, &mut buf));
    assert!(beyond.contains("beyond"), "{beyond}");
    let lost = err(k.read_phys(&file, 5001 * 4096, &mut buf));
    assert!(
        lost.contains("pfn 0x1389") && lost.contains("incomplete"),
        "{lost}"
    );
    assert!(k.read_phys(&file, u64::MAX, &mut buf).is_err());
}

#[test]
fn excluded_pages_read_as_zeros_only_when_only_zero_pages_were_excluded() {
    // Older makedumpfile cleared the bitmap bit of zero pages with -d 1.
    let file = build(&Spec {
        dump_level: 1,
        ..every_codec_spec()
    });
    let k = ok(KdumpFile::parse(&file));
    assert_eq!(ok(read_all(&k, &file, 4 * 4096 + 8, 100)), vec![0u8; 100]);
    let mut buf = [0xffu8; 8];
    assert!(
        k.read_phys(&file, 6 * 4096, &mut buf).is_err(),
        "a hole is still not RAM"
    );
    for level in [0, 3, 17, 31] {
        let file = build(&Spec {
            dump_level: level,
            ..every_codec_spec()
        });
        let k = ok(KdumpFile::parse(&file));
        assert!(
            k.read_phys(&file, 4 * 4096, &mut buf).is_err(),
            "dump level {level}"
        );
    }
}

#[test]
fn header_version_gates_sub_header_fields() {
    let file = build(&Spec {
        header_version: 2,
        ..every_codec_spec()
    });
    let k = ok(KdumpFile::parse(&file));
    assert_eq!(k.header.offset_vmcoreinfo, None);
    assert!(k.vmcoreinfo.is_none());
    assert_eq!(
        k.header.max_mapnr, 6000,
        "the 32-bit max_mapnr is used before version 6"
    );
    let file = build(&every_codec_spec());
    let k = ok(KdumpFile::parse(&file));
    assert!(k
        .vmcoreinfo
        .as_deref()
        .is_some_and(|v| v.starts_with(b"OSRELEASE=6.1.0-test")));
}

#[test]
fn qemu_style_64k_blocks_work() {
    let spec = Spec {
        block_size: 65536,
        machine: "Unknown",
        pages: vec![
            (2, Page::Stored(2, vector!("far64k.lzo1"))),
            (3, Page::Stored(4, vector!("far64k.snappy"))),
            (4, Page::Stored(0, pattern(4, 65536))),
        ],
        ..Spec::default()
    };
    let file = build(&spec);
    let k = ok(KdumpFile::parse(&file));
    let mut far = vec![0u8; 65536];
    assert_eq!(zlib_uncompress(&vector!("far64k.zlib"), &mut far), Ok(65536));
    assert!(ok(read_all(&k, &file, 2 << 16, 65536)) == far);
    assert!(ok(read_all(&k, &file, 3 << 16, 65536)) == far);
    assert_eq!(
        ok(read_all(&k, &file, (4 << 16) + 0x1234, 16)),
        pattern(4, 65536).get(0x1234..0x1244).unwrap_or_default()
    );
    assert_eq!(k.dumpable_ranges(), vec![(2 << 16, 5 << 16)]);
}

#[test]
fn zstd_dumps_read_and_split_dumps_are_refused_with_advice() {
    // makedumpfile -z: status and page flags DUMP_DH_COMPRESSED_ZSTD (0x20).
    let zstd = build(&Spec {
        status: 0x20,
        pages: vec![
            (0, Page::Stored(0x20, vector!("text4k.zst1"))),
            (1, Page::Stored(0x20, vector!("text4k.zst3"))),
            (2, Page::Stored(0x20, vector!("zero4k.zst3"))),
            (3, Page::Stored(0, pattern(3, 4096))),
        ],
        ..Spec::default()
    });
    let k = ok(KdumpFile::parse(&zstd));
    assert_eq!(k.header.compression(), Compression::Zstd);
    assert!(ok(read_all(&k, &zstd, 0, 4096)) == text4k());
    assert!(ok(read_all(&k, &zstd, 4096, 4096)) == text4k());
    assert_eq!(ok(read_all(&k, &zstd, 2 * 4096, 4096)), vec![0u8; 4096]);
    assert_eq!(ok(read_all(&k, &zstd, 3 * 4096, 4096)), pattern(3, 4096));
    let mut split = build(&every_codec_spec());
    put_u32(&mut split, 4096 + 12, 1);
    assert!(err(KdumpFile::parse(&split)).contains("--reassemble"));
    assert_eq!(
        format_kind(KdumpFile::parse(&split)),
        FormatErrorKind::Unsupported
    );
}

#[test]
fn header_failures_say_what_kind_they_are() {
    let file = build(&every_codec_spec());
    let k = ok(KdumpFile::parse(&file));
    // Cut inside the header, and inside the bitmaps: the file ends early.
    let head = file.get(..100).unwrap_or_default();
    assert_eq!(format_kind(KdumpFile::parse(&head)), FormatErrorKind::Truncated);
    let bitmaps = file.get(..k.data_offset as usize - 1).unwrap_or_default();
    assert_eq!(
        format_kind(KdumpFile::parse(&bitmaps)),
        FormatErrorKind::Truncated
    );
    assert!(err(KdumpFile::parse(&bitmaps)).contains("its bitmaps end at offset"));
    // A block size that is no page size: the header is damaged.
    let mut odd = file.clone();
    put_u32(&mut odd, 428, 3);
    assert_eq!(format_kind(KdumpFile::parse(&odd)), FormatErrorKind::Corrupt);
    // Another format altogether.
    let elf = b"\x7fELF".repeat(2048);
    assert_eq!(format_kind(KdumpFile::parse(&elf)), FormatErrorKind::Unsupported);
}

#[test]
fn corrupt_descriptors_and_data_are_per_page_errors() {
    let spec = every_codec_spec();
    let clean = build(&spec);
    let k = ok(KdumpFile::parse(&clean));
    let desc0 = k.data_offset as usize;
    // Size larger than a page.
    let mut big = clean.clone();
    put_u32(&mut big, desc0 + 8, 8192);
    let k = ok(KdumpFile::parse(&big));
    assert_eq!(kind(read_all(&k, &big, 0, 8)), crate::mem::MemErrorKind::Corrupt);
    assert!(err(read_all(&k, &big, 0, 8)).contains("corrupt page descriptor"));
    // zlib page with damaged data.
    let mut bad = clean.clone();
    let zdesc = desc0 + PAGE_DESC_SIZE as usize;
    let zoff = Bytes::new(&bad, Endian::Little, "t")
        .u64(zdesc, "offset")
        .unwrap_or(0) as usize;
    put(&mut bad, zoff + 5, &[0xff; 8]);
    let k = ok(KdumpFile::parse(&bad));
    assert_eq!(
        kind(read_all(&k, &bad, 4096, 8)),
        crate::mem::MemErrorKind::Corrupt
    );
    assert!(err(read_all(&k, &bad, 4096, 8)).contains("cannot be decompressed"));
    assert_eq!(
        ok(read_all(&k, &bad, 0, 4096)),
        pattern(0, 4096),
        "other pages still read"
    );
    // Offset past the end of the file.
    let mut past = clean.clone();
    put_u64(&mut past, desc0, 1 << 40);
    let k = ok(KdumpFile::parse(&past));
    assert!(err(read_all(&k, &past, 0, 8)).contains("truncated"));
}

/// A source whose reads fail, with `kind`, once they reach `from`: a file that shrank under
/// kmemd (UnexpectedEof) or a disk that fails (an I/O error), behind the length the file had.
struct FailingFrom {
    data: Vec<u8>,
    from: u64,
    kind: std::io::ErrorKind,
}

impl ReadAt for FailingFrom {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        if offset + buf.len() as u64 > self.from {
            return Err(std::io::Error::new(self.kind, "the test source fails here"));
        }
        self.data.read_exact_at(offset, buf)
    }
}

#[test]
fn page_data_that_cannot_be_read_keeps_the_kind_of_the_failure() {
    use crate::mem::MemErrorKind;
    let clean = build(&every_codec_spec());
    let k = ok(KdumpFile::parse(&clean));
    let data0 = Bytes::new(&clean, Endian::Little, "t")
        .u64(k.data_offset as usize, "offset")
        .unwrap_or(0);
    assert!(data0 > k.data_offset, "page data follows the descriptors");
    for (io_kind, want) in [
        (std::io::ErrorKind::UnexpectedEof, MemErrorKind::NotInDump),
        (std::io::ErrorKind::Other, MemErrorKind::Fault),
    ] {
        let src = FailingFrom {
            data: clean.clone(),
            from: data0,
            kind: io_kind,
        };
        // Through the cache (a part of a page) and straight into the buffer (whole pages).
        for len in [8, 4096] {
            let e = read_all(&k, &src, 0, len);
            assert_eq!(kind(read_all(&k, &src, 0, len)), want, "{io_kind:?}, {len} bytes");
            assert!(err(e).contains("the test source fails here"));
        }
    }
    // The descriptors themselves unreadable: the same kinds.
    let src = FailingFrom {
        data: clean.clone(),
        from: k.data_offset,
        kind: std::io::ErrorKind::UnexpectedEof,
    };
    assert_eq!(kind(read_all(&k, &src, 0, 8)), MemErrorKind::NotInDump);
}

/// zlib (adler32) and zstd (XXH64) pages carry checks, and a page that fails one is an error
/// naming its pfn and where its data is; lzo has no check, so damage there reads as wrong data.
#[test]
fn failed_page_checks_are_errors_naming_the_page() {
    let spec = Spec {
        pages: vec![
            (0, Page::Stored(1, vector!("text4k.zlib"))),
            (1, Page::Stored(0x20, vector!("text4k.zst3"))),
            (2, Page::Stored(0x20, vector!("mixed4k.zst3"))),
            (3, Page::Stored(2, vector!("text4k.lzo1"))),
        ],
        ..Spec::default()
    };
    let clean = build(&spec);
    let k = ok(KdumpFile::parse(&clean));
    let data_offset = |i: usize| {
        Bytes::new(&clean, Endian::Little, "t")
            .u64(k.data_offset as usize + i * PAGE_DESC_SIZE as usize, "offset")
            .unwrap_or(0) as usize
    };
    let damaged = |at: usize| {
        let mut bad = clean.clone();
        if let Some(b) = bad.get_mut(at) {
            *b ^= 0x04;
        }
        bad
    };
    // zlib: the adler32 trailer is the last 4 bytes of the page data.
    let zlib_end = data_offset(0) + vector!("text4k.zlib").len();
    let bad = damaged(zlib_end - 1);
    let k = ok(KdumpFile::parse(&bad));
    let e = err(read_all(&k, &bad, 0, 8));
    let want = "pfn 0x0 cannot be decompressed (zlib page data, ";
    assert!(
        e.contains(want) && e.contains(&format!("at file offset {:#x}", data_offset(0))),
        "{e}"
    );
    assert!(e.contains("adler32"), "{e}");
    // zstd: a damaged checksum, and a damaged byte of raw literals that only the checksum catches.
    let zstd_end = data_offset(1) + vector!("text4k.zst3").len();
    for (pfn, at) in [(1u64, zstd_end - 2), (2, data_offset(2) + 400)] {
        let bad = damaged(at);
        let k = ok(KdumpFile::parse(&bad));
        let e = err(read_all(&k, &bad, pfn * 4096, 8));
        let offset = data_offset(pfn as usize);
        assert!(
            e.contains(&format!("pfn {pfn:#x} cannot be decompressed (zstd page data, "))
                && e.contains(&format!("at file offset {offset:#x}"))
                && e.contains("checksum mismatch"),
            "{e}"
        );
        assert!(
            ok(read_all(&k, &bad, 0, 4096)) == text4k(),
            "other pages still read"
        );
    }
    // lzo: a flipped byte in the first literal run decodes "fine" to different bytes.
    let bad = damaged(data_offset(3) + 8);
    let k = ok(KdumpFile::parse(&bad));
    let page = ok(read_all(&k, &bad, 3 * 4096, 4096));
    assert!(page != text4k(), "the flip should change the lzo page's data");
}

#[test]
fn cache_limit_zero_still_reads() {
    let file = build(&every_codec_spec());
    let k = ok(KdumpFile::parse(&file));
    k.set_cache_limit(0);
    assert!(ok(read_all(&k, &file, 4096, 4096)) == text4k());
    assert!(ok(read_all(&k, &file, 4096, 4096)) == text4k());
}

/// Truncating a dump at every offset, and filling header fields with random values, must give
/// an error (at open or per page) and never a panic, hang or huge allocation.
#[test]
fn truncation_and_random_headers_never_panic() {
    let file = build(&every_codec_spec());
    for cut in 0..file.len() {
        let part = file.get(..cut).unwrap_or_default();
        if let Ok(k) = KdumpFile::parse(&part) {
            for pfn in [0u64, 1, 2, 3, 4, 5, 5000, 5001] {
                let _ = read_all(&k, &part, pfn * 4096, 4096);
            }
        }
    }
    // xorshift: deterministic "random" header and bitmap bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..3000 {
        let mut bad = file.clone();
        let fields = [
            8usize,
            424,
            428,
            432,
            436,
            440,
            4096,
            4096 + 8,
            4096 + 12,
            4096 + 32,
            4096 + 40,
            4096 + 48,
            4096 + 56,
            4096 + 96,
        ];
        for _ in 0..1 + round % 4 {
            let which = (next() % fields.len() as u64) as usize;
            let at = fields.get(which).copied().unwrap_or(8);
            let val = next();
            // Keep some values small so they pass the first sanity checks and reach deeper code.
            let val = if round % 2 == 0 { val } else { val % 64 };
            put_u64(&mut bad, at, val);
        }
        if round % 5 == 0 {
            // Scribble over the bitmaps and descriptors too.
            for _ in 0..8 {
                let at = (next() % bad.len() as u64) as usize;
                put(&mut bad, at, &[next() as u8]);
            }
        }
        if let Ok(k) = KdumpFile::parse(&bad) {
            for pfn in [0u64, 1, 2, 3, 5000] {
                let _ = read_all(&k, &bad, pfn * 4096, 4096);
            }
        }
    }
}

/// A read of many whole pages fills the buffer with as many pages as one call can (descriptors
/// and back-to-back data read in batches), byte for byte what page-by-page reads through the
/// cache give; it stops before the first page that fails, and that page's own error comes with
/// the read that starts at it.
#[test]
fn whole_page_reads_span_pages_and_stop_before_a_bad_one() {
    let codecs: [(u32, Vec<u8>); 4] = [
        (1, vector!("text4k.zlib")),
        (2, vector!("mixed4k.lzo1")),
        (4, vector!("mixed4k.snappy")),
        (0x20, vector!("mixed4k.zst3")),
    ];
    let mut pages: Vec<(u64, Page)> = (0..300u64)
        .map(|pfn| match pfn % 5 {
            0 | 1 => (pfn, Page::Stored(0, pattern(pfn, 4096))),
            k => {
                let (flags, bytes) = codecs
                    .get((pfn as usize / 5 + k as usize) % 4)
                    .cloned()
                    .unwrap_or_default();
                (pfn, Page::Stored(flags, bytes))
            }
        })
        .collect();
    pages.retain(|(pfn, _)| *pfn != 150 && *pfn != 220);
    pages.push((150, Page::Lost));
    pages.push((220, Page::Excluded));
    let file = build(&Spec {
        pages,
        ..Spec::default()
    });
    let k = ok(KdumpFile::parse(&file));
    // Page by page through the cache (partial reads), the reference.
    let mut want = Vec::new();
    for pfn in 0..300u64 {
        if pfn == 150 || pfn == 220 {
            want.push(None);
            continue;
        }
        let mut page = ok(read_all(&k, &file, pfn * 4096 + 1, 4095));
        let mut first = [0u8; 1];
        assert_eq!(ok(k.read_phys(&file, pfn * 4096, &mut first)), 1);
        page.insert(0, first[0]);
        want.push(Some(page));
    }
    // One buffer for everything: each call returns whole pages, more than one when it can.
    let mut buf = vec![0u8; 300 * 4096];
    let mut pfn = 0u64;
    let mut calls = 0;
    while pfn < 300 {
        let at = (pfn * 4096) as usize;
        let r = k.read_phys(&file, pfn * 4096, buf.get_mut(at..).unwrap_or_default());
        calls += 1;
        match (r, want.get(pfn as usize)) {
            (Ok(n), _) => {
                assert!(n % 4096 == 0 && n > 0, "whole pages only, got {n}");
                for p in pfn..pfn + (n / 4096) as u64 {
                    let got = buf.get((p * 4096) as usize..(p + 1) as usize * 4096);
                    assert!(got == want.get(p as usize).and_then(|w| w.as_deref()), "pfn {p}");
                }
                pfn += (n / 4096) as u64;
            }
            (Err(e), Some(None)) => {
                assert!(e.detail.contains(&format!("pfn {pfn:#x}")), "{e}");
                pfn += 1;
            }
            (Err(e), _) => panic!("pfn {pfn}: {e}"),
        }
    }
    assert!(calls < 30, "{calls} calls for 300 pages: reads should span pages");
    // A page whose data does not decode ends a batch; the read that starts there reports it.
    let zdesc = k.data_offset as usize + 2 * PAGE_DESC_SIZE as usize;
    let zoff = Bytes::new(&file, Endian::Little, "t")
        .u64(zdesc, "offset")
        .unwrap_or(0) as usize;
    let mut bad = file.clone();
    put(&mut bad, zoff + 5, &[0xff; 8]);
    let k = ok(KdumpFile::parse(&bad));
    let mut buf = vec![0u8; 8 * 4096];
    assert_eq!(ok(k.read_phys(&bad, 0, &mut buf)), 2 * 4096);
    let e = err(k.read_phys(&bad, 2 * 4096, &mut buf));
    assert!(e.contains("pfn 0x2 cannot be decompressed"), "{e}");
    assert_eq!(ok(k.read_phys(&bad, 3 * 4096, &mut buf)), 8 * 4096);
}

/// The constant-time rank (section and block counts plus a few words) equals a plain count of
/// the dumpable pages below every pfn.
#[test]
fn ranks_count_the_dumpable_pages_below_each_pfn() {
    let pages: Vec<(u64, Page)> = (0..20_000u64)
        .filter(|p| (p * 7919) % 13 < 5 || (4090..4110).contains(p) || (8190..8200).contains(p))
        .map(|p| (p, Page::Lost))
        .collect();
    let file = build(&Spec {
        pages,
        max_mapnr: 20_003,
        ..Spec::default()
    });
    let k = ok(KdumpFile::parse(&file));
    let mut below = 0u64;
    for pfn in 0..20_003u64 {
        assert_eq!(k.rank(pfn), below, "pfn {pfn}");
        if k.is_dumpable(pfn) {
            below += 1;
        }
    }
    assert_eq!(below, k.dumpable_pages());
}
