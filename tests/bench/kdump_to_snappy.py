#!/usr/bin/env python3
"""Rewrites a zlib kdump-compressed file (makedumpfile -c) with snappy pages, as `makedumpfile -p`
would store them: same header, bitmaps and descriptors, each page's data decompressed and stored
again as raw snappy (page_desc flag DUMP_DH_COMPRESSED_SNAPPY 0x4), or uncompressed when snappy
does not shrink it (makedumpfile's rule). Pages that share data (makedumpfile writes the zero
page once) still share it.

Only for the benchmark: no makedumpfile build with snappy can be had here (Debian builds it
without, and the source package is not served), so the bench makes its snappy dump this way and
says so. Runs in the bench's venv, which has `cramjam` (libsnappy's format, from PyPI).

Usage: kdump_to_snappy.py IN.kdump OUT.kdump
"""
import os, struct, sys, zlib

import cramjam

DESC = 24
ZLIB, LZO, SNAPPY, ZSTD = 0x1, 0x2, 0x4, 0x20


def main(src_path, dst_path):
    with open(src_path, "rb") as f:
        src = f.read()
    if src[:8] != b"KDUMP   ":
        sys.exit(f"{src_path}: not a kdump-compressed file")
    status, bs, sub_blocks, bitmap_blocks = struct.unpack_from("<IIII", src, 424)
    sub = bs
    max_mapnr = struct.unpack_from("<Q", src, sub + 96)[0] or struct.unpack_from("<I", src, 440)[0]
    erase_off, erase_size = struct.unpack_from("<QQ", src, sub + 64)
    bitmap_off = (1 + sub_blocks) * bs
    half = bitmap_blocks * bs // 2
    # The second bitmap (dumpable pages) says how many descriptors there are.
    dumpable = src[bitmap_off + half:bitmap_off + half + (max_mapnr + 7) // 8]
    count = sum(bin(b).count("1") for b in dumpable)
    desc_off = bitmap_off + bitmap_blocks * bs
    out = bytearray(src[:desc_off + count * DESC])
    data = bytearray()
    data_base = len(out)
    moved = {}
    for i in range(count):
        at = desc_off + i * DESC
        offset, size, flags, page_flags = struct.unpack_from("<QIIQ", src, at)
        if offset == 0:
            continue
        if offset not in moved:
            stored = src[offset:offset + size]
            if flags & ZLIB:
                page = zlib.decompress(stored)
            elif flags & (LZO | SNAPPY | ZSTD):
                sys.exit(f"{src_path}: page {i} is not zlib or raw (flags {flags:#x})")
            else:
                page = stored
            if len(page) != bs:
                sys.exit(f"{src_path}: page {i} decompresses to {len(page)} bytes")
            packed = bytes(cramjam.snappy.compress_raw(page))
            new = (packed, SNAPPY) if len(packed) < bs else (page, 0)
            moved[offset] = (data_base + len(data), len(new[0]), new[1])
            data += new[0]
        n_off, n_size, n_flags = moved[offset]
        struct.pack_into("<QIIQ", out, at, n_off, n_size, n_flags, page_flags)
    out += data
    if erase_off and erase_size:
        struct.pack_into("<Q", out, sub + 64, len(out))
        out += src[erase_off:erase_off + erase_size]
    struct.pack_into("<I", out, 424, (status & ~(ZLIB | LZO | SNAPPY | ZSTD)) | SNAPPY)
    tmp = dst_path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(out)
    os.replace(tmp, dst_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
