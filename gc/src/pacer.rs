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
//! **Assists** (marking running): marking must be done by the cycle's *deadline*, the point
//! where mutators have allocated `(1 - tail)` of the headroom: the tail is kept for what
//! follows the mark (handshake, planning, remark, flip), from the measured overhead and
//! allocation rate ([`tail_fraction`]; [`TAIL_PRIOR`] before anything was measured, i.e. in the
//! first cycle). A mutator refilling its allocation buffer is *behind* when the fraction of
//! the deadline allocated so far exceeds the fraction of the expected mark work scanned so far
//! ([`plan_assist`]); it then scans gray objects until the two fractions meet, in slices of at
//! most [`ASSIST_SLICE_BYTES`] (see [`crate::assist::assist`]), within a budget: at
//! most [`ASSIST_SHARE`] of every [`ASSIST_WINDOW`] per mutator, unless the assist is
//! *urgent*: [`ASSIST_URGENT`] of the deadline is allocated, or marking is behind by more than
//! [`DEBT_URGENT`] of its expected work (a cycle that started late or whose markers get too
//! little CPU: the budget is lifted at once, not at the end). The expected work is a guess
//! (the last cycle's live bytes; half of what is in use in the first cycle): once scanning
//! comes within [`GOAL_SLACK`] of it while marking still runs, at least that much more is
//! assumed left, so assists never stop because the guess was low. Waiting for the flip is the
//! last resort, when the space is exhausted and no marking work (or, after the flip, no
//! compaction work: compaction assists) is left to take; it is counted.
//!
//! **Compaction assists** (after the flip, compaction running): the next cycle cannot start
//! before this one's compaction ends, so the mutators must not spend, while it runs, the
//! headroom the next cycle's marking needs. Left unpaced, mutators that allocate faster than
//! the compaction fills pages spent all of it (churn at 1 GiB live: every cycle started with
//! the space full, and every mutator waited for the whole of its marking, 3-4 s). At the flip
//! (in its pause) the pacer keeps a reserve of the free space for the next cycle
//! ([`MARK_RESERVE`] of the bytes the compaction keeps, within bounds: [`compaction_allowance`];
//! generational, with a full cycle next, of those and the old generation's live bytes)
//! and gives the rest to the compaction as its *allowance*; a mutator refilling its buffer is
//! *behind* when the fraction of the allowance (less [`COMPACT_TAIL`]) allocated since the flip
//! exceeds the fraction of the destination pages claimed, past a slack ([`COMPACT_SLACK`]: a
//! compaction that ends early is never assisted; [`compaction_behind`]); it then fills
//! pages itself, one [`ASSIST_SLICE`] at a time, at most [`COMPACT_ASSIST_SLICES`] per refill,
//! until it is not.
//! A compaction that keeps up (most workloads) is never assisted. The reserve is small on
//! purpose: what mutators allocate while the next cycle marks is allocated black and copied by
//! that cycle, so a cycle that starts with little headroom does less work, its marking paced
//! by the mark assists above.
//!
//! Invariants:
//! - `allocated`, `scanned` and the assist / flip-wait counters are monotonic or reset only at a
//!   cycle's initial-mark pause (counters: taken when the cycle is recorded), so a reading is
//!   never torn across cycles in a way that could make an assist unbounded: every assist is
//!   bounded by [`ASSIST_SLICE`] whatever the figures say;
//! - the estimates behind `state` are only written by the thread running the cycle (initial
//!   mark, flip, finish), behind the mutex;
//! - the pacer never makes a mutator wait: it only sets the trigger and asks for assists
//!   (idle mode: a refill that changes the behind latch while another does waits for that
//!   one's few system calls);
//! - idle mode ([`crate::HeapConfig::gc_thread_idle`]): the behind latch is set by a refill
//!   that finds the markers alone behind the marking schedule ([`Pacer::markers_behind`]) or
//!   the compaction workers alone behind the allocation
//!   ([`Pacer::compaction_workers_behind`]), or, in or between cycles, its new buffer not
//!   yet present (the prefill thread behind the refills, `crate::prefiller::poke`), kept
//!   [`BEHIND_HOLD`] after the last such refill; cleared at the compaction's end, when the
//!   pacer is dropped, and past the hold by the next refill or by the prefill thread once
//!   it has made its target present (it looks at least every 50 ms while it runs, so a
//!   latch set between cycles does not stay set after the mutators stop allocating); while
//!   it is set the heap counts once in the GC threads' registry, which keeps every heap's
//!   registered threads out of `SCHED_IDLE` ([`crate::background`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::stats::PaceStats;

/// Weight of the newest sample in the smoothed rates.
pub(crate) const SMOOTHING: f64 = 0.5;
/// Safety margin on the bytes a cycle is predicted to need.
pub(crate) const MARGIN: f64 = 0.25;
/// The longest single assist in wall time: a mark assist ends after this long (checked every
/// [`ASSIST_CHECK`] objects or [`ASSIST_CHECK_BYTES`] scanned, and no step scans more than
/// [`crate::marking::SCAN_CHUNK_WORDS`]) if it has not scanned [`ASSIST_SLICE_BYTES`] by
/// then, i.e. only when the mutator lost its CPU inside it (its budget is charged its work, the
/// bytes it scanned at [`ASSIST_SCAN_RATE`], not this wall time: [`crate::assist`]); a
/// compaction assist fills pages for this long.
pub(crate) const ASSIST_SLICE: Duration = Duration::from_micros(500);
/// The most one mark assist scans: a slice's work, about 0.25-0.35 ms of CPU at the 350-510
/// MB/s an assist scans (per-assist traces, 2026-12-05 s10). A slice is bounded by work, not
/// by the thread's CPU clock: reading `CLOCK_THREAD_CPUTIME_ID` updates the thread's runtime
/// in the scheduler, which then preempts it at once if its time slice is over (instead of at
/// the next tick, wherever it runs), so every read made inside an assist drew the mutator's
/// preemptions into its waits.
pub(crate) const ASSIST_SLICE_BYTES: usize = 128 << 10;
/// The scanning speed an assist's budget reckons with (bytes per second of CPU): about what
/// assists scanned per second of their CPU time in the per-assist traces (350-510 MB/s), so
/// [`ASSIST_SHARE`] is still roughly a share of CPU time.
pub(crate) const ASSIST_SCAN_RATE: f64 = 400e6;
/// Objects an assist scans between two looks at the clock...
pub(crate) const ASSIST_CHECK: usize = 64;
/// ...or bytes of objects, whichever comes first.
pub(crate) const ASSIST_CHECK_BYTES: usize = 16 << 10;
/// Assist budget: a mutator's mark assists do at most this share of each [`ASSIST_WINDOW`] of
/// wall time in work, reckoned as CPU time at [`ASSIST_SCAN_RATE`] (Go gives dedicated markers
/// 25 % and lets assists make up the rest; here the rest is bounded too, so on a CPU of its own
/// a mutator's MMU at [`ASSIST_WINDOW`] and above stays near `1 - ASSIST_SHARE` through
/// assists alone; sharing a CPU, it also waits while preempted inside them), until the assist
/// is urgent ([`plan_assist`]).
pub(crate) const ASSIST_SHARE: f64 = 0.25;
/// The window of the assist budget.
pub(crate) const ASSIST_WINDOW: Duration = Duration::from_millis(10);
/// Past this fraction of the deadline allocated, assists ignore their budget: finishing the
/// mark before the space runs out (a flip wait, a whole marking phase long) matters more.
pub(crate) const ASSIST_URGENT: f64 = 0.75;
/// Marking behind by more than this fraction of its expected work: assists ignore their
/// budget (re-planning while marking: the rates the trigger was set from were wrong).
pub(crate) const DEBT_URGENT: f64 = 0.125;
/// Once scanning comes within this fraction of the expected mark work while marking still
/// runs, at least this fraction more is assumed left.
pub(crate) const GOAL_SLACK: f64 = 0.0625;
/// The tail of the headroom kept for what follows the mark, before anything is measured...
pub(crate) const TAIL_PRIOR: f64 = 0.2;
/// ...and its bounds once it is.
pub(crate) const TAIL_MIN: f64 = 0.1;
/// (See [`TAIL_MIN`].)
pub(crate) const TAIL_MAX: f64 = 0.5;
/// The headroom kept at a flip for the next cycle's marking, per byte the compaction keeps
/// (the next cycle's mark work, about): within [`RESERVE_MIN`]..=[`RESERVE_MAX`] of the space
/// free at the flip; the rest is the compaction's allowance (see the module documentation).
pub(crate) const MARK_RESERVE: f64 = 0.25;
/// The least share of the free space kept for the next cycle's marking...
pub(crate) const RESERVE_MIN: f64 = 0.0625;
/// ...and the most.
pub(crate) const RESERVE_MAX: f64 = 0.5;
/// A compaction behind the mutators' allocation by fewer destination pages than this is not
/// assisted.
pub(crate) const COMPACT_MIN_DEBT_PAGES: usize = 16;
/// The share of the compaction's allowance kept for its tail: every destination page is
/// claimed by the time the mutators have allocated the rest (the last batches, the final
/// release of old pages and the wait for pages in flight follow, with nothing left to assist).
pub(crate) const COMPACT_TAIL: f64 = 0.2;
/// The share of the compaction's allowance (less its tail) the mutators spend before any
/// compaction assist: a compaction that ends within it (most do) is never assisted; past it,
/// the pages claimed must catch up with the rest of the allowance in proportion (measured,
/// six alternated runs each: at 0.5 tree-replace at 64 MiB, one cycle, waited 35-159 ms in
/// assists, wait MMU 0.25-0.63; at 0.75 7-37 ms, 0.49-0.61, as before the pacing; churn at
/// 1 GiB had no flip wait either way, BENCHMARKS.md s14).
pub(crate) const COMPACT_SLACK: f64 = 0.75;
/// The most compaction-assist slices ([`ASSIST_SLICE`] each) one buffer refill takes.
pub(crate) const COMPACT_ASSIST_SLICES: usize = 4;
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

/// The fraction of a cycle's `headroom` kept for what follows the mark: what mutators
/// allocate at `alloc_rate` during `overhead_secs` (with the margin), within
/// [`TAIL_MIN`]..=[`TAIL_MAX`]; [`TAIL_PRIOR`] when either figure is unknown (zero).
pub(crate) fn tail_fraction(overhead_secs: f64, alloc_rate: f64, headroom: usize) -> f64 {
    if overhead_secs <= 0.0 || alloc_rate <= 0.0 {
        return TAIL_PRIOR;
    }
    let need = alloc_rate * overhead_secs * (1.0 + MARGIN);
    (need / headroom.max(1) as f64).clamp(TAIL_MIN, TAIL_MAX)
}

/// What an allocating mutator owes (see [`plan_assist`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AssistPlan {
    /// Bytes of marking to scan now.
    pub owed: usize,
    /// Whether the assist ignores the mutator's budget.
    pub urgent: bool,
}

/// The assist schedule (pure): with `alloc` bytes allocated since the initial mark, marking
/// done by `deadline` bytes, `goal` bytes of mark work expected and `scanned` scanned so far,
/// what a mutator owes, if at least [`ASSIST_MIN_DEBT`]. See the module documentation.
pub(crate) fn plan_assist(
    alloc: usize,
    deadline: usize,
    goal: usize,
    scanned: usize,
) -> Option<AssistPlan> {
    let frac = (alloc as f64 / deadline.max(1) as f64).min(1.0);
    let goal = goal.max(scanned + (goal as f64 * GOAL_SLACK) as usize);
    let want = (frac * goal as f64) as usize;
    if want <= scanned + ASSIST_MIN_DEBT {
        return None;
    }
    let owed = want - scanned;
    Some(AssistPlan {
        owed,
        urgent: frac >= ASSIST_URGENT || owed as f64 >= goal as f64 * DEBT_URGENT,
    })
}

/// What mutators may allocate while a compaction that keeps `kept` bytes runs, `free` bytes
/// being left in the space at its start (pure): `free` less the next marking's reserve,
/// [`MARK_RESERVE`] x `kept` within [`RESERVE_MIN`]..=[`RESERVE_MAX`] x `free`; at least 1.
pub(crate) fn compaction_allowance(kept: usize, free: usize) -> usize {
    let f = free as f64;
    let reserve = (kept as f64 * MARK_RESERVE).clamp(f * RESERVE_MIN, f * RESERVE_MAX);
    ((f - reserve) as usize).max(1)
}

/// Whether the compaction is behind the mutators (pure): `alloc` bytes allocated since the
/// flip of an `allowance` (0: not paced), `done` of `total` destination pages claimed. Behind
/// when the claimed fraction trails the allocated fraction by at least
/// [`COMPACT_MIN_DEBT_PAGES`] (see the module documentation).
pub(crate) fn compaction_behind(alloc: usize, allowance: usize, done: usize, total: usize) -> bool {
    if allowance == 0 || done >= total {
        return false;
    }
    let frac = alloc as f64 / (allowance as f64 * (1.0 - COMPACT_TAIL));
    let frac = ((frac - COMPACT_SLACK) / (1.0 - COMPACT_SLACK)).clamp(0.0, 1.0);
    let want = (frac * total as f64) as usize;
    want >= done + COMPACT_MIN_DEBT_PAGES
}

/// Exponentially weighted moving average (weight [`SMOOTHING`] for the newest sample); an
/// `old` of zero or less means no sample yet.
pub(crate) fn ewma(old: f64, new: f64) -> f64 {
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
    /// Bytes mutators may allocate, from the initial mark, before marking should be done
    /// (the headroom less the tail kept for what follows the mark).
    deadline: AtomicUsize,
    /// Bytes the cycle is expected to scan.
    mark_goal: AtomicUsize,
    /// `allocated` at the cycle's flip.
    alloc_at_flip: AtomicU64,
    /// Bytes mutators may allocate from the flip while the compaction runs (0: no compaction
    /// running, or not paced).
    compact_allowance: AtomicUsize,
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
    /// Of `scanned`, bytes scanned by assists.
    assisted: AtomicUsize,
    /// Objects mutators marked black in the running cycle.
    black: AtomicUsize,
    /// The running cycle's bitmaps are cleared (false from each initial mark until then).
    black_open: AtomicBool,
    budget: CycleBudget,
    state: Mutex<PaceState>,
    assists: AtomicU64,
    assist_ns: AtomicU64,
    assist_max_ns: AtomicU64,
    assists_urgent: AtomicU64,
    assist_bytes: AtomicU64,
    assists_deferred: AtomicU64,
    flip_waits: AtomicU64,
    flip_wait_ns: AtomicU64,
    compaction_assists: AtomicU64,
    compaction_assist_ns: AtomicU64,
    compaction_assist_pages: AtomicU64,
    /// Idle mode ([`crate::HeapConfig::gc_thread_idle`]): whether this heap has told the GC
    /// threads' registry that its collector is behind ([`Pacer::note_schedule`]); written
    /// only under `latch_lock`.
    schedule_behind: AtomicBool,
    /// Nanoseconds from [`hold_epoch`] to the last refill that found the collector behind.
    behind_seen_ns: AtomicU64,
    /// Times this heap's collector fell behind (the latch set).
    behind_switches: AtomicU64,
    /// Refills that found the idle-mode GC threads starved ([`PaceStats::starved_refills`]).
    pub(crate) starved_refills: AtomicU64,
    /// Held while the latch changes (a few times a cycle, and between cycles).
    latch_lock: Mutex<()>,
}

/// How long the behind latch holds after the collector was last found behind, so that a
/// schedule that hovers at its threshold does not switch the GC threads' policy at every
/// refill (each switch is a system call per GC thread).
pub(crate) const BEHIND_HOLD: Duration = Duration::from_millis(2);

/// The clock origin of [`Pacer::note_schedule`]'s hold.
fn hold_epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Whether the behind latch is to be set or kept (pure): the collector is `behind` now, or
/// the latch is set (`latched`) and it was last found behind `since` ago, within
/// [`BEHIND_HOLD`].
pub(crate) fn latch_behind(behind: bool, latched: bool, since: Duration) -> bool {
    behind || (latched && since < BEHIND_HOLD)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

impl Drop for Pacer {
    fn drop(&mut self) {
        // A heap dropped while behind leaves the process-wide count.
        self.set_latch(false);
    }
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

    /// Bytes handed out by the allocation slow path, ever.
    #[inline]
    pub(crate) fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// The marker cleared this cycle's bitmaps: from now on mutators may mark their retired
    /// buffers themselves (before, their marks would be cleared: they queue them).
    pub(crate) fn open_black(&self) {
        self.black_open.store(true, Ordering::Release);
    }

    /// Whether [`Pacer::open_black`] was called in this cycle.
    pub(crate) fn black_open(&self) -> bool {
        self.black_open.load(Ordering::Acquire)
    }

    /// Mutators marked `objects` of their own retired buffers black (see
    /// [`crate::assist::mark_own_buffer`]).
    pub(crate) fn note_black(&self, objects: usize) {
        self.black.fetch_add(objects, Ordering::Relaxed);
    }

    /// Objects mutators marked black in this cycle (part of its live objects).
    pub(crate) fn black_marked(&self) -> usize {
        self.black.load(Ordering::Relaxed)
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

    /// An assist ran for `d` and scanned `bytes`.
    pub(crate) fn note_assist(&self, d: Duration, bytes: usize) {
        self.assists.fetch_add(1, Ordering::Relaxed);
        self.assist_ns.fetch_add(ns(d), Ordering::Relaxed);
        self.assist_max_ns.fetch_max(ns(d), Ordering::Relaxed);
        self.assist_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.assisted.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A paced assist that scanned something ran urgent (its budget was lifted).
    pub(crate) fn note_assist_urgent(&self) {
        self.assists_urgent.fetch_add(1, Ordering::Relaxed);
    }

    /// An assist was owed but deferred (the mutator's window budget was spent).
    pub(crate) fn note_assist_deferred(&self) {
        self.assists_deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// Bytes allocated since this cycle's initial mark.
    fn alloc_in_cycle(&self) -> usize {
        self.allocated
            .load(Ordering::Relaxed)
            .saturating_sub(self.budget.alloc_at_start.load(Ordering::Relaxed)) as usize
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
        let tail = tail_fraction(s.overhead_secs, s.alloc_rate, headroom);
        self.scanned.store(0, Ordering::Relaxed);
        self.assisted.store(0, Ordering::Relaxed);
        self.black.store(0, Ordering::Relaxed);
        self.black_open.store(false, Ordering::Release);
        self.budget
            .alloc_at_start
            .store(allocated, Ordering::Relaxed);
        self.budget
            .headroom
            .store(headroom.max(1), Ordering::Relaxed);
        self.budget.deadline.store(
            ((headroom as f64 * (1.0 - tail)) as usize).max(1),
            Ordering::Relaxed,
        );
        self.budget.mark_goal.store(goal.max(1), Ordering::Relaxed);
        s.decision
    }

    /// What an allocating mutator owes now ([`plan_assist`] on this cycle's figures), or
    /// `None` if marking keeps pace.
    pub(crate) fn assist_plan(&self) -> Option<AssistPlan> {
        plan_assist(
            self.alloc_in_cycle(),
            self.budget.deadline.load(Ordering::Relaxed),
            self.budget.mark_goal.load(Ordering::Relaxed),
            self.scanned(),
        )
    }

    /// Whether the markers alone are behind this cycle's schedule: [`plan_assist`] on what
    /// they scanned, without the assists' share. While they are, the mutators pay for the
    /// difference in assists (see [`crate::catchup`]).
    pub(crate) fn markers_behind(&self) -> bool {
        plan_assist(
            self.alloc_in_cycle(),
            self.budget.deadline.load(Ordering::Relaxed),
            self.budget.mark_goal.load(Ordering::Relaxed),
            self.scanned()
                .saturating_sub(self.assisted.load(Ordering::Relaxed)),
        )
        .is_some()
    }

    /// The compaction starts (after the flip) with `free` bytes left in the space, the next
    /// cycle expected to mark `kept` bytes (what this one keeps; generational, a full cycle
    /// next: the old generation's live bytes too): keep [`compaction_allowance`]'s reserve
    /// for the next cycle, pace the compaction against the rest.
    pub(crate) fn begin_compaction(&self, kept: usize, free: usize) {
        self.budget
            .alloc_at_flip
            .store(self.allocated.load(Ordering::Relaxed), Ordering::Relaxed);
        self.budget
            .compact_allowance
            .store(compaction_allowance(kept, free), Ordering::Relaxed);
    }

    /// The compaction ended: no compaction assist is owed any more.
    pub(crate) fn end_compaction(&self) {
        self.budget.compact_allowance.store(0, Ordering::Relaxed);
        self.set_latch(false);
    }

    /// Idle mode: a refilling mutator (or the prefill thread, which has caught up) found the
    /// collector `behind` its schedule (or the prefill thread behind the refills) or not; sets
    /// or clears this heap's behind latch (held [`BEHIND_HOLD`] after the last time it was
    /// behind), which switches the registered GC threads between `SCHED_IDLE` and their
    /// normal policy on its transitions only ([`crate::background::count_behind`]).
    pub(crate) fn note_schedule(&self, behind: bool) {
        if behind || self.schedule_behind.load(Ordering::Relaxed) {
            self.note_schedule_at(behind, ns(hold_epoch().elapsed()));
        }
    }

    /// [`Pacer::note_schedule`] at `now` nanoseconds from [`hold_epoch`].
    fn note_schedule_at(&self, behind: bool, now: u64) {
        let latched = self.schedule_behind.load(Ordering::Relaxed);
        if behind {
            self.behind_seen_ns.store(now, Ordering::Relaxed);
        }
        let since =
            Duration::from_nanos(now.saturating_sub(self.behind_seen_ns.load(Ordering::Relaxed)));
        self.set_latch(latch_behind(behind, latched, since));
    }

    /// Set this heap's behind latch to `on`; tells the registry on a transition, under
    /// [`Pacer::latch_lock`], so that this heap's raises and drops of the process-wide count
    /// reach it in the order they were made (a drop overtaking its raise would wrap it).
    fn set_latch(&self, on: bool) {
        if self.schedule_behind.load(Ordering::Relaxed) == on {
            return;
        }
        let serial = self
            .latch_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let apply = self.schedule_behind.load(Ordering::Relaxed) != on && {
            self.schedule_behind.store(on, Ordering::Relaxed);
            if on {
                self.behind_switches.fetch_add(1, Ordering::Relaxed);
            }
            crate::background::count_behind(on)
        };
        drop(serial);
        if apply {
            // Outside the lock: a GC thread dropping the threads to SCHED_IDLE drops itself.
            crate::background::apply_behind();
        }
    }

    /// Whether a refilling mutator owes a compaction assist, `done` of the compaction's
    /// `total` destination pages being claimed ([`compaction_behind`]).
    pub(crate) fn compaction_owed(&self, done: usize, total: usize) -> bool {
        let alloc = self
            .allocated
            .load(Ordering::Relaxed)
            .saturating_sub(self.budget.alloc_at_flip.load(Ordering::Relaxed))
            as usize;
        compaction_behind(
            alloc,
            self.budget.compact_allowance.load(Ordering::Relaxed),
            done,
            total,
        )
    }

    /// Whether the compaction workers alone are behind the allocation: [`compaction_behind`]
    /// on the `done` pages claimed less those the mutators' compaction assists took this
    /// cycle. (The schedule counting the assists is no signal for the workers' priority: the
    /// assists bring it back on time at every refill, so starved workers would look on time.)
    pub(crate) fn compaction_workers_behind(&self, done: usize, total: usize) -> bool {
        let assisted = self.compaction_assist_pages.load(Ordering::Relaxed) as usize;
        self.compaction_owed(done.saturating_sub(assisted), total)
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

    /// A concurrent cycle finished: record the next cycle's mark work `live` (what this one
    /// left live; generational, a full cycle next: the old generation's live bytes too) and
    /// the compaction speed, and decide the next trigger. Returns the decision.
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
            next_mark_bytes: s.live,
            assists: self.assists.swap(0, Ordering::Relaxed),
            assist_time: d(&self.assist_ns),
            assist_max: d(&self.assist_max_ns),
            assists_urgent: self.assists_urgent.swap(0, Ordering::Relaxed),
            assist_bytes: self.assist_bytes.swap(0, Ordering::Relaxed),
            assists_deferred: self.assists_deferred.swap(0, Ordering::Relaxed),
            flip_waits: self.flip_waits.swap(0, Ordering::Relaxed),
            flip_wait_time: d(&self.flip_wait_ns),
            compaction_assists: self.compaction_assists.swap(0, Ordering::Relaxed),
            compaction_assist_time: d(&self.compaction_assist_ns),
            compaction_assist_pages: self.compaction_assist_pages.swap(0, Ordering::Relaxed),
            behind_switches: self.behind_switches.swap(0, Ordering::Relaxed),
            starved_refills: self.starved_refills.swap(0, Ordering::Relaxed),
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
    fn the_behind_latch_holds_for_a_while_after_the_last_time_behind() {
        assert!(latch_behind(true, false, Duration::ZERO));
        assert!(latch_behind(true, true, Duration::from_secs(1)));
        assert!(!latch_behind(false, false, Duration::ZERO), "never set");
        assert!(latch_behind(false, true, BEHIND_HOLD / 2), "held");
        assert!(!latch_behind(false, true, BEHIND_HOLD), "released");
    }

    #[test]
    fn note_schedule_switches_on_transitions_and_a_dropped_pacer_clears_its_latch() {
        let p = Pacer::default();
        p.note_schedule(false);
        assert!(!p.schedule_behind.load(Ordering::Relaxed));
        p.note_schedule(true);
        p.note_schedule(true);
        assert!(p.schedule_behind.load(Ordering::Relaxed));
        assert_eq!(
            p.behind_switches.load(Ordering::Relaxed),
            1,
            "one transition"
        );
        // A refill on schedule right after: held (the clock given, not read).
        let seen = p.behind_seen_ns.load(Ordering::Relaxed);
        p.note_schedule_at(false, seen + ns(BEHIND_HOLD) / 2);
        assert!(p.schedule_behind.load(Ordering::Relaxed));
        p.note_schedule_at(false, seen + ns(BEHIND_HOLD));
        assert!(
            !p.schedule_behind.load(Ordering::Relaxed),
            "released after the hold"
        );
        p.note_schedule(true);
        assert_eq!(p.behind_switches.load(Ordering::Relaxed), 2);
        // The compaction's end clears it at once.
        p.end_compaction();
        assert!(!p.schedule_behind.load(Ordering::Relaxed));
        // Dropped while behind: the process-wide count of heaps behind goes back down (no
        // heap of this test binary runs in idle mode but this test's pacers, unless the
        // environment turns idle mode on for every heap).
        if crate::config::default_gc_thread_idle() {
            return;
        }
        let before = crate::background::gc_thread_idle_stats().2;
        p.note_schedule(true);
        assert_eq!(crate::background::gc_thread_idle_stats().2, before + 1);
        drop(p);
        assert_eq!(crate::background::gc_thread_idle_stats().2, before);
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
    fn the_compaction_is_assisted_only_when_it_trails_the_allocation() {
        // Not paced (no allowance) or finished: never behind.
        assert!(!compaction_behind(1 << 30, 0, 0, 1000));
        assert!(!compaction_behind(1 << 30, 100, 1000, 1000));
        // The allowance less its tail: 80 of 100; the first three quarters of it (60) are
        // slack.
        let head = (100.0 * (1.0 - COMPACT_TAIL)) as usize;
        assert_eq!(head, 80);
        assert_eq!((head as f64 * COMPACT_SLACK) as usize, 60);
        assert!(!compaction_behind(60, 100, 0, 1000), "within the slack");
        // 70 of the 80 spent, half way from the slack to the end: half of the pages claimed.
        assert!(!compaction_behind(70, 100, 500, 1000));
        // Trailing by less than the minimal debt: not yet.
        assert!(!compaction_behind(
            70,
            100,
            500 - COMPACT_MIN_DEBT_PAGES + 1,
            1000
        ));
        assert!(compaction_behind(
            70,
            100,
            500 - COMPACT_MIN_DEBT_PAGES,
            1000
        ));
        // The allowance less its tail spent: behind until every page is claimed.
        assert!(compaction_behind(
            head,
            100,
            1000 - COMPACT_MIN_DEBT_PAGES,
            1000
        ));
        assert!(!compaction_behind(head, 100, 1000, 1000));
        assert!(!compaction_behind(500, 100, 1000, 1000));
    }

    #[test]
    fn the_next_marking_keeps_a_reserve_within_bounds() {
        // A quarter of the bytes kept...
        assert_eq!(compaction_allowance(1024 * MIB, 2048 * MIB), 1792 * MIB);
        // ...at least a sixteenth of the free space...
        assert_eq!(compaction_allowance(MIB, 1024 * MIB), 960 * MIB);
        // ...at most half of it.
        assert_eq!(compaction_allowance(4096 * MIB, 1024 * MIB), 512 * MIB);
        assert_eq!(compaction_allowance(0, 0), 1);
    }

    #[test]
    fn a_compaction_owes_assists_only_between_its_start_and_its_end() {
        let p = Pacer::default();
        p.note_alloc(1 << 20);
        assert!(!p.compaction_owed(0, 1000), "no compaction running");
        p.begin_compaction(16 * MIB, 64 * MIB);
        let allowance = compaction_allowance(16 * MIB, 64 * MIB);
        assert_eq!(allowance, 60 * MIB, "a sixteenth of the free space kept");
        assert!(
            !p.compaction_owed(0, 1000),
            "nothing allocated since the flip"
        );
        p.note_alloc(allowance / 2);
        assert!(
            !p.compaction_owed(0, 1000),
            "half the allowance: within the slack"
        );
        // 0.7 of the allowance is 7/8 of it less its tail: half way past the slack.
        p.note_alloc(allowance / 5);
        assert!(
            p.compaction_owed(400, 1000),
            "0.7 of the allowance, 0.4 of the pages"
        );
        assert!(!p.compaction_owed(500, 1000));
        p.end_compaction();
        assert!(!p.compaction_owed(0, 1000), "the compaction ended");
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
        // First cycle: mark goal = half of what is in use (8 MiB), headroom 20 MiB, of which
        // the prior tail (a fifth) is kept: marking should be done by 16 MiB allocated.
        assert_eq!(TAIL_PRIOR, 0.2);
        p.begin_cycle(16 * MIB, 20 * MIB);
        assert_eq!(p.assist_plan(), None);
        let owed = |p: &Pacer| p.assist_plan().map(|a| a.owed);
        let near = |a: Option<usize>, b: usize| a.is_some_and(|a| a.abs_diff(b) <= 8);
        // A quarter of the deadline allocated, nothing scanned: 2 MiB owed, urgent (behind
        // by a quarter of the work).
        p.note_alloc(4 * MIB);
        assert!(near(owed(&p), 2 * MIB), "{:?}", p.assist_plan());
        assert!(p.assist_plan().unwrap().urgent);
        // Less than the minimum debt behind: no assist.
        p.note_scanned(2 * MIB - ASSIST_MIN_DEBT + 16);
        assert_eq!(p.assist_plan(), None);
        p.note_scanned(ASSIST_MIN_DEBT - 16);
        assert_eq!(p.scanned(), 2 * MIB);
        assert_eq!(p.assist_plan(), None);
        // Allocation beyond the deadline asks for the whole goal...
        p.note_alloc(64 * MIB);
        assert!(near(owed(&p), 6 * MIB), "{:?}", p.assist_plan());
        // ...and once it is scanned with marking still running, a sixteenth more.
        p.note_scanned(6 * MIB);
        assert!(near(owed(&p), MIB / 2), "{:?}", p.assist_plan());
        p.note_assist(Duration::from_micros(300), 1000);
        p.note_assist(Duration::from_micros(100), 1000);
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
        assert_eq!(s.assist_time, Duration::from_micros(400));
        assert_eq!(s.flip_waits, 1);
        assert_eq!(s.next_trigger_bytes, d.trigger);
        assert_eq!(s.next_mark_bytes, 8 * MIB, "paced for the live bytes given");
        // 8 MiB scanned in 8 ms.
        assert!(
            (s.mark_rate - 1000.0 * MIB as f64).abs() < 1.0,
            "{}",
            s.mark_rate
        );
        // Taken: the counters restart from zero.
        assert_eq!(p.take_stats(Decision::default(), Duration::ZERO).assists, 0);
    }

    #[test]
    fn the_tail_is_what_mutators_allocate_after_the_mark_within_bounds() {
        // Nothing measured (the first cycle): the prior.
        assert_eq!(tail_fraction(0.0, 1e9, 100 * MIB), TAIL_PRIOR);
        assert_eq!(tail_fraction(0.01, 0.0, 100 * MIB), TAIL_PRIOR);
        // 20 ms at 800 MiB/s with the margin: 20 MiB of a 100 MiB headroom.
        let t = tail_fraction(0.02, 800.0 * MIB as f64, 100 * MIB);
        assert!((t - 0.2).abs() < 1e-9, "{t}");
        // A negligible overhead keeps the minimum, a huge one is capped.
        assert_eq!(tail_fraction(1e-6, 1.0 * MIB as f64, 100 * MIB), TAIL_MIN);
        assert_eq!(tail_fraction(10.0, 1e12, 100 * MIB), TAIL_MAX);
    }

    #[test]
    fn the_assist_plan_follows_the_deadline_and_lifts_the_budget_when_far_behind() {
        let (deadline, goal) = (16 * MIB, 8 * MIB);
        let plan = |alloc, scanned| plan_assist(alloc, deadline, goal, scanned);
        // On schedule (a quarter allocated, a quarter scanned), or ahead: nothing owed.
        assert_eq!(plan(4 * MIB, 2 * MIB), None);
        assert_eq!(plan(4 * MIB, 9 * MIB), None);
        assert_eq!(plan(0, 0), None);
        // Within the minimum debt: nothing; just past it: the difference, not urgent.
        assert_eq!(plan(4 * MIB, 2 * MIB - ASSIST_MIN_DEBT), None);
        assert_eq!(
            plan(4 * MIB, 2 * MIB - 2 * ASSIST_MIN_DEBT),
            Some(AssistPlan {
                owed: 2 * ASSIST_MIN_DEBT,
                urgent: false
            })
        );
        // Behind by an eighth of the work or more: urgent at once, early in the cycle.
        assert_eq!(
            plan(4 * MIB, MIB),
            Some(AssistPlan {
                owed: MIB,
                urgent: true
            })
        );
        assert!(!plan(4 * MIB, MIB + 64 * 1024).unwrap().urgent);
        // Three quarters of the deadline allocated: urgent however small the debt.
        assert_eq!(
            plan(12 * MIB, 6 * MIB - 64 * 1024),
            Some(AssistPlan {
                owed: 64 * 1024,
                urgent: true
            })
        );
        // Past the deadline the whole goal is owed; a goal that was too low grows by a
        // sixteenth past what was scanned, so assists go on while marking runs.
        assert_eq!(plan(20 * MIB, 0).map(|p| p.owed), Some(goal));
        assert_eq!(
            plan(20 * MIB, 10 * MIB),
            Some(AssistPlan {
                owed: MIB / 2,
                urgent: true
            })
        );
        // A zero deadline (no headroom) is the deadline passed.
        assert_eq!(plan_assist(1, 0, goal, 0).map(|p| p.owed), Some(goal));
    }
}
