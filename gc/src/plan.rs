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
//! - [`Plan::pieces`] walks the objects that land on one destination page, each clipped to the
//!   page ([`Piece`]); filling a page ([`Plan::fill_page`]) and updating a dense page in place
//!   ([`Plan::update_in_place`]) both use it, so an object straddling a page edge is split the
//!   same way everywhere and filling one page never touches another destination page.
//!
//! Invariants:
//! - a `Plan` is immutable once built; the side tables it holds ([`SideTables`]) are not
//!   modified while a plan built from them is in use (the next cycle's marking starts only
//!   after the compaction using it has finished);
//! - everything here reads only the old half (at `src`) and writes only the output it is given
//!   (or, for `update_in_place`, the one old page it is given): async-signal-safe, no
//!   allocation, no lock.

use std::sync::Arc;

use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::object::{Header, TypeRegistry, WORD};
use faultline_heap::{ArenaOffset, PAGE_SIZE};

use crate::trace::header;

/// Words per page.
pub(crate) const PAGE_WORDS: usize = PAGE_SIZE / WORD;

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

    /// New address of the object (or word) at old address `v`; other values unchanged.
    #[inline]
    pub(crate) fn forward(&self, v: usize) -> usize {
        if v % WORD == 0 && v >= self.from && v < self.from_top {
            self.to + WORD * self.live().rank((v - self.from) / WORD)
        } else {
            v
        }
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
    pub(crate) fn fill_page(&self, page: DestPage, out: &mut [u8]) {
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
