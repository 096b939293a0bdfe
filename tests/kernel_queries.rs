//! Issue 20 item 5: `--ps`, `--dmesg`, `--lsmod` and `--sym` print to stdout (logs stay on
//! stderr), with `--json` for the ones a script parses, on every fixture dump and live. Oracles:
//! makedumpfile's `--dump-dmesg` (dmesg.txt), the guest's own /proc/modules and sleep pids and the
//! addresses QEMU's `memsave` oracle was taken at (manifest.txt); live, this test's own kmemd
//! process in the task list, /proc/kallsyms, and util-linux `dmesg`.

mod common;

use common::*;
use std::process::{Command, Output};

fn kmemd(args: &[&str]) -> Output {
    Command::new(KMEMD).args(args).output().expect("run kmemd")
}

/// stdout of a successful `kmemd -q ARGS`, whose stderr must be empty.
fn stdout_of(args: &[&str]) -> String {
    let mut all = vec!["-q"];
    all.extend_from_slice(args);
    let o = kmemd(&all);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    assert!(
        o.stderr.is_empty(),
        "{args:?}: stderr {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).expect("UTF-8 stdout")
}

/// A `"key":value` field of a one-line JSON object, as written (strings keep their quotes).
fn field<'a>(obj: &'a str, key: &str) -> Option<&'a str> {
    let rest = obj.split_once(&format!("\"{key}\":"))?.1;
    let end = if rest.starts_with('"') {
        rest.get(1..)?.find('"')? + 2
    } else {
        rest.find([',', '}'])?
    };
    rest.get(..end)
}

/// Every line is one object.
fn objects(out: &str) -> Vec<&str> {
    let lines: Vec<&str> = out.lines().collect();
    assert!(!lines.is_empty(), "no JSON lines");
    for l in &lines {
        assert!(l.starts_with('{') && l.ends_with('}'), "not one object: {l}");
    }
    lines
}

#[test]
fn dump_queries_print_to_stdout() {
    let Some(dirs) = fixture_dirs() else { return };
    for d in &dirs {
        let dump = d.join("vmcore.elf");
        let dump = dump.to_str().unwrap();
        let m = manifest(d);
        let get = |k: &str| -> Vec<Vec<String>> {
            m.iter()
                .filter(|l| l.first().map(String::as_str) == Some(k))
                .cloned()
                .collect()
        };

        // dmesg: byte for byte makedumpfile's.
        let want = std::fs::read_to_string(d.join("dmesg.txt")).expect("dmesg.txt");
        assert!(
            stdout_of(&["-c", dump, "--dmesg"]) == want,
            "{}: --dmesg differs from dmesg.txt",
            d.display()
        );

        // ps: the guest's sleeps, init, and every CPU's idle task; the JSON has the same pids.
        let ps = stdout_of(&["-c", dump, "--ps"]);
        let text_pids: Vec<i64> = ps
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect();
        for s in get("sleep_pid") {
            let pid: i64 = s[1].parse().unwrap();
            assert!(
                text_pids.contains(&pid),
                "{}: no sleep pid {pid} in\n{ps}",
                d.display()
            );
        }
        assert!(
            ps.contains(" init ") && ps.contains(" swapper/1 "),
            "{}:\n{ps}",
            d.display()
        );
        let json = stdout_of(&["-c", dump, "--ps", "--json"]);
        let json_pids: Vec<i64> = objects(&json)
            .iter()
            .map(|o| field(o, "pid").expect("pid").parse().expect("number"))
            .collect();
        assert_eq!(json_pids, text_pids, "{}", d.display());
        assert!(json.contains("\"comm\":\"swapper/1\""), "{json}");

        // lsmod: the guest's /proc/modules.
        for module in get("module") {
            let (name, base, size) = (&module[1], hex(&module[2]), &module[3]);
            let lsmod = stdout_of(&["-c", dump, "--lsmod"]);
            assert!(
                lsmod.contains(name.as_str()) && lsmod.contains(&format!("{base:#x}")),
                "{lsmod}"
            );
            let json = stdout_of(&["-c", dump, "--lsmod", "--json"]);
            let obj = objects(&json)
                .into_iter()
                .find(|o| field(o, "name") == Some(&format!("\"{name}\"")))
                .unwrap_or_else(|| panic!("{}: no {name} in {json}", d.display()));
            assert_eq!(field(obj, "base"), Some(format!("\"{base:#x}\"").as_str()));
            assert_eq!(field(obj, "size"), Some(size.as_str()));
        }

        // sym: init_uts_ns where QEMU's memsave oracle was read from it; and back.
        let oracle = get("oracle")
            .into_iter()
            .find(|o| o.last().is_some_and(|p| p.ends_with("init_uts_ns.bin")))
            .expect("init_uts_ns oracle");
        let addr = hex(&oracle[2]);
        assert_eq!(
            stdout_of(&["-c", dump, "--sym", "init_uts_ns"]),
            format!("init_uts_ns = {addr:#x}\n")
        );
        assert_eq!(
            stdout_of(&["-c", dump, "--sym", "init_uts_ns", "--json"]),
            format!("{{\"name\":\"init_uts_ns\",\"address\":\"{addr:#x}\"}}\n")
        );
        let o = kmemd(&["-q", "-c", dump, "--sym", "no_such_symbol_here"]);
        assert!(!o.status.success() && o.stdout.is_empty(), "{}", text(&o));
        assert!(text(&o).contains("no symbol no_such_symbol_here"), "{}", text(&o));
    }
}

#[test]
fn live_queries_print_to_stdout() {
    if !require_root("live_queries_print_to_stdout") {
        return;
    }
    // ps: the kmemd that printed it is in its own list.
    let child = Command::new(KMEMD)
        .args(["-q", "--ps", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kmemd");
    let me = child.id();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let json = String::from_utf8_lossy(&o.stdout);
    let mine = objects(&json)
        .into_iter()
        .find(|l| field(l, "pid") == Some(me.to_string().as_str()))
        .unwrap_or_else(|| panic!("kmemd pid {me} not in\n{json}"));
    assert_eq!(field(mine, "comm"), Some("\"kmemd\""), "{mine}");

    // sym: /proc/kallsyms's address of a function.
    let kallsyms = std::fs::read_to_string("/proc/kallsyms").unwrap();
    let addr = kallsyms
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3 && w[2] == "schedule").then(|| u64::from_str_radix(w[0], 16).unwrap())
        })
        .expect("schedule in /proc/kallsyms");
    assert_eq!(
        stdout_of(&["--sym", "schedule"]),
        format!("schedule = {addr:#x}\n")
    );
    assert_eq!(
        stdout_of(&["--sym", &format!("{:#x}", addr + 1)]),
        format!("{:#x} = schedule+0x1\n", addr + 1)
    );

    // dmesg: the log util-linux dmesg reads through syslog(2) ends with lines ours has.
    let ours = stdout_of(&["--dmesg"]);
    let theirs = Command::new("dmesg").output().expect("run dmesg");
    let theirs = String::from_utf8_lossy(&theirs.stdout);
    let first = theirs.lines().next().expect("a kernel log");
    let msg = first.split_once("] ").map_or(first, |(_, m)| m);
    assert!(
        ours.lines().any(|l| l.ends_with(msg)),
        "{msg:?} not in --dmesg:\n{}",
        &ours[..ours.len().min(2000)]
    );
    // lsmod: every module /proc/modules lists (none on a kernel without modules).
    let lsmod = stdout_of(&["--lsmod"]);
    let proc_modules = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    for name in proc_modules.lines().filter_map(|l| l.split_whitespace().next()) {
        assert!(
            lsmod.lines().any(|l| l.split_whitespace().next() == Some(name)),
            "{name} not in\n{lsmod}"
        );
    }
    if proc_modules.is_empty() {
        assert!(lsmod.contains("no modules"), "{lsmod}");
    }
}
