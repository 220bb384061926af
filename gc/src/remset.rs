//! Remembered sets of the generational mode: where the old generation may hold references
//! into the young one.
//!
//! A young cycle ([`crate::generational`]) marks from the roots plus the reference slots of
//! the old objects that its remembered set names, and forwards exactly those slots at its
//! flip; it never traces through the rest of the old generation. Two remembered sets fit the
//! interface [`RememberedSet`]:
//!
//! - **cards** ([`CardTable`], [`crate::Generational::Cards`]): the store path
//!   (`Local::set`'s shared store, typed views, `Obj::store`) marks the card
//!   ([`CARD_BYTES`]) of a reference slot written in the old range: one compare of the slot
//!   address against the old range, one byte store ([`CardTable::note_store`]);
//! - **written pages** ([`crate::Generational::WrittenPages`], barrier free: the old range is
//!   write-protected with `UFFD_FEATURE_WP_ASYNC`, and `PAGEMAP_SCAN` reports the pages
//!   written since the last scan): [`crate::Generational::WrittenPages`] (`remset_wp.rs`).
//!
//! The protocol, in cycle order (every call but [`CardTable::note_store`] is made by the
//! collector, with the world stopped or from the one GC thread):
//! 1. [`RememberedSet::old_range_changed`]: the old generation is now `[start, end)` (a
//!    promotion extended it; a full cycle emptied it: `start == end`). Everything recorded
//!    about addresses that left the range is dropped; memory that joined it is clean (its
//!    references are known to the collector, which keeps them with `keep_dirty`).
//! 2. [`RememberedSet::for_each_dirty_range`] (a young cycle's start, in its pause in
//!    stop-the-world mode; in concurrent mode on the GC thread once the initial mark's pause
//!    is over, again at the precleaning and in the remark's pause): report every range of the old generation that may hold a reference
//!    slot written since the previous report (or kept dirty), and clear it: a store after its
//!    range was reported is reported by the next call. Ranges are card aligned (pages are).
//! 3. [`RememberedSet::keep_dirty`] (the flip of a young cycle, or a promotion): after
//!    forwarding, this old slot still refers to a young object: report its range again at the
//!    next young cycle.
//! 4. [`RememberedSet::after_young_cycle`]: the young cycle is over (re-arm tracking).
//!
//! Invariant (exactness): at a young cycle's final report (its start in stop-the-world mode,
//! its remark in concurrent mode), every old slot that holds a reference to a young object lies
//! in a range reported by that cycle or an earlier call of the same cycle. The card table
//! keeps it because every reference store into an old slot dirties its card before the
//! reference can be read by the collector (release store, acquire read), and because every
//! slot still young after a flip is kept dirty.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use faultline_heap::{ArenaError, VolatileArena};

use crate::mode::Generational;

/// Bytes per card (a power of two dividing the page size).
pub const CARD_BYTES: usize = 512;

/// A remembered set: what a young cycle scans of the old generation (see the module
/// documentation for the protocol and its exactness invariant).
pub(crate) trait RememberedSet: Send + Sync {
    /// Which kind this is.
    fn kind(&self) -> Generational;

    /// The old generation is now `[start, end)` (page aligned; empty after a full cycle).
    /// Called with the world stopped.
    fn old_range_changed(
        &self,
        arena: &VolatileArena,
        start: usize,
        end: usize,
    ) -> Result<(), ArenaError>;

    /// Report (and clear) the old ranges `[start, end)` that may hold reference slots written
    /// since the last report; returns the number of units (cards, pages) reported.
    fn for_each_dirty_range(
        &self,
        arena: &VolatileArena,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<usize, ArenaError>;

    /// The old slot at `slot` still refers to a young object after a flip: report its range
    /// at the next young cycle.
    fn keep_dirty(&self, slot: usize);

    /// Visit the old ranges that [`RememberedSet::for_each_dirty_range`] would report now,
    /// without clearing them (a sample for the cycle policy, racing with the mutators' stores:
    /// never part of the exactness protocol). `false`: this set cannot be read without
    /// clearing it.
    fn peek_dirty_ranges(&self, _f: &mut dyn FnMut(usize, usize)) -> bool {
        false
    }

    /// Report every range of the old generation at the next call of
    /// [`RememberedSet::for_each_dirty_range`]: a cycle that took (and cleared) dirty ranges
    /// was abandoned without its flip, which would have forwarded the slots it found and kept
    /// them (a forked child ends a cycle in its marking so, see [`crate::fork`]); or a young
    /// cycle must find every old slot that refers to anything but an old object (it lets
    /// unpinned stranded objects leave: [`crate::generational::GenCycle::stranded_leave`]).
    fn report_all(&self);

    /// The young cycle is over.
    fn after_young_cycle(&self, arena: &VolatileArena) -> Result<(), ArenaError>;

    /// A young cycle's flip has just forwarded the old slots (world stopped, before mutators
    /// run again): the written-pages set re-protects the pages that forwarding stored into.
    fn after_forwarding(&self, _arena: &VolatileArena) {}

    /// Bytes of side memory it holds (for statistics).
    fn footprint(&self) -> usize;

    /// The barrier-free set's harvest costs (`None` for the others).
    fn scan_stats(&self) -> Option<(ScanStats, ScanStats)> {
        None
    }
}

/// The cost of the harvests so far (the protect + scan half of the barrier-free remembered
/// set; visiting the objects on the pages is the cycle's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    /// Harvests.
    pub harvests: u64,
    /// Pages the harvests' `PAGEMAP_SCAN` calls walked (the ranges' sizes in pages).
    pub pages_walked: u64,
    /// Written pages they reported.
    pub written: u64,
    /// Pages they returned from the side list (kept by the cycle before).
    pub kept: u64,
    /// Pages returned in all (written, kept, or everything after a fallback; each once).
    pub returned: u64,
    /// Harvests that fell back to every page (scan failed, or invalidated).
    pub fallbacks: u64,
    /// Nanoseconds spent in the harvests' scans.
    pub scan_ns: u64,
    /// Nanoseconds spent write-protecting the pages the flips wrote again (and explicit
    /// protections).
    pub protect_ns: u64,
    /// Re-protections that failed (their pages are reported again: exact, slower).
    pub protect_failures: u64,
}

/// The card table: one byte per [`CARD_BYTES`] of the moving space (both halves), set by the
/// store barrier for reference stores into the old range.
///
/// Invariants: `old_lo`/`old_len` change only with the world stopped; a card outside the old
/// range is never set; a set card's byte is stored with release ordering after the slot store
/// that caused it, and read with acquire ordering (a swap) before its slots are read.
#[derive(Debug)]
pub(crate) struct CardTable {
    /// Address covered by card 0 (the moving space's base).
    base: usize,
    /// One byte per card: non-zero = dirty.
    cards: Box<[AtomicU8]>,
    /// The old range's start.
    old_lo: AtomicUsize,
    /// The old range's length (0: no old generation, the barrier never fires).
    old_len: AtomicUsize,
}

impl CardTable {
    /// A clean table over `[base, base + bytes)`.
    pub(crate) fn new(base: usize, bytes: usize) -> CardTable {
        CardTable {
            base,
            cards: (0..bytes.div_ceil(CARD_BYTES))
                .map(|_| AtomicU8::new(0))
                .collect(),
            old_lo: AtomicUsize::new(0),
            old_len: AtomicUsize::new(0),
        }
    }

    /// The barrier: a reference was stored into the slot at `slot`. Marks its card if the
    /// slot lies in the old range (one compare, one byte store).
    #[inline(always)]
    pub(crate) fn note_store(&self, slot: usize) {
        let off = slot.wrapping_sub(self.old_lo.load(Ordering::Relaxed));
        if off < self.old_len.load(Ordering::Relaxed) {
            self.dirty(slot);
        }
    }

    /// Mark the card of `slot` (in the old range).
    #[inline]
    fn dirty(&self, slot: usize) {
        self.cards[(slot - self.base) / CARD_BYTES].store(1, Ordering::Release);
    }

    /// The old range `[lo, hi)`.
    pub(crate) fn old_range(&self) -> (usize, usize) {
        let lo = self.old_lo.load(Ordering::Relaxed);
        (lo, lo + self.old_len.load(Ordering::Relaxed))
    }

    /// The cards of `[s, e)` (card-aligned addresses of the covered range; empty if `e <= s`).
    fn cards_in(&self, s: usize, e: usize) -> &[AtomicU8] {
        if e <= s {
            return &[];
        }
        &self.cards[(s - self.base) / CARD_BYTES..(e - self.base) / CARD_BYTES]
    }

    /// Dirty cards in the old range (for tests; does not clear).
    #[cfg(test)]
    pub(crate) fn dirty_cards(&self) -> usize {
        let (lo, hi) = self.old_range();
        self.cards_in(lo, hi)
            .iter()
            .filter(|c| c.load(Ordering::Relaxed) != 0)
            .count()
    }

    /// Set the old range to `[start, end)`, clearing the cards that leave it. World stopped.
    pub(crate) fn set_old_range(&self, start: usize, end: usize) {
        let (lo, hi) = self.old_range();
        // Cards that leave the range are cleared (a later range starts clean there).
        let clear = |s: usize, e: usize| {
            for c in self.cards_in(s, e) {
                c.store(0, Ordering::Relaxed);
            }
        };
        if end <= start {
            clear(lo, hi);
        } else {
            clear(lo, hi.min(start).max(lo));
            clear(lo.max(end), hi);
        }
        self.old_lo.store(start, Ordering::Relaxed);
        self.old_len
            .store(end.saturating_sub(start), Ordering::Relaxed);
    }

    /// Report every dirty card of the old range to `f` (runs of adjacent cards joined) and
    /// clear it; returns the number of cards.
    pub(crate) fn take_dirty(&self, f: &mut dyn FnMut(usize, usize)) -> usize {
        self.dirty_runs(true, f)
    }

    /// Report every dirty card of the old range to `f` (runs of adjacent cards joined),
    /// clearing it if `clear`; returns the number of cards.
    fn dirty_runs(&self, clear: bool, f: &mut dyn FnMut(usize, usize)) -> usize {
        let (lo, hi) = self.old_range();
        if hi <= lo {
            return 0;
        }
        let first = (lo - self.base) / CARD_BYTES;
        let mut n = 0;
        let mut run: Option<(usize, usize)> = None;
        for (i, c) in self.cards_in(lo, hi).iter().enumerate() {
            // A cheap load first: most cards are clean.
            if c.load(Ordering::Relaxed) == 0 || (clear && c.swap(0, Ordering::AcqRel) == 0) {
                continue;
            }
            n += 1;
            let s = self.base + (first + i) * CARD_BYTES;
            match run {
                Some((rs, re)) if re == s => run = Some((rs, s + CARD_BYTES)),
                Some((rs, re)) => {
                    f(rs, re);
                    run = Some((s, s + CARD_BYTES));
                }
                None => run = Some((s, s + CARD_BYTES)),
            }
        }
        if let Some((rs, re)) = run {
            f(rs, re);
        }
        n
    }
}

impl RememberedSet for CardTable {
    fn kind(&self) -> Generational {
        Generational::Cards
    }

    fn old_range_changed(
        &self,
        _arena: &VolatileArena,
        start: usize,
        end: usize,
    ) -> Result<(), ArenaError> {
        self.set_old_range(start, end);
        Ok(())
    }

    fn for_each_dirty_range(
        &self,
        _arena: &VolatileArena,
        f: &mut dyn FnMut(usize, usize),
    ) -> Result<usize, ArenaError> {
        Ok(self.take_dirty(f))
    }

    fn keep_dirty(&self, slot: usize) {
        self.note_store(slot);
    }

    fn report_all(&self) {
        let (lo, hi) = self.old_range();
        for c in self.cards_in(lo, hi) {
            c.store(1, Ordering::Release);
        }
    }

    fn peek_dirty_ranges(&self, f: &mut dyn FnMut(usize, usize)) -> bool {
        self.dirty_runs(false, f);
        true
    }

    fn after_young_cycle(&self, _arena: &VolatileArena) -> Result<(), ArenaError> {
        Ok(())
    }

    fn footprint(&self) -> usize {
        self.cards.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirty(t: &CardTable) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        t.take_dirty(&mut |s, e| out.push((s, e)));
        out
    }

    #[test]
    fn only_old_slots_dirty_their_cards() {
        let base = 1 << 20;
        let t = CardTable::new(base, 1 << 20);
        t.note_store(base + 100);
        assert_eq!(t.dirty_cards(), 0, "no old range: the barrier never fires");
        t.set_old_range(base + 4096, base + 4096 + 8192);
        t.note_store(base + 100); // below the old range
        t.note_store(base + 4096 + 8192); // just above it
        assert_eq!(t.dirty_cards(), 0);
        t.note_store(base + 4096); // first card
        t.note_store(base + 4096 + 600); // second card
        t.note_store(base + 4096 + 8191); // last card
        assert_eq!(t.dirty_cards(), 3);
        assert_eq!(
            dirty(&t),
            vec![
                (base + 4096, base + 4096 + 1024),
                (base + 4096 + 8192 - 512, base + 4096 + 8192)
            ]
        );
        assert_eq!(t.dirty_cards(), 0, "reporting clears");
        t.note_store(base + 4096 + 600);
        t.note_store(base + 4096 + 4096);
        t.set_old_range(base + 4096, base + 4096 + 4096);
        assert_eq!(
            t.dirty_cards(),
            1,
            "the card that left the range is cleared"
        );
        t.set_old_range(base, base);
        t.note_store(base + 4096 + 600);
        assert_eq!(t.dirty_cards(), 0, "an empty old range: nothing is dirty");
    }

    #[test]
    fn peeking_reports_the_dirty_cards_and_leaves_them_dirty() {
        let base = 1 << 20;
        let t = CardTable::new(base, 1 << 20);
        t.set_old_range(base, base + 8192);
        t.note_store(base + 8);
        t.note_store(base + 520);
        t.note_store(base + 4096);
        let mut seen = Vec::new();
        assert!(t.peek_dirty_ranges(&mut |s, e| seen.push((s, e))));
        assert_eq!(
            seen,
            vec![(base, base + 1024), (base + 4096, base + 4096 + 512)]
        );
        assert_eq!(t.dirty_cards(), 3, "peeking does not clear");
        assert_eq!(dirty(&t), seen);
    }
}
