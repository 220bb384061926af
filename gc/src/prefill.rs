//! Fresh memory made present ahead of the allocators (concurrent mode): a background thread
//! per heap keeps the current half's present memory (`ready`) up to
//! [`crate::HeapConfig::prefill_bytes`] above the bump pointer, so an allocation-buffer refill
//! usually finds its pages present and makes no kernel call.
//!
//! Why: making a fresh page present (a `UFFDIO_COPY` of zeroes, or any first-touch fault) costs
//! 0.7-4 µs a page, 10-20 times what an allocation-heavy mutator spends filling it; done in the
//! refill, it was most of a churning mutator's waits (the `alloc-stall` cause) and what held
//! its MMU at 100 ms near 0.1. The work is the same; it moves off the mutator's path, as a
//! concurrent collector's own threads take marking off it.
//!
//! Invariants:
//! - the thread makes memory present only through [`crate::space::MovingSpace::ensure_populated`],
//!   the refills' own path (claim under the populate lock, kernel call without it, publish),
//!   one chunk of at most [`CHUNK`] bytes at a time, so it never leaves the space's
//!   bookkeeping in a state a refill would not;
//! - no chunk is in flight while a flip runs: a chunk is announced in `inflight` before the
//!   thread reads where the current half lies, and abandoned if `quiet` is set; the flip sets
//!   `quiet` and waits until `inflight` is zero ([`Prefill::quiesce`]) before it reads or resets
//!   the watermarks (both sides `SeqCst`: a flip and a chunk cannot both miss each other), so the
//!   populated end a flip reads covers every page made present in the old half;
//! - a chunk is a fork-gate region ([`crate::forkgate`]): a fork never sees one half-done;
//! - the thread holds only a weak reference to the heap between chunks, so it never keeps a
//!   heap alive; it ends when the heap is gone (it looks at least every 50 ms);
//! - it never waits for a safepoint and takes no lock a pause holds while it waits: a chunk
//!   is skipped while a stop of the world is requested, so pauses wait at most for one chunk
//!   already started.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::thread::Thread;
use std::time::Duration;

use crate::inner::HeapInner;

/// Bytes made present per chunk (one claim and one kernel call; bounds how long a flip, or a
/// refill that caught up with the thread, waits for it).
pub(crate) const CHUNK: usize = 64 << 10;

/// One heap's prefill state (in [`HeapInner`]).
#[derive(Debug, Default)]
pub(crate) struct Prefill {
    /// Chunks in flight (0 or 1: one thread).
    inflight: AtomicUsize,
    /// A flip is running: no chunk may start.
    quiet: AtomicBool,
    /// The thread was started (by the first refill that needed it).
    running: AtomicBool,
    /// The thread's handle, to wake it.
    thread: OnceLock<Thread>,
    /// Chunks made present, and their bytes (counters for tests and reports).
    chunks: AtomicU64,
    bytes: AtomicU64,
    /// Threads started (0 or 1).
    starts: AtomicU64,
    /// Allocation-buffer refills, and those whose pages were all present already.
    refills: AtomicU64,
    refills_ready: AtomicU64,
}

/// What [`crate::Heap::prefill_stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefillStats {
    /// Chunks the prefill thread made present.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Times the thread was started (0 or 1).
    pub starts: u64,
    /// Allocation-buffer refills (moving space, concurrent mode, since creation).
    pub refills: u64,
    /// Of those, the refills whose whole buffer was present already: they made no kernel
    /// call (prefilled, or made present by an earlier refill's batch).
    pub refills_ready: u64,
}

/// While it lives, no prefill chunk runs (see [`Prefill::quiesce`]).
pub(crate) struct Quiet<'a>(&'a Prefill);

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        self.0.quiet.store(false, Ordering::SeqCst);
    }
}

impl Prefill {
    /// The counters.
    pub(crate) fn stats(&self) -> PrefillStats {
        PrefillStats {
            chunks: self.chunks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            starts: self.starts.load(Ordering::Relaxed),
            refills: self.refills.load(Ordering::Relaxed),
            refills_ready: self.refills_ready.load(Ordering::Relaxed),
        }
    }

    /// At a flip (world stopped): wait for a chunk in flight and keep new ones out until the
    /// returned guard drops. Waits at most one chunk (the thread checks `quiet` first).
    pub(crate) fn quiesce(&self) -> Quiet<'_> {
        self.quiet.store(true, Ordering::SeqCst);
        while self.inflight.load(Ordering::SeqCst) != 0 {
            std::thread::yield_now();
        }
        Quiet(self)
    }

    /// A refill got the buffer `[start, end)`; the memory known present before it was below
    /// `ready_before`. Counts it, and if the present memory above the bump pointer is below
    /// half the target, starts or wakes the thread. Cheap when there is enough (a few loads).
    pub(crate) fn poke(&self, inner: &Arc<HeapInner>, end: usize, ready_before: usize) {
        let ahead = target_ahead(inner);
        if ahead == 0 {
            return;
        }
        self.refills.fetch_add(1, Ordering::Relaxed);
        if end <= ready_before {
            self.refills_ready.fetch_add(1, Ordering::Relaxed);
        }
        let m = &inner.moving;
        let top = m.top.load(Ordering::Relaxed);
        if m.ready_end() >= (top + ahead / 2).min(m.end()) {
            return;
        }
        if !self.running.load(Ordering::Acquire) {
            if self
                .running
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.starts.fetch_add(1, Ordering::Relaxed);
                let weak = Arc::downgrade(inner);
                let spawned = std::thread::Builder::new()
                    .name("faultline-prefill".into())
                    .spawn(move || run(weak));
                if spawned.is_err() {
                    // No thread: refills make their own memory present, as without prefill.
                    self.running.store(false, Ordering::Release);
                }
            }
            return;
        }
        if let Some(t) = self.thread.get() {
            t.unpark();
        }
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
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let _ = inner.prefill.thread.set(std::thread::current());
        let step = chunk(&inner);
        drop(inner);
        match step {
            Step::Did => {}
            Step::Busy => std::thread::sleep(Duration::from_micros(100)),
            Step::Enough => std::thread::park_timeout(Duration::from_millis(50)),
        }
    }
}

enum Step {
    /// A chunk was made present.
    Did,
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
            match m.ensure_populated(&inner.arena, ready, upto, CHUNK) {
                Ok(()) => {
                    p.chunks.fetch_add(1, Ordering::Relaxed);
                    p.bytes.fetch_add((upto - ready) as u64, Ordering::Relaxed);
                    Step::Did
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
