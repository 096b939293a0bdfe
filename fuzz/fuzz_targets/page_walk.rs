//! Page walkers over arbitrary page tables: every paging form (x86_64 4/5-level, aarch64
//! 4K/16K/64K with 48- and 52-bit outputs) over arbitrary physical memory, with holes or with
//! every address readable, and with short reads.
#![no_main]

use kmemd::arch::aarch64::PagingAarch64;
use kmemd::arch::walk::{translate, walk_steps, Paging, PagingForm};
use kmemd::arch::x86_64::PagingX86_64;
use kmemd::mem::{MemError, MemErrorKind, PhysAddr, PhysRead, VirtAddr};
use libfuzzer_sys::fuzz_target;

/// Physical memory: `bytes` at address 0 (holes above), or repeated over the whole address
/// space so walks can go deep whatever the entries say. Reads return at most `chunk` bytes.
struct Mem<'a> {
    bytes: &'a [u8],
    cyclic: bool,
    chunk: usize,
}

impl PhysRead for Mem<'_> {
    fn read_phys(&self, paddr: PhysAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let paddr = paddr.0;
        let len = self.bytes.len() as u64;
        if len == 0 {
            return Err(MemError::new(paddr, MemErrorKind::NotInDump, "no memory"));
        }
        let start = if self.cyclic {
            paddr % len
        } else if paddr < len {
            paddr
        } else {
            return Err(MemError::new(paddr, MemErrorKind::NotInDump, "hole"));
        };
        let mut n = 0;
        while n < buf.len().min(self.chunk) {
            let at = start + n as u64;
            if !self.cyclic && at >= len {
                break;
            }
            buf[n] = self.bytes[(at % len) as usize];
            n += 1;
        }
        Ok(n)
    }
}

fn form(sel: u8) -> PagingForm {
    let f = match sel % 12 {
        0 => PagingX86_64::form(4),
        1 => PagingX86_64::form(5),
        2 => PagingAarch64::form(12, 39, false),
        3 => PagingAarch64::form(12, 48, false),
        4 => PagingAarch64::form(12, 52, true),
        5 => PagingAarch64::form(14, 36, false),
        6 => PagingAarch64::form(14, 47, false),
        7 => PagingAarch64::form(14, 48, false),
        8 => PagingAarch64::form(14, 52, true),
        9 => PagingAarch64::form(16, 42, false),
        10 => PagingAarch64::form(16, 48, false),
        _ => PagingAarch64::form(16, 52, false),
    };
    f.unwrap_or_else(|e| panic!("form {sel}: {e}"))
}

fuzz_target!(|data: &[u8]| {
    // Header: form, flags, root (8), va (8).
    if data.len() < 18 {
        return;
    }
    let (head, bytes) = data.split_at(18);
    let form = form(head[0]);
    let mem = Mem {
        bytes,
        cyclic: head[1] & 1 != 0,
        chunk: 1 + usize::from(head[1] >> 1),
    };
    let root = PhysAddr(u64::from_le_bytes(head[2..10].try_into().unwrap_or_default()));
    let va = VirtAddr(u64::from_le_bytes(head[10..18].try_into().unwrap_or_default()));

    let t = translate(&mem, &form, root, va);
    let w = walk_steps(&mem, &form, root, va);
    assert_eq!(t, w.result, "translate and walk_steps disagree");
    assert!(
        w.steps.len() <= usize::from(form.levels),
        "more steps than levels"
    );
    for pair in w.steps.windows(2) {
        assert_eq!(pair[0].level, pair[1].level + 1, "levels go down one at a time");
    }
    if let Ok(tr) = &t {
        let leaf = w.leaf_size.expect("a translation has a leaf size");
        assert!(leaf.is_power_of_two() && leaf >= 1 << form.page_shift);
        assert!(
            (1..=leaf).contains(&tr.page_size),
            "page_size {} of leaf {leaf}",
            tr.page_size
        );
        assert_eq!(
            tr.pa.0 & (leaf - 1),
            leaf - tr.page_size,
            "offset inside the leaf"
        );
        assert_eq!(va.0 & (leaf - 1), leaf - tr.page_size, "va offset kept");
        assert!(
            w.steps.iter().all(|s| s.entry.is_some()),
            "a leaf after a missing entry"
        );
    }
    let _ = w.to_string();

    // A range walk (one leaf table read per request) says what whole walks say: the same first
    // translation or error, and a run whose every page maps where the run says.
    let page = 1u64 << form.page_shift;
    let want = page * (1 + u64::from(head[1] & 0xf));
    let paging = Paging { form, root };
    let mut range = paging.range_walk();
    let r = range.next(&mem, va, want);
    match (&t, &r) {
        (Ok(whole), Ok(run)) => {
            assert_eq!(run.pa, whole.pa, "range walk and whole walk disagree");
            assert!(run.page_size >= whole.page_size.min(want), "run shorter than the page");
            let mut off = whole.page_size;
            while off < run.page_size.min(want) {
                let Some(at) = va.checked_add(off) else { break };
                let each = translate(&mem, &form, root, at).expect("a page inside a run translates");
                assert_eq!(each.pa.0, run.pa.0 + off, "run page {off:#x} maps elsewhere");
                off += each.page_size;
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "range walk and whole walk fail differently"),
        _ => panic!("range walk {r:?}, whole walk {t:?}"),
    }
});
