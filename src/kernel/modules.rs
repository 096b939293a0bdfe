//! `monitor lsmod` (work in progress).
