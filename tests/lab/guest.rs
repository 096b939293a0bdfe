//! The kernel lab's host side: Debian's own amd64 and arm64 kernels booted under QEMU (TCG) by
//! tests/lab/labd.py, with KASLR, kprobes, /proc/kcore and data symbols where Debian has them, and
//! the static kmemd inside. Each guest boots once per test process, on first use, and is shared by
//! every test; it dies with the process (labd.py kills QEMU when our pipe to it closes).
//!
//! A test talks to the guest's agent (tests/lab/agent.rs, wire format documented there): it runs
//! commands and reads their output and exit codes, keeps BPF plants the kernel writes on request,
//! and borrows a virtio serial line on which `kmemd -s /dev/hvcN` serves the host's GDB.

use crate::common::in_ci;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The two guest architectures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86_64,
    Aarch64,
}

pub const ARCHES: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

impl Arch {
    /// Debian's name (the kernel package's and the debug vmlinux cache's).
    pub fn deb(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a finished command gave.
#[derive(Debug, Clone)]
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The agent killed it at the time limit.
    pub timed_out: bool,
}

impl Out {
    pub fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// A reply from the agent: its words (after the id) and its blobs.
type Msg = (Vec<String>, Vec<Vec<u8>>);

pub struct Guest {
    pub arch: Arch,
    /// `uname -r` in the guest.
    pub release: String,
    /// The guest kernel's console log (on the host).
    pub console: PathBuf,
    pub boot_s: f64,
    writer: Mutex<UnixStream>,
    pending: Arc<Mutex<HashMap<u64, Sender<Msg>>>>,
    next_id: AtomicU64,
    ports: Vec<PathBuf>,
    free_ports: Mutex<Vec<bool>>,
    /// The host end of the guest's /dev/lab-stream, one user at a time (`stream`).
    stream: Mutex<PathBuf>,
    slots: Mutex<()>,
    hostname: Mutex<()>,
    kallsyms: OnceLock<HashMap<String, u64>>,
    /// QEMU's QMP socket, on guests booted dumpable (`dump_elf`).
    qmp: Option<PathBuf>,
    _labd: Mutex<(Child, ChildStdin)>,
}

/// The host's two cores, shared by the lab's tests. A GDB session on the host (Served, shared
/// use) loads a 300-600 MB vmlinux and, with the kernel's scripts, runs Python for seconds; the
/// 100,000-write burst (exclusive use) needs the TCG guest's vCPU and kmemd in it at full speed,
/// or its perf ring fills. CI run 14 lost 9,405 of 100,001 hits while the scripts test ran
/// beside the burst.
static HOST_CORES: RwLock<()> = RwLock::new(());

/// Shared use of the host's cores, for as long as a host-side GDB session runs.
pub fn host_cores_shared() -> RwLockReadGuard<'static, ()> {
    HOST_CORES.read().unwrap_or_else(|e| e.into_inner())
}

/// The host's cores with no host-side GDB session beside: for a test that measures how fast
/// the guest's kmemd keeps up.
pub fn host_cores_alone() -> RwLockWriteGuard<'static, ()> {
    HOST_CORES.write().unwrap_or_else(|e| e.into_inner())
}

/// The whole lab for one test: every guest's debug registers (taken in ARCHES order, after
/// booting both guests), then the host's cores alone. A watch test in the other guest (BPF store
/// storms, a sysctl loop) also takes host cores from a TCG guest: CI's burst ran beside one.
pub struct LabAlone {
    _slots: Vec<MutexGuard<'static, ()>>,
    _host: RwLockWriteGuard<'static, ()>,
}

/// See [`LabAlone`].
pub fn lab_alone() -> LabAlone {
    let guests: Vec<&'static Guest> = ARCHES.iter().map(|a| guest(*a)).collect();
    let slots = guests.iter().map(|g| g.slots()).collect();
    LabAlone {
        _slots: slots,
        _host: host_cores_alone(),
    }
}

/// The static kmemd and agent for the guest's arch (`make lab-bins`), newer than every source
/// file.
fn guest_binaries(arch: Arch) -> Result<(PathBuf, PathBuf), String> {
    Ok((
        crate::common::fresh_release_binary(arch.triple(), "kmemd")?,
        crate::common::fresh_release_binary(arch.triple(), "examples/lab-agent")?,
    ))
}

/// A labd.py started but not yet waited for.
struct Booting {
    child: Child,
    stdin: ChildStdin,
    dir: PathBuf,
}

/// Each arch's boot, taken by the first `guest()` of that arch.
type Boots = Mutex<[Option<Result<Booting, String>>; 2]>;

static STARTED: OnceLock<Boots> = OnceLock::new();
static GUESTS: [OnceLock<Result<Guest, String>>; 2] = [OnceLock::new(), OnceLock::new()];

/// Starts both guests' boots (they overlap: TCG boots take 10-60 s), once.
fn start_all() -> &'static Boots {
    STARTED.get_or_init(|| Mutex::new(ARCHES.map(|a| Some(start(a)))))
}

fn start(arch: Arch) -> Result<Booting, String> {
    start_kind(arch, arch.deb(), &[])
}

/// Starts a labd.py for `arch` in a work directory named after `kind`, with extra labd.py flags.
fn start_kind(arch: Arch, kind: &str, flags: &[&str]) -> Result<Booting, String> {
    if std::env::var("KMEMD_LAB").as_deref() == Ok("skip") {
        assert!(!in_ci(), "KMEMD_LAB=skip is not allowed under CI");
        return Err("KMEMD_LAB=skip".into());
    }
    let (kmemd, agent) = guest_binaries(arch)?;
    let dir = std::env::temp_dir().join(format!("kmemd-lab-{}-{kind}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut child = Command::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lab/labd.py"))
        .args(["--arch", arch.deb()])
        .arg("--kmemd")
        .arg(&kmemd)
        .arg("--agent")
        .arg(&agent)
        .arg("--dir")
        .arg(&dir)
        .args(flags)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("labd.log")).map_err(|e| e.to_string())?)
        .spawn()
        .map_err(|e| format!("cannot start tests/lab/labd.py: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    Ok(Booting { child, stdin, dir })
}

/// The lab guest of `arch`, booted on first use. Panics (failing the test) with the reason and
/// the console's tail when the lab cannot run.
pub fn guest(arch: Arch) -> &'static Guest {
    let g = GUESTS[arch.index()].get_or_init(|| {
        let booting = start_all().lock().unwrap_or_else(|e| e.into_inner())[arch.index()]
            .take()
            .ok_or("the lab guest was already taken")?;
        boot(arch, booting?)
    });
    match g {
        Ok(g) => g,
        Err(e) if e == "KMEMD_LAB=skip" => panic!("the kernel lab is switched off (KMEMD_LAB=skip)"),
        Err(e) => panic!("the {} kernel lab guest is not available: {e}", arch.name()),
    }
}

static PAC_GUEST: OnceLock<Result<Guest, String>> = OnceLock::new();

/// The QEMU CPU model of the PAC guest: `max` has pointer authentication; `pauth-impdef=on` makes
/// QEMU sign with its cheap implementation-defined algorithm instead of QARMA, which is much
/// slower under TCG. Debian's arm64 kernel (CONFIG_ARM64_PTR_AUTH_KERNEL=y) then signs every
/// return address it saves on the stack.
pub const PAC_CPU: &str = "max,pauth-impdef=on";

/// A third guest, booted only when a test asks for it: Debian's arm64 kernel on a CPU with
/// pointer authentication, dumpable (`Guest::dump_elf`).
pub fn pac_guest() -> &'static Guest {
    let g = PAC_GUEST.get_or_init(|| {
        let booting = start_kind(Arch::Aarch64, "arm64-pac", &["--cpu", PAC_CPU, "--dumpable"])?;
        boot(Arch::Aarch64, booting)
    });
    match g {
        Ok(g) => g,
        Err(e) if e == "KMEMD_LAB=skip" => panic!("the kernel lab is switched off (KMEMD_LAB=skip)"),
        Err(e) => panic!("the arm64 PAC kernel lab guest is not available: {e}"),
    }
}

fn boot(arch: Arch, b: Booting) -> Result<Guest, String> {
    let Booting {
        mut child,
        stdin,
        dir,
    } = b;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut info: HashMap<String, Vec<String>> = HashMap::new();
    let mut ready = false;
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| e.to_string())?;
        if line == "LABD-READY" {
            ready = true;
            break;
        }
        if let Some(why) = line.strip_prefix("LABD-FAILED ") {
            return Err(format!("{why}\n{}", tail(&dir.join("console.log"), 3000)));
        }
        if let Some((k, v)) = line.split_once(' ') {
            info.entry(k.to_string()).or_default().push(v.to_string());
        }
    }
    if !ready {
        let log = std::fs::read_to_string(dir.join("labd.log")).unwrap_or_default();
        return Err(format!("labd.py ended before the guest was ready:\n{log}"));
    }
    let one = |k: &str| -> Result<String, String> {
        info.get(k)
            .and_then(|v| v.first().cloned())
            .ok_or(format!("labd.py said no {k}"))
    };
    let stream = UnixStream::connect(one("agent")?).map_err(|e| format!("agent socket: {e}"))?;
    let reader = stream.try_clone().map_err(|e| e.to_string())?;
    let pending: Arc<Mutex<HashMap<u64, Sender<Msg>>>> = Arc::default();
    {
        let pending = pending.clone();
        std::thread::spawn(move || read_replies(reader, pending));
    }
    let ports: Vec<PathBuf> = info
        .get("port")
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(PathBuf::from)
        .collect();
    let g = Guest {
        arch,
        release: one("release")?,
        console: PathBuf::from(one("console")?),
        boot_s: one("boot_s")?.parse().unwrap_or(0.0),
        writer: Mutex::new(stream),
        pending,
        next_id: AtomicU64::new(1),
        free_ports: Mutex::new(vec![true; ports.len()]),
        ports,
        stream: Mutex::new(PathBuf::from(one("stream")?)),
        slots: Mutex::new(()),
        hostname: Mutex::new(()),
        kallsyms: OnceLock::new(),
        qmp: info.get("qmp").and_then(|v| v.first()).map(PathBuf::from),
        _labd: Mutex::new((child, stdin)),
    };
    let (words, _) = g.request("hello", &[], Duration::from_secs(60))?;
    if words.first().map(String::as_str) != Some("ok") {
        return Err(format!("the agent answered hello with {words:?}"));
    }
    eprintln!("lab: {} guest {} up in {:.1} s", arch.name(), g.release, g.boot_s);
    Ok(g)
}

fn tail(p: &Path, n: usize) -> String {
    let t = std::fs::read_to_string(p).unwrap_or_default();
    let start = t.len().saturating_sub(n);
    let start = (start..t.len())
        .find(|&i| t.is_char_boundary(i))
        .unwrap_or(t.len());
    format!("--- {} (tail) ---\n{}", p.display(), &t[start..])
}

fn read_replies(stream: UnixStream, pending: Arc<Mutex<HashMap<u64, Sender<Msg>>>>) {
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = line.trim_end();
        let (head, lens) = match line.rfind(" :") {
            Some(i) => (&line[..i], &line[i + 2..]),
            None => (line, ""),
        };
        let mut blobs = Vec::new();
        for l in lens.split(',').filter(|s| !s.is_empty()) {
            let mut b = vec![0u8; l.parse().unwrap_or(0)];
            if r.read_exact(&mut b).is_err() {
                return;
            }
            blobs.push(b);
        }
        let mut words = head.split_whitespace().map(str::to_string);
        let Some(id) = words.next().and_then(|w| w.parse::<u64>().ok()) else {
            continue;
        };
        if let Some(tx) = pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
            let _ = tx.send((words.collect(), blobs));
        }
    }
    // The agent is gone: wake everybody (their channels close).
    pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

impl Guest {
    /// Writes an ELF dump of the whole guest to `path` with QEMU's `dump-guest-memory` (the guest
    /// pauses meanwhile and then runs on), as `make fixtures` makes its QEMU ELF dumps. The guest
    /// must have been booted dumpable.
    pub fn dump_elf(&self, path: &Path) {
        let sock = self
            .qmp
            .as_ref()
            .unwrap_or_else(|| panic!("the {} guest was not booted dumpable", self.arch.name()));
        let stream = UnixStream::connect(sock).unwrap_or_else(|e| panic!("{}: {e}", sock.display()));
        stream.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        let mut w = stream.try_clone().unwrap();
        let mut r = BufReader::new(stream);
        // QMP: a greeting, then one JSON object per line; events may come between the replies.
        let reply = |r: &mut BufReader<UnixStream>| loop {
            let mut l = String::new();
            if r.read_line(&mut l).unwrap_or(0) == 0 {
                panic!("QEMU closed QMP");
            }
            if l.contains("\"return\"") || l.contains("\"error\"") || l.contains("\"QMP\"") {
                break l;
            }
        };
        reply(&mut r);
        for cmd in [
            r#"{"execute":"qmp_capabilities"}"#.to_string(),
            format!(
                r#"{{"execute":"dump-guest-memory","arguments":{{"paging":false,"protocol":"file:{}","format":"elf"}}}}"#,
                path.display()
            ),
        ] {
            w.write_all(format!("{cmd}\n").as_bytes()).unwrap();
            let l = reply(&mut r);
            assert!(l.contains("\"return\""), "QMP {cmd}: {l}");
        }
    }

    /// Sends one request and waits up to `limit` for its reply.
    fn request(&self, words: &str, blobs: &[&[u8]], limit: Duration) -> Result<Msg, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx): (Sender<Msg>, Receiver<Msg>) = channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        let mut msg = format!("{id} {words}");
        if !blobs.is_empty() {
            let lens: Vec<String> = blobs.iter().map(|b| b.len().to_string()).collect();
            msg.push_str(&format!(" :{}", lens.join(",")));
        }
        msg.push('\n');
        let mut bytes = msg.into_bytes();
        for b in blobs {
            bytes.extend_from_slice(b);
        }
        self.writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .write_all(&bytes)
            .map_err(|e| format!("to the agent: {e}"))?;
        rx.recv_timeout(limit).map_err(|e| {
            format!(
                "no reply to '{words}' from the {} guest within {limit:?} ({e})\n{}",
                self.arch.name(),
                tail(&self.console, 2000)
            )
        })
    }

    fn expect(&self, words: &str, blobs: &[&[u8]], limit: Duration) -> Msg {
        let (w, b) = self
            .request(words, blobs, limit)
            .unwrap_or_else(|e| panic!("{e}"));
        if w.first().map(String::as_str) == Some("err") {
            panic!(
                "the {} guest refused '{words}': {}",
                self.arch.name(),
                String::from_utf8_lossy(b.first().map(Vec::as_slice).unwrap_or_default())
            );
        }
        (w, b)
    }

    /// Runs `sh -c cmd` in the guest (killed after `limit`).
    pub fn run_for(&self, cmd: &str, limit: Duration) -> Out {
        let ms = limit.as_millis().to_string();
        let (w, b) = self.expect(
            &format!("run {ms}"),
            &[cmd.as_bytes()],
            limit + Duration::from_secs(30),
        );
        out_of(&w, &b)
    }

    /// Runs `sh -c cmd` in the guest, for up to two minutes.
    pub fn run(&self, cmd: &str) -> Out {
        self.run_for(cmd, Duration::from_secs(120))
    }

    /// Runs `cmd` and returns its stdout; a non-zero exit fails the test with its output.
    pub fn sh(&self, cmd: &str) -> String {
        let o = self.run(cmd);
        let how = if o.timed_out { "timed out" } else { "failed" };
        assert_eq!(
            o.code,
            0,
            "in the {} guest, `{cmd}` {how}:\n{}",
            self.arch.name(),
            o.text()
        );
        o.stdout
    }

    /// Starts `sh -c cmd` in the guest without waiting.
    pub fn spawn(&self, cmd: &str) -> Job<'_> {
        let (w, _) = self.expect("spawn", &[cmd.as_bytes()], Duration::from_secs(30));
        let pid = w.get(1).and_then(|p| p.parse().ok()).expect("spawn gave no pid");
        Job { guest: self, pid }
    }

    /// Reads a file from the guest.
    pub fn get(&self, path: &str) -> Vec<u8> {
        let (_, mut b) = self.expect("get", &[path.as_bytes()], Duration::from_secs(120));
        b.pop().unwrap_or_default()
    }

    /// `len` bytes at a kernel address that the kernel writes (`bump`, `write`) and reads
    /// (`load`) on request; freed on drop.
    pub fn plant(&self, len: usize) -> GuestPlant<'_> {
        let (w, _) = self.expect(&format!("plant {len}"), &[], Duration::from_secs(60));
        let h = w.get(1).cloned().expect("plant handle");
        let addr = w
            .get(2)
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
            .expect("plant address");
        GuestPlant { guest: self, h, addr }
    }

    /// Writes `n` distinct values `first..first + n` to the sysctl file `path` (one write(2)
    /// each, by the agent), then its old value back; returns the old value.
    pub fn sysctl_burst(&self, path: &str, n: u64, first: u64) -> u64 {
        let (w, _) = self.expect(
            &format!("sysctl {n} {first}"),
            &[path.as_bytes()],
            Duration::from_secs(900),
        );
        w.get(1)
            .and_then(|v| v.parse().ok())
            .expect("the sysctl's old value")
    }

    /// Exclusive use of the guest's debug registers (watch tests run one at a time per guest).
    pub fn slots(&self) -> MutexGuard<'_, ()> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Exclusive use of the guest's hostname (tests set it to a marker and read it back).
    pub fn hostname(&self) -> MutexGuard<'_, ()> {
        self.hostname.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A free virtio serial line: the guest's `/dev/hvcN` and the host socket wired to it.
    pub fn port(&self) -> Port<'_> {
        let start = Instant::now();
        loop {
            {
                let mut free = self.free_ports.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(i) = free.iter().position(|f| *f) {
                    free[i] = false;
                    return Port {
                        guest: self,
                        index: i,
                        dev: format!("/dev/hvc{i}"),
                        host: self.ports[i].clone(),
                    };
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "no free serial line in 10 minutes"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The host's end of the guest's `/dev/lab-stream`, a virtio serial port with no tty layer:
    /// what a guest command writes there arrives here, in order, at the speed the host reads it,
    /// without a filter running on the guest's CPUs. Connected before the guest opens its end, so
    /// nothing written is dropped. One user at a time (the guest's port opens only once).
    pub fn stream(&self) -> Stream<'_> {
        let path = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let sock =
            UnixStream::connect(&*path).unwrap_or_else(|e| panic!("stream socket {}: {e}", path.display()));
        Stream { _only: path, sock }
    }

    /// The guest's /proc/kallsyms as name -> address (the first of duplicate names).
    pub fn kallsyms(&self) -> &HashMap<String, u64> {
        self.kallsyms.get_or_init(|| {
            let mut m = HashMap::new();
            for l in self.sh("cat /proc/kallsyms").lines() {
                let mut f = l.split_whitespace();
                if let (Some(a), Some(_), Some(n)) = (f.next(), f.next(), f.next()) {
                    if let Ok(a) = u64::from_str_radix(a, 16) {
                        m.entry(n.to_string()).or_insert(a);
                    }
                }
            }
            m
        })
    }

    pub fn ksym(&self, name: &str) -> u64 {
        *self
            .kallsyms()
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not in the {} guest's kallsyms", self.arch.name()))
    }

    /// Debian's debug vmlinux of the guest's kernel (`make dbg-vmlinux` fetches it).
    pub fn vmlinux(&self) -> PathBuf {
        let cache = std::env::var("KMEMD_DBG_CACHE").unwrap_or_else(|_| "/var/cache/kmemd-dbg".into());
        let p = Path::new(&cache)
            .join(&self.release)
            .join(format!("vmlinux-{}", self.release));
        assert!(
            p.exists(),
            "no debug vmlinux at {}: run `make dbg-vmlinux`",
            p.display()
        );
        p
    }
}

fn out_of(w: &[String], b: &[Vec<u8>]) -> Out {
    let blob =
        |i: usize| String::from_utf8_lossy(b.get(i).map(Vec::as_slice).unwrap_or_default()).into_owned();
    let timed_out = w.first().map(String::as_str) == Some("timeout");
    Out {
        code: if timed_out {
            -1
        } else {
            w.get(1).and_then(|c| c.parse().ok()).unwrap_or(-1)
        },
        stdout: blob(0),
        stderr: blob(1),
        timed_out,
    }
}

/// A process started with `Guest::spawn`.
pub struct Job<'g> {
    guest: &'g Guest,
    pub pid: u32,
}

impl Job<'_> {
    /// Waits up to `limit` for the process to end; None if it is still running.
    pub fn wait_for(&self, limit: Duration) -> Option<Out> {
        let ms = limit.as_millis();
        let (w, b) = self.guest.expect(
            &format!("wait {} {ms}", self.pid),
            &[],
            limit + Duration::from_secs(30),
        );
        (w.first().map(String::as_str) == Some("exit")).then(|| out_of(&w, &b))
    }

    /// Waits for the end, failing the test (and killing the process) after `limit`.
    pub fn wait(&self, limit: Duration) -> Out {
        match self.wait_for(limit) {
            Some(o) => o,
            None => {
                let _ = self
                    .guest
                    .request(&format!("signal {} 9", self.pid), &[], Duration::from_secs(30));
                let o = self.wait_for(Duration::from_secs(30));
                panic!(
                    "in the {} guest, pid {} did not end within {limit:?}; its output:\n{}",
                    self.guest.arch.name(),
                    self.pid,
                    o.map(|o| o.text()).unwrap_or_default()
                );
            }
        }
    }

    pub fn signal(&self, sig: i32) {
        self.guest.expect(
            &format!("signal {} {sig}", self.pid),
            &[],
            Duration::from_secs(30),
        );
    }
}

/// A background job that must not outlive its test, even one that fails: on drop it kills the
/// job, waits for it, then runs `undo` (errors ignored: drop may run while a failed assertion
/// unwinds). A writer left running after a failed test would keep writing into whatever the
/// next test holding the same lock watches.
pub struct Scoped<'g> {
    job: Job<'g>,
    undo: String,
}

impl<'g> Job<'g> {
    /// Ties the job to the caller's scope; `undo` (a shell command) restores what it changed.
    pub fn scoped(self, undo: &str) -> Scoped<'g> {
        Scoped {
            job: self,
            undo: undo.to_string(),
        }
    }
}

impl Drop for Scoped<'_> {
    fn drop(&mut self) {
        let g = self.job.guest;
        let limit = Duration::from_secs(30);
        let _ = g.request(&format!("signal {} 9", self.job.pid), &[], limit);
        let _ = g.request(&format!("wait {} 30000", self.job.pid), &[], limit + limit);
        let _ = g.request("run 30000", &[self.undo.as_bytes()], limit + limit);
    }
}

/// A plant in the guest (kmemd::live::plant::Plant, kept by the agent).
pub struct GuestPlant<'g> {
    guest: &'g Guest,
    h: String,
    pub addr: u64,
}

impl GuestPlant<'_> {
    /// `n` 8-byte kernel stores (each adds 1 to the first u64), by a BPF program in one test run.
    pub fn bump(&self, n: u32) {
        self.guest
            .expect(&format!("bump {} {n}", self.h), &[], Duration::from_secs(600));
    }

    /// `n` 8-byte kernel loads and no store.
    pub fn load(&self, n: u32) {
        self.guest
            .expect(&format!("load {} {n}", self.h), &[], Duration::from_secs(600));
    }

    /// Writes `data` through bpf_map_update_elem: the kernel copies it in from user space.
    pub fn write(&self, data: &[u8]) {
        self.guest
            .expect(&format!("write {}", self.h), &[data], Duration::from_secs(60));
    }

    pub fn read(&self) -> Vec<u8> {
        let (_, mut b) = self
            .guest
            .expect(&format!("read {}", self.h), &[], Duration::from_secs(60));
        b.pop().unwrap_or_default()
    }
}

impl Drop for GuestPlant<'_> {
    fn drop(&mut self) {
        let _ = self
            .guest
            .request(&format!("drop {}", self.h), &[], Duration::from_secs(30));
    }
}

/// A connection to the guest's `/dev/lab-stream` (`Guest::stream`).
pub struct Stream<'g> {
    _only: MutexGuard<'g, PathBuf>,
    pub sock: UnixStream,
}

/// The line a guest command writes to `/dev/lab-stream` after its output (`Stream`), so that the
/// host knows that all of it has come.
pub const STREAM_END: &str = "LAB-STREAM-END";

/// A borrowed serial line.
pub struct Port<'g> {
    guest: &'g Guest,
    index: usize,
    /// The guest's device, for `kmemd -s`.
    pub dev: String,
    /// The host's UNIX socket, for `target remote`.
    pub host: PathBuf,
}

impl Drop for Port<'_> {
    fn drop(&mut self) {
        self.guest.free_ports.lock().unwrap_or_else(|e| e.into_inner())[self.index] = true;
    }
}
