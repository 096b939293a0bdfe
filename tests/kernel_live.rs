//! Kernel knowledge on this machine's running kernel: BTF from /sys/kernel/btf/vmlinux, symbols
//! from /proc/kallsyms, and VMCOREINFO read through the direct map found by searching for the
//! note /sys/kernel/vmcoreinfo locates (confirmed with the kernel's own text).

mod common;

use common::*;
use kmemd::kernel::btf::Btf;
use kmemd::live::vmcoreinfo;
use kmemd::mem::{read_exact, read_u64, VirtRead};
use kmemd::target::live::LiveTarget;
use kmemd::target::Target;

#[test]
fn btf_of_the_running_kernel() {
    let data = match std::fs::read("/sys/kernel/btf/vmlinux") {
        Ok(d) => d,
        Err(e) => {
            assert!(!in_ci(), "CI kernels have BTF: {e}");
            eprintln!("SKIP: no /sys/kernel/btf/vmlinux: {e}");
            return;
        }
    };
    let btf = Btf::parse(data).expect("parse the kernel's BTF");
    assert!(btf.type_count() > 10_000, "{} types", btf.type_count());
    let comm = btf
        .member_by_name("task_struct", "comm")
        .expect("task_struct.comm");
    assert_eq!(comm.size, 16, "TASK_COMM_LEN");
    assert_eq!(comm.bitfield_bits, 0);
    let pid = btf.member_by_name("task_struct", "pid").expect("task_struct.pid");
    assert_eq!(pid.size, 4);
    assert_ne!(pid.offset_bits, comm.offset_bits);
    let size = btf.size_of_name("task_struct").unwrap();
    assert!(comm.offset() + 16 <= size && pid.offset() + 4 <= size);
    // list_head through its typedef-free struct, and a member reached through an anonymous
    // union: struct page's `lru` sits in an anonymous struct inside an anonymous union (6.x).
    assert_eq!(btf.size_of_name("list_head"), Some(16));
    assert_eq!(
        btf.member_by_name("list_head", "prev").map(|m| m.offset()),
        Some(8)
    );
    assert_eq!(btf.member_by_name("page", "lru").map(|m| m.size), Some(16));
    // Bitfields use the kind_flag encoding: task_struct.sched_reset_on_fork is `unsigned :1`
    // (include/linux/sched.h, 6.x).
    let bf = btf
        .member_by_name("task_struct", "sched_reset_on_fork")
        .expect("bitfield");
    assert_eq!(bf.bitfield_bits, 1);
    // A typedef chain: pid_t -> __kernel_pid_t -> int.
    assert_eq!(btf.size_of_name("pid_t"), Some(4));
    // Dotted paths: x86_64 thread.sp, arm64 thread.cpu_context.
    let path = if cfg!(target_arch = "x86_64") {
        "thread.sp"
    } else {
        "thread.cpu_context"
    };
    let m = btf.member_by_name("task_struct", path).expect(path);
    assert!(m.offset() > 0 && m.offset() < size);
}

#[test]
fn kernel_info_live() {
    if !require_root("kernel_info_live") {
        return;
    }
    let mut t = LiveTarget::open(None).expect("live target");
    let arch = t.arch();
    let text = t.kallsyms().lookup("_text").expect("_text");
    let kallsyms = t.kallsyms().clone();
    let live = vmcoreinfo::load(&mut t as &mut dyn VirtRead, arch, &|n| kallsyms.lookup(n))
        .expect("read VMCOREINFO through the direct map");
    eprintln!("direct map {:#x}: {}", live.direct_map, live.how);
    assert!(
        live.how.contains("_text"),
        "the base was confirmed with the kernel text: {}",
        live.how
    );
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let started = std::time::Instant::now();
    // The assembly `kmemd -s` uses (LiveTarget::kernel_info), not one built for the test.
    let k = t.kernel_info();
    eprintln!(
        "built in {:?}\nsources {:?}\nmissing {:?}",
        started.elapsed(),
        k.sources(),
        k.missing()
    );
    assert!(k.missing().is_empty(), "{:?}", k.missing());
    assert_eq!(k.vmcoreinfo().osrelease(), Some(release.trim()));
    assert!(k.btf().is_some(), "{:?}", k.missing());
    assert!(
        k.symbol("prb").is_some(),
        "prb from VMCOREINFO: {:?}",
        k.missing()
    );
    assert_eq!(k.symbol("_text"), Some(text));
    let (name, off) = k.symbolize(text + 3).unwrap();
    assert_eq!(off, 3, "{name}");
    let comm = k.member("task_struct", "comm").unwrap();
    assert_eq!(comm.size, 16);
    // VMCOREINFO's `init_uts_ns` holds the release string at OFFSET(uts_namespace.name) +
    // the offset of `release` in `struct new_utsname` (BTF).
    let uts = k.symbol("init_uts_ns").expect("init_uts_ns");
    let name_off = k.member("uts_namespace", "name").unwrap().offset();
    let rel_off = k.member("new_utsname", "release").unwrap().offset();
    // init_task, found in the image's data when kallsyms lacks it: walking its `tasks` list
    // reaches this test process, by pid and comm.
    let init = k.symbol("init_task").expect("init_task");
    let tasks = k.member("task_struct", "tasks").unwrap().offset();
    let pid_off = k.member("task_struct", "pid").unwrap().offset();
    let mut buf = vec![0u8; release.trim().len()];
    read_exact(&mut t as &mut dyn VirtRead, uts + name_off + rel_off, &mut buf).unwrap();
    assert_eq!(buf, release.trim().as_bytes());

    let me = std::process::id();
    let my_comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    let mut node = read_u64(&mut t as &mut dyn VirtRead, init + tasks).unwrap();
    let mut seen = 0;
    let mut found = false;
    while node != init + tasks && seen < 100_000 {
        let task = node - tasks;
        let mut pid = [0u8; 4];
        read_exact(&mut t as &mut dyn VirtRead, task + pid_off, &mut pid).unwrap();
        if u32::from_le_bytes(pid) == me {
            let mut c = [0u8; 16];
            read_exact(&mut t as &mut dyn VirtRead, task + comm.offset(), &mut c).unwrap();
            let len = c.iter().position(|&b| b == 0).unwrap_or(16);
            assert_eq!(&c[..len], my_comm.trim().as_bytes());
            found = true;
            break;
        }
        node = read_u64(&mut t as &mut dyn VirtRead, node).unwrap();
        seen += 1;
    }
    assert!(found, "pid {me} not on init_task's list after {seen} tasks");
}

#[test]
fn kallsyms_decoded_from_live_memory_match_proc_kallsyms() {
    if !require_root("kallsyms_decoded_from_live_memory_match_proc_kallsyms") {
        return;
    }
    let mut t = LiveTarget::open(None).expect("live target");
    let arch = t.arch();
    assert!(t.kallsyms().lookup("_text").is_some(), "_text in kallsyms");
    let kallsyms = t.kallsyms().clone();
    let live = vmcoreinfo::load(&mut t as &mut dyn VirtRead, arch, &|n| kallsyms.lookup(n))
        .expect("live VMCOREINFO");
    let vmci = kmemd::mem::vmcoreinfo::VmcoreInfo::parse(live.text.as_bytes());
    let decoded = kmemd::kernel::kallsyms::decode(&mut t as &mut dyn VirtRead, &vmci).expect("decode");
    let proc: std::collections::HashSet<(String, u64)> = t
        .kallsyms()
        .symbols()
        .filter(|s| s.module.is_none())
        .map(|s| (s.name.to_string(), s.addr))
        .collect();
    // /proc/kallsyms lists the same table (plus module, BPF and ftrace symbols): every decoded
    // symbol is there at the same address, and the decoded table is all of /proc's core symbols.
    let missing: Vec<_> = decoded
        .iter()
        .filter(|s| !proc.contains(&(s.name.clone(), s.addr)))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "decoded but not in /proc/kallsyms: {missing:?}"
    );
    let decoded_set: std::collections::HashSet<(String, u64)> =
        decoded.iter().map(|s| (s.name.clone(), s.addr)).collect();
    let only_proc: Vec<_> = proc.difference(&decoded_set).take(5).collect();
    assert!(
        only_proc.is_empty(),
        "in /proc/kallsyms but not decoded: {only_proc:?}"
    );
    eprintln!(
        "{} symbols decoded from live memory, all in /proc/kallsyms ({} core)",
        decoded.len(),
        proc.len()
    );
}
