//! The kernel's compressed kallsyms tables, decoded from kernel memory (kernel/kallsyms.c and
//! scripts/kallsyms.c, Linux 6.1):
//! - `kallsyms_num_syms`: u32 count;
//! - `kallsyms_names`: per symbol a length byte (if its top bit is set, a second byte holds bits
//!   7..14, "big" symbols since 6.1), then that many token numbers;
//! - `kallsyms_token_table`: NUL-terminated strings; `kallsyms_token_index`: `u16[256]`, the
//!   offset of each token's string;
//! - `kallsyms_offsets`: i32 per symbol, with `kallsyms_relative_base` (u64)
//!   (CONFIG_KALLSYMS_BASE_RELATIVE). Without CONFIG_KALLSYMS_ABSOLUTE_PERCPU (arm64; x86 since
//!   6.15) an address is `relative_base + (u32)offset`. With it (x86_64 SMP up to 6.14) a
//!   non-negative offset is an absolute address (per-cpu symbols, linked at 0) and a negative
//!   one means `relative_base - 1 - offset`. VMCOREINFO does not say which, so it is recognized
//!   from the data: with absolute per-cpu, every kernel symbol has a negative offset.
//!
//! The first character of a decoded name is its nm-style type letter.
//! VMCOREINFO lists these symbols since Linux 6.0 (kernel/crash_core.c, CONFIG_KALLSYMS).

use super::{Sym, SymbolBuilder, SymbolTable};
use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{read_available, read_exact, read_u32, read_u64, ReadError, VirtRead};

/// More symbols than any kernel has (x86_64 distribution kernels: ~200k with KALLSYMS_ALL).
const MAX_SYMS: u32 = 4_000_000;
/// kallsyms_names bytes are read in chunks of this size.
const NAMES_CHUNK: usize = 256 << 10;
/// The token table is small (256 short strings); more than this is damage.
const MAX_TOKEN_TABLE: u64 = 64 << 10;

/// Addresses of the kallsyms tables, from VMCOREINFO `SYMBOL()` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tables {
    pub names: u64,
    pub num_syms: u64,
    pub token_table: u64,
    pub token_index: u64,
    pub offsets: u64,
    pub relative_base: u64,
}

impl Tables {
    pub fn from_vmcoreinfo(v: &VmcoreInfo) -> Result<Tables, String> {
        let get = |n: &str| {
            v.symbol(n).ok_or_else(|| {
                format!(
                    "VMCOREINFO has no SYMBOL({n}) (kernels before 6.0 or without CONFIG_KALLSYMS do not \
                     export kallsyms there): give -k the matching vmlinux"
                )
            })
        };
        Ok(Tables {
            names: get("kallsyms_names")?,
            num_syms: get("kallsyms_num_syms")?,
            token_table: get("kallsyms_token_table")?,
            token_index: get("kallsyms_token_index")?,
            offsets: get("kallsyms_offsets")?,
            relative_base: get("kallsyms_relative_base")?,
        })
    }
}

/// Decodes every kallsyms symbol from kernel memory, using the table addresses in VMCOREINFO.
pub fn decode(mem: &mut dyn VirtRead, vmcoreinfo: &VmcoreInfo) -> Result<Vec<Sym>, ReadError> {
    decode_tables(mem, &Tables::from_vmcoreinfo(vmcoreinfo)?)
}

/// Decodes every kallsyms symbol from the tables at `t`.
pub fn decode_tables(mem: &mut dyn VirtRead, t: &Tables) -> Result<Vec<Sym>, ReadError> {
    let mut syms = Vec::new();
    decode_each(mem, t, &mut |addr, name, kind| {
        syms.push(Sym {
            addr,
            name: name.to_string(),
            kind,
        })
    })?;
    Ok(syms)
}

/// Decodes kallsyms straight into a [`SymbolTable`], using the table addresses in VMCOREINFO:
/// no owned name per symbol on the way (issue 16: a `Vec<Sym>` of a dump's ~120k symbols cost
/// ~7 MB before the table was built, the peak of a session on a dump).
pub fn decode_table(mem: &mut dyn VirtRead, vmcoreinfo: &VmcoreInfo) -> Result<SymbolTable, ReadError> {
    table_from_tables(mem, &Tables::from_vmcoreinfo(vmcoreinfo)?)
}

/// Like [`decode_table`], keeping only the symbols whose name `keep` accepts (a dump session
/// keeps kmemd's own names, kernel/symbols.rs `KNOWN`, and decodes the rest when asked: issue 16,
/// the whole table of a Debian kernel is ~4.5 MB of a dump session's peak).
pub fn decode_table_keeping(
    mem: &mut dyn VirtRead,
    vmcoreinfo: &VmcoreInfo,
    keep: &dyn Fn(&str) -> bool,
) -> Result<SymbolTable, ReadError> {
    table_keeping(mem, &Tables::from_vmcoreinfo(vmcoreinfo)?, keep)
}

/// [`decode_table_keeping`] from the tables at `t`.
pub fn table_keeping(
    mem: &mut dyn VirtRead,
    t: &Tables,
    keep: &dyn Fn(&str) -> bool,
) -> Result<SymbolTable, ReadError> {
    let mut b = SymbolBuilder::new();
    decode_each(mem, t, &mut |addr, name, kind| {
        if keep(name) {
            b.push(addr, name, kind, None)
        }
    })?;
    Ok(b.finish())
}

/// The names of the symbols at or below each of `addrs`, as [`SymbolTable::symbolize`] of the
/// whole table would give them, without building that table: one pass finds each address's
/// symbol by its index, a second decodes just those names. For a few addresses (a panic check
/// of the CPUs' call chains) in a session that kept only kmemd's own names (issue 16). Where
/// symbols share an address, the one listed last is taken.
pub fn names_at(
    mem: &mut dyn VirtRead,
    vmcoreinfo: &VmcoreInfo,
    addrs: &[u64],
) -> Result<Vec<Option<String>>, ReadError> {
    names_at_tables(mem, &Tables::from_vmcoreinfo(vmcoreinfo)?, addrs)
}

/// [`names_at`] from the tables at `t`.
pub fn names_at_tables(
    mem: &mut dyn VirtRead,
    t: &Tables,
    addrs: &[u64],
) -> Result<Vec<Option<String>>, ReadError> {
    // Pass 1: per address, the index and address of the highest symbol at or below it; and the
    // highest symbol of all, past which only its first page counts (as in symbolize).
    // scripts/kallsyms.c lists symbols by address, so one merge with the sorted addresses
    // settles each address when the first symbol above it comes: O(symbols + addresses), for
    // a dump of hundreds of CPUs too. Tables out of order get a pass that compares every pair.
    let mut order: Vec<usize> = (0..addrs.len()).collect();
    order.sort_by_key(|&k| addrs.get(k).copied().unwrap_or(0));
    let mut best: Vec<Option<(usize, u64)>> = vec![None; addrs.len()];
    let mut next = 0usize;
    let mut prev: Option<(usize, u64)> = None;
    let mut sorted = true;
    let mut i = 0usize;
    decode_each(mem, t, &mut |addr, _, _| {
        sorted &= prev.is_none_or(|(_, p)| addr >= p);
        while let Some(&k) = order.get(next).filter(|_| sorted) {
            if addrs.get(k).is_some_and(|&want| want < addr) {
                if let Some(b) = best.get_mut(k) {
                    *b = prev;
                }
                next += 1;
            } else {
                break;
            }
        }
        prev = Some((i, addr));
        i += 1;
    })?;
    let top = prev;
    if sorted {
        for &k in order.get(next..).unwrap_or_default() {
            if let Some(b) = best.get_mut(k) {
                *b = prev;
            }
        }
    } else {
        best.fill(None);
        let mut top_seen: Option<(usize, u64)> = None;
        let mut i = 0usize;
        decode_each(mem, t, &mut |addr, _, _| {
            for (b, &want) in best.iter_mut().zip(addrs) {
                if addr <= want && b.is_none_or(|(_, at)| addr >= at) {
                    *b = Some((i, addr));
                }
            }
            if top_seen.is_none_or(|(_, at)| addr >= at) {
                top_seen = Some((i, addr));
            }
            i += 1;
        })?;
        return name_found(mem, t, addrs, &best, top_seen);
    }
    name_found(mem, t, addrs, &best, top)
}

/// Pass 2 of [`names_at_tables`]: the names of the symbols found (`best`, by index), with the
/// rule for addresses past the last symbol (`top`).
fn name_found(
    mem: &mut dyn VirtRead,
    t: &Tables,
    addrs: &[u64],
    best: &[Option<(usize, u64)>],
    top: Option<(usize, u64)>,
) -> Result<Vec<Option<String>>, ReadError> {
    // Pass 2: the names of the symbols found.
    let mut wanted: Vec<usize> = best.iter().flatten().map(|&(i, _)| i).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut names: Vec<(usize, String)> = Vec::with_capacity(wanted.len());
    let mut i = 0usize;
    decode_each(mem, t, &mut |_, name, _| {
        if wanted.binary_search(&i).is_ok() {
            names.push((i, name.to_string()));
        }
        i += 1;
    })?;
    let name_of = |i: usize| {
        names
            .binary_search_by_key(&i, |(k, _)| *k)
            .ok()
            .and_then(|at| names.get(at))
            .map(|(_, n)| n.clone())
    };
    Ok(best
        .iter()
        .zip(addrs)
        .map(|(b, &want)| {
            let (idx, at) = (*b)?;
            let name = name_of(idx)?;
            let past_end = top.is_some_and(|(_, top_at)| at == top_at);
            if past_end && (want - at >= 4096 || name == "_end") {
                return None;
            }
            Some(name)
        })
        .collect())
}

/// [`decode_table`] from the tables at `t`.
pub fn table_from_tables(mem: &mut dyn VirtRead, t: &Tables) -> Result<SymbolTable, ReadError> {
    let mut b = SymbolBuilder::new();
    decode_each(mem, t, &mut |addr, name, kind| b.push(addr, name, kind, None))?;
    Ok(b.finish())
}

/// Decodes every kallsyms symbol from the tables at `t`, handing each to `sym(addr, name, kind)`.
fn decode_each(
    mem: &mut dyn VirtRead,
    t: &Tables,
    sym: &mut dyn FnMut(u64, &str, char),
) -> Result<(), ReadError> {
    let rd = |e| ReadError::mem("reading the kallsyms tables", e);
    let count = read_u32(mem, t.num_syms).map_err(rd)?;
    if count == 0 || count > MAX_SYMS {
        return Err(format!("kallsyms_num_syms is {count}, which is not a plausible symbol count").into());
    }
    let n = count as usize;
    let base = read_u64(mem, t.relative_base).map_err(rd)?;

    let mut raw_offsets = vec![0u8; n * 4];
    read_exact(mem, t.offsets, &mut raw_offsets).map_err(rd)?;
    let offsets = || {
        raw_offsets
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
    };

    let mut raw_index = [0u8; 512];
    read_exact(mem, t.token_index, &mut raw_index).map_err(rd)?;
    let index: Vec<usize> = raw_index
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]) as usize)
        .collect();
    // The token table ends where the index starts in every layout scripts/kallsyms.c writes;
    // otherwise read what the largest index needs plus a margin.
    let table_len = match t.token_index.checked_sub(t.token_table) {
        Some(l) if l > 0 && l <= MAX_TOKEN_TABLE => l as usize,
        _ => index.iter().max().copied().unwrap_or(0) + 256,
    };
    let mut table = vec![0u8; table_len];
    let got = read_available(mem, t.token_table, &mut table);
    table.truncate(got);
    let tokens: Vec<&[u8]> = index
        .iter()
        .map(|&off| {
            let rest = table.get(off..).unwrap_or_default();
            let end = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
            rest.get(..end).unwrap_or_default()
        })
        .collect();

    // Absolute per-cpu layout: kernel symbols are the negative offsets, and they are most of them.
    let negative = offsets().filter(|&o| o < 0).count();
    let absolute_percpu = negative * 2 > n;

    let mut names = NameStream::new(t.names);
    let mut name = Vec::with_capacity(64);
    for (i, off) in offsets().enumerate() {
        let mut len = names.byte(mem).map_err(|e| format!("symbol {i}: {e}"))? as usize;
        if len & 0x80 != 0 {
            let hi = names.byte(mem).map_err(|e| format!("symbol {i}: {e}"))? as usize;
            len = (len & 0x7f) | (hi << 7);
        }
        name.clear();
        for _ in 0..len {
            let tok = names.byte(mem).map_err(|e| format!("symbol {i}: {e}"))?;
            name.extend_from_slice(tokens.get(tok as usize).copied().unwrap_or_default());
        }
        let Some((&kind, rest)) = name.split_first() else {
            return Err(format!("kallsyms symbol {i} has an empty name: the tables are damaged").into());
        };
        let addr = if !absolute_percpu {
            base.wrapping_add(u64::from(off as u32))
        } else if off >= 0 {
            off as u64
        } else {
            // kallsyms_relative_base - 1 - offset (kernel/kallsyms.c, 6.1)
            base.wrapping_sub(1).wrapping_sub(i64::from(off) as u64)
        };
        sym(addr, &String::from_utf8_lossy(rest), kind as char);
    }
    Ok(())
}

/// `kallsyms_names`, read sequentially in chunks (its length is not recorded anywhere VMCOREINFO
/// points to).
struct NameStream {
    next_addr: u64,
    buf: Vec<u8>,
    pos: usize,
    /// Next read size: starts at a page and doubles up to NAMES_CHUNK, so small or damaged
    /// tables do not cost a large read.
    chunk: usize,
}

impl NameStream {
    fn new(addr: u64) -> NameStream {
        NameStream {
            next_addr: addr,
            buf: Vec::new(),
            pos: 0,
            chunk: 4096,
        }
    }

    fn byte(&mut self, mem: &mut dyn VirtRead) -> Result<u8, String> {
        if let Some(&b) = self.buf.get(self.pos) {
            self.pos += 1;
            return Ok(b);
        }
        self.buf.resize(self.chunk, 0);
        self.chunk = (self.chunk * 2).min(NAMES_CHUNK);
        let got = read_available(mem, self.next_addr, &mut self.buf);
        if got == 0 {
            return Err(format!("kallsyms_names is unreadable at {:#x}", self.next_addr));
        }
        self.buf.truncate(got);
        self.next_addr = self.next_addr.wrapping_add(got as u64);
        self.pos = 1;
        self.buf
            .first()
            .copied()
            .ok_or_else(|| "kallsyms_names read returned nothing".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::BufferMem;

    const BASE: u64 = 0xffff_ffff_8000_0000;

    /// Lays out kallsyms tables the way scripts/kallsyms.c does (tokens are single characters
    /// plus one two-character token), at BASE.
    fn build(syms: &[(&str, u64)], absolute_percpu: bool, relative_base: u64) -> (BufferMem, Tables) {
        let mut tokens: Vec<Vec<u8>> = (0..=255u8).map(|c| vec![c]).collect();
        tokens[0] = b"_s".to_vec(); // a multi-character token; byte 0 never appears in names
        let mut names = Vec::new();
        for (name, _) in syms {
            let mut toks = Vec::new();
            let b = name.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i..].starts_with(b"_s") {
                    toks.push(0u8);
                    i += 2;
                } else {
                    toks.push(b[i]);
                    i += 1;
                }
            }
            if toks.len() >= 0x80 {
                names.push((toks.len() & 0x7f) as u8 | 0x80);
                names.push((toks.len() >> 7) as u8);
            } else {
                names.push(toks.len() as u8);
            }
            names.extend_from_slice(&toks);
        }
        let mut table = Vec::new();
        let mut index = Vec::new();
        for t in &tokens {
            index.extend_from_slice(&(table.len() as u16).to_le_bytes());
            table.extend_from_slice(t);
            table.push(0);
        }
        let offsets: Vec<u8> = syms
            .iter()
            .flat_map(|&(_, a)| {
                let o: i32 = if !absolute_percpu {
                    (a - relative_base) as u32 as i32
                } else if a < 0x1_0000_0000 {
                    a as i32
                } else {
                    relative_base.wrapping_sub(1).wrapping_sub(a) as i64 as i32
                };
                o.to_le_bytes()
            })
            .collect();
        let mut mem = Vec::new();
        let mut place = |bytes: &[u8]| {
            while mem.len() % 8 != 0 {
                mem.push(0xaa);
            }
            let at = BASE + mem.len() as u64;
            mem.extend_from_slice(bytes);
            at
        };
        let t = Tables {
            offsets: place(&offsets),
            relative_base: place(&relative_base.to_le_bytes()),
            num_syms: place(&(syms.len() as u32).to_le_bytes()),
            names: place(&names),
            token_table: place(&table),
            token_index: place(&index),
        };
        (
            BufferMem {
                base: BASE,
                bytes: mem,
            },
            t,
        )
    }

    fn sample() -> Vec<(String, u64)> {
        let mut v = vec![
            ("T_stext".to_string(), 0xffff_ffff_8100_0000),
            ("Dinit_task".to_string(), 0xffff_ffff_8260_0000),
            ("t_some_static".to_string(), 0xffff_ffff_8100_1000),
            (format!("T{}", "x".repeat(200)), 0xffff_ffff_8100_2000),
        ];
        for i in 0..3000u64 {
            v.push((format!("tfunc_{i}"), 0xffff_ffff_8100_3000 + i * 16));
        }
        v
    }

    #[test]
    fn decodes_both_offset_layouts() {
        let sample = sample();
        let mut syms: Vec<(&str, u64)> = sample.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        for absolute in [false, true] {
            if absolute {
                syms.push(("Afixed_percpu", 0x1c000));
            }
            let (mut mem, t) = build(&syms, absolute, 0xffff_ffff_8100_0000);
            let out = decode_tables(&mut mem, &t).unwrap();
            assert_eq!(out.len(), syms.len());
            for (s, (name, addr)) in out.iter().zip(&syms) {
                assert_eq!(s.kind, name.chars().next().unwrap());
                assert_eq!(s.name, name[1..]);
                assert_eq!(s.addr, *addr, "{}", s.name);
            }
            // Straight into a table: the same symbols, found by name and by address.
            let table = table_from_tables(&mut mem, &t).unwrap();
            assert_eq!(table.len(), out.len());
            for s in &out {
                assert_eq!(table.lookup(&s.name), Some(s.addr), "{}", s.name);
                let (at, off) = table.symbolize(s.addr).unwrap();
                assert_eq!((at.addr, off, at.kind), (s.addr, 0, s.kind), "{}", s.name);
            }
        }
    }

    /// A session that keeps only some names (a dump's kmemd names), and the few addresses it
    /// names without the whole table: the same answers as the whole table gives.
    #[test]
    fn kept_names_and_names_at_agree_with_the_whole_table() {
        let sample = sample();
        let mut syms: Vec<(&str, u64)> = sample.iter().map(|(n, a)| (n.as_str(), *a)).collect();
        syms.push(("T_end", 0xffff_ffff_8300_0000));
        let (mut mem, t) = build(&syms, false, 0xffff_ffff_8100_0000);
        let whole = table_from_tables(&mut mem, &t).unwrap();

        let kept = table_keeping(&mut mem, &t, &|n| n == "init_task" || n == "func_7").unwrap();
        assert_eq!(kept.len(), 2);
        assert_eq!(kept.lookup("init_task"), whole.lookup("init_task"));
        assert_eq!(kept.lookup("func_7"), whole.lookup("func_7"));
        assert_eq!(kept.lookup("func_8"), None);

        let addrs = [
            0xffff_ffff_8100_3000 + 7 * 16 + 5, // inside func_7
            0xffff_ffff_8100_0010,              // inside _stext
            0xffff_ffff_8100_1000,              // at some_static itself
            0xffff_ffff_8260_0100,              // past init_task, before _end
            0xffff_ffff_8000_0000,              // below every symbol
            0xffff_ffff_8300_0010,              // at the last symbol, _end: not a name
            0xffff_ffff_9000_0000,              // far past the last symbol
        ];
        let want: Vec<Option<String>> = addrs
            .iter()
            .map(|&a| whole.symbolize(a).map(|(s, _)| s.name.to_string()))
            .collect();
        assert_eq!(want[0].as_deref(), Some("func_7"));
        assert_eq!(want[4], None);
        assert_eq!(want[5], None);
        // The sample lists some symbols out of address order (the pass comparing every pair);
        // scripts/kallsyms.c lists them in order (the merge).
        let got = names_at_tables(&mut mem, &t, &addrs).unwrap();
        assert_eq!(got, want, "tables out of order");
        syms.sort_by_key(|&(_, a)| a);
        let (mut mem, t) = build(&syms, false, 0xffff_ffff_8100_0000);
        let got = names_at_tables(&mut mem, &t, &addrs).unwrap();
        assert_eq!(got, want, "tables in order");
    }

    #[test]
    fn damaged_tables_are_errors_not_panics() {
        let sample = sample();
        let syms: Vec<(&str, u64)> = sample.iter().take(40).map(|(n, a)| (n.as_str(), *a)).collect();
        let (mem, t) = build(&syms, false, 0xffff_ffff_8100_0000);
        for len in 0..mem.bytes.len() {
            let mut m = BufferMem {
                base: BASE,
                bytes: mem.bytes[..len].to_vec(),
            };
            let _ = decode_tables(&mut m, &t);
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut m = mem.clone();
            for _ in 0..3 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % m.bytes.len();
                m.bytes[at] = (x >> 40) as u8;
            }
            let _ = decode_tables(&mut m, &t);
        }
        let mut huge = mem.clone();
        let at = (t.num_syms - BASE) as usize;
        huge.bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode_tables(&mut huge, &t).is_err());
        assert!(decode(&mut mem.clone(), &VmcoreInfo::default()).is_err());
    }
}
