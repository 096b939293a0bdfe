#!/usr/bin/env python3
"""make bench, footprint part (issue 5): the static binaries' sizes, and kmemd's peak RSS
(VmHWM) while it serves GDB a 16 MiB read, live and from a dump, and with 1 and 8 idle GDB
sessions at once (issue 19). Not a test: nothing asserted.

Usage: footprint.py KMEMD   (root, for the live session)
"""
import os, socket, subprocess, sys, tempfile, time

KMEMD = sys.argv[1]
FIX = os.path.join(os.environ.get("KMEMD_FIXTURES", ".fixtures"), "current", "x86_64-4l")
SIZE = 16 << 20


def vmhwm_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def serve_and_read(args, addr):
    tmp = tempfile.mkdtemp(prefix="kmemd-footprint-")
    sock = os.path.join(tmp, "s.sock")
    p = subprocess.Popen([KMEMD, "-q", "-s", sock] + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.close()
            break
        except OSError:
            time.sleep(0.025)
    out = os.path.join(tmp, "dump.bin")
    subprocess.run(["gdb", "-nx", "-batch", "-ex", f"target remote {sock}",
                    "-ex", f"dump binary memory {out} {addr:#x} {addr + SIZE:#x}"],
                   capture_output=True, timeout=600)
    got = os.path.getsize(out) if os.path.exists(out) else 0
    kib = vmhwm_kib(p.pid)
    p.kill()
    p.wait()
    return kib, got


def idle_sessions(counts):
    """Peak RSS of kmemd serving the live kernel after each count of GDBs has connected and gone
    idle at its prompt (all stay connected)."""
    tmp = tempfile.mkdtemp(prefix="kmemd-footprint-")
    sock = os.path.join(tmp, "s.sock")
    p = subprocess.Popen([KMEMD, "-q", "-s", sock], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        if os.path.exists(sock):
            break
        time.sleep(0.025)
    gdbs, out = [], {}
    try:
        for i in range(max(counts)):
            g = subprocess.Popen(["gdb", "-nx", "-q", "-ex", "set pagination off"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            g.stdin.write(f"target remote {sock}\necho @@connected@@\\n\n")
            g.stdin.flush()
            for line in g.stdout:
                if "@@connected@@" in line:
                    break
            gdbs.append(g)
            if i + 1 in counts:
                out[i + 1] = vmhwm_kib(p.pid)
    finally:
        for g in gdbs:
            g.kill()
            g.wait()
        p.kill()
        p.wait()
    return out


def text_addr():
    for line in open("/proc/kallsyms"):
        a, _, name = line.split()[:3]
        if name == "_text":
            return int(a, 16)
    return None


def main():
    print("kmemd bench (footprint)")
    for triple in ("x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"):
        path = os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), triple, "release", "kmemd")
        if os.path.exists(path):
            print(f"static binary {triple}: {os.path.getsize(path)} bytes (limit 2 MiB)")
        else:
            print(f"static binary {triple}: not built (make static / make cross)")
    kib, got = serve_and_read([], text_addr())
    print(f"peak RSS serving a live session (gdb reads {got >> 20} MiB of kernel text): {kib / 1024:.1f} MiB")
    for n, kib in idle_sessions([1, 8]).items():
        print(f"peak RSS serving the live kernel to {n} idle GDB session(s): {kib / 1024:.1f} MiB")
    manifest = os.path.join(FIX, "manifest.txt")
    if os.path.exists(manifest):
        m = [l.split() for l in open(manifest)]
        start = next(int(w[2], 16) for w in m if w[:2] == ["oracle", "direct-map"])
        dump = next(w[3] for w in m if w[0] == "dump" and w[1] == "kdump-zlib")
        kib, got = serve_and_read(["-c", os.path.join(FIX, dump)], start)
        print(f"peak RSS serving {dump} (gdb reads {got >> 20} MiB of the direct map): {kib / 1024:.1f} MiB")
    else:
        print("no fixtures: make fixtures")


if __name__ == "__main__":
    main()
