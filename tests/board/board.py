#!/usr/bin/env python3
"""make e2e-board: the static kmemd inside real kernels, the way a board runs it.

Boots Debian bookworm's own 6.1 kernels (arm64 on qemu-system-aarch64 -M virt -cpu cortex-a57,
amd64 on qemu-system-x86_64; TCG) with a busybox initramfs holding the static kmemd. In each
guest (tests/board/guest-init.sh):
  1. `kmemd --check` must pass: exit 0, and the reads, kallsyms, KASLR, live VMCOREINFO and
     watchpoint lines OK.
  2. `kmemd -s /dev/hvc1` serves a virtio console wired to a UNIX socket on the host (the board's
     serial port); the host's gdb-multiarch (arm64) or gdb (x86_64) connects to that socket and
     reads the guest's hostname, set to a random marker, from init_uts_ns, whose address and
     layout come from the guest's own VMCOREINFO (`monitor vmcoreinfo`).
  3. `kmemd -w` catches a write the guest makes and prints its stack: pid_max (from kallsyms) on
     x86_64, init_uts_ns's nodename (from VMCOREINFO: arm64's kallsyms has no data symbols) on
     arm64.
Every QEMU and GDB runs under a timeout and is killed on exit. Prints `N passed, N failed`.

Kernels, busybox and modules come from Debian packages through tests/fixtures/fixturegen.py's
helpers (apt-get download; cached in <cache>/debs, shared with `make fixtures`).
"""

import argparse
import glob
import lzma
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
import fixturegen as fg  # noqa: E402

BOOT_TIMEOUT = 300  # boot + insmod + --check under TCG on 2 shared cores (usually 10-60 s)
GDB_TIMEOUT = 180
WATCH_TIMEOUT = 180
# The whole run stops waiting after this many seconds (CI budget); board.mk's `timeout` is the
# backstop. A normal run takes about a minute.
BUDGET = float(os.environ.get("KMEMD_BOARD_BUDGET", "540"))
DEADLINE = time.time() + BUDGET


def budget(stage_timeout):
    return max(1.0, min(stage_timeout, DEADLINE - time.time()))

ARCHES = {
    "x86_64": {
        "deb": "amd64",
        "qemu": ["qemu-system-x86_64", "-machine", "q35", "-cpu", "max,-la57", "-vga", "none"],
        "console": "ttyS0",
        "serial": "virtio-serial-pci",
        "gdb": "gdb",
        # Debian amd64 6.1 builds virtio itself as modules (CONFIG_VIRTIO=m).
        "top_mods": ["virtio_pci", "virtio_console"],
        # kallsyms has data symbols (CONFIG_KALLSYMS_ALL=y): watch a sysctl's variable.
        "watch": ("w4", "pid_max", "echo 40000 > /proc/sys/kernel/pid_max"),
        "watch_value": "0x00009c40",
        "watch_frame": "proc_dointvec_minmax",
    },
    "aarch64": {
        "deb": "arm64",
        "qemu": ["qemu-system-aarch64", "-machine", "virt", "-cpu", "cortex-a57"],
        "console": "ttyAMA0",
        "serial": "virtio-serial-device",
        "gdb": "gdb-multiarch",
        "top_mods": ["virtio_mmio", "virtio_console"],
        # No data symbols in arm64's kallsyms: init_uts_ns comes from the live VMCOREINFO.
        # +65: nodename follows sysname[65] in struct new_utsname (include/uapi/linux/utsname.h)
        # and `name` is the first member of struct uts_namespace (include/linux/utsname.h, 6.1);
        # the GDB step checks OFFSET(uts_namespace.name) == 0 in the guest's own VMCOREINFO.
        "watch": ("w1", "init_uts_ns+65", "hostname MARKER2"),
        # arm64 takes the watchpoint exception before the store (and TCG re-traps it while the
        # kernel steps over it), so the value kmemd reads may still be the old one: not checked.
        "watch_value": None,
        # memmove is a leaf (no frame record): the walk goes from it to the syscall entry.
        "watch_frame": "el0_svc",
    },
}


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.lock = threading.Lock()

    def check(self, name, ok, why=""):
        with self.lock:
            if ok:
                self.passed += 1
                print(f"PASS {name}", flush=True)
            else:
                self.failed += 1
                print(f"FAIL {name}: {why}", flush=True)
        return ok


def log(msg):
    print(f"e2e-board: {msg}", flush=True)


# --------------------------------------------------------------------------------------------
# Guest preparation
# --------------------------------------------------------------------------------------------


def module_deps(ko_bytes):
    m = re.search(rb"depends=([^\0]*)\0", ko_bytes)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def extract_modules(debdir, deb_arch, kern, outdir, top):
    """The .ko files of `top` and their dependencies, in load order."""
    moddir = os.path.join(outdir, "mods")
    order_file = os.path.join(moddir, "order")
    if os.path.exists(order_file):
        with open(order_file) as f:
            return moddir, f.read().split()
    deb = fg.deb_path(debdir, kern["package"], deb_arch)
    tmp = os.path.join(outdir, "modx")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    fg.run(["tar", "-x", "-C", tmp, "--wildcards", "*/drivers/virtio/*", "*/drivers/char/virtio_console.ko*"],
           stdin=tar.stdout)  # fmt: skip
    tar.wait()
    found = {}
    for p in glob.glob(os.path.join(tmp, "**", "*.ko*"), recursive=True):
        name = os.path.basename(p).split(".ko")[0]
        with (lzma.open(p) if p.endswith(".xz") else open(p, "rb")) as f:
            found[name] = f.read()
    order = []

    def add(name):
        if name in order:
            return
        if name not in found:
            sys.exit(f"e2e-board: module {name} is not in {deb} (built in? then drop it from top_mods)")
        for d in module_deps(found[name]):
            add(d)
        order.append(name)

    for t in top:
        add(t)
    shutil.rmtree(moddir, ignore_errors=True)
    os.makedirs(moddir)
    for n in order:
        with open(os.path.join(moddir, n + ".ko"), "wb") as f:
            f.write(found[n])
    with open(order_file, "w") as f:
        f.write(" ".join(order))
    shutil.rmtree(tmp)
    return moddir, order


def build_initramfs(path, busybox, kmemd, moddir, mods, env):
    def rd(p):
        with open(p, "rb") as f:
            return f.read()

    entries = [
        ("bin", 0o40755, b""),
        ("dev", 0o40755, b""),
        ("dev/console", 0o20600, b"", 5, 1),
        ("proc", 0o40755, b""),
        ("sys", 0o40755, b""),
        ("tmp", 0o41777, b""),
        ("mods", 0o40755, b""),
        ("bin/busybox", 0o100755, rd(busybox)),
        ("init", 0o100755, rd(os.path.join(HERE, "guest-init.sh"))),
        ("kmemd", 0o100755, rd(kmemd)),
        ("board.env", 0o100644, env.encode()),
    ]
    entries += [(f"mods/{m}.ko", 0o100644, rd(os.path.join(moddir, m + ".ko"))) for m in mods]
    fg.cpio_newc(entries, path)


def shq(s):
    return "'" + s.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------------------------
# One guest
# --------------------------------------------------------------------------------------------


class Guest:
    live = []

    def __init__(self, arch, kern, initrd, wdir):
        a = ARCHES[arch]
        self.wdir = wdir
        self.console = os.path.join(wdir, "console.log")
        self.sock = os.path.join(wdir, "hvc1.sock")
        for p in (self.console, self.sock):
            if os.path.exists(p):
                os.unlink(p)
        cmd = a["qemu"] + [
            "-m", "256", "-smp", "2",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-device", a["serial"],
            # hvc0: an unused console; hvc1: the board's serial port, a UNIX socket on the host.
            "-chardev", "null,id=c0",
            "-device", "virtconsole,chardev=c0",
            "-chardev", f"socket,path={self.sock},server=on,wait=off,id=c1",
            "-device", "virtconsole,chardev=c1",
            "-kernel", kern["vmlinuz"], "-initrd", initrd,
            "-append", f"console={a['console']} panic=-1",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=open(os.path.join(wdir, "qemu.out"), "w"),
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=fg.die_with_parent,
        )  # fmt: skip
        Guest.live.append(self)

    def text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode("utf-8", "replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def wait_for(self, line_start, timeout):
        """Waits for a console line starting with line_start; returns the console text."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            t = self.text()
            if any(l.startswith(line_start) for l in t.splitlines()):
                return t
            if "Kernel panic" in t:
                raise RuntimeError(f"guest kernel panicked; see {self.console}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({self.proc.returncode}) before {line_start}; see {self.console}")
            time.sleep(0.5)
        raise RuntimeError(f"no {line_start} line within {timeout} s; see {self.console}")

    def close(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        if self in Guest.live:
            Guest.live.remove(self)
        if os.path.exists(self.sock):
            os.unlink(self.sock)


def lines(text, prefix):
    p = prefix + " "
    return [l[len(p):] for l in text.splitlines() if l.startswith(p)]


# Runs inside the host's GDB: everything it learns comes from kmemd over the virtio console.
GDB_SCRIPT = r'''
import gdb, re
gdb.execute("set pagination off")
gdb.execute("set confirm off")
gdb.execute("set remotetimeout 60")
gdb.execute("target remote %(sock)s")
vi = gdb.execute("monitor vmcoreinfo", to_string=True)
for l in vi.splitlines():
    print("GDB-VMCOREINFO " + l)
sym = re.search(r"^SYMBOL\(init_uts_ns\)=([0-9a-f]+)$", vi, re.M)
off = re.search(r"^OFFSET\(uts_namespace\.name\)=(\d+)$", vi, re.M)
if sym and off:
    base = int(sym.group(1), 16) + int(off.group(1))
    raw = gdb.selected_inferior().read_memory(base, 65 * 3).tobytes()
    for i, f in enumerate(("sysname", "nodename", "release")):
        print("GDB-UTS %%s %%s" %% (f, raw[65 * i:65 * (i + 1)].split(b"\0")[0].decode()))
print("GDB-SYMBOL " + gdb.execute("monitor sym init_uts_ns", to_string=True).strip())
print("GDB-KASLR " + gdb.execute("monitor kaslr", to_string=True).splitlines()[0])
gdb.execute("detach")
print("GDB-DONE")
'''


def run_gdb(arch, guest, res, name):
    a = ARCHES[arch]
    script = os.path.join(guest.wdir, "gdb-script.py")
    with open(script, "w") as f:
        f.write(GDB_SCRIPT % {"sock": guest.sock})
    gdb = shutil.which(a["gdb"])
    if not res.check(f"{name}: host has {a['gdb']}", gdb is not None, f"install {a['gdb']} (make deps)"):
        return ""
    t0 = time.time()
    try:
        r = subprocess.run([gdb, "-nx", "-q", "-batch", "-x", script], capture_output=True, text=True,
                           timeout=budget(GDB_TIMEOUT), start_new_session=True)  # fmt: skip
        out = r.stdout + r.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        out += "\n(gdb timed out)"
    with open(os.path.join(guest.wdir, "gdb.out"), "w") as f:
        f.write(out)
    log(f"{name}: GDB session {time.time() - t0:.1f} s")
    return out


def run_guest(arch, kmemd, cache, debdir, res):
    a = ARCHES[arch]
    name = arch
    gdir = os.path.join(cache, f"board-{a['deb']}")
    os.makedirs(gdir, exist_ok=True)
    if not res.check(f"{name}: static kmemd exists", os.path.isfile(kmemd), f"{kmemd} missing: run make static/cross"):
        return
    if not res.check(f"{name}: host has {a['qemu'][0]}", shutil.which(a["qemu"][0]) is not None,
                     "run `make fixtures` once (it installs QEMU), or apt-get install qemu-system-x86 "
                     "qemu-system-arm"):  # fmt: skip
        return
    kern = fg.extract_kernel(debdir, a["deb"], gdir)
    busybox = fg.extract_busybox(debdir, a["deb"], gdir)
    moddir, mods = extract_modules(debdir, a["deb"], kern, gdir, a["top_mods"])
    marker = "KMEMDBOARD" + secrets.token_hex(4)
    marker2 = "board2" + secrets.token_hex(4)
    wtype, wtarget, wcmd = a["watch"]
    wcmd = wcmd.replace("MARKER2", marker2)
    env = (
        f"MARKER={shq(marker)}\nMARKER2={shq(marker2)}\nMODS={shq(' '.join(mods))}\n"
        f"WATCH_TYPE={shq(wtype)}\nWATCH_TARGET={shq(wtarget)}\nWATCH_CMD={shq(wcmd)}\n"
    )
    initrd = os.path.join(gdir, "board-initrd.cpio")
    build_initramfs(initrd, busybox, kmemd, moddir, mods, env)
    log(f"{name}: booting {kern['package']} {kern['package_version']} with {kmemd}")
    t0 = time.time()
    guest = Guest(arch, kern, initrd, gdir)
    try:
        # 1. --check
        try:
            text = guest.wait_for("BOARD-SERVING", budget(BOOT_TIMEOUT))
        except RuntimeError as e:
            res.check(f"{name}: guest boots and runs kmemd --check", False, str(e))
            print(guest.text()[-3000:])
            return
        log(f"{name}: booted and checked in {time.time() - t0:.1f} s")
        check = lines(text, "BOARD-CHECK")
        for l in check:
            print(f"  [{name}] {l}")
        for l in lines(text, "BOARD-CHECK-ERR"):
            print(f"  [{name}] stderr: {l}")
        rc = lines(text, "BOARD-CHECK-RC")
        res.check(f"{name}: kmemd --check exits 0", rc == ["0"], f"exit status {rc}")
        status = {l.split()[1]: l.split()[0] for l in check if len(l.split()) > 1 and not l.startswith("kmemd")}
        for item in ("bpf", "read", "kallsyms", "kaslr", "vmcoreinfo", "watch-slots", "watch-hit", "kcore"):
            res.check(f"{name}: --check {item} OK", status.get(item) == "OK", f"line: {status.get(item)}")
        res.check(
            f"{name}: --check summary says reads work",
            any(l.startswith("kmemd --check:") and l.endswith("kernel reads work") for l in check),
            "no summary line",
        )
        hvc = lines(text, "BOARD-SERVING")
        res.check(f"{name}: kmemd serves /dev/hvc1", hvc == ["/dev/hvc1"], f"{hvc}; hvc devices: {lines(text, 'BOARD-HVC')}")

        # 2. GDB over the virtio console
        out = run_gdb(arch, guest, res, name) if hvc == ["/dev/hvc1"] else "(kmemd -s did not start)"
        
        uts = dict(l.split(" ", 1) for l in lines(out, "GDB-UTS") if " " in l)
        res.check(f"{name}: GDB reads the marker hostname from init_uts_ns", uts.get("nodename") == marker,
                  f"nodename {uts.get('nodename')!r}, want {marker!r}; GDB said:\n{out[-2000:]}")  # fmt: skip
        res.check(f"{name}: init_uts_ns's sysname is Linux", uts.get("sysname") == "Linux", f"{uts}")
        vi = lines(out, "GDB-VMCOREINFO")
        release = next((l.split()[0] for l in lines(text, "BOARD-UNAME")), None)
        res.check(f"{name}: monitor vmcoreinfo names the guest's release", f"OSRELEASE={release}" in vi,
                  f"release {release}; {len(vi)} lines")  # fmt: skip
        res.check(f"{name}: OFFSET(uts_namespace.name) is 0 (the -w target assumes it)",
                  "OFFSET(uts_namespace.name)=0" in vi, "see gdb.out")  # fmt: skip
        ksym = {l.split()[2]: int(l.split()[0], 16) for l in lines(text, "BOARD-KSYM") if len(l.split()) >= 3}
        vsym = next((int(l.split("=")[1], 16) for l in vi if l.startswith("SYMBOL(init_uts_ns)=")), None)
        if "init_uts_ns" in ksym:
            res.check(f"{name}: VMCOREINFO's init_uts_ns equals kallsyms'", ksym["init_uts_ns"] == vsym,
                      f"kallsyms {ksym['init_uts_ns']:#x}, VMCOREINFO {vsym}")  # fmt: skip
        koff = next((l.split("=")[1] for l in vi if l.startswith("KERNELOFFSET=")), None)
        kaslr = next(iter(lines(out, "GDB-KASLR")), "")
        res.check(f"{name}: monitor kaslr's offset is VMCOREINFO's KERNELOFFSET ({koff})",
                  koff is not None and kaslr.startswith(f"KASLR offset: {int(koff, 16):#x} "), kaslr)  # fmt: skip
        symline = next(iter(lines(out, "GDB-SYMBOL")), "")
        res.check(f"{name}: monitor sym init_uts_ns gives VMCOREINFO's address",
                  vsym is not None and symline == f"init_uts_ns = {vsym:#x}", symline)  # fmt: skip

        # 3. -w catches the guest's own write
        try:
            text = guest.wait_for("BOARD-DONE", budget(WATCH_TIMEOUT))
        except RuntimeError as e:
            res.check(f"{name}: kmemd -w finishes", False, str(e))
            text = guest.text()
        for l in lines(text, "BOARD-SERVE-LOG"):
            print(f"  [{name}] serve: {l}")
        watch = lines(text, "BOARD-WATCH")
        for l in watch + [f"stderr: {l}" for l in lines(text, "BOARD-WATCH-ERR")]:
            print(f"  [{name}] {l}")
        res.check(f"{name}: kmemd -w exits 0", lines(text, "BOARD-WATCH-RC") == ["0"], f"{lines(text, 'BOARD-WATCH-RC')}")
        head = [l for l in watch if l.startswith("#1 ")]
        res.check(f"{name}: -w {wtype} {wtarget} caught a write", bool(head) and f"({wtarget})" in head[0],
                  "no hit line")  # fmt: skip
        if a["watch_value"]:
            res.check(f"{name}: the hit shows the value written ({a['watch_value']})",
                      any(l.strip().startswith(f"value {a['watch_value']}") for l in watch), "no such value line")  # fmt: skip
        res.check(f"{name}: the watched write happened ({wcmd})",
                  a["watch_value"] is not None or lines(text, "BOARD-HOSTNAME") == [marker2],
                  f"hostname after: {lines(text, 'BOARD-HOSTNAME')}")  # fmt: skip
        stack = watch[watch.index("  stack") + 1:] if "  stack" in watch else []
        stack = stack[: next((i for i, l in enumerate(stack) if not l.startswith("    ")), len(stack))]
        res.check(f"{name}: the hit's stack names {a['watch_frame']}",
                  any(a["watch_frame"] in l for l in stack), f"stack: {stack}")  # fmt: skip
        log(f"{name}: done in {time.time() - t0:.1f} s")
    finally:
        guest.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--x86", help="static x86_64 kmemd (make static)")
    ap.add_argument("--arm64", help="static aarch64 kmemd (make cross)")
    ap.add_argument("--cache", default=os.environ.get("KMEMD_FIXTURES", os.path.join(ROOT, ".fixtures")))
    args = ap.parse_args()
    cache = os.path.abspath(args.cache)
    debdir = os.path.join(cache, "debs")
    os.makedirs(debdir, exist_ok=True)

    def on_signal(signum, _frame):
        for g in list(Guest.live):
            g.close()
        res.check("run finished", False, f"stopped by signal {signum}")
        print(f"{res.passed} passed, {res.failed} failed", flush=True)
        sys.exit(128 + signum)

    res = Results()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t0 = time.time()
    try:
        for arch, path in (("aarch64", args.arm64), ("x86_64", args.x86)):
            if path:
                try:
                    run_guest(arch, os.path.abspath(path), cache, debdir, res)
                except Exception as e:  # a broken step must not hide the other guest's results
                    res.check(f"{arch}: guest run", False, f"{type(e).__name__}: {e}")
    finally:
        for g in list(Guest.live):
            g.close()
    log(f"total {time.time() - t0:.1f} s")
    print(f"{res.passed} passed, {res.failed} failed", flush=True)
    return 1 if res.failed or not res.passed else 0


if __name__ == "__main__":
    sys.exit(main())
