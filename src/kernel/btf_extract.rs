//! The few kernel types kmemd asks about, taken out of a whole BTF blob without holding it
//! (issue 16): /sys/kernel/btf/vmlinux is ~5.5 MB and, held and indexed, was a third of a live
//! session's memory. [`extract`] reads the blob in fixed-size chunks through a positioned read:
//! the string section once to find the offsets of the [`WANTED_TYPES`] names, the type section
//! once to index where each type record starts and which records carry those names, then the
//! records reachable from them *by value* (members, arrays, typedef/const chains) one by one.
//! Pointers are kept as pointers to void: kmemd needs only their size. The result is a small,
//! valid BTF blob with renumbered ids, for [`Btf::parse`](super::btf::Btf::parse).

use super::btf::MAGIC;
use std::collections::{BTreeMap, HashMap};

/// Every struct, union and typedef name kmemd looks up (kernel/tasks, kernel/modules,
/// kernel/scan, kernel/vma, target/process, the architectures' switch frames,
/// kernel::WANTED_MEMBERS),
/// and the utsname types next to VMCOREINFO's `init_uts_ns` (tests/kernel_live.rs).
/// A name missing here reads as absent from the kernel's BTF, so a lookup of a new type
/// must add its name.
pub const WANTED_TYPES: &[&str] = &[
    "task_struct",
    "thread_struct",
    "thread_info",
    "signal_struct",
    "pt_regs",
    "user_pt_regs",
    "mm_struct",
    "list_head",
    "inactive_task_frame",
    "fork_frame",
    "cpu_context",
    "module",
    "module_memory",
    "module_layout",
    "module_sect_attrs",
    "module_sect_attr",
    "module_kobject",
    "bin_attribute",
    "attribute",
    "printk_ringbuffer",
    "prb_desc",
    "pid_t",
    "uts_namespace",
    "new_utsname",
    // kernel/vma.rs: a process's mappings and their files' paths.
    "vm_area_struct",
    "maple_tree",
    "maple_range_64",
    "maple_arange_64",
    "vm_operations_struct",
    "vm_special_mapping",
    "file",
    "inode",
    "super_block",
    "dentry",
    "vfsmount",
    "mount",
    // kernel/tasks/idle.rs: each CPU's run queue, for its idle task.
    "sched_entity",
    "cfs_rq",
    "rq",
];

/// Bytes per read of the type and string sections.
const CHUNK: usize = 64 << 10;
/// Most type records kept: what the wanted types contain by value is a few thousand; more
/// means a crafted blob.
const MAX_KEPT: usize = 50_000;
/// Longest name read back (C identifiers in the kernel are far shorter).
const MAX_NAME: usize = 1024;

/// A positioned read: fills the front of the buffer from the blob at the offset, returns how
/// many bytes it filled (0 at the end).
pub type ReadAt<'a> = dyn FnMut(u64, &mut [u8]) -> Result<usize, String> + 'a;

fn exact(read: &mut ReadAt<'_>, at: u64, buf: &mut [u8]) -> Result<(), String> {
    let mut got = 0;
    while got < buf.len() {
        let pos = at.checked_add(got as u64).ok_or("BTF offset overflows")?;
        let n = read(pos, buf.get_mut(got..).unwrap_or_default())?;
        if n == 0 {
            return Err(format!("the BTF blob ends before byte {pos}"));
        }
        got += n;
    }
    Ok(())
}

fn word(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn put(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

/// Bytes after the 12-byte header of a record of `kind` (raw BTF_KIND_*) with `vlen` entries;
/// `None` for an unknown kind.
fn extra_len(kind: u32, vlen: usize) -> Option<usize> {
    Some(match kind {
        1 | 14 | 17 => 4,             // INT, VAR, DECL_TAG
        3 => 12,                      // ARRAY
        4 | 5 | 15 | 19 => 12 * vlen, // STRUCT, UNION, DATASEC, ENUM64
        6 | 13 => 8 * vlen,           // ENUM, FUNC_PROTO
        2 | 7..=12 | 16 | 18 => 0,
        _ => return None,
    })
}

/// What [`stream`] hands each chunk to.
type Each<'a> = dyn FnMut(u64, &[u8]) -> Result<(), String> + 'a;

/// Reads `[start, end)` of the blob in [`CHUNK`]s, handing each to `each` with its offset
/// relative to `start`.
fn stream(read: &mut ReadAt<'_>, start: u64, end: u64, each: &mut Each<'_>) -> Result<(), String> {
    let mut buf = vec![0u8; CHUNK];
    let mut at = start;
    while at < end {
        let n = usize::try_from(end - at).map_or(CHUNK, |left| left.min(CHUNK));
        let part = buf.get_mut(..n).unwrap_or_default();
        exact(read, at, part)?;
        each(at - start, part)?;
        at += n as u64;
    }
    Ok(())
}

/// The small blob of the [`WANTED_TYPES`] (see the module comment).
pub fn extract(read: &mut ReadAt<'_>) -> Result<Vec<u8>, String> {
    let mut hdr = [0u8; 24];
    exact(read, 0, &mut hdr)?;
    let magic = u16::from_le_bytes([hdr[0], hdr[1]]);
    if magic != MAGIC || hdr[2] != 1 {
        return Err(format!(
            "no little-endian BTF version 1 (magic {magic:#06x}, version {})",
            hdr[2]
        ));
    }
    let hdr_len = u64::from(word(&hdr, 4));
    let (type_off, type_len) = (u64::from(word(&hdr, 8)), u64::from(word(&hdr, 12)));
    let (str_off, str_len) = (u64::from(word(&hdr, 16)), u64::from(word(&hdr, 20)));
    if hdr_len < 24 {
        return Err(format!("BTF header length {hdr_len} is impossible"));
    }
    let type_start = hdr_len + type_off;
    let str_start = hdr_len + str_off;

    // Pass 1: the offsets of the wanted names in the string section.
    let mut wanted_offs: Vec<u32> = Vec::new();
    let mut cur: Vec<u8> = Vec::with_capacity(64);
    let mut cur_start = 0u64;
    let mut long = false;
    stream(read, str_start, str_start + str_len, &mut |base, part| {
        for (i, &b) in part.iter().enumerate() {
            if b == 0 {
                if !long && WANTED_TYPES.iter().any(|w| w.as_bytes() == cur.as_slice()) {
                    wanted_offs.push(u32::try_from(cur_start).map_err(|_| "BTF string offset past 4 GiB")?);
                }
                cur.clear();
                long = false;
                cur_start = base + i as u64 + 1;
            } else if cur.len() < 64 {
                cur.push(b);
            } else {
                long = true;
            }
        }
        Ok(())
    })?;

    // Pass 2: where each type record starts, and the records carrying a wanted name. Records
    // may straddle chunks: the unfinished tail is carried over.
    let mut offsets: Vec<u32> = Vec::new();
    let mut roots: Vec<u32> = Vec::new();
    let mut carry: Vec<u8> = Vec::new();
    let mut carry_at = 0u64; // offset (in the type section) of carry[0]
    stream(read, type_start, type_start + type_len, &mut |base, part| {
        if carry.is_empty() {
            carry_at = base;
        }
        carry.extend_from_slice(part);
        let mut pos = 0usize;
        while carry.len() - pos >= 12 {
            let info = word(&carry, pos + 4);
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let len = 12 + extra_len(kind, vlen).ok_or_else(|| format!("BTF type kind {kind} is unknown"))?;
            if carry.len() - pos < len {
                break;
            }
            let id = offsets.len() as u32 + 1;
            let off = carry_at + pos as u64;
            offsets.push(u32::try_from(off).map_err(|_| "BTF type offset past 4 GiB")?);
            let name_off = word(&carry, pos);
            // STRUCT, UNION, TYPEDEF, INT, ENUM, ENUM64, FLOAT: the kinds a name can be asked of.
            if name_off != 0 && matches!(kind, 1 | 4 | 5 | 6 | 8 | 16 | 19) && wanted_offs.contains(&name_off)
            {
                roots.push(id);
            }
            pos += len;
        }
        carry.drain(..pos);
        carry_at += pos as u64;
        Ok(())
    })?;
    if !carry.is_empty() {
        return Err("the BTF type section ends inside a type record".into());
    }
    drop(carry);

    // The records reachable from the roots by value.
    let mut kept: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut work = roots;
    while let Some(id) = work.pop() {
        if id == 0 || kept.contains_key(&id) {
            continue;
        }
        if kept.len() >= MAX_KEPT {
            return Err(format!("the wanted BTF types contain more than {MAX_KEPT} types"));
        }
        // A reference past the last type (a damaged blob) is left out: it maps to void, as
        // Btf::parse would answer it with no size, and the rest of the types still serve.
        let Some(&at) = offsets.get(id as usize - 1) else {
            continue;
        };
        let mut head = [0u8; 12];
        exact(read, type_start + u64::from(at), &mut head)?;
        let info = word(&head, 4);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let mut rec = head.to_vec();
        rec.resize(12 + extra_len(kind, vlen).unwrap_or(0), 0);
        exact(
            read,
            type_start + u64::from(at) + 12,
            rec.get_mut(12..).unwrap_or_default(),
        )?;
        match kind {
            8..=11 | 18 => work.push(word(&rec, 8)), // TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
            3 => {
                work.push(word(&rec, 12));
                work.push(word(&rec, 16));
            }
            4 | 5 => work.extend((0..vlen).map(|i| word(&rec, 12 + 12 * i + 4))),
            _ => {}
        }
        kept.insert(id, rec);
    }
    drop(offsets);

    // Renumber, read back the names used, and rewrite the references.
    let new_id: HashMap<u32, u32> = kept
        .keys()
        .enumerate()
        .map(|(i, &id)| (id, i as u32 + 1))
        .collect();
    let map = |id: u32| new_id.get(&id).copied().unwrap_or(0);
    let mut strings: Vec<u8> = vec![0];
    let mut new_off: HashMap<u32, u32> = HashMap::new();
    let mut name = |read: &mut ReadAt<'_>, off: u32| -> Result<u32, String> {
        if off == 0 {
            return Ok(0);
        }
        if let Some(&n) = new_off.get(&off) {
            return Ok(n);
        }
        let mut s = Vec::new();
        let mut piece = [0u8; 64];
        while s.len() < MAX_NAME {
            let at = str_start + u64::from(off) + s.len() as u64;
            let n = read(at, &mut piece)?;
            if n == 0 {
                break;
            }
            match piece[..n].iter().position(|&b| b == 0) {
                Some(z) => {
                    s.extend_from_slice(&piece[..z]);
                    break;
                }
                None => s.extend_from_slice(&piece[..n]),
            }
        }
        let n = u32::try_from(strings.len()).map_err(|_| "BTF strings past 4 GiB")?;
        strings.extend_from_slice(&s);
        strings.push(0);
        new_off.insert(off, n);
        Ok(n)
    };
    let mut types: Vec<u8> = Vec::new();
    for rec in kept.values_mut() {
        let info = word(rec, 4);
        let kind = (info >> 24) & 0x1f;
        let vlen = (info & 0xffff) as usize;
        let n = name(read, word(rec, 0))?;
        put(rec, 0, n);
        match kind {
            2 => put(rec, 8, 0), // PTR: to void; kmemd needs only its size
            8..=11 | 18 => {
                let v = map(word(rec, 8));
                put(rec, 8, v)
            }
            12 | 13 | 14 | 17 => put(rec, 8, 0), // FUNC, FUNC_PROTO, VAR, DECL_TAG: not followed
            3 => {
                {
                    let v = map(word(rec, 12));
                    put(rec, 12, v)
                };
                {
                    let v = map(word(rec, 16));
                    put(rec, 16, v)
                };
            }
            4 | 5 => {
                for i in 0..vlen {
                    let m = 12 + 12 * i;
                    let n = name(read, word(rec, m))?;
                    put(rec, m, n);
                    {
                        let v = map(word(rec, m + 4));
                        put(rec, m + 4, v)
                    };
                }
            }
            6 | 19 => {
                let step = if kind == 6 { 8 } else { 12 };
                for i in 0..vlen {
                    let n = name(read, word(rec, 12 + step * i))?;
                    put(rec, 12 + step * i, n);
                }
            }
            _ => {}
        }
        if kind == 13 {
            // FUNC_PROTO parameters: their types are not kept either.
            for i in 0..vlen {
                put(rec, 12 + 8 * i, 0);
                put(rec, 12 + 8 * i + 4, 0);
            }
        }
        types.extend_from_slice(rec);
    }
    let type_len = u32::try_from(types.len()).map_err(|_| "extracted BTF past 4 GiB")?;
    let str_len = u32::try_from(strings.len()).map_err(|_| "extracted BTF past 4 GiB")?;
    let mut out = Vec::with_capacity(24 + types.len() + strings.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[1, 0]);
    for v in [24, 0, type_len, type_len, str_len] {
        out.extend_from_slice(&u32::to_le_bytes(v));
    }
    out.extend_from_slice(&types);
    out.extend_from_slice(&strings);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::btf::tests::sample;
    use super::super::btf::Btf;
    use super::*;

    /// Extracts from `blob` through reads of at most `chunk` bytes.
    fn from(blob: &[u8], chunk: usize) -> Result<Btf, String> {
        let mut read = |at: u64, buf: &mut [u8]| -> Result<usize, String> {
            let at = usize::try_from(at).map_err(|e| e.to_string())?;
            let src = blob.get(at..).unwrap_or_default();
            let n = buf.len().min(src.len()).min(chunk);
            buf[..n].copy_from_slice(&src[..n]);
            Ok(n)
        };
        Btf::parse(extract(&mut read)?)
    }

    #[test]
    fn the_wanted_types_answer_as_in_the_whole_blob() {
        let whole = Btf::parse(sample()).unwrap();
        for chunk in [1, 5, 64, 1 << 20] {
            let small = from(&sample(), chunk).unwrap();
            assert!(small.type_count() < whole.type_count(), "chunk {chunk}");
            for path in [
                "pid",
                "comm",
                "sp",
                "state",
                "flag2",
                "thread.sp",
                "tasks.prev",
                "thread.ip",
            ] {
                assert_eq!(
                    small.member_by_name("task_struct", path),
                    whole
                        .member_by_name("task_struct", path)
                        .map(|m| super::super::Member {
                            type_id: small.member_by_name("task_struct", path).map_or(0, |s| s.type_id),
                            ..m
                        }),
                    "task_struct.{path}, chunk {chunk}"
                );
            }
            for name in ["task_struct", "list_head", "thread_struct", "pid_t"] {
                assert_eq!(small.size_of_name(name), whole.size_of_name(name), "{name}");
            }
            assert_eq!(
                small
                    .member_by_name("list_head", "prev")
                    .map(|m| (m.offset(), m.size)),
                Some((8, 8))
            );
            // Not wanted: neither the enum nor the function nor the typedef task_t.
            assert_eq!(small.size_of_name("E"), None);
            assert_eq!(small.size_of_name("task_t"), None);
            assert!(small.ids_by_name("f").is_empty());
        }
    }

    #[test]
    fn damaged_blobs_are_errors() {
        let good = sample();
        assert!(from(&good[..10], 64).is_err(), "short header");
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(from(&bad, 64).is_err(), "magic");
        // The type section cut inside a record.
        let mut cut = good.clone();
        let tl = u32::from_le_bytes(cut[12..16].try_into().unwrap());
        cut[12..16].copy_from_slice(&(tl - 5).to_le_bytes());
        cut[16..20].copy_from_slice(&(tl - 5).to_le_bytes());
        assert!(from(&cut, 64).is_err());
        // A member referring past the last type: the struct is still there, that member
        // has no size.
        let mut b = super::super::btf::tests::Builder::new();
        let int = b.int("int", 4);
        b.strukt(4, "task_struct", 8, &[("pid", int, 0, 0), ("bad", 99, 32, 0)]);
        let small = from(&b.build(), 7).unwrap();
        assert_eq!(
            small.member_by_name("task_struct", "pid").map(|m| m.size),
            Some(4)
        );
        assert_eq!(
            small.member_by_name("task_struct", "bad").map(|m| m.size),
            Some(0)
        );
        // A file shorter than its header says.
        assert!(from(&good[..good.len() - 3], 64).is_err());
    }
}
