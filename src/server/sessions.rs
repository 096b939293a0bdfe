//! Several GDB sessions served side by side, by one thread waiting in poll(2) on everything at
//! once: the stop-signal pipe, the listener and every connection, each with an explicit deadline.
//!
//! Why one thread owns the target rather than a thread per session around an
//! `Arc<Mutex<target>>`: every target call needs the whole target anyway (one BPF result buffer,
//! one dump page cache), so a mutex would serialise the same calls this loop makes in turn, and
//! the target would have to be `Send` (libbpf's handles and the dump's `RefCell` cache are not
//! meant to cross threads). What must not be serialised is waiting on sockets, and here nothing
//! waits on one: sockets are non-blocking, a session reads only when poll says bytes are there,
//! and a reply GDB does not take stays in that session's buffer while the others go on. A target
//! call is short (at most one `MAX_READ` read, or a task walk); the slow one-time work is done by
//! `Target::prepare` before the first GDB connects.
//!
//! Each pass builds the poll set afresh from what each party waits for, so a session that waits
//! on more than its GDB (perf rings while GDB is "running", issue #15) adds its descriptors and a
//! token that routes their readiness back to it.
//!
//! Limits, all per session: at most [`MAX_SESSIONS`] at once (the next GDB gets an `E.` reply it
//! prints, and a log line); half a packet that sees no byte for [`STALL_TIMEOUT`] ends its session,
//! and so does a reply that GDB takes no byte of for as long. A GDB idle between packets (at its
//! prompt, or after `continue`) is never cut off.

use super::{Scratch, Session, SessionEnd};
use crate::rsp::framing::{self, Decoder, Event};
use crate::sys::os::{self, PollFd, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT};
use crate::target::{PointsFactory, Target};
use crate::transport::{Conn, Listener, BLOCKING_WRITE_MAX};
use log::{debug, info, warn};
use std::io::{self, Read, Write};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

/// Sessions served at once on a socket. The kernel is only read, so sessions do not interfere;
/// the bound keeps memory and the share of the target each gets predictable.
pub const MAX_SESSIONS: usize = 8;

/// How long half a packet may wait for its next byte, and a reply for GDB to take a byte of it.
pub const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a GDB beyond [`MAX_SESSIONS`] is told, as an `E.` reply to its first packet. GDB 13 prints
/// "warning: Remote failure reply: E.kmemd is serving ...", GDB 18 the same without the `E.`,
/// then both "Remote connection closed".
pub const TOO_MANY_SESSIONS: &str =
    "kmemd is serving 8 GDB sessions, the most it serves at once: try again when one ends";

/// How long a refused client has to send its first packet (to get the reply) and then to hang up.
const REFUSAL_WAIT: Duration = Duration::from_secs(5);

/// Refused clients waited on at once; more are told at once, without waiting for their packet.
const MAX_REFUSING: usize = 8;

/// While a GDB waits on hits, rings are also looked at this often: where a hit does not wake the
/// reader (arm64, `Arch::wake_per_breakpoint_sample`), this bounds how late its stop comes.
const HIT_CHECK: Duration = Duration::from_millis(20);

/// After a failed accept (say EMFILE), the listener rests this long rather than spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A stop signal arrived (its number).
    Signal(i32),
    /// stdin/stdout carried its one session.
    NoMoreClients,
}

struct Client {
    conn: Conn,
    session: Session,
    /// Bytes read from GDB that the session has not taken yet (its output had to go first).
    unread: Vec<u8>,
    /// GDB closed its sending side.
    eof: bool,
    /// When GDB's last byte came, or kmemd last began to wait for one.
    last_in: Instant,
    /// Since when output has waited without a byte of it being taken.
    out_waiting: Option<Instant>,
    end: Option<SessionEnd>,
}

/// A client beyond the limit: waited on until its first packet, answered with an error, then
/// given a moment to hang up (closing first would reset the connection under GDB's reply).
struct Refusal {
    conn: Conn,
    decoder: Decoder,
    replied: bool,
    deadline: Instant,
}

#[derive(Clone, Copy)]
enum Token {
    Stop,
    Listener,
    Read(usize),
    Write(usize),
    Refusal(usize),
    Hits,
}

struct Server<'a> {
    target: &'a mut dyn Target,
    listener: &'a mut Listener,
    scratch: Scratch,
    buf: Vec<u8>,
    clients: Vec<Client>,
    refusals: Vec<Refusal>,
    next_id: u64,
    accept_paused_until: Option<Instant>,
    points: &'a PointsFactory,
}

/// Serves GDBs from `listener` until a stop signal makes `stop_fd` readable (see
/// `os::install_shutdown_signals`) or stdin/stdout's one session ends. Each session's
/// breakpoints and watchpoints come from `points`.
pub fn run(
    target: &mut dyn Target,
    listener: &mut Listener,
    stop_fd: RawFd,
    points: &PointsFactory,
) -> Result<Stopped, String> {
    let mut server = Server {
        target,
        listener,
        scratch: Scratch::default(),
        buf: vec![0u8; 64 * 1024],
        clients: Vec::new(),
        refusals: Vec::new(),
        next_id: 1,
        accept_paused_until: None,
        points,
    };
    loop {
        if let Some(sig) = server.stop_signal() {
            return Ok(server.shut_down(sig));
        }
        // A line (stdin/stdout, a serial line) carries one session at a time.
        if server.listener.poll_fd().is_none() && server.clients.is_empty() {
            match server.listener.accept() {
                Ok(Some((conn, peer))) => server.admit(conn, peer),
                Ok(None) => return Ok(Stopped::NoMoreClients),
                Err(e) => return Err(format!("cannot start a session: {e}")),
            }
        }

        let now = Instant::now();
        let (mut fds, tokens) = server.poll_set(stop_fd, now);
        let timeout = server.next_deadline().map(|d| d.saturating_duration_since(now));
        os::poll(&mut fds, timeout).map_err(|e| format!("poll failed: {e}"))?;

        for (p, &token) in fds.iter().zip(&tokens) {
            let r = p.revents;
            if r == 0 {
                continue;
            }
            match token {
                Token::Stop => os::drain_fd(stop_fd),
                Token::Listener => server.accept_all(),
                Token::Read(i) if r & (POLLIN | POLLHUP | POLLERR | POLLNVAL) != 0 => server.read_from(i),
                Token::Write(i) if r & (POLLOUT | POLLHUP | POLLERR | POLLNVAL) != 0 => {
                    let (c, target, scratch) = server.parts(i);
                    pump(c, target, scratch, true);
                }
                Token::Refusal(i) => server.step_refusal(i),
                _ => {}
            }
        }
        server.check_hits();
        server.check_deadlines(Instant::now());
        server.reap();
    }
}

impl Server<'_> {
    fn stop_signal(&self) -> Option<i32> {
        os::stop_requested().then(|| os::stop_signal().unwrap_or(0))
    }

    fn parts(&mut self, i: usize) -> (&mut Client, &mut dyn Target, &mut Scratch) {
        (&mut self.clients[i], &mut *self.target, &mut self.scratch)
    }

    /// Sends the stop of every session whose GDB waits on a hit that has come.
    fn check_hits(&mut self) {
        for i in 0..self.clients.len() {
            let (c, target, scratch) = self.parts(i);
            if c.end.is_none() && c.session.check_hits(target, scratch) {
                pump(c, target, scratch, false);
            }
        }
    }

    fn poll_set(&self, stop_fd: RawFd, now: Instant) -> (Vec<PollFd>, Vec<Token>) {
        let mut fds = vec![os::poll_fd(stop_fd, POLLIN)];
        let mut tokens = vec![Token::Stop];
        if let Some(fd) = self.listener.poll_fd() {
            if self.accept_paused_until.is_none_or(|t| now >= t) {
                fds.push(os::poll_fd(fd, POLLIN));
                tokens.push(Token::Listener);
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            if c.end.is_some() {
                continue;
            }
            // While output waits GDB's bytes are not read: a client that sends but never reads
            // then costs one reply, not one per request.
            if !c.session.output().is_empty() {
                fds.push(os::poll_fd(c.conn.write_fd(), POLLOUT));
                tokens.push(Token::Write(i));
            } else if !c.eof {
                fds.push(os::poll_fd(c.conn.read_fd(), POLLIN));
                tokens.push(Token::Read(i));
            }
            // Hits wake the loop; which session they are for is found by asking each.
            for fd in c.session.poll_fds() {
                fds.push(os::poll_fd(fd, POLLIN));
                tokens.push(Token::Hits);
            }
        }
        for (i, r) in self.refusals.iter().enumerate() {
            fds.push(os::poll_fd(r.conn.read_fd(), POLLIN));
            tokens.push(Token::Refusal(i));
        }
        (fds, tokens)
    }

    fn next_deadline(&self) -> Option<Instant> {
        let clients = self.clients.iter().filter_map(deadline);
        let refusals = self.refusals.iter().map(|r| r.deadline);
        let hits = self
            .clients
            .iter()
            .any(|c| c.end.is_none() && c.session.waits_for_hits())
            .then(|| Instant::now() + HIT_CHECK);
        clients
            .chain(refusals)
            .chain(self.accept_paused_until)
            .chain(hits)
            .min()
    }

    fn admit(&mut self, conn: Conn, peer: String) {
        let id = self.next_id;
        self.next_id += 1;
        let now = Instant::now();
        let many = self.listener.poll_fd().is_some();
        if many {
            info!(
                "session {id}: GDB connected {peer} ({} of at most {MAX_SESSIONS} sessions)",
                self.clients.len() + 1
            );
        } else {
            info!("session {id}: serving GDB {peer}");
        }
        self.clients.push(Client {
            conn,
            session: Session::with_points(id, (self.points)()),
            unread: Vec::new(),
            eof: false,
            last_in: now,
            out_waiting: None,
            end: None,
        });
    }

    fn accept_all(&mut self) {
        self.accept_paused_until = None;
        // Bounded, so a flood of connections cannot starve the sessions already served.
        for _ in 0..2 * MAX_SESSIONS {
            match self.listener.accept() {
                Ok(Some((conn, peer))) => {
                    let live = self.clients.iter().filter(|c| c.end.is_none()).count();
                    if live < MAX_SESSIONS {
                        self.admit(conn, peer);
                    } else {
                        self.refuse(conn, peer);
                    }
                }
                Ok(None) => break,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => break,
                Err(e) => {
                    // A client that vanished at once, or no fds left: never the end of the server.
                    warn!("accept failed: {e}");
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    break;
                }
            }
        }
    }

    fn refuse(&mut self, mut conn: Conn, peer: String) {
        warn!("refused a GDB {peer}: already serving {MAX_SESSIONS} sessions, the most at once");
        if self.refusals.len() >= MAX_REFUSING {
            // Too many to wait on: say it now. GDB may drop these bytes if they beat its first
            // packet, but never less than the log line above.
            let _ = conn.write(&refusal_reply());
            return;
        }
        self.refusals.push(Refusal {
            conn,
            decoder: Decoder::new(256),
            replied: false,
            deadline: Instant::now() + REFUSAL_WAIT,
        });
    }

    fn step_refusal(&mut self, i: usize) {
        let r = &mut self.refusals[i];
        match r.conn.read(&mut self.buf) {
            Ok(0) => r.deadline = Instant::now(),
            Ok(n) => {
                if r.replied {
                    return;
                }
                let packet = self.buf[..n]
                    .iter()
                    .any(|&b| matches!(r.decoder.push(b), Some(Event::Packet(_) | Event::TooLong)));
                if packet {
                    // One short write to a fresh socket always fits.
                    let _ = r.conn.write(&refusal_reply());
                    r.conn.shutdown_write();
                    r.replied = true;
                }
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            Err(_) => r.deadline = Instant::now(),
        }
    }

    fn read_from(&mut self, i: usize) {
        let (c, target, scratch) = (&mut self.clients[i], &mut *self.target, &mut self.scratch);
        match c.conn.read(&mut self.buf) {
            Ok(0) => c.eof = true,
            Ok(n) => {
                c.last_in = Instant::now();
                let bytes = &self.buf[..n];
                let taken = c.session.feed(target, scratch, bytes);
                c.unread.extend_from_slice(&bytes[taken..]);
            }
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => return,
            Err(e) => {
                c.end = Some(SessionEnd::Io(e));
                return;
            }
        }
        pump(c, target, scratch, false);
    }

    fn check_deadlines(&mut self, now: Instant) {
        for c in &mut self.clients {
            if c.end.is_some() {
                continue;
            }
            if deadline(c).is_some_and(|d| now >= d) {
                let secs = STALL_TIMEOUT.as_secs();
                c.end = Some(SessionEnd::Stalled(if c.out_waiting.is_some() {
                    format!(
                        "GDB took no byte of a {}-byte reply for {secs} s",
                        c.session.output().len()
                    )
                } else {
                    format!("half a packet saw no byte for {secs} s")
                }));
            }
        }
        self.refusals.retain(|r| now < r.deadline);
    }

    fn reap(&mut self) {
        let mut ended = false;
        self.clients.retain_mut(|c| {
            let Some(end) = c.end.take() else {
                return true;
            };
            ended = true;
            let id = c.session.id();
            match end {
                SessionEnd::Detached | SessionEnd::Killed => info!("session {id}: ended"),
                SessionEnd::Eof => info!("session {id}: GDB went away"),
                SessionEnd::Io(e) => warn!("session {id}: ended: {e}"),
                SessionEnd::Stalled(why) => warn!("session {id}: cut off: {why}"),
                SessionEnd::Shutdown(sig) => info!("session {id}: closed: kmemd is stopping ({sig})"),
            }
            false
        });
        if ended {
            self.target.session_ended();
        }
    }

    fn shut_down(&mut self, sig: i32) -> Stopped {
        let name = os::signal_name(sig);
        let live: Vec<_> = self.clients.iter_mut().filter(|c| c.end.is_none()).collect();
        info!("{name} received: stopping, closing {} session(s)", live.len());
        for c in live {
            c.end = Some(SessionEnd::Shutdown(name.clone()));
        }
        self.reap();
        self.refusals.clear();
        Stopped::Signal(sig)
    }
}

/// When the client's session is cut off unless something moves: only while kmemd waits for the
/// rest of a packet, or for GDB to take a reply. `None` for a GDB idle between packets.
fn deadline(c: &Client) -> Option<Instant> {
    if c.end.is_some() {
        return None;
    }
    match c.out_waiting {
        Some(since) => Some(since + STALL_TIMEOUT),
        None if c.session.mid_packet() && c.unread.is_empty() && !c.eof => Some(c.last_in + STALL_TIMEOUT),
        None => None,
    }
}

/// `+` (GDB's first packet is acked) then the error reply.
fn refusal_reply() -> Vec<u8> {
    let mut v = b"+".to_vec();
    framing::frame_into(format!("E.{TOO_MANY_SESSIONS}").as_bytes(), &mut v);
    v
}

/// Moves a client's bytes as far as they go without waiting: writes its output, then feeds it
/// what it has read but not taken, until both are done or the socket is full. `writable`: poll
/// said the connection takes bytes (needed before writing to a blocking descriptor).
fn pump(c: &mut Client, target: &mut dyn Target, scratch: &mut Scratch, mut writable: bool) {
    loop {
        if !c.session.output().is_empty() {
            if c.conn.blocking() && !writable {
                break;
            }
            let out = c.session.output();
            let chunk = if c.conn.blocking() {
                &out[..out.len().min(BLOCKING_WRITE_MAX)]
            } else {
                out
            };
            match c.conn.write(chunk) {
                Ok(0) => {
                    c.end = Some(SessionEnd::Io(io::ErrorKind::WriteZero.into()));
                    return;
                }
                Ok(n) => {
                    c.session.consume_output(n);
                    let now = Instant::now();
                    c.out_waiting = Some(now);
                    if c.session.output().is_empty() {
                        // From here kmemd waits on GDB again; its clock starts now.
                        c.out_waiting = None;
                        c.last_in = now;
                    }
                    // A blocking descriptor got its one write for this readiness.
                    writable = !c.conn.blocking();
                    continue;
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => break,
                Err(e) => {
                    c.end = Some(SessionEnd::Io(e));
                    return;
                }
            }
        }
        // Output is all written.
        if c.session.ended() {
            c.end = c.session.take_end();
            return;
        }
        if !c.unread.is_empty() {
            let taken = c.session.feed(target, scratch, &c.unread);
            c.unread.drain(..taken);
            if c.unread.capacity() > 64 * 1024 && c.unread.is_empty() {
                c.unread = Vec::new();
            }
            if taken > 0 {
                continue;
            }
        }
        if c.eof && c.unread.is_empty() {
            c.end = Some(SessionEnd::Eof);
        }
        break;
    }
    if !c.session.output().is_empty() && c.out_waiting.is_none() {
        c.out_waiting = Some(Instant::now());
        debug!(
            "session {}: {} bytes wait for GDB to read them",
            c.session.id(),
            c.session.output().len()
        );
    }
}
