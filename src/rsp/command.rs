//! Parsing a decoded packet payload into a typed command. Parsing never fails: anything not
//! understood is `Unknown` (empty reply) and anything understood but malformed is `Malformed`
//! (error reply), so the session always goes on.

use super::hex;
use crate::target::{Point, PointKind};

/// A thread selector: GDB's 0 means "any", -1 "all".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadSel {
    Any,
    All,
    Id(u64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Supported(&'a [u8]),
    StartNoAckMode,
    StopReason,
    ReadRegisters,
    ReadRegister(usize),
    ReadMemory {
        addr: u64,
        len: u64,
    },
    ReadMemoryBinary {
        addr: u64,
        len: u64,
    },
    /// `M`, `X`, `G`, `P`: refused, kmemd is read-only.
    Write(char),
    XferFeatures {
        annex: &'a [u8],
        offset: u64,
        len: u64,
    },
    XferThreads {
        offset: u64,
        len: u64,
    },
    /// `qXfer:exec-file:read:annex:offset,length` (the annex, a pid, is ignored: one process).
    XferExecFile {
        offset: u64,
        len: u64,
    },
    /// `qXfer:auxv:read::offset,length`: the process's saved auxv (issue 20 item 6).
    XferAuxv {
        offset: u64,
        len: u64,
    },
    /// gdbserver's host I/O (`vFile:`), used by GDB for `/proc/PID/maps` and friends.
    VFile(VFile<'a>),
    Offsets,
    Attached,
    ThreadInfoFirst,
    ThreadInfoNext,
    CurrentThread,
    SetThread {
        op: u8,
        thread: ThreadSel,
    },
    ThreadAlive(ThreadSel),
    ThreadExtraInfo(ThreadSel),
    /// LLDB's `qThreadStopInfo<tid>`: why a thread stopped, where LLDB learns its name.
    ThreadStopInfo(ThreadSel),
    /// A packet only LLDB sends, before anything else (`QThreadSuffixSupported`,
    /// `QListThreadsInStopReply`, `qHostInfo`): kmemd answers it "not supported" and from then
    /// on speaks the way LLDB reads (see server.rs).
    LldbHello,
    Detach,
    Kill,
    VKill,
    VContQuery,
    Continue,
    Step,
    Monitor(Vec<u8>),
    Symbol,
    /// `Z`: arm a breakpoint or watchpoint.
    InsertPoint(Point),
    /// `z`: disarm one.
    RemovePoint(Point),
    /// `qWatchpointSupportInfo`: how many watchpoints the target holds.
    WatchpointSupportInfo,
    /// Understood, but its arguments do not parse.
    Malformed(&'static str),
    Unknown,
}

/// The `vFile:` requests GDB sends to read a target's files (GDB manual, "Host I/O Packets").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VFile<'a> {
    /// `vFile:setfs:pid`: later opens see the filesystem of that process (0: the server's own).
    Setfs(u64),
    /// `vFile:open:pathname,flags,mode` (pathname hex-encoded).
    Open { path: Vec<u8>, flags: u64, mode: u64 },
    /// `vFile:pread:fd,count,offset`
    Pread { fd: u64, count: u64, offset: u64 },
    /// `vFile:close:fd`
    Close(u64),
    /// Any other host I/O request (`fstat`, `unlink`, `readlink`, `pwrite`): its name.
    Other(&'a [u8]),
}

fn split2(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&c| c == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

fn addr_len(args: &[u8]) -> Option<(u64, u64)> {
    let (a, l) = split2(args, b',')?;
    // `X` packets carry `:data` after the length; reads do not, but tolerate it.
    let l = split2(l, b':').map_or(l, |(l, _)| l);
    Some((hex::parse_u64(a)?, hex::parse_u64(l)?))
}

/// Thread ids: `-1`, `0`, hex, or with multiprocess `pP.T`.
fn thread_sel(s: &[u8]) -> Option<ThreadSel> {
    let s = match s.strip_prefix(b"p") {
        Some(rest) => split2(rest, b'.').map_or(rest, |(_, t)| t),
        None => s,
    };
    match s {
        b"-1" => Some(ThreadSel::All),
        b"0" => Some(ThreadSel::Any),
        _ => hex::parse_u64(s).map(ThreadSel::Id),
    }
}

/// `Z`/`z` arguments: `type,addr,kind`, then conditions and commands after `;` (never
/// offered, so ignored).
fn point(args: &[u8]) -> Option<Point> {
    let args = split2(args, b';').map_or(args, |(a, _)| a);
    let (kind, rest) = split2(args, b',')?;
    let kind = match kind {
        [d] => PointKind::from_digit(*d)?,
        _ => return None,
    };
    let (addr, len) = addr_len(rest)?;
    Some(Point { kind, addr, len })
}

/// `qXfer:object:read:annex:offset,length`
fn xfer(rest: &[u8]) -> Option<(&[u8], &[u8], u64, u64)> {
    let (object, rest) = split2(rest, b':')?;
    let (op, rest) = split2(rest, b':')?;
    if op != b"read" {
        return None;
    }
    let colon = rest.iter().rposition(|&c| c == b':')?;
    let (annex, range) = (&rest[..colon], &rest[colon + 1..]);
    let (offset, len) = addr_len(range)?;
    Some((object, annex, offset, len))
}

/// Three comma-separated hex numbers, nothing after them.
fn three_hex(s: &[u8]) -> Option<(u64, u64, u64)> {
    let (a, rest) = split2(s, b',')?;
    let (b, c) = split2(rest, b',')?;
    Some((hex::parse_u64(a)?, hex::parse_u64(b)?, hex::parse_u64(c)?))
}

/// Parses what follows `vFile:`; `None` when a known request's arguments do not parse.
fn vfile(req: &[u8]) -> Option<VFile<'_>> {
    let (name, args) = split2(req, b':').unwrap_or((req, &[]));
    match name {
        b"setfs" => hex::parse_u64(args).map(VFile::Setfs),
        b"open" => {
            let (path, rest) = split2(args, b',')?;
            let (flags, mode) = split2(rest, b',')?;
            let path = hex::decode(path).filter(|p| !p.is_empty())?;
            Some(VFile::Open {
                path,
                flags: hex::parse_u64(flags)?,
                mode: hex::parse_u64(mode)?,
            })
        }
        b"pread" => three_hex(args).map(|(fd, count, offset)| VFile::Pread { fd, count, offset }),
        b"close" => hex::parse_u64(args).map(VFile::Close),
        _ => Some(VFile::Other(name)),
    }
}

pub fn parse(p: &[u8]) -> Command<'_> {
    use Command::*;
    let Some((&first, rest)) = p.split_first() else {
        return Unknown;
    };
    match first {
        b'?' => StopReason,
        b'g' if rest.is_empty() => ReadRegisters,
        b'p' => hex::parse_u64(rest)
            .and_then(|n| usize::try_from(n).ok())
            .map_or(Malformed("register number"), ReadRegister),
        b'm' => addr_len(rest).map_or(Malformed("m addr,length"), |(addr, len)| ReadMemory { addr, len }),
        b'x' => addr_len(rest).map_or(Malformed("x addr,length"), |(addr, len)| ReadMemoryBinary {
            addr,
            len,
        }),
        b'M' | b'X' | b'G' | b'P' => Write(first as char),
        b'H' => match rest.split_first() {
            Some((&op, t)) => thread_sel(t).map_or(Malformed("H thread"), |thread| SetThread { op, thread }),
            None => Malformed("H thread"),
        },
        b'T' => thread_sel(rest).map_or(Malformed("T thread"), ThreadAlive),
        b'D' => Detach,
        b'k' => Kill,
        b'Z' | b'z' => match point(rest) {
            Some(p) if first == b'Z' => InsertPoint(p),
            Some(p) => RemovePoint(p),
            None => Malformed("Z/z type,addr,kind"),
        },
        b'c' => Continue,
        b's' => Step,
        b'q' => parse_query(p),
        b'Q' if p == b"QStartNoAckMode" => StartNoAckMode,
        b'Q' if p == b"QThreadSuffixSupported" || p == b"QListThreadsInStopReply" => LldbHello,
        b'v' => {
            if p == b"vCont?" {
                VContQuery
            } else if p.starts_with(b"vKill") {
                VKill
            } else if let Some(req) = p.strip_prefix(b"vFile:") {
                vfile(req).map_or(Malformed("vFile"), VFile)
            } else if let Some(actions) = p.strip_prefix(b"vCont;") {
                // All-stop: one action applies to every thread; we only tell continue from step.
                match actions.first() {
                    Some(b'c') | Some(b'C') => Continue,
                    Some(b's') | Some(b'S') => Step,
                    _ => Unknown,
                }
            } else {
                Unknown
            }
        }
        _ => Unknown,
    }
}

fn parse_query(p: &[u8]) -> Command<'_> {
    use Command::*;
    if let Some(features) = p.strip_prefix(b"qSupported") {
        return Supported(features.strip_prefix(b":").unwrap_or(features));
    }
    if let Some(rest) = p.strip_prefix(b"qXfer:") {
        return match xfer(rest) {
            Some((b"features", annex, offset, len)) => XferFeatures { annex, offset, len },
            Some((b"threads", _, offset, len)) => XferThreads { offset, len },
            Some((b"exec-file", _, offset, len)) => XferExecFile { offset, len },
            Some((b"auxv", _, offset, len)) => XferAuxv { offset, len },
            Some(_) => Unknown,
            None => Malformed("qXfer"),
        };
    }
    if let Some(cmd) = p.strip_prefix(b"qRcmd,") {
        return hex::decode(cmd).map_or(Malformed("qRcmd hex"), Monitor);
    }
    if let Some(t) = p.strip_prefix(b"qThreadExtraInfo,") {
        return thread_sel(t).map_or(Malformed("qThreadExtraInfo thread"), ThreadExtraInfo);
    }
    if let Some(t) = p.strip_prefix(b"qThreadStopInfo") {
        return thread_sel(t).map_or(Malformed("qThreadStopInfo thread"), ThreadStopInfo);
    }
    if p.starts_with(b"qSymbol") {
        return Symbol;
    }
    match p {
        b"qHostInfo" => LldbHello,
        b"qOffsets" => Offsets,
        b"qWatchpointSupportInfo" | b"qWatchpointSupportInfo:" => WatchpointSupportInfo,
        b"qfThreadInfo" => ThreadInfoFirst,
        b"qsThreadInfo" => ThreadInfoNext,
        b"qC" => CurrentThread,
        _ if p.starts_with(b"qAttached") => Attached,
        _ => Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::Command::*;
    use super::*;

    #[test]
    fn every_supported_packet_parses() {
        let cases: Vec<(&[u8], Command)> = vec![
            (
                b"qSupported:multiprocess+;xmlRegisters=i386",
                Supported(b"multiprocess+;xmlRegisters=i386"),
            ),
            (b"qSupported", Supported(b"")),
            (b"QStartNoAckMode", StartNoAckMode),
            (b"?", StopReason),
            (b"g", ReadRegisters),
            (b"p10", ReadRegister(16)),
            (
                b"mffffffff81000000,40",
                ReadMemory {
                    addr: 0xffff_ffff_8100_0000,
                    len: 0x40,
                },
            ),
            (
                b"xffffffff81000000,80000",
                ReadMemoryBinary {
                    addr: 0xffff_ffff_8100_0000,
                    len: 0x80000,
                },
            ),
            (b"M1000,2:abcd", Write('M')),
            (b"X1000,2:ab", Write('X')),
            (b"G00", Write('G')),
            (b"P10=00", Write('P')),
            (
                b"qXfer:features:read:target.xml:0,ffb",
                XferFeatures {
                    annex: b"target.xml",
                    offset: 0,
                    len: 0xffb,
                },
            ),
            (
                b"qXfer:threads:read::1f0,ffb",
                XferThreads {
                    offset: 0x1f0,
                    len: 0xffb,
                },
            ),
            (b"qOffsets", Offsets),
            (b"qAttached", Attached),
            (b"qAttached:1", Attached),
            (b"qfThreadInfo", ThreadInfoFirst),
            (b"qsThreadInfo", ThreadInfoNext),
            (b"qC", CurrentThread),
            (
                b"Hg0",
                SetThread {
                    op: b'g',
                    thread: ThreadSel::Any,
                },
            ),
            (
                b"Hc-1",
                SetThread {
                    op: b'c',
                    thread: ThreadSel::All,
                },
            ),
            (
                b"Hgp1.a",
                SetThread {
                    op: b'g',
                    thread: ThreadSel::Id(10),
                },
            ),
            (b"T2", ThreadAlive(ThreadSel::Id(2))),
            (b"qThreadExtraInfo,3", ThreadExtraInfo(ThreadSel::Id(3))),
            (b"D", Detach),
            (b"D;1", Detach),
            (b"k", Kill),
            (b"vKill;1", VKill),
            (b"vCont?", VContQuery),
            (b"vCont;c", Continue),
            (b"vCont;c:1", Continue),
            (b"vCont;s:1", Step),
            (b"c", Continue),
            (b"s", Step),
            (b"qRcmd,68656c70", Monitor(b"help".to_vec())),
            (b"qSymbol::", Symbol),
            (b"qWatchpointSupportInfo", WatchpointSupportInfo),
            (b"qWatchpointSupportInfo:", WatchpointSupportInfo),
            (
                b"Z2,ffffffff82a0c0c0,4",
                InsertPoint(Point {
                    kind: PointKind::Write,
                    addr: 0xffff_ffff_82a0_c0c0,
                    len: 4,
                }),
            ),
            (
                b"z3,ffff888001234560,8",
                RemovePoint(Point {
                    kind: PointKind::Read,
                    addr: 0xffff_8880_0123_4560,
                    len: 8,
                }),
            ),
            (
                b"Z4,10,1",
                InsertPoint(Point {
                    kind: PointKind::Access,
                    addr: 0x10,
                    len: 1,
                }),
            ),
            (
                b"Z1,ffffffff81000000,1",
                InsertPoint(Point {
                    kind: PointKind::Hardware,
                    addr: 0xffff_ffff_8100_0000,
                    len: 1,
                }),
            ),
            (
                // Conditions and commands (never offered) do not hide the point itself.
                b"Z0,ffffffff81000000,1;X3,220027;cmds:0,X3,220027",
                InsertPoint(Point {
                    kind: PointKind::Software,
                    addr: 0xffff_ffff_8100_0000,
                    len: 1,
                }),
            ),
            (
                b"z0,ffffffff81000000,1",
                RemovePoint(Point {
                    kind: PointKind::Software,
                    addr: 0xffff_ffff_8100_0000,
                    len: 1,
                }),
            ),
        ];
        for (pkt, want) in cases {
            assert_eq!(parse(pkt), want, "{}", String::from_utf8_lossy(pkt));
        }
    }

    #[test]
    fn unknown_and_malformed() {
        for pkt in [
            &b""[..],
            b"vMustReplyEmpty",
            b"qTStatus",
            b"QThreadEvents:1",
            b"!",
            b"gX",
        ] {
            assert_eq!(parse(pkt), Unknown, "{}", String::from_utf8_lossy(pkt));
        }
        for pkt in [
            &b"m"[..],
            b"mzz,4",
            b"m0",
            b"m0,",
            b"m11111111111111111,1",
            b"x1,q",
            b"pq",
            b"Hgzz",
            b"H",
            b"T",
            b"qRcmd,6",
            b"qXfer:features:read:target.xml",
            b"qThreadExtraInfo,",
            b"Z",
            b"Z5,1000,1",
            b"Z22,1000,1",
            b"Z2",
            b"Z2,1000",
            b"z2,zz,4",
            b"Z2,1000,",
            b"Z2,11111111111111111,4",
            b"Z,1000,4",
        ] {
            assert!(
                matches!(parse(pkt), Malformed(_)),
                "{}",
                String::from_utf8_lossy(pkt)
            );
        }
    }

    #[test]
    fn xfer_of_other_objects_or_writes_is_unknown() {
        assert_eq!(parse(b"qXfer:libraries:read::0,100"), Unknown);
        assert_eq!(
            parse(b"qThreadStopInfo1000f"),
            ThreadStopInfo(ThreadSel::Id(0x1000f))
        );
        assert_eq!(parse(b"qThreadStopInfozz"), Malformed("qThreadStopInfo thread"));
        for p in [
            &b"QThreadSuffixSupported"[..],
            b"QListThreadsInStopReply",
            b"qHostInfo",
        ] {
            assert_eq!(parse(p), LldbHello);
        }
        assert_eq!(
            parse(b"qXfer:exec-file:read::0,1000"),
            XferExecFile {
                offset: 0,
                len: 0x1000
            }
        );
        assert!(matches!(parse(b"qXfer:features:write:x:0,1"), Malformed(_)));
    }

    #[test]
    fn auxv_and_vfile_requests_parse() {
        assert_eq!(
            parse(b"qXfer:auxv:read::10,ffb"),
            XferAuxv {
                offset: 0x10,
                len: 0xffb
            }
        );
        assert_eq!(parse(b"vFile:setfs:0"), VFile(super::VFile::Setfs(0)));
        assert_eq!(parse(b"vFile:setfs:4d2"), VFile(super::VFile::Setfs(1234)));
        // "/proc/1234/maps", flags O_RDONLY, mode 0.
        let open = [
            &b"vFile:open:"[..],
            crate::rsp::hex::encode(b"/proc/1234/maps").as_bytes(),
            b",0,0",
        ]
        .concat();
        assert_eq!(
            parse(&open),
            VFile(super::VFile::Open {
                path: b"/proc/1234/maps".to_vec(),
                flags: 0,
                mode: 0
            })
        );
        assert_eq!(
            parse(b"vFile:pread:3,3fff,1000"),
            VFile(super::VFile::Pread {
                fd: 3,
                count: 0x3fff,
                offset: 0x1000
            })
        );
        assert_eq!(parse(b"vFile:close:3"), VFile(super::VFile::Close(3)));
        assert_eq!(parse(b"vFile:fstat:3"), VFile(super::VFile::Other(b"fstat")));
    }

    #[test]
    fn malformed_vfile_requests_are_malformed() {
        for pkt in [
            &b"vFile:setfs:"[..],
            b"vFile:setfs:zz",
            b"vFile:open:2f70,0",
            b"vFile:open:,0,0",
            b"vFile:open:2f7,0,0",
            b"vFile:open:2f70,x,0",
            b"vFile:pread:3,10",
            b"vFile:pread:3,10,zz",
            b"vFile:pread:3,10,0,0",
            b"vFile:close:",
            b"vFile:close:-1",
        ] {
            assert_eq!(parse(pkt), Malformed("vFile"), "{}", String::from_utf8_lossy(pkt));
        }
        assert!(matches!(parse(b"qXfer:auxv:read::zz,10"), Malformed(_)));
    }
}
