//! The in-place slide on several threads ([`Plan::slide_on`]): the stop-the-world pause has
//! every CPU, and a one-thread slide uses one.
//!
//! ```text
//!  ranks (destination)  [b0      b1      b2      b3 ...          total)   one piece each
//!  old words (source)   [s0 ........ s1 ........ s2 ........ s3 ...   limit)
//!  piece k: copies the live words of old [s_k, s_k+1) to [b_k, b_k+1), then forwards them
//! ```
//!
//! The destination is cut into pieces of about [`super::SLIDE_CHUNK_WORDS`] words, each
//! starting on an object (`b_k` = the rank of the first marked object at or after the live
//! word of rank `k x chunk`; `s_k` its old word). Threads claim pieces in order from a shared
//! counter; each one a thread slides as the one-thread slide does (copy 32 KiB of live words
//! down, forward their references while they are in its cache, and so on), and publishes
//! that the piece is copied once its last source word is read. Forwarding reads only the side
//! tables and the piece's own (slid) words, and writes only those: no piece waits to forward.
//!
//! Copying piece `k` writes words `[b_k, b_k+1)`, which may hold source words of earlier
//! pieces not yet read. The dependency rule: piece `k` starts its copy only once every earlier
//! piece `j` whose source words `[s_j, s_j+1)` meet `[b_k, b_k+1)` is copied ([`Chunks::deps`],
//! computed before the threads start). Since a live word never lies below its rank, later
//! pieces never write where a piece reads, and a piece's words are its alone once it is
//! copied. In a sparse heap the dependencies lie far behind (at 50 % live piece `k` waits for
//! piece `k / 2`); in a dense run each piece waits for the one before it, and the threads
//! form a pipeline (one copies while the other forwards).
//!
//! Invariants:
//! - runs only inside a stop-the-world pause that slides in place ([`Plan::slide`]'s
//!   contract): nothing but the slide's threads touches the half meanwhile;
//! - pieces are claimed in increasing order and a thread finishes a piece before it claims
//!   another, so the lowest piece not yet copied has all its dependencies copied and is being
//!   copied: the slide never deadlocks;
//! - a piece's copy flag is set (release) after its last source read, and read (acquire)
//!   before any write that could overwrite those words;
//! - the result is the one-thread slide's, word for word (tests below);
//! - a thread that panics flags the slide failed, and the others stop waiting for it and
//!   panic too (the pause ends in the panic instead of hanging).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use faultline_heap::object::WORD;

use super::{Plan, PAGE_WORDS, SLIDE_CHUNK_WORDS};
use crate::cputime;
#[cfg(test)]
use faultline_heap::PAGE_SIZE;

/// With fewer than twice this many pieces (2 MiB live) the slide stays on one thread (the
/// helpers' start-up, tens of microseconds each, would cost more than they save).
const MIN_PIECES_PER_THREAD: usize = 4;

/// Waits on a piece's copy flag spin this many times before yielding the CPU.
const SPINS_BEFORE_YIELD: u32 = 2_000;

/// The pieces of one parallel slide and their progress.
pub(super) struct Chunks {
    /// `src[k]`: old word where the search for piece `k`'s first live word starts (its first
    /// object's header, or 0 for piece 0); `src[n]` = the end of the half's used words.
    src: Vec<usize>,
    /// `dst[k]`: the rank of piece `k`'s first word; `dst[n]` = the live words in total.
    dst: Vec<usize>,
    /// `deps[k]`: the earlier pieces `[lo, hi)` piece `k` waits for before its copy.
    deps: Vec<(usize, usize)>,
    /// Set once a piece is copied (all its source words read).
    copied: Vec<AtomicBool>,
    /// The next piece to claim.
    next: AtomicUsize,
    /// Copies that found a dependency not yet copied (statistics for the tests and benches).
    waited: AtomicUsize,
    /// A thread panicked while sliding: the others stop waiting for its pieces (and panic
    /// too, so that the pause ends in the panic, not in a hang).
    failed: AtomicBool,
}

impl Chunks {
    /// Cut `plan`'s slide into pieces of about `chunk_words` destination words.
    fn new(plan: &Plan, chunk_words: usize) -> Chunks {
        let total = plan.live_words;
        let limit = (plan.from_top - plan.from) / WORD;
        let n = total.div_ceil(chunk_words).max(1);
        let mut src = Vec::with_capacity(n + 1);
        let mut dst = Vec::with_capacity(n + 1);
        src.push(0);
        dst.push(0);
        for k in 1..n {
            let w = plan
                .live()
                .select(k * chunk_words, plan.bitmap_words)
                .expect("a live word for every destination word");
            // The first marked object at or after it (a dense prefix's fillers are not
            // marked, but they are objects too: a piece may hold some, whole).
            match plan.mark().next_set(w, limit) {
                Some(s) => {
                    src.push(s);
                    dst.push(plan.live().rank(s));
                }
                None => {
                    src.push(limit);
                    dst.push(total);
                }
            }
        }
        src.push(limit);
        dst.push(total);
        // Piece `j` reads old words [src[j], src[j + 1]); piece `k` writes [dst[k],
        // dst[k + 1]). Both ends move up with `k`: two pointers.
        // `first`: the first piece whose source ends above dst[k]; `past`: the first whose
        // source starts at or above dst[k + 1].
        let mut deps = Vec::with_capacity(n);
        let (mut first, mut past) = (0, 0);
        for k in 0..n {
            while first < k && src[first + 1] <= dst[k] {
                first += 1;
            }
            while past < n && src[past] < dst[k + 1] {
                past += 1;
            }
            deps.push((first, past.clamp(first, k)));
        }
        Chunks {
            src,
            dst,
            deps,
            copied: (0..n).map(|_| AtomicBool::new(false)).collect(),
            next: AtomicUsize::new(0),
            waited: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
        }
    }

    /// Pieces.
    fn len(&self) -> usize {
        self.copied.len()
    }

    /// Wait until pieces `[lo, hi)` are copied.
    fn wait_copied(&self, lo: usize, hi: usize) {
        let mut waited = false;
        for flag in &self.copied[lo..hi] {
            let mut spins = 0;
            while !flag.load(Ordering::Acquire) {
                assert!(
                    !self.failed.load(Ordering::Relaxed),
                    "another slide thread panicked"
                );
                waited = true;
                if spins < SPINS_BEFORE_YIELD {
                    std::hint::spin_loop();
                    spins += 1;
                } else {
                    std::thread::yield_now();
                }
            }
        }
        if waited {
            self.waited.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What a parallel slide did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SlideReport {
    /// Threads that slid (the calling one included).
    pub threads: usize,
    /// Pieces.
    pub pieces: usize,
    /// Pieces whose copy waited for an earlier piece.
    pub waited: usize,
    /// CPU time of the helper threads (the calling thread's is not included).
    pub helper_cpu: Duration,
}

impl Plan {
    /// [`Plan::slide`] on `threads` threads (the calling one and `threads - 1` scoped
    /// helpers), in pieces of [`SLIDE_CHUNK_WORDS`]; with one thread, or too little to slide
    /// for the helpers to pay off, it is [`Plan::slide`] itself. Same result, word for word.
    ///
    /// # Safety
    /// [`Plan::slide`]'s contract.
    pub(crate) unsafe fn slide_on(&self, threads: usize) -> SlideReport {
        if threads <= 1 || self.live_words < 2 * MIN_PIECES_PER_THREAD * SLIDE_CHUNK_WORDS {
            // SAFETY: the caller's contract.
            unsafe { self.slide() };
            return SlideReport {
                threads: 1,
                pieces: 1,
                ..SlideReport::default()
            };
        }
        // SAFETY: the caller's contract.
        unsafe { self.slide_parallel(threads, SLIDE_CHUNK_WORDS) }
    }

    /// The parallel slide, `threads >= 1` threads, pieces of about `chunk_words` words (the
    /// tests use small ones).
    ///
    /// # Safety
    /// [`Plan::slide`]'s contract.
    pub(super) unsafe fn slide_parallel(&self, threads: usize, chunk_words: usize) -> SlideReport {
        debug_assert!(self.to == self.from && self.src == self.from);
        let chunks = Chunks::new(self, chunk_words.max(1));
        let chunks = &chunks;
        let helpers = threads.min(chunks.len()).max(1) - 1;
        let me = std::thread::current().id();
        let ((), parts) = crate::crew::fan_out(
            "faultline-slide",
            helpers,
            |_| {
                // (A helper may be a kept thread: its CPU time for this part alone.)
                let cpu0 = cputime::thread_cpu();
                // SAFETY: the caller's contract; pieces are shared by the rule of the module
                // documentation.
                unsafe { self.slide_pieces(chunks) };
                // A part no helper took runs on the caller after its own (and finds nothing
                // left): neither a thread nor helper time.
                (std::thread::current().id() != me)
                    .then(|| cputime::thread_cpu().saturating_sub(cpu0))
            },
            // SAFETY: as above.
            || unsafe { self.slide_pieces(chunks) },
        );
        let helpers = parts.iter().flatten().count();
        let helper_cpu = parts.into_iter().flatten().sum::<Duration>();
        let total = self.live_words;
        // SAFETY: words [total, pages * PAGE_WORDS) lie on the last destination page, present
        // and ours; nothing live is there any more (every piece is done).
        unsafe {
            core::ptr::write_bytes(
                (self.src as *mut usize).add(total),
                0,
                self.pages * PAGE_WORDS - total,
            )
        };
        SlideReport {
            threads: 1 + helpers,
            pieces: chunks.len(),
            waited: chunks.waited.load(Ordering::Relaxed),
            helper_cpu,
        }
    }

    /// Claim and slide pieces until none is left.
    ///
    /// # Safety
    /// [`Plan::slide`]'s contract; every thread sliding `chunks` runs this.
    unsafe fn slide_pieces(&self, chunks: &Chunks) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: the CPU has `popcnt`; the rest is the caller's contract.
            unsafe { self.slide_pieces_popcnt(chunks) };
            return;
        }
        // SAFETY: the caller's contract.
        unsafe { self.slide_pieces_impl(chunks) };
    }

    /// [`Plan::slide_pieces`] compiled with `popcnt` (see [`Plan::fill_pages`]).
    ///
    /// # Safety
    /// The CPU must have `popcnt`; and [`Plan::slide_pieces`]'s contract.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "popcnt")]
    unsafe fn slide_pieces_popcnt(&self, chunks: &Chunks) {
        // SAFETY: forwarded.
        unsafe { self.slide_pieces_impl(chunks) };
    }

    #[inline(always)]
    unsafe fn slide_pieces_impl(&self, chunks: &Chunks) {
        /// Flags the slide as failed if this thread unwinds.
        struct Failed<'a>(&'a AtomicBool);
        impl Drop for Failed<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.store(true, Ordering::Relaxed);
                }
            }
        }
        let _failed = Failed(&chunks.failed);
        loop {
            let k = chunks.next.fetch_add(1, Ordering::Relaxed);
            if k >= chunks.len() {
                return;
            }
            let (lo, hi) = chunks.deps[k];
            chunks.wait_copied(lo, hi);
            let (b0, b1) = (chunks.dst[k], chunks.dst[k + 1]);
            let mut w = chunks.src[k];
            let mut walk = super::ObjWalk {
                pos: b0,
                header: None,
            };
            // SAFETY: every earlier piece whose source words meet [b0, b1) is copied (waited
            // for above); later pieces read only at or above `src[k + 1] >= b1` and write only
            // above `b1`, into this piece's source words `[src[k], src[k + 1])` (dead ones
            // included: the dependencies compare whole intervals) only once they have waited
            // for this one, so once slid, words [b0, b1) are this piece's alone; piece `k`
            // starts on an object (or is empty) and so does piece `k + 1`.
            unsafe {
                self.slide_range(&mut w, &mut walk, b0, b1, || {
                    chunks.copied[k].store(true, Ordering::Release)
                })
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::fixture;
    use super::*;

    #[test]
    fn pieces_start_on_objects_and_wait_for_exactly_the_pieces_whose_sources_they_overwrite() {
        let mut with_deps = 0;
        for (seed, live) in [(41, 0.1), (42, 0.5), (43, 0.9), (44, 1.0), (45, 0.02)] {
            let mut f = fixture(seed, live, 200 * PAGE_WORDS);
            f.plan.to = f.plan.from;
            let p = &f.plan;
            let limit = (p.from_top - p.from) / WORD;
            for chunk in [7, 300, PAGE_WORDS, 5000] {
                let c = Chunks::new(p, chunk);
                let n = c.len();
                assert_eq!(n, p.live_words.div_ceil(chunk).max(1));
                assert_eq!((c.src[0], c.dst[0]), (0, 0));
                assert_eq!((c.src[n], c.dst[n]), (limit, p.live_words));
                for k in 1..n {
                    assert!(c.src[k] >= c.src[k - 1] && c.dst[k] >= c.dst[k - 1]);
                    if c.src[k] < limit {
                        assert!(p.mark().get(c.src[k]), "piece {k} starts on an object");
                        assert_eq!(p.live().rank(c.src[k]), c.dst[k]);
                        assert!(c.dst[k] >= k * chunk, "piece {k} starts after its rank");
                    }
                }
                for k in 0..n {
                    let want: Vec<usize> = (0..k)
                        .filter(|&j| c.src[j + 1] > c.dst[k] && c.src[j] < c.dst[k + 1])
                        .collect();
                    let (lo, hi) = c.deps[k];
                    assert_eq!(
                        (lo..hi).collect::<Vec<_>>(),
                        want,
                        "seed {seed}, chunk {chunk}: piece {k}"
                    );
                    with_deps += usize::from(hi > lo);
                }
            }
        }
        assert!(
            with_deps > 0,
            "no piece depends on another: the rule is not exercised"
        );
    }

    /// Slide the fixture's half on one thread and again, from the same bytes, on `threads`
    /// threads in pieces of `chunk` words; the halves must be equal.
    fn same_as_one_thread(f: &mut crate::plan::tests::Fixture, threads: usize, chunk: usize) {
        let before = f._old.clone();
        // SAFETY: nothing else touches the fixture's half; `to == from == src`.
        unsafe { f.plan.slide() };
        let one = f._old.clone();
        f._old.copy_from_slice(&before);
        // SAFETY: as above (the same bytes at the same address again).
        let r = unsafe { f.plan.slide_parallel(threads, chunk) };
        if f.plan.live_words > 2 * chunk {
            assert!(r.pieces > 2 && r.threads > 1, "{r:?}");
        }
        let words = f.plan.pages * PAGE_WORDS;
        if let Some(i) = (0..words).find(|&i| f._old[i] != one[i]) {
            panic!("{threads} threads, chunk {chunk}: word {i} differs ({r:?})");
        }
    }

    #[test]
    fn sliding_on_several_threads_gives_the_one_thread_result() {
        for (seed, live) in [(51, 0.1), (52, 0.5), (53, 0.9), (54, 1.0), (55, 0.02)] {
            for (threads, chunk) in [(2, 7), (2, 300), (2, PAGE_WORDS), (3, 1000), (4, 5000)] {
                let mut f = fixture(seed + chunk as u64, live, 392 * PAGE_WORDS);
                f.plan.to = f.plan.from;
                same_as_one_thread(&mut f, threads, chunk);
            }
        }
    }

    #[test]
    fn sliding_on_several_threads_after_a_dense_prefix_gives_the_one_thread_result() {
        for (seed, live, t) in [(61, 0.97, 0.9), (62, 0.93, 0.85), (63, 0.995, 0.95)] {
            for (threads, chunk) in [(2, 64), (2, PAGE_WORDS), (3, 3000)] {
                let mut f = fixture(seed, live, 392 * PAGE_WORDS);
                f.plan.to = f.plan.from;
                let used = (f.plan.from_top - f.plan.from) / WORD;
                let n = crate::dense::choose(&f.plan.tables.live.bits, used, t);
                assert!(n > 4, "seed {seed}: a prefix of {n} pages");
                // SAFETY: the fixture's half is ours; it is planned again below.
                unsafe { crate::dense::keep(&f.plan.tables.live, f.plan.from, n) };
                f.plan.live_words = f.plan.tables.live.compute_prefix(f.plan.bitmap_words);
                f.plan.pages = (f.plan.live_words * WORD).div_ceil(PAGE_SIZE);
                same_as_one_thread(&mut f, threads, chunk);
            }
        }
    }
}
