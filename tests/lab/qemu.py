"""The one QEMU launcher of kmemd's tests: Debian's own kernels under QEMU (TCG).

Used by the dump-fixture generator (tests/fixtures/fixturegen.py: QMP, memsave, dumps) and by the
kernel lab (tests/lab/labd.py: a guest that runs commands and serves kmemd over virtio consoles).
Everything a guest needs comes from Debian packages fetched with `apt-get download` into a cache
(<cache>/debs): the kernel (bookworm's 6.1, the one the debug vmlinux of `make dbg-vmlinux`
matches), busybox-static, and the kernel modules a guest loads. Python standard library only.
"""

import ctypes
import glob
import json
import lzma
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

# Per Debian architecture: the QEMU machine, the kernel console and the virtio transport. The CPU
# model is the caller's (fixtures pick -la57/+la57; arm64 uses cortex-a57, which QEMU's TCG
# emulates with its 6 breakpoint and 4 watchpoint registers).
ARCHES = {
    "amd64": {
        "machine": ["qemu-system-x86_64", "-machine", "q35", "-vga", "none"],
        "cpu": "max,-la57",
        "console": "ttyS0",
        "virtio_serial": "virtio-serial-pci",
        # Debian amd64 6.1 builds virtio itself as modules (CONFIG_VIRTIO=m).
        "virtio_modules": ["virtio_pci", "virtio_console"],
    },
    "arm64": {
        "machine": ["qemu-system-aarch64", "-machine", "virt"],
        "cpu": "cortex-a57",
        "console": "ttyAMA0",
        "virtio_serial": "virtio-serial-device",
        "virtio_modules": ["virtio_mmio", "virtio_console"],
    },
}


def log(msg):
    print(f"[qemu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    kw.setdefault("check", True)
    return subprocess.run(cmd, **kw)


# --------------------------------------------------------------------------------------------
# Debian packages
# --------------------------------------------------------------------------------------------


def apt_download(pkgs, dest):
    """apt-get download into dest (cached: a package already there is not fetched again)."""
    os.makedirs(dest, exist_ok=True)
    want = []
    for p in pkgs:
        name, _, arch = p.partition(":")
        pat = f"{name}_*_{arch or 'amd64'}.deb"
        if not glob.glob(os.path.join(dest, pat)) and not glob.glob(os.path.join(dest, f"{name}_*_all.deb")):
            want.append(p)
    if want:
        log(f"apt-get download {' '.join(want)}")
        r = subprocess.run(["apt-get", "-o", "APT::Sandbox::User=root", "download"] + want, cwd=dest, stdout=subprocess.DEVNULL)
        if r.returncode != 0:
            # Stale package lists name versions the mirror has dropped (404): refresh once, retry.
            log("apt-get download failed; running apt-get update and retrying once")
            run(["apt-get", "-o", "DPkg::Lock::Timeout=600", "update"], stdout=subprocess.DEVNULL)
            run(["apt-get", "-o", "APT::Sandbox::User=root", "download"] + want, cwd=dest, stdout=subprocess.DEVNULL)


def deb_path(dest, name, arch):
    m = sorted(glob.glob(os.path.join(dest, f"{name}_*_{arch}.deb")))
    if not m:
        sys.exit(f"qemu: {name} ({arch}) was not downloaded into {dest}; run apt-get update and retry.")
    return m[-1]


def kernel_package(deb_arch):
    """The linux-image-6.1.0-N-<arch> package that bookworm's linux-image-<arch> depends on."""
    out = run(
        ["apt-cache", "depends", f"linux-image-{deb_arch}:{deb_arch}"], capture_output=True, text=True
    ).stdout
    # The candidate may be a backport (6.12) if the machine pins backports up; only 6.1 is wanted,
    # so ask for the bookworm version explicitly when the candidate is something else.
    m = re.search(r"Depends: (linux-image-6\.1\.0-\d+-" + deb_arch + r")", out)
    if not m:
        pol = run(["apt-cache", "policy", f"linux-image-{deb_arch}:{deb_arch}"], capture_output=True, text=True).stdout
        vers = re.findall(r"^\s+(?:\*\*\* )?(6\.1\.\d+-\d+)\s", pol, re.M)
        if not vers:
            sys.exit(f"qemu: no bookworm linux-image-{deb_arch} (6.1) in apt's lists; run apt-get update.")
        out = run(
            ["apt-cache", "depends", f"linux-image-{deb_arch}:{deb_arch}={vers[0]}"], capture_output=True, text=True
        ).stdout
        m = re.search(r"Depends: (linux-image-6\.1\.0-\d+-" + deb_arch + r")", out)
        if not m:
            sys.exit(f"qemu: cannot resolve the 6.1 kernel package for {deb_arch}.")
    return m.group(1)


def _unpack_ko(path, dst):
    """busybox insmod cannot load compressed modules: store them uncompressed."""
    if path.endswith(".xz"):
        with lzma.open(path) as src, open(dst, "wb") as out:
            shutil.copyfileobj(src, out)
    else:
        shutil.copyfile(path, dst)


def extract_kernel(debdir, deb_arch, outdir):
    """vmlinuz and qemu_fw_cfg.ko of bookworm's kernel, once. Returns a dict: vmlinuz, module
    (qemu_fw_cfg.ko), package, package_version, release (kept in <outdir>/kernel.json)."""
    stamp = os.path.join(outdir, "kernel.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            k = json.load(f)
        if os.path.exists(k["vmlinuz"]) and os.path.exists(k["module"]):
            return k
    os.makedirs(outdir, exist_ok=True)
    pkg = kernel_package(deb_arch)
    apt_download([f"{pkg}:{deb_arch}"], debdir)
    deb = deb_path(debdir, pkg, deb_arch)
    tmp = os.path.join(outdir, "x")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    # Only vmlinuz and the one module are needed: extract those, not the 300 MB of modules.
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    run(["tar", "-x", "-C", tmp, "--wildcards", "./boot/vmlinuz-*", "*/qemu_fw_cfg.ko*"], stdin=tar.stdout)
    tar.wait()
    vmlinuz = glob.glob(os.path.join(tmp, "boot", "vmlinuz-*"))[0]
    ko = glob.glob(os.path.join(tmp, "lib", "modules", "*", "kernel", "drivers", "firmware", "qemu_fw_cfg.ko*"))[0]
    release = os.path.basename(vmlinuz)[len("vmlinuz-"):]
    os.replace(vmlinuz, os.path.join(outdir, "vmlinuz"))
    modpath = os.path.join(outdir, "qemu_fw_cfg.ko")
    _unpack_ko(ko, modpath)
    shutil.rmtree(tmp)
    ver = re.search(r"_([^_]+)_" + deb_arch + r"\.deb$", deb).group(1)
    k = {
        "vmlinuz": os.path.join(outdir, "vmlinuz"),
        "module": modpath,
        "package": pkg,
        "package_version": ver,
        "release": release,
    }
    with open(stamp, "w") as f:
        json.dump(k, f)
    return k


def extract_busybox(debdir, deb_arch, outdir):
    out = os.path.join(outdir, "busybox")
    if os.path.exists(out):
        return out
    apt_download([f"busybox-static:{deb_arch}"], debdir)
    deb = deb_path(debdir, "busybox-static", deb_arch)
    tmp = os.path.join(outdir, "bbx")
    shutil.rmtree(tmp, ignore_errors=True)
    run(["dpkg-deb", "-x", deb, tmp])
    os.replace(os.path.join(tmp, "bin", "busybox"), out)
    shutil.rmtree(tmp)
    return out


def _module_deps(ko_bytes):
    m = re.search(rb"depends=([^\0]*)\0", ko_bytes)
    return [d for d in m.group(1).decode().split(",") if d] if m else []


def extract_modules(debdir, deb_arch, kern, outdir, top, patterns):
    """The uncompressed .ko files of the modules `top` and their dependencies, from the kernel
    package, in load order. `patterns` are tar wildcards of the module paths to look in. Cached
    in <outdir>/mods (with the order in mods/order, keyed by `top`)."""
    moddir = os.path.join(outdir, "mods")
    order_file = os.path.join(moddir, "order")
    key = " ".join(top)
    if os.path.exists(order_file):
        with open(order_file) as f:
            want, _, order = f.read().partition("\n")
        if want == key:
            return moddir, order.split()
    deb = deb_path(debdir, kern["package"], deb_arch)
    tmp = os.path.join(outdir, "modx")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
    run(["tar", "-x", "-C", tmp, "--wildcards"] + patterns, stdin=tar.stdout)
    tar.wait()
    found = {}
    for p in glob.glob(os.path.join(tmp, "**", "*.ko*"), recursive=True):
        found[os.path.basename(p).split(".ko")[0]] = p
    order = []

    def add(name):
        if name in order:
            return
        if name not in found:
            sys.exit(f"qemu: module {name} is not among {patterns} in {deb} (built in? then drop it)")
        with (lzma.open(found[name]) if found[name].endswith(".xz") else open(found[name], "rb")) as f:
            deps = _module_deps(f.read())
        for d in deps:
            add(d)
        order.append(name)

    for t in top:
        add(t)
    shutil.rmtree(moddir, ignore_errors=True)
    os.makedirs(moddir)
    for n in order:
        _unpack_ko(found[n], os.path.join(moddir, n + ".ko"))
    with open(order_file, "w") as f:
        f.write(key + "\n" + " ".join(order))
    shutil.rmtree(tmp)
    return moddir, order


def cpio_newc(entries, path):
    """Writes an uncompressed newc cpio archive. entries: (name, mode, data[, rdev_major, rdev_minor])."""
    with open(path, "wb") as f:
        ino = 1

        def put(name, mode, data, rmaj=0, rmin=0):
            nonlocal ino
            nb = name.encode() + b"\0"
            hdr = "070701" + "".join(
                f"{v:08x}"
                for v in (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rmaj, rmin, len(nb), 0)
            )
            ino += 1
            f.write(hdr.encode() + nb)
            f.write(b"\0" * ((4 - (110 + len(nb)) % 4) % 4))
            f.write(data)
            f.write(b"\0" * ((4 - len(data) % 4) % 4))

        for e in entries:
            put(*e)
        put("TRAILER!!!", 0, b"")


def base_entries(busybox, init_script):
    """The directories, /dev/console, busybox and /init every guest's initramfs starts with."""
    with open(busybox, "rb") as f:
        bb = f.read()
    with open(init_script, "rb") as f:
        init = f.read()
    return [
        ("bin", 0o40755, b""),
        ("dev", 0o40755, b""),
        # The kernel opens /dev/console for PID 1 before devtmpfs is mounted.
        ("dev/console", 0o20600, b"", 5, 1),
        ("proc", 0o40755, b""),
        ("sys", 0o40755, b""),
        ("tmp", 0o41777, b""),
        ("bin/busybox", 0o100755, bb),
        ("init", 0o100755, init),
    ]


# --------------------------------------------------------------------------------------------
# QEMU and QMP
# --------------------------------------------------------------------------------------------


def die_with_parent():
    """preexec_fn for QEMU: SIGKILL it if its parent dies, even by SIGKILL (PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Qmp:
    def __init__(self, path, timeout, cmd_timeout=300):
        deadline = time.time() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(cmd_timeout)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.time() > deadline:
                    raise RuntimeError(f"QMP socket {path} did not come up within {timeout} s")
                time.sleep(0.2)
        self.buf = b""
        self._read()  # greeting
        self.cmd("qmp_capabilities")

    def _read(self):
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            if not chunk:
                raise RuntimeError("QEMU closed the QMP connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.s.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            r = self._read()
            if "event" in r:
                continue
            if "error" in r:
                raise RuntimeError(f"QMP {name} failed: {r['error']}")
            return r["return"]

    def hmp(self, line):
        return self.cmd("human-monitor-command", **{"command-line": line})

    def close(self):
        self.s.close()


class Guest:
    """One QEMU process booting a Debian kernel with an initramfs; always killed by close() (also
    from the signal and exit paths, through kill_all()).

    consoles: names of virtio consoles (ttys: the guest sees /dev/hvc0, /dev/hvc1, ... in this
    order); ports: names of virtio serial ports (plain character devices, no tty layer: the guest
    finds them by name in /sys/class/virtio-ports/*/name). Each is wired to a UNIX socket
    <wdir>/<name>.sock that QEMU listens on. qmp: also open a QMP socket (<wdir>/qmp.sock). The
    kernel's own console goes to <wdir>/console.log."""

    live = []

    def __init__(self, deb_arch, kernel, initrd, wdir, cpu=None, mem_mb=256, smp=2, append="",
                 consoles=(), ports=(), qmp=False, extra=()):  # fmt: skip
        a = ARCHES[deb_arch]
        self.wdir = wdir
        os.makedirs(wdir, exist_ok=True)
        self.console = os.path.join(wdir, "console.log")
        self.qmp_path = os.path.join(wdir, "qmp.sock") if qmp else None
        self.sockets = {c: os.path.join(wdir, f"{c}.sock") for c in list(consoles) + list(ports)}
        for p in [self.console, self.qmp_path] + list(self.sockets.values()):
            if p and os.path.exists(p):
                os.unlink(p)
        cmd = a["machine"] + [
            "-cpu", cpu or a["cpu"],
            "-m", str(mem_mb), "-smp", str(smp),
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-serial", f"file:{self.console}",
            "-kernel", kernel, "-initrd", initrd,
            "-append", f"console={a['console']} panic=-1 {append}".strip(),
        ]  # fmt: skip
        if qmp:
            cmd += ["-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        if consoles or ports:
            cmd += ["-device", a["virtio_serial"]]
            kinds = [("virtconsole", c) for c in consoles] + [("virtserialport", p) for p in ports]
            for i, (kind, c) in enumerate(kinds):
                cmd += ["-chardev", f"socket,path={self.sockets[c]},server=on,wait=off,id=vc{i}",
                        "-device", f"{kind},chardev=vc{i},name={c}"]  # fmt: skip
        cmd += list(extra)
        self.cmdline = cmd
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=open(os.path.join(wdir, "qemu.out"), "w"),
            stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=die_with_parent,
        )  # fmt: skip
        Guest.live.append(self)
        self.qmp = None

    def text(self):
        try:
            with open(self.console, "rb") as f:
                return f.read().decode("utf-8", "replace").replace("\r", "")
        except FileNotFoundError:
            return ""

    def wait_console(self, done, timeout, what):
        """Waits until done(console text) is true; returns the text. Fails early on a kernel
        panic or a QEMU exit, naming the console log."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            t = self.text()
            if done(t):
                return t
            if "Kernel panic" in t:
                raise RuntimeError(f"guest kernel panicked before {what}; see {self.console}")
            if self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({self.proc.returncode}) before {what}; see {self.console}")
            time.sleep(0.2)
        raise RuntimeError(f"no {what} within {timeout} s; see {self.console}")

    def connect_qmp(self):
        self.qmp = Qmp(self.qmp_path, 30)
        return self.qmp

    def close(self):
        if self.qmp:
            try:
                self.qmp.close()
            except OSError:
                pass
            self.qmp = None
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()
        if self in Guest.live:
            Guest.live.remove(self)
        for p in [self.qmp_path] + list(self.sockets.values()):
            if p and os.path.exists(p):
                os.unlink(p)


def kill_all(*_):
    for g in list(Guest.live):
        g.close()
