//! Mutators that outrun a concurrent young cycle pay by compaction assists, not by a window
//! that grows to the space's end (`gc/src/youngpace.rs`, `HeapConfig::young_budget` on): once a young cycle is measured, the
//! next young cycle's allocation budget is its young window, and a mutator that has allocated
//! past it since the cycle's initial mark fills destination pages at its buffer refills while
//! the compaction runs, though the space is far from exhausted.
//!
//! Scenario (cards, concurrent): 8 MiB of rooted live data; cycle 1 is parked for a second
//! after its initial mark, so that its measured survivor rate (at most 8 MiB per second) makes
//! the young window the minimal allocation (64 MiB). Cycle 2 is parked before its remark while
//! the mutator allocates 96 MiB of garbage; once it has flipped (its compaction held back by
//! `compaction_delay`, so destination pages are left to take) the mutator allocates 4 MiB more.
//! Cycle 2 must record compaction assists and no flip wait (the 512 MiB space never ran out).
//! Without the budget compaction assists run only when the space is exhausted: none here.
//!
//! Invariant: the heap verifies after every cycle (checkmark on).

mod common;
use common::park::Park;
use faultline::{GcMode, Generational, Heap, HeapConfig, MarkPoint, TypeInfo};
use std::sync::Arc;
use std::time::Duration;

const MIB: usize = 1 << 20;

#[test]
fn mutators_past_a_young_cycles_budget_assist_its_compaction() {
    if !common::uffd_or_skip("young-cycle budget, concurrent") {
        return;
    }
    let park = Arc::new(Park::default());
    let heap = Heap::new(HeapConfig::with_heap_size(512 * MIB).with(|c| {
        c.generational = Generational::Cards;
        c.mode = GcMode::Concurrent;
        c.young_budget = true;
        c.min_trigger_bytes = 448 * MIB;
        c.debug.checkmark = true;
        c.debug.compaction_delay = Some(Duration::from_millis(500));
        c.debug.mark_hook = Some(park.hook());
    }))
    .unwrap();
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    let live = common::rooted_arrays(&mut m, node, 1024, 1023, false);
    // Cycle 1: marking held for a second, its survivor rate measured low.
    park.arm(MarkPoint::Started);
    m.start_collection().unwrap();
    park.wait(&mut m);
    std::thread::sleep(Duration::from_secs(1));
    park.release();
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    // Cycle 2: the budget spent before its remark, a few refills after its flip.
    let flips = heap.flips();
    park.arm(MarkPoint::BeforeRemark);
    m.start_collection().unwrap();
    park.wait(&mut m);
    common::garbage(&mut m, node, 96 * MIB);
    park.release();
    while heap.flips() == flips {
        m.safepoint();
        std::thread::sleep(Duration::from_micros(100));
    }
    common::garbage(&mut m, node, 4 * MIB);
    m.wait_for_cycle().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let h = heap.history();
    assert!(h.len() >= 2, "two cycles: {h:?}");
    let c = &h[1];
    assert_eq!(c.gen.young, Some(true), "a young cycle: {:?}", c.gen);
    assert_eq!(c.pacing.flip_waits, 0, "the space ran out: {:?}", c.pacing);
    assert!(
        c.pacing.compaction_assists > 0,
        "a mutator past the young budget did not assist the compaction: {:?}",
        c.pacing
    );
    assert_eq!(live.get(&m).unwrap().len(), 1024);
}
