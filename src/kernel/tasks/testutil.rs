//! Test fixtures of the task code: sparse kernel memory, a table layout, a small x86_64 task
//! world (init_task, init, a two-threaded process).

use crate::kernel::layout::{Field, Layout};
use crate::mem::{MemError, MemErrorKind, VirtAddr, VirtRead};
use std::collections::HashMap;

/// Sparse kernel memory for tests: bytes by address.
#[derive(Default)]
pub struct FakeMem {
    pub bytes: HashMap<u64, u8>,
}

impl FakeMem {
    pub fn put_bytes(&mut self, addr: u64, b: &[u8]) {
        for (i, &v) in b.iter().enumerate() {
            self.bytes.insert(addr + i as u64, v);
        }
    }
    pub fn put_u64(&mut self, addr: u64, v: u64) {
        self.put_bytes(addr, &v.to_le_bytes());
    }
    pub fn put_u32(&mut self, addr: u64, v: u32) {
        self.put_bytes(addr, &v.to_le_bytes());
    }
    pub fn put_u16(&mut self, addr: u64, v: u16) {
        self.put_bytes(addr, &v.to_le_bytes());
    }
}

impl VirtRead for FakeMem {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let addr = addr.0;
        let mut n = 0;
        for (i, b) in buf.iter_mut().enumerate() {
            match self.bytes.get(&(addr + i as u64)) {
                Some(v) => *b = *v,
                None => break,
            }
            n += 1;
        }
        if n == 0 {
            Err(MemError::new(addr, MemErrorKind::NotInDump, "not in the fake"))
        } else {
            Ok(n)
        }
    }
}

/// A table layout.
#[derive(Default)]
pub struct FakeLayout {
    pub members: HashMap<(String, String), Field>,
    pub sizes: HashMap<String, u64>,
    pub symbols: HashMap<String, u64>,
}

impl FakeLayout {
    pub fn m(&mut self, st: &str, m: &str, offset: u64, size: u64) {
        self.members.insert((st.into(), m.into()), Field { offset, size });
    }
}

impl Layout for FakeLayout {
    fn symbol(&self, name: &str) -> Option<u64> {
        self.symbols.get(name).copied()
    }
    fn member(&self, st: &str, m: &str) -> Option<Field> {
        self.members.get(&(st.to_string(), m.to_string())).copied()
    }
    fn size_of(&self, ty: &str) -> Option<u64> {
        self.sizes.get(ty).copied()
    }
}

pub fn x86_layout() -> FakeLayout {
    let mut l = FakeLayout::default();
    let ts = "task_struct";
    l.m(ts, "thread_info", 0, 24);
    l.m("thread_info", "cpu", 20, 4);
    l.m(ts, "__state", 24, 4);
    l.m(ts, "on_cpu", 28, 4);
    l.m(ts, "tasks", 32, 16);
    l.m(ts, "exit_state", 48, 4);
    l.m(ts, "pid", 52, 4);
    l.m(ts, "tgid", 56, 4);
    l.m(ts, "real_parent", 64, 8);
    l.m(ts, "group_leader", 72, 8);
    l.m(ts, "thread_node", 80, 16);
    l.m(ts, "signal", 96, 8);
    l.m(ts, "comm", 104, 16);
    l.m(ts, "mm", 120, 8);
    l.m(ts, "stack", 128, 8);
    l.m(ts, "thread", 192, 64);
    l.m("thread_struct", "sp", 8, 8);
    l.m("signal_struct", "thread_head", 16, 16);
    for (i, n) in ["r15", "r14", "r13", "r12", "bx", "bp", "ret_addr"]
        .iter()
        .enumerate()
    {
        l.m("inactive_task_frame", n, i as u64 * 8, 8);
    }
    l.sizes.insert("inactive_task_frame".into(), 56);
    l
}

pub const K: u64 = 0xffff_8880_0000_0000;

/// Writes a task at `addr`; links are set by the caller.
#[allow(clippy::too_many_arguments)]
fn task(m: &mut FakeMem, addr: u64, pid: u32, tgid: u32, parent: u64, leader: u64, comm: &str, state: u32) {
    m.put_bytes(addr, &[0u8; 256]);
    m.put_u32(addr + 20, 1);
    m.put_u32(addr + 24, state);
    m.put_u32(addr + 52, pid);
    m.put_u32(addr + 56, tgid);
    m.put_u64(addr + 64, parent);
    m.put_u64(addr + 72, leader);
    m.put_bytes(addr + 104, comm.as_bytes());
}

fn link(m: &mut FakeMem, nodes: &[u64]) {
    for (i, &n) in nodes.iter().enumerate() {
        m.put_u64(n, nodes[(i + 1) % nodes.len()]);
        m.put_u64(n + 8, nodes[(i + nodes.len() - 1) % nodes.len()]);
    }
}

/// init_task (0), init (1), a two-threaded process 7 (threads 7 and 8).
pub fn world() -> FakeMem {
    let mut m = FakeMem::default();
    let (t0, t1, t7, t8) = (K, K + 0x1000, K + 0x2000, K + 0x3000);
    let (s0, s1, s7) = (K + 0x10000, K + 0x11000, K + 0x12000);
    task(&mut m, t0, 0, 0, t0, t0, "swapper/0", 0);
    task(&mut m, t1, 1, 1, t0, t1, "init", 1);
    task(&mut m, t7, 7, 7, t1, t7, "worker", 0x402);
    task(&mut m, t8, 8, 7, t1, t7, "worker-2", 2);
    link(&mut m, &[t0 + 32, t1 + 32, t7 + 32]);
    for (t, s) in [(t0, s0), (t1, s1), (t7, s7), (t8, s7)] {
        m.put_u64(t + 96, s);
    }
    link(&mut m, &[s0 + 16, t0 + 80]);
    link(&mut m, &[s1 + 16, t1 + 80]);
    link(&mut m, &[s7 + 16, t7 + 80, t8 + 80]);
    m
}
