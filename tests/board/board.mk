# make e2e-board: the static kmemd inside Debian's real arm64 and amd64 6.1 kernels under QEMU
# (TCG): --check, GDB over a virtio console, a watchpoint hit. See tests/board/board.py.
# Needs root (apt-get download of the kernels, cached with the fixtures), qemu-system-x86_64,
# qemu-system-aarch64, gdb and gdb-multiarch. Prints "N passed, N failed". About a minute after
# the static builds; KMEMD_BOARD_BUDGET (default 540 s) caps the waits, `timeout` backs it up.

BOARD_TARGETDIR = $(or $(CARGO_TARGET_DIR),target)
BOARD_TIMEOUT  ?= 600

.PHONY: e2e-board
e2e-board: static cross
	timeout -k 10 $(BOARD_TIMEOUT) python3 tests/board/board.py \
	  --x86 $(BOARD_TARGETDIR)/x86_64-unknown-linux-musl/release/kmemd \
	  --arm64 $(BOARD_TARGETDIR)/aarch64-unknown-linux-musl/release/kmemd
