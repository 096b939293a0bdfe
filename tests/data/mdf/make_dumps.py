#!/usr/bin/python3
"""Makes small real makedumpfile outputs from a synthetic x86_64 ELF vmcore (vmcore.elf): 2 CPUs'
NT_PRSTATUS notes, two PT_LOADs with patterned and all-zero pages. Without VMCOREINFO makedumpfile
accepts only -d 0/1 (no vmlinux needed), which is what these exercise. Needs makedumpfile (Debian
1.7.2 here: zlib -c, lzo -l, flattened -F, ELF -E), and for the zstd outputs (-z) a makedumpfile
built with zstd, named by $MAKEDUMPFILE_ZSTD: Debian 12's has zstd disabled, Debian 13's 1.7.6
has it (its amd64 binary runs on Debian 12; tests/fixtures/make-fixtures.sh fetches it)."""
import struct, subprocess, os

PAGE = 4096

def note(name, typ, desc):
    n = name.encode() + b"\0"
    pad = lambda b: b + b"\0" * ((-len(b)) % 4)
    return struct.pack("<III", len(n), len(desc), typ) + pad(n) + pad(desc)

def prstatus(pid, base):
    d = bytearray(336)
    struct.pack_into("<i", d, 32, pid)
    for i in range(27):
        struct.pack_into("<Q", d, 112 + 8 * i, base + i)
    return bytes(d)

def page(pfn):
    if pfn % 3 == 0:
        return bytes(PAGE)  # zero page: shared descriptor with -d 1 in kdump, excluded in ELF
    return b"".join(b"pfn %05x line %09d\n" % (pfn, i * i) for i in range(PAGE // 25)).ljust(PAGE, b"#")

segs = [(0, 6), (0x1800000, 4)]  # (paddr, pages); pfn 6144 is in the 2nd rank section
notes = note("CORE", 1, prstatus(0, 100)) + note("CORE", 1, prstatus(42, 200))
phnum = 1 + len(segs)
hdr = struct.pack("<4sBBBBB7sHHIQQQIHHHHHH", b"\x7fELF", 2, 1, 1, 0, 0, b"\0" * 7,
                  4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
noff = 64 + 56 * phnum
ph = struct.pack("<IIQQQQQQ", 4, 0, noff, 0, 0, len(notes), len(notes), 0)
cur = (noff + len(notes) + PAGE - 1) // PAGE * PAGE
body = b""
for base, n in segs:
    data = b"".join(page(base // PAGE + i) for i in range(n))
    ph += struct.pack("<IIQQQQQQ", 1, 7, cur, 0xffff888000000000 + base, base, len(data), len(data), 0)
    body += data
    cur += len(data)
out = hdr + ph + notes
out += b"\0" * ((noff + len(notes) + PAGE - 1) // PAGE * PAGE - len(out)) + body
open("vmcore.elf", "wb").write(out)

ZSTD_MDF = os.environ.get("MAKEDUMPFILE_ZSTD")
for name, opts in [("zlib.kdump", ["-c"]), ("lzo.kdump", ["-l"]), ("zlib.flat", ["-c", "-F"]), ("d1.elf", ["-E"]),
                   ("zstd.kdump", ["-z"]), ("zstd.flat", ["-z", "-F"])]:
    mdf = "makedumpfile"
    if "-z" in opts:
        if not ZSTD_MDF:
            print("MAKEDUMPFILE_ZSTD not set: %s left as it is" % name)
            continue
        mdf = ZSTD_MDF
    if os.path.exists(name):
        os.remove(name)
    args = [mdf, *opts, "-d", "1", "vmcore.elf"]
    if "-F" in opts:
        with open(name, "wb") as f:
            subprocess.run(args, stdout=f, stderr=subprocess.DEVNULL, check=True)
    else:
        subprocess.run(args + [name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    os.chmod(name, 0o644)
