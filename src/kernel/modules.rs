//! `monitor lsmod`: loaded modules with their base, size and sections, and the GDB line that
//! loads each one's symbols. Dumps: the kernel's `modules` list (kernel/module/main.c); live:
//! `/sys/module/*/sections` and `coresize`.

use super::layout::{Field, Layout};
use crate::arch::Arch;
use crate::mem::{read_exact, read_u64, read_uint, ReadError, VirtAddr, VirtRead};
use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    /// Where its code starts, as /proc/modules prints it.
    pub base: u64,
    pub size: u64,
    /// Section name and address (from sect_attrs or sysfs), in the kernel's order.
    pub sections: Vec<(String, u64)>,
}

/// Most modules a damaged list can make us read.
const MAX_MODULES: usize = 1 << 16;
/// Most sections per module read (a module has a few dozen).
const MAX_SECTIONS: u64 = 4096;

fn field(l: &dyn Layout, st: &str, m: &str) -> Result<Field, String> {
    l.member(st, m)
        .ok_or_else(|| format!("the kernel's type information lacks {st}.{m}: modules cannot be listed"))
}

fn read_cstr(mem: &mut dyn VirtRead, addr: u64, max: usize) -> Result<String, ReadError> {
    let mut buf = vec![0u8; max];
    // Names may end right before an unreadable page: read what is there.
    let mut got = 0;
    while got < max {
        match mem.read_virt(
            VirtAddr(addr + got as u64),
            buf.get_mut(got..).unwrap_or_default(),
        ) {
            Ok(n) if n > 0 => got += n,
            _ => break,
        }
        if buf.get(..got).unwrap_or_default().contains(&0) {
            break;
        }
    }
    if got == 0 {
        return Err(format!("cannot read a name at {addr:#x}").into());
    }
    let b = buf.get(..got).unwrap_or_default();
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    Ok(String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned())
}

/// The address of the `modules` list head: the symbol when kallsyms has data symbols, else
/// (arm64 kallsyms without CONFIG_KALLSYMS_ALL) the data addresses formed in the code of
/// functions that walk the list (arm64's ADRP+ADD/LDR pairs, decoded by arch/), each candidate
/// checked as a list head of modules.
pub fn find_modules_head(mem: &mut dyn VirtRead, l: &dyn Layout, arch: Arch) -> Result<u64, ReadError> {
    if let Some(a) = l.symbol("modules") {
        return Ok(a);
    }
    if !arch.decodes_data_refs() {
        return Err(
            "kallsyms has no `modules` symbol (no CONFIG_KALLSYMS_ALL): give -k the matching vmlinux".into(),
        );
    }
    let list = field(l, "module", "list")?.offset;
    // kernel/module/main.c (Linux 6.1) and kernel/module.c (older): each walks `modules`.
    for func in [
        "print_modules",
        "find_module_all",
        "module_kallsyms_on_each_symbol",
        "__module_get",
    ] {
        let Some(at) = l.symbol(func) else { continue };
        let mut code = [0u8; 4 * 160];
        if read_exact(mem, at, &mut code).is_err() {
            continue;
        }
        for cand in arch.code_data_refs(at, &code) {
            if is_module_list_head(mem, l, cand, list) {
                return Ok(cand);
            }
        }
    }
    Err("kallsyms has no `modules` symbol and no known function's code led to it: give -k the matching vmlinux".into())
}

fn is_module_list_head(mem: &mut dyn VirtRead, l: &dyn Layout, head: u64, list: u64) -> bool {
    let Ok(next) = read_u64(mem, head) else {
        return false;
    };
    if next == head {
        return false; // An empty list cannot be told from any other self-pointing list_head.
    }
    let Ok(prev) = read_u64(mem, next.wrapping_add(8)) else {
        return false;
    };
    if prev != head {
        return false;
    }
    let Some(name) = l.member("module", "name") else {
        return false;
    };
    match read_cstr(mem, next.wrapping_sub(list).wrapping_add(name.offset), 64) {
        Ok(n) => {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        Err(_) => false,
    }
}

/// Modules on the kernel's `modules` list.
pub fn from_memory(mem: &mut dyn VirtRead, l: &dyn Layout, arch: Arch) -> Result<Vec<Module>, ReadError> {
    let head = find_modules_head(mem, l, arch)?;
    let list = field(l, "module", "list")?.offset;
    let name = field(l, "module", "name")?;
    // Linux 6.4+ (ac3b43283923): `mem[MOD_MEM_NUM_TYPES]` of struct module_memory, MOD_TEXT = 0;
    // before: `core_layout` and `init_layout` (struct module_layout).
    enum Where {
        Mem {
            at: u64,
            stride: u64,
            count: u64,
            base: Field,
            size: Field,
        },
        Layouts {
            core: u64,
            init: Option<u64>,
            base: Field,
            size: Field,
        },
    }
    let wh = if let (Some(m), Some(stride)) = (l.member("module", "mem"), l.size_of("module_memory")) {
        Where::Mem {
            at: m.offset,
            stride,
            count: m.size.checked_div(stride).unwrap_or(1).max(1),
            base: field(l, "module_memory", "base")?,
            size: field(l, "module_memory", "size")?,
        }
    } else {
        Where::Layouts {
            core: field(l, "module", "core_layout")?.offset,
            init: l.member("module", "init_layout").map(|f| f.offset),
            base: field(l, "module_layout", "base")?,
            size: field(l, "module_layout", "size")?,
        }
    };
    let sect = sections_layout(l);
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut node = read_u64(mem, head).map_err(|e| ReadError::mem("cannot read the module list", e))?;
    while node != head {
        if !seen.insert(node) || out.len() >= MAX_MODULES {
            return Err("the module list loops without returning to its head".into());
        }
        let m = node.wrapping_sub(list);
        let nm = read_cstr(
            mem,
            m + name.offset,
            usize::try_from(name.size.clamp(1, 64)).unwrap_or(56),
        )?;
        let (base, size) = match &wh {
            Where::Mem {
                at,
                stride,
                count,
                base,
                size,
            } => {
                let b = read_uint(mem, m + at + base.offset, 8).map_err(|e| e.to_string())?;
                let mut total = 0u64;
                for i in 0..*count {
                    total += read_uint(mem, m + at + i * stride + size.offset, size.size)
                        .map_err(|e| e.to_string())?;
                }
                (b, total)
            }
            Where::Layouts {
                core,
                init,
                base,
                size,
            } => {
                let b = read_uint(mem, m + core + base.offset, 8).map_err(|e| e.to_string())?;
                let mut s = read_uint(mem, m + core + size.offset, size.size).map_err(|e| e.to_string())?;
                if let Some(i) = init {
                    s += read_uint(mem, m + i + size.offset, size.size).unwrap_or(0);
                }
                (b, s)
            }
        };
        let sections = match &sect {
            Some(s) => read_sections(mem, s, m).unwrap_or_else(|e| {
                log::warn!("module {nm}: no sections: {e}");
                Vec::new()
            }),
            None => Vec::new(),
        };
        out.push(Module {
            name: nm,
            base,
            size,
            sections,
        });
        node = read_u64(mem, node).map_err(|e| ReadError::mem("cannot follow the module list", e))?;
    }
    Ok(out)
}

/// module->sect_attrs (kernel/module/sysfs.c, Linux 5.8+: the name is `battr.attr.name`).
struct SectLayout {
    sect_attrs: u64,
    nsections: u64,
    attrs: u64,
    attr_size: u64,
    name: u64,
    address: u64,
}

fn sections_layout(l: &dyn Layout) -> Option<SectLayout> {
    let battr = l.member("module_sect_attr", "battr")?.offset;
    let attr = l.member("bin_attribute", "attr")?.offset;
    let name = l.member("attribute", "name")?.offset;
    Some(SectLayout {
        sect_attrs: l.member("module", "sect_attrs")?.offset,
        nsections: l.member("module_sect_attrs", "nsections")?.offset,
        attrs: l.member("module_sect_attrs", "attrs")?.offset,
        attr_size: l.size_of("module_sect_attr")?,
        name: battr + attr + name,
        address: l.member("module_sect_attr", "address")?.offset,
    })
}

fn read_sections(
    mem: &mut dyn VirtRead,
    s: &SectLayout,
    module: u64,
) -> Result<Vec<(String, u64)>, ReadError> {
    let e = |e: crate::mem::MemError| e.to_string();
    let sa = read_u64(mem, module + s.sect_attrs).map_err(e)?;
    if sa == 0 {
        return Ok(Vec::new());
    }
    let n = read_uint(mem, sa + s.nsections, 4).map_err(e)?.min(MAX_SECTIONS);
    let mut out = Vec::new();
    for i in 0..n {
        let a = sa + s.attrs + i * s.attr_size;
        let name_ptr = read_u64(mem, a + s.name).map_err(e)?;
        let addr = read_u64(mem, a + s.address).map_err(e)?;
        out.push((read_cstr(mem, name_ptr, 64)?, addr));
    }
    Ok(out)
}

/// Loaded modules from sysfs: every `/sys/module/NAME` with a `sections` directory (built-in
/// modules have none). The base is the lowest section address; the size `coresize` (+ `initsize`).
pub fn from_sysfs(root: &Path) -> Result<Vec<Module>, String> {
    let rd = std::fs::read_dir(root).map_err(|e| format!("cannot list {}: {e}", root.display()))?;
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let dir = ent.path();
        let secdir = dir.join("sections");
        let Ok(secs) = std::fs::read_dir(&secdir) else {
            continue;
        };
        let mut sections: Vec<(String, u64)> = secs
            .flatten()
            .filter_map(|s| {
                let name = s.file_name().to_string_lossy().into_owned();
                let text = std::fs::read_to_string(s.path()).ok()?;
                Some((name, crate::mem::parse_addr(text.trim()).ok()?))
            })
            .collect();
        sections.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        let num = |f: &str| {
            std::fs::read_to_string(dir.join(f))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        let base = sections
            .iter()
            .filter(|(_, a)| *a != 0)
            .map(|(_, a)| *a)
            .min()
            .unwrap_or(0);
        out.push(Module {
            name: ent.file_name().to_string_lossy().into_owned(),
            base,
            size: num("coresize") + num("initsize"),
            sections,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// `monitor lsmod` text: one line per module, then the GDB line that loads its symbols.
pub fn lsmod_text(mods: &[Module]) -> String {
    let mut out = format!("{:<24} {:>18} {:>8}\n", "MODULE", "BASE", "SIZE");
    for m in mods {
        let _ = writeln!(out, "{:<24} {:#018x} {:>8}", m.name, m.base, m.size);
        let text = m
            .sections
            .iter()
            .find(|(n, _)| n == ".text")
            .map_or(m.base, |(_, a)| *a);
        let mut line = format!("  add-symbol-file {}.ko {text:#x}", m.name);
        for (n, a) in &m.sections {
            // .text is the positional address; dot-less entries are not ELF sections; the symbol
            // tables are the kernel's kallsyms copies, not sections GDB relocates.
            if n != ".text" && n.starts_with('.') && *a != 0 && n != ".symtab" && n != ".strtab" {
                let _ = write!(line, " -s {n} {a:#x}");
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    if mods.is_empty() {
        out.push_str("(no modules loaded)\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsmod_lines_name_text_and_other_sections() {
        let m = Module {
            name: "qemu_fw_cfg".into(),
            base: 0xffff_ffff_c051_1000,
            size: 20480,
            sections: vec![
                (".text".into(), 0xffff_ffff_c051_1000),
                (".data".into(), 0xffff_ffff_c051_5000),
                ("__mcount_loc".into(), 0xffff_ffff_c051_4000),
            ],
        };
        let t = lsmod_text(&[m]);
        assert!(
            t.contains("qemu_fw_cfg              0xffffffffc0511000    20480\n"),
            "{t}"
        );
        assert!(
            t.contains("  add-symbol-file qemu_fw_cfg.ko 0xffffffffc0511000 -s .data 0xffffffffc0515000\n"),
            "{t}"
        );
        assert!(lsmod_text(&[]).contains("no modules"));
    }
}
