//! The spaces inside the volatile arena.
//!
//! ```text
//!  arena:  [ half 0 (max_heap) | half 1 (max_heap) | large-object space ]
//!  moving space: objects are bump-allocated in the *current* half; a collection compacts the
//!  live ones into the other half, which becomes current; the old half is released.
//!  With pinned objects ([`crate::pins`]) a half's *window* `[base, end)`
//!  ([`MovingSpace::base`], [`MovingSpace::end`]) may start above its first page and end
//!  below its last: outside it lie only stranded (pinned) objects and garbage pages.
//! ```
//!
//! Invariants:
//! - `top` only grows between collections, by CAS, and never passes the current half's end;
//!   `[window, top)` is a parseable sequence of objects (zero words are one-word fillers);
//!   the window (both ends page aligned) changes only in a pause, and no stranded object
//!   lies inside it;
//! - `populated` (guarded by its mutex) is the page-aligned end of the memory *claimed* in the
//!   current half: every page below it is present, or being made present by a refill or a
//!   recycling step in flight (never at a pause: refills and recycling finish before one);
//!   everything from it to the half's end is absent, but the *kept* pages
//!   a flip handed over ([`MovingSpace::set_kept`], [`crate::release`]): present,
//!   garbage, inside the dirty range; a claim that reaches them makes no call for them, and a
//!   flip releases those no claim reached with the half ([`MovingSpace::present_end`]). The
//!   mutex guards bookkeeping only: no kernel call is made while it is held, so refills of
//!   different mutators make their memory present in parallel;
//! - `ready` (at most `populated`) is the page-aligned end of the memory known present: a
//!   refill whose range ends below it makes no call at all. It advances only over ranges whose
//!   population finished, in address order (a range that finishes early waits in `pending`);
//! - every buffer handed out is present and zero: a refill makes its own pages present (a lost
//!   race with another populating refill is an `EEXIST` the arena steps over: `UFFDIO_COPY`
//!   never overwrites a present page) and zeroes the part of its own range that lies in the
//!   `dirty` range, the pages recycled from the old half ([`crate::release`]) or kept after an
//!   in-place slide, or kept at a flip, whose contents are garbage. The dirty range is
//!   extended *before* recycled pages are moved in (to the union with the kept pages), and
//!   reset at every flip (a slide sets it to the tail it kept, a flip to the kept pages, with
//!   the world stopped);
//! - generational mode: the old generation `[old_lo, old_lo + old_len)` is a page-aligned
//!   prefix of one half below that half's window ([`crate::generational`]); it changes only
//!   in a pause;
//! - the large-object space hands out whole pages; each object's pages are made present when it
//!   is allocated and released when it dies; its bookkeeping is behind one mutex (large objects
//!   are rare), its mark bits are atomic (one bit per page, set at the object's first page);
//!   the objects a concurrent cycle's flip found dead (or left to its end to decide) are held
//!   there, still allocated, from that flip until the cycle ends, and are empty between
//!   cycles ([`LargeInner::flip_dead`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use faultline_heap::bitmap::Bitmap;
use faultline_heap::{page_down, page_up, ArenaError, ArenaOffset, VolatileArena, PAGE_SIZE};

/// A page range `[lo, hi)` (absolute addresses) in two atomics, `(0, 0)` when empty: the kept
/// and planned pages of [`crate::release`], a half's kept and dirty pages
/// ([`MovingSpace::set_kept`], [`MovingSpace::claim_recycled`]), the pages a compaction keeps.
/// Each is written by one thread at a time, at points its owner names (a pause, the GC thread
/// between phases, under the populate lock); `lo` is stored before `hi`, and read before it.
#[derive(Debug, Default)]
pub(crate) struct AtomicRange {
    lo: AtomicUsize,
    hi: AtomicUsize,
}

impl AtomicRange {
    /// The range as stored (`(0, 0)`: empty).
    pub(crate) fn raw(&self) -> (usize, usize) {
        (
            self.lo.load(Ordering::Acquire),
            self.hi.load(Ordering::Acquire),
        )
    }

    /// The range, if it holds a page.
    pub(crate) fn get(&self) -> Option<(usize, usize)> {
        let (lo, hi) = self.raw();
        (hi > lo).then_some((lo, hi))
    }

    /// Store `[lo, hi)` (`lo >= hi`: empty).
    pub(crate) fn set(&self, lo: usize, hi: usize) {
        self.lo.store(lo, Ordering::Release);
        self.hi.store(hi, Ordering::Release);
    }

    /// The range, if it holds a page, and forget it.
    pub(crate) fn take(&self) -> Option<(usize, usize)> {
        let lo = self.lo.swap(0, Ordering::AcqRel);
        let hi = self.hi.swap(0, Ordering::AcqRel);
        (hi > lo).then_some((lo, hi))
    }
}

/// The moving space (two halves).
#[derive(Debug)]
pub struct MovingSpace {
    /// Bytes per half.
    pub half_bytes: usize,
    /// Arena offset of each half.
    pub half_offset: [ArenaOffset; 2],
    /// Absolute address of each half.
    pub half_base: [usize; 2],
    /// Index of the current half (changes only inside a pause).
    pub current: AtomicUsize,
    /// Start of the current half's window (absolute, page aligned; the half's base unless
    /// stranded pinned objects lie in it; changes only inside a pause).
    pub window: AtomicUsize,
    /// End of the current half's window (absolute, page aligned; the half's end unless
    /// stranded pinned objects lie above the window; changes only inside a pause).
    pub window_end: AtomicUsize,
    /// Bump pointer in the current half (absolute).
    pub top: AtomicUsize,
    /// End of claimed memory in the current half (absolute, page aligned; see the module
    /// invariants).
    pub populated: Mutex<usize>,
    /// End of memory known present (absolute, page aligned, at most `populated`).
    ready: AtomicUsize,
    /// Finished populations above `ready`, waiting for one below them.
    pending: Mutex<Vec<(usize, usize)>>,
    /// A population failed after its claim: the pages between `ready` and `populated` may
    /// hold a hole, so refills populate from `ready` until it catches up.
    gap: AtomicBool,
    /// Refills that found (part of) their range claimed by a populator still in flight and
    /// made those pages present themselves, and those of them that waited first (counters
    /// for reports).
    overlaps: AtomicU64,
    waited: AtomicU64,
    /// How many microseconds a refill spins for a populator in flight before it makes the
    /// pages present itself ([`crate::HeapConfig::refill_wait_rounds`]; 0: never waits).
    wait_rounds: AtomicUsize,
    /// Recycled (or kept) pages in the current half: present, contents garbage (written at a
    /// flip, or under the populate lock when recycling claims more; read by refills unlocked).
    dirty: AtomicRange,
    /// Kept pages of the current half ([`crate::release`]): present,
    /// contents garbage (inside the dirty range), at or above `populated` when set at a flip;
    /// a claim that reaches them makes no kernel call for them. Set only at a flip (world
    /// stopped), read under the populate lock (0, 0: none).
    kept: AtomicRange,
    /// Generational mode: the old generation `[old_lo, old_lo + old_len)`, below a window
    /// ([`crate::generational`]; changes only in a pause; empty otherwise).
    old_lo: AtomicUsize,
    old_len: AtomicUsize,
}

/// How many microseconds a refill spins for a populator in flight unless configured otherwise
/// ([`crate::HeapConfig::refill_wait_rounds`]): none, the refill makes its pages present at
/// once ([`crate::DEFAULT_REFILL_WAIT_ROUNDS`] says why; 64 from session s9 to s30; a round
/// was a `sched_yield` before s9: about a microsecond when no other thread wanted the CPU, a
/// time slice or more when one did, see [`crate::spinwait`]).
pub const DEFAULT_WAIT_ROUNDS: usize = 0;

/// The spinning wait the tests exercise (the default before session s30).
#[cfg(test)]
const SPIN_ROUNDS: usize = 64;

/// A range a caller must make present: `[start, end)`, page aligned; `fresh`: it includes
/// pages this caller claimed (a failure then leaves a gap).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Claim {
    start: usize,
    end: usize,
    fresh: bool,
}

impl MovingSpace {
    /// A moving space of two halves of `half_bytes` each at `base` (half 0 current, empty).
    pub fn new(base: usize, half_bytes: usize) -> Self {
        MovingSpace {
            half_bytes,
            half_offset: [ArenaOffset(0), ArenaOffset(half_bytes)],
            half_base: [base, base + half_bytes],
            current: AtomicUsize::new(0),
            window: AtomicUsize::new(base),
            window_end: AtomicUsize::new(base + half_bytes),
            top: AtomicUsize::new(base),
            populated: Mutex::new(base),
            ready: AtomicUsize::new(base),
            pending: Mutex::new(Vec::with_capacity(8)),
            gap: AtomicBool::new(false),
            overlaps: AtomicU64::new(0),
            waited: AtomicU64::new(0),
            wait_rounds: AtomicUsize::new(DEFAULT_WAIT_ROUNDS),
            dirty: AtomicRange::default(),
            kept: AtomicRange::default(),
            old_lo: AtomicUsize::new(0),
            old_len: AtomicUsize::new(0),
        }
    }

    /// Base of the current half's window: where its objects start.
    #[inline]
    pub fn base(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }
    /// End of the current half's window: objects, allocation and claimed memory stay below
    /// it.
    #[inline]
    pub fn end(&self) -> usize {
        self.window_end.load(Ordering::Relaxed)
    }
    /// Bytes in use in the current half.
    pub fn used(&self) -> usize {
        self.top.load(Ordering::Relaxed) - self.base()
    }
    /// Whether `a` lies in the current half's used part.
    #[inline]
    pub fn contains_used(&self, a: usize) -> bool {
        a >= self.base() && a < self.top.load(Ordering::Relaxed)
    }
    /// Whether `a` lies in the old generation (generational mode).
    #[inline]
    pub fn contains_old(&self, a: usize) -> bool {
        a.wrapping_sub(self.old_lo.load(Ordering::Relaxed)) < self.old_len.load(Ordering::Relaxed)
    }
    /// The old generation `[lo, hi)` (empty: `lo == hi`).
    pub fn old_range(&self) -> (usize, usize) {
        let lo = self.old_lo.load(Ordering::Relaxed);
        (lo, lo + self.old_len.load(Ordering::Relaxed))
    }
    /// Set the old generation (in a pause).
    pub(crate) fn set_old_range(&self, lo: usize, hi: usize) {
        self.old_lo.store(lo, Ordering::Relaxed);
        self.old_len.store(hi.saturating_sub(lo), Ordering::Relaxed);
    }
    /// Whether `a` lies in the half that is not current.
    pub fn in_other_half(&self, a: usize) -> bool {
        let other = self.half_base[1 - self.current.load(Ordering::Relaxed)];
        a >= other && a < other + self.half_bytes
    }

    /// Bytes claimed or made present above the allocation pointer: the fresh memory the
    /// mutators have ahead of them (refills, the prefiller and recycling claim it; kept pages
    /// count).
    pub(crate) fn fresh_ahead(&self) -> usize {
        let top = self.top.load(Ordering::Relaxed);
        let pop = *self.lock_populated();
        self.present_end(pop).saturating_sub(top)
    }

    fn lock_populated(&self) -> std::sync::MutexGuard<'_, usize> {
        self.populated
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Carve `bytes` off the current half; `None` if it is full. Makes the memory present and
    /// zero.
    pub fn bump(
        &self,
        arena: &VolatileArena,
        bytes: usize,
        batch: usize,
    ) -> Result<Option<usize>, ArenaError> {
        let end = self.end();
        let mut cur = self.top.load(Ordering::Relaxed);
        let start = loop {
            if cur + bytes > end {
                return Ok(None);
            }
            match self.top.compare_exchange_weak(
                cur,
                cur + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break cur,
                Err(actual) => cur = actual,
            }
        };
        self.ensure_populated(arena, start, start + bytes, batch)?;
        self.zero_recycled(start, start + bytes);
        Ok(Some(start))
    }

    /// Make `[from, upto)` of the current half present: at once if it lies below `ready`;
    /// else this refill claims the pages from `populated` up to `upto` rounded up to `batch`
    /// (capped at the half's end) and makes them present, with no lock held during the kernel
    /// call. Pages of its range that another populator (a refill, the prefill thread, a
    /// recycling step) claimed and has not finished are made present here too, after at most
    /// `wait_rounds` microseconds of spinning for it ([`Self::set_wait_rounds`]; it never
    /// gives its CPU away; 0: at once, so the refill never
    /// waits however long the other one is preempted): whoever comes second steps over the
    /// pages present (`EEXIST`).
    pub fn ensure_populated(
        &self,
        arena: &VolatileArena,
        from: usize,
        upto: usize,
        batch: usize,
    ) -> Result<(), ArenaError> {
        match self.claim_for(from, upto, batch) {
            Some(claim) => self.fill(arena, claim),
            None => Ok(()),
        }
    }

    /// The bookkeeping half of [`Self::ensure_populated`] (under the populate lock): the range
    /// this caller must make present, or `None` if `[from, upto)` is present already.
    fn claim_for(&self, from: usize, upto: usize, batch: usize) -> Option<Claim> {
        if upto <= self.ready.load(Ordering::Acquire) {
            return None;
        }
        let base = self.base();
        let mut pop = self.lock_populated();
        let ready = self.ready.load(Ordering::Acquire);
        if upto <= ready {
            return None;
        }
        let gap = self.gap.load(Ordering::Acquire);
        if gap && ready >= *pop {
            self.gap.store(false, Ordering::Release);
        }
        // After a failed population, start at `ready` so the hole is filled.
        let start = if gap {
            ready
        } else {
            page_down(from).max(ready)
        };
        if upto <= *pop {
            // Claimed by a populator in flight (or a hole): make these pages present here,
            // after a bounded wait for it if configured.
            self.overlaps.fetch_add(1, Ordering::Relaxed);
            let rounds = self.wait_rounds.load(Ordering::Relaxed);
            if !gap && rounds > 0 {
                drop(pop);
                self.waited.fetch_add(1, Ordering::Relaxed);
                if self.wait_ready(upto, rounds) {
                    return None;
                }
            }
            return Some(Claim {
                start,
                end: page_up(upto),
                fresh: false,
            });
        }
        let target = ((upto - base).div_ceil(batch) * batch).min(self.end() - base) + base;
        let claimed_from = *pop;
        *pop = target;
        if start < claimed_from {
            self.overlaps.fetch_add(1, Ordering::Relaxed);
        }
        Some(Claim {
            start: start.min(claimed_from),
            end: target,
            fresh: true,
        })
    }

    /// Make a claim's pages present (no lock held) and publish them; a failed fresh claim
    /// leaves a gap that later refills fill.
    /// Kept pages in the claim (present already, see [`Self::set_kept`]) take no kernel call,
    /// unless write tracking wants fresh pages write-protected.
    fn fill(&self, arena: &VolatileArena, claim: Claim) -> Result<(), ArenaError> {
        let (klo, khi) = self.kept();
        let (klo, khi) = (
            klo.clamp(claim.start, claim.end),
            khi.clamp(claim.start, claim.end),
        );
        let mut r = Ok(());
        for (s, e) in [(claim.start, klo), (khi, claim.end)] {
            if e > s && r.is_ok() {
                r = arena.populate(arena.offset_of(s), e - s).map(drop);
            }
        }
        if khi > klo && r.is_ok() && arena.populates_protected() {
            // As `populate` protects the pages it maps while write tracking is on.
            r = arena.write_protect(arena.offset_of(klo), khi - klo, true);
        }
        if let Err(e) = r {
            if claim.fresh {
                // The claim stays (later claims may follow it); refills fill the hole.
                self.gap.store(true, Ordering::Release);
            }
            return Err(e);
        }
        self.publish(claim.start, claim.end);
        Ok(())
    }

    /// The kept pages `[lo, hi)` of the current half (`(0, 0)`: none).
    fn kept(&self) -> (usize, usize) {
        self.kept.raw()
    }

    /// Whether the claimed end lies inside the kept pages: recycling cannot claim there
    /// ([`Self::claim_recycled`]) until the refills have claimed them.
    pub(crate) fn kept_in_the_way(&self) -> bool {
        let pop = *self.lock_populated();
        let (klo, khi) = self.kept();
        pop >= klo && pop < khi
    }

    /// The end of what the current half may hold present: the claimed end `pop`, or the
    /// kept pages' end above it (pages a flip must release with the half).
    pub(crate) fn present_end(&self, pop: usize) -> usize {
        pop.max(self.kept.raw().1)
    }

    /// Refills that made present pages claimed by a populator still in flight, and those of
    /// them that waited first (see [`Self::ensure_populated`]).
    pub fn overlap_counts(&self) -> (u64, u64) {
        (
            self.overlaps.load(Ordering::Relaxed),
            self.waited.load(Ordering::Relaxed),
        )
    }

    /// How many microseconds a refill spins for a populator in flight (0: never).
    pub fn set_wait_rounds(&self, rounds: usize) {
        self.wait_rounds.store(rounds, Ordering::Relaxed);
    }

    /// Spin at most `rounds` microseconds for `ready` to pass `upto` (never `sched_yield`:
    /// [`crate::spinwait`]); false if it did not (the claimer is slow, preempted or failed:
    /// the caller then populates its own pages).
    fn wait_ready(&self, upto: usize, rounds: usize) -> bool {
        crate::spinwait::spin_until(rounds, || {
            self.ready.load(Ordering::Acquire) >= upto || self.gap.load(Ordering::Acquire)
        });
        self.ready.load(Ordering::Acquire) >= upto
    }

    /// Record that `[start, end)` is present; advance `ready` over it if it joins it.
    pub(crate) fn publish(&self, start: usize, end: usize) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let ready = self.ready.load(Ordering::Acquire);
        if start > ready {
            pending.push((start, end));
            return;
        }
        let mut hi = ready.max(end);
        loop {
            let before = pending.len();
            pending.retain(|&(s, e)| {
                if s <= hi {
                    hi = hi.max(e);
                    false
                } else {
                    true
                }
            });
            if pending.len() == before {
                break;
            }
        }
        self.ready.store(hi, Ordering::Release);
    }

    /// Claim `pages` pages (fewer at the half's end) at the claimed end for recycled memory:
    /// the range is marked dirty first, so that a refill which makes any of its pages present
    /// meanwhile zeroes them. Returns the claimed range's start and page count (0: no room).
    /// Publish the range with [`Self::publish`] once its pages are present.
    pub(crate) fn claim_recycled(&self, pages: usize) -> (usize, usize) {
        let mut pop = self.lock_populated();
        // Never into kept pages (present: a move there fails): stop below them.
        let (klo, khi) = self.kept();
        let end = if khi > *pop { klo } else { self.end() };
        let n = pages.min(end.saturating_sub(*pop) / PAGE_SIZE);
        if n == 0 {
            return (*pop, 0);
        }
        let start = *pop;
        // The union with the dirty range (kept pages above may be in it).
        let end = start + n * PAGE_SIZE;
        let (dlo, dhi) = match self.dirty.get() {
            Some((lo, hi)) => (lo.min(start), hi.max(end)),
            None => (start, end),
        };
        self.dirty.set(dlo, dhi);
        *pop = start + n * PAGE_SIZE;
        (start, n)
    }

    /// Mark a claimed range as unfillable: refills populate from `ready` from now on.
    pub(crate) fn note_gap(&self) {
        self.gap.store(true, Ordering::Release);
    }

    /// Zero the part of `[start, end)` (a refill's own, fresh range) that lies in the recycled
    /// pages.
    fn zero_recycled(&self, start: usize, end: usize) {
        let (lo, hi) = self.dirty.raw();
        let (lo, hi) = (lo.max(start), hi.min(end));
        if lo < hi {
            // SAFETY: `[lo, hi)` lies in `[start, end)`, which the caller's CAS on `top` gave
            // to this refill alone and which `ensure_populated` made present; no object lives
            // there yet (it is above the old `top`), and nothing else writes it.
            unsafe { core::ptr::write_bytes(lo as *mut u8, 0, hi - lo) };
        }
    }

    /// After [`Self::reset_watermarks`], with the world stopped: `[lo, hi)` (page aligned,
    /// below `populated`, above `top`) is present but holds garbage (the free tail an in-place
    /// slide kept, [`crate::release::release_free_tail`]): refills zero what they hand out
    /// of it.
    pub(crate) fn keep_dirty(&self, lo: usize, hi: usize) {
        if lo < hi {
            self.dirty.set(lo, hi);
        }
    }

    /// At a flip (world stopped), after [`Self::reset_watermarks`]: `[lo, hi)` (page aligned,
    /// at or above `populated`, in the current half's window) is present but holds garbage
    /// (the old half's pages kept for this flip, [`crate::release`]): claims that reach it
    /// make no kernel call for it, and refills zero what they hand out of it.
    pub(crate) fn set_kept(&self, lo: usize, hi: usize) {
        if lo < hi {
            // (The caller holds the populate lock: `lo` is at or above `populated`.)
            debug_assert!(hi <= self.end());
            self.kept.set(lo, hi);
            self.keep_dirty(lo, hi);
        }
    }

    /// The end of the memory known present in the current half (see the module invariants).
    pub(crate) fn ready_end(&self) -> usize {
        self.ready.load(Ordering::Acquire)
    }

    /// At a flip (world stopped, no refill or recycling in flight), after `populated` was set
    /// to `end` for the new current half: everything below `end` is present and zero.
    pub fn reset_watermarks(&self, end: usize) {
        self.ready.store(end, Ordering::Release);
        self.gap.store(false, Ordering::Release);
        self.dirty.set(0, 0);
        self.kept.set(0, 0);
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// Bookkeeping of the large-object space.
#[derive(Debug, Default)]
pub struct LargeInner {
    /// Free ranges: start -> length (bytes).
    pub free: BTreeMap<usize, usize>,
    /// Live objects: start -> length (bytes, page multiple).
    pub objects: BTreeMap<usize, usize>,
    /// Bytes held by objects.
    pub used: usize,
    /// Objects allocated since the collector last took this list (start, length): what a
    /// concurrent cycle's flip looks at beyond the objects it examined before its pause.
    pub allocated: Vec<(usize, usize)>,
    /// The objects a concurrent cycle's flip found dead (unmarked), held (still allocated, so
    /// that nothing reuses their space) until the cycle ends ([`LargeSpace::release_flip_dead`]),
    /// whoever ends it: its finish on the GC thread, or a forked child's fork handler.
    pub flip_dead: Vec<(usize, usize)>,
    /// The objects that flip left to the cycle's end to decide (unmarked then, no references):
    /// dead if still unmarked then (no large-object mark is set or cleared from a flip to its
    /// cycle's end).
    pub flip_deferred: Vec<(usize, usize)>,
}

/// The non-moving large-object space.
#[derive(Debug)]
pub struct LargeSpace {
    /// Absolute base.
    pub base: usize,
    /// Bytes.
    pub size: usize,
    /// Mark bits, one per page (set at an object's first page).
    pub marks: Bitmap,
    /// Pages below the end of the highest object ever allocated (monotonic): no mark bit at or
    /// above it is ever set, so clearing the marks stops there ([`LargeSpace::clear_marks`]).
    pub high_pages: AtomicUsize,
    /// Free list and object table.
    pub inner: Mutex<LargeInner>,
    /// `LargeInner::used`, mirrored (written under the lock, read without it): the allocation
    /// slow path reads the occupancy on every refill, and the lock is held across kernel calls
    /// (a large object's population, a batch of releases), which held every refilling mutator
    /// for milliseconds.
    used_bytes: AtomicUsize,
}

impl LargeSpace {
    /// A space of `size` bytes at `base`.
    pub fn new(base: usize, size: usize) -> Self {
        let mut inner = LargeInner::default();
        if size > 0 {
            inner.free.insert(base, size);
        }
        LargeSpace {
            base,
            size,
            marks: Bitmap::new((size / PAGE_SIZE).max(1)),
            high_pages: AtomicUsize::new(0),
            inner: Mutex::new(inner),
            used_bytes: AtomicUsize::new(0),
        }
    }

    /// Lock the bookkeeping (a poisoned lock is still consistent: every update is one step).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, LargeInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `a` lies inside the space.
    #[inline]
    pub fn contains(&self, a: usize) -> bool {
        a >= self.base && a < self.base + self.size
    }

    /// Page index of `a`.
    #[inline]
    pub fn page_of(&self, a: usize) -> usize {
        (a - self.base) / PAGE_SIZE
    }

    /// Allocate `bytes` (rounded to pages), first fit; present and zeroed.
    pub fn alloc(&self, arena: &VolatileArena, bytes: usize) -> Result<Option<usize>, ArenaError> {
        let len = bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut g = self.lock();
        let Some((&start, &flen)) = g.free.iter().find(|(_, &l)| l >= len) else {
            return Ok(None);
        };
        g.free.remove(&start);
        if flen > len {
            g.free.insert(start + len, flen - len);
        }
        if let Err(e) = arena.populate(arena.offset_of(start), len) {
            // Give the range back: nothing was handed out.
            Self::insert_free(&mut g, start, len);
            return Err(e);
        }
        g.objects.insert(start, len);
        g.allocated.push((start, len));
        g.used += len;
        self.used_bytes.store(g.used, Ordering::Relaxed);
        self.high_pages
            .fetch_max(self.page_of(start + len - 1) + 1, Ordering::Relaxed);
        Ok(Some(start))
    }

    /// Clear the mark bits (world stopped, or before marking starts): only the words that
    /// cover pages ever allocated ([`LargeSpace::high_pages`]). A cycle's pause cleared the
    /// whole bitmap, one bit per page of the space, whatever was in use: 16 Ki words for the
    /// 4 GiB large space of a 1 GiB suite run, in the initial-mark pause that is otherwise
    /// O(roots).
    pub fn clear_marks(&self) {
        self.marks
            .clear_words(self.high_pages.load(Ordering::Relaxed).div_ceil(64));
    }

    fn insert_free(g: &mut LargeInner, start: usize, len: usize) {
        let mut s = start;
        let mut l = len;
        if let Some((&ps, &pl)) = g.free.range(..s).next_back() {
            if ps + pl == s {
                g.free.remove(&ps);
                s = ps;
                l += pl;
            }
        }
        if let Some(&nl) = g.free.get(&(s + l)) {
            g.free.remove(&(s + l));
            l += nl;
        }
        g.free.insert(s, l);
    }

    /// Free the objects `dead` (found unmarked by this cycle's flip: until this call they stay
    /// allocated, so their space cannot be handed out again before their pages are released).
    /// Returns bytes freed.
    pub fn release_dead(
        &self,
        arena: &VolatileArena,
        dead: &[(usize, usize)],
    ) -> Result<usize, ArenaError> {
        self.release_locked(&mut self.lock(), arena, dead)
    }

    /// At a concurrent cycle's flip (world stopped): hold `dead` and `deferred` until the
    /// cycle ends ([`LargeInner::flip_dead`], [`LargeInner::flip_deferred`]).
    pub fn hold_flip_dead(&self, dead: Vec<(usize, usize)>, deferred: Vec<(usize, usize)>) {
        let mut g = self.lock();
        debug_assert!(g.flip_dead.is_empty() && g.flip_deferred.is_empty());
        g.flip_dead = dead;
        g.flip_deferred = deferred;
    }

    /// The cycle that held dead objects at its flip ends: free them, and the deferred ones
    /// still unmarked ([`LargeSpace::release_dead`]; none held: nothing to do). Returns bytes
    /// freed.
    pub fn release_flip_dead(&self, arena: &VolatileArena) -> Result<usize, ArenaError> {
        let mut g = self.lock();
        let mut dead = std::mem::take(&mut g.flip_dead);
        let deferred = std::mem::take(&mut g.flip_deferred);
        dead.extend(self.unmarked(&deferred));
        self.release_locked(&mut g, arena, &dead)
    }

    /// The objects of `objs` (start, length) whose mark is clear.
    pub fn unmarked<'a>(
        &'a self,
        objs: &'a [(usize, usize)],
    ) -> impl Iterator<Item = (usize, usize)> + 'a {
        objs.iter()
            .copied()
            .filter(|&(s, _)| !self.marks.get(self.page_of(s)))
    }

    /// [`LargeSpace::release_dead`] under the lock `g`.
    fn release_locked(
        &self,
        g: &mut LargeInner,
        arena: &VolatileArena,
        dead: &[(usize, usize)],
    ) -> Result<usize, ArenaError> {
        // One batch of releases for all of them (a `madvise` each cost an IPI each). If one
        // fails, exactly the objects released before it are freed: the rest stay allocated,
        // present (the next cycle reads their headers, a young cycle scans them as roots), and
        // are found dead again next cycle.
        let ranges: Vec<_> = dead.iter().map(|&(s, l)| (arena.offset_of(s), l)).collect();
        let (released, r) = arena.release_leading(&ranges);
        let mut freed = 0;
        for &(s, l) in &dead[..released] {
            g.objects.remove(&s);
            g.used -= l;
            Self::insert_free(g, s, l);
            freed += l;
        }
        self.used_bytes.store(g.used, Ordering::Relaxed);
        r.map(|()| freed)
    }

    /// Bytes held by objects (no lock: the value of the last update, which a racing
    /// allocation or release may make stale at once, as the locked read could).
    pub fn used(&self) -> usize {
        self.used_bytes.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use faultline_heap::arena::{ArenaConfig, Backing, FaultDelivery};
    use faultline_heap::{Capability, Probe};
    use std::sync::mpsc;

    const HALF: usize = 64 * PAGE_SIZE;

    /// A disarmed injector under which release batches are refused (`process_madvise`
    /// EINVAL: each range goes by its own `madvise`) and the second `madvise` fails with EIO:
    /// a batch of releases that fails part-way.
    pub(crate) fn second_release_fails() -> std::sync::Arc<faultline_heap::inject::FaultInjector> {
        use faultline_heap::inject::{FaultInjector, Rule, Trigger};
        use faultline_heap::sys::Call;
        use faultline_heap::Errno;
        std::sync::Arc::new(
            FaultInjector::new(
                vec![
                    Rule::new(Call::ProcessMadvise, Errno::EINVAL, Trigger::Always),
                    Rule::new(Call::Madvise, Errno::EIO, Trigger::Nth(2)),
                ],
                7,
            )
            .disarmed(),
        )
    }

    /// An anonymous arena of `bytes` with fault delivery `delivery`, its kernel calls made
    /// through `inj` (the tests that inject a kernel's errors into a space's releases).
    pub(crate) fn injected_arena(
        bytes: usize,
        delivery: FaultDelivery,
        inj: &std::sync::Arc<faultline_heap::inject::FaultInjector>,
    ) -> VolatileArena {
        VolatileArena::new(
            ArenaConfig::new(bytes)
                .backing(Backing::Anonymous)
                .delivery(delivery)
                .sys(faultline_heap::sys::Sys::new(inj.clone())),
        )
        .unwrap()
    }

    /// An anonymous registered arena of two halves and its moving space (half 0 current,
    /// nothing present); `None` (with the skip notice) where userfaultfd is unavailable.
    fn setup(test: &str) -> Option<(VolatileArena, MovingSpace)> {
        if !Probe::run().supports(Capability::Sigbus) {
            eprintln!("SKIPPED: {test}: userfaultfd sigbus unavailable here");
            return None;
        }
        let arena = VolatileArena::new(
            ArenaConfig::new(2 * HALF)
                .backing(Backing::Anonymous)
                .delivery(FaultDelivery::Sigbus),
        )
        .unwrap();
        let moving = MovingSpace::new(arena.base(), HALF);
        Some((arena, moving))
    }

    /// Kept pages ([`MovingSpace::set_kept`]) are claimed with no kernel call, and handed out
    /// zeroed; while write tracking maps fresh pages protected, the kept ones claimed then are
    /// protected too (as a `UFFDIO_COPY` with its WP mode would map them), so no write to a
    /// new object escapes the tracking.
    #[test]
    fn kept_pages_are_claimed_without_a_copy_and_protected_while_tracking() {
        let test = "kept_pages_are_claimed_without_a_copy_and_protected_while_tracking";
        if !Probe::run().supports(Capability::WpAsync) {
            eprintln!("SKIPPED: {test}: write tracking unavailable here");
            return;
        }
        let arena = VolatileArena::new(
            ArenaConfig::new(2 * HALF)
                .backing(Backing::Anonymous)
                .write_tracking(true),
        )
        .unwrap();
        let moving = MovingSpace::new(arena.base(), HALF);
        let base = arena.base();
        // Pages 8..24 kept: present, garbage; the claimed end at 4 (pages 0..4 present).
        arena.populate(ArenaOffset(0), 4 * PAGE_SIZE).unwrap();
        arena
            .populate(ArenaOffset(8 * PAGE_SIZE), 16 * PAGE_SIZE)
            .unwrap();
        // SAFETY: test code: the pages were just made present and belong to this test.
        unsafe { core::ptr::write_bytes((base + 8 * PAGE_SIZE) as *mut u8, 0xa5, 16 * PAGE_SIZE) };
        let pop = base + 4 * PAGE_SIZE;
        *moving.populated.lock().unwrap() = pop;
        moving.reset_watermarks(pop);
        moving.set_kept(base + 8 * PAGE_SIZE, base + 24 * PAGE_SIZE);
        moving.top.store(pop, Ordering::Relaxed);
        assert_eq!(moving.present_end(pop), base + 24 * PAGE_SIZE);
        assert_eq!(moving.fresh_ahead(), 20 * PAGE_SIZE);
        arena.set_populate_protected(true).unwrap();
        let copies = arena
            .sys()
            .counters()
            .snapshot()
            .get(faultline_heap::Call::UffdCopy);
        // One claim over the gap (4..8), the kept pages and two pages above (24..26).
        moving
            .ensure_populated(&arena, pop, base + 26 * PAGE_SIZE, PAGE_SIZE)
            .unwrap();
        let calls = arena
            .sys()
            .counters()
            .snapshot()
            .get(faultline_heap::Call::UffdCopy)
            - copies;
        assert_eq!(
            calls, 2,
            "a COPY below the kept pages and one above, none for them"
        );
        assert_eq!(moving.ready_end(), base + 26 * PAGE_SIZE);
        for p in 4..26 {
            assert!(
                faultline_heap::pagemap::uffd_wp_bit(base + p * PAGE_SIZE),
                "page {p} not write-protected"
            );
        }
        // A refill's buffer over them reads zero (its zeroing writes the kept pages: the
        // tracking then sees them written, as it must).
        let a = moving
            .bump(&arena, 22 * PAGE_SIZE - 100, PAGE_SIZE)
            .unwrap()
            .unwrap();
        assert_eq!(a, pop);
        // SAFETY: `bump` handed this range to the test, present.
        let s = unsafe { core::slice::from_raw_parts(a as *const u8, 22 * PAGE_SIZE - 100) };
        assert!(s.iter().all(|&b| b == 0), "kept garbage zeroed");
    }

    /// Clearing the large space's marks covers every page ever allocated (an object whose first
    /// page is in the bitmap's second word included) and stops at the word holding the highest
    /// one (a bit above it, which no allocation can have set, is not touched).
    #[test]
    fn large_marks_are_cleared_up_to_the_highest_allocation() {
        let Some((arena, _)) = setup("large_marks_are_cleared_up_to_the_highest_allocation") else {
            return;
        };
        // The space over the whole arena: 128 pages, two bitmap words.
        let large = LargeSpace::new(arena.base(), 2 * HALF);
        assert_eq!(large.high_pages.load(Ordering::Relaxed), 0);
        let a = large.alloc(&arena, PAGE_SIZE).unwrap().unwrap();
        assert_eq!(large.high_pages.load(Ordering::Relaxed), 1);
        large.marks.set(large.page_of(a));
        large.marks.set(100); // beyond any allocation: never set by marking
        large.clear_marks();
        assert!(!large.marks.get(large.page_of(a)));
        assert!(
            large.marks.get(100),
            "the clear went beyond the highest allocation's word"
        );
        // An object reaching into the second word: its mark is cleared (so is the test bit).
        let b = large.alloc(&arena, 70 * PAGE_SIZE).unwrap().unwrap();
        let c = large.alloc(&arena, 2 * PAGE_SIZE).unwrap().unwrap();
        assert_eq!(large.page_of(c), 71);
        assert_eq!(large.high_pages.load(Ordering::Relaxed), 73);
        large.marks.set(large.page_of(b));
        large.marks.set(large.page_of(c));
        large.clear_marks();
        assert!(!large.marks.get(large.page_of(b)));
        assert!(!large.marks.get(large.page_of(c)));
        assert!(!large.marks.get(100));
    }

    /// Pages of `[addr, addr + pages)` present in `arena`.
    pub(crate) fn present_pages(arena: &VolatileArena, addr: usize, pages: usize) -> usize {
        let mut v = vec![0u8; pages];
        arena
            .residency(arena.offset_of(addr), pages * PAGE_SIZE, &mut v)
            .unwrap();
        v.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// Run `claimer` on its own thread: it gets `claim` once this thread has finished `meet`
    /// (so it is parked between its claim and its kernel call all through `meet`).
    fn with_parked_claim<R>(
        arena: &VolatileArena,
        moving: &MovingSpace,
        claim: Claim,
        meet: impl FnOnce() -> R,
    ) -> R {
        let (go, parked) = mpsc::channel::<()>();
        std::thread::scope(|s| {
            let claimer = s.spawn(move || {
                parked.recv().unwrap();
                moving.fill(arena, claim).unwrap();
            });
            let r = meet();
            go.send(()).unwrap();
            claimer.join().unwrap();
            r
        })
    }

    /// A refill of 3 pages inside a 16-page claim whose claimer is parked before its kernel
    /// call, with `rounds` microseconds of waiting allowed: the refill returns while the claimer stays parked
    /// (a refill that waited for it unboundedly would never return), its own pages present
    /// and zero, `ready` over them alone; the claimer then steps over them. Returns the
    /// space's (overlaps, waited) counts.
    fn refill_meets_parked_claim(test: &str, rounds: usize) -> Option<(u64, u64)> {
        let (arena, moving) = setup(test)?;
        moving.set_wait_rounds(rounds);
        let base = arena.base();
        let claim = moving
            .claim_for(base, base + PAGE_SIZE, 16 * PAGE_SIZE)
            .unwrap();
        assert_eq!((claim.start, claim.end), (base, base + 16 * PAGE_SIZE));
        let a = with_parked_claim(&arena, &moving, claim, || {
            let a = moving.bump(&arena, 3 * PAGE_SIZE, 8 * PAGE_SIZE).unwrap();
            let a = a.unwrap();
            assert_eq!(a, base);
            assert_eq!(present_pages(&arena, base, 16), 3);
            assert_eq!(moving.ready_end(), base + 3 * PAGE_SIZE);
            // SAFETY: `bump` handed `[a, a + 3 pages)` to this test, present.
            let buf = unsafe { core::slice::from_raw_parts_mut(a as *mut u8, 3 * PAGE_SIZE) };
            assert!(buf.iter().all(|&b| b == 0));
            buf.fill(0x5a);
            a
        });
        // The claimer stepped over the present pages (nothing overwritten) and published.
        assert_eq!(present_pages(&arena, base, 16), 16);
        assert_eq!(moving.ready_end(), base + 16 * PAGE_SIZE);
        // SAFETY: as above; the claimer's fill does not touch present pages.
        let buf = unsafe { core::slice::from_raw_parts(a as *const u8, 3 * PAGE_SIZE) };
        assert!(buf.iter().all(|&b| b == 0x5a));
        Some(moving.overlap_counts())
    }

    /// Pin the calling thread to `cpu`; false if the kernel refused.
    fn pin_to(cpu: usize) -> bool {
        // SAFETY: a zeroed cpu_set_t is an empty set; `cpu` < CPU_SETSIZE (checked by the
        // caller); the set is live for the call, which only reads it.
        unsafe {
            let mut set = core::mem::zeroed::<libc::cpu_set_t>();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, core::mem::size_of_val(&set), &set) == 0
        }
    }

    /// A refill that meets a parked claimer while another thread is runnable on its CPU (both
    /// pinned there): it keeps the CPU while it waits. A `sched_yield` wait handed the CPU
    /// to the competitor once per round (EEVDF: each yield moves the yielder's deadline a
    /// slice later), i.e. about `SPIN_ROUNDS` involuntary switches in this one
    /// refill; spinning leaves only what the scheduler's ticks take (a microseconds-long wait
    /// sees one at most, a loaded test machine a few).
    #[test]
    fn a_waiting_refill_keeps_its_cpu_with_another_thread_runnable_there() {
        let test = "a_waiting_refill_keeps_its_cpu_with_another_thread_runnable_there";
        let Some((arena, moving)) = setup(test) else {
            return;
        };
        // SAFETY: sched_getcpu has no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu < 0 || cpu as usize >= libc::CPU_SETSIZE as usize || !pin_to(cpu as usize) {
            eprintln!("SKIPPED: {test}: cannot pin threads to one CPU here");
            return;
        }
        let cpu = cpu as usize;
        moving.set_wait_rounds(SPIN_ROUNDS);
        let base = arena.base();
        let claim = moving
            .claim_for(base, base + PAGE_SIZE, 16 * PAGE_SIZE)
            .unwrap();
        let stop = AtomicBool::new(false);
        let switches = std::thread::scope(|s| {
            let (pinned, ready) = mpsc::channel();
            let stop = &stop;
            let competitor = s.spawn(move || {
                pinned.send(pin_to(cpu)).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    core::hint::spin_loop();
                }
            });
            assert!(ready.recv().unwrap(), "pin the competitor");
            let switches = with_parked_claim(&arena, &moving, claim, || {
                let before = crate::cputime::context_switches().unwrap().0;
                let a = moving.bump(&arena, 3 * PAGE_SIZE, 8 * PAGE_SIZE).unwrap();
                let after = crate::cputime::context_switches().unwrap().0;
                assert_eq!(a, Some(base));
                after - before
            });
            stop.store(true, Ordering::Relaxed);
            competitor.join().unwrap();
            switches
        });
        assert_eq!(moving.overlap_counts(), (1, 1));
        assert!(
            switches < (SPIN_ROUNDS / 4) as libc::c_long,
            "the waiting refill gave its CPU away {switches} times"
        );
    }

    #[test]
    fn with_wait_rounds_a_refill_waits_a_bounded_while_then_fills_its_own_pages() {
        let test = "with_wait_rounds_a_refill_waits_a_bounded_while_then_fills_its_own_pages";
        if let Some(counts) = refill_meets_parked_claim(test, SPIN_ROUNDS) {
            assert_eq!(counts, (1, 1));
        }
    }

    /// By default (no wait rounds: the space's default, which is the heap's,
    /// `HeapConfig::refill_wait_rounds`) a refill that meets a claim in flight does not wait
    /// for it. (This was also a separate test with 0 rounds, the same scenario twice.)
    #[test]
    fn by_default_a_refill_never_waits_for_a_claim_in_flight() {
        let test = "by_default_a_refill_never_waits_for_a_claim_in_flight";
        if let Some(counts) = refill_meets_parked_claim(test, DEFAULT_WAIT_ROUNDS) {
            assert_eq!(counts, (1, 0));
        }
    }

    /// A release of dead large objects that fails part-way frees exactly the objects whose
    /// pages it released: every object the space still holds is present (the next cycle reads
    /// their headers, and a young cycle scans them as roots), and none it freed is counted.
    /// Batching refused (so each object is released by its own `madvise`), the second fails.
    #[test]
    fn a_release_of_dead_large_objects_failing_part_way_keeps_only_present_objects() {
        use faultline_heap::sys::Call;
        let test = "a_release_of_dead_large_objects_failing_part_way_keeps_only_present_objects";
        if !Probe::run().supports(Capability::Sigbus) {
            eprintln!("SKIPPED: {test}: userfaultfd sigbus unavailable here");
            return;
        }
        let inj = second_release_fails();
        let arena = injected_arena(2 * HALF, FaultDelivery::Sigbus, &inj);
        let large = LargeSpace::new(arena.base() + HALF, HALF);
        let dead: Vec<(usize, usize)> = (0..3)
            .map(|_| {
                (
                    large.alloc(&arena, 2 * PAGE_SIZE).unwrap().unwrap(),
                    2 * PAGE_SIZE,
                )
            })
            .collect();
        inj.arm();
        assert!(large.release_dead(&arena, &dead).is_err());
        inj.disarm();
        assert_eq!(inj.injected(Call::Madvise), 1);
        let g = large.lock();
        for &(s, l) in &dead {
            let held = g.objects.contains_key(&s);
            let present = present_pages(&arena, s, l / PAGE_SIZE);
            assert!(
                !held || present == l / PAGE_SIZE,
                "object {s:#x} still held with {present} of {} pages present",
                l / PAGE_SIZE
            );
        }
        assert!(
            !g.objects.contains_key(&dead[0].0),
            "the released object is freed"
        );
        assert_eq!(g.used, g.objects.values().sum::<usize>());
    }
}
