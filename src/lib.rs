//! kmemd: a GDB server for the running Linux kernel (read through BPF) and for its crash dumps,
//! plus hardware watchpoints on kernel addresses. `main.rs` only parses options and picks a mode;
//! everything else is here so integration tests can use it too.

pub mod app;
pub mod arch;
pub mod check;
pub mod cli;
pub mod dump;
pub mod kernel;
pub mod live;
pub mod mem;
pub mod rsp;
pub mod server;
pub mod sys;
pub mod target;
pub mod transport;
pub mod watch;
