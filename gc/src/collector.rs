//! The collection cycle.
//!
//! # Stop-the-world cycle (`GcMode::StopTheWorld`)
//!
//! 1. **Stop** every mutator (the handshake of [`crate::heap`]); retire their allocation
//!    buffers. (Optionally verify the heap.)
//! 2. **Mark** from the roots (handles, value stacks, root sources, global roots): for each newly
//!    reached object in the moving space, set its header bit in the mark bitmap and every one of
//!    its words in the live-words bitmap; large objects get their page's mark bit. One thread, or
//!    `gc_threads` threads stealing work from each other (crossbeam deques). (Optionally check
//!    that the two bitmaps agree.)
//! 3. **Plan** (Compressor style): prefix sums of the live-words bitmap, two-level (per 512 KiB
//!    chunk, and per 64 words within a chunk). The new address of any object is then
//!    `to + 8 * rank(word)`: O(1), no forwarding pointers; the source object that lands on a
//!    destination page's first word is found on demand ([`Plan::first_obj`]: `select` + the
//!    mark bitmap). A concurrent cycle computes the chunk sums before its pause
//!    ([`faultline_heap::bitmap::LiveWords::plan_ahead`]) and the pause redoes only the chunks
//!    marking changed since: the flip pause does not grow with the heap.
//! 4. **Update roots** and the reference fields of surviving large objects to new addresses.
//! 5. **Compact**: fill destination pages in order, each from the source objects that land on
//!    it (objects straddling a page edge are clipped, so filling one page reads only the old half
//!    and writes only that page), rewriting the references they hold; map them into the other
//!    half in batches (`UFFDIO_COPY`, or a plain copy on an unregistered arena).
//! 6. **Release** the old half (`MADV_DONTNEED`), release dead large objects (a concurrent
//!    cycle does both when its compaction ends), switch halves, set
//!    the next occupancy trigger. (Optionally verify again.) **Resume** the mutators.
//!
//! The page-filling code ([`Plan::fill_page`]) is what the concurrent compactor will run from
//! its workers and fault handlers; stop-the-world mode runs it inside the pause.
//!
//! Invariants:
//! - every function here runs with the world stopped by the calling thread (`gc_active`);
//! - the old half stays intact until step 6, so filling a page never reads a filled page;
//! - a cycle makes no mapping call (mmap/munmap/mremap/mprotect) and no (un)registration: only
//!   COPY, MADV_DONTNEED and (for the large-object space) COPY of zeroes; the per-cycle call
//!   counts in [`CycleStats`] show it. The one exception is the deliberate per-cycle
//!   choreography baseline (`Choreography::PerCycle`), which registers, mremaps, unregisters and
//!   unmaps once per cycle, and counts those calls the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use crossbeam::deque::{Injector, Steal, Stealer, Worker};
use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::object::{Header, TypeId, TypeRegistry, WORD};
use faultline_heap::{ArenaError, PAGE_SIZE};

use crate::config::GcMode;
use crate::heap::{HeapInner, SpState};
use crate::mutator::MutatorShared;
use crate::stats::{CycleStats, Pause, Trigger};
use crate::verify::{self, VerifyError, VerifyReport};

/// Words per page.
const PAGE_WORDS: usize = PAGE_SIZE / WORD;
/// Destination pages filled per COPY in stop-the-world compaction.
const BATCH_PAGES: usize = 64;

/// Collector-owned side tables, reused across cycles.
pub(crate) struct CollectorState {
    pub mark: Bitmap,
    pub live: LiveWords,
    pub buf: Vec<u8>,
}

impl CollectorState {
    pub fn new(half_words: usize) -> Self {
        CollectorState {
            mark: Bitmap::new(half_words),
            live: LiveWords::new(half_words),
            buf: vec![0; BATCH_PAGES * PAGE_SIZE],
        }
    }
}

/// Visit every root slot; `f` may rewrite it.
pub(crate) fn visit_roots(inner: &HeapInner, g: &SpState, f: &mut dyn FnMut(&mut usize)) {
    for m in &g.mutators {
        // SAFETY: every mutator is stopped (or is the collecting thread itself, which is inside
        // this call and touches no roots meanwhile).
        let r = unsafe { m.roots_mut() };
        for h in r.handles.iter_mut() {
            f(h);
        }
        for s in r.stack.iter_mut() {
            f(s);
        }
        for src in &r.sources {
            src.for_each_root(&mut |a: &AtomicUsize| {
                let mut v = a.load(Ordering::Relaxed);
                f(&mut v);
                a.store(v, Ordering::Relaxed);
            });
        }
    }
    let mut globals = inner.globals.lock().unwrap_or_else(PoisonError::into_inner);
    for s in globals.slots.iter_mut() {
        f(s);
    }
    drop(globals);
    let sources = inner.sources.lock().unwrap_or_else(PoisonError::into_inner);
    for src in sources.iter() {
        src.for_each_root(&mut |a: &AtomicUsize| {
            let mut v = a.load(Ordering::Relaxed);
            f(&mut v);
            a.store(v, Ordering::Relaxed);
        });
    }
}

/// Read the header at `a`.
#[inline]
fn header(a: usize) -> Header {
    // SAFETY: callers pass the address of a live object in present heap memory.
    Header(unsafe { (a as *const u64).read() })
}

/// Everything marking needs.
struct Marker<'a> {
    from: usize,
    from_top: usize,
    mark: &'a Bitmap,
    live: &'a LiveWords,
    large: &'a crate::space::LargeSpace,
    types: &'a TypeRegistry,
}

impl Marker<'_> {
    /// Mark `v` if it is an unmarked object; true if this call marked it (scan it next).
    #[inline]
    fn try_mark(&self, v: usize) -> bool {
        if v == 0 || v % WORD != 0 {
            return false;
        }
        if v >= self.from && v < self.from_top {
            let w = (v - self.from) / WORD;
            if self.mark.set(w) {
                let size = self.types.size_words(header(v)).unwrap_or(1);
                self.live.mark_range(w, w + size);
                return true;
            }
            false
        } else if self.large.contains(v) && v % PAGE_SIZE == 0 {
            self.large.marks.set(self.large.page_of(v))
        } else {
            false
        }
    }

    /// Call `f` with every reference held by the object at `obj`.
    #[inline]
    fn scan(&self, obj: usize, mut f: impl FnMut(usize)) {
        let h = header(obj);
        let size = self.types.size_words(h).unwrap_or(1);
        self.types.for_each_ref_word(h, 0, size, |k| {
            // SAFETY: a reference slot of a live object.
            f(unsafe { ((obj + k * WORD) as *const usize).read() });
        });
    }

    fn mark_serial(&self, roots: Vec<usize>) -> usize {
        let mut stack: Vec<usize> = roots.into_iter().filter(|&r| self.try_mark(r)).collect();
        let mut n = stack.len();
        while let Some(o) = stack.pop() {
            self.scan(o, |c| {
                if self.try_mark(c) {
                    n += 1;
                    stack.push(c);
                }
            });
        }
        n
    }

    fn mark_parallel(&self, roots: Vec<usize>, threads: usize) -> usize {
        let injector = Injector::new();
        let pending = AtomicUsize::new(0);
        let marked = AtomicUsize::new(0);
        for r in roots {
            if self.try_mark(r) {
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
                            self.scan(o, |c| {
                                if self.try_mark(c) {
                                    pending.fetch_add(1, Ordering::SeqCst);
                                    marked.fetch_add(1, Ordering::Relaxed);
                                    w.push(c);
                                }
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

/// The compaction plan of one cycle: where every live object of the old half goes.
pub(crate) struct Plan<'a> {
    /// Old half base.
    pub from: usize,
    /// Where the old half's objects are read: `from`, or (per-cycle choreography) the mapping
    /// its pages were moved to. Addresses are computed from `from`; memory is read at `src`.
    pub src: usize,
    /// Old half top (exclusive).
    pub from_top: usize,
    /// New half base.
    pub to: usize,
    /// Live words in total (the compacted size in words).
    pub live_words: usize,
    pub live: &'a LiveWords,
    pub mark: &'a Bitmap,
    pub types: &'a TypeRegistry,
    /// Bitmap words covering the old half's used part.
    pub bitmap_words: usize,
}

impl Plan<'_> {
    /// New address of the object (or word) at old address `a`; other values unchanged.
    #[inline]
    pub fn forward(&self, v: usize) -> usize {
        if v % WORD == 0 && v >= self.from && v < self.from_top {
            self.to + WORD * self.live.rank((v - self.from) / WORD)
        } else {
            v
        }
    }

    /// Word index (in the old half) of the object that lands on the first word of destination
    /// page `page`: the live word of rank `page * PAGE_WORDS` (a `select`, O(log n)) belongs
    /// to the last marked object at or before it. Computed on demand, so planning builds no
    /// per-page table; async-signal-safe (reads only).
    #[inline]
    pub fn first_obj(&self, page: usize) -> usize {
        let w = self
            .live
            .select(page * PAGE_WORDS, self.bitmap_words)
            .expect("a live word for every destination word");
        self.mark
            .prev_set(w)
            .expect("every live word belongs to a marked object")
    }

    /// Fill destination page `page` into `out` (one page): copy the parts of the source
    /// objects that land on it and rewrite the references in them. Reads only the old half.
    pub fn fill_page(&self, page: usize, out: &mut [u8]) {
        debug_assert_eq!(out.len(), PAGE_SIZE);
        let dest_lo = page * PAGE_WORDS;
        let dest_hi = ((page + 1) * PAGE_WORDS).min(self.live_words);
        let limit = (self.from_top - self.from) / WORD;
        let out_words = out.as_mut_ptr() as *mut usize;
        let mut written = dest_lo;
        let mut w = self.first_obj(page);
        loop {
            let new_w = self.live.rank(w);
            if new_w >= dest_hi {
                break;
            }
            let src = self.src + w * WORD;
            let h = header(src);
            let size = self.types.size_words(h).unwrap_or(1);
            let lo = new_w.max(dest_lo);
            let hi = (new_w + size).min(dest_hi);
            // SAFETY: source words [w + lo - new_w, w + hi - new_w) lie inside a live object of
            // the intact old half; the destination range lies inside `out` (lo..hi within the
            // page).
            unsafe {
                core::ptr::copy_nonoverlapping(
                    (src + (lo - new_w) * WORD) as *const usize,
                    out_words.add(lo - dest_lo),
                    hi - lo,
                );
            }
            self.types
                .for_each_ref_word(h, lo - new_w, hi - new_w, |k| {
                    // SAFETY: `new_w + k` lies in [lo, hi), inside `out`.
                    unsafe {
                        let slot = out_words.add(new_w + k - dest_lo);
                        *slot = self.forward(*slot);
                    }
                });
            written = hi;
            if new_w + size >= dest_hi {
                break;
            }
            match self.mark.next_set(w + size, limit) {
                Some(n) => w = n,
                None => break,
            }
        }
        out[(written - dest_lo) * WORD..].fill(0);
    }
}

impl Plan<'_> {
    /// Destination page `k` is exactly old page `j` (fully live, same page offset): rewrite the
    /// references held in old page `j` in place. Reads headers of objects that start on earlier
    /// pages; writes only old page `j`.
    pub fn update_in_place(&self, k: usize, j: usize) {
        let dest_lo = k * PAGE_WORDS;
        let dest_hi = dest_lo + PAGE_WORDS;
        let limit = (self.from_top - self.from) / WORD;
        let shift = j * PAGE_WORDS - dest_lo; // old word = new word + shift on this page
        let mut w = self.first_obj(k);
        loop {
            let new_w = self.live.rank(w);
            if new_w >= dest_hi {
                break;
            }
            let h = header(self.src + w * WORD);
            let size = self.types.size_words(h).unwrap_or(1);
            let lo = new_w.max(dest_lo);
            let hi = (new_w + size).min(dest_hi);
            self.types
                .for_each_ref_word(h, lo - new_w, hi - new_w, |kk| {
                    let slot = (self.src + (new_w + kk + shift) * WORD) as *mut usize;
                    // SAFETY: the slot lies on old page `j`, which only this fill reads and writes.
                    unsafe { *slot = self.forward(*slot) };
                });
            if new_w + size >= dest_hi {
                break;
            }
            match self.mark.next_set(w + size, limit) {
                Some(n) => w = n,
                None => break,
            }
        }
    }
}

/// The outcome of the pause.
pub(crate) enum CycleOutcome {
    /// Stop-the-world: the cycle is complete.
    Done(Box<CycleStats>),
    /// Concurrent: the flip is done; compaction continues on a worker thread.
    Flipped(
        Box<CycleStats>,
        Box<faultline_heap::sys::CallSnapshot>,
        Instant,
    ),
}

/// Record a completed cycle: history and the GC-log hook.
pub(crate) fn record_cycle(inner: &HeapInner, stats: &CycleStats) {
    inner
        .history
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(stats.clone());
    if let Some(hook) = &inner.config.on_cycle {
        hook(stats);
    }
}

/// Verification after a concurrent cycle (whose compaction ends outside the pause): stops the
/// world on the compaction thread. Called after the compaction is marked idle, so mutators
/// waiting for it can reach their safepoints.
pub(crate) fn verify_after_concurrent(inner: &HeapInner, cycle: u64) {
    if inner.config.verify {
        if let Err(e) = verify_stopped(inner, None) {
            panic!("heap verification failed after concurrent cycle {cycle}: {e}");
        }
    }
}

/// Run one collection. Returns `Ok(None)` if another thread collected meanwhile.
pub(crate) fn collect(
    inner: &Arc<HeapInner>,
    me: Option<&Arc<MutatorShared>>,
    trigger: Trigger,
) -> Result<Option<CycleStats>, ArenaError> {
    let cycles_before = inner.cycles.load(Ordering::SeqCst);
    loop {
        // A cycle starts only when the previous one is complete (waiting counts as stopped,
        // so the running cycle's remark pause is not held up by us).
        inner.wait_idle_as(me);
        let t0 = Instant::now();
        let Some(g) = inner.stop_the_world(me) else {
            // The world was stopped by another thread. If that was a collection, an implicit
            // trigger is satisfied; an explicit one (and a stop for verification) runs its own.
            if trigger != Trigger::Explicit && inner.cycles.load(Ordering::SeqCst) != cycles_before
            {
                return Ok(None);
            }
            continue;
        };
        if inner.compaction.is_busy() {
            inner.resume(g);
            continue;
        }
        let tts = t0.elapsed();
        if inner.concurrent_now() {
            // Concurrent cycle: only the initial mark happens in this pause; the GC thread
            // marks, remarks, flips and compacts.
            let st = crate::marking::initial_mark(inner, &g, trigger, t0, tts);
            inner.resume(g);
            let heap = inner.clone();
            return std::thread::Builder::new()
                .name("faultline-gc".into())
                .spawn(move || {
                    // A failure here (verification, checkmark) leaves references half-moved:
                    // the heap cannot continue, so end the process loudly rather than leave
                    // every mutator waiting for a cycle that will never finish.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        crate::marking::run(heap, st)
                    }));
                    if r.is_err() {
                        eprintln!(
                            "faultline: the GC thread failed (see the panic above); aborting"
                        );
                        std::process::abort();
                    }
                })
                .map(|_| None)
                .map_err(|e| ArenaError::Config(format!("spawning the GC thread: {e}")));
        }
        let r = run_cycle(inner, &g, trigger, t0, tts);
        inner.resume(g);
        return match r? {
            CycleOutcome::Done(stats) => {
                let mut stats = *stats;
                // Read /proc/self/maps after the pause: it allocates and takes time. Nothing but
                // this heap's own calls could change the arena's VMAs, and those are counted.
                stats.vmas = (inner.arena.vmas_at_creation(), inner.arena.vma_count());
                record_cycle(inner, &stats);
                Ok(Some(stats))
            }
            CycleOutcome::Flipped(stats, calls0, start) => {
                let heap = inner.clone();
                let s2 = *stats.clone();
                std::thread::Builder::new()
                    .name("faultline-compact".into())
                    .spawn(move || crate::concurrent::run_compaction(heap, s2, start, *calls0))
                    .map_err(|e| {
                        ArenaError::Config(format!("spawning the compaction thread: {e}"))
                    })?;
                Ok(Some(*stats))
            }
        };
    }
}

/// Verify with the world stopped.
pub(crate) fn verify_stopped(
    inner: &HeapInner,
    me: Option<&Arc<MutatorShared>>,
) -> Result<VerifyReport, VerifyError> {
    loop {
        inner.wait_idle_as(me);
        if let Some(g) = inner.stop_the_world(me) {
            let types = inner
                .types
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let r = verify::verify_heap(inner, &g, &types);
            inner.resume(g);
            return r;
        }
    }
}

fn run_cycle(
    inner: &HeapInner,
    g: &SpState,
    trigger: Trigger,
    t0: Instant,
    tts: Duration,
) -> Result<CycleOutcome, ArenaError> {
    let cfg = &inner.config;
    let types = inner
        .types
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut cs = inner
        .collector
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let cs = &mut *cs;
    let calls0 = inner.arena.sys().counters().snapshot();
    let moving = &inner.moving;
    let large = &inner.large;
    let moving_before = moving.used();
    let large_before = large.used();

    if cfg.verify {
        if let Err(e) = verify::verify_heap(inner, g, &types) {
            panic!(
                "heap verification failed before cycle {}: {e}",
                inner.cycles.load(Ordering::Relaxed) + 1
            );
        }
    }
    // 1. Retire every allocation buffer (their unused tails are zero: fillers).
    for m in &g.mutators {
        m.tlab_cursor.store(0, Ordering::Relaxed);
        m.tlab_limit.store(0, Ordering::Relaxed);
    }

    // 2. Mark.
    let tm = Instant::now();
    let from = moving.base();
    let from_top = moving.top.load(Ordering::Relaxed);
    let from_words = (from_top - from) / WORD;
    let bitmap_words = from_words.div_ceil(64) + 1;
    cs.mark.clear_words(bitmap_words);
    cs.live.clear(bitmap_words);
    large.marks.clear();
    let mut roots = Vec::new();
    visit_roots(inner, g, &mut |s| roots.push(*s));
    let marker = Marker {
        from,
        from_top,
        mark: &cs.mark,
        live: &cs.live,
        large,
        types: &types,
    };
    let live_objects = if cfg.gc_threads > 1 {
        marker.mark_parallel(roots, cfg.gc_threads)
    } else {
        marker.mark_serial(roots)
    };
    if cfg.verify {
        if let Err(e) = verify::check_marks(&cs.mark, &cs.live.bits, from, from_words, &types) {
            panic!(
                "mark/live bitmaps disagree in cycle {}: {e}",
                inner.cycles.load(Ordering::Relaxed) + 1
            );
        }
    }
    let mark_time = tm.elapsed();

    let pc = PauseCtx {
        t0,
        tts,
        trigger,
        calls0,
        moving_before,
        large_before,
        mark_time,
        plan_ahead: Duration::ZERO,
        live_objects,
        from,
        from_top,
        bitmap_words,
        pauses: Vec::new(),
        cycle_start: t0,
    };
    plan_and_compact(inner, g, cs, &types, pc)
}

/// What the pause that ends marking hands to planning.
pub(crate) struct PauseCtx {
    pub t0: Instant,
    pub tts: Duration,
    pub trigger: Trigger,
    pub calls0: faultline_heap::sys::CallSnapshot,
    pub moving_before: usize,
    pub large_before: usize,
    pub mark_time: Duration,
    /// Concurrent planning done before the pause (zero for stop-the-world).
    pub plan_ahead: Duration,
    pub live_objects: usize,
    pub from: usize,
    pub from_top: usize,
    pub bitmap_words: usize,
    /// Earlier pauses of the cycle (the initial mark of a concurrent cycle).
    pub pauses: Vec<Pause>,
    /// When the cycle began (its first pause).
    pub cycle_start: Instant,
}

/// Steps 3-6 (or the flip of a concurrent cycle), with marking complete and the world stopped.
pub(crate) fn plan_and_compact(
    inner: &HeapInner,
    g: &SpState,
    cs: &mut CollectorState,
    types_arc: &Arc<TypeRegistry>,
    pc: PauseCtx,
) -> Result<CycleOutcome, ArenaError> {
    let cfg = &inner.config;
    let moving = &inner.moving;
    let large = &inner.large;
    let PauseCtx {
        t0,
        tts,
        trigger,
        calls0,
        moving_before,
        large_before,
        mark_time,
        plan_ahead,
        live_objects,
        from,
        from_top,
        bitmap_words,
        mut pauses,
        cycle_start,
    } = pc;
    let types: &TypeRegistry = types_arc;
    // 3. Plan. In a concurrent cycle the chunk sums were computed before the pause
    //    (`LiveWords::plan_ahead`); here only the chunks marking changed since are redone.
    let tp = Instant::now();
    let (live_words, chunks_redone) = cs.live.finish_prefix(bitmap_words);
    let pages = (live_words * WORD).div_ceil(PAGE_SIZE);
    let to_index = 1 - moving.current.load(Ordering::Relaxed);
    let to = moving.half_base[to_index];
    let mut plan = Plan {
        from,
        src: from,
        from_top,
        to,
        live_words,
        live: &cs.live,
        mark: &cs.mark,
        types,
        bitmap_words,
    };
    let plan_time = tp.elapsed();
    let to_offset = moving.half_offset[to_index];
    // Make sure the destination half is clean (a release the last cycle could not do is redone
    // here): a failure point before any reference changes.
    crate::stress::prepare_destination(inner, to_offset, moving.half_bytes)?;

    // The per-cycle choreography baseline (what the Android runtime does each cycle, measured
    // against the volatile arena): register only the destination range, and move the old
    // half's pages to a new mapping with mremap(MREMAP_DONTUNMAP), reading them there. Both
    // happen before any reference changes: if either fails, this cycle compacts in the pause.
    let mut flip_concurrently = inner.concurrent_now();
    let mut detached = None;
    if flip_concurrently && cfg.choreography == crate::config::Choreography::PerCycle && pages > 0 {
        let old_end = {
            let pop = moving
                .populated
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (*pop).max(HeapInner::page_up(from_top))
        };
        let arena = &inner.arena;
        let setup = arena
            .register_range(to_offset, pages * PAGE_SIZE)
            .and_then(|()| {
                arena
                    .detach_pages(from - arena.base(), old_end - from)
                    .inspect_err(|_| {
                        let _ = arena.unregister_range();
                    })
            });
        match setup {
            Ok(a) => {
                detached = Some((a, old_end - from));
                plan.src = a;
            }
            Err(e) => {
                eprintln!(
                    "faultline: per-cycle choreography failed ({e}); this cycle compacts in the pause"
                );
                flip_concurrently = false;
            }
        }
    }

    // 4. Update roots and large objects' fields.
    let tc = Instant::now();
    visit_roots(inner, g, &mut |s| *s = plan.forward(*s));
    // The dead large objects: released now (stop-the-world) or when the concurrent compaction
    // ends (off the pause; they stay allocated until then, so nothing reuses their space).
    let skip_large_refs = cfg.debug_break == Some(crate::stress::Breakage::SkipLargeObjectRefs);
    let mut large_dead = Vec::new();
    {
        let lg = large.lock();
        for (&start, &len) in lg.objects.iter() {
            if !large.marks.get(large.page_of(start)) {
                large_dead.push((start, len));
            } else if !skip_large_refs {
                let h = header(start);
                let size = types.size_words(h).unwrap_or(1);
                types.for_each_ref_word(h, 0, size, |k| {
                    let slot = (start + k * WORD) as *mut usize;
                    // SAFETY: a reference slot of a live large object (present, not moving).
                    unsafe { *slot = plan.forward(*slot) };
                });
            }
        }
    }

    if flip_concurrently {
        // 5'. Flip: make the destination half current with every destination page absent, and
        //     arm the compaction; workers and faults fill pages. Nothing below can fail: the
        //     references already point at the new addresses.
        let from_populated = {
            let mut pop = moving
                .populated
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let old_end = (*pop).max(HeapInner::page_up(from_top));
            moving.current.store(to_index, Ordering::Relaxed);
            moving.top.store(to + pages * PAGE_SIZE, Ordering::Relaxed);
            *pop = to + pages * PAGE_SIZE;
            old_end
        };
        let pd = crate::concurrent::PlanData {
            from,
            from_top,
            from_populated,
            to,
            to_offset,
            from_offset: from - inner.arena.base(),
            live_words,
            pages,
            bitmap_words,
            src: plan.src,
            detached,
            live: &cs.live,
            mark: &cs.mark,
            types: Some(types_arc.clone()),
            large_dead,
        };
        let moving_after = moving.used();
        let large_after = large.used();
        set_trigger(inner, moving_after + large_after);
        let cycle = inner.cycles.fetch_add(1, Ordering::Relaxed) + 1;
        let flip = t0.elapsed();
        let stats = CycleStats {
            cycle,
            mode: GcMode::Concurrent,
            trigger,
            pauses: {
                let kind = if pauses.is_empty() {
                    "mark+flip"
                } else {
                    "remark+flip"
                };
                pauses.push(Pause {
                    kind,
                    duration: flip,
                });
                pauses
            },
            time_to_safepoint: tts,
            mark: mark_time,
            plan: plan_time,
            plan_ahead,
            plan_chunks_redone: chunks_redone,
            compact: Duration::ZERO,
            total: flip,
            moving_before,
            moving_after,
            large_before,
            large_after,
            live_objects,
            pages_filled: pages,
            calls: Default::default(),
            vmas: (0, 0),
            mutators: g.mutators.len(),
            ..CycleStats::default()
        };
        if pages == 0 {
            // Nothing to compact: finish in the pause.
            large.release_dead(&inner.arena, &pd.large_dead)?;
            if from_populated > from {
                crate::stress::release_old_half(
                    inner,
                    from - inner.arena.base(),
                    from_populated - from,
                );
            }
            let mut st = stats;
            st.calls = inner.arena.sys().counters().snapshot().since(&calls0);
            return Ok(CycleOutcome::Done(Box::new(st)));
        }
        // SAFETY: the world is stopped, the previous compaction finished (checked by
        // `collect`), and no resolver is inside.
        unsafe { inner.compaction.arm(pd) };
        // The pause lasts until arming is done (it runs with the world stopped): measure here.
        let mut stats = stats;
        let flip = t0.elapsed();
        if let Some(p) = stats.pauses.last_mut() {
            p.duration = flip;
        }
        stats.total = cycle_start.elapsed();
        return Ok(CycleOutcome::Flipped(
            Box::new(stats),
            Box::new(calls0),
            cycle_start,
        ));
    }

    // 5. Compact into the other half, a batch of pages per COPY.
    let mut p = 0;
    while p < pages {
        let n = BATCH_PAGES.min(pages - p);
        for i in 0..n {
            plan.fill_page(p + i, &mut cs.buf[i * PAGE_SIZE..(i + 1) * PAGE_SIZE]);
        }
        // SAFETY: `buf` holds `n` filled pages.
        unsafe {
            inner
                .arena
                .resolve_copy(to_offset + p * PAGE_SIZE, cs.buf.as_ptr(), n * PAGE_SIZE)?;
        }
        p += n;
    }
    let compact_time = tc.elapsed();

    // 6. Release the old half, sweep large objects, switch halves.
    {
        let mut pop = moving
            .populated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old_end = (*pop).max(HeapInner::page_up(from_top));
        if old_end > from {
            crate::stress::release_old_half(inner, from - inner.arena.base(), old_end - from);
        }
        moving.current.store(to_index, Ordering::Relaxed);
        let new_top = to + live_words * WORD;
        moving.top.store(new_top, Ordering::Relaxed);
        *pop = to + pages * PAGE_SIZE;
    }
    large.release_dead(&inner.arena, &large_dead)?;
    let moving_after = moving.used();
    let large_after = large.used();
    set_trigger(inner, moving_after + large_after);

    let cycle = inner.cycles.fetch_add(1, Ordering::Relaxed) + 1;
    if cfg.verify {
        if let Err(e) = verify::verify_heap(inner, g, types) {
            panic!("heap verification failed after cycle {cycle}: {e}");
        }
    }
    let total = t0.elapsed();
    let stats = CycleStats {
        cycle,
        mode: GcMode::StopTheWorld,
        trigger,
        pauses: vec![Pause {
            kind: "stw",
            duration: total,
        }],
        time_to_safepoint: tts,
        mark: mark_time,
        plan: plan_time,
        plan_chunks_redone: chunks_redone,
        compact: compact_time,
        total,
        moving_before,
        moving_after,
        large_before,
        large_after,
        live_objects,
        pages_filled: pages,
        calls: inner.arena.sys().counters().snapshot().since(&calls0),
        vmas: (0, 0),
        mutators: g.mutators.len(),
        ..CycleStats::default()
    };
    Ok(CycleOutcome::Done(Box::new(stats)))
}

pub(crate) fn set_trigger(inner: &HeapInner, used: usize) {
    let next = (used as f64 * (1.0 + inner.config.growth)) as usize;
    inner
        .trigger_bytes
        .store(next.max(inner.config.min_trigger_bytes), Ordering::Relaxed);
}

/// The size in words of the object at `a` (for the verifier).
pub(crate) fn object_words(types: &TypeRegistry, a: usize) -> Option<(TypeId, usize)> {
    let h = header(a);
    types.size_words(h).map(|s| (h.type_id(), s))
}
