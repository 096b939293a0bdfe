//! What the kernel's layout knowledge answers (BTF, kallsyms, VMCOREINFO): symbols, struct
//! members, type sizes. The task and module walks ask through [`Layout`], so their tests answer
//! from a table.

use super::KernelInfo;

/// A struct member: byte offset and size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u64,
    pub size: u64,
}

/// What the kernel's layout knowledge (BTF, kallsyms, VMCOREINFO) answers. Implemented by
/// `KernelInfo`; tests implement it with a table.
pub trait Layout {
    /// A kernel symbol's runtime address.
    fn symbol(&self, name: &str) -> Option<u64>;
    /// `member(struct, member)`, looking through anonymous unions and structs.
    fn member(&self, st: &str, member: &str) -> Option<Field>;
    /// Size in bytes of a struct (or other named type).
    fn size_of(&self, ty: &str) -> Option<u64>;
}

impl Layout for KernelInfo {
    fn symbol(&self, name: &str) -> Option<u64> {
        KernelInfo::symbol(self, name)
    }
    fn member(&self, st: &str, member: &str) -> Option<Field> {
        let m = KernelInfo::member(self, st, member)?;
        Some(Field {
            offset: m.offset(),
            size: m.size,
        })
    }
    fn size_of(&self, ty: &str) -> Option<u64> {
        KernelInfo::size_of(self, ty)
    }
}

/// Types alone, from one BTF blob: no symbols. What a live session's first task walk needs
/// before the kernel's symbols are read (target/live.rs).
pub struct BtfLayout<'a>(pub &'a super::btf::Btf);

impl Layout for BtfLayout<'_> {
    fn symbol(&self, _name: &str) -> Option<u64> {
        None
    }
    fn member(&self, st: &str, member: &str) -> Option<Field> {
        let m = self.0.member_by_name(st, member)?;
        Some(Field {
            offset: m.offset(),
            size: m.size,
        })
    }
    fn size_of(&self, ty: &str) -> Option<u64> {
        self.0.size_of_name(ty)
    }
}

/// `__per_cpu_offset[cpu]`: where CPU `cpu`'s copy of the per-CPU variables starts, so that a
/// per-CPU symbol's copy is at the symbol plus this (include/asm-generic/percpu.h; x86_64 links the
/// symbols at 0, arm64 at their section: the sum is the address either way). None without the
/// symbol or when the array cannot be read.
pub fn per_cpu_offset(mem: &mut dyn crate::mem::VirtRead, k: &dyn Layout, cpu: u32) -> Option<u64> {
    let offsets = k.symbol("__per_cpu_offset")?;
    let at = offsets.checked_add(u64::from(cpu).checked_mul(8)?)?;
    crate::mem::read_u64(mem, at).ok()
}
