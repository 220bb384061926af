//! Shadow-model stress of weak references, ephemerons and finalization
//! ([`common::weak_shadow`]): in the stop-the-world collector (one mutator; and four with
//! parallel marking) and in every concurrent combination of strategy (copy / move / minor) x
//! fault delivery (sigbus / thread) x marking barrier (satb / wp_async; the minor strategy's
//! memfd arena has no write tracking and falls back to satb, as the mode report says), four
//! mutators each, stress mode (a collection every few allocations), verification and (in
//! concurrent mode) checkmark on. Exactness is checked both ways after every flip each mutator
//! observes; each run ends with settling collections after which every object dead in the
//! model must have been cleared or delivered. Each test prints one summary line (cycles,
//! cleared references, deliveries). `FAULTLINE_STRESS=long` runs 100x the cycles.

mod common;
use common::shadow;
use common::stress_scale;
use common::weak_shadow::{WeakCounts, WeakShadow};
use faultline::{Barrier, FaultMode, GcMode, Heap, HeapConfig, Strategy};

/// Run `threads` mutators to `cycles` flips each on `heap`; returns their counts summed.
fn run_mutators(heap: &Heap, threads: u64, cycles: u64, seed: u64) -> WeakCounts {
    let t = shadow::register(heap);
    let per: Vec<(WeakCounts, bool)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|i| {
                let heap = heap.clone();
                s.spawn(move || {
                    let mut m = heap.attach();
                    let mut w = WeakShadow::new(&mut m, t, seed + i * 77, i + 1);
                    w.drive(&mut m, cycles, u64::MAX, 3);
                    assert!(w.sh.checks > 10, "mutator {i}: {} checks", w.sh.checks);
                    (w.counts, w.all_dead_cleared())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = WeakCounts::default();
    for (i, (c, cleared)) in per.iter().enumerate() {
        assert!(
            cleared,
            "mutator {i}: dead objects left uncleared after settling"
        );
        total.add(c);
    }
    total
}

fn summary(label: &str, heap: &Heap, c: &WeakCounts) {
    let s = heap.weak_stats();
    eprintln!(
        "weak shadow {label}: {} cycles; made {} weak / {} ephemerons / {} registrations; heap cleared {} weak refs + {} ephemerons, delivered {} finalizations, freed {} boxes, {} ephemeron rounds ({} values); model saw {} weak + {} ephemerons cleared, {} delivered, {} live reads, {} reads of dead objects ({} revived); weak pause time {:.3}ms total",
        heap.flips(),
        c.weak_made,
        c.eph_made,
        c.regs_made,
        s.weak_cleared,
        s.ephemerons_cleared,
        s.finalized,
        s.boxes_freed,
        s.ephemeron_rounds,
        s.ephemeron_values_marked,
        c.weak_cleared,
        c.eph_cleared,
        c.finalized,
        c.live_reads,
        c.dead_reads,
        c.revived,
        s.pause_time.as_secs_f64() * 1e3,
    );
    // The model saw the heap clear and deliver, and the heap's own counts are at least what the
    // model observed (the model does not look at every cleared box: some were dropped first).
    assert!(
        c.weak_cleared > 0 && c.eph_cleared > 0 && c.finalized > 0,
        "{c:?}"
    );
    assert!(s.weak_cleared >= c.weak_cleared, "{s:?} vs {c:?}");
    assert!(s.ephemerons_cleared >= c.eph_cleared, "{s:?} vs {c:?}");
    assert_eq!(
        s.finalized, c.finalized,
        "every delivery taken exactly once"
    );
    assert!(s.ephemeron_values_marked > 0, "{s:?}");
}

#[test]
fn stop_the_world_weak_shadow() {
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.debug.stress_every = Some(8);
        c.debug.verify = true;
    }))
    .unwrap();
    let c = run_mutators(&heap, 1, stress_scale(3_000), 0x3eed);
    summary("stw", &heap, &c);
}

#[test]
fn stop_the_world_four_threads_parallel_marking_weak_shadow() {
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.debug.stress_every = Some(16);
        c.debug.verify = true;
        c.gc_threads = 2;
        c.pin_large_ref_objects = true;
    }))
    .unwrap();
    let c = run_mutators(&heap, 4, stress_scale(800), 0x4eed);
    summary("stw x4 (parallel marking)", &heap, &c);
}

fn concurrent(strategy: Strategy, faults: FaultMode, barrier: Barrier) {
    let label = format!("concurrent {strategy:?}/{faults:?}/{barrier:?}");
    if !common::uffd_or_skip(&label) {
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(2 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = strategy;
        c.faults = faults;
        c.barrier = barrier;
        c.debug.stress_every = Some(24);
        c.debug.verify = true;
        c.debug.checkmark = true;
    }))
    .unwrap();
    let info = heap.mode_info();
    assert_eq!(info.mode, GcMode::Concurrent, "{:?}", info.fallback_reason);
    if strategy != Strategy::Minor {
        assert_eq!(info.barrier, Some(barrier));
    }
    let c = run_mutators(&heap, 4, stress_scale(2_000), 0x7eed);
    heap.wait_for_compaction();
    assert!(heap.history().iter().all(|c| c.mode == GcMode::Concurrent));
    summary(
        &format!(
            "concurrent {}/{}/{}{}",
            info.strategy.unwrap(),
            info.faults.unwrap(),
            info.barrier.unwrap(),
            if info.barrier == Some(barrier) {
                String::new()
            } else {
                format!(" ({barrier:?} requested: not supported with this strategy)")
            }
        ),
        &heap,
        &c,
    );
}

#[test]
fn copy_sigbus_satb() {
    concurrent(Strategy::Copy, FaultMode::Sigbus, Barrier::Satb);
}
#[test]
fn copy_thread_satb() {
    concurrent(Strategy::Copy, FaultMode::Thread, Barrier::Satb);
}
#[test]
fn move_sigbus_satb() {
    concurrent(Strategy::Move, FaultMode::Sigbus, Barrier::Satb);
}
#[test]
fn move_thread_satb() {
    concurrent(Strategy::Move, FaultMode::Thread, Barrier::Satb);
}
#[test]
fn minor_sigbus_satb() {
    concurrent(Strategy::Minor, FaultMode::Sigbus, Barrier::Satb);
}
#[test]
fn minor_thread_satb() {
    concurrent(Strategy::Minor, FaultMode::Thread, Barrier::Satb);
}
#[test]
fn copy_sigbus_wp_async() {
    concurrent(Strategy::Copy, FaultMode::Sigbus, Barrier::WpAsync);
}
#[test]
fn copy_thread_wp_async() {
    concurrent(Strategy::Copy, FaultMode::Thread, Barrier::WpAsync);
}
#[test]
fn move_sigbus_wp_async() {
    concurrent(Strategy::Move, FaultMode::Sigbus, Barrier::WpAsync);
}
#[test]
fn move_thread_wp_async() {
    concurrent(Strategy::Move, FaultMode::Thread, Barrier::WpAsync);
}
#[test]
fn minor_sigbus_wp_async() {
    concurrent(Strategy::Minor, FaultMode::Sigbus, Barrier::WpAsync);
}
#[test]
fn minor_thread_wp_async() {
    concurrent(Strategy::Minor, FaultMode::Thread, Barrier::WpAsync);
}
