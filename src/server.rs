//! GDB sessions: bytes in, decoded commands answered from a `Target`, bytes out. A [`Session`]
//! knows RSP, never sockets or kernels: it is fed what GDB sent and leaves its replies in an
//! output buffer for whoever drives it. [`sessions`] drives several at once over the transport's
//! connections; [`serve`] drives one over any blocking `Read + Write`. Recoverable problems become
//! `Exx` replies and the session goes on; only the connection ending (or `D`/`k`) ends it.

pub mod sessions;

use crate::arch::Registers;
use crate::mem::VirtAddr;
use crate::rsp::command::{self, Command, ThreadSel};
use crate::rsp::framing::{self, Decoder, Event};
use crate::rsp::reply::{self, MAX_READ};
use crate::rsp::{hex, MAX_INCOMING};
use crate::target::{Point, PointKind, Points, StackCopy, Target, ThreadInfo, Tid, NO_POINTS_IN_DUMP};
use log::{debug, info, trace, warn};
use std::io::{self, Read, Write};

/// Why a session ended. None of these ends the server.
#[derive(Debug)]
pub enum SessionEnd {
    Detached,
    Killed,
    Eof,
    Io(io::Error),
    /// Half a packet, or a reply GDB would not take, waited this long with nothing moving.
    Stalled(String),
    /// kmemd is stopping (the signal's name).
    Shutdown(String),
}

const VERSION_TEXT: &str = concat!("kmemd ", env!("CARGO_PKG_VERSION"), "\n");

/// Buffers beyond this are released once their bytes are gone, so an idle session holds little
/// whatever it read before.
const KEEP_CAPACITY: usize = 64 * 1024;

/// [`Session::feed`] stops taking bytes while this much output waits, so a client that sends
/// requests but never reads costs at most about one reply.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// What GDB is shown while stopped at a hit: the trapped thread with its registers, and the stack
/// the trap ran on as it was then.
struct HitStop {
    tid: Tid,
    /// The trapped task's pid (0: an idle task) and CPU.
    pid: u32,
    cpu: u32,
    kind: PointKind,
    addr: u64,
    regs: Registers,
    /// The stacks copied at the hit (see [`crate::target::PointHit::stacks`]).
    stacks: Vec<StackCopy>,
    /// GDB's step over the trapping instruction was answered (see [`Arch::watch_step_len`]).
    stepped: bool,
}

/// The GDB Python that unwinds through the kernel's interrupt entries (`monitor gdb-unwinder`).
const GDB_UNWINDER: &str = include_str!("server/gdb_unwinder.py");

/// Why kmemd refuses `s` and `vCont;s`.
pub const NO_STEP: &str = "kmemd cannot step a running kernel: it never stops the CPUs, so there \
     is no next instruction to stop at. Use continue (with hbreak or watch to choose where to stop)";

/// One GDB's protocol state. Everything else (the target, the buffers a reply is built in) is
/// lent for each [`Session::feed`].
pub struct Session {
    /// For log lines: several sessions may run at once.
    id: u64,
    decoder: Decoder,
    no_ack: bool,
    running: bool,
    /// Thread selected by `Hg` for register reads.
    reg_thread: Option<Tid>,
    /// Remaining ids for `qsThreadInfo`.
    pending_ids: Vec<Tid>,
    /// `qXfer:threads` document, built when GDB reads it from offset 0.
    threads_xml: Vec<u8>,
    /// The last packet sent, for `-` retransmission (ack mode only).
    last_sent: Vec<u8>,
    /// The thread list as of GDB's last listing: a live task walk takes a while, and `H`, `T`
    /// and `qThreadExtraInfo` come once per thread, so they use this instead of walking again.
    threads: Option<Vec<ThreadInfo>>,
    /// The client is LLDB (it sent a packet only LLDB sends): stop replies carry thread names,
    /// registers kmemd does not have are errors rather than GDB's `xx` (LLDB 14 shows those as
    /// 0xcc bytes), and monitor text comes as console output.
    lldb: bool,
    /// LLDB has sent a `p`. Its first one is always `p0`, a probe: an error there makes LLDB
    /// 14 give up `p` for the whole session and read `g`, whose `xx` fields it shows as 0xcc
    /// bytes (a task thread never has rax/x0 saved). So that probe alone gets GDB's `xx`.
    lldb_probed_p: bool,
    /// The process id in thread ids (`pPID.TID`): set when GDB offered multiprocess and the
    /// target serves one process (`--pid`).
    pid: Option<u32>,
    /// Host I/O (`vFile:open`) files open in this session, by fd: a snapshot of each file's
    /// bytes taken at open, as reading `/proc/PID/maps` once gives.
    files: Vec<Option<Vec<u8>>>,
    /// Bytes for GDB not yet written, from `out_pos` on.
    out: Vec<u8>,
    out_pos: usize,
    end: Option<SessionEnd>,
    /// This session's breakpoints and watchpoints, or why it has none (a dump).
    points: Result<Box<dyn Points>, String>,
    /// The hit GDB is stopped at, until it resumes.
    stop: Option<HitStop>,
}

/// Where replies are built: one reply at a time, so sessions served together share one.
#[derive(Default)]
pub struct Scratch {
    payload: Vec<u8>,
    mem: Vec<u8>,
}

impl Session {
    /// A session without breakpoints or watchpoints (a dump's: `Z` gets the reason).
    pub fn new(id: u64) -> Session {
        Session::with_points(id, Err(NO_POINTS_IN_DUMP.to_string()))
    }

    /// A session whose `Z`/`z` packets arm and disarm `points`, or are refused for the reason
    /// given.
    pub fn with_points(id: u64, points: Result<Box<dyn Points>, String>) -> Session {
        Session {
            id,
            decoder: Decoder::new(MAX_INCOMING),
            no_ack: false,
            running: false,
            reg_thread: None,
            pending_ids: Vec::new(),
            threads_xml: Vec::new(),
            last_sent: Vec::new(),
            threads: None,
            lldb: false,
            lldb_probed_p: false,
            pid: None,
            files: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            end: None,
            points,
            stop: None,
        }
    }

    /// Descriptors to wait on for hits: only while GDB waits for a stop.
    pub fn poll_fds(&self) -> Vec<std::os::fd::RawFd> {
        match &self.points {
            Ok(p) if self.running => p.poll_fds(),
            _ => Vec::new(),
        }
    }

    /// Whether GDB waits for a stop that a hit will bring.
    pub fn waits_for_hits(&self) -> bool {
        self.running && self.points.as_ref().is_ok_and(|p| !p.is_empty())
    }

    /// While GDB waits for a stop: takes the first hit waiting, if any, and sends its stop reply.
    /// Returns whether it did.
    pub fn check_hits(&mut self, target: &mut dyn Target, scratch: &mut Scratch) -> bool {
        if !self.waits_for_hits() || self.end.is_some() {
            return false;
        }
        let Some(hit) = self.points.as_mut().ok().and_then(|p| p.take_hit()) else {
            return false;
        };
        if let Ok(p) = self.points.as_mut() {
            p.pause();
        }
        self.running = false;
        let tid = target.hit_thread(hit.cpu, hit.pid);
        info!(
            "session {}: {} {:#x} hit on CPU {} by pid {} (thread {tid:#x}){}",
            self.id,
            hit.point.kind.gdb_command(),
            hit.point.addr,
            hit.cpu,
            hit.pid,
            match hit.stacks.len() {
                0 => ", no stack copy: the stack reads live",
                1 => ", stack copied",
                _ => ", stack and interrupted task's stack copied",
            }
        );
        let mut regs = hit.regs;
        target.complete_hit_registers(&mut regs);
        self.stop = Some(HitStop {
            tid,
            pid: hit.pid,
            cpu: hit.cpu,
            kind: hit.point.kind,
            addr: hit.point.addr,
            regs,
            stacks: hit.stacks,
            stepped: false,
        });
        self.reg_thread = None;
        let mut cx = Ctx {
            s: self,
            target,
            payload: &mut scratch.payload,
            mem: &mut scratch.mem,
        };
        cx.payload.clear();
        cx.stop_reply(5);
        cx.send();
        true
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Takes bytes GDB sent and answers the packets among them; replies accumulate in
    /// [`Session::output`]. Returns how many bytes it took: fewer than given once output is
    /// waiting beyond a high-water mark or the session has ended. Feed the rest after writing.
    pub fn feed(&mut self, target: &mut dyn Target, scratch: &mut Scratch, bytes: &[u8]) -> usize {
        let mut used = 0;
        for &b in bytes {
            if self.end.is_some() || self.out.len() - self.out_pos >= OUTPUT_HIGH_WATER {
                break;
            }
            used += 1;
            let Some(ev) = self.decoder.push(b) else {
                continue;
            };
            let mut cx = Ctx {
                s: self,
                target: &mut *target,
                payload: &mut scratch.payload,
                mem: &mut scratch.mem,
            };
            if let Some(end) = cx.on_event(ev) {
                self.end = Some(end);
            }
        }
        used
    }

    /// Bytes waiting to be written to GDB.
    pub fn output(&self) -> &[u8] {
        self.out.get(self.out_pos..).unwrap_or_default()
    }

    /// Records that the first `n` bytes of [`Session::output`] were written.
    pub fn consume_output(&mut self, n: usize) {
        self.out_pos = self.out_pos.saturating_add(n).min(self.out.len());
        if self.out_pos == self.out.len() {
            self.out_pos = 0;
            if self.out.capacity() > KEEP_CAPACITY {
                self.out = Vec::new();
            } else {
                self.out.clear();
            }
        }
    }

    /// Whether GDB is in the middle of sending a packet.
    pub fn mid_packet(&self) -> bool {
        !self.decoder.is_idle()
    }

    /// Set once the session has ended itself (`D`, `k`); its last reply may still be in
    /// [`Session::output`].
    pub fn ended(&self) -> bool {
        self.end.is_some()
    }

    pub fn take_end(&mut self) -> Option<SessionEnd> {
        self.end.take()
    }
}

/// Serves one GDB session on a blocking `conn` until it detaches, kills, or the connection ends.
pub fn serve<C: Read + Write>(target: &mut dyn Target, conn: &mut C) -> SessionEnd {
    let mut s = Session::new(0);
    let mut scratch = Scratch::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match conn.read(&mut buf) {
            Ok(0) => {
                target.session_ended();
                return SessionEnd::Eof;
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return SessionEnd::Io(e),
        };
        let mut at = 0;
        while at < n {
            at += s.feed(target, &mut scratch, &buf[at..n]);
            if let Err(e) = conn.write_all(s.output()).and_then(|()| conn.flush()) {
                return SessionEnd::Io(e);
            }
            s.consume_output(s.output().len());
            if let Some(end) = s.take_end() {
                target.session_ended();
                return end;
            }
        }
    }
}

enum Outcome {
    Reply,
    NoReply,
    End(SessionEnd),
}

/// A session at work on one packet: its state, the target, and the shared reply buffers.
struct Ctx<'a> {
    s: &'a mut Session,
    target: &'a mut dyn Target,
    payload: &'a mut Vec<u8>,
    mem: &'a mut Vec<u8>,
}

impl Ctx<'_> {
    fn on_event(&mut self, ev: Event) -> Option<SessionEnd> {
        let id = self.s.id;
        match ev {
            Event::Packet(p) => {
                if !self.s.no_ack {
                    self.s.out.push(b'+');
                }
                trace!(
                    "session {id}: <- {}",
                    String::from_utf8_lossy(&p[..p.len().min(200)])
                );
                self.payload.clear();
                match self.handle(&p) {
                    Outcome::Reply => self.send(),
                    Outcome::NoReply => {}
                    Outcome::End(end) => {
                        if !self.payload.is_empty() {
                            self.send();
                        }
                        return Some(end);
                    }
                }
            }
            Event::Ack => {}
            Event::Nack => {
                if !self.s.no_ack && !self.s.last_sent.is_empty() {
                    debug!("session {id}: GDB asked for the last packet again");
                    self.s.out.extend_from_slice(&self.s.last_sent);
                }
            }
            Event::Interrupt => {
                if self.s.running {
                    self.s.running = false;
                    if let Ok(p) = self.s.points.as_mut() {
                        p.pause();
                    }
                    debug!("session {id}: interrupted by GDB: reporting a stop");
                    self.payload.clear();
                    self.stop_reply(2);
                    self.send();
                }
            }
            Event::BadChecksum | Event::Malformed => {
                warn!("session {id}: bad packet from GDB ({ev:?}); asking again");
                if !self.s.no_ack {
                    self.s.out.push(b'-');
                }
            }
            Event::TooLong => {
                warn!("session {id}: GDB sent a packet over {MAX_INCOMING} bytes; refused");
                if !self.s.no_ack {
                    self.s.out.push(b'+');
                }
                self.payload.clear();
                self.payload.extend_from_slice(b"E01");
                self.send();
            }
        }
        None
    }

    /// Frames the payload into the output; in ack mode also keeps it for a `-`.
    fn send(&mut self) {
        trace!(
            "session {}: -> {}",
            self.s.id,
            String::from_utf8_lossy(&self.payload[..self.payload.len().min(200)])
        );
        if self.s.no_ack {
            // Nothing will be asked for again: frame straight into the output.
            if self.s.last_sent.capacity() > KEEP_CAPACITY {
                self.s.last_sent = Vec::new();
            }
            self.s.last_sent.clear();
            framing::frame_into(self.payload, &mut self.s.out);
        } else {
            self.s.last_sent.clear();
            framing::frame_into(self.payload, &mut self.s.last_sent);
            self.s.out.extend_from_slice(&self.s.last_sent);
        }
    }

    fn reply(&mut self, text: &str) -> Outcome {
        self.payload.extend_from_slice(text.as_bytes());
        Outcome::Reply
    }

    fn handle(&mut self, p: &[u8]) -> Outcome {
        if self.s.running {
            // All-stop: while "running" GDB only sends ^C. Answer anything else, but stay running.
            debug!(
                "session {}: packet while running: {}",
                self.s.id,
                String::from_utf8_lossy(p)
            );
        }
        match command::parse(p) {
            Command::Supported(features) => {
                debug!(
                    "session {}: GDB features: {}",
                    self.s.id,
                    String::from_utf8_lossy(features)
                );
                let exec_file = self.target.exec_file().is_some();
                let auxv = self.target.auxv().is_some();
                let offered = features.split(|&b| b == b';').any(|f| f == b"multiprocess+");
                self.s.pid = self.target.process_id().filter(|_| offered);
                let multiprocess = self.s.pid.is_some();
                let points = self.s.points.is_ok();
                let caps = self.target.capabilities();
                reply::supported(caps, exec_file, auxv, multiprocess, points, self.payload);
                Outcome::Reply
            }
            Command::StartNoAckMode => {
                // The OK still goes out in ack mode; GDB acks it and then both sides stop.
                self.payload.extend_from_slice(b"OK");
                self.s.no_ack = true;
                Outcome::Reply
            }
            Command::StopReason => {
                self.stop_reply(5);
                Outcome::Reply
            }
            Command::ReadRegisters => self.read_registers(None),
            Command::ReadRegister(n) => self.read_registers(Some(n)),
            Command::ReadMemory { addr, len } => self.read_memory(addr, len, false),
            Command::ReadMemoryBinary { addr, len } => self.read_memory(addr, len, true),
            Command::Write(kind) => {
                warn!(
                    "session {}: refused a '{kind}' packet: kmemd is read-only and never writes the kernel",
                    self.s.id
                );
                self.reply("E01")
            }
            Command::XferFeatures { annex, offset, len } => {
                if !self.target.capabilities().target_description {
                    Outcome::Reply
                } else if annex == b"target.xml" {
                    let xml = self.target.arch().target_xml().as_bytes();
                    reply::xfer_chunk(xml, offset, len, self.payload);
                    Outcome::Reply
                } else {
                    self.reply("E00")
                }
            }
            Command::XferThreads { .. } if !self.target.capabilities().thread_list => Outcome::Reply,
            Command::XferThreads { offset, len } => {
                if offset == 0 {
                    self.s.threads_xml = reply::threads_xml(self.s.pid, self.fresh_threads());
                }
                reply::xfer_chunk(&self.s.threads_xml, offset, len, self.payload);
                Outcome::Reply
            }
            Command::XferExecFile { offset, len } => match self.target.exec_file() {
                // GDB opens the path on its own side (kmemd serves no vFile), so a bare
                // `gdb -ex 'target remote ...'` loads the vmlinux given with -k.
                Some(path) => {
                    let path = path.to_string_lossy().into_owned();
                    reply::xfer_chunk(path.as_bytes(), offset, len, self.payload);
                    Outcome::Reply
                }
                None => Outcome::Reply,
            },
            Command::Offsets => {
                reply::offsets(self.target.kaslr_offset().unwrap_or(0), self.payload);
                Outcome::Reply
            }
            Command::Attached => self.reply("1"),
            Command::ThreadInfoFirst => {
                self.s.pending_ids = self.fresh_threads().iter().map(|t| t.tid).collect();
                self.s.pending_ids.reverse();
                reply::thread_ids(self.s.pid, &mut self.s.pending_ids, self.payload);
                Outcome::Reply
            }
            Command::ThreadInfoNext => {
                reply::thread_ids(self.s.pid, &mut self.s.pending_ids, self.payload);
                Outcome::Reply
            }
            Command::CurrentThread => {
                let tid = self.current_thread();
                self.reply(&format!("QC{}", reply::thread_id(self.s.pid, tid)))
            }
            Command::SetThread { op, thread } => match self.resolve(thread) {
                Some(tid) => {
                    if op == b'g' {
                        self.s.reg_thread = Some(tid);
                    }
                    self.reply("OK")
                }
                None => self.reply("E02"),
            },
            Command::ThreadAlive(ThreadSel::Id(id)) if self.s.stop.as_ref().is_some_and(|h| h.tid == id) => {
                self.reply("OK")
            }
            Command::ThreadAlive(thread) => match self.resolve(thread) {
                Some(tid) if self.target.thread_alive(tid) => self.reply("OK"),
                _ => self.reply("E02"),
            },
            Command::ThreadExtraInfo(thread) => {
                let tid = self.resolve(thread);
                let threads = self.s.threads.as_deref().unwrap_or_default();
                match tid.and_then(|tid| threads.iter().find(|t| t.tid == tid)) {
                    Some(t) => {
                        hex::encode_into(t.extra.as_bytes(), self.payload);
                        Outcome::Reply
                    }
                    None => self.reply("E02"),
                }
            }
            Command::Detach => {
                info!("session {}: GDB detached", self.s.id);
                self.payload.extend_from_slice(b"OK");
                Outcome::End(SessionEnd::Detached)
            }
            Command::Kill => {
                info!("session {}: GDB sent kill: the session ends (kmemd never stops or changes what it serves)", self.s.id);
                // GDB expects no reply to `k`. LLDB waits for the process's exit status, and on a
                // serial line, which never closes, it would poll with qC for minutes: tell it
                // "killed by signal 9" as lldb-server does.
                if self.s.lldb {
                    self.payload.extend_from_slice(b"X09");
                }
                Outcome::End(SessionEnd::Killed)
            }
            Command::VKill => {
                info!("session {}: GDB sent kill: the session ends (kmemd never stops or changes what it serves)", self.s.id);
                self.payload.extend_from_slice(b"OK");
                Outcome::End(SessionEnd::Killed)
            }
            Command::VContQuery => self.reply("vCont;c;C"),
            Command::Continue => self.resume(),
            Command::Step if self.step_over_watch() => {
                let tid = self.stop_thread();
                reply::stop(5, self.s.pid, tid, self.payload);
                Outcome::Reply
            }
            Command::Step => {
                warn!("session {}: single-step refused: {NO_STEP}", self.s.id);
                reply::error_text(NO_STEP, self.payload);
                Outcome::Reply
            }
            Command::InsertPoint(p) => self.insert_point(p),
            Command::RemovePoint(p) => match self.s.points.as_mut() {
                Ok(points) => {
                    if !points.remove(p) {
                        // GDB removes what it inserted; one it never got needs no removal.
                        debug!("session {}: z for {p:?}, which was not armed", self.s.id);
                    }
                    self.reply("OK")
                }
                Err(why) => {
                    reply::error_text(why, self.payload);
                    Outcome::Reply
                }
            },
            Command::WatchpointSupportInfo => {
                if let Some(n) = self.s.points.as_ref().ok().and_then(|p| p.slots()) {
                    reply::watchpoint_info(n, self.payload);
                }
                Outcome::Reply
            }
            Command::Monitor(cmd) => match self.monitor(&String::from_utf8_lossy(&cmd)) {
                // GDB prints a final hex reply as the command's output; LLDB prints it raw
                // ("response: 6b6d...") but decodes console output.
                Ok(text) if !self.s.lldb => {
                    hex::encode_into(text.as_bytes(), self.payload);
                    Outcome::Reply
                }
                Ok(text) => {
                    self.console(&text);
                    self.reply("OK")
                }
                // The text, then an error: GDB raises one ("Protocol error with Rcmd"), which is
                // how the kernel's GDB scripts tell a command that does not exist.
                Err(text) => {
                    self.console(&text);
                    self.reply("E01")
                }
            },
            Command::ThreadStopInfo(thread) => {
                let stopped = self.stop_thread();
                let tid = self.resolve(thread);
                let threads = self.s.threads.as_deref().unwrap_or_default();
                match tid.and_then(|tid| threads.iter().find(|t| t.tid == tid)) {
                    Some(t) => {
                        let signal = if t.tid == stopped { 5 } else { 0 };
                        reply::stop_named(signal, self.s.pid, t.tid, &t.name, self.payload);
                        Outcome::Reply
                    }
                    None => self.reply("E02"),
                }
            }
            Command::LldbHello => {
                if !self.s.lldb {
                    debug!("session {}: the client is LLDB", self.s.id);
                }
                self.s.lldb = true;
                Outcome::Reply
            }
            Command::Symbol => self.reply("OK"),
            Command::XferAuxv { offset, len } => match self.target.auxv() {
                Some(doc) => {
                    reply::xfer_chunk(doc, offset, len, self.payload);
                    Outcome::Reply
                }
                None => self.reply("E00"),
            },
            // Kernel targets serve no files: the empty reply tells GDB host I/O is unsupported,
            // which keeps its fallbacks (the local exec file).
            Command::VFile(_) if self.target.process_id().is_none() => Outcome::Reply,
            Command::VFile(req) => self.host_io(req),
            Command::Malformed(what) => {
                warn!(
                    "session {}: malformed packet ({what}): {}",
                    self.s.id,
                    String::from_utf8_lossy(p)
                );
                self.reply("E03")
            }
            Command::Unknown => Outcome::Reply,
        }
    }

    /// gdbserver's host I/O over the target's files (`Target::host_file`): GDB reads
    /// `/proc/PID/maps` this way. Errors are `F-1,errno` as gdbserver sends them.
    fn host_io(&mut self, req: command::VFile) -> Outcome {
        use command::VFile;
        const EBADF: u32 = 9;
        const EMFILE: u32 = 24;
        const EROFS: u32 = 30;
        /// Files open at once in one session: GDB opens one at a time.
        const MAX_OPEN: usize = 16;
        let fd = |fd: u64| usize::try_from(fd).ok();
        match req {
            // Every pid sees the one process's files: there is no other filesystem to switch to.
            VFile::Setfs(_) => reply::vfile_result(0, self.payload),
            // O_ACCMODE (3) other than O_RDONLY: kmemd never writes.
            VFile::Open { flags, .. } if flags & 3 != 0 => reply::vfile_error(EROFS, self.payload),
            VFile::Open { path, .. } => match self.target.host_file(&path) {
                Ok(bytes) => {
                    let free = self.s.files.iter().position(Option::is_none);
                    match free.or((self.s.files.len() < MAX_OPEN).then_some(self.s.files.len())) {
                        Some(i) => {
                            if i == self.s.files.len() {
                                self.s.files.push(None);
                            }
                            self.s.files[i] = Some(bytes);
                            reply::vfile_result(i as u64, self.payload);
                        }
                        None => reply::vfile_error(EMFILE, self.payload),
                    }
                }
                Err(errno) => {
                    debug!(
                        "session {}: vFile:open {}: errno {errno}",
                        self.s.id,
                        String::from_utf8_lossy(&path)
                    );
                    reply::vfile_error(errno, self.payload)
                }
            },
            VFile::Pread { fd: f, count, offset } => {
                match fd(f).and_then(|f| self.s.files.get(f)).and_then(Option::as_ref) {
                    Some(bytes) => {
                        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(bytes.len());
                        let n = usize::try_from(count)
                            .unwrap_or(usize::MAX)
                            .min(bytes.len() - start);
                        reply::vfile_data(bytes.get(start..start + n).unwrap_or_default(), self.payload);
                    }
                    None => reply::vfile_error(EBADF, self.payload),
                }
            }
            VFile::Close(f) => match fd(f).and_then(|f| self.s.files.get_mut(f)) {
                Some(slot @ Some(_)) => {
                    *slot = None;
                    reply::vfile_result(0, self.payload);
                }
                _ => reply::vfile_error(EBADF, self.payload),
            },
            // fstat, readlink, unlink, pwrite: not offered (empty reply, per request type).
            VFile::Other(_) => {}
        }
        Outcome::Reply
    }

    /// `?`, an interrupt, or a hit: the hit's reason while stopped at one.
    fn stop_reply(&mut self, signal: u8) {
        match &self.s.stop {
            Some(h) if h.stepped => reply::stop(signal, self.s.pid, h.tid, self.payload),
            Some(h) => reply::stop_hit(h.kind, h.addr, self.s.pid, h.tid, self.payload),
            None => self.target_stop_reply(signal),
        }
    }

    /// Where a watchpoint traps before the access, GDB steps over the trapping instruction before
    /// it compares the old and new values. The kernel already ran it: the step is answered once,
    /// with the hit's registers and the pc past that instruction (memory is read live anyway).
    fn step_over_watch(&mut self) -> bool {
        let Some(len) = self.target.arch().watch_step_len() else {
            return false;
        };
        let pc = self.target.arch().pc_index();
        let Some(h) = self.s.stop.as_mut().filter(|h| h.kind.is_watch() && !h.stepped) else {
            return false;
        };
        let Some(slot) = h.regs.0.get_mut(pc) else {
            return false;
        };
        *slot = slot.map(|v| v.wrapping_add(len));
        h.stepped = true;
        debug!(
            "session {}: GDB's step over the watched access answered from the hit",
            self.s.id
        );
        true
    }

    /// The thread a stop names: the trapped task at a hit, else the target's.
    fn stop_thread(&mut self) -> Tid {
        match &self.s.stop {
            Some(h) => h.tid,
            None => self.target.stop_thread(),
        }
    }

    /// A stop that is no hit: the target's thread (named for LLDB).
    fn target_stop_reply(&mut self, signal: u8) {
        let tid = self.target.stop_thread();
        if self.s.lldb {
            if self.s.threads.is_none() {
                self.fresh_threads();
            }
            let threads = self.s.threads.as_deref().unwrap_or_default();
            let name = threads
                .iter()
                .find(|t| t.tid == tid)
                .map(|t| t.name.clone())
                .unwrap_or_default();
            reply::stop_named(signal, self.s.pid, tid, &name, self.payload);
        } else {
            reply::stop(signal, self.s.pid, tid, self.payload);
        }
    }

    /// Sends `text` as console output now, ahead of the reply being built.
    fn console(&mut self, text: &str) {
        let reply = std::mem::take(self.payload);
        reply::console_output(text, self.payload);
        self.send();
        *self.payload = reply;
        self.payload.clear();
    }

    fn current_thread(&mut self) -> Tid {
        match self.s.reg_thread {
            Some(t) => t,
            None => self.stop_thread(),
        }
    }

    /// `c`/`vCont;c`: with points armed, lets them trap and waits for the first hit (or ^C);
    /// without, only ^C stops the wait (the kernel never stopped, nothing resumes).
    fn resume(&mut self) -> Outcome {
        self.s.stop = None;
        if let Ok(points) = self.s.points.as_mut() {
            if !points.is_empty() {
                if let Err(e) = points.resume() {
                    warn!("session {}: cannot arm for continue: {e}", self.s.id);
                    reply::error_text(&e, self.payload);
                    return Outcome::Reply;
                }
            }
        }
        self.s.running = true;
        Outcome::NoReply
    }

    fn insert_point(&mut self, p: Point) -> Outcome {
        let result = match self.s.points.as_mut() {
            Ok(points) => {
                // Before the points load their snapshot program (at the first insert).
                if points.is_empty() {
                    if let Some(offset) = self.target.task_stack_offset() {
                        points.set_task_stack_offset(offset);
                    }
                }
                points.insert(p)
            }
            Err(why) => Err(why.clone()),
        };
        match result {
            Ok(()) => {
                debug!(
                    "session {}: armed {} {:#x}",
                    self.s.id,
                    p.kind.gdb_command(),
                    p.addr
                );
                self.reply("OK")
            }
            Err(e) => {
                warn!(
                    "session {}: refused {} {:#x} ({} bytes): {e}",
                    self.s.id,
                    p.kind.gdb_command(),
                    p.addr,
                    p.len
                );
                reply::error_text(&e, self.payload);
                Outcome::Reply
            }
        }
    }

    /// Lists the threads anew (GDB asked for the list). At a hit, the trapped task is listed
    /// even when it has exited since (a short-lived process the timer interrupt caught): GDB
    /// drops a stop whose thread its list lacks, and would not report the hit.
    fn fresh_threads(&mut self) -> &[ThreadInfo] {
        let mut threads = self.target.threads();
        if let Some(h) = &self.s.stop {
            if !threads.iter().any(|t| t.tid == h.tid) {
                threads.push(ThreadInfo {
                    tid: h.tid,
                    name: format!("pid {}", h.pid),
                    extra: format!(
                        "pid {}, trapped on CPU {}; it has left the task list since",
                        h.pid, h.cpu
                    ),
                    core: Some(h.cpu),
                });
            }
        }
        self.s.threads.insert(threads)
    }

    /// Which listed thread `sel` names, listing the threads if GDB has not yet. It borrows the
    /// listing: GDB sends an `H` (and often a `T`) per thread, and a copy of a 4,000-thread list
    /// per packet made `info threads` quadratic (issue 16).
    fn resolve(&mut self, sel: ThreadSel) -> Option<Tid> {
        match sel {
            ThreadSel::Any | ThreadSel::All => Some(self.stop_thread()),
            // The trapped task may have started after GDB's last listing.
            ThreadSel::Id(id) if self.s.stop.as_ref().is_some_and(|h| h.tid == id) => Some(id),
            ThreadSel::Id(id) => {
                if self.s.threads.is_none() {
                    self.fresh_threads();
                }
                let threads = self.s.threads.as_deref().unwrap_or_default();
                threads.iter().any(|t| t.tid == id).then_some(id)
            }
        }
    }

    fn read_registers(&mut self, one: Option<usize>) -> Outcome {
        let tid = self.current_thread();
        let at_hit = self
            .s
            .stop
            .as_ref()
            .filter(|h| h.tid == tid)
            .map(|h| h.regs.clone());
        let regs = match at_hit.map_or_else(|| self.target.registers(tid), Ok) {
            Ok(r) => r,
            Err(e) => {
                debug!("session {}: registers of thread {tid}: {e}", self.s.id);
                return self.reply("E02");
            }
        };
        let descs = self.target.arch().registers();
        let lldb_probe = self.s.lldb && !self.s.lldb_probed_p && one == Some(0);
        if one.is_some() && self.s.lldb {
            self.s.lldb_probed_p = true;
        }
        match one {
            None => reply::registers(descs, &regs, self.payload),
            Some(n) => match (descs.get(n), regs.0.get(n).copied().flatten()) {
                (None, _) => return self.reply("E00"),
                // LLDB has no "unavailable" value: an error makes it say so (but not on its
                // probe, see `lldb_probed_p`).
                (Some(_), None) if self.s.lldb && !lldb_probe => return self.reply("E01"),
                (Some(d), value) => reply::register(d.bytes(), value, self.payload),
            },
        }
        Outcome::Reply
    }

    /// Fills as much of `[addr, addr+len)` as is readable; an error only if nothing is.
    fn read_memory(&mut self, addr: u64, len: u64, binary: bool) -> Outcome {
        let tid = self.current_thread();
        self.target.focus(tid);
        // Never past the top of the address space, never more than a reply can carry.
        let room = (u64::MAX - addr).saturating_add(1);
        let len = len.min(room).min(MAX_READ as u64) as usize;
        self.mem.resize(len, 0);
        let mut filled = 0;
        while filled < len {
            let at = addr.wrapping_add(filled as u64);
            // At a hit, the copied stacks as they were then.
            let stacks = self.s.stop.as_ref().map_or(&[][..], |h| &h.stacks[..]);
            let copied = stacks.iter().find_map(|c| c.at(at, len - filled));
            if let Some(bytes) = copied {
                self.mem[filled..filled + bytes.len()].copy_from_slice(bytes);
                filled += bytes.len();
                continue;
            }
            // A live read stops where a copy begins, so the two never mix in one piece.
            let end = stacks
                .iter()
                .filter(|c| c.start > at && c.start - at < (len - filled) as u64)
                .map(|c| filled + (c.start - at) as usize)
                .min()
                .unwrap_or(len);
            match self.target.read_virt(VirtAddr(at), &mut self.mem[filled..end]) {
                Ok(0) => break,
                Ok(n) => filled += n.min(end - filled),
                Err(e) => {
                    debug!("session {}: {e} ({})", self.s.id, e.kind.name());
                    if filled == 0 {
                        return self.reply(reply::mem_error(e.kind));
                    }
                    break;
                }
            }
        }
        let data = &self.mem[..filled];
        if self.s.no_ack {
            // The one reply that reaches 1 MiB (512 KiB in hex): framed as it is encoded, straight
            // into the output, instead of built in the payload and copied there (issue 16: the
            // copy was a third of a live session's peak). Nothing is ever asked for again here.
            self.s.last_sent.clear();
            // Room for the whole frame first (`$`, the worst-case payload, `#cs`): growing into
            // it would copy the half-built megabyte into a block twice its size, the peak of a
            // dump session (issue 16). Room never written is never resident.
            self.s
                .out
                .reserve_exact(reply::memory_len_max(data.len(), binary) + 4);
            framing::frame_built(&mut self.s.out, |o| reply::memory(data, binary, o));
            return Outcome::NoReply;
        }
        reply::memory(data, binary, self.payload);
        Outcome::Reply
    }

    /// A monitor command's text; `Err` (with the text to show) for a command kmemd does not
    /// have. A command of the target's that fails says why in its text, as output.
    fn monitor(&mut self, cmd: &str) -> Result<String, String> {
        let cmd = cmd.trim();
        match cmd.split_whitespace().collect::<Vec<_>>().as_slice() {
            ["help"] | [] => {
                let mut lines = vec![
                    ("help", "this list"),
                    ("version", "kmemd's version and what it serves"),
                    (
                        "gdb-unwinder",
                        "Python for GDB: bt through interrupt entries; load with\n    \
                         python exec(gdb.execute(\"monitor gdb-unwinder\", to_string=True))",
                    ),
                ];
                lines.extend(self.target.monitor_help());
                let mut out = String::from("kmemd monitor commands:\n");
                for (name, what) in lines {
                    out.push_str(&format!("  monitor {name:<16} {what}\n"));
                }
                Ok(out)
            }
            // `info version` as QEMU's monitor has it: the kernel's GDB scripts (scripts/gdb,
            // utils.py get_gdbserver_type) take a stub that answers it for one whose thread N is
            // CPU N-1, which kmemd's CPU threads are.
            ["gdb-unwinder"] => Ok(GDB_UNWINDER.to_string()),
            ["version"] | ["info", "version"] => {
                Ok(format!("{VERSION_TEXT}serving: {}\n", self.target.describe()))
            }
            _ => match self.target.monitor(cmd) {
                Some(Ok(text)) => Ok(text),
                Some(Err(e)) => Ok(format!("error: {e}\n")),
                None => Err(format!("unknown monitor command '{cmd}': try 'monitor help'\n")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::{Arch, Registers};
    use crate::mem::{MemError, MemErrorKind, VirtRead};
    use std::io::Cursor;

    /// Memory: one readable window; everything else faults.
    struct Mock {
        base: u64,
        bytes: Vec<u8>,
        reads: usize,
        caps: crate::target::Capabilities,
        /// Serves one process (pid 0x5d) and its maps file, like `--pid`.
        process: bool,
        arch: Arch,
        /// Hits name a task's thread (0x10000 + pid), as the live target's do; the mock lists
        /// no task threads, so such a task has exited.
        task_hits: bool,
    }

    impl VirtRead for Mock {
        fn read_virt(&mut self, addr: VirtAddr, buf: &mut [u8]) -> Result<usize, MemError> {
            let addr = addr.0;
            self.reads += 1;
            let end = self.base + self.bytes.len() as u64;
            if addr < self.base || addr >= end {
                return Err(MemError::new(addr, MemErrorKind::Fault, "unmapped"));
            }
            let off = (addr - self.base) as usize;
            // Return in small pieces to exercise the server's loop.
            let n = buf.len().min(self.bytes.len() - off).min(100);
            buf[..n].copy_from_slice(&self.bytes[off..off + n]);
            Ok(n)
        }
    }

    impl Target for Mock {
        fn arch(&self) -> Arch {
            self.arch
        }
        fn capabilities(&self) -> crate::target::Capabilities {
            self.caps
        }
        fn threads(&mut self) -> Vec<ThreadInfo> {
            (1..=3)
                .map(|i| ThreadInfo {
                    tid: i,
                    name: format!("CPU {}", i - 1),
                    extra: format!("CPU {} <&>", i - 1),
                    core: Some(i as u32 - 1),
                })
                .collect()
        }
        fn stop_thread(&mut self) -> Tid {
            2
        }
        fn hit_thread(&mut self, cpu: u32, pid: u32) -> Tid {
            if self.task_hits && pid > 0 {
                0x1_0000 + Tid::from(pid)
            } else {
                Tid::from(cpu) + 1
            }
        }
        fn registers(&mut self, tid: Tid) -> Result<Registers, crate::mem::ReadError> {
            let mut r = vec![None; Arch::X86_64.registers().len()];
            r[16] = Some(0xffff_ffff_8100_0000 + tid);
            r[17] = Some(0x246);
            Ok(Registers(r))
        }
        fn complete_hit_registers(&mut self, regs: &mut Registers) {
            // What the live target does: the kernel's PAC mask (a VMCOREINFO number).
            self.arch.set_pac_mask(regs, 0xff7f_0000_0000_0000);
        }
        fn kaslr_offset(&self) -> Option<u64> {
            Some(0x2c60_0000)
        }
        fn monitor(&mut self, cmd: &str) -> Option<Result<String, String>> {
            (cmd == "kaslr").then(|| Ok("offset 0x2c600000\n".to_string()))
        }
        fn describe(&self) -> String {
            "mock".into()
        }
        fn process_id(&self) -> Option<u32> {
            self.process.then_some(0x5d)
        }
        fn host_file(&mut self, path: &[u8]) -> Result<Vec<u8>, u32> {
            match path {
                b"/proc/93/maps" => Ok(b"00400000-00401000 r--p 00000000 00:02 9 /bin/x\n".to_vec()),
                _ => Err(2),
            }
        }
    }

    struct Conn {
        input: Cursor<Vec<u8>>,
        output: Vec<u8>,
    }
    impl Read for Conn {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            // One byte at a time exercises every framing state across reads.
            let n = b.len().min(7);
            self.input.read(&mut b[..n])
        }
    }
    impl Write for Conn {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pkt(p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        framing::frame_into(p, &mut v);
        v
    }

    fn mock() -> Mock {
        Mock {
            base: 0xffff_8880_0000_0000,
            bytes: (0..1000u32).map(|i| (i * 7) as u8).collect(),
            reads: 0,
            caps: crate::target::Capabilities::ALL,
            process: false,
            arch: Arch::X86_64,
            task_hits: false,
        }
    }

    #[test]
    fn a_process_target_is_multiprocess_and_serves_its_files_over_vfile() {
        let open = |path: &str, flags: u32| {
            format!(
                "vFile:open:{},{flags:x},0",
                crate::rsp::hex::encode(path.as_bytes())
            )
            .into_bytes()
        };
        let packets: Vec<Vec<u8>> = vec![
            b"qSupported:multiprocess+;swbreak+".to_vec(),
            b"?".to_vec(),
            b"qC".to_vec(),
            b"qfThreadInfo".to_vec(),
            b"Hgp5d.2".to_vec(),
            b"vFile:setfs:0".to_vec(),
            open("/proc/93/maps", 0),
            b"vFile:pread:0,9,8".to_vec(),
            b"vFile:pread:0,1000,28".to_vec(),
            open("/proc/93/smaps", 0),
            open("/proc/93/maps", 1),
            b"vFile:pread:1,10,0".to_vec(),
            b"vFile:close:0".to_vec(),
            b"vFile:close:0".to_vec(),
            b"vFile:fstat:0".to_vec(),
        ];
        let mut input = Vec::new();
        for p in &packets {
            input.extend(pkt(p));
        }
        let mut m = mock();
        m.process = true;
        let (r, _, _) = run(&mut m, &input);
        let r: Vec<String> = r.iter().map(|p| s(p)).collect();
        assert!(r[0].contains(";multiprocess+;"), "{}", r[0]);
        assert_eq!(r[1], "T05thread:p5d.2;");
        assert_eq!(r[2], "QCp5d.2");
        assert_eq!(r[3], "mp5d.1,p5d.2,p5d.3");
        assert_eq!(r[4], "OK");
        assert_eq!(r[5], "F0");
        assert_eq!(r[6], "F0");
        assert_eq!(r[7], "F9;-00401000");
        assert_eq!(r[8], "F7;/bin/x\n");
        assert_eq!(r[9], "F-1,2", "not served: ENOENT");
        assert_eq!(r[10], "F-1,1e", "opened for writing: EROFS");
        assert_eq!(r[11], "F-1,9", "never opened: EBADF");
        assert_eq!(r[12], "F0");
        assert_eq!(r[13], "F-1,9", "closed twice: EBADF");
        assert_eq!(r[14], "", "fstat is not offered");
        assert_eq!(r.len(), packets.len());

        // A kernel target: no multiprocess even when GDB offers it, and no host I/O.
        let mut input = Vec::new();
        for p in [&b"qSupported:multiprocess+"[..], b"?", &open("/proc/93/maps", 0)] {
            input.extend(pkt(p));
        }
        let (r, _, _) = run(&mut mock(), &input);
        assert!(!s(&r[0]).contains("multiprocess"), "{}", s(&r[0]));
        assert_eq!(s(&r[1]), "T05thread:2;");
        assert_eq!(s(&r[2]), "");
        // GDB did not offer multiprocess: plain thread ids even for a process target.
        let mut m = mock();
        m.process = true;
        let (r, _, _) = run(&mut m, &[pkt(b"qSupported:swbreak+"), pkt(b"?")].concat());
        assert_eq!(s(&r[1]), "T05thread:2;");
    }

    /// Runs a session over `input`; returns the reply payloads in order and how it ended.
    fn run(target: &mut Mock, input: &[u8]) -> (Vec<Vec<u8>>, Vec<u8>, SessionEnd) {
        let mut conn = Conn {
            input: Cursor::new(input.to_vec()),
            output: Vec::new(),
        };
        let end = serve(target, &mut conn);
        let mut d = Decoder::new(1 << 22);
        let replies = conn
            .output
            .iter()
            .filter_map(|&b| match d.push(b) {
                Some(Event::Packet(p)) => Some(p),
                _ => None,
            })
            .collect();
        (replies, conn.output, end)
    }

    fn session(packets: &[&[u8]]) -> (Vec<Vec<u8>>, SessionEnd) {
        let mut input = Vec::new();
        for p in packets {
            input.extend(pkt(p));
        }
        let (r, _, end) = run(&mut mock(), &input);
        (r, end)
    }

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn handshake_and_basic_queries() {
        let (r, end) = session(&[
            b"qSupported:multiprocess+;xmlRegisters=i386",
            b"vMustReplyEmpty",
            b"?",
            b"qOffsets",
            b"qAttached",
            b"qC",
            b"qfThreadInfo",
            b"qsThreadInfo",
            b"qThreadExtraInfo,1",
            b"T3",
            b"T9",
            b"vCont?",
            b"qSymbol::",
            b"D",
        ]);
        assert!(s(&r[0]).contains("PacketSize=100000"));
        assert!(s(&r[0]).contains("binary-upload+"));
        assert!(s(&r[0]).contains("qXfer:features:read+"));
        assert_eq!(r[1], b"");
        assert_eq!(r[2], b"T05thread:2;");
        assert_eq!(r[3], b"Text=2c600000;Data=2c600000;Bss=2c600000");
        assert_eq!(r[4], b"1");
        assert_eq!(r[5], b"QC2");
        assert_eq!(r[6], b"m1,2,3");
        assert_eq!(r[7], b"l");
        assert_eq!(hex::decode(&r[8]).unwrap(), b"CPU 0 <&>");
        assert_eq!(r[9], b"OK");
        assert_eq!(r[10], b"E02");
        assert_eq!(r[11], b"vCont;c;C");
        assert_eq!(r[12], b"OK");
        assert_eq!(r[13], b"OK");
        assert!(matches!(end, SessionEnd::Detached));
    }

    #[test]
    fn acks_every_packet_until_no_ack_mode() {
        let mut input = pkt(b"?");
        input.extend(pkt(b"QStartNoAckMode"));
        input.extend(b"+");
        input.extend(pkt(b"?"));
        let (r, out, _) = run(&mut mock(), &input);
        assert_eq!(r.len(), 3);
        let text = s(&out);
        assert_eq!(text.matches('+').count(), 2, "acks before no-ack only: {text}");
        assert!(text.starts_with("+$T05"));
    }

    #[test]
    fn bad_checksum_gets_a_nack_and_nack_gets_a_retransmission() {
        let mut input = b"$?#00".to_vec();
        input.extend(pkt(b"qC"));
        input.extend(b"-");
        let (_, out, _) = run(&mut mock(), &input);
        assert_eq!(s(&out), "-+$QC2#c6$QC2#c6");
    }

    #[test]
    fn memory_reads_hex_and_binary() {
        let m = mock();
        let base = m.base;
        let want: Vec<u8> = m.bytes[10..310].to_vec();
        let (r, _) = session(&[
            format!("m{:x},12c", base + 10).as_bytes(),
            format!("x{:x},12c", base + 10).as_bytes(),
        ]);
        assert_eq!(hex::decode(&r[0]).unwrap(), want);
        assert_eq!(r[1][0], b'b');
        // The decoder already undid the escaping: the payload is `b` + the raw bytes.
        assert_eq!(&r[1][1..], &want[..]);
    }

    #[test]
    fn partial_reads_return_the_readable_prefix_and_faults_an_error() {
        let m = mock();
        let base = m.base;
        let (r, _) = session(&[
            format!("m{:x},40", base + 1000 - 16).as_bytes(),
            format!("m{:x},4", base - 4).as_bytes(),
            format!("x{:x},4", base + 5000).as_bytes(),
            b"mffffffffffffffff,10",
            b"m0,8",
            b"x0,ffffffffffffffff",
        ]);
        assert_eq!(
            hex::decode(&r[0]).unwrap().len(),
            16,
            "prefix only, never zero-filled"
        );
        assert_eq!(r[1], b"E14");
        assert_eq!(r[2], b"E14");
        assert_eq!(r[3], b"E14");
        assert_eq!(r[4], b"E14", "address 0");
        assert_eq!(r[5], b"E14", "address 0, every length");
    }

    #[test]
    fn huge_lengths_are_capped_not_allocated() {
        let m = mock();
        let base = m.base;
        let (r, _) = session(&[format!("m{base:x},ffffffffffffffff").as_bytes()]);
        assert_eq!(hex::decode(&r[0]).unwrap().len(), 1000);
    }

    #[test]
    fn registers_follow_the_target_description() {
        let (r, _) = session(&[b"Hg3", b"g", b"p10", b"p11", b"p18", b"p3c", b"Hg99"]);
        assert_eq!(r[0], b"OK");
        let g = s(&r[1]);
        assert_eq!(g.len(), 560 * 2);
        assert_eq!(&g[..16], "xxxxxxxxxxxxxxxx");
        assert_eq!(&g[16 * 16..17 * 16], "03000081ffffffff"); // rip of thread 3, little endian
        assert_eq!(&g[17 * 16..17 * 16 + 8], "46020000"); // eflags is 32 bits
        assert_eq!(r[2], b"03000081ffffffff");
        assert_eq!(r[3], b"46020000");
        assert_eq!(r[4], b"xxxxxxxxxxxxxxxxxxxx", "st0 is 80 bits, unavailable");
        assert_eq!(r[5], b"E00", "no register 60");
        assert_eq!(r[6], b"E02", "no thread 0x99");
    }

    #[test]
    fn writes_are_refused_and_unknown_packets_get_empty_replies() {
        let (r, end) = session(&[
            b"M1000,1:00",
            b"X1000,1:a",
            b"G00",
            b"P0=00",
            b"Z0,1,1",
            b"qTStatus",
            b"?",
        ]);
        assert_eq!(
            &r[..4],
            &[b"E01".to_vec(), b"E01".to_vec(), b"E01".to_vec(), b"E01".to_vec()]
        );
        // A session without points (a dump's) refuses breakpoints with the reason.
        assert_eq!(s(&r[4]), format!("E.{NO_POINTS_IN_DUMP}"));
        assert_eq!(r[5], b"");
        assert_eq!(r[6], b"T05thread:2;", "the session went on");
        assert!(matches!(end, SessionEnd::Eof));
    }

    #[test]
    fn target_xml_and_threads_xml_in_chunks() {
        let xml = Arch::X86_64.target_xml().as_bytes();
        let (r, _) = session(&[
            b"qXfer:features:read:target.xml:0,100",
            b"qXfer:features:read:target.xml:100,100000",
            b"qXfer:features:read:other.xml:0,100",
            b"qXfer:threads:read::0,1000",
        ]);
        assert_eq!(r[0][0], b'm');
        assert_eq!(r[1][0], b'l');
        let mut doc = r[0][1..].to_vec();
        doc.extend_from_slice(&r[1][1..]);
        assert_eq!(doc, xml);
        assert_eq!(r[2], b"E00");
        let threads = s(&r[3]);
        assert!(threads.starts_with("l<?xml"));
        assert!(threads.contains("<thread id=\"3\" name=\"CPU 2\" core=\"2\">CPU 2 &lt;&amp;&gt;</thread>"));
    }

    #[test]
    fn features_a_target_lacks_are_neither_offered_nor_served() {
        let mut m = mock();
        m.caps = crate::target::Capabilities {
            target_description: false,
            thread_list: false,
        };
        let mut input = Vec::new();
        for p in [
            &b"qSupported"[..],
            b"qXfer:features:read:target.xml:0,100",
            b"qXfer:threads:read::0,1000",
            b"qfThreadInfo",
        ] {
            input.extend(pkt(p));
        }
        let (r, _, _) = run(&mut m, &input);
        let sup = s(&r[0]);
        assert!(sup.contains("PacketSize=100000"), "{sup}");
        assert!(!sup.contains("qXfer"), "{sup}");
        assert_eq!(r[1], b"", "not supported");
        assert_eq!(r[2], b"", "not supported");
        assert_eq!(r[3], b"m1,2,3", "qfThreadInfo still lists the threads");
    }

    /// Points that record what the session asked and trap when told to.
    #[derive(Default)]
    struct PointLog {
        armed: Vec<Point>,
        running: bool,
        resumes: usize,
        hits: Vec<crate::target::PointHit>,
        refuse: Option<String>,
    }

    struct MockPoints(std::rc::Rc<std::cell::RefCell<PointLog>>);

    impl Points for MockPoints {
        fn insert(&mut self, p: Point) -> Result<(), String> {
            let mut l = self.0.borrow_mut();
            if let Some(e) = &l.refuse {
                return Err(e.clone());
            }
            l.armed.push(p);
            Ok(())
        }
        fn remove(&mut self, p: Point) -> bool {
            let mut l = self.0.borrow_mut();
            let n = l.armed.len();
            l.armed.retain(|q| *q != p);
            n != l.armed.len()
        }
        fn is_empty(&self) -> bool {
            self.0.borrow().armed.is_empty()
        }
        fn slots(&self) -> Option<usize> {
            Some(4)
        }
        fn resume(&mut self) -> Result<(), String> {
            let mut l = self.0.borrow_mut();
            l.running = true;
            l.resumes += 1;
            Ok(())
        }
        fn pause(&mut self) {
            self.0.borrow_mut().running = false;
        }
        fn poll_fds(&self) -> Vec<std::os::fd::RawFd> {
            vec![42]
        }
        fn take_hit(&mut self) -> Option<crate::target::PointHit> {
            let mut l = self.0.borrow_mut();
            (l.running && !l.hits.is_empty()).then(|| l.hits.remove(0))
        }
    }

    /// Feeds `packets` to `sess`, then returns the payloads of what it answered.
    fn exchange(sess: &mut Session, t: &mut Mock, sc: &mut Scratch, packets: &[&[u8]]) -> Vec<Vec<u8>> {
        for p in packets {
            let bytes = pkt(p);
            assert_eq!(sess.feed(t, sc, &bytes), bytes.len());
        }
        drain(sess)
    }

    fn drain(sess: &mut Session) -> Vec<Vec<u8>> {
        let mut d = Decoder::new(1 << 22);
        let out: Vec<Vec<u8>> = sess
            .output()
            .iter()
            .filter_map(|&b| match d.push(b) {
                Some(Event::Packet(p)) => Some(p),
                _ => None,
            })
            .collect();
        let n = sess.output().len();
        sess.consume_output(n);
        out
    }

    /// The timer interrupt often catches a short-lived process; by the time GDB lists the
    /// threads it may have exited. The list still has the stop's thread, or GDB drops the stop
    /// and never reports the watchpoint (seen in the lab with a `sleep` the interrupt caught).
    #[test]
    fn a_hit_by_a_task_that_has_exited_is_still_listed() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(PointLog::default()));
        let mut sess = Session::with_points(1, Ok(Box::new(MockPoints(log.clone()))));
        let (mut t, mut sc) = (mock(), Scratch::default());
        t.task_hits = true;
        let r = exchange(
            &mut sess,
            &mut t,
            &mut sc,
            &[b"QStartNoAckMode", b"Z2,ffffffff82a0c0c0,8", b"c"],
        );
        assert_eq!(r, vec![b"OK".to_vec(), b"OK".to_vec()]);
        log.borrow_mut().hits.push(crate::target::PointHit {
            point: Point {
                kind: PointKind::Write,
                addr: 0xffff_ffff_82a0_c0c0,
                len: 8,
            },
            cpu: 1,
            pid: 1730,
            regs: Registers(vec![None; Arch::X86_64.registers().len()]),
            stacks: Vec::new(),
        });
        assert!(sess.check_hits(&mut t, &mut sc));
        assert_eq!(
            drain(&mut sess),
            vec![b"T05watch:ffffffff82a0c0c0;thread:106c2;".to_vec()]
        );
        let r = exchange(
            &mut sess,
            &mut t,
            &mut sc,
            &[
                b"qfThreadInfo",
                b"qsThreadInfo",
                b"qThreadExtraInfo,106c2",
                b"T106c2",
            ],
        );
        let listed = format!("{}{}", s(&r[0]), s(&r[1]));
        assert!(listed.contains("106c2") && listed.contains(",1"), "{listed}");
        let extra = s(&hex::decode(&r[2]).unwrap());
        assert!(
            extra.contains("pid 1730") && extra.contains("left the task list"),
            "{extra}"
        );
        assert_eq!(r[3], b"OK");
        // After the stop, the target's own list again.
        let r = exchange(&mut sess, &mut t, &mut sc, &[b"c"]);
        assert!(r.is_empty());
        assert!(sess.feed(&mut t, &mut sc, &[0x03]) == 1);
        drain(&mut sess);
        let r = exchange(&mut sess, &mut t, &mut sc, &[b"qfThreadInfo", b"qsThreadInfo"]);
        assert!(
            !s(&r[0]).contains("106c2") && !s(&r[1]).contains("106c2"),
            "{r:?}"
        );
    }

    #[test]
    fn a_hit_stops_gdb_with_its_thread_registers_and_stack() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(PointLog::default()));
        let mut sess = Session::with_points(1, Ok(Box::new(MockPoints(log.clone()))));
        let (mut t, mut sc) = (mock(), Scratch::default());
        let sp = 0xffff_c900_0001_3f00u64;
        let r = exchange(
            &mut sess,
            &mut t,
            &mut sc,
            &[
                b"QStartNoAckMode",
                b"qSupported",
                b"qWatchpointSupportInfo",
                b"Z2,ffffffff82a0c0c0,4",
            ],
        );
        assert!(s(&r[1]).contains("hwbreak+"), "{}", s(&r[1]));
        assert_eq!(r[2], b"num:4;");
        assert_eq!(r[3], b"OK");
        assert!(!sess.check_hits(&mut t, &mut sc), "not running: no stop");
        let r = exchange(&mut sess, &mut t, &mut sc, &[b"vCont;c"]);
        assert!(r.is_empty(), "continue waits");
        assert!(sess.waits_for_hits());
        assert_eq!(sess.poll_fds(), vec![42]);
        assert!(!sess.check_hits(&mut t, &mut sc), "no hit yet");
        let mut regs = vec![None; Arch::X86_64.registers().len()];
        regs[16] = Some(0xffff_ffff_8123_4567);
        regs[7] = Some(sp);
        log.borrow_mut().hits.push(crate::target::PointHit {
            point: Point {
                kind: PointKind::Write,
                addr: 0xffff_ffff_82a0_c0c0,
                len: 4,
            },
            cpu: 1,
            pid: 0,
            regs: Registers(regs),
            stacks: vec![
                StackCopy {
                    start: sp,
                    bytes: vec![0xaa; 0x100],
                },
                // The interrupted task's stack, where no live memory is.
                StackCopy {
                    start: 0xffff_c900_0002_0000,
                    bytes: vec![0xbb; 0x40],
                },
            ],
        });
        assert!(sess.check_hits(&mut t, &mut sc));
        assert_eq!(
            drain(&mut sess),
            vec![b"T05watch:ffffffff82a0c0c0;thread:2;".to_vec()]
        );
        assert!(!log.borrow().running, "paused at the stop");
        assert!(sess.poll_fds().is_empty());
        let r = exchange(
            &mut sess,
            &mut t,
            &mut sc,
            &[
                b"?",
                b"p10",
                b"Hg3",
                b"p10",
                b"Hg2",
                b"p7",
                format!("m{:x},8", sp + 0xf8).as_bytes(),
                format!("m{:x},10", sp + 0xf8).as_bytes(),
                b"vCont;s:2",
                b"s",
                b"mffffc90000020038,10",
            ],
        );
        assert_eq!(r[0], b"T05watch:ffffffff82a0c0c0;thread:2;");
        assert_eq!(r[1], b"67452381ffffffff", "pc of the hit");
        assert_eq!(r[3], b"03000081ffffffff", "other threads: the target's registers");
        assert_eq!(r[5], b"003f010000c9ffff", "sp of the hit");
        assert_eq!(r[6], b"aaaaaaaaaaaaaaaa", "the stack as copied at the hit");
        assert_eq!(
            hex::decode(&r[7]).unwrap(),
            vec![0xaa; 8],
            "the copy's end, never live bytes after it"
        );
        assert!(
            s(&r[8]).starts_with("E.kmemd cannot step a running kernel"),
            "{}",
            s(&r[8])
        );
        assert_eq!(r[8], r[9]);
        assert_eq!(
            r[10], b"bbbbbbbbbbbbbbbb",
            "the interrupted task's stack as copied"
        );
        // Continue again: the stop is over, reads are live again, and ^C ends the wait.
        let r = exchange(&mut sess, &mut t, &mut sc, &[b"c"]);
        assert!(r.is_empty());
        assert_eq!(log.borrow().resumes, 2);
        assert!(sess.feed(&mut t, &mut sc, &[0x03]) == 1);
        assert_eq!(drain(&mut sess), vec![b"T02thread:2;".to_vec()]);
        assert!(!log.borrow().running, "^C pauses the points");
        let r = exchange(&mut sess, &mut t, &mut sc, &[b"?", b"z2,ffffffff82a0c0c0,4"]);
        assert_eq!(r, vec![b"T05thread:2;".to_vec(), b"OK".to_vec()]);
        assert!(log.borrow().armed.is_empty());
    }

    #[test]
    fn where_a_watchpoint_traps_before_the_access_gdbs_step_over_it_is_answered_once() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(PointLog::default()));
        let mut sess = Session::with_points(1, Ok(Box::new(MockPoints(log.clone()))));
        let (mut t, mut sc) = (mock(), Scratch::default());
        t.arch = Arch::Aarch64;
        let a = Arch::Aarch64;
        let r = exchange(
            &mut sess,
            &mut t,
            &mut sc,
            &[b"QStartNoAckMode", b"Z2,ffff800008e10350,4", b"c"],
        );
        assert_eq!(r, vec![b"OK".to_vec(), b"OK".to_vec()]);
        let mut regs = vec![None; a.registers().len()];
        regs[a.pc_index()] = Some(0xffff_8000_0812_3450);
        log.borrow_mut().hits.push(crate::target::PointHit {
            point: Point {
                kind: PointKind::Write,
                addr: 0xffff_8000_08e1_0350,
                len: 4,
            },
            cpu: 0,
            pid: 115,
            regs: Registers(regs),
            stacks: Vec::new(),
        });
        assert!(sess.check_hits(&mut t, &mut sc));
        assert_eq!(
            drain(&mut sess),
            vec![b"T05watch:ffff800008e10350;thread:1;".to_vec()]
        );
        // The hit carries no PAC masks: the target's are added, else GDB cannot strip a saved
        // return address and its backtrace stops at frame 0.
        let cmask = format!("p{:x}", a.reg_index("pauth_cmask").unwrap());
        let r = exchange(&mut sess, &mut t, &mut sc, &[cmask.as_bytes()]);
        assert_eq!(r, vec![b"0000000000007fff".to_vec()]);
        let pc = format!("p{:x}", a.pc_index());
        let r = exchange(
            &mut sess,
            &mut t,
            &mut sc,
            &[pc.as_bytes(), b"vCont;s:1", pc.as_bytes(), b"?", b"vCont;s:1"],
        );
        assert_eq!(r[0], b"503412080080ffff");
        assert_eq!(
            r[1], b"T05thread:1;",
            "the step over the store, answered from the hit"
        );
        assert_eq!(r[2], b"543412080080ffff", "pc past the 4-byte instruction");
        assert_eq!(r[3], b"T05thread:1;");
        assert!(
            s(&r[4]).starts_with("E.kmemd cannot step"),
            "only once: {}",
            s(&r[4])
        );
    }

    #[test]
    fn refused_points_and_resumes_say_why() {
        let log = std::rc::Rc::new(std::cell::RefCell::new(PointLog {
            refuse: Some("no debug register left".into()),
            ..PointLog::default()
        }));
        let mut sess = Session::with_points(1, Ok(Box::new(MockPoints(log.clone()))));
        let (mut t, mut sc) = (mock(), Scratch::default());
        let r = exchange(
            &mut sess,
            &mut t,
            &mut sc,
            &[b"QStartNoAckMode", b"Z1,ffffffff81000000,1"],
        );
        assert_eq!(r[1], b"E.no debug register left");
        // Without points `c` only waits for ^C, as before.
        let r = exchange(&mut sess, &mut t, &mut sc, &[b"c"]);
        assert!(r.is_empty());
        assert!(!sess.waits_for_hits());
        assert_eq!(log.borrow().resumes, 0);
    }

    #[test]
    fn continue_waits_for_the_interrupt() {
        let mut input = pkt(b"c");
        input.push(0x03);
        input.extend(pkt(b"vCont;c"));
        let (r, _, _) = run(&mut mock(), &input);
        assert_eq!(r, vec![b"T02thread:2;".to_vec()], "one stop, only after ^C");
        let (r, _, end) = run(&mut mock(), &pkt(b"c"));
        assert!(r.is_empty(), "no stop without an interrupt");
        assert!(matches!(end, SessionEnd::Eof));
    }

    #[test]
    fn monitor_commands() {
        let hexcmd = |c: &str| format!("qRcmd,{}", hex::encode(c.as_bytes()));
        let (r, _) = session(&[
            hexcmd("help").as_bytes(),
            hexcmd("version").as_bytes(),
            hexcmd("kaslr").as_bytes(),
            hexcmd("info version").as_bytes(),
            hexcmd("frobnicate").as_bytes(),
            hexcmd("gdb-unwinder").as_bytes(),
        ]);
        let out: Vec<String> = r[..4].iter().map(|p| s(&hex::decode(p).unwrap())).collect();
        assert!(out[0].contains("monitor help") && out[0].contains("monitor version"));
        assert!(out[1].starts_with("kmemd ") && out[1].contains("serving: mock"));
        assert_eq!(out[2], "offset 0x2c600000\n");
        assert_eq!(out[3], out[1], "info version is version");
        // An unknown command: its text as console output, then an error.
        assert_eq!(r[4][0], b'O');
        let text = s(&hex::decode(&r[4][1..]).unwrap());
        assert!(text.contains("unknown monitor command 'frobnicate'"), "{text}");
        assert_eq!(r[5], b"E01");
        let unwinder = s(&hex::decode(&r[6]).unwrap());
        assert!(unwinder.contains("register_unwinder("), "{unwinder}");
        assert!(out[0].contains("monitor gdb-unwinder"), "{}", out[0]);
        assert_eq!(r.len(), 7);
    }

    #[test]
    fn lldb_gets_names_errors_for_missing_registers_and_console_output() {
        let hexcmd = |c: &str| format!("qRcmd,{}", hex::encode(c.as_bytes()));
        let name = |n: &str| hex::encode(n.as_bytes());
        // GDB first: no names, `xx` for a register kmemd lacks.
        let (r, _) = session(&[b"?", b"Hg1", b"p0", b"qThreadStopInfo3"]);
        assert_eq!(r[0], b"T05thread:2;");
        assert_eq!(r[2], b"xxxxxxxxxxxxxxxx");
        assert_eq!(r[3], format!("T00thread:3;hexname:{};", name("CPU 2")).as_bytes());
        let (r, _) = session(&[
            b"QThreadSuffixSupported",
            b"qHostInfo",
            b"?",
            b"qThreadStopInfo2",
            b"qThreadStopInfo99",
            b"Hg3",
            b"p0",
            b"p0",
            b"p10",
            hexcmd("kaslr").as_bytes(),
        ]);
        assert_eq!(r[0], b"", "not supported");
        assert_eq!(r[1], b"");
        assert_eq!(r[2], format!("T05thread:2;hexname:{};", name("CPU 1")).as_bytes());
        assert_eq!(r[3], r[2]);
        assert_eq!(r[4], b"E02");
        assert_eq!(r[5], b"OK");
        // LLDB's probe of `p` support, then a real read of the same unavailable register.
        assert_eq!(r[6], b"xxxxxxxxxxxxxxxx", "the p0 probe is a normal reply");
        assert_eq!(r[7], b"E01", "unavailable register");
        assert_eq!(r[8], b"03000081ffffffff");
        assert_eq!(
            r[9],
            format!("O{}", hex::encode(b"offset 0x2c600000\n")).as_bytes()
        );
        assert_eq!(r[10], b"OK");
    }

    #[test]
    fn kill_ends_without_reply_and_vkill_with_ok() {
        let (r, end) = session(&[b"k", b"?"]);
        assert!(r.is_empty());
        assert!(matches!(end, SessionEnd::Killed));
        // LLDB (known by its qHostInfo) waits for an exit status.
        let (r, end) = session(&[b"qHostInfo", b"k", b"?"]);
        assert_eq!(r, vec![b"".to_vec(), b"X09".to_vec()]);
        assert!(matches!(end, SessionEnd::Killed));
        let (r, end) = session(&[b"vKill;1"]);
        assert_eq!(r, vec![b"OK".to_vec()]);
        assert!(matches!(end, SessionEnd::Killed));
    }

    #[test]
    fn junk_then_a_good_packet() {
        let mut input: Vec<u8> = (0..5000u32)
            .map(|i| (i * 31 % 251) as u8)
            .filter(|&b| b != b'$')
            .collect();
        input.extend(pkt(b"?"));
        let (r, _, _) = run(&mut mock(), &input);
        assert_eq!(r.last().map(|v| v.as_slice()), Some(&b"T05thread:2;"[..]));
    }
}
