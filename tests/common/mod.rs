//! Shared helpers for integration tests: running kmemd, driving real GDB, root checks; `rsp`
//! is a raw RSP client for the robustness tests.
#![allow(dead_code)]

pub mod examples;
pub mod rsp;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const KMEMD: &str = env!("CARGO_BIN_EXE_kmemd");

/// Whether this is CI: any non-empty CI value other than `false` or `0` (CI systems set `true`,
/// `1`, `yes`, or their own name).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Whether the test runs under qemu-user, which emulates no bpf(2) and no perf_event_open(2):
/// cross/qemu-test.sh says so with KMEMD_QEMU_USER=1. Only there may a test skip on ENOSYS.
pub fn under_qemu_user() -> bool {
    std::env::var("KMEMD_QEMU_USER").as_deref() == Ok("1")
}

/// True when the test may use BPF/perf. Without root it skips, except in CI where it fails.
pub fn require_root(test: &str) -> bool {
    if kmemd::sys::os::bpf_syscall_missing() || kmemd::sys::os::perf_event_open_missing() {
        // qemu-user (the aarch64 build's tests) answers ENOSYS; a real kernel never does.
        assert!(
            under_qemu_user(),
            "{test}: bpf(2) or perf_event_open(2) returns ENOSYS outside qemu-user: this kernel \
             lacks CONFIG_BPF_SYSCALL or CONFIG_PERF_EVENTS, and kmemd's live tests need them"
        );
        println!("kmemd-test-skip: {test}: bpf(2) or perf_event_open(2) returns ENOSYS here");
        return false;
    }
    if kmemd::sys::os::is_root() {
        return true;
    }
    assert!(!in_ci(), "{test}: CI must run as root with CAP_BPF/CAP_PERFMON");
    eprintln!("SKIP {test}: needs root (BPF, perf)");
    false
}

/// Whether this host's kernel refuses hardware breakpoints on kernel addresses to a privileged
/// process (EPERM/EACCES as root), asked directly with a write breakpoint on `addr`. Some VMs
/// do (a hypervisor that hides the debug registers); then kmemd must say so, and the hit tests
/// run in the kernel lab (tests/lab) instead.
pub fn kernel_breakpoints_refused(addr: u64) -> bool {
    use kmemd::watch::spec::{Access, Spec};
    let spec = Spec {
        access: Access::W,
        len: 8,
        addr,
        target: "probe".into(),
    };
    let attr = kmemd::watch::perf::attr_for(&spec, kmemd::arch::Arch::host());
    let refused = matches!(
        kmemd::sys::os::perf_event_open(&attr, -1, 0),
        Err(libc::EPERM) | Err(libc::EACCES)
    );
    refused && kmemd::sys::os::is_root()
}

/// Whether perf accepts a write breakpoint on this process's own memory, asked directly.
fn user_breakpoints_allowed() -> bool {
    static WORD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let attr = kmemd::sys::os::PerfEventAttr {
        type_: kmemd::sys::os::PERF_TYPE_BREAKPOINT,
        sample_period: 1,
        flags: kmemd::sys::os::ATTR_FLAG_DISABLED | kmemd::sys::os::ATTR_FLAG_EXCLUDE_KERNEL,
        bp_type: 2,
        bp_addr: WORD.as_ptr() as u64,
        bp_len: 8,
        ..Default::default()
    };
    kmemd::sys::os::perf_event_open(&attr, 0, -1).is_ok()
}

/// Checks kmemd's diagnosis of a host that refuses kernel breakpoints to root (see
/// `kernel_breakpoints_refused`), in what `kmemd -w` printed on stderr.
pub fn assert_refusal_diagnosed(test: &str, stderr: &str) {
    assert!(
        stderr.contains("although kmemd holds CAP_PERFMON/CAP_SYS_ADMIN")
            && stderr.contains("forbids hardware breakpoints on kernel addresses")
            && stderr.contains("hypervisor"),
        "{test}: kmemd must say that this kernel, not a missing privilege, refuses:\n{stderr}"
    );
    assert!(
        !stderr.contains("setcap"),
        "{test}: no privilege advice here:\n{stderr}"
    );
    let user = if user_breakpoints_allowed() {
        "Breakpoints on user-space memory still work here"
    } else {
        "Breakpoints on user-space memory are refused too"
    };
    assert!(stderr.contains(user), "{test}: expected '{user}':\n{stderr}");
    println!(
        "kmemd-test-note: {test}: this host refuses kernel breakpoints to root; kmemd's diagnosis \
         was checked, and the hit tests run in the kernel lab (tests/lab)"
    );
}

/// A scratch directory unique to this test process and name.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kmemd-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// The GDBs to test against: Debian's gdb (13) and GDB 18 (binary `x` reads).
pub fn gdbs() -> Vec<(String, PathBuf)> {
    let mut v = vec![("gdb13".to_string(), PathBuf::from("gdb"))];
    let gdb18 = std::env::var("KMEMD_GDB18").unwrap_or_else(|_| "/opt/kmemd-gdb18/bin/gdb".into());
    if Path::new(&gdb18).exists() {
        v.push(("gdb18".to_string(), PathBuf::from(gdb18)));
    } else {
        assert!(!in_ci(), "GDB 18 not found at {gdb18}: run `make deps`");
        eprintln!("note: GDB 18 not found at {gdb18}; testing gdb 13 only (make deps installs it)");
    }
    v
}

/// A running kmemd, killed when dropped. Its stderr goes to a file for diagnostics.
pub struct Kmemd {
    pub child: Child,
    pub log: PathBuf,
}

impl Kmemd {
    pub fn spawn(args: &[&str], log: PathBuf) -> Kmemd {
        Kmemd::spawn_binary(Path::new(KMEMD), args, log)
    }

    /// [`Kmemd::spawn`] with another kmemd binary (the static one `make lab-bins` builds).
    pub fn spawn_binary(binary: &Path, args: &[&str], log: PathBuf) -> Kmemd {
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn kmemd");
        Kmemd { child, log }
    }

    /// Waits until `probe` succeeds, or panics with kmemd's log.
    pub fn wait_for(&mut self, what: &str, mut probe: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if probe() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("kmemd exited ({st}) before {what}:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("kmemd did not get to {what} in 20 s:\n{}", self.log_text());
    }

    pub fn wait_unix(&mut self, path: &Path) {
        let p = path.to_path_buf();
        self.wait_for("listening on a UNIX socket", move || {
            UnixStream::connect(&p).is_ok()
        });
    }

    pub fn wait_tcp(&mut self, port: u16) {
        self.wait_for("listening on TCP", move || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Kmemd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GDB in batch mode (no init files, no pager, no questions, stdin closed), killed after
/// `seconds`; the caller adds its `-ex` commands.
pub fn gdb_batch_command(gdb: &Path, seconds: u32) -> Command {
    let mut c = Command::new("timeout");
    c.arg(seconds.to_string()).arg(gdb).args([
        "-nx",
        "-batch",
        "-ex",
        "set pagination off",
        "-ex",
        "set confirm off",
    ]);
    c.stdin(Stdio::null());
    c
}

/// Runs Debian's `lldb -b` connected by `gdb-remote` to `addr` (HOST:PORT), then `cmds`;
/// returns everything it printed.
pub fn lldb(addr: &str, cmds: &[String]) -> String {
    lldb_at(&format!("connect://{addr}"), cmds)
}

/// `lldb` as above, connected to a URL LLDB knows (`connect://HOST:PORT`,
/// `unix-connect:///PATH`).
pub fn lldb_at(url: &str, cmds: &[String]) -> String {
    let mut c = Command::new("timeout");
    c.args(["300", "lldb", "-b", "--no-lldbinit"]);
    c.args(["-o", &format!("process connect --plugin gdb-remote {url}")]);
    for cmd in cmds {
        c.args(["-o", cmd]);
    }
    // Debian 12's lldb lacks its Python helpers on the default path (README); gdb-remote works
    // either way, this only silences the import error.
    c.env("PYTHONPATH", "/usr/lib/llvm-14/lib/python3.11/dist-packages");
    c.stdin(Stdio::null());
    text(&c.output().expect("run lldb"))
}

/// Whether lldb runs here; under CI its absence fails the test (`make deps` installs it).
pub fn have_lldb() -> bool {
    let ok = Command::new("lldb")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(!in_ci(), "lldb is not installed: `make deps` installs it");
        eprintln!("SKIP: no lldb (make deps)");
    }
    ok
}

/// `kmemd -c DUMP -s SOCK EXTRA...` in a scratch directory named `name`, serving once its socket
/// is up; its log is `kmemd.log` there.
pub fn serve_dump(dump: &Path, extra: &[&str], name: &str) -> (Kmemd, PathBuf) {
    let dir = scratch(name);
    let sock = dir.join("gdb.sock");
    let mut args = vec!["-c", dump.to_str().unwrap(), "-s", sock.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut k = Kmemd::spawn(&args, dir.join("kmemd.log"));
    k.wait_unix(&sock);
    (k, sock)
}

/// Runs GDB in batch mode: `target remote TARGET`, then each command. Times out after 120 s.
pub fn gdb_batch(gdb: &Path, target: &str, cmds: &[String]) -> Output {
    let mut c = gdb_batch_command(gdb, 120);
    c.args(["-ex", &format!("target remote {target}")]);
    for cmd in cmds {
        c.args(["-ex", cmd]);
    }
    c.output().expect("run gdb")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Random bytes from the kernel, so planted data is never a pattern a bug could reproduce.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut v))
        .expect("urandom");
    v
}

/// A linked pty pair made by socat: (kmemd's end, GDB's end), killed on drop.
pub struct PtyPair {
    child: Child,
    pub a: PathBuf,
    pub b: PathBuf,
}

impl PtyPair {
    pub fn new(dir: &Path) -> PtyPair {
        let (a, b) = (dir.join("tty-kmemd"), dir.join("tty-gdb"));
        let child = Command::new("socat")
            .arg(format!("pty,raw,echo=0,link={}", a.display()))
            .arg(format!("pty,raw,echo=0,link={}", b.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("socat (apt-get install socat) for the serial-line test");
        let start = Instant::now();
        while !(a.exists() && b.exists()) {
            assert!(start.elapsed() < Duration::from_secs(10), "socat made no ptys");
            std::thread::sleep(Duration::from_millis(20));
        }
        PtyPair { child, a, b }
    }
}

impl Drop for PtyPair {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The cargo target directory (`CARGO_TARGET_DIR`, else `target/` in the repository).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// A release binary `make lab-bins` builds for `triple` (`kmemd`, `examples/lab-agent`): its
/// path, or why it cannot serve. It must be newer than every source file, or a test would test
/// yesterday's kmemd.
pub fn fresh_release_binary(triple: &str, name: &str) -> Result<PathBuf, String> {
    let bin = target_dir().join(triple).join("release").join(name);
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).map_err(|_| {
        format!(
            "{} is missing: run `make lab-bins` (make test does)",
            bin.display()
        )
    })?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    if newest_mtime(&src).is_some_and(|s| s > built) {
        return Err(format!(
            "{} is older than the sources: run `make lab-bins` (make test does)",
            bin.display()
        ));
    }
    Ok(bin)
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}

/// Where `make fixtures` put the real QEMU dumps: `$KMEMD_FIXTURES` or `.fixtures/`.
pub fn fixtures_root() -> PathBuf {
    match std::env::var("KMEMD_FIXTURES") {
        Ok(d) => PathBuf::from(d),
        Err(_) => Path::new(env!("CARGO_MANIFEST_DIR")).join(".fixtures"),
    }
}

/// The fixture variants `make fixtures` makes.
pub const FIXTURE_VARIANTS: [&str; 3] = ["x86_64-4l", "x86_64-5l", "aarch64"];

/// The directory of each fixture variant, or None (skip) outside CI when they have not been
/// generated; in CI their absence fails the test.
pub fn fixture_dirs() -> Option<Vec<PathBuf>> {
    let root = fixtures_root().join("current");
    if !root.join(FIXTURE_VARIANTS[0]).join("manifest.txt").exists() {
        assert!(
            !in_ci(),
            "no dump fixtures in {}: `make fixtures` makes them",
            root.display()
        );
        eprintln!(
            "SKIP: no dump fixtures in {} (run `make fixtures`)",
            root.display()
        );
        return None;
    }
    Some(FIXTURE_VARIANTS.iter().map(|v| root.join(v)).collect())
}

/// Each fixture variant loaded by `load`, or None (skip) outside CI when the fixtures have not
/// been generated (see [`fixture_dirs`]).
pub fn load_fixtures<T>(load: impl Fn(&Path) -> T) -> Option<Vec<T>> {
    Some(fixture_dirs()?.iter().map(|d| load(d)).collect())
}

/// The lines of a fixture's manifest.txt, each split into its words.
pub fn manifest(dir: &Path) -> Vec<Vec<String>> {
    let path = dir.join("manifest.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// A manifest's hex number (`0x...`).
pub fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("bad hex {s}"))
}

/// The GDBs that can read a target of `arch`: Debian's plain gdb is x86-only, so aarch64 gets
/// gdb-multiarch and GDB 18 (which reads any architecture).
pub fn gdbs_for(arch: &str) -> Vec<(String, PathBuf)> {
    let mut v = gdbs();
    if arch == "aarch64" {
        v.retain(|(n, _)| n != "gdb13");
        v.insert(0, ("gdb-multiarch".into(), PathBuf::from("gdb-multiarch")));
    }
    v
}

/// Debian's debug vmlinux of `release` (`make dbg-vmlinux`, cached in $KMEMD_DBG_CACHE or
/// /var/cache/kmemd-dbg), or None (skip) outside CI when it is missing; in CI its absence fails.
pub fn dbg_vmlinux(release: &str) -> Option<PathBuf> {
    let cache = std::env::var("KMEMD_DBG_CACHE").unwrap_or_else(|_| "/var/cache/kmemd-dbg".into());
    let p = Path::new(&cache).join(release).join(format!("vmlinux-{release}"));
    if p.exists() {
        return Some(p);
    }
    assert!(
        !in_ci(),
        "no debug vmlinux at {}: `make dbg-vmlinux`",
        p.display()
    );
    eprintln!(
        "SKIP: no debug vmlinux at {} (run `make dbg-vmlinux`)",
        p.display()
    );
    None
}

/// The address `nm` gives a symbol in the vmlinux (its link-time address).
pub fn nm_address(vmlinux: &Path, sym: &str) -> u64 {
    let o = std::process::Command::new("nm")
        .arg(vmlinux)
        .output()
        .expect("nm (binutils)");
    assert!(o.status.success(), "nm {}: {}", vmlinux.display(), text(&o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w.len() == 3 && w[2] == sym).then(|| hex(w[0]))
        })
        .unwrap_or_else(|| panic!("{sym} not in {}", vmlinux.display()))
}

/// The line `monitor kaslr` tells an x86_64 user to type when kmemd cannot alias .rodata, or
/// None when its alias serves what the scripts tests read there (`linux_banner`,
/// `__per_cpu_offset`): their link-time addresses must lie below the slid image, which starts
/// at `_text + slide`. A slide smaller than that distance (about 2 % of boots) puts them inside
/// the slid image, where kmemd leaves addresses alone.
pub fn kaslr_typed_line(vmlinux: &Path, slide: u64) -> Option<String> {
    let run_lo = nm_address(vmlinux, "_text") + slide;
    let reaches = ["linux_banner", "__per_cpu_offset"]
        .iter()
        .all(|s| nm_address(vmlinux, s) + 0x200 <= run_lo);
    (!reaches).then(|| {
        eprintln!(
            "slide {slide:#x} is smaller than .rodata's distance from _text: typing the add-symbol-file line"
        );
        format!(
            "add-symbol-file {} -o {slide:#x} -s .data..percpu 0",
            vmlinux.display()
        )
    })
}
