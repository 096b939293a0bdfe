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
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail and has no side effects.
    unsafe { libc::geteuid() == 0 }
}

// ---- signals ----------------------------------------------------------------------------------

// ---- perf (watchpoints) -----------------------------------------------------------------------
