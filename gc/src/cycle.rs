//! The collection cycle: one numbered list of phases for both collectors, and the code that
//! drives them. Each phase's work lives in its own module; this one decides what runs when, on
//! which thread, with the world stopped or not, and hands each phase the pieces of
//! [`HeapInner`] it needs.
//!
//! # Stop-the-world cycle (`GcMode::StopTheWorld`, and the fallback without userfaultfd)
//!
//! All on the thread that asked for the collection, inside **one pause**:
//!
//! 1. **Stop** every mutator ([`crate::safepoint`]); retire their allocation buffers.
//!    (`debug.verify`: verify the heap.)
//! 2. **Mark** from the roots (handles, value stacks, root sources, global roots) with the
//!    tracer ([`crate::trace`], plain slot access): one thread, or `gc_threads` threads
//!    stealing work; then the **ephemeron fix-point** ([`crate::weak`]: values of marked
//!    keys, until none is left). (`debug.verify`: check that the mark and live-words bitmaps
//!    agree.)
//! 3. **Plan** ([`crate::plan`]): the two-level prefix sums of the live-words bitmap; the new
//!    address of any object is then O(1).
//! 4. **Flip**: decide what happens to pinned objects ([`crate::pins`]: pinned live objects
//!    are kept in place and become stranded, unpinned stranded ones are copied after the
//!    compacted objects, and the destination window is the largest gap between the stranded
//!    objects of its half); make sure the destination half is clean ([`crate::release`]); rewrite the
//!    roots (stranded objects' reference slots among them) and the reference fields of live
//!    large objects to new addresses; **sweep the
//!    weak table** ([`crate::weak`]): weak references and ephemerons of dead keys cleared,
//!    entries of dead boxes freed, held values of dead finalization targets delivered, the
//!    rest forwarded (the same pause that decided what is dead).
//! 5. **Compact** in the pause: slide the live words down within the current half
//!    ([`crate::plan::Plan::slide`]: no kernel call per page; the default,
//!    [`crate::StwCompaction::Auto`], unless `debug.poison_released`; with
//!    [`crate::HeapConfig::dense_prefix`], the half's dense prefix stays in place, its dead
//!    gaps turned into fillers before the plan's prefix sums: [`crate::dense`]); or (`Copy`, and a cycle
//!    with pinned or stranded objects, or whose half's window is not the whole half) fill
//!    destination pages in order and map them into the other half in batches of 64 pages
//!    (`UFFDIO_COPY`, or a plain copy on an unregistered arena).
//! 6. **Finish**: release the old half (`MADV_DONTNEED`, [`crate::release`]) and the dead large
//!    objects, switch halves (sliding: release the current half's free tail but the fresh
//!    memory the next cycle allocates, keep the halves), set the next occupancy trigger. (`debug.verify`: verify.)
//!    **Resume** the mutators; record the cycle.
//!
//! # Concurrent cycle (`GcMode::Concurrent`)
//!
//! 1. **Initial-mark pause** (requesting thread, O(roots)): stop; retire allocation buffers;
//!    record `mark_top` (every object at or above it is allocated during marking: black); copy
//!    the root values; clear the large-object marks; **barrier on** (SATB logging, or nothing
//!    for barrier-free marking); the cycle is now busy ([`crate::phase`]). Resume. A
//!    `faultline-gc` thread takes over.
//! 2. **Concurrent mark** (GC thread, mutators running; [`crate::marking`]): clear the side
//!    bitmaps; barrier-free mode write-protects the heap (`UFFDIO_WRITEPROTECT`, WP_ASYNC);
//!    shade the roots, trace (atomic slot access), preclean (drain flushed SATB entries and
//!    retired buffers; barrier-free: `PAGEMAP_SCAN` the written pages and rescan them), with
//!    `gc_threads` markers and the mutators' mark assists sharing the gray objects. SATB: the
//!    flat remark's **handshake**: each running mutator hands its SATB buffer over at its
//!    next allocation slow path (no global stop; waited for at most 2 ms), and what arrives
//!    is precleaned, so the remark traces only what was logged since.
//! 3. **Concurrent plan** (GC thread): the prefix sums of every chunk marked so far
//!    (`LiveWords::plan_ahead`), and the destination page states they imply
//!    (`Compaction::prepare`). Then the flat remark's **last precleaning** (SATB): a second
//!    handshake hands over and drains what the mutators allocated and logged while the
//!    ephemerons and the plan ran (work that grows with the heap), and the chunks it changed
//!    are planned again, so what the remark walks is bounded by the time to safepoint.
//!    Before it, the large objects are sorted (`LargePrescan`): marked ones stay live, so
//!    the flip forwards the reference-holding ones and decides only those allocated since
//!    (the space's `allocated` list) and the unmarked ones that may hold references; the
//!    unmarked ones without references are found dead or alive when the cycle ends.
//! 4. **Remark + flip pause** (GC thread): stop; drain every mutator's unflushed SATB entries,
//!    walk the buffers in use (barrier-free: rescan roots and written pages); trace to the
//!    end; **barrier off**; finish the ephemeron fix-point (a first pass ran concurrently
//!    at the end of phase 2); (`debug.checkmark`, `debug.verify`: check the marks); finish the
//!    plan (only the chunks marked since phase 3, and one flag per 32 MiB group: not
//!    every chunk); then the **flip** shared with
//!    stop-the-world (step 4 above): roots and large objects rewritten, the destination half
//!    made current with every destination page absent, the compaction **armed**
//!    ([`crate::compaction`]; per-cycle choreography: `UFFDIO_REGISTER` + `mremap` here,
//!    [`crate::choreography`]). Resume.
//! 5. **Concurrent compaction** (GC thread + `compaction_workers` workers, every mutator that
//!    faults: [`crate::fault`], and every mutator whose allocation finds the space exhausted:
//!    compaction assists, [`crate::assist`]): destination pages are filled and mapped with
//!    `UFFDIO_COPY`, `UFFDIO_MOVE` or `UFFDIO_CONTINUE`.
//! 6. **Finish** (GC thread): disarm; release the old half and the large objects found dead at
//!    the flip (per-cycle choreography: `UFFDIO_UNREGISTER` + `munmap`); the pacer sets the
//!    next trigger ([`crate::pacer`]); record the cycle; the cycle is idle. (`debug.verify`:
//!    verify, in a pause of its own.)
//!
//! # Generational cycles (`HeapConfig::generational`, [`crate::generational`])
//!
//! Either collector, with these changes, decided at the cycle's first pause (stop-the-world
//! step 2, concurrent phase 1) by `GenState::begin`:
//! - a **young** cycle marks `[window, top)` only: its extra roots are the old reference
//!   slots in the ranges the remembered set reports that hold a reference outside the old
//!   generation ([`crate::remset`]; concurrent: scanned on the GC thread after the initial
//!   mark, again at a precleaning step before the remark and in the remark pause) and every
//!   large object; the flip forwards those old slots (slots still referring to young objects stay in the
//!   remembered set) and, compacting into the old half, promotes the survivors that reach
//!   `HeapConfig::promotion_age` (the window then starts above them, with the younger
//!   survivors; `generational::promotion_end`);
//! - a **full** cycle marks and compacts `[old generation start, top)` (it runs only while
//!   the old half is current) and empties the old generation at its flip.
//!
//! The arena's rule holds in both: a cycle makes no `mmap`/`munmap`/`mremap`/`mprotect` call
//! and no (un)registration (except the deliberate `PerCycle` baseline), and the calls it does
//! make are counted in [`CycleStats::calls`].
//!
//! Invariants:
//! - cycles never overlap: a cycle starts only when the previous one is idle, checked with the
//!   world stopped;
//! - the old half stays intact until the finish phase (except the move strategy's staging
//!   pages, see [`crate::compaction`]), so filling a page never reads a filled page;
//! - after the flip begins rewriting references, nothing may fail: kernel errors past that
//!   point end the process ([`crate::release::fatal_after_flip`]) rather than leave references
//!   dangling.

use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use faultline_heap::object::{Header, TypeRegistry, WORD};
use faultline_heap::pagemap::PagemapScanner;
use faultline_heap::sys::CallSnapshot;
use faultline_heap::PAGE_SIZE;

use crate::choreography;
use crate::cputime;
use crate::debug::{Breakage, MarkPoint, Phase};
use crate::dense::{self, DensePrefix, DenseRuns};
use crate::error::CollectError;
use crate::generational::{CycleFacts, GenCycle};
use crate::inner::{HeapInner, BATCH_PAGES};
use crate::marking::{self, ConcMarker, MarkCtx, MarkReport};
use crate::mode::{Choreography, GcMode, MapStrategy};
use crate::pacer::Decision;
use crate::phase::CyclePhase;
use crate::plan::{DestPage, Plan};
use crate::reentry::{self, Callback};
use crate::release::{fatal_after_flip, finish_old_half, prepare_destination, release_free_tail};
use crate::safepoint::{visit_roots, Me, SpState, RUNNING};
use crate::stats::{
    merge_tts, trim_history, CpuSplit, CycleStats, GenStats, MutatorTts, PaceStats, Pause, Trigger,
};
use crate::trace::{header, Atomic, Plain, Tracer};
use crate::verify::{self, HeapView, VerifyError, VerifyReport};
use crate::weak::Liveness;
use faultline_heap::{page_down, page_up};

/// What verification sees of `inner` with the world stopped (`g`).
fn view<'a>(inner: &'a HeapInner, g: &'a SpState) -> HeapView<'a> {
    HeapView {
        g,
        roots: &inner.roots,
        moving: &inner.moving,
        large: &inner.large,
    }
}

/// The roots' current values (a stopped world).
fn root_values(inner: &HeapInner, g: &SpState) -> Vec<usize> {
    let mut roots = Vec::new();
    visit_roots(g, &inner.roots, None, &mut |s| roots.push(*s));
    roots
}

/// The roots' values for a marking snapshot (a stopped world: the initial mark, or the barrier
/// switch of barrier-free marking), in a new era: a `Value` held across the pause without a
/// root names an object the snapshot may not reach, which marking would then never see (the
/// SATB barrier logs only overwritten values), so storing it anywhere afterwards would keep a
/// reference to an object the flip frees; from here on such a value is stale and refused, as
/// one held across a flip. Root-source slots current in the old era are stamped with the new
/// one as they are visited (nothing moves: the roots themselves are unchanged).
fn snapshot_roots(inner: &HeapInner, g: &SpState) -> Vec<usize> {
    inner.roots.new_era();
    let roots = root_values(inner, g);
    inner.roots.end_forwarding();
    roots
}

/// Refuse `request` if the calling thread is inside a callback run by a collection.
pub(crate) fn refuse_reentry(request: &'static str) -> Result<(), CollectError> {
    match reentry::current() {
        Some(callback) => Err(CollectError::Reentrant { request, callback }),
        None => Ok(()),
    }
}

/// Run one collection. Returns `Ok(None)` if another thread collected meanwhile, or if a
/// concurrent cycle was started (it continues on its own thread). Refused from inside a
/// callback ([`crate::reentry`]).
pub(crate) fn collect(
    inner: &Arc<HeapInner>,
    me: Me<'_>,
    trigger: Trigger,
) -> Result<Option<CycleStats>, CollectError> {
    refuse_reentry("collect")?;
    let cycles_before = inner.cycles.load(Ordering::SeqCst);
    loop {
        // An occupancy or exhaustion trigger that finds a concurrent cycle running is satisfied
        // by it: waiting here would stall the allocating mutator for the rest of that cycle,
        // its compaction included (the caller waits for the flip instead, and helps).
        if cycle_satisfies(inner, trigger) {
            return Ok(None);
        }
        // A cycle starts only when the previous one is complete (waiting counts as stopped,
        // so the running cycle's remark pause is not held up by us).
        inner.wait_idle_as(me);
        if inner.concurrent_now() {
            count_young_slots_at_start(inner);
        }
        let t0 = Instant::now();
        let Some(g) = inner.sp.stop_the_world(me) else {
            // The world was stopped by another thread. If that was a collection, an implicit
            // trigger is satisfied; an explicit one (and a stop for verification) runs its own.
            if trigger != Trigger::Explicit && inner.cycles.load(Ordering::SeqCst) != cycles_before
            {
                return Ok(None);
            }
            continue;
        };
        if inner.gate.is_busy() {
            inner.sp.resume(g);
            continue;
        }
        let tts = t0.elapsed();
        if inner.concurrent_now() {
            // Concurrent phase 1; the GC thread does the rest.
            let st = initial_mark(inner, &g, trigger, t0, tts);
            inner.sp.resume(g);
            let (heap, weak) = (inner.clone(), Arc::downgrade(inner));
            return inner
                .gc_thread
                .submit(
                    Box::new(move || run_concurrent(heap, st)),
                    crate::background::SchedKey::mine(),
                    || start_gc_thread(move || gc_thread(weak)),
                    |job| {
                        let config = inner.config.clone();
                        start_gc_thread(move || {
                            let _prio = crate::background::enter(&config);
                            crate::crew::with_crew(|| run_gc_job(job));
                        })
                        .map(drop)
                    },
                )
                .map(|()| None)
                .map_err(|e| CollectError::Spawn(e.to_string()));
        }
        // Its parallel phases (marking, the slide) run on the heap's pause crew.
        let r = crate::crew::lend(&inner.pause_crew, || stw_cycle(inner, &g, trigger, t0, tts));
        inner.gate.set_phase(CyclePhase::Idle);
        inner.sp.resume(g);
        let mut stats = r?;
        // Read /proc/self/maps after the pause: it allocates and takes time. Nothing but this
        // heap's own calls could change the arena's VMAs, and those are counted.
        stats.vmas = (inner.arena.vmas_at_creation(), inner.arena.vma_count());
        // The cycle is over and the world runs: a panic of the `on_cycle` hook reaches the
        // caller, as any panic of its own code would.
        if let Err(p) = record_cycle(inner, &stats) {
            std::panic::resume_unwind(p);
        }
        return Ok(Some(stats));
    }
}

/// Whether a collection for `trigger` is satisfied by the concurrent cycle running now (the
/// allocation slow path's triggers; an explicit or stress collection runs its own).
fn cycle_satisfies(inner: &HeapInner, trigger: Trigger) -> bool {
    matches!(trigger, Trigger::Occupancy | Trigger::Exhausted)
        && inner.concurrent_now()
        && inner.gate.is_busy()
}

/// Verify with the world stopped (waiting for a running cycle to end first).
pub(crate) fn verify_stopped(inner: &HeapInner, me: Me<'_>) -> Result<VerifyReport, VerifyError> {
    refuse_reentry("verify").map_err(|e| VerifyError(e.to_string()))?;
    loop {
        inner.wait_idle_as(me);
        if let Some(g) = inner.sp.stop_the_world(me) {
            let types = inner.types();
            let r = verify::verify_heap(&view(inner, &g), &types);
            inner.sp.resume(g);
            return r;
        }
    }
}

/// `debug.verify`: verify with the world stopped by the caller, panicking on failure.
fn verify_or_panic(inner: &HeapInner, g: &SpState, types: &TypeRegistry, when: &str) {
    if inner.config.debug.verify {
        if let Err(e) = verify::verify_heap(&view(inner, g), types) {
            panic!("heap verification failed {when}: {e}");
        }
    }
}

/// What the pause that ends marking hands to planning and the flip.
struct PauseCtx {
    /// When this pause began.
    t0: Instant,
    tts: Duration,
    trigger: Trigger,
    calls0: CallSnapshot,
    moving_before: usize,
    large_before: usize,
    mark_time: Duration,
    /// CPU time of the marking thread in the mark phase, and its thread CPU clock when this
    /// pause began ([`crate::CpuSplit`]).
    mark_cpu: Duration,
    pause_cpu0: Duration,
    /// Concurrent planning done before the pause (zero for stop-the-world).
    plan_ahead: Duration,
    live_objects: usize,
    from: usize,
    from_top: usize,
    /// Concurrent: the top of the half when marking began (the objects above it are black);
    /// stop-the-world: `from_top`.
    mark_top: usize,
    bitmap_words: usize,
    /// Earlier pauses of the cycle (the initial mark of a concurrent cycle).
    pauses: Vec<Pause>,
    /// Time to safepoint per mutator, the worst over the cycle's pauses so far.
    tts_by_mutator: Vec<MutatorTts>,
    /// When the cycle began (its first pause).
    cycle_start: Instant,
    /// Generational mode: what this cycle is ([`crate::generational`]).
    gen: Option<GenCycle>,
    /// Concurrent: the large objects as examined before the pause ([`large_prescan`]).
    large_prescan: Option<LargePrescan>,
}

/// The large-object space as the GC thread found it just before a concurrent cycle's pause,
/// so that the pause does not walk every large object (reading a header per object: a cache
/// and TLB miss each, 1-2 ms for ~20,000 objects). Marks are only ever set within a cycle and
/// large objects are freed only after a flip, so: an object marked then is live at the flip;
/// one unmarked then (or whose header was not written yet) is decided in the pause, unless it
/// holds no references (then nothing in it needs forwarding, and whether it is dead is decided
/// when the cycle ends: mark bits do not change from the flip to the cycle's end); one
/// allocated since is on the space's `allocated` list, which this took (emptied).
struct LargePrescan {
    /// Marked objects whose type may hold references (their slots are forwarded at the flip).
    refs: Vec<usize>,
    /// Objects whose header did not tell (not yet written, or of a type this cycle's registry
    /// does not know), and unmarked ones that may hold references: the pause checks each.
    undecided: Vec<(usize, usize)>,
    /// Unmarked objects without references: dead unless the remark marks them, decided
    /// after the pause (those still unmarked: [`crate::space::LargeSpace::unmarked`]; valid
    /// from the flip to the cycle's end, when no large-object mark is set or cleared).
    refless_unmarked: Vec<(usize, usize)>,
}

/// Before the pause, concurrently: sort the large objects into [`LargePrescan`]. The space's
/// lock is held only to copy the object list out.
fn large_prescan(large: &crate::space::LargeSpace, types: &TypeRegistry) -> LargePrescan {
    let objects: Vec<(usize, usize)> = {
        // (A fork waits for the lock to be given back: see `crate::forkgate`.)
        let _r = crate::forkgate::Region::enter();
        let mut lg = large.lock();
        lg.allocated.clear();
        lg.objects.iter().map(|(&s, &l)| (s, l)).collect()
    };
    let mut pre = LargePrescan {
        refs: Vec::new(),
        undecided: Vec::new(),
        refless_unmarked: Vec::new(),
    };
    for (start, len) in objects {
        // (The mark first: a mark set after it only makes an unmarked object live.)
        let marked = large.marks.get(large.page_of(start));
        // SAFETY: an allocated large object (present, never moved; none is freed before this
        // cycle's flip); its header is written once by the allocating mutator, maybe
        // concurrently with this read: a zero (not yet written) is left undecided.
        let h = Header(unsafe { core::ptr::read_volatile(start as *const u64) });
        let known = h.0 != 0 && types.get(h.type_id()).is_some();
        if !known {
            pre.undecided.push((start, len));
        } else if types.scan_layout(h).has_refs() {
            if marked {
                pre.refs.push(start);
            } else {
                pre.undecided.push((start, len));
            }
        } else if !marked {
            pre.refless_unmarked.push((start, len));
        }
    }
    pre
}

/// What the generational cycle policy reads at a cycle's start (world stopped).
fn cycle_facts(inner: &HeapInner, trigger: Trigger) -> CycleFacts {
    let (lo, hi) = inner.moving.old_range();
    let old_half = usize::from(lo >= inner.moving.half_base[1]);
    let half_end = inner.moving.half_base[old_half] + inner.moving.half_bytes;
    CycleFacts {
        pinned: inner.roots.pins.pinned_objects() > 0,
        stranded_unpinned: inner.roots.pins.stranded_unpinned(),
        stranded_above_old: hi > lo
            && inner
                .roots
                .pins
                .stranded()
                .iter()
                .any(|&(a, _)| a >= hi && a < half_end),
        exhausted: trigger == Trigger::Exhausted,
        large_used: inner.large.used(),
        skip_one: inner.config.debug.breakage == Some(Breakage::SkipDirtyCard),
    }
}

/// The extra roots of a young cycle: the values of the old slots its remembered set named, and
/// every large object (large objects are freed by full cycles only).
fn young_roots(c: &GenCycle, large: &crate::space::LargeSpace, roots: &mut Vec<usize>) {
    roots.extend(c.old_slots.iter().map(|&s| {
        // SAFETY: a reference slot of an old object, present (old pages are never released
        // while old); the world is stopped.
        unsafe { (s as *const usize).read() }
    }));
    roots.extend(large.lock().objects.keys().copied());
}

/// What the finish phase of a concurrent cycle does, decided at its flip.
struct Finish {
    /// The old half's used and claimed range `[from, from_populated)`, and the end of what it
    /// may hold present, `from_end` (kept pages no refill claimed lie above the claimed end:
    /// released with the half, never on the compaction's free list, where early recycling
    /// would meet the absent pages below them).
    from: usize,
    from_populated: usize,
    from_end: usize,
    /// Pages of kept (pinned) objects in the old half: not released ([`crate::pins`]).
    keep: Vec<(usize, usize)>,
    /// Per-cycle choreography: the detached old-half pages, unmapped at the end.
    detached: Option<choreography::Detached>,
    calls0: CallSnapshot,
    cycle_start: Instant,
    /// Generational mode: the cycle (its crossing map is built once compaction is done).
    gen: Option<GenCycle>,
}

/// The outcome of a flip.
enum Flip {
    /// The cycle is complete (stop-the-world, or nothing to compact).
    Done(Box<CycleStats>),
    /// The compaction is armed; phases 5 and 6 follow on the GC thread.
    Armed(Box<CycleStats>, Box<Finish>),
}

/// Stop-the-world phases 1-6, with the world stopped.
fn stw_cycle(
    inner: &HeapInner,
    g: &SpState,
    trigger: Trigger,
    t0: Instant,
    tts: Duration,
) -> Result<CycleStats, CollectError> {
    let pause_cpu0 = cputime::thread_cpu();
    let types = inner.types();
    let mut scratch = inner.scratch.lock().unwrap_or_else(PoisonError::into_inner);
    let calls0 = inner.arena.sys().counters().snapshot();
    let moving = &inner.moving;
    let large = &inner.large;
    let moving_before = moving.used();
    let large_before = large.used();
    let next = inner.cycles.load(Ordering::Relaxed) + 1;
    verify_or_panic(inner, g, &types, &format!("before cycle {next}"));
    inner.gate.set_phase(CyclePhase::Marking);
    // 1. Retire every allocation buffer (their unused tails are zero: fillers).
    for m in &g.mutators {
        m.tlab_cursor.store(0, Ordering::Relaxed);
        m.tlab_limit.store(0, Ordering::Relaxed);
    }

    // 2. Mark. (Generational: a young cycle marks the window from the roots, the old slots its
    //    remembered set names and every large object; a full cycle also the old generation.)
    let tm = Instant::now();
    let mark_cpu0 = cputime::thread_cpu();
    let gen = match &inner.gen {
        Some(gs) => Some(gs.begin(
            &inner.arena,
            moving,
            &types,
            cycle_facts(inner, trigger),
            true,
        )?),
        None => None,
    };
    let from = gen.as_ref().map_or(moving.base(), |c| c.from);
    let from_top = moving.top.load(Ordering::Relaxed);
    let from_words = (from_top - from) / WORD;
    let bitmap_words = from_words.div_ceil(64) + 1;
    let tables = &inner.tables;
    tables.mark.clear_words(bitmap_words);
    tables.live.clear(bitmap_words);
    large.clear_marks();
    let mut roots = root_values(inner, g);
    if let Some(c) = gen.as_ref().filter(|c| c.young()) {
        young_roots(c, large, &mut roots);
    }
    let tracer: Tracer<'_, Plain> =
        Tracer::new(from, from_top, &tables.mark, &tables.live, large, &types);
    let trace = |roots: Vec<usize>| {
        if inner.config.gc_threads > 1 {
            tracer.trace_parallel(roots, inner.config.gc_threads)
        } else {
            tracer.trace_serial(roots)
        }
    };
    let mut live_objects = trace(roots);
    // 2b. Ephemerons: the fix-point over the values of live keys ([`crate::weak`]).
    let liveness = Liveness {
        from,
        limit: from_top,
        top: from_top,
        mark: &tables.mark,
        large,
    };
    // (Parallel tracing starts threads: worth it only for a large round.)
    inner
        .roots
        .weak
        .ephemeron_fixpoint(&liveness, true, |vals| {
            live_objects += if vals.len() >= 256 {
                trace(vals.to_vec())
            } else {
                tracer.trace_serial(vals.to_vec())
            }
        });
    if inner.config.debug.verify {
        if let Err(e) =
            verify::check_marks(&tables.mark, &tables.live.bits, from, from_words, &types)
        {
            panic!("mark/live bitmaps disagree in cycle {next}: {e}");
        }
    }
    let pc = PauseCtx {
        t0,
        tts,
        trigger,
        calls0,
        moving_before,
        large_before,
        mark_time: tm.elapsed(),
        mark_cpu: cputime::since(mark_cpu0),
        pause_cpu0,
        plan_ahead: Duration::ZERO,
        live_objects,
        from,
        from_top,
        mark_top: from_top,
        bitmap_words,
        pauses: Vec::new(),
        tts_by_mutator: g.tts_by_mutator(),
        cycle_start: t0,
        gen,
        large_prescan: None,
    };
    // 3-6.
    match flip(inner, g, &types, pc, false, &mut scratch)? {
        Flip::Done(stats) => Ok(*stats),
        Flip::Armed(..) => unreachable!("a stop-the-world flip compacts in the pause"),
    }
}

/// Generational, concurrent: a cycle about to start in the old half counts the old slots with
/// a young reference and is full when they are too many
/// ([`crate::generational::GenState::young_slots_at_start`]), before its initial-mark pause
/// (the world running: the count walks the dirty cards' objects, 0.6 ms on a 1 GiB old
/// generation with none dirty, 1-2 ms on the request's). Nothing is counted while a cycle
/// runs (one started by another thread meanwhile).
fn count_young_slots_at_start(inner: &HeapInner) {
    if let Some(gs) = inner.gen.as_ref() {
        // It holds the old generation's lock, which a forked child takes: a fork waits for it
        // to be given back (`crate::forkgate`; a mutator counting also holds the fork's stop
        // of the world up, not a thread without one).
        let _r = crate::forkgate::Region::enter();
        let idle = || (!inner.gate.is_busy()).then(|| inner.moving.current.load(Ordering::Relaxed));
        gs.young_slots_at_start(
            &idle,
            inner.sp.requested.load(Ordering::SeqCst),
            inner.config.young_slots_max,
            &inner.types(),
        );
    }
}

/// Concurrent phase 1: the initial-mark pause. The world is stopped; O(roots).
fn initial_mark(
    inner: &HeapInner,
    g: &SpState,
    trigger: Trigger,
    t0: Instant,
    tts: Duration,
) -> MarkStart {
    let types = inner.types();
    let next = inner.cycles.load(Ordering::Relaxed) + 1;
    verify_or_panic(inner, g, &types, &format!("before cycle {next}"));
    inner.gate.set_busy();
    let calls0 = inner.arena.sys().counters().snapshot();
    inner.prefill.note_cycle_start();
    for m in &g.mutators {
        m.retire_tlab();
    }
    let moving = &inner.moving;
    // Generational: a young cycle's extra roots are the large objects here; the old slots its
    // remembered set names are scanned by the GC thread once the world runs again (the SATB
    // barrier is on from this pause: see `GenState::begin`). A full cycle's source starts at
    // the old generation.
    let gen = inner.gen.as_ref().map(|gs| {
        gs.begin(
            &inner.arena,
            moving,
            &types,
            cycle_facts(inner, trigger),
            false,
        )
        .unwrap_or_else(|e| panic!("the remembered set failed at a cycle's start: {e}"))
    });
    let from = gen.as_ref().map_or(moving.base(), |c| c.from);
    let mark_top = moving.top.load(Ordering::Relaxed);
    let mut roots = snapshot_roots(inner, g);
    if let Some(c) = gen.as_ref().filter(|c| c.young()) {
        young_roots(c, &inner.large, &mut roots);
    }
    inner.large.clear_marks();
    // The pacer's budget for this cycle: what mutators may allocate before the space runs out
    // (less a refill per mutator), against the mark work expected; a young cycle's is its
    // young window when measured and `HeapConfig::young_budget` is on
    // ([`crate::youngpace::YoungPace::begin`]).
    let used = inner.used();
    let reserve = g.mutators.len().max(1) * inner.config.tlab_bytes;
    let mut headroom = inner.capacity().saturating_sub(used + reserve);
    if let (Some(gs), Some(c)) = (inner.gen.as_ref(), gen.as_ref()) {
        headroom = if c.young() && inner.config.young_budget {
            gs.young_pace.begin(inner.pacer.allocated(), headroom)
        } else {
            gs.young_pace.end();
            headroom
        };
    }
    let pace = inner.pacer.begin_cycle(used, headroom);
    inner.marking.begin(from, mark_top, !inner.mode.wp_marking);
    MarkStart {
        pace,
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
        tts_by_mutator: g.tts_by_mutator(),
        gen,
    }
}

/// What the initial-mark pause hands to the GC thread.
struct MarkStart {
    /// The pacer's decision this cycle started under.
    pace: Decision,
    roots: Vec<usize>,
    from: usize,
    mark_top: usize,
    cycle_start: Instant,
    initial: Duration,
    /// Time to safepoint of the initial-mark pause.
    tts: Duration,
    trigger: Trigger,
    calls0: CallSnapshot,
    moving_before: usize,
    large_before: usize,
    /// Time to safepoint per mutator in the initial-mark pause.
    tts_by_mutator: Vec<MutatorTts>,
    /// Generational mode: what this cycle is.
    gen: Option<GenCycle>,
}

/// Concurrent phases 2-6, on the GC thread.
fn run_concurrent(inner: Arc<HeapInner>, st: MarkStart) {
    let cfg = &inner.config;
    let types = {
        // (A fork waits for the read lock to be given back: see `crate::forkgate`.)
        let _r = crate::forkgate::Region::enter();
        inner.types()
    };
    let tables = inner.tables.clone();
    let tm = Instant::now();
    let mark_cpu0 = cputime::thread_cpu();
    // 2. Concurrent mark. Clear the bitmaps over the whole half: black buffers may land
    //    anywhere above mark_top.
    let half_bitmap_words = inner.moving.half_bytes / WORD / 64 + 1;
    tables.mark.clear_words(half_bitmap_words);
    tables.live.clear(half_bitmap_words);
    inner.pacer.open_black();
    let ctx = MarkCtx {
        arena: &inner.arena,
        moving: &inner.moving,
        large: &inner.large,
        state: &inner.marking,
        debug: &cfg.debug,
        wp: inner.mode.wp_marking,
        threads: cfg.gc_threads,
        pacer: &inner.pacer,
        catchup_nice: cfg.gc_catchup_nice,
    };
    let mut m = ConcMarker::new(
        Tracer::<Atomic>::new(
            st.from,
            st.mark_top,
            &tables.mark,
            &tables.live,
            &inner.large,
            &types,
        ),
        &inner.marking.pool,
    );
    let mut report = MarkReport::default();
    if st.gen.as_ref().is_some_and(|c| !c.young()) {
        // A full cycle's destination would cover the pages kept in it for a young one: they
        // are released now rather than in its flip's pause. (No fork between the two: a child
        // must not see them present and forgotten.)
        let _r = crate::forkgate::Region::enter();
        crate::release::drop_kept(&inner.arena, &inner.release);
    }
    // 2a. Generational: a young cycle's remembered set, scanned concurrently (the initial
    //     mark's pause only decided the cycle): its old slots' values are roots.
    let mut gen = st.gen;
    let mut roots = st.roots;
    if let (Some(c), Some(gs)) = (gen.as_mut().filter(|c| c.young()), inner.gen.as_ref()) {
        // The scan holds the old generation's lock, which a forked child's first collection
        // takes: a fork waits for it (`crate::forkgate`).
        let _r = crate::forkgate::Region::enter();
        let vals = gs
            .rescan(c, &inner.arena, &types)
            .unwrap_or_else(|e| panic!("the remembered set failed at a cycle's start: {e}"));
        roots.extend(vals);
    }
    let scanner: Option<PagemapScanner> =
        marking::concurrent_mark(&ctx, &mut m, &roots, &mut report);
    if !ctx.wp {
        // 2b. The flat remark's SATB handshake (no global stop).
        marking::satb_handshake(&ctx, &mut m, running_mutators(&inner), &mut report);
    }
    // 2c. Ephemerons, concurrently: mark the values of keys marked so far (the remark pause
    //     finishes the fix-point; see `crate::weak`). Objects above `mark_top` are black.
    let ephemerons = {
        let _r = crate::forkgate::Region::enter();
        inner.roots.weak.has_ephemerons()
    };
    if ephemerons {
        // The weak table's lock is held throughout: a fork waits for the fix-point.
        let _r = crate::forkgate::Region::enter();
        let liveness = Liveness {
            from: st.from,
            limit: st.mark_top,
            top: inner.moving.end(),
            mark: &tables.mark,
            large: &inner.large,
        };
        inner
            .roots
            .weak
            .ephemeron_fixpoint(&liveness, false, |vals| {
                marking::trace_from(&ctx, &mut m, vals, false)
            });
    }
    let concurrent_mark = tm.elapsed();
    let mark_cpu = cputime::since(mark_cpu0);
    m.publish(&inner.pacer);

    // 3. Concurrent plan: the live-words prefix sums of everything marked so far, and the
    //    destination page states they imply (a lower bound: marking only adds live words).
    let tplan = Instant::now();
    let planned_top = inner.moving.top.load(Ordering::Acquire);
    let mut ahead = tables
        .live
        .plan_ahead(((planned_top - st.from) / WORD).div_ceil(64) + 1);
    inner.compaction.prepare((ahead * WORD).div_ceil(PAGE_SIZE));
    let plan_ahead = tplan.elapsed();
    // 3b. Barrier-free mode: a last precleaning round; if the writes outran it, fall back to
    //     SATB for the rest of the cycle (a pause of O(roots) switches the barrier on, one
    //     concurrent rescan covers what was written so far, and the flat remark's handshake
    //     runs; see `marking::satb_switch`).
    let mut switch_pause = None;
    let mut satb_now = !ctx.wp;
    let switch = scanner
        .as_ref()
        .and_then(|sc| marking::wp_final_round(&ctx, &mut m, sc, &mut report).map(|r| (sc, r)));
    if let Some((sc, reason)) = switch {
        // Every mutator waits on this thread in the pause: run at full priority.
        let boost = crate::background::boost_while_waiting();
        let t0 = Instant::now();
        let g = inner.sp.stop_the_world_as(None);
        let tts = t0.elapsed();
        // A second snapshot: the remark rescans neither roots nor written pages after it.
        let roots = snapshot_roots(&inner, &g);
        inner.marking.barrier.store(true, Ordering::SeqCst);
        inner.sp.resume(g);
        drop(boost);
        switch_pause = Some((t0.elapsed(), tts));
        marking::satb_switch(&ctx, &mut m, sc, &roots, reason, &mut report);
        satb_now = true;
    }
    // 3c. Generational: precleaning of the remembered set (the cards dirtied during marking
    //     are scanned here, so the remark scans only those dirtied since).
    if let (Some(c), Some(gs)) = (gen.as_mut().filter(|c| c.young()), inner.gen.as_ref()) {
        // (In a fork-gate region, as at the cycle's start: the old generation's lock.)
        let vals = {
            let _r = crate::forkgate::Region::enter();
            gs.rescan(c, &inner.arena, &types)
                .unwrap_or_else(|e| panic!("the remembered set failed while marking: {e}"))
        };
        marking::trace_from(&ctx, &mut m, &vals, false);
    }
    // 3c'. The large objects, examined before the pause (the pause looks only at those this
    //     could not decide and at those allocated since).
    let large_pre = large_prescan(&inner.large, &types);
    cfg.debug.mark_point(MarkPoint::BeforeRemark);
    cfg.debug.phase_delay(Phase::BeforeRemark);
    // 3d. SATB (barrier-free: after a switch): the flat remark's last precleaning, the last
    //     thing before the pause. The ephemeron pass, the plan and the remembered-set rescan
    //     above take time that grows with the heap, and meanwhile the mutators kept allocating
    //     (retired buffers of black objects) and logging overwritten references: a handshake
    //     hands that over and drains it here, and the chunks its walks changed are planned
    //     again, so the remark walks only what arrives after it (bounded by the time to
    //     safepoint, not by the heap).
    let mut mark_cpu = mark_cpu;
    if satb_now {
        let c0 = cputime::thread_cpu();
        marking::satb_handshake(&ctx, &mut m, running_mutators(&inner), &mut report);
        let top = inner.moving.top.load(Ordering::Acquire);
        ahead = tables
            .live
            .plan_ahead(((top - st.from) / WORD).div_ceil(64) + 1);
        mark_cpu += cputime::since(c0);
    }
    // 3e. Kept pages of the destination half that the compaction will cover, by the plan so
    //     far (a lower bound, and a sixteenth more): released now rather than in the pause.
    {
        let moving = &inner.moving;
        let to = moving.half_base[1 - moving.current.load(Ordering::Relaxed)]
            .max(gen.as_ref().map_or(0, |c| c.to_floor));
        let bytes = ahead * WORD;
        let _r = crate::forkgate::Region::enter();
        crate::release::trim_kept(&inner.arena, &inner.release, to + bytes + bytes / 16);
    }

    // 4. Remark + flip pause. Every mutator waits on this thread in it: full priority.
    let boost = crate::background::boost_while_waiting();
    let t0 = Instant::now();
    let pause_cpu0 = cputime::thread_cpu();
    let g = inner.sp.stop_the_world_as(None);
    // The stop-the-world buffer (and the pause work it serialises) is needed in the pause
    // only: taken after the stop, given back before the resume, so no thread holds it while
    // the world runs (a fork during marking, which does not wait for the cycle, never leaves
    // it held in the child).
    let mut scratch = inner.scratch.lock().unwrap_or_else(PoisonError::into_inner);
    let tts = t0.elapsed();
    inner.gate.set_phase(CyclePhase::Remark);
    marking::remark(
        &ctx,
        &mut m,
        &g,
        scanner.as_ref(),
        || root_values(&inner, &g),
        &mut report,
    );
    let tw = Instant::now();
    // Generational: the old slots written since the precleaning (world stopped).
    if let (Some(c), Some(gs)) = (gen.as_mut().filter(|c| c.young()), inner.gen.as_ref()) {
        let vals = gs
            .rescan(c, &inner.arena, &types)
            .unwrap_or_else(|e| panic!("the remembered set failed in the remark: {e}"));
        marking::trace_from(&ctx, &mut m, &vals, true);
        c.old_slots.sort_unstable();
        c.old_slots.dedup();
    }
    let from_top = inner.moving.top.load(Ordering::Relaxed);
    // Ephemerons: finish the fix-point in the pause (weak references are cleared at the flip,
    // in this same pause: see `crate::weak`).
    let liveness = Liveness {
        from: st.from,
        limit: st.mark_top,
        top: from_top,
        mark: &tables.mark,
        large: &inner.large,
    };
    inner
        .roots
        .weak
        .ephemeron_fixpoint(&liveness, true, |vals| {
            marking::trace_from(&ctx, &mut m, vals, true)
        });
    let weak_remset = tw.elapsed();
    let live_objects = m.marked + inner.pacer.black_marked();
    let from_words = (from_top - st.from) / WORD;
    if cfg.debug.checkmark {
        verify::checkmark(
            &view(&inner, &g),
            &tables.mark,
            st.from,
            st.mark_top,
            &types,
        );
    }
    if cfg.debug.verify {
        if let Err(e) =
            verify::check_marks(&tables.mark, &tables.live.bits, st.from, from_words, &types)
        {
            panic!("mark/live bitmaps disagree after concurrent marking: {e}");
        }
    }
    let pc = PauseCtx {
        t0,
        // The cycle's time to safepoint: the longest of its pauses'.
        tts: tts
            .max(st.tts)
            .max(switch_pause.map_or(Duration::ZERO, |p| p.1)),
        trigger: st.trigger,
        calls0: st.calls0,
        moving_before: st.moving_before,
        large_before: st.large_before,
        mark_time: concurrent_mark,
        mark_cpu,
        pause_cpu0,
        plan_ahead,
        live_objects,
        from: st.from,
        from_top,
        mark_top: st.mark_top,
        bitmap_words: from_words.div_ceil(64) + 1,
        pauses: std::iter::once(Pause {
            kind: "initial-mark",
            duration: st.initial,
        })
        .chain(switch_pause.map(|(duration, _)| Pause {
            kind: "satb-switch",
            duration,
        }))
        .collect(),
        tts_by_mutator: merge_tts(st.tts_by_mutator, g.tts_by_mutator()),
        cycle_start: st.cycle_start,
        gen,
        large_prescan: Some(large_pre),
    };
    let remark = t0.elapsed();
    m.publish(&inner.pacer);
    // The marker itself (its deque and its stack, grown to hold the widest gray set: 0.25 ms
    // to free at 1 GiB of churn) is dropped once the world runs again, not in the pause.
    let to_flip = st.cycle_start.elapsed();
    inner.pacer.end_mark(concurrent_mark, to_flip);
    let mut outcome = flip(&inner, &g, &types, pc, true, &mut scratch);
    if let Ok(Flip::Armed(stats, _) | Flip::Done(stats)) = &mut outcome {
        stats.pacing.trigger_bytes = st.pace.trigger;
        stats.pacing.predicted_to_flip = st.pace.predicted;
        stats.pacing.actual_to_flip = to_flip;
        stats.pacing.markers = cfg.gc_threads;
        stats.remark = remark;
        stats.preclean_rounds = report.preclean_rounds;
        stats.preclean_last_dirty = report.preclean_last_dirty;
        stats.remark_dirty_pages = report.remark_dirty_pages;
        stats.handshake = report.handshake;
        stats.remark_satb_entries = report.remark_satb_entries;
        stats.remark_buffers = report.remark_buffers;
        stats.remark_queues = report.remark_queues;
        stats.remark_trace = report.remark_trace;
        stats.remark_weak_remset = weak_remset;
        stats.remark_queue_entries = report.remark_queue_entries;
        stats.remark_buffer_bytes = report.remark_buffer_bytes;
        stats.remark_traced = report.remark_traced;
        stats.handshake_buffer_bytes = report.handshake_buffer_bytes;
        stats.satb_switch = report.satb_switch.map(|reason| crate::stats::SatbSwitch {
            reason,
            dirty_pages: report.switch_dirty_pages,
        });
    }
    drop(scratch);
    // The pause lasts until the resume: what `flip` and this function dropped after its own
    // measurement (at the arming) is part of it.
    if let Ok(Flip::Armed(stats, _) | Flip::Done(stats)) = &mut outcome {
        if let Some(p) = stats.pauses.last_mut() {
            p.duration = t0.elapsed();
        }
    }
    inner.sp.resume(g);
    drop(m);
    drop(boost);
    match outcome {
        Ok(Flip::Armed(stats, finish)) => {
            inner.gate.set_phase(CyclePhase::Compacting);
            compact_and_finish(inner, *stats, *finish)
        }
        Ok(Flip::Done(stats)) => {
            let mut stats = *stats;
            stats.vmas = (inner.arena.vmas_at_creation(), inner.arena.vma_count());
            {
                // Locks a forked child needs (see `crate::forkgate`).
                let _r = crate::forkgate::Region::enter();
                pace_next(&inner, &mut stats, (0, Duration::ZERO));
                take_pace_stats(&inner, &mut stats);
            }
            hook_panic_on_gc_thread(record_cycle(&inner, &stats));
            concurrent_idle(&inner);
            verify_after_concurrent(&inner, stats.cycle);
        }
        Err(e) => {
            // The concurrent flip has no fallible step after references change (see `flip`),
            // so this is an error before any object moved.
            eprintln!("faultline: concurrent cycle failed before the flip: {e}");
            concurrent_idle(&inner);
        }
    }
}

/// The heap's GC thread ([`crate::gcthread`]): runs the concurrent cycles handed to it, one
/// at a time, with its crew of helpers ([`crate::crew`]); parks between them; ends when the
/// heap is gone.
fn gc_thread(weak: std::sync::Weak<HeapInner>) {
    // Lowered once (helpers and compaction workers, its crew, inherit this); in boost mode,
    // registered for the jobs only, so a parked thread holds no slot of the registry.
    let boost = match weak.upgrade() {
        Some(heap) => {
            let entered = crate::background::enter(&heap.config);
            let boost = crate::background::inherit();
            // Unregistered (its nice value stays as `enter` set it) until a job.
            drop(entered);
            boost
        }
        None => return,
    };
    crate::crew::with_crew(|| loop {
        // No reference to the heap is held between jobs: a queued job holds its own. (A fork
        // waits for the hand-over, so a child gets no copy of its lock held; the reference is
        // dropped outside the region: the last one drops the heap, which joins threads.)
        let (heap, job) = {
            let _r = crate::forkgate::Region::enter();
            match weak.upgrade() {
                Some(heap) => {
                    let job = heap.gc_thread.take();
                    (heap, job)
                }
                None => return,
            }
        };
        drop(heap);
        let Some(job) = job else {
            std::thread::park_timeout(crate::gcthread::IDLE_CHECK);
            continue;
        };
        let registered = boost.register();
        run_gc_job(job);
        drop(registered);
        let heap = weak.upgrade();
        if let Some(heap) = &heap {
            heap.gc_thread.done();
        }
        drop(heap);
    });
}

/// Start a thread named `faultline-gc` running `f` (the heap's GC thread, or a spare one for
/// one cycle), counted in [`crate::collector_threads_started`]; its handle.
fn start_gc_thread(f: impl FnOnce() + Send + 'static) -> std::io::Result<std::thread::Thread> {
    let h = std::thread::Builder::new()
        .name("faultline-gc".into())
        .spawn(f)?;
    crate::crew::count_start();
    Ok(h.thread().clone())
}

/// Run a concurrent cycle handed to a GC thread.
fn run_gc_job(job: crate::inner::GcJob) {
    // A failure here (verification, checkmark) leaves references half-moved: the heap cannot
    // continue, so end the process loudly rather than leave every mutator waiting for a
    // cycle that will never finish.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    if r.is_err() {
        eprintln!("faultline: the GC thread failed (see the panic above); aborting");
        std::process::abort();
    }
}

/// Phase 3 (finishing the plan) and the flip (stop-the-world phase 4, concurrent phase 4's
/// end), with marking complete and the world stopped; then either stop-the-world phases 5-6,
/// or arming the concurrent compaction.
fn flip(
    inner: &HeapInner,
    g: &SpState,
    types: &Arc<TypeRegistry>,
    pc: PauseCtx,
    concurrent: bool,
    buf: &mut [u8],
) -> Result<Flip, CollectError> {
    let cfg = &inner.config;
    let moving = &inner.moving;
    let large = &inner.large;
    let arena = &inner.arena;
    // No prefill chunk in flight while the watermarks are read and reset (`crate::prefill`).
    let tq = Instant::now();
    let _quiet = inner.prefill.quiesce();
    let flip_quiesce = tq.elapsed();
    let PauseCtx {
        t0,
        tts,
        trigger,
        calls0,
        moving_before,
        large_before,
        mark_time,
        mark_cpu,
        pause_cpu0,
        plan_ahead,
        live_objects,
        from,
        from_top,
        mark_top,
        bitmap_words,
        mut pauses,
        tts_by_mutator,
        cycle_start,
        mut gen,
        large_prescan,
    } = pc;
    let young = gen.as_ref().is_some_and(GenCycle::young);
    // The old generation (empty when not generational): never cleaned, released or moved by
    // a young cycle.
    let old_range = gen.as_ref().map_or((0, 0), |c| c.old);
    // 3. Plan. In a concurrent cycle the chunk sums were computed before the pause; here only
    //    the chunks marking changed since are redone.
    let tp = Instant::now();
    let to_index = 1 - moving.current.load(Ordering::Relaxed);
    let to_half_base = moving.half_base[to_index];
    // Pinned objects ([`crate::pins`]): which stay (kept), which stay stranded, which leave
    // (unpinned: copied after the compacted objects; a young cycle forwards only the old
    // slots its remembered set names, and old objects may refer to a stranded object, so it
    // relocates none unless it scanned the whole old generation: `GenCycle::stranded_leave`),
    // and the destination window (the largest gap between the stranded objects of the
    // destination half; generational, promoting or into the old generation's half: above
    // them and the old generation).
    // (`keep_unpinned`: see `PinTable::plan_flip`; the old generation is never cleaned.)
    let reserved = gen.as_ref().map(|c| c.old);
    let promotes = gen.as_ref().is_some_and(|c| c.promote);
    let plan_pins = |keep_unpinned: bool| {
        let mut pins = inner.roots.pins.plan_flip(
            (from, from_top),
            to_half_base,
            moving.half_bytes,
            to_index,
            reserved,
            promotes,
            keep_unpinned,
            |a| inner.tables.mark.get((a - from) / WORD),
            types,
        );
        if old_range.1 > old_range.0 {
            let old = [old_range];
            pins.clean = pins
                .clean
                .iter()
                .flat_map(|&(s, e)| crate::pins::subtract(s, e, &old))
                .collect();
            pins.leaving_in_window = pins
                .leaving_in_window
                .iter()
                .flat_map(|&(s, e)| crate::pins::subtract(s, e, &old))
                .collect();
        }
        pins
    };
    let mut pins = plan_pins(young && !gen.as_ref().is_some_and(|c| c.stranded_leave));
    // A stop-the-world cycle that will slide in place (see `slide` below) keeps its dense
    // prefix where it is ([`crate::dense`]): its gaps become fillers and live words, before
    // the prefix sums are computed.
    let slides_in_place = !concurrent
        && cfg.stw_compaction.slides(cfg.debug.poison_released)
        && !pins.active()
        && !young
        && inner.gen.is_none()
        && from == moving.half_base[1 - to_index]
        && moving.end() == from + moving.half_bytes;
    let dense_cpu0 = cputime::thread_cpu();
    let dense = match cfg.dense_prefix.filter(|_| slides_in_place) {
        Some(threshold) => {
            let n = dense::choose(&inner.tables.live.bits, (from_top - from) / WORD, threshold);
            // SAFETY: the world is stopped and marking is complete; the half's pages below
            // `from_top` are present and in use; the prefix sums are computed below.
            unsafe { dense::keep(&inner.tables.live, from, n) }
        }
        None => DensePrefix::default(),
    };
    // A concurrent copy cycle into the other half compacts its black objects to the page
    // offsets they have, so that their fully live pages are moved whole, updated in place,
    // instead of copied ([`dense::align_runs`], [`crate::compaction`]).
    let dense_runs = concurrent
        && cfg.dense_runs
        && inner.compaction.strategy == MapStrategy::Copy
        && arena.can_move()
        && !pins.active()
        && !young
        && inner.gen.is_none()
        && from == moving.half_base[1 - to_index];
    inner
        .compaction
        .dense_runs
        .store(dense_runs, Ordering::Relaxed);
    let runs = if dense_runs {
        // The rank of the black boundary from the prefix sums (only the chunks marking changed
        // since the concurrent planning are redone here, and again below for the fillers).
        let live = &inner.tables.live;
        let (total, _) = live.finish_prefix(bitmap_words);
        let used = (from_top - from) / WORD;
        let lo = (mark_top.max(from) - from) / WORD;
        // A boundary at the used part's end (nothing allocated black) may be the bitmap's
        // end, where `rank` has no word to read: every live word lies below it.
        let below = if lo >= used { total } else { live.rank(lo) };
        // SAFETY: the world is stopped and marking is complete; `[mark_top, from_top)` is the
        // used part of the half above the black boundary (present pages), `below` its live
        // words below; the prefix sums are computed again below.
        unsafe { dense::align_runs(live, &inner.tables.mark, from, lo, used, below) }
    } else {
        DenseRuns::default()
    };
    let dense_cpu = cputime::since(dense_cpu0);
    let (live_words, chunks_redone) = inner.tables.live.finish_prefix(bitmap_words);
    let pages = (live_words * WORD).div_ceil(PAGE_SIZE);
    // A young cycle that lets unpinned stranded objects leave (`GenCycle::stranded_leave`)
    // places them after the compacted objects in the destination window. When they do not fit
    // there, they stay stranded this cycle, as in any other young cycle (the old slots it
    // found are forwarded all the same), and it fails only if the compacted objects alone do
    // not fit; they leave at a later cycle with the room (the next into their own half, where
    // their pages are room). Before, the cycle failed with `NoRoomBesidePins`, and so did
    // every cycle after it while the destination's pins were held: each began with the same
    // unpinned objects and let them leave.
    // (`fits`: the compacted objects' pages, then the leaving objects, end inside the
    // window; the same test decides `NoRoomBesidePins` below.)
    let floor = gen.as_ref().map_or(0, |c| c.to_floor);
    let fits = |p: &crate::pins::FlipPins| {
        let leaving: usize = p.leaving.iter().map(|s| s.bytes).sum();
        page_up(p.to_lo.max(floor) + pages * PAGE_SIZE + leaving) <= p.to_hi
    };
    if young && !pins.leaving.is_empty() && !fits(&pins) {
        pins = plan_pins(true);
        if let Some(c) = gen.as_mut() {
            c.stranded_stayed = true;
        }
    }
    let to = pins.to_lo.max(floor);
    // Promotion extends the old generation: only when the survivors land right above it
    // (stranded objects above it push the window higher: the survivors then stay young).
    // A full cycle promotes only into its whole destination half, nothing pinned.
    if let Some(c) = gen.as_mut() {
        let elsewhere = to != c.to_floor;
        let blocked = if c.young() {
            old_range.1 > old_range.0 && elsewhere
        } else {
            elsewhere || pins.active()
        };
        if blocked {
            c.promote = false;
        }
    }
    let promote = gen.as_ref().is_some_and(|c| c.promote);
    let to_offset = arena.offset_of(to);
    // The leaving objects' new places: after the compacted objects' pages.
    let mut moved: Vec<(usize, usize)> = Vec::with_capacity(pins.leaving.len());
    let reloc_at = to + pages * PAGE_SIZE;
    let mut reloc_end = reloc_at;
    for s in &pins.leaving {
        moved.push((s.addr, reloc_end));
        reloc_end += s.bytes;
    }
    moved.sort_unstable();
    if !fits(&pins) {
        // The live objects do not fit in the window between the stranded pinned objects of
        // the destination half: the cycle fails before anything moved (dropping pins lets a
        // later cycle fit, see `crate::pins`). (A concurrent cycle reports it on stderr.)
        gen_abandon(inner, gen.as_ref());
        return Err(CollectError::NoRoomBesidePins {
            live_bytes: page_up(reloc_end) - to,
            room_bytes: pins.to_hi - to,
        });
    }
    let pins_active = pins.active();
    let mut plan = Plan {
        from,
        src: from,
        from_top,
        to,
        to_offset,
        live_words,
        pages,
        bitmap_words,
        tables: inner.tables.clone(),
        types: types.clone(),
        kept: pins.kept.clone().into_boxed_slice(),
        moved: moved.clone().into_boxed_slice(),
    };
    // Generational: a promoting young cycle promotes the survivors old enough
    // (`HeapConfig::promotion_age`), up to a page boundary; the rest stay young above it.
    let young_end = page_up(reloc_end);
    let promote_hi = match gen.as_mut() {
        Some(c) if promote => {
            let hi = if pins_active {
                young_end
            } else {
                crate::generational::promotion_end(
                    &plan,
                    c.promote_below,
                    to + live_words * WORD,
                    young_end,
                )
            };
            if hi == to {
                c.promote = false;
            }
            hi
        }
        _ => to,
    };
    let promote = promote && promote_hi > to;
    let plan_time = tp.elapsed();
    // 4. Make sure the destination half is clean (a release the last cycle could not do is
    //    redone here, and garbage pages outside the window left by pinned objects are given
    //    back; stranded objects' pages are not touched): a failure point before any
    //    reference changes.
    let stranded_to: Vec<(usize, usize)> = {
        let mut v: Vec<(usize, usize)> = pins
            .staying
            .iter()
            .chain(pins.leaving.iter())
            .filter(|s| s.addr >= to_half_base && s.addr < to_half_base + moving.half_bytes)
            .map(|s| s.pages())
            .collect();
        if old_range.1 > old_range.0
            && old_range.0 >= to_half_base
            && old_range.0 < to_half_base + moving.half_bytes
        {
            v.push(old_range);
        }
        v.sort_unstable();
        v
    };
    // (Kept fresh memory stays only for a concurrent flip, nothing pinned: see
    // `crate::release`.)
    let t_prepare = Instant::now();
    let keep_fresh = (concurrent
        && inner.concurrent_now()
        && cfg.choreography == Choreography::Arena
        && !pins_active)
        .then(|| (to, page_up(reloc_end)));
    prepare_destination(
        arena,
        &inner.release,
        moving.half_offset[to_index],
        moving.half_bytes,
        &stranded_to,
        &pins.clean,
        keep_fresh,
    )
    .inspect_err(|_| gen_abandon(inner, gen.as_ref()))?;
    let flip_prepare = t_prepare.elapsed();
    // The leaving objects' contents, read before anything changes.
    let leaving: Vec<Vec<u8>> = pins.leaving.iter().map(|s| s.contents()).collect();

    // Per-cycle choreography: register the destination range and detach the old half's pages
    // before any reference changes; if either fails, this cycle compacts in the pause. With
    // pinned objects the cycle compacts in the pause (detaching the old half would move them).
    let mut flip_concurrently = concurrent && inner.concurrent_now();
    if flip_concurrently && cfg.choreography == Choreography::PerCycle && pins_active {
        flip_concurrently = false;
    }
    let mut detached = None;
    if flip_concurrently && cfg.choreography == Choreography::PerCycle && pages > 0 {
        let old_end = {
            let pop = moving
                .populated
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            (*pop).max(page_up(from_top))
        };
        match choreography::setup(arena, to_offset, pages * PAGE_SIZE, from, old_end) {
            Ok(d) => {
                plan.src = d.0;
                detached = Some(d);
            }
            Err(e) => {
                eprintln!(
                    "faultline: per-cycle choreography failed ({e}); this cycle compacts in the pause"
                );
                flip_concurrently = false;
            }
        }
    }

    // A stop-the-world flip that slides in place: the plan's destination is its own half.
    // (Not with pinned objects: a kept object would be overwritten by the objects sliding
    // down; such a cycle compacts into the other half. Nor while the half's window is not
    // the whole half, where pinned objects were: compacting into the other half once gives
    // the half its whole length back, and the garbage pages outside the window are cleaned.)
    let slide = !flip_concurrently
        && cfg.stw_compaction.slides(cfg.debug.poison_released)
        && !pins_active
        && !young
        && inner.gen.is_none()
        && from == moving.half_base[1 - to_index]
        && moving.end() == from + moving.half_bytes;
    debug_assert!(slide == slides_in_place || concurrent);
    if slide {
        plan.to = from;
        plan.to_offset = arena.offset_of(from);
    }

    // 4. Update roots and large objects' fields. A new era first: every `Value` read before
    //    this pause is stale from here on (objects move, dead ones are freed).
    let tc = Instant::now();
    inner.roots.new_era();
    // Kept objects are stranded from here on: their reference slots are forwarded with the
    // roots (and are roots until they leave).
    inner
        .roots
        .pins
        .commit(&pins, types, moving.half_base, moving.half_bytes, to_index);
    if young && !pins.leaving.is_empty() {
        // A young cycle that scanned the whole old generation lets them leave
        // (`GenCycle::stranded_leave`; other young cycles keep every stranded object).
        inner.roots.pins.note_young_left();
    }
    // A root source's slot is forwarded only if marking found its object live (see
    // `roots::visit_source`); objects above `mark_top` were allocated during marking (black).
    let marked = Liveness {
        from,
        limit: mark_top,
        top: from_top,
        mark: &inner.tables.mark,
        large,
    };
    visit_roots(g, &inner.roots, Some(&|a| marked.is_live(a)), &mut |s| {
        *s = plan.forward(*s)
    });
    inner.roots.end_forwarding();
    // A young cycle's old slots: forwarded; those still referring to a young object (the
    // survivors stay young unless promoted) stay in the remembered set.
    if let (Some(c), Some(gs)) = (gen.as_ref().filter(|c| c.young()), inner.gen.as_ref()) {
        let young_lo = if promote { promote_hi } else { to };
        for &s in &c.old_slots {
            let p = s as *mut usize;
            // SAFETY: a reference slot of an old object (present, never moved by a young
            // cycle); the world is stopped; each slot is listed once.
            let v = unsafe {
                let v = plan.forward(*p);
                *p = v;
                v
            };
            if v >= young_lo && v < young_end {
                gs.remset.keep_dirty(s);
            }
        }
        gs.remset.after_forwarding(arena);
    }
    // The leaving (unpinned stranded) objects: their old pages inside the destination window
    // are released (their contents were copied above; no stranded object stays there), then
    // they are forwarded and written to their new places, after the compacted objects' pages
    // (present from here on).
    for &(s, e) in &pins.leaving_in_window {
        if let Err(e) = arena.release(arena.offset_of(s), e - s) {
            fatal_after_flip("releasing the pages of unpinned objects", &e);
        }
    }
    if !leaving.is_empty() {
        let mut buf = vec![0u8; page_up(reloc_end) - reloc_at];
        for (s, bytes) in pins.leaving.iter().zip(&leaving) {
            let new = plan.forward(s.addr);
            let at = new - reloc_at;
            buf[at..at + s.bytes].copy_from_slice(bytes);
            // (Its header from the copy: its old pages may be released by now.)
            let h = Header(u64::from_ne_bytes(
                bytes[..WORD].try_into().expect("a header"),
            ));
            types.for_each_ref_word(h, 0, s.bytes / WORD, |k| {
                let i = at + k * WORD;
                let v = usize::from_ne_bytes(buf[i..i + WORD].try_into().expect("a word"));
                buf[i..i + WORD].copy_from_slice(&plan.forward(v).to_ne_bytes());
            });
        }
        // SAFETY: `buf` holds whole pages; the range after the destination pages is absent
        // (the window was clean, see `prepare_destination`).
        let r = unsafe { arena.resolve_copy(arena.offset_of(reloc_at), buf.as_ptr(), buf.len()) };
        if let Err(e) = r {
            fatal_after_flip("writing unpinned objects to the new half", &e);
        }
    }
    // Identity hashes follow their objects (and die with them).
    let t_hashes = Instant::now();
    let stranded_now = if pins_active {
        inner.roots.pins.stranded()
    } else {
        Vec::new()
    };
    // The fillers that aligned the dense runs are not objects anybody hashed or refers to.
    runs.marks(&inner.tables.mark, false);
    let hashed_objects = inner.hashes.rekey(|a| {
        if a >= from && a < from_top {
            plan.mark().get((a - from) / WORD).then(|| plan.forward(a))
        } else if large.contains(a) {
            large.marks.get(large.page_of(a)).then_some(a)
        } else if a >= old_range.0 && a < old_range.1 {
            // An old object (a young cycle leaves it where it is).
            Some(a)
        } else if pins_active
            && (stranded_now.iter().any(|s| s.0 == a) || moved.iter().any(|m| m.0 == a))
        {
            Some(plan.forward(a))
        } else {
            None
        }
    });
    // Weak references, ephemerons, finalization: cleared, freed, delivered or forwarded, in
    // the pause that decided (marking is complete: every live object is marked, those
    // allocated during marking included).
    let weak = inner.roots.weak.sweep(
        &Liveness {
            from,
            limit: from_top,
            top: from_top,
            mark: &inner.tables.mark,
            large,
        },
        |a| plan.forward(a),
    );
    runs.marks(&inner.tables.mark, true);
    // The dead large objects: released now (stop-the-world) or when the concurrent compaction
    // ends (off the pause; they stay allocated until then, so nothing reuses their space).
    let skip_large_refs = cfg.debug.breakage == Some(Breakage::SkipLargeObjectRefs);
    let mut large_dead = Vec::new();
    let t_large = Instant::now();
    let mut large_slots = 0usize;
    let mut large_examined = 0usize;
    let mut forward_large = |start: usize| {
        let h = header(start);
        let size = types.size_words(h).unwrap_or(1);
        types.for_each_ref_word(h, 0, size, |k| {
            let slot = (start + k * WORD) as *mut usize;
            // SAFETY: a reference slot of a live large object (present, not moving).
            unsafe { *slot = plan.forward(*slot) };
            large_slots += 1;
        });
    };
    {
        let mut lg = large.lock();
        let allocated = std::mem::take(&mut lg.allocated);
        let mut decide = |start: usize, len: usize| {
            large_examined += 1;
            if !large.marks.get(large.page_of(start)) {
                large_dead.push((start, len));
            } else if !skip_large_refs {
                forward_large(start);
            }
        };
        match &large_prescan {
            // Concurrent: the objects examined before the pause, and those allocated since.
            Some(pre) => {
                for &(start, len) in pre.undecided.iter().chain(allocated.iter()) {
                    decide(start, len);
                }
                large_examined += pre.refs.len();
                if !skip_large_refs {
                    for &start in &pre.refs {
                        forward_large(start);
                    }
                }
            }
            None => {
                for (&start, &len) in lg.objects.iter() {
                    decide(start, len);
                }
            }
        }
    }
    let large_deferred = large_prescan.map_or_else(Vec::new, |p| p.refless_unmarked);
    let large_refs_time = t_large.elapsed();
    let flip_refs = tc.elapsed();
    let t_arm = Instant::now();
    let mut stats = CycleStats {
        trigger,
        time_to_safepoint: tts,
        mark: mark_time,
        cpu: CpuSplit {
            mark: mark_cpu,
            ..CpuSplit::default()
        },
        plan: plan_time,
        plan_ahead,
        plan_chunks_redone: chunks_redone,
        large_refs: large_refs_time,
        large_ref_slots: large_slots,
        large_examined,
        hashed_objects,
        rekey_hashes: t_hashes.elapsed(),
        moving_before,
        large_before,
        live_objects,
        mutator_black_objects: inner.pacer.black_marked(),
        pages_filled: pages,
        mutators: g.mutators.len(),
        mutator_tts: tts_by_mutator,
        weak,
        dense_kept_pages: dense.pages,
        dense_dead_bytes: (dense.dead_words + runs.dead_words) * WORD,
        dense_cpu,
        flip_prepare,
        flip_quiesce,
        flip_refs,
        ..CycleStats::default()
    };

    if flip_concurrently {
        // Make the destination half current with every destination page absent, and arm the
        // compaction; workers and faults fill pages. Nothing below can fail: the references
        // already point at the new addresses.
        let (from_populated, from_end) = {
            let mut pop = moving
                .populated
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let old_end = (*pop).max(page_up(from_top));
            let old_present_end = moving.present_end(old_end);
            moving.current.store(to_index, Ordering::Relaxed);
            moving.window_end.store(pins.to_hi, Ordering::Relaxed);
            if promote {
                // The promoted survivors are old now: the window starts above them (empty
                // when every survivor was promoted).
                moving.window.store(promote_hi, Ordering::Relaxed);
                moving
                    .top
                    .store(reloc_end.max(promote_hi), Ordering::Relaxed);
            } else {
                moving.window.store(to, Ordering::Relaxed);
                // (`reloc_end` is the destination pages' end, or past the unpinned objects.)
                moving.top.store(reloc_end, Ordering::Relaxed);
            }
            *pop = page_up(reloc_end);
            // What to keep of the old half for the next flip into it, from what this
            // compaction and the last one into that half fill (a cycle that traced
            // everything predicts nothing for a young one); the black pages the compaction
            // may move whole stay out of it.
            let next = (cfg.choreography == Choreography::Arena
                && !pins_active
                && gen.as_ref().is_none_or(|c| c.young() && c.old.1 > c.old.0))
            .then(|| crate::release::KeepPlan {
                from,
                extent: *pop - to,
                want: inner.fresh_headroom().min(cfg.keep_fresh_bytes.unwrap_or(
                    if gen.is_some() && inner.compaction.strategy == MapStrategy::Copy {
                        crate::config::DEFAULT_GEN_KEEP_FRESH
                    } else {
                        usize::MAX
                    },
                )),
                below: if inner.compaction.dense_runs.load(Ordering::Relaxed) {
                    page_down(mark_top)
                } else {
                    usize::MAX
                },
            });
            crate::release::flip_watermarks(moving, &inner.release, &mut pop, next);
            (old_end, old_present_end)
        };
        stats.mode = GcMode::Concurrent;
        stats.moving_after = moving.used();
        stats.large_after = large.used();
        if let Some(c) = gen.as_ref() {
            let objects_end = if pins.leaving.is_empty() {
                to + live_words * WORD
            } else {
                reloc_end
            };
            // The large objects this cycle found dead are released at its finish: they are
            // not what a full cycle leaves (its next full cycle is due past what lives).
            let dead_large: usize = large_dead
                .iter()
                .copied()
                .chain(large.unmarked(&large_deferred))
                .map(|(_, len)| len)
                .sum();
            stats.gen = gen_at_flip(
                inner,
                c,
                (to, objects_end, promote_hi, young_end),
                &plan,
                stats.moving_after,
                stats.large_after.saturating_sub(dead_large),
            );
        }
        // No cycle starts before this one is finished; the finish decides the next trigger.
        stats.cycle = inner.cycles.fetch_add(1, Ordering::Relaxed) + 1;
        let kind = if pauses.is_empty() {
            "mark+flip"
        } else {
            "remark+flip"
        };
        pauses.push(Pause {
            kind,
            duration: t0.elapsed(),
        });
        stats.pauses = pauses;
        // The dead large objects wait in the large space for the cycle's end (also when a
        // forked child ends it: `crate::fork`).
        large.hold_flip_dead(large_dead, large_deferred);
        let finish = Finish {
            from,
            from_populated,
            from_end,
            keep: pins.kept_pages.clone(),
            detached,
            calls0,
            cycle_start,
            gen,
        };
        if pages == 0 {
            // Nothing to compact: finish in the pause.
            let end = finish_old_half(
                arena,
                moving,
                &inner.release,
                cfg.debug.poison_released,
                cfg.recycle_old_half,
                from,
                from_end,
                inner.fresh_headroom(),
                &finish.keep,
            );
            stats.pages_recycled = end.pages;
            stats.pages_kept = end.kept;
            large.release_flip_dead(arena)?;
            if let Some(c) = finish.gen.as_ref() {
                gen_finish(inner, c, types);
            }
            stats.total = t0.elapsed();
            stats.cpu.pause = cputime::since(pause_cpu0);
            stats.calls = arena.sys().counters().snapshot().since(&calls0);
            return Ok(Flip::Done(Box::new(stats)));
        }
        // SAFETY: the world is stopped, the previous compaction finished (checked by
        // `collect`), and no resolver is inside.
        unsafe { inner.compaction.arm(plan) };
        // From here mutators that allocate faster than the compaction fills pages help it, so
        // that the next cycle starts with headroom for its marking ([`crate::pacer`],
        // compaction assists), the reserve sized by that marking's work. What a generational
        // cycle promotes leaves the room young objects have when it ends: it is not counted
        // as free.
        let used = inner.used();
        inner.pacer.begin_compaction(
            next_mark_bytes(inner, used),
            inner
                .capacity()
                .saturating_sub(used + stats.gen.promoted_bytes),
        );
        stats.flip_arm = t_arm.elapsed();
        // The pause lasts until arming is done (it runs with the world stopped): measure here.
        if let Some(p) = stats.pauses.last_mut() {
            p.duration = t0.elapsed();
        }
        stats.cpu.pause = cputime::since(pause_cpu0);
        stats.total = cycle_start.elapsed();
        return Ok(Flip::Armed(Box::new(stats), Box::new(finish)));
    }

    inner.gate.set_phase(CyclePhase::Compacting);
    let compact_cpu0 = cputime::thread_cpu();
    // CPU of the slide's helper threads (counted in the compaction's and the pause's CPU).
    let mut slide_helper_cpu = Duration::ZERO;
    if slide {
        // 5. Compact in place, on `pause_slide_threads()` threads (the world is stopped: the
        //    CPUs are free).
        let t_fill = Instant::now();
        // SAFETY: the world is stopped and nothing else reads or writes the moving space; the
        // plan's destination is its own source half, present up to its used end.
        let r = unsafe { plan.slide_on(cfg.pause_slide_threads()) };
        stats.compact_fill = t_fill.elapsed();
        (stats.slide_threads, stats.slide_waits) = (r.threads, r.waited);
        slide_helper_cpu = r.helper_cpu;
    }
    // 5. Compact into the other half, a batch of pages per COPY.
    let mut p = 0;
    while p < pages && !slide {
        let n = BATCH_PAGES.min(pages - p);
        let t_fill = Instant::now();
        plan.fill_pages(DestPage(p), &mut buf[..n * PAGE_SIZE]);
        let t_map = Instant::now();
        stats.compact_fill += t_map - t_fill;
        // SAFETY: `buf` holds `n` filled pages.
        let r = unsafe {
            arena.resolve_copy(plan.dest_offset(DestPage(p)), buf.as_ptr(), n * PAGE_SIZE)
        };
        stats.compact_map += t_map.elapsed();
        if let Err(e) = r {
            fatal_after_flip("stop-the-world compaction", &e);
        }
        p += n;
    }
    stats.compact = tc.elapsed();
    stats.cpu.compact = cputime::since(compact_cpu0) + slide_helper_cpu;

    // 6. Switch halves, recycle or release the old half, sweep large objects.
    // (A slide keeps as much of its free tail present as will be allocated before the next
    // trigger, as recycling would move in: the fresh headroom for the bytes in use after it.)
    let keep_tail = if slide && cfg.recycle_old_half && !cfg.debug.poison_released {
        let used = live_words * WORD + large.used();
        inner.occupancy_goal(used).saturating_sub(used)
    } else {
        0
    };
    let mut kept_tail = (0, 0);
    let finish_cpu0 = cputime::thread_cpu();
    let mut objects_end = to;
    let old_end = {
        let mut pop = moving
            .populated
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let old_end = moving.present_end(*pop).max(page_up(from_top));
        if slide {
            // The halves stay: release the free tail of this one, but what is kept.
            let new_end = from + pages * PAGE_SIZE;
            let (end, kept) = release_free_tail(arena, new_end, old_end, keep_tail);
            *pop = end;
            kept_tail = (new_end, new_end + kept * PAGE_SIZE);
            stats.pages_recycled = kept;
            moving
                .top
                .store(from + live_words * WORD, Ordering::Relaxed);
        } else {
            moving.current.store(to_index, Ordering::Relaxed);
            moving.window_end.store(pins.to_hi, Ordering::Relaxed);
            let top = if pins.leaving.is_empty() {
                to + live_words * WORD
            } else {
                reloc_end
            };
            objects_end = top;
            if promote {
                // The promoted survivors are old now: the window starts above them (empty
                // when every survivor was promoted).
                moving.window.store(promote_hi, Ordering::Relaxed);
                moving.top.store(top.max(promote_hi), Ordering::Relaxed);
            } else {
                moving.window.store(to, Ordering::Relaxed);
                moving.top.store(top, Ordering::Relaxed);
            }
            *pop = page_up(reloc_end);
        }
        moving.reset_watermarks(*pop);
        moving.keep_dirty(kept_tail.0, kept_tail.1);
        old_end
    };
    if !slide {
        stats.pages_recycled = finish_old_half(
            arena,
            moving,
            &inner.release,
            cfg.debug.poison_released,
            cfg.recycle_old_half,
            from,
            old_end,
            inner.fresh_headroom(),
            &pins.kept_pages,
        )
        .pages;
    }
    large_dead.extend(large.unmarked(&large_deferred));
    large.release_dead(arena, &large_dead)?;
    stats.cpu.finish = cputime::since(finish_cpu0);
    stats.moving_after = moving.used();
    stats.large_after = large.used();
    if let Some(c) = gen.as_ref() {
        stats.gen = gen_at_flip(
            inner,
            c,
            (to, objects_end, promote_hi, young_end),
            &plan,
            stats.moving_after,
            stats.large_after,
        );
        gen_finish(inner, c, types);
    }
    inner.set_trigger(stats.moving_after + stats.large_after);
    stats.cycle = inner.cycles.fetch_add(1, Ordering::Relaxed) + 1;
    verify_or_panic(inner, g, types, &format!("after cycle {}", stats.cycle));
    let total = t0.elapsed();
    stats.mode = GcMode::StopTheWorld;
    stats.pauses = vec![Pause {
        kind: "stw",
        duration: total,
    }];
    stats.total = total;
    stats.cpu.pause = cputime::since(pause_cpu0) + slide_helper_cpu;
    stats.calls = arena.sys().counters().snapshot().since(&calls0);
    Ok(Flip::Done(Box::new(stats)))
}

/// Generational mode, at the flip of cycle `c` (see `GenState::at_flip`): `placed` is the
/// destination window's start, the compacted objects' end, the old generation's new end if
/// they are promoted and the survivors' page-rounded end; `plan` the cycle's plan (the
/// survivors' age bands are forwarded with it); `live` the moving space's bytes after the
/// flip (the window and allocation point are set already); `large_live` the large-object bytes
/// that stay (the dead ones not counted, released now or at the finish).
fn gen_at_flip(
    inner: &HeapInner,
    c: &GenCycle,
    placed: (usize, usize, usize, usize),
    plan: &Plan,
    live: usize,
    large_live: usize,
) -> GenStats {
    let Some(gs) = inner.gen.as_ref() else {
        return GenStats::default();
    };
    let objects_end = placed.1;
    let fwd = |a: usize| {
        if a <= plan.from {
            plan.to
        } else if a >= plan.from_top {
            objects_end
        } else {
            plan.to + WORD * plan.live().rank((a - plan.from) / WORD)
        }
    };
    let promoted = gs
        .at_flip(
            c,
            &inner.arena,
            &inner.moving,
            placed,
            inner.moving.top.load(Ordering::Relaxed),
            &fwd,
            crate::generational::full_limit(&inner.config, live, large_live),
        )
        .unwrap_or_else(|e| fatal_after_flip("updating the remembered set", &e));
    let (young_cost_pm, fallback, fallback_old_slots) = gs.young_cost();
    GenStats {
        young: Some(c.young()),
        promoted_bytes: promoted,
        dirty_cards: c.dirty_units,
        old_slots: c.old_slots.len(),
        old_bytes: gs.old_bytes(),
        black_bytes: objects_end.saturating_sub(fwd(c.mark_top)),
        young_cost_pm,
        fallback,
        // (Only while full cycles are owed: the flag outlives them in the old generation.)
        fallback_old_slots: fallback > 0 && fallback_old_slots,
        young_slots_over: None,
        young_slots_start_counts: gs.start_counts(),
        next_full_at: gs.next_full_at(),
        stranded_leave: c.stranded_leave,
        stranded_stayed: c.stranded_stayed,
    }
}

/// Generational mode: cycle `c` fails before its flip changed anything. The remembered set
/// gave its dirty ranges to the cycle (and forgot them): every old slot the cycle took from
/// it is made dirty again, so the next young cycle still finds every old-to-young reference.
fn gen_abandon(inner: &HeapInner, c: Option<&GenCycle>) {
    if let (Some(c), Some(gs)) = (c, inner.gen.as_ref()) {
        for &s in &c.old_slots {
            gs.remset.keep_dirty(s);
        }
    }
}

/// Generational mode: cycle `c`'s compaction is done (see `GenState::finish`).
fn gen_finish(inner: &HeapInner, c: &GenCycle, types: &TypeRegistry) {
    if let Some(gs) = inner.gen.as_ref() {
        gs.finish(c, &inner.arena, types)
            .unwrap_or_else(|e| fatal_after_flip("updating the remembered set", &e));
    }
}

/// Concurrent phases 5 (compaction) and 6 (finish), on the GC thread, holding the heap alive.
fn compact_and_finish(inner: Arc<HeapInner>, mut stats: CycleStats, finish: Finish) {
    let c = &inner.compaction;
    let arena = &inner.arena;
    // 5. Compaction.
    c.after_flip(arena, (finish.from_populated - finish.from) / PAGE_SIZE);
    if let Some(d) = inner.config.debug.compaction_delay {
        // Stress / test knob: leave every destination page absent for a while, so mutator
        // faults (and kernel accesses) meet unfilled pages.
        std::thread::sleep(d);
    }
    inner.config.debug.phase_delay(Phase::BeforeCompaction);
    let t0 = Instant::now();
    c.set_worker_stall(inner.config.debug.worker_stall);
    // Copy strategy: the old pages released early are recycled as fresh memory instead, up to
    // the headroom (as the end of the cycle would; it then recycles only the rest).
    // Generational: while the cycle keeps pages of its old window, they (with the prefiller)
    // are the next fresh memory, and moving more pages over costs the compaction ~2 µs a
    // page (at 4 GiB tree-replace, young cycles 1.11-1.20 s -> 1.02-1.09 s mean,
    // BENCHMARKS.md s17).
    let keeps_young = inner.gen.is_some() && inner.release.planned_keep().is_some();
    let recycle_early =
        if inner.config.recycle_old_half && !inner.config.debug.poison_released && !keeps_young {
            inner.fresh_headroom() / PAGE_SIZE
        } else {
            0
        };
    let recycled_early = c.run_workers(
        arena,
        inner.config.workers(),
        Some((&inner.moving, recycle_early)),
        inner.release.planned_keep(),
        inner.config.gc_compact_nice,
    );
    inner.pacer.end_compaction();
    // 6. Finish. Every page is mapped: nobody needs the old half or the plan any more. (A fork
    //    from here on does not wait for the release of the old half, which a child redoes,
    //    but for the bookkeeping below, which takes locks a child needs; not for the hook.)
    c.disarm();
    let finish_cpu0 = cputime::thread_cpu();
    if inner.config.choreography == Choreography::PerCycle {
        choreography::teardown(arena, finish.detached);
    } else {
        stats.pages_recycled_early = recycled_early;
        let end = finish_old_half(
            arena,
            &inner.moving,
            &inner.release,
            inner.config.debug.poison_released,
            inner.config.recycle_old_half,
            finish.from,
            finish.from_end,
            inner
                .fresh_headroom()
                .saturating_sub(recycled_early * PAGE_SIZE),
            &finish.keep,
        );
        stats.pages_recycled = recycled_early + end.pages;
        stats.pages_kept = end.kept;
    }
    let finishing = crate::forkgate::Region::enter();
    if let Err(e) = inner.large.release_flip_dead(arena) {
        eprintln!("faultline: releasing dead large objects failed: {e}");
    }
    stats.large_after = inner.large.used();
    if let Some(gc) = finish.gen.as_ref() {
        // Every destination page is mapped: the promoted objects can be walked.
        gen_finish(&inner, gc, &inner.types());
    }
    stats.cpu.finish = cputime::since(finish_cpu0);
    stats.cpu.compact = Duration::from_nanos(c.counters.cpu_ns.load(Ordering::Relaxed));
    stats.compact = t0.elapsed();
    if let (Some(gc), Some(gs)) = (finish.gen.as_ref(), inner.gen.as_ref()) {
        gs.young_pace.end();
        if gc.young() && !gc.stranded_leave {
            // Young-aware pacing: the window at the start, its survivors (kept young or
            // promoted), the marking and compaction that moved them, the whole wall time.
            // (Not a young cycle that scanned the whole old generation for stranded objects:
            // its marking includes that scan, which later young cycles do not make.)
            gs.young_pace.note(
                stats.moving_before,
                stats.moving_after + stats.gen.promoted_bytes,
                stats.mark + stats.compact,
                finish.cycle_start.elapsed(),
            );
        }
    }
    let compacted = (stats.pages_filled * PAGE_SIZE, stats.compact);
    pace_next(&inner, &mut stats, compacted);
    stats.total = finish.cycle_start.elapsed();
    stats.calls = arena.sys().counters().snapshot().since(&finish.calls0);
    stats.vmas = (arena.vmas_at_creation(), arena.vma_count());
    stats.pages_by_fault = c.counters.by_fault.load(Ordering::Relaxed);
    stats.pages_in_place = c.counters.in_place.load(Ordering::Relaxed);
    stats.pages_staged = c.counters.staged.load(Ordering::Relaxed);
    stats.pages_copied = c.counters.copied.load(Ordering::Relaxed);
    stats.pages_released_early = c.counters.released_early.load(Ordering::Relaxed);
    stats.cpu_release = Duration::from_nanos(c.counters.release_cpu_ns.load(Ordering::Relaxed));
    stats.cpu_tail = Duration::from_nanos(c.counters.tail_cpu_ns.load(Ordering::Relaxed));
    stats.compact_fill = Duration::from_nanos(c.counters.fill_ns.load(Ordering::Relaxed));
    stats.compact_map = Duration::from_nanos(c.counters.map_ns.load(Ordering::Relaxed));
    stats.prefilled = inner.prefill.cycle_shares();
    // (The pacer's count is reset at the next cycle's initial mark only.)
    stats.scanned_bytes = inner.pacer.scanned();
    take_pace_stats(&inner, &mut stats);
    drop(finishing);
    hook_panic_on_gc_thread(record_cycle(&inner, &stats));
    concurrent_idle(&inner);
    verify_after_concurrent(&inner, stats.cycle);
}

/// A concurrent cycle is over: the heap is idle, and unless a verification is still to come
/// (it waits for the heap to be idle, maybe for the next cycle), the GC thread may be handed
/// the next cycle at once ([`crate::gcthread::Runner::release_if_current`]).
fn concurrent_idle(inner: &HeapInner) {
    if !inner.config.debug.verify {
        inner.gc_thread.release_if_current();
    }
    inner.gate.set_idle();
}

/// How many mutators are running now (the SATB handshake waits for each of them to hand
/// its buffer over at its next poll).
fn running_mutators(inner: &HeapInner) -> usize {
    inner
        .sp
        .lock()
        .mutators
        .iter()
        .filter(|mu| mu.state.load(Ordering::Relaxed) == RUNNING)
        .count()
}

/// The bytes the next cycle is expected to mark, `kept` bytes being what this one keeps: those,
/// and in generational mode, when the next cycle is full, the old generation's live bytes too
/// ([`crate::generational::GenState::next_mark_bytes`]). What the pacer sizes the next trigger
/// and the flip's reserve by.
fn next_mark_bytes(inner: &HeapInner, kept: usize) -> usize {
    inner.gen.as_ref().map_or(kept, |gs| {
        gs.next_mark_bytes(kept, inner.moving.half_bytes, inner.large.used())
    })
}

/// Concurrent mode, a cycle (`stats`) finishing: the pacer decides the next trigger from the
/// bytes in use now, the next cycle's mark work and this cycle's compaction (`(bytes,
/// time)`); the occupancy goal is computed as stop-the-world's trigger would be.
/// Generational: first, whether a young cycle next would forward too many old slots in its
/// pauses ([`crate::generational::GenState::young_slots_over`]: then full cycles follow,
/// recorded in `stats`); a full cycle next marks the old generation too
/// ([`crate::generational::GenState::next_mark_bytes`]), and its goal counts the old
/// generation at its estimated live bytes ([`crate::generational::GenState::full_due_goal`]).
fn pace_next(inner: &HeapInner, stats: &mut CycleStats, compacted: (usize, Duration)) {
    let used = inner.used();
    if let Some(gs) = inner.gen.as_ref() {
        if gs.next_is_young(inner.moving.half_bytes, inner.large.used()) {
            // A young cycle that scanned the whole old generation (`GenStats::stranded_leave`)
            // counted every old slot that refers to anything but an old object (references to
            // large objects, never named by the remembered set unless written, included): not
            // the next young cycle's pause work, which is then counted as after a full cycle
            // (the remembered set's dirty ranges, which its flip kept for the young survivors).
            let last = (stats.gen.young == Some(true) && !stats.gen.stranded_leave)
                .then_some(stats.gen.old_slots);
            stats.gen.young_slots_over =
                gs.young_slots_over(last, inner.config.young_slots_max, &inner.types());
        }
    }
    // (After the decision above, which may make the next cycle full.)
    let live = next_mark_bytes(inner, stats.heap_after());
    // A full cycle next (or the young cycle that promotes everything before one): the goal
    // counts the old generation at its estimated live bytes
    // ([`crate::generational::GenState::full_due_goal`]).
    let goal = inner
        .gen
        .as_ref()
        .and_then(|gs| {
            gs.full_due_goal(
                used,
                inner.moving.half_bytes,
                inner.large.used(),
                (inner.config.growth, inner.config.min_trigger_bytes),
            )
        })
        .unwrap_or_else(|| inner.occupancy_goal(used));
    let d = inner
        .pacer
        .finish_cycle(used, live, inner.capacity(), goal, compacted);
    let mut trigger = d.trigger;
    if let Some(gs) = inner.gen.as_ref() {
        // Generational: a young cycle next gets its own trigger, never later than the pacer's
        // ([`crate::youngpace`]).
        let large = inner.large.used();
        if gs.next_is_young(inner.moving.half_bytes, large) {
            trigger = gs
                .young_pace
                .trigger(trigger, inner.moving.used(), large)
                .max(used.min(trigger));
        }
    }
    inner.trigger_bytes.store(trigger, Ordering::Relaxed);
}

/// Fill a concurrent cycle's pacing record (the decision fields were set at its flip).
fn take_pace_stats(inner: &HeapInner, stats: &mut CycleStats) {
    let p = stats.pacing;
    let started = Decision {
        trigger: p.trigger_bytes,
        predicted: p.predicted_to_flip,
        need: 0,
    };
    stats.pacing = PaceStats {
        markers: p.markers,
        ..inner.pacer.take_stats(started, p.actual_to_flip)
    };
}

/// A panic of the `on_cycle` hook, caught by [`record_cycle`].
type HookPanic = Box<dyn std::any::Any + Send>;

/// Record a completed cycle: history and the GC-log hook. A panic of the hook is caught and
/// returned (the cycle is recorded whatever the hook does): the stop-the-world collector
/// re-raises it to the caller of the collection, the concurrent one reports it
/// ([`hook_panic_on_gc_thread`]).
fn record_cycle(inner: &HeapInner, stats: &CycleStats) -> Result<(), HookPanic> {
    {
        let _r = crate::forkgate::Region::enter();
        let mut h = inner.history.lock().unwrap_or_else(PoisonError::into_inner);
        h.push(stats.clone());
        trim_history(&mut h, inner.config.history_limit);
    }
    inner.completed.fetch_add(1, Ordering::SeqCst);
    if gc_trace() {
        eprintln!("{}", stats.log_line());
    }
    if let Some(e) = inner.arena.batch_refusal_news() {
        eprintln!(
            "faultline: the kernel refused batched releases (pidfd_open or process_madvise: {e}); \
             each run of dead pages is released by its own madvise from now on"
        );
    }
    if let Some(hook) = &inner.config.on_cycle {
        // Requests from the hook that would wait for this cycle are refused (`reentry`).
        let _scope = reentry::enter(Callback::OnCycle);
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hook(stats)))?;
    }
    Ok(())
}

/// On the GC thread, nobody can catch a panic of the `on_cycle` hook, and the heap is sound
/// (the cycle is over): say so and go on finishing the cycle (before, the GC thread's panic
/// aborted the process as a collector failure).
fn hook_panic_on_gc_thread(r: Result<(), HookPanic>) {
    if r.is_err() {
        eprintln!(
            "faultline: the on_cycle hook panicked on the GC thread (see the panic above); the cycle is complete and recorded, the heap continues"
        );
    }
}

/// `FAULTLINE_GC_LOG` set (to anything but `0`) in the environment: every cycle's GC-log line
/// goes to standard error (as Go's `GODEBUG=gctrace=1`), for runs whose embedder installs no
/// `on_cycle` hook of its own. Read once.
pub(crate) fn gc_trace() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FAULTLINE_GC_LOG").is_some_and(|v| v != "0"))
}

/// Verification after a concurrent cycle (whose compaction ends outside the pause): stops the
/// world on the GC thread. Called after the cycle is idle, so mutators waiting for it can
/// reach their safepoints.
fn verify_after_concurrent(inner: &HeapInner, cycle: u64) {
    if inner.config.debug.verify {
        if let Err(e) = verify_stopped(inner, None) {
            panic!("heap verification failed after concurrent cycle {cycle}: {e}");
        }
    }
}
