//! Short waits that keep the CPU: a mutator waiting microseconds for another thread spins.
//!
//! Why not `sched_yield`: on Linux's EEVDF scheduler (6.6 and later) every `sched_yield` of a
//! thread that shares its CPU with another runnable thread moves the caller's virtual deadline
//! one time slice later, so the other thread keeps the CPU until the next scheduler tick or
//! longer (a tick is 4 ms at HZ 250), however soon what the caller waits for is done; a few
//! yields in a row add a slice each. A mutator on the allocation path pays that as an
//! allocation stall (the request workload's longest allocation stalls were such yields, see
//! BENCHMARKS.md, session s9 helper `request`).
//!
//! Invariants: [`spin_until`] never blocks, never yields and never allocates; it returns true
//! as soon as `done` is true, and otherwise returns `done`'s value once `rounds` microseconds
//! have passed on the monotonic clock (0 rounds: `done` is asked once). It may be preempted
//! like any running code; it never asks to be.

use std::time::{Duration, Instant};

/// Spins between two clock reads (a `pause` is tens of cycles: well under a microsecond).
const SPINS_PER_CHECK: u32 = 32;

/// Spin until `done` is true or `rounds` microseconds have passed; returns `done`'s last value.
pub(crate) fn spin_until(rounds: usize, mut done: impl FnMut() -> bool) -> bool {
    if rounds == 0 {
        return done();
    }
    if done() {
        return true;
    }
    let limit = Duration::from_micros(rounds as u64);
    let t0 = Instant::now();
    loop {
        for _ in 0..SPINS_PER_CHECK {
            core::hint::spin_loop();
            if done() {
                return true;
            }
        }
        if t0.elapsed() >= limit {
            return done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    #[test]
    fn returns_at_once_when_done_and_asks_once_with_no_rounds() {
        let asked = AtomicU32::new(0);
        assert!(spin_until(1_000_000, || {
            asked.fetch_add(1, Ordering::Relaxed);
            true
        }));
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        asked.store(0, Ordering::Relaxed);
        assert!(!spin_until(0, || {
            asked.fetch_add(1, Ordering::Relaxed);
            false
        }));
        assert_eq!(asked.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn gives_up_after_its_bound_and_sees_another_thread_finish() {
        assert!(!spin_until(50, || false));
        let flag = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| flag.store(true, Ordering::Release));
            // Retried until the other thread has run (each try is bounded).
            while !spin_until(1000, || flag.load(Ordering::Acquire)) {}
        });
    }
}
