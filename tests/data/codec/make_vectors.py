#!/usr/bin/python3
"""Makes the codec test vectors: each sample page compressed by liblzo2 (python3-lzo, LZO1X-1 and
LZO1X-999), libsnappy (python3-snappy, raw block), the zstd tool (Debian's zstd 1.5.4, several
levels and options) and zlib (the reference copy of the page). Run here (tests/data/codec) with
Debian's python3 after `apt-get install python3-lzo python3-snappy python3-zstandard zstd`. Every output is
deterministic, so a rerun reproduces the committed files byte for byte."""
import random, struct, subprocess, tempfile, zlib, lzo, snappy, zstandard

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

def zstd_samples():
    """Pages for the zstd vectors only (the lzo/snappy/zlib lists above stay as they were)."""
    rnd = random.Random(8878)
    # Incompressible: zstd stores it as a raw block.
    yield "random4k", bytes(rnd.randrange(256) for _ in range(4096))
    # Few distinct bytes: a Huffman tree small enough for the direct 4-bit weights.
    yield "digits4k", b"".join(b"%d " % rnd.randrange(10 ** rnd.randrange(1, 9)) for _ in range(900))[:4096]
    # A kernel-like 64 KiB page: pointer tables, small counters, zero runs and strings.
    parts = []
    while sum(map(len, parts)) < 65536:
        kind = rnd.randrange(4)
        if kind == 0:
            parts.append(b"".join(struct.pack("<Q", 0xffff888000000000 + rnd.randrange(1 << 30) * 64)
                                  for _ in range(rnd.randrange(4, 40))))
        elif kind == 1:
            parts.append(b"".join(struct.pack("<I", rnd.randrange(300)) for _ in range(rnd.randrange(4, 64))))
        elif kind == 2:
            parts.append(bytes(rnd.randrange(16, 2048)))
        else:
            parts.append(b"kworker/%d:%d-events_unbound\0" % (rnd.randrange(64), rnd.randrange(8)))
    yield "kernel64k", b"".join(parts)[:65536]
    # One short pattern over and over: long matches with a small offset (overlapping copies).
    yield "repeat64k", (b"\x01\x02\x03spinlock" * 6000)[:65536]
    # Random nibbles: no matches worth taking (a block of literals only, no sequences), and a
    # 16-symbol alphabet whose Huffman weights libzstd writes directly rather than FSE-coded.
    yield "nibbles4k", bytes(min(15, int(rnd.expovariate(0.3))) for _ in range(4096))

def block_samples():
    """Pages compressed by libzstd (python3-zstandard) in a stream flushed after each part: one
    block per part. libzstd emits RLE blocks and RLE literals only in blocks after the first."""
    rnd = random.Random(1234)
    head = bytes(rnd.choice(range(0x80, 0x100)) for _ in range(1024))
    # Zeros after a first block: the second block is an RLE block.
    yield "zerotail4k", [head, bytes(3072)]
    # The second block copies 15-byte pieces of the first, each after an "A" that no match can
    # cover: all its literals are "A" (RLE literals).
    pieces = b"".join(b"A" + head[i * 5:i * 5 + 15] for i in range(192))
    yield "rlelit4k", [head, pieces]

# zstd tool variants: (suffix, options). The tool adds the content size and (by default) the
# checksum; --no-content-size / --no-check take them out. --target-compressed-block-size cuts a
# page into several blocks, so later blocks can reuse the Huffman tree (treeless literals) and the
# sequence tables (repeat mode).
ZSTD_VARIANTS = [
    ("zst1", ["-1", "--no-check"]),
    ("zst3", ["-3", "--check"]),
    ("zst19", ["-19", "--check", "--no-content-size"]),
    ("zst22", ["--ultra", "-22", "--long", "--no-check"]),
    ("zstblocks", ["-19", "--check", "--target-compressed-block-size=1340"]),
]

def zstd(data, opts):
    with tempfile.NamedTemporaryFile() as f:
        f.write(data)
        f.flush()
        return subprocess.run(["zstd", "-q", "-c", *opts, f.name], check=True, capture_output=True).stdout

def zstd_stdin(data, opts):
    """Streamed from a pipe: the tool does not know the size, so no content size and the window
    of the level itself (with --long, 128 MiB)."""
    return subprocess.run(["zstd", "-q", "-c", *opts], input=data, check=True, capture_output=True).stdout

def zstd_blocks(parts, level):
    c = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=False).compressobj()
    return b"".join(c.compress(p) + c.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK) for p in parts) + c.flush()

def skippable(magic_low, payload):
    return struct.pack("<II", 0x184D2A50 + magic_low, len(payload)) + payload

for name, page in samples():
    open(name + ".zlib", "wb").write(zlib.compress(page))
    open(name + ".lzo1", "wb").write(lzo.compress(page, 1, False))
    open(name + ".lzo999", "wb").write(lzo.compress(page, 9, False))
    open(name + ".snappy", "wb").write(snappy.compress(page))
    for suffix, opts in ZSTD_VARIANTS:
        open(name + "." + suffix, "wb").write(zstd(page, opts))

for name, page in zstd_samples():
    open(name + ".zlib", "wb").write(zlib.compress(page))
    for suffix, opts in ZSTD_VARIANTS:
        open(name + "." + suffix, "wb").write(zstd(page, opts))

for name, parts in block_samples():
    open(name + ".zlib", "wb").write(zlib.compress(b"".join(parts)))
    for level in (1, 19):
        open("%s.zstflush%d" % (name, level), "wb").write(zstd_blocks(parts, level))

# Several frames for one page: a skippable frame, the first half, an empty skippable frame, the
# second half streamed (no content size, window from the level).
text = dict(samples())["text4k"]
open("text4k.zstframes", "wb").write(skippable(0, b"kmemd test") + zstd(text[:1500], ["-3"]) + skippable(15, b"")
                                     + zstd_stdin(text[1500:], ["-3"]))
# A frame asking for a 128 MiB window (--long streamed from a pipe): must be refused, not decoded.
open("text4k.zstwide", "wb").write(zstd_stdin(text, ["--ultra", "-22", "--long"]))
