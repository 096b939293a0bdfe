//! A user task's registers: the `pt_regs` at the top of its kernel stack.

use super::layout::TaskLayout;
use crate::arch::{Arch, Registers};
use crate::kernel::layout::Layout;
use crate::mem::{read_u64, ReadError, VirtRead};

/// Where a task's user registers are: `struct pt_regs` at the top of its kernel stack
/// (`task_pt_regs()`: x86_64 arch/x86/include/asm/processor.h, arm64 asm/processor.h), member
/// offsets from BTF by name, mapped to GDB register names.
#[derive(Debug, Clone)]
pub struct UserRegsLayout {
    pub size: u64,
    pub regs: Vec<(&'static str, u64)>,
    /// The user fs base (register, offset in the task), where the architecture has one.
    pub fsbase: Option<(&'static str, u64)>,
}

impl UserRegsLayout {
    pub fn new(l: &dyn Layout, arch: Arch) -> Result<UserRegsLayout, String> {
        let size = l
            .size_of("pt_regs")
            .ok_or("the kernel's type information has no struct pt_regs: user registers are unavailable")?;
        let mut regs = Vec::new();
        let pt = arch.pt_regs();
        if let Some((array, names)) = pt.array {
            if let Some(f) = l.member("pt_regs", array) {
                for (i, r) in names.iter().enumerate() {
                    regs.push((*r, f.offset + 8 * i as u64));
                }
            }
        }
        for (m, r) in pt.members {
            if let Some(f) = l.member("pt_regs", m) {
                regs.push((*r, f.offset));
            }
        }
        if regs.len() < 8 {
            return Err("the kernel's struct pt_regs has none of the expected members".into());
        }
        let fsbase = arch.thread_fsbase().and_then(|(m, reg)| {
            let t = l.member("task_struct", "thread")?;
            Some((reg, t.offset + l.member("thread_struct", m)?.offset))
        });
        Ok(UserRegsLayout { size, regs, fsbase })
    }
}

/// A user task's registers from the `pt_regs` at the top of its kernel stack. THREAD_SIZE is not
/// in BTF: 16 KiB (both arches without KASAN) is tried first, then 32 KiB, and the one whose
/// frame holds user-mode state wins (x86_64 `cs` = __USER_CS 0x33; arm64 PSTATE.M = EL0t).
pub fn user_registers(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    u: &UserRegsLayout,
    arch: Arch,
    task: u64,
) -> Result<Registers, ReadError> {
    let stack_off = l
        .stack
        .ok_or("task_struct.stack is unknown: user registers are unavailable")?;
    let stack = read_u64(mem, task.wrapping_add(stack_off))
        .map_err(|e| ReadError::mem(format!("cannot read task {task:#x}'s stack pointer"), e))?;
    let mut last = String::from("no stack");
    for thread_size in [16u64 << 10, 32 << 10] {
        let base = stack.wrapping_add(thread_size).wrapping_sub(u.size);
        let mut regs = vec![None; arch.registers().len()];
        let mut user_mode = false;
        let mut ok = true;
        for (name, off) in &u.regs {
            match read_u64(mem, base.wrapping_add(*off)) {
                Ok(v) => {
                    if let Some(user) = arch.is_user_mode(name, v) {
                        user_mode = user;
                    }
                    if let Some(slot) = arch.reg_index(name).and_then(|i| regs.get_mut(i)) {
                        *slot = Some(v);
                    }
                }
                Err(e) => {
                    last = format!("cannot read pt_regs at {base:#x}: {e}");
                    ok = false;
                    break;
                }
            }
        }
        if ok && user_mode {
            if let Some((reg, fs)) = u.fsbase {
                if let (Ok(v), Some(i)) = (read_u64(mem, task.wrapping_add(fs)), arch.reg_index(reg)) {
                    if let Some(slot) = regs.get_mut(i) {
                        *slot = Some(v);
                    }
                }
            }
            return Ok(Registers(regs));
        }
        if ok {
            last = format!(
                "no user-mode pt_regs at the top of the {}-KiB stack at {stack:#x}",
                thread_size >> 10
            );
        }
    }
    Err(format!("task {task:#x}: {last} (a kernel thread has no user registers)").into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tasks::testutil::{world, x86_layout, K};

    #[test]
    fn user_registers_find_the_user_frame_at_the_top_of_the_stack() {
        let mut fl = x86_layout();
        for (i, n) in [
            "r15", "r14", "r13", "r12", "bp", "bx", "r11", "r10", "r9", "r8", "ax", "cx", "dx", "si", "di",
            "orig_ax", "ip", "cs", "flags", "sp", "ss",
        ]
        .iter()
        .enumerate()
        {
            fl.m("pt_regs", n, i as u64 * 8, 8);
        }
        fl.sizes.insert("pt_regs".into(), 168);
        let l = TaskLayout::new(&fl, Arch::X86_64).unwrap();
        let u = UserRegsLayout::new(&fl, Arch::X86_64).unwrap();
        let mut m = world();
        let t = K + 0x1000;
        let stack = K + 0x80000;
        m.put_u64(t + 128, stack);
        // A 32 KiB stack: the 16 KiB guess finds kernel data there (cs 0x10), not user state.
        m.put_bytes(stack, &[0u8; 32 << 10]);
        let top16 = stack + (16 << 10) - 168;
        m.put_u64(top16 + 17 * 8, 0x10);
        let top = stack + (32 << 10) - 168;
        m.put_u64(top + 16 * 8, 0x40_1234);
        m.put_u64(top + 17 * 8, 0x33);
        m.put_u64(top + 19 * 8, 0x7ffd_0000_1000);
        m.put_u64(top + 10 * 8, 0xfffffffffffffe00);
        let r = user_registers(&mut m, &l, &u, Arch::X86_64, t).unwrap();
        let get = |n: &str| r.0[Arch::X86_64.reg_index(n).unwrap()];
        assert_eq!(get("rip"), Some(0x40_1234));
        assert_eq!(get("rsp"), Some(0x7ffd_0000_1000));
        assert_eq!(get("rax"), Some(0xfffffffffffffe00));
        // Neither size holds a user frame: a kernel thread.
        m.put_u64(top + 17 * 8, 0x10);
        let e = user_registers(&mut m, &l, &u, Arch::X86_64, t).unwrap_err();
        assert_eq!(e.kind(), None, "the stack was read: {e}");
        assert!(e.to_string().contains("kernel thread"), "{e}");
    }
}
