//! The generational mode: young cycles that mark from the roots plus a remembered set
//! ([`crate::remset`]) and compact only the young objects; full cycles as before.
//!
//! ```text
//!  old half:    [ old generation [lo, hi) | young window [hi, top) ...        ]
//!  other half:  [ young window ("middle" survivors, then new objects) [base, top) ... ]
//! ```
//!
//! Layout: the **old generation** is a page-aligned prefix of one half (the *old half*,
//! half 0 at first), below that half's window, like stranded pinned objects
//! ([`crate::pins`]). It never moves in a young cycle.
//!
//! - A **young cycle** compacts the current window `[window, top)` into the other half's
//!   window. Old objects are live and never traced through; marking starts from the roots,
//!   every large object (large objects are freed by full cycles only) and the reference slots
//!   of old objects in the ranges the remembered set reports. The flip forwards exactly those
//!   slots; a slot that still refers to a young object afterwards is kept dirty.
//! - **Promotion**: a young cycle that compacts *into* the old half places the survivors right
//!   above the old generation and promotes them all (each has survived at least one earlier
//!   cycle in the other half, or was allocated in the old half's window and survives its
//!   second cycle there): the old generation grows to the page-rounded end of the survivors,
//!   the gap is zero (one-word fillers), and the young window starts empty above it. A cycle
//!   into the other half keeps its survivors young ("middle").
//! - A **full cycle** marks and compacts everything, as a heap that is not generational does
//!   every cycle; it runs when the old generation has grown by `old_growth` over its size
//!   after the last full cycle, when anything is pinned or stranded (young cycles leave pins
//!   to full cycles), and only from the old half (its source is `[lo, top)`): if the other half
//!   is current, a young cycle runs first (it promotes every survivor) and the next cycle is
//!   full. Afterwards the old generation is empty.
//!
//! Invariants:
//! - [`OldGen`] changes only with the world stopped (inside a cycle's pause);
//! - `[lo, hi)` is a parseable sequence of objects (zero words are one-word fillers), present,
//!   and `first` names, for each card of it, the object covering the card's first word;
//! - every reference from an old object to a young one lies in a range the remembered set
//!   will report at the next young cycle (the remembered set's exactness invariant).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use faultline_heap::object::{Header, TypeRegistry, WORD};
use faultline_heap::{ArenaError, VolatileArena};

use crate::config::HeapConfig;
use crate::mode::Generational;
use crate::remset::{CardTable, RememberedSet, CARD_BYTES};
use crate::space::MovingSpace;
use crate::trace::{header, Atomic, SlotAccess};

/// The generational state of one heap.
pub(crate) struct GenState {
    /// The remembered set.
    pub remset: Arc<dyn RememberedSet>,
    /// The old generation and the cycle policy.
    old: Mutex<OldGen>,
}

/// What kind of cycle runs next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CycleKind {
    /// Compact the young window only.
    Young,
    /// Mark and compact everything (the old generation included).
    Full,
}

/// The old generation (see the module invariants).
#[derive(Debug, Default)]
pub(crate) struct OldGen {
    /// The half that holds it.
    pub half: usize,
    /// Its range `[lo, hi)` (page aligned; empty: `lo == hi`).
    pub lo: usize,
    /// End (exclusive).
    pub hi: usize,
    /// Per card of `[lo, hi)`: the word offset from `lo` of the object covering its first
    /// word.
    first: Vec<u32>,
    /// A full cycle runs once the old generation holds more bytes than this.
    pub limit: usize,
    /// ... or once large objects hold more bytes than this.
    pub large_limit: usize,
    /// The next cycle is full (decided when a full cycle was due in the other half).
    pub full_pending: bool,
    /// Objects promoted at the last flip whose crossing-map entries are not built yet
    /// (concurrent compaction is still placing them): `[start, end)`.
    pending: Option<(usize, usize)>,
}

impl OldGen {
    /// Bytes it spans.
    pub(crate) fn bytes(&self) -> usize {
        self.hi - self.lo
    }

    /// Empty it (after a full cycle), with the next full cycle at `limits` (old, large).
    pub(crate) fn clear(&mut self, (limit, large_limit): (usize, usize)) {
        self.lo = 0;
        self.hi = 0;
        self.first.clear();
        self.limit = limit;
        self.large_limit = large_limit;
        self.full_pending = false;
        self.pending = None;
    }

    /// Grow it to `new_hi` over the objects just promoted into `[start, end)` (zero words
    /// follow up to `new_hi`, page aligned): the range changes now (at the flip), the card
    /// crossing map is built by [`OldGen::build_pending`] once the objects are in place.
    fn promote(&mut self, start: usize, end: usize, new_hi: usize) {
        if self.lo == self.hi {
            self.lo = start;
            self.hi = start;
            self.first.clear();
        }
        debug_assert_eq!(start, self.hi, "promotion extends the old generation");
        self.hi = new_hi;
        self.pending = Some((start, end));
    }

    /// Build the crossing map over the objects promoted last (present and in place now).
    /// World stopped or the GC thread alone, before the next cycle.
    fn build_pending(&mut self, types: &TypeRegistry) {
        let Some((start, end)) = self.pending.take() else {
            return;
        };
        let cards = (self.hi - self.lo) / CARD_BYTES;
        let mut next_card = self.first.len();
        debug_assert_eq!(self.lo + next_card * CARD_BYTES, start);
        self.first.reserve(cards - next_card);
        let mut a = start;
        while a < end {
            let obj_end = a + object_words(types, a) * WORD;
            // Every card whose first word lies in [a, obj_end) is covered by this object.
            while next_card < cards && self.lo + next_card * CARD_BYTES < obj_end {
                self.first.push(((a - self.lo) / WORD) as u32);
                next_card += 1;
            }
            a = obj_end;
        }
        // The zero tail: one-word fillers, each covering its own first word.
        while next_card < cards {
            self.first.push((next_card * CARD_BYTES / WORD) as u32);
            next_card += 1;
        }
    }

    /// Visit the address of every reference slot in `[s, e)` (clipped to the old
    /// generation) of the objects that overlap it. World stopped, or the slots read
    /// atomically by `f`.
    pub(crate) fn for_each_slot_in(
        &self,
        s: usize,
        e: usize,
        types: &TypeRegistry,
        f: &mut dyn FnMut(usize),
    ) {
        let s = s.max(self.lo);
        let e = e.min(self.hi);
        if s >= e {
            return;
        }
        let card = (s - self.lo) / CARD_BYTES;
        let mut a = self.lo + self.first[card] as usize * WORD;
        while a < e {
            let h = header(a);
            let size = types.size_words(h).unwrap_or(1);
            let end = a + size * WORD;
            if end > s {
                let lo = s.saturating_sub(a).div_ceil(WORD);
                let hi = size.min((e - a).div_ceil(WORD));
                types.for_each_ref_word(h, lo, hi, |k| f(a + k * WORD));
            }
            a = end;
        }
    }
}

/// The old-generation size (and large-object bytes) at which the next full cycle runs, after
/// a full cycle that left `live` bytes in the moving space and `large` in large objects:
/// `max(x (1 + old_growth), min_trigger_bytes / 2)` each.
pub(crate) fn full_limit(config: &HeapConfig, live: usize, large: usize) -> (usize, usize) {
    let f = |b: usize| {
        ((b as f64 * (1.0 + config.old_growth)) as usize).max(config.min_trigger_bytes / 2)
    };
    (f(live), f(large))
}

/// Size in words of the object at `a` (a zero word: a one-word filler).
fn object_words(types: &TypeRegistry, a: usize) -> usize {
    let h: Header = header(a);
    types.size_words(h).unwrap_or(1).max(1)
}

/// What the cycle policy reads at a cycle's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CycleFacts {
    /// Some object is pinned.
    pub pinned: bool,
    /// A stranded object lies in the old half above the old generation (pinned during a
    /// concurrent young cycle from the old half): a full cycle from the old half would take it
    /// into its source range, so young cycles run until it is gone.
    pub stranded_above_old: bool,
    /// An allocation found the space exhausted.
    pub exhausted: bool,
    /// Bytes held by large objects.
    pub large_used: usize,
    /// `Breakage::SkipDirtyCard` (tests): drop the first range the remembered set reports.
    pub skip_one: bool,
}

/// What a cycle of a generational heap does, decided with the world stopped at its start.
#[derive(Debug)]
pub(crate) struct GenCycle {
    /// Young or full.
    pub kind: CycleKind,
    /// Where the marked (and compacted) source range starts: the window, or for a full cycle
    /// the old generation's start.
    pub from: usize,
    /// The old generation `[lo, hi)` at the cycle's start.
    pub old: (usize, usize),
    /// Young: the old reference slots found through the remembered set (addresses); their
    /// values are roots, and the flip forwards them.
    pub old_slots: Vec<usize>,
    /// Young: the survivors are promoted (the cycle compacts into the old half).
    pub promote: bool,
    /// The destination window starts at or above this (the old generation's end when
    /// compacting into the old half; else 0).
    pub to_floor: usize,
    /// Remembered-set units scanned.
    pub dirty_units: usize,
}

impl GenCycle {
    /// Whether this is a young cycle.
    pub(crate) fn young(&self) -> bool {
        self.kind == CycleKind::Young
    }
}

impl GenState {
    /// Lock the old generation (pauses only; never in a fault path).
    pub(crate) fn old(&self) -> MutexGuard<'_, OldGen> {
        self.old.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Decide the cycle that starts now (world stopped): young or full, its source, and for a
    /// young cycle the old slots its remembered set names (see [`CycleFacts`]).
    pub(crate) fn begin(
        &self,
        arena: &VolatileArena,
        moving: &MovingSpace,
        types: &TypeRegistry,
        facts: CycleFacts,
    ) -> Result<GenCycle, ArenaError> {
        let mut old = self.old();
        let cur = moving.current.load(Ordering::Relaxed);
        let bytes = old.bytes();
        // Full when the old generation (or the large objects, which only full cycles free)
        // grew past their limits, when an allocation found the space exhausted with an old
        // generation to reclaim, and when objects are pinned in the old half (they would be
        // kept, stranded, above the old generation: young cycles from the old half leave pins
        // to full cycles).
        let full_due = old.full_pending
            || bytes > old.limit
            || bytes > moving.half_bytes / 2
            || facts.large_used > old.large_limit
            || (facts.exhausted && bytes > 0)
            || (facts.pinned && cur == old.half);
        let kind = if !full_due {
            CycleKind::Young
        } else if bytes == 0 || (cur == old.half && !facts.stranded_above_old) {
            CycleKind::Full
        } else if cur != old.half {
            // The old generation lies in the other half: this young cycle promotes every
            // survivor into it, and the next cycle (from the old half) is full.
            old.full_pending = true;
            CycleKind::Young
        } else {
            CycleKind::Young
        };
        let promote = kind == CycleKind::Young && 1 - cur == old.half;
        let mut c = GenCycle {
            kind,
            from: moving.base(),
            old: (old.lo, old.hi),
            old_slots: Vec::new(),
            promote,
            to_floor: if promote && bytes > 0 { old.hi } else { 0 },
            dirty_units: 0,
        };
        if kind == CycleKind::Full {
            if bytes > 0 {
                debug_assert_eq!(
                    old.hi,
                    moving.base(),
                    "the old generation ends at the window"
                );
                c.from = old.lo;
            }
            return Ok(c);
        }
        let mut skip = facts.skip_one;
        let slots = &mut c.old_slots;
        c.dirty_units = self.remset.for_each_dirty_range(arena, &mut |s, e| {
            if std::mem::take(&mut skip) {
                return;
            }
            old.for_each_slot_in(s, e, types, &mut |a| slots.push(a));
        })?;
        Ok(c)
    }

    /// Concurrent young cycle, before its remark (GC thread, mutators running) and in it
    /// (world stopped): the old slots in the ranges the remembered set reports since the last
    /// call are added to the cycle's, and their values (read atomically) returned, to be
    /// traced.
    pub(crate) fn rescan(
        &self,
        c: &mut GenCycle,
        arena: &VolatileArena,
        types: &TypeRegistry,
    ) -> Result<Vec<usize>, ArenaError> {
        let old = self.old();
        let before = c.old_slots.len();
        let slots = &mut c.old_slots;
        c.dirty_units += self.remset.for_each_dirty_range(arena, &mut |s, e| {
            old.for_each_slot_in(s, e, types, &mut |a| slots.push(a));
        })?;
        Ok(c.old_slots[before..]
            .iter()
            .map(|&a| Atomic::load(a))
            .collect())
    }

    /// The flip of cycle `c` (world stopped, references about to be forwarded or forwarded):
    /// a full cycle empties the old generation (its objects move with the rest; the next full
    /// cycle runs past `full_limit`); a promoting young cycle grows it over the survivors,
    /// placed in `[to, objects_end)`, to `new_hi`. Returns the bytes promoted.
    pub(crate) fn at_flip(
        &self,
        c: &GenCycle,
        arena: &VolatileArena,
        moving: &MovingSpace,
        (to, objects_end, new_hi): (usize, usize, usize),
        full_limit: (usize, usize),
    ) -> Result<usize, ArenaError> {
        let mut old = self.old();
        match c.kind {
            CycleKind::Full => {
                old.clear(full_limit);
                moving.set_old_range(0, 0);
                self.remset.old_range_changed(arena, 0, 0)?;
                Ok(0)
            }
            CycleKind::Young if c.promote => {
                old.promote(to, objects_end, new_hi);
                moving.set_old_range(old.lo, old.hi);
                self.remset.old_range_changed(arena, old.lo, old.hi)?;
                Ok(objects_end - to)
            }
            CycleKind::Young => Ok(0),
        }
    }

    /// The cycle `c` is complete (its compaction done; world stopped or the GC thread
    /// alone): the crossing map covers the promoted objects, the remembered set is told.
    pub(crate) fn finish(
        &self,
        c: &GenCycle,
        arena: &VolatileArena,
        types: &TypeRegistry,
    ) -> Result<(), ArenaError> {
        self.old().build_pending(types);
        if c.young() {
            self.remset.after_young_cycle(arena)?;
        }
        Ok(())
    }

    /// Old-generation bytes now.
    pub(crate) fn old_bytes(&self) -> usize {
        self.old().bytes()
    }
}

/// The generational state for `config` over a moving space of two halves of `half` bytes at
/// `base`: the card table the barrier marks (cards only) and the state.
pub(crate) fn create(
    config: &HeapConfig,
    base: usize,
    half: usize,
) -> (Option<Arc<CardTable>>, Option<GenState>) {
    let limit = config.min_trigger_bytes / 2;
    match config.generational {
        Generational::Off => (None, None),
        Generational::Cards => {
            let cards = Arc::new(CardTable::new(base, 2 * half));
            let state = GenState {
                remset: cards.clone(),
                old: Mutex::new(OldGen {
                    limit,
                    large_limit: limit,
                    ..OldGen::default()
                }),
            };
            (Some(cards), Some(state))
        }
        // Barrier-free: no card table for the store path.
        Generational::WrittenPages => {
            let state = GenState {
                remset: Arc::new(crate::remset_wp::WrittenPages::new(base, 2 * half)),
                old: Mutex::new(OldGen {
                    limit,
                    ..OldGen::default()
                }),
            };
            (None, Some(state))
        }
    }
}
