//! A process's memory mappings (its VMAs) and the `/proc/PID/maps` text the kernel prints for
//! them, read from kernel memory through [`Layout`] offsets (BTF), for `--pid`'s
//! `info proc mappings` and `generate-core-file`.
//!
//! Where the VMAs are:
//! - Linux 6.1 and later (commit d4af56c5c7c6 "mm: start tracking VMAs with maple tree" and
//!   the removal of `mm->mmap` in 763ecb035029): `mm->mm_mt`, a maple tree keyed by address,
//!   each VMA stored for the range `[vm_start, vm_end - 1]`;
//! - before: the `mm->mmap` list linked by `vm_next`, sorted by address.
//!
//! Every loop is bounded and every candidate VMA is checked (`vm_mm` is this mm, its range is
//! the one the tree stores it under), so a damaged or crafted tree ends in an error, not a hang.

use super::layout::{Field, Layout};
use crate::mem::{read_exact, read_u64, VirtRead};

/// `VM_READ`, `VM_WRITE`, `VM_EXEC`, `VM_MAYSHARE` (include/linux/mm.h, unchanged 2.6 to 6.12).
const VM_READ: u64 = 0x1;
const VM_WRITE: u64 = 0x2;
const VM_EXEC: u64 = 0x4;
const VM_MAYSHARE: u64 = 0x80;

/// lib/maple_tree.c and include/linux/maple_tree.h (6.1): a node pointer's low byte holds flags
/// (`MAPLE_NODE_MASK` 255), its type is `(entry >> 3) & 15`; an internal entry has low bits
/// `10` (xa_is_internal) and a node is an internal entry above 4096 (`xa_is_node`).
const MAPLE_NODE_MASK: u64 = 0xff;
const MAPLE_NODE_TYPE_SHIFT: u64 = 3;
const MAPLE_NODE_TYPE_MASK: u64 = 0xf;
/// `enum maple_type` (6.1): maple_dense 0, maple_leaf_64 1, maple_range_64 2, maple_arange_64 3.
const MAPLE_LEAF_64: u64 = 1;
const MAPLE_RANGE_64: u64 = 2;
const MAPLE_ARANGE_64: u64 = 3;
/// `MAPLE_HEIGHT_MAX` (include/linux/maple_tree.h, 6.1).
const MAPLE_HEIGHT_MAX: usize = 31;
/// A `struct maple_node` is 256 bytes (`MAPLE_NODE_SLOTS` 31 pointers + parent, 6.1).
const MAPLE_NODE_BYTES: usize = 256;

/// At most this many tree nodes are visited: a real mm with `vm.max_map_count` (65530 by
/// default) VMAs has a few thousand nodes; a cyclic tree stops here.
const MAX_NODES: usize = 1 << 16;
/// At most this many VMAs (well above the default `vm.max_map_count` of 65530).
pub const MAX_VMAS: usize = 1 << 18;
/// Path components followed by [`file_path`] (`PATH_MAX` is 4096 bytes, so a real path has at
/// most 2048 components; deeper means a loop).
const MAX_PATH_STEPS: usize = 2048;
/// `NAME_MAX` (include/uapi/linux/limits.h).
const NAME_MAX: usize = 255;

/// One mapping as `/proc/PID/maps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    pub start: u64,
    pub end: u64,
    pub flags: u64,
    /// File offset in bytes (0 for anonymous mappings, as the kernel prints it).
    pub offset: u64,
    /// The kernel's `dev_t` of the file's superblock: major in the bits above 20.
    pub dev: u64,
    pub inode: u64,
    /// The file's path, or `[heap]`, `[stack]`, `[vdso]`...; empty for anonymous memory.
    pub name: String,
}

/// Where the members the walk needs are, on this kernel.
#[derive(Debug, Clone)]
pub struct VmaLayout {
    mm_mt: Option<u64>,
    mmap: Option<u64>,
    ma_root: u64,
    /// (pivots, pivot offset, slot offset, meta offset) of maple_range_64 and maple_arange_64.
    range: NodeLayout,
    arange: NodeLayout,
    vm_next: Option<u64>,
    vm_start: u64,
    vm_end: u64,
    vm_mm: u64,
    vm_flags: Field,
    vm_pgoff: u64,
    vm_file: u64,
    vm_ops: Option<u64>,
    vm_private_data: Option<u64>,
    ops_name: Option<u64>,
    special_name: Option<u64>,
    special_mapping_name: Option<u64>,
    start_brk: Option<u64>,
    brk: Option<u64>,
    start_stack: Option<u64>,
    f_dentry: u64,
    f_mnt: u64,
    f_inode: u64,
    i_ino: u64,
    i_sb: u64,
    s_dev: Field,
    d_parent: u64,
    d_name_name: u64,
    d_name_len: u64,
    mnt_root: u64,
    mount_mnt: u64,
    mnt_parent: u64,
    mnt_mountpoint: u64,
    page_shift: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct NodeLayout {
    pivots: usize,
    pivot: u64,
    slot: u64,
    meta: Option<u64>,
}

fn need(l: &dyn Layout, st: &str, m: &str) -> Result<Field, String> {
    l.member(st, m)
        .ok_or_else(|| format!("the kernel's type information lacks {st}.{m}"))
}

fn node_layout(l: &dyn Layout, st: &str) -> Result<NodeLayout, String> {
    let pivot = need(l, st, "pivot")?;
    let slot = need(l, st, "slot")?;
    let pivots = usize::try_from(pivot.size / 8).unwrap_or(0);
    let slots = usize::try_from(slot.size / 8).unwrap_or(0);
    // Slots are pivots + 1 (6.1: range_64 15/16, arange_64 9/10); anything else is not a tree
    // this walker knows.
    if pivots == 0 || slots != pivots + 1 || pivot.offset + pivot.size > MAPLE_NODE_BYTES as u64 {
        return Err(format!(
            "{st} has {pivots} pivots and {slots} slots: not a maple node this walker knows"
        ));
    }
    // The metadata (`struct maple_metadata`, 6.1: `end` is its first byte).
    let meta = l.member(st, "meta").map(|f| f.offset);
    Ok(NodeLayout {
        pivots,
        pivot: pivot.offset,
        slot: slot.offset,
        meta,
    })
}

impl VmaLayout {
    /// `page_shift`: log2 of the kernel's page size (`vm_pgoff` counts pages).
    pub fn new(l: &dyn Layout, page_shift: u32) -> Result<VmaLayout, String> {
        let mm_mt = l.member("mm_struct", "mm_mt").map(|f| f.offset);
        let mmap = l.member("mm_struct", "mmap").map(|f| f.offset);
        if mm_mt.is_none() && mmap.is_none() {
            return Err(
                "the kernel's type information has neither mm_struct.mm_mt nor mm_struct.mmap".into(),
            );
        }
        let (ma_root, range, arange) = if mm_mt.is_some() {
            (
                need(l, "maple_tree", "ma_root")?.offset,
                node_layout(l, "maple_range_64")?,
                node_layout(l, "maple_arange_64")?,
            )
        } else {
            (0, NodeLayout::default(), NodeLayout::default())
        };
        let vm = "vm_area_struct";
        let opt = |st: &str, m: &str| l.member(st, m).map(|f| f.offset);
        Ok(VmaLayout {
            mm_mt,
            mmap,
            ma_root,
            range,
            arange,
            vm_next: opt(vm, "vm_next"),
            vm_start: need(l, vm, "vm_start")?.offset,
            vm_end: need(l, vm, "vm_end")?.offset,
            vm_mm: need(l, vm, "vm_mm")?.offset,
            vm_flags: need(l, vm, "vm_flags")?,
            vm_pgoff: need(l, vm, "vm_pgoff")?.offset,
            vm_file: need(l, vm, "vm_file")?.offset,
            vm_ops: opt(vm, "vm_ops"),
            vm_private_data: opt(vm, "vm_private_data"),
            ops_name: opt("vm_operations_struct", "name"),
            special_name: opt("vm_special_mapping", "name"),
            special_mapping_name: l.symbol("special_mapping_name"),
            start_brk: opt("mm_struct", "start_brk"),
            brk: opt("mm_struct", "brk"),
            start_stack: opt("mm_struct", "start_stack"),
            f_dentry: need(l, "file", "f_path.dentry")?.offset,
            f_mnt: need(l, "file", "f_path.mnt")?.offset,
            f_inode: need(l, "file", "f_inode")?.offset,
            i_ino: need(l, "inode", "i_ino")?.offset,
            i_sb: need(l, "inode", "i_sb")?.offset,
            s_dev: need(l, "super_block", "s_dev")?,
            d_parent: need(l, "dentry", "d_parent")?.offset,
            d_name_name: need(l, "dentry", "d_name.name")?.offset,
            d_name_len: need(l, "dentry", "d_name.len")?.offset,
            mnt_root: need(l, "vfsmount", "mnt_root")?.offset,
            mount_mnt: need(l, "mount", "mnt")?.offset,
            mnt_parent: need(l, "mount", "mnt_parent")?.offset,
            mnt_mountpoint: need(l, "mount", "mnt_mountpoint")?.offset,
            page_shift,
        })
    }
}

fn rd(mem: &mut dyn VirtRead, addr: u64, what: &str) -> Result<u64, String> {
    read_u64(mem, addr).map_err(|e| format!("cannot read {what} at {addr:#x}: {e}"))
}

fn word(node: &[u8], off: u64, i: usize) -> Option<u64> {
    let at = usize::try_from(off).ok()?.checked_add(i.checked_mul(8)?)?;
    let b = node.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// A VMA the tree names, with the range it is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Candidate {
    vma: u64,
    first: u64,
    last: u64,
}

/// The VMA addresses of the maple tree at `root`, in address order, with the range each is
/// stored under (lib/maple_tree.c, 6.1: leaves are `maple_leaf_64`, internal nodes
/// `maple_arange_64` for an mm's tree, `maple_range_64` otherwise).
fn maple_entries(mem: &mut dyn VirtRead, l: &VmaLayout, root: u64) -> Result<Vec<Candidate>, String> {
    let mut out = Vec::new();
    if root == 0 {
        return Ok(out);
    }
    let is_node = |e: u64| e & 3 == 2 && e > 4096;
    if !is_node(root) {
        // A tree holding one entry at index 0 keeps it in the root (never a VMA: none starts at
        // 0 with length 1); anything else there is not an mm tree.
        return Err(format!("the maple tree's root {root:#x} is not a node"));
    }
    // (entry, min, max, depth); children are pushed in reverse so they come out in order.
    let mut stack = vec![(root, 0u64, u64::MAX, 0usize)];
    let mut visited = 0usize;
    let mut node = [0u8; MAPLE_NODE_BYTES];
    while let Some((entry, min, max, depth)) = stack.pop() {
        visited += 1;
        if visited > MAX_NODES {
            return Err(format!(
                "the maple tree has over {MAX_NODES} nodes: it loops or is damaged"
            ));
        }
        if depth >= MAPLE_HEIGHT_MAX {
            return Err(format!(
                "the maple tree is deeper than {MAPLE_HEIGHT_MAX} levels: it loops or is damaged"
            ));
        }
        let addr = entry & !MAPLE_NODE_MASK;
        let ty = (entry >> MAPLE_NODE_TYPE_SHIFT) & MAPLE_NODE_TYPE_MASK;
        let nl = match ty {
            MAPLE_LEAF_64 | MAPLE_RANGE_64 => l.range,
            MAPLE_ARANGE_64 => l.arange,
            _ => return Err(format!("maple node {entry:#x} has type {ty}, not a range node")),
        };
        read_exact(mem, addr, &mut node).map_err(|e| format!("cannot read maple node {addr:#x}: {e}"))?;
        let pivot = |i: usize| word(&node, nl.pivot, i).unwrap_or(0);
        let meta_end = || {
            nl.meta
                .and_then(|m| usize::try_from(m).ok())
                .and_then(|m| node.get(m).copied())
                .map(usize::from)
        };
        // The last slot in use (`ma_data_end`, lib/maple_tree.c 6.1): arange nodes keep it in
        // their metadata; range/leaf nodes when their last pivot is 0, else the node is full.
        let last_piv = pivot(nl.pivots - 1);
        let end = if ty == MAPLE_ARANGE_64 || last_piv == 0 {
            match meta_end() {
                Some(e) => e,
                // No metadata in the layout: pivots past the end are 0.
                None => (1..nl.pivots)
                    .find(|&i| pivot(i) == 0)
                    .map_or(nl.pivots, |i| i - 1),
            }
        } else if last_piv == max {
            nl.pivots - 1
        } else {
            nl.pivots
        };
        if end > nl.pivots {
            return Err(format!("maple node {addr:#x} says it ends at slot {end}"));
        }
        let leaf = ty == MAPLE_LEAF_64;
        let mut lo = min;
        let mut children = Vec::new();
        for i in 0..=end {
            // `mas_logical_pivot` (6.1): past the pivots, or a 0 pivot after slot 0, is the
            // node's max.
            let hi = match (i < nl.pivots, pivot(i)) {
                (true, 0) if i > 0 => max,
                (true, p) => p,
                (false, _) => max,
            };
            if hi < lo || hi > max {
                return Err(format!(
                    "maple node {addr:#x} slot {i}: range {lo:#x}..={hi:#x} outside {min:#x}..={max:#x}"
                ));
            }
            let slot = word(&node, nl.slot, i).unwrap_or(0);
            if slot != 0 {
                if leaf {
                    // Reserved or internal entries (low bits set) are not VMAs.
                    if slot & 7 == 0 {
                        out.push(Candidate {
                            vma: slot,
                            first: lo,
                            last: hi,
                        });
                        if out.len() > MAX_VMAS {
                            return Err(format!("the maple tree holds over {MAX_VMAS} entries"));
                        }
                    }
                } else if is_node(slot) {
                    children.push((slot, lo, hi, depth + 1));
                } else {
                    return Err(format!(
                        "maple node {addr:#x} slot {i} holds {slot:#x}, not a node"
                    ));
                }
            }
            if hi >= max {
                break;
            }
            lo = hi + 1;
        }
        stack.extend(children.into_iter().rev());
    }
    Ok(out)
}

/// The VMAs of the mm at `mm`, in address order, each checked: `vm_mm` is `mm`, and (maple
/// tree) the VMA's range is the one it is stored under.
pub fn vma_addresses(mem: &mut dyn VirtRead, l: &VmaLayout, mm: u64) -> Result<Vec<u64>, String> {
    let mut out: Vec<u64> = Vec::new();
    if let Some(mt) = l.mm_mt {
        let root = rd(
            mem,
            mm.wrapping_add(mt).wrapping_add(l.ma_root),
            "mm->mm_mt.ma_root",
        )?;
        for c in maple_entries(mem, l, root)? {
            let start = rd(mem, c.vma.wrapping_add(l.vm_start), "vma->vm_start")?;
            let end = rd(mem, c.vma.wrapping_add(l.vm_end), "vma->vm_end")?;
            let owner = rd(mem, c.vma.wrapping_add(l.vm_mm), "vma->vm_mm")?;
            if owner != mm || start != c.first || end.checked_sub(1) != Some(c.last) {
                return Err(format!(
                    "the maple tree stores {:#x} for {:#x}..={:#x}, but it is a VMA of mm {owner:#x} for {start:#x}-{end:#x}",
                    c.vma, c.first, c.last
                ));
            }
            out.push(c.vma);
        }
    } else if let (Some(head), Some(next)) = (l.mmap, l.vm_next) {
        // Before 6.1: mm->mmap, linked by vm_next in address order (mm/mmap.c).
        let mut vma = rd(mem, mm.wrapping_add(head), "mm->mmap")?;
        let mut last_end = 0u64;
        while vma != 0 {
            if out.len() >= MAX_VMAS {
                return Err(format!("mm->mmap lists over {MAX_VMAS} VMAs: it loops"));
            }
            let start = rd(mem, vma.wrapping_add(l.vm_start), "vma->vm_start")?;
            let end = rd(mem, vma.wrapping_add(l.vm_end), "vma->vm_end")?;
            let owner = rd(mem, vma.wrapping_add(l.vm_mm), "vma->vm_mm")?;
            if owner != mm || start < last_end || end <= start {
                return Err(format!(
                    "mm->mmap's VMA {vma:#x} ({start:#x}-{end:#x}, mm {owner:#x}) is out of order or not this mm's"
                ));
            }
            last_end = end;
            out.push(vma);
            vma = rd(mem, vma.wrapping_add(next), "vma->vm_next")?;
        }
    } else {
        return Err("the kernel's type information lacks vm_area_struct.vm_next".into());
    }
    Ok(out)
}

/// A NUL-terminated string of at most `max` bytes.
fn read_cstr(mem: &mut dyn VirtRead, addr: u64, max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 64];
    while out.len() < max {
        let at = addr.wrapping_add(out.len() as u64);
        let n = chunk.len().min(max - out.len());
        // A partial read is fine: the string may end just before an unreadable page.
        let n = mem
            .read_virt(crate::mem::VirtAddr(at), &mut chunk[..n])
            .map_err(|e| format!("cannot read a name at {at:#x}: {e}"))?
            .min(n);
        if n == 0 {
            return Err(format!("cannot read a name at {at:#x}: empty read"));
        }
        if let Some(z) = chunk[..n].iter().position(|&b| b == 0) {
            out.extend_from_slice(&chunk[..z]);
            return Ok(out);
        }
        out.extend_from_slice(&chunk[..n]);
    }
    Ok(out)
}

/// `d_path` of a file (fs/d_path.c `prepend_path`, 6.1): its dentry's names up to the root of
/// its mount, then on through the mount points of the parent mounts to the root of the mount
/// tree. Escapes `\n` as the kernel's `seq_file_path(m, file, "\n")` does (`\012`).
pub fn file_path(mem: &mut dyn VirtRead, l: &VmaLayout, file: u64) -> Result<String, String> {
    let mut dentry = rd(mem, file.wrapping_add(l.f_dentry), "file->f_path.dentry")?;
    let vfsmnt = rd(mem, file.wrapping_add(l.f_mnt), "file->f_path.mnt")?;
    // `struct mount` embeds the `struct vfsmount` (fs/mount.h).
    let mut mount = vfsmnt.wrapping_sub(l.mount_mnt);
    let mut names: Vec<Vec<u8>> = Vec::new();
    let mut total = 0usize;
    for _ in 0..MAX_PATH_STEPS {
        let mnt_root = rd(
            mem,
            mount.wrapping_add(l.mount_mnt).wrapping_add(l.mnt_root),
            "vfsmount->mnt_root",
        )?;
        if dentry == mnt_root {
            let parent = rd(mem, mount.wrapping_add(l.mnt_parent), "mount->mnt_parent")?;
            if parent == mount || parent == 0 {
                return Ok(join_path(&names));
            }
            dentry = rd(mem, mount.wrapping_add(l.mnt_mountpoint), "mount->mnt_mountpoint")?;
            mount = parent;
            continue;
        }
        let parent = rd(mem, dentry.wrapping_add(l.d_parent), "dentry->d_parent")?;
        if parent == dentry {
            // The root of a filesystem that is not its mount's root (a disconnected dentry).
            return Ok(join_path(&names));
        }
        let len = crate::mem::read_u32(mem, dentry.wrapping_add(l.d_name_len))
            .map_err(|e| format!("cannot read dentry->d_name.len: {e}"))?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len == 0 || len > NAME_MAX {
            return Err(format!("dentry {dentry:#x} has a name of {len} bytes"));
        }
        let at = rd(mem, dentry.wrapping_add(l.d_name_name), "dentry->d_name.name")?;
        let mut name = vec![0u8; len];
        read_exact(mem, at, &mut name).map_err(|e| format!("cannot read a dentry name at {at:#x}: {e}"))?;
        total += len + 1;
        if total > 4096 {
            return Err("a path longer than PATH_MAX: the dentry chain loops".into());
        }
        names.push(name);
        dentry = parent;
    }
    Err(format!(
        "a path deeper than {MAX_PATH_STEPS} steps: the dentry chain loops"
    ))
}

fn join_path(names: &[Vec<u8>]) -> String {
    if names.is_empty() {
        return "/".into();
    }
    let mut s = String::new();
    for n in names.iter().rev() {
        s.push('/');
        for &b in n {
            match b {
                b'\n' => s.push_str("\\012"),
                _ => s.push(char::from(b)),
            }
        }
    }
    // Names are bytes; non-ASCII ones come out as Latin-1 here, an approximation GDB only
    // prints.
    s
}

/// What `/proc/PID/maps` shows for one VMA (fs/proc/task_mmu.c `show_map_vma`, 6.1).
pub fn describe(mem: &mut dyn VirtRead, l: &VmaLayout, mm: u64, vma: u64) -> Result<Vma, String> {
    let start = rd(mem, vma.wrapping_add(l.vm_start), "vma->vm_start")?;
    let end = rd(mem, vma.wrapping_add(l.vm_end), "vma->vm_end")?;
    let flags = crate::mem::read_uint(mem, vma.wrapping_add(l.vm_flags.offset), l.vm_flags.size)
        .map_err(|e| format!("cannot read vma->vm_flags: {e}"))?;
    let file = rd(mem, vma.wrapping_add(l.vm_file), "vma->vm_file")?;
    let mut v = Vma {
        start,
        end,
        flags,
        offset: 0,
        dev: 0,
        inode: 0,
        name: String::new(),
    };
    if file != 0 {
        let pgoff = rd(mem, vma.wrapping_add(l.vm_pgoff), "vma->vm_pgoff")?;
        v.offset = pgoff.checked_shl(l.page_shift).unwrap_or(0);
        let inode = rd(mem, file.wrapping_add(l.f_inode), "file->f_inode")?;
        v.inode = rd(mem, inode.wrapping_add(l.i_ino), "inode->i_ino")?;
        let sb = rd(mem, inode.wrapping_add(l.i_sb), "inode->i_sb")?;
        v.dev = crate::mem::read_uint(mem, sb.wrapping_add(l.s_dev.offset), l.s_dev.size.min(4))
            .map_err(|e| format!("cannot read super_block->s_dev: {e}"))?;
        v.name = file_path(mem, l, file)?;
        return Ok(v);
    }
    // A special mapping names itself (mm/mmap.c `special_mapping_name`): [vdso], [vvar]...
    if let (Some(ops_off), Some(priv_off), Some(ops_name), Some(sp_name), Some(func)) = (
        l.vm_ops,
        l.vm_private_data,
        l.ops_name,
        l.special_name,
        l.special_mapping_name,
    ) {
        let ops = rd(mem, vma.wrapping_add(ops_off), "vma->vm_ops")?;
        if ops != 0 && rd(mem, ops.wrapping_add(ops_name), "vm_ops->name")? == func {
            let sm = rd(mem, vma.wrapping_add(priv_off), "vma->vm_private_data")?;
            let name = rd(mem, sm.wrapping_add(sp_name), "vm_special_mapping->name")?;
            let s = read_cstr(mem, name, 64)?;
            v.name = String::from_utf8_lossy(&s).into_owned();
            return Ok(v);
        }
    }
    let mmval =
        |mem: &mut dyn VirtRead, off: Option<u64>| off.and_then(|o| read_u64(mem, mm.wrapping_add(o)).ok());
    if let (Some(start_brk), Some(brk)) = (mmval(mem, l.start_brk), mmval(mem, l.brk)) {
        if start <= brk && end >= start_brk {
            v.name = "[heap]".into();
            return Ok(v);
        }
    }
    if let Some(stack) = mmval(mem, l.start_stack) {
        if start <= stack && end >= stack {
            v.name = "[stack]".into();
        }
    }
    Ok(v)
}

/// Every mapping of the mm at `mm`, in address order.
pub fn mappings(mem: &mut dyn VirtRead, l: &VmaLayout, mm: u64) -> Result<Vec<Vma>, String> {
    vma_addresses(mem, l, mm)?
        .into_iter()
        .map(|vma| describe(mem, l, mm, vma))
        .collect()
}

/// The `/proc/PID/maps` text (fs/proc/task_mmu.c `show_vma_header_prefix`, 6.1): hex fields at
/// least 8 digits wide, `MAJOR:MINOR` of the kernel's dev_t (20-bit minor), the name padded to
/// column 73 (`seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)` then `seq_pad(m, ' ')`).
pub fn maps_text(vmas: &[Vma]) -> String {
    let mut s = String::new();
    for v in vmas {
        let line_start = s.len();
        let perm = |bit: u64, c: char| if v.flags & bit != 0 { c } else { '-' };
        s.push_str(&format!(
            "{:08x}-{:08x} {}{}{}{} {:08x} {:02x}:{:02x} {} ",
            v.start,
            v.end,
            perm(VM_READ, 'r'),
            perm(VM_WRITE, 'w'),
            perm(VM_EXEC, 'x'),
            if v.flags & VM_MAYSHARE != 0 { 's' } else { 'p' },
            v.offset,
            v.dev >> 20,
            v.dev & 0xf_ffff,
            v.inode
        ));
        if !v.name.is_empty() {
            let width = 25 + 8 * 6 - 1;
            while s.len() - line_start < width {
                s.push(' ');
            }
            s.push(' ');
            s.push_str(&v.name);
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tasks::testutil::{FakeLayout, FakeMem};

    const VM: &str = "vm_area_struct";

    /// A 6.1-shaped layout (offsets made up, sizes as on x86_64).
    fn layout() -> FakeLayout {
        let mut l = FakeLayout::default();
        l.m("mm_struct", "mm_mt", 0x40, 16);
        l.m("mm_struct", "start_brk", 0x100, 8);
        l.m("mm_struct", "brk", 0x108, 8);
        l.m("mm_struct", "start_stack", 0x110, 8);
        l.m("maple_tree", "ma_root", 8, 8);
        l.m("maple_range_64", "pivot", 8, 15 * 8);
        l.m("maple_range_64", "slot", 128, 16 * 8);
        l.m("maple_range_64", "meta", 248, 2);
        l.m("maple_arange_64", "pivot", 8, 9 * 8);
        l.m("maple_arange_64", "slot", 80, 10 * 8);
        l.m("maple_arange_64", "meta", 240, 2);
        l.m(VM, "vm_start", 0, 8);
        l.m(VM, "vm_end", 8, 8);
        l.m(VM, "vm_mm", 16, 8);
        l.m(VM, "vm_flags", 32, 8);
        l.m(VM, "vm_pgoff", 40, 8);
        l.m(VM, "vm_file", 48, 8);
        l.m(VM, "vm_ops", 56, 8);
        l.m(VM, "vm_private_data", 64, 8);
        l.m("vm_operations_struct", "name", 24, 8);
        l.m("vm_special_mapping", "name", 0, 8);
        l.symbols
            .insert("special_mapping_name".into(), 0xffff_ffff_8100_1000);
        l.m("file", "f_path.mnt", 16, 8);
        l.m("file", "f_path.dentry", 24, 8);
        l.m("file", "f_inode", 32, 8);
        l.m("inode", "i_ino", 64, 8);
        l.m("inode", "i_sb", 40, 8);
        l.m("super_block", "s_dev", 16, 4);
        l.m("dentry", "d_parent", 24, 8);
        l.m("dentry", "d_name.len", 36, 4);
        l.m("dentry", "d_name.name", 40, 8);
        l.m("vfsmount", "mnt_root", 0, 8);
        l.m("mount", "mnt", 32, 32);
        l.m("mount", "mnt_parent", 16, 8);
        l.m("mount", "mnt_mountpoint", 24, 8);
        l
    }

    const MM: u64 = 0xffff_8880_0100_0000;
    const K: u64 = 0xffff_8880_0200_0000;

    fn node_entry(addr: u64, ty: u64) -> u64 {
        addr | (ty << 3) | 2
    }

    fn put_vma(m: &mut FakeMem, at: u64, start: u64, end: u64, flags: u64) {
        m.put_bytes(at, &[0u8; 128]);
        m.put_u64(at, start);
        m.put_u64(at + 8, end);
        m.put_u64(at + 16, MM);
        m.put_u64(at + 32, flags);
    }

    /// A leaf node at `addr` holding `entries` (first, last, vma), gaps as NULL slots.
    fn put_leaf(m: &mut FakeMem, addr: u64, entries: &[(u64, u64)], max: u64) {
        m.put_bytes(addr, &[0u8; 256]);
        for (i, &(piv, slot)) in entries.iter().enumerate() {
            if i < 15 && piv != max {
                m.put_u64(addr + 8 + 8 * i as u64, piv);
            }
            m.put_u64(addr + 128 + 8 * i as u64, slot);
        }
        m.put_bytes(addr + 248, &[(entries.len() - 1) as u8]);
    }

    /// Two leaves under an arange root: [0x400000-0x401000 r-x file /bin/busybox], heap, stack,
    /// vdso.
    fn world() -> (FakeMem, u64) {
        let mut m = FakeMem::default();
        let (v1, v2, v3, v4) = (K, K + 0x100, K + 0x200, K + 0x300);
        put_vma(&mut m, v1, 0x400000, 0x401000, VM_READ | VM_EXEC);
        put_vma(&mut m, v2, 0x1000000, 0x1021000, VM_READ | VM_WRITE);
        put_vma(&mut m, v3, 0x7ffd0000, 0x7fff0000, VM_READ | VM_WRITE);
        put_vma(
            &mut m,
            v4,
            0x7fff1000,
            0x7fff3000,
            VM_READ | VM_EXEC | VM_MAYSHARE,
        );
        m.put_u64(MM + 0x100, 0x1000000);
        m.put_u64(MM + 0x108, 0x1010000);
        m.put_u64(MM + 0x110, 0x7ffef000);
        // v1's file: /bin/busybox on the root mount, dev 00:02, inode 9, offset 1 page.
        let (file, inode, sb, mnt, root, bin, bb) = (
            K + 0x1000,
            K + 0x1100,
            K + 0x1200,
            K + 0x1300,
            K + 0x1400,
            K + 0x1500,
            K + 0x1600,
        );
        m.put_u64(v1 + 48, file);
        m.put_u64(v1 + 40, 1);
        m.put_u64(file + 16, mnt + 32);
        m.put_u64(file + 24, bb);
        m.put_u64(file + 32, inode);
        m.put_u64(inode + 64, 9);
        m.put_u64(inode + 40, sb);
        m.put_u32(sb + 16, 2);
        m.put_u64(mnt + 32, root); // vfsmount.mnt_root
        m.put_u64(mnt + 16, mnt); // its own parent: the root mount
        for (d, parent, name) in [(root, root, "/"), (bin, root, "bin"), (bb, bin, "busybox")] {
            m.put_u64(d + 24, parent);
            m.put_u32(d + 36, name.len() as u32);
            m.put_u64(d + 40, d + 0x80);
            m.put_bytes(d + 0x80, name.as_bytes());
        }
        // v4: a special mapping named [vdso].
        let (ops, sm) = (K + 0x2000, K + 0x2100);
        m.put_u64(v4 + 56, ops);
        m.put_u64(ops + 24, 0xffff_ffff_8100_1000);
        m.put_u64(v4 + 64, sm);
        m.put_u64(sm, sm + 0x40);
        m.put_bytes(sm + 0x40, b"[vdso]\0");
        // Leaves: [0..0x3fffff NULL, v1, gap..0xffffff, v2, gap] and [v3, gap, v4, rest].
        let (root_n, l1, l2) = (K + 0x10000, K + 0x10100, K + 0x10200);
        put_leaf(
            &mut m,
            l1,
            &[
                (0x3fffff, 0),
                (0x400fff, v1),
                (0xffffff, 0),
                (0x1020fff, v2),
                (0x7ffcffff, 0),
            ],
            0x7ffcffff,
        );
        put_leaf(
            &mut m,
            l2,
            &[(0x7ffeffff, v3), (0x7fff0fff, 0), (0x7fff2fff, v4), (u64::MAX, 0)],
            u64::MAX,
        );
        m.put_bytes(root_n, &[0u8; 256]);
        m.put_u64(root_n + 8, 0x7ffcffff);
        m.put_u64(root_n + 80, node_entry(l1, MAPLE_LEAF_64));
        m.put_u64(root_n + 88, node_entry(l2, MAPLE_LEAF_64));
        m.put_bytes(root_n + 240, &[1]);
        m.put_u64(MM + 0x40 + 8, node_entry(root_n, MAPLE_ARANGE_64));
        (m, root_n)
    }

    #[test]
    fn walks_a_maple_tree_and_prints_maps_as_the_kernel() {
        let (mut m, _) = world();
        let l = VmaLayout::new(&layout(), 12).unwrap();
        let v = mappings(&mut m, &l, MM).unwrap();
        let text = maps_text(&v);
        let want = format!(
            "00400000-00401000 r-xp 00001000 00:02 9{}/bin/busybox\n\
             01000000-01021000 rw-p 00000000 00:00 0{}[heap]\n\
             7ffd0000-7fff0000 rw-p 00000000 00:00 0{}[stack]\n\
             7fff1000-7fff3000 r-xs 00000000 00:00 0{}[vdso]\n",
            " ".repeat(34),
            " ".repeat(34),
            " ".repeat(34),
            " ".repeat(34)
        );
        assert_eq!(text, want);
        // A nameless mapping ends with the space after the inode, as in the kernel's output.
        let anon = Vma {
            name: String::new(),
            ..v[1].clone()
        };
        assert_eq!(maps_text(&[anon]), "01000000-01021000 rw-p 00000000 00:00 0 \n");
        let big = Vma {
            start: 0x7f12_3456_7000,
            end: 0x7f12_3456_8000,
            dev: (0xfe << 20) | 1,
            inode: 247030,
            ..v[0].clone()
        };
        let line = maps_text(&[big]);
        assert_eq!(line.find('/'), Some(73), "{line}");
        assert!(line.starts_with("7f1234567000-7f1234568000 r-xp 00001000 fe:01 247030 "));
    }

    #[test]
    fn crossing_a_mount_point_prepends_the_parent_mounts_path() {
        let (mut m, _) = world();
        // Mount a filesystem at /bin: busybox's dentry is now the child mount's root's child.
        let (child, croot, root_mnt, bin) = (K + 0x3000, K + 0x3100, K + 0x1300, K + 0x1500);
        m.put_u64(child + 32, croot);
        m.put_u64(child + 16, root_mnt);
        m.put_u64(child + 24, bin);
        m.put_u64(croot + 24, croot);
        m.put_u64(K + 0x1600 + 24, croot);
        m.put_u64(K + 0x1000 + 16, child + 32);
        let l = VmaLayout::new(&layout(), 12).unwrap();
        assert_eq!(file_path(&mut m, &l, K + 0x1000).unwrap(), "/bin/busybox");
        // A dentry chain that loops ends in an error.
        m.put_u64(K + 0x1600 + 24, K + 0x1700);
        m.put_u64(K + 0x1700 + 24, K + 0x1600);
        m.put_u32(K + 0x1700 + 36, 1);
        m.put_u64(K + 0x1700 + 40, K + 0x1780);
        m.put_bytes(K + 0x1780, b"x");
        assert!(file_path(&mut m, &l, K + 0x1000).is_err());
    }

    #[test]
    fn the_old_vm_next_list_is_walked_when_there_is_no_maple_tree() {
        let mut fl = layout();
        fl.members.remove(&("mm_struct".into(), "mm_mt".into()));
        fl.m("mm_struct", "mmap", 0x48, 8);
        fl.m(VM, "vm_next", 72, 8);
        let (mut m, _) = world();
        m.put_u64(MM + 0x48, K);
        m.put_u64(K + 72, K + 0x100);
        let l = VmaLayout::new(&fl, 12).unwrap();
        assert_eq!(vma_addresses(&mut m, &l, MM).unwrap(), vec![K, K + 0x100]);
        // A loop back to the first VMA is out of order: an error, not a hang.
        m.put_u64(K + 0x100 + 72, K);
        assert!(vma_addresses(&mut m, &l, MM).is_err());
    }

    #[test]
    fn cyclic_or_garbage_trees_end_in_an_error() {
        let l = VmaLayout::new(&layout(), 12).unwrap();
        // The root's second child is the root itself: each level repeats, so depth bounds it.
        let (mut m, root) = world();
        m.put_u64(root + 88, node_entry(root, MAPLE_ARANGE_64));
        let e = vma_addresses(&mut m, &l, MM).unwrap_err();
        assert!(e.contains("deeper") || e.contains("outside"), "{e}");
        // A node of an unknown type.
        let (mut m, root) = world();
        m.put_u64(MM + 0x48, node_entry(root, 7));
        assert!(vma_addresses(&mut m, &l, MM).is_err());
        // A VMA stored under a range that is not its own, or belonging to another mm.
        let (mut m, _) = world();
        m.put_u64(K + 8, 0x402000);
        assert!(vma_addresses(&mut m, &l, MM).is_err());
        let (mut m, _) = world();
        m.put_u64(K + 0x100 + 16, MM + 0x1000);
        assert!(vma_addresses(&mut m, &l, MM).is_err());
        // Pivots that go backwards.
        let (mut m, _) = world();
        m.put_u64(K + 0x10100 + 16, 0x100);
        assert!(vma_addresses(&mut m, &l, MM).is_err());
        // Unreadable nodes, and seeded garbage: always an answer, never a panic or a hang.
        let (mut m, _) = world();
        m.put_u64(MM + 0x48, node_entry(K + 0x900000, MAPLE_LEAF_64));
        assert!(vma_addresses(&mut m, &l, MM).is_err());
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200 {
            let (mut m, root) = world();
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = root + (seed % 0x300) / 8 * 8;
                let v = match seed % 3 {
                    0 => node_entry(root + 0x100 * (seed >> 60), seed & 3),
                    1 => seed,
                    _ => 0,
                };
                m.put_u64(at, v);
            }
            let _ = mappings(&mut m, &l, MM);
        }
    }
}
