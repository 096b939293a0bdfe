//! Runs the mode the command line picked. Kept apart from `main.rs` so tests can reach it.

use crate::cli::{Config, Mode};
use crate::mem::VirtAddr;
use crate::server::sessions::{self, Stopped};
use crate::sys::os;
use crate::target::{Points, PointsFactory, Target, NO_POINTS_IN_DUMP};
use crate::transport::{ListenSpec, Listener};
use log::{error, info, warn};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;

/// Sets up logging: stderr (or `--log FILE`), level from -q/-v ([`crate::cli::log_level`]).
pub fn init_logging(config: &Config) -> Result<(), String> {
    if let Some(path) = &config.log_file {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        os::redirect_stderr(&f).map_err(|e| format!("cannot log to {}: {e}", path.display()))?;
    }
    let level = crate::cli::log_level(config.quiet, config.verbosity);
    simple_logger::SimpleLogger::new()
        .with_level(level)
        .init()
        .map_err(|e| format!("cannot start logging: {e}"))
}

/// Opens what `-c`/live asks for.
pub fn open_target(config: &Config) -> Result<Box<dyn Target>, String> {
    match &config.dump {
        Some(path) => crate::target::dump::open_target(
            path,
            config.vmlinux.as_deref(),
            config.force_vmlinux,
            config.pid,
        ),
        None => crate::target::live::open_target(config.vmlinux.as_deref(), config.force_vmlinux),
    }
}

/// What makes each GDB session's breakpoints and watchpoints: perf events on every online CPU of
/// the running kernel; a dump refuses them with the reason.
fn points_for(config: &Config) -> Result<Box<PointsFactory>, String> {
    if config.dump.is_some() {
        return Ok(Box::new(|| Err(NO_POINTS_IN_DUMP.to_string())));
    }
    let arch = crate::arch::Arch::host();
    let cpus = crate::live::online_cpus()?;
    Ok(Box::new(move || {
        Ok(Box::new(crate::watch::gdb::LivePoints::new(arch, cpus.clone())) as Box<dyn Points>)
    }))
}

/// Runs the configured mode; the result is the process exit code.
pub fn run(config: &Config) -> Result<i32, String> {
    match &config.mode {
        Mode::Serve => serve(config),
        Mode::Read { addr, len } => read_to_stdout(config, *addr, *len),
        Mode::ReadSymbol { name, offset, len } => {
            let mut target = open_target(config)?;
            let at = symbol_address(target.as_mut(), name)?
                .checked_add(*offset)
                .ok_or_else(|| format!("{name}+{offset:#x} is past the end of the address space"))?;
            write_range(target.as_mut(), at, *len)
        }
        Mode::Info => {
            let path = config.dump.as_deref().ok_or("--info needs -c VMCORE")?;
            print!(
                "{}",
                crate::target::dump::info_text(path, config.vmlinux.as_deref(), config.force_vmlinux)?
            );
            Ok(0)
        }
        Mode::Check => crate::check::run(config),
        Mode::Query(cmd) => query_to_stdout(config, cmd),
        Mode::Watch(pairs) => crate::watch::run(&crate::watch::Options {
            pairs: pairs.clone(),
            vmlinux: config.vmlinux.clone(),
            force_vmlinux: config.force_vmlinux,
            count: config.count,
            seconds: config.seconds,
            json: config.json,
            snapshots: config.snapshots,
        }),
    }
}

fn serve(config: &Config) -> Result<i32, String> {
    let spec = ListenSpec::parse(&config.listen)?;
    let mut target = open_target(config)?;
    if config.dump.is_some() && config.pid.is_none() {
        crate::target::dump::log_kaslr_hint(target.as_ref());
    }
    target.prepare();
    info!("serving {}", target.describe());
    // Caught before the socket exists, so no signal can leave its file behind.
    let stop = os::install_shutdown_signals()?;
    let mut listener = Listener::bind(&spec, config.baud)?;
    if spec == ListenSpec::Stdio && config.log_file.is_none() {
        quiet_stderr_pipe();
    }
    let stopped = sessions::run(
        target.as_mut(),
        &mut listener,
        stop.as_raw_fd(),
        &points_for(config)?,
    );
    // Dropping the listener removes the socket file it created.
    drop(listener);
    match stopped? {
        // Asked to stop and stopped cleanly: a success, as systemd and shells expect of a
        // server that honours SIGTERM.
        Stopped::Signal(sig) => info!("stopped by {}", os::signal_name(sig)),
        Stopped::NoMoreClients => {}
    }
    Ok(0)
}

/// In `-s -` mode GDB reads the stub's stderr pipe and polls it for every byte it receives, which
/// makes reads 20 times slower. Once start-up has succeeded, logs go to /dev/null unless --log.
fn quiet_stderr_pipe() {
    // GDB's `target remote | CMD` hands the command a socket for stderr; a shell may give a pipe.
    let is_pipe = std::fs::metadata("/proc/self/fd/2")
        .map(|m| m.file_type().is_fifo() || m.file_type().is_socket())
        .unwrap_or(false);
    if !is_pipe {
        return;
    }
    info!("stdio session started: further logs are discarded (GDB polls stderr per byte); use --log FILE to keep them");
    match File::options().write(true).open("/dev/null") {
        Ok(null) => {
            if let Err(e) = os::redirect_stderr(&null) {
                warn!("cannot detach stderr: {e}");
            }
        }
        Err(e) => warn!("cannot open /dev/null: {e}"),
    }
}

/// `--ps`, `--dmesg`, `--lsmod`, `--sym X`: the monitor command's text (or, with --json, its
/// JSON form) on stdout, so scripts get it without GDB (which prints monitor output on stderr
/// under -batch). Same code as `monitor CMD` (kernel/monitor.rs).
fn query_to_stdout(config: &Config, cmd: &str) -> Result<i32, String> {
    let mut target = open_target(config)?;
    let view = target
        .kernel_view()
        .ok_or("this target serves no kernel to ask")?;
    let answer = if config.json {
        crate::kernel::monitor::run_json(view, cmd)
    } else {
        crate::kernel::monitor::run(view, cmd)
    };
    let text = answer.ok_or_else(|| format!("internal: no kernel query {cmd}"))??;
    let mut out = os::dup_std(1).map_err(|e| format!("stdout: {e}"))?;
    out.write_all(text.as_bytes())
        .map_err(|e| format!("writing to stdout: {e}"))?;
    Ok(0)
}

/// A kernel symbol's address, from the resolver `monitor sym` uses (kernel/symbols.rs).
fn symbol_address(target: &mut dyn Target, name: &str) -> Result<u64, String> {
    let view = target
        .kernel_view()
        .ok_or("with --pid, --read takes an address, not a kernel symbol")?;
    let (_, info) = view.kernel()?;
    match crate::kernel::monitor::sym_lookup(info, name)? {
        crate::kernel::monitor::SymAnswer::Address { addr, .. } => Ok(addr),
        crate::kernel::monitor::SymAnswer::Symbol { .. } => Err(format!("no symbol {name}")),
    }
}

/// `--read ADDR LEN`: raw bytes to stdout. Exit 0 only if every byte was read.
fn read_to_stdout(config: &Config, addr: u64, len: u64) -> Result<i32, String> {
    let mut target = open_target(config)?;
    write_range(target.as_mut(), addr, len)
}

/// Writes `[addr, addr+len)` of `target` to stdout; exit 0 only if every byte was read.
fn write_range(target: &mut dyn Target, addr: u64, len: u64) -> Result<i32, String> {
    let mut out = os::dup_std(1).map_err(|e| format!("stdout: {e}"))?;
    match copy_memory(target, addr, len, &mut out)? {
        done if done == len => Ok(0),
        done => Ok({
            error!("{done} of {len} bytes written: the rest is not readable");
            1
        }),
    }
}

/// The most [`copy_memory`] reads at once (`--read`'s buffer).
pub const COPY_CHUNK: u64 = 256 << 10;

/// Copies `[addr, addr+len)` to `out` in large chunks and returns how many bytes were copied:
/// fewer than `len` when memory stops being readable (the reason is logged). Errors are for
/// `out` failing or the range wrapping the address space.
pub fn copy_memory(target: &mut dyn Target, addr: u64, len: u64, out: &mut dyn Write) -> Result<u64, String> {
    let mut buf = vec![0u8; len.clamp(1, COPY_CHUNK) as usize];
    let mut done: u64 = 0;
    while done < len {
        let at = addr
            .checked_add(done)
            .ok_or("the range runs past the end of the address space")?;
        let want = (len - done).min(buf.len() as u64) as usize;
        match target.read_virt(VirtAddr(at), &mut buf[..want]) {
            Ok(n) => {
                let n = n.min(want);
                out.write_all(&buf[..n])
                    .map_err(|e| format!("writing the bytes out: {e}"))?;
                done += n as u64;
            }
            Err(e) => {
                error!("{e}");
                break;
            }
        }
    }
    Ok(done)
}
