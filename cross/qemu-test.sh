#!/bin/bash
# Runs the aarch64 unit-test binaries that `cargo test --no-run --message-format=json`
# listed (arg 1: that JSON) under qemu-user and reports each test: ok, FAILED, ignored,
# or skipped.
#
# qemu-user emulates no bpf(2) and no perf_event_open(2): both return ENOSYS there.
# A test that needs one of them checks for ENOSYS itself (not for the architecture),
# prints a line starting with "kmemd-test-skip:" and returns; this script lists those as
# skipped. A test that fails instead is a failure, with a hint when ENOSYS shows in its output.
#
# Extra arguments after the JSON go to every test binary (e.g. a name filter).
# Exit status: 0 when no test failed and at least one test ran, 1 otherwise.
set -uo pipefail
json=${1:?usage: qemu-test.sh cargo-test-no-run.json [libtest args...]}
shift
QEMU=${QEMU:-qemu-aarch64-static}
command -v "$QEMU" >/dev/null || { echo "qemu-test.sh: $QEMU not found; run cross/setup.sh" >&2; exit 1; }

mapfile -t bins < <(grep -o '"executable":"[^"]*"' "$json" | sed 's/^"executable":"//; s/"$//' | sort -u)
[ ${#bins[@]} -gt 0 ] || { echo "qemu-test.sh: no test executables in $json" >&2; exit 1; }

pass=0 fail=0 ign=0 skip=0 rc=0
failed=() skipped=()
for b in "${bins[@]}"; do
  log=$b.qemu.log
  echo "== $QEMU $b"
  # --show-output: print the captured output of passing tests too, where the skip lines are.
  # KMEMD_QEMU_USER=1: the only place a test may skip on ENOSYS (tests/common, src/target/live.rs).
  KMEMD_QEMU_USER=1 "$QEMU" "$b" --show-output "$@" > "$log" 2>&1
  brc=$?
  grep -E '^test .* \.\.\. ' "$log" | sed 's/^/   /'
  # Names of tests that printed the skip marker (in their "---- name stdout ----" section).
  # Only tests that then passed count as skipped; one that printed it and failed is a failure.
  mapfile -t sk < <(awk '/^---- .* stdout ----$/ { name = $2 } /kmemd-test-skip:/ && name != "" { print name "\t" $0; name = "" }' "$log" |
    while IFS=$'\t' read -r n why; do grep -qxF "test $n ... ok" "$log" && printf '%s: %s\n' "$n" "$why"; done)
  for s in "${sk[@]}"; do skipped+=("$s"); done
  np=$(grep -cE '^test .* \.\.\. ok$' "$log")
  nf=$(grep -cE '^test .* \.\.\. FAILED$' "$log")
  ni=$(grep -cE '^test .* \.\.\. ignored' "$log")
  pass=$((pass + np - ${#sk[@]})); skip=$((skip + ${#sk[@]})); fail=$((fail + nf)); ign=$((ign + ni))
  while read -r t; do failed+=("$t"); done < <(grep -E '^test .* \.\.\. FAILED$' "$log" | sed 's/^test //; s/ \.\.\. FAILED$//')
  if [ $brc -ne 0 ] && [ "$nf" -eq 0 ]; then
    echo "   the test binary exited with status $brc without a failed test (crash?); log: $log"
    tail -20 "$log" | sed 's/^/   | /'
    rc=1
  fi
  if [ "$nf" -gt 0 ] && sed -n '/^failures:$/,$p' "$log" | grep -qE 'ENOSYS|os error 38|Function not implemented'; then
    echo "   hint: ENOSYS in the output: qemu-user lacks bpf/perf_event_open; such a test must skip on ENOSYS"
  fi
done

echo
for s in "${skipped[@]}"; do echo "skipped under qemu-user: $s"; done
for t in "${failed[@]}"; do echo "FAILED under qemu-user: $t"; done
echo "($ign ignored; binaries: ${#bins[@]}; logs beside them as *.qemu.log)"
echo "qemu-aarch64: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ] && [ $rc -eq 0 ] && [ $((pass + skip)) -gt 0 ] || exit 1
