//! Young-aware pacing of the generational mode ([`crate::generational`]), concurrent cycles:
//! young cycles get their own measured figures and their own trigger.
//!
//! A young cycle's work is its survivors, not the heap: it marks and compacts the window's
//! live objects (and scans the remembered set, which the pacer's figures do not see). Paced
//! like a full cycle (by the occupancy goal, whose window is what the old generation leaves of
//! it), a young cycle at 4 GiB live started with several GiB in the window and took tens of
//! seconds. So, measured over young cycles only (smoothed as the pacer's rates):
//!
//! - the **survival** `s`: survivors (kept young or promoted) per byte of window at the cycle's
//!   start;
//! - the **survivor rate**: survivor bytes per second of marking plus compaction;
//! - the **overhead**: the rest of the young cycle's wall time (pauses, precleaning, plan,
//!   finish).
//!
//! A window of `W` bytes then takes about `overhead + s x W / rate`; the next young cycle
//! starts once the window holds the `W` that makes this [`YOUNG_TARGET_SECS`]
//! ([`young_window`]), and never later than the pacer's own trigger (the occupancy goal and
//! the space's end): this trigger only ever moves a young cycle earlier. It never starts one
//! before the mutators have allocated [`MIN_YOUNG_ALLOC`] since the last cycle, so a cycle
//! whose survivors alone exceed the target is not followed by another at once.
//!
//! **Mutators that outrun a young cycle pay by assists** ([`YoungPace::begin`]; with
//! `HeapConfig::young_budget`, on by default: see its documentation). Without
//! this, a young cycle's own budget was the space's end: at 4 GiB live the mutators allocated
//! several GB while a young cycle marked and compacted (objects allocated while marking are
//! black and copied by the cycle; those allocated after its flip are the next window), so the
//! next cycle started at once with a window of GBs, took as long, and so on. So a concurrent
//! young cycle gets the young window ([`young_window`] from nothing kept) as its allocation
//! budget: its marking is paced to end within it (the pacer's mark assists, with the budget
//! as their headroom), and once the mutators have allocated it since the cycle's initial
//! mark, every allocation-buffer refill takes one compaction assist slice while the cycle's
//! compaction runs ([`YoungPace::owes_compaction`]).
//!
//! Invariants:
//! - the figures are written only by the thread finishing a cycle (behind the mutex) and only
//!   from young cycles;
//! - the budget's end is set only in a young cycle's initial-mark pause and reset to
//!   [`NO_BUDGET`] when any cycle ends, so no assist is owed outside a young cycle;
//! - [`young_window`] is at least `kept + MIN_YOUNG_ALLOC` (bytes in the window after the
//!   cycle plus the minimal allocation) and `None` until a young cycle with survivors and a
//!   measurable time was seen.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use crate::pacer::ewma;

/// The wall time a young cycle is paced to take, seconds.
pub(crate) const YOUNG_TARGET_SECS: f64 = 0.5;
/// The least a young window grows between two young cycles by this trigger, bytes.
pub(crate) const MIN_YOUNG_ALLOC: usize = 64 << 20;

/// The budget's end when no young cycle runs (or it runs without a budget).
pub(crate) const NO_BUDGET: u64 = u64::MAX;

/// What young cycles measured (see the module documentation). Zero: not measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct YoungRates {
    /// Survivor bytes per window byte.
    pub survival: f64,
    /// Survivor bytes per second of marking and compaction.
    pub rate: f64,
    /// The rest of a young cycle's wall time, seconds.
    pub overhead_secs: f64,
}

impl YoungRates {
    /// A young cycle over a window of `window` bytes left `survivors` bytes, spent `work`
    /// marking and compacting them, and took `total` from its start to its end.
    pub(crate) fn note(
        &mut self,
        window: usize,
        survivors: usize,
        work: Duration,
        total: Duration,
    ) {
        let w = work.as_secs_f64();
        if window == 0 || survivors == 0 || w < 1e-5 {
            return;
        }
        self.survival = ewma(self.survival, (survivors as f64 / window as f64).min(1.0));
        self.rate = ewma(self.rate, survivors as f64 / w);
        self.overhead_secs = ewma(self.overhead_secs, (total.as_secs_f64() - w).max(0.0));
    }

    /// Predicted wall time of a young cycle over a window of `window` bytes (`None`: not
    /// measured).
    #[cfg(test)]
    pub(crate) fn predict(&self, window: usize) -> Option<f64> {
        (self.rate > 0.0 && self.survival > 0.0)
            .then(|| self.overhead_secs + self.survival * window as f64 / self.rate)
    }
}

/// The window size (bytes) at which the next young cycle should start so that it takes
/// `target` seconds by `r`, at least `kept + min_alloc` (`kept`: the window's bytes now, just
/// after a cycle). The overhead counts at most three quarters of the target (a cycle whose
/// fixed costs alone exceed the target still gets a quarter of it for its survivors).
/// `None` when nothing is measured.
pub(crate) fn young_window(
    r: &YoungRates,
    target: f64,
    kept: usize,
    min_alloc: usize,
) -> Option<usize> {
    if r.rate <= 0.0 || r.survival <= 0.0 {
        return None;
    }
    let left = (target - r.overhead_secs).max(target / 4.0);
    let w = (left * r.rate / r.survival).min(usize::MAX as f64 / 2.0) as usize;
    Some(w.max(kept.saturating_add(min_alloc)))
}

/// The young cycles' figures of one heap.
#[derive(Debug)]
pub(crate) struct YoungPace {
    rates: Mutex<YoungRates>,
    /// The pacer's `allocated` count past which the running young cycle's mutators owe
    /// compaction assists ([`NO_BUDGET`]: none owed).
    budget_end: AtomicU64,
}

impl Default for YoungPace {
    fn default() -> Self {
        YoungPace {
            rates: Mutex::default(),
            budget_end: AtomicU64::new(NO_BUDGET),
        }
    }
}

impl YoungPace {
    fn rates(&self) -> std::sync::MutexGuard<'_, YoungRates> {
        self.rates.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A young cycle finished (see [`YoungRates::note`]).
    pub(crate) fn note(&self, window: usize, survivors: usize, work: Duration, total: Duration) {
        self.rates().note(window, survivors, work, total);
    }

    /// The trigger (bytes in use: window plus `large`) of the next cycle, a young one, given
    /// the pacer's `paced` trigger and `kept` bytes in the window now: the earlier of the two.
    pub(crate) fn trigger(&self, paced: usize, kept: usize, large: usize) -> usize {
        let r = *self.rates();
        match young_window(&r, YOUNG_TARGET_SECS, kept, MIN_YOUNG_ALLOC) {
            Some(w) => paced.min(w.saturating_add(large)),
            None => paced,
        }
    }

    /// A concurrent young cycle's initial-mark pause: `allocated` is the pacer's count of
    /// bytes handed out so far, `headroom` what the mutators may allocate before the space
    /// runs out. The cycle's budget is the young window (from nothing kept, at least
    /// [`MIN_YOUNG_ALLOC`]) when measured: past it the mutators owe compaction assists, even
    /// when the cycle started with the space already full (then its marking has no headroom
    /// at all, and the mutators wait for its flip). Returns the headroom the cycle's marking
    /// is paced to: the budget, never more than `headroom`.
    pub(crate) fn begin(&self, allocated: u64, headroom: usize) -> usize {
        let r = *self.rates();
        let budget = young_window(&r, YOUNG_TARGET_SECS, 0, MIN_YOUNG_ALLOC);
        let end = budget.map_or(NO_BUDGET, |b| allocated.saturating_add(b as u64));
        self.budget_end.store(end, Ordering::Relaxed);
        budget.map_or(headroom, |b| b.min(headroom))
    }

    /// A cycle ended: no assist is owed until the next young cycle's initial mark.
    pub(crate) fn end(&self) {
        self.budget_end.store(NO_BUDGET, Ordering::Relaxed);
    }

    /// Whether a mutator refilling its allocation buffer, with `allocated` bytes handed out
    /// so far, owes a compaction assist: the running young cycle's budget is spent.
    #[inline]
    pub(crate) fn owes_compaction(&self, allocated: u64) -> bool {
        allocated >= self.budget_end.load(Ordering::Relaxed)
    }

    /// The figures so far.
    #[cfg(test)]
    pub(crate) fn figures(&self) -> YoungRates {
        *self.rates()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    /// Equal within a byte (the arithmetic is in floating point).
    fn close(a: Option<usize>, b: usize) -> bool {
        a.is_some_and(|a| a.abs_diff(b) <= 1)
    }

    fn rates(survival: f64, rate: f64, overhead: f64) -> YoungRates {
        YoungRates {
            survival,
            rate,
            overhead_secs: overhead,
        }
    }

    #[test]
    fn nothing_measured_gives_no_window() {
        assert_eq!(young_window(&YoungRates::default(), 0.5, 0, MIB), None);
        let p = YoungPace::default();
        assert_eq!(p.trigger(123 * MIB, 0, 0), 123 * MIB);
    }

    #[test]
    fn the_window_makes_the_cycle_take_the_target() {
        // 25 % survive, 100 MB/s of survivors, 0.1 s overhead: 0.4 s of work = 40 MB of
        // survivors = a 160 MB window.
        let r = rates(0.25, 100e6, 0.1);
        let w = young_window(&r, 0.5, 0, MIB).unwrap();
        assert!(close(Some(w), 160_000_000), "{w}");
        let t = r.predict(w).unwrap();
        assert!((t - 0.5).abs() < 1e-6, "{t}");
    }

    #[test]
    fn a_large_overhead_still_leaves_a_quarter_of_the_target() {
        let r = rates(0.5, 100e6, 10.0);
        let w = young_window(&r, 0.4, 0, MIB);
        assert!(close(w, 20_000_000), "{w:?}");
    }

    #[test]
    fn the_window_grows_at_least_by_the_minimal_allocation() {
        // Survivors alone exceed the target: the next cycle waits for `min_alloc` more.
        let r = rates(1.0, 10e6, 0.0);
        assert_eq!(young_window(&r, 0.5, 900 * MIB, 64 * MIB), Some(964 * MIB));
        let p = YoungPace::default();
        p.note(
            100 * MIB,
            100 * MIB,
            Duration::from_secs(10),
            Duration::from_secs(10),
        );
        assert_eq!(
            p.trigger(usize::MAX, 900 * MIB, 0),
            900 * MIB + MIN_YOUNG_ALLOC
        );
    }

    #[test]
    fn the_young_trigger_only_moves_a_cycle_earlier() {
        let p = YoungPace::default();
        // 10 % of a 1000 MiB window survived in 1 s of work, 1 s total.
        p.note(
            1000 * MIB,
            100 * MIB,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let f = p.figures();
        assert!((f.survival - 0.1).abs() < 1e-9);
        assert!((f.rate - (100 * MIB) as f64).abs() < 1.0);
        assert_eq!(f.overhead_secs, 0.0);
        // 0.5 s target: 50 MiB of survivors, a 500 MiB window (plus 7 MiB of large objects).
        assert!(close(Some(p.trigger(usize::MAX, 0, 7 * MIB)), 507 * MIB));
        // A pacer trigger below it wins.
        assert_eq!(p.trigger(300 * MIB, 0, 7 * MIB), 300 * MIB);
    }

    #[test]
    fn a_measured_young_cycle_budgets_the_young_window_and_owes_past_it() {
        let p = YoungPace::default();
        // Nothing measured: the space's headroom, nothing owed.
        assert_eq!(p.begin(1000, 10_000 * MIB), 10_000 * MIB);
        assert!(!p.owes_compaction(u64::MAX - 1));
        // 10 % of a 1000 MiB window survived in 1 s: a 500 MiB window for 0.5 s.
        p.note(
            1000 * MIB,
            100 * MIB,
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let b = p.begin(1000, 10_000 * MIB);
        assert!(b.abs_diff(500 * MIB) <= 1, "{b}");
        assert!(!p.owes_compaction(1000 + b as u64 - 1));
        assert!(p.owes_compaction(1000 + b as u64));
        p.end();
        assert!(!p.owes_compaction(1000 + b as u64));
        // The space's headroom below the young window: marking paced to the headroom, the
        // compaction debt still from the young window.
        assert_eq!(p.begin(1000, 100 * MIB), 100 * MIB);
        assert!(!p.owes_compaction(1000 + b as u64 - 1));
        assert!(p.owes_compaction(1000 + b as u64));
        // A cycle that starts with the space full: no headroom, the same debt.
        assert_eq!(p.begin(1000, 0), 0);
        assert!(p.owes_compaction(1000 + b as u64));
        // A young window below the minimal allocation: the minimal allocation.
        p.note(
            1000 * MIB,
            1000 * MIB,
            Duration::from_secs(100),
            Duration::from_secs(100),
        );
        p.note(
            1000 * MIB,
            1000 * MIB,
            Duration::from_secs(100),
            Duration::from_secs(100),
        );
        assert_eq!(p.begin(0, 10_000 * MIB), MIN_YOUNG_ALLOC);
    }

    #[test]
    fn samples_are_smoothed_and_empty_ones_ignored() {
        let mut r = YoungRates::default();
        r.note(0, 10, Duration::from_secs(1), Duration::from_secs(1));
        r.note(10, 0, Duration::from_secs(1), Duration::from_secs(1));
        r.note(10, 10, Duration::ZERO, Duration::from_secs(1));
        assert_eq!(r, YoungRates::default());
        r.note(100, 50, Duration::from_secs(1), Duration::from_secs(3));
        r.note(100, 10, Duration::from_secs(1), Duration::from_secs(1));
        assert!((r.survival - 0.3).abs() < 1e-9, "{r:?}");
        assert!((r.rate - 30.0).abs() < 1e-9, "{r:?}");
        assert!((r.overhead_secs - 1.0).abs() < 1e-9, "{r:?}");
    }
}
