# Fuzzing of kmemd's parsers of untrusted input (fuzz/README.md). Included from the Makefile.
#   make fuzz                      each target for FUZZ_SECONDS (60), ASan on rustup's nightly
#   make fuzz-ci                   each target for FUZZ_CI_SECONDS (20): what CI runs
#   make fuzz FUZZ_TARGETS=session only the named targets
# Works without a rustup nightly (Debian's rustc-web, installed when missing); fuzz/run.sh picks.

FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 20
FUZZ_TARGETS    ?=
# Targets with a known crash recorded as an #[ignore]d test in tests/robust_regressions.rs,
# left out until fixed: e.g. FUZZ_SKIP="btf dump_open".
FUZZ_SKIP       ?=
export FUZZ_SKIP

.PHONY: fuzz fuzz-ci

fuzz:
	bash fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci:
	bash fuzz/run.sh $(FUZZ_CI_SECONDS) $(FUZZ_TARGETS)
