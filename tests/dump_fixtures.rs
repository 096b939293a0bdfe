//! Crash dumps made by QEMU booting real Debian kernels (tests/fixtures/make-fixtures.sh), read by
//! kmemd and compared byte for byte with QEMU's own `memsave` of the same stopped guest, through
//! `--read` and through real GDB (gdb 13, gdb-multiarch, GDB 18).

mod common;

use common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Oracle {
    kind: String,
    vaddr: u64,
    len: u64,
    file: PathBuf,
}

struct Fixture {
    variant: String,
    arch: String,
    release: String,
    kaslr: u64,
    /// (format, dump level, path)
    dumps: Vec<(String, u32, PathBuf)>,
    oracle: Vec<Oracle>,
    /// (cpu, register) -> value, from QEMU's `info registers`.
    regs: HashMap<(u32, String), u64>,
    phys: Option<(u64, u64, PathBuf)>,
}

/// The fixtures, or None (skip) outside CI when they have not been generated.
fn fixtures() -> Option<Vec<Fixture>> {
    load_fixtures(load)
}

fn load(dir: &Path) -> Fixture {
    let mut f = Fixture {
        variant: String::new(),
        arch: String::new(),
        release: String::new(),
        kaslr: 0,
        dumps: vec![],
        oracle: vec![],
        regs: HashMap::new(),
        phys: None,
    };
    for line in manifest(dir) {
        let w: Vec<&str> = line.iter().map(String::as_str).collect();
        match w.as_slice() {
            ["variant", v] => f.variant = v.to_string(),
            ["arch", a] => f.arch = a.to_string(),
            ["release", r] => f.release = r.to_string(),
            ["kaslr_offset", k] => f.kaslr = hex(k),
            ["dump", format, level, file] => {
                f.dumps
                    .push((format.to_string(), level.parse().unwrap(), dir.join(file)))
            }
            ["oracle", kind, va, len, file] => f.oracle.push(Oracle {
                kind: kind.to_string(),
                vaddr: hex(va),
                len: len.parse().unwrap(),
                file: dir.join(file),
            }),
            ["oracle-phys", _, pa, len, file] => {
                f.phys = Some((hex(pa), len.parse().unwrap(), dir.join(file)))
            }
            ["reg", cpu, name, value] => {
                f.regs
                    .insert((cpu.parse().unwrap(), name.to_string()), hex(value));
            }
            _ => {}
        }
    }
    assert!(
        !f.dumps.is_empty() && !f.oracle.is_empty(),
        "{}: empty manifest",
        dir.display()
    );
    f
}

fn read_cmd(dump: &Path, addr: u64, len: u64) -> std::process::Output {
    Command::new(KMEMD)
        .args([
            "-q",
            "-c",
            dump.to_str().unwrap(),
            "--read",
            &format!("{addr:#x}"),
            &len.to_string(),
        ])
        .output()
        .expect("run kmemd --read")
}

#[test]
fn every_dump_format_reads_every_oracle_range_exactly() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        for (format, level, dump) in &f.dumps {
            for o in &f.oracle {
                let out = read_cmd(dump, o.vaddr, o.len);
                let want = std::fs::read(&o.file).unwrap();
                // `-d 31` leaves out free and user pages; on some boots an oracle page is one.
                // Then the read must be refused (never zeros), and the full dumps have the bytes.
                let excluded_ok = *level == 31
                    && out.stdout.len() < want.len()
                    && want.starts_with(&out.stdout)
                    && String::from_utf8_lossy(&out.stderr).contains("not in the dump");
                assert!(
                    (out.status.success() && out.stdout == want) || excluded_ok,
                    "{} {format} -d {level} {}: {} at {:#x} differs from QEMU's memsave ({})",
                    f.variant,
                    dump.display(),
                    o.kind,
                    o.vaddr,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
    }
}

#[test]
fn info_describes_each_dump() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        for (format, _, dump) in &f.dumps {
            let out = Command::new(KMEMD)
                .args(["-c", dump.to_str().unwrap(), "--info"])
                .output()
                .unwrap();
            let t = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}",
                dump.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(t.contains(&f.arch), "{format}: arch missing: {t}");
            assert!(t.contains(&f.release), "{format}: release missing: {t}");
            assert!(
                t.contains(&format!("{:#x}", f.kaslr)),
                "{format}: KASLR offset missing: {t}"
            );
        }
    }
}

/// Pages `makedumpfile -d 31` left out (free pages here) must be errors, never zeros: find
/// direct-map pages the full dump has and the -d 31 dump does not, and check both paths.
#[test]
fn excluded_pages_are_errors_not_zeros() {
    let Some(fixtures) = fixtures() else { return };
    let f = fixtures.iter().find(|f| f.variant == "x86_64-4l").unwrap();
    let full = &f
        .dumps
        .iter()
        .find(|d| d.0 == "kdump-zlib" && d.1 == 0)
        .unwrap()
        .2;
    let d31 = &f
        .dumps
        .iter()
        .find(|d| d.0 == "kdump-zlib" && d.1 == 31)
        .unwrap()
        .2;
    let dm = f.oracle.iter().find(|o| o.kind == "direct-map").unwrap();
    let (phys, _, _) = f.phys.clone().unwrap();
    // The direct-map oracle is the physical oracle's range seen through page_offset_base.
    let base = dm.vaddr - phys;
    let mut excluded = None;
    for mib in 64..255u64 {
        let va = base + (mib << 20);
        if read_cmd(full, va, 4096).status.success() && !read_cmd(d31, va, 4096).status.success() {
            excluded = Some(va);
            break;
        }
    }
    let va = excluded.expect("some free page must be in the full dump and excluded from the -d 31 dump");
    let out = read_cmd(d31, va, 4096);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.stdout.is_empty(), "no bytes for an excluded page");
    assert!(
        err.contains("pfn") || err.contains("exclu"),
        "the error names the page: {err}"
    );
    // A read that starts on an included page and runs into the excluded one stops at the edge.
    let out = read_cmd(d31, va - 4096, 8192);
    if read_cmd(d31, va - 4096, 4096).status.success() {
        assert_eq!(out.stdout.len(), 4096, "prefix only");
    }
    // GDB says it cannot read it.
    let dir = scratch("excluded");
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(
        &["-c", d31.to_str().unwrap(), "-s", sock.to_str().unwrap()],
        dir.join("kmemd.log"),
    );
    k.wait_unix(&sock);
    let o = gdb_batch(
        Path::new("gdb"),
        sock.to_str().unwrap(),
        &[format!("x/2xg {va:#x}")],
    );
    assert!(
        text(&o).contains(&format!("Cannot access memory at address {va:#x}")),
        "{}",
        text(&o)
    );
}

#[test]
fn gdb_reads_dumps_and_shows_each_cpus_saved_registers() {
    let Some(fixtures) = fixtures() else { return };
    for f in &fixtures {
        // One ELF and one compressed dump per variant through GDB; --read covers the rest.
        let picks: Vec<&PathBuf> = f
            .dumps
            .iter()
            .filter(|(fmt, lvl, _)| *lvl == 0 && (fmt == "elf" || fmt == "kdump-lzo"))
            .map(|d| &d.2)
            .collect();
        assert_eq!(picks.len(), 2, "{}: ELF and lzo dumps", f.variant);
        let (pc, sp) = if f.arch == "aarch64" {
            ("pc", "sp")
        } else {
            ("rip", "rsp")
        };
        for dump in picks {
            let dir = scratch(&format!("dumpgdb-{}", f.variant));
            let sock = dir.join("gdb.sock");
            let mut k = Kmemd::spawn(
                &["-c", dump.to_str().unwrap(), "-s", sock.to_str().unwrap()],
                dir.join("kmemd.log"),
            );
            k.wait_unix(&sock);
            for (name, gdb) in gdbs_for(&f.arch) {
                let mut cmds = vec!["info threads".to_string()];
                for cpu in 0..2u32 {
                    cmds.push(format!("thread {}", cpu + 1));
                    cmds.push(format!("printf \"@@cpu{cpu} pc=%#lx sp=%#lx\\n\", ${pc}, ${sp}"));
                }
                for (i, o) in f.oracle.iter().enumerate() {
                    let out = dir.join(format!("o{i}.bin"));
                    cmds.push(format!(
                        "dump binary memory {} {:#x} {:#x}",
                        out.display(),
                        o.vaddr,
                        o.vaddr + o.len
                    ));
                }
                cmds.push("monitor vtop 0x0".into()); // user half: an error line, not a crash
                cmds.push(format!("monitor vtop {:#x}", f.oracle[0].vaddr));
                let o = gdb_batch(&gdb, sock.to_str().unwrap(), &cmds);
                let t = text(&o);
                let ctx = format!("{name} {} {}", f.variant, dump.display());
                assert!(
                    t.contains("CPU 0") && t.contains("CPU 1"),
                    "{ctx}: info threads: {t}"
                );
                for cpu in 0..2u32 {
                    let want = format!(
                        "@@cpu{cpu} pc={:#x} sp={:#x}",
                        f.regs[&(cpu, pc.to_string())],
                        f.regs[&(cpu, sp.to_string())]
                    );
                    assert!(
                        t.contains(&want),
                        "{ctx}: wanted '{want}' (QEMU's info registers): {t}"
                    );
                }
                for (i, o) in f.oracle.iter().enumerate() {
                    let got = std::fs::read(dir.join(format!("o{i}.bin"))).unwrap_or_default();
                    assert!(
                        got == std::fs::read(&o.file).unwrap(),
                        "{ctx}: {} at {:#x} differs: {t}",
                        o.kind,
                        o.vaddr
                    );
                }
                assert!(
                    t.contains("PGD") && t.contains("PTE") || t.contains("PMD"),
                    "{ctx}: vtop levels: {t}"
                );
                assert!(k.alive(), "{ctx}: server died: {}", k.log_text());
            }
        }
    }
}
