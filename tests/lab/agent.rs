//! The kernel lab's guest agent (`lab-agent`, built static for the guest's architecture and
//! started by tests/lab/init.sh). It serves the host's tests on a virtio serial port: it runs
//! commands, moves files, and keeps BPF "plants" (bytes at a known kernel address that the
//! kernel writes or reads on request: kmemd::live::plant) for the watchpoint tests.
//!
//! Wire format, both directions: one header line of space-separated ASCII words, optionally ending
//! with `:L1,L2,...` (decimal lengths), then that many raw blobs of those lengths, back to back.
//! The first word is the request id, echoed in the reply; requests run concurrently, each reply is
//! written whole. Requests (blobs in brackets) and their replies:
//!
//! | request                      | reply                                         |
//! |------------------------------|-----------------------------------------------|
//! | `ID hello`                   | `ID ok`                                       |
//! | `ID run MS [cmd]`            | `ID exit RC [out,err]` or `ID timeout [out,err]` (killed after MS) |
//! | `ID spawn [cmd]`             | `ID pid PID`                                  |
//! | `ID wait PID MS`             | `ID exit RC [out,err]`, or `ID running` after MS |
//! | `ID signal PID SIG`          | `ID ok`                                       |
//! | `ID put MODE [path,data]`    | `ID ok`                                       |
//! | `ID get [path]`              | `ID data [bytes]`                             |
//! | `ID plant LEN`               | `ID plant H ADDR` (ADDR in hex)               |
//! | `ID bump H N` / `ID load H N` | `ID ok` (N stores / N loads by a BPF program) |
//! | `ID write H [bytes]`         | `ID ok` (bpf_map_update_elem: copy_from_user) |
//! | `ID read H`                  | `ID data [bytes]`                             |
//! | `ID drop H`                  | `ID ok`                                       |
//! | `ID sysctl N FIRST [path]`   | `ID old V` (writes FIRST, FIRST+1, ... FIRST+N-1 to the sysctl file, one write(2) each, then its old value V back) |
//!
//! Any request may instead get `ID err [message]`. Commands run as `/bin/sh -c CMD` with stdin
//! from /dev/null; RC is the exit status, or 128 + the signal that ended it (as a shell says).
//! Spawned processes keep their output until `wait` returns it.
//!
//! The release profile aborts on panic, which would leave the tests talking to nobody: nothing here
//! unwraps what the host sent.

use kmemd::live::plant::Plant;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A child started by `spawn` or `run`, with threads collecting its stdout and stderr.
struct Job {
    child: Child,
    out: JoinHandle<Vec<u8>>,
    err: JoinHandle<Vec<u8>>,
}

/// What the request threads share.
struct Agent {
    reply: Mutex<File>,
    jobs: Mutex<HashMap<u32, Job>>,
    /// Plants are used from one thread (their BPF handles stay where they were made).
    plants: Sender<(Vec<String>, Vec<u8>, Sender<Reply>)>,
}

/// A reply: its words after the id, and its blobs.
struct Reply(Vec<String>, Vec<Vec<u8>>);

fn ok() -> Reply {
    Reply(vec!["ok".into()], Vec::new())
}

fn err(msg: impl Into<String>) -> Reply {
    Reply(vec!["err".into()], vec![msg.into().into_bytes()])
}

fn main() {
    let Some(path) = std::env::args().nth(1).filter(|p| !p.is_empty()) else {
        eprintln!("LAB-AGENT-ERROR usage: lab-agent /dev/vportNpM (the virtio serial port)");
        std::process::exit(2);
    };
    if let Err(e) = serve(&path) {
        eprintln!("LAB-AGENT-ERROR {e}");
        std::process::exit(1);
    }
}

fn serve(path: &str) -> Result<(), String> {
    let port = File::options()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))?;
    // The lab gives a virtio serial port (no tty); on a tty, no echo, no line editing and no
    // CR/LF translation: the blobs are binary.
    if kmemd::sys::os::is_tty(&port) {
        kmemd::sys::os::set_raw_mode(&port, None).map_err(|e| format!("raw mode on {path}: {e}"))?;
    }
    let writer = port.try_clone().map_err(|e| format!("dup {path}: {e}"))?;
    let (ptx, prx) = channel::<(Vec<String>, Vec<u8>, Sender<Reply>)>();
    std::thread::spawn(move || {
        let mut plants: HashMap<u64, Plant> = HashMap::new();
        let mut next = 1u64;
        for (words, blob, back) in prx {
            let _ = back.send(plant_request(&mut plants, &mut next, &words, blob));
        }
    });
    let agent = Arc::new(Agent {
        reply: Mutex::new(writer),
        jobs: Mutex::new(HashMap::new()),
        plants: ptx,
    });
    eprintln!("LAB-AGENT-READY {path}");
    let mut input = BufReader::new(port);
    loop {
        let mut line = Vec::new();
        let n = input
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("read {path}: {e}"))?;
        if n == 0 {
            // The host side is not connected: a virtio console reads EOF then. Wait for it.
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let header = String::from_utf8_lossy(&line).trim().to_string();
        if header.is_empty() {
            continue;
        }
        let (words, lens) = parse_header(&header);
        let mut blobs = Vec::with_capacity(lens.len());
        for len in lens {
            let mut b = vec![0u8; len];
            input
                .read_exact(&mut b)
                .map_err(|e| format!("read {path}: {e}"))?;
            blobs.push(b);
        }
        let Some(id) = words.first().cloned() else {
            continue;
        };
        let agent = agent.clone();
        std::thread::spawn(move || {
            let reply = handle(&agent, &words[1..], blobs);
            send(&agent, &id, reply);
        });
    }
}

/// `a b c :1,2` -> ([a, b, c], [1, 2]).
fn parse_header(header: &str) -> (Vec<String>, Vec<usize>) {
    let (words, lens) = match header.rfind(" :") {
        Some(i) => (&header[..i], &header[i + 2..]),
        None => (header, ""),
    };
    let lens = lens
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0))
        .collect();
    (words.split_whitespace().map(str::to_string).collect(), lens)
}

fn send(agent: &Agent, id: &str, Reply(words, blobs): Reply) {
    let mut msg = format!("{id} {}", words.join(" "));
    if !blobs.is_empty() {
        let lens: Vec<String> = blobs.iter().map(|b| b.len().to_string()).collect();
        msg.push_str(&format!(" :{}", lens.join(",")));
    }
    msg.push('\n');
    let mut bytes = msg.into_bytes();
    for b in blobs {
        bytes.extend_from_slice(&b);
    }
    let mut w = agent.reply.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(e) = w.write_all(&bytes).and_then(|_| w.flush()) {
        eprintln!("LAB-AGENT-ERROR reply {id}: {e}");
    }
}

fn num<T: std::str::FromStr>(words: &[String], i: usize) -> Result<T, String> {
    words
        .get(i)
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("argument {i} of {words:?} is missing or not a number"))
}

fn handle(agent: &Agent, words: &[String], mut blobs: Vec<Vec<u8>>) -> Reply {
    let verb = words.first().map(String::as_str).unwrap_or("");
    let r = match verb {
        "hello" => Ok(ok()),
        "run" => num(words, 1).and_then(|ms: u64| {
            let cmd = text(blobs.first())?;
            let pid = start(agent, &cmd)?;
            let r = wait(agent, pid, ms)?;
            if r.0[0] == "running" {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                let done = wait(agent, pid, 10_000)?;
                return Ok(Reply(vec!["timeout".into()], done.1));
            }
            Ok(r)
        }),
        "spawn" => text(blobs.first())
            .and_then(|cmd| start(agent, &cmd))
            .map(|pid| Reply(vec!["pid".into(), pid.to_string()], Vec::new())),
        "wait" => num(words, 1).and_then(|pid| num(words, 2).and_then(|ms| wait(agent, pid, ms))),
        "signal" => num(words, 1).and_then(|pid: u32| {
            num(words, 2).and_then(|sig: u32| {
                let st = Command::new("kill")
                    .args([format!("-{sig}"), pid.to_string()])
                    .status()
                    .map_err(|e| format!("kill: {e}"))?;
                if st.success() {
                    Ok(ok())
                } else {
                    Err(format!("kill -{sig} {pid} failed ({st})"))
                }
            })
        }),
        "put" => {
            let mode = words
                .get(1)
                .and_then(|m| u32::from_str_radix(m, 8).ok())
                .unwrap_or(0o644);
            if blobs.len() != 2 {
                Err("put needs a path and the data".into())
            } else {
                let data = blobs.pop().unwrap_or_default();
                text(blobs.first()).and_then(|path| put(&path, mode, &data).map(|_| ok()))
            }
        }
        "get" => text(blobs.first()).and_then(|path| {
            std::fs::read(&path)
                .map(|d| Reply(vec!["data".into()], vec![d]))
                .map_err(|e| format!("read {path}: {e}"))
        }),
        "sysctl" => num(words, 1).and_then(|n: u64| {
            num(words, 2).and_then(|first: u64| {
                let path = text(blobs.first())?;
                sysctl_burst(&path, n, first).map(|old| Reply(vec!["old".into(), old], Vec::new()))
            })
        }),
        "plant" | "bump" | "load" | "write" | "read" | "drop" => {
            let (tx, rx) = channel();
            let blob = blobs.pop().unwrap_or_default();
            if agent.plants.send((words.to_vec(), blob, tx)).is_err() {
                Err("the plant thread is gone".into())
            } else {
                rx.recv().map_err(|_| "the plant thread is gone".to_string())
            }
        }
        other => Err(format!("unknown request '{other}'")),
    };
    r.unwrap_or_else(err)
}

/// Writes `n` distinct decimal values from `first` to the sysctl file `path`, each with its own
/// pwrite(2) at offset 0 (a sysctl write must start at 0), so the kernel's handler stores each
/// once; then writes the old value back. Returns the old value.
fn sysctl_burst(path: &str, n: u64, first: u64) -> Result<String, String> {
    use std::os::unix::fs::FileExt;
    let old = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
    let old = old.trim().to_string();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| format!("open {path}: {e}"))?;
    let mut result = Ok(());
    for v in first..first.saturating_add(n) {
        if let Err(e) = f.write_at(v.to_string().as_bytes(), 0) {
            result = Err(format!("write {v} to {path}: {e}"));
            break;
        }
    }
    f.write_at(old.as_bytes(), 0)
        .map_err(|e| format!("restore {old} to {path}: {e}"))?;
    result.map(|_| old)
}

fn text(blob: Option<&Vec<u8>>) -> Result<String, String> {
    blob.map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| "missing argument blob".into())
}

fn put(path: &str, mode: u32, data: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    // Written beside and renamed: a running binary of the same name is not disturbed.
    let tmp = format!("{path}.lab-tmp");
    std::fs::write(&tmp, data).map_err(|e| format!("write {tmp}: {e}"))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {tmp}: {e}"))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("rename to {path}: {e}"))
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = r.read_to_end(&mut v);
        v
    })
}

fn start(agent: &Agent, cmd: &str) -> Result<u32, String> {
    let mut child = Command::new("/bin/sh")
        .args(["-c", cmd])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn sh -c {cmd:?}: {e}"))?;
    let out = collect(child.stdout.take().ok_or("no stdout pipe")?);
    let err = collect(child.stderr.take().ok_or("no stderr pipe")?);
    let pid = child.id();
    agent
        .jobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pid, Job { child, out, err });
    Ok(pid)
}

fn wait(agent: &Agent, pid: u32, ms: u64) -> Result<Reply, String> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    loop {
        let done = {
            let mut jobs = agent.jobs.lock().unwrap_or_else(|e| e.into_inner());
            let job = jobs.get_mut(&pid).ok_or(format!("no job {pid}"))?;
            match job.child.try_wait().map_err(|e| format!("wait {pid}: {e}"))? {
                Some(st) => jobs.remove(&pid).map(|j| (st, j)),
                None => None,
            }
        };
        if let Some((st, job)) = done {
            let rc = st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0));
            let out = job.out.join().unwrap_or_default();
            let err = job.err.join().unwrap_or_default();
            return Ok(Reply(vec!["exit".into(), rc.to_string()], vec![out, err]));
        }
        if Instant::now() >= deadline {
            return Ok(Reply(vec!["running".into()], Vec::new()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn plant_request(plants: &mut HashMap<u64, Plant>, next: &mut u64, words: &[String], blob: Vec<u8>) -> Reply {
    let r = (|| -> Result<Reply, String> {
        let verb = words.first().map(String::as_str).unwrap_or("");
        if verb == "plant" {
            let p = Plant::new(num(words, 1)?)?;
            let h = *next;
            *next += 1;
            let addr = p.kernel_addr();
            plants.insert(h, p);
            return Ok(Reply(
                vec!["plant".into(), h.to_string(), format!("{addr:#x}")],
                Vec::new(),
            ));
        }
        let h: u64 = num(words, 1)?;
        let p = plants.get(&h).ok_or(format!("no plant {h}"))?;
        match verb {
            "bump" => p.bump(num(words, 2)?).map(|_| ok()),
            "load" => p.load(num(words, 2)?).map(|_| ok()),
            "write" => p.write(&blob).map(|_| ok()),
            "read" => p.read_back().map(|d| Reply(vec!["data".into()], vec![d])),
            "drop" => {
                plants.remove(&h);
                Ok(ok())
            }
            _ => Err(format!("unknown plant request '{verb}'")),
        }
    })();
    r.unwrap_or_else(err)
}
