//! Bad dumps: empty, random, truncated at every boundary, headers corrupted byte by byte. Opening
//! one must give a one-line error or a dump whose reads and `--info` work; never a panic. The
//! good dumps are the project's own makedumpfile test files (tests/data/mdf).
//! In-process, so a panic fails the test with its message; an abort kills the test binary, which
//! fails it too (see tests/robust_regressions.rs for the one known).

use kmemd::dump::Dump;
use kmemd::mem::{PhysAddr, PhysRead};
use std::path::PathBuf;

fn samples() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/mdf");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("tests/data/mdf")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x != "py"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    assert!(v.len() >= 4, "test dumps missing from {}", dir.display());
    v
}

/// Opens `bytes`; on success exercises what `--info` and a session would read.
fn open_and_use(what: &str, bytes: Vec<u8>) -> Result<(), String> {
    match Dump::from_source(Box::new(bytes)) {
        Err(e) => {
            let e = String::from(e);
            assert!(
                !e.is_empty() && !e.contains('\n'),
                "{what}: error is not one line: {e:?}"
            );
            Err(e)
        }
        Ok(d) => {
            let _ = d.info_text();
            let mut buf = [0u8; 4096];
            for (s, e) in d.phys_ranges().into_iter().take(8) {
                assert!(s < e, "{what}: bad range");
                if let Ok(n) = d.read_phys(PhysAddr(s), &mut buf) {
                    assert!((1..=buf.len()).contains(&n), "{what}: read_phys returned {n}");
                }
            }
            Ok(())
        }
    }
}

#[test]
fn the_sample_dumps_open() {
    for (name, bytes) in samples() {
        open_and_use(&name, bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn empty_and_random_files_are_one_line_errors() {
    assert!(open_and_use("empty", Vec::new()).is_err());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for len in [1usize, 7, 64, 4096, 65536] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(open_and_use(&format!("random {len}"), bytes).is_err());
    }
}

#[test]
fn truncated_dumps_never_panic() {
    for (name, bytes) in samples() {
        // Every 64 bytes through the headers, then every 512 to the end.
        let cuts = (0..bytes.len().min(8192))
            .step_by(64)
            .chain((8192..bytes.len()).step_by(512));
        for cut in cuts {
            let _ = open_and_use(&format!("{name} cut at {cut}"), bytes[..cut].to_vec());
        }
    }
}

#[test]
fn corrupted_header_bytes_never_panic() {
    for (name, bytes) in samples() {
        // Each byte of the first 1 KiB (ELF and kdump headers, flattened record headers) set to
        // 0x00, 0xff and flipped.
        for at in 0..bytes.len().min(1024) {
            for f in [|_: u8| 0u8, |_: u8| 0xffu8, |b: u8| !b] {
                let mut b = bytes.clone();
                b[at] = f(b[at]);
                let _ = open_and_use(&format!("{name} byte {at}"), b);
            }
        }
    }
}
