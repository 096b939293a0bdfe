#!/usr/bin/env python3
"""Boots one kernel-lab guest and keeps it running until this process's stdin closes.

    labd.py --arch amd64|arm64 --kmemd PATH --agent PATH --dir WORKDIR [--cache DIR]

The guest is Debian bookworm's own 6.1 kernel (the one `make fixtures` boots and `make dbg-vmlinux`
has the debug vmlinux of) under QEMU TCG, with KASLR on (Debian's default), 2 CPUs, and an
initramfs holding busybox, the static kmemd, the lab agent (tests/lab/agent.rs) and the virtio
console modules. Its virtio devices are UNIX sockets in WORKDIR: agent.sock is a virtio serial
port (a plain character device: no tty layer between the agent and its binary blobs),
stream.sock another one (the guest's /dev/lab-stream), on which a test streams a command's output
to the host, and port1..port3.sock are the virtio consoles /dev/hvc0..hvc2, serial lines for
`kmemd -s /dev/hvcN`.

When the agent is up, prints `key value` lines and then `LABD-READY` on stdout:
    release 6.1.0-N-amd64        the guest's uname -r
    console WORKDIR/console.log  the kernel console
    agent WORKDIR/agent.sock
    stream WORKDIR/stream.sock
    port WORKDIR/port1.sock      (one line per serial line, in hvc order)
    boot_s 14.2
    qmp WORKDIR/qmp.sock         (with --dumpable only)
With --dumpable the guest also has QEMU's vmcoreinfo device and the qemu_fw_cfg module, and QEMU a
QMP socket, so that the host can take `dump-guest-memory` ELF dumps with the kernel's VMCOREINFO
in them. --cpu picks another QEMU CPU model than qemu.ARCHES' default.
On failure, prints `LABD-FAILED reason` and exits 1. The Rust side (tests/lab/guest.rs) holds the
stdin pipe: when the test process ends, for whatever reason, the pipe closes and QEMU is killed.
"""

import argparse
import os
import select
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import qemu  # noqa: E402

PORTS = 3
BOOT_TIMEOUT = 300  # to the agent's READY line; TCG on 2 shared cores needs 10-60 s


def build_initramfs(arch, kmemd, agent, cache, wdir, dumpable):
    debdir = os.path.join(cache, "debs")
    # The same directory `make fixtures` extracts the kernel into: one download for both.
    gdir = os.path.join(cache, "guest-" + arch)
    kern = qemu.extract_kernel(debdir, arch, gdir)
    busybox = qemu.extract_busybox(debdir, arch, gdir)
    top = qemu.ARCHES[arch]["virtio_modules"]
    moddir, mods = qemu.extract_modules(debdir, arch, kern, gdir, top, ["*/drivers/virtio/*", "*/drivers/char/virtio_console.ko*"])

    def rd(p):
        with open(p, "rb") as f:
            return f.read()

    paths = {m: os.path.join(moddir, m + ".ko") for m in mods}
    if dumpable:
        # qemu_fw_cfg hands the kernel's VMCOREINFO to QEMU's vmcoreinfo device (extract_kernel
        # keeps it for the fixture guests; it depends on no other module).
        mods = mods + ["qemu_fw_cfg"]
        paths["qemu_fw_cfg"] = kern["module"]
    entries = qemu.base_entries(busybox, os.path.join(HERE, "init.sh"))
    entries += [
        ("lab", 0o40755, b""),
        ("lab/mods", 0o40755, b""),
        ("lab/kmemd", 0o100755, rd(kmemd)),
        ("lab/agent", 0o100755, rd(agent)),
        ("lab/lab.env", 0o100644, f"MODS='{' '.join(mods)}'\n".encode()),
    ]
    entries += [(f"lab/mods/{m}.ko", 0o100644, rd(paths[m])) for m in mods]
    path = os.path.join(wdir, "initrd.cpio")
    qemu.cpio_newc(entries, path)
    return kern, path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", required=True, choices=sorted(qemu.ARCHES))
    ap.add_argument("--kmemd", required=True)
    ap.add_argument("--agent", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cache", default=os.environ.get("KMEMD_FIXTURES", os.path.join(ROOT, ".fixtures")))
    ap.add_argument("--mem", type=int, default=512)
    # Another CPU model than qemu.ARCHES' default, for an extra guest kind: arm64 `max,pauth-impdef=on`
    # signs return addresses (PAC) with QEMU's cheap implementation-defined algorithm (QARMA is
    # much slower under TCG).
    ap.add_argument("--cpu", default=None)
    ap.add_argument("--dumpable", action="store_true")
    a = ap.parse_args()
    wdir = os.path.abspath(a.dir)
    os.makedirs(wdir, exist_ok=True)

    def stop(signum, _frame):
        qemu.kill_all()
        sys.exit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, stop)
    try:
        t0 = time.time()
        kern, initrd = build_initramfs(a.arch, a.kmemd, a.agent, os.path.abspath(a.cache), wdir, a.dumpable)
        consoles = [f"port{i}" for i in range(1, PORTS + 1)]
        extra = ["-device", "vmcoreinfo"] if a.dumpable else []
        g = qemu.Guest(a.arch, kern["vmlinuz"], initrd, wdir, cpu=a.cpu, mem_mb=a.mem, consoles=consoles,
                       ports=["agent", "stream"], qmp=a.dumpable, extra=extra)  # fmt: skip
        text = g.wait_console(lambda t: "LAB-AGENT-READY" in t or "LAB-AGENT-ERROR" in t, BOOT_TIMEOUT,
                              "lab agent READY line")  # fmt: skip
        if "LAB-AGENT-READY" not in text:
            raise RuntimeError(f"the lab agent failed: {text[text.find('LAB-AGENT-ERROR'):][:300]}")
        release = next((l.split()[1] for l in text.splitlines() if l.startswith("LAB-UNAME ")), "?")
        out = [f"release {release}", f"console {g.console}", f"agent {g.sockets['agent']}",
               f"stream {g.sockets['stream']}"]
        out += [f"port {g.sockets[c]}" for c in consoles]
        if g.qmp_path:
            out.append(f"qmp {g.qmp_path}")
        out += [f"boot_s {time.time() - t0:.1f}", f"qemu {' '.join(g.cmdline)}", "LABD-READY"]
        print("\n".join(out), flush=True)
    except Exception as e:  # the Rust side reports this line with the console's tail
        print(f"LABD-FAILED {type(e).__name__}: {e}", flush=True)
        qemu.kill_all()
        return 1
    try:
        # Until the test process goes away (EOF), or QEMU does.
        while g.proc.poll() is None:
            r, _, _ = select.select([sys.stdin], [], [], 1.0)
            if r and not sys.stdin.buffer.read1(4096):
                break
    finally:
        qemu.kill_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
