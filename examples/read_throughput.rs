//! `make bench` aid: the throughput of `--read`'s own copy loop (BPF reads into a sink), without
//! process start-up and BPF loading, which dominate a single 16 MiB `--read`.
//!
//! With `ceiling` last, it measures instead what any BPF reader can reach at the same chunk size
//! (issue 16): one `BPF_PROG_TEST_RUN` and one copy out of the result map per chunk, nothing else.
//!
//! Usage: read_throughput ADDR LEN ROUNDS [copy|ceiling]   (root)

use kmemd::live::bpf::{ChunkRead, KernelReader};
use kmemd::target::live::LiveTarget;
use std::io::Write;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = u64::from_str_radix(args[1].trim_start_matches("0x"), 16).expect("hex ADDR");
    let len: u64 = args[2].parse().expect("LEN");
    let rounds: u32 = args[3].parse().expect("ROUNDS");
    let mut best = f64::MAX;
    if args.get(4).map(String::as_str) == Some("ceiling") {
        // The chunk --read asks for: its buffer, or less when the BPF result map is smaller.
        let map = LiveTarget::open(None)
            .unwrap_or_else(|e| panic!("{e}"))
            .chunk_size();
        let chunk = map.min(kmemd::app::COPY_CHUNK as usize);
        let mut reader = KernelReader::open_with_chunk(map).unwrap_or_else(|e| panic!("{e}"));
        let mut buf = vec![0u8; chunk];
        for _ in 0..rounds {
            let t = Instant::now();
            let mut at = 0;
            while at < len {
                let n = chunk.min((len - at) as usize);
                reader
                    .read_chunk(addr + at, &mut buf[..n])
                    .expect("readable range");
                std::io::sink().write_all(&buf[..n]).expect("sink");
                at += n as u64;
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!("{:.0}", len as f64 / best / (1 << 20) as f64);
        return;
    }
    let mut target = LiveTarget::open(None).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..rounds {
        let t = Instant::now();
        let n = kmemd::app::copy_memory(&mut target, addr, len, &mut std::io::sink()).expect("copy");
        assert_eq!(n, len, "the range must be readable");
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{:.0}", len as f64 / best / (1 << 20) as f64);
}
