//! What the benchmarks share: the time this thread has spent on a CPU.

use std::time::Duration;

/// This thread's time on a CPU (the first field of /proc/thread-self/schedstat, in
/// nanoseconds; Linux): immune to other processes competing for the cores. Zero where
/// it cannot be read.
pub fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}
