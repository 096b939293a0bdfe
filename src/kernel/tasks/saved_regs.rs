//! A switched-out task's registers: those its last context switch saved (the architecture's
//! switch frame, at the offsets BTF gives).

use super::layout::{SavedLayout, TaskLayout};
use crate::arch::{Arch, Registers};
use crate::mem::{read_u64, read_u64s, ReadError, VirtRead};

/// Registers a switched-out task saved at its last context switch, in `arch`'s GDB order.
pub fn saved_registers(
    mem: &mut dyn VirtRead,
    l: &TaskLayout,
    arch: Arch,
    task: u64,
) -> Result<Registers, ReadError> {
    let mut regs = vec![None; arch.registers().len()];
    let mut set = |name: &str, v: u64| {
        if let Some(i) = arch.reg_index(name) {
            if let Some(slot) = regs.get_mut(i) {
                *slot = Some(v);
            }
        }
    };
    match &l.saved {
        SavedLayout::OnStack {
            sp_member,
            thread_sp,
            frame,
            frame_size,
            fsbase,
        } => {
            let sp = read_u64(mem, task.wrapping_add(*thread_sp)).map_err(|e| {
                ReadError::mem(format!("cannot read thread.{sp_member} of task {task:#x}"), e)
            })?;
            let offs: Vec<u64> = frame.iter().map(|(_, off)| *off).collect();
            let words = read_u64s(mem, sp, &offs)
                .map_err(|e| ReadError::mem(format!("cannot read the switch frame of task {task:#x}"), e))?;
            for ((reg, _), v) in frame.iter().zip(words) {
                set(reg, v);
            }
            // The switch returns with the frame popped.
            if let Some(sp_reg) = arch.sp_index().and_then(|i| arch.registers().get(i)) {
                set(&sp_reg.name, sp.wrapping_add(*frame_size));
            }
            if let Some((reg, fs)) = fsbase {
                if let Ok(v) = read_u64(mem, task.wrapping_add(*fs)) {
                    set(reg, v);
                }
            }
        }
        SavedLayout::InThread {
            member,
            context,
            regs: list,
            copies,
        } => {
            let offs: Vec<u64> = list.iter().map(|(_, off)| *off).collect();
            let words = read_u64s(mem, task.wrapping_add(*context), &offs)
                .map_err(|e| ReadError::mem(format!("cannot read thread.{member} of task {task:#x}"), e))?;
            let mut read = Vec::with_capacity(list.len());
            for ((reg, _), v) in list.iter().zip(words) {
                set(reg, v);
                read.push((*reg, v));
            }
            for (to, from) in copies.iter() {
                if let Some((_, v)) = read.iter().find(|(r, _)| r == from) {
                    set(to, *v);
                }
            }
        }
        SavedLayout::None(what) => {
            return Err(format!(
                "the kernel's type information lacks {what}: saved task registers are unavailable"
            )
            .into())
        }
    }
    Ok(Registers(regs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tasks::testutil::{world, x86_layout, K};

    #[test]
    fn x86_switch_frame_gives_rip_rsp_and_callee_saved() {
        let l = TaskLayout::new(&x86_layout(), Arch::X86_64).unwrap();
        let mut m = world();
        let t = K + 0x1000;
        let sp = K + 0x40000;
        m.put_u64(t + 192 + 8, sp);
        for i in 0..7u64 {
            m.put_u64(sp + i * 8, 0x1111 * (i + 1));
        }
        let r = saved_registers(&mut m, &l, Arch::X86_64, t).unwrap();
        let a = Arch::X86_64;
        let get = |n: &str| r.0[a.reg_index(n).unwrap()];
        assert_eq!(get("r15"), Some(0x1111));
        assert_eq!(get("rbx"), Some(0x1111 * 5));
        assert_eq!(get("rbp"), Some(0x1111 * 6));
        assert_eq!(get("rip"), Some(0x1111 * 7));
        assert_eq!(get("rsp"), Some(sp + 56));
        assert_eq!(get("rax"), None);
    }
}
