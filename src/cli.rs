//! Command line: options, the usage text that teaches, and the typed `Config` the modes consume.

use getopts::Options;
use log::LevelFilter;
use std::path::PathBuf;
use std::time::Duration;

pub const DEFAULT_SOCKET: &str = "/run/kmemd.sock";

/// The longest `-t`: a year. A longer watch is one to leave without -t (Ctrl-C or -n ends it);
/// the cap turns `-t 1e20` or `-t inf` into a clear error here instead of an overflow once the
/// watchpoints are armed (`Duration::from_secs_f64` panics past 2^64 s, `Instant + Duration`
/// past the clock's i64 seconds).
pub const MAX_WATCH_SECONDS: u64 = 365 * 24 * 3600;

/// The log level for `-q` and the number of `-v`. The default is INFO, because kmemd's
/// ordinary messages (what it serves, which watchpoints are armed, why a session ended) are
/// INFO lines a user needs without asking; so the first -v adds DEBUG and the second TRACE
/// (every RSP packet). `--help` is written from this function, so the two cannot disagree.
pub fn log_level(quiet: bool, verbosity: u8) -> LevelFilter {
    match (quiet, verbosity) {
        (true, _) => LevelFilter::Error,
        (false, 0) => LevelFilter::Info,
        (false, 1) => LevelFilter::Debug,
        (false, _) => LevelFilter::Trace,
    }
}

/// The -v line of `--help`, from [`log_level`].
fn verbose_help() -> String {
    let name = |v| log_level(false, v).as_str().to_lowercase();
    format!(
        "more log output: -v {}, -vv {} (the default is {})",
        name(1),
        name(2),
        name(0)
    )
}

/// What kmemd was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Serve GDB (the default).
    Serve,
    /// Write `len` raw bytes at `addr` to stdout.
    Read { addr: u64, len: u64 },
    /// Write `len` raw bytes at a kernel symbol (+ `offset`) to stdout: `--read _text 64`.
    ReadSymbol { name: String, offset: u64, len: u64 },
    /// Describe a dump (`-c FILE --info`).
    Info,
    /// A kernel query printed to stdout (`--ps`, `--dmesg`, `--lsmod`, `--sym X`): the monitor
    /// command line it runs, e.g. `sym jiffies`.
    Query(String),
    /// Self-test of what this machine allows.
    Check,
    /// Arm hardware watchpoints and print hits. Each entry is (TYPE, TARGET) as typed.
    Watch(Vec<(String, String)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub mode: Mode,
    /// Where to listen: a socket path, `:PORT`, `HOST:PORT`, `-` or a tty device.
    pub listen: String,
    pub baud: Option<u32>,
    /// A crash dump to serve instead of the live kernel.
    pub dump: Option<PathBuf>,
    /// A vmlinux for link-time addresses (KASLR) and symbols.
    pub vmlinux: Option<PathBuf>,
    /// `--force-vmlinux`: take a `-k` vmlinux whose build ID or release is not the kernel's.
    pub force_vmlinux: bool,
    /// Serve one process of a dump.
    pub pid: Option<u32>,
    /// Watch mode: stop after this many hits / seconds; one JSON object per hit.
    pub count: Option<u64>,
    pub seconds: Option<Duration>,
    pub json: bool,
    /// Watch mode: `--snapshots`.
    pub snapshots: bool,
    /// How many -v were given; [`log_level`] says what each means.
    pub verbosity: u8,
    pub quiet: bool,
    /// Log to this file instead of stderr.
    pub log_file: Option<PathBuf>,
}

/// What parsing decided besides a config: help and version are answers, not errors.
#[derive(Debug)]
pub enum Parsed {
    Run(Config),
    Help(String),
    Version(String),
}

fn options() -> Options {
    let mut o = Options::new();
    o.optopt(
        "s",
        "serve",
        "listen for GDB on SPEC: a UNIX socket path (default /run/kmemd.sock), :PORT (TCP on \
         127.0.0.1), HOST:PORT (TCP on that address: the kernel's memory goes to the network), \
         - (stdin/stdout, for `target remote | ssh board kmemd -s -`) or a tty such as /dev/ttyS0",
        "SPEC",
    );
    o.optopt(
        "b",
        "baud",
        "baud rate of a serial line given with -s /dev/tty... (default 115200)",
        "BAUD",
    );
    o.optopt(
        "c",
        "core",
        "serve a crash dump (ELF vmcore or makedumpfile kdump) instead of the running kernel",
        "VMCORE",
    );
    o.optopt(
        "k",
        "vmlinux",
        "the kernel's vmlinux: link-time addresses for KASLR, symbols for -w",
        "VMLINUX",
    );
    o.optflag(
        "",
        "force-vmlinux",
        "use the -k vmlinux even when its build ID or release differs from the kernel's (kmemd \
         refuses such a vmlinux otherwise: its symbols and layouts would be wrong)",
    );
    o.optopt(
        "",
        "pid",
        "with -c: serve only this process of the dump, like a core file",
        "PID",
    );
    o.optflag(
        "",
        "read",
        "write LEN raw bytes at kernel address ADDR (hex) or SYMBOL[+OFF] to stdout: --read \
         ADDR LEN, e.g. --read _text 64",
    );
    o.optflag(
        "",
        "info",
        "with -c: print what the dump is (arch, kernel, CPUs, KASLR offset) and exit",
    );
    o.optflag(
        "",
        "ps",
        "print every task (pid, parent, state, CPU, command, task_struct) to stdout and exit",
    );
    o.optflag("", "dmesg", "print the kernel log to stdout and exit");
    o.optflag(
        "",
        "lsmod",
        "print the loaded modules (base, size, add-symbol-file line) to stdout and exit",
    );
    o.optopt(
        "",
        "sym",
        "print a kernel symbol's address, or the symbol at an address, and exit",
        "NAME|ADDR",
    );
    o.optflag(
        "",
        "check",
        "test what this machine allows (BPF reads, kallsyms, watchpoints) and exit",
    );
    o.optmulti(
        "w",
        "watch",
        "arm a hardware watchpoint and print every hit: -w TYPE TARGET, TYPE one of r w rw x \
         followed by the length 1 2 4 8 (e.g. w4, rw8), TARGET an address (0x...), a symbol or \
         symbol+off. Repeat for several watchpoints",
        "TYPE TARGET",
    );
    o.optopt("n", "count", "watch mode: stop after COUNT hits", "COUNT");
    o.optopt(
        "t",
        "time",
        &format!("watch mode: stop after SECONDS (at most {MAX_WATCH_SECONDS}, a year)"),
        "SECONDS",
    );
    o.optflag(
        "",
        "json",
        "one JSON object per line on stdout: per hit (watch mode), per task (--ps), per module \
         (--lsmod), the answer of --sym",
    );
    o.optflag(
        "",
        "snapshots",
        "watch mode: a BPF snapshot per hit (its own value, registers and stack at the trap); see \
         the README for the hits Linux then drops",
    );
    o.optopt("", "log", "write logs to FILE instead of stderr", "FILE");
    o.optflagmulti("v", "verbose", &verbose_help());
    o.optflag("q", "quiet", "errors only");
    o.optflag("h", "help", "print this help");
    o.optflag("V", "version", "print the version");
    o
}

pub fn usage() -> String {
    let brief = "\
kmemd: look inside a running or crashed Linux kernel from GDB.

Usage:
  kmemd [-s SPEC] [-k VMLINUX]          serve the running kernel's memory to GDB (root)
  kmemd -c VMCORE [-s SPEC] [--pid PID] serve a crash dump to GDB
  kmemd -c VMCORE --info                describe a crash dump
  kmemd [-c VMCORE] --ps|--dmesg|--lsmod|--sym X [--json]
                                        print tasks, the kernel log, modules, a symbol
  kmemd [-c VMCORE] --read ADDR|SYM LEN write raw kernel bytes to stdout
  kmemd -w TYPE TARGET [-n N] [-t S]    print every hit of a hardware watchpoint (root)
  kmemd --check                         self-test: what this machine allows

Examples:
  sudo kmemd -s /tmp/gdb.sock           then: gdb vmlinux -ex 'target remote /tmp/gdb.sock'
  sudo kmemd -s :1234                   then: gdb vmlinux -ex 'target remote :1234'
  gdb vmlinux -ex 'target remote | ssh root@board kmemd -s -'
  kmemd -s /dev/ttyS0 -b 115200         then on the desk: gdb vmlinux -ex 'target remote /dev/ttyUSB0'
  kmemd -c /var/crash/vmcore -s :1234   then: gdb vmlinux -ex 'target remote :1234'
  sudo kmemd --read _text 64 | xxd      (ADDR in hex, or SYMBOL[+OFF])
  kmemd -c /var/crash/vmcore --ps --json
  sudo kmemd -w w1 init_uts_ns+65 -n 1  then: hostname newname (its first byte is written)
  sudo kmemd -w rw8 jiffies_64 -n 10    (data symbols: kallsyms with CONFIG_KALLSYMS_ALL,
                                         VMCOREINFO's, or -k vmlinux)

In GDB: `monitor help` lists kmemd's commands; `monitor kaslr` prints the KASLR offset and the
add-symbol-file line that relocates every section of vmlinux.
kmemd never writes kernel memory. Logs go to stderr (or --log FILE); stdout carries only data.";
    options().usage(brief)
}

fn parse_u64(s: &str, what: &str) -> Result<u64, String> {
    let t = s.trim();
    let r = if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else {
        t.parse::<u64>()
    };
    r.map_err(|_| format!("{what}: '{s}' is not a number (decimal, or hex with 0x)"))
}

/// `-t SECONDS`: positive, at most [`MAX_WATCH_SECONDS`], fractions allowed.
fn parse_seconds(t: &str) -> Result<Duration, String> {
    let v: f64 = t
        .trim()
        .parse()
        .map_err(|_| format!("-t: '{t}' is not a number of seconds"))?;
    if v.is_nan() {
        return Err(format!("-t: '{t}' is not a number of seconds"));
    }
    if v <= 0.0 {
        return Err(format!("-t: '{t}' must be a positive number of seconds"));
    }
    if v > MAX_WATCH_SECONDS as f64 {
        return Err(format!(
            "-t: '{t}' seconds is more than a year ({MAX_WATCH_SECONDS} seconds), the longest -t; \
             leave out -t to watch until Ctrl-C (or -n COUNT hits)"
        ));
    }
    Duration::try_from_secs_f64(v).map_err(|e| format!("-t: '{t}': {e}"))
}

/// Joins the two words of `-w TYPE TARGET` and `--read ADDR LEN` into one argument, since
/// getopts takes one value per option.
/// Arguments with the two-word options joined, and the `--read` pair taken out.
type Joined = (Vec<String>, Option<(String, String)>);

fn join_pairs(args: &[String]) -> Result<Joined, String> {
    let mut out = Vec::new();
    let mut read = None;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            out.extend_from_slice(&args[i..]);
            break;
        }
        if a == "-w" || a == "--watch" {
            let (t, target) = match (args.get(i + 1), args.get(i + 2)) {
                (Some(t), Some(target)) => (t, target),
                _ => {
                    return Err(format!(
                        "{a} needs two words: TYPE TARGET, e.g. -w w4 0xffff888012345678"
                    ))
                }
            };
            out.push(a.clone());
            out.push(format!("{t} {target}"));
            i += 3;
        } else if a == "--read" {
            let (addr, len) = match (args.get(i + 1), args.get(i + 2)) {
                (Some(x), Some(y)) => (x.clone(), y.clone()),
                _ => {
                    return Err("--read needs two words: ADDR LEN, e.g. --read 0xffffffff81000000 64".into())
                }
            };
            out.push(a.clone());
            read = Some((addr, len));
            i += 3;
        } else {
            out.push(a.clone());
            i += 1;
        }
    }
    Ok((out, read))
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let (args, read) = join_pairs(args)?;
    let m = options()
        .parse(&args)
        .map_err(|e| format!("{e} (see kmemd --help)"))?;
    if m.opt_present("h") {
        return Ok(Parsed::Help(usage()));
    }
    if m.opt_present("V") {
        return Ok(Parsed::Version(format!("kmemd {}", env!("CARGO_PKG_VERSION"))));
    }
    if let Some(extra) = m.free.first() {
        return Err(format!("unexpected argument '{extra}' (see kmemd --help)"));
    }
    let watch: Vec<(String, String)> = m
        .opt_strs("w")
        .iter()
        .map(|s| {
            let (t, target) = s.split_once(' ').unwrap_or((s.as_str(), ""));
            (t.to_string(), target.to_string())
        })
        .collect();
    let mut modes = Vec::new();
    if let Some((at, len)) = read {
        let len = parse_u64(&len, "--read LEN")?;
        // An address is hex, with or without 0x; anything else is SYMBOL or SYMBOL+OFF (a symbol
        // spelt only with hex digits, such as `add`, needs no support: none is worth reading).
        match crate::mem::parse_addr(&at) {
            Ok(addr) => modes.push(Mode::Read { addr, len }),
            Err(e) => match at.split_once('+') {
                _ if at.starts_with(|c: char| c.is_ascii_digit()) => return Err(e),
                Some((name, off)) => modes.push(Mode::ReadSymbol {
                    name: name.trim().to_string(),
                    offset: parse_u64(off, "--read SYMBOL+OFF")?,
                    len,
                }),
                None => modes.push(Mode::ReadSymbol {
                    name: at.trim().to_string(),
                    offset: 0,
                    len,
                }),
            },
        }
    }
    if m.opt_present("info") {
        modes.push(Mode::Info);
    }
    if m.opt_present("check") {
        modes.push(Mode::Check);
    }
    for q in ["ps", "dmesg", "lsmod"] {
        if m.opt_present(q) {
            modes.push(Mode::Query(q.to_string()));
        }
    }
    if let Some(s) = m.opt_str("sym") {
        modes.push(Mode::Query(format!("sym {s}")));
    }
    if !watch.is_empty() {
        modes.push(Mode::Watch(watch));
    }
    if modes.len() > 1 {
        return Err(
            "--read, --info, --check, --ps, --dmesg, --lsmod, --sym and -w are separate modes: give \
             one at a time"
                .into(),
        );
    }
    let mode = modes.pop().unwrap_or(Mode::Serve);
    let dump = m.opt_str("c").map(PathBuf::from);
    if mode == Mode::Info && dump.is_none() {
        return Err("--info describes a dump: give it with -c VMCORE".into());
    }
    if matches!(mode, Mode::Watch(_) | Mode::Check) && dump.is_some() {
        return Err("-w and --check work on the running kernel, not on a dump (-c)".into());
    }
    let pid = match m.opt_str("pid") {
        Some(p) => {
            if dump.is_none() {
                return Err("--pid serves one process of a dump: give the dump with -c VMCORE".into());
            }
            Some(
                p.parse::<u32>()
                    .map_err(|_| format!("--pid: '{p}' is not a process id"))?,
            )
        }
        None => None,
    };
    let baud = match m.opt_str("b") {
        Some(b) => Some(
            b.parse::<u32>()
                .map_err(|_| format!("-b: '{b}' is not a baud rate such as 115200"))?,
        ),
        None => None,
    };
    let count = match m.opt_str("n") {
        Some(n) => Some(parse_u64(&n, "-n COUNT")?),
        None => None,
    };
    let seconds = match m.opt_str("t") {
        Some(t) => Some(parse_seconds(&t)?),
        None => None,
    };
    let is_watch = matches!(mode, Mode::Watch(_));
    if !is_watch && (count.is_some() || seconds.is_some() || m.opt_present("snapshots")) {
        return Err("-n, -t and --snapshots belong to watch mode (-w TYPE TARGET)".into());
    }
    let json_ok = match &mode {
        Mode::Watch(_) => true,
        Mode::Query(q) => {
            crate::kernel::monitor::JSON_COMMANDS.contains(&q.split_whitespace().next().unwrap_or(""))
        }
        _ => false,
    };
    if m.opt_present("json") && !json_ok {
        return Err("--json belongs to watch mode (-w), --ps, --lsmod and --sym".into());
    }
    if matches!(mode, Mode::Query(_)) && pid.is_some() {
        return Err("--ps, --dmesg, --lsmod and --sym ask the kernel: leave out --pid".into());
    }
    Ok(Parsed::Run(Config {
        mode,
        listen: m.opt_str("s").unwrap_or_else(|| DEFAULT_SOCKET.to_string()),
        baud,
        dump,
        vmlinux: m.opt_str("k").map(PathBuf::from),
        force_vmlinux: m.opt_present("force-vmlinux"),
        pid,
        count,
        seconds,
        json: m.opt_present("json"),
        snapshots: m.opt_present("snapshots"),
        verbosity: m.opt_count("v").min(255) as u8,
        quiet: m.opt_present("q"),
        log_file: m.opt_str("log").map(PathBuf::from),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        match parse(&v)? {
            Parsed::Run(c) => Ok(c),
            other => panic!("expected a config, got {other:?}"),
        }
    }

    #[test]
    fn defaults_serve_on_the_default_socket() {
        let c = run(&[]).unwrap();
        assert_eq!(c.mode, Mode::Serve);
        assert_eq!(c.listen, DEFAULT_SOCKET);
        assert_eq!(c.verbosity, 0);
    }

    #[test]
    fn read_takes_two_words() {
        let c = run(&["--read", "0xffffffff81000000", "64"]).unwrap();
        assert_eq!(
            c.mode,
            Mode::Read {
                addr: 0xffff_ffff_8100_0000,
                len: 64
            }
        );
        let c = run(&["--read", "ffffffff81000000", "0x40"]).unwrap();
        assert_eq!(
            c.mode,
            Mode::Read {
                addr: 0xffff_ffff_8100_0000,
                len: 64
            }
        );
        assert!(run(&["--read", "0x10"]).unwrap_err().contains("ADDR LEN"));
        assert!(run(&["--read", "1zz", "1"]).unwrap_err().contains("hex address"));
        assert_eq!(
            run(&["--read", "_text", "64"]).unwrap().mode,
            Mode::ReadSymbol {
                name: "_text".into(),
                offset: 0,
                len: 64
            }
        );
        assert_eq!(
            run(&["--read", "init_uts_ns+0x41", "8"]).unwrap().mode,
            Mode::ReadSymbol {
                name: "init_uts_ns".into(),
                offset: 0x41,
                len: 8
            }
        );
        assert!(run(&["--read", "x+y", "1"]).unwrap_err().contains("SYMBOL+OFF"));
    }

    #[test]
    fn kernel_queries_are_monitor_command_lines() {
        assert_eq!(run(&["--ps"]).unwrap().mode, Mode::Query("ps".into()));
        assert_eq!(
            run(&["-c", "x", "--dmesg"]).unwrap().mode,
            Mode::Query("dmesg".into())
        );
        let c = run(&["--lsmod", "--json"]).unwrap();
        assert_eq!((c.mode, c.json), (Mode::Query("lsmod".into()), true));
        assert_eq!(
            run(&["--sym", "jiffies", "--json"]).unwrap().mode,
            Mode::Query("sym jiffies".into())
        );
    }

    #[test]
    fn watch_specs_repeat() {
        let c = run(&["-w", "w4", "0xc0ffee00", "--watch", "rw8", "jiffies+8", "-n", "5"]).unwrap();
        assert_eq!(
            c.mode,
            Mode::Watch(vec![
                ("w4".into(), "0xc0ffee00".into()),
                ("rw8".into(), "jiffies+8".into())
            ])
        );
        assert_eq!(c.count, Some(5));
        assert!(!c.snapshots, "snapshots are off by default");
        assert!(run(&["-w", "w4", "jiffies", "--snapshots"]).unwrap().snapshots);
        assert!(run(&["--snapshots"]).unwrap_err().contains("watch mode"));
        assert!(run(&["-w", "w4"]).unwrap_err().contains("TYPE TARGET"));
    }

    #[test]
    fn conflicting_and_misplaced_options_are_refused_with_a_reason() {
        assert!(run(&["--info"]).unwrap_err().contains("-c"));
        assert!(run(&["--check", "--read", "0", "1"])
            .unwrap_err()
            .contains("one at a time"));
        assert!(run(&["-n", "3"]).unwrap_err().contains("watch mode"));
        assert!(run(&["--json"]).unwrap_err().contains("--json belongs"));
        assert!(run(&["--dmesg", "--json"])
            .unwrap_err()
            .contains("--json belongs"));
        assert!(run(&["--ps", "--lsmod"]).unwrap_err().contains("one at a time"));
        assert!(run(&["-c", "x", "--pid", "1", "--ps"])
            .unwrap_err()
            .contains("--pid"));
        assert!(run(&["--pid", "1"]).unwrap_err().contains("-c"));
        assert!(run(&["-b", "fast"]).unwrap_err().contains("baud"));
        assert!(run(&["stray"]).unwrap_err().contains("unexpected"));
        assert!(run(&["--bogus"]).unwrap_err().contains("--help"));
    }

    #[test]
    fn watch_time_is_positive_finite_and_capped() {
        let t = |s: &str| run(&["-w", "w8", "jiffies", "-t", s]).map(|c| c.seconds);
        assert_eq!(t("0.5"), Ok(Some(Duration::from_millis(500))));
        assert_eq!(t("10"), Ok(Some(Duration::from_secs(10))));
        let max = MAX_WATCH_SECONDS.to_string();
        assert_eq!(t(&max), Ok(Some(Duration::from_secs(MAX_WATCH_SECONDS))));
        // Past the cap, infinite, or beyond f64: one clear error each, before anything runs.
        for big in [
            "31536000.5",
            "1e20",
            "1e400",
            "inf",
            "infinity",
            "18446744073709551616",
        ] {
            let e = t(big).unwrap_err();
            assert!(
                e.contains("more than a year (31536000 seconds)") && e.contains("leave out -t"),
                "{big}: {e}"
            );
        }
        for bad in ["nan", "NaN", "soon", ""] {
            assert!(
                t(bad).unwrap_err().contains("is not a number of seconds"),
                "{bad}"
            );
        }
        for bad in ["0", "-1", "-inf", "-0"] {
            assert!(t(bad).unwrap_err().contains("must be a positive number"), "{bad}");
        }
    }

    #[test]
    fn log_levels_follow_the_help() {
        assert_eq!(log_level(false, 0), LevelFilter::Info);
        assert_eq!(log_level(false, 1), LevelFilter::Debug);
        assert_eq!(log_level(false, 2), LevelFilter::Trace);
        assert_eq!(log_level(false, 9), LevelFilter::Trace);
        assert_eq!(log_level(true, 2), LevelFilter::Error);
        assert!(verbose_help().ends_with("-v debug, -vv trace (the default is info)"));
    }

    #[test]
    fn verbosity_counts() {
        assert_eq!(run(&["-vv"]).unwrap().verbosity, 2);
        assert_eq!(run(&["-v", "-v", "-v"]).unwrap().verbosity, 3);
    }

    #[test]
    fn help_and_version_are_answers() {
        let v: Vec<String> = vec!["--help".into()];
        match parse(&v).unwrap() {
            Parsed::Help(h) => {
                for opt in [
                    "--serve",
                    "--core",
                    "--vmlinux",
                    "--read",
                    "--watch",
                    "--check",
                    "--info",
                    "Examples:",
                ] {
                    assert!(h.contains(opt), "help lacks {opt}");
                }
            }
            other => panic!("{other:?}"),
        }
        let v: Vec<String> = vec!["-V".into()];
        assert!(matches!(parse(&v).unwrap(), Parsed::Version(s) if s.starts_with("kmemd ")));
    }
}
