//! Side bitmaps over a space, one bit per word: the mark bitmap (a bit at each marked object's
//! header word) and the live-words bitmap (a bit at every word of every marked object), plus the
//! two-level prefix sums that turn the live-words bitmap into an O(1) new-address lookup.
//!
//! ```text
//!  bitmap word i covers heap words [64 i, 64 i + 64); chunk c covers bitmap words
//!  [1024 c, 1024 c + 1024) (512 KiB of heap)
//!  chunk[c]   = live words in chunks [0, c)
//!  block[i]   = live words in bitmap words [1024 (i / 1024), i)   (within i's chunk)
//!  rank(w)    = chunk[w / 2^16] + block[w / 64] + popcount(live[w / 64] & ((1 << (w % 64)) - 1))
//!  new(w)     = destination base + 8 * rank(w)
//! ```
//!
//! Invariants:
//! - bits are set with atomic `fetch_or`, so parallel markers may set them concurrently;
//!   live bits are set only through [`LiveWords::mark_range`] (or, with no marker running,
//!   [`LiveWords::mark_all_below`]), which flags the chunks it touches dirty after setting
//!   the bits; clearing happens while no marker runs;
//! - block sums of a chunk are valid while its dirty flag is clear; the chunk sums (and so
//!   `rank` and `select`) are valid only after [`LiveWords::finish_prefix`] (or
//!   [`LiveWords::compute_prefix`]) and until the next bit is set;
//! - prefix sums are 32-bit: a space holds at most 2^32 words (32 GiB; the heap configuration
//!   enforces it).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// An atomic bitmap with one bit per heap word.
#[derive(Debug)]
pub struct Bitmap {
    words: Vec<AtomicU64>,
}

impl Bitmap {
    /// A cleared bitmap for `bits` bits.
    pub fn new(bits: usize) -> Self {
        Bitmap {
            words: (0..bits.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    /// Number of bits.
    pub fn len_bits(&self) -> usize {
        self.words.len() * 64
    }
    /// Clear the bits of bitmap words `[0, upto_word)`.
    pub fn clear_words(&self, upto_word: usize) {
        for w in &self.words[..upto_word.min(self.words.len())] {
            w.store(0, Ordering::Relaxed);
        }
    }
    /// Clear everything.
    pub fn clear(&self) {
        self.clear_words(self.words.len());
    }
    /// Set bit `i`; returns whether it was clear before (the caller won the race).
    #[inline]
    pub fn set(&self, i: usize) -> bool {
        let m = 1u64 << (i % 64);
        self.words[i / 64].fetch_or(m, Ordering::AcqRel) & m == 0
    }
    /// Read bit `i`.
    #[inline]
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64].load(Ordering::Acquire) & (1 << (i % 64)) != 0
    }
    /// Set bits `[from, to)`.
    pub fn set_range(&self, from: usize, to: usize) {
        self.each_word_mask(from, to, |w, mask| {
            w.fetch_or(mask, Ordering::AcqRel);
        });
    }
    /// Clear bits `[from, to)`.
    pub fn clear_range(&self, from: usize, to: usize) {
        self.each_word_mask(from, to, |w, mask| {
            w.fetch_and(!mask, Ordering::AcqRel);
        });
    }
    /// `f(word, mask)` for each bitmap word that bits `[from, to)` touch, with the mask of
    /// those bits.
    fn each_word_mask(&self, from: usize, to: usize, f: impl Fn(&AtomicU64, u64)) {
        let mut i = from;
        while i < to {
            let word = i / 64;
            let lo = i % 64;
            let hi = (to - word * 64).min(64);
            let mask = if hi - lo == 64 {
                u64::MAX
            } else {
                ((1u64 << (hi - lo)) - 1) << lo
            };
            f(&self.words[word], mask);
            i = word * 64 + hi;
        }
    }
    /// Bitmap word `i`.
    #[inline]
    pub fn word(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Acquire)
    }
    /// Number of bitmap words.
    pub fn num_words(&self) -> usize {
        self.words.len()
    }
    /// The first set bit at or after `i`, below `limit`.
    #[inline]
    pub fn next_set(&self, i: usize, limit: usize) -> Option<usize> {
        if i >= limit {
            return None;
        }
        let mut word = i / 64;
        let mut bits = self.word(word) & (u64::MAX << (i % 64));
        loop {
            if bits != 0 {
                let found = word * 64 + bits.trailing_zeros() as usize;
                return (found < limit).then_some(found);
            }
            word += 1;
            if word * 64 >= limit || word >= self.words.len() {
                return None;
            }
            bits = self.word(word);
        }
    }
    /// The first clear bit at or after `i`, or `limit` if bits `[i, limit)` are all set (the
    /// end of a run of set bits: with the live-words bitmap, of a run of live words). Bits past
    /// the bitmap's end read as clear.
    #[inline]
    pub fn next_clear(&self, i: usize, limit: usize) -> usize {
        if i >= limit {
            return limit;
        }
        let mut word = i / 64;
        let mut bits = !self.word(word) & (u64::MAX << (i % 64));
        loop {
            if bits != 0 {
                return (word * 64 + bits.trailing_zeros() as usize).min(limit);
            }
            word += 1;
            if word * 64 >= limit {
                return limit;
            }
            if word >= self.words.len() {
                return word * 64;
            }
            bits = !self.word(word);
        }
    }
    /// The last set bit at or before `i`.
    pub fn prev_set(&self, i: usize) -> Option<usize> {
        let mut word = i / 64;
        let sh = 63 - (i % 64);
        let mut bits = (self.word(word) << sh) >> sh;
        loop {
            if bits != 0 {
                return Some(word * 64 + 63 - bits.leading_zeros() as usize);
            }
            if word == 0 {
                return None;
            }
            word -= 1;
            bits = self.word(word);
        }
    }
    /// Number of set bits in words `[0, upto_word)`.
    pub fn count_ones(&self, upto_word: usize) -> usize {
        self.words[..upto_word.min(self.words.len())]
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }
}

/// Heap words per chunk of the two-level prefix sums (512 KiB of heap).
pub const CHUNK_WORDS: usize = 1 << 16;
/// Bitmap words per chunk.
const CHUNK_BLOCKS: usize = CHUNK_WORDS / 64;

/// The live-words bitmap and its two-level prefix sums.
///
/// `block[i]` counts the live words of bitmap words `[start of i's chunk, i)`, and `chunk[c]`
/// the live words before chunk `c`. A chunk's block sums depend on that chunk's bits alone, so
/// after marking changes a few chunks only those are recomputed ([`Self::finish_prefix`]) and
/// the chunk sums redone (one entry per 512 KiB of heap): that is what lets the concurrent
/// collector plan before its pause ([`Self::plan_ahead`]) and only patch the plan inside it.
/// The sums are atomics (read with relaxed loads, as cheap as plain ones) so that planning
/// needs no exclusive borrow while markers hold the bitmap.
#[derive(Debug)]
pub struct LiveWords {
    /// One bit per live word.
    pub bits: Bitmap,
    block: Vec<AtomicU32>,
    chunk: Vec<AtomicUsize>,
    /// Live words of each chunk as of its last block computation.
    counts: Vec<AtomicUsize>,
    /// Whether bits of the chunk changed since its block sums were computed.
    dirty: Vec<AtomicBool>,
    /// The bound (in bitmap words) of the block sums computed so far (0: nothing computed).
    computed_words: AtomicUsize,
}

impl LiveWords {
    /// For a space of `words` words.
    pub fn new(words: usize) -> Self {
        let bits = Bitmap::new(words);
        let n = bits.num_words();
        let chunks = n.div_ceil(CHUNK_BLOCKS);
        LiveWords {
            bits,
            block: (0..n).map(|_| AtomicU32::new(0)).collect(),
            chunk: (0..chunks + 1).map(|_| AtomicUsize::new(0)).collect(),
            counts: (0..chunks).map(|_| AtomicUsize::new(0)).collect(),
            dirty: (0..chunks).map(|_| AtomicBool::new(true)).collect(),
            computed_words: AtomicUsize::new(0),
        }
    }

    /// Clear the bits of bitmap words `[0, upto_word)` and forget every computed sum (the start
    /// of a cycle's marking, while no marker runs).
    pub fn clear(&self, upto_word: usize) {
        self.bits.clear_words(upto_word);
        self.computed_words.store(0, Ordering::Relaxed);
    }

    /// Mark heap words `[from, to)` live. Markers call this (never `bits.set_range`), so that
    /// it may run concurrently with [`Self::plan_ahead`].
    #[inline]
    pub fn mark_range(&self, from: usize, to: usize) {
        if to <= from {
            return;
        }
        self.bits.set_range(from, to);
        // After the bits, with release: a planner whose swap (acquire) clears this store sees
        // the bits; one whose swap came earlier finds the flag set again.
        for d in &self.dirty[from / CHUNK_WORDS..=(to - 1) / CHUNK_WORDS] {
            d.store(true, Ordering::Release);
        }
    }

    /// Mark every word below `to` (a multiple of 64) live, with one plain store per bitmap word
    /// (the stop-the-world slide's dense prefix, whose dead gaps become fillers: no marker
    /// runs then); the chunks are flagged dirty as [`Self::mark_range`] flags them.
    pub fn mark_all_below(&self, to: usize) {
        debug_assert_eq!(to % 64, 0);
        if to == 0 {
            return;
        }
        for w in &self.bits.words[..to / 64] {
            w.store(u64::MAX, Ordering::Relaxed);
        }
        for d in &self.dirty[..=(to - 1) / CHUNK_WORDS] {
            d.store(true, Ordering::Release);
        }
    }

    /// Compute the block sums of chunk `c` over bitmap words below `n`; record its count.
    fn compute_chunk(&self, c: usize, n: usize) {
        self.dirty[c].swap(false, Ordering::Acquire);
        let lo = c * CHUNK_BLOCKS;
        let hi = ((c + 1) * CHUNK_BLOCKS).min(n);
        let mut sum = 0u32;
        for i in lo..hi {
            self.block[i].store(sum, Ordering::Relaxed);
            sum += self.bits.word(i).count_ones();
        }
        self.counts[c].store(sum as usize, Ordering::Relaxed);
    }

    /// Bring the block sums up to date over bitmap words `[0, n)`: every chunk that is dirty,
    /// new, or was cut short by the previous bound. Returns the number of chunks computed.
    fn refresh(&self, n: usize) -> usize {
        let done = self.computed_words.load(Ordering::Relaxed);
        let cut = if done == n { usize::MAX } else { done.min(n) };
        let mut redone = 0;
        for c in 0..n.div_ceil(CHUNK_BLOCKS) {
            if (c + 1) * CHUNK_BLOCKS > cut || self.dirty[c].load(Ordering::Acquire) {
                self.compute_chunk(c, n);
                redone += 1;
            }
        }
        self.computed_words.store(n, Ordering::Relaxed);
        redone
    }

    /// Chunk prefix sums from the per-chunk counts; returns the total live words.
    fn chunk_sums(&self, n: usize) -> usize {
        let chunks = n.div_ceil(CHUNK_BLOCKS);
        let mut sum = 0usize;
        for c in 0..chunks {
            self.chunk[c].store(sum, Ordering::Relaxed);
            sum += self.counts[c].load(Ordering::Relaxed);
        }
        for p in &self.chunk[chunks..] {
            p.store(sum, Ordering::Relaxed);
        }
        sum
    }

    fn bound(&self, upto_word: usize) -> usize {
        upto_word.min(self.bits.num_words())
    }

    /// Compute the prefix sums over bitmap words `[0, upto_word)` from scratch; returns total
    /// live words. With no marker running, the sums stay valid until the next bit is set.
    pub fn compute_prefix(&self, upto_word: usize) -> usize {
        self.computed_words.store(0, Ordering::Relaxed);
        self.finish_prefix(upto_word).0
    }

    /// Plan ahead (concurrently with markers): compute the block sums of every chunk over
    /// `[0, upto_word)` that needs it, and return the live words counted so far (a lower bound
    /// of the final total: bits are only ever set within a cycle).
    pub fn plan_ahead(&self, upto_word: usize) -> usize {
        let n = self.bound(upto_word);
        self.refresh(n);
        (0..n.div_ceil(CHUNK_BLOCKS))
            .map(|c| self.counts[c].load(Ordering::Relaxed))
            .sum()
    }

    /// Finish the prefix sums over `[0, upto_word)` with no marker running: recompute only the
    /// chunks whose bits changed since [`Self::plan_ahead`] (or that it did not cover), then
    /// the chunk sums. Returns (total live words, chunks recomputed).
    pub fn finish_prefix(&self, upto_word: usize) -> (usize, usize) {
        let n = self.bound(upto_word);
        let redone = self.refresh(n);
        (self.chunk_sums(n), redone)
    }

    /// Live words before bitmap word `i` (valid after [`Self::finish_prefix`]).
    #[inline]
    fn prefix_at(&self, i: usize) -> usize {
        self.chunk[i / CHUNK_BLOCKS].load(Ordering::Relaxed)
            + self.block[i].load(Ordering::Relaxed) as usize
    }

    /// The live word of rank `r` (the `r`-th live word, 0-based), if there are more than `r`;
    /// valid over the words covered by the last [`Self::finish_prefix`]. O(log n).
    pub fn select(&self, r: usize, upto_word: usize) -> Option<usize> {
        let n = self.bound(upto_word);
        if n == 0 {
            return None;
        }
        let chunks = n.div_ceil(CHUNK_BLOCKS);
        let c = self.chunk[..chunks]
            .partition_point(|p| p.load(Ordering::Relaxed) <= r)
            .checked_sub(1)?;
        let in_chunk = r - self.chunk[c].load(Ordering::Relaxed);
        let lo = c * CHUNK_BLOCKS;
        let hi = ((c + 1) * CHUNK_BLOCKS).min(n);
        let i = lo
            + self.block[lo..hi]
                .partition_point(|p| p.load(Ordering::Relaxed) as usize <= in_chunk)
                .checked_sub(1)?;
        let mut bits = self.bits.word(i);
        let mut k = in_chunk - self.block[i].load(Ordering::Relaxed) as usize;
        if k >= bits.count_ones() as usize {
            return None;
        }
        while k > 0 {
            bits &= bits - 1;
            k -= 1;
        }
        Some(i * 64 + bits.trailing_zeros() as usize)
    }

    /// Call `f(k, w)` with the live word `w` of rank `k * step`, for every `k` with
    /// `k * step < total`: one linear pass over the bitmap (O(words + calls)), for building
    /// per-page tables after [`Self::finish_prefix`].
    pub fn select_every(
        &self,
        step: usize,
        total: usize,
        upto_word: usize,
        mut f: impl FnMut(usize, usize),
    ) {
        let n = self.bound(upto_word);
        let mut i = 0;
        let mut k = 0;
        while k * step < total {
            let r = k * step;
            while i + 1 < n && self.prefix_at(i + 1) <= r {
                i += 1;
            }
            let mut bits = self.bits.word(i);
            for _ in 0..r - self.prefix_at(i) {
                bits &= bits - 1;
            }
            f(k, i * 64 + bits.trailing_zeros() as usize);
            k += 1;
        }
    }

    /// The tables [`Self::rank`] reads, as a value ([`Ranker`]).
    #[inline]
    pub fn ranker(&self) -> Ranker<'_> {
        Ranker {
            bits: &self.bits.words,
            block: &self.block,
            chunk: &self.chunk,
        }
    }

    /// Rank of word `w`: the live words before it. O(1).
    #[inline]
    pub fn rank(&self, w: usize) -> usize {
        let i = w / 64;
        let below = self.bits.word(i) & ((1u64 << (w % 64)) - 1);
        self.prefix_at(i) + below.count_ones() as usize
    }
}

/// [`LiveWords::rank`] over slices held by value: for loops that also write memory through raw
/// pointers, where the compiler must otherwise reload a `&LiveWords`'s vectors after every
/// write (it cannot prove the write missed them). Valid while the `LiveWords` is (same
/// conditions as `rank`).
#[derive(Clone, Copy, Debug)]
pub struct Ranker<'a> {
    bits: &'a [AtomicU64],
    block: &'a [AtomicU32],
    chunk: &'a [AtomicUsize],
}

impl Ranker<'_> {
    /// Rank of word `w` (as [`LiveWords::rank`]).
    #[inline]
    pub fn rank(self, w: usize) -> usize {
        let i = w / 64;
        let below = self.bits[i].load(Ordering::Relaxed) & ((1u64 << (w % 64)) - 1);
        self.chunk[i / CHUNK_BLOCKS].load(Ordering::Relaxed)
            + self.block[i].load(Ordering::Relaxed) as usize
            + below.count_ones() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_range_and_rank() {
        let lw = LiveWords::new(1000);
        lw.mark_range(3, 7);
        lw.mark_range(60, 130);
        lw.mark_range(200, 201);
        let total = lw.compute_prefix(lw.bits.num_words());
        assert_eq!(total, 4 + 70 + 1);
        assert_eq!(lw.rank(3), 0);
        assert_eq!(lw.rank(60), 4);
        assert_eq!(lw.rank(64), 8);
        assert_eq!(lw.rank(128), 4 + 68);
        assert_eq!(lw.rank(200), 74);
        for w in 0..1000 {
            assert_eq!(lw.ranker().rank(w), lw.rank(w));
        }
        let n = lw.bits.num_words();
        for w in [3, 6, 60, 64, 100, 129, 200] {
            assert_eq!(lw.select(lw.rank(w), n), Some(w), "select(rank({w}))");
        }
        assert_eq!(lw.select(75, n), None);
        let mut got = vec![];
        lw.select_every(10, total, n, |k, w| got.push((k, w)));
        let want: Vec<_> = (0..8).map(|k| (k, lw.select(k * 10, n).unwrap())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn clear_range_clears_exactly_the_range() {
        let b = Bitmap::new(300);
        b.set_range(0, 300);
        b.clear_range(5, 5);
        b.clear_range(60, 200);
        for i in 0..300 {
            assert_eq!(b.get(i), !(60..200).contains(&i), "bit {i}");
        }
        b.clear_range(0, 300);
        assert_eq!(b.count_ones(b.num_words()), 0);
    }

    /// Naive rank over the bits.
    fn naive_rank(lw: &LiveWords, w: usize) -> usize {
        (0..w).filter(|&i| lw.bits.get(i)).count()
    }

    #[test]
    fn planning_ahead_then_patching_matches_a_full_computation() {
        // 5 chunks; marks before planning, marks after it in a few chunks (including words
        // above the bound planned ahead), then finish: every rank and select must agree with
        // a from-scratch computation.
        let words = 5 * CHUNK_WORDS;
        let lw = LiveWords::new(words);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = |m: usize| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        };
        for _ in 0..3000 {
            let a = rnd(3 * CHUNK_WORDS);
            lw.mark_range(a, (a + 1 + rnd(40)).min(3 * CHUNK_WORDS));
        }
        let planned_bound = (3 * CHUNK_WORDS) / 64 + 1;
        let ahead = lw.plan_ahead(planned_bound);
        assert_eq!(ahead, naive_rank(&lw, 3 * CHUNK_WORDS));
        // Later marks: one object in chunk 1, a run straddling chunks 2 and 3, black objects
        // above the planned bound.
        lw.mark_range(CHUNK_WORDS + 17, CHUNK_WORDS + 20);
        lw.mark_range(3 * CHUNK_WORDS - 5, 3 * CHUNK_WORDS + 9);
        lw.mark_range(4 * CHUNK_WORDS + 100, 4 * CHUNK_WORDS + 300);
        let bound = words / 64;
        let (total, redone) = lw.finish_prefix(bound);
        // Chunk 0 and 4's untouched neighbours are not redone; chunks 1, 2, 3 (dirty, cut short,
        // new) and 4 are.
        assert_eq!(redone, 4, "only the changed and new chunks are recomputed");
        assert_eq!(total, naive_rank(&lw, words));
        let fresh = LiveWords::new(words);
        for i in 0..words {
            if lw.bits.get(i) {
                fresh.mark_range(i, i + 1);
            }
        }
        assert_eq!(fresh.compute_prefix(bound), total);
        for _ in 0..20_000 {
            let w = rnd(words);
            assert_eq!(lw.rank(w), fresh.rank(w), "rank({w})");
        }
        for r in (0..total).step_by(97).chain([0, total - 1]) {
            assert_eq!(lw.select(r, bound), fresh.select(r, bound), "select({r})");
            let w = lw.select(r, bound).unwrap();
            assert_eq!(lw.rank(w), r);
        }
        assert_eq!(lw.select(total, bound), None);
        // A second finish with nothing changed recomputes nothing.
        assert_eq!(lw.finish_prefix(bound), (total, 0));
    }

    #[test]
    fn next_and_prev_set() {
        let b = Bitmap::new(300);
        assert!(b.set(5));
        assert!(!b.set(5));
        b.set(130);
        assert_eq!(b.next_set(0, 300), Some(5));
        assert_eq!(b.next_set(6, 300), Some(130));
        assert_eq!(b.next_set(6, 130), None);
        assert_eq!(b.prev_set(129), Some(5));
        assert_eq!(b.prev_set(130), Some(130));
        assert_eq!(b.prev_set(4), None);
        assert_eq!(b.count_ones(b.num_words()), 2);
        assert_eq!(b.next_clear(5, 300), 6);
        assert_eq!(b.next_clear(4, 300), 4);
        b.set_range(60, 200);
        assert_eq!(b.next_clear(60, 300), 200);
        assert_eq!(b.next_clear(63, 150), 150);
        assert_eq!(b.next_clear(150, 150), 150);
        b.set_range(200, 320);
        assert_eq!(b.next_clear(70, 1000), 320);
    }
}
