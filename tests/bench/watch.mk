# make bench, watch part (issue 10): a burst of 100,000 kernel-speed writes under
# `kmemd -w w8 ADDR --json` (release build), printing hits reported of 100,000 and the exact lost
# count, seconds to drain, CPU time and peak RSS beside the peer's numbers (kmemsnoop, from
# reference/watchpoints.md). No assertion on time; root (BPF + perf).
# The Makefile's bench target runs:
#   $(MAKE) --no-print-directory -f tests/bench/watch.mk bench-watch CARGO="$(CARGO)"
CARGO ?= cargo

.PHONY: bench-watch
bench-watch:
	$(CARGO) test --release --test watch_bench -- --ignored --nocapture --test-threads=1
