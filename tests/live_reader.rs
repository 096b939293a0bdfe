//! The BPF kernel reader against bytes we planted ourselves (root with CAP_BPF/CAP_PERFMON).

mod common;

use kmemd::live::bpf::{ChunkError, ChunkRead, KernelReader, MAX_CHUNK};
use kmemd::live::plant::Plant;
use kmemd::mem::{VirtAddr, VirtRead};
use std::io::Read;

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .expect("/dev/urandom");
    v
}

#[test]
fn reads_planted_bytes_exactly() {
    if !common::require_root("reads_planted_bytes_exactly") {
        return;
    }
    let mut reader = KernelReader::open().expect("open the BPF reader");
    let data = random_bytes(16 << 10);
    let plant = Plant::new(data.len()).expect("plant");
    plant.write(&data).unwrap();

    let mut got = vec![0u8; data.len()];
    let n = reader
        .read_virt(VirtAddr(plant.kernel_addr()), &mut got)
        .expect("read the plant");
    assert_eq!(n, data.len());
    assert!(got == data, "planted bytes differ from what the reader returned");

    // Unaligned start and length inside the value.
    let mut part = vec![0u8; 1001];
    let n = reader
        .read_virt(VirtAddr(plant.kernel_addr() + 333), &mut part)
        .unwrap();
    assert_eq!(n, part.len());
    assert_eq!(part[..], data[333..1334]);

    // The reader sees kernel-side writes (no stale copy).
    plant.bump(3).unwrap();
    let mut word = [0u8; 8];
    assert_eq!(reader.read_virt(VirtAddr(plant.kernel_addr()), &mut word), Ok(8));
    let before = u64::from_ne_bytes(data[..8].try_into().unwrap());
    assert_eq!(u64::from_ne_bytes(word), before.wrapping_add(3));
}

#[test]
fn reads_larger_than_one_chunk() {
    if !common::require_root("reads_larger_than_one_chunk") {
        return;
    }
    let mut reader = KernelReader::open().expect("open the BPF reader");
    let chunk = reader.chunk_size();
    assert!(chunk >= 1 << 20, "chunk {chunk}");
    let data = random_bytes(2 * chunk + 12345);
    let plant = Plant::new(data.len()).expect("plant");
    plant.write(&data).unwrap();
    let mut got = vec![0u8; data.len() - 7];
    assert_eq!(
        reader.read_virt(VirtAddr(plant.kernel_addr() + 7), &mut got),
        Ok(got.len())
    );
    assert!(got[..] == data[7..], "multi-chunk read differs from the plant");
}

#[test]
fn unmapped_addresses_fail() {
    if !common::require_root("unmapped_addresses_fail") {
        return;
    }
    let mut reader = KernelReader::open().expect("open the BPF reader");
    let mut buf = [0u8; 64];
    // The user half is never a kernel address (-ERANGE).
    let e = reader.read_virt(VirtAddr(0x1000), &mut buf).unwrap_err();
    assert_eq!(e.addr, 0x1000);
    // A non-canonical address.
    assert!(reader
        .read_virt(VirtAddr(0x8000_0000_0000_0000), &mut buf)
        .is_err());
}

/// A value above 32 KiB is vmalloc'ed (kernel/bpf/syscall.c __bpf_map_area_alloc: kmalloc only up
/// to PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER), and every vmalloc area is followed by an unmapped
/// guard page (mm/vmalloc.c, no VM_NO_GUARD). So a read from inside the value that runs past its
/// end must stop exactly at a page boundary at most one page after the value, and the next page
/// must fault.
fn check_guard_page_prefix(reader: &mut KernelReader) {
    let data = random_bytes((64 << 10) + 100);
    let plant = Plant::new(data.len()).expect("plant");
    plant.write(&data).unwrap();
    let start = plant.kernel_addr() + 10;

    let mut got = vec![0u8; data.len() + 3 * 4096];
    let n = reader
        .read_virt(VirtAddr(start), &mut got)
        .expect("the start is mapped");
    let end = start + n as u64;
    assert!(n >= data.len() - 10, "prefix {n} shorter than the planted value");
    assert!(
        n < data.len() - 10 + 4096,
        "prefix {n} runs more than a page past the value"
    );
    assert_eq!(end % 4096, 0, "prefix ends at {end:#x}, not on a page boundary");
    assert!(
        got[..data.len() - 10] == data[10..],
        "prefix differs from the plant"
    );

    // The guard page itself faults at its first byte, whatever the length.
    let mut small = [0u8; 16];
    let e = reader.read_virt(VirtAddr(end), &mut small).unwrap_err();
    assert_eq!(e.addr, end);
    assert!(reader.read_virt(VirtAddr(end + 4095), &mut small[..1]).is_err());
    // One byte before it still reads.
    assert_eq!(reader.read_virt(VirtAddr(end - 1), &mut small), Ok(1));
}

#[test]
fn read_crossing_into_a_guard_page_returns_the_mapped_prefix() {
    if !common::require_root("read_crossing_into_a_guard_page_returns_the_mapped_prefix") {
        return;
    }
    check_guard_page_prefix(&mut KernelReader::open().expect("open the BPF reader"));
}

/// Watch mode opens the reader with a one-page chunk. Everything above must hold with any chunk,
/// including one that is not a page multiple (chunks then straddle page boundaries).
#[test]
fn small_chunk_readers_read_across_chunks_and_stop_at_the_guard_page() {
    if !common::require_root("small_chunk_readers_read_across_chunks_and_stop_at_the_guard_page") {
        return;
    }
    for chunk in [4096, 1000] {
        let mut reader = KernelReader::open_with_chunk(chunk).expect("open a small-chunk BPF reader");
        assert_eq!(reader.chunk_size(), chunk);
        // Many chunks in one read, from an unaligned start.
        let data = random_bytes(20 * chunk + 777);
        let plant = Plant::new(data.len()).expect("plant");
        plant.write(&data).unwrap();
        let mut got = vec![0u8; data.len() - 5];
        assert_eq!(
            reader.read_virt(VirtAddr(plant.kernel_addr() + 5), &mut got),
            Ok(got.len())
        );
        assert!(
            got[..] == data[5..],
            "{chunk}-byte chunks: multi-chunk read differs from the plant"
        );
        // The watched-word case: 8 bytes, seeing kernel-side writes.
        plant.bump(2).unwrap();
        let mut word = [0u8; 8];
        assert_eq!(reader.read_virt(VirtAddr(plant.kernel_addr()), &mut word), Ok(8));
        let before = u64::from_ne_bytes(data[..8].try_into().unwrap());
        assert_eq!(u64::from_ne_bytes(word), before.wrapping_add(2));
        // The BPF program's bound is the chunk it was loaded with, not the 4 MiB default: one
        // byte more is refused by the program itself (-EINVAL), before any copy.
        let mut over = vec![0u8; chunk + 1];
        assert_eq!(
            reader.read_chunk(plant.kernel_addr(), &mut over),
            Err(ChunkError::Fault(22)),
            "a {}-byte run on a {chunk}-byte reader",
            chunk + 1
        );
        check_guard_page_prefix(&mut reader);
    }
}

#[test]
fn chunk_sizes_outside_what_an_array_map_takes_are_refused() {
    if !common::require_root("chunk_sizes_outside_what_an_array_map_takes_are_refused") {
        return;
    }
    for bad in [0, MAX_CHUNK + 1] {
        let e = KernelReader::open_with_chunk(bad).unwrap_err();
        assert!(e.contains(&bad.to_string()), "{e}");
    }
    assert_eq!(KernelReader::open().unwrap().chunk_size(), MAX_CHUNK);
}
