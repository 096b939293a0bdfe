# Fully static, stripped, size-optimized kmemd binaries (musl) for x86_64 and aarch64.
# Included from the top-level Makefile. One-time machine setup: `sudo cross/setup.sh`.
#
#   make static                 target/x86_64-unknown-linux-musl/release/kmemd
#   make cross                  target/aarch64-unknown-linux-musl/release/kmemd
#   make verify-static F=path   no PT_INTERP, no DT_NEEDED, stripped, <= 2 MiB; prints `file`
#   make static-test-aarch64    unit tests (--lib) built for aarch64 musl, run under qemu-aarch64-static
#
# Toolchain: rustup's own musl std when `rustup target list --installed` has the target;
# otherwise Debian's rustc-web 1.96 (/usr/bin/rustc, /usr/bin/cargo, called by absolute path
# because rustup's proxies come first on PATH) building std from rust-web-src with -Zbuild-std.
# Force one with STATIC_TOOLCHAIN=rustup|debian. The release profile (opt-level z, lto,
# codegen-units 1, panic abort, strip) is in Cargo.toml.

STATIC_CFG      := --config cross/cargo-config.toml
STATIC_BIN      := kmemd
STATIC_MAX      := 2097152
STATIC_X86      := x86_64-unknown-linux-musl
STATIC_ARM      := aarch64-unknown-linux-musl
STATIC_TARGETDIR = $(or $(CARGO_TARGET_DIR),target)
QEMU_AARCH64    ?= qemu-aarch64-static
# -Zbuild-std crate sets: release binaries abort on panic; the test harness needs unwinding.
STATIC_STD_REL  := std,panic_abort
STATIC_STD_TEST := std,panic_unwind

# $(call static_tc,<triple>) -> rustup | debian
static_tc = $(or $(STATIC_TOOLCHAIN),$(if $(filter $(1),$(shell rustup target list --installed 2>/dev/null)),rustup,debian))
# $(call static_cargo,<triple>,<build-std crates>) -> the cargo command line prefix
static_cargo = $(if $(filter rustup,$(call static_tc,$(1))),cargo $(STATIC_CFG),RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 /usr/bin/cargo $(STATIC_CFG) -Zbuild-std=$(2))

.PHONY: static cross verify-static static-test-aarch64 static-check-tools lab-bins

static-check-tools:
	@command -v musl-cc-x86_64 >/dev/null && command -v musl-cc-aarch64 >/dev/null || \
	  { echo "The static toolchain is missing: run 'sudo cross/setup.sh' once on this machine."; exit 1; }

static: static-check-tools
	@echo "static: building $(STATIC_X86) with the $(call static_tc,$(STATIC_X86)) toolchain"
	$(call static_cargo,$(STATIC_X86),$(STATIC_STD_REL)) build --release --locked --target $(STATIC_X86) --bin $(STATIC_BIN)
	@$(MAKE) --no-print-directory verify-static F=$(STATIC_TARGETDIR)/$(STATIC_X86)/release/$(STATIC_BIN)

cross: static-check-tools
	@echo "cross: building $(STATIC_ARM) with the $(call static_tc,$(STATIC_ARM)) toolchain"
	$(call static_cargo,$(STATIC_ARM),$(STATIC_STD_REL)) build --release --locked --target $(STATIC_ARM) --bin $(STATIC_BIN)
	@$(MAKE) --no-print-directory verify-static F=$(STATIC_TARGETDIR)/$(STATIC_ARM)/release/$(STATIC_BIN)

# Fails unless $(F) exists, has no program interpreter, needs no shared library, is stripped
# and fits in 2 MiB.
verify-static:
	@test -n "$(F)" || { echo "usage: make verify-static F=path/to/binary"; exit 1; }
	@test -f "$(F)" || { echo "verify-static: $(F) does not exist; build it first (make static / make cross)"; exit 1; }
	@if readelf -lW "$(F)" | grep -q 'INTERP'; then \
	  echo "NOT STATIC: $(F) has a PT_INTERP program header"; file "$(F)"; exit 1; fi
	@if readelf -dW "$(F)" | grep -q 'NEEDED'; then \
	  echo "NOT STATIC: $(F) needs shared libraries:"; readelf -dW "$(F)" | grep NEEDED; exit 1; fi
	@if readelf -SW "$(F)" | grep -qE '\.symtab|\.debug_'; then \
	  echo "NOT STRIPPED: $(F) still has a symbol table or debug info (profile.release strip?)"; exit 1; fi
	@size=$$(stat -c %s "$(F)"); if [ $$size -gt $(STATIC_MAX) ]; then \
	  echo "TOO BIG: $(F) is $$size bytes, the limit is $(STATIC_MAX) (2 MiB)"; exit 1; fi; \
	  echo "static: $(F) ($$size bytes, limit $(STATIC_MAX)): no PT_INTERP, no DT_NEEDED, stripped"
	@file "$(F)"

# Unit tests of the aarch64 build, run under qemu-user. Tests that need bpf(2) or
# perf_event_open(2) get ENOSYS there; cross/qemu-test.sh reports them separately.
static-test-aarch64: static-check-tools
	@mkdir -p $(STATIC_TARGETDIR)
	$(call static_cargo,$(STATIC_ARM),$(STATIC_STD_TEST)) test --locked --target $(STATIC_ARM) --lib --no-run \
	  --message-format=json-render-diagnostics > $(STATIC_TARGETDIR)/static-test-aarch64.json
	QEMU=$(QEMU_AARCH64) cross/qemu-test.sh $(STATIC_TARGETDIR)/static-test-aarch64.json

# The static aarch64 binary (under qemu-user) serves the aarch64 fixture dump to gdb-multiarch.
.PHONY: cross-dump-check
cross-dump-check: cross fixtures
	tests/cross/aarch64-dump.sh $(STATIC_TARGETDIR)/$(STATIC_ARM)/release/$(STATIC_BIN)

# The kernel lab's guest binaries (tests/lab/): both static kmemd builds and the lab agent of each
# arch, which the lab's initramfs carries. `make test` builds them first.
lab-bins: static cross
	$(call static_cargo,$(STATIC_X86),$(STATIC_STD_REL)) build --release --locked --target $(STATIC_X86) --example lab-agent
	$(call static_cargo,$(STATIC_ARM),$(STATIC_STD_REL)) build --release --locked --target $(STATIC_ARM) --example lab-agent
