//! Kernel awareness on the real QEMU dump fixtures (tests/fixtures/README.md), with no vmlinux:
//! dmesg against makedumpfile's `--dump-dmesg` of the same dump, tasks and modules against what
//! the guest printed, `--pid` against the guest's busybox file, `info threads` through real GDB.

mod common;

use common::*;
use kmemd::dump::target::DumpTarget;
use kmemd::target::Target;
use std::path::{Path, PathBuf};

struct Fixture {
    variant: String,
    dir: PathBuf,
    arch: String,
    dumps: Vec<PathBuf>,
    sleep_pids: Vec<i32>,
    /// (name, address, size) from the guest's /proc/modules.
    modules: Vec<(String, u64, u64)>,
    dmesg: Option<PathBuf>,
    busybox: PathBuf,
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("bad hex {s}"))
}

/// The fixtures, or None (skip) outside CI when they have not been generated.
fn fixtures() -> Option<Vec<Fixture>> {
    let root = match std::env::var("KMEMD_FIXTURES") {
        Ok(d) => PathBuf::from(d),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join(".fixtures"),
    }
    .join("current");
    let variants = ["x86_64-4l", "x86_64-5l", "aarch64"];
    if !root.join(variants[0]).join("manifest.txt").exists() {
        assert!(
            !in_ci(),
            "no dump fixtures in {}: `make fixtures` makes them",
            root.display()
        );
        eprintln!(
            "SKIP: no dump fixtures in {} (run `make fixtures`)",
            root.display()
        );
        return None;
    }
    Some(variants.iter().map(|v| load(&root.join(v))).collect())
}

fn load(dir: &Path) -> Fixture {
    let text = std::fs::read_to_string(dir.join("manifest.txt")).expect("manifest.txt");
    let mut f = Fixture {
        variant: String::new(),
        dir: dir.to_path_buf(),
        arch: String::new(),
        dumps: vec![],
        sleep_pids: vec![],
        modules: vec![],
        dmesg: None,
        busybox: dir.join("busybox"),
    };
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.as_slice() {
            ["variant", v] => f.variant = v.to_string(),
            ["arch", a] => f.arch = a.to_string(),
            ["dump", _, _, p] => f.dumps.push(dir.join(p)),
            ["sleep_pid", p] => f.sleep_pids.push(p.parse().expect("pid")),
            ["module", n, a, s] => f.modules.push((n.to_string(), hex(a), s.parse().expect("size"))),
            ["dmesg", p] => f.dmesg = Some(dir.join(p)),
            ["busybox", p] => f.busybox = dir.join(p),
            _ => {}
        }
    }
    assert_eq!(f.sleep_pids.len(), 2, "{}: two sleep pids", dir.display());
    f
}

/// The dumps a test opens: every format (dmesg and tasks live in kernel data, which even -d 31
/// keeps).
fn open(p: &Path) -> DumpTarget {
    DumpTarget::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn dmesg_equals_makedumpfile_dump_dmesg() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let Some(want) = &f.dmesg else {
            eprintln!("{}: no dmesg.txt (makedumpfile could not run)", f.variant);
            continue;
        };
        let want = std::fs::read_to_string(want).expect("dmesg.txt");
        assert!(
            want.lines().count() > 100,
            "{}: dmesg.txt is too short",
            f.variant
        );
        for d in &f.dumps {
            let got = open(d)
                .monitor("dmesg")
                .expect("dmesg is a monitor command")
                .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
            if got != want {
                let first = got
                    .lines()
                    .zip(want.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.lines().count().min(want.lines().count()));
                panic!(
                    "{}: monitor dmesg differs from makedumpfile --dump-dmesg at line {}:\n got: {:?}\nwant: {:?}",
                    d.display(),
                    first + 1,
                    got.lines().nth(first),
                    want.lines().nth(first)
                );
            }
        }
    }
}

#[test]
fn ps_lists_init_and_both_sleeps() {
    let Some(fx) = fixtures() else { return };
    for f in &fx {
        let d = f.dumps.first().expect("a dump");
        let mut t = open(d);
        let ps = t
            .monitor("ps")
            .expect("ps is a monitor command")
            .unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        eprintln!("{}:\n{ps}", f.variant);
        let rows: Vec<Vec<&str>> = ps
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        let find = |pid: i32| rows.iter().find(|r| r.first() == Some(&pid.to_string().as_str()));
        let init = find(1).unwrap_or_else(|| panic!("{}: no pid 1 in\n{ps}", f.variant));
        assert_eq!(init[1], "0", "{}: init's parent is pid 0", f.variant);
        for &p in &f.sleep_pids {
            let r = find(p).unwrap_or_else(|| panic!("{}: no sleep pid {p} in\n{ps}", f.variant));
            assert!(r.contains(&"sleep"), "{}: pid {p} is not sleep: {r:?}", f.variant);
            assert_eq!(r[2], "S", "{}: sleep {p} is sleeping: {r:?}", f.variant);
        }
    }
}
