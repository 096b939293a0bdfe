//! The BTF reader (kernel type information from a vmlinux `.BTF` section or
//! /sys/kernel/btf/vmlinux): arbitrary blobs, then the lookups kmemd makes (types, structs,
//! members, sizes), which must terminate whatever cycles the type graph has.
#![no_main]

use kmemd::kernel::btf::Btf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(btf) = Btf::parse(data.to_vec()) else {
        return;
    };
    let n = u32::try_from(btf.type_count()).unwrap_or(u32::MAX);
    for id in 0..n.min(64).saturating_add(1) {
        let _ = btf.get(id);
        if let Some(r) = btf.resolve(id) {
            assert!(btf.get(r).is_some() || r == 0, "resolved to a missing type {r}");
        }
        let _ = btf.size_of(id);
        let _ = btf.member_path(id, "a.b.c");
    }
    for (s, m) in [
        ("task_struct", "pid"),
        ("struct list_head", "next"),
        ("", ""),
        ("a", "b.c"),
    ] {
        let _ = btf.find_struct(s);
        let _ = btf.size_of_name(s);
        let _ = btf.member_by_name(s, m);
    }
    let _ = btf.str_at(0);
    let _ = btf.str_at(u32::MAX);
});
