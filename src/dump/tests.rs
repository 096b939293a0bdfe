//! Tests of format detection and the `Dump` facade over synthetic files of every format.

use super::*;
use crate::dump::elf::tests::{build as build_elf, pattern, Load};
use crate::dump::flat::tests::flatten;
use crate::dump::kdump::tests::{build as build_kdump, Page, Spec};
use crate::dump::notes::tests::{note, prstatus, qemu_cpu_state};
use crate::dump::testutil::*;

const X86_VMCI: &[u8] = b"OSRELEASE=6.1.0-28-amd64\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff9d20a000\n\
KERNELOFFSET=1c000000\nNUMBER(phys_base)=-598736896\n";
const ARM_VMCI: &[u8] = b"OSRELEASE=6.1.0-28-arm64\nPAGESIZE=4096\nNUMBER(VA_BITS)=48\n\
NUMBER(kimage_voffset)=0xffff7fffc7e00000\nKERNELOFFSET=3a00000\n";

fn open(bytes: Vec<u8>) -> Result<Dump, FormatError> {
    Dump::from_source(Box::new(bytes))
}

fn x86_notes() -> Vec<u8> {
    let mut n = note("CORE", 1, &prstatus(Arch::X86_64, 0, 100));
    n.extend(note("QEMU", 0, &qemu_cpu_state(0x10_0000, 0x20)));
    n.extend(note("CORE", 1, &prstatus(Arch::X86_64, 42, 200)));
    n.extend(note("QEMU", 0, &qemu_cpu_state(0x20_0000, 0x20)));
    n.extend(note("VMCOREINFO", 0, X86_VMCI));
    n
}

fn x86_elf() -> Vec<u8> {
    let loads = [
        Load {
            paddr: 0,
            data: pattern(1, 0x4000),
            tail: 0,
        },
        Load {
            paddr: 0x10_0000,
            data: pattern(2, 0x2000),
            tail: 0x1000,
        },
    ];
    build_elf(62, &x86_notes(), &loads, true)
}

fn read_exact(d: &Dump, paddr: u64, len: usize) -> Result<Vec<u8>, MemError> {
    let mut out = vec![0u8; len];
    let mut done = 0;
    while done < len {
        done += d.read_phys(
            PhysAddr(paddr + done as u64),
            out.get_mut(done..).unwrap_or_default(),
        )?;
    }
    Ok(out)
}

#[test]
fn elf_dump_exposes_arch_cpus_vmcoreinfo_and_memory() {
    let d = ok(open(x86_elf()));
    assert_eq!(d.arch(), Arch::X86_64);
    assert_eq!(d.format_name(), "ELF vmcore");
    assert_eq!(d.cpus().len(), 2);
    assert_eq!(
        d.cpus().get(1).map(|c| (c.pid, c.regs.first().copied(), c.cr3)),
        Some((42, Some(200), Some(0x20_0000)))
    );
    assert_eq!(d.vmcoreinfo().osrelease(), Some("6.1.0-28-amd64"));
    assert_eq!(d.kaslr_offset(), Some(0x1c00_0000));
    assert_eq!(d.crashing_cpu(), None);
    assert_eq!(d.page_size(), 4096);
    assert_eq!(
        ok(read_exact(&d, 0x3ff0, 0x10)),
        pattern(1, 0x4000).get(0x3ff0..).unwrap_or_default()
    );
    assert!(err(read_exact(&d, 0x10_2000, 8)).contains("p_filesz < p_memsz"));
    assert_eq!(d.phys_ranges(), vec![(0, 0x4000), (0x10_0000, 0x10_2000)]);
    let info = d.info_text();
    for want in [
        "ELF vmcore",
        "x86_64",
        "6.1.0-28-amd64",
        "0x1c000000",
        "CPU 1 pr_pid 42",
        "CPU 0 idle",
        "2 range(s)",
    ] {
        assert!(info.contains(want), "info lacks {want:?}:\n{info}");
    }
}

fn arm_kdump_spec() -> Spec {
    let mut notes = note("CORE", 1, &prstatus(Arch::Aarch64, 7, 1000));
    notes.extend(note("CORE", 2, &[0u8; 528]));
    Spec {
        block_size: 65536,
        machine: "Unknown",
        vmcoreinfo: ARM_VMCI.to_vec(),
        notes,
        pages: vec![
            (1, Page::Stored(0, pattern(9, 65536))),
            (3, Page::Excluded),
            (4, Page::Stored(0, pattern(4, 65536))),
        ],
        ..Spec::default()
    }
}

#[test]
fn qemu_style_kdump_takes_its_arch_from_the_notes() {
    let d = ok(open(build_kdump(&arm_kdump_spec())));
    assert_eq!(
        d.arch(),
        Arch::Aarch64,
        "machine is \"Unknown\" in QEMU kdump headers"
    );
    assert_eq!(
        d.cpus()
            .first()
            .map(|c| (c.pid, c.regs.len(), c.regs.get(32).copied())),
        Some((7, 34, Some(1032)))
    );
    assert_eq!(d.kaslr_offset(), Some(0x3a0_0000));
    assert_eq!(
        d.page_size(),
        4096,
        "VMCOREINFO page size, not the 64 KiB block size"
    );
    assert_eq!(
        ok(read_exact(&d, 0x1_0010, 32)),
        pattern(9, 65536).get(0x10..0x30).unwrap_or_default()
    );
    assert!(err(read_exact(&d, 0x3_0000, 8)).contains("excluded"));
    assert!(d.format_name().starts_with("kdump-compressed, "));
    // Without notes the arch comes from VMCOREINFO keys; with neither, a clear error.
    let d = ok(open(build_kdump(&Spec {
        notes: Vec::new(),
        ..arm_kdump_spec()
    })));
    assert_eq!(d.arch(), Arch::Aarch64);
    assert!(d.cpus().is_empty());
    let none = build_kdump(&Spec {
        notes: Vec::new(),
        vmcoreinfo: b"PAGESIZE=4096\n".to_vec(),
        ..arm_kdump_spec()
    });
    assert!(err(open(none)).contains("architecture"));
}

/// Splits a file into chunks and flattens them in a scrambled order, as a streaming writer might.
fn scrambled_flat(file: &[u8]) -> Vec<u8> {
    let chunks: Vec<(u64, &[u8])> = file
        .chunks(3000)
        .enumerate()
        .map(|(i, c)| ((i * 3000) as u64, c))
        .collect();
    let mut order: Vec<(u64, &[u8])> = chunks.iter().skip(1).step_by(2).copied().collect();
    order.extend(chunks.iter().step_by(2).copied().rev());
    flatten(&order, true)
}

#[test]
fn flattened_kdump_and_elf_read_like_the_originals() {
    let kd = build_kdump(&arm_kdump_spec());
    let flat = ok(open(scrambled_flat(&kd)));
    let plain = ok(open(kd));
    assert!(flat.format_name().contains("(flattened)"));
    for paddr in [0x1_0000u64, 0x1_fff0, 0x4_0000, 0x4_8000] {
        assert_eq!(
            ok(read_exact(&flat, paddr, 16)),
            ok(read_exact(&plain, paddr, 16))
        );
    }
    let elf = x86_elf();
    let flat = ok(open(scrambled_flat(&elf)));
    assert_eq!(flat.arch(), Arch::X86_64);
    assert_eq!(ok(read_exact(&flat, 0x10_0000, 0x2000)), pattern(2, 0x2000));
}

#[test]
fn diskdump_current_cpu_names_the_crashing_cpu() {
    let mut notes = note("CORE", 1, &prstatus(Arch::X86_64, 1, 0));
    notes.extend(note("CORE", 1, &prstatus(Arch::X86_64, 2, 0)));
    let spec = Spec {
        notes,
        pages: vec![(0, Page::Stored(0, pattern(0, 4096)))],
        ..Spec::default()
    };
    let mut file = build_kdump(&spec);
    put_u32(&mut file, 456, 1);
    assert_eq!(
        ok(open(file.clone())).crashing_cpu(),
        None,
        "makedumpfile leaves current_cpu 0"
    );
    put(&mut file, 0, b"DISKDUMP");
    assert_eq!(ok(open(file.clone())).crashing_cpu(), Some(1));
    put_u32(&mut file, 456, 9);
    assert_eq!(ok(open(file)).crashing_cpu(), None, "out of range");
}

#[test]
fn bad_files_fail_with_one_clear_line() {
    use crate::mem::bytes::FormatErrorKind::{Io, Truncated, Unsupported};
    let cases: Vec<(Vec<u8>, &str, _)> = vec![
        (Vec::new(), "empty", Truncated),
        (
            b"hello world, not a dump at all".to_vec(),
            "not a crash dump",
            Unsupported,
        ),
        (
            (0..5000u32)
                .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
                .collect(),
            "not a crash dump",
            Unsupported,
        ),
        (vec![0x1f, 0x8b, 8, 0, 0, 0], "gunzip", Unsupported),
        (b"\x7fELF".to_vec(), "truncated", Truncated),
        (b"KDUMP   ".to_vec(), "truncated", Truncated),
        (flatten(&[(0, b"junk")], true), "neither", Unsupported),
    ];
    for (bytes, want, kind) in cases {
        let r = open(bytes);
        assert_eq!(r.as_ref().err().map(|e| e.kind), Some(kind), "{want}");
        let e = err(r);
        assert!(e.contains(want), "{e:?} should mention {want:?}");
        assert!(!e.contains('\n'), "one line: {e:?}");
    }
    assert_eq!(format_kind(Dump::open("/nonexistent/vmcore")), Io);
    let e = err(Dump::open("/nonexistent/vmcore"));
    assert!(e.contains("/nonexistent/vmcore"), "{e}");
}

#[test]
fn every_prefix_of_every_format_opens_or_fails_cleanly() {
    let kd = build_kdump(&arm_kdump_spec());
    let files = [x86_elf(), scrambled_flat(&kd), kd];
    for file in files {
        for cut in (0..file.len()).step_by(97).chain([file.len()]) {
            if let Ok(d) = open(file.get(..cut).unwrap_or_default().to_vec()) {
                for (s, _) in d.phys_ranges() {
                    let _ = read_exact(&d, s, 64);
                }
                let _ = d.info_text();
            }
        }
    }
}

/// Virtual reads fill the buffer across pages, in one physical read per contiguous run, up to
/// the first byte that cannot be read; a read that starts there is that page's error.
#[test]
fn virtual_reads_fill_the_buffer_up_to_the_first_unreadable_page() {
    use crate::arch::walk::tests::Builder;
    use crate::arch::walk::{PagingForm, PteFormat};
    let mut b = Builder::new(12, 48, |pa| pa | 0x63, |pa, _| pa | 0x63);
    let va = 0xffff_ffff_8100_0000u64;
    // Virtual pages 0..3 map physical 0x40_0000.., page 3 maps 0x80_0000, page 4 nothing.
    for (i, pa) in [0x40_0000u64, 0x40_1000, 0x40_2000, 0x80_0000]
        .into_iter()
        .enumerate()
    {
        b.map(va + i as u64 * 0x1000, pa, 0);
        b.mem.write(pa, &pattern(i as u8 + 10, 0x1000));
    }
    let want: Vec<u8> = (0..4u8).flat_map(|i| pattern(i + 10, 0x1000)).collect();
    let loads: Vec<Load> = b
        .mem
        .chunks()
        .into_iter()
        .map(|(paddr, data)| Load {
            paddr,
            data: data.to_vec(),
            tail: 0,
        })
        .collect();
    let d = ok(open(build_elf(62, &x86_notes(), &loads, true)));
    let paging = Paging {
        form: PagingForm::new(PteFormat::X86_64, 12, 48).unwrap_or_else(|e| panic!("{e}")),
        root: PhysAddr(b.root),
    };
    let mut buf = vec![0u8; 0x8000];
    assert_eq!(ok(read_virt(&d, &paging, VirtAddr(va), &mut buf)), 0x4000);
    assert!(buf.get(..0x4000) == Some(&want[..]));
    assert_eq!(
        ok(read_virt(&d, &paging, VirtAddr(va + 0x123), &mut buf[..0x2000])),
        0x2000
    );
    assert!(buf.get(..0x2000) == want.get(0x123..0x2123));
    let e = read_virt(&d, &paging, VirtAddr(va + 0x4000), &mut buf).unwrap_err();
    assert_eq!(e.kind, crate::mem::MemErrorKind::NotPresent { level: 0 }, "{e}");
    assert_eq!(e.addr, va + 0x4000);
}
