//! A crash dump as a GDB target: kernel virtual addresses go through the dump's own page tables
//! (src/arch/ walkers), threads are the CPUs with the registers the dump saved, and the KASLR
//! offset comes from VMCOREINFO.

use crate::arch::walk::Paging;
use crate::arch::{Arch, Registers};
use crate::dump::{read_virt, Dump, DumpMem};
use crate::kernel::kaslr::Kaslr;
use crate::kernel::modules::{self, Module};
use crate::kernel::monitor::{self, KernelView};
use crate::kernel::panic::{self, CpuRole};
use crate::kernel::tasks::{self, Task, TaskLayout};
use crate::kernel::threads;
use crate::kernel::KernelInfo;
use crate::mem::{read_u32, MemError, ReadError, VirtAddr, VirtRead};
use crate::target::{Target, ThreadInfo, Tid};
use std::path::Path;

pub struct DumpTarget {
    dump: Dump,
    arch: Arch,
    paging: Paging,
    threads: Vec<ThreadInfo>,
    /// The CPU that panicked (None: not known or no panic), found on GDB's first `?` or thread
    /// list, not at open: without the old DISKDUMP header it needs the kernel's symbols.
    crashed: Option<Option<(usize, &'static str)>>,
    /// Kernel symbols and layouts, built on first use (decoding kallsyms and finding BTF takes
    /// a moment, and `--read` never needs them).
    kinfo: Option<KernelInfo>,
    /// The task list (a dump does not change), or why there is none.
    tasks: Option<Result<(TaskLayout, Vec<Task>), String>>,
    /// `-k vmlinux`: its symbols and BTF take precedence over what the dump's memory gives.
    vmlinux: Option<std::path::PathBuf>,
}

impl DumpTarget {
    pub fn open(path: &Path) -> Result<DumpTarget, String> {
        let name = path
            .to_str()
            .ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))?;
        let dump = Dump::open(name)?;
        DumpTarget::new(dump).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn new(dump: Dump) -> Result<DumpTarget, String> {
        let arch = dump.arch();
        let vmci = dump.vmcoreinfo();
        if let (true, Some(d)) = (vmci.is_empty(), vmci.damage()) {
            return Err(format!(
                "the dump's VMCOREINFO note is corrupt: {d}; no line of it is readable, so the \
                 kernel's page tables cannot be found. The dump file is damaged: copy it again \
                 from where the crash kernel saved it"
            ));
        }
        if vmci.is_empty() {
            return Err(
                "the dump carries no VMCOREINFO, which kmemd needs to find the kernel's page \
                        tables (for QEMU dumps: give the guest `-device vmcoreinfo` and load its \
                        qemu_fw_cfg module)"
                    .into(),
            );
        }
        let paging = arch.paging(vmci)?;
        let threads: Vec<ThreadInfo> = dump
            .cpus()
            .iter()
            .enumerate()
            .map(|(i, cpu)| {
                let mut extra = format!("CPU {i}");
                if cpu.pid == 0 {
                    extra.push_str(" idle");
                } else {
                    extra.push_str(&format!(" pid {}", cpu.pid));
                }
                ThreadInfo {
                    tid: i as Tid + 1,
                    name: format!("CPU {i}"),
                    extra,
                    core: Some(i as u32),
                }
            })
            .collect();
        if threads.is_empty() {
            return Err("the dump has no NT_PRSTATUS notes, so no CPU registers".into());
        }
        Ok(DumpTarget {
            dump,
            arch,
            paging,
            threads,
            crashed: None,
            kinfo: None,
            tasks: None,
            vmlinux: None,
        })
    }

    /// Takes symbols and BTF from `vmlinux` first (`-k`).
    pub fn set_vmlinux(&mut self, vmlinux: Option<&Path>) {
        self.vmlinux = vmlinux.map(Path::to_path_buf);
        self.kinfo = None;
        self.tasks = None;
        self.crashed = None;
    }

    /// The CPU that panicked: the DISKDUMP header's `current_cpu` when the dump records it, else
    /// the kernel's own `panic_cpu` (kernel/panic.c, an atomic_t that panic() and nmi_panic() set
    /// to the panicking CPU; PANIC_CPU_INVALID = -1 otherwise, Linux 4.5 to 6.x), whose symbol
    /// kallsyms with data symbols (CONFIG_KALLSYMS_ALL) or `-k vmlinux` gives; else, on aarch64,
    /// the one CPU whose call chain runs through panic().
    pub fn crashing_cpu(&mut self) -> Option<usize> {
        self.crash().map(|(c, _)| c)
    }

    /// The crashing CPU and where kmemd learnt it, found once.
    fn crash(&mut self) -> Option<(usize, &'static str)> {
        if let Some(c) = self.crashed {
            return c;
        }
        let ncpus = self.threads.len();
        let c = match self.dump.crashing_cpu() {
            Some(c) => Some((c, "the kdump header's current_cpu")),
            None => match self.kernel_info().symbol("panic_cpu") {
                Some(addr) => {
                    let mut mem = DumpMem {
                        dump: &self.dump,
                        paging: &self.paging,
                    };
                    match read_u32(&mut mem, addr) {
                        // -1 and anything past the dump's CPUs: no panic (or not one this dump
                        // can show).
                        Ok(v) => usize::try_from(v as i32)
                            .ok()
                            .filter(|&c| c < ncpus)
                            .map(|c| (c, "the kernel's panic_cpu")),
                        Err(e) => {
                            log::warn!("cannot read panic_cpu at {addr:#x}: {}", e.detail);
                            None
                        }
                    }
                }
                None => self
                    .crashing_cpu_from_call_chains()
                    .map(|c| (c, "its call chain runs through panic()")),
            },
        };
        self.crashed = Some(c);
        c
    }

    /// `--info` and `monitor info`: the dump's description, with each CPU's running task and the
    /// crashing CPU taken from the kernel's own data when it can be read.
    pub fn info_text(&mut self) -> String {
        let cpus = self.cpu_labels();
        let crashed = match self.crash() {
            Some((c, how)) => format!("CPU {c} ({how})"),
            None => "none found".to_string(),
        };
        self.dump.info_text_with(Some(&cpus), Some(&crashed))
    }

    /// What each CPU thread's extra info says: the task the kernel's task list has running on
    /// it; NT_PRSTATUS pr_pid does not always say (QEMU writes the CPU index + 1 there,
    /// dump/dump.c). A CPU no listed task runs on runs its idle task: only CPU 0's (init_task)
    /// is on the task list. Without a task list, what the file says.
    fn cpu_labels(&mut self) -> Vec<String> {
        let ncpus = self.threads.len();
        let Ok((_, tasks)) = self.tasks() else {
            return self.threads.iter().map(|t| t.extra.clone()).collect();
        };
        (0..ncpus)
            .map(|i| {
                let running = tasks
                    .iter()
                    .find(|t| t.on_cpu && t.pid != 0 && t.cpu == Some(i as u32));
                match running {
                    Some(task) => format!("CPU {i} pid {} {}", task.pid, task.comm),
                    None => format!("CPU {i} idle"),
                }
            })
            .collect()
    }

    /// Without `panic_cpu`: the CPU whose call chain runs through panic() (src/kernel/panic.rs),
    /// where the architecture keeps frame records to follow (arm64; x86_64 kernels keep no
    /// frame pointers).
    fn crashing_cpu_from_call_chains(&mut self) -> Option<usize> {
        self.kernel_info();
        let kinfo = self.kinfo.as_ref()?;
        let mut mem = DumpMem {
            dump: &self.dump,
            paging: &self.paging,
        };
        let symbolize = |a: u64| kinfo.symbolize(a).map(|(name, _)| name);
        let mut roles: Vec<CpuRole> = Vec::new();
        for cpu in self.dump.cpus() {
            let Some(chain) = self.arch.call_chain(&mut mem, &cpu.regs, self.dump.vmcoreinfo()) else {
                log::info!("no panic_cpu symbol (kallsyms without data symbols; -k VMLINUX gives it): the crashing CPU is not known");
                return None;
            };
            roles.push(panic::classify(&chain, &symbolize));
        }
        for (i, r) in roles.iter().enumerate() {
            log::debug!("CPU {i}: {r:?}");
        }
        let c = panic::panicking_cpu(&roles);
        match c {
            Some(c) => log::info!("CPU {c} panicked: its call chain runs through panic() (no panic_cpu symbol to read)"),
            None => log::info!("no panic_cpu symbol, and no single CPU's call chain runs through panic(): the crashing CPU is not known (-k VMLINUX gives panic_cpu)"),
        }
        c
    }

    /// Symbols and layouts from the dump's own memory (kallsyms, BTF, VMCOREINFO).
    pub fn kernel_info(&mut self) -> &KernelInfo {
        if self.kinfo.is_none() {
            let mut mem = DumpMem {
                dump: &self.dump,
                paging: &self.paging,
            };
            let k = KernelInfo::from_dump(&mut mem, self.dump.vmcoreinfo(), self.vmlinux.as_deref());
            for m in k.missing() {
                log::warn!("{m}");
            }
            self.kinfo = Some(k);
        }
        self.kinfo.get_or_insert_with(KernelInfo::default)
    }

    /// Every task of the dump, walked once.
    pub fn tasks(&mut self) -> Result<&(TaskLayout, Vec<Task>), String> {
        if self.tasks.is_none() {
            self.kernel_info();
            let r = match &self.kinfo {
                Some(k) => walk_dump_tasks(&self.dump, &self.paging, self.arch, k),
                None => Err("no kernel information".into()),
            };
            if let Err(e) = &r {
                log::warn!("no task threads: {e}");
            }
            self.tasks = Some(r);
        }
        match &self.tasks {
            Some(Ok(t)) => Ok(t),
            Some(Err(e)) => Err(e.clone()),
            None => Err("no tasks".into()),
        }
    }

    pub fn dump(&self) -> &Dump {
        &self.dump
    }

    /// The dump and the kernel's page tables, borrowed together.
    pub fn parts(&self) -> (&Dump, &Paging) {
        (&self.dump, &self.paging)
    }
}

/// The task list of a dump, from `init_task` or else from a task found through a CPU's stack.
fn walk_dump_tasks(
    dump: &Dump,
    paging: &Paging,
    arch: Arch,
    k: &KernelInfo,
) -> Result<(TaskLayout, Vec<Task>), String> {
    let layout = TaskLayout::new(k, arch)?;
    let mut mem = DumpMem { dump, paging };
    let sp_index = arch.sp_index();
    let start = match k.symbol("init_task") {
        Some(t) => t,
        None => dump
            .cpus()
            .iter()
            .find_map(|c| {
                let regs = c.gdb_registers(arch).ok()?.0;
                let sp = regs.get(sp_index?).copied().flatten()?;
                let all: Vec<u64> = regs.into_iter().flatten().collect();
                tasks::find_task_from_cpu(&mut mem, &layout, arch.kernel_space_start(), sp, &all)
            })
            .ok_or(
                "kallsyms in the dump has no init_task (a kernel without CONFIG_KALLSYMS_ALL) and no \
                 CPU's kernel stack led to a task, so the task list has no known start",
            )?,
    };
    let list = tasks::walk(&mut mem, &layout, start)?;
    Ok((layout, list))
}

impl DumpTarget {
    /// A task's registers: the CPU's saved registers while it ran on one, else those its last
    /// context switch saved.
    fn task_registers(&mut self, pid: i32) -> Result<Registers, ReadError> {
        let arch = self.arch;
        let (layout, list) = self.tasks()?;
        let task = list
            .iter()
            .find(|t| t.pid == pid)
            .cloned()
            .ok_or_else(|| format!("no task with pid {pid} in the dump"))?;
        let layout = layout.clone();
        // A task running on a CPU: that CPU's saved registers (the task list, not NT_PRSTATUS
        // pr_pid, says who ran there; QEMU writes the CPU index + 1 as pr_pid). Idle tasks are all
        // pid 0, so init_task (swapper/0) gets CPU 0's.
        if task.on_cpu {
            if let Some(c) = task.cpu.and_then(|c| self.dump.cpus().get(c as usize)) {
                return Ok(c.gdb_registers(arch)?);
            }
        }
        let mut mem = DumpMem {
            dump: &self.dump,
            paging: &self.paging,
        };
        tasks::saved_registers(&mut mem, &layout, arch, task.addr)
    }
}

impl VirtRead for DumpTarget {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        read_virt(&self.dump, &self.paging, addr, buf)
    }
}

impl Target for DumpTarget {
    fn prepare(&mut self) {
        if let Err(e) = self.tasks() {
            log::warn!("tasks are not available as threads: {e}");
        }
        self.crashing_cpu();
    }

    fn arch(&self) -> Arch {
        self.arch
    }

    fn threads(&mut self) -> Vec<ThreadInfo> {
        let mut all = self.threads.clone();
        for (t, label) in all.iter_mut().zip(self.cpu_labels()) {
            t.extra = label;
        }
        if let Some(t) = self.crashing_cpu().and_then(|c| all.get_mut(c)) {
            t.extra.push_str(" (panic)");
        }
        if let Ok((_, tasks)) = self.tasks() {
            all.extend(threads::task_threads(tasks));
        }
        all
    }

    fn stop_thread(&mut self) -> Tid {
        self.crashing_cpu().map_or(1, |c| c as Tid + 1)
    }

    fn registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        if let Some(pid) = threads::tid_pid(tid) {
            return self.task_registers(pid);
        }
        let cpu = tid
            .checked_sub(1)
            .and_then(|i| self.dump.cpus().get(usize::try_from(i).ok()?))
            .ok_or_else(|| format!("no thread {tid}: threads are CPUs 1 to {}", self.threads.len()))?;
        Ok(cpu.gdb_registers(self.arch)?)
    }

    fn kaslr_offset(&self) -> Option<u64> {
        self.dump.kaslr_offset()
    }

    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        let mut words = cmd.split_whitespace();
        match words.next()? {
            "vtop" => Some(match words.next().map(crate::mem::parse_addr) {
                Some(Ok(va)) => Ok(format!("{}\n", self.paging.walk(&self.dump, VirtAddr(va)))),
                Some(Err(e)) => Err(e),
                None => Err("usage: monitor vtop ADDR".into()),
            }),
            "info" => Some(Ok(self.info_text())),
            _ => monitor::run(self, cmd),
        }
    }

    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        let mut help = vec![
            (
                "vtop ADDR",
                "walk the page tables for a kernel address, level by level",
            ),
            ("info", "what the dump is (format, kernel, CPUs, memory)"),
        ];
        help.extend_from_slice(monitor::COMMANDS);
        help
    }

    fn describe(&self) -> String {
        format!(
            "{} crash dump of Linux {} ({}, {} CPUs)",
            self.arch,
            self.dump.vmcoreinfo().osrelease().unwrap_or("?"),
            self.dump.format_name(),
            self.threads.len()
        )
    }
}

impl KernelView for DumpTarget {
    fn kernel(&mut self) -> Result<(Box<dyn VirtRead + '_>, &KernelInfo), String> {
        self.kernel_info();
        let mem = DumpMem {
            dump: &self.dump,
            paging: &self.paging,
        };
        Ok((Box::new(mem), self.kinfo.as_ref().ok_or("no kernel information")?))
    }

    fn task_list(&mut self) -> Result<Vec<Task>, String> {
        self.tasks().map(|(_, t)| t.clone())
    }

    /// From the kernel's own module list in the dump's memory.
    fn module_list(&mut self) -> Result<Vec<Module>, String> {
        let arch = self.arch;
        let (mut mem, k) = self.kernel()?;
        modules::from_memory(mem.as_mut(), k, arch).map_err(String::from)
    }

    fn vmcoreinfo_text(&mut self) -> Result<String, String> {
        let mut out = format!(
            "# VMCOREINFO from the dump's notes ({})\n",
            self.dump.format_name()
        );
        for (k, v) in self.dump.vmcoreinfo().entries() {
            out.push_str(&format!("{k}={v}\n"));
        }
        Ok(out)
    }

    fn kaslr(&self) -> Kaslr {
        Kaslr::Dump {
            offset: self.dump.kaslr_offset(),
            percpu_at_zero: self.arch.percpu_at_zero(),
        }
    }
}

/// Opens a dump as a GDB target (`-c FILE`, `-k VMLINUX`, `--pid PID`).
pub fn open_target(path: &Path, vmlinux: Option<&Path>, pid: Option<u32>) -> Result<Box<dyn Target>, String> {
    let mut t = DumpTarget::open(path)?;
    t.set_vmlinux(vmlinux);
    if let Some(pid) = pid {
        return Ok(Box::new(super::process::ProcessTarget::new(t, pid)?));
    }
    if let Some(off) = t.dump().kaslr_offset() {
        log::info!(
            "KASLR offset {off:#x}: GDB applies it to .text/.data/.bss by itself; `monitor kaslr` prints \
             the lines for every section (or load symbols with `file vmlinux -o {off:#x}` if you do not \
             need per-CPU variables)"
        );
    }
    Ok(Box::new(t))
}

/// The `--info` description of a dump.
pub fn info_text(path: &Path, vmlinux: Option<&Path>) -> Result<String, String> {
    let name = path
        .to_str()
        .ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))?;
    let dump = Dump::open(name)?;
    // Without VMCOREINFO, or page tables kmemd can set up, the kernel's data cannot be read: the
    // file's own description is all there is.
    let file_only = dump.info_text();
    match DumpTarget::new(dump) {
        Ok(mut t) => {
            t.set_vmlinux(vmlinux);
            Ok(t.info_text())
        }
        Err(e) => {
            log::warn!("{}: {e}; describing the file alone", path.display());
            Ok(file_only)
        }
    }
}
