//! The pacer (concurrent mode): when the next cycle starts, how much marking an allocating
//! mutator owes while one runs, and the figures behind both decisions. Go's pacer is the
//! anchor; the stop-the-world collector keeps its occupancy trigger
//! ([`crate::inner::HeapInner::set_trigger`]).
//!
//! # What it measures
//!
//! - the **allocation rate**: bytes handed to mutators by the allocation slow path (allocation
//!   buffers and large objects; `allocated`, monotonic) per second of wall time, sampled at
//!   every cycle's start and finish (at least 1 ms apart) and smoothed (EWMA, weight
//!   [`SMOOTHING`]);
//! - the **marking speed**: bytes the markers and assists scanned per second of concurrent
//!   marking (all markers together), smoothed likewise;
//! - the **cycle overhead**: the rest of the time from the initial mark to the flip (precleaning,
//!   planning, remark), smoothed, and the compaction time (its own speed).
//!
//! # What it decides
//!
//! **The trigger** (set when a concurrent cycle finishes, with the bytes in use `used` then):
//! the cycle must reach its flip, which frees the old half, before the moving space runs out.
//! Marking `live` bytes takes `T = live / mark_speed + overhead`; mutators allocate
//! `alloc_rate x T` meanwhile. So the next cycle starts at
//!
//! ```text
//! trigger = clamp(min(goal, capacity - alloc_rate x T x (1 + MARGIN)), used, capacity)
//! goal    = max(min_trigger_bytes, live x (1 + growth))      (the occupancy trigger)
//! ```
//!
//! i.e. no later than the heap-growth goal (memory policy, as GOGC), and earlier when the
//! measured rates say the goal leaves too little headroom. [`decide`] is the pure arithmetic.
//!
//! **The GC CPU budget**: `gc_cpu_budget` (default 25 %) of the CPUs are given to dedicated
//! concurrent markers, `gc_threads` of them (default: `ceil(budget x CPUs)`, see
//! [`crate::HeapConfig::gc_threads`]); mark **assists** are paid on top of it, by the mutators
//! that allocate faster than those markers mark, so the budget is never the reason a cycle
//! misses the space's end.
//!
//! **Assists** (marking running): a mutator refilling its allocation buffer is *behind* when
//! the fraction of the cycle's headroom allocated so far exceeds the fraction of the expected
//! mark work scanned so far ([`Pacer::assist_target`]); it then scans gray objects until the
//! two fractions meet, in slices of at most [`ASSIST_SLICE`] of its CPU time (see
//! [`crate::assist::assist`]), within a budget: at most [`ASSIST_SHARE`] of every
//! [`ASSIST_WINDOW`] per mutator, until [`ASSIST_URGENT`] of the headroom is allocated
//! ([`crate::assist::paced_assist`]). Waiting for the flip is the last resort, when the space is
//! exhausted and no marking work (or, after the flip, no compaction work: compaction assists)
//! is left to take; it is counted.
//!
//! Invariants:
//! - `allocated`, `scanned` and the assist / flip-wait counters are monotonic or reset only at a
//!   cycle's initial-mark pause (counters: taken when the cycle is recorded), so a reading is
//!   never torn across cycles in a way that could make an assist unbounded: every assist is
//!   bounded by [`ASSIST_SLICE`] whatever the figures say;
//! - the estimates behind `state` are only written by the thread running the cycle (initial
//!   mark, flip, finish), behind the mutex;
//! - the pacer never makes a mutator wait: it only sets the trigger and asks for assists.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::stats::PaceStats;

/// Weight of the newest sample in the smoothed rates.
pub(crate) const SMOOTHING: f64 = 0.5;
/// Safety margin on the bytes a cycle is predicted to need.
pub(crate) const MARGIN: f64 = 0.25;
/// The longest single assist: slices end after this much of the mutator's CPU time (checked
/// every [`ASSIST_CHECK`] objects or [`ASSIST_CHECK_BYTES`] scanned, and no step scans more
/// than [`crate::marking::SCAN_CHUNK_WORDS`], so one assist stays under a millisecond of
/// work). CPU time, not wall time: a mutator preempted inside an assist did no work meanwhile,
/// and a slice cut short by preemption would leave the debt to the space's end.
pub(crate) const ASSIST_SLICE: Duration = Duration::from_micros(500);
/// Objects an assist scans between two looks at the clock...
pub(crate) const ASSIST_CHECK: usize = 64;
/// ...or bytes of objects, whichever comes first.
pub(crate) const ASSIST_CHECK_BYTES: usize = 16 << 10;
/// Assist budget: a mutator's mark assists take at most this share of each
/// [`ASSIST_WINDOW`] of wall time (Go gives dedicated markers 25 % and lets assists make up
/// the rest; here the rest is bounded too, so assists alone never push a mutator's MMU at
/// [`ASSIST_WINDOW`] and above below `1 - ASSIST_SHARE`), until the cycle has used
/// [`ASSIST_URGENT`] of its headroom.
pub(crate) const ASSIST_SHARE: f64 = 0.25;
/// The window of the assist budget.
pub(crate) const ASSIST_WINDOW: Duration = Duration::from_millis(10);
/// Past this fraction of the headroom allocated, assists ignore their budget: finishing the
/// mark before the space runs out (a flip wait, a whole marking phase long) matters more.
pub(crate) const ASSIST_URGENT: f64 = 0.75;
/// An allocating mutator assists only once marking is behind by at least this many bytes of
/// scanning (no assist for a rounding error; Go over-assists by 64 KiB for the same reason).
pub(crate) const ASSIST_MIN_DEBT: usize = 16 << 10;

/// The pure trigger arithmetic's inputs (bytes, bytes per second, seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PaceInputs {
    /// Bytes mutators can hold before an allocation fails (the moving half + large in use).
    pub capacity: usize,
    /// Bytes in use now (the trigger is never below it).
    pub used: usize,
    /// The occupancy goal (`max(min_trigger_bytes, live x (1 + growth))`).
    pub goal: usize,
    /// Bytes the next cycle must mark (live after this one).
    pub live: usize,
    /// Measured allocation rate, bytes/s (0: unknown).
    pub alloc_rate: f64,
    /// Measured marking speed of all markers together, bytes/s (0: unknown).
    pub mark_rate: f64,
    /// Measured time from the initial mark to the flip not spent tracing, seconds.
    pub overhead_secs: f64,
}

/// What [`decide`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Decision {
    /// Bytes in use at which the next cycle starts.
    pub trigger: usize,
    /// Predicted time from the initial mark to the flip.
    pub predicted: Duration,
    /// Bytes mutators are predicted to allocate meanwhile (with the margin).
    pub need: usize,
}

/// The trigger for the next cycle (see the module documentation).
pub(crate) fn decide(i: &PaceInputs) -> Decision {
    let goal = i.goal.min(i.capacity);
    if i.alloc_rate <= 0.0 || i.mark_rate <= 0.0 {
        // Nothing measured yet: the occupancy goal.
        return Decision {
            trigger: goal.max(i.used.min(i.capacity)),
            ..Decision::default()
        };
    }
    let secs = i.live as f64 / i.mark_rate + i.overhead_secs.max(0.0);
    let need = (i.alloc_rate * secs * (1.0 + MARGIN)).min(i.capacity as f64) as usize;
    let latest = i.capacity.saturating_sub(need);
    Decision {
        trigger: goal.min(latest).max(i.used).min(i.capacity),
        predicted: Duration::from_secs_f64(secs.min(1e6)),
        need,
    }
}

/// Exponentially weighted moving average; `None` until the first sample.
fn ewma(old: f64, new: f64) -> f64 {
    if old <= 0.0 {
        new
    } else {
        old * (1.0 - SMOOTHING) + new * SMOOTHING
    }
}

/// How far ahead of the mutators marking must be (see [`Pacer::assist_target`]).
#[derive(Debug, Default)]
struct CycleBudget {
    /// `allocated` at the cycle's initial mark.
    alloc_at_start: AtomicU64,
    /// Bytes mutators may allocate before the space runs out, from the initial mark.
    headroom: AtomicUsize,
    /// Bytes the cycle is expected to scan.
    mark_goal: AtomicUsize,
}

/// The smoothed estimates and the decision in force.
#[derive(Debug, Default)]
struct PaceState {
    alloc_rate: f64,
    mark_rate: f64,
    overhead_secs: f64,
    compact_rate: f64,
    /// (when, `allocated`) at the last rate sample.
    last_sample: Option<(Instant, u64)>,
    /// Live bytes after the last cycle.
    live: usize,
    decision: Decision,
}

/// The pacer's shared state (one per heap, in [`crate::inner::HeapInner`]).
#[derive(Debug, Default)]
pub(crate) struct Pacer {
    /// Bytes handed to mutators by the allocation slow path, ever.
    allocated: AtomicU64,
    /// Bytes scanned by markers and assists in the running cycle.
    scanned: AtomicUsize,
    budget: CycleBudget,
    state: Mutex<PaceState>,
    assists: AtomicU64,
    assist_ns: AtomicU64,
    assist_max_ns: AtomicU64,
    assist_cpu_max_ns: AtomicU64,
    assist_bytes: AtomicU64,
    assists_deferred: AtomicU64,
    flip_waits: AtomicU64,
    flip_wait_ns: AtomicU64,
    compaction_assists: AtomicU64,
    compaction_assist_ns: AtomicU64,
    compaction_assist_pages: AtomicU64,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl Pacer {
    fn state(&self) -> std::sync::MutexGuard<'_, PaceState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The allocation slow path handed out `bytes`.
    #[inline]
    pub(crate) fn note_alloc(&self, bytes: usize) {
        self.allocated.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Markers or an assist scanned `bytes`.
    #[inline]
    pub(crate) fn note_scanned(&self, bytes: usize) {
        self.scanned.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Bytes scanned so far in this cycle.
    pub(crate) fn scanned(&self) -> usize {
        self.scanned.load(Ordering::Relaxed)
    }

    /// An assist ran for `d` (of which `cpu` on its CPU) and scanned `bytes`.
    pub(crate) fn note_assist(&self, d: Duration, cpu: Duration, bytes: usize) {
        self.assists.fetch_add(1, Ordering::Relaxed);
        self.assist_ns.fetch_add(ns(d), Ordering::Relaxed);
        self.assist_max_ns.fetch_max(ns(d), Ordering::Relaxed);
        self.assist_cpu_max_ns.fetch_max(ns(cpu), Ordering::Relaxed);
        self.assist_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// An assist was owed but deferred (the mutator's window budget was spent).
    pub(crate) fn note_assist_deferred(&self) {
        self.assists_deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// The fraction of this cycle's headroom allocated so far (0 at the initial mark, 1 when
    /// the space would be exhausted). Past [`ASSIST_URGENT`], assists ignore their budget.
    pub(crate) fn headroom_used(&self) -> f64 {
        let alloc = self
            .allocated
            .load(Ordering::Relaxed)
            .saturating_sub(self.budget.alloc_at_start.load(Ordering::Relaxed));
        alloc as f64 / self.budget.headroom.load(Ordering::Relaxed).max(1) as f64
    }

    /// A compaction assist ran for `d` and took `pages` destination pages.
    pub(crate) fn note_compaction_assist(&self, d: Duration, pages: usize) {
        self.compaction_assists.fetch_add(1, Ordering::Relaxed);
        self.compaction_assist_ns
            .fetch_add(ns(d), Ordering::Relaxed);
        self.compaction_assist_pages
            .fetch_add(pages as u64, Ordering::Relaxed);
    }

    /// A mutator waited `d` for a flip (the space was exhausted).
    pub(crate) fn note_flip_wait(&self, d: Duration) {
        self.flip_waits.fetch_add(1, Ordering::Relaxed);
        self.flip_wait_ns.fetch_add(ns(d), Ordering::Relaxed);
    }

    /// Sample the allocation rate since the last sample (taken at every cycle's start and
    /// finish, so allocation during a cycle counts too).
    fn sample(&self, s: &mut PaceState) {
        let now = Instant::now();
        let allocated = self.allocated.load(Ordering::Relaxed);
        match s.last_sample {
            Some((t, a)) => {
                let dt = now.duration_since(t).as_secs_f64();
                if dt > 1e-3 {
                    s.alloc_rate = ewma(s.alloc_rate, allocated.saturating_sub(a) as f64 / dt);
                    s.last_sample = Some((now, allocated));
                }
            }
            None => s.last_sample = Some((now, allocated)),
        }
    }

    /// Initial-mark pause: sample the allocation rate and set the cycle's assist budget.
    /// `headroom` is what mutators may allocate before the space runs out. Returns the
    /// decision this cycle started under.
    pub(crate) fn begin_cycle(&self, used: usize, headroom: usize) -> Decision {
        let allocated = self.allocated.load(Ordering::Relaxed);
        let mut s = self.state();
        self.sample(&mut s);
        // Expected mark work: what the last cycle found live, or half of what is in use before
        // anything was measured.
        let goal = if s.live > 0 { s.live } else { used / 2 };
        self.scanned.store(0, Ordering::Relaxed);
        self.budget
            .alloc_at_start
            .store(allocated, Ordering::Relaxed);
        self.budget
            .headroom
            .store(headroom.max(1), Ordering::Relaxed);
        self.budget.mark_goal.store(goal.max(1), Ordering::Relaxed);
        s.decision
    }

    /// Bytes a mutator should have scanned so far (all markers and assists together) for
    /// marking to keep pace with allocation, or `None` if marking is ahead. Behind means: the
    /// fraction of the headroom allocated exceeds the fraction of the mark goal scanned.
    pub(crate) fn assist_target(&self) -> Option<usize> {
        let alloc = self
            .allocated
            .load(Ordering::Relaxed)
            .saturating_sub(self.budget.alloc_at_start.load(Ordering::Relaxed));
        let headroom = self.budget.headroom.load(Ordering::Relaxed) as f64;
        let goal = self.budget.mark_goal.load(Ordering::Relaxed) as f64;
        let want = ((alloc as f64 / headroom).min(1.0) * goal) as usize;
        (want > self.scanned() + ASSIST_MIN_DEBT).then_some(want)
    }

    /// The concurrent mark ended: `traced` seconds of tracing scanned this cycle's bytes;
    /// `to_flip` is the whole time from the initial mark to the flip.
    pub(crate) fn end_mark(&self, traced: Duration, to_flip: Duration) {
        let bytes = self.scanned() as f64;
        let mut s = self.state();
        let t = traced.as_secs_f64();
        if t > 1e-5 && bytes > 0.0 {
            s.mark_rate = ewma(s.mark_rate, bytes / t);
        }
        s.overhead_secs = ewma(s.overhead_secs, (to_flip.as_secs_f64() - t).max(0.0));
    }

    /// A concurrent cycle finished: record its live size and compaction speed and decide the
    /// next trigger. Returns the decision.
    pub(crate) fn finish_cycle(
        &self,
        used: usize,
        live: usize,
        capacity: usize,
        goal: usize,
        compacted: (usize, Duration),
    ) -> Decision {
        let mut s = self.state();
        self.sample(&mut s);
        s.live = live;
        let secs = compacted.1.as_secs_f64();
        if secs > 1e-5 && compacted.0 > 0 {
            s.compact_rate = ewma(s.compact_rate, compacted.0 as f64 / secs);
        }
        let d = decide(&PaceInputs {
            capacity,
            used,
            goal,
            live,
            alloc_rate: s.alloc_rate,
            mark_rate: s.mark_rate,
            overhead_secs: s.overhead_secs,
        });
        s.decision = d;
        d
    }

    /// The figures for a cycle's record, taking (and resetting) the assist and flip-wait
    /// counters. `started` is the decision the cycle started under; `to_flip` its actual time
    /// from the initial mark to the flip.
    pub(crate) fn take_stats(&self, started: Decision, to_flip: Duration) -> PaceStats {
        let s = self.state();
        let d = |a: &AtomicU64| Duration::from_nanos(a.swap(0, Ordering::Relaxed));
        PaceStats {
            trigger_bytes: started.trigger,
            predicted_to_flip: started.predicted,
            actual_to_flip: to_flip,
            alloc_rate: s.alloc_rate,
            mark_rate: s.mark_rate,
            compact_rate: s.compact_rate,
            next_trigger_bytes: s.decision.trigger,
            assists: self.assists.swap(0, Ordering::Relaxed),
            assist_time: d(&self.assist_ns),
            assist_max: d(&self.assist_max_ns),
            assist_cpu_max: d(&self.assist_cpu_max_ns),
            assist_bytes: self.assist_bytes.swap(0, Ordering::Relaxed),
            assists_deferred: self.assists_deferred.swap(0, Ordering::Relaxed),
            flip_waits: self.flip_waits.swap(0, Ordering::Relaxed),
            flip_wait_time: d(&self.flip_wait_ns),
            compaction_assists: self.compaction_assists.swap(0, Ordering::Relaxed),
            compaction_assist_time: d(&self.compaction_assist_ns),
            compaction_assist_pages: self.compaction_assist_pages.swap(0, Ordering::Relaxed),
            markers: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn inputs() -> PaceInputs {
        PaceInputs {
            capacity: 256 * MIB,
            used: 64 * MIB,
            goal: 128 * MIB,
            live: 64 * MIB,
            alloc_rate: 0.0,
            mark_rate: 0.0,
            overhead_secs: 0.0,
        }
    }

    #[test]
    fn nothing_measured_falls_back_to_the_occupancy_goal() {
        let d = decide(&inputs());
        assert_eq!(d.trigger, 128 * MIB);
        assert_eq!(d.predicted, Duration::ZERO);
        // A goal beyond the capacity is clipped to it.
        let d = decide(&PaceInputs {
            goal: 1 << 40,
            ..inputs()
        });
        assert_eq!(d.trigger, 256 * MIB);
    }

    #[test]
    fn a_slow_allocator_gets_the_goal() {
        // 64 MiB at 640 MiB/s: 0.1 s; 10 MiB/s allocates 1.25 MiB in it (with the margin).
        let d = decide(&PaceInputs {
            alloc_rate: 10.0 * MIB as f64,
            mark_rate: 640.0 * MIB as f64,
            ..inputs()
        });
        assert_eq!(d.trigger, 128 * MIB);
        assert_eq!(d.predicted, Duration::from_millis(100));
        assert_eq!(d.need, (1.25 * MIB as f64) as usize);
    }

    #[test]
    fn a_fast_allocator_starts_the_cycle_early() {
        // 0.1 s of marking + 0.02 s overhead at 1000 MiB/s: 1.25 x 120 MiB = 150 MiB needed,
        // so the cycle must start by 256 - 150 = 106 MiB, before the 128 MiB goal.
        let d = decide(&PaceInputs {
            alloc_rate: 1000.0 * MIB as f64,
            mark_rate: 640.0 * MIB as f64,
            overhead_secs: 0.02,
            ..inputs()
        });
        let close = |a: usize, b: usize| a.abs_diff(b) < 1024;
        assert!(close(d.need, 150 * MIB), "{d:?}");
        assert!(close(d.trigger, 106 * MIB), "{d:?}");
        assert!(d.predicted.abs_diff(Duration::from_millis(120)) < Duration::from_micros(1));
    }

    #[test]
    fn the_trigger_never_lies_below_what_is_in_use() {
        // Needs more than the whole space: start at once (assists make up the rest).
        let d = decide(&PaceInputs {
            alloc_rate: 1e12,
            mark_rate: 1.0 * MIB as f64,
            ..inputs()
        });
        assert_eq!(d.trigger, 64 * MIB);
        assert_eq!(d.need, 256 * MIB);
    }

    #[test]
    fn rates_are_smoothed_and_the_budget_asks_for_assists_when_behind() {
        let p = Pacer::default();
        assert_eq!(ewma(0.0, 10.0), 10.0);
        assert_eq!(ewma(10.0, 20.0), 15.0);
        // First cycle: mark goal = half of what is in use (8 MiB), headroom 16 MiB.
        p.begin_cycle(16 * MIB, 16 * MIB);
        assert_eq!(p.assist_target(), None);
        // A quarter of the headroom allocated, nothing scanned: 2 MiB owed.
        p.note_alloc(4 * MIB);
        assert_eq!(p.assist_target(), Some(2 * MIB));
        // Less than the minimum debt behind: no assist.
        p.note_scanned(2 * MIB - ASSIST_MIN_DEBT);
        assert_eq!(p.assist_target(), None);
        p.note_scanned(ASSIST_MIN_DEBT);
        assert_eq!(p.assist_target(), None);
        // Allocation beyond the headroom asks for the whole goal, no more.
        p.note_alloc(64 * MIB);
        assert_eq!(p.assist_target(), Some(8 * MIB));
        p.note_assist(Duration::from_micros(300), Duration::from_micros(200), 1000);
        p.note_assist(Duration::from_micros(100), Duration::from_micros(90), 1000);
        p.note_flip_wait(Duration::from_millis(2));
        p.end_mark(Duration::from_millis(8), Duration::from_millis(10));
        let d = p.finish_cycle(
            10 * MIB,
            8 * MIB,
            64 * MIB,
            16 * MIB,
            (8 * MIB, Duration::ZERO),
        );
        assert!(d.trigger >= 10 * MIB && d.trigger <= 16 * MIB, "{d:?}");
        let s = p.take_stats(Decision::default(), Duration::from_millis(10));
        assert_eq!(s.assists, 2);
        assert_eq!(s.assist_max, Duration::from_micros(300));
        assert_eq!(s.assist_cpu_max, Duration::from_micros(200));
        assert_eq!(s.assist_time, Duration::from_micros(400));
        assert_eq!(s.flip_waits, 1);
        assert_eq!(s.next_trigger_bytes, d.trigger);
        // 2 MiB scanned in 8 ms.
        assert!(
            (s.mark_rate - 250.0 * MIB as f64).abs() < 1.0,
            "{}",
            s.mark_rate
        );
        // Taken: the counters restart from zero.
        assert_eq!(p.take_stats(Decision::default(), Duration::ZERO).assists, 0);
    }
}
