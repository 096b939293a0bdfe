//! Kernel knowledge without a vmlinux (issue 9) on the real dump fixtures
//! (tests/fixtures/make-fixtures.sh: Debian 6.1 kernels in QEMU) and on this machine's kernel:
//! kallsyms decoded from dump memory must match the guest's own /proc/kallsyms lines, and BTF
//! found in memory must give task_struct's layout.

mod common;

use common::*;
use kmemd::kernel::{kallsyms, scan};
use kmemd::mem::VirtRead;
use kmemd::target::dump::DumpTarget;
use std::path::PathBuf;

/// One fixture variant: its directory, arch and `ksym NAME ADDR` lines.
type Variant = (PathBuf, String, Vec<(String, u64)>);

/// Every variant, or None (skip) outside CI without fixtures.
fn fixtures() -> Option<Vec<Variant>> {
    load_fixtures(|dir| {
        let mut arch = String::new();
        let mut ksyms = Vec::new();
        for line in manifest(dir) {
            let w: Vec<&str> = line.iter().map(String::as_str).collect();
            match w.as_slice() {
                ["arch", a] => arch = a.to_string(),
                ["ksym", name, addr] => ksyms.push((name.to_string(), hex(addr))),
                _ => {}
            }
        }
        assert!(!ksyms.is_empty(), "{}: manifest has no ksym lines", dir.display());
        (dir.to_path_buf(), arch, ksyms)
    })
}

#[test]
fn kallsyms_decoded_from_dumps_match_the_guest() {
    let Some(fx) = fixtures() else { return };
    for (dir, arch, ksyms) in fx {
        let mut t = DumpTarget::open(&dir.join("vmcore.elf")).expect("open dump");
        let vmci = t.dump().vmcoreinfo().clone();
        let syms = kallsyms::decode(&mut t as &mut dyn VirtRead, &vmci).expect("decode kallsyms");
        let floor = if arch == "x86_64" { 50_000 } else { 20_000 };
        assert!(
            syms.len() > floor,
            "{}: only {} symbols",
            dir.display(),
            syms.len()
        );
        for (name, addr) in &ksyms {
            let found: Vec<u64> = syms.iter().filter(|s| &s.name == name).map(|s| s.addr).collect();
            assert!(
                found.contains(addr),
                "{}: {name} decoded at {found:x?}, guest's /proc/kallsyms says {addr:#x}",
                dir.display()
            );
        }
        // VMCOREINFO's own SYMBOL() lines are an independent check on the addresses.
        for (k, v) in vmci.entries() {
            let Some(name) = k.strip_prefix("SYMBOL(").and_then(|s| s.strip_suffix(')')) else {
                continue;
            };
            // SYMBOL(mem_section) is the pointer's value under SPARSEMEM_EXTREME
            // (VMCOREINFO_SYMBOL_ARRAY of a pointer, kernel/crash_core.c), not its address.
            if name == "mem_section" {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(v, 16) else {
                continue;
            };
            if let Some(s) = syms.iter().find(|s| s.name == name) {
                assert_eq!(
                    s.addr,
                    addr,
                    "{}: {name} disagrees with VMCOREINFO",
                    dir.display()
                );
            }
        }
        eprintln!(
            "{}: {} symbols, every ksym line matches",
            dir.display(),
            syms.len()
        );
    }
}

#[test]
fn kernel_info_from_dumps_without_vmlinux() {
    let Some(fx) = fixtures() else { return };
    for (dir, arch, ksyms) in fx {
        // The knowledge `kmemd -c` builds (DumpTarget::kernel_info); a second view of the same
        // dump reads memory beside it.
        let mut target = DumpTarget::open(&dir.join("vmcore.elf")).expect("open dump");
        let mut t = DumpTarget::open(&dir.join("vmcore.elf")).expect("open dump");
        let k = target.kernel_info();
        eprintln!(
            "{}: sources {:?}\n  missing {:?}",
            dir.display(),
            k.sources(),
            k.missing()
        );
        assert!(k.btf().is_some(), "{}: no BTF: {:?}", dir.display(), k.missing());
        let comm = k.member("task_struct", "comm").expect("task_struct.comm");
        assert_eq!(comm.size, 16, "TASK_COMM_LEN");
        let pid = k.member("task_struct", "pid").expect("task_struct.pid");
        assert_eq!(pid.size, 4, "pid_t");
        let tasks = k.member("task_struct", "tasks").expect("task_struct.tasks");
        assert_eq!(tasks.size, 16, "list_head");
        assert_eq!(Some(16), k.size_of("list_head"));
        assert!(k.size_of("task_struct").unwrap() > comm.offset() + 16);
        for name in ["init_task", "prb", "modules"] {
            assert!(
                k.symbol(name).is_some(),
                "{}: {name} not found: {:?}",
                dir.display(),
                k.missing()
            );
        }
        for (name, addr) in &ksyms {
            assert_eq!(k.symbol(name), Some(*addr), "{}: {name}", dir.display());
            let (n, off) = k.symbolize(*addr + 1).expect("symbolize");
            assert_eq!(off, 1, "{}: {name}+1 symbolized as {n}+{off}", dir.display());
        }
        // init_task's comm reads "swapper/0" through the BTF offset (init/init_task.c names it
        // "swapper"; init_idle renames the boot CPU's idle task "swapper/0").
        let init = k.symbol("init_task").unwrap();
        // The image search must find what kallsyms says (x86_64 has data symbols) and be what
        // arm64 uses; checked on every variant.
        let btf = k.btf().unwrap();
        let text = k.symbol("_stext").unwrap();
        let from = k.symbol("_etext").unwrap();
        let found = scan::scan_image(
            &mut t as &mut dyn VirtRead,
            btf,
            text,
            from,
            from + scan::MAX_SPAN,
            true,
            true,
        )
        .expect("scan");
        assert_eq!(found.init_task, Some(init), "{}", dir.display());
        assert_eq!(found.modules, k.symbol("modules"), "{}", dir.display());
        if arch == "x86_64" {
            assert!(
                k.sources().iter().all(|s| !s.contains("searching")),
                "kallsyms has them"
            );
        }
        // The module the guest loaded is first on the list.
        let list = k.member("module", "list").unwrap().offset();
        let name_off = k.member("module", "name").unwrap().offset();
        let first = kmemd::mem::read_u64(&mut t as &mut dyn VirtRead, found.modules.unwrap()).unwrap();
        let mut name = [0u8; 12];
        kmemd::mem::read_exact(&mut t as &mut dyn VirtRead, first - list + name_off, &mut name).unwrap();
        assert_eq!(&name, b"qemu_fw_cfg\0", "{}", dir.display());
        let mut name = [0u8; 16];
        kmemd::mem::read_exact(&mut t as &mut dyn VirtRead, init + comm.offset(), &mut name).unwrap();
        assert!(
            name.starts_with(b"swapper"),
            "{}: init_task.comm = {name:?}",
            dir.display()
        );
        assert!(
            k.missing().is_empty(),
            "{}: missing {:?}",
            dir.display(),
            k.missing()
        );
    }
}

/// A makedumpfile `-d 31` dump (free, cache and user pages left out) still holds the kernel
/// image, so it gives the same symbols, BTF and image search results as the full ELF dump.
#[test]
fn filtered_kdump_gives_the_same_kernel_info() {
    let Some(fx) = fixtures() else { return };
    for (dir, _arch, _) in fx {
        let path = dir.join("mdf-zlib-d31.kdump");
        if !path.exists() {
            assert!(!in_ci(), "{} missing", path.display());
            continue;
        }
        let mut full = DumpTarget::open(&dir.join("vmcore.elf")).expect("open dump");
        let a = full.kernel_info();
        let mut filtered = DumpTarget::open(&path).expect("open kdump");
        let b = filtered.kernel_info();
        assert_eq!(a.symbols().len(), b.symbols().len(), "{}", path.display());
        assert!(
            a.symbols().symbols().eq(b.symbols().symbols()),
            "{}",
            path.display()
        );
        for name in ["init_task", "modules", "prb", "_stext"] {
            assert_eq!(a.symbol(name), b.symbol(name), "{}: {name}", path.display());
        }
        assert_eq!(a.member("task_struct", "comm"), b.member("task_struct", "comm"));
        assert_eq!(a.size_of("task_struct"), b.size_of("task_struct"));
        assert!(b.missing().is_empty(), "{}: {:?}", path.display(), b.missing());
    }
}

/// A dump session keeps only kmemd's own kallsyms names (issue 16) and decodes the rest from a
/// second handle of the file when first asked: every name the guest's /proc/kallsyms lists
/// (manifest `ksym` lines) still resolves to the guest's address, and each such address is named
/// as the start of a symbol that resolves back to it, in every variant and for a compressed dump.
#[test]
fn a_dump_session_decodes_the_rest_of_kallsyms_when_asked() {
    let Some(fx) = fixtures() else { return };
    for (dir, _, ksyms) in fx {
        for file in ["vmcore.elf", "mdf-zlib.kdump"] {
            let what = format!("{}/{file}", dir.display());
            let mut t = DumpTarget::open(&dir.join(file)).expect("open dump");
            let k = t.kernel_info();
            assert!(
                !k.resolver().table_at_hand(),
                "{what}: the whole kallsyms table was decoded at start"
            );
            for (name, addr) in &ksyms {
                assert_eq!(k.symbol(name), Some(*addr), "{what}: {name}");
            }
            for (_, addr) in &ksyms {
                let (name, off) = k
                    .symbolize(*addr)
                    .unwrap_or_else(|| panic!("{what}: nothing named at {addr:#x}"));
                assert_eq!(off, 0, "{what}: {addr:#x} is {name}+{off:#x}");
                assert_eq!(k.symbol(&name), Some(*addr), "{what}: {addr:#x} named {name}");
            }
            assert!(
                k.resolver().table_at_hand(),
                "{what}: an address was named without the whole table"
            );
        }
    }
}
