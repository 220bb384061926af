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
//! Only the slide uses it: it compacts within one half, so words left in place cost nothing
//! but the dead bytes they keep (the fragmentation, [`crate::CycleStats::dense_dead_bytes`],
//! bounded by `1 - t` of the prefix). A compaction into the other half would have to keep the
//! prefix's pages in the old half (as pinned objects are) and is not done.
//!
//! Invariants:
//! - it runs with the world stopped, after marking (the mark bitmap names exactly the live
//!   objects) and before the plan's prefix sums are computed ([`choose`] reads the live-words
//!   bitmap; [`keep`] adds the gaps to it, flagging their chunks for recomputation);
//! - [`keep`] writes only dead words of the prefix (the first word of each gap), which no
//!   reference reaches: nothing reads a dead object after marking (weak references, identity
//!   hashes and finalization go by the mark bitmap, which it does not change);
//! - the prefix ends on a page boundary at or below the used end of the half: a filler
//!   covers a gap only up to it, and the words after it are the slide's.

use faultline_heap::bitmap::{Bitmap, LiveWords};
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
}
