//! Bytes at a kernel address we know, for tests and self-checks: a BPF array map value whose
//! kernel address a BPF program tells us, written and incremented by the kernel on request.
//! Live reads are compared against what was planted; watchpoints count `bump` writes.
//!
//! The BPF side is bpf/plant.bpf.c (prebuilt bpf/plant.bpf.o, embedded here).

use crate::sys::clib::{BpfMap, BpfObject, BpfProg};

static PLANT_OBJ: &[u8] = include_bytes!("../../bpf/plant.bpf.o");

/// A planted value. The map and programs live as long as this value.
#[derive(Debug)]
pub struct Plant {
    len: usize,
    map: BpfMap,
    bump: BpfProg,
    load: BpfProg,
    addr: u64,
}

impl Plant {
    /// Largest value `new` accepts. The kernel allows more (KMALLOC_MAX_SIZE for array values);
    /// tests have no use for it and every `write` copies the whole value.
    pub const MAX_LEN: usize = 16 << 20;

    /// Creates a map with one value of `len` bytes (zero-filled) and learns its kernel address.
    /// Needs root (CAP_BPF and CAP_PERFMON: storing a pointer into a map is a pointer leak).
    pub fn new(len: usize) -> Result<Plant, String> {
        if len == 0 || len > Self::MAX_LEN {
            return Err(format!(
                "a plant must be 1 to {} bytes long, not {len}",
                Self::MAX_LEN
            ));
        }
        // At least 8 bytes: plant_bump increments the first u64 of the value.
        let value_size = u32::try_from(len.max(8)).map_err(|_| format!("plant length {len} too large"))?;
        let mut obj = BpfObject::open_mem("plant", PLANT_OBJ)?;
        obj.set_value_size("plant", value_size)?;
        obj.load()?;
        let map = obj.map_handle("plant")?;
        let addr_out = obj.map_handle("plant_addr_out")?;
        let find = obj.program("plant_addr")?;
        let bump = obj.program("plant_bump")?;
        let load = obj.program("plant_load")?;
        drop(obj);

        let run = find
            .test_run(&[], &[], 0)
            .map_err(|e| format!("running the plant_addr BPF program failed: {e}"))?;
        if run.retval != 0 {
            return Err(format!(
                "plant_addr could not look up its maps (retval {})",
                run.retval
            ));
        }
        let mut raw = [0u8; 8];
        addr_out
            .lookup(0, &mut raw)
            .map_err(|e| format!("reading the plant address back failed: {e}"))?;
        // The program stored a native-endian u64 (BPF runs in the host's byte order).
        let addr = u64::from_ne_bytes(raw);
        if addr < crate::arch::Arch::host().kernel_space_start() {
            return Err(format!(
                "plant_addr reported {addr:#x}, which is not a kernel address"
            ));
        }
        log::debug!("planted {len} bytes at kernel address {addr:#x}");
        Ok(Plant {
            len,
            map,
            bump,
            load,
            addr,
        })
    }

    /// Kernel virtual address of the first planted byte.
    pub fn kernel_addr(&self) -> u64 {
        self.addr
    }

    /// Planted length in bytes (as given to `new`).
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `data` at the start of the value through `bpf_map_update_elem` (the kernel copies
    /// it in); bytes after `data.len()` keep their contents.
    pub fn write(&self, data: &[u8]) -> Result<(), String> {
        if data.len() > self.len {
            return Err(format!(
                "cannot write {} bytes into a {}-byte plant",
                data.len(),
                self.len
            ));
        }
        let mut value = vec![0u8; self.map.value_size()];
        if data.len() < value.len() {
            self.map
                .lookup(0, &mut value)
                .map_err(|e| format!("reading the plant failed: {e}"))?;
        }
        value
            .get_mut(..data.len())
            .ok_or("plant value shorter than its length")?
            .copy_from_slice(data);
        self.map
            .update(0, &value)
            .map_err(|e| format!("writing the plant failed: {e}"))
    }

    /// The current `len` bytes of the value, through `bpf_map_lookup_elem`.
    pub fn read_back(&self) -> Result<Vec<u8>, String> {
        let mut value = vec![0u8; self.map.value_size()];
        self.map
            .lookup(0, &mut value)
            .map_err(|e| format!("reading the plant failed: {e}"))?;
        value.truncate(self.len);
        Ok(value)
    }

    /// Increments the first u64 of the value (native endian) `repeat` times (0 counts as 1), with
    /// exactly one 8-byte kernel store per increment, all in one BPF_PROG_TEST_RUN call.
    pub fn bump(&self, repeat: u32) -> Result<(), String> {
        Self::run(&self.bump, "plant_bump", repeat)
    }

    /// Reads the first u64 of the value `repeat` times (0 counts as 1): exactly one 8-byte kernel
    /// load and no store per run, so read watchpoints have something to catch that write ones
    /// must not.
    pub fn load(&self, repeat: u32) -> Result<(), String> {
        Self::run(&self.load, "plant_load", repeat)
    }

    fn run(prog: &BpfProg, name: &str, repeat: u32) -> Result<(), String> {
        // A socket-filter test run needs at least an Ethernet header of packet data (ETH_HLEN).
        let packet = [0u8; 64];
        // A signal pending during the run (a test harness's SIGCHLD, a Ctrl-C meant for
        // someone else) would end it early with EINTR after an unknown number of runs, and the
        // exact-count tests need every one: hold signals until it is over.
        let run = crate::sys::os::with_signals_blocked(|| prog.test_run(&[], &packet, repeat))
            .map_err(|e| format!("running the {name} BPF program failed: {e}"))?;
        if run.retval != 0 {
            return Err(format!(
                "{name} could not look up the plant (retval {})",
                run.retval
            ));
        }
        Ok(())
    }
}
