//! Encoding replies: what kmemd answers, as pure functions that append a payload to a buffer
//! (framing.rs frames it). The session (src/server.rs) decides what to answer; this file decides
//! how it looks on the wire, and its tables test that without a target.

use super::hex;
use super::PACKET_SIZE;
use crate::arch::{RegDesc, Registers};
use crate::mem::MemErrorKind;
use crate::target::{Capabilities, PointKind, ThreadInfo, Tid};

/// Largest read answered in one `m`/`x` reply (and the largest `qXfer` chunk): the hex (or
/// worst-case escaped) form must fit the advertised packet size.
pub const MAX_READ: usize = (PACKET_SIZE - 16) / 2;

/// Thread ids per `qfThreadInfo`/`qsThreadInfo` reply.
pub const IDS_PER_REPLY: usize = 200;

/// The `qSupported` reply: the packet size (GDB 13 reads 560 bytes per `m` without it), what the
/// session itself always does (no-ack mode, binary reads, vCont), and the target's features.
/// `exec_file`: the target names the file GDB should load (`qXfer:exec-file:read`). Offered only
/// then: once offered, GDB warns when the file it was given differs from the one named.
/// `auxv`: the target serves a process's auxiliary vector (`qXfer:auxv:read`), only `--pid`.
/// `multiprocess`: thread ids carry the process id (`pPID.TID`), only for `--pid` and only when
/// GDB offered it: GDB then knows the real pid and reads `/proc/PID/maps` for `info proc
/// mappings` and `generate-core-file` (without it GDB uses a made-up pid and refuses both).
/// `points`: the session serves `Z`/`z`, so its stops may say `hwbreak` (GDB then knows a stop at
/// a breakpoint address came from the breakpoint, not from something else).
pub fn supported(
    caps: Capabilities,
    exec_file: bool,
    auxv: bool,
    multiprocess: bool,
    points: bool,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(format!("PacketSize={PACKET_SIZE:x};QStartNoAckMode+;").as_bytes());
    if multiprocess {
        out.extend_from_slice(b"multiprocess+;");
    }
    if exec_file {
        out.extend_from_slice(b"qXfer:exec-file:read+;");
    }
    if auxv {
        out.extend_from_slice(b"qXfer:auxv:read+;");
    }
    if caps.target_description {
        out.extend_from_slice(b"qXfer:features:read+;");
    }
    if caps.thread_list {
        out.extend_from_slice(b"qXfer:threads:read+;");
    }
    if points {
        out.extend_from_slice(b"hwbreak+;");
    }
    out.extend_from_slice(b"binary-upload+;vContSupported+");
}

/// A thread id as GDB reads it: hex, or `pPID.TID` when the session is multiprocess (`pid`).
pub fn thread_id(pid: Option<u32>, tid: Tid) -> String {
    match pid {
        Some(p) => format!("p{p:x}.{tid:x}"),
        None => format!("{tid:x}"),
    }
}

/// The stop reply for a hit of a breakpoint or watchpoint: `T05`, then `watch:ADDR`,
/// `rwatch:ADDR` or `awatch:ADDR` (the watched address GDB asked for) or `hwbreak:`, then the
/// thread (as [`thread_id`] writes it).
pub fn stop_hit(kind: PointKind, addr: u64, pid: Option<u32>, tid: Tid, out: &mut Vec<u8>) {
    let reason = match kind {
        PointKind::Write => format!("watch:{addr:x}"),
        PointKind::Read => format!("rwatch:{addr:x}"),
        PointKind::Access => format!("awatch:{addr:x}"),
        PointKind::Software | PointKind::Hardware => "hwbreak:".to_string(),
    };
    out.extend_from_slice(format!("T05{reason};thread:{};", thread_id(pid, tid)).as_bytes());
}

/// The `qWatchpointSupportInfo` reply.
pub fn watchpoint_info(slots: usize, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("num:{slots};").as_bytes());
}

/// An `E.` reply: an error GDB prints with its text (as "Remote failure reply: ..." for a
/// resume, or in its own error for other packets).
pub fn error_text(text: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(b"E.");
    // `$`, `#` and `}` would need escaping in a packet; a sentence never needs them.
    out.extend(text.bytes().map(|b| match b {
        b'$' | b'#' | b'}' | b'*' => b'?',
        b => b,
    }));
}

/// A stop reply for `?` and for an interrupt: `T` + signal + the stopped thread.
pub fn stop(signal: u8, pid: Option<u32>, tid: Tid, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("T{signal:02x}thread:{};", thread_id(pid, tid)).as_bytes());
}

/// LLDB's form of a stop reply: [`stop`] plus the thread's name as `hexname:` (the key LLDB's
/// gdb-remote reads names from, lldb/docs/lldb-gdb-remote.txt; GDB ignores it, but is not sent it).
pub fn stop_named(signal: u8, pid: Option<u32>, tid: Tid, name: &str, out: &mut Vec<u8>) {
    stop(signal, pid, tid, out);
    out.extend_from_slice(b"hexname:");
    hex::encode_into(name.as_bytes(), out);
    out.push(b';');
}

/// A `qRcmd` reply's text as one console-output packet (`O` + hex), which GDB and LLDB print as
/// it comes; the final reply then says only how the command ended.
pub fn console_output(text: &str, out: &mut Vec<u8>) {
    out.push(b'O');
    hex::encode_into(text.as_bytes(), out);
}

/// The `qOffsets` reply: the KASLR slide for `.text`, `.data` and `.bss` (what GDB applies it
/// to is measured in kernel/kaslr.rs's `kaslr_text`).
pub fn offsets(slide: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("Text={slide:x};Data={slide:x};Bss={slide:x}").as_bytes());
}

/// One `qfThreadInfo`/`qsThreadInfo` reply: `m` + up to [`IDS_PER_REPLY`] ids taken from the
/// end of `pending` (the caller stores them reversed), or `l` when none are left.
pub fn thread_ids(pid: Option<u32>, pending: &mut Vec<Tid>, out: &mut Vec<u8>) {
    if pending.is_empty() {
        out.push(b'l');
        return;
    }
    out.push(b'm');
    for i in 0..IDS_PER_REPLY {
        let Some(tid) = pending.pop() else { break };
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(thread_id(pid, tid).as_bytes());
    }
}

/// One register in target-description order: its value as little-endian hex, `size` bytes wide;
/// `x` digits when unknown. Registers wider than 64 bits are never known, so their upper bytes
/// are `x`, which keeps the layout GDB expects.
pub fn register(size: usize, value: Option<u64>, out: &mut Vec<u8>) {
    match value {
        Some(v) => {
            let le = v.to_le_bytes();
            let n = size.min(8);
            hex::encode_into(le.get(..n).unwrap_or_default(), out);
            out.extend(std::iter::repeat_n(b'x', (size - n) * 2));
        }
        None => out.extend(std::iter::repeat_n(b'x', size * 2)),
    }
}

/// The `g` reply: every register of `descs`, in order.
pub fn registers(descs: &[RegDesc], regs: &Registers, out: &mut Vec<u8>) {
    for (i, d) in descs.iter().enumerate() {
        register(d.bytes(), regs.0.get(i).copied().flatten(), out);
    }
}

/// An `m` (hex) or `x` (`b` + escaped binary) reply carrying `bytes`.
pub fn memory(bytes: &[u8], binary: bool, out: &mut Vec<u8>) {
    if binary {
        out.push(b'b');
        hex::escape_binary_into(bytes, out);
    } else {
        hex::encode_into(bytes, out);
    }
}

/// The most bytes [`memory`] writes for `len` bytes: every byte as two (hex digits, or an
/// escaped binary byte), plus `b`.
pub fn memory_len_max(len: usize, binary: bool) -> usize {
    len.saturating_mul(2).saturating_add(usize::from(binary))
}

/// The reply to a memory read that could not read its first byte: the one place a failure's kind
/// becomes an errno. Every kind is EFAULT (`E14`, the errno's decimal digits as kmemd has always
/// sent them): GDB reports any `Exx` to an `m`/`x` packet as "Cannot access memory at address",
/// so the kind goes to the log, and GDB sees what a faulting access in the kernel would give.
/// The match is exhaustive so that a new kind has to decide here.
pub fn mem_error(kind: MemErrorKind) -> &'static str {
    match kind {
        MemErrorKind::NotPresent { .. }
        | MemErrorKind::Excluded
        | MemErrorKind::NotInDump
        | MemErrorKind::Corrupt
        | MemErrorKind::Unsupported
        | MemErrorKind::Fault => "E14",
    }
}

/// Writes the `qXfer` reply for `[offset, offset+len)` of `doc`: `m` + data when more follows,
/// `l` + data for the last part (data binary-escaped, at most [`MAX_READ`] bytes of it).
pub fn xfer_chunk(doc: &[u8], offset: u64, len: u64, out: &mut Vec<u8>) {
    let start = usize::try_from(offset).unwrap_or(usize::MAX).min(doc.len());
    let len = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_READ);
    let end = start.saturating_add(len).min(doc.len());
    out.push(if end < doc.len() { b'm' } else { b'l' });
    hex::escape_binary_into(doc.get(start..end).unwrap_or_default(), out);
}

/// A host I/O (`vFile:`) result: `F` and the value in hex (an fd, a length, 0 for success).
pub fn vfile_result(value: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("F{value:x}").as_bytes());
}

/// A failed host I/O request in gdbserver's form, `F-1,errno` (errno in hex, as GDB's
/// `remote_hostio_parse_result` reads it).
pub fn vfile_error(errno: u32, out: &mut Vec<u8>) {
    out.extend_from_slice(format!("F-1,{errno:x}").as_bytes());
}

/// A `vFile:pread` answer: `F` + the byte count in hex + `;` + the bytes binary-escaped (at most
/// [`MAX_READ`] of them).
pub fn vfile_data(data: &[u8], out: &mut Vec<u8>) {
    let data = data.get(..MAX_READ).unwrap_or(data);
    out.extend_from_slice(format!("F{:x};", data.len()).as_bytes());
    hex::escape_binary_into(data, out);
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '&' => "&amp;".to_string(),
            '"' => "&quot;".to_string(),
            c if c.is_control() => "?".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The `qXfer:threads:read` document.
pub fn threads_xml(pid: Option<u32>, threads: &[ThreadInfo]) -> Vec<u8> {
    let mut s = String::from("<?xml version=\"1.0\"?>\n<threads>\n");
    for t in threads {
        s.push_str(&format!(
            "<thread id=\"{}\" name=\"{}\"",
            thread_id(pid, t.tid),
            xml_escape(&t.name)
        ));
        if let Some(core) = t.core {
            s.push_str(&format!(" core=\"{core}\""));
        }
        s.push_str(&format!(">{}</thread>\n", xml_escape(&t.extra)));
    }
    s.push_str("</threads>\n");
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn supported_follows_the_capabilities() {
        assert_eq!(
            text(|o| supported(Capabilities::ALL, false, false, false, false, o)),
            "PacketSize=100000;QStartNoAckMode+;qXfer:features:read+;qXfer:threads:read+;\
             binary-upload+;vContSupported+"
        );
        assert_eq!(
            text(|o| supported(Capabilities::ALL, false, false, false, true, o)),
            "PacketSize=100000;QStartNoAckMode+;qXfer:features:read+;qXfer:threads:read+;\
             hwbreak+;binary-upload+;vContSupported+"
        );
        let none = Capabilities {
            target_description: false,
            thread_list: false,
        };
        assert_eq!(
            text(|o| supported(none, false, false, false, false, o)),
            "PacketSize=100000;QStartNoAckMode+;binary-upload+;vContSupported+"
        );
        let xml_only = Capabilities {
            thread_list: false,
            ..Capabilities::ALL
        };
        let t = text(|o| supported(xml_only, false, false, false, false, o));
        assert!(
            t.contains("qXfer:features:read+") && !t.contains("threads"),
            "{t}"
        );
        assert!(!t.contains("exec-file"), "{t}");
        let t = text(|o| supported(none, true, false, false, false, o));
        assert!(t.contains(";qXfer:exec-file:read+;"), "{t}");
        assert!(!t.contains("auxv"), "{t}");
        let t = text(|o| supported(none, false, true, false, false, o));
        assert!(t.contains(";qXfer:auxv:read+;"), "{t}");
        assert!(!t.contains("multiprocess"), "{t}");
        let t = text(|o| supported(none, false, true, true, false, o));
        assert!(t.contains(";multiprocess+;"), "{t}");
    }

    #[test]
    fn multiprocess_thread_ids_carry_the_pid() {
        assert_eq!(thread_id(None, 0x5d), "5d");
        assert_eq!(thread_id(Some(0x5d), 0x5e), "p5d.5e");
        assert_eq!(text(|o| stop(5, Some(93), 94, o)), "T05thread:p5d.5e;");
        let mut pending = vec![94, 93];
        assert_eq!(text(|o| thread_ids(Some(93), &mut pending, o)), "mp5d.5d,p5d.5e");
        let t = ThreadInfo {
            tid: 93,
            name: "sleep".into(),
            extra: String::new(),
            core: None,
        };
        let xml = String::from_utf8(threads_xml(Some(93), &[t])).expect("threads XML is UTF-8");
        assert!(xml.contains("<thread id=\"p5d.5d\" name=\"sleep\""), "{xml}");
    }

    #[test]
    fn stop_and_offsets() {
        for (signal, tid, want) in [
            (5, 2, "T05thread:2;"),
            (2, 0x10001, "T02thread:10001;"),
            (0x11, 1, "T11thread:1;"),
        ] {
            assert_eq!(text(|o| stop(signal, None, tid, o)), want);
        }
        assert_eq!(
            text(|o| offsets(0x2c60_0000, o)),
            "Text=2c600000;Data=2c600000;Bss=2c600000"
        );
        assert_eq!(text(|o| offsets(0, o)), "Text=0;Data=0;Bss=0");
    }

    #[test]
    fn hit_stops_name_the_reason_the_address_and_the_thread() {
        let a = 0xffff_ffff_82a0_c0c0;
        for (kind, want) in [
            (PointKind::Write, "T05watch:ffffffff82a0c0c0;thread:10123;"),
            (PointKind::Read, "T05rwatch:ffffffff82a0c0c0;thread:10123;"),
            (PointKind::Access, "T05awatch:ffffffff82a0c0c0;thread:10123;"),
            (PointKind::Hardware, "T05hwbreak:;thread:10123;"),
            (PointKind::Software, "T05hwbreak:;thread:10123;"),
        ] {
            assert_eq!(text(|o| stop_hit(kind, a, None, 0x10123, o)), want);
        }
        assert_eq!(text(|o| watchpoint_info(4, o)), "num:4;");
    }

    #[test]
    fn error_texts_never_carry_framing_bytes() {
        assert_eq!(text(|o| error_text("no $slot# left}*", o)), "E.no ?slot? left??");
    }

    #[test]
    fn thread_ids_come_in_batches_then_l() {
        let mut pending: Vec<Tid> = vec![3, 2, 1];
        assert_eq!(text(|o| thread_ids(None, &mut pending, o)), "m1,2,3");
        assert_eq!(text(|o| thread_ids(None, &mut pending, o)), "l");
        let mut many: Vec<Tid> = (1..=(IDS_PER_REPLY as u64 + 1)).rev().collect();
        let first = text(|o| thread_ids(None, &mut many, o));
        assert_eq!(first.matches(',').count(), IDS_PER_REPLY - 1, "{first}");
        assert!(first.starts_with("m1,2,") && first.ends_with(",c8"), "{first}");
        assert_eq!(text(|o| thread_ids(None, &mut many, o)), "mc9");
        assert_eq!(text(|o| thread_ids(None, &mut many, o)), "l");
    }

    #[test]
    fn registers_are_little_endian_and_x_when_unknown() {
        for (size, value, want) in [
            (8, Some(0xffff_ffff_8100_0003), "03000081ffffffff"),
            (4, Some(0x246), "46020000"),
            (4, None, "xxxxxxxx"),
            (10, Some(0x1122), "2211000000000000xxxx"),
            (10, None, "xxxxxxxxxxxxxxxxxxxx"),
        ] {
            assert_eq!(text(|o| register(size, value, o)), want, "size {size}");
        }
        let descs = vec![
            RegDesc {
                name: "a".into(),
                bits: 64,
            },
            RegDesc {
                name: "b".into(),
                bits: 32,
            },
            RegDesc {
                name: "c".into(),
                bits: 32,
            },
        ];
        // Fewer values than registers: the rest are unknown.
        let regs = Registers(vec![Some(1), None]);
        assert_eq!(
            text(|o| registers(&descs, &regs, o)),
            "0100000000000000xxxxxxxxxxxxxxxx"
        );
    }

    #[test]
    fn memory_in_hex_or_escaped_binary() {
        assert_eq!(text(|o| memory(b"\x01#z", false, o)), "01237a");
        let mut out = Vec::new();
        memory(b"\x01#z", true, &mut out);
        assert_eq!(out, b"b\x01}\x03z");
        assert_eq!(text(|o| memory(b"", false, o)), "");
    }

    #[test]
    fn every_memory_error_is_efault() {
        for kind in [
            MemErrorKind::NotPresent { level: 2 },
            MemErrorKind::Excluded,
            MemErrorKind::NotInDump,
            MemErrorKind::Corrupt,
            MemErrorKind::Unsupported,
            MemErrorKind::Fault,
        ] {
            assert_eq!(mem_error(kind), "E14", "{kind:?}");
        }
    }

    #[test]
    fn xfer_chunks_say_whether_more_follows() {
        let doc = b"0123456789";
        for (offset, len, want) in [
            (0, 4, "m0123"),
            (4, 6, "l456789"),
            (4, 100, "l456789"),
            (10, 4, "l"),
            (11, 4, "l"),
            (u64::MAX, u64::MAX, "l"),
            (0, 0, "m"),
        ] {
            assert_eq!(text(|o| xfer_chunk(doc, offset, len, o)), want, "{offset},{len}");
        }
        let mut out = Vec::new();
        xfer_chunk(b"a}b", 0, 10, &mut out);
        assert_eq!(out, b"la}]b", "escaped");
        let big = vec![b'q'; MAX_READ + 10];
        let mut out = Vec::new();
        xfer_chunk(&big, 0, u64::MAX, &mut out);
        assert_eq!((out[0], out.len()), (b'm', MAX_READ + 1), "capped at MAX_READ");
    }

    #[test]
    fn threads_document_escapes_names() {
        let threads = vec![
            ThreadInfo {
                tid: 1,
                name: "CPU 0".into(),
                extra: "CPU 0 <&>\"".into(),
                core: Some(0),
            },
            ThreadInfo {
                tid: 0x10001,
                name: "a\u{7}b".into(),
                extra: "pid 1".into(),
                core: None,
            },
        ];
        let xml = String::from_utf8(threads_xml(None, &threads)).expect("threads XML is UTF-8");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\"?>\n<threads>\n\
             <thread id=\"1\" name=\"CPU 0\" core=\"0\">CPU 0 &lt;&amp;&gt;&quot;</thread>\n\
             <thread id=\"10001\" name=\"a?b\">pid 1</thread>\n\
             </threads>\n"
        );
        assert_eq!(
            String::from_utf8(threads_xml(None, &[])).expect("threads XML is UTF-8"),
            "<?xml version=\"1.0\"?>\n<threads>\n</threads>\n"
        );
    }

    #[test]
    fn vfile_replies_have_gdbservers_form() {
        let mut out = Vec::new();
        vfile_result(0x1f, &mut out);
        assert_eq!(out, b"F1f");
        out.clear();
        vfile_error(2, &mut out);
        assert_eq!(out, b"F-1,2");
        out.clear();
        vfile_error(13, &mut out);
        assert_eq!(out, b"F-1,d");
        out.clear();
        vfile_data(b"a#b", &mut out);
        assert_eq!(out, b"F3;a}\x03b");
        out.clear();
        let big = vec![b'x'; MAX_READ + 10];
        vfile_data(&big, &mut out);
        let head = format!("F{:x};", MAX_READ);
        assert!(out.starts_with(head.as_bytes()));
        assert_eq!(out.len(), head.len() + MAX_READ);
    }
}
