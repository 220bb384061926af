//! Large objects without references (and, with `pin_large_ref_objects`, those with) live in
//! the non-moving large-object space: they keep their address, their references into the
//! moving space are updated, they die when unreachable (their pages are released), and the
//! space can be reused. By default a large object with references lives in the moving space
//! and is compacted (concurrently, page by page) like any other.

mod common;
use common::*;

#[test]
fn large_objects_do_not_move_but_their_fields_are_updated() {
    // Large objects with references stay in the large-object space only when pinned.
    let heap = faultline::Heap::new(
        faultline::HeapConfig::with_heap_size(8 << 20).with(|c| c.pin_large_ref_objects = true),
    )
    .unwrap();
    let t = register(&heap);
    let mut m = heap.attach();
    let big = m.alloc(t.vector, 10_000).unwrap(); // 80 KB: above the threshold
    let root = m.root(big);
    for i in 0..10_000 {
        list(&mut m, &t, 3);
        let l = m.pop().unwrap();
        root.get(&m).unwrap().set(i, l);
    }
    let bytes = m.alloc(t.string, 100_000).unwrap();
    m.local(bytes).unwrap().write_bytes(99_990, b"0123456789");
    let broot = m.root(bytes);
    let addr = root.value(&m).bits();
    m.start_collection().unwrap();
    m.start_collection().unwrap();
    assert_eq!(root.value(&m).bits(), addr, "large objects do not move");
    let big = root.get(&m).unwrap();
    for i in (0..10_000).step_by(997) {
        assert_eq!(read_list(&m, big.get(i)), vec![0, 1, 2]);
    }
    let mut tail = [0u8; 10];
    broot.get(&m).unwrap().read_bytes(99_990, &mut tail);
    assert_eq!(&tail, b"0123456789");
    let used = heap.history().last().unwrap().large_after;
    assert!(used >= 180_000);
    drop(broot);
    drop(root);
    m.start_collection().unwrap();
    assert_eq!(
        heap.history().last().unwrap().large_after,
        0,
        "dead large objects are freed"
    );
    // The space is reusable, and a fresh large object is zeroed.
    let again = m.alloc(t.string, 100_000).unwrap();
    let mut b = [1u8; 10];
    m.local(again).unwrap().read_bytes(99_990, &mut b);
    assert_eq!(b, [0; 10]);
    m.verify().unwrap();
}

#[test]
fn large_reference_arrays_move_with_the_heap_by_default() {
    for mode in [
        faultline::GcMode::StopTheWorld,
        faultline::GcMode::Concurrent,
    ] {
        let heap =
            faultline::Heap::new(faultline::HeapConfig::with_heap_size(16 << 20).with(|c| {
                c.mode = mode;
                c.debug.verify = true;
            }))
            .unwrap();
        let t = register(&heap);
        let mut m = heap.attach();
        // Garbage first, so compaction moves the array down.
        for _ in 0..20_000 {
            m.alloc(t.pair, 0).unwrap();
        }
        let big = m.alloc(t.vector, 100_000).unwrap(); // 800 KB of references
        let root = m.root(big);
        for i in (0..100_000).step_by(7) {
            list(&mut m, &t, 2);
            let l = m.pop().unwrap();
            root.get(&m).unwrap().set(i, l);
        }
        let before = root.value(&m);
        m.start_collection().unwrap();
        m.wait_for_cycle().unwrap();
        heap.wait_for_compaction();
        let h = heap.history();
        let last = h.last().unwrap();
        assert_eq!(
            last.large_ref_slots, 0,
            "{mode:?}: nothing to rewrite in the pause"
        );
        assert_eq!(
            last.large_after, 0,
            "{mode:?}: not in the large-object space"
        );
        assert_ne!(
            root.value(&m).bits(),
            before.bits(),
            "{mode:?}: the array moved"
        );
        let big = root.get(&m).unwrap();
        for i in 0..100_000 {
            if i % 7 == 0 {
                assert_eq!(read_list(&m, big.get(i)), vec![0, 1], "{mode:?} slot {i}");
            } else {
                assert!(big.get(i).is_null(), "{mode:?} slot {i}");
            }
        }
        m.verify().unwrap();
    }
}
