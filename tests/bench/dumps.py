#!/usr/bin/env python3
"""make bench, dump part: MiB/s reading a whole dump through `kmemd -c DUMP --read`, per format.

Reads the guest's direct map from the fixtures' direct-map oracle address up to the first
unreadable byte (the end of RAM), for every dump of every fixture variant, and prints MiB/s
beside the dump's size. Not a test: nothing is asserted about time.
"""
import os, subprocess, sys, time

KMEMD = sys.argv[1]
ROOT = os.path.join(os.environ.get("KMEMD_FIXTURES", ".fixtures"), "current")


def manifest(variant):
    lines = open(os.path.join(ROOT, variant, "manifest.txt")).read().splitlines()
    return [l.split() for l in lines]


def main():
    if not os.path.isdir(ROOT):
        sys.exit(f"no fixtures in {ROOT}: run `make fixtures`")
    print("kmemd bench (dumps): --read of the whole direct map, per format")
    print(f"{'variant':10} {'dump':24} {'size MiB':>9} {'read MiB':>9} {'MiB/s':>8}")
    for variant in ("x86_64-4l", "x86_64-5l", "aarch64"):
        m = manifest(variant)
        start = next(int(w[2], 16) for w in m if w[0] == "oracle" and w[1] == "direct-map")
        for w in m:
            if w[0] != "dump":
                continue
            path = os.path.join(ROOT, variant, w[3])
            t = time.perf_counter()
            p = subprocess.Popen([KMEMD, "-q", "-c", path, "--read", hex(start), str(1 << 30)],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            n = 0
            while True:
                b = p.stdout.read(1 << 20)
                if not b:
                    break
                n += len(b)
            p.wait()
            dt = time.perf_counter() - t
            print(f"{variant:10} {w[3]:24} {os.path.getsize(path) / 2**20:9.0f} {n / 2**20:9.0f} "
                  f"{n / 2**20 / dt:8.0f}")


if __name__ == "__main__":
    main()
