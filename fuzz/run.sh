#!/usr/bin/env bash
# Runs kmemd's fuzz targets, each for a bounded time; fails if any of them crashed.
#   fuzz/run.sh SECONDS [TARGET...]      (all targets in fuzz/fuzz_targets/ when none is named)
# Toolchain (see fuzz/README.md): rustup's nightly when installed, with AddressSanitizer; else
# Debian's rustc-web as the "nightly" (RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1), which ships no
# sanitizer runtime, so --sanitizer none (libFuzzer and its coverage still work; Rust code is
# bounds-checked anyway). FUZZ_RUST=nightly|debian forces one. Builds go to FUZZ_TARGET_DIR
# (default fuzz/target/<toolchain>), never to the main crate's target dir.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for f in "$here"/fuzz_targets/*.rs; do
        t=$(basename "$f" .rs)
        # FUZZ_SKIP: targets with a known, recorded crash (tests/robust_regressions.rs).
        case " ${FUZZ_SKIP:-} " in *" $t "*) echo "fuzz: skipping $t (FUZZ_SKIP)";; *) targets+=("$t");; esac
    done
fi

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@" >/dev/null ||
        { apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null &&
          DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "$@"; }
}

mode=${FUZZ_RUST:-auto}
if [ "$mode" = auto ]; then
    if command -v rustup >/dev/null && rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
        mode=nightly
    else
        mode=debian
    fi
fi

# libFuzzer itself is C++ (built by libfuzzer-sys).
command -v c++ >/dev/null || apt_install g++

case $mode in
nightly)
    cargo_fuzz=(cargo +nightly fuzz)
    run_flags=()
    version=$(rustc +nightly --version)
    ;;
debian)
    if ! /usr/bin/rustc --version 2>/dev/null | grep -q .; then
        echo "fuzz: no rustup nightly; installing Debian's rustc-web as the fuzzing compiler"
        apt_install rustc-web cargo-web
    fi
    export RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
    cargo_fuzz=(cargo fuzz)
    # Debian's rustc has no ASan runtime (no librustc-*_rt.asan.a).
    run_flags=(--sanitizer none)
    version=$(/usr/bin/rustc --version)
    ;;
*)
    echo "fuzz: FUZZ_RUST must be nightly or debian, not '$mode'" >&2
    exit 2
    ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz from crates.io"
    cargo install cargo-fuzz --locked
fi

export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$here/target/$mode}
cd "$here"
echo "fuzz: $mode toolchain ($version), ${secs}s per target: ${targets[*]}"
start=$(date +%s)
"${cargo_fuzz[@]}" build "${run_flags[@]}"
echo "fuzz: built in $(( $(date +%s) - start ))s"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "seeds/$t"
    log="$CARGO_TARGET_DIR/fuzz-$t.log"
    # New inputs go to corpus/ (not committed); seeds/ holds the committed starting points.
    if "${cargo_fuzz[@]}" run "${run_flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 -print_final_stats=1 >"$log" 2>&1; then
        echo "fuzz: $t ok: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') runs, $(grep -E '^stat::peak_rss_mb' "$log" | awk '{print $2}') MiB peak"
    else
        echo "fuzz: $t FAILED; its log ($log) ends:" >&2
        tail -40 "$log" >&2
        echo "fuzz: the crashing input is in fuzz/artifacts/$t/; reproduce with" \
             "'cd fuzz && ${cargo_fuzz[*]} run ${run_flags[*]} $t artifacts/$t/<file>'" >&2
        failed+=("$t")
    fi
done
took=$(( $(date +%s) - start ))
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: ${#failed[@]} of ${#targets[@]} targets crashed: ${failed[*]} (${took}s in all)" >&2
    exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran ${secs}s each without a crash (${took}s in all)"
