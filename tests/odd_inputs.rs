//! Odd inputs to the kmemd binary (issue 19): files that are not files, a dump on a block device,
//! a `-t` no clock can count, a dump whose VMCOREINFO note is damaged, and the `-v` levels that
//! `--help` promises.

mod common;

use common::{fixture_dirs, in_ci, scratch, KMEMD};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs kmemd with `args` and stdin from `input`, failing the test if it has not exited within
/// 20 s (then it blocked: it is killed first, so the test run goes on).
fn kmemd(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(KMEMD)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kmemd");
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input);
    }
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect");
            panic!(
                "kmemd {args:?} was still running after 20 s (blocked):\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A refusal: exit status `code`, no panic, one ERROR line that contains every one of `want`.
fn assert_refused(what: &str, o: &Output, code: i32, want: &[&str]) {
    let e = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{what}: exit status {}:\n{e}",
        o.status
    );
    assert!(!e.contains("panicked"), "{what}: kmemd panicked:\n{e}");
    for w in want {
        assert!(e.contains(w), "{what}: expected {w:?} in:\n{e}");
    }
}

// ---- 3. files that are not files ---------------------------------------------------------------

#[test]
fn fifos_sockets_and_devices_are_named_for_what_they_are() {
    let dir = scratch("odd-files");
    let fifo = dir.join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let sock = dir.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind a socket");
    let empty = dir.join("empty");
    std::fs::write(&empty, b"").unwrap();

    let fifo_s = fifo.to_str().unwrap();
    let not_file = "is not a regular file: it is";
    let cases: Vec<(&str, Vec<&str>, Vec<String>)> = vec![
        // open(2) of a FIFO waits for a writer: kmemd must not open it at all.
        (
            "-c FIFO --info",
            vec!["-c", fifo_s, "--info"],
            vec![format!("{fifo_s} {not_file} a FIFO (named pipe)")],
        ),
        (
            "-c FIFO --read",
            vec!["-c", fifo_s, "--read", "0xffffffff81000000", "8"],
            vec![format!("{not_file} a FIFO")],
        ),
        (
            "-c SOCKET --info",
            vec!["-c", sock.to_str().unwrap(), "--info"],
            vec![format!("{not_file} a UNIX socket")],
        ),
        (
            "/dev/zero",
            vec!["-c", "/dev/zero", "--info"],
            vec![format!("/dev/zero {not_file} a character device (1:5)")],
        ),
        (
            "/dev/urandom",
            vec!["-c", "/dev/urandom", "--info"],
            vec![format!("/dev/urandom {not_file} a character device (1:9)")],
        ),
        (
            "/proc/self/mem",
            vec!["-c", "/proc/self/mem", "--info"],
            vec![format!(
                "/proc/self/mem {not_file} a file of the kernel's proc (/proc) pseudo-filesystem"
            )],
        ),
        // The same check guards -k (read by -w before anything is armed).
        (
            "-w with -k FIFO",
            vec!["-w", "w8", "0xffffffff81000000", "-k", fifo_s],
            vec![format!("{fifo_s} {not_file} a FIFO")],
        ),
    ];
    for (what, args, want) in &cases {
        let o = kmemd(args, b"");
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_refused(what, &o, 1, &want);
        assert!(
            !stderr(&o).contains("the file is empty"),
            "{what}: not an empty file:\n{}",
            stderr(&o)
        );
    }
    // A real empty file is still called empty.
    let o = kmemd(&["-c", empty.to_str().unwrap(), "--info"], b"");
    assert_refused("empty file", &o, 1, &["the file is empty"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loop device over a fixture dump, detached when dropped.
struct Loop(String);

impl Loop {
    fn attach(file: &Path) -> Result<Loop, String> {
        let o = Command::new("losetup")
            .args(["--read-only", "--find", "--show"])
            .arg(file)
            .output()
            .map_err(|e| format!("losetup: {e}"))?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
        Ok(Loop(String::from_utf8_lossy(&o.stdout).trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

/// The first `oracle kernel-data ADDR LEN FILE` of a fixture's manifest.
fn oracle(dir: &Path) -> (u64, u64, Vec<u8>) {
    let manifest = std::fs::read_to_string(dir.join("manifest.txt")).expect("manifest");
    let l = manifest
        .lines()
        .find(|l| l.starts_with("oracle kernel-data "))
        .expect("an oracle line");
    let f: Vec<&str> = l.split_whitespace().collect();
    let bytes = std::fs::read(dir.join(f[4])).expect("oracle bytes");
    (common::hex(f[2]), f[3].parse().unwrap(), bytes)
}

#[test]
fn a_block_device_holding_a_dump_is_read_like_the_file() {
    let Some(dirs) = fixture_dirs() else { return };
    if !kmemd::sys::os::is_root() {
        assert!(!in_ci(), "CI runs as root: losetup needs it");
        eprintln!("SKIP a_block_device_holding_a_dump_is_read_like_the_file: needs root (losetup)");
        return;
    }
    let dir = &dirs[0];
    let file = dir.join("mdf-zlib-d31.kdump");
    let dev = Loop::attach(&file)
        .unwrap_or_else(|e| panic!("no loop device for {} ({e}); this test needs one", file.display()));
    let meta = std::fs::metadata(&dev.0).expect("stat the loop device");
    assert!(
        std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type()),
        "{} is not a block device",
        dev.0
    );
    let from_file = kmemd(&["-c", file.to_str().unwrap(), "--info"], b"");
    let from_dev = kmemd(&["-c", &dev.0, "--info"], b"");
    assert!(from_file.status.success(), "{}", stderr(&from_file));
    assert!(
        from_dev.status.success(),
        "-c {} --info failed:\n{}",
        dev.0,
        stderr(&from_dev)
    );
    assert_eq!(
        String::from_utf8_lossy(&from_dev.stdout),
        String::from_utf8_lossy(&from_file.stdout),
        "the device and the file must describe the same dump"
    );
    assert!(String::from_utf8_lossy(&from_dev.stdout).contains("kdump-compressed"));
    let (addr, len, want) = oracle(dir);
    let o = kmemd(
        &["-c", &dev.0, "--read", &format!("{addr:#x}"), &len.to_string()],
        b"",
    );
    assert!(o.status.success(), "--read from {}:\n{}", dev.0, stderr(&o));
    assert!(
        o.stdout == want,
        "--read from {} differs from QEMU's memsave",
        dev.0
    );
}

// ---- 4. -t -------------------------------------------------------------------------------------

#[test]
fn a_watch_time_the_clock_cannot_count_is_refused_before_arming() {
    // These passed the option checks and then overflowed once the watchpoints were armed.
    for t in ["1e20", "1e300", "inf", "31536001"] {
        let o = kmemd(&["-w", "w8", "0xffffffff81000000", "-t", t], b"");
        assert_refused(
            &format!("-t {t}"),
            &o,
            2,
            &[
                "more than a year (31536000 seconds), the longest -t",
                "leave out -t",
            ],
        );
        assert!(o.stdout.is_empty());
    }
    for t in ["nan", "-3", "0"] {
        let o = kmemd(&["-w", "w8", "0xffffffff81000000", "-t", t], b"");
        assert_refused(&format!("-t {t}"), &o, 2, &["-t: "]);
    }
    // --help states the same cap.
    let help = String::from_utf8_lossy(&kmemd(&["--help"], b"").stdout).into_owned();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        help.contains("stop after SECONDS (at most 31536000, a year)"),
        "{help}"
    );
}

// ---- 5. a damaged VMCOREINFO -------------------------------------------------------------------

/// The VMCOREINFO key without which each fixture's page tables cannot be found.
fn key_for(dir: &Path) -> &'static str {
    if dir.ends_with("aarch64") {
        "NUMBER(kimage_voffset)"
    } else {
        "NUMBER(phys_base)"
    }
}

/// How one test damages the note: `text` is the note as the kernel wrote it, `at` the offset of
/// the key's line in it. Returns the note's new bytes, and the offset and description the error
/// must give.
type Damage = fn(text: &[u8], at: usize) -> (Vec<u8>, usize, &'static str);

fn nul_in_key(text: &[u8], at: usize) -> (Vec<u8>, usize, &'static str) {
    let mut t = text.to_vec();
    t[at + 9] = 0;
    (t, at + 9, "a NUL byte")
}

fn non_utf8_in_value(text: &[u8], at: usize) -> (Vec<u8>, usize, &'static str) {
    let mut t = text.to_vec();
    let eq = at + t[at..].iter().position(|&b| b == b'=').unwrap();
    t[eq + 2] = 0xff;
    (t, eq + 2, "byte 0xff, which is not text (not UTF-8)")
}

/// A note cut short inside the key's line (its tail zeroed, as a short copy leaves it).
fn cut_in_value(text: &[u8], at: usize) -> (Vec<u8>, usize, &'static str) {
    let mut t = text.to_vec();
    let eq = at + t[at..].iter().position(|&b| b == b'=').unwrap();
    for b in &mut t[eq + 3..] {
        *b = 0;
    }
    (t, eq + 3, "a line cut short (the note ends with no newline)")
}

#[test]
fn a_damaged_vmcoreinfo_note_is_blamed_where_it_stops_being_text() {
    let Some(dirs) = fixture_dirs() else { return };
    let scratch_dir = scratch("vmcoreinfo-damage");
    let damages: [(&str, Damage); 3] = [
        ("NUL", nul_in_key),
        ("0xff", non_utf8_in_value),
        ("cut", cut_in_value),
    ];
    for dir in &dirs {
        let text = std::fs::read(dir.join("vmcoreinfo.txt")).expect("vmcoreinfo.txt");
        let key = key_for(dir);
        let at = text
            .windows(key.len())
            .position(|w| w == key.as_bytes())
            .unwrap_or_else(|| panic!("{key} not in {}/vmcoreinfo.txt", dir.display()));
        let line = 1 + text[..at].iter().filter(|&&b| b == b'\n').count();
        let (addr, len, _) = oracle(dir);
        let read = [format!("{addr:#x}"), len.to_string()];
        for dump in ["mdf-d31.elf", "mdf-zlib-d31.kdump"] {
            let src = dir.join(dump);
            let bytes = std::fs::read(&src).expect("fixture dump");
            // The note is the first copy of the text in the file: ELF notes and the kdump
            // header's VMCOREINFO come before any page (ELF pages hold more copies: kernel
            // memory, never read for the note).
            let note = bytes
                .windows(text.len())
                .position(|w| w == &text[..])
                .unwrap_or_else(|| panic!("no VMCOREINFO text in {}", src.display()));
            // The undamaged dump reads: what fails below fails because of the damage.
            let o = kmemd(&["-c", src.to_str().unwrap(), "--read", &read[0], &read[1]], b"");
            assert!(o.status.success(), "{}: {}", src.display(), stderr(&o));
            for (name, damage) in &damages {
                let what = format!("{} {dump} with {name}", dir.display());
                let (damaged, off, found) = damage(&text, at);
                let mut copy = bytes.clone();
                copy[note..note + text.len()].copy_from_slice(&damaged);
                let path: PathBuf = scratch_dir.join(format!("{name}-{dump}"));
                std::fs::write(&path, &copy).unwrap();
                let p = path.to_str().unwrap();
                let blame = format!(
                    "VMCOREINFO note is corrupt: {found} at offset {off:#x} of the note (line {line}: "
                );
                // A cut note lost every key after the cut; the first the arch needs is named.
                let lacks = match *name {
                    "cut" => "so it lacks ".to_string(),
                    _ => format!("so it lacks {key} and "),
                };
                let o = kmemd(&["-c", p, "--read", &read[0], &read[1]], b"");
                assert_refused(&what, &o, 1, &[&blame, &lacks, "The dump file is damaged"]);
                let e = stderr(&o);
                assert!(
                    !e.contains("kernels before") && !e.contains("has no NUMBER"),
                    "{what}: the kernel is blamed:\n{e}"
                );
                assert!(o.stdout.is_empty(), "{what}: bytes came out");
                // --info still describes the file, with the damage.
                let o = kmemd(&["-c", p, "--info"], b"");
                let info = String::from_utf8_lossy(&o.stdout);
                assert!(o.status.success(), "{what} --info: {}", stderr(&o));
                assert!(
                    info.contains(&format!("warning:       the {blame}")),
                    "{what} --info:\n{info}"
                );
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch_dir);
}

// ---- 7. -v -------------------------------------------------------------------------------------

/// What `--help` says each number of -v gives: (number of v, level name), from its
/// "-v X, -vv Y (the default is Z)".
fn levels_in_help() -> Vec<(usize, String)> {
    let help = String::from_utf8_lossy(&kmemd(&["--help"], b"").stdout).into_owned();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let start = help.find("more log output: ").expect("the -v line of --help") + 17;
    let end = start + help[start..].find(')').expect("-v line ends");
    let line = &help[start..end];
    let mut out = Vec::new();
    for part in line.split([',', '(']) {
        let words: Vec<&str> = part.split_whitespace().collect();
        match words.as_slice() {
            [flag, level] if flag.starts_with("-v") && flag[1..].chars().all(|c| c == 'v') => {
                out.push((flag.len() - 1, level.to_string()))
            }
            ["the", "default", "is", level] => out.push((0, level.to_string())),
            _ => panic!("cannot read {part:?} in the -v help: {line}"),
        }
    }
    out.sort();
    out
}

/// The most verbose level in a kmemd log.
fn most_verbose(log: &str) -> &'static str {
    for level in ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"] {
        if log.lines().any(|l| l.starts_with(level)) {
            return level;
        }
    }
    "nothing"
}

#[test]
fn the_v_levels_are_what_help_says() {
    let claims = levels_in_help();
    assert_eq!(
        claims.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
        [0, 1, 2],
        "--help must name the default, -v and -vv: {claims:?}"
    );
    let Some(dirs) = fixture_dirs() else { return };
    let dump = dirs[0].join("mdf-zlib-d31.kdump");
    let dir = scratch("v-levels");
    // One RSP packet on stdin, then EOF: kmemd logs it (TRACE), GDB's features (DEBUG) and the
    // session (INFO), each at its level.
    let payload = b"qSupported:multiprocess+";
    let sum = payload.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    let mut packet = b"$".to_vec();
    packet.extend_from_slice(payload);
    packet.extend_from_slice(format!("#{sum:02x}").as_bytes());
    for (n, level) in &claims {
        let log = dir.join(format!("v{n}.log"));
        let mut args = vec![
            "-c",
            dump.to_str().unwrap(),
            "-s",
            "-",
            "--log",
            log.to_str().unwrap(),
        ];
        let v = format!("-{}", "v".repeat(*n));
        if *n > 0 {
            args.push(&v);
        }
        let o = kmemd(&args, &packet);
        assert!(o.status.success(), "kmemd {args:?}: {}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("PacketSize="),
            "no reply to qSupported"
        );
        let text = std::fs::read_to_string(&log).expect("the log");
        assert_eq!(
            most_verbose(&text),
            level.to_uppercase(),
            "--help says {} gives {level}, but the log is:\n{text}",
            if *n == 0 { "no -v".to_string() } else { v.clone() }
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
