#!/usr/bin/env python3
"""make bench, kernel-awareness part (issue 9): time to list all tasks and to decode dmesg.

For the live kernel (`kmemd -s SOCK`, root) and each dump fixture (`kmemd -c DUMP -s SOCK`),
times through real GDB: `monitor ps`, `info threads` (qXfer:threads:read of every task) and
`monitor dmesg`. Each figure is the whole GDB run (start, connect, command, detach), best of 3;
`connect` is the same run with no command, for reference. Not a test: nothing asserted on time.
"""
import os, re, socket, subprocess, sys, tempfile, time

KMEMD = sys.argv[1]
GDB = os.environ.get("KMEMD_GDB", "gdb")
ROOT = os.path.join(os.environ.get("KMEMD_FIXTURES", ".fixtures"), "current")
ROUNDS = 3
THREAD_ROW = re.compile(r"^[* ] +\d+ +Thread ")


def wait_unix(path, p):
    for _ in range(800):
        if p.poll() is not None:
            sys.exit(f"kmemd exited ({p.returncode}) before listening on {path}")
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.close()
            return
        except OSError:
            time.sleep(0.025)
    sys.exit(f"kmemd did not listen on {path}")


def gdb_run(gdb, sock, cmds):
    args = [gdb, "-nx", "-batch", "-ex", "set pagination off", "-ex", f"target remote {sock}"]
    for c in cmds:
        args += ["-ex", c]
    t = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - t, r.stdout + r.stderr


def best(gdb, sock, cmds):
    runs = [gdb_run(gdb, sock, cmds) for _ in range(ROUNDS)]
    return min(t for t, _ in runs), runs[-1][1]


def measure(label, args, gdb):
    tmp = tempfile.mkdtemp(prefix="kmemd-bench-kernel-")
    sock = os.path.join(tmp, "s.sock")
    p = subprocess.Popen([KMEMD, "-q"] + args + ["-s", sock],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_unix(sock, p)
        # GDB reads the thread list (every task) already when it connects, so `connect` includes
        # one listing; `info threads` adds a second listing plus each thread's registers and frame.
        base, _ = best(gdb, sock, [])
        row = [label]
        for cmd, count in (("monitor ps", lambda o: sum(1 for l in o.splitlines() if l[:8].strip().isdigit())),
                           ("info threads", lambda o: sum(1 for l in o.splitlines() if THREAD_ROW.match(l))),
                           ("monitor dmesg", lambda o: sum(1 for l in o.splitlines() if l.startswith("[")))):
            t, out = best(gdb, sock, [cmd])
            row.append((t, count(out)))
        print(f"{label:22} {base * 1e3:9.0f} " + " ".join(f"{t * 1e3:9.1f} {n:6}" for t, n in row[1:]))
    finally:
        p.kill()
        p.wait()
        try:
            os.unlink(sock)
        except OSError:
            pass
        os.rmdir(tmp)


def main():
    print(f"kmemd bench (kernel): ms through {GDB} (whole GDB run, best of {ROUNDS}); "
          "N = tasks/threads/lines seen")
    print(f"{'target':22} {'connect':>9} {'ps ms':>9} {'N':>6} {'threads ms':>9} {'N':>6} "
          f"{'dmesg ms':>9} {'N':>6}")
    if os.geteuid() == 0:
        measure("live", [], GDB)
    else:
        print("live: skipped (needs root for BPF)")
    if not os.path.isdir(ROOT):
        print(f"dumps: skipped (no fixtures in {ROOT}: run `make fixtures`)")
        return
    for variant, gdb in (("x86_64-4l", GDB), ("x86_64-5l", GDB), ("aarch64", "gdb-multiarch")):
        d = os.path.join(ROOT, variant, "vmcore.elf")
        if os.path.exists(d):
            measure(f"{variant} vmcore.elf", ["-c", d], gdb)
        d = os.path.join(ROOT, variant, "mdf-zlib.kdump")
        if os.path.exists(d):
            measure(f"{variant} mdf-zlib", ["-c", d], gdb)


if __name__ == "__main__":
    main()
