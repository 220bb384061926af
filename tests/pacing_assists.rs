//! Pacing and mark assists under pressure: three mutators allocate fast in concurrent mode
//! while each keeps a large structure alive and mutates it, with verification and checkmark
//! on. Mutators that outrun marking must do mark assists (counted in the cycles' pacing
//! records), the pacer must record its decisions, and the heap must verify; with one marking
//! thread and with two sharing the mark (and the assists) by work stealing.
//!
//! No timing is asserted: only that assists happened, that every figure is present and sane,
//! and that nothing reachable was lost.

mod common;
use common::*;
use faultline::{GcMode, Heap, HeapConfig, Mutator};

/// One mutator: a tree of depth `d` kept alive and checked, garbage allocated in between,
/// and the tree's leaves' parents rewired now and then (SATB traffic while marking).
fn worker(heap: &Heap, t: &Types, id: u64, rounds: usize, d: u32) {
    let mut m: Mutator = heap.attach();
    tree(&mut m, t, d, id);
    for round in 0..rounds {
        for i in 0..40_000 {
            let p = m.alloc(t.pair, 0).unwrap();
            if i % 64 == 0 {
                // Swap the two subtrees of the root and back: overwrites references.
                let root = m.local(m.stack_get(0)).unwrap();
                let (l, r) = (root.get(0), root.get(1));
                root.set(0, r);
                root.set(1, l);
                root.set(0, l);
                root.set(1, r);
            }
            let _ = p;
        }
        if round % 4 == 0 {
            assert_eq!(check_tree(&m, m.stack_get(0), d, id), (1 << d) - 1);
        }
    }
    assert_eq!(check_tree(&m, m.stack_get(0), d, id), (1 << d) - 1);
    m.verify().unwrap();
}

fn run(gc_threads: usize) {
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.gc_threads = gc_threads;
        c.debug.verify = true;
        c.debug.checkmark = true;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, GcMode::Concurrent);
    let t = register(&heap);
    let mut assists = 0;
    for attempt in 0..8 {
        std::thread::scope(|s| {
            for id in 1..=3u64 {
                let (heap, t) = (&heap, &t);
                s.spawn(move || worker(heap, t, id + 10 * attempt, 24, 15));
            }
        });
        heap.wait_for_compaction();
        let h = heap.history();
        assists = h.iter().map(|c| c.pacing.assists).sum::<u64>();
        if assists > 0 {
            break;
        }
    }
    let h = heap.history();
    assert!(h.len() >= 2, "{} cycles", h.len());
    for c in &h {
        assert_eq!(c.mode, GcMode::Concurrent);
        let p = &c.pacing;
        assert!(p.actual_to_flip > std::time::Duration::ZERO, "{p:?}");
        assert!(p.assist_max <= p.assist_time, "{p:?}");
        assert!(p.assist_bytes > 0 || p.assists == 0, "{p:?}");
        assert!(p.markers >= 1 && p.markers <= gc_threads, "{p:?}");
        assert!(p.next_trigger_bytes > 0, "{p:?}");
        assert!(c.log_line().contains("assists"), "{}", c.log_line());
    }
    // After the first cycle the pacer has rates and sets the trigger from them.
    assert!(h.iter().skip(1).all(|c| c.pacing.trigger_bytes > 0));
    assert!(h.iter().skip(1).any(|c| c.pacing.mark_rate > 0.0));
    let waits: u64 = h.iter().map(|c| c.pacing.flip_waits).sum();
    eprintln!(
        "gc_threads {gc_threads}: {} cycles, {assists} assists ({:?} total, longest {:?}), {waits} flip waits; last: {}",
        h.len(),
        h.iter().map(|c| c.pacing.assist_time).sum::<std::time::Duration>(),
        h.iter().map(|c| c.pacing.assist_max).max().unwrap_or_default(),
        h.last().unwrap().log_line()
    );
    assert!(assists > 0, "no mark assist in {} cycles", h.len());
    heap.attach().verify().unwrap();
}

#[test]
fn fast_allocators_assist_one_marker() {
    if !uffd_or_skip("fast_allocators_assist_one_marker") {
        return;
    }
    run(1);
}

#[test]
fn fast_allocators_assist_two_markers() {
    if !uffd_or_skip("fast_allocators_assist_two_markers") {
        return;
    }
    run(2);
}

/// Mutators that outrun the compaction fill its pages though the space is far from exhausted
/// (`gc/src/pacer.rs`, compaction assists): a mutator that has allocated more of the
/// compaction's allowance (past its slack) than the compaction has claimed pages takes
/// compaction assists at its buffer refills, so the next cycle starts with headroom for its
/// marking. Scenario: 16 MiB of rooted live data interleaved with as much garbage in a 256 MiB
/// heap whose trigger no allocation before the test's collection reaches; after its flip the
/// workers are held back (`compaction_delay`), and the mutator allocates 176 MiB of garbage
/// (past the slack, within the space). The cycle must record compaction assists and no flip
/// wait; before compaction pacing, compaction assists ran only when the space was exhausted
/// (none here). Every page is verified (checkmark on).
#[test]
fn mutators_that_outrun_the_compaction_assist_it_before_the_space_runs_out() {
    if !uffd_or_skip("mutators_that_outrun_the_compaction_assist_it") {
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(256 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        // No cycle but the test's own.
        c.min_trigger_bytes = 96 << 20;
        c.debug.verify = true;
        c.debug.checkmark = true;
        c.debug.compaction_delay = Some(std::time::Duration::from_millis(500));
    }))
    .unwrap();
    let node = heap
        .register_type(faultline::TypeInfo::ref_array("node"))
        .unwrap();
    let mut m = heap.attach();
    // A dead array between every two live ones: every live page moves.
    let live = rooted_arrays(&mut m, node, 4096, 511, true);
    common::start_and_wait_for_flip(&heap, &mut m);
    garbage(&mut m, node, 176 << 20);
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    let h = heap.history();
    let c = h.last().unwrap();
    eprintln!("{}", c.log_line());
    assert!(
        c.pacing.compaction_assists > 0 && c.pacing.compaction_assist_pages > 0,
        "no compaction assist: {}",
        c.log_line()
    );
    assert_eq!(c.pacing.flip_waits, 0, "{}", c.log_line());
    for i in 0..4096 {
        let o = live.get(&m).unwrap().get(i);
        assert_eq!(m.local(o).unwrap().len(), 511);
    }
    m.verify().unwrap();
}

/// The background GC threads' settings (`gc_thread_nice`, `gc_thread_slice_us`): the cycle's
/// own thread runs `gc_thread_nice` steps below the mutator that started it (read on that
/// thread, in the `on_cycle` hook), the mutators keep their priority, and out-of-range values
/// are refused.
#[test]
fn background_gc_threads_run_at_their_configured_priority() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;
    if !uffd_or_skip("background_gc_threads_run_at_their_configured_priority") {
        return;
    }
    for bad in [
        HeapConfig::with_heap_size(4 << 20).with(|c| c.gc_thread_nice = 20),
        HeapConfig::with_heap_size(4 << 20).with(|c| c.gc_thread_slice_us = 100_001),
    ] {
        assert!(Heap::new(bad).is_err());
    }
    // SAFETY: getpriority of the calling thread (id 0) reads scheduler state only.
    let nice_here = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) } as i64;
    let seen = Arc::new(AtomicI64::new(i64::MIN));
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.gc_thread_nice = 3;
        // Fixed lowering (with `gc_thread_boost` the GC thread runs boosted in the hook: the
        // mutator waits in `collect`; tests/gc_thread_boost.rs covers that).
        c.gc_thread_boost = false;
        c.gc_thread_slice_us = 20_000;
        let seen = seen.clone();
        c.on_cycle = Some(Arc::new(move |_| {
            seen.store(nice_here(), Ordering::SeqCst);
        }));
    }))
    .unwrap();
    let (lowered0, sliced0, failed0) = faultline::gc_threads_lowered();
    let mine = nice_here();
    let t = register(&heap);
    let mut m = heap.attach();
    tree(&mut m, &t, 10, 1);
    m.collect().unwrap();
    assert_eq!(heap.history().last().unwrap().mode, GcMode::Concurrent);
    assert_eq!(seen.load(Ordering::SeqCst), (mine + 3).min(19));
    assert_eq!(nice_here(), mine, "the mutator's priority changed");
    let (lowered, sliced, failed) = faultline::gc_threads_lowered();
    assert!(lowered > lowered0 || mine + 3 > 19);
    // The slice needs Linux 6.12: set, or counted as failed.
    assert!(sliced > sliced0 || failed > failed0);
    assert_eq!(check_tree(&m, m.stack_get(0), 10, 1), (1 << 10) - 1);
}
