//! Planning happens before the remark+flip pause, and the pause only patches it.
//!
//! Concurrent marking is followed by concurrent planning (the live-words prefix sums of every
//! 512 KiB chunk); inside the pause only the chunks that marking changed afterwards (black
//! allocations, objects the remark marked) are recomputed. These tests check that structure
//! through the statistics (not timings): a stop-the-world cycle computes every chunk in its
//! pause, a concurrent one only a few, whatever the heap size. They also check the work moved
//! out of the pause along with it: dead large objects are released when the compaction ends,
//! never taking a large object allocated meanwhile with them.

mod common;
use common::*;
use faultline::{Barrier, GcMode, Heap, HeapConfig, Strategy};

const CHUNK_BYTES: usize = 512 << 10;

fn build(heap: &Heap, lists: usize) -> (faultline::Mutator, Types) {
    let t = register(heap);
    let mut m = heap.attach();
    for _ in 0..lists {
        list(&mut m, &t, 20_000);
        // Garbage between the lists, so the compaction has holes to close.
        for _ in 0..20_000 {
            m.alloc(t.pair, 0).unwrap();
        }
    }
    (m, t)
}

fn chunks_redone(mode: GcMode, strategy: Strategy, barrier: Barrier) -> (usize, usize) {
    let heap = Heap::new(HeapConfig::with_heap_size(64 << 20).with(|c| {
        c.mode = mode;
        c.strategy = strategy;
        c.barrier = barrier;
        c.debug.verify = true;
        // No cycle before the explicit one.
        c.min_trigger_bytes = 60 << 20;
    }))
    .unwrap();
    assert_eq!(heap.mode_info().mode, mode);
    // ~ 40 lists x 20,000 live pairs x 16 B + as much garbage: about 25 MiB, ~50 chunks.
    let (mut m, t) = build(&heap, 40);
    m.start_collection().unwrap();
    // Mutate and allocate while the cycle runs (black allocations during marking).
    for _ in 0..5_000 {
        m.alloc(t.pair, 0).unwrap();
        m.safepoint();
    }
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    for i in 0..40 {
        assert_eq!(read_list(&m, m.stack_get(i)).len(), 20_000);
    }
    m.verify().unwrap();
    let last = heap.history().last().unwrap().clone();
    assert_eq!(last.mode, mode);
    let chunks = last.moving_before.div_ceil(CHUNK_BYTES);
    eprintln!(
        "{mode:?}/{strategy:?}/{barrier:?}: {chunks} chunks, {} redone in the pause, \
         plan in pause {:?}, planned ahead {:?}",
        last.plan_chunks_redone, last.plan, last.plan_ahead
    );
    if barrier == Barrier::WpAsync {
        // Barrier-free marking reports its precleaning and the remark's rescan.
        assert!(last.preclean_rounds >= 1, "{last:?}");
    } else {
        assert_eq!((last.preclean_rounds, last.remark_dirty_pages), (0, 0));
    }
    (last.plan_chunks_redone, chunks)
}

#[test]
fn stop_the_world_plans_every_chunk_in_its_pause() {
    let (redone, chunks) = chunks_redone(GcMode::StopTheWorld, Strategy::Auto, Barrier::Satb);
    assert!(chunks >= 40, "{chunks}");
    assert!(redone >= chunks, "{redone} of {chunks}");
}

#[test]
fn the_concurrent_pause_redoes_only_the_chunks_marking_changed() {
    if !uffd_or_skip("the_concurrent_pause_redoes_only_the_chunks_marking_changed") {
        return;
    }
    for (strategy, barrier) in [
        (Strategy::Copy, Barrier::Satb),
        (Strategy::Move, Barrier::Satb),
        (Strategy::Minor, Barrier::Satb),
        (Strategy::Copy, Barrier::WpAsync),
    ] {
        let (redone, chunks) = chunks_redone(GcMode::Concurrent, strategy, barrier);
        assert!(chunks >= 40, "{chunks}");
        // The black allocations of the 5,000 pairs (80 KB) and the last, partial chunk.
        assert!(
            redone <= 4,
            "{strategy:?}/{barrier:?}: {redone} of {chunks} chunks recomputed in the pause"
        );
    }
}

#[test]
fn dead_large_objects_are_released_after_compaction_without_taking_new_ones() {
    if !uffd_or_skip("dead_large_objects_are_released_after_compaction_without_taking_new_ones") {
        return;
    }
    let heap = Heap::new(HeapConfig::with_heap_size(16 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.strategy = Strategy::Copy;
        c.debug.verify = true;
        c.debug.compaction_delay = Some(std::time::Duration::from_millis(300));
    }))
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 10_000);
    // A dead large object, then a cycle: its release waits for the end of the compaction.
    let dead = m.alloc(t.string, 200_000).unwrap();
    m.local(dead).unwrap().write_bytes(0, b"dead");
    let c0 = heap.flips();
    m.start_collection().unwrap();
    // Until the flip (the cycle count moves in the remark+flip pause).
    while heap.flips() == c0 {
        m.safepoint();
        std::thread::yield_now();
    }
    // The flip is done, the compaction is still delayed: allocate a large object now. It is
    // not marked (marking is over), and it must not be swept with the dead one.
    let fresh = m.alloc(t.string, 300_000).unwrap();
    let pattern: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    m.local(fresh).unwrap().write_bytes(0, &pattern);
    let root = m.root(fresh);
    heap.wait_for_compaction();
    let last = heap.history().last().unwrap().clone();
    assert!(last.large_before >= 200_000, "{}", last.large_before);
    assert!(
        last.large_after >= 300_000 && last.large_after < 300_000 + 200_000,
        "the dead object is released, the new one kept: {}",
        last.large_after
    );
    assert_eq!(root.get(&m).unwrap().to_bytes(), pattern);
    assert_eq!(read_list(&m, m.stack_get(0)).len(), 10_000);
    m.verify().unwrap();
    // Its space is reusable, and the survivor survives the next cycle too.
    let again = m.alloc(t.string, 200_000).unwrap();
    assert_eq!(m.local(again).unwrap().to_bytes()[..4], [0; 4]);
    m.start_collection().unwrap();
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    assert_eq!(root.get(&m).unwrap().to_bytes(), pattern);
    m.verify().unwrap();
}
