//! RSP command parsing: any payload parses to some command, and memory reads re-encode to a
//! packet that parses to the same request.
#![no_main]

use kmemd::rsp::command::{parse, Command};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let cmd = parse(data);
    match cmd {
        Command::ReadMemory { addr, len } => {
            assert_eq!(data.first(), Some(&b'm'));
            let again = format!("m{addr:x},{len:x}");
            assert_eq!(parse(again.as_bytes()), Command::ReadMemory { addr, len });
        }
        Command::ReadMemoryBinary { addr, len } => {
            assert_eq!(data.first(), Some(&b'x'));
            let again = format!("x{addr:x},{len:x}");
            assert_eq!(parse(again.as_bytes()), Command::ReadMemoryBinary { addr, len });
        }
        // Every write packet is recognised as one (and refused by the server).
        Command::Write(kind) => assert_eq!(data.first().map(|&b| b as char), Some(kind)),
        _ => {}
    }
    if matches!(data.first(), Some(b'M' | b'X' | b'G' | b'P')) {
        assert!(matches!(cmd, Command::Write(_)), "write packet parsed as {cmd:?}");
    }
});
