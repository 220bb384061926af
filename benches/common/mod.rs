//! Code the benches share, included by every bench with
//! `#[path = "common/mod.rs"] mod common;` (from `benches/*.rs`) or
//! `#[path = "../common/mod.rs"] mod common;` (from `benches/*/main.rs`).
//!
//! - [`boehm`]: Boehm's `GC_malloc` / `GC_malloc_atomic`, loaded from `libgc.so.1` at run time;
//! - [`rng`]: the fixed-seed SplitMix64 generator every bench draws its random numbers from;
//! - [`modes`]: the collector configurations the pause benches compare (the stop-the-world
//!   mode and the concurrent strategy x fault-delivery grid);
//! - [`types`]: the mock runtime's object types (32-byte tree nodes, 24-byte pairs, reference
//!   arrays) and tagged fixnums;
//! - here: sizes, the quick-mode and runs switches, machine facts for report headers, and the
//!   criterion configuration of the criterion benches.
//!
//! Invariant: moving code here changes no bench's behaviour: the same generator, seeds, type
//! layouts and configurations as each bench used before it had this module.

// Every bench uses a different part of this module.
#![allow(dead_code)]

pub mod boehm;
pub mod modes;
pub mod rng;
pub mod types;

use std::time::Duration;

use criterion::Criterion;

/// One mebibyte.
pub const MIB: usize = 1 << 20;

/// `b` bytes in MiB.
pub fn mib(b: usize) -> f64 {
    b as f64 / MIB as f64
}

/// Whether `FAULTLINE_BENCH_QUICK` asks for a quick (smoke) run: set, not empty, not `0`.
pub fn quick_env() -> bool {
    std::env::var("FAULTLINE_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Runs per case: `FAULTLINE_BENCH_RUNS` when it is a positive number, else `default`.
pub fn runs_env(default: usize) -> usize {
    std::env::var("FAULTLINE_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// The first three fields of `/proc/loadavg` (the 1, 5 and 15 minute load averages), or `?`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The configuration of the criterion benches (`alloc`, `lookup`): 30 samples, 1 s of warm-up,
/// 3 s of measurement per benchmark.
pub fn criterion_config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}
