//! The running kernel as a target: memory through BPF, symbols from kallsyms, KASLR from both.
//! live/ supplies the memory, the CPUs and where the kernel's knowledge of itself comes from;
//! kernel/ makes sense of it; this file puts the two together.

use crate::arch::{Arch, Registers};
/// Where the link-time `_text` came from (kernel/kaslr.rs).
pub use crate::kernel::kaslr::LinkText;
use crate::kernel::kaslr::{runtime_text, Kaslr};
use crate::kernel::modules::{self, Module};
use crate::kernel::monitor::{self, KernelView};
use crate::kernel::proc_kallsyms::Kallsyms;
use crate::kernel::tasks::{self, Task, TaskLayout};
use crate::kernel::threads;
use crate::kernel::vmlinux::Vmlinux;
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
    kallsyms: Kallsyms,
    arch: Arch,
    runtime_text: u64,
    link_text: u64,
    link_source: LinkText,
    cpus: Vec<u32>,
    release: String,
    /// The live VMCOREINFO, read on first use (`monitor vmcoreinfo`, symbols, dmesg).
    vmcoreinfo: Option<Result<vmcoreinfo::LiveVmcoreinfo, String>>,
    /// Kernel symbols and layouts (kallsyms, BTF, live VMCOREINFO), built on first use.
    kinfo: Option<KernelInfo>,
    /// Where the task walk starts (init_task, else this process's own task from BPF).
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
        let arch = Arch::host();
        // BPF first: without privileges its error ("run as root ...") is the one that helps.
        let reader = KernelReader::open()?;
        let kallsyms = load_kallsyms()?;
        let (link_text, link_source, link_head) = match vmlinux {
            Some(path) => {
                let v = Vmlinux::load(path)?;
                if v.arch != arch {
                    return Err(format!(
                        "{} is an {} kernel, but this machine runs {arch}: give -k the vmlinux of the \
                         running kernel",
                        path.display(),
                        v.arch
                    ));
                }
                let text = v.symbol("_text").ok_or_else(|| {
                    format!(
                        "{} has no _text symbol (stripped?): give -k the vmlinux with its symbol table",
                        path.display()
                    )
                })?;
                let percpu_at_zero = v.section(".data..percpu").is_some_and(|s| s.addr == 0);
                let head = v.symbol("_stext").map(|st| st.wrapping_sub(text));
                (
                    text,
                    LinkText::Vmlinux {
                        path: path.to_path_buf(),
                        percpu_at_zero,
                    },
                    head,
                )
            }
            None => (arch.default_text_link_addr(), LinkText::Default, None),
        };
        let runtime_text = runtime_text(&kallsyms, arch, link_head)
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
        let cpus = live::online_cpus().unwrap_or_else(|e| {
            log::warn!("{e}; showing one thread for CPU 0");
            vec![0]
        });
        let release = live::osrelease().unwrap_or_else(|| "(unknown release)".into());
        Ok(LiveTarget {
            reader,
            kallsyms,
            arch,
            runtime_text,
            link_text,
            link_source,
            cpus,
            release,
            vmcoreinfo: None,
            kinfo: None,
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
            let mut k = KernelInfo::live(&self.kallsyms, vmci.as_deref(), vmlinux.as_deref(), &system_btf());
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
        }
        self.kinfo.get_or_insert_with(KernelInfo::default)
    }

    /// Walks the task list now.
    pub fn tasks(&mut self) -> Result<(TaskLayout, Vec<Task>), String> {
        self.kernel_info();
        let k = self.kinfo.as_ref().ok_or("no kernel information")?;
        let layout = TaskLayout::new(k, self.arch)?;
        if self.task_start.is_none() {
            self.task_start = Some(match k.symbol("init_task") {
                Some(a) => Ok(a),
                None => live::task::current_task().map_err(|e| {
                    format!("no init_task in /proc/kallsyms and BPF cannot report the current task: {e}")
                }),
            });
        }
        let start = match &self.task_start {
            Some(Ok(a)) => *a,
            Some(Err(e)) => return Err(e.clone()),
            None => return Err("no task to start from".into()),
        };
        let mem = &mut self.reader;
        let list = tasks::walk(mem, &layout, start)?;
        self.tasks = list.clone();
        self.tasks_at = Some(std::time::Instant::now());
        Ok((layout, list))
    }

    /// Whether the task GDB listed as `pid` is still that task.
    fn task_alive(&mut self, pid: i32) -> bool {
        let Some(old) = self.tasks.iter().find(|t| t.pid == pid).cloned() else {
            return false;
        };
        self.kernel_info();
        let Some(k) = self.kinfo.as_ref() else {
            return false;
        };
        let Ok(layout) = TaskLayout::new(k, self.arch) else {
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
    fn task_registers(&mut self, pid: i32) -> Result<Registers, ReadError> {
        let old = self
            .tasks
            .iter()
            .find(|t| t.pid == pid)
            .cloned()
            .ok_or_else(|| format!("no task with pid {pid} (ask for the thread list again)"))?;
        self.kernel_info();
        let k = self.kinfo.as_ref().ok_or("no kernel information")?;
        let layout = TaskLayout::new(k, self.arch)?;
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

    /// The kernel's own VMCOREINFO, read through the direct map once and kept (also its error).
    pub fn live_vmcoreinfo(&mut self) -> Result<&vmcoreinfo::LiveVmcoreinfo, String> {
        if self.vmcoreinfo.is_none() {
            let kallsyms = &self.kallsyms;
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

    pub fn kallsyms(&self) -> &Kallsyms {
        &self.kallsyms
    }

    pub fn reader(&mut self) -> &mut KernelReader {
        &mut self.reader
    }

    /// Online CPU numbers, ascending.
    pub fn cpus(&self) -> &[u32] {
        &self.cpus
    }

    pub fn link_source(&self) -> &LinkText {
        &self.link_source
    }
}

impl VirtRead for LiveTarget {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        self.reader.read_virt(addr, buf)
    }
}

impl Target for LiveTarget {
    fn prepare(&mut self) {
        self.kernel_info();
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
        if let Some(pid) = threads::tid_pid(tid) {
            return self.task_registers(pid);
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
        Ok(Registers(regs))
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
        match threads::tid_pid(tid) {
            Some(pid) => self.task_alive(pid),
            None => true,
        }
    }

    fn kaslr_offset(&self) -> Option<u64> {
        Some(self.runtime_text.wrapping_sub(self.link_text))
    }

    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        monitor::run(self, cmd)
    }

    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        monitor::COMMANDS.to_vec()
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
}

/// Whether the task read again at a listed task's address is still that task: a freed
/// task_struct may be reused by another task, or be a zombie by now.
fn still_running_as(listed: &tasks::Task, now: &tasks::Task) -> bool {
    now.pid == listed.pid && now.comm == listed.comm && now.state != 'X' && now.state != 'Z'
}

/// Opens the running kernel as a GDB target (`-k VMLINUX` when given).
pub fn open_target(vmlinux: Option<&Path>) -> Result<Box<dyn Target>, String> {
    Ok(Box::new(LiveTarget::open(vmlinux)?))
}

/// The running kernel's kallsyms, from /proc/kallsyms. Fails when every address reads as zero,
/// which is how the kernel hides them from processes without CAP_SYSLOG or under
/// `kernel.kptr_restrict=2`.
pub fn load_kallsyms() -> Result<Kallsyms, String> {
    load_kallsyms_filtered(&|_, _| true)
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

/// The running kernel's own BTF, read only when no vmlinux gives BTF.
fn system_btf() -> BtfSource<'static> {
    BtfSource {
        name: live::SYS_BTF,
        read: &live::read_sys_btf,
    }
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
}
