//! A hand-written BTF reader (format: Documentation/bpf/btf.rst and include/uapi/linux/btf.h,
//! Linux 6.x): header, type section, string section. Types are indexed once (offset of each type
//! record) and decoded on demand; every read is bounds-checked, so a damaged blob gives `Err` or
//! `None`, never a panic. Only little-endian BTF is accepted (x86_64 and arm64 kernels).

use crate::mem::{read_available, read_exact, ReadError, VirtRead};

pub const MAGIC: u16 = 0xeb9f;
const HEADER_MIN: usize = 24;
/// Typedef/const chains and nested anonymous members deeper than this are treated as broken.
const MAX_DEPTH: usize = 32;

/// BTF kinds (`BTF_KIND_*`, include/uapi/linux/btf.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Void,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl Kind {
    fn from_raw(k: u32) -> Option<Kind> {
        Some(match k {
            1 => Kind::Int,
            2 => Kind::Ptr,
            3 => Kind::Array,
            4 => Kind::Struct,
            5 => Kind::Union,
            6 => Kind::Enum,
            7 => Kind::Fwd,
            8 => Kind::Typedef,
            9 => Kind::Volatile,
            10 => Kind::Const,
            11 => Kind::Restrict,
            12 => Kind::Func,
            13 => Kind::FuncProto,
            14 => Kind::Var,
            15 => Kind::Datasec,
            16 => Kind::Float,
            17 => Kind::DeclTag,
            18 => Kind::TypeTag,
            19 => Kind::Enum64,
            _ => return None,
        })
    }

    /// Kinds whose `size_type` word is a size (the others refer to a type).
    fn has_size(self) -> bool {
        matches!(
            self,
            Kind::Int | Kind::Struct | Kind::Union | Kind::Enum | Kind::Enum64 | Kind::Datasec | Kind::Float
        )
    }

    /// Bytes of kind-specific data after the 12-byte common header, given `vlen`.
    fn extra_len(self, vlen: usize) -> usize {
        match self {
            Kind::Int | Kind::Var | Kind::DeclTag => 4,
            Kind::Array => 12,
            Kind::Struct | Kind::Union | Kind::Enum64 | Kind::Datasec => 12 * vlen,
            Kind::Enum | Kind::FuncProto => 8 * vlen,
            _ => 0,
        }
    }
}

/// One struct/union member as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfMember {
    pub name: String,
    pub type_id: u32,
    pub offset_bits: u64,
    /// Bitfield width (only with the kind_flag encoding); 0 otherwise.
    pub bitfield_bits: u32,
}

/// One decoded type record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtfType {
    pub id: u32,
    pub kind: Kind,
    pub name: String,
    pub kind_flag: bool,
    pub vlen: u16,
    /// Size in bytes for INT/STRUCT/UNION/ENUM/ENUM64/DATASEC/FLOAT.
    pub size: Option<u32>,
    /// Referenced type for PTR/TYPEDEF/VOLATILE/CONST/RESTRICT/FUNC/FUNC_PROTO(return)/VAR/
    /// DECL_TAG/TYPE_TAG; element type for ARRAY.
    pub type_ref: Option<u32>,
    /// ARRAY element count.
    pub nelems: u32,
    /// STRUCT/UNION members.
    pub members: Vec<BtfMember>,
    /// ENUM/ENUM64 values.
    pub enumerators: Vec<(String, i64)>,
    /// FUNC_PROTO parameters (name, type); DATASEC variables (type id as name-less, offset, size)
    /// are in `vars`.
    pub params: Vec<(String, u32)>,
    /// DATASEC entries: (var type id, offset, size).
    pub vars: Vec<(u32, u32, u32)>,
    /// INT encoding word (`BTF_INT_ENCODING`, offset, bits); DECL_TAG component index; VAR linkage.
    pub extra: u32,
}

/// A parsed BTF blob.
#[derive(Debug, Clone)]
pub struct Btf {
    data: Vec<u8>,
    type_start: usize,
    type_end: usize,
    str_start: usize,
    str_end: usize,
    /// Byte offset (into `data`, which is below 4 GiB) of type id `i + 1`.
    offsets: Vec<u32>,
    /// Ids of the named types (all kinds) sorted by (name, id): the ids of one name are a
    /// contiguous run, found by binary search. Names stay in `data` (a map of owned names cost
    /// ~9 MB for a distribution kernel's ~100k named types).
    by_name: Vec<u32>,
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

impl Btf {
    /// Parses a whole BTF blob (header + type section + string section).
    pub fn parse(data: Vec<u8>) -> Result<Btf, String> {
        let magic = data
            .get(..2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or("BTF blob shorter than its magic")?;
        if magic == MAGIC.swap_bytes() {
            return Err("BTF is big-endian; kmemd reads little-endian kernels only".into());
        }
        if magic != MAGIC {
            return Err(format!("no BTF magic (found {magic:#06x}, want {MAGIC:#06x})"));
        }
        if data.get(2) != Some(&1) {
            return Err(format!("BTF version {:?} is not 1", data.get(2)));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(format!(
                "a BTF blob of {} bytes is too large (4 GiB at most)",
                data.len()
            ));
        }
        let hdr_len = u32_at(&data, 4).ok_or("BTF header truncated")? as usize;
        if hdr_len < HEADER_MIN || hdr_len > data.len() {
            return Err(format!("BTF header length {hdr_len} is impossible"));
        }
        let field = |o| u32_at(&data, o).map(|v| v as usize).ok_or("BTF header truncated");
        let (type_off, type_len, str_off, str_len) = (field(8)?, field(12)?, field(16)?, field(20)?);
        let range = |off: usize, len: usize, what: &str| -> Result<(usize, usize), String> {
            let start = hdr_len
                .checked_add(off)
                .ok_or_else(|| format!("BTF {what} offset overflows"))?;
            let end = start
                .checked_add(len)
                .ok_or_else(|| format!("BTF {what} length overflows"))?;
            if end > data.len() {
                return Err(format!(
                    "BTF {what} ({len} bytes at {start}) runs past the end of the blob ({} bytes)",
                    data.len()
                ));
            }
            Ok((start, end))
        };
        let (type_start, type_end) = range(type_off, type_len, "type section")?;
        let (str_start, str_end) = range(str_off, str_len, "string section")?;
        if str_len == 0 || data.get(str_start) != Some(&0) {
            return Err("BTF string section does not start with an empty string".into());
        }
        let mut btf = Btf {
            data,
            type_start,
            type_end,
            str_start,
            str_end,
            offsets: Vec::new(),
            by_name: Vec::new(),
        };
        let mut at = type_start;
        while at < type_end {
            let info = u32_at(&btf.data, at + 4)
                .filter(|_| at + 12 <= type_end)
                .ok_or_else(|| format!("BTF type {} at byte {at} is truncated", btf.offsets.len() + 1))?;
            let raw_kind = (info >> 24) & 0x1f;
            let kind = Kind::from_raw(raw_kind)
                .ok_or_else(|| format!("BTF type {} has unknown kind {raw_kind}", btf.offsets.len() + 1))?;
            let vlen = (info & 0xffff) as usize;
            let next = at
                .checked_add(12 + kind.extra_len(vlen))
                .filter(|&n| n <= type_end)
                .ok_or_else(|| format!("BTF type {} runs past the type section", btf.offsets.len() + 1))?;
            // `at` < `type_end` <= data.len(), which fits in u32 (checked above).
            btf.offsets
                .push(u32::try_from(at).map_err(|_| "BTF type offset past 4 GiB".to_string())?);
            at = next;
        }
        btf.offsets.shrink_to_fit();
        // Ids are u32 and type 0 is void: more records than that cannot be addressed.
        if btf.offsets.len() >= u32::MAX as usize {
            return Err("BTF has too many types".into());
        }
        // (name offset, id) of each type with a non-empty UTF-8 name, sorted by name then id.
        // The named types (non-empty UTF-8 names), then sorted by (name, id) on a key of each
        // name's first 8 bytes and the id, 12 bytes a type, so most comparisons skip the names.
        let mut ids: Vec<u32> = Vec::with_capacity(btf.offsets.len());
        for i in 1..=btf.offsets.len() as u32 {
            let name_off = btf.type_name_off(i);
            if name_off != 0 && btf.str_at(name_off).is_some_and(|n| !n.is_empty()) {
                ids.push(i);
            }
        }
        let mut keyed: Vec<[u32; 3]> = Vec::with_capacity(ids.len());
        keyed.extend(ids.iter().map(|&id| {
            let k = super::symtab::name_prefix(btf.type_name_bytes(id));
            [(k >> 32) as u32, k as u32, id]
        }));
        keyed.sort_unstable_by(|&[ha, la, ia], &[hb, lb, ib]| {
            (ha, la).cmp(&(hb, lb)).then_with(|| {
                let (na, nb) = (btf.type_name_off(ia), btf.type_name_off(ib));
                // pahole deduplicates strings, so one offset is one name: skip the comparison.
                if na == nb {
                    ia.cmp(&ib)
                } else {
                    btf.name_bytes(na).cmp(btf.name_bytes(nb)).then(ia.cmp(&ib))
                }
            })
        });
        ids.clear();
        ids.extend(keyed.iter().map(|&[_, _, id]| id));
        drop(keyed);
        ids.shrink_to_fit();
        btf.by_name = ids;
        Ok(btf)
    }

    /// Number of types (ids 1..=count; 0 is void).
    pub fn type_count(&self) -> usize {
        self.offsets.len()
    }

    /// NUL-terminated string at `off` in the string section.
    pub fn str_at(&self, off: u32) -> Option<&str> {
        let start = self.str_start.checked_add(off as usize)?;
        let sec = self.data.get(start..self.str_end)?;
        let len = sec.iter().position(|&c| c == 0)?;
        std::str::from_utf8(sec.get(..len)?).ok()
    }

    /// Bytes of the NUL-terminated string at `off` (empty when out of range or unterminated;
    /// the by-name index holds only names `str_at` reads).
    fn name_bytes(&self, off: u32) -> &[u8] {
        let sec = self
            .str_start
            .checked_add(off as usize)
            .and_then(|start| self.data.get(start..self.str_end))
            .unwrap_or_default();
        let len = sec.iter().position(|&c| c == 0).unwrap_or(0);
        sec.get(..len).unwrap_or_default()
    }

    /// String offset of type `id`'s name (0 for void, bad ids and anonymous types).
    fn type_name_off(&self, id: u32) -> u32 {
        (id as usize)
            .checked_sub(1)
            .and_then(|i| self.offsets.get(i))
            .and_then(|&at| self.word(at as usize))
            .unwrap_or(0)
    }

    /// Name bytes of type `id` (empty for void, bad ids and anonymous types).
    fn type_name_bytes(&self, id: u32) -> &[u8] {
        self.name_bytes(self.type_name_off(id))
    }

    fn word(&self, off: usize) -> Option<u32> {
        if off.checked_add(4)? > self.type_end || off < self.type_start {
            return None;
        }
        u32_at(&self.data, off)
    }

    /// Decodes type `id`; `None` for void (0), ids past the end, or broken records.
    pub fn get(&self, id: u32) -> Option<BtfType> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)? as usize;
        let name_off = self.word(at)?;
        let info = self.word(at + 4)?;
        let size_type = self.word(at + 8)?;
        let kind = Kind::from_raw((info >> 24) & 0x1f)?;
        let vlen = (info & 0xffff) as u16;
        let kind_flag = info >> 31 != 0;
        let name = self.str_at(name_off).unwrap_or("").to_string();
        let mut t = BtfType {
            id,
            kind,
            name,
            kind_flag,
            vlen,
            size: kind.has_size().then_some(size_type),
            type_ref: (!kind.has_size()).then_some(size_type),
            nelems: 0,
            members: Vec::new(),
            enumerators: Vec::new(),
            params: Vec::new(),
            vars: Vec::new(),
            extra: 0,
        };
        let x = at + 12;
        let n = vlen as usize;
        match kind {
            Kind::Int | Kind::Var | Kind::DeclTag => t.extra = self.word(x)?,
            Kind::Array => {
                t.type_ref = Some(self.word(x)?);
                t.nelems = self.word(x + 8)?;
            }
            Kind::Struct | Kind::Union => {
                for i in 0..n {
                    let m = x + 12 * i;
                    let raw = self.word(m + 8)?;
                    let (offset_bits, bitfield_bits) = if kind_flag {
                        (u64::from(raw & 0x00ff_ffff), raw >> 24)
                    } else {
                        (u64::from(raw), 0)
                    };
                    t.members.push(BtfMember {
                        name: self.str_at(self.word(m)?).unwrap_or("").to_string(),
                        type_id: self.word(m + 4)?,
                        offset_bits,
                        bitfield_bits,
                    });
                }
            }
            Kind::Enum => {
                for i in 0..n {
                    let e = x + 8 * i;
                    let v = self.word(e + 4)?;
                    // kind_flag set means the values are signed (Linux 6.0+).
                    let v = if kind_flag {
                        i64::from(v as i32)
                    } else {
                        i64::from(v)
                    };
                    t.enumerators
                        .push((self.str_at(self.word(e)?).unwrap_or("").to_string(), v));
                }
            }
            Kind::Enum64 => {
                for i in 0..n {
                    let e = x + 12 * i;
                    let v = (u64::from(self.word(e + 8)?) << 32) | u64::from(self.word(e + 4)?);
                    t.enumerators
                        .push((self.str_at(self.word(e)?).unwrap_or("").to_string(), v as i64));
                }
            }
            Kind::FuncProto => {
                for i in 0..n {
                    let p = x + 8 * i;
                    t.params.push((
                        self.str_at(self.word(p)?).unwrap_or("").to_string(),
                        self.word(p + 4)?,
                    ));
                }
            }
            Kind::Datasec => {
                for i in 0..n {
                    let v = x + 12 * i;
                    t.vars.push((self.word(v)?, self.word(v + 4)?, self.word(v + 8)?));
                }
            }
            _ => {}
        }
        Some(t)
    }

    /// Kind of `id` without decoding members.
    fn kind_of(&self, id: u32) -> Option<Kind> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)? as usize;
        Kind::from_raw((self.word(at + 4)? >> 24) & 0x1f)
    }

    fn ref_of(&self, id: u32) -> Option<u32> {
        let at = *self.offsets.get((id as usize).checked_sub(1)?)? as usize;
        self.word(at + 8)
    }

    /// Ids of the types with this name (any kind).
    pub fn ids_by_name(&self, name: &str) -> &[u32] {
        let name = name.as_bytes();
        if name.is_empty() {
            return &[];
        }
        let from = self
            .by_name
            .partition_point(|&id| self.type_name_bytes(id) < name);
        let rest = self.by_name.get(from..).unwrap_or_default();
        let len = rest.partition_point(|&id| self.type_name_bytes(id) == name);
        rest.get(..len).unwrap_or_default()
    }

    /// Follows TYPEDEF, VOLATILE, CONST, RESTRICT and TYPE_TAG to the underlying type.
    pub fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..MAX_DEPTH {
            match self.kind_of(id)? {
                Kind::Typedef | Kind::Volatile | Kind::Const | Kind::Restrict | Kind::TypeTag => {
                    id = self.ref_of(id)?;
                    if id == 0 {
                        return None;
                    }
                }
                _ => return Some(id),
            }
        }
        None
    }

    /// A struct or union (not a forward declaration) named `name`; `struct foo`/`union foo`
    /// prefixes are accepted, and a typedef name leads to the struct it names.
    pub fn find_struct(&self, name: &str) -> Option<u32> {
        let name = name
            .strip_prefix("struct ")
            .or_else(|| name.strip_prefix("union "))
            .unwrap_or(name)
            .trim();
        let ids = self.ids_by_name(name);
        ids.iter()
            .copied()
            .find(|&id| matches!(self.kind_of(id), Some(Kind::Struct | Kind::Union)))
            .or_else(|| {
                ids.iter().copied().find_map(|id| {
                    (self.kind_of(id) == Some(Kind::Typedef))
                        .then(|| self.resolve(id))
                        .flatten()
                        .filter(|&r| matches!(self.kind_of(r), Some(Kind::Struct | Kind::Union)))
                })
            })
    }

    /// Size in bytes of type `id` (through typedef/const chains; arrays multiply; pointers are
    /// 8 bytes, the only pointer size of the kernels kmemd serves).
    pub fn size_of(&self, id: u32) -> Option<u64> {
        self.size_depth(id, 0)
    }

    fn size_depth(&self, id: u32, depth: usize) -> Option<u64> {
        if depth > MAX_DEPTH {
            return None;
        }
        let id = self.resolve(id)?;
        let kind = self.kind_of(id)?;
        match kind {
            Kind::Ptr => Some(8),
            Kind::Array => {
                let t = self.get(id)?;
                self.size_depth(t.type_ref?, depth + 1)?
                    .checked_mul(u64::from(t.nelems))
            }
            k if k.has_size() => self.ref_of(id).map(u64::from),
            _ => None,
        }
    }

    /// Size of a named type: struct/union first, then any other sized kind or typedef.
    pub fn size_of_name(&self, name: &str) -> Option<u64> {
        if let Some(id) = self.find_struct(name) {
            return self.size_of(id);
        }
        let bare = name.strip_prefix("enum ").unwrap_or(name).trim();
        self.ids_by_name(bare)
            .iter()
            .find_map(|&id| match self.kind_of(id)? {
                Kind::Func | Kind::FuncProto | Kind::Fwd | Kind::DeclTag | Kind::Var | Kind::Datasec => None,
                _ => self.size_of(id),
            })
    }

    /// A member of struct/union `id` by name, searching anonymous struct/union members too.
    /// The offset is from the start of `id`.
    pub fn member(&self, id: u32, name: &str) -> Option<super::Member> {
        self.member_depth(id, name, 0, &mut std::collections::HashSet::new())
    }

    /// `searched` holds the types already searched without finding `name`: searching one again
    /// (a type nested anonymously in several places, or in itself in crafted BTF) cannot find
    /// it either, and without the set the work would grow exponentially with the nesting.
    fn member_depth(
        &self,
        id: u32,
        name: &str,
        depth: usize,
        searched: &mut std::collections::HashSet<u32>,
    ) -> Option<super::Member> {
        if depth > MAX_DEPTH {
            return None;
        }
        let resolved = self.resolve(id)?;
        if !searched.insert(resolved) {
            return None;
        }
        let t = self.get(resolved)?;
        if !matches!(t.kind, Kind::Struct | Kind::Union) {
            return None;
        }
        for m in &t.members {
            if m.name == name {
                return Some(super::Member {
                    offset_bits: m.offset_bits,
                    size: self.size_of(m.type_id).unwrap_or(0),
                    bitfield_bits: m.bitfield_bits,
                    type_id: m.type_id,
                });
            }
        }
        // Anonymous members (C11 anonymous structs/unions) are searched in order.
        for m in t.members.iter().filter(|m| m.name.is_empty()) {
            if let Some(inner) = self.member_depth(m.type_id, name, depth + 1, searched) {
                return Some(super::Member {
                    offset_bits: inner.offset_bits.checked_add(m.offset_bits)?,
                    ..inner
                });
            }
        }
        None
    }

    /// A member by dotted path (`thread.sp`, `se.sum_exec_runtime`) of struct/union `id`.
    pub fn member_path(&self, id: u32, path: &str) -> Option<super::Member> {
        let mut cur = id;
        let mut total = 0u64;
        let mut last = None;
        for part in path.split('.') {
            let m = self.member(cur, part.trim())?;
            total = total.checked_add(m.offset_bits)?;
            cur = m.type_id;
            last = Some(m);
        }
        last.map(|m| super::Member {
            offset_bits: total,
            ..m
        })
    }

    /// `member_path` on the struct named `strukt`.
    pub fn member_by_name(&self, strukt: &str, path: &str) -> Option<super::Member> {
        self.member_path(self.find_struct(strukt)?, path)
    }
}

/// Looks for a BTF header (magic, version 1, flags 0, header length 24) at 4-byte-aligned
/// addresses in `[from, to)` of kernel memory, reading in 64 KiB chunks and skipping unreadable
/// pages. Returns the first address whose header also describes plausible sections.
pub fn find_header(mem: &mut dyn VirtRead, from: u64, to: u64) -> Option<u64> {
    const CHUNK: usize = 64 << 10;
    const PAGE: u64 = 4096;
    let pattern: [u8; 8] = [0x9f, 0xeb, 1, 0, 24, 0, 0, 0];
    let mut buf = vec![0u8; CHUNK + 8];
    let mut addr = from & !3;
    while addr < to {
        let want = CHUNK.min(usize::try_from(to - addr).unwrap_or(CHUNK)) + 8;
        let got = read_available(mem, addr, buf.get_mut(..want)?);
        if got == 0 {
            addr = (addr | (PAGE - 1)).checked_add(1)?;
            continue;
        }
        let data = buf.get(..got)?;
        let mut i = 0usize;
        while i + 8 <= got {
            if data.get(i..i + 8) == Some(&pattern[..]) {
                let at = addr + i as u64;
                if blob_len(mem, at).is_ok() {
                    return Some(at);
                }
            }
            i += 4;
        }
        // Step so that a header across the chunk boundary is seen by the next chunk.
        let step = if got > 8 { (got - 8) as u64 & !3 } else { 4 };
        addr = addr.checked_add(step.max(4))?;
    }
    None
}

/// Total length of the BTF blob whose header is at `addr` (header + both sections, which the
/// kernel lays out back to back), checked for sanity.
pub fn blob_len(mem: &mut dyn VirtRead, addr: u64) -> Result<u64, ReadError> {
    let mut h = [0u8; HEADER_MIN];
    read_exact(mem, addr, &mut h).map_err(|e| ReadError::mem("reading the BTF header", e))?;
    let f = |o: usize| u64::from(u32_at(&h, o).unwrap_or(0));
    let (hdr, toff, tlen, soff, slen) = (f(4), f(8), f(12), f(16), f(20));
    if hdr != HEADER_MIN as u64 || tlen == 0 || slen == 0 || toff % 4 != 0 {
        return Err(format!("the BTF header at {addr:#x} is not plausible").into());
    }
    let end = (toff + tlen).max(soff + slen) + hdr;
    if end > 256 << 20 {
        return Err(format!("the BTF header at {addr:#x} claims {end} bytes").into());
    }
    Ok(end)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds BTF blobs for tests: types are pushed as raw words.
    #[derive(Default)]
    pub(crate) struct Builder {
        pub types: Vec<u8>,
        pub strings: Vec<u8>,
        pub count: u32,
    }

    impl Builder {
        pub fn new() -> Builder {
            Builder {
                strings: vec![0],
                ..Default::default()
            }
        }
        pub fn s(&mut self, name: &str) -> u32 {
            if name.is_empty() {
                return 0;
            }
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            off
        }
        fn w(&mut self, v: u32) {
            self.types.extend_from_slice(&v.to_le_bytes());
        }
        pub fn raw(&mut self, name: &str, kind: u32, vlen: u32, kflag: bool, st: u32, extra: &[u32]) -> u32 {
            let n = self.s(name);
            self.w(n);
            self.w((kind << 24) | vlen | if kflag { 1 << 31 } else { 0 });
            self.w(st);
            for &e in extra {
                self.w(e);
            }
            self.count += 1;
            self.count
        }
        pub fn int(&mut self, name: &str, size: u32) -> u32 {
            self.raw(name, 1, 0, false, size, &[size * 8])
        }
        /// Members: (name, type, offset bits, bitfield bits); kflag when any bitfield is given.
        pub fn strukt(&mut self, kind: u32, name: &str, size: u32, members: &[(&str, u32, u32, u32)]) -> u32 {
            let kflag = members.iter().any(|m| m.3 != 0);
            let mut extra = Vec::new();
            for &(n, t, off, bits) in members {
                extra.push(self.s(n));
                extra.push(t);
                extra.push(if kflag { (bits << 24) | off } else { off });
            }
            self.raw(name, kind, members.len() as u32, kflag, size, &extra)
        }
        pub fn build(&self) -> Vec<u8> {
            let mut out = Vec::new();
            out.extend_from_slice(&MAGIC.to_le_bytes());
            out.extend_from_slice(&[1, 0]);
            for v in [
                24u32,
                0,
                self.types.len() as u32,
                self.types.len() as u32,
                self.strings.len() as u32,
            ] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&self.types);
            out.extend_from_slice(&self.strings);
            out
        }
    }

    /// A task_struct-like layout exercising every kind the reader knows.
    pub(crate) fn sample() -> Vec<u8> {
        let mut b = Builder::new();
        let int = b.int("int", 4); // 1
        let ch = b.int("char", 1); // 2
        let u32_ = b.int("unsigned int", 4); // 3
        let pid_t = b.raw("pid_t", 8, 0, false, int, &[]); // 4 typedef
        let cpid = b.raw("", 10, 0, false, pid_t, &[]); // 5 const pid_t
        let vcpid = b.raw("", 9, 0, false, cpid, &[]); // 6 volatile const pid_t
        let comm = b.raw("", 3, 0, false, 0, &[ch, u32_, 16]); // 7 char[16]
        let lh = b.strukt(4, "list_head", 16, &[("next", 9, 0, 0), ("prev", 9, 64, 0)]); // 8
        let _ptr = b.raw("", 2, 0, false, lh, &[]); // 9 ptr
        let anon_s = b.strukt(4, "", 8, &[("sp", 11, 0, 0)]); // 10
        let ul = b.int("long unsigned int", 8); // 11
        let anon_u = b.strukt(5, "", 8, &[("", anon_s, 0, 0), ("state", u32_, 0, 0)]); // 12
        let thread = b.strukt(4, "thread_struct", 16, &[("ip", ul, 0, 0), ("sp", ul, 64, 0)]); // 13
        let task = b.strukt(
            4,
            "task_struct",
            96,
            &[
                ("", anon_u, 0, 0),
                ("pid", vcpid, 64, 0),
                ("flag", u32_, 96, 3),
                ("flag2", u32_, 99, 5),
                ("tasks", lh, 128, 0),
                ("comm", comm, 256, 0),
                ("thread", thread, 384, 0),
            ],
        ); // 14
        b.raw("task_struct", 7, 0, false, 0, &[]); // 15 FWD with the same name
        b.raw("E", 6, 2, true, 4, &[b.strings.len() as u32, 0, 0, 0xffff_ffff]); // 16 enum
        b.raw("E64", 19, 1, false, 8, &[0, 1, 2]); // 17 enum64
        let fp = b.raw("", 13, 1, false, int, &[0, int]); // 18 func proto
        b.raw("f", 12, 0, false, fp, &[]); // 19 func
        let var = b.raw("v", 14, 0, false, int, &[1]); // 20 var
        b.raw(".data..percpu", 15, 1, false, 4, &[var, 0, 4]); // 21 datasec
        b.raw("double", 16, 0, false, 8, &[]); // 22 float
        b.raw("tag", 17, 0, false, task, &[u32::MAX]); // 23 decl tag
        b.raw("user", 18, 0, false, int, &[]); // 24 type tag
        b.raw("", 11, 0, false, int, &[]); // 25 restrict
        b.raw("task_t", 8, 0, false, task, &[]); // 26 typedef of the struct
        b.build()
    }

    #[test]
    fn reads_members_sizes_and_chains() {
        let btf = Btf::parse(sample()).unwrap();
        assert_eq!(btf.type_count(), 26);
        let task = btf.find_struct("task_struct").unwrap();
        assert_eq!(task, 14, "the FWD declaration is not the struct");
        assert_eq!(btf.find_struct("struct task_struct"), Some(14));
        assert_eq!(btf.find_struct("task_t"), Some(14));
        assert_eq!(btf.size_of(task), Some(96));
        let pid = btf.member(task, "pid").unwrap();
        assert_eq!((pid.offset_bits, pid.size), (64, 4), "volatile const typedef int");
        let comm = btf.member(task, "comm").unwrap();
        assert_eq!((comm.offset(), comm.size), (32, 16));
        // Through the anonymous union and the anonymous struct inside it.
        let sp = btf.member(task, "sp").unwrap();
        assert_eq!((sp.offset_bits, sp.size), (0, 8));
        assert_eq!(btf.member(task, "state").map(|m| m.size), Some(4));
        let f2 = btf.member(task, "flag2").unwrap();
        assert_eq!((f2.offset_bits, f2.bitfield_bits), (99, 5));
        assert_eq!(btf.member_path(task, "thread.sp").map(|m| m.offset()), Some(56));
        assert_eq!(btf.member_path(task, "tasks.prev").map(|m| m.offset()), Some(24));
        assert_eq!(btf.member(task, "nothing"), None);
        assert_eq!(btf.size_of_name("pid_t"), Some(4));
        assert_eq!(btf.size_of_name("list_head"), Some(16));
        assert_eq!(btf.size_of_name("E64"), Some(8));
        assert_eq!(btf.size_of(7), Some(16), "char[16]");
        assert_eq!(btf.size_of(9), Some(8), "pointer");
        let e = btf.get(16).unwrap();
        assert_eq!(e.enumerators[1].1, -1, "signed enum");
        assert_eq!(btf.get(17).unwrap().enumerators[0].1, 0x2_0000_0001);
        assert_eq!(btf.get(21).unwrap().vars, vec![(20, 0, 4)]);
        assert_eq!(btf.get(23).unwrap().kind, Kind::DeclTag);
        assert_eq!(btf.resolve(24), Some(1));
        assert_eq!(btf.resolve(25), Some(1));
        assert_eq!(btf.get(0), None);
        assert_eq!(btf.get(27), None);
    }

    #[test]
    fn types_are_found_by_name() {
        let mut b = Builder::new();
        let int = b.int("int", 4); // 1
        b.strukt(4, "foo", 4, &[("x", int, 0, 0)]); // 2
        b.raw("", 2, 0, false, 2, &[]); // 3 anonymous ptr
        b.raw("foo", 8, 0, false, 2, &[]); // 4 typedef with the struct's name
        b.int("fo", 1); // 5 a prefix of foo
        b.int("foobar", 8); // 6 foo is a prefix of it
                            // 7: a typedef sharing the string of type 4's name (pahole writes each string once);
                            // type 4 starts at byte 52 (int 16 + struct with one member 24 + ptr 12).
        let foo_off = u32::from_le_bytes(b.types[52..56].try_into().unwrap());
        b.types.extend_from_slice(&foo_off.to_le_bytes());
        b.types.extend_from_slice(&(8u32 << 24).to_le_bytes());
        b.types.extend_from_slice(&2u32.to_le_bytes());
        b.count += 1;
        let btf = Btf::parse(b.build()).unwrap();
        assert_eq!(btf.get(7).unwrap().name, "foo");
        assert_eq!(btf.ids_by_name("foo"), &[2, 4, 7], "every kind, ids ascending");
        assert_eq!(btf.ids_by_name("int"), &[1]);
        assert_eq!(btf.ids_by_name("fo"), &[5]);
        assert_eq!(btf.ids_by_name("foobar"), &[6]);
        assert!(btf.ids_by_name("f").is_empty());
        assert!(btf.ids_by_name("zzz").is_empty());
        assert!(btf.ids_by_name("").is_empty(), "anonymous types have no name");
        assert_eq!(btf.find_struct("struct foo"), Some(2));
        let empty = Btf::parse(Builder::new().build()).unwrap();
        assert_eq!(empty.type_count(), 0);
        assert!(empty.ids_by_name("int").is_empty());
        assert_eq!(empty.find_struct("foo"), None);
    }

    #[test]
    fn malformed_blobs_are_errors_not_panics() {
        let good = sample();
        for len in 0..good.len() {
            if let Ok(b) = Btf::parse(good[..len].to_vec()) {
                let _ = b.member_by_name("task_struct", "thread.sp");
            }
        }
        assert!(Btf::parse(good[..good.len() - 1].to_vec()).is_err());
        // Deterministic pseudo-random corruption (xorshift), many bytes at once.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..3000 {
            let mut bad = good.clone();
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let at = (x as usize) % bad.len();
                bad[at] = (x >> 32) as u8;
            }
            if let Ok(b) = Btf::parse(bad) {
                for id in 0..=b.type_count() as u32 + 1 {
                    let _ = b.get(id);
                    let _ = b.size_of(id);
                    let _ = b.member(id, "sp");
                }
                let _ = b.member_by_name("task_struct", "thread.sp");
                let _ = b.size_of_name("task_t");
            }
        }
        // A typedef that refers to itself terminates.
        let mut b = Builder::new();
        b.raw("loop", 8, 0, false, 1, &[]);
        let btf = Btf::parse(b.build()).unwrap();
        assert_eq!(btf.resolve(1), None);
        assert_eq!(btf.size_of_name("loop"), None);
        let mut be = good.clone();
        be.swap(0, 1);
        assert!(Btf::parse(be).unwrap_err().contains("big-endian"));
    }

    #[test]
    fn finds_a_header_in_memory() {
        let blob = sample();
        let mut bytes = vec![0u8; 10_000];
        bytes[200..208].copy_from_slice(&[0x9f, 0xeb, 1, 0, 24, 0, 0, 0]); // header of nothing
        bytes.extend_from_slice(&blob);
        bytes.extend_from_slice(&[0u8; 100]);
        let mut mem = crate::mem::BufferMem {
            base: 0xffff_0000_0000_0000,
            bytes,
        };
        let at = find_header(&mut mem, 0xffff_0000_0000_0000, 0xffff_0000_0001_0000).unwrap();
        assert_eq!(at, 0xffff_0000_0000_0000 + 10_000);
        assert_eq!(blob_len(&mut mem, at).unwrap(), blob.len() as u64);
    }
}
