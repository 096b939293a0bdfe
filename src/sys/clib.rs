//! FFI to the C libraries libbpf-sys links statically: libbpf itself and its zlib.
//!
//! The libbpf part is small on purpose: open an embedded object, size its maps, load it, then
//! hand out owned duplicates of the program and map fds (`BpfProg`, `BpfMap`) so nothing outside
//! this file ever holds a libbpf pointer. Test runs, map updates/lookups and the read-only mmap
//! of a `BPF_F_MMAPABLE` array are the only operations kmemd needs.
#![allow(unsafe_code)]

use libbpf_sys as bpf;
use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::raw::{c_char, c_int, c_ulong, c_void};
use std::ptr::NonNull;
use std::sync::Once;

extern "C" {
    // zlib, linked statically by libbpf-sys (features vendored + static).
    fn uncompress(dest: *mut u8, dest_len: *mut c_ulong, source: *const u8, source_len: c_ulong) -> c_int;
}

/// Inflates a zlib (RFC 1950) stream into `out`, returning how many bytes were written.
/// Errors carry zlib's status (-3 data error, -5 output buffer too small).
pub fn zlib_uncompress(input: &[u8], out: &mut [u8]) -> Result<usize, i32> {
    let mut out_len = out.len() as c_ulong;
    // SAFETY: both pointers come from live slices whose lengths are passed alongside; zlib writes
    // at most `out_len` bytes to `dest` and only reads `source_len` bytes from `source`.
    let rc = unsafe {
        uncompress(
            out.as_mut_ptr(),
            &mut out_len,
            input.as_ptr(),
            input.len() as c_ulong,
        )
    };
    if rc == 0 {
        Ok(out_len as usize)
    } else {
        Err(rc)
    }
}

// ---- libbpf ----------------------------------------------------------------------------------

extern "C" {
    // libc's vsnprintf, declared with the va_list type libbpf-sys' bindings give the print
    // callback. On x86_64 va_list is an array that decays to a pointer; on aarch64 (AAPCS64) it is
    // a 32-byte struct, which the ABI passes by reference. Either way the callback receives a
    // pointer that vsnprintf accepts unchanged.
    fn vsnprintf(buf: *mut c_char, size: usize, fmt: *const c_char, ap: *mut bpf::__va_list_tag) -> c_int;
}

/// libbpf's messages go to the `log` crate. Its warnings (which include the verifier log when a
/// program is rejected) are logged at debug level: the caller turns the failure itself into one
/// error sentence, and `-vv` shows the details.
unsafe extern "C" fn libbpf_print(
    level: bpf::libbpf_print_level,
    fmt: *const c_char,
    ap: *mut bpf::__va_list_tag,
) -> c_int {
    let level = if level == bpf::LIBBPF_DEBUG {
        log::Level::Trace
    } else {
        log::Level::Debug
    };
    if !log::log_enabled!(level) {
        return 0;
    }
    // Large enough for a whole verifier log, which libbpf prints as one message.
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: libbpf passes a valid format string and the matching va_list, used once here;
    // vsnprintf writes at most `buf.len()` bytes including the terminating NUL.
    let n = unsafe { vsnprintf(buf.as_mut_ptr().cast(), buf.len(), fmt, ap) };
    if n < 0 {
        return 0;
    }
    let text = CStr::from_bytes_until_nul(&buf)
        .map(|c| c.to_string_lossy())
        .unwrap_or_default();
    let text = text.trim_end();
    let truncated = if n as usize >= buf.len() {
        " [truncated]"
    } else {
        ""
    };
    // libbpf's own messages already start with "libbpf: ".
    if text.starts_with("libbpf:") {
        log::log!(level, "{text}{truncated}");
    } else {
        log::log!(level, "libbpf: {text}{truncated}");
    }
    n
}

fn route_libbpf_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: `libbpf_print` matches libbpf_print_fn_t and lives for the whole program.
        unsafe {
            bpf::libbpf_set_print(Some(libbpf_print));
        }
    });
}

fn cstring(name: &str) -> Result<CString, String> {
    CString::new(name).map_err(|_| format!("BPF name {name:?} contains a NUL byte"))
}

/// Duplicates an fd owned by libbpf into one we own (close-on-exec), so the object can be closed.
fn dup_fd(fd: c_int, what: &str) -> Result<OwnedFd, String> {
    if fd < 0 {
        return Err(format!(
            "{what} has no file descriptor (was the BPF object loaded?)"
        ));
    }
    // SAFETY: `fd` is open: libbpf keeps it open until bpf_object__close, which only our Drop
    // calls, and the borrow ends before this function returns.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    borrowed
        .try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate the fd of {what}: {e}"))
}

/// Turns a failed `bpf_object__load` into a sentence that says what to do.
pub fn load_error_sentence(what: &str, errno: i32) -> String {
    let os = io::Error::from_raw_os_error(errno);
    match errno {
        libc::EPERM => format!(
            "loading the BPF {what} was not permitted ({os}): run kmemd as root, or give it CAP_BPF and \
             CAP_PERFMON (and CAP_SYS_ADMIN on kernels older than 5.8)"
        ),
        libc::ENOSYS => format!(
            "this kernel has no BPF system call ({os}): kmemd needs a kernel built with \
             CONFIG_BPF_SYSCALL (and not running under qemu-user)"
        ),
        _ => format!(
            "the kernel rejected the BPF {what} ({os}): it needs Linux 5.5 or later with \
             bpf_probe_read_kernel and BPF_F_MMAPABLE; run with -vv to see the verifier log"
        ),
    }
}

/// A libbpf object opened from embedded bytes. Only lives until its fds are duplicated.
pub struct BpfObject {
    obj: NonNull<bpf::bpf_object>,
    name: String,
}

impl BpfObject {
    /// Opens an ELF BPF object from memory (nothing is sent to the kernel yet). The bytes are
    /// `'static` because libbpf keeps pointing into them until the object is loaded.
    pub fn open_mem(name: &str, bytes: &'static [u8]) -> Result<BpfObject, String> {
        route_libbpf_logs();
        let cname = cstring(name)?;
        let opts = bpf::bpf_object_open_opts {
            sz: std::mem::size_of::<bpf::bpf_object_open_opts>() as _,
            object_name: cname.as_ptr(),
            ..Default::default()
        };
        // SAFETY: `bytes` is 'static and its length is passed; `opts` is a valid, sized options
        // struct and `cname` outlives the call (libbpf copies the name).
        let obj = unsafe { bpf::bpf_object__open_mem(bytes.as_ptr().cast(), bytes.len() as _, &opts) };
        match NonNull::new(obj) {
            Some(obj) => Ok(BpfObject {
                obj,
                name: name.to_string(),
            }),
            None => Err(format!(
                "cannot parse the embedded BPF object {name} ({}): the kmemd binary is damaged",
                io::Error::last_os_error()
            )),
        }
    }

    fn map(&self, name: &str) -> Result<NonNull<bpf::bpf_map>, String> {
        let cname = cstring(name)?;
        // SAFETY: `self.obj` is a live object; `cname` is NUL-terminated and outlives the call.
        let map = unsafe { bpf::bpf_object__find_map_by_name(self.obj.as_ptr(), cname.as_ptr()) };
        NonNull::new(map).ok_or_else(|| format!("BPF object {} has no map {name}", self.name))
    }

    /// Sets a map's value size; only before `load`.
    pub fn set_value_size(&mut self, map: &str, size: u32) -> Result<(), String> {
        let m = self.map(map)?;
        // SAFETY: `m` belongs to the live object `self.obj`.
        let rc = unsafe { bpf::bpf_map__set_value_size(m.as_ptr(), size) };
        if rc != 0 {
            return Err(format!(
                "cannot set the value size of BPF map {map} to {size}: {}",
                io::Error::from_raw_os_error(-rc)
            ));
        }
        Ok(())
    }

    /// Sets a map's entry count (a ring buffer's byte size); only before `load`.
    pub fn set_max_entries(&mut self, map: &str, n: u32) -> Result<(), String> {
        let m = self.map(map)?;
        // SAFETY: `m` belongs to the live, not yet loaded object `self.obj`.
        let rc = unsafe { bpf::bpf_map__set_max_entries(m.as_ptr(), n) };
        if rc != 0 {
            return Err(format!(
                "cannot size BPF map {map} to {n}: {}",
                io::Error::from_raw_os_error(-rc)
            ));
        }
        Ok(())
    }

    /// Replaces the initial contents of a global-data map (`.rodata`, `.data`, `.bss`); only
    /// before `load`. `bytes` must be exactly the map's value size (libbpf checks it), which is how
    /// a caller setting one `const volatile` variable knows the section holds nothing else.
    pub fn set_initial_value(&mut self, map: &str, bytes: &[u8]) -> Result<(), String> {
        let m = self.map(map)?;
        // SAFETY: `m` belongs to the live, not yet loaded object; libbpf copies `bytes.len()`
        // bytes out of the live slice (after checking the length against the value size).
        let rc =
            unsafe { bpf::bpf_map__set_initial_value(m.as_ptr(), bytes.as_ptr().cast(), bytes.len() as _) };
        if rc != 0 {
            return Err(format!(
                "cannot set the initial value of BPF map {map} in {} ({} bytes): {}; the kmemd \
                 binary and its embedded BPF object do not match",
                self.name,
                bytes.len(),
                io::Error::from_raw_os_error(-rc)
            ));
        }
        Ok(())
    }

    /// Verifies and loads every program and creates every map.
    pub fn load(&mut self) -> Result<(), String> {
        // SAFETY: `self.obj` is a live, not yet loaded object.
        let rc = unsafe { bpf::bpf_object__load(self.obj.as_ptr()) };
        if rc != 0 {
            return Err(load_error_sentence(&format!("object {}", self.name), -rc));
        }
        Ok(())
    }

    /// An owned handle to a loaded program.
    pub fn program(&self, name: &str) -> Result<BpfProg, String> {
        let cname = cstring(name)?;
        // SAFETY: `self.obj` is live; `cname` outlives the call.
        let prog = unsafe { bpf::bpf_object__find_program_by_name(self.obj.as_ptr(), cname.as_ptr()) };
        let prog =
            NonNull::new(prog).ok_or_else(|| format!("BPF object {} has no program {name}", self.name))?;
        // SAFETY: `prog` belongs to the live object.
        let fd = unsafe { bpf::bpf_program__fd(prog.as_ptr()) };
        Ok(BpfProg {
            fd: dup_fd(fd, &format!("BPF program {name}"))?,
        })
    }

    /// An owned handle to a created map, with its geometry.
    pub fn map_handle(&self, name: &str) -> Result<BpfMap, String> {
        let m = self.map(name)?;
        // SAFETY: `m` belongs to the live object; these getters only read libbpf's map struct.
        let (fd, value_size, max_entries, flags) = unsafe {
            (
                bpf::bpf_map__fd(m.as_ptr()),
                bpf::bpf_map__value_size(m.as_ptr()),
                bpf::bpf_map__max_entries(m.as_ptr()),
                bpf::bpf_map__map_flags(m.as_ptr()),
            )
        };
        Ok(BpfMap {
            fd: dup_fd(fd, &format!("BPF map {name}"))?,
            value_size,
            max_entries,
            mmapable: flags & bpf::BPF_F_MMAPABLE != 0,
        })
    }
}

impl Drop for BpfObject {
    fn drop(&mut self) {
        // SAFETY: `self.obj` came from bpf_object__open_mem and is closed exactly once, here.
        // Programs and maps whose fds we duplicated stay alive in the kernel.
        unsafe { bpf::bpf_object__close(self.obj.as_ptr()) }
    }
}

/// A loaded BPF program.
#[derive(Debug)]
pub struct BpfProg {
    fd: OwnedFd,
}

impl AsFd for BpfProg {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What one `BPF_PROG_TEST_RUN` reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TestRun {
    /// The program's return value (R0, truncated to 32 bits by the kernel).
    pub retval: u32,
}

impl BpfProg {
    /// Runs the program once per `repeat` (0 counts as 1) with `BPF_PROG_TEST_RUN`. `ctx` is the
    /// context (a raw_tp program's argument array); `data` the packet for skb programs.
    pub fn test_run(&self, ctx: &[u8], data: &[u8], repeat: u32) -> io::Result<TestRun> {
        let too_big = |n: usize| u32::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG));
        let mut opts = bpf::bpf_test_run_opts {
            sz: std::mem::size_of::<bpf::bpf_test_run_opts>() as _,
            ..Default::default()
        };
        if !ctx.is_empty() {
            opts.ctx_in = ctx.as_ptr().cast();
            opts.ctx_size_in = too_big(ctx.len())?;
        }
        if !data.is_empty() {
            opts.data_in = data.as_ptr().cast();
            opts.data_size_in = too_big(data.len())?;
        }
        opts.repeat = c_int::try_from(repeat).map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?;
        // SAFETY: the kernel only reads `ctx_size_in` bytes of `ctx_in` and `data_size_in` bytes of
        // `data_in`, both live slices; data_out and ctx_out are null, so nothing is written back
        // to our memory except the fields of `opts`.
        let rc = unsafe { bpf::bpf_prog_test_run_opts(self.fd.as_raw_fd(), &mut opts) };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(TestRun { retval: opts.retval })
    }
}

/// A created BPF map with the geometry the safety of its accessors depends on.
#[derive(Debug)]
pub struct BpfMap {
    fd: OwnedFd,
    value_size: u32,
    max_entries: u32,
    mmapable: bool,
}

impl BpfMap {
    pub fn value_size(&self) -> usize {
        self.value_size as usize
    }

    fn check_value(&self, key: u32, len: usize) -> io::Result<()> {
        if key >= self.max_entries || len != self.value_size as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(())
    }

    /// Replaces the value at `key` (an array index); `value` must be exactly one value long.
    pub fn update(&self, key: u32, value: &[u8]) -> io::Result<()> {
        self.check_value(key, value.len())?;
        // SAFETY: the kernel reads 4 bytes of key and value_size bytes of value, both checked.
        let rc = unsafe {
            bpf::bpf_map_update_elem(
                self.fd.as_raw_fd(),
                (&key as *const u32).cast(),
                value.as_ptr().cast(),
                bpf::BPF_ANY as u64,
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(())
    }

    /// Copies the value at `key` into `out`, which must be exactly one value long.
    pub fn lookup(&self, key: u32, out: &mut [u8]) -> io::Result<()> {
        self.check_value(key, out.len())?;
        // SAFETY: the kernel writes value_size bytes to `out`, whose length was checked (an array
        // map's value copy is exactly value_size bytes).
        let rc = unsafe {
            bpf::bpf_map_lookup_elem(
                self.fd.as_raw_fd(),
                (&key as *const u32).cast(),
                out.as_mut_ptr().cast::<c_void>(),
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(-rc));
        }
        Ok(())
    }

    /// Maps the values of a `BPF_F_MMAPABLE` array read-only into our address space.
    pub fn mmap_readonly(&self) -> io::Result<MapView> {
        if !self.mmapable {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let len = (self.value_size as usize)
            .checked_mul(self.max_entries as usize)
            .filter(|&n| n > 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        // The kernel checks the length against the array's (page-rounded) size.
        let ptr = map_shared(self.fd.as_fd(), len, libc::PROT_READ, 0)?;
        let ptr = NonNull::new(ptr).ok_or_else(|| io::Error::from_raw_os_error(libc::EFAULT))?;
        Ok(MapView { ptr, len })
    }
}

/// A fresh shared mapping of `len` bytes of a BPF map's fd at byte `offset`, with `prot`: the
/// one way kmemd maps a map (array values, a ring buffer's pages). The kernel checks the length
/// and offset against the map; the result is checked against MAP_FAILED.
fn map_shared(fd: BorrowedFd<'_>, len: usize, prot: c_int, offset: usize) -> io::Result<*mut u8> {
    let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: a new mapping chosen by the kernel (null hint) replaces nothing of ours; the
    // caller owns the result and unmaps it with the same length.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            prot,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            offset,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(ptr.cast())
}

/// A read-only view of an mmap'ed BPF array. The kernel writes it (while a BPF program runs);
/// we only copy out of it, never hand out references into it.
#[derive(Debug)]
pub struct MapView {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is owned by this value alone and has no thread affinity.
unsafe impl Send for MapView {}

impl MapView {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Copies `out.len()` bytes starting at `offset` out of the mapping.
    pub fn copy_out(&self, offset: usize, out: &mut [u8]) -> Result<(), String> {
        offset
            .checked_add(out.len())
            .filter(|&end| end <= self.len)
            .ok_or_else(|| {
                format!(
                    "copy of {} bytes at {offset} exceeds the {}-byte map",
                    out.len(),
                    self.len
                )
            })?;
        // SAFETY: `offset..end` lies inside the live mapping (checked above); `out` is a distinct
        // Rust buffer. Plain bytes have no invalid values; the kernel writes the mapping only
        // during our own (synchronous) test runs, so the copy sees settled data.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), out.as_mut_ptr(), out.len()) };
        Ok(())
    }
}

impl Drop for MapView {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned and the mapping is unmapped once.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// A BPF ring buffer map read from user space (kernel/bpf/ringbuf.c): one read-write page with
/// the consumer position, then, read-only, the producer page and the data area. Records start
/// with an 8-byte header: a u32 length with BUSY (bit 31: still being written) and DISCARD (bit
/// 30) flags, and a page offset.
///
/// The kernel offers the data area twice in a row, so that a record that wraps is contiguous,
/// and maps every page of a mapping when it is made (remap_vmalloc_range), so each mapped byte
/// counts in kmemd's RSS. So the data area is mapped a window at a time (RING_WINDOW, or more
/// for a larger record), read-only at the window's offset, which the kernel allows anywhere in
/// the doubled area: kmemd's RSS holds the window, not the whole ring (watch mode's 4 MiB
/// snapshot ring), and a record that wraps is read in place from the second copy. The ring's
/// memory itself is the kernel's, allocated when the map was made.
pub struct RingBufView {
    consumer: *mut u8,
    producer: *mut u8,
    page: usize,
    size: usize,
    /// The mapped window: its start in the doubled data area, its address and length.
    window: Option<(usize, *mut u8, usize)>,
    /// The fd stays open while mapped (poll(2) on it says when records wait).
    fd: OwnedFd,
}

const RINGBUF_BUSY: u32 = 1 << 31;
const RINGBUF_DISCARD: u32 = 1 << 30;
const RINGBUF_HDR: usize = 8;
/// The data window mapped at a time: a few dozen typical snapshot records (1.5-4 KiB), or one
/// of the largest (two 16 KiB stacks).
const RING_WINDOW: usize = 64 << 10;

/// The window to map so that bytes [lo, hi) of the doubled data area (`size` bytes, each copy)
/// are inside it: its page-aligned start and its length, `want` bytes or more when the range
/// needs it, never past the doubled area's end. `lo` < `size` and `hi` - `lo` <= `size`.
fn window_for(size: usize, page: usize, want: usize, lo: usize, hi: usize) -> (usize, usize) {
    let start = lo - lo % page;
    let need = (hi - start).div_ceil(page) * page;
    let len = want.max(need).min(2 * size - start);
    (start, len)
}

impl BpfMap {
    /// Maps a BPF_MAP_TYPE_RINGBUF map, whose `max_entries` is its data size in bytes (a power
    /// of two of pages, which the kernel checked when it created the map): its consumer and
    /// producer pages; the data area is mapped as it is read.
    pub fn ring_buffer(&self) -> io::Result<RingBufView> {
        let page = super::os::page_size();
        let size = self.max_entries as usize;
        if size == 0 || size % page != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let fd = self.fd.try_clone()?;
        // The consumer page is one page at offset 0, mappable read-write; the producer page
        // follows, read-only (the kernel's documented layout).
        let consumer = map_shared(fd.as_fd(), page, libc::PROT_READ | libc::PROT_WRITE, 0)?;
        let producer = match map_shared(fd.as_fd(), page, libc::PROT_READ, page) {
            Ok(p) => p,
            Err(e) => {
                // SAFETY: `consumer` is the live one-page mapping made above.
                unsafe { libc::munmap(consumer.cast(), page) };
                return Err(e);
            }
        };
        Ok(RingBufView {
            consumer,
            producer,
            page,
            size,
            window: None,
            fd,
        })
    }
}

impl RingBufView {
    fn pos(&self, base: *mut u8) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: both positions are the first, 8-byte aligned word of a live page mapping; the
        // kernel updates them concurrently, hence atomics.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(base.cast::<u64>()) }
    }

    /// The fd to poll(2) for "records are waiting".
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The address of byte `lo` of the doubled data area, with [lo, hi) mapped (see
    /// [`window_for`] for the bounds), mapping another window if the current one does not
    /// hold the range.
    fn data(&mut self, lo: usize, hi: usize) -> io::Result<*const u8> {
        if let Some((start, ptr, len)) = self.window {
            if lo >= start && hi <= start + len {
                // SAFETY: lo - start < len: inside the live window mapping.
                return Ok(unsafe { ptr.add(lo - start) });
            }
            // SAFETY: exactly the live window mapping, dropped here.
            unsafe { libc::munmap(ptr.cast(), len) };
            self.window = None;
        }
        let (start, len) = window_for(self.size, self.page, RING_WINDOW, lo, hi);
        // Read-only at the data area's offset (two pages in) plus `start`, for `len` bytes that
        // end within the doubled area (window_for).
        let ptr = map_shared(self.fd.as_fd(), len, libc::PROT_READ, 2 * self.page + start)?;
        self.window = Some((start, ptr, len));
        // SAFETY: start <= lo < hi <= start + len.
        Ok(unsafe { ptr.add(lo - start) })
    }

    /// Bytes the kernel has written that the consumer has not taken (records and headers), and
    /// the data area's size.
    pub fn fill(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering;
        let cons = self.pos(self.consumer).load(Ordering::Acquire);
        let prod = self.pos(self.producer).load(Ordering::Acquire);
        let used = usize::try_from(prod.saturating_sub(cons)).unwrap_or(usize::MAX);
        (used.min(self.size), self.size)
    }

    /// Hands every complete record waiting, in order, to `f` (at most `max` of them), and gives
    /// their space back to the kernel. Returns how many were handed over, or the error that
    /// stopped it from mapping the data (the records stay in the ring).
    pub fn consume(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        use std::sync::atomic::Ordering;
        let mut cons = self.pos(self.consumer).load(Ordering::Acquire);
        let mut n = 0;
        while n < max {
            let prod = self.pos(self.producer).load(Ordering::Acquire);
            if cons >= prod {
                break;
            }
            let at = (cons % self.size as u64) as usize;
            let hdr_at = self.data(at, at + RINGBUF_HDR)?;
            // SAFETY: the header is 8 mapped, 8-byte aligned bytes (at and the window's start
            // are multiples of 8); the kernel publishes it with a release store of the length
            // word, which we read with acquire.
            let hdr = unsafe {
                std::sync::atomic::AtomicU32::from_ptr(hdr_at.cast::<u32>().cast_mut())
                    .load(Ordering::Acquire)
            };
            if hdr & RINGBUF_BUSY != 0 {
                break;
            }
            let len = (hdr & !(RINGBUF_BUSY | RINGBUF_DISCARD)) as usize;
            if len > self.size - RINGBUF_HDR {
                // Impossible from a sane kernel: a record never exceeds the data area.
                break;
            }
            if hdr & RINGBUF_DISCARD == 0 {
                let body = self.data(at + RINGBUF_HDR, at + RINGBUF_HDR + len)?;
                // SAFETY: [body, body + len) is mapped (data() above), contiguous even when the
                // record wraps (the second copy of the area follows the first), and the kernel
                // no longer writes it until the consumer position passes it (the store below,
                // after `f` returns).
                f(unsafe { std::slice::from_raw_parts(body, len) });
                n += 1;
            }
            cons += ((len + RINGBUF_HDR + 7) & !7) as u64;
            self.pos(self.consumer).store(cons, Ordering::Release);
        }
        Ok(n)
    }
}

impl Drop for RingBufView {
    fn drop(&mut self) {
        // SAFETY: each region is exactly a live mapping made in `ring_buffer` or `data`.
        unsafe {
            if let Some((_, ptr, len)) = self.window {
                libc::munmap(ptr.cast(), len);
            }
            libc::munmap(self.producer.cast(), self.page);
            libc::munmap(self.consumer.cast(), self.page);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_window_holds_the_range_within_the_doubled_area() {
        let (size, page, want) = (1 << 20, 4096, 64 << 10);
        // A header at the start: the usual window.
        assert_eq!(window_for(size, page, want, 0, 8), (0, want));
        // A range inside a page: the window starts at that page.
        assert_eq!(window_for(size, page, want, 5000, 5100), (4096, want));
        // A record larger than the window: the window grows to hold it, whole pages.
        assert_eq!(window_for(size, page, want, 8, 8 + 100_000), (0, 102_400));
        // A record that wraps: read from the second copy, the window ending with the area.
        let lo = size - 16;
        assert_eq!(window_for(size, page, want, lo, lo + 4000), (size - page, want));
        // The last bytes before the doubled area's end: the window is cut there.
        let (start, len) = window_for(size, page, want, size - 8, size - 8 + (size - 8));
        assert_eq!((start, start + len), (size - page, 2 * size));
        // A ring smaller than the window: at most what is left of the doubled area.
        assert_eq!(window_for(8192, page, want, 4100, 4200), (4096, 12288));
    }

    #[test]
    fn zlib_inflates_a_known_stream() {
        // zlib.compress(b"kmemd kmemd kmemd\n") from Python's zlib
        let stream = [
            0x78, 0x9c, 0xcb, 0xce, 0x4d, 0xcd, 0x4d, 0x51, 0xc8, 0x46, 0x90, 0x5c, 0x00, 0x40, 0x6a, 0x06,
            0x75,
        ];
        let mut out = [0u8; 64];
        let n = zlib_uncompress(&stream, &mut out).expect("valid stream");
        assert_eq!(&out[..n], b"kmemd kmemd kmemd\n");
        assert!(zlib_uncompress(&stream[..5], &mut out).is_err());
        assert!(zlib_uncompress(&stream, &mut out[..4]).is_err());
    }
}
