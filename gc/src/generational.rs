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
//!   of old objects in the ranges the remembered set reports that hold a reference outside
//!   the old generation (a concurrent cycle scans them on the GC thread, after its initial
//!   mark: [`GenState::begin`]). The flip forwards exactly those slots; a slot that still
//!   refers to a young object afterwards is kept dirty. Concurrent young cycles are paced by
//!   their own figures ([`crate::youngpace`]).
//! - **Promotion** after `HeapConfig::promotion_age` survivals (2 by default). Ages are
//!   address bands, no header bits: every cycle places the window's survivors, in address
//!   order, at the start of the destination window, and allocation continues above them, so
//!   the window is always `[older survivors | younger survivors | new objects)`. `aged[i]`
//!   is the address below which every window object has survived at least `i + 1` cycles;
//!   each flip forwards the bands through the plan's rank (the first survivor at or above
//!   a band's end) and starts a new one at the allocation point. A young cycle that compacts
//!   *into* the old half (the only cycles that can promote: the old generation is a prefix
//!   of that half) promotes the survivors that reach the age (those below
//!   `aged[promotion_age - 2]`), placed right above the old generation: it grows to the
//!   last page boundary at or below their end that is an object start (a page-rounded end
//!   with a zero tail when every survivor is promoted), and the window starts there with the
//!   younger survivors (a few old-enough objects on the last page stay young one cycle more).
//!   References from the promoted objects to the survivors kept young are new old-to-young
//!   references: once compaction has placed them, they are kept dirty in the remembered set.
//!   A cycle into the other half keeps every survivor young ("middle"). So an object is
//!   promoted after exactly `promotion_age` survivals when its last one is into the old half,
//!   else one survival later. Before a full cycle (`full_pending`) every survivor is promoted.
//! - **Promotion at the first survival, by measurement** (`HeapConfig::first_survival_promotion`):
//!   each flip records `traced_end`, the end of the survivors the cycle *traced* (its source
//!   below `mark_top`; survivors allocated during marking are placed after them), and the next
//!   young cycle measures which share of those survived it (`again`, smoothed). While that
//!   share is at least the threshold, a promoting cycle promotes every survivor below its own
//!   `mark_top` (the traced ones, whatever their age); those allocated during its marking were
//!   never tested and stay young. Long-lived survivors (issue 15's tree-replace: every stored
//!   subtree lives on in the tree) are then copied and marked once less.
//! - **The first cycle promotes** (`HeapConfig::first_cycle_promotion`, on by default): a
//!   young cycle that starts with the old generation empty (the heap's first; after a full
//!   cycle, the next) traces every live object, as a full cycle does. The half it compacts
//!   into becomes the old half (nothing is old, so nothing lies in either), and it promotes
//!   every survivor it traced; those allocated during its marking stay young. Before, the
//!   first cycle kept its survivors young in the other half and the second copied them all
//!   back to promote them: the whole live set was copied twice before the first cheap young
//!   cycle (at 4 GiB live, two cycles of 22-64 s).
//! - **Full cycles when young cycles do not pay** (`HeapConfig::young_cost_max`, off by
//!   default): the cycles that trace everything record the live bytes; a young cycle with an
//!   old generation measures what it traced over them, and above the bound the next
//!   [`FALLBACK_FULL_CYCLES`] cycles are full (a live set replaced within about a cycle, as
//!   churn's, makes a young cycle trace about what a full one does). The GC log shows the
//!   measured share and the decision.
//! - **Full cycles when young pauses would be long** (`HeapConfig::young_slots_max`,
//!   concurrent): a young cycle forwards every old slot that refers to a young object in its
//!   flip pause, and rescans the cards written since its precleaning in its remark, so its
//!   pauses grow with the old-to-young references (a table of 2.7 M slots rewritten within
//!   every cycle, churn's at 1 GiB: 285-660 ms), while a full cycle moves them concurrently.
//!   At the end of a cycle whose successor would be young, the old slots with a young
//!   reference are counted in the remembered set's dirty ranges without clearing them (cards
//!   only) and, after a young cycle, among those it forwarded (not after one that scanned
//!   the whole old generation for stranded objects, [`GenCycle::stranded_leave`]: its count
//!   holds every old slot that refers to a large object too): over the bound, the next
//!   [`FALLBACK_FULL_CYCLES`] cycles are full ([`GenState::young_slots_over`]). They are
//!   counted again at the start of a concurrent cycle in the old half, which is then full
//!   itself ([`GenState::young_slots_at_start`], before the initial-mark pause, the world
//!   running: references written since the last cycle's end, a live set replaced within a
//!   cycle, made that cycle young, and the full cycles it found due came after one more
//!   young cycle from the other half). A full cycle
//!   next is paced for the old generation's live bytes too ([`GenState::next_mark_bytes`]).
//! - A **full cycle** marks and compacts everything, as a heap that is not generational does
//!   every cycle; it runs when the old generation has grown by `old_growth` over its size
//!   after the last full cycle, or over its size at its first promotion since then if that
//!   is larger (before, a heap whose long-lived data exceeded the first limit,
//!   `min_trigger_bytes / 2`, ran a full cycle right after promoting it, emptied the old
//!   generation and copied it all again to promote it once more), when anything is pinned
//!   in the old half or with nothing old, or a stranded object is no longer pinned (young
//!   cycles leave pins to full cycles, and a young cycle lets unpinned stranded objects
//!   leave only when it began with one: see [`GenState::begin`]), when an allocation about
//!   to fail has seen no full cycle flip since it
//!   began ([`GenState::request_full`]: young cycles free no old and no large object, so
//!   `OutOfMemory` comes only after a full collection), and only from the old half (its source is `[lo, top)`): if the other half
//!   is current, a young cycle runs first (it promotes every survivor) and the next cycle is
//!   full. With `HeapConfig::first_cycle_promotion` (the default) and nothing pinned, it
//!   promotes what it traced, as the first cycle does: the half it compacts into becomes the
//!   old half at its flip, the traced survivors the old generation (its first promotion
//!   since this cycle), and those allocated during its marking stay young. (Before, the
//!   old generation was left empty and the next cycle traced and copied the whole live set
//!   again to promote it: at 4 GiB live, a 15 s "young" cycle after every full one.)
//!   Otherwise the old generation is left empty and every survivor of the full cycle
//!   counts as having survived as long as the oldest band (a full cycle ages its source like
//!   a young one: the old generation lay below every band).
//!
//! - **Young cycles' trigger**: the old generation lies below the window, outside the bytes in
//!   use that the occupancy trigger and the pacer count, but it is just as resident: the goal
//!   bounds old and young bytes together as in a heap that is not generational, and the
//!   window gets what the old generation leaves ([`window_goal`]). (Counting the window alone
//!   let the heap reach the old generation plus the whole goal before a young cycle: at 1 GiB
//!   live, 3 GiB where stop-the-world holds 2.)
//! - **A full cycle's trigger** (and that of the young cycle that promotes everything before
//!   one, [`GenState::full_due_goal`]): the goal counts the old generation at its *estimated*
//!   live bytes ([`OldGen::live`]: what was promoted, at most what the last whole live set
//!   leaves beside the young survivors each young cycle traced), not its size. A live set
//!   replaced within about a cycle (the request's cache at 1 GiB) leaves the promoted objects
//!   dead in the old generation; counted as live, they doubled the goal, and the heap grew to
//!   the old generation plus twice itself (4.2 GiB where stop-the-world holds 2.2) before the
//!   young cycle that had to promote everything ahead of the full one, its fresh pages alone
//!   5.1 s of the prefill thread's CPU.
//!
//! Invariants:
//! - [`OldGen`] changes only with the world stopped (inside a cycle's pause);
//! - `[lo, hi)` is a parseable sequence of objects (zero words are one-word fillers), present,
//!   and `first` names, for each card of it, the object covering the card's first word;
//! - every reference from an old object to a young one lies in a range the remembered set
//!   will report at the next young cycle (the remembered set's exactness invariant);
//! - `aged` is non-increasing and lies in `[window, top]` after every flip (the band
//!   boundaries are addresses in the current window);
//! - `half` changes only while the old generation is empty (the first cycle's promotion, a
//!   full cycle's flip after it emptied the old generation).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use faultline_heap::object::{TypeRegistry, WORD};
use faultline_heap::{ArenaError, VolatileArena, PAGE_SIZE};

use crate::config::HeapConfig;
use crate::mode::Generational;
use crate::plan::{DestPage, Plan};
use crate::remset::{CardTable, RememberedSet, CARD_BYTES};
use crate::space::MovingSpace;
use crate::trace::{header, Atomic, SlotAccess};

/// The generational state of one heap.
pub(crate) struct GenState {
    /// The remembered set.
    pub remset: Arc<dyn RememberedSet>,
    /// The old generation and the cycle policy.
    old: Mutex<OldGen>,
    /// `HeapConfig::old_growth`.
    old_growth: f64,
    /// `HeapConfig::first_survival_promotion`.
    first_survival: f64,
    /// `HeapConfig::first_cycle_promotion`.
    first_cycle: bool,
    /// `HeapConfig::young_cost_max`.
    young_cost_max: f64,
    /// Young cycles' own pacing figures ([`crate::youngpace`]).
    pub young_pace: crate::youngpace::YoungPace,
    /// An allocation is about to fail with no full cycle flipped since it began
    /// ([`GenState::request_full`]): the next cycle to start, whoever starts it, is due full.
    /// Taken by [`GenState::begin`].
    full_requested: AtomicBool,
    /// Flips of full cycles: only those free the old generation and the large objects
    /// ([`GenState::full_flips`]).
    full_flips: AtomicU64,
    /// [`GenState::young_slots_at_start`]'s counts: with the world running, stopped.
    start_counts: [AtomicU64; 2],
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
    /// (concurrent compaction is still placing them): `[start, end)`, and the survivors kept
    /// young above them `[end, young_end)` (their references from the promoted objects are
    /// made dirty in the remembered set when the crossing map is built).
    pending: Option<(usize, usize, usize)>,
    /// The age bands of the current window: `aged[i]` is the address below which every
    /// object of the window has survived at least `i + 1` cycles (non-increasing in `i`;
    /// `promotion_age - 1` entries). Changed only at flips.
    aged: Vec<usize>,
    /// The address of the current window below which its objects were found live by the last
    /// cycle's marking (traced, not allocated during it): they lie at the window's start
    /// (survivors are placed in address order, the black ones last). Changed only at flips.
    traced_end: usize,
    /// The smoothed share of those traced survivors that survived the next young cycle
    /// (0: not measured). Changed only at flips.
    again: f64,
    /// The live bytes the last cycle that traced everything found (a full cycle, or a young
    /// cycle with nothing old; 0: none yet). Changed only at flips.
    whole_live: usize,
    /// Full cycles still to run because young cycles did not pay: the last measured young
    /// cost exceeded `HeapConfig::young_cost_max` ([`OldGen::measure_young_cost`]), or too
    /// many old slots held young references ([`GenState::young_slots_over`]). Set at flips
    /// (or by that count), counted down when a full cycle starts.
    fallback: u32,
    /// Why `fallback` was last set: true for too many old-to-young slots, false for the
    /// young cost (what the GC log and [`crate::GenStats::fallback_old_slots`] say).
    fallback_old_slots: bool,
    /// The last flip's young cost measurement (thousandths; `None`: not measured). Changed
    /// only at flips.
    last_cost: Option<u32>,
    /// The old generation's live bytes, estimated (at most `bytes()`): what was promoted into
    /// it, less what young cycles show has died since, the live set being taken as steady
    /// (a young cycle that traced `t` bytes of young survivors leaves at most `whole_live - t`
    /// of the old generation live). What a full cycle next is paced for
    /// ([`GenState::next_mark_bytes`], [`GenState::full_due_goal`]). Changed only at flips.
    live: usize,
}

impl OldGen {
    /// Bytes it spans.
    pub(crate) fn bytes(&self) -> usize {
        self.hi - self.lo
    }

    /// The young cycle `c`'s flip, before aging (`fwd` and `to` as for [`OldGen::age`] and the
    /// destination's start): sample the share of the last cycle's traced survivors that
    /// survived this one, then record this cycle's (its survivors below `c.mark_top`) for the
    /// next, in the new window `[base, top)`.
    fn note_traced(
        &mut self,
        c: &GenCycle,
        fwd: &dyn Fn(usize) -> usize,
        to: usize,
        (base, top): (usize, usize),
    ) {
        if c.young() && self.traced_end > c.from {
            let before = self.traced_end - c.from;
            let after = fwd(self.traced_end).saturating_sub(to);
            self.again = crate::pacer::ewma(self.again, (after as f64 / before as f64).min(1.0));
        }
        self.traced_end = fwd(c.mark_top).clamp(base, top);
    }

    /// Whether young cycles pay (`HeapConfig::young_cost_max`), measured at cycle `c`'s flip
    /// (`fwd` and `to` as for [`OldGen::note_traced`]): its traced survivors are
    /// `[to, fwd(mark_top))`. A cycle that traced everything (full, or young with nothing old)
    /// sets the whole live set; a young cycle with an old generation measures what it traced
    /// over it, and when that exceeds `max` the next [`FALLBACK_FULL_CYCLES`] cycles are full;
    /// it also bounds the old generation's estimated live bytes ([`OldGen::live`]) by what the
    /// whole live set leaves beside its traced survivors. Returns the share in thousandths when
    /// measured.
    fn measure_young_cost(
        &mut self,
        c: &GenCycle,
        fwd: &dyn Fn(usize) -> usize,
        to: usize,
        max: f64,
    ) -> Option<u32> {
        let traced = fwd(c.mark_top).saturating_sub(to);
        if !c.young() || c.old.0 == c.old.1 {
            self.whole_live = traced;
            return None;
        }
        if self.whole_live == 0 {
            return None;
        }
        self.live = self.live.min(self.whole_live.saturating_sub(traced));
        let share = traced as f64 / self.whole_live as f64;
        if share > max {
            self.fallback = FALLBACK_FULL_CYCLES;
            self.fallback_old_slots = false;
        }
        Some((share * 1e3).round().min(f64::from(u32::MAX)) as u32)
    }

    /// Whether a promoting young cycle promotes every survivor it traces
    /// ([`HeapConfig::first_survival_promotion`]: the measured share at or above `threshold`).
    fn first_survival(&self, threshold: f64) -> bool {
        self.again > 0.0 && self.again >= threshold
    }

    /// Empty it (after a full cycle), with the next full cycle at `limits` (old, large).
    pub(crate) fn clear(&mut self, (limit, large_limit): (usize, usize)) {
        self.lo = 0;
        self.hi = 0;
        self.first.clear();
        self.live = 0;
        self.limit = limit;
        self.large_limit = large_limit;
        self.full_pending = false;
        self.pending = None;
    }

    /// The source address below which a promoting cycle promotes (objects that have survived
    /// `promotion_age - 1` cycles before it): `usize::MAX` for every survivor.
    fn promotable_below(&self) -> usize {
        self.aged.last().copied().unwrap_or(usize::MAX)
    }

    /// A flip aged every survivor by one: `fwd` maps a source address to the destination
    /// address of the first survivor at or above it, `[base, top)` is the new window (the
    /// survivors kept young, then the allocation point).
    fn age(&mut self, fwd: &dyn Fn(usize) -> usize, base: usize, top: usize) {
        for i in (0..self.aged.len()).rev() {
            let a = if i == 0 { top } else { fwd(self.aged[i - 1]) };
            self.aged[i] = a.clamp(base, top);
        }
    }

    /// Grow it to `new_hi` over the objects just promoted into `[start, end)` (zero words
    /// follow up to `new_hi`, page aligned): the range changes now (at the flip), the card
    /// crossing map is built by [`OldGen::build_pending`] once the objects are in place.
    fn promote(&mut self, start: usize, end: usize, new_hi: usize, young_end: usize) {
        if self.lo == self.hi {
            self.lo = start;
            self.hi = start;
            self.first.clear();
            self.live = 0;
        }
        debug_assert_eq!(start, self.hi, "promotion extends the old generation");
        self.hi = new_hi;
        self.live += end - start;
        self.pending = Some((start, end, young_end));
    }

    /// Build the crossing map over the objects promoted last (present and in place now), and
    /// keep dirty in `remset` every slot of theirs that refers to a survivor kept young
    /// (`[end, young_end)`: the new old-to-young references a partial promotion makes), in
    /// one pass over the promoted objects (it reads every one of them: GBs when a whole live
    /// set is promoted). World stopped or the GC thread alone, before the next cycle (mutators
    /// may run: the slots are read atomically, and a store after the flip is the remembered
    /// set's own).
    fn build_pending(&mut self, types: &TypeRegistry, remset: &dyn RememberedSet) {
        let Some((start, end, young_end)) = self.pending.take() else {
            return;
        };
        let partial = young_end > end;
        let cards = (self.hi - self.lo) / CARD_BYTES;
        let mut next_card = self.first.len();
        debug_assert_eq!(self.lo + next_card * CARD_BYTES, start);
        self.first.reserve(cards - next_card);
        let mut a = start;
        while a < end {
            let h = header(a);
            let size = types.size_words(h).unwrap_or(1).max(1);
            if partial {
                types.for_each_ref_word(h, 0, size, |k| {
                    let slot = a + k * WORD;
                    let v = Atomic::load(slot);
                    if v >= end && v < young_end {
                        remset.keep_dirty(slot);
                    }
                });
            }
            let obj_end = a + size * WORD;
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

    /// [`OldGen::for_each_slot_in`], the slots whose value (read atomically) may refer to a
    /// young object: anything but null or an old object. `f` gets the slot and its value
    /// (generic: one indirect call a slot, as before, on the remark's rescan).
    fn for_each_young_slot_in(
        &self,
        s: usize,
        e: usize,
        types: &TypeRegistry,
        mut f: impl FnMut(usize, usize),
    ) {
        let (lo, hi) = (self.lo, self.hi);
        self.for_each_slot_in(s, e, types, &mut |a| {
            let v = Atomic::load(a);
            if v != 0 && !(lo..hi).contains(&v) {
                f(a, v);
            }
        });
    }
}

/// The mode info's reason when the generational mode is off, the default: why it is not the
/// default yet (issue 15: "the default once it wins"; the figures are in BENCHMARKS.md).
pub(crate) const OFF_REASON: &str = "generational: off (the default until young cycles win \
at 1 GiB live on every suite workload; measured 2026-12-05 s13, loaded machine, with the first \
cycle promoting what it traced: GC CPU 0.46-0.53x and 0.42-0.46x the full-heap mode's on \
binary-trees and gcbench (goal 0.5), peak RSS 1.14-1.29x and 1.28-1.30x stop-the-world's (goal \
1.3x); but on churn, whose young cycles trace 0.85-0.96 of its live set, GC CPU 1.35x and peak \
RSS 2.5x; BENCHMARKS.md, issue 15)";

/// The full cycles that follow a young cycle whose measured cost exceeded
/// `HeapConfig::young_cost_max`, before young cycles are tried again.
pub(crate) const FALLBACK_FULL_CYCLES: u32 = 4;

/// Bytes of a run of dirty cards counted at a time by [`GenState::young_slots_over`]
/// (card aligned).
const PEEK_PIECE: usize = 64 * CARD_BYTES;

/// The old-generation size (and large-object bytes) at which the next full cycle runs, after
/// a full cycle that left `live` bytes in the moving space and `large` in large objects:
/// `max(x (1 + old_growth), min_trigger_bytes / 2)` each.
pub(crate) fn full_limit(config: &HeapConfig, live: usize, large: usize) -> (usize, usize) {
    let f = |b: usize| grown(b, config.old_growth).max(config.min_trigger_bytes / 2);
    (f(live), f(large))
}

/// The mark work of a full cycle (pure): `kept` bytes in use in the window and the large
/// space, and the old generation's live bytes, reckoned as its estimated live bytes `old`
/// ([`OldGen::live`], at most its size) but at most `whole_live`, the live bytes the last
/// cycle that traced everything found (0: none yet; the old generation's garbage is not
/// traced, and what it promoted since was live then).
pub(crate) fn full_mark_bytes(kept: usize, old: usize, whole_live: usize) -> usize {
    let old_live = if whole_live > 0 {
        old.min(whole_live)
    } else {
        old
    };
    kept.saturating_add(old_live)
}

/// The occupancy goal of the current window when a full cycle is due next (pure; see
/// [`GenState::full_due_goal`]): `used` bytes in use in the window, an old generation of
/// `old` bytes of which `old_live` are estimated live. The whole heap may grow to
/// `max(min_trigger, (used + old_live) x (1 + growth))`, as a heap that is not generational
/// may from its live bytes; the window gets what the old generation leaves of that, at
/// least `used`. Never above [`window_goal`] (`old_live <= old`).
pub(crate) fn full_due_goal(
    used: usize,
    old: usize,
    old_live: usize,
    growth: f64,
    min_trigger: usize,
) -> usize {
    let whole = grown(used.saturating_add(old_live.min(old)), growth).max(min_trigger);
    whole.saturating_sub(old).max(used)
}

/// `bytes x (1 + growth)`.
fn grown(bytes: usize, growth: f64) -> usize {
    (bytes as f64 * (1.0 + growth)) as usize
}

/// The occupancy goal of the current window (bytes in use there at which the next cycle
/// starts) when `used` bytes are in use in it and the old generation holds `old` bytes:
/// the old generation is as resident as the window, so the goal bounds both together as a
/// heap that is not generational bounds its whole space, `max(min_trigger, (old + used) x
/// (1 + growth))`, and the window gets what the old generation leaves of it (at least
/// `used x (1 + growth)`: never below what is in use). With no old generation this is the
/// plain occupancy goal.
pub(crate) fn window_goal(used: usize, old: usize, growth: f64, min_trigger: usize) -> usize {
    let grown = |b: usize| (b as f64 * (1.0 + growth)) as usize;
    let whole = grown(used.saturating_add(old)).max(min_trigger);
    whole.saturating_sub(old).max(grown(used))
}

/// What the cycle policy reads at a cycle's start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CycleFacts {
    /// Some object is pinned.
    pub pinned: bool,
    /// Some stranded object holds no pin any more ([`crate::pins`]): until it leaves it holds
    /// the window of a cycle into its half above it. A full cycle lets it leave, and so does
    /// a young cycle that begins now ([`GenCycle::stranded_leave`]).
    pub stranded_unpinned: bool,
    /// A stranded object lies in the old half above the old generation (pinned during a
    /// concurrent young cycle from the old half): a full cycle from the old half would take it
    /// into its source range, so young cycles run until it is gone (the first young cycle
    /// that begins with it unpinned lets it leave: [`GenCycle::stranded_leave`]).
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
    /// The survivors are promoted: a young cycle that compacts into the old half, or a full
    /// cycle that promotes what it traced (see [`GenState::begin`]).
    pub promote: bool,
    /// Promoting: the source address below which survivors are old enough to be
    /// promoted (`usize::MAX`: every survivor; see [`promotion_end`]).
    pub promote_below: usize,
    /// The destination window starts at or above this (the old generation's end when
    /// compacting into the old half; else 0).
    pub to_floor: usize,
    /// Remembered-set units scanned.
    pub dirty_units: usize,
    /// The allocation point at the cycle's start: every object at or above it was allocated
    /// during marking (black, live by construction).
    pub mark_top: usize,
    /// Young: the unpinned stranded objects ([`crate::pins`]) leave at this cycle's flip, as
    /// at a full cycle's, if its destination window has the room for them (otherwise they stay
    /// stranded: `stranded_stayed`). Set when the cycle began with one: it then scans the whole old
    /// generation ([`RememberedSet::report_all`]), so that its flip forwards every old slot
    /// that refers to one (see [`GenState::begin`]). Its count of old slots and its marking
    /// time (that scan) are not a young cycle's: neither feeds `young_slots_max`
    /// ([`GenState::young_slots_over`]) nor the young cycles' rates ([`crate::youngpace`]).
    pub stranded_leave: bool,
    /// A `stranded_leave` cycle whose destination window had no room for the unpinned
    /// stranded objects after the compacted ones: they stayed stranded (set at its flip; a
    /// later cycle with the room lets them leave).
    pub stranded_stayed: bool,
    /// `Breakage::SkipDirtyCard` (tests): the first range the remembered set reports to this
    /// cycle is still to be dropped.
    skip_one: bool,
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
    /// young cycle with `scan_now` the old slots its remembered set names (see [`CycleFacts`]).
    /// Without `scan_now` (a concurrent cycle) the first [`GenState::rescan`], on the GC
    /// thread once the SATB barrier is on, takes them instead: a slot overwritten after
    /// this pause had its old value logged by the barrier, and a card dirtied after the
    /// scan is taken by the precleaning or the remark's rescan.
    pub(crate) fn begin(
        &self,
        arena: &VolatileArena,
        moving: &MovingSpace,
        types: &TypeRegistry,
        facts: CycleFacts,
        scan_now: bool,
    ) -> Result<GenCycle, ArenaError> {
        let mut old = self.old();
        let cur = moving.current.load(Ordering::Relaxed);
        let bytes = old.bytes();
        // Full when the old generation (or the large objects, which only full cycles free)
        // grew past their limits, when an allocation found the space exhausted with an old
        // generation to reclaim, when an allocation about to fail after young cycles only
        // asked for one (`request_full`), and when objects are pinned in the old half (they
        // would be kept, stranded, above the old generation: young cycles from the old half
        // leave pins to full cycles); and when a stranded object is no longer pinned, or
        // anything is pinned with nothing old (see below).
        //
        // Pins and the windows of young cycles: a cycle that promotes starts its window above
        // every stranded object of its destination half ([`crate::pins`]), and only a full
        // cycle lets a stranded object leave. So with pins held across flips and nothing old
        // (a full cycle with pins does not promote), the young cycle that followed each full
        // one promoted into a window above the pins that full cycle had kept: the window
        // of that half climbed by about what was allocated between two cycles, at every pair
        // of cycles, up to the half's last pages, and then every young cycle failed for room
        // (`CollectError::NoRoomBesidePins`) and was chosen again, even once every pin was
        // dropped: its unpinned stranded objects stayed, and no full cycle was due. With
        // nothing old, a young cycle traces everything anyway: while anything is pinned the
        // cycle is full (it does not promote, and its window is its destination's largest
        // gap), and an unpinned stranded object makes the next cycle full.
        let requested = self.full_requested.swap(false, Ordering::SeqCst);
        let full_due = requested
            || old.full_pending
            || old.fallback > 0
            || bytes > old.limit
            || bytes > moving.half_bytes / 2
            || facts.large_used > old.large_limit
            || (facts.exhausted && bytes > 0)
            || (facts.pinned && (cur == old.half || bytes == 0))
            || facts.stranded_unpinned;
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
            // A stranded object lies above the old generation in the old half, current: a
            // full cycle's source would hold it, so this cycle is young. A request for a full
            // cycle stays for the next cycle (the next from this half after the object left
            // is full, or the one from the other half promotes everything and makes it so);
            // before, this cycle took it and no full cycle came for it.
            if requested {
                self.full_requested.store(true, Ordering::SeqCst);
            }
            CycleKind::Young
        };
        // A young cycle with nothing old traces every live object, as a full cycle does
        // (`HeapConfig::first_cycle_promotion`): the half it compacts into becomes the old half
        // (the old generation is empty, so nothing lies in either), and it promotes what it
        // traced.
        let first_cycle = kind == CycleKind::Young && bytes == 0 && self.first_cycle;
        if first_cycle {
            old.half = 1 - cur;
        }
        if kind == CycleKind::Full {
            old.fallback = old.fallback.saturating_sub(1);
        }
        // A full cycle traces every live object too: with `first_cycle_promotion` it promotes
        // what it traced into the half it compacts into, which becomes the old half at its
        // flip ([`GenState::at_flip`]), as the first cycle does. Before, its survivors stayed
        // young and the next cycle (into the old half, nothing old) traced and copied them all
        // again to promote them. Not while objects are pinned (they may keep the destination
        // window above its half's start; the next cycle that traces everything promotes).
        let full_promotes = kind == CycleKind::Full && self.first_cycle && !facts.pinned;
        let promote = (kind == CycleKind::Young && 1 - cur == old.half) || full_promotes;
        // Before a full cycle every survivor is promoted (the full cycle's source must be the
        // old generation and the window right above it, young survivors included anyway).
        let mark_top = moving.top.load(Ordering::Relaxed);
        let promote_below = if full_promotes {
            // What it traced (those allocated during its marking stay young).
            mark_top
        } else if old.full_pending {
            usize::MAX
        } else if first_cycle || old.first_survival(self.first_survival) {
            // Traced survivors have been measured long-lived, or nothing is old (this cycle
            // traces everything): every one of them is promoted (those allocated during this
            // cycle's marking, at or above `mark_top`, stay young).
            old.promotable_below().max(mark_top)
        } else {
            old.promotable_below()
        };
        let mut c = GenCycle {
            kind,
            from: moving.base(),
            old: (old.lo, old.hi),
            old_slots: Vec::new(),
            promote,
            promote_below,
            to_floor: if full_promotes {
                moving.half_base[1 - cur]
            } else if promote && bytes > 0 {
                old.hi
            } else {
                0
            },
            dirty_units: 0,
            mark_top,
            stranded_leave: false,
            stranded_stayed: false,
            skip_one: facts.skip_one,
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
        // A young cycle that begins with an unpinned stranded object lets it leave at its
        // flip (when its destination window has the room; see `stranded_stayed`). A young cycle forwards only the old slots its remembered set names, and an
        // old slot that refers to a stranded object need not be named (a flip keeps a slot
        // dirty only while it refers to a young survivor), so this one scans the whole old
        // generation: every old slot that refers to anything but an old object (or null)
        // is then among its old slots, and its flip forwards it. Before, young cycles kept
        // every stranded object until a full cycle, and none came while a stranded object
        // lay in the old half above the old generation (pinned during a concurrent young
        // cycle from that half: a full cycle's source `[lo, top)` would hold it): once
        // unpinned, such objects stayed for good, every cycle was young, and the objects
        // pinned during the young cycles from either half were stranded too and stayed:
        // the windows of both halves climbed above them until no cycle had room.
        if facts.stranded_unpinned {
            self.remset.report_all();
            c.stranded_leave = true;
        }
        if scan_now {
            Self::scan(&self.remset, &old, &mut c, arena, types)?;
        }
        Ok(c)
    }

    /// Take the ranges the remembered set reports now into cycle `c` (young): the reference
    /// slots there whose value (read atomically) may refer to a young object, anything but
    /// null or an old object, are added to `c.old_slots`, and their values returned. A slot
    /// left out held no young reference when it was read after its range was cleared in the
    /// remembered set: a store into it since then is reported by the next call (the
    /// remembered set's protocol), so the cycle's last call, in the remark pause, completes
    /// the list (the exactness invariant holds for the slots listed).
    fn scan(
        remset: &Arc<dyn RememberedSet>,
        old: &OldGen,
        c: &mut GenCycle,
        arena: &VolatileArena,
        types: &TypeRegistry,
    ) -> Result<Vec<usize>, ArenaError> {
        let skip = &mut c.skip_one;
        let slots = &mut c.old_slots;
        let mut vals = Vec::new();
        c.dirty_units += remset.for_each_dirty_range(arena, &mut |s, e| {
            if std::mem::take(skip) {
                return;
            }
            old.for_each_young_slot_in(s, e, types, |a, v| {
                slots.push(a);
                vals.push(v);
            });
        })?;
        Ok(vals)
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
        Self::scan(&self.remset, &old, c, arena, types)
    }

    /// The flip of cycle `c` (world stopped, references about to be forwarded or forwarded):
    /// a full cycle empties the old generation (the next full cycle runs past `full_limit`)
    /// and, when it promotes, makes its traced survivors `[to, new_hi)` the new one in the
    /// destination half; a promoting young cycle grows it over the survivors
    /// placed in `[to, new_hi)` (objects up to `min(objects_end, new_hi)`, zero words after),
    /// and the survivors in `[new_hi, young_end)` stay young. Every cycle ages the window's
    /// survivors (`fwd`: see [`OldGen::age`]; `top` is the allocation point after the flip).
    /// Returns the bytes promoted.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn at_flip(
        &self,
        c: &GenCycle,
        arena: &VolatileArena,
        moving: &MovingSpace,
        (to, objects_end, new_hi, young_end): (usize, usize, usize, usize),
        top: usize,
        fwd: &dyn Fn(usize) -> usize,
        full_limit: (usize, usize),
    ) -> Result<usize, ArenaError> {
        let mut old = self.old();
        if c.kind == CycleKind::Full {
            self.full_flips.fetch_add(1, Ordering::SeqCst);
        }
        let base = if c.promote { new_hi } else { to };
        old.last_cost = old.measure_young_cost(c, fwd, to, self.young_cost_max);
        old.note_traced(c, fwd, to, (base, top.max(base)));
        old.age(fwd, base, top.max(base));
        if c.kind == CycleKind::Full {
            old.clear(full_limit);
            moving.set_old_range(0, 0);
            self.remset.old_range_changed(arena, 0, 0)?;
            if c.promote {
                // It promotes what it traced (see `begin`) into the half it compacted into,
                // the old half from here (the halves are adjacent: `to` lies in the second
                // exactly when it is at or above its base).
                old.half = usize::from(to >= moving.half_base[1]);
            }
        }
        if !c.promote {
            return Ok(0);
        }
        let end = objects_end.min(new_hi);
        let first = old.lo == old.hi;
        old.promote(to, end, new_hi, young_end);
        if first {
            // The first promotion since the last full cycle (this one, if full) or ever: the
            // old generation grows by `old_growth` from here before a full cycle is due.
            old.limit = old.limit.max(grown(old.bytes(), self.old_growth));
        }
        moving.set_old_range(old.lo, old.hi);
        self.remset.old_range_changed(arena, old.lo, old.hi)?;
        Ok(end - to)
    }

    /// The cycle `c` is complete (its compaction done; world stopped or the GC thread
    /// alone): the crossing map covers the promoted objects, the remembered set is told.
    pub(crate) fn finish(
        &self,
        c: &GenCycle,
        arena: &VolatileArena,
        types: &TypeRegistry,
    ) -> Result<(), ArenaError> {
        self.old().build_pending(types, &*self.remset);
        if c.young() {
            self.remset.after_young_cycle(arena)?;
        }
        Ok(())
    }

    /// In a forked child, with the world stopped, after the child ended a cycle that had
    /// flipped (its compaction finished on plain memory, see [`crate::fork`]): what that
    /// cycle's finish would have done on the parent's GC thread, which the child lacks, if it
    /// had not done it before the fork: build the crossing map over the objects it promoted
    /// and keep dirty their references to the survivors kept young ([`OldGen::build_pending`];
    /// the remembered sets' `after_young_cycle` does nothing). Without it the child's next
    /// young cycle found no crossing map over them (an empty one after a full or first cycle)
    /// and did not know those references.
    pub(crate) fn finish_in_child(&self, types: &TypeRegistry) {
        self.old().build_pending(types, &*self.remset);
    }

    /// Whether the next cycle is expected to be young (the policy of [`GenState::begin`] on
    /// the figures known between cycles: no full cycle due; an exhausted allocation or a pin
    /// may still make it full). `large_used`: bytes held by large objects now.
    pub(crate) fn next_is_young(&self, half_bytes: usize, large_used: usize) -> bool {
        let old = self.old();
        let bytes = old.bytes();
        !(old.full_pending
            || old.fallback > 0
            || bytes > old.limit
            || bytes > half_bytes / 2
            || large_used > old.large_limit)
    }

    /// The bytes the next cycle is expected to mark (the pacer's mark work), `kept` bytes
    /// being in use in the window and the large space now: `kept` when it is expected to be
    /// young ([`GenState::next_is_young`]); a full cycle also traces the old generation, whose
    /// live bytes are reckoned as its size, at most the live bytes the last cycle that traced
    /// everything found ([`full_mark_bytes`]). (Paced for `kept` alone, a full cycle after
    /// young ones that promoted GBs started with the space nearly full: churn at 1 GiB,
    /// BENCHMARKS.md s15 `genpace`.)
    pub(crate) fn next_mark_bytes(
        &self,
        kept: usize,
        half_bytes: usize,
        large_used: usize,
    ) -> usize {
        if self.next_is_young(half_bytes, large_used) {
            return kept;
        }
        let old = self.old();
        full_mark_bytes(kept, old.live, old.whole_live)
    }

    /// The occupancy goal of the current window (as [`window_goal`]) when the next cycle is
    /// not expected to be young ([`GenState::next_is_young`]; `None` otherwise), `used` bytes
    /// being in use there: the old generation counted at its estimated live bytes
    /// ([`OldGen::live`]), not its size, in the whole heap's goal, and the window gets what
    /// the old generation's size leaves of it, at least `used` (a cycle due at once).
    /// ([`full_due_goal`]: a full cycle, or the young cycle that must promote everything
    /// before one, then starts when the heap's estimated live bytes have grown by `growth`,
    /// not once the window has grown by the old generation's garbage too.)
    pub(crate) fn full_due_goal(
        &self,
        used: usize,
        half_bytes: usize,
        large_used: usize,
        (growth, min_trigger): (f64, usize),
    ) -> Option<usize> {
        if self.next_is_young(half_bytes, large_used) {
            return None;
        }
        let old = self.old();
        Some(full_due_goal(
            used,
            old.bytes(),
            old.live,
            growth,
            min_trigger,
        ))
    }

    /// Concurrent mode, a cycle ending (the GC thread, its compaction done) with a young cycle
    /// expected next: whether that young cycle's pauses would be long. A young cycle forwards
    /// every old slot with a young reference in its flip pause (and rescans the cards written
    /// since its precleaning in its remark pause), so over `max` such slots
    /// (`HeapConfig::young_slots_max`) the next [`FALLBACK_FULL_CYCLES`] cycles are full.
    /// Counted: `last`, the old slots the young cycle just ended forwarded (if it was one, and
    /// did not scan the whole old generation: [`GenCycle::stranded_leave`]), when over `max`; else those the remembered set's dirty ranges hold now, read without
    /// clearing them (the card table; the count stops past `max`). Returns the count when it
    /// was over `max`.
    pub(crate) fn young_slots_over(
        &self,
        last: Option<usize>,
        max: usize,
        types: &TypeRegistry,
    ) -> Option<usize> {
        self.slots_over(&mut self.old(), last, max, types)
    }

    /// [`GenState::young_slots_over`] with the old generation locked.
    fn slots_over(
        &self,
        old: &mut OldGen,
        last: Option<usize>,
        max: usize,
        types: &TypeRegistry,
    ) -> Option<usize> {
        if max == usize::MAX || old.fallback > 0 || old.full_pending {
            return None;
        }
        let n = match last {
            Some(n) if n > max => n,
            // Nothing old (the next young cycle scans no remembered set), or the crossing map
            // of the last promotion not built yet (it is by the end of a cycle).
            _ if old.lo == old.hi || old.pending.is_some() => return None,
            _ => {
                let mut n = 0usize;
                let o = &*old;
                self.remset.peek_dirty_ranges(&mut |s, e| {
                    // A run of dirty cards may span a whole table: counted a piece at a time,
                    // up to the bound.
                    let mut a = s;
                    while a < e && n <= max {
                        let b = e.min(a + PEEK_PIECE);
                        o.for_each_young_slot_in(a, b, types, |_, _| n += 1);
                        a = b;
                    }
                });
                n
            }
        };
        if n <= max {
            return None;
        }
        old.fallback = FALLBACK_FULL_CYCLES;
        old.fallback_old_slots = true;
        Some(n)
    }

    /// Concurrent mode, a cycle about to start (its initial-mark pause not yet begun: the
    /// world runs) in the old half with a young cycle expected: whether it would forward too
    /// many old slots ([`GenState::young_slots_over`], counted in the remembered set's dirty
    /// ranges now); then the next [`FALLBACK_FULL_CYCLES`] cycles are full, this one first.
    /// The count at the previous cycle's end saw only the references written before it: a
    /// live set replaced since (the request's cache, every entry living about one cycle) made
    /// this cycle young, tracing about the whole live set and forwarding every replaced slot,
    /// and, as it compacts into the other half, the full cycles it found due waited for one
    /// more young cycle that promotes everything (at 1 GiB: a young cycle of ~1 s, then one
    /// copying 1 GiB into the old half beside the dead one, then the full cycle). From the
    /// other half it does nothing (a young cycle from there promotes, and a full one could
    /// not run).
    ///
    /// `idle` (called with the old generation locked) gives the current half when no cycle
    /// runs, else `None` (nothing counted): a cycle changes the old generation's memory only
    /// after [`GenState::begin`], which waits for this lock, and a cycle past it is busy, so
    /// the objects walked stay in place while counted. The mutators' stores race with the
    /// count, as with the count at a cycle's end: slots read atomically, the remembered set
    /// peeked without clearing it, and a reference written meanwhile only makes the bound a
    /// little looser (it is a heuristic). `stopped`: whether the world is stopped now
    /// (counted in [`GenState::start_counts`]; the count was in the initial-mark pause
    /// before, 0.6 ms on a 1 GiB old generation with no dirty card). Returns the count when
    /// over `max`.
    pub(crate) fn young_slots_at_start(
        &self,
        idle: &dyn Fn() -> Option<usize>,
        stopped: bool,
        max: usize,
        types: &TypeRegistry,
    ) -> Option<usize> {
        let mut old = self.old();
        if idle()? != old.half {
            return None;
        }
        self.start_counts[usize::from(stopped)].fetch_add(1, Ordering::Relaxed);
        self.slots_over(&mut old, None, max, types)
    }

    /// The counts of [`GenState::young_slots_at_start`] so far: made with the world running,
    /// and stopped (none: they are made before the initial-mark pause).
    pub(crate) fn start_counts(&self) -> (u64, u64) {
        let [running, stopped] = &self.start_counts;
        (
            running.load(Ordering::Relaxed),
            stopped.load(Ordering::Relaxed),
        )
    }

    /// Old-generation bytes now.
    pub(crate) fn old_bytes(&self) -> usize {
        self.old().bytes()
    }

    /// The old-generation and large-object bytes past which the next full cycle runs.
    pub(crate) fn next_full_at(&self) -> (usize, usize) {
        let old = self.old();
        (old.limit, old.large_limit)
    }

    /// How many full cycles have flipped: an allocation that saw this count unchanged since
    /// it began has had no collection that frees old or large objects (a young cycle keeps
    /// both: the old generation is live by definition, every large object is a root).
    pub(crate) fn full_flips(&self) -> u64 {
        self.full_flips.load(Ordering::SeqCst)
    }

    /// An allocation is about to fail after young cycles only (its own occupancy cycle, its
    /// own exhausted one with nothing old, cycles other threads started, which satisfy its
    /// exhausted trigger): the next cycle to start, whoever starts it, is due full (one that
    /// starts in the half without the old generation promotes everything, and the next is
    /// full; one that must stay young because a stranded object lies above the old
    /// generation leaves the request to the next; see [`GenState::begin`]).
    pub(crate) fn request_full(&self) {
        self.full_requested.store(true, Ordering::SeqCst);
    }

    /// The last flip's young cost measurement (thousandths, if measured), the full cycles
    /// still owed, and whether they are owed for too many old-to-young slots (else for the
    /// young cost).
    pub(crate) fn young_cost(&self) -> (Option<u32>, u32, bool) {
        let old = self.old();
        (old.last_cost, old.fallback, old.fallback_old_slots)
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
    // Nothing has survived a cycle yet.
    let aged = vec![0; config.promotion_age.saturating_sub(1) as usize];
    match config.generational {
        Generational::Off => (None, None),
        Generational::Cards => {
            let cards = Arc::new(CardTable::new(base, 2 * half));
            let state = GenState {
                remset: cards.clone(),
                old: Mutex::new(OldGen {
                    limit,
                    large_limit: limit,
                    aged: aged.clone(),
                    ..OldGen::default()
                }),
                old_growth: config.old_growth,
                first_survival: config.first_survival_promotion,
                first_cycle: config.first_cycle_promotion,
                young_cost_max: config.young_cost_max,
                young_pace: Default::default(),
                full_requested: AtomicBool::new(false),
                full_flips: AtomicU64::new(0),
                start_counts: Default::default(),
            };
            (Some(cards), Some(state))
        }
        // Barrier-free: no card table for the store path.
        Generational::WrittenPages => {
            let state = GenState {
                remset: Arc::new(crate::remset_wp::WrittenPages::new(base, 2 * half)),
                old: Mutex::new(OldGen {
                    limit,
                    large_limit: limit,
                    aged,
                    ..OldGen::default()
                }),
                old_growth: config.old_growth,
                first_survival: config.first_survival_promotion,
                first_cycle: config.first_cycle_promotion,
                young_cost_max: config.young_cost_max,
                young_pace: Default::default(),
                full_requested: AtomicBool::new(false),
                full_flips: AtomicU64::new(0),
                start_counts: Default::default(),
            };
            (None, Some(state))
        }
    }
}

/// Where a promoting young cycle with plan `plan` ends the old generation: the survivors below
/// the source address `below` are old enough; the old generation must end on a page boundary
/// at an object start, so it ends at the last such boundary at or below their end (the few
/// old-enough objects above it stay young one more cycle). `young_end` (the page-rounded end
/// of all survivors) when every survivor is old enough; `plan.to` when none can be promoted.
/// Reads only the plan (the destination need not be filled yet).
pub(crate) fn promotion_end(
    plan: &Plan,
    below: usize,
    objects_end: usize,
    young_end: usize,
) -> usize {
    if below >= plan.from_top {
        return young_end;
    }
    if below <= plan.from {
        return plan.to;
    }
    let dest = |w: usize| plan.to + WORD * plan.live().rank(w);
    let p = dest((below - plan.from) / WORD);
    if p >= objects_end {
        return young_end;
    }
    let mut h = plan.to + (p - plan.to) / PAGE_SIZE * PAGE_SIZE;
    while h > plan.to {
        // The object landing on the page's first word starts there, or straddles into it.
        if dest(plan.first_obj(DestPage((h - plan.to) / PAGE_SIZE))) == h {
            return h;
        }
        h -= PAGE_SIZE;
    }
    plan.to
}

impl crate::Heap {
    /// Generational mode: the old generation's address range `[start, end)` now (empty after
    /// a full cycle); `None` when the heap is not generational. An object whose address lies
    /// in it has been promoted.
    pub fn old_generation_range(&self) -> Option<(usize, usize)> {
        self.inner.gen.as_ref()?;
        Some(self.inner.moving.old_range())
    }
}

#[cfg(test)]
mod tests {
    use super::{window_goal, CycleKind, GenCycle, OldGen};

    /// A full cycle requested (`GenState::request_full`, as an allocation about to fail does)
    /// when a stranded object lies above the old generation, the old half current: that
    /// cycle is young (a full cycle's source would hold the stranded object), and the request
    /// must outlive it: a full cycle follows once the object has left. Before, the young
    /// cycle took the request and no full cycle came.
    #[test]
    fn a_full_request_outlives_a_young_cycle_beside_a_stranded_object() {
        use crate::{GcMode, Generational, Heap, HeapConfig, MarkPoint};
        use faultline_heap::object::TypeInfo;
        use std::sync::{Arc, Mutex};
        let probe = faultline_heap::Probe::run();
        if !probe.supports(faultline_heap::Capability::Sigbus) {
            eprintln!("SKIPPED: no userfaultfd");
            return;
        }
        // (armed at BeforeRemark, parked there)
        let park = Arc::new(Mutex::new((false, false)));
        let hook_park = park.clone();
        let cfg = HeapConfig::with_heap_size(1 << 20).with(|c| {
            c.mode = GcMode::Concurrent;
            c.generational = Generational::Cards;
            c.min_trigger_bytes = 1 << 20;
            c.debug.mark_hook = Some(Arc::new(move |p| {
                if p != MarkPoint::BeforeRemark {
                    return;
                }
                let mut s = hook_park.lock().unwrap();
                s.1 = s.0;
                while s.0 {
                    drop(s);
                    std::thread::sleep(std::time::Duration::from_micros(100));
                    s = hook_park.lock().unwrap();
                }
                s.1 = false;
            }));
        });
        let heap = Heap::new(cfg).unwrap();
        let vec = heap.register_type(TypeInfo::ref_array("vector")).unwrap();
        let bytes = heap.register_type(TypeInfo::byte_array("bytes")).unwrap();
        let mut m = heap.attach();
        let holder = m.alloc(vec, 8).unwrap();
        let holder = m.root(holder);
        m.collect().unwrap();
        heap.wait_for_compaction();
        let (lo, hi) = heap.old_generation_range().unwrap();
        assert!(hi > lo && (lo..hi).contains(&holder.value(&m).bits()));
        let b = m.alloc(bytes, 1000).unwrap();
        holder.get(&m).unwrap().set(0, b);
        let held = |m: &crate::Mutator| holder.get(m).unwrap().get(0);
        // Pinned while a young cycle from the old half marks: kept above the old generation.
        park.lock().unwrap().0 = true;
        m.start_collection().unwrap();
        while !park.lock().unwrap().1 {
            m.safepoint();
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        let pin = m.pin(held(&m)).unwrap();
        park.lock().unwrap().0 = false;
        m.wait_for_cycle().unwrap();
        heap.wait_for_compaction();
        // The next cycle (from the other half) keeps it: the old half is current.
        m.collect().unwrap();
        heap.wait_for_compaction();
        assert_eq!(heap.pin_stats().stranded_objects, 1);
        let flips = heap.flips();
        assert!(heap.history().iter().all(|c| c.gen.young == Some(true)));
        // A full cycle is requested; the cycle that takes the request is young (it lets the
        // unpinned object leave), and a full one follows within two more.
        heap.inner.gen.as_ref().unwrap().request_full();
        drop(pin);
        for _ in 0..3 {
            m.collect().unwrap();
            heap.wait_for_compaction();
        }
        let kinds: Vec<_> = heap.history()[flips as usize..]
            .iter()
            .map(|c| c.gen.young)
            .collect();
        assert_eq!(kinds[0], Some(true), "{kinds:?}");
        assert_eq!(heap.pin_stats().stranded_objects, 0);
        assert!(kinds.contains(&Some(false)), "a full cycle ran: {kinds:?}");
        assert_eq!(m.local(held(&m)).unwrap().to_bytes().len(), 1000);
        heap.verify().unwrap();
    }

    const MIB: usize = 1 << 20;

    #[test]
    fn a_full_cycle_is_paced_for_the_old_generation_too() {
        use super::full_mark_bytes;
        // Nothing traced everything yet: the whole old generation.
        assert_eq!(full_mark_bytes(10 * MIB, 100 * MIB, 0), 110 * MIB);
        // An old generation grown past the live set by promoted garbage: the live set.
        assert_eq!(
            full_mark_bytes(10 * MIB, 3000 * MIB, 1000 * MIB),
            1010 * MIB
        );
        // An old generation smaller than it: its size.
        assert_eq!(full_mark_bytes(10 * MIB, 500 * MIB, 1000 * MIB), 510 * MIB);
        assert_eq!(full_mark_bytes(10 * MIB, 0, 1000 * MIB), 10 * MIB);
    }

    #[test]
    fn with_a_full_cycle_due_the_old_generation_counts_at_its_live_bytes() {
        use super::full_due_goal;
        // The request at 1 GiB: 1 GiB old, all of it dead, 1 GiB of young survivors: the
        // heap may grow to 2 x 1 GiB, so a cycle is due at once (the window keeps what is in
        // use), where the goal counting the old generation as live gives the window 3 GiB.
        assert_eq!(
            full_due_goal(1024 * MIB, 1024 * MIB, 0, 1.0, 4 * MIB),
            1024 * MIB
        );
        assert_eq!(
            window_goal(1024 * MIB, 1024 * MIB, 1.0, 4 * MIB),
            3072 * MIB
        );
        // Half of it live: the whole heap may grow to 2 x 1.5 GiB.
        assert_eq!(
            full_due_goal(1024 * MIB, 1024 * MIB, 512 * MIB, 1.0, 4 * MIB),
            2048 * MIB
        );
        // All of it live: the window goal.
        assert_eq!(
            full_due_goal(32 * MIB, 1024 * MIB, 1024 * MIB, 1.0, 2048 * MIB),
            window_goal(32 * MIB, 1024 * MIB, 1.0, 2048 * MIB)
        );
        // Never above the window goal, never below what is in use.
        for (used, old, live) in [
            (0, 100 * MIB, 0),
            (5 * MIB, 100 * MIB, 200 * MIB),
            (MIB, 3 * MIB, MIB),
        ] {
            let g = full_due_goal(used, old, live, 1.0, 4 * MIB);
            assert!(
                g <= window_goal(used, old, 1.0, 4 * MIB),
                "{used} {old} {live}: {g}"
            );
            assert!(g >= used, "{used} {old} {live}: {g}");
        }
    }

    #[test]
    fn young_cycles_bound_the_old_generations_live_bytes() {
        // 100 MiB promoted by a cycle that traced 100 MiB.
        let mut old = OldGen {
            whole_live: 100 * MIB,
            ..OldGen::default()
        };
        old.promote(MIB, 101 * MIB, 101 * MIB, 101 * MIB);
        assert_eq!(old.live, 100 * MIB);
        // A young cycle that traced 90 MiB of young survivors: at most 10 MiB old ones live.
        let c = GenCycle {
            kind: CycleKind::Young,
            from: 200 * MIB,
            old: (old.lo, old.hi),
            old_slots: Vec::new(),
            promote: false,
            promote_below: 0,
            to_floor: 0,
            dirty_units: 0,
            mark_top: 290 * MIB,
            stranded_leave: false,
            stranded_stayed: false,
            skip_one: false,
        };
        let fwd = |a: usize| a - 200 * MIB + 300 * MIB;
        old.measure_young_cost(&c, &fwd, 300 * MIB, f64::MAX);
        assert_eq!(old.live, 10 * MIB);
        // One that traced little does not raise it again; a promotion adds what it promoted.
        let c = GenCycle {
            mark_top: 201 * MIB,
            ..c
        };
        old.measure_young_cost(&c, &fwd, 300 * MIB, f64::MAX);
        assert_eq!(old.live, 10 * MIB);
        old.pending = None;
        old.promote(101 * MIB, 105 * MIB, 105 * MIB, 105 * MIB);
        assert_eq!(old.live, 14 * MIB);
        // A full cycle empties it.
        old.clear((0, 0));
        assert_eq!(old.live, 0);
    }

    #[test]
    fn without_an_old_generation_the_window_goal_is_the_occupancy_goal() {
        assert_eq!(window_goal(10 * MIB, 0, 1.0, 4 * MIB), 20 * MIB);
        assert_eq!(window_goal(MIB, 0, 1.0, 4 * MIB), 4 * MIB);
        assert_eq!(window_goal(0, 0, 0.5, 4 * MIB), 4 * MIB);
    }

    #[test]
    fn the_old_generation_counts_toward_the_goal() {
        // 1 GiB old, 32 MiB of young survivors, min trigger 2 GiB: the whole heap may grow
        // to 2 x 1056 MiB, of which the window gets 1088 MiB (not 2 GiB on top of the old).
        assert_eq!(
            window_goal(32 * MIB, 1024 * MIB, 1.0, 2048 * MIB),
            1088 * MIB
        );
        // Small heaps: the min trigger bounds old + young.
        assert_eq!(window_goal(MIB, 2 * MIB, 1.0, 8 * MIB), 6 * MIB);
    }

    #[test]
    fn the_window_goal_never_falls_below_the_grown_window() {
        // An old generation far above the min trigger: the window still gets its growth.
        for (used, old) in [(0, 100 * MIB), (5 * MIB, 100 * MIB), (MIB, 3 * MIB)] {
            let g = window_goal(used, old, 1.0, 4 * MIB);
            assert!(g >= 2 * used, "{used} {old}: {g}");
            assert!(g + old >= 4 * MIB, "{used} {old}: {g}");
        }
    }
}
