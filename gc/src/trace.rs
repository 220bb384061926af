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
//! never faults, so it may name any address).

use core::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};

use crossbeam::deque::{Injector, Steal, Stealer, Worker};
use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::object::{Header, TypeRegistry, WORD};
use faultline_heap::PAGE_SIZE;

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
pub(crate) const SHADE_AHEAD: usize = 8;

/// Read the header at `a`.
#[inline]
pub(crate) fn header(a: usize) -> Header {
    // SAFETY: callers pass the address of a live object in present heap memory; headers never
    // change after allocation.
    Header(unsafe { (a as *const u64).read() })
}

/// The size in words of the object whose header is at `a` (1 for an unknown type: a filler).
#[inline]
pub(crate) fn size_words(types: &TypeRegistry, a: usize) -> usize {
    types.size_words(header(a)).unwrap_or(1)
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
            access: PhantomData,
        }
    }

    /// Shade `v` if it is an unshaded object; true if this call shaded it (scan it next).
    #[inline]
    pub(crate) fn shade(&self, v: usize) -> bool {
        if v == 0 || v % WORD != 0 {
            return false;
        }
        if v >= self.from && v < self.limit {
            let w = (v - self.from) / WORD;
            if self.mark.set(w) {
                self.live.mark_range(w, w + size_words(self.types, v));
                return true;
            }
            false
        } else if self.large.contains(v) && v % PAGE_SIZE == 0 {
            self.large.marks.set(self.large.page_of(v))
        } else {
            false
        }
    }

    /// Call `f` with every reference held in words `[from_k, to_k)` of the object at `obj`
    /// (word 0 is its header; `to_k` is clipped to the object's size).
    #[inline]
    pub(crate) fn for_each_ref(
        &self,
        obj: usize,
        from_k: usize,
        to_k: usize,
        mut f: impl FnMut(usize),
    ) {
        let h = header(obj);
        let size = self.types.size_words(h).unwrap_or(1);
        let to_k = to_k.min(size);
        if from_k >= to_k {
            return;
        }
        self.types
            .for_each_ref_word(h, from_k, to_k, |k| f(A::load(obj + k * WORD)));
    }

    /// Shade every reference held in words `[from_k, to_k)` of the object at `obj` (as
    /// [`Self::for_each_ref`] yields them) and call `on_new` with each one this call shaded.
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
        let mut ring = [0usize; SHADE_AHEAD];
        let mut n = 0usize;
        self.for_each_ref(obj, from_k, to_k, |c| {
            if c >= self.from && c < self.limit {
                crate::dense::prefetch(c);
            }
            let slot = &mut ring[n % SHADE_AHEAD];
            let due = core::mem::replace(slot, c);
            if n >= SHADE_AHEAD && self.shade(due) {
                on_new(due);
            }
            n += 1;
        });
        for k in n.saturating_sub(SHADE_AHEAD)..n {
            let c = ring[k % SHADE_AHEAD];
            if self.shade(c) {
                on_new(c);
            }
        }
    }

    /// Shade every child of `obj` and push the newly shaded ones on `stack`; returns how many.
    #[inline]
    pub(crate) fn scan_into(&self, obj: usize, stack: &mut Vec<usize>) -> usize {
        let mut n = 0;
        self.shade_refs(obj, 0, usize::MAX, |c| {
            n += 1;
            stack.push(c);
        });
        n
    }

    /// Trace from `roots` to completion on this thread; returns the objects shaded.
    pub(crate) fn trace_serial(&self, roots: Vec<usize>) -> usize {
        let mut stack: Vec<usize> = roots.into_iter().filter(|&r| self.shade(r)).collect();
        let mut n = stack.len();
        while let Some(o) = stack.pop() {
            // The next object's header is read when it is scanned, often long after it was
            // shaded (its siblings' subtrees came first): ask for it now.
            if let Some(&next) = stack.last() {
                crate::dense::prefetch(next);
            }
            n += self.scan_into(o, &mut stack);
        }
        n
    }
}

impl<A: SlotAccess> Tracer<'_, A>
where
    Self: Sync,
{
    /// Trace from `roots` to completion with `threads` threads stealing work from each other
    /// (crossbeam deques); returns the objects shaded.
    pub(crate) fn trace_parallel(&self, roots: Vec<usize>, threads: usize) -> usize {
        let injector = Injector::new();
        let pending = AtomicUsize::new(0);
        let marked = AtomicUsize::new(0);
        for r in roots {
            if self.shade(r) {
                pending.fetch_add(1, Ordering::SeqCst);
                marked.fetch_add(1, Ordering::Relaxed);
                injector.push(r);
            }
        }
        let workers: Vec<Worker<usize>> = (0..threads).map(|_| Worker::new_lifo()).collect();
        let stealers: Vec<Stealer<usize>> = workers.iter().map(Worker::stealer).collect();
        std::thread::scope(|s| {
            for w in workers {
                let (injector, stealers, pending, marked) =
                    (&injector, &stealers, &pending, &marked);
                s.spawn(move || loop {
                    let task = w.pop().or_else(|| {
                        std::iter::repeat_with(|| {
                            injector
                                .steal_batch_and_pop(&w)
                                .or_else(|| stealers.iter().map(Stealer::steal).collect())
                        })
                        .find(|s: &Steal<usize>| !s.is_retry())
                        .and_then(Steal::success)
                    });
                    match task {
                        Some(o) => {
                            self.shade_refs(o, 0, usize::MAX, |c| {
                                pending.fetch_add(1, Ordering::SeqCst);
                                marked.fetch_add(1, Ordering::Relaxed);
                                w.push(c);
                            });
                            pending.fetch_sub(1, Ordering::SeqCst);
                        }
                        None => {
                            if pending.load(Ordering::SeqCst) == 0 {
                                break;
                            }
                            std::thread::yield_now();
                        }
                    }
                });
            }
        });
        marked.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_heap::object::TypeInfo;

    /// A plain-vector "heap": one ref array of `n` slots at word 0, then `n` two-word leaf
    /// objects; returns the words and the leaves' word indices (the caller fills the slots).
    fn heap_with_array(types: &mut TypeRegistry, n: usize) -> (Vec<u64>, Vec<usize>) {
        let arr = types
            .register(TypeInfo::ref_array("refs"))
            .expect("a valid layout");
        let leaf = types
            .register(TypeInfo::fixed("leaf", 8, &[]))
            .expect("a valid layout");
        let mut words = vec![0u64; 1 + n + 2 * n];
        words[0] = Header::new(arr, n as u32).0;
        let mut leaves = Vec::new();
        for i in 0..n {
            let w = 1 + n + 2 * i;
            words[w] = Header::new(leaf, 8).0;
            leaves.push(w);
        }
        (words, leaves)
    }

    /// `shade_refs` keeps references in flight: whatever the count against its ring, every
    /// candidate is shaded exactly once, `on_new` sees exactly the newly shaded ones in slot
    /// order, and their words are live; nulls, immediates, repeats and out-of-range values
    /// are passed over as by `shade`.
    #[test]
    fn shading_ahead_shades_what_one_at_a_time_shades_in_the_same_order() {
        for n in [
            1,
            2,
            SHADE_AHEAD - 1,
            SHADE_AHEAD,
            SHADE_AHEAD + 1,
            3 * SHADE_AHEAD + 5,
        ] {
            let mut types = TypeRegistry::default();
            let (mut words, leaves) = heap_with_array(&mut types, n);
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
            for (k, &v) in slots.iter().enumerate() {
                words[1 + k] = v as u64;
            }
            let end = addr(words.len());
            let mark = Bitmap::new(words.len() + 64);
            let live = LiveWords::new(words.len() + 64);
            let large = LargeSpace::new(0, 0);
            let t = Tracer::<Plain>::new(from, end, &mark, &live, &large, &types);
            let mut seen = Vec::new();
            t.shade_refs(from, 0, usize::MAX, |c| seen.push(c));
            // One at a time, in slot order, on fresh bitmaps: the reference answer.
            let (mark1, live1) = (
                Bitmap::new(words.len() + 64),
                LiveWords::new(words.len() + 64),
            );
            let t1 = Tracer::<Plain>::new(from, end, &mark1, &live1, &large, &types);
            let mut want = Vec::new();
            t1.for_each_ref(from, 0, usize::MAX, |c| {
                if t1.shade(c) {
                    want.push(c);
                }
            });
            assert_eq!(seen, want, "n = {n}");
            assert!(!want.is_empty());
            for w in 0..words.len() {
                assert_eq!(mark.get(w), mark1.get(w), "mark bit {w}, n = {n}");
                assert_eq!(live.bits.get(w), live1.bits.get(w), "live bit {w}, n = {n}");
            }
            // Shading again finds nothing new.
            t.shade_refs(from, 0, usize::MAX, |_| panic!("shaded twice"));
        }
    }
}
