//! `make bench` aid: the throughput of `--read`'s own copy loop (BPF reads into a sink), without
//! process start-up and BPF loading, which dominate a single 16 MiB `--read`.
//!
//! Usage: read_throughput ADDR LEN ROUNDS   (root)

use kmemd::target::live::LiveTarget;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = u64::from_str_radix(args[1].trim_start_matches("0x"), 16).expect("hex ADDR");
    let len: u64 = args[2].parse().expect("LEN");
    let rounds: u32 = args[3].parse().expect("ROUNDS");
    let mut target = LiveTarget::open(None).unwrap_or_else(|e| panic!("{e}"));
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let t = Instant::now();
        let n = kmemd::app::copy_memory(&mut target, addr, len, &mut std::io::sink()).expect("copy");
        assert_eq!(n, len, "the range must be readable");
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{:.0}", len as f64 / best / (1 << 20) as f64);
}
