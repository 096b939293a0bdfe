//! Issue 20 item 1: a `-k` vmlinux that is not the dump's kernel is refused with a sentence that
//! names both (build ID from VMCOREINFO's BUILD-ID line against the vmlinux's GNU build-id note,
//! release from `linux_banner`), and `--force-vmlinux` takes it anyway; another architecture's
//! vmlinux is refused even then. The right vmlinux is Debian's debug vmlinux of the fixture's
//! release (`make dbg-vmlinux`); the wrong ones are the other architecture's, and a small ELF
//! built here with gcc with its own build ID and a 6.12 banner (what a 6.12 vmlinux looks like
//! to this check). Live: the same vmlinux against the host's kernel, whose /sys/kernel/notes
//! carries another build ID.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// (arch, release, build ID) of a fixture, from its manifest and its VMCOREINFO text.
fn fixture(dir: &Path) -> (String, String, String) {
    let m = manifest(dir);
    let get = |k: &str| {
        m.iter()
            .find(|l| l.first().map(String::as_str) == Some(k))
            .and_then(|l| l.get(1).cloned())
            .unwrap_or_else(|| panic!("{}: no {k} in manifest", dir.display()))
    };
    let vmci = std::fs::read_to_string(dir.join("vmcoreinfo.txt")).expect("vmcoreinfo.txt");
    let id = vmci
        .lines()
        .find_map(|l| l.strip_prefix("BUILD-ID="))
        .expect("BUILD-ID in vmcoreinfo.txt")
        .to_string();
    (get("arch"), get("release"), id)
}

/// A small static ELF of `arch` with build ID `id` and a `linux_banner` naming `release`.
fn fake_vmlinux(dir: &Path, arch: &str, id: &str, release: &str) -> PathBuf {
    let src = dir.join("v.c");
    std::fs::write(
        &src,
        format!(
            "const char linux_banner[] = \"Linux version {release} (kmemd test) #1 SMP\\n\";\n\
             void _start(void) {{}}\n"
        ),
    )
    .unwrap();
    let cc = if arch == "aarch64" {
        "aarch64-linux-gnu-gcc"
    } else {
        "gcc"
    };
    let out = dir.join(format!("vmlinux-fake-{arch}"));
    let o = Command::new(cc)
        .args(["-nostdlib", "-static", &format!("-Wl,--build-id=0x{id}"), "-o"])
        .arg(&out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("run {cc} (make deps installs it): {e}"));
    assert!(o.status.success(), "{cc}: {}", text(&o));
    out
}

fn kmemd(args: &[&str]) -> Output {
    Command::new(KMEMD).args(args).output().expect("run kmemd")
}

#[test]
fn a_vmlinux_of_another_kernel_is_refused_naming_both() {
    let Some(dirs) = fixture_dirs() else { return };
    let dir = scratch("vmlinux-match");
    let fixtures: Vec<_> = dirs
        .iter()
        .filter(|d| d.ends_with("x86_64-4l") || d.ends_with("aarch64"))
        .map(|d| (d.clone(), fixture(d)))
        .collect();
    assert_eq!(fixtures.len(), 2);
    for (d, (arch, release, id)) in &fixtures {
        let dump = d.join("vmcore.elf");
        let dump = dump.to_str().unwrap();
        let Some(right) = dbg_vmlinux(release) else {
            continue;
        };
        // The right one: taken, no warning about it.
        let o = kmemd(&["-c", dump, "-k", right.to_str().unwrap(), "--info"]);
        assert!(o.status.success(), "{arch}: {}", text(&o));
        assert!(String::from_utf8_lossy(&o.stdout).contains(release.as_str()));
        assert!(!text(&o).contains("does not match"), "{arch}: {}", text(&o));

        // Same architecture, another build (a 6.12 kernel's build ID and banner).
        let other_id = "00112233445566778899aabbccddeeff00112233";
        assert_ne!(other_id, id);
        let fake = fake_vmlinux(&dir, arch, other_id, "6.12.9-test");
        let fake = fake.to_str().unwrap();
        for mode in [
            &["--info"][..],
            &["--read", "0xffffffff81000000", "8"][..],
            &["-s", "/nonexistent/dir/sock"][..],
        ] {
            let mut args = vec!["-c", dump, "-k", fake];
            args.extend_from_slice(mode);
            let o = kmemd(&args);
            let t = text(&o);
            assert!(!o.status.success(), "{arch} {mode:?}: accepted:\n{t}");
            for want in [
                format!("{fake} does not match the dump"),
                format!("the vmlinux is Linux 6.12.9-test with build ID {other_id}"),
                format!("the dump is Linux {release} with build ID {id}"),
                "--force-vmlinux".to_string(),
            ] {
                assert!(t.contains(&want), "{arch} {mode:?}: {want:?} not in:\n{t}");
            }
            assert!(o.stdout.is_empty(), "{arch} {mode:?}: stdout {:?}", o.stdout);
        }
        // Forced: --info runs, with the mismatch as a warning.
        let o = kmemd(&["-c", dump, "-k", fake, "--force-vmlinux", "--info"]);
        assert!(o.status.success(), "{arch}: {}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("using it anyway"),
            "{}",
            text(&o)
        );

        // Another architecture's vmlinux: refused even when forced.
        let (_, (other_arch, other_release, _)) = fixtures
            .iter()
            .find(|(_, (a, _, _))| a != arch)
            .expect("the other architecture");
        if let Some(wrong) = dbg_vmlinux(other_release) {
            for force in [false, true] {
                let mut args = vec!["-c", dump, "-k", wrong.to_str().unwrap(), "--info"];
                if force {
                    args.push("--force-vmlinux");
                }
                let o = kmemd(&args);
                let t = text(&o);
                assert!(!o.status.success(), "{arch}: accepted {other_arch} vmlinux:\n{t}");
                assert!(
                    t.contains(&format!(
                        "is an {other_arch} vmlinux, but the dump is an {arch} kernel"
                    )),
                    "{arch}: {t}"
                );
                assert!(o.stdout.is_empty());
            }
        }
    }
}

/// The `CPUs:` line of `--info`.
fn cpus_line(dump: &Path) -> String {
    let o = kmemd(&["-q", "-c", dump.to_str().unwrap(), "--info"]);
    assert!(o.status.success(), "{}: {}", dump.display(), text(&o));
    let t = String::from_utf8_lossy(&o.stdout).into_owned();
    t.lines()
        .find(|l| l.starts_with("CPUs:"))
        .unwrap_or_else(|| panic!("no CPUs line in {t}"))
        .to_string()
}

/// CPU owners never show NT_PRSTATUS pr_pid as a pid: QEMU writes the CPU index + 1 there. On
/// the idle fixtures both CPUs run their idle tasks (from the task list); a truncated dump, whose
/// task list cannot be read, names the field for what it is.
#[test]
fn cpu_owners_are_tasks_not_pr_pid() {
    let Some(dirs) = fixture_dirs() else { return };
    for d in &dirs {
        let cpus = cpus_line(&d.join("vmcore.elf"));
        assert!(
            cpus.contains("CPU 0 idle") && cpus.contains("CPU 1 idle"),
            "{}: {cpus}",
            d.display()
        );
    }
    let dir = scratch("vmlinux-trunc");
    let whole = std::fs::read(dirs[0].join("vmcore.elf")).expect("read the dump");
    let cut = dir.join("truncated.elf");
    std::fs::write(&cut, whole.get(..40 << 20).expect("a dump over 40 MiB")).unwrap();
    let cpus = cpus_line(&cut);
    assert!(cpus.contains("CPU 0 pr_pid 1, CPU 1 pr_pid 2"), "{cpus}");
    assert!(
        !cpus.contains("CPU 0 pid") && !cpus.contains("CPU 1 pid"),
        "{cpus}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Live: the fixture kernel's vmlinux is not the host's kernel.
#[test]
fn live_refuses_a_vmlinux_of_another_kernel() {
    if !require_root("live_refuses_a_vmlinux_of_another_kernel") {
        return;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let host = host.trim();
    let Some(v) = dbg_vmlinux("6.1.0-57-amd64") else {
        return;
    };
    if host == "6.1.0-57-amd64" || std::env::consts::ARCH != "x86_64" {
        eprintln!("SKIP: the host runs the fixture kernel or is not x86_64");
        return;
    }
    let o = kmemd(&["-k", v.to_str().unwrap(), "--read", "0xffffffff81000000", "8"]);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("does not match the running kernel"), "{t}");
    assert!(t.contains("Linux 6.1.0-57-amd64 with build ID 6a2b4ac7"), "{t}");
    assert!(
        t.contains(&format!("the running kernel is Linux {host} with build ID")),
        "{t}"
    );
    assert!(o.stdout.is_empty());
}
