//! A concurrent young cycle scans its remembered set on the GC thread, after the initial-mark
//! pause (not in it): the references stored into old objects after that scan must still be
//! found, by the precleaning (stores while marking) and by the remark's rescan (stores after
//! the precleaning), or the young objects they name are not forwarded at the flip.
//!
//! The marker is parked right after the concurrent scan (`MarkPoint::Started`) and again
//! right before the remark (`MarkPoint::BeforeRemark`); at each point the mutator stores a
//! freshly allocated young object into a slot of an old object (a card, or a written page,
//! of the old generation that the scans before had already cleared) and keeps no other
//! reference to it. After the cycle both must read back through the old object, and the heap
//! verifies (checkmark on). Cards and written pages.

mod common;
use common::park::Park;
use common::{fix, unfix};
use faultline::{
    GcMode, Generational, Heap, HeapConfig, MarkPoint, Mutator, Root, TypeId, TypeInfo,
};
use std::sync::Arc;

fn is_old(heap: &Heap, m: &Mutator, r: &Root) -> bool {
    let (lo, hi) = heap.old_generation_range().unwrap();
    let a = r.value(m).bits();
    a >= lo && a < hi
}

/// A fresh young object tagged `tag`, stored into slot `i` of the old object `x` (its only
/// reference).
fn store_young(m: &mut Mutator, node: TypeId, x: &Root, i: usize, tag: i64) {
    let y = m.alloc(node, 2).unwrap();
    m.local(y).unwrap().set(0, fix(tag));
    x.get(m).unwrap().set(i, y);
}

fn stores_after_the_concurrent_scan_are_found(kind: Generational) {
    let park = Arc::new(Park::default());
    let heap = Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
        c.generational = kind;
        c.mode = GcMode::Concurrent;
        c.promotion_age = 1;
        c.min_trigger_bytes = 2 << 20;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.mark_hook = Some(park.hook());
    }))
    .unwrap();
    let node = heap.register_type(TypeInfo::ref_array("node")).unwrap();
    let mut m = heap.attach();
    // `x`, with rooted ballast after it (the old generation ends on a page boundary).
    let x = m.alloc(node, 4).unwrap();
    m.local(x).unwrap().set(0, fix(7));
    let x = m.root(x);
    let ballast = m.alloc(node, 400).unwrap();
    let ballast = m.root(ballast);
    for i in 0..400 {
        let b = m.alloc(node, 4).unwrap();
        ballast.get(&m).unwrap().set(i, b);
    }
    for _ in 0..4 {
        if heap.old_generation_range().is_some_and(|(lo, hi)| hi > lo) && is_old(&heap, &m, &x) {
            break;
        }
        m.collect().unwrap();
        heap.wait_for_compaction();
    }
    assert!(is_old(&heap, &m, &x), "{kind:?}: x was not promoted");
    for round in 0..3 {
        let cycles = heap.history().len();
        park.arm(MarkPoint::Started);
        m.start_collection().unwrap();
        park.wait(&mut m);
        // After the concurrent scan of the remembered set: the precleaning must find it.
        store_young(&mut m, node, &x, 1, 100 + round);
        park.arm(MarkPoint::BeforeRemark);
        park.wait(&mut m);
        // After the precleaning: the remark's rescan must find it.
        store_young(&mut m, node, &x, 2, 200 + round);
        park.disarm();
        m.wait_for_cycle().unwrap();
        heap.wait_for_compaction();
        let c = heap.history()[cycles].clone();
        assert_eq!(c.gen.young, Some(true), "{kind:?}: {:?}", c.gen);
        assert!(is_old(&heap, &m, &x), "{kind:?}: x left the old generation");
        heap.verify().unwrap();
        let xl = x.get(&m).unwrap();
        assert_eq!(unfix(xl.get(0)), 7);
        for (i, tag) in [(1, 100 + round), (2, 200 + round)] {
            let y = xl.get(i);
            assert_eq!(
                unfix(m.local(y).unwrap().get(0)),
                tag,
                "{kind:?} round {round}: slot {i}"
            );
        }
    }
    // And once more without stores: the references stay remembered.
    m.collect().unwrap();
    heap.wait_for_compaction();
    heap.verify().unwrap();
    let xl = x.get(&m).unwrap();
    assert_eq!(unfix(m.local(xl.get(1)).unwrap().get(0)), 102);
    assert_eq!(unfix(m.local(xl.get(2)).unwrap().get(0)), 202);
}

#[test]
fn cards_stores_after_the_concurrent_scan_are_found() {
    if !common::uffd_or_skip("cards_stores_after_the_concurrent_scan_are_found") {
        return;
    }
    stores_after_the_concurrent_scan_are_found(Generational::Cards);
}

#[test]
fn written_pages_stores_after_the_concurrent_scan_are_found() {
    if !common::uffd_or_skip("written_pages_stores_after_the_concurrent_scan_are_found") {
        return;
    }
    stores_after_the_concurrent_scan_are_found(Generational::WrittenPages);
}
