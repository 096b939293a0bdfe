//! Issue 20 item 9: every kmemd command the README and `--help` show runs as a test. Here: the
//! dump ones against a fixture dump, the live reads and GDB servers on this host (root), each
//! as shown with only the paths and port filled in; the watchpoint ones and `--check` run in the
//! kernel lab (tests/lab/examples.rs, tests/lab/check.rs), and the serial-line and stdio forms
//! in tests/gdb_live.rs: each such example must be claimed by a test function that exists.

mod common;

use common::examples::{self, command_in, Example};
use common::*;
use std::path::Path;
use std::process::Command;

/// Where an example is run.
#[derive(Debug, PartialEq, Eq)]
enum How {
    /// `kmemd -c DUMP ...` here, on a fixture.
    Dump,
    /// `kmemd -c DUMP -s SPEC`, then GDB connects.
    ServeDump,
    /// A live read here (root).
    Live,
    /// A live server here (root), then GDB connects.
    ServeLive,
    /// By the test function `fn` in `file`.
    Elsewhere(&'static str, &'static str),
}

fn how(cmd: &str) -> How {
    let has = |s: &str| cmd.split_whitespace().any(|w| w == s);
    if has("-w") {
        How::Elsewhere("tests/lab/examples.rs", "watch_examples_run_in_the_guests")
    } else if has("--check") {
        How::Elsewhere(
            "tests/lab/check.rs",
            "check_passes_with_every_capability_in_debian_kernels",
        )
    } else if cmd.contains("/dev/tty") {
        How::Elsewhere(
            "tests/gdb_live.rs",
            "serial_line_serves_planted_bytes_to_both_gdbs",
        )
    } else if cmd.contains("-s -") {
        How::Elsewhere(
            "tests/gdb_live.rs",
            "stdio_pipe_serves_planted_bytes_to_both_gdbs",
        )
    } else if has("-c") && has("-s") {
        How::ServeDump
    } else if has("-c") {
        How::Dump
    } else if has("-s") {
        How::ServeLive
    } else {
        How::Live
    }
}

fn readme() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")
}

/// The example with the dump, socket and port filled in.
fn fill(cmd: &str, dump: &Path, dir: &Path, port: u16) -> String {
    cmd.split(' ')
        .map(|w| match w {
            "kmemd" => KMEMD.to_string(),
            "vmcore" | "/var/crash/vmcore" => dump.display().to_string(),
            "/tmp/gdb.sock" => dir.join("gdb.sock").display().to_string(),
            ":1234" => format!(":{port}"),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn commands_are_cut_out_of_their_lines() {
    let c = |l: &str| command_in(l);
    assert_eq!(
        c("  sudo kmemd -s :1234                   then: gdb vmlinux -ex 'target remote :1234'").as_deref(),
        Some("kmemd -s :1234")
    );
    assert_eq!(
        c("gdb vmlinux -ex 'target remote | ssh -T root@board kmemd -s - 2>/dev/null'").as_deref(),
        Some("kmemd -s - 2>/dev/null")
    );
    assert_eq!(
        c("make && sudo ./target/release/kmemd -s /tmp/gdb.sock").as_deref(),
        Some("kmemd -s /tmp/gdb.sock")
    );
    assert_eq!(
        c("kmemd -c /var/crash/vmcore --info          # format").as_deref(),
        Some("kmemd -c /var/crash/vmcore --info")
    );
    assert_eq!(
        c("  sudo kmemd --read _text 64 | xxd      (ADDR in hex)").as_deref(),
        Some("kmemd --read _text 64 | xxd")
    );
    assert_eq!(
        c("ssh root@board kmemd --check").as_deref(),
        Some("kmemd --check")
    );
    assert_eq!(
        c("make cross              # target/aarch64-unknown-linux-musl/release/kmemd"),
        None
    );
    assert_eq!(
        c("scp target/aarch64-unknown-linux-musl/release/kmemd root@board:/usr/local/bin/"),
        None
    );
}

/// The examples are found (a change to --help or the README that hides them fails here), and
/// each one claimed by another file is claimed by a test that exists.
#[test]
fn every_example_has_a_test() {
    let all = examples::all(KMEMD, &readme());
    let from = |f: &str| all.iter().filter(|e| e.from == f).count();
    assert!(from("--help") >= 8 && from("README.md") >= 12, "{all:#?}");
    for e in &all {
        if let How::Elsewhere(file, test) = how(&e.cmd) {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            let src = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{file}: {err}"));
            assert!(
                src.contains(&format!("fn {test}()")),
                "{e:?}: {file} has no test {test}"
            );
        }
    }
}

fn run_shell(e: &Example, line: &str) -> String {
    let o = Command::new("bash")
        .args(["-o", "pipefail", "-c", line])
        .output()
        .expect("run bash");
    assert!(o.status.success(), "{e:?} as `{line}`: {}", text(&o));
    assert!(!o.stdout.is_empty(), "{e:?}: no output");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn serve_and_connect(e: &Example, line: &str, dir: &Path, port: u16) {
    let words: Vec<&str> = line.split_whitespace().skip(1).collect();
    let mut k = Kmemd::spawn(&words, dir.join("kmemd.log"));
    let target = if words.contains(&"-s") && line.contains(&format!(":{port}")) {
        k.wait_tcp(port);
        format!(":{port}")
    } else {
        let sock = dir.join("gdb.sock");
        k.wait_unix(&sock);
        sock.display().to_string()
    };
    let o = gdb_batch(Path::new("gdb"), &target, &["monitor version".to_string()]);
    let t = text(&o);
    assert!(
        t.contains(&format!("kmemd {}", env!("CARGO_PKG_VERSION"))),
        "{e:?}: {t}\n{}",
        k.log_text()
    );
}

#[test]
fn dump_and_host_examples_run() {
    let Some(dirs) = fixture_dirs() else { return };
    let dump = dirs[0].join("vmcore.elf");
    let root = require_root("dump_and_host_examples_run (live examples)");
    for (i, e) in examples::all(KMEMD, &readme()).iter().enumerate() {
        let dir = scratch(&format!("example-{i}"));
        let port = free_port();
        let line = fill(&e.cmd, &dump, &dir, port);
        eprintln!("example ({}): {} -> {:?}", e.from, e.cmd, how(&e.cmd));
        match how(&e.cmd) {
            How::Dump => {
                let out = run_shell(e, &line);
                if e.cmd.contains("| xxd") {
                    assert_eq!(out.lines().count(), 4, "{e:?}: {out}");
                }
            }
            How::Live if root => {
                let out = run_shell(e, &line);
                if e.cmd.contains("--read _text 64 | xxd") {
                    assert_eq!(out.lines().count(), 4, "{e:?}: {out}");
                }
            }
            How::ServeDump => serve_and_connect(e, &line, &dir, port),
            How::ServeLive if root => serve_and_connect(e, &line, &dir, port),
            How::Live | How::ServeLive | How::Elsewhere(..) => {}
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
