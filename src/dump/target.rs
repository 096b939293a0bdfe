//! A crash dump as a GDB target: kernel virtual addresses go through the dump's own page tables
//! (src/arch/ walkers), threads are the CPUs with the registers the dump saved, and the KASLR
//! offset comes from VMCOREINFO.

use super::{Dump, PhysRead};
use crate::arch::aarch64::PagingAarch64;
use crate::arch::walk::{Paging, VirtAddr};
use crate::arch::x86_64::PagingX86_64;
use crate::arch::Arch;
use crate::target::{MemError, Registers, Target, ThreadInfo, Tid};
use std::path::Path;

/// Kernel virtual memory of a dump through its page tables, for the kernel-aware decoders.
pub struct DumpMem<'a> {
    pub dump: &'a Dump,
    pub paging: &'a Paging,
}

impl crate::kernel::KernelMem for DumpMem<'_> {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, MemError> {
        read_virt(self.dump, self.paging, addr, buf)
    }
}

fn read_virt(dump: &Dump, paging: &Paging, addr: u64, buf: &mut [u8]) -> Result<usize, MemError> {
    let t = paging.translate(dump, VirtAddr(addr))?;
    // One page (or block) at a time: the next one may map anywhere, or nowhere.
    let n = buf.len().min(usize::try_from(t.page_size).unwrap_or(usize::MAX));
    dump.read_phys(t.pa.value(), &mut buf[..n])
        .map_err(|e| MemError::new(addr, format!("{} (physical {:#x})", e.reason, t.pa.value())))
}

pub struct DumpTarget {
    dump: Dump,
    arch: Arch,
    paging: Paging,
    threads: Vec<ThreadInfo>,
    stop: Tid,
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
        if vmci.is_empty() {
            return Err(
                "the dump carries no VMCOREINFO, which kmemd needs to find the kernel's page \
                        tables (for QEMU dumps: give the guest `-device vmcoreinfo` and load its \
                        qemu_fw_cfg module)"
                    .into(),
            );
        }
        let lookup = |key: &str| vmci.get(key);
        let paging = match arch {
            Arch::X86_64 => PagingX86_64::from_lookup(lookup)?,
            Arch::Aarch64 => PagingAarch64::from_lookup(lookup)?,
        };
        let crashed = dump.crashing_cpu();
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
                if crashed == Some(i) {
                    extra.push_str(" (panic)");
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
        let stop = crashed.map_or(1, |c| c as Tid + 1);
        Ok(DumpTarget {
            dump,
            arch,
            paging,
            threads,
            stop,
        })
    }

    pub fn dump(&self) -> &Dump {
        &self.dump
    }
}

impl Target for DumpTarget {
    fn arch(&self) -> Arch {
        self.arch
    }

    fn read_memory(&mut self, addr: u64, buf: &mut [u8]) -> Result<usize, MemError> {
        read_virt(&self.dump, &self.paging, addr, buf)
    }

    fn threads(&mut self) -> Vec<ThreadInfo> {
        self.threads.clone()
    }

    fn stop_thread(&mut self) -> Tid {
        self.stop
    }

    fn registers(&mut self, tid: Tid) -> Result<Registers, String> {
        let cpu = tid
            .checked_sub(1)
            .and_then(|i| self.dump.cpus().get(usize::try_from(i).ok()?))
            .ok_or_else(|| format!("no thread {tid}: threads are CPUs 1 to {}", self.threads.len()))?;
        Ok(cpu.gdb_registers(self.arch))
    }

    fn kaslr_offset(&self) -> Option<u64> {
        self.dump.kaslr_offset()
    }

    fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
        let mut words = cmd.split_whitespace();
        match words.next()? {
            "vtop" => Some(match words.next().map(crate::cli::parse_addr) {
                Some(Ok(va)) => Ok(format!("{}\n", self.paging.walk(&self.dump, VirtAddr(va)))),
                Some(Err(e)) => Err(e),
                None => Err("usage: monitor vtop ADDR".into()),
            }),
            "info" => Some(Ok(self.dump.info_text())),
            "dmesg" => {
                let mut mem = DumpMem {
                    dump: &self.dump,
                    paging: &self.paging,
                };
                Some(crate::kernel::dmesg::dmesg(&mut mem, self.dump.vmcoreinfo()))
            }
            "kaslr" => Some(Ok(match self.dump.kaslr_offset() {
                Some(off) => format!(
                    "KASLR offset {off:#x} (VMCOREINFO KERNELOFFSET)\n\
                     GDB relocated .text, .data and .bss through qOffsets. For every section:\n  \
                     symbol-file\n  add-symbol-file VMLINUX -o {off:#x} -s .data..percpu 0\n"
                ),
                None => "the dump's VMCOREINFO has no KERNELOFFSET: no KASLR offset known\n".into(),
            })),
            _ => None,
        }
    }

    fn monitor_help(&self) -> Vec<(&'static str, &'static str)> {
        vec![
            (
                "vtop ADDR",
                "walk the page tables for a kernel address, level by level",
            ),
            ("info", "what the dump is (format, kernel, CPUs, memory)"),
            (
                "dmesg",
                "the kernel log (printk ring buffer), as makedumpfile --dump-dmesg prints it",
            ),
            (
                "kaslr",
                "the KASLR offset and the GDB lines that apply it to every section",
            ),
        ]
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
