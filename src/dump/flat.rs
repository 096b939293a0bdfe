//! makedumpfile's flattened format (`makedumpfile -F`, QEMU `kdump-*`): a 4096-byte big-endian
//! header, then records `{i64 offset, i64 size}` + data that belong at `offset` of the real file,
//! ended by a record with offset -1 (makedumpfile `IMPLEMENTATION`, crash `makedumpfile.c`).
//! The records are indexed once; `FlatSource` then serves reads of the reassembled file, so the
//! kdump and ELF readers run on it unchanged.

use crate::mem::bytes::{Bytes, Endian, FormatError, ReadAt};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;

const SIGNATURE: &[u8; 16] = b"makedumpfile\0\0\0\0";
const HEADER_SIZE: u64 = 4096;
const RECORD_HEADER: u64 = 16;

pub fn is_flattened(head: &[u8]) -> bool {
    head.starts_with(SIGNATURE)
}

/// The reassembled view of a flattened file (boxed: a dump's source is a `Box<dyn ReadAt>`).
pub struct FlatSource<R: ReadAt + ?Sized> {
    inner: Box<R>,
    /// Non-overlapping pieces sorted by reassembled offset: (offset, length, offset in `inner`).
    pieces: Vec<(u64, u64, u64)>,
    len: u64,
    /// True when the record stream ended without its end marker.
    pub truncated: bool,
    /// Reused buffer for reads gathered from several records in one `pread`.
    gather: RefCell<Vec<u8>>,
}

/// A read whose records lie within this span of the flattened file is one read of the span
/// (record headers and all) instead of one per record: makedumpfile -F writes a record per
/// few pages, so a 64 KiB read of page data meets a dozen records.
const GATHER_MAX: u64 = 256 << 10;

impl<R: ReadAt + ?Sized> FlatSource<R> {
    pub fn new(inner: Box<R>) -> Result<FlatSource<R>, FormatError> {
        let mut head = [0u8; 32];
        inner
            .read_exact_at(0, &mut head)
            .map_err(|_| FormatError::truncated("the flattened dump's header is truncated"))?;
        let h = Bytes::new(&head, Endian::Big, "flattened dump header");
        if !is_flattened(&head) {
            return Err(FormatError::unsupported("not a flattened dump"));
        }
        let (ty, version) = (h.i64(16, "type")?, h.i64(24, "version")?);
        if ty != 1 {
            return Err(FormatError::corrupt(format!(
                "unknown flattened dump type {ty} (expected 1); the file is damaged"
            )));
        }
        if version != 1 {
            return Err(FormatError::unsupported(format!(
                "unsupported flattened dump version {version}; rearrange it with makedumpfile -R"
            )));
        }
        // Later records win where they overlap (makedumpfile rewrites headers at the end), as
        // when `makedumpfile -R` writes them in stream order.
        let mut map: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        let mut pos = HEADER_SIZE;
        let mut truncated = false;
        loop {
            let mut rec = [0u8; RECORD_HEADER as usize];
            if pos.checked_add(RECORD_HEADER).is_none_or(|end| end > inner.len())
                || inner.read_exact_at(pos, &mut rec).is_err()
            {
                truncated = true;
                break;
            }
            let r = Bytes::new(&rec, Endian::Big, "flattened record header");
            let (offset, size) = (r.i64(0, "offset")?, r.i64(8, "buf_size")?);
            if offset == -1 {
                break;
            }
            if offset < 0 || size < 0 {
                return Err(FormatError::corrupt(format!(
                    "corrupt flattened dump: record at {pos:#x} has offset {offset} and size {size}"
                )));
            }
            let (offset, size) = (offset as u64, size as u64);
            let data = pos + RECORD_HEADER;
            let Some(data_end) = data.checked_add(size).filter(|&e| e <= inner.len()) else {
                truncated = true;
                break;
            };
            if offset.checked_add(size).is_none() {
                return Err(FormatError::corrupt(format!(
                    "corrupt flattened dump: record at {pos:#x} overflows"
                )));
            }
            if size > 0 {
                insert(&mut map, offset, size, data);
            }
            pos = data_end;
        }
        if truncated {
            log::warn!(
                "the flattened dump ends without its end record (truncated?): data after {pos:#x} is missing"
            );
        }
        let pieces: Vec<(u64, u64, u64)> = map.into_iter().map(|(off, (len, src))| (off, len, src)).collect();
        let len = pieces.last().map_or(0, |&(off, l, _)| off + l);
        Ok(FlatSource {
            inner,
            pieces,
            len,
            truncated,
            gather: RefCell::new(Vec::new()),
        })
    }

    /// Number of distinct pieces in the index.
    pub fn pieces(&self) -> usize {
        self.pieces.len()
    }
}

/// Adds [offset, offset+len) → src to a non-overlapping interval map, trimming what it covers.
fn insert(map: &mut BTreeMap<u64, (u64, u64)>, offset: u64, len: u64, src: u64) {
    let end = offset + len;
    let overlapping: Vec<(u64, (u64, u64))> = map
        .range(..end)
        .rev()
        .take_while(|(&s, &(l, _))| s + l > offset)
        .map(|(&s, &v)| (s, v))
        .collect();
    for (s, (l, f)) in overlapping {
        map.remove(&s);
        if s < offset {
            map.insert(s, (offset - s, f));
        }
        if s + l > end {
            map.insert(end, (s + l - end, f + (end - s)));
        }
    }
    map.insert(offset, (len, src));
}

impl<R: ReadAt + ?Sized> ReadAt for FlatSource<R> {
    fn len(&self) -> u64 {
        self.len
    }

    fn stored_len(&self) -> u64 {
        self.inner.stored_len()
    }

    /// Bytes no record wrote read as zeros, as in the file `makedumpfile -R` would write.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|&e| e <= self.len)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} bytes at offset {offset:#x} are past the end of the flattened dump",
                        buf.len()
                    ),
                )
            })?;
        let first = self.pieces.partition_point(|&(s, l, _)| s + l <= offset);
        // Where the records of this read lie in the flattened file: when that is one short
        // span, read it whole and copy the records' bytes out of it.
        let (mut lo, mut hi, mut records) = (u64::MAX, 0u64, 0usize);
        for &(s, l, f) in self.pieces.get(first..).unwrap_or_default() {
            if s >= end {
                break;
            }
            let from = f + (offset.max(s) - s);
            lo = lo.min(from);
            hi = hi.max(f + (end.min(s + l) - s));
            records += 1;
        }
        if records > 1 && lo < hi && hi - lo <= GATHER_MAX {
            let mut gather = self.gather.borrow_mut();
            let span = (hi - lo) as usize;
            if gather.len() < span {
                gather.resize(span, 0);
            }
            let staged = gather.get_mut(..span).unwrap_or_default();
            self.inner.read_exact_at(lo, staged)?;
            let staged: &[u8] = staged;
            return self.copy_pieces(first, offset, buf, |from, dst| {
                let at = (from - lo) as usize;
                let src = staged.get(at..at + dst.len()).ok_or_else(out_of_range)?;
                dst.copy_from_slice(src);
                Ok(())
            });
        }
        self.copy_pieces(first, offset, buf, |from, dst| {
            self.inner.read_exact_at(from, dst)
        })
    }
}

impl<R: ReadAt + ?Sized> FlatSource<R> {
    /// Fills `buf` (the reassembled bytes at `offset`) piece by piece from `first` on: record
    /// bytes through `fetch(offset in the flattened file, destination)`, gaps with zeros.
    fn copy_pieces(
        &self,
        first: usize,
        offset: u64,
        buf: &mut [u8],
        mut fetch: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = offset + buf.len() as u64;
        let mut pos = offset;
        let mut idx = first;
        while pos < end {
            let done = (pos - offset) as usize;
            let piece = self.pieces.get(idx).copied();
            let (chunk_end, from) = match piece {
                Some((s, l, f)) if s <= pos => ((s + l).min(end), Some(f + (pos - s))),
                Some((s, _, _)) => (s.min(end), None),
                None => (end, None),
            };
            let n = (chunk_end - pos) as usize;
            let dst = buf.get_mut(done..done + n).ok_or_else(out_of_range)?;
            match from {
                Some(f) => fetch(f, dst)?,
                None => dst.fill(0),
            }
            if piece.is_some_and(|(s, l, _)| s + l <= chunk_end) {
                idx += 1;
            }
            pos = chunk_end;
        }
        Ok(())
    }
}

/// A piece of a read that the index placed outside its buffers: a bug in kmemd, not in the file.
fn out_of_range() -> io::Error {
    io::Error::other("internal error: flattened read out of range")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dump::testutil::*;

    /// Flattens `records` (offset, bytes) in the given order.
    pub(crate) fn flatten(records: &[(u64, &[u8])], terminated: bool) -> Vec<u8> {
        let mut v = Vec::new();
        put(&mut v, 0, SIGNATURE);
        put(&mut v, 16, &1i64.to_be_bytes());
        put(&mut v, 24, &1i64.to_be_bytes());
        v.resize(HEADER_SIZE as usize, 0);
        for (off, data) in records {
            v.extend_from_slice(&off.to_be_bytes());
            v.extend_from_slice(&(<[u8]>::len(data) as u64).to_be_bytes());
            v.extend_from_slice(data);
        }
        if terminated {
            v.extend_from_slice(&(-1i64).to_be_bytes());
            v.extend_from_slice(&0i64.to_be_bytes());
        }
        v
    }

    #[test]
    fn reassembles_unordered_overlapping_records() {
        let flat = flatten(
            &[
                (100, b"world"),
                (0, b"hello"),
                (5, b", "),
                (200, b"abcdef"),
                (202, b"XY"),
            ],
            true,
        );
        let f = ok(FlatSource::new(Box::new(flat)));
        assert!(!f.truncated);
        assert_eq!(f.len(), 206);
        let mut buf = [0u8; 7];
        ok(f.read_exact_at(0, &mut buf));
        assert_eq!(&buf, b"hello, ");
        let mut gap = [1u8; 4];
        ok(f.read_exact_at(50, &mut gap));
        assert_eq!(gap, [0; 4], "unwritten bytes read as zeros");
        let mut across = [0u8; 8];
        ok(f.read_exact_at(98, &mut across));
        assert_eq!(&across, b"\0\0world\0");
        let mut later = [0u8; 6];
        ok(f.read_exact_at(200, &mut later));
        assert_eq!(&later, b"abXYef", "later records win");
        assert_eq!(
            f.read_exact_at(201, &mut later).err().map(|e| e.kind()),
            Some(io::ErrorKind::UnexpectedEof),
            "past the end"
        );
        assert!(f.read_exact_at(u64::MAX, &mut later).is_err());
        assert_eq!(f.pieces(), 6);
    }

    /// Reads gathered from several records in one span and reads whose records lie far apart
    /// in the flattened file (read record by record) give the same bytes.
    #[test]
    fn near_and_far_records_read_the_same() {
        let big: Vec<u8> = (0..GATHER_MAX as usize + 100).map(|i| (i % 249) as u8).collect();
        let flat = flatten(
            &[(0, b"head"), (4, b"tail"), (20, b"x"), (10_000_000, &big)],
            true,
        );
        let f = ok(FlatSource::new(Box::new(flat)));
        let mut near = [0u8; 21];
        ok(f.read_exact_at(0, &mut near));
        assert_eq!(&near, b"headtail\0\0\0\0\0\0\0\0\0\0\0\0x");
        // "tail" and the big record are more than GATHER_MAX apart in the flattened file.
        let flat = flatten(&[(0, b"head"), (100, &big), (4, b"tail")], true);
        let f = ok(FlatSource::new(Box::new(flat)));
        let mut far = vec![0u8; 110];
        ok(f.read_exact_at(0, &mut far));
        assert_eq!(far.get(..8), Some(&b"headtail"[..]));
        assert_eq!(far.get(8..100), Some(&[0u8; 92][..]));
        assert_eq!(far.get(100..), big.get(..10));
    }

    #[test]
    fn covering_records_replace_whole_pieces() {
        let flat = flatten(&[(10, b"aaaa"), (14, b"bbbb"), (8, b"cccccccccccc")], true);
        let f = ok(FlatSource::new(Box::new(flat)));
        let mut buf = [0u8; 12];
        ok(f.read_exact_at(8, &mut buf));
        assert_eq!(&buf, b"cccccccccccc");
        assert_eq!(f.pieces(), 1);
    }

    #[test]
    fn truncated_and_corrupt_streams() {
        let flat = flatten(&[(0, b"hello"), (5, b"world")], true);
        for cut in 0..flat.len() {
            let part = flat.get(..cut).unwrap_or_default();
            if let Ok(f) = FlatSource::new(Box::new(part)) {
                let mut buf = vec![0u8; f.len() as usize];
                ok(f.read_exact_at(0, &mut buf));
                assert!(
                    buf.is_empty() || buf == b"hello" || buf == b"helloworld",
                    "cut {cut}"
                );
                assert_eq!(f.truncated, cut < flat.len());
            }
        }
        let mut bad = flat.clone();
        put(&mut bad, 4096 + 8, &(-5i64).to_be_bytes());
        assert!(err(FlatSource::new(Box::new(bad.clone()))).contains("corrupt"));
        assert_eq!(
            format_kind(FlatSource::new(Box::new(bad))),
            crate::mem::bytes::FormatErrorKind::Corrupt
        );
        let mut ver = flat.clone();
        put(&mut ver, 24, &2i64.to_be_bytes());
        assert!(err(FlatSource::new(Box::new(ver.clone()))).contains("version"));
        assert_eq!(
            format_kind(FlatSource::new(Box::new(ver))),
            crate::mem::bytes::FormatErrorKind::Unsupported
        );
    }
}
