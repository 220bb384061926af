//! Large objects live in the non-moving large-object space: they keep their address, their
//! references into the moving space are updated, they die when unreachable (their pages are
//! released), and the space can be reused.

mod common;
use common::*;

#[test]
fn large_objects_do_not_move_but_their_fields_are_updated() {
    let heap = heap(8 << 20);
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
    let addr = root.value(&m);
    m.collect().unwrap();
    m.collect().unwrap();
    assert_eq!(root.value(&m), addr, "large objects do not move");
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
    m.collect().unwrap();
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
