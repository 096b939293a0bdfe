//! A crash dump as a GDB target: kernel virtual addresses go through the dump's own page tables
//! (src/arch/ walkers), threads are the CPUs with the registers the dump saved, and the KASLR
//! offset comes from VMCOREINFO.

use crate::arch::walk::Paging;
use crate::arch::{Arch, Registers};
use crate::dump::{read_virt, Dump, DumpMem};
use crate::kernel::kaslr::{Kaslr, LinkAlias};
use crate::kernel::layout::per_cpu_offset;
use crate::kernel::modules::{self, Module};
use crate::kernel::monitor::{self, KernelView};
use crate::kernel::panic::{self, CpuRole};
use crate::kernel::tasks::{self, Task, TaskLayout};
use crate::kernel::threads;
use crate::kernel::vmlinux::{check_identity, KernelIdentity, Vmlinux};
use crate::kernel::KernelInfo;
use crate::mem::{read_u32, MemError, ReadError, VirtAddr, VirtRead};
use crate::target::{Target, ThreadInfo, Tid};
use std::path::Path;
use std::sync::Arc;

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
    /// The panic line of the kernel's log, once looked for.
    panic_msg: Option<Option<String>>,
    /// Link-time ranges of the sections GDB leaves unrelocated, served from their slid bytes
    /// (kernel/kaslr.rs); empty without `-k`.
    alias: LinkAlias,
    /// The thread GDB reads memory for ([`Target::focus`]).
    focus: Option<Tid>,
    /// The file it was opened from: the whole kallsyms table is decoded from a second handle of
    /// it when first needed (`whole_kallsyms`). None for a dump given as bytes.
    path: Option<std::path::PathBuf>,
}

impl DumpTarget {
    pub fn open(path: &Path) -> Result<DumpTarget, String> {
        let name = path
            .to_str()
            .ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))?;
        let dump = Dump::open(name)?;
        let mut t = DumpTarget::new(dump).map_err(|e| format!("{}: {e}", path.display()))?;
        t.path = Some(path.to_path_buf());
        Ok(t)
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
            .map(|(i, cpu)| ThreadInfo {
                tid: i as Tid + 1,
                name: format!("CPU {i}"),
                // Until the task list says who ran there, only what the note holds, as
                // `--info` words it (Dump::info_text_with): pr_pid is not always a Linux pid.
                extra: match cpu.pid {
                    0 => format!("CPU {i} idle"),
                    p => format!("CPU {i} pr_pid {p}"),
                },
                core: Some(i as u32),
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
            panic_msg: None,
            alias: LinkAlias::default(),
            focus: None,
            path: None,
        })
    }

    /// Takes symbols and BTF from `vmlinux` first (`-k`), once it is known to be the dump's
    /// kernel's (build ID, else release: [`check_identity`]); `force` takes a mismatched one
    /// with a warning.
    pub fn use_vmlinux(&mut self, vmlinux: Option<&Path>, force: bool) -> Result<(), String> {
        if let Some(path) = vmlinux {
            let v = Vmlinux::load(path)?;
            let vmci = self.dump.vmcoreinfo();
            let kernel = KernelIdentity {
                what: "the dump",
                arch: self.arch,
                build_id: vmci.get("BUILD-ID"),
                release: vmci.osrelease(),
            };
            check_identity(&v, path, &kernel, force)?;
        }
        self.set_vmlinux(vmlinux);
        Ok(())
    }

    /// Takes symbols and BTF from `vmlinux` first, unchecked (tests; [`Self::use_vmlinux`]
    /// checks).
    pub fn set_vmlinux(&mut self, vmlinux: Option<&Path>) {
        // Absolute, so GDB finds it from any directory through qXfer:exec-file.
        self.vmlinux = vmlinux.map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
        self.alias = LinkAlias::default();
        // No KERNELOFFSET in VMCOREINFO: no KASLR (per-CPU reads are still served).
        if let (Some(path), slide) = (vmlinux, self.dump.kaslr_offset().unwrap_or(0)) {
            match Vmlinux::load(path) {
                Ok(v) => {
                    let mut mem = DumpMem {
                        dump: &self.dump,
                        paging: &self.paging,
                    };
                    self.alias = LinkAlias::plan(&v, slide, &mut mem);
                    for s in self.alias.text().lines().filter(|l| l.starts_with("  ")) {
                        log::debug!("KASLR link-time alias: {}", s.trim());
                    }
                }
                Err(e) => log::warn!("{e}"),
            }
        }
        self.kinfo = None;
        self.tasks = None;
        self.crashed = None;
        self.panic_msg = None;
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
        let panic = self.panic_message();
        self.dump
            .info_text_with(Some(&cpus), Some(&crashed), panic.as_deref())
    }

    /// The kernel's panic line from its log ([`panic::panic_message`]), read once; None when
    /// the log has none or cannot be read.
    pub fn panic_message(&mut self) -> Option<String> {
        if let Some(p) = &self.panic_msg {
            return p.clone();
        }
        self.kernel_info();
        let msg = self.kinfo.as_ref().and_then(|k| {
            if k.vmcoreinfo().is_empty() {
                return None;
            }
            let mut mem = DumpMem {
                dump: &self.dump,
                paging: &self.paging,
            };
            match crate::kernel::dmesg::dmesg(&mut mem, k.vmcoreinfo()) {
                Ok(log) => panic::panic_message(&log),
                Err(e) => {
                    log::debug!("no panic message: the kernel log cannot be read: {e}");
                    None
                }
            }
        });
        self.panic_msg = Some(msg.clone());
        msg
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
        let mut chains = Vec::new();
        for cpu in self.dump.cpus() {
            let Some(chain) = self.arch.call_chain(&mut mem, &cpu.regs, self.dump.vmcoreinfo()) else {
                log::debug!("no panic_cpu symbol (kallsyms without data symbols; -k VMLINUX gives it): the crashing CPU is not known");
                return None;
            };
            chains.push(chain);
        }
        // Every frame named at once: without a vmlinux, from a pass over the dump's kallsyms
        // rather than by loading its whole table for this (issue 16).
        let mut addrs: Vec<u64> = chains.iter().flatten().copied().collect();
        addrs.sort_unstable();
        addrs.dedup();
        let names = kinfo.names_at(&mut mem, &addrs);
        let symbolize = |a: u64| {
            let i = addrs.binary_search(&a).ok()?;
            names.get(i).cloned().flatten()
        };
        let roles: Vec<CpuRole> = chains.iter().map(|c| panic::classify(c, &symbolize)).collect();
        for (i, r) in roles.iter().enumerate() {
            log::debug!("CPU {i}: {r:?}");
        }
        let c = panic::panicking_cpu(&roles);
        match c {
            // Debug only: --info and the serve log already say which CPU and how it was found.
            Some(c) => log::debug!("CPU {c} panicked: its call chain runs through panic() (no panic_cpu symbol to read)"),
            None => log::debug!("no panic_cpu symbol, and no single CPU's call chain runs through panic(): the crashing CPU is not known (-k VMLINUX gives panic_cpu)"),
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
            let whole = self.path.clone().map(whole_kallsyms);
            let k = KernelInfo::from_dump(&mut mem, self.dump.vmcoreinfo(), self.vmlinux.as_deref(), whole);
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
                tasks::find_task_from_cpu(
                    &mut mem,
                    &layout,
                    arch.kernel_space_start(),
                    sp,
                    &all,
                    tasks::Want::Listed,
                )
            })
            .ok_or(
                "kallsyms in the dump has no init_task (a kernel without CONFIG_KALLSYMS_ALL) and no \
                 CPU's kernel stack led to a task, so the task list has no known start",
            )?,
    };
    let mut list = tasks::walk(&mut mem, &layout, start)?;
    let cpus: Vec<u32> = (0..dump.cpus().len() as u32).collect();
    let mut idle = tasks::idle_tasks(&mut mem, &layout, k, &cpus, &list);
    // Without the per-CPU symbols (arm64 kallsyms has no data symbols; -k vmlinux has them),
    // idle_tasks goes through the CPUs' run queues (types alone); failing that, an idle CPU's own
    // registers lead to its idle task.
    for (i, c) in dump.cpus().iter().enumerate() {
        let known = |t: &Task| t.pid == 0 && t.cpu == Some(i as u32);
        if i == 0 || list.iter().chain(idle.iter()).any(known) {
            continue;
        }
        let Some((sp, all)) = c.gdb_registers(arch).ok().and_then(|r| {
            let sp = r.0.get(sp_index?).copied().flatten()?;
            Some((sp, r.0.into_iter().flatten().collect::<Vec<u64>>()))
        }) else {
            continue;
        };
        if let Some(t) = tasks::find_task_from_cpu(
            &mut mem,
            &layout,
            arch.kernel_space_start(),
            sp,
            &all,
            tasks::Want::Idle,
        )
        .and_then(|a| tasks::read_task(&mut mem, &layout, a).ok())
        .filter(|t| t.pid == 0 && !list.iter().any(|k| k.addr == t.addr))
        {
            idle.push(t);
        }
    }
    tasks::insert_idle(&mut list, idle);
    Ok((layout, list))
}

impl DumpTarget {
    /// A task's registers: the CPU's saved registers while it ran on one, else those its last
    /// context switch saved.
    fn task_registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        let arch = self.arch;
        let (layout, list) = self.tasks()?;
        let task = threads::find_task(list, tid)
            .cloned()
            .ok_or_else(|| format!("no task with thread id {tid} in the dump"))?;
        let layout = layout.clone();
        // A task running on a CPU: that CPU's saved registers (the task list, not NT_PRSTATUS
        // pr_pid, says who ran there; QEMU writes the CPU index + 1 as pr_pid). Each idle task
        // names its own CPU.
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

impl DumpTarget {
    /// The task CPU `cpu` was running: its runqueue's `curr` when the symbols give it, else the
    /// task the task list has on that CPU (swapper/0 for an idle CPU 0; other CPUs' idle tasks
    /// are not on the list).
    fn cpu_current_task(&mut self, cpu: usize) -> Option<u64> {
        self.kernel_info();
        if let Some(k) = &self.kinfo {
            let mut mem = DumpMem {
                dump: &self.dump,
                paging: &self.paging,
            };
            if let Some(t) = tasks::current_on_cpu(&mut mem, k, u32::try_from(cpu).ok()?) {
                return Some(t);
            }
        }
        let (_, list) = self.tasks().ok()?;
        list.iter()
            .find(|t| t.on_cpu && t.cpu == u32::try_from(cpu).ok())
            .map(|t| t.addr)
    }
}

impl DumpTarget {
    /// Without `-k`: the KASLR link-time alias from the image bounds the dump's kallsyms gives
    /// (`_text`, `_end`; x86_64 only, see `LinkAlias::plan_image`).
    fn plan_image_alias(&mut self) {
        if self.vmlinux.is_some() || self.alias.is_active() {
            return;
        }
        let slide = self.dump.kaslr_offset().unwrap_or(0);
        let arch = self.arch;
        let k = self.kernel_info();
        let (text, end, percpu_end) = (k.symbol("_text"), k.symbol("_end"), k.symbol("__per_cpu_end"));
        let mut mem = DumpMem {
            dump: &self.dump,
            paging: &self.paging,
        };
        if let (Some(text), Some(end)) = (text, end) {
            self.alias = LinkAlias::plan_image(
                arch,
                text.wrapping_sub(slide),
                end.wrapping_sub(slide),
                slide,
                &mut mem,
            );
        }
        if let Some(end) = percpu_end {
            self.alias.serve_percpu(arch, end);
        }
    }

    /// The `__per_cpu_offset` of the CPU of the thread GDB reads for: a CPU thread's own, a
    /// task's CPU (the one it runs or last ran on).
    fn focus_percpu_base(&mut self) -> Option<u64> {
        let tid = self.focus?;
        let cpu = if threads::is_task_tid(tid) {
            let (_, list) = self.tasks().ok()?;
            threads::find_task(list, tid)?.cpu?
        } else {
            u32::try_from(tid.checked_sub(1)?)
                .ok()
                .filter(|&c| (c as usize) < self.dump.cpus().len())?
        };
        self.kernel_info();
        let k = self.kinfo.as_ref()?;
        let mut mem = DumpMem {
            dump: &self.dump,
            paging: &self.paging,
        };
        per_cpu_offset(&mut mem, k, cpu)
    }
}

impl DumpTarget {
    /// A thread's registers as the dump or the task's saved frame give them, with SP_EL0.
    fn thread_registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        if threads::is_task_tid(tid) {
            let mut regs = self.task_registers(tid)?;
            if let Some(i) = self.arch.current_task_index() {
                let task = self
                    .tasks()
                    .ok()
                    .and_then(|(_, l)| threads::find_task(l, tid).map(|t| t.addr));
                regs.set(i, task);
            }
            return Ok(regs);
        }
        let index = tid
            .checked_sub(1)
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < self.dump.cpus().len())
            .ok_or_else(|| format!("no thread {tid}: threads are CPUs 1 to {}", self.threads.len()))?;
        let mut regs = self
            .dump
            .cpus()
            .get(index)
            .ok_or("no such CPU")?
            .gdb_registers(self.arch)?;
        if let Some(i) = self.arch.current_task_index() {
            let task = self.cpu_current_task(index);
            regs.set(i, task);
        }
        Ok(regs)
    }
}

impl VirtRead for DumpTarget {
    /// GDB's reads: through the KASLR link-time alias where it applies. kmemd's own reads of
    /// kernel data go through [`DumpMem`] and never see it.
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        let percpu_base = if self.alias.is_percpu(addr) {
            self.focus_percpu_base()
        } else {
            None
        };
        let mut mem = DumpMem {
            dump: &self.dump,
            paging: &self.paging,
        };
        match self.alias.read(&mut mem, addr, buf, percpu_base) {
            Some(r) => r,
            None => read_virt(&self.dump, &self.paging, addr, buf),
        }
    }
}

impl Target for DumpTarget {
    fn prepare(&mut self) {
        if let Err(e) = self.tasks() {
            log::warn!("tasks are not available as threads: {e}");
        }
        // The first thing to know of a crash, said before GDB stops on the crashing CPU.
        match (self.crashing_cpu(), self.panic_message()) {
            (Some(c), Some(m)) => log::info!("CPU {c} panicked: {m}"),
            (None, Some(m)) => log::info!("the kernel's log says: {m}"),
            _ => {}
        }
        self.plan_image_alias();
    }

    fn arch(&self) -> Arch {
        self.arch
    }

    fn threads(&mut self) -> Vec<ThreadInfo> {
        let mut all = self.threads.clone();
        for (t, label) in all.iter_mut().zip(self.cpu_labels()) {
            t.extra = label;
        }
        if let Some(c) = self.crashing_cpu() {
            let msg = self.panic_message();
            if let Some(t) = all.get_mut(c) {
                match msg {
                    Some(m) => t.extra.push_str(&format!(" (panic: {m})")),
                    None => t.extra.push_str(" (panic)"),
                }
            }
        }
        if let Ok((_, tasks)) = self.tasks() {
            all.extend(threads::task_threads(tasks));
        }
        all
    }

    fn stop_thread(&mut self) -> Tid {
        self.crashing_cpu().map_or(1, |c| c as Tid + 1)
    }

    fn focus(&mut self, tid: Tid) {
        self.focus = Some(tid);
    }

    fn registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        let mut regs = self.thread_registers(tid)?;
        let pac = self.dump.vmcoreinfo().number_u64("KERNELPACMASK").unwrap_or(0);
        self.arch.set_pac_mask(&mut regs, pac);
        Ok(regs)
    }

    fn kaslr_offset(&self) -> Option<u64> {
        self.dump.kaslr_offset()
    }

    fn exec_file(&self) -> Option<&Path> {
        self.vmlinux.as_deref()
    }

    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        let mut words = cmd.split_whitespace();
        match words.next()? {
            "vtop" => Some(match words.next().map(crate::mem::parse_addr) {
                Some(Ok(va)) => Ok(format!("{}\n", self.paging.walk(&self.dump, VirtAddr(va)))),
                Some(Err(e)) => Err(e),
                None => Err("usage: monitor vtop ADDR".into()),
            }),
            // `info` alone: `info version` is the server's, anything else is not a command.
            "info" if words.next().is_none() => Some(Ok(self.info_text())),
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

    fn kernel_view(&mut self) -> Option<&mut dyn KernelView> {
        Some(self)
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
            vmlinux: self.vmlinux.clone(),
        }
    }

    fn link_alias(&self) -> Option<&LinkAlias> {
        Some(&self.alias)
    }
}

/// Opens a dump as a GDB target (`-c FILE`, `-k VMLINUX`, `--pid PID`).
/// Decodes the whole kallsyms table of the dump at `path` when a session that kept only kmemd's
/// own names first needs the rest (an address to name, `monitor sym` of another name). The file
/// is opened again rather than shared: `Symbols` answers through `&self` from any thread, and a
/// dump's page caches are not shared between threads. A dump that no longer opens gives an empty
/// table, and the lookups that needed it find nothing.
fn whole_kallsyms(path: std::path::PathBuf) -> crate::kernel::symbols::TableLoader {
    Box::new(move || {
        let decoded = DumpTarget::open(&path).and_then(|t| {
            let mut mem = DumpMem {
                dump: &t.dump,
                paging: &t.paging,
            };
            crate::kernel::kallsyms::decode_table(&mut mem, t.dump.vmcoreinfo()).map_err(|e| e.to_string())
        });
        match decoded {
            Ok(table) => {
                log::debug!(
                    "kallsyms: {} symbols decoded from {}",
                    table.len(),
                    path.display()
                );
                Arc::new(table)
            }
            Err(e) => {
                log::warn!(
                    "{}: cannot decode the whole kallsyms table again: {e}",
                    path.display()
                );
                Arc::new(Default::default())
            }
        }
    })
}

pub fn open_target(
    path: &Path,
    vmlinux: Option<&Path>,
    force_vmlinux: bool,
    pid: Option<u32>,
) -> Result<Box<dyn Target>, String> {
    let mut t = DumpTarget::open(path)?;
    t.use_vmlinux(vmlinux, force_vmlinux)?;
    if let Some(pid) = pid {
        return Ok(Box::new(super::process::ProcessTarget::new(t, pid)?));
    }
    Ok(Box::new(t))
}

/// The KASLR hint for a GDB session on a dump (`-s`), not for `--read` or `--info`, where no
/// GDB applies offsets.
pub fn log_kaslr_hint(target: &dyn Target) {
    if let Some(off) = target.kaslr_offset() {
        log::info!(
            "KASLR offset {off:#x}: GDB applies it to .text/.data/.bss by itself; `monitor kaslr` prints \
             the lines for every section (or load symbols with `file vmlinux -o {off:#x}` if you do not \
             need per-CPU variables)"
        );
    }
}

/// The `--info` description of a dump.
pub fn info_text(path: &Path, vmlinux: Option<&Path>, force_vmlinux: bool) -> Result<String, String> {
    let name = path
        .to_str()
        .ok_or_else(|| format!("{}: the path is not UTF-8", path.display()))?;
    let dump = Dump::open(name)?;
    // Without VMCOREINFO, or page tables kmemd can set up, the kernel's data cannot be read: the
    // file's own description is all there is.
    let file_only = dump.info_text();
    match DumpTarget::new(dump) {
        Ok(mut t) => {
            t.use_vmlinux(vmlinux, force_vmlinux)?;
            Ok(t.info_text())
        }
        Err(e) => {
            log::warn!("{}: {e}; describing the file alone", path.display());
            Ok(file_only)
        }
    }
}
