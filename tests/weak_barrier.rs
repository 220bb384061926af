//! The keep-alive barrier of weak references, forced: an object unreachable at the snapshot
//! is read through a weak box while the marker is parked after scanning the only object it is
//! then stored into (black, so tracing will not see it again). The read must keep it alive
//! through the cycle (SATB and barrier-free marking; checkmark and verification on). A
//! second cycle without a read clears the box, and an ephemeron read the same way keeps its
//! value.

mod common;
use common::gate::Gate;
use common::*;
use faultline::{Barrier, GcMode, Heap, HeapConfig, MarkPoint, Value};
use std::sync::Arc;

fn heap(gate: &Arc<Gate>, barrier: Barrier) -> Heap {
    Heap::new(HeapConfig::with_heap_size(4 << 20).with(|c| {
        c.mode = GcMode::Concurrent;
        c.barrier = barrier;
        c.debug.checkmark = true;
        c.debug.verify = true;
        c.debug.mark_hook = Some(gate.hook());
        c.gc_threads = 1;
    }))
    .unwrap()
}

#[test]
fn a_weak_read_during_marking_keeps_the_object() {
    if !uffd_or_skip("weak keep-alive barrier") {
        return;
    }
    for barrier in [Barrier::Satb, Barrier::WpAsync] {
        let gate = Arc::new(Gate::default());
        let heap = heap(&gate, barrier);
        let t = register(&heap);
        let mut m = heap.attach();
        // stack[0] = weak box of X, stack[1] = ephemeron (K, V), stack[2] = K,
        // stack[3] = A (the last root: scanned first). X and V are reachable only weakly.
        let x = pair(&mut m, &t, fix(42), Value::NULL);
        let w = m.new_weak(x).unwrap();
        m.push(w);
        let k = pair(&mut m, &t, fix(1), Value::NULL);
        m.push(k);
        let v = pair(&mut m, &t, fix(2), Value::NULL);
        let e = m.new_ephemeron(m.stack_get(1), v).unwrap();
        let k = m.pop().unwrap();
        m.push(e);
        m.push(k);
        let a = pair(&mut m, &t, Value::NULL, Value::NULL);
        m.push(a);
        gate.arm(MarkPoint::Traced(1));
        m.start_collection().unwrap();
        gate.wait_parked();
        // A is scanned (black). Read X through the weak box and store it into A.
        let x = m.weak_get(m.stack_get(0));
        assert!(!x.is_null(), "{barrier:?}: not yet decided");
        m.local(m.stack_get(3)).unwrap().set(0, x);
        gate.release();
        m.wait_for_cycle().unwrap();
        let a = m.local(m.stack_get(3)).unwrap();
        let x = m.local(a.get(0)).expect("X survived");
        assert_eq!(x.get(0), fix(42), "{barrier:?}");
        assert_eq!(
            m.weak_get(m.stack_get(0)),
            a.get(0),
            "{barrier:?}: not cleared"
        );
        // Drop K and read V through the ephemeron while marking: V survives (stored into A),
        // the ephemeron is cleared with K.
        m.stack_truncate(2);
        m.push(Value::NULL);
        m.push(Value::NULL);
        let a = pair(&mut m, &t, Value::NULL, Value::NULL);
        m.stack_set(3, a);
        gate.arm(MarkPoint::Traced(1));
        m.start_collection().unwrap();
        gate.wait_parked();
        let v = m.ephemeron_value(m.stack_get(1));
        assert!(!v.is_null(), "{barrier:?}: not yet decided");
        m.local(m.stack_get(3)).unwrap().set(1, v);
        gate.release();
        m.wait_for_cycle().unwrap();
        let a = m.local(m.stack_get(3)).unwrap();
        assert_eq!(
            m.local(a.get(1)).expect("V survived").get(0),
            fix(2),
            "{barrier:?}"
        );
        let e = m.stack_get(1);
        assert!(m.weak_get(e).is_null(), "{barrier:?}: K died");
        assert!(m.ephemeron_value(e).is_null(), "{barrier:?}");
        // No read this time: X (still held by A) stays; drop it from A and it is cleared.
        m.local(m.stack_get(3)).unwrap().set(0, Value::NULL);
        m.collect().unwrap();
        assert!(m.weak_get(m.stack_get(0)).is_null(), "{barrier:?}: cleared");
        m.verify().unwrap();
    }
}
