//! Hardware watchpoints on kernel addresses through perf_event_open, every hit reported.
