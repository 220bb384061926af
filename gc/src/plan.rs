//! The compaction plan (Compressor style): where every live object of the old half goes, and
//! how a destination page is built from it.
//!
//! ```text
//!  old half  [from ......................... from_top)      live-words bitmap: 1 bit / word
//!  new half  [to ... to + live_words * 8)                    new address of old word w:
//!                                                            to + 8 * rank(w)
//! ```
//!
//! - `rank(w)` (live words before `w`) is O(1) from the two-level prefix sums of the
//!   live-words bitmap (per 512 KiB chunk, and per 64 words within a chunk): no forwarding
//!   pointers in headers, no per-object table.
//! - The source object that lands on the first word of destination page `k` is found on
//!   demand ([`Plan::first_obj`]: a `select` of rank `k * PAGE_WORDS`, then the mark bitmap's
//!   previous set bit): planning builds no per-page table.
//! - Filling pages ([`Plan::fill_pages`], one page or a run of them) works in two passes: the
//!   runs of live words are copied with one `memcpy` each, found in the live-words bitmap;
//!   then the objects, now back to back in the output, are walked there and their references
//!   forwarded. Destination words are ranks, so an object straddling a page edge is split at
//!   the same word whichever pages a call covers, and filling one page never touches another
//!   destination page.
//! - [`Plan::pieces`] walks the objects that land on one destination page, each clipped to the
//!   page ([`Piece`]): updating a dense page in place ([`Plan::update_in_place`]) uses it, and
//!   the tests use it as the reference fill.
//! - [`Plan::slide`] is the stop-the-world compaction in place (`to == from`): the same two
//!   passes, a chunk at a time, over the half itself; [`slide`] runs it on several threads
//!   (`Plan::slide_on`), in pieces that start on objects.
//! - Pinned objects ([`crate::pins`]): a *kept* object (pinned, in the old half) is forwarded
//!   to itself; it stays in the rank, so a dead copy of it lands in the new half, which
//!   nothing references. A *moved* object (a stranded one whose pins are gone, outside the
//!   old half) is forwarded to where the flip copied it. Both tables are sorted slices
//!   searched only when non-empty: with no pins, forwarding is the formula alone.
//!
//! Invariants:
//! - a `Plan` is immutable once built; the side tables it holds ([`SideTables`]) are not
//!   modified while a plan built from them is in use (the next cycle's marking starts only
//!   after the compaction using it has finished);
//! - everything here reads only the old half (at `src`) and writes only the output it is given
//!   (or, for `update_in_place`, the one old page it is given; for `slide`, with the world
//!   stopped, the half itself, each word written only once every word it could overwrite was
//!   read): async-signal-safe, no allocation, no lock. The exception is the slide on several
//!   threads ([`slide`]): it allocates its table of pieces and starts scoped helper threads,
//!   on the pausing thread of a stop-the-world cycle only (never in a fault path).

use std::sync::Arc;

use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::object::{Header, RefSlots, TypeRegistry, WORD};
use faultline_heap::{ArenaOffset, PAGE_SIZE};

use crate::trace::header;

mod pack;
mod slide;

/// Words per page.
pub(crate) const PAGE_WORDS: usize = PAGE_SIZE / WORD;

/// Destination words of one piece of the parallel slide ([`slide`]: 256 KiB, the unit the
/// threads claim).
pub(crate) const SLIDE_CHUNK_WORDS: usize = 64 * PAGE_WORDS;

/// Destination words an in-place slide produces before forwarding their references (32 KiB,
/// so that the reference pass reads them back from the L1 cache). The step's copy reads the
/// old half in between, ten times the step's size at 10 % live: with steps of 256 KiB (the
/// piece) the reference pass waited on its header loads (a fifth of its samples on them);
/// 16, 32, 64 and 128 KiB were measured, 32 KiB kept (compaction CPU at 10 % live about 10 %
/// lower than with 256 KiB; 50-90 % unchanged within the noise).
const SLIDE_STEP_WORDS: usize = 8 * PAGE_WORDS;

/// The collector's side tables over one half: the mark bitmap (object starts) and the
/// live-words bitmap with its prefix sums. All updates are atomic bit operations (`&self`).
pub(crate) struct SideTables {
    /// One bit per word, set at the header of every marked object.
    pub mark: Bitmap,
    /// One bit per word of every marked object, with the rank tables.
    pub live: LiveWords,
}

impl SideTables {
    /// Tables for a half of `half_words` words.
    pub(crate) fn new(half_words: usize) -> Self {
        SideTables {
            mark: Bitmap::new(half_words),
            live: LiveWords::new(half_words),
        }
    }
}

/// A page of the new half, counted from its base. Destination page `k` receives the live words
/// of compacted rank `[k * PAGE_WORDS, (k + 1) * PAGE_WORDS)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DestPage(pub usize);

impl DestPage {
    /// The page `i` pages after this one.
    #[inline]
    pub(crate) fn plus(self, i: usize) -> DestPage {
        DestPage(self.0 + i)
    }
    /// Compacted rank of its first word.
    #[inline]
    pub(crate) fn first_rank(self) -> usize {
        self.0 * PAGE_WORDS
    }
}

/// A page of the old half, counted from its base (a source page, or the move strategy's
/// staging page).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct OldPage(pub u32);

impl OldPage {
    /// The old page holding old-half word `w`.
    #[inline]
    pub(crate) fn of_word(w: usize) -> OldPage {
        OldPage((w / PAGE_WORDS) as u32)
    }
    /// Its index.
    #[inline]
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// One object's part of a destination page: the source object at old word `w` (header `h`,
/// `size` words) lands at new word `new_w`; words `[lo, hi)` (new-word indices, clipped to the
/// page) of it are on this page.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    /// Old word index of the object's header.
    #[cfg_attr(not(test), allow(dead_code))] // read by the tests' reference fill
    pub w: usize,
    /// New word index of the object's header.
    pub new_w: usize,
    /// The object's header.
    pub h: Header,
    /// First new word of the object on this page.
    pub lo: usize,
    /// End (exclusive) of the object's new words on this page.
    pub hi: usize,
}

/// The compaction plan of one cycle: where every live object of the old half goes.
pub(crate) struct Plan {
    /// Old half base (addresses are computed from it).
    pub from: usize,
    /// Where the old half's objects are read: `from`, or (per-cycle choreography) the mapping
    /// its pages were moved to.
    pub src: usize,
    /// Old half top (exclusive).
    pub from_top: usize,
    /// New half base.
    pub to: usize,
    /// Arena offset of the new half's base.
    pub to_offset: ArenaOffset,
    /// Live words in total (the compacted size in words).
    pub live_words: usize,
    /// Destination pages (`live_words` rounded up to pages).
    pub pages: usize,
    /// Bitmap words covering the old half's used part.
    pub bitmap_words: usize,
    /// The side tables the plan reads.
    pub tables: Arc<SideTables>,
    /// Object layouts.
    pub types: Arc<TypeRegistry>,
    /// Pinned objects of the old half that stay where they are ([`crate::pins`]):
    /// `(address, bytes)`, sorted. Forwarded to themselves; their pages are never released,
    /// staged or moved during the compaction.
    pub kept: Box<[(usize, usize)]>,
    /// Unpinned stranded objects copied to the new half by the flip: `(old, new)` addresses,
    /// sorted by old address (all outside `[from, from_top)`).
    pub moved: Box<[(usize, usize)]>,
}

impl Plan {
    /// The live-words bitmap and its rank tables.
    #[inline]
    pub(crate) fn live(&self) -> &LiveWords {
        &self.tables.live
    }

    /// The mark bitmap.
    #[inline]
    pub(crate) fn mark(&self) -> &Bitmap {
        &self.tables.mark
    }

    /// The destination page holding address `a`, if `a` lies in this plan's destination range.
    #[inline]
    pub(crate) fn dest_page_at(&self, a: usize) -> Option<DestPage> {
        (a >= self.to && a < self.to + self.pages * PAGE_SIZE)
            .then(|| DestPage((a - self.to) / PAGE_SIZE))
    }

    /// Address of destination page `k`.
    #[inline]
    pub(crate) fn dest_addr(&self, k: DestPage) -> usize {
        self.to + k.0 * PAGE_SIZE
    }

    /// Arena offset of destination page `k` (what the arena's resolve calls take).
    #[inline]
    pub(crate) fn dest_offset(&self, k: DestPage) -> ArenaOffset {
        self.to_offset.plus(k.0 * PAGE_SIZE)
    }

    /// Where old page `j` is read (and, for a staging page, written).
    #[inline]
    pub(crate) fn old_page_addr(&self, j: OldPage) -> usize {
        self.src + j.index() * PAGE_SIZE
    }

    /// New address of the object (or word) at old address `v`; other values unchanged, and
    /// so are kept (pinned) objects; moved stranded objects get their new address.
    #[inline]
    pub(crate) fn forward(&self, v: usize) -> usize {
        if v.is_multiple_of(WORD) && v >= self.from && v < self.from_top {
            if !self.kept.is_empty() && self.kept.binary_search_by_key(&v, |k| k.0).is_ok() {
                return v;
            }
            self.to + WORD * self.live().rank((v - self.from) / WORD)
        } else if !self.moved.is_empty() {
            match self.moved.binary_search_by_key(&v, |m| m.0) {
                Ok(i) => self.moved[i].1,
                Err(_) => v,
            }
        } else {
            v
        }
    }

    /// Whether any object is kept or moved specially (forwarding consults the tables).
    #[inline]
    pub(crate) fn has_exceptions(&self) -> bool {
        !self.kept.is_empty() || !self.moved.is_empty()
    }

    /// The old pages holding kept objects, as `[first, last]` old page indices.
    pub(crate) fn kept_pages(&self) -> impl Iterator<Item = (OldPage, OldPage)> + '_ {
        self.kept.iter().map(|&(a, b)| {
            (
                OldPage::of_word((a - self.from) / WORD),
                OldPage::of_word((a + b - 1 - self.from) / WORD),
            )
        })
    }

    /// Word index (in the old half) of the object that lands on the first word of destination
    /// page `page`: the live word of rank `page * PAGE_WORDS` (a `select`, O(log n)) belongs
    /// to the last marked object at or before it.
    #[inline]
    pub(crate) fn first_obj(&self, page: DestPage) -> usize {
        let w = self
            .live()
            .select(page.first_rank(), self.bitmap_words)
            .expect("a live word for every destination word");
        self.mark()
            .prev_set(w)
            .expect("every live word belongs to a marked object")
    }

    /// The objects that land on destination page `page`, each clipped to the page, in order.
    pub(crate) fn pieces(&self, page: DestPage) -> Pieces<'_> {
        let dest_lo = page.first_rank();
        Pieces {
            plan: self,
            dest_lo,
            dest_hi: page.plus(1).first_rank().min(self.live_words),
            limit: (self.from_top - self.from) / WORD,
            next: (dest_lo < self.live_words).then(|| self.first_obj(page)),
        }
    }

    /// Fill destination page `page` into `out` (one page): copy the parts of the source
    /// objects that land on it and rewrite the references in them. Reads only the old half.
    #[inline]
    pub(crate) fn fill_page(&self, page: DestPage, out: &mut [u8]) {
        debug_assert_eq!(out.len(), PAGE_SIZE);
        self.fill_pages(page, out);
    }

    /// Fill the `out.len() / PAGE_SIZE` destination pages from `first` on into `out`, in two
    /// passes over the output:
    ///
    /// 1. **copy**: the live words of compacted ranks `[r0, r_end)` are runs of set bits in
    ///    the live-words bitmap; each run is copied with one `memcpy` (one `select` finds the
    ///    first source word, then `next_clear` / `next_set` walk the bitmap), and the words
    ///    past the compacted end are zeroed;
    /// 2. **update**: the objects now lie back to back in `out`, so they are walked there
    ///    (header, size, next header) with no mark-bitmap search and no per-object `rank`; the
    ///    first one may start before `r0` (its header is read in the old half, found with the
    ///    mark bitmap as [`Plan::first_obj`] does). Every reference slot in `out` is forwarded.
    ///
    /// The result is the same, word for word, as filling each page from its [`Plan::pieces`].
    /// Reads only the old half (and `out`); writes only `out`.
    pub(crate) fn fill_pages(&self, first: DestPage, out: &mut [u8]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has the `popcnt` instruction.
            unsafe { self.fill_pages_popcnt(first, out) };
            return;
        }
        self.fill_pages_impl(first, out);
    }

    /// [`Plan::fill_pages`] compiled with the `popcnt` instruction (every `rank` of the
    /// reference pass counts bits; the baseline x86-64 target has no such instruction and
    /// counts them with a dozen shifts and masks).
    ///
    /// # Safety
    /// The CPU must have `popcnt`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn fill_pages_popcnt(&self, first: DestPage, out: &mut [u8]) {
        self.fill_pages_impl(first, out);
    }

    #[inline(always)]
    fn fill_pages_impl(&self, first: DestPage, out: &mut [u8]) {
        debug_assert_eq!(out.len() % PAGE_SIZE, 0);
        debug_assert_eq!(out.as_ptr() as usize % WORD, 0);
        let n = out.len() / PAGE_SIZE;
        let r0 = first.first_rank();
        let r_end = first.plus(n).first_rank().min(self.live_words);
        if r0 >= r_end {
            out.fill(0);
            return;
        }
        let total = r_end - r0;
        let out_words = out.as_mut_ptr() as *mut usize;

        // 1. Copy the runs of live words.
        let w_first = self
            .live()
            .select(r0, self.bitmap_words)
            .expect("a live word for every destination word");
        let mut w = w_first;
        // SAFETY: `out` holds n * PAGE_WORDS >= total words and never overlaps the words read
        // (it is a buffer, or a page no destination page reads any more).
        unsafe { self.copy_live::<false>(&mut w, out_words, total) };
        out[total * WORD..].fill(0);

        // 2. Forward the references, object by object, in `out`.
        // SAFETY: `out` holds destination words [r0, r_end), copied above.
        unsafe { self.forward_run(w_first, out_words, r0, r_end) };
    }

    /// Forward every reference slot of destination words `[r0, r_end)`, which lie back to
    /// back at `out` (word `r` at `out + (r - r0)`); `w_first` is the old word of rank `r0`.
    /// The first object may start before `r0` (its header is read in the old half).
    ///
    /// # Safety
    /// `out` holds destination words `[r0, r_end)` (copied there, or the old words themselves
    /// when they are a run of live words); nothing else writes them meanwhile.
    #[inline(always)]
    unsafe fn forward_run(&self, w_first: usize, out: *mut usize, r0: usize, r_end: usize) {
        let start = self
            .mark()
            .prev_set(w_first)
            .expect("every live word belongs to a marked object");
        // Every word of a marked object is live, so the words [start, w_first) precede rank
        // r0 directly.
        let mut walk = ObjWalk {
            pos: r0 - (w_first - start),
            header: Some(header(self.src + start * WORD)),
        };
        // SAFETY: the caller's contract.
        unsafe { self.forward_refs(&mut walk, out, r0, r0, r_end) };
    }

    /// Forward, in place, the references of `n` dense destination pages from `first` on: their
    /// words are the fully live old pages from `j` on, at the same page offsets (every word of
    /// them live, rank `first.first_rank()` at old word `j * PAGE_WORDS`), so they need no
    /// copy, only the reference pass of [`Plan::fill_pages`], run over the old pages.
    ///
    /// # Safety
    /// The old pages `[j, j + n)` are fully live, hold destination pages `first ..` exactly,
    /// are present, and no other thread reads or writes them while this runs (and none reads
    /// them as old-half words afterwards).
    pub(crate) unsafe fn update_run_in_place(&self, first: DestPage, n: usize, j: OldPage) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has `popcnt`; the rest is the caller's contract.
            unsafe { self.update_run_popcnt(first, n, j) };
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { self.update_run_impl(first, n, j) };
    }

    /// [`Plan::update_run_in_place`] compiled with `popcnt` (see [`Plan::fill_pages_popcnt`]).
    ///
    /// # Safety
    /// The CPU must have `popcnt`; and [`Plan::update_run_in_place`]'s contract.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn update_run_popcnt(&self, first: DestPage, n: usize, j: OldPage) {
        // SAFETY: forwarded.
        unsafe { self.update_run_impl(first, n, j) };
    }

    #[inline(always)]
    unsafe fn update_run_impl(&self, first: DestPage, n: usize, j: OldPage) {
        let r0 = first.first_rank();
        let w_first = j.index() * PAGE_WORDS;
        debug_assert_eq!(self.live().select(r0, self.bitmap_words), Some(w_first));
        debug_assert!(first.plus(n).first_rank() <= self.live_words);
        let base = (self.src + w_first * WORD) as *mut usize;
        // SAFETY: the old pages hold destination words [r0, r0 + n pages) in order (the
        // caller's contract).
        unsafe { self.forward_run(w_first, base, r0, first.plus(n).first_rank()) };
    }

    /// Stop-the-world compaction in place ([`crate::StwCompaction::Slide`]): the plan's
    /// destination is its own old half (`to == from == src`). Destination words are produced
    /// in steps of [`SLIDE_STEP_WORDS`] ([`Plan::slide_range`]): the step's live words slide
    /// down (one `memmove` per run, none for a run already in place), then its references are
    /// forwarded while it is in cache. Finally the words from the compacted end to the end of
    /// its page are zeroed (one-word fillers, as a filled page's tail is).
    ///
    /// Sliding down in rank order never overwrites a word not yet read: the live word of rank
    /// `r` lies at word `w >= r`, and every word written before it is read has a rank below
    /// `r`. Forwarding reads only the side tables, and the reference pass reads headers from
    /// the slid words; nothing reads the old layout after it moved.
    ///
    /// # Safety
    /// The world is stopped and nothing else reads or writes the half while this runs;
    /// `to == from == src`, and the half's pages up to `pages` are present.
    pub(crate) unsafe fn slide(&self) {
        debug_assert!(self.to == self.from && self.src == self.from);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has `popcnt`; the rest is the caller's contract.
            unsafe { self.slide_popcnt() };
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { self.slide_impl() };
    }

    /// [`Plan::slide`] compiled with `popcnt` (see [`Plan::fill_pages_popcnt`]).
    ///
    /// # Safety
    /// The CPU must have `popcnt`; and [`Plan::slide`]'s contract.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn slide_popcnt(&self) {
        // SAFETY: forwarded.
        unsafe { self.slide_impl() };
    }

    #[inline(always)]
    unsafe fn slide_impl(&self) {
        let total = self.live_words;
        // The first live word is the header of the first live object: rank 0.
        let mut w = 0;
        let mut walk = ObjWalk {
            pos: 0,
            header: None,
        };
        // SAFETY: the caller's contract; destination words [0, total) start on an object and
        // their live words are the first `total` at or after old word 0.
        unsafe { self.slide_range(&mut w, &mut walk, 0, total, || {}) };
        // SAFETY: words [total, pages * PAGE_WORDS) lie on the last destination page, present
        // and ours; nothing live is there any more.
        unsafe {
            core::ptr::write_bytes(
                (self.src as *mut usize).add(total),
                0,
                self.pages * PAGE_WORDS - total,
            )
        };
    }

    /// Slide destination words `[r0, r1)` of an in-place slide into place, in steps of
    /// [`SLIDE_STEP_WORDS`]: each step's live words slide down ([`Plan::copy_live`], the search
    /// starting at old word `*w`), then the step's references are forwarded while its words
    /// are still in the L1 cache ([`Plan::forward_refs`], the walk going on from `walk`).
    /// `copied` runs once every source word of the range has been read, before the last
    /// step's references are forwarded ([`slide`] publishes a piece as copied there).
    ///
    /// Sliding down in rank order never overwrites a word not yet read: the live word of rank
    /// `r` lies at word `w >= r`, and every word written before it is read (copied or
    /// forwarded) has a rank below `r`.
    ///
    /// # Safety
    /// [`Plan::slide`]'s contract for the words this reads (the live words of ranks
    /// `[r0, r1)`, the first of them at or after old word `*w`, and the dead words between
    /// them: the packed copy reads whole groups of words) and writes (words `[r0, r1)`);
    /// `walk` is the object holding destination word `r0` (or starting there); an object
    /// starts at `r1` (or `r1 == live_words`); no other thread writes a word this reads, or
    /// reads or writes a word it writes, while it runs.
    #[inline(always)]
    unsafe fn slide_range(
        &self,
        w: &mut usize,
        walk: &mut ObjWalk,
        r0: usize,
        r1: usize,
        copied: impl FnOnce(),
    ) {
        let base = self.src as *mut usize;
        let mut r = r0;
        // SAFETY: (both blocks) the caller's contract; destination words [r, r + n) were
        // slid into place just before their references are forwarded, and the copy only
        // moves words down (see above).
        unsafe {
            while r1 - r > SLIDE_STEP_WORDS {
                self.copy_live::<true>(w, base.add(r), SLIDE_STEP_WORDS);
                self.forward_refs(walk, base, 0, r, r + SLIDE_STEP_WORDS);
                r += SLIDE_STEP_WORDS;
            }
            self.copy_live::<true>(w, base.add(r), r1 - r);
        }
        copied();
        // SAFETY: as above.
        unsafe { self.forward_refs(walk, base, 0, r, r1) };
        debug_assert!(
            r0 == r1 || walk.pos == r1,
            "a range ends on an object boundary"
        );
    }

    /// Copy the next `count` live words of the old half, in rank order, to `dst`: runs of set
    /// bits of the live-words bitmap, one copy each. `*w` is where the search for the next
    /// live word starts; it is left just after the last word copied.
    ///
    /// # Safety
    /// `dst` must be writable for `count` words; there must be `count` live words at or
    /// after `*w`. With `OVERLAP` false, `dst` must not overlap any word read; with `OVERLAP`
    /// true it may overlap them only at lower addresses (the in-place slide), and no other
    /// thread may write any word from `*w` to the last live word copied (dead ones included,
    /// see [`pack`]) meanwhile.
    #[inline(always)]
    unsafe fn copy_live<const OVERLAP: bool>(&self, w: &mut usize, dst: *mut usize, count: usize) {
        let limit = (self.from_top - self.from) / WORD;
        let bits = &self.live().bits;
        #[cfg(target_arch = "x86_64")]
        if let (true, Some(kind)) = (OVERLAP, pack::kind()) {
            let src = self.src as *const usize;
            // SAFETY: the CPU runs build `kind`; the rest is this function's contract.
            unsafe { pack::copy_live_packed(kind, bits, limit, src, w, dst, count) };
            return;
        }
        let mut d = 0;
        // The slide: bitmap words below `pf` had their live cache lines prefetched.
        let mut pf = *w / 64;
        while d < count {
            let s = bits
                .next_set(*w, limit)
                .expect("a live word for every destination word");
            if OVERLAP {
                // Sparse live words are a cache (and TLB) miss each, in an order the hardware
                // prefetcher does not guess: ask for the live lines some way ahead.
                let ahead = (s / 64 + SLIDE_PREFETCH_BITMAP_WORDS).min(limit.div_ceil(64));
                while pf < ahead {
                    let m = bits.word(pf);
                    // Denser words are left to the hardware prefetcher: their lines are
                    // nearly consecutive, and asking for them costs more than it hides.
                    if m != 0 && m.count_ones() < SLIDE_PREFETCH_MAX_LIVE {
                        for g in 0..8 {
                            if (m >> (8 * g)) & 0xff != 0 {
                                crate::dense::prefetch(self.src + (pf * 64 + 8 * g) * WORD);
                            }
                        }
                    }
                    pf += 1;
                }
            }
            // The run's end is searched no further than the words still wanted: a long run (a
            // fully live region, such as a concurrent cycle's black allocations or a dense
            // prefix) would otherwise be scanned to its end by every call that copies a part
            // of it.
            let len = bits.next_clear(s, limit.min(s + (count - d))) - s;
            let from = (self.src + s * WORD) as *const usize;
            // SAFETY: source words [s, s + len) are live words of the old half (present memory,
            // read at `src`); destination words [d, d + len) are writable by the caller's
            // contract, which also rules out any overlap, or (`OVERLAP`) puts the destination
            // below the source.
            unsafe {
                let to = dst.add(d);
                if OVERLAP && core::ptr::eq(to, from) {
                    // Already in place (a dense prefix of the half).
                } else if len <= SHORT_RUN_WORDS {
                    copy_short_run(from, to, len);
                } else if OVERLAP {
                    core::ptr::copy(from, to, len);
                } else {
                    core::ptr::copy_nonoverlapping(from, to, len);
                }
            }
            d += len;
            *w = s + len;
        }
    }

    /// Forward every reference slot in destination words `[lo, hi)`, walking the objects from
    /// `walk` on (each object's header is at its first destination word, or given in
    /// `walk.header`). Destination word `r` is at `base + (r - base_rank)`. On return `walk`
    /// is the object holding word `hi` (or starting there, header not yet read).
    ///
    /// # Safety
    /// Destination words `[max(walk.pos, base_rank), hi)` must be copied, at `base`, and
    /// `walk` must describe an object starting at or before `lo` that lies back to back
    /// with the following ones up to `hi`.
    #[inline(always)]
    unsafe fn forward_refs(
        &self,
        walk: &mut ObjWalk,
        base: *mut usize,
        base_rank: usize,
        lo: usize,
        hi: usize,
    ) {
        // Values, not paths through `self`: the stores through `base` below would otherwise
        // make the compiler reload every table pointer after each one.
        let fwd = Forwarder {
            ranker: self.live().ranker(),
            from: self.from,
            from_top: self.from_top,
            to: self.to,
            plan: self.has_exceptions().then_some(self),
        };
        let layouts = self.types.scan_table();
        // The last header seen, with its layout and size: objects of one type (and length)
        // come in runs, and with the size taken from here when the header repeats (a branch
        // the CPU predicts), the next object's position does not wait for this header's load
        // and table lookup: the walk's header loads overlap instead of forming a chain. (The
        // starting sentinel's layout and size are its own lookup's, so a real header equal
        // to it is served right too.)
        let mut last_h = Header(u64::MAX);
        let mut last_l = layouts.get(last_h);
        let mut last_size = last_l.size_words(last_h);
        while walk.pos < hi {
            let pos = walk.pos;
            // SAFETY: `pos` lies in [lo, hi) when the header is not given: a copied word.
            let h = walk
                .header
                .unwrap_or_else(|| Header(unsafe { *base.add(pos - base_rank) } as u64));
            if h != last_h {
                last_h = h;
                last_l = layouts.get(h);
                last_size = last_l.size_words(h);
            }
            let (l, size) = (last_l, last_size);
            let (a, b) = (lo.max(pos) - pos, (pos + size).min(hi) - pos);
            // Word `k` of this object is destination word `pos + k`, at `obj + k`.
            let obj = base.wrapping_add(pos).wrapping_sub(base_rank);
            // Each `k` below is a reference slot among the object's words [a, b), so destination
            // word `pos + k` lies in [lo, hi): a copied word.
            match l.ref_slots(h, a, b) {
                RefSlots::Mask(mut m) => {
                    while m != 0 {
                        // SAFETY: a copied word (above).
                        unsafe { fwd.slot(obj.add(m.trailing_zeros() as usize)) };
                        m &= m - 1;
                    }
                }
                RefSlots::Range(x, y) => {
                    for k in x..y {
                        // SAFETY: a copied word (above).
                        unsafe { fwd.slot(obj.add(k)) };
                    }
                }
                RefSlots::Registry => self.types.for_each_ref_word(h, a, b, |k| {
                    // SAFETY: a copied word (above).
                    unsafe { fwd.slot(obj.add(k)) }
                }),
            }
            if pos + size > hi {
                // The object goes on past `hi`: the next call continues it.
                walk.header = Some(h);
                return;
            }
            walk.pos = pos + size;
            walk.header = None;
        }
    }

    /// The page-by-page fill that [`Plan::fill_pages`] replaced: one [`Plan::pieces`] walk, one
    /// copy per object. Kept as the tests' reference.
    #[cfg(test)]
    pub(crate) fn fill_page_by_pieces(&self, page: DestPage, out: &mut [u8]) {
        debug_assert_eq!(out.len(), PAGE_SIZE);
        let dest_lo = page.first_rank();
        let out_words = out.as_mut_ptr() as *mut usize;
        let mut written = dest_lo;
        for p in self.pieces(page) {
            let src = self.src + p.w * WORD;
            // SAFETY: source words [w + lo - new_w, w + hi - new_w) lie inside a live object of
            // the intact old half; the destination range lies inside `out` (lo..hi within the
            // page).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (src + (p.lo - p.new_w) * WORD) as *const usize,
                    out_words.add(p.lo - dest_lo),
                    p.hi - p.lo,
                );
            }
            self.types
                .for_each_ref_word(p.h, p.lo - p.new_w, p.hi - p.new_w, |k| {
                    // SAFETY: `new_w + k` lies in [lo, hi), inside `out`.
                    unsafe {
                        let slot = out_words.add(p.new_w + k - dest_lo);
                        *slot = self.forward(*slot);
                    }
                });
            written = p.hi;
        }
        out[(written - dest_lo) * WORD..].fill(0);
    }

    /// Destination page `k` is exactly old page `j` (fully live, same page offset): rewrite the
    /// references held in old page `j` in place. Reads headers of objects that start on earlier
    /// pages; writes only old page `j`.
    pub(crate) fn update_in_place(&self, k: DestPage, j: OldPage) {
        // Old word = new word + shift on this page.
        let shift = j.index() * PAGE_WORDS - k.first_rank();
        for p in self.pieces(k) {
            self.types
                .for_each_ref_word(p.h, p.lo - p.new_w, p.hi - p.new_w, |kk| {
                    let slot = (self.src + (p.new_w + kk + shift) * WORD) as *mut usize;
                    // SAFETY: the slot lies on old page `j`, which only this fill reads and
                    // writes.
                    unsafe { *slot = self.forward(*slot) };
                });
        }
    }
}

/// The new-address formula with its inputs held by value (see [`faultline_heap::bitmap::Ranker`]),
/// for the reference pass.
#[derive(Clone, Copy)]
struct Forwarder<'a> {
    ranker: faultline_heap::bitmap::Ranker<'a>,
    from: usize,
    from_top: usize,
    to: usize,
    /// The plan, when it keeps or moves objects specially (rare: pins): then every slot goes
    /// through [`Plan::forward`].
    plan: Option<&'a Plan>,
}

impl Forwarder<'_> {
    /// Rewrite the reference slot at `slot` to its new address ([`Plan::forward`]).
    ///
    /// # Safety
    /// `slot` must be readable and writable.
    #[inline(always)]
    unsafe fn slot(self, slot: *mut usize) {
        // SAFETY: the caller's contract.
        unsafe {
            let v = *slot;
            if let Some(plan) = self.plan {
                *slot = plan.forward(v);
                return;
            }
            if v.is_multiple_of(WORD) && v >= self.from && v < self.from_top {
                *slot = self.to + WORD * self.ranker.rank((v - self.from) / WORD);
            }
        }
    }
}

/// How far ahead the slide's copy prefetches the live cache lines of the old half, in
/// live-words bitmap words (64 words, 512 bytes, each): 4 KiB (4, 8 and 16 measured; 8 the
/// best by a little).
const SLIDE_PREFETCH_BITMAP_WORDS: usize = 8;

/// The slide's copy prefetches the live lines of a bitmap word with fewer live words than
/// this (the sparse ones). Prefetching every live line cost ~10 % more at 50 % live, where
/// the hardware prefetcher finds the lines by itself; the sparse ones alone cut the slide's
/// CPU by about 40 % at 10 % live.
const SLIDE_PREFETCH_MAX_LIVE: u32 = 24;

/// Runs of at most this many words are copied inline ([`copy_short_run`]), not by a call.
const SHORT_RUN_WORDS: usize = 16;

/// Copy `len <= SHORT_RUN_WORDS` words from `from` to `to`, front to back, four at a time:
/// each group of words is read before it is written, so a destination below an overlapping
/// source (the in-place slide) is copied correctly.
///
/// # Safety
/// `from` readable and `to` writable for `len` words; `to <= from` if they overlap.
#[inline(always)]
unsafe fn copy_short_run(from: *const usize, to: *mut usize, len: usize) {
    let mut i = 0;
    // SAFETY: every index is below `len` (the caller's contract covers [0, len)).
    unsafe {
        while i + 4 <= len {
            let a = from.add(i).read();
            let b = from.add(i + 1).read();
            let c = from.add(i + 2).read();
            let d = from.add(i + 3).read();
            to.add(i).write(a);
            to.add(i + 1).write(b);
            to.add(i + 2).write(c);
            to.add(i + 3).write(d);
            i += 4;
        }
        if i < len {
            let a = from.add(i).read();
            let b = if i + 1 < len {
                from.add(i + 1).read()
            } else {
                0
            };
            let c = if i + 2 < len {
                from.add(i + 2).read()
            } else {
                0
            };
            to.add(i).write(a);
            if i + 1 < len {
                to.add(i + 1).write(b);
            }
            if i + 2 < len {
                to.add(i + 2).write(c);
            }
        }
    }
}

/// Where the reference pass of page filling stands: the object whose first destination
/// word is `pos`, with its header if already read (`None`: read it at `pos`, copied).
struct ObjWalk {
    pos: usize,
    header: Option<Header>,
}

/// The iterator of [`Plan::pieces`].
pub(crate) struct Pieces<'a> {
    plan: &'a Plan,
    dest_lo: usize,
    dest_hi: usize,
    /// Old-half words in use (the mark bitmap is searched below it).
    limit: usize,
    /// Old word index of the next object to yield.
    next: Option<usize>,
}

impl Iterator for Pieces<'_> {
    type Item = Piece;

    #[inline]
    fn next(&mut self) -> Option<Piece> {
        let w = self.next.take()?;
        let plan = self.plan;
        let new_w = plan.live().rank(w);
        if new_w >= self.dest_hi {
            return None;
        }
        let h = header(plan.src + w * WORD);
        let size = plan.types.size_words(h).unwrap_or(1);
        if new_w + size < self.dest_hi {
            self.next = plan.mark().next_set(w + size, self.limit);
        }
        Some(Piece {
            w,
            new_w,
            h,
            lo: new_w.max(self.dest_lo),
            hi: (new_w + size).min(self.dest_hi),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_heap::object::{TypeId, TypeInfo};

    /// A xorshift generator (fixed seed: the tests are deterministic).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// An old half in a `Vec` (objects of every layout, a fraction `live` of them marked), its
    /// side tables and a plan over it.
    pub(super) struct Fixture {
        pub(super) _old: Vec<u64>,
        pub(super) plan: Plan,
    }

    pub(super) fn fixture(seed: u64, live: f64, words: usize) -> Fixture {
        let mut r = TypeRegistry::default();
        let plain = r.register(TypeInfo::fixed("plain", 16, &[])).unwrap();
        let pair = r.register(TypeInfo::fixed("pair", 24, &[0, 8])).unwrap();
        let wide = r
            .register(TypeInfo::fixed("wide", 640, &[0, 8, 512, 632]))
            .unwrap();
        let arr = r.register(TypeInfo::ref_array("arr")).unwrap();
        let bytes = r.register(TypeInfo::byte_array("bytes")).unwrap();
        let mut rng = Rng(seed | 1);
        let mut old = vec![0u64; words];
        let from = old.as_mut_ptr() as usize;
        let tables = Arc::new(SideTables::new(words + 128));
        // Lay the objects out.
        let mut objs = Vec::new();
        let mut w = 0;
        loop {
            let (t, len) = match rng.below(20) {
                0 => (TypeId::FILLER, 0),
                1..=8 => (pair, 0),
                9..=11 => (plain, 0),
                12 => (wide, 0),
                13..=16 => {
                    let max = if rng.below(8) == 0 { 1500 } else { 40 };
                    (arr, rng.below(max))
                }
                _ => (bytes, rng.below(100)),
            };
            let h = Header::new(t, len as u32);
            let size = r.size_words(h).unwrap();
            if w + size > words {
                break;
            }
            if t != TypeId::FILLER {
                old[w] = h.0;
                objs.push((w, h, size));
            }
            w += size;
        }
        let used = w;
        // Fill the payloads: references to objects (live or not: forwarding does not care),
        // null, immediates, addresses outside the half, and plain data.
        for &(w, _, size) in &objs {
            for k in 1..size {
                old[w + k] = match rng.below(6) {
                    0 => 0,
                    1 => (rng.next() | 1) & 0xffff,
                    2 => 0x10_0000 + 8 * rng.below(1000) as u64,
                    _ => {
                        let (o, _, _) = objs[rng.below(objs.len())];
                        (from + o * WORD) as u64
                    }
                };
            }
        }
        for &(w, _, size) in &objs {
            if (rng.next() % 1000) as f64 / 1000.0 < live {
                tables.mark.set(w);
                tables.live.mark_range(w, w + size);
            }
        }
        let bitmap_words = used.div_ceil(64) + 1;
        let live_words = tables.live.compute_prefix(bitmap_words);
        let plan = Plan {
            from,
            src: from,
            from_top: from + used * WORD,
            to: 0x7000_0000_0000,
            to_offset: ArenaOffset(0),
            live_words,
            pages: (live_words * WORD).div_ceil(PAGE_SIZE),
            bitmap_words,
            tables,
            types: Arc::new(r),
            kept: Box::new([]),
            moved: Box::new([]),
        };
        Fixture { _old: old, plan }
    }

    /// Word-aligned page buffers.
    fn pages(n: usize) -> Vec<u64> {
        vec![0xdead_beef; n * PAGE_WORDS]
    }

    fn bytes(v: &mut [u64]) -> &mut [u8] {
        // SAFETY: reinterpreting initialised `u64`s as bytes, same length in bytes.
        unsafe { core::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, v.len() * WORD) }
    }

    #[test]
    fn sliding_in_place_matches_filling_by_pieces() {
        // 392 pages of old half: every destination page fits in it.
        for (seed, live) in [(11, 0.1), (12, 0.5), (13, 0.9), (14, 1.0), (15, 0.02)] {
            let mut f = fixture(seed, live, 392 * PAGE_WORDS);
            f.plan.to = f.plan.from;
            let pd = &f.plan;
            let mut want = pages(pd.pages);
            for k in 0..pd.pages {
                let page = &mut want[k * PAGE_WORDS..(k + 1) * PAGE_WORDS];
                pd.fill_page_by_pieces(DestPage(k), bytes(page));
            }
            // SAFETY: nothing else touches the fixture's half; `to == from == src`.
            unsafe { pd.slide() };
            let got = &f._old[..pd.pages * PAGE_WORDS];
            for k in 0..pd.pages {
                let r = k * PAGE_WORDS..(k + 1) * PAGE_WORDS;
                assert!(got[r.clone()] == want[r], "seed {seed}: page {k} differs");
            }
        }
    }

    #[test]
    fn sliding_after_a_dense_prefix_keeps_it_in_place() {
        for (seed, live, t) in [(31, 0.97, 0.9), (32, 0.93, 0.85), (33, 0.995, 0.95)] {
            let mut f = fixture(seed, live, 392 * PAGE_WORDS);
            f.plan.to = f.plan.from;
            let used = (f.plan.from_top - f.plan.from) / WORD;
            let n = crate::dense::choose(&f.plan.tables.live.bits, used, t);
            assert!(n > 4, "seed {seed}: a prefix of {n} pages");
            let end = n * PAGE_WORDS;
            // The marked objects, in order: (old word, header).
            let mut objs = Vec::new();
            let mut w = 0;
            while let Some(m) = f.plan.mark().next_set(w, used) {
                objs.push((m, Header(f._old[m])));
                w = m + 1;
            }
            // SAFETY: the fixture's half is ours; it is planned again below.
            let kept = unsafe { crate::dense::keep(&f.plan.tables.live, f.plan.from, n) };
            assert!(kept.dead_words > 0, "seed {seed}: no gap in the prefix");
            assert!(kept.dead_words as f64 <= (1.0 - t) * end as f64);
            f.plan.live_words = f.plan.tables.live.compute_prefix(f.plan.bitmap_words);
            f.plan.pages = (f.plan.live_words * WORD).div_ceil(PAGE_SIZE);
            // SAFETY: nothing else touches the fixture's half; `to == from == src`.
            unsafe { f.plan.slide() };
            // The result parses: the marked objects in order, those starting in the prefix at
            // their old word, fillers only in the prefix, ending at the compacted end.
            let mut w = 0;
            let mut i = 0;
            let mut fillers = 0;
            while w < f.plan.live_words {
                let h = Header(f._old[w]);
                let size = f.plan.types.size_words(h).expect("a registered type");
                if h.type_id() == faultline_heap::object::TypeId::FILLER {
                    assert!(w < end, "seed {seed}: a filler at {w}, past the prefix");
                    fillers += size;
                } else {
                    let (ow, oh) = objs[i];
                    assert_eq!(h, oh, "seed {seed}: object {i}");
                    if ow < end {
                        assert_eq!(w, ow, "seed {seed}: object {i} moved out of the prefix");
                    }
                    i += 1;
                }
                w += size;
            }
            assert_eq!(w, f.plan.live_words);
            assert_eq!(i, objs.len());
            assert_eq!(fillers, kept.dead_words);
        }
    }

    #[test]
    fn kept_and_moved_objects_are_forwarded_specially() {
        let mut f = fixture(21, 0.6, 100_000);
        // Keep three marked objects; move an address outside the old half.
        let mark = f.plan.mark();
        let mut kept = Vec::new();
        let mut w = 0;
        let words = (f.plan.from_top - f.plan.from) / WORD;
        while let Some(m) = mark.next_set(w, words) {
            if m % 7 == 3 && kept.len() < 3 {
                let h = header(f.plan.from + m * WORD);
                let size = f.plan.types.size_words(h).unwrap();
                kept.push((f.plan.from + m * WORD, size * WORD));
            }
            w = m + 1;
        }
        assert_eq!(kept.len(), 3);
        let outside = 0x10_0000 + 8 * 5;
        f.plan.kept = kept.clone().into_boxed_slice();
        f.plan.moved = vec![(outside, 0x7000_0000_1000)].into_boxed_slice();
        let pd = &f.plan;
        for &(a, _) in &kept {
            assert_eq!(pd.forward(a), a, "a kept object stays");
        }
        assert_eq!(pd.forward(outside), 0x7000_0000_1000);
        assert_eq!(pd.forward(outside + 8), outside + 8);
        // Filling runs of pages (the reference pass's own forwarder) agrees with the
        // reference fill (which uses `forward`), and slots naming kept objects keep them.
        let mut want = pages(pd.pages);
        for k in 0..pd.pages {
            let page = &mut want[k * PAGE_WORDS..(k + 1) * PAGE_WORDS];
            pd.fill_page_by_pieces(DestPage(k), bytes(page));
        }
        let mut got = pages(pd.pages);
        pd.fill_pages(DestPage(0), bytes(&mut got));
        assert!(got == want, "filling with kept and moved objects differs");
        let kept_refs = got
            .iter()
            .filter(|&&v| kept.iter().any(|&(a, _)| a as u64 == v))
            .count();
        let moved_refs = got.iter().filter(|&&v| v == 0x7000_0000_1000).count();
        assert!(kept_refs > 0 && moved_refs > 0, "{kept_refs} {moved_refs}");
    }

    #[test]
    fn filling_runs_of_pages_matches_filling_by_pieces() {
        for (seed, live) in [(1, 0.1), (2, 0.5), (3, 0.9), (4, 1.0), (5, 0.02)] {
            let f = fixture(seed, live, 200_000);
            let pd = &f.plan;
            assert!(pd.pages > 2, "seed {seed}: {} pages", pd.pages);
            // Reference: page by page from the pieces, one page past the end included.
            let total = pd.pages + 1;
            let mut want = pages(total);
            for k in 0..total {
                let page = &mut want[k * PAGE_WORDS..(k + 1) * PAGE_WORDS];
                pd.fill_page_by_pieces(DestPage(k), bytes(page));
            }
            for batch in [1, 3, 16, total] {
                let mut got = pages(total);
                let mut k = 0;
                while k < total {
                    let n = batch.min(total - k);
                    pd.fill_pages(
                        DestPage(k),
                        bytes(&mut got[k * PAGE_WORDS..(k + n) * PAGE_WORDS]),
                    );
                    k += n;
                }
                for k in 0..total {
                    let r = k * PAGE_WORDS..(k + 1) * PAGE_WORDS;
                    assert!(
                        got[r.clone()] == want[r.clone()],
                        "seed {seed}, batch {batch}: page {k} differs"
                    );
                }
            }
        }
    }
}
