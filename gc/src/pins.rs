//! Pinned moving-space objects: the pin table, and what a flip does with pinned objects.
//!
//! A moving-space object is pinned by [`crate::Mutator::pin`] (its [`crate::Pin`] holds a
//! global root and a count here), wherever it lies in its half. A compaction never moves it:
//!
//! 1. **Kept.** At a flip, every pinned object of the old half's used range `[from, from_top)`
//!    is *kept*: the plan forwards it to itself ([`crate::plan::Plan::forward`]), its pages
//!    are never released, staged or moved, and its reference fields are forwarded in the flip
//!    pause. (It stays in the plan's rank: a dead copy of it, a *ghost* nothing references,
//!    lands in the new half, garbage at the next cycle.)
//! 2. **Stranded.** After the flip a kept object lies outside the current half's window (the
//!    part of a half that objects are compacted into and allocated in): it is *stranded*.
//!    Marking does not reach it through the spaces; instead its reference fields are root
//!    slots (visited with the heap's roots, so marking traces them, the flip forwards them and
//!    verification checks them), and everything that names objects (`Mutator::local`, the
//!    verifier, identity hashes, weak references) accepts its address.
//! 3. **Windows.** A half's window `[lo, hi)` (page aligned) is the largest *gap* of the half
//!    between the pages of the stranded objects that stay stranded in it ([`window`]): below
//!    the lowest, between two, or above the highest. Destination pages, allocation, recycling
//!    and `populated` never meet a stranded page; outside the window the half holds only
//!    stranded objects and garbage pages, cleaned (given back to the kernel) when the half is
//!    next a destination. So an object may be pinned anywhere in its half: the compaction
//!    into that half uses the larger part of the half beside it (nearly half of the half at
//!    worst for one pinned object). Generational mode ([`crate::generational`]): a cycle that
//!    compacts into the old generation's half, or promotes, starts the window above every
//!    stranded object of the half and the old generation instead (the old generation is a
//!    prefix right below the window); the policy runs full cycles while anything is pinned
//!    with nothing old, or a stranded object is unpinned, and a young cycle that begins with
//!    an unpinned stranded object lets it leave (see 4.), so such windows do not climb a
//!    half behind the pins kept at each flip.
//! 4. **Unpinned.** A stranded object whose last pin is gone is copied at the next flip to the
//!    new window, after the compacted objects (every reference to it forwarded by the plan),
//!    and is an ordinary object from then on. (Generational mode: a young cycle forwards only
//!    the old slots its remembered set names, so it lets unpinned objects leave only when it
//!    began with one and scanned the whole old generation,
//!    [`crate::generational::GenCycle::stranded_leave`]; other young cycles keep them.) Its
//!    old pages are garbage: cleaned later, or, inside the destination window, released in
//!    that flip (after the copy, before any destination page is mapped), so that unpinning
//!    gives the room back.
//! 5. **Too little room.** When the compacted objects (and the leaving ones) do not fit in
//!    the destination window, the flip fails before anything moved
//!    ([`crate::CollectError::NoRoomBesidePins`]; the heap is unchanged); dropping pins lets
//!    the next cycle fit. (Generational mode: a young cycle that would let unpinned objects
//!    leave and has no room for them keeps them stranded instead, as other young cycles do,
//!    and fails only if the compacted objects alone do not fit:
//!    [`crate::generational::GenCycle::stranded_stayed`]; a full cycle has no such choice.)
//!
//! Invariants:
//! - the pinned address of an object never changes while any pin of it exists: kept objects
//!   stay put, stranded objects are copied only when unpinned;
//! - no page of a stranded object lies inside its half's window;
//! - the table is changed by mutators (pin), any thread (unpin) and by the flip with the
//!   world stopped; it is never read in a fault path (the plan carries the flip's kept and
//!   relocated objects as plain slices);
//! - `dirty_end[h]` is at least the end of every page of half `h` that may be present outside
//!   its window (a kept page, a stranded object's page, or such a page after its object left).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use faultline_heap::object::{TypeRegistry, WORD};
use faultline_heap::PAGE_SIZE;

use crate::trace::header;

/// A stranded object: a kept object, outside every window.
#[derive(Debug, Clone)]
pub(crate) struct Stranded {
    /// Its address (object start).
    pub addr: usize,
    /// Its size in bytes.
    pub bytes: usize,
    /// The absolute addresses of its reference slots.
    pub slots: Vec<usize>,
}

impl Stranded {
    /// A copy of its bytes (header included). With the world stopped.
    pub(crate) fn contents(&self) -> Vec<u8> {
        // SAFETY: a stranded object's pages stay present while it is stranded (module
        // invariants), and with the world stopped nothing writes them.
        unsafe { core::slice::from_raw_parts(self.addr as *const u8, self.bytes) }.to_vec()
    }

    /// Its page-aligned extent `[start, end)`.
    pub(crate) fn pages(&self) -> (usize, usize) {
        (
            self.addr & !(PAGE_SIZE - 1),
            (self.addr + self.bytes).div_ceil(PAGE_SIZE) * PAGE_SIZE,
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct PinInner {
    /// Pinned moving-space objects: address -> number of pins.
    pinned: BTreeMap<usize, usize>,
    /// Stranded objects, by address.
    stranded: Vec<Stranded>,
    /// Per half: end of the pages that may be present outside its window (see the invariants).
    dirty_end: [usize; 2],
}

/// The pin table of one heap (pins are rare: one mutex).
#[derive(Debug, Default)]
pub(crate) struct PinTable {
    inner: Mutex<PinInner>,
    /// Young cycles whose flip let unpinned stranded objects leave (generational mode, see
    /// 4.; `crate::PinStats::young_cycles_stranded_left`). Written only by flips.
    young_left: AtomicU64,
}

/// What a flip does with pinned and stranded objects, decided before any reference changes.
#[derive(Debug, Default)]
pub(crate) struct FlipPins {
    /// Pinned live objects of `[from, from_top)`: `(address, bytes)`, sorted.
    pub kept: Vec<(usize, usize)>,
    /// Their pages, merged `[start, end)` ranges, sorted.
    pub kept_pages: Vec<(usize, usize)>,
    /// Stranded objects that stay (still pinned).
    pub staying: Vec<Stranded>,
    /// Stranded objects that leave (unpinned): copied to the new window.
    pub leaving: Vec<Stranded>,
    /// Pages of leaving objects in the destination window (`[to_lo, to_hi)`): released by
    /// the flip once their contents are copied, `[start, end)`, sorted and merged.
    pub leaving_in_window: Vec<(usize, usize)>,
    /// The destination window's start in the destination half.
    pub to_lo: usize,
    /// The destination window's end (exclusive) in the destination half.
    pub to_hi: usize,
    /// Page ranges of the destination half outside the window to clean: `[start, end)`.
    pub clean: Vec<(usize, usize)>,
}

impl FlipPins {
    /// Whether anything is pinned or stranded (the flip takes the general path).
    pub(crate) fn active(&self) -> bool {
        !self.kept.is_empty() || !self.staying.is_empty() || !self.leaving.is_empty()
    }
}

/// Merge sorted `[start, end)` ranges that touch or overlap.
pub(crate) fn merge(mut v: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    v.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// The window of the half `[base, end)` whose stranded objects that stay occupy the pages
/// `occupied` (`[start, end)` ranges, sorted and merged, inside the half): its largest gap
/// between them, `[lo, hi)` (the highest of equal ones; the whole half if nothing is
/// occupied).
pub(crate) fn window(base: usize, end: usize, occupied: &[(usize, usize)]) -> (usize, usize) {
    let mut best = (end, end);
    for gap in subtract(base, end, occupied) {
        if gap.1 - gap.0 >= best.1 - best.0 {
            best = gap;
        }
    }
    best
}

/// `[lo, hi)` minus the sorted, merged ranges `holes`, as ranges.
pub(crate) fn subtract(lo: usize, hi: usize, holes: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = lo;
    for &(s, e) in holes {
        if e <= at || s >= hi {
            continue;
        }
        if s > at {
            out.push((at, s));
        }
        at = at.max(e);
    }
    if at < hi {
        out.push((at, hi));
    }
    out
}

impl PinTable {
    fn lock(&self) -> MutexGuard<'_, PinInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The table's lock, for fork's *prepare* to hold across the fork (`crate::fork`): a
    /// `Pin` is dropped by any thread, native mutators' included, which *prepare* does not
    /// wait for.
    pub(crate) fn lock_for_fork(&self) -> MutexGuard<'_, PinInner> {
        self.lock()
    }

    /// Pin the moving-space object at `addr` once more.
    pub(crate) fn pin(&self, addr: usize) {
        *self.lock().pinned.entry(addr).or_insert(0) += 1;
    }

    /// Drop one pin of `addr`.
    pub(crate) fn unpin(&self, addr: usize) {
        let mut g = self.lock();
        if let Some(n) = g.pinned.get_mut(&addr) {
            *n -= 1;
            if *n == 0 {
                g.pinned.remove(&addr);
            }
        }
    }

    /// A young cycle's flip let unpinned stranded objects leave (generational mode, see 4.).
    pub(crate) fn note_young_left(&self) {
        self.young_left.fetch_add(1, Ordering::Relaxed);
    }

    /// How many young cycles' flips let unpinned stranded objects leave.
    pub(crate) fn young_cycles_stranded_left(&self) -> u64 {
        self.young_left.load(Ordering::Relaxed)
    }

    /// Pins of moving-space objects in force.
    pub(crate) fn pinned_objects(&self) -> usize {
        self.lock().pinned.len()
    }

    /// Stranded objects: `(address, bytes)`.
    pub(crate) fn stranded(&self) -> Vec<(usize, usize)> {
        self.lock()
            .stranded
            .iter()
            .map(|s| (s.addr, s.bytes))
            .collect()
    }

    /// The pages of every stranded object: merged `[start, end)` ranges, sorted.
    pub(crate) fn stranded_pages(&self) -> Vec<(usize, usize)> {
        merge(self.lock().stranded.iter().map(Stranded::pages).collect())
    }

    /// Whether some stranded object holds no pin any more (it waits for a flip that lets
    /// unpinned objects leave: in generational mode, a full cycle's, or a young cycle's that
    /// scans the whole old generation).
    pub(crate) fn stranded_unpinned(&self) -> bool {
        let g = self.lock();
        g.stranded.iter().any(|s| !g.pinned.contains_key(&s.addr))
    }

    /// Whether `a` is the address of a stranded object.
    pub(crate) fn is_stranded(&self, a: usize) -> bool {
        let g = self.lock();
        !g.stranded.is_empty() && g.stranded.iter().any(|s| s.addr == a)
    }

    /// Visit the reference slots of every stranded object as root slots. The world is stopped.
    pub(crate) fn visit_slots(&self, f: &mut dyn FnMut(&mut usize)) {
        // Not under the lock: `f` may ask the table (the verifier does). Only a flip changes
        // the stranded set, and the caller is the only one in the pause.
        let slots: Vec<usize> = {
            let g = self.lock();
            if g.stranded.is_empty() {
                return;
            }
            g.stranded
                .iter()
                .flat_map(|s| s.slots.iter().copied())
                .collect()
        };
        for slot in slots {
            // SAFETY: a reference slot of a stranded object, whose pages stay present while
            // it is stranded (module invariants); the world is stopped, so no mutator
            // writes it meanwhile, and byte arrays (the only objects the kernel may write
            // through a pin from a native section) have no reference slots.
            f(unsafe { &mut *(slot as *mut usize) });
        }
    }

    /// Decide what the flip from `old = [from, from_top)` into half `to_half`
    /// (`[to_base, to_base + half_bytes)`) does with pins. `marked(a)` tells whether the
    /// object at `a` of the old range is live. `reserved` is `Some` in generational mode: the
    /// old generation (maybe empty) ([`crate::generational`]); when it lies in the destination
    /// half or the cycle `promotes` (its survivors extend or start the old generation, a
    /// prefix of the window), the destination window starts above the old generation and
    /// every stranded object of the half. Otherwise (not generational; a generational cycle
    /// that neither promotes nor compacts into the old generation's half) the window is the
    /// largest gap: with the floor rule there, a pin held high in a half left its window a
    /// few pages at the half's end, and every cycle into that half failed for room while
    /// most of the half was free. With `keep_unpinned` (a young cycle, which forwards only
    /// the old slots its remembered set names, unless it scanned the whole old generation)
    /// no stranded object leaves: unpinned ones stay stranded until a full cycle or a young
    /// cycle that scans the whole old generation and has the room for them. Changes nothing (see [`PinTable::commit`]).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn plan_flip(
        &self,
        (from, from_top): (usize, usize),
        to_base: usize,
        half_bytes: usize,
        to_half: usize,
        reserved: Option<(usize, usize)>,
        promotes: bool,
        keep_unpinned: bool,
        marked: impl Fn(usize) -> bool,
        types: &TypeRegistry,
    ) -> FlipPins {
        let g = self.lock();
        let mut fp = FlipPins::default();
        for &a in g.pinned.range(from..from_top).map(|(a, _)| a) {
            if marked(a) {
                let bytes = types.size_words(header(a)).unwrap_or(1) * WORD;
                fp.kept.push((a, bytes));
            }
        }
        fp.kept_pages = merge(
            fp.kept
                .iter()
                .map(|&(a, b)| {
                    (
                        a & !(PAGE_SIZE - 1),
                        (a + b).div_ceil(PAGE_SIZE) * PAGE_SIZE,
                    )
                })
                .collect(),
        );
        let in_to = |a: usize| a >= to_base && a < to_base + half_bytes;
        let mut occupied = Vec::new();
        for s in &g.stranded {
            if keep_unpinned || g.pinned.contains_key(&s.addr) {
                if in_to(s.addr) {
                    occupied.push(s.pages());
                }
                fp.staying.push(s.clone());
            } else {
                fp.leaving.push(s.clone());
            }
        }
        let old_in_to = reserved.filter(|r| r.0 < r.1 && in_to(r.0));
        let floor = reserved.is_some() && (promotes || old_in_to.is_some());
        if let Some(r) = old_in_to {
            occupied.push(r);
        }
        let occupied = merge(occupied);
        (fp.to_lo, fp.to_hi) = if floor {
            // Generational mode, into the old generation's half or promoting: the window
            // starts above every stranded object and the old generation of the half (the
            // promoted survivors extend the old generation right below the window, and a full
            // cycle's source `[old lo, top)` must hold no stranded object).
            let lo = occupied.last().map_or(to_base, |&(_, e)| e.max(to_base));
            (lo.min(to_base + half_bytes), to_base + half_bytes)
        } else {
            window(to_base, to_base + half_bytes, &occupied)
        };
        fp.leaving_in_window = merge(
            fp.leaving
                .iter()
                .filter(|s| in_to(s.addr))
                .map(|s| {
                    let (a, b) = s.pages();
                    (a.max(fp.to_lo), b.min(fp.to_hi))
                })
                .filter(|&(a, b)| a < b)
                .collect(),
        );
        // Clean the destination half below its old dirty end, except every stranded object's
        // pages there (staying or leaving: those lie outside the window, or are released by
        // the flip).
        let keep = merge(
            g.stranded
                .iter()
                .filter(|s| in_to(s.addr))
                .map(Stranded::pages)
                .collect(),
        );
        let dirty = g.dirty_end[to_half].max(to_base);
        fp.clean = subtract(to_base, dirty, &keep);
        fp
    }

    /// The flip is past its last failure point: the kept objects are stranded from now on
    /// (with their reference slots, found with `types`), staying ones stay, leaving ones are
    /// gone; the halves' dirty ends follow.
    pub(crate) fn commit(
        &self,
        fp: &FlipPins,
        types: &TypeRegistry,
        half_base: [usize; 2],
        half_bytes: usize,
        to_half: usize,
    ) {
        let mut g = self.lock();
        let half_of = |a: usize| usize::from(a >= half_base[1] && a < half_base[1] + half_bytes);
        let mut stranded = fp.staying.clone();
        for &(a, bytes) in &fp.kept {
            let h = header(a);
            let mut slots = Vec::new();
            types.for_each_ref_word(h, 0, bytes / WORD, |k| slots.push(a + k * WORD));
            stranded.push(Stranded {
                addr: a,
                bytes,
                slots,
            });
        }
        // The destination half was cleaned below its old dirty end except stranded pages; every
        // stranded object's pages (and every page left behind by a leaving one) stay below
        // their half's dirty end.
        let mut dirty = g.dirty_end;
        dirty[to_half] = half_base[to_half];
        for s in stranded.iter().chain(fp.leaving.iter()) {
            let h = half_of(s.addr);
            dirty[h] = dirty[h].max(s.pages().1);
        }
        g.dirty_end = dirty;
        stranded.sort_unstable_by_key(|s| s.addr);
        g.stranded = stranded;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtract_leaves_the_gaps() {
        let h = [(10, 20), (30, 40)];
        assert_eq!(subtract(0, 50, &h), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(subtract(15, 35, &h), vec![(20, 30)]);
        assert_eq!(subtract(10, 20, &h), vec![]);
        assert_eq!(subtract(0, 5, &[]), vec![(0, 5)]);
    }

    #[test]
    fn the_window_is_the_largest_gap() {
        let p = PAGE_SIZE;
        // Nothing stranded: the whole half.
        assert_eq!(window(0, 100 * p, &[]), (0, 100 * p));
        // Low, middle or high: the larger side.
        assert_eq!(window(0, 100 * p, &[(0, p)]), (p, 100 * p));
        assert_eq!(window(0, 100 * p, &[(40 * p, 41 * p)]), (41 * p, 100 * p));
        assert_eq!(window(0, 100 * p, &[(60 * p, 61 * p)]), (0, 60 * p));
        assert_eq!(window(0, 100 * p, &[(99 * p, 100 * p)]), (0, 99 * p));
        // Several: the largest gap between them.
        assert_eq!(
            window(
                0,
                100 * p,
                &[(10 * p, 11 * p), (50 * p, 52 * p), (90 * p, 100 * p)]
            ),
            (11 * p, 50 * p)
        );
        // Everything occupied: an empty window at the end.
        assert_eq!(window(0, 4 * p, &[(0, 4 * p)]), (4 * p, 4 * p));
    }

    #[test]
    fn merge_joins_touching_ranges() {
        assert_eq!(
            merge(vec![(30, 40), (0, 10), (10, 20), (35, 50)]),
            vec![(0, 20), (30, 50)]
        );
    }

    #[test]
    fn pins_count() {
        let t = PinTable::default();
        t.pin(64);
        t.pin(64);
        t.unpin(64);
        assert_eq!(t.pinned_objects(), 1);
        t.unpin(64);
        assert_eq!(t.pinned_objects(), 0);
    }
}
