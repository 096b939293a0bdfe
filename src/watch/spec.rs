//! `-w TYPE TARGET`: what to watch (read, write, read-write, execute), how many bytes, and where,
//! with the per-architecture rules checked before the kernel is asked, so every refusal says why.

use crate::arch::Arch;

/// Kind of access that trips the watchpoint (the kernel's HW_BREAKPOINT_R/W/RW/X values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    R,
    W,
    Rw,
    X,
}

impl Access {
    /// `bp_type` for perf_event_attr (include/uapi/linux/hw_breakpoint.h).
    pub fn bp_type(self) -> u32 {
        match self {
            Access::R => 1,
            Access::W => 2,
            Access::Rw => 3,
            Access::X => 4,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Access::R => "r",
            Access::W => "w",
            Access::Rw => "rw",
            Access::X => "x",
        }
    }
}

/// Where the user pointed: an address or a symbol with an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Addr(u64),
    Symbol { name: String, off: u64 },
}

/// One resolved, checked watchpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub access: Access,
    /// Length in bytes: 1, 2, 4 or 8.
    pub len: u8,
    pub addr: u64,
    /// The TARGET as typed, for messages and output (`jiffies_64`, `0xffff...`).
    pub target: String,
}

impl Spec {
    /// `w8`, `rw4`, ...
    pub fn type_name(&self) -> String {
        let mut s = crate::mem::text::Text::with_capacity(3);
        self.write_type(&mut s);
        s.as_str().to_owned()
    }

    /// [`Spec::type_name`], appended to `out`.
    pub fn write_type(&self, out: &mut crate::mem::text::Text) {
        out.put(self.access.name());
        out.put_dec(self.len.into(), 1);
    }

    /// A value of the watched width as hex with all its digits (`w2`: `0x00ff`).
    pub fn format_value(&self, v: u64) -> String {
        let mut s = crate::mem::text::Text::with_capacity(18);
        self.write_value(&mut s, v);
        s.as_str().to_owned()
    }

    /// [`Spec::format_value`], appended to `out`.
    pub fn write_value(&self, out: &mut crate::mem::text::Text, v: u64) {
        out.put_hex(v, 2 * self.len as usize);
    }
}

/// Parses TYPE: `r`, `w`, `rw` or `x` followed by the length 1, 2, 4 or 8.
pub fn parse_type(s: &str) -> Result<(Access, u8), String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| c.is_ascii_digit()).unwrap_or(t.len());
    let (kind, len) = t.split_at(split);
    let access = match kind {
        "r" => Access::R,
        "w" => Access::W,
        "rw" | "wr" => Access::Rw,
        "x" => Access::X,
        _ => {
            return Err(format!(
                "watch type '{s}' is not one of r, w, rw, x followed by a length 1, 2, 4 or 8 \
                 (e.g. w4, rw8, x8)"
            ))
        }
    };
    let len = match len {
        "1" => 1,
        "2" => 2,
        "4" => 4,
        "8" => 8,
        "" => {
            return Err(format!(
                "watch type '{s}' lacks a length: add 1, 2, 4 or 8 bytes (e.g. {}8)",
                access.name()
            ))
        }
        _ => {
            return Err(format!(
                "watch type '{s}': the length must be 1, 2, 4 or 8 bytes, not {len}"
            ))
        }
    };
    Ok((access, len))
}

fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Parses TARGET: `0x` hex, `symbol`, or `symbol+off` with a decimal or `0x` hex offset.
pub fn parse_target(s: &str) -> Result<Target, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("watch target is empty: give an address (0x...) or a symbol".into());
    }
    if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return u64::from_str_radix(h, 16)
            .map(Target::Addr)
            .map_err(|_| format!("watch target '{s}' is not a hex address (e.g. 0xffff888012345678)"));
    }
    if t.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!(
            "watch target '{s}': write addresses in hex with 0x (e.g. 0x{t}), symbols start with a letter"
        ));
    }
    let (name, off) = match t.split_once('+') {
        Some((n, o)) => {
            let off = parse_num(o.trim()).ok_or_else(|| {
                format!("watch target '{s}': the offset '{o}' is not a number (decimal, or hex with 0x)")
            })?;
            (n.trim(), off)
        }
        None => (t, 0),
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$');
    if name.is_empty() || !name.chars().all(valid) {
        return Err(format!(
            "watch target '{s}' is neither a 0x address nor a symbol (letters, digits, _ and .)"
        ));
    }
    Ok(Target::Symbol {
        name: name.to_string(),
        off,
    })
}

/// How many watchpoints the CPU can hold at once, when user space can know
/// (`Arch::debug_regs`).
pub fn max_slots(arch: Arch) -> Option<usize> {
    arch.debug_regs().slots
}

/// Checks what the architecture allows, with the reason when it does not.
pub fn check(spec: &Spec, arch: Arch) -> Result<(), String> {
    let what = format!("-w {} {}", spec.type_name(), spec.target);
    if spec.addr < arch.kernel_space_start() {
        return Err(format!(
            "{what}: {:#x} is not a kernel address (kernel addresses start at {:#x} on {}); perf \
             would accept it and never fire. Give a kernel address or symbol",
            spec.addr,
            arch.kernel_space_start(),
            arch.name()
        ));
    }
    let regs = arch.debug_regs();
    match (spec.access, regs.no_read_only) {
        (Access::R, Some(why)) => {
            return Err(format!(
                "{what}: {why}; use rw{} (reads and writes) instead",
                spec.len
            ))
        }
        (Access::X, _) if spec.len != regs.exec_len => {
            return Err(format!("{what}: {}: use x{}", regs.exec_len_why, regs.exec_len))
        }
        _ => {}
    }
    let aligned = match spec.access {
        Access::X => spec.addr % regs.exec_align == 0,
        _ => (regs.data_aligned)(spec.addr, spec.len),
    };
    if !aligned {
        let down = spec.addr & !(spec.len as u64 - 1);
        return Err(format!(
            "{what}: {:#x} is misaligned for a {}-byte watchpoint; watch an address aligned to {} \
             (e.g. {:#x}) or use a shorter length",
            spec.addr, spec.len, spec.len, down
        ));
    }
    Ok(())
}

/// Parses and resolves one `-w TYPE TARGET`, looking symbols up with `lookup`, then checks it.
/// `no_symbol_hint` is appended when a symbol is not found (e.g. suggest `-k vmlinux`).
pub fn resolve(
    type_str: &str,
    target_str: &str,
    arch: Arch,
    lookup: &dyn Fn(&str) -> Option<u64>,
    no_symbol_hint: &str,
) -> Result<Spec, String> {
    let (access, len) = parse_type(type_str)?;
    let addr = match parse_target(target_str)? {
        Target::Addr(a) => a,
        Target::Symbol { name, off } => {
            let base = lookup(&name)
                .ok_or_else(|| format!("watch target '{target_str}': no symbol '{name}'{no_symbol_hint}"))?;
            base.checked_add(off).ok_or_else(|| {
                format!("watch target '{target_str}': the offset overflows the address space")
            })?
        }
    };
    let spec = Spec {
        access,
        len,
        addr,
        target: target_str.trim().to_string(),
    };
    check(&spec, arch)?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u64 = 0xffff_8880_0123_4560;

    fn lookup(name: &str) -> Option<u64> {
        (name == "jiffies_64").then_some(0xffff_ffff_8300_0000)
    }

    fn res(t: &str, target: &str, arch: Arch) -> Result<Spec, String> {
        resolve(t, target, arch, &lookup, " in /proc/kallsyms")
    }

    #[test]
    fn types_are_kind_then_length() {
        assert_eq!(parse_type("w8").unwrap(), (Access::W, 8));
        assert_eq!(parse_type("RW4").unwrap(), (Access::Rw, 4));
        assert_eq!(parse_type("r1").unwrap(), (Access::R, 1));
        assert_eq!(parse_type("x8").unwrap(), (Access::X, 8));
        assert!(parse_type("w").unwrap_err().contains("lacks a length"));
        assert!(parse_type("w3").unwrap_err().contains("1, 2, 4 or 8"));
        assert!(parse_type("q8").unwrap_err().contains("r, w, rw, x"));
        assert!(parse_type("w16").unwrap_err().contains("not 16"));
    }

    #[test]
    fn targets_are_hex_symbols_or_symbol_plus_offset() {
        assert_eq!(
            parse_target("0xffffffff81000000").unwrap(),
            Target::Addr(0xffff_ffff_8100_0000)
        );
        assert_eq!(
            parse_target("jiffies_64").unwrap(),
            Target::Symbol {
                name: "jiffies_64".into(),
                off: 0
            }
        );
        assert_eq!(
            parse_target("init_task+0x10").unwrap(),
            Target::Symbol {
                name: "init_task".into(),
                off: 16
            }
        );
        assert_eq!(
            parse_target("init_task+24").unwrap(),
            Target::Symbol {
                name: "init_task".into(),
                off: 24
            }
        );
        assert!(parse_target("0xzz").unwrap_err().contains("hex address"));
        assert!(parse_target("1234").unwrap_err().contains("0x1234"));
        assert!(parse_target("sym+zz").unwrap_err().contains("offset"));
        assert!(parse_target("a b").unwrap_err().contains("neither"));
        assert!(parse_target("").unwrap_err().contains("empty"));
    }

    #[test]
    fn resolves_symbols_with_offsets() {
        let s = res("w8", "jiffies_64+8", Arch::X86_64).unwrap();
        assert_eq!(s.addr, 0xffff_ffff_8300_0008);
        assert_eq!(s.type_name(), "w8");
        assert!(res("w8", "nosuch", Arch::X86_64)
            .unwrap_err()
            .contains("no symbol 'nosuch' in /proc/kallsyms"));
    }

    #[test]
    fn refuses_user_addresses() {
        let e = res("w8", "0x10", Arch::X86_64).unwrap_err();
        assert!(e.contains("not a kernel address"), "{e}");
        assert!(res("w8", "0x7fff00001000", Arch::Aarch64).is_err());
        assert!(res("w8", &format!("{K:#x}"), Arch::X86_64).is_ok());
    }

    #[test]
    fn x86_refuses_reads_alone_and_short_exec() {
        let e = res("r8", &format!("{K:#x}"), Arch::X86_64).unwrap_err();
        assert!(e.contains("rw8"), "{e}");
        assert!(res("r8", &format!("{K:#x}"), Arch::Aarch64).is_ok());
        assert!(res("x4", &format!("{K:#x}"), Arch::X86_64)
            .unwrap_err()
            .contains("x8"));
        assert!(res("x8", &format!("{K:#x}"), Arch::X86_64).is_ok());
        assert!(res("x8", &format!("{K:#x}"), Arch::Aarch64)
            .unwrap_err()
            .contains("x4"));
    }

    #[test]
    fn misaligned_addresses_are_refused_per_arch() {
        let e = res("w8", &format!("{:#x}", K + 4), Arch::X86_64).unwrap_err();
        assert!(e.contains("misaligned") && e.contains(&format!("{K:#x}")), "{e}");
        assert!(res("w4", &format!("{:#x}", K + 4), Arch::X86_64).is_ok());
        assert!(res("w2", &format!("{:#x}", K + 1), Arch::X86_64).is_err());
        // arm64 accepts any bytes inside one doubleword.
        assert!(res("w2", &format!("{:#x}", K + 1), Arch::Aarch64).is_ok());
        assert!(res("w4", &format!("{:#x}", K + 6), Arch::Aarch64).is_err());
        // Execute breakpoints: x86 instructions start at any byte, A64 ones every 4.
        let text = 0xffff_ffff_8100_0003u64;
        assert!(res("x8", &format!("{text:#x}"), Arch::X86_64).is_ok());
        assert!(res("x4", &format!("{text:#x}"), Arch::Aarch64).is_err());
        assert!(res("x4", &format!("{:#x}", text + 1), Arch::Aarch64).is_ok());
    }

    #[test]
    fn values_print_in_the_watched_width() {
        let s = res("w2", &format!("{K:#x}"), Arch::X86_64).unwrap();
        assert_eq!(s.format_value(0xff), "0x00ff");
        let s = res("w8", &format!("{K:#x}"), Arch::X86_64).unwrap();
        assert_eq!(s.format_value(0x1122334455667788), "0x1122334455667788");
        assert_eq!(s.format_value(1), "0x0000000000000001");
    }
}
