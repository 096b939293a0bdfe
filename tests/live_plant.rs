//! Plant checks against the real kernel (root with CAP_BPF/CAP_PERFMON).

mod common;

use kmemd::live::plant::Plant;

#[test]
fn plant_writes_reads_back_and_bumps() {
    if !common::require_root("plant_writes_reads_back_and_bumps") {
        return;
    }
    let plant = Plant::new(4096).expect("plant");
    assert!(
        plant.kernel_addr() >= 0xff00_0000_0000_0000,
        "{:#x}",
        plant.kernel_addr()
    );
    assert_eq!(
        plant.read_back().unwrap(),
        vec![0u8; 4096],
        "a new plant is zeroed"
    );

    let data: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    plant.write(&data).unwrap();
    assert_eq!(plant.read_back().unwrap(), data);

    let before = u64::from_ne_bytes(data[..8].try_into().unwrap());
    plant.bump(1).unwrap();
    plant.bump(41).unwrap();
    let after = plant.read_back().unwrap();
    assert_eq!(
        u64::from_ne_bytes(after[..8].try_into().unwrap()),
        before.wrapping_add(42)
    );
    assert_eq!(after[8..], data[8..], "bump touches only the first u64");

    // Two plants are two different values.
    let other = Plant::new(8).unwrap();
    assert_ne!(other.kernel_addr(), plant.kernel_addr());
    assert!(Plant::new(0).is_err());
    assert!(plant.write(&vec![0u8; 4097]).is_err());
}
