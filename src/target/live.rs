//! The running kernel as a target: memory through BPF, symbols from kallsyms, KASLR from both.
//! live/ supplies the memory, the CPUs and where the kernel's knowledge of itself comes from;
//! kernel/ makes sense of it; this file puts the two together.

use crate::arch::{Arch, Registers};
use crate::kernel::btf::Btf;
/// Where the link-time `_text` came from (kernel/kaslr.rs).
pub use crate::kernel::kaslr::LinkText;
use crate::kernel::kaslr::{runtime_text, Kaslr, LinkAlias};
use crate::kernel::layout::BtfLayout;
use crate::kernel::modules::{self, Module};
use crate::kernel::monitor::{self, KernelView};
use crate::kernel::proc_kallsyms::Kallsyms;
use crate::kernel::symbols;
use crate::kernel::tasks::{self, Task, TaskLayout};
use crate::kernel::threads;
use crate::kernel::vmlinux::{check_identity, KernelIdentity, Vmlinux};
use crate::kernel::{BtfSource, KernelInfo};
use crate::live::bpf::KernelReader;
use crate::live::{self, vmcoreinfo};
use crate::mem::{MemError, ReadError, VirtAddr, VirtRead};
use crate::target::{Target, ThreadInfo, Tid};
use std::path::Path;

/// The running kernel, read through BPF. Its CPUs are GDB's threads; their registers are
/// unavailable because the kernel keeps running.
#[derive(Debug)]
pub struct LiveTarget {
    reader: KernelReader,
    /// The [`symbols::KNOWN`] names of /proc/kallsyms, read on first use (symbols, layouts), or
    /// by a thread a session starts ([`Target::prepare`]) while GDB connects: `--read` and a
    /// session's first replies need only `_text`, from the file's first lines; the resolver reads
    /// the whole file when it needs more (`monitor sym`). A reader waits for that thread.
    kallsyms: std::sync::Arc<std::sync::OnceLock<Kallsyms>>,
    /// All of /proc/kallsyms, read when first needed ([`LiveTarget::kallsyms`], or the resolver
    /// for an address or a name outside [`symbols::KNOWN`]) and shared with the resolver.
    whole: std::sync::Arc<std::sync::OnceLock<Kallsyms>>,
    arch: Arch,
    runtime_text: u64,
    link_text: u64,
    link_source: LinkText,
    /// Link-time ranges GDB reads unrelocated, served from their slid bytes (kernel/kaslr.rs).
    alias: LinkAlias,
    /// Whether `alias` is planned. Without a vmlinux the plan needs the image's end from
    /// kallsyms, so it waits for the first read that could fall in it ([`LinkAlias::may_serve`]).
    alias_planned: bool,
    /// The types kmemd needs from /sys/kernel/btf/vmlinux, read once (kernel/btf_extract.rs):
    /// the task layout of a session's first walk comes from it before [`KernelInfo`] exists,
    /// which then takes the bytes instead of reading the file again.
    sys_btf: Option<Result<Vec<u8>, String>>,
    /// The thread GDB reads memory for ([`Target::focus`]).
    focus: Option<Tid>,
    cpus: Vec<u32>,
    release: String,
    /// The live VMCOREINFO, read on first use (`monitor vmcoreinfo`, symbols, dmesg).
    vmcoreinfo: Option<Result<vmcoreinfo::LiveVmcoreinfo, String>>,
    /// Kernel symbols and layouts (kallsyms, BTF, live VMCOREINFO), built on first use.
    kinfo: Option<KernelInfo>,
    /// The task_struct layout from `kinfo`, built once: GDB asks for registers and liveness per
    /// thread, and rebuilding it per packet was most of the cost of `info threads` (issue 16).
    layout: Option<Result<TaskLayout, String>>,
    /// Where the task walk starts: this process's own task from BPF (no symbol needed), else
    /// init_task. The walk lists the same tasks from either, starting at init_task.
    task_start: Option<Result<u64, String>>,
    /// The tasks as of the last walk: live, they change under us.
    tasks: Vec<Task>,
    /// When that walk was made. The server asks for the thread list for every `Hg`/`T` packet
    /// too; a walk younger than [`TASKS_FRESH`] answers those without reading every task again.
    tasks_at: Option<std::time::Instant>,
}

/// How long one task walk answers `threads()`.
const TASKS_FRESH: std::time::Duration = std::time::Duration::from_millis(500);

impl LiveTarget {
    /// Loads the BPF reader and kallsyms and works out the KASLR slide (from `vmlinux` when given).
    pub fn open(vmlinux: Option<&Path>) -> Result<LiveTarget, String> {
        Self::open_with(vmlinux, false)
    }

    /// [`Self::open`], with `force` taking a vmlinux whose build ID or release is not the
    /// running kernel's (`--force-vmlinux`) with a warning instead of an error.
    pub fn open_with(vmlinux: Option<&Path>, force: bool) -> Result<LiveTarget, String> {
        let arch = Arch::host();
        // BPF first: without privileges its error ("run as root ...") is the one that helps.
        let mut reader = KernelReader::open_with_chunk(crate::live::bpf::SESSION_CHUNK)?;
        let (head, any_address) = Kallsyms::read_head(live::kallsyms::open()?, &["_text", "_stext"])
            .map_err(|e| live::kallsyms::read_error(&e))?;
        if !any_address {
            return Err(live::kallsyms::hidden());
        }
        let mut loaded = None;
        let (link_text, link_source, link_head) = match vmlinux {
            Some(path) => {
                let v = Vmlinux::load(path)?;
                check_running_vmlinux(&v, path, force)?;
                let text = v.symbol("_text").ok_or_else(|| {
                    format!(
                        "{} has no _text symbol (stripped?): give -k the vmlinux with its symbol table",
                        path.display()
                    )
                })?;
                let percpu_at_zero = v.section(".data..percpu").is_some_and(|s| s.addr == 0);
                let head = v.symbol("_stext").map(|st| st.wrapping_sub(text));
                loaded = Some(v);
                (
                    text,
                    LinkText::Vmlinux {
                        // Absolute: GDB opens it from its own directory (qXfer:exec-file).
                        path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
                        percpu_at_zero,
                    },
                    head,
                )
            }
            None => (arch.default_text_link_addr(), LinkText::Default, None),
        };
        let runtime_text = runtime_text(&head, arch, link_head)
            .ok_or("/proc/kallsyms has neither _text nor _stext: is /proc the host's procfs?")?;
        let slide = runtime_text.wrapping_sub(link_text);
        // x86_64 slides in CONFIG_PHYSICAL_ALIGN steps (2 MiB by default), arm64 in at least
        // 64 KiB (arch/arm64/kernel/kaslr.c); anything else means the wrong vmlinux.
        if slide % 0x1_0000 != 0 {
            log::warn!(
                "KASLR offset {slide:#x} is not a multiple of 64 KiB: the vmlinux probably does not match \
                 the running kernel (runtime _text {runtime_text:#x}, link-time {link_text:#x})"
            );
        }
        // Without a vmlinux the alias needs the image's end from the whole of kallsyms, which
        // only a GDB session reads: [`Target::prepare`] plans it then, so `--read` stays small.
        let alias = match &loaded {
            Some(v) => LinkAlias::plan(v, slide, &mut reader),
            None => LinkAlias::default(),
        };
        let alias_planned = loaded.is_some();
        let cpus = live::online_cpus().unwrap_or_else(|e| {
            log::warn!("{e}; showing one thread for CPU 0");
            vec![0]
        });
        let release = live::osrelease().unwrap_or_else(|| "(unknown release)".into());
        Ok(LiveTarget {
            reader,
            kallsyms: std::sync::Arc::default(),
            whole: std::sync::Arc::default(),
            arch,
            runtime_text,
            link_text,
            link_source,
            alias,
            alias_planned,
            sys_btf: None,
            focus: None,
            cpus,
            release,
            vmcoreinfo: None,
            kinfo: None,
            layout: None,
            task_start: None,
            tasks: Vec::new(),
            tasks_at: None,
        })
    }

    /// Symbols and layouts of the running kernel, built on first use: kallsyms, BTF (`-k
    /// vmlinux` first, else /sys/kernel/btf/vmlinux), the live VMCOREINFO read through the
    /// direct map, then [`KernelInfo::find_image_symbols`] through the BPF reader. Failures are
    /// listed by [`KernelInfo::missing`]. This is the one live assembly: `kmemd -s`, `--check`
    /// and the tests all get it here.
    pub fn kernel_info(&mut self) -> &KernelInfo {
        if self.kinfo.is_none() {
            let (vmci, problem) = match self.live_vmcoreinfo().map(|v| v.text.clone()) {
                Ok(t) => (Some(t), None),
                Err(e) => {
                    log::warn!("no live VMCOREINFO ({e}): monitor dmesg needs it");
                    (None, Some(format!("no live VMCOREINFO: {e}")))
                }
            };
            let vmlinux = match &self.link_source {
                LinkText::Vmlinux { path, .. } => Some(path.clone()),
                LinkText::Default => None,
            };
            let whole = std::sync::Arc::clone(&self.whole);
            // The bytes the first walk's layout came from, if it read them (taken, not copied).
            let read_early = std::cell::RefCell::new(self.sys_btf.take());
            let read = move || read_early.borrow_mut().take().unwrap_or_else(read_wanted_sys_btf);
            let mut k = KernelInfo::live(
                self.known_names(),
                Some(Box::new(move || {
                    std::sync::Arc::clone(whole.get_or_init(full_kallsyms).table())
                })),
                vmci.as_deref(),
                vmlinux.as_deref(),
                &BtfSource {
                    name: live::SYS_BTF,
                    read: &read,
                },
            );
            if let Some(p) = problem {
                k.note_problem(p);
            }
            if !live::has_modules() {
                k.without_modules("no /proc/modules: the kernel is built without module support");
            }
            k.find_image_symbols(&mut self.reader);
            for m in k.missing() {
                log::debug!("{m}");
            }
            self.kinfo = Some(k);
            self.plan_alias();
        }
        self.kinfo.get_or_insert_with(KernelInfo::default)
    }

    /// The [`symbols::KNOWN`] names of /proc/kallsyms: read now, or waited for when a session's
    /// thread is reading them ([`Target::prepare`]).
    fn known_names(&self) -> &Kallsyms {
        self.kallsyms.get_or_init(known_kallsyms)
    }

    /// Starts reading the known names of /proc/kallsyms on a thread of its own: one pass over
    /// the file takes tens of milliseconds (the kernel formats every line), and a session's
    /// first replies (the thread list, registers, memory) need none of it.
    fn read_kallsyms_meanwhile(&self) {
        let cell = std::sync::Arc::clone(&self.kallsyms);
        let spawned = std::thread::Builder::new()
            .name("kallsyms".into())
            .stack_size(256 * 1024)
            .spawn(move || {
                cell.get_or_init(known_kallsyms);
            });
        if let Err(e) = spawned {
            log::debug!("no thread to read /proc/kallsyms meanwhile ({e}): read when needed");
        }
    }

    /// Largest read one BPF run does (the bench's ceiling probe reads at the same size).
    pub fn chunk_size(&self) -> usize {
        self.reader.chunk_size()
    }

    /// The task layout of this kernel (built on first use, then kept with its error). Without
    /// a vmlinux it comes from the kernel's own BTF alone, so a session's first walk does not
    /// wait for kallsyms; with one, from [`Self::kernel_info`] (the vmlinux's BTF first).
    fn task_layout(&mut self) -> Result<TaskLayout, String> {
        if self.layout.is_none() {
            let arch = self.arch;
            let early = match (&self.kinfo, &self.link_source) {
                // A layout BTF alone cannot give is asked of KernelInfo (VMCOREINFO too).
                (None, LinkText::Default) => self.layout_from_sys_btf().filter(|l| l.is_ok()),
                _ => None,
            };
            self.layout = Some(match early {
                Some(l) => l,
                None => {
                    self.kernel_info();
                    match self.kinfo.as_ref() {
                        Some(k) => TaskLayout::new(k, arch),
                        None => Err("no kernel information".into()),
                    }
                }
            });
        }
        self.layout
            .clone()
            .unwrap_or_else(|| Err("no task layout".into()))
    }

    /// [`TaskLayout`] from /sys/kernel/btf/vmlinux's types, keeping the bytes for
    /// [`Self::kernel_info`]. None when the kernel has no BTF there: [`KernelInfo`] then says
    /// what is missing.
    fn layout_from_sys_btf(&mut self) -> Option<Result<TaskLayout, String>> {
        let btf = self.sys_btf_types()?;
        Some(TaskLayout::new(&BtfLayout(&btf), self.arch))
    }

    /// The kernel's own BTF types (/sys/kernel/btf/vmlinux), kept as bytes for
    /// [`Self::kernel_info`]. None when the kernel has no BTF there.
    fn sys_btf_types(&mut self) -> Option<Btf> {
        let bytes = self
            .sys_btf
            .get_or_insert_with(read_wanted_sys_btf)
            .as_ref()
            .ok()?;
        Btf::parse(bytes.clone()).ok()
    }

    /// Walks the task list now, with [`KernelInfo`] built first.
    pub fn tasks(&mut self) -> Result<(TaskLayout, Vec<Task>), String> {
        self.walk_tasks(true)
    }

    /// Walks the task list, with every CPU's idle task: through the per-CPU symbols once
    /// [`KernelInfo`] is built (`wait_for_symbols` builds it first), else through the CPUs' run
    /// queues with the kernel's BTF types alone.
    fn walk_tasks(&mut self, wait_for_symbols: bool) -> Result<(TaskLayout, Vec<Task>), String> {
        let layout = self.task_layout()?;
        let start = self.task_start()?;
        let mut list = tasks::walk(&mut self.reader, &layout, start)?;
        if wait_for_symbols {
            self.kernel_info();
        }
        let idle = if let Some(k) = &self.kinfo {
            tasks::idle_tasks(&mut self.reader, &layout, k, &self.cpus, &list)
        } else if let Some(btf) = self.sys_btf_types() {
            let k = BtfLayout(&btf);
            tasks::idle_tasks(&mut self.reader, &layout, &k, &self.cpus, &list)
        } else {
            Vec::new()
        };
        tasks::insert_idle(&mut list, idle);
        self.tasks = list.clone();
        self.tasks_at = Some(std::time::Instant::now());
        Ok((layout, list))
    }

    /// Where the walk starts (kept): this process's task from BPF, else init_task.
    fn task_start(&mut self) -> Result<u64, String> {
        if self.task_start.is_none() {
            let start = match live::task::current_task() {
                Ok(a) => Ok(a),
                Err(e) => {
                    log::debug!("BPF cannot report the current task ({e}): starting at init_task");
                    self.kernel_info().symbol("init_task").ok_or_else(|| {
                        format!("no init_task in /proc/kallsyms and BPF cannot report the current task: {e}")
                    })
                }
            };
            self.task_start = Some(start);
        }
        match &self.task_start {
            Some(r) => r.clone(),
            None => Err("no task to start from".into()),
        }
    }

    /// Whether the task GDB listed as thread `tid` is still that task.
    fn task_alive(&mut self, tid: Tid) -> bool {
        let Some(old) = threads::find_task(&self.tasks, tid).cloned() else {
            return false;
        };
        let Ok(layout) = self.task_layout() else {
            return false;
        };
        let mem = &mut self.reader;
        match tasks::read_task(mem, &layout, old.addr) {
            Ok(now) => still_running_as(&old, &now),
            Err(_) => false,
        }
    }

    /// A task's registers: those saved at its last switch; a task running right now has none
    /// (PC 0, like the CPUs), and neither has one that exited since `threads()`.
    fn task_registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        let old = threads::find_task(&self.tasks, tid)
            .cloned()
            .ok_or_else(|| format!("no task with thread id {tid} (ask for the thread list again)"))?;
        let pid = old.pid;
        let layout = self.task_layout()?;
        let mem = &mut self.reader;
        let now = tasks::read_task(mem, &layout, old.addr)
            .map_err(|e| ReadError::mem(format!("task {pid} is gone"), e))?;
        let exited = !still_running_as(&old, &now);
        if exited {
            // GDB's `info threads` gives up at the first thread whose registers fail, and on a
            // busy system some task of the listing has always exited by the time GDB asks. So
            // the registers read as for a running task; `T` (thread alive) says it is gone.
            log::debug!("task {pid} ({}) exited since GDB listed the threads", old.comm);
        }
        if exited || now.on_cpu {
            let mut regs = vec![None; self.arch.registers().len()];
            regs[self.arch.pc_index()] = Some(0);
            return Ok(Registers(regs));
        }
        tasks::saved_registers(mem, &layout, self.arch, old.addr)
    }

    /// The pointer authentication masks: the live VMCOREINFO's KERNELPACMASK (0 without one).
    fn set_pac_mask(&mut self, regs: &mut Registers) {
        if self.arch.reg_index("pauth_cmask").is_none() {
            return;
        }
        let mask = self
            .live_vmcoreinfo()
            .ok()
            .and_then(|v| v.info.number_u64("KERNELPACMASK"))
            .unwrap_or(0);
        self.arch.set_pac_mask(regs, mask);
    }

    /// The kernel's own VMCOREINFO, read through the direct map once and kept (also its error).
    pub fn live_vmcoreinfo(&mut self) -> Result<&vmcoreinfo::LiveVmcoreinfo, String> {
        if self.vmcoreinfo.is_none() {
            let kallsyms = self.kallsyms.get_or_init(known_kallsyms);
            self.vmcoreinfo = Some(vmcoreinfo::load(&mut self.reader, self.arch, &|name| {
                kallsyms.lookup(name)
            }));
        }
        match &self.vmcoreinfo {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(e.clone()),
            None => Err("internal: VMCOREINFO not loaded".into()),
        }
    }

    /// A kernel symbol's address and the source that gave it (`kallsyms`, `VMCOREINFO`, ...),
    /// from the one resolver (kernel/symbols.rs): -k vmlinux, kallsyms, then the live
    /// VMCOREINFO's `SYMBOL(name)` lines, which name data symbols (init_uts_ns, swapper_pg_dir,
    /// prb, ...) that kallsyms lacks without CONFIG_KALLSYMS_ALL (Debian's arm64 kernels).
    pub fn lookup_symbol(&mut self, name: &str) -> Option<(u64, &'static str)> {
        self.kernel_info()
            .resolver()
            .lookup(name)
            .map(|(a, from)| (a, from.name()))
    }

    /// All of /proc/kallsyms (read now if not yet: a session does without it).
    pub fn kallsyms(&self) -> &Kallsyms {
        self.whole.get_or_init(full_kallsyms)
    }

    pub fn reader(&mut self) -> &mut KernelReader {
        &mut self.reader
    }

    /// `monitor info`: the running kernel, in the words of a dump's `--info`.
    pub fn info_text(&self) -> String {
        let cpus: Vec<String> = self.cpus.iter().map(|c| c.to_string()).collect();
        let vmlinux = match &self.link_source {
            LinkText::Vmlinux { path, .. } => path.display().to_string(),
            LinkText::Default => "none (link-time _text assumed at the architecture's default)".into(),
        };
        format!(
            "source:        live kernel (BPF reads)\n\
             arch:          {}\n\
             kernel:        {}\n\
             build ID:      {}\n\
             CPUs:          {} online ({})\n\
             KASLR offset:  {:#x}\n\
             vmlinux:       {vmlinux}\n",
            self.arch,
            self.release,
            live::kernel_build_id().unwrap_or_else(|| "unknown (no /sys/kernel/notes)".into()),
            self.cpus.len(),
            cpus.join(", "),
            self.runtime_text.wrapping_sub(self.link_text),
        )
    }

    /// Online CPU numbers, ascending.
    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }

    /// Plans the KASLR alias without a vmlinux, once: the image bounds kallsyms gives (x86_64
    /// only; see [`LinkAlias::plan_image`]).
    fn plan_alias(&mut self) {
        if self.alias_planned {
            return;
        }
        self.alias_planned = true;
        let (end, percpu_end) = {
            let k = self.known_names();
            (k.lookup("_end"), k.lookup("__per_cpu_end"))
        };
        let slide = self.runtime_text.wrapping_sub(self.link_text);
        if let Some(end) = end {
            self.alias = LinkAlias::plan_image(
                self.arch,
                self.link_text,
                end.wrapping_sub(slide),
                slide,
                &mut self.reader,
            );
        }
        if let Some(end) = percpu_end {
            self.alias.serve_percpu(self.arch, end);
        }
    }

    /// The `__per_cpu_offset` of the CPU of the thread GDB reads for: a CPU thread's own, a
    /// task's CPU as of the last task walk (the one it runs or last ran on).
    fn focus_percpu_base(&mut self) -> Option<u64> {
        let tid = self.focus?;
        let cpu = if threads::is_task_tid(tid) {
            threads::find_task(&self.tasks, tid)?.cpu?
        } else {
            u32::try_from(tid.checked_sub(1)?)
                .ok()
                .filter(|c| self.cpus.contains(c))?
        };
        self.kernel_info();
        let k = self.kinfo.as_ref()?;
        crate::kernel::layout::per_cpu_offset(&mut self.reader, k, cpu)
    }

    pub fn link_source(&self) -> &LinkText {
        &self.link_source
    }
}

impl VirtRead for LiveTarget {
    /// GDB's reads, through the KASLR link-time alias where it applies; kmemd's own reads of
    /// kernel data use the reader directly.
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        if !self.alias_planned {
            let slide = self.runtime_text.wrapping_sub(self.link_text);
            if LinkAlias::may_serve(self.arch, self.link_text, slide, addr) {
                self.plan_alias();
            }
        }
        let percpu_base = if self.alias.is_percpu(addr) {
            self.focus_percpu_base()
        } else {
            None
        };
        match self.alias.read(&mut self.reader, addr, buf, percpu_base) {
            Some(r) => r,
            None => self.reader.read_virt(addr, buf),
        }
    }
}

impl Target for LiveTarget {
    fn focus(&mut self, tid: Tid) {
        self.focus = Some(tid);
    }

    /// The first walk, before GDB waits on it (the task GDB first stops on comes from it),
    /// while a thread reads kallsyms for what comes later. That walk needs no symbols: it finds
    /// the idle tasks of CPUs other than 0 through their run queues.
    fn prepare(&mut self) {
        self.read_kallsyms_meanwhile();
        if let Err(e) = self.walk_tasks(false) {
            log::warn!("no task threads: {e}");
        }
    }

    fn arch(&self) -> Arch {
        self.arch
    }

    fn threads(&mut self) -> Vec<ThreadInfo> {
        let mut all: Vec<ThreadInfo> = self
            .cpus
            .iter()
            .map(|&cpu| ThreadInfo {
                tid: cpu as Tid + 1,
                name: format!("CPU {cpu}"),
                extra: format!("CPU {cpu} (running: no registers)"),
                core: Some(cpu),
            })
            .collect();
        if self.tasks_at.is_some_and(|t| t.elapsed() < TASKS_FRESH) {
            all.extend(threads::task_threads(&self.tasks));
            return all;
        }
        match self.tasks() {
            Ok((_, list)) => all.extend(threads::task_threads(&list)),
            Err(e) => log::warn!("no task threads: {e}"),
        }
        all
    }

    fn registers(&mut self, tid: Tid) -> Result<Registers, ReadError> {
        if threads::is_task_tid(tid) {
            let mut regs = self.task_registers(tid)?;
            if let Some(i) = self.arch.current_task_index() {
                let task = threads::find_task(&self.tasks, tid).map(|t| t.addr);
                regs.set(i, task);
            }
            self.set_pac_mask(&mut regs);
            return Ok(regs);
        }
        let known = tid
            .checked_sub(1)
            .and_then(|c| u32::try_from(c).ok())
            .is_some_and(|c| self.cpus.contains(&c));
        if !known {
            return Err(format!(
                "no thread {tid}: threads are the online CPUs, 1 to {}",
                self.cpus.len()
            )
            .into());
        }
        // The kernel keeps running, so no CPU has registers to show. GDB refuses every memory
        // read while the PC is unavailable ("Cannot access memory" without asking the stub), so
        // the PC reads as 0: an address no kernel code runs at, shown as `0x0 in ?? ()`.
        let mut regs = vec![None; self.arch.registers().len()];
        regs[self.arch.pc_index()] = Some(0);
        let mut regs = Registers(regs);
        if let (Some(i), Some(cpu)) = (self.arch.current_task_index(), tid.checked_sub(1)) {
            self.kernel_info();
            let task = match (&self.kinfo, u32::try_from(cpu)) {
                (Some(k), Ok(cpu)) => tasks::current_on_cpu(&mut self.reader, k, cpu),
                _ => None,
            };
            regs.set(i, task);
        }
        self.set_pac_mask(&mut regs);
        Ok(regs)
    }

    fn task_stack_offset(&mut self) -> Option<u64> {
        self.task_layout().ok()?.stack_offset()
    }

    fn complete_hit_registers(&mut self, regs: &mut Registers) {
        self.set_pac_mask(regs);
    }

    fn hit_thread(&mut self, cpu: u32, pid: u32) -> Tid {
        // Idle tasks (pid 0, swapper/N) are not on the task list: their CPU's thread stands
        // for them, as `info threads` lists it.
        match i32::try_from(pid) {
            Ok(p) if p > 0 => threads::task_tid(p),
            _ => Tid::from(cpu) + 1,
        }
    }

    fn thread_alive(&mut self, tid: Tid) -> bool {
        if threads::is_task_tid(tid) {
            self.task_alive(tid)
        } else {
            true
        }
    }

    /// A task that is not running, so GDB's first stop shows real registers (those of its last
    /// context switch) instead of a CPU's `0x0 in ?? ()`: the first such task with a pid (init,
    /// usually). Without a task list, CPU 0.
    /// The last walk's list serves (prepare() makes the first): GDB waits two seconds for the
    /// `?` reply, too little for a walk on a loaded machine.
    fn stop_thread(&mut self) -> Tid {
        if self.tasks_at.is_none() {
            if let Err(e) = self.tasks() {
                log::debug!("no task to stop on: {e}");
            }
        }
        self.tasks.iter().find(|t| t.pid > 0 && !t.on_cpu).map_or_else(
            || self.cpus.first().map_or(1, |&c| c as Tid + 1),
            threads::thread_tid,
        )
    }

    fn kaslr_offset(&self) -> Option<u64> {
        Some(self.runtime_text.wrapping_sub(self.link_text))
    }

    /// The kernel's commands, and `info` as a dump has it (what is served). `vtop` is a dump's
    /// only: a live kernel is read through BPF, not through its page tables.
    fn exec_file(&self) -> Option<&Path> {
        match &self.link_source {
            LinkText::Vmlinux { path, .. } => Some(path),
            LinkText::Default => None,
        }
    }

    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        if cmd.trim() == "info" {
            return Some(Ok(self.info_text()));
        }
        // `kaslr` lists the alias, and every other command needs the symbols it waits for.
        self.plan_alias();
        monitor::run(self, cmd)
    }

    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        let mut help = vec![(
            "info",
            "what the running kernel is (release, build ID, CPUs, KASLR offset, vmlinux)",
        )];
        help.extend_from_slice(monitor::COMMANDS);
        help
    }

    fn kernel_view(&mut self) -> Option<&mut dyn KernelView> {
        // `kaslr` shows the alias (planned on first need).
        self.plan_alias();
        Some(self)
    }

    fn describe(&self) -> String {
        format!("live kernel {} ({})", self.release, self.arch)
    }
}

impl KernelView for LiveTarget {
    fn kernel(&mut self) -> Result<(Box<dyn VirtRead + '_>, &KernelInfo), String> {
        self.kernel_info();
        let k = self.kinfo.as_ref().ok_or("no kernel information")?;
        Ok((Box::new(&mut self.reader), k))
    }

    fn task_list(&mut self) -> Result<Vec<Task>, String> {
        self.tasks().map(|(_, t)| t)
    }

    /// From /sys/module: the running kernel lists its modules there.
    fn module_list(&mut self) -> Result<Vec<Module>, String> {
        modules::from_sysfs(Path::new(live::SYS_MODULE))
    }

    fn vmcoreinfo_text(&mut self) -> Result<String, String> {
        let v = self.live_vmcoreinfo()?;
        let mut out = format!(
            "# live VMCOREINFO: physical {:#x}, read at {:#x} (direct map {:#x})\n",
            v.phys,
            v.direct_map.wrapping_add(v.phys),
            v.direct_map
        );
        out.push_str(&v.text);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }

    fn kaslr(&self) -> Kaslr {
        Kaslr::Live {
            runtime_text: self.runtime_text,
            link_text: self.link_text,
            link: self.link_source.clone(),
        }
    }

    fn link_alias(&self) -> Option<&LinkAlias> {
        Some(&self.alias)
    }
}

/// Whether the task read again at a listed task's address is still that task: a freed
/// task_struct may be reused by another task, or be a zombie by now.
fn still_running_as(listed: &tasks::Task, now: &tasks::Task) -> bool {
    now.pid == listed.pid && now.comm == listed.comm && now.state != 'X' && now.state != 'Z'
}

/// Opens the running kernel as a GDB target (`-k VMLINUX` when given).
/// Checks that `v` (`-k path`) is the running kernel's vmlinux: its build ID against
/// /sys/kernel/notes, else its release against /proc/sys/kernel/osrelease ([`check_identity`]).
pub fn check_running_vmlinux(v: &Vmlinux, path: &Path, force: bool) -> Result<(), String> {
    let build_id = live::kernel_build_id();
    let release = live::osrelease();
    let kernel = KernelIdentity {
        what: "the running kernel",
        arch: Arch::host(),
        build_id: build_id.as_deref(),
        release: release.as_deref(),
    };
    check_identity(v, path, &kernel, force)
}

pub fn open_target(vmlinux: Option<&Path>, force_vmlinux: bool) -> Result<Box<dyn Target>, String> {
    Ok(Box::new(LiveTarget::open_with(vmlinux, force_vmlinux)?))
}

/// The running kernel's kallsyms, from /proc/kallsyms. Fails when every address reads as zero,
/// which is how the kernel hides them from processes without CAP_SYSLOG or under
/// `kernel.kptr_restrict=2`.
pub fn load_kallsyms() -> Result<Kallsyms, String> {
    load_kallsyms_filtered(&|_, _| true)
}

/// The whole table for [`LiveTarget`]'s resolver, read when first needed (`monitor sym`, a
/// name kmemd does not know). `open` has seen addresses in the file, so a failure now (the file
/// changed under us) leaves an empty table and a warning.
fn full_kallsyms() -> Kallsyms {
    load_kallsyms().unwrap_or_else(|e| {
        log::warn!("{e}");
        Kallsyms::default()
    })
}

/// The [`symbols::KNOWN`] names of /proc/kallsyms, streamed through a small buffer: what a
/// session needs (issue 16: the whole table was ~5 MiB of a live session's 11 MiB).
fn known_kallsyms() -> Kallsyms {
    load_core_kallsyms_filtered(&|_, name| symbols::is_known(name)).unwrap_or_else(|e| {
        log::warn!("{e}");
        Kallsyms::default()
    })
}

/// [`load_kallsyms`] keeping only the symbols `keep(kind, name)` accepts.
pub fn load_kallsyms_filtered(keep: &dyn Fn(char, &str) -> bool) -> Result<Kallsyms, String> {
    let table =
        Kallsyms::read_filtered(live::kallsyms::open()?, keep).map_err(|e| live::kallsyms::read_error(&e))?;
    if table.is_empty() {
        return Err(live::kallsyms::hidden());
    }
    Ok(table)
}

/// [`load_kallsyms_filtered`] for core kernel names: stops at the first module's line.
fn load_core_kallsyms_filtered(keep: &dyn Fn(char, &str) -> bool) -> Result<Kallsyms, String> {
    let table = Kallsyms::read_core_filtered(live::kallsyms::open()?, keep)
        .map_err(|e| live::kallsyms::read_error(&e))?;
    if table.is_empty() {
        return Err(live::kallsyms::hidden());
    }
    Ok(table)
}

/// The types kmemd needs from the running kernel's own BTF, read from the file in chunks
/// (kernel/btf_extract.rs), not the whole blob.
fn read_wanted_sys_btf() -> Result<Vec<u8>, String> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(live::SYS_BTF).map_err(|e| e.to_string())?;
    crate::kernel::btf_extract::extract(&mut |at, buf| f.read_at(buf, at).map_err(|e| e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root and bpf(2): runs only as root, fails under CI (any CI value but false/0) when
    /// not root, and skips where the syscall does not exist only under qemu-user
    /// (KMEMD_QEMU_USER=1, set by cross/qemu-test.sh).
    fn root() -> bool {
        if crate::sys::os::bpf_syscall_missing() {
            // Only the qemu-user runs of cross/qemu-test.sh (which say so) may skip.
            assert_eq!(
                std::env::var("KMEMD_QEMU_USER").as_deref(),
                Ok("1"),
                "bpf(2) returns ENOSYS outside qemu-user: this kernel lacks CONFIG_BPF_SYSCALL"
            );
            println!("kmemd-test-skip: bpf(2) returns ENOSYS here (qemu-user cannot emulate it)");
            return false;
        }
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0");
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(root || !ci, "CI needs root");
        root
    }

    #[test]
    fn slide_comes_from_the_given_vmlinux() {
        if !root() {
            return;
        }
        let runtime = load_kallsyms().unwrap().lookup("_text").unwrap();
        let link = runtime.wrapping_sub(0x2c60_0000);
        let path = std::env::temp_dir().join(format!("kmemd-live-vmlinux-{}", std::process::id()));
        let machine = Arch::host().elf_machine();
        std::fs::write(
            &path,
            crate::kernel::vmlinux::tests::synthetic_vmlinux(machine, link),
        )
        .unwrap();
        let t = LiveTarget::open(Some(&path));
        std::fs::remove_file(&path).unwrap();
        let mut t = t.expect("open with a vmlinux");
        assert_eq!(t.kaslr_offset(), Some(0x2c60_0000));
        let text = t.monitor("kaslr").unwrap().unwrap();
        assert!(text.contains("-o 0x2c600000 -s .data..percpu 0"), "{text}");

        let other =
            crate::kernel::vmlinux::tests::synthetic_vmlinux(if machine == 62 { 183 } else { 62 }, link);
        let path2 = path.with_extension("other");
        std::fs::write(&path2, &other).unwrap();
        let e = LiveTarget::open(Some(&path2));
        std::fs::remove_file(&path2).unwrap();
        assert!(e.unwrap_err().contains("running kernel"));
    }

    /// A session's first replies (the thread list, the stop thread's registers, a read of the
    /// kernel's text) need no kernel symbols: issue 16's start-up row. Symbols come with the
    /// next walk, which lists every task the first one did (minus any that exited).
    #[test]
    fn a_session_starts_before_the_kernel_symbols_are_read() {
        if !root() {
            return;
        }
        let mut t = LiveTarget::open(None).expect("open");
        t.prepare();
        let stop = t.stop_thread();
        let threads = t.threads();
        assert!(
            threads.iter().any(|th| th.tid == stop),
            "stop thread {stop} not listed"
        );
        let first = t.tasks.clone();
        assert_eq!(
            first.first().map(|t| t.pid),
            Some(0),
            "the walk starts at init_task"
        );
        // Every online CPU's idle task, in CPU order after swapper/0, from the run queues.
        let idle = |list: &[Task]| -> Vec<(Option<u32>, String)> {
            list.iter()
                .filter(|t| t.pid == 0)
                .map(|t| (t.cpu, t.comm.clone()))
                .collect()
        };
        let want: Vec<(Option<u32>, String)> = t
            .cpus
            .iter()
            .map(|&c| (Some(c), format!("swapper/{c}")))
            .collect();
        assert!(t.cpus.len() >= 2, "this test needs two CPUs: {:?}", t.cpus);
        assert_eq!(idle(&first), want, "the first walk's idle tasks");
        let regs = t.registers(stop).expect("the stop thread's registers");
        let pc = regs.0.get(t.arch.pc_index()).copied().flatten();
        assert!(
            pc.is_some_and(|pc| pc >= t.arch.kernel_space_start()),
            "pc {pc:x?}"
        );
        let mut word = [0u8; 8];
        t.read_virt(VirtAddr(t.runtime_text), &mut word)
            .expect("read _text");
        assert!(
            t.kinfo.is_none(),
            "kernel knowledge was built before the first replies"
        );

        let (_, again) = t.tasks().expect("the next walk");
        assert!(t.kinfo.is_some());
        let pids: std::collections::HashSet<i32> = again.iter().map(|t| t.pid).collect();
        let gone: Vec<_> = first
            .iter()
            .filter(|f| !pids.contains(&f.pid))
            .filter(|f| std::path::Path::new(&format!("/proc/{}", f.pid)).exists())
            .collect();
        assert!(gone.is_empty(), "the second walk lost live tasks: {gone:?}");
        assert_eq!(again.first().map(|t| t.pid), Some(0));
        assert_eq!(idle(&again), want, "the next walk's idle tasks");
    }
}
