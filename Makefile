# kmemd: `make` builds, `make test` runs every test (root needed for the live BPF and perf tests).
# `make deps` installs what the tests need on Debian 12 (run once, as root; .ci/run does it).

CARGO      ?= cargo
BIN        := target/release/kmemd
GDB18_DIR  ?= /opt/kmemd-gdb18
BPF_CLANG  ?= clang

.PHONY: all build build-deps test deps gdb18 lint bpf bench fixtures clean

all: build

# libbpf-sys builds libbpf, libelf and zlib from source: it needs these build tools.
BUILD_TOOLS := autoconf automake autopoint libtool flex bison gawk m4 make pkg-config gcc
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q

build: build-deps
	$(CARGO) build --release
	@echo "built $(BIN)"

# Installs the build tools that are missing (Debian; needs root). Does nothing when all are there.
build-deps:
	@missing=""; for p in $(BUILD_TOOLS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing build tools:$$missing"; \
	  $(APT_INSTALL) $$missing >/dev/null || { apt-get -o DPkg::Lock::Timeout=600 update -q && $(APT_INSTALL) $$missing; }; fi

# Everything the tests use, idempotent: Debian packages, GDB 18 (PyPI's gdb-for-pwndbg), and the
# static toolchain of cross/setup.sh (the kernel lab runs the static builds). lldb (14 on Debian 12)
# is the second RSP client (issue 20); its Python prints "No module named
# 'lldb.embedded_interpreter'" unless PYTHONPATH=/usr/lib/llvm-14/lib/python3.11/dist-packages, which
# does not affect gdb-remote.
TEST_TOOLS := gdb gdb-multiarch socat python3-venv file binutils lldb gcc-aarch64-linux-gnu

deps: build-deps
	$(APT_INSTALL) $(TEST_TOOLS) >/dev/null || \
	  { apt-get -o DPkg::Lock::Timeout=600 update -q && $(APT_INSTALL) $(TEST_TOOLS); }
	$(MAKE) --no-print-directory gdb18
	bash cross/setup.sh

gdb18:
	@if [ ! -x $(GDB18_DIR)/bin/gdb ]; then \
	  python3 -m venv $(GDB18_DIR) && $(GDB18_DIR)/bin/pip install -q gdb-for-pwndbg; fi
	@$(GDB18_DIR)/bin/gdb --version | head -1

# The kernel lab (tests/lab) boots the fixtures' Debian kernels with the static builds inside.
test: deps fixtures dbg-vmlinux lx-scripts lab-bins
	KMEMD_GDB18=$(GDB18_DIR)/bin/gdb $(CARGO) test --no-fail-fast -- --test-threads=2

# Real crash dumps from QEMU booting Debian's kernels, with QEMU's own memsave as the oracle.
# Cached in $$KMEMD_FIXTURES or .fixtures/ (a second run takes a second). Needs root and apt.
fixtures:
	tests/fixtures/make-fixtures.sh --arch all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

clean:
	$(CARGO) clean

# Static musl binaries for boards: make static (x86_64), make cross (aarch64); see cross/.
include cross/static.mk
# Fuzzing (cargo fuzz): make fuzz (60 s a target), make fuzz-ci (20 s a target); see fuzz/.
include fuzz/fuzz.mk
# Debian's debug vmlinux of the fixtures' kernel (cached outside the repo), for backtraces.
include tests/fixtures/dbg.mk

# Benchmarks: ratios measured in one run (kmemd beside the do-nothing stub). Root for live reads.
# The dump part installs drgn 0.3.0 into DRGN_VENV (default /opt/kmemd-drgn) to compare with, and
# times crash too when Debian's crash and the fixtures' debug vmlinux (make dbg-vmlinux) are there.
bench: fixtures static lab-bins dbg-vmlinux
	$(CARGO) build --release --bin kmemd --example null_stub --example read_throughput \
	  --example table_stub
	KMEMD_GDB18=$(GDB18_DIR)/bin/gdb python3 tests/bench/live.py target/release/kmemd \
	  target/release/examples/null_stub target/release/examples/read_throughput
	KMEMD_GDB=gdb python3 tests/bench/dumps.py target/release/kmemd
	KMEMD_GDB18=$(GDB18_DIR)/bin/gdb python3 tests/bench/footprint.py target/release/kmemd \
	  target/release/examples/table_stub target/release/examples/read_throughput
	KMEMD_GDB=gdb python3 tests/bench/kernel.py target/release/kmemd
	$(MAKE) --no-print-directory -f tests/bench/watch.mk bench-watch CARGO="$(CARGO)"

# Rebuilds the prebuilt BPF objects (committed, so building kmemd needs no clang).
# watch.bpf.c is built once per arch: its context (pt_regs) differs.
bpf: $(patsubst %.c,%.o,$(filter-out bpf/watch.bpf.c,$(wildcard bpf/*.bpf.c))) \
	bpf/watch-x86_64.bpf.o bpf/watch-aarch64.bpf.o

bpf/watch-x86_64.bpf.o: bpf/watch.bpf.c
	$(BPF_CLANG) -target bpf -O2 -g -D WATCH_X86_64 -c $< -o $@

bpf/watch-aarch64.bpf.o: bpf/watch.bpf.c
	$(BPF_CLANG) -target bpf -O2 -g -D WATCH_AARCH64 -c $< -o $@

bpf/%.bpf.o: bpf/%.bpf.c
	$(BPF_CLANG) -target bpf -O2 -g -c $< -o $@
