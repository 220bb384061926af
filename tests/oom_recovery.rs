//! Out of memory is an error, not an abort: after a failed allocation the heap still works,
//! and freeing the live data lets allocation succeed again.

mod common;
use common::*;
use faultline::AllocError;

#[test]
fn oom_is_reported_and_the_heap_stays_usable() {
    let heap = heap(1 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    // Keep everything alive on the value stack until the moving space is exhausted.
    let err = loop {
        match m.alloc(t.vector, 100) {
            Ok(v) => m.push(v),
            Err(e) => break e,
        }
    };
    match err {
        AllocError::OutOfMemory {
            space, capacity, ..
        } => {
            assert_eq!(space, "moving space");
            assert_eq!(capacity, 1 << 20);
        }
        other => panic!("expected OOM, got {other}"),
    }
    let kept = m.stack_len();
    assert!(kept > 1000);
    // Everything kept is intact.
    m.verify().unwrap();
    // Large-object space exhaustion too.
    let e = m.alloc(t.string, 64 << 20).unwrap_err();
    assert!(
        matches!(
            e,
            AllocError::OutOfMemory {
                space: "large-object space",
                ..
            }
        ),
        "{e}"
    );
    // Drop half of the live data: allocation works again.
    m.stack_truncate(kept / 2);
    for _ in 0..kept / 4 {
        let v = m.alloc(t.vector, 100).unwrap();
        m.push(v);
    }
    m.verify().unwrap();
}
