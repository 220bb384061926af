//! Fresh memory made present ahead of the allocators (concurrent mode), its state: a background
//! thread ([`crate::prefiller`])
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
use std::sync::OnceLock;
use std::thread::Thread;

/// Bytes made present per chunk (one claim and one kernel call; bounds how long a flip, or a
/// refill that caught up with the thread, waits for it: see
/// [`crate::HeapConfig::refill_wait_rounds`]).
pub(crate) const CHUNK: usize = 64 << 10;

/// One heap's prefill state (in [`crate::inner::HeapInner`]; the thread that uses it is
/// [`crate::prefiller`]).
#[derive(Debug, Default)]
pub(crate) struct Prefill {
    /// Chunks in flight (0 or 1: one thread).
    pub(crate) inflight: AtomicUsize,
    /// A flip is running: no chunk may start.
    pub(crate) quiet: AtomicBool,
    /// The thread was started (by the first refill that needed it).
    pub(crate) running: AtomicBool,
    /// The thread's handle, to wake it.
    pub(crate) thread: OnceLock<Thread>,
    /// Chunks made present, their bytes, and the prefill thread's CPU in making them present
    /// (ns; counters for tests and reports).
    pub(crate) chunks: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) cpu_ns: AtomicU64,
    /// Threads started (0 or 1).
    pub(crate) starts: AtomicU64,
    /// Allocation-buffer refills, and those whose pages were all present already.
    pub(crate) refills: AtomicU64,
    pub(crate) refills_ready: AtomicU64,
    /// `bytes` and `cpu_ns` when the running (or last) concurrent cycle's initial mark began,
    /// and when the last one was recorded ([`Prefill::cycle_shares`]).
    bytes_at_mark: AtomicU64,
    bytes_at_end: AtomicU64,
    cpu_at_mark: AtomicU64,
    cpu_at_end: AtomicU64,
}

/// What [`crate::Heap::prefill_stats`] reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefillStats {
    /// Chunks the prefill thread made present.
    pub chunks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The prefill thread's CPU in making them present (its thread CPU clock around each
    /// chunk's kernel calls): collector-thread CPU for the suite's GC CPU, though a
    /// stop-the-world heap's mutators do the same work in their refills.
    pub cpu: std::time::Duration,
    /// Times the thread was started (0 or 1).
    pub starts: u64,
    /// Allocation-buffer refills (moving space, concurrent mode, since creation).
    pub refills: u64,
    /// Of those, the refills whose whole buffer was present already: they made no kernel
    /// call (prefilled, or made present by an earlier refill's batch).
    pub refills_ready: u64,
    /// Refills that found pages of their buffer claimed by a populator still in flight (the
    /// prefill thread, another refill, recycling) and made them present themselves, after
    /// at most [`crate::HeapConfig::refill_wait_rounds`] microseconds of spinning (since
    /// creation).
    pub refills_overlapped: u64,
    /// Of those, the refills that waited (spun) for the other populator first.
    pub refills_waited: u64,
}

/// Fresh memory the prefill thread made present over a stretch of time, and its CPU in doing
/// so ([`crate::CycleStats::prefilled`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrefillShare {
    /// Bytes made present.
    pub bytes: u64,
    /// The prefill thread's CPU in making them present.
    pub cpu: std::time::Duration,
}

/// While it lives, no prefill chunk runs (see [`Prefill::quiesce`]).
pub(crate) struct Quiet<'a>(&'a Prefill);

impl Drop for Quiet<'_> {
    fn drop(&mut self) {
        self.0.quiet.store(false, Ordering::SeqCst);
    }
}

impl Prefill {
    /// The counters (`overlap`: the moving space's
    /// [`crate::space::MovingSpace::overlap_counts`]).
    pub(crate) fn stats(&self, overlap: (u64, u64)) -> PrefillStats {
        PrefillStats {
            chunks: self.chunks.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            cpu: std::time::Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed)),
            starts: self.starts.load(Ordering::Relaxed),
            refills: self.refills.load(Ordering::Relaxed),
            refills_ready: self.refills_ready.load(Ordering::Relaxed),
            refills_overlapped: overlap.0,
            refills_waited: overlap.1,
        }
    }

    /// A concurrent cycle's initial mark begins (world stopped).
    pub(crate) fn note_cycle_start(&self) {
        let b = self.bytes.load(Ordering::Relaxed);
        self.bytes_at_mark.store(b, Ordering::Relaxed);
        let c = self.cpu_ns.load(Ordering::Relaxed);
        self.cpu_at_mark.store(c, Ordering::Relaxed);
    }

    /// A concurrent cycle ends (on its GC thread; cycles never overlap): what was made
    /// present since the previous one ended and before this one's initial mark, and what
    /// during this one.
    pub(crate) fn cycle_shares(&self) -> [PrefillShare; 2] {
        let split = |now: &AtomicU64, at_mark: &AtomicU64, at_end: &AtomicU64| {
            let n = now.load(Ordering::Relaxed);
            let start = at_mark.load(Ordering::Relaxed);
            let end = at_end.swap(n, Ordering::Relaxed);
            (start.saturating_sub(end), n.saturating_sub(start))
        };
        let b = split(&self.bytes, &self.bytes_at_mark, &self.bytes_at_end);
        let c = split(&self.cpu_ns, &self.cpu_at_mark, &self.cpu_at_end);
        [
            PrefillShare {
                bytes: b.0,
                cpu: std::time::Duration::from_nanos(c.0),
            },
            PrefillShare {
                bytes: b.1,
                cpu: std::time::Duration::from_nanos(c.1),
            },
        ]
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_reports_what_was_made_present_before_its_initial_mark_and_during_it() {
        let p = Prefill::default();
        let add = |b: u64, ns: u64| {
            p.bytes.fetch_add(b, Ordering::Relaxed);
            p.cpu_ns.fetch_add(ns, Ordering::Relaxed);
        };
        let bytes = |s: [PrefillShare; 2]| (s[0].bytes, s[1].bytes);
        let ns = |s: [PrefillShare; 2]| (s[0].cpu.as_nanos(), s[1].cpu.as_nanos());
        add(100, 1000); // before the first cycle
        p.note_cycle_start();
        add(40, 400);
        let s = p.cycle_shares();
        assert_eq!((bytes(s), ns(s)), ((100, 40), (1000, 400)));
        add(7, 70); // between the cycles
        p.note_cycle_start();
        add(3, 30);
        let s = p.cycle_shares();
        assert_eq!((bytes(s), ns(s)), ((7, 3), (70, 30)));
        // A cycle with no prefill at all.
        p.note_cycle_start();
        let s = p.cycle_shares();
        assert_eq!((bytes(s), ns(s)), ((0, 0), (0, 0)));
    }
}
