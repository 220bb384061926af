//! Mutator waits by cause: every interval in which a mutator thread waited for the collector
//! instead of running its own code, recorded by the heap itself (issue 14).
//!
//! # What is recorded, and where
//!
//! | cause | recorded at | interval |
//! |---|---|---|
//! | [`WaitCause::TimeToSafepoint`] | a parked mutator (`Safepoint::park`, a second collector) | arrival at the poll .. the last mutator stopped |
//! | [`WaitCause::Pause`] | same, and a native section returning into a pause | the last mutator stopped .. the world released |
//! | [`WaitCause::Flip`] | `Mutator::wait_for_flip` (space exhausted, a cycle running) | the whole wait, minus nested waits |
//! | [`WaitCause::CycleEnd`] | `HeapInner::wait_idle_as` (a collection requested while a cycle runs, `wait_for_cycle`) | the whole wait, minus nested waits |
//! | [`WaitCause::AllocStall`] | the allocation slow path (TLAB refill, triggering or running a collection) | the slow path, minus nested waits |
//! | [`WaitCause::FaultStall`] | `fault::resolve_fault`, SIGBUS delivery (in the faulting thread) | the resolution |
//! | [`WaitCause::Assist`] | `assist::assist` (marking) and `assist::compaction_assist` (filling pages), in the allocation slow path | the assist (only one that did work) |
//!
//! Faults resolved by the *handler thread* (thread delivery) are not attributed here: the
//! faulting thread sleeps in the kernel and the handler does not know which mutator it is;
//! they are in `Heap::fault_stats` only (which counts both deliveries).
//!
//! # Ownership and invariants
//!
//! - Each attached [`crate::Mutator`] owns one [`WaitLog`] (through an [`Attachment`]); the
//!   heap's [`WaitRegistry`] holds it too, so it can be read from any thread and outlives the
//!   mutator (the last [`RETIRED_KEEP`] detached logs are kept whole; older ones are folded
//!   into the registry's totals and their intervals forgotten).
//! - The log of the mutator most recently attached on a thread is that thread's *current*
//!   log: a thread-local raw pointer that owns one strong count (taken at attach, given back
//!   when that mutator detaches). Recording functions take no mutator argument: they write to
//!   the current log, and do nothing on a thread without one (a GC worker, the fault handler
//!   thread). A thread with mutators of two heaps records into the newest one's log.
//! - Recording is async-signal-safe (it runs in the SIGBUS handler): a const-initialised
//!   thread-local read, clock reads, and atomic operations on memory allocated at attach. No
//!   allocation, no lock, no panic.
//! - Per-cause counters (count, total, max) are exact. Totals are *exclusive*: a span that
//!   contains other recorded waits (an allocation slow path that parks at a pause) counts only
//!   its own remainder, so the causes add up to the time waited. The ring logs *inclusive*
//!   intervals; an MMU is computed over their union, so nesting never counts twice.
//! - The ring keeps the last [`LOG_CAPACITY`] intervals of at least [`LOG_MIN`]; an older
//!   interval that was overwritten is counted in `dropped`. A slot is published by a sequence
//!   word written last (seqlock), so a reader never returns a torn interval.
//! - Shorter waits are counted (`unlogged`, count and sum) and never logged one by one: an
//!   *outermost* short wait (one recorded while no [`Span`] of the same log is open) adds its
//!   duration to the time bucket of its start ([`SHORT_BUCKET`] wide, numbered from the log's
//!   creation) in a second ring of [`SHORT_BUCKETS`] words. A short wait inside an open span
//!   is covered by that span: its interval if the span is logged, its bucket sum (inclusive)
//!   if the span is short too. So outermost short waits never overlap one another or a logged
//!   interval, and nothing is counted twice.
//! - A bucket word packs the bucket's number + 1 (its epoch) above its nanosecond sum, and is
//!   updated by compare-and-swap (the owning thread and a signal handler on it are the only
//!   writers). A word holding an older epoch is reset when its slot is reused; the sum it held
//!   (or a late wait for a bucket already overwritten) is counted in `unlogged_dropped`.
//! - The MMU counts the short waits: each bucket's sum is laid into the gaps between the
//!   logged intervals from the bucket's start on (it is known to lie in such gaps), so a
//!   short wait is placed at most one bucket earlier than it happened. At windows several
//!   buckets wide the error is at most one bucket's sum at each edge of the window; at one
//!   bucket (1 ms) a window may see its short waits shifted into or out of it.

use core::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// Why a mutator waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WaitCause {
    /// Parked at a safepoint while the world was stopped (after every mutator had stopped).
    Pause,
    /// Parked at a safepoint while other mutators were still on their way to one.
    TimeToSafepoint,
    /// The space was exhausted while a concurrent cycle ran: waited for its flip.
    Flip,
    /// Waited for the running cycle to end: a collection was requested (the occupancy
    /// trigger, exhausted space, an explicit collection) while a cycle was still running, or
    /// the mutator called `wait_for_cycle`.
    CycleEnd,
    /// The allocation slow path (refill, triggering or running a collection), minus the
    /// waits above that happened inside it.
    AllocStall,
    /// Resolving a fault on a page not yet compacted (SIGBUS delivery).
    FaultStall,
    /// Marking or compaction work done by an allocating mutator (mark assists).
    Assist,
}

impl WaitCause {
    /// Every cause, in report order.
    pub const ALL: [WaitCause; 7] = [
        WaitCause::Pause,
        WaitCause::TimeToSafepoint,
        WaitCause::Flip,
        WaitCause::CycleEnd,
        WaitCause::AllocStall,
        WaitCause::FaultStall,
        WaitCause::Assist,
    ];

    /// A short, stable name (used as a key in reports).
    pub fn name(self) -> &'static str {
        match self {
            WaitCause::Pause => "pause",
            WaitCause::TimeToSafepoint => "time-to-safepoint",
            WaitCause::Flip => "flip",
            WaitCause::CycleEnd => "cycle-end",
            WaitCause::AllocStall => "alloc-stall",
            WaitCause::FaultStall => "fault-stall",
            WaitCause::Assist => "assist",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_index(i: u8) -> Option<WaitCause> {
        WaitCause::ALL.get(i as usize).copied()
    }
}

/// Intervals each mutator's ring keeps.
pub const LOG_CAPACITY: usize = 64 * 1024;
/// Intervals shorter than this are counted but not logged.
pub const LOG_MIN: Duration = Duration::from_micros(10);
/// Detached mutators whose logs are kept whole.
pub const RETIRED_KEEP: usize = 64;
/// Width of a short-wait bucket (waits under 10 µs, too short to be logged one by one, are
/// summed per bucket).
pub const SHORT_BUCKET: Duration = Duration::from_millis(1);
/// Short-wait buckets each log keeps (131 s of 1 ms buckets, 8 bytes each, pages touched only
/// as the mutator's life reaches them).
pub const SHORT_BUCKETS: usize = 128 * 1024;

const CAUSES: usize = WaitCause::ALL.len();
const INDEX_BITS: u32 = 56;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
/// A bucket word: epoch (bucket number + 1) << SUM_BITS | nanoseconds (saturating).
const SUM_BITS: u32 = 24;
const SUM_MASK: u64 = (1 << SUM_BITS) - 1;

/// The process-wide origin of the logs' nanosecond timestamps.
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn ns_since(epoch: Instant, t: Instant) -> u64 {
    t.saturating_duration_since(epoch)
        .as_nanos()
        .min(u64::MAX as u128) as u64
}

/// One logged interval: `seq` = (index + 1) | cause << 56, written last.
#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    start: AtomicU64,
    end: AtomicU64,
}

/// Per-cause counters.
#[derive(Default)]
struct Counters {
    count: [AtomicU64; CAUSES],
    total_ns: [AtomicU64; CAUSES],
    max_ns: [AtomicU64; CAUSES],
}

/// One mutator's waits: exact counters and a ring of recent intervals.
pub(crate) struct WaitLog {
    mutator: u64,
    epoch: Instant,
    attached_ns: u64,
    /// 0 while attached.
    detached_ns: AtomicU64,
    counters: Counters,
    /// Longest single (inclusive) wait, and its cause.
    longest_ns: AtomicU64,
    longest_cause: AtomicU8,
    /// Sum of every exclusive duration recorded: lets a span subtract what happened inside it.
    recorded_ns: AtomicU64,
    unlogged: AtomicU64,
    unlogged_ns: AtomicU64,
    /// Spans of this log open now (a short wait recorded inside one is covered by it). Written
    /// only by spans, on the owning thread (never in a signal handler, which only reads it).
    open_spans: AtomicU64,
    /// Nanoseconds added to the buckets, and those lost from them (overwritten, or late).
    short_ns: AtomicU64,
    short_dropped_ns: AtomicU64,
    /// Short waits by bucket (see the module doc).
    buckets: Box<[AtomicU64]>,
    /// Intervals ever logged (the next slot is `head % LOG_CAPACITY`).
    head: AtomicU64,
    slots: Box<[Slot]>,
}

/// Types whose all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for types made of integers and atomics.
unsafe trait ZeroValid: Sized {}
// SAFETY: three `AtomicU64`s.
unsafe impl ZeroValid for Slot {}
// SAFETY: an integer atomic.
unsafe impl ZeroValid for AtomicU64 {}

/// `n` (> 0) zeroed values. Zeroed allocation keeps untouched pages out of the RSS.
fn zeroed_slice<T: ZeroValid>(n: usize) -> Box<[T]> {
    let layout = std::alloc::Layout::array::<T>(n).expect("a small array layout");
    // SAFETY: `layout` has a non-zero size (n > 0, T is not zero-sized); all-zero bytes are a
    // valid `T` (`ZeroValid`); the pointer comes from the global allocator with this exact
    // layout, which is what `Box<[T]>` frees it with.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout) as *mut T;
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(core::ptr::slice_from_raw_parts_mut(p, n))
    }
}

impl WaitLog {
    fn new(mutator: u64) -> WaitLog {
        let epoch = *EPOCH.get_or_init(Instant::now);
        WaitLog {
            mutator,
            epoch,
            attached_ns: ns_since(epoch, Instant::now()),
            detached_ns: AtomicU64::new(0),
            counters: Counters::default(),
            longest_ns: AtomicU64::new(0),
            longest_cause: AtomicU8::new(0),
            recorded_ns: AtomicU64::new(0),
            unlogged: AtomicU64::new(0),
            unlogged_ns: AtomicU64::new(0),
            open_spans: AtomicU64::new(0),
            short_ns: AtomicU64::new(0),
            short_dropped_ns: AtomicU64::new(0),
            buckets: zeroed_slice(SHORT_BUCKETS),
            head: AtomicU64::new(0),
            slots: zeroed_slice(LOG_CAPACITY),
        }
    }

    /// Add `ns` of short waits starting at `s` (ns since `EPOCH`) to their bucket.
    /// Async-signal-safe: a compare-and-swap loop on one word.
    fn add_short(&self, s: u64, ns: u64) {
        let k = s.saturating_sub(self.attached_ns) / SHORT_BUCKET.as_nanos() as u64;
        let tag = (k + 1) << SUM_BITS;
        let word = &self.buckets[(k % SHORT_BUCKETS as u64) as usize];
        let mut old = word.load(Ordering::Relaxed);
        loop {
            let (old_tag, old_ns) = (old & !SUM_MASK, old & SUM_MASK);
            if old_tag > tag {
                // The slot already holds a newer bucket: this wait's bucket is gone.
                self.short_dropped_ns.fetch_add(ns, Ordering::Relaxed);
                break;
            }
            let new = if old_tag == tag {
                tag | (old_ns + ns).min(SUM_MASK)
            } else {
                tag | ns.min(SUM_MASK)
            };
            match word.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    if old_tag != tag {
                        self.short_dropped_ns.fetch_add(old_ns, Ordering::Relaxed);
                    }
                    break;
                }
                Err(now) => old = now,
            }
        }
        self.short_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The kept buckets with a non-zero sum, oldest first, as (bucket number, ns), and the
    /// first bucket the ring still covers (0 unless it wrapped).
    fn short_buckets(&self) -> (Vec<(u64, u64)>, u64) {
        let mut v: Vec<(u64, u64)> = self
            .buckets
            .iter()
            .map(|w| w.load(Ordering::Relaxed))
            .filter(|&w| w >> SUM_BITS != 0)
            .map(|w| ((w >> SUM_BITS) - 1, w & SUM_MASK))
            .collect();
        let last = v.iter().map(|&(k, _)| k).max().unwrap_or(0);
        let first = (last + 1).saturating_sub(SHORT_BUCKETS as u64);
        // A word read while being replaced can briefly show an older bucket: leave it out.
        v.retain(|&(k, ns)| k >= first && ns > 0);
        v.sort_unstable();
        (v, first)
    }

    /// Count `exclusive_ns` against each of `parts`, and log `[start, end]` as one wait of
    /// cause `outer`. Async-signal-safe.
    fn record_parts(
        &self,
        outer: WaitCause,
        start: Instant,
        end: Instant,
        parts: &[(WaitCause, u64)],
    ) {
        let c = &self.counters;
        let mut sum = 0;
        for &(cause, ns) in parts {
            let i = cause.index();
            c.count[i].fetch_add(1, Ordering::Relaxed);
            c.total_ns[i].fetch_add(ns, Ordering::Relaxed);
            c.max_ns[i].fetch_max(ns, Ordering::Relaxed);
            sum += ns;
        }
        self.recorded_ns.fetch_add(sum, Ordering::Relaxed);
        let s = ns_since(self.epoch, start);
        let e = ns_since(self.epoch, end).max(s);
        if self.longest_ns.fetch_max(e - s, Ordering::Relaxed) < e - s {
            self.longest_cause.store(outer as u8, Ordering::Relaxed);
        }
        if e - s < LOG_MIN.as_nanos() as u64 {
            self.unlogged.fetch_add(1, Ordering::Relaxed);
            self.unlogged_ns.fetch_add(e - s, Ordering::Relaxed);
            if self.open_spans.load(Ordering::Relaxed) == 0 {
                self.add_short(s, e - s);
            }
            return;
        }
        let i = self.head.fetch_add(1, Ordering::Relaxed);
        let slot = &self.slots[(i % LOG_CAPACITY as u64) as usize];
        slot.seq.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.start.store(s, Ordering::Relaxed);
        slot.end.store(e, Ordering::Relaxed);
        slot.seq.store(
            ((i + 1) & INDEX_MASK) | (outer as u64) << INDEX_BITS,
            Ordering::Release,
        );
    }

    fn stats(&self, cause: WaitCause) -> WaitStats {
        let i = cause.index();
        let c = &self.counters;
        WaitStats {
            count: c.count[i].load(Ordering::Relaxed),
            total: Duration::from_nanos(c.total_ns[i].load(Ordering::Relaxed)),
            max: Duration::from_nanos(c.max_ns[i].load(Ordering::Relaxed)),
        }
    }

    fn snapshot(&self) -> MutatorWaitLog {
        let head = self.head.load(Ordering::Acquire);
        let first = head.saturating_sub(LOG_CAPACITY as u64);
        let mut intervals = Vec::with_capacity((head - first) as usize);
        let at = |ns: u64| self.epoch + Duration::from_nanos(ns);
        for i in first..head {
            let slot = &self.slots[(i % LOG_CAPACITY as u64) as usize];
            let s1 = slot.seq.load(Ordering::Acquire);
            let (start, end) = (
                slot.start.load(Ordering::Relaxed),
                slot.end.load(Ordering::Relaxed),
            );
            fence(Ordering::Acquire);
            let s2 = slot.seq.load(Ordering::Relaxed);
            if s1 != s2 || s1 & INDEX_MASK != (i + 1) & INDEX_MASK {
                continue; // being written or overwritten right now
            }
            if let Some(cause) = WaitCause::from_index((s1 >> INDEX_BITS) as u8) {
                intervals.push(WaitInterval {
                    start: at(start),
                    end: at(end),
                    cause,
                });
            }
        }
        intervals.sort_by_key(|w| w.start);
        let bucket_ns = SHORT_BUCKET.as_nanos() as u64;
        let (buckets, first_bucket) = self.short_buckets();
        let short = buckets
            .into_iter()
            .map(|(k, ns)| ShortBucket {
                start: at(self.attached_ns + k * bucket_ns),
                waited: Duration::from_nanos(ns),
            })
            .collect();
        let detached = self.detached_ns.load(Ordering::Relaxed);
        MutatorWaitLog {
            mutator: self.mutator,
            attached: at(self.attached_ns),
            detached: (detached != 0).then(|| at(detached)),
            intervals,
            dropped: first,
            unlogged: self.unlogged.load(Ordering::Relaxed),
            unlogged_time: Duration::from_nanos(self.unlogged_ns.load(Ordering::Relaxed)),
            short,
            short_from: (first_bucket > 0).then(|| at(self.attached_ns + first_bucket * bucket_ns)),
            short_dropped: Duration::from_nanos(self.short_dropped_ns.load(Ordering::Relaxed)),
        }
    }
}

thread_local! {
    /// This thread's current log (owns one strong count of an `Arc<WaitLog>`), or null.
    static CURRENT: Cell<*const WaitLog> = const { Cell::new(core::ptr::null()) };
}

/// Run `f` on this thread's current log, if there is one. Async-signal-safe.
fn with_current(f: impl FnOnce(&WaitLog)) {
    let p = CURRENT.try_with(Cell::get).unwrap_or(core::ptr::null());
    if !p.is_null() {
        // SAFETY: a non-null CURRENT owns a strong count (see the module invariants), which is
        // given back only on this thread after CURRENT was changed; a signal handler running
        // on this thread sees either the old value (still counted) or the new one.
        f(unsafe { &*p });
    }
}

/// Record a wait of `cause` from `start` to `end` on this thread's mutator (nothing if the
/// thread has none). For leaf waits: mark assists (`record(WaitCause::Assist, start, end)`),
/// faults. Async-signal-safe.
pub(crate) fn record(cause: WaitCause, start: Instant, end: Instant) {
    with_current(|l| {
        let ns = ns_since(start, end);
        l.record_parts(cause, start, end, &[(cause, ns)]);
    });
}

/// Record a wait at a safepoint: parked from `arrived` to `released`; every mutator had
/// stopped at `stopped` (the part before it is time to safepoint).
pub(crate) fn record_parked(arrived: Instant, stopped: Option<Instant>, released: Instant) {
    with_current(|l| {
        let stopped = stopped
            .unwrap_or(arrived)
            .clamp(arrived, released.max(arrived));
        let ttsp = ns_since(arrived, stopped);
        let pause = ns_since(stopped, released);
        let parts = [
            (WaitCause::TimeToSafepoint, ttsp),
            (WaitCause::Pause, pause),
        ];
        let from = if ttsp == 0 { 1 } else { 0 };
        l.record_parts(WaitCause::Pause, arrived, released, &parts[from..]);
    });
}

/// This thread's current mutator's wait totals so far (exclusive, as in [`MutatorWaits`]),
/// nanoseconds per cause in [`WaitCause::ALL`] order; `None` on a thread without a mutator.
/// Cheap (a thread-local read and seven relaxed loads): meant to be sampled around a unit of
/// work (the suite's request workload splits its slowest requests with it).
pub fn thread_wait_totals() -> Option<[u64; CAUSES]> {
    let mut out = None;
    with_current(|l| {
        let mut t = [0; CAUSES];
        for (i, x) in t.iter_mut().enumerate() {
            *x = l.counters.total_ns[i].load(Ordering::Relaxed);
        }
        out = Some(t);
    });
    out
}

/// A wait that may contain other recorded waits: recorded when dropped, with its own time
/// minus theirs (e.g. `let _w = Span::begin(WaitCause::AllocStall);`).
pub(crate) struct Span {
    cause: WaitCause,
    start: Instant,
    nested0: u64,
    /// The log whose `open_spans` this span raised (its address, for identity only; 0: none).
    log: usize,
}

impl Span {
    /// Start a span now.
    pub(crate) fn begin(cause: WaitCause) -> Span {
        let mut nested0 = 0;
        let mut log = 0;
        let start = Instant::now();
        with_current(|l| {
            nested0 = l.recorded_ns.load(Ordering::Relaxed);
            // Raised after `start` was read (and lowered before `end` is): every wait
            // recorded while it is raised lies inside this span. A plain load and store: only
            // spans write it, on the log's own thread, never in a signal handler.
            let open = l.open_spans.load(Ordering::Relaxed);
            l.open_spans.store(open + 1, Ordering::Relaxed);
            log = l as *const WaitLog as usize;
        });
        Span {
            cause,
            start,
            nested0,
            log,
        }
    }
}

impl Drop for Span {
    fn drop(&mut self) {
        with_current(|l| {
            if l as *const WaitLog as usize != self.log {
                return; // the thread's log changed under the span: record nothing
            }
            let open = l.open_spans.load(Ordering::Relaxed);
            l.open_spans
                .store(open.saturating_sub(1), Ordering::Relaxed);
            let end = Instant::now();
            let nested = l.recorded_ns.load(Ordering::Relaxed) - self.nested0;
            let own = ns_since(self.start, end).saturating_sub(nested);
            l.record_parts(self.cause, self.start, end, &[(self.cause, own)]);
        });
    }
}

/// Count and durations of one cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitStats {
    /// Waits recorded.
    pub count: u64,
    /// Their total (exclusive of nested waits of other causes).
    pub total: Duration,
    /// The longest one (exclusive).
    pub max: Duration,
}

impl WaitStats {
    fn add(&mut self, o: WaitStats) {
        self.count += o.count;
        self.total += o.total;
        self.max = self.max.max(o.max);
    }
}

/// Every mutator's waits, by cause (from `Heap::mutator_waits`).
#[derive(Debug, Clone, Default)]
pub struct MutatorWaits {
    /// Per cause, in [`WaitCause::ALL`] order.
    pub by_cause: Vec<(WaitCause, WaitStats)>,
    /// The longest single wait of any cause (inclusive of what happened inside it), and the
    /// cause it was recorded under.
    pub longest: Duration,
    /// The cause of `longest` (`None` if nothing waited).
    pub longest_cause: Option<WaitCause>,
    /// Mutators counted (attached now, or detached).
    pub mutators: usize,
    /// Waits shorter than `LOG_MIN` (10 µs): counted above but not in the interval logs
    /// (the outermost ones are summed in the logs' short-wait buckets).
    pub unlogged: u64,
    /// Their total time (inclusive: a short wait inside a short span counts in both).
    pub unlogged_time: Duration,
    /// Short-wait time no longer in the logs' buckets: overwritten when a ring wrapped, or
    /// forgotten with a detached mutator's log beyond the last `RETIRED_KEEP`.
    pub unlogged_dropped: Duration,
    /// Intervals no longer in the logs: overwritten in a ring, or forgotten with a detached
    /// mutator's log beyond the last `RETIRED_KEEP` (64).
    pub dropped: u64,
}

impl MutatorWaits {
    /// The figures of one cause.
    pub fn get(&self, cause: WaitCause) -> WaitStats {
        self.by_cause
            .iter()
            .find(|(c, _)| *c == cause)
            .map(|&(_, s)| s)
            .unwrap_or_default()
    }

    /// Total time waited, every cause.
    pub fn total(&self) -> Duration {
        self.by_cause.iter().map(|(_, s)| s.total).sum()
    }
}

/// One logged wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitInterval {
    /// When the mutator started waiting.
    pub start: Instant,
    /// When it ran again.
    pub end: Instant,
    /// The outermost cause.
    pub cause: WaitCause,
}

/// The outermost waits shorter than `LOG_MIN` that started in one bucket of
/// [`SHORT_BUCKET`] (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortBucket {
    /// The bucket's start.
    pub start: Instant,
    /// The sum of those waits.
    pub waited: Duration,
}

/// One mutator's logged waits (from `Heap::mutator_wait_log`).
#[derive(Debug, Clone)]
pub struct MutatorWaitLog {
    /// The mutator's id within the heap.
    pub mutator: u64,
    /// When it attached.
    pub attached: Instant,
    /// When it detached (`None`: still attached).
    pub detached: Option<Instant>,
    /// The logged waits, oldest first (may overlap: a span and the waits inside it).
    pub intervals: Vec<WaitInterval>,
    /// Older intervals overwritten in the ring.
    pub dropped: u64,
    /// Waits shorter than `LOG_MIN` (10 µs), counted but not logged, and their total time.
    pub unlogged: u64,
    /// See `unlogged`.
    pub unlogged_time: Duration,
    /// The outermost short waits, summed by bucket (non-zero buckets, oldest first).
    pub short: Vec<ShortBucket>,
    /// `Some(t)`: the bucket ring wrapped; short waits before `t` are no longer in `short`
    /// (overwritten ones are in `short_dropped`; an old bucket whose slot was not reused yet is
    /// left out too, and not counted there).
    pub short_from: Option<Instant>,
    /// Short-wait time lost from the buckets (overwritten when the ring wrapped).
    pub short_dropped: Duration,
}

impl MutatorWaitLog {
    /// Minimum mutator utilisation of this mutator for `window`, from its logged waits and
    /// its short-wait buckets (see the module doc for where a bucket's sum is placed), over
    /// its attached life (up to `now` if still attached; from its oldest kept interval or
    /// bucket if older ones were dropped). `None` if that span is shorter than the window.
    pub fn mmu(&self, window: Duration, now: Instant) -> Option<f64> {
        let (from, to) = self.span(now);
        let secs = |t: Instant| t.saturating_duration_since(from).as_secs_f64();
        let iv: Vec<(f64, f64)> = self
            .timeline(from)
            .into_iter()
            .map(|(a, b, _)| (a, b))
            .collect();
        mmu_from_intervals(&iv, secs(to), window.as_secs_f64())
    }

    /// The span the figures cover: its attached life (up to `now` if still attached), from
    /// its oldest kept interval if older ones were dropped, and from its oldest kept bucket if
    /// the bucket ring wrapped.
    fn span(&self, now: Instant) -> (Instant, Instant) {
        let from = if self.dropped > 0 {
            self.intervals.first().map_or(self.attached, |w| w.start)
        } else {
            self.attached
        };
        let from = self.short_from.map_or(from, |t| t.max(from));
        (from, self.detached.unwrap_or(now))
    }

    /// Every wait as seconds since `from`: the logged intervals (with their cause) and the
    /// buckets' short waits laid into the gaps between them (cause `None`).
    fn timeline(&self, from: Instant) -> Vec<(f64, f64, Option<WaitCause>)> {
        let secs = |t: Instant| t.saturating_duration_since(from).as_secs_f64();
        let mut iv: Vec<(f64, f64, Option<WaitCause>)> = self
            .intervals
            .iter()
            .map(|w| (secs(w.start), secs(w.end), Some(w.cause)))
            .collect();
        let logged: Vec<(f64, f64)> = iv.iter().map(|&(a, b, _)| (a, b)).collect();
        let buckets: Vec<(f64, f64)> = self
            .short
            .iter()
            .filter(|b| b.start >= from)
            .map(|b| (secs(b.start), b.waited.as_secs_f64()))
            .collect();
        iv.extend(
            fill_gaps(&merge_intervals(&logged), &buckets)
                .into_iter()
                .map(|(a, b)| (a, b, None)),
        );
        iv
    }

    /// The window of width `window` in which this mutator waited most (over the same span as
    /// [`Self::mmu`]), with its waits split by cause. `None` if that span is shorter than the
    /// window.
    pub fn worst_window(&self, window: Duration, now: Instant) -> Option<WorstWindow> {
        let (from, to) = self.span(now);
        let secs = |t: Instant| t.saturating_duration_since(from).as_secs_f64();
        let iv = self.timeline(from);
        let plain: Vec<(f64, f64)> = iv.iter().map(|&(a, b, _)| (a, b)).collect();
        let w = window.as_secs_f64();
        let (t, waited) = worst_window(&plain, secs(to), w)?;
        let split = split_by_cause(&iv, t, t + w);
        Some(WorstWindow {
            start: from + Duration::from_secs_f64(t),
            width: window,
            waited: Duration::from_secs_f64(waited),
            by_cause: WaitCause::ALL
                .iter()
                .map(|&c| (c, Duration::from_secs_f64(split[c.index()])))
                .collect(),
            short: Duration::from_secs_f64(split[CAUSES]),
        })
    }
}

/// Lay each bucket's short waits (`(bucket start, seconds)`, by start) into the gaps of
/// `logged` (sorted, disjoint) from the bucket's start on, never before the previous bucket's
/// last piece: disjoint pieces, none overlapping a logged interval, summing to the buckets'.
fn fill_gaps(logged: &[(f64, f64)], buckets: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut j = 0;
    let mut cur = f64::NEG_INFINITY;
    for &(start, sum) in buckets {
        cur = cur.max(start);
        let mut rem = sum;
        while rem > 0.0 {
            while j < logged.len() && logged[j].1 <= cur {
                j += 1;
            }
            match logged.get(j) {
                Some(&(a, b)) if a <= cur => cur = b, // inside a logged wait: skip it
                next => {
                    let gap_end = next.map_or(f64::INFINITY, |&(a, _)| a);
                    if rem < gap_end - cur {
                        out.push((cur, cur + rem));
                        cur += rem;
                        rem = 0.0;
                    } else {
                        out.push((cur, gap_end));
                        rem -= gap_end - cur;
                        cur = gap_end;
                    }
                }
            }
        }
    }
    out
}

/// Merge possibly overlapping intervals (any order) into sorted disjoint ones.
pub fn merge_intervals(iv: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut v: Vec<(f64, f64)> = iv.iter().copied().filter(|(a, b)| b > a).collect();
    v.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(v.len());
    for (a, b) in v {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// Minimum mutator utilisation for a window of `w` seconds over a run `[0, run]` in which the
/// mutator waited during `waits` (seconds from the run's start; any order, may overlap): the
/// minimum over every window `[t, t + w]` inside the run of (w - waited time in it) / w.
/// `None` if `w <= 0` or the run is shorter than `w`. O(n log n).
pub fn mmu_from_intervals(waits: &[(f64, f64)], run: f64, w: f64) -> Option<f64> {
    worst_window(waits, run, w).map(|(_, worst)| ((w - worst) / w).clamp(0.0, 1.0))
}

/// The window of `w` seconds inside `[0, run]` with the most waited time: its start and the
/// waited time in it (see [`mmu_from_intervals`]). `None` as there.
fn worst_window(waits: &[(f64, f64)], run: f64, w: f64) -> Option<(f64, f64)> {
    if w <= 0.0 || run < w || !run.is_finite() {
        return None;
    }
    let iv: Vec<(f64, f64)> = merge_intervals(waits)
        .into_iter()
        .map(|(a, b)| (a.max(0.0), b.min(run)))
        .filter(|(a, b)| b > a)
        .collect();
    // prefix[i] = waited time of intervals before i.
    let mut prefix = Vec::with_capacity(iv.len() + 1);
    prefix.push(0.0);
    for &(a, b) in &iv {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + (b - a));
    }
    // Waited time in [0, t].
    let waited_until = |t: f64| -> f64 {
        let k = iv.partition_point(|&(a, _)| a < t);
        let mut s = prefix[k];
        if k > 0 {
            let (a, b) = iv[k - 1];
            s -= b - a;
            s += (b.min(t) - a).max(0.0);
        }
        s
    };
    // The waited time in a window is piecewise linear in its position, with breakpoints where
    // its start or end crosses an interval edge: the worst window starts at an interval start
    // or ends at an interval end (or sits at the run's edges).
    let mut worst: (f64, f64) = (0.0, 0.0);
    let mut consider = |t: f64| {
        let t = t.clamp(0.0, run - w);
        let waited = waited_until(t + w) - waited_until(t);
        if waited > worst.1 {
            worst = (t, waited);
        }
    };
    consider(0.0);
    consider(run - w);
    for &(a, b) in &iv {
        consider(a);
        consider(b - w);
    }
    Some(worst)
}

/// The worst window of one mutator (from [`MutatorWaitLog::worst_window`]): where it lies and
/// what the mutator waited for in it.
#[derive(Debug, Clone, PartialEq)]
pub struct WorstWindow {
    /// Its start.
    pub start: Instant,
    /// Its width.
    pub width: Duration,
    /// Time waited in it (the union of the logged waits; `1 - waited / width` is the MMU).
    pub waited: Duration,
    /// `waited` split by cause, in [`WaitCause::ALL`] order: each instant goes to the innermost
    /// logged wait covering it (a pause inside an allocation slow path counts as the pause).
    pub by_cause: Vec<(WaitCause, Duration)>,
    /// The rest of `waited`: short waits (under `LOG_MIN`, from the buckets; their causes are
    /// not kept).
    pub short: Duration,
}

/// Split the union of `iv` (inclusive, nested or disjoint intervals, seconds) inside
/// `[a, b]` by cause: each instant goes to the covering interval that started last (the
/// innermost one). Returns seconds per cause, in [`WaitCause::ALL`] order, then those of
/// cause `None` (short waits).
fn split_by_cause(iv: &[(f64, f64, Option<WaitCause>)], a: f64, b: f64) -> [f64; CAUSES + 1] {
    let inside: Vec<(f64, f64, Option<WaitCause>)> = iv
        .iter()
        .map(|&(s, e, c)| (s.max(a), e.min(b), c))
        .filter(|&(s, e, _)| e > s)
        .collect();
    let mut edges: Vec<f64> = inside.iter().flat_map(|&(s, e, _)| [s, e]).collect();
    edges.sort_by(f64::total_cmp);
    edges.dedup();
    let mut out = [0.0; CAUSES + 1];
    for pair in edges.windows(2) {
        let (s, e) = (pair[0], pair[1]);
        let mid = (s + e) / 2.0;
        let innermost = inside
            .iter()
            .filter(|&&(x, y, _)| x <= mid && mid < y)
            .max_by(|p, q| p.0.total_cmp(&q.0));
        if let Some(&(_, _, c)) = innermost {
            out[c.map_or(CAUSES, WaitCause::index)] += e - s;
        }
    }
    out
}

/// The heap's view of every mutator's log.
#[derive(Default)]
pub(crate) struct WaitRegistry {
    inner: Mutex<RegistryState>,
}

#[derive(Default)]
pub(crate) struct RegistryState {
    live: Vec<Arc<WaitLog>>,
    retired: VecDeque<Arc<WaitLog>>,
    /// Counters of logs no longer kept.
    folded: [WaitStats; CAUSES],
    folded_longest: (Duration, Option<WaitCause>),
    folded_mutators: usize,
    folded_unlogged: (u64, Duration),
    folded_dropped: u64,
    folded_short_ns: u64,
}

impl WaitRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry's lock, for fork's *prepare* to hold across the fork (`crate::fork`): the
    /// queries [`crate::Heap::mutator_waits`] and [`crate::Heap::mutator_wait_log`] take it
    /// from any thread, native sections' and unattached ones' included, which *prepare* does
    /// not wait for; a child that inherited it held could never attach or detach a mutator.
    pub(crate) fn lock_for_fork(&self) -> std::sync::MutexGuard<'_, RegistryState> {
        self.lock()
    }

    /// A new mutator `id` attaches on this thread: its log becomes the thread's current one.
    pub(crate) fn attach(&self, id: u64) -> Attachment {
        let log = Arc::new(WaitLog::new(id));
        self.lock().live.push(log.clone());
        let raw = Arc::into_raw(log.clone());
        let old = CURRENT.with(|c| c.replace(raw));
        if !old.is_null() {
            // SAFETY: a non-null CURRENT owns one strong count (from `Arc::into_raw` above, at
            // an earlier attach); CURRENT no longer points at it.
            drop(unsafe { Arc::from_raw(old) });
        }
        Attachment { log }
    }

    /// Totals over every mutator.
    pub(crate) fn summary(&self) -> MutatorWaits {
        let g = self.lock();
        let mut per = g.folded;
        let (mut longest, mut longest_cause) = g.folded_longest;
        let (mut unlogged, mut unlogged_time) = g.folded_unlogged;
        let mut dropped = g.folded_dropped;
        let mut short_dropped = g.folded_short_ns;
        for l in g.live.iter().chain(g.retired.iter()) {
            for c in WaitCause::ALL {
                per[c.index()].add(l.stats(c));
            }
            let lo = Duration::from_nanos(l.longest_ns.load(Ordering::Relaxed));
            if lo > longest {
                longest = lo;
                longest_cause = WaitCause::from_index(l.longest_cause.load(Ordering::Relaxed));
            }
            unlogged += l.unlogged.load(Ordering::Relaxed);
            unlogged_time += Duration::from_nanos(l.unlogged_ns.load(Ordering::Relaxed));
            dropped += l
                .head
                .load(Ordering::Relaxed)
                .saturating_sub(LOG_CAPACITY as u64);
            short_dropped += l.short_dropped_ns.load(Ordering::Relaxed);
        }
        MutatorWaits {
            by_cause: WaitCause::ALL
                .iter()
                .map(|&c| (c, per[c.index()]))
                .collect(),
            longest,
            longest_cause,
            mutators: g.folded_mutators + g.live.len() + g.retired.len(),
            unlogged,
            unlogged_time,
            unlogged_dropped: Duration::from_nanos(short_dropped),
            dropped,
        }
    }

    /// Every kept log (attached mutators first, then the most recently detached).
    pub(crate) fn logs(&self) -> Vec<MutatorWaitLog> {
        let logs: Vec<Arc<WaitLog>> = {
            let g = self.lock();
            g.live.iter().chain(g.retired.iter()).cloned().collect()
        };
        logs.iter().map(|l| l.snapshot()).collect()
    }

    fn detach(&self, log: &Arc<WaitLog>) {
        let mut g = self.lock();
        g.live.retain(|l| !Arc::ptr_eq(l, log));
        g.retired.push_back(log.clone());
        while g.retired.len() > RETIRED_KEEP {
            let Some(old) = g.retired.pop_front() else {
                break;
            };
            for c in WaitCause::ALL {
                g.folded[c.index()].add(old.stats(c));
            }
            let lo = Duration::from_nanos(old.longest_ns.load(Ordering::Relaxed));
            if lo > g.folded_longest.0 {
                g.folded_longest = (
                    lo,
                    WaitCause::from_index(old.longest_cause.load(Ordering::Relaxed)),
                );
            }
            g.folded_mutators += 1;
            g.folded_unlogged.0 += old.unlogged.load(Ordering::Relaxed);
            g.folded_unlogged.1 += Duration::from_nanos(old.unlogged_ns.load(Ordering::Relaxed));
            g.folded_dropped += old.head.load(Ordering::Relaxed);
            // All its short-wait time leaves the logs now (what its ring had lost included).
            g.folded_short_ns += old.short_ns.load(Ordering::Relaxed);
        }
    }
}

/// A mutator's membership in the wait registry; detaches (and stops being the thread's current
/// log) when dropped, on the mutator's own thread.
pub(crate) struct Attachment {
    log: Arc<WaitLog>,
}

impl Attachment {
    /// Detach from `reg` (call once, from the mutator's drop, on its thread).
    pub(crate) fn detach(&self, reg: &WaitRegistry) {
        let log = &self.log;
        log.detached_ns.store(
            ns_since(log.epoch, Instant::now()).max(1),
            Ordering::Relaxed,
        );
        let mine = Arc::as_ptr(log);
        let was = CURRENT.with(|c| {
            if c.get() == mine {
                c.replace(core::ptr::null())
            } else {
                core::ptr::null()
            }
        });
        if !was.is_null() {
            // SAFETY: CURRENT owned this count and no longer points at it.
            drop(unsafe { Arc::from_raw(was) });
        }
        reg.detach(log);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn mmu_of_no_waits_is_one() {
        assert!(close(mmu_from_intervals(&[], 1.0, 0.1), 1.0));
        assert_eq!(mmu_from_intervals(&[], 0.05, 0.1), None);
        assert_eq!(mmu_from_intervals(&[], 1.0, 0.0), None);
    }

    #[test]
    fn mmu_of_one_wait() {
        // 20 ms waited at 0.5 s in a 1 s run.
        let iv = [(0.5, 0.52)];
        assert!(close(mmu_from_intervals(&iv, 1.0, 0.1), 0.8));
        assert!(close(mmu_from_intervals(&iv, 1.0, 0.01), 0.0));
        assert!(close(mmu_from_intervals(&iv, 1.0, 1.0), 0.98));
    }

    #[test]
    fn mmu_merges_nested_and_overlapping_waits() {
        // A slow path [0.1, 0.13] containing a pause [0.11, 0.12], and an overlapping wait.
        let iv = [(0.11, 0.12), (0.1, 0.13), (0.125, 0.14)];
        assert_eq!(merge_intervals(&iv), vec![(0.1, 0.14)]);
        assert!(close(mmu_from_intervals(&iv, 1.0, 0.1), 0.6));
    }

    #[test]
    fn mmu_finds_the_worst_window_between_waits() {
        // Two 10 ms waits 50 ms apart: a 100 ms window holds both.
        let iv = [(0.2, 0.21), (0.26, 0.27), (0.8, 0.81)];
        assert!(close(mmu_from_intervals(&iv, 1.0, 0.1), 0.8));
        // A 60 ms window: both waits fit exactly.
        assert!(close(mmu_from_intervals(&iv, 1.0, 0.07), 1.0 - 0.02 / 0.07));
        // Waits clipped to the run.
        assert!(close(mmu_from_intervals(&[(-1.0, 0.05)], 1.0, 0.1), 0.5));
    }

    #[test]
    fn mmu_matches_brute_force() {
        let mut x = 12345u64;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % 10_000) as f64 / 10_000.0
        };
        for _ in 0..20 {
            let iv: Vec<(f64, f64)> = (0..15)
                .map(|_| {
                    let a = rnd();
                    (a, a + rnd() * 0.05)
                })
                .collect();
            let w = 0.01 + rnd() * 0.2;
            let merged = merge_intervals(&iv);
            let mut worst: f64 = 0.0;
            let mut t = 0.0;
            while t <= 1.0 - w {
                let s: f64 = merged
                    .iter()
                    .map(|&(a, b)| (b.min(t + w).min(1.0) - a.max(t)).max(0.0))
                    .sum();
                worst = worst.max(s);
                t += 1e-4;
            }
            let m = mmu_from_intervals(&iv, 1.0, w).expect("run longer than w");
            assert!(m <= (w - worst) / w + 1e-9, "{m} vs {}", (w - worst) / w);
            assert!(m >= (w - worst) / w - 2e-4 / w - 1e-9);
        }
    }

    #[test]
    fn the_worst_window_is_found_and_split_by_the_innermost_cause() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let iv = |a: u64, b: u64, cause| WaitInterval {
            start: at(a),
            end: at(b),
            cause,
        };
        let log = MutatorWaitLog {
            mutator: 1,
            attached: t0,
            detached: Some(at(1000)),
            intervals: vec![
                iv(100, 110, WaitCause::FaultStall),
                // An allocation slow path of 40 ms with a 10 ms pause inside it.
                iv(500, 540, WaitCause::AllocStall),
                iv(510, 520, WaitCause::Pause),
                iv(560, 580, WaitCause::Assist),
            ],
            dropped: 0,
            unlogged: 0,
            unlogged_time: Duration::ZERO,
            short: Vec::new(),
            short_from: None,
            short_dropped: Duration::ZERO,
        };
        let w = log
            .worst_window(Duration::from_millis(100), at(2000))
            .expect("long enough");
        let close =
            |d: Duration, ms: u64| d.abs_diff(Duration::from_millis(ms)) < Duration::from_micros(5);
        assert!(close(w.waited, 60), "{w:?}");
        let get = |c| {
            w.by_cause
                .iter()
                .find(|(x, _)| *x == c)
                .map(|&(_, d)| d)
                .unwrap()
        };
        assert!(close(get(WaitCause::AllocStall), 30), "{w:?}");
        assert!(close(get(WaitCause::Pause), 10), "{w:?}");
        assert!(close(get(WaitCause::Assist), 20), "{w:?}");
        assert!(close(get(WaitCause::FaultStall), 0), "{w:?}");
        // Its start lies where a window holds all of 500..580.
        assert!(w.start >= at(480) && w.start <= at(500), "{w:?}");
        // The MMU agrees with the waited time.
        let m = log.mmu(Duration::from_millis(100), at(2000)).unwrap();
        assert!((m - 0.4).abs() < 1e-4, "{m}");
        assert!(log.worst_window(Duration::from_secs(2), at(2000)).is_none());
    }

    #[test]
    fn spans_count_only_their_own_time_and_the_ring_keeps_intervals() {
        let reg = WaitRegistry::default();
        let a = reg.attach(7);
        let outer = Instant::now();
        {
            let _s = Span::begin(WaitCause::AllocStall);
            let t0 = Instant::now();
            std::thread::sleep(Duration::from_millis(3));
            record_parked(t0, Some(t0 + Duration::from_millis(1)), Instant::now());
            std::thread::sleep(Duration::from_millis(2));
        }
        let outer = outer.elapsed();
        let w = reg.summary();
        let pause = w.get(WaitCause::Pause);
        let ttsp = w.get(WaitCause::TimeToSafepoint);
        let alloc = w.get(WaitCause::AllocStall);
        assert_eq!((pause.count, ttsp.count, alloc.count), (1, 1, 1));
        assert_eq!(ttsp.total, Duration::from_millis(1));
        assert!(pause.total >= Duration::from_millis(2));
        assert!(alloc.total >= Duration::from_millis(2));
        // The span's own time leaves out the pause inside it (however long the sleeps took on
        // a loaded machine): the three causes together fit in the time the block took.
        assert!(
            alloc.total + pause.total + ttsp.total <= outer,
            "{w:?} in {outer:?}"
        );
        assert!(w.longest >= Duration::from_millis(5));
        assert_eq!(w.longest_cause, Some(WaitCause::AllocStall));
        let logs = reg.logs();
        assert_eq!(logs.len(), 1);
        assert_eq!(logs[0].intervals.len(), 2);
        assert_eq!(logs[0].intervals[0].cause, WaitCause::AllocStall);
        a.detach(&reg);
        // Detached: nothing more is recorded on this thread.
        record(WaitCause::Assist, Instant::now(), Instant::now());
        assert_eq!(reg.summary().get(WaitCause::Assist).count, 0);
        assert!(reg.logs()[0].detached.is_some());
    }

    /// The recording cost (`cargo test --release -p faultline-gc --lib -- --ignored
    /// recording_cost --nocapture`): one span (two clock reads, counters, one ring slot) and
    /// one leaf record.
    #[test]
    #[ignore]
    fn recording_cost() {
        let reg = WaitRegistry::default();
        let a = reg.attach(1);
        let n = 2_000_000u32;
        // Per operation: wall time and this thread's CPU time (the latter whatever the load).
        let per_op = |f: &dyn Fn()| {
            let (t, c) = (Instant::now(), crate::cputime::thread_cpu());
            for _ in 0..n {
                f();
            }
            (t.elapsed() / n, (crate::cputime::thread_cpu() - c) / n)
        };
        let span = per_op(&|| drop(Span::begin(WaitCause::AllocStall)));
        let leaf = per_op(&|| {
            let now = Instant::now();
            record(WaitCause::FaultStall, now, now + LOG_MIN);
        });
        println!("(wall, thread CPU) per op: span (unlogged, < LOG_MIN) {span:?}; logged leaf record incl. one clock read {leaf:?}");
        let short = per_op(&|| {
            let now = Instant::now();
            record(WaitCause::FaultStall, now, now + LOG_MIN / 2);
        });
        println!("(wall, thread CPU) per op: short leaf record (into a bucket) incl. one clock read {short:?}");
        a.detach(&reg);
    }

    /// The attached instant of the only log of `reg`.
    fn attached(reg: &WaitRegistry) -> Instant {
        reg.logs()[0].attached
    }

    #[test]
    fn short_waits_lower_the_mmu_by_their_sum() {
        let reg = WaitRegistry::default();
        let a = reg.attach(1);
        let t0 = attached(&reg) + Duration::from_millis(200);
        // 500 faults of 5 µs, one every 20 µs: 2.5 ms of waits within 10 ms, none logged.
        for i in 0..500 {
            let s = t0 + Duration::from_micros(20 * i);
            record(WaitCause::FaultStall, s, s + Duration::from_micros(5));
        }
        // One logged wait of 1 ms elsewhere.
        let l0 = t0 + Duration::from_millis(500);
        record(WaitCause::Pause, l0, l0 + Duration::from_millis(1));
        let now = attached(&reg) + Duration::from_secs(1);
        let log = &reg.logs()[0];
        assert_eq!(log.intervals.len(), 1);
        assert_eq!(log.unlogged, 500);
        let short: Duration = log.short.iter().map(|b| b.waited).sum();
        assert_eq!(short, Duration::from_micros(2500));
        let m = log.mmu(Duration::from_millis(100), now).unwrap();
        assert!((m - 0.975).abs() < 1e-6, "{m}");
        let w = log.worst_window(Duration::from_millis(100), now).unwrap();
        assert!(
            w.short.abs_diff(Duration::from_micros(2500)) < Duration::from_nanos(10),
            "{w:?}"
        );
        // The split adds up to the window's waits, and the totals by cause to every wait.
        let split: Duration = w.by_cause.iter().map(|&(_, d)| d).sum::<Duration>() + w.short;
        assert!(split.abs_diff(w.waited) < Duration::from_nanos(10), "{w:?}");
        let whole = log.worst_window(Duration::from_millis(1000), now).unwrap();
        let sum = reg.summary();
        assert_eq!(sum.total(), Duration::from_micros(3500));
        assert!(
            whole.waited.abs_diff(sum.total()) < Duration::from_nanos(10),
            "{whole:?}"
        );
        assert_eq!(sum.unlogged_dropped, Duration::ZERO);
        a.detach(&reg);
    }

    #[test]
    fn short_waits_inside_a_span_count_once() {
        let reg = WaitRegistry::default();
        let a = reg.attach(1);
        {
            let _s = Span::begin(WaitCause::AllocStall);
            // Short waits nested in a span: the span's logged interval covers them.
            for _ in 0..100 {
                let t = Instant::now();
                record(WaitCause::FaultStall, t, t + Duration::from_micros(3));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // One outside any span: in a bucket.
        let t = Instant::now() + Duration::from_millis(5);
        record(WaitCause::Assist, t, t + Duration::from_micros(7));
        let log = &reg.logs()[0];
        assert_eq!(log.intervals.len(), 1);
        assert_eq!(log.unlogged, 101);
        let short: Duration = log.short.iter().map(|b| b.waited).sum();
        assert_eq!(short, Duration::from_micros(7));
        // Causes (exclusive) add up to the union of the waits, short ones included.
        let now = Instant::now() + Duration::from_secs(1);
        let (from, to) = log.span(now);
        let whole = log.worst_window(to - from, now).unwrap();
        let sum = reg.summary();
        assert!(
            whole.waited.abs_diff(sum.total()) < Duration::from_nanos(10),
            "{whole:?} {sum:?}"
        );
        a.detach(&reg);
    }

    #[test]
    fn an_overwritten_bucket_is_not_counted_twice() {
        let reg = WaitRegistry::default();
        let a = reg.attach(1);
        let t0 = attached(&reg);
        let ring = SHORT_BUCKET * SHORT_BUCKETS as u32;
        let at = |d: Duration| t0 + d + SHORT_BUCKET / 2;
        record(
            WaitCause::FaultStall,
            at(Duration::ZERO),
            at(Duration::ZERO) + Duration::from_micros(3),
        );
        // The same slot, one lap later: the first bucket is overwritten.
        record(
            WaitCause::FaultStall,
            at(ring),
            at(ring) + Duration::from_micros(4),
        );
        // A late wait for the overwritten bucket: lost, and the newer one kept.
        record(
            WaitCause::FaultStall,
            at(Duration::ZERO),
            at(Duration::ZERO) + Duration::from_micros(2),
        );
        let log = &reg.logs()[0];
        assert_eq!(
            log.short,
            vec![ShortBucket {
                start: t0 + ring,
                waited: Duration::from_micros(4)
            }]
        );
        assert_eq!(log.short_dropped, Duration::from_micros(5));
        assert_eq!(log.short_from, Some(t0 + SHORT_BUCKET));
        assert_eq!(reg.summary().unlogged_dropped, Duration::from_micros(5));
        let now = t0 + ring + Duration::from_millis(10);
        let w = log.worst_window(Duration::from_millis(5), now).unwrap();
        assert_eq!(w.waited, Duration::from_micros(4));
        a.detach(&reg);
    }

    #[test]
    fn short_waits_fill_the_gaps_between_logged_ones() {
        // A bucket at 0 with 0.3 ms, a logged wait over [0, 0.5 ms] and [0.6, 0.7 ms].
        let logged = [(0.0, 0.0005), (0.0006, 0.0007)];
        let pieces = fill_gaps(&logged, &[(0.0, 0.0003)]);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        assert!(close(Some(pieces[0].0), 0.0005) && close(Some(pieces[0].1), 0.0006));
        assert!(close(Some(pieces[1].0), 0.0007) && close(Some(pieces[1].1), 0.0009));
        // A second bucket starts after the first one's last piece.
        let pieces = fill_gaps(&[], &[(0.0, 0.0012), (0.001, 0.0001)]);
        assert!(close(Some(pieces[1].0), 0.0012) && close(Some(pieces[1].1), 0.0013));
        // Nothing overlaps: the union holds every second.
        let mut all: Vec<(f64, f64)> = logged.to_vec();
        all.extend(fill_gaps(&logged, &[(0.0, 0.0003)]));
        let u: f64 = merge_intervals(&all).iter().map(|(a, b)| b - a).sum();
        assert!((u - 0.0009).abs() < 1e-12, "{u}");
    }

    #[test]
    fn the_ring_drops_the_oldest_and_says_so() {
        let reg = WaitRegistry::default();
        let a = reg.attach(1);
        let t = Instant::now();
        let n = LOG_CAPACITY + 10;
        for i in 0..n {
            let s = t + Duration::from_micros(100 * i as u64);
            record(WaitCause::FaultStall, s, s + Duration::from_micros(20));
        }
        // Too short to log: counted only.
        record(WaitCause::FaultStall, t, t + Duration::from_micros(1));
        let log = &reg.logs()[0];
        assert_eq!(log.dropped, 10);
        assert_eq!(log.intervals.len(), LOG_CAPACITY);
        assert_eq!(log.unlogged, 1);
        assert_eq!(reg.summary().get(WaitCause::FaultStall).count, n as u64 + 1);
        assert_eq!(reg.summary().dropped, 10);
        a.detach(&reg);
    }
}
