//! The prefill thread ([`crate::prefill`] holds its state and invariants): started by the
//! first allocation-buffer refill that finds too little fresh memory above the bump pointer,
//! it makes chunks present through the refills' own path until the target is met, then
//! parks. Between chunks it yields its CPU once it has worked
//! [`crate::HeapConfig::prefill_yield_us`] since it last did (a [`crate::background::Yielder`]),
//! unless the present memory above the bump pointer is below half the target: nobody
//! waits for it, so while it is comfortably ahead it gives way to a mutator that wakes up on its
//! CPU instead of holding that mutator until the scheduler's next tick; when the refills are
//! close it keeps the CPU (yielding to always-runnable allocators would starve it).
//!
//! Invariants: those of [`crate::prefill`] (one chunk in flight at most, none during a flip,
//! each a fork-gate region, only a weak reference to the heap between chunks); it yields only
//! between chunks (outside the fork-gate region, no chunk in flight, no heap reference held).
//! Idle mode ([`crate::HeapConfig::gc_thread_idle`]): a refill whose buffer the thread had not
//! made present switches the GC threads out of `SCHED_IDLE` ([`poke`]'s answer); once the
//! target is met again the thread tells the pacer so, between chunks, which releases that
//! switch past its hold even if no refill follows.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::inner::HeapInner;
use crate::prefill::CHUNK;

/// A refill got the buffer `[start, end)`; the memory known present before it was below
/// `ready_before`. Counts it, and if the present memory above the bump pointer is below
/// half the target, starts or wakes the thread. Cheap when there is enough (a few loads).
/// Returns whether the prefill thread is behind the refills: prefill is on, the buffer was
/// not all known present before this refill (the refill made its memory present itself, or
/// waited for another populator), the buffer is no larger than half the target (one the
/// thread could have made present) and the thread runs (not one that failed to start). Idle
/// mode counts that as the collector falling behind ([`crate::HeapConfig::gc_thread_idle`]:
/// a prefill thread in `SCHED_IDLE` starves while the mutators keep every CPU busy, and its
/// work falls to their refills). Not told apart: pages kept present across the flip above
/// the watermark (the minor strategy, generational young windows) read as absent, and
/// another populator's publication just after `ready_before` was read.
pub(crate) fn poke(inner: &Arc<HeapInner>, start: usize, end: usize, ready_before: usize) -> bool {
    let p = &inner.prefill;
    let ahead = target_ahead(inner);
    if ahead == 0 {
        return false;
    }
    p.refills.fetch_add(1, Ordering::Relaxed);
    let absent = end > ready_before;
    if !absent {
        p.refills_ready.fetch_add(1, Ordering::Relaxed);
    }
    wake(inner, ahead);
    absent && end - start <= ahead / 2 && p.running.load(Ordering::Relaxed)
}

/// Start or wake the thread if the present memory above the bump pointer is below half the
/// target `ahead`.
fn wake(inner: &Arc<HeapInner>, ahead: usize) {
    let p = &inner.prefill;
    let m = &inner.moving;
    let top = m.top.load(Ordering::Relaxed);
    if m.ready_end() >= (top + ahead / 2).min(m.end()) {
        return;
    }
    if !p.running.load(Ordering::Acquire) {
        if p.running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            p.starts.fetch_add(1, Ordering::Relaxed);
            let weak = Arc::downgrade(inner);
            let spawned = std::thread::Builder::new()
                .name("faultline-prefill".into())
                .spawn(move || run(weak));
            if spawned.is_err() {
                // No thread: refills make their own memory present, as without prefill.
                p.running.store(false, Ordering::Release);
            }
        }
        return;
    }
    if let Some(t) = p.thread.get() {
        t.unpark();
    }
}

/// Bytes to keep present above the bump pointer: the configured amount, at most a sixteenth of
/// the half; 0 when prefill is off or cannot help (not concurrent, a forked child).
fn target_ahead(inner: &HeapInner) -> usize {
    if !inner.concurrent_now() {
        return 0;
    }
    inner.config.prefill_bytes.min(inner.moving.half_bytes / 16)
}

/// The thread: make chunks present while the target is not met; park otherwise (woken by a
/// refill, or every 50 ms to see whether the heap is gone).
fn run(weak: Weak<HeapInner>) {
    let _prio = weak
        .upgrade()
        .map(|inner| crate::background::enter(&inner.config));
    let mut yielder = crate::background::Yielder::new(
        weak.upgrade()
            .map_or(0, |inner| inner.config.prefill_yield_us),
    );
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let _ = inner.prefill.thread.set(std::thread::current());
        let step = chunk(&inner);
        if matches!(step, Step::Enough) && inner.config.gc_thread_idle {
            // The refills are served: a behind latch an absent buffer set (`poke`) is released
            // here once its hold is over, not only at the next refill (which may not come:
            // the mutators stopped allocating). Outside any chunk and fork-gate region.
            crate::assist::note_schedule(&inner, false);
        }
        drop(inner);
        match step {
            Step::Did { ahead_enough } => {
                // Yield only while the refills are not about to catch up: a thread that gives
                // its CPU to always-runnable mutators (an allocation-heavy workload) waits up to
                // a scheduler tick to get it back, and its refills would then make their
                // memory present themselves.
                if ahead_enough {
                    yielder.between();
                } else {
                    yielder.rest();
                }
            }
            Step::Busy => {
                std::thread::sleep(Duration::from_micros(100));
                yielder.rest();
            }
            Step::Enough => {
                std::thread::park_timeout(Duration::from_millis(50));
                yielder.rest();
            }
        }
    }
}

enum Step {
    /// A chunk was made present; `ahead_enough`: the present memory above the bump pointer
    /// is at least half the target after it (the refills are not close).
    Did { ahead_enough: bool },
    /// The target is met (or nothing can be done now).
    Enough,
    /// A stop of the world or a flip is under way: try again shortly.
    Busy,
}

/// Make one chunk present if the target is not met.
fn chunk(inner: &HeapInner) -> Step {
    let p = &inner.prefill;
    let ahead = target_ahead(inner);
    if ahead == 0 {
        return Step::Enough;
    }
    if inner.sp.requested.load(Ordering::Acquire) {
        return Step::Busy;
    }
    let _fork = crate::forkgate::Region::enter();
    p.inflight.fetch_add(1, Ordering::SeqCst);
    let step = if p.quiet.load(Ordering::SeqCst) {
        Step::Busy
    } else {
        // Read where the half lies only now (a flip cannot run until `inflight` drops).
        let m = &inner.moving;
        let end = m.end();
        let want = (m.top.load(Ordering::Relaxed) + ahead).min(end);
        let ready = m.ready_end();
        if ready >= want {
            Step::Enough
        } else {
            let upto = (ready + CHUNK).min(want);
            let cpu0 = crate::cputime::thread_cpu();
            let r = m.ensure_populated(&inner.arena, ready, upto, CHUNK);
            let ns = crate::cputime::since(cpu0).as_nanos() as u64;
            p.cpu_ns.fetch_add(ns, Ordering::Relaxed);
            match r {
                Ok(()) => {
                    p.chunks.fetch_add(1, Ordering::Relaxed);
                    p.bytes.fetch_add((upto - ready) as u64, Ordering::Relaxed);
                    let top = m.top.load(Ordering::Relaxed);
                    Step::Did {
                        ahead_enough: upto >= (top + ahead / 2).min(end),
                    }
                }
                // A failed population is recorded as a gap that refills fill; stop trying
                // until the next request.
                Err(_) => Step::Enough,
            }
        }
    };
    p.inflight.fetch_sub(1, Ordering::SeqCst);
    step
}
