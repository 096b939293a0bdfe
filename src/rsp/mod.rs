//! GDB Remote Serial Protocol, as pure functions over bytes: framing, hex, commands, replies.
