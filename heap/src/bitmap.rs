//! Side bitmaps over a space, one bit per word: the mark bitmap (a bit at each marked object's
//! header word) and the live-words bitmap (a bit at every word of every marked object), plus the
//! three-level prefix sums that turn the live-words bitmap into an O(1) new-address lookup.
//!
//! ```text
//!  bitmap word i covers heap words [64 i, 64 i + 64); chunk c covers bitmap words
//!  [1024 c, 1024 c + 1024) (512 KiB of heap); group g covers chunks [64 g, 64 g + 64)
//!  (32 MiB of heap)
//!  group[g]   = live words in groups [0, g)
//!  chunk[c]   = live words in chunks [64 (c / 64), c)          (within c's group)
//!  block[i]   = live words in bitmap words [1024 (i / 1024), i)   (within i's chunk)
//!  rank(w)    = group[w / 2^22] + chunk[w / 2^16] + block[w / 64]
//!               + popcount(live[w / 64] & ((1 << (w % 64)) - 1))
//!  new(w)     = destination base + 8 * rank(w)
//! ```
//!
//! Invariants:
//! - bits are set with atomic `fetch_or`, so parallel markers may set them concurrently;
//!   live bits are set only through [`LiveWords::mark_range`] (or, with no marker running,
//!   [`LiveWords::mark_all_below`]), which flags the chunks it touches dirty after setting
//!   the bits; clearing happens while no marker runs;
//! - a chunk's dirty flag is set (release) after its bits, and its group's dirty flag after
//!   that; a planner clears a group's flag (acquire) before it reads the chunk flags of the
//!   group, and a chunk's flag before it reads the chunk's bits, so whatever a planner missed
//!   leaves a flag set;
//! - block sums of a chunk are valid while its dirty flag is clear, the in-group chunk sums of
//!   a group while its flag is clear; the group sums (and so `rank` and `select`) are valid
//!   only after [`LiveWords::finish_prefix`] (or [`LiveWords::compute_prefix`]) and until the
//!   next bit is set;
//! - [`LiveWords::finish_prefix`] after [`LiveWords::plan_ahead`] over the same bound costs
//!   O(groups + changed chunks): it visits one flag per group (32 MiB of heap) and recomputes
//!   only the chunks (and the in-group sums of the groups) whose bits changed;
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
        self.set_bits(i / 64, 1 << (i % 64)) != 0
    }
    /// Set the bits of `mask` in bitmap word `word` (bits `[64 word, 64 word + 64)`) with one
    /// `fetch_or`; returns those of them that were clear before (the ones this call set).
    #[inline]
    pub fn set_bits(&self, word: usize, mask: u64) -> u64 {
        mask & !self.words[word].fetch_or(mask, Ordering::AcqRel)
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
        self.prev_with(i, 0)
    }
    /// The last clear bit at or before `i`.
    pub fn prev_clear(&self, i: usize) -> Option<usize> {
        self.prev_with(i, u64::MAX)
    }
    /// The last clear bit at or before `i` and at or above `floor`: a scan that reads no
    /// bitmap word below `floor`'s.
    pub fn prev_clear_above(&self, i: usize, floor: usize) -> Option<usize> {
        self.prev_with_above(i, u64::MAX, floor)
    }
    /// The last bit at or before `i` that is set once the words are XORed with `flip`.
    #[inline]
    fn prev_with(&self, i: usize, flip: u64) -> Option<usize> {
        self.prev_with_above(i, flip, 0)
    }
    /// [`Self::prev_with`], at or above `floor` only.
    #[inline]
    fn prev_with_above(&self, i: usize, flip: u64, floor: usize) -> Option<usize> {
        let mut word = i / 64;
        let sh = 63 - (i % 64);
        let mut bits = ((self.word(word) ^ flip) << sh) >> sh;
        loop {
            if bits != 0 {
                let found = word * 64 + 63 - bits.leading_zeros() as usize;
                return (found >= floor).then_some(found);
            }
            if word <= floor / 64 {
                return None;
            }
            word -= 1;
            bits = self.word(word) ^ flip;
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
/// Chunks per group of the three-level prefix sums (32 MiB of heap).
const GROUP_CHUNKS: usize = 64;
/// Heap words per group.
const GROUP_WORDS: usize = GROUP_CHUNKS * CHUNK_WORDS;
/// Bitmap words per group.
const GROUP_BLOCKS: usize = GROUP_CHUNKS * CHUNK_BLOCKS;

/// The live-words bitmap and its two-level prefix sums.
///
/// `block[i]` counts the live words of bitmap words `[start of i's chunk, i)`, `chunk[c]` the
/// live words of chunks `[start of c's group, c)`, and `group[g]` the live words before group
/// `g`. A chunk's block sums depend on that chunk's bits alone, a group's chunk sums on that
/// group's chunks alone, so after marking changes a few chunks only those and their groups'
/// chunk sums are recomputed ([`Self::finish_prefix`]), and the group sums redone (one entry
/// per 32 MiB of heap): that is what lets the concurrent collector plan before its pause
/// ([`Self::plan_ahead`]) and only patch the plan inside it, in time that does not grow with
/// the heap's live chunks.
/// The sums are atomics (read with relaxed loads, as cheap as plain ones) so that planning
/// needs no exclusive borrow while markers hold the bitmap.
#[derive(Debug)]
pub struct LiveWords {
    /// One bit per live word.
    pub bits: Bitmap,
    block: Vec<AtomicU32>,
    /// In-group chunk sums (at most 2^22: fit 32 bits).
    chunk: Vec<AtomicU32>,
    group: Vec<AtomicUsize>,
    /// Live words of each chunk as of its last block computation.
    counts: Vec<AtomicUsize>,
    /// Live words of each group as of its last chunk-sum computation.
    group_counts: Vec<AtomicUsize>,
    /// Whether bits of the chunk changed since its block sums were computed.
    dirty: Vec<AtomicBool>,
    /// Whether a chunk of the group was flagged dirty since the group was last visited.
    group_dirty: Vec<AtomicBool>,
    /// The bound (in bitmap words) of the block sums computed so far (0: nothing computed).
    computed_words: AtomicUsize,
}

impl LiveWords {
    /// For a space of `words` words.
    pub fn new(words: usize) -> Self {
        let bits = Bitmap::new(words);
        let n = bits.num_words();
        let chunks = n.div_ceil(CHUNK_BLOCKS);
        // (Index `chunks` is valid in `chunk`, so its group in the group tables.)
        let groups = chunks / GROUP_CHUNKS + 1;
        LiveWords {
            bits,
            block: (0..n).map(|_| AtomicU32::new(0)).collect(),
            chunk: (0..chunks + 1).map(|_| AtomicU32::new(0)).collect(),
            group: (0..groups + 1).map(|_| AtomicUsize::new(0)).collect(),
            counts: (0..chunks).map(|_| AtomicUsize::new(0)).collect(),
            group_counts: (0..groups).map(|_| AtomicUsize::new(0)).collect(),
            dirty: (0..chunks).map(|_| AtomicBool::new(true)).collect(),
            group_dirty: (0..groups).map(|_| AtomicBool::new(true)).collect(),
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
        // Then the group's (a planner clears it before it reads the chunks' flags).
        for d in &self.group_dirty[from / GROUP_WORDS..=(to - 1) / GROUP_WORDS] {
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
        for d in &self.group_dirty[..=(to - 1) / GROUP_WORDS] {
            d.store(true, Ordering::Release);
        }
    }

    /// Whether every word of the chunk holding heap word `w` is live, as its last block-sum
    /// computation counted it: only when that computation covered the whole chunk and no bit
    /// of it was set since (its flag is clear). O(1); after [`Self::finish_prefix`] with no
    /// marker running, it answers for every chunk below the bound (a chunk reported full has
    /// no clear bit: bits are never cleared between a computation and the next `clear`).
    pub fn chunk_full(&self, w: usize) -> bool {
        let c = w / CHUNK_WORDS;
        c < self.counts.len()
            && (c + 1) * CHUNK_BLOCKS <= self.computed_words.load(Ordering::Relaxed)
            && !self.dirty[c].load(Ordering::Acquire)
            && self.counts[c].load(Ordering::Relaxed) == CHUNK_WORDS
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

    /// Bring the block and in-group chunk sums up to date over bitmap words `[0, n)`: every
    /// chunk that is dirty, new, or was cut short by the previous bound, found through the
    /// groups' flags (one per 32 MiB: a clean group is skipped whole). Returns the number of
    /// chunks computed.
    fn refresh(&self, n: usize) -> usize {
        let done = self.computed_words.load(Ordering::Relaxed);
        let chunks = n.div_ceil(CHUNK_BLOCKS);
        let groups = chunks.div_ceil(GROUP_CHUNKS);
        // Chunks from `forced` on are recomputed whatever their flags: those not covered (or
        // cut short) by the previous bound. A changed bound also redoes the last group's
        // chunk sums (its count must cover exactly the chunks below the bound).
        let forced = if done == n {
            chunks
        } else {
            done.min(n) / CHUNK_BLOCKS
        };
        let mut redone = 0;
        for g in 0..groups {
            let lo = g * GROUP_CHUNKS;
            let hi = (lo + GROUP_CHUNKS).min(chunks);
            // (A relaxed look first: a clean group costs no write. A set flag read late is
            // still set at the next refresh; the pause's refresh runs with every marker's
            // stores visible.)
            let flagged = self.group_dirty[g].load(Ordering::Relaxed)
                && self.group_dirty[g].swap(false, Ordering::Acquire);
            if !flagged && hi <= forced && !(done != n && g + 1 == groups) {
                continue;
            }
            for c in lo..hi {
                if c >= forced || self.dirty[c].load(Ordering::Acquire) {
                    self.compute_chunk(c, n);
                    redone += 1;
                }
            }
            self.group_sums(g, chunks);
        }
        self.computed_words.store(n, Ordering::Relaxed);
        redone
    }

    /// The in-group chunk sums of group `g` from its chunks' counts (chunks at or above
    /// `chunks`, past the bound, count nothing); records the group's count.
    fn group_sums(&self, g: usize, chunks: usize) {
        let lo = g * GROUP_CHUNKS;
        let hi = (lo + GROUP_CHUNKS).min(self.chunk.len());
        let mut sum = 0usize;
        for c in lo..hi {
            self.chunk[c].store(sum as u32, Ordering::Relaxed);
            if c < chunks {
                sum += self.counts[c].load(Ordering::Relaxed);
            }
        }
        self.group_counts[g].store(sum, Ordering::Relaxed);
    }

    /// Group prefix sums from the per-group counts over bitmap words `[0, n)`; returns the
    /// total live words. O(groups).
    fn group_prefix(&self, n: usize) -> usize {
        let groups = n.div_ceil(GROUP_BLOCKS);
        let mut sum = 0usize;
        for g in 0..groups {
            self.group[g].store(sum, Ordering::Relaxed);
            sum += self.group_counts[g].load(Ordering::Relaxed);
        }
        for p in &self.group[groups..] {
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
        (0..n.div_ceil(GROUP_BLOCKS))
            .map(|g| self.group_counts[g].load(Ordering::Relaxed))
            .sum()
    }

    /// Finish the prefix sums over `[0, upto_word)` with no marker running: recompute only the
    /// chunks whose bits changed since [`Self::plan_ahead`] (or that it did not cover) and
    /// their groups' chunk sums, then the group sums. Returns (total live words, chunks
    /// recomputed).
    pub fn finish_prefix(&self, upto_word: usize) -> (usize, usize) {
        let n = self.bound(upto_word);
        let redone = self.refresh(n);
        (self.group_prefix(n), redone)
    }

    /// Live words before bitmap word `i` (valid after [`Self::finish_prefix`]).
    #[inline]
    fn prefix_at(&self, i: usize) -> usize {
        self.group[i / GROUP_BLOCKS].load(Ordering::Relaxed)
            + self.chunk[i / CHUNK_BLOCKS].load(Ordering::Relaxed) as usize
            + self.block[i].load(Ordering::Relaxed) as usize
    }

    /// The live word of rank `r` (the `r`-th live word, 0-based), if there are more than `r`;
    /// valid over the words covered by the last [`Self::finish_prefix`]. O(log n); the
    /// search among a chunk's block sums starts where the chunk's density puts the word
    /// (`block_at_or_below`), so a cold call touches a few cache lines there instead
    /// of a binary search's path through 4 KiB of sums (a compaction fault's first lookup).
    pub fn select(&self, r: usize, upto_word: usize) -> Option<usize> {
        let n = self.bound(upto_word);
        if n == 0 {
            return None;
        }
        let chunks = n.div_ceil(CHUNK_BLOCKS);
        let groups = chunks.div_ceil(GROUP_CHUNKS);
        let g = self.group[..groups]
            .partition_point(|p| p.load(Ordering::Relaxed) <= r)
            .checked_sub(1)?;
        let in_group = r - self.group[g].load(Ordering::Relaxed);
        let first = g * GROUP_CHUNKS;
        let last = (first + GROUP_CHUNKS).min(chunks);
        let c = first
            + self.chunk[first..last]
                .partition_point(|p| p.load(Ordering::Relaxed) as usize <= in_group)
                .checked_sub(1)?;
        let in_chunk = in_group - self.chunk[c].load(Ordering::Relaxed) as usize;
        let lo = c * CHUNK_BLOCKS;
        let hi = ((c + 1) * CHUNK_BLOCKS).min(n);
        let i = self.block_at_or_below(lo, hi, in_chunk, self.counts[c].load(Ordering::Relaxed));
        let bits = self.bits.word(i);
        let k = in_chunk - self.block[i].load(Ordering::Relaxed) as usize;
        if k >= bits.count_ones() as usize {
            return None;
        }
        Some(i * 64 + select_in_word(bits, k))
    }

    /// The last bitmap word `i` in `[lo, hi)` (one chunk's) whose block sum is at most `x`.
    /// The first guess is where `x` falls if the chunk's `total` live words were spread
    /// evenly; from there the search gallops (steps 1, 2, 4, ...) to a bracket and halves it.
    /// Correct whatever `total` says (it only places the guess): `block[lo]` is 0 and the
    /// sums never decrease.
    fn block_at_or_below(&self, lo: usize, hi: usize, x: usize, total: usize) -> usize {
        let b = |i: usize| self.block[i].load(Ordering::Relaxed) as usize;
        let span = hi - lo;
        // (`x` is clamped: a rank past the chunk's words, which finds nothing, must not
        // overflow the product.)
        let guess = lo
            + (x.min(total) * span)
                .checked_div(total)
                .unwrap_or(0)
                .min(span - 1);
        // Bracket: b(a) <= x, and z == hi or b(z) > x.
        let (mut a, mut z);
        if b(guess) <= x {
            a = guess;
            let mut step = 1;
            loop {
                let t = a + step;
                if t >= hi {
                    z = hi;
                    break;
                }
                if b(t) > x {
                    z = t;
                    break;
                }
                a = t;
                step *= 2;
            }
        } else {
            z = guess;
            let mut step = 1;
            loop {
                // b(lo) == 0 <= x: this ends at lo at the latest.
                let t = z.saturating_sub(step).max(lo);
                if b(t) <= x {
                    a = t;
                    break;
                }
                z = t;
                step *= 2;
            }
        }
        while z - a > 1 {
            let m = a + (z - a) / 2;
            if b(m) <= x {
                a = m;
            } else {
                z = m;
            }
        }
        a
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
            f(
                k,
                i * 64 + select_in_word(self.bits.word(i), r - self.prefix_at(i)),
            );
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
            group: &self.group,
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

/// The position of the set bit of rank `k` in `bits` (`k < bits.count_ones()`): halves,
/// quarters and bytes are skipped by their counts, then at most 7 bits are cleared.
#[inline]
fn select_in_word(mut bits: u64, mut k: usize) -> usize {
    let mut base = 0;
    for width in [32, 16, 8] {
        let below = (bits & ((1u64 << width) - 1)).count_ones() as usize;
        if k >= below {
            k -= below;
            bits >>= width;
            base += width;
        }
    }
    for _ in 0..k {
        bits &= bits - 1;
    }
    base + bits.trailing_zeros() as usize
}

/// [`LiveWords::rank`] over slices held by value: for loops that also write memory through raw
/// pointers, where the compiler must otherwise reload a `&LiveWords`'s vectors after every
/// write (it cannot prove the write missed them). Valid while the `LiveWords` is (same
/// conditions as `rank`).
#[derive(Clone, Copy, Debug)]
pub struct Ranker<'a> {
    bits: &'a [AtomicU64],
    block: &'a [AtomicU32],
    chunk: &'a [AtomicU32],
    group: &'a [AtomicUsize],
}

impl Ranker<'_> {
    /// Rank of word `w` (as [`LiveWords::rank`]).
    #[inline]
    pub fn rank(self, w: usize) -> usize {
        let i = w / 64;
        let below = self.bits[i].load(Ordering::Relaxed) & ((1u64 << (w % 64)) - 1);
        self.group[i / GROUP_BLOCKS].load(Ordering::Relaxed)
            + self.chunk[i / CHUNK_BLOCKS].load(Ordering::Relaxed) as usize
            + self.block[i].load(Ordering::Relaxed) as usize
            + below.count_ones() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift64 generator from `seed` (non-zero): `rnd(m)` is in `[0, m)`.
    fn xorshift(seed: u64) -> impl FnMut(usize) -> usize {
        let mut x = seed;
        move |m| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % m as u64) as usize
        }
    }

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

    /// `select` finds every live word, in chunks whose live words are spread evenly, packed
    /// at either end, or clustered: the density only places its first guess.
    #[test]
    fn select_finds_every_live_word_whatever_the_spread() {
        let words = 3 * CHUNK_WORDS + 777;
        let shapes: [&dyn Fn(usize) -> bool; 5] = [
            &|w| w % 3 == 0,
            &|w| w % CHUNK_WORDS < 40,
            &|w| w % CHUNK_WORDS > CHUNK_WORDS - 90,
            &|w| (w / 640) % 7 == 0 && w % 5 != 0,
            &|w| w % 64 == 63 || (w % CHUNK_WORDS > 30_000 && w % CHUNK_WORDS < 30_070),
        ];
        for (si, shape) in shapes.iter().enumerate() {
            let lw = LiveWords::new(words);
            let live: Vec<usize> = (0..words).filter(|&w| shape(w)).collect();
            for &w in &live {
                lw.mark_range(w, w + 1);
            }
            let n = lw.bits.num_words();
            let total = lw.compute_prefix(n);
            assert_eq!(total, live.len(), "shape {si}");
            for (r, &w) in live.iter().enumerate() {
                assert_eq!(lw.select(r, n), Some(w), "shape {si}: select({r})");
            }
            assert_eq!(lw.select(total, n), None, "shape {si}");
            assert_eq!(lw.select(usize::MAX / 2, n), None, "shape {si}");
        }
    }

    #[test]
    fn select_in_word_finds_the_bit_of_each_rank() {
        let mut rnd = xorshift(0x5e1ec7);
        for i in 0..2000 {
            let bits = match i {
                0 => u64::MAX,
                1 => 1 << 63,
                2 => 1,
                _ => (rnd(1 << 32) as u64) << 32 | rnd(1 << 32) as u64,
            };
            let set: Vec<usize> = (0..64).filter(|b| bits >> b & 1 == 1).collect();
            for (k, &b) in set.iter().enumerate() {
                assert_eq!(select_in_word(bits, k), b, "{bits:#x} rank {k}");
            }
        }
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
        let mut rnd = xorshift(0x9e37_79b9_7f4a_7c15);
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

    /// A from-scratch computation over the same bits.
    fn fresh_copy(lw: &LiveWords, words: usize, bound: usize) -> (LiveWords, usize) {
        let fresh = LiveWords::new(words);
        for i in 0..lw.bits.num_words() {
            fresh.bits.words[i].store(lw.bits.word(i), Ordering::Relaxed);
        }
        let total = fresh.compute_prefix(bound);
        (fresh, total)
    }

    /// Every rank at bitmap-word boundaries and at random words, and selects, against `fresh`.
    fn assert_agree(lw: &LiveWords, fresh: &LiveWords, words: usize, bound: usize, seed: u64) {
        let mut rnd = xorshift(seed);
        let limit = (bound * 64).min(words);
        for i in 0..limit / 64 {
            assert_eq!(lw.rank(i * 64), fresh.rank(i * 64), "rank at word {i}");
        }
        for _ in 0..20_000 {
            let w = rnd(limit);
            assert_eq!(lw.rank(w), fresh.rank(w), "rank({w})");
            assert_eq!(lw.ranker().rank(w), fresh.rank(w), "ranker({w})");
        }
        let total = fresh.rank(limit - 1) + usize::from(fresh.bits.get(limit - 1));
        if total > 0 {
            for r in (0..total).step_by(total / 5000 + 1).chain([0, total - 1]) {
                let w = lw.select(r, bound);
                assert_eq!(w, fresh.select(r, bound), "select({r})");
                assert_eq!(lw.rank(w.expect("a live word")), r);
            }
        }
        assert_eq!(lw.select(total, bound), None);
        let (mut a, mut b) = (vec![], vec![]);
        lw.select_every(4099, total, bound, |k, w| a.push((k, w)));
        fresh.select_every(4099, total, bound, |k, w| b.push((k, w)));
        assert_eq!(a, b, "select_every");
    }

    #[test]
    fn patching_groups_after_random_changes_matches_a_full_computation() {
        // Three groups and a bit (the last group partial); rounds of random marks, planning
        // ahead, more marks (before the first changed chunk, in the last chunk, across a
        // group boundary, above the planned bound), then finishing: each time rank, select and
        // select_every must equal a from-scratch computation, and only changed or new chunks
        // are recomputed.
        let words = 3 * GROUP_WORDS + 5 * CHUNK_WORDS + 1000;
        let bound = words.div_ceil(64);
        let lw = LiveWords::new(words);
        let mut rnd = xorshift(0x2545_f491_4f6c_dd1d);
        for round in 0..4 {
            for _ in 0..2000 {
                let a = rnd(words);
                lw.mark_range(a, (a + 1 + rnd(300)).min(words));
            }
            // Plan ahead over a bound below the final one in odd rounds.
            let ahead_bound = if round % 2 == 1 { bound - 3000 } else { bound };
            let ahead = lw.plan_ahead(ahead_bound);
            assert_eq!(ahead, naive_count(&lw, ahead_bound));
            // The changes the pause patches: a word at the very start (before any other
            // changed chunk), one in the last chunk, a run across a group boundary, and a few
            // random ones.
            let mut changed = std::collections::BTreeSet::new();
            let mut mark = |lw: &LiveWords, a: usize, b: usize| {
                lw.mark_range(a, b);
                for c in a / CHUNK_WORDS..=(b - 1) / CHUNK_WORDS {
                    changed.insert(c);
                }
            };
            mark(&lw, round, round + 1);
            mark(&lw, words - 1 - round * 7, words - round * 7);
            let gb = (1 + round % 3) * GROUP_WORDS;
            mark(&lw, gb - 40, gb + 40);
            for _ in 0..3 {
                let a = rnd(words - 8);
                mark(&lw, a, a + 1 + rnd(7));
            }
            let (total, redone) = lw.finish_prefix(bound);
            let chunks_after_ahead = (bound - 3000) / CHUNK_BLOCKS;
            if round % 2 == 0 {
                assert_eq!(
                    redone,
                    changed.len(),
                    "round {round}: only changed chunks redone"
                );
            } else {
                let new: usize = bound.div_ceil(CHUNK_BLOCKS) - chunks_after_ahead;
                assert!(
                    redone <= changed.len() + new,
                    "round {round}: {redone} redone"
                );
            }
            let (fresh, want) = fresh_copy(&lw, words, bound);
            assert_eq!(total, want, "round {round}: total");
            assert_agree(&lw, &fresh, words, bound, 77 + round as u64);
            assert_eq!(
                lw.finish_prefix(bound),
                (total, 0),
                "nothing changed: nothing redone"
            );
        }
        // A smaller bound (a chunk and a group boundary) after a larger one, and back.
        for b in [
            2 * GROUP_BLOCKS,
            GROUP_BLOCKS + 3 * CHUNK_BLOCKS,
            GROUP_BLOCKS + 3 * CHUNK_BLOCKS + 17,
            bound,
        ] {
            let (total, _) = lw.finish_prefix(b);
            let (fresh, want) = fresh_copy(&lw, words, b);
            assert_eq!(total, want, "bound {b}");
            assert_agree(&lw, &fresh, words, b, b as u64);
        }
        // Cleared and marked again from nothing.
        lw.clear(bound);
        lw.mark_range(GROUP_WORDS + 5, GROUP_WORDS + 9);
        assert_eq!(lw.finish_prefix(bound).0, 4);
        assert_eq!(lw.rank(GROUP_WORDS + 7), 2);
        assert_eq!(lw.select(3, bound), Some(GROUP_WORDS + 8));
    }

    /// Live words in bitmap words `[0, n)`.
    fn naive_count(lw: &LiveWords, n: usize) -> usize {
        (0..n).map(|i| lw.bits.word(i).count_ones() as usize).sum()
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
