#!/usr/bin/env python3
"""make bench, footprint part (issues 5, 16, 19): the static binaries' sizes, then issue 16's table:
kmemd's own peak RSS (VmHWM from /proc/PID/status, or ru_maxrss for a process that has exited:
both are the kernel's hiwater_rss) and start-up times, each beside its goal and, where the issue
asks, beside a reference measured in the same run. Not a test: nothing asserted (the regression
tests are tests/footprint.rs).

The C kmemd the issue compares with is not installed on this host; its column says so.

Usage: footprint.py KMEMD [STUB [CEILING]]   (root, for the live rows)
  STUB     an RSP stub answering from a table (examples/table_stub), for the ratio rows
  CEILING  examples/read_throughput (its `ceiling` mode is the BPF read+copy probe)
"""
import ctypes, os, socket, struct, subprocess, sys, tempfile, threading, time

KMEMD = sys.argv[1]
STUB = sys.argv[2] if len(sys.argv) > 2 else None
THROUGHPUT = sys.argv[3] if len(sys.argv) > 3 else None
FIX = os.path.join(os.environ.get("KMEMD_FIXTURES", ".fixtures"), "current", "x86_64-4l")
GDB18 = os.environ.get("KMEMD_GDB18", "/opt/kmemd-gdb18/bin/gdb")
MIB = 1 << 20
SIZE = 16 * MIB
C_KMEMD = "not on this host"
ROWS = []


def row(what, got, goal, ref=""):
    ROWS.append((what, got, goal, ref))
    print(f"  {what}: {got} (goal {goal}){'; ' + ref if ref else ''}", flush=True)


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def vmhwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
PTRACE_TRACEME, PTRACE_CONT, PTRACE_SETOPTIONS, PTRACE_O_TRACEEXIT = 0, 7, 0x4200, 0x40


def run_rusage(argv):
    """Runs argv to its end: (wall seconds, its VmHWM in KiB, exit status). The child is traced and
    stopped at its exit, where /proc still shows its own VmHWM. (ru_maxrss would not do: it keeps
    the high-water mark of the memory the process had before its exec, here Python's.)"""
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            _LIBC.ptrace(PTRACE_TRACEME, 0, None, None)
            fd = os.open(os.devnull, os.O_RDWR)
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    hwm = 0
    _, status = os.waitpid(pid, 0)  # the exec's SIGTRAP
    _LIBC.ptrace(PTRACE_SETOPTIONS, pid, None, PTRACE_O_TRACEEXIT)
    _LIBC.ptrace(PTRACE_CONT, pid, None, None)
    while True:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            return time.perf_counter() - t, hwm, os.waitstatus_to_exitcode(status)
        if os.WIFSTOPPED(status):
            sig = os.WSTOPSIG(status)
            if status >> 16 == 6:  # PTRACE_EVENT_EXIT: still in /proc
                hwm = vmhwm_kib(pid)
                sig = 0
            _LIBC.ptrace(PTRACE_CONT, pid, None, sig)


def wait_unix(sock):
    for _ in range(800):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.close()
            return True
        except OSError:
            time.sleep(0.025)
    return False


class Served:
    """A server on a fresh UNIX socket; `.hwm()` is its VmHWM so far."""

    def __init__(self, argv_for_sock, stderr=False):
        self.tmp = tempfile.mkdtemp(prefix="kmemd-footprint-")
        self.sock = os.path.join(self.tmp, "s.sock")
        self.err = os.path.join(self.tmp, "stderr")
        err = open(self.err, "w") if stderr else subprocess.DEVNULL
        self.p = subprocess.Popen(argv_for_sock(self.sock), stdout=subprocess.DEVNULL, stderr=err)
        if not wait_unix(self.sock):
            self.stop()
            raise RuntimeError(f"{argv_for_sock(self.sock)} did not come up")

    def hwm(self):
        return vmhwm_kib(self.p.pid)

    def stderr_lines(self):
        """What it has written to stderr so far (when started with stderr=True)."""
        try:
            return open(self.err).read().splitlines()
        except OSError:
            return []

    def stop(self):
        self.p.kill()
        self.p.wait()


def packets(buf):
    """Whole `$payload#xx` packets at the front of buf (a bytearray, consumed); acks and 0x03
    between them are dropped."""
    out = []
    while True:
        start = buf.find(b"$")
        if start < 0:
            buf.clear()
            return out
        end = buf.find(b"#", start)
        if end < 0 or len(buf) < end + 3:
            del buf[:start]
            return out
        out.append(bytes(buf[start + 1:end]))
        del buf[:end + 3]


class Recorder:
    """A proxy between GDB and a server, both on UNIX sockets, that records each request with the
    server's reply and the thread the last `Hg` chose: the table table_stub --replay answers from
    (its format is in examples/table_stub.rs). Never timed: only the recorded replies matter."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.tmp = tempfile.mkdtemp(prefix="kmemd-record-")
        self.sock = os.path.join(self.tmp, "r.sock")
        self.table = {}
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.sock)
        self.listener.listen(1)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            self._session(c)

    def _session(self, c):
        u = socket.socket(socket.AF_UNIX)
        u.connect(self.upstream)
        asked, lock = [], threading.Lock()
        state = {"thread": b""}

        def requests():
            buf = bytearray()
            while True:
                try:
                    data = c.recv(1 << 16)
                    if not data:
                        u.shutdown(socket.SHUT_WR)
                        return
                except OSError:  # the other direction ended the session
                    return
                buf += data
                for p in packets(buf):
                    if p.startswith(b"Hg"):
                        state["thread"] = p[2:]
                    with lock:
                        asked.append((state["thread"], p))
                u.sendall(data)

        t = threading.Thread(target=requests, daemon=True)
        t.start()
        buf = bytearray()
        while True:
            data = u.recv(1 << 16)
            if not data:
                break
            buf += data
            for reply in packets(buf):
                with lock:
                    key = asked.pop(0) if asked else None
                if key is not None:
                    self.table.setdefault(key, reply)
            c.sendall(data)
        c.close()
        u.close()

    def save(self, path):
        with open(path, "w") as f:
            for (thread, req), reply in self.table.items():
                f.write(f"{thread.hex() or '-'} {req.hex()} {reply.hex()}\n")
        return len(self.table)

    def stop(self):
        self.listener.close()


def gdb_run(target, cmds, gdb="gdb"):
    args = [gdb, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off",
            "-ex", f"target remote {target}"]
    for c in cmds:
        args += ["-ex", c]
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, timeout=1200)
    return time.perf_counter() - t, r.stdout + r.stderr


def session_cmds(addr, out):
    return ["info threads", "monitor ps", "monitor dmesg", "monitor lsmod", "thread apply all bt",
            f"dump binary memory {out} {addr:#x} {addr + SIZE:#x}"]


def session_hwm(extra_args, addr, kmemd=None):
    """kmemd's VmHWM after issue 16's GDB session: (KiB, bytes dumped, seconds)."""
    srv = Served(lambda s: [kmemd or KMEMD, "-q", "-s", s] + extra_args)
    out = os.path.join(srv.tmp, "dump.bin")
    try:
        secs, _ = gdb_run(srv.sock, session_cmds(addr, out))
        got = os.path.getsize(out) if os.path.exists(out) else 0
        return srv.hwm(), got, secs
    finally:
        srv.stop()


def idle_sessions(counts):
    """Peak RSS of kmemd serving the live kernel after each count of GDBs has connected and gone
    idle at its prompt (all stay connected)."""
    srv = Served(lambda s: [KMEMD, "-q", "-s", s])
    gdbs, out = [], {}
    try:
        for i in range(max(counts)):
            g = subprocess.Popen(["gdb", "-nx", "-q", "-ex", "set pagination off"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            g.stdin.write(f"target remote {srv.sock}\necho @@connected@@\\n\n")
            g.stdin.flush()
            for line in g.stdout:
                if "@@connected@@" in line:
                    break
            gdbs.append(g)
            if i + 1 in counts:
                out[i + 1] = srv.hwm()
    finally:
        for g in gdbs:
            g.kill()
            g.wait()
        srv.stop()
    return out


def sessions_in_a_row(n, addr):
    """VmHWM after the first short session and after n of them (issue 16: no per-session growth)."""
    srv = Served(lambda s: [KMEMD, "-q", "-s", s])
    try:
        script = ["set pagination off", f"target remote {srv.sock}", f"x/2gx {addr:#x}", "info threads",
                  "disconnect"]
        gdb_run(srv.sock, script[2:])
        first = srv.hwm()
        # One GDB, many connections: a GDB start per session would take minutes.
        cmds = "\n".join(script[1:] * (n - 1)) + "\n"
        subprocess.run(["gdb", "-nx", "-q", "-batch", "-x", "/dev/stdin"], input=cmds, text=True,
                       capture_output=True, timeout=1200)
        return first, srv.hwm()
    finally:
        srv.stop()


def text_addr():
    for line in open("/proc/kallsyms"):
        a, _, name = line.split()[:3]
        if name == "_text":
            return int(a, 16)
    return None


def read_rows(addr):
    runs = [run_rusage([KMEMD, "-q", "--read", hex(addr), "16"]) for _ in range(5)]
    ok = all(r[2] == 0 for r in runs)
    wall = min(r[0] for r in runs)
    hwm = max(r[1] for r in runs)
    row("kmemd --read ADDR 16: peak RSS", mib(hwm) + ("" if ok else " (FAILED)"), "<= 3 MiB")
    row("kmemd --read ADDR 16: wall (best of 5)", f"{wall * 1e3:.1f} ms", "<= 10 ms")
    board = static_kmemd()
    if board:
        runs = [run_rusage([board, "-q", "--read", hex(addr), "16"]) for _ in range(5)]
        ok = all(r[2] == 0 for r in runs)
        row("  the same, static musl binary: peak RSS, wall (best of 5)",
            f"{mib(max(r[1] for r in runs))}, {min(r[0] for r in runs) * 1e3:.1f} ms" + ("" if ok else " (FAILED)"),
            "<= 3 MiB, <= 10 ms")
    if THROUGHPUT:
        rates = {}
        for mode in ("copy", "ceiling"):
            r = subprocess.run([THROUGHPUT, hex(addr), str(SIZE), "20", mode], capture_output=True, text=True)
            rates[mode] = float(r.stdout) if r.returncode == 0 and r.stdout.strip() else 0.0
        ratio = rates["copy"] / rates["ceiling"] if rates["ceiling"] else 0.0
        row("kmemd --read throughput (its copy loop, 16 MiB, best of 20)",
            f"{rates['copy']:.0f} MiB/s = {ratio * 100:.0f} % of the ceiling", ">= 90 %",
            f"BPF test-run + memcpy probe at the same chunk: {rates['ceiling']:.0f} MiB/s")


def dump_rate(gdb, target, addr):
    out = tempfile.mktemp(prefix="kmemd-footprint-dump-")
    t0, _ = gdb_run(target, [], gdb)
    t1, _ = gdb_run(target, [f"dump binary memory {out} {addr:#x} {addr + SIZE:#x}"], gdb)
    got = os.path.getsize(out) if os.path.exists(out) else 0
    if os.path.exists(out):
        os.unlink(out)
    return SIZE / MIB / max(t1 - t0, 1e-6) if got == SIZE else 0.0


def stub_rows(addr):
    if not STUB:
        row("GDB dump binary memory 16 MiB vs a table stub", "not run (no stub given)", ">= 95 %")
        return
    gdbs = [("gdb 13 (m)", "gdb")] + ([("GDB 18 (x)", GDB18)] if os.path.exists(GDB18) else [])
    for name, gdb in gdbs:
        rates = []
        for argv in (lambda s: [KMEMD, "-q", "-s", s], lambda s: [STUB, s]):
            srv = Served(argv)
            try:
                rates.append(dump_rate(gdb, srv.sock, addr))
            finally:
                srv.stop()
        ratio = rates[0] / rates[1] if rates[1] else 0.0
        row(f"{name} dump binary memory 16 MiB over UNIX", f"{rates[0]:.1f} MiB/s = {ratio * 100:.0f} % of the stub",
            ">= 95 %", f"table stub {rates[1]:.1f} MiB/s")
    # target remote | kmemd -s -: GDB start, connect and the first memory reply, best of 5.
    first = {}
    for who, cmd in (("kmemd", f"{KMEMD} -q -s -"), ("stub", f"{STUB} - 2>/dev/null")):
        first[who] = min(gdb_run(f"| {cmd}", [f"x/gx {addr:#x}"])[0] for _ in range(5))
    row("target remote | kmemd -s - to the first memory reply",
        f"{first['kmemd'] * 1e3:.0f} ms ({(first['kmemd'] - first['stub']) * 1e3:+.0f} ms vs the table stub)",
        "within 20 ms of the C kmemd", f"C kmemd: {C_KMEMD}")


def threads_rows(addr):
    """4,000 extra threads (this process starts them), then `info threads` and `thread apply all
    bt` against kmemd, and against the table stub replaying kmemd's recorded replies, for the
    ratio."""
    stop = threading.Event()
    threading.stack_size(64 << 10)
    ts = [threading.Thread(target=stop.wait, daemon=True) for _ in range(4000)]
    for t in ts:
        t.start()
    try:
        srv = Served(lambda s: [KMEMD, "-q", "-s", s])
        try:
            n_threads = 0
            secs = {}
            for cmd in ("info threads", "thread apply all bt"):
                secs[cmd], log = gdb_run(srv.sock, [cmd])
                if cmd == "info threads":
                    n_threads = sum(1 for l in log.splitlines() if l.lstrip().lstrip("*").lstrip()[:1].isdigit())
            hwm = srv.hwm()
            # The same two sessions again through a recorder, untimed: the stub replays kmemd's
            # own replies (thread list, registers, stack words), so GDB unwinds as much there.
            # One table per command: each GDB is a new task in the list it replays.
            tables = {}
            for cmd in ("info threads", "thread apply all bt"):
                rec = Recorder(srv.sock)
                try:
                    gdb_run(rec.sock, [cmd])
                    tables[cmd] = os.path.join(rec.tmp, "replies.txt")
                    rec.save(tables[cmd])
                finally:
                    rec.stop()
        finally:
            srv.stop()
        ref, replayed = {}, {}
        for cmd in ("info threads", "thread apply all bt") if STUB else ():
            stub = Served(lambda s: [STUB, s, "--replay", tables[cmd]], stderr=True)
            try:
                ref[cmd] = gdb_run(stub.sock, [cmd])[0]
                # Its one line for the session comes as GDB hangs up.
                for _ in range(200):
                    if stub.stderr_lines():
                        break
                    time.sleep(0.01)
                replayed[cmd] = stub.stderr_lines()
            finally:
                stub.stop()
        for cmd in ("info threads", "thread apply all bt"):
            r = (f"{secs[cmd] / ref[cmd]:.2f}x the table stub's {ref[cmd]:.2f} s, replaying kmemd's "
                 f"recorded replies ({'; '.join(replayed[cmd]) or 'no count'})") if ref.get(cmd) else "no stub"
            row(f"{cmd} with 4,000 extra threads ({n_threads} listed)", f"{secs[cmd]:.2f} s", "<= 1.5x the stub", r)
        row("peak RSS after those two commands", mib(hwm), "<= 4 MiB")
    finally:
        stop.set()


# ---- synthetic 64 GiB sparse dumps, made from the fixture's notes ----

def elf_sparse_64g(src, dst):
    """vmcore.elf's notes and loads, plus one PT_LOAD up to 64 GiB of physical memory whose data is a
    hole: a 64 GiB sparse file of a 64 GiB machine."""
    with open(src, "rb") as f:
        eh = f.read(64)
        phoff, = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        phs = [f.read(phentsize) for _ in range(phnum)]
    end = os.path.getsize(src)
    subprocess.run(["cp", "--sparse=always", src, dst], check=True)
    top = 0
    for ph in phs:
        p_type, _, _, _, paddr, _, memsz = struct.unpack_from("<IIQQQQQ", ph)
        if p_type == 1:
            top = max(top, paddr + memsz)
    top = (top + 0xfff) & ~0xfff
    new_phoff = (end + 0xfff) & ~0xfff
    data = (new_phoff + (phnum + 1) * phentsize + 0xfff) & ~0xfff
    size = 64 << 30
    load = struct.pack("<IIQQQQQQ", 1, 7, data, 0xffff888000000000 + top, top, size - top, size - top, 0x1000)
    with open(dst, "r+b") as f:
        f.seek(32)
        f.write(struct.pack("<Q", new_phoff))
        f.seek(56)
        f.write(struct.pack("<H", phnum + 1))
        f.seek(new_phoff)
        f.write(b"".join(phs) + load)
        f.truncate(data + size - top)


def kdump_sparse_64g(src, dst):
    """A kdump file of a 64 GiB machine: mdf-zlib.kdump's header, notes and pages, with bitmaps for
    64 GiB (all RAM, the fixture's pages dumpable) and one more dumpable page, the last one, whose
    data sits at 64 GiB: everything between is a hole."""
    with open(src, "rb") as f:
        raw = f.read()
    # struct disk_dump_header (makedumpfile diskdump_mod.h): block_size at 428, sub_hdr_size,
    # bitmap_blocks, max_mapnr (32-bit) after it; kdump_sub_header's max_mapnr_64 at +96 (v6).
    block, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<IIII", raw, 428)
    version = struct.unpack_from("<i", raw, 8)[0]
    if version >= 6:
        max_mapnr = struct.unpack_from("<Q", raw, block + 96)[0] or max_mapnr
    bm_off = (1 + sub_hdr_size) * block
    half = bitmap_blocks * block // 2
    bm2 = raw[bm_off + half: bm_off + half + (max_mapnr + 7) // 8]
    old_data = bm_off + bitmap_blocks * block
    ndump = sum(bin(b).count("1") for b in bm2)
    descs = raw[old_data: old_data + 24 * ndump]
    pages_start = old_data + 24 * ndump
    pages = raw[pages_start:]
    mapnr = (64 << 30) // block
    bm_len = -(-(mapnr // 8) // block) * block
    new_data = bm_off + 2 * bm_len
    new_pages_start = new_data + 24 * (ndump + 1)
    delta = new_pages_start - pages_start
    out = bytearray(raw[:bm_off])
    struct.pack_into("<I", out, 436, 2 * bm_len // block)
    struct.pack_into("<I", out, 440, mapnr)
    if version >= 6:
        struct.pack_into("<Q", out, block + 96, mapnr)
    bm1 = bytearray(b"\xff" * (mapnr // 8)) + bytes(bm_len - mapnr // 8)
    new_bm2 = bytearray(bm_len)
    new_bm2[: len(bm2)] = bm2
    new_bm2[mapnr // 8 - 1] |= 0x80
    out += bm1 + new_bm2
    for i in range(ndump):
        off, size, flags, pflags = struct.unpack_from("<QIIQ", descs, 24 * i)
        out += struct.pack("<QIIQ", off + delta, size, flags, pflags)
    last_data = 64 << 30
    out += struct.pack("<QIIQ", last_data, block, 0, 0)
    with open(dst, "wb") as f:
        f.write(out)
        f.write(pages)
        f.seek(last_data)
        f.write(b"\x5a" * block)


def sparse_rows():
    elf, kd = os.path.join(FIX, "vmcore.elf"), os.path.join(FIX, "mdf-zlib.kdump")
    if not (os.path.exists(elf) and os.path.exists(kd)):
        row("64 GiB sparse dumps", "no fixtures (make fixtures)", "<= 16 MiB, <= 100 ms")
        return
    tmp = tempfile.mkdtemp(prefix="kmemd-footprint-sparse-", dir=os.environ.get("TMPDIR", "/var/tmp"))
    try:
        for name, make, src in (("ELF", elf_sparse_64g, elf), ("kdump", kdump_sparse_64g, kd)):
            path = os.path.join(tmp, f"sparse64g.{name.lower()}")
            make(src, path)
            addr = next(int(l.split()[2], 16) for l in open(os.path.join(FIX, "manifest.txt"))
                        if l.split()[:2] == ["oracle", "kernel-data"])
            runs = [run_rusage([KMEMD, "-q", "-c", path, "--read", hex(addr), "16"]) for _ in range(3)]
            ok = all(r[2] == 0 for r in runs)
            row(f"64 GiB sparse {name}: open + 16-byte read",
                f"{min(r[0] for r in runs) * 1e3:.0f} ms, peak RSS {mib(max(r[1] for r in runs))}"
                + ("" if ok else " (FAILED)"), "<= 100 ms, <= 16 MiB")
            os.unlink(path)
    finally:
        os.rmdir(tmp)


def static_kmemd():
    """This host's static musl kmemd (`make static`), the binary a board runs: no ld.so or shared
    libc mapped, and musl's allocator, so its resident set differs from the glibc build's."""
    path = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "x86_64-unknown-linux-musl",
                        "release", "kmemd")
    return path if os.path.exists(path) else None


def main():
    print("kmemd bench (footprint)")
    for triple in ("x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"):
        path = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), triple, "release", "kmemd")
        if os.path.exists(path):
            print(f"static binary {triple}: {os.path.getsize(path)} bytes (limit 2 MiB)")
        else:
            print(f"static binary {triple}: not built (make static / make cross)")
    load = open("/proc/loadavg").read().split()[:3]
    print(f"issue 16's table, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {' '.join(load)}")
    addr = text_addr()
    kib, got, secs = session_hwm([], addr)
    row(f"live GDB session (threads, ps, dmesg, lsmod, all bt, {got >> 20} MiB dump; {secs:.1f} s)",
        mib(kib), "<= 4 MiB", f"C kmemd: {C_KMEMD}")
    board = static_kmemd()
    if board:
        kib, got, secs = session_hwm([], addr, board)
        row(f"  the same, static musl binary (what a board runs; {secs:.1f} s)", mib(kib), "<= 4 MiB")
    read_rows(addr)
    stub_rows(addr)
    for n, kib in idle_sessions([1, 8]).items():
        row(f"live kernel served to {n} idle GDB session(s)", mib(kib), "(issue 19)")
    first, last = sessions_in_a_row(1000, addr)
    row("1,000 GDB sessions in a row", f"{mib(first)} after the first, {mib(last)} after the last",
        "no growth")
    threads_rows(addr)
    manifest = os.path.join(FIX, "manifest.txt")
    if os.path.exists(manifest):
        m = [l.split() for l in open(manifest)]
        start = next(int(w[2], 16) for w in m if w[:2] == ["oracle", "direct-map"])
        for dump in ("vmcore.elf", "mdf-zlib.kdump", "mdf-zstd.kdump", "mdf-lzo.kdump", "mdf-zlib.flat"):
            kib, got, secs = session_hwm(["-c", os.path.join(FIX, dump)], start)
            row(f"{dump}: the same GDB session ({got >> 20} MiB dump; {secs:.1f} s)", mib(kib), "<= 6 MiB")
            if board:
                kib, got, secs = session_hwm(["-c", os.path.join(FIX, dump)], start, board)
                row(f"  {dump}, static musl binary ({secs:.1f} s)", mib(kib), "<= 6 MiB")
    else:
        row("fixture dumps", "no fixtures (make fixtures)", "<= 6 MiB")
    sparse_rows()
    row("kmemd -w with per-hit snapshots, 100,000-write burst",
        "not measured here", "<= 4 MiB", "this host refuses kernel hardware breakpoints (EPERM)")
    print()
    w = max(len(r[0]) for r in ROWS)
    print(f"{'what':{w}}  {'measured':44}  {'goal':28}  reference")
    for what, got, goal, ref in ROWS:
        print(f"{what:{w}}  {got:44}  {goal:28}  {ref}")


if __name__ == "__main__":
    main()
