//! Issue 16's memory bounds as regression tests: kmemd's own peak RSS (VmHWM), read from
//! /proc/PID/status of a running server or logged by `kmemd -v` from /proc/self/status at its exit.
//! Bounds are generous (twice the goal where kmemd meets it) and nothing is timed: `make bench`
//! prints the figures beside the goals.

mod common;

use common::*;
use std::path::Path;

const MIB: u64 = 1024;

/// Issue 16's GDB session: threads, the monitor commands, all backtraces, a 16 MiB dump of `at`
/// into `out`. Panics unless the dump has all 16 MiB.
fn gdb_session(gdb: &str, sock: &Path, at: u64, out: &Path, what: &str) {
    let o = gdb_batch(
        Path::new(gdb),
        sock.to_str().unwrap(),
        &[
            "info threads".into(),
            "monitor ps".into(),
            "monitor dmesg".into(),
            "monitor lsmod".into(),
            "thread apply all bt".into(),
            format!(
                "dump binary memory {} {at:#x} {:#x}",
                out.display(),
                at + (16 << 20)
            ),
        ],
    );
    let got = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    assert_eq!(
        got,
        16 << 20,
        "{what}: the 16 MiB dump failed:\n{}",
        common::text(&o)
    );
}

/// Runs `kmemd -v ARGS` to its end; returns the peak RSS it logged, its stderr and its stdout.
fn logged_peak(args: &[&str]) -> (u64, String, Vec<u8>) {
    let o = std::process::Command::new(KMEMD)
        .arg("-v")
        .args(args)
        .output()
        .expect("run kmemd");
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "kmemd {args:?} failed:\n{err}");
    let kib = err
        .lines()
        .find_map(|l| l.split("peak RSS (VmHWM): ").nth(1))
        .and_then(|v| v.trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("kmemd -v logged no peak RSS:\n{err}"));
    (kib, err, o.stdout)
}

fn kallsyms_text() -> u64 {
    let k = std::fs::read_to_string("/proc/kallsyms").expect("/proc/kallsyms");
    k.lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.get(2) == Some(&"_text")).then(|| hex(w[0]))
        })
        .expect("_text")
}

/// Goal: 3 MiB. Bound: twice that.
#[test]
fn a_16_byte_live_read_stays_small() {
    if !require_root("a_16_byte_live_read_stays_small") {
        return;
    }
    let text = format!("{:#x}", kallsyms_text());
    let (kib, log, out) = logged_peak(&["--read", &text, "16"]);
    assert_eq!(out.len(), 16, "{log}");
    assert!(
        kib <= 6 * MIB,
        "kmemd --read {text} 16 peaked at {kib} KiB (bound 6 MiB):\n{log}"
    );
}

/// The live GDB session of issue 16's table, served by the static musl binary a board runs
/// (`make lab-bins` builds it; `make test` does that first). Goal 4 MiB; on this host's kernel
/// (121k kallsyms, 5.5 MB of BTF) 3.3-3.4 MiB on 2026-12-06. The bound, 6 MiB, fails the whole
/// kallsyms table coming back into a session (~6 MiB more). The debug build `cargo test`
/// makes is no measure of it: its own code pages were 4.1 MiB of its 8.1-8.4 MiB, and grew
/// with every change.
#[test]
fn a_live_gdb_session_does_not_grow_past_its_bound() {
    if !require_root("a_live_gdb_session_does_not_grow_past_its_bound") {
        return;
    }
    let triple = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let board = match fresh_release_binary(&triple, "kmemd") {
        Ok(b) => b,
        Err(e) if !in_ci() => {
            println!("kmemd-test-skip: a_live_gdb_session_does_not_grow_past_its_bound: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let dir = scratch("footprint-live");
    let sock = dir.join("s.sock");
    let mut k = Kmemd::spawn_binary(&board, &["-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    gdb_session("gdb", &sock, kallsyms_text(), &dir.join("dump.bin"), "live");
    let kib = rsp::vmhwm_kib(k.child.id());
    assert!(
        kib <= 6 * MIB,
        "the static kmemd peaked at {kib} KiB serving the session (bound 6 MiB)"
    );
}

/// No per-session growth: many short sessions in a row leave the peak where the first one put it.
#[test]
fn sessions_in_a_row_do_not_grow() {
    if !require_root("sessions_in_a_row_do_not_grow") {
        return;
    }
    let dir = scratch("footprint-serial");
    let sock = dir.join("s.sock");
    let mut k = Kmemd::spawn(&["-q", "-s", sock.to_str().unwrap()], dir.join("kmemd.log"));
    k.wait_unix(&sock);
    let read = format!("m{:x},1000", kallsyms_text());
    let session = || {
        let mut c = rsp::Client::new(&sock);
        for p in [
            "qSupported:multiprocess+",
            "?",
            "qXfer:threads:read::0,1000",
            "Hg1",
            "g",
            &read,
        ] {
            let r = c.request(p.as_bytes());
            assert!(!r.starts_with(b"E"), "{p}: {}", rsp::show(&r));
        }
        c.request(b"D");
    };
    session();
    session();
    let first = rsp::vmhwm_kib(k.child.id());
    for _ in 0..300 {
        session();
    }
    let last = rsp::vmhwm_kib(k.child.id());
    assert!(
        last <= first + 512,
        "the peak grew from {first} KiB to {last} KiB over 300 sessions"
    );
    assert!(k.alive(), "{}", k.log_text());
}

/// A fixture dump of the x86_64 4-level variant, with an oracle: (address, its first bytes).
fn fixture(name: &str) -> Option<(std::path::PathBuf, u64, Vec<u8>)> {
    let dir = fixture_dirs()?.into_iter().next()?;
    let w = manifest(&dir)
        .into_iter()
        .find(|w| w.len() > 4 && w[0] == "oracle" && w[1] == "kernel-data")
        .expect("a kernel-data oracle");
    let oracle = std::fs::read(dir.join(&w[4])).expect("the oracle's bytes");
    Some((dir.join(name), hex(&w[2]), oracle))
}

/// The fixture dumps through the live row's session, in every variant (aarch64's through
/// gdb-multiarch). Goal 6 MiB. Measured on 2026-12-05 in the debug build this test runs: 7.2 MiB
/// (ELF) and 8.6 MiB (kdump) on x86_64-4l (2.7-4.5 MiB in the static musl binary), since a dump
/// session keeps only kmemd's own kallsyms names, names a panic check's frames without the
/// whole table, and caches 1 MiB of decompressed pages; 12.3 / 13.3 MiB before (the whole
/// table decoded at start, loaded again on aarch64 by the panic check, a 4 MiB page cache). The
/// bound is twice the goal: it fails that old peak.
#[test]
fn a_dump_gdb_session_does_not_grow_past_its_bound() {
    let Some(dirs) = fixture_dirs() else {
        return;
    };
    for dir in dirs {
        let variant = dir.file_name().unwrap().to_string_lossy().into_owned();
        let gdb = if variant == "aarch64" {
            "gdb-multiarch"
        } else {
            "gdb"
        };
        let start = manifest(&dir)
            .iter()
            .find(|w| w.len() > 2 && w[0] == "oracle" && w[1] == "direct-map")
            .map(|w| hex(&w[2]))
            .expect("a direct-map oracle");
        for name in ["vmcore.elf", "mdf-zlib.kdump"] {
            let what = format!("{variant}/{name}");
            let scratchdir = scratch(&format!("footprint-{variant}-{name}"));
            let sock = scratchdir.join("s.sock");
            let dump = dir.join(name);
            let mut k = Kmemd::spawn(
                &["-q", "-s", sock.to_str().unwrap(), "-c", dump.to_str().unwrap()],
                scratchdir.join("kmemd.log"),
            );
            k.wait_unix(&sock);
            gdb_session(gdb, &sock, start, &scratchdir.join("dump.bin"), &what);
            let kib = rsp::vmhwm_kib(k.child.id());
            assert!(
                kib <= 12 * MIB,
                "{what}: kmemd peaked at {kib} KiB (bound 12 MiB)"
            );
        }
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

const SIZE_64G: u64 = 64 << 30;

/// The fixture's vmcore.elf (notes and loads kept) plus one PT_LOAD up to 64 GiB of physical
/// memory whose data is a hole: a 64 GiB sparse file of a 64 GiB machine.
fn sparse_elf(src: &Path, dst: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut head = vec![0u8; 1 << 16];
    let mut f = std::fs::File::open(src).unwrap();
    std::io::Read::read_exact(&mut f, &mut head[..64]).unwrap();
    let phoff = u64_at(&head, 32);
    let (phentsize, phnum) = (u16_at(&head, 54) as usize, u16_at(&head, 56) as usize);
    let mut phs = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff)).unwrap();
    std::io::Read::read_exact(&mut f, &mut phs).unwrap();
    let end = f.metadata().unwrap().len();
    let status = std::process::Command::new("cp")
        .args(["--sparse=always", src.to_str().unwrap(), dst.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut top = 0;
    for ph in phs.chunks(phentsize) {
        if u32_at(ph, 0) == 1 {
            top = top.max(u64_at(ph, 24) + u64_at(ph, 40));
        }
    }
    top = (top + 0xfff) & !0xfff;
    let new_phoff = (end + 0xfff) & !0xfff;
    let data = (new_phoff + ((phnum + 1) * phentsize) as u64 + 0xfff) & !0xfff;
    let mut load = Vec::new();
    load.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    load.extend_from_slice(&7u32.to_le_bytes());
    for v in [
        data,
        0xffff_8880_0000_0000 + top,
        top,
        SIZE_64G - top,
        SIZE_64G - top,
        0x1000,
    ] {
        load.extend_from_slice(&v.to_le_bytes());
    }
    let mut o = std::fs::OpenOptions::new().write(true).open(dst).unwrap();
    o.seek(SeekFrom::Start(32)).unwrap();
    o.write_all(&new_phoff.to_le_bytes()).unwrap();
    o.seek(SeekFrom::Start(56)).unwrap();
    o.write_all(&((phnum + 1) as u16).to_le_bytes()).unwrap();
    o.seek(SeekFrom::Start(new_phoff)).unwrap();
    o.write_all(&phs).unwrap();
    o.write_all(&load).unwrap();
    o.set_len(data + SIZE_64G - top).unwrap();
}

/// A kdump file of a 64 GiB machine from the fixture's mdf-zlib.kdump: its header, notes and
/// pages, bitmaps for 64 GiB (all RAM, the fixture's pages dumpable) and one more dumpable page,
/// the last, whose data sits at 64 GiB in the file: everything between is a hole.
fn sparse_kdump(src: &Path, dst: &Path) {
    use std::io::{Seek, SeekFrom, Write};
    let raw = std::fs::read(src).unwrap();
    // struct disk_dump_header (makedumpfile diskdump_mod.h): block_size at 428, then
    // sub_hdr_size, bitmap_blocks and max_mapnr; kdump_sub_header.max_mapnr_64 at +96 (v6+).
    let block = u32_at(&raw, 428) as usize;
    let sub_hdr = u32_at(&raw, 432) as usize;
    let bitmap_blocks = u32_at(&raw, 436) as usize;
    let version = u32_at(&raw, 8);
    let mut mapnr = u64::from(u32_at(&raw, 440));
    if version >= 6 && u64_at(&raw, block + 96) != 0 {
        mapnr = u64_at(&raw, block + 96);
    }
    let bm_off = (1 + sub_hdr) * block;
    let half = bitmap_blocks * block / 2;
    let bm2 = &raw[bm_off + half..bm_off + half + (mapnr as usize).div_ceil(8)];
    let old_data = bm_off + bitmap_blocks * block;
    let ndump: usize = bm2.iter().map(|b| b.count_ones() as usize).sum();
    let pages_start = old_data + 24 * ndump;
    let new_mapnr = (SIZE_64G / block as u64) as usize;
    let bm_len = (new_mapnr / 8).div_ceil(block) * block;
    let new_pages_start = bm_off + 2 * bm_len + 24 * (ndump + 1);
    let delta = (new_pages_start - pages_start) as u64;
    let mut out = raw[..bm_off].to_vec();
    out[436..440].copy_from_slice(&((2 * bm_len / block) as u32).to_le_bytes());
    out[440..444].copy_from_slice(&(new_mapnr as u32).to_le_bytes());
    if version >= 6 {
        out[block + 96..block + 104].copy_from_slice(&(new_mapnr as u64).to_le_bytes());
    }
    let mut bm1 = vec![0xffu8; new_mapnr / 8];
    bm1.resize(bm_len, 0);
    let mut new_bm2 = vec![0u8; bm_len];
    new_bm2[..bm2.len()].copy_from_slice(bm2);
    new_bm2[new_mapnr / 8 - 1] |= 0x80;
    out.extend_from_slice(&bm1);
    out.extend_from_slice(&new_bm2);
    for d in raw[old_data..pages_start].chunks(24) {
        out.extend_from_slice(&(u64_at(d, 0) + delta).to_le_bytes());
        out.extend_from_slice(&d[8..24]);
    }
    out.extend_from_slice(&SIZE_64G.to_le_bytes());
    out.extend_from_slice(&(block as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 12]);
    let mut f = std::fs::File::create(dst).unwrap();
    f.write_all(&out).unwrap();
    f.write_all(&raw[pages_start..]).unwrap();
    f.seek(SeekFrom::Start(SIZE_64G)).unwrap();
    f.write_all(&vec![0x5a; block]).unwrap();
}

/// Goal: 16 MiB (and opening in 100 ms, which `make bench` prints). Bound: twice that.
#[test]
fn sparse_64_gib_dumps_open_small() {
    let Some((elf, addr, oracle)) = fixture("vmcore.elf") else {
        return;
    };
    let kd = elf.with_file_name("mdf-zlib.kdump");
    let dir = scratch("footprint-sparse");
    let addr = format!("{addr:#x}");
    for (name, make, src) in [
        ("sparse64g.elf", sparse_elf as fn(&Path, &Path), &elf),
        ("sparse64g.kdump", sparse_kdump, &kd),
    ] {
        let path = dir.join(name);
        make(src, &path);
        // The ELF file's new load spans from the fixture's top (4 GiB: its firmware window) to
        // 64 GiB, a hole; the kdump's last page sits at 64 GiB.
        assert!(
            std::fs::metadata(&path).unwrap().len() >= SIZE_64G - (4 << 30),
            "{name}"
        );
        let (kib, log, out) = logged_peak(&["-c", path.to_str().unwrap(), "--read", &addr, "16"]);
        assert_eq!(out[..], oracle[..16], "{name}: the bytes at {addr}");
        assert!(
            kib <= 32 * MIB,
            "{name}: kmemd peaked at {kib} KiB (bound 32 MiB):\n{log}"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
