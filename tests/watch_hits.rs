//! `kmemd -w` against the real kernel: a planted BPF map value written by the kernel on demand,
//! watched by the built binary. Needs root (CAP_BPF, CAP_PERFMON); skipped only outside CI.

mod common;

use common::hex;

use kmemd::live::plant::Plant;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Debug registers are few (4 on x86): run the watch tests one at a time.
static SLOTS: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SLOTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `kmemd -w ...` whose stderr is collected line by line.
struct Watch {
    child: Child,
    stderr: Receiver<String>,
    err_text: String,
    stdout: std::thread::JoinHandle<String>,
}

struct Done {
    status: ExitStatus,
    out: String,
    err: String,
}

impl Watch {
    /// Starts kmemd with `-v` and waits until it says it is watching (so writes made after
    /// this returns are watched).
    fn start(args: &[&str]) -> Watch {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kmemd"))
            .arg("-v")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kmemd");
        let mut out = child.stdout.take().unwrap();
        let stdout = std::thread::spawn(move || {
            let mut s = String::new();
            out.read_to_string(&mut s).unwrap();
            s
        });
        let err = child.stderr.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut w = Watch {
            child,
            stderr: rx,
            err_text: String::new(),
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match w.stderr.recv_timeout(left) {
                Ok(line) => {
                    w.err_text.push_str(&line);
                    w.err_text.push('\n');
                    if line.contains("watching") {
                        return w;
                    }
                }
                Err(_) => {
                    let _ = w.child.kill();
                    panic!("kmemd {args:?} did not start watching:\n{}", w.err_text);
                }
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for kmemd to exit by itself (killing it after `limit`, which fails the test).
    fn wait(mut self, limit: Duration) -> Done {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("kmemd did not stop within {limit:?}:\n{}", self.err_text);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        while let Ok(line) = self.stderr.recv_timeout(Duration::from_secs(2)) {
            self.err_text.push_str(&line);
            self.err_text.push('\n');
        }
        Done {
            status,
            out: self.stdout.join().unwrap(),
            err: self.err_text,
        }
    }
}

/// Runs kmemd to completion for an error path.
fn run_fail(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kmemd"))
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "kmemd {args:?} should fail");
    assert!(out.stdout.is_empty(), "nothing on stdout for an error");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A string field of a JSON line (the values kmemd prints never contain escaped quotes).
fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let k = format!("\"{key}\":\"");
    let start = line.find(&k)? + k.len();
    let end = start + line[start..].find('"')?;
    Some(&line[start..end])
}

fn stack(line: &str) -> Vec<String> {
    let start = line.find("\"stack\":[").expect("stack field") + 9;
    // The stack is the last field: `"stack":["a+0x1","b+0x2 [mod]"]}`.
    let end = line.rfind("]}").expect("stack end");
    let inner = line[start..end].trim_matches('"');
    if inner.is_empty() {
        return Vec::new();
    }
    inner.split("\",\"").map(str::to_string).collect()
}

fn summary_hits(err_or_out: &str) -> u64 {
    let l = err_or_out
        .lines()
        .find(|l| l.starts_with("summary: "))
        .expect("a summary line");
    l["summary: ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn addr_arg(p: &Plant) -> String {
    format!("{:#x}", p.kernel_addr())
}

/// On a host whose kernel refuses kernel breakpoints to root, kmemd must say so (and the test
/// checks that instead of its hits, which the kernel lab covers). True when that was the case.
fn host_refuses(test: &str, plant: &Plant) -> bool {
    if !common::kernel_breakpoints_refused(plant.kernel_addr()) {
        return false;
    }
    let e = run_fail(&["-w", "w8", &addr_arg(plant), "-t", "1"]);
    common::assert_refusal_diagnosed(test, &e);
    true
}

#[test]
fn bpf_test_run_writes_hit_once_each_with_value_and_stack() {
    if !common::require_root("bpf_test_run_writes_hit_once_each_with_value_and_stack") {
        return;
    }
    let _g = serial();
    let plant = Plant::new(8).unwrap();
    let a = addr_arg(&plant);
    if host_refuses("bpf_test_run_writes_hit_once_each_with_value_and_stack", &plant) {
        return;
    }
    let w = Watch::start(&["-w", "w8", &a, "-t", "3", "--json"]);
    plant.bump(500).unwrap();
    let d = w.wait(Duration::from_secs(15));
    assert!(d.status.success(), "{}", d.err);
    let lines: Vec<&str> = d.out.lines().collect();
    assert_eq!(lines.len(), 500, "one hit per BPF store:\n{}", d.err);
    assert_eq!(summary_hits(&d.err), 500);
    assert!(d.err.contains(", 0 lost"), "{}", d.err);
    assert!(d.err.contains("kernel counted 500 traps: 500 shown"), "{}", d.err);
    for l in &lines {
        assert_eq!(field(l, "watch_addr"), Some(a.as_str()));
        assert_eq!(field(l, "type"), Some("w8"));
        let st = stack(l).join(" ");
        assert!(st.contains("bpf_test_run"), "stack names the test run: {st}");
        assert!(st.contains("sys_bpf"), "stack names the bpf syscall: {st}");
        assert!(
            !st.contains("0xffffffffffffff80"),
            "context markers skipped: {st}"
        );
    }
    // Values are read after the hits: they never go backwards and end at what the kernel wrote.
    let values: Vec<u64> = lines.iter().map(|l| hex(field(l, "value").unwrap())).collect();
    assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    let planted = u64::from_ne_bytes(plant.read_back().unwrap()[..8].try_into().unwrap());
    assert_eq!(planted, 500);
    assert_eq!(*values.last().unwrap(), planted);
    assert_eq!(field(lines[0], "prev"), Some("0x0000000000000000"));
    let seqs: Vec<u64> = lines
        .iter()
        .map(|l| {
            l.split("\"seq\":")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (1..=500).collect::<Vec<u64>>());
}

#[test]
fn map_update_from_user_space_traps_once_per_byte_copied() {
    if !common::require_root("map_update_from_user_space_traps_once_per_byte_copied") {
        return;
    }
    let _g = serial();
    let plant = Plant::new(8).unwrap();
    let a = addr_arg(&plant);
    if host_refuses("map_update_from_user_space_traps_once_per_byte_copied", &plant) {
        return;
    }
    let w = Watch::start(&["-w", "w8", &a, "-t", "3", "--json"]);
    let updates = 10u64;
    for i in 1..=updates {
        plant.write(&(0x1122_3344_5566_7700 + i).to_ne_bytes()).unwrap();
    }
    let d = w.wait(Duration::from_secs(15));
    assert!(d.status.success(), "{}", d.err);
    let lines: Vec<&str> = d.out.lines().collect();
    // The kernel copies the value with `rep movsb` on this CPU (erms/fsrm): each byte stored
    // is one trap. A CPU without fast string moves may store 8 bytes at once: 1 trap.
    let per_update = lines.len() as u64 / updates;
    assert_eq!(
        lines.len() as u64 % updates,
        0,
        "{} hits for {updates} updates",
        lines.len()
    );
    assert!(
        per_update == 8 || per_update == 1,
        "{per_update} traps per update"
    );
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    if cpuinfo.contains(" erms") && cpuinfo.contains(" fsrm") {
        assert_eq!(per_update, 8, "rep movsb traps per byte here");
    }
    for l in &lines {
        let st = stack(l).join(" ");
        assert!(st.contains("map_update"), "stack names the map update: {st}");
        assert!(st.contains("sys_bpf"), "{st}");
    }
    let last = hex(field(lines.last().unwrap(), "value").unwrap());
    assert_eq!(
        last,
        0x1122_3344_5566_7700 + updates,
        "value written by the last update"
    );
}

#[test]
fn rw_tells_reads_from_writes() {
    if !common::require_root("rw_tells_reads_from_writes") {
        return;
    }
    let _g = serial();
    let plant = Plant::new(8).unwrap();
    let a = addr_arg(&plant);
    if host_refuses("rw_tells_reads_from_writes", &plant) {
        return;
    }
    let (bumps, loads) = (200u64, 50u64);
    let count = |ty: &str| {
        let w = Watch::start(&["-w", ty, &a, "-t", "2", "--json"]);
        plant.bump(bumps as u32).unwrap();
        plant.load(loads as u32).unwrap();
        let d = w.wait(Duration::from_secs(15));
        assert!(d.status.success(), "{}", d.err);
        d.out.lines().count() as u64
    };
    // plant_bump is a load and a store (two BPF instructions, two JIT'ed instructions);
    // plant_load is one load. A write watch sees the stores only, a read-write one everything.
    assert_eq!(count("w8"), bumps, "w8 sees the stores only");
    assert_eq!(count("rw8"), 2 * bumps + loads, "rw8 sees every load and store");
}

#[test]
fn count_limit_stops_after_n_hits() {
    if !common::require_root("count_limit_stops_after_n_hits") {
        return;
    }
    let _g = serial();
    let plant = Plant::new(8).unwrap();
    let a = addr_arg(&plant);
    if host_refuses("count_limit_stops_after_n_hits", &plant) {
        return;
    }
    let w = Watch::start(&["-w", "w8", &a, "-n", "5"]);
    plant.bump(100).unwrap();
    let d = w.wait(Duration::from_secs(10));
    assert!(d.status.success(), "{}", d.err);
    assert_eq!(d.out.matches("\n  value 0x").count(), 5, "{}", d.out);
    assert!(d.out.contains("#5 ") && !d.out.contains("#6 "), "{}", d.out);
    assert!(
        d.out.contains("summary: 5 hits") && d.out.contains("hit count reached"),
        "{}",
        d.out
    );
    assert!(d.out.contains("per call site:"), "{}", d.out);
}

#[test]
fn time_limit_stops_an_idle_watch() {
    if !common::require_root("time_limit_stops_an_idle_watch") {
        return;
    }
    let _g = serial();
    let plant = Plant::new(8).unwrap();
    let a = addr_arg(&plant);
    if host_refuses("time_limit_stops_an_idle_watch", &plant) {
        return;
    }
    let t0 = Instant::now();
    let w = Watch::start(&["-w", "w8", &a, "-t", "0.5", "--json"]);
    let d = w.wait(Duration::from_secs(10));
    let took = t0.elapsed();
    assert!(d.status.success(), "{}", d.err);
    assert!(d.out.is_empty());
    assert!(
        d.err.contains("summary: 0 hits") && d.err.contains("time limit"),
        "{}",
        d.err
    );
    assert!(took >= Duration::from_millis(500), "{took:?}");
}

#[test]
fn sigint_during_a_storm_stops_fast_with_a_summary() {
    if !common::require_root("sigint_during_a_storm_stops_fast_with_a_summary") {
        return;
    }
    let _g = serial();
    let plant = Plant::new(8).unwrap();
    let a = addr_arg(&plant);
    if host_refuses("sigint_during_a_storm_stops_fast_with_a_summary", &plant) {
        return;
    }
    let w = Watch::start(&["-w", "w8", &a]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                plant.bump(2000).unwrap();
                n += 2000;
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let pid = w.pid().to_string();
    let st = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(st.success());
    let t0 = Instant::now();
    let d = w.wait(Duration::from_secs(5));
    let took = t0.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(d.status.success(), "{}", d.err);
    assert!(d.out.contains("(interrupted)"), "summary on stop:\n{}", d.err);
    let hits = summary_hits(&d.out);
    assert!(hits > 0 && hits <= written, "{hits} hits of {written} writes");
    assert!(took < Duration::from_millis(100), "stopped {took:?} after SIGINT");
}

#[test]
fn refusals_say_why() {
    if !common::require_root("refusals_say_why") {
        return;
    }
    let _g = serial();
    let plant = Plant::new(16).unwrap();
    let a = addr_arg(&plant);
    let e = run_fail(&["-w", "q8", &a]);
    assert!(e.contains("r, w, rw, x"), "{e}");
    let e = run_fail(&["-w", "w8", "0x10"]);
    assert!(e.contains("not a kernel address"), "{e}");
    let e = run_fail(&["-w", "w8", &format!("{:#x}", plant.kernel_addr() + 4)]);
    assert!(e.contains("misaligned"), "{e}");
    let e = run_fail(&["-w", "w8", "no_such_symbol_here"]);
    assert!(e.contains("no symbol"), "{e}");
    if cfg!(target_arch = "x86_64") {
        let e = run_fail(&["-w", "r8", &a]);
        assert!(e.contains("rw8"), "{e}");
        // Kernel text: the kernel refuses exec breakpoints without kprobes (as here).
        let e = run_fail(&["-w", "x8", "_text", "-t", "1"]);
        assert!(e.contains("execute breakpoint") && e.contains("kprobes"), "{e}");
    }
    let five: Vec<String> = (0..5)
        .map(|i| format!("{:#x}", plant.kernel_addr() + i * 8))
        .collect();
    let mut args = Vec::new();
    for f in &five {
        args.extend(["-w", "w8", f.as_str()]);
    }
    let e = run_fail(&args);
    assert!(e.contains("4 debug registers"), "{e}");
}
