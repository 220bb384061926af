//! Handles (`Root`) keep objects alive and follow them when the collector moves them; values
//! not rooted are reclaimed; locals cannot be held across a safepoint (a compile-time property,
//! shown by the structure of this test).

mod common;
use common::*;

#[test]
fn rooted_structures_survive_and_move() {
    let heap = heap(8 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    list(&mut m, &t, 1000);
    let root = m.root(m.pop().unwrap());
    tree(&mut m, &t, 10, 1);
    let troot = m.root(m.pop().unwrap());
    // Garbage between them.
    for i in 0..10_000 {
        m.push(fix(i));
        m.push(faultline::Value::NULL);
        cons(&mut m, &t);
        m.pop();
    }
    let before = root.value(&m);
    m.start_collection().unwrap();
    let after = root.value(&m);
    assert_ne!(before, after, "the list head moved (compaction)");
    assert_eq!(read_list(&m, after), (0..1000).collect::<Vec<_>>());
    assert_eq!(check_tree(&m, troot.value(&m), 10, 1), 1023);
    for _ in 0..5 {
        m.start_collection().unwrap();
    }
    assert_eq!(read_list(&m, root.value(&m)), (0..1000).collect::<Vec<_>>());
    let v = m.verify().unwrap();
    assert!(v.reachable >= 1000 + 1023);
    // Only live data remains after collection: the garbage pairs are gone.
    let h = heap.history();
    let last = h.last().unwrap();
    assert_eq!(
        last.moving_after, last.moving_before,
        "steady state: nothing more to free"
    );
    assert!(h[0].moving_after < h[0].moving_before);
    drop(root);
    m.start_collection().unwrap();
    assert!(
        heap.history().last().unwrap().moving_after < last.moving_after,
        "dropping the root freed the list"
    );
}

#[test]
fn a_stale_value_is_caught_not_read_as_garbage() {
    let heap = heap(4 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    // Fill a bit so the first object does not stay at the same address by chance.
    for _ in 0..100 {
        m.alloc(t.pair, 0).unwrap();
    }
    let stale = m.alloc(t.pair, 0).unwrap();
    m.start_collection().unwrap();
    // `stale` was not rooted: it now points into the released half.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        m.local(stale).map(|l| l.len())
    }));
    assert!(r.is_err(), "a value held across a safepoint is detected");
}

/// A `Root` the owner reaches through a thread-local and drops inside a native section, while
/// another thread collects (soundness audit, round six): a pause may be visiting the owner's
/// root table during the section, so the drop only queues the slot, which is freed when the
/// section ends. Its object stays rooted through that collection (before, the drop wrote the
/// table the pause was visiting, a data race, and the object was collected at once), and is
/// collected after the section.
#[test]
fn a_root_dropped_inside_a_native_section_is_freed_when_the_section_ends() {
    use std::cell::RefCell;
    use std::sync::mpsc;
    thread_local! {
        static HELD: RefCell<Option<faultline::Root>> = const { RefCell::new(None) };
    }
    let heap = heap(8 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    let x = pair(&mut m, &t, fix(1), faultline::Value::NULL);
    let weak = m.new_weak(x).unwrap();
    let weak = m.root(weak);
    let root = m.root(x);
    HELD.with(|h| *h.borrow_mut() = Some(root));
    let (dropped_tx, dropped_rx) = mpsc::channel::<()>();
    let (collected_tx, collected_rx) = mpsc::channel::<()>();
    let other = {
        let heap = heap.clone();
        std::thread::spawn(move || {
            dropped_rx.recv().unwrap();
            let mut m2 = heap.attach();
            m2.collect().unwrap();
            drop(m2);
            collected_tx.send(()).unwrap();
        })
    };
    m.native(move || {
        HELD.with(|h| drop(h.borrow_mut().take()));
        dropped_tx.send(()).unwrap();
        // The other thread's collection visits this mutator's roots while it is native.
        collected_rx.recv().unwrap();
    });
    other.join().unwrap();
    assert_eq!(
        read_list(&m, m.weak_get(weak.value(&m))),
        vec![1],
        "the object stays rooted through a collection during the section"
    );
    m.collect().unwrap();
    assert!(
        m.weak_get(weak.value(&m)).is_null(),
        "the slot is freed once the section ends"
    );
}
