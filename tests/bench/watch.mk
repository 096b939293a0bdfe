# make bench, watch part (issue 10): a burst of 100,000 kernel-speed writes under
# `kmemd -w w8 ADDR --json` (release build), printing hits reported of 100,000 and the exact lost
# count, seconds to drain, CPU time and peak RSS beside the peer's numbers (kmemsnoop, from
# reference/watchpoints.md). No assertion on time; root (BPF + perf).
# The Makefile's bench target runs:
#   $(MAKE) --no-print-directory -f tests/bench/watch.mk bench-watch CARGO="$(CARGO)"
CARGO ?= cargo

.PHONY: bench-watch bench-watch-lab
bench-watch: bench-watch-lab
	$(CARGO) test --release --test watch_bench -- --ignored --nocapture --test-threads=1

# Issue 15, section 3, in the kernel lab (needs make lab-bins and dbg-vmlinux: the arm64 guest's
# kallsyms has no pid_max): a burst of 100,000 pid_max writes (a kernel writer that is not BPF)
# under kmemd -w with --snapshots and without, beside perf's own count and kmemsnoop's
# figures. LAB_PID_MAX_BURST overrides the size.
bench-watch-lab:
	CI=true $(CARGO) test --test lab -- --ignored --nocapture --exact watch::bench_watch_burst
