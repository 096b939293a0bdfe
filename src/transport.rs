//! Where GDB's bytes come from: a UNIX socket, TCP, stdin/stdout, or a serial line. Each gives
//! the session a `Read + Write` connection with the descriptors to poll; the server never knows
//! which. Sockets accept many GDBs (non-blocking, so the server's poll loop serves them side by
//! side); stdin/stdout and a serial line are one line, one session at a time.

use crate::sys::os;
use log::{info, warn};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// A parsed `-s` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    Unix(PathBuf),
    /// `:PORT` (loopback) or `HOST:PORT`.
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Stdio,
    Tty(PathBuf),
}

impl ListenSpec {
    pub fn parse(s: &str) -> Result<ListenSpec, String> {
        if s.is_empty() {
            return Err("-s needs a socket path, :PORT, HOST:PORT, - or a tty device".into());
        }
        if s == "-" {
            return Ok(ListenSpec::Stdio);
        }
        if s.starts_with("/dev/") {
            return Ok(ListenSpec::Tty(PathBuf::from(s)));
        }
        if !s.contains('/') {
            if let Some((host, port)) = s.rsplit_once(':') {
                let port: u16 = port
                    .parse()
                    .map_err(|_| format!("-s {s}: '{port}' is not a TCP port (1-65535, or 0 for any)"))?;
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let host = (!host.is_empty()).then(|| host.to_string());
                return Ok(ListenSpec::Tcp { host, port });
            }
        }
        Ok(ListenSpec::Unix(PathBuf::from(s)))
    }
}

/// A connection to one GDB.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    Stdio { input: File, output: File },
    Tty(File),
}

impl Conn {
    /// The descriptor to poll for GDB's bytes.
    pub fn read_fd(&self) -> RawFd {
        match self {
            Conn::Unix(s) => s.as_raw_fd(),
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Stdio { input, .. } => input.as_raw_fd(),
            Conn::Tty(f) => f.as_raw_fd(),
        }
    }

    /// The descriptor to poll before writing to GDB.
    pub fn write_fd(&self) -> RawFd {
        match self {
            Conn::Stdio { output, .. } => output.as_raw_fd(),
            c => c.read_fd(),
        }
    }

    /// Whether reads and writes may block. Sockets are non-blocking: a write takes what fits and
    /// says `WouldBlock` for the rest. stdin/stdout and a serial line keep the blocking mode they
    /// came with (O_NONBLOCK would be shared with whoever else holds them, say a shell's terminal),
    /// so the server touches them only when poll says they are ready, and writes at most
    /// [`BLOCKING_WRITE_MAX`] bytes at a time.
    pub fn blocking(&self) -> bool {
        matches!(self, Conn::Stdio { .. } | Conn::Tty(_))
    }

    /// Ends the sending side, so the peer reads what was sent and then EOF (sockets only).
    pub fn shutdown_write(&self) {
        let _ = match self {
            Conn::Unix(s) => s.shutdown(Shutdown::Write),
            Conn::Tcp(s) => s.shutdown(Shutdown::Write),
            _ => Ok(()),
        };
    }
}

/// Largest write to a blocking descriptor after poll reported it writable: a pipe then has room
/// for at least one page (PIPE_BUF), so such a write does not wait for the reader.
pub const BLOCKING_WRITE_MAX: usize = 4096;

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
            Conn::Stdio { input, .. } => input.read(buf),
            Conn::Tty(f) => f.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
            Conn::Stdio { output, .. } => output.write(buf),
            Conn::Tty(f) => f.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
            Conn::Stdio { output, .. } => output.flush(),
            Conn::Tty(f) => f.flush(),
        }
    }
}

/// A bound listener: sockets accept GDBs as they come; stdio and ttys have one line.
pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// Device and inode of the socket file kmemd created: only that file is removed at the
        /// end, never one that replaced it meanwhile.
        file_id: Option<(u64, u64)>,
    },
    Tcp(TcpListener),
    Stdio(Option<Conn>),
    Tty(Option<Conn>),
}

fn unix_listen(path: &Path) -> Result<Listener, String> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            // A socket file left by an earlier kmemd: replace it, unless one is still serving.
            if UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "{} is in use by a running server: stop it, or pick another path with -s",
                    path.display()
                ));
            }
            fs::remove_file(path).map_err(|e| format!("cannot replace stale socket {}: {e}", path.display()))?;
        }
        Ok(_) => {
            return Err(format!(
                "{} exists and is not a socket: kmemd will not replace it; remove it or pick another path with -s",
                path.display()
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot check {}: {e}", path.display())),
    }
    // 0600 from the moment it exists: the kernel's memory is behind this socket.
    let listener = os::with_umask(0o177, || UnixListener::bind(path)).map_err(|e| {
        let hint = match e.kind() {
            io::ErrorKind::PermissionDenied => " (run as root, or pick a writable path with -s)",
            io::ErrorKind::NotFound => " (does its directory exist?)",
            _ => "",
        };
        format!("cannot listen on {}: {e}{hint}", path.display())
    })?;
    let file_id = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let listener = Listener::Unix {
        listener,
        path: path.to_path_buf(),
        file_id,
    };
    if let Listener::Unix { listener, .. } = &listener {
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make {} non-blocking: {e}", path.display()))?;
    }
    info!("listening on UNIX socket {} (mode 0600)", path.display());
    Ok(listener)
}

fn tcp_listen(host: Option<&str>, port: u16) -> Result<Listener, String> {
    let host_text = host.unwrap_or("127.0.0.1");
    let addrs: Vec<SocketAddr> = (host_text, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{host_text}': {e}"))?
        .collect();
    let listener = TcpListener::bind(&addrs[..]).map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            format!("port {port} on {host_text} is in use: pick another with -s :PORT, or stop what holds it")
        } else {
            format!("cannot listen on {host_text}:{port}: {e}")
        }
    })?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot make the TCP listener non-blocking: {e}"))?;
    if !local.ip().is_loopback() {
        warn!("serving the kernel's memory to the network on {local}: anyone who can connect can read it");
    }
    info!("listening on TCP {local}");
    Ok(Listener::Tcp(listener))
}

fn tty_open(path: &Path, baud: Option<u32>) -> Result<Listener, String> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("cannot open serial line {}: {e}", path.display()))?;
    if !os::is_tty(&file) {
        return Err(format!(
            "{} is not a terminal device; give a serial line such as /dev/ttyS0",
            path.display()
        ));
    }
    os::set_raw_mode(&file, Some(baud.unwrap_or(115200)))
        .map_err(|e| format!("cannot set {} to raw mode: {e}", path.display()))?;
    info!(
        "serving on serial line {} at {} baud",
        path.display(),
        baud.unwrap_or(115200)
    );
    Ok(Listener::Tty(Some(Conn::Tty(file))))
}

impl Listener {
    pub fn bind(spec: &ListenSpec, baud: Option<u32>) -> Result<Listener, String> {
        if baud.is_some() && !matches!(spec, ListenSpec::Tty(_)) {
            warn!("-b only applies to a serial line (-s /dev/tty...); ignored");
        }
        match spec {
            // A path that names a character device (say a symlink to a pty) is a serial line.
            ListenSpec::Unix(p)
                if fs::metadata(p)
                    .map(|m| m.file_type().is_char_device())
                    .unwrap_or(false) =>
            {
                tty_open(p, baud)
            }
            ListenSpec::Unix(p) => unix_listen(p),
            ListenSpec::Tcp { host, port } => tcp_listen(host.as_deref(), *port),
            ListenSpec::Tty(p) => tty_open(p, baud),
            ListenSpec::Stdio => {
                let input = os::dup_std(0).map_err(|e| format!("stdin: {e}"))?;
                let output = os::dup_std(1).map_err(|e| format!("stdout: {e}"))?;
                Ok(Listener::Stdio(Some(Conn::Stdio { input, output })))
            }
        }
    }

    /// Local address of a TCP listener (tests bind port 0).
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().ok(),
            _ => None,
        }
    }

    /// The descriptor to poll for new GDBs; `None` for a line (stdio, tty), which carries one
    /// session at a time and hands out the next with [`Listener::accept`] when one ends.
    pub fn poll_fd(&self) -> Option<RawFd> {
        match self {
            Listener::Unix { listener, .. } => Some(listener.as_raw_fd()),
            Listener::Tcp(l) => Some(l.as_raw_fd()),
            Listener::Stdio(_) | Listener::Tty(_) => None,
        }
    }

    /// The next GDB and where it came from, for log lines ("from 127.0.0.1:4711"). Sockets never block: with nobody
    /// waiting the error is `WouldBlock`. `Ok(None)` means there will be no more (stdio used up).
    pub fn accept(&mut self) -> io::Result<Option<(Conn, String)>> {
        match self {
            Listener::Unix { listener, .. } => {
                let (s, _) = listener.accept()?;
                s.set_nonblocking(true)?;
                Ok(Some((Conn::Unix(s), "on the UNIX socket".into())))
            }
            Listener::Tcp(l) => {
                let (s, peer) = l.accept()?;
                s.set_nonblocking(true)?;
                // Without it every reply waits ~45 ms for Nagle's algorithm.
                s.set_nodelay(true)?;
                Ok(Some((Conn::Tcp(s), format!("from {peer}"))))
            }
            Listener::Stdio(c) => Ok(c.take().map(|c| (c, "on stdin/stdout".into()))),
            Listener::Tty(c) => {
                // The line stays open: hand out a fresh handle to the same device each time.
                match c {
                    Some(Conn::Tty(f)) => Ok(Some((Conn::Tty(f.try_clone()?), "on the serial line".into()))),
                    _ => Ok(None),
                }
            }
        }
    }
}

impl Drop for Listener {
    /// Removes the socket file kmemd created, and only that one: if someone replaced it since
    /// (removed it and bound their own), theirs stays.
    fn drop(&mut self) {
        let Listener::Unix { path, file_id, .. } = self else {
            return;
        };
        match fs::symlink_metadata(&*path) {
            Ok(m) if m.file_type().is_socket() && Some((m.dev(), m.ino())) == *file_id => {
                match fs::remove_file(&*path) {
                    Ok(()) => info!("removed socket file {}", path.display()),
                    Err(e) => warn!("cannot remove socket file {}: {e}", path.display()),
                }
            }
            Ok(_) => warn!(
                "{} is no longer the socket kmemd created: left in place",
                path.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!("cannot check socket file {}: {e}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn specs_parse() {
        assert_eq!(ListenSpec::parse("-"), Ok(ListenSpec::Stdio));
        assert_eq!(
            ListenSpec::parse(":1234"),
            Ok(ListenSpec::Tcp {
                host: None,
                port: 1234
            })
        );
        assert_eq!(
            ListenSpec::parse("0.0.0.0:99"),
            Ok(ListenSpec::Tcp {
                host: Some("0.0.0.0".into()),
                port: 99
            })
        );
        assert_eq!(
            ListenSpec::parse("[::1]:99"),
            Ok(ListenSpec::Tcp {
                host: Some("::1".into()),
                port: 99
            })
        );
        assert_eq!(
            ListenSpec::parse("/tmp/gdb.sock"),
            Ok(ListenSpec::Unix("/tmp/gdb.sock".into()))
        );
        assert_eq!(
            ListenSpec::parse("gdb.sock"),
            Ok(ListenSpec::Unix("gdb.sock".into()))
        );
        assert_eq!(
            ListenSpec::parse("/dev/ttyS0"),
            Ok(ListenSpec::Tty("/dev/ttyS0".into()))
        );
        assert!(ListenSpec::parse(":http").unwrap_err().contains("not a TCP port"));
        assert!(ListenSpec::parse("").is_err());
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("kmemd-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn unix_socket_is_0600_and_replaces_stale_sockets_only() {
        let p = tmp("sock");
        let _ = fs::remove_file(&p);
        {
            let l = Listener::bind(&ListenSpec::Unix(p.clone()), None).unwrap();
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            // While it serves, a second server is refused.
            let e = Listener::bind(&ListenSpec::Unix(p.clone()), None).err().unwrap();
            assert!(e.contains("in use"), "{e}");
            drop(l);
        }
        // A killed kmemd leaves its socket file behind with nobody listening.
        drop(UnixListener::bind(&p).unwrap());
        assert!(fs::symlink_metadata(&p).unwrap().file_type().is_socket());
        let l = Listener::bind(&ListenSpec::Unix(p.clone()), None);
        assert!(l.is_ok(), "stale socket replaced");
        drop(l);
        assert!(!p.exists(), "socket removed when the listener goes");

        fs::write(&p, b"precious").unwrap();
        let e = Listener::bind(&ListenSpec::Unix(p.clone()), None).err().unwrap();
        assert!(e.contains("not a socket"), "{e}");
        assert_eq!(fs::read(&p).unwrap(), b"precious");
        fs::remove_file(&p).unwrap();
    }

    #[test]
    fn only_the_socket_file_kmemd_created_is_removed() {
        let p = tmp("replaced");
        let _ = fs::remove_file(&p);
        let l = Listener::bind(&ListenSpec::Unix(p.clone()), None).unwrap();
        // Someone removes kmemd's socket file and binds their own at the same path.
        fs::remove_file(&p).unwrap();
        let theirs = UnixListener::bind(&p).unwrap();
        drop(l);
        assert!(
            fs::symlink_metadata(&p).unwrap().file_type().is_socket(),
            "the socket that replaced kmemd's stays"
        );
        drop(theirs);
        fs::remove_file(&p).unwrap();
    }

    #[test]
    fn tcp_binds_loopback_by_default_and_reports_address_in_use() {
        let l = Listener::bind(&ListenSpec::Tcp { host: None, port: 0 }, None).unwrap();
        let addr = l.tcp_addr().unwrap();
        assert!(addr.ip().is_loopback());
        let e = Listener::bind(
            &ListenSpec::Tcp {
                host: None,
                port: addr.port(),
            },
            None,
        )
        .err()
        .unwrap();
        assert!(e.contains("in use"), "{e}");
    }

    #[test]
    fn tty_refuses_non_terminals() {
        let e = Listener::bind(&ListenSpec::Tty("/dev/null".into()), None)
            .err()
            .unwrap();
        assert!(e.contains("not a terminal"), "{e}");
    }
}
