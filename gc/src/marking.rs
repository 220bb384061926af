//! Concurrent marking with a snapshot-at-the-beginning (Yuasa deletion) write barrier.
//!
//! # The concurrent cycle
//!
//! (The barrier-free `wp_async` variant replaces the barrier with write-protection of the
//! heap and `PAGEMAP_SCAN` rescans of written pages: incremental update, see `rescan_dirty`.)
//!
//! 1. **Initial-mark pause** (O(roots)): retire allocation buffers; record `mark_top` (the
//!    moving space's top: every object at or above it is allocated during marking, *black*);
//!    copy the root values; clear the large-object marks; switch the barrier on. Resume.
//! 2. **Concurrent mark** (GC thread): clear the side bitmaps, mark the root objects, trace.
//!    Mutators run with the barrier on: [`crate::Local::set`] logs the reference it overwrites
//!    into the mutator's SATB buffer, flushed to a global queue every 256 entries. Objects
//!    allocated meanwhile are black: the buffers mutators retire while marking are walked by the
//!    GC thread, which sets their mark and live bits without tracing them; large objects get
//!    their mark bit at allocation. Precleaning: the GC thread keeps draining the flushed SATB
//!    entries and retired buffers until both are empty.
//! 3. **Concurrent planning** (GC thread, mutators running): the live-words prefix sums of
//!    every 512 KiB chunk of what is marked so far, and the destination page states that plan
//!    implies (`LiveWords::plan_ahead`, `Compaction::prepare`).
//! 4. **Remark pause**, then **flip** in the same pause: drain every mutator's unflushed SATB
//!    entries and trace what they reach; walk the buffers still in use; (optionally checkmark);
//!    switch the barrier off; finish the plan (recompute the chunks marked since step 3, then
//!    the per-chunk sums); flip ([`crate::collector::plan_and_compact`]). Resume; concurrent
//!    compaction follows on the same thread.
//!
//! Why nothing reachable is lost: every object reachable at the snapshot is either reached by
//! tracing, or the last reference to it on the traced path was overwritten after the snapshot,
//! and the barrier logged that reference; objects created after the snapshot are black. An
//! object unreachable at the snapshot can never become reachable again.
//!
//! # Remark bound
//!
//! The remark pause traces from at most `mutators x 256` SATB entries (precleaning empties the
//! global queue first) plus what only they reach, and walks at most one active allocation
//! buffer per mutator (`tlab_bytes`); finishing the plan recomputes only the chunks (512 KiB of
//! heap each) in which the remark or black allocation since the concurrent planning set live
//! bits, plus one pass over the per-chunk sums (one entry per 512 KiB: 2,048 per GiB). The flip
//! then updates the roots and the reference fields of live large objects. Roots are not
//! rescanned (the snapshot already holds them).
//!
//! In the barrier-free mode (`wp_async`) the remark rescans the roots, the marked objects on
//! the pages written since the last precleaning round (precleaning repeats until a round finds
//! at most 32 written pages, or 8 rounds ran), the active allocation buffers (one per mutator,
//! scanned because black objects get no barrier) and the large objects allocated since the
//! last round, plus what only those reach. So its bound is the pages written since the last
//! precleaning round, not a constant: a mutator that writes pages faster than a round rescans
//! them keeps precleaning from converging. [`crate::CycleStats`] reports the rounds, the last
//! round's written pages and the pages the remark rescanned (`preclean_rounds`,
//! `preclean_last_dirty`, `remark_dirty_pages`).
//!
//! Invariants:
//! - `active` is true exactly between the end of the initial-mark pause and the remark pause;
//!   the barrier reads it with one relaxed load;
//! - heap slots are read by the marker and written by mutators with atomic (relaxed) accesses;
//!   headers never change after allocation, so the marker reads them plainly;
//! - the marker marks only objects below `mark_top` in the moving space; everything between
//!   `mark_top` and `top` is black and reaches the bitmaps only through the buffer walks.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use faultline_heap::bitmap::{Bitmap, LiveWords};
use faultline_heap::object::{Header, TypeId, TypeRegistry, WORD};
use faultline_heap::pagemap::PagemapScanner;
use faultline_heap::PAGE_SIZE;

use crate::collector::{plan_and_compact, visit_roots, CycleOutcome, PauseCtx};
use crate::heap::{HeapInner, SpState};
use crate::stats::{Pause, Trigger};

/// SATB entries a mutator buffers before flushing them to the global queue.
pub const SATB_BUFFER: usize = 256;

/// Points at which a test hook may park the marker (to force interleavings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkPoint {
    /// Concurrent marking began (roots marked, nothing traced).
    Started,
    /// `n` objects have been traced so far.
    Traced(usize),
    /// Precleaning is done; the remark pause comes next.
    BeforeRemark,
}

/// A hook called by the marker at each [`MarkPoint`].
pub type MarkHook = Arc<dyn Fn(MarkPoint) + Send + Sync>;

/// Shared marking state.
#[derive(Debug, Default)]
pub(crate) struct MarkingState {
    /// Marking is running (objects allocated now are black).
    pub active: AtomicBool,
    /// The SATB barrier logs overwritten references (satb mode only).
    pub barrier: AtomicBool,
    /// Objects at or above this address were allocated during marking.
    pub mark_top: AtomicUsize,
    /// Flushed SATB entries.
    pub satb: Mutex<Vec<usize>>,
    /// Allocation buffers retired during marking: `[start, end)` of black objects.
    pub retired: Mutex<Vec<(usize, usize)>>,
    /// Large objects allocated during marking (black). Barrier-free mode scans them: under
    /// incremental update a black object's contents must be traced too.
    pub new_large: Mutex<Vec<usize>>,
    /// SATB entries logged (statistics).
    pub logged: AtomicU64,
}

impl MarkingState {
    pub(crate) fn flush(&self, buf: &mut Vec<usize>) {
        if buf.is_empty() {
            return;
        }
        self.logged.fetch_add(buf.len() as u64, Ordering::Relaxed);
        self.satb
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .append(buf);
    }
    pub(crate) fn retire(&self, start: usize, end: usize) {
        if end > start && start >= self.mark_top.load(Ordering::Relaxed) {
            self.retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push((start, end));
        }
    }
}

/// What the initial-mark pause hands to the GC thread.
pub(crate) struct MarkStart {
    roots: Vec<usize>,
    from: usize,
    mark_top: usize,
    cycle_start: Instant,
    initial: Duration,
    /// Time to safepoint of the initial-mark pause.
    tts: Duration,
    trigger: Trigger,
    calls0: faultline_heap::sys::CallSnapshot,
    moving_before: usize,
    large_before: usize,
}

/// The initial-mark pause. The world is stopped; O(roots).
pub(crate) fn initial_mark(
    inner: &HeapInner,
    g: &SpState,
    trigger: Trigger,
    t0: Instant,
    tts: Duration,
) -> MarkStart {
    let types = inner
        .types
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if inner.config.verify {
        if let Err(e) = crate::verify::verify_heap(inner, g, &types) {
            panic!(
                "heap verification failed before cycle {}: {e}",
                inner.cycles.load(Ordering::Relaxed) + 1
            );
        }
    }
    inner.compaction.set_busy();
    let calls0 = inner.arena.sys().counters().snapshot();
    for m in &g.mutators {
        m.tlab_start.store(0, Ordering::Relaxed);
        m.tlab_cursor.store(0, Ordering::Relaxed);
        m.tlab_limit.store(0, Ordering::Relaxed);
    }
    let moving = &inner.moving;
    let from = moving.base();
    let mark_top = moving.top.load(Ordering::Relaxed);
    let mut roots = Vec::new();
    visit_roots(inner, g, &mut |s| roots.push(*s));
    inner.large.marks.clear();
    let ms = &inner.marking;
    ms.mark_top.store(mark_top, Ordering::SeqCst);
    ms.satb
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    ms.retired
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    ms.active.store(true, Ordering::SeqCst);
    ms.barrier.store(!inner.wp_marking, Ordering::SeqCst);
    MarkStart {
        roots,
        from,
        mark_top,
        cycle_start: t0,
        initial: t0.elapsed(),
        tts,
        trigger,
        calls0,
        moving_before: moving.used(),
        large_before: inner.large.used(),
    }
}

struct ConcMarker<'a> {
    from: usize,
    mark_top: usize,
    mark: &'a Bitmap,
    live: &'a LiveWords,
    large: &'a crate::space::LargeSpace,
    types: &'a TypeRegistry,
    gray: Vec<usize>,
    marked: usize,
    traced: usize,
}

#[inline]
fn load_slot(a: usize) -> usize {
    // SAFETY: `a` is a word-aligned slot of a live object in present memory; mutators write
    // slots with atomic stores too.
    unsafe { core::sync::atomic::AtomicUsize::from_ptr(a as *mut usize) }.load(Ordering::Relaxed)
}

impl ConcMarker<'_> {
    fn header(a: usize) -> Header {
        // SAFETY: the header of a live object; headers never change after allocation.
        Header(unsafe { (a as *const u64).read() })
    }

    fn shade(&mut self, v: usize) {
        if v == 0 || v % WORD != 0 {
            return;
        }
        if v >= self.from && v < self.mark_top {
            let w = (v - self.from) / WORD;
            if self.mark.set(w) {
                let size = self.types.size_words(Self::header(v)).unwrap_or(1);
                self.live.mark_range(w, w + size);
                self.marked += 1;
                self.gray.push(v);
            }
        } else if self.large.contains(v)
            && v % PAGE_SIZE == 0
            && self.large.marks.set(self.large.page_of(v))
        {
            self.marked += 1;
            self.gray.push(v);
        }
    }

    fn scan(&mut self, o: usize) {
        self.scan_words(o, 0, usize::MAX);
    }

    /// Shade the references held in words `[from_k, to_k)` of the object at `o` (word 0 is
    /// its header; `to_k` is clipped to the object's size).
    fn scan_words(&mut self, o: usize, from_k: usize, to_k: usize) {
        let h = Self::header(o);
        let size = self.types.size_words(h).unwrap_or(1);
        let to_k = to_k.min(size);
        if from_k >= to_k {
            return;
        }
        let mut kids = [0usize; 16];
        let mut n = 0;
        let types = self.types;
        types.for_each_ref_word(h, from_k, to_k, |k| {
            let v = load_slot(o + k * WORD);
            if n == kids.len() {
                for &c in &kids {
                    self.shade(c);
                }
                n = 0;
            }
            kids[n] = v;
            n += 1;
        });
        for &c in &kids[..n] {
            self.shade(c);
        }
        self.traced += 1;
    }

    /// Mark every object of a black buffer `[s, e)`; with `trace` (barrier-free mode, where a
    /// black object's contents are not covered by a barrier) also scan it.
    fn walk_black_traced(&mut self, s: usize, e: usize, trace: bool) {
        let mut a = s;
        while a < e {
            let h = Self::header(a);
            let size = self.types.size_words(h).unwrap_or(1);
            if h.type_id() != TypeId::FILLER {
                let w = (a - self.from) / WORD;
                if self.mark.set(w) {
                    self.live.mark_range(w, w + size);
                    self.marked += 1;
                }
                if trace {
                    self.scan(a);
                }
            }
            a += size * WORD;
        }
    }

    /// Rescan every marked object that overlaps the moving-space page at `pa` (barrier-free
    /// mode: the page was written since it was last protected).
    fn rescan_page(&mut self, pa: usize, top: usize) {
        if pa < self.from || pa >= top {
            return;
        }
        let lo = (pa - self.from) / WORD;
        let hi = ((pa + PAGE_SIZE).min(top) - self.from) / WORD;
        // Only the words on this page: a write elsewhere in a large object marks that page
        // written, and its rescan covers it. (Rescanning whole objects made a written page of
        // a multi-megabyte array cost the whole array.)
        // The object straddling into the page from before it, if marked.
        if lo > 0 {
            if let Some(w) = self.mark.prev_set(lo - 1) {
                let o = self.from + w * WORD;
                let size = self.types.size_words(Self::header(o)).unwrap_or(1);
                if w + size > lo {
                    self.scan_words(o, lo - w, hi - w);
                }
            }
        }
        let mut w = lo;
        while let Some(m) = self.mark.next_set(w, hi) {
            let o = self.from + m * WORD;
            self.scan_words(o, 0, hi - m);
            w = m + 1;
        }
    }
}

/// The rest of a concurrent cycle, on the GC thread: concurrent mark, remark + flip pause,
/// concurrent compaction.
pub(crate) fn run(inner: Arc<HeapInner>, st: MarkStart) {
    let cfg = &inner.config;
    let hook = |p: MarkPoint| {
        if let Some(h) = &cfg.mark_hook {
            h(p)
        }
    };
    let types = inner
        .types
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut cs_guard = inner
        .collector
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let cs = &mut *cs_guard;
    let tm = Instant::now();
    // Clear the bitmaps over the whole half: black buffers may land anywhere above mark_top.
    let half_bitmap_words = inner.moving.half_bytes / WORD / 64 + 1;
    cs.mark.clear_words(half_bitmap_words);
    cs.live.clear(half_bitmap_words);
    let ms = &inner.marking;
    let mut m = ConcMarker {
        from: st.from,
        mark_top: st.mark_top,
        mark: &cs.mark,
        live: &cs.live,
        large: &inner.large,
        types: &types,
        gray: Vec::new(),
        marked: 0,
        traced: 0,
    };
    let wp = inner.wp_marking;
    let scanner = if wp {
        Some(arm_write_tracking(&inner, st.from))
    } else {
        None
    };
    // Test-only: with the barrier "disabled", barrier-free mode skips its rescans.
    let rescans = !cfg.debug_disable_barrier;
    for &r in &st.roots {
        m.shade(r);
    }
    hook(MarkPoint::Started);
    crate::stress::phase_delay(cfg, crate::stress::Phase::AfterInitialMark);
    // Trace and preclean until nothing is left to do concurrently.
    loop {
        while let Some(o) = m.gray.pop() {
            m.scan(o);
            if cfg.mark_hook.is_some() {
                hook(MarkPoint::Traced(m.traced));
            }
            if m.traced % 4096 == 0 {
                let satb =
                    std::mem::take(&mut *ms.satb.lock().unwrap_or_else(PoisonError::into_inner));
                for v in satb {
                    m.shade(v);
                }
            }
        }
        let satb = std::mem::take(&mut *ms.satb.lock().unwrap_or_else(PoisonError::into_inner));
        let retired =
            std::mem::take(&mut *ms.retired.lock().unwrap_or_else(PoisonError::into_inner));
        if satb.is_empty() && retired.is_empty() {
            break;
        }
        for v in satb {
            m.shade(v);
        }
        for (s, e) in retired {
            m.walk_black_traced(s, e, wp);
        }
    }
    if wp {
        scan_new_large(&inner, &mut m);
    }
    // Barrier-free mode: precleaning rescans the pages written since they were protected,
    // until few remain (each round re-protects what it reports).
    let mut preclean_rounds = 0;
    let mut last_preclean_dirty = 0;
    if let Some(sc) = scanner.as_ref().filter(|_| rescans) {
        loop {
            let dirty = rescan_dirty(&inner, sc, &mut m);
            last_preclean_dirty = dirty;
            while let Some(o) = m.gray.pop() {
                m.scan(o);
            }
            let retired =
                std::mem::take(&mut *ms.retired.lock().unwrap_or_else(PoisonError::into_inner));
            for (s, e) in retired {
                m.walk_black_traced(s, e, true);
            }
            scan_new_large(&inner, &mut m);
            while let Some(o) = m.gray.pop() {
                m.scan(o);
            }
            preclean_rounds += 1;
            if dirty <= PRECLEAN_DONE || preclean_rounds >= PRECLEAN_ROUNDS {
                break;
            }
        }
    }
    let concurrent_mark = tm.elapsed();

    // Concurrent planning: the live-words prefix sums of everything marked so far, and the
    // destination page states they imply (a lower bound: marking only adds live words). The
    // remark pause then redoes only the chunks that changed (`LiveWords::finish_prefix`).
    let tplan = Instant::now();
    let planned_top = inner.moving.top.load(Ordering::Acquire);
    let ahead = cs
        .live
        .plan_ahead(((planned_top - st.from) / WORD).div_ceil(64) + 1);
    inner.compaction.prepare((ahead * WORD).div_ceil(PAGE_SIZE));
    let plan_ahead = tplan.elapsed();
    hook(MarkPoint::BeforeRemark);
    crate::stress::phase_delay(cfg, crate::stress::Phase::BeforeRemark);

    // Remark + flip pause.
    let t0 = Instant::now();
    let g = loop {
        if let Some(g) = inner.stop_the_world(None) {
            break g;
        }
    };
    let tts = t0.elapsed();
    for mu in &g.mutators {
        // SAFETY: the world is stopped.
        let roots = unsafe { mu.roots_mut() };
        for v in roots.satb.drain(..) {
            m.shade(v);
        }
        let (s, c) = (
            mu.tlab_start.load(Ordering::Relaxed),
            mu.tlab_cursor.load(Ordering::Relaxed),
        );
        if s >= st.mark_top && c > s {
            m.walk_black_traced(s, c, wp);
        }
        mu.tlab_start.store(0, Ordering::Relaxed);
        mu.tlab_cursor.store(0, Ordering::Relaxed);
        mu.tlab_limit.store(0, Ordering::Relaxed);
    }
    let mut remark_dirty = 0;
    if let Some(sc) = scanner.as_ref().filter(|_| rescans) {
        // Incremental update: roots are rescanned, and so is every page written since the
        // last preclean round.
        let mut roots = Vec::new();
        visit_roots(&inner, &g, &mut |s| roots.push(*s));
        for r in roots {
            m.shade(r);
        }
        remark_dirty = rescan_dirty(&inner, sc, &mut m);
        scan_new_large(&inner, &mut m);
    }
    loop {
        let satb = std::mem::take(&mut *ms.satb.lock().unwrap_or_else(PoisonError::into_inner));
        let retired =
            std::mem::take(&mut *ms.retired.lock().unwrap_or_else(PoisonError::into_inner));
        for v in satb {
            m.shade(v);
        }
        for (s, e) in retired {
            m.walk_black_traced(s, e, wp);
        }
        while let Some(o) = m.gray.pop() {
            m.scan(o);
        }
        if ms
            .satb
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
            && ms
                .retired
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .is_empty()
        {
            break;
        }
    }
    ms.active.store(false, Ordering::SeqCst);
    ms.barrier.store(false, Ordering::SeqCst);
    if wp {
        let _ = inner.arena.set_populate_protected(false);
    }
    let live_objects = m.marked;
    let from_top = inner.moving.top.load(Ordering::Relaxed);
    let from_words = (from_top - st.from) / WORD;
    if cfg.checkmark {
        checkmark(&inner, &g, &cs.mark, st.from, st.mark_top, &types);
    }
    if cfg.verify {
        if let Err(e) =
            crate::verify::check_marks(&cs.mark, &cs.live.bits, st.from, from_words, &types)
        {
            panic!("mark/live bitmaps disagree after concurrent marking: {e}");
        }
    }
    let pc = PauseCtx {
        t0,
        // The cycle's time to safepoint: the longer of its two pauses'.
        tts: tts.max(st.tts),
        trigger: st.trigger,
        calls0: st.calls0,
        moving_before: st.moving_before,
        large_before: st.large_before,
        mark_time: concurrent_mark,
        plan_ahead,
        live_objects,
        from: st.from,
        from_top,
        bitmap_words: from_words.div_ceil(64) + 1,
        pauses: vec![Pause {
            kind: "initial-mark",
            duration: st.initial,
        }],
        cycle_start: st.cycle_start,
    };
    let remark = t0.elapsed();
    let mut outcome = plan_and_compact(&inner, &g, cs, &types, pc);
    match &mut outcome {
        Ok(CycleOutcome::Flipped(stats, _, _)) | Ok(CycleOutcome::Done(stats)) => {
            stats.remark = remark;
            stats.preclean_rounds = preclean_rounds;
            stats.preclean_last_dirty = last_preclean_dirty;
            stats.remark_dirty_pages = remark_dirty;
        }
        Err(_) => {}
    }
    inner.resume(g);
    drop(cs_guard);
    match outcome {
        Ok(CycleOutcome::Flipped(stats, calls0, start)) => {
            crate::concurrent::run_compaction(inner, *stats, start, *calls0);
        }
        Ok(CycleOutcome::Done(stats)) => {
            let mut stats = *stats;
            stats.vmas = (inner.arena.vmas_at_creation(), inner.arena.vma_count());
            crate::collector::record_cycle(&inner, &stats);
            inner.compaction.set_idle_now();
            crate::collector::verify_after_concurrent(&inner, stats.cycle);
        }
        Err(e) => {
            // The concurrent flip has no fallible step after references change (see
            // `plan_and_compact`), so this is an error before any object moved.
            eprintln!("faultline: concurrent cycle failed before the flip: {e}");
            inner.compaction.set_idle_now();
        }
    }
}

/// Barrier-free marking is only correct if every write-protection and every scan succeeds:
/// retry a transient failure a few times, and otherwise stop loudly (the GC thread's panic
/// aborts the process) rather than mark from incomplete dirty information.
fn must<T, E: std::fmt::Display>(what: &str, mut f: impl FnMut() -> Result<T, E>) -> T {
    let mut last = None;
    for _ in 0..100 {
        match f() {
            Ok(v) => return v,
            Err(e) => last = Some(e.to_string()),
        }
        std::thread::yield_now();
    }
    panic!(
        "barrier-free marking: {what} failed: {}",
        last.unwrap_or_default()
    );
}

/// Barrier-free mode: scan the large objects allocated (black) since the last call.
fn scan_new_large(inner: &HeapInner, m: &mut ConcMarker<'_>) -> bool {
    let objs = std::mem::take(
        &mut *inner
            .marking
            .new_large
            .lock()
            .unwrap_or_else(PoisonError::into_inner),
    );
    let any = !objs.is_empty();
    for o in objs {
        m.scan(o);
    }
    any
}

/// Barrier-free mode: stop precleaning when a round found at most this many written pages...
const PRECLEAN_DONE: usize = 32;
/// ...or after this many rounds.
const PRECLEAN_ROUNDS: usize = 8;

/// Barrier-free mode: write-protect the used moving space and the live large objects, and map
/// fresh memory write-protected from now on, so `PAGEMAP_SCAN` reports every page written
/// while marking runs. On the GC thread, before tracing starts (writes before this point meet
/// only unscanned objects).
fn arm_write_tracking(inner: &HeapInner, from: usize) -> PagemapScanner {
    let arena = &inner.arena;
    {
        // Under the populate lock, so no chunk is made present between the flag and the
        // protection.
        let pop = inner
            .moving
            .populated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = arena.set_populate_protected(true);
        if *pop > from {
            must("write-protecting the moving space", || {
                arena.write_protect(from - arena.base(), *pop - from, true)
            });
        }
    }
    {
        let lg = inner.large.lock();
        for (&s, &l) in lg.objects.iter() {
            must("write-protecting a large object", || {
                arena.write_protect(s - arena.base(), l, true)
            });
        }
    }
    // (Pages written before this point need no rescan: nothing has been traced yet. The first
    // precleaning round rescans them anyway, which is merely redundant.)
    must("opening /proc/self/pagemap", || {
        PagemapScanner::open(arena.sys())
    })
}

/// Rescan the marked objects on every page written since the last scan (and re-protect the
/// pages in the same call). Returns the number of written pages.
fn rescan_dirty(inner: &HeapInner, sc: &PagemapScanner, m: &mut ConcMarker<'_>) -> usize {
    let top = inner.moving.top.load(Ordering::Acquire);
    let from = m.from;
    let mut pages = Vec::new();
    let span = HeapInner::page_up(top.max(from + PAGE_SIZE)) - from;
    must("PAGEMAP_SCAN of the moving space", || {
        pages.clear();
        sc.written_pages(from, span, true, |s, l| {
            pages.extend((0..l / PAGE_SIZE).map(|i| s + i * PAGE_SIZE))
        })
    });
    let n = pages.len();
    for pa in pages {
        m.rescan_page(pa, top);
    }
    // Large objects: one scan of the whole large-object space (its free parts are absent and
    // report nothing), each written page mapped back to the object that holds it; the words of
    // marked objects on written pages are rescanned.
    let mut regions = Vec::new();
    let (lb, ls) = (inner.large.base, inner.large.size);
    let large_dirty = must("PAGEMAP_SCAN of the large-object space", || {
        regions.clear();
        sc.written_pages(lb, ls, true, |s, l| regions.push((s, l)))
    });
    // (object, first word, end word) on the written pages.
    let mut parts = Vec::new();
    {
        let lg = inner.large.lock();
        for (s, l) in regions {
            for (&start, &len) in lg.objects.range(..s + l).rev() {
                if start + len <= s {
                    break;
                }
                let a = s.max(start);
                let b = (s + l).min(start + len);
                parts.push((start, (a - start) / WORD, (b - start) / WORD));
            }
        }
    }
    for (o, a, b) in parts {
        if inner.large.marks.get(inner.large.page_of(o)) {
            m.scan_words(o, a, b);
        }
    }
    n + large_dirty
}

/// Checkmark (like Go's gccheckmark): re-mark everything reachable now, with the world
/// stopped, into a fresh bitmap, and insist that concurrent marking marked every object it
/// should have (everything reachable below `mark_top`).
fn checkmark(
    inner: &HeapInner,
    g: &SpState,
    mark: &Bitmap,
    from: usize,
    mark_top: usize,
    types: &TypeRegistry,
) {
    let top = inner.moving.top.load(Ordering::Relaxed);
    let seen = Bitmap::new((top - from) / WORD + 1);
    let mut stack: Vec<(usize, usize)> = Vec::new();
    visit_roots(inner, g, &mut |s| stack.push((*s, 0)));
    let mut large_seen = std::collections::HashSet::new();
    let describe = |p: usize| -> String {
        if p == 0 {
            return "a root".into();
        }
        let kind = if p >= from && p < mark_top {
            if mark.get((p - from) / WORD) {
                "marked old object"
            } else {
                "UNMARKED old object"
            }
        } else if p >= mark_top && p < top {
            "black (allocated during marking) object"
        } else if inner.large.contains(p) {
            if inner.large.marks.get(inner.large.page_of(p)) {
                "marked large object"
            } else {
                "UNMARKED large object"
            }
        } else {
            "?"
        };
        format!("{kind} at {p:#x}")
    };
    while let Some((v, parent)) = stack.pop() {
        if v == 0 || v % WORD != 0 {
            continue;
        }
        let fresh = if v >= from && v < top {
            let w = (v - from) / WORD;
            if v < mark_top && !mark.get(w) {
                panic!(
                    "checkmark: object at {v:#x} is reachable but was not marked by concurrent marking (referenced by {})",
                    describe(parent)
                );
            }
            seen.set(w)
        } else if inner.large.contains(v) {
            if !inner.large.marks.get(inner.large.page_of(v)) {
                panic!("checkmark: large object at {v:#x} is reachable but was not marked");
            }
            large_seen.insert(v)
        } else {
            false
        };
        if fresh {
            let h = Header(load_slot(v) as u64);
            let size = types.size_words(h).unwrap_or(1);
            types.for_each_ref_word(h, 0, size, |k| stack.push((load_slot(v + k * WORD), v)));
        }
    }
}
