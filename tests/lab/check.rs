//! `kmemd --check` in the lab's kernels: the lines a user sees on a real board, each checked
//! against what the guest says of itself.

use crate::guest::{guest, Arch, ARCHES};

/// Status word and text of the line for item `name`.
fn line<'a>(out: &'a str, name: &str) -> (&'a str, &'a str) {
    let l = out
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{out}"));
    (l.split_whitespace().next().unwrap_or(""), l)
}

/// Link-time `_text` (x86_64: __START_KERNEL_map + CONFIG_PHYSICAL_START) and arm64's `_stext`
/// (KIMAGE_VADDR + the 64 KiB head, arch/arm64/include/asm/memory.h, 6.1): the KASLR oracle.
fn kaslr_from_kallsyms(g: &crate::guest::Guest) -> u64 {
    match g.arch {
        Arch::X86_64 => g.ksym("_text") - 0xffff_ffff_8100_0000,
        Arch::Aarch64 => g.ksym("_stext") - (0xffff_8000_0800_0000 + 0x1_0000),
    }
}

#[test]
fn check_passes_with_every_capability_in_debian_kernels() {
    for arch in ARCHES {
        let g = guest(arch);
        let _slots = g.slots();
        let o = g.run("kmemd --check");
        assert_eq!(o.code, 0, "{}:\n{}", arch.name(), o.text());
        let out = &o.stdout;
        for item in [
            "bpf",
            "read",
            "kallsyms",
            "kaslr",
            "vmcoreinfo",
            "watch-slots",
            "watch-hit",
            "watch-exec",
            "kcore",
        ] {
            assert_eq!(line(out, item).0, "OK", "{}: {item}:\n{out}", arch.name());
        }
        let last = out.lines().last().unwrap_or("");
        assert_eq!(
            last, "kmemd --check: 9 ok, 0 missing, 0 failed: kernel reads work",
            "{out}"
        );
        // KASLR is on in Debian's kernels; the offset --check reports is the guest's own.
        let off = kaslr_from_kallsyms(g);
        assert_ne!(off, 0, "{}: KASLR is off in the lab guest", arch.name());
        assert!(
            line(out, "kaslr").1.contains(&format!("offset {off:#x} ")),
            "{}",
            line(out, "kaslr").1
        );
        // amd64 lists data symbols in kallsyms, arm64 does not: the line says which.
        let k = line(out, "kallsyms").1;
        match arch {
            Arch::X86_64 => assert!(k.contains("with data symbols"), "{k}"),
            Arch::Aarch64 => assert!(k.contains("text only"), "{k}"),
        }
        let v = line(out, "vmcoreinfo").1;
        if arch == Arch::X86_64 {
            assert!(
                v.contains(&format!("init_uts_ns at {:#x}", g.ksym("init_uts_ns"))),
                "{v}"
            );
        }
        let slots = line(out, "watch-slots").1;
        assert!(slots.contains("4 free slots on CPU 0"), "{slots}");
        let exec = line(out, "watch-exec").1;
        let getpid = match arch {
            Arch::X86_64 => "__x64_sys_getpid",
            Arch::Aarch64 => "__arm64_sys_getpid",
        };
        assert!(exec.contains(getpid), "{exec}");
    }
}
