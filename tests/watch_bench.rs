//! `make bench` for watch mode: a burst of 100,000 kernel-speed writes (one BPF test run with
//! repeat) under `kmemd -w w8 ADDR --json`. Prints hits reported with stack and value, lost and
//! unshown counts, seconds from the end of the burst to the last hit printed, kmemd's CPU time
//! and peak RSS. Run: `cargo test --release --test watch_bench -- --ignored --nocapture`
//! (WATCH_BENCH_WRITES overrides the burst size).

use kmemd::live::plant::Plant;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// utime + stime in seconds (fields 14 and 15 of /proc/PID/stat, in USER_HZ = 100 ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
    (f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)) as f64 / 100.0
}

#[test]
#[ignore = "benchmark: run by `make bench`"]
fn burst_of_100k_writes() {
    let writes: u32 = std::env::var("WATCH_BENCH_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let plant = Plant::new(8).expect("plant (needs root)");
    let addr = format!("{:#x}", plant.kernel_addr());
    let mut child = Command::new(env!("CARGO_BIN_EXE_kmemd"))
        .args(["-v", "-w", "w8", &addr, "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kmemd");
    let pid = child.id();
    let complete = Arc::new(AtomicU64::new(0));
    let lines = Arc::new(AtomicU64::new(0));
    let last_ns = Arc::new(AtomicU64::new(0));
    let t_base = Instant::now();
    let out = child.stdout.take().unwrap();
    let reader = {
        let (complete, lines, last_ns) = (complete.clone(), lines.clone(), last_ns.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                lines.fetch_add(1, Ordering::Relaxed);
                if line.contains("\"value\":\"0x") && line.contains("\"stack\":[\"") {
                    complete.fetch_add(1, Ordering::Relaxed);
                }
                last_ns.store(t_base.elapsed().as_nanos() as u64, Ordering::Relaxed);
            }
        })
    };
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("watching") {
        line.clear();
    }
    assert!(line.contains("watching"), "kmemd did not start");
    let cpu0 = cpu_seconds(pid);
    let t0 = Instant::now();
    plant.bump(writes).unwrap();
    let burst = t0.elapsed();
    // Wait until every write is printed, or output stalls for 2 s.
    let mut seen = 0;
    let mut stall = Instant::now();
    while lines.load(Ordering::Relaxed) < writes as u64 && stall.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
        let n = lines.load(Ordering::Relaxed);
        if n != seen {
            seen = n;
            stall = Instant::now();
        }
    }
    let drained = Duration::from_nanos(last_ns.load(Ordering::Relaxed)).saturating_sub(t0 - t_base);
    let cpu = cpu_seconds(pid) - cpu0;
    let hwm = status_kib(pid, "VmHWM:");
    let rss = status_kib(pid, "VmRSS:");
    Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    child.wait().unwrap();
    reader.join().unwrap();
    let summary = rest
        .lines()
        .find(|l| l.starts_with("summary:"))
        .unwrap_or("(no summary)")
        .to_string();
    println!("watch bench: {writes} kernel-speed writes (BPF test run, repeat) under -w w8 --json");
    println!(
        "  burst took           {:.3} s ({:.0} writes/s with the trap)",
        burst.as_secs_f64(),
        writes as f64 / burst.as_secs_f64()
    );
    println!(
        "  hits printed         {} ({} with value and stack)",
        lines.load(Ordering::Relaxed),
        complete.load(Ordering::Relaxed)
    );
    println!("  kmemd {summary}");
    for l in rest.lines().filter(|l| l.contains("queued")) {
        println!("  {}", l.trim());
    }
    println!(
        "  drained              {:.3} s after the burst started (last hit printed)",
        drained.as_secs_f64()
    );
    println!("  kmemd CPU time       {cpu:.2} s");
    println!(
        "  kmemd RSS            {:.1} MiB after the burst, peak {:.1} MiB (start-up included)",
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    assert_eq!(
        complete.load(Ordering::Relaxed),
        writes as u64,
        "every write reported with value and stack"
    );
}
