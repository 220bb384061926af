//! Stress and torture switches of the collector, and the bookkeeping of released halves.
//!
//! The switches (all off by default, all in [`crate::HeapConfig`]):
//! - `stress_every`: a collection every N allocations of a mutator (in `mutator`);
//! - `stress_random`: a collection at seeded random allocation intervals ([`StressRandom`]);
//! - `phase_delay`: a sleep between the phases of a concurrent cycle ([`Phase`]), widening
//!   the windows in which mutators race with marking and compaction;
//! - `poison_released`: released memory is poisoned ([`release_old_half`]) so that a stale
//!   read faults hard (`UFFDIO_POISON`) or reads [`faultline_heap::arena::POISON_WORD`];
//! - `debug_break` (test-only, hidden): a deliberately broken collector ([`Breakage`]), to
//!   prove that the verifier and the shadow model catch one.
//!
//! There is no "compact everything" switch: every cycle already slides every live object of
//! the moving space into the other half (there is no partial compaction or dense prefix to
//! skip). The large-object space is non-moving by design and is never compacted.
//!
//! Invariants:
//! - at a flip, the destination half has no present page and no poison marker: a range of the
//!   old half whose release failed, or that was poisoned, is recorded in [`ReleaseState`] and
//!   released again by [`prepare_destination`] before any reference changes; if that fails the
//!   cycle fails before anything moved (a present page there would be read by a mutator
//!   instead of faulting, or refuse a fill with EEXIST);
//! - [`release_old_half`] never fails: a failed release is recorded, not propagated, because
//!   it happens after references point into the new half;
//! - nothing here runs in signal context.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use faultline_heap::arena::PoisonMethod;
use faultline_heap::{ArenaError, PAGE_SIZE};

use crate::config::HeapConfig;
use crate::heap::HeapInner;

/// Collect at random allocation intervals: each allocation of a mutator triggers a collection
/// with probability 1/`one_in` (mean interval `one_in`), drawn from a hash of `seed`, the
/// mutator's id and its allocation count (reproducible for a single-threaded run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressRandom {
    /// Mean allocations between collections (at least 1).
    pub one_in: u64,
    /// The seed.
    pub seed: u64,
}

/// A deliberately broken collector (test-only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breakage {
    /// Do not update the reference fields of large objects at the flip: they keep pointing
    /// into the released half.
    SkipLargeObjectRefs,
}

/// Points of a concurrent cycle at which `phase_delay` sleeps (the mutators run meanwhile).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// After the initial-mark pause, before concurrent marking.
    AfterInitialMark,
    /// After concurrent marking, before the remark + flip pause.
    BeforeRemark,
    /// After the flip, before the compaction workers start.
    BeforeCompaction,
}

/// Sleep for the configured phase delay (a no-op without one).
pub(crate) fn phase_delay(cfg: &HeapConfig, _at: Phase) {
    if let Some(d) = cfg.phase_delay {
        std::thread::sleep(d);
    }
}

/// Whether allocation number `n` of mutator `id` triggers a random stress collection.
pub(crate) fn random_hit(r: StressRandom, id: u64, n: u64) -> bool {
    // splitmix64 of (seed, id, n): cheap, stateless, well mixed.
    let mut z = r
        .seed
        .wrapping_add(id.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(n.wrapping_mul(0xBF58_476D_1CE4_E5B9));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    z % r.one_in.max(1) == 0
}

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
pub(crate) fn release_old_half(inner: &HeapInner, offset: usize, len: usize) {
    let st = &inner.release;
    if len == 0 {
        return;
    }
    let arena = &inner.arena;
    let mut released = false;
    for _ in 0..3 {
        if arena.release(offset, len).is_ok() {
            released = true;
            break;
        }
    }
    if !released {
        st.failed_releases.fetch_add(1, Ordering::Relaxed);
        st.mark_dirty(offset, len);
        return;
    }
    if inner.config.poison_released {
        match arena.poison_released(offset, len) {
            Ok(PoisonMethod::None) => {}
            Ok(_) => {
                st.poisoned_pages
                    .fetch_add((len / PAGE_SIZE) as u64, Ordering::Relaxed);
                st.mark_dirty(offset, len);
            }
            // A partial poison leaves markers behind: clear them at the flip like the rest.
            Err(_) => st.mark_dirty(offset, len),
        }
    }
}

/// Before a flip into the half at `to_offset`: release again whatever the last cycle left
/// present or poisoned there. With the world stopped, before any reference changes.
pub(crate) fn prepare_destination(
    inner: &HeapInner,
    to_offset: usize,
    half_bytes: usize,
) -> Result<(), ArenaError> {
    let st = &inner.release;
    let (o, l) = (
        st.dirty_offset.load(Ordering::Acquire),
        st.dirty_len.load(Ordering::Acquire),
    );
    if l == 0 || o + l <= to_offset || o >= to_offset + half_bytes {
        return Ok(());
    }
    // A plain release undoes both: it frees what a failed release left present, and
    // MADV_DONTNEED drops poison markers and the poison pattern.
    inner.arena.release(o, l)?;
    st.dirty_len.store(0, Ordering::Release);
    Ok(())
}
