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
//! - the minor strategy's memfd cannot move pages between file offsets, so it *keeps* them
//!   instead ([`ReleaseState::enable_keep`]; issue 16 item 3): at a cycle's end the old half
//!   keeps, mapped, the pages where the next compaction into it is predicted to end (the last
//!   destination's end) and as many above as the fresh headroom, all below the old half's
//!   known-present end (so none is a hole); the rest is released. At the next flip into
//!   that half, [`prepare_destination`] (a failure point before any reference changes)
//!   unmaps the kept pages the destination pages cover (the registered view only: the page
//!   cache stays, so the compaction's fill through the fill view reuses the page and its
//!   `UFFDIO_CONTINUE` maps it, and a mutator's touch faults as before), or releases them
//!   all when the flip cannot keep them (pinned objects, a forked child, a window that is not
//!   the half); when they start above the destination's end, the pages between are made
//!   present (zero) if they are fewer than half the kept ones and at most
//!   [`MAX_GAP_PAGES`] (a bound on the pause), else the kept ones are
//!   released. So the kept pages left always start at the destination's end, and
//!   [`flip_watermarks`] claims them as fresh memory, marked dirty so that refills zero what
//!   they hand out (everything below the claimed end present, nothing above it, as the
//!   space's invariant wants). No kept page is ever read before a refill zeroed it or a
//!   compaction filled it.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use faultline_heap::arena::PoisonMethod;
use faultline_heap::{ArenaError, ArenaOffset, VolatileArena, PAGE_SIZE};

use crate::space::MovingSpace;

/// Pages moved per `UFFDIO_MOVE` call when recycling (one claim of the current half each).
pub(crate) const RECYCLE_RUN_PAGES: usize = 64;

/// At most this many pages between the destination's end and the minor strategy's kept pages
/// are made present at a flip (in its pause, one `UFFDIO_COPY` of zeroes each, about a
/// microsecond a page); a wider gap releases the kept pages instead.
const MAX_GAP_PAGES: usize = 64;

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
    /// Keeping the minor strategy's fresh memory is on (see the module documentation).
    keep_enabled: AtomicBool,
    /// Pages `[kept_lo, kept_hi)` (absolute) of the non-current half kept mapped for the next
    /// flip into it (0, 0: none).
    kept_lo: AtomicUsize,
    kept_hi: AtomicUsize,
    /// The end (relative to its half) of the last concurrent flip's destination pages: where
    /// the next compaction into the other half is predicted to end.
    last_dest_rel: AtomicUsize,
    /// The old half's known-present end at the last concurrent flip (absolute; pages below it
    /// are present, so keeping them keeps no hole).
    old_ready: AtomicUsize,
}

/// What [`crate::Heap::release_stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReleaseStats {
    /// Pages poisoned (markers or pattern) since creation.
    pub poisoned_pages: u64,
    /// Releases of an old half that failed and were redone at the next flip.
    pub failed_releases: u64,
}

impl ReleaseState {
    pub(crate) fn stats(&self) -> ReleaseStats {
        ReleaseStats {
            poisoned_pages: self.poisoned_pages.load(Ordering::Relaxed),
            failed_releases: self.failed_releases.load(Ordering::Relaxed),
        }
    }

    /// Keep the minor strategy's fresh memory from now on (at heap creation: memfd arena,
    /// arena choreography, no generational mode, `recycle_old_half`).
    pub(crate) fn enable_keep(&self) {
        self.keep_enabled.store(true, Ordering::Relaxed);
    }

    /// The kept range, if any, and forget it.
    fn take_kept(&self) -> Option<(usize, usize)> {
        let lo = self.kept_lo.swap(0, Ordering::AcqRel);
        let hi = self.kept_hi.swap(0, Ordering::AcqRel);
        (hi > lo).then_some((lo, hi))
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

/// End of a cycle for the old half `[from, from_end)`: recycle what the current half will
/// allocate before the next trigger (`want` bytes; see [`recycle_old_half`]) if `recycle`,
/// then release the whole range as [`release_old_half`] does. Returns the pages recycled.
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
) -> usize {
    if from_end <= from {
        return 0;
    }
    if st.keep_enabled.load(Ordering::Relaxed) && recycle && !poison && keep.is_empty() {
        if let Some(kept) = keep_old_half(arena, moving, st, from, from_end, want) {
            return kept;
        }
    }
    let mut pages = 0;
    for (s, e) in crate::pins::subtract(from, from_end, keep) {
        if recycle && !poison {
            pages += recycle_old_half(arena, moving, s, e, want.saturating_sub(pages * PAGE_SIZE));
        }
        release_old_half(arena, st, poison, arena.offset_of(s), e - s);
    }
    pages
}

/// The end of the half holding `a` (0 if neither does).
fn half_end_of(moving: &MovingSpace, a: usize) -> usize {
    moving
        .half_base
        .iter()
        .map(|&b| b + moving.half_bytes)
        .find(|&e| a >= e - moving.half_bytes && a < e)
        .unwrap_or(0)
}

/// The minor strategy's end of a cycle for the old half `[from, from_end)` (see the module
/// documentation): keep `want` bytes of its pages mapped from the predicted end of the next
/// compaction into it, release the rest. Returns the pages kept, or `None` (nothing kept,
/// nothing released) when keeping does not apply: a forked child, a half whose window is not
/// whole, no present page at the predicted end.
fn keep_old_half(
    arena: &VolatileArena,
    moving: &MovingSpace,
    st: &ReleaseState,
    from: usize,
    from_end: usize,
    want: usize,
) -> Option<usize> {
    let ready = st.old_ready.swap(0, Ordering::AcqRel);
    let half_end = half_end_of(moving, from);
    if arena.is_forked() || want == 0 || half_end - moving.half_bytes != from {
        return None;
    }
    // Only pages known present (below the old half's ready end) are kept: never a hole.
    if ready <= from || ready > from_end {
        return None;
    }
    let lo = from + st.last_dest_rel.load(Ordering::Relaxed).min(ready - from);
    let hi = (lo + want.div_ceil(PAGE_SIZE) * PAGE_SIZE).min(ready);
    if hi <= lo {
        return None;
    }
    release_old_half(arena, st, false, arena.offset_of(from), lo - from);
    release_old_half(arena, st, false, arena.offset_of(hi), from_end - hi);
    st.kept_lo.store(lo, Ordering::Release);
    st.kept_hi.store(hi, Ordering::Release);
    Some((hi - lo) / PAGE_SIZE)
}

/// The minor strategy's kept pages at a concurrent flip (world stopped), in place of
/// [`MovingSpace::reset_watermarks`]: `pop` is the destination's claimed end, the current
/// half is the destination. Records the prediction for the next cycle, then makes the kept
/// pages above the destination (what [`prepare_destination`] left of them, starting at
/// `pop`) fresh memory, claimed at once and marked dirty. Makes no kernel call, so it cannot
/// fail.
pub(crate) fn flip_watermarks(moving: &MovingSpace, st: &ReleaseState, pop: &mut usize) {
    let half_base = moving.half_base[moving.current.load(Ordering::Relaxed)];
    // The old half's known-present end, before the reset below forgets it.
    st.old_ready.store(moving.ready_end(), Ordering::Release);
    st.last_dest_rel.store(*pop - half_base, Ordering::Relaxed);
    let kept = st
        .take_kept()
        .filter(|&(lo, hi)| lo >= *pop && hi <= half_base + moving.half_bytes);
    match kept {
        Some((lo, hi)) if lo == *pop => {
            *pop = hi;
            moving.reset_watermarks(hi);
            moving.keep_dirty(lo, hi);
        }
        Some((lo, hi)) => {
            // Not left by `prepare_destination` (which leaves them at the destination's end):
            // refills step over present pages and zero the dirty ones; the range is released
            // before the next flip into this half.
            moving.reset_watermarks(*pop);
            moving.keep_dirty(lo, hi);
            // (Half 0 starts the arena: arena offsets count from its base.)
            st.mark_dirty(lo - moving.half_base[0], hi - lo);
            debug_assert!(
                false,
                "kept pages {lo:#x}..{hi:#x} above the claimed end {:#x}",
                *pop
            );
        }
        None => moving.reset_watermarks(*pop),
    }
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
/// stopped, before any reference changes. The minor strategy's kept pages there (see the
/// module documentation): with `keep_fresh` = the destination pages' end (absolute; a
/// concurrent flip into the whole half, no pinned object), those below it are unmapped and
/// the rest stay for [`flip_watermarks`]; without, all are released.
pub(crate) fn prepare_destination(
    arena: &VolatileArena,
    st: &ReleaseState,
    to_offset: ArenaOffset,
    half_bytes: usize,
    keep: &[(usize, usize)],
    clean: &[(usize, usize)],
    keep_fresh: Option<usize>,
) -> Result<(), ArenaError> {
    for &(s, e) in clean {
        arena.release(arena.offset_of(s), e - s)?;
    }
    let to_offset = to_offset.get();
    let kept = st.take_kept();
    let (o, l) = (
        st.dirty_offset.load(Ordering::Acquire),
        st.dirty_len.load(Ordering::Acquire),
    );
    // The dirty range first: `prepare_kept` may make pages present below the kept ones (the
    // gap up to the destination's end), and those may lie in it (a failed release of the
    // pages below the kept ones); released after, they would be holes in fresh memory.
    if l != 0 && o + l > to_offset && o < to_offset + half_bytes {
        // A plain release undoes both: it frees what a failed release left present, and
        // MADV_DONTNEED drops poison markers and the poison pattern.
        let base = arena.base();
        let keep: Vec<(usize, usize)> = keep.iter().map(|&(s, e)| (s - base, e - base)).collect();
        for (s, e) in crate::pins::subtract(o, o + l, &keep) {
            if let Err(e) = arena.release(ArenaOffset(s), e - s) {
                // The kept pages stay recorded for the next attempt.
                if let Some((lo, hi)) = kept {
                    st.kept_lo.store(lo, Ordering::Release);
                    st.kept_hi.store(hi, Ordering::Release);
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
            let keep_fresh = keep_fresh.filter(|_| {
                !arena.is_forked() && clean_dirty && keep.is_empty() && clean.is_empty()
            });
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
    keep_fresh: Option<usize>,
) -> Result<(), ArenaError> {
    let Some(dest_end) = keep_fresh else {
        return arena
            .release(arena.offset_of(lo), hi - lo)
            .inspect_err(|_| {
                st.mark_dirty(arena.offset_of(lo).get(), hi - lo);
            });
    };
    let cover = dest_end.clamp(lo, hi);
    if dest_end < lo {
        // The pages between the destination and the kept ones: made present (zero), so the
        // kept ones join the claimed end; or, if that costs more than keeping saves or would
        // make the pause long (this runs with the world stopped), the kept ones are released.
        let (gap, kept) = (lo - dest_end, hi - lo);
        let fill = 2 * gap <= kept && gap <= MAX_GAP_PAGES * PAGE_SIZE;
        let r = if fill {
            arena.populate(arena.offset_of(dest_end), gap).map(drop)
        } else {
            arena.release(arena.offset_of(lo), kept)
        };
        if let Err(e) = r {
            st.mark_dirty(arena.offset_of(dest_end).get(), hi - dest_end);
            return Err(e);
        }
        if fill {
            st.kept_lo.store(dest_end, Ordering::Release);
            st.kept_hi.store(hi, Ordering::Release);
        }
        return Ok(());
    }
    if cover > lo {
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
        st.kept_lo.store(cover, Ordering::Release);
        st.kept_hi.store(hi, Ordering::Release);
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
    use crate::space::tests::present_pages;
    use faultline_heap::arena::{ArenaConfig, Backing, FaultDelivery};
    use faultline_heap::inject::{FaultInjector, Rule, Trigger};
    use faultline_heap::{Call, Capability, Errno, Probe, Sys};
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
        let arena = VolatileArena::new(
            ArenaConfig::new(2 * HALF)
                .backing(Backing::Anonymous)
                .delivery(FaultDelivery::Sigbus)
                .sys(Sys::new(inj.clone())),
        )
        .unwrap();
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

    /// The minor strategy's end of a cycle for the old half (half 1), its first `present`
    /// pages present, the last destination `dest` pages long, keeping `want` pages: the pages
    /// kept.
    fn end_kept_cycle(
        arena: &VolatileArena,
        moving: &MovingSpace,
        st: &ReleaseState,
        present: usize,
        dest: usize,
        want: usize,
    ) -> usize {
        let old = arena.base() + HALF;
        st.enable_keep();
        st.old_ready
            .store(old + present * PAGE_SIZE, Ordering::Relaxed);
        st.last_dest_rel.store(dest * PAGE_SIZE, Ordering::Relaxed);
        finish_old_half(
            arena,
            moving,
            st,
            false,
            true,
            old,
            old + present * PAGE_SIZE,
            want * PAGE_SIZE,
            &[],
        )
    }

    /// The minor strategy's kept pages when the release of the pages below them failed (the
    /// dirty range ends where they start) and the next destination ends a few pages below
    /// them: the gap between is made present *after* the dirty range is released (it lies in
    /// it), so the fresh memory the flip claims has no hole, and refills hand it out zeroed.
    #[test]
    fn kept_pages_above_a_failed_release_join_the_destination_without_holes() {
        let test = "kept_pages_above_a_failed_release_join_the_destination_without_holes";
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
        prepare_destination(
            &arena,
            &st,
            ArenaOffset(HALF),
            HALF,
            &[],
            &[],
            Some(dest_end),
        )
        .unwrap();
        // Below the destination's end: absent (the compaction fills it). From there to the
        // kept pages' end: present, the gap (pages 96..100) included.
        assert_eq!(present_pages(&arena, old, 96), 0);
        assert_eq!(present_pages(&arena, dest_end, 44), 44);
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 44);
        // The flip claims them as fresh memory.
        moving.current.store(1, Ordering::Relaxed);
        moving.window.store(old, Ordering::Relaxed);
        moving.window_end.store(old + HALF, Ordering::Relaxed);
        moving.top.store(dest_end, Ordering::Relaxed);
        let mut pop = dest_end;
        flip_watermarks(&moving, &st, &mut pop);
        assert_eq!(pop, old + 140 * PAGE_SIZE);
        *moving.populated.lock().unwrap() = pop;
        inj.disarm();
        // Every buffer reads zero (kept garbage zeroed by the refills), up to the half's end.
        let n = allocate_all(&arena, &moving, 3000);
        assert_eq!(n, (HALF - 96 * PAGE_SIZE) / 3000);
    }

    /// A gap wider than [`MAX_GAP_PAGES`] below the kept pages is not filled in the flip's
    /// pause: the kept pages are released instead, and the flip claims nothing above the
    /// destination.
    #[test]
    fn a_wide_gap_below_the_kept_pages_releases_them() {
        if !here(
            "a_wide_gap_below_the_kept_pages_releases_them",
            Capability::Sigbus,
        ) {
            return;
        }
        let (arena, moving, _inj) = setup(vec![]);
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
        // The destination ends at the half's start: a 70-page gap (fewer than half the kept
        // pages, but more than the bound).
        const _: () = assert!(70 > MAX_GAP_PAGES && 2 * 70 <= 180);
        prepare_destination(&arena, &st, ArenaOffset(HALF), HALF, &[], &[], Some(old)).unwrap();
        assert_eq!(present_pages(&arena, old, HALF_PAGES), 0);
        moving.current.store(1, Ordering::Relaxed);
        let mut pop = old;
        flip_watermarks(&moving, &st, &mut pop);
        assert_eq!(pop, old, "nothing kept to claim");
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
