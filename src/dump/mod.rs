//! Crash dumps: ELF vmcores and makedumpfile's kdump formats, read through a page-table walker.
//!
//! `Dump::open` detects the format by content (ELF, `KDUMP   `/`DISKDUMP`, flattened
//! `makedumpfile` records around either) and offers the dump's physical memory ([`PhysRead`]),
//! architecture, VMCOREINFO and per-CPU registers. Turning kernel virtual addresses into physical
//! ones is the page-table walker's job (src/arch/).

pub mod cache;
pub mod codec;
pub mod elf;
pub mod flat;
pub mod kdump;
pub mod notes;
#[cfg(test)]
pub(crate) mod testutil;

use crate::arch::walk::Paging;
use crate::arch::Arch;
use crate::mem::bytes::{self, FileSource, FormatError, ReadAt};
use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{MemError, PhysAddr, PhysRead, VirtAddr, VirtRead};
use elf::ElfCore;
use flat::FlatSource;
use kdump::KdumpFile;
pub use notes::CpuState;
use std::fmt::Write as _;

enum Body {
    Elf(ElfCore),
    Kdump(Box<KdumpFile>),
}

/// An open crash dump.
pub struct Dump {
    src: Box<dyn ReadAt + Send>,
    body: Body,
    flattened: bool,
    arch: Arch,
    vmcoreinfo: VmcoreInfo,
    cpus: Vec<CpuState>,
    crashing_cpu: Option<usize>,
}

/// Formats kmemd recognises only to say what to do with them.
fn foreign_format(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some("a gzip file: decompress it first (gunzip)")
    } else if head.starts_with(b"\xfd7zXZ\0") {
        Some("an xz file: decompress it first (unxz)")
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Some("a zstd file: decompress it first (unzstd)")
    } else if head.starts_with(b"BZh") {
        Some("a bzip2 file: decompress it first (bunzip2)")
    } else if head.starts_with(b"PAGEDU64") || head.starts_with(b"PAGEDUMP") {
        Some("a Windows crash dump; kmemd reads Linux vmcores")
    } else {
        None
    }
}

impl Dump {
    /// Opens a dump file, detecting its format from its content. Errors are one line that names
    /// the file and says what is wrong.
    pub fn open(path: &str) -> Result<Dump, FormatError> {
        let src = FileSource::open(path)?;
        Dump::from_source(Box::new(src)).map_err(|e| FormatError::new(e.kind, format!("{path}: {e}")))
    }

    /// Opens a dump held by any [`ReadAt`] (tests use in-memory buffers).
    pub fn from_source(src: Box<dyn ReadAt + Send>) -> Result<Dump, FormatError> {
        if src.is_empty() {
            return Err(FormatError::truncated(
                "the file is empty; it is not a crash dump",
            ));
        }
        let head = bytes::read_vec(&*src, 0, src.len().min(64), "file header")?;
        let (src, flattened): (Box<dyn ReadAt + Send>, bool) = if flat::is_flattened(&head) {
            (Box::new(FlatSource::new(src)?), true)
        } else {
            (src, false)
        };
        let head = if flattened {
            bytes::read_vec(&*src, 0, src.len().min(64), "file header")?
        } else {
            head
        };
        let body = if crate::mem::elf::is_elf(&head) {
            Body::Elf(ElfCore::parse(&*src)?)
        } else if kdump::is_kdump(&head) {
            let mut k = KdumpFile::parse(&*src)?;
            if flattened {
                k.mark_flattened();
            }
            Body::Kdump(Box::new(k))
        } else if let Some(what) = foreign_format(&head) {
            return Err(FormatError::unsupported(format!("this is {what}")));
        } else if flattened {
            return Err(FormatError::unsupported(
                "the flattened dump holds neither an ELF vmcore nor a kdump-compressed file",
            ));
        } else {
            return Err(FormatError::unsupported(
                "not a crash dump kmemd can read: expected an ELF vmcore, a makedumpfile \
                 kdump-compressed file or a flattened dump (makedumpfile -F)",
            ));
        };
        let (arch, vmcoreinfo, cpus, crashing_cpu) = match &body {
            Body::Elf(core) => {
                let mut all = notes::NoteInfo::default();
                for blob in &core.note_blobs {
                    let info = notes::interpret(
                        &notes::parse_notes(blob, core.endian),
                        core.endian,
                        Some(core.arch),
                    );
                    all.cpus.extend(info.cpus);
                    all.vmcoreinfo = all.vmcoreinfo.or(info.vmcoreinfo);
                }
                let vmci = VmcoreInfo::parse(all.vmcoreinfo.as_deref().unwrap_or_default());
                // An ELF vmcore does not record which CPU crashed (every CPU saves the same
                // NT_PRSTATUS); the kernel's `panic_cpu` variable says, given symbols.
                (core.arch, vmci, all.cpus, None)
            }
            Body::Kdump(k) => {
                let endian = k.header.endian;
                let parsed = k
                    .notes
                    .as_deref()
                    .map(|n| notes::parse_notes(n, endian))
                    .unwrap_or_default();
                let from_machine = Arch::from_machine_name(&k.header.machine);
                let guess = notes::interpret(&parsed, endian, from_machine);
                let text = k
                    .vmcoreinfo
                    .clone()
                    .or(guess.vmcoreinfo.clone())
                    .unwrap_or_default();
                let vmci = VmcoreInfo::parse(&text);
                // QEMU writes machine "Unknown" (quirk 5): fall back to the notes, then VMCOREINFO.
                let arch = from_machine
                    .or(guess.prstatus_arch)
                    .or_else(|| Arch::from_vmcoreinfo(&vmci))
                    .ok_or_else(|| {
                        FormatError::unsupported(
                            "cannot tell this dump's architecture (no machine name, CPU notes or \
                             VMCOREINFO); it is damaged or not from x86_64/aarch64",
                        )
                    })?;
                let info = if Some(arch) == from_machine {
                    guess
                } else {
                    notes::interpret(&parsed, endian, Some(arch))
                };
                // Only the old "DISKDUMP" writer filled current_cpu; makedumpfile (checked: 1.7.2)
                // and QEMU leave it 0 whichever CPU crashed.
                let crashing = (k.header.signature == "DISKDUMP")
                    .then_some(k.header.current_cpu as usize)
                    .filter(|&c| c < info.cpus.len());
                (arch, vmci, info.cpus, crashing)
            }
        };
        if let Some(d) = vmcoreinfo.damage() {
            log::warn!(
                "the dump's VMCOREINFO note is corrupt: {d}; kmemd skips the damaged lines and \
                 reads the rest"
            );
        } else if vmcoreinfo.is_empty() {
            log::warn!("the dump has no VMCOREINFO: kernel addresses cannot be translated without it");
        }
        Ok(Dump {
            src,
            body,
            flattened,
            arch,
            vmcoreinfo,
            cpus,
            crashing_cpu,
        })
    }

    /// The dumped kernel's architecture (not the host's).
    pub fn arch(&self) -> Arch {
        self.arch
    }

    /// VMCOREINFO (empty when the dump has none).
    pub fn vmcoreinfo(&self) -> &VmcoreInfo {
        &self.vmcoreinfo
    }

    /// One entry per CPU, in note order (CPU 0 first).
    pub fn cpus(&self) -> &[CpuState] {
        &self.cpus
    }

    /// Index into `cpus()` of the CPU that crashed, when the file records it: only the old
    /// "DISKDUMP" header's `current_cpu`. None for ELF and makedumpfile/QEMU kdump files.
    pub fn crashing_cpu(&self) -> Option<usize> {
        self.crashing_cpu
    }

    /// KASLR slide from VMCOREINFO `KERNELOFFSET`.
    pub fn kaslr_offset(&self) -> Option<u64> {
        self.vmcoreinfo.kerneloffset()
    }

    /// The kernel's page size: VMCOREINFO `PAGESIZE`, else the kdump block size, else 4096.
    pub fn page_size(&self) -> u64 {
        self.vmcoreinfo.page_size().unwrap_or(match &self.body {
            Body::Kdump(k) => k.header.block_size,
            Body::Elf(_) => 4096,
        })
    }

    /// Short format name, e.g. `kdump-compressed (flattened), zlib`.
    pub fn format_name(&self) -> String {
        let flat = if self.flattened { " (flattened)" } else { "" };
        match &self.body {
            Body::Elf(_) => format!("ELF vmcore{flat}"),
            Body::Kdump(k) => format!("kdump-compressed{flat}, {} pages", k.header.compression().name()),
        }
    }

    /// Physical address ranges `[start, end)` whose bytes the dump holds.
    pub fn phys_ranges(&self) -> Vec<(u64, u64)> {
        match &self.body {
            Body::Elf(core) => {
                let mut r: Vec<(u64, u64)> = Vec::new();
                for s in core.segments.iter().filter(|s| s.present > 0) {
                    let (start, end) = (s.paddr, s.paddr.saturating_add(s.present));
                    match r.last_mut() {
                        Some(last) if last.1 == start => last.1 = end,
                        _ => r.push((start, end)),
                    }
                }
                r
            }
            Body::Kdump(k) => k.dumpable_ranges(),
        }
    }

    /// Bounds the decompressed-page cache (kdump formats; ELF reads are not cached).
    pub fn set_cache_limit(&self, bytes: usize) {
        if let Body::Kdump(k) = &self.body {
            k.set_cache_limit(bytes);
        }
    }

    /// What the file itself says of the dump (`--info` when the kernel's data cannot be read).
    pub fn info_text(&self) -> String {
        self.info_text_with(None, None, None)
    }

    /// The description, with the CPU list and crashing CPU given by the caller (who read them
    /// from the kernel's data) instead of the file's NT_PRSTATUS pr_pid and kdump header.
    /// `panic` is the kernel's last words (its log's panic line), when the caller read them.
    pub fn info_text_with(
        &self,
        cpus: Option<&[String]>,
        crashed: Option<&str>,
        panic: Option<&str>,
    ) -> String {
        let mut t = String::new();
        let vi = &self.vmcoreinfo;
        let _ = writeln!(t, "format:        {}", self.format_name());
        if let Body::Kdump(k) = &self.body {
            let h = &k.header;
            let level = h
                .dump_level
                .map(|l| format!(", dump level {l}"))
                .unwrap_or_default();
            let _ = writeln!(
                t,
                "kdump header:  version {}, block size {}{level}",
                h.header_version, h.block_size
            );
            if h.incomplete() {
                let _ = writeln!(
                    t,
                    "warning:       incomplete dump (makedumpfile ran out of space): pages are missing"
                );
            }
        }
        if let Body::Elf(core) = &self.body {
            if core.truncated {
                let _ = writeln!(
                    t,
                    "warning:       the file is truncated: memory past its end cannot be read"
                );
            }
        }
        let _ = writeln!(t, "arch:          {}", self.arch);
        let release = vi.osrelease().map(str::to_string).or_else(|| match &self.body {
            Body::Kdump(k) if !k.header.release.is_empty() => Some(k.header.release.clone()),
            _ => None,
        });
        let _ = writeln!(
            t,
            "kernel:        {}",
            release.as_deref().unwrap_or("unknown (no VMCOREINFO)")
        );
        if let Some(id) = vi.get("BUILD-ID") {
            let _ = writeln!(t, "build ID:      {id}");
        }
        let _ = writeln!(t, "page size:     {}", self.page_size());
        let from_file: Vec<String> = self
            .cpus
            .iter()
            .enumerate()
            // pr_pid is not always a Linux pid (QEMU writes the CPU index + 1, dump/dump.c), so a
            // non-zero one is named as the note's field; 0 only a kernel writes (idle).
            .map(|(i, c)| {
                if c.pid == 0 {
                    format!("CPU {i} idle")
                } else {
                    format!("CPU {i} pr_pid {}", c.pid)
                }
            })
            .collect();
        let cpus = cpus.unwrap_or(&from_file);
        let _ = writeln!(t, "CPUs:          {} ({})", self.cpus.len(), cpus.join(", "));
        let crashed = crashed.map(str::to_string).unwrap_or_else(|| {
            self.crashing_cpu
                .map_or("not recorded in the file".to_string(), |c| format!("CPU {c}"))
        });
        let _ = writeln!(t, "crashing CPU:  {crashed}");
        if let Some(p) = panic {
            let _ = writeln!(t, "panic:         {p}");
        }
        let kaslr = self
            .kaslr_offset()
            .map_or("unknown (no KERNELOFFSET)".to_string(), |o| format!("{o:#x}"));
        let _ = writeln!(t, "KASLR offset:  {kaslr}");
        let _ = writeln!(t, "VMCOREINFO:    {} entries", vi.entries().len());
        if let Some(d) = vi.damage() {
            let _ = writeln!(t, "warning:       the VMCOREINFO note is corrupt: {d}");
        }
        let ranges = self.phys_ranges();
        let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
        let size = if total >= 1 << 20 {
            format!("{} MiB", total >> 20)
        } else {
            format!("{} KiB", total >> 10)
        };
        let _ = writeln!(t, "physical:      {} range(s), {size} in the dump", ranges.len());
        for (s, e) in ranges.iter().take(16) {
            let _ = writeln!(t, "               {s:#014x}-{:#014x}", e - 1);
        }
        if ranges.len() > 16 {
            let _ = writeln!(t, "               ... and {} more", ranges.len() - 16);
        }
        t
    }
}

impl PhysRead for Dump {
    fn read_phys(&self, paddr: PhysAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        match &self.body {
            Body::Elf(core) => core.read_phys(&*self.src, paddr.0, buf),
            Body::Kdump(k) => k.read_phys(&*self.src, paddr.0, buf),
        }
    }
}

/// Virtual memory of a dump through page tables (the kernel's, or a process's), for the
/// kernel-aware decoders.
pub struct DumpMem<'a> {
    pub dump: &'a Dump,
    pub paging: &'a Paging,
}

impl VirtRead for DumpMem<'_> {
    fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
        read_virt(self.dump, self.paging, addr, buf)
    }
}

/// Reads kernel (or any) virtual memory of `dump` through the page tables `paging`: as much of
/// `buf` as is readable from `addr` on, stopping before the first byte that is not (an error
/// only when that is the first byte). Each run of pages that map contiguous physical memory is
/// one physical read (a single `pread` in an ELF vmcore), and each leaf table is read once per
/// request (`RangeWalk`), not walked again for every page.
pub fn read_virt(dump: &Dump, paging: &Paging, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
    let mut walk = paging.range_walk();
    let mut done = 0usize;
    while done < buf.len() {
        let Some(va) = addr.checked_add(done as u64) else {
            break;
        };
        let rest = (buf.len() - done) as u64;
        let t = match walk.next(dump, va, rest) {
            Ok(t) => t,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let end = done
            + usize::try_from(t.page_size.min(rest))
                .unwrap_or(usize::MAX)
                .min(buf.len() - done);
        let run_start = done;
        while done < end {
            let Some(pa) = t.pa.checked_add((done - run_start) as u64) else {
                return short(done, addr, t.pa, "the run wraps physical memory".into());
            };
            match dump.read_phys(pa, buf.get_mut(done..end).unwrap_or_default()) {
                Ok(n) if n > 0 => done += n.min(end - done),
                Ok(_) => return short(done, addr, pa, "the dump returned no bytes".into()),
                Err(e) if done == 0 => {
                    return Err(MemError {
                        addr: addr.0,
                        detail: format!("{} (physical {:#x})", e.detail, pa.value()),
                        ..e
                    })
                }
                Err(_) => return Ok(done),
            }
        }
    }
    Ok(done)
}

/// A read that made no progress: the prefix read so far, or an error when there is none.
fn short(done: usize, addr: VirtAddr, pa: PhysAddr, why: String) -> Result<usize, MemError> {
    if done > 0 {
        Ok(done)
    } else {
        Err(MemError::new(
            addr.0,
            crate::mem::MemErrorKind::Fault,
            format!("{why} (physical {:#x})", pa.value()),
        ))
    }
}

#[cfg(test)]
mod tests;
