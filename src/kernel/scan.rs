//! Finding `init_task` and `modules` when kallsyms lacks data symbols (Debian arm64 6.1 and
//! this machine's kernel are built without CONFIG_KALLSYMS_ALL) and VMCOREINFO does not name
//! them. Both are statically allocated in the kernel image's data (init/init_task.c,
//! kernel/module/main.c), so the image after `_etext` is searched, and each candidate must pass
//! checks that only the real object passes, with offsets from BTF:
//! - `init_task`: its `comm` is "swapper/0" (init_idle() names the boot CPU's idle task so),
//!   `pid` is 0, `real_parent` points to itself (init/init_task.c), and `tasks` is a
//!   consistent list node (`next->prev == &tasks`).
//! - `modules`: a list head in the image whose entries live outside the image (module memory),
//!   and every `struct module` on it has `mkobj.mod` pointing back to itself, a state
//!   `MODULE_STATE_*` (0..=3) and a printable name; the walk returns to the head.

use crate::kernel::btf::Btf;
use crate::mem::{read_available, read_exact, read_u64, ReadError, VirtRead};

const CHUNK: usize = 256 << 10;
/// Stop after this much unreadable memory in a row (the end of the image mapping).
const MAX_GAP: u64 = 8 << 20;
/// Largest image span searched when `_end` is unknown.
pub const MAX_SPAN: u64 = 128 << 20;
/// Module memory lies within this distance of the kernel text on both architectures
/// (x86_64 MODULES_VADDR..MODULES_END is 1 GiB above the image, arch/x86/include/asm/pgtable_64_types.h;
/// arm64 places modules within 4 GiB of the kernel for ADRP/PLT reach, arch/arm64/kernel/kaslr.c).
const MODULE_REACH: u64 = 4 << 30;
const MAX_MODULES: usize = 65_536;

/// Offsets (bytes) the checks need, from BTF.
#[derive(Debug, Clone, Copy)]
struct Layout {
    comm: u64,
    pid: u64,
    real_parent: u64,
    tasks: u64,
}

#[derive(Debug, Clone, Copy)]
struct ModLayout {
    list: u64,
    name: u64,
    name_len: u64,
    state: u64,
    mkobj_mod: u64,
}

impl Layout {
    fn from_btf(b: &Btf) -> Option<Layout> {
        let m = |s: &str, p: &str| b.member_by_name(s, p);
        Some(Layout {
            comm: m("task_struct", "comm")?.offset(),
            pid: m("task_struct", "pid")?.offset(),
            real_parent: m("task_struct", "real_parent")?.offset(),
            tasks: m("task_struct", "tasks")?.offset(),
        })
    }
}

impl ModLayout {
    fn from_btf(b: &Btf) -> Option<ModLayout> {
        let m = |p: &str| b.member_by_name("module", p);
        let name = m("name")?;
        Some(ModLayout {
            list: m("list")?.offset(),
            name: name.offset(),
            name_len: name.size.clamp(1, 256),
            state: m("state")?.offset(),
            mkobj_mod: m("mkobj.mod")?.offset(),
        })
    }
}

/// What the scan found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    pub init_task: Option<u64>,
    pub modules: Option<u64>,
}

/// Searches `[from, to)` (the kernel image after its text) for `init_task` and/or `modules`.
/// `text` is the kernel's `_stext`/`_text`; `want_*` say which to look for.
pub fn scan_image(
    mem: &mut dyn VirtRead,
    btf: &Btf,
    text: u64,
    from: u64,
    to: u64,
    want_init: bool,
    want_modules: bool,
) -> Result<Found, ReadError> {
    let l = match want_init {
        true => Some(Layout::from_btf(btf).ok_or("BTF lacks task_struct's comm, pid, real_parent or tasks")?),
        false => None,
    };
    let ml = match want_modules {
        true => Some(ModLayout::from_btf(btf).ok_or("BTF lacks struct module's list, name, state or mkobj")?),
        false => None,
    };
    let mut found = Found::default();
    let mut buf = vec![0u8; CHUNK];
    let mut addr = from & !7;
    let mut gap = 0u64;
    // Not "outside [text, to)": `to` is only a search bound, and module memory can lie inside
    // it (x86_64 places modules right above a KASLR'd image). is_modules_head() rejects empty
    // heads and anything whose entries are not modules pointing back to themselves.
    let near = |p: u64| p.abs_diff(text) < MODULE_REACH;
    while addr < to && (want_init && found.init_task.is_none() || want_modules && found.modules.is_none()) {
        let want = CHUNK.min(usize::try_from(to - addr).unwrap_or(CHUNK));
        let got = read_available(mem, addr, buf.get_mut(..want).unwrap_or_default());
        if got < 8 {
            gap += 4096;
            if gap > MAX_GAP {
                break;
            }
            addr = (addr | 0xfff).saturating_add(1);
            continue;
        }
        gap = 0;
        let data = buf.get(..got).unwrap_or_default();
        if let (Some(l), None) = (&l, found.init_task) {
            let pat = b"swapper/0\0";
            let mut i = 0;
            while let Some(pos) = data.get(i..).and_then(|d| find(d, pat)) {
                let hit = addr + (i + pos) as u64;
                if let Some(task) = hit.checked_sub(l.comm) {
                    if is_init_task(mem, l, task) {
                        found.init_task = Some(task);
                        break;
                    }
                }
                i += pos + 1;
            }
        }
        if let (Some(ml), None) = (&ml, found.modules) {
            for (j, w) in data.chunks_exact(8).enumerate() {
                let next = u64::from_le_bytes(w.try_into().unwrap_or_default());
                if next & 7 == 0 && near(next) {
                    let head = addr + (j * 8) as u64;
                    if is_modules_head(mem, ml, head) {
                        found.modules = Some(head);
                        break;
                    }
                }
            }
        }
        // Chunks overlap by 16 bytes so a string across a boundary is seen.
        addr = addr.saturating_add(got.saturating_sub(16).max(8) as u64 & !7);
    }
    Ok(found)
}

/// Where `pat` first occurs in `hay`. The first byte is looked for alone and the rest compared
/// only there: a scan of the whole image stays fast in debug builds too, where a window
/// comparison at every byte took most of the live target's start-up.
fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    let (&first, rest) = pat.split_first()?;
    let mut i = 0;
    while let Some(p) = hay.get(i..)?.iter().position(|&b| b == first) {
        let at = i + p;
        let tail = at
            .checked_add(1)
            .and_then(|s| hay.get(s..s.checked_add(rest.len())?));
        if tail == Some(rest) {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

fn is_init_task(mem: &mut dyn VirtRead, l: &Layout, task: u64) -> bool {
    let check = |mem: &mut dyn VirtRead| -> Option<bool> {
        let mut pid = [0u8; 4];
        read_exact(mem, task.checked_add(l.pid)?, &mut pid).ok()?;
        let parent = read_u64(mem, task.checked_add(l.real_parent)?).ok()?;
        let tasks = task.checked_add(l.tasks)?;
        let next = read_u64(mem, tasks).ok()?;
        let back = read_u64(mem, next.checked_add(8)?).ok()?;
        Some(pid == [0; 4] && parent == task && back == tasks)
    };
    check(mem).unwrap_or(false)
}

fn is_modules_head(mem: &mut dyn VirtRead, l: &ModLayout, head: u64) -> bool {
    let check = |mem: &mut dyn VirtRead| -> Option<bool> {
        let first = read_u64(mem, head).ok()?;
        // An empty list head (pointing to itself) proves nothing.
        if first == head || read_u64(mem, first.checked_add(8)?).ok()? != head {
            return Some(false);
        }
        let mut node = first;
        for _ in 0..MAX_MODULES {
            if node == head {
                return Some(true);
            }
            let m = node.checked_sub(l.list)?;
            if read_u64(mem, m.checked_add(l.mkobj_mod)?).ok()? != m {
                return Some(false);
            }
            let mut state = [0u8; 4];
            read_exact(mem, m.checked_add(l.state)?, &mut state).ok()?;
            if u32::from_le_bytes(state) > 3 {
                return Some(false);
            }
            let mut name = vec![0u8; l.name_len as usize];
            read_exact(mem, m.checked_add(l.name)?, &mut name).ok()?;
            let len = name.iter().position(|&c| c == 0)?;
            if len == 0 || !name.get(..len)?.iter().all(|c| c.is_ascii_graphic()) {
                return Some(false);
            }
            node = read_u64(mem, node).ok()?;
        }
        Some(false)
    };
    check(mem).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_gives_the_first_whole_match() {
        let pat = b"swapper/0\0";
        for (hay, want) in [
            (&b"swapper/0\0"[..], Some(0)),
            (b"xxswapper/0\0yy", Some(2)),
            (b"sswapper/0\0", Some(1)),
            (b"swapper/1\0swapper/0\0", Some(10)),
            (b"swapper/0", None),
            (b"", None),
            (b"ssssssssss", None),
        ] {
            assert_eq!(find(hay, pat), want, "{}", String::from_utf8_lossy(hay));
        }
        assert_eq!(find(b"abc", b""), None);
    }
}
