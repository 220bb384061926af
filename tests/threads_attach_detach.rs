//! Four mutator threads attach, allocate and keep data live across collections triggered by
//! any of them, detach, and re-attach; a thread in a native section does not hold collections
//! up.

mod common;
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

#[test]
fn four_mutators_across_collections() {
    let heap = heap(8 << 20);
    let t = Arc::new(register(&heap));
    // Every round starts with all four threads attached (waiting in a native section, which
    // does not hold collections up), so collections really run with several mutators whatever
    // the scheduler does.
    let start = Arc::new(std::sync::Barrier::new(4));
    std::thread::scope(|s| {
        for id in 0..4i64 {
            let (heap, t, start) = (heap.clone(), t.clone(), start.clone());
            s.spawn(move || {
                for round in 0..5 {
                    let mut m = heap.attach();
                    let b = start.clone();
                    m.native(move || {
                        b.wait();
                    });
                    list(&mut m, &t, 50 + id);
                    let keep = m.root(m.pop().unwrap());
                    for i in 0..20_000 {
                        m.alloc(t.pair, 0).unwrap();
                        if i % 5000 == 0 && id == round % 4 {
                            m.start_collection().unwrap();
                        }
                        m.safepoint();
                    }
                    assert_eq!(
                        read_list(&m, keep.value(&m)),
                        (0..50 + id).collect::<Vec<_>>()
                    );
                    drop(keep);
                    drop(m); // detach
                }
            });
        }
    });
    assert!(
        heap.flips() >= 5,
        "collections ran while threads were attached"
    );
    assert!(heap.history().iter().any(|c| c.mutators >= 2));
    assert_eq!(heap.mutator_count(), 0);
}

#[test]
fn native_sections_do_not_block_collections() {
    let heap = heap(4 << 20);
    let t = register(&heap);
    let stop = Arc::new(AtomicBool::new(false));
    let in_native = Arc::new(AtomicBool::new(false));
    let h2 = heap.clone();
    let (stop2, in_native2) = (stop.clone(), in_native.clone());
    let sleeper = std::thread::spawn(move || {
        let mut m = h2.attach();
        m.native(move || {
            in_native2.store(true, Ordering::SeqCst);
            while !stop2.load(Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        m.safepoint();
    });
    while !in_native.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    let mut m = heap.attach();
    for _ in 0..3 {
        m.alloc(t.pair, 0).unwrap();
        m.start_collection().unwrap(); // would hang if the native thread had to reach a safepoint
    }
    stop.store(true, Ordering::SeqCst);
    sleeper.join().unwrap();
    assert_eq!(heap.flips(), 3);
}
