#!/usr/bin/env bash
# The static aarch64 kmemd (make cross), run under qemu-aarch64-static, serves the aarch64
# fixture dump to gdb-multiarch; every oracle range GDB reads must equal QEMU's memsave of the
# guest, and --read must agree too. Usage: tests/cross/aarch64-dump.sh [KMEMD_AARCH64]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:-${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-musl/release/kmemd}
FIX=${KMEMD_FIXTURES:-.fixtures}/current/aarch64
QEMU=${QEMU_AARCH64:-qemu-aarch64-static}
[ -x "$BIN" ] || { echo "no aarch64 binary at $BIN: run make cross"; exit 1; }
[ -f "$FIX/manifest.txt" ] || { echo "no aarch64 fixture in $FIX: run make fixtures"; exit 1; }
tmp=$(mktemp -d); pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
pass=0; fail=0
check() { if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $*"; fi; }

for dump in mdf-lzo.kdump vmcore.elf; do
  sock=$tmp/gdb.sock
  "$QEMU" "$BIN" -q -c "$FIX/$dump" -s "$sock" 2>"$tmp/kmemd.log" &
  pid=$!
  for _ in $(seq 1 200); do [ -S "$sock" ] && break; sleep 0.1; done
  cmds=(-ex "set pagination off" -ex "target remote $sock")
  i=0
  while read -r _ kind va len file; do
    cmds+=(-ex "dump binary memory $tmp/o$i.bin $va $(printf '0x%x' $((va + len)))")
    i=$((i + 1))
  done < <(grep '^oracle ' "$FIX/manifest.txt")
  timeout 300 gdb-multiarch -nx -batch "${cmds[@]}" >"$tmp/gdb.log" 2>&1 || true
  i=0
  while read -r _ kind va len file; do
    check cmp -s "$tmp/o$i.bin" "$FIX/$file"
    "$QEMU" "$BIN" -q -c "$FIX/$dump" --read "$va" "$len" >"$tmp/r.bin"
    check cmp -s "$tmp/r.bin" "$FIX/$file"
    i=$((i + 1))
  done < <(grep '^oracle ' "$FIX/manifest.txt")
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  [ "$fail" -eq 0 ] || { echo "gdb-multiarch said:"; cat "$tmp/gdb.log"; echo "kmemd said:"; cat "$tmp/kmemd.log"; }
done
echo "aarch64 kmemd serving aarch64 dumps: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
