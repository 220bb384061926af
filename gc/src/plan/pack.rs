//! The slide's copy pass without a branch per run of live words ([`copy_live_packed`]).
//!
//! The scalar copy ([`super::Plan::copy_live`]) finds each run of live words (two bitmap
//! searches) and copies it with a length-dependent copy: at 10-50 % live in small objects
//! that is a few unpredictable branches per run, millions of runs per slide. Here the
//! live-words bitmap is read a word (64 heap words) at a time: each group of four heap words
//! that holds a live word is read with one load, its live words packed to the front by one
//! AVX2 permutation and written with one store; fully live bitmap words are copied whole (or
//! skipped when already in place); dead groups are never read. Sparse bitmap words some way
//! ahead have their live cache lines prefetched, as the scalar path does.
//!
//! Two builds of the same loop ([`Kind`]). Where the CPU has AVX-512 (F and VL), every load
//! and store is masked to the group's live words, with the mask in a mask register. Elsewhere
//! AVX2's masked load and store (`vpmaskmovq`) are slow on some CPUs (this project's AMD VMs:
//! on Zen 4 the store, on Zen 3 the load and the store; `benches/stw.rs`, BENCHMARKS.md s21
//! and s22), so the AVX2 build reads and writes whole groups wherever that touches only words
//! of the copy's own ranges, and masks only at their edges:
//! - a group is read whole when it lies at or after the range's first source word and a live
//!   word still to copy follows it: its dead words then lie inside the range (the slide's
//!   piece), which no other thread writes meanwhile;
//! - a group's packed words are written with all four lanes when those four destination
//!   words lie inside the destination and the first of them at or below the group's first
//!   source word (so all four below the group's end): the lanes past the packed words land
//!   where the next groups' words go (and are overwritten by them), below every live word
//!   not yet read.
//!
//! A group never crosses a page, `src` (heap word 0) being 32-byte aligned: a whole-group load
//! reads only a page that holds a live word.
//!
//! Invariants:
//! - only words of the copy's ranges are touched: source words from `*w` to the last live word
//!   copied (read; the AVX-512 build reads exactly the live ones) and the destination's
//!   `count` words (written; the AVX-512 build writes each once, the AVX2 build may write a
//!   word up to four times, the last time with its value), so the parallel slide's pieces
//!   never race on a neighbour's words;
//! - words go out in rank order, each group loaded before its store; with the destination at
//!   or below the source (the in-place slide: a live word never lies below its rank) a store
//!   only lands below the next live word not yet read;
//! - the result is the scalar copy's, word for word, and `*w` ends where the scalar copy
//!   leaves it (tests below).

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::{
    __m256i, _mm256_loadu_si256, _mm256_mask_storeu_epi64, _mm256_maskload_epi64,
    _mm256_maskstore_epi64, _mm256_maskz_loadu_epi64, _mm256_permutevar8x32_epi32,
    _mm256_storeu_si256,
};

use faultline_heap::bitmap::Bitmap;
use faultline_heap::object::WORD;

use super::{SLIDE_PREFETCH_BITMAP_WORDS, SLIDE_PREFETCH_MAX_LIVE};

/// `PERM[n]`: the 32-bit lane indices that move the 64-bit lanes set in `n` (4 bits) to the
/// front, in order.
const PERM: [[i32; 8]; 16] = {
    let mut t = [[0i32; 8]; 16];
    let mut n = 0;
    while n < 16 {
        let mut out = 0;
        let mut lane = 0usize;
        while lane < 4 {
            if n & (1 << lane) != 0 {
                t[n][2 * out] = 2 * lane as i32;
                t[n][2 * out + 1] = 2 * lane as i32 + 1;
                out += 1;
            }
            lane += 1;
        }
        n += 1;
    }
    t
};

/// `LANES[n]`: a 64-bit lane mask (all ones where set) of the lanes set in `n`.
const LANES: [[i64; 4]; 16] = {
    let mut t = [[0i64; 4]; 16];
    let mut n = 0;
    while n < 16 {
        let mut lane = 0;
        while lane < 4 {
            if n & (1 << lane) != 0 {
                t[n][lane] = -1;
            }
            lane += 1;
        }
        n += 1;
    }
    t
};

/// Which build of the packed copy runs (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// AVX2 and `popcnt`: whole-group loads and stores, masked (`vpmaskmovq`) only at the
    /// copy's edges.
    Avx2,
    /// Also AVX-512 F and VL: masked loads and stores through a mask register.
    Avx512,
}

/// The best build of [`copy_live_packed`] this CPU runs, if any.
#[inline]
pub(super) fn kind() -> Option<Kind> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx2") && has!("popcnt")) {
            None
        } else if has!("avx512f") && has!("avx512vl") {
            Some(Kind::Avx512)
        } else {
            Some(Kind::Avx2)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// The lowest `k` set bits of `m` (`k` at most its count).
#[inline(always)]
fn lowest_set_bits(mut m: u64, k: usize) -> u64 {
    let mut out = 0;
    for _ in 0..k {
        let low = m & m.wrapping_neg();
        out |= low;
        m ^= low;
    }
    out
}

/// Bit `4g + 3` set for every 4-bit group `g` of `m` that is not zero.
#[inline(always)]
fn nonzero_groups(m: u64) -> u64 {
    const LOW3: u64 = 0x7777_7777_7777_7777;
    (((m & LOW3) + LOW3) | m) & !LOW3
}

/// Bit `8g + 7` set for every byte `g` of `m` that is not zero.
#[inline(always)]
fn nonzero_bytes(m: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    (((m & LOW7) + LOW7) | m) & !LOW7
}

/// Copy the first `count` live words at or after heap word `*w` (bits of `bits`, none at or
/// above word `limit` needed) from `src` (heap word 0) to `dst`, in rank order; `*w` is left
/// just past the last word copied.
///
/// # Safety
/// The CPU runs build `kind` ([`kind`] named it or a better one). There are `count` live
/// words in `[*w, limit)`, readable at `src`, and so is every group of four words (counted
/// from heap word 0) that holds one of them (as when `src` is 32-byte aligned: a group never
/// crosses a page); `dst` is writable for `count` words; if the
/// destination overlaps the live words read, it lies at or below them (each destination word
/// at or below the source word that goes there); no other thread writes any word from `*w`
/// to the last live word copied (dead ones included), or reads or writes the destination,
/// meanwhile.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn copy_live_packed(
    kind: Kind,
    bits: &Bitmap,
    limit: usize,
    src: *const usize,
    w: &mut usize,
    dst: *mut usize,
    count: usize,
) {
    let job = Job {
        bits,
        limit,
        src,
        dst,
        count,
    };
    // SAFETY: the caller's contract.
    unsafe { job.run(kind, w) }
}

/// The arguments of one [`copy_live_packed`] but `*w`, handed through the builds.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Job<'a> {
    bits: &'a Bitmap,
    limit: usize,
    src: *const usize,
    dst: *mut usize,
    count: usize,
}

#[cfg(target_arch = "x86_64")]
impl Job<'_> {
    /// The copy in build `kind` (the tests run both).
    ///
    /// # Safety
    /// [`copy_live_packed`]'s contract, and the CPU runs `kind` ([`kind`] names it or a better
    /// one).
    unsafe fn run(self, kind: Kind, w: &mut usize) {
        // SAFETY: forwarded; the CPU has the features of the build called.
        unsafe {
            match kind {
                Kind::Avx512 => self.avx512(w),
                Kind::Avx2 => self.avx2(w),
            }
        }
    }

    /// The AVX2 build.
    ///
    /// # Safety
    /// As [`Job::run`]; the CPU has AVX2 and `popcnt`.
    #[target_feature(enable = "avx2,popcnt")]
    unsafe fn avx2(self, w: &mut usize) {
        // SAFETY: forwarded.
        unsafe { self.packed::<false>(w) }
    }

    /// The AVX-512 build.
    ///
    /// # Safety
    /// As [`Job::run`]; the CPU has AVX2, `popcnt` and AVX-512 F and VL.
    #[target_feature(enable = "avx2,popcnt,avx512f,avx512vl")]
    unsafe fn avx512(self, w: &mut usize) {
        // SAFETY: forwarded.
        unsafe { self.packed::<true>(w) }
    }

    /// The loop of both builds: `K512` picks the masked load and store.
    ///
    /// # Safety
    /// As [`Job::run`]; the caller's build has the features `K512` needs.
    #[inline(always)]
    unsafe fn packed<const K512: bool>(self, w: &mut usize) {
        let Job {
            bits,
            limit,
            src,
            dst,
            count,
        } = self;
        if count == 0 {
            return;
        }
        // The first source word of the range (the AVX2 build reads whole groups from here on).
        let first = src as usize + *w * WORD;
        let words = limit.div_ceil(64);
        let mut i = *w / 64;
        let mut m = bits.word(i) & (u64::MAX << (*w % 64));
        let mut d = 0;
        // Bitmap words below `pf` had their sparse live lines prefetched.
        let mut pf = i;
        loop {
            let ahead = (i + SLIDE_PREFETCH_BITMAP_WORDS).min(words);
            while pf < ahead {
                let a = bits.word(pf);
                // Denser words are left to the hardware prefetcher (see the constant).
                if a != 0 && a.count_ones() < SLIDE_PREFETCH_MAX_LIVE {
                    let mut lines = nonzero_bytes(a);
                    while lines != 0 {
                        let g = lines.trailing_zeros() as usize / 8;
                        crate::dense::prefetch(src as usize + (pf * 64 + 8 * g) * WORD);
                        lines &= lines - 1;
                    }
                }
                pf += 1;
            }
            let left = count - d;
            let live = m.count_ones() as usize;
            let last = live >= left;
            if live > left {
                m = lowest_set_bits(m, left);
            }
            // SAFETY: (the whole block) heap words [64 i, 64 i + 64) lie in the bitmap's
            // range; only their live ones (set in `m`) are read, or whole groups of four
            // inside the range that no other thread writes (the conditions below); destination
            // words [d, d + popcount(m)) lie in [0, count), writable, and a whole-group store
            // writes inside [0, count) too; each load precedes the stores that could overlap
            // it (see the module documentation).
            unsafe {
                let base = src.add(64 * i);
                if m == u64::MAX {
                    let to = dst.add(d);
                    if !core::ptr::eq(to, base) {
                        // Front to back, 4 words at a time: each store lands at or below its load.
                        for q in 0..16 {
                            let v = _mm256_loadu_si256(base.add(4 * q) as *const __m256i);
                            _mm256_storeu_si256(to.add(4 * q) as *mut __m256i, v);
                        }
                    }
                    d += 64;
                } else {
                    let mut groups = nonzero_groups(m);
                    while groups != 0 {
                        let g = groups.trailing_zeros() as usize / 4;
                        let n = ((m >> (4 * g)) & 0xf) as usize;
                        let k = n.count_ones() as usize;
                        let from = base.add(4 * g) as *const i64;
                        let v = if K512 {
                            _mm256_maskz_loadu_epi64(n as u8, from)
                        } else if from as usize >= first && d + k < count {
                            // The whole group: its dead words lie between live words of this
                            // call's range (at or after its first word, before a live word
                            // still to copy), which no other thread writes meanwhile.
                            _mm256_loadu_si256(from as *const __m256i)
                        } else {
                            let lanes = _mm256_loadu_si256(LANES[n].as_ptr() as *const __m256i);
                            _mm256_maskload_epi64(from, lanes)
                        };
                        let perm = _mm256_loadu_si256(PERM[n].as_ptr() as *const __m256i);
                        let packed = _mm256_permutevar8x32_epi32(v, perm);
                        let to = dst.add(d) as *mut i64;
                        if K512 {
                            _mm256_mask_storeu_epi64(to, (1u8 << k) - 1, packed);
                        } else if d + 4 <= count && (to as usize) <= (from as usize) {
                            // All four lanes: the ones past the `k` packed words land on
                            // destination words that later groups write (`d + 4 <= count`),
                            // below the next live word not yet read (`to <= from`).
                            _mm256_storeu_si256(to as *mut __m256i, packed);
                        } else {
                            let front =
                                _mm256_loadu_si256(LANES[(1 << k) - 1].as_ptr() as *const __m256i);
                            _mm256_maskstore_epi64(to, front, packed);
                        }
                        d += k;
                        groups &= groups - 1;
                    }
                }
            }
            if last {
                *w = 64 * i + 64 - m.leading_zeros() as usize;
                return;
            }
            i += 1;
            m = bits.word(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar reference: every live word in order, one at a time.
    fn reference(bits: &Bitmap, mem: &mut [usize], w: &mut usize, to: usize, count: usize) {
        let mut d = 0;
        let mut i = *w;
        while d < count {
            if bits.get(i) {
                mem[to + d] = mem[i];
                d += 1;
            }
            i += 1;
        }
        *w = i;
    }

    fn xorshift(s: &mut u64) -> u64 {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// Copy with the reference and with build `kind`, from `w` to `to` (at or below every
    /// live word read when they overlap), `count` words; the memories and the `w`s must agree.
    fn check(kind: Kind, bits: &Bitmap, init: &[usize], w: usize, to: usize, count: usize) {
        let limit = init.len();
        let mut a = init.to_vec();
        let mut b = init.to_vec();
        let (mut wa, mut wb) = (w, w);
        reference(bits, &mut a, &mut wa, to, count);
        // SAFETY: `kind` checked by the caller; the live words and the destination lie in
        // `b`; the destination lies at or below the words read when they overlap.
        unsafe {
            Job {
                bits,
                limit,
                src: b.as_ptr(),
                dst: b.as_mut_ptr().add(to),
                count,
            }
            .run(kind, &mut wb)
        };
        assert_eq!(wa, wb, "{kind:?}: w after copying {count} from {w} to {to}");
        if let Some(i) = (0..limit).find(|&i| a[i] != b[i]) {
            panic!("{kind:?}: word {i} differs after copying {count} from {w} to {to}");
        }
    }

    /// Live words at random, in runs, and whole live or dead bitmap words; copies starting and
    /// ending mid-word, on word boundaries and on the last live word of the range, in place
    /// (destination at the rank), above the rank up to the first word copied, and into a
    /// separate area.
    /// Both builds this CPU runs (the AVX2 one wherever the AVX-512 one runs).
    #[test]
    fn packed_copy_matches_the_scalar_copy() {
        let kinds: &[Kind] = match kind() {
            None => {
                println!("SKIPPED: no AVX2 on this CPU");
                return;
            }
            Some(Kind::Avx2) => {
                println!("AVX2 build only: this CPU has no AVX-512");
                &[Kind::Avx2]
            }
            Some(Kind::Avx512) => &[Kind::Avx2, Kind::Avx512],
        };
        let words = 64 * 40;
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        for case in 0..300 {
            let bits = Bitmap::new(2 * words);
            let density = xorshift(&mut s) % 100;
            let mut i = 0;
            while i < words {
                let r = xorshift(&mut s);
                match r % 10 {
                    // A whole bitmap word live or dead.
                    0 if i % 64 == 0 && i + 64 <= words => {
                        if r & 0x100 != 0 {
                            bits.set_range(i, i + 64);
                        }
                        i += 64;
                    }
                    // A run (an object) of 1-9 words.
                    _ => {
                        let len = 1 + (r >> 8) as usize % 9;
                        if (r >> 20) % 100 < density {
                            bits.set_range(i, (i + len).min(words));
                        }
                        i += len;
                    }
                }
            }
            // The last word of the range live: the copy ends on the very last bit.
            if case % 7 == 0 {
                bits.set_range(words - 1, words);
            }
            let live: Vec<usize> = (0..words).filter(|&i| bits.get(i)).collect();
            if live.is_empty() {
                continue;
            }
            let init: Vec<usize> = (0..2 * words).map(|i| 1_000_000 + i).collect();
            let ranks = [0, live.len() / 3, live.len() - 1];
            for &from in &ranks {
                let w = live[from];
                let rest = live.len() - from;
                let counts = [1, rest / 2, rest.saturating_sub(1).max(1), rest];
                for &count in &counts {
                    for &k in kinds {
                        // In place: the first word copied goes to its rank.
                        check(k, &bits, &init, w, from, count);
                        // From just after the previous live word (a search starting mid-gap).
                        let w0 = if from == 0 { 0 } else { live[from - 1] + 1 };
                        check(k, &bits, &init, w0, from, count);
                        // Above the rank, at most at the first word copied: each word still
                        // goes at or below itself, but a group's first destination word may
                        // lie above the group's first word (halfway, and onto the first word
                        // copied itself).
                        check(k, &bits, &init, w, (from + w) / 2, count);
                        check(k, &bits, &init, w, w, count);
                        // Into the free second half of the memory (no overlap).
                        check(k, &bits, &init, w, words, count);
                    }
                }
            }
        }
    }

    /// Both builds, with the destination ending right below an inaccessible page and the last
    /// live word among the last four words before another: exactly the `count` destination
    /// words are written (nothing below the destination, nothing past its end: that would
    /// fault), and `*w` ends just past the last word copied. (The destination lies above the
    /// source here, so the AVX2 build masks every store; its whole-group stores are checked
    /// word for word, the whole memory compared, by the test above.)
    #[test]
    fn packed_copy_writes_exactly_up_to_a_guard_page() {
        let kinds: &[Kind] = match kind() {
            None => return,
            Some(Kind::Avx2) => &[Kind::Avx2],
            Some(Kind::Avx512) => &[Kind::Avx2, Kind::Avx512],
        };
        const PW: usize = 4096 / WORD;
        const PAGE: usize = 4096;
        let words = 2 * PW;
        let mut s = 0x1234_5678_9abc_def1u64;
        // Pages: source 0-1, guard 2, destination 3-4, guard 5.
        // SAFETY: a fresh private anonymous mapping, made inaccessible in two pages; unmapped
        // at the end, and only its pages 0-1 and 3-4 are read or written meanwhile.
        let base = unsafe {
            let p = libc::mmap(
                core::ptr::null_mut(),
                6 * PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            assert_ne!(p, libc::MAP_FAILED);
            for g in [2, 5] {
                let r = libc::mprotect(p.cast::<u8>().add(g * PAGE).cast(), PAGE, libc::PROT_NONE);
                assert_eq!(r, 0);
            }
            p.cast::<usize>()
        };
        // SAFETY: pages 0-1 and 3-4 of the mapping, readable and writable, no overlap.
        let (src, dst_area) = unsafe {
            (
                core::slice::from_raw_parts_mut(base, words),
                core::slice::from_raw_parts_mut(base.add(3 * PW), words),
            )
        };
        for case in 0..200 {
            let bits = Bitmap::new(words);
            let density = 1 + xorshift(&mut s) % 100;
            for i in 0..words {
                if xorshift(&mut s) % 100 < density {
                    bits.set(i);
                }
            }
            let last = words - 1 - case % 4;
            bits.clear_range(last + 1, words);
            bits.set(last);
            let live: Vec<usize> = (0..words).filter(|&i| bits.get(i)).collect();
            for (i, x) in src.iter_mut().enumerate() {
                *x = 7_000_000 + i;
            }
            for &k in kinds {
                for from in [0, live.len() / 2, live.len() - 1] {
                    let count = live.len() - from;
                    dst_area.fill(1);
                    let mut w = live[from];
                    let job = Job {
                        bits: &bits,
                        limit: words,
                        src: src.as_ptr(),
                        dst: dst_area[words - count..].as_mut_ptr(),
                        count,
                    };
                    // SAFETY: `count` live words from `w` on, below `words`; the destination
                    // holds `count` words (it ends at the guard page) and does not overlap the
                    // source; the CPU runs `k`.
                    unsafe { job.run(k, &mut w) };
                    assert_eq!(w, last + 1, "{k:?} case {case}");
                    let got = &dst_area[words - count..];
                    for (d, &sw) in live[from..].iter().enumerate() {
                        assert_eq!(got[d], 7_000_000 + sw, "{k:?} case {case} word {d}");
                    }
                    assert!(
                        dst_area[..words - count].iter().all(|&x| x == 1),
                        "{k:?} case {case}: a word below the destination was written"
                    );
                }
            }
        }
        // SAFETY: the mapping made above; the slices into it are not used any more.
        unsafe { libc::munmap(base.cast(), 6 * PAGE) };
    }

    #[test]
    fn lowest_set_bits_and_groups() {
        assert_eq!(lowest_set_bits(0b1011_0110, 0), 0);
        assert_eq!(lowest_set_bits(0b1011_0110, 3), 0b0001_0110);
        assert_eq!(lowest_set_bits(u64::MAX, 64), u64::MAX);
        assert_eq!(nonzero_groups(0x0100_f000_0000_0001), 0x0800_8000_0000_0008);
        assert_eq!(nonzero_bytes(0x0100_8000_0000_0001), 0x8000_8000_0000_0080);
        assert_eq!(PERM[0b1010][..4], [2, 3, 6, 7]);
        assert_eq!(LANES[0b0101], [-1, 0, -1, 0]);
    }
}
