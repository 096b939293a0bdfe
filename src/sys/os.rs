//! Raw syscalls kmemd makes itself: terminal modes for serial lines, signals, and (for
//! watchpoints) perf_event_open with its mmap ring.
#![allow(unsafe_code)]

// ---- tty --------------------------------------------------------------------------------------

// ---- signals ----------------------------------------------------------------------------------

// ---- perf (watchpoints) -----------------------------------------------------------------------
