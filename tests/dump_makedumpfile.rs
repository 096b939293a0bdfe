//! Reads real makedumpfile output (tests/data/mdf, made by make_dumps.py from a synthetic x86_64
//! ELF vmcore with Debian's makedumpfile 1.7.2, and 1.7.6 for the zstd -z outputs) and checks
//! every page against the generator's formula, not against kmemd's own ELF reader.

use kmemd::arch::Arch;
use kmemd::dump::Dump;
use kmemd::mem::{PhysAddr, PhysRead};

const PAGE: usize = 4096;
/// (first pfn, pages) of the generator's two PT_LOADs.
const SEGMENTS: [(u64, u64); 2] = [(0, 6), (0x1800, 4)];

/// The generator's page contents: every third pfn all zeros, else text lines padded with '#'.
fn expected_page(pfn: u64) -> Vec<u8> {
    if pfn % 3 == 0 {
        return vec![0; PAGE];
    }
    let mut p: Vec<u8> = (0..PAGE as u64 / 25)
        .flat_map(|i| format!("pfn {pfn:05x} line {:09}\n", i * i).into_bytes())
        .collect();
    p.resize(PAGE, b'#');
    p
}

fn data(name: &str) -> String {
    format!("{}/tests/data/mdf/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn open(name: &str) -> Dump {
    match Dump::open(&data(name)) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

fn read_page(d: &Dump, pfn: u64) -> Result<Vec<u8>, String> {
    let mut out = vec![0u8; PAGE];
    let mut done = 0;
    while done < PAGE {
        let dst = out.get_mut(done..).unwrap_or_default();
        done += d
            .read_phys(PhysAddr(pfn * PAGE as u64 + done as u64), dst)
            .map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn check_common(d: &Dump) {
    assert_eq!(d.arch(), Arch::X86_64);
    assert_eq!(d.cpus().len(), 2);
    for (cpu, (pid, base)) in d.cpus().iter().zip([(0, 100u64), (42, 200)]) {
        assert_eq!(cpu.pid, pid);
        let want: Vec<u64> = (base..base + 27).collect();
        assert_eq!(cpu.regs, want);
    }
}

#[test]
fn compressed_and_flattened_dumps_match_the_source_pages() {
    for name in ["zlib.kdump", "lzo.kdump", "zlib.flat", "zstd.kdump", "zstd.flat"] {
        let d = open(name);
        check_common(&d);
        assert!(
            d.format_name().starts_with("kdump-compressed"),
            "{name}: {}",
            d.format_name()
        );
        assert_eq!(d.format_name().contains("flattened"), name.ends_with(".flat"));
        for &(first, n) in &SEGMENTS {
            for pfn in first..first + n {
                // Zero pages (-d 1) are in the bitmap with a shared zero descriptor: they read as zeros.
                assert!(
                    read_page(&d, pfn).ok() == Some(expected_page(pfn)),
                    "{name}: pfn {pfn:#x} differs"
                );
            }
        }
        let hole = read_page(&d, 6).err().unwrap_or_default();
        assert!(hole.contains("pfn 0x6"), "{name}: {hole}");
        assert!(read_page(&d, 0x1804).is_err(), "{name}: past max_mapnr");
        assert_eq!(
            d.phys_ranges(),
            vec![(0, 0x6000), (0x180_0000, 0x180_4000)],
            "{name}"
        );
        let info = d.info_text();
        assert!(
            info.contains("x86_64") && info.contains("dump level 1"),
            "{name}:\n{info}"
        );
    }
}

#[test]
fn elf_source_and_makedumpfile_elf_output() {
    let src = open("vmcore.elf");
    check_common(&src);
    let d1 = open("d1.elf");
    check_common(&d1);
    for &(first, n) in &SEGMENTS {
        for pfn in first..first + n {
            assert!(
                read_page(&src, pfn).ok() == Some(expected_page(pfn)),
                "vmcore.elf: pfn {pfn:#x}"
            );
            // makedumpfile -E -d 1 drops the trailing zero page of a segment into p_memsz > p_filesz:
            // that page is an error, every other page is intact.
            match read_page(&d1, pfn) {
                Ok(p) => assert!(p == expected_page(pfn), "d1.elf: pfn {pfn:#x}"),
                Err(e) => assert!(
                    pfn == 0x1803 && e.contains("p_filesz < p_memsz"),
                    "d1.elf: pfn {pfn:#x}: {e}"
                ),
            }
        }
    }
    assert!(read_page(&d1, 0x1803).is_err());
}

/// Every truncation of a real dump opens with an error or reads pages as before or with an
/// error: never different bytes, never a panic.
#[test]
fn truncated_real_dumps_never_give_wrong_bytes() {
    for name in [
        "zlib.kdump",
        "lzo.kdump",
        "zlib.flat",
        "d1.elf",
        "zstd.kdump",
        "zstd.flat",
    ] {
        let whole = std::fs::read(data(name)).unwrap_or_default();
        assert!(!whole.is_empty(), "{name} missing");
        for cut in (0..whole.len()).step_by(61) {
            let part = whole.get(..cut).unwrap_or_default().to_vec();
            let Ok(d) = Dump::from_source(Box::new(part)) else {
                continue;
            };
            for &(first, n) in &SEGMENTS {
                for pfn in first..first + n {
                    if let Ok(p) = read_page(&d, pfn) {
                        assert!(
                            p == expected_page(pfn),
                            "{name} cut at {cut}: pfn {pfn:#x} has wrong bytes"
                        );
                    }
                }
            }
        }
    }
}

/// A page whose stored data does not decode is an error naming the pfn and where the data is in
/// the file, and the other pages still read. makedumpfile's zstd frames carry no checksum (its
/// ZSTD_compressCCtx call leaves it off), so the damage here is one a decoder must notice: the
/// first frame's block header.
#[test]
fn a_damaged_zstd_page_is_an_error_naming_the_page() {
    let mut file = std::fs::read(data("zstd.kdump")).unwrap_or_default();
    // The first page data makedumpfile wrote is pfn 1's (pfn 0 is a zero page): find its frame.
    let magic = [0x28, 0xb5, 0x2f, 0xfd];
    let at = file.windows(4).position(|w| w == magic).unwrap_or(0);
    assert!(at > 0, "no zstd frame in zstd.kdump");
    // Magic (4), header descriptor, 2-byte content size: the block header follows.
    for b in file.iter_mut().skip(at + 7).take(3) {
        *b = 0xff;
    }
    let d = match Dump::from_source(Box::new(file)) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    let e = read_page(&d, 1).err().unwrap_or_default();
    assert!(
        e.contains("pfn 0x1 cannot be decompressed (zstd page data")
            && e.contains(&format!("at file offset {at:#x}"))
            && e.contains("corrupt zstd data"),
        "{e}"
    );
    assert!(
        read_page(&d, 2).ok() == Some(expected_page(2)),
        "pfn 2 still reads"
    );
}

#[test]
fn dump_is_send() {
    fn send<T: Send>() {}
    send::<Dump>();
}
