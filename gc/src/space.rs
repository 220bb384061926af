//! The spaces inside the volatile arena.
//!
//! ```text
//!  arena:  [ half 0 (max_heap) | half 1 (max_heap) | large-object space ]
//!  moving space: objects are bump-allocated in the *current* half; a collection compacts the
//!  live ones into the other half, which becomes current; the old half is released.
//!  With pinned objects ([`crate::pins`]) a half's *window* [`MovingSpace::base`] may start
//!  above its first page: below it lie only stranded (pinned) objects and garbage pages.
//! ```
//!
//! Invariants:
//! - `top` only grows between collections, by CAS, and never passes the current half's end;
//!   `[window, top)` is a parseable sequence of objects (zero words are one-word fillers);
//!   the window (page aligned) changes only in a pause;
//! - `populated` (guarded by its mutex) is the page-aligned end of the memory made present in
//!   the current half; every buffer handed out lies below it, so the allocation path never
//!   faults; everything from it to the half's end is absent;
//! - the large-object space hands out whole pages; each object's pages are made present when it
//!   is allocated and released when it dies; its bookkeeping is behind one mutex (large objects
//!   are rare), its mark bits are atomic (one bit per page, set at the object's first page).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use faultline_heap::bitmap::Bitmap;
use faultline_heap::{ArenaError, ArenaOffset, VolatileArena, PAGE_SIZE};

/// The moving space (two halves).
#[derive(Debug)]
pub struct MovingSpace {
    /// Bytes per half.
    pub half_bytes: usize,
    /// Arena offset of each half.
    pub half_offset: [ArenaOffset; 2],
    /// Absolute address of each half.
    pub half_base: [usize; 2],
    /// Index of the current half (changes only inside a pause).
    pub current: AtomicUsize,
    /// Start of the current half's window (absolute, page aligned; the half's base unless
    /// stranded pinned objects lie in it; changes only inside a pause).
    pub window: AtomicUsize,
    /// Bump pointer in the current half (absolute).
    pub top: AtomicUsize,
    /// End of present memory in the current half (absolute, page aligned).
    pub populated: Mutex<usize>,
}

impl MovingSpace {
    /// Base of the current half's window: where its objects start.
    #[inline]
    pub fn base(&self) -> usize {
        self.window.load(Ordering::Relaxed)
    }
    /// End of the current half.
    #[inline]
    pub fn end(&self) -> usize {
        self.half_base[self.current.load(Ordering::Relaxed)] + self.half_bytes
    }
    /// Bytes in use in the current half.
    pub fn used(&self) -> usize {
        self.top.load(Ordering::Relaxed) - self.base()
    }
    /// Whether `a` lies in the current half's used part.
    #[inline]
    pub fn contains_used(&self, a: usize) -> bool {
        a >= self.base() && a < self.top.load(Ordering::Relaxed)
    }
    /// Whether `a` lies in the half that is not current.
    pub fn in_other_half(&self, a: usize) -> bool {
        let other = self.half_base[1 - self.current.load(Ordering::Relaxed)];
        a >= other && a < other + self.half_bytes
    }

    /// Carve `bytes` off the current half; `None` if it is full. Makes the memory present.
    pub fn bump(
        &self,
        arena: &VolatileArena,
        bytes: usize,
        batch: usize,
    ) -> Result<Option<usize>, ArenaError> {
        let end = self.end();
        let mut cur = self.top.load(Ordering::Relaxed);
        let start = loop {
            if cur + bytes > end {
                return Ok(None);
            }
            match self.top.compare_exchange_weak(
                cur,
                cur + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break cur,
                Err(actual) => cur = actual,
            }
        };
        self.ensure_populated(arena, start + bytes, batch)?;
        Ok(Some(start))
    }

    /// Make the current half present up to `upto` (rounded up to `batch`, capped at the end).
    pub fn ensure_populated(
        &self,
        arena: &VolatileArena,
        upto: usize,
        batch: usize,
    ) -> Result<(), ArenaError> {
        let mut pop = self
            .populated
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if upto <= *pop {
            return Ok(());
        }
        let base = self.base();
        let target = ((upto - base).div_ceil(batch) * batch).min(self.end() - base) + base;
        let from = *pop;
        arena.populate(arena.offset_of(from), target - from)?;
        *pop = target;
        Ok(())
    }
}

/// Bookkeeping of the large-object space.
#[derive(Debug, Default)]
pub struct LargeInner {
    /// Free ranges: start -> length (bytes).
    pub free: BTreeMap<usize, usize>,
    /// Live objects: start -> length (bytes, page multiple).
    pub objects: BTreeMap<usize, usize>,
    /// Bytes held by objects.
    pub used: usize,
}

/// The non-moving large-object space.
#[derive(Debug)]
pub struct LargeSpace {
    /// Absolute base.
    pub base: usize,
    /// Bytes.
    pub size: usize,
    /// Mark bits, one per page (set at an object's first page).
    pub marks: Bitmap,
    /// Free list and object table.
    pub inner: Mutex<LargeInner>,
}

impl LargeSpace {
    /// A space of `size` bytes at `base`.
    pub fn new(base: usize, size: usize) -> Self {
        let mut inner = LargeInner::default();
        if size > 0 {
            inner.free.insert(base, size);
        }
        LargeSpace {
            base,
            size,
            marks: Bitmap::new((size / PAGE_SIZE).max(1)),
            inner: Mutex::new(inner),
        }
    }

    /// Lock the bookkeeping (a poisoned lock is still consistent: every update is one step).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, LargeInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `a` lies inside the space.
    #[inline]
    pub fn contains(&self, a: usize) -> bool {
        a >= self.base && a < self.base + self.size
    }

    /// Page index of `a`.
    #[inline]
    pub fn page_of(&self, a: usize) -> usize {
        (a - self.base) / PAGE_SIZE
    }

    /// Allocate `bytes` (rounded to pages), first fit; present and zeroed.
    pub fn alloc(&self, arena: &VolatileArena, bytes: usize) -> Result<Option<usize>, ArenaError> {
        let len = bytes.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let mut g = self.lock();
        let Some((&start, &flen)) = g.free.iter().find(|(_, &l)| l >= len) else {
            return Ok(None);
        };
        g.free.remove(&start);
        if flen > len {
            g.free.insert(start + len, flen - len);
        }
        if let Err(e) = arena.populate(arena.offset_of(start), len) {
            // Give the range back: nothing was handed out.
            Self::insert_free(&mut g, start, len);
            return Err(e);
        }
        g.objects.insert(start, len);
        g.used += len;
        Ok(Some(start))
    }

    fn insert_free(g: &mut LargeInner, start: usize, len: usize) {
        let mut s = start;
        let mut l = len;
        if let Some((&ps, &pl)) = g.free.range(..s).next_back() {
            if ps + pl == s {
                g.free.remove(&ps);
                s = ps;
                l += pl;
            }
        }
        if let Some(&nl) = g.free.get(&(s + l)) {
            g.free.remove(&(s + l));
            l += nl;
        }
        g.free.insert(s, l);
    }

    /// Free the objects `dead` (found unmarked by this cycle's flip: until this call they stay
    /// allocated, so their space cannot be handed out again before their pages are released).
    /// Returns bytes freed.
    pub fn release_dead(
        &self,
        arena: &VolatileArena,
        dead: &[(usize, usize)],
    ) -> Result<usize, ArenaError> {
        let mut g = self.lock();
        let mut freed = 0;
        for &(s, l) in dead {
            arena.release(arena.offset_of(s), l)?;
            g.objects.remove(&s);
            g.used -= l;
            Self::insert_free(&mut g, s, l);
            freed += l;
        }
        Ok(freed)
    }

    /// Bytes held by objects.
    pub fn used(&self) -> usize {
        self.lock().used
    }
}
