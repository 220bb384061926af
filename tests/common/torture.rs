//! Torture-suite bookkeeping shared by the torture tests: a per-test record of what was
//! exercised (collections run under verification, mutator threads, faults taken, injected
//! errors per kernel call), written under `<target>/tmp/torture/` for the summary printer
//! (`cargo run --release --example torture-summary`), and a watchdog that turns a hang into a
//! failure with a diagnostic.
//!
//! Invariants: a record is written only by a test that passed the point where it is written
//! (it is the last thing a test does), so the summary counts only work that completed without
//! failure; the watchdog aborts the process (it cannot fail one test of a hung process in any
//! other way) after printing what it was watching.

#![allow(dead_code)]

use faultline::testing::heap::inject::FaultInjector;
use faultline::testing::heap::sys::Call;
use faultline::Heap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where records go: `CARGO_TARGET_TMPDIR/torture` (the summary printer finds the same place
/// from its own executable's path).
pub fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("torture")
}

/// What one torture test exercised.
#[derive(Debug, Default, Clone)]
pub struct Record {
    /// Collections that ran with `verify` on (each verified before and after).
    pub verified_collections: u64,
    /// Collections in all (verified or not).
    pub collections: u64,
    /// Largest number of mutator threads used at once.
    pub mutator_threads: u64,
    /// Mutator faults taken (`Heap::fault_stats().count`, cumulative since creation).
    pub faults: u64,
    /// Shadow-model comparisons made.
    pub model_checks: u64,
    /// Injected errors per call name (plus the errno when known: `copy/EAGAIN`).
    pub injected: BTreeMap<String, u64>,
    /// Wall time of the test body.
    pub duration: Duration,
    /// Free-form notes (`key value`).
    pub notes: BTreeMap<String, String>,
}

impl Record {
    /// Add what a heap did: its cycles, fault count, and the largest mutator count of a cycle
    /// (over the recorded history).
    pub fn add_heap(&mut self, heap: &Heap) {
        let h = heap.history();
        self.collections += heap.flips();
        if heap.config().debug.verify {
            self.verified_collections += heap.flips();
        }
        self.mutator_threads = self
            .mutator_threads
            .max(h.iter().map(|c| c.mutators as u64).max().unwrap_or(0));
        self.faults += heap.fault_stats().count;
    }
    /// Add an injector's injected counts per call.
    pub fn add_injector(&mut self, inj: &FaultInjector) {
        for (c, n) in inj.injected_summary() {
            *self.injected.entry(c.name().to_string()).or_default() += n;
        }
    }
    /// Add `n` injections of `call` (tests that tally per errno themselves).
    pub fn add_injected(&mut self, call: Call, n: u64) {
        *self.injected.entry(call.name().to_string()).or_default() += n;
    }
    /// Write the record as `<dir>/<name>.txt` (`key value` lines).
    pub fn write(&self, name: &str) {
        let d = dir();
        let mut s = String::new();
        s += &format!("stress {}\n", stress_mode());
        s += &format!("verified_collections {}\n", self.verified_collections);
        s += &format!("collections {}\n", self.collections);
        s += &format!("mutator_threads {}\n", self.mutator_threads);
        s += &format!("faults {}\n", self.faults);
        s += &format!("model_checks {}\n", self.model_checks);
        s += &format!("duration_ms {}\n", self.duration.as_millis());
        for (k, v) in &self.injected {
            s += &format!("injected.{k} {v}\n");
        }
        for (k, v) in &self.notes {
            s += &format!("note.{k} {v}\n");
        }
        // Written by the main (root) run, where the summary reads it and reports a missing
        // one; a rerun as another user (`.ci/torture-env nobody`) may not write here.
        if let Err(e) = std::fs::create_dir_all(&d)
            .and_then(|()| std::fs::write(d.join(format!("{name}.txt")), s))
        {
            eprintln!("torture record {name} not written to {}: {e}", d.display());
        }
    }
}

/// `long` under `FAULTLINE_STRESS=long`, else `default`.
pub fn stress_mode() -> &'static str {
    if long() {
        "long"
    } else {
        "default"
    }
}

/// Whether `FAULTLINE_STRESS=long`.
pub fn long() -> bool {
    std::env::var("FAULTLINE_STRESS").as_deref() == Ok("long")
}

/// A duration from the environment variable `var` (seconds), else `default`.
pub fn secs_from_env(var: &str, default: Duration) -> Duration {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map(Duration::from_secs_f64)
        .unwrap_or(default)
}

/// Aborts the process with a diagnostic if `progress` does not advance for `stall`.
pub struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watchdog {
    /// Watch `progress` (bumped by the test as it advances); `what` names the test.
    pub fn new(what: &'static str, progress: Arc<AtomicU64>, stall: Duration) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = progress.load(Ordering::Relaxed);
            let mut since = Instant::now();
            while !st.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                let now = progress.load(Ordering::Relaxed);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() > stall {
                    eprintln!(
                        "watchdog: {what} made no progress for {:?} (stuck at {now}); aborting",
                        since.elapsed()
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The environment variable that tells a test binary it runs as a child scenario.
pub const CHILD_VAR: &str = "FAULTLINE_TORTURE_CHILD";

/// Which child scenario this process runs, if any.
pub fn child_scenario() -> Option<String> {
    std::env::var(CHILD_VAR).ok()
}

/// Run test `test` of this test binary in a child process with `CHILD_VAR=scenario`; returns
/// its exit status and its stderr.
pub fn run_child(test: &str, scenario: &str) -> (std::process::ExitStatus, String) {
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, scenario)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("spawning the child test process");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
