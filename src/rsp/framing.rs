//! RSP framing as a byte-at-a-time state machine: `$payload#cs` packets, `+`/`-` acks and the
//! interrupt byte 0x03. Escapes (`}`) and run-length encoding (`*`) are undone on input; the
//! checksum covers the bytes as sent.

use super::hex;

/// What the decoder recognised in the byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A packet whose checksum matched, payload decoded.
    Packet(Vec<u8>),
    /// `+`
    Ack,
    /// `-`: the peer wants the last packet again.
    Nack,
    /// 0x03 outside a packet: GDB's Ctrl-C.
    Interrupt,
    /// A packet whose checksum did not match, or whose checksum was not hex.
    BadChecksum,
    /// A packet with a valid checksum but a malformed run-length sequence.
    Malformed,
    /// A packet longer than the decoder's limit; its bytes were discarded.
    TooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Body,
    Check1,
    Check2(u8),
}

/// Incremental decoder. Memory is bounded by `max_len` whatever the input.
#[derive(Debug)]
pub struct Decoder {
    state: State,
    raw: Vec<u8>,
    sum: u8,
    overflow: bool,
    max_len: usize,
}

impl Decoder {
    /// `max_len` bounds the raw (still escaped) payload kept in memory.
    pub fn new(max_len: usize) -> Decoder {
        Decoder {
            state: State::Idle,
            raw: Vec::new(),
            sum: 0,
            overflow: false,
            max_len,
        }
    }

    /// Whether the decoder is between packets (so a 0x03 now is an interrupt).
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// Feeds one byte; returns an event when one is complete.
    pub fn push(&mut self, b: u8) -> Option<Event> {
        match self.state {
            State::Idle => match b {
                b'$' => {
                    self.start();
                    None
                }
                b'+' => Some(Event::Ack),
                b'-' => Some(Event::Nack),
                0x03 => Some(Event::Interrupt),
                _ => None, // line noise between packets is ignored, as GDB does
            },
            State::Body => {
                match b {
                    b'#' => self.state = State::Check1,
                    // A `$` inside a packet means the sender started over (a lost `#`): resync.
                    b'$' => self.start(),
                    _ => {
                        self.sum = self.sum.wrapping_add(b);
                        if self.raw.len() < self.max_len {
                            self.raw.push(b);
                        } else {
                            self.overflow = true;
                        }
                    }
                }
                None
            }
            State::Check1 => match hex::digit(b) {
                Some(d) => {
                    self.state = State::Check2(d);
                    None
                }
                None => self.finish_bad(),
            },
            State::Check2(hi) => match hex::digit(b) {
                Some(lo) => Some(self.finish(hi << 4 | lo)),
                None => self.finish_bad(),
            },
        }
    }

    fn start(&mut self) {
        self.state = State::Body;
        self.raw.clear();
        self.sum = 0;
        self.overflow = false;
    }

    fn finish_bad(&mut self) -> Option<Event> {
        self.state = State::Idle;
        self.raw.clear();
        Some(Event::BadChecksum)
    }

    fn finish(&mut self, cs: u8) -> Event {
        self.state = State::Idle;
        let raw = std::mem::take(&mut self.raw);
        if cs != self.sum {
            return Event::BadChecksum;
        }
        if self.overflow {
            return Event::TooLong;
        }
        match decode_payload(&raw, self.max_len) {
            Some(p) => Event::Packet(p),
            None => Event::Malformed,
        }
    }
}

/// Expands run-length encoding (`X*n` repeats X n-29 more times) and then removes `}` escapes.
/// `None` for a `*` with nothing before it, a count outside 3..=97 repeats, a trailing `}`, or
/// an expansion beyond `max_len`.
pub fn decode_payload(raw: &[u8], max_len: usize) -> Option<Vec<u8>> {
    let mut expanded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'*' {
            let prev = *expanded.last()?;
            let count = *raw.get(i + 1)?;
            // GDB sends counts from ' '+3 ('#' and '$' are avoided); n = count - 29.
            let n = usize::from(count.checked_sub(29)?);
            if !(3..=97).contains(&n) || expanded.len() + n > max_len {
                return None;
            }
            expanded.extend(std::iter::repeat_n(prev, n));
            i += 2;
        } else {
            if expanded.len() >= max_len {
                return None;
            }
            expanded.push(b);
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(expanded.len());
    let mut it = expanded.into_iter();
    while let Some(b) = it.next() {
        if b == b'}' {
            out.push(it.next()? ^ 0x20);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// Frames an already-escaped payload as `$payload#cs` into `out`.
pub fn frame_into(payload: &[u8], out: &mut Vec<u8>) {
    let sum = payload.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    out.reserve(payload.len() + 4);
    out.push(b'$');
    out.extend_from_slice(payload);
    out.push(b'#');
    hex::encode_into(&[sum], out);
}

/// Frames a payload as `build` writes it, straight into `out` (`$payload#cs`): a large reply is
/// then held once, not built elsewhere and copied. `build` writes an already-escaped payload.
pub fn frame_built(out: &mut Vec<u8>, build: impl FnOnce(&mut Vec<u8>)) {
    out.push(b'$');
    let start = out.len();
    build(out);
    let sum = out[start..].iter().fold(0u8, |a, &b| a.wrapping_add(b));
    out.push(b'#');
    hex::encode_into(&[sum], out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(d: &mut Decoder, bytes: &[u8]) -> Vec<Event> {
        bytes.iter().filter_map(|&b| d.push(b)).collect()
    }

    #[test]
    fn framing_as_built_equals_framing_a_finished_payload() {
        for p in [&b""[..], b"OK", b"b\x01}\x03z", &[0xffu8; 300]] {
            let mut built = b"+".to_vec();
            frame_built(&mut built, |o| o.extend_from_slice(p));
            let mut whole = b"+".to_vec();
            frame_into(p, &mut whole);
            assert_eq!(built, whole);
        }
    }

    fn framed(p: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        frame_into(p, &mut v);
        v
    }

    #[test]
    fn known_checksums() {
        assert_eq!(framed(b"OK"), b"$OK#9a");
        assert_eq!(framed(b""), b"$#00");
        assert_eq!(framed(b"qSupported"), b"$qSupported#37");
    }

    #[test]
    fn packets_acks_and_interrupts() {
        let mut d = Decoder::new(4096);
        let ev = feed(&mut d, b"+$g#67-\x03junk$m0,4#fd");
        assert_eq!(
            ev,
            vec![
                Event::Ack,
                Event::Packet(b"g".to_vec()),
                Event::Nack,
                Event::Interrupt,
                Event::Packet(b"m0,4".to_vec())
            ]
        );
        assert!(d.is_idle());
    }

    #[test]
    fn checksum_errors() {
        let mut d = Decoder::new(4096);
        assert_eq!(feed(&mut d, b"$g#68"), vec![Event::BadChecksum]);
        assert_eq!(feed(&mut d, b"$g#6z"), vec![Event::BadChecksum]);
        assert_eq!(
            feed(&mut d, b"$g#67"),
            vec![Event::Packet(b"g".to_vec())],
            "recovers"
        );
    }

    #[test]
    fn uppercase_checksum_digits_are_accepted() {
        let mut d = Decoder::new(64);
        let p = b"qC";
        let sum = p.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        let mut v = b"$qC#".to_vec();
        v.extend_from_slice(format!("{sum:02X}").as_bytes());
        assert_eq!(feed(&mut d, &v), vec![Event::Packet(b"qC".to_vec())]);
    }

    #[test]
    fn escapes_and_run_length_are_decoded() {
        let mut d = Decoder::new(4096);
        // "X" + escaped '#' , then '0' repeated: "0* " = 0 then 3 more zeros.
        let ev = feed(&mut d, &framed(b"X}\x03a0* b"));
        assert_eq!(ev, vec![Event::Packet(b"X#a0000b".to_vec())]);
    }

    #[test]
    fn malformed_run_length_and_escapes() {
        assert_eq!(decode_payload(b"*  ", 100), None, "nothing to repeat");
        assert_eq!(decode_payload(b"a*", 100), None, "missing count");
        assert_eq!(decode_payload(b"a*\x10", 100), None, "count below range");
        assert_eq!(decode_payload(b"ab}", 100), None, "dangling escape");
        assert_eq!(decode_payload(b"a*~", 10), None, "expansion over the limit");
        assert_eq!(decode_payload(b"a*~", 1000).map(|v| v.len()), Some(98));
    }

    #[test]
    fn oversized_packets_are_dropped_with_bounded_memory() {
        let mut d = Decoder::new(16);
        let mut big = vec![b'a'; 1 << 20];
        big.insert(0, b'q');
        let ev = feed(&mut d, &framed(&big));
        assert_eq!(ev, vec![Event::TooLong]);
        assert!(d.raw.capacity() <= 64, "buffer stayed bounded");
        assert_eq!(feed(&mut d, b"$?#3f"), vec![Event::Packet(b"?".to_vec())]);
    }

    #[test]
    fn dollar_inside_a_packet_restarts_it() {
        let mut d = Decoder::new(64);
        assert_eq!(feed(&mut d, b"$garbage$g#67"), vec![Event::Packet(b"g".to_vec())]);
    }

    #[test]
    fn half_packets_leave_no_event() {
        let mut d = Decoder::new(64);
        assert!(feed(&mut d, b"$m0,4").is_empty());
        assert!(!d.is_idle());
    }
}
