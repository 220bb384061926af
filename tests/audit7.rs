//! Soundness audit, round seven (docs/soundness-audit.md): the safe API where a type's
//! layout is built by hand (`TypeInfo`'s public fields) and read through the checked-once
//! `Layout` / `Obj` path, and the rest of the round's probes kept as tests.
//!
//! Invariant: each test checks a defined outcome of safe code (a value read back, an error, or
//! a panic naming the mistake); a case that could hang runs under a watchdog that turns the
//! hang into a failure.

mod common;
use common::*;
use faultline::{GcMode, Heap, HeapConfig, TypeInfo, TypeKind};

fn stw(bytes: usize) -> HeapConfig {
    HeapConfig::with_heap_size(bytes).mode(GcMode::StopTheWorld)
}

/// A fixed type built with the public fields of `TypeInfo` (not `TypeInfo::fixed`, which
/// rounds the payload up to whole words) and a payload that is not a whole number of words.
/// The allocator and `Local` sized its objects `1 + payload_bytes / 8` words (rounded down),
/// while `Heap::layout` gave `Obj` `payload_bytes.div_ceil(8)` payload words: the `Obj`'s
/// last word was the next object's header, which `Obj::word` read and `Obj::set_word`
/// overwrote (the next object then "names no object of this heap"; a collection parsing it
/// would go astray). Every view of the type must agree on its size, and writing every word an
/// `Obj` offers must leave the neighbouring object intact.
#[test]
fn a_hand_built_fixed_type_with_a_partial_last_word_keeps_obj_inside_its_object() {
    for payload_bytes in [1usize, 4, 12, 20, 63] {
        let heap = Heap::new(stw(4 << 20)).unwrap();
        let odd = heap
            .register_type(TypeInfo {
                name: "odd".into(),
                kind: TypeKind::Fixed {
                    payload_bytes,
                    ref_offsets: vec![],
                },
            })
            .unwrap();
        let t = register(&heap);
        let layout = heap.layout(odd).unwrap();
        let mut m = heap.attach();
        let a = m.alloc(odd, 0).unwrap();
        m.push(a);
        let b = pair(&mut m, &t, fix(7), fix(8));
        let a = m.pop().unwrap();
        m.push(b);
        let local_words = m.local(a).unwrap().payload_words();
        let o = m.obj(a, &layout).unwrap();
        assert_eq!(
            o.payload_words(),
            local_words,
            "payload {payload_bytes}: Obj and Local disagree on the object's size"
        );
        for i in 0..o.payload_words() {
            assert_eq!(
                o.word(i),
                0,
                "payload {payload_bytes}: word {i} of a fresh object"
            );
            o.set_word(i, 0xdead_beef_0000 + i as u64);
        }
        let b = m.stack_get(0);
        let lb = m.local(b).unwrap();
        assert_eq!(
            lb.type_id(),
            t.pair,
            "payload {payload_bytes}: the neighbour's header"
        );
        assert_eq!((unfix(lb.get(0)), unfix(lb.get(1))), (7, 8));
        // And the heap still parses through a collection.
        m.collect().unwrap();
        let b = m.pop().unwrap();
        let lb = m.local(b).unwrap();
        assert_eq!((unfix(lb.get(0)), unfix(lb.get(1))), (7, 8));
        m.verify().unwrap();
    }
}
