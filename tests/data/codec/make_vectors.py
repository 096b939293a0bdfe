#!/usr/bin/python3
"""Makes the codec test vectors: each sample page compressed by liblzo2 (python3-lzo, LZO1X-1 and
LZO1X-999), libsnappy (python3-snappy, raw block) and zlib (the reference copy of the page).
Run with Debian's python3 after `apt-get install python3-lzo python3-snappy`."""
import random, zlib, lzo, snappy

def samples():
    rnd = random.Random(4)
    text = b"".join(b"struct task_struct *p%d = %#x;\n" % (i, rnd.randrange(1 << 48)) for i in range(400))
    yield "text4k", text[:4096]
    # Long zero runs and a long incompressible run: exercises the 255-byte length extensions.
    yield "mixed4k", bytes(1500) + bytes(rnd.randrange(256) for _ in range(900)) + bytes(1696)
    yield "zero4k", bytes(4096)
    # 64 KiB block (QEMU aarch64 kdump) with repeats more than 16 KiB back (LZO far matches).
    blk = bytes(rnd.randrange(256) for _ in range(2000))
    far = blk + bytes(17000) + blk + text[:3000] + bytes(15000) + text[:3000] + blk
    yield "far64k", far + bytes(65536 - len(far))

for name, page in samples():
    open(name + ".zlib", "wb").write(zlib.compress(page))
    open(name + ".lzo1", "wb").write(lzo.compress(page, 1, False))
    open(name + ".lzo999", "wb").write(lzo.compress(page, 9, False))
    open(name + ".snappy", "wb").write(snappy.compress(page))
