//! `kmemd -c VMCORE --pid PID`: one user process of a dump, served like a core file. Memory goes
//! through the process's own page tables (`mm->pgd`), threads are its tasks, and registers are
//! the user registers saved in `pt_regs` at the top of each task's kernel stack.

use super::dump::DumpTarget;
use crate::arch::walk::Paging;
use crate::arch::{Arch, Registers};
use crate::dump::DumpMem;
use crate::kernel::tasks::{self, Task, TaskLayout, UserRegsLayout};
use crate::mem::{read_u64, MemError, PhysAddr, PhysRead, ReadError, VirtAddr, VirtRead};
use crate::target::{Target, ThreadInfo, Tid};

/// The dump's monitor commands a process target does not answer.
const KERNEL_ADDRESS_COMMANDS: &[&str] = &["vtop", "kaslr"];

pub struct ProcessTarget {
    inner: DumpTarget,
    arch: Arch,
    pid: u32,
    user: Paging,
    threads: Vec<Task>,
    layout: TaskLayout,
    regs: Result<UserRegsLayout, String>,
    /// `mm->saved_auxv` up to and including its AT_NULL pair; `None` when unreadable.
    auxv: Option<Vec<u8>>,
}

/// `mm->saved_auxv` as `/proc/PID/auxv` gives it (fs/proc/base.c `proc_pid_auxv`, 6.1): the
/// (key, value) words up to and including the AT_NULL pair. `unsigned long
/// saved_auxv[AT_VECTOR_SIZE]` in `struct mm_struct` (include/linux/mm_types.h, 2.6 to 6.12);
/// both served arches are 64-bit, so a word is 8 bytes.
fn read_saved_auxv(
    mem: &mut dyn VirtRead,
    member: Option<crate::kernel::Member>,
    mm: u64,
) -> Result<Vec<u8>, String> {
    let m = member.ok_or("the kernel's type information lacks mm_struct.saved_auxv")?;
    let size = usize::try_from(m.size)
        .ok()
        .filter(|s| (16..=4096).contains(s))
        .ok_or_else(|| format!("mm_struct.saved_auxv has an odd size {}", m.size))?;
    let mut buf = vec![0u8; size];
    let mut done = 0;
    while done < size {
        let addr = mm.wrapping_add(m.offset()).wrapping_add(done as u64);
        let n = mem
            .read_virt(VirtAddr(addr), &mut buf[done..])
            .map_err(|e| format!("cannot read mm->saved_auxv: {e}"))?;
        if n == 0 {
            return Err("cannot read mm->saved_auxv: short read".into());
        }
        done += n;
    }
    let mut end = 0;
    for pair in buf.chunks_exact(16) {
        end += 16;
        if pair.iter().take(8).all(|&b| b == 0) {
            break;
        }
    }
    buf.truncate(end);
    Ok(buf)
}

impl ProcessTarget {
    pub fn new(mut inner: DumpTarget, pid: u32) -> Result<ProcessTarget, String> {
        let arch = inner.arch();
        let regs = UserRegsLayout::new(inner.kernel_info(), arch);
        let (layout, list) = inner.tasks()?.clone();
        let threads: Vec<Task> = list
            .iter()
            .filter(|t| i64::from(t.tgid) == i64::from(pid))
            .cloned()
            .collect();
        let leader = threads
            .iter()
            .find(|t| i64::from(t.pid) == i64::from(pid))
            .ok_or_else(|| {
                format!("the dump has no process {pid}: `monitor ps` on the whole dump lists the processes")
            })?
            .clone();
        let (dump, kpaging) = inner.parts();
        let mut mem = DumpMem {
            dump,
            paging: kpaging,
        };
        let mm = layout.mm_of(&mut mem, leader.addr)?;
        if mm == 0 {
            return Err(format!(
                "pid {pid} ({}) is a kernel thread: it has no user address space",
                leader.comm
            ));
        }
        let pgd_off = inner
            .kernel_info()
            .member("mm_struct", "pgd")
            .ok_or("the kernel's type information lacks mm_struct.pgd")?
            .offset();
        let (dump, kpaging) = inner.parts();
        let mut mem = DumpMem {
            dump,
            paging: kpaging,
        };
        let pgd = read_u64(&mut mem, mm.wrapping_add(pgd_off))
            .map_err(|e| format!("cannot read pid {pid}'s mm->pgd: {e}"))?;
        let pa = kpaging
            .translate(dump, VirtAddr(pgd))
            .map_err(|e| format!("pid {pid}'s page table {pgd:#x} is not mapped: {e}"))?
            .pa;
        let user = Paging {
            form: kpaging.form,
            root: PhysAddr(pa.value()),
        };
        let auxv_member = inner.kernel_info().member("mm_struct", "saved_auxv");
        let (dump, kpaging) = inner.parts();
        let mut mem = DumpMem {
            dump,
            paging: kpaging,
        };
        let auxv = read_saved_auxv(&mut mem, auxv_member, mm)
            .map_err(|e| log::warn!("pid {pid}: no auxv for GDB: {e}"))
            .ok();
        log::info!(
            "process {pid} ({}): {} thread(s), page tables at physical {:#x}",
            leader.comm,
            threads.len(),
            pa.value()
        );
        Ok(ProcessTarget {
            inner,
            arch,
            pid,
            user,
            threads,
            layout,
            regs,
            auxv,
        })
    }
}

impl VirtRead for ProcessTarget {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let addr = addr.0;
        let va = self.arch.user_walk_addr(addr, self.user.form.va_bits)?;
        let (dump, _) = self.inner.parts();
        let t = self.user.translate(dump, VirtAddr(va)).map_err(|e| e.at(addr))?;
        let n = buf.len().min(usize::try_from(t.page_size).unwrap_or(usize::MAX));
        dump.read_phys(t.pa, &mut buf[..n]).map_err(|e| MemError {
            addr,
            detail: format!("{} (physical {:#x})", e.detail, t.pa.value()),
            ..e
        })
    }
}

impl Target for ProcessTarget {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn threads(&mut self) -> Vec<ThreadInfo> {
        self.threads
            .iter()
            .map(|t| ThreadInfo {
                tid: u64::from(t.pid.max(1) as u32),
                name: t.comm.clone(),
                extra: format!("pid {} {} ({})", t.pid, t.comm, t.state),
                core: t.cpu,
            })
            .collect()
    }

    fn stop_thread(&mut self) -> Tid {
        u64::from(self.pid)
    }

    fn registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        let task = self
            .threads
            .iter()
            .find(|t| u64::from(t.pid.max(0) as u32) == tid)
            .ok_or_else(|| format!("process {} has no thread {tid}", self.pid))?
            .clone();
        let u = self.regs.clone()?;
        let (dump, kpaging) = self.inner.parts();
        let mut mem = DumpMem {
            dump,
            paging: kpaging,
        };
        let mem: &mut dyn VirtRead = &mut mem;
        let mut regs = tasks::user_registers(mem, &self.layout, &u, self.arch, task.addr)?;
        // User code signs return addresses with the same PAC width (arm64).
        let pac = dump.vmcoreinfo().number_u64("KERNELPACMASK").unwrap_or(0);
        self.arch.set_pac_mask(&mut regs, pac);
        Ok(regs)
    }

    fn kaslr_offset(&self) -> Option<u64> {
        None
    }

    fn auxv(&self) -> Option<&[u8]> {
        self.auxv.as_deref()
    }

    /// The dump's commands, less those about kernel addresses: this target serves the
    /// process's memory, where GDB neither walks kernel page tables nor relocates vmlinux.
    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        let first = cmd.split_whitespace().next()?;
        if KERNEL_ADDRESS_COMMANDS.contains(&first) {
            return None;
        }
        self.inner.monitor(cmd)
    }

    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        self.inner
            .monitor_help()
            .into_iter()
            .filter(|(c, _)| {
                let first = c.split_whitespace().next().unwrap_or_default();
                !KERNEL_ADDRESS_COMMANDS.contains(&first)
            })
            .collect()
    }

    fn describe(&self) -> String {
        let comm = self.threads.first().map_or("?", |t| t.comm.as_str());
        format!("process {} ({comm}) of a {}", self.pid, self.inner.describe())
    }
}
