//! A guest that really panicked (sysrq 'c' on CPU 1, tests/fixtures/guest-init.sh): GDB's stop
//! thread at connect is the panicking CPU, its extra info says `panic` and names the task that
//! crashed; on the dumps of the same guest taken before the panic, no CPU says panic. The oracle
//! is the console's oops line `CPU: N PID: P Comm: C` (`panic_cpu` in manifest.txt), not
//! anything kmemd reads. No vmlinux: on x86_64 kmemd reads the kernel's `panic_cpu` (Debian's
//! amd64 kallsyms has data symbols), on aarch64 (text symbols only) it follows each CPU's frame
//! records to `panic()`.

mod common;

use common::*;
use std::path::Path;

/// (key, rest of line) of a variant's manifest.txt.
fn manifest(dir: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(dir.join("manifest.txt"))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// (pid, comm) of the task that oopsed on `cpu`, from the guest console's `CPU: N PID: P Comm: C`.
fn oops_task(dir: &Path, cpu: u32) -> (u32, String) {
    let log = std::fs::read_to_string(dir.join("console.log")).expect("console.log");
    log.lines()
        .find_map(|l| {
            let rest = l.split_once(&format!("CPU: {cpu} PID: "))?.1;
            let mut w = rest.split_whitespace();
            let pid = w.next()?.parse().ok()?;
            (w.next()? == "Comm:").then_some(())?;
            Some((pid, w.next()?.to_string()))
        })
        .unwrap_or_else(|| panic!("{}: no `CPU: {cpu} PID:` oops line", dir.display()))
}

/// `kmemd -c DUMP --info`.
fn info_of(dump: &Path) -> String {
    let o = std::process::Command::new(KMEMD)
        .args(["-q", "-c", dump.to_str().unwrap(), "--info"])
        .output()
        .expect("run kmemd");
    assert!(o.status.success(), "--info {}: {}", dump.display(), text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `info threads` through GDB at connect: (the `*` row, every row that mentions panic).
fn threads_at_connect(dump: &Path, arch: &str, tag: &str) -> (String, Vec<String>, String) {
    let dir = scratch(&format!("dumppanic-{tag}"));
    let sock = dir.join("gdb.sock");
    let mut k = Kmemd::spawn(
        &["-c", dump.to_str().unwrap(), "-s", sock.to_str().unwrap()],
        dir.join("kmemd.log"),
    );
    k.wait_unix(&sock);
    let gdb = if arch == "aarch64" { "gdb-multiarch" } else { "gdb" };
    let o = gdb_batch(
        Path::new(gdb),
        sock.to_str().unwrap(),
        &["info threads".to_string()],
    );
    let t = text(&o);
    let star = t
        .lines()
        .find(|l| l.trim_start().starts_with('*'))
        .unwrap_or_else(|| panic!("{tag}: no current thread in: {t}"))
        .to_string();
    let panics = t
        .lines()
        .filter(|l| l.contains("panic"))
        .map(str::to_string)
        .collect();
    (star, panics, t)
}

#[test]
fn gdb_stops_on_the_cpu_that_panicked() {
    let root = fixtures_root().join("current");
    let variants = ["x86_64-4l", "x86_64-5l", "aarch64"];
    if !root.join(variants[0]).join("manifest.txt").exists() {
        assert!(
            !in_ci(),
            "no dump fixtures in {}: `make fixtures` makes them",
            root.display()
        );
        eprintln!("SKIP: no dump fixtures in {}", root.display());
        return;
    }
    for v in variants {
        let dir = root.join(v);
        let m = manifest(&dir);
        let get = |k: &str| m.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        let arch = get("arch").expect("arch");
        let cpu: u32 = get("panic_cpu")
            .unwrap_or_else(|| panic!("{v}: manifest has no panic_cpu: regenerate the fixtures"))
            .parse()
            .expect("panic_cpu");
        let pdump = dir.join(
            get("panic_dump")
                .expect("panic_dump")
                .split(' ')
                .nth(1)
                .expect("path"),
        );
        let (pid, comm) = oops_task(&dir, cpu);
        let (star, panics, t) = threads_at_connect(&pdump, &arch, &format!("{v}-panic"));
        assert!(
            star.contains(&format!(
                "CPU {cpu} pid {pid} {comm} (panic: Kernel panic - not syncing: "
            )),
            "{v}: GDB's current thread at connect is CPU {cpu}, running pid {pid} {comm}, with panic: {t}"
        );
        assert_eq!(panics.len(), 1, "{v}: exactly one CPU says panic: {t}");
        let info = info_of(&pdump);
        assert!(
            info.contains(&format!("crashing CPU:  CPU {cpu} ("))
                && info.contains(&format!("CPU {cpu} pid {pid} {comm}")),
            "{v}: --info names CPU {cpu} as crashing and pid {pid} {comm} on it:\n{info}"
        );
        // The dumps taken before the panic: no CPU panicked, and GDB starts on CPU 0.
        for d in ["vmcore.elf", "mdf-lzo.kdump"] {
            if !dir.join(d).exists() {
                assert!(!common::in_ci(), "{}: the fixture lacks {d}", dir.display());
                eprintln!("SKIP {}: no {d}", dir.display());
                continue;
            }
            let (star, panics, t) = threads_at_connect(&dir.join(d), &arch, &format!("{v}-{d}"));
            assert!(panics.is_empty(), "{v} {d}: no CPU panicked: {t}");
            assert!(star.contains("CPU 0 "), "{v} {d}: GDB starts on CPU 0: {t}");
            let info = info_of(&dir.join(d));
            assert!(
                info.contains("crashing CPU:  none found"),
                "{v} {d}: --info names no crashing CPU:\n{info}"
            );
        }
    }
}
