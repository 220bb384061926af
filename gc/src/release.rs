//! Releasing the old half: every cycle gives the pages of the half it compacted from back to
//! the kernel (`MADV_DONTNEED`, in pieces), optionally poisoning them, and makes sure the next
//! destination half is clean before a flip.
//!
//! Invariants:
//! - at a flip, the destination half has no present page and no poison marker: a range of the
//!   old half whose release failed, or that was poisoned, is recorded in [`ReleaseState`] and
//!   released again by [`prepare_destination`] before any reference changes; if that fails the
//!   cycle fails before anything moved (a present page there would be read by a mutator
//!   instead of faulting, or refuse a fill with EEXIST);
//! - [`release_old_half`] never fails: a failed release is recorded, not propagated, because
//!   it happens after references point into the new half;
//! - nothing here runs in signal context;
//! - pages holding kept or stranded pinned objects ([`crate::pins`]) are never released
//!   or recycled;
//! - recycling ([`recycle_old_half`], [`recycle_run`]) moves only pages of the old half that
//!   nothing reads any more (after its compaction finished; or, during a copy-strategy
//!   compaction, the pages it would release early, see [`crate::compaction`]), into pages the
//!   current half's claimed end
//!   hands it ([`MovingSpace::claim_recycled`]): absent pages no refill populates, marked dirty
//!   before the move, so a refill zeroes whatever of them it hands out; every claimed range is
//!   made present (moved, or a `UFFDIO_COPY` of zeroes after a failed move) before it is
//!   published, or recorded as a gap that refills fill. Recycling never fails: what it does
//!   not move is released as before;
//! - **keeping** ([`ReleaseState::enable_keep`], [`crate::HeapConfig::keep_fresh_bytes`];
//!   issue 16 item 3; the minor strategy by default, the copy strategy when asked; arena
//!   choreography): a concurrent flip plans
//!   which of the old half's pages to keep mapped for the next flip into it
//!   ([`flip_watermarks`], [`KeepPlan`]): from the predicted end of the next compaction into
//!   that half (the larger of this flip's destination extent and the last one into that
//!   half, an eighth and [`KEEP_MARGIN`] more, counted from the old window's start: a short
//!   prediction costs an unmapping in the next flip's pause, a long one only pages the
//!   prefiller makes present as before), at most `keep_fresh_bytes`, below the old half's
//!   known-present end (never a hole) and below the black pages, which dense runs move whole.
//!   The copy strategy's workers release, recycle and move none of them early (a kept dense
//!   page is copied, [`crate::compaction`]); at the cycle's end they are kept and the rest
//!   released. Before the next flip into that half, while the world runs, the kept pages its
//!   destination will cover by the concurrent plan are released ([`trim_kept`]); in the flip,
//!   [`prepare_destination`] (a failure point before any reference changes) unmaps those
//!   the destination still covers (the minor strategy's registered
//!   view only: its page cache stays, so the compaction's fill reuses the page and its
//!   `UFFDIO_CONTINUE` maps it), or releases them all when the flip cannot keep them (pinned
//!   objects, a forked child, a stop-the-world flip); the rest stay where they are and
//!   [`flip_watermarks`] hands them to the current half ([`MovingSpace::set_kept`]): present
//!   above the claimed end, marked dirty; the refills make the pages below them present as
//!   before and claim them with no kernel call when they reach them, zeroing what they hand
//!   out. A full generational cycle, whose destination would cover them, releases them
//!   concurrently before its flip ([`drop_kept`]). No kept page is ever read before a refill
//!   zeroed it or a compaction filled it, and a flip's old-half end covers the kept pages no
//!   refill claimed ([`MovingSpace::present_end`]), so they are released with the half.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use faultline_heap::arena::PoisonMethod;
use faultline_heap::{page_down, page_up, ArenaError, ArenaOffset, VolatileArena, PAGE_SIZE};

use crate::space::{AtomicRange, MovingSpace};

/// Pages moved per `UFFDIO_MOVE` call when recycling (one claim of the current half each).
pub(crate) const RECYCLE_RUN_PAGES: usize = 64;

/// Released-half bookkeeping and debug counters.
#[derive(Debug, Default)]
pub(crate) struct ReleaseState {
    /// Arena offset and length of a range that must be released before it is a destination
    /// again (len 0: none).
    dirty_offset: AtomicUsize,
    dirty_len: AtomicUsize,
    /// Pages poisoned since creation.
    pub poisoned_pages: AtomicU64,
    /// Releases of an old half that failed (and were redone at the next flip).
    pub failed_releases: AtomicU64,
    /// Keeping fresh memory is on (see the module documentation).
    keep_enabled: AtomicBool,
    /// Pages of the non-current half kept mapped for the next flip into it.
    kept: AtomicRange,
    /// The old half's pages to keep at the end of the running cycle, decided at its flip
    /// ([`flip_watermarks`]): the copy strategy's workers release none of them early.
    plan: AtomicRange,
    /// Kept pages the flips' destinations covered, unmapped in their pauses (a prediction
    /// that fell short), and kept pages released unclaimed (counters for reports and tests).
    pub kept_covered: AtomicU64,
    pub kept_dropped: AtomicU64,
    /// Kept pages released before a flip's pause because its destination would cover them
    /// ([`trim_kept`]).
    pub kept_trimmed: AtomicU64,
    /// Pages kept at the ends of cycles.
    pub kept_pages: AtomicU64,
    /// Per half: the bytes the last concurrent flip into it filled (its destination's
    /// extent; 0 after a flip that planned nothing).
    last_extent: [AtomicUsize; 2],
}

/// What [`crate::Heap::release_stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReleaseStats {
    /// Pages poisoned (markers or pattern) since creation.
    pub poisoned_pages: u64,
    /// Releases of an old half that failed and were redone at the next flip.
    pub failed_releases: u64,
    /// Pages of old halves kept mapped for the next flip into them
    /// ([`crate::HeapConfig::keep_fresh_bytes`]).
    pub kept_pages: u64,
    /// Of them, those a destination covered (unmapped in a flip's pause: the prediction of
    /// the destination's end fell short).
    pub kept_covered: u64,
    /// Of them, those released unclaimed before a full generational cycle.
    pub kept_dropped: u64,
    /// Of them, those released before a flip's pause because its destination, by the plan
    /// so far, would cover them.
    pub kept_trimmed: u64,
}

impl ReleaseState {
    pub(crate) fn stats(&self) -> ReleaseStats {
        ReleaseStats {
            poisoned_pages: self.poisoned_pages.load(Ordering::Relaxed),
            failed_releases: self.failed_releases.load(Ordering::Relaxed),
            kept_pages: self.kept_pages.load(Ordering::Relaxed),
            kept_covered: self.kept_covered.load(Ordering::Relaxed),
            kept_dropped: self.kept_dropped.load(Ordering::Relaxed),
            kept_trimmed: self.kept_trimmed.load(Ordering::Relaxed),
        }
    }

    /// Keep fresh memory from now on (at heap creation: the minor strategy, or the copy
    /// strategy with `keep_fresh_bytes` given; arena choreography, `recycle_old_half`).
    pub(crate) fn enable_keep(&self) {
        self.keep_enabled.store(true, Ordering::Relaxed);
    }

    /// The old half's pages the running cycle will keep (see [`flip_watermarks`]), if any:
    /// the copy strategy's workers do not release them early.
    pub(crate) fn planned_keep(&self) -> Option<(usize, usize)> {
        self.plan.get()
    }

    fn mark_dirty(&self, offset: usize, len: usize) {
        // Only the half just released can be dirty: a later release replaces the record only
        // after `prepare_destination` cleared it (one flip per cycle).
        let (o, l) = (
            self.dirty_offset.load(Ordering::Acquire),
            self.dirty_len.load(Ordering::Acquire),
        );
        let (o, l) = if l == 0 {
            (offset, len)
        } else {
            let lo = o.min(offset);
            (lo, (o + l).max(offset + len) - lo)
        };
        self.dirty_offset.store(o, Ordering::Release);
        self.dirty_len.store(l, Ordering::Release);
    }
}

/// Release `[offset, offset+len)` of the old half at the end of a cycle, poisoning it in
/// `poison_released` mode. Never fails (see the module invariants); the failure is counted
/// and the range is redone at the next flip.
pub(crate) fn release_old_half(
    arena: &VolatileArena,
    st: &ReleaseState,
    poison: bool,
    offset: ArenaOffset,
    len: usize,
) {
    if len == 0 {
        return;
    }
    let mut released = false;
    for _ in 0..3 {
        if arena.release(offset, len).is_ok() {
            released = true;
            break;
        }
    }
    if !released {
        st.failed_releases.fetch_add(1, Ordering::Relaxed);
        st.mark_dirty(offset.get(), len);
        return;
    }
    if poison {
        match arena.poison_released(offset, len) {
            Ok(PoisonMethod::None) => {}
            Ok(_) => {
                st.poisoned_pages
                    .fetch_add((len / PAGE_SIZE) as u64, Ordering::Relaxed);
                st.mark_dirty(offset.get(), len);
            }
            // A partial poison leaves markers behind: clear them at the flip like the rest.
            Err(_) => st.mark_dirty(offset.get(), len),
        }
    }
}

/// Recycle up to `want` bytes of the pages the old half `[from, from_end)` still holds (its
/// compaction finished) as fresh memory of the current half: runs of present pages (found with
/// one `mincore`) are moved with `UFFDIO_MOVE`, at most [`RECYCLE_RUN_PAGES`] per call, to the
/// current half's claimed end. Returns the pages moved. Never fails (see the module
/// invariants): a failed move makes its claimed range present with zeroes and ends recycling;
/// the caller releases the old half afterwards as before (its moved pages are absent already).
pub(crate) fn recycle_old_half(
    arena: &VolatileArena,
    moving: &MovingSpace,
    from: usize,
    from_end: usize,
    want: usize,
) -> usize {
    if want == 0 || from_end <= from || !arena.can_move() {
        return 0;
    }
    let n = (from_end - from) / PAGE_SIZE;
    let mut present = vec![0u8; n];
    if arena
        .residency(arena.offset_of(from), n * PAGE_SIZE, &mut present)
        .is_err()
    {
        return 0;
    }
    let mut left = want.div_ceil(PAGE_SIZE);
    let mut moved = 0;
    let mut i = 0;
    while i < n && left > 0 {
        if present[i] & 1 == 0 {
            i += 1;
            continue;
        }
        let cap = RECYCLE_RUN_PAGES.min(left);
        let mut j = i + 1;
        while j < n && j - i < cap && present[j] & 1 == 1 {
            j += 1;
        }
        // SAFETY: the source pages lie in the old half, whose compaction has finished: no
        // reference points there and nothing reads them again (the rest of the half is
        // released next).
        let (k, stop) = unsafe { recycle_run(arena, moving, from + i * PAGE_SIZE, j - i) };
        moved += k;
        left -= k;
        i += k;
        if stop {
            break;
        }
    }
    moved
}

/// Move the `pages` present pages at `src` (absolute) to the current half's claimed end as
/// fresh memory, [`RECYCLE_RUN_PAGES`] per `UFFDIO_MOVE` (one claim each). Returns the pages
/// moved (a prefix of the run) and whether recycling should stop: the half has no room left,
/// or a move failed (its claim was then made present with zeroes, or recorded as a gap). Each
/// claim, move and publish is a fork-gate region: a fork never finds a claimed range half
/// moved, nor the populate lock held ([`crate::forkgate`]).
///
/// # Safety
/// Nothing reads or writes the source pages after this call, nor during it: no destination
/// page still reads them and no reference points there.
pub(crate) unsafe fn recycle_run(
    arena: &VolatileArena,
    moving: &MovingSpace,
    src: usize,
    pages: usize,
) -> (usize, bool) {
    let mut moved = 0;
    while moved < pages {
        let _region = crate::forkgate::Region::enter();
        let (dst, k) = moving.claim_recycled((pages - moved).min(RECYCLE_RUN_PAGES));
        if k == 0 {
            return (moved, true);
        }
        let len = k * PAGE_SIZE;
        // SAFETY: the caller's contract: nothing reads the source pages again.
        let r = unsafe {
            arena.resolve_move(
                arena.offset_of(dst),
                arena.offset_of(src + moved * PAGE_SIZE),
                len,
                false,
            )
        };
        if r.is_err() {
            // Some pages may have moved before the error (dirty, zeroed by the refills that
            // take them); make the rest of the claim present, and stop.
            match arena.populate(arena.offset_of(dst), len) {
                Ok(_) => moving.publish(dst, dst + len),
                Err(_) => moving.note_gap(),
            }
            return (moved, true);
        }
        moving.publish(dst, dst + len);
        moved += k;
    }
    (moved, false)
}

/// End of a cycle for the old half `[from, from_end)`: with keeping on, keep what the flip
/// planned (at most `want` bytes) and release the rest ([`keep_old_half`]); else recycle what
/// the current half will allocate before the next trigger (`want` bytes; see
/// [`recycle_old_half`]) if `recycle`, then release the whole range as [`release_old_half`]
/// does.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_old_half(
    arena: &VolatileArena,
    moving: &MovingSpace,
    st: &ReleaseState,
    poison: bool,
    recycle: bool,
    from: usize,
    from_end: usize,
    want: usize,
    keep: &[(usize, usize)],
) -> OldHalfEnd {
    // (The flip's plan is for this cycle only: taken whether it is used or not.)
    let plan = st.plan.take();
    if from_end <= from {
        return OldHalfEnd::default();
    }
    if st.keep_enabled.load(Ordering::Relaxed) && recycle && !poison && keep.is_empty() {
        if let Some(kept) = plan.and_then(|p| keep_old_half(arena, st, p, from, from_end, want)) {
            return OldHalfEnd { pages: kept, kept };
        }
    }
    let mut pages = 0;
    for (s, e) in crate::pins::subtract(from, from_end, keep) {
        if recycle && !poison {
            pages += recycle_old_half(arena, moving, s, e, want.saturating_sub(pages * PAGE_SIZE));
        }
        release_old_half(arena, st, poison, arena.offset_of(s), e - s);
    }
    OldHalfEnd { pages, kept: 0 }
}

/// What [`finish_old_half`] did with the old half's pages it did not release: `pages`
/// recycled or kept, of them `kept` kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OldHalfEnd {
    pub pages: usize,
    pub kept: usize,
}

/// The end of a cycle for the old half `[from, from_end)` when keeping is on (see the module
/// documentation): keep the pages `[lo, hi)` its flip planned ([`flip_watermarks`]; `want`
/// bytes at most), release the rest. Returns the pages kept, or `None` (nothing kept, nothing
/// released) when keeping does not apply: a forked child, or a plan outside the range.
fn keep_old_half(
    arena: &VolatileArena,
    st: &ReleaseState,
    (lo, hi): (usize, usize),
    from: usize,
    from_end: usize,
    want: usize,
) -> Option<usize> {
    let hi = hi.min(lo + want.div_ceil(PAGE_SIZE) * PAGE_SIZE);
    if arena.is_forked() || lo < from || hi > from_end || hi <= lo {
        return None;
    }
    release_old_half(arena, st, false, arena.offset_of(from), lo - from);
    release_old_half(arena, st, false, arena.offset_of(hi), from_end - hi);
    st.kept.set(lo, hi);
    st.kept_pages
        .fetch_add(((hi - lo) / PAGE_SIZE) as u64, Ordering::Relaxed);
    Some((hi - lo) / PAGE_SIZE)
}

/// Kept pages planned beyond the predicted end of the next compaction into the old half: an
/// eighth of the prediction more, and this much (a short prediction costs an unmapping in the
/// flip's pause; a long one, pages the prefiller makes present as before).
const KEEP_MARGIN: usize = 1 << 20;

/// What a concurrent flip plans to keep of the old half for the next flip into it (see the
/// module documentation): the old window's start `from`, the bytes this flip's destination
/// fills (`extent`), the bytes to keep (at most), and a bound on the kept pages' end (the
/// pages the compaction may move away whole lie above it). The next compaction into the old
/// half is predicted to fill the larger of `extent` and what the last flip into that half
/// filled: the halves alternate, and in the generational mode the flips into the old half
/// (which promote) fill more than those into the other.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepPlan {
    pub from: usize,
    pub extent: usize,
    pub want: usize,
    pub below: usize,
}

/// At a concurrent flip (world stopped), in place of [`MovingSpace::reset_watermarks`]: `pop`
/// is the destination's claimed end, the current half is the destination. The kept pages of
/// this half that [`prepare_destination`] left (at or above `pop`) become the current half's
/// kept fresh memory ([`MovingSpace::set_kept`]: claimed by the refills that reach them, with
/// no kernel call, and zeroed by them); and, with keeping on and `next` given, the old half's
/// pages to keep at the end of this cycle are planned. Makes no kernel call, so it cannot
/// fail.
pub(crate) fn flip_watermarks(
    moving: &MovingSpace,
    st: &ReleaseState,
    pop: &mut usize,
    next: Option<KeepPlan>,
) {
    let half_base = moving.half_base[moving.current.load(Ordering::Relaxed)];
    // The old half's known-present end, before the reset below forgets it: only pages below
    // it are kept (never a hole).
    let old_ready = moving.ready_end();
    // (`prepare_destination` left them at or above the destination's end: clamped all the
    // same, so that no present page above the claimed end goes unrecorded, where a refill
    // would hand it out unzeroed.)
    let kept = st.kept.take().and_then(|(lo, hi)| {
        debug_assert!(
            lo >= *pop,
            "kept pages {lo:#x} below the claimed end {:#x}",
            *pop
        );
        let (lo, hi) = (lo.max(*pop), hi.min(half_base + moving.half_bytes));
        (hi > lo).then_some((lo, hi))
    });
    moving.reset_watermarks(*pop);
    if let Some((lo, hi)) = kept {
        moving.set_kept(lo, hi);
    }
    st.plan.take();
    let cur = moving.current.load(Ordering::Relaxed);
    let extents = &st.last_extent;
    if let Some(p) = next.filter(|_| st.keep_enabled.load(Ordering::Relaxed)) {
        let predicted = p.extent.max(extents[1 - cur].load(Ordering::Relaxed));
        let lo = page_up(p.from + predicted + predicted / 8 + KEEP_MARGIN);
        let hi = page_down((lo + p.want).min(old_ready).min(p.below));
        if hi > lo {
            st.plan.set(lo, hi);
        }
    }
    extents[cur].store(next.map_or(0, |p| p.extent), Ordering::Relaxed);
}

/// Before a concurrent flip into the half that holds kept pages, while the world runs: the
/// kept pages below `end` (the destination's predicted end, page rounded up), which the flip
/// would unmap in its pause, are released now.
pub(crate) fn trim_kept(arena: &VolatileArena, st: &ReleaseState, end: usize) {
    release_kept_below(arena, st, end, &st.kept_trimmed);
}

/// Before a flip into the half that holds kept pages, when the flip will not use them (a
/// cycle that compacts everything, whose destination would cover them and unmap them in its
/// pause): release them now, concurrently (nothing reads or writes the non-current half).
pub(crate) fn drop_kept(arena: &VolatileArena, st: &ReleaseState) {
    release_kept_below(arena, st, usize::MAX, &st.kept_dropped);
}

/// Release the kept pages below `end` (page rounded up), counting them in `counter`; the rest
/// stay kept. A failed release leaves them all to the dirty range, released at the flip.
fn release_kept_below(arena: &VolatileArena, st: &ReleaseState, end: usize, counter: &AtomicU64) {
    let Some((lo, hi)) = st.kept.take() else {
        return;
    };
    let cut = page_up(end.clamp(lo, hi));
    if cut > lo {
        let (o, l) = (arena.offset_of(lo), cut - lo);
        counter.fetch_add((l / PAGE_SIZE) as u64, Ordering::Relaxed);
        if arena.release(o, l).is_err() {
            st.mark_dirty(o.get(), hi - lo);
            return;
        }
    }
    st.kept.set(cut, hi);
}

/// After an in-place slide ([`crate::StwCompaction::Slide`]): keep the first `keep` bytes
/// (rounded up to pages) of the current half's free tail `[new_end, old_end)` present, as the
/// fresh memory the mutators allocate next (their contents are garbage: the caller marks them
/// dirty, [`MovingSpace::keep_dirty`], so that refills zero them), and release the rest
/// (page aligned; `old_end` was the populated watermark). Returns the new watermark and the
/// pages kept: `new_end` plus the kept pages; or, if the release failed, `old_end` and no
/// page kept, with the whole tail made present again and zeroed so that allocation may hand
/// it out (the space's invariant: present below the watermark, absent above, fresh memory
/// zero or marked dirty). Never fails: this runs after references were updated, so a kernel
/// error in the fallback ends the process.
pub(crate) fn release_free_tail(
    arena: &VolatileArena,
    new_end: usize,
    old_end: usize,
    keep: usize,
) -> (usize, usize) {
    if old_end <= new_end {
        return (new_end, 0);
    }
    let kept = keep
        .div_ceil(PAGE_SIZE)
        .min((old_end - new_end) / PAGE_SIZE);
    let rel = new_end + kept * PAGE_SIZE;
    if rel == old_end {
        return (old_end, kept);
    }
    let (offset, len) = (arena.offset_of(rel), old_end - rel);
    for _ in 0..3 {
        if arena.release(offset, len).is_ok() {
            return (rel, kept);
        }
    }
    // Some pieces may be released already: bring those back (zero pages), then zero the whole
    // tail (the kept part too: nothing is left dirty).
    if let Err(e) = arena.populate(offset, len) {
        fatal_after_flip("keeping the free tail after a failed release", &e);
    }
    // SAFETY: [new_end, old_end) lies in the current half, present now (kept, or populated
    // above) and holding no live object (the slide moved every live word below `new_end`).
    unsafe { core::ptr::write_bytes(new_end as *mut u8, 0, old_end - new_end) };
    (old_end, 0)
}

/// Before a flip into the half at `to_offset`: release again whatever the last cycle left
/// present or poisoned there, except the pages of `keep` (absolute `[start, end)` page
/// ranges, sorted and disjoint: stranded pinned objects, see [`crate::pins`]); and release the
/// garbage pages `clean` (absolute ranges) outside the destination window. With the world
/// stopped, before any reference changes. The kept pages there (see the module
/// documentation): with `keep_fresh` = the destination pages' start and end (absolute; a
/// concurrent flip, no pinned object), those below its end are unmapped and the rest stay
/// for [`flip_watermarks`]; without (or kept pages below its start), all are released.
pub(crate) fn prepare_destination(
    arena: &VolatileArena,
    st: &ReleaseState,
    to_offset: ArenaOffset,
    half_bytes: usize,
    keep: &[(usize, usize)],
    clean: &[(usize, usize)],
    keep_fresh: Option<(usize, usize)>,
) -> Result<(), ArenaError> {
    for &(s, e) in clean {
        arena.release(arena.offset_of(s), e - s)?;
    }
    let to_offset = to_offset.get();
    let kept = st.kept.take();
    let (o, l) = (
        st.dirty_offset.load(Ordering::Acquire),
        st.dirty_len.load(Ordering::Acquire),
    );
    // The dirty range first (a failed release, poison): kept pages inside it are released
    // with it, and then none is kept.
    if l != 0 && o + l > to_offset && o < to_offset + half_bytes {
        // A plain release undoes both: it frees what a failed release left present, and
        // MADV_DONTNEED drops poison markers and the poison pattern.
        let base = arena.base();
        let keep: Vec<(usize, usize)> = keep.iter().map(|&(s, e)| (s - base, e - base)).collect();
        for (s, e) in crate::pins::subtract(o, o + l, &keep) {
            if let Err(e) = arena.release(ArenaOffset(s), e - s) {
                // The kept pages stay recorded for the next attempt.
                if let Some((lo, hi)) = kept {
                    st.kept.set(lo, hi);
                }
                return Err(e);
            }
        }
        st.dirty_len.store(0, Ordering::Release);
    }
    if let Some((lo, hi)) = kept {
        let (olo, ohi) = (arena.offset_of(lo).get(), arena.offset_of(hi).get());
        // A range left dirty (a failed release) was released above: kept pages inside it are
        // holes now, so none is kept then.
        let clean_dirty = l == 0 || o + l <= olo || o >= ohi;
        if olo >= to_offset && ohi <= to_offset + half_bytes {
            // (Pages of pinned objects, or garbage pages released around them, may lie among
            // the kept ones: none is kept then.)
            // (The generational old generation is among `keep` in a flip into the old half:
            // below the kept pages, it does not stop them.)
            let apart = |r: &[(usize, usize)]| r.iter().all(|&(s, e)| e <= lo || s >= hi);
            let keep_fresh = keep_fresh
                .filter(|_| !arena.is_forked() && clean_dirty && apart(keep) && apart(clean));
            prepare_kept(arena, st, lo, hi, keep_fresh)?;
        } else {
            // Not the destination (cannot happen: one flip per cycle): release them.
            arena.release(ArenaOffset(olo), ohi - olo)?;
        }
    }
    Ok(())
}

/// [`prepare_destination`]'s part for the kept pages `[lo, hi)` of the destination half.
/// On an error the pages are left recorded as dirty (released at the next flip) and the
/// error returned: the cycle fails before anything moved.
fn prepare_kept(
    arena: &VolatileArena,
    st: &ReleaseState,
    lo: usize,
    hi: usize,
    keep_fresh: Option<(usize, usize)>,
) -> Result<(), ArenaError> {
    let Some((_, dest_end)) = keep_fresh.filter(|&(start, _)| start <= lo) else {
        return arena
            .release(arena.offset_of(lo), hi - lo)
            .inspect_err(|_| {
                st.mark_dirty(arena.offset_of(lo).get(), hi - lo);
            });
    };
    // Kept pages above the destination's end stay where they are: the pages between are
    // claimed and made present by the refills as before, and the kept ones are claimed when
    // the refills reach them ([`MovingSpace::set_kept`]).
    let cover = dest_end.clamp(lo, hi);
    if cover > lo {
        st.kept_covered
            .fetch_add(((cover - lo) / PAGE_SIZE) as u64, Ordering::Relaxed);
        // Unmap the registered view only: the page cache stays for the compaction's fill.
        // Through the arena, which forgets its records of recent mappings there (a stale
        // record would make a later EEXIST on these pages believed, and a fault on them never
        // resolved), counts the call and lets failures be injected. `[lo, cover)` holds
        // garbage nothing reads (the half is not current; no reference points there yet).
        if let Err(e) = arena.unmap_view(arena.offset_of(lo), cover - lo) {
            st.mark_dirty(arena.offset_of(lo).get(), hi - lo);
            return Err(ArenaError::Config(format!(
                "madvise(MADV_DONTNEED) of kept pages: {e}"
            )));
        }
    }
    if hi > cover {
        st.kept.set(cover, hi);
    }
    Ok(())
}

/// A kernel error after references already point into the new half (a destination page
/// that cannot be mapped even after the arena's retries): the heap cannot continue, and
/// returning the error would leave every reference dangling. End the process loudly.
pub(crate) fn fatal_after_flip(what: &str, e: &ArenaError) -> ! {
    eprintln!("faultline: {what} failed after references were updated: {e}; aborting");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::tests::{injected_arena, present_pages};
    use faultline_heap::arena::FaultDelivery;
    use faultline_heap::inject::{FaultInjector, Rule, Trigger};
    use faultline_heap::{Call, Capability, Errno, Probe};
    use std::sync::Arc;

    /// Pages per half of the test arenas.
    const HALF_PAGES: usize = 256;
    const HALF: usize = HALF_PAGES * PAGE_SIZE;
    /// Pages of the old half that hold garbage.
    const OLD_PAGES: usize = 160;

    fn move_here(test: &str) -> bool {
        here(test, Capability::Move)
    }

    /// Whether this kernel (and policy) gives `cap`; prints the skip notice if not.
    fn here(test: &str, cap: Capability) -> bool {
        let ok = Probe::run().supports(cap);
        if !ok {
            eprintln!(
                "SKIPPED: {test}: userfaultfd {} unavailable here",
                cap.name()
            );
        }
        ok
    }

    /// An anonymous registered arena of two halves (half 0 current), with `OLD_PAGES` pages of
    /// half 1 present and filled with garbage, as an old half is after its compaction.
    fn setup(rules: Vec<Rule>) -> (VolatileArena, MovingSpace, Arc<FaultInjector>) {
        let inj = Arc::new(FaultInjector::new(rules, 7).disarmed());
        let arena = injected_arena(2 * HALF, FaultDelivery::Sigbus, &inj);
        let moving = MovingSpace::new(arena.base(), HALF);
        arena
            .populate(ArenaOffset(HALF), OLD_PAGES * PAGE_SIZE)
            .unwrap();
        let old = arena.base() + HALF;
        // SAFETY: the range was just made present and belongs to this test alone.
        unsafe { core::ptr::write_bytes(old as *mut u8, 0xa5, OLD_PAGES * PAGE_SIZE) };
        inj.arm();
        (arena, moving, inj)
    }

    /// Bump the whole current half in buffers of `bytes` (not a page multiple, so buffers
    /// share pages), checking each reads zero before writing garbage over it.
    fn allocate_all(arena: &VolatileArena, moving: &MovingSpace, bytes: usize) -> usize {
        let mut n = 0;
        while let Some(a) = moving.bump(arena, bytes, 8 * PAGE_SIZE).unwrap() {
            // SAFETY: `bump` handed `[a, a + bytes)` to this caller, present.
            let s = unsafe { core::slice::from_raw_parts_mut(a as *mut u8, bytes) };
            assert!(
                s.iter().all(|&b| b == 0),
                "fresh buffer {n} at {a:#x} not zero"
            );
            s.fill(0x5a);
            n += 1;
        }
        n
    }

    /// The end of a cycle for the old half (half 1) with keeping on, its first `present`
    /// pages present, the flip having planned to keep `want` pages from page `lo` on: the
    /// pages kept.
    fn end_kept_cycle(
        arena: &VolatileArena,
        moving: &MovingSpace,
        st: &ReleaseState,
        present: usize,
        lo: usize,
        want: usize,
    ) -> usize {
        let old = arena.base() + HALF;
        st.enable_keep();
        st.plan.set(
            old + lo * PAGE_SIZE,
            old + (lo + want).min(present) * PAGE_SIZE,
        );
        let end = finish_old_half(
            arena,
            moving,
            st,
            false,
            true,
            old,
            old + present * PAGE_SIZE,
            want * PAGE_SIZE,
            &[],
        );
        assert_eq!(end.kept, end.pages, "kept, not recycled");
        end.kept
    }

    /// Half 1 made current by a flip whose destination pages end at `dest_end`.
    fn flip_into_half_1(moving: &MovingSpace, st: &ReleaseState, dest_end: usize) -> usize {
        let old = moving.half_base[1];
        moving.current.store(1, Ordering::Relaxed);
        moving.window.store(old, Ordering::Relaxed);
        moving.window_end.store(old + HALF, Ordering::Relaxed);
        moving.top.store(dest_end, Ordering::Relaxed);
        let mut pop = dest_end;
        flip_watermarks(moving, st, &mut pop, None);
        *moving.populated.lock().unwrap() = pop;
        pop
    }

    /// [`prepare_destination`] for a flip into half 1 with the ranges `keep` kept in place
    /// and `dest` (start, end) as the concurrent destination (`None`: a flip that cannot
    /// keep).
    fn prepare_half_1(
        arena: &VolatileArena,
        st: &ReleaseState,
        keep: &[(usize, usize)],
        dest: Option<(usize, usize)>,
    ) {
        prepare_destination(arena, st, ArenaOffset(HALF), HALF, keep, &[], dest).unwrap();
    }

    /// What the tests of kept pages start from: a test arena (`setup(rules)`) whose old half
    /// (half 1) kept its pages 100..140 at the end of a cycle; `None` (with the skip notice)
    /// where the kernel lacks `cap`. Returns the arena, its moving space, the injector, the
    /// release state and half 1's base.
    #[allow(clippy::type_complexity)]
    fn kept_100_140(
        test: &str,
        cap: Capability,
        rules: Vec<Rule>,
    ) -> Option<(
        VolatileArena,
        MovingSpace,
        Arc<FaultInjector>,
        ReleaseState,
        usize,
    )> {
        if !here(test, cap) {
            return None;
        }
        let (arena, moving, inj) = setup(rules);
        let st = ReleaseState::default();
        assert_eq!(end_kept_cycle(&arena, &moving, &st, OLD_PAGES, 100, 40), 40);
        let old = arena.base() + HALF;
        Some((arena, moving, inj, st, old))
    }

    /// Kept pages when the release of the pages below them failed (the dirty range ends where
    /// they start) and the next destination ends a few pages below them: the dirty range is
    /// released, the kept pages stay, and the refills make the pages between present and
    /// claim the kept ones with no kernel call, handing everything out zeroed.
    #[test]
    fn kept_pages_above_a_failed_release_stay_for_the_refills() {
        let test = "kept_pages_above_a_failed_release_stay_for_the_refills";
        if !here(test, Capability::Sigbus) {
            return;
        }
        // The first release (the pages below the kept ones, three tries) fails.
        let (arena, moving, inj) = setup(vec![Rule::new(
            Call::Madvise,
            Errno::EIO,
            Trigger::Range { start: 1, count: 3 },
        )]);
        let old = arena.base() + HALF;
        let st = ReleaseState::default();
        assert_eq!(end_kept_cycle(&arena, &moving, &st, OLD_PAGES, 100, 40), 40);
        assert_eq!(st.failed_releases.load(Ordering::Relaxed), 1);
        // Pages 0..100 (release failed) and 100..140 (kept) present; 140..160 released.
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 140);
        // The next flip into this half: its destination pages end at page 96.
        let dest_end = old + 96 * PAGE_SIZE;
        prepare_half_1(&arena, &st, &[], Some((old, dest_end)));
        // Only the kept pages are present (the failed range released, gap included).
        assert_eq!(present_pages(&arena, old, 100), 0);
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 40);
        assert_eq!(st.kept_covered.load(Ordering::Relaxed), 0);
        // (The injector stays armed to count calls: its three failures are spent.)
        assert_eq!(flip_into_half_1(&moving, &st, dest_end), dest_end);
        assert_eq!(moving.present_end(dest_end), old + 140 * PAGE_SIZE);
        // The gap takes a COPY; the kept pages none.
        let kept_from = old + 100 * PAGE_SIZE;
        moving
            .ensure_populated(&arena, dest_end, kept_from, PAGE_SIZE)
            .unwrap();
        let copies = inj.seen(Call::UffdCopy);
        assert!(copies > 0);
        moving
            .ensure_populated(&arena, kept_from, kept_from + 40 * PAGE_SIZE, PAGE_SIZE)
            .unwrap();
        assert_eq!(inj.seen(Call::UffdCopy), copies, "kept pages need no COPY");
        moving.top.store(dest_end, Ordering::Relaxed);
        // Every buffer reads zero (kept garbage zeroed by the refills), up to the half's end.
        let n = allocate_all(&arena, &moving, 3000);
        assert_eq!(n, (HALF - 96 * PAGE_SIZE) / 3000);
    }

    /// A destination that ends inside the kept pages: the pages it covers are unmapped in the
    /// flip (counted), the rest stay and are claimed from the destination's end.
    #[test]
    fn a_destination_over_kept_pages_unmaps_what_it_covers() {
        let Some((arena, moving, inj, st, old)) = kept_100_140(
            "a_destination_over_kept_pages_unmaps_what_it_covers",
            Capability::Sigbus,
            vec![],
        ) else {
            return;
        };
        let dest_end = old + 120 * PAGE_SIZE;
        prepare_half_1(&arena, &st, &[], Some((old, dest_end)));
        assert_eq!(st.kept_covered.load(Ordering::Relaxed), 20);
        assert_eq!(present_pages(&arena, old, 120), 0);
        assert_eq!(present_pages(&arena, dest_end, 20), 20);
        flip_into_half_1(&moving, &st, dest_end);
        let copies = inj.seen(Call::UffdCopy);
        moving
            .ensure_populated(&arena, dest_end, dest_end + 20 * PAGE_SIZE, PAGE_SIZE)
            .unwrap();
        assert_eq!(inj.seen(Call::UffdCopy), copies, "kept pages need no COPY");
        let n = allocate_all(&arena, &moving, 3000);
        assert_eq!(n, (HALF - 120 * PAGE_SIZE) / 3000);
    }

    /// Kept pages the destination will cover by the plan so far are released before the
    /// pause ([`trim_kept`]): the flip then unmaps none, and the rest stay for the refills.
    #[test]
    fn kept_pages_under_the_planned_destination_are_released_before_the_pause() {
        let Some((arena, moving, inj, st, old)) = kept_100_140(
            "kept_pages_under_the_planned_destination_are_released_before_the_pause",
            Capability::Sigbus,
            vec![],
        ) else {
            return;
        };
        trim_kept(&arena, &st, old + 120 * PAGE_SIZE - 100);
        assert_eq!(st.kept_trimmed.load(Ordering::Relaxed), 20);
        assert_eq!(present_pages(&arena, old, 120), 0);
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 20);
        let madvises = inj.seen(Call::Madvise);
        let dest_end = old + 118 * PAGE_SIZE;
        prepare_half_1(&arena, &st, &[], Some((old, dest_end)));
        assert_eq!(inj.seen(Call::Madvise), madvises, "no call in the pause");
        assert_eq!(st.kept_covered.load(Ordering::Relaxed), 0);
        flip_into_half_1(&moving, &st, dest_end);
        assert_eq!(moving.present_end(dest_end), old + 140 * PAGE_SIZE);
        let n = allocate_all(&arena, &moving, 3000);
        assert_eq!(n, (HALF - 118 * PAGE_SIZE) / 3000);
    }

    /// Ranges the flip keeps in place (the generational old generation in a flip into the
    /// old half, pinned objects) below the kept pages leave them kept; one among them
    /// releases them.
    #[test]
    fn a_kept_range_below_the_kept_pages_leaves_them() {
        let test = "a_kept_range_below_the_kept_pages_leaves_them";
        if !here(test, Capability::Sigbus) {
            return;
        }
        for (range, stay) in [((0, 10), true), ((110, 111), false)] {
            let (arena, moving, _inj) = setup(vec![]);
            let old = arena.base() + HALF;
            let st = ReleaseState::default();
            assert_eq!(end_kept_cycle(&arena, &moving, &st, OLD_PAGES, 100, 40), 40);
            let r = [(old + range.0 * PAGE_SIZE, old + range.1 * PAGE_SIZE)];
            let dest = old + range.1.min(20) * PAGE_SIZE;
            prepare_half_1(&arena, &st, &r, Some((dest, dest)));
            let present = present_pages(&arena, old + 100 * PAGE_SIZE, 40);
            assert_eq!(present, if stay { 40 } else { 0 }, "{range:?}");
        }
    }

    /// A flip that cannot keep (a stop-the-world flip, pinned objects: no destination given)
    /// releases the kept pages.
    #[test]
    fn a_flip_that_cannot_keep_releases_the_kept_pages() {
        let Some((arena, moving, _inj, st, old)) = kept_100_140(
            "a_flip_that_cannot_keep_releases_the_kept_pages",
            Capability::Sigbus,
            vec![],
        ) else {
            return;
        };
        prepare_half_1(&arena, &st, &[], None);
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 0);
        assert_eq!(flip_into_half_1(&moving, &st, old), old);
        assert_eq!(moving.present_end(old), old, "nothing kept");
    }

    /// Kept pages far above the destination (a gap of 70 pages, the whole rest of the half
    /// kept): nothing is released or made present in the flip; the refills fill the gap and
    /// the pages above the kept ones with COPYs, and take the kept ones as they are.
    #[test]
    fn a_wide_gap_below_the_kept_pages_costs_no_call_in_the_flip() {
        let test = "a_wide_gap_below_the_kept_pages_costs_no_call_in_the_flip";
        if !here(test, Capability::Sigbus) {
            return;
        }
        let (arena, moving, inj) = setup(vec![]);
        let old = arena.base() + HALF;
        // The whole old half present.
        arena
            .populate(
                ArenaOffset(HALF + OLD_PAGES * PAGE_SIZE),
                (HALF_PAGES - OLD_PAGES) * PAGE_SIZE,
            )
            .unwrap();
        let st = ReleaseState::default();
        assert_eq!(
            end_kept_cycle(&arena, &moving, &st, HALF_PAGES, 70, 180),
            180
        );
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 180);
        let calls = (inj.seen(Call::Madvise), inj.seen(Call::UffdCopy));
        prepare_half_1(&arena, &st, &[], Some((old, old)));
        assert_eq!(calls, (inj.seen(Call::Madvise), inj.seen(Call::UffdCopy)));
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 180);
        assert_eq!(flip_into_half_1(&moving, &st, old), old);
        let copies = inj.seen(Call::UffdCopy);
        let n = allocate_all(&arena, &moving, 3000);
        assert_eq!(n, HALF / 3000);
        // 76 pages (the gap, the last 6) in 8-page batches, against 32 for the whole half.
        let more = inj.seen(Call::UffdCopy) - copies;
        assert!(more > 0 && more <= 12, "{more} COPY calls");
        assert_eq!(present_pages(&arena, old, HALF_PAGES), HALF_PAGES);
    }

    /// Recycling stops below kept pages (a move onto a present page fails): the recycled
    /// pages fill the gap only, and everything handed out reads zero.
    #[test]
    fn recycling_stops_below_kept_pages() {
        if !move_here("recycling_stops_below_kept_pages") {
            return;
        }
        let (arena, moving, inj) = setup(vec![]);
        let old = arena.base() + HALF;
        let st = ReleaseState::default();
        // Keep half 1's pages 100..140; flip into it with the destination ending at 90.
        assert_eq!(end_kept_cycle(&arena, &moving, &st, OLD_PAGES, 100, 40), 40);
        let dest_end = old + 90 * PAGE_SIZE;
        prepare_half_1(&arena, &st, &[], Some((old, dest_end)));
        flip_into_half_1(&moving, &st, dest_end);
        // Half 0 is the old half now: fill it with garbage and recycle it.
        let base = arena.base();
        arena.populate(ArenaOffset(0), HALF).unwrap();
        // SAFETY: half 0 was just made present and belongs to this test alone.
        unsafe { core::ptr::write_bytes(base as *mut u8, 0xa5, HALF) };
        let moved = recycle_old_half(&arena, &moving, base, base + HALF, HALF);
        assert_eq!(moved, 10, "the gap below the kept pages only");
        assert_eq!(inj.injected(Call::UffdMove), 0);
        allocate_all(&arena, &moving, 3000);
    }

    #[test]
    fn recycled_pages_move_and_refills_hand_them_out_zeroed() {
        if !move_here("recycled_pages_move_and_refills_hand_them_out_zeroed") {
            return;
        }
        let (arena, moving, inj) = setup(vec![]);
        let old = arena.base() + HALF;
        let want = 100 * PAGE_SIZE;
        let moved = recycle_old_half(&arena, &moving, old, old + HALF, want);
        assert_eq!(moved, 100);
        assert_eq!(
            inj.seen(Call::UffdMove),
            100usize.div_ceil(RECYCLE_RUN_PAGES) as u64
        );
        // The moved pages left the old half and sit at the current half's start.
        assert_eq!(present_pages(&arena, old, HALF_PAGES), OLD_PAGES - 100);
        assert_eq!(present_pages(&arena, arena.base(), HALF_PAGES), 100);
        let copies = inj.seen(Call::UffdCopy);
        let n = allocate_all(&arena, &moving, 3000);
        assert_eq!(n, HALF / 3000);
        // The recycled pages needed no COPY; the rest (156 pages) did, in 8-page batches.
        let more = inj.seen(Call::UffdCopy) - copies;
        assert!(more > 0 && more <= 30, "{more} COPY calls");
        release_old_half(
            &arena,
            &ReleaseState::default(),
            false,
            ArenaOffset(HALF),
            HALF,
        );
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 0);
    }

    #[test]
    fn a_failed_move_makes_its_claim_present_and_stops() {
        if !move_here("a_failed_move_makes_its_claim_present_and_stops") {
            return;
        }
        let (arena, moving, inj) = setup(vec![Rule::new(
            Call::UffdMove,
            Errno::EBUSY,
            Trigger::Nth(2),
        )]);
        let old = arena.base() + HALF;
        let moved = recycle_old_half(&arena, &moving, old, old + HALF, HALF);
        assert_eq!(
            moved, RECYCLE_RUN_PAGES,
            "the first run moved, the second failed"
        );
        assert_eq!(inj.injected(Call::UffdMove), 1);
        // The failed run's claim is present (zero pages), and everything refills hand out
        // reads zero.
        assert_eq!(
            present_pages(&arena, arena.base(), HALF_PAGES),
            2 * RECYCLE_RUN_PAGES
        );
        allocate_all(&arena, &moving, 4000);
    }

    #[test]
    fn a_failed_fallback_leaves_a_gap_that_the_next_refill_fills() {
        if !move_here("a_failed_fallback_leaves_a_gap_that_the_next_refill_fills") {
            return;
        }
        let (arena, moving, inj) = setup(vec![
            Rule::new(Call::UffdMove, Errno::ENOENT, Trigger::Nth(1)),
            Rule::new(Call::UffdCopy, Errno::EFAULT, Trigger::Nth(1)),
        ]);
        let old = arena.base() + HALF;
        assert_eq!(recycle_old_half(&arena, &moving, old, old + HALF, HALF), 0);
        assert_eq!(inj.injected(Call::UffdMove), 1);
        assert_eq!(inj.injected(Call::UffdCopy), 1);
        allocate_all(&arena, &moving, 5000);
    }

    #[test]
    fn a_failed_residency_check_recycles_nothing() {
        if !move_here("a_failed_residency_check_recycles_nothing") {
            return;
        }
        let (arena, moving, inj) = setup(vec![Rule::new(
            Call::Mincore,
            Errno::ENOMEM,
            Trigger::Always,
        )]);
        let old = arena.base() + HALF;
        assert_eq!(recycle_old_half(&arena, &moving, old, old + HALF, HALF), 0);
        assert_eq!(inj.injected(Call::Mincore), 1);
        assert_eq!(inj.seen(Call::UffdMove), 0);
        allocate_all(&arena, &moving, 3000);
    }

    #[test]
    fn a_failed_populate_is_an_error_and_the_next_refill_fills_the_hole() {
        if !move_here("a_failed_populate_is_an_error_and_the_next_refill_fills_the_hole") {
            return;
        }
        let (arena, moving, inj) = setup(vec![Rule::new(
            Call::UffdCopy,
            Errno::EFAULT,
            Trigger::Nth(1),
        )]);
        assert!(moving.bump(&arena, 3000, 8 * PAGE_SIZE).is_err());
        assert_eq!(inj.injected(Call::UffdCopy), 1);
        // The failed buffer's pages (below `top` now) are made present by the next refill.
        let a = moving.bump(&arena, 3000, 8 * PAGE_SIZE).unwrap().unwrap();
        assert_eq!(a, arena.base() + 3000);
        assert_eq!(present_pages(&arena, arena.base(), 2), 2);
    }

    #[test]
    fn concurrent_refills_get_disjoint_zeroed_present_buffers() {
        if !move_here("concurrent_refills_get_disjoint_zeroed_present_buffers") {
            return;
        }
        let mut recycled = 0;
        for _ in 0..20 {
            let (arena, moving, _inj) = setup(vec![]);
            let old = arena.base() + HALF;
            let (arena, moving) = (&arena, &moving);
            std::thread::scope(|s| {
                let recycler =
                    s.spawn(move || recycle_old_half(arena, moving, old, old + HALF, HALF));
                let refills: Vec<_> = (0..3)
                    .map(|_| s.spawn(move || allocate_all(arena, moving, 3000)))
                    .collect();
                let total: usize = refills.into_iter().map(|h| h.join().unwrap()).sum();
                assert_eq!(total, HALF / 3000);
                let r = recycler.join().unwrap();
                assert!(r <= OLD_PAGES);
                recycled += r;
            });
        }
        eprintln!("pages recycled while refills ran: {recycled} in 20 rounds");
    }
}
