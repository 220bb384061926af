//! The dense prefix of a stop-the-world slide ([`crate::HeapConfig::dense_prefix`]).
//!
//! ```text
//!  half:  [ p0 p1 p2 p3 | p4 ........................ top)
//!          >= t live as a   after the last page that keeps it so: the slide starts here
//!          whole, p3 >= t
//!  gaps:  dead words inside p0..p3 -> one filler object each, marked live
//! ```
//!
//! A slide moves every live word down to its rank. The leading pages whose live density, as
//! a whole, is at least the threshold `t` (ending on a page itself at least `t` live:
//! [`choose`]) are left where they are instead: every dead gap in them
//! (a maximal run of dead words) becomes one filler object ([`TypeId::FILLER`] with a length:
//! one header word, whatever the gap's size) and its words are marked in the live-words
//! bitmap. Every word of the prefix is then live, so the rank of a prefix word is its own
//! index: the plan's formula forwards the prefix's objects to themselves, with no change to
//! forwarding, and the slide finds the prefix already in place (one run it does not copy).
//! Everything after the prefix slides down as before; the references held in the prefix are
//! forwarded by the slide's reference pass like any others.
//!
//! Only the slide keeps a prefix: it compacts within one half, so words left in place cost
//! nothing but the dead bytes they keep (the fragmentation,
//! [`crate::CycleStats::dense_dead_bytes`], bounded by `1 - t` of the prefix). A compaction
//! into the other half would have to keep the prefix's pages in the old half (as pinned
//! objects are) and is not done.
//!
//! A concurrent copy cycle uses the same device for another end ([`align_runs`]): a few dead
//! words turned into fillers make its black objects compact to the page offsets they already
//! have, so that their fully live pages become destination pages of their own, which the
//! compaction forwards in place and moves whole (`UFFDIO_MOVE`) instead of copying. Each
//! filler is shorter than a page and lies in a gap that aligns the pages after it.
//!
//! Invariants (both uses):
//! - it runs with the world stopped, after marking (the mark bitmap names exactly the live
//!   objects) and before the plan's prefix sums are computed ([`choose`] reads the live-words
//!   bitmap; [`keep`] adds the gaps to it, flagging their chunks for recomputation);
//! - [`keep`] writes only dead words of the prefix (the first word of each gap), which no
//!   reference reaches: nothing reads a dead object after marking (weak references, identity
//!   hashes and finalization go by the mark bitmap, which it does not change);
//! - the prefix ends on a page boundary at or below the used end of the half: a filler
//!   covers a gap only up to it, and the words after it are the slide's.

use faultline_heap::bitmap::{Bitmap, LiveWords, CHUNK_WORDS};
use faultline_heap::object::{Header, TypeId, WORD};
use faultline_heap::PAGE_SIZE;

/// Words per page (as `plan`'s; defined here so this module, which `plan`'s tests use, does
/// not import `plan`).
const PAGE_WORDS: usize = PAGE_SIZE / WORD;

/// What keeping a dense prefix did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct DensePrefix {
    /// Pages of the prefix (from the half's base).
    pub pages: usize,
    /// Dead words in them, now fillers.
    pub dead_words: usize,
}

/// The dense prefix of a half whose first `used_words` words are in use, in whole pages
/// below `used_words`: the longest run of leading pages that ends on a page at least
/// `threshold` live and whose live density as a whole (live words over its words, from the
/// live-words bitmap `live` after marking) is at least `threshold`. A sparse page inside it
/// is kept if the dense pages around it pay for its dead words: the dead words kept are at
/// most `1 - threshold` of the prefix, however its pages vary (a rule that stopped at the
/// first page below the threshold would stop within a few pages of an old generation with a
/// few per cent of random deaths).
pub(crate) fn choose(live: &Bitmap, used_words: usize, threshold: f64) -> usize {
    const BITMAP_WORDS_PER_PAGE: usize = PAGE_WORDS / 64;
    let need = (threshold * PAGE_WORDS as f64).ceil() as usize;
    let whole_pages = used_words / PAGE_WORDS;
    // Live words minus `need` per page, over the pages so far: the prefix's density is at
    // least the threshold exactly where this is non-negative.
    let mut surplus: isize = 0;
    let mut best = 0;
    for p in 0..whole_pages {
        let lo = p * BITMAP_WORDS_PER_PAGE;
        let n: usize = (lo..lo + BITMAP_WORDS_PER_PAGE)
            .map(|i| live.word(i).count_ones() as usize)
            .sum();
        surplus += n as isize - need as isize;
        if n >= need && surplus >= 0 {
            best = p + 1;
        }
    }
    best
}

/// Keep the first `pages` pages of the half at `from` in place: turn each dead gap in them
/// into a filler object and mark every word of them live in `live`.
///
/// # Safety
/// The world is stopped; the half's first `pages` pages are present and in use (below its
/// top); `live` is its live-words bitmap after marking, not yet planned from; nothing reads
/// the dead objects of those pages from here on.
pub(crate) unsafe fn keep(live: &LiveWords, from: usize, pages: usize) -> DensePrefix {
    /// Gaps found (and their first words prefetched) before the first is written: each
    /// write is a cache miss of its own, and a batch overlaps them.
    const BATCH: usize = 32;
    let end = pages * PAGE_WORDS;
    let mut dead_words = 0;
    let mut w = 0;
    let mut gaps = [(0usize, 0usize); BATCH];
    loop {
        let mut n = 0;
        while n < BATCH && w < end {
            let g0 = live.bits.next_clear(w, end);
            if g0 >= end {
                w = end;
                break;
            }
            let g1 = live.bits.next_set(g0, end).unwrap_or(end);
            prefetch(from + g0 * WORD);
            gaps[n] = (g0, g1);
            n += 1;
            w = g1;
        }
        if n == 0 {
            break;
        }
        for &(g0, g1) in &gaps[..n] {
            let mut a = g0;
            while a < g1 {
                // A filler's length is 32 bits of bytes: split a (hypothetical) longer gap.
                let words = (g1 - a).min(1 + Header::MAX_LEN / WORD);
                let h = Header::new(TypeId::FILLER, ((words - 1) * WORD) as u32);
                // SAFETY: word `a` is a dead word of a present page of the half in use (the
                // caller's contract); no reference reaches it and no thread reads it.
                unsafe { ((from + a * WORD) as *mut u64).write(h.0) };
                a += words;
            }
            dead_words += g1 - g0;
        }
    }
    // Every word of the prefix is live now (the gaps' words, and those already live).
    live.mark_all_below(end);
    DensePrefix { pages, dead_words }
}

/// What [`align_runs`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DenseRuns {
    /// The fillers' headers (old-half word indices), marked in the mark bitmap: a filler may
    /// start where a dead object did, so whatever decides liveness by the mark bitmap after
    /// this (identity hashes, weak references) must not see these marks ([`Self::unmark`]).
    pub headers: Vec<usize>,
    /// Dead words kept as fillers (each filler is shorter than a page).
    pub dead_words: usize,
}

impl DenseRuns {
    /// Clear (`on` false) or set again (`on` true) the fillers' marks, around the liveness
    /// decisions of the flip (the plan's forwarding reads only the live-words bitmap).
    pub(crate) fn marks(&self, mark: &Bitmap, on: bool) {
        for &a in &self.headers {
            if on {
                mark.set(a);
            } else {
                mark.clear_range(a, a + 1);
            }
        }
    }
}

/// Dead words below the black boundary that [`align_runs`] may keep as fillers between the
/// gap it aligns at and the boundary (4 pages).
const MAX_ALIGN_BACK: usize = 4 * PAGE_WORDS;

/// How far below the black boundary [`align_runs`] looks for the gap that aligns (two chunks
/// of the prefix sums, 1 MiB of heap): the walk back is bounded whatever lies below.
const MAX_ALIGN_BACK_SPAN: usize = 2 * CHUNK_WORDS;

/// Chunks of the prefix sums ([`CHUNK_WORDS`]) that [`align_runs`] may scan for gaps above the
/// boundary and so flag for recomputation (the fillers' marks): the pause's share of dense
/// runs is bounded by it, whatever the heap's size. A fully live chunk (known from its count)
/// costs one look and does not count. Past the budget the rest of the black region keeps the
/// offsets it gets (its pages are copied, or moved where they happen to align).
const MAX_GAPPY_CHUNKS: usize = 4;

/// Concurrent copy cycles: make the old-half words `[lo, hi)` (the objects allocated during
/// marking, all of them black, so live and back to back but for the tails of allocation
/// buffers) compact to the same page offsets they have in the old half, so that every fully
/// live old page in it is a destination page of its own that the compaction can update in
/// place and move whole ([`crate::compaction`]) instead of copying.
///
/// Old word `w` lands on compacted word `rank(w)`; `d(w) = (w - rank(w)) mod PAGE_WORDS`
/// grows by one per dead word and stays put over live words. A dead gap `[g0, g1)` of `g`
/// words can bring `d` to 0 if `f = d(g1) mod PAGE_WORDS` (`d` at its end, counted as if it
/// stayed dead) is at most `g`: its last `f` words become one filler object, marked and live
/// (see [`DenseRuns::headers`]), and the rest stay dead. Once `d` is 0, every later gap does
/// it with `f = g mod PAGE_WORDS`, whatever the ranks below: which is what lets the walk skip
/// whole chunks the prefix sums count as fully live ([`LiveWords::chunk_full`]: no gap, `d`
/// unchanged) and stop at any gap (the words after it just keep their offsets). The black
/// region itself usually has few gaps (its buffers' tails are fillers, marked with the
/// buffer), so the gap that aligns is looked for first below `lo`, the nearest one large
/// enough, with at most [`MAX_ALIGN_BACK`] dead words of smaller gaps between it and `lo` and
/// within [`MAX_ALIGN_BACK_SPAN`] of it; from there on, every gap up to `hi` keeps less than a
/// page as a filler and `d` stays 0, over at most [`MAX_GAPPY_CHUNKS`] chunks that are not
/// fully live. The last gap (the one reaching `hi`) is left alone.
///
/// Cost (it runs in the flip pause): one look per fully live chunk of `[lo, hi)`, a bitmap scan
/// of at most `2 + MAX_GAPPY_CHUNKS` chunks, and as many chunks flagged for the prefix sums'
/// recomputation: bounded, not growing with the heap.
///
/// # Safety
/// The world is stopped and marking is complete (the bitmaps name exactly the live objects);
/// the prefix sums are computed (`LiveWords::finish_prefix`, no bit set since but by this
/// function) and computed again after this (the words marked here flag their chunks);
/// `rank_lo` is the number of live words before `lo`; `[lo, hi)` lies in the used part of the
/// half at `from`, whose pages are present; nothing reads the dead words of the half from here
/// on.
pub(crate) unsafe fn align_runs(
    live: &LiveWords,
    mark: &Bitmap,
    from: usize,
    lo: usize,
    hi: usize,
    rank_lo: usize,
) -> DenseRuns {
    let mut out = DenseRuns::default();
    if lo >= hi || lo == 0 {
        return out;
    }
    let bits = &live.bits;
    let floor = lo.saturating_sub(MAX_ALIGN_BACK_SPAN);
    // Back from `lo`: the nearest gap that aligns, the live words in [gap end, lo) known as we
    // go; the smaller gaps passed on the way become whole fillers in the walk forward.
    let mut p = lo;
    let mut live_above = 0;
    let mut dead_above = 0;
    let start = loop {
        // A fully live chunk below `p` holds no gap: skip it whole.
        while p > floor && p.is_multiple_of(CHUNK_WORDS) && live.chunk_full(p - 1) {
            live_above += CHUNK_WORDS;
            p -= CHUNK_WORDS;
        }
        if p <= floor {
            return out;
        }
        let Some(last_dead) = bits.prev_clear_above(p - 1, floor) else {
            return out;
        };
        let g1 = last_dead + 1;
        live_above += p - g1;
        let f = (g1 - (rank_lo - live_above)) % PAGE_WORDS;
        if f <= g1 && bits.next_set(g1 - f, g1).is_none() {
            // (`f` = 0: the gap already aligns, nothing to fill.)
            if f > 0 {
                // SAFETY: `[g1 - f, g1)` is dead (no live bit in it, checked above) and below
                // the black boundary in the used part of the half: the caller's contract.
                unsafe { place_filler(live, mark, from, g1 - f, g1, &mut out) };
            }
            break g1;
        }
        // Shorter than `f` (< a page): its start is near.
        let g0 = bits.prev_set(last_dead).map_or(0, |s| s + 1);
        dead_above += g1 - g0;
        if dead_above > MAX_ALIGN_BACK || g0 <= floor {
            return out;
        }
        p = g0;
    };
    // Forward with `d` = 0: each gap keeps its length mod a page as a filler at its end.
    let mut w = start;
    let mut chunk = usize::MAX;
    let mut budget = MAX_GAPPY_CHUNKS + 1;
    while w < hi {
        if live.chunk_full(w) {
            w = (w / CHUNK_WORDS + 1) * CHUNK_WORDS;
            continue;
        }
        if w / CHUNK_WORDS != chunk {
            chunk = w / CHUNK_WORDS;
            budget -= 1;
            if budget == 0 {
                break;
            }
        }
        let chunk_end = ((chunk + 1) * CHUNK_WORDS).min(hi);
        let g0 = bits.next_clear(w, chunk_end);
        if g0 >= chunk_end {
            w = chunk_end;
            continue;
        }
        let Some(g1) = bits.next_set(g0, hi) else {
            break;
        };
        let f = (g1 - g0) % PAGE_WORDS;
        if f > 0 {
            // SAFETY: `[g1 - f, g1)` ends the dead gap `[g0, g1)` inside `[lo, hi)`, the used
            // part of the half: the caller's contract.
            unsafe { place_filler(live, mark, from, g1 - f, g1, &mut out) };
        }
        w = g1;
    }
    out
}

/// Turn the dead words `[a, b)` (at least one, fewer than a page) of the half at `from` into
/// one filler, marked and live, recorded in `out`.
///
/// # Safety
/// [`align_runs`]'s contract: word `a` of the half at `from` is a dead word of a present page
/// of the half in use, which no reference reaches and no thread reads.
unsafe fn place_filler(
    live: &LiveWords,
    mark: &Bitmap,
    from: usize,
    a: usize,
    b: usize,
    out: &mut DenseRuns,
) {
    debug_assert!(a < b && b - a < PAGE_WORDS, "filler [{a}, {b})");
    let h = Header::new(TypeId::FILLER, ((b - a - 1) * WORD) as u32);
    // SAFETY: word `a` is a dead word of a present page of the half in use that no
    // reference reaches and no thread reads (the caller's contract).
    unsafe { ((from + a * WORD) as *mut u64).write(h.0) };
    mark.set(a);
    live.mark_range(a, b);
    out.headers.push(a);
    out.dead_words += b - a;
}

/// Ask the CPU to bring the cache line at `a` in (a hint: no effect elsewhere than x86-64).
#[inline(always)]
pub(crate) fn prefetch(a: usize) {
    #[cfg(target_arch = "x86_64")]
    // (Newer compilers call the intrinsic safe: the block is needed on the MSRV only.)
    #[allow(unused_unsafe)]
    // SAFETY: a prefetch never faults and changes no memory, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(a as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = a;
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_heap::object::TypeRegistry;

    #[test]
    fn the_prefix_is_dense_as_a_whole_and_its_gaps_become_fillers() {
        let pages = 6;
        let words = pages * PAGE_WORDS;
        let mut half = vec![0x5a5a_5a5a_u64; words];
        let live = LiveWords::new(words + 64);
        // Page 0: fully live; page 1: 95.1 % (one gap of 25 words); page 2: 93 % (gaps of 1
        // and 45 words, the second running into page 3); page 3: 98 %; page 4: 50 %; page 5:
        // full.
        let dead: [(usize, usize); 4] = [
            (PAGE_WORDS + 100, PAGE_WORDS + 125),
            (2 * PAGE_WORDS + 7, 2 * PAGE_WORDS + 8),
            (3 * PAGE_WORDS - 35, 3 * PAGE_WORDS + 10),
            (4 * PAGE_WORDS, 4 * PAGE_WORDS + 256),
        ];
        let mut w = 0;
        for &(d0, d1) in &dead {
            live.mark_range(w, d0);
            w = d1;
        }
        live.mark_range(w, words);
        assert_eq!(choose(&live.bits, words, 1.0), 1);
        // Page 2 (93 %) is paid for by pages 0, 1 and 3: 71 dead words in 4 pages (96.5 %).
        assert_eq!(choose(&live.bits, words, 0.95), 4);
        assert_eq!(choose(&live.bits, words, 0.97), 1);
        // Page 4 (50 %) would take the whole to 89.4 %.
        assert_eq!(choose(&live.bits, words, 0.9), 4);
        assert_eq!(choose(&live.bits, words, 0.85), 6);
        // Only whole pages in use count; the prefix ends on a page at least `t` live.
        assert_eq!(choose(&live.bits, words - 1, 0.85), 4);
        assert_eq!(choose(&live.bits, words - 1, 0.5), 5);

        let from = half.as_mut_ptr() as usize;
        // SAFETY: the vector is the half; nothing else reads it.
        let kept = unsafe { keep(&live, from, 4) };
        assert_eq!(
            kept,
            DensePrefix {
                pages: 4,
                dead_words: 25 + 1 + 45
            }
        );
        // Every word of the prefix is live now; the sparse page's gap is untouched.
        assert_eq!(live.bits.next_clear(0, 4 * PAGE_WORDS), 4 * PAGE_WORDS);
        assert!(!live.bits.get(4 * PAGE_WORDS));
        // Each gap is one filler, parseable as its gap exactly.
        let types = TypeRegistry::default();
        for &(d0, d1) in &dead[..3] {
            let h = Header(half[d0]);
            assert_eq!(h.type_id(), TypeId::FILLER);
            assert_eq!(types.size_words(h), Some(d1 - d0), "gap at {d0}");
        }
        assert_eq!(half[4 * PAGE_WORDS], 0x5a5a_5a5a, "beyond the prefix");
        // With the prefix all live, the rank of a prefix word is its index.
        live.compute_prefix(words.div_ceil(64) + 1);
        for w in [0, PAGE_WORDS + 100, 3 * PAGE_WORDS + 9, 4 * PAGE_WORDS] {
            assert_eq!(live.rank(w), w);
        }
    }

    #[test]
    fn black_pages_compact_to_their_own_page_offsets() {
        let words = 8 * PAGE_WORDS;
        let mut half = vec![0u64; words];
        let live = LiveWords::new(words + 64);
        let mark = Bitmap::new(words + 64);
        // Below the black boundary `lo`: live [0, 100), dead [100, 150), live [150, 600),
        // dead [600, 1100), live [1100, lo). Above it: live but for a 3-word gap at
        // 5 pages + 7 and a dead tail of 50 words (the gap reaching `hi`, left alone).
        let lo = 3 * PAGE_WORDS + 100;
        let tail = words - 50;
        for (a, b) in [
            (0, 100),
            (150, 600),
            (1100, 5 * PAGE_WORDS + 7),
            (5 * PAGE_WORDS + 10, tail),
        ] {
            live.mark_range(a, b);
        }
        let rank_lo = lo - 50 - 500;
        let from = half.as_mut_ptr() as usize;
        // SAFETY: the vector is the half; nothing else reads it.
        let runs = unsafe { align_runs(&live, &mark, from, lo, words, rank_lo) };
        // The gap [600, 1100) aligns (d = 50 at its start: 462 words stay dead, 38 become a
        // filler at its end); the 3-word gap above the boundary becomes a filler.
        assert_eq!(runs.headers, vec![1062, 5 * PAGE_WORDS + 7]);
        assert_eq!(runs.dead_words, 38 + 3);
        let types = TypeRegistry::default();
        for (&a, len) in runs.headers.iter().zip([38, 3]) {
            let h = Header(half[a]);
            assert_eq!(h.type_id(), TypeId::FILLER);
            assert_eq!(types.size_words(h), Some(len));
            assert!(mark.get(a));
        }
        live.compute_prefix(words.div_ceil(64) + 1);
        // Every page from the aligning gap's end on starts at a rank of the same page offset,
        // and pages 3 to 6 are fully live: destination pages of their own.
        for p in 3..8 {
            assert_eq!(live.rank(p * PAGE_WORDS) % PAGE_WORDS, 0, "page {p}");
        }
        for p in 3..7 {
            assert_eq!(
                live.bits.next_clear(p * PAGE_WORDS, (p + 1) * PAGE_WORDS),
                (p + 1) * PAGE_WORDS
            );
        }
        // The words left dead stay dead.
        assert!(!live.bits.get(600) && !live.bits.get(1061) && !live.bits.get(tail));
    }

    #[test]
    fn the_walk_skips_fully_live_chunks_and_stops_after_its_budget_of_gappy_ones() {
        const CW: usize = CHUNK_WORDS;
        // Chunk 0 and 2 fully live; chunk 1: a 700-word gap below the black boundary `lo`;
        // chunks 3 .. 3 + MAX_GAPPY_CHUNKS: one 3-word gap each, 7 words in; the last chunk
        // fully live.
        let last_gappy = 3 + MAX_GAPPY_CHUNKS - 1;
        let words = (last_gappy + 2) * CW;
        let mut half = vec![0u64; words];
        let live = LiveWords::new(words + 64);
        let mark = Bitmap::new(words + 64);
        let mut dead = vec![(CW + 1000, CW + 1700)];
        dead.extend((3..=last_gappy).map(|c| (c * CW + 7, c * CW + 10)));
        let mut w = 0;
        for &(d0, d1) in &dead {
            live.mark_range(w, d0);
            w = d1;
        }
        live.mark_range(w, words);
        let lo = CW + 5000;
        let bitmap_words = words.div_ceil(64) + 1;
        // As in the flip: the sums are computed before the walk (it reads the chunks' counts).
        live.finish_prefix(bitmap_words);
        let rank_lo = live.rank(lo);
        assert_eq!(rank_lo, lo - 700);
        let from = half.as_mut_ptr() as usize;
        // SAFETY: the vector is the half; nothing else reads it.
        let runs = unsafe { align_runs(&live, &mark, from, lo, words, rank_lo) };
        // The 700-word gap aligns (its last 700 mod 512 = 188 words a filler); chunk 2 is
        // skipped as fully live, not charged to the budget; chunk 1 and the next
        // MAX_GAPPY_CHUNKS - 1 gappy chunks get their fillers, the last gappy chunk none.
        let mut want = vec![CW + 1700 - 188];
        want.extend((3..last_gappy).map(|c| c * CW + 7));
        assert_eq!(runs.headers, want);
        assert_eq!(runs.dead_words, 188 + 3 * (MAX_GAPPY_CHUNKS - 1));
        assert!(!live.bits.get(last_gappy * CW + 7), "past the budget");
        live.finish_prefix(bitmap_words);
        // Every page from the aligning gap's end to the unfilled gap starts at a rank of the
        // same page offset.
        for p in (CW + 1700).div_ceil(PAGE_WORDS)..=last_gappy * CW / PAGE_WORDS {
            assert_eq!(live.rank(p * PAGE_WORDS) % PAGE_WORDS, 0, "page {p}");
        }
        // After it, the offsets are 3 words off (d = 3).
        let after = (last_gappy + 1) * CW;
        assert_eq!((after - live.rank(after)) % PAGE_WORDS, 3);
    }

    #[test]
    fn a_gap_that_already_aligns_gets_no_filler_and_its_next_word_is_untouched() {
        const SENTINEL: u64 = 0x5a5a_5a5a;
        let words = 4 * PAGE_WORDS;
        let mut half = vec![SENTINEL; words];
        let live = LiveWords::new(words + 64);
        let mark = Bitmap::new(words + 64);
        // Live [0, 1000), dead [1000, 1512) (one page: d is 0 again at its end), live from
        // 1512 on; the black boundary at 2000.
        live.mark_range(0, 1000);
        live.mark_range(1512, words);
        let lo = 2000;
        live.finish_prefix(words.div_ceil(64) + 1);
        let from = half.as_mut_ptr() as usize;
        // SAFETY: the vector is the half; nothing else reads it.
        let runs = unsafe { align_runs(&live, &mark, from, lo, words, lo - 512) };
        assert_eq!(runs, DenseRuns::default());
        assert!(half.iter().all(|&w| w == SENTINEL), "no word written");
        assert!(!mark.get(1512));
    }
}
