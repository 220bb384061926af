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
//! - pages holding kept or stranded pinned objects ([`crate::pins`]) are never released;
//! - nothing here runs in signal context.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use faultline_heap::arena::PoisonMethod;
use faultline_heap::{ArenaError, ArenaOffset, VolatileArena, PAGE_SIZE};

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

/// After an in-place slide ([`crate::StwCompaction::Slide`]): release the current half's free
/// tail `[new_end, old_end)` (page aligned; `old_end` was the populated watermark). Returns
/// the new watermark: `new_end`, or, if the release failed, `old_end`, with the tail made
/// present again and zeroed so that allocation may hand it out (the space's invariant:
/// present below the watermark, absent above, fresh memory zero). Never fails: this runs
/// after references were updated, so a kernel error in the fallback ends the process.
pub(crate) fn release_free_tail(arena: &VolatileArena, new_end: usize, old_end: usize) -> usize {
    if old_end <= new_end {
        return new_end;
    }
    let (offset, len) = (arena.offset_of(new_end), old_end - new_end);
    for _ in 0..3 {
        if arena.release(offset, len).is_ok() {
            return new_end;
        }
    }
    // Some pieces may be released already: bring those back (zero pages), then zero the rest.
    if let Err(e) = arena.populate(offset, len) {
        fatal_after_flip("keeping the free tail after a failed release", &e);
    }
    // SAFETY: [new_end, old_end) lies in the current half, present now (populated above) and
    // holding no live object (the slide moved every live word below `new_end`).
    unsafe { core::ptr::write_bytes(new_end as *mut u8, 0, len) };
    old_end
}

/// Before a flip into the half at `to_offset`: release again whatever the last cycle left
/// present or poisoned there, except the pages of `keep` (absolute `[start, end)` page
/// ranges, sorted and disjoint: stranded pinned objects, see [`crate::pins`]); and release the
/// garbage pages `clean` (absolute ranges) below the destination window. With the world
/// stopped, before any reference changes.
pub(crate) fn prepare_destination(
    arena: &VolatileArena,
    st: &ReleaseState,
    to_offset: ArenaOffset,
    half_bytes: usize,
    keep: &[(usize, usize)],
    clean: &[(usize, usize)],
) -> Result<(), ArenaError> {
    for &(s, e) in clean {
        arena.release(arena.offset_of(s), e - s)?;
    }
    let to_offset = to_offset.get();
    let (o, l) = (
        st.dirty_offset.load(Ordering::Acquire),
        st.dirty_len.load(Ordering::Acquire),
    );
    if l == 0 || o + l <= to_offset || o >= to_offset + half_bytes {
        return Ok(());
    }
    // A plain release undoes both: it frees what a failed release left present, and
    // MADV_DONTNEED drops poison markers and the poison pattern.
    let base = arena.base();
    let keep: Vec<(usize, usize)> = keep.iter().map(|&(s, e)| (s - base, e - base)).collect();
    for (s, e) in crate::pins::subtract(o, o + l, &keep) {
        arena.release(ArenaOffset(s), e - s)?;
    }
    st.dirty_len.store(0, Ordering::Release);
    Ok(())
}

/// [`release_old_half`] of the absolute range `[from, end)` except the pages of `keep`
/// (sorted, disjoint `[start, end)` page ranges: kept pinned objects, see [`crate::pins`]).
pub(crate) fn release_old_half_except(
    arena: &VolatileArena,
    st: &ReleaseState,
    poison: bool,
    from: usize,
    end: usize,
    keep: &[(usize, usize)],
) {
    for (s, e) in crate::pins::subtract(from, end, keep) {
        release_old_half(arena, st, poison, arena.offset_of(s), e - s);
    }
}

/// A kernel error after references already point into the new half (a destination page
/// that cannot be mapped even after the arena's retries): the heap cannot continue, and
/// returning the error would leave every reference dangling. End the process loudly.
pub(crate) fn fatal_after_flip(what: &str, e: &ArenaError) -> ! {
    eprintln!("faultline: {what} failed after references were updated: {e}; aborting");
    std::process::abort()
}
