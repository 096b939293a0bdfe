//! Raw syscalls kmemd makes itself: terminal modes for serial lines, file descriptors for stdio
//! sessions, signals, and (for watchpoints) perf_event_open with its mmap ring.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// ---- tty --------------------------------------------------------------------------------------

fn baud_constant(baud: u32) -> Option<libc::speed_t> {
    Some(match baud {
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        500000 => libc::B500000,
        576000 => libc::B576000,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        1500000 => libc::B1500000,
        2000000 => libc::B2000000,
        3000000 => libc::B3000000,
        4000000 => libc::B4000000,
        _ => return None,
    })
}

/// The baud rates `set_raw_mode` accepts, for error messages.
pub const BAUD_RATES: &str =
    "9600 19200 38400 57600 115200 230400 460800 500000 576000 921600 1000000 1500000 2000000 3000000 4000000";

/// Puts a terminal in raw 8N1 mode (no echo, no line editing, no CR/LF translation, reads return
/// as soon as one byte is there) and sets its speed when `baud` is given.
pub fn set_raw_mode(tty: &File, baud: Option<u32>) -> io::Result<()> {
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain old data; zeroed is a valid bit pattern and tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is an open descriptor owned by `tty` for the duration of the call; `t` is a
    // valid, writable termios.
    if unsafe { libc::tcgetattr(fd, &mut t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: cfmakeraw only modifies the struct it is given.
    unsafe { libc::cfmakeraw(&mut t) };
    t.c_cflag |= libc::CLOCAL | libc::CREAD;
    t.c_cflag &= !(libc::CRTSCTS | libc::CSTOPB | libc::PARENB);
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    if let Some(b) = baud {
        let speed = baud_constant(b).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unsupported baud rate {b}; use one of {BAUD_RATES}"),
            )
        })?;
        // SAFETY: `t` is a valid termios; these only write its speed fields.
        unsafe {
            libc::cfsetispeed(&mut t, speed);
            libc::cfsetospeed(&mut t, speed);
        }
    }
    // SAFETY: fd is open; `t` is a fully initialised termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `f` is a terminal.
pub fn is_tty(f: &File) -> bool {
    // SAFETY: isatty only inspects the descriptor, which `f` keeps open.
    unsafe { libc::isatty(f.as_raw_fd()) == 1 }
}

// ---- file descriptors -------------------------------------------------------------------------

/// Duplicates a standard descriptor (0 or 1) into an owned `File`, so RSP bytes go out unbuffered
/// by the raw fd, never through Rust's line-buffered `Stdout`.
pub fn dup_std(fd: i32) -> io::Result<File> {
    // SAFETY: dup has no memory effects; a negative result is checked before use.
    let new = unsafe { libc::dup(fd) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` is a fresh descriptor nobody else owns.
    Ok(File::from(unsafe { OwnedFd::from_raw_fd(new) }))
}

/// Points fd 2 at `target`, so that later log lines go there. Used once a stdio session starts:
/// GDB polls a stub's stderr pipe for every byte it receives, which costs 20x in throughput.
pub fn redirect_stderr(target: &File) -> io::Result<()> {
    // SAFETY: both descriptors are open (target is borrowed for the call); dup2 atomically
    // replaces fd 2 and has no memory effects.
    if unsafe { libc::dup2(target.as_raw_fd(), 2) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The type of the filesystem holding `f`: statfs's `f_type`, a magic number from
/// include/uapi/linux/magic.h (e.g. 0x9fa0 for /proc). Lets callers tell a kernel pseudo-file,
/// whose size says nothing of its contents, from an empty file.
pub fn fs_magic(f: &File) -> io::Result<u64> {
    // SAFETY: statfs is plain old data; zeroed is a valid bit pattern and fstatfs fills it.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open (`f` is borrowed for the call); `st` is a valid, writable
    // statfs.
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // f_type is signed on glibc x86_64 and unsigned elsewhere; the magic numbers are 32-bit.
    #[allow(clippy::unnecessary_cast)]
    Ok(st.f_type as u64 & 0xffff_ffff)
}

/// Runs `f` with the process umask set to `mask`, restoring it afterwards. Used to create the
/// UNIX socket with mode 0600 from the start, with no window where it is wider.
pub fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    // SAFETY: umask only swaps a process-wide integer; kmemd is single-threaded while it binds.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let r = f();
    // SAFETY: as above, restoring the previous value.
    unsafe { libc::umask(old) };
    r
}

/// Whether the effective user is root.
/// This process's peak resident set (`VmHWM` of /proc/self/status, KiB), `None` without procfs.
/// `kmemd -v` logs it at exit, so a test can bound what a short-lived kmemd peaked at (issue 16).
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// True when bpf(2) does not exist here (ENOSYS): qemu-user, or a kernel built without
/// CONFIG_BPF_SYSCALL. Any other answer (EINVAL, EPERM, ...) means the syscall exists.
pub fn bpf_syscall_missing() -> bool {
    // SAFETY: an invalid command with a NULL attr of size 0: the kernel reads no memory and
    // answers EINVAL (or EPERM) without doing anything.
    let r = unsafe { libc::syscall(libc::SYS_bpf, 0xffff_i64, std::ptr::null::<u8>(), 0_i64) };
    r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
}

/// Same for perf_event_open(2).
pub fn perf_event_open_missing() -> bool {
    // SAFETY: a NULL attr: the kernel fails copying it (EFAULT) before doing anything.
    let r = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            std::ptr::null::<u8>(),
            0_i64,
            -1_i64,
            -1_i64,
            0_i64,
        )
    };
    r == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)
}

// ---- signals ----------------------------------------------------------------------------------

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// Set by the stop-signal handler; polled by long-running loops (watch mode, the server).
static STOP_REQUESTED: AtomicBool = AtomicBool::new(false);
/// The signal that set it (0: none yet), so the loop can log why it stops.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Write end of the self-pipe the handler pokes so a blocked `poll` wakes at once.
static STOP_PIPE_WR: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(sig: libc::c_int) {
    STOP_SIGNAL.store(sig, Ordering::SeqCst);
    STOP_REQUESTED.store(true, Ordering::SeqCst);
    let fd = STOP_PIPE_WR.load(Ordering::SeqCst);
    if fd >= 0 {
        let b = 1u8;
        // SAFETY: write(2) is async-signal-safe; `b` lives for the call; a full pipe (EAGAIN,
        // the fd is non-blocking) is fine since one byte already wakes the reader.
        unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
    }
}

/// Runs `f` with every blockable signal blocked in the calling thread, then restores the mask.
/// A signal that arrives meanwhile stays pending and is delivered afterwards, so a syscall that
/// gives up with EINTR after an unknowable amount of work (BPF_PROG_TEST_RUN with `repeat`) runs
/// to the end instead.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sigset_t is plain data that sigfillset initialises fully; pthread_sigmask only
    // swaps this thread's mask, and `old` receives the previous one for the restore below.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    let blocked = unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old) == 0
    };
    let r = f();
    if blocked {
        // SAFETY: restores the mask saved above in the same thread.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    }
    r
}

/// Catches SIGINT and SIGTERM (watch mode): they set a flag (`stop_requested`) and make the
/// returned fd readable, so a loop blocked in `poll` on it wakes immediately. Returns the pipe's
/// read end.
pub fn install_stop_signals() -> Result<OwnedFd, String> {
    install_signals(&[libc::SIGINT, libc::SIGTERM])
}

/// Like `install_stop_signals`, and SIGHUP too (serve mode: a server whose terminal or ssh
/// session went away ends cleanly rather than dying with its socket file left behind).
pub fn install_shutdown_signals() -> Result<OwnedFd, String> {
    install_signals(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])
}

fn install_signals(signals: &[libc::c_int]) -> Result<OwnedFd, String> {
    let mut fds = [-1i32; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
    if rc != 0 {
        return Err(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else. The write end is
    // kept open for the life of the process (the handler may run at any time).
    let rd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    STOP_PIPE_WR.store(fds[1], Ordering::SeqCst);
    STOP_REQUESTED.store(false, Ordering::SeqCst);
    STOP_SIGNAL.store(0, Ordering::SeqCst);
    for &sig in signals {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler is an extern "C" fn
        // that only touches atomics and calls write(2). No SA_RESTART: poll returns EINTR.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(format!(
                "cannot catch signal {}: {}",
                signal_name(sig),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(rd)
}

/// Whether a stop signal arrived since the handlers were installed.
pub fn stop_requested() -> bool {
    STOP_REQUESTED.load(Ordering::SeqCst)
}

/// The stop signal that arrived last, if any.
pub fn stop_signal() -> Option<i32> {
    Some(STOP_SIGNAL.load(Ordering::SeqCst)).filter(|&s| s != 0)
}

/// The usual name of a signal number, for log lines.
pub fn signal_name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes. Returns which fds are readable
/// (or hung up); an interrupted wait (EINTR) returns all false.
pub fn poll_readable(fds: &[i32], timeout_ms: i32) -> Result<Vec<bool>, String> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a live, correctly sized array of pollfd for the duration of the call.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(vec![false; fds.len()]);
        }
        return Err(format!("poll failed: {e}"));
    }
    Ok(pfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
        .collect())
}

/// Readiness bits for [`poll`].
pub use libc::{POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};

/// One entry of a [`poll`] set: `fd`, the `events` to wait for, and the `revents` that happened.
pub type PollFd = libc::pollfd;

/// An entry waiting for `events` (`POLLIN`, `POLLOUT`) on `fd`.
pub fn poll_fd(fd: i32, events: i16) -> PollFd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// Waits until an entry of `fds` is ready or `timeout` passes (`None`: no limit), filling in
/// each entry's `revents`; returns how many entries have any. A signal ends the wait early and
/// returns `Ok(0)` with no `revents`, so the caller looks at its stop flag.
pub fn poll(fds: &mut [PollFd], timeout: Option<std::time::Duration>) -> io::Result<usize> {
    for p in fds.iter_mut() {
        p.revents = 0;
    }
    // Rounded up, so a wait for a deadline does not wake just before it and spin.
    let ms = match timeout {
        None => -1,
        Some(t) => i32::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX),
    };
    // SAFETY: `fds` is a live, correctly sized array of pollfd for the duration of the call.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            for p in fds.iter_mut() {
                p.revents = 0;
            }
            return Ok(0);
        }
        return Err(e);
    }
    Ok(rc as usize)
}

/// Empties the non-blocking stop pipe (after a wake-up).
pub fn drain_fd(fd: i32) {
    let mut buf = [0u8; 64];
    loop {
        // SAFETY: `buf` is a live buffer of the length passed.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
}

// ---- perf (watchpoints) -----------------------------------------------------------------------

/// `struct perf_event_attr` up to `sig_data` (PERF_ATTR_SIZE_VER7, 128 bytes, Linux 5.13+;
/// layout from include/uapi/linux/perf_event.h). Older kernels reject a size they do not know
/// with E2BIG only when a field past their size is non-zero, so unused fields stay zero.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// The bitfield word: disabled, inherit, ..., see the `ATTR_FLAG_*` constants.
    pub flags: u64,
    /// Union with wakeup_watermark (bytes) when `ATTR_FLAG_WATERMARK` is set.
    pub wakeup_events: u32,
    pub bp_type: u32,
    pub bp_addr: u64,
    pub bp_len: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub reserved_2: u16,
    pub aux_sample_size: u32,
    pub reserved_3: u32,
    pub sig_data: u64,
}

pub const PERF_ATTR_SIZE_VER7: u32 = 128;
const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == PERF_ATTR_SIZE_VER7 as usize);

pub const PERF_TYPE_BREAKPOINT: u32 = 5;
// Bit positions in perf_event_attr's flag word (include/uapi/linux/perf_event.h).
pub const ATTR_FLAG_DISABLED: u64 = 1 << 0;
pub const ATTR_FLAG_EXCLUDE_KERNEL: u64 = 1 << 5;
pub const ATTR_FLAG_WATERMARK: u64 = 1 << 14;
pub const ATTR_FLAG_SAMPLE_ID_ALL: u64 = 1 << 18;
pub const ATTR_FLAG_EXCLUDE_CALLCHAIN_USER: u64 = 1 << 22;
pub const ATTR_FLAG_USE_CLOCKID: u64 = 1 << 25;

// Generic ioctl encoding, identical on x86_64 and arm64: _IO('$', n) and _IOR('$', 7, u64).
/// perf_event_open flag: close the event fd on exec.
const PERF_FLAG_FD_CLOEXEC: libc::c_long = 1 << 3;
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;
const PERF_EVENT_IOC_ID: libc::c_ulong = 0x8008_2407;
/// _IOW('$', 8, __u32): attach a BPF program (BPF_PROG_TYPE_PERF_EVENT) to the event.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// perf_event_open(2). Errors are the raw errno, which the caller turns into a sentence.
pub fn perf_event_open(attr: &PerfEventAttr, pid: i32, cpu: i32) -> Result<OwnedFd, i32> {
    let mut a = *attr;
    a.size = PERF_ATTR_SIZE_VER7;
    // SAFETY: `a` is a fully initialised perf_event_attr of the size we declare; the kernel only
    // reads it (and may write back `size` on E2BIG, which `a` has room for).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &mut a as *mut PerfEventAttr,
            pid as libc::c_long,
            cpu as libc::c_long,
            -1 as libc::c_long,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    // SAFETY: the syscall returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) })
}

fn perf_ioctl(fd: &OwnedFd, req: libc::c_ulong, arg: libc::c_ulong) -> Result<(), i32> {
    // SAFETY: `fd` is an open perf event fd; these requests take an integer argument.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(())
}

pub fn perf_enable(fd: &OwnedFd) -> Result<(), i32> {
    perf_ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
}

pub fn perf_disable(fd: &OwnedFd) -> Result<(), i32> {
    perf_ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
}

/// PERF_FORMAT_LOST (Linux 6.0+): read() also returns the samples the event lost.
pub const PERF_FORMAT_LOST: u64 = 1 << 4;

/// read(2) of an event opened with read_format PERF_FORMAT_LOST: (traps counted, samples lost).
pub fn perf_read_count(fd: &OwnedFd) -> Result<(u64, u64), i32> {
    let mut v = [0u64; 2];
    // SAFETY: `v` is a live 16-byte buffer; the kernel writes at most that many bytes.
    let n = unsafe { libc::read(fd.as_raw_fd(), v.as_mut_ptr().cast(), 16) };
    if n != 16 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok((v[0], v[1]))
}

/// Sends `fd`'s records into `target`'s ring (same CPU), so one ring serves all watchpoints of
/// a CPU.
pub fn perf_set_output(fd: &OwnedFd, target: &OwnedFd) -> Result<(), i32> {
    perf_ioctl(fd, PERF_EVENT_IOC_SET_OUTPUT, target.as_raw_fd() as libc::c_ulong)
}

/// Runs `prog` (a perf_event BPF program's fd) at every overflow of `fd` (Linux 4.9+).
pub fn perf_set_bpf(fd: &OwnedFd, prog: std::os::fd::BorrowedFd<'_>) -> Result<(), i32> {
    perf_ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog.as_raw_fd() as libc::c_ulong)
}

/// The event's id, as found in PERF_SAMPLE_IDENTIFIER.
pub fn perf_event_id(fd: &OwnedFd) -> Result<u64, i32> {
    let mut id = 0u64;
    // SAFETY: PERF_EVENT_IOC_ID writes one u64 through the pointer, which points at `id`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ID as _, &mut id as *mut u64) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO));
    }
    Ok(id)
}

/// The mmap'd ring of one perf event: a metadata page then `2^n` data pages, which the kernel
/// fills between `data_tail` (ours) and `data_head` (its).
pub struct PerfRing {
    base: *mut u8,
    map_len: usize,
    data_off: usize,
    data_size: usize,
    /// Whether read pages are given back (see `release_read`); cleared when the kernel refuses.
    release: bool,
}

// Offsets in struct perf_event_mmap_page (include/uapi/linux/perf_event.h, stable since 3.x).
const MMAP_DATA_HEAD: usize = 1024;
const MMAP_DATA_TAIL: usize = 1032;
const MMAP_DATA_OFFSET: usize = 1040;
const MMAP_DATA_SIZE: usize = 1048;

pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if v > 0 {
        v as usize
    } else {
        4096
    }
}

impl PerfRing {
    /// Maps `data_pages` (a power of two) data pages of `fd`'s ring, read-write so that we can
    /// publish `data_tail` and the kernel never overwrites unread records (it counts them lost).
    pub fn map(fd: &OwnedFd, data_pages: usize) -> Result<PerfRing, i32> {
        let page = page_size();
        let map_len = (data_pages + 1) * page;
        // SAFETY: mapping a perf fd with a length of 1 + 2^n pages is the documented interface;
        // the result is checked against MAP_FAILED.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO));
        }
        let base = base.cast::<u8>();
        let mut ring = PerfRing {
            base,
            map_len,
            data_off: page,
            data_size: data_pages * page,
            release: true,
        };
        // Kernels since 4.1 say where the data is; trust them when the values fit the mapping.
        let (off, size) = (ring.load_u64(MMAP_DATA_OFFSET), ring.load_u64(MMAP_DATA_SIZE));
        if off != 0 && size != 0 && off.checked_add(size).is_some_and(|e| e as usize <= map_len) {
            ring.data_off = off as usize;
            ring.data_size = size as usize;
        }
        Ok(ring)
    }

    fn atomic(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: `off` is one of the 8-byte aligned header fields inside the first page of a
        // live mapping; the kernel accesses these words concurrently, hence atomics.
        unsafe { std::sync::atomic::AtomicU64::from_ptr(self.base.add(off).cast::<u64>()) }
    }

    fn load_u64(&self, off: usize) -> u64 {
        self.atomic(off).load(Ordering::Acquire)
    }

    pub fn data_size(&self) -> usize {
        self.data_size
    }

    /// Appends every unread byte to `out` (whole records: the kernel only publishes `data_head`
    /// at record boundaries) and hands the space back to the kernel. Returns the byte count.
    pub fn take(&mut self, out: &mut Vec<u8>) -> usize {
        self.take_max(out, usize::MAX).0
    }

    /// Like `take`, but stops at the last whole record that keeps the copy within `max` bytes
    /// (at least one record is taken, whatever its size): the rest stays in the ring, which is
    /// where unread hits cost no heap. Returns the bytes taken and whether more are waiting.
    pub fn take_max(&mut self, out: &mut Vec<u8>, max: usize) -> (usize, bool) {
        let head = self.load_u64(MMAP_DATA_HEAD);
        let tail = self.atomic(MMAP_DATA_TAIL).load(Ordering::Relaxed);
        let size = self.data_size as u64;
        let avail = head.wrapping_sub(tail).min(size) as usize;
        let mut n = 0usize;
        if avail <= max {
            n = avail;
        } else {
            while n < avail {
                let at = (tail.wrapping_add(n as u64) % size) as usize;
                // perf_event_header.size (u16 at offset 6). Records are 8-byte aligned and the
                // data area a multiple of 8 bytes, so a header never wraps.
                let Some(rec) = self.header_size(at) else {
                    n = avail; // a corrupt header: hand it all to the parser, which stops there
                    break;
                };
                if n > 0 && n + rec > max {
                    break;
                }
                n = (n + rec).min(avail);
            }
        }
        let start = (tail % size) as usize;
        let first = n.min(self.data_size - start);
        out.reserve(n);
        // SAFETY: [data_off + start, + first) and [data_off, + n - first) lie inside the data
        // area of the live mapping (n <= avail <= data_size); the kernel does not write between
        // tail and head until we move tail, which happens after the copy (Release store below).
        unsafe {
            let data = self.base.add(self.data_off);
            out.extend_from_slice(std::slice::from_raw_parts(data.add(start), first));
            out.extend_from_slice(std::slice::from_raw_parts(data, n - first));
        }
        self.atomic(MMAP_DATA_TAIL)
            .store(tail.wrapping_add(n as u64), Ordering::Release);
        self.release_read(tail, n);
        (n, n < avail)
    }

    /// Unmaps from this process the data pages that a take of `n` bytes from `tail` finished
    /// reading.
    /// Kernels before 6.14 or so map a perf ring page by page as it is first read and count each
    /// page in the reader's RSS, so a burst that wraps the ring once made all of it resident
    /// (4 MiB per CPU in the lab's 6.1 guests); MADV_DONTNEED drops the pages from our page
    /// tables only (the kernel keeps writing its own), and a later read maps them again. Newer
    /// kernels map the ring up front as PFNs, counted nowhere, and refuse with EINVAL: then this
    /// stops trying.
    fn release_read(&mut self, tail: u64, n: usize) {
        let page = page_size();
        if !self.release || n == 0 || self.data_off % page != 0 || self.data_size % page != 0 {
            return;
        }
        let size = self.data_size as u64;
        let start = (tail % size) as usize;
        let first = n.min(self.data_size - start);
        for (from, len) in [(start, first), (0, n - first)] {
            // The page holding `from` was read up to it by earlier takes: it counts as read
            // once this take passes its end.
            let lo = from / page * page;
            let hi = (from + len) / page * page;
            if lo >= hi {
                continue;
            }
            // SAFETY: [data_off + lo, data_off + hi) is page-aligned and inside the live
            // mapping's data area (hi <= data_size); nothing borrows it (take copies out), and
            // dropping the pages from our page tables changes no data: a later read faults the
            // kernel's pages back in.
            let rc = unsafe {
                libc::madvise(
                    self.base.add(self.data_off + lo).cast(),
                    hi - lo,
                    libc::MADV_DONTNEED,
                )
            };
            if rc != 0 {
                self.release = false;
                return;
            }
        }
    }

    /// The size field of the record header at data offset `at`, when it is a plausible size.
    fn header_size(&self, at: usize) -> Option<usize> {
        if at % 8 != 0 || at.checked_add(8)? > self.data_size {
            return None;
        }
        let mut h = [0u8; 2];
        // SAFETY: bytes [at + 6, at + 8) lie inside the data area (checked above) and were
        // published by the kernel before data_head (read with Acquire by the caller).
        unsafe {
            std::ptr::copy_nonoverlapping(self.base.add(self.data_off + at + 6), h.as_mut_ptr(), 2);
        }
        let rec = u16::from_ne_bytes(h) as usize;
        (rec >= 8).then_some(rec)
    }
}

impl Drop for PerfRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` are exactly what mmap returned; nothing borrows the mapping
        // past `take`, which copies out.
        unsafe { libc::munmap(self.base.cast(), self.map_len) };
    }
}

/// Reads CLOCK_MONOTONIC and CLOCK_REALTIME together, in nanoseconds, to turn perf
/// timestamps (taken with clockid CLOCK_MONOTONIC) into wall-clock times.
pub fn clocks_ns() -> (u64, u64) {
    let read = |id| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
        unsafe { libc::clock_gettime(id, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    };
    (read(libc::CLOCK_MONOTONIC), read(libc::CLOCK_REALTIME))
}

/// This process's user and system CPU time and peak RSS (for the summary and the bench).
pub fn self_usage() -> (f64, f64, u64) {
    // SAFETY: a zeroed rusage is valid for getrusage to fill.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    (t(ru.ru_utime), t(ru.ru_stime), ru.ru_maxrss as u64 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ring laid out like perf's (header page, then data) over anonymous memory, so the
    /// record-boundary logic of `take_max` can be tested without the kernel.
    fn fake_ring(data_size: usize) -> PerfRing {
        let page = page_size();
        let map_len = page + data_size;
        // SAFETY: a fresh private anonymous mapping, checked against MAP_FAILED; PerfRing's Drop
        // unmaps exactly this range.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        PerfRing {
            base: base.cast(),
            map_len,
            data_off: page,
            data_size,
            release: true,
        }
    }

    /// Appends a record of `size` bytes (type = size, body bytes = `fill`) at the ring's head.
    fn push(r: &mut PerfRing, size: u16, fill: u8) {
        let head = r.load_u64(MMAP_DATA_HEAD);
        let mut rec = vec![fill; size as usize];
        rec[..4].copy_from_slice(&u32::from(size).to_ne_bytes());
        rec[4..6].copy_from_slice(&0u16.to_ne_bytes());
        rec[6..8].copy_from_slice(&size.to_ne_bytes());
        for (i, b) in rec.iter().enumerate() {
            let at = (head as usize + i) % r.data_size;
            // SAFETY: `at` is inside the data area of the live test mapping.
            unsafe { *r.base.add(r.data_off + at) = *b };
        }
        r.atomic(MMAP_DATA_HEAD)
            .store(head + u64::from(size), Ordering::Release);
    }

    fn sizes(buf: &[u8]) -> Vec<u16> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos + 8 <= buf.len() {
            let size = u16::from_ne_bytes([buf[pos + 6], buf[pos + 7]]);
            assert!(buf[pos + 8..pos + size as usize].iter().all(|&b| b == size as u8));
            out.push(size);
            pos += size as usize;
        }
        assert_eq!(pos, buf.len(), "whole records only");
        out
    }

    #[test]
    fn take_max_stops_on_record_boundaries_and_wraps() {
        let mut r = fake_ring(256);
        for s in [64, 40, 96] {
            push(&mut r, s, s as u8);
        }
        let mut out = Vec::new();
        // 64 + 40 fit in 110, the 96-byte record does not.
        assert_eq!(r.take_max(&mut out, 110), (104, true));
        assert_eq!(sizes(&out), vec![64, 40]);
        // A record larger than the limit still goes out alone (no livelock).
        out.clear();
        assert_eq!(r.take_max(&mut out, 8), (96, false));
        assert_eq!(sizes(&out), vec![96]);
        // Records that wrap around the end of the data area come out whole and in order.
        for s in [120, 72, 48] {
            push(&mut r, s, s as u8);
        }
        out.clear();
        assert_eq!(r.take_max(&mut out, 200), (192, true));
        assert_eq!(sizes(&out), vec![120, 72]);
        out.clear();
        assert_eq!(r.take(&mut out), 48);
        assert_eq!(sizes(&out), vec![48]);
        out.clear();
        assert_eq!(r.take_max(&mut out, 1 << 20), (0, false));
        assert_eq!(
            r.atomic(MMAP_DATA_TAIL).load(Ordering::Relaxed),
            64 + 40 + 96 + 120 + 72 + 48
        );
    }

    /// Which data pages hold only zeros: the test ring is anonymous memory, where
    /// MADV_DONTNEED gives zero pages back, so these are the pages `release_read` dropped.
    fn zeroed_pages(r: &PerfRing) -> Vec<usize> {
        let page = page_size();
        (0..r.data_size / page)
            .filter(|p| {
                // SAFETY: page p lies inside the data area of the live test mapping.
                let bytes = unsafe { std::slice::from_raw_parts(r.base.add(r.data_off + p * page), page) };
                bytes.iter().all(|&b| b == 0)
            })
            .collect()
    }

    #[test]
    fn pages_wholly_read_are_given_back_and_the_rest_kept() {
        let page = page_size();
        let mut r = fake_ring(4 * page);
        // Records of 2,040 bytes (sizes() wants the fill byte to be the size's low byte, so not
        // a power of two), about two a page.
        let rec = 2040u16;
        let mut out = Vec::new();
        // 14,280 bytes in one take: pages 0..3 are wholly read, page 3 in part.
        for _ in 0..7 {
            push(&mut r, rec, rec as u8);
        }
        assert_eq!(r.take(&mut out), 7 * rec as usize);
        assert_eq!(sizes(&out), vec![rec; 7]);
        assert_eq!(zeroed_pages(&r), vec![0, 1, 2]);
        // Three more wrap: the rest of page 3, then page 0 in part. Page 3 is now read.
        for _ in 0..3 {
            push(&mut r, rec, rec as u8);
        }
        out.clear();
        assert_eq!(r.take(&mut out), 3 * rec as usize);
        assert_eq!(sizes(&out), vec![rec; 3]);
        assert_eq!(zeroed_pages(&r), vec![1, 2, 3], "page 0 is read in part");
        // A take that ends inside the page it started in gives nothing back.
        push(&mut r, 64, 64);
        out.clear();
        assert_eq!(r.take(&mut out), 64);
        assert_eq!(zeroed_pages(&r), vec![1, 2, 3]);
    }

    #[test]
    fn take_max_hands_a_corrupt_header_to_the_parser() {
        let mut r = fake_ring(256);
        push(&mut r, 32, 1);
        // A zero-size header after it: never loop on it.
        r.atomic(MMAP_DATA_HEAD).store(32 + 64, Ordering::Release);
        let mut out = Vec::new();
        assert_eq!(r.take_max(&mut out, 40), (96, false));
    }
}
