#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target (fuzz/seeds/TARGET/*): well-formed examples that
let libFuzzer start from deep inside each parser. Run from anywhere; needs gcc for the ELF seed.
The seeds are committed; rerun after changing a target's input layout."""
import os, struct, subprocess, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def pkt(p):
    p = p if isinstance(p, bytes) else p.encode()
    return b"$" + p + b"#" + b"%02x" % (sum(p) & 0xFF)


BASE = 0xFFFF888000001000
SESSION = [
    "qSupported:multiprocess+;swbreak+;hwbreak+;qRelocInsn+;fork-events+;xmlRegisters=i386",
    "vMustReplyEmpty", "Hg0", "qXfer:features:read:target.xml:0,ffb", "qTStatus", "?",
    "qfThreadInfo", "qsThreadInfo", "qXfer:threads:read::0,8000", "qAttached", "Hc-1", "qC",
    "qOffsets", "g", "p10", "Hgp1.2", "g", "T2", "qThreadExtraInfo,2", "m%x,40" % BASE,
    "x%x,40" % (BASE + 8), "m%x,ffffffffffffffff" % BASE, "m0,8", "qRcmd,68656c70",
    "qRcmd,76657273696f6e", "qRcmd,6f6b", "qRcmd,657272", "M%x,1:00" % BASE, "Z0,%x,1" % BASE,
    "vCont?", "QStartNoAckMode",
]

# RSP framing: selector byte (decoder limit) then a GDB transcript with acks and a ^C.
transcript = b"+".join(pkt(p) for p in SESSION[:12]) + b"+" + pkt("c") + b"\x03" + pkt(b"X}\x03a0* b")
put("rsp_framing", "transcript", b"\x40" + transcript)
put("rsp_framing", "rle", b"\x02" + b"a*~b*!}]")

for i, p in enumerate(SESSION + ["vKill;1", "D", "k", "vCont;c", "s", "T-1", "Hgp1.-1",
                                 "qXfer:features:read:other.xml:10,10", "G00", "P1f=00", "X1,1:a"]):
    put("rsp_command", "p%02d" % i, p)

# Session: arch, read step, read chunk, threads, window base (8, LE), window length, window, input.
window = bytes((i * 7) & 0xFF for i in range(64))
body = b"".join(pkt(p) + b"+" for p in SESSION) + pkt("c") + b"\x03" + b"-" + pkt("?") + pkt("D")
for arch in (0, 1):
    head = bytes([arch, 7, 3, 3]) + struct.pack("<Q", BASE) + bytes([len(window)])
    put("session", "arch%d" % arch, head + window + body)

# Page walks: form, flags (bit 0 cyclic, rest read chunk), root (8), va (8), memory. With cyclic
# memory one 8-byte entry repeats at every level: a table entry walks down to a page, a huge-page
# entry stops at the first level that allows one.
for form in range(12):
    x86 = form < 2
    va = 0xFFFF888012345678 if x86 else 0xFFFF800012345678
    table = 0x1003 if x86 else 0x1003  # present+table (x86: P; arm64: valid|table)
    huge = 0x1083 if x86 else 0x1001  # x86 PS bit; arm64 block descriptor
    for name, entry in (("table", table), ("huge", huge)):
        head = bytes([form, 0x0F]) + struct.pack("<Q", 0x2000) + struct.pack("<Q", va)
        put("page_walk", "f%02d-%s" % (form, name), head + struct.pack("<Q", entry))

put("vmcoreinfo_paging", "x86_64",
    "OSRELEASE=6.1.0-13-amd64\nPAGESIZE=4096\nSYMBOL(init_top_pgt)=ffffffff9b00a000\n"
    "SYMBOL(swapper_pg_dir)=ffffffff9b00a000\nNUMBER(phys_base)=-1073741824\n"
    "NUMBER(pgtable_l5_enabled)=0\nKERNELOFFSET=1a000000\n")
put("vmcoreinfo_paging", "aarch64",
    "OSRELEASE=6.1.0-13-arm64\nPAGESIZE=4096\nNUMBER(VA_BITS)=48\nNUMBER(TCR_EL1_T1SZ)=16\n"
    "NUMBER(kimage_voffset)=0xffff7fffc8000000\nSYMBOL(swapper_pg_dir)=ffff80000a35f000\n")
put("vmcoreinfo_paging", "aarch64-64k",
    "PAGESIZE=65536\nNUMBER(VA_BITS)=52\nNUMBER(kimage_voffset)=0xffff7fffc8000000\n"
    "SYMBOL(swapper_pg_dir)=ffff80000a35f000\n")
put("vmcoreinfo_paging", "prstatus-x86", bytes(112) + bytes(range(216)) + bytes(8))
put("vmcoreinfo_paging", "prstatus-arm64", bytes(112) + bytes(i & 0xFF for i in range(272)) + bytes(8))

put("kallsyms", "sample",
    "ffffffff81000000 T _text\nffffffff81000000 T _stext\nffffffff81001000 t helper\n"
    "ffffffff82000000 D jiffies\n0000000000000000 T hidden\n"
    "ffffffffc0000000 t mod_init\t[mymod]\nffffffffc0000100 T _text\t[mymod]\ngarbage line\n")

# vmlinux: a small relocatable object has every piece the reader uses (sections, .symtab,
# .strtab, .shstrtab); e_machine patched for the aarch64 copy.
with tempfile.TemporaryDirectory() as t:
    src, obj = os.path.join(t, "s.c"), os.path.join(t, "s.o")
    with open(src, "w") as f:
        f.write("char _stext[4]; const char linux_banner[] = \"Linux\";\n"
                "__attribute__((section(\".data..percpu\"))) int cpu_number;\nvoid _text(void) {}\n")
    subprocess.run(["gcc", "-O0", "-c", src, "-o", obj], check=True)
    elf = open(obj, "rb").read()
put("vmlinux", "x86_64.o", elf)
put("vmlinux", "aarch64.o", elf[:18] + struct.pack("<H", 183) + elf[20:])

# Dumps and compressed pages: the project's own test vectors (tests/data), made by makedumpfile,
# liblzo2, libsnappy and zstd. Codec seeds get the 2-byte output size header of the codec targets.
DATA = os.path.join(HERE, "..", "..", "tests", "data")
for name in sorted(os.listdir(os.path.join(DATA, "mdf"))):
    if name.endswith(".py"):
        continue
    blob = open(os.path.join(DATA, "mdf", name), "rb").read()
    put("dump_open", name, blob)
    if name.endswith(".elf"):
        put("dump_elf", name, blob)
    elif name.endswith(".kdump"):
        put("dump_kdump", name, blob)
    elif name.endswith(".flat"):
        put("dump_flat", name, blob)
for name in sorted(os.listdir(os.path.join(DATA, "codec"))):
    kind = name.rsplit(".", 1)[-1]
    target = "lzo" if kind.startswith("lzo") else "zstd" if kind.startswith("zst") else kind if kind == "snappy" else None
    if target:
        size = 65536 if name.split(".")[0].endswith("64k") else 4096
        blob = open(os.path.join(DATA, "codec", name), "rb").read()
        put(target, name, struct.pack("<H", size - 1) + blob)
