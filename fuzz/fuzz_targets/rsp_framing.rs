//! RSP framing: arbitrary bytes into the incremental decoder, arbitrary raw payloads into
//! `decode_payload`, and a round trip of arbitrary binary data through escape + frame + decode.
#![no_main]

use kmemd::rsp::framing::{decode_payload, frame_into, Decoder, Event};
use kmemd::rsp::hex;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // Small limits reach the TooLong and run-length caps with short inputs.
    let max_len = 1 + usize::from(sel) * 3;

    let mut d = Decoder::new(max_len);
    for &b in rest {
        let was_idle = d.is_idle();
        if let Some(Event::Packet(p)) = d.push(b) {
            // The raw payload kept is at most max_len bytes, and run-length expansion is
            // capped at max_len, so a packet is at most twice the limit: memory stays bounded.
            assert!(
                p.len() <= 2 * max_len,
                "packet of {} bytes over limit {max_len}",
                p.len()
            );
        }
        // Between packets (or inside a body, as a resync) a '$' starts a packet. Where a
        // checksum digit is due it only ends the bad packet, as in GDB's own reader.
        if b == b'$' && was_idle {
            assert!(!d.is_idle(), "a '$' between packets starts one");
        }
    }

    if let Some(p) = decode_payload(rest, max_len) {
        assert!(p.len() <= rest.len() + max_len, "expansion past its bound");
    }

    // Anything kmemd sends as binary (x replies, qXfer) must come back unchanged.
    let mut escaped = Vec::new();
    hex::escape_binary_into(rest, &mut escaped);
    let mut framed = Vec::new();
    frame_into(&escaped, &mut framed);
    let mut d = Decoder::new(framed.len());
    let events: Vec<Event> = framed.iter().filter_map(|&b| d.push(b)).collect();
    assert_eq!(
        events,
        vec![Event::Packet(rest.to_vec())],
        "escape/frame/decode round trip"
    );
    assert!(d.is_idle());
});
