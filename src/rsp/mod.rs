//! GDB Remote Serial Protocol, as pure functions over bytes: framing, hex, commands. Nothing here
//! knows sockets or kernels.

pub mod command;
pub mod framing;
pub mod hex;
pub mod reply;

/// The packet size kmemd advertises (hex in `qSupported`). GDB then asks for half of it in bytes
/// per `m`/`x`; at 1 MiB GDB 18 reaches its own ceiling (see reference/live-reads.md).
pub const PACKET_SIZE: usize = 0x10_0000;

/// Incoming packets longer than this are dropped (bounded memory whatever GDB sends).
pub const MAX_INCOMING: usize = PACKET_SIZE + 0x1000;
