//! `kmemd --check` and the live VMCOREINFO against this machine's real kernel (root).

mod common;

use kmemd::mem::{VirtAddr, VirtRead};
use kmemd::sys::os;
use kmemd::target::live::LiveTarget;
use kmemd::target::Target;
use kmemd::watch::perf;
use kmemd::watch::spec::{Access, Spec};
use std::process::Command;

/// Status word of the line for item `name`.
fn status<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{out}"))
}

/// Whether this kernel takes an execute breakpoint on its getpid function: asked directly,
/// independently of --check.
fn exec_breakpoints_allowed() -> bool {
    let ks = kmemd::target::live::load_kallsyms().unwrap();
    let (name, len) = if cfg!(target_arch = "x86_64") {
        ("__x64_sys_getpid", 8)
    } else {
        ("__arm64_sys_getpid", 4)
    };
    let Some(addr) = ks.lookup(name) else { return false };
    let spec = Spec {
        access: Access::X,
        len,
        addr,
        target: name.into(),
    };
    os::perf_event_open(&perf::attr_for(&spec, kmemd::arch::Arch::host()), -1, 0).is_ok()
}

#[test]
fn check_reports_this_machine() {
    if !common::require_root("check_reports_this_machine") {
        return;
    }
    let out = Command::new(common::KMEMD).arg("--check").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["bpf", "read", "kallsyms", "kaslr", "vmcoreinfo"] {
        assert_eq!(status(&text, name), "OK", "{name}:\n{text}");
    }
    // Whether this kernel takes breakpoints on kernel addresses, asked directly: some VMs refuse
    // them to root. Then the watch lines say why (and the exit code still says reads work).
    let plant = kmemd::live::plant::Plant::new(8).expect("plant");
    let refused = common::kernel_breakpoints_refused(plant.kernel_addr());
    drop(plant);
    if refused {
        let slots = text.lines().find(|l| l.contains(" watch-slots ")).unwrap();
        assert_eq!(status(&text, "watch-slots"), "FAIL", "{text}");
        common::assert_refusal_diagnosed("check_reports_this_machine", slots);
        for name in ["watch-hit", "watch-exec"] {
            assert_eq!(status(&text, name), "FAIL", "{name}:\n{text}");
            let l = text
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(name))
                .unwrap();
            assert!(l.contains("not tried"), "{l}");
        }
    } else {
        assert_eq!(status(&text, "watch-slots"), "OK", "{text}");
        assert_eq!(status(&text, "watch-hit"), "OK", "{text}");
    }
    let kcore = std::path::Path::new("/proc/kcore").exists();
    assert_eq!(
        status(&text, "kcore"),
        if kcore { "OK" } else { "MISSING" },
        "{text}"
    );
    if !refused {
        let exec = exec_breakpoints_allowed();
        assert_eq!(
            status(&text, "watch-exec"),
            if exec { "OK" } else { "MISSING" },
            "{text}"
        );
    }
    // Every line that is not OK says what to do.
    for l in text
        .lines()
        .filter(|l| !l.starts_with("OK ") && !l.starts_with("kmemd --check:"))
    {
        assert!(l.contains(" -- fix: "), "{l}");
    }
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("kmemd --check: ") && last.ends_with("kernel reads work"),
        "{last}"
    );
    // The planted address it reports is a kernel address it really read.
    let read = text.lines().find(|l| l.contains(" read ")).unwrap();
    assert!(read.contains("read back identical"), "{read}");
}

/// init_uts_ns through the live VMCOREINFO: the note names the running release, and the bytes
/// at the symbol it gives are this kernel's uname.
#[test]
fn live_vmcoreinfo_feeds_symbols() {
    if !common::require_root("live_vmcoreinfo_feeds_symbols") {
        return;
    }
    let mut t = LiveTarget::open(None).expect("live target");
    let text = t
        .monitor("vmcoreinfo")
        .expect("monitor vmcoreinfo exists")
        .unwrap();
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(
        text.contains(&format!("\nOSRELEASE={}\n", release.trim())),
        "{text}"
    );
    assert!(text.contains("\nSYMBOL(init_uts_ns)="), "{text}");
    assert!(text.lines().any(|l| l.starts_with("NUMBER(")), "{text}");

    let (addr, from) = t.lookup_symbol("init_uts_ns").expect("init_uts_ns");
    if t.kallsyms().lookup("init_uts_ns").is_none() {
        assert_eq!(from, "VMCOREINFO");
    }
    let name_off = t
        .live_vmcoreinfo()
        .unwrap()
        .info
        .offset("uts_namespace.name")
        .expect("OFFSET(uts_namespace.name)");
    // struct new_utsname: six char[65] fields, sysname then nodename (include/uapi/linux/utsname.h).
    let mut uts = [0u8; 65 * 3];
    assert_eq!(
        t.read_virt(VirtAddr(addr + name_off), &mut uts).unwrap(),
        uts.len()
    );
    let field = |i: usize| {
        let f = &uts[65 * i..65 * (i + 1)];
        String::from_utf8_lossy(&f[..f.iter().position(|&c| c == 0).unwrap()]).to_string()
    };
    assert_eq!(field(0), "Linux");
    assert_eq!(field(2), release.trim(), "release field of init_uts_ns");

    // `monitor sym` (KernelInfo) answers from the same live VMCOREINFO when kallsyms lacks it.
    let sym = t.monitor("sym init_uts_ns").unwrap().unwrap();
    assert_eq!(sym, format!("init_uts_ns = {addr:#x}\n"));
    assert!(t.monitor("sym no_such_symbol_here").unwrap().is_err());
}

/// `-w` resolves a symbol kallsyms lacks from the live VMCOREINFO.
#[test]
fn watch_resolves_vmcoreinfo_symbols() {
    if !common::require_root("watch_resolves_vmcoreinfo_symbols") {
        return;
    }
    let mut t = LiveTarget::open(None).expect("live target");
    let (addr, _) = t.lookup_symbol("init_uts_ns").expect("init_uts_ns");
    let out = Command::new(common::KMEMD)
        .args(["-w", "w8", "init_uts_ns", "-t", "0.3"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    if common::kernel_breakpoints_refused(addr) {
        // Resolved all the same: the refusal names the address it was given.
        assert!(err.contains(&format!("-w w8 {addr:#x} (init_uts_ns)")), "{err}");
        common::assert_refusal_diagnosed("watch_resolves_vmcoreinfo_symbols", &err);
        return;
    }
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("watching w8 {addr:#x} (init_uts_ns)")),
        "{err}"
    );
}
