//! Weak references, ephemerons and finalization queues, one scenario each, in the
//! stop-the-world collector and (where userfaultfd is available) the concurrent one: a weak
//! reference to a rooted object survives and follows it; one to an unrooted object reads null
//! after a full collection; an ephemeron keeps its value exactly while its key lives (a value
//! that refers back to its key does not keep it alive); a finalization queue delivers the held
//! value of a dead target exactly once, and never for a live one.

mod common;
use common::*;
use faultline::{FinalizationQueue, GcMode, Heap, HeapConfig, Mutator, Value};

fn heaps() -> Vec<(&'static str, Heap)> {
    let mut v = vec![(
        "stw",
        Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
            c.debug.verify = true;
        }))
        .unwrap(),
    )];
    if faultline::Probe::run().available {
        v.push((
            "concurrent",
            Heap::new(HeapConfig::with_heap_size(8 << 20).with(|c| {
                c.mode = GcMode::Concurrent;
                c.debug.verify = true;
                c.debug.checkmark = true;
            }))
            .unwrap(),
        ));
    }
    v
}

/// A pair `(fix(n), NULL)`, left on the value stack.
fn pair(m: &mut Mutator, t: &Types, n: i64) -> Value {
    m.push(fix(n));
    m.push(Value::NULL);
    cons(m, t);
    m.stack_get(m.stack_len() - 1)
}

#[test]
fn weak_references_clear_exactly_when_the_referent_dies() {
    for (mode, heap) in heaps() {
        let t = register(&heap);
        let mut m = heap.attach();
        let live = pair(&mut m, &t, 1);
        let w_live = m.new_weak(live).unwrap();
        let w_live = m.root(w_live);
        let dead = pair(&mut m, &t, 2);
        let w_dead = m.new_weak(dead).unwrap();
        let w_dead = m.root(w_dead);
        m.pop(); // `dead` is no longer rooted; `live` stays on the stack
        let imm = m.new_weak(fix(7)).unwrap();
        let imm = m.root(imm);
        assert!(m.is_weak_box(w_live.value(&m)));
        assert!(!m.is_ephemeron(w_live.value(&m)));
        assert!(!m.is_weak_box(m.stack_get(m.stack_len() - 1)));
        // Before a collection, both read their referents.
        let d = m.weak_get(w_dead.value(&m));
        assert_eq!(m.local(d).unwrap().get(0), fix(2));
        m.collect().unwrap();
        let l = m.weak_get(w_live.value(&m));
        assert_eq!(
            l,
            m.stack_get(m.stack_len() - 1),
            "{mode}: follows the move"
        );
        assert_eq!(m.local(l).unwrap().get(0), fix(1));
        assert!(m.weak_get(w_dead.value(&m)).is_null(), "{mode}: cleared");
        assert_eq!(
            m.weak_get(imm.value(&m)),
            fix(7),
            "{mode}: immediates never clear"
        );
        // The referent dies later: cleared at the next collection.
        m.pop();
        m.collect().unwrap();
        assert!(
            m.weak_get(w_live.value(&m)).is_null(),
            "{mode}: cleared later"
        );
        let s = heap.weak_stats();
        assert_eq!(s.weak_cleared, 2, "{mode}: {s:?}");
        // Dead boxes free their entries.
        drop((w_live, w_dead, imm));
        m.collect().unwrap();
        assert_eq!(heap.weak_stats().entries, 0, "{mode}");
        assert_eq!(heap.weak_stats().boxes_freed, 3, "{mode}");
        m.verify().unwrap();
    }
}

#[test]
fn ephemerons_keep_values_exactly_while_their_keys_live() {
    for (mode, heap) in heaps() {
        let t = register(&heap);
        let mut m = heap.attach();
        let base = m.stack_len();
        // key0 rooted; key1 not. value1 refers back to key1 (a cycle through the ephemeron).
        let k0 = pair(&mut m, &t, 10);
        let v0 = pair(&mut m, &t, 11);
        let e0 = m.new_ephemeron(k0, v0).unwrap();
        m.push(e0);
        m.stack_truncate(base + 1); // [k0]
        let e0 = m.root(e0);
        let k1 = pair(&mut m, &t, 20);
        m.push(fix(21));
        m.push(k1);
        cons(&mut m, &t); // (21 . k1)
        let v1 = m.pop().unwrap();
        let k1 = m.pop().unwrap();
        let e1 = m.new_ephemeron(k1, v1).unwrap();
        let e1 = m.root(e1);
        // A chain: k2 is reachable only through e0's value... give e2 key = v0.
        let v0 = m.ephemeron_value(e0.value(&m));
        let v2 = pair(&mut m, &t, 30);
        let e2 = m.new_ephemeron(v0, v2).unwrap();
        m.pop();
        let e2 = m.root(e2);
        let wv1 = m.new_weak(m.ephemeron_value(e1.value(&m))).unwrap();
        let wv1 = m.root(wv1);
        m.collect().unwrap();
        let e0v = m.ephemeron_value(e0.value(&m));
        assert_eq!(m.local(e0v).unwrap().get(0), fix(11), "{mode}");
        assert_eq!(m.weak_get(e0.value(&m)), m.stack_get(base), "{mode}");
        let e2v = m.ephemeron_value(e2.value(&m));
        assert_eq!(m.local(e2v).unwrap().get(0), fix(30), "{mode}: chained");
        assert!(m.weak_get(e1.value(&m)).is_null(), "{mode}: dead key");
        assert!(m.ephemeron_value(e1.value(&m)).is_null(), "{mode}");
        assert!(
            m.weak_get(wv1.value(&m)).is_null(),
            "{mode}: the value died too"
        );
        // Drop key0: the chain goes.
        m.stack_truncate(base);
        m.collect().unwrap();
        for e in [&e0, &e2] {
            assert!(m.weak_get(e.value(&m)).is_null(), "{mode}");
            assert!(m.ephemeron_value(e.value(&m)).is_null(), "{mode}");
        }
        let s = heap.weak_stats();
        assert_eq!(s.ephemerons_cleared, 3, "{mode}: {s:?}");
        assert!(s.ephemeron_values_marked >= 2, "{mode}: {s:?}");
        m.verify().unwrap();
    }
}

#[test]
fn finalization_delivers_each_dead_target_once() {
    for (mode, heap) in heaps() {
        let t = register(&heap);
        let mut m = heap.attach();
        let q = FinalizationQueue::new(&heap);
        let base = m.stack_len();
        let live = pair(&mut m, &t, 1);
        q.register(&m, live, fix(100));
        let dead = pair(&mut m, &t, 2);
        // The held value is an object: kept alive until taken.
        let held = pair(&mut m, &t, 200);
        q.register(&m, dead, held);
        let gone = pair(&mut m, &t, 3);
        let tok = q.register(&m, gone, fix(300));
        assert!(q.unregister(tok));
        assert!(!q.unregister(tok));
        m.stack_truncate(base + 1);
        assert_eq!(q.registered(), 2);
        m.collect().unwrap();
        let got = q.take(&m);
        assert_eq!(got.len(), 1, "{mode}: {got:?}");
        assert_eq!(m.local(got[0]).unwrap().get(0), fix(200), "{mode}");
        m.collect().unwrap();
        assert!(q.take(&m).is_empty(), "{mode}: exactly once");
        m.stack_truncate(base);
        m.collect().unwrap();
        assert_eq!(q.take(&m), vec![fix(100)], "{mode}");
        assert_eq!(q.registered(), 0);
        assert_eq!(heap.weak_stats().finalized, 2, "{mode}");
        m.verify().unwrap();
    }
}

#[test]
#[should_panic(expected = "is not a weak box")]
fn a_value_that_is_not_a_weak_box_is_refused() {
    let heap = heap(1 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    let _ = m.new_weak(Value::NULL).unwrap();
    let p = pair(&mut m, &t, 1);
    m.weak_get(p);
}

#[test]
#[should_panic(expected = "which is not its own")]
fn a_forged_weak_box_is_refused() {
    let heap = heap(1 << 20);
    let t = register(&heap);
    let mut m = heap.attach();
    let p = pair(&mut m, &t, 1);
    let a = m.new_weak(p).unwrap();
    m.push(a);
    let b = m.new_weak(Value::NULL).unwrap();
    let a = m.pop().unwrap();
    let ia = m.local(a).unwrap().word(0);
    m.local(b).unwrap().set_word(0, ia);
    m.weak_get(b);
}
