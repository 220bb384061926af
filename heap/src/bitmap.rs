//! Side bitmaps over a space, one bit per word: the mark bitmap (a bit at each marked object's
//! header word) and the live-words bitmap (a bit at every word of every marked object), plus the
//! per-bitmap-word prefix sums that turn the live-words bitmap into an O(1) new-address lookup.
//!
//! ```text
//!  bitmap word i covers heap words [64 i, 64 i + 64)
//!  prefix[i]  = live words in bitmap words [0, i)
//!  rank(w)    = prefix[w / 64] + popcount(live[w / 64] & ((1 << (w % 64)) - 1))
//!  new(w)     = destination base + 8 * rank(w)
//! ```
//!
//! Invariants:
//! - bits are set with atomic `fetch_or`, so parallel markers may set them concurrently;
//!   clearing and the prefix computation happen while no marker runs;
//! - `prefix` is valid only after [`LiveWords::compute_prefix`] and until the next bit is set;
//! - prefix sums are 32-bit: a space holds at most 2^32 words (32 GiB; the heap configuration
//!   enforces it).

use core::sync::atomic::{AtomicU64, Ordering};

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
            self.words[word].fetch_or(mask, Ordering::AcqRel);
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

/// The live-words bitmap and its prefix sums.
#[derive(Debug)]
pub struct LiveWords {
    /// One bit per live word.
    pub bits: Bitmap,
    prefix: Vec<u32>,
}

impl LiveWords {
    /// For a space of `words` words.
    pub fn new(words: usize) -> Self {
        let bits = Bitmap::new(words);
        let n = bits.num_words();
        LiveWords {
            bits,
            prefix: vec![0; n + 1],
        }
    }
    /// Compute the prefix sums over bitmap words `[0, upto_word)`; returns total live words.
    pub fn compute_prefix(&mut self, upto_word: usize) -> usize {
        let mut sum = 0u32;
        let n = upto_word.min(self.bits.num_words());
        for i in 0..n {
            self.prefix[i] = sum;
            sum += self.bits.word(i).count_ones();
        }
        for p in &mut self.prefix[n..] {
            *p = sum;
        }
        sum as usize
    }
    /// The live word of rank `r` (the `r`-th live word, 0-based), if there are more than `r`;
    /// valid over the words covered by the last [`Self::compute_prefix`]. O(log n).
    pub fn select(&self, r: usize, upto_word: usize) -> Option<usize> {
        let n = upto_word.min(self.bits.num_words());
        let i = self.prefix[..n]
            .partition_point(|&p| p as usize <= r)
            .checked_sub(1)?;
        let mut bits = self.bits.word(i);
        let mut k = r - self.prefix[i] as usize;
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
    /// per-page tables after [`Self::compute_prefix`].
    pub fn select_every(
        &self,
        step: usize,
        total: usize,
        upto_word: usize,
        mut f: impl FnMut(usize, usize),
    ) {
        let n = upto_word.min(self.bits.num_words());
        let mut i = 0;
        let mut k = 0;
        while k * step < total {
            let r = k * step;
            while i + 1 < n && self.prefix[i + 1] as usize <= r {
                i += 1;
            }
            let mut bits = self.bits.word(i);
            for _ in 0..r - self.prefix[i] as usize {
                bits &= bits - 1;
            }
            f(k, i * 64 + bits.trailing_zeros() as usize);
            k += 1;
        }
    }

    /// Rank of word `w`: the live words before it. O(1).
    #[inline]
    pub fn rank(&self, w: usize) -> usize {
        let i = w / 64;
        let below = self.bits.word(i) & ((1u64 << (w % 64)) - 1);
        self.prefix[i] as usize + below.count_ones() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_range_and_rank() {
        let mut lw = LiveWords::new(1000);
        lw.bits.set_range(3, 7);
        lw.bits.set_range(60, 130);
        lw.bits.set_range(200, 201);
        let total = lw.compute_prefix(lw.bits.num_words());
        assert_eq!(total, 4 + 70 + 1);
        assert_eq!(lw.rank(3), 0);
        assert_eq!(lw.rank(60), 4);
        assert_eq!(lw.rank(64), 8);
        assert_eq!(lw.rank(128), 4 + 68);
        assert_eq!(lw.rank(200), 74);
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
    }
}
