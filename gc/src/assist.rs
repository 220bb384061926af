//! Mark assists: an allocating mutator that outruns concurrent marking does a bounded slice
//! of the marking itself, from the shared gray pool ([`crate::graypool`]), so a fast allocator
//! slows down smoothly instead of stopping at the space's end for a whole cycle. Compaction
//! assists ([`compaction_assist`]): a mutator whose allocation outruns the compaction fills
//! destination pages at its buffer refills ([`paced_compaction_assist`]), and one whose
//! allocation found the space exhausted after the flip fills them instead of sleeping until the
//! compaction ends. When it assists and how much it owes is the pacer's decision
//! ([`crate::pacer`]); the allocation slow path ([`crate::mutator`]) calls [`paced_assist`] and
//! [`paced_compaction_assist`].
//!
//! Invariants:
//! - one assist scans at most [`ASSIST_SLICE_BYTES`] and lasts at most [`ASSIST_SLICE`] of
//!   wall time (checked every [`ASSIST_CHECK`] objects or [`ASSIST_CHECK_BYTES`] scanned; one
//!   step scans at most [`crate::marking::SCAN_CHUNK_WORDS`] words, large objects a chunk at
//!   a time), and never reads the thread's CPU clock (a read is a preemption point, see
//!   [`ASSIST_SLICE_BYTES`]); it never polls a safepoint, so no pause can begin while a mutator holds gray objects; what it has
//!   not scanned goes back to the pool when it ends (`GrayLocal`'s drop);
//! - one buffer refill takes at most one mark-assist slice and at most
//!   [`COMPACT_ASSIST_SLICES`] compaction-assist slices ([`ASSIST_SLICE`] each);
//! - a mutator's paced assists ([`paced_assist`], the allocation slow path's) take at most
//!   [`ASSIST_SHARE`] of each [`ASSIST_WINDOW`] of wall time in CPU time, reckoned from the
//!   bytes scanned at [`ASSIST_SCAN_RATE`] (no CPU clock is read), unless the pacer calls the
//!   assist urgent ([`crate::pacer::plan_assist`]); an assist that would exceed the budget is
//!   deferred (counted);
//! - it takes work only while marking is active: the pool holds objects only between the
//!   concurrent marker's first shade (after the bitmaps are cleared) and the remark, which
//!   drains it with the world stopped.

use core::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::graypool::GrayLocal;
use crate::inner::HeapInner;
use crate::marking::ConcMarker;
use crate::pacer::{
    AssistPlan, ASSIST_CHECK, ASSIST_CHECK_BYTES, ASSIST_SCAN_RATE, ASSIST_SHARE, ASSIST_SLICE,
    ASSIST_SLICE_BYTES, ASSIST_WINDOW, COMPACT_ASSIST_SLICES,
};
use crate::trace::{Atomic, Tracer};
use faultline_heap::object::TypeRegistry;

/// Whether a slice must look at the clock after `steps` steps and `bytes` scanned since the
/// last look (pure).
fn time_to_check(steps: usize, bytes: usize) -> bool {
    steps >= ASSIST_CHECK || bytes >= ASSIST_CHECK_BYTES
}

/// The bytes one assist scans at most when `owed` (`None`: the slice's whole work) (pure).
fn slice_bytes(owed: Option<usize>) -> usize {
    owed.map_or(ASSIST_SLICE_BYTES, |o| o.min(ASSIST_SLICE_BYTES))
}

/// A marker for a mutator's own marking work (assists, its own retired buffers): the
/// cycle's bitmaps and a private end of the shared gray pool.
fn marker<'a>(inner: &'a HeapInner, types: &'a TypeRegistry) -> ConcMarker<'a> {
    let ms = &inner.marking;
    let tables = &inner.tables;
    ConcMarker::with(
        Tracer::<Atomic>::new(
            ms.mark_from.load(Ordering::SeqCst),
            ms.mark_top.load(Ordering::SeqCst),
            &tables.mark,
            &tables.live,
            &inner.large,
            types,
        ),
        GrayLocal::private(&ms.pool),
    )
}

/// A mark assist (a mutator's allocation slow path, marking active): scan gray objects from
/// the shared pool until this assist has scanned `owed` bytes (at most, and with `None`,
/// [`ASSIST_SLICE_BYTES`]), the pool is empty, or [`ASSIST_SLICE`] of wall time has passed.
/// Leftover gray objects go back to the pool. Counted in the pacer. Returns the bytes scanned
/// (0: there was nothing to take).
///
/// Safe with respect to the cycle: the pool holds objects only between the concurrent
/// marker's first shade (after the bitmaps are cleared) and the remark, and a mutator cannot
/// be inside an assist during a pause (it polls no safepoint here).
pub(crate) fn assist(inner: &HeapInner, owed: Option<usize>) -> usize {
    let ms = &inner.marking;
    if !ms.active.load(Ordering::SeqCst) || !ms.pool.has_work() {
        return 0;
    }
    let t0 = Instant::now();
    let slice = slice_bytes(owed);
    let types = inner.types();
    let mut m = marker(inner, &types);
    let (mut steps, mut checked) = (0, 0);
    while m.step() {
        if m.scanned_bytes >= slice {
            break;
        }
        steps += 1;
        if time_to_check(steps, m.scanned_bytes - checked) {
            (steps, checked) = (0, m.scanned_bytes);
            // (A stop requested meanwhile ends the slice too: the pause waits for this
            // mutator's poll, so an assist must not stretch its time to safepoint.)
            if t0.elapsed() >= ASSIST_SLICE || inner.sp.requested.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    let bytes = m.scanned_bytes;
    m.publish(&inner.pacer);
    drop(m);
    if bytes == 0 {
        return 0;
    }
    let end = Instant::now();
    crate::waits::record(crate::waits::WaitCause::Assist, t0, end);
    inner.pacer.note_assist(end - t0, bytes);
    bytes
}

/// A mutator retiring its allocation buffer `[start, end)` while SATB marking runs marks the
/// buffer's objects itself (they were allocated black; the buffer is still in its cache)
/// instead of queueing it for the marker: the work is proportional to what the mutator
/// allocated, so a fast allocator pays for it, and the marker's own work no longer grows with
/// the allocation rate (queued, these walks were most of a churning cycle's tail, after the
/// last gray object). Counted in the pacer (the cycle's live objects). Barrier-free marking
/// keeps the queue: its marker also scans black objects.
///
/// Safe with respect to the cycle as [`assist`] is: marking is active and the mutator polls
/// no safepoint here, so the remark (which walks the buffers still in use) cannot run
/// meanwhile; and only once the marker has cleared the cycle's bitmaps
/// ([`crate::pacer::Pacer::black_open`]): a buffer retired before that is queued as before.
pub(crate) fn mark_own_buffer(inner: &HeapInner, start: usize, end: usize) {
    let ms = &inner.marking;
    if !inner.pacer.black_open() {
        ms.retire(start, end);
        return;
    }
    if end <= start || start < ms.mark_top.load(Ordering::Relaxed) {
        return;
    }
    let types = inner.types();
    let mut m = marker(inner, &types);
    m.walk_black(start, end, false);
    inner.pacer.note_black(m.marked);
}

/// A mutator's assist budget: the start of its current window and the assist work charged in
/// it (CPU time reckoned from the bytes scanned, [`work_time`]).
#[derive(Clone, Copy)]
struct Budget {
    window: Option<Instant>,
    spent: Duration,
}

thread_local! {
    static BUDGET: Cell<Budget> = const {
        Cell::new(Budget {
            window: None,
            spent: Duration::ZERO,
        })
    };
}

/// Whether an assist may start at `now` with `spent` already in the window starting at
/// `window` (pure: the budget rule).
fn within_budget(b: Budget, now: Instant, urgent: bool) -> bool {
    if urgent {
        return true;
    }
    match b.window {
        Some(w) if now.saturating_duration_since(w) < ASSIST_WINDOW => {
            b.spent < ASSIST_WINDOW.mul_f64(ASSIST_SHARE)
        }
        _ => true,
    }
}

/// The allocation slow path's assist: the plan's bytes of marking, if this mutator's budget
/// allows or the plan is urgent (see the module invariants), else deferred and counted.
/// Returns the bytes scanned.
pub(crate) fn paced_assist(inner: &HeapInner, plan: AssistPlan) -> usize {
    let now = Instant::now();
    let b = BUDGET.with(Cell::get);
    if !within_budget(b, now, plan.urgent) {
        inner.pacer.note_assist_deferred();
        return 0;
    }
    let bytes = assist(inner, Some(plan.owed));
    if plan.urgent && bytes > 0 {
        inner.pacer.note_assist_urgent();
    }
    BUDGET.with(|c| c.set(charge(c.get(), now, work_time(bytes))));
    bytes
}

/// The CPU time scanning `bytes` takes at [`ASSIST_SCAN_RATE`] (pure): what an assist is
/// charged, since it reads no CPU clock.
fn work_time(bytes: usize) -> Duration {
    Duration::from_secs_f64(bytes as f64 / ASSIST_SCAN_RATE)
}

/// The budget `b` after an assist that started at `start` and was charged `spent` (pure): added
/// to the window it started in, or opening a new window. The charge is its work
/// ([`work_time`]), not its wall time: charged wall time, the budget deferred the assists of
/// mutators that lose their CPU inside them, and marking fell behind into flip waits on a
/// loaded machine (BENCHMARKS.md, s10 `assist`).
fn charge(b: Budget, start: Instant, spent: Duration) -> Budget {
    match b.window {
        Some(w) if start.saturating_duration_since(w) < ASSIST_WINDOW => Budget {
            window: Some(w),
            spent: b.spent + spent,
        },
        _ => Budget {
            window: Some(start),
            spent,
        },
    }
}

/// A compaction assist: fill destination pages of the running compaction for at most
/// [`ASSIST_SLICE`]. Returns the pages taken (0: no compaction active, or nothing left to
/// take). Counted in the pacer.
pub(crate) fn compaction_assist(inner: &HeapInner) -> usize {
    let t0 = Instant::now();
    let pages = inner.compaction.assist(&inner.arena, ASSIST_SLICE);
    if pages > 0 {
        let end = Instant::now();
        crate::waits::record(crate::waits::WaitCause::Assist, t0, end);
        inner.pacer.note_compaction_assist(end - t0, pages);
    }
    pages
}

/// The allocation slow path's compaction assists: one [`compaction_assist`] slice if the
/// mutators have spent a generational young cycle's allocation budget
/// ([`crate::youngpace::YoungPace::owes_compaction`], with `HeapConfig::young_budget`); then,
/// while the running compaction trails the mutators' allocation
/// ([`crate::pacer::Pacer::compaction_owed`]), more, one slice at a time, at most
/// [`COMPACT_ASSIST_SLICES`]. Returns the pages taken.
pub(crate) fn paced_compaction_assist(inner: &HeapInner) -> usize {
    let young = inner.gen.as_ref().is_some_and(|gs| {
        inner.config.young_budget && gs.young_pace.owes_compaction(inner.pacer.allocated())
    });
    let mut pages = if young { compaction_assist(inner) } else { 0 };
    let owed = || {
        inner
            .compaction
            .progress()
            .is_some_and(|(done, total)| inner.pacer.compaction_owed(done, total))
    };
    if !owed() {
        return pages;
    }
    // (No boost of the GC threads: this mutator does the work itself, and raised workers
    // would preempt it inside its slices.)
    for _ in 0..COMPACT_ASSIST_SLICES {
        let n = compaction_assist(inner);
        pages += n;
        if n == 0 || !owed() || inner.sp.requested.load(Ordering::Relaxed) {
            break;
        }
    }
    pages
}

/// Idle mode ([`crate::HeapConfig::gc_thread_idle`]): tell the pacer whether the collector
/// is behind its schedule now: concurrent marking runs and the markers alone are behind it
/// ([`crate::pacer::Pacer::markers_behind`]), or a compaction runs and its workers alone are
/// behind the allocation ([`crate::pacer::Pacer::compaction_workers_behind`]), or
/// (`prefill_behind`, in or between cycles) this refill found its new buffer not yet present
/// with prefill on ([`crate::prefiller::poke`]), or an idle GC thread is starved of the CPU
/// ([`crate::background::gc_threads_starving`]: the mutators' faults can keep a compaction on
/// schedule while its idle workers never run, and the old half is then released late).
/// Atomics only, a few `/proc` reads per idle GC thread at most every
/// [`crate::background::STARVE_CHECK`] (process-wide), and a system call per GC thread on a
/// change (see [`crate::pacer::Pacer::note_schedule`]).
pub(crate) fn note_schedule(inner: &HeapInner, prefill_behind: bool) {
    if !crate::background::can_idle() {
        return; // The GC threads are not idle (the mode info says why).
    }
    let starved = crate::background::gc_threads_starving();
    if starved {
        inner.pacer.starved_refills.fetch_add(1, Ordering::Relaxed);
    }
    let behind = prefill_behind
        || starved
        || if inner.marking.active.load(Ordering::Relaxed) {
            inner.pacer.markers_behind()
        } else {
            inner
                .compaction
                .progress()
                .is_some_and(|(done, total)| inner.pacer.compaction_workers_behind(done, total))
        };
    inner.pacer.note_schedule(behind);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slice_looks_at_the_clock_every_few_objects_or_bytes() {
        assert!(!time_to_check(0, 0));
        assert!(!time_to_check(ASSIST_CHECK - 1, ASSIST_CHECK_BYTES - 1));
        assert!(time_to_check(ASSIST_CHECK, 0));
        // One large chunk is enough.
        assert!(time_to_check(1, crate::marking::SCAN_CHUNK_WORDS * 8));
    }

    #[test]
    fn a_slice_scans_what_is_owed_up_to_its_bytes() {
        assert_eq!(slice_bytes(Some(20 << 10)), 20 << 10);
        assert_eq!(
            slice_bytes(Some(ASSIST_SLICE_BYTES * 8)),
            ASSIST_SLICE_BYTES
        );
        assert_eq!(slice_bytes(None), ASSIST_SLICE_BYTES);
    }

    const FRESH: Budget = Budget {
        window: None,
        spent: Duration::ZERO,
    };

    #[test]
    fn an_assist_is_charged_its_work_in_the_window_it_started_in() {
        let t0 = Instant::now();
        // A whole slice's work costs what scanning it takes at the nominal rate.
        let slice = work_time(ASSIST_SLICE_BYTES);
        assert!(
            slice > Duration::from_micros(200) && slice < ASSIST_SLICE,
            "{slice:?}"
        );
        // A first assist opens a window; eight slices spend its share (2.5 ms) and defer the
        // next assist in that window, however little wall time they took.
        let mut b = charge(FRESH, t0, slice);
        assert_eq!(b.window, Some(t0));
        assert_eq!(b.spent, slice);
        for k in 1..8u32 {
            assert!(within_budget(
                b,
                t0 + Duration::from_millis(k.into()),
                false
            ));
            b = charge(b, t0 + Duration::from_millis(k.into()), slice);
        }
        assert_eq!(b.window, Some(t0));
        assert_eq!(b.spent, slice * 8);
        assert!(!within_budget(b, t0 + Duration::from_millis(9), false));
        // One starting after the window opens a new one.
        let later = t0 + ASSIST_WINDOW;
        let b = charge(b, later, work_time(1 << 10));
        assert_eq!(b.window, Some(later));
        assert_eq!(b.spent, work_time(1 << 10));
    }

    #[test]
    fn the_budget_allows_a_share_of_each_window_unless_urgent() {
        let t0 = Instant::now();
        let fresh = FRESH;
        assert!(within_budget(fresh, t0, false));
        let share = ASSIST_WINDOW.mul_f64(ASSIST_SHARE);
        let b = |spent| Budget {
            window: Some(t0),
            spent,
        };
        // Inside the window: allowed until the share is spent.
        let mid = t0 + ASSIST_WINDOW / 2;
        assert!(within_budget(b(share / 2), mid, false));
        assert!(!within_budget(b(share), mid, false));
        // Urgent: always.
        assert!(within_budget(b(ASSIST_WINDOW), mid, true));
        // A new window: allowed again.
        assert!(within_budget(b(ASSIST_WINDOW), t0 + ASSIST_WINDOW, false));
    }
}
