#!/usr/bin/env python3
"""make bench, dump part (issue 17): kmemd against drgn and a plain pread on the same dumps, and
what a GDB user feels against crash, all measured in this one run. Not a test: nothing is
asserted about time; the bytes kmemd and drgn read are compared, and a mismatch is printed.

1. Throughput: `kmemd -q -c DUMP --read _stext 16MiB` (stdout to /dev/null, so the figure is
   the reading, not a pipe), best of 3, minus the best of 3 of the same command reading 1 byte
   (kmemd's start-up: open, headers, page-table root). drgn (pip install drgn==0.3.0 into a
   venv the bench makes, no debug info) reads the same bytes with `prog.read`, best of 3, in
   one process that opened the dump and read the bytes twice untimed first. For ELF dumps, a
   plain `preadv` of the same file bytes into a prefaulted buffer, best of 3, is the ceiling.
   The rounds take turns (kmemd, its start-up, drgn, pread), so load from other jobs on a
   shared machine falls on all of them alike; user + sys CPU time is printed beside the
   elapsed time because it is steadier there. A dump where kmemd stops early (an excluded
   page in makedumpfile -d 31) is measured on the bytes kmemd read, by all three.
2. GDB and crash: per command, timed inside GDB (its Python `time.perf_counter` around
   `gdb.execute`): `target remote | kmemd -c DUMP -s -` (a fresh kmemd each time, so its
   start-up and lazy kernel decoding are in), `thread apply all bt`, `monitor ps`; best of 3
   fresh sessions; without a vmlinux, then with Debian's debug vmlinux (`file VMLINUX` first,
   its load reported apart) when /var/cache/kmemd-dbg has it. crash (Debian's, `crash -s
   VMLINUX DUMP`) on the same dumps: start-up to the first prompt, then `ps` and `foreach bt`
   timed by shell escapes between them (their own fork cost subtracted); one session per dump
   (each costs ~20 s of symbol loading).

Environment: KMEMD_FIXTURES (fixture cache), KMEMD_GDB (default gdb), DRGN_VENV (default
/opt/kmemd-drgn), KMEMD_DBG_CACHE (default /var/cache/kmemd-dbg), KMEMD_BENCH_VARIANTS (default
all three), KMEMD_BENCH_ROUNDS (default 3), KMEMD_BENCH_NO_READ=1, KMEMD_BENCH_NO_GDB=1 and
KMEMD_BENCH_NO_CRASH=1 to skip parts.
"""
import datetime, hashlib, json, os, platform, resource, shutil, struct, subprocess, sys, tempfile, time

KMEMD = os.path.abspath(sys.argv[1])
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.environ.get("KMEMD_FIXTURES", ".fixtures")
ROOT = os.path.join(FIXTURES, "current")
GDB = os.environ.get("KMEMD_GDB", "gdb")
VENV = os.environ.get("DRGN_VENV", "/opt/kmemd-drgn")
DBG = os.environ.get("KMEMD_DBG_CACHE", "/var/cache/kmemd-dbg")
DRGN_VERSION = "0.3.0"
ROUNDS = int(os.environ.get("KMEMD_BENCH_ROUNDS", "3"))
LENGTH = 16 << 20
VARIANTS = os.environ.get("KMEMD_BENCH_VARIANTS", "x86_64-4l x86_64-5l aarch64").split()

# (label, dump file): the formats, in its order. "snappy" is made by the bench.
FORMATS = [
    ("QEMU ELF", "vmcore.elf"),
    ("makedumpfile -E (ELF)", "mdf-d31.elf"),
    ("kdump zlib (-c)", "mdf-zlib.kdump"),
    ("flattened zlib (-F -c)", "mdf-zlib.flat"),
    ("kdump lzo (-l)", "mdf-lzo.kdump"),
    ("kdump snappy (-p)*", "snappy"),
    ("kdump zstd (-z)", "mdf-zstd.kdump"),
    ("flattened zstd (-F -z)", "mdf-zstd.flat"),
    ("QEMU kdump-raw-zlib", "vmcore.kdump-raw-zlib"),
    ("QEMU kdump-zlib (flat)", "vmcore.kdump-zlib.flat"),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def manifest(variant):
    m = {"dumps": [], "ksym": {}}
    for line in open(os.path.join(ROOT, variant, "manifest.txt")).read().splitlines():
        w = line.split()
        if not w:
            continue
        if w[0] == "dump":
            m["dumps"].append(w[3])
        elif w[0] == "ksym":
            m["ksym"][w[1]] = int(w[2], 16)
        elif len(w) == 2:
            m[w[0]] = w[1]
    return m


# ---------------------------------------------------------------------------------------------
# drgn in its own venv
# ---------------------------------------------------------------------------------------------

def venv_python():
    py = os.path.join(VENV, "bin", "python")
    have = subprocess.run([py, "-c", "import drgn, cramjam; print(drgn.__version__)"],
                          capture_output=True, text=True) if os.path.exists(py) else None  # fmt: skip
    if have is None or have.returncode != 0 or have.stdout.strip() != DRGN_VERSION:
        log(f"installing drgn=={DRGN_VERSION} (and cramjam, for the snappy dump) into {VENV}")
        if not os.path.exists(py):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", f"drgn=={DRGN_VERSION}", "cramjam"], check=True)
    return py


DRGN_SERVER = r"""
import drgn, hashlib, json, sys, time
progs = {}
for line in sys.stdin:
    j = json.loads(line)
    r = {}
    try:
        if j["path"] not in progs:
            p = drgn.Program()
            p.set_core_dump(j["path"])
            progs[j["path"]] = p
            # Untimed reads first: drgn's first reads in a process (and of a dump) are slower,
            # and its best case is what kmemd is measured against.
            for _ in range(2):
                p.read(j["addr"], j["len"])
        p = progs[j["path"]]
        t, c = time.perf_counter(), time.process_time()
        data = p.read(j["addr"], j["len"])
        r["wall"], r["cpu"] = time.perf_counter() - t, time.process_time() - c
        if j.get("hash"):
            r["sha256"] = hashlib.sha256(data).hexdigest()
    except Exception as e:
        r["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
    print(json.dumps(r), flush=True)
"""


class Drgn:
    """One drgn process for the whole run, asked for one read at a time, so that its reads
    take turns with kmemd's under the same machine load."""

    def __init__(self, py):
        self.p = subprocess.Popen([py, "-c", DRGN_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)  # fmt: skip

    def read(self, path, addr, length, hash=False):
        self.p.stdin.write(json.dumps({"path": path, "addr": addr, "len": length, "hash": hash}) + "\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline() or '{"error": "drgn exited"}')

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def snappy_dump(py, variant):
    """The bench's snappy dump of a variant: mdf-zlib.kdump with its pages stored as snappy."""
    src = os.path.join(ROOT, variant, "mdf-zlib.kdump")
    if not os.path.exists(src):
        return None
    dst_dir = os.path.join(FIXTURES, "bench", variant)
    dst = os.path.join(dst_dir, "mdf-zlib-as-snappy.kdump")
    if not os.path.exists(dst) or os.path.getmtime(dst) < os.path.getmtime(src):
        os.makedirs(dst_dir, exist_ok=True)
        subprocess.run([py, os.path.join(HERE, "kdump_to_snappy.py"), src, dst], check=True)
    return dst


# ---------------------------------------------------------------------------------------------
# kmemd --read and the pread ceiling
# ---------------------------------------------------------------------------------------------

def kmemd_read(path, addr, length):
    """Bytes kmemd writes (count, sha256) for one read through a pipe."""
    p = subprocess.Popen([KMEMD, "-q", "-c", path, "--read", hex(addr), str(length)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    h, n = hashlib.sha256(), 0
    while True:
        b = p.stdout.read(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    p.wait()
    return n, h.hexdigest()


def kmemd_once(path, addr, length):
    """Wall and CPU (user + sys) seconds of one `--read` with stdout to /dev/null."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([KMEMD, "-q", "-c", path, "--read", hex(addr), str(length)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def vmcoreinfo(variant):
    v = {}
    for line in open(os.path.join(ROOT, variant, "vmcoreinfo.txt")):
        k, _, val = line.strip().partition("=")
        v[k] = val
    return v


def text_phys(m, variant, addr):
    """Physical address of a kernel-image virtual address, from VMCOREINFO (the image is
    physically contiguous): x86_64 `__START_KERNEL_map` + phys_base, arm64 kimage_voffset."""
    v = vmcoreinfo(variant)
    if m["arch"] == "x86_64":
        return addr - 0xFFFFFFFF80000000 + int(v["NUMBER(phys_base)"], 0)
    return addr - int(v["NUMBER(kimage_voffset)"], 16)


def elf_pieces(path, paddr, length):
    """File (offset, length) pieces of physical [paddr, paddr+length) in an ELF64 core."""
    with open(path, "rb") as f:
        eh = f.read(64)
        phoff, = struct.unpack_from("<Q", eh, 32)
        phentsize, phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
    loads = []
    for i in range(phnum):
        p_type, _, off, _, pa, filesz, _ = struct.unpack_from("<IIQQQQQ", ph, i * phentsize)
        if p_type == 1:
            loads.append((pa, off, filesz))
    pieces, at, end = [], paddr, paddr + length
    while at < end:
        seg = next(((pa, off, sz) for pa, off, sz in loads if pa <= at < pa + sz), None)
        if seg is None:
            return None
        pa, off, sz = seg
        n = min(end, pa + sz) - at
        pieces.append((off + at - pa, n))
        at += n
    return pieces


class Pread:
    """The ceiling for ELF dumps: `preadv` of the same file bytes into a prefaulted buffer."""

    def __init__(self, path, pieces, length):
        self.fd = os.open(path, os.O_RDONLY)
        self.pieces = pieces
        self.buf = bytearray(length)
        for i in range(0, length, 4096):
            self.buf[i] = 1  # fault the pages in: the ceiling is the copy, not the page faults

    def once(self):
        mv = memoryview(self.buf)
        t, c = time.perf_counter(), time.process_time()
        for off, n in self.pieces:
            got = os.preadv(self.fd, [mv[:n]], off)
            mv = mv[got:]
        return time.perf_counter() - t, time.process_time() - c

    def close(self):
        os.close(self.fd)


def mibs(n, s):
    return n / 2**20 / s if s and s > 0 else float("nan")


def throughput(variant, py, drgn):
    m = manifest(variant)
    addr = m["ksym"].get("_stext")
    if addr is None:
        log(f"{variant}: the manifest has no _stext; skipped")
        return []
    rows = []
    for label, name in FORMATS:
        path = snappy_dump(py, variant) if name == "snappy" else os.path.join(ROOT, variant, name)
        if not path or not os.path.exists(path):
            continue
        n, digest = kmemd_read(path, addr, LENGTH)
        row = {"variant": variant, "label": label, "name": os.path.basename(path), "n": n}
        rows.append(row)
        if not n:
            continue
        d = drgn.read(path, addr, n, hash=True)  # also opens the dump, untimed
        row["drgn_error"] = d.get("error")
        row["same"] = d.get("sha256") == digest if "sha256" in d else None
        pread = None
        if name.endswith(".elf"):
            pieces = elf_pieces(path, text_phys(m, variant, addr), n)
            pread = Pread(path, pieces, n) if pieces else None
        best = {}

        def keep(key, wall, cpu):
            w, c = best.get(key, (wall, cpu))
            best[key] = (min(w, wall), min(c, cpu))

        # Rounds take turns (kmemd, its start-up, drgn, pread), so a burst of load on this
        # shared machine hits all of them alike.
        for _ in range(ROUNDS):
            keep("kmemd", *kmemd_once(path, addr, n))
            keep("start", *kmemd_once(path, addr, 1))
            if not row["drgn_error"]:
                d = drgn.read(path, addr, n)
                if "error" not in d:
                    keep("drgn", d["wall"], d["cpu"])
            if pread:
                keep("pread", *pread.once())
        if pread:
            pread.close()
        row.update(best)
    return rows


def print_throughput(rows):
    print(f"--read of 16 MiB of kernel text from _stext: MiB/s, best of {ROUNDS}, kmemd's start-up (a 1-byte "
          "--read) subtracted. ratio = kmemd / drgn; k/pread = kmemd / a plain preadv of the same file bytes. "
          "wall = elapsed time; cpu = user + sys time (steadier on a shared machine).")  # fmt: skip
    hdr = f"{'variant':10} {'format':24} {'dump':26} {'MiB':>4}  {'kmemd':>6} {'drgn':>6} {'ratio':>5} {'pread':>6} " \
          f"{'k/pread':>7} |cpu {'kmemd':>6} {'drgn':>6} {'ratio':>5} {'k/pread':>7} | {'start':>5}  same bytes"
    print(hdr)

    def rate(r, key, col, sub=None):
        if key not in r:
            return None
        v = r[key][col] - (r[sub][col] if sub else 0)
        return mibs(r["n"], v)

    def f(v, w, p=0):
        return f"{v:{w}.{p}f}" if v is not None and v == v else f"{'-':>{w}}"

    for r in rows:
        out = f"{r['variant']:10} {r['label']:24} {r['name']:26} {r['n'] / 2**20:4.1f} "
        for col in (0, 1):
            k, d, p = rate(r, "kmemd", col, "start"), rate(r, "drgn", col), rate(r, "pread", col)
            ratio = k / d if k and d else None
            kp = k / p if k and p else None
            if col == 0:
                out += f" {f(k, 6)} {f(d, 6)} {f(ratio, 5, 2)} {f(p, 6)} {f(kp, 7, 2)} |cpu"
            else:
                out += f" {f(k, 6)} {f(d, 6)} {f(ratio, 5, 2)} {f(kp, 7, 2)} |"
        start = r.get("start", (None,))[0]
        out += f" {f(start * 1000 if start else None, 5, 1)}"
        same = {True: "yes", False: "NO: kmemd and drgn differ", None: ""}[r.get("same")]
        if r.get("drgn_error"):
            same = f"drgn cannot open it: {r['drgn_error'][:50]}"
        print(out + "  " + same, flush=True)
    print("start: kmemd's start-up in ms (wall). * snappy: no makedumpfile with snappy can be had here, so the "
          "bench rewrites mdf-zlib.kdump's pages as raw snappy (tests/bench/kdump_to_snappy.py, with cramjam); "
          "every other dump is the fixtures' own.")  # fmt: skip


# ---------------------------------------------------------------------------------------------
# GDB and crash
# ---------------------------------------------------------------------------------------------

GDB_SCRIPT = r"""
import gdb, time
def timed(label, cmd):
    t = time.perf_counter()
    try:
        out = gdb.execute(cmd, to_string=True)
    except gdb.error as e:
        out = "ERROR " + str(e)
    print("BENCH %s %.6f %d" % (label, time.perf_counter() - t, len(out.splitlines())))
timed("connect", "target remote | KMEMD_BIN -q -c DUMP_PATH -s -")
timed("bt", "thread apply all bt")
timed("ps", "monitor ps")
"""


def gdb_session(dump, vmlinux):
    tmp = tempfile.mkdtemp(prefix="kmemd-bench-gdb-")
    script = os.path.join(tmp, "bench.py")
    with open(script, "w") as f:
        f.write(GDB_SCRIPT.replace("KMEMD_BIN", KMEMD).replace("DUMP_PATH", dump))
    args = [GDB, "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off"]
    if vmlinux:
        args += ["-ex", "python import time; _t = time.perf_counter()", "-ex", f"file {vmlinux}",
                 "-ex", "python print('BENCH file %.6f 0' % (time.perf_counter() - _t))"]  # fmt: skip
    args += ["-x", script]
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    got = {}
    for line in (r.stdout + r.stderr).splitlines():
        w = line.split()
        if len(w) == 4 and w[0] == "BENCH":
            got[w[1]] = (float(w[2]), int(w[3]))
    return got


def gdb_best(dump, vmlinux):
    best = {}
    for _ in range(ROUNDS):
        for k, (t, lines) in gdb_session(dump, vmlinux).items():
            if k not in best or t < best[k][0]:
                best[k] = (t, lines)
    return best


def crash_session(dump, vmlinux):
    """crash's start-up, and `ps` and `foreach bt` timed by `!echo` escapes between them; the
    cost of an escape itself (a fork of sh) is measured by two in a row and subtracted."""
    stamp = "!echo BENCH $(date +%s.%N)"
    cmds = "\n".join([stamp, stamp, "ps", stamp, "foreach bt", stamp, "exit"]) + "\n"
    t0 = time.time()
    r = subprocess.run(["crash", "-s", "--no_scroll", vmlinux, dump], input=cmds, capture_output=True,
                       text=True, timeout=900)  # fmt: skip
    marks = [float(l.split()[1]) for l in r.stdout.splitlines() if l.startswith("BENCH ")]
    if len(marks) != 4:
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]}
    esc = marks[1] - marks[0]
    ps_lines = sum(1 for l in r.stdout.splitlines() if l.lstrip(">").strip()[:1].isdigit())
    bt_lines = sum(1 for l in r.stdout.splitlines() if l.lstrip().startswith("#"))
    return {"start": (marks[0] - t0, 0), "ps": (marks[2] - marks[1] - esc, ps_lines),
            "bt": (marks[3] - marks[2] - esc, bt_lines)}  # fmt: skip


def print_interactive(variant):
    m = manifest(variant)
    release = m.get("release", "")
    vmlinux = os.path.join(DBG, release, f"vmlinux-{release}")
    if not os.path.exists(vmlinux):
        vmlinux = None
    have_crash = shutil.which("crash") and vmlinux and m.get("arch") == platform.machine() \
        and not os.environ.get("KMEMD_BENCH_NO_CRASH")
    print(f"\nGDB ({GDB}) and crash on {variant}'s dumps: seconds per command (lines of output); GDB best of "
          f"{ROUNDS} fresh sessions, each `target remote | kmemd -c DUMP -s -`; crash one session each")  # fmt: skip
    cols = ["gdb connect", "gdb bt", "monitor ps"]
    if vmlinux:
        cols += ["+vmlinux: file", "connect", "bt", "monitor ps"]
    if have_crash:
        cols += ["crash start", "crash ps", "foreach bt"]
    print(f"{'format':24} " + " ".join(f"{c:>16}" for c in cols))

    def cell(d, k):
        if not d or k not in d:
            return f"{'-':>16}"
        t, lines = d[k]
        # crash's `ps` can take less than the shell escape it is timed by: below resolution.
        t = f"{t:9.4f}" if t >= 0.0001 else f"{'<0.0001':>9}"
        return f"{t} ({lines:4})" if lines else f"{t}       "

    fewer = []
    for label, name in FORMATS:
        path = os.path.join(ROOT, variant, name)
        if not os.path.exists(path):
            continue
        plain = gdb_best(path, None)
        cells = [cell(plain, "connect"), cell(plain, "bt"), cell(plain, "ps")]
        if vmlinux:
            full = gdb_best(path, vmlinux)
            cells += [cell(full, "file"), cell(full, "connect"), cell(full, "bt"), cell(full, "ps")]
        if have_crash:
            c = crash_session(path, vmlinux)
            if "error" in c:
                cells += [f"{'crash: ' + c['error'][0][:40]:>16}"]
            else:
                cells += [cell(c, "start"), cell(c, "ps"), cell(c, "bt")]
                # monitor ps prints a header line; crash's rows were counted without theirs.
                kmemd_rows = plain.get("ps", (0, 1))[1] - 1
                if c["ps"][1] < kmemd_rows:
                    fewer.append((label, c["ps"][1], kmemd_rows))
        print(f"{label:24} " + " ".join(cells), flush=True)
    if have_crash:
        print("crash start includes loading the vmlinux's symbols (GDB's is the `file` column); lines: "
              "ps rows, bt frames.")  # fmt: skip
        for crash_rows, kmemd_rows in sorted({(c, k) for _, c, k in fewer}):
            labels = ", ".join(label for label, c, k in fewer if (c, k) == (crash_rows, kmemd_rows))
            print(f"crash's ps listed {crash_rows} tasks where kmemd's monitor ps listed {kmemd_rows} ({labels}): "
                  "crash did not find the others, so its ps and foreach bt times cover less work")  # fmt: skip


def main():
    if not os.path.isdir(ROOT):
        sys.exit(f"no fixtures in {ROOT}: run `make fixtures`")
    py = venv_python()
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"kmemd bench (dumps), {datetime.date.today()}, {platform.node()}: {cpu}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}; drgn {DRGN_VERSION}")  # fmt: skip
    if not os.environ.get("KMEMD_BENCH_NO_READ"):
        rows, drgn = [], Drgn(py)
        for variant in VARIANTS:
            if os.path.isdir(os.path.join(ROOT, variant)):
                rows += throughput(variant, py, drgn)
        drgn.close()
        print_throughput(rows)
    if not os.environ.get("KMEMD_BENCH_NO_GDB"):
        print_interactive(VARIANTS[0])


if __name__ == "__main__":
    main()
