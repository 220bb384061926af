//! The one tracer: shading objects (setting their mark and live-words bits) and reading the
//! references they hold, shared by the stop-the-world marker (serial and parallel), the
//! concurrent marker, the remark and the barrier-free rescans.
//!
//! How a reference slot is read is a type parameter ([`SlotAccess`], the access-mode idea of
//! V8's cppgc): [`Plain`] loads when the world is stopped, [`Atomic`] (relaxed) loads while
//! mutators run and may store into the same slots. Headers are read plainly in both modes:
//! they never change after allocation.
//!
//! Shading rules (the same for every caller):
//! - a value is a candidate only if it is non-null and word-aligned (immediates are not);
//! - in the moving space, an object in `[from, limit)` is shaded by setting its header bit in
//!   the mark bitmap and every one of its words in the live-words bitmap (the two bitmaps the
//!   planner reads); `limit` is the old top (stop-the-world) or `mark_top` (concurrent:
//!   objects above it were allocated during marking and are black already);
//! - a large object is shaded by setting its first page's bit in the large space's marks.
//!
//! Invariants: shading is idempotent and thread-safe (atomic bit sets: exactly one caller gets
//! `true` per object); a caller scans each object it shaded at most once; nothing here writes
//! the heap. Scanning an object ([`Tracer::shade_refs`]) shades its references in slot order,
//! each a few references after it was read and its header prefetched (a hint only: a prefetch
//! never faults, so it may name any address). The serial tracer and the concurrent marker's
//! steps keep that ring of references in flight across objects ([`Ahead`]: a tree's or a
//! list's object holds one or two) and empty it whenever their stack runs empty, so a trace
//! never ends with a reference read and not shaded.

use core::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::object::{Header, RefSlots, ScanLayout, ScanTable, TypeRegistry, WORD};
use faultline_heap::PAGE_SIZE;

use crate::graypool::{GrayLocal, GrayPool, Idle};
use crate::space::LargeSpace;

/// How a reference slot of a live object is read.
pub(crate) trait SlotAccess {
    /// Read the word at `a`, a word-aligned slot of a live object in present memory.
    fn load(a: usize) -> usize;
}

/// Plain loads: the world is stopped, nobody writes concurrently.
pub(crate) struct Plain;

/// Relaxed atomic loads: mutators may store into the slot meanwhile (they store atomically
/// too).
pub(crate) struct Atomic;

impl SlotAccess for Plain {
    #[inline]
    fn load(a: usize) -> usize {
        // SAFETY: by the trait's contract `a` is a slot of a live object in present memory, and
        // no thread writes it while the world is stopped.
        unsafe { (a as *const usize).read() }
    }
}

impl SlotAccess for Atomic {
    #[inline]
    fn load(a: usize) -> usize {
        // SAFETY: by the trait's contract `a` is a word-aligned slot of a live object in present
        // memory; mutators write slots with atomic stores too.
        unsafe { AtomicUsize::from_ptr(a as *mut usize) }.load(Ordering::Relaxed)
    }
}

/// How many references [`Tracer::shade_refs`] keeps in flight: each is prefetched this many
/// references before it is shaded.
pub(crate) const SHADE_AHEAD: usize = 16;

/// Read the header at `a`.
#[inline]
pub(crate) fn header(a: usize) -> Header {
    // SAFETY: callers pass the address of a live object in present heap memory; headers never
    // change after allocation.
    Header(unsafe { (a as *const u64).read() })
}

/// Everything shading and scanning needs.
pub(crate) struct Tracer<'a, A: SlotAccess> {
    /// Base of the moving space's current half.
    pub from: usize,
    /// Objects at or above this address in the moving space are not shaded here.
    pub limit: usize,
    /// Mark bitmap (one bit per word, set at object headers).
    pub mark: &'a Bitmap,
    /// Live-words bitmap (every word of every marked object).
    pub live: &'a LiveWords,
    /// The large-object space (its own page marks).
    pub large: &'a LargeSpace,
    /// Object layouts.
    pub types: &'a TypeRegistry,
    /// The same layouts as one table of values (a size or the reference slots in one lookup).
    pub scan: ScanTable<'a>,
    /// The slot access mode.
    pub access: PhantomData<A>,
}

impl<A: SlotAccess> Clone for Tracer<'_, A> {
    fn clone(&self) -> Self {
        Tracer {
            from: self.from,
            limit: self.limit,
            mark: self.mark,
            live: self.live,
            large: self.large,
            types: self.types,
            scan: self.scan,
            access: PhantomData,
        }
    }
}

impl<'a, A: SlotAccess> Tracer<'a, A> {
    /// A tracer over `[from, limit)` of the moving space and the large-object space.
    pub(crate) fn new(
        from: usize,
        limit: usize,
        mark: &'a Bitmap,
        live: &'a LiveWords,
        large: &'a LargeSpace,
        types: &'a TypeRegistry,
    ) -> Self {
        Tracer {
            from,
            limit,
            mark,
            live,
            large,
            types,
            scan: types.scan_table(),
            access: PhantomData,
        }
    }

    /// The size in words of the object at `a` (1 for an unknown type: a filler), from the
    /// layout table: the figure [`TypeRegistry::size_words`] gives.
    #[inline]
    pub(crate) fn size_words(&self, a: usize) -> usize {
        let h = header(a);
        self.scan.get(h).size_words(h)
    }

    /// Shade `v` if it is an unshaded object; true if this call shaded it (scan it next).
    #[inline]
    pub(crate) fn shade(&self, v: usize) -> bool {
        if v == 0 || !v.is_multiple_of(WORD) {
            return false;
        }
        if v >= self.from && v < self.limit {
            let w = (v - self.from) / WORD;
            if self.mark.set(w) {
                self.live.mark_range(w, w + self.size_words(v));
                return true;
            }
            false
        } else if self.large.contains(v) && v.is_multiple_of(PAGE_SIZE) {
            self.large.marks.set(self.large.page_of(v))
        } else {
            false
        }
    }

    /// Shade every reference held in words `[from_k, to_k)` of the object at `obj` (word 0 is
    /// its header; `to_k` is clipped to the object's size), in slot order as
    /// [`TypeRegistry::for_each_ref_word`] lists them, and call `on_new` with each one this
    /// call shaded. The slots come from the layout table ([`ScanTable`]).
    /// Shading reads the child's header (its size, for the live-words bitmap), a cache miss
    /// per child in a heap larger than the caches; so each candidate in the moving space's
    /// range is prefetched when it is read and shaded [`SHADE_AHEAD`] references later, and
    /// the misses of one object's children overlap instead of following one another. The
    /// same references are shaded as one at a time, in the same order.
    #[inline]
    pub(crate) fn shade_refs(
        &self,
        obj: usize,
        from_k: usize,
        to_k: usize,
        mut on_new: impl FnMut(usize),
    ) {
        let h = header(obj);
        let l = self.scan.get(h);
        let to_k = to_k.min(l.size_words(h));
        if from_k >= to_k {
            return;
        }
        let mut ahead = Ahead::default();
        self.feed_refs(obj, h, l, from_k, to_k, &mut ahead, &mut on_new);
        ahead.flush(self, &mut on_new);
    }

    /// Feed the references held in words `[from_k, to_k)` of the object at `obj` (header
    /// `h`, layout `l`, `to_k` within its size) to `ahead`, in slot order: each is prefetched
    /// now and shaded [`SHADE_AHEAD`] references later (`on_new` called with those shaded).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn feed_refs(
        &self,
        obj: usize,
        h: Header,
        l: ScanLayout,
        from_k: usize,
        to_k: usize,
        ahead: &mut Ahead,
        on_new: &mut impl FnMut(usize),
    ) {
        // One loop per slot form, each with the step inlined (a closure shared by the three
        // was compiled out of line: a call per reference).
        match l.ref_slots(h, from_k, to_k) {
            RefSlots::Mask(mut m) => {
                while m != 0 {
                    let k = m.trailing_zeros() as usize;
                    ahead.feed(self, A::load(obj + k * WORD), on_new);
                    m &= m - 1;
                }
            }
            RefSlots::Range(a, b) => {
                for k in a..b {
                    ahead.feed(self, A::load(obj + k * WORD), on_new);
                }
            }
            RefSlots::Registry => self.types.for_each_ref_word(h, from_k, to_k, |k| {
                ahead.feed(self, A::load(obj + k * WORD), on_new)
            }),
        }
    }

    /// Scan the whole object at `o` with [`Self::scan_words_ahead`].
    #[inline(always)]
    fn scan_ahead(&self, o: usize, ahead: &mut Ahead, stack: &mut impl GrayStack) -> usize {
        let h = header(o);
        let l = self.scan.get(h);
        self.scan_words_ahead(o, h, l, 0, l.size_words(h), ahead, stack)
    }

    /// Scan words `[from_k, to_k)` of the object at `o` (header `h`, layout `l`, `to_k`
    /// within its size; an empty range scans nothing) through `ahead` (its references
    /// prefetched now, shaded up to [`SHADE_AHEAD`] references later), pushing each one
    /// shaded on `stack`; when `stack` is empty after it, empty the ring into it too, so a
    /// trace never ends with a reference read and not shaded (every tracer and marker scans
    /// through here). Returns the objects shaded.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn scan_words_ahead(
        &self,
        o: usize,
        h: Header,
        l: ScanLayout,
        from_k: usize,
        to_k: usize,
        ahead: &mut Ahead,
        stack: &mut impl GrayStack,
    ) -> usize {
        let mut n = 0;
        if from_k < to_k {
            self.feed_refs(o, h, l, from_k, to_k, ahead, &mut |c| {
                n += 1;
                stack.push_gray(c);
            });
        }
        if stack.is_empty_gray() {
            ahead.flush(self, &mut |c| {
                n += 1;
                stack.push_gray(c);
            });
        }
        n
    }

    /// Trace from `roots` to completion on this thread; returns the objects shaded.
    pub(crate) fn trace_serial(&self, roots: Vec<usize>) -> usize {
        let mut stack: Vec<usize> = roots.into_iter().filter(|&r| self.shade(r)).collect();
        let mut n = stack.len();
        // One ring of references in flight across objects (an object of a tree or a list
        // holds one or two: a ring per object would keep one or two misses in flight).
        let mut ahead = Ahead::default();
        while let Some(o) = stack.pop() {
            // The next object's header is read when it is scanned, often long after it was
            // shaded (its siblings' subtrees came first): ask for it now.
            if let Some(&next) = stack.last() {
                crate::dense::prefetch(next);
            }
            n += self.scan_ahead(o, &mut ahead, &mut stack);
        }
        n
    }
}

impl<A: SlotAccess> Tracer<'_, A>
where
    Self: Sync,
{
    /// Trace from `roots` to completion with `threads` threads stealing work from each other
    /// (the gray pool of the concurrent markers, [`GrayPool`]: a local stack per thread whose
    /// work counts once in the pool's pending count, so pushes and pops cost no shared atomic,
    /// and the ring of references in flight across objects of [`Self::trace_serial`]); returns
    /// the objects shaded.
    pub(crate) fn trace_parallel(&self, roots: Vec<usize>, threads: usize) -> usize {
        let pool = GrayPool::default();
        let marked = AtomicUsize::new(0);
        {
            // The roots go to the pool's shared queue when this holder is dropped.
            let mut holder = GrayLocal::private(&pool);
            for r in roots {
                if self.shade(r) {
                    marked.fetch_add(1, Ordering::Relaxed);
                    holder.push(r);
                }
            }
        }
        let (pool, marked) = (&pool, &marked);
        crate::crew::fan_out(
            "faultline-trace",
            threads,
            |_| {
                let mut gray = GrayLocal::shared(pool);
                let mut ahead = Ahead::default();
                let mut n = 0usize;
                let mut idle = Idle::default();
                loop {
                    let Some(o) = gray.pop() else {
                        if pool.pending() == 0 {
                            break;
                        }
                        // Another thread holds the rest (and may push more).
                        idle.wait(false);
                        continue;
                    };
                    idle.reset();
                    if let Some(next) = gray.peek() {
                        crate::dense::prefetch(next);
                    }
                    // The ring is empty before the stack's pending token can go.
                    n += self.scan_ahead(o, &mut ahead, &mut gray);
                    gray.finished();
                }
                debug_assert!(ahead.is_empty());
                marked.fetch_add(n, Ordering::Relaxed);
            },
            || (),
        );
        marked.load(Ordering::Relaxed)
    }
}

/// A tracer's stack of gray objects, as [`Tracer::scan_words_ahead`] uses it: the serial
/// tracer's vector, a parallel tracer's or a concurrent marker's part of the gray pool.
pub(crate) trait GrayStack {
    fn push_gray(&mut self, o: usize);
    /// Whether this stack holds nothing (its owner's next pop would look elsewhere).
    fn is_empty_gray(&self) -> bool;
}

impl GrayStack for Vec<usize> {
    #[inline]
    fn push_gray(&mut self, o: usize) {
        self.push(o);
    }
    #[inline]
    fn is_empty_gray(&self) -> bool {
        self.is_empty()
    }
}

impl GrayStack for GrayLocal<'_> {
    #[inline]
    fn push_gray(&mut self, o: usize) {
        self.push(o);
    }
    #[inline]
    fn is_empty_gray(&self) -> bool {
        self.stacked() == 0
    }
}

/// The references [`Tracer::shade_refs`] has read and not yet shaded: each is prefetched when
/// read and shaded [`SHADE_AHEAD`] references later.
#[derive(Default)]
pub(crate) struct Ahead {
    ring: [usize; SHADE_AHEAD],
    /// References read so far.
    n: usize,
}

impl Ahead {
    /// Take the reference `c` just read: prefetch it, and shade the one read
    /// [`SHADE_AHEAD`] references ago (calling `on_new` if this shaded it).
    #[inline(always)]
    fn feed<A: SlotAccess>(&mut self, t: &Tracer<'_, A>, c: usize, on_new: &mut impl FnMut(usize)) {
        if c >= t.from && c < t.limit {
            crate::dense::prefetch(c);
        }
        let due = core::mem::replace(&mut self.ring[self.n % SHADE_AHEAD], c);
        if self.n >= SHADE_AHEAD && t.shade(due) {
            on_new(due);
        }
        self.n += 1;
    }

    /// Whether no reference is held.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Shade the references still held, in the order read; empty after.
    #[inline(always)]
    pub(crate) fn flush<A: SlotAccess>(
        &mut self,
        t: &Tracer<'_, A>,
        on_new: &mut impl FnMut(usize),
    ) {
        let n = self.n;
        for k in n.saturating_sub(SHADE_AHEAD)..n {
            let c = self.ring[k % SHADE_AHEAD];
            if t.shade(c) {
                on_new(c);
            }
        }
        self.n = 0;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use faultline_heap::object::TypeInfo;

    /// How the holder object's reference slots are laid out, one per form of
    /// [`RefSlots`]: a reference array, a fixed type with its slots below word 64 (a mask),
    /// and a fixed type with its slots at word 64 and beyond (the registry's list).
    #[derive(Clone, Copy, Debug)]
    enum Holder {
        Array,
        Mask,
        List,
    }

    /// A plain-vector "heap": one holder object of `n` reference slots at word 0, then `n`
    /// two-word leaf objects; returns the words, the holder's slot word indices and the
    /// leaves' word indices (the caller fills the slots).
    fn heap_with_holder(
        types: &mut TypeRegistry,
        n: usize,
        holder: Holder,
    ) -> (Vec<u64>, Vec<usize>, Vec<usize>) {
        let first = match holder {
            Holder::Array | Holder::Mask => 1,
            Holder::List => 64,
        };
        let (info, len) = match holder {
            Holder::Array => (TypeInfo::ref_array("refs"), n),
            Holder::Mask | Holder::List => {
                let offsets: Vec<usize> = (0..n).map(|k| (first - 1 + k) * WORD).collect();
                let t = TypeInfo::fixed("holder", (first - 1 + n) * WORD, &offsets);
                (t, 0)
            }
        };
        let held = types.register(info).expect("a valid layout");
        let leaf = types
            .register(TypeInfo::fixed("leaf", 8, &[]))
            .expect("a valid layout");
        let size = first + n;
        let mut words = vec![0u64; size + 2 * n];
        words[0] = Header::new(held, len as u32).0;
        let mut leaves = Vec::new();
        for i in 0..n {
            let w = size + 2 * i;
            words[w] = Header::new(leaf, 8).0;
            leaves.push(w);
        }
        (words, (first..size).collect(), leaves)
    }

    /// A plain-vector heap of 3-word pairs: a complete binary tree of `reached` pairs (pair
    /// `i` holds pairs `2i + 1` and `2i + 2` while they are below `reached`; pair 0 is the
    /// root), then `unreached` pairs nothing references; with the bitmaps and the (empty)
    /// large space a tracer over it needs.
    pub(crate) struct PairTree {
        words: Vec<u64>,
        pub types: TypeRegistry,
        pub mark: Bitmap,
        pub live: LiveWords,
        pub large: LargeSpace,
        reached: usize,
    }

    impl PairTree {
        pub(crate) fn new(reached: usize, unreached: usize) -> Self {
            let mut types = TypeRegistry::default();
            let pair = types
                .register(TypeInfo::fixed("pair", 16, &[0, 8]))
                .expect("a valid layout");
            let total = reached + unreached;
            let mut words = vec![0u64; 3 * total];
            let from = words.as_mut_ptr() as usize;
            for i in 0..total {
                words[3 * i] = Header::new(pair, 16).0;
                for (k, c) in [2 * i + 1, 2 * i + 2].into_iter().enumerate() {
                    if i < reached && c < reached {
                        words[3 * i + 1 + k] = (from + 3 * c * WORD) as u64;
                    }
                }
            }
            let bits = words.len() + 64;
            PairTree {
                words,
                types,
                mark: Bitmap::new(bits),
                live: LiveWords::new(bits),
                large: LargeSpace::new(0, 0),
                reached,
            }
        }

        /// The address of pair `i` (pair 0: the root).
        pub(crate) fn pair(&self, i: usize) -> usize {
            self.words.as_ptr() as usize + 3 * i * WORD
        }

        /// A tracer over the whole vector.
        pub(crate) fn tracer<A: SlotAccess>(&self) -> Tracer<'_, A> {
            let end = self.pair(self.words.len() / 3);
            let (from, mark, live) = (self.pair(0), &self.mark, &self.live);
            Tracer::new(from, end, mark, live, &self.large, &self.types)
        }

        /// Assert that exactly the tree's pairs are marked, each with its three words live.
        pub(crate) fn assert_exactly_the_tree_marked(&self, what: &str) {
            for i in 0..self.words.len() / 3 {
                let w = 3 * i;
                let want = i < self.reached;
                assert_eq!(self.mark.get(w), want, "mark of pair {i}, {what}");
                for k in 0..3 {
                    assert_eq!(self.live.bits.get(w + k), want, "pair {i} word {k}, {what}");
                }
            }
        }
    }

    /// The serial and parallel tracers shade exactly the objects reachable from the roots,
    /// each once, with all their words live: a complete binary tree of pairs and, beside it,
    /// pairs no root reaches.
    #[test]
    fn serial_and_parallel_tracers_shade_exactly_what_the_roots_reach() {
        let n = 4095;
        for threads in [0, 1, 2, 4] {
            let h = PairTree::new(n, 100);
            let t = h.tracer::<Plain>();
            // The root twice: shaded once.
            let roots = vec![h.pair(0), h.pair(0)];
            let shaded = if threads == 0 {
                t.trace_serial(roots)
            } else {
                t.trace_parallel(roots, threads)
            };
            assert_eq!(shaded, n, "{threads} threads");
            h.assert_exactly_the_tree_marked(&format!("{threads} threads"));
        }
    }

    /// `shade_refs` keeps references in flight: whatever the count against its ring, every
    /// candidate is shaded exactly once, `on_new` sees exactly the newly shaded ones in slot
    /// order, and their words are live; nulls, immediates, repeats and out-of-range values
    /// are passed over as by `shade`.
    #[test]
    fn shading_ahead_shades_what_one_at_a_time_shades_in_the_same_order() {
        for holder in [Holder::Array, Holder::Mask, Holder::List] {
            shading_ahead_matches(holder);
        }
    }

    fn shading_ahead_matches(holder: Holder) {
        for n in [
            1,
            2,
            SHADE_AHEAD - 1,
            SHADE_AHEAD,
            SHADE_AHEAD + 1,
            3 * SHADE_AHEAD + 5,
        ] {
            let mut types = TypeRegistry::default();
            let (mut words, slot_words, leaves) = heap_with_holder(&mut types, n, holder);
            let from = words.as_mut_ptr() as usize;
            let addr = |w: usize| from + w * WORD;
            // Slot values: each leaf once, then (where there are enough slots) the first leaf
            // again in the middle, a null, an immediate (odd) and an address past the range.
            let mut slots: Vec<usize> = leaves.iter().map(|&w| addr(w)).collect();
            if n >= 4 {
                slots[n / 2] = addr(leaves[0]); // a repeat: leaf n/2 is not referenced
                slots[1] = 0;
                slots[2] = 0x1235;
                slots[3] = addr(words.len() + 8);
            }
            for (&w, &v) in slot_words.iter().zip(&slots) {
                words[w] = v as u64;
            }
            let end = addr(words.len());
            let mark = Bitmap::new(words.len() + 64);
            let live = LiveWords::new(words.len() + 64);
            let large = LargeSpace::new(0, 0);
            let t = Tracer::<Plain>::new(from, end, &mark, &live, &large, &types);
            let mut seen = Vec::new();
            t.shade_refs(from, 0, usize::MAX, |c| seen.push(c));
            // One at a time, in slot order as the registry lists the slots, on fresh bitmaps:
            // the reference answer.
            let (mark1, live1) = (
                Bitmap::new(words.len() + 64),
                LiveWords::new(words.len() + 64),
            );
            let t1 = Tracer::<Plain>::new(from, end, &mark1, &live1, &large, &types);
            let mut want = Vec::new();
            let h = header(from);
            let size = types.size_words(h).expect("a registered type");
            types.for_each_ref_word(h, 0, size, |k| {
                let c = Plain::load(from + k * WORD);
                if t1.shade(c) {
                    want.push(c);
                }
            });
            assert_eq!(seen, want, "{holder:?}, n = {n}");
            assert!(!want.is_empty());
            for w in 0..words.len() {
                assert_eq!(
                    mark.get(w),
                    mark1.get(w),
                    "{holder:?} mark bit {w}, n = {n}"
                );
                assert_eq!(
                    live.bits.get(w),
                    live1.bits.get(w),
                    "{holder:?} live bit {w}"
                );
            }
            // Shading again finds nothing new.
            t.shade_refs(from, 0, usize::MAX, |_| panic!("shaded twice"));
        }
    }
}
